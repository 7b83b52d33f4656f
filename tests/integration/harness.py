"""Shared helpers for ftpsgate's integration tests (Python 3 standard library only).

Every test file is a standalone script run by /usr/bin/python3 with cwd
tests/integration (ctest does that, see CMakeLists.txt). It builds an Env,
which makes a private temp dir, a throwaway CA and server certificate, starts
one or more vsftpd backends (plain FTP, loopback, anonymous login with upload)
and ftpsgate in front of them, all as child processes whose PIDs it records
and kills (only those, plus their own descendants) at the end, also on an
exception or a signal. Cases run one after the other through Suite.run(); each
prints PASS/FAIL/SKIP with a reason, and the file ends with "N passed, N failed".

Modes (env FTPSGATE_SELFCHECK):
  unset  the proxy under test: $FTPSGATE_BIN (required), clients -> ftpsgate -> vsftpd.
  plain  harness self-check: clients talk plain FTP straight to vsftpd.
  tls    harness self-check: clients talk explicit FTPS straight to vsftpd's own
         TLS (same CA, same client settings as against the proxy).
Cases that test what only the proxy does raise Skip in the self-check modes.

Other env knobs: FTPSGATE_KEEP_TMP=1 keeps the temp dir; FTPSGATE_VSFTPD is the
vsftpd binary (default: where tests/setup-deps.sh unpacks it);
FTPSGATE_TEST_USER the account vsftpd maps anonymous sessions to;
FTPSGATE_TEST_BIG_MIB the size of the big file (300; smaller only for a quick
local run, never in CI).

Implicit FTPS: env.front(..., mode="implicit") gives a Target with .implicit set; Ctl
then does the TLS handshake before reading the greeting, ftplib_connect returns an
ImplicitFTPS, curl gets an ftps:// URL and lftp opens ftps://. Proxy.extra_tls,
Proxy.main_tls and Proxy.extra_limits add identities and limits to the config;
Certs.issue() makes ECDSA/RSA server and client certificates from the test CA;
Pyftpd is a second backend implementation (pyftpdlib, optional flavours for FEAT).

Run one file by hand:
  cd tests/integration && FTPSGATE_BIN=../../build/ftpsgate /usr/bin/python3 test_policy.py
"""

import atexit
import ctypes
import ftplib
import hashlib
import json
import os
import random
import re
import select
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import time
import traceback

MiB = 1024 * 1024
KiB = 1024

VSFTPD_BIN = os.environ.get("FTPSGATE_VSFTPD", "/var/cache/ftpsgate-test/vsftpd/usr/sbin/vsftpd")
TEST_USER = os.environ.get("FTPSGATE_TEST_USER", "ftpsgate-test")
SELFCHECK = os.environ.get("FTPSGATE_SELFCHECK", "").strip().lower()
HOST = "127.0.0.1"
FTP_USER = "anonymous"
# A distinctive password: the proxy's log must never contain it (STYLE.md:
# passwords are redacted before anything is logged).
PASSWORD = "Pw-%s-never-logged" % os.urandom(6).hex()

if SELFCHECK not in ("", "plain", "tls"):
    sys.stderr.write("FTPSGATE_SELFCHECK must be unset, 'plain' or 'tls'\n")
    sys.exit(2)


# --------------------------------------------------------------------------
# Results


class Fail(Exception):
    """A check failed; the message is the reason printed beside FAIL."""


SKIP_EXIT = 77  # CMakeLists.txt: SKIP_RETURN_CODE of every integration test


class Skip(Exception):
    """The case does not apply in this mode."""


def check(cond, msg):
    if not cond:
        raise Fail(msg)


def check_eq(got, want, what):
    if got != want:
        raise Fail("%s: got %r, want %r" % (what, got, want))


def check_code(reply, want, what):
    """reply is (code, text); want an int or a tuple of ints."""
    code, text = reply
    wants = want if isinstance(want, tuple) else (want,)
    if code not in wants:
        raise Fail("%s: got reply %r, want code %s" % (what, text.strip()[:200], "/".join(map(str, wants))))


def needs_proxy():
    if SELFCHECK:
        raise Skip("tests ftpsgate itself (self-check mode %s)" % SELFCHECK)


class Suite:
    def __init__(self, name):
        self.name = name
        self.passed = 0
        self.failed = 0
        self.skipped = 0
        self.t0 = time.monotonic()
        self.on_fail = []  # callables giving extra diagnostics (log tails)
        mode = "self-check " + SELFCHECK if SELFCHECK else "proxy %s" % os.environ.get("FTPSGATE_BIN", "?")
        print("== %s (%s)" % (name, mode), flush=True)

    def run(self, name, fn, *args, **kw):
        t = time.monotonic()
        try:
            fn(*args, **kw)
        except Skip as e:
            self.skipped += 1
            print("SKIP %s: %s" % (name, e), flush=True)
            return None
        except Fail as e:
            self.failed += 1
            print("FAIL %s: %s (%.1fs)" % (name, e, time.monotonic() - t), flush=True)
            self._diag()
            return False
        except Exception as e:  # noqa: BLE001 - a crash of the case is a failure with its trace
            self.failed += 1
            print("FAIL %s: %s: %s (%.1fs)" % (name, type(e).__name__, e, time.monotonic() - t), flush=True)
            tb = traceback.format_exc().rstrip().splitlines()
            for line in tb[-8:]:
                print("     | " + line, flush=True)
            self._diag()
            return False
        self.passed += 1
        print("PASS %s (%.1fs)" % (name, time.monotonic() - t), flush=True)
        return True

    def fail_setup(self, what, e):
        self.failed += 1
        print("FAIL setup: %s: %s: %s" % (what, type(e).__name__, e), flush=True)
        for line in traceback.format_exc().rstrip().splitlines()[-6:]:
            print("     | " + line, flush=True)
        self._diag()

    def _diag(self):
        for fn in self.on_fail:
            try:
                fn()
            except Exception:  # noqa: BLE001 - diagnostics must not mask the failure
                pass

    def finish(self):
        """The exit status: 1 when a case failed; SKIP_EXIT (ctest's SKIP_RETURN_CODE) when
        none failed but one was skipped, so a skip shows as skipped, never as a pass."""
        dt = time.monotonic() - self.t0
        print("-- %s: %.1fs" % (self.name, dt), flush=True)
        tail = "%d passed, %d failed" % (self.passed, self.failed)
        if self.skipped:
            tail += ", %d skipped" % self.skipped
        print(tail, flush=True)
        if self.failed:
            return 1
        return SKIP_EXIT if self.skipped else 0


# --------------------------------------------------------------------------
# Files and hashes


def make_file(path, size, chunk=MiB):
    """Writes size random bytes to path (mode 0644); returns the sha256 hex."""
    h = hashlib.sha256()
    left = size
    with open(path, "wb") as f:
        while left > 0:
            b = os.urandom(min(chunk, left))
            h.update(b)
            f.write(b)
            left -= len(b)
    os.chmod(path, 0o644)
    return h.hexdigest()


def sha256_file(path, offset=0, length=None):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        f.seek(offset)
        left = length
        while True:
            n = MiB if left is None else min(MiB, left)
            if n == 0:
                break
            b = f.read(n)
            if not b:
                break
            h.update(b)
            if left is not None:
                left -= len(b)
    return h.hexdigest()


