#!/usr/bin/python3
"""IPv6, anti-bounce and the passive port pool (issue 5, DESIGN.md §3, RFC 2428, RFC 2577).

IPv6:
  - a client on ::1 through a listener on [::1] to an IPv4-only vsftpd: curl with EPSV,
    ftplib with EPRT |2|, backend data mode passive (the backend sees PASV) and
    active (the backend sees PORT), sha256 both ways;
  - an IPv4 client to backends on ::1 only (vsftpd with listen_ipv6, pure-ftpd, proftpd,
    pyftpdlib, each with its own 229 wording): client PASV and PORT become EPSV and
    EPRT |2| toward the backend;
  - PASV from the IPv6 client: 425 (use EPSV); EPSV 1 on the IPv6 listener and EPSV 2
    on an IPv4 one: 522; EPSV ALL: 200, then PASV/PORT/EPRT get 501 and EPSV still works.
Bounce (client on 127.0.0.1): PORT/EPRT naming 127.0.0.2, ::1 or a port below 1024 get
  500; the backend's protocol log shows none of them (nor the RETR sent afterwards), and
  nothing connects to listeners we hold on 127.0.0.2:port and on 127.0.0.1:<low port>.
  EPRT with protocol 3: 522; active.enabled false: 502; active.allow_low_ports: accepted.
Port pool: 2 passive ports, 3 sessions that PASV without connecting: the third gets 425;
  when the first finishes a transfer, the third gets a port and transfers; the ports of
  PASVs nobody connects to are closed after limits.data_connect_timeout (3 s here) and
  PASV works again; a port of a 3-port range held by another socket is never announced.
The whole file runs in a network namespace of its own (ownnetns.py), where ::1 works even when
the host's loopback has no IPv6 (a container's, usually).
"""

import os
import re
import select
import socket
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import harness as H  # noqa: E402
import ownnetns  # noqa: E402
import backends as B  # noqa: E402
from harness import check, check_code, check_eq, verbs  # noqa: E402

SMALL = 64 * H.KiB + 1
DATA_CONNECT_TIMEOUT = 3


def ctl_get(c, ctx, addr, rpath, timeout=20):
    """Passive download on a Ctl whose PASV/EPSV gave addr: (bytes, final reply)."""
    d = socket.create_connection(addr, timeout=timeout)
    if c.tls:
        d = c.wrap_data(d, ctx)
    r = c.cmd("RETR " + rpath)
    check_code(r, (125, 150), "RETR")
    how, data = H.recv_until_closed(d, timeout, limit=16 * H.MiB)
    d.close()
    check_eq(how, "eof", "how the data connection ended")
    return data, c.reply(timeout)


def nothing_connects(socks, seconds):
    """True when no connection arrives on any of the listening sockets within seconds."""
    r, _, _ = select.select(socks, [], [], seconds)
    for s in r:
        try:
            conn, peer = s.accept()
            conn.close()
            raise H.Fail("something connected to %s from %s" % (s.getsockname(), peer))
        except BlockingIOError:
            pass
    return not r


