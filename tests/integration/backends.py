"""More plain FTP backends for the topology tests (issue 5), and clients that take
a login and a data-channel mode.

Backends (each a foreground child process whose PID the harness records and kills;
only those, with their own descendants):
  vsftpd     the harness's Vsftpd (anonymous), see vsftpd(); VsftpdV6 listens on ::1
  pure-ftpd  unpacked by tests/setup-deps.sh into /var/cache/ftpsgate-test/pure-ftpd;
             command-line flags only, one PureDB virtual user (pure-ftpd's anonymous
             login needs a system account "ftp", which the tests do not create)
  proftpd    unpacked into /var/cache/ftpsgate-test/proftpd; a minimal config with an
             <Anonymous> root and a command log (ExtendedLog)
  pyftpdlib  python3-pyftpdlib, run with /usr/bin/python3 by this very file
             (`backends.py --pyftpd-serve ...`), anonymous, debug log of every command

Every backend has the same layout as the harness's Vsftpd: /pub (test files) and
/up (uploads, writable), the same file helpers (add_pub, pub_path, up_path),
`address` (host:port, [v6]:port), `user`/`password` for the login, `kind`, and
command_lines(mark) -> [command line] from its own log, or None when the server
keeps no command log (pure-ftpd logs only to syslog).

They differ where real servers differ (multi-line 220 greetings, 227 with or
without a trailing dot, 229 wording, FEAT lines claiming AUTH TLS): the tests run
the same cases against each, the proxy gets no hint which one it talks to.

Run `/usr/bin/python3 backends.py --selftest` to start each backend and do one
plain download and upload against it directly (no proxy).
"""

import ftplib
import hashlib
import io
import os
import re
import shutil
import signal
import socket
import subprocess
import sys

sys.dont_write_bytecode = True
import harness as H  # noqa: E402

PUREFTPD_DIR = os.environ.get("FTPSGATE_PUREFTPD_DIR", "/var/cache/ftpsgate-test/pure-ftpd")
PROFTPD_DIR = os.environ.get("FTPSGATE_PROFTPD_DIR", "/var/cache/ftpsgate-test/proftpd")
PUREFTPD_BIN = os.path.join(PUREFTPD_DIR, "usr/sbin/pure-ftpd")
PUREPW_BIN = os.path.join(PUREFTPD_DIR, "usr/bin/pure-pw")
PROFTPD_BIN = os.path.join(PROFTPD_DIR, "usr/sbin/proftpd")
SYS_PYTHON = "/usr/bin/python3"
THIS_FILE = os.path.abspath(__file__)

KINDS = ("vsftpd", "pure-ftpd", "proftpd", "pyftpdlib")


def hostport(host, port):
    return "[%s]:%d" % (host, port) if ":" in host else "%s:%d" % (host, port)


# --------------------------------------------------------------------------
# Backends


class Backend(H.FtpServer):
    """Common part: the FTP root, files, start with retries on a lost port race."""

    kind = "?"
    user = H.FTP_USER
    password = H.PASSWORD

    def __init__(self, env, name, host=H.HOST):
        self.env = env
        self.name = name
        self.host = host
        self.dir = os.path.join(env.tmp, name)
        self.root = os.path.join(self.dir, "root")
        self.pub = os.path.join(self.root, "pub")
        self.up = os.path.join(self.root, "up")
        for p in (self.dir, self.root, self.pub, self.up):
            os.makedirs(p, exist_ok=True)
            os.chmod(p, 0o755)
        shutil.chown(self.up, user=H.TEST_USER)
        self.log = os.path.join(self.dir, "%s.log" % self.kind)  # shown by the harness on failures
        self.out = os.path.join(self.dir, "%s.out" % self.kind)
        self.port = None
        self.proc = None

    # -- subclass hooks
    def _prepare(self):
        pass

    def _argv(self):
        raise NotImplementedError

    def _available(self):
        return None  # or a reason string

    def start(self):
        why = self._available()
        if why:
            raise RuntimeError("%s: %s (run tests/setup-deps.sh)" % (self.kind, why))
        self._prepare()
        return self._start_with_retries(self._argv, wait=15)

    # -- log
    def command_lines(self, mark=0):
        return None


