#!/usr/bin/python3
"""Implicit FTPS (MS-FTPS §3.2.5) through ftpsgate with three real clients (issue 4).

  curl   ftps://   (--cacert; PBSZ 0 + PROT P, no AUTH)
  lftp   ftps://   (ssl:ca-file, ftp:ssl-protect-data true)
  ftplib harness.ImplicitFTPS: TLS before the greeting, data TLS resuming the
         control session (require_session_reuse is on, the default)

Downloads and uploads of 0 B, 1 B, 64 KiB+1, 10 MiB and 48 MiB with sha256 on both
ends, PASV and EPSV, REST (curl -r, lftp get -c, ftplib rest=), STOR + APPE,
LIST/NLST, MLSD (vsftpd has none: its 500 is relayed and the session goes on; a
real MLSD through a pyftpdlib backend), ftplib over TLS 1.2 as well as 1.3.

Listeners: imp (implicit, private) -> vsftpd; pyimp (implicit) -> pyftpdlib.
"""

import os
import re
import ssl
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import harness as H  # noqa: E402
from harness import check, check_eq  # noqa: E402

SIZES = [0, 1, 64 * H.KiB + 1, 10 * H.MiB, 48 * H.MiB]


def lines_of(trace, prefix):
    return [ln for ln in trace.splitlines() if ln.startswith(prefix)]


