"""The admin endpoint over HTTP for the live-view tests (test_live_sessions.py,
test_status_page.py, test_grafana_dashboard.py, tests/bench/bench_live_sessions.py):
GET with the admin token as Bearer or Basic, /sessions as parsed JSON, and a
pyftpdlib backend that lets any user name log in (so that names with quotes,
backslashes, control characters or markup reach the live view)."""

import base64
import hashlib
import http.client
import json
import os
import ssl
import threading
import time

import harness as H

TOKEN = "tok-%s" % os.urandom(12).hex()  # admin.token of these tests (>= 16 characters)


def get(port, path, token=None, basic_user=None, scheme=None, timeout=20):
    """GET path; token: sent as Bearer (default) or, with basic_user, as HTTP Basic.
    Returns (status, headers dict (lower-case names), body bytes)."""
    c = http.client.HTTPConnection(H.HOST, port, timeout=timeout)
    headers = {}
    if token is not None:
        if basic_user is not None:
            cred = base64.b64encode(("%s:%s" % (basic_user, token)).encode()).decode()
            headers["Authorization"] = "Basic " + cred
        else:
            headers["Authorization"] = "%s %s" % (scheme or "Bearer", token)
    try:
        c.request("GET", path, headers=headers)
        r = c.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        c.close()


def sessions(port, token=TOKEN, limit=None, timeout=20):
    """GET /sessions: the parsed document (strict JSON: a bad escape raises)."""
    path = "/sessions" if limit is None else "/sessions?limit=%s" % limit
    status, hdr, body = get(port, path, token, timeout=timeout)
    H.check_eq(status, 200, "GET %s status" % path)
    H.check(hdr.get("content-type", "").startswith("application/json"), "content type %r" % hdr.get("content-type"))
    return json.loads(body.decode("utf-8"), parse_constant=lambda c: H.check(False, "JSON constant %s" % c))


def by_client(doc, client):
    """The session of /sessions whose client is "ip:port" client, or None."""
    for s in doc["sessions"]:
        if s["client"] == client:
            return s
    return None


def paced_retr(f, path, pace, out):
    """RETR path read at pace bytes/s; out gets n, sha, reply, the client's address."""
    out["client"] = "%s:%d" % f.sock.getsockname()[:2]
    conn = f.transfercmd("RETR " + path)
    h, n, t0 = hashlib.sha256(), 0, time.monotonic()
    try:
        while True:
            b = conn.recv(16 * H.KiB)
            if not b:
                break
            h.update(b)
            n += len(b)
            ahead = n / pace - (time.monotonic() - t0)
            if ahead > 0:
                time.sleep(ahead)
        if isinstance(conn, ssl.SSLSocket):
            conn.unwrap()
    finally:
        conn.close()
    out.update(n=n, sha=h.hexdigest(), reply=f.voidresp(), seconds=time.monotonic() - t0)


def in_thread(fn, *args):
    err = []

    def run():
        try:
            fn(*args)
        except Exception as e:  # noqa: BLE001 - reported by the case
            err.append(e)
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, err


ANY_USER_SCRIPT = r'''
import logging, sys
from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import FTPHandler
from pyftpdlib.servers import FTPServer

port, root, flavour, log = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
logging.basicConfig(filename=log, level=logging.INFO, format="%(asctime)s %(message)s")


class AnyUser(DummyAuthorizer):
    """Every user name logs in with any password, to the same read-only root."""
    def validate_authentication(self, username, password, handler):
        return None
    def has_user(self, username):
        return True
    def get_home_dir(self, username):
        return root
    def has_perm(self, username, perm, path=None):
        return perm in "elr"
    def get_perms(self, username):
        return "elr"
    def get_msg_login(self, username):
        return "welcome"
    def get_msg_quit(self, username):
        return "bye"
    def impersonate_user(self, username, password):
        pass
    def terminate_impersonation(self, username):
        pass


class Handler(FTPHandler):
    unicode_errors = "surrogateescape"


Handler.authorizer = AnyUser()
Handler.banner = "pyftpdlib (any user) ready."
Handler.permit_foreign_addresses = False
server = FTPServer(("127.0.0.1", port), Handler)
server.max_cons = 0
server.serve_forever(timeout=0.5)
'''


class AnyUserPyftpd(H.Pyftpd):
    """pyftpdlib on 127.0.0.1 where every user name logs in (read-only)."""

    def __init__(self, env, name):
        H.Pyftpd.__init__(self, env, name, "plain")
        with open(self.script, "w") as f:
            f.write(ANY_USER_SCRIPT)
