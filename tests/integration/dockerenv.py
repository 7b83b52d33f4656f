"""A Docker engine for the container tests (test_docker*.py, test_compose*.py, test_sidecar*.py).

Engine.up() uses the dockerd that answers on the default socket, or, when none does,
starts one (Debian's docker.io: /usr/sbin/dockerd) in the background, in a session of
its own, and Engine.down() stops exactly that one by its PID and removes what it left:
the docker0 bridge, the DOCKER* iptables chains and the rules that use them, nft tables
that did not exist before, its mounts under /run/docker, and the sysctls it changed. A
dockerd that was already running is used and never stopped. The clients are Debian's
docker.io and docker-compose (/usr/bin/docker: another docker on PATH may not match).

Who starts dockerd: the starter takes the lock that ../shared/tools/fresh-debian.sh
takes (/tmp/fresh-debian.lock) while the engine it started runs, so that fresh-debian.sh
never adopts an engine that a test is about to stop; a test that finds the lock taken
waits for that run's engine to answer and uses it. Container tests also run one at a
time (TEST_LOCK, and RESOURCE_LOCK docker in ctest). A test killed with SIGKILL leaves its
dockerd running; its state file (STATE) lets the next container test adopt it and stop it.

No image registry is reachable: ensure_base_image() makes `debian:12-slim` when it is
missing, with `debootstrap --variant=minbase bookworm` and `docker import`, so that the
Dockerfiles stay the ordinary ones a user with a registry builds.

Every container, network and volume a test makes carries the label LABEL=<pid>;
remove_labelled() removes them (also from atexit).
"""

import atexit
import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True
import harness as H  # noqa: E402

DOCKER = "/usr/bin/docker"
DOCKERD = "/usr/sbin/dockerd"
COMPOSE = "/usr/bin/docker-compose"
DEBOOTSTRAP = "/usr/sbin/debootstrap"
BASE_IMAGE = "debian:12-slim"
MIRROR = "http://deb.debian.org/debian"
STARTER_LOCK = "/tmp/fresh-debian.lock"          # shared with ../shared/tools/fresh-debian.sh
TEST_LOCK = "/tmp/ftpsgate-docker-tests.lock"    # one container test at a time
STATE = "/run/ftpsgate-test-dockerd.json"        # the dockerd a test started: pid, owner, what to undo
LABEL = "ftpsgate-test"
REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))


class EngineError(RuntimeError):
    """Docker cannot be used here; the message says why (the test fails with it)."""


def _run(argv, timeout, **kw):
    return subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, timeout=timeout, **kw)


def _quiet(argv, timeout=30):
    try:
        return _run(argv, timeout)
    except (OSError, subprocess.TimeoutExpired):
        return None


def docker(args, timeout=120, check=True, env=None):
    """Runs the docker.io client; returns CompletedProcess; raises H.Fail on failure when check."""
    r = _run([DOCKER] + list(args), timeout, env=env)
    if check and r.returncode != 0:
        raise H.Fail("docker %s: exit %d: %s" % (" ".join(args)[:200], r.returncode,
                                                  (r.stderr or r.stdout).strip()[-800:]))
    return r


def _ping():
    r = _quiet([DOCKER, "info", "--format", "{{.ServerVersion}}"], 20)
    return r is not None and r.returncode == 0 and r.stdout.strip() != ""


def _iptables(table):
    r = _quiet(["iptables", "-t", table, "-S"])
    return r.stdout if r is not None and r.returncode == 0 else ""


def _docker_mounts():
    try:
        with open("/proc/mounts") as f:
            return [ln.split()[1] for ln in f
                    if re.match(r"^(/var)?/run/docker/|^/var/lib/docker/", ln.split()[1])]
    except OSError:
        return []


