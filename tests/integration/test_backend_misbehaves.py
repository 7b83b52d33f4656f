#!/usr/bin/python3
"""Backends that misbehave (DESIGN.md §7, adversarial): a scripted FTP server
behind ftpsgate answers each session according to the listener it came
through. The proxy must turn every misbehaviour into a clean FTP reply for the
client (421, 425, 426), never forward garbage, never buffer an endless reply,
never follow a backend's 227 to another host, and stay up with no fd leak.
"""
import hashlib
import os
import socket
import ssl
import threading
import time

import harness as H
from harness import check, check_code, check_eq

PAYLOAD = os.urandom(3 * H.MiB + 7)
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()


class ScriptedBackend:
    """One listening socket per behaviour, so each proxy listener gets one."""

    BEHAVIOURS = ("garbage_greeting", "nul_reply", "long_line", "endless_help", "bounce_227",
                  "reset_mid_download", "dies_after_login")

    def __init__(self):
        self.stop = threading.Event()
        self.socks = {}
        self.data_peers = []     # who connected to our passive ports
        self.lock = threading.Lock()
        for b in self.BEHAVIOURS:
            ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            ls.bind((H.HOST, 0))
            ls.listen(8)
            self.socks[b] = ls
            threading.Thread(target=self._accept, args=(b, ls), daemon=True).start()

    def address(self, behaviour):
        return "%s:%d" % self.socks[behaviour].getsockname()

    def close(self):
        self.stop.set()
        for ls in self.socks.values():
            try:
                ls.close()
            except OSError:
                pass

    def _accept(self, behaviour, ls):
        ls.settimeout(0.5)
        while not self.stop.is_set():
            try:
                s, _ = ls.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            threading.Thread(target=self._session, args=(behaviour, s), daemon=True).start()

    def _lines(self, s, deadline):
        buf = b""
        while time.monotonic() < deadline and not self.stop.is_set():
            s.settimeout(max(0.1, deadline - time.monotonic()))
            try:
                b = s.recv(4096)
            except (socket.timeout, OSError):
                return
            if not b:
                return
            buf += b
            while b"\n" in buf:
                line, _, buf = buf.partition(b"\n")
                yield line.rstrip(b"\r").decode("latin-1")

    def _session(self, behaviour, s):
        deadline = time.monotonic() + 60
        pasv = None
        try:
            if behaviour == "garbage_greeting":
                s.sendall(b"hello, I am not an FTP server\r\n")
                time.sleep(2)
                return
            s.sendall(b"220 scripted backend\r\n")
            for line in self._lines(s, deadline):
                verb = line.split(" ", 1)[0].upper()
                if verb == "USER":
                    s.sendall(b"331 Password\r\n")
                elif verb == "PASS":
                    s.sendall(b"230 Logged in\r\n")
                    if behaviour == "dies_after_login":
                        s.close()
                        return
                elif verb == "NOOP":
                    if behaviour == "nul_reply":
                        s.sendall(b"200 zero\x00byte\r\n")
                    elif behaviour == "long_line":
                        s.sendall(b"200 " + b"x" * 20000 + b"\r\n")
                    else:
                        s.sendall(b"200 NOOP ok\r\n")
                elif verb == "HELP" and behaviour == "endless_help":
                    # 20 MiB of reply lines: the proxy must stream them, not collect them.
                    chunk = b"".join(b"214-help line %07d padding padding padding padding\r\n" % i
                                     for i in range(1000))
                    for _ in range(400):
                        s.sendall(chunk)
                    s.sendall(b"214 End of help\r\n")
                elif verb in ("TYPE",):
                    s.sendall(b"200 OK\r\n")
                elif verb == "PASV":
                    pasv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                    pasv.bind((H.HOST, 0))
                    pasv.listen(1)
                    port = pasv.getsockname()[1]
                    # bounce_227 names another host: the proxy must ignore the address.
                    ip = b"10,9,9,9" if behaviour == "bounce_227" else b"127,0,0,1"
                    s.sendall(b"227 Entering Passive Mode (%s,%d,%d)\r\n" % (ip, port >> 8, port & 255))
                elif verb == "RETR" and pasv is not None:
                    s.sendall(b"150 Opening data connection\r\n")
                    pasv.settimeout(15)
                    d, peer = pasv.accept()
                    with self.lock:
                        self.data_peers.append(peer[0])
                    pasv.close()
                    pasv = None
                    if behaviour == "reset_mid_download":
                        d.sendall(PAYLOAD[: len(PAYLOAD) // 2])
                        d.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                        d.close()
                        time.sleep(0.2)
                        s.sendall(b"426 Connection broken\r\n")
                    else:
                        d.sendall(PAYLOAD)
                        d.close()
                        s.sendall(b"226 Transfer complete\r\n")
                elif verb == "QUIT":
                    s.sendall(b"221 Bye\r\n")
                    return
                else:
                    s.sendall(b"502 Not implemented\r\n")
        except OSError:
            pass
        finally:
            for x in (pasv, s):
                try:
                    if x is not None:
                        x.close()
                except OSError:
                    pass


def login(target):
    c = H.Ctl(target)
    ctx = ssl.create_default_context(cafile=target.ca)
    c.auth_tls(ctx)
    check_code(c.cmd("USER anonymous"), 331, "USER")
    check_code(c.cmd("PASS " + H.PASSWORD), 230, "PASS")
    check_code(c.cmd("PBSZ 0"), 200, "PBSZ")
    check_code(c.cmd("PROT P"), 200, "PROT")
    return c, ctx


def retr(c, ctx, path):
    """PASV + RETR over a data connection that resumes the control session."""
    code, text = c.cmd("PASV")
    check_code((code, text), 227, "PASV")
    nums = text[text.index("(") + 1:text.index(")")].split(",")
    port = int(nums[4]) * 256 + int(nums[5])
    d = socket.create_connection((H.HOST, port), timeout=20)
    c.send(("RETR %s\r\n" % path).encode())
    prelim = c.reply()
    data = b""
    try:
        ds = ctx.wrap_socket(d, server_hostname=c.server_name, session=c.sock.session)
        while True:
            b = ds.recv(65536)
            if not b:
                break
            data += b
    except (OSError, ssl.SSLError):
        pass
    final = c.reply()
    return prelim, data, final


def body(s, env):
    if H.SELFCHECK:
        s.run("misbehaving backends (every case tests ftpsgate itself)", H.needs_proxy)
        return
    fake = ScriptedBackend()
    targets = {}
    for b in ScriptedBackend.BEHAVIOURS:
        targets[b] = H.Target(b, None, True, env.certs.ca, None,
                              env.proxy.add_listener(b.replace("_", "-"), fake.address(b), "private", True))
    env.start(*targets.values())
    pid = env.proxy.pid
    fds_before = H.fd_count(pid)

    def garbage_greeting():
        c = H.Ctl(targets["garbage_greeting"])
        check_code(c.greeting, 220, "the proxy's own greeting")
        reply = c.cmd("SYST")
        check_code(reply, 421, "reply to the first forwarded command, the backend's greeting not being FTP")
        check("not an FTP server" not in reply[1], "the backend's garbage was forwarded")
        c.close()

    def nul_reply():
        c, _ = login(targets["nul_reply"])
        code, text = c.cmd("NOOP")
        check_eq(code, 421, "reply when the backend sends a NUL inside a reply")
        check("\x00" not in text, "NUL byte forwarded to the client")
        c.close()

    def long_line():
        c, _ = login(targets["long_line"])
        code, text = c.cmd("NOOP")
        check_eq(code, 421, "reply when the backend sends a 20 KiB reply line")
        check(len(text) < 1000, "the over-long line was forwarded (%d bytes)" % len(text))
        c.close()

    def endless_help():
        c, _ = login(targets["endless_help"])
        c.send(b"HELP\r\n")
        peak = 0
        lines = 0
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            ln = c._line(deadline)
            lines += 1
            if lines % 20000 == 0:
                peak = max(peak, H.rss_kib(pid) or 0)
                time.sleep(0.05)  # a slow reader: the proxy must stop reading the backend
            if ln.startswith("214 "):
                break
        check_eq(lines, 400 * 1000 + 1, "lines of the 20 MiB multi-line reply relayed")
        bound = 64 * 1024 if not env.proxy.sanitized else 256 * 1024
        print("     (proxy peak RSS during the endless reply: %d KiB; bound %d KiB)" % (peak, bound))
        check(peak < bound, "proxy RSS %d KiB while relaying a 20 MiB reply" % peak)
        check_code(c.cmd("NOOP"), 200, "session usable after the long reply")
        c.close()

    def bounce_227():
        c, ctx = login(targets["bounce_227"])
        prelim, data, final = retr(c, ctx, "file")
        check_eq(prelim[0], 150, "150 before the data")
        check_eq(hashlib.sha256(data).hexdigest(), PAYLOAD_SHA, "sha256 of the file")
        check_eq(final[0], 226, "final reply")
        with fake.lock:
            peers = list(fake.data_peers)
        check(peers and all(p == "127.0.0.1" for p in peers),
              "the data connection went to the backend's control address, not 10.9.9.9 (%r)" % peers)
        c.close()

    def reset_mid_download():
        c, ctx = login(targets["reset_mid_download"])
        prelim, data, final = retr(c, ctx, "file")
        check_eq(prelim[0], 150, "150 before the data")
        check(len(data) < len(PAYLOAD), "client got the whole file from a reset backend?")
        # 426 when the reset cut the transfer, 425 when it hit the proxy's data
        # connect first (the scripted backend is a thread; timing decides).
        check(final[0] in (425, 426), "final reply after the backend reset its data connection: %r" % (final,))
        check_code(c.cmd("NOOP"), 200, "session usable after the failed transfer")
        c.close()

    def dies_after_login():
        c = H.Ctl(targets["dies_after_login"])
        c.auth_tls(ssl.create_default_context(cafile=targets["dies_after_login"].ca))
        check_code(c.cmd("USER anonymous"), 331, "USER")
        code, text = c.cmd("PASS " + H.PASSWORD)
        check_eq(code, 230, "PASS")
        code, text = c.reply(timeout=10)
        check_eq(code, 421, "the client is told when the backend closes the control connection")
        c.close()

    def still_up():
        check(env.proxy.alive(), "ftpsgate died")
        ok = H.wait_until(lambda: H.fd_count(pid) <= fds_before, 15)
        check(ok, "fds: %d at start, %d now" % (fds_before, H.fd_count(pid)))

    s.run("garbage instead of a greeting -> 421, nothing forwarded", garbage_greeting)
    s.run("NUL byte in a backend reply -> 421, not forwarded", nul_reply)
    s.run("20 KiB backend reply line -> 421, not forwarded", long_line)
    s.run("20 MiB multi-line reply streamed to a slow reader, RSS bounded", endless_help)
    s.run("backend 227 naming another host: the proxy uses the control address", bounce_227)
    s.run("backend resets the data connection mid-download -> 426, session goes on", reset_mid_download)
    s.run("backend closes the control connection -> 421 to the client", dies_after_login)
    s.run("proxy still up, no fd leak", still_up)
    fake.close()


if __name__ == "__main__":
    H.main_wrapper("backend_misbehaves", body, need_bytes=64 * H.MiB)
