#!/usr/bin/python3
"""`ftpsgate --healthcheck --config FILE` (the image's HEALTHCHECK and the Kubernetes probes),
run with the binary under test against a proxy on loopback:

- with the proxy serving: exit 0, one "ok" line per listener, the explicit one with the proxy's
  own 220 greeting, the implicit one with an accepted connection; the checks show in the proxy's
  log as sessions that ended (QUIT on the explicit listener) and cost the backend nothing;
- listeners nobody serves (the same config on other ports): exit 1, "refused" for each;
- a port that answers with something else than 220 (an HTTP server) and one that never greets:
  exit 1 with the reason;
- a broken config: exit 1 with the JSON path;
- the backend stopped: still healthy (exit 0): the check is about ftpsgate, which greets for
  itself and dials the backend per session, so a container is not restarted for a backend's
  outage (the backend's own health is its own check).
"""

import json
import os
import socket
import sys
import threading

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import harness as H  # noqa: E402
from harness import check, check_eq  # noqa: E402


def healthcheck(env, config_path):
    return H.run_cmd([env.binary, "--healthcheck", "--config", config_path], timeout=60)


class FakeServer:
    """A TCP server on loopback that sends greeting (or nothing) to each connection."""

    def __init__(self, greeting):
        self.sock = socket.socket()
        self.sock.bind((H.HOST, H.free_port()))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.greeting = greeting
        self.conns = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(c)
            if self.greeting:
                c.sendall(self.greeting)

    def close(self):
        self.sock.close()
        for c in self.conns:
            c.close()


def body(s, env):
    H.needs_proxy()
    vs = env.backend("vs1")
    exp = env.front(vs, "hc-explicit")
    imp = env.front(vs, "hc-implicit", mode="implicit")
    env.start(exp, imp)
    cfg = env.proxy.config()

    def write_config(name, listeners):
        path = os.path.join(env.tmp, name)
        with open(path, "w") as f:
            json.dump(dict(cfg, listeners=listeners), f)
        return path

    def serving():
        mark = env.proxy.log_mark()
        r = healthcheck(env, env.proxy.config_path)
        check_eq(r.returncode, 0, "exit status (stdout %r, stderr %r)" % (r.stdout, r.stderr))
        lines = r.stdout.splitlines()
        check_eq(len(lines), 2, "one line per listener: %r" % lines)
        check(lines[0].startswith("listener hc-explicit (explicit, 127.0.0.1:%d): ok, greeting \"220" % exp.port),
              "explicit line: %r" % lines[0])
        check_eq(lines[1], "listener hc-implicit (implicit, 127.0.0.1:%d): ok, connection accepted" % imp.port,
                 "implicit line")
        check(H.wait_until(lambda: env.proxy.log_since(mark).count("session end") >= 2, 10),
              "the proxy did not log two ended sessions: %s" % env.proxy.log_since(mark)[-800:])
        check("QUIT" in env.proxy.log_since(mark), "the explicit check did not end with QUIT")
        check(" backend 127.0.0.1:" not in env.proxy.log_since(mark),
              "a health check made the proxy dial the backend: %s" % env.proxy.log_since(mark)[-400:])

    s.run("serving: exit 0, each listener ok (the proxy's 220; implicit accepted), no backend session", serving)

    def nobody_serves():
        moved = [dict(ln, bind="127.0.0.1:%d" % H.free_port()) for ln in cfg["listeners"]]
        r = healthcheck(env, write_config("moved.json", moved))
        check_eq(r.returncode, 1, "exit status")
        check_eq(r.stdout.count("FAILED: Connection refused"), 2, "refused lines in %r" % r.stdout)

    s.run("listeners nobody serves: exit 1, refused", nobody_serves)

    def wrong_greetings():
        http = FakeServer(b"HTTP/1.1 400 Bad Request\r\n\r\n")
        silent = FakeServer(None)
        try:
            lo, hi = H.free_port_block(2)
            lns = [dict(cfg["listeners"][0], name="http", bind="127.0.0.1:%d" % http.port),
                   dict(cfg["listeners"][0], name="silent", bind="127.0.0.1:%d" % silent.port,
                        passive={"ports": "%d-%d" % (lo, hi)})]
            r = healthcheck(env, write_config("fake.json", lns))
        finally:
            http.close()
            silent.close()
        check_eq(r.returncode, 1, "exit status")
        check('listener http (explicit, 127.0.0.1:%d): FAILED: greeting "HTTP/1.1 400 Bad Request" is not 220'
              % http.port in r.stdout, "the HTTP server's line: %r" % r.stdout)
        check("listener silent (explicit, 127.0.0.1:%d): FAILED: no greeting in time" % silent.port in r.stdout,
              "the silent server's line: %r" % r.stdout)

    s.run("a non-FTP answer and no greeting: exit 1 with the reason", wrong_greetings)

    def broken_config():
        path = os.path.join(env.tmp, "broken.json")
        with open(path, "w") as f:
            json.dump(dict(cfg, listenerz=[]), f)
        r = healthcheck(env, path)
        check_eq(r.returncode, 1, "exit status")
        check("listenerz" in r.stderr, "the error does not name the key: %r" % r.stderr)

    s.run("a broken config: exit 1 naming the key", broken_config)

    def backend_down():
        vs.stop()
        r = healthcheck(env, env.proxy.config_path)
        check_eq(r.returncode, 0, "exit status with the backend down (%r)" % r.stdout)
        check("listener hc-explicit (explicit, 127.0.0.1:%d): ok" % exp.port in r.stdout,
              "explicit line: %r" % r.stdout)
        check("listener hc-implicit (implicit, 127.0.0.1:%d): ok" % imp.port in r.stdout,
              "implicit line: %r" % r.stdout)

    s.run("backend down: ftpsgate itself is healthy (it greets for itself), exit 0", backend_down)


if __name__ == "__main__":
    H.main_wrapper("test_healthcheck", body, need_bytes=64 * H.MiB)
