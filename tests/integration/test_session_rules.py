#!/usr/bin/python3
"""The session core's rules where a careful read of the code found them broken
(issue 10). Each case fails on the code before the fix:
  1. a metrics request still being read when shutdown begins is closed, never
     answered through the freed admin endpoint;
  2. a backend that half-closes an upload's data connection and then resets it
     ends the transfer at once, and the client gets the backend's own reason (552),
     not the proxy's 426;
  3. a connection that never completes TLS (implicit) or never sends a command
     the backend must see (explicit) costs the backend nothing;
  4. ABOR is taken at once even when another command waits behind the transfer;
  5. REIN whose backend reply chunk also holds a stray 220: the stray line is not
     taken as REIN's reply;
  6. a backend line that arrives while CCC waits for the client's close_notify is
     delivered in clear afterwards, not lost;
  8. a stderr nobody reads never stalls a session; dropped log lines are counted.
(7, the reset of a refused data connection, is in test_adversarial; 9, FEAT's AUTH
lines, in test_command_table; 10, policy "client", in test_rclone.)
"""
import hashlib
import json
import os
import select
import signal
import socket
import subprocess
import threading
import time

import harness as H
from harness import check, check_code, check_eq

UPLOAD_SIZE = 24 * H.MiB
QUOTA_READ = 256 * H.KiB


class ScriptedBackend:
    """A plain FTP server whose sessions follow one script, per listening socket."""

    def __init__(self, name, script):
        self.name = name
        self.script = script
        self.stop = threading.Event()
        self.sessions = 0
        self.events = []
        self.lock = threading.Lock()
        self.ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.bind((H.HOST, 0))
        self.ls.listen(16)
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def address(self):
        return "%s:%d" % self.ls.getsockname()

    def close(self):
        self.stop.set()
        self.ls.close()

    def note(self, what):
        with self.lock:
            self.events.append(what)

    def _accept(self):
        self.ls.settimeout(0.5)
        while not self.stop.is_set():
            try:
                s, _ = self.ls.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self.lock:
                self.sessions += 1
                n = self.sessions
            threading.Thread(target=self._session, args=(s, n), daemon=True).start()

    def _session(self, s, n):
        try:
            s.sendall(b"220 scripted backend\r\n")
            buf = b""
            deadline = time.monotonic() + 120
            pasv = None
            while time.monotonic() < deadline and not self.stop.is_set():
                s.settimeout(1)
                try:
                    b = s.recv(4096)
                except socket.timeout:
                    continue
                if not b:
                    return
                buf += b
                while b"\n" in buf:
                    line, _, buf = buf.partition(b"\n")
                    line = line.rstrip(b"\r").decode("latin-1")
                    verb = line.split(" ", 1)[0].upper()
                    if verb == "USER":
                        s.sendall(b"331 Password\r\n")
                    elif verb == "PASS":
                        s.sendall(b"230 Logged in\r\n")
                    elif verb in ("TYPE", "MODE", "STRU"):
                        s.sendall(b"200 OK\r\n")
                    elif verb == "QUIT":
                        s.sendall(b"221 Bye\r\n")
                        return
                    elif verb == "PASV":
                        pasv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                        pasv.bind((H.HOST, 0))
                        pasv.listen(1)
                        port = pasv.getsockname()[1]
                        s.sendall(b"227 Entering Passive Mode (127,0,0,1,%d,%d)\r\n" % (port >> 8, port & 255))
                    elif self.script(self, s, n, verb, pasv):
                        pasv = None
                    elif verb == "NOOP":
                        s.sendall(b"200 NOOP ok\r\n")
                    else:
                        s.sendall(b"502 Not implemented here\r\n")
        except OSError:
            pass
        finally:
            s.close()


def quota_script(be, s, n, verb, pasv):
    """STOR: takes some bytes, half-closes the data connection (FIN), takes a little more,
    then resets it and answers 552, as a server that hit its storage quota may."""
    if verb != "STOR" or pasv is None:
        return False
    s.sendall(b"150 Ok to send data\r\n")
    pasv.settimeout(15)
    d, _ = pasv.accept()
    pasv.close()
    got = 0
    d.settimeout(15)
    while got < QUOTA_READ:
        b = d.recv(65536)
        if not b:
            break
        got += len(b)
    d.shutdown(socket.SHUT_WR)
    while got < 2 * QUOTA_READ:
        b = d.recv(65536)
        if not b:
            break
        got += len(b)
    d.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    d.close()
    be.note("stor-reset-after-%d" % got)
    s.sendall(b"552 Exceeded storage allocation\r\n")
    return True


