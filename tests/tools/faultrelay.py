#!/usr/bin/python3
"""faultrelay: a user-space TCP relay that injects network faults (this kernel has
no netem). Python 3 standard library only; a library for the tests and a command.

It listens on a main port (and optionally on a range of ports, each relayed to the
same port of a target host) and relays every accepted connection to its target,
byte for byte, FIN for FIN and RST for RST. Rules pick connections and inject, per
direction, at chosen byte offsets:

  latency      every chunk is delivered this many seconds after it arrived
  rate         bytes per second (token bucket, 50 ms burst)
  stall        at offset N, deliver nothing more for S seconds, or until release()
  cut          at offset N, close the whole connection: "fin" (shutdown + close: both
               peers read a clean end of stream, later bytes from them are reset by
               the kernel) or "rst" (SO_LINGER 0: both peers get a reset)
  half_close   at offset N, FIN toward that direction's receiver and stop reading
               its sender (flow control then holds the sender); the other direction
               goes on
  trickle      from offset N, deliver K bytes one per send() (TCP_NODELAY, one
               segment each), GAP seconds apart

Directions: "up" is from the peer that connected to the relay toward the target
(client -> server: commands, uploads); "down" is the way back (replies, downloads).
An offset N means: the first N bytes of that direction pass, and the fault fires
when byte N+1 (or the end of the stream) would be delivered.

Where it sits:
  client -> relay -> proxy      the main port fronts the proxy's listener; a range
                                front of the proxy's passive ports relays the client's
                                passive data connections (the client must dial the
                                relay: EPSV, or PASV with passive.announce = relay IP,
                                or a client that ignores the 227 address, like curl)
  proxy -> relay -> backend     the main port fronts the backend's control port (the
                                proxy's backend.address is the relay); a range front
                                of the backend's passive ports on the relay's own IP
                                relays the backend data connections: the proxy dials
                                the port of a 227/229 at the backend control address,
                                which is the relay. So backend data faults need
                                backend.data_mode "passive" (or "client" with a
                                passive client), and the server's passive range set
                                (vsftpd pasv_min_port/pasv_max_port).
Active-mode data connections (the client's PORT/EPRT toward the proxy, the
backend's PORT connection toward the proxy) do not pass through the relay: only
their control connections do.

With preserve_source the relay connects to the target from the IP address of the
peer that connected to it (any 127.0.0.0/8 address is local), so a proxy behind it
sees distinct client addresses and its data-peer check holds; a rule can then pick
the connections of one client by its source address (rule "peer").

Bounded: the relay stops by itself after time_limit seconds (default 600) and after
max_conns accepted connections stops accepting; on stop every live connection is
reset. One thread runs everything (selectors, non-blocking sockets), so a cut
happens exactly at its offset and no socket is touched by two threads.

Library:
    r = FaultRelay(("127.0.0.3", 0), ("127.0.0.1", 2121), time_limit=300)
    r.add_front("127.0.0.3", 30000, 30015, "127.0.0.1")   # passive ports
    r.add_rule(Rule(on="range", dir="down", cut_at=1 << 20, cut="rst"))
    r.start(); ... r.port ...; r.release(); r.cut_now(on="main"); r.stop()
    r.conns: one ConnRecord per accepted connection (bytes each way, how it ended,
    the faults armed and fired)

Command line (prints one JSON line per connection when it ends with -v):
    faultrelay.py --listen 127.0.0.3:2100 --target 127.0.0.1:2121 \\
        [--front 127.0.0.3:30000-30015=127.0.0.1] [--preserve-source] \\
        [--fault on=range,dir=down,cut_at=1048576,cut=rst] [--time-limit 600] [-v]
  SIGUSR1 stalls every live connection until SIGUSR2 (release); SIGINT/SIGTERM stop.
"""

import argparse
import collections
import errno
import json
import random
import selectors
import signal
import socket
import struct
import sys
import threading
import time

UP, DOWN = "up", "down"
DIRS = (UP, DOWN)
CHUNK = 64 * 1024
MAX_QUEUED = 256 * 1024          # per direction, beyond what the kernel buffers hold
INF = float("inf")
_EOF, _RST = "eof", "rst"        # markers queued after the data


