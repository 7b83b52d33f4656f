#!/usr/bin/python3
"""Network faults on either side of the proxy (issue 13), injected by the fault
relay (tests/tools/faultrelay.py) while real clients (ftplib, curl, lftp) move a
16 MiB file through ftpsgate to a real vsftpd.

    client --> [client relay 127.0.0.3] --> ftpsgate --> [backend relay 127.0.0.3] --> vsftpd
       passive data ports fronted too        |              vsftpd's passive range fronted too

- Client side: one relay per listener (explicit, implicit) on 127.0.0.3 fronts the
  listener and its passive ports (passive.announce is 127.0.0.3, so PASV and EPSV
  data connections pass through it); it connects on from the client's own address,
  so the proxy's data-peer check holds. PORT/EPRT data connections go from the
  proxy straight to the client: client-side data faults use PASV/EPSV.
- Backend side: the proxy's backend.address is a relay that fronts vsftpd's control
  port and its passive range (pasv_min_port..pasv_max_port), so every backend data
  connection passes through it (backend.data_mode passive).

Every fault kind on the control and the data connection, on both sides, in both
directions ("up" = toward the server, "down" = toward the client), with the file
going down (RETR) or up (STOR); explicit and implicit, PROT P and C, clients and
data modes rotating over the cases. Data faults fire at byte 1 MiB of the file's
direction, or at the first byte against it (the other side's TLS handshake, or the
end of the stream in clear); control faults fire mid-transfer ("now", the data
slowed to 16 MiB/s so that there is a middle), at the next reply byte (the final
reply is lost), or from the first byte (trickle, latency).

Invariants, every case:
  - a transfer the client saw end in 226 has the right sha256 on both ends;
  - any other transfer got a failure reply (4xx/5xx), never a 226; a client may have
    no reply to read only when the fault cut its own control connection, or when it
    left by itself after a data error (curl, lftp) and the proxy's log of its session
    shows the failure the proxy decided (the table's "proxy failed with" column);
  - after the final reply, NOOP gets 200 (no stray second reply);
  - an upload under PROT P that the backend logged OK is the whole file (vsftpd logs
    FAIL for a data connection that was reset, OK for one that ended in a FIN);
  - the proxy stays up and its descriptors return to the baseline.
Each case also states what it expects: "ok" (the fault only slows the transfer: it
must succeed), "fail" (it must not end in 226), "any" (either, with the invariants).

Two limits of FTP itself are not held against the proxy, and the matrix says so:
  - in clear (PROT C) a FIN is the end of a file (RFC 959 stream mode): a client-side
    upload cut by a FIN is not distinguishable from a complete one, which is what
    upload_requires_close_notify is for; those cases run under PROT P;
  - toward the backend, data is always in clear: a FIN injected between the proxy and
    vsftpd makes vsftpd store what it got and log OK; there the proxy must still tell
    the client (no 226), and the stored file must be exactly the bytes relayed.

The table of case -> outcome ends the output. A case that finds a proxy bug is
listed in PENDING and runs here only under the other PROT level; pending_faults.py
(not registered with ctest) runs the failing form until the proxy is fixed.
"""

import os
import re
import sys
import threading
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tools"))
import harness as H  # noqa: E402
import backends as B  # noqa: E402
import faultrelay as FR  # noqa: E402
import ftpxfer as X  # noqa: E402
from harness import check, check_eq  # noqa: E402

RELAY_IP = "127.0.0.3"
# 16 MiB: past a fault at 1 MiB the sender still has more to send than its kernel's
# send buffer (4 MiB here) and the relay (a few hundred KiB) can absorb, so it is told.
SIZE = 16 * H.MiB + 3
OFF = H.MiB                  # data faults fire at this byte of the file's direction
SLOW = 16 * H.MiB            # bytes/s of the data during control faults (a middle to hit)
STALL_TIMEOUT = 5            # limits.transfer_stall_timeout
VS_DATA_TIMEOUT = 10         # vsftpd data_connection_timeout
CLIENT_TIMEOUT = 40

