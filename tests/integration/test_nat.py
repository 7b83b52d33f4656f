#!/usr/bin/python3
"""ftpsgate behind a real NAT with a port mapping (issue 5), in network namespaces.

The test builds this network out of namespaces it creates (names fgt-<pid>-<random>-<role>)
and veth pairs made inside them; every address exists only inside those namespaces, and
all of it is deleted at the end (also on failure; see netns.py):

  client  203.0.113.50 --+                       +-- 10.99.2.1 ---- 10.99.2.2  dmz: ftpsgate
                         |  203.0.113.10         |                   10.99.4.1 -+
                         +-- router (nft DNAT) --+                              |
  lan     10.99.3.2 -----+  10.99.3.1                    backend: vsftpd 10.99.4.2:21

The router DNATs 203.0.113.10 and 10.99.3.1, port 21 to 10.99.2.2:21 and ports
31000-31099 one to one to 10.99.2.2:50000-50099 (a Docker-like -p 31000-31099:50000-50099).
ftpsgate runs deploy/nat-example.json (certificate paths replaced): passive.ports
50000-50099, passive.announce_ports 31000-31099, passive.announce: 10.99.3.0/24 gets
10.99.3.1, everyone else (default) the public 203.0.113.10.

Checked: `ftpsgate --check-config` prints deploy/nat-example.check.txt exactly; a client
in "client" gets 227/229 replies whose text is that output's line for "default" (with the
port it was given), and transfers through the DNAT with curl, lftp and ftplib, PASV and
EPSV, sha256 both ways; a client in "lan" gets the 10.99.3.0/24 line and transfers too;
the router's passive-port DNAT rule counted the data connections; the listen range
itself is not reachable from outside; ftpsgate saw the real client addresses; and the
namespaces are gone afterwards.

If network namespaces cannot be created (not root, no CAP_SYS_ADMIN), the file fails and
says so; FTPSGATE_NO_NETNS=1 turns that into a skip. FTPSGATE_NAT_WRITE=1 rewrites
deploy/nat-example.check.txt from the current --check-config output.
"""

import json
import os
import re
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import harness as H  # noqa: E402
import backends as B  # noqa: E402
import netns as N  # noqa: E402
from harness import check, check_eq  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLE = os.path.normpath(os.path.join(HERE, "..", "..", "deploy", "nat-example.json"))
EXAMPLE_CHECK = os.path.normpath(os.path.join(HERE, "..", "..", "deploy", "nat-example.check.txt"))

PUBLIC = "203.0.113.10"
EXT_CLIENT = "203.0.113.50"
LAN_GW, LAN_CLIENT = "10.99.3.1", "10.99.3.2"
DMZ_GW, PROXY_IP = "10.99.2.1", "10.99.2.2"
BK_GW, BACKEND_IP = "10.99.4.1", "10.99.4.2"
CTRL_PORT = 21
SIZE = 3 * H.MiB + 7


def rng(text):
    a, b = text.split("-")
    return int(a), int(b)


def server_cert(env, ips):
    """A server certificate for the given IPs, signed by the harness's test CA."""
    d = os.path.join(env.tmp, "certs")
    key, csr, ext, crt = (os.path.join(d, "nat." + x) for x in ("key", "csr", "ext", "pem"))
    with open(ext, "w") as f:
        f.write("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
                "extendedKeyUsage=serverAuth\nsubjectAltName=%s\n" % ",".join("IP:" + ip for ip in ips))
    for argv in (["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-sha256", "-subj", "/CN=ftpsgate nat test",
                  "-keyout", key, "-out", csr],
                 ["openssl", "x509", "-req", "-in", csr, "-CA", env.certs.ca, "-CAkey", os.path.join(d, "ca.key"),
                  "-CAcreateserial", "-sha256", "-days", "2", "-extfile", ext, "-out", crt]):
        r = H.run_cmd(argv, timeout=60)
        if r.returncode != 0:
            raise RuntimeError("openssl: %s" % r.stderr[-500:])
    os.chmod(key, 0o600)
    return crt, key


def expected_line(template, port):
    """A --check-config 227/229 line with the first port replaced by port."""
    if template.startswith("227"):
        return re.sub(r"\((\d+),(\d+),(\d+),(\d+),\d+,\d+\)",
                      lambda m: "(%s,%s,%s,%s,%d,%d)" % (m.group(1), m.group(2), m.group(3), m.group(4),
                                                         port >> 8, port & 255), template)
    return re.sub(r"\(\|\|\|\d+\|\)", "(|||%d|)" % port, template)


