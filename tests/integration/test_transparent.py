#!/usr/bin/python3
"""Transparent deployment (issue 6), in network namespaces this test creates and removes.

Topology (namespace names carry a random suffix; nettopo.Topology):

    client 10.77.1.2 --- rc0 10.77.1.1 [router: ftpsgate, nftables/iptables] rs0 10.77.2.1 --- server
                                       rb0 10.77.5.1                                            10.77.2.10 vsftpd :21
                                        |                                                       10.77.3.10 vsftpd :21
                                  balancer 10.77.5.2 (haproxy)                                     (outside backend.allow)

The server's vsftpd is plain FTP and knows nothing of TLS. The client always dials the
SERVER's address (21 explicit FTPS, 990 implicit FTPS); the router diverts it to ftpsgate
with the rules of deploy/transparent-setup.sh (deploy/TRANSPARENT.md lists them):

  A. REDIRECT (nftables, then iptables, and a DNAT variant): curl, lftp and ftplib, explicit and implicit,
     passive (PASV, EPSV) and active (lftp, ftplib), downloads and uploads, sha256 checked;
     227 replies name the server's address; the log names the original destination and the
     backend. A diverted connection to 10.77.3.10 (outside backend.allow) is refused and
     logged and the SYN counter in front of that vsftpd stays 0; a connection to the
     listener itself (not diverted) is refused.
     PROXY protocol on the same ftpsgate: v1 and v2 from a scripted sender and from haproxy
     (send-proxy, send-proxy-v2); the real client in the log and for the data peer check
     (data_peer "client": a data connection from the balancer is refused) and PORT;
     data_peer "balancer" with haproxy forwarding the passive range; an untrusted sender,
     a garbled and a missing header are refused; max_sessions_per_ip and the passive.announce
     map use the real client.
  B. TPROXY (nftables, then iptables), "transparent": true: the same transfers; active data
     connections reach the client from the server's address.
  C. Source-IP transparency ("source": "client") with TPROXY and with REDIRECT: vsftpd's own
     log names only the client's address (10.77.1.2), for the control connection and the
     transfers (vsftpd refuses data connections from another IP than the control one);
     also with backend data_mode "active" (vsftpd connects to the client's address), and with
     "user" (root dropped, CAP_NET_ADMIN kept).
  D. Without CAP_NET_ADMIN (and CAP_NET_RAW) a transparent or source-client listener fails
     at start, naming CAP_NET_ADMIN; transparent-setup.sh refuses bad arguments, --ipv6.

Needs root (namespaces, nftables): fails with the reason otherwise (FTPSGATE_NO_NETNS=1 skips
it); skipped in the harness self-check modes.
"""

import ftplib
import os
import re
import shutil
import socket
import ssl
import sys
import tempfile

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import harness as H  # noqa: E402
import nettopo as N  # noqa: E402
from harness import Fail, Skip, check, check_eq  # noqa: E402

CLIENT = "10.77.1.2"
R_CLIENT = "10.77.1.1"       # router, client side
R_SERVER = "10.77.2.1"       # router, server side
R_BAL = "10.77.5.1"          # router, balancer side
SERVER = "10.77.2.10"        # the legacy FTP server
OUTSIDE = "10.77.3.10"       # a second server address, not in backend.allow
BAL = "10.77.5.2"            # the L4 balancer (haproxy)
ALLOW = ["10.77.2.0/24"]

# ftpsgate's listener ports in the router (what the diversion rules point at)
P_EXPL, P_IMPL = 2121, 2990
P_PP1, P_PP2, P_PP3 = 2300, 2301, 2302           # PROXY protocol listeners on 10.77.5.1
PAS_EXPL, PAS_IMPL = (40000, 40009), (40100, 40109)
PAS_PP1, PAS_PP2, PAS_PP3 = (40300, 40309), (40310, 40319), (40400, 40409)
PAS_SRC2 = (40500, 40509)
P_SRC2 = 2400                                    # non-intercepting listener with source client
# haproxy frontends in the balancer namespace
H_V1, H_V2, H_V2_IMPL, H_BAL = 2100, 2101, 2102, 2103

SMALL = 64 * H.KiB + 1
BIG = 3 * H.MiB + 7


def rng(r):
    return "%d-%d" % r


def curl_why(trace):
    """The last server reply and curl's own error line, for a failure message."""
    replies = re.findall(r"^< (\d{3} .*)$", trace, re.M)
    err = re.findall(r"^curl: \(\d+\).*$", trace, re.M)
    return "last reply %r; %s" % (replies[-1] if replies else None, err[-1] if err else "no curl error line")


class Dest:
    """Where a client connects (what harness.curl/lftp/ftplib_connect need)."""

    def __init__(self, host, port, ca, implicit=False):
        self.host = host
        self.port = port
        self.ca = ca
        self.implicit = implicit
        self.tls = True

    def url(self, path):
        return "%s://%s:%d%s" % ("ftps" if self.implicit else "ftp", self.host, self.port, path)


class _Rec:
    """Records the peer address of every data connection (active: who connected to us)."""

    def ntransfercmd(self, cmd, rest=None):
        conn, size = super().ntransfercmd(cmd, rest)
        self.data_peers.append(conn.getpeername()[0])
        return conn, size


class RecFTPS(_Rec, H.FTPS):
    pass


class RecImplicitFTPS(_Rec, H.ImplicitFTPS):
    pass


class PortFTPS(N.PPFTPS):
    """PROXY-header FTPS whose PORT names port_host (the real client) instead of the local
    address of the control socket (the balancer's)."""

    port_host = None

    def makeport(self):
        sock = socket.create_server(("", 0), family=socket.AF_INET, backlog=1)
        port = sock.getsockname()[1]
        host = self.port_host or self.sock.getsockname()[0]
        if self.timeout is not None:
            sock.settimeout(self.timeout)
        try:
            self.sendport(host, port)
        except Exception:
            sock.close()
            raise
        return sock


class TEnv:
    """Temp dir and certificates (what harness.Vsftpd and nettopo.NsProxy need from an env);
    the certificate names every address a client may dial."""

    def __init__(self, tag, addresses, min_free=512 * H.MiB):
        base = H._pick_tmp_base(min_free)
        self.tmp = tempfile.mkdtemp(prefix="ftpsgate-it-%s-" % tag, dir=base)
        os.chmod(self.tmp, 0o755)
        self.client_dir = os.path.join(self.tmp, "client")
        os.makedirs(self.client_dir)
        self.certs = H.Certs(os.path.join(self.tmp, "certs"))
        sans = ",".join(["DNS:localhost"] + ["IP:%s" % a for a in addresses])
        self.cert, self.key = self.certs.issue("gate", "ftpsgate %s test" % tag, sans=sans)
        self.ca = self.certs.ca

    def close(self):
        if os.environ.get("FTPSGATE_KEEP_TMP") == "1":
            print("(kept %s)" % self.tmp, flush=True)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)


def build_topology():
    t = N.Topology("fg6")
    for role in ("c", "r", "s", "b"):
        t.add(role)
    t.link("r", "rc0", R_CLIENT + "/24", "c", "c0", CLIENT + "/24")
    t.link("r", "rs0", R_SERVER + "/24", "s", "s0", SERVER + "/24")
    t.link("r", "rb0", R_BAL + "/24", "b", "b0", BAL + "/24")
    t.addr("s", "s0", OUTSIDE + "/24")
    t.route("c", "default", "via", R_CLIENT)
    t.route("s", "default", "via", R_SERVER)
    t.route("b", "default", "via", R_BAL)
    t.route("r", "10.77.3.0/24", "via", SERVER)
    t.sysctl("r", "net.ipv4.ip_forward", 1)
    # A SYN counter in front of the vsftpd that is outside backend.allow: "nothing connected".
    t.nft("s", "table inet fgcount {\n"
               "  counter outside_syn { }\n"
               "  chain input { type filter hook input priority 0; policy accept;\n"
               "    ip daddr %s tcp dport 21 tcp flags & (syn|ack) == syn counter name outside_syn\n"
               "  }\n"
               "}\n" % OUTSIDE)
    return t


