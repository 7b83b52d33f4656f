#!/usr/bin/python3
"""Routes (issue 12): one listener in front of four legacy servers of different kinds.

Listener "routed" (explicit FTPS, no default backend, its own greeting) has the routes
  1. sni      a.route.test   -> pyftpdlib   (the name also picks the a.route.test certificate)
  2. host     b.route.test   -> proftpd     (RFC 7151 HOST, answered by ftpsgate)
  3. user     fgtest         -> pure-ftpd   (its PureDB virtual user)
  4. user_at  legacy-v       -> vsftpd      (USER anonymous@legacy-v; vsftpd receives USER anonymous)
"routed-imp" is the same table on an implicit listener (curl --resolve ftps://a.route.test);
"routed-pp" takes a PROXY v1 header (data_peer "balancer") and has vsftpd as its default.

Every backend serves /pub/id.bin with its own random content, so the sha256 of a
download names the server that sent it; each server's own log must show the session
(pure-ftpd keeps no command log: its transfer log shows the file), and the other
servers' logs must not. A session no route takes gets 530 and no server sees a
connection (their logs, no established connection while the session lives, the
ftpsgate_routes_unmatched counter). Every data mode (PASV, EPSV, PORT, EPRT) on every
route. Transparent listeners with routes are not run here (the interception suites
need namespaces; a route's backend replaces the intercepted destination, route.h).
"""

import http.client
import io
import json
import os
import re
import socket
import ssl
import subprocess
import sys
import time

sys.dont_write_bytecode = True
import backends as B  # noqa: E402
import harness as H  # noqa: E402
from harness import check, check_code, check_eq  # noqa: E402

GREETING = "ftpsgate routes test: say HOST or USER"
SNI_A = "a.route.test"
HOST_B = "b.route.test"
ALIAS_V = "legacy-v"
ID_SIZE = 300 * 1024


def metrics(port):
    c = http.client.HTTPConnection(H.HOST, port, timeout=10)
    try:
        c.request("GET", "/metrics")
        body = c.getresponse().read().decode()
    finally:
        c.close()
    out = {}
    for ln in body.splitlines():
        if ln and not ln.startswith("#"):
            name, value = ln.rsplit(" ", 1)
            out[name] = int(float(value))
    return out


class RouteFTPS(H.FTPS):
    """ftplib FTPS that sends a chosen TLS server name (SNI) on control and data, or none
    (connected by IP address), and optionally a PROXY v1 header before anything else."""

    server_name = None
    proxy_header = None
    data_mode = "PASV"

    def connect(self, host="", port=0, timeout=-999, source_address=None):
        if host:
            self.host = host
        if port > 0:
            self.port = port
        if timeout != -999:
            self.timeout = timeout
        sock = socket.create_connection((self.host, self.port), self.timeout)
        if self.proxy_header:
            sock.sendall(self.proxy_header)
        self.af = sock.family
        self.sock = sock
        self.file = sock.makefile("r", encoding=self.encoding)
        self.welcome = self.getresp()
        if self.server_name:
            self.host = self.server_name  # ftplib's AUTH and data TLS send self.host as SNI
        return self.welcome

    def makepasv(self):
        if self.data_mode == "EPSV":
            resp = self.sendcmd("EPSV")
            return ftplib_parse229(resp, self.sock.getpeername())
        return super().makepasv()

    def makeport(self):
        if self.data_mode not in ("PORT", "EPRT"):
            return super().makeport()
        sock = socket.create_server((H.HOST, 0))
        port = sock.getsockname()[1]
        if self.data_mode == "PORT":
            self.sendcmd("PORT %s,%d,%d" % (H.HOST.replace(".", ","), port >> 8, port & 255))
        else:
            self.sendcmd("EPRT |1|%s|%d|" % (H.HOST, port))
        if self.timeout is not None:
            sock.settimeout(self.timeout)
        return sock


def ftplib_parse229(resp, peer):
    import ftplib
    return ftplib.parse229(resp, peer)


