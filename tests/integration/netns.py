"""Network namespaces for the NAT test: created by the test, torn down by it.

Lab() makes namespaces named "fgt-<pid>-<random>-<role>", joins them with veth pairs
created directly inside them (nothing is added to the host's own network namespace),
gives the interfaces the addresses the test chooses, and deletes every namespace it
made at teardown (explicitly, from atexit, and on SIGTERM through the harness's
SystemExit). A namespace left behind by a test that was SIGKILLed is recognised by the
dead pid in its name and deleted by the next Lab (sweep_stale); nothing else is touched.

Inside a namespace:
  ns.cmd(argv)        argv prefixed with `ip netns exec NAME` (the command replaces `ip`,
                      so a spawned process's PID is the program's own)
  ns.run(argv, t)     run it and wait (bounded)
  ns.call(fn, *args)  run Python code in a thread that entered the namespace with setns(2):
                      sockets it creates (ftplib, socket.create_connection) live there
Processes are spawned with harness.spawn, so they are recorded, killed at the end and
get SIGKILL if the test process dies (PR_SET_PDEATHSIG).
"""

import atexit
import ctypes
import os
import re
import signal
import subprocess
import sys
import threading

sys.dont_write_bytecode = True
import harness as H  # noqa: E402

CLONE_NEWNET = 0x40000000
NETNS_DIR = "/run/netns"
_PREFIX = "fgt-"
_libc = ctypes.CDLL(None, use_errno=True)


class NetnsError(RuntimeError):
    pass


def ip(args, timeout=20):
    r = subprocess.run(["ip"] + list(args), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=timeout)
    if r.returncode != 0:
        raise NetnsError("ip %s: %s" % (" ".join(args), r.stdout.strip()[-300:]))
    return r.stdout


