#!/usr/bin/python3
"""ftpsgate's benchmark (issue 11), on demand, never in CI. Everything on loopback; every figure
is a ratio against a reference measured in the same run; CPU is read from /proc for the proxy's
whole process (all its threads), the machine's total busy time is read beside it, so that the
CPU other users' jobs took during a measurement is reported ("others").

  FTPSGATE_BIN=build/ftpsgate /usr/bin/python3 tests/bench/bench.py      (or tests/bench/run-all.sh)

Parts (BENCH_PARTS, default all, in this order):
  rate      session setups/s, handshake-bound (connect, AUTH TLS, TLS 1.3 handshake, USER, PASS,
            QUIT), RSA-2048 and ECDSA P-256: workers 2 vs workers 1 vs ProFTPD mod_proxy (started
            through ../shared/peers), backend pyftpdlib; the C generator ftpsload (also compared
            once with the peers' Python generator); unpinned, and pinned (generator and backend
            on CPU 0, ftpsgate on CPU 1 with one worker, on both CPUs with two)
  cpu       proxy CPU per GiB, 1 GiB download and upload with curl (explicit FTPS, PROT P) from
            vsftpd, against the floor: socat relaying the same transfer in front of the same
            vsftpd (plain), plus `openssl speed` for 1 GiB of the negotiated cipher; then a perf
            profile of one more download (and upload), summarised into tests/bench/
  parallel  8 parallel 256 MiB downloads, workers 2 vs workers 1, sha256 of every file
  memory    idle logged-in sessions (AUTH TLS, login, PBSZ 0, PROT P) held by ftpsload:
            PSS and RSS growth of ftpsgate per session at 200, 1000 and 9000, workers 1 and 2
  suites    openssl speed of AES-128-GCM, AES-256-GCM, ChaCha20-Poly1305 and a 1 GiB download
            with each one forced (tls.main.ciphersuites)

Knobs: BENCH_REPS (3; rounds, the setups interleaved within each, medians reported),
BENCH_RATE_SECONDS (10), BENCH_RATE_CONC (32), BENCH_MIB (1024), BENCH_PAR_N (8),
BENCH_PAR_MIB (256), BENCH_SESSIONS ("200 1000 9000"), BENCH_OUT (results dir; default a
new /tmp/ftpsgate-bench-*), BENCH_PROFILE (the profile summary; default
tests/bench/profile-download.txt), FTPSGATE_PEERS (../shared/peers), BENCH_QUIET_WAIT (30) and
BENCH_QUIET_CORES (0.3): before each measurement, wait up to that many seconds until other users'
jobs keep fewer than that many cores busy; BENCH_NICE (unset): a nice value for the whole run
(e.g. -10 on a shared machine; the table reports the other users' CPU either way).
Needs tests/setup-deps.sh and tests/bench/setup-bench.sh (socat, mod_tls, mod_proxy), cc with
OpenSSL headers, curl, openssl, and perf for the profile (where `perf record` does not work, the
cpu part fails after its measurements, saying so).
Prints one table at the end; results.json and table.txt go to BENCH_OUT.
"""
import datetime
import json
import os
import platform
import re
import resource
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as B  # noqa: E402
import perfsummary  # noqa: E402
from benchlib import H, GiB, median  # noqa: E402

REPS = B.env_int("BENCH_REPS", 3)
RATE_SECONDS = B.env_int("BENCH_RATE_SECONDS", 10)
RATE_CONC = B.env_int("BENCH_RATE_CONC", 32)
BIG_MIB = B.env_int("BENCH_MIB", 1024)
PAR_N = B.env_int("BENCH_PAR_N", 8)
PAR_MIB = B.env_int("BENCH_PAR_MIB", 256)
SESSIONS = [int(x) for x in os.environ.get("BENCH_SESSIONS", "200 1000 9000").split()]
PARTS = os.environ.get("BENCH_PARTS", "rate cpu parallel memory suites").split()
PROFILE_OUT = os.environ.get("BENCH_PROFILE", os.path.join(B.HERE, "profile-download.txt"))
QUIET_WAIT = B.env_int("BENCH_QUIET_WAIT", 30)
QUIET_CORES = float(os.environ.get("BENCH_QUIET_CORES", "0.3"))
SUITES = ["TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"]


