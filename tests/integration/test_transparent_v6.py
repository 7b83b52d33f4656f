#!/usr/bin/python3
"""Transparent deployment over IPv6, in network namespaces this test creates and removes.

test_transparent.py does the same for IPv4 (and PROXY protocol, capabilities); this file
reuses its helpers (import test_transparent as T: it has no side effect at import) and
proves the IPv6 paths: IP6T_SO_ORIGINAL_DST for REDIRECT, IPV6_TRANSPARENT for TPROXY and
for "source": "client", 229/EPRT |2| on both sides, backend.allow with an IPv6 CIDR.

Topology (ULA addresses; namespace names fgv6-<role>-<pid>-<random>, DAD off):

    client fd77:1::2 --- rc6 fd77:1::1 [router: ftpsgate, nftables] rs6 fd77:2::1 --- server fd77:2::10 vsftpd :21
                                                                                          fd77:3::10 vsftpd :21
                                                                                          (outside backend.allow)

The client always dials the SERVER's address ([fd77:2::10]:21 explicit, :990 implicit);
the router diverts it with deploy/transparent-setup.sh ... --ipv6 --in rc6
--dst fd77:2::/64 --dst fd77:3::/64 (the rules are in deploy/TRANSPARENT.md, "IPv6"):

  A. REDIRECT (nftables `ip6 daddr {...} tcp dport 21 redirect to :2621`, passive range
     too): curl explicit (EPSV) down+up and implicit down, lftp EPSV and EPRT |2| get+put,
     ftplib EPSV and EPRT down+up; 229 replies, the client's data connections go to the
     server's address and are diverted; the log names the original destination
     [fd77:2::10]:21 and the backend; vsftpd logs the transfers; PASV gets 425 (227 cannot
     carry IPv6); active data comes from the router (fd77:1::1). A connection to
     [fd77:3::10]:21/990 (outside backend.allow) is refused and logged, the SYN counter in
     front of it stays 0; a connection to the listener itself (not diverted) is refused.
     The same with ip6tables (--fw iptables --ipv6: `ip6tables -t nat ... -d fd77:2::/64 -i rc6
     -p tcp --dport 21 -j REDIRECT --to-ports 2621`).
  B. TPROXY (`tproxy ip6 to :2621`, `ip -6 rule fwmark 1 lookup 100`, `ip -6 route local
     ::/0 dev lo table 100`), "transparent": true: the same transfers; active data
     connections reach the client FROM the server's address fd77:2::10. With conntrack active
     (a stateful forward rule) the connection is still logged as TPROXY, not REDIRECT/DNAT.
     The same with ip6tables (`-m socket --transparent -j MARK`, `-j TPROXY --on-port 2621`).
  C. Source-IP transparency ("source": "client") with TPROXY: vsftpd's own log names only
     fd77:1::2, for the control connection and every transfer (vsftpd refuses data from
     another IP than the control one); also with backend data_mode "active" (EPRT |2|
     naming the client, vsftpd connects to fd77:1::2 and ftpsgate takes it), and with REDIRECT
     (redirect --source-ip --ipv6).
  D. The outside-allow refusals of A, under TPROXY too. (A diverted connection whose
     original destination is ::1 cannot be made from another namespace: not tested.)

Needs root (namespaces, nftables) and IPv6: fails with the reason otherwise
(FTPSGATE_NO_NETNS=1 skips it); skipped in the harness self-check modes.
"""

import copy
import os
import re
import shutil
import socket
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import ftplib  # noqa: E402
import harness as H  # noqa: E402
import nettopo as N  # noqa: E402
import test_transparent as T  # noqa: E402  - helpers only; its main() runs under __main__ alone
from harness import Fail, check, check_eq  # noqa: E402

CLIENT = "fd77:1::2"
R_CLIENT = "fd77:1::1"       # router, client side
R_SERVER = "fd77:2::1"       # router, server side
SERVER = "fd77:2::10"        # the legacy FTP server
OUTSIDE = "fd77:3::10"       # a second server address, not in backend.allow
ALLOW = ["fd77:2::/64"]
DIVERT = ["--dst", "fd77:2::/64", "--dst", "fd77:3::/64"]   # what the router diverts
IN = "rc6"

# ftpsgate's listener ports in the router (distinct from test_transparent's, for clarity:
# each test has its own namespaces anyway)
P_EXPL, P_IMPL, P_SRC2 = 2621, 2690, 2622
PAS_EXPL, PAS_IMPL, PAS_SRC2 = (41000, 41009), (41100, 41109), (41200, 41209)

SMALL = T.SMALL
BIG = T.BIG


def rx(addr):
    return re.escape(addr)


def hostport(addr, port):
    return "[%s]:%d" % (addr, port)


