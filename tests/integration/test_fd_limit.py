#!/usr/bin/python3
"""The open-file limit: started with a soft limit far below what max_sessions
needs (prlimit, same PID), ftpsgate raises it as far as the hard limit allows,
logs it, and then really holds more concurrent sessions than the old limit had
descriptors for. With a hard limit too low for max_sessions it says so at start.
"""
import json
import os
import signal

import harness as H
from harness import check, check_eq

SOFT, HARD = 128, 4096
MAX_SESSIONS = 300              # needs 300 * 6 + 64 = 1864 descriptors
NEED = MAX_SESSIONS * 6 + 64
SESSIONS = 100                  # 2 descriptors each (client and backend): 200 > SOFT


def proc_limit(pid):
    with open("/proc/%d/limits" % pid) as f:
        for ln in f:
            if ln.startswith("Max open files"):
                return int(ln.split()[3]), int(ln.split()[4])
    raise H.Fail("no 'Max open files' in /proc/%d/limits" % pid)


def body(s, env):
    if H.SELFCHECK:
        s.run("open file limit (tests ftpsgate itself)", H.needs_proxy)
        return
    vs = env.backend("vs1")
    t = env.front(vs, "fds")
    env.proxy.extra_limits = {"max_sessions": MAX_SESSIONS, "max_sessions_per_ip": 0}
    env.proxy.wrapper = ["prlimit", "--nofile=%d:%d" % (SOFT, HARD), "--"]
    env.start(t)
    pid = env.proxy.pid

    def raised():
        check_eq(proc_limit(pid), (NEED, HARD), "ftpsgate's (soft, hard) open file limit")
        check("open file limit raised from %d to %d" % (SOFT, NEED) in env.proxy.log_text(), "no log line")

    s.run("soft limit %d raised to %d (max_sessions %d), logged" % (SOFT, NEED, MAX_SESSIONS), raised)

    def many_sessions():
        ctls = []
        try:
            for i in range(SESSIONS):
                c = H.Ctl(t)
                ctls.append(c)
                check_eq(c.greeting[0], 220, "greeting of session %d" % (i + 1))
            c = ctls[-1]
            c.secure_login(H.ssl.create_default_context(cafile=t.ca), "P")
            check_eq(c.cmd("PWD")[0], 257, "PWD on the last session")
        finally:
            for c in ctls:
                c.close()

    s.run("%d concurrent sessions (more descriptors than the old soft limit %d)" % (SESSIONS, SOFT), many_sessions)

    def too_low():
        cfg = env.proxy.config()
        cfg["listeners"][0] = dict(cfg["listeners"][0], bind="%s:%d" % (H.HOST, H.free_port()))
        cfg["limits"] = dict(cfg["limits"], max_sessions=1000)
        path = os.path.join(env.tmp, "low.json")
        with open(path, "w") as f:
            json.dump(cfg, f)
        log = os.path.join(env.tmp, "low.log")
        p = H.spawn(["prlimit", "--nofile=128:256", "--", env.proxy.binary, "-c", path], log)
        try:
            check(H.wait_until(lambda: "ready" in open(log).read(), 30), "second proxy not ready: %s"
                  % H.tail_file(log, 10))
            text = open(log).read()
            check("limits.max_sessions 1000 needs up to 6064 open files, the limit is 256" in text,
                  "no warning about the low limit: %s" % H.tail_file(log, 10))
            check_eq(proc_limit(p.pid), (256, 256), "soft limit raised to the hard one")
        finally:
            check_eq(H.stop_process(p, signal.SIGTERM, 20), 0, "exit status of the second proxy")

    s.run("hard limit 256 below what max_sessions 1000 needs: raised to 256 and a warning at start", too_low)


if __name__ == "__main__":
    H.main_wrapper("fd_limit", body, need_bytes=64 * H.MiB)