class Bench:
    """The run: temp dir (tmpfs), certificates, the generator, shared backends, results."""

    def __init__(self, suite):
        self.binary = os.path.abspath(os.environ.get("FTPSGATE_BIN", ""))
        if not os.access(self.binary, os.X_OK):
            raise RuntimeError("FTPSGATE_BIN (%r) is not an executable" % os.environ.get("FTPSGATE_BIN"))
        B.reserve_listen_ports(96)
        need = (BIG_MIB * 3 + PAR_N * PAR_MIB * 2 + 256) * H.MiB
        self.env = H.Env(suite, need_bytes=need)
        self.env.proxy = None   # our own Gates, not the harness's proxy
        self.tmp = self.env.tmp
        self.out = os.environ.get("BENCH_OUT") or "/tmp/ftpsgate-bench-%s" % time.strftime("%Y%m%d-%H%M%S")
        os.makedirs(self.out, exist_ok=True)
        self.ca = self.env.certs.ca
        self._ids = {"rsa": (self.env.certs.cert, self.env.certs.key)}
        self._ids["ecdsa"] = self.env.certs.issue("ecdsa", "localhost", "DNS:localhost,IP:127.0.0.1",
                                                  key_type="ec")
        self.gen = B.build_ftpsload(self.tmp)
        self.results = {}
        self.rows = []      # the table
        self._pyftpd = None
        self._vs = None
        self.big_sha = None
        self.others = []    # other users' CPU (cores) during each measurement
        self.waits = []     # seconds waited for a quiet machine before each measurement

    def quiet(self):
        """Before a measurement: wait (bounded) for other users' jobs to leave the CPUs alone."""
        waited, load = B.wait_quiet(QUIET_WAIT, QUIET_CORES)
        self.waits.append((waited, load))

    def window(self, **readers):
        self.quiet()
        return B.Window(**readers).start()

    def done(self, w):
        w.stop()
        self.others.append(w.others / w.wall)
        return w

    def identity(self, kind):
        return self._ids[kind]

    def pyftpd(self):
        if self._pyftpd is None:
            self._pyftpd = B.Pyftpd(self).start()
        return self._pyftpd

    def vsftpd(self):
        """vsftpd, plain FTP, the backend of the transfer parts (sendfile from tmpfs)."""
        if self._vs is None:
            self._vs = H.Vsftpd(self.env, "vs").start()
            self.env.backends.append(self._vs)
        return self._vs

    def big_file(self):
        vs = self.vsftpd()
        p = vs.pub_path("big.bin")
        if self.big_sha is None:
            self.big_sha = H.make_file(p, BIG_MIB * H.MiB)
        return p

    def row(self, part, what, value, reference="", ratio=None, target="", note="", check=None):
        """One line of the table; target ("≥1.7", "≤32") is checked against check (a figure
        that is not a ratio, e.g. KiB), else against ratio."""
        met = ""
        if check is None:
            check = ratio
        if check is not None and target:
            m = re.match(r"([<>]=?)\s*([\d.]+)", target.replace("≥", ">=").replace("≤", "<="))
            if m:
                op, lim = m.group(1), float(m.group(2))
                ok = check >= lim if op.startswith(">") else check <= lim
                met = "met" if ok else "NOT met"
        self.rows.append({"part": part, "what": what, "value": value, "reference": reference,
                          "ratio": None if ratio is None else round(ratio, 3), "target": target, "met": met,
                          "note": note})

    def close(self):
        for x in (self._pyftpd,):
            if x is not None:
                x.stop()
        self.env.close()


def log(msg):
    print("[%s] %s" % (time.strftime("%H:%M:%S"), msg), flush=True)


def load_note():
    with open("/proc/loadavg") as f:
        return f.read().split()[0]


# --------------------------------------------------------------------------
# rate: handshake-bound session setups


def run_generator(bench, port, pinned_cpu=None, seconds=RATE_SECONDS, conc=RATE_CONC):
    argv = [bench.gen, "rate", "127.0.0.1", str(port), bench.ca, "--conc", str(conc), "--seconds", str(seconds)]
    if pinned_cpu is not None:
        argv = ["taskset", "-c", str(pinned_cpu)] + argv
    r = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    j = B.last_json(r.stdout)
    if j["ok"] == 0 or j["errors"] > j["ok"] * 0.01:
        raise RuntimeError("generator: %d ok, %d errors, first: %s" % (j["ok"], j["errors"], j["first_error"]))
    return j


def measure_rate(bench, target, backend, layout, workers):
    """One measurement. layout "unpinned": every process may run on both CPUs. "pinned": the
    generator and the backend on CPU 0; ftpsgate on CPU 1 (one worker) or on both (two)."""
    allc = B.ALL_CPUS
    if layout == "pinned":
        B.set_affinity(backend.pid, {0})
        B.set_affinity(target.pid, {1} if workers == 1 else allc)
    else:
        B.set_affinity(backend.pid, allc)
        B.set_affinity(target.pid, allc)
    w = bench.window(proxy=target.cpu, backend=backend.cpu)
    j = run_generator(bench, target.port, pinned_cpu=0 if layout == "pinned" else None)
    time.sleep(0.3)   # ended sessions reaped (ProFTPD forks one process per session)
    bench.done(w)
    wall = j["wall_s"]
    return {"rate": j["rate_per_s"], "ok": j["ok"], "errors": j["errors"], "wall": wall,
            "lat_p50_ms": j["lat_ms_p50"], "lat_p99_ms": j["lat_ms_p99"],
            "proxy_cpu": w.cpu["proxy"], "proxy_cores": w.cpu["proxy"] / wall,
            "proxy_ms_per_setup": 1000 * w.cpu["proxy"] / j["ok"],
            "backend_ms_per_setup": 1000 * w.cpu["backend"] / j["ok"], "backend_cores": w.cpu["backend"] / wall,
            "gen_cpu": j["cpu_s"], "gen_cores": j["cpu_s"] / wall, "gen_ms_per_setup": 1000 * j["cpu_s"] / j["ok"],
            "others_cores": w.others / w.wall, "busy_cores": w.busy / w.wall}


def python_generator(bench, port, backend, target, seconds=RATE_SECONDS, workers=4):
    """The peers' Python generator (ftplib + ssl, W processes) on the same target: which one
    saturates ftpsgate, at what cost of its own."""
    w = bench.window(proxy=target.cpu, backend=backend.cpu)
    r = subprocess.run([B.PY, os.path.join(B.PEERS, "ftpsbench.py"), "rate", "--mode", "explicit",
                        "--addr", "127.0.0.1:%d" % port, "--cafile", bench.ca, "--workers", str(workers),
                        "--seconds", str(seconds)], capture_output=True, text=True, timeout=seconds + 120)
    bench.done(w)
    j = B.last_json(r.stdout)
    if not j.get("ok"):
        raise RuntimeError("python generator: %s" % r.stdout[-300:])
    return {"rate": j["rate_per_s"], "ok": j["ok"], "errors": j["errors"], "gen_cpu": w.children,
            "gen_ms_per_setup": 1000 * w.children / j["ok"], "proxy_cores": w.cpu["proxy"] / j["seconds"],
            "gen_cores": w.children / j["seconds"], "others_cores": w.others / w.wall}


