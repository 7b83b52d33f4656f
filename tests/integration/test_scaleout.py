#!/usr/bin/python3
"""Scale-out behind HAProxy (issue 11, DESIGN.md §8): the shipped deploy/scale-out/ files, run.

Network namespaces this test creates and removes (nettopo.Topology), with the addresses the
shipped files name, so that HAProxy's file and the three ftpsgate configurations run as shipped:
only HAProxy's log target and stats socket path, the certificate paths and the "user" are
replaced (each replacement is checked to find what it replaces):

    client (namespace c) 198.51.100.2
       │
    198.51.100.1  balancer (b): HAProxy on 203.0.113.10; routes 203.0.113.11-13 to the instances
    10.10.0.1 ──┬───────────────────────┬───────────────────────┐      instance network (a bridge)
    ftps1 10.10.0.11           ftps2 10.10.0.12           ftps3 10.10.0.13       one namespace each,
          203.0.113.11               203.0.113.12               203.0.113.13     with its public address
          10.20.0.11 ─────┬──────────10.20.0.12 ────────────────10.20.0.13       backend network (a bridge)
                    legacy (s): vsftpd 10.20.0.21:21, plain FTP

Static checks first: the six configurations pass `ftpsgate --check-config`, both HAProxy files
pass `haproxy -c`, and the two agree (servers, health-check addresses, PROXY v2, passive ranges
distinct and, in data_peer "balancer", forwarded each to its own instance).

Then, in each data_peer mode ("client", then "balancer"):
- 36 sessions, 6 at a time, through HAProxy: curl (explicit and implicit, one invocation with a
  download and an upload), lftp and ftplib (explicit and implicit); every download's and upload's
  sha256 (uploads as stored by vsftpd). Each session's data connections map, by passive port,
  to one instance (and, in "client" mode, to that instance's own address in the 227 reply);
  every instance served sessions, and each one's ftpsgate_sessions_total grew by exactly the
  sessions the clients saw on it; no data connection was refused (ftpsgate_data_peer_refused).
- an instance is killed (SIGKILL, by PID) while 6 ftplib transfers of 32 MiB (downloads and
  uploads) are held in mid-flight on all three: the killed one's sessions end with an error reply
  or a closed connection, never a 226 (nor a timeout); the others' transfers, released after the
  kill, finish with the right sha256. HAProxy's health check marks it DOWN (polled on its stats
  socket), then 12 new sessions all succeed on the other two (HAProxy's session count of the
  dead one stays put; the others' ftpsgate_sessions_total account for all 12).
- the instance is started again: HAProxy marks it UP and it takes new sessions.

Needs root (namespaces) and haproxy (Debian package): fails with the reason otherwise
(FTPSGATE_NO_NETNS=1 skips it); skipped in the harness self-check modes.
"""

import concurrent.futures
import ftplib
import hashlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import harness as H  # noqa: E402
import nettopo as N  # noqa: E402
from harness import Fail, Skip, check, check_eq  # noqa: E402

DEPLOY = os.path.join(N.REPO, "deploy", "scale-out")
MODES = ("client", "balancer")
NAMES = ("ftps1", "ftps2", "ftps3")

CLIENT, CLIENT_GW = "198.51.100.2", "198.51.100.1"
VIP = "203.0.113.10"               # the balancer's public address (frontends)
BAL_SRC = "10.10.0.1"              # the balancer on the instance network ("source")
PUBLIC = {"ftps1": "203.0.113.11", "ftps2": "203.0.113.12", "ftps3": "203.0.113.13"}
MGMT = {"ftps1": "10.10.0.11", "ftps2": "10.10.0.12", "ftps3": "10.10.0.13"}
BACKNET = {"ftps1": "10.20.0.11", "ftps2": "10.20.0.12", "ftps3": "10.20.0.13"}
LEGACY = "10.20.0.21"

# The lines of the shipped HAProxy files the test replaces (and requires to find).
HAP_LOG = "    log /dev/log local0"
HAP_SOCK = "/run/haproxy/admin.sock"
SHIPPED_CERT, SHIPPED_KEY, SHIPPED_USER = "/etc/ftpsgate/fullchain.pem", "/etc/ftpsgate/key.pem", "ftpsgate"

N_SESSIONS = 36          # per mode, through the balancer
PARALLEL = 6
N_AFTER_KILL = 12
N_AFTER_RESTART = 6
HELD = 6                 # transfers held in mid-flight when an instance is killed
BIG = 32 * H.MiB         # larger than every socket buffer on the way, so a held transfer is mid-way
DL_SIZES = (1, 64 * H.KiB + 1, H.MiB + 3, 3 * H.MiB + 5)
WAIT_HEALTH = 60         # bound on HAProxy marking a server DOWN/UP (checks every 2 s, fall/rise 2)


def rng(spec):
    a, b = (int(x) for x in spec.split("-"))
    return a, b


def hostport(s):
    h, p = s.rsplit(":", 1)
    return h, int(p)


# --------------------------------------------------------------------------
# The shipped files


def shipped_config(mode, name):
    with open(os.path.join(DEPLOY, mode, name + ".json")) as f:
        return json.load(f)