def _read(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def _snapshot():
    """What the host looked like before dockerd: down() puts it back."""
    r = _quiet(["nft", "list", "tables"])
    pol = re.search(r"^-P FORWARD (\S+)", _iptables("filter"), re.M)
    return {
        "ip_forward": _read("/proc/sys/net/ipv4/ip_forward"),
        "bridge_nf": _read("/proc/sys/net/bridge/bridge-nf-call-iptables"),
        "had_bridge": os.path.exists("/sys/class/net/docker0"),
        "had_chains": bool(re.search(r"^-N DOCKER", _iptables("filter") + _iptables("nat"), re.M)),
        "forward_policy": pol.group(1) if pol else None,
        "nft_tables": r.stdout.splitlines() if r is not None and r.returncode == 0 else [],
        "mounts": _docker_mounts(),
    }


_MOUNT_FLAGS = {"ro", "rw", "nosuid", "nodev", "noexec", "relatime", "noatime", "nodiratime", "strictatime"}


def _readonly_cgroups():
    """(mount point, fstype, options) of cgroup file systems mounted read-only, as a container
    without --privileged has them: dockerd cannot make its containers' cgroups there."""
    out = []
    try:
        with open("/proc/mounts") as f:
            for ln in f:
                dev, mp, fstype, opts = ln.split()[:4]
                if fstype in ("cgroup", "cgroup2") and "ro" in opts.split(","):
                    out.append((mp, fstype, [o for o in opts.split(",") if o not in _MOUNT_FLAGS]))
    except OSError:
        pass
    return out


def _make_cgroups_writable():
    """Docker in docker: mounts the read-only cgroup hierarchies afresh, writable (what the
    docker:dind image's entry script does). Returns the mount points changed, for down()."""
    changed = []
    for mp, fstype, opts in _readonly_cgroups():
        if fstype == "cgroup" and not opts:
            continue
        o = ",".join(["rw", "nosuid", "nodev", "noexec"] + (["none"] if any(x.startswith("name=") for x in opts)
                                                              and len(opts) == 1 else []) + opts)
        if _quiet(["umount", mp]) is None:
            continue
        r = _quiet(["mount", "-n", "-t", fstype, "-o", o, fstype, mp])
        if r is None or r.returncode != 0:
            raise EngineError("cannot mount the cgroup hierarchy %s writable for dockerd: %s" % (
                mp, (r.stderr if r is not None else "mount failed").strip()))
        changed.append(mp)
    return changed


def _pid_is_dockerd(pid):
    try:
        return os.path.basename(os.readlink("/proc/%d/exe" % pid)).startswith("dockerd")
    except OSError:
        return False


class Engine:
    def __init__(self, workdir):
        self.workdir = workdir
        self.dockerd_log = os.path.join(workdir, "dockerd.log")
        self.pid = None          # the dockerd this test started (or adopted); None: not ours
        self.before = None
        self.proc = None
        self._starter_fd = None
        self._test_fd = None
        self.how = ""
        atexit.register(self.down)

    # ------------------------------------------------------------------ up
    def up(self, timeout=120):
        for tool, pkg in ((DOCKER, "docker.io"), (DOCKERD, "docker.io"), (COMPOSE, "docker-compose"),
                          (DEBOOTSTRAP, "debootstrap")):
            if not os.access(tool, os.X_OK):
                raise EngineError("%s is missing: install %s (tests/setup-deps.sh does)" % (tool, pkg))
        if os.geteuid() != 0:
            raise EngineError("the container tests start dockerd and need root")
        self._test_fd = self._lock(TEST_LOCK, wait=1800, what="another container test")
        self._adopt_stale()
        if self.pid is not None:
            return self
        deadline = time.monotonic() + timeout
        while True:
            if _ping():
                self.how = "using the dockerd that was already running (it is left running)"
                return self
            fd = self._try_lock(STARTER_LOCK)
            if fd is not None:
                break
            if time.monotonic() > deadline:
                raise EngineError("no dockerd answers and %s stays taken (a fresh-debian.sh run starting or "
                                  "stopping its engine?)" % STARTER_LOCK)
            time.sleep(1)
        self._starter_fd = fd
        if _ping():  # started between the two checks by someone else
            self._release_starter()
            self.how = "using the dockerd that was already running (it is left running)"
            return self
        self.before = _snapshot()
        self.before["cgroups_made_rw"] = _make_cgroups_writable()
        log = open(self.dockerd_log, "ab")
        try:
            self.proc = subprocess.Popen([DOCKERD], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True, close_fds=True)
        finally:
            log.close()
        self.pid = self.proc.pid
        self._write_state()
        t0 = time.monotonic()
        while time.monotonic() - t0 < 90:
            if _ping():
                break
            if self.proc.poll() is not None:
                break
            time.sleep(0.5)
        if not _ping():
            tail = H.tail_file(self.dockerd_log, 25)
            self.down()
            raise EngineError("dockerd did not come up; its log ends:\n%s" % tail)
        r = _quiet([DOCKER, "info", "--format", "{{.Driver}}"])
        self.how = "started dockerd pid %d (storage driver %s); it is stopped at the end" % (
            self.pid, r.stdout.strip() if r is not None else "?")
        return self

    def _lock(self, path, wait, what):
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.close(fd)
                    raise EngineError("%s held %s for more than %d s" % (what, path, wait))
                time.sleep(1)

    def _try_lock(self, path):
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            os.close(fd)
            return None

    def _release_starter(self):
        if self._starter_fd is not None:
            os.close(self._starter_fd)
            self._starter_fd = None

    def _write_state(self):
        with open(STATE + ".tmp", "w") as f:
            json.dump({"pid": self.pid, "owner": os.getpid(), "before": self.before}, f)
        os.replace(STATE + ".tmp", STATE)

    def _adopt_stale(self):
        """A dockerd started by a container test that died (SIGKILL, timeout) is ours to stop."""
        try:
            with open(STATE) as f:
                st = json.load(f)
        except (OSError, ValueError):
            return
        pid, owner = st.get("pid"), st.get("owner")
        if isinstance(owner, int) and owner != os.getpid() and H.pid_alive(owner):
            return  # its test still runs (TEST_LOCK makes this rare): not ours
        if isinstance(pid, int) and H.pid_alive(pid) and _pid_is_dockerd(pid):
            fd = self._try_lock(STARTER_LOCK)
            if fd is None:
                return
            self._starter_fd = fd
            self.pid = pid
            self.before = st.get("before")
            self._write_state()
            self.how = "adopted dockerd pid %d, left running by a container test that died; stopped at the end" % pid
        else:
            try:
                os.unlink(STATE)
            except OSError:
                pass

    # ------------------------------------------------------------------ down
    def down(self):
        """Stops the dockerd this test started (by PID) and undoes what it left; else nothing."""
        if self.pid is None:
            self._close_locks()
            return ""
        pid, self.pid = self.pid, None
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        for _ in range(120):
            if self.proc is not None:
                if self.proc.poll() is not None:
                    break
            elif not H.pid_alive(pid):
                break
            time.sleep(0.5)
        else:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            time.sleep(1)
        if self.proc is not None:
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
        b = self.before or {}
        if not b.get("had_bridge"):
            _quiet(["ip", "link", "delete", "docker0"])
        if not b.get("had_chains"):
            for t in ("filter", "nat"):
                for rule in _iptables(t).splitlines():
                    if rule.startswith("-A ") and re.search(r"DOCKER|docker0|br-[0-9a-f]{12}", rule):
                        _quiet(["iptables", "-t", t] + ["-D"] + rule.split()[1:])
                chains = re.findall(r"^-N (DOCKER\S*)", _iptables(t), re.M)
                for c in chains:
                    _quiet(["iptables", "-t", t, "-F", c])
                for c in chains:
                    _quiet(["iptables", "-t", t, "-X", c])
                if t == "filter" and b.get("forward_policy"):
                    _quiet(["iptables", "-P", "FORWARD", b["forward_policy"]])
                leftover = [r for r in _iptables(t).splitlines() if not re.match(r"^-P \S+ ACCEPT$", r)]
                if "table ip %s" % t not in (b.get("nft_tables") or []) and not leftover:
                    _quiet(["nft", "delete", "table", "ip", t])
        for m in sorted(_docker_mounts(), reverse=True):
            if m not in (b.get("mounts") or []):
                _quiet(["umount", "-l", m])
        for path, key in (("/proc/sys/net/ipv4/ip_forward", "ip_forward"),
                          ("/proc/sys/net/bridge/bridge-nf-call-iptables", "bridge_nf")):
            if b.get(key) is not None:
                try:
                    with open(path, "w") as f:
                        f.write(b[key])
                except OSError:
                    pass
        for mp in b.get("cgroups_made_rw") or []:
            _quiet(["mount", "-o", "remount,ro", mp])
        try:
            os.unlink(STATE)
        except OSError:
            pass
        self._close_locks()
        return "stopped dockerd pid %d and removed its bridge and iptables chains" % pid

    def _close_locks(self):
        self._release_starter()
        if self._test_fd is not None:
            os.close(self._test_fd)
            self._test_fd = None

    @property
    def started_here(self):
        return self.pid is not None

    # ------------------------------------------------------------------ images
    def ensure_base_image(self, timeout=1200):
        """debian:12-slim, made with debootstrap when the engine has none. Returns what was done."""
        if docker(["image", "inspect", BASE_IMAGE], check=False).returncode == 0:
            return "%s present" % BASE_IMAGE
        t0 = time.monotonic()
        root = tempfile.mkdtemp(prefix="ftpsgate-rootfs-", dir="/var/tmp")
        os.chmod(root, 0o755)  # the image's "/" gets this mode: 0700 would lock every non-root user out
        try:
            r = _run([DEBOOTSTRAP, "--variant=minbase", "bookworm", root, MIRROR], timeout)
            if r.returncode != 0:
                raise EngineError("debootstrap failed: %s" % (r.stderr or r.stdout)[-1500:])
            for p in ("etc/apt/sources.list",):
                try:
                    os.unlink(os.path.join(root, p))
                except OSError:
                    pass
            for d in ("var/cache/apt/archives", "var/lib/apt/lists"):
                for name in os.listdir(os.path.join(root, d)):
                    full = os.path.join(root, d, name)
                    if os.path.isfile(full) and name != "lock":
                        os.unlink(full)
            with open(os.path.join(root, "etc/apt/sources.list.d/debian.sources"), "w") as f:
                for uri, suites in (("debian", "bookworm bookworm-updates"), ("debian-security", "bookworm-security")):
                    f.write("Types: deb\nURIs: http://deb.debian.org/%s\nSuites: %s\nComponents: main\n"
                            "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n" % (uri, suites))
            tar = subprocess.Popen(["tar", "-C", root, "-c", "."], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
            imp = subprocess.run([DOCKER, "import", "-", BASE_IMAGE], stdin=tar.stdout, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True, timeout=600)
            tar.stdout.close()
            tar.wait(60)
            if imp.returncode != 0 or tar.returncode != 0:
                raise EngineError("docker import failed: %s" % imp.stderr[-800:])
        finally:
            subprocess.run(["rm", "-rf", "--one-file-system", root], timeout=300)
        return "made %s with debootstrap + docker import in %.0f s" % (BASE_IMAGE, time.monotonic() - t0)


def clean_context(dest):
    """The files a clean clone of this repository holds (git's tracked files, as they are
    in the work tree), copied to dest: the image is built from nothing else. Returns their
    number; 0 when there is no git (a copy of a clone): then dest gets the whole tree, less
    what .dockerignore excludes from a build context anyway (build trees, .git, local state)."""
    if shutil.which("git") is None or not os.path.exists(os.path.join(REPO, ".git")):
        skip = shutil.ignore_patterns(".git", "build*", "cmake-build-*", ".quickstart", ".vendor", ".state",
                                      "__pycache__", "Testing", "certs", "tls", "ca.pem")
        shutil.copytree(REPO, dest, ignore=skip, symlinks=True, dirs_exist_ok=True)
        return 0
    r = _run(["git", "-c", "safe.directory=*", "-C", REPO, "ls-files", "-z", "--cached", "--others", "--exclude-standard"], 60)
    if r.returncode != 0:
        raise EngineError("git ls-files failed in %s: %s" % (REPO, r.stderr.strip()))
    n = 0
    for rel in r.stdout.split("\0"):
        if not rel:
            continue
        src = os.path.join(REPO, rel)
        if not os.path.lexists(src):
            continue  # deleted in the work tree, not yet committed
        dst = os.path.join(dest, rel)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        shutil.copy2(src, dst, follow_symlinks=False)
        n += 1
    return n


def build(tag, context, dockerfile=None, timeout=1500, extra=()):
    """docker build; returns the seconds it took. Raises H.Fail with the log tail."""
    argv = ["build", "-t", tag, "--label", "%s=%d" % (LABEL, os.getpid())]
    if dockerfile:
        argv += ["-f", dockerfile]
    argv += list(extra) + [context]
    t0 = time.monotonic()
    r = docker(argv, timeout=timeout, check=False)
    dt = time.monotonic() - t0
    if r.returncode != 0:
        raise H.Fail("docker build %s failed (exit %d) after %.0f s:\n%s" % (
            tag, r.returncode, dt, (r.stdout + r.stderr)[-3000:]))
    return dt


def remove_labelled():
    """Removes the containers, networks and volumes this test process labelled."""
    sel = "label=%s=%d" % (LABEL, os.getpid())
    if not _ping():
        return
    for kind, ls in (("container", ["ps", "-aq"]), ("network", ["network", "ls", "-q"]),
                     ("volume", ["volume", "ls", "-q"])):
        r = _quiet([DOCKER] + ls + ["--filter", sel], 60)
        ids = r.stdout.split() if r is not None and r.returncode == 0 else []
        if ids:
            rm = ["rm", "-f", "-v"] if kind == "container" else [kind, "rm"]
            _quiet([DOCKER] + rm + ids, 120)


def labelled(kind):
    """Names of this test's containers ('container') or networks ('network') that still exist."""
    sel = "label=%s=%d" % (LABEL, os.getpid())
    ls = ["ps", "-a", "--format", "{{.Names}}"] if kind == "container" else [
        kind, "ls", "--format", "{{.Name}}"]
    r = docker(ls + ["--filter", sel], check=False)
    return r.stdout.split()


def label_args():
    return ["--label", "%s=%d" % (LABEL, os.getpid())]


def health(name):
    r = docker(["inspect", "--format", "{{if .State.Health}}{{.State.Health.Status}}{{end}}", name], check=False)
    return r.stdout.strip()


def wait_healthy(name, timeout):
    """Waits for the container's health status 'healthy'; returns the last status seen."""
    deadline = time.monotonic() + timeout
    st = ""
    while time.monotonic() < deadline:
        st = health(name)
        if st == "healthy":
            return st
        if docker(["inspect", "--format", "{{.State.Running}}", name], check=False).stdout.strip() != "true":
            return "not running"
        time.sleep(0.5)
    return st


def logs(name, tail=40):
    r = docker(["logs", "--tail", str(tail), name], check=False)
    return (r.stdout + r.stderr).strip()


def host_port_free(port):
    """True when nothing listens on 127.0.0.1:port (so a publish will not collide)."""
    import socket
    s = socket.socket()
    # As a listener binds (docker-proxy, Go, sets SO_REUSEADDR): a connection of an earlier
    # test in TIME_WAIT on this port does not stop a publish, so it must not count here.
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def engine_for(suite, workdir):
    """Brings the engine up for a test; on failure the suite fails with the reason and exits."""
    eng = Engine(workdir)
    try:
        eng.up()
        print("   docker: %s" % eng.how, flush=True)
        print("   docker: %s" % eng.ensure_base_image(), flush=True)
    except (EngineError, subprocess.TimeoutExpired, OSError) as e:
        suite.failed += 1
        print("FAIL docker engine: %s" % e, flush=True)
        eng.down()
        sys.exit(suite.finish())
    return eng


# --------------------------------------------------------------------------
# FTPS clients on the host, against published ports on 127.0.0.1 (curl and lftp)

RIG_USER = "test"
RIG_PASSWORD = "test"


def curl(port, ca, args, implicit=False, epsv=True, timeout=120, user=RIG_USER, password=RIG_PASSWORD):
    """curl against 127.0.0.1:port, explicit (ftp:// --ssl-reqd) or implicit (ftps://), passive;
    {url} in args is replaced by the URL base. Returns (CompletedProcess, trace)."""
    base = "%s://127.0.0.1:%d" % ("ftps" if implicit else "ftp", port)
    argv = ["curl", "-sS", "-v", "--connect-timeout", "10", "--max-time", str(timeout),
            "--user", "%s:%s" % (user, password), "--ftp-pasv", "--cacert", ca]
    if not implicit:
        argv.append("--ssl-reqd")
    if not epsv:
        argv.append("--disable-epsv")
    argv += [a.replace("{url}", base) for a in args]
    r = H.run_cmd(argv, timeout=timeout + 15)
    return r, r.stderr


def curl_get(port, ca, rpath, local, want_sha, what, implicit=False, epsv=True, extra=()):
    r, tr = curl(port, ca, list(extra) + ["-o", local, "{url}" + rpath], implicit, epsv)
    H.check(r.returncode == 0, "%s: curl exit %d: %s" % (what, r.returncode, tr.strip()[-600:]))
    H.check_pasv_trace(tr, epsv, what)
    H.check_eq(H.sha256_file(local), want_sha, "%s: sha256 of the downloaded file" % what)
    os.unlink(local)


def curl_put(port, ca, local, rpath, what, implicit=False, epsv=True):
    r, tr = curl(port, ca, ["-T", local, "{url}" + rpath], implicit, epsv)
    H.check(r.returncode == 0, "%s: curl exit %d: %s" % (what, r.returncode, tr.strip()[-600:]))
    H.check_pasv_trace(tr, epsv, what)


def lftp(port, ca, commands, workdir, implicit=False, epsv=True, timeout=120, user=RIG_USER,
         password=RIG_PASSWORD):
    """lftp against 127.0.0.1:port (certificate and host name checked), passive, PROT P.
    Returns (CompletedProcess, debug trace)."""
    dbg = os.path.join(workdir, "lftp-debug-%s.log" % os.urandom(4).hex())
    script = os.path.join(workdir, "lftp-%s.script" % os.urandom(4).hex())
    lines = [
        "set cmd:fail-exit yes", "set net:max-retries 1", "set net:timeout 20",
        "set net:reconnect-interval-base 1", "set xfer:clobber on", "set xfer:use-temp-file no",
        "set ftp:passive-mode true", "set ftp:prefer-epsv %s" % ("true" if epsv else "false"),
        "set ftp:ssl-allow true", "set ftp:ssl-force true", "set ftp:ssl-protect-data true",
        "set ftp:ssl-protect-list true", "set ssl:ca-file %s" % ca, "set ssl:verify-certificate true",
        "set ssl:check-hostname true", "debug -o %s -t 9" % dbg,
        "open -u %s,%s %s://127.0.0.1:%d" % (user, password, "ftps" if implicit else "ftp", port),
    ] + list(commands)
    with open(script, "w") as f:
        f.write("\n".join(lines) + "\n")
    env = dict(os.environ, HOME=workdir)
    env.pop("LFTP_HOME", None)
    try:
        r = H.run_cmd(["lftp", "--norc", "-f", script], timeout=timeout, env=env, cwd=workdir)
    finally:
        os.unlink(script)
    try:
        with open(dbg, "rb") as f:
            trace = f.read().decode("utf-8", "replace")
        os.unlink(dbg)
    except OSError:
        trace = ""
    return r, trace


def lftp_get_put(port, ca, rget, want_sha, local_put, rput, workdir, what, implicit=False, epsv=True):
    """One lftp session: download rget (sha256 checked), upload local_put as rput."""
    local = os.path.join(workdir, "lftp-got-%s" % os.urandom(3).hex())
    r, tr = lftp(port, ca, ["get %s -o %s" % (rget, local), "put %s -o %s" % (local_put, rput)], workdir,
                 implicit, epsv)
    H.check(r.returncode == 0, "%s: lftp exit %d: %s | %s" % (what, r.returncode, r.stderr.strip()[-300:],
                                                             tr.strip()[-400:]))
    verb = "EPSV" if epsv else "PASV"
    H.check(re.search(r"---> %s\b" % verb, tr) is not None, "%s: lftp did not send %s" % (what, verb))
    H.check_eq(H.sha256_file(local), want_sha, "%s: sha256 of the downloaded file" % what)
    os.unlink(local)


def container_sha256(container, path):
    """sha256 and size of a file inside a running container (coreutils there)."""
    r = docker(["exec", container, "sh", "-c", "sha256sum %s && stat -c %%s %s" % (path, path)], check=False)
    if r.returncode != 0:
        raise H.Fail("%s:%s: %s" % (container, path, (r.stderr or r.stdout).strip()[-300:]))
    parts = r.stdout.split()
    return parts[0], int(parts[2])


def put_file(container, local, path, owner="test:test"):
    """Copies a host file into a running container, owned by owner."""
    docker(["cp", local, "%s:%s" % (container, path)])
    docker(["exec", container, "chown", owner, path])


# --------------------------------------------------------------------------
# Compose

def compose(file, args, timeout=1500, env=None):
    """Debian's docker-compose with -f file, run from the repository root, as a user would."""
    e = dict(os.environ)
    e.update(env or {})
    r = subprocess.run([COMPOSE, "-f", file] + list(args), cwd=REPO, stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout, env=e)
    return r


def compose_leftovers(project):
    """What a Compose project still has on the engine: containers, networks, volumes."""
    sel = "label=com.docker.compose.project=%s" % project
    out = []
    for kind, ls in (("container", ["ps", "-a", "--format", "{{.Names}}"]),
                     ("network", ["network", "ls", "--format", "{{.Name}}"]),
                     ("volume", ["volume", "ls", "--format", "{{.Name}}"])):
        r = docker(ls + ["--filter", sel], check=False)
        out += ["%s %s" % (kind, n) for n in r.stdout.split()]
    return out


def engine_leftovers():
    """After a dockerd this test started has stopped: its bridges and iptables rules that remain."""
    left = []
    for t in ("filter", "nat"):
        left += ["iptables -t %s: %s" % (t, ln) for ln in _iptables(t).splitlines()
                 if re.search(r"DOCKER|docker0|br-[0-9a-f]{12}", ln)]
    try:
        left += ["interface %s" % n for n in os.listdir("/sys/class/net") if n == "docker0" or n.startswith("br-")]
    except OSError:
        pass
    if pid_of_dockerd_ours():
        left.append("a dockerd process started by this test")
    return left


def pid_of_dockerd_ours():
    try:
        with open(STATE) as f:
            st = json.load(f)
        return st.get("owner") == os.getpid() and H.pid_alive(st.get("pid", 0))
    except (OSError, ValueError):
        return False


def ports_free(ports, wait=60.0):
    """The 127.0.0.1 ports of a fixed-port example that something else holds; waits (at
    most `wait` seconds) for a port that another test holds for a moment."""
    import time
    deadline = time.monotonic() + wait
    while True:
        busy = [p for p in ports if not host_port_free(p)]
        if not busy or time.monotonic() >= deadline:
            return busy
        time.sleep(1.0)