def latency(bench, port, n=20):
    """The peers' ftplib latency probe, one client, one session after the other: setup (connect
    to PROT P), RETR of a 64 KiB file, QUIT; medians in ms."""
    bench.quiet()
    r = subprocess.run([B.PY, os.path.join(B.PEERS, "ftpsbench.py"), "lat", "--mode", "explicit", "--addr",
                        "127.0.0.1:%d" % port, "--cafile", bench.ca, "--get", "/pub/small.bin", "--n", str(n)],
                       capture_output=True, text=True, timeout=300)
    j = B.last_json(r.stdout)
    if j.get("errors") or not j.get("n"):
        raise RuntimeError("latency probe: %s" % j)
    return j


def part_rate(bench):
    backend = bench.pyftpd()
    H.make_file(os.path.join(backend.root, "pub", "small.bin"), 64 * H.KiB)
    res = bench.results.setdefault("rate", {})
    for kind in ("rsa", "ecdsa"):
        # No limits: 32 clients from one address, and a session counts until its backend side is
        # closed too, which may be after the client saw its end.
        lim = {"max_sessions": 0, "max_sessions_per_ip": 0}
        g1 = B.Gate(bench, "rate-%s-w1" % kind, backend.address, identity=kind, workers=1, limits=lim).start()
        g2 = B.Gate(bench, "rate-%s-w2" % kind, backend.address, identity=kind, workers=2, limits=lim).start()
        pp = B.ModProxy(bench, "rate-" + kind, kind, backend.port).start()
        try:
            plan = [("unpinned", "w1", g1, 1), ("unpinned", "w2", g2, 2), ("unpinned", "modproxy", pp, 0),
                    ("pinned", "w1", g1, 1), ("pinned", "w2", g2, 2)]
            for _, _, t, _ in plan[:3]:   # warm-up, not measured
                run_generator(bench, t.port, seconds=1, conc=4)
            for rep in range(REPS):
                for layout, name, t, workers in plan:
                    m = measure_rate(bench, t, backend, layout, workers)
                    res.setdefault(kind, {}).setdefault(layout, {}).setdefault(name, []).append(m)
                    log("rate %s %s %s rep %d: %.1f/s, proxy %.2f cores %.3f ms/setup, gen %.2f cores, "
                        "others %.2f cores" % (kind, layout, name, rep + 1, m["rate"], m["proxy_cores"],
                                               m["proxy_ms_per_setup"], m["gen_cores"], m["others_cores"]))
            if kind == "rsa":
                B.set_affinity(backend.pid, B.ALL_CPUS)
                B.set_affinity(g1.pid, B.ALL_CPUS)
                res["latency"] = {n: latency(bench, t.port) for n, t in (("w1", g1), ("w2", g2), ("modproxy", pp))}
                log("latency (ftplib, one client): %s" % res["latency"])
                c = measure_rate(bench, g1, backend, "unpinned", 1)
                p = python_generator(bench, g1.port, backend, g1)
                res["generators"] = {"c": c, "python": p}
                log("generators on workers 1: C %.1f/s (%.3f ms CPU/setup, %.2f cores), Python %.1f/s "
                    "(%.3f ms CPU/setup, %.2f cores)" % (c["rate"], c["gen_ms_per_setup"], c["gen_cores"],
                                                         p["rate"], p["gen_ms_per_setup"], p["gen_cores"]))
        finally:
            pp.stop()
            g1.stop()
            g2.stop()
        B.set_affinity(backend.pid, B.ALL_CPUS)
    # The table.
    def med(kind, lay, name, key):
        return median([m[key] for m in res[kind][lay][name]])

    for kind, label in (("rsa", "RSA-2048"), ("ecdsa", "ECDSA P-256")):
        for lay in ("unpinned", "pinned"):
            w1, w2 = med(kind, lay, "w1", "rate"), med(kind, lay, "w2", "rate")
            bench.row("rate", "setups/s %s, workers 2 vs 1 (%s)" % (label, lay), "%.0f" % w2, "%.0f" % w1,
                      w2 / w1, "≥1.7", "CPU cores busy, workers 2 | 1: proxy %.2f | %.2f, generator %.2f | %.2f, "
                      "backend %.2f | %.2f, others %.2f | %.2f" % tuple(
                          med(kind, lay, n, k) for k in ("proxy_cores", "gen_cores", "backend_cores", "others_cores")
                          for n in ("w2", "w1")))
        pp = med(kind, "unpinned", "modproxy", "rate")
        for n, wl in (("w2", "workers 2"), ("w1", "workers 1")):
            r = med(kind, "unpinned", n, "rate")
            bench.row("rate", "setups/s %s, %s vs ProFTPD mod_proxy (unpinned)" % (label, wl), "%.0f" % r,
                      "%.1f" % pp, r / pp, "≥10" if n == "w2" else "")
        e1, e2 = med(kind, "unpinned", "w1", "proxy_ms_per_setup"), med(kind, "unpinned", "w2", "proxy_ms_per_setup")
        bench.row("rate", "setups per proxy CPU-second %s, workers 2 vs 1" % label, "%.0f" % (1000 / e2),
                  "%.0f" % (1000 / e1), e1 / e2, "",
                  "CPU per setup: proxy %.3f | %.3f ms (workers 2 | 1), ProFTPD mod_proxy %.2f ms; generator %.3f ms, "
                  "backend %.3f ms. Two workers on two free cores would give %.2fx one worker's rate" % (
                      e2, e1, med(kind, "unpinned", "modproxy", "proxy_ms_per_setup"),
                      med(kind, "unpinned", "w1", "gen_ms_per_setup"), med(kind, "unpinned", "w1", "backend_ms_per_setup"),
                      2 * e1 / e2))
    lat = res.get("latency")
    if lat:
        for key, what in (("setup_ms_p50", "session setup"), ("total_ms_p50", "setup + 64 KiB RETR + QUIT")):
            bench.row("rate", "ms per %s, one ftplib client, RSA: workers 2 / 1 vs mod_proxy" % what,
                      "%.1f / %.1f" % (lat["w2"][key], lat["w1"][key]), "%.1f" % lat["modproxy"][key],
                      lat["w2"][key] / lat["modproxy"][key])
    g = res.get("generators")
    if g:
        bench.row("rate", "generator CPU ms per setup: C ftpsload vs Python (4 processes), on workers 1",
                  "%.3f" % g["c"]["gen_ms_per_setup"], "%.3f" % g["python"]["gen_ms_per_setup"],
                  g["c"]["gen_ms_per_setup"] / g["python"]["gen_ms_per_setup"], "",
                  "setups/s %.0f vs %.0f; proxy %.2f vs %.2f cores busy (the Python sessions also send PBSZ, PROT)" % (
                      g["c"]["rate"], g["python"]["rate"], g["c"]["proxy_cores"], g["python"]["proxy_cores"]))