class PureFtpd(Backend):
    """pure-ftpd, standalone in the foreground, one virtual user (PureDB) chrooted
    to the FTP root and mapped to the test account; transfer log in CLF."""

    kind = "pure-ftpd"
    user = "fgtest"

    def _available(self):
        for b in (PUREFTPD_BIN, PUREPW_BIN):
            if not os.access(b, os.X_OK):
                return "%s not found" % b
        return None

    def _prepare(self):
        # The passwd line is written here with a SHA-512 crypt hash: `pure-pw useradd`
        # hashes with argon2id, which costs seconds per login (every test session).
        import pwd
        pw = pwd.getpwnam(H.TEST_USER)
        self.pwfile = os.path.join(self.dir, "pureftpd.passwd")
        self.pdb = os.path.join(self.dir, "pureftpd.pdb")
        r = subprocess.run(["openssl", "passwd", "-6", "-salt", os.urandom(6).hex(), "-stdin"],
                           input=self.password + "\n", text=True, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=30)
        crypted = r.stdout.strip()
        if r.returncode != 0 or not crypted.startswith("$6$"):
            raise RuntimeError("openssl passwd failed: %s" % r.stdout[-300:])
        with open(self.pwfile, "w") as f:
            # user:hash:uid:gid:gecos:home/./ (chroot marker) and empty limit fields
            f.write("%s:%s:%d:%d::%s/./::::::::::::\n" % (self.user, crypted, pw.pw_uid, pw.pw_gid, self.root))
        os.chmod(self.pwfile, 0o600)
        if os.path.exists(self.pdb):
            os.unlink(self.pdb)
        r = subprocess.run([PUREPW_BIN, "mkdb", self.pdb, "-f", self.pwfile], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=30)
        if r.returncode != 0 or not os.path.exists(self.pdb):
            raise RuntimeError("pure-pw mkdb failed: %s" % r.stdout[-500:])

    def _argv(self):
        # -S host,port: bind; -l puredb: virtual users; -p: passive ports; -E: no anonymous; -H: no DNS;
        # -A: chroot everyone; -u 1: uids from 1; -O clf: transfer log; -c/-C: clients;
        # -I: idle minutes. No -B: stays in the foreground.
        if getattr(self, "pasv_range", None) is None:
            self.pasv_range = H.free_port_block(16)  # reserved against parallel test processes
        return [PUREFTPD_BIN, "-S", "%s,%d" % (self.host, self.port), "-l", "puredb:%s" % self.pdb,
                "-p", "%d:%d" % self.pasv_range,
                "-E", "-H", "-A", "-u", "1", "-c", "200", "-C", "200", "-I", "15",
                "-O", "clf:%s" % self.log]


class Proftpd(Backend):
    """proftpd -n (foreground), anonymous login into the FTP root, /up writable,
    every command and its reply code in an ExtendedLog."""

    kind = "proftpd"

    def _available(self):
        if not os.access(PROFTPD_BIN, os.X_OK):
            return "%s not found" % PROFTPD_BIN
        return None

    def _argv(self):
        import grp
        import pwd
        group = grp.getgrgid(pwd.getpwnam(H.TEST_USER).pw_gid).gr_name
        conf = os.path.join(self.dir, "proftpd.conf")
        ipv6 = ":" in self.host
        lines = [
            "ServerType standalone",
            'ServerName "ftpsgate test proftpd"',
            "DefaultServer on",
            "DefaultAddress %s" % self.host,
            "SocketBindTight on",
            "UseIPv6 %s" % ("on" if ipv6 else "off"),
            "Port %d" % self.port,
            "User %s" % H.TEST_USER,
            "Group %s" % group,
            "PidFile %s" % os.path.join(self.dir, "proftpd.pid"),
            "ScoreboardFile %s" % os.path.join(self.dir, "proftpd.scoreboard"),
            "SystemLog %s" % os.path.join(self.dir, "proftpd-system.log"),
            "TransferLog %s" % os.path.join(self.dir, "proftpd-xfer.log"),
            "WtmpLog off",
            "UseReverseDNS off",
            "UseFtpUsers off",
            "AuthPAM off",
            "AuthOrder mod_auth_unix.c",
            "RequireValidShell off",
            "MaxInstances 500",
            "TimeoutIdle 600",
            "ModulePath %s" % os.path.join(PROFTPD_DIR, "usr/lib/proftpd"),
            'LogFormat cmds "%m %J -> %s"',
            "ExtendedLog %s ALL cmds" % self.log,
            "<IfModule mod_delay.c>",
            "  DelayEngine off",
            "</IfModule>",
            "<Anonymous %s>" % self.root,
            "  User %s" % H.TEST_USER,
            "  Group %s" % group,
            "  UserAlias anonymous %s" % H.TEST_USER,
            "  RequireValidShell off",
            "  AnonRequirePassword off",
            "  <Limit WRITE>",
            "    DenyAll",
            "  </Limit>",
            "  <Directory up>",
            "    <Limit WRITE>",
            "      AllowAll",
            "    </Limit>",
            "  </Directory>",
            "</Anonymous>",
        ]
        with open(conf, "w") as f:
            f.write("\n".join(lines) + "\n")
        return [PROFTPD_BIN, "-n", "-q", "-c", conf]

    def command_lines(self, mark=0):
        out = []
        for line in self.log_since(mark).splitlines():
            m = re.match(r"^(.*) -> \d+$", line)
            if m:
                out.append(m.group(1).strip())
        return out


