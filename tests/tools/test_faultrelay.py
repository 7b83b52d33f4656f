#!/usr/bin/python3
"""The fault relay itself (tests/tools/faultrelay.py): each fault does what it
claims, measured on loopback with an echo server or with a server socket the test
holds itself (so each direction is seen from its receiving end).

Timings are only ever checked as lower bounds the relay must respect (a byte
held for S seconds cannot arrive sooner than S seconds after it was sent); upper
bounds are timeouts against a hang, never a measure of speed.
"""

import contextlib
import hashlib
import os
import socket
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
sys.path.insert(0, HERE)
import harness as H  # noqa: E402
from harness import check, check_eq  # noqa: E402
import faultrelay as FR  # noqa: E402

LO = "127.0.0.1"
ALT = "127.0.0.3"   # a second loopback address: the relay's own for the range fronts
OTHER = "127.0.0.5"  # a client address for the per-peer rule


class Echo:
    """A threaded echo server on 127.0.0.1 (port 0: bound here, in this process)."""

    def __init__(self, host=LO, port=0):
        self.ls = socket.create_server((host, port))
        self.port = self.ls.getsockname()[1]
        self.peers = []
        self.stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stop:
            try:
                s, peer = self.ls.accept()
            except OSError:
                return
            self.peers.append(peer)
            threading.Thread(target=self._echo, args=(s,), daemon=True).start()

    @staticmethod
    def _echo(s):
        try:
            while True:
                b = s.recv(65536)
                if not b:
                    s.shutdown(socket.SHUT_WR)
                    break
                s.sendall(b)
        except OSError:
            pass
        finally:
            s.close()

    def close(self):
        self.stop = True
        self.ls.close()


def relay_to(port, **kw):
    kw.setdefault("time_limit", 60)
    return FR.FaultRelay((LO, 0), (LO, port), **kw)


def pair(relay, server, source=None, timeout=10):
    """A client connection through the relay and the server's accepted end."""
    c = socket.create_connection((LO, relay.port), timeout=timeout,
                                 source_address=(source, 0) if source else None)
    server.settimeout(timeout)
    s, _ = server.accept()
    s.settimeout(timeout)
    return c, s


def recv_all(s, timeout=20, want=None):
    """Reads until EOF, a reset, want bytes or the timeout: (bytes, how, [recv sizes], [arrival times])."""
    s.settimeout(timeout)
    got = bytearray()
    sizes, times = [], []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            b = s.recv(65536)
        except socket.timeout:
            return bytes(got), "timeout", sizes, times
        except ConnectionResetError:
            return bytes(got), "reset", sizes, times
        if not b:
            return bytes(got), "eof", sizes, times
        got += b
        sizes.append(len(b))
        times.append(time.monotonic())
        if want is not None and len(got) >= want:
            return bytes(got), "want", sizes, times
    return bytes(got), "timeout", sizes, times


def server_socket(host=LO):
    return socket.create_server((host, 0))


@contextlib.contextmanager
def through_relay(*rules):
    """A relay (with these rules) in front of a server socket of the test's own:
    yields (relay, client end, server end); closes everything after."""
    srv = server_socket()
    r = FR.FaultRelay((LO, 0), (LO, srv.getsockname()[1]), time_limit=60).start()
    for rule in rules:
        r.add_rule(rule)
    c = s2 = None
    try:
        c, s2 = pair(r, srv)
        yield r, c, s2
    finally:
        for x in (c, s2, srv):
            if x is not None:
                x.close()
        r.stop()


