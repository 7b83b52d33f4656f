#!/usr/bin/python3
"""On-demand (not in CI): what ftpsgate keeps after a peak of sessions, cycle after
cycle. N logged-in explicit FTPS sessions (tests/tools/sessionload.py) in front of
pyftpdlib are opened and closed CYCLES times; after each, gdb calls malloc_trim(0) in
the proxy and its RSS is read. A leak grows with every cycle; memory the allocator
keeps because of the peak stays at one level. (2026-12-07, N=2000, 4 cycles: rest
7.7 MiB; after each cycle 12.5, 12.0, 14.4, 14.6 MiB with the live view; 11.1, 12.3,
12.7, 12.6 MiB on the code before it; the soak's memory check allows a fifth of the
peak's growth for this.)

  FTPSGATE_BIN=build/ftpsgate /usr/bin/python3 tests/bench/rss_cycles.py     env: N (2000), CYCLES (4)
"""
import os
import subprocess
import sys
import time
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
sys.path.insert(0, os.path.join(HERE, "..", "tools"))
sys.dont_write_bytecode = True
import harness as H  # noqa: E402
import pyftpd_serve  # noqa: E402
import sessionload as SL  # noqa: E402
N = int(os.environ.get("N", "2000"))
CYCLES = int(os.environ.get("CYCLES", "4"))


def trimmed(pid):
    subprocess.run(["gdb", "-p", str(pid), "-batch", "-nx", "-ex", "call (int)malloc_trim(0)"], capture_output=True, timeout=60)
    return H.rss_kib(pid)


def main():
    SL.raise_nofile()
    s = H.Suite("rss-cycles"); env = H.Env(s, need_bytes=64 * H.MiB)
    try:
        py = pyftpd_serve.ManyPyftpd(env, "many"); env.backends.append(py); py.start()
        t = env.front(py, "hold", protection="private")
        env.proxy.extra_limits = {"max_sessions": N + 10, "max_sessions_per_ip": 0, "idle_timeout": 3600, "login_timeout": 600}
        env.start(t); pid = env.proxy.pid
        time.sleep(2); print("rest", trimmed(pid), flush=True)
        for c in range(CYCLES):
            load = SL.SessionLoad(t.host, t.port, t.ca, H.FTP_USER, H.PASSWORD)
            r = load.open(N, concurrency=200, timeout=600)
            time.sleep(3)
            peak = trimmed(pid)
            load.close_all()
            time.sleep(4)
            print("cycle %d: opened %d, with sessions %d KiB, after %d KiB" % (c, r["open"], peak, trimmed(pid)), flush=True)
    finally:
        env.close()

if __name__ == "__main__":
    main()
