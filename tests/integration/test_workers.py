#!/usr/bin/python3
"""Worker loops (issue 11, DESIGN.md §8): "workers": 2, two listeners, one process.

- 40 sessions with a transfer each (sha256): both loops served sessions and transfers
  (ftpsgate_worker_*_total{worker=...}; the kernel spreads connections over the loops'
  SO_REUSEPORT sockets, so all 40 on one loop would be a 1 in 2^39 chance);
- max_sessions_per_ip and max_sessions hold across loops and listeners: the refused session
  gets 421 at once, whichever loop took it, and a new one is accepted once one ended;
- a reload (SIGHUP) reaches both loops: after it, new sessions on both loops follow the new
  policy (PROT C allowed), the live ones keep the old;
- the passive port pool is full again at the end (ftpsgate_passive_ports_in_use 0);
- a drain (SIGTERM) reaches both: no new session, live sessions on both loops finish their
  transfers, then the process exits 0.
"""
import http.client
import json
import signal
import socket

import harness as H
from harness import check, check_code, check_eq

N_SESSIONS = 40


def metrics(port):
    c = http.client.HTTPConnection(H.HOST, port, timeout=10)
    try:
        c.request("GET", "/metrics")
        r = c.getresponse()
        body = r.read().decode()
    finally:
        c.close()
    out = {}
    for ln in body.splitlines():
        if ln and not ln.startswith("#"):
            name, value = ln.rsplit(" ", 1)
            out[name] = int(float(value))
    return out


def per_worker(m, family):
    return {k: v for k, v in m.items() if k.startswith(family + "{")}