# --------------------------------------------------------------------------
# cpu: proxy CPU per GiB against the floor, and the profile


def checked_transfer(bench, url, ca, direction, server, name, extra=(), reap=None, **readers):
    """One curl transfer of the big file: a download (to tmpfs) or an upload (as /up/NAME on
    server), its size and sha256 checked after the measurement. readers: CPU counters read before
    and after; reap: called before the after-reading (a relay that must be waited for).
    Returns (the readers' CPU seconds, curl's result)."""
    w = bench.window(**readers)
    if direction == "down":
        path = os.path.join(bench.tmp, name)
        c = B.curl(url + "/pub/big.bin", ca=ca, out=path, extra=extra)
    else:
        path = server.up_path(name)
        c = B.curl(url + "/up/" + name, ca=ca, upload=bench.big_file(), extra=extra)
    time.sleep(0.3)   # the sessions' ends (a forking server reaps its session processes)
    if reap:
        reap()
    bench.done(w)
    size = os.path.getsize(path)
    got = H.sha256_file(path)
    os.unlink(path)
    if size != BIG_MIB * H.MiB or got != bench.big_sha:
        raise RuntimeError("%s %s: %d bytes, sha256 %s, want %d bytes %s" % (
            url, direction, size, got, BIG_MIB * H.MiB, bench.big_sha))
    return w.cpu, c


def relay_transfer(bench, vsr, direction, bufsize, rep, on_relay=None):
    """curl -> socat -> vsftpd, plain: control and data each through a one-connection socat.
    Returns (relay CPU seconds of both socats, curl result)."""
    ctl_port = H.free_port()
    common = ["socat"] + (["-b", str(bufsize)] if bufsize else [])
    logp = os.path.join(bench.tmp, "socat.log")
    ctl = B.spawn(common + ["TCP-LISTEN:%d,bind=127.0.0.1,reuseaddr" % ctl_port, "TCP:%s" % vsr.address], logp)
    dat = B.spawn(common + ["TCP-LISTEN:%d,bind=%s,reuseaddr" % (vsr.pasv_port, vsr.announce),
                            "TCP:127.0.0.1:%d" % vsr.pasv_port], logp)
    relay_cpu = []
    try:
        B.wait_listening("127.0.0.1", ctl_port, ctl)
        B.wait_listening(vsr.announce, vsr.pasv_port, dat)
        if on_relay:
            on_relay(dat.pid)
        # PASV (not EPSV) and its address (not the control connection's): through the relay.
        _, c = checked_transfer(bench, "ftp://127.0.0.1:%d" % ctl_port, None, direction, vsr, "r%d.bin" % rep,
                                extra=["--disable-epsv", "--no-ftp-skip-pasv-ip"],
                                reap=lambda: relay_cpu.append(B.wait_rusage(dat, 30) + B.wait_rusage(ctl, 30)),
                                backend=lambda: B.tree_cpu(vsr.proc.pid))
    finally:
        for p in (ctl, dat):
            if p.poll() is None:
                H.stop_process(p, signal.SIGKILL, 5)
    return relay_cpu[0], c


def proxy_transfer(bench, gate, direction, rep, vs):
    cpu, c = checked_transfer(bench, "ftp://127.0.0.1:%d" % gate.port, bench.ca, direction, vs, "p%d.bin" % rep,
                              proxy=gate.cpu, backend=lambda: B.tree_cpu(vs.proc.pid))
    return cpu["proxy"], c


def direct_transfer(bench, vs, tls, direction, rep):
    """curl straight to vsftpd, plain or its own explicit FTPS: throughput references. (Not its
    CPU: a vsftpd session process is not always reaped by a process of the tree, so its time can
    be lost.)"""
    return checked_transfer(bench, "ftp://%s" % vs.address, bench.ca if tls else None, direction, vs,
                            "d%d.bin" % rep, vsftpd=lambda: B.tree_cpu(vs.proc.pid))[1]


