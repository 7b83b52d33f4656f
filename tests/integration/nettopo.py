"""Network-namespace topologies for ftpsgate's integration tests (Python 3 standard library only).

Used by test_transparent.py (issue 6); builds on harness.py (processes by PID, Certs,
vsftpd, the FTPS clients) and changes nothing in it.

- Topology: network namespaces named <tag>-<role>-<random suffix>, veth links between
  them, addresses and routes; every process started in them is a child recorded by PID
  (harness.spawn, with PDEATHSIG), and close() (also run at exit, on an exception or a
  signal) stops exactly those PIDs and deletes exactly those namespaces.
- Topology.inside(role): a context manager that moves the calling thread into a
  namespace (setns) and back, so the harness's clients (curl, lftp, ftplib, raw
  sockets) run in the client's namespace unchanged; sockets keep the namespace they
  were created in, so one session may have its control connection in one namespace
  and its data connection in another (PROXY protocol tests).
- NsVsftpd: harness.Vsftpd listening on a namespace's address (port 21 by default).
- NsProxy: ftpsgate in a namespace, with a config written from listener dicts.
- Haproxy: haproxy (Debian package) in a namespace, in the foreground, by PID.
- proxy_v1 / proxy_v2: PROXY protocol headers (haproxy's proxy-protocol.txt).
- PPFTPS: harness.FTPS that sends a PROXY header before anything else.

Everything needs root (CAP_SYS_ADMIN for namespaces, CAP_NET_ADMIN inside them);
available() says why not, for a Skip.
"""

import atexit
import contextlib
import ctypes
import ipaddress
import json
import os
import re
import signal
import socket
import ssl
import struct
import subprocess

import harness as H

CLONE_NEWNET = 0x40000000
IP = "/usr/sbin/ip" if os.path.exists("/usr/sbin/ip") else "ip"
REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
SETUP_SCRIPT = os.path.join(REPO, "deploy", "transparent-setup.sh")

_libc = ctypes.CDLL(None, use_errno=True)
_topologies = []


def _setns(fd):
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        e = ctypes.get_errno()
        raise OSError(e, "setns: %s" % os.strerror(e))


def available():
    """None when namespaces can be made here, else the reason (for a Skip)."""
    if os.geteuid() != 0:
        return "needs root (network namespaces, nftables)"
    for tool in ("ip", "nft"):
        if not any(os.access(os.path.join(d, tool), os.X_OK) for d in ("/usr/sbin", "/sbin", "/usr/bin")):
            return "%s not installed (tests/setup-deps.sh installs it)" % tool
    name = "fgprobe-%s" % os.urandom(3).hex()
    r = subprocess.run([IP, "netns", "add", name], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, timeout=20)
    if r.returncode != 0:
        return "cannot create a network namespace: %s" % r.stdout.strip()
    subprocess.run([IP, "netns", "del", name], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   timeout=20)
    return None


def reap_stale(tag):
    """Deletes namespaces <tag>-<role>-<pid>-<hex> left by a test process that no longer runs."""
    rx = re.compile(r"^%s-[a-z0-9]+-(\d+)-[0-9a-f]{6}$" % re.escape(tag))
    try:
        names = os.listdir("/run/netns")
    except OSError:
        return
    for name in names:
        m = rx.match(name)
        if m and int(m.group(1)) != os.getpid() and not H.pid_alive(int(m.group(1))):
            subprocess.run([IP, "netns", "del", name], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           timeout=20)