class Pyftpd(Backend):
    """pyftpdlib (Debian's python3-pyftpdlib) under /usr/bin/python3: anonymous with
    write permission, a greeting long enough to come as a multi-line 220."""

    kind = "pyftpdlib"

    def _available(self):
        r = subprocess.run([SYS_PYTHON, "-c", "import pyftpdlib"], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, timeout=30)
        return None if r.returncode == 0 else "python3-pyftpdlib is not installed for %s" % SYS_PYTHON

    def _argv(self):
        return [SYS_PYTHON, THIS_FILE, "--pyftpd-serve", self.host, str(self.port), self.root, self.log]

    def command_lines(self, mark=0):
        out = []
        for line in self.log_since(mark).splitlines():
            m = re.search(r"\] <- (.*)$", line)
            if m:
                out.append(m.group(1).strip())
        return out


class VsftpdV6(H.Vsftpd):
    """The harness's vsftpd, listening on ::1 only (listen_ipv6=YES)."""

    kind = "vsftpd"
    user = H.FTP_USER
    password = H.PASSWORD
    host = "::1"

    def _write_conf(self):
        super()._write_conf()
        with open(self.conf) as f:
            lines = f.read().splitlines()
        out = []
        for ln in lines:
            if ln.startswith(("listen=", "listen_ipv6=", "listen_address=")):
                continue
            out.append(ln)
        out += ["listen=NO", "listen_ipv6=YES", "listen_address6=::1"]
        with open(self.conf, "w") as f:
            f.write("\n".join(out) + "\n")

    def command_lines(self, mark=0):
        return [c for _, c in self.commands_since(mark)]


def _vsftpd_commands(self, mark=0):
    return [c for _, c in self.commands_since(mark)]


def vsftpd(env, name="vs1", host=None):
    """A harness vsftpd with the attributes the topology tests use (kind, user,
    password, command_lines(mark) -> [command line]). host "::1" gives VsftpdV6."""
    if host == "::1":
        b = VsftpdV6(env, name).start()
        env.backends.append(b)
        return b
    b = env.backend(name)
    b.kind = "vsftpd"
    b.user = H.FTP_USER
    b.password = H.PASSWORD
    b.host = H.HOST
    b.command_lines = _vsftpd_commands.__get__(b)
    return b


def start_backend(env, kind, name=None, host=H.HOST):
    """Starts one backend of the given kind; registered with env (stopped by env.close())."""
    name = name or kind.replace("-", "")
    if kind == "vsftpd":
        return vsftpd(env, name, host if host != H.HOST else None)
    cls = {"pure-ftpd": PureFtpd, "proftpd": Proftpd, "pyftpdlib": Pyftpd}[kind]
    b = cls(env, name, host)
    env.backends.append(b)  # stopped by env.close() even if start fails half-way
    return b.start()


def saw(backend, mark, verbs):
    """The backend's logged commands since mark whose verb is in verbs, or None
    when this backend keeps no command log."""
    cmds = backend.command_lines(mark)
    if cmds is None:
        return None
    return [c for c in cmds if c.split(" ", 1)[0].upper() in verbs]


# --------------------------------------------------------------------------
# Clients


