#!/usr/bin/python3
"""The live session view (GET /sessions, DESIGN.md §6) and admin.token.

One proxy with admin.token, workers: 2, three listeners: "main" in front of vsftpd,
"anyuser" in front of a pyftpdlib where every user name logs in (names with quotes,
backslashes, control characters and markup), "pp" behind the PROXY protocol.

- admin.token: without it, or with a wrong one (Bearer or Basic), /sessions, /metrics
  and /status answer 401 with WWW-Authenticate: Basic; Bearer and Basic (any user name)
  with the token pass; /healthz needs none.
- A download that the client (ftplib) reads at a steady pace of PACE bytes/s from
  vsftpd: its session shows the user, listener, client address (the client's own
  socket), backend, TLS version and cipher, RETR with the path (cut at 256 bytes and
  marked), direction download, bytes that grow between two reads, and a rate_bps within
  a factor 2 of the pace. That bound is a consistency check of the figure against an
  independent measure (what the client really read per second), not a speed
  requirement on the proxy: the proxy only relays at the pace the client sets. The
  bytes arrive intact (sha256), and after QUIT the session is gone from the list.
  Bytes (IAC) 0xFF are Telnet's, so invalid UTF-8 is sent as 0xFE 0xC3 '('.
- An upload paced by the client: direction upload, STOR, bytes growing; sha256 at vsftpd.
- PROXY protocol: the session's client is the address in the PROXY header.
- ?limit=N lists N (running transfers first), total counts every session, truncated is
  true; limit=0 lists none; a bad limit is 400.
- workers: 2: sessions accepted by both loops (the per-worker metric) are all listed.
- Peer strings: the document parses as strict JSON and each user name comes back as
  sent (invalid UTF-8 as U+FFFD), with no raw '<' anywhere in the body.
"""
import hashlib
import os
import socket
import ssl
import time

import adminhttp as A
import harness as H
from harness import check, check_eq

PACE = 1 * H.MiB  # bytes/s the client reads or writes at
LONG_DIR = "d" * 200
LONG_NAME = "f" * 90 + ".bin"
LONG_PATH = "/pub/%s/%s" % (LONG_DIR, LONG_NAME)  # 300 bytes: the live view keeps 256


class PacedReader:
    """A file-like object for storbinary: size random bytes at pace bytes/s."""

    def __init__(self, size, pace):
        self.left, self.pace, self.sent, self.t0 = size, pace, 0, None
        self.h = hashlib.sha256()

    def read(self, n):
        if self.t0 is None:
            self.t0 = time.monotonic()
        n = min(n, self.left, 16 * H.KiB)
        ahead = self.sent / self.pace - (time.monotonic() - self.t0)
        if ahead > 0:
            time.sleep(ahead)
        b = os.urandom(n)
        self.h.update(b)
        self.left -= n
        self.sent += n
        return b


def pp_ctl(target, header):
    """A control connection that sends a PROXY header first (Ctl reads the greeting at once)."""
    c = H.Ctl.__new__(H.Ctl)
    c.target, c.timeout, c.server_name = target, 20, target.host
    c.buf, c.tls, c.ctx, c.saved_session = b"", False, None, None
    c.sock = socket.create_connection((target.host, target.port), timeout=20)
    c.sock.sendall(header)
    c.greeting = c.reply()
    return c


