#!/usr/bin/python3
"""TLS ended and restarted on one TCP connection, with the client's bytes
arriving in the worst order: its close_notify and the first bytes that follow
it in ONE segment.
  - REIN on an implicit session: close_notify + the next ClientHello together;
    the new handshake must complete (not be read as FTP commands).
  - CCC: close_notify + the next clear command together; the command runs.
Driven with ssl.SSLObject over memory BIOs so the byte order is exact.
"""
import socket
import ssl
import time

import harness as H
from harness import check, check_eq


class Wire:
    """A TLS client over a socket whose records we send exactly when we choose."""

    def __init__(self, sock, ctx, host):
        self.sock = sock
        self.ctx = ctx
        self.host = host
        self.new_tls()

    def new_tls(self):
        self.inc, self.out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = self.ctx.wrap_bio(self.inc, self.out, server_hostname=self.host)

    def pending(self):
        return self.out.read()

    def pump_in(self, timeout=10):
        self.sock.settimeout(timeout)
        b = self.sock.recv(65536)
        if not b:
            raise EOFError("connection closed by the proxy")
        self.inc.write(b)

    def handshake(self, first_bytes=b""):
        deadline = time.monotonic() + 15
        extra = first_bytes
        while time.monotonic() < deadline:
            try:
                self.obj.do_handshake()
                self.sock.sendall(self.pending())
                return
            except ssl.SSLWantReadError:
                self.sock.sendall(extra + self.pending())
                extra = b""
                self.pump_in()
        raise TimeoutError("handshake did not finish")

    def send(self, data):
        self.obj.write(data)
        self.sock.sendall(self.pending())

    def line(self, timeout=10):
        deadline = time.monotonic() + timeout
        buf = b""
        while time.monotonic() < deadline:
            try:
                buf += self.obj.read(65536)
            except ssl.SSLWantReadError:
                self.pump_in()
                continue
            if buf.endswith(b"\r\n"):
                return buf.decode()
        raise TimeoutError("no reply line")

    def close_notify_bytes(self):
        """Our close_notify, without waiting for the peer's."""
        try:
            self.obj.unwrap()
        except ssl.SSLWantReadError:
            pass
        return self.pending()


def clear_line(sock, timeout=10):
    sock.settimeout(timeout)
    buf = b""
    while not buf.endswith(b"\r\n"):
        b = sock.recv(4096)
        if not b:
            raise EOFError("closed")
        buf += b
    return buf.decode()


def body(s, env):
    if H.SELFCHECK:
        s.run("TLS restart on one connection (tests ftpsgate itself)", H.needs_proxy)
        return
    vs = env.backend("vs1")
    imp = env.front(vs, "imp", mode="implicit")
    ccc = env.front(vs, "ccc", policy={"ccc": True})
    env.start(imp, ccc)
    ctx = ssl.create_default_context(cafile=env.certs.ca)

    def rein_implicit_same_segment():
        sock = socket.create_connection((imp.host, imp.port), timeout=10)
        w = Wire(sock, ctx, imp.host)
        w.handshake()
        check(w.line().startswith("220"), "greeting")
        w.send(b"REIN\r\n")
        check(w.line().startswith("220"), "REIN reply")
        notify = w.close_notify_bytes()
        # The proxy's close_notify may come before or after ours; either way the
        # TLS session ends. Our close_notify and the new ClientHello go in one send.
        w.new_tls()
        try:
            w.obj.do_handshake()
        except ssl.SSLWantReadError:
            pass
        hello = w.pending()
        sock.sendall(notify + hello)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                w.pump_in()
            except EOFError:
                raise
            data = w.inc.read()
            # Drop the rest of the old session (its close_notify record) from the stream:
            # the new session's bytes start with a ServerHello (handshake record 0x16).
            i = data.find(b"\x16\x03")
            if i >= 0:
                w.inc.write(data[i:])
                break
        w.handshake()
        w.send(b"USER anonymous\r\n")
        check(w.line().startswith("331"), "USER after the new handshake")
        w.send(("PASS %s\r\n" % H.PASSWORD).encode())
        check(w.line().startswith("230"), "login after REIN and the new handshake")
        sock.close()

    def ccc_same_segment():
        sock = socket.create_connection((ccc.host, ccc.port), timeout=10)
        check(clear_line(sock).startswith("220"), "greeting")
        sock.sendall(b"AUTH TLS\r\n")
        check(clear_line(sock).startswith("234"), "AUTH TLS")
        w = Wire(sock, ctx, ccc.host)
        w.handshake()
        w.send(b"USER anonymous\r\n")
        check(w.line().startswith("331"), "USER")
        w.send(("PASS %s\r\n" % H.PASSWORD).encode())
        check(w.line().startswith("230"), "PASS")
        w.send(b"CCC\r\n")
        check(w.line().startswith("200"), "CCC")
        sock.sendall(w.close_notify_bytes() + b"PWD\r\n")
        # What arrives now: the proxy's close_notify record, then the clear PWD reply.
        sock.settimeout(10)
        buf = b""
        deadline = time.monotonic() + 10
        while b"257" not in buf and time.monotonic() < deadline:
            b = sock.recv(4096)
            if not b:
                break
            buf += b
        check(b"257 " in buf, "clear PWD right after CCC's close_notify got no reply: %r" % buf[-200:])
        sock.close()

    s.run("REIN implicit: close_notify and the next ClientHello in one segment -> new handshake, login",
          rein_implicit_same_segment)
    s.run("CCC: close_notify and the next clear command in one segment -> the command runs",
          ccc_same_segment)


if __name__ == "__main__":
    H.main_wrapper("tls_restart", body, need_bytes=64 * H.MiB)