class Dest(T.Dest):
    """T.Dest for an IPv6 literal: the URL needs brackets, ftplib and sockets do not."""

    def url(self, path):
        return "%s://[%s]:%d%s" % ("ftps" if self.implicit else "ftp", self.host, self.port, path)


def bracketed(dest):
    """The same destination for lftp, whose `open` takes a URL (host in brackets)."""
    d = copy.copy(dest)
    d.host = "[%s]" % dest.host
    return d


class _Rec6(T._Rec):
    """test_transparent's recorder of data-connection peers, recording the commands sent too."""

    def putcmd(self, line):
        self.sent.append(line)
        super().putcmd(line)


class RecFTPS(_Rec6, H.FTPS):
    pass


class RecImplicitFTPS(_Rec6, H.ImplicitFTPS):
    pass


class NsVsftpd6(N.NsVsftpd):
    """nettopo's vsftpd listening on one IPv6 address (listen_ipv6=YES, as backends.VsftpdV6)."""

    def _write_conf(self):
        super()._write_conf()
        with open(self.conf) as f:
            lines = [ln for ln in f.read().splitlines()
                     if not ln.startswith(("listen=", "listen_ipv6=", "listen_address="))]
        lines += ["listen=NO", "listen_ipv6=YES", "listen_address6=%s" % self.host]
        with open(self.conf, "w") as f:
            f.write("\n".join(lines) + "\n")

    def start(self):
        super().start()
        # Both vsftpds listen on port 21: wait for this one's own address.
        want = hostport(self.host, self.port)

        def up():
            if self.proc.poll() is not None:
                return "exited"
            r = self.topo.sh(self.role, ["ss", "-Hltn", "sport = :%d" % self.port], check=False, timeout=10)
            return want in r.stdout
        if H.wait_until(up, 10, step=0.1) is not True:
            raise RuntimeError("vsftpd %s does not listen on %s; output: %s"
                               % (self.name, want, H.tail_file(self.out, 10)))
        return self


def build_topology():
    t = N.Topology("fgv6")
    for role in ("c", "r", "s"):
        t.add(role)
        # No duplicate address detection: the addresses are usable at once (a tentative
        # address is skipped by TPROXY's local-address choice and cannot be bound).
        for conf in ("all", "default"):
            t.sysctl(role, "net.ipv6.conf.%s.accept_dad" % conf, 0)
    t.link("r", IN, R_CLIENT + "/64", "c", "c6", CLIENT + "/64")
    t.link("r", "rs6", R_SERVER + "/64", "s", "s6", SERVER + "/64")
    t.addr("s", "s6", OUTSIDE + "/64")
    t.route("c", "::/0", "via", R_CLIENT)
    t.route("s", "::/0", "via", R_SERVER)
    t.route("r", "fd77:3::/64", "via", SERVER)
    t.sysctl("r", "net.ipv6.conf.all.forwarding", 1)
    # A SYN counter in front of the vsftpd that is outside backend.allow: "nothing connected".
    t.nft("s", "table inet fgcount6 {\n"
               "  counter outside_syn { }\n"
               "  chain input { type filter hook input priority 0; policy accept;\n"
               "    ip6 daddr %s tcp dport 21 tcp flags & (syn|ack) == syn counter name outside_syn\n"
               "  }\n"
               "}\n" % OUTSIDE)
    for role in ("c", "r", "s"):
        def settled(role=role):
            return t.sh(role, [N.IP, "-6", "addr", "show", "tentative"], check=False).stdout.strip() == ""
        if H.wait_until(settled, 5, step=0.1) is not True:
            raise RuntimeError("tentative IPv6 addresses left in %s" % t.ns[role])
    return t


def path_check(topo):
    """Before anything is diverted, the client reaches the server's vsftpd through the router."""
    with topo.inside("c"):
        with socket.create_connection((SERVER, 21), timeout=10) as d:
            d.settimeout(10)
            if not d.recv(100).startswith(b"220"):
                raise RuntimeError("no greeting from [%s]:21 through the router" % SERVER)


def ipv6_available():
    if not os.path.exists("/proc/sys/net/ipv6"):
        return "the kernel has no IPv6 (or it is disabled at boot)"
    return None


def outside_syns(topo):
    r = topo.sh("s", ["nft", "list", "counter", "inet", "fgcount6", "outside_syn"])
    m = re.search(r"packets (\d+)", r.stdout)
    return int(m.group(1)) if m else -1


def remove_rules(topo):
    T.setup_rules(topo, "--remove", "--ipv6")
    if shutil.which("conntrack"):
        for fam in ("ipv4", "ipv6"):
            topo.sh("r", ["conntrack", "-F", "-f", fam], check=False, timeout=10)