# Cases that find a proxy bug, by key and PROT level: here they run under the other PROT
# level only; pending_faults.py runs them as they fail (see its docstring).
PENDING = {
    # Empty: the client's reset of a clear upload that reached the proxy as a clean end
    # (libuv reports POLLHUP after a short read as EOF) is fixed; test_fault_resets.py.
}


# --------------------------------------------------------------------------
# Clients: each returns an ftpxfer.Outcome of one transfer


def run_ftplib(t, c, rpath, local):
    return X.transfer(t.host, t.port, t.ca, t.implicit, c.xfer, c.cmode, c.prot, rpath, local,
                      timeout=CLIENT_TIMEOUT)


def run_curl(t, c, rpath, local):
    o = X.Outcome("curl")
    argv = ["curl", "-sS", "-v", "--connect-timeout", "10", "--max-time", str(CLIENT_TIMEOUT),
            "--user", "%s:%s" % (H.FTP_USER, H.PASSWORD), "--cacert", t.ca, "--ftp-pasv"]
    if c.cmode == "PASV":
        argv.append("--disable-epsv")
    if not t.implicit:
        argv.append("--ssl-reqd" if c.prot == "P" else "--ftp-ssl-control")
    url = t.url(rpath)
    argv += ["-o", local, url] if c.xfer == "down" else ["-T", local, url]
    r = H.run_cmd(argv, timeout=CLIENT_TIMEOUT + 20)
    X.final_from_trace(r.stderr, o)
    if r.returncode != 0:
        o.data_err = "curl exit %d: %s" % (r.returncode, B.tail(r.stderr, 1)[:80])
    if c.xfer == "down" and os.path.exists(local):
        o.sha, o.nbytes = H.sha256_file(local), os.path.getsize(local)
    if not t.implicit and o.setup_err is None:
        check_eq(bool(re.search(r"^> PROT P", r.stderr, re.M)), c.prot == "P", "curl sent PROT P")
    return o


def run_lftp(t, c, rpath, local, workdir):
    o = X.Outcome("lftp")
    cmd = "get %s -o %s" % (rpath, local) if c.xfer == "down" else "put %s -o %s" % (local, rpath)
    r, trace = B.lftp_run(t.host, t.port, t.ca, H.FTP_USER, H.PASSWORD, [cmd], workdir,
                          passive=c.cmode in ("PASV", "EPSV"), epsv=c.cmode == "EPSV", prot=c.prot,
                          timeout=CLIENT_TIMEOUT + 20)
    X.final_from_trace(trace, o)
    if r.returncode != 0:
        o.data_err = "lftp exit %d: %s" % (r.returncode, B.tail(r.stderr + r.stdout, 1)[:80])
    if c.xfer == "down" and os.path.exists(local):
        o.sha, o.nbytes = H.sha256_file(local), os.path.getsize(local)
    return o


# --------------------------------------------------------------------------
# Cases

DATA_FLOW_FAULTS = ("cut-rst", "cut-fin", "half-close", "stall-2s", "stall-until-told", "stall-past-timeout",
                    "trickle", "latency+rate")
DATA_AGAINST_FAULTS = ("cut-rst", "half-close", "trickle")
CONTROL_FAULTS = ("cut-rst-now", "cut-fin-now", "half-close-now", "stall-2s-now", "stall-until-told-now",
                  "trickle", "latency")
SLOWING = ("stall-2s", "stall-until-told", "trickle", "latency+rate", "latency", "stall-2s-now",
           "stall-until-told-now")
CLIENT_MODES = {"ftplib": ("PASV", "EPSV", "PORT", "EPRT"), "curl": ("EPSV", "PASV"), "lftp": ("PORT", "EPSV", "PASV")}