def shipped_haproxy(mode):
    with open(os.path.join(DEPLOY, mode, "haproxy.cfg")) as f:
        return f.read()


def instance_config(mode, name, env):
    """The shipped configuration with this machine's certificate, key and user."""
    doc = shipped_config(mode, name)
    tls = doc["tls"]["main"]
    check_eq((tls["cert"], tls["key"]), (SHIPPED_CERT, SHIPPED_KEY), "%s/%s.json: certificate paths" % (mode, name))
    tls["cert"], tls["key"] = env.cert, env.key
    check_eq(doc.get("user"), SHIPPED_USER, "%s/%s.json: user" % (mode, name))
    doc["user"] = H.TEST_USER
    if os.environ.get("FTPSGATE_TEST_WORKERS"):
        doc["workers"] = int(os.environ["FTPSGATE_TEST_WORKERS"])
    return doc


def haproxy_sections(text):
    """{section header: [lines]} of an HAProxy file (comments and blank lines dropped)."""
    out, cur = {}, None
    for raw in text.splitlines():
        ln = raw.split("#", 1)[0].rstrip()
        if not ln.strip():
            continue
        if not ln[0].isspace():
            cur = ln.strip()
            out[cur] = []
        elif cur is not None:
            out[cur].append(ln.strip())
    return out


def servers_of(section_lines):
    """{server name: (address, [options])} of a backend section."""
    out = {}
    for ln in section_lines:
        w = ln.split()
        if w[0] == "server":
            out[w[1]] = (w[2], w[3:])
    return out


class Instance:
    """What one shipped configuration says about its instance."""

    def __init__(self, mode, name):
        self.name = name
        self.doc = shipped_config(mode, name)
        self.listeners = {ln["mode"]: ln for ln in self.doc["listeners"]}
        self.ranges = [rng(ln["passive"]["ports"]) for ln in self.doc["listeners"]]
        self.admin = hostport(self.doc["admin"]["bind"])
        self.announce = {ln["passive"]["announce"] for ln in self.doc["listeners"]}

    def owns(self, port):
        return any(a <= port <= b for a, b in self.ranges)

    def block(self):
        """The instance's whole passive block (its ranges are adjacent)."""
        return min(a for a, _ in self.ranges), max(b for _, b in self.ranges)


def owner(instances, port):
    hits = [i.name for i in instances.values() if i.owns(port)]
    check_eq(len(hits), 1, "instances owning passive port %d" % port)
    return hits[0]


# --------------------------------------------------------------------------
# Static checks


def check_static(s, binary, env):
    def configs_valid():
        for mode in MODES:
            for name in NAMES:
                doc = instance_config(mode, name, env)
                path = os.path.join(env.tmp, "check-%s-%s.json" % (mode, name))
                with open(path, "w") as f:
                    json.dump(doc, f)
                r = H.run_cmd([binary, "--check-config", "--config", path], timeout=30)
                check(r.returncode == 0 and "configuration OK" in r.stdout,
                      "%s/%s.json: --check-config: %s" % (mode, name, (r.stdout + r.stderr)[-500:]))

    s.run("the six shipped ftpsgate configurations pass --check-config", configs_valid)

    def haproxy_valid():
        for mode in MODES:
            r = H.run_cmd([N.Haproxy.BIN, "-c", "-f", os.path.join(DEPLOY, mode, "haproxy.cfg")], timeout=30)
            check_eq(r.returncode, 0, "haproxy -c %s/haproxy.cfg (%s)" % (mode, (r.stdout + r.stderr)[-500:]))

    s.run("both shipped HAProxy files pass haproxy -c", haproxy_valid)

    def agree(mode):
        inst = {n: Instance(mode, n) for n in NAMES}
        sec = haproxy_sections(shipped_haproxy(mode))
        defaults = sec["defaults"]
        check("source %s" % BAL_SRC in defaults, "%s: HAProxy's source address is not %s" % (mode, BAL_SRC))
        # ranges: distinct, the control and admin ports outside every one
        spans = sorted(r for i in inst.values() for r in i.ranges)
        for (a1, b1), (a2, b2) in zip(spans, spans[1:]):
            check(b1 < a2, "%s: passive ranges %d-%d and %d-%d overlap" % (mode, a1, b1, a2, b2))
        for i in inst.values():
            lo, hi = i.block()
            check_eq(sum(b - a + 1 for a, b in i.ranges), hi - lo + 1, "%s: %s's ranges are one block" % (mode, i.name))
            others = [hostport(ln["bind"])[1] for ln in i.doc["listeners"]] + [i.admin[1]]
            check(not any(lo <= p <= hi for p in others), "%s: %s: a listener or admin port in the range" % (
                mode, i.name))
            for ln in i.doc["listeners"]:
                pp = ln["proxy_protocol"]
                check_eq((pp["trusted"], pp["data_peer"]), (["%s/32" % BAL_SRC], mode),
                         "%s: %s %s: proxy_protocol" % (mode, i.name, ln["name"]))
                want = VIP if mode == "balancer" else hostport(ln["bind"])[0]
                check_eq(ln["passive"]["announce"], want, "%s: %s %s: passive.announce" % (mode, i.name, ln["name"]))
        # backends: one server per instance, at its listener, PROXY v2, checked on its admin endpoint
        expl = sec["backend ftps-explicit"]
        check("option httpchk GET /healthz" in expl, "%s: no 'option httpchk GET /healthz'" % mode)
        check(any(ln.startswith("default-server send-proxy-v2") for ln in expl), "%s: no send-proxy-v2" % mode)
        for be, lmode in (("ftps-explicit", "explicit"), ("ftps-implicit", "implicit")):
            srv = servers_of(sec["backend " + be])
            check_eq(sorted(srv), list(NAMES), "%s: servers of %s" % (mode, be))
            for n, (addr, opts) in srv.items():
                check_eq(addr, inst[n].listeners[lmode]["bind"], "%s: %s/%s address" % (mode, be, n))
                if lmode == "explicit":
                    o = dict(zip(opts[1::2], opts[2::2])) if opts and opts[0] == "check" else {}
                    check_eq(opts[0], "check", "%s: %s/%s is not checked" % (mode, be, n))
                    check_eq((o.get("addr", addr.rsplit(":", 1)[0]), int(o.get("port", 0))), inst[n].admin,
                             "%s: %s/%s health check target vs admin.bind" % (mode, be, n))
                else:
                    check_eq(opts, ["track", "ftps-explicit/%s" % n], "%s: %s/%s" % (mode, be, n))
        data = {k: v for k, v in sec.items() if k.startswith("frontend ftps-data-")}
        if mode == "client":
            check_eq(data, {}, "client mode: frontends for passive ranges")
            return
        check_eq(sorted(data), ["frontend ftps-data-%s" % n for n in NAMES], "balancer mode: data frontends")
        for n in NAMES:
            lo, hi = inst[n].block()
            check_eq(data["frontend ftps-data-%s" % n], ["bind %s:%d-%d" % (VIP, lo, hi),
                                                         "default_backend ftps-data-%s" % n],
                     "balancer mode: the frontend of %s's range" % n)
            srv = servers_of(sec["backend ftps-data-%s" % n])
            check_eq(srv, {n: (hostport(inst[n].listeners["explicit"]["bind"])[0], [])},
                     "balancer mode: %s's range goes to %s only, on the dialled port" % (n, n))

    for mode in MODES:
        s.run("data_peer %s: HAProxy file and instance configs agree (servers, checks, ranges)" % mode, agree, mode)