def removed_check(topo):
    remove_rules(topo)
    r = topo.sh("r", ["nft", "list", "ruleset"]).stdout
    check("ftpsgate" not in r, "rules left after --remove --ipv6: %s" % r[:600])
    for fam in ("-4", "-6"):
        rules = topo.sh("r", [N.IP, fam, "rule", "show"]).stdout
        check("fwmark" not in rules, "ip %s rule left after --remove --ipv6: %s" % (fam, rules))
        routes = topo.sh("r", [N.IP, fam, "route", "show", "table", "100"], check=False).stdout
        check(not routes.strip(), "ip %s route table 100 left after --remove --ipv6: %s" % (fam, routes))
    remove_rules(topo)  # idempotent


def listener(name, port, mode, passive, **kw):
    """test_transparent's intercepting listener, on [::] with the IPv6 allow list."""
    ln = T.intercept_listener(name, port, mode, passive, **kw)
    ln["bind"] = hostport("::", port)
    ln["backend"]["allow"] = ALLOW
    return ln


# --------------------------------------------------------------------------
# Transfers, run in the client's namespace (test_transparent's Ctx, IPv6 checks added)


class Ctx(T.Ctx):

    def curl_get(self, dest, size=BIG, **kw):
        trace = super().curl_get(dest, size, epsv=True, **kw)
        self._check_229(trace, dest)
        return trace

    def curl_put(self, dest, size=BIG, **kw):
        trace = super().curl_put(dest, size, epsv=True, **kw)
        self._check_229(trace, dest)
        return trace

    @staticmethod
    def _check_229(trace, dest):
        ports = re.findall(r"^< 229 .*\(\|\|\|(\d+)\|\)", trace, re.M)
        check(ports, "no 229 reply in curl's trace")
        # each data connection goes to the address the client dialled (the server's), at the 229 port
        tried = re.findall(r"^\* +Trying \[([0-9a-f:]+)\]:(\d+)", trace, re.M)
        check_eq(sorted(set(tried)), sorted(set([(dest.host, str(dest.port))] + [(dest.host, p) for p in ports])),
                 "[address]:port curl connected to (control, data)")

    def lftp_getput(self, dest, active, size=BIG):
        trace = super().lftp_getput(bracketed(dest), active, epsv=True, size=size)
        if active:
            check(re.search(r"---> EPRT \|2\|", trace), "lftp sent no EPRT |2|")
            check(re.search(r"<--- 200 EPRT", trace), "no 200 reply to lftp's EPRT")
        else:
            check(re.search(r"---> EPSV", trace) and re.search(r"<--- 229 ", trace), "lftp: no EPSV/229")
        return trace

    def ftplib_session(self, dest, mode, want_data_peer=None, size=BIG, pasv_refused=False, timeout=30):
        """mode 'epsv' or 'active' (EPRT): download and upload in one session. Returns the
        FTP object (its .sent commands and .data_peers)."""
        rpath, local, sha = self.files[size]
        name = self.uniq("ftplib-up-" + mode)
        with self.topo.inside("c"):
            f = H.ftplib_connect(dest, epsv=(mode == "epsv"), timeout=timeout,
                                 cls=RecImplicitFTPS if dest.implicit else RecFTPS, login=False)
            f.sent, f.data_peers = [], []
            try:
                check_eq(f.af, socket.AF_INET6, "family of ftplib's control connection")
                if not dest.implicit:
                    f.auth()
                f.login(H.FTP_USER, H.PASSWORD)
                f.prot_p()
                if pasv_refused:
                    # RFC 2428 §4: 227 cannot carry an IPv6 address; the session goes on.
                    try:
                        r = f.sendcmd("PASV")
                        raise Fail("PASV on an IPv6 session got %r, want 425" % r)
                    except ftplib.error_temp as e:
                        check(str(e).startswith("425"), "PASV reply %s" % e)
                if mode == "active":
                    f.set_pasv(False)
                n, got, resp = H.ftplib_get(f, rpath)
                check(resp.startswith("226"), "RETR final reply %r" % resp)
                check_eq((n, got), (size, sha), "ftplib download: size and sha256")
                r2 = H.ftplib_put(f, local, "/up/" + name)
                check(r2.startswith("226"), "STOR final reply %r" % r2)
            finally:
                H.quit_quietly(f)
        H.check_stored(self.vs, name, size, sha, "ftplib upload")
        if mode == "active":
            eprt = [c for c in f.sent if c.startswith("EPRT ")]
            check(len(eprt) == 2 and all(c.startswith("EPRT |2|%s|" % CLIENT) for c in eprt),
                  "ftplib's EPRT commands: %r" % eprt)
            check(not any(c.startswith(("EPSV", "PASV")) for c in f.sent), "ftplib used passive mode")
        else:
            check(f.last_pasv and f.last_pasv[0].startswith("229 "), "last EPSV reply %r" % (f.last_pasv,))
            check_eq(f.last_pasv[1], dest.host, "host ftplib dialled after 229 (the server's)")
        check_eq(len(f.data_peers), 2, "data connections")
        if want_data_peer:
            check_eq(sorted(set(f.data_peers)), [want_data_peer], "peer address of the data connections")
        return f

    def vsftpd_transfers(self, mark, downs, ups, vs=None):
        """vsftpd's own transfer log: at least downs OK downloads and ups OK uploads, no failure."""
        vs = vs or self.vs

        def enough():
            t = vs.transfers_since(mark)
            return (sum(1 for ok, what, _, _ in t if ok and what == "DOWNLOAD") >= downs and
                    sum(1 for ok, what, _, _ in t if ok and what == "UPLOAD") >= ups)
        H.wait_until(enough, 5)
        t = vs.transfers_since(mark)
        check(enough(), "vsftpd logged %r, want >= %d downloads and %d uploads" % (t, downs, ups))
        check(all(ok for ok, _, _, _ in t), "vsftpd logged a failed transfer: %r" % t)
        return t

    def vsftpd_saw_only(self, mark, who, downs, ups):
        text = self.vs.log_since(mark)
        check_eq(sorted(self.vs.clients_since(mark)), [who], "client addresses in vsftpd's own log")
        check(re.search(r'CONNECT: Client "%s"' % rx(who), text), "no CONNECT from %s in vsftpd's log" % who)
        for what, n in (("DOWNLOAD", downs), ("UPLOAD", ups)):
            got = len(re.findall(r'OK %s: Client "%s"' % (what, rx(who)), text))
            check(got >= n, "vsftpd logged %d 'OK %s: Client \"%s\"' lines, want %d" % (got, what, who, n))
        check(not re.search(r"Bad IP|FAIL (UP|DOWN)LOAD", text), "vsftpd refused or failed a transfer: %s"
              % text[-400:])


