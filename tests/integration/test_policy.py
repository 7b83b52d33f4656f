#!/usr/bin/python3
"""Policy and security commands of ftpsgate (DESIGN.md §2), checked on both ends:
the exact reply the client gets, and from vsftpd's protocol log, what the backend
did (not) see.

One ftpsgate process with four explicit listeners:
  private -> vs1  (data_protection private, login_requires_tls true)
  any     -> vs1  (data_protection any)
  clear   -> vs1  (data_protection clear)
  second  -> vs2  (private; a second backend, same process)
  v6      -> vs1  (private, bound on [::1]: an IPv6 client before an IPv4-only backend)
The whole file runs in a network namespace of its own (ownnetns.py), where ::1 works.
"""

import os
import socket
import ssl
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import harness as H  # noqa: E402
import ownnetns  # noqa: E402
from harness import check, check_code, check_eq, sync_quit, verbs  # noqa: E402


def body(s, env):
    vs1 = env.backend("vs1")
    vs2 = env.backend("vs2")
    private = env.front(vs1, "private", protection="private")
    anyp = env.front(vs1, "any", protection="any")
    clear = env.front(vs1, "clear", protection="clear")
    second = env.front(vs2, "second", protection="private")
    v6 = None if H.SELFCHECK else env.front(vs1, "v6", protection="private", bind_host="::1")
    sha_small = vs1.add_pub("small.bin", 64 * H.KiB + 1)
    sha_10m = vs1.add_pub("ten.bin", 10 * H.MiB)
    sha_a = vs1.add_pub("only-on-vs1.bin", 100 * H.KiB + 7)
    sha_b = vs2.add_pub("only-on-vs2.bin", 200 * H.KiB + 3)
    env.start(*[t for t in (private, anyp, clear, second, v6) if t is not None])
    ctx = env.certs.client_context()

    def login_before_tls():
        H.needs_proxy()
        mark = vs1.log_mark()
        c = H.Ctl(private)
        check_code(c.cmd("USER anonymous"), 534, "USER before AUTH TLS")
        check_code(c.cmd("PASS " + H.PASSWORD), 534, "PASS before AUTH TLS")
        # vsftpd answers NOOP with 530 before login; FEAT works in every state.
        check_code(c.cmd("FEAT"), 211, "FEAT afterwards (the session goes on)")
        cmds = sync_quit(c, vs1, mark)
        check("USER" not in verbs(cmds) and "PASS" not in verbs(cmds),
              "the backend saw the login sent before TLS: %r" % cmds)
        check(H.PASSWORD not in vs1.log_since(mark), "the password reached the backend")

    s.run("login before TLS refused (534), never reaches the backend", login_before_tls)

    def before_tls_codes():
        H.needs_proxy()
        mark = vs1.log_mark()
        c = H.Ctl(private)
        check_code(c.cmd("PBSZ 0"), 503, "PBSZ before AUTH TLS")
        check_code(c.cmd("PROT P"), 503, "PROT P before AUTH TLS")
        check_code(c.cmd("PROT C"), 503, "PROT C before AUTH TLS")
        cmds = sync_quit(c, vs1, mark)
        check(not set(verbs(cmds)) & {"PBSZ", "PROT"}, "PBSZ/PROT reached the backend: %r" % cmds)

    s.run("PBSZ/PROT before TLS -> 503, not forwarded", before_tls_codes)

    def after_tls_codes():
        H.needs_proxy()
        mark = vs1.log_mark()
        c = H.Ctl(private)
        c.auth_tls(ctx)
        check_code(c.cmd("PROT P"), 503, "PROT P before PBSZ")
        r = c.cmd("PBSZ 0")
        check_code(r, 200, "PBSZ 0")
        check("PBSZ=0" in r[1], "PBSZ reply %r lacks 'PBSZ=0'" % r[1])
        r = c.cmd("PBSZ 1048576")
        check_code(r, 200, "PBSZ 1048576")
        check("PBSZ=0" in r[1], "PBSZ 1048576 reply %r lacks 'PBSZ=0' (RFC 4217 §9)" % r[1])
        check_code(c.cmd("PROT S"), 536, "PROT S")
        check_code(c.cmd("PROT E"), 536, "PROT E")
        check_code(c.cmd("PROT X"), 504, "PROT X")
        check_code(c.cmd("PROT C"), 534, "PROT C under data_protection private")
        check_code(c.cmd("PROT P"), 200, "PROT P")
        check_code(c.cmd("AUTH TLS"), (503, 534), "a second AUTH TLS")
        check_code(c.cmd("FEAT"), 211, "FEAT at the end (the session goes on)")
        cmds = sync_quit(c, vs1, mark)
        check(not set(verbs(cmds)) & {"AUTH", "PBSZ", "PROT"},
              "AUTH/PBSZ/PROT reached the backend: %r" % cmds)

    s.run("AUTH/PBSZ/PROT reply codes after TLS, none forwarded", after_tls_codes)

    def auth_variants():
        H.needs_proxy()
        c = H.Ctl(private)
        check_code(c.cmd("AUTH KERBEROS_V4"), 504, "AUTH with an unknown mechanism")
        c.auth_tls(ctx, "TLS")
        check_code(c.cmd("FEAT"), 211, "FEAT over TLS")
        c.close()
        for mech in ("SSL", "tls", "TLS-C"):
            c = H.Ctl(private)
            c.auth_tls(ctx, mech)
            c.login()
            check_code(c.cmd("NOOP"), 200, "NOOP over TLS after AUTH %s and login" % mech)
            c.close()

    s.run("AUTH unknown -> 504; AUTH SSL, lowercase tls, TLS-C -> 234", auth_variants)

    def clear_transfer_refused(prot_c_first):
        H.needs_proxy()
        mark = vs1.log_mark()
        c = H.Ctl(private)
        c.auth_tls(ctx)
        c.login()
        if prot_c_first:
            check_code(c.cmd("PBSZ 0"), 200, "PBSZ 0")
            check_code(c.cmd("PROT C"), 534, "PROT C under data_protection private")
        for cmd in ("RETR /pub/small.bin", "STOR /up/should-not-exist.bin", "LIST /pub"):
            addr = c.pasv()
            d = socket.create_connection(addr, timeout=10)  # as a client does before the command
            try:
                check_code(c.cmd(cmd), 521, "%s with a clear data channel" % cmd.split()[0])
            finally:
                d.close()
        check_code(c.cmd("NOOP"), 200, "NOOP afterwards (the session goes on)")
        cmds = sync_quit(c, vs1, mark)
        bad = [x for x in cmds if verbs([x])[0] in ("RETR", "STOR", "LIST")]
        check(not bad, "refused transfer commands reached the backend: %r" % bad)
        check(not os.path.exists(vs1.up_path("should-not-exist.bin")), "the refused STOR created the file")
        check(not [t for t in vs1.transfers_since(mark)], "the backend logged a transfer")

    s.run("private: transfer without PROT P -> 521, backend never sees RETR/STOR/LIST",
          clear_transfer_refused, False)
    s.run("private: PROT C -> 534, then transfers still 521", clear_transfer_refused, True)

    def transfer(tgt, prot, rpath, size, sha, upload_name=None):
        f = H.ftplib_connect(tgt, prot=prot)
        try:
            n, got, resp = H.ftplib_get(f, rpath)
            check_eq((n, got), (size, sha), "download %s with PROT %s (size, sha256)" % (rpath, prot or "unset"))
            if upload_name:
                H.ftplib_put(f, vs1.pub_path(os.path.basename(rpath)), "/up/" + upload_name)
        finally:
            H.quit_quietly(f)
        if upload_name:
            H.check_stored(vs1, upload_name, size, sha, "upload with PROT %s" % (prot or "unset"))

    def any_prot_c():
        H.needs_proxy()
        transfer(anyp, "C", "/pub/ten.bin", 10 * H.MiB, sha_10m, "any-prot-c.bin")

    s.run("any: PROT C transfer in clear, both ways (sha256)", any_prot_c)

    def any_default_clear():
        H.needs_proxy()
        # No PBSZ/PROT at all: RFC 4217 §8 default protection level is Clear.
        transfer(anyp, None, "/pub/small.bin", 64 * H.KiB + 1, sha_small, "any-default.bin")

    s.run("any: no PROT means clear data, transfer works (sha256)", any_default_clear)

    def any_prot_p():
        H.needs_proxy()
        transfer(anyp, "P", "/pub/small.bin", 64 * H.KiB + 1, sha_small, "any-prot-p.bin")

    s.run("any: PROT P transfer, both ways (sha256)", any_prot_p)

    def clear_policy():
        H.needs_proxy()
        c = H.Ctl(clear)
        c.auth_tls(ctx)
        c.login()
        check_code(c.cmd("PBSZ 0"), 200, "PBSZ 0")
        check_code(c.cmd("PROT P"), 534, "PROT P under data_protection clear")
        check_code(c.cmd("PROT C"), 200, "PROT C under data_protection clear")
        c.close()
        transfer(clear, "C", "/pub/small.bin", 64 * H.KiB + 1, sha_small, "clear-prot-c.bin")

    s.run("clear: PROT P -> 534, PROT C transfer works (sha256)", clear_policy)

    def feat():
        H.needs_proxy()

        def feats(c):
            code, text = c.cmd("FEAT")
            check_eq(code, 211, "FEAT reply code")
            lines = [ln.strip().upper() for ln in text.splitlines()[1:-1]]
            check_eq(len(lines), len(set(lines)), "distinct lines in the FEAT reply %r" % lines)
            return lines

        def has(lines, want):
            return any(f == want or f.startswith(want + " ") or f.startswith(want + ";") for f in lines)

        c = H.Ctl(private)
        before = feats(c)  # RFC 4217 §6: how a client learns it may send AUTH TLS
        check(has(before, "AUTH TLS"), "FEAT before TLS lacks AUTH TLS: %r" % before)
        c.auth_tls(ctx)
        c.login()
        after = feats(c)
        for want in ("PBSZ", "PROT"):
            check(has(after, want), "FEAT after TLS lacks %s: %r" % (want, after))
        for want in ("SIZE", "REST STREAM", "EPSV"):  # the backend's own (vsftpd 3.0.3) lines are kept
            check(want in after, "FEAT lacks the backend's %s: %r" % (want, after))
        c.close()

    s.run("FEAT merges AUTH TLS/PBSZ/PROT with the backend's features", feat)

    def two_backends():
        # Each listener reaches its own backend: a file only vs2 has is found only via 'second'.
        f1 = H.ftplib_connect(private)
        f2 = H.ftplib_connect(second)
        try:
            n, got, _ = H.ftplib_get(f1, "/pub/only-on-vs1.bin")
            check_eq((n, got), (100 * H.KiB + 7, sha_a), "vs1's file via listener 'private'")
            n, got, _ = H.ftplib_get(f2, "/pub/only-on-vs2.bin")
            check_eq((n, got), (200 * H.KiB + 3, sha_b), "vs2's file via listener 'second'")
            try:
                H.ftplib_get(f1, "/pub/only-on-vs2.bin")
                raise H.Fail("vs2's file was found through the listener of vs1")
            except H.ftplib.error_perm as e:
                check(str(e).startswith("550"), "RETR of the other backend's file: %s" % e)
            H.ftplib_put(f1, vs1.pub_path("only-on-vs1.bin"), "/up/via-private.bin")
            H.ftplib_put(f2, vs2.pub_path("only-on-vs2.bin"), "/up/via-second.bin")
        finally:
            H.quit_quietly(f1)
            H.quit_quietly(f2)
        H.check_stored(vs1, "via-private.bin", 100 * H.KiB + 7, sha_a, "upload via 'private'")
        H.check_stored(vs2, "via-second.bin", 200 * H.KiB + 3, sha_b, "upload via 'second'")
        check(not os.path.exists(vs2.up_path("via-private.bin")), "upload via 'private' landed on vs2")
        check(not os.path.exists(vs1.up_path("via-second.bin")), "upload via 'second' landed on vs1")

    s.run("two listeners in one process, two backends", two_backends)

    def ipv6_client():
        # DESIGN.md §3: an IPv6 client must reach an IPv4-only backend. EPSV (RFC 2428),
        # since a 227 reply cannot carry an IPv6 address.
        H.needs_proxy()
        f = H.ftplib_connect(v6, epsv=True)
        try:
            check_eq(f.sock.getpeername()[0], "::1", "control connection peer")
            n, got, _ = H.ftplib_get(f, "/pub/ten.bin")
            check_eq((n, got), (10 * H.MiB, sha_10m), "download over IPv6 (size, sha256)")
            resp, host, port = f.last_pasv
            check(resp.startswith("229"), "EPSV reply %r" % resp)
            H.ftplib_put(f, vs1.pub_path("small.bin"), "/up/via-v6.bin")
        finally:
            H.quit_quietly(f)
        H.check_stored(vs1, "via-v6.bin", 64 * H.KiB + 1, sha_small, "upload over IPv6")

    s.run("IPv6 client on [::1] through to the IPv4 backend (EPSV)", ipv6_client)


if __name__ == "__main__":
    ownnetns.enter_or_fail("policy")  # ::1 of its own, whatever the host's loopback has
    H.main_wrapper("policy", body, need_bytes=512 * H.MiB)