def part_cpu(bench):
    vs = bench.vsftpd()
    bench.big_file()
    vsr = RelayBackend(bench)
    native = H.Vsftpd(bench.env, "native", tls=True).start()   # vsftpd's own explicit FTPS
    bench.env.backends.append(native)
    os.link(bench.big_file(), native.pub_path("big.bin"))
    gate = B.Gate(bench, "cpu", vs.address).start()     # the default workers (one per CPU)
    pp = B.ModProxy(bench, "cpu", "rsa", vs.port).start()
    res = bench.results.setdefault("cpu", {"proxy": {}, "relay": {}, "modproxy": {}})
    time.sleep(0.5)
    res["rss_idle_kib"] = gate.mem()[0]
    relays = [("socat", None), ("socat -b 65536", 65536)]
    gib = BIG_MIB * H.MiB / GiB
    try:
        for rep in range(REPS):
            for d in ("down", "up"):
                cpu, c = proxy_transfer(bench, gate, d, rep, vs)
                res["proxy"].setdefault(d, []).append({"cpu_per_gib": cpu / gib, "mib_s": c["mib_s"],
                                                       "cipher": c["cipher"], "tls": c["tls"]})
                log("cpu proxy %s rep %d: %.3f CPU-s/GiB, %.0f MiB/s, %s %s" % (
                    d, rep + 1, cpu / gib, c["mib_s"], c["tls"], c["cipher"]))
                for name, bs in relays:
                    rc, c = relay_transfer(bench, vsr, d, bs, rep)
                    res["relay"].setdefault(name, {}).setdefault(d, []).append(
                        {"cpu_per_gib": rc / gib, "mib_s": c["mib_s"]})
                    log("cpu relay %s %s rep %d: %.3f CPU-s/GiB, %.0f MiB/s" % (name, d, rep + 1, rc / gib,
                                                                                 c["mib_s"]))
                cpu, c = checked_transfer(bench, "ftp://127.0.0.1:%d" % pp.port, bench.ca, d, vs, "m%d.bin" % rep,
                                          proxy=pp.cpu, backend=lambda: B.tree_cpu(vs.proc.pid))
                res["modproxy"].setdefault(d, []).append({"cpu_per_gib": cpu["proxy"] / gib, "mib_s": c["mib_s"]})
                log("cpu mod_proxy %s rep %d: %.3f CPU-s/GiB, %.0f MiB/s, %s %s" % (
                    d, rep + 1, cpu["proxy"] / gib, c["mib_s"], c["tls"], c["cipher"]))
                for name, server, tls in (("vsftpd plain", vs, False), ("vsftpd FTPS", native, True)):
                    c = direct_transfer(bench, server, tls, d, rep)
                    res.setdefault("direct", {}).setdefault(name, {}).setdefault(d, []).append({"mib_s": c["mib_s"]})
                    log("cpu direct %s %s rep %d: %.0f MiB/s" % (name, d, rep + 1, c["mib_s"]))
        ciphers = {x["cipher"] for d in res["proxy"] for x in res["proxy"][d]}
        if len(ciphers) != 1 or None in ciphers:
            raise RuntimeError("negotiated ciphers: %s" % ciphers)
        cipher = ciphers.pop()
        evp = B.CIPHER_EVP[cipher]
        res["cipher"] = cipher
        res["openssl_speed"] = {"encrypt": B.openssl_speed(evp), "decrypt": B.openssl_speed(evp, decrypt=True)}
        res["rss_peak_kib"] = B.vm_hwm_kib(gate.pid)
        floor_rows(bench, res, relays)
        bench.row("cpu", "ftpsgate RSS, KiB: peak over the transfers (VmHWM) / idle", "%d / %d" % (
            res["rss_peak_kib"], res["rss_idle_kib"]), "", None, "", "workers: default (one per CPU, %d)" % os.cpu_count())
        # The profile, of one more transfer each way (perf perturbs what it measures).
        res["profile"] = profile(bench, gate, vs, vsr, dict(relays)[res["floor"]["down"]["relay_name"]])
        write_profile(bench)
    finally:
        pp.stop()
        gate.stop()


def floor_rows(bench, res, relays):
    cipher = res["cipher"]
    evp = B.CIPHER_EVP[cipher]
    for d, op, label in (("down", "encrypt", "download"), ("up", "decrypt", "upload")):
        proxy = median([x["cpu_per_gib"] for x in res["proxy"][d]])
        relay = {n: median([x["cpu_per_gib"] for x in res["relay"][n][d]]) for n, _ in relays}
        rname = min(relay, key=relay.get)
        crypto = GiB / res["openssl_speed"][op]
        floor = relay[rname] + crypto
        res.setdefault("floor", {})[d] = {"relay": relay[rname], "relay_name": rname, "crypto": crypto,
                                          "floor": floor, "proxy": proxy}
        bench.row("cpu", "proxy CPU-s/GiB, %s (%s)" % (label, cipher), "%.3f" % proxy,
                  "floor %.3f = %s %.3f + %s %.3f" % (floor, rname, relay[rname], evp, crypto), proxy / floor,
                  "≤1.3", "above floor %.3f s/GiB; other relay: %s" % (
                      proxy - floor, ", ".join("%s %.3f" % (n, v) for n, v in relay.items() if n != rname)))
        mpc = median([x["cpu_per_gib"] for x in res["modproxy"][d]])
        bench.row("cpu", "proxy CPU-s/GiB, %s: ftpsgate vs ProFTPD mod_proxy" % label, "%.3f" % proxy, "%.3f" % mpc,
                  proxy / mpc)
        mib = median([x["mib_s"] for x in res["proxy"][d]])
        refs = [("%s relay (plain)" % rname, res["relay"][rname][d]), ("ProFTPD mod_proxy", res["modproxy"][d])] + [
            (n, res["direct"][n][d]) for n in ("vsftpd FTPS", "vsftpd plain")]
        for n, xs in refs:
            ref = median([x["mib_s"] for x in xs])
            bench.row("cpu", "MiB/s %s: ftpsgate (TLS) vs %s" % (label, n), "%.0f" % mib, "%.0f" % ref, mib / ref)


class RelayBackend(B.RelayVsftpd):
    """A second vsftpd on the same files (hard links), identical but for where its passive
    replies point: 127.0.0.2, where socat listens."""

    def __init__(self, bench):
        super().__init__(bench.env, "vsr", "127.0.0.2")
        self.start()
        bench.env.backends.append(self)
        os.link(bench.big_file(), self.pub_path("big.bin"))


def profile(bench, gate, vs, vsr, relay_bs):
    """perf record of ftpsgate during one more download and one more upload, and of the socat
    data relay during one relayed download; summarised into PROFILE_OUT."""
    if not perfsummary.available():
        raise RuntimeError("perf record does not work here, so there is no profile (the rest of this part ran)")
    out = {}
    for i, d in enumerate(("down", "up")):
        rec = perfsummary.Recording(gate.pid, os.path.join(bench.out, "perf-ftpsgate-%s.data" % d))
        try:
            proxy_transfer(bench, gate, d, 100 + i, vs)
        finally:
            rec.stop()
        out[d] = perfsummary.summarize(perfsummary.report(rec.data), rec.maps)
    holder = {}

    def record(pid):
        holder["rec"] = perfsummary.Recording(pid, os.path.join(bench.out, "perf-socat-down.data"))

    try:
        relay_transfer(bench, vsr, "down", relay_bs, 100, on_relay=record)
    finally:
        if "rec" in holder:
            holder["rec"].stop()
    out["relay"] = perfsummary.summarize(perfsummary.report(holder["rec"].data), holder["rec"].maps)
    return out