def _ival(v, rng):
    """An offset or a duration: a number, or (lo, hi) for a uniform choice per connection."""
    if isinstance(v, (tuple, list)):
        lo, hi = v
        if isinstance(lo, int) and isinstance(hi, int):
            return rng.randint(lo, hi)
        return rng.uniform(lo, hi)
    return v


class Rule:
    """Which connections get which faults.

    Match: on ("main", "range", "any"), port (the relay port dialled), peer (the
    connecting IP), index (only the index-th matching connection, 0-based, counted
    per rule), prob (each matching connection gets it with this probability, from
    the relay's seeded generator), count (at most this many connections get it).
    Faults (for dir "up", "down" or "both"): latency, rate, stall_at + stall_for
    (None: until release()), cut_at + cut ("fin"/"rst"), half_close_at, trickle_at +
    trickle_bytes + trickle_gap. Offsets and durations may be (lo, hi) ranges.
    """

    MATCH = ("on", "port", "peer", "index", "prob", "count", "name")
    FAULTS = ("dir", "latency", "rate", "stall_at", "stall_for", "cut_at", "cut", "half_close_at", "trickle_at",
              "trickle_bytes", "trickle_gap")

    def __init__(self, on="any", port=None, peer=None, index=None, prob=1.0, count=None, name=None, dir=UP,
                 latency=0.0, rate=0, stall_at=None, stall_for=None, cut_at=None, cut="rst", half_close_at=None,
                 trickle_at=None, trickle_bytes=0, trickle_gap=0.001):
        if on not in ("main", "range", "any"):
            raise ValueError("on: main, range or any, not %r" % (on,))
        if dir not in (UP, DOWN, "both"):
            raise ValueError("dir: up, down or both, not %r" % (dir,))
        if cut not in ("fin", "rst"):
            raise ValueError("cut: fin or rst, not %r" % (cut,))
        self.on, self.port, self.peer, self.index, self.prob, self.count = on, port, peer, index, prob, count
        self.dir = dir
        self.latency, self.rate = latency, rate
        self.stall_at, self.stall_for = stall_at, stall_for
        self.cut_at, self.cut = cut_at, cut
        self.half_close_at = half_close_at
        self.trickle_at, self.trickle_bytes, self.trickle_gap = trickle_at, trickle_bytes, trickle_gap
        self.name = name or self.describe()
        self.seen = 0      # matching connections so far (for index)
        self.applied = 0   # connections it was armed on

    def describe(self):
        parts = []
        for k in ("latency", "rate"):
            if getattr(self, k):
                parts.append("%s=%s" % (k, getattr(self, k)))
        if self.stall_at is not None:
            parts.append("stall@%s for %s" % (self.stall_at, "release" if self.stall_for is None else self.stall_for))
        if self.cut_at is not None:
            parts.append("cut-%s@%s" % (self.cut, self.cut_at))
        if self.half_close_at is not None:
            parts.append("half-close@%s" % (self.half_close_at,))
        if self.trickle_at is not None:
            parts.append("trickle %s B@%s" % (self.trickle_bytes, self.trickle_at))
        return "%s %s %s" % (self.on, self.dir, ", ".join(parts) or "nothing")

    def matches(self, kind, port, peer_ip):
        if self.on != "any" and self.on != kind:
            return False
        if self.port is not None and self.port != port:
            return False
        if self.peer is not None and self.peer != peer_ip:
            return False
        return True

    def has_fault(self):
        return bool(self.latency or self.rate or self.stall_at is not None or self.cut_at is not None
                    or self.half_close_at is not None or self.trickle_at is not None)

    @classmethod
    def parse(cls, text):
        """'on=range,dir=down,cut_at=1048576,cut=rst' (ranges as lo:hi, 'none' for None)."""
        kw = {}
        for item in text.split(","):
            item = item.strip()
            if not item:
                continue
            k, sep, v = item.partition("=")
            if not sep or k not in cls.MATCH + cls.FAULTS:
                raise ValueError("fault %r: unknown or incomplete key %r" % (text, item))
            kw[k] = _parse_value(k, v)
        return cls(**kw)


def _parse_value(k, v):
    if k in ("on", "peer", "dir", "cut", "name"):
        return v
    if v == "none":
        return None
    conv = float if k in ("latency", "stall_for", "trickle_gap", "prob") else int
    if ":" in v:
        lo, hi = v.split(":", 1)
        return (conv(lo), conv(hi))
    return conv(v)