class Topology:
    """A set of network namespaces with veth links; torn down by close() or at exit."""

    def __init__(self, tag="fg"):
        self.tag = tag
        # <tag>-<role>-<our pid>-<random>: a namespace whose test process is gone (killed by a
        # ctest timeout, SIGKILL: no atexit) is recognised and removed by the next run.
        self.suffix = "%d-%s" % (os.getpid(), os.urandom(3).hex())
        reap_stale(tag)
        self.ns = {}       # role -> namespace name
        self.procs = []    # Popen objects started in our namespaces
        self.closed = False
        self._orig_fd = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        _topologies.append(self)

    # -- building
    def add(self, role):
        name = "%s-%s-%s" % (self.tag, role, self.suffix)
        self._ip(["netns", "add", name])
        self.ns[role] = name
        self.sh(role, [IP, "link", "set", "lo", "up"])
        return name

    def link(self, a, a_if, a_addr, b, b_if, b_addr):
        """A veth pair a_if (in a) <-> b_if (in b), addresses as "10.77.1.1/24", both up."""
        self._ip(["-n", self.ns[a], "link", "add", a_if, "type", "veth", "peer", "name", b_if,
                  "netns", self.ns[b]])
        for role, ifname, addr in ((a, a_if, a_addr), (b, b_if, b_addr)):
            if addr:
                self._ip(["-n", self.ns[role], "addr", "add", addr, "dev", ifname])
            self._ip(["-n", self.ns[role], "link", "set", ifname, "up"])

    def addr(self, role, ifname, addr):
        self._ip(["-n", self.ns[role], "addr", "add", addr, "dev", ifname])

    def route(self, role, *args):
        self._ip(["-n", self.ns[role], "route", "add"] + list(args))

    def sysctl(self, role, key, value):
        self.sh(role, ["sysctl", "-q", "-w", "%s=%s" % (key, value)])

    def _ip(self, args):
        r = subprocess.run([IP] + args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=20)
        if r.returncode != 0:
            raise RuntimeError("ip %s: %s" % (" ".join(args), r.stdout.strip()))

    # -- running things in a namespace
    def argv(self, role, argv):
        return [IP, "netns", "exec", self.ns[role]] + list(argv)

    def sh(self, role, argv, timeout=30, check=True, env=None):
        """Runs argv in role's namespace; returns CompletedProcess (text). check: raise on failure."""
        r = H.run_cmd(self.argv(role, argv), timeout=timeout, env=env)
        if check and r.returncode != 0:
            raise RuntimeError("[%s] %s: exit %d: %s%s" % (role, " ".join(argv), r.returncode,
                                                           r.stdout[-1500:], r.stderr[-1500:]))
        return r

    def nft(self, role, script):
        """Loads an nftables script (nft -f -) in role's namespace."""
        r = subprocess.run(self.argv(role, ["nft", "-f", "-"]), input=script, text=True, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=20)
        if r.returncode != 0:
            raise RuntimeError("[%s] nft -f -: %s\n%s" % (role, r.stdout.strip(), script))

    def spawn(self, role, argv, log_path, env=None):
        """A long-running child in role's namespace (`ip netns exec` execs it: the PID is argv's)."""
        p = H.spawn(self.argv(role, argv), log_path, env=env)
        self.procs.append(p)
        return p

    @contextlib.contextmanager
    def inside(self, role):
        """The calling thread (and what it starts: curl, lftp, sockets) is in role's namespace."""
        back = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        fd = os.open("/run/netns/%s" % self.ns[role], os.O_RDONLY | os.O_CLOEXEC)
        try:
            _setns(fd)
            yield
        finally:
            os.close(fd)
            try:
                _setns(back)
            finally:
                os.close(back)

    def listening(self, role, port):
        """True when a TCP socket listens on port in role's namespace (without connecting to it)."""
        r = self.sh(role, ["ss", "-Hltn", "sport = :%d" % port], check=False, timeout=10)
        return r.returncode == 0 and (":%d" % port) in r.stdout

    def wait_listening(self, role, port, timeout, proc=None):
        def ok():
            if proc is not None and proc.poll() is not None:
                return "exited"
            return self.listening(role, port)
        return H.wait_until(ok, timeout, step=0.1) is True

    # -- teardown
    def close(self):
        if self.closed:
            return
        self.closed = True
        try:
            _setns(self._orig_fd)  # in case an exception left this thread elsewhere
        except OSError:
            pass
        for p in self.procs:
            try:
                H.stop_process(p, signal.SIGKILL if p.poll() is None else signal.SIGTERM, wait=5)
            except Exception:  # noqa: BLE001 - teardown goes on
                pass
        for role, name in list(self.ns.items()):
            subprocess.run([IP, "netns", "del", name], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           timeout=20)
        try:
            os.close(self._orig_fd)
        except OSError:
            pass


def _close_all():
    for t in list(_topologies):
        t.close()


atexit.register(_close_all)


# --------------------------------------------------------------------------
# vsftpd in a namespace