def write_profile(bench):
    res = bench.results["cpu"]
    prof, fl = res["profile"], res["floor"]
    cipher = res["cipher"]
    evp = B.CIPHER_EVP[cipher]
    lines = [
        "ftpsgate: where the CPU of a 1 GiB transfer goes (curl, explicit FTPS, PROT P, TLS 1.3 %s, from vsftpd)"
        % cipher,
        "written by tests/bench/bench.py (part cpu) on %s; binary %s, commit %s; %s"
        % (datetime.date.today().isoformat(), bench.binary, bench.results["meta"]["commit"],
           bench.results["meta"]["cpu_model"] + ", %d CPUs" % bench.results["meta"]["cpus"]),
        "method: perf record -e cpu-clock -F 4999 -p PID (every thread of the process), perf report --sort dso,sym;",
        "  shares are of the profiled run; s/GiB = share x the median CPU-s/GiB of the unprofiled runs of the same",
        "  part (so perf's own overhead does not inflate them). libcrypto is stripped of local symbols: an address",
        "  perf cannot name is folded into the function that holds it (its .eh_frame range), labelled by the",
        "  instructions in it. Under cpu-clock sampling in a VM, time spent with interrupts off is charged to the",
        "  point where they are enabled again (_raw_spin_unlock_irqrestore, finish_task_switch, handle_softirqs).",
        "",
    ]
    for d, label in (("down", "download"), ("up", "upload")):
        f = fl[d]
        s = prof[d]
        cpg = f["proxy"]
        g = {k: v / 100 * cpg for k, v in s["groups"].items()}
        relay = prof["relay"]["groups"]
        rk = relay.get("kernel", 0) / 100 * f["relay"] if d == "down" else None
        lines.append("== %s: ftpsgate %.3f CPU-s/GiB; floor %.3f = %s %.3f + openssl speed %s %.3f; ratio %.2f"
                     % (label, cpg, f["floor"], f["relay_name"], f["relay"], evp, f["crypto"], cpg / f["floor"]))
        lines.append("   above the floor: %.3f s/GiB, of which (by group, against its part of the floor):" %
                     (cpg - f["floor"]))
        lines.append("     kernel     %.3f s/GiB vs the relay's whole %.3f%s" % (
            g.get("kernel", 0), f["relay"], "" if rk is None else " (its kernel part %.3f)" % rk))
        lines.append("     libcrypto  %.3f s/GiB vs openssl speed's %.3f for the same bytes (x%.2f)" % (
            g.get("libcrypto", 0), f["crypto"], g.get("libcrypto", 0) / f["crypto"]))
        rest = sum(v for k, v in g.items() if k not in ("kernel", "libcrypto"))
        lines.append("     the rest   %.3f s/GiB: %s (none of it in the floor)" % (rest, ", ".join(
            "%s %.3f" % (k, v) for k, v in sorted(g.items(), key=lambda kv: -kv[1]) if k not in ("kernel", "libcrypto"))))
        lines += perfsummary.render("ftpsgate, " + label, s, cpg)
        lines.append("")
    lines += perfsummary.render("the floor's relay: socat (%s) relaying one download" % fl["down"]["relay_name"],
                                prof["relay"], fl["down"]["relay"], top=15)
    text = "\n".join(lines) + "\n"
    for path in (PROFILE_OUT, os.path.join(bench.out, os.path.basename(PROFILE_OUT))):
        with open(path, "w") as f:
            f.write(text)
    print(text, flush=True)


# --------------------------------------------------------------------------
# parallel: 8 downloads at once, workers 2 vs 1


def part_parallel(bench):
    vs = bench.vsftpd()
    shas = []
    for i in range(PAR_N):
        shas.append(H.make_file(vs.pub_path("par%d.bin" % i), PAR_MIB * H.MiB))
    gates = {1: B.Gate(bench, "par-w1", vs.address, workers=1).start(),
             2: B.Gate(bench, "par-w2", vs.address, workers=2).start()}
    res = bench.results.setdefault("parallel", {1: [], 2: []})
    outdir = os.path.join(bench.tmp, "par-out")
    os.makedirs(outdir, exist_ok=True)
    try:
        for rep in range(REPS):
            for w, g in gates.items():
                procs = []
                w0 = bench.window(proxy=g.cpu, backend=lambda: B.tree_cpu(vs.proc.pid))
                for i in range(PAR_N):
                    argv = ["curl", "-sS", "--user", "anonymous:bench@example.invalid", "--ssl-reqd", "--cacert",
                            bench.ca, "--max-time", "600", "-o", os.path.join(outdir, "par%d.bin" % i),
                            g.url("/pub/par%d.bin" % i)]
                    procs.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
                errs = [p.communicate(timeout=660)[1] for p in procs]
                wall = time.monotonic() - w0.t0
                time.sleep(0.2)
                bench.done(w0)
                bad = []
                for i, p in enumerate(procs):
                    path = os.path.join(outdir, "par%d.bin" % i)
                    ok = p.returncode == 0 and os.path.exists(path) and H.sha256_file(path) == shas[i]
                    if not ok:
                        bad.append("par%d (curl %d: %s)" % (i, p.returncode, errs[i].decode(errors="replace")[-200:]))
                    if os.path.exists(path):
                        os.unlink(path)
                if bad:
                    raise RuntimeError("workers %d: wrong or failed downloads: %s" % (w, "; ".join(bad)))
                total = PAR_N * PAR_MIB
                m = {"mib_s": total / wall, "wall": wall, "proxy_cpu_per_gib": w0.cpu["proxy"] / (total / 1024),
                     "proxy_cores": w0.cpu["proxy"] / wall, "others_cores": w0.others / w0.wall,
                     "clients_cores": w0.children / wall}
                res[w].append(m)
                log("parallel workers %d rep %d: %.0f MiB/s aggregate, proxy %.2f cores, %.3f CPU-s/GiB, "
                    "curls %.2f cores, others %.2f cores; %d sha256 right" % (
                        w, rep + 1, m["mib_s"], m["proxy_cores"], m["proxy_cpu_per_gib"], m["clients_cores"],
                        m["others_cores"], PAR_N))
    finally:
        for g in gates.values():
            g.stop()
        for i in range(PAR_N):
            os.unlink(vs.pub_path("par%d.bin" % i))
    a1, a2 = median([m["mib_s"] for m in res[1]]), median([m["mib_s"] for m in res[2]])
    bench.row("parallel", "aggregate MiB/s, %d x %d MiB, workers 2 vs 1" % (PAR_N, PAR_MIB), "%.0f" % a2,
              "%.0f" % a1, a2 / a1, "",
              "proxy %.2f vs %.2f cores; curls %.2f cores; all %d x %d sha256 right" % (
                  median([m["proxy_cores"] for m in res[2]]), median([m["proxy_cores"] for m in res[1]]),
                  median([m["clients_cores"] for m in res[2]]), PAR_N * 2, REPS))