def body(s, env):
    if H.SELFCHECK:
        s.run("workers (test ftpsgate itself)", H.needs_proxy)
        return
    vs = env.backend("vs1")
    sha = vs.add_pub("w.bin", 256 * H.KiB + 7)
    a = env.front(vs, "wa", n_passive=16)
    b = env.front(vs, "wb", n_passive=16)
    env.proxy.extra_top["workers"] = 2
    env.proxy.admin_port = port = H.free_port()
    env.proxy.extra_limits = {"max_sessions_per_ip": 0, "max_sessions": 0}
    env.start(a, b)
    ctx = env.certs.client_context()

    def download(c):
        addr = c.pasv()
        d = socket.create_connection(addr, timeout=20)
        check_code(c.cmd("RETR /pub/w.bin"), (150, 125), "RETR")
        d = c.wrap_data(d, ctx)
        how, data = H.recv_until_closed(d, 30, limit=H.MiB)
        d.close()
        check_eq((how, len(data), H.sha256_bytes(data)), ("eof", 256 * H.KiB + 7, sha), "download")
        check_code(c.reply(), 226, "226")

    def both_loops_serve():
        before = metrics(port)
        for i in range(N_SESSIONS):
            c = H.Ctl(a if i % 2 else b).secure_login(ctx, "P")
            download(c)
            check_code(c.cmd("QUIT"), 221, "QUIT")
            c.close()
        after = metrics(port)
        ses = {k: after[k] - before.get(k, 0) for k in per_worker(after, "ftpsgate_worker_sessions_total")}
        xfers = {k: after[k] - before.get(k, 0) for k in per_worker(after, "ftpsgate_worker_transfers_total")}
        print("     (sessions per worker %r, transfers per worker %r)" % (ses, xfers))
        check_eq(len(ses), 2, "worker loops in /metrics")
        check_eq(sum(ses.values()), N_SESSIONS, "sessions over both loops")
        check_eq(sum(xfers.values()), N_SESSIONS, "transfers over both loops")
        check(all(v > 0 for v in ses.values()), "a loop served no session: %r" % ses)
        check(all(v > 0 for v in xfers.values()), "a loop served no transfer: %r" % xfers)

    s.run("%d sessions with a download each: both loops serve sessions and transfers" % N_SESSIONS,
          both_loops_serve)

    def reconfigure(limits=None, protection=None):
        cfg = json.loads(open(env.proxy.config_path).read())
        if limits is not None:
            cfg["limits"].update(limits)
        if protection is not None:
            for ln in cfg["listeners"]:
                ln["policy"]["data_protection"] = protection
        with open(env.proxy.config_path, "w") as f:
            json.dump(cfg, f)
        mark = env.proxy.log_mark()
        env.proxy.proc.send_signal(signal.SIGHUP)
        check(H.wait_until(lambda: "reloaded" in env.proxy.log_since(mark), 10), "no reload logged")

    def wait_sessions(n):
        return H.wait_until(lambda: metrics(port)["ftpsgate_sessions_active"] == n, 10)

    def limits_across_loops():
        reconfigure(limits={"max_sessions_per_ip": 6, "max_sessions": 0})
        held = [H.Ctl(a if i % 2 else b) for i in range(6)]
        for c in held:
            check_code(c.greeting, 220, "greeting under the per-IP limit")
        check(wait_sessions(6), "six sessions not counted")
        for t in (a, b):
            extra = H.Ctl(t)
            check_code(extra.greeting, 421, "a 7th session from the same IP (listener %s)" % t.name)
            extra.close()
        held.pop().close()
        check(wait_sessions(5), "the closed session not counted as gone")
        again = H.Ctl(a)
        check_code(again.greeting, 220, "a new session once one ended")
        held.append(again)
        for c in held:
            c.close()
        check(wait_sessions(0), "sessions still counted after all closed")
        reconfigure(limits={"max_sessions_per_ip": 0, "max_sessions": 4})
        held = [H.Ctl(a if i % 2 else b) for i in range(4)]
        for c in held:
            check_code(c.greeting, 220, "greeting under max_sessions")
        extra = H.Ctl(b)
        check_code(extra.greeting, 421, "a 5th session over max_sessions 4")
        extra.close()
        for c in held:
            c.close()
        check(wait_sessions(0), "sessions still counted after all closed")
        reconfigure(limits={"max_sessions_per_ip": 0, "max_sessions": 0})

    s.run("max_sessions_per_ip and max_sessions hold across loops and listeners", limits_across_loops)

    def reload_reaches_both():
        old = H.Ctl(a).secure_login(ctx, "P")  # started under "private"
        check_code(old.cmd("PROT C"), 534, "PROT C before the reload")
        reconfigure(protection="any")
        before = metrics(port)
        for i in range(16):
            c = H.Ctl(a if i % 2 else b).secure_login(ctx, "P")
            check_code(c.cmd("PROT C"), 200, "PROT C on a session started after the reload (%d)" % i)
            check_code(c.cmd("QUIT"), 221, "QUIT")
            c.close()
        after = metrics(port)
        ses = {k: after[k] - before.get(k, 0) for k in per_worker(after, "ftpsgate_worker_sessions_total")}
        check(all(v > 0 for v in ses.values()), "after the reload a loop served no session: %r" % ses)
        check_code(old.cmd("PROT C"), 534, "PROT C on the session that started before the reload")
        old.close()
        reconfigure(protection="private")

    s.run("a reload reaches both loops (new sessions on each follow it; live ones keep theirs)",
          reload_reaches_both)

    def pool_full_again():
        check(wait_sessions(0), "sessions left")
        check_eq(metrics(port)["ftpsgate_passive_ports_in_use"], 0, "passive ports in use at the end")

    s.run("the passive port pool is full again", pool_full_again)

    def drain_reaches_both():
        live = []
        for i in range(8):
            live.append(H.Ctl(a if i % 2 else b).secure_login(ctx, "P"))
        m = metrics(port)
        check(all(v > 0 for v in per_worker(m, "ftpsgate_worker_sessions_total").values()), "a loop unused")
        env.proxy.proc.send_signal(signal.SIGTERM)
        check(H.wait_until(lambda: H.refused_how((H.HOST, a.port), 2) == "refused" and
                           H.refused_how((H.HOST, b.port), 2) == "refused", 10),
              "new connections are still accepted after SIGTERM")
        for c in live:
            download(c)  # every live session, on both loops, still transfers
            check_code(c.cmd("QUIT"), 221, "QUIT while draining")
            c.close()
        check_eq(env.proxy.proc.wait(30), 0, "exit status after the drain")
        log = env.proxy.log_text()
        reports = [x for x in log.splitlines() if any(p in x for p in H.SANITIZER_PATTERNS)]
        check(not reports, "sanitizer report: %s" % "; ".join(reports[:3]))
        env.proxy.start()  # for the final checks of every suite

    s.run("a drain reaches both loops: no new sessions, live ones finish, exit 0", drain_reaches_both)


if __name__ == "__main__":
    H.main_wrapper("workers", body, need_bytes=256 * H.MiB)
