#!/usr/bin/python3
"""Session limits and timeouts (README "limits"):
  - max_sessions_per_ip counts a client's sessions on every listener of the process;
  - max_sessions counts every listener's sessions: past it a new connection gets 421
    at once and is closed, the live sessions go on, and once one leaves a new session
    logs in and transfers (a second ftpsgate process with its own configuration);
  - the login deadline runs from connect: commands before login (NOOP) do not extend it;
  - after login the idle timeout applies and a command restarts it.
Every wait is bounded; the timeouts are set to a few seconds for the test.
"""
import json
import os
import time

import harness as H
from harness import check, check_code, check_eq


def fresh_session(target, timeout=10):
    """A session once the proxy has counted earlier ones as gone (closes are asynchronous)."""
    deadline = time.monotonic() + timeout
    while True:
        c = H.Ctl(target)
        if c.greeting[0] == 220 or time.monotonic() > deadline:
            return c
        c.close()
        time.sleep(0.2)


def body(s, env):
    if H.SELFCHECK:
        s.run("limits (tests ftpsgate itself)", H.needs_proxy)
        return
    vs = env.backend("vs1")
    a = env.front(vs, "a")
    b = env.front(vs, "b")
    env.proxy.extra_limits = {"max_sessions_per_ip": 2, "max_sessions": 0, "login_timeout": 2, "idle_timeout": 3}
    sha_small = vs.add_pub("small.bin", 64 * H.KiB + 1)
    env.start(a, b)
    pid = env.proxy.pid

    def per_ip_across_listeners():
        c1 = H.Ctl(a)
        check_code(c1.greeting, 220, "first session (listener a)")
        c2 = H.Ctl(b)
        check_code(c2.greeting, 220, "second session (listener b)")
        c3 = H.Ctl(a)
        check_eq(c3.greeting[0], 421, "third session from the same IP, over two listeners (%r)" % (c3.greeting,))
        c3.close()
        c1.close()
        # Once one session is gone a new one is accepted again (bounded wait for the close).
        def accepted():
            c = H.Ctl(b)
            ok = c.greeting[0] == 220
            c.close()
            return ok
        check(H.wait_until(accepted, 10, step=0.3), "no new session accepted after one closed")
        c2.close()

    def login_deadline_not_extended():
        c = fresh_session(a)
        check_code(c.greeting, 220, "greeting")
        start = time.monotonic()
        closed_after = None
        while time.monotonic() - start < 10:
            try:
                code, text = c.cmd("NOOP", timeout=5)
            except Exception:  # noqa: BLE001 - closed by the proxy
                closed_after = time.monotonic() - start
                break
            if code == 421:
                closed_after = time.monotonic() - start
                break
            time.sleep(0.4)
        c.close()
        check(closed_after is not None, "NOOPs kept an unauthenticated session open for 10 s (login_timeout 2)")
        print("     (closed %.1f s after connect with login_timeout 2)" % closed_after)

    def idle_restarted_by_commands():
        c = fresh_session(a)
        c.secure_login(H.ssl.create_default_context(cafile=a.ca), "P")
        start = time.monotonic()
        while time.monotonic() - start < 5:  # longer than idle_timeout 3: NOOPs keep it alive
            check_code(c.cmd("NOOP"), 200, "NOOP after login")
            time.sleep(1)
        code = None
        try:
            code, _ = c.reply(timeout=8)  # now silent: the idle timeout ends the session
        except Exception:  # noqa: BLE001
            code = "closed"
        c.close()
        check(code in (421, "closed"), "idle session not ended after idle_timeout (%r)" % (code,))

    def flood_without_reading():
        """Commands the proxy answers itself (PBSZ before TLS -> 503), sent without ever
        reading a reply: the proxy must stop reading, not queue replies without end."""
        c = fresh_session(a)
        sock = c.sock
        sock.setblocking(False)
        chunk = b"PBSZ 0\r\n" * 8192  # 64 KiB of commands
        sent = 0
        before = H.rss_kib(pid) or 0
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline and sent < 256 * H.MiB:
            try:
                sent += sock.send(chunk)
            except BlockingIOError:
                time.sleep(0.05)
            except OSError:
                break
        time.sleep(0.5)
        after = H.rss_kib(pid) or 0
        print("     (client pushed %d KiB of commands before the proxy stopped reading; proxy RSS %d -> %d KiB)"
              % (sent // 1024, before, after))
        # ASan keeps freed blocks in quarantine, so its RSS bound is looser; the bytes the
        # client managed to push (kernel buffers only, once the proxy stops reading) are the
        # sharper check either way.
        bound = 128 * 1024 if env.proxy.sanitized else 32 * 1024
        check(after - before < bound, "proxy RSS grew by %d KiB for a client that never reads" % (after - before))
        check(sent < 64 * H.MiB, "the proxy kept reading commands (%d KiB) from a client that never reads replies"
              % (sent // 1024))
        c.close()

    def max_sessions_total():
        """max_sessions 3 over two listeners, in a second process (this one's limits differ)."""
        cfg = env.proxy.config()
        targets = []
        for ln in cfg["listeners"]:
            lo, hi = H.free_port_block(8)
            ln["bind"] = "%s:%d" % (H.HOST, H.free_port())
            ln["passive"] = dict(ln["passive"], ports="%d-%d" % (lo, hi))
            targets.append(H.Target(ln["name"], int(ln["bind"].rsplit(":", 1)[1]), True, env.certs.ca, vs, ln))
        cfg["limits"] = dict(cfg["limits"], max_sessions=3, max_sessions_per_ip=0, login_timeout=60,
                             idle_timeout=60)
        path = os.path.join(env.tmp, "max3.json")
        with open(path, "w") as f:
            json.dump(cfg, f)
        log = os.path.join(env.tmp, "max3.log")
        p = H.spawn([env.proxy.binary, "-c", path], log)
        ctls = []
        try:
            check(all(H.wait_port(H.HOST, t.port, 30, p) for t in targets), "second proxy did not listen: %s"
                  % H.tail_file(log, 10))
            ta, tb = targets
            ctx = H.ssl.create_default_context(cafile=ta.ca)
            for t in (ta, tb, ta):
                c = H.Ctl(t)
                ctls.append(c)
                check_code(c.greeting, 220, "session %d" % len(ctls))
            ctls[0].secure_login(ctx, "P")
            for t in (tb, ta):
                c = H.Ctl(t)
                check_eq(c.greeting[0], 421, "a 4th session past max_sessions 3 (%r)" % (c.greeting,))
                check("too many sessions" in c.greeting[1], "421 text: %r" % c.greeting[1])
                how, _ = H.recv_until_closed(c.sock, 10)
                c.close()
                check(how in ("eof", "reset"), "the refused connection stayed open (%s)" % how)
            check(p.poll() is None, "the second proxy died")
            check_code(ctls[0].cmd("PWD"), 257, "a live session goes on past the refusals")
            ctls.pop(1).close()
            # Once one session is gone (closes are asynchronous: bounded wait), a new one
            # logs in and downloads.
            def fresh():
                c = H.Ctl(tb)
                if c.greeting[0] == 220:
                    return c
                c.close()
                return None
            c = H.wait_until(fresh, 10, step=0.3)
            check(c, "no session accepted after one of three left")
            ctls.append(c)
            c.secure_login(ctx, "P")
            host, port = c.pasv()
            d = H.socket.create_connection((host, port), timeout=20)
            check_code(c.cmd("RETR /pub/small.bin"), (150, 125), "RETR")
            d = c.wrap_data(d, ctx)
            how, data = H.recv_until_closed(d, 20)
            d.close()
            check_code(c.reply(), 226, "transfer on the new session")
            check_eq((how, H.sha256_bytes(data)), ("eof", sha_small), "the download (end, sha256)")
            text = open(log).read()
            check(text.count("connection refused: too many sessions") >= 2, "refusals not logged")
        finally:
            for c in ctls:
                c.close()
            if p.poll() is None:
                H.check_clean_stop(p, log)  # exit 0 on SIGTERM, no sanitizer report, no password
            check_eq(p.returncode, 0, "exit status of the second proxy")

    s.run("max_sessions_per_ip 2 counts sessions on both listeners: the third gets 421", per_ip_across_listeners)
    s.run("max_sessions 3 over two listeners: the 4th gets 421 at once and is closed, a live session goes on, "
          "a new one works once one leaves", max_sessions_total)
    s.run("login deadline (2 s) is not extended by NOOPs before login", login_deadline_not_extended)
    s.run("after login NOOPs restart the idle timer; silence ends the session", idle_restarted_by_commands)
    s.run("a client flooding locally answered commands without reading: proxy stops reading, RSS bounded",
          flood_without_reading)


if __name__ == "__main__":
    H.main_wrapper("limits", body, need_bytes=64 * H.MiB)