def body(s, env):
    if H.SELFCHECK:
        s.run("ipv6, bounce, pool", lambda: H.needs_proxy())
        return
    vs = B.vsftpd(env, "vs4")
    v6 = {}  # every kind of backend, on ::1 only: the proxy talks EPSV/EPRT to them
    for kind in B.KINDS:
        try:
            v6[kind] = B.start_backend(env, kind, kind.replace("-", "") + "6", host="::1")
        except Exception as e:  # noqa: BLE001 - a backend that cannot start fails its cases
            s.fail_setup("start %s on ::1" % kind, e)
    shas = {b.name: b.add_pub("f.bin", SMALL) for b in [vs] + list(v6.values())}
    up_local = os.path.join(env.client_dir, "up.bin")
    up_sha = H.make_file(up_local, SMALL)

    T = {}

    def front(name, backend, mode="passive", bind_host=H.HOST, n_passive=4, active=None, protection="private"):
        t = env.front(backend, name, protection=protection, n_passive=n_passive, bind_host=bind_host)
        t.listener["backend"]["data_mode"] = mode
        if active is not None:
            t.listener["active"] = active
        T[name] = t
        return t

    front("v6pas", vs, "passive", bind_host="::1")
    front("v6act", vs, "active", bind_host="::1")
    front("main", vs, "passive", protection="any")
    front("lowok", vs, "passive", active={"allow_low_ports": True})
    front("noactive", vs, "passive", active={"enabled": False})
    for kind, b in v6.items():
        front(b.name + "pas", b, "passive")
        front(b.name + "act", b, "active")
    front("pool", vs, "passive", n_passive=2)
    front("busy", vs, "passive", n_passive=3)
    base_config = env.proxy.config
    env.proxy.config = lambda: dict(base_config(), limits={"max_line": 4096,
                                                            "data_connect_timeout": DATA_CONNECT_TIMEOUT})
    # Hold the middle port of "busy" before the proxy starts, as another program on the host would.
    busy_lo, busy_hi = T["busy"].pasv_range
    busy_sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    busy_sock.bind((H.HOST, busy_lo + 1))
    busy_sock.listen(1)
    env.start(*T.values())
    ctx = env.certs.client_context()
    cdir = env.client_dir

    # ---------------------------------------------------------------- IPv6 client -> IPv4 backend
    def v6_client(name, want_backend):
        t = T[name]
        check_eq(t.host, "::1", "listener host")
        mark = vs.log_mark()
        tag = name
        out = os.path.join(cdir, "dl-%s-curl" % tag)
        r, tr = B.curl_run(t.host, t.port, t.ca, vs.user, vs.password,
                           ["-o", out, B.url(t.host, t.port, "/pub/f.bin")], epsv=True)
        check_eq(r.returncode, 0, "curl download over IPv6 (%s)" % B.tail(r.stderr))
        H.check_pasv_trace(tr, True, "curl over IPv6")
        check_eq(H.sha256_file(out), shas["vs4"], "sha256 of the curl download")
        r, tr = B.curl_run(t.host, t.port, t.ca, vs.user, vs.password,
                           ["-T", up_local, B.url(t.host, t.port, "/up/%s-curl.bin" % tag)], epsv=True)
        check_eq(r.returncode, 0, "curl upload over IPv6 (%s)" % B.tail(r.stderr))
        H.check_stored(vs, "%s-curl.bin" % tag, SMALL, up_sha, "curl upload")
        # ftplib on an IPv6 control connection sends EPRT |2|::1|port|.
        f = B.ftps_connect(t.host, t.port, t.ca, vs.user, vs.password, mode="EPRT")
        try:
            check_eq(f.af, socket.AF_INET6, "ftplib address family")
            B.ftps_get_put(f, "/pub/f.bin", SMALL, shas["vs4"], up_local, "/up/%s-ftplib.bin" % tag)
            check(f.last_port.startswith("200"), "EPRT |2| reply %r" % f.last_port)
        finally:
            H.quit_quietly(f)
        H.check_stored(vs, "%s-ftplib.bin" % tag, SMALL, up_sha, "ftplib upload")
        # (lftp 4.9.2 in active mode over IPv6 sends "EPRT |2|::|port|", the unspecified
        # address: refused like proftpd, pure-ftpd and pyftpdlib do; only vsftpd takes it.)
        seen = H.wait_until(lambda: len(B.saw(vs, mark, ("RETR", "STOR"))) >= 4, 5)
        check(seen, "the backend did not log the transfers")
        data = verbs(B.saw(vs, mark, ("PASV", "EPSV", "PORT", "EPRT")))
        check(len(data) >= 4 and set(data) == {want_backend},
              "the IPv4 backend saw %r, want only %s" % (data, want_backend))

    s.run("IPv6 client (::1): EPSV and EPRT |2| -> IPv4 backend, backend passive (PASV)", v6_client, "v6pas", "PASV")
    s.run("IPv6 client (::1): EPSV and EPRT |2| -> IPv4 backend, backend active (PORT)", v6_client, "v6act", "PORT")

    def v6_refusals():
        c = H.Ctl(T["v6pas"]).secure_login(ctx)
        try:
            r = c.cmd("PASV")
            check_code(r, 425, "PASV from an IPv6 client")
            check("EPSV" in r[1], "the 425 does not point to EPSV: %r" % r[1])
            check_code(c.cmd("EPSV 1"), 522, "EPSV 1 on an IPv6 listener")
            check_code(c.cmd("EPSV 2"), 229, "EPSV 2 on an IPv6 listener")
            check_code(c.cmd("EPRT |1|127.0.0.1|40000|"), 500, "EPRT |1| naming another address than ::1")
            check_code(c.cmd("QUIT"), 221, "QUIT")
        finally:
            c.close()
        c = H.Ctl(T["main"]).secure_login(ctx)
        try:
            check_code(c.cmd("EPSV 2"), 522, "EPSV 2 on an IPv4 listener")
            check_code(c.cmd("EPSV 1"), 229, "EPSV 1 on an IPv4 listener")
            check_code(c.cmd("QUIT"), 221, "QUIT")
        finally:
            c.close()

    s.run("IPv6 client: PASV -> 425 (use EPSV); EPSV 1/2 on the wrong family -> 522", v6_refusals)

    # ---------------------------------------------------------------- IPv4 client -> IPv6 backend
    def v4_to_v6(name, b, want_backend):
        t = T[name]
        mark = b.log_mark()
        out = os.path.join(cdir, "dl-%s" % name)
        r, tr = B.curl_run(t.host, t.port, t.ca, b.user, b.password,
                           ["-o", out, B.url(t.host, t.port, "/pub/f.bin")], epsv=False)
        check_eq(r.returncode, 0, "curl PASV download (%s)" % B.tail(r.stderr))
        H.check_pasv_trace(tr, False, "curl")
        check_eq(H.sha256_file(out), shas[b.name], "sha256 of the curl download")
        f = B.ftps_connect(t.host, t.port, t.ca, b.user, b.password, mode="PORT")
        try:
            B.ftps_get_put(f, "/pub/f.bin", SMALL, shas[b.name], up_local, "/up/%s.bin" % name)
        finally:
            H.quit_quietly(f)
        H.check_stored(b, "%s.bin" % name, SMALL, up_sha, "ftplib PORT upload")
        if b.command_lines(mark) is None:
            return  # pure-ftpd: no command log; the transfers above went through it
        seen = H.wait_until(lambda: len(B.saw(b, mark, ("RETR", "STOR"))) >= 3, 5)
        check(seen, "the backend did not log the transfers")
        data = B.saw(b, mark, ("PASV", "EPSV", "PORT", "EPRT"))
        check(len(data) >= 3 and set(verbs(data)) == {want_backend},
              "the IPv6 backend saw %r, want only %s" % (data, want_backend))
        if want_backend == "EPRT":
            check(all(c.upper().startswith("EPRT |2|::1|") for c in data), "EPRT toward ::1: %r" % data)

    for kind, b in v6.items():
        s.run("IPv4 client PASV/PORT -> %s on ::1, backend passive (EPSV)" % kind, v4_to_v6, b.name + "pas", b,
              "EPSV")
        s.run("IPv4 client PASV/PORT -> %s on ::1, backend active (EPRT |2|)" % kind, v4_to_v6, b.name + "act", b,
              "EPRT")

    # ---------------------------------------------------------------- EPSV ALL
    def epsv_all():
        mark = vs.log_mark()
        c = H.Ctl(T["main"]).secure_login(ctx)
        try:
            check_code(c.cmd("EPSV ALL"), 200, "EPSV ALL")
            check_code(c.cmd("PASV"), 501, "PASV after EPSV ALL")
            check_code(c.cmd("PORT 127,0,0,1,156,64"), 501, "PORT after EPSV ALL")
            check_code(c.cmd("EPRT |1|127.0.0.1|40000|"), 501, "EPRT after EPSV ALL")
            addr = c.epsv()
            data, fin = ctl_get(c, ctx, addr, "/pub/f.bin")
            check_code(fin, 226, "RETR after EPSV")
            check_eq(H.sha256_bytes(data), shas["vs4"], "sha256 of the download after EPSV ALL")
            check_code(c.cmd("PASV"), 501, "PASV after EPSV ALL and a transfer")
            check_code(c.cmd("QUIT"), 221, "QUIT")
        finally:
            c.close()
        check(vs.wait_command(lambda x: x.upper() == "QUIT", mark, 10), "the backend never logged QUIT")
        cmds = vs.command_lines(mark)
        check_eq([c for c in cmds if verbs([c])[0] in ("PORT", "EPRT") or c.upper().startswith("EPSV ALL")], [],
                 "PORT/EPRT/EPSV ALL that reached the backend")

    s.run("EPSV ALL: 200, then PASV/PORT/EPRT 501, EPSV and transfers still work", epsv_all)

    # ---------------------------------------------------------------- bounce
    def bounce():
        # Targets we listen on ourselves, to see whether anything connects to them.
        other = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        other.bind(("127.0.0.2", 0))
        other.listen(4)
        other.setblocking(False)
        oport = other.getsockname()[1]
        low, lowport = None, None
        for p in range(1023, 900, -1):
            s_ = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                s_.bind((H.HOST, p))
            except OSError:
                s_.close()
                continue
            s_.listen(4)
            s_.setblocking(False)
            low, lowport = s_, p
            break
        check(low is not None, "no free port below 1024 on 127.0.0.1 to watch (not root?)")
        v6 = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        v6.bind(("::1", 0))
        v6.listen(4)
        v6.setblocking(False)
        v6port = v6.getsockname()[1]
        pm = env.proxy.log_mark()
        mark = vs.log_mark()
        attempts = [
            ("PORT 127,0,0,2,%d,%d" % (oport >> 8, oport & 255), 500),
            ("EPRT |1|127.0.0.2|%d|" % oport, 500),
            ("PORT 127,0,0,1,%d,%d" % (lowport >> 8, lowport & 255), 500),
            ("EPRT |1|127.0.0.1|%d|" % lowport, 500),
            ("EPRT |2|::1|%d|" % v6port, 500),
            ("EPRT |3|127.0.0.1|%d|" % (lowport + 30000), 522),
        ]
        try:
            c = H.Ctl(T["main"]).secure_login(ctx)
            try:
                for cmd, want in attempts:
                    r = c.cmd(cmd)
                    check_code(r, want, cmd)
                    # The refused PORT left no data channel: the transfer is refused locally.
                    check_code(c.cmd("RETR /pub/f.bin"), (425, 503), "RETR after the refused " + cmd)
                check_code(c.cmd("QUIT"), 221, "QUIT")
            finally:
                c.close()
            check(nothing_connects([other, low, v6], 2.0), "a connection arrived")
        finally:
            for x in (other, low, v6):
                if x is not None:
                    x.close()
        check(vs.wait_command(lambda x: x.upper() == "QUIT", mark, 10), "the backend never logged QUIT")
        reached = [c for c in vs.command_lines(mark) if verbs([c])[0] in ("PORT", "EPRT", "RETR", "PASV", "EPSV")]
        check_eq(reached, [], "data commands that reached the backend")
        refusals = re.findall(r"SECURITY: refused (?:PORT|EPRT)", env.proxy.log_since(pm))
        check_eq(len(refusals), 5, "SECURITY refusals logged by the proxy")

    s.run("bounce: PORT/EPRT to 127.0.0.2, ::1, a port < 1024 -> 500; nothing sent, nothing connects", bounce)

    def active_switches():
        c = H.Ctl(T["noactive"]).secure_login(ctx)
        try:
            check_code(c.cmd("PORT 127,0,0,1,156,64"), 502, "PORT with active.enabled false")
            check_code(c.cmd("EPRT |1|127.0.0.1|40000|"), 502, "EPRT with active.enabled false")
            feat = c.cmd("FEAT")
            check("EPRT" not in feat[1].upper(), "FEAT lists EPRT with active mode disabled: %r" % feat[1])
            check_code(c.cmd("QUIT"), 221, "QUIT")
        finally:
            c.close()
        c = H.Ctl(T["lowok"]).secure_login(ctx)
        try:
            check_code(c.cmd("PORT 127,0,0,1,3,255"), 200, "PORT to port 1023 with active.allow_low_ports")
            check_code(c.cmd("PORT 127,0,0,2,156,64"), 500, "PORT to 127.0.0.2 with active.allow_low_ports")
            check_code(c.cmd("QUIT"), 221, "QUIT")
        finally:
            c.close()

    s.run("active.enabled false -> 502; active.allow_low_ports accepts port 1023 only from the client", active_switches)

    # ---------------------------------------------------------------- port pool
    def pool():
        t = T["pool"]
        lo, hi = t.pasv_range
        ss = [H.Ctl(t).secure_login(ctx) for _ in range(3)]
        try:
            a = ss[0].pasv()
            b = ss[1].pasv()
            check(lo <= a[1] <= hi and lo <= b[1] <= hi and a[1] != b[1],
                  "passive ports %d, %d for range %d-%d" % (a[1], b[1], lo, hi))
            r = ss[2].cmd("PASV")
            check_code(r, 425, "third PASV with both ports taken")
            check("no free port" in r[1], "the 425 does not say why: %r" % r[1])
            r = ss[2].cmd("EPSV")
            check_code(r, 425, "EPSV with both ports taken")
            # The first session finishes a transfer: its port returns to the pool.
            data, fin = ctl_get(ss[0], ctx, a, "/pub/f.bin")
            check_code(fin, 226, "transfer of the first session")
            check_eq(H.sha256_bytes(data), shas["vs4"], "sha256 of the first session's download")
            c3 = ss[2].pasv()
            check_eq(c3[1], a[1], "the port the third session gets")
            data, fin = ctl_get(ss[2], ctx, c3, "/pub/f.bin")
            check_code(fin, 226, "transfer of the third session")
            check_eq(H.sha256_bytes(data), shas["vs4"], "sha256 of the third session's download")
            # Now: the second session's port is still held by a PASV nobody connects to.
            # Hold the other one too; both close after data_connect_timeout.
            t_hold = time.monotonic()
            a2 = ss[0].pasv()
            check_code(ss[2].cmd("PASV"), 425, "PASV with both ports pending")
            closed = H.wait_until(lambda: all(not _accepts(p) for p in (b[1], a2[1])),
                                  DATA_CONNECT_TIMEOUT + 6, step=0.2)
            waited = time.monotonic() - t_hold
            check(closed, "the unused passive ports %d, %d still accept connections %.1fs later"
                  % (b[1], a2[1], waited))
            # The sessions whose PASV expired learn it when they try to use it.
            r = ss[1].cmd("RETR /pub/f.bin", timeout=15)
            check_code(r, 425, "RETR on a passive port that timed out")
            c4 = ss[2].pasv()
            c5 = ss[1].pasv()
            check(c4[1] != c5[1], "two sessions got the same port %d" % c4[1])
            for sess, addr in ((ss[2], c4), (ss[1], c5)):
                data, fin = ctl_get(sess, ctx, addr, "/pub/f.bin")
                check_code(fin, 226, "transfer after the timeout")
                check_eq(H.sha256_bytes(data), shas["vs4"], "sha256 after the timeout")
            for c in ss:
                check_code(c.cmd("QUIT"), 221, "QUIT")
        finally:
            for c in ss:
                c.close()

    s.run("port pool: 2 ports, 3rd PASV -> 425; freed by a finished transfer and by data_connect_timeout", pool)

    def busy_port():
        t = T["busy"]
        lo, hi = t.pasv_range
        ss = [H.Ctl(t).secure_login(ctx) for _ in range(3)]
        try:
            got = [ss[0].pasv()[1], ss[1].pasv()[1]]
            check_eq(sorted(got), [lo, hi], "ports announced with %d held by another socket" % (lo + 1))
            r = ss[2].cmd("PASV")
            check_code(r, 425, "third PASV (one port of three is busy elsewhere)")
            data, fin = ctl_get(ss[0], ctx, (t.host, got[0]), "/pub/f.bin")
            check_code(fin, 226, "transfer on a port next to the busy one")
            check_eq(H.sha256_bytes(data), shas["vs4"], "sha256")
            c3 = ss[2].pasv()
            check(c3[1] != lo + 1, "the busy port %d was announced" % c3[1])
            for c in ss:
                check_code(c.cmd("QUIT"), 221, "QUIT")
        finally:
            for c in ss:
                c.close()
        check(H.pid_alive(env.proxy.pid), "the proxy died")

    try:
        s.run("port pool: a port held by another program on the host is skipped", busy_port)
    finally:
        busy_sock.close()


def _accepts(port):
    """Something listens on TCP port (IPv4 or IPv6), from /proc/net/tcp*: looking, not
    connecting (a connection from 127.0.0.1 would be taken as the data connection)."""
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                        return True
        except OSError:
            continue
    return False


if __name__ == "__main__":
    ownnetns.enter_or_fail("ipv6_bounce_pool")  # ::1 of its own, whatever the host's loopback has
    H.main_wrapper("ipv6_bounce_pool", body, need_bytes=256 * H.MiB)
