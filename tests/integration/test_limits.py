#!/usr/bin/python3
"""Session limits and timeouts (README "limits"):
  - max_sessions_per_ip counts a client's sessions on every listener of the process;
  - max_sessions counts every listener's sessions;
  - the login deadline runs from connect: commands before login (NOOP) do not extend it;
  - after login the idle timeout applies and a command restarts it.
Every wait is bounded; the timeouts are set to a few seconds for the test.
"""
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

    s.run("max_sessions_per_ip 2 counts sessions on both listeners: the third gets 421", per_ip_across_listeners)
    s.run("login deadline (2 s) is not extended by NOOPs before login", login_deadline_not_extended)
    s.run("after login NOOPs restart the idle timer; silence ends the session", idle_restarted_by_commands)
    s.run("a client flooding locally answered commands without reading: proxy stops reading, RSS bounded",
          flood_without_reading)


if __name__ == "__main__":
    H.main_wrapper("limits", body, need_bytes=64 * H.MiB)