# --------------------------------------------------------------------------
# The network


def build_topology():
    topo = N.Topology("fgso")
    for role in ("c", "b", "s") + NAMES:
        topo.add(role)
    topo.link("c", "c0", CLIENT + "/24", "b", "b0", CLIENT_GW + "/24")
    topo.route("c", "default", "via", CLIENT_GW)
    topo.addr("b", "lo", VIP + "/32")
    topo.sysctl("b", "net.ipv4.ip_forward", 1)
    for role, br, addr in (("b", "bri", BAL_SRC + "/24"), ("s", "brs", LEGACY + "/24")):
        topo.sh(role, [N.IP, "link", "add", br, "type", "bridge"])
        topo.addr(role, br, addr)
        topo.sh(role, [N.IP, "link", "set", br, "up"])
    for k, n in enumerate(NAMES, 1):
        topo.link(n, "i0", MGMT[n] + "/24", "b", "bi%d" % k, None)
        topo.sh("b", [N.IP, "link", "set", "bi%d" % k, "master", "bri"])
        topo.addr(n, "i0", PUBLIC[n] + "/32")
        topo.route(n, "default", "via", BAL_SRC)
        topo.route("b", PUBLIC[n] + "/32", "via", MGMT[n])
        topo.link(n, "s0", BACKNET[n] + "/24", "s", "bs%d" % k, None)
        topo.sh("s", [N.IP, "link", "set", "bs%d" % k, "master", "brs"])
    return topo


class SEnv:
    """Temp dir, certificates (naming every address a client dials) and the client's files."""

    def __init__(self):
        base = H._pick_tmp_base(768 * H.MiB)
        self.tmp = tempfile.mkdtemp(prefix="ftpsgate-it-scaleout-", dir=base)
        os.chmod(self.tmp, 0o755)
        self.client_dir = os.path.join(self.tmp, "client")
        os.makedirs(self.client_dir)
        self.certs = H.Certs(os.path.join(self.tmp, "certs"))
        sans = ",".join(["DNS:localhost"] + ["IP:%s" % a for a in [VIP] + list(PUBLIC.values())])
        self.cert, self.key = self.certs.issue("gate", "ftpsgate scale-out test", sans=sans)
        self.ca = self.certs.ca

    def close(self):
        if os.environ.get("FTPSGATE_KEEP_TMP") == "1":
            print("(kept %s)" % self.tmp, flush=True)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)