def body(s, env):
    if H.SELFCHECK:
        s.run("routes (test ftpsgate itself)", H.needs_proxy)
        return
    ca = env.certs.ca
    servers = {}
    ids = {}
    for kind in ("pyftpdlib", "proftpd", "pure-ftpd", "vsftpd"):
        b = B.start_backend(env, kind)
        b.add_pub("id.bin", ID_SIZE)
        servers[kind] = b
        ids[kind] = H.sha256_file(b.pub_path("id.bin"))
    check(len(set(ids.values())) == 4, "the four id.bin files are not distinct")
    by_sha = {v: k for k, v in ids.items()}

    a_cert = env.certs.issue("route-a", SNI_A, "DNS:%s" % SNI_A)
    env.proxy.extra_tls["route-a"] = {"cert": a_cert[0], "key": a_cert[1]}
    env.proxy.admin_port = H.free_port()

    def backend_of(kind):
        return {"address": servers[kind].address, "data_mode": "passive"}

    routes = [
        {"sni": SNI_A, "backend": backend_of("pyftpdlib")},
        {"host": HOST_B, "backend": backend_of("proftpd")},
        {"user": "fgtest", "backend": backend_of("pure-ftpd")},
        {"user_at": ALIAS_V, "backend": backend_of("vsftpd")},
    ]
    T = {}
    for name, kw in (("routed", {}), ("routed-imp", {"mode": "implicit"}), ("routed-pp", {})):
        t = env.front(servers["vsftpd"], name=name, **kw)
        ln = t.listener
        ln["sni"] = {SNI_A: "route-a"}
        ln["routes"] = json.loads(json.dumps(routes))
        if name == "routed-pp":
            ln["proxy_protocol"] = {"trusted": ["127.0.0.1/32"], "data_peer": "balancer"}
        else:
            del ln["backend"]
            ln["greeting"] = GREETING
        T[name] = t
    env.start(*T.values())

    # ---- the route table ----------------------------------------------------------------------

    def check_config_table():
        r = H.run_cmd([env.binary, "--check-config", "--config", env.proxy.config_path], timeout=30)
        check_eq(r.returncode, 0, "--check-config exit status (stderr %r)" % r.stderr[-300:])
        out = r.stdout + r.stderr
        for what, kind in (("sni " + SNI_A, "pyftpdlib"), ("host " + HOST_B, "proftpd"),
                           ("user fgtest", "pure-ftpd"), ("user_at " + ALIAS_V, "vsftpd")):
            pat = r"%s\s.*%s" % (re.escape(what), re.escape(servers[kind].address))
            check(re.search(pat, out), "--check-config does not print the route %r -> %s:\n%s" % (
                what, servers[kind].address, out[-1500:]))
        check(re.search(r"no route.*530|530.*no route|unmatched.*530|530", out),
              "--check-config does not say what an unmatched session on 'routed' gets:\n%s" % out[-1500:])

    s.run("--check-config prints each listener's route table (match -> backend, and the unmatched case)",
          check_config_table)

    # ---- one session per route -----------------------------------------------------------------

    def marks():
        """Every server's log position, once the logs have been still for 0.3 s (a previous
        session's last lines, e.g. its QUIT, may still be on their way)."""
        last, still_since, deadline = None, time.time(), time.time() + 5
        while time.time() < deadline:
            now = {k: b.log_mark() for k, b in servers.items()}
            if now != last:
                last, still_since = now, time.time()
            elif time.time() - still_since >= 0.3:
                break
            time.sleep(0.05)
        return last

    def others_quiet(kind, mk):
        for k, b in servers.items():
            if k == kind or k == "pure-ftpd":
                continue
            cmds = b.command_lines(mk[k])
            check(not cmds, "%s saw commands from a session routed to %s: %s" % (k, kind, cmds[:4]))

    def session(target, user, password=H.PASSWORD, server_name=None, host_cmd=None, mode="PASV",
                proxy_header=None, upload=True):
        """Logs in, downloads /pub/id.bin, uploads a file; returns (sha of download, upload name,
        upload sha, welcome, the HOST reply)."""
        ctx = ssl.create_default_context(cafile=ca)
        f = RouteFTPS(context=ctx, timeout=30)
        f.server_name = server_name
        f.proxy_header = proxy_header
        f.data_mode = mode
        f.set_pasv(mode in ("PASV", "EPSV"))
        welcome = f.connect(target.host, target.port)
        host_reply = None
        try:
            f.auth()
            if host_cmd:
                host_reply = f.sendcmd("HOST " + host_cmd)
            f.login(user, password)
            f.prot_p()
            got = bytearray()
            f.retrbinary("RETR /pub/id.bin", got.extend)
            up_name = up_sha = None
            if upload:
                data = os.urandom(100 * 1024 + len(user))
                up_name = "r-%s-%s.bin" % (mode.lower(), os.urandom(3).hex())
                f.storbinary("STOR /up/" + up_name, io.BytesIO(data))
                up_sha = H.sha256_bytes(data)
            f.quit()
        finally:
            f.close()
        return H.sha256_bytes(bytes(got)), up_name, up_sha, welcome, host_reply

    def check_landed(kind, mk, sha, up_name, up_sha):
        check_eq(by_sha.get(sha, "no server's id.bin"), kind, "the server whose id.bin was downloaded")
        b = servers[kind]
        if up_name:
            p = b.up_path(up_name)
            check(H.wait_until(lambda: os.path.exists(p) and H.sha256_file(p) == up_sha, 10),
                  "the upload is not in %s's /up with the right sha256" % kind)
        if kind == "pure-ftpd":
            text = b.log_since(mk[kind])
            check("/pub/id.bin" in text, "pure-ftpd's transfer log does not show the download:\n%s" % text[-600:])
        else:
            # The session's QUIT is logged last; later sessions' marks start after it.
            H.wait_until(lambda: "QUIT" in b.command_lines(mk[kind]), 5)
            cmds = b.command_lines(mk[kind])
            check(any(c.startswith("RETR") and "id.bin" in c for c in cmds),
                  "%s's own log does not show the RETR: %s" % (kind, cmds[-8:]))
        others_quiet(kind, mk)
        return b

    def sni_route(tname):
        mk = marks()
        sha, up, upsha, welcome, _ = session(T[tname], H.FTP_USER, server_name=SNI_A)
        check_landed("pyftpdlib", mk, sha, up, upsha)

    s.run("SNI a.route.test (ftplib, explicit) -> pyftpdlib: sha256 down and up, its log", sni_route, "routed")

    def sni_curl(tname, scheme):
        t = T[tname]
        mk = marks()
        out = os.path.join(env.client_dir, "curl-sni-" + tname)
        r, trace = H.curl(t, ["--resolve", "%s:%d:127.0.0.1" % (SNI_A, t.port), "-o", out,
                              "%s://%s:%d/pub/id.bin" % (scheme, SNI_A, t.port)])
        check_eq(r.returncode, 0, "curl exit status (stderr tail: %s)" % r.stderr[-400:])
        check(re.search(r"subject: CN\s*=\s*a\.route\.test", trace), "curl did not get a.route.test's certificate")
        check_landed("pyftpdlib", mk, H.sha256_file(out), None, None)
        os.unlink(out)

    s.run("SNI a.route.test (curl --resolve, explicit) -> pyftpdlib", sni_curl, "routed", "ftp")
    s.run("SNI a.route.test (curl --resolve ftps://, implicit) -> pyftpdlib", sni_curl, "routed-imp", "ftps")

    def sni_openssl():
        t = T["routed-imp"]
        mk = marks()
        r = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % t.port, "-servername", SNI_A,
                            "-CAfile", ca, "-verify_return_error", "-quiet", "-ign_eof"],
                           input="USER anonymous\r\nPASS %s\r\nPWD\r\nQUIT\r\n" % H.PASSWORD,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=30)
        out = r.stdout
        check(GREETING in out, "no ftpsgate greeting in s_client's output:\n%s" % out[-800:])
        check(re.search(r"^230", out, re.M), "no 230 after the login through s_client:\n%s" % out[-800:])
        cmds = servers["pyftpdlib"].command_lines(mk["pyftpdlib"])
        check("PWD" in cmds, "pyftpdlib's log does not show the PWD of the s_client session: %s" % cmds)
        others_quiet("pyftpdlib", mk)

    s.run("SNI a.route.test (openssl s_client -servername, implicit) -> pyftpdlib's log", sni_openssl)

    def host_route():
        mk = marks()
        sha, up, upsha, welcome, host_reply = session(T["routed"], H.FTP_USER, host_cmd=HOST_B)
        check(welcome.startswith("220") and GREETING in welcome, "the greeting is not ftpsgate's own: %r" % welcome)
        check(host_reply.startswith("220"), "HOST %s: %r" % (HOST_B, host_reply))
        b = check_landed("proftpd", mk, sha, up, upsha)
        cmds = b.command_lines(mk["proftpd"])
        check(not any(c.upper().startswith("HOST") for c in cmds), "proftpd received HOST: %s" % cmds)

    s.run("HOST b.route.test (ftplib) -> proftpd: one 220 (ftpsgate's), HOST not forwarded, sha256, its log",
          host_route)

    def user_route():
        mk = marks()
        sha, up, upsha, _, _ = session(T["routed"], "fgtest")
        check_landed("pure-ftpd", mk, sha, up, upsha)

    s.run("USER fgtest -> pure-ftpd (its virtual user): sha256 down and up, its transfer log", user_route)

    def user_at_route():
        mk = marks()
        sha, up, upsha, _, _ = session(T["routed"], "%s@%s" % (H.FTP_USER, ALIAS_V.upper()))
        b = check_landed("vsftpd", mk, sha, up, upsha)
        users = [c for c in b.command_lines(mk["vsftpd"]) if c.upper().startswith("USER")]
        check_eq(users, ["USER " + H.FTP_USER], "the USER lines vsftpd received")

    s.run("USER anonymous@LEGACY-V -> vsftpd, which receives USER anonymous: sha256, its log", user_at_route)

    def data_modes():
        plan = [("pyftpdlib", dict(user=H.FTP_USER, server_name=SNI_A)),
                ("proftpd", dict(user=H.FTP_USER, host_cmd=HOST_B)),
                ("pure-ftpd", dict(user="fgtest")),
                ("vsftpd", dict(user="%s@%s" % (H.FTP_USER, ALIAS_V)))]
        for mode in ("PASV", "EPSV", "PORT", "EPRT"):
            for kind, kw in plan:
                mk = marks()
                try:
                    sha, up, upsha, _, _ = session(T["routed"], mode=mode, **kw)
                except Exception as e:  # noqa: BLE001
                    raise H.Fail("%s via %s: %s: %s" % (mode, kind, type(e).__name__, e))
                check_landed(kind, mk, sha, up, upsha)

    s.run("every data mode (PASV, EPSV, PORT, EPRT) on every route: sha256 down and up", data_modes)

    # ---- what ftpsgate answers itself ---------------------------------------------------------

    def own_answers():
        t = T["routed"]
        mk = marks()
        ctx = ssl.create_default_context(cafile=ca)
        c = H.Ctl(t, timeout=20)
        check_code(c.greeting, 220, "greeting")
        check(GREETING in c.greeting[1], "greeting text %r" % (c.greeting[1],))
        code, text = c.cmd("FEAT")
        check_eq(code, 211, "FEAT before the route is known")
        feats = [ln.strip().upper() for ln in text.splitlines()[1:-1]]
        for want in ("AUTH TLS", "PBSZ", "PROT", "HOST"):
            check(any(f.startswith(want) for f in feats), "FEAT before routing lacks %r: %s" % (want, feats))
        c.auth_tls(ctx)
        check_code(c.cmd("PWD"), 530, "PWD before USER (no server yet)")
        check_code(c.cmd("HOST"), 501, "HOST without an argument")
        check_code(c.cmd("HOST bad..name"), 501, "HOST with an invalid name")
        check_code(c.cmd("HOST " + HOST_B), 220, "HOST " + HOST_B)
        check_code(c.cmd("USER " + H.FTP_USER), 331, "USER after HOST")
        check_code(c.cmd("HOST other.example"), 503, "HOST after USER")
        check_code(c.cmd("PASS " + H.PASSWORD), 230, "PASS")
        check_code(c.cmd("NOOP"), 200, "NOOP after login")
        check(not c.readable(), "an extra reply (a second 220?) after the login")
        c.cmd("QUIT")
        c.close()
        cmds = servers["proftpd"].command_lines(mk["proftpd"])
        check(not any(x.upper().startswith(("HOST", "FEAT")) for x in cmds),
              "proftpd received HOST or FEAT: %s" % cmds)

    s.run("before the route: ftpsgate's greeting, its FEAT (AUTH TLS, HOST), 530 to other commands, "
          "HOST 501/220/503; no second 220", own_answers)

    def unmatched():
        t = T["routed"]
        mk = marks()
        before = metrics(env.proxy.admin_port).get("ftpsgate_routes_unmatched", 0)
        ctx = ssl.create_default_context(cafile=ca)
        c = H.Ctl(t, timeout=20)
        c.auth_tls(ctx)
        check_code(c.cmd("HOST unknown.route.test"), 220, "HOST of no route (user routes may still match)")
        code, text = c.cmd("USER nobody")
        check_eq(code, 530, "USER of no route: reply (%r)" % text)
        check_code(c.cmd("PASS " + H.PASSWORD), 503, "PASS after the refused USER")
        # The session lives on: no server connection may exist while it does.
        ports = sorted(int(b.address.rsplit(":", 1)[1]) for b in servers.values())
        r = H.run_cmd(["ss", "-Htn", "state", "established"], timeout=10)
        peers = [ln.split()[-1] for ln in r.stdout.splitlines() if ln.split()]
        open_to = [p for p in peers if p.rsplit(":", 1)[-1].isdigit() and int(p.rsplit(":", 1)[-1]) in ports]
        check(not open_to, "established connections to backends while only the unmatched session lives: %s" % open_to)
        check_code(c.cmd("NOOP"), 200, "NOOP: the session goes on after the refusal")
        check_code(c.cmd("PWD"), 530, "PWD with no server")
        c.cmd("QUIT")
        c.close()
        for k, b in servers.items():
            if k == "pure-ftpd":
                continue
            text = b.log_since(mk[k])
            check(text.strip() == "", "%s logged something for the unmatched session:\n%s" % (k, text[-500:]))
        check(H.wait_until(lambda: metrics(env.proxy.admin_port).get("ftpsgate_routes_unmatched", 0)
                           == before + 1, 5), "ftpsgate_routes_unmatched did not grow by 1")
        check(re.search(r"no route for this session .*no server contacted", env.proxy.log_text()),
              "the proxy log does not say the session had no route")

    s.run("no route, no default: USER gets 530, no server sees a connection (logs, ss), counted and logged",
          unmatched)

    def retry_user():
        t = T["routed"]
        mk = marks()
        ctx = ssl.create_default_context(cafile=ca)
        c = H.Ctl(t, timeout=20)
        c.auth_tls(ctx)
        check_code(c.cmd("USER nobody"), 530, "USER of no route")
        check_code(c.cmd("USER fgtest"), 331, "a second USER that has a route")
        check_code(c.cmd("PASS " + H.PASSWORD), 230, "PASS")
        check_code(c.cmd("PWD"), 257, "PWD at pure-ftpd")
        c.cmd("QUIT")
        c.close()
        others_quiet("pure-ftpd", mk)

    s.run("after a USER no route takes, another USER may find one (pure-ftpd)", retry_user)

    # ---- PROXY protocol ------------------------------------------------------------------------

    def proxied():
        t = T["routed-pp"]
        header = b"PROXY TCP4 127.0.0.9 127.0.0.1 4242 %d\r\n" % t.port
        mk = marks()
        sha, up, upsha, _, _ = session(t, "fgtest", proxy_header=header)
        check_landed("pure-ftpd", mk, sha, up, upsha)
        check(re.search(r"client=127\.0\.0\.9:4242 route: user fgtest", env.proxy.log_text()),
              "the route log line does not name the client of the PROXY header")
        mk = marks()
        sha, up, upsha, _, _ = session(t, H.FTP_USER, proxy_header=header.replace(b"4242", b"4243"))
        check_landed("vsftpd", mk, sha, up, upsha)

    s.run("PROXY v1 listener: USER fgtest -> pure-ftpd (route logged with the real client); "
          "another user -> the default backend (vsftpd)", proxied)


if __name__ == "__main__":
    H.main_wrapper("routes", body)