def body(s, env):
    if H.SELFCHECK:
        s.run("implicit FTPS (tests ftpsgate itself)", H.needs_proxy)
        return
    vs = env.backend("vs1")
    imp = env.front(vs, "imp", mode="implicit")
    py = env.pyftpd("py1") if H.Pyftpd.available() else None
    pyimp = env.front(py, "pyimp", mode="implicit") if py else None
    files = {}
    for n in SIZES:
        name = "impl-%d.bin" % n
        files[n] = ("/pub/" + name, vs.pub_path(name), vs.add_pub(name, n))
    env.start(*[t for t in (imp, pyimp) if t is not None])
    cdir = env.client_dir

    # ---- curl ------------------------------------------------------------------------

    def curl_trace_checks(trace, what):
        check(not lines_of(trace, "> AUTH"), "%s: curl sent AUTH on an implicit connection" % what)
        check(re.search(r"^> PROT P", trace, re.M), "%s: curl did not send PROT P" % what)
        check(re.search(r"^< 226", trace, re.M), "%s: no 226 in curl's trace" % what)

    def curl_download(size, epsv=True):
        rpath, local, sha = files[size]
        out = os.path.join(cdir, "curl-dl-%d" % size)
        r, trace = H.curl(imp, ["-o", out, imp.url(rpath)], epsv=epsv, timeout=300)
        check(imp.url(rpath).startswith("ftps://"), "the URL is not ftps://")
        check_eq(r.returncode, 0, "curl exit status (stderr tail: %s)" % r.stderr[-400:])
        curl_trace_checks(trace, "download")
        H.check_pasv_trace(trace, epsv, "download")
        if size == 0 and not os.path.exists(out):
            got = (0, H.sha256_bytes(b""))  # curl 7.88 creates no file for 0 bytes
        else:
            got = (os.path.getsize(out), H.sha256_file(out))
            os.unlink(out)
        check_eq(got, (size, sha), "curl download (size, sha256)")

    def curl_upload(size, epsv=True):
        rpath, local, sha = files[size]
        name = "curl-up-%d-%s.bin" % (size, "epsv" if epsv else "pasv")
        r, trace = H.curl(imp, ["-T", local, imp.url("/up/" + name)], epsv=epsv, timeout=300)
        check_eq(r.returncode, 0, "curl exit status (stderr tail: %s)" % r.stderr[-400:])
        curl_trace_checks(trace, "upload")
        H.check_stored(vs, name, size, sha, "curl upload")

    for n in SIZES:
        s.run("curl ftps:// download %s (EPSV)" % H.human(n), curl_download, n)
    for n in SIZES:
        s.run("curl ftps:// upload %s (EPSV)" % H.human(n), curl_upload, n)
    s.run("curl ftps:// download 10MiB (PASV)", curl_download, 10 * H.MiB, False)
    s.run("curl ftps:// upload 64KiB+1 (PASV)", curl_upload, 64 * H.KiB + 1, False)

    def curl_rest():
        rpath, local, _ = files[10 * H.MiB]
        out = os.path.join(cdir, "curl-rest")
        r, trace = H.curl(imp, ["-o", out, "-r", "1234567-", imp.url(rpath)])
        check_eq(r.returncode, 0, "curl exit status (stderr tail: %s)" % r.stderr[-400:])
        check(re.search(r"^> REST 1234567", trace, re.M), "curl did not send REST 1234567")
        check_eq((os.path.getsize(out), H.sha256_file(out)),
                 (10 * H.MiB - 1234567, H.sha256_file(local, 1234567)), "the tail after REST (size, sha256)")
        os.unlink(out)

    s.run("curl ftps:// REST 1234567 + RETR gives the tail (sha256)", curl_rest)

    def curl_list():
        r, trace = H.curl(imp, [imp.url("/pub/")])
        check_eq(r.returncode, 0, "curl exit status (stderr tail: %s)" % r.stderr[-400:])
        check(re.search(r"^> LIST", trace, re.M), "curl did not send LIST")
        got = sorted(ln.split()[-1] for ln in r.stdout.splitlines() if ln.strip())
        check_eq(got, sorted(os.listdir(vs.pub)), "names in curl's LIST of /pub")

    s.run("curl ftps:// LIST /pub/", curl_list)

    # ---- lftp ------------------------------------------------------------------------

    def lftp_trace_checks(trace, what):
        # ftps://: GnuTLS is set up ("Loaded N CAs") before the greeting arrives, no AUTH.
        tls_at = re.search(r"Loaded \d+ CAs", trace)
        greet_at = re.search(r"<--- 220", trace)
        check(tls_at and greet_at and tls_at.start() < greet_at.start(),
              "%s: lftp did not start TLS before the greeting (not implicit?)" % what)
        check(not re.search(r"---> AUTH", trace), "%s: lftp sent AUTH on an implicit connection" % what)
        check(re.search(r"---> PROT P", trace), "%s: lftp did not send PROT P" % what)
        check(re.search(r"<--- 226", trace), "%s: no 226 in lftp's trace" % what)

    def lftp_download(size):
        rpath, local, sha = files[size]
        out = os.path.join(cdir, "lftp-dl-%d" % size)
        r, trace = H.lftp(imp, ["get %s -o %s" % (rpath, out)], cdir, timeout=300)
        check_eq(r.returncode, 0, "lftp exit status (stderr: %s)" % r.stderr[-400:])
        lftp_trace_checks(trace, "download")
        check(os.path.exists(out), "lftp wrote no output file")
        got = (os.path.getsize(out), H.sha256_file(out))
        os.unlink(out)
        check_eq(got, (size, sha), "lftp download (size, sha256)")

    def lftp_upload(size):
        rpath, local, sha = files[size]
        name = "lftp-up-%d.bin" % size
        r, trace = H.lftp(imp, ["put %s -o /up/%s" % (local, name)], cdir, timeout=300)
        check_eq(r.returncode, 0, "lftp exit status (stderr: %s)" % r.stderr[-400:])
        lftp_trace_checks(trace, "upload")
        H.check_stored(vs, name, size, sha, "lftp upload")

    for n in SIZES:
        s.run("lftp ftps:// download %s" % H.human(n), lftp_download, n)
    for n in SIZES:
        s.run("lftp ftps:// upload %s" % H.human(n), lftp_upload, n)

    def lftp_resume():
        rpath, local, sha = files[10 * H.MiB]
        out = os.path.join(cdir, "lftp-resume")
        cut = 3 * H.MiB + 11
        with open(local, "rb") as src, open(out, "wb") as dst:
            dst.write(src.read(cut))
        r, trace = H.lftp(imp, ["get -c %s -o %s" % (rpath, out)], cdir)
        check_eq(r.returncode, 0, "lftp exit status (stderr: %s)" % r.stderr[-400:])
        check(re.search(r"---> REST %d" % cut, trace), "lftp did not send REST %d" % cut)
        got = (os.path.getsize(out), H.sha256_file(out))
        os.unlink(out)
        check_eq(got, (10 * H.MiB, sha), "file after lftp get -c (size, sha256)")

    s.run("lftp ftps:// get -c resumes with REST (sha256)", lftp_resume)

    def lftp_list():
        out = os.path.join(cdir, "lftp-list.txt")
        r, trace = H.lftp(imp, ["cls -1 /pub/ > %s" % out], cdir)
        check_eq(r.returncode, 0, "lftp exit status (stderr: %s)" % r.stderr[-400:])
        with open(out) as f:
            got = sorted(os.path.basename(ln.strip().rstrip("/")) for ln in f if ln.strip())
        check_eq(got, sorted(os.listdir(vs.pub)), "names listed by lftp")

    s.run("lftp ftps:// directory listing of /pub", lftp_list)

    # ---- ftplib ------------------------------------------------------------------------

    def connect(tgt=imp, tls12=False, epsv=False):
        ctx = ssl.create_default_context(cafile=tgt.ca)
        if tls12:
            ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        f = H.ftplib_connect(tgt, epsv=epsv, ctx=ctx)
        check(isinstance(f, H.ImplicitFTPS), "not the implicit client")
        check(f.welcome.startswith("220"), "greeting %r" % f.welcome)
        check_eq(f.sock.version(), "TLSv1.2" if tls12 else "TLSv1.3", "control TLS version")
        return f

    def ftplib_download(size, epsv):
        rpath, local, sha = files[size]
        f = connect(epsv=epsv)
        try:
            n, got, resp = H.ftplib_get(f, rpath)
            check(resp.startswith("226"), "final reply %r" % resp)
            check(f.last_pasv[0].startswith("229" if epsv else "227"), "passive reply %r" % (f.last_pasv[0],))
        finally:
            H.quit_quietly(f)
        check_eq((n, got), (size, sha), "ftplib download (size, sha256)")

    def ftplib_upload(size, epsv):
        rpath, local, sha = files[size]
        name = "ftplib-up-%d-%s.bin" % (size, "epsv" if epsv else "pasv")
        f = connect(epsv=epsv)
        try:
            resp = H.ftplib_put(f, local, "/up/" + name)
            check(resp.startswith("226"), "final reply %r" % resp)
        finally:
            H.quit_quietly(f)
        H.check_stored(vs, name, size, sha, "ftplib upload")

    for n in SIZES:
        s.run("ftplib implicit download %s PASV" % H.human(n), ftplib_download, n, False)
        s.run("ftplib implicit upload %s PASV" % H.human(n), ftplib_upload, n, False)
    s.run("ftplib implicit download 10MiB EPSV", ftplib_download, 10 * H.MiB, True)
    s.run("ftplib implicit upload 10MiB EPSV", ftplib_upload, 10 * H.MiB, True)

    def ftplib_tls12():
        rpath, local, sha = files[10 * H.MiB]
        f = connect(tls12=True)
        try:
            check_eq(H.ftplib_get(f, rpath)[:2], (10 * H.MiB, sha), "download over TLS 1.2 (size, sha256)")
            H.ftplib_put(f, local, "/up/ftplib-tls12.bin")
        finally:
            H.quit_quietly(f)
        H.check_stored(vs, "ftplib-tls12.bin", 10 * H.MiB, sha, "upload over TLS 1.2")

    s.run("ftplib implicit over TLS 1.2: download + upload 10MiB (sha256)", ftplib_tls12)

    def ftplib_rest():
        rpath, local, sha = files[10 * H.MiB]
        f = connect()
        try:
            for off in (1, 1234567, 10 * H.MiB - 1):
                n, got, resp = H.ftplib_get(f, rpath, rest=off)
                check(resp.startswith("226"), "final reply %r" % resp)
                check_eq((n, got), (10 * H.MiB - off, H.sha256_file(local, off)), "tail after REST %d" % off)
        finally:
            H.quit_quietly(f)

    s.run("ftplib implicit REST + RETR (3 offsets, sha256)", ftplib_rest)

    def ftplib_appe():
        rpath, local, sha = files[10 * H.MiB]
        cut = 4 * H.MiB + 3
        f = connect()
        try:
            H.ftplib_put(f, local, "/up/ftplib-appe.bin", "STOR", 0, cut)
            H.ftplib_put(f, local, "/up/ftplib-appe.bin", "APPE", cut, 10 * H.MiB - cut)
        finally:
            H.quit_quietly(f)
        H.check_stored(vs, "ftplib-appe.bin", 10 * H.MiB, sha, "STOR + APPE")

    s.run("ftplib implicit STOR + APPE (sha256)", ftplib_appe)

    def ftplib_listings():
        f = connect()
        try:
            lines = []
            resp = f.retrlines("LIST /pub", lines.append)
            check(resp.startswith("226"), "LIST final reply %r" % resp)
            check_eq(sorted(ln.split()[-1] for ln in lines if ln.strip()), sorted(os.listdir(vs.pub)), "LIST names")
            check_eq(sorted(os.path.basename(x) for x in f.nlst("/pub")), sorted(os.listdir(vs.pub)), "NLST names")
            try:
                list(f.mlsd("/pub"))
                raise H.Fail("vsftpd has no MLSD, yet it succeeded")
            except H.ftplib.error_perm as e:
                check(str(e).startswith("500") or str(e).startswith("502"), "MLSD error relayed: %s" % e)
            check(f.voidcmd("NOOP").startswith("200"), "NOOP after the MLSD error")
            n, got, _ = H.ftplib_get(f, files[64 * H.KiB + 1][0])
            check_eq((n, got), (64 * H.KiB + 1, files[64 * H.KiB + 1][2]), "download after the MLSD error")
        finally:
            H.quit_quietly(f)

    s.run("ftplib implicit LIST/NLST; MLSD error from vsftpd relayed, the session goes on", ftplib_listings)

    def ftplib_mlsd_real():
        if pyimp is None:
            raise H.Skip("pyftpdlib (python3-pyftpdlib) is not installed; run tests/setup-deps.sh")
        sha = py.add_pub("mlsd.bin", 123457)
        f = connect(pyimp)
        try:
            facts = dict(f.mlsd("/pub", ["type", "size"]))
            check("mlsd.bin" in facts, "MLSD lacks mlsd.bin: %r" % facts)
            check_eq(facts["mlsd.bin"].get("size"), "123457", "MLSD size fact")
            f.voidcmd("TYPE I")
            check_eq(H.ftplib_get(f, "/pub/mlsd.bin")[:2], (123457, sha), "download from pyftpdlib")
        finally:
            H.quit_quietly(f)

    s.run("ftplib implicit MLSD through a backend that has it (pyftpdlib)", ftplib_mlsd_real)


if __name__ == "__main__":
    H.main_wrapper("implicit", body, need_bytes=1024 * H.MiB)