def parse_check(text):
    """{network: (227 line, 229 line)} from --check-config's listing."""
    out = {}
    lines = text.splitlines()
    for i, ln in enumerate(lines):
        m = re.match(r"^\s+clients (\S+): (\d{3} .*)$", ln)
        if m and i + 1 < len(lines):
            out[m.group(1)] = (m.group(2), lines[i + 1].strip())
    return out


def build_network(lab, ann_lo, ann_hi, lis_lo):
    cl, ln, rt, dz, bk = (lab.netns(r) for r in ("client", "lan", "router", "dmz", "backend"))
    lab.link(cl, "ext0", EXT_CLIENT + "/24", rt, "rext", PUBLIC + "/24")
    lab.link(ln, "lan0", LAN_CLIENT + "/24", rt, "rlan", LAN_GW + "/24")
    lab.link(dz, "dmz0", PROXY_IP + "/24", rt, "rdmz", DMZ_GW + "/24")
    lab.link(dz, "bkl0", BK_GW + "/24", bk, "bk0", BACKEND_IP + "/24")
    cl.ip("route", "add", "default", "via", PUBLIC)
    ln.ip("route", "add", "default", "via", LAN_GW)
    dz.ip("route", "add", "default", "via", DMZ_GW)
    rt.must(["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"])
    pmap = ", ".join("%d : %d" % (ann_lo + i, lis_lo + i) for i in range(ann_hi - ann_lo + 1))
    rules = """table ip fgnat {
  chain prerouting {
    type nat hook prerouting priority dstnat; policy accept;
    ip daddr { %(pub)s, %(lan)s } tcp dport %(ctl)d counter dnat to %(px)s:%(ctl)d comment "control"
    ip daddr { %(pub)s, %(lan)s } tcp dport %(lo)d-%(hi)d counter dnat to %(px)s : tcp dport map { %(map)s } comment "passive"
  }
}
""" % {"pub": PUBLIC, "lan": LAN_GW, "ctl": CTRL_PORT, "px": PROXY_IP, "lo": ann_lo, "hi": ann_hi, "map": pmap}
    rules_path = os.path.join(lab.workdir, "nat.nft")
    with open(rules_path, "w") as f:
        f.write(rules)
    rt.must(["nft", "-f", rules_path])
    return cl, ln, rt, dz, bk


def nft_counters(rt):
    """{comment: packets} of the router's DNAT rules."""
    out = {}
    data = json.loads(rt.must(["nft", "-j", "list", "table", "ip", "fgnat"]))
    for item in data.get("nftables", []):
        rule = item.get("rule")
        if not rule:
            continue
        pk = [e["counter"]["packets"] for e in rule.get("expr", []) if "counter" in e]
        out[rule.get("comment", "?")] = pk[0] if pk else 0
    return out