def outside_syns(topo):
    r = topo.sh("s", ["nft", "list", "counter", "inet", "fgcount", "outside_syn"])
    m = re.search(r"packets (\d+)", r.stdout)
    return int(m.group(1)) if m else -1


def setup_rules(topo, *args):
    """deploy/transparent-setup.sh in the router namespace."""
    r = topo.sh("r", ["bash", N.SETUP_SCRIPT] + list(args), check=False, timeout=30)
    if r.returncode != 0:
        raise Fail("transparent-setup.sh %s: exit %d: %s%s" % (" ".join(args), r.returncode, r.stdout[-800:],
                                                                r.stderr[-800:]))
    return r


def remove_rules(topo):
    setup_rules(topo, "--remove")
    if shutil.which("conntrack"):
        topo.sh("r", ["conntrack", "-F"], check=False, timeout=10)


def intercept_listener(name, port, mode, passive, transparent=False, backend_port=None, source=None,
                       data_mode="passive"):
    ln = {
        "name": name,
        "bind": "0.0.0.0:%d" % port,
        "mode": mode,
        "tls": "main",
        "backend": {"address": "original-destination", "allow": ALLOW, "data_mode": data_mode},
        "passive": {"ports": rng(passive)},
        "policy": {"login_requires_tls": True, "data_protection": "private"},
    }
    if backend_port:
        ln["backend"]["port"] = backend_port
    if source:
        ln["backend"]["source"] = source
    if transparent:
        ln["transparent"] = True
    return ln


def source_ip_listeners(tag, direct_bind, server_control, ports=(P_EXPL, P_IMPL),
                        passive=(PAS_EXPL, PAS_IMPL, PAS_SRC2), make_intercept=None):
    """The listeners of the source-IP phases: intercepting explicit and implicit ones (ports,
    passive[0:2]) that keep the client's address toward the backend, and one the client dials
    directly (direct_bind, passive[2]) whose backend (server_control) runs in active mode, so the
    backend connects to the client's address and ftpsgate takes that connection."""
    make_intercept = make_intercept or intercept_listener
    return [
        make_intercept(tag + "-explicit", ports[0], "explicit", passive[0], transparent=True, source="client"),
        make_intercept(tag + "-implicit", ports[1], "implicit", passive[1], transparent=True, backend_port=21,
                       source="client"),
        {
            "name": tag + "-direct", "bind": direct_bind, "mode": "explicit", "tls": "main",
            "backend": {"address": server_control, "source": "client", "data_mode": "active"},
            "passive": {"ports": rng(passive[2])},
            "policy": {"login_requires_tls": True, "data_protection": "private"},
        },
    ]


def pp_listener(name, port, mode, passive, data_peer=None, announce=None):
    ln = {
        "name": name,
        "bind": "%s:%d" % (R_BAL, port),
        "mode": mode,
        "tls": "main",
        "backend": {"address": "%s:21" % SERVER},
        "passive": {"ports": rng(passive)},
        "policy": {"login_requires_tls": True, "data_protection": "private"},
        "proxy_protocol": {"trusted": [BAL + "/32"]},
    }
    if data_peer:
        ln["proxy_protocol"]["data_peer"] = data_peer
    if announce:
        ln["passive"]["announce"] = announce
    return ln


# --------------------------------------------------------------------------
# Transfers, run in the client's namespace


class Ctx:
    def __init__(self, suite, env, topo, vs, vs2, binary):
        self.s = suite
        self.env = env
        self.topo = topo
        self.vs = vs
        self.vs2 = vs2
        self.binary = binary
        self.proxy = None
        self.files = {}
        for size in (SMALL, BIG):
            name = "t-%d.bin" % size
            self.files[size] = ("/pub/" + name, vs.pub_path(name), vs.add_pub(name, size))
        self.n = 0

    def uniq(self, what):
        self.n += 1
        return "%s-%d.bin" % (what, self.n)

    # -- curl
    def curl_get(self, dest, size=BIG, epsv=True, want_227=None, extra=()):
        rpath, local, sha = self.files[size]
        out = os.path.join(self.env.client_dir, self.uniq("curl-dl"))
        with self.topo.inside("c"):
            r, trace = H.curl(dest, list(extra) + ["-o", out, dest.url(rpath)], timeout=60, epsv=epsv)
        check_eq(r.returncode, 0, "curl download exit status (%s)" % curl_why(trace))
        H.check_pasv_trace(trace, epsv, "curl download")
        check(re.search(r"^> PROT P", trace, re.M), "curl did not send PROT P")
        if want_227:
            m = re.search(r"^< 227 .*\((\d+,\d+,\d+,\d+),\d+,\d+\)", trace, re.M)
            check(m, "no 227 reply with an address in curl's trace")
            check_eq(m.group(1).replace(",", "."), want_227, "address in the 227 reply")
        got = (os.path.getsize(out), H.sha256_file(out))
        os.unlink(out)
        check_eq(got, (size, sha), "downloaded size and sha256")
        return trace

    def curl_put(self, dest, size=BIG, epsv=True, vs=None, extra=()):
        vs = vs or self.vs
        rpath, local, sha = self.files[size]
        name = self.uniq("curl-up")
        with self.topo.inside("c"):
            r, trace = H.curl(dest, list(extra) + ["-T", local, dest.url("/up/" + name)], timeout=60, epsv=epsv)
        check_eq(r.returncode, 0, "curl upload exit status (%s)" % curl_why(trace))
        H.check_pasv_trace(trace, epsv, "curl upload")
        H.check_stored(vs, name, size, sha, "curl upload")
        return trace

    # -- lftp
    def lftp_getput(self, dest, active, epsv=False, size=BIG, want_227=None):
        rpath, local, sha = self.files[size]
        out = os.path.join(self.env.client_dir, self.uniq("lftp-dl"))
        name = self.uniq("lftp-up")
        cmds = ["set ftp:passive-mode %s" % ("false" if active else "true"),
                "get %s -o %s" % (rpath, out), "put %s -o /up/%s" % (local, name)]
        with self.topo.inside("c"):
            r, trace = H.lftp(dest, cmds, self.env.client_dir, epsv=epsv, timeout=90)
        check_eq(r.returncode, 0, "lftp exit status (stderr: %s)" % r.stderr[-500:])
        check(re.search(r"---> PROT P", trace), "lftp did not send PROT P")
        if active:
            check(re.search(r"---> (PORT|EPRT) ", trace), "lftp did not use PORT/EPRT")
            check(not re.search(r"---> (PASV|EPSV)", trace), "lftp used passive mode")
        else:
            check(re.search(r"---> (PASV|EPSV)", trace), "lftp did not use PASV/EPSV")
        if want_227:
            m = re.search(r"<--- 227 .*\((\d+,\d+,\d+,\d+),\d+,\d+\)", trace)
            check(m, "no 227 reply in lftp's trace")
            check_eq(m.group(1).replace(",", "."), want_227, "address in the 227 reply (lftp)")
        got = (os.path.getsize(out), H.sha256_file(out))
        os.unlink(out)
        check_eq(got, (size, sha), "lftp download: size and sha256")
        H.check_stored(self.vs, name, size, sha, "lftp upload")
        return trace

    # -- ftplib
    def ftplib_session(self, dest, mode, want_pasv_host=None, want_active_peer=None, size=BIG, timeout=30):
        """mode: 'pasv', 'epsv' or 'active'. Download and upload in one session."""
        rpath, local, sha = self.files[size]
        name = self.uniq("ftplib-up-" + mode)
        with self.topo.inside("c"):
            f = H.ftplib_connect(dest, epsv=(mode == "epsv"), timeout=timeout,
                                 cls=RecImplicitFTPS if dest.implicit else RecFTPS)
            f.data_peers = []
            try:
                if mode == "active":
                    f.set_pasv(False)
                n, got, resp = H.ftplib_get(f, rpath)
                check(resp.startswith("226"), "RETR final reply %r" % resp)
                check_eq((n, got), (size, sha), "ftplib download: size and sha256")
                r2 = H.ftplib_put(f, local, "/up/" + name)
                check(r2.startswith("226"), "STOR final reply %r" % r2)
                last_pasv = f.last_pasv
            finally:
                H.quit_quietly(f)
        H.check_stored(self.vs, name, size, sha, "ftplib upload")
        if mode == "pasv" and want_pasv_host:
            check(last_pasv is not None, "no PASV reply recorded")
            check_eq(last_pasv[1], want_pasv_host, "address in the 227 reply (%s)" % last_pasv[0])
        if want_active_peer:
            check_eq(sorted(set(f.data_peers)), [want_active_peer], "source address of the active data connections")
        return f

    # -- proxy log
    def log_check(self, mark, patterns, timeout=10):
        for p in patterns:
            check(self.proxy.wait_log(p, mark, timeout), "no log line matching %r" % p)

    def start_proxy(self, name, listeners):
        p = N.NsProxy(self.env, self.topo, "r", self.binary, name=name)
        p.listeners = listeners
        self.proxy = p
        self.s.on_fail.append(lambda: self._tail(p))
        return p.start()

    def _tail(self, p):
        if p is not self.proxy:
            return
        print("     --- %s log tail (alive=%s):" % (p.name, p.alive()))
        for ln in H.tail_file(p.log, 15).splitlines():
            print("     | " + ln[:300])
        for b in (self.vs, self.vs2):
            print("     --- vsftpd %s log tail:" % b.name)
            for ln in H.tail_file(b.log, 5).splitlines():
                print("     | " + ln[:300])


