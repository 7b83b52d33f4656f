#!/usr/bin/python3
"""On-demand benchmark (not part of CI): load held. N concurrent logged-in explicit
FTPS sessions (AUTH TLS, USER/PASS, PBSZ 0, PROT P) on one ftpsgate process, in front
of a pyftpdlib backend (one process, epoll: vsftpd would fork two processes per
session). The load generator is tests/tools/sessionload.py: one Python process,
non-blocking sockets and a selector, at most BENCH_CONCURRENCY sessions in set-up at
once, so that the proxy sets the pace.

Measured, all on the proxy's process: RSS and PSS before and with the N sessions
(memory per session = the difference / N), descriptors (per session, and the soft
limit the proxy set itself from max_sessions), the time to open them; then with
max_sessions = N: a session past it gets 421 at once and the connection closes;
every one of the N sessions still answers NOOP; once one leaves, a new session logs
in and downloads a file (sha256 checked); after all close, descriptors return to the
idle count.

  FTPSGATE_BIN=build/ftpsgate /usr/bin/python3 tests/bench/hold_sessions.py
  env: BENCH_SESSIONS (9000), BENCH_CONCURRENCY (200)
Each session needs two descriptors in the proxy and one here; with a hard limit of
20,000 (`ulimit -Hn`) 9,000 sessions fit (the proxy raises its soft limit itself).
"""
import os
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
sys.path.insert(0, os.path.join(HERE, "..", "tools"))
sys.dont_write_bytecode = True
import harness as H  # noqa: E402
from harness import check, check_eq  # noqa: E402
import pyftpd_serve  # noqa: E402
import sessionload as SL  # noqa: E402

N = int(os.environ.get("BENCH_SESSIONS", "9000"))
CONC = int(os.environ.get("BENCH_CONCURRENCY", "200"))


def pss_kib(pid):
    with open("/proc/%d/smaps_rollup" % pid) as f:
        for line in f:
            if line.startswith("Pss:"):
                return int(line.split()[1])
    return 0


def nofile(pid):
    with open("/proc/%d/limits" % pid) as f:
        for ln in f:
            if ln.startswith("Max open files"):
                return int(ln.split()[3]), int(ln.split()[4])
    return None


def metrics(port):
    with urllib.request.urlopen("http://%s:%d/metrics" % (H.HOST, port), timeout=10) as r:
        text = r.read().decode()
    return {ln.split()[0]: float(ln.split()[1]) for ln in text.splitlines()
            if ln and not ln.startswith("#") and len(ln.split()) == 2}


def settle_fds(pid, timeout=30):
    prev = [None]

    def stable():
        n = H.fd_count(pid)
        same = n == prev[0]
        prev[0] = n
        return same
    H.wait_until(stable, timeout, step=0.5)
    return H.fd_count(pid)


