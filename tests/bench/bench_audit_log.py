#!/usr/bin/python3
"""On-demand benchmark (not part of CI): the cost of the transfer audit log
(log.transfer_log, issue 12) on throughput, with it on and off in the same run.

Two ftpsgate processes with the same configuration in front of one vsftpd; only
"on" has log.transfer_log (a file on disk, BENCH_AUDIT_DIR). Two workloads, run
on "on" and "off" alternately (on-off, off-on, ...) so that a drift of the
machine hits both alike:

  small  BENCH_SMALL RETRs of a 4 KiB file over BENCH_SESSIONS sessions at once
         (one Python ftplib process per session, PASV + RETR each, the data TLS
         resuming the control session): where the per-transfer cost of a record
         shows, if anywhere. Not curl: curl reusing one control connection for many
         files pauses a whole second before some data connects (seen with TLS 1.2
         and 1.3, through ftpsgate and against vsftpd's own TLS), which drowns the
         figure in noise
  big    BENCH_BIG_MIB MiB in total, as BENCH_SESSIONS downloads at once

For each: the median wall time over BENCH_REPS runs, transfers/s or MiB/s, the
proxy's CPU time (user+sys from /proc, all threads, the audit writer's included),
and the on/off ratios (median of the pairwise ratios of the same round). Every
run is checked: each curl exits 0 with every byte, and at the end the audit file
holds exactly one record per transfer made on "on" and ftpsgate_transfer_log_dropped
is 0 (else the "on" figures would not be the cost of writing every record).

  FTPSGATE_BIN=build/ftpsgate /usr/bin/python3 tests/bench/bench_audit_log.py
  env: BENCH_SMALL (2000), BENCH_SESSIONS (4), BENCH_BIG_MIB (1024), BENCH_REPS (5),
       BENCH_AUDIT_DIR (/var/tmp: a disk, not tmpfs)
Needs tests/setup-deps.sh to have run (vsftpd, curl). Everything on loopback.
"""
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
sys.dont_write_bytecode = True
import harness as H  # noqa: E402

N_SMALL = int(os.environ.get("BENCH_SMALL", "2000"))
SESSIONS = int(os.environ.get("BENCH_SESSIONS", "4"))
BIG_MIB = int(os.environ.get("BENCH_BIG_MIB", "1024"))
REPS = int(os.environ.get("BENCH_REPS", "5"))
AUDIT_DIR = os.environ.get("BENCH_AUDIT_DIR", "/var/tmp")
SMALL = 4 * H.KiB
CLK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid):
    """user + sys seconds of the process, all its threads."""
    with open("/proc/%d/stat" % pid) as f:
        st = f.read()
    rest = st[st.rindex(")") + 2:].split()
    return (int(rest[11]) + int(rest[12])) / CLK


def make_proxy(env, name, transfer_log, backend):
    p = H.Proxy(env, env.binary)
    p.config_path = os.path.join(env.tmp, "ftpsgate-%s.json" % name)
    p.log = os.path.join(env.tmp, "ftpsgate-%s.log" % name)
    ln = p.add_listener(name, backend.address, protection="private")
    p.admin_port = H.free_port()
    log = {"level": "info", "format": "text"}
    if transfer_log:
        log["transfer_log"] = transfer_log
    p.extra_top["log"] = log
    p.start()
    port = int(ln["bind"].rsplit(":", 1)[1])
    return p, H.Target(name, port, True, env.certs.ca, backend, ln)


def curl_base(tgt):
    return ["curl", "-sS", "--user", "%s:%s" % (H.FTP_USER, H.PASSWORD), "--ftp-pasv", "--ssl-reqd",
            "--cacert", tgt.ca, "--max-time", "600", "-w", "%{size_download}\\n"]


def run_batch(argvs, want_sizes):
    """Starts every curl at once; returns the wall time until the last one ends."""
    t0 = time.monotonic()
    procs = [subprocess.Popen(a, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for a in argvs]
    outs = [p.communicate(timeout=900) for p in procs]
    wall = time.monotonic() - t0
    for p, (out, err), want in zip(procs, outs, want_sizes):
        if p.returncode != 0:
            raise RuntimeError("curl exit %d: %s" % (p.returncode, err[-300:]))
        sizes = [int(x) for x in out.split()]
        if sizes != want:
            raise RuntimeError("curl moved %d transfers / %d bytes, want %d / %d"
                               % (len(sizes), sum(sizes), len(want), sum(want)))
    return wall


# One session of K RETRs, printing each transfer's size (as curl -w does).
SMALL_CLIENT = r'''
import sys
sys.path.insert(0, sys.argv[1])
sys.dont_write_bytecode = True
import harness as H
port, ca, k = int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
f = H.ftplib_connect(H.Target("b", port, True, ca, None), timeout=60)
f.voidcmd("TYPE I")
out = []
for _ in range(k):
    got = []
    f.retrbinary("RETR /pub/small.bin", got.append)
    out.append(str(sum(map(len, got))))
f.quit()
print("\n".join(out))
'''
INTEGRATION = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration")


def small_batch(tgt):
    argvs, wants = [], []
    for i in range(SESSIONS):
        k = N_SMALL // SESSIONS + (1 if i < N_SMALL % SESSIONS else 0)
        # harness.PASSWORD differs per process: the client's own is as good (anonymous).
        argvs.append(["/usr/bin/python3", "-c", SMALL_CLIENT, INTEGRATION, str(tgt.port), tgt.ca, str(k)])
        wants.append([SMALL] * k)
    return argvs, wants


def big_batch(tgt, each):
    argvs = [curl_base(tgt) + [tgt.url("/pub/big.bin"), "-o", "/dev/null"] for _ in range(SESSIONS)]
    return argvs, [[each]] * SESSIONS


def dropped(p):
    body = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % p.admin_port, timeout=10).read()
    m = re.search(rb"^ftpsgate_transfer_log_dropped (\d+)$", body, re.M)
    return int(m.group(1)) if m else None