# --------------------------------------------------------------------------
# Cases


def refused_connect(topo, host, port, implicit=False, role="c", timeout=10):
    """Connects from role's namespace; the proxy must close without a greeting.
    Returns how the connection ended."""
    with topo.inside(role):
        s = socket.create_connection((host, port), timeout=timeout)
    try:
        if implicit:
            ctx = H.insecure_context()
            try:
                s = ctx.wrap_socket(s, server_hostname=host)
            except (ssl.SSLError, OSError) as e:
                return "handshake failed: %s" % type(e).__name__
        how, got = H.recv_until_closed(s, timeout)
        check(how in ("eof", "reset") or how.startswith("ssl-error") or how.startswith("error"),
              "connection to %s:%d not closed (%s)" % (host, port, how))
        check(not got.startswith(b"220"), "got a greeting %r" % got[:80])
        return how
    finally:
        s.close()


def outside_allow_cases(c, tag):
    s, topo = c.s, c.topo

    def refused():
        before = outside_syns(topo)
        mark = c.proxy.log_mark()
        vmark = c.vs2.log_mark()
        refused_connect(topo, OUTSIDE, 21)
        refused_connect(topo, OUTSIDE, 990, implicit=True)
        c.log_check(mark, [r"SECURITY: intercepted connection to %s:21 refused: outside backend\.allow" %
                           re.escape(OUTSIDE),
                           r"SECURITY: intercepted connection to %s:990 refused: outside backend\.allow" %
                           re.escape(OUTSIDE)])
        # Refused at accept, before any session exists: nothing can dial OUTSIDE later.
        check_eq(outside_syns(topo) - before, 0, "SYNs that reached %s:21 in the server namespace" % OUTSIDE)
        check_eq(c.vs2.log_since(vmark).strip(), "", "the log of the vsftpd on %s" % OUTSIDE)
        check(not re.search(r"backend %s" % re.escape(OUTSIDE), c.proxy.log_since(mark)),
              "the proxy logged a backend connection to %s" % OUTSIDE)
        # ... and that vsftpd is really there: a direct connection from the router is counted.
        with topo.inside("r"):
            with socket.create_connection((OUTSIDE, 21), timeout=10) as d:
                d.settimeout(10)
                check(d.recv(100).startswith(b"220"), "no greeting from the vsftpd on %s" % OUTSIDE)
        check(outside_syns(topo) - before >= 1, "the SYN counter did not count a direct connection")

    s.run("%s: diverted connection to %s (outside backend.allow) refused and logged; no SYN reaches it"
          % (tag, OUTSIDE), refused)


# --------------------------------------------------------------------------
# Phase A: REDIRECT + PROXY protocol


