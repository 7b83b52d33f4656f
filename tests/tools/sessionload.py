#!/usr/bin/python3
"""sessionload: many logged-in FTPS control sessions from one light process.

Non-blocking sockets and one selector; TLS through the ssl module (a handshake is
driven step by step with SSLWantRead/SSLWantWrite). Each session: connect, greeting
220, AUTH TLS (explicit; implicit starts with the handshake), USER/PASS, PBSZ 0,
PROT P, then it stays idle. At most `concurrency` sessions are being set up at once,
so the proxy, not the generator, sets the pace. One descriptor per session on this
side: raise_nofile() lifts the soft limit to the hard one.

    load = SessionLoad(host, port, ca, user, password, implicit=False)
    load.open(9000, concurrency=200, timeout=600) -> {"open": n, "failed": {reason: n}, "seconds": s}
    load.command_all("NOOP", timeout=120)         -> {200: n, ...} (reply code -> sessions)
    load.close_all(quit=True)
    one_session(host, port, ca, ...)              -> the first reply of one more session (a 421?)
"""

import resource
import selectors
import socket
import ssl
import time

# Session states
CONNECTING, GREETING, AUTH, HANDSHAKE, USER, PASS, PBSZ, PROT, IDLE, CMD, QUIT, FAILED = range(12)