class Case:
    def __init__(self, i, side, conn, fdir, fault, xfer):
        self.i, self.side, self.conn, self.fdir, self.fault, self.xfer = i, side, conn, fdir, fault, xfer
        self.flow = xfer  # the file goes "down" (RETR) or "up" (STOR)
        self.mode = ("explicit", "implicit")[i % 2]
        self.prot = ("P", "C")[(i // 2) % 2]
        self.client = ("ftplib", "curl", "lftp")[(i // 4) % 3]
        self.note = ""
        if self.client == "lftp" and self.mode == "implicit":
            self.client = "ftplib"
        if self.client == "curl" and self.mode == "implicit" and self.prot == "C":
            self.client = "ftplib"
        if side == "client" and conn == "data" and fdir == "up" and xfer == "up" and fault in ("cut-fin",
                                                                                              "half-close"):
            # In clear a FIN is the end of the file: only TLS can tell a cut (see the docstring).
            self.prot = "P"
            self.note = "PROT P: in clear a FIN ends a file"
        if PENDING.get(self.key) == self.prot:
            self.prot = "P" if self.prot == "C" else "C"
            self.note = "PROT %s: the other level is in pending_faults.py" % self.prot
        modes = CLIENT_MODES[self.client]
        if side == "client" and conn == "data":
            modes = tuple(m for m in modes if m in ("PASV", "EPSV"))
        self.cmode = modes[(i // 3) % len(modes)]
        self.expect = self._expect()

    @property
    def name(self):
        what = "%s %s %s %s, %s" % (self.side, self.conn, self.fdir, self.fault,
                                    "download" if self.xfer == "down" else "upload")
        return "%s (%s, PROT %s, %s %s)" % (what, self.mode, self.prot, self.client, self.cmode)

    @property
    def key(self):
        return "%s/%s/%s/%s/%s" % (self.side, self.conn, self.fdir, self.fault, self.xfer)

    def _expect(self):
        f = self.fault
        if f in SLOWING:
            return "ok"
        if self.conn == "data":
            if f == "stall-past-timeout":
                return "fail"
            if self.fdir == self.flow:
                return "fail"
            # Against the file's direction the first bytes are the other side's TLS
            # handshake (PROT P on the client side); toward the backend, or in clear,
            # nothing flows that way and the fault fires at the end of the stream.
            return "fail" if (self.side == "client" and self.prot == "P") else "any"
        if f in ("cut-rst-now", "cut-fin-now", "cut-rst-next"):
            return "fail"
        if f == "half-close-now":
            return "fail" if self.fdir == "down" else "any"
        raise AssertionError(f)

    @property
    def may_lose_control(self):
        """Only a fault on the client's own control connection may leave it without a reply."""
        return self.side == "client" and self.conn == "control"

    @property
    def fin_on_plain_upload(self):
        """A FIN on the proxy-to-vsftpd data segment of an upload: vsftpd stores what came."""
        return (self.side == "backend" and self.conn == "data" and self.xfer == "up" and self.fdir == "up"
                and self.fault in ("cut-fin", "half-close"))


def all_cases():
    cases = []
    for side in ("client", "backend"):
        for xfer in ("down", "up"):
            against = "up" if xfer == "down" else "down"
            for f in DATA_FLOW_FAULTS:
                cases.append((side, "data", xfer, f, xfer))
            for f in DATA_AGAINST_FAULTS:
                cases.append((side, "data", against, f, xfer))
        for fdir in ("up", "down"):
            faults = CONTROL_FAULTS + (("cut-rst-next",) if fdir == "down" else ())
            for j, f in enumerate(faults):
                cases.append((side, "control", fdir, f, ("down", "up")[j % 2]))
    return [Case(i, *c) for i, c in enumerate(cases)]


# --------------------------------------------------------------------------
# The rig


class Rig:
    def __init__(self, env):
        self.env = env
        pasv = H.free_port_block(16)
        # Passive ports in a known range (the backend relay fronts them); a transfer a
        # fault left hanging ends within VS_DATA_TIMEOUT.
        self.vs = H.Vsftpd(env, "vs1", extra_conf={"pasv_min_port": pasv[0], "pasv_max_port": pasv[1],
                                                    "data_connection_timeout": VS_DATA_TIMEOUT})
        self.vs.pasv_range = pasv
        env.backends.append(self.vs)
        self.vs.start()
        self.sha = self.vs.add_pub("f.bin", SIZE)
        self.src = self.vs.pub_path("f.bin")
        self.br = FR.FaultRelay((RELAY_IP, 0), (H.HOST, self.vs.port), time_limit=3600, seed=13)
        self.br.add_front(RELAY_IP, self.vs.pasv_range[0], self.vs.pasv_range[1], H.HOST)
        self.br.start()
        cert, key = env.certs.issue("relayed", "localhost", sans="DNS:localhost,IP:127.0.0.1,IP:%s" % RELAY_IP)
        env.proxy.main_tls = {"cert": cert, "key": key}
        env.proxy.extra_limits = {"transfer_stall_timeout": STALL_TIMEOUT, "data_connect_timeout": 10,
                                  "max_sessions_per_ip": 0}
        env.proxy.admin_port = H.free_port()
        backend = "%s:%d" % (RELAY_IP, self.br.port)
        self.listeners = {}
        for mode in ("explicit", "implicit"):
            ln = env.proxy.add_listener(mode, backend, "any", True, mode=mode, announce=RELAY_IP)
            self.listeners[mode] = ln
        env.proxy.start()
        self.relays, self.targets = {}, {}
        for mode, ln in self.listeners.items():
            port = int(ln["bind"].rsplit(":", 1)[1])
            r = FR.FaultRelay((RELAY_IP, 0), (H.HOST, port), time_limit=3600, preserve_source=True, seed=13)
            lo, hi = ln["passive"]["ports"].split("-")
            r.add_front(RELAY_IP, int(lo), int(hi), H.HOST)
            r.start()
            t = H.Target(mode, r.port, True, env.certs.ca, self.vs, ln)
            t.host = RELAY_IP
            self.relays[mode], self.targets[mode] = r, t
        self.fd_base = None

    def all_relays(self):
        return [self.br] + list(self.relays.values())

    def reset_relays(self):
        for r in self.all_relays():
            check(r.running, "a fault relay stopped (%s)" % r.error)
            r.reset()

    def metrics(self):
        import urllib.request
        with urllib.request.urlopen("http://%s:%d/metrics" % (H.HOST, self.env.proxy.admin_port), timeout=5) as r:
            text = r.read().decode()
        return {ln.split()[0]: float(ln.split()[1]) for ln in text.splitlines()
                if ln and not ln.startswith("#") and len(ln.split()) == 2}

    def wait_fds(self, timeout=30):
        pid = self.env.proxy.pid
        ok = H.wait_until(lambda: H.fd_count(pid) <= self.fd_base, timeout, step=0.2)
        return ok, H.fd_count(pid)


def wait_for(pred, timeout, step=0.02):
    return H.wait_until(pred, timeout, step)


def run_case(rig, c):
    env = rig.env
    t = rig.targets[c.mode]
    relay = rig.relays[c.mode] if c.side == "client" else rig.br
    tag = "c%02d-%s" % (c.i, os.urandom(3).hex())
    rname = "up-%s.bin" % tag
    rpath = "/pub/f.bin" if c.xfer == "down" else "/up/" + rname
    local = os.path.join(env.client_dir, "%s.bin" % tag) if c.xfer == "down" else rig.src
    mark = rig.vs.log_mark()
    pmark = env.proxy.log_mark()
    first = {id(r): len(r.conns) for r in rig.all_relays()}

    def conns(r):
        """The relay's connections of this case."""
        return r.conns[first[id(r)]:]

    # Faults armed before the client connects (rules apply to new connections).
    rule = None
    if c.conn == "data":
        at = OFF if c.fdir == c.flow else 0
        kw = {"cut-rst": dict(cut_at=at, cut="rst"), "cut-fin": dict(cut_at=at, cut="fin"),
              "half-close": dict(half_close_at=at), "stall-2s": dict(stall_at=at, stall_for=2.0),
              "stall-until-told": dict(stall_at=at, stall_for=None),
              "stall-past-timeout": dict(stall_at=at, stall_for=STALL_TIMEOUT + 3.0),
              "trickle": dict(trickle_at=at, trickle_bytes=2000, trickle_gap=0.0005),
              "latency+rate": dict(latency=0.05, rate=16 * H.MiB)}[c.fault]
        rule = relay.add_rule(FR.Rule(on="range", dir=c.fdir, **kw))
    else:
        if c.fault == "trickle":
            rule = relay.add_rule(FR.Rule(on="main", dir=c.fdir, trickle_at=0, trickle_bytes=2000,
                                          trickle_gap=0.0005))
        elif c.fault == "latency":
            rule = relay.add_rule(FR.Rule(on="main", dir=c.fdir, latency=0.05))
        else:
            # Slow the data so that "mid-transfer" exists; the backend relay sees every transfer.
            rig.br.add_rule(FR.Rule(on="range", dir=c.flow, rate=SLOW))

    out = {}

    def client():
        try:
            if c.client == "ftplib":
                out["o"] = run_ftplib(t, c, rpath, local)
            elif c.client == "curl":
                out["o"] = run_curl(t, c, rpath, local)
            else:
                out["o"] = run_lftp(t, c, rpath, local, env.client_dir)
        except Exception as e:  # noqa: BLE001 - reported as the case's failure
            out["e"] = e

    th = threading.Thread(target=client, daemon=True)
    th.start()
    if c.conn == "control" and c.fault.endswith(("-now", "-next")):
        def mid():
            return any(x.kind == "range" and x.closed is None and x.bytes[c.flow] >= OFF for x in conns(rig.br))
        check(wait_for(mid, 30), "the transfer never reached its middle (%d bytes)" % OFF)
        match = {"on": "main"}
        if c.fault == "cut-rst-now":
            relay.cut_now("rst", **match)
        elif c.fault == "cut-fin-now":
            relay.cut_now("fin", **match)
        elif c.fault == "cut-rst-next":
            relay.inject("down", "cut", "rst", **match)
        elif c.fault == "half-close-now":
            relay.half_close_now(c.fdir, **match)
        elif c.fault == "stall-2s-now":
            relay.stall_now(2.0, **match)
        elif c.fault == "stall-until-told-now":
            relay.stall_now(None, **match)
            time.sleep(2)
            relay.release()
    elif c.fault == "stall-until-told":
        if wait_for(lambda: any(any(f.startswith("stall") for f in x.fired) for x in conns(relay)), 30):
            time.sleep(2)
        relay.release()
    th.join(CLIENT_TIMEOUT * 2 + 30)
    check(not th.is_alive(), "the client did not finish")
    if "e" in out:
        raise out["e"]
    o = out["o"]

    # The backend's verdict on an upload, once it has one (bounded by its data timeout).
    verdict = None
    # (curl sends CWD /up + STOR name, lftp STOR up/name, ftplib STOR /up/name.)
    if c.xfer == "up" and any(cmd.startswith("STOR ") and cmd.endswith(rname) for _, cmd in
                              rig.vs.commands_since(mark)):
        verdict = rig.vs.wait_transfer(rpath, mark, timeout=VS_DATA_TIMEOUT + 10)
    fired = [f for r in rig.all_relays() for x in conns(r) for f in x.fired]
    if rule is not None:
        relay.remove_rule(rule)
    rig.reset_relays()
    alive = env.proxy.alive()
    fds_ok, fds = rig.wait_fds() if alive else (False, -1)

    # What the proxy decided, from its log lines of this case's sessions (found by the
    # client relay's source port): the failure replies it sent, or would have sent
    # when curl or lftp hung up after a data error without reading the reply.
    plog = session_log(env.proxy.log_since(pmark), conns(rig.relays[c.mode]))
    said = re.findall(r"data transfer failed \((\d{3})", plog)
    if "backend closed the control connection" in plog:
        said.append("421")
    row = {"case": c, "outcome": o, "verdict": verdict, "fds": fds, "fired": fired, "problems": [],
           "proxy": ",".join(said) or "-"}
    p = row["problems"]

    def want(cond, msg):
        if not cond:
            p.append(msg)

    # The invariants.
    stored = rig.vs.up_path(rname)
    if o.saw226 or o.retry226:
        if c.xfer == "down":
            want((o.nbytes, o.sha) == (SIZE, rig.sha), "226 but the client got %s bytes, sha256 %s"
                 % (o.nbytes, "ok" if o.sha == rig.sha else "wrong"))
        else:
            ok = os.path.exists(stored) and os.path.getsize(stored) == SIZE and H.sha256_file(stored) == rig.sha
            want(ok, "226 but the stored file is not the upload (%s bytes)"
                 % (os.path.getsize(stored) if os.path.exists(stored) else "no file"))
    elif o.setup_err:
        want(False, "the session failed before the transfer: %s" % o.setup_err)
    elif o.reply is not None:
        want(400 <= o.reply < 600, "final reply %s is neither 226 nor a failure" % o.text[:60])
    else:
        # No reply read: the client's own control connection was the fault's target, or
        # the client left after a data error (curl, lftp) once the proxy had decided to fail.
        want(c.may_lose_control or said, "no final reply (%s) and no failure in the proxy's log"
             % (o.text or "control lost"))
    if o.after is not None:
        # A fault on the backend's control connection may end the session right after the
        # transfer: the backend closes once its command stream ended, and NOOP then gets 421.
        backend_control = c.side == "backend" and c.conn == "control"
        want(o.after == "200" or o.after.startswith("lost") or (backend_control and o.after.startswith("421")),
             "NOOP after the final reply got %r" % o.after)
    if c.xfer == "up" and verdict is not None and verdict[0]:
        n = os.path.getsize(stored) if os.path.exists(stored) else -1
        if c.fin_on_plain_upload:
            relayed = next((x.bytes["up"] for x in conns(rig.br) if x.kind == "range" and x.bytes["up"]), None)
            want(n == verdict[3] and n == relayed and H.sha256_file(stored) == H.sha256_file(rig.src, 0, n),
                 "vsftpd kept %d bytes, not the %s bytes relayed before the FIN" % (n, relayed))
        elif c.prot == "P":
            want(n == SIZE and H.sha256_file(stored) == rig.sha,
                 "vsftpd logged OK for an upload that is not the whole file (%d bytes)" % n)
    if c.expect == "ok":
        want(o.saw226, "expected the transfer to succeed: %s" % (o.data_err or o.text[:80]))
    elif c.expect == "fail":
        want(not o.saw226, "expected no 226")
    want(alive, "ftpsgate died (exit %s)" % env.proxy.proc.poll())
    want(fds_ok, "proxy descriptors %d, baseline %d" % (fds, rig.fd_base))
    if os.path.exists(stored):
        os.unlink(stored)
    if c.xfer == "down" and os.path.exists(local):
        os.unlink(local)
    return row


def session_log(text, relay_conns):
    """The proxy's log lines of the sessions whose control connections came through
    these relay connections (matched by the relay's source address)."""
    ports = {"%s:%d" % x.local for x in relay_conns if x.kind == "main" and x.local}
    sids = {m.group(1) for m in re.finditer(r" session=(\d+) client=(\S+) ", text) if m.group(2) in ports}
    return "\n".join(ln for ln in text.splitlines()
                     if any(" session=%s " % sid in ln for sid in sids))


def verdict_text(v):
    if v is None:
        return "-"
    return "%s %d B" % ("OK" if v[0] else "FAIL", v[3])


def print_table(rows):
    print()
    print("Fault matrix: %s file through client relay -> ftpsgate -> backend relay -> vsftpd" % H.human(SIZE))
    print("(dir: up = toward the server, down = toward the client; data faults at byte %d of the file's"
          " direction or the first byte against it)" % OFF)
    print()
    print("| # | side | conn | dir | fault | transfer | mode | PROT | client | expect | client saw | proxy failed "
          "with | data | backend | fds | result |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        c, o = row["case"], row["outcome"]
        data = "-"
        if o is not None and c.xfer == "down" and o.nbytes is not None:
            data = "%d B%s" % (o.nbytes, " sha ok" if o.sha == row.get("sha") else "")
        elif o is not None and o.data_err:
            data = "error"
        print("| %d | %s | %s | %s | %s | %s | %s | %s | %s %s | %s | %s | %s | %s | %s | %s | %s |" % (
            c.i, c.side, c.conn, c.fdir, c.fault, "RETR" if c.xfer == "down" else "STOR", c.mode, c.prot,
            c.client, c.cmode, c.expect, o.summary() if o else "(crashed)", row["proxy"], data,
            verdict_text(row["verdict"]),
            row["fds"], "pass" if not row["problems"] else "FAIL: " + "; ".join(row["problems"])))
    print(flush=True)


def body(s, env):
    if H.SELFCHECK:
        s.run("fault matrix (tests ftpsgate itself)", H.needs_proxy)
        return
    rig = Rig(env)
    env.suite.on_fail.append(lambda: print("     relays: %s" % [r.error for r in rig.all_relays()]))
    rows = []

    def warm_up():
        c = Case(0, "client", "data", "down", "latency+rate", "down")
        c.fault, c.expect = "none", "ok"
        o = run_ftplib(rig.targets["explicit"], c, "/pub/f.bin", None)
        check(o.saw226 and o.sha == rig.sha, "a clean download through both relays: %s" % o.summary())
        rig.reset_relays()
        pid = env.proxy.pid
        prev = [None]

        def stable():
            n = H.fd_count(pid)
            same = n == prev[0]
            prev[0] = n
            return same
        H.wait_until(stable, 10, step=0.5)
        rig.fd_base = H.fd_count(pid)
        print("     proxy fds at rest: %d; relays: client %s, backend %s:%d" % (
            rig.fd_base, ", ".join("%s:%d" % (RELAY_IP, r.port) for r in rig.relays.values()), RELAY_IP,
            rig.br.port), flush=True)

    if not s.run("warm-up: clean download through both relays, fd baseline", warm_up):
        return
    cases = all_cases()
    for c in cases:
        def one(c=c):
            row = run_case(rig, c)
            row["sha"] = rig.sha
            rows.append(row)
            if row["problems"]:
                raise H.Fail("; ".join(row["problems"]) + " [client: %s; data: %s; fired: %s]" % (
                    row["outcome"].text[:80], row["outcome"].data_err, row["fired"]))
        s.run("%d %s: expect %s" % (c.i, c.name, c.expect), one)

    def pool_back():
        m = rig.metrics()
        check(H.wait_until(lambda: rig.metrics().get("ftpsgate_passive_ports_in_use") == 0, 15),
              "passive ports in use: %s" % rig.metrics().get("ftpsgate_passive_ports_in_use"))
        print("     transfers ok %d, failed %d; data TLS failures %d; sessions active %d" % (
            m.get("ftpsgate_transfers_ok", -1), m.get("ftpsgate_transfers_failed", -1),
            m.get("ftpsgate_data_tls_failures", -1), m.get("ftpsgate_sessions_active", -1)))
        check(H.wait_until(lambda: rig.metrics().get("ftpsgate_sessions_active") == 0, 15), "sessions still active")

    s.run("after every case: passive port pool full, no session left", pool_back)
    print_table(rows)
    n_ok = sum(1 for r in rows if r["outcome"] and r["outcome"].saw226)
    print("%d cases: %d ended in 226 (sha256 checked), %d in a failure, %d broke an invariant" % (
        len(rows), n_ok, len(rows) - n_ok, sum(1 for r in rows if r["problems"])), flush=True)
    for r in rig.all_relays():
        r.stop()


if __name__ == "__main__":
    H.main_wrapper("faults", body, need_bytes=256 * H.MiB)