def main():
    if not os.environ.get("FTPSGATE_BIN"):
        sys.exit("set FTPSGATE_BIN")
    suite = H.Suite("bench_audit_log")
    each = BIG_MIB * H.MiB // SESSIONS
    env = H.Env(suite, need_bytes=each + 64 * H.MiB)
    audit_dir = tempfile.mkdtemp(prefix="ftpsgate-bench-audit-", dir=AUDIT_DIR)
    audit = os.path.join(audit_dir, "transfers.log")
    procs = []
    try:
        vs = env.backend("vs1")
        vs.add_pub("small.bin", SMALL)
        vs.add_pub("big.bin", each)
        on, t_on = make_proxy(env, "on", audit, vs)
        procs.append(on)
        off, t_off = make_proxy(env, "off", None, vs)
        procs.append(off)
        fs = subprocess.run(["df", "-T", audit_dir], capture_output=True, text=True).stdout.splitlines()[-1].split()
        print("audit log on %s (%s); %d small RETRs over %d sessions; %d MiB in %d downloads; %d rounds"
              % (audit, fs[1] if len(fs) > 1 else "?", N_SMALL, SESSIONS, BIG_MIB, SESSIONS, REPS), flush=True)

        setups = {"on": (on, t_on), "off": (off, t_off)}
        work = {"small": lambda t: small_batch(t), "big": lambda t: big_batch(t, each)}
        made_on = 0
        res = {(w, c): [] for w in work for c in setups}
        for w, batch in work.items():
            for c, (p, t) in setups.items():  # warm-up, not counted
                run_batch(*batch(t))
                if c == "on":
                    made_on += N_SMALL if w == "small" else SESSIONS
            for rep in range(REPS):
                order = ("on", "off") if rep % 2 == 0 else ("off", "on")
                for c in order:
                    p, t = setups[c]
                    c0 = cpu_s(p.pid)
                    wall = run_batch(*batch(t))
                    res[(w, c)].append((wall, cpu_s(p.pid) - c0))
                    if c == "on":
                        made_on += N_SMALL if w == "small" else SESSIONS
                    print("  %-5s %-3s round %d: %.2f s wall, %.2f s proxy CPU" % (w, c, rep + 1, wall,
                          res[(w, c)][-1][1]), flush=True)

        # The "on" figures count only if every record was written.
        def records():
            with open(audit, "rb") as f:
                return sum(1 for x in f.read().split(b"\n")[:-1] if b'"event"' not in x)
        H.wait_until(lambda: records() >= made_on, 30)
        n_rec, n_drop = records(), dropped(on)
        print("audit file: %d records for %d transfers on 'on'; ftpsgate_transfer_log_dropped %s; %.1f MiB"
              % (n_rec, made_on, n_drop, os.path.getsize(audit) / H.MiB), flush=True)
        ok = n_rec == made_on and n_drop == 0
        with open(audit, "rb") as f:
            first = json.loads(f.readline())
        print("a record: %s" % json.dumps(first)[:300], flush=True)

        print("\n%-6s %-22s %-22s %-12s %-12s" % ("", "on (median)", "off (median)", "wall on/off", "CPU on/off"))
        for w in work:
            a, b = res[(w, "on")], res[(w, "off")]
            wall_r = statistics.median(x[0] / y[0] for x, y in zip(a, b))
            cpu_r = statistics.median(x[1] / y[1] for x, y in zip(a, b) if y[1] > 0)
            ma, mb = statistics.median(x[0] for x in a), statistics.median(x[0] for x in b)
            ca, cb = statistics.median(x[1] for x in a), statistics.median(x[1] for x in b)
            if w == "small":
                fa, fb = "%.0f xfer/s" % (N_SMALL / ma), "%.0f xfer/s" % (N_SMALL / mb)
            else:
                fa, fb = "%.0f MiB/s" % (BIG_MIB / ma), "%.0f MiB/s" % (BIG_MIB / mb)
            print("%-6s %-22s %-22s %-12s %-12s" % (
                w, "%s, CPU %.2f s" % (fa, ca), "%s, CPU %.2f s" % (fb, cb), "%.3f" % wall_r, "%.3f" % cpu_r))
            print("%-6s wall on/off per round: %s" % ("", " ".join("%.3f" % (x[0] / y[0]) for x, y in zip(a, b))))
        if not ok:
            print("\nINVALID: the audit log did not get every record (see above)")
            return 1
        return 0
    finally:
        for p in procs:
            if p.proc is not None:
                H.stop_process(p.proc, H.signal.SIGTERM, 20)
        env.close()
        shutil.rmtree(audit_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