# --------------------------------------------------------------------------
# memory: idle logged-in sessions


def part_memory(bench):
    backend = bench.pyftpd()
    res = bench.results.setdefault("memory", {})
    for n in SESSIONS:
        for w in (1, 2):
            g = B.Gate(bench, "mem-w%d-%d" % (w, n), backend.address, workers=w,
                       limits={"max_sessions": 0, "max_sessions_per_ip": 0}).start()
            try:
                # Warm-up: lazily made state (per-thread OpenSSL, libuv's pool) is not per session.
                run_generator(bench, g.port, seconds=1, conc=4)
                time.sleep(1.0)
                before = g.mem()
                fds0 = g.nfds()
                hold = B.spawn([bench.gen, "hold", "127.0.0.1", str(g.port), bench.ca, "--n", str(n), "--conc", "64",
                                "--deadline", "600"], os.path.join(bench.tmp, "hold.log"), nofile=True,
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE)
                line = hold.stdout.readline().decode().strip()   # "READY ok errors" (the generator's deadline bounds it)
                opened = B.last_json(hold.stdout.readline().decode())
                if not line.startswith("READY") or int(line.split()[1]) != n:
                    raise RuntimeError("workers %d: %d sessions wanted, generator says %r %s" % (w, n, line, opened))
                time.sleep(2.0)
                after = g.mem()
                fds = g.nfds() - fds0
                hold.stdin.close()
                rest = hold.stdout.read().decode()
                hold.wait(60)
                closed = B.last_json(rest)
                if closed["dropped_while_idle"] or closed["quit_ok"] != n:
                    raise RuntimeError("workers %d, %d sessions: %s" % (w, n, closed))
                m = {"rss_before": before[0], "pss_before": before[1], "rss": after[0], "pss": after[1],
                     "pss_per_session": (after[1] - before[1]) / n, "rss_per_session": (after[0] - before[0]) / n,
                     "fds_per_session": fds / n, "open_s": opened["wall_s"], "threads": g.threads()}
                res.setdefault(n, {})[w] = m
                log("memory workers %d, %d sessions: PSS %d -> %d KiB (%.1f KiB/session), RSS %.1f KiB/session, "
                    "%.2f fds/session, opened in %.1f s" % (w, n, before[1], after[1], m["pss_per_session"],
                                                           m["rss_per_session"], m["fds_per_session"], m["open_s"]))
            finally:
                g.stop()
    for n in SESSIONS:
        for w in (2, 1):
            m = res[n][w]
            bench.row("memory", "KiB per idle session (PSS), %d sessions, workers %d" % (n, w),
                      "%.1f" % m["pss_per_session"], "RSS %.1f" % m["rss_per_session"], None,
                      "≤32" if (n == max(SESSIONS) and w == 2) else "",
                      "PSS %d -> %d KiB, %.2f descriptors per session, %d opened in %.1f s" % (
                          m["pss_before"], m["pss"], m["fds_per_session"], n, m["open_s"]),
                      check=m["pss_per_session"])


# --------------------------------------------------------------------------
# suites: the TLS 1.3 default


def part_suites(bench):
    res = bench.results.setdefault("suites", {"speed": {}, "download": {}})
    for s in SUITES:
        evp = B.CIPHER_EVP[s]
        res["speed"][s] = {"encrypt": B.openssl_speed(evp), "decrypt": B.openssl_speed(evp, decrypt=True)}
        log("openssl speed %s: %.0f MB/s encrypt, %.0f MB/s decrypt" % (
            evp, res["speed"][s]["encrypt"] / 1e6, res["speed"][s]["decrypt"] / 1e6))
    vs = bench.vsftpd()
    bench.big_file()
    gates = {s: B.Gate(bench, "suite-%s" % B.CIPHER_EVP[s], vs.address, ciphersuites=s).start() for s in SUITES}
    gib = BIG_MIB * H.MiB / GiB
    try:
        for rep in range(REPS):
            for s, g in gates.items():
                cpu, c = proxy_transfer(bench, g, "down", rep, vs)
                if c["cipher"] != s:
                    raise RuntimeError("forced %s, curl negotiated %s" % (s, c["cipher"]))
                res["download"].setdefault(s, []).append({"cpu_per_gib": cpu / gib, "mib_s": c["mib_s"]})
                log("suite %s rep %d: %.3f CPU-s/GiB, %.0f MiB/s" % (s, rep + 1, cpu / gib, c["mib_s"]))
    finally:
        for g in gates.values():
            g.stop()
    ref = "TLS_AES_256_GCM_SHA384"
    rc = median([x["cpu_per_gib"] for x in res["download"][ref]])
    for s in SUITES:
        cpu = median([x["cpu_per_gib"] for x in res["download"][s]])
        mib = median([x["mib_s"] for x in res["download"][s]])
        sp = res["speed"][s]["encrypt"]
        bench.row("suites", "%s: download CPU-s/GiB (MiB/s) vs AES-256-GCM" % B.CIPHER_EVP[s],
                  "%.3f (%.0f)" % (cpu, mib), "%.3f" % rc, cpu / rc, "",
                  "openssl speed %.0f MB/s enc, %.0f dec = %.2fx AES-256-GCM's" % (
                      sp / 1e6, res["speed"][s]["decrypt"] / 1e6, sp / res["speed"][ref]["encrypt"]))