def phase_redirect(c):
    s, topo, env = c.s, c.topo, c.env
    expl = Dest(SERVER, 21, env.ca)
    impl = Dest(SERVER, 990, env.ca, implicit=True)

    def setup():
        setup_rules(topo, "redirect", "--in", "rc0", "--port", "21:%d" % P_EXPL, "--port", "990:%d" % P_IMPL,
                    "--passive", rng(PAS_EXPL), "--passive", rng(PAS_IMPL))
        rules = topo.sh("r", ["nft", "list", "table", "inet", "ftpsgate"]).stdout
        check(re.search(r"tcp dport 21 redirect to :%d" % P_EXPL, rules), "no redirect rule for 21: %s" % rules)
        c.start_proxy("redirect", [
            intercept_listener("redir-explicit", P_EXPL, "explicit", PAS_EXPL),
            intercept_listener("redir-implicit", P_IMPL, "implicit", PAS_IMPL, backend_port=21),
            pp_listener("pp-explicit", P_PP1, "explicit", PAS_PP1),
            pp_listener("pp-implicit", P_PP2, "implicit", PAS_PP2),
            pp_listener("pp-balancer", P_PP3, "explicit", PAS_PP3, data_peer="balancer", announce=BAL),
        ])

    if not s.run("REDIRECT: nftables rules from transparent-setup.sh, ftpsgate starts", setup):
        return

    def curl_explicit():
        mark = c.proxy.log_mark()
        c.curl_get(expl, epsv=True)
        c.curl_put(expl, epsv=True)
        c.curl_get(expl, SMALL, epsv=False, want_227=SERVER)
        c.curl_put(expl, SMALL, epsv=False)
        c.log_check(mark, [r"client=%s:\d+ intercepted: original destination %s:21 \(REDIRECT/DNAT\)"
                           % (re.escape(CLIENT), re.escape(SERVER)),
                           r"client=%s:\d+ backend %s:21\b" % (re.escape(CLIENT), re.escape(SERVER))])

    def curl_implicit():
        mark = c.proxy.log_mark()
        c.curl_get(impl, epsv=True)
        c.curl_put(impl, epsv=True)
        c.curl_get(impl, SMALL, epsv=False, want_227=SERVER)
        c.log_check(mark, [r"intercepted: original destination %s:990 \(REDIRECT/DNAT\)" % re.escape(SERVER),
                           r"backend %s:21\b" % re.escape(SERVER)])

    s.run("REDIRECT: curl explicit FTPS to %s:21, EPSV+PASV, down+up, 227 names the server" % SERVER, curl_explicit)
    s.run("REDIRECT: curl implicit FTPS to %s:990 (backend port 21), down+up" % SERVER, curl_implicit)
    s.run("REDIRECT: lftp explicit, passive (PASV), get+put, 227 names the server",
          lambda: c.lftp_getput(expl, active=False, want_227=SERVER))
    s.run("REDIRECT: lftp explicit, active (PORT), get+put", lambda: c.lftp_getput(expl, active=True))
    s.run("REDIRECT: lftp implicit, passive (EPSV), get+put", lambda: c.lftp_getput(impl, active=False, epsv=True))
    s.run("REDIRECT: lftp implicit, active, get+put", lambda: c.lftp_getput(impl, active=True))
    s.run("REDIRECT: ftplib explicit PASV (227 names the server), down+up",
          lambda: c.ftplib_session(expl, "pasv", want_pasv_host=SERVER))
    s.run("REDIRECT: ftplib explicit EPSV, down+up", lambda: c.ftplib_session(expl, "epsv"))
    s.run("REDIRECT: ftplib explicit active (PORT), down+up; data from the router (%s)" % R_CLIENT,
          lambda: c.ftplib_session(expl, "active", want_active_peer=R_CLIENT))
    s.run("REDIRECT: ftplib implicit active, down+up", lambda: c.ftplib_session(impl, "active"))
    s.run("REDIRECT: ftplib implicit PASV, down+up", lambda: c.ftplib_session(impl, "pasv", want_pasv_host=SERVER))

    outside_allow_cases(c, "REDIRECT")

    def not_diverted():
        mark = c.proxy.log_mark()
        refused_connect(topo, R_CLIENT, P_EXPL)
        c.log_check(mark, [r"SECURITY: intercepted connection to %s:%d refused: not diverted"
                           % (re.escape(R_CLIENT), P_EXPL)])

    s.run("REDIRECT: a connection straight to the listener (not diverted) is refused and logged", not_diverted)

    proxy_protocol_cases(c)

    def iptables_variant():
        check(shutil.which("iptables"), "iptables not installed (tests/setup-deps.sh installs it)")
        setup_rules(topo, "redirect", "--fw", "iptables", "--in", "rc0", "--port", "21:%d" % P_EXPL,
                    "--port", "990:%d" % P_IMPL, "--passive", rng(PAS_EXPL), "--passive", rng(PAS_IMPL))
        r = topo.sh("r", ["nft", "list", "tables"]).stdout
        check("inet ftpsgate" not in r, "the nftables table is still there after switching to iptables")
        rules = topo.sh("r", ["iptables", "-t", "nat", "-S", "FTPSGATE"]).stdout
        check(re.search(r"--dport 21 -j REDIRECT --to-ports %d" % P_EXPL, rules), "iptables rules: %s" % rules)
        mark = c.proxy.log_mark()
        c.curl_get(expl, epsv=False, want_227=SERVER)
        c.curl_put(expl, SMALL, epsv=True)
        c.curl_get(impl, SMALL, epsv=True)
        c.ftplib_session(expl, "active", size=SMALL)
        c.log_check(mark, [r"original destination %s:21 \(REDIRECT/DNAT\)" % re.escape(SERVER),
                           r"original destination %s:990 \(REDIRECT/DNAT\)" % re.escape(SERVER)])
        # idempotent: a second run leaves one jump and the same rules
        setup_rules(topo, "redirect", "--fw", "iptables", "--in", "rc0", "--port", "21:%d" % P_EXPL,
                    "--port", "990:%d" % P_IMPL, "--passive", rng(PAS_EXPL), "--passive", rng(PAS_IMPL))
        pre = topo.sh("r", ["iptables", "-t", "nat", "-S", "PREROUTING"]).stdout
        check_eq(pre.count("-j FTPSGATE"), 1, "jumps to FTPSGATE in nat PREROUTING after a second run")
        check_eq(topo.sh("r", ["iptables", "-t", "nat", "-S", "FTPSGATE"]).stdout, rules,
                 "FTPSGATE chain after a second run")

    s.run("REDIRECT with iptables (transparent-setup.sh --fw iptables): curl, ftplib active; idempotent",
          iptables_variant)

    def dnat_variant():
        # DNAT to one of the router's own addresses instead of REDIRECT: SO_ORIGINAL_DST is the same
        # conntrack lookup. Not a mode of transparent-setup.sh; the rules are written here.
        remove_rules(topo)
        topo.nft("r", "table inet fgdnat {\n"
                      "  chain pre { type nat hook prerouting priority dstnat; policy accept;\n"
                      "    iifname \"rc0\" ip daddr %s tcp dport 21 dnat ip to %s:%d\n"
                      "    iifname \"rc0\" ip daddr %s tcp dport %s dnat ip to %s\n"
                      "  }\n"
                      "}\n" % (SERVER, R_SERVER, P_EXPL, SERVER, rng(PAS_EXPL), R_SERVER))
        try:
            mark = c.proxy.log_mark()
            c.curl_get(expl, SMALL, epsv=False, want_227=SERVER)
            c.curl_put(expl, SMALL, epsv=True)
            c.log_check(mark, [r"intercepted: original destination %s:21 \(REDIRECT/DNAT\)" % re.escape(SERVER)])
        finally:
            topo.sh("r", ["nft", "delete", "table", "inet", "fgdnat"], check=False)

    s.run("DNAT (nftables dnat to the router's own address): curl explicit PASV+EPSV", dnat_variant)

    s.run("REDIRECT: ftpsgate exits 0 on SIGTERM, no sanitizer report, no password in its log",
          c.proxy.stop_checked)
    s.run("REDIRECT: transparent-setup.sh --remove leaves no rule", lambda: removed_check(topo))


def removed_check(topo):
    remove_rules(topo)
    r = topo.sh("r", ["nft", "list", "ruleset"]).stdout
    check("ftpsgate" not in r and "FTPSGATE" not in r, "rules left after --remove: %s" % r[:600])
    rules = topo.sh("r", ["ip", "rule", "show"]).stdout
    check("fwmark" not in rules, "ip rule left after --remove: %s" % rules)
    # and --remove again is fine (idempotent)
    remove_rules(topo)


# --------------------------------------------------------------------------
# PROXY protocol


