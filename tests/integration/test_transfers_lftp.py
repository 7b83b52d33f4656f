#!/usr/bin/python3
"""lftp (GnuTLS) through ftpsgate: ftp:ssl-force, ftp:ssl-protect-data (PROT P),
ssl:verify-certificate against the test CA, passive with ftp:prefer-epsv on and off.

Downloads and uploads of 0 B, 1 B, 64 KiB+1, 10 MiB and 300 MiB with EPSV,
some sizes again with PASV, and a directory listing. sha256 on both ends; lftp's
debug trace shows which passive command was really used and that PROT P was.
"""

import os
import re
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import harness as H  # noqa: E402
from harness import check, check_eq  # noqa: E402


def trace_checks(tgt, trace, epsv, what):
    if tgt.tls:
        check(re.search(r"---> AUTH TLS", trace), "%s: lftp did not send AUTH TLS" % what)
        check(re.search(r"---> PROT P", trace), "%s: lftp did not send PROT P" % what)
    if epsv:
        check(re.search(r"---> EPSV", trace) and re.search(r"<--- 229", trace),
              "%s: lftp did not use EPSV (no '---> EPSV' / '<--- 229' in its trace)" % what)
    else:
        check(re.search(r"---> PASV", trace) and re.search(r"<--- 227", trace),
              "%s: lftp did not use PASV (no '---> PASV' / '<--- 227' in its trace)" % what)
        check(not re.search(r"---> EPSV", trace), "%s: lftp sent EPSV with ftp:prefer-epsv false" % what)
    check(re.search(r"<--- 226", trace), "%s: no 226 in lftp's trace" % what)


def body(s, env):
    vs = env.backend("vs1")
    tgt = env.front(vs, "explicit1", protection="private")
    files = H.publish_sizes(vs, "lftp")
    env.start(tgt)
    cdir = env.client_dir

    def download(size, epsv):
        rpath, local, sha = files[size]
        out = os.path.join(cdir, "dl-%d-%s" % (size, epsv))
        r, trace = H.lftp(tgt, ["get %s -o %s" % (rpath, out)], cdir, epsv=epsv)
        check_eq(r.returncode, 0, "lftp exit status (stderr: %s)" % r.stderr[-400:])
        trace_checks(tgt, trace, epsv, "download")
        check(os.path.exists(out), "lftp wrote no output file")
        got_size, got_sha = os.path.getsize(out), H.sha256_file(out)
        os.unlink(out)
        check_eq(got_size, size, "downloaded size")
        check_eq(got_sha, sha, "sha256 of the downloaded file")

    def upload(size, epsv):
        rpath, local, sha = files[size]
        name = "lftp-up-%d-%s.bin" % (size, "epsv" if epsv else "pasv")
        r, trace = H.lftp(tgt, ["put %s -o /up/%s" % (local, name)], cdir, epsv=epsv)
        check_eq(r.returncode, 0, "lftp exit status (stderr: %s)" % r.stderr[-400:])
        trace_checks(tgt, trace, epsv, "upload")
        H.check_stored(vs, name, size, sha, "upload")

    for size in H.SIZES:
        s.run("download %s EPSV" % H.human(size), download, size, True)
    for size in H.SIZES:
        s.run("upload %s EPSV" % H.human(size), upload, size, True)
    for size in (1, 64 * H.KiB + 1, 10 * H.MiB):
        s.run("download %s PASV (prefer-epsv off)" % H.human(size), download, size, False)
        s.run("upload %s PASV (prefer-epsv off)" % H.human(size), upload, size, False)

    def listing():
        out = os.path.join(cdir, "nlist.txt")
        r, trace = H.lftp(tgt, ["cls -1 /pub/ > %s" % out], cdir)
        check_eq(r.returncode, 0, "lftp exit status (stderr: %s)" % r.stderr[-400:])
        with open(out) as f:
            got = sorted(os.path.basename(ln.strip().rstrip("/")) for ln in f if ln.strip())
        check_eq(got, sorted(os.listdir(vs.pub)), "names listed by lftp vs the backend's /pub")

    s.run("directory listing of /pub", listing)


if __name__ == "__main__":
    H.main_wrapper("transfers_lftp", body)