def body(s, env, lab):
    with open(EXAMPLE) as f:
        example = json.load(f)
    ln0 = example["listeners"][0]
    lis_lo, lis_hi = rng(ln0["passive"]["ports"])
    ann_lo, ann_hi = rng(ln0["passive"]["announce_ports"])
    check_eq(ln0["backend"]["address"], "%s:21" % BACKEND_IP, "backend address in %s" % EXAMPLE)
    check_eq(ln0["bind"], "0.0.0.0:%d" % CTRL_PORT, "bind in %s" % EXAMPLE)

    lab.workdir = env.tmp
    cl, lan, rt, dz, bk = build_network(lab, ann_lo, ann_hi, lis_lo)
    vs = N.NsVsftpd(env, "vsnat", bk, BACKEND_IP, 21)
    env.backends.append(vs)
    vs.start()
    sha = vs.add_pub("nat.bin", SIZE)
    up_local = os.path.join(env.client_dir, "up.bin")
    up_sha = H.make_file(up_local, SIZE)

    crt, key = server_cert(env, [PUBLIC, LAN_GW])
    cfg = json.loads(json.dumps(example))
    cfg["tls"]["main"]["cert"], cfg["tls"]["main"]["key"] = crt, key
    cfg["log"] = {"level": "debug", "format": "text"}
    cfg_dir = os.path.join(env.tmp, "natcfg")
    os.makedirs(cfg_dir)
    cfg_path = os.path.join(cfg_dir, os.path.basename(EXAMPLE))
    with open(cfg_path, "w") as f:
        json.dump(cfg, f, indent=2)
    env.proxy = N.NsProxy(env, env.binary, dz, cfg, [(PROXY_IP, CTRL_PORT)])
    env.proxy.start()
    ca = env.certs.ca
    plan = {}

    def check_config():
        r = H.run_cmd([env.binary, "--check-config", "-c", os.path.basename(cfg_path)], timeout=60, cwd=cfg_dir)
        check_eq(r.returncode, 0, "--check-config exit status (%s)" % r.stderr.strip()[-300:])
        text = r.stdout
        print("     --check-config output:")
        for line in text.splitlines():
            print("     > " + line)
        if os.environ.get("FTPSGATE_NAT_WRITE") == "1":
            with open(EXAMPLE_CHECK, "w") as f:
                f.write(text)
            print("     (wrote %s)" % EXAMPLE_CHECK)
        plan.update(parse_check(text))
        check(set(plan) == {"10.99.3.0/24", "default"}, "networks listed: %r" % sorted(plan))
        check_eq(plan["default"][0], "227 Entering Passive Mode (203,0,113,10,%d,%d)." % (ann_lo >> 8, ann_lo & 255),
                 "227 printed for the default network")
        check(os.path.exists(EXAMPLE_CHECK), "%s is missing (FTPSGATE_NAT_WRITE=1 writes it)" % EXAMPLE_CHECK)
        with open(EXAMPLE_CHECK) as f:
            check_eq(text, f.read(), "--check-config output vs %s" % os.path.basename(EXAMPLE_CHECK))

    s.run("--check-config prints each network's 227/229 (= deploy/nat-example.check.txt)", check_config)

    def ftplib_client(ns, server_ip, network, tag):
        """ftplib inside ns: PASV and EPSV replies are --check-config's lines; transfers work."""
        want227, want229 = plan[network]

        def inside():
            f = B.ftps_connect(server_ip, CTRL_PORT, ca, vs.user, vs.password, mode="PASV")
            try:
                n, got, _ = H.ftplib_get(f, "/pub/nat.bin")
                check_eq((n, got), (SIZE, sha), "PASV download (size, sha256)")
                resp, host, port = f.last_pasv
                check(ann_lo <= port <= ann_hi, "PASV port %d outside the announced range" % port)
                check_eq(host, server_ip, "address in the 227")
                check_eq(resp, expected_line(want227, port), "227 reply text")
                f.set_data_mode("EPSV")
                H.ftplib_put(f, up_local, "/up/%s.bin" % tag)
                resp, host, port = f.last_pasv
                check(ann_lo <= port <= ann_hi, "EPSV port %d outside the announced range" % port)
                check_eq(resp, expected_line(want229, port), "229 reply text")
                n, got, _ = H.ftplib_get(f, "/pub/nat.bin")
                check_eq((n, got), (SIZE, sha), "EPSV download (size, sha256)")
            finally:
                H.quit_quietly(f)

        ns.call(inside, timeout=90)
        H.check_stored(vs, "%s.bin" % tag, SIZE, up_sha, "upload")

    s.run("client 203.0.113.50 via DNAT: ftplib PASV/EPSV, replies = --check-config 'default'", ftplib_client, cl,
          PUBLIC, "default", "ext-ftplib")
    s.run("lan 10.99.3.2 via DNAT: ftplib PASV/EPSV, replies = --check-config '10.99.3.0/24'", ftplib_client, lan,
          LAN_GW, "10.99.3.0/24", "lan-ftplib")

    def curl_client(ns, server_ip, epsv, tag):
        prefix = ns.cmd([])
        out = os.path.join(env.client_dir, "dl-%s" % tag)
        r, tr = B.curl_run(server_ip, CTRL_PORT, ca, vs.user, vs.password,
                           ["-o", out, B.url(server_ip, CTRL_PORT, "/pub/nat.bin")], epsv=epsv, prefix=prefix)
        check_eq(r.returncode, 0, "curl download (%s)" % B.tail(r.stderr))
        H.check_pasv_trace(tr, epsv, "curl")
        if not epsv:
            octets = server_ip.replace(".", ",")
            check(re.search(r"^< 227 Entering Passive Mode \(%s,\d+,\d+\)" % re.escape(octets), tr, re.M),
                  "curl's 227 does not carry %s" % server_ip)
        m = re.search(r"Connecting to (\S+) \(\S+\) port (\d+)", tr)
        check(m and m.group(1) == server_ip and ann_lo <= int(m.group(2)) <= ann_hi,
              "curl's data connection went to %s, want %s:%d-%d" % (m.groups() if m else None, server_ip, ann_lo,
                                                                     ann_hi))
        check_eq((os.path.getsize(out), H.sha256_file(out)), (SIZE, sha), "download (size, sha256)")
        os.unlink(out)
        r, tr = B.curl_run(server_ip, CTRL_PORT, ca, vs.user, vs.password,
                           ["-T", up_local, B.url(server_ip, CTRL_PORT, "/up/%s.bin" % tag)], epsv=epsv, prefix=prefix)
        check_eq(r.returncode, 0, "curl upload (%s)" % B.tail(r.stderr))
        H.check_stored(vs, "%s.bin" % tag, SIZE, up_sha, "upload")

    s.run("client via DNAT: curl EPSV download + upload", curl_client, cl, PUBLIC, True, "ext-curl-epsv")
    s.run("client via DNAT: curl PASV download + upload (uses the 227 address)", curl_client, cl, PUBLIC, False,
          "ext-curl-pasv")
    s.run("lan via DNAT: curl PASV download + upload (gets 10.99.3.1)", curl_client, lan, LAN_GW, False,
          "lan-curl-pasv")

    def lftp_client(ns, server_ip, epsv, tag):
        out = os.path.join(env.client_dir, "dl-%s" % tag)
        r, tr = B.lftp_run(server_ip, CTRL_PORT, ca, vs.user, vs.password,
                           ["get /pub/nat.bin -o %s" % out, "put %s -o /up/%s.bin" % (up_local, tag)], env.client_dir,
                           passive=True, epsv=epsv, prefix=ns.cmd([]))
        check_eq(r.returncode, 0, "lftp (%s)" % B.tail(r.stderr + r.stdout))
        check(B.trace_sent(tr, "EPSV" if epsv else "PASV"), "lftp did not send %s" % ("EPSV" if epsv else "PASV"))
        if not epsv:
            check(re.search(r"<--- 227 .*\(%s," % re.escape(server_ip.replace(".", ",")), tr),
                  "lftp's 227 does not carry %s" % server_ip)
        check_eq((os.path.getsize(out), H.sha256_file(out)), (SIZE, sha), "download (size, sha256)")
        os.unlink(out)
        H.check_stored(vs, "%s.bin" % tag, SIZE, up_sha, "upload")

    s.run("client via DNAT: lftp EPSV get + put", lftp_client, cl, PUBLIC, True, "ext-lftp-epsv")
    s.run("client via DNAT: lftp PASV get + put", lftp_client, cl, PUBLIC, False, "ext-lftp-pasv")

    def through_the_nat():
        c = nft_counters(rt)
        check(c.get("control", 0) > 0 and c.get("passive", 0) > 0, "DNAT rule counters: %r" % c)
        # The listen range itself is not published: only the mapped ports reach ftpsgate.
        import socket

        def probe():
            try:
                with socket.create_connection((PUBLIC, lis_lo), timeout=3):
                    return "connected"
            except ConnectionRefusedError:
                return "refused"
            except OSError as e:
                return str(e)
        check_eq(cl.call(probe, timeout=15), "refused", "a connection to %s:%d (an unmapped listen port)"
                 % (PUBLIC, lis_lo))
        log = env.proxy.log_text()
        check("client=%s:" % EXT_CLIENT in log, "ftpsgate never saw the client's own address %s" % EXT_CLIENT)
        check("client=%s:" % LAN_CLIENT in log, "ftpsgate never saw the lan client's address %s" % LAN_CLIENT)
        check("SECURITY" not in log, "security warnings in the proxy log: %s"
              % [x for x in log.splitlines() if "SECURITY" in x][:3])

    s.run("data went through the DNAT; listen range not exposed; real client addresses seen", through_the_nat)


