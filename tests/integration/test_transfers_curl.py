#!/usr/bin/python3
"""curl through ftpsgate: explicit FTPS (--ssl-reqd, the test CA), PROT P, passive.

Downloads and uploads of 0 B, 1 B, 64 KiB+1, 10 MiB and 300 MiB with EPSV
(curl's default), some sizes again with PASV (--disable-epsv), and a LIST.
Every transfer is checked with sha256 on both ends; curl's own trace shows
that EPSV or PASV was really used (curl silently falls back from EPSV to PASV).
"""

import os
import re
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import harness as H  # noqa: E402
from harness import check, check_eq  # noqa: E402


def body(s, env):
    vs = env.backend("vs1")
    tgt = env.front(vs, "explicit1", protection="private")
    files = H.publish_sizes(vs, "curl")
    env.start(tgt)
    cdir = env.client_dir

    def download(size, epsv):
        rpath, local, sha = files[size]
        out = os.path.join(cdir, "dl-%d-%s" % (size, epsv))
        r, trace = H.curl(tgt, ["-o", out, tgt.url(rpath)], epsv=epsv)
        check_eq(r.returncode, 0, "curl exit status (stderr tail: %s)" % r.stderr[-400:])
        if tgt.tls:
            check(re.search(r"^> PROT P", trace, re.M) and re.search(r"^< 200", trace, re.M),
                  "curl did not get PROT P accepted")
        H.check_pasv_trace(trace, epsv, "download")
        check(re.search(r"^< 226", trace, re.M), "no 226 in curl's trace")
        if size == 0 and not os.path.exists(out):
            # curl 7.88 does not create the output file when no byte arrived; the
            # trace's 226 and the exit status are what tell the transfer finished.
            got_size, got_sha = 0, H.sha256_bytes(b"")
        else:
            got_size, got_sha = os.path.getsize(out), H.sha256_file(out)
            os.unlink(out)
        check_eq(got_size, size, "downloaded size")
        check_eq(got_sha, sha, "sha256 of the downloaded file")

    def upload(size, epsv):
        rpath, local, sha = files[size]
        name = "curl-up-%d-%s.bin" % (size, "epsv" if epsv else "pasv")
        r, trace = H.curl(tgt, ["-T", local, tgt.url("/up/" + name)], epsv=epsv)
        check_eq(r.returncode, 0, "curl exit status (stderr tail: %s)" % r.stderr[-400:])
        H.check_pasv_trace(trace, epsv, "upload")
        check(re.search(r"^< 226", trace, re.M), "no 226 in curl's trace")
        H.check_stored(vs, name, size, sha, "upload")

    for size in H.SIZES:
        s.run("download %s EPSV" % H.human(size), download, size, True)
    for size in H.SIZES:
        s.run("upload %s EPSV" % H.human(size), upload, size, True)
    for size in (1, 64 * H.KiB + 1, 10 * H.MiB):
        s.run("download %s PASV (--disable-epsv)" % H.human(size), download, size, False)
        s.run("upload %s PASV (--disable-epsv)" % H.human(size), upload, size, False)

    def listing():
        r, trace = H.curl(tgt, [tgt.url("/pub/")])
        check_eq(r.returncode, 0, "curl exit status (stderr tail: %s)" % r.stderr[-400:])
        check(re.search(r"^> LIST", trace, re.M), "curl did not send LIST")
        for size in H.SIZES:
            name = os.path.basename(files[size][0])
            check(re.search(r"\s%s$" % re.escape(name), r.stdout, re.M), "%s missing from LIST output" % name)
        want = sorted(os.listdir(vs.pub))
        got = sorted(ln.split()[-1] for ln in r.stdout.splitlines() if ln.strip())
        check_eq(got, want, "names in the LIST output vs the backend's /pub")

    s.run("LIST /pub/", listing)


if __name__ == "__main__":
    H.main_wrapper("transfers_curl", body)