# --------------------------------------------------------------------------


def meta(bench):
    bindir = os.path.dirname(bench.binary)
    commit = "unknown"
    r = subprocess.run(["git", "-C", bindir, "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True)
    if r.returncode == 0:
        # The checkout the binary sits in; the code it is built from is proxy/, common/ and the
        # build files, whose last commit is named too (the benchmark's own commits do not count).
        commit = r.stdout.strip()
        code = subprocess.run(["git", "-C", bindir, "log", "-1", "--format=%h", "--abbrev=12", "--", ":/proxy",
                               ":/common", ":/CMakeLists.txt"], capture_output=True, text=True).stdout.strip()
        if code and code != commit:
            commit += ", code (proxy/, common/) of %s" % code
        d = subprocess.run(["git", "-C", bindir, "status", "--porcelain", "--", ":/proxy", ":/common"],
                           capture_output=True, text=True)
        if d.stdout.strip():
            commit += " + uncommitted changes in proxy/ or common/"
        commit += "; binary built %s" % time.strftime("%Y-%m-%d %H:%M", time.localtime(os.path.getmtime(bench.binary)))
    model = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    ov = subprocess.run(["openssl", "version"], capture_output=True, text=True).stdout.strip()
    return {"date": datetime.datetime.now().isoformat(timespec="seconds"), "binary": bench.binary, "commit": commit,
            "cpus": os.cpu_count(), "cpu_model": model, "kernel": platform.release(), "openssl": ov,
            "load_start": load_note(), "reps": REPS, "rate_seconds": RATE_SECONDS, "rate_conc": RATE_CONC}


def print_table(bench):
    m = bench.results["meta"]
    head = ["ftpsgate benchmark, %s, commit %s, %s x %s, kernel %s, %s; load average %s at start, %s at end" % (
        m["date"], m["commit"], m["cpus"], m["cpu_model"], m["kernel"], m["openssl"], m["load_start"],
        m.get("load_end", "?")), "medians of %d rounds (setups interleaved in each round)" % REPS]
    if bench.others:
        timed_out = sum(1 for wt, load in bench.waits if load >= QUIET_CORES)
        head.append("other users' CPU during the %d measurements: median %.2f, max %.2f cores of %d; before each, "
                    "waited up to %d s for under %.2f busy cores (median wait %.1f s, %d gave up)" % (
                        len(bench.others), median(bench.others), max(bench.others), os.cpu_count(), QUIET_WAIT,
                        QUIET_CORES, median([wt for wt, _ in bench.waits]), timed_out))
    head.append("")
    cols = ("part", "measure", "ftpsgate", "reference", "ratio", "target", "")
    rows = [cols] + [(r["part"], r["what"], r["value"], r["reference"],
                      "" if r["ratio"] is None else "%.2f" % r["ratio"], r["target"], r["met"]) for r in bench.rows]
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(cols))]
    lines = head + ["| " + " | ".join(str(c).ljust(widths[i]) for i, c in enumerate(row)) + " |" for row in rows]
    lines.insert(len(head) + 1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    notes = [r for r in bench.rows if r["note"]]
    if notes:
        lines += ["", "notes:"] + ["  %s: %s" % (r["what"], r["note"]) for r in notes]
    text = "\n".join(lines) + "\n"
    print("\n" + text, flush=True)
    with open(os.path.join(bench.out, "table.txt"), "w") as f:
        f.write(text)


def main():
    suite = H.Suite("bench")
    bench = None
    failed = []
    try:
        bench = Bench(suite)
        bench.results["meta"] = meta(bench)
        log("binary %s (%s), results in %s" % (bench.binary, bench.results["meta"]["commit"], bench.out))
        parts = {"rate": part_rate, "cpu": part_cpu, "parallel": part_parallel, "memory": part_memory,
                 "suites": part_suites}
        for name in PARTS:
            if name not in parts:
                raise RuntimeError("unknown part %r (BENCH_PARTS)" % name)
            if suite.run(name, parts[name], bench) is False:
                failed.append(name)
        bench.results["meta"]["load_end"] = load_note()
        bench.results["rows"] = bench.rows
        bench.results["others_cores"] = bench.others
        bench.results["quiet_waits"] = bench.waits
        with open(os.path.join(bench.out, "results.json"), "w") as f:
            json.dump(bench.results, f, indent=1, default=str)
        print_table(bench)
    except Exception as e:  # noqa: BLE001
        suite.fail_setup("bench", e)
        failed.append("setup")
    finally:
        if bench is not None:
            bench.close()
    if failed:
        print("FAILED parts: %s" % ", ".join(failed), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    resource.setrlimit(resource.RLIMIT_NOFILE, (resource.getrlimit(resource.RLIMIT_NOFILE)[1],) * 2)
    if os.environ.get("BENCH_NICE"):
        # Every process of the run inherits it: on a shared machine, a negative value makes other
        # users' jobs yield the CPUs to the measurement (root only).
        os.nice(int(os.environ["BENCH_NICE"]))
    sys.exit(main())