def proxy_protocol_cases(c):
    s, topo, env = c.s, c.topo, c.env
    rpath, local, sha = c.files[SMALL]

    def session_lines(text, sid):
        return [ln for ln in text.splitlines() if " session=%s " % sid in ln]

    def header_session(mark, version, real_client_port=None):
        pat = (r"session=(\d+) client=%s:%s PROXY v%d header from %s:\d+: client %s:%s"
               % (re.escape(CLIENT), real_client_port or r"\d+", version, re.escape(BAL), re.escape(CLIENT),
                  real_client_port or r"\d+"))
        m = c.proxy.wait_log(pat, mark)
        check(m, "no log line matching %r" % pat)
        return m.group(1)

    def scripted(version, implicit):
        port = P_PP2 if implicit else P_PP1
        cport = 50000 + version
        hdr = (N.proxy_v1 if version == 1 else N.proxy_v2)((CLIENT, cport), (R_BAL, port))
        mark = c.proxy.log_mark()
        with topo.inside("b"):
            f = N.pp_ftps(R_BAL, port, hdr, env.ca, implicit=implicit)
        try:
            sid = header_session(mark, version, cport)
            f.voidcmd("TYPE I")
            host, dport = ftplib.parse227(f.sendcmd("PASV"))
            check_eq(host, R_BAL, "address in the 227 reply")
            # The balancer's IP is not the client's: its data connection is refused ...
            dmark = c.proxy.log_mark()
            with topo.inside("b"):
                how = H.refused_how((host, dport), 10)
            check_eq(how, "reset", "data connection from the balancer")
            c.log_check(dmark, [r"SECURITY: refused client data connection from %s" % re.escape(BAL)])
            # ... and the real client's (10.77.1.2) goes through on the same port.
            with topo.inside("c"):
                d = socket.create_connection((host, dport), timeout=10)
            f.putcmd("RETR " + rpath)
            resp = f.getresp()
            check(resp.startswith("150") or resp.startswith("125"), "RETR reply %r" % resp)
            d = f.context.wrap_socket(d, server_hostname=f.host, session=f.sock.session)
            d.settimeout(20)
            buf = bytearray()
            while True:
                b = d.recv(256 * H.KiB)
                if not b:
                    break
                buf += b
            try:
                d.unwrap()
            except (ssl.SSLError, OSError):
                pass
            d.close()
            check(f.voidresp().startswith("226"), "no 226 after RETR")
            check_eq((len(buf), H.sha256_bytes(bytes(buf))), (SMALL, sha), "download: size and sha256")
            # an upload, the real client's data connection made by ftplib itself
            name = c.uniq("pp-up-v%d" % version)
            with topo.inside("c"):
                H.ftplib_put(f, local, "/up/" + name)
            H.check_stored(c.vs, name, SMALL, sha, "upload")
        finally:
            H.quit_quietly(f)
        H.wait_until(lambda: "session=%s " % sid in c.proxy.log_since(mark) and
                     "session end" in c.proxy.log_since(mark), 10)
        lines = session_lines(c.proxy.log_since(mark), sid)
        lines = lines[[i for i, ln in enumerate(lines) if " PROXY v%d header from " % version in ln][0]:]
        check(any(re.search(r"client=%s:%d login user=" % (re.escape(CLIENT), cport), ln) for ln in lines),
              "the login of session %s is not logged with the real client %s:%d" % (sid, CLIENT, cport))
        check(not any("client=%s:" % BAL in ln for ln in lines),
              "session %s logged with the balancer's address after the header" % sid)

    s.run("PROXY v1 (scripted sender), explicit: real client in the log; data from the balancer refused, "
          "from the real client accepted; down+up", scripted, 1, False)
    s.run("PROXY v2 (scripted sender), implicit: the same", scripted, 2, True)

    def port_checks():
        hdr = N.proxy_v2((CLIENT, 50100), (R_BAL, P_PP1))
        mark = c.proxy.log_mark()
        ctx = ssl.create_default_context(cafile=env.ca)
        with topo.inside("b"):
            f = PortFTPS(context=ctx, timeout=30)
            f.pp_header = hdr
            f.connect(R_BAL, P_PP1)
            f.auth()
            f.login(H.FTP_USER, H.PASSWORD)
            f.prot_p()
        try:
            f.set_pasv(False)
            # PORT naming the balancer: refused (the client is 10.77.1.2)
            f.port_host = BAL
            try:
                with topo.inside("c"):
                    H.ftplib_get(f, rpath)
                raise Fail("a PORT naming the balancer's address was accepted")
            except ftplib.error_perm as e:
                check(str(e).startswith("500"), "reply to PORT %s: %s" % (BAL, e))
            # PORT naming the real client: the proxy connects to it
            f.port_host = CLIENT
            with topo.inside("c"):
                n, got, resp = H.ftplib_get(f, rpath)
            check_eq((n, got), (SMALL, sha), "active download: size and sha256")
        finally:
            H.quit_quietly(f)
        header_session(mark, 2, 50100)

    s.run("PROXY v2: PORT must name the real client (the balancer's address gets 500)", port_checks)

    def balancer_peer():
        hdr = N.proxy_v1((CLIENT, 50200), (R_BAL, P_PP3))
        mark = c.proxy.log_mark()
        with topo.inside("b"):
            f = N.pp_ftps(R_BAL, P_PP3, hdr, env.ca)
        try:
            f.voidcmd("TYPE I")
            host, dport = ftplib.parse227(f.sendcmd("PASV"))
            check_eq(host, BAL, "address in the 227 reply (passive.announce)")
            dmark = c.proxy.log_mark()
            with topo.inside("c"):  # the client itself, not through the balancer: refused
                how = H.refused_how((R_BAL, dport), 10)
            check_eq(how, "reset", "data connection from the client")
            c.log_check(dmark, [r"SECURITY: refused client data connection from %s" % re.escape(CLIENT)])
            with topo.inside("b"):
                d = socket.create_connection((R_BAL, dport), timeout=10)
            f.putcmd("RETR " + rpath)
            resp = f.getresp()
            check(resp[:1] == "1", "RETR reply %r" % resp)
            d = f.context.wrap_socket(d, server_hostname=f.host, session=f.sock.session)
            d.settimeout(20)
            buf = bytearray()
            while True:
                b = d.recv(256 * H.KiB)
                if not b:
                    break
                buf += b
            d.close()
            check(f.voidresp().startswith("226"), "no 226 after RETR")
            check_eq((len(buf), H.sha256_bytes(bytes(buf))), (SMALL, sha), "download: size and sha256")
        finally:
            H.quit_quietly(f)
        header_session(mark, 1, 50200)

    s.run("PROXY v1, data_peer \"balancer\": data from the client refused, from the balancer accepted",
          balancer_peer)

    def refusals():
        # an untrusted sender (the client itself, with a header claiming anything)
        mark = c.proxy.log_mark()
        with topo.inside("c"):
            u = socket.create_connection((R_BAL, P_PP1), timeout=10)
        try:
            u.sendall(N.proxy_v1(("192.0.2.9", 1234), (R_BAL, P_PP1)))
        except OSError:
            pass
        how, got = H.recv_until_closed(u, 10)
        u.close()
        check(not got, "the untrusted sender got %r" % got[:80])
        c.log_check(mark, [r"client=%s:\d+ listener pp-explicit: connection refused: SECURITY: not a trusted "
                           r"PROXY protocol sender" % re.escape(CLIENT)])
        check(not re.search(r"192\.0\.2\.9", c.proxy.log_since(mark)), "the untrusted header was believed")
        # garbled, missing, and a TLS ClientHello without a header
        for what, port, data in (("garbled v1", P_PP1, b"PROXY TCP4 10.77.1.2 nonsense\r\nUSER x\r\n"),
                                 ("garbled v2", P_PP1, N.PP2_SIG + b"\x31\x11\x00\x0c" + b"\x00" * 12),
                                 ("missing", P_PP1, b"USER anonymous\r\n"),
                                 ("missing (implicit)", P_PP2, b"\x16\x03\x01\x00\xa0\x01\x00\x00\x9c\x03\x03" +
                                  os.urandom(32))):
            mark = c.proxy.log_mark()
            with topo.inside("b"):
                g = socket.create_connection((R_BAL, port), timeout=10)
            g.sendall(data)
            how, got = H.recv_until_closed(g, 10)
            g.close()
            check(how in ("eof", "reset"), "%s header: connection not closed (%s)" % (what, how))
            check(not got, "%s header: got %r" % (what, got[:80]))
            c.log_check(mark, [r"SECURITY: missing or malformed PROXY protocol header"])

    s.run("PROXY: untrusted sender refused; garbled v1/v2 and missing headers close the connection", refusals)

    # -- haproxy in front
    if not N.Haproxy.available():
        s.run("haproxy in front", lambda: (_ for _ in ()).throw(
            Fail("haproxy is not installed (tests/setup-deps.sh installs the Debian package)")))
        return
    hap = {}

    def start_haproxy():
        hap["p"] = N.Haproxy(env, topo, "b", [
            ("%s:%d" % (BAL, H_V1), "%s:%d" % (R_BAL, P_PP1), "send-proxy"),
            ("%s:%d" % (BAL, H_V2), "%s:%d" % (R_BAL, P_PP1), "send-proxy-v2"),
            ("%s:%d" % (BAL, H_V2_IMPL), "%s:%d" % (R_BAL, P_PP2), "send-proxy-v2"),
            ("%s:%d" % (BAL, H_BAL), "%s:%d" % (R_BAL, P_PP3), "send-proxy-v2"),
            # data_peer "balancer": the balancer also forwards the passive range (no header there)
            ("%s:%d-%d" % ((BAL,) + PAS_PP3), R_BAL, ""),
        ]).start()

    if not s.run("haproxy (Debian package) starts in the balancer namespace", start_haproxy):
        return
    try:
        def via(version, port, implicit=False):
            d = Dest(BAL, port, env.ca, implicit=implicit)
            mark = c.proxy.log_mark()
            # data_peer "client": the client connects straight to the address in the 227 reply
            # (curl ignores it by default and would dial the balancer)
            c.curl_get(d, epsv=False, want_227=R_BAL, extra=["--no-ftp-skip-pasv-ip"])
            c.curl_put(d, SMALL, epsv=False, extra=["--no-ftp-skip-pasv-ip"])
            m = c.proxy.wait_log(r"session=(\d+) client=%s:(\d+) PROXY v%d header from %s:\d+: client %s:\d+"
                                 % (re.escape(CLIENT), version, re.escape(BAL), re.escape(CLIENT)), mark)
            check(m, "no 'PROXY v%d header from %s: client %s' log line" % (version, BAL, CLIENT))
            check(c.proxy.wait_log(r"session=%s client=%s:\d+ login user=" % (m.group(1), re.escape(CLIENT)),
                                   mark), "the login is not logged with the real client")
            return d

        s.run("haproxy send-proxy (v1) -> explicit: curl PASV down+up, real client logged",
              via, 1, H_V1)

        def v2_lftp():
            d = via(2, H_V2)
            c.lftp_getput(d, active=False, epsv=False, size=SMALL)
            c.lftp_getput(d, active=True, size=SMALL)

        s.run("haproxy send-proxy-v2 -> explicit: curl, lftp passive and active; real client logged", v2_lftp)
        s.run("haproxy send-proxy-v2 -> implicit: curl ftps:// down+up; real client logged",
              via, 2, H_V2_IMPL, True)

        def balancer_mode():
            d = Dest(BAL, H_BAL, env.ca)
            mark = c.proxy.log_mark()
            c.curl_get(d, epsv=True)
            c.curl_put(d, SMALL, epsv=True)
            c.curl_get(d, SMALL, epsv=False, want_227=BAL)
            check(not re.search(r"SECURITY: refused client data", c.proxy.log_since(mark)),
                  "a data connection through the balancer was refused")

        s.run("haproxy send-proxy-v2, data_peer \"balancer\", passive range through haproxy: curl EPSV+PASV",
              balancer_mode)
    finally:
        hap.get("p") and hap["p"].stop()