def first_noop(be, n):
    """True once: for the first NOOP of backend connection n."""
    if verb_seen := ("noop", n) in be.events:
        return not verb_seen
    be.note(("noop", n))
    return True


def stray_script(be, s, n, verb, pasv):
    """The first connection answers its first NOOP with the reply and a stray 220 in the same segment."""
    if verb == "NOOP" and n == 1 and first_noop(be, n):
        s.sendall(b"200 NOOP ok\r\n220 stray greeting of a retired connection\r\n")
        return True
    return False


def unsolicited_script(be, s, n, verb, pasv):
    """The first NOOP's reply comes with an unsolicited line in the same segment."""
    if verb == "NOOP" and n == 1 and first_noop(be, n):
        s.sendall(b"200 NOOP ok\r\n200 unsolicited note\r\n")
        return True
    return False


def own_proxy(env, name, listeners, admin_port=None, stderr=None):
    """A second ftpsgate of this test (its own config, log and process)."""
    cfg = {
        "tls": {"main": {"cert": env.certs.cert, "key": env.certs.key}},
        "listeners": listeners,
        "log": {"level": "debug", "format": "text"},
    }
    if admin_port:
        cfg["admin"] = {"bind": "%s:%d" % (H.HOST, admin_port)}
    path = os.path.join(env.tmp, name + ".json")
    with open(path, "w") as f:
        json.dump(cfg, f)
    return subprocess.Popen([env.binary, "-c", path], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=stderr, close_fds=True)


def listener(name, backend, mode="explicit", clear=False, policy=None):
    lo, hi = H.free_port_block(8)
    ln = {
        "name": name,
        "bind": "%s:%d" % (H.HOST, H.free_port()),
        "mode": mode,
        "tls": "main",
        "backend": {"address": backend},
        "passive": {"ports": "%d-%d" % (lo, hi)},
        "policy": {"login_requires_tls": not clear, "data_protection": "any" if clear else "private"},
    }
    if policy:
        ln["policy"].update(policy)
    return ln


def wait_refused(port, timeout):
    """True once nothing listens on port any more."""
    def refused():
        try:
            socket.create_connection((H.HOST, port), timeout=1).close()
            return False
        except ConnectionRefusedError:
            return True
        except OSError:
            return False
    return H.wait_until(refused, timeout)