class Gate(N.NsProxy):
    """One ftpsgate instance with its shipped configuration (adapted by instance_config)."""

    def __init__(self, env, topo, mode, name, binary):
        super().__init__(env, topo, name, binary, name="%s-%s" % (mode, name))
        self.doc = instance_config(mode, name, env)
        self.admin = hostport(self.doc["admin"]["bind"])

    def config(self):
        return self.doc

    def metrics(self):
        """/metrics of this instance, read from the balancer's namespace (the management network)."""
        with self.topo.inside("b"):
            c = http.client.HTTPConnection(self.admin[0], self.admin[1], timeout=10)
            try:
                c.request("GET", "/metrics")
                r = c.getresponse()
                body = r.read().decode()
                check_eq(r.status, 200, "%s /metrics status" % self.name)
            finally:
                c.close()
        out = {}
        for ln in body.splitlines():
            if ln and not ln.startswith("#"):
                k, v = ln.rsplit(" ", 1)
                out[k] = int(float(v))
        return out


class ShippedHaproxy:
    """haproxy -db with a shipped file: its log to stderr and its stats socket in our temp dir."""

    def __init__(self, env, topo, mode):
        self.topo = topo
        self.mode = mode
        self.sock = os.path.join(env.tmp, "haproxy-%s.sock" % mode)
        self.conf = os.path.join(env.tmp, "haproxy-%s.cfg" % mode)
        self.log = os.path.join(env.tmp, "haproxy-%s.log" % mode)
        text = shipped_haproxy(mode)
        check_eq(text.count(HAP_LOG + "\n"), 1, "%s/haproxy.cfg: lines %r" % (mode, HAP_LOG))
        check_eq(text.count(HAP_SOCK), 1, "%s/haproxy.cfg: mentions of %s" % (mode, HAP_SOCK))
        text = text.replace(HAP_LOG + "\n", "    log stderr format raw local0\n").replace(HAP_SOCK, self.sock)
        with open(self.conf, "w") as f:
            f.write(text)
        self.proc = None

    def start(self):
        self.proc = self.topo.spawn("b", [N.Haproxy.BIN, "-db", "-f", self.conf], self.log)
        if not self.topo.wait_listening("b", 21, 15, self.proc):
            raise RuntimeError("haproxy did not listen; log: %s" % H.tail_file(self.log, 15))
        return self

    def stop(self):
        if self.proc is not None:
            H.stop_process(self.proc, signal.SIGTERM, 10)

    def stat(self):
        """{(proxy, server): {column: value}} from `show stat` on the stats socket."""
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(10)
        try:
            s.connect(self.sock)
            s.sendall(b"show stat\n")
            data = b""
            while True:
                b = s.recv(65536)
                if not b:
                    break
                data += b
        finally:
            s.close()
        lines = data.decode(errors="replace").splitlines()
        check(lines and lines[0].startswith("# "), "haproxy show stat: %r" % data[:200])
        cols = lines[0][2:].split(",")
        out = {}
        for ln in lines[1:]:
            if ln.strip():
                row = dict(zip(cols, ln.split(",")))
                out[(row["pxname"], row["svname"])] = row
        return out

    def wait_status(self, name, want, timeout=WAIT_HEALTH):
        """Polls the stats socket until the server (explicit, and the implicit one that tracks it)
        shows status `want`; returns the seconds it took, or fails."""
        t0 = time.monotonic()

        def ok():
            st = self.stat()
            return all(st[(be, name)]["status"] == want for be in ("ftps-explicit", "ftps-implicit"))
        if H.wait_until(ok, timeout, step=0.2) is not True:
            st = self.stat()
            raise Fail("haproxy did not mark %s %s within %d s (status %s); log: %s" % (
                name, want, timeout, st[("ftps-explicit", name)]["status"], H.tail_file(self.log, 8)))
        return time.monotonic() - t0

    def check_status(self, name):
        """HAProxy's last health check result of the server: L7OK (GET /healthz answered 200),
        L4CON (connection refused), ..."""
        return self.stat()[("ftps-explicit", name)]["check_status"]

    def stot(self, name):
        st = self.stat()
        return sum(int(st[(be, name)]["stot"] or 0) for be in ("ftps-explicit", "ftps-implicit"))


# --------------------------------------------------------------------------
# Client sessions, in the client's namespace


class Dest:
    def __init__(self, port, ca, implicit):
        self.host, self.port, self.ca, self.implicit, self.tls = VIP, port, ca, implicit, True

    def url(self, path):
        return "%s://%s:%d%s" % ("ftps" if self.implicit else "ftp", self.host, self.port, path)


class Rec:
    """ftplib FTPS that records every passive reply (address, port)."""

    def makepasv(self):
        host, port = super().makepasv()
        self.pasv_seen.append((host, port))
        return host, port


class RecFTPS(Rec, H.FTPS):
    pass


class RecImplicitFTPS(Rec, H.ImplicitFTPS):
    pass


_PASV_RX = re.compile(r"(?:^< |<--- )(?:227 [^(]*\((\d+,\d+,\d+,\d+),(\d+),(\d+)\)|229 [^(]*\(\|\|\|(\d+)\|\))", re.M)


def pasv_in_trace(trace, control_host):
    """[(address, port)] of the 227/229 replies in a curl -v or lftp debug trace."""
    out = []
    for m in _PASV_RX.finditer(trace):
        if m.group(1):
            out.append((m.group(1).replace(",", "."), int(m.group(2)) * 256 + int(m.group(3))))
        else:
            out.append((control_host, int(m.group(4))))
    return out