# --------------------------------------------------------------------------
# Cases shared by the phases


def outside_allow_cases(c, tag):
    s, topo = c.s, c.topo

    def refused():
        before = outside_syns(topo)
        check(before >= 0, "cannot read the SYN counter in the server namespace")
        mark, vmark = c.proxy.log_mark(), c.vs2.log_mark()
        T.refused_connect(topo, OUTSIDE, 21)
        T.refused_connect(topo, OUTSIDE, 990, implicit=True)
        c.log_check(mark, [r"client=\[%s\]:\d+ SECURITY: intercepted connection to %s refused: outside "
                           r"backend\.allow" % (rx(CLIENT), rx(hostport(OUTSIDE, port))) for port in (21, 990)])
        # Refused at accept, before any session exists: nothing can dial OUTSIDE later.
        check_eq(outside_syns(topo) - before, 0, "SYNs that reached [%s]:21 in the server namespace" % OUTSIDE)
        check_eq(c.vs2.log_since(vmark).strip(), "", "the log of the vsftpd on %s" % OUTSIDE)
        check(not re.search(r"backend \[%s\]" % rx(OUTSIDE), c.proxy.log_since(mark)),
              "the proxy logged a backend connection to %s" % OUTSIDE)
        # ... and that vsftpd is really there: a direct connection from the router is counted.
        with topo.inside("r"):
            with socket.create_connection((OUTSIDE, 21), timeout=10) as d:
                d.settimeout(10)
                check(d.recv(100).startswith(b"220"), "no greeting from the vsftpd on %s" % OUTSIDE)
        check(outside_syns(topo) - before >= 1, "the SYN counter did not count a direct connection")

    s.run("%s v6: diverted connection to [%s]:21/990 (outside backend.allow) refused and logged; "
          "no SYN reaches it" % (tag, OUTSIDE), refused)


def intercept_log(c, mark, dport, how, backend_port=21):
    c.log_check(mark, [r"client=\[%s\]:\d+ intercepted: original destination %s \(%s\)"
                       % (rx(CLIENT), rx(hostport(SERVER, dport)), how),
                       r"client=\[%s\]:\d+ backend %s\b" % (rx(CLIENT), rx(hostport(SERVER, backend_port)))])


# --------------------------------------------------------------------------
# Phase A: REDIRECT


