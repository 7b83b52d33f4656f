#!/usr/bin/python3
"""The data-channel topology matrix (issue 5, DESIGN.md §3).

client PASV / EPSV / PORT / EPRT  x  backend.data_mode passive / active  x  PROT P / C
(policy data_protection "any"), over four real backends started on loopback:
vsftpd, pure-ftpd, proftpd and pyftpdlib (see backends.py). Each cell is one
session that downloads a 1 MiB + 1 file (sha256 checked) and uploads another
(sha256 of the stored file checked on the backend). Clients:
  PASV, EPSV  curl, one process per transfer (--disable-epsv for PASV; its trace
              shows which one went out)
  PORT        lftp with ftp:passive-mode off (lftp sends PORT on IPv4)
  EPRT        Python ftplib (EPRT |1| forced over IPv4), data TLS resuming the control session
(curl 7.88's active FTPS is broken upstream, so no curl in active mode.)
Where the backend keeps a command log (all but pure-ftpd), the cell also checks
that the backend saw PASV/EPSV for backend mode passive and PORT/EPRT for active,
and nothing of the other kind. The same cases run against every backend: the
proxy gets no hint which server it talks to. Then backend.data_mode "client"
(mirror the client: passive toward the backend for PASV/EPSV, active for PORT/EPRT)
over the same four backends, every client mode and PROT; the backend's log shows
which mode it saw.

The file ends by printing the matrix as a Markdown table (rows: client mode x
backend mode, columns: backends; a cell covers PROT P and PROT C).
"""

import os
import re
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import harness as H  # noqa: E402
import backends as B  # noqa: E402
from harness import check, check_eq  # noqa: E402

SIZE = H.MiB + 1
CLIENT_MODES = ("PASV", "EPSV", "PORT", "EPRT")
BACKEND_MODES = ("passive", "active")
PROTS = ("P", "C")
PASSIVE_VERBS = ("PASV", "EPSV")
ACTIVE_VERBS = ("PORT", "EPRT")


