#!/usr/bin/python3
"""A TLS scan of ftpsgate with Debian's testssl.sh (issue 13).

ftpsgate, in its default TLS configuration (an RSA-2048 certificate of the test
CA, valid for 200 days), runs in front of a vsftpd backend with an explicit and
an implicit listener on loopback. testssl.sh scans each one: the explicit one
with --starttls ftp, the implicit one as plain TLS. Its sections: protocols
(-p), cipher categories (-s), forward secrecy (-f), server defaults (-S),
vulnerabilities (-U) and every cipher one by one (-e); not the client
simulations (-c), which would double the run time and test the same suites.

The findings are read from testssl's JSON (--jsonfile), by id and severity.
A case fails on:
  - a protocol below TLS 1.2 offered (ids SSLv2, SSLv3, TLS1, TLS1_1);
  - a weak or CBC cipher offered (the categories NULL, aNULL, EXPORT, LOW,
    3DES_IDEA and AVERAGE, the "obsolete CBC" one; and every cipher of the
    -e list must be an AEAD with (EC)DHE, or a TLS 1.3 suite);
  - renegotiation: insecure (secure_renego) or client-initiated
    (secure_client_renego), or TLS compression (CRIME_TLS);
  - any finding of severity MEDIUM, HIGH or CRITICAL, or one that testssl calls
    VULNERABLE, but for cert_revocation (a test CA publishes neither CRL nor
    OCSP: that is the operator's CA, not the proxy);
  - a DHE prime that is not one of RFC 7919's (LOGJAM-common_primes);
  - a scan that did not run whole (a FATAL finding, a missing id).
LOW and WARN findings are printed as notes. The scanner's own text output is
printed for each scan, and its run time.

testssl.sh comes from tests/setup-deps.sh; without it the test fails, naming
the package.

By hand: FTPSGATE_TLS_SCAN_IDENTITY='{"ciphers": "DEFAULT"}' (a JSON object
merged into the identity) scans another configuration; that one must fail
(CBC suites and static RSA key exchange offered).
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import harness as H  # noqa: E402
from harness import check, check_eq  # noqa: E402

# testssl sections (see the docstring) and its batch options: no questions,
# no colours, no banner, no DNS (loopback only), bounded connects.
SECTIONS = ["-p", "-s", "-f", "-S", "-U", "-e"]
# (--openssl-timeout would add a quarter to the run time: SCAN_TIMEOUT bounds it all.)
BATCH = ["--quiet", "--color", "0", "--warnings", "batch", "--nodns", "none", "--connect-timeout", "10"]
SCAN_TIMEOUT = 600

BELOW_TLS12 = ("SSLv2", "SSLv3", "TLS1", "TLS1_1")
# testssl 3.0 (Debian 12) names the obsolete CBC category AVERAGE; later versions OBSOLETED.
WEAK_CATEGORIES = ("cipherlist_NULL", "cipherlist_aNULL", "cipherlist_EXPORT", "cipherlist_LOW",
                   "cipherlist_3DES_IDEA", "cipherlist_AVERAGE", "cipherlist_OBSOLETED")
RENEGOTIATION = ("secure_renego", "secure_client_renego")
# Ids a whole scan of these sections always has (a tuple: any one of them, as
# testssl versions name it): a scan without one did not run whole.
REQUIRED = BELOW_TLS12 + ("TLS1_2", "TLS1_3") + WEAK_CATEGORIES[:5] + RENEGOTIATION + (
    ("cipherlist_AVERAGE", "cipherlist_OBSOLETED"), ("cipherlist_STRONG", "cipherlist_STRONG_FS"), ("PFS", "FS"),
    "CRIME_TLS", "heartbleed", "CCS", "ROBOT", "POODLE_SSL", "SWEET32", "FREAK", "DROWN", "LOGJAM", "BEAST",
    "LUCKY13", "RC4", "cert_chain_of_trust", "TLS_session_ticket")
VULNERABLE_SEVERITIES = ("MEDIUM", "HIGH", "CRITICAL")
# Findings about the certificate's issuer, not about the proxy: a throwaway
# test CA has no revocation service.
NOT_THE_PROXY = {"cert_revocation": "the test CA publishes neither CRL nor OCSP"}
AEAD = re.compile(r"_(GCM|CCM|CHACHA20_POLY1305)(_|$)")


# ---- the checks: pure functions of the findings, each returns the problems ---------------

def by_id(findings):
    out = {}
    for f in findings:
        out.setdefault(f.get("id", ""), []).append(f)
    return out


def first(ids, key):
    return ids[key][0] if key in ids else None


def scan_problems(ids):
    probs = ["%s: %s" % (f["id"], f.get("finding", "")) for fs in ids.values() for f in fs
             if f.get("severity") == "FATAL" or f.get("id") == "scanProblem"]
    for k in REQUIRED:
        alts = k if isinstance(k, tuple) else (k,)
        if not any(a in ids for a in alts):
            probs.append("finding %s missing: the scan did not run whole" % "/".join(alts))
    return probs


def protocol_problems(ids):
    probs = ["%s %s" % (k, ids[k][0].get("finding")) for k in BELOW_TLS12
             if k in ids and not ids[k][0].get("finding", "").startswith("not offered")]
    probs += ["%s not offered (%s)" % (k, ids[k][0].get("finding")) for k in ("TLS1_2", "TLS1_3")
              if k in ids and not ids[k][0].get("finding", "").startswith("offered")]
    return probs


def offered_ciphers(ids):
    """The IANA names of the ciphers the -e list shows offered (the last column of each row)."""
    return [f.get("finding", "").split()[-1] for k, fs in ids.items() if k.startswith("cipher_x")
            for f in fs if f.get("finding", "").split()]


def cipher_problems(ids):
    probs = ["%s %s" % (k, ids[k][0].get("finding")) for k in WEAK_CATEGORIES
             if k in ids and ids[k][0].get("finding") != "not offered"]
    names = offered_ciphers(ids)
    if not names:
        probs.append("the per-cipher list (-e) is empty")
    for n in names:
        tls12 = "_WITH_" in n
        if "_CBC_" in n or not AEAD.search(n):
            probs.append("%s: not an AEAD cipher" % n)
        elif tls12 and not n.startswith(("TLS_ECDHE_", "TLS_DHE_")):
            probs.append("%s: no forward secrecy" % n)
    return probs


def renegotiation_problems(ids):
    return ["%s %s: %s" % (k, ids[k][0].get("severity"), ids[k][0].get("finding"))
            for k in RENEGOTIATION + ("CRIME_TLS",) if k in ids and ids[k][0].get("severity") != "OK"]


def vulnerable_findings(ids):
    out = []
    for k, fs in ids.items():
        for f in fs:
            bad = f.get("severity") in VULNERABLE_SEVERITIES or \
                f.get("finding", "").upper().startswith("VULNERABLE")
            if bad and k not in NOT_THE_PROXY:
                out.append("%s %s: %s" % (k, f.get("severity"), f.get("finding")))
    return out


def dhe_problems(ids):
    if not any("_DHE_" in n for n in offered_ciphers(ids)):
        return []
    f = first(ids, "LOGJAM-common_primes")
    if f is None:
        return ["DHE offered, but testssl knows its prime from no RFC (want RFC 7919)"]
    if "RFC7919" not in f.get("finding", ""):
        return ["DHE prime %s, want an RFC 7919 group" % f.get("finding")]
    return []


def notes(ids):
    return ["%s %s: %s" % (k, f.get("severity"), f.get("finding")) for k, fs in ids.items() for f in fs
            if f.get("severity") in ("LOW", "WARN") or k in NOT_THE_PROXY]


# ---- running the scanner ---------------------------------------------------------------------

def testssl_binary():
    return shutil.which("testssl") or shutil.which("testssl.sh")


class Scan:
    """One testssl run, started at once in a process group of its own (testssl is a
    shell script that starts openssl processes): the two scans run side by side,
    since testssl mostly waits on its own connections."""

    def __init__(self, argv, out_path, err_path):
        self.argv = argv
        self.out_path, self.err_path = out_path, err_path
        self.t0 = time.monotonic()
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                         start_new_session=True)

    def wait(self, timeout):
        """(exit status, stdout, stderr, seconds); on timeout the whole group is killed."""
        left = max(1.0, timeout - (time.monotonic() - self.t0))
        try:
            rc = self.proc.wait(timeout=left)
        except subprocess.TimeoutExpired as e:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            raise H.Fail("testssl did not finish within %d s" % timeout) from e
        seconds = time.monotonic() - self.t0
        with open(self.out_path, errors="replace") as out, open(self.err_path, errors="replace") as err:
            return rc, out.read(), err.read(), seconds

    def kill(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def make_server_cert(env, days=200):
    """An RSA-2048 server certificate of the test CA valid for `days` (the harness's
    live 2 days, which testssl rightly flags as expiring)."""
    d = env.certs.dir
    key, csr, cert, ext = (os.path.join(d, "scan." + x) for x in ("key", "csr", "pem", "ext"))
    with open(ext, "w") as f:
        f.write("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
                "extendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n")
    for argv in (["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-sha256", "-subj", "/CN=localhost",
                  "-keyout", key, "-out", csr],
                 ["openssl", "x509", "-req", "-in", csr, "-CA", env.certs.ca, "-CAkey", env.certs.ca_key,
                  "-CAcreateserial", "-sha256", "-days", str(days), "-extfile", ext, "-out", cert]):
        r = H.run_cmd(argv, timeout=60)
        if r.returncode != 0:
            raise RuntimeError("openssl failed: %s\n%s" % (" ".join(argv[:3]), r.stderr[-2000:]))
    os.chmod(key, 0o600)
    return cert, key


def body(s, env):
    if H.SELFCHECK:
        s.run("TLS scan (tests ftpsgate itself)", H.needs_proxy)
        return
    binary = testssl_binary()

    def installed():
        check(binary is not None, "testssl is not installed: Debian package testssl.sh (tests/setup-deps.sh)")

    s.run("testssl.sh is installed", installed)
    if binary is None:
        return

    vs = env.backend("vs1")
    sha = vs.add_pub("scan.bin", 3 * H.MiB + 7)
    cert, key = make_server_cert(env)
    env.proxy.main_tls.update({"cert": cert, "key": key})
    extra = os.environ.get("FTPSGATE_TLS_SCAN_IDENTITY", "").strip()
    if extra:
        env.proxy.main_tls.update(json.loads(extra))
        print("   identity for this scan: %s" % json.dumps(env.proxy.main_tls), flush=True)
    explicit = env.front(vs, "explicit1")
    implicit = env.front(vs, "implicit1", mode="implicit")
    env.start(explicit, implicit)

    def start_scan(target, slug, starttls):
        jf = os.path.join(env.tmp, "testssl-%s.json" % slug)
        argv = [binary] + BATCH + ["--add-ca", env.certs.ca, "--jsonfile", jf] + \
            (["--starttls", "ftp"] if starttls else []) + SECTIONS + ["%s:%d" % (target.host, target.port)]
        return Scan(argv, os.path.join(env.tmp, "testssl-%s.out" % slug),
                    os.path.join(env.tmp, "testssl-%s.err" % slug)), jf

    def check_scan(scan_run, jf, label):
        argv = scan_run.argv
        state = {}

        def scan():
            rc, out, err, state["seconds"] = scan_run.wait(SCAN_TIMEOUT)
            print("   --- testssl %s (%s), exit %d, %.0f s:" % (label, " ".join(argv[1:-1]), rc, state["seconds"]))
            for line in out.splitlines():
                if line.strip():
                    print("   | " + line.rstrip())
            if err.strip():
                print("   | (stderr) " + err.strip()[-600:].replace("\n", "\n   | (stderr) "))
            check(os.path.exists(jf), "testssl wrote no JSON (exit %d)" % rc)
            with open(jf) as f:
                state["ids"] = by_id(json.load(f))
            for n in notes(state["ids"]):
                print("   note: " + n)
            probs = scan_problems(state["ids"])
            check(not probs, "; ".join(probs))
            print("   %s: %d findings in %.0f s" % (label, sum(len(v) for v in state["ids"].values()),
                                                     state["seconds"]), flush=True)

        def rule(fn):
            def case():
                check("ids" in state, "no scan results")
                probs = fn(state["ids"])
                check(not probs, "; ".join(probs))
            return case

        s.run("%s: testssl scan, whole" % label, scan)
        s.run("%s: no protocol below TLS 1.2; TLS 1.2 and 1.3 offered" % label, rule(protocol_problems))
        s.run("%s: no weak or CBC cipher; every TLS 1.2 cipher AEAD with (EC)DHE" % label, rule(cipher_problems))
        s.run("%s: no renegotiation (secure or client-initiated), no compression" % label,
              rule(renegotiation_problems))
        s.run("%s: no finding marked vulnerable (MEDIUM, HIGH, CRITICAL)" % label, rule(vulnerable_findings))
        s.run("%s: the DHE group is RFC 7919's" % label, rule(dhe_problems))

    t0 = time.monotonic()
    scans = [start_scan(explicit, "explicit", True), start_scan(implicit, "implicit", False)]
    try:
        check_scan(*scans[0], "explicit (--starttls ftp)")
        check_scan(*scans[1], "implicit")
    finally:
        for sc, _ in scans:
            sc.kill()
    print("   both scans, side by side: %.0f s" % (time.monotonic() - t0), flush=True)

    def still_serves(target):
        out = os.path.join(env.client_dir, "after-scan.bin")
        r, trace = H.curl(target, ["-o", out, target.url("/pub/scan.bin")])
        check_eq(r.returncode, 0, "curl exit status (stderr: %s)" % r.stderr[-300:])
        check_eq(H.sha256_file(out), sha, "download sha256 after the scans")
        os.unlink(out)

    s.run("after the scans: explicit download (curl, sha256)", still_serves, explicit)
    s.run("after the scans: implicit download (curl, sha256)", still_serves, implicit)


if __name__ == "__main__":
    H.main_wrapper("tls_scan", body, need_bytes=64 * H.MiB)