def phase_redirect(c):
    s, topo, env = c.s, c.topo, c.env
    expl = Dest(SERVER, 21, env.ca)
    impl = Dest(SERVER, 990, env.ca, implicit=True)

    def setup():
        T.setup_rules(topo, "redirect", "--ipv6", "--in", IN, *DIVERT, "--port", "21:%d" % P_EXPL,
                      "--port", "990:%d" % P_IMPL, "--passive", T.rng(PAS_EXPL), "--passive", T.rng(PAS_IMPL))
        rules = topo.sh("r", ["nft", "list", "table", "inet", "ftpsgate"]).stdout
        for want in (r"ip6 daddr \{ fd77:2::/64, fd77:3::/64 \} tcp dport 21 redirect to :%d" % P_EXPL,
                     r"ip6 daddr \{ fd77:2::/64, fd77:3::/64 \} tcp dport 990 redirect to :%d" % P_IMPL,
                     r"ip6 daddr \{ fd77:2::/64, fd77:3::/64 \} tcp dport %d-%d redirect" % PAS_EXPL):
            check(re.search(want, rules), "no rule matching %r in: %s" % (want, rules))
        c.start_proxy("redirect6", [
            listener("redir6-explicit", P_EXPL, "explicit", PAS_EXPL),
            listener("redir6-implicit", P_IMPL, "implicit", PAS_IMPL, backend_port=21),
        ])

    if not s.run("REDIRECT v6: transparent-setup.sh redirect --ipv6 (nftables ip6 rules), ftpsgate on [::] starts",
                 setup):
        return

    def curl_explicit():
        mark, vmark = c.proxy.log_mark(), c.vs.log_mark()
        c.curl_get(expl)
        c.curl_put(expl)
        intercept_log(c, mark, 21, "REDIRECT/DNAT")
        c.vsftpd_transfers(vmark, 1, 1)

    def curl_implicit():
        mark, vmark = c.proxy.log_mark(), c.vs.log_mark()
        c.curl_get(impl)
        c.curl_put(impl, SMALL)
        intercept_log(c, mark, 990, "REDIRECT/DNAT")
        c.vsftpd_transfers(vmark, 1, 1)

    s.run("REDIRECT v6: curl explicit FTPS to [%s]:21, EPSV (229, data to the server's address), down+up; "
          "log names the original destination and the backend; vsftpd logs both" % SERVER, curl_explicit)
    s.run("REDIRECT v6: curl implicit ftps://[%s]:990 (backend port 21), down+up" % SERVER, curl_implicit)

    def lftp_both():
        vmark = c.vs.log_mark()
        c.lftp_getput(expl, active=False)
        c.lftp_getput(expl, active=True)
        c.lftp_getput(impl, active=True, size=SMALL)
        c.vsftpd_transfers(vmark, 3, 3)

    s.run("REDIRECT v6: lftp explicit EPSV and EPRT |2|, implicit EPRT, get+put", lftp_both)

    def ftplib_passive():
        vmark = c.vs.log_mark()
        c.ftplib_session(expl, "epsv", want_data_peer=SERVER, pasv_refused=True)
        c.ftplib_session(impl, "epsv", want_data_peer=SERVER, size=SMALL)
        c.vsftpd_transfers(vmark, 2, 2)

    s.run("REDIRECT v6: ftplib explicit+implicit EPSV down+up (data connections to %s, diverted); "
          "PASV gets 425" % SERVER, ftplib_passive)

    def ftplib_active():
        mark, vmark = c.proxy.log_mark(), c.vs.log_mark()
        f = c.ftplib_session(expl, "active", want_data_peer=R_CLIENT)
        c.ftplib_session(impl, "active", want_data_peer=R_CLIENT, size=SMALL)
        print("     (REDIRECT: active data connections came from %s)" % ", ".join(sorted(set(f.data_peers))))
        c.log_check(mark, [r"client=\[%s\]:\d+ .*EPRT \|2\|%s\|" % (rx(CLIENT), rx(CLIENT))])
        c.vsftpd_transfers(vmark, 2, 2)

    s.run("REDIRECT v6: ftplib explicit+implicit active (EPRT |2|), down+up; data from the router (%s)"
          % R_CLIENT, ftplib_active)

    outside_allow_cases(c, "REDIRECT")

    def not_diverted():
        mark = c.proxy.log_mark()
        T.refused_connect(topo, R_CLIENT, P_EXPL)
        c.log_check(mark, [r"SECURITY: intercepted connection to %s refused: not diverted"
                           % rx(hostport(R_CLIENT, P_EXPL))])

    s.run("REDIRECT v6: a connection straight to the listener [%s]:%d (not diverted) is refused and logged"
          % (R_CLIENT, P_EXPL), not_diverted)
    def ip6tables_variant():
        check(shutil.which("ip6tables"), "ip6tables not installed (tests/setup-deps.sh installs iptables)")
        T.setup_rules(topo, "redirect", "--ipv6", "--fw", "iptables", "--in", IN, *DIVERT,
                      "--port", "21:%d" % P_EXPL, "--port", "990:%d" % P_IMPL,
                      "--passive", T.rng(PAS_EXPL), "--passive", T.rng(PAS_IMPL))
        check("inet ftpsgate" not in topo.sh("r", ["nft", "list", "tables"]).stdout,
              "the nftables table is still there after switching to iptables")
        rules = topo.sh("r", ["ip6tables", "-t", "nat", "-S", "FTPSGATE"]).stdout
        for want in (r"-A FTPSGATE -d fd77:2::/64 -i %s -p tcp -m tcp --dport 21 -j REDIRECT --to-ports %d"
                     % (IN, P_EXPL),
                     r"-A FTPSGATE -d fd77:3::/64 -i %s -p tcp -m tcp --dport 990 -j REDIRECT --to-ports %d"
                     % (IN, P_IMPL),
                     r"-A FTPSGATE -d fd77:2::/64 -i %s -p tcp -m tcp --dport %d:%d -j REDIRECT" % ((IN,) + PAS_EXPL)):
            check(re.search(want, rules), "no ip6tables rule matching %r in: %s" % (want, rules))
        # only IPv6 destinations were given: the IPv4 chain diverts nothing
        v4 = topo.sh("r", ["iptables", "-t", "nat", "-S", "FTPSGATE"], check=False).stdout
        check("REDIRECT" not in v4, "IPv4 REDIRECT rules for IPv6 destinations: %s" % v4)
        mark, vmark = c.proxy.log_mark(), c.vs.log_mark()
        c.curl_get(expl, SMALL)
        c.curl_put(impl, SMALL)
        c.ftplib_session(expl, "active", want_data_peer=R_CLIENT, size=SMALL)
        intercept_log(c, mark, 21, "REDIRECT/DNAT")
        intercept_log(c, mark, 990, "REDIRECT/DNAT")
        c.vsftpd_transfers(vmark, 2, 2)

    s.run("REDIRECT v6 with ip6tables (transparent-setup.sh --fw iptables --ipv6): curl EPSV, ftplib EPRT",
          ip6tables_variant)
    s.run("REDIRECT v6: ftpsgate exits 0 on SIGTERM, no sanitizer report, no password in its log",
          c.proxy.stop_checked)
    s.run("REDIRECT v6: transparent-setup.sh --remove --ipv6 leaves no rule", lambda: removed_check(topo))