def body(s, env):
    if H.SELFCHECK:
        s.run("topology matrix", lambda: H.needs_proxy())
        return
    results = {}  # (client mode, backend mode, kind, prot) -> True/False/None
    backends = {}
    for kind in B.KINDS:
        try:
            backends[kind] = B.start_backend(env, kind)
        except Exception as e:  # noqa: BLE001 - a backend that cannot start fails its column
            s.fail_setup("start %s" % kind, e)
    pub_sha = {k: b.add_pub("m.bin", SIZE) for k, b in backends.items()}
    up_local = os.path.join(env.client_dir, "up.bin")
    up_sha = H.make_file(up_local, SIZE)

    targets = {}
    for kind, b in backends.items():
        for bmode in BACKEND_MODES + ("client",):
            t = env.front(b, "%s-%s" % (kind.replace("-", ""), bmode), protection="any")
            t.listener["backend"]["data_mode"] = bmode
            targets[(kind, bmode)] = t
    env.start(*targets.values())

    def cell(kind, cmode, bmode, prot):
        b, t = backends[kind], targets[(kind, bmode)]
        tag = "%s-%s-%s-%s" % (kind, cmode, bmode, prot)
        rname = "u-%s.bin" % tag
        local_get = os.path.join(env.client_dir, "g-%s.bin" % tag)
        mark = b.log_mark()
        if cmode in ("PASV", "EPSV"):
            # One curl process per transfer (see curl_two_transfers_one_session below).
            epsv = cmode == "EPSV"
            trace = ""
            for what, args in (("download", ["-o", local_get, B.url(t.host, t.port, "/pub/m.bin")]),
                               ("upload", ["-T", up_local, B.url(t.host, t.port, "/up/" + rname)])):
                r, tr = B.curl_run(t.host, t.port, t.ca, b.user, b.password, args, epsv=epsv, prot=prot)
                check_eq(r.returncode, 0, "curl %s exit status (%s)" % (what, B.tail(r.stderr)))
                H.check_pasv_trace(tr, epsv, "curl " + what)
                check(re.search(r"^< 226", tr, re.M), "curl %s: no 226 in its trace" % what)
                trace += tr
        elif cmode == "PORT":
            r, trace = B.lftp_run(t.host, t.port, t.ca, b.user, b.password,
                                  ["get /pub/m.bin -o %s" % local_get, "put %s -o /up/%s" % (up_local, rname)],
                                  env.client_dir, passive=False, prot=prot)
            check_eq(r.returncode, 0, "lftp exit status (%s)" % B.tail(r.stderr + r.stdout))
            check(B.trace_sent(trace, "PORT"), "lftp did not send PORT")
        else:
            f = B.ftps_connect(t.host, t.port, t.ca, b.user, b.password, mode=cmode, prot=prot)
            try:
                B.ftps_get_put(f, "/pub/m.bin", SIZE, pub_sha[kind], up_local, "/up/" + rname)
                check(f.last_port.startswith("200"), "EPRT reply %r" % f.last_port)
            finally:
                H.quit_quietly(f)
            trace = ""
        if cmode != "EPRT":
            check(os.path.exists(local_get), "no downloaded file")
            check_eq((os.path.getsize(local_get), H.sha256_file(local_get)), (SIZE, pub_sha[kind]),
                     "download (size, sha256)")
            os.unlink(local_get)
            sent_prot_p = B.trace_sent(trace, "PROT P")
            check_eq(sent_prot_p, prot == "P", "client sent PROT P")
        H.check_stored(b, rname, SIZE, up_sha, "upload")
        # What the backend saw: the data mode of the listener, never the client's own.
        eff = bmode if bmode != "client" else ("passive" if cmode in PASSIVE_VERBS else "active")
        want, other = (PASSIVE_VERBS, ACTIVE_VERBS) if eff == "passive" else (ACTIVE_VERBS, PASSIVE_VERBS)
        if b.command_lines(mark) is not None:
            seen = H.wait_until(lambda: len(B.saw(b, mark, ("RETR", "STOR"))) >= 2, 5)
            check(seen, "the backend's log lacks the RETR and STOR of this cell")
            data = B.saw(b, mark, want + other)
            check(len([c for c in data if c.split()[0].upper() in want]) >= 2,
                  "backend data mode %s: the backend saw %r, want %s for both transfers" % (eff, data, "/".join(want)))
            check(not [c for c in data if c.split()[0].upper() in other],
                  "backend data mode %s: the backend saw %r" % (eff, data))

    def curl_two_transfers_one_session(kind):
        """curl with two URLs (and --next) keeps one control connection. With TLS 1.3,
        curl (OpenSSL) offers each session ticket once (RFC 8446 C.4), so its second
        data connection needs a ticket issued on the first one; native vsftpd with
        require_ssl_reuse=YES passes this exact command."""
        b, t = backends[kind], targets[(kind, "passive")]
        local_get = os.path.join(env.client_dir, "g-two-%s.bin" % kind)
        rname = "u-two-%s.bin" % kind
        r, trace = B.curl_get_put(t.host, t.port, t.ca, b.user, b.password, "/pub/m.bin", local_get, up_local,
                                  "/up/" + rname, epsv=True, prot="P")
        check_eq(r.returncode, 0, "curl exit status (%s)" % B.tail(r.stderr))
        check(len(re.findall(r"^< 226", trace, re.M)) == 2, "curl's trace lacks the two 226 replies")
        check(re.search(r"^\* Re-using existing connection", trace, re.M), "curl did not reuse the control connection")
        check_eq((os.path.getsize(local_get), H.sha256_file(local_get)), (SIZE, pub_sha[kind]), "download")
        os.unlink(local_get)
        H.check_stored(b, rname, SIZE, up_sha, "upload")

    def greeting_and_feat(kind):
        """Each server's own greeting and FEAT (multi-line or not, claiming AUTH TLS or
        not) come out as one well-formed reply with the proxy's TLS features once."""
        b, t = backends[kind], targets[(kind, "passive")]
        c = H.Ctl(t)
        try:
            check_eq(c.greeting[0], 220, "greeting code")
            feat = c.cmd("FEAT")
            check_eq(feat[0], 211, "FEAT before login")
            lines = [x.strip().upper() for x in feat[1].splitlines()[1:-1]]
            check_eq([x for x in lines if x.startswith("AUTH")], ["AUTH TLS", "AUTH SSL"],
                     "AUTH lines of FEAT before TLS (%r)" % lines)
            c.auth_tls(env.certs.client_context())
            c.login(b.user, b.password)
            feat = c.cmd("FEAT")
            check_eq(feat[0], 211, "FEAT after login")
            all_lines = feat[1].splitlines()
            check(all_lines[0].startswith("211-") and all_lines[-1].startswith("211 "),
                  "FEAT framing: %r" % [all_lines[0], all_lines[-1]])
            lines = [x.strip().upper() for x in all_lines[1:-1]]
            for want in ("PBSZ", "EPSV", "EPRT"):
                check_eq(lines.count(want), 1, "%s lines in FEAT (%r)" % (want, lines))
            check_eq(len([x for x in lines if x.startswith("PROT")]), 1, "PROT lines in FEAT (%r)" % lines)
            check_eq([x for x in lines if x.startswith("AUTH")], ["AUTH TLS", "AUTH SSL"],
                     "AUTH lines of FEAT after TLS (RFC 4217 §5: in every state) (%r)" % lines)
            check_eq(len(lines), len(set(lines)), "duplicate FEAT lines (%r)" % lines)
            check_eq(c.cmd("QUIT")[0], 221, "QUIT")
        finally:
            c.close()

    for kind in backends:
        s.run("%s: greeting and FEAT through the proxy" % kind, greeting_and_feat, kind)

    t0 = time.monotonic()
    for bmode in BACKEND_MODES + ("client",):
        for cmode in CLIENT_MODES:
            for kind in B.KINDS:
                if (kind, bmode) not in targets:
                    continue
                for prot in PROTS:
                    ok = s.run("%s x backend %s, %s, PROT %s" % (cmode, bmode, kind, prot), cell, kind, cmode,
                               bmode, prot)
                    results[(cmode, bmode, kind, prot)] = ok
    print("matrix: %d cells in %.1fs" % (len(results), time.monotonic() - t0), flush=True)
    if "vsftpd" in backends:
        s.run("curl: download then upload on one control connection (PROT P, TLS 1.3), vsftpd",
              curl_two_transfers_one_session, "vsftpd")
    print_matrix(results)


def print_matrix(results):
    print()
    print("Topology matrix: download + upload of 1 MiB + 1 (sha256 both ends), PROT P and PROT C per cell;")
    print("clients: curl (PASV, EPSV), lftp (PORT), ftplib (EPRT); n/a = not run")
    print()
    print("| client x backend data_mode | " + " | ".join(B.KINDS) + " |")
    print("|---|" + "---|" * len(B.KINDS))
    for bmode in BACKEND_MODES + ("client",):
        for cmode in CLIENT_MODES:
            cells = []
            for kind in B.KINDS:
                r = [results.get((cmode, bmode, kind, p)) for p in PROTS]
                if all(x is None for x in r):
                    cells.append("n/a")
                elif all(x is True for x in r):
                    cells.append("pass")
                else:
                    bad = [p for p, x in zip(PROTS, r) if x is not True]
                    cells.append("FAIL (PROT %s)" % ",".join(bad))
            print("| %s x %s | %s |" % (cmode, bmode, " | ".join(cells)))
    print(flush=True)


if __name__ == "__main__":
    H.main_wrapper("topology_matrix", body, need_bytes=256 * H.MiB)
