#!/usr/bin/python3
"""Adversarial clients against ftpsgate (DESIGN.md §7, issue 3).

What a hostile or broken client does must be refused or contained, checked on
the backend side where the point is that something did NOT happen:
  - plaintext pipelined after AUTH TLS in the same packet is never executed
    (vsftpd's protocol log has no USER/PASS/DELE from it; the file is still there);
  - a data connection from 127.0.0.2 to the announced passive port is refused,
    and the real client's transfer still succeeds byte for byte;
  - over-long lines, NUL and bare CR inside a line: an error reply, the session goes on;
  - garbage or a truncated ClientHello after AUTH TLS: that session ends, the proxy stays up;
  - clients that vanish mid-download and mid-upload; an upload whose data connection
    ends without close_notify must not be recorded by the backend as complete;
  - an unreachable backend gives 421;
  - and after all of it, the proxy is alive and holds no more fds than at the start.
"""

import os
import socket
import ssl
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import harness as H  # noqa: E402
from harness import check, check_code, check_eq, sync_quit, verb  # noqa: E402


def client_hello_bytes():
    """A real TLS ClientHello, as the first bytes a client sends."""
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = H.insecure_context().wrap_bio(inc, out, server_hostname="localhost")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


def body(s, env):
    vs = env.backend("vs1")
    main = env.front(vs, "main", protection="private")
    # A backend address that refuses connections: bound, never listening, held until the end.
    dead_sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    dead_sock.bind((H.HOST, 0))
    dead_port = dead_sock.getsockname()[1]
    dead = None
    if not H.SELFCHECK:
        ln = env.proxy.add_listener("deadbackend", "%s:%d" % (H.HOST, dead_port), "private", True)
        dead = H.Target("deadbackend", None, True, env.certs.ca, None, ln)
    sha_small = vs.add_pub("small.bin", 64 * H.KiB + 1)
    sha_ten = vs.add_pub("ten.bin", 10 * H.MiB)
    vs.add_pub("big.bin", 64 * H.MiB)
    env.start(*[t for t in (main, dead) if t is not None])
    ctx = env.certs.client_context()
    state = {}

    def small_download_works(what):
        f = H.ftplib_connect(main)
        try:
            n, got, _ = H.ftplib_get(f, "/pub/small.bin")
            check_eq((n, got), (64 * H.KiB + 1, sha_small), "%s: download on a new session (size, sha256)" % what)
        finally:
            H.quit_quietly(f)

    def proxy_alive(what):
        if env.proxy is not None:
            check(env.proxy.alive(), "%s: ftpsgate died (exit %s)" % (what, env.proxy.proc.poll()))

    # -- 0. The backend-side signal the upload cases rely on.
    def backend_sanity():
        direct = H.Target("direct", vs.port, H.SELFCHECK == "tls", env.certs.ca, vs)
        f = H.ftplib_connect(direct)
        try:
            mark = vs.log_mark()
            conn, _ = f.ntransfercmd("STOR /up/sanity-rst.bin")
            conn.sendall(os.urandom(H.MiB))
            H.abort_socket(conn)
            try:
                f.voidresp()
            except H.ftplib.Error:
                pass
            conn, _ = f.ntransfercmd("STOR /up/sanity-clean.bin")
            conn.sendall(os.urandom(H.MiB))
            if isinstance(conn, ssl.SSLSocket):
                conn = conn.unwrap()
            conn.close()
            check(f.voidresp().startswith("226"), "clean upload not 226")
            t = vs.wait_transfer("/up/sanity-rst.bin", mark)
            check(t and not t[0], "vsftpd did not log the reset upload as FAIL: %r" % (t,))
            t = vs.wait_transfer("/up/sanity-clean.bin", mark)
            check(t and t[0] and t[3] == H.MiB, "vsftpd did not log the clean upload as OK: %r" % (t,))
        finally:
            H.quit_quietly(f)

    s.run("backend sanity: vsftpd logs a reset upload FAIL, a clean one OK", backend_sanity)

    # -- 1. Warm-up, then the fd baseline.
    def baseline():
        H.needs_proxy()
        small_download_works("warm-up")
        pid = env.proxy.pid
        prev = [None]

        def stable():
            n = H.fd_count(pid)
            same = n == prev[0]
            prev[0] = n
            return same
        H.wait_until(stable, 10, step=0.5)
        state["fds"] = H.fd_count(pid)
        print("     proxy fds after warm-up: %d" % state["fds"], flush=True)

    s.run("warm-up session and fd baseline", baseline)

    # -- 2. Plaintext pipelined after AUTH TLS.
    def pipelined():
        H.needs_proxy()
        victim = "victim-%s.bin" % os.urandom(4).hex()
        vpath = vs.up_path(victim)
        H.make_file(vpath, 1000)
        mark = vs.log_mark()
        c = H.Ctl(main)
        c.send(("AUTH TLS\r\nUSER anonymous\r\nPASS %s\r\nDELE /up/%s\r\n" % (H.PASSWORD, victim)).encode())
        check_code(c.reply(), 234, "AUTH TLS")
        # Replies to executed plaintext would follow the 234 at once, and would break the
        # handshake below (they are not TLS); the backend's log is the final word.
        extra = c.readable()
        state["pipelined_session"] = None
        if not extra:
            try:
                c.sock = ctx.wrap_socket(c.sock, server_hostname=main.host)
                c.tls = True
                # FEAT, not NOOP: vsftpd answers NOOP with 530 before login.
                state["pipelined_session"] = c.cmd("FEAT")
                check_code(c.cmd("QUIT"), 221, "QUIT")
            except (H.Fail, OSError, ssl.SSLError, EOFError) as e:
                if not isinstance(state["pipelined_session"], tuple):
                    state["pipelined_session"] = e
        c.close()
        # Another session's QUIT in the backend log tells it has caught up with this one.
        c2 = H.Ctl(main)
        c2.auth_tls(ctx)
        sync_quit(c2, vs, mark)
        cmds = vs.commands_since(mark)
        bad = [c for _, c in cmds if verb(c) in ("USER", "PASS", "DELE")]
        check(not bad, "the backend executed plaintext sent after AUTH TLS: %r" % bad)
        check(os.path.exists(vpath), "the victim file was deleted")
        check(not extra, "the proxy answered the pipelined plaintext in clear: %r" % c.buf[:200])

    s.run("plaintext pipelined after AUTH TLS is not executed", pipelined)

    def pipelined_session_goes_on():
        H.needs_proxy()
        r = state.get("pipelined_session")
        check(r is not None, "no TLS session was attempted (see the previous case)")
        check(not isinstance(r, Exception), "the TLS session after the discarded bytes failed: %r" % (r,))
        check_code(r, 211, "FEAT over TLS after the discarded bytes")

    s.run("the session goes on over TLS after the discarded plaintext", pipelined_session_goes_on)

    # -- 3. Data-port theft from another loopback address.
    def theft(use_epsv):
        H.needs_proxy()
        c = H.Ctl(main).secure_login(ctx, "P")
        addr = c.epsv() if use_epsv else c.pasv()
        # The thief connects first (on loopback the kernel completes the TCP handshake
        # before the proxy's accept), so the proxy really has to judge it. SECURITY: it is
        # reset, not closed with a FIN that a client could take for a finished transfer.
        thief = H.refused_how(addr, 20, source=("127.0.0.2", 0))
        check_eq(thief, "reset", "how the data connection from 127.0.0.2 ended")
        result = {"how": thief}
        try:
            d = socket.create_connection(addr, timeout=30)
        except OSError as e:
            raise H.Fail("the real client cannot connect to its data port after the thief did "
                         "(%s); thief: %r" % (e, result))
        check_code(c.cmd("RETR /pub/ten.bin"), (150, 125), "RETR")
        d = c.wrap_data(d, ctx)
        how, data = H.recv_until_closed(d, 60, limit=11 * H.MiB)
        d.close()
        check_code(c.reply(60), 226, "final reply of the real transfer")
        check_eq(how, "eof", "end of the real data connection")
        check_eq((len(data), H.sha256_bytes(data)), (10 * H.MiB, sha_ten), "real client's download (size, sha256)")
        c.close()

    s.run("data connection from 127.0.0.2 reset (PASV), real transfer intact", theft, False)
    s.run("data connection from 127.0.0.2 reset (EPSV), real transfer intact", theft, True)

    # -- 4. Malformed lines.
    def overlong_after_login():
        H.needs_proxy()
        mark = vs.log_mark()
        c = H.Ctl(main).secure_login(ctx, "P")
        c.send(b"NOOP " + b"A" * (10 * H.KiB) + b"\r\n")
        check_code(c.reply(), 500, "10 KiB line")
        check_code(c.cmd("NOOP"), 200, "NOOP after the over-long line")
        cmds = sync_quit(c, vs, mark)
        check(not [x for x in cmds if len(x) > 4096], "the over-long line reached the backend")

    s.run("10 KiB line after login -> 500, session goes on", overlong_after_login)

    def overlong_before_auth():
        H.needs_proxy()
        c = H.Ctl(main)
        c.send(b"FEAT " + b"B" * (10 * H.KiB) + b"\r\n")
        check_code(c.reply(), 500, "10 KiB line before AUTH")
        c.auth_tls(ctx)
        check_code(c.cmd("FEAT"), 211, "FEAT over TLS afterwards")
        c.close()

    s.run("10 KiB line before AUTH -> 500, AUTH TLS still works", overlong_before_auth)

    def bad_bytes(line, what):
        H.needs_proxy()
        c = H.Ctl(main).secure_login(ctx, "P")
        c.send(line)
        code, text = c.reply()
        check(500 <= code <= 504, "%s: got %r, want a 500-504 error" % (what, text))
        check_code(c.cmd("NOOP"), 200, "NOOP after the %s" % what)
        c.close()

    s.run("NUL inside a line -> error, session goes on", bad_bytes, b"STAT a\x00b\r\n", "NUL in a line")
    s.run("bare CR inside a line -> error, session goes on", bad_bytes, b"NOOP\rSTAT\r\n", "bare CR in a line")

    # -- 5. Not a TLS handshake.
    def garbage_hello():
        H.needs_proxy()
        c = H.Ctl(main)
        check_code(c.cmd("AUTH TLS"), 234, "AUTH TLS")
        c.send(b"GET / HTTP/1.0\r\n" + os.urandom(512) + b"\r\n\r\n")
        how, _ = H.recv_until_closed(c.sock, 15)
        c.close()
        check(how in ("eof", "reset"), "the proxy did not close the session after garbage: %s" % how)
        proxy_alive("after garbage")
        small_download_works("after garbage")

    s.run("garbage instead of ClientHello: session closed, proxy up", garbage_hello)

    def truncated_hello():
        H.needs_proxy()
        hello = client_hello_bytes()
        c = H.Ctl(main)
        check_code(c.cmd("AUTH TLS"), 234, "AUTH TLS")
        c.send(hello[: len(hello) // 2])
        c.abort()
        proxy_alive("after a truncated ClientHello")
        small_download_works("after a truncated ClientHello")

    s.run("half a ClientHello then RST: proxy up", truncated_hello)

    # -- 6. Clients that vanish.
    def vanish_download():
        H.needs_proxy()
        c = H.Ctl(main).secure_login(ctx, "P")
        addr = c.pasv()
        d = socket.create_connection(addr, timeout=30)
        check_code(c.cmd("RETR /pub/big.bin"), (150, 125), "RETR")
        d = c.wrap_data(d, ctx)
        got = 0
        deadline = time.monotonic() + 30
        while got < H.MiB and time.monotonic() < deadline:
            b = d.recv(65536)
            if not b:
                break
            got += len(b)
        check(got >= H.MiB, "read only %d bytes before vanishing" % got)
        H.abort_socket(d)
        c.abort()
        proxy_alive("after a client vanished mid-download")
        small_download_works("after a client vanished mid-download")

    s.run("client vanishes mid-download (RST): proxy up", vanish_download)

    def truncated_upload(vanish):
        H.needs_proxy()
        name = "trunc-%s-%s.bin" % ("vanish" if vanish else "fin", os.urandom(3).hex())
        mark = vs.log_mark()
        c = H.Ctl(main).secure_login(ctx, "P")
        addr = c.pasv()
        d = socket.create_connection(addr, timeout=30)
        check_code(c.cmd("STOR /up/" + name), (150, 125), "STOR")
        d = c.wrap_data(d, ctx)
        for _ in range(8):
            d.sendall(os.urandom(256 * H.KiB))
        time.sleep(0.3)
        if vanish:
            H.abort_socket(d)  # RST, no close_notify
            c.abort()
        else:
            # FIN without close_notify: ssl.SSLSocket.shutdown() drops the TLS layer
            # and shuts the TCP socket down, sending no alert (a truncation attack).
            d.shutdown(socket.SHUT_WR)
            try:
                code, text = c.reply(30)
                check(not (200 <= code < 300), "the client got %r for a truncated upload" % text)
            except (EOFError, OSError):
                pass  # closing the session is also an acceptable answer
            d.close()
            c.close()
        # The proxy must reset (not close) the backend data connection: vsftpd then
        # logs the upload as FAIL. A FIN would make vsftpd log "OK UPLOAD" of the
        # truncated file and answer 226 (see the backend sanity case).
        t = vs.wait_transfer("/up/" + name, mark, timeout=30)
        check(t is not None, "the backend has not ended the upload 30 s later (no transfer log line)")
        check(not t[0], "the backend recorded the truncated upload as complete: %r" % (t,))
        proxy_alive("after a truncated upload")

    s.run("upload data ends without close_notify: backend records it FAIL, client no 2xx",
          truncated_upload, False)
    s.run("client vanishes mid-upload (RST): backend records it FAIL, proxy up", truncated_upload, True)

    # -- 7. Backend unreachable.
    def unreachable():
        H.needs_proxy()
        lmark = env.proxy.log_mark()
        c = H.Ctl(dead)
        # The proxy greets for itself and dials the backend for the first command it must
        # forward (a client that never speaks FTP costs the backend nothing).
        check_code(c.greeting, 220, "the proxy's own greeting")
        code, text = c.cmd("SYST")
        check_eq(code, 421, "reply to the first forwarded command with the backend unreachable (%r)" % text)
        how, _ = H.recv_until_closed(c.sock, 10)
        c.close()
        check(how in ("eof", "reset"), "the connection stayed open after 421 (%s)" % how)
        check(H.wait_until(lambda: str(dead_port) in env.proxy.log_since(lmark), 5),
              "no log line naming the unreachable backend (port %d)" % dead_port)
        proxy_alive("after the unreachable backend")

    s.run("backend unreachable -> 421, a log line, proxy up", unreachable)

    # -- 8. Nothing leaked.
    def no_leak():
        H.needs_proxy()
        proxy_alive("at the end")
        check("fds" in state, "no fd baseline (the warm-up case failed)")
        pid = env.proxy.pid
        ok = H.wait_until(lambda: H.fd_count(pid) <= state["fds"], 20, step=0.2)
        n = H.fd_count(pid)
        print("     proxy fds: %d at start, %d now" % (state["fds"], n), flush=True)
        check(ok, "fd count %d did not come back to %d within 20 s: %s" % (
            n, state["fds"], sorted(os.readlink("/proc/%d/fd/%s" % (pid, x)) for x in os.listdir("/proc/%d/fd" % pid))))

    s.run("proxy alive, fd count back to the start", no_leak)
    dead_sock.close()


if __name__ == "__main__":
    H.main_wrapper("adversarial", body, need_bytes=512 * H.MiB)