class ConnRecord:
    """What happened to one relayed connection (read it after the connection ended)."""

    def __init__(self, cid, kind, port, peer):
        self.id = cid
        self.kind = kind          # "main" or "range"
        self.port = port          # the relay port that was dialled
        self.peer = peer          # (ip, port) of the connecting peer
        self.local = None         # (ip, port) the relay connected to the target from
        self.opened = time.monotonic()
        self.closed = None        # time.monotonic() when both sockets were closed
        self.bytes = {UP: 0, DOWN: 0}   # delivered to each direction's receiver
        self.ended = {UP: None, DOWN: None}  # eof, rst, cut-fin, cut-rst, half-close, send-error, relay-stop, ...
        self.armed = []           # fault descriptions armed on this connection
        self.fired = []           # "cut-rst up@1048576", ... in the order they fired

    def as_dict(self):
        return {"id": self.id, "kind": self.kind, "port": self.port, "peer": "%s:%d" % self.peer,
                "local": "%s:%d" % self.local[:2] if self.local else None,
                "bytes": dict(self.bytes), "ended": dict(self.ended), "armed": list(self.armed),
                "fired": list(self.fired), "seconds": round((self.closed or time.monotonic()) - self.opened, 3)}


class _Trigger:
    __slots__ = ("offset", "kind", "arg")

    def __init__(self, offset, kind, arg):
        self.offset, self.kind, self.arg = offset, kind, arg


class _Pipe:
    """One direction of a connection: src -> queue -> dst, with its faults."""

    def __init__(self, conn, direction, src, dst):
        self.conn = conn
        self.dir = direction
        self.src, self.dst = src, dst
        self.queue = collections.deque()   # [due, bytes|marker]
        self.queued = 0
        self.src_done = False              # EOF or RST read from src (or reading stopped)
        self.done = False                  # nothing more will move this way
        self.halted = False                # half-closed: src no longer read
        self.pos = 0                       # bytes delivered to dst
        self.latency = 0.0
        self.rate = 0
        self.tokens = 0.0
        self.burst = 0.0
        self.t_tokens = time.monotonic()
        self.triggers = []                 # sorted by offset
        self.stall_until = 0.0             # monotonic; INF = until release
        self.trickle_left = 0
        self.trickle_gap = 0.0
        self.trickle_next = 0.0
        self.write_blocked = False
        self.wake = INF                    # when pump() wants to run again

    def add_rate(self, rate):
        self.rate = rate if not self.rate else min(self.rate, rate)
        self.burst = max(1.0, self.rate * 0.05)
        self.tokens = self.burst

    def wants_read(self):
        return not (self.src_done or self.halted or self.done or self.queued >= MAX_QUEUED)


class _Conn:
    def __init__(self, relay, rec, down_sock):
        self.relay = relay
        self.rec = rec
        self.down = down_sock   # the connecting peer
        self.up = None          # toward the target
        self.connecting = True
        self.closed = False
        self.pipes = {}

    def sockets(self):
        return [s for s in (self.down, self.up) if s is not None]


def _rst_close(s):
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        s.close()
    except OSError:
        pass


def _fin_close(s):
    try:
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    # Bytes left unread when a socket is closed make the kernel answer with a
    # reset (RFC 2525): drop what is already here so that the FIN stays a FIN.
    try:
        for _ in range(64):
            if not s.recv(CHUNK):
                break
    except OSError:
        pass
    try:
        s.close()
    except OSError:
        pass