def main():
    soft, hard = SL.raise_nofile()
    s = H.Suite("bench-hold-sessions")
    env = H.Env(s, need_bytes=64 * H.MiB)
    fig = {}
    try:
        py = pyftpd_serve.ManyPyftpd(env, "many")
        env.backends.append(py)
        py.start()
        sha = py.add_pub("small.bin", 64 * H.KiB + 1)
        t = env.front(py, "hold", protection="private")
        env.proxy.admin_port = admin = H.free_port()
        env.proxy.extra_limits = {"max_sessions": N, "max_sessions_per_ip": 0, "idle_timeout": 3600,
                                  "login_timeout": 600}
        cfg = env.proxy.config
        env.proxy.config = lambda: dict(cfg(), log={"level": "info", "format": "text"})
        env.start(t)
        pid = env.proxy.pid
        print("client: RLIMIT_NOFILE %d/%d; proxy: %s (soft, hard), %d cores" % (soft, hard, nofile(pid),
                                                                              os.cpu_count()), flush=True)

        def download_works(what):
            f = H.ftplib_connect(t)
            try:
                n, got, resp = H.ftplib_get(f, "/pub/small.bin")
                check_eq((n, got), (64 * H.KiB + 1, sha), "%s: download (size, sha256)" % what)
            finally:
                H.quit_quietly(f)

        download_works("warm-up")
        time.sleep(1)
        fig["fds0"], fig["rss0"], fig["pss0"] = settle_fds(pid), H.rss_kib(pid), pss_kib(pid)
        load = SL.SessionLoad(t.host, t.port, t.ca, H.FTP_USER, H.PASSWORD)
        res = load.open(N, concurrency=CONC, timeout=1800)
        print("opened %d of %d sessions in %.1f s (%.0f/s); failures: %s" % (
            res["open"], N, res["seconds"], res["open"] / max(res["seconds"], 1e-9), res["failed"]), flush=True)
        fig.update(opened=res["open"], open_s=res["seconds"])
        check_eq(res["open"], N, "sessions opened")
        time.sleep(2)
        fig["fdsN"], fig["rssN"], fig["pssN"] = H.fd_count(pid), H.rss_kib(pid), pss_kib(pid)
        m = metrics(admin)
        check_eq(m.get("ftpsgate_sessions_active"), float(N), "ftpsgate_sessions_active")

        over = []
        for _ in range(3):
            code, text, dt = SL.one_session(t.host, t.port, t.ca, H.FTP_USER, H.PASSWORD)
            over.append((code, dt))
            check_eq(code, 421, "session %d's first reply (%r)" % (N + 1, text))
        print("past max_sessions (%d): %s" % (N, ", ".join("%d after %.1f ms" % (c, dt * 1000) for c, dt in over)))
        fig["over"] = over
        check(env.proxy.alive(), "ftpsgate died past max_sessions")

        t0 = time.monotonic()
        noop = load.command_all("NOOP", timeout=300)
        fig["noop"], fig["noop_s"] = noop, time.monotonic() - t0
        print("NOOP on every session: %s in %.1f s" % (noop, fig["noop_s"]), flush=True)
        check_eq(noop, {200: N}, "NOOP replies by code")

        # One leaves; a new session gets in and works.
        load.close_all(quit=True, timeout=30, count=1)
        check(H.wait_until(lambda: metrics(admin).get("ftpsgate_sessions_active") == N - 1, 30),
              "the proxy does not count the session that left")
        download_works("a new session once one left")
        print("one session left: a new one logged in and downloaded 64 KiB + 1 (sha256 ok)", flush=True)

        t0 = time.monotonic()
        load.close_all(quit=False)
        check(H.wait_until(lambda: metrics(admin).get("ftpsgate_sessions_active") == 0, 120),
              "sessions still active after the clients closed")
        fig["close_s"] = time.monotonic() - t0
        fig["fds1"] = settle_fds(pid)
        fig["rss1"] = H.rss_kib(pid)
        check_eq(fig["fds1"], fig["fds0"], "proxy descriptors after all sessions closed")
        check(env.proxy.alive(), "ftpsgate died")

        per_rss = (fig["rssN"] - fig["rss0"]) / N
        per_pss = (fig["pssN"] - fig["pss0"]) / N
        per_fd = (fig["fdsN"] - fig["fds0"]) / N
        print()
        print("%d concurrent logged-in FTPS sessions (TLS 1.3, PROT P) on one ftpsgate process" % N)
        print("  open: %.1f s at up to %d in set-up (%.0f sessions/s)" % (fig["open_s"], CONC, N / fig["open_s"]))
        print("  RSS   %7d KiB idle -> %8d KiB: %.1f KiB per session" % (fig["rss0"], fig["rssN"], per_rss))
        print("  PSS   %7d KiB idle -> %8d KiB: %.1f KiB per session" % (fig["pss0"], fig["pssN"], per_pss))
        print("  fds   %7d idle -> %8d: %.2f per session; soft limit set by the proxy %s" % (
            fig["fds0"], fig["fdsN"], per_fd, nofile(pid)))
        print("  past max_sessions: 421 at once (%s), the process unharmed: NOOP answered on all %d, a new session"
              " works once one leaves" % (", ".join("%.1f ms" % (dt * 1000) for _, dt in over), N))
        print("  after close: fds %d (idle %d), RSS %d KiB (idle %d KiB, peak with sessions %d KiB)" % (
            fig["fds1"], fig["fds0"], fig["rss1"], fig["rss0"], fig["rssN"]))
        lim = hard
        print("  a hard limit of %d descriptors holds up to %d idle sessions (2 each, %d for the rest); with"
              " transfers a session holds up to 6 (data both sides, a passive listener)" % (
                  lim, (lim - fig["fds0"]) // 2, fig["fds0"]))
        s.passed += 1
    except H.Fail as e:
        s.failed += 1
        print("FAIL: %s" % e, flush=True)
    except Exception as e:  # noqa: BLE001
        s.fail_setup("bench", e)
    finally:
        env.close()
    sys.exit(s.finish())


if __name__ == "__main__":
    main()