def sha256_bytes(b):
    return hashlib.sha256(b).hexdigest()


def human(n):
    if n >= MiB:
        return "%dMiB" % (n // MiB) if n % MiB == 0 else "%dB" % n
    return "%dB" % n


# --------------------------------------------------------------------------
# Processes: every child is recorded; only those (and their descendants) are killed.

_children = []  # Popen objects we started
# prctl is looked up here, in the parent: the child between fork and exec must not
# dlopen or dlsym (they take the loader's lock, which another thread of a threaded
# test may hold at fork time: the child would hang and Popen with it).
try:
    _prctl = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):
    _prctl = None


def _pdeathsig():
    # If this test process dies (ctest timeout sends SIGKILL), the child gets
    # SIGKILL too, so no server outlives the test.
    try:
        if _prctl is not None:
            _prctl(1, 9, 0, 0, 0)  # PR_SET_PDEATHSIG, SIGKILL
    except Exception:  # noqa: BLE001
        pass


def _ppid_map():
    m = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                s = f.read()
            # comm may contain spaces and parens: the ppid is after the last ')'.
            rest = s[s.rindex(")") + 2:].split()
            m[int(d)] = int(rest[1])
        except (OSError, ValueError, IndexError):
            continue
    return m


def descendants(pid):
    m = _ppid_map()
    kids = {}
    for p, pp in m.items():
        kids.setdefault(pp, []).append(p)
    out, todo = [], [pid]
    for _ in range(10000):
        if not todo:
            break
        p = todo.pop()
        for c in kids.get(p, []):
            out.append(c)
            todo.append(c)
    return out


def spawn(argv, log_path, env=None):
    logf = open(log_path, "ab")
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf, env=env,
                         preexec_fn=_pdeathsig, close_fds=True)
    logf.close()
    _children.append(p)
    return p


def stop_process(p, sig=signal.SIGTERM, wait=10.0):
    """Stops one child we started (and its descendants, by PID). Returns its exit status."""
    if p.poll() is not None:
        return p.returncode
    tree = descendants(p.pid)
    try:
        p.send_signal(sig)
    except ProcessLookupError:
        pass
    try:
        p.wait(timeout=wait)
    except subprocess.TimeoutExpired:
        p.kill()
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
    for c in tree:
        try:
            os.kill(c, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    return p.returncode


def _kill_all():
    for p in list(_children):
        if p.poll() is None:
            stop_process(p, signal.SIGKILL, wait=5)


atexit.register(_kill_all)


def _on_signal(signum, frame):
    raise SystemExit(128 + signum)


for _s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    try:
        signal.signal(_s, _on_signal)
    except (ValueError, OSError):
        pass


def run_cmd(argv, timeout, env=None, cwd=None):
    """subprocess.run with a timeout; returns CompletedProcess (text)."""
    try:
        return subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              timeout=timeout, env=env, cwd=cwd, text=True, errors="replace")
    except subprocess.TimeoutExpired as e:
        raise Fail("%s timed out after %ss" % (os.path.basename(argv[0]), timeout)) from e


def pid_alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            st = f.read()
        return st[st.rindex(")") + 2] not in "ZX"
    except (OSError, ValueError, IndexError):
        return False


def fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


# --------------------------------------------------------------------------
# Ports


_port_rng = random.Random(os.getpid() ^ int(time.time() * 1e6))
_blocks_taken = []  # blocks handed out by this process: never hand out an overlapping one
# Test files run in parallel (ctest -j) and the proxy binds its passive ports only
# when a client sends PASV, so a block must stay reserved for the whole run: a
# registry file, under an flock, records (pid, first, last); dead pids' entries expire.
PORT_REGISTRY = os.path.join(tempfile.gettempdir(), "ftpsgate-it-ports.json")


