#!/usr/bin/python3
"""On-demand benchmark (not part of CI): 1 GiB download and upload with curl
through ftpsgate (explicit FTPS, PROT P), side by side in the same run with
references measured on the same machine:

  direct-plain  curl -> vsftpd, plain FTP (the backend itself, no TLS)
  direct-tls    curl -> vsftpd with its own explicit FTPS (the no-proxy TLS ceiling)
  ftpsgate      curl -> ftpsgate (TLS) -> vsftpd plain

Reports MiB/s (median of REPS runs), the ratio of ftpsgate to each reference,
and ftpsgate's RSS idle, sampled peak during the transfers, and VmHWM.

  FTPSGATE_BIN=build/ftpsgate /usr/bin/python3 tests/bench/throughput.py
  env: BENCH_MIB (1024), BENCH_REPS (3)
Needs tests/setup-deps.sh to have run (vsftpd, curl). Everything on loopback.
"""
import os
import statistics
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
import harness as H  # noqa: E402

SIZE_MIB = int(os.environ.get("BENCH_MIB", "1024"))
REPS = int(os.environ.get("BENCH_REPS", "3"))


def rss_sampler(pid, stop, out):
    peak = 0
    while not stop.is_set():
        v = H.rss_kib(pid) or 0
        peak = max(peak, v)
        time.sleep(0.05)
    out.append(peak)


def curl_speed(url, ca, tls, upload_from=None):
    argv = ["curl", "-sS", "--user", "%s:%s" % (H.FTP_USER, H.PASSWORD), "--ftp-pasv",
            "-w", "%{speed_download} %{speed_upload}", "--max-time", "600"]
    if tls:
        argv += ["--ssl-reqd", "--cacert", ca]
    if upload_from:
        argv += ["-T", upload_from, url]
    else:
        argv += ["-o", "/dev/null", url]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=620)
    if r.returncode != 0:
        raise RuntimeError("curl failed: %s" % r.stderr[-300:])
    down, up = (float(x) for x in r.stdout.split())
    return (up if upload_from else down) / H.MiB


def main():
    suite = H.Suite("bench")
    env = H.Env(suite, need_bytes=(SIZE_MIB * 3 + 64) * H.MiB)
    try:
        plain = env.backend("plain")
        native = H.Vsftpd(env, "native", tls=True).start()
        env.backends.append(native)
        front = env.front(plain, "bench", protection="private")
        env.start(front)
        pid = env.proxy.pid
        time.sleep(0.5)
        idle_rss = H.rss_kib(pid)

        src = os.path.join(env.client_dir, "big.bin")
        sha = H.make_file(src, SIZE_MIB * H.MiB)
        for vs in (plain, native):
            os.link(src, os.path.join(vs.pub, "big.bin"))

        setups = [
            ("direct-plain", "ftp://%s/pub/big.bin" % plain.address, "ftp://%s/up/" % plain.address, False, plain),
            ("direct-tls", "ftp://%s/pub/big.bin" % native.address, "ftp://%s/up/" % native.address, True, native),
            ("ftpsgate", front.url("/pub/big.bin"), front.url("/up/"), True, plain),
        ]
        results = {}
        stop = threading.Event()
        peaks = []
        sampler = threading.Thread(target=rss_sampler, args=(pid, stop, peaks), daemon=True)
        sampler.start()
        for rep in range(REPS):
            for name, dl, up, tls, vs in setups:
                d = curl_speed(dl, env.certs.ca, tls)
                target = os.path.join(vs.up, "b%d.bin" % rep)
                u = curl_speed(up + "b%d.bin" % rep, env.certs.ca, tls, upload_from=src)
                if os.path.getsize(target) != SIZE_MIB * H.MiB or H.sha256_file(target) != sha:
                    raise RuntimeError("%s: uploaded file differs" % name)
                os.unlink(target)
                results.setdefault(name, {"down": [], "up": []})
                results[name]["down"].append(d)
                results[name]["up"].append(u)
        stop.set()
        sampler.join(5)
        with open("/proc/%d/status" % pid) as f:
            hwm = [ln.split()[1] for ln in f if ln.startswith("VmHWM")][0]

        print("\n%d MiB, median of %d runs, MiB/s (curl on loopback, %d cores)" % (SIZE_MIB, REPS, os.cpu_count()))
        print("%-14s %10s %10s" % ("setup", "download", "upload"))
        med = {}
        for name, _, _, _, _ in setups:
            med[name] = (statistics.median(results[name]["down"]), statistics.median(results[name]["up"]))
            print("%-14s %10.0f %10.0f" % (name, med[name][0], med[name][1]))
        g = med["ftpsgate"]
        for ref in ("direct-plain", "direct-tls"):
            r = med[ref]
            print("ftpsgate / %-12s download %.2f  upload %.2f" % (ref, g[0] / r[0], g[1] / r[1]))
        print("ftpsgate RSS: idle %d KiB, sampled peak during transfers %d KiB, VmHWM %s KiB"
              % (idle_rss, peaks[0] if peaks else -1, hwm))
    finally:
        env.close()


if __name__ == "__main__":
    main()