# --------------------------------------------------------------------------
# Phase B: TPROXY


def phase_tproxy(c):
    s, topo, env = c.s, c.topo, c.env
    expl = Dest(SERVER, 21, env.ca)
    impl = Dest(SERVER, 990, env.ca, implicit=True)
    args = ["tproxy", "--in", "rc0", "--port", "21:%d" % P_EXPL, "--port", "990:%d" % P_IMPL]

    def setup():
        setup_rules(topo, *args)
        rules = topo.sh("r", ["nft", "list", "table", "inet", "ftpsgate"]).stdout
        check(re.search(r"tcp dport 21 tproxy (ip )?to :%d" % P_EXPL, rules), "no tproxy rule: %s" % rules)
        check(re.search(r"fwmark 0x1 lookup 100", topo.sh("r", ["ip", "rule", "show"]).stdout),
              "no 'fwmark 1 lookup 100' policy rule")
        check(re.search(r"local default dev lo", topo.sh("r", ["ip", "route", "show", "table", "100"]).stdout),
              "no local default route in table 100")
        c.start_proxy("tproxy", [
            intercept_listener("tp-explicit", P_EXPL, "explicit", PAS_EXPL, transparent=True),
            intercept_listener("tp-implicit", P_IMPL, "implicit", PAS_IMPL, transparent=True, backend_port=21),
        ])

    if not s.run("TPROXY: nftables tproxy rules + policy routing from transparent-setup.sh, ftpsgate starts",
                 setup):
        return

    def curl_both():
        mark = c.proxy.log_mark()
        c.curl_get(expl, epsv=True)
        c.curl_put(expl, epsv=True)
        c.curl_get(expl, SMALL, epsv=False, want_227=SERVER)
        c.curl_get(impl, epsv=True)
        c.curl_put(impl, SMALL, epsv=False)
        c.log_check(mark, [r"client=%s:\d+ intercepted: original destination %s:21 \(TPROXY\)"
                           % (re.escape(CLIENT), re.escape(SERVER)),
                           r"intercepted: original destination %s:990 \(TPROXY\)" % re.escape(SERVER),
                           r"backend %s:21\b" % re.escape(SERVER)])
        # the passive data listener is on the server's address
        check(not re.search(r"SECURITY: refused", c.proxy.log_since(mark)), "a data connection was refused")

    s.run("TPROXY: curl explicit (21) and implicit (990), EPSV+PASV, down+up; 227 names the server", curl_both)
    s.run("TPROXY: lftp explicit passive get+put", lambda: c.lftp_getput(expl, active=False, want_227=SERVER))
    s.run("TPROXY: lftp explicit active get+put", lambda: c.lftp_getput(expl, active=True))
    s.run("TPROXY: lftp implicit active get+put", lambda: c.lftp_getput(impl, active=True))
    s.run("TPROXY: ftplib explicit active: data connections come from the server's address %s" % SERVER,
          lambda: c.ftplib_session(expl, "active", want_active_peer=SERVER))
    s.run("TPROXY: ftplib implicit active from %s, down+up" % SERVER,
          lambda: c.ftplib_session(impl, "active", want_active_peer=SERVER))
    s.run("TPROXY: ftplib explicit PASV (227 names the server), down+up",
          lambda: c.ftplib_session(expl, "pasv", want_pasv_host=SERVER))
    outside_allow_cases(c, "TPROXY")

    def iptables_variant():
        check(shutil.which("iptables"), "iptables not installed (tests/setup-deps.sh installs it)")
        setup_rules(topo, *(args + ["--fw", "iptables"]))
        rules = topo.sh("r", ["iptables", "-t", "mangle", "-S", "FTPSGATE"]).stdout
        check(re.search(r"--dport 21 -j TPROXY --on-port %d" % P_EXPL, rules), "iptables rules: %s" % rules)
        check("inet ftpsgate" not in topo.sh("r", ["nft", "list", "tables"]).stdout,
              "the nftables table is still there after switching to iptables")
        mark = c.proxy.log_mark()
        c.curl_get(expl, SMALL, epsv=False, want_227=SERVER)
        c.curl_put(impl, SMALL, epsv=True)
        c.ftplib_session(expl, "active", want_active_peer=SERVER, size=SMALL)
        c.log_check(mark, [r"original destination %s:21 \(TPROXY\)" % re.escape(SERVER),
                           r"original destination %s:990 \(TPROXY\)" % re.escape(SERVER)])

    s.run("TPROXY with iptables (-j TPROXY, -m socket --transparent): curl, ftplib active", iptables_variant)
    s.run("TPROXY: ftpsgate exits 0 on SIGTERM, no sanitizer report, no password in its log",
          c.proxy.stop_checked)
    s.run("TPROXY: transparent-setup.sh --remove leaves no rule or policy route", lambda: removed_check(topo))


# --------------------------------------------------------------------------
# Phase C: source-IP transparency


def vsftpd_saw_only_client(c, mark, want_up, want_down):
    text = c.vs.log_since(mark)
    clients = c.vs.clients_since(mark)
    check(clients, "vsftpd logged no client at all")
    check_eq(sorted(clients), [CLIENT], "client addresses in vsftpd's own log")
    check(re.search(r'CONNECT: Client "%s"' % re.escape(CLIENT), text), "no CONNECT from %s in vsftpd's log" % CLIENT)
    for what, n in (("DOWNLOAD", want_down), ("UPLOAD", want_up)):
        got = len(re.findall(r'OK %s: Client "%s"' % (what, re.escape(CLIENT)), text))
        check(got >= n, "vsftpd logged %d 'OK %s: Client \"%s\"' lines, want %d" % (got, what, CLIENT, n))
    check(not re.search(r"Bad IP|FAIL (UP|DOWN)LOAD", text), "vsftpd refused or failed a transfer: %s" % text[-400:])


