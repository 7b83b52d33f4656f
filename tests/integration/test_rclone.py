#!/usr/bin/python3
"""policy.require_session_reuse "client" (issue 10, defect 10), with a real sync tool.

rclone (Debian's) syncs 300 files with 4 parallel transfers over explicit FTPS. Its Go TLS
client keeps one session cache for all its connections, so a data connection may offer the
TLS session another of its own control connections received:
  - under the default (true: this control connection's sessions only) the proxy refuses those
    data connections with 522 (as FileZilla Server does), and rclone reports failures;
  - under "client" (any control connection of the same address and login) every upload
    passes, each file with the right sha256 on the backend.
And "client" still refuses a session that another login received: a control connection logged
in as "ftp" cannot resume the session of one logged in as "anonymous" (both vsftpd's
anonymous user, two logins all the same), even from the same address.
"""
import hashlib
import os
import random
import shutil
import socket
import subprocess

import harness as H
from harness import check, check_code, check_eq

FILES = 300


def rclone(env, target, src, dst, log):
    obscured = subprocess.run(["rclone", "obscure", H.PASSWORD], capture_output=True, text=True,
                              timeout=30).stdout.strip()
    remote = (":ftp,host=%s,port=%d,user=%s,pass=%s,explicit_tls=true,no_check_certificate=true:%s"
              % (target.host, target.port, H.FTP_USER, obscured, dst))
    conf = os.path.join(env.tmp, "rclone.conf")
    open(conf, "w").close()
    argv = ["rclone", "--config", conf, "sync", src, remote, "--transfers", "4", "--checkers", "4",
            "--retries", "1", "--low-level-retries", "1", "--stats", "0", "-v", "--log-file", log]
    return subprocess.run(argv, capture_output=True, text=True, timeout=300)


def make_tree(path, n, seed):
    rnd = random.Random(seed)
    os.makedirs(path, exist_ok=True)
    shas = {}
    for i in range(n):
        data = rnd.randbytes(rnd.randint(1, 48 * H.KiB))
        name = "f%03d.bin" % i
        with open(os.path.join(path, name), "wb") as f:
            f.write(data)
        shas[name] = hashlib.sha256(data).hexdigest()
    return shas


def body(s, env):
    if H.SELFCHECK:
        s.run("rclone (tests ftpsgate itself)", H.needs_proxy)
        return
    if not shutil.which("rclone"):
        s.run("rclone is installed (tests/setup-deps.sh)", lambda: check(False, "rclone not found"))
        return
    vs = env.backend("vs1")
    strict = env.front(vs, "strict")
    client = env.front(vs, "client", policy={"require_session_reuse": "client"})
    env.start(strict, client)
    ctx = env.certs.client_context()

    def parallel_sync(target, dst, expect_ok):
        src = os.path.join(env.tmp, "src-" + dst)
        shas = make_tree(src, FILES, dst)
        mark = env.proxy.log_mark()
        log = os.path.join(env.tmp, "rclone-%s.log" % dst)
        r = rclone(env, target, src, "/up/" + dst, log)
        text = env.proxy.log_since(mark)
        refused = text.count("another connection's session")
        same_client = text.count("resumed a session of the same client")
        print("     (rclone exit %d; data connections refused as another connection's session: %d; "
              "resumed another control connection's session of the same client: %d)"
              % (r.returncode, refused, same_client))
        if not expect_ok:
            check(refused > 0, "no data connection was refused under the default (rclone exit %d)" % r.returncode)
            check(r.returncode != 0, "rclone reported success although %d uploads got 522" % refused)
            return
        check_eq(r.returncode, 0, "rclone exit status (its log: %s)" % H.tail_file(log, 5).replace("\n", " | "))
        check_eq(refused, 0, "data connections refused under \"client\"")
        check(same_client > 0, "no data connection resumed another control connection's session: the parallel "
              "case was not exercised")
        got = {}
        for name in shas:
            with open(os.path.join(vs.up, dst, name), "rb") as f:
                got[name] = hashlib.sha256(f.read()).hexdigest()
        check_eq(got, shas, "sha256 of the %d files on the backend" % FILES)

    s.run("rclone sync, 4 transfers, default rule: refused with 522 (another connection's session)",
          parallel_sync, strict, "strict", False)
    s.run("rclone sync, 4 transfers, require_session_reuse \"client\": %d files, sha256 each" % FILES,
          parallel_sync, client, "client", True)

    def other_login_refused():
        a = H.Ctl(client)
        a.auth_tls(ctx)
        a.login("anonymous")
        b = H.Ctl(client)
        b.auth_tls(ctx)
        b.login("ftp")
        check_code(b.cmd("PBSZ 0"), 200, "PBSZ")
        check_code(b.cmd("PROT P"), 200, "PROT P")
        addr = b.pasv()
        d = socket.create_connection(addr, timeout=20)
        b.send(b"LIST\r\n")
        try:
            d = ctx.wrap_socket(d, server_hostname=b.server_name, session=a.sock.session)
            how, _ = H.recv_until_closed(d, 10)
        except OSError as e:
            how = type(e).__name__
        d.close()
        code = b.reply(15)[0]
        if code < 200:
            code = b.reply(15)[0]
        check_eq(code, 522, "LIST over a data connection that resumed another login's session (%s)" % how)
        a.close()
        b.close()

    s.run("\"client\": a session another login received is still refused (522)", other_login_refused)


if __name__ == "__main__":
    H.main_wrapper("rclone", body, need_bytes=256 * H.MiB)
