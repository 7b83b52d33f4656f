#!/usr/bin/python3
"""log.transfer_log (issue 12): one JSON line per transfer, read back and held against
what each client saw (README "Audit log", common/auditfmt.h).

One ftpsgate process (log.transfer_log set, admin endpoint on) with these explicit listeners:
  main     -> vsftpd     data_protection "any", max_upload_bytes 1 MiB
  ro       -> vsftpd     read_only, deny_commands ["NLST"]
  private  -> vsftpd     data_protection "private" (PROT C refused: 534, transfers 521)
  py       -> pyftpdlib  for MLSD (vsftpd has none); require_session_reuse false, so a data
                         connection that does not resume shows "resumed": false
  pp       -> vsftpd     PROXY protocol from 127.0.0.1 (data_peer "balancer"): the header
                         names the client 198.51.100.7:40123 (only text in a header: nothing
                         connects to it)

Every line of the file must be one JSON object with the documented keys in their order.
A record is found by its client address (ftplib: the control socket's own address) or by
a path used once, then each field is compared with what the client saw: command and path
as sent (curl and lftp: from their traces), direction, bytes (exact: the file size or what
the client received; for an abort or a vanished client: at least what the client got and
less than the file), the final reply code the client got (null when the session ended
first), user, listener, client, backend, and the data connection's TLS version, cipher and
resumption as the client's own socket reports them (null under PROT C).

Also: rotation (rename + SIGUSR1 while a session keeps transferring: every record exactly
once, the old ones in the renamed file, the later ones in the new file, mode 0640), the
deploy/logrotate-ftpsgate example (logrotate -d, and a real rotation with its directives),
no password anywhere in the file, hostile bytes in paths (still one valid JSON object per
line; the bytes recovered exactly from the \\xNN escapes; a long path cut with
path_truncated), a log writer that cannot keep up (a FIFO nobody reads: sessions go on,
drops are counted in ftpsgate_transfer_log_dropped and noted in the file, and records read
+ records counted as dropped = transfers made), and a transfer_log path that cannot be
opened (exit 1, the path and the reason on stderr, as README says).
"""

import copy
import io
import json
import os
import re
import select
import shutil
import signal
import socket
import ssl
import stat
import sys
import threading
import time
import urllib.request

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import harness as H  # noqa: E402
import backends as B  # noqa: E402
import nettopo as N  # noqa: E402
from harness import check, check_code, check_eq  # noqa: E402

KEYS = ["ts", "session", "listener", "client", "user", "backend", "command", "path", "direction", "bytes",
        "duration_ms", "reply", "tls"]
DIRECTION = {"RETR": "download", "STOR": "upload", "STOU": "upload", "APPE": "upload",
             "LIST": "listing", "NLST": "listing", "MLSD": "listing"}
TS_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
CAP = 1 * H.MiB                   # main's max_upload_bytes
PP_CLIENT = ("198.51.100.7", 40123)
A_SIZE = 100 * H.KiB + 3
S_SIZE = 50 * H.KiB + 1
T_SIZE = 10 * H.KiB + 5
BIG_SIZE = 64 * H.MiB


# --------------------------------------------------------------------------
# Reading the audit file


def _pairs(pairs):
    keys = [k for k, _ in pairs]
    if len(keys) != len(set(keys)):
        raise H.Fail("a JSON object with a duplicate key: %r" % keys)
    return dict(pairs)


def parse_file(path):
    """Every complete line of path as a JSON object (a partly written last line, by the
    writer thread, is left for the next read). Fails on a line that is not one object."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return []
    out = []
    for i, raw in enumerate(data.split(b"\n")[:-1]):
        try:
            obj = json.loads(raw.decode("utf-8"), object_pairs_hook=_pairs)
        except (UnicodeDecodeError, ValueError) as e:
            raise H.Fail("line %d of %s is not one JSON object (%s): %r" % (i + 1, path, e, raw[:300])) from None
        check(isinstance(obj, dict), "line %d of %s is JSON but not an object: %r" % (i + 1, path, raw[:200]))
        out.append(obj)
    return out


def check_shape(r):
    """What every transfer record must look like, whatever the transfer."""
    keys = list(r.keys())
    check(keys == KEYS or keys == KEYS + ["path_truncated"], "record keys %r, want %r" % (keys, KEYS))
    check(isinstance(r["ts"], str) and TS_RE.match(r["ts"]), "ts %r" % r["ts"])
    check(type(r["session"]) is int and r["session"] > 0, "session %r" % r["session"])
    check(r["command"] in DIRECTION, "command %r" % r["command"])
    check_eq(r["direction"], DIRECTION[r["command"]], "direction of %s" % r["command"])
    for k in ("bytes", "duration_ms"):
        check(type(r[k]) is int and r[k] >= 0, "%s %r" % (k, r[k]))
    check(r["reply"] is None or (type(r["reply"]) is int and 100 <= r["reply"] <= 599), "reply %r" % r["reply"])
    if r["tls"] is not None:
        check(isinstance(r["tls"], dict) and list(r["tls"].keys()) == ["version", "cipher", "resumed"],
              "tls %r" % r["tls"])
        check(type(r["tls"]["resumed"]) is bool, "tls.resumed %r" % r["tls"]["resumed"])
    if "path_truncated" in r:
        check(r["path_truncated"] is True, "path_truncated %r" % r["path_truncated"])


class Audit:
    def __init__(self, path):
        self.path = path

    def records(self, path=None):
        return [r for r in parse_file(path or self.path) if "event" not in r]

    def wait(self, pred, what, n=1, timeout=10, path=None):
        """Waits (bounded) until n records match pred; returns them (fails on more than n)."""
        def found():
            got = [r for r in self.records(path) if pred(r)]
            return got if len(got) >= n else None
        got = H.wait_until(found, timeout)
        if not got:
            have = [r for r in self.records(path) if pred(r)]
            raise H.Fail("audit: %d record(s) for %s, want %d (file has %d)"
                         % (len(have), what, n, len(self.records(path))))
        time.sleep(0.05)  # a duplicate would come with its original
        got = [r for r in self.records(path) if pred(r)]
        check(len(got) == n, "audit: %d records for %s, want %d: %r" % (len(got), what, n, got))
        for r in got:
            check_shape(r)
        return got

    def one(self, pred, what, **kw):
        return self.wait(pred, what, 1, **kw)[0]


def expect(r, what, **want):
    for k, v in want.items():
        check_eq(r[k], v, "%s: audit field %s" % (what, k))


def tls_of(sock_info):
    """The record's tls object for what the client's data socket said (None: clear;
    "unset": the client made no data connection, which the caller reports)."""
    if sock_info is None or sock_info == "unset":
        return sock_info
    version, cipher, resumed = sock_info
    return {"version": version, "cipher": cipher, "resumed": resumed}


def unescape(s):
    """The original bytes of an audit string: \\xNN is one byte, the rest UTF-8."""
    out = bytearray()
    i = 0
    while i < len(s):
        if s.startswith("\\x", i) and re.match(r"[0-9a-f]{2}$", s[i + 2:i + 4]):
            out.append(int(s[i + 2:i + 4], 16))
            i += 4
        else:
            out += s[i].encode("utf-8")
            i += 1
    return bytes(out)


# pyftpdlib with named users (UTF-8, a backslash, a quote), the password the harness uses.
USERS_SCRIPT = r'''
import json, logging, sys
from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import FTPHandler
from pyftpdlib.servers import FTPServer

port, root, spec, log = int(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3]), sys.argv[4]
logging.basicConfig(filename=log, level=logging.DEBUG, format="%(asctime)s %(message)s")
auth = DummyAuthorizer()
for name in spec["users"]:
    auth.add_user(name, spec["password"], root, perm="elr")
FTPHandler.authorizer = auth
FTPHandler.permit_foreign_addresses = False
server = FTPServer(("127.0.0.1", port), FTPHandler)
server.serve_forever(timeout=0.5)
'''
USERS = ["jos\u00e9-\u20ac", 'back\\slash"quote']


class UsersPyftpd(H.Pyftpd):
    def __init__(self, env, name):
        super().__init__(env, name, flavour=json.dumps({"users": USERS, "password": H.PASSWORD}))
        with open(self.script, "w") as f:
            f.write(USERS_SCRIPT)


# --------------------------------------------------------------------------
# Clients that say what their data connection was


class RecFTPS(H.FTPS):
    """harness.FTPS that records its last data connection's TLS (version, cipher, resumed)."""

    data_tls = "unset"

    def ntransfercmd(self, cmd, rest=None):
        self.data_tls = "unset"
        conn, size = super().ntransfercmd(cmd, rest)
        self.data_tls = (conn.version(), conn.cipher()[0], conn.session_reused) \
            if isinstance(conn, ssl.SSLSocket) else None
        return conn, size