def _port_registry(update):
    import fcntl
    fd = os.open(PORT_REGISTRY + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            with open(PORT_REGISTRY) as f:
                entries = json.load(f)
        except (OSError, ValueError):
            entries = []
        entries = [e for e in entries if isinstance(e, list) and len(e) == 3 and pid_alive(e[0])]
        result = update(entries)
        tmp = PORT_REGISTRY + ".%d" % os.getpid()
        with open(tmp, "w") as f:
            json.dump(entries, f)
        os.replace(tmp, PORT_REGISTRY)
        return result
    finally:
        os.close(fd)


def free_port_block(n, lo=20000, hi=32000):
    """A block of n consecutive ports, free now and reserved against the other test
    processes (below the kernel's ephemeral range, so no outgoing connection takes one)."""

    def pick(entries):
        taken = _blocks_taken + [(e[1], e[2]) for e in entries]
        for _ in range(200):
            base = _port_rng.randrange(lo, hi - n)
            if any(base <= b_hi and b_lo <= base + n - 1 for b_lo, b_hi in taken):
                continue
            socks = []
            ok = True
            try:
                for p in range(base, base + n):
                    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                    socks.append(s)
                    try:
                        s.bind(("0.0.0.0", p))
                    except OSError:
                        ok = False
                        break
            finally:
                for s in socks:
                    s.close()
            if ok:
                entries.append([os.getpid(), base, base + n - 1])
                _blocks_taken.append((base, base + n - 1))
                return base, base + n - 1
        raise RuntimeError("no block of %d free ports found" % n)

    return _port_registry(pick)


def _bindable(host, port):
    s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind((host, port))
        return True
    except OSError:
        return False
    finally:
        s.close()


_listen_ports = []  # the rest of this process's reserved block, handed out one by one


def free_port(host=HOST):
    """A port for a server to listen on. Not bind(port 0): the kernel may hand the
    same ephemeral port to two calls in a row, or to another test's outgoing
    connection, before the server binds it. Ports come from a block reserved in the
    registry (below the ephemeral range), each handed out once per process."""
    for _ in range(4 * 32):
        if not _listen_ports:
            lo, hi = free_port_block(32)
            _listen_ports.extend(range(lo, hi + 1))
        port = _listen_ports.pop(0)
        if _bindable(host, port):
            return port
    raise RuntimeError("no free listening port on %s" % host)


def wait_port(host, port, timeout, proc=None):
    """Waits until host:port accepts a TCP connection; False on timeout or when proc exited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            with socket.create_connection((host, port), timeout=1):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def wait_ready(log_path, timeout, proc, since=0):
    """Waits until ftpsgate wrote its "ready" line (every listener bound) to log_path after
    offset since: an event, not a probe connection (a probe would be a session the proxy
    counts, and closes only asynchronously). False on timeout or when proc exited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(log_path, "rb") as f:
                f.seek(since)
                if re.search(rb" ftpsgate \S+ ready", f.read()):
                    return True
        except OSError:
            pass
        if proc is not None and proc.poll() is not None:
            return False
        time.sleep(0.02)
    return False


def wait_until(pred, timeout, step=0.05):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            return v
        time.sleep(step)


# --------------------------------------------------------------------------
# Certificates


class Certs:
    """A throwaway CA and a server certificate for 127.0.0.1/localhost/::1 signed by it."""

    def __init__(self, d):
        os.makedirs(d, exist_ok=True)
        self.dir = d
        self.ca = os.path.join(d, "ca.pem")
        self.ca_key = ca_key = os.path.join(d, "ca.key")
        self.cert = os.path.join(d, "server.pem")
        self.key = os.path.join(d, "server.key")
        csr = os.path.join(d, "server.csr")
        ext = os.path.join(d, "server.ext")
        with open(ext, "w") as f:
            f.write("basicConstraints=critical,CA:FALSE\n"
                    "keyUsage=critical,digitalSignature,keyEncipherment\n"
                    "extendedKeyUsage=serverAuth\n"
                    "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1\n")
        steps = [
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256", "-days", "2",
             "-subj", "/CN=ftpsgate test CA %s" % os.urandom(4).hex(),
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign",
             "-keyout", ca_key, "-out", self.ca],
            ["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-sha256",
             "-subj", "/CN=localhost", "-keyout", self.key, "-out", csr],
            ["openssl", "x509", "-req", "-in", csr, "-CA", self.ca, "-CAkey", ca_key, "-CAcreateserial",
             "-sha256", "-days", "2", "-extfile", ext, "-out", self.cert],
        ]
        for argv in steps:
            r = run_cmd(argv, timeout=60)
            if r.returncode != 0:
                raise RuntimeError("openssl failed: %s\n%s" % (" ".join(argv[:3]), r.stderr[-2000:]))
        os.chmod(self.key, 0o600)

    def issue(self, name, cn, sans=None, key_type="rsa", client=False, ca=None, ca_key=None):
        """Issues one more certificate signed by the test CA (or by ca/ca_key): RSA 2048 or
        ECDSA P-256 (key_type "ec"), for a server (serverAuth, sans like "DNS:x,IP:127.0.0.1")
        or a client (clientAuth). Returns (cert path, key path)."""
        cert = os.path.join(self.dir, name + ".pem")
        key = os.path.join(self.dir, name + ".key")
        csr = os.path.join(self.dir, name + ".csr")
        ext = os.path.join(self.dir, name + ".ext")
        usage = "digitalSignature" if key_type == "ec" else "digitalSignature,keyEncipherment"
        with open(ext, "w") as f:
            f.write("basicConstraints=critical,CA:FALSE\n"
                    "keyUsage=critical,%s\n"
                    "extendedKeyUsage=%s\n" % (usage, "clientAuth" if client else "serverAuth"))
            if sans:
                f.write("subjectAltName=%s\n" % sans)
        if key_type == "ec":
            newkey = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]
        else:
            newkey = ["-newkey", "rsa:2048"]
        steps = [
            ["openssl", "req"] + newkey + ["-nodes", "-sha256", "-subj", "/CN=%s" % cn,
                                           "-keyout", key, "-out", csr],
            ["openssl", "x509", "-req", "-in", csr, "-CA", ca or self.ca, "-CAkey", ca_key or self.ca_key,
             "-CAcreateserial", "-sha256", "-days", "2", "-extfile", ext, "-out", cert],
        ]
        for argv in steps:
            r = run_cmd(argv, timeout=60)
            if r.returncode != 0:
                raise RuntimeError("openssl failed: %s\n%s" % (" ".join(argv[:3]), r.stderr[-2000:]))
        os.chmod(key, 0o600)
        return cert, key

    def self_signed(self, name, cn, client=True):
        """A certificate of its own CA (not the test CA): for 'untrusted' cases. Returns (cert, key)."""
        ca = os.path.join(self.dir, name + "-ca.pem")
        ca_key = os.path.join(self.dir, name + "-ca.key")
        r = run_cmd(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256", "-days", "2",
                     "-subj", "/CN=%s other CA" % name, "-addext", "basicConstraints=critical,CA:TRUE",
                     "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-keyout", ca_key, "-out", ca],
                    timeout=60)
        if r.returncode != 0:
            raise RuntimeError("openssl failed: %s" % r.stderr[-2000:])
        return self.issue(name, cn, client=client, ca=ca, ca_key=ca_key)

    def client_context(self):
        ctx = ssl.create_default_context(cafile=self.ca)
        ctx.check_hostname = True
        ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx


def insecure_context():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


# --------------------------------------------------------------------------
# vsftpd backend

_CMD_RE = re.compile(r'\[pid (\d+)\].*?FTP command: Client "[^"]*", "(.*)"\s*$')
_RESP_RE = re.compile(r'\[pid (\d+)\].*?FTP response: Client "[^"]*", "(.*)"\s*$')
_XFER_RE = re.compile(r'\[pid (\d+)\].*?(OK|FAIL) (UPLOAD|DOWNLOAD): Client "[^"]*", "([^"]*)", (\d+) bytes')


class LogFile:
    """Reads a server's log file by offset: mark it now, read what came since later."""

    log = None  # path, set by the subclass

    def log_mark(self):
        try:
            return os.path.getsize(self.log)
        except OSError:
            return 0

    def log_since(self, mark=0):
        try:
            with open(self.log, "rb") as f:
                f.seek(mark)
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def log_text(self):
        return self.log_since(0)


class FtpServer(LogFile):
    """What every test FTP server shares: a root with /pub and /up, a loopback port,
    a foreground process started with retries (a free port can be taken between
    choosing it and binding it), stopped by PID."""

    kind = "ftp server"
    host = HOST
    port = None
    proc = None

    def _start_with_retries(self, argv_for_port, wait=10):
        """argv_for_port() is called after self.port is chosen (write configs there)."""
        for _ in range(3):
            self.port = free_port(self.host)
            self.proc = spawn(argv_for_port(), self.out)
            if wait_port(self.host, self.port, wait, self.proc):
                return self
            stop_process(self.proc, signal.SIGKILL, 5)
        raise RuntimeError("%s %s did not start; output: %s" % (self.kind, self.name, tail_file(self.out, 10)))

    def stop(self):
        if self.proc is not None:
            stop_process(self.proc, signal.SIGTERM, 5)

    @property
    def address(self):
        return ("[%s]:%d" if ":" in self.host else "%s:%d") % (self.host, self.port)

    def add_pub(self, name, size):
        """Creates /pub/name with size random bytes; returns its sha256."""
        return make_file(os.path.join(self.pub, name), size)

    def pub_path(self, name):
        return os.path.join(self.pub, name)

    def up_path(self, name):
        return os.path.join(self.up, name)