def list_namespaces():
    try:
        out = subprocess.run(["ip", "netns", "list"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                             text=True, timeout=20).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [ln.split()[0] for ln in out.splitlines() if ln.strip()]


def sweep_stale():
    """Deletes namespaces of earlier test runs whose process is gone (by our naming)."""
    for name in list_namespaces():
        m = re.match(r"^fgt-(\d+)-", name)
        if m and not H.pid_alive(int(m.group(1))):
            subprocess.run(["ip", "netns", "del", name], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           timeout=20)


def usable():
    """None when network namespaces can be made here, else the reason."""
    if os.geteuid() != 0:
        return "not root"
    probe = "%sprobe-%d-%s" % (_PREFIX, os.getpid(), os.urandom(3).hex())
    try:
        ip(["netns", "add", probe])
    except (NetnsError, OSError) as e:
        return "ip netns add failed: %s" % e
    try:
        ip(["netns", "del", probe])
    except (NetnsError, OSError):
        pass
    return None


class Netns:
    def __init__(self, lab, role):
        self.lab = lab
        self.role = role
        self.name = "%s%d-%s-%s" % (_PREFIX, os.getpid(), lab.tag, role)
        ip(["netns", "add", self.name])
        lab.namespaces.append(self)
        ip(["-n", self.name, "link", "set", "lo", "up"])

    def cmd(self, argv):
        return ["ip", "netns", "exec", self.name] + list(argv)

    def run(self, argv, timeout=30):
        return H.run_cmd(self.cmd(argv), timeout=timeout)

    def must(self, argv, timeout=30):
        r = self.run(argv, timeout)
        if r.returncode != 0:
            raise NetnsError("%s in %s: %s" % (" ".join(argv), self.role, (r.stderr + r.stdout).strip()[-400:]))
        return r.stdout

    def ip(self, *args):
        return ip(["-n", self.name] + list(args))

    def call(self, fn, *args, timeout=120, **kw):
        """fn(*args, **kw) in a thread inside this namespace; returns its result or raises."""
        box = {}

        def runner():
            try:
                fd = os.open(os.path.join(NETNS_DIR, self.name), os.O_RDONLY)
                try:
                    if _libc.setns(fd, CLONE_NEWNET) != 0:
                        err = ctypes.get_errno()
                        raise NetnsError("setns(%s): %s" % (self.name, os.strerror(err)))
                finally:
                    os.close(fd)
                box["result"] = fn(*args, **kw)
            except BaseException as e:  # noqa: BLE001 - handed to the caller
                box["error"] = e

        t = threading.Thread(target=runner, name="netns-%s" % self.role, daemon=True)
        t.start()
        t.join(timeout)
        if t.is_alive():
            raise H.Fail("code in namespace %s did not finish within %ss" % (self.role, timeout))
        if "error" in box:
            raise box["error"]
        return box.get("result")

    def spawn(self, argv, log_path):
        return H.spawn(self.cmd(argv), log_path)

    def wait_port(self, host, port, timeout, proc=None):
        return self.call(H.wait_port, host, port, timeout, proc, timeout=timeout + 10)


class Lab:
    """A set of namespaces and the links between them; teardown() removes them all."""

    def __init__(self):
        sweep_stale()
        self.tag = os.urandom(3).hex()
        self.namespaces = []
        self._down = False
        atexit.register(self.teardown)

    def netns(self, role):
        return Netns(self, role)

    def link(self, a, a_if, a_cidr, b, b_if, b_cidr):
        """A veth pair created inside namespaces a and b, with addresses, up."""
        ip(["link", "add", a_if, "netns", a.name, "type", "veth", "peer", "name", b_if, "netns", b.name])
        for ns, ifname, cidr in ((a, a_if, a_cidr), (b, b_if, b_cidr)):
            ns.ip("addr", "add", cidr, "dev", ifname)
            ns.ip("link", "set", ifname, "up")

    def teardown(self):
        if self._down:
            return
        self._down = True
        for ns in reversed(self.namespaces):
            try:
                subprocess.run(["ip", "netns", "del", ns.name], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               timeout=20)
            except (OSError, subprocess.TimeoutExpired):
                pass
        self.namespaces = []

    def leftovers(self):
        """Names of this lab's namespaces that still exist (for a teardown check)."""
        mine = "%s%d-%s-" % (_PREFIX, os.getpid(), self.tag)
        return [n for n in list_namespaces() if n.startswith(mine)]


class NsVsftpd(H.Vsftpd):
    """The harness's vsftpd, run inside a namespace on a given address and port."""

    def __init__(self, env, name, ns, host, port):
        super().__init__(env, name)
        self.ns = ns
        self.host = host
        self.fixed_port = port
        self.kind = "vsftpd"
        self.user = H.FTP_USER
        self.password = H.PASSWORD

    def _write_conf(self):
        super()._write_conf()
        with open(self.conf) as f:
            lines = [ln for ln in f.read().splitlines() if not ln.startswith("listen_address=")]
        lines.append("listen_address=%s" % self.host)
        with open(self.conf, "w") as f:
            f.write("\n".join(lines) + "\n")

    def start(self):
        if not os.access(H.VSFTPD_BIN, os.X_OK):
            raise RuntimeError("vsftpd not found at %s (run tests/setup-deps.sh)" % H.VSFTPD_BIN)
        self.port = self.fixed_port
        self._write_conf()
        self.proc = self.ns.spawn([H.VSFTPD_BIN, self.conf], self.out)
        if not self.ns.wait_port(self.host, self.port, 10, self.proc):
            raise RuntimeError("vsftpd in %s did not start; output: %s" % (self.ns.role, H.tail_file(self.out, 10)))
        return self

    @property
    def address(self):
        return "%s:%d" % (self.host, self.port)

    def command_lines(self, mark=0):
        return [c for _, c in self.commands_since(mark)]


class NsProxy(H.Proxy):
    """ftpsgate inside a namespace, with a complete config document given by the test.
    Duck-types harness.Proxy, so Env.final_checks and Env.close work on it."""

    def __init__(self, env, binary, ns, config, waits):
        super().__init__(env, binary)
        self.ns = ns
        self._config = config
        self.waits = waits  # [(host, port)] that must accept once it runs

    def config(self):
        return self._config

    def start(self, timeout=None):
        import json
        if timeout is None:
            timeout = 30 if self.sanitized else 10
        with open(self.config_path, "w") as f:
            json.dump(self._config, f, indent=2)
        with open(self.log, "ab") as f:
            f.write(b"=== harness: starting ftpsgate in namespace %s\n" % self.ns.name.encode())
            since = f.tell()
        self.proc = self.ns.spawn([self.binary, "-c", self.config_path], self.log)
        if not H.wait_ready(self.log, timeout, self.proc, since):
            rc = H.stop_process(self.proc, signal.SIGKILL, 5)
            raise RuntimeError("ftpsgate did not start in %s (exit %s); log:\n%s"
                               % (self.ns.role, rc, H.tail_file(self.log, 20)))
        return self
