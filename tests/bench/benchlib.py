"""What bench.py's parts share: CPU and memory accounting from /proc, the processes it runs
(ftpsgate, vsftpd, pyftpdlib, ProFTPD mod_proxy through ../shared/peers, socat, curl, the
ftpsload generator) and small statistics. Python 3 standard library only, on top of
tests/integration/harness.py (certificates, vsftpd, ports, child processes killed at exit)."""
import json
import os
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import harness as H  # noqa: E402

CLK = os.sysconf("SC_CLK_TCK")
GiB = 1024 * H.MiB
ALL_CPUS = set(range(os.cpu_count() or 1))
PEERS = os.path.abspath(os.environ.get("FTPSGATE_PEERS", os.path.join(HERE, "..", "..", "..", "shared", "peers")))
PROFTPD_BIN = os.environ.get("FTPSGATE_PROFTPD", "/var/cache/ftpsgate-test/proftpd/usr/sbin/proftpd")
PROFTPD_MODDIR = os.environ.get("FTPSGATE_PROFTPD_MODULES", "/var/cache/ftpsgate-bench/proftpd-modules")
PY = "/usr/bin/python3"


def env_int(name, default):
    return int(os.environ.get(name, str(default)))


def median(xs):
    return statistics.median(xs) if xs else float("nan")


# --------------------------------------------------------------------------
# CPU and memory from /proc


def _stat_fields(pid):
    with open("/proc/%d/stat" % pid) as f:
        s = f.read()
    return s[s.rindex(")") + 2:].split()


def proc_cpu(pid):
    """CPU seconds of one process: every thread (live or ended) plus the children it reaped."""
    r = _stat_fields(pid)
    return sum(int(x) for x in r[11:15]) / CLK


def tree_cpu(pid):
    """proc_cpu over pid and its live descendants (a forking server's ended sessions are in
    its cutime once reaped)."""
    total = 0.0
    for p in [pid] + H.descendants(pid):
        try:
            total += proc_cpu(p)
        except (OSError, ValueError, IndexError):
            pass
    return total


def sys_busy():
    """(busy, total) CPU seconds of the whole machine since boot, from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    idle = v[3] + v[4]
    return (sum(v) - idle) / CLK, sum(v) / CLK


def children_cpu():
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def mem_kib(pid):
    """(rss, pss) in KiB of one process (all its threads share one address space)."""
    rss = pss = 0
    with open("/proc/%d/smaps_rollup" % pid) as f:
        for line in f:
            if line.startswith("Rss:"):
                rss = int(line.split()[1])
            elif line.startswith("Pss:"):
                pss = int(line.split()[1])
    return rss, pss


def vm_hwm_kib(pid):
    """The peak RSS of pid so far."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def set_affinity(pid, cpus):
    """Every thread of pid onto cpus (threads started later inherit the caller's mask)."""
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            os.sched_setaffinity(int(tid), cpus)
        except (ProcessLookupError, OSError):
            pass


def wait_quiet(max_wait, threshold, window=1.0):
    """Waits, at most max_wait seconds, until the whole machine was busy for less than threshold
    cores over the last window seconds (between measurements our own processes are idle, so what
    is busy then is other users' work). Returns (waited seconds, the last load seen in cores)."""
    t0 = time.monotonic()
    while True:
        b0 = sys_busy()[0]
        time.sleep(window)
        load = (sys_busy()[0] - b0) / window
        waited = time.monotonic() - t0
        if load < threshold or waited >= max_wait:
            return waited, load


class Window:
    """CPU seconds spent by named processes (callables) and by the whole machine between
    start() and stop(); 'others' is whatever the machine did besides: other users' jobs."""

    def __init__(self, **readers):
        self.readers = readers

    def start(self):
        self.t0 = time.monotonic()
        self.s0 = sys_busy()[0]
        self.c0 = children_cpu()
        self.v0 = {k: f() for k, f in self.readers.items()}
        return self

    def stop(self):
        self.wall = time.monotonic() - self.t0
        self.cpu = {k: f() - self.v0[k] for k, f in self.readers.items()}
        self.children = children_cpu() - self.c0   # our own reaped children: generator, curl, socat
        self.busy = sys_busy()[0] - self.s0
        self.others = max(0.0, self.busy - sum(self.cpu.values()) - self.children)
        return self


# --------------------------------------------------------------------------
# Processes


def _raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    H._pdeathsig()