class Vsftpd(FtpServer):
    """One vsftpd on 127.0.0.1 with a fresh FTP root:
       /pub  read-only test files (root-owned, world-readable)
       /up   uploads (owned by the anonymous account)
    Its log (vsftpd_log_file, with log_ftp_protocol and the transfer log) tells
    the tests what the backend really saw."""

    kind = "vsftpd"

    def __init__(self, env, name, tls=False, extra_conf=None):
        """extra_conf: {key: value} added to (or replacing keys of) the configuration."""
        import pwd
        try:
            pwd.getpwnam(TEST_USER)
        except KeyError:
            raise RuntimeError("no account %r for vsftpd's anonymous sessions (run tests/setup-deps.sh)"
                               % TEST_USER) from None
        self.env = env
        self.name = name
        self.tls = tls
        d = os.path.join(env.tmp, name)
        self.root = os.path.join(d, "root")
        self.pub = os.path.join(self.root, "pub")
        self.up = os.path.join(self.root, "up")
        self.empty = os.path.join(d, "empty")
        for p in (d, self.root, self.pub, self.up, self.empty):
            os.makedirs(p, exist_ok=True)
            os.chmod(p, 0o755)
        shutil.chown(self.up, user=TEST_USER)
        self.log = os.path.join(d, "vsftpd.log")
        self.out = os.path.join(d, "vsftpd.out")
        self.conf = os.path.join(d, "vsftpd.conf")
        self.extra_conf = dict(extra_conf or {})
        self.port = None
        self.proc = None

    def _write_conf(self):
        lines = [
            "listen=YES", "listen_ipv6=NO", "listen_address=%s" % self.host, "listen_port=%d" % self.port,
            "background=NO", "anonymous_enable=YES", "local_enable=NO", "no_anon_password=NO",
            "ftp_username=%s" % TEST_USER, "anon_root=%s" % self.root,
            "write_enable=YES", "anon_upload_enable=YES", "anon_mkdir_write_enable=YES",
            "anon_other_write_enable=YES", "anon_umask=022", "secure_chroot_dir=%s" % self.empty,
            "pasv_enable=YES", "port_enable=YES", "connect_from_port_20=NO",
            "max_clients=0", "max_per_ip=0", "max_login_fails=100", "delay_failed_login=0",
            "idle_session_timeout=600", "data_connection_timeout=300",
            "xferlog_enable=YES", "xferlog_std_format=NO", "log_ftp_protocol=YES", "dual_log_enable=NO",
            "syslog_enable=NO", "vsftpd_log_file=%s" % self.log,
            "tcp_wrappers=NO", "dirmessage_enable=NO", "use_localtime=NO", "hide_ids=YES",
        ]
        if self.tls:
            lines += [
                "ssl_enable=YES", "allow_anon_ssl=YES", "force_anon_logins_ssl=YES",
                "force_anon_data_ssl=YES", "ssl_tlsv1=YES", "ssl_sslv2=NO", "ssl_sslv3=NO",
                "ssl_request_cert=NO", "require_ssl_reuse=NO", "ssl_ciphers=HIGH:!aNULL:!MD5",
                "rsa_cert_file=%s" % self.env.certs.cert, "rsa_private_key_file=%s" % self.env.certs.key,
            ]
        lines = [ln for ln in lines if ln.split("=", 1)[0] not in self.extra_conf]
        lines += ["%s=%s" % kv for kv in self.extra_conf.items()]
        with open(self.conf, "w") as f:
            f.write("\n".join(lines) + "\n")

    def start(self):
        if not os.access(VSFTPD_BIN, os.X_OK):
            raise RuntimeError("vsftpd not found at %s (run tests/setup-deps.sh)" % VSFTPD_BIN)
        def argv():
            self._write_conf()
            return [VSFTPD_BIN, self.conf]
        return self._start_with_retries(argv)

    def restart(self, wait=15):
        """Stops this vsftpd (and its session processes) and starts it again on the same
        port, with the same configuration and log: a backend restart. Call it from a thread
        that lives as long as the backend should: the child's PR_SET_PDEATHSIG fires when
        the thread that forked it ends, not the process."""
        self.stop()
        self.proc = spawn([VSFTPD_BIN, self.conf], self.out)
        if not wait_port(self.host, self.port, wait, self.proc):
            raise RuntimeError("vsftpd %s did not come back on port %d: %s" % (self.name, self.port,
                                                                              tail_file(self.out, 10)))
        return self

    # -- log
    def commands_since(self, mark=0):
        """[(pid, command line)] of every FTP command the backend received since mark."""
        out = []
        for line in self.log_since(mark).splitlines():
            m = _CMD_RE.search(line)
            if m:
                out.append((int(m.group(1)), m.group(2)))
        return out

    def responses_since(self, mark=0):
        out = []
        for line in self.log_since(mark).splitlines():
            m = _RESP_RE.search(line)
            if m:
                out.append((int(m.group(1)), m.group(2)))
        return out

    def transfers_since(self, mark=0):
        """[(ok: bool, 'UPLOAD'|'DOWNLOAD', path, bytes)] from the backend's transfer log."""
        out = []
        for line in self.log_since(mark).splitlines():
            m = _XFER_RE.search(line)
            if m:
                out.append((m.group(2) == "OK", m.group(3), m.group(4), int(m.group(5))))
        return out

    def wait_command(self, pred, mark, timeout=10):
        """Waits (bounded) until a command line matching pred shows in the log; returns it or None."""
        def find():
            for pid, c in self.commands_since(mark):
                if pred(c):
                    return (pid, c)
            return None
        return wait_until(find, timeout)

    def wait_transfer(self, path, mark, timeout=20):
        def find():
            for t in self.transfers_since(mark):
                if t[2] == path:
                    return t
            return None
        return wait_until(find, timeout)


# --------------------------------------------------------------------------
# pyftpdlib backend (a second, different FTP server implementation)

PYFTPD_SCRIPT = r'''
import logging, sys
from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import FTPHandler
from pyftpdlib.servers import FTPServer

port, root, flavour, log = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
logging.basicConfig(filename=log, level=logging.DEBUG, format="%(asctime)s %(message)s")


class Handler(FTPHandler):
    def __init__(self, *a, **kw):
        FTPHandler.__init__(self, *a, **kw)
        if flavour == "claims-tls":
            # As a backend that speaks FTPS itself lists them (pyftpdlib's TLS_FTPHandler adds
            # AUTH TLS/AUTH SSL/PBSZ/PROT the same way): a proxy in front must not pass them on.
            self._extra_feats = ["AUTH TLS", "AUTH SSL", "PBSZ", "PROT", "CCC"]


if flavour == "nofeat":
    Handler.proto_cmds = dict((k, v) for k, v in FTPHandler.proto_cmds.items() if k != "FEAT")
auth = DummyAuthorizer()
auth.add_anonymous(root, perm="elradfmwMT")
Handler.authorizer = auth
Handler.banner = "pyftpdlib ready."
Handler.permit_foreign_addresses = False
Handler.passive_ports = None
server = FTPServer(("127.0.0.1", port), Handler)
server.max_cons = 0
server.serve_forever(timeout=0.5)
'''


class Pyftpd(FtpServer):
    """pyftpdlib (Debian python3-pyftpdlib) on 127.0.0.1, anonymous with write access to its
    whole root (/pub, /up). flavour: "plain" (its stock FEAT), "claims-tls" (its FEAT also
    lists AUTH TLS/AUTH SSL/PBSZ/PROT/CCC), "nofeat" (FEAT is an unknown command: 500)."""

    kind = "pyftpdlib"
    PYTHON = "/usr/bin/python3"

    def __init__(self, env, name, flavour="plain"):
        self.env = env
        self.name = name
        self.flavour = flavour
        d = os.path.join(env.tmp, name)
        self.root = os.path.join(d, "root")
        self.pub = os.path.join(self.root, "pub")
        self.up = os.path.join(self.root, "up")
        for p in (d, self.root, self.pub, self.up):
            os.makedirs(p, exist_ok=True)
        self.script = os.path.join(d, "pyftpd.py")
        with open(self.script, "w") as f:
            f.write(PYFTPD_SCRIPT)
        self.log = os.path.join(d, "pyftpd.log")
        self.out = os.path.join(d, "pyftpd.out")
        self.port = None
        self.proc = None

    @staticmethod
    def available():
        r = run_cmd([Pyftpd.PYTHON, "-c", "import pyftpdlib"], timeout=30)
        return r.returncode == 0

    def start(self):
        return self._start_with_retries(
            lambda: [self.PYTHON, self.script, str(self.port), self.root, self.flavour, self.log], wait=15)