class Run:
    """One mode's clients: sessions through the balancer, each checked end to end."""

    def __init__(self, mode, env, topo, vs, instances, files):
        self.mode = mode
        self.env = env
        self.topo = topo
        self.vs = vs
        self.inst = instances
        self.files = files            # size -> (remote path, sha256)
        self.expl = Dest(21, env.ca, False)
        self.impl = Dest(990, env.ca, True)
        self.n = 0
        self.lock = threading.Lock()

    def uniq(self, what):
        with self.lock:
            self.n += 1
            return "%s-%s-%d" % (self.mode, what, self.n)

    def client_mode(self):
        return self.mode == "client"

    def upload_file(self, what, size):
        name = self.uniq(what) + ".bin"
        path = os.path.join(self.env.client_dir, name)
        return name, path, H.make_file(path, size)

    def attribute(self, seen, what):
        """The one instance a session's passive replies point to (and, client mode, its address)."""
        check(seen, "%s: no passive reply seen" % what)
        owners = {owner(self.inst, port) for _, port in seen}
        check_eq(len(owners), 1, "%s: instances of one session's data connections %s" % (what, seen))
        name = owners.pop()
        want = PUBLIC[name] if self.client_mode() else VIP
        for host, _ in seen:
            check_eq(host, want, "%s: address of the passive reply (%s)" % (what, name))
        return name

    # -- the kinds of session
    def curl(self, k, implicit):
        d = self.impl if implicit else self.expl
        size = DL_SIZES[k % len(DL_SIZES)]
        rpath, sha = self.files[size]
        out = os.path.join(self.env.client_dir, self.uniq("curl-dl"))
        up_name, up_path, up_sha = self.upload_file("curl-up", 1000 + (k * 104729) % (2 * H.MiB))
        opts = ["--user", "%s:%s" % (H.FTP_USER, H.PASSWORD), "--ftp-pasv", "--ssl-reqd", "--cacert", d.ca,
                "--connect-timeout", "10", "--max-time", "90"]
        if self.client_mode():
            opts += ["--disable-epsv", "--no-ftp-skip-pasv-ip"]  # PASV, and dial its address
        elif k % 2:
            opts += ["--disable-epsv"]  # PASV through the balancer too
        # One invocation, one control connection: --next keeps curl's connection for the upload.
        argv = (["curl", "-sS", "-v"] + opts + ["-o", out, d.url(rpath), "--next"] + opts
                + ["-T", up_path, d.url("/up/" + up_name)])
        with self.topo.inside("c"):
            r = H.run_cmd(argv, timeout=120)
        trace = r.stderr
        check_eq(r.returncode, 0, "curl exit status (%s)" % trace[-600:])
        check_eq(len(re.findall(r"^\* Re-using existing connection", trace, re.M)), 1,
                 "curl: the upload re-used the download's control connection")
        got = (os.path.getsize(out), H.sha256_file(out))
        os.unlink(out)
        check_eq(got, (size, sha), "curl download: size and sha256")
        H.check_stored(self.vs, up_name, os.path.getsize(up_path), up_sha, "curl upload")
        os.unlink(up_path)
        return self.attribute(pasv_in_trace(trace, VIP), "curl")

    def lftp(self, k):
        size = DL_SIZES[k % len(DL_SIZES)]
        rpath, sha = self.files[size]
        out = os.path.join(self.env.client_dir, self.uniq("lftp-dl"))
        up_name, up_path, up_sha = self.upload_file("lftp-up", 3000 + (k * 7919) % (2 * H.MiB))
        cmds = ["get %s -o %s" % (rpath, out), "put %s -o /up/%s" % (up_path, up_name)]
        with self.topo.inside("c"):
            r, trace = H.lftp(self.expl, cmds, self.env.client_dir, epsv=not self.client_mode(), timeout=120)
        check_eq(r.returncode, 0, "lftp exit status (stderr: %s)" % r.stderr[-500:])
        got = (os.path.getsize(out), H.sha256_file(out))
        os.unlink(out)
        check_eq(got, (size, sha), "lftp download: size and sha256")
        H.check_stored(self.vs, up_name, os.path.getsize(up_path), up_sha, "lftp upload")
        os.unlink(up_path)
        return self.attribute(pasv_in_trace(trace, VIP), "lftp")

    def ftplib(self, k, implicit):
        size = DL_SIZES[k % len(DL_SIZES)]
        rpath, sha = self.files[size]
        up_name, up_path, up_sha = self.upload_file("ftplib-up", 500 + (k * 65537) % (2 * H.MiB))
        epsv = not self.client_mode() and k % 2 == 0
        with self.topo.inside("c"):
            f = H.ftplib_connect(self.impl if implicit else self.expl, epsv=epsv, timeout=60,
                                 cls=RecImplicitFTPS if implicit else RecFTPS)
            f.pasv_seen = []
            try:
                n, got, resp = H.ftplib_get(f, rpath)
                check(resp.startswith("226"), "ftplib RETR final reply %r" % resp)
                check_eq((n, got), (size, sha), "ftplib download: size and sha256")
                resp = H.ftplib_put(f, up_path, "/up/" + up_name)
                check(resp.startswith("226"), "ftplib STOR final reply %r" % resp)
            finally:
                H.quit_quietly(f)
        H.check_stored(self.vs, up_name, os.path.getsize(up_path), up_sha, "ftplib upload")
        os.unlink(up_path)
        return self.attribute(f.pasv_seen, "ftplib")

    def session(self, k):
        kinds = (lambda: self.curl(k, False), lambda: self.lftp(k), lambda: self.ftplib(k, False),
                 lambda: self.curl(k, True), lambda: self.ftplib(k, True))
        return kinds[k % len(kinds)]()

    def sessions(self, count, parallel, first=0):
        """Runs `count` sessions, `parallel` at a time; fails naming each failure; returns
        {instance: sessions it served, by the clients' view}."""
        per, errors = {n: 0 for n in NAMES}, []
        with concurrent.futures.ThreadPoolExecutor(max_workers=parallel) as pool:
            futs = {pool.submit(self.session, first + k): first + k for k in range(count)}
            for fut in concurrent.futures.as_completed(futs, timeout=600):
                try:
                    per[fut.result()] += 1
                except Exception as e:  # noqa: BLE001 - each failure is reported
                    errors.append("session %d: %s: %s" % (futs[fut], type(e).__name__, e))
        check(not errors, "%d of %d sessions failed: %s" % (len(errors), count, "; ".join(errors[:4])))
        return per


