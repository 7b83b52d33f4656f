#!/usr/bin/python3
"""TLS options of ftpsgate's identities and the data-connection session reuse (issue 4).

Identities (tls.*), all certificates from the test CA:
  main     RSA 2048 (the harness's), defaults
  ecdsa    ECDSA P-256
  v13      main's certificate, min_version "1.3"
  v12      main's certificate, max_version "1.2"
  suites   main's certificate, ciphersuites CHACHA20 only, ciphers ECDHE-RSA-CHACHA20 only, groups P-384
  legacy   main's certificate, ciphers "DEFAULT" (OpenSSL's own list, static RSA included)
  sni-a    CN/SAN a.ftps.test        (listener sni: "a.ftps.test")
  sni-w    CN/SAN *.wild.ftps.test   (listener sni: "*.wild.ftps.test")
  creq     main's certificate, client_ca = the test CA, client_cert required
  copt     the same, client_cert optional

Listeners (-> one vsftpd): rsa, rsa-imp (implicit), ecdsa, ecdsa-imp (implicit), v13, v12,
suites, sni, sni-imp (implicit), creq, creq-imp (implicit), copt, noreuse
(require_session_reuse false). limits.data_connect_timeout is 5 s, so that a client
that does not reuse the session is answered within a bounded wait.

Clients: Python ftplib (harness FTPS: resumes the session; stock FTP_TLS: does not),
the scripted control client, curl, lftp, openssl s_client.
"""

import ftplib
import io
import os
import re
import socket
import ssl
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import harness as H  # noqa: E402
from harness import check, check_code, check_eq  # noqa: E402

DATA_CONNECT_TIMEOUT = 5
V12, V13 = ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3
REFUSED = (ssl.SSLError, ConnectionResetError, BrokenPipeError, EOFError, ConnectionAbortedError)


def cert_text(env, der):
    path = os.path.join(env.client_dir, "peer-%s.der" % os.urandom(4).hex())
    with open(path, "wb") as f:
        f.write(der)
    r = H.run_cmd(["openssl", "x509", "-inform", "DER", "-in", path, "-noout", "-text"], timeout=30)
    os.unlink(path)
    check_eq(r.returncode, 0, "openssl x509 on the peer certificate")
    return r.stdout


def peer_info(env, sock):
    """(public key algorithm, subject CN, SAN text) of the server certificate on sock."""
    text = cert_text(env, sock.getpeercert(binary_form=True))
    alg = re.search(r"Public Key Algorithm:\s*(\S+)", text)
    cn = re.search(r"Subject:.*CN\s*=\s*([^,\n]+)", text)
    san = re.search(r"X509v3 Subject Alternative Name:.*\n\s*(.*)", text)
    return (alg.group(1) if alg else None, cn.group(1).strip() if cn else None,
            san.group(1).strip() if san else "")


def client_ctx(ca, min_v=None, max_v=None, cert=None, check_hostname=True):
    ctx = ssl.create_default_context(cafile=ca)
    ctx.check_hostname = check_hostname
    if min_v:
        ctx.minimum_version = min_v
    if max_v:
        ctx.maximum_version = max_v
    if cert:
        ctx.load_cert_chain(cert[0], cert[1])
    return ctx


def vname(v):
    return "TLS 1.2" if v == V12 else "TLS 1.3"


