#!/usr/bin/python3
"""A pyftpdlib backend for many sessions (the soak's idle sessions, the 9,000-session
benchmark): one process, epoll, no connection cap, long idle timeout, anonymous
with write access; its descriptor limit raised to the hard limit.

    pyftpd_serve.py HOST PORT ROOT LOG [--timeout 7200] [--level warning]

ManyPyftpd is the harness-style wrapper (start(), stop(), a free port, files).
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SYS_PYTHON = "/usr/bin/python3"


def serve(host, port, root, log, timeout=7200, level="warning"):
    import logging
    import resource
    import signal
    from pyftpdlib.authorizers import DummyAuthorizer
    from pyftpdlib.handlers import FTPHandler
    from pyftpdlib.servers import FTPServer

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    logging.basicConfig(filename=log, level=getattr(logging, level.upper()), format="%(asctime)s %(message)s")
    auth = DummyAuthorizer()
    auth.add_anonymous(root, perm="elradfmwMT")

    class Handler(FTPHandler):
        banner = "pyftpdlib (many sessions) ready."
        permit_foreign_addresses = False
        permit_privileged_ports = False

    Handler.timeout = timeout
    Handler.authorizer = auth
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    server = FTPServer((host, int(port)), Handler, backlog=4096)
    server.max_cons = 0
    server.max_cons_per_ip = 0
    server.serve_forever(timeout=1.0)


if __name__ == "__main__":
    import argparse
    ap = argparse.ArgumentParser()
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("root")
    ap.add_argument("log")
    ap.add_argument("--timeout", type=int, default=7200)
    ap.add_argument("--level", default="warning")
    a = ap.parse_args()
    serve(a.host, a.port, a.root, a.log, a.timeout, a.level)
else:
    sys.path.insert(0, os.path.join(HERE, "..", "integration"))
    import harness as H  # noqa: E402

    class ManyPyftpd(H.FtpServer):
        """pyftpdlib for thousands of sessions, as a harness backend (root with /pub, /up)."""

        kind = "pyftpdlib"

        def __init__(self, env, name, timeout=7200, level="warning"):
            self.env, self.name, self.timeout, self.level = env, name, timeout, level
            d = os.path.join(env.tmp, name)
            self.root = os.path.join(d, "root")
            self.pub = os.path.join(self.root, "pub")
            self.up = os.path.join(self.root, "up")
            for p in (d, self.root, self.pub, self.up):
                os.makedirs(p, exist_ok=True)
            self.log = os.path.join(d, "pyftpd.log")
            self.out = os.path.join(d, "pyftpd.out")

        def start(self):
            return self._start_with_retries(
                lambda: [SYS_PYTHON, os.path.abspath(__file__), self.host, str(self.port), self.root, self.log,
                         "--timeout", str(self.timeout), "--level", self.level], wait=20)