# --------------------------------------------------------------------------
# Transfers held in mid-flight while an instance is killed


class Held:
    """An ftplib transfer of BIG bytes that stops, after its first chunk, until `go` is set."""

    def __init__(self, run, k, go):
        self.run = run
        self.k = k
        self.upload = k % 2 == 1
        self.go = go
        self.ready = threading.Event()
        self.instance = None
        self.outcome = None       # ("226", reply) or ("error", exception)
        self.got = None           # download: (bytes, sha256)
        self.up_name = None

    def _mark(self, f):
        if not self.ready.is_set():
            self.instance = self.run.attribute(f.pasv_seen, "held transfer %d" % self.k)
            self.ready.set()
            self.go.wait(120)

    def __call__(self):
        r = self.run
        epsv = not r.client_mode() and self.k % 4 < 2
        f = None
        with r.topo.inside("c"):
            try:
                f = H.ftplib_connect(r.expl, epsv=epsv, timeout=60, cls=RecFTPS)
                f.pasv_seen = []
                if self.upload:
                    self.up_name = r.uniq("held-up") + ".bin"
                    resp = f.storbinary("STOR /up/" + self.up_name, HeldReader(r.files["upload-big"][2], self, f),
                                        blocksize=256 * H.KiB)
                else:
                    h, n = hashlib.sha256(), [0]

                    def cb(b):
                        h.update(b)
                        n[0] += len(b)
                        self._mark(f)
                    try:
                        resp = f.retrbinary("RETR " + r.files[BIG][0], cb, blocksize=64 * H.KiB)
                    finally:
                        self.got = (n[0], h.hexdigest())
                self.outcome = ("226" if resp.startswith("226") else "other", resp)
            except Exception as e:  # noqa: BLE001 - judged by the test
                self.outcome = ("error", e)
            finally:
                if f is not None:
                    H.quit_quietly(f)
                self.ready.set()  # also when it ended before the hold point (then instance is None)


class HeldReader:
    """The upload's source file, read by ftplib: stops before the second chunk until `go`."""

    def __init__(self, path, held, f):
        self.fp = open(path, "rb")
        self.held = held
        self.f = f
        self.reads = 0

    def read(self, n):
        self.reads += 1
        if self.reads == 2:
            self.held._mark(self.f)
        b = self.fp.read(n)
        if not b:
            self.fp.close()
        return b


def clean_failure(outcome):
    """None when a killed instance's session ended cleanly, else what was wrong."""
    kind, what = outcome
    if kind == "226":
        return "got %r from a killed instance" % what
    if kind == "other":
        return "final reply %r" % what
    if isinstance(what, TimeoutError):
        return "timed out (%s): neither an error reply nor a closed connection" % what
    if isinstance(what, (EOFError, OSError, ftplib.Error)):
        return None
    return "unexpected %s: %s" % (type(what).__name__, what)


# --------------------------------------------------------------------------