class TopoFTPS(H.FTPS):
    """The harness's FTPS (data TLS resumes the control session) with a data mode:
    PASV, EPSV, PORT or EPRT (EPRT also over IPv4: ftplib itself sends EPRT only
    on IPv6 control connections)."""

    data_mode = "PASV"

    def set_data_mode(self, mode):
        self.data_mode = mode
        self.set_pasv(mode in ("PASV", "EPSV"))
        self.use_epsv = mode == "EPSV"

    def makeport(self):
        # ftplib's own, but EPRT also over IPv4 when asked, and the reply kept.
        host = self.sock.getsockname()[0]
        sock = socket.create_server((host, 0), family=self.af, backlog=1)
        port = sock.getsockname()[1]
        if self.af == socket.AF_INET and self.data_mode != "EPRT":
            self.last_port = self.sendport(host, port)
        else:
            self.last_port = self.sendeprt(host, port)
        if self.timeout is not None:
            sock.settimeout(self.timeout)
        return sock


def ftps_connect(host, port, ca, user, password, mode="PASV", prot="P", timeout=30):
    """An explicit-FTPS ftplib session logged in with PBSZ/PROT done; mode as in TopoFTPS."""
    ctx = H.ssl.create_default_context(cafile=ca)
    f = TopoFTPS(context=ctx, timeout=timeout)
    f.set_data_mode(mode)
    f.connect(host, port)
    f.auth()
    f.login(user, password)
    if prot == "P":
        f.prot_p()
    else:
        f.voidcmd("PBSZ 0")  # RFC 4217 §9: PBSZ before PROT
        f.prot_c()
    return f


def ftps_get_put(f, rget, want_size, want_sha, local_put, rput):
    """One download (sha256 checked) and one upload on an open session."""
    n, sha, resp = H.ftplib_get(f, rget)
    H.check_eq((n, sha), (want_size, want_sha), "download %s (size, sha256)" % rget)
    H.check(resp.startswith("226") or resp.startswith("250"), "download final reply %r" % resp)
    resp = H.ftplib_put(f, local_put, rput)
    H.check(resp.startswith("226") or resp.startswith("250"), "upload final reply %r" % resp)


def curl_argv(host, port, ca, user, password, epsv=True, prot="P", timeout=60):
    """curl options for one explicit-FTPS URL set; prot C = TLS control only."""
    argv = ["-sS", "-v", "--connect-timeout", "10", "--max-time", str(timeout),
            "--user", "%s:%s" % (user, password), "--ftp-pasv", "--cacert", ca]
    if not epsv:
        argv.append("--disable-epsv")
    # --ssl-reqd would win over --ftp-ssl-control (curl then uses PROT P).
    argv.append("--ftp-ssl-control" if prot == "C" else "--ssl-reqd")
    return argv


def url(host, port, path):
    return "ftp://%s%s" % (hostport(host, port), path)


def curl_run(host, port, ca, user, password, args, epsv=True, prot="P", prefix=(), timeout=60):
    """One curl process (explicit FTPS, passive) with extra args, e.g. ["-o", local, url]
    or ["-T", local, url]. Returns (CompletedProcess, trace)."""
    argv = list(prefix) + ["curl"] + curl_argv(host, port, ca, user, password, epsv, prot, timeout) + list(args)
    r = H.run_cmd(argv, timeout=timeout + 15)
    return r, r.stderr


def curl_get_put(host, port, ca, user, password, rget, local_get, local_put, rput, epsv=True, prot="P",
                 prefix=(), timeout=60):
    """One curl process, one control connection: download rget to local_get, then
    (--next) upload local_put to rput. Returns (CompletedProcess, trace)."""
    opts = curl_argv(host, port, ca, user, password, epsv, prot, timeout)
    argv = list(prefix) + ["curl"] + opts + ["-o", local_get, url(host, port, rget), "--next"] + opts + \
        ["-T", local_put, url(host, port, rput)]
    r = H.run_cmd(argv, timeout=timeout + 15)
    return r, r.stderr