def tail_file(path, n=30):
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - 16384))
            lines = f.read().decode("utf-8", "replace").splitlines()
        return "\n".join(lines[-n:])
    except OSError as e:
        return "(%s)" % e


# --------------------------------------------------------------------------
# ftpsgate


def _is_sanitized(binary):
    try:
        with open(binary, "rb") as f:
            data = f.read()
        return b"__asan_init" in data or b"__ubsan_handle" in data
    except OSError:
        return False


SANITIZER_PATTERNS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                      "SUMMARY: UndefinedBehaviorSanitizer", "SUMMARY: AddressSanitizer",
                      "ERROR: UndefinedBehaviorSanitizer")


def verb(line):
    """The command word of an FTP command line, upper-cased."""
    return line.split(" ", 1)[0].upper()


def verbs(lines):
    return [verb(c) for c in lines]


LOCAL_QUIT = "no server session was opened"


def sync_quit(ctl, vs, mark):
    """QUIT, then waits until the backend vsftpd logged it, so every command forwarded before
    it is in its log. A session that never needed the backend (the proxy dials it for the
    first command it must forward) gets the proxy's own 221, and then the backend must not
    have seen this session at all. Returns the backend's command lines since mark."""
    reply = ctl.cmd("QUIT")
    check_code(reply, 221, "QUIT")
    ctl.close()
    if LOCAL_QUIT in reply[1]:
        return [c for _, c in vs.commands_since(mark)]
    check(vs.wait_command(lambda c: c.upper() == "QUIT", mark, timeout=10),
          "the backend never logged the QUIT of this session")
    return [c for _, c in vs.commands_since(mark)]


def check_clean_stop(proc, log_path, timeout=25):
    """SIGTERM to a proxy we started: exit 0 within timeout, no sanitizer report and no
    password in its log."""
    check(proc.poll() is None, "ftpsgate is not running any more (exit %s)" % proc.poll())
    proc.send_signal(signal.SIGTERM)
    try:
        rc, by_term = proc.wait(timeout=timeout), True
    except subprocess.TimeoutExpired:
        stop_process(proc, signal.SIGKILL, 5)
        rc, by_term = proc.returncode, False
    with open(log_path, errors="replace") as f:
        text = f.read()
    reports = [ln for ln in text.splitlines() if any(p in ln for p in SANITIZER_PATTERNS)]
    check(not reports, "sanitizer report in the proxy log: %s" % "; ".join(reports[:3]))
    check(PASSWORD not in text, "the proxy log contains the PASS argument")
    check(by_term, "ftpsgate did not exit within %d s of SIGTERM" % timeout)
    check_eq(rc, 0, "ftpsgate exit status after SIGTERM")


def _hostport(host, port):
    return "[%s]:%d" % (host, port) if ":" in host else "%s:%d" % (host, port)


def _bind_host(ln):
    h = ln["bind"].rsplit(":", 1)[0]
    return h[1:-1] if h.startswith("[") else h


class Target:
    """Where a client connects: an ftpsgate listener, or vsftpd itself in self-check mode."""

    def __init__(self, name, port, tls, ca, backend, listener=None):
        self.name = name
        self.host = HOST
        self.port = port
        self.tls = tls          # explicit FTPS (AUTH TLS) expected
        self.ca = ca
        self.backend = backend  # the Vsftpd behind it
        self.listener = listener  # the listener's config dict (proxy mode)
        # implicit FTPS: TLS from the first byte (ftps:// URLs, no AUTH)
        self.implicit = bool(listener is not None and listener.get("mode") == "implicit")

    def url(self, path):
        return "%s://%s%s" % ("ftps" if self.implicit else "ftp", _hostport(self.host, self.port), path)

    @property
    def pasv_range(self):
        if self.listener is None:
            return None
        a, b = self.listener["passive"]["ports"].split("-")
        return int(a), int(b)


class Proxy(LogFile):
    def __init__(self, env, binary):
        self.env = env
        self.binary = binary
        self.listeners = []
        self.config_path = os.path.join(env.tmp, "ftpsgate.json")
        self.log = os.path.join(env.tmp, "ftpsgate.log")
        self.proc = None
        self.sanitized = _is_sanitized(binary)
        self.extra_env = {}
        self.extra_tls = {}     # more TLS identities: {"name": {"cert": ..., "key": ..., ...}}
        self.main_tls = {}      # more keys of the "main" identity (min_version, client_ca, ...)
        self.extra_limits = {}  # more "limits" keys (e.g. data_connect_timeout)
        self.wrapper = []       # argv that execs the proxy's own (e.g. unshare, same PID)
        self.admin_port = None  # set: "admin": {"bind": "127.0.0.1:PORT"} (/metrics, /healthz)
        self.extra_top = {}     # more top-level keys (e.g. "workers")
        # FTPSGATE_TEST_WORKERS: every suite's proxy with that many worker loops (tests/run.sh
        # runs the ASan build with 1, the normal build with the default: one per CPU).
        if os.environ.get("FTPSGATE_TEST_WORKERS"):
            self.extra_top["workers"] = int(os.environ["FTPSGATE_TEST_WORKERS"])

    def add_listener(self, name, backend_address, protection="private", login_requires_tls=True,
                     mode="explicit", n_passive=24, announce=None, bind_host=HOST,
                     policy=None, tls="main", sni=None, active=None):
        """policy: more policy keys (ccc, listing_protection, require_session_reuse);
        tls: the identity name; sni: the listener's "sni" object; active: its "active" object."""
        lo, hi = free_port_block(n_passive)
        ln = {
            "name": name,
            "bind": _hostport(bind_host, 0),  # port filled in start()
            "mode": mode,
            "tls": tls,
            "backend": {"address": backend_address, "data_mode": "passive"},
            "passive": {"ports": "%d-%d" % (lo, hi)},
            "policy": {"login_requires_tls": login_requires_tls, "data_protection": protection},
        }
        if announce:
            ln["passive"]["announce"] = announce
        if policy:
            ln["policy"].update(policy)
        if sni:
            ln["sni"] = sni
        if active is not None:
            ln["active"] = active
        self.listeners.append(ln)
        return ln

    def config(self):
        main = {"cert": self.env.certs.cert, "key": self.env.certs.key}
        main.update(self.main_tls)
        tls = {"main": main}
        tls.update(self.extra_tls)
        limits = {"max_line": 4096}
        limits.update(self.extra_limits)
        cfg = {
            "tls": tls,
            "listeners": self.listeners,
            "log": {"level": "debug", "format": "text"},
            "limits": limits,
        }
        if self.admin_port:
            cfg["admin"] = {"bind": "%s:%d" % (HOST, self.admin_port)}
        cfg.update(self.extra_top)
        return cfg

    def start(self, timeout=None):
        if timeout is None:
            timeout = 30 if self.sanitized else 10
        for attempt in range(3):
            ports = []
            for ln in self.listeners:
                host = _bind_host(ln)
                p = free_port(host)
                ln["bind"] = _hostport(host, p)
                ports.append((host, p))
            with open(self.config_path, "w") as f:
                json.dump(self.config(), f, indent=2)
            env = dict(os.environ)
            env.update(self.extra_env)
            with open(self.log, "ab") as f:
                f.write(b"=== harness: starting ftpsgate (attempt %d)\n" % (attempt + 1))
                since = f.tell()
            self.proc = spawn(self.wrapper + [self.binary, "-c", self.config_path], self.log, env=env)
            ok = wait_ready(self.log, timeout, self.proc, since)
            if ok:
                return self
            rc = stop_process(self.proc, signal.SIGKILL, 5)
            # Retry only for a lost race on a port; an early exit for another reason is final.
            if "in use" not in tail_file(self.log, 20).lower():
                raise RuntimeError("ftpsgate did not start (exit %s); log:\n%s" % (rc, tail_file(self.log, 20)))
        raise RuntimeError("ftpsgate did not start; log:\n%s" % tail_file(self.log, 20))

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc is not None and self.proc.poll() is None and pid_alive(self.proc.pid)

    def stop(self, timeout=20):
        """SIGTERM, then waits; returns (exit status, stopped_by_sigterm)."""
        if self.proc is None:
            return None, False
        if self.proc.poll() is not None:
            return self.proc.returncode, False
        try:
            self.proc.send_signal(signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=timeout)
            return self.proc.returncode, True
        except subprocess.TimeoutExpired:
            stop_process(self.proc, signal.SIGKILL, 5)
            return self.proc.returncode, False