def run_mode(s, mode, env, topo, vs, binary, files):
    inst = {n: Instance(mode, n) for n in NAMES}
    gates = {}
    hap = None

    def tails():
        for n, g in gates.items():
            print("     --- %s (%s, alive=%s):" % (n, g.log, g.alive()))
            for line in H.tail_file(g.log, 8).splitlines():
                print("     | " + line[:300])
        if hap is not None:
            print("     --- haproxy (%s):" % hap.log)
            for line in H.tail_file(hap.log, 8).splitlines():
                print("     | " + line[:300])

    s.on_fail.append(tails)
    try:
        def start():
            nonlocal hap
            for n in NAMES:
                gates[n] = Gate(env, topo, mode, n, binary).start()
            hap = ShippedHaproxy(env, topo, mode)
            hap.start()
            for n in NAMES:
                hap.wait_status(n, "UP")
                # UP by the check on its admin endpoint (GET /healthz answered 200)
                check_eq(hap.check_status(n), "L7OK", "haproxy's health check of %s" % n)

        if not s.run("data_peer %s: three instances and HAProxy (the shipped files) start; all UP" % mode, start):
            return
        run = Run(mode, env, topo, vs, inst, files)

        def load():
            before = {n: gates[n].metrics() for n in NAMES}
            marks = {n: gates[n].log_mark() for n in NAMES}
            per = run.sessions(N_SESSIONS, PARALLEL)
            after = {n: gates[n].metrics() for n in NAMES}
            got = {n: after[n]["ftpsgate_sessions_total"] - before[n]["ftpsgate_sessions_total"] for n in NAMES}
            print("     sessions per instance: clients saw %s, ftpsgate_sessions_total grew %s" % (per, got),
                  flush=True)
            check(all(per[n] > 0 for n in NAMES), "an instance served no session: %s" % per)
            check_eq(got, per, "ftpsgate_sessions_total per instance vs the sessions the clients saw there")
            for n in NAMES:
                check_eq(after[n]["ftpsgate_data_peer_refused"], 0, "%s: ftpsgate_data_peer_refused" % n)
                check_eq(after[n]["ftpsgate_transfers_failed"], 0, "%s: ftpsgate_transfers_failed" % n)
                check_eq(after[n]["ftpsgate_transfers_ok"] - before[n]["ftpsgate_transfers_ok"], 2 * per[n],
                         "%s: ftpsgate_transfers_ok (a download and an upload per session)" % n)
                # every session came with HAProxy's PROXY v2 header naming the real client
                rx = r" PROXY v2 header from %s:\d+: client %s:\d+" % (re.escape(BAL_SRC), re.escape(CLIENT))
                pp = re.findall(rx, gates[n].log_since(marks[n]))
                check_eq(len(pp), per[n], "%s: sessions logged with a PROXY v2 header from HAProxy" % n)

        s.run("data_peer %s: %d sessions (curl, lftp, ftplib; explicit, implicit), %d at a time, through HAProxy: "
              "sha256 of every transfer; every instance served sessions, as its metrics count them"
              % (mode, N_SESSIONS, PARALLEL), load)

        victim = {}

        def kill_mid_run():
            vs_mark = vs.log_mark()
            go = threading.Event()
            held = [Held(run, k, go) for k in range(HELD)]
            threads = [threading.Thread(target=h, daemon=True, name="held-%d" % h.k) for h in held]
            try:
                for t in threads:
                    t.start()
                for h in held:
                    check(h.ready.wait(60) and h.instance is not None,
                          "held transfer %d never got going (outcome %s)" % (h.k, h.outcome))
                on = {n: [h for h in held if h.instance == n] for n in NAMES}
                # the victim: an instance holding a download and an upload, if one does
                name = max(NAMES, key=lambda n: (len({h.upload for h in on[n]}), len(on[n])))
                check(on[name] and len(on[name]) < HELD, "held transfers per instance: %s" % {
                    n: len(v) for n, v in on.items()})
                victim["name"] = name
                g = gates[name]
                pid = g.proc.pid
                os.kill(pid, signal.SIGKILL)
                victim["killed_at"] = time.monotonic()
                g.proc.wait(10)
                print("     killed %s (pid %d) holding %d transfers; the others hold %d" % (
                    name, pid, len(on[name]), HELD - len(on[name])), flush=True)
            finally:
                go.set()
                for t in threads:
                    t.join(120)
            check(not any(t.is_alive() for t in threads), "a held transfer did not finish")
            wrong = []
            for h in held:
                what = "held %s %d on %s" % ("upload" if h.upload else "download", h.k, h.instance)
                if h.instance == name:
                    why = clean_failure(h.outcome)
                    if why:
                        wrong.append("%s: %s" % (what, why))
                elif h.outcome[0] != "226":
                    wrong.append("%s failed: %r" % (what, h.outcome[1]))
                elif h.upload:
                    try:
                        H.check_stored(vs, h.up_name, BIG, files["upload-big"][1], what)
                    except Fail as e:
                        wrong.append(str(e))
                elif h.got != (BIG, files[BIG][1]):
                    wrong.append("%s: got %s bytes, sha256 %s" % (what, h.got[0], h.got[1]))
            for h in held:
                print("     %s %d on %s: %s" % ("upload" if h.upload else "download", h.k, h.instance,
                                              h.outcome[0] if h.outcome[0] != "error" else
                                              "%s: %s" % (type(h.outcome[1]).__name__, h.outcome[1])), flush=True)
                if h.upload and h.instance == name:
                    # The legacy server must not take it as complete: the killed process's backend
                    # data connection is reset by the kernel (SO_LINGER {1, 0} while an upload runs).
                    seen = vs.wait_transfer("/up/" + h.up_name, vs_mark, timeout=5)
                    told = "%s UPLOAD, %d of %d bytes" % ("OK" if seen[0] else "FAIL", seen[3], BIG) if seen else "-"
                    print("       vsftpd's log for it: %s" % told, flush=True)
                    if seen and seen[0]:
                        wrong.append("upload %d on the killed %s: vsftpd took it as complete (%s)" % (
                            h.k, name, told))
            check(not wrong, "; ".join(wrong))

        if not s.run("data_peer %s: SIGKILL of an instance mid-transfer: its sessions end with an error or a "
                     "closed connection, never a 226; the other instances' transfers finish, sha256 right"
                     % mode, kill_mid_run):
            return
        name = victim["name"]
        others = [n for n in NAMES if n != name]

        def after_kill():
            hap.wait_status(name, "DOWN")
            why = hap.check_status(name)
            print("     haproxy showed %s DOWN (check %s) %.1f s after the kill" % (
                name, why, time.monotonic() - victim["killed_at"]), flush=True)
            check(why.startswith("L4") or why.startswith("L7"), "DOWN without a failed check: %s" % why)
            stot = hap.stot(name)
            before = {n: gates[n].metrics()["ftpsgate_sessions_total"] for n in others}
            per = run.sessions(N_AFTER_KILL, 4, first=100)
            got = {n: gates[n].metrics()["ftpsgate_sessions_total"] - before[n] for n in others}
            check_eq(per[name], 0, "sessions the clients saw on the killed %s" % name)
            check_eq(got, {n: per[n] for n in others}, "ftpsgate_sessions_total of the others vs the clients' view")
            check_eq(hap.stot(name), stot, "haproxy's session count of the DOWN %s" % name)

        if not s.run("data_peer %s: HAProxy's check marks the killed instance DOWN (stats socket); %d new sessions "
                     "all go to the other two, sha256 right" % (mode, N_AFTER_KILL), after_kill):
            return

        def restart():
            gates[name] = Gate(env, topo, mode, name, binary).start()
            hap.wait_status(name, "UP")
            per = run.sessions(N_AFTER_RESTART, 3, first=200)
            got = gates[name].metrics()["ftpsgate_sessions_total"]
            check(per[name] > 0, "the restarted %s took no session: %s" % (name, per))
            check_eq(got, per[name], "the restarted %s: ftpsgate_sessions_total vs the clients' view" % name)

        s.run("data_peer %s: the instance started again is marked UP and takes new sessions" % mode, restart)

        def clean_stop():
            for n in NAMES:
                gates[n].stop_checked()

        s.run("data_peer %s: every instance exits 0 on SIGTERM, no sanitizer report, no password logged" % mode,
              clean_stop)
    finally:
        s.on_fail.remove(tails)
        if hap is not None:
            hap.stop()
        for g in gates.values():
            g.kill()