def phase_source_ip(c):
    s, topo, env = c.s, c.topo, c.env
    expl = Dest(SERVER, 21, env.ca)
    impl = Dest(SERVER, 990, env.ca, implicit=True)
    direct = Dest(R_CLIENT, P_SRC2, env.ca)

    def setup():
        setup_rules(topo, "tproxy", "--in", "rc0", "--port", "21:%d" % P_EXPL, "--port", "990:%d" % P_IMPL)
        c.start_proxy("source-ip", source_ip_listeners("src", "%s:%d" % (R_CLIENT, P_SRC2), "%s:21" % SERVER))

    if not s.run("source IP: TPROXY rules + policy routing (transparent-setup.sh tproxy), ftpsgate starts", setup):
        return

    def tproxy_curl():
        mark, pmark = c.vs.log_mark(), c.proxy.log_mark()
        c.curl_get(expl, epsv=True)
        c.curl_put(expl, epsv=False)
        c.curl_get(impl, SMALL, epsv=True)
        c.log_check(pmark, [r"backend %s:21 \(from the client's address\)" % re.escape(SERVER)])
        vsftpd_saw_only_client(c, mark, 1, 2)

    s.run("source IP + TPROXY: curl explicit+implicit, down+up; vsftpd's log names only %s" % CLIENT, tproxy_curl)

    def tproxy_lftp():
        mark = c.vs.log_mark()
        c.lftp_getput(expl, active=True)
        c.ftplib_session(expl, "pasv", size=SMALL)
        vsftpd_saw_only_client(c, mark, 2, 2)

    s.run("source IP + TPROXY: lftp active, ftplib PASV; vsftpd's log names only %s" % CLIENT, tproxy_lftp)

    def backend_active():
        mark = c.vs.log_mark()
        c.curl_get(direct, SMALL, epsv=True)
        c.curl_put(direct, SMALL, epsv=True)
        vsftpd_saw_only_client(c, mark, 1, 1)
        cmds = [x for _, x in c.vs.commands_since(mark)]
        check(any(x.startswith("PORT %s," % CLIENT.replace(".", ",")) or x.startswith("EPRT |1|%s|" % CLIENT)
                  for x in cmds), "the backend got no PORT/EPRT naming %s: %s" % (CLIENT, cmds[-6:]))

    s.run("source IP, non-intercepting listener, backend data_mode active: vsftpd connects to %s "
          "and ftpsgate takes it" % CLIENT, backend_active)
    s.run("source IP + TPROXY: ftpsgate exits 0 on SIGTERM, no sanitizer report", c.proxy.stop_checked)

    def redirect_setup():
        remove_rules(topo)
        setup_rules(topo, "redirect", "--source-ip", "--fw", "iptables", "--in", "rc0", "--port", "21:%d" % P_EXPL,
                    "--passive", rng(PAS_EXPL))
        check(re.search(r"-m socket --transparent -j MARK --set-xmark 0x1/0xffffffff",
                        topo.sh("r", ["iptables", "-t", "mangle", "-S", "FTPSGATE"]).stdout),
              "no socket/MARK rule in the mangle FTPSGATE chain")
        check(re.search(r"fwmark 0x1 lookup 100", topo.sh("r", ["ip", "rule", "show"]).stdout),
              "no 'fwmark 1 lookup 100' policy rule after redirect --source-ip")
        c.start_proxy("source-ip-redirect", [
            intercept_listener("srcr-explicit", P_EXPL, "explicit", PAS_EXPL, source="client"),
        ])
        mark = c.vs.log_mark()
        c.curl_get(expl, epsv=True)
        c.curl_put(expl, SMALL, epsv=False)
        c.lftp_getput(expl, active=True, size=SMALL)
        vsftpd_saw_only_client(c, mark, 2, 2)
        c.proxy.stop_checked()

    s.run("source IP + REDIRECT, iptables (transparent-setup.sh redirect --source-ip --fw iptables): curl, lftp active; "
          "vsftpd's log names only %s" % CLIENT, redirect_setup)

    def with_user():
        # The packaged image runs as an unprivileged user ("user" in the config): TPROXY data
        # sockets and connections from the client's address need CAP_NET_ADMIN (or CAP_NET_RAW)
        # for every new socket, not only at start. Either the capability is kept after the drop,
        # or the configuration is refused at start naming it; a start that then fails every
        # session is wrong.
        remove_rules(topo)
        setup_rules(topo, "tproxy", "--in", "rc0", "--port", "21:%d" % P_EXPL, "--port", "990:%d" % P_IMPL)
        p = N.NsProxy(env, topo, "r", c.binary, name="transparent-user")
        p.listeners = [
            intercept_listener("user-tproxy", P_EXPL, "explicit", PAS_EXPL, transparent=True),
            intercept_listener("user-source", P_IMPL, "implicit", PAS_IMPL, transparent=True, backend_port=21,
                               source="client"),
        ]
        cfg = p.config()
        cfg["user"] = H.TEST_USER
        p.config = lambda: cfg
        c.proxy = p
        c.s.on_fail.append(lambda: c._tail(p))
        try:
            p.start()
        except RuntimeError as e:
            check("CAP_NET_ADMIN" in str(e), "ftpsgate with \"user\" did not start, without naming "
                  "CAP_NET_ADMIN: %s" % e)
            return
        errors = []
        try:
            import pwd
            with open("/proc/%d/status" % p.proc.pid) as f:
                st = dict(ln.split(":", 1) for ln in f.read().splitlines() if ":" in ln)
            uids = set(int(x) for x in st["Uid"].split())
            check_eq(uids, {pwd.getpwnam(H.TEST_USER).pw_uid}, "ftpsgate's real/effective/saved uids")
            check_eq(int(st["CapEff"], 16), 1 << 12, "ftpsgate's effective capabilities (want CAP_NET_ADMIN only)")
            check_eq(int(st["CapPrm"], 16), 1 << 12, "ftpsgate's permitted capabilities (want CAP_NET_ADMIN only)")
            for what, fn in (("TPROXY passive (transparent data socket)",
                              lambda: c.curl_get(expl, SMALL, epsv=True)),
                             ("TPROXY active (from the server's address)",
                              lambda: c.ftplib_session(expl, "active", want_active_peer=SERVER, size=SMALL,
                                                       timeout=8)),
                             ("source client (connection to the backend from %s)" % CLIENT,
                              lambda: c.curl_get(impl, SMALL, epsv=True))):
                try:
                    fn()
                except Exception as e:  # noqa: BLE001 - collected, reported together
                    errors.append("%s: %s: %s" % (what, type(e).__name__, str(e).splitlines()[0][:160]))
        finally:
            p.kill()
        check(not errors, "started as %s, then: %s" % (H.TEST_USER, " | ".join(errors)))

    s.run("TPROXY and source IP with \"user\": root dropped keeping CAP_NET_ADMIN only; TPROXY passive and "
          "active, source client work", with_user)
    s.run("source IP: transparent-setup.sh --remove leaves no rule or policy route", lambda: removed_check(topo))


# --------------------------------------------------------------------------
# PROXY protocol: per-IP limit and announce map by the real client


def phase_pp_limits(c):
    s, topo, env = c.s, c.topo, c.env

    def run():
        p = N.NsProxy(env, topo, "r", c.binary, name="proxy-limits")
        ln = pp_listener("pp-limits", P_PP1, "explicit", PAS_PP1)
        ln["passive"]["announce"] = [{"clients": "10.77.1.0/24", "address": R_BAL},
                                     {"clients": "default", "address": "192.0.2.7"}]
        p.listeners = [ln]
        p.extra_limits = {"max_sessions_per_ip": 1}
        c.proxy = p
        c.s.on_fail.append(lambda: c._tail(p))
        p.start()
        held = []
        try:
            # real client 10.77.1.2: one session, its 227 from the 10.77.1.0/24 entry
            with topo.inside("b"):
                f1 = N.pp_ftps(R_BAL, P_PP1, N.proxy_v1((CLIENT, 51001), (R_BAL, P_PP1)), env.ca)
            held.append(f1)
            check_eq(ftplib.parse227(f1.sendcmd("PASV"))[0], R_BAL, "227 address for real client %s" % CLIENT)
            # another real client behind the same balancer: its own per-IP count, the default entry
            with topo.inside("b"):
                f2 = N.pp_ftps(R_BAL, P_PP1, N.proxy_v2(("10.77.9.9", 51002), (R_BAL, P_PP1)), env.ca)
            held.append(f2)
            check_eq(ftplib.parse227(f2.sendcmd("PASV"))[0], "192.0.2.7", "227 address for real client 10.77.9.9")
            # a second session of 10.77.1.2 through the same balancer: over max_sessions_per_ip 1
            mark = p.log_mark()
            with topo.inside("b"):
                g = socket.create_connection((R_BAL, P_PP1), timeout=10)
            g.sendall(N.proxy_v1((CLIENT, 51003), (R_BAL, P_PP1)))
            how, got = H.recv_until_closed(g, 10)
            g.close()
            check(got.startswith(b"421"), "second session of %s: got %r (%s), want 421" % (CLIENT, got[:80], how))
            c.log_check(mark, [r"client=%s:51003 connection refused: too many sessions from this address"
                               % re.escape(CLIENT)])
        finally:
            for f in held:
                H.quit_quietly(f)
        p.stop_checked()

    s.run("PROXY: max_sessions_per_ip and the passive.announce map use the real client, not the balancer", run)