def spawn(argv, log_path, nofile=False, stdin=None, stdout=None):
    """A child killed with us (PDEATHSIG) and at exit (harness's list)."""
    logf = open(log_path, "ab")
    p = subprocess.Popen(argv, stdin=stdin if stdin is not None else subprocess.DEVNULL,
                         stdout=stdout if stdout is not None else logf, stderr=logf,
                         preexec_fn=_raise_nofile if nofile else H._pdeathsig, close_fds=True)
    logf.close()
    H._children.append(p)
    return p


def wait_rusage(p, timeout):
    """Waits for child p; returns its CPU seconds (user+system, its reaped children included)."""
    deadline = time.monotonic() + timeout
    while True:
        pid, status, ru = os.wait4(p.pid, os.WNOHANG)
        if pid == p.pid:
            p.returncode = os.waitstatus_to_exitcode(status)
            return ru.ru_utime + ru.ru_stime
        if time.monotonic() > deadline:
            H.stop_process(p, signal.SIGKILL, 5)
            raise RuntimeError("%s did not end within %ss" % (p.args[0], timeout))
        time.sleep(0.02)


def listening(ip, port):
    """True once a TCP socket listens on ip:port (read from /proc/net/tcp: no probe connection,
    which a one-connection relay would take as its client)."""
    want = "%s:%04X" % ("".join("%02X" % int(x) for x in reversed(ip.split("."))), port)
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            parts = line.split()
            if parts[1] == want and parts[3] == "0A":
                return True
    return False


