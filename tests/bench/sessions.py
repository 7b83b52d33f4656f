#!/usr/bin/python3
"""On-demand benchmark (not part of CI): memory per idle session. Opens N
logged-in explicit FTPS sessions (AUTH TLS, login, PBSZ/PROT) through ftpsgate
to a vsftpd backend and reports ftpsgate's memory (PSS) per session, next to the same
number of sessions held on vsftpd's own native FTPS (its whole process tree:
vsftpd forks per session) measured in the same run.

  FTPSGATE_BIN=build/ftpsgate /usr/bin/python3 tests/bench/sessions.py
  env: BENCH_SESSIONS (200)
"""
import ftplib
import os
import ssl
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
import harness as H  # noqa: E402

N = int(os.environ.get("BENCH_SESSIONS", "200"))


def pss_kib(pid):
    """Proportional set size: shared pages are split among the processes
    sharing them, so a forking server is not charged its libraries N times."""
    try:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_rss_kib(pid):
    pids = set(H.descendants(pid)) | {pid}
    return sum(pss_kib(p) for p in pids)


def hold(host, port, ca, n):
    ctx = ssl.create_default_context(cafile=ca)
    ctx.check_hostname = False
    conns = []
    for _ in range(n):
        f = ftplib.FTP_TLS(context=ctx, timeout=20)
        f.connect(host, port)
        f.login(H.FTP_USER, H.PASSWORD)
        f.prot_p()
        conns.append(f)
    return conns


def main():
    suite = H.Suite("bench-sessions")
    env = H.Env(suite, need_bytes=64 * H.MiB)
    try:
        plain = env.backend("plain")
        native = H.Vsftpd(env, "native", tls=True).start()
        env.backends.append(native)
        front = env.front(plain, "bench", protection="private")
        cfg = env.proxy.config
        env.proxy.config = lambda: dict(cfg(), limits={"max_sessions": 0, "max_sessions_per_ip": 0})
        env.start(front)
        time.sleep(0.3)
        results = {}
        for name, host, port, pid in (("ftpsgate", H.HOST, front.port, env.proxy.pid),
                                      ("vsftpd-native", H.HOST, native.port, native.proc.pid)):
            before = tree_rss_kib(pid)
            conns = hold(host, port, env.certs.ca, N)
            time.sleep(0.5)
            after = tree_rss_kib(pid)
            results[name] = (before, after)
            for f in conns:
                try:
                    f.close()
                except OSError:
                    pass
        print("\n%d idle logged-in FTPS sessions (PSS of the whole process tree)" % N)
        for name, (b, a) in results.items():
            print("%-14s before %7d KiB  with sessions %8d KiB  %.1f KiB/session" % (name, b, a, (a - b) / N))
        g = (results["ftpsgate"][1] - results["ftpsgate"][0]) / N
        v = (results["vsftpd-native"][1] - results["vsftpd-native"][0]) / N
        print("ftpsgate / vsftpd-native memory per session: %.3f (ftpsgate also holds the backend connection;"
              " the backend's own memory is not counted)" % (g / v if v else float("nan")))
    finally:
        env.close()


if __name__ == "__main__":
    main()