def lftp_run(host, port, ca, user, password, commands, workdir, passive=True, epsv=False, prot="P",
             prefix=(), timeout=60, extra=()):
    """lftp with a script (explicit FTPS, certificate checked); returns (CompletedProcess, trace)."""
    dbg = os.path.join(workdir, "lftp-debug-%s.log" % os.urandom(4).hex())
    script = os.path.join(workdir, "lftp-%s.script" % os.urandom(4).hex())
    prot_data = "true" if prot == "P" else "false"
    lines = [
        "set cmd:fail-exit yes",
        "set net:max-retries 1",
        "set net:timeout 20",
        "set net:reconnect-interval-base 1",
        "set xfer:clobber on",
        "set xfer:use-temp-file no",
        "set ftp:passive-mode %s" % ("true" if passive else "false"),
        "set ftp:prefer-epsv %s" % ("true" if epsv else "false"),
        "set ftp:fix-pasv-address false",  # use the address in the 227 as given
        "set ftp:ssl-allow true",
        "set ftp:ssl-force true",
        "set ftp:ssl-protect-data %s" % prot_data,
        "set ftp:ssl-protect-list %s" % prot_data,
        "set ssl:ca-file %s" % ca,
        "set ssl:verify-certificate true",
        "set ssl:check-hostname true",
    ] + list(extra) + [
        "debug -o %s -t 9" % dbg,
        "open -u %s,%s ftp://%s" % (user, password, hostport(host, port)),
    ] + list(commands)
    with open(script, "w") as f:
        f.write("\n".join(lines) + "\n")
    env = dict(os.environ)
    env["HOME"] = workdir
    env.pop("LFTP_HOME", None)
    try:
        r = H.run_cmd(list(prefix) + ["lftp", "--norc", "-f", script], timeout=timeout, env=env, cwd=workdir)
    finally:
        try:
            os.unlink(script)
        except OSError:
            pass
    try:
        with open(dbg, "rb") as f:
            trace = f.read().decode("utf-8", "replace")
        os.unlink(dbg)
    except OSError:
        trace = ""
    return r, trace


def trace_sent(trace, verb):
    """lftp (---> VERB) or curl (> VERB) sent this command."""
    return re.search(r"^(?:\S+ \S+ )?(?:---> |> )%s\b" % re.escape(verb), trace, re.M) is not None


def tail(text, n=6):
    return " | ".join(text.strip().splitlines()[-n:])


# --------------------------------------------------------------------------
# pyftpdlib server (run by Pyftpd as a child) and a self-test


def _pyftpd_serve(host, port, root, log):
    import logging
    from pyftpdlib.authorizers import DummyAuthorizer
    from pyftpdlib.handlers import FTPHandler
    from pyftpdlib.servers import FTPServer

    logging.basicConfig(filename=log, level=logging.DEBUG, format="%(asctime)s %(message)s")
    auth = DummyAuthorizer()
    auth.add_anonymous(root, perm="elradfmwMT")

    class Handler(FTPHandler):
        # Over 75 characters: pyftpdlib sends "220-<banner>" then "220 ".
        banner = "pyftpdlib test backend for ftpsgate, anonymous login, uploads to /up welcome here"
        permit_foreign_addresses = False
        permit_privileged_ports = False
        timeout = 600

    Handler.authorizer = auth
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    server = FTPServer((host, int(port)), Handler)
    server.max_cons = 500
    server.max_cons_per_ip = 500
    server.serve_forever(timeout=1.0)


def _selftest():
    suite = H.Suite("backends-selftest")
    env = H.Env.__new__(H.Env)  # no proxy needed: build the parts by hand
    import tempfile
    env.suite = suite
    env.tmp = tempfile.mkdtemp(prefix="ftpsgate-it-backends-")
    os.chmod(env.tmp, 0o755)
    env.backends = []
    env.proxy = None
    try:
        for kind in KINDS:
            def case(kind=kind):
                b = start_backend(env, kind)
                sha = b.add_pub("x.bin", 100000)
                mark = b.log_mark()
                f = ftplib.FTP()
                f.connect(b.host, b.port, timeout=20)
                f.login(b.user, b.password)
                h = hashlib.sha256()
                f.retrbinary("RETR /pub/x.bin", h.update)
                H.check_eq(h.hexdigest(), sha, "%s: download sha256" % kind)
                f.storbinary("STOR /up/y.bin", io.BytesIO(b"y" * 5000))
                f.quit()
                H.check_eq(os.path.getsize(b.up_path("y.bin")), 5000, "%s: stored size" % kind)
                cmds = H.wait_until(lambda: saw(b, mark, ("RETR", "STOR", "QUIT")) or [], 5) \
                    if b.command_lines(mark) is not None else None
                print("   %s %s: commands seen %s" % (kind, b.address, cmds))
            suite.run("backend %s" % kind, case)
    finally:
        for b in env.backends:
            b.stop()
        shutil.rmtree(env.tmp, ignore_errors=True)
    sys.exit(suite.finish())


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "--pyftpd-serve":
        _pyftpd_serve(*sys.argv[2:])
    elif sys.argv[1:] == ["--selftest"]:
        _selftest()
    else:
        sys.stderr.write(__doc__)
        sys.exit(2)