# --------------------------------------------------------------------------
# Phase D: capabilities


def phase_caps(c):
    s, env = c.s, c.env

    def no_cap(kind):
        if not shutil.which("setpriv"):
            raise Skip("setpriv (util-linux) not installed")
        p = N.NsProxy(env, c.topo, "r", c.binary, name="nocap-%s" % kind)
        ln = intercept_listener("nocap", P_EXPL, "explicit", PAS_EXPL,
                                transparent=(kind == "transparent"),
                                source="client" if kind == "source" else None)
        p.listeners = [ln]
        p.write_config()
        argv = ["setpriv", "--bounding-set", "-net_admin,-net_raw", "--inh-caps", "-net_admin,-net_raw",
                "--", c.binary, "-c", p.config_path]
        r = c.topo.sh("r", argv, check=False, timeout=30)
        check_eq(r.returncode, 1, "exit status without CAP_NET_ADMIN (stderr: %s)" % r.stderr[-300:])
        check("CAP_NET_ADMIN" in r.stderr, "the error does not name CAP_NET_ADMIN: %r" % r.stderr[-300:])
        check(re.search(r"listeners\[0\]|nocap", r.stderr), "the error does not name the listener: %r" % r.stderr)

    s.run("without CAP_NET_ADMIN/CAP_NET_RAW: a \"transparent\" listener fails at start naming CAP_NET_ADMIN",
          no_cap, "transparent")
    s.run("without CAP_NET_ADMIN/CAP_NET_RAW: \"source\": \"client\" fails at start naming CAP_NET_ADMIN",
          no_cap, "source")

    def script_checks():
        topo = c.topo
        # bad arguments are refused before anything is changed
        for bad in (["tproxy"], ["redirect", "--port", "21"], ["tproxy", "--port", "21:2121", "--in", "a;b"],
                    ["redirect", "--port", "21:2121", "--dst", "10.0.0.0/8 accept"], ["bogus"]):
            r = topo.sh("r", ["bash", N.SETUP_SCRIPT] + bad, check=False)
            check_eq(r.returncode, 2, "exit status of transparent-setup.sh %s" % " ".join(bad))
        check("ftpsgate" not in topo.sh("r", ["nft", "list", "ruleset"]).stdout, "rules after refused runs")
        # --ipv6 also sets up the IPv6 policy routing; --remove takes it away (with --ipv6 or
        # without it: a rule of an earlier --ipv6 run must not survive a plain --remove)
        setup_rules(topo, "tproxy", "--ipv6", "--in", "rc0", "--dst", "10.77.2.0/24", "--dst", "fd00:77::/64",
                    "--port", "21:%d" % P_EXPL)
        rules = topo.sh("r", ["nft", "list", "table", "inet", "ftpsgate"]).stdout
        check(re.search(r"ip6 daddr fd00:77::/64 .*tproxy", rules), "no IPv6 tproxy rule: %s" % rules)
        check("fwmark 0x1 lookup 100" in topo.sh("r", ["ip", "-6", "rule", "show"]).stdout, "no IPv6 policy rule")
        for remove in (["--remove", "--ipv6"], ["--remove"]):
            setup_rules(topo, "tproxy", "--ipv6", "--in", "rc0", "--dst", "fd00:77::/64", "--port", "21:%d" % P_EXPL)
            check("fwmark 0x1 lookup 100" in topo.sh("r", ["ip", "-6", "rule", "show"]).stdout, "no IPv6 policy rule")
            setup_rules(topo, *remove)
            check("fwmark" not in topo.sh("r", ["ip", "-6", "rule", "show"]).stdout,
                  "IPv6 policy rule left after %s" % " ".join(remove))
            check("local" not in topo.sh("r", ["ip", "-6", "route", "show", "table", "100"]).stdout,
                  "IPv6 local route left after %s" % " ".join(remove))
            check("ftpsgate" not in topo.sh("r", ["nft", "list", "ruleset"]).stdout, "rules left")

    s.run("transparent-setup.sh: bad arguments refused (exit 2, nothing changed); --ipv6 and --remove", script_checks)


# --------------------------------------------------------------------------


def run_suite(name, title, unavailable, make_env, build_topo, start_servers, make_ctx, phases):
    """The skeleton both transparent tests share: skip with the reason when namespaces (or
    what else `unavailable()` names) are missing, build the topology, run each phase with
    its rules and proxy torn down after it, remove the namespaces at the end."""
    suite = H.Suite(name)
    env = topo = None
    try:
        # Skipped only on request: in CI (root, tests/setup-deps.sh) a missing namespace, nft or
        # IPv6 is a failure, never a green skip.
        why = None
        if H.SELFCHECK:
            why = "tests ftpsgate itself (self-check mode %s)" % H.SELFCHECK
        elif os.environ.get("FTPSGATE_NO_NETNS") == "1":
            why = "FTPSGATE_NO_NETNS=1"
        if why:
            def skip():
                raise Skip(why)
            suite.run(title, skip)
            sys.exit(suite.finish())
        missing = unavailable()
        if missing:
            suite.fail_setup("environment", RuntimeError("%s; this test needs it (FTPSGATE_NO_NETNS=1 skips it)"
                                                         % missing))
            sys.exit(suite.finish())
        binary = os.environ.get("FTPSGATE_BIN", "")
        if not binary or not os.access(binary, os.X_OK):
            suite.fail_setup("environment", RuntimeError("FTPSGATE_BIN (%r) is not an executable" % binary))
            sys.exit(suite.finish())
        binary = os.path.abspath(binary)
        try:
            env = make_env()
            topo = build_topo()
            servers = start_servers(env, topo)
        except Exception as e:  # noqa: BLE001
            suite.fail_setup("namespaces, certificates and vsftpd", e)
            sys.exit(suite.finish())
        c = make_ctx(suite, env, topo, *servers, binary)
        for phase in phases:
            try:
                phase(c)
            except Exception as e:  # noqa: BLE001 - a phase's setup error; the next phase starts clean
                suite.fail_setup(phase.__name__, e)
            finally:
                if c.proxy is not None:
                    c.proxy.kill()
                try:
                    remove_rules(topo)
                except Exception:  # noqa: BLE001
                    pass
    finally:
        if topo is not None:
            topo.close()
        if env is not None:
            env.close()
    sys.exit(suite.finish())


def main():
    def servers(env, topo):
        return (N.NsVsftpd(env, "server", topo, "s", SERVER).start(),
                N.NsVsftpd(env, "outside", topo, "s", OUTSIDE).start())

    run_suite("transparent", "transparent deployment in network namespaces", N.available,
              lambda: TEnv("transparent", ["127.0.0.1", SERVER, OUTSIDE, R_CLIENT, R_BAL, BAL]),
              build_topology, servers, Ctx,
              (phase_redirect, phase_pp_limits, phase_tproxy, phase_source_ip, phase_caps))


if __name__ == "__main__":
    main()
