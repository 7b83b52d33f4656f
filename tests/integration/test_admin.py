#!/usr/bin/python3
"""The admin endpoint (admin.bind): /healthz, /metrics in the Prometheus text
format with every metric the README documents, counters that follow what really
happened (a transfer, a refusal, an over-long line), 404/405, and the TLS session
cache gauge: a TLS 1.2 control session and the full-handshake sessions of data
connections that do not reuse leave the server's session cache when their
session ends (they would otherwise stay there for the 7 days of a session's
lifetime).
"""
import calendar
import ftplib
import hashlib
import http.client
import os
import re
import signal
import socket
import ssl
import time

import harness as H
from harness import check, check_code, check_eq

KEEPALIVE = 45  # limits.tcp_keepalive, s (Linux's own default idle time is 7200 s)
README = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "README.md")


def http_get(port, path, method="GET"):
    c = http.client.HTTPConnection(H.HOST, port, timeout=10)
    try:
        c.request(method, path)
        r = c.getresponse()
        return r.status, r.read().decode()
    finally:
        c.close()


def metrics(port):
    status, body = http_get(port, "/metrics")
    check_eq(status, 200, "GET /metrics status")
    out = {}
    for ln in body.splitlines():
        if ln and not ln.startswith("#"):
            name, _, value = ln.partition(" ")
            out[name] = int(value)
    return out, body


def documented_metrics():
    with open(README) as f:
        return set(re.findall(r"^\| `(ftpsgate_[a-z_]+)` \|", f.read(), re.M))


def tls12_ctx(ca, tickets):
    ctx = ssl.create_default_context(cafile=ca)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    if not tickets:
        ctx.options |= ssl.OP_NO_TICKET
    return ctx