class FaultRelay:
    def __init__(self, listen, target, time_limit=600.0, max_conns=100000, preserve_source=False, seed=None,
                 connect_timeout=10.0, log=None, sockbuf=128 * 1024):
        """listen: (host, port; 0 = any free port); target: (host, port). sockbuf: the
        kernel receive and send buffer of each relay socket (None: the kernel's
        autotuning, up to tens of MiB on loopback), so that the bytes in flight inside
        the relay stay bounded like a network path's and a fault at a byte offset
        reaches a sender that is still sending."""
        self.listen_addr = listen
        self.target = target
        self.time_limit = time_limit
        self.max_conns = max_conns
        self.preserve_source = preserve_source
        self.connect_timeout = connect_timeout
        self.sockbuf = sockbuf
        self.rng = random.Random(seed)
        self.log = log                    # callable(dict) when a connection ends, or None
        self.rules = []
        self.fronts = []                  # (listen_host, first, last, target_host)
        self.conns = []                   # ConnRecord of every accepted connection
        self.faults_fired = 0
        self.faults_armed = 0
        self.accepted = 0
        self.port = None
        self._lock = threading.Lock()
        self._cmds = collections.deque()
        self._live = []
        self._listeners = {}              # socket -> (kind, port, target)
        self._sel = None
        self._thread = None
        self._stop = threading.Event()
        self._stopped = threading.Event()
        self._wake_r = self._wake_w = None
        self.deadline = None
        self.error = None

    # -- configuration (before or after start)
    def add_front(self, listen_host, first, last, target_host):
        """Relay each port of first..last on listen_host to the same port on target_host."""
        self.fronts.append((listen_host, first, last, target_host))
        if self._sel is not None:
            err = []
            done = threading.Event()

            def bind():
                try:
                    self._bind_front(listen_host, first, last, target_host)
                except OSError as e:
                    err.append(e)
                done.set()
            self._call(bind)
            if not done.wait(10):
                raise RuntimeError("the relay loop did not bind the front")
            if err:
                raise err[0]

    def add_rule(self, rule):
        with self._lock:
            self.rules.append(rule)
        return rule

    def remove_rule(self, rule):
        with self._lock:
            if rule in self.rules:
                self.rules.remove(rule)

    def clear_rules(self):
        with self._lock:
            self.rules = []

    # -- life cycle
    def bind(self):
        self._sel = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._sel.register(self._wake_r, selectors.EVENT_READ, ("wake", None))
        s = self._listen_socket(self.listen_addr[0], self.listen_addr[1])
        self.port = s.getsockname()[1]
        self._listeners[s] = ("main", self.port, self.target)
        self._sel.register(s, selectors.EVENT_READ, ("listen", s))
        for f in self.fronts:
            self._bind_front(*f)
        self.deadline = time.monotonic() + self.time_limit
        return self

    def _listen_socket(self, host, port):
        s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._bufs(s)  # before listen(): accepted sockets inherit them (the window scale is set at SYN)
        try:
            s.bind((host, port))
        except OSError:
            s.close()
            raise
        s.listen(128)
        s.setblocking(False)
        return s

    def _bufs(self, s):
        if self.sockbuf:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.sockbuf)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.sockbuf)

    def _bind_front(self, listen_host, first, last, target_host):
        for p in range(first, last + 1):
            s = self._listen_socket(listen_host, p)
            self._listeners[s] = ("range", p, (target_host, p))
            self._sel.register(s, selectors.EVENT_READ, ("listen", s))

    def start(self):
        """Binds now (errors raise here) and runs the loop in a daemon thread."""
        if self._sel is None:
            self.bind()
        self._thread = threading.Thread(target=self._run_guarded, name="faultrelay:%d" % self.port, daemon=True)
        self._thread.start()
        return self

    def run(self):
        """Runs the loop in the calling thread until stop() or the time limit."""
        if self._sel is None:
            self.bind()
        self._run_guarded()

    def stop(self, timeout=10.0):
        self._stop.set()
        self._poke()
        if self._thread is not None:
            self._thread.join(timeout)
        return self._stopped.is_set()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    @property
    def running(self):
        return self._thread is not None and self._thread.is_alive()

    # -- live control (thread-safe: run by the loop thread)
    def release(self):
        """Ends every stall, the timed ones and those waiting for release()."""
        self._call(self._do_release)

    def stall_now(self, seconds=None, **match):
        """Stalls both directions of the matching live connections (None: until release())."""
        self._call(lambda: self._for_live(match, lambda c: self._stall_conn(c, seconds)))

    def cut_now(self, how="rst", **match):
        self._call(lambda: self._for_live(match, lambda c: self._cut(c, how, "now")))

    def half_close_now(self, direction, **match):
        self._call(lambda: self._for_live(match, lambda c: self._half_close(c.pipes[direction], "now")))

    def inject(self, direction, kind, arg=None, after=0, **match):
        """Arms a fault on the matching live connections, after more bytes in direction
        (0: at the next byte, or at the end of the stream): kind "cut" (arg "fin"/"rst"),
        "half" (half-close), "stall" (arg seconds, None = until release()), "trickle"
        (arg (count, gap))."""
        if kind not in ("cut", "half", "stall", "trickle"):
            raise ValueError("inject: kind %r" % (kind,))

        def arm(c):
            p = c.pipes[direction]
            p.triggers.append(_Trigger(p.pos + after, kind, arg))
            p.triggers.sort(key=lambda t: t.offset)
            c.rec.armed.append("%s: %s%s after %d more bytes" % (direction, kind, "" if arg is None else " %s" % (arg,),
                                                                  after))
            self.faults_armed += 1
        self._call(lambda: self._for_live(match, arm))

    def reset(self, timeout=10.0):
        """Resets every live connection and drops the rules (between test cases)."""
        self.clear_rules()
        done = threading.Event()

        def go():
            for c in list(self._live):
                self._close(c, "relay-reset", rst=True)
            done.set()
        self._call(go)
        return done.wait(timeout)

    def live(self):
        return len(self._live)

    def wait_idle(self, timeout=10.0):
        """Waits until no connection is live; True if so."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self._live:
                return True
            time.sleep(0.02)
        return not self._live

    # -- internals
    def _call(self, fn):
        self._cmds.append(fn)
        self._poke()

    def _poke(self):
        try:
            self._wake_w.send(b"x")
        except (OSError, AttributeError):
            pass

    def _for_live(self, match, fn):
        on = match.get("on", "any")
        for c in list(self._live):
            r = c.rec
            if on != "any" and r.kind != on:
                continue
            if match.get("port") is not None and r.port != match["port"]:
                continue
            if match.get("peer") is not None and r.peer[0] != match["peer"]:
                continue
            if not c.closed:
                fn(c)

    def _do_release(self):
        for c in self._live:
            for p in c.pipes.values():
                if p.stall_until > time.monotonic():
                    p.stall_until = 0.0

    def _stall_conn(self, c, seconds):
        until = INF if seconds is None else time.monotonic() + seconds
        for p in c.pipes.values():
            p.stall_until = max(p.stall_until, until)
        self._fired(c, "stall-now %s" % ("until release" if seconds is None else "%ss" % seconds))

    def _fired(self, c, what):
        c.rec.fired.append(what)
        self.faults_fired += 1

    def _run_guarded(self):
        try:
            self._loop()
        except Exception as e:  # noqa: BLE001 - recorded for the owner, then everything is closed
            self.error = "%s: %s" % (type(e).__name__, e)
            raise
        finally:
            for c in list(self._live):
                self._close(c, "relay-stop", rst=True)
            self._close_listeners()
            for s in (self._wake_r, self._wake_w):
                try:
                    s.close()
                except OSError:
                    pass
            try:
                self._sel.close()
            except (OSError, AttributeError):
                pass
            self._stopped.set()

    def _loop(self):
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= self.deadline:
                break
            while self._cmds:
                self._cmds.popleft()()
            wake = self.deadline
            for c in list(self._live):
                if c.closed:
                    continue
                if c.connecting:
                    wake = min(wake, c.connect_deadline)
                    if now >= c.connect_deadline:
                        self._close(c, "connect-timeout", rst=True)
                    continue
                for p in list(c.pipes.values()):
                    if not c.closed:
                        self._pump(p)
                        wake = min(wake, p.wake)
                if not c.closed:
                    self._update_interest(c)
            timeout = max(0.0, min(wake, now + 0.5) - time.monotonic())
            for key, mask in self._sel.select(timeout):
                what, obj = key.data
                if what == "wake":
                    try:
                        while self._wake_r.recv(4096):
                            pass
                    except (BlockingIOError, InterruptedError):
                        pass
                elif what == "listen":
                    self._accept(obj)
                else:
                    self._sock_event(obj, key.fileobj, mask)

    # accept and connect
    def _close_listeners(self):
        for s in list(self._listeners):
            try:
                self._sel.unregister(s)
            except (KeyError, ValueError):
                pass
            try:
                s.close()
            except OSError:
                pass
        self._listeners.clear()

    def _accept(self, ls):
        for _ in range(64):
            if self.accepted >= self.max_conns:
                self._close_listeners()
                return
            try:
                s, peer = ls.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            self.accepted += 1
            kind, port, target = self._listeners[ls]
            s.setblocking(False)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            rec = ConnRecord(self.accepted, kind, port, peer[:2])
            self.conns.append(rec)
            c = _Conn(self, rec, s)
            self._live.append(c)
            c.pipes[UP] = _Pipe(c, UP, None, None)
            c.pipes[DOWN] = _Pipe(c, DOWN, None, None)
            self._arm(c)
            self._connect(c, target)

    def _arm(self, c):
        with self._lock:
            rules = list(self.rules)
        rec = c.rec
        for rule in rules:
            if not rule.matches(rec.kind, rec.port, rec.peer[0]):
                continue
            n = rule.seen
            rule.seen += 1
            if rule.index is not None and n != rule.index:
                continue
            if rule.count is not None and rule.applied >= rule.count:
                continue
            if rule.prob < 1.0 and self.rng.random() >= rule.prob:
                continue
            rule.applied += 1
            dirs = DIRS if rule.dir == "both" else (rule.dir,)
            for d in dirs:
                p = c.pipes[d]
                desc = []
                if rule.latency:
                    p.latency += _ival(rule.latency, self.rng)
                    desc.append("latency %.3fs" % p.latency)
                if rule.rate:
                    p.add_rate(_ival(rule.rate, self.rng))
                    desc.append("rate %d B/s" % p.rate)
                if rule.stall_at is not None:
                    off = _ival(rule.stall_at, self.rng)
                    dur = None if rule.stall_for is None else _ival(rule.stall_for, self.rng)
                    p.triggers.append(_Trigger(off, "stall", dur))
                    desc.append("stall@%d %s" % (off, "until release" if dur is None else "%.2fs" % dur))
                if rule.cut_at is not None:
                    off = _ival(rule.cut_at, self.rng)
                    p.triggers.append(_Trigger(off, "cut", rule.cut))
                    desc.append("cut-%s@%d" % (rule.cut, off))
                if rule.half_close_at is not None:
                    off = _ival(rule.half_close_at, self.rng)
                    p.triggers.append(_Trigger(off, "half", None))
                    desc.append("half-close@%d" % off)
                if rule.trickle_at is not None:
                    off = _ival(rule.trickle_at, self.rng)
                    p.triggers.append(_Trigger(off, "trickle", (_ival(rule.trickle_bytes, self.rng),
                                                                 rule.trickle_gap)))
                    desc.append("trickle %s B@%d" % (rule.trickle_bytes, off))
                p.triggers.sort(key=lambda t: t.offset)
                self.faults_armed += len(desc)
                if desc:
                    rec.armed.append("%s: %s" % (d, ", ".join(desc)))

    def _connect(self, c, target):
        host, port = target
        try:
            u = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        except OSError:
            self._close(c, "connect-error", rst=True)
            return
        u.setblocking(False)
        try:
            u.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._bufs(u)
            if self.preserve_source:
                u.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                u.bind((c.rec.peer[0], 0))
            err = u.connect_ex((host, port))
        except OSError as e:
            err = e.errno or errno.EIO
        c.up = u
        c.connect_deadline = time.monotonic() + self.connect_timeout
        if err not in (0, errno.EINPROGRESS):
            self._close(c, "connect-error:%s" % errno.errorcode.get(err, err), rst=True)
            return
        self._sel.register(u, selectors.EVENT_WRITE, ("conn", c))
        # The downstream socket waits (its bytes stay in the kernel) until the connect completes.

    def _connected(self, c):
        err = c.up.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            self._close(c, "connect-error:%s" % errno.errorcode.get(err, err), rst=True)
            return
        c.connecting = False
        try:
            c.rec.local = c.up.getsockname()[:2]
        except OSError:
            pass
        up, down = c.pipes[UP], c.pipes[DOWN]
        up.src, up.dst = c.down, c.up
        down.src, down.dst = c.up, c.down
        self._sel.register(c.down, selectors.EVENT_READ, ("conn", c))
        self._update_interest(c)

    # events
    def _sock_event(self, c, sock, mask):
        if c.closed:
            return
        if c.connecting:
            if sock is c.up and mask & selectors.EVENT_WRITE:
                self._connected(c)
            return
        if mask & selectors.EVENT_WRITE:
            for p in c.pipes.values():
                if p.dst is sock:
                    p.write_blocked = False
                    self._pump(p)
        if c.closed:
            return
        if mask & selectors.EVENT_READ:
            for p in c.pipes.values():
                if p.src is sock and p.wants_read():
                    self._read(p)
                    if c.closed:
                        return
                    self._pump(p)
        if not c.closed:
            self._update_interest(c)

    def _update_interest(self, c):
        for s in c.sockets():
            ev = 0
            for p in c.pipes.values():
                if p.src is s and p.wants_read():
                    ev |= selectors.EVENT_READ
                if p.dst is s and p.write_blocked:
                    ev |= selectors.EVENT_WRITE
            try:
                key = self._sel.get_key(s)
            except KeyError:
                key = None
            if ev == 0:
                if key is not None:
                    self._sel.unregister(s)
            elif key is None:
                self._sel.register(s, ev, ("conn", c))
            elif key.events != ev:
                self._sel.modify(s, ev, ("conn", c))

    def _read(self, p):
        try:
            data = p.src.recv(CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except ConnectionResetError:
            p.queue.append([time.monotonic() + p.latency, _RST])
            p.src_done = True
            return
        except OSError:
            p.queue.append([time.monotonic() + p.latency, _RST])
            p.src_done = True
            return
        if not data:
            p.queue.append([time.monotonic() + p.latency, _EOF])
            p.src_done = True
            return
        p.queue.append([time.monotonic() + p.latency, data])
        p.queued += len(data)

    def _pump(self, p):
        """Moves what may move now from p's queue to p.dst; sets p.wake."""
        c = p.conn
        p.wake = INF
        for _ in range(256):  # bounded work per call; the loop comes back
            if c.closed or p.done or p.write_blocked:
                return
            now = time.monotonic()
            if p.stall_until > now:
                p.wake = p.stall_until
                return
            if not p.queue:
                return
            item = p.queue[0]
            due, data = item
            if due > now:
                p.wake = due
                return
            t = p.triggers[0] if p.triggers else None
            if t is not None and t.offset <= p.pos:
                p.triggers.pop(0)
                self._fire(p, t)
                continue
            if data is _EOF:
                p.queue.popleft()
                p.done = True
                c.rec.ended[p.dir] = "eof"
                try:
                    p.dst.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                self._maybe_finish(c)
                return
            if data is _RST:
                p.queue.popleft()
                c.rec.ended[p.dir] = "rst"
                self._close(c, None, rst=True)
                return
            limit = len(data)
            if t is not None:
                limit = min(limit, t.offset - p.pos)
            if p.trickle_left > 0:
                if now < p.trickle_next:
                    p.wake = p.trickle_next
                    return
                limit = 1
            if p.rate:
                p.tokens = min(p.burst, p.tokens + (now - p.t_tokens) * p.rate)
                p.t_tokens = now
                if p.tokens < 1.0:
                    p.wake = now + (1.0 - p.tokens) / p.rate
                    return
                limit = min(limit, int(p.tokens))
            try:
                n = p.dst.send(data[:limit])
            except (BlockingIOError, InterruptedError):
                p.write_blocked = True
                return
            except OSError as e:
                # The receiver is gone: reset the sender, as a middlebox would.
                c.rec.ended[p.dir] = "send-error:%s" % errno.errorcode.get(e.errno, e.errno)
                self._close(c, None, rst=True)
                return
            p.pos += n
            c.rec.bytes[p.dir] = p.pos
            p.queued -= n
            if n == len(data):
                p.queue.popleft()
            else:
                item[1] = data[n:]
            if p.rate:
                p.tokens -= n
            if p.trickle_left > 0:
                p.trickle_left -= n
                p.trickle_next = time.monotonic() + p.trickle_gap
        p.wake = time.monotonic()

    def _fire(self, p, t):
        c = p.conn
        if t.kind == "stall":
            p.stall_until = INF if t.arg is None else time.monotonic() + t.arg
            self._fired(c, "stall %s@%d %s" % (p.dir, p.pos, "until release" if t.arg is None else "%.2fs" % t.arg))
        elif t.kind == "cut":
            self._cut(c, t.arg, "%s@%d" % (p.dir, p.pos))
        elif t.kind == "half":
            self._half_close(p, "@%d" % p.pos)
        elif t.kind == "trickle":
            p.trickle_left, p.trickle_gap = t.arg
            p.trickle_next = 0.0
            self._fired(c, "trickle %s@%d (%d B)" % (p.dir, p.pos, t.arg[0]))

    def _cut(self, c, how, where):
        if c.closed:
            return
        self._fired(c, "cut-%s %s" % (how, where))
        for d in DIRS:
            if c.rec.ended[d] is None:
                c.rec.ended[d] = "cut-" + how
        self._close(c, None, rst=(how == "rst"))

    def _half_close(self, p, where):
        c = p.conn
        if c.closed or p.done:
            return
        self._fired(c, "half-close %s%s" % (p.dir, where))
        p.halted = True
        p.done = True
        p.queue.clear()
        p.queued = 0
        c.rec.ended[p.dir] = "half-close"
        try:
            p.dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        self._update_interest(c)
        self._maybe_finish(c)

    def _maybe_finish(self, c):
        if all(p.done for p in c.pipes.values()):
            self._close(c, None, rst=False)

    def _close(self, c, why, rst):
        if c.closed:
            return
        c.closed = True
        for d in DIRS:
            if c.rec.ended[d] is None:
                c.rec.ended[d] = why or ("reset" if rst else "closed")
        for s in c.sockets():
            try:
                self._sel.unregister(s)
            except (KeyError, ValueError):
                pass
            (_rst_close if rst else _fin_close)(s)
        c.rec.closed = time.monotonic()
        if c in self._live:
            self._live.remove(c)
        if self.log is not None:
            try:
                self.log(c.rec.as_dict())
            except Exception:  # noqa: BLE001 - a logging callback must not stop the relay
                pass


