#!/usr/bin/python3
"""On-demand benchmark (not part of CI): what the live view costs at N sessions.

One ftpsgate (workers: BENCH_WORKERS, default 1, so that the transfer and the N
sessions' snapshots share one loop: the worst case) holds N logged-in FTPS sessions
(tests/tools/sessionload.py) in front of a pyftpdlib built for many sessions; a
download of BENCH_MIB MiB from vsftpd runs through it, unpaced, ROUNDS times while
another process polls GET /sessions?limit=10000 and ROUNDS times without,
alternating, in the same run: once with a poll every 0.1 s (twenty times the status
page's rate), once back to back (the endpoint saturated: on a small machine this
measures CPU contention between the poller, the admin thread and the transfer). Reported: the cost of one
/sessions call at N sessions (median and worst wall time, size of the answer), the
proxy's CPU time per call (from /proc, polling alone, no transfer), the idle proxy's
CPU per second with the N sessions (their snapshots included), and the ratio of
the median transfer time with polling to the one without.

  FTPSGATE_BIN=build/ftpsgate /usr/bin/python3 tests/bench/bench_live_sessions.py
  env: BENCH_SESSIONS (2000), BENCH_MIB (256), BENCH_ROUNDS (3), BENCH_WORKERS (1)
"""
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
sys.path.insert(0, os.path.join(HERE, "..", "tools"))
sys.dont_write_bytecode = True
import adminhttp as A  # noqa: E402
import harness as H  # noqa: E402
from harness import check, check_eq  # noqa: E402
import pyftpd_serve  # noqa: E402
import sessionload as SL  # noqa: E402

N = int(os.environ.get("BENCH_SESSIONS", "2000"))
MIB = int(os.environ.get("BENCH_MIB", "256"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
WORKERS = int(os.environ.get("BENCH_WORKERS", "1"))


def cpu_s(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main():
    SL.raise_nofile()
    s = H.Suite("bench-live-sessions")
    env = H.Env(s, need_bytes=(MIB + 64) * H.MiB)
    try:
        vs = env.backend("vs1")
        sha = vs.add_pub("big.bin", MIB * H.MiB)
        py = pyftpd_serve.ManyPyftpd(env, "many")
        env.backends.append(py)
        py.start()
        many = env.front(py, "many")
        main_t = env.front(vs, "main")
        port = H.free_port()
        env.proxy.extra_top["admin"] = {"bind": "%s:%d" % (H.HOST, port), "token": A.TOKEN}
        env.proxy.extra_top["workers"] = WORKERS
        env.proxy.extra_limits = {"max_sessions": N + 100, "max_sessions_per_ip": 0, "idle_timeout": 3600,
                                  "login_timeout": 600}
        cfg = env.proxy.config
        env.proxy.config = lambda: dict(cfg(), log={"level": "info", "format": "text"})
        env.start(many, main_t)
        load = SL.SessionLoad(many.host, many.port, many.ca, H.FTP_USER, H.PASSWORD)
        res = load.open(N, concurrency=200, timeout=1800)
        check_eq(res["open"], N, "sessions opened")
        H.wait_until(lambda: A.sessions(port, limit=10000)["total"] == N, 15, 0.5)

        # The idle proxy with N sessions: its CPU is mostly the workers' snapshots (one walk a second).
        pid = env.proxy.pid
        c0 = cpu_s(pid)
        time.sleep(10)
        print("idle with %d sessions: proxy CPU %.1f ms per second (the once-a-second snapshots included)"
              % (N, (cpu_s(pid) - c0) * 100), flush=True)
        # The cost of one call, alone.
        times, size = [], 0
        c0 = cpu_s(pid)
        for _ in range(50):
            t0 = time.monotonic()
            st, _, b = A.get(port, "/sessions?limit=10000", A.TOKEN)
            times.append(time.monotonic() - t0)
            check_eq(st, 200, "/sessions")
            size = len(b)
        cpu_per_call = (cpu_s(pid) - c0) / 50
        print("/sessions at %d sessions: %d bytes; wall median %.1f ms, worst %.1f ms; proxy CPU %.1f ms per call"
              % (N, size, statistics.median(times) * 1000, max(times) * 1000, cpu_per_call * 1000), flush=True)

        def download():
            f = H.ftplib_connect(main_t)
            try:
                t0 = time.monotonic()
                n, got, _ = H.ftplib_get(f, "/pub/big.bin")
                dt = time.monotonic() - t0
            finally:
                H.quit_quietly(f)
            check_eq((n, got), (MIB * H.MiB, sha), "download")
            return dt

        poller_src = (
            "import sys, time, http.client\n"
            "port, token, interval = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])\n"
            "n = 0\n"
            "while True:\n"
            "    c = http.client.HTTPConnection('127.0.0.1', port, timeout=10)\n"
            "    c.request('GET', '/sessions?limit=10000', headers={'Authorization': 'Bearer ' + token})\n"
            "    c.getresponse().read(); c.close(); n += 1\n"
            "    print(n, flush=True)\n"
            "    time.sleep(interval)\n")

        def polled(interval):
            """The download while another process polls /sessions every interval s (0: back to back)."""
            log = os.path.join(env.tmp, "poller-%s.log" % os.urandom(4).hex())
            p = H.spawn(["/usr/bin/python3", "-c", poller_src, str(port), A.TOKEN, str(interval)], log)
            try:
                H.wait_until(lambda: os.path.getsize(log) > 0, 10)
                return download(), len(open(log).read().split())
            finally:
                H.stop_process(p)

        download()  # warm-up
        for interval in (0.1, 0):
            plain, with_poll, calls = [], [], []
            for _ in range(ROUNDS):
                plain.append(download())
                dt, n = polled(interval)
                with_poll.append(dt)
                calls.append(n)
            ratio = statistics.median(with_poll) / statistics.median(plain)
            print("download of %d MiB with %d sessions held: without polling %s s; while another process polls "
                  "/sessions %s %s s (%s calls); ratio of medians %.3f" % (
                      MIB, N, " ".join("%.2f" % x for x in plain),
                      "every %.1f s" % interval if interval else "back to back",
                      " ".join("%.2f" % x for x in with_poll), " ".join(map(str, calls)), ratio), flush=True)
        load.close_all(quit=False)
    except Exception as e:  # noqa: BLE001
        s.fail_setup("bench", e)
    finally:
        env.close()
    sys.exit(s.finish())


if __name__ == "__main__":
    main()