def body(s, env):
    if H.SELFCHECK:
        s.run("session rules (test ftpsgate itself)", H.needs_proxy)
        return
    vs = env.backend("vs1")
    sha_big = vs.add_pub("big.bin", 64 * H.MiB)
    sha_one = vs.add_pub("one.bin", H.MiB + 3)
    quota = ScriptedBackend("quota", quota_script)
    stray = ScriptedBackend("stray", stray_script)
    unsolicited = ScriptedBackend("unsolicited", unsolicited_script)
    ex = env.front(vs, "ex")
    im = env.front(vs, "im", mode="implicit")
    qt = env.front(quota, "quota")
    st = env.front(stray, "stray", protection="any", login_requires_tls=False)
    un = env.front(unsolicited, "unsolicited", policy={"ccc": True})
    env.start(ex, im, qt, st, un)
    im.implicit = True
    ctx = env.certs.client_context()

    # -- 1 ---------------------------------------------------------------------------------
    def admin_during_shutdown():
        admin = H.free_port()
        ln = listener("a1", vs.address)
        p = own_proxy(env, "admin1", [ln], admin_port=admin, stderr=subprocess.PIPE)
        try:
            check(H.wait_until(lambda: H._bindable(H.HOST, admin) is False, 30), "the admin port never opened")
            c = socket.create_connection((H.HOST, admin), timeout=10)
            c.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # the head is not complete yet
            p.send_signal(signal.SIGTERM)
            check(wait_refused(admin, 20), "the admin port still accepts after SIGTERM")
            try:
                c.sendall(b"\r\n")
                _, got = H.recv_until_closed(c, 10)
            except OSError:
                got = b""  # reset: closed, not answered
            c.close()
            check(not got.startswith(b"HTTP/1.1 200"),
                  "a scrape was answered after shutdown began (through the stopped admin): %r" % got[:60])
            _, err = p.communicate(timeout=30)
            text = err.decode("utf-8", "replace")
            reports = [x for x in text.splitlines() if any(q in x for q in H.SANITIZER_PATTERNS)]
            check(not reports, "sanitizer report: %s" % "; ".join(reports[:3]))
            check_eq(p.returncode, 0, "exit status after SIGTERM")
        finally:
            if p.poll() is None:
                p.kill()
                p.wait(10)

    s.run("1. admin request in flight at shutdown: closed, not answered; exit 0", admin_during_shutdown)

    # -- 2 ---------------------------------------------------------------------------------
    def quota_upload():
        c = H.Ctl(qt).secure_login(ctx, "P")
        check_code(c.cmd("TYPE I"), 200, "TYPE I")
        addr = c.pasv()
        d = socket.create_connection(addr, timeout=20)
        check_code(c.cmd("STOR quota.bin"), 150, "STOR")
        d = c.wrap_data(d, ctx)
        block = os.urandom(256 * H.KiB)
        sent, failed = 0, None
        d.settimeout(20)
        try:
            while sent < UPLOAD_SIZE:
                d.sendall(block)
                sent += len(block)
            d.unwrap()
        except (OSError, ValueError) as e:
            failed = type(e).__name__
        d.close()
        code, text = c.reply(30)
        c.close()
        check_eq(code, 552, "final reply (the backend's own reason): %r" % text)
        # No pumping into a dead socket: the proxy gave up long before the whole file.
        check(failed is not None and sent < UPLOAD_SIZE,
              "the client could send all %d bytes after the backend reset its data connection" % sent)

    s.run("2. backend half-closes then resets an upload: the transfer stops, the client gets 552", quota_upload)

    # -- 3 ---------------------------------------------------------------------------------
    def no_backend_before_ftp():
        mark = vs.log_mark()
        idle = []
        raw = socket.create_connection((H.HOST, im.port), timeout=10)  # implicit, no ClientHello
        idle.append(raw)
        junk = socket.create_connection((H.HOST, im.port), timeout=10)  # implicit, not TLS at all
        junk.sendall(b"USER anonymous\r\n")
        idle.append(junk)
        c = H.Ctl(ex)  # explicit: the greeting is the proxy's own; nothing sent
        check_code(c.greeting, 220, "greeting of an explicit session")
        c2 = H.Ctl(ex)  # explicit with TLS, no command the backend needs
        c2.auth_tls(ctx)
        check_code(c2.cmd("PBSZ 0"), 200, "PBSZ")
        # One real session, whose CONNECT the backend logs after any the idle ones caused.
        real = H.Ctl(ex).secure_login(ctx, "P")
        H.sync_quit(real, vs, mark)
        connects = [x for x in vs.log_since(mark).splitlines() if "CONNECT: Client" in x]
        for x in idle:
            x.close()
        c.close()
        c2.close()
        check_eq(len(connects), 1, "backend connections for four idle clients and one real session")

    s.run("3. no backend connection for clients that never complete TLS or never need it",
          no_backend_before_ftp)

    # -- 4 ---------------------------------------------------------------------------------
    def abor_after_queued_command():
        c = H.Ctl(ex).secure_login(ctx, "P")
        addr = c.pasv()
        d = socket.create_connection(addr, timeout=20)
        check_code(c.cmd("RETR /pub/big.bin"), 150, "RETR")
        d = c.wrap_data(d, ctx)
        d.recv(1)  # the transfer runs; from now on the client does not read: it stalls
        c.send(b"TYPE I\r\nABOR\r\n")
        first = c.reply(15)
        check_code(first, (426, 225, 226), "first reply after ABOR (the transfer's)")
        if first[0] == 426:
            check_code(c.reply(15), (225, 226), "ABOR's own reply")
        check_code(c.reply(15), 200, "the queued TYPE I, after the abort")
        d.close()
        check_code(c.cmd("NOOP"), 200, "NOOP after the abort")
        c.close()

    s.run("4. ABOR after a command queued during a transfer: taken at once", abor_after_queued_command)

    # -- 5 ---------------------------------------------------------------------------------
    def rein_mid_chunk():
        c = H.Ctl(st)
        check_code(c.greeting, 220, "greeting")
        c.login()
        c.send(b"NOOP\r\nREIN\r\n")
        check_code(c.reply(), 200, "NOOP")
        code, text = c.reply()
        check_eq(code, 220, "REIN's reply code")
        check("stray" not in text, "the retired connection's stray 220 was taken as REIN's reply: %r" % text)
        c.login()  # a new backend connection
        check_code(c.cmd("NOOP"), 200, "NOOP on the new backend connection")
        check_code(c.cmd("QUIT"), 221, "QUIT (no stray line in between)")
        c.close()
        check_eq(stray.sessions, 2, "backend connections (before and after REIN)")

    s.run("5. REIN with a stray 220 in the backend's chunk: REIN answered by the proxy", rein_mid_chunk)

    # -- 6 ---------------------------------------------------------------------------------
    def unsolicited_during_ccc():
        c = H.Ctl(un)
        c.auth_tls(ctx)
        c.login()
        c.send(b"NOOP\r\nCCC\r\n")  # one TLS record: CCC waits while NOOP is forwarded
        check_code(c.reply(), 200, "NOOP")
        check_code(c.reply(), 200, "CCC")
        c.stop_tls()
        code, text = c.reply(10)
        check_eq((code, text.strip()), (200, "200 unsolicited note"),
                 "the backend line that came while TLS was stopping, in clear after it")
        check_code(c.cmd("NOOP"), 200, "NOOP in clear")
        check_code(c.cmd("QUIT"), 221, "QUIT")
        c.close()

    s.run("6. unsolicited backend line during CCC: delivered in clear afterwards", unsolicited_during_ccc)

    # -- 8 ---------------------------------------------------------------------------------
    def stderr_never_read():
        admin = H.free_port()
        ln = listener("p1", vs.address)
        p = own_proxy(env, "pipe1", [ln], admin_port=admin, stderr=subprocess.PIPE)
        t = H.Target("p1", int(ln["bind"].rsplit(":", 1)[1]), True, env.certs.ca, vs, ln)
        try:
            check(H.wait_until(lambda: H._bindable(H.HOST, admin) is False, 30), "the admin port never opened")
            # Far more than a pipe holds (64 KiB), at level debug; nobody reads stderr.
            for i in range(30):
                c = H.Ctl(t, timeout=20).secure_login(ctx, "P")
                addr = c.pasv()
                dsock = socket.create_connection(addr, timeout=20)
                check_code(c.cmd("RETR /pub/one.bin"), 150, "RETR %d" % i)
                dsock = c.wrap_data(dsock, ctx)
                _, data = H.recv_until_closed(dsock, 30, limit=2 * H.MiB)
                dsock.close()
                check_eq(hashlib.sha256(data).hexdigest(), sha_one, "sha256 of download %d" % i)
                check_code(c.reply(), 226, "226 of download %d" % i)
                c.close()
            c = H.Ctl(t, timeout=30).secure_login(ctx, "P")
            n = 20000  # ~1.6 MB of debug lines: past the 1 MiB log buffer too
            c.send(b"NOOP\r\n" * n)
            for i in range(n):
                check_code(c.reply(), 200, "NOOP %d of a flood while stderr is full" % i)
            c.close()
            conn = socket.create_connection((H.HOST, admin), timeout=10)
            conn.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
            _, body_ = H.recv_until_closed(conn, 10)
            conn.close()
            dropped = [int(x.split()[1]) for x in body_.decode().splitlines()
                       if x.startswith("ftpsgate_log_lines_dropped ")]
            check(dropped and dropped[0] > 0, "log_lines_dropped after a flood into a full pipe: %r" % dropped)
            # Reading stderr now: the writer catches up and says how many lines it dropped.
            got = bytearray()
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and b"lines dropped" not in got:
                r, _, _ = select.select([p.stderr], [], [], 0.5)
                if r:
                    got += os.read(p.stderr.fileno(), 1 << 20)
            check(b"lines dropped" in got, "no line saying how many log lines were dropped")
            p.send_signal(signal.SIGTERM)
            while p.poll() is None and time.monotonic() < deadline + 30:
                r, _, _ = select.select([p.stderr], [], [], 0.5)
                if r and not os.read(p.stderr.fileno(), 1 << 20):
                    break
            check_eq(p.wait(30), 0, "exit status after SIGTERM")
        finally:
            if p.poll() is None:
                p.kill()
                p.wait(10)

    s.run("8. stderr nobody reads: 30 downloads and a NOOP flood go on, drops counted", stderr_never_read)

    del sha_big
    quota.close()
    stray.close()
    unsolicited.close()


if __name__ == "__main__":
    H.main_wrapper("session_rules", body, need_bytes=256 * H.MiB)