class NoResumeFTPS(RecFTPS):
    """Data TLS without offering the control session (as Python's stock FTP_TLS)."""

    def ntransfercmd(self, cmd, rest=None):
        self.data_tls = "unset"
        conn, size = H.ftplib.FTP.ntransfercmd(self, cmd, rest)
        if self._prot_p:
            conn = self.context.wrap_socket(conn, server_hostname=self.host)
        self.data_tls = (conn.version(), conn.cipher()[0], conn.session_reused) \
            if isinstance(conn, ssl.SSLSocket) else None
        return conn, size


class PPRec(N.PPFTPS, RecFTPS):
    pass


def client_of(f):
    h, p = f.sock.getsockname()[:2]
    return "%s:%d" % (h, p)


def get_once(tgt, rpath, cls=RecFTPS):
    """One ftplib session with one RETR: (client address, bytes, sha256, data TLS)."""
    f = H.ftplib_connect(tgt, cls=cls)
    try:
        n, sha, _ = H.ftplib_get(f, rpath)
        return client_of(f), n, sha, f.data_tls
    finally:
        H.quit_quietly(f)


def listing_bytes(f, cmd):
    got = bytearray()
    resp = f.retrbinary(cmd, got.extend)
    return bytes(got), resp


def store_bytes(f, cmd, data):
    return f.storbinary(cmd, io.BytesIO(data), blocksize=64 * H.KiB)


def code_of(e):
    return int(str(e)[:3])


# --------------------------------------------------------------------------