def raise_nofile():
    """Soft RLIMIT_NOFILE up to the hard limit; returns (soft, hard)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


class _Session:
    __slots__ = ("sock", "state", "buf", "out", "tls", "t0", "reply", "error", "events")

    def __init__(self, sock):
        self.sock = sock
        self.state = CONNECTING
        self.buf = b""
        self.out = b""
        self.tls = False
        self.t0 = time.monotonic()
        self.reply = None
        self.error = None
        self.events = 0


class SessionLoad:
    def __init__(self, host, port, ca, user, password, implicit=False, prot="P", server_hostname=None,
                 source=None):
        self.host, self.port = host, port
        self.user, self.password = user, password
        self.implicit = implicit
        self.prot = prot
        self.server_hostname = server_hostname or host
        self.source = source
        self.ctx = ssl.create_default_context(cafile=ca)
        self.sel = selectors.DefaultSelector()
        self.sessions = []          # every session that reached IDLE and is still open
        self.failed = {}            # reason -> count

    # -- set-up
    def _new(self):
        s = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        if self.source:
            s.bind((self.source, 0))
        err = s.connect_ex((self.host, self.port))
        sess = _Session(s)
        if err not in (0, 115):  # EINPROGRESS
            s.close()
            self._fail(sess, "connect: errno %d" % err, unregister=False)
            return None
        self._want(sess, selectors.EVENT_WRITE)
        return sess

    def _want(self, sess, events):
        if sess.events == events:
            return
        if sess.events == 0:
            self.sel.register(sess.sock, events, sess)
        elif events == 0:
            self.sel.unregister(sess.sock)
        else:
            self.sel.modify(sess.sock, events, sess)
        sess.events = events

    def _fail(self, sess, why, unregister=True):
        sess.state = FAILED
        sess.error = why
        key = why.split(":")[0] if not why[:3].isdigit() else why[:3]
        self.failed[key] = self.failed.get(key, 0) + 1
        if unregister:
            self._want(sess, 0)
            try:
                sess.sock.close()
            except OSError:
                pass

    def _send(self, sess, line):
        sess.out += line.encode() + b"\r\n"
        self._flush(sess)

    def _flush(self, sess):
        while sess.out:
            try:
                n = sess.sock.send(sess.out)
            except (BlockingIOError, ssl.SSLWantWriteError):
                self._want(sess, selectors.EVENT_READ | selectors.EVENT_WRITE)
                return
            except ssl.SSLWantReadError:
                return
            except OSError as e:
                self._fail(sess, "send: %s" % e)
                return
            sess.out = sess.out[n:]
        self._want(sess, selectors.EVENT_READ)

    def _start_tls(self, sess):
        sess.sock = self.ctx.wrap_socket(sess.sock, server_hostname=self.server_hostname,
                                         do_handshake_on_connect=False)
        # A new socket object on the same descriptor: the selector keys by descriptor.
        sess.tls = True
        sess.state = HANDSHAKE
        self._handshake(sess)

    def _handshake(self, sess):
        try:
            sess.sock.do_handshake()
        except ssl.SSLWantReadError:
            self._want(sess, selectors.EVENT_READ)
            return
        except ssl.SSLWantWriteError:
            self._want(sess, selectors.EVENT_WRITE)
            return
        except (ssl.SSLError, OSError) as e:
            self._fail(sess, "tls: %s" % e)
            return
        if self.implicit:
            sess.state = GREETING
        else:
            sess.state = USER
            self._send(sess, "USER " + self.user)
        self._want(sess, selectors.EVENT_READ)

    def _replies(self, sess):
        """Complete replies in sess.buf: [(code, text)]."""
        out = []
        while True:
            i = sess.buf.find(b"\n")
            if i < 0:
                return out
            first = sess.buf[:i].decode("utf-8", "replace").rstrip("\r")
            if len(first) >= 4 and first[3] == "-":
                end = sess.buf.find(("\n%s " % first[:3]).encode())
                if end < 0:
                    return out
                j = sess.buf.find(b"\n", end + 1)
                if j < 0:
                    return out
                text = sess.buf[:j].decode("utf-8", "replace")
                sess.buf = sess.buf[j + 1:]
            else:
                text = first
                sess.buf = sess.buf[i + 1:]
            try:
                out.append((int(text[:3]), text))
            except ValueError:
                out.append((0, text))

    def _on_reply(self, sess, code, text):
        st = sess.state
        if st == GREETING:
            if code != 220:
                self._fail(sess, "%d greeting" % code)
            elif self.implicit:
                sess.state = USER
                self._send(sess, "USER " + self.user)
            else:
                sess.state = AUTH
                self._send(sess, "AUTH TLS")
        elif st == AUTH:
            if code != 234:
                self._fail(sess, "%d to AUTH TLS" % code)
            else:
                self._start_tls(sess)
        elif st == USER:
            if code != 331:
                self._fail(sess, "%d to USER" % code)
            else:
                sess.state = PASS
                self._send(sess, "PASS " + self.password)
        elif st == PASS:
            if code != 230:
                self._fail(sess, "%d to PASS" % code)
            else:
                sess.state = PBSZ
                self._send(sess, "PBSZ 0")
        elif st == PBSZ:
            if code != 200:
                self._fail(sess, "%d to PBSZ" % code)
            else:
                sess.state = PROT
                self._send(sess, "PROT " + self.prot)
        elif st == PROT:
            if code != 200:
                self._fail(sess, "%d to PROT" % code)
            else:
                sess.state = IDLE
        elif st == CMD:
            sess.reply = code
            sess.state = IDLE
        elif st == QUIT:
            sess.reply = code
        else:
            self._fail(sess, "unexpected reply %d in state %d" % (code, st))

    def _readable(self, sess):
        for _ in range(16):
            try:
                b = sess.sock.recv(65536)
            except (BlockingIOError, ssl.SSLWantReadError):
                return
            except ssl.SSLWantWriteError:
                self._want(sess, selectors.EVENT_READ | selectors.EVENT_WRITE)
                return
            except (OSError, ssl.SSLError) as e:
                self._fail(sess, "recv: %s" % e)
                return
            if not b:
                self._fail(sess, "closed by the server" if sess.state not in (QUIT,) else "quit")
                return
            sess.buf += b
            for code, text in self._replies(sess):
                self._on_reply(sess, code, text)
                if sess.state in (FAILED, HANDSHAKE):
                    return
            if not (sess.tls and sess.sock.pending()):
                if len(b) < 65536:
                    return

    def _event(self, sess, mask):
        if sess.state == FAILED:
            return
        if sess.state == CONNECTING:
            err = sess.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                self._fail(sess, "connect: errno %d" % err)
                return
            sess.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.implicit:
                self._start_tls(sess)
            else:
                sess.state = GREETING
                self._want(sess, selectors.EVENT_READ)
            return
        if sess.state == HANDSHAKE:
            self._handshake(sess)
            return
        if mask & selectors.EVENT_WRITE and sess.out:
            self._flush(sess)
        if mask & selectors.EVENT_READ:
            self._readable(sess)

    def open(self, n, concurrency=200, timeout=600):
        """Opens n sessions (at most `concurrency` in set-up at once). Returns figures."""
        t0 = time.monotonic()
        deadline = t0 + timeout
        started, setting_up = 0, []
        while (started < n or setting_up) and time.monotonic() < deadline:
            while started < n and len(setting_up) < concurrency:
                sess = self._new()
                started += 1
                if sess is not None:
                    setting_up.append(sess)
            for key, mask in self.sel.select(timeout=0.5):
                self._event(key.data, mask)
            still = []
            for sess in setting_up:
                if sess.state == IDLE:
                    self.sessions.append(sess)
                elif sess.state != FAILED:
                    still.append(sess)
            setting_up = still
        for sess in setting_up:
            self._fail(sess, "timeout in set-up")
        return {"open": len(self.sessions), "failed": dict(self.failed), "seconds": time.monotonic() - t0}

    def command_all(self, line, timeout=120):
        """Sends line on every idle session; returns {reply code: sessions} ("lost": no reply)."""
        live = [x for x in self.sessions if x.state == IDLE]
        for sess in live:
            sess.state, sess.reply = CMD, None
            self._send(sess, line)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(x.state == CMD for x in live):
            for key, mask in self.sel.select(timeout=0.5):
                self._event(key.data, mask)
        out = {}
        for sess in live:
            k = sess.reply if sess.state == IDLE else "lost"
            out[k] = out.get(k, 0) + 1
        self.sessions = [x for x in self.sessions if x.state == IDLE]
        return out

    def alive(self):
        return sum(1 for x in self.sessions if x.state == IDLE)

    def close_all(self, quit=True, timeout=60, count=None):
        """QUIT (and wait for 221, bounded) or just close every session, or `count` of them."""
        chosen = self.sessions if count is None else self.sessions[:count]
        if quit:
            live = [x for x in chosen if x.state == IDLE]
            for sess in live:
                sess.state, sess.reply = QUIT, None
                self._send(sess, "QUIT")
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and any(x.state == QUIT and x.reply is None for x in live):
                for key, mask in self.sel.select(timeout=0.5):
                    self._event(key.data, mask)
        for sess in chosen:
            if sess.state != FAILED:
                try:
                    self._want(sess, 0)
                except (KeyError, ValueError, OSError):
                    pass
                try:
                    sess.sock.close()
                except OSError:
                    pass
        gone = set(map(id, chosen))
        self.sessions = [x for x in self.sessions if id(x) not in gone]


def one_session(host, port, ca, user, password, timeout=20, server_hostname=None):
    """One more explicit session, blocking: (first reply code, its text, seconds to it)."""
    t0 = time.monotonic()
    s = socket.create_connection((host, port), timeout=timeout)
    try:
        buf = b""
        while b"\n" not in buf:
            b = s.recv(4096)
            if not b:
                break
            buf += b
        text = buf.decode("utf-8", "replace").strip()
        return (int(text[:3]) if text[:3].isdigit() else None), text, time.monotonic() - t0
    finally:
        s.close()