# --------------------------------------------------------------------------
# The environment of one test file


def _pick_tmp_base(need_bytes):
    for base in ("/dev/shm", tempfile.gettempdir()):
        try:
            st = os.statvfs(base)
            if os.access(base, os.W_OK) and st.f_bavail * st.f_frsize > need_bytes:
                return base
        except OSError:
            continue
    return tempfile.gettempdir()


class Env:
    """Temp dir, certificates, backends and the front (proxy or self-check target)."""

    def __init__(self, suite, need_bytes=2 * 1024 * MiB):
        self.suite = suite
        base = _pick_tmp_base(need_bytes)
        self.tmp = tempfile.mkdtemp(prefix="ftpsgate-it-%s-" % suite.name, dir=base)
        os.chmod(self.tmp, 0o755)
        self.client_dir = os.path.join(self.tmp, "client")
        os.makedirs(self.client_dir)
        self.certs = Certs(os.path.join(self.tmp, "certs"))
        self.backends = []
        self.proxy = None
        self.binary = None
        if not SELFCHECK:
            self.binary = os.environ.get("FTPSGATE_BIN", "")
            if not self.binary or not os.access(self.binary, os.X_OK):
                raise RuntimeError("FTPSGATE_BIN (%r) is not an executable; set it, or set "
                                   "FTPSGATE_SELFCHECK=plain|tls to check the harness alone" % self.binary)
            self.proxy = Proxy(self, self.binary)
        suite.on_fail.append(self._print_tails)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def close(self):
        if self.proxy is not None and self.proxy.proc is not None and self.proxy.proc.poll() is None:
            stop_process(self.proxy.proc, signal.SIGKILL, 5)
        for b in self.backends:
            b.stop()
        if os.environ.get("FTPSGATE_KEEP_TMP") == "1":
            print("(kept %s)" % self.tmp, flush=True)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def _print_tails(self):
        if self.proxy is not None:
            print("     --- ftpsgate log tail (%s, pid %s, alive=%s):" % (
                self.proxy.log, self.proxy.proc.pid if self.proxy.proc else "-", self.proxy.alive()))
            for line in tail_file(self.proxy.log, 15).splitlines():
                print("     | " + line[:300])
        for b in self.backends:
            print("     --- vsftpd %s log tail:" % b.name)
            for line in tail_file(b.log, 6).splitlines():
                print("     | " + line[:300])

    def backend(self, name="vs1"):
        b = Vsftpd(self, name, tls=(SELFCHECK == "tls")).start()
        self.backends.append(b)
        return b

    def pyftpd(self, name="py1", flavour="plain"):
        b = Pyftpd(self, name, flavour).start()
        self.backends.append(b)
        return b

    def front(self, backend, name="explicit1", protection="private", login_requires_tls=True, **kw):
        """Registers a listener in front of backend; returns its Target (port known after start())."""
        if SELFCHECK:
            return Target(name, backend.port, SELFCHECK == "tls", self.certs.ca, backend)
        ln = self.proxy.add_listener(name, backend.address, protection, login_requires_tls, **kw)
        t = Target(name, None, True, self.certs.ca, backend, ln)
        t.host = _bind_host(ln)
        return t

    def start(self, *targets):
        """Starts the proxy with every registered listener and fills in the targets' ports."""
        if SELFCHECK:
            return
        self.proxy.start()
        for t in targets:
            t.port = int(t.listener["bind"].rsplit(":", 1)[1])

    def final_checks(self):
        """Cases every file ends with: the proxy log has content but never the password;
        the proxy exits 0 on SIGTERM with no sanitizer report."""
        s = self.suite

        def no_password():
            needs_proxy()
            text = self.proxy.log_text()
            check(text.replace("=== harness: starting ftpsgate", "").strip() != "",
                  "the proxy log (level debug) is empty, so it cannot be checked")
            check(PASSWORD not in text, "the proxy log contains the PASS argument %r" % PASSWORD)

        def clean_exit():
            needs_proxy()
            check(self.proxy.alive(), "ftpsgate is not running any more (exit %s)" % self.proxy.proc.poll())
            rc, by_term = self.proxy.stop()
            text = self.proxy.log_text()
            reports = [ln for ln in text.splitlines() if any(p in ln for p in SANITIZER_PATTERNS)]
            check(not reports, "sanitizer report in the proxy log: %s" % "; ".join(reports[:3]))
            check(by_term, "ftpsgate did not exit within 20 s of SIGTERM")
            check_eq(rc, 0, "ftpsgate exit status after SIGTERM")

        s.run("log never contains the password", no_password)
        s.run("proxy exits 0 on SIGTERM, no sanitizer report", clean_exit)


def main_wrapper(name, body, need_bytes=2 * 1024 * MiB):
    """Runs body(suite, env) with the environment set up, then the final checks; exits."""
    suite = Suite(name)
    env = None
    try:
        try:
            env = Env(suite, need_bytes)
        except Exception as e:  # noqa: BLE001
            suite.fail_setup("environment", e)
            sys.exit(suite.finish())
        try:
            body(suite, env)
        except (Fail, Exception) as e:  # noqa: BLE001 - setup errors inside body
            suite.fail_setup("test body", e)
        if not SELFCHECK and env.proxy is not None and env.proxy.proc is not None:
            env.final_checks()
    finally:
        if env is not None:
            env.close()
    sys.exit(suite.finish())


# --------------------------------------------------------------------------
# Raw control-connection client (for exact reply codes and misbehaviour)