# --------------------------------------------------------------------------
# Command line


def _hostport(text):
    host, _, port = text.rpartition(":")
    host = host.strip("[]")
    return host, int(port)


def _front(text):
    """127.0.0.3:30000-30015=127.0.0.1"""
    left, sep, target_host = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError("--front HOST:FIRST-LAST=TARGET_HOST")
    host, _, ports = left.rpartition(":")
    first, _, last = ports.partition("-")
    return host.strip("[]"), int(first), int(last or first), target_host.strip("[]")


def main(argv=None):
    ap = argparse.ArgumentParser(description="TCP relay that injects faults (see the module documentation).")
    ap.add_argument("--listen", required=True, type=_hostport, help="HOST:PORT to listen on (PORT 0: any)")
    ap.add_argument("--target", required=True, type=_hostport, help="HOST:PORT to relay to")
    ap.add_argument("--front", action="append", default=[], type=_front,
                    help="HOST:FIRST-LAST=TARGET_HOST: relay each of these ports to the same port of TARGET_HOST")
    ap.add_argument("--fault", action="append", default=[], type=Rule.parse,
                    help="a rule: key=value,... (on, port, peer, index, prob, count, dir, latency, rate, stall_at, "
                         "stall_for, cut_at, cut, half_close_at, trickle_at, trickle_bytes, trickle_gap)")
    ap.add_argument("--preserve-source", action="store_true", help="connect to the target from the peer's IP")
    ap.add_argument("--time-limit", type=float, default=600.0, help="stop after this many seconds (600)")
    ap.add_argument("--max-conns", type=int, default=100000, help="accept at most this many connections")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--sockbuf", type=int, default=128 * 1024,
                    help="kernel buffer size of each relay socket, bytes (0: the kernel's autotuning)")
    ap.add_argument("-v", "--verbose", action="store_true", help="one JSON line per connection when it ends")
    a = ap.parse_args(argv)

    def log(d):
        print(json.dumps(d), flush=True)

    r = FaultRelay(a.listen, a.target, time_limit=a.time_limit, max_conns=a.max_conns,
                   preserve_source=a.preserve_source, seed=a.seed, log=log if a.verbose else None,
                   sockbuf=a.sockbuf or None)
    for f in a.front:
        r.add_front(*f)
    for rule in a.fault:
        r.add_rule(rule)
    r.bind()
    signal.signal(signal.SIGTERM, lambda *_: r._stop.set() or r._poke())
    signal.signal(signal.SIGINT, lambda *_: r._stop.set() or r._poke())
    signal.signal(signal.SIGUSR1, lambda *_: r.stall_now(None))
    signal.signal(signal.SIGUSR2, lambda *_: r.release())
    print(json.dumps({"listening": "%s:%d" % (a.listen[0], r.port), "target": "%s:%d" % a.target,
                      "fronts": len(a.front), "rules": [x.name for x in a.fault],
                      "time_limit": a.time_limit}), flush=True)
    r.run()
    print(json.dumps({"stopped": True, "accepted": r.accepted, "faults_fired": r.faults_fired,
                      "error": r.error}), flush=True)
    return 1 if r.error else 0


if __name__ == "__main__":
    sys.exit(main())
