#!/usr/bin/python3
"""Python ftplib FTP_TLS through ftpsgate: AUTH TLS, login, PROT P, passive.

Downloads and uploads of 0 B, 1 B, 64 KiB+1, 10 MiB and 300 MiB over PASV,
some again over EPSV; REST + RETR resume (the tail), STOR + APPE, SIZE + REST + STOR
(a resumed upload), LIST, NLST,
MLSD (vsftpd has none: its error must be relayed and the session go on), many
transfers in one session. sha256 on both ends; the 227/229 replies must announce
the control connection's local address and a port of the listener's range.
"""

import os
import re
import threading
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import harness as H  # noqa: E402
from harness import check, check_eq  # noqa: E402


def body(s, env):
    vs = env.backend("vs1")
    tgt = env.front(vs, "explicit1", protection="private")
    files = H.publish_sizes(vs, "ftplib")
    env.start(tgt)

    def check_pasv_reply(f):
        resp, host, port = f.last_pasv
        if f.use_epsv:
            check(resp.startswith("229"), "EPSV reply %r" % resp)
        else:
            check(resp.startswith("227"), "PASV reply %r" % resp)
            # passive.announce defaults to the local address of the client's control connection.
            check_eq(host, f.sock.getpeername()[0], "address announced in the 227 reply")
        rng = tgt.pasv_range
        if rng is not None:
            check(rng[0] <= port <= rng[1], "announced port %d outside passive.ports %d-%d" % (port, rng[0], rng[1]))

    def download(size, epsv):
        rpath, local, sha = files[size]
        f = H.ftplib_connect(tgt, epsv=epsv)
        try:
            n, got, resp = H.ftplib_get(f, rpath)
            check_pasv_reply(f)
            check(resp.startswith("226"), "final reply %r" % resp)
            check_eq(n, size, "downloaded size")
            check_eq(got, sha, "sha256 of the downloaded bytes")
        finally:
            H.quit_quietly(f)

    def upload(size, epsv):
        rpath, local, sha = files[size]
        name = "ftplib-up-%d-%s.bin" % (size, "epsv" if epsv else "pasv")
        f = H.ftplib_connect(tgt, epsv=epsv)
        try:
            resp = H.ftplib_put(f, local, "/up/" + name)
            check_pasv_reply(f)
            check(resp.startswith("226"), "final reply %r" % resp)
        finally:
            H.quit_quietly(f)
        H.check_stored(vs, name, size, sha, "upload")

    for size in H.SIZES:
        s.run("download %s PASV" % H.human(size), download, size, False)
    for size in H.SIZES:
        s.run("upload %s PASV" % H.human(size), upload, size, False)
    for size in (0, 64 * H.KiB + 1, 10 * H.MiB):
        s.run("download %s EPSV" % H.human(size), download, size, True)
        s.run("upload %s EPSV" % H.human(size), upload, size, True)

    def resume(size, offset):
        rpath, local, sha = files[size]
        want = H.sha256_file(local, offset)
        f = H.ftplib_connect(tgt)
        try:
            n, got, resp = H.ftplib_get(f, rpath, rest=offset)
            check(resp.startswith("226"), "final reply %r" % resp)
            check_eq(n, size - offset, "bytes after REST %d" % offset)
            check_eq(got, want, "sha256 of the tail after REST %d" % offset)
        finally:
            H.quit_quietly(f)

    s.run("REST 1234567 + RETR 10MiB gives the tail", resume, 10 * H.MiB, 1234567)
    s.run("REST 65536 + RETR 65537B gives the last byte", resume, 64 * H.KiB + 1, 64 * H.KiB)

    def append():
        rpath, local, sha = files[10 * H.MiB]
        cut = 3 * H.MiB + 5
        name = "ftplib-appe.bin"
        f = H.ftplib_connect(tgt)
        try:
            r1 = H.ftplib_put(f, local, "/up/" + name, "STOR", 0, cut)
            check(r1.startswith("226"), "STOR reply %r" % r1)
            check_eq(os.path.getsize(vs.up_path(name)), cut, "stored size after the first part")
            r2 = H.ftplib_put(f, local, "/up/" + name, "APPE", cut, 10 * H.MiB - cut)
            check(r2.startswith("226"), "APPE reply %r" % r2)
        finally:
            H.quit_quietly(f)
        H.check_stored(vs, name, 10 * H.MiB, sha, "STOR + APPE")

    s.run("STOR first 3MiB+5 then APPE the rest", append)

    def resume_upload():
        """An interrupted upload resumed the RFC 3659 way: SIZE, then REST n + STOR of the rest."""
        rpath, local, sha = files[10 * H.MiB]
        cut = 4 * H.MiB + 3
        name = "ftplib-rest-stor.bin"
        f = H.ftplib_connect(tgt)
        try:
            r1 = H.ftplib_put(f, local, "/up/" + name, "STOR", 0, cut)
            check(r1.startswith("226"), "STOR reply %r" % r1)
            f.voidcmd("TYPE I")
            check_eq(f.size("/up/" + name), cut, "SIZE of the partial upload")
            with open(local, "rb") as fp:
                fp.seek(cut)
                r2 = f.storbinary("STOR /up/" + name, fp, blocksize=256 * H.KiB, rest=cut)
            check(r2.startswith("226"), "REST + STOR reply %r" % r2)
        finally:
            H.quit_quietly(f)
        H.check_stored(vs, name, 10 * H.MiB, sha, "STOR + REST/STOR resume")

    s.run("upload resumed: STOR 4MiB+3, SIZE, REST 4MiB+3 + STOR the rest", resume_upload)

    def store_unique():
        """STOU: the server picks the name and announces it in its 150 reply ("FILE: name")."""
        rpath, local, sha = files[64 * H.KiB + 1]
        f = H.ftplib_connect(tgt)
        try:
            f.cwd("/up")
            f.voidcmd("TYPE I")
            replies = []
            getresp = f.getresp

            def keep_replies():  # ntransfercmd does not return the 150 text
                replies.append(getresp())
                return replies[-1]
            f.getresp = keep_replies
            conn, _ = f.ntransfercmd("STOU")
            with open(local, "rb") as fp:
                conn.sendall(fp.read())
            conn.unwrap()
            conn.close()
            final = f.voidresp()
            resp = next((r for r in replies if r.startswith("150")), "%r" % replies)
            m = re.search(r"FILE:\s*(\S+)", resp)
            check(resp.startswith("150") and m, "STOU preliminary reply %r" % resp)
            check(final.startswith("226"), "STOU final reply %r" % final)
        finally:
            H.quit_quietly(f)
        H.check_stored(vs, os.path.basename(m.group(1)), 64 * H.KiB + 1, sha, "STOU upload")

    s.run("STOU: the server's unique name from the 150 reply, file intact (sha256)", store_unique)

    def listing():
        f = H.ftplib_connect(tgt)
        try:
            lines = []
            resp = f.retrlines("LIST /pub", lines.append)
            check(resp.startswith("226"), "LIST final reply %r" % resp)
            got = sorted(ln.split()[-1] for ln in lines if ln.strip())
            check_eq(got, sorted(os.listdir(vs.pub)), "names in LIST /pub")
            for size in H.SIZES:
                name = os.path.basename(files[size][0])
                ln = [x for x in lines if x.split()[-1] == name][0]
                check(re.search(r"\s%d\s" % size, ln), "size %d not in LIST line %r" % (size, ln))
            names = f.nlst("/pub")
            check_eq(sorted(os.path.basename(n) for n in names), sorted(os.listdir(vs.pub)), "names in NLST /pub")
        finally:
            H.quit_quietly(f)

    s.run("LIST and NLST /pub", listing)

    def mlsd():
        f = H.ftplib_connect(tgt)
        try:
            mark = vs.log_mark()
            try:
                list(f.mlsd("/pub"))
                raise H.Fail("MLSD succeeded, but vsftpd 3.0.3 has no MLSD")
            except H.ftplib.error_perm as e:
                got = str(e)
            # The reply must be the backend's own, relayed.
            seen = H.wait_until(lambda: [r for _, r in vs.responses_since(mark) if r[:1] == "5"], 10)
            check(seen, "the backend never answered MLSD with an error (did it see the command?)")
            check_eq(got.strip(), seen[-1].strip(), "error reply for MLSD vs the backend's reply")
            check(any(c.startswith("MLSD") for _, c in vs.commands_since(mark)), "MLSD never reached the backend")
            check_eq(f.voidcmd("NOOP")[:3], "200", "NOOP after the failed MLSD")
            rpath, local, sha = files[64 * H.KiB + 1]
            n, got_sha, resp = H.ftplib_get(f, rpath)
            check_eq((n, got_sha), (64 * H.KiB + 1, sha), "RETR after the failed MLSD (size, sha256)")
        finally:
            H.quit_quietly(f)

    s.run("MLSD: backend's 500 relayed, session goes on", mlsd)

    def many():
        rpath, local, sha = files[64 * H.KiB + 1]
        f = H.ftplib_connect(tgt)
        try:
            for i in range(20):
                f.use_epsv = bool(i % 2)
                if i % 4 == 3:
                    name = "ftplib-many-%d.bin" % i
                    H.ftplib_put(f, local, "/up/" + name)
                    H.check_stored(vs, name, 64 * H.KiB + 1, sha, "upload %d in the session" % i)
                else:
                    n, got, resp = H.ftplib_get(f, rpath)
                    check_eq((n, got), (64 * H.KiB + 1, sha), "transfer %d in the session (size, sha256)" % i)
        finally:
            H.quit_quietly(f)

    s.run("20 transfers in one session, PASV and EPSV alternating", many)

    def concurrent(n):
        # n sessions at once on the proxy's one event loop: each downloads and
        # uploads 10 MiB; nothing may cross between sessions or data links.
        rpath, local, sha = files[10 * H.MiB]
        errors = []

        def worker(i):
            try:
                f = H.ftplib_connect(tgt, epsv=bool(i % 2))
                try:
                    got = H.ftplib_get(f, rpath)
                    if got[:2] != (10 * H.MiB, sha):
                        errors.append("session %d: download size/sha256 %r" % (i, got[:2]))
                    H.ftplib_put(f, local, "/up/ftplib-conc-%d.bin" % i)
                finally:
                    H.quit_quietly(f)
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append("session %d: %s: %s" % (i, type(e).__name__, e))

        threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
        check(not any(t.is_alive() for t in threads), "sessions still running after 300 s")
        check(not errors, "; ".join(errors[:4]))
        for i in range(n):
            H.check_stored(vs, "ftplib-conc-%d.bin" % i, 10 * H.MiB, sha, "upload of session %d" % i)

    s.run("8 concurrent sessions, each 10MiB down and up", concurrent, 8)


if __name__ == "__main__":
    H.main_wrapper("transfers_ftplib", body)