def wait_listening(ip, port, proc, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if listening(ip, port):
            return
        if proc.poll() is not None:
            break
        time.sleep(0.02)
    raise RuntimeError("%s did not listen on %s:%d" % (proc.args[0], ip, port))


def port_block(n, wait=90):
    """harness.free_port_block, retried: a port with connections in TIME_WAIT cannot be bound,
    and other users' load tests can leave tens of thousands of them for a minute."""
    deadline = time.monotonic() + wait
    while True:
        try:
            return H.free_port_block(n)
        except RuntimeError:
            if time.monotonic() > deadline:
                raise
            time.sleep(5)


def reserve_listen_ports(n):
    """Hands harness.free_port (which every server here uses for its listening port) n ports
    reserved in blocks of 8: a block of 32, its own size, can be hard to find while other users'
    tests leave ports in TIME_WAIT all over the range."""
    while len(H._listen_ports) < n:
        lo, hi = port_block(8)
        H._listen_ports.extend(range(lo, hi + 1))


class Gate:
    """One ftpsgate: a single explicit-FTPS listener in front of backend_address."""

    def __init__(self, bench, name, backend_address, identity="rsa", workers=None, ciphersuites=None,
                 n_passive=32, limits=None, log_level="info"):
        self.bench = bench
        self.name = name
        self.dir = os.path.join(bench.tmp, "gate-" + name)
        os.makedirs(self.dir, exist_ok=True)
        self.log = os.path.join(self.dir, "ftpsgate.log")
        self.cfg_path = os.path.join(self.dir, "ftpsgate.json")
        cert, key = bench.identity(identity)
        tls = {"cert": cert, "key": key}
        if ciphersuites:
            tls["ciphersuites"] = ciphersuites
        lo, hi = port_block(n_passive)
        self.listener = {
            "name": "bench", "bind": "127.0.0.1:0", "mode": "explicit", "tls": "main",
            "backend": {"address": backend_address},
            "passive": {"ports": "%d-%d" % (lo, hi)},
        }
        self.cfg = {"tls": {"main": tls}, "listeners": [self.listener], "log": {"level": log_level}}
        if limits:
            self.cfg["limits"] = limits
        if workers is not None:
            self.cfg["workers"] = workers
        self.workers = workers
        self.proc = None
        self.port = None

    def start(self):
        for _ in range(3):
            self.port = H.free_port()
            self.listener["bind"] = "127.0.0.1:%d" % self.port
            with open(self.cfg_path, "w") as f:
                json.dump(self.cfg, f, indent=2)
            with open(self.log, "ab") as f:
                since = f.tell()
            self.proc = spawn([self.bench.binary, "-c", self.cfg_path], self.log)
            if H.wait_ready(self.log, 15, self.proc, since):
                return self
            H.stop_process(self.proc, signal.SIGKILL, 5)
            if "in use" not in H.tail_file(self.log, 20).lower():
                break
        raise RuntimeError("ftpsgate %s did not start: %s" % (self.name, H.tail_file(self.log, 10)))

    @property
    def pid(self):
        return self.proc.pid

    def cpu(self):
        return proc_cpu(self.pid)

    def mem(self):
        return mem_kib(self.pid)

    def nfds(self):
        return len(os.listdir("/proc/%d/fd" % self.pid))

    def threads(self):
        return len(os.listdir("/proc/%d/task" % self.pid))

    def url(self, path):
        return "ftp://127.0.0.1:%d%s" % (self.port, path)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            H.stop_process(self.proc, signal.SIGTERM, 20)
            if self.proc.returncode not in (0, None):
                raise RuntimeError("ftpsgate %s exited %s on SIGTERM: %s" % (
                    self.name, self.proc.returncode, H.tail_file(self.log, 10)))


PYFTPD_SCRIPT = r'''
import logging, sys
from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import FTPHandler
from pyftpdlib.servers import FTPServer
logging.basicConfig(level=logging.WARNING)
auth = DummyAuthorizer()
auth.add_anonymous(sys.argv[2], perm="elr")
FTPHandler.authorizer = auth
FTPHandler.timeout = 1800
server = FTPServer(("127.0.0.1", int(sys.argv[1])), FTPHandler)
server.max_cons = 0
server.max_cons_per_ip = 0
server.serve_forever(timeout=1.0)
'''


class Pyftpd:
    """pyftpdlib, one process, anonymous read-only, warnings-only logging: the backend of the
    session-setup and memory parts. It costs about 0.1 ms of CPU per login where vsftpd costs
    about 4 ms (two forks per session), so ftpsgate rather than the backend is what the
    handshake-bound load saturates; it holds 9,000 idle sessions in one process."""

    def __init__(self, bench):
        self.dir = os.path.join(bench.tmp, "pyftpd")
        self.root = os.path.join(self.dir, "root")
        os.makedirs(os.path.join(self.root, "pub"), exist_ok=True)
        self.script = os.path.join(self.dir, "pyftpd.py")
        with open(self.script, "w") as f:
            f.write(PYFTPD_SCRIPT)
        self.out = os.path.join(self.dir, "pyftpd.out")
        self.proc = None

    def start(self):
        for _ in range(3):
            self.port = H.free_port()
            self.proc = spawn([PY, self.script, str(self.port), self.root], self.out, nofile=True)
            if H.wait_port("127.0.0.1", self.port, 15, self.proc):
                return self
            H.stop_process(self.proc, signal.SIGKILL, 5)
        raise RuntimeError("pyftpdlib did not start: %s" % H.tail_file(self.out, 10))

    @property
    def address(self):
        return "127.0.0.1:%d" % self.port

    @property
    def pid(self):
        return self.proc.pid

    def cpu(self):
        return proc_cpu(self.pid)

    def stop(self):
        if self.proc is not None:
            H.stop_process(self.proc, signal.SIGTERM, 10)


class RelayVsftpd(H.Vsftpd):
    """The same vsftpd, but its passive replies send the client to ANNOUNCE:port, one port,
    where a relay (socat) listens and forwards to vsftpd's own 127.0.0.1:port."""

    def __init__(self, env, name, announce):
        super().__init__(env, name)
        self.announce = announce
        self.pasv_port = H.free_port()

    def _write_conf(self):
        super()._write_conf()
        with open(self.conf, "a") as f:
            f.write("pasv_min_port=%d\npasv_max_port=%d\npasv_address=%s\n"
                    % (self.pasv_port, self.pasv_port, self.announce))


class ModProxy:
    """ProFTPD 1.3.8 + mod_proxy 0.9.2 (mod_tls explicit front), started and stopped by the
    peers harness's own start.sh/stop.sh (state in our temp dir, ports chosen here, our
    certificates), forwarding to backend_port on 127.0.0.1."""

    def __init__(self, bench, name, kind, backend_port):
        if not os.access(os.path.join(PEERS, "start.sh"), os.X_OK):
            raise RuntimeError("no peers harness at %s (set FTPSGATE_PEERS)" % PEERS)
        for p in (PROFTPD_BIN, os.path.join(PROFTPD_MODDIR, "mod_proxy.so"),
                  os.path.join(PROFTPD_MODDIR, "mod_tls.so")):
            if not os.path.exists(p):
                raise RuntimeError("%s missing: run tests/bench/setup-bench.sh" % p)
        self.kind = kind
        self.state = os.path.join(bench.tmp, "peers-" + name)
        certs = os.path.join(self.state, "certs")
        os.makedirs(certs, exist_ok=True)
        for k in ("rsa", "ecdsa"):
            cert, key = bench.identity(k)
            shutil.copy(cert, os.path.join(certs, k + ".pem"))
            shutil.copy(key, os.path.join(certs, k + ".key"))
        shutil.copy(bench.env.certs.ca, os.path.join(certs, "trust.pem"))
        self.port = H.free_port()
        lo, hi = port_block(10)
        self.env = dict(os.environ, PEERS_STATE=self.state, PEERS_VENDOR=os.path.join(self.state, "vendor"),
                        VSFTPD_BIN=H.VSFTPD_BIN, PROFTPD_BIN=PROFTPD_BIN, PROFTPD_MODDIR=PROFTPD_MODDIR,
                        FTP_SYSUSER=H.TEST_USER, CERT_KIND=kind, PORT_PLAIN=str(backend_port),
                        PORT_PP_EXPLICIT=str(self.port), PASV_PP_EXPLICIT="%d %d" % (lo, hi),
                        ONLY="pp-explicit", PYTHON=PY)
        sys.path.insert(0, PEERS)
        import procutil  # the peers' own accounting: session processes reaped under its reaper
        self.procutil = procutil
        self.pid = None

    def start(self):
        r = H.run_cmd(["bash", os.path.join(PEERS, "start.sh")], timeout=60, env=self.env)
        pidf = os.path.join(self.state, "pids", "pp-explicit.pid")
        if r.returncode != 0 or not os.path.exists(pidf):
            raise RuntimeError("peers start.sh failed: %s" % (r.stderr[-800:],))
        with open(pidf) as f:
            self.pid = int(f.read())
        return self

    def cpu(self):
        return self.procutil.cpu([self.pid])

    def stop(self):
        if self.pid is not None:
            # Without ONLY: stop.sh keeps the data dir it made on tmpfs when told to stop only some
            # servers; this state dir holds pp-explicit alone.
            env = dict(self.env)
            env.pop("ONLY")
            r = H.run_cmd(["bash", os.path.join(PEERS, "stop.sh")], timeout=60, env=env)
            self.pid = None
            if r.returncode != 0:
                raise RuntimeError("peers stop.sh failed: %s" % r.stderr[-500:])


# --------------------------------------------------------------------------
# Clients


CIPHER_EVP = {"TLS_AES_256_GCM_SHA384": "aes-256-gcm", "TLS_AES_128_GCM_SHA256": "aes-128-gcm",
              "TLS_CHACHA20_POLY1305_SHA256": "chacha20-poly1305"}


def curl(url, ca=None, out=None, upload=None, extra=(), timeout=600):
    """One curl transfer. Returns dict(bytes, seconds, mib_s, cipher, tls) — the TLS version and
    cipher of the last TLS connection curl reported (the data connection)."""
    argv = ["curl", "-sS", "-v", "--user", "anonymous:bench@example.invalid", "--max-time", str(timeout),
            "-w", "\n%{size_download} %{size_upload} %{time_total}\n"]
    if ca:
        argv += ["--ssl-reqd", "--cacert", ca]
    argv += list(extra)
    if upload:
        argv += ["-T", upload, url]
    else:
        argv += ["-o", out or "/dev/null", url]
    r = subprocess.run(argv, capture_output=True, text=True, errors="replace", timeout=timeout + 30)
    if r.returncode != 0:
        raise RuntimeError("curl %s failed (%d): %s" % (url, r.returncode, r.stderr.strip().splitlines()[-1:]))
    down, up, secs = r.stdout.strip().splitlines()[-1].split()
    n = int(float(up if upload else down))
    m = re.findall(r"SSL connection using (\S+) / (\S+)", r.stderr)
    return {"bytes": n, "seconds": float(secs), "mib_s": n / H.MiB / float(secs),
            "tls": m[-1][0] if m else None, "cipher": m[-1][1] if m else None}


def openssl_speed(cipher, decrypt=False, seconds=3):
    """Bytes per CPU second of one EVP cipher on 16 KiB blocks (a full TLS record), one thread.
    openssl speed counts user CPU time (not wall time) unless given -elapsed."""
    argv = ["openssl", "speed"] + (["-decrypt"] if decrypt else []) + [
        "-evp", cipher, "-bytes", "16384", "-seconds", str(seconds), "-mr"]
    r = H.run_cmd(argv, timeout=seconds * 4 + 30)
    for line in r.stdout.splitlines():
        if line.startswith("+F:"):
            return float(line.split(":")[-1])
    raise RuntimeError("openssl speed %s: no result: %s" % (cipher, r.stderr[-300:]))


def build_ftpsload(out_dir):
    src = os.path.join(HERE, "ftpsload.c")
    exe = os.path.join(out_dir, "ftpsload")
    r = H.run_cmd(["cc", "-O2", "-Wall", "-Wextra", "-Werror", "-o", exe, src, "-lssl", "-lcrypto"], timeout=120)
    if r.returncode != 0:
        raise RuntimeError("cannot build ftpsload: %s" % r.stderr[-1500:])
    return exe


def last_json(text):
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError("no JSON result in: %r" % text[-500:])
