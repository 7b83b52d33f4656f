"""Headless Debian chromium driven over the DevTools protocol, with the Python
standard library only (a minimal RFC 6455 client): for test_status_page.py.

Chromium listens for DevTools on 127.0.0.1 (an ephemeral port it writes into
DevToolsActivePort in its throwaway profile); no display, no GPU, no sandbox
(it runs as root in CI containers)."""

import base64
import json
import os
import shutil
import socket
import struct
import subprocess
import time
import urllib.request

import harness as H

CANDIDATES = ("chromium", "chromium-browser")


def find_chromium():
    for name in CANDIDATES:
        p = shutil.which(name)
        if p:
            return p
    return None


class WebSocket:
    def __init__(self, url, timeout=30):
        assert url.startswith("ws://")
        hostport, _, path = url[5:].partition("/")
        host, _, port = hostport.rpartition(":")
        H.check(host in ("127.0.0.1", "localhost"), "DevTools not on loopback: %s" % url)
        self.sock = socket.create_connection(("127.0.0.1", int(port)), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        req = ("GET /%s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % (path, hostport, key))
        self.sock.sendall(req.encode())
        head = b""
        while b"\r\n\r\n" not in head:
            b = self.sock.recv(4096)
            if not b:
                raise RuntimeError("DevTools closed the websocket handshake")
            head += b
        head, _, self.buf = head.partition(b"\r\n\r\n")
        H.check(head.startswith(b"HTTP/1.1 101"), "websocket handshake: %r" % head[:200])

    def _read(self, n):
        while len(self.buf) < n:
            b = self.sock.recv(1 << 20)
            if not b:
                raise EOFError("DevTools websocket closed")
            self.buf += b
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def send(self, text):
        data = text.encode()
        hdr = bytearray([0x81])
        n = len(data)
        if n < 126:
            hdr.append(0x80 | n)
        elif n < 65536:
            hdr.append(0x80 | 126)
            hdr += struct.pack(">H", n)
        else:
            hdr.append(0x80 | 127)
            hdr += struct.pack(">Q", n)
        mask = os.urandom(4)
        hdr += mask
        self.sock.sendall(bytes(hdr) + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))

    def recv(self):
        parts = []
        while True:
            b0, b1 = self._read(2)
            op, n = b0 & 0x0F, b1 & 0x7F
            if n == 126:
                n = struct.unpack(">H", self._read(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._read(8))[0]
            mask = self._read(4) if b1 & 0x80 else None
            data = self._read(n)
            if mask:
                data = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
            if op == 8:
                raise EOFError("DevTools closed the websocket")
            if op == 9:  # ping
                continue
            parts.append(data)
            if b0 & 0x80:
                return b"".join(parts).decode()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


class Chromium:
    """One headless chromium with one page; call(method, params) runs a DevTools command."""

    def __init__(self, binary, tmp, log):
        self.profile = os.path.join(tmp, "chromium-profile")
        os.makedirs(self.profile, exist_ok=True)
        argv = [binary, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--no-first-run", "--no-default-browser-check", "--disable-extensions",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--user-data-dir=" + self.profile, "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0", "--window-size=1400,900", "about:blank"]
        self.proc = H.spawn(argv, log)
        port_file = os.path.join(self.profile, "DevToolsActivePort")
        ok = H.wait_until(lambda: os.path.exists(port_file) and open(port_file).read().strip(), 60, step=0.2)
        H.check(ok, "chromium wrote no DevToolsActivePort within 60 s; its log: %s" % H.tail_file(log, 15))
        self.port = int(open(port_file).read().split()[0])
        with urllib.request.urlopen("http://127.0.0.1:%d/json/list" % self.port, timeout=10) as r:
            targets = json.loads(r.read().decode())
        pages = [t for t in targets if t.get("type") == "page"]
        H.check(pages, "chromium has no page target: %r" % targets)
        self.ws = WebSocket(pages[0]["webSocketDebuggerUrl"])
        self.next_id = 0
        self.events = []

    def call(self, method, params=None, timeout=30):
        self.next_id += 1
        my = self.next_id
        self.ws.send(json.dumps({"id": my, "method": method, "params": params or {}}))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.ws.sock.settimeout(max(0.1, deadline - time.monotonic()))
            msg = json.loads(self.ws.recv())
            if msg.get("id") == my:
                if "error" in msg:
                    raise H.Fail("DevTools %s: %s" % (method, msg["error"]))
                return msg.get("result", {})
            self.events.append(msg)
        raise H.Fail("DevTools %s: no answer within %ss" % (method, timeout))

    def evaluate(self, expr):
        """The value of a JavaScript expression in the page (JSON-able)."""
        r = self.call("Runtime.evaluate", {"expression": expr, "returnByValue": True})
        if "exceptionDetails" in r:
            raise H.Fail("page script %r threw: %s" % (expr[:80], r["exceptionDetails"].get("text")))
        return r["result"].get("value")

    def close(self):
        self.ws.close()
        H.stop_process(self.proc)