def body(s, env):
    if H.SELFCHECK:
        s.run("admin endpoint (tests ftpsgate itself)", H.needs_proxy)
        return
    vs = env.backend("vs1")
    sha = vs.add_pub("m.bin", 1 * H.MiB + 3)
    vs.add_pub("big.bin", 64 * H.MiB)
    main = env.front(vs, "main")
    noreuse = env.front(vs, "noreuse", policy={"require_session_reuse": False})
    env.proxy.admin_port = port = H.free_port()
    env.proxy.extra_limits = {"tcp_keepalive": KEEPALIVE}
    env.start(main, noreuse)
    ca = env.certs.ca

    def wait_idle(base):
        """Sessions of earlier steps are counted as gone (their close is asynchronous)."""
        H.wait_until(lambda: metrics(port)[0].get("ftpsgate_sessions_active") == base, 10)

    def health_and_names():
        check_eq(http_get(port, "/healthz"), (200, "ok\n"), "GET /healthz")
        m, text = metrics(port)
        for name in m:
            check(re.search(r"^# TYPE %s (counter|gauge)$" % name.split("{")[0], text, re.M),
                  "no TYPE line for %s" % name)
        check_eq({k.split("{")[0] for k in m}, documented_metrics(), "metrics served vs the README's table")
        check_eq(http_get(port, "/nope")[0], 404, "GET /nope")
        check_eq(http_get(port, "/metrics", "POST")[0], 405, "POST /metrics")

    s.run("/healthz 200; /metrics names = the README's table, each with a TYPE; 404, 405", health_and_names)

    def counters_follow():
        before, _ = metrics(port)
        f = H.ftplib_connect(main)
        try:
            n, got, resp = H.ftplib_get(f, "/pub/m.bin")
            check_eq((n, got), (1 * H.MiB + 3, sha), "download through the proxy")
            check(f.sendcmd("NOOP").startswith("200"), "NOOP")
            try:
                f.sendcmd("SITE " + "x" * 5000)
            except Exception:  # noqa: BLE001 - the 500 for the over-long line raises
                pass
        finally:
            H.quit_quietly(f)
        c = H.Ctl(main)  # plain USER before TLS: 534
        check_eq(c.cmd("USER anonymous")[0], 534, "USER before TLS")
        c.close()
        wait_idle(before["ftpsgate_sessions_active"])
        after, _ = metrics(port)
        d = {k: after[k] - before.get(k, 0) for k in after}
        check_eq(d["ftpsgate_sessions_total"], 2, "sessions_total increase")
        check_eq(d["ftpsgate_transfers_ok"], 1, "transfers_ok increase")
        check_eq(d["ftpsgate_transfers_failed"], 0, "transfers_failed increase")
        check_eq(d["ftpsgate_bytes_to_client"], 1 * H.MiB + 3, "bytes_to_client increase")
        check_eq(d["ftpsgate_lines_too_long"], 1, "lines_too_long increase")
        check_eq(d["ftpsgate_policy_refusals"], 1, "policy_refusals increase (534)")
        check_eq(after["ftpsgate_sessions_active"], 0, "sessions_active after both ended")

    s.run("counters follow: 2 sessions, 1 transfer of 1 MiB+3 bytes, 1 over-long line, 1 refusal", counters_follow)

    def abor_counted():
        """A transfer cut short by ABOR counts as failed, with the bytes it moved."""
        wait_idle(0)
        before, _ = metrics(port)
        ctx = ssl.create_default_context(cafile=ca)
        c = H.Ctl(main).secure_login(ctx)
        d = socket.create_connection(c.pasv(), timeout=30)
        check_eq(c.cmd("RETR /pub/big.bin")[0], 150, "RETR")
        d = c.wrap_data(d, ctx)
        got = 0
        while got < 256 * H.KiB:
            b = d.recv(65536)
            check(b, "the download ended after %d bytes" % got)
            got += len(b)
        codes = [c.cmd("ABOR", timeout=20)[0]]
        if codes[0] == 426:
            codes.append(c.reply(20)[0])
        d.close()
        check(len(codes) == 2 and codes[1] in (225, 226), "replies to ABOR mid-download: %r" % codes)
        c.close()
        wait_idle(0)
        after, _ = metrics(port)
        check_eq(after["ftpsgate_transfers_failed"] - before["ftpsgate_transfers_failed"], 1,
                 "transfers_failed increase after ABOR")
        check(after["ftpsgate_bytes_to_client"] - before["ftpsgate_bytes_to_client"] >= got,
              "bytes_to_client did not count the aborted transfer's bytes")

    s.run("ABOR mid-download: 426 + 225/226, counted as a failed transfer with its bytes", abor_counted)

    def session_cache():
        wait_idle(0)
        base = metrics(port)[0]["ftpsgate_tls_sessions_cached"]
        # A TLS 1.2 control session by session id (no tickets): cached while the session lives.
        ctx = tls12_ctx(ca, tickets=False)
        f = H.ftplib_connect(main, ctx=ctx)
        try:
            check_eq(f.sock.version(), "TLSv1.2", "control TLS version")
            n, got, _ = H.ftplib_get(f, "/pub/m.bin")
            check_eq(got, sha, "download over TLS 1.2, session id resumption")
            check(metrics(port)[0]["ftpsgate_tls_sessions_cached"] >= base + 1,
                  "the live control session is not in the server cache")
        finally:
            H.quit_quietly(f)
        # Stock ftplib on the reuse-off listener: every data connection is a full TLS 1.2
        # handshake with a session of its own.
        for _ in range(3):
            g = ftplib.FTP_TLS(context=tls12_ctx(ca, tickets=False), timeout=30)
            try:
                g.connect(noreuse.host, noreuse.port)
                g.auth()
                g.login(H.FTP_USER, H.PASSWORD)
                g.prot_p()
                h = hashlib.sha256()
                g.retrbinary("RETR /pub/m.bin", h.update)
                check_eq(h.hexdigest(), sha, "download without reuse")
            finally:
                H.quit_quietly(g)
        wait_idle(0)
        check(H.wait_until(lambda: metrics(port)[0]["ftpsgate_tls_sessions_cached"] == base, 10),
              "TLS sessions left in the server cache after every session ended: %d (was %d)"
              % (metrics(port)[0]["ftpsgate_tls_sessions_cached"], base))

    s.run("TLS session cache: a live control session is cached; after the sessions end (control and "
          "non-reusing data) the cache is back where it was", session_cache)

    def certificate_expiry():
        r = H.run_cmd(["openssl", "x509", "-noout", "-enddate", "-in", env.certs.cert], timeout=10)
        end = calendar.timegm(time.strptime(r.stdout.strip().split("=", 1)[1], "%b %d %H:%M:%S %Y %Z"))
        m, _ = metrics(port)
        check_eq(m.get('ftpsgate_tls_certificate_not_after_seconds{identity="main"}'), end,
                 "ftpsgate_tls_certificate_not_after_seconds of identity main vs openssl's notAfter")
        # The test certificates are valid for 2 days: the start-up warning names the identity and the date.
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(end))
        check("tls.main: the certificate expires at %s" % when in env.proxy.log_text(),
              "no expiry warning for tls.main (%s) at start" % when)

    s.run("certificate expiry: the metric is the certificate's notAfter; a warning at start (under 14 days)",
          certificate_expiry)

    def keepalive_on_control():
        """Both control sockets of a session (toward the client and toward the backend) carry
        TCP keepalive with tcp_keepalive's idle time: ss shows their keepalive timer."""
        pid = env.proxy.pid
        f = H.ftplib_connect(main)
        try:
            cport = f.sock.getsockname()[1]

            def owned(local):
                r = H.run_cmd(["ss", "-tnpH", "state", "established", "src", local], timeout=10)
                return "pid=%d," % pid in r.stdout

            def timers():
                r = H.run_cmd(["ss", "-tnoH", "state", "established"], timeout=10)
                mine = {}
                for ln in r.stdout.splitlines():
                    fields = ln.split()
                    if len(fields) < 4:
                        continue
                    local, peer = fields[2], fields[3]
                    if local.endswith(":%d" % main.port) and peer.endswith(":%d" % cport):
                        mine["client side"] = ln
                    elif peer.endswith(":%d" % vs.port) and owned(local):
                        mine["backend side"] = ln
                return mine
            found = {}

            def both_idle():  # ss shows one timer: a retransmit/ACK one while bytes are in flight
                found.update(timers())
                return len(found) == 2 and all("keepalive" in ln for ln in found.values())
            H.wait_until(both_idle, 10, step=0.1)
            check_eq(sorted(found), ["backend side", "client side"], "proxy control sockets found by ss")
            for side, ln in sorted(found.items()):
                m = re.search(r"timer:\(keepalive,(\d+)(ms|sec),", ln)
                check(m, "no keepalive timer of seconds on the %s control socket: %s" % (side, ln))
                left = int(m.group(1)) / (1000.0 if m.group(2) == "ms" else 1.0)
                check(0 < left <= KEEPALIVE, "keepalive timer %s on the %s side, want at most tcp_keepalive %d s"
                      % (m.group(0), side, KEEPALIVE))
        finally:
            H.quit_quietly(f)

    s.run("tcp_keepalive: both control sockets of a session have a keepalive timer (ss)", keepalive_on_control)

    def admin_is_http_only():
        # The admin port is not an FTP listener: a TLS ClientHello gets no TLS back.
        with socket.create_connection((H.HOST, port), timeout=10) as raw:
            try:
                ssl.create_default_context(cafile=ca).wrap_socket(raw, server_hostname="localhost")
                raise H.Fail("a TLS handshake succeeded on the admin port")
            except (ssl.SSLError, OSError):
                pass
        check_eq(http_get(port, "/healthz")[0], 200, "admin endpoint still answers")

    s.run("garbage (a TLS ClientHello) on the admin port: no TLS, the endpoint goes on", admin_is_http_only)

    def draining_health():
        # SIGTERM drains: the live session goes on, new ones are refused, and /healthz says 503 so a
        # balancer's health check takes the instance out at once (not when the process is gone).
        c = H.Ctl(main, timeout=20).secure_login(ssl.create_default_context(cafile=ca), "P")
        env.proxy.proc.send_signal(signal.SIGTERM)
        check(H.wait_until(lambda: http_get(port, "/healthz")[0] == 503, 10), "/healthz is not 503 while draining")
        check_eq(http_get(port, "/healthz"), (503, "draining\n"), "GET /healthz while draining")
        check_eq(http_get(port, "/metrics")[0], 200, "GET /metrics while draining")
        check_code(c.cmd("NOOP"), 200, "the live session goes on while draining")
        c.cmd("QUIT")
        c.close()
        env.proxy.proc.wait(20)
        check_eq(env.proxy.proc.returncode, 0, "exit status after the drain")
        env.start(main, noreuse)  # the final checks run on a live proxy
        check_eq(http_get(env.proxy.admin_port, "/healthz"), (200, "ok\n"), "GET /healthz after a restart")

    s.run("SIGTERM: /healthz 503 draining while a session lives on, exit 0 when it ends", draining_health)


if __name__ == "__main__":
    H.main_wrapper("admin", body, need_bytes=64 * H.MiB)