# --------------------------------------------------------------------------
# Phase B: TPROXY


def tproxy_rules(c):
    topo = c.topo
    T.setup_rules(topo, "tproxy", "--ipv6", "--in", IN, *DIVERT, "--port", "21:%d" % P_EXPL,
                  "--port", "990:%d" % P_IMPL)
    rules = topo.sh("r", ["nft", "list", "table", "inet", "ftpsgate"]).stdout
    for want in (r"socket transparent 1 socket wildcard 1 accept",
                 r"socket transparent 1 meta mark set 0x0*1 accept",
                 r"ip6 daddr \{ fd77:2::/64, fd77:3::/64 \} (meta l4proto tcp )?tcp dport 21 tproxy ip6 to :%d" % P_EXPL,
                 r"ip6 daddr \{ fd77:2::/64, fd77:3::/64 \} (meta l4proto tcp )?tcp dport 990 tproxy ip6 to :%d"
                 % P_IMPL):
        check(re.search(want, rules), "no rule matching %r in: %s" % (want, rules))
    check(re.search(r"fwmark 0x1 lookup 100", topo.sh("r", [N.IP, "-6", "rule", "show"]).stdout),
          "no IPv6 'fwmark 1 lookup 100' policy rule")
    check(re.search(r"local (default|::/0) dev lo", topo.sh("r", [N.IP, "-6", "route", "show", "table", "100"]).stdout),
          "no IPv6 local default route in table 100")