def body(s):
    echo = Echo()

    def passthrough():
        data = os.urandom(4 * H.MiB + 7)
        with relay_to(echo.port) as r:
            c = socket.create_connection((LO, r.port), timeout=20)
            t = threading.Thread(target=lambda: (c.sendall(data), c.shutdown(socket.SHUT_WR)), daemon=True)
            t.start()
            got, how, _, _ = recv_all(c, 60)
            t.join(10)
            c.close()
            check_eq(how, "eof", "end of the echoed stream")
            check_eq(hashlib.sha256(got).hexdigest(), hashlib.sha256(data).hexdigest(), "sha256 of the echo")
            check(r.wait_idle(10), "the relay still holds the connection")
            rec = r.conns[-1]
            check_eq(rec.bytes, {"up": len(data), "down": len(data)}, "bytes relayed each way")
            check_eq(rec.ended, {"up": "eof", "down": "eof"}, "how each direction ended")

    def latency():
        # 0.2 s each way: a round trip through the relay cannot take less than 0.4 s.
        with relay_to(echo.port) as r:
            r.add_rule(FR.Rule(dir="both", latency=0.2))
            c = socket.create_connection((LO, r.port), timeout=20)
            rtts = []
            for i in range(3):
                t0 = time.monotonic()
                c.sendall(b"ping %d" % i)
                got, how, _, _ = recv_all(c, 10, want=6)
                rtts.append(time.monotonic() - t0)
                check_eq(got, b"ping %d" % i, "echo %d" % i)
            c.close()
            print("     round trips with 0.2 s each way: %s" % ", ".join("%.3f" % x for x in rtts))
            check(min(rtts) >= 0.4, "a round trip took %.3f s, under the 0.4 s the latency adds" % min(rtts))

    def rate():
        n, bps = 512 * H.KiB, 256 * H.KiB
        data = os.urandom(n)
        with through_relay(FR.Rule(dir="up", rate=bps)) as (r, c, s2):
            t0 = time.monotonic()
            c.sendall(data)
            c.shutdown(socket.SHUT_WR)
            got, how, _, _ = recv_all(s2, 30)
            dt = time.monotonic() - t0
            c.close()
            s2.close()
        burst = bps * 0.05
        floor = (n - burst) / bps
        print("     %d KiB at %d KiB/s: %.2f s (floor %.2f s)" % (n // 1024, bps // 1024, dt, floor))
        check_eq((how, got), ("eof", data), "the capped stream, whole")
        check(dt >= floor, "%d bytes at %d B/s arrived in %.2f s, under the %.2f s the cap allows" % (n, bps, dt, floor))

    def stall_timed():
        data = os.urandom(5000)
        with through_relay(FR.Rule(dir="down", stall_at=1000, stall_for=1.0)) as (r, c, s2):
            t0 = time.monotonic()
            s2.sendall(data)
            s2.shutdown(socket.SHUT_WR)
            got, how, sizes, times = recv_all(c, 20)
            c.close()
            s2.close()
            fired = r.conns[-1].fired
        check_eq((how, got), ("eof", data), "the stalled stream, whole")
        # When did byte 1001 arrive? Not before the stall's second was over.
        acc, t1001 = 0, None
        for n, t in zip(sizes, times):
            acc += n
            if acc > 1000:
                t1001 = t
                break
        check(acc > 1000 and t1001 is not None, "nothing past byte 1000")
        first = 0
        for n in sizes:
            if first + n > 1000:
                break
            first += n
        check_eq(first, 1000, "bytes delivered before the stall")
        print("     byte 1001 arrived %.3f s after the sender sent it (stall 1.0 s)" % (t1001 - t0))
        check(t1001 - t0 >= 1.0, "byte 1001 arrived %.3f s after it was sent, within the 1 s stall" % (t1001 - t0))
        check_eq(fired, ["stall down@1000 1.00s"], "faults fired")

    def stall_until_released():
        data = os.urandom(3000)
        with through_relay(FR.Rule(dir="up", stall_at=1000, stall_for=None)) as (r, c, s2):
            c.sendall(data)
            c.shutdown(socket.SHUT_WR)
            got, how, _, _ = recv_all(s2, 1.5)
            check_eq((len(got), how), (1000, "timeout"), "held at byte 1000 until released (bytes, how)")
            r.release()
            rest, how, _, _ = recv_all(s2, 20)
            check_eq((how, got + rest), ("eof", data), "the rest after release()")
            c.close()
            s2.close()

    def cut(how, direction):
        data = os.urandom(200000)
        with through_relay(FR.Rule(dir=direction, cut_at=65537, cut=how)) as (r, c, s2):
            sender, receiver = (c, s2) if direction == "up" else (s2, c)
            send_err = []

            def send():
                try:
                    sender.sendall(data)
                except OSError as e:
                    send_err.append(e)
            t = threading.Thread(target=send, daemon=True)
            t.start()
            got, end, _, _ = recv_all(receiver, 20)
            t.join(20)
            check(not t.is_alive(), "the sender is still blocked after the cut")
            # The sender sees the cut too: its send fails, or (all sent already) its next read.
            if send_err:
                sender_end = "reset" if isinstance(send_err[0], (ConnectionResetError, BrokenPipeError)) \
                    else repr(send_err[0])
            else:
                _, sender_end, _, _ = recv_all(sender, 5)
            c.close()
            s2.close()
            rec = r.conns[-1]
        if how == "fin":
            check_eq(len(got), 65537, "bytes before the FIN")
            check_eq(got, data[:65537], "the bytes before the cut")
            check_eq(end, "eof", "the receiver's end of stream")
            check(sender_end in ("eof", "reset"), "the sender's view of the cut: %s" % sender_end)
        else:
            check(len(got) <= 65537 and got == data[:len(got)], "the receiver got %d bytes, want at most 65537, "
                  "a prefix" % len(got))
            check_eq(end, "reset", "the receiver's end of stream")
            check_eq(sender_end, "reset", "the sender's view of the cut")
        check_eq(rec.bytes[direction], 65537, "bytes the relay delivered before the cut")
        check_eq(rec.fired, ["cut-%s %s@65537" % (how, direction)], "faults fired")

    def half_close():
        with through_relay(FR.Rule(dir="up", half_close_at=10)) as (r, c, s2):
            c.sendall(b"0123456789 and more that never arrives")
            got, end, _, _ = recv_all(s2, 10)
            check_eq((got, end), (b"0123456789", "eof"), "the server's view: 10 bytes then FIN")
            # The other direction still works after the server saw its end of stream.
            s2.sendall(b"reply after half-close")
            back, _, _, _ = recv_all(c, 10, want=22)
            check_eq(back, b"reply after half-close", "the reply through the open direction")
            s2.close()
            back2, end2, _, _ = recv_all(c, 10)
            check_eq((back2, end2), (b"", "eof"), "the client's end once the server closed")
            c.close()
            check(r.wait_idle(10), "the relay still holds the half-closed connection")
            check_eq(r.conns[-1].ended, {"up": "half-close", "down": "eof"}, "how each direction ended")

    def trickle():
        data = os.urandom(64) + os.urandom(10000)
        with through_relay(FR.Rule(dir="down", trickle_at=0, trickle_bytes=64, trickle_gap=0.01)) as (r, c, s2):
            t0 = time.monotonic()
            s2.sendall(data)
            s2.shutdown(socket.SHUT_WR)
            got, how, sizes, times = recv_all(c, 20)
            c.close()
            s2.close()
        check_eq((how, got), ("eof", data), "the trickled stream, whole")
        acc, pieces = 0, 0
        for n in sizes:
            if acc >= 64:
                break
            acc += n
            pieces += 1
        print("     the first 64 bytes came in %d reads; byte 64 after %.3f s" % (pieces, times[pieces - 1] - t0))
        # 63 gaps of 10 ms between single-byte sends: byte 64 cannot come before 0.63 s.
        check(times[pieces - 1] - t0 >= 0.63, "64 bytes one at a time 10 ms apart arrived within %.3f s"
              % (times[pieces - 1] - t0))
        check(pieces >= 16, "the first 64 bytes came in only %d reads (one byte per segment expected)" % pieces)

    def time_limit():
        r = relay_to(echo.port, time_limit=1.5).start()
        port = r.port
        c = socket.create_connection((LO, port), timeout=10)
        c.sendall(b"hello")
        got, _, _, _ = recv_all(c, 5, want=5)
        check_eq(got, b"hello", "echo before the time limit")
        _, end, _, _ = recv_all(c, 10)
        check_eq(end, "reset", "the live connection at the time limit")
        r._thread.join(10)
        check(not r.running, "the relay thread is still running after its time limit")
        try:
            socket.create_connection((LO, port), timeout=2).close()
            refused = False
        except ConnectionRefusedError:
            refused = True
        check(refused, "the relay still accepts connections after its time limit")

    def range_front_and_rules():
        first, last = H.free_port_block(3)
        servers = [Echo(LO, p) for p in range(first, last + 1)]
        try:
            with relay_to(servers[0].port, preserve_source=True) as r:
                r.add_front(ALT, first, last, LO)
                r.add_rule(FR.Rule(on="range", peer=OTHER, dir="up", cut_at=0, cut="rst"))
                r.add_rule(FR.Rule(on="main", index=1, dir="down", cut_at=3, cut="fin"))
                for p, srv in zip(range(first, last + 1), servers):
                    c = socket.create_connection((ALT, p), timeout=10)
                    c.sendall(b"port %d" % p)
                    got, _, _, _ = recv_all(c, 5, want=len(b"port %d" % p))
                    check_eq(got, b"port %d" % p, "echo through the front of port %d" % p)
                    c.close()
                    check_eq(srv.peers[-1][0], LO, "source address seen behind the front")
                # From 127.0.0.5 the range rule cuts at once; the server sees that address.
                c = socket.create_connection((ALT, first), timeout=10, source_address=(OTHER, 0))
                c.sendall(b"x")
                got, end, _, _ = recv_all(c, 5)
                check_eq((got, end), (b"", "reset"), "a range connection from %s (rule peer=%s)" % (OTHER, OTHER))
                check(H.wait_until(lambda: servers[0].peers and servers[0].peers[-1][0] == OTHER, 5),
                      "the target did not see the client's own address (preserve_source)")
                # index=1: only the second main connection is cut after 3 bytes.
                ends = []
                for _ in range(3):
                    c = socket.create_connection((LO, r.port), timeout=10)
                    c.sendall(b"abcdef")
                    c.shutdown(socket.SHUT_WR)
                    got, end, _, _ = recv_all(c, 5)
                    ends.append((got, end))
                    c.close()
                check_eq(ends, [(b"abcdef", "eof"), (b"abc", "eof"), (b"abcdef", "eof")],
                         "three main connections, the second cut after 3 bytes")
                kinds = [x.kind for x in r.conns]
                check_eq(kinds, ["range"] * 4 + ["main"] * 3, "connection kinds recorded")
        finally:
            for srv in servers:
                srv.close()

    def reset_propagates():
        with through_relay() as (r, c, s2):
            s2.sendall(b"before reset")
            got, _, _, _ = recv_all(c, 5, want=12)
            H.abort_socket(s2)
            rest, end, _, _ = recv_all(c, 5)
            check_eq((got + rest, end), (b"before reset", "reset"), "a reset from the server reaches the client")
            c.close()
            check(r.wait_idle(5), "the relay still holds the reset connection")
            check_eq(r.conns[-1].ended["down"], "rst", "recorded end")

    def cut_now_and_stall_now():
        with through_relay() as (r, c, s2):
            r.stall_now(None, on="main")
            time.sleep(0.2)
            s2.sendall(b"held")
            got, how, _, _ = recv_all(c, 1.0)
            check_eq((got, how), (b"", "timeout"), "nothing through a stalled connection")
            r.release()
            got, _, _, _ = recv_all(c, 5, want=4)
            check_eq(got, b"held", "delivered after release()")
            r.cut_now("fin", on="main")
            got, end, _, _ = recv_all(c, 5)
            check_eq((got, end), (b"", "eof"), "client's end after cut_now('fin')")
            c.close()
            s2.close()

    def inject_at_next_byte():
        with through_relay() as (r, c, s2):
            s2.sendall(b"first")
            got, _, _, _ = recv_all(c, 5, want=5)
            check_eq(got, b"first", "before inject")
            r.inject("down", "cut", "fin", on="main")
            time.sleep(0.2)  # inject is applied by the relay's loop
            s2.sendall(b"second")
            got, end, _, _ = recv_all(c, 5)
            check_eq((got, end), (b"", "eof"), "the next byte going down met the cut")
            check_eq(r.conns[-1].fired, ["cut-fin down@5"], "faults fired")
            c.close()
            s2.close()

    def command_line():
        r = subprocess.run([sys.executable, os.path.join(HERE, "faultrelay.py"), "--help"], capture_output=True,
                           text=True, timeout=30)
        check_eq(r.returncode, 0, "--help exit status")
        lport = H.free_port()
        p = subprocess.Popen([sys.executable, os.path.join(HERE, "faultrelay.py"), "--listen", "%s:%d" % (LO, lport),
                              "--target", "%s:%d" % (LO, echo.port), "--time-limit", "4", "-v",
                              "--fault", "on=main,dir=down,cut_at=4,cut=fin"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            check(H.wait_port(LO, lport, 10, p), "the relay command did not listen")
            c = socket.create_connection((LO, lport), timeout=10)
            c.sendall(b"abcdefgh")
            got, end, _, _ = recv_all(c, 5)
            c.close()
            # wait_port's probe was connection 1 (no data); the rule has no index: every
            # main connection is cut after 4 bytes down.
            check_eq((got, end), (b"abcd", "eof"), "through the command-line relay with a cut rule")
            out, err = p.communicate(timeout=20)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait(5)
        check_eq(p.returncode, 0, "exit status after the time limit (stderr %r)" % err[-300:])
        lines = out.strip().splitlines()
        check('"listening"' in lines[0] and '"stopped": true' in lines[-1], "first/last lines: %r" % lines)
        check(any('"cut-fin down@4"' in ln for ln in lines), "no connection line with the fired cut: %r" % lines)

    s.run("no fault: 4 MiB echoed intact, bytes and ends recorded", passthrough)
    s.run("latency 0.2 s each way: every round trip >= 0.4 s", latency)
    s.run("rate 256 KiB/s: 512 KiB takes at least (512 - burst) / 256 s, intact", rate)
    s.run("stall at byte 1000 for 1 s: byte 1001 not before 1 s, stream intact", stall_timed)
    s.run("stall until released: held at byte 1000, the rest after release()", stall_until_released)
    for how in ("fin", "rst"):
        for d in ("up", "down"):
            s.run("cut with %s at byte 65537 going %s" % (how.upper(), d), cut, how, d)
    s.run("half-close up at byte 10: server reads 10 bytes + FIN, its reply still reaches the client", half_close)
    s.run("trickle: 64 bytes one per segment 10 ms apart, then the rest, intact", trickle)
    s.run("time limit 1.5 s: live connection reset, listener closed, thread ended", time_limit)
    s.run("range front, preserve_source, rules by peer and by index", range_front_and_rules)
    s.run("a reset from the target reaches the client as a reset", reset_propagates)
    s.run("stall_now until release(), then cut_now('fin')", cut_now_and_stall_now)
    s.run("inject: a cut armed on a live connection fires at the next byte", inject_at_next_byte)
    s.run("command line: --fault rule, -v JSON lines, exits 0 at --time-limit", command_line)
    echo.close()


def main():
    s = H.Suite("faultrelay")
    try:
        body(s)
    except Exception as e:  # noqa: BLE001
        s.fail_setup("test body", e)
    sys.exit(s.finish())


if __name__ == "__main__":
    main()