def body(s, env):
    if H.SELFCHECK:
        s.run("live sessions (tests ftpsgate itself)", H.needs_proxy)
        return
    vs = env.backend("vs1")
    os.makedirs(os.path.join(vs.pub, LONG_DIR))
    size = 16 * H.MiB  # 16 s at the pace: the proxy relays ahead by what the socket buffers hold
    sha = H.make_file(os.path.join(vs.pub, LONG_DIR, LONG_NAME), size)
    anyb = A.AnyUserPyftpd(env, "any1").start()
    env.backends.append(anyb)
    main = env.front(vs, "main")
    anyuser = env.front(anyb, "anyuser", protection="any")
    pp = env.front(vs, "pp")
    pp.listener["proxy_protocol"] = {"trusted": ["127.0.0.1/32"]}
    port = H.free_port()
    env.proxy.extra_top["admin"] = {"bind": "%s:%d" % (H.HOST, port), "token": A.TOKEN}
    env.proxy.extra_top["workers"] = 2
    env.start(main, anyuser, pp)
    ca = env.certs.ca

    def wait_listed(pred, what, timeout=10):
        got = []

        def find():
            doc = A.sessions(port)
            hit = [x for x in doc["sessions"] if pred(x)]
            if hit:
                got[:] = [doc, hit[0]]
            return bool(hit)
        check(H.wait_until(find, timeout, step=0.2), "%s: not in /sessions within %ss" % (what, timeout))
        return got

    # ---- admin.token ---------------------------------------------------------------------

    def token():
        for path in ("/sessions", "/metrics", "/status"):
            st, hdr, _ = A.get(port, path)
            check_eq(st, 401, "GET %s without the token" % path)
            check(hdr.get("www-authenticate", "").startswith("Basic "),
                  "401 without WWW-Authenticate: Basic (%r)" % hdr.get("www-authenticate"))
            check_eq(A.get(port, path, "wrong-token-0123456789")[0], 401, "GET %s with a wrong Bearer token" % path)
            check_eq(A.get(port, path, A.TOKEN + "x")[0], 401, "GET %s with the token and one more byte" % path)
            check_eq(A.get(port, path, A.TOKEN[:-1])[0], 401, "GET %s with the token less one byte" % path)
            check_eq(A.get(port, path, "wrong-token-0123456789", basic_user="ops")[0], 401,
                     "GET %s with a wrong Basic password" % path)
            check_eq(A.get(port, path, A.TOKEN, scheme="Digest")[0], 401, "GET %s with another scheme" % path)
            check_eq(A.get(port, path, A.TOKEN)[0], 200, "GET %s with Bearer TOKEN" % path)
            check_eq(A.get(port, path, A.TOKEN, basic_user="anyone")[0], 200, "GET %s with Basic anyone:TOKEN" % path)
            check_eq(A.get(port, path, A.TOKEN, basic_user="")[0], 200, "GET %s with Basic :TOKEN" % path)
        st, _, b = A.get(port, "/healthz")
        check_eq((st, b), (200, b"ok\n"), "GET /healthz without a token")
        check(A.TOKEN not in env.proxy.log_text(), "the proxy log contains the admin token")

    s.run("admin.token: none, wrong, Bearer, Basic (any user) on /sessions /metrics /status; /healthz open",
          token)

    # ---- a slow download -------------------------------------------------------------------

    def slow_download():
        f = H.ftplib_connect(main)
        out = {}
        t, err = A.in_thread(A.paced_retr, f, LONG_PATH, PACE, out)
        try:
            H.wait_until(lambda: "client" in out, 5)
            client = out["client"]
            doc, e = wait_listed(lambda x: x["client"] == client and x["transfer"], "the download")
            check_eq(e["listener"], "main", "listener")
            check_eq(e.get("user"), H.FTP_USER, "user")
            check_eq(e["backend"], "%s:%d" % (H.HOST, vs.port), "backend")
            check(e["tls"] and e["tls"]["version"].startswith("TLSv1."), "tls version: %r" % e["tls"])
            check(e["tls"]["cipher"], "tls cipher: %r" % e["tls"])
            x = e["transfer"]
            check_eq((x["command"], x["direction"]), ("RETR", "download"), "command, direction")
            check_eq(x["path"], LONG_PATH[:256], "path, cut at 256 bytes")
            check_eq(x.get("path_truncated"), True, "path_truncated")
            first = x["bytes"]
            time.sleep(2.5)
            e2 = A.by_client(A.sessions(port), client)
            check(e2 and e2["transfer"], "the download is no longer listed at its second read")
            check(e2["transfer"]["bytes"] > first, "bytes did not grow: %d then %d" % (first, e2["transfer"]["bytes"]))
            # The rate over a window (~5 s) that starts after the socket buffers filled.
            time.sleep(4.5)
            e3 = A.by_client(A.sessions(port), client)
            check(e3 and e3["transfer"], "the download is no longer listed at its third read")
            rate = e3["transfer"]["rate_bps"]
            print("     pace %d B/s; rate_bps shown %d (%.2fx); the proxy had relayed %d bytes" % (
                PACE, rate, rate / PACE, e3["transfer"]["bytes"]), flush=True)
            check(PACE / 2 <= rate <= PACE * 2, "rate_bps %d is not within a factor 2 of the pace %d" % (rate, PACE))
        finally:
            t.join(60)
        check(not err, "the download failed: %r" % err)
        check_eq((out["n"], out["sha"]), (size, sha), "bytes and sha256 of the download")
        before = A.sessions(port)
        check(A.by_client(before, out["client"]) is not None, "the idle session is not listed after the transfer")
        check(A.by_client(before, out["client"])["transfer"] is None, "transfer not null once it ended")
        H.quit_quietly(f)
        check(H.wait_until(lambda: A.by_client(A.sessions(port), out["client"]) is None, 10, step=0.3),
              "the session is still listed 10 s after QUIT")

    s.run("slow download (1 MiB/s from vsftpd): user, listener, client, backend, TLS, RETR path cut at 256, bytes grow, rate within 2x of the pace; gone after QUIT", slow_download)

    def slow_upload():
        f = H.ftplib_connect(main)
        client = "%s:%d" % f.sock.getsockname()[:2]
        src = PacedReader(4 * H.MiB, PACE)
        name = "live-%s.bin" % os.urandom(3).hex()
        t, err = A.in_thread(f.storbinary, "STOR /up/" + name, src)
        try:
            _, e = wait_listed(lambda x: x["client"] == client and x["transfer"], "the upload")
            x = e["transfer"]
            check_eq((x["command"], x["direction"], x["path"]), ("STOR", "upload", "/up/" + name),
                     "command, direction, path")
            time.sleep(1.5)
            e2 = A.by_client(A.sessions(port), client)
            check(e2 and e2["transfer"] and e2["transfer"]["bytes"] > x["bytes"],
                  "upload bytes did not grow: %r then %r" % (x, e2 and e2["transfer"]))
        finally:
            t.join(60)
        check(not err, "the upload failed: %r" % err)
        H.quit_quietly(f)
        check(H.wait_until(lambda: os.path.exists(vs.up_path(name)) and
                           H.sha256_file(vs.up_path(name)) == src.h.hexdigest(), 10),
              "the uploaded file at vsftpd is not the bytes sent")

    s.run("slow upload: STOR, direction upload, bytes grow; sha256 at vsftpd", slow_upload)

    # ---- PROXY protocol ------------------------------------------------------------------

    def proxy_protocol():
        c = pp_ctl(pp, b"PROXY TCP4 203.0.113.77 127.0.0.1 40123 %d\r\n" % pp.port)
        try:
            c.auth_tls(ssl.create_default_context(cafile=ca))
            c.login()
            _, e = wait_listed(lambda x: x["listener"] == "pp", "the PROXY session")
            check_eq(e["client"], "203.0.113.77:40123", "client behind the PROXY header")
            check_eq(e.get("user"), H.FTP_USER, "user")
        finally:
            c.close()

    s.run("PROXY protocol listener: client is the PROXY header's address", proxy_protocol)

    # ---- limit, workers ------------------------------------------------------------------

    def limit_and_workers():
        def per_worker():
            _, _, text = A.get(port, "/metrics", A.TOKEN)
            out = {}
            for ln in text.decode().splitlines():
                if ln.startswith("ftpsgate_worker_sessions_total{"):
                    out[ln.split('"')[1]] = int(ln.split()[1])
            return out
        w0 = per_worker()
        ctls = []
        try:
            for _ in range(16):
                c = H.Ctl(main)
                c.auth_tls(ssl.create_default_context(cafile=ca))
                ctls.append(c)
            clients = {"%s:%d" % c.sock.getsockname()[:2] for c in ctls}
            w1 = per_worker()
            grew = {w for w in w1 if w1[w] > w0.get(w, 0)}
            check_eq(grew, {"0", "1"}, "workers that accepted the 16 sessions")
            check(H.wait_until(lambda: clients <= {x["client"] for x in A.sessions(port)["sessions"]}, 10, 0.3),
                  "not every session of both workers is listed")
            doc = A.sessions(port, limit=3)
            check_eq(len(doc["sessions"]), 3, "sessions listed with limit=3")
            check(doc["total"] >= 16, "total %d with 16 sessions open" % doc["total"])
            check_eq((doc["limit"], doc["truncated"]), (3, True), "limit, truncated")
            ids = [x["id"] for x in doc["sessions"]]
            check_eq(ids, sorted(ids, reverse=True), "idle sessions, newest first")
            doc0 = A.sessions(port, limit=0)
            check_eq((len(doc0["sessions"]), doc0["total"] >= 16), (0, True), "limit=0: none listed, all counted")
            full = A.sessions(port)
            check_eq(len(full["sessions"]), full["total"], "default limit lists all of a few sessions")
            names = {ln["name"]: ln["sessions"] for ln in full["listeners"]}
            check(names.get("main", 0) >= 16, "listener main counts %r" % names)
            for bad in ("abc", "-1", "10001", "", "1e3"):
                check_eq(A.get(port, "/sessions?limit=" + bad, A.TOKEN)[0], 400, "limit=%r" % bad)
            check(full["certificates"] and full["certificates"][0]["identity"] == "main" and
                  full["certificates"][0]["not_after"].endswith("Z"), "certificates: %r" % full["certificates"])
        finally:
            for c in ctls:
                c.close()

    s.run("?limit=N (and 0, bad ones 400); workers: 2, sessions of both loops all listed; listener counts",
          limit_and_workers)

    # ---- peer strings --------------------------------------------------------------------

    names = [b'q"uo\\te', b"tab\tand\x01ctl\x7f", b"<script>document.title='pwned'</script>",
             b'"><img src=x onerror=alert(1)>', "utf8-\u00e9\u65e5\u672c".encode(), b"bad-\xfe\xc3(-utf8",
             b"x" * 200]
    shown = [n.decode("utf-8", "replace") for n in names]

    def peer_strings():
        ctls = []
        try:
            for n in names:
                c = H.Ctl(anyuser)
                c.auth_tls(ssl.create_default_context(cafile=ca))
                c.send(b"USER " + n + b"\r\n")
                H.check_code(c.reply(), 331, "USER %r" % n)
                H.check_code(c.cmd("PASS x"), 230, "PASS for %r" % n)
                ctls.append(c)
            clients = {"%s:%d" % c.sock.getsockname()[:2]: shown[i] for i, c in enumerate(ctls)}

            def all_in():
                docs = A.sessions(port)
                return all(A.by_client(docs, k) and A.by_client(docs, k).get("user") is not None for k in clients)
            check(H.wait_until(all_in, 10, 0.3), "not every odd user name is listed")
            st, _, raw = A.get(port, "/sessions", A.TOKEN)
            check(b"<" not in raw and b">" not in raw, "a raw < or > in the /sessions body")
            doc = A.sessions(port)
            for k, want in clients.items():
                check_eq(A.by_client(doc, k)["user"], want, "user name of %s" % k)
        finally:
            for c in ctls:
                c.close()

    s.run("peer strings (quotes, backslash, control chars, <script>, invalid UTF-8): strict JSON, names back as sent",
          peer_strings)


if __name__ == "__main__":
    H.main_wrapper("live-sessions", body, need_bytes=256 * H.MiB)