def phase_tproxy(c):
    s, topo, env = c.s, c.topo, c.env
    expl = Dest(SERVER, 21, env.ca)
    impl = Dest(SERVER, 990, env.ca, implicit=True)

    def setup():
        tproxy_rules(c)
        c.start_proxy("tproxy6", [
            listener("tp6-explicit", P_EXPL, "explicit", PAS_EXPL, transparent=True),
            listener("tp6-implicit", P_IMPL, "implicit", PAS_IMPL, transparent=True, backend_port=21),
        ])

    if not s.run("TPROXY v6: transparent-setup.sh tproxy --ipv6 (tproxy ip6, ip -6 rule/route), ftpsgate starts",
                 setup):
        return

    def curl_both():
        # No passive range is diverted under TPROXY: a data connection to [fd77:2::10]:<229 port>
        # reaches ftpsgate only because its passive socket listens on the server's address.
        mark, vmark = c.proxy.log_mark(), c.vs.log_mark()
        c.curl_get(expl)
        c.curl_put(expl)
        c.curl_get(impl, SMALL)
        intercept_log(c, mark, 21, "TPROXY")
        intercept_log(c, mark, 990, "TPROXY")
        check(not re.search(r"SECURITY: refused", c.proxy.log_since(mark)), "a data connection was refused")
        c.vsftpd_transfers(vmark, 2, 1)

    s.run("TPROXY v6: curl explicit (21) EPSV down+up and implicit (990) down; passive port on the "
          "server's address", curl_both)

    def ftplib_all():
        vmark = c.vs.log_mark()
        c.ftplib_session(expl, "active", want_data_peer=SERVER)
        c.ftplib_session(impl, "active", want_data_peer=SERVER, size=SMALL)
        c.ftplib_session(expl, "epsv", want_data_peer=SERVER, pasv_refused=True)
        c.vsftpd_transfers(vmark, 3, 3)

    s.run("TPROXY v6: ftplib explicit+implicit active (EPRT |2|): data connections come FROM the server's "
          "address %s; explicit EPSV down+up" % SERVER, ftplib_all)
    s.run("TPROXY v6: lftp explicit EPRT |2| get+put", lambda: c.lftp_getput(expl, active=True))
    outside_allow_cases(c, "TPROXY")

    def with_conntrack():
        # A stateful firewall on the router makes conntrack track every connection, so
        # IP6T_SO_ORIGINAL_DST answers for a TPROXY-diverted one too (with the local address).
        topo.nft("r", "table inet fgstate6 {\n"
                      "  chain forward_state { type filter hook forward priority 0; policy accept;\n"
                      "    ct state established,related accept\n"
                      "  }\n"
                      "}\n")
        try:
            mark = c.proxy.log_mark()
            c.curl_get(expl, SMALL)
            c.ftplib_session(expl, "active", want_data_peer=SERVER, size=SMALL)
            intercept_log(c, mark, 21, "TPROXY")
            check("REDIRECT/DNAT" not in c.proxy.log_since(mark), "a TPROXY connection logged as REDIRECT/DNAT")
        finally:
            topo.sh("r", ["nft", "delete", "table", "inet", "fgstate6"], check=False)

    s.run("TPROXY v6 with conntrack active (a stateful forward rule): still logged as TPROXY, not REDIRECT/DNAT",
          with_conntrack)

    def ip6tables_variant():
        check(shutil.which("ip6tables"), "ip6tables not installed (tests/setup-deps.sh installs iptables)")
        T.setup_rules(topo, "tproxy", "--ipv6", "--fw", "iptables", "--in", IN, *DIVERT,
                      "--port", "21:%d" % P_EXPL, "--port", "990:%d" % P_IMPL)
        check("inet ftpsgate" not in topo.sh("r", ["nft", "list", "tables"]).stdout,
              "the nftables table is still there after switching to iptables")
        rules = topo.sh("r", ["ip6tables", "-t", "mangle", "-S", "FTPSGATE"]).stdout
        for want in (r"-p tcp -m socket --transparent -j MARK --set-xmark 0x1/0xffffffff",
                     r"-p tcp -m socket --transparent -j ACCEPT",
                     r"-d fd77:2::/64 -i %s -p tcp -m tcp --dport 21 -j TPROXY --on-port %d --on-ip :: "
                     r"--tproxy-mark 0x1/0xffffffff" % (IN, P_EXPL)):
            check(re.search(want, rules), "no ip6tables rule matching %r in: %s" % (want, rules))
        check(re.search(r"fwmark 0x1 lookup 100", topo.sh("r", [N.IP, "-6", "rule", "show"]).stdout),
              "no IPv6 'fwmark 1 lookup 100' policy rule with --fw iptables")
        mark = c.proxy.log_mark()
        c.curl_get(expl, SMALL)
        c.curl_put(impl, SMALL)
        c.ftplib_session(expl, "active", want_data_peer=SERVER, size=SMALL)
        intercept_log(c, mark, 21, "TPROXY")
        intercept_log(c, mark, 990, "TPROXY")

    s.run("TPROXY v6 with ip6tables (-j TPROXY, -m socket --transparent): curl EPSV, ftplib EPRT from %s"
          % SERVER, ip6tables_variant)
    s.run("TPROXY v6: ftpsgate exits 0 on SIGTERM, no sanitizer report, no password in its log",
          c.proxy.stop_checked)
    s.run("TPROXY v6: transparent-setup.sh --remove --ipv6 leaves no rule or policy route", lambda: removed_check(topo))


# --------------------------------------------------------------------------
# Phase C: source-IP transparency