class Ctl:
    """A control connection that speaks the protocol by hand: exact bytes out, whole replies in."""

    def __init__(self, target, timeout=20, source=None, ctx=None, server_name=None):
        """On an implicit target the TLS handshake (ctx, default: trust target.ca) comes
        before the greeting. server_name: the SNI/hostname checked (default target.host)."""
        self.target = target
        self.timeout = timeout
        self.server_name = server_name or target.host
        self.sock = socket.create_connection((target.host, target.port), timeout=timeout,
                                             source_address=(source, 0) if source else None)
        self.buf = b""
        self.tls = False
        self.ctx = ctx
        self.saved_session = None  # the control TLS session, kept across CCC / REIN for data connections
        if getattr(target, "implicit", False):
            self.start_tls(ctx or ssl.create_default_context(cafile=target.ca))
        self.greeting = self.reply()

    def start_tls(self, ctx, session=None):
        """Client TLS handshake on the control connection as it is now (after 234, or implicit),
        offering session (an ssl.SSLSession) to resume when given."""
        self.ctx = ctx
        self.sock = ctx.wrap_socket(self.sock, server_hostname=self.server_name, session=session)
        self.tls = True

    def stop_tls(self, timeout=10):
        """After CCC's 200 or REIN's 220: close_notify both ways, the TCP connection stays.
        The control session is kept (saved_session) for data connections."""
        check(self.buf == b"", "bytes after the reply, before close_notify: %r" % self.buf[:100])
        try:
            self.saved_session = self.sock.session
        except (AttributeError, ValueError):
            pass
        self.sock.settimeout(timeout)
        s = self.sock.unwrap()
        # unwrap() gives back the SSLSocket object without TLS; make it a plain socket.
        self.sock = socket.socket(s.family, s.type, s.proto, fileno=s.detach())
        self.tls = False

    def _recv(self, timeout):
        self.sock.settimeout(timeout)
        b = self.sock.recv(65536)
        if not b:
            raise EOFError("control connection closed by peer")
        self.buf += b
        if len(self.buf) > 1 * MiB:
            raise Fail("over 1 MiB of reply data without an end")

    def _line(self, deadline):
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout("no reply line within %ss" % self.timeout)
            self._recv(left)
        line, _, self.buf = self.buf.partition(b"\n")
        return line.rstrip(b"\r").decode("utf-8", "replace")

    def reply(self, timeout=None):
        """Reads one whole reply (RFC 959 §4.2 multi-line aware): (code, text)."""
        deadline = time.monotonic() + (timeout or self.timeout)
        first = self._line(deadline)
        lines = [first]
        if len(first) < 3 or not first[:3].isdigit():
            raise Fail("malformed reply line %r" % first[:200])
        code = int(first[:3])
        if len(first) > 3 and first[3] == "-":
            for _ in range(10000):
                ln = self._line(deadline)
                lines.append(ln)
                if ln.startswith("%03d " % code) or ln == "%03d" % code:
                    break
            else:
                raise Fail("multi-line reply without an end")
        return code, "\n".join(lines)

    def send(self, data):
        self.sock.sendall(data)

    def cmd(self, line, timeout=None):
        self.send(line.encode("utf-8") + b"\r\n")
        return self.reply(timeout)

    def auth_tls(self, ctx, mech="TLS", session=None):
        r = self.cmd("AUTH " + mech)
        check_code(r, 234, "AUTH " + mech)
        check(self.buf == b"", "bytes after the 234 reply before the handshake: %r" % self.buf[:100])
        self.start_tls(ctx, session)
        return r

    def login(self, user=FTP_USER, password=PASSWORD):
        r = self.cmd("USER " + user)
        check_code(r, 331, "USER")
        r = self.cmd("PASS " + password)
        check_code(r, 230, "PASS")
        return r

    def secure_login(self, ctx, prot="P"):
        """AUTH TLS, login, PBSZ 0, PROT prot (explicit FTPS); plain login in plain self-check."""
        if self.target.tls and not getattr(self.target, "implicit", False):
            self.auth_tls(ctx)
        self.login()
        if self.target.tls and prot:
            check_code(self.cmd("PBSZ 0"), 200, "PBSZ 0")
            check_code(self.cmd("PROT " + prot), 200, "PROT " + prot)
        return self

    def pasv(self):
        r = self.cmd("PASV")
        check_code(r, 227, "PASV")
        host, port = ftplib.parse227(r[1].splitlines()[0])
        return host, port

    def epsv(self):
        r = self.cmd("EPSV")
        check_code(r, 229, "EPSV")
        _, port = ftplib.parse229(r[1].splitlines()[0], (self.target.host, self.target.port))
        return self.target.host, port

    def wrap_data(self, s, ctx, session=None):
        """TLS on a data connection, resuming the control session (or session, when given)."""
        sess = session or (self.sock.session if isinstance(self.sock, ssl.SSLSocket) else self.saved_session)
        return ctx.wrap_socket(s, server_hostname=self.server_name, session=sess)

    def readable(self):
        """True when the server sent something on control that we have not read."""
        if self.buf:
            return True
        if isinstance(self.sock, ssl.SSLSocket) and self.sock.pending():
            return True
        r, _, _ = select.select([self.sock], [], [], 0)
        return bool(r)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def abort(self):
        """Vanishes: RST, no close_notify, no QUIT."""
        abort_socket(self.sock)


def abort_socket(s):
    try:
        raw = s
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        # ssl.SSLSocket.close() does not send close_notify; with linger 0 the kernel sends RST.
        s.close()
    except OSError:
        pass


def recv_until_closed(s, timeout, limit=MiB):
    """Reads until EOF/RST: returns (how, bytes) with how in 'eof', 'reset', 'timeout', ..."""
    deadline = time.monotonic() + timeout
    got = bytearray()
    while time.monotonic() < deadline and len(got) <= limit:
        s.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            b = s.recv(256 * KiB)
        except socket.timeout:
            return "timeout", bytes(got)
        except (ConnectionResetError, BrokenPipeError):
            return "reset", bytes(got)
        except ssl.SSLError as e:
            return "ssl-error:%s" % e.reason, bytes(got)
        except OSError as e:
            return "error:%s" % e, bytes(got)
        if not b:
            return "eof", bytes(got)
        got += b
    return ("timeout" if len(got) <= limit else "over-limit"), bytes(got)


def refused_how(addr, timeout=10, source=None):
    """Connects to addr (from source, a (host, port)) like a thief would, and reads until the
    proxy ends the connection: 'reset' (an RST, seen at connect or on the first read),
    'eof' (a FIN: the peer could take it for a finished transfer), 'refused' (nothing
    listens), 'timeout', or 'data' when bytes arrived."""
    try:
        t = socket.create_connection(addr, timeout=timeout, source_address=source)
    except ConnectionResetError:
        return "reset"
    except ConnectionRefusedError:
        return "refused"
    try:
        how, got = recv_until_closed(t, timeout)
    finally:
        t.close()
    return "data" if got else how


# --------------------------------------------------------------------------
# ftplib client


class FTPS(ftplib.FTP_TLS):
    """ftplib's FTP_TLS as a careful client: data TLS resumes the control session
    (as curl and lftp do), EPSV on demand over IPv4, and the address in the 227
    reply is used (so the proxy's passive.announce is what the client dials)."""

    use_epsv = False
    last_pasv = None

    def makepasv(self):
        if self.use_epsv:
            resp = self.sendcmd("EPSV")
            host, port = ftplib.parse229(resp, self.sock.getpeername())
        else:
            resp = self.sendcmd("PASV")
            host, port = ftplib.parse227(resp)
        self.last_pasv = (resp, host, port)
        return host, port

    def ntransfercmd(self, cmd, rest=None):
        conn, size = ftplib.FTP.ntransfercmd(self, cmd, rest)
        if self._prot_p:
            sess = self.sock.session if isinstance(self.sock, ssl.SSLSocket) else None
            try:
                conn = self.context.wrap_socket(conn, server_hostname=self.host, session=sess)
            except Exception:
                conn.close()
                raise
        return conn, size