class NsVsftpd(H.Vsftpd):
    """harness.Vsftpd on addr:port in a namespace of topo (plain FTP, anonymous, /pub and /up)."""

    def __init__(self, env, name, topo, role, addr, port=21, extra_conf=()):
        super().__init__(env, name, tls=False)
        self.topo = topo
        self.role = role
        self.host = addr
        self.fixed_port = port
        self.extra_lines = list(extra_conf)  # raw lines; the base class's extra_conf is a dict

    def _write_conf(self):
        super()._write_conf()
        with open(self.conf) as f:
            lines = f.read().splitlines()
        out = []
        for ln in lines:
            if ln.startswith("listen_address="):
                ln = "listen_address=%s" % self.host
            elif ln.startswith("listen_port="):
                ln = "listen_port=%d" % self.port
            out.append(ln)
        out += self.extra_lines
        with open(self.conf, "w") as f:
            f.write("\n".join(out) + "\n")

    def start(self):
        if not os.access(H.VSFTPD_BIN, os.X_OK):
            raise RuntimeError("vsftpd not found at %s (run tests/setup-deps.sh)" % H.VSFTPD_BIN)
        self.port = self.fixed_port
        self._write_conf()
        self.proc = self.topo.spawn(self.role, [H.VSFTPD_BIN, self.conf], self.out)
        if not self.topo.wait_listening(self.role, self.port, 10, self.proc):
            raise RuntimeError("vsftpd %s did not start on %s:%d; output: %s"
                               % (self.name, self.host, self.port, H.tail_file(self.out, 10)))
        return self

    @property
    def address(self):
        return "%s:%d" % (self.host, self.port)

    def clients_since(self, mark=0):
        """Every client address vsftpd logged (CONNECT, commands, transfers) since mark."""
        return set(re.findall(r'Client "([^"]*)"', self.log_since(mark)))


# --------------------------------------------------------------------------
# ftpsgate in a namespace


class NsProxy(H.LogFile):
    """ftpsgate in role's namespace with the given listener dicts (each complete: bind with a
    port). Its log is where the tests read what it did."""

    def __init__(self, env, topo, role, binary, name="ftpsgate"):
        self.env = env
        self.topo = topo
        self.role = role
        self.binary = binary
        self.name = name
        self.listeners = []
        self.extra_limits = {}
        self.config_path = os.path.join(env.tmp, "%s.json" % name)
        self.log = os.path.join(env.tmp, "%s.log" % name)
        self.proc = None
        self.sanitized = H._is_sanitized(binary)

    def config(self):
        limits = {"max_line": 4096}
        limits.update(self.extra_limits)
        return {
            "tls": {"main": {"cert": self.env.cert, "key": self.env.key}},
            "listeners": self.listeners,
            "log": {"level": "debug", "format": "text"},
            "limits": limits,
        }

    def write_config(self):
        with open(self.config_path, "w") as f:
            json.dump(self.config(), f, indent=2)

    def start(self, timeout=None):
        timeout = timeout or (40 if self.sanitized else 15)
        self.write_config()
        with open(self.log, "ab") as f:
            f.write(b"=== nettopo: starting ftpsgate\n")
        mark = os.path.getsize(self.log)
        self.proc = self.topo.spawn(self.role, [self.binary, "-c", self.config_path], self.log)

        def ready():
            if self.proc.poll() is not None:
                return "exited"
            return " ready" in self.log_since(mark)
        got = H.wait_until(ready, timeout, step=0.05)
        if got is not True:
            rc = self.proc.poll()
            if rc is None:
                H.stop_process(self.proc, signal.SIGKILL, 5)
            raise RuntimeError("ftpsgate did not become ready (exit %s); log:\n%s" % (rc, H.tail_file(self.log, 20)))
        return self

    def alive(self):
        return self.proc is not None and self.proc.poll() is None and H.pid_alive(self.proc.pid)

    def wait_log(self, pattern, mark, timeout=10):
        """Waits (bounded) for a log line matching the regex since mark; returns the match or None."""
        rx = re.compile(pattern)

        def find():
            return rx.search(self.log_since(mark))
        return H.wait_until(find, timeout)

    def stop_checked(self):
        """SIGTERM; checks exit 0, no sanitizer report and no password in the log."""
        H.check(self.proc is not None, "ftpsgate was not started")
        H.check_clean_stop(self.proc, self.log)

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            H.stop_process(self.proc, signal.SIGKILL, 5)


# --------------------------------------------------------------------------
# haproxy in a namespace