def main():
    suite = H.Suite("nat")
    env = None
    lab = None
    try:
        try:
            if H.SELFCHECK:
                suite.run("NAT", lambda: H.needs_proxy())
                sys.exit(suite.finish())
            if os.environ.get("FTPSGATE_NO_NETNS") == "1":
                def skip():
                    raise H.Skip("FTPSGATE_NO_NETNS=1")
                suite.run("NAT in network namespaces", skip)
                sys.exit(suite.finish())
            why = N.usable()
            if why:
                raise RuntimeError("network namespaces cannot be created here (%s); this test needs them "
                                   "(FTPSGATE_NO_NETNS=1 skips it)" % why)
            env = H.Env(suite, 256 * H.MiB)
            lab = N.Lab()
        except SystemExit:
            raise
        except Exception as e:  # noqa: BLE001
            suite.fail_setup("environment", e)
            sys.exit(suite.finish())
        try:
            body(suite, env, lab)
        except Exception as e:  # noqa: BLE001 - setup errors inside body
            suite.fail_setup("test body", e)
        if env.proxy is not None and env.proxy.proc is not None:
            env.final_checks()
    finally:
        if env is not None:
            env.close()
        if lab is not None:
            lab.teardown()
    if lab is not None:
        def torn_down():
            check_eq(lab.leftovers(), [], "namespaces of this test left")
            addrs = H.run_cmd(["ip", "-o", "addr"], timeout=20).stdout
            check(not re.search(r"\b(203\.0\.113\.|10\.99\.)", addrs), "test addresses in the host namespace")
        suite.run("namespaces and links removed", torn_down)
    sys.exit(suite.finish())


if __name__ == "__main__":
    main()