def body(s, env):
    vs = env.backend("vs1")
    py = B.start_backend(env, "pyftpdlib", "py1")
    main = env.front(vs, "main", protection="any", policy={"max_upload_bytes": CAP})
    ro = env.front(vs, "ro", protection="any", policy={"read_only": True, "deny_commands": ["NLST"]})
    private = env.front(vs, "private", protection="private")
    pyt = env.front(py, "py", protection="any", policy={"require_session_reuse": False})
    pp = env.front(vs, "pp", protection="private")
    routed = env.front(vs, "routed", protection="any")
    pyu = UsersPyftpd(env, "pyu")
    env.backends.append(pyu)
    pyu.start()
    named = env.front(pyu, "named", protection="any")
    targets = [main, ro, private, pyt, pp, routed, named]
    audit_path = os.path.join(env.tmp, "auditdir", "transfers.log")
    os.makedirs(os.path.dirname(audit_path))
    audit = Audit(audit_path)
    if env.proxy is not None:
        pp.listener["proxy_protocol"] = {"trusted": ["127.0.0.1/32"], "data_peer": "balancer"}
        # No default backend: the backend is known only at USER (a user route).
        routed.listener["routes"] = [{"user": H.FTP_USER, "backend": routed.listener.pop("backend")}]
        env.proxy.extra_top["log"] = {"level": "debug", "format": "text", "transfer_log": audit_path}
        env.proxy.admin_port = H.free_port()
    sha_a = vs.add_pub("a.bin", A_SIZE)
    sha_s = vs.add_pub("s.bin", S_SIZE)
    vs.add_pub("t.bin", T_SIZE)
    vs.add_pub("big.bin", BIG_SIZE)
    vs.add_pub("cap.bin", CAP)
    vs.add_pub("cap1.bin", CAP + 1)
    sha_py = py.add_pub("p.bin", A_SIZE)
    sha_u = pyu.add_pub("u.bin", S_SIZE)
    for i in range(3):
        py.add_pub("m%d.txt" % i, 100 + i)
    env.start(*targets)
    ctx = env.certs.client_context()
    vs_addr, py_addr = vs.address, py.address
    res = {}

    def proxy_sessions():
        """{session id: client address} from the proxy's own log lines (the last one: behind a
        PROXY header, the first lines name the balancer)."""
        out = {}
        for m in re.finditer(r" session=(\d+) client=(\S+) ", env.proxy.log_text()):
            out[int(m.group(1))] = m.group(2)
        return out

    def common(r, what, listener, client, backend=vs_addr, user=H.FTP_USER):
        expect(r, what, listener=listener, client=client, user=user, backend=backend)
        check_eq(proxy_sessions().get(r["session"]), client, "%s: the proxy log's client of session %d"
                 % (what, r["session"]))

    # ---- the mixed ftplib session --------------------------------------------------

    def ftplib_mixed():
        H.needs_proxy()
        f = H.ftplib_connect(main, cls=RecFTPS)
        cl = client_of(f)
        steps = []  # (command, path sent, fields) checked after the session
        try:
            n, sha, resp = H.ftplib_get(f, "/pub/a.bin")
            check_eq((n, sha), (A_SIZE, sha_a), "RETR /pub/a.bin (size, sha256)")
            steps.append(("RETR", "/pub/a.bin", dict(bytes=A_SIZE, reply=226, tls=tls_of(f.data_tls))))
            H.ftplib_put(f, vs.pub_path("s.bin"), "/up/s-mixed.bin")
            steps.append(("STOR", "/up/s-mixed.bin", dict(bytes=S_SIZE, reply=226, tls=tls_of(f.data_tls))))
            H.ftplib_put(f, vs.pub_path("t.bin"), "/up/s-mixed.bin", cmd="APPE")
            steps.append(("APPE", "/up/s-mixed.bin", dict(bytes=T_SIZE, reply=226, tls=tls_of(f.data_tls))))
            f.cwd("/up")
            resp = store_bytes(f, "STOU", b"u" * 777)
            check(resp.startswith("226"), "STOU: %r" % resp)
            steps.append(("STOU", None, dict(bytes=777, reply=226, tls=tls_of(f.data_tls))))
            f.cwd("/")
            data, resp = listing_bytes(f, "LIST /pub")
            check(b"a.bin" in data, "LIST /pub lacks a.bin: %r" % data[:300])
            steps.append(("LIST", "/pub", dict(bytes=len(data), reply=226, tls=tls_of(f.data_tls))))
            data, resp = listing_bytes(f, "NLST /pub")
            check(b"a.bin" in data, "NLST /pub lacks a.bin: %r" % data[:300])
            steps.append(("NLST", "/pub", dict(bytes=len(data), reply=226, tls=tls_of(f.data_tls))))
            try:
                H.ftplib_get(f, "/pub/missing.bin")
                raise H.Fail("RETR of a missing file succeeded")
            except H.ftplib.error_perm as e:
                check_eq(code_of(e), 550, "RETR of a missing file")
            # No data connection came up (ftplib wraps it in TLS only after a 1xx): no TLS.
            steps.append(("RETR", "/pub/missing.bin", dict(bytes=0, reply=550, tls=None)))
            f.voidcmd("PBSZ 0")
            f.prot_c()
            n, sha, resp = H.ftplib_get(f, "/pub/a.bin")
            check_eq((n, sha), (A_SIZE, sha_a), "RETR under PROT C (size, sha256)")
            check(f.data_tls is None, "PROT C data connection under TLS?")
            steps.append(("RETR", "/pub/a.bin", dict(bytes=A_SIZE, reply=226, tls=None)))
        finally:
            H.quit_quietly(f)
        check_eq(os.path.getsize(vs.up_path("s-mixed.bin")), S_SIZE + T_SIZE, "size of s-mixed.bin after APPE")
        recs = audit.wait(lambda r: r["client"] == cl, "the session of %s" % cl, n=len(steps))
        check_eq(len({r["session"] for r in recs}), 1, "session ids of one control connection")
        for r, (cmd, path, want) in zip(recs, steps):
            what = "%s %s" % (cmd, path)
            check(want["tls"] != "unset", "%s: no data connection was recorded by the client" % what)
            common(r, what, "main", cl)
            expect(r, what, command=cmd, direction=DIRECTION[cmd], **want)
            if cmd == "STOU":
                res["stou"] = r  # its path (none was sent): "LIST/STOU without an argument"
            else:
                expect(r, what, path=path)
            if r["tls"] is not None:
                check_eq(r["tls"]["resumed"], True, "%s: tls.resumed (ftplib resumes the control session)" % what)
        stamps = [r["ts"] for r in recs]
        check_eq(stamps, sorted(stamps), "ts of one session's records in order")

    s.run("ftplib mixed session: RETR, STOR, APPE, STOU, LIST, NLST, RETR 550, RETR under PROT C",
          ftplib_mixed)

    def no_argument():
        H.needs_proxy()
        f = H.ftplib_connect(main, cls=RecFTPS)
        cl = client_of(f)
        try:
            f.cwd("/pub")
            data, _ = listing_bytes(f, "LIST")
        finally:
            H.quit_quietly(f)
        r = audit.one(lambda r: r["client"] == cl and r["command"] == "LIST", "LIST without an argument")
        expect(r, "LIST without an argument", bytes=len(data), reply=226)
        paths = {"LIST (226)": r["path"]}
        if "stou" in res:
            paths["STOU (226, mixed session)"] = res["stou"]["path"]
        if "ro_stou" in res:
            paths["STOU (532, refused on 'ro')"] = res["ro_stou"]["path"]
        bad = dict((k, v) for k, v in paths.items() if v is not None)
        check(not bad, "transfer commands sent without an argument, audit path %r, want null (README: \"null "
              "without one\"; auditfmt.h: \"null if none\") -- proxy/dataplan.c plan_report and "
              "proxy/session.c audit_refused pass \"\" when there is no argument" % bad)

    def pyftpd_mlsd():
        H.needs_proxy()
        f = H.ftplib_connect(pyt, cls=RecFTPS)
        cl = client_of(f)
        try:
            data, resp = listing_bytes(f, "MLSD /pub")
            check(b"m1.txt" in data, "MLSD lacks m1.txt: %r" % data[:300])
            t = f.data_tls
        finally:
            H.quit_quietly(f)
        r = audit.one(lambda r: r["client"] == cl, "MLSD via pyftpdlib")
        common(r, "MLSD", "py", cl, backend=py_addr)
        expect(r, "MLSD", command="MLSD", path="/pub", direction="listing", bytes=len(data), reply=226,
               tls=tls_of(t))
        check_eq(r["tls"]["resumed"], True, "MLSD: tls.resumed")

    s.run("MLSD through pyftpdlib: listing, exact bytes, resumed TLS", pyftpd_mlsd)

    def not_resumed():
        H.needs_proxy()
        cl, n, sha, t = get_once(pyt, "/pub/p.bin", NoResumeFTPS)
        check_eq((n, sha), (A_SIZE, sha_py), "RETR without resumption (size, sha256)")
        check_eq(t[2], False, "the client's data socket: session_reused")
        r = audit.one(lambda r: r["client"] == cl, "RETR without resumption")
        common(r, "RETR (not resumed)", "py", cl, backend=py_addr)
        expect(r, "RETR (not resumed)", command="RETR", path="/pub/p.bin", bytes=A_SIZE, reply=226, tls=tls_of(t))

    s.run("a data connection that does not resume: tls.resumed false", not_resumed)

    # ---- curl and lftp ---------------------------------------------------------------

    def sent(trace, verb, prefix):
        m = re.findall(r"(?:^|\s)%s %s (\S.*?)\r?$" % (re.escape(prefix), verb), trace, re.M)
        check(m, "no %s in the client's trace" % verb)
        return m[-1]

    def by_session(rec, listener):
        common(rec, "%s %s" % (rec["command"], rec["path"]), listener, proxy_sessions().get(rec["session"]))
        check(rec["client"].startswith("127.0.0.1:"), "client %r" % rec["client"])

    def curl_case():
        H.needs_proxy()
        out = os.path.join(env.client_dir, "curl-a.bin")
        r, trace = H.curl(main, ["-o", out, main.url("/pub/a.bin")], timeout=60)
        check_eq(r.returncode, 0, "curl download exit (%s)" % r.stderr[-300:])
        check_eq(H.sha256_file(out), sha_a, "curl download sha256")
        rpath = sent(trace, "RETR", ">")
        r2, trace2 = H.curl(main, ["-T", vs.pub_path("s.bin"), main.url("/up/curl-up.bin")], timeout=60)
        check_eq(r2.returncode, 0, "curl upload exit (%s)" % r2.stderr[-300:])
        H.check_stored(vs, "curl-up.bin", S_SIZE, sha_s, "curl upload")
        upath = sent(trace2, "STOR", ">")
        # curl sends CWD pub, then RETR a.bin: a path no other case sends.
        rec = audit.one(lambda x: x["command"] == "RETR" and x["path"] == rpath, "curl's RETR %s" % rpath)
        by_session(rec, "main")
        expect(rec, "curl RETR", bytes=A_SIZE, reply=226)
        check(rec["tls"] and rec["tls"]["resumed"] is True, "curl RETR: tls %r (curl resumes)" % rec["tls"])
        rec = audit.one(lambda x: x["command"] == "STOR" and x["path"] == upath, "curl's STOR %s" % upath)
        by_session(rec, "main")
        expect(rec, "curl STOR", bytes=S_SIZE, reply=226, direction="upload")

    s.run("curl download and upload: their records", curl_case)

    def lftp_case():
        H.needs_proxy()
        out = os.path.join(env.client_dir, "lftp-a.bin")
        r, trace = H.lftp(main, ["get /pub/a.bin -o %s" % out, "put %s -o /up/lftp-up.bin" % vs.pub_path("s.bin")],
                          env.client_dir, timeout=120)
        check_eq(r.returncode, 0, "lftp exit (%s)" % (r.stdout + r.stderr)[-300:])
        check_eq(H.sha256_file(out), sha_a, "lftp download sha256")
        H.check_stored(vs, "lftp-up.bin", S_SIZE, sha_s, "lftp upload")
        rpath = sent(trace, "RETR", "--->")
        upath = sent(trace, "STOR", "--->")
        rec = audit.one(lambda x: x["command"] == "STOR" and x["path"] == upath, "lftp's STOR %s" % upath)
        by_session(rec, "main")
        expect(rec, "lftp STOR", bytes=S_SIZE, reply=226)
        recs = audit.wait(lambda x: x["command"] == "RETR" and x["path"] == rpath and x["session"] == rec["session"],
                          "lftp's RETR %s" % rpath)
        expect(recs[0], "lftp RETR", bytes=A_SIZE, reply=226)
        check(recs[0]["tls"] and recs[0]["tls"]["resumed"] is True, "lftp RETR: tls %r" % recs[0]["tls"])

    s.run("lftp get and put: their records", lftp_case)

    # ---- aborted, refused, cut, vanished ---------------------------------------------------

    def big_retr_started():
        """A RETR of the 64 MiB file under PROT P, 1 MiB of it read: (ctl, client, data, bytes got)."""
        c = H.Ctl(main, timeout=30).secure_login(ctx, "P")
        cl = "%s:%d" % c.sock.getsockname()[:2]
        check_code(c.cmd("TYPE I"), 200, "TYPE I")
        addr = c.pasv()
        d = socket.create_connection(addr, timeout=30)
        check_code(c.cmd("RETR /pub/big.bin"), (150, 125), "RETR big.bin")
        d = c.wrap_data(d, ctx)
        got = 0
        while got < 1 * H.MiB:
            b = d.recv(64 * H.KiB)
            check(b, "data ended after %d bytes" % got)
            got += len(b)
        return c, cl, d, got

    def aborted():
        H.needs_proxy()
        c, cl, d, got = big_retr_started()
        c.send(b"ABOR\r\n")
        H.abort_socket(d)
        first = c.reply()
        second = c.reply()
        print("     ABOR replies as the client saw them: %r, %r" % (first[1][:60], second[1][:60]), flush=True)
        check(first[0] in (426, 226, 225, 451), "first reply after ABOR %r" % first[1])
        check(second[0] in (226, 225), "ABOR's own reply %r" % second[1])
        c.cmd("QUIT")
        c.close()
        r = audit.one(lambda r: r["client"] == cl, "the aborted RETR")
        common(r, "aborted RETR", "main", cl)
        expect(r, "aborted RETR", command="RETR", path="/pub/big.bin", reply=first[0])
        check(got <= r["bytes"] < BIG_SIZE, "aborted RETR: audit bytes %d, the client got %d of %d"
              % (r["bytes"], got, BIG_SIZE))

    s.run("ABOR mid-RETR: the reply the client saw, bytes between what it got and the size", aborted)

    def vanished():
        H.needs_proxy()
        c, cl, d, got = big_retr_started()
        c.abort()
        H.abort_socket(d)
        r = audit.one(lambda r: r["client"] == cl, "the RETR of a vanished client")
        common(r, "vanished RETR", "main", cl)
        expect(r, "vanished RETR", command="RETR", path="/pub/big.bin", reply=None)
        check(got <= r["bytes"] < BIG_SIZE, "vanished RETR: audit bytes %d, the client got %d of %d"
              % (r["bytes"], got, BIG_SIZE))

    s.run("client vanishes mid-RETR: reply null, bytes below the size", vanished)

    def refused():
        H.needs_proxy()
        # private: PROT C refused (534), so the transfer goes out in clear: 521.
        c = H.Ctl(private).secure_login(ctx, None)
        cl = "%s:%d" % c.sock.getsockname()[:2]
        check_code(c.cmd("PBSZ 0"), 200, "PBSZ 0")
        check_code(c.cmd("PROT C"), 534, "PROT C under private")
        check_code(c.cmd("RETR /pub/a.bin"), 521, "RETR in clear under private")
        c.cmd("QUIT")
        c.close()
        r = audit.one(lambda r: r["client"] == cl, "the RETR refused with 521")
        common(r, "RETR 521", "private", cl)
        expect(r, "RETR 521", command="RETR", path="/pub/a.bin", bytes=0, reply=521, tls=None)
        # ro: read_only and deny_commands.
        f = H.ftplib_connect(ro, cls=RecFTPS)
        cl = client_of(f)
        codes = []
        try:
            for cmd in ("STOR /up/ro.bin", "APPE /up/ro.bin", "STOU"):
                try:
                    store_bytes(f, cmd, b"x" * 100)
                    raise H.Fail("%s passed on a read-only listener" % cmd)
                except H.ftplib.error_perm as e:
                    codes.append((cmd, code_of(e)))
            try:
                listing_bytes(f, "NLST /pub")
                raise H.Fail("NLST passed though denied")
            except H.ftplib.error_perm as e:
                codes.append(("NLST /pub", code_of(e)))
            n, sha, _ = H.ftplib_get(f, "/pub/a.bin")
            check_eq((n, sha), (A_SIZE, sha_a), "RETR on the read-only listener")
        finally:
            H.quit_quietly(f)
        check_eq([c for _, c in codes], [532, 550, 532, 502], "codes of STOR, APPE, STOU, NLST on 'ro'")
        check(not os.path.exists(vs.up_path("ro.bin")), "the refused upload reached the backend")
        recs = audit.wait(lambda r: r["client"] == cl, "the 'ro' session", n=5)
        for r, (cmd, code) in zip(recs, codes + [("RETR /pub/a.bin", 226)]):
            verb, _, arg = cmd.partition(" ")
            common(r, cmd, "ro", cl)
            expect(r, cmd, command=verb, reply=code, bytes=A_SIZE if code == 226 else 0)
            if arg:
                expect(r, cmd, path=arg)
            if code != 226:
                expect(r, cmd, tls=None)
        res["ro_stou"] = recs[2]

    s.run("refused transfers: 521 (PROT C under private), 532/550/532 read_only, 502 deny_commands; "
          "0 bytes", refused)
    s.run("LIST and STOU without an argument (done, refused): path null", no_argument)

    def cut_upload():
        H.needs_proxy()
        f = H.ftplib_connect(main, cls=RecFTPS)
        cl = client_of(f)
        mark = vs.log_mark()
        try:
            H.ftplib_put(f, vs.pub_path("cap.bin"), "/up/cap-exact.bin")
            conn = f.transfercmd("STOR /up/cap-over.bin")
            err = None
            try:
                with open(vs.pub_path("cap1.bin"), "rb") as fp:
                    while True:
                        b = fp.read(64 * H.KiB)
                        if not b:
                            break
                        conn.sendall(b)
                conn.unwrap()
            except (OSError, ssl.SSLError) as e:
                err = e
            finally:
                conn.close()
            try:
                resp = f.getresp()
                raise H.Fail("the upload one byte over the limit got %r (sent: %s)" % (resp, err))
            except H.ftplib.error_perm as e:
                check_eq(code_of(e), 552, "reply to the upload over the limit")
        finally:
            H.quit_quietly(f)
        recs = audit.wait(lambda r: r["client"] == cl, "the cut upload's session", n=2)
        common(recs[0], "STOR at the limit", "main", cl)
        expect(recs[0], "STOR at the limit", command="STOR", path="/up/cap-exact.bin", bytes=CAP, reply=226)
        r = recs[1]
        common(r, "STOR over the limit", "main", cl)
        expect(r, "STOR over the limit", command="STOR", path="/up/cap-over.bin", reply=552)
        back = vs.wait_transfer("/up/cap-over.bin", mark)
        check(back is not None, "vsftpd did not log the cut upload")
        print("     cut upload: audit bytes %d (limit %d); vsftpd: %s %d bytes"
              % (r["bytes"], CAP, "OK" if back[0] else "FAIL", back[3]), flush=True)
        check(0 < r["bytes"] <= CAP, "cut upload: audit bytes %d, want 1..%d" % (r["bytes"], CAP))
        check(back[3] <= r["bytes"], "the backend got %d bytes, more than the %d the record says crossed"
              % (back[3], r["bytes"]))

    s.run("max_upload_bytes: the upload at the limit (226, exact bytes) and one byte over (552, bytes "
          "up to the cut)", cut_upload)

    def proxy_protocol():
        H.needs_proxy()
        hdr = N.proxy_v1(PP_CLIENT, ("127.0.0.1", pp.port))
        f = PPRec(context=ctx, timeout=30)
        f.pp_header = hdr
        f.connect(pp.host, pp.port)
        real = "%s:%d" % PP_CLIENT
        try:
            f.auth()
            f.login(H.FTP_USER, H.PASSWORD)
            f.prot_p()
            n, sha, _ = H.ftplib_get(f, "/pub/a.bin")
            t = f.data_tls
        finally:
            H.quit_quietly(f)
        check_eq((n, sha), (A_SIZE, sha_a), "RETR behind PROXY (size, sha256)")
        r = audit.one(lambda r: r["listener"] == "pp", "the RETR behind a PROXY header")
        common(r, "RETR behind PROXY", "pp", real)
        expect(r, "RETR behind PROXY", command="RETR", path="/pub/a.bin", bytes=A_SIZE, reply=226, tls=tls_of(t))

    s.run("PROXY protocol listener: client is the address of the header", proxy_protocol)

    def before_login():
        H.needs_proxy()
        bad = []
        # ftpsgate dials the backend for the first command it must forward: AUTH TLS and a
        # refused RETR are not, so no backend was contacted on either listener.
        for tgt, backend in ((main, None), (routed, None)):
            c = H.Ctl(tgt)
            c.auth_tls(ctx)
            cl = "%s:%d" % c.sock.getsockname()[:2]
            r1 = c.cmd("RETR /pub/a.bin")
            c.cmd("QUIT")
            c.close()
            what = "RETR before login on '%s'" % tgt.name
            r = audit.one(lambda r: r["client"] == cl, what)
            expect(r, what, command="RETR", path="/pub/a.bin", reply=r1[0], bytes=0, tls=None, listener=tgt.name,
                   client=cl)
            check(not re.search(r" session=%d client=\S+ backend " % r["session"], env.proxy.log_text()),
                  "%s: the proxy contacted a backend for this session after all" % what)
            if r["user"] is not None:
                bad.append("%s: user %r, want null (README: \"null before login\")" % (what, r["user"]))
            if r["backend"] != backend:
                bad.append("%s: backend %r, want %r%s" % (what, r["backend"], backend,
                           " (README: \"null when none was contacted\")" if backend is None else ""))
        check(not bad, "; ".join(bad) + " -- proxy/session.c on_plan_transfer passes s->user (\"\") before "
              "login and backend \"\" when there is no backend connection, never NULL")

    s.run("a transfer command before login: user null; backend null when none was contacted", before_login)

    def routed_login():
        H.needs_proxy()
        cl, n, sha, t = get_once(routed, "/pub/a.bin")
        check_eq((n, sha), (A_SIZE, sha_a), "RETR through a user route (size, sha256)")
        r = audit.one(lambda r: r["client"] == cl, "the RETR through a user route")
        common(r, "RETR via route", "routed", cl)
        expect(r, "RETR via route", command="RETR", path="/pub/a.bin", bytes=A_SIZE, reply=226, tls=tls_of(t))

    s.run("a listener with a user route: user and backend of the route", routed_login)

    def named_users():
        H.needs_proxy()
        bad = []
        for name in USERS:
            f = RecFTPS(context=ctx, timeout=30)
            f.connect(named.host, named.port)
            try:
                f.auth()
                f.login(name, H.PASSWORD)
                f.prot_p()
                cl = client_of(f)
                n, sha, _ = H.ftplib_get(f, "/pub/u.bin")
            finally:
                H.quit_quietly(f)
            check_eq((n, sha), (S_SIZE, sha_u), "RETR as %r (size, sha256)" % name)
            r = audit.one(lambda r: r["client"] == cl, "the RETR of user %r" % name)
            common(r, "RETR as %r" % name, "named", cl, backend=pyu.address, user=r["user"])
            # UTF-8 text is kept as it is; a backslash becomes \x5c; either way the bytes come back.
            if unescape(r["user"]) != name.encode() or ("\\" not in name and r["user"] != name):
                bad.append("user %r logged as %r" % (name, r["user"]))
        check(not bad, "; ".join(bad) + " (auditfmt.h: UTF-8 text kept, a backslash as \\x5c, so the bytes "
              "can be recovered) -- proxy/session.c passes s->user, already log_escape()d, so it is "
              "escaped twice")

    s.run("user names in UTF-8 and with a backslash and a quote: recorded as sent", named_users)

    # ---- hostile bytes, no password -------------------------------------------------------

    def hostile():
        H.needs_proxy()
        c = H.Ctl(main).secure_login(ctx, "P")
        cl = "%s:%d" % c.sock.getsockname()[:2]
        names = [b'/pub/q"uo\\te.bin', b"/pub/ctl\x01\x1b[31m\x7f.bin", b"/pub/latin1-caf\xe9.bin",
                 b"/pub/utf8-caf\xc3\xa9-\xe2\x82\xac.bin", b"/pub/c1-\xc2\x85.bin",
                 b'/pub/forge","reply":226,"x":"\\u0041', b"/pub/long-" + b"\x01" * 1200]
        replies = []
        for n in names:
            c.send(b"RETR " + n + b"\r\n")
            replies.append(c.reply()[0])
        c.cmd("QUIT")
        c.close()
        recs = audit.wait(lambda r: r["client"] == cl, "the hostile paths", n=len(names))
        for r, n, code in zip(recs, names, replies):
            expect(r, repr(n), command="RETR", reply=code)
            if len(n) < 1000:
                check_eq(unescape(r["path"]), n, "path bytes recovered from the escaped audit value")
                check("path_truncated" not in r, "short path marked truncated")
        check_eq(recs[1]["path"], "/pub/ctl\\x01\\x1b[31m\\x7f.bin", "control bytes escaped")
        check_eq(recs[2]["path"], "/pub/latin1-caf\\xe9.bin", "invalid UTF-8 escaped")
        check_eq(recs[3]["path"], "/pub/utf8-caf\u00e9-\u20ac.bin", "valid UTF-8 kept")
        check_eq(recs[4]["path"], "/pub/c1-\\xc2\\x85.bin", "C1 control escaped")
        check_eq(recs[0]["path"], '/pub/q"uo\\x5cte.bin', "quote kept, backslash escaped")
        check_eq(recs[5]["reply"], replies[5], "reply of the path that tries to forge fields")
        long = recs[6]
        check(long.get("path_truncated") is True, "a path of 4810 output bytes is not marked path_truncated")
        check(long["path"].endswith("..."), "truncated path does not end in '...'")
        check(unescape(long["path"][:-3]) == names[6][:len(unescape(long["path"][:-3]))],
              "truncated path is not a prefix of the path sent")
        with open(audit_path, "rb") as f:
            raw = f.read()
        for line in raw.split(b"\n")[:-1]:
            check(all(b >= 0x20 for b in line), "a raw control byte in a line of the audit file: %r" % line[:200])

    s.run("hostile bytes in paths: one valid JSON object per line, bytes recoverable, long path cut",
          hostile)

    # ---- rotation ----------------------------------------------------------------------------

    def rotation():
        H.needs_proxy()
        old = audit_path + ".1"
        n_total = 60
        half = threading.Event()
        done = []
        err = []
        f = H.ftplib_connect(main, cls=RecFTPS)
        cl = client_of(f)

        def loop():
            try:
                for i in range(n_total):
                    try:
                        H.ftplib_get(f, "/pub/rot-%03d.bin" % i)
                    except H.ftplib.error_perm as e:
                        check_eq(code_of(e), 550, "RETR of a missing file")
                    done.append(i)
                    if i == n_total // 2:
                        half.set()
                        time.sleep(0.2)
            except Exception as e:  # noqa: BLE001
                err.append(e)
                half.set()

        th = threading.Thread(target=loop, daemon=True)
        th.start()
        check(half.wait(60), "the transfer loop did not get half-way")
        pmark = env.proxy.log_mark()
        os.rename(audit_path, old)
        os.kill(env.proxy.pid, signal.SIGUSR1)
        th.join(120)
        H.quit_quietly(f)
        check(not err, "transfer loop: %r" % err)
        check_eq(len(done), n_total, "transfers done")
        check(H.wait_until(lambda: re.search(r"log\.transfer_log %s: reopened" % re.escape(audit_path),
                                             env.proxy.log_since(pmark)), 10),
              "the proxy did not log the reopen of %s" % audit_path)

        def mine(path):
            return [r for r in audit.records(path) if r["client"] == cl]
        H.wait_until(lambda: len(mine(old)) + len(mine(audit_path)) >= n_total, 10)
        a, b = mine(old), mine(audit_path)
        ia = [int(r["path"][9:12]) for r in a]
        ib = [int(r["path"][9:12]) for r in b]
        print("     rotation: %d records in the renamed file, %d in the new one" % (len(a), len(b)), flush=True)
        check_eq(sorted(ia + ib), list(range(n_total)), "every transfer exactly once across both files")
        check(ia and ib, "the rotation did not split the records (old %d, new %d)" % (len(ia), len(ib)))
        check(max(ia) < min(ib), "a record after the reopen went to the renamed file, or one before it to "
              "the new file: old %r, new %r" % (ia[-5:], ib[:5]))
        mode = stat.S_IMODE(os.stat(audit_path).st_mode)
        check_eq(oct(mode), oct(0o640), "mode of the new file")
        # The records before the rotation are still in the renamed file, and only there.
        earlier = [r for r in audit.records(old) if r["client"] != cl]
        check(earlier, "the renamed file lost the earlier records")
        check(not [r for r in audit.records(audit_path) if r["client"] != cl],
              "earlier records duplicated into the new file")

    s.run("rotation: rename + SIGUSR1 mid-session; every record once, old ones in the renamed file",
          rotation)

    def logrotate_example():
        H.needs_proxy()
        lr = shutil.which("logrotate") or "/usr/sbin/logrotate"
        check(os.access(lr, os.X_OK), "logrotate is not installed (tests/setup-deps.sh installs it)")
        example = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "deploy",
                               "logrotate-ftpsgate")
        with open(example) as fp:
            text = fp.read()
        d = os.path.join(env.tmp, "logrotate")
        os.makedirs(d)
        state = os.path.join(d, "state")
        # logrotate -d resolves the owner of "create": the example's user "ftpsgate" (made by
        # the install steps, deploy/ftpsgate.service.in) is not on a test machine; root stands in.
        check(re.search(r"^\s*create 0640 ftpsgate adm$", text, re.M), "the example's create line changed")
        example_here = os.path.join(d, "example")
        with open(example_here, "w") as fp:
            fp.write(text.replace("create 0640 ftpsgate adm", "create 0640 root adm"))
        r = H.run_cmd([lr, "-d", "-s", state, example_here], timeout=30)
        out = r.stdout + r.stderr
        check_eq(r.returncode, 0, "logrotate -d on the example (%s)" % out.strip()[-400:])
        check(not re.search(r"^error:", out, re.M), "logrotate -d reports an error: %s" % out.strip()[-400:])
        check(re.search(r"rotating pattern: /var/log/ftpsgate/transfers\.log", out),
              "logrotate -d did not read the example's rule: %s" % out.strip()[-400:])
        # The check can fail: a typo in a directive is an error.
        bad = os.path.join(d, "bad")
        with open(bad, "w") as fp:
            fp.write(text.replace("create 0640 ftpsgate adm", "create 0640 root adm")
                     .replace("delaycompress", "delaycompres"))
        rb = H.run_cmd([lr, "-d", "-s", state, bad], timeout=30)
        check(rb.returncode != 0 or "error" in (rb.stdout + rb.stderr),
              "logrotate -d does not notice a misspelt directive, so it checks nothing")
        # A real rotation with the example's directives: the path, the owner of "create" and
        # the signal command are this test's.
        conf = os.path.join(d, "conf")
        live = text.replace("/var/log/ftpsgate/transfers.log", audit_path)
        live = live.replace("create 0640 ftpsgate adm", "create 0640 root root")
        live = re.sub(r"postrotate\n.*?endscript", "postrotate\n        kill -USR1 %d\n    endscript"
                      % env.proxy.pid, live, flags=re.S)
        with open(conf, "w") as fp:
            fp.write(live)
        os.chmod(conf, 0o644)
        before = len(audit.records())
        check(before > 0, "nothing in the audit file to rotate")
        pmark = env.proxy.log_mark()
        r = H.run_cmd([lr, "-f", "-s", state, conf], timeout=60)
        check_eq(r.returncode, 0, "logrotate -f (%s)" % (r.stdout + r.stderr).strip()[-400:])
        rotated = [p for p in os.listdir(os.path.dirname(audit_path))
                   if p.startswith("transfers.log-")]
        check_eq(len(rotated), 1, "rotated files (dateext): %r" % rotated)
        check(H.wait_until(lambda: "reopened" in env.proxy.log_since(pmark), 10), "no reopen after logrotate")
        cl = get_once(main, "/pub/a.bin")[0]
        audit.one(lambda r: r["client"] == cl, "the transfer after logrotate (in the new file)")
        old = os.path.join(os.path.dirname(audit_path), rotated[0])
        check_eq(len([x for x in parse_file(old) if "event" not in x]), before, "records in the rotated file")
        check_eq(oct(stat.S_IMODE(os.stat(audit_path).st_mode)), oct(0o640), "mode of the file logrotate made")

    s.run("deploy/logrotate-ftpsgate: logrotate -d accepts it; a real rotation with it reopens the file",
          logrotate_example)

    def no_password():
        H.needs_proxy()
        text = b""
        d = os.path.dirname(audit_path)
        for p in os.listdir(d):
            with open(os.path.join(d, p), "rb") as fp:
                text += fp.read()
        check(len(text) > 1000, "the audit files are nearly empty (%d bytes)" % len(text))
        check(H.PASSWORD.encode() not in text, "the PASS argument is in the audit log")
        for p in os.listdir(d):
            for r in parse_file(os.path.join(d, p)):
                bad = [k for k in r if "pass" in k.lower() or k.upper() in ("ACCT", "PASS")]
                check(not bad, "a record has a key %r" % bad)
                check(r.get("command") not in ("PASS", "ACCT", "USER"), "a record of %s" % r.get("command"))

    s.run("no password in the audit files, and no PASS/ACCT field or record", no_password)

    def metrics_zero():
        H.needs_proxy()
        body_ = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % env.proxy.admin_port, timeout=10).read()
        m = re.search(rb"^ftpsgate_transfer_log_dropped (\d+)$", body_, re.M)
        check(m, "no ftpsgate_transfer_log_dropped in /metrics")
        check_eq(int(m.group(1)), 0, "ftpsgate_transfer_log_dropped with a file that keeps up")

    s.run("ftpsgate_transfer_log_dropped is 0 when the file keeps up", metrics_zero)

    # ---- a second ftpsgate: a writer that cannot keep up, and paths that cannot be opened ---------

    def second_config(transfer_log, admin_port=None):
        cfg = copy.deepcopy(env.proxy.config())
        ln = copy.deepcopy(env.proxy.listeners[0])
        ln["bind"] = "127.0.0.1:%d" % H.free_port()
        lo, hi = H.free_port_block(4)
        ln["passive"] = {"ports": "%d-%d" % (lo, hi)}
        cfg["listeners"] = [ln]
        cfg["log"] = {"level": "info", "format": "text", "transfer_log": transfer_log}
        cfg.pop("admin", None)
        if admin_port:
            cfg["admin"] = {"bind": "127.0.0.1:%d" % admin_port}
        return cfg, int(ln["bind"].rsplit(":", 1)[1])

    def start_second(cfg, tag):
        path = os.path.join(env.tmp, "second-%s.json" % tag)
        with open(path, "w") as fp:
            json.dump(cfg, fp)
        log = os.path.join(env.tmp, "second-%s.log" % tag)
        p = H.spawn([env.binary, "-c", path], log, env=dict(os.environ, **env.proxy.extra_env))
        return p, path, log

    def slow_writer():
        H.needs_proxy()
        fifo = os.path.join(env.tmp, "audit.fifo")
        os.mkfifo(fifo, 0o600)
        rfd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # a reader exists, and reads nothing yet
        admin = H.free_port()
        cfg, port = second_config(fifo, admin)
        p, _, log = start_second(cfg, "fifo")
        got = bytearray()
        try:
            check(H.wait_ready(log, 30, p), "the second ftpsgate did not start: %s" % H.tail_file(log, 10))
            tgt = H.Target("fifo", port, True, env.certs.ca, vs)
            c = H.Ctl(tgt, timeout=30).secure_login(ctx, "P")
            # RETR with no PASV: 425 from ftpsgate itself, one record each, ~3.1 KiB each (a long path).
            path = "/pub/" + "f" * 3000
            n_sent = 0
            t0 = time.monotonic()
            for batch in range(16):
                c.send(b"".join(b"RETR %s-%04d\r\n" % (path.encode(), n_sent + i) for i in range(50)))
                for i in range(50):
                    check_code(c.reply(), 425, "RETR without PASV")
                n_sent += 50
            # Past the 1 MiB buffer and the pipe: the event loop still answers at once.
            t1 = time.monotonic()
            check_code(c.cmd("NOOP", timeout=5), 200, "NOOP while the audit writer is stuck")
            print("     %d records made in %.2f s with the audit writer stuck" % (n_sent, t1 - t0), flush=True)

            def dropped():
                body_ = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % admin, timeout=10).read()
                m = re.search(rb"^ftpsgate_transfer_log_dropped (\d+)$", body_, re.M)
                return int(m.group(1)) if m else None
            n_drop = H.wait_until(lambda: dropped(), 10)
            check(n_drop, "ftpsgate_transfer_log_dropped stays %r with the writer stuck" % n_drop)
            c.cmd("QUIT")
            c.close()
            # Now read the FIFO: the writer catches up and notes what it dropped.
            deadline = time.monotonic() + 30
            quiet_since = None
            while time.monotonic() < deadline:
                r, _, _ = select.select([rfd], [], [], 0.1)
                b = os.read(rfd, 1 << 20) if r else b""
                if b:
                    got += b
                    quiet_since = None
                    continue
                if b'"event":"records_dropped"' in got and got.endswith(b"\n"):
                    quiet_since = quiet_since or time.monotonic()
                    if time.monotonic() - quiet_since > 1.0:
                        break
            lines = [json.loads(x, object_pairs_hook=_pairs) for x in bytes(got).split(b"\n")[:-1]]
            recs = [x for x in lines if "event" not in x]
            notes = [x for x in lines if "event" in x]
            for x in recs:
                check_shape(x)
            noted = sum(x["count"] for x in notes if x["event"] == "records_dropped")
            final = dropped()
            print("     read %d records; %d noted as dropped in the file; metric %d" % (len(recs), noted, final),
                  flush=True)
            check(notes, "no records_dropped note in the file")
            check_eq(list(notes[0].keys()), ["ts", "event", "count"], "keys of the note")
            check_eq(noted, final, "dropped records noted in the file vs ftpsgate_transfer_log_dropped")
            check_eq(len(recs) + noted, n_sent, "records read + records dropped vs transfers made")
            idx = [int(x["path"][-4:]) for x in recs]
            check_eq(idx, sorted(idx), "records in order")
        finally:
            # keep reading while it stops, so that its writer is never stuck at exit
            stop = threading.Event()

            def drain():
                while not stop.is_set():
                    r, _, _ = select.select([rfd], [], [], 0.1)
                    if r:
                        try:
                            if not os.read(rfd, 1 << 20):
                                time.sleep(0.05)
                        except OSError:
                            return
            th = threading.Thread(target=drain, daemon=True)
            th.start()
            rc = H.stop_process(p, signal.SIGTERM, 20)
            stop.set()
            th.join(5)
            os.close(rfd)
        check_eq(rc, 0, "exit status of the second ftpsgate after SIGTERM")
        text = open(log, errors="replace").read()
        reports = [x for x in text.splitlines() if any(pat in x for pat in H.SANITIZER_PATTERNS)]
        check(not reports, "sanitizer report: %s" % reports[:3])

    s.run("a writer that cannot keep up (a FIFO nobody reads): sessions go on, drops counted and "
          "noted, read + dropped = made", slow_writer)

    def cannot_open():
        H.needs_proxy()
        cases = [("a missing directory", os.path.join(env.tmp, "no-such-dir-%s" % os.urandom(3).hex(), "a.log"),
                  "No such file or directory"),
                 ("a directory", os.path.join(env.tmp, "auditdir"), "Is a directory")]
        for what, path, reason in cases:
            cfg, _ = second_config(path)
            p, cpath, log = start_second(cfg, "bad%d" % len(what))
            try:
                p.wait(timeout=30)
            except Exception:  # noqa: BLE001
                H.stop_process(p, signal.SIGKILL, 5)
                raise H.Fail("%s: ftpsgate still runs with transfer_log %s" % (what, path))
            text = open(log, errors="replace").read()
            check_eq(p.returncode, 1, "%s: exit status (output %r)" % (what, text.strip()[-300:]))
            check(path in text and "cannot open" in text and reason in text,
                  "%s: stderr %r does not name the path, 'cannot open' and the reason" % (what, text.strip()))
            want = "ftpsgate: log.transfer_log %s: cannot open: %s" % (path, reason)
            check(want in text, "%s: stderr %r, want the README's form %r -- proxy/main.c prints the prefix "
                  "'log.transfer_log: ' before auditlog's own 'log.transfer_log PATH: ...'"
                  % (what, text.strip(), want))
        cfg, _ = second_config("relative/audit.log")
        path = os.path.join(env.tmp, "second-rel.json")
        with open(path, "w") as fp:
            json.dump(cfg, fp)
        r = H.run_cmd([env.binary, "--check-config", "-c", path], timeout=30)
        check_eq(r.returncode, 1, "--check-config with a relative transfer_log")
        check("log.transfer_log" in r.stdout + r.stderr, "the error does not name log.transfer_log: %r"
              % (r.stdout + r.stderr).strip())

    s.run("a transfer_log that cannot be opened: exit 1, path and reason on stderr; relative path refused",
          cannot_open)


if __name__ == "__main__":
    H.main_wrapper("transfer_log", body, need_bytes=512 * H.MiB)