def body(s, env):
    if H.SELFCHECK:
        s.run("TLS options (test ftpsgate itself)", H.needs_proxy)
        return
    vs = env.backend("vs1")
    certs = env.certs
    ec_cert = certs.issue("ecdsa", "localhost", "DNS:localhost,IP:127.0.0.1,IP:::1", key_type="ec")
    a_cert = certs.issue("sni-a", "a.ftps.test", "DNS:a.ftps.test")
    w_cert = certs.issue("sni-w", "wild.ftps.test", "DNS:*.wild.ftps.test")
    client_cert = certs.issue("client1", "ftps test client", client=True)
    rogue_cert = certs.self_signed("rogue", "rogue client", client=True)
    main = {"cert": certs.cert, "key": certs.key}
    env.proxy.extra_tls = {
        "ecdsa": {"cert": ec_cert[0], "key": ec_cert[1]},
        "v13": dict(main, min_version="1.3"),
        "v12": dict(main, max_version="1.2"),
        "legacy": dict(main, ciphers="DEFAULT"),
        "suites": dict(main, ciphersuites="TLS_CHACHA20_POLY1305_SHA256", ciphers="ECDHE-RSA-CHACHA20-POLY1305",
                       groups="P-384"),
        "sni-a": {"cert": a_cert[0], "key": a_cert[1]},
        "sni-w": {"cert": w_cert[0], "key": w_cert[1]},
        "creq": dict(main, client_ca=certs.ca, client_cert="required"),
        "copt": dict(main, client_ca=certs.ca, client_cert="optional"),
    }
    env.proxy.extra_limits = {"data_connect_timeout": DATA_CONNECT_TIMEOUT}
    sni = {"a.ftps.test": "sni-a", "*.wild.ftps.test": "sni-w"}
    T = {}
    for name, kw in (("rsa", {}), ("rsa-imp", {"mode": "implicit"}),
                     ("ecdsa", {"tls": "ecdsa"}), ("ecdsa-imp", {"tls": "ecdsa", "mode": "implicit"}),
                     ("v13", {"tls": "v13"}), ("v12", {"tls": "v12"}), ("suites", {"tls": "suites"}),
                     ("legacy", {"tls": "legacy"}),
                     ("sni", {"sni": sni}), ("sni-imp", {"sni": sni, "mode": "implicit"}),
                     ("creq", {"tls": "creq"}), ("creq-imp", {"tls": "creq", "mode": "implicit"}),
                     ("copt", {"tls": "copt"}),
                     ("noreuse", {"policy": {"require_session_reuse": False}})):
        T[name] = env.front(vs, name, **kw)
    sha_small = vs.add_pub("small.bin", 64 * H.KiB + 1)
    sha_ten = vs.add_pub("ten.bin", 10 * H.MiB)
    env.start(*T.values())
    ca = certs.ca
    proxy = env.proxy

    def roundtrip(f, what, size=10 * H.MiB, sha=None, rpath="/pub/ten.bin"):
        """Download and upload through an open ftplib client; sha256 both ways."""
        sha = sha or sha_ten
        n, got, resp = H.ftplib_get(f, rpath)
        check(resp.startswith("226"), "%s: final reply %r" % (what, resp))
        check_eq((n, got), (size, sha), "%s: download (size, sha256)" % what)
        name = "up-%s.bin" % os.urandom(4).hex()
        resp = H.ftplib_put(f, vs.pub_path(os.path.basename(rpath)), "/up/" + name)
        check(resp.startswith("226"), "%s: upload final reply %r" % (what, resp))
        return name, size, sha

    def data_sessions_resumed(mark, want_version, what, n_min=1):
        """From the proxy's debug log: the data connections since mark resumed their control session."""
        text = proxy.log_since(mark)
        data = re.findall(r"data TLS established \((\S+) [^,]*, ([^)]*)\)", text)
        check(len(data) >= n_min, "%s: %d data TLS connections in the proxy log, want >= %d"
              % (what, len(data), n_min))
        for ver, how in data:
            check_eq(ver, want_version, "%s: data TLS version" % what)
            check_eq(how, "resumed the control session", "%s: data TLS session" % what)
        ctl = re.findall(r"control TLS established \((\S+) ", text)
        check(ctl and all(v == want_version for v in ctl), "%s: control TLS versions %r, want %s"
              % (what, ctl, want_version))

    # ---- versions ------------------------------------------------------------------------

    def ftplib_version(tname, v):
        t = T[tname]
        f = H.ftplib_connect(t, ctx=client_ctx(ca, min_v=v, max_v=v))
        try:
            want = "TLSv1.2" if v == V12 else "TLSv1.3"
            check_eq(f.sock.version(), want, "control TLS version")
            name, size, sha = roundtrip(f, "%s %s" % (tname, vname(v)))
        finally:
            H.quit_quietly(f)
        H.check_stored(vs, name, size, sha, "upload")

    for tname in ("rsa", "rsa-imp"):
        for v in (V12, V13):
            s.run("ftplib %s %s: download + upload 10MiB (sha256)" % (tname, vname(v)), ftplib_version, tname, v)

    def resumed_control(v):
        """A client that reconnects and offers its previous control session (as
        many do) still gets protected transfers: the new control connection's
        data connections must resume ITS session, not the old one's."""
        t = T["rsa"]
        ctx = client_ctx(ca, min_v=v, max_v=v)
        first = H.ftplib_connect(t, ctx=ctx)
        first.sendcmd("PWD")  # TLS 1.3 tickets have arrived
        old = first.sock.session
        H.quit_quietly(first)
        f = H.FTPS(context=ctx, timeout=30)
        f.connect(t.host, t.port)
        f.voidcmd("AUTH TLS")
        f.sock = ctx.wrap_socket(f.sock, server_hostname=t.host, session=old)
        f.file = f.sock.makefile("r", encoding=f.encoding)
        try:
            f.login(H.FTP_USER, H.PASSWORD)
            f.prot_p()
            roundtrip(f, "reconnected control %s" % vname(v))
        finally:
            H.quit_quietly(f)

    for v in (V12, V13):
        s.run("a control connection offering an earlier control session: protected transfers work, %s"
              % vname(v), resumed_control, v)

    def curl_version(tname, v):
        t = T[tname]
        flags = ["--tlsv1.2", "--tls-max", "1.2"] if v == V12 else ["--tlsv1.3"]
        out = os.path.join(env.client_dir, "curl-%s" % tname)
        mark = proxy.log_mark()
        r, trace = H.curl(t, flags + ["-o", out, t.url("/pub/ten.bin")])
        check_eq(r.returncode, 0, "curl exit status (stderr tail: %s)" % r.stderr[-400:])
        want = "TLSv1.2" if v == V12 else "TLSv1.3"
        check(re.search(r"SSL connection using %s" % re.escape(want), trace), "curl did not use %s" % want)
        check_eq(H.sha256_file(out), sha_ten, "curl download sha256")
        os.unlink(out)
        name = "curl-%s-%s.bin" % (tname, want)
        r, trace = H.curl(t, flags + ["-T", vs.pub_path("ten.bin"), t.url("/up/" + name)])
        check_eq(r.returncode, 0, "curl upload exit status (stderr tail: %s)" % r.stderr[-400:])
        H.check_stored(vs, name, 10 * H.MiB, sha_ten, "curl upload")
        data_sessions_resumed(mark, want, "curl", 2)

    for tname in ("rsa", "rsa-imp"):
        for v in (V12, V13):
            s.run("curl %s %s: reuse accepted, download + upload (sha256)" % (tname, vname(v)),
                  curl_version, tname, v)

    def curl_one_connection(tname, v):
        """One curl process, one control connection: RETR, STOR, RETR (--next). curl with
        OpenSSL offers a TLS 1.3 ticket once (RFC 8446 C.4), so each data connection after
        the first needs a ticket issued on an earlier one: issue 4, "issue enough TLS 1.3
        tickets that clients which use one per data connection never run out"."""
        t = T[tname]
        flags = ["--tlsv1.2", "--tls-max", "1.2"] if v == V12 else ["--tlsv1.3"]
        opts = ["-sS", "-v", "--connect-timeout", "10", "--max-time", "60", "--user",
                "%s:%s" % (H.FTP_USER, H.PASSWORD), "--ftp-pasv", "--ssl-reqd", "--cacert", ca] + flags
        out1 = os.path.join(env.client_dir, "curl-one-1")
        out2 = os.path.join(env.client_dir, "curl-one-2")
        name = "curl-one-%s-%s.bin" % (tname, vname(v)[-3:])
        argv = ["curl"] + opts + ["-o", out1, t.url("/pub/ten.bin"), "--next"] + opts + \
            ["-T", vs.pub_path("small.bin"), t.url("/up/" + name), "--next"] + opts + \
            ["-o", out2, t.url("/pub/small.bin")]
        mark = proxy.log_mark()
        r = H.run_cmd(argv, timeout=90)
        trace = r.stderr
        sec = [ln.split(" SECURITY: ", 1)[-1] for ln in proxy.log_since(mark).splitlines() if "SECURITY" in ln]
        finals = re.findall(r"^< ([2-5]\d\d) ", trace, re.M)
        finals = [c for c in finals if c == "226" or c.startswith(("4", "5"))]
        # curl's exit status is the last transfer's only: the replies tell about each.
        check(r.returncode == 0 and finals == ["226", "226", "226"],
              "curl exit %d, transfer replies %r (want 3 x 226); proxy SECURITY lines: %r"
              % (r.returncode, finals, sec))
        check(re.search(r"^\* Re-using existing connection", trace, re.M), "curl did not reuse the control connection")
        check_eq(len(re.findall(r"^< 220", trace, re.M)), 1, "control connections (greetings) in curl's trace")
        check_eq(H.sha256_file(out1), sha_ten, "first download sha256")
        check_eq(H.sha256_file(out2), sha_small, "second download sha256")
        os.unlink(out1)
        os.unlink(out2)
        H.check_stored(vs, name, 64 * H.KiB + 1, sha_small, "upload")
        data_sessions_resumed(mark, "TLSv1.2" if v == V12 else "TLSv1.3", "curl", 3)

    for tname in ("rsa", "rsa-imp"):
        for v in (V12, V13):
            s.run("curl %s %s: RETR, STOR, RETR on one control connection, every data TLS resumed"
                  % (tname, vname(v)), curl_one_connection, tname, v)

    def lftp_version(tname, v):
        t = T[tname]
        prio = "NORMAL:-VERS-ALL:+VERS-TLS1.2" if v == V12 else "NORMAL:-VERS-ALL:+VERS-TLS1.3"
        out = os.path.join(env.client_dir, "lftp-%s" % tname)
        name = "lftp-%s-%s.bin" % (tname, vname(v).replace(" ", ""))
        mark = proxy.log_mark()
        r, trace = H.lftp(t, ["set ssl:priority %s" % prio, "get /pub/ten.bin -o %s" % out,
                              "put %s -o /up/%s" % (vs.pub_path("ten.bin"), name)], env.client_dir)
        check_eq(r.returncode, 0, "lftp exit status (stderr: %s)" % r.stderr[-400:])
        check_eq(H.sha256_file(out), sha_ten, "lftp download sha256")
        os.unlink(out)
        H.check_stored(vs, name, 10 * H.MiB, sha_ten, "lftp upload")
        data_sessions_resumed(mark, "TLSv1.2" if v == V12 else "TLSv1.3", "lftp", 2)

    for tname in ("rsa", "rsa-imp"):
        for v in (V12, V13):
            s.run("lftp %s %s: reuse accepted, download + upload (sha256)" % (tname, vname(v)),
                  lftp_version, tname, v)

    def refused(fn, what):
        """fn must end in a TLS refusal (exception), never a hang or a usable session."""
        try:
            fn()
        except socket.timeout as e:
            raise H.Fail("%s: no answer (hang) instead of a refusal: %s" % (what, e)) from e
        except REFUSED as e:
            return e
        except OSError as e:
            return e
        raise H.Fail("%s: the TLS session was accepted" % what)

    def min_version_13():
        t = T["v13"]

        def old_client():
            c = H.Ctl(t, timeout=10)
            c.auth_tls(client_ctx(ca, max_v=V12))
            c.cmd("USER anonymous")

        e = refused(old_client, "TLS 1.2-only client on min_version 1.3")
        check(isinstance(e, ssl.SSLError), "refusal is not a TLS error: %r" % e)
        r, trace = H.curl(t, ["--tlsv1.2", "--tls-max", "1.2", "-o", os.devnull, t.url("/pub/small.bin")])
        check(r.returncode != 0, "curl --tls-max 1.2 got through min_version 1.3")
        f = H.ftplib_connect(t, ctx=client_ctx(ca))
        try:
            check_eq(f.sock.version(), "TLSv1.3", "control TLS version on min_version 1.3")
            roundtrip(f, "v13", 64 * H.KiB + 1, sha_small, "/pub/small.bin")
        finally:
            H.quit_quietly(f)

    s.run("min_version 1.3: a TLS 1.2-only client (Python, curl) is refused; 1.3 works", min_version_13)

    def max_version_12():
        t = T["v12"]

        def new_client():
            c = H.Ctl(t, timeout=10)
            c.auth_tls(client_ctx(ca, min_v=V13))
            c.cmd("USER anonymous")

        refused(new_client, "TLS 1.3-only client on max_version 1.2")
        f = H.ftplib_connect(t, ctx=client_ctx(ca))
        try:
            check_eq(f.sock.version(), "TLSv1.2", "negotiated version under max_version 1.2")
            roundtrip(f, "v12", 64 * H.KiB + 1, sha_small, "/pub/small.bin")
        finally:
            H.quit_quietly(f)

    s.run("max_version 1.2: a TLS 1.3-only client is refused; a default client gets 1.2", max_version_12)

    def suites():
        t = T["suites"]
        for v, want in ((V13, "TLS_CHACHA20_POLY1305_SHA256"), (V12, "ECDHE-RSA-CHACHA20-POLY1305")):
            f = H.ftplib_connect(t, ctx=client_ctx(ca, min_v=v, max_v=v))
            try:
                check_eq(f.sock.cipher()[0], want, "negotiated cipher with %s" % vname(v))
                roundtrip(f, "suites %s" % vname(v), 64 * H.KiB + 1, sha_small, "/pub/small.bin")
            finally:
                H.quit_quietly(f)
        base = ["openssl", "s_client", "-starttls", "ftp", "-connect", "%s:%d" % (t.host, t.port),
                "-CAfile", ca, "-brief"]
        r = H.run_cmd(base + ["-groups", "X25519:P-384"], timeout=30)
        out = r.stdout + r.stderr
        check(r.returncode == 0 and re.search(r"Server Temp Key: ECDH, (P-384|secp384r1)", out),
              "s_client -groups X25519:P-384: not a P-384 key exchange: %s" % out[-600:])
        r = H.run_cmd(base + ["-groups", "X25519"], timeout=30)
        out = r.stdout + r.stderr
        check(r.returncode != 0 and "CONNECTION ESTABLISHED" not in out and re.search(r"handshake failure", out),
              "s_client -groups X25519 against groups P-384: %s" % out[-600:])

    s.run("ciphersuites / ciphers / groups of an identity are what is negotiated", suites)

    def default_ciphers():
        """Without "ciphers", TLS 1.2 offers forward-secret AEAD suites only (ECDHE, and DHE for old
        Windows clients): static RSA key exchange and CBC are refused; "ciphers": "DEFAULT" lets a
        legacy client in."""
        def s_client(t, cipher):
            r = H.run_cmd(["openssl", "s_client", "-starttls", "ftp", "-connect", "%s:%d" % (t.host, t.port),
                           "-CAfile", ca, "-brief", "-tls1_2", "-cipher", cipher], timeout=30)
            return r.returncode == 0 and "CONNECTION ESTABLISHED" in (r.stdout + r.stderr), r.stdout + r.stderr
        for cipher, want in (("ECDHE-RSA-AES128-GCM-SHA256", True), ("ECDHE-RSA-CHACHA20-POLY1305", True),
                             ("DHE-RSA-AES256-GCM-SHA384", True), ("DHE-RSA-AES128-SHA", False),
                             ("AES128-SHA", False), ("AES256-GCM-SHA384", False), ("ECDHE-RSA-AES128-SHA", False)):
            ok, out = s_client(T["rsa"], cipher)
            check_eq(ok, want, "TLS 1.2 %s accepted by the default list (%s)" % (cipher, out.strip()[-200:]))
        ok, out = s_client(T["legacy"], "AES128-SHA")
        check(ok, "ciphers DEFAULT: AES128-SHA refused: %s" % out[-300:])

    s.run("default TLS 1.2 ciphers: (EC)DHE + AEAD only (static RSA, CBC refused); \"ciphers\" widens it",
          default_ciphers)

    def control_tickets(tname):
        """openssl s_client prints each TLS 1.3 NewSessionTicket; the control connection gets 4."""
        t = T[tname]
        argv = ["openssl", "s_client", "-connect", "%s:%d" % (t.host, t.port), "-CAfile", ca,
                "-tls1_3", "-crlf", "-ign_eof"]
        if not t.implicit:
            argv[2:2] = ["-starttls", "ftp"]
        try:
            r = H.subprocess.run(argv, input=b"QUIT\n", stdout=H.subprocess.PIPE, stderr=H.subprocess.PIPE,
                                 timeout=30)
        except H.subprocess.TimeoutExpired as e:
            raise H.Fail("openssl s_client did not finish within 30 s") from e
        out = r.stdout.decode("utf-8", "replace")
        check(r.returncode == 0 and "Verification: OK" in out, "s_client failed: %s" % (out + r.stderr.decode())[-400:])
        check_eq(out.count("Post-Handshake New Session Ticket arrived"), 4, "TLS 1.3 tickets on the control connection")

    s.run("TLS 1.3 control connection gets 4 session tickets (explicit, s_client)", control_tickets, "rsa")
    s.run("TLS 1.3 control connection gets 4 session tickets (implicit, s_client)", control_tickets, "rsa-imp")

    # ---- RSA and ECDSA ----------------------------------------------------------------------

    def key_type(tname, v):
        t = T[tname]
        f = H.ftplib_connect(t, ctx=client_ctx(ca, min_v=v, max_v=v))
        try:
            alg, cn, san = peer_info(env, f.sock)
            want = "id-ecPublicKey" if tname.startswith("ecdsa") else "rsaEncryption"
            check_eq(alg, want, "server key algorithm on %s" % tname)
            if v == V12:
                check(("ECDSA" in f.sock.cipher()[0]) == tname.startswith("ecdsa"),
                      "TLS 1.2 cipher %r on %s" % (f.sock.cipher()[0], tname))
            name, size, sha = roundtrip(f, "%s %s" % (tname, vname(v)))
        finally:
            H.quit_quietly(f)
        H.check_stored(vs, name, size, sha, "upload")

    for tname in ("rsa", "ecdsa", "ecdsa-imp"):
        for v in (V12, V13):
            s.run("%s certificate, %s: key type, download + upload (sha256)" % (tname, vname(v)), key_type, tname, v)

    def curl_ecdsa():
        t = T["ecdsa"]
        out = os.path.join(env.client_dir, "curl-ecdsa")
        r, trace = H.curl(t, ["--tlsv1.2", "--tls-max", "1.2", "-o", out, t.url("/pub/ten.bin")])
        check_eq(r.returncode, 0, "curl exit status (stderr tail: %s)" % r.stderr[-400:])
        check(re.search(r"SSL connection using TLSv1\.2 / ECDHE-ECDSA-", trace), "curl did not use an ECDSA suite")
        check_eq(H.sha256_file(out), sha_ten, "curl download sha256")
        os.unlink(out)

    s.run("curl against the ECDSA identity (TLS 1.2, ECDHE-ECDSA)", curl_ecdsa)

    # ---- SNI ------------------------------------------------------------------------------

    def sni_pick(tname):
        t = T[tname]
        cases = [("a.ftps.test", "a.ftps.test", True), ("x.wild.ftps.test", "wild.ftps.test", True),
                 ("A.FTPS.TEST", "a.ftps.test", True), ("y.z.wild.ftps.test", "localhost", False),
                 ("other.test", "localhost", False), (None, "localhost", False)]
        for name, want_cn, verify in cases:
            ctx = client_ctx(ca, check_hostname=verify)
            c = H.Ctl(t, timeout=10, ctx=ctx, server_name=name or t.host)
            if not t.implicit:
                c.auth_tls(ctx)
            alg, cn, san = peer_info(env, c.sock)
            c.close()
            check_eq(cn, want_cn, "certificate CN for SNI %r on %s" % (name, tname))
            if name and verify:
                check(name.lower() in san.lower() or ("*." + name.split(".", 1)[1]).lower() in san.lower(),
                      "SAN %r does not cover %r" % (san, name))

    s.run("SNI picks the identity: exact, wildcard (one label), case; else the default (explicit)",
          sni_pick, "sni")
    s.run("SNI picks the identity: exact, wildcard, case; else the default (implicit)", sni_pick, "sni-imp")

    def sni_transfer(tname, server_name):
        t = T[tname]
        ctx = client_ctx(ca)
        c = H.Ctl(t, timeout=20, ctx=ctx, server_name=server_name).secure_login(ctx, "P")
        addr = c.pasv()
        d = socket.create_connection(addr, timeout=20)
        check_code(c.cmd("RETR /pub/ten.bin"), 150, "RETR")
        d = c.wrap_data(d, ctx)  # the data connection sends the same SNI and resumes
        check(d.session_reused, "the data TLS did not resume the control session")
        check_eq(peer_info(env, d)[1], server_name.split(".", 1)[1] if server_name.startswith("x.") else server_name,
                 "data connection certificate CN")
        how, data = H.recv_until_closed(d, 30, limit=11 * H.MiB)
        d.close()
        check_eq((how, len(data), H.sha256_bytes(data)), ("eof", 10 * H.MiB, sha_ten), "RETR (end, size, sha256)")
        check_code(c.reply(30), 226, "RETR final reply")
        c.close()

    s.run("SNI a.ftps.test: control and data TLS with that identity, RETR (sha256) (explicit)",
          sni_transfer, "sni", "a.ftps.test")
    s.run("SNI x.wild.ftps.test: control and data TLS with the wildcard identity (implicit)",
          sni_transfer, "sni-imp", "x.wild.ftps.test")

    def sni_curl():
        t = T["sni"]
        out = os.path.join(env.client_dir, "curl-sni")
        r, trace = H.curl(t, ["--resolve", "a.ftps.test:%d:127.0.0.1" % t.port, "-o", out,
                              "ftp://a.ftps.test:%d/pub/ten.bin" % t.port])
        check_eq(r.returncode, 0, "curl exit status (stderr tail: %s)" % r.stderr[-400:])
        check(re.search(r"subject: CN\s*=\s*a\.ftps\.test", trace), "curl did not get a.ftps.test's certificate")
        check_eq(H.sha256_file(out), sha_ten, "curl download sha256")
        os.unlink(out)

    s.run("curl with SNI a.ftps.test (--resolve): verified, download (sha256)", sni_curl)

    # ---- client certificates ---------------------------------------------------------------

    def client_cert_case(tname, cert, v, ok):
        t = T[tname]
        ctx = client_ctx(ca, min_v=v, max_v=v, cert=cert)
        what = "%s, %s, %s" % (tname, {None: "no client cert", client_cert: "CA-signed client cert",
                                        rogue_cert: "untrusted client cert"}[cert], vname(v))
        if not ok:
            def attempt():
                c = H.Ctl(t, timeout=10, ctx=ctx)  # implicit: the handshake is in here
                if not t.implicit:
                    c.auth_tls(ctx)
                c.cmd("USER anonymous")
            refused(attempt, what)
            return
        f = H.ftplib_connect(t, ctx=ctx)
        try:
            name, size, sha = roundtrip(f, what, 64 * H.KiB + 1, sha_small, "/pub/small.bin")
        finally:
            H.quit_quietly(f)
        H.check_stored(vs, name, size, sha, "upload")

    for v in (V12, V13):
        s.run("client_cert required, %s: no certificate -> refused" % vname(v), client_cert_case, "creq", None, v, False)
        s.run("client_cert required, %s: untrusted certificate -> refused" % vname(v),
              client_cert_case, "creq", rogue_cert, v, False)
        s.run("client_cert required, %s: CA-signed certificate -> works (sha256)" % vname(v),
              client_cert_case, "creq", client_cert, v, True)
    s.run("client_cert required, implicit: no certificate -> refused (no greeting)",
          client_cert_case, "creq-imp", None, V13, False)
    s.run("client_cert required, implicit: CA-signed certificate -> works",
          client_cert_case, "creq-imp", client_cert, V13, True)
    s.run("client_cert optional: no certificate -> works", client_cert_case, "copt", None, V13, True)
    s.run("client_cert optional: CA-signed certificate -> works", client_cert_case, "copt", client_cert, V12, True)
    s.run("client_cert optional: untrusted certificate -> refused", client_cert_case, "copt", rogue_cert, V13, False)

    def client_cert_tools():
        t = T["creq"]
        out = os.path.join(env.client_dir, "curl-cc")
        r, _ = H.curl(t, ["-o", out, t.url("/pub/small.bin")])
        check(r.returncode != 0, "curl without a client certificate got through client_cert required")
        r, _ = H.curl(t, ["--cert", client_cert[0], "--key", client_cert[1], "-o", out, t.url("/pub/small.bin")])
        check_eq(r.returncode, 0, "curl with the client certificate (stderr tail: %s)" % r.stderr[-400:])
        check_eq(H.sha256_file(out), sha_small, "curl download sha256")
        os.unlink(out)
        r, _ = H.lftp(t, ["set ssl:cert-file %s" % client_cert[0], "set ssl:key-file %s" % client_cert[1],
                          "get /pub/small.bin -o %s" % out], env.client_dir, timeout=120)
        check_eq(r.returncode, 0, "lftp with the client certificate (stderr: %s)" % r.stderr[-400:])
        check_eq(H.sha256_file(out), sha_small, "lftp download sha256")
        os.unlink(out)

    s.run("client_cert required: curl without cert fails; curl and lftp with cert work (sha256)", client_cert_tools)

    # ---- session reuse ---------------------------------------------------------------------

    def no_reuse_client(v, cmd):
        """Stock ftplib.FTP_TLS (no session= on data connections) while reuse is required."""
        t = T["rsa"]
        f = ftplib.FTP_TLS(context=client_ctx(ca, min_v=v, max_v=v), timeout=DATA_CONNECT_TIMEOUT + 10)
        mark = proxy.log_mark()
        try:
            f.connect(t.host, t.port)
            f.auth()
            f.login(H.FTP_USER, H.PASSWORD)
            f.prot_p()
            err = None
            try:
                if cmd == "RETR":
                    f.retrbinary("RETR /pub/ten.bin", lambda b: None)
                else:
                    f.storbinary("STOR /up/no-reuse.bin", io.BytesIO(os.urandom(2 * H.MiB)))
            except ftplib.error_perm as e:
                err = str(e)
            except socket.timeout as e:
                raise H.Fail("no reply within %d s: %s" % (DATA_CONNECT_TIMEOUT + 10, e)) from e
            except (OSError, ssl.SSLError, EOFError):
                err = None
            else:
                raise H.Fail("the transfer succeeded without session reuse")
            if err is None:
                try:
                    f.getresp()
                    raise H.Fail("the transfer got a positive reply without session reuse")
                except ftplib.error_perm as e:
                    err = str(e)
            # Bounded by the client's socket timeout (the socket.timeout branch above), not timed.
            check(err.startswith("522"), "reply to a data connection without reuse: %r" % err)
            check(f.voidcmd("NOOP").startswith("200"), "NOOP after the 522")
        finally:
            H.quit_quietly(f)
        sec = [ln for ln in proxy.log_since(mark).splitlines() if "SECURITY" in ln]
        check(any("full handshake" in ln for ln in sec), "no SECURITY log line about the full handshake: %r" % sec)
        if cmd == "STOR":
            check(not os.path.exists(vs.up_path("no-reuse.bin")) or os.path.getsize(vs.up_path("no-reuse.bin")) == 0,
                  "the refused upload stored data")

    for v in (V12, V13):
        for cmd in ("RETR", "STOR"):
            s.run("reuse required, stock ftplib (no reuse) %s %s -> 522 within the bound, SECURITY logged"
                  % (vname(v), cmd), no_reuse_client, v, cmd)

    def reuse_off(v):
        t = T["noreuse"]
        f = ftplib.FTP_TLS(context=client_ctx(ca, min_v=v, max_v=v), timeout=30)
        try:
            f.connect(t.host, t.port)
            f.auth()
            f.login(H.FTP_USER, H.PASSWORD)
            f.prot_p()
            h = H.hashlib.sha256()
            f.retrbinary("RETR /pub/ten.bin", h.update)
            check_eq(h.hexdigest(), sha_ten, "download sha256 without reuse")
            with open(vs.pub_path("ten.bin"), "rb") as fp:
                f.storbinary("STOR /up/noreuse-%s.bin" % vname(v)[-3:], fp)
        finally:
            H.quit_quietly(f)
        H.check_stored(vs, "noreuse-%s.bin" % vname(v)[-3:], 10 * H.MiB, sha_ten, "upload without reuse")

    s.run("require_session_reuse false: stock ftplib TLS 1.2 works (sha256)", reuse_off, V12)
    s.run("require_session_reuse false: stock ftplib TLS 1.3 works (sha256)", reuse_off, V13)

    def other_session(v, cmd, handshake_first):
        """Control connections A and B (same client context); A's data connection presents
        B's TLS session: refused with 522 and a SECURITY line; no file byte leaves."""
        t = T["rsa"]
        ctx = client_ctx(ca, min_v=v, max_v=v)
        a = H.Ctl(t, ctx=ctx).secure_login(ctx, "P")
        b = H.Ctl(t, ctx=ctx).secure_login(ctx, "P")
        check_code(b.cmd("PWD"), 257, "PWD on B")  # B's TLS 1.3 tickets have arrived
        sess_b = b.sock.session
        check(sess_b is not None, "no session on B")
        mark = proxy.log_mark()
        addr = a.pasv()
        d = socket.create_connection(addr, timeout=20)
        path = "/pub/ten.bin" if cmd == "RETR" else "/up/stolen-%s.bin" % os.urandom(3).hex()
        leaked = 0
        reply = None
        try:
            if not handshake_first:
                check_code(a.cmd("%s %s" % (cmd, path)), 150, cmd)
            try:
                d = ctx.wrap_socket(d, server_hostname=t.host, session=sess_b)
                if cmd == "RETR" and not handshake_first:
                    how, data = H.recv_until_closed(d, 10, limit=11 * H.MiB)
                    leaked = len(data)
                elif cmd == "STOR" and not handshake_first:
                    try:
                        d.sendall(os.urandom(512 * H.KiB))
                    except OSError:
                        pass
            except (ssl.SSLError, OSError):
                pass
            if handshake_first:
                # The proxy judges the data connection at its handshake: wait for the verdict.
                H.wait_until(lambda: "data TLS established" in proxy.log_since(mark), 10)
                reply = a.cmd("%s %s" % (cmd, path), timeout=15)
            else:
                reply = a.reply(15)
        finally:
            d.close()
        sec = [ln for ln in proxy.log_since(mark).splitlines() if "SECURITY" in ln]
        data_log = [ln.split(" client=", 1)[-1] for ln in proxy.log_since(mark).splitlines()
                    if "data TLS established" in ln]
        problems = []
        if reply is None or reply[0] != 522:
            problems.append("A got %r, want 522" % (reply[1] if reply else None,))
        if leaked:
            problems.append("%d file bytes were sent over the data connection with B's session" % leaked)
        if not any("another connection's session" in ln for ln in sec):
            problems.append("no SECURITY log line about another connection's session (proxy: %r)" % data_log)
        check(not problems, "; ".join(problems))
        check_code(a.cmd("NOOP"), 200, "NOOP on A afterwards")
        check_code(b.cmd("NOOP"), 200, "NOOP on B afterwards")
        a.close()
        b.close()
        if cmd == "STOR":
            p = vs.up_path(os.path.basename(path))
            check(not os.path.exists(p) or os.path.getsize(p) == 0, "the stolen upload stored data")

    for v in (V12, V13):
        s.run("A's data connection with B's session, %s, RETR after 150 -> 522 + SECURITY" % vname(v),
              other_session, v, "RETR", False)
        s.run("A's data connection with B's session, %s, STOR after 150 -> 522 + SECURITY" % vname(v),
              other_session, v, "STOR", False)
        s.run("A's data connection with B's session, %s, handshake before RETR -> 522 + SECURITY" % vname(v),
              other_session, v, "RETR", True)

    def control_offers_control_session():
        """A TLS 1.2 client without tickets (session ids only, like clients that open one control
        connection per parallel transfer) offers control connection A's session on a second control
        connection B: B gets a full handshake of its own (a control session is never shared), and
        the data connections of A and of B each resume their own control session."""
        t = T["rsa"]
        ctx = client_ctx(ca, min_v=V12, max_v=V12)
        ctx.options |= ssl.OP_NO_TICKET
        a = H.Ctl(t, ctx=ctx).secure_login(ctx, "P")
        b = None
        try:
            sess_a = a.sock.session
            check(sess_a is not None and sess_a.id and not sess_a.has_ticket, "A has a session id, no ticket")
            b = H.Ctl(t, ctx=ctx)
            b.auth_tls(ctx, session=sess_a)
            check(not b.sock.session_reused, "control connection B resumed A's TLS session")
            b.login()
            check_code(b.cmd("PBSZ 0"), 200, "PBSZ 0 on B")
            check_code(b.cmd("PROT P"), 200, "PROT P on B")
            for name, c in (("A", a), ("B", b), ("A", a)):
                d = socket.create_connection(c.pasv(), timeout=20)
                check_code(c.cmd("RETR /pub/ten.bin"), 150, "RETR on %s" % name)
                d = c.wrap_data(d, ctx)
                check(d.session_reused, "%s's data connection did not resume %s's control session" % (name, name))
                how, data = H.recv_until_closed(d, 30, limit=11 * H.MiB)
                d.close()
                check_code(c.reply(30), 226, "end of RETR on %s" % name)
                check_eq(H.sha256_bytes(bytes(data)), sha_ten, "sha256 of the download on %s" % name)
        finally:
            a.close()
            if b is not None:
                b.close()

    s.run("TLS 1.2 session ids only: a second control connection offering the first one's session gets "
          "its own; both transfer (sha256)", control_offers_control_session)

    def fifty_uploads():
        t = T["rsa"]
        f = H.ftplib_connect(t, ctx=client_ctx(ca, min_v=V13))
        good = 0
        try:
            check_eq(f.sock.version(), "TLSv1.3", "control TLS version")
            for i in range(50):
                data = os.urandom(2 * H.MiB)
                resp = f.storbinary("STOR /up/fifty-%02d.bin" % i, io.BytesIO(data), blocksize=256 * H.KiB)
                check(resp.startswith("226"), "upload %d: final reply %r" % (i, resp))
                H.check_stored(vs, "fifty-%02d.bin" % i, 2 * H.MiB, H.sha256_bytes(data), "upload %d" % i)
                good += 1
        finally:
            H.quit_quietly(f)
        check_eq(good, 50, "sha256 matches")

    s.run("50 consecutive 2MiB uploads, TLS 1.3, reuse required: 50 sha256 matches", fifty_uploads)

    # ---- session tickets (issue 13) --------------------------------------------------------

    def tickets_by_version():
        """TLS 1.2 resumes by session id only: a client that offers tickets (Python's default)
        gets a session id and no ticket (a TLS 1.2 ticket would carry the control connection's
        own master secret, readable by whoever later holds the ticket key); TLS 1.3 gets tickets
        with the 7-day lifetime."""
        for v, want_ticket in ((V12, False), (V13, True)):
            ctx = client_ctx(ca, min_v=v, max_v=v)
            c = H.Ctl(T["rsa"], ctx=ctx).secure_login(ctx, "P")
            try:
                check_code(c.cmd("PWD"), 257, "PWD")  # TLS 1.3 tickets have arrived
                sess = c.sock.session
                check(sess is not None, "%s: no session" % vname(v))
                check_eq(sess.has_ticket, want_ticket, "%s: a session ticket" % vname(v))
                check_eq(sess.ticket_lifetime_hint, 7 * 24 * 3600 if want_ticket else 0,
                         "%s: ticket lifetime hint" % vname(v))
                if not want_ticket:
                    check(len(sess.id) > 0, "TLS 1.2: no session id")
            finally:
                c.close()

    s.run("TLS 1.2: a session id and no ticket; TLS 1.3: tickets of 7 days", tickets_by_version)

    def tls12_cut_transfers():
        """TLS 1.2 (session ids): two downloads that the client cuts with a reset after 64 KiB
        (no close_notify either way) do not take the control session out of the proxy's cache:
        the next download on the same control connection still resumes it (no 522)."""
        t = T["rsa"]
        ctx = client_ctx(ca, min_v=V12, max_v=V12)
        mark = proxy.log_mark()
        c = H.Ctl(t, ctx=ctx).secure_login(ctx, "P")
        try:
            for i in range(2):
                d = socket.create_connection(c.pasv(), timeout=20)
                check_code(c.cmd("RETR /pub/ten.bin"), 150, "RETR %d" % i)
                d = c.wrap_data(d, ctx)
                check(d.session_reused, "cut download %d: the data TLS did not resume" % i)
                got = 0
                while got < 64 * H.KiB:
                    b = d.recv(64 * H.KiB)
                    check(b, "download %d ended early" % i)
                    got += len(b)
                H.abort_socket(d)
                code, text = c.reply(30)
                check(code != 226, "cut download %d: the client got 226" % i)
            d = socket.create_connection(c.pasv(), timeout=20)
            check_code(c.cmd("RETR /pub/ten.bin"), 150, "RETR after the cuts")
            d = c.wrap_data(d, ctx)
            check(d.session_reused, "after two cut transfers the data TLS did not resume the control session")
            how, data = H.recv_until_closed(d, 30, limit=11 * H.MiB)
            d.close()
            check_code(c.reply(30), 226, "end of the download after the cuts")
            check_eq(H.sha256_bytes(bytes(data)), sha_ten, "sha256 of the download after the cuts")
        finally:
            c.close()
        data_sessions_resumed(mark, "TLSv1.2", "cut transfers", 3)

    s.run("TLS 1.2: downloads cut by the client (reset) do not stop the next one resuming (sha256)",
          tls12_cut_transfers)

    def proxy_alive():
        check(proxy.alive(), "ftpsgate died (exit %s)" % proxy.proc.poll())

    s.run("the proxy is alive after every refusal", proxy_alive)


if __name__ == "__main__":
    H.main_wrapper("tls_options", body, need_bytes=512 * H.MiB)