class ImplicitFTPS(FTPS):
    """FTPS with implicit TLS (MS-FTPS §3.2.5): the handshake comes before the greeting;
    no AUTH (FTP_TLS.login skips it on an SSLSocket). Data TLS resumes the control session."""

    def connect(self, host="", port=0, timeout=-999, source_address=None):
        if host:
            self.host = host
        if port > 0:
            self.port = port
        if timeout != -999:
            self.timeout = timeout
        if source_address is not None:
            self.source_address = source_address
        sock = socket.create_connection((self.host, self.port), self.timeout,
                                        source_address=self.source_address)
        self.af = sock.family
        self.sock = self.context.wrap_socket(sock, server_hostname=self.host)
        self.file = self.sock.makefile("r", encoding=self.encoding)
        self.welcome = self.getresp()
        return self.welcome


def ftplib_connect(target, epsv=False, prot="P", login=True, timeout=60, ctx=None, cls=None):
    ctx = ctx or ssl.create_default_context(cafile=target.ca)
    implicit = getattr(target, "implicit", False)
    f = (cls or (ImplicitFTPS if implicit else FTPS))(context=ctx, timeout=timeout)
    f.use_epsv = epsv
    f.connect(target.host, target.port)
    if login:
        if target.tls:
            if not implicit:
                f.auth()
            f.login(FTP_USER, PASSWORD)
            if prot == "P":
                f.prot_p()
            elif prot == "C":
                # ftplib's prot_c() skips PBSZ, which RFC 4217 §9 requires before PROT.
                f.voidcmd("PBSZ 0")
                f.prot_c()
        else:
            f.login(FTP_USER, PASSWORD, secure=False)
    return f


def ftplib_get(f, rpath, rest=None):
    """Downloads rpath; returns (nbytes, sha256 hex, final reply)."""
    h = hashlib.sha256()
    n = [0]

    def cb(b):
        h.update(b)
        n[0] += len(b)
    resp = f.retrbinary("RETR " + rpath, cb, blocksize=256 * KiB, rest=rest)
    return n[0], h.hexdigest(), resp


def ftplib_put(f, local, rpath, cmd="STOR", offset=0, length=None):
    with open(local, "rb") as fp:
        fp.seek(offset)
        if length is None:
            return f.storbinary("%s %s" % (cmd, rpath), fp, blocksize=256 * KiB)
        data = fp.read(length)
    import io
    return f.storbinary("%s %s" % (cmd, rpath), io.BytesIO(data), blocksize=256 * KiB)


def quit_quietly(f):
    try:
        f.quit()
    except Exception:  # noqa: BLE001
        try:
            f.close()
        except Exception:  # noqa: BLE001
            pass


# --------------------------------------------------------------------------
# curl and lftp


def curl(target, extra, timeout=600, epsv=True):
    """Runs curl against target with TLS settings; returns (CompletedProcess, trace text)."""
    argv = ["curl", "-sS", "-v", "--connect-timeout", "10", "--max-time", str(timeout - 10),
            "--user", "%s:%s" % (FTP_USER, PASSWORD), "--ftp-pasv"]
    if not epsv:
        argv.append("--disable-epsv")
    if target.tls:
        argv += ["--ssl-reqd", "--cacert", target.ca]
    r = run_cmd(argv + extra, timeout=timeout)
    return r, r.stderr


def check_pasv_trace(trace, epsv, what):
    """curl -v shows '> EPSV' / '< 229' or '> PASV' / '< 227'."""
    if epsv:
        check(re.search(r"^> EPSV", trace, re.M) and re.search(r"^< 229", trace, re.M),
              "%s: curl did not use EPSV (no '> EPSV' / '< 229' in its trace)" % what)
    else:
        check(re.search(r"^> PASV", trace, re.M) and re.search(r"^< 227", trace, re.M),
              "%s: curl did not use PASV (no '> PASV' / '< 227' in its trace)" % what)
        check(not re.search(r"^> EPSV", trace, re.M), "%s: curl sent EPSV despite --disable-epsv" % what)


def lftp(target, commands, workdir, epsv=True, timeout=600):
    """Runs lftp with a script; returns (CompletedProcess, debug trace text)."""
    dbg = os.path.join(workdir, "lftp-debug-%s.log" % os.urandom(4).hex())
    script = os.path.join(workdir, "lftp-%s.script" % os.urandom(4).hex())
    tls = target.tls
    lines = [
        "set cmd:fail-exit yes",
        "set net:max-retries 1",
        "set net:timeout 30",
        "set net:reconnect-interval-base 1",
        "set xfer:clobber on",
        "set xfer:use-temp-file no",
        "set ftp:passive-mode true",
        "set ftp:prefer-epsv %s" % ("true" if epsv else "false"),
        "set ftp:ssl-allow %s" % ("true" if tls else "false"),
        "set ftp:ssl-force %s" % ("true" if tls else "false"),
        "set ftp:ssl-protect-data %s" % ("true" if tls else "false"),
        "set ftp:ssl-protect-list %s" % ("true" if tls else "false"),
        "set ssl:ca-file %s" % target.ca,
        "set ssl:verify-certificate true",
        "set ssl:check-hostname true",
        "debug -o %s -t 9" % dbg,
        "open -u %s,%s %s://%s:%d" % (FTP_USER, PASSWORD, "ftps" if getattr(target, "implicit", False) else "ftp",
                                      target.host, target.port),
    ] + list(commands)
    with open(script, "w") as f:
        f.write("\n".join(lines) + "\n")
    env = dict(os.environ)
    env["HOME"] = workdir  # no user rc file, no bookmarks, no history
    env.pop("LFTP_HOME", None)
    r = run_cmd(["lftp", "--norc", "-f", script], timeout=timeout, env=env, cwd=workdir)
    try:
        with open(dbg, "rb") as f:
            trace = f.read().decode("utf-8", "replace")
        os.unlink(dbg)
    except OSError:
        trace = ""
    os.unlink(script)
    return r, trace


# --------------------------------------------------------------------------
# The file set of the transfer tests

BIG = int(os.environ.get("FTPSGATE_TEST_BIG_MIB", "300")) * MiB
SIZES = [0, 1, 64 * KiB + 1, 10 * MiB, BIG]


def publish_sizes(backend, prefix):
    """Creates /pub/<prefix>-<size> for every size; returns {size: (remote path, local path, sha256)}."""
    out = {}
    for n in SIZES:
        name = "%s-%d.bin" % (prefix, n)
        sha = backend.add_pub(name, n)
        out[n] = ("/pub/" + name, backend.pub_path(name), sha)
    return out


def check_stored(backend, name, want_size, want_sha, what):
    """An upload landed on the backend complete: size and sha256 of the stored file."""
    p = backend.up_path(name)
    check(os.path.exists(p), "%s: /up/%s does not exist on the backend" % (what, name))
    check_eq(os.path.getsize(p), want_size, "%s: stored size" % what)
    got = sha256_file(p)
    if want_size >= MiB:
        os.unlink(p)  # keep the tmpfs small; the 300 MiB files add up
    check_eq(got, want_sha, "%s: sha256 of the stored file" % what)