def phase_source_ip(c):
    s, topo, env = c.s, c.topo, c.env
    expl = Dest(SERVER, 21, env.ca)
    impl = Dest(SERVER, 990, env.ca, implicit=True)
    direct = Dest(R_CLIENT, P_SRC2, env.ca)

    def setup():
        tproxy_rules(c)
        # src6-direct: EPRT |2| toward vsftpd names the client, vsftpd connects there
        c.start_proxy("source-ip6", T.source_ip_listeners(
            "src6", hostport(R_CLIENT, P_SRC2), hostport(SERVER, 21), ports=(P_EXPL, P_IMPL),
            passive=(PAS_EXPL, PAS_IMPL, PAS_SRC2), make_intercept=listener))

    if not s.run("source IP v6: TPROXY rules + policy routing (tproxy --ipv6), ftpsgate starts", setup):
        return

    def curl_both():
        mark, vmark = c.proxy.log_mark(), c.vs.log_mark()
        c.curl_get(expl)
        c.curl_put(expl)
        c.curl_get(impl, SMALL)
        c.log_check(mark, [r"client=\[%s\]:\d+ backend %s \(from the client's address\)"
                           % (rx(CLIENT), rx(hostport(SERVER, 21)))])
        intercept_log(c, mark, 990, "TPROXY")
        c.vsftpd_saw_only(vmark, CLIENT, 2, 1)

    s.run("source IP v6 + TPROXY: curl explicit+implicit, down+up; vsftpd's log names only %s" % CLIENT,
          curl_both)

    def others():
        vmark = c.vs.log_mark()
        c.ftplib_session(expl, "epsv", want_data_peer=SERVER)
        c.ftplib_session(impl, "active", want_data_peer=SERVER, size=SMALL)
        c.lftp_getput(expl, active=True, size=SMALL)
        c.vsftpd_saw_only(vmark, CLIENT, 3, 3)

    s.run("source IP v6 + TPROXY: ftplib EPSV and active (data from %s), lftp EPRT; vsftpd's log names "
          "only %s" % (SERVER, CLIENT), others)

    def backend_active():
        vmark = c.vs.log_mark()
        c.curl_get(direct, SMALL)
        c.curl_put(direct, SMALL)
        c.vsftpd_saw_only(vmark, CLIENT, 1, 1)
        cmds = [x for _, x in c.vs.commands_since(vmark)]
        check(any(x.startswith("EPRT |2|%s|" % CLIENT) for x in cmds),
              "the backend got no EPRT |2|%s|...: %s" % (CLIENT, cmds[-6:]))

    s.run("source IP v6, non-intercepting listener, backend data_mode active: EPRT |2|%s|, vsftpd connects "
          "there and ftpsgate takes it" % CLIENT, backend_active)
    s.run("source IP v6: ftpsgate exits 0 on SIGTERM, no sanitizer report", c.proxy.stop_checked)

    def with_redirect():
        remove_rules(topo)
        T.setup_rules(topo, "redirect", "--source-ip", "--ipv6", "--in", IN, *DIVERT, "--port", "21:%d" % P_EXPL,
                      "--passive", T.rng(PAS_EXPL))
        rules = topo.sh("r", ["nft", "list", "table", "inet", "ftpsgate"]).stdout
        check(re.search(r"socket transparent 1 meta mark set 0x0*1 accept", rules) and
              re.search(r"ip6 daddr .* tcp dport 21 redirect to :%d" % P_EXPL, rules),
              "redirect --source-ip rules: %s" % rules)
        check(re.search(r"fwmark 0x1 lookup 100", topo.sh("r", [N.IP, "-6", "rule", "show"]).stdout),
              "no IPv6 'fwmark 1 lookup 100' policy rule after redirect --source-ip --ipv6")
        c.start_proxy("source-ip6-redirect", [
            listener("srcr6-explicit", P_EXPL, "explicit", PAS_EXPL, source="client"),
        ])
        mark, vmark = c.proxy.log_mark(), c.vs.log_mark()
        c.curl_get(expl, SMALL)
        c.curl_put(expl, SMALL)
        c.lftp_getput(expl, active=True, size=SMALL)
        intercept_log(c, mark, 21, "REDIRECT/DNAT")
        c.vsftpd_saw_only(vmark, CLIENT, 2, 2)
        c.proxy.stop_checked()

    s.run("source IP v6 + REDIRECT (transparent-setup.sh redirect --source-ip --ipv6): curl, lftp EPRT; "
          "vsftpd's log names only %s" % CLIENT, with_redirect)
    s.run("source IP v6: transparent-setup.sh --remove --ipv6 leaves no rule or policy route",
          lambda: removed_check(topo))


# --------------------------------------------------------------------------


def main():
    def servers(env, topo):
        vs = NsVsftpd6(env, "server", topo, "s", SERVER).start()
        vs2 = NsVsftpd6(env, "outside", topo, "s", OUTSIDE).start()
        path_check(topo)
        return vs, vs2

    T.run_suite("transparent_v6", "IPv6 transparent deployment in network namespaces",
                lambda: N.available() or ipv6_available(),
                lambda: T.TEnv("transparent-v6", [SERVER, OUTSIDE, R_CLIENT], 256 * H.MiB),
                build_topology, servers, Ctx, (phase_redirect, phase_tproxy, phase_source_ip))


if __name__ == "__main__":
    main()