def main():
    s = H.Suite("scaleout")
    env = topo = None
    try:
        why = None
        if H.SELFCHECK:
            why = "tests ftpsgate itself (self-check mode %s)" % H.SELFCHECK
        elif os.environ.get("FTPSGATE_NO_NETNS") == "1":
            why = "FTPSGATE_NO_NETNS=1"
        if why:
            def skip():
                raise Skip(why)
            s.run("scale-out behind HAProxy in network namespaces", skip)
            sys.exit(s.finish())
        binary = os.environ.get("FTPSGATE_BIN", "")
        if not binary or not os.access(binary, os.X_OK):
            s.fail_setup("environment", RuntimeError("FTPSGATE_BIN (%r) is not an executable" % binary))
            sys.exit(s.finish())
        binary = os.path.abspath(binary)
        missing = N.available()
        if not missing and not N.Haproxy.available():
            missing = "haproxy is not installed (tests/setup-deps.sh installs the Debian package)"
        if missing:
            s.fail_setup("environment", RuntimeError("%s; this test needs it (FTPSGATE_NO_NETNS=1 skips it)"
                                                     % missing))
            sys.exit(s.finish())
        try:
            env = SEnv()
            check_static(s, binary, env)
            topo = build_topology()
            vs = N.NsVsftpd(env, "legacy", topo, "s", LEGACY).start()
            files = {}
            for size in DL_SIZES + (BIG,):
                name = "so-%d.bin" % size
                files[size] = ("/pub/" + name, vs.add_pub(name, size))
            big_up = os.path.join(env.tmp, "upload-big.bin")
            files["upload-big"] = (None, H.make_file(big_up, BIG), big_up)
        except Exception as e:  # noqa: BLE001
            s.fail_setup("namespaces, certificates and vsftpd", e)
            sys.exit(s.finish())
        for mode in MODES:
            try:
                run_mode(s, mode, env, topo, vs, binary, files)
            except Exception as e:  # noqa: BLE001 - a mode's setup error; the next mode starts clean
                s.fail_setup("data_peer %s" % mode, e)
    finally:
        if topo is not None:
            topo.close()
            left = [n for n in topo.ns.values() if os.path.exists("/run/netns/" + n)]
            if left:
                print("FAIL teardown: namespaces left: %s" % left, flush=True)
                s.failed += 1
        if env is not None:
            env.close()
    sys.exit(s.finish())


if __name__ == "__main__":
    main()
