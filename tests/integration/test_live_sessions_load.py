#!/usr/bin/python3
"""The live view under load: 2,000 logged-in FTPS sessions (tests/tools/sessionload.py,
one process, non-blocking) on a proxy with two worker loops, in front of a pyftpdlib
built for many sessions (tests/tools/pyftpd_serve.py), while a download of 32 MiB from
vsftpd runs through the same proxy.

Correctness only (the cost is measured by tests/bench/bench_live_sessions.py, on
demand, as a ratio): while the download runs, /sessions polled in a loop answers
every time within the admin endpoint's own timeout (5 s) with a complete document
(strict JSON, total = every session, each load session listed once, ids unique);
?limit=100 lists 100 with the running transfer first (seen at least once) and truncated: true; the
download completes with the right sha256. Bounded: at most 600 s for the set-up,
POLL_S of polling.
"""
import os
import sys
import time

import adminhttp as A
import harness as H
from harness import check, check_eq

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tools"))
import pyftpd_serve  # noqa: E402
import sessionload as SL  # noqa: E402

N = int(os.environ.get("FTPSGATE_LIVE_LOAD_SESSIONS", "2000"))
POLL_S = 20
ADMIN_TIMEOUT_S = 5  # proxy/admin.c ADMIN_TIMEOUT_MS


def body(s, env):
    if H.SELFCHECK:
        s.run("live sessions under load (tests ftpsgate itself)", H.needs_proxy)
        return
    soft, hard = SL.raise_nofile()
    check(hard >= 3 * N + 200, "RLIMIT_NOFILE hard limit %d is too low for %d sessions" % (hard, N))
    vs = env.backend("vs1")
    size = 32 * H.MiB
    sha = vs.add_pub("big.bin", size)
    py = pyftpd_serve.ManyPyftpd(env, "many")
    env.backends.append(py)
    py.start()
    many = env.front(py, "many")
    main = env.front(vs, "main")
    port = H.free_port()
    env.proxy.extra_top["admin"] = {"bind": "%s:%d" % (H.HOST, port), "token": A.TOKEN}
    env.proxy.extra_top["workers"] = 2
    env.proxy.extra_limits = {"max_sessions": N + 100, "max_sessions_per_ip": 0, "idle_timeout": 3600,
                              "login_timeout": 600}
    cfg = env.proxy.config
    env.proxy.config = lambda: dict(cfg(), log={"level": "info", "format": "text"})
    env.start(many, main)
    load = SL.SessionLoad(many.host, many.port, many.ca, H.FTP_USER, H.PASSWORD)

    def under_load():
        res = load.open(N, concurrency=200, timeout=600)
        print("     opened %d sessions in %.1f s; failures: %s" % (res["open"], res["seconds"], res["failed"]),
              flush=True)
        check_eq(res["open"], N, "sessions opened")
        clients = {"%s:%d" % x.sock.getsockname()[:2] for x in load.sessions}
        check(H.wait_until(lambda: A.sessions(port, limit=10000)["total"] == N, 15, 0.5),
              "/sessions total never reached %d" % N)
        f = H.ftplib_connect(main)
        out = {}
        # Paced at 8 MiB/s (~4 s) so that the polls overlap it; bench_live_sessions.py runs it unpaced.
        t, err = A.in_thread(A.paced_retr, f, "/pub/big.bin", 8 * H.MiB, out)
        polls, worst, saw_transfer_first = 0, 0.0, 0
        t_end = time.monotonic() + POLL_S
        try:
            while time.monotonic() < t_end and (t.is_alive() or polls < 3):
                t0 = time.monotonic()
                doc = A.sessions(port, limit=10000, timeout=ADMIN_TIMEOUT_S)
                worst = max(worst, time.monotonic() - t0)
                polls += 1
                listed = [x["client"] for x in doc["sessions"]]
                check_eq(len(listed), doc["total"], "sessions listed vs total (limit 10000)")
                check(doc["total"] in (N, N + 1), "total %d with %d load sessions and one download" % (doc["total"], N))
                check_eq(len(set(x["id"] for x in doc["sessions"])), len(listed), "unique ids")
                missing = clients - set(listed)
                check(not missing, "%d load sessions missing from /sessions, e.g. %s" % (len(missing), sorted(missing)[:3]))
                small = A.sessions(port, limit=100, timeout=ADMIN_TIMEOUT_S)
                check_eq((len(small["sessions"]), small["truncated"]), (100, True), "limit=100: listed, truncated")
                check(small["total"] >= N, "limit=100: total %d" % small["total"])
                if any(x["transfer"] for x in small["sessions"]):
                    check(small["sessions"][0]["transfer"], "the running transfer is not listed first")
                    saw_transfer_first += 1
        finally:
            t.join(300)
            H.quit_quietly(f)
        check(not err, "the download failed: %r" % err)
        check_eq((out.get("n"), out.get("sha")), (size, sha), "download during the polling: bytes, sha256")
        print("     %d polls of /sessions (%d sessions each) during a %.1f s download; slowest answer %.3f s; "
              "transfer listed first in %d" % (polls, N, out.get("seconds", 0), worst, saw_transfer_first), flush=True)
        check(polls >= 3, "only %d polls" % polls)
        check(saw_transfer_first >= 1, "the running download was never listed (first) with limit=100")
        load.close_all(quit=False)
        check(H.wait_until(lambda: A.sessions(port)["total"] == 0, 60, 0.5), "sessions still listed after closing")

    s.run("2000 sessions on 2 workers: /sessions complete and in time while a download runs (sha256 ok); limit=100",
          under_load)


if __name__ == "__main__":
    H.main_wrapper("live-sessions-load", body, need_bytes=128 * H.MiB)