class Haproxy:
    """haproxy -db (foreground) in role's namespace, mode tcp, with the given frontends:
    [(bind "ip:port" or "ip:first-last", server "ip[:port]", options like "send-proxy")]."""

    BIN = "/usr/sbin/haproxy"

    def __init__(self, env, topo, role, frontends, name="haproxy"):
        self.env = env
        self.topo = topo
        self.role = role
        self.frontends = frontends
        self.conf = os.path.join(env.tmp, "%s.cfg" % name)
        self.log = os.path.join(env.tmp, "%s.log" % name)
        self.proc = None

    @classmethod
    def available(cls):
        return os.access(cls.BIN, os.X_OK)

    def start(self):
        lines = [
            "global",
            "  maxconn 200",
            "defaults",
            "  mode tcp",
            "  timeout connect 5s",
            "  timeout client 120s",
            "  timeout server 120s",
        ]
        ports = []
        for i, (bind, server, opts) in enumerate(self.frontends):
            lines += ["frontend f%d" % i, "  bind %s" % bind, "  default_backend b%d" % i,
                      "backend b%d" % i, "  server s%d %s %s" % (i, server, opts)]
            ports.append(int(bind.rsplit(":", 1)[1].split("-")[0]))
        with open(self.conf, "w") as f:
            f.write("\n".join(lines) + "\n")
        r = H.run_cmd([self.BIN, "-c", "-f", self.conf], timeout=30)
        if r.returncode != 0:
            raise RuntimeError("haproxy -c: %s%s" % (r.stdout[-1500:], r.stderr[-1500:]))
        self.proc = self.topo.spawn(self.role, [self.BIN, "-db", "-f", self.conf], self.log)
        for p in ports:
            if not self.topo.wait_listening(self.role, p, 10, self.proc):
                raise RuntimeError("haproxy did not listen on %d; output: %s" % (p, H.tail_file(self.log, 10)))
        return self

    def stop(self):
        if self.proc is not None:
            H.stop_process(self.proc, signal.SIGTERM, 5)


# --------------------------------------------------------------------------
# PROXY protocol (haproxy's doc/proxy-protocol.txt)

PP2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def proxy_v1(src, dst):
    """src, dst: (ip, port). 'PROXY TCP4 ...\\r\\n' (TCP6 for IPv6)."""
    fam = "TCP6" if ":" in src[0] else "TCP4"
    return ("PROXY %s %s %s %d %d\r\n" % (fam, src[0], dst[0], src[1], dst[1])).encode()


def proxy_v2(src, dst, command="PROXY", tlvs=b""):
    """Binary v2 header: version 2, PROXY (or LOCAL) command, TCP over IPv4/IPv6."""
    ver_cmd = 0x21 if command == "PROXY" else 0x20
    if ":" in src[0]:
        fam = 0x21
        addrs = (ipaddress.IPv6Address(src[0]).packed + ipaddress.IPv6Address(dst[0]).packed
                 + struct.pack("!HH", src[1], dst[1]))
    else:
        fam = 0x11
        addrs = (ipaddress.IPv4Address(src[0]).packed + ipaddress.IPv4Address(dst[0]).packed
                 + struct.pack("!HH", src[1], dst[1]))
    body = addrs + tlvs
    return PP2_SIG + bytes([ver_cmd, fam]) + struct.pack("!H", len(body)) + body


class PPFTPS(H.FTPS):
    """harness.FTPS (data TLS resumes the control session) that sends pp_header first,
    then speaks explicit FTPS, or implicit FTPS when implicit is set."""

    pp_header = b""
    implicit = False

    def connect(self, host="", port=0, timeout=-999, source_address=None):
        if host:
            self.host = host
        if port > 0:
            self.port = port
        if timeout != -999:
            self.timeout = timeout
        sock = socket.create_connection((self.host, self.port), self.timeout, source_address=source_address)
        self.af = sock.family
        if self.pp_header:
            sock.sendall(self.pp_header)
        if self.implicit:
            sock = self.context.wrap_socket(sock, server_hostname=self.host)
        self.sock = sock
        self.file = self.sock.makefile("r", encoding=self.encoding)
        self.welcome = self.getresp()
        return self.welcome


def pp_ftps(host, port, header, ca, implicit=False, login=True, timeout=30):
    ctx = ssl.create_default_context(cafile=ca)
    f = PPFTPS(context=ctx, timeout=timeout)
    f.pp_header = header
    f.implicit = implicit
    f.connect(host, port)
    if login:
        if not implicit:
            f.auth()
        f.login(H.FTP_USER, H.PASSWORD)
        f.prot_p()
    return f
