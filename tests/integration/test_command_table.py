#!/usr/bin/python3
"""The command table of DESIGN.md §2, row by row, as exact replies (issue 4).

A scripted control client (harness.Ctl over ssl.SSLContext sockets; implicit
listeners get the TLS handshake before the greeting) checks the reply code, and
the text where the contract fixes it; vsftpd's protocol log shows what the
backend did (not) see. Listeners, all in one ftpsgate:

  ex      explicit, private, policy.ccc true            -> vsftpd vs1
  std     explicit, private, defaults (no CCC)          -> vs1
  im      implicit, private                             -> vs1
  imany   implicit, data_protection any                 -> vs1
  anyp    explicit, any                                 -> vs1
  clearp  explicit, clear                               -> vs1
  split   explicit, data clear + listing private        -> vs1
  open    explicit, any, login_requires_tls false,
          active.enabled false                          -> vs1
  py, pyim   explicit / implicit in front of pyftpdlib whose FEAT claims
             AUTH TLS/SSL, PBSZ, PROT, CCC                 (a second server)
  pynofeat   explicit in front of pyftpdlib without FEAT (500)
  fake    explicit, in front of a scripted backend that records TCP urgent
          data (the Telnet Synch of ABOR)
"""

import os
import re
import select
import socket
import ssl
import sys
import threading
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import harness as H  # noqa: E402
from harness import check, check_code, check_eq, sync_quit, verb  # noqa: E402

OWNED_FEAT = ("AUTH", "PBSZ", "PROT", "CCC", "EPSV", "EPRT")


def check_reply(reply, want_code, want_text, what):
    """The whole reply, exactly: one line '<code> <text>'."""
    check_eq(reply, (want_code, "%d %s" % (want_code, want_text)), what)


def single_line(reply, code, what):
    check_code(reply, code, what)
    check("\n" not in reply[1], "%s: a one-line reply expected, got %r" % (what, reply[1]))


def open_transfer(c, ctx, command, what):
    """PASV, the data connection, command answered 150, then TLS on it: the data socket."""
    d = socket.create_connection(c.pasv(), timeout=30)
    check_code(c.cmd(command), 150, what)
    return c.wrap_data(d, ctx)


def retr(c, ctx, path, size, sha, epsv=False, tls=True):
    """PASV/EPSV + RETR on the scripted client; checks 150, the bytes, EOF and 226."""
    addr = c.epsv() if epsv else c.pasv()
    d = socket.create_connection(addr, timeout=30)
    try:
        check_code(c.cmd("RETR " + path), (150, 125), "RETR %s" % path)
        if tls:
            d = c.wrap_data(d, ctx)
        how, data = H.recv_until_closed(d, 60, limit=size + 1)
    finally:
        d.close()
    check_eq(how, "eof", "end of the data connection of RETR %s" % path)
    check_eq((len(data), H.sha256_bytes(data)), (size, sha), "RETR %s (size, sha256)" % path)
    check_code(c.reply(60), 226, "final reply of RETR %s" % path)


def stor(c, ctx, path, data, tls=True):
    addr = c.pasv()
    d = socket.create_connection(addr, timeout=30)
    try:
        check_code(c.cmd("STOR " + path), (150, 125), "STOR %s" % path)
        if tls:
            d = c.wrap_data(d, ctx)
        d.sendall(data)
        if tls:
            d.settimeout(30)
            d = d.unwrap()
    finally:
        d.close()
    check_code(c.reply(60), 226, "final reply of STOR %s" % path)


def listing(c, ctx, path, tls=True):
    addr = c.pasv()
    d = socket.create_connection(addr, timeout=30)
    try:
        check_code(c.cmd("LIST " + path), (150, 125), "LIST %s" % path)
        if tls:
            d = c.wrap_data(d, ctx)
        how, data = H.recv_until_closed(d, 30)
    finally:
        d.close()
    check_eq(how, "eof", "end of the LIST data connection")
    check_code(c.reply(30), 226, "final reply of LIST")
    return data.decode("utf-8", "replace")


# --------------------------------------------------------------------------
# A scripted backend that records TCP urgent data (RFC 959 §4.1.3 Synch).


class FakeBackend:
    """Minimal FTP server: USER/PASS/TYPE/PASV/RETR (endless data)/ABOR/NOOP/QUIT.
    For every control connection it records the urgent (MSG_OOB) bytes and the raw
    in-band bytes of the line that carried ABOR. On ABOR during a RETR it stops the
    data and answers '426 Transfer aborted by ABOR' then '226 ABOR successful'."""

    def __init__(self):
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind((H.HOST, 0))
        self.lsock.listen(16)
        self.port = self.lsock.getsockname()[1]
        self.address = "%s:%d" % (H.HOST, self.port)
        self.lock = threading.Lock()
        self.oob = []          # urgent bytes received, all connections
        self.abor_lines = []   # raw bytes of lines containing ABOR
        self.commands = []
        self.stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self):
        self.stop.set()
        try:
            self.lsock.close()
        except OSError:
            pass

    def _accept(self):
        while not self.stop.is_set():
            try:
                self.lsock.settimeout(0.5)
                s, _ = self.lsock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            threading.Thread(target=self._session, args=(s,), daemon=True).start()

    def _session(self, s):
        state = {"pasv": None, "data": None, "abort": threading.Event(), "streamer": None}
        buf = b""
        try:
            s.sendall(b"220 fake backend ready\r\n")
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and not self.stop.is_set():
                r, _, x = select.select([s], [], [s], 0.5)
                if x:
                    try:
                        b = s.recv(1, socket.MSG_OOB)
                        with self.lock:
                            self.oob.append(b)
                    except OSError:
                        pass
                if not r:
                    continue
                try:
                    b = s.recv(4096)
                except OSError:
                    b = b""
                if not b:
                    # urgent data may be the last thing readable
                    return
                buf += b
                while b"\n" in buf:
                    line, _, buf = buf.partition(b"\n")
                    if not self._command(s, line.rstrip(b"\r"), state):
                        return
        finally:
            state["abort"].set()
            for k in ("pasv", "data"):
                if state[k] is not None:
                    try:
                        state[k].close()
                    except OSError:
                        pass
            s.close()

    def _stream(self, state):
        d = state["data"]
        chunk = b"\x5a" * 65536
        try:
            while not state["abort"].is_set():
                d.sendall(chunk)
        except OSError:
            pass

    def _command(self, s, raw, state):
        text = raw.decode("latin-1")
        word = re.sub(r"[^A-Z]", "", text.split(" ", 1)[0].upper())
        with self.lock:
            self.commands.append(raw)
        if b"ABOR" in raw.upper():
            with self.lock:
                self.abor_lines.append(raw)
            if state["streamer"] is not None:
                state["abort"].set()
                state["streamer"].join(10)
                state["streamer"] = None
                try:
                    state["data"].close()
                except OSError:
                    pass
                state["data"] = None
                s.sendall(b"426 Transfer aborted by ABOR\r\n226 ABOR successful\r\n")
            else:
                s.sendall(b"225 No transfer to abort\r\n")
            return True
        if word == "USER":
            s.sendall(b"331 Password please\r\n")
        elif word == "PASS":
            s.sendall(b"230 Logged in\r\n")
        elif word in ("TYPE", "NOOP"):
            s.sendall(b"200 OK\r\n")
        elif word == "PASV":
            p = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            p.bind((H.HOST, 0))
            p.listen(1)
            state["pasv"] = p
            port = p.getsockname()[1]
            s.sendall(b"227 Entering Passive Mode (127,0,0,1,%d,%d)\r\n" % (port >> 8, port & 255))
        elif word == "RETR":
            if state["pasv"] is None:
                s.sendall(b"425 Use PASV first\r\n")
                return True
            s.sendall(b"150 Here comes an endless file\r\n")
            state["pasv"].settimeout(20)
            try:
                d, _ = state["pasv"].accept()
            except OSError:
                s.sendall(b"425 No data connection\r\n")
                return True
            state["pasv"].close()
            state["pasv"] = None
            state["data"] = d
            state["abort"].clear()
            t = threading.Thread(target=self._stream, args=(state,), daemon=True)
            state["streamer"] = t
            t.start()
        elif word == "QUIT":
            s.sendall(b"221 Bye\r\n")
            return False
        else:
            s.sendall(b"502 Not implemented\r\n")
        return True


# --------------------------------------------------------------------------


def raw_feat(backend):
    """The backend's own FEAT reply lines, asked directly (plain FTP, before login)."""
    direct = H.Target("direct-" + backend.name, backend.port, False, None, backend)
    c = H.Ctl(direct)
    try:
        return c.cmd("FEAT")
    finally:
        c.close()


def own_feat_lines(auth, ccc, eprt):
    out = []
    if auth:
        out += [" AUTH TLS", " AUTH SSL"]
    out += [" PBSZ", " PROT"]
    if ccc:
        out.append(" CCC")
    out.append(" EPSV")
    if eprt:
        out.append(" EPRT")
    return out


def expected_feat(backend_reply, auth, ccc, eprt):
    """DESIGN.md §2 FEAT row, README 'FTP commands': the backend's lines minus AUTH, PBSZ,
    PROT, CCC, EPSV, EPRT, then the proxy's own lines, before the backend's last line;
    a backend without a multi-line 211 gets '211-Features:' + own lines + '211 End'."""
    code, text = backend_reply
    lines = text.split("\n")
    own = own_feat_lines(auth, ccc, eprt)
    if code != 211 or len(lines) < 2:
        return ["211-Features:"] + own + ["211 End"]
    kept = [ln for ln in lines[1:-1] if (ln.strip().split(" ", 1)[0].upper() if ln.strip() else "") not in OWNED_FEAT]
    return [lines[0]] + kept + own + [lines[-1]]


def body(s, env):
    if H.SELFCHECK:
        s.run("the command table (every case tests ftpsgate itself)", H.needs_proxy)
        return
    vs = env.backend("vs1")
    have_py = H.Pyftpd.available()
    py = env.pyftpd("py1", "claims-tls") if have_py else None
    pynofeat = env.pyftpd("py2", "nofeat") if have_py else None
    fake = FakeBackend()
    ex = env.front(vs, "ex", policy={"ccc": True})
    std = env.front(vs, "std")
    im = env.front(vs, "im", mode="implicit")
    imany = env.front(vs, "imany", mode="implicit", protection="any")
    anyp = env.front(vs, "anyp", protection="any")
    clearp = env.front(vs, "clearp", protection="clear")
    split = env.front(vs, "split", protection="clear", policy={"listing_protection": "private"})
    opn = env.front(vs, "open", protection="any", login_requires_tls=False, active={"enabled": False})
    fk = H.Target("fake", None, True, env.certs.ca, None,
                  env.proxy.add_listener("fake", fake.address, "private", True))
    targets = [ex, std, im, imany, anyp, clearp, split, opn, fk]
    pyt = pyim = pynf = None
    if py is not None:
        pyt = env.front(py, "py")
        pyim = env.front(py, "pyim", mode="implicit")
        pynf = env.front(pynofeat, "pynofeat")
        targets += [pyt, pyim, pynf]
    sha_small = vs.add_pub("small.bin", 64 * H.KiB + 1)
    sha_ten = vs.add_pub("ten.bin", 10 * H.MiB)
    sha_big = vs.add_pub("big.bin", 48 * H.MiB)
    env.start(*targets)
    ctx = env.certs.client_context()
    s.on_fail.append(lambda: print("     fake backend: urgent=%r abor lines=%r" % (fake.oob, fake.abor_lines)))

    def login(t, prot="P"):
        c = H.Ctl(t, ctx=ctx)
        if t.implicit:
            c.login()
            if prot == "C":
                check_code(c.cmd("PROT C"), 200, "PROT C")
        else:
            c.secure_login(ctx, prot)
        return c

    # ---- AUTH ---------------------------------------------------------------------

    def auth_mechanisms():
        mark = vs.log_mark()
        for mech in ("TLS", "SSL", "TLS-C", "TLS-P", "tls", "ssl", "tls-c", "Tls-p"):
            c = H.Ctl(std, ctx=ctx)
            r = c.auth_tls(ctx, mech)  # 234, nothing after it, then the handshake
            single_line(r, 234, "AUTH %s" % mech)
            check(c.sock.version() in ("TLSv1.2", "TLSv1.3"), "no TLS after AUTH %s" % mech)
            c.login()
            check_code(c.cmd("PBSZ 0"), 200, "PBSZ 0 after AUTH %s" % mech)
            check_code(c.cmd("PROT P"), 200, "PROT P after AUTH %s" % mech)
            if mech == "TLS":
                retr(c, ctx, "/pub/small.bin", 64 * H.KiB + 1, sha_small)
            if mech == "Tls-p":
                cmds = sync_quit(c, vs, mark)
            else:
                check_code(c.cmd("QUIT"), 221, "QUIT")
                c.close()
        check("AUTH" not in [verb(x) for x in cmds], "AUTH reached the backend: %r" % cmds)

    s.run("AUTH TLS|SSL|TLS-C|TLS-P in any case -> 234 + handshake; never forwarded", auth_mechanisms)

    def auth_refusals():
        mark = vs.log_mark()
        c = H.Ctl(std, ctx=ctx)
        single_line(c.cmd("AUTH"), 501, "AUTH without argument")
        single_line(c.cmd("AUTH KERBEROS_V4"), 504, "AUTH KERBEROS_V4")
        single_line(c.cmd("AUTH GSSAPI"), 504, "AUTH GSSAPI")
        single_line(c.cmd("USER anonymous"), 534, "USER after the refused AUTH (still clear)")
        c.auth_tls(ctx)
        single_line(c.cmd("AUTH TLS"), 503, "a second AUTH TLS")
        single_line(c.cmd("AUTH SSL"), 503, "a second AUTH SSL")
        single_line(c.cmd("AUTH"), 501, "AUTH without argument under TLS")
        c.login()  # the session goes on under the first TLS
        check_code(c.cmd("PWD"), 257, "PWD")
        cmds = sync_quit(c, vs, mark)
        check("AUTH" not in [verb(x) for x in cmds], "AUTH reached the backend: %r" % cmds)

    s.run("AUTH: no argument 501, other mechanism 504, second AUTH 503 (explicit)", auth_refusals)

    def auth_implicit():
        mark = vs.log_mark()
        c = H.Ctl(im, ctx=ctx)
        for mech in ("TLS", "SSL", "TLS-C", "TLS-P", "tls", "GSSAPI"):
            single_line(c.cmd("AUTH " + mech), 503, "AUTH %s on an implicit session" % mech)
        single_line(c.cmd("AUTH"), 501, "AUTH without argument on an implicit session")
        c.login()
        single_line(c.cmd("AUTH TLS"), 503, "AUTH TLS after login on an implicit session")
        cmds = sync_quit(c, vs, mark)
        check("AUTH" not in [verb(x) for x in cmds], "AUTH reached the backend: %r" % cmds)

    s.run("AUTH on an implicit session -> 503 (any mechanism), 501 without argument", auth_implicit)

    # ---- PBSZ / PROT -----------------------------------------------------------------

    def pbsz(t):
        mark = vs.log_mark()
        c = H.Ctl(t, ctx=ctx)
        if not t.implicit:
            single_line(c.cmd("PBSZ 0"), 503, "PBSZ before TLS")
            single_line(c.cmd("PBSZ 1024"), 503, "PBSZ 1024 before TLS")
            c.auth_tls(ctx)
        check_reply(c.cmd("PBSZ 0"), 200, "PBSZ=0", "PBSZ 0 under TLS")
        check_reply(c.cmd("PBSZ 1048576"), 200, "PBSZ=0", "PBSZ 1048576 (RFC 4217 §9: always 0)")
        check_reply(c.cmd("pbsz 4294967295"), 200, "PBSZ=0", "pbsz 4294967295")
        for bad in ("PBSZ abc", "PBSZ", "PBSZ -1", "PBSZ 4294967296"):
            single_line(c.cmd(bad), 501, bad)
        c.login()
        check_reply(c.cmd("PBSZ 0"), 200, "PBSZ=0", "PBSZ 0 after login")
        cmds = sync_quit(c, vs, mark)
        check("PBSZ" not in [verb(x) for x in cmds], "PBSZ reached the backend: %r" % cmds)

    s.run("PBSZ: 503 before TLS, '200 PBSZ=0' for any n, 501 non-numeric (explicit)", pbsz, std)
    s.run("PBSZ 0 on an implicit session -> '200 PBSZ=0', 501 non-numeric", pbsz, im)

    def prot(t):
        mark = vs.log_mark()
        c = H.Ctl(t, ctx=ctx)
        if not t.implicit:
            single_line(c.cmd("PROT P"), 503, "PROT P before TLS")
            single_line(c.cmd("PROT C"), 503, "PROT C before TLS")
            c.auth_tls(ctx)
            single_line(c.cmd("PROT P"), 503, "PROT P before PBSZ")
            check_code(c.cmd("PBSZ 0"), 200, "PBSZ 0")
        else:
            # MS-FTPS: the session starts as if PBSZ 0 and PROT P had been accepted.
            pass
        single_line(c.cmd("PROT P"), 200, "PROT P")
        single_line(c.cmd("prot p"), 200, "prot p (lowercase)")
        single_line(c.cmd("PROT C"), 534, "PROT C under data_protection private")
        single_line(c.cmd("PROT S"), 536, "PROT S")
        single_line(c.cmd("PROT E"), 536, "PROT E")
        single_line(c.cmd("PROT X"), 504, "PROT X")
        single_line(c.cmd("PROT PP"), 504, "PROT PP")
        single_line(c.cmd("PROT"), 501, "PROT without argument")
        c.login()
        retr(c, ctx, "/pub/small.bin", 64 * H.KiB + 1, sha_small)  # still PROT P after the refusals
        cmds = sync_quit(c, vs, mark)
        check("PROT" not in [verb(x) for x in cmds], "PROT reached the backend: %r" % cmds)

    s.run("PROT: 503 before TLS/PBSZ, P 200, C 534 (private), S/E 536, X 504, none 501 (explicit)",
          prot, std)
    s.run("PROT on an implicit session: P 200 without PBSZ, C 534, S/E 536, X 504, none 501", prot, im)

    def prot_by_policy():
        for t, want_c, want_p in ((anyp, 200, 200), (clearp, 200, 534), (split, 200, 200),
                                  (imany, 200, 200), (std, 534, 200)):
            c = H.Ctl(t, ctx=ctx)
            if not t.implicit:
                c.auth_tls(ctx)
                check_code(c.cmd("PBSZ 0"), 200, "PBSZ 0")
            single_line(c.cmd("PROT C"), want_c, "PROT C on listener %s" % t.name)
            single_line(c.cmd("PROT P"), want_p, "PROT P on listener %s" % t.name)
            c.close()

    s.run("PROT C/P by policy: any both 200, clear P 534, private C 534, split both 200", prot_by_policy)

    def transfer_policy():
        # data_protection clear + listing_protection private: RETR needs PROT C, LIST needs PROT P.
        mark = vs.log_mark()
        c = login(split, "P")
        addr = c.pasv()
        d = socket.create_connection(addr, timeout=10)
        single_line(c.cmd("RETR /pub/small.bin"), 521, "RETR under PROT P with data_protection clear")
        d.close()
        text = listing(c, ctx, "/pub")  # LIST under PROT P: allowed
        check("small.bin" in text, "LIST /pub under PROT P lacks small.bin: %r" % text[:300])
        check_code(c.cmd("PROT C"), 200, "PROT C")
        addr = c.pasv()
        d = socket.create_connection(addr, timeout=10)
        single_line(c.cmd("LIST /pub"), 521, "LIST under PROT C with listing_protection private")
        single_line(c.cmd("NLST /pub"), 521, "NLST under PROT C with listing_protection private")
        single_line(c.cmd("MLSD /pub"), 521, "MLSD under PROT C with listing_protection private")
        d.close()
        retr(c, ctx, "/pub/small.bin", 64 * H.KiB + 1, sha_small, tls=False)  # clear data: allowed
        cmds = sync_quit(c, vs, mark)
        refused = [x for x in cmds if verb(x) in ("LIST", "NLST", "MLSD")][1:] + \
                  [x for x in cmds if verb(x) == "RETR"][1:]
        check(not refused, "refused transfer commands reached the backend: %r" % cmds)
        check_eq(len([x for x in cmds if verb(x) == "RETR"]), 1, "RETRs the backend saw")

    s.run("521 before the backend: RETR under P with data clear, LIST/NLST/MLSD under C with listing private",
          transfer_policy)

    def transfer_clear_on_private(t):
        mark = vs.log_mark()
        c = H.Ctl(t, ctx=ctx)
        if not t.implicit:
            c.auth_tls(ctx)
        c.login()
        if not t.implicit:
            # No PBSZ/PROT: the data channel is clear (RFC 4217 §8 default).
            for cmd in ("RETR /pub/small.bin", "STOR /up/never.bin", "APPE /up/never.bin", "STOU",
                        "LIST /pub", "NLST /pub", "MLSD /pub"):
                addr = c.pasv()
                d = socket.create_connection(addr, timeout=10)
                single_line(c.cmd(cmd), 521, "%s with a clear data channel on a private listener" % cmd)
                d.close()
            check_code(c.cmd("PBSZ 0"), 200, "PBSZ 0")
            check_code(c.cmd("PROT P"), 200, "PROT P")
        retr(c, ctx, "/pub/small.bin", 64 * H.KiB + 1, sha_small)
        cmds = sync_quit(c, vs, mark)
        seen = [x for x in cmds if verb(x) in ("RETR", "STOR", "APPE", "STOU", "LIST", "NLST", "MLSD")]
        check_eq(seen, ["RETR /pub/small.bin"], "transfer commands the backend saw")
        check(not os.path.exists(vs.up_path("never.bin")), "a refused STOR/APPE created the file")

    s.run("private: every transfer command on a clear data channel -> 521, never forwarded",
          transfer_clear_on_private, std)

    def implicit_prot_c_transfer():
        c = login(imany, "C")  # implicit, then PROT C: allowed by data_protection any
        retr(c, ctx, "/pub/small.bin", 64 * H.KiB + 1, sha_small, tls=False)
        check_code(c.cmd("PROT P"), 200, "PROT P")
        retr(c, ctx, "/pub/small.bin", 64 * H.KiB + 1, sha_small, tls=True)
        c.close()

    s.run("implicit + any: PROT C then a clear transfer, PROT P then a protected one", implicit_prot_c_transfer)

    def implicit_no_pbsz_prot():
        c = H.Ctl(im, ctx=ctx)
        c.login()
        retr(c, ctx, "/pub/ten.bin", 10 * H.MiB, sha_ten)  # PROT P from the start
        data = os.urandom(300 * H.KiB + 3)
        stor(c, ctx, "/up/implicit-no-prot.bin", data)
        c.close()
        H.check_stored(vs, "implicit-no-prot.bin", len(data), H.sha256_bytes(data), "STOR")

    s.run("implicit: transfers under P without any PBSZ/PROT (sha256)", implicit_no_pbsz_prot)

    def implicit_greeting_after_handshake():
        raw = socket.create_connection((im.host, im.port), timeout=10)
        try:
            r, _, _ = select.select([raw], [], [], 1.0)
            if r:
                b = raw.recv(100)
                raise H.Fail("the implicit listener sent %r before the TLS handshake" % b[:60])
            tls = ctx.wrap_socket(raw, server_hostname=im.host)
            tls.settimeout(10)
            g = tls.recv(200)
            check(g.startswith(b"220"), "first bytes after the handshake: %r" % g[:80])
            tls.close()
        finally:
            raw.close()

    s.run("implicit: nothing before the TLS handshake, then the 220 greeting", implicit_greeting_after_handshake)

    # ---- CCC -------------------------------------------------------------------------

    def ccc_refused():
        mark = vs.log_mark()
        c = H.Ctl(ex, ctx=ctx)
        single_line(c.cmd("CCC"), 503, "CCC before TLS, policy.ccc true")
        c.close()
        c = H.Ctl(std, ctx=ctx).secure_login(ctx, "P")
        single_line(c.cmd("CCC"), 533, "CCC with policy.ccc false")
        check_code(c.cmd("PWD"), 257, "PWD over TLS after the refused CCC")
        c.close()
        c = H.Ctl(std, ctx=ctx)
        single_line(c.cmd("CCC"), 533, "CCC before TLS with policy.ccc false")
        c.close()
        c = H.Ctl(im, ctx=ctx)
        c.login()
        single_line(c.cmd("CCC"), 533, "CCC on an implicit session")
        check_code(c.cmd("PWD"), 257, "PWD over TLS after the refused CCC (implicit)")
        cmds = sync_quit(c, vs, mark)
        check("CCC" not in [verb(x) for x in cmds], "CCC reached the backend: %r" % cmds)

    s.run("CCC: 533 without policy.ccc and on implicit, 503 before TLS; never forwarded", ccc_refused)

    def ccc_then_transfer():
        mark = vs.log_mark()
        c = H.Ctl(ex, ctx=ctx).secure_login(ctx, "P")
        r = c.cmd("CCC")
        single_line(r, 200, "CCC with policy.ccc true")
        c.stop_tls()  # close_notify both ways; the TCP connection stays
        check(not isinstance(c.sock, ssl.SSLSocket), "still TLS after unwrap")
        check_code(c.cmd("NOOP"), 200, "NOOP in clear after CCC")
        check_code(c.cmd("PWD"), 257, "PWD in clear after CCC")
        retr(c, ctx, "/pub/ten.bin", 10 * H.MiB, sha_ten)  # data keeps PROT P, resuming the control session
        data = os.urandom(H.MiB + 17)
        stor(c, ctx, "/up/after-ccc.bin", data)
        retr(c, ctx, "/pub/small.bin", 64 * H.KiB + 1, sha_small, epsv=True)
        cmds = sync_quit(c, vs, mark)
        H.check_stored(vs, "after-ccc.bin", len(data), H.sha256_bytes(data), "STOR after CCC")
        check("CCC" not in [verb(x) for x in cmds], "CCC reached the backend: %r" % cmds)

    s.run("CCC allowed: 200, close_notify, clear control; then PROT P RETR/STOR (sha256)", ccc_then_transfer)

    def ccc_implicit_config_error():
        cfg = env.proxy.config()
        ln = dict(cfg["listeners"][2])  # "im"
        check_eq(ln["mode"], "implicit", "listener 2's mode")
        ln["policy"] = dict(ln["policy"], ccc=True)
        cfg["listeners"] = [ln]
        path = os.path.join(env.tmp, "ccc-implicit.json")
        with open(path, "w") as f:
            H.json.dump(cfg, f)
        r = H.run_cmd([env.binary, "--check-config", "--config", path], timeout=30)
        check_eq(r.returncode, 1, "--check-config exit status (stderr %r)" % r.stderr[-300:])
        check("listeners[0].policy.ccc" in r.stderr, "the error does not name listeners[0].policy.ccc: %r"
              % r.stderr[-300:])

    s.run("policy.ccc on an implicit listener is a config error", ccc_implicit_config_error)

    # ---- login before TLS ----------------------------------------------------------------

    def login_before_tls():
        mark = vs.log_mark()
        c = H.Ctl(std, ctx=ctx)
        single_line(c.cmd("USER anonymous"), 534, "USER before TLS")
        single_line(c.cmd("PASS " + H.PASSWORD), 534, "PASS before TLS")
        single_line(c.cmd("ACCT acme"), 534, "ACCT before TLS")
        check_code(c.cmd("FEAT"), 211, "FEAT before TLS (the session goes on)")
        cmds = sync_quit(c, vs, mark)
        check(not {"USER", "PASS", "ACCT"} & set(verb(x) for x in cmds),
              "the login sent before TLS reached the backend: %r" % cmds)
        check(H.PASSWORD not in vs.log_since(mark), "the password reached the backend")
        # login_requires_tls false: the same commands are forwarded.
        mark = vs.log_mark()
        c = H.Ctl(opn, ctx=ctx)
        check_code(c.cmd("USER anonymous"), 331, "USER in clear with login_requires_tls false")
        check_code(c.cmd("PASS " + H.PASSWORD), 230, "PASS in clear with login_requires_tls false")
        cmds = sync_quit(c, vs, mark)
        check(["USER", "PASS"] == [verb(x) for x in cmds if verb(x) in ("USER", "PASS")],
              "USER/PASS not forwarded with login_requires_tls false: %r" % cmds)

    s.run("USER/PASS/ACCT before TLS -> 534, never forwarded; forwarded when TLS not required",
          login_before_tls)

    # ---- LPSV / LPRT / EPSV ALL --------------------------------------------------------

    def long_addresses(t):
        mark = vs.log_mark()
        c = login(t)
        single_line(c.cmd("LPSV"), 502, "LPSV")
        single_line(c.cmd("LPRT 4,4,127,0,0,1,2,4,1"), 502, "LPRT")
        retr(c, ctx, "/pub/small.bin", 64 * H.KiB + 1, sha_small)
        cmds = sync_quit(c, vs, mark)
        check(not {"LPSV", "LPRT"} & set(verb(x) for x in cmds), "LPSV/LPRT reached the backend: %r" % cmds)

    s.run("LPSV/LPRT -> 502, never forwarded (explicit)", long_addresses, std)
    s.run("LPSV/LPRT -> 502, never forwarded (implicit)", long_addresses, im)

    def epsv_all(t):
        mark = vs.log_mark()
        c = login(t)
        single_line(c.cmd("EPSV ALL"), 200, "EPSV ALL")
        single_line(c.cmd("PASV"), 501, "PASV after EPSV ALL")
        single_line(c.cmd("PORT 127,0,0,1,100,100"), 501, "PORT after EPSV ALL")
        single_line(c.cmd("EPRT |1|127.0.0.1|25700|"), 501, "EPRT after EPSV ALL")
        retr(c, ctx, "/pub/small.bin", 64 * H.KiB + 1, sha_small, epsv=True)
        cmds = sync_quit(c, vs, mark)
        check(not [x for x in cmds if x.upper().startswith("EPSV ALL")], "EPSV ALL reached the backend: %r" % cmds)
        check(not {"PORT", "EPRT"} & set(verb(x) for x in cmds), "PORT/EPRT reached the backend: %r" % cmds)

    s.run("EPSV ALL -> 200, then PASV/PORT/EPRT 501, EPSV works (explicit)", epsv_all, std)
    s.run("EPSV ALL -> 200, then PASV/PORT/EPRT 501, EPSV works (implicit)", epsv_all, im)

    # ---- FEAT ----------------------------------------------------------------------------

    def feat_case(t, backend, expect_raw_has, logged_in, tls):
        raw = raw_feat(backend)
        raw_lines = [ln.strip().upper() for ln in raw[1].split("\n")]
        for want in expect_raw_has:
            check(want in raw_lines, "backend %s's own FEAT lacks %r (so stripping is not exercised): %r"
                  % (backend.name, want, raw[1]))
        c = H.Ctl(t, ctx=ctx)
        if tls and not t.implicit:
            c.auth_tls(ctx)
        if logged_in:
            c.login()
        got = c.cmd("FEAT")
        c.close()
        ln = t.listener
        # RFC 4217 §5: the FEAT reply MUST list AUTH, PBSZ and PROT; vsftpd, ProFTPD and IIS
        # list them in every state, MS-FTPS on implicit sessions too ("informational").
        want = expected_feat(raw, auth=True,
                             ccc=ln["policy"].get("ccc", False),
                             eprt=ln.get("active", {}).get("enabled", True))
        check_eq(got[0], 211, "FEAT reply code")
        check_eq(got[1].split("\n"), want, "FEAT reply lines on %s (backend %s, %s, %s)" % (
            t.name, backend.name, "TLS" if tls else "clear", "logged in" if logged_in else "before login"))

    vs_owned = ["EPRT", "EPSV"]
    s.run("FEAT vsftpd, explicit, before TLS and login: exact merge with AUTH TLS/SSL",
          feat_case, std, vs, vs_owned, False, False)
    s.run("FEAT vsftpd, explicit, TLS, before login: exact merge, AUTH still listed (RFC 4217 §5)",
          feat_case, std, vs, vs_owned, False, True)
    s.run("FEAT vsftpd, explicit, TLS, logged in: exact merge", feat_case, std, vs, vs_owned, True, True)
    s.run("FEAT vsftpd, policy.ccc: exact merge with CCC", feat_case, ex, vs, vs_owned, True, True)
    s.run("FEAT vsftpd, active.enabled false: exact merge without EPRT", feat_case, opn, vs, vs_owned, False, False)
    s.run("FEAT vsftpd, implicit: exact merge, AUTH listed (MS-FTPS: informational)", feat_case, im, vs,
          vs_owned, False, True)

    def py_feat(t, backend, logged_in, tls, has):
        if t is None:
            raise H.Skip("pyftpdlib (python3-pyftpdlib) is not installed; run tests/setup-deps.sh")
        feat_case(t, backend, has, logged_in, tls)

    py_owned = ["AUTH TLS", "AUTH SSL", "PBSZ", "PROT", "CCC", "EPRT", "EPSV"]
    s.run("FEAT pyftpdlib (claims TLS), explicit, before TLS: its AUTH/PBSZ/PROT/CCC dropped, ours added",
          py_feat, pyt, py, False, False, py_owned)
    s.run("FEAT pyftpdlib (claims TLS), explicit, TLS, logged in: exact merge",
          py_feat, pyt, py, True, True, py_owned)
    s.run("FEAT pyftpdlib (claims TLS), implicit: exact merge", py_feat, pyim, py, False, True, py_owned)

    def py_nofeat():
        if pynf is None:
            raise H.Skip("pyftpdlib (python3-pyftpdlib) is not installed; run tests/setup-deps.sh")
        raw = raw_feat(pynofeat)
        check(raw[0] >= 500, "the 'nofeat' pyftpdlib answered FEAT with %r" % raw[1])
        feat_case(pynf, pynofeat, [], False, False)
        c = H.Ctl(pynf, ctx=ctx).secure_login(ctx, "P")
        check_eq(c.cmd("FEAT")[1].split("\n"), ["211-Features:"] + own_feat_lines(True, False, True) + ["211 End"],
                 "FEAT under TLS, backend without FEAT")
        c.close()

    s.run("FEAT pyftpdlib without FEAT (500): '211-Features:' + own lines + '211 End'", py_nofeat)

    def py_transfer():
        if pyt is None:
            raise H.Skip("pyftpdlib (python3-pyftpdlib) is not installed; run tests/setup-deps.sh")
        sha = py.add_pub("py.bin", 3 * H.MiB + 5)
        for t in (pyt, pyim):
            c = login(t)
            check_code(c.cmd("TYPE I"), 200, "TYPE I")  # pyftpdlib converts line ends in ASCII mode
            retr(c, ctx, "/pub/py.bin", 3 * H.MiB + 5, sha)
            data = os.urandom(H.MiB + 1)
            stor(c, ctx, "/up/py-%s.bin" % t.name, data)
            check_code(c.cmd("QUIT"), 221, "QUIT")
            c.close()
            check_eq(H.sha256_file(py.up_path("py-%s.bin" % t.name)), H.sha256_bytes(data), "stored on pyftpdlib")

    s.run("pyftpdlib backend: RETR/STOR explicit and implicit (sha256)", py_transfer)

    # ---- REIN ------------------------------------------------------------------------------

    def rein_explicit():
        mark = vs.log_mark()
        c = H.Ctl(std, ctx=ctx).secure_login(ctx, "P")
        retr(c, ctx, "/pub/small.bin", 64 * H.KiB + 1, sha_small)
        pids_before = set(p for p, _ in vs.commands_since(mark))
        r = c.cmd("REIN")
        check_eq(r, c.greeting, "REIN's reply (the new backend greeting)")
        c.stop_tls()  # TLS shut down after the reply: clear again, as at connect
        single_line(c.cmd("PBSZ 0"), 503, "PBSZ after REIN (clear again)")
        single_line(c.cmd("PROT P"), 503, "PROT P after REIN")
        single_line(c.cmd("USER anonymous"), 534, "USER in clear after REIN")
        check_code(c.cmd("FEAT"), 211, "FEAT after REIN")
        c.secure_login(ctx, "P")  # AUTH TLS again on the same TCP connection
        retr(c, ctx, "/pub/ten.bin", 10 * H.MiB, sha_ten)
        data = os.urandom(2 * H.MiB + 3)
        stor(c, ctx, "/up/after-rein.bin", data)
        cmds = vs.commands_since(mark)
        sync_quit(c, vs, mark)
        H.check_stored(vs, "after-rein.bin", len(data), H.sha256_bytes(data), "STOR after REIN")
        check("REIN" not in [verb(x) for _, x in cmds], "REIN reached the backend: %r" % cmds)
        after = [p for p, x in cmds if verb(x) == "STOR"]
        check(after and after[0] not in pids_before,
              "the login after REIN did not use a new backend session (pids %r then %r)" % (pids_before, after))

    s.run("REIN explicit: 220, TLS closed, clear as at connect; AUTH + login + RETR/STOR again (sha256)",
          rein_explicit)

    def rein_clear():
        c = H.Ctl(opn, ctx=ctx)
        c.login()
        check_eq(c.cmd("REIN"), c.greeting, "REIN on a clear session")
        check_code(c.cmd("NOOP"), 530, "NOOP after REIN (logged out; still clear)")
        c.login()
        retr(c, ctx, "/pub/small.bin", 64 * H.KiB + 1, sha_small, tls=False)
        c.close()

    s.run("REIN on a clear session: 220, logged out, the session goes on in clear", rein_clear)

    def rein_implicit():
        mark = vs.log_mark()
        c = H.Ctl(im, ctx=ctx)
        c.login()
        retr(c, ctx, "/pub/small.bin", 64 * H.KiB + 1, sha_small)
        old = c.sock.session
        r = c.cmd("REIN")
        check_eq(r, c.greeting, "REIN's reply (the new backend greeting)")
        c.stop_tls()
        c.start_tls(ctx)  # MS-FTPS: a fresh implicit handshake on the same TCP connection
        check(not c.sock.session_reused, "the handshake after REIN resumed a session")
        check(c.sock.session.id != old.id, "the same TLS session after REIN")
        check_code(c.cmd("NOOP"), 530, "NOOP after REIN (logged out, no second greeting)")
        check_reply(c.cmd("PBSZ 0"), 200, "PBSZ=0", "PBSZ 0 after REIN (implicit)")
        c.login()
        retr(c, ctx, "/pub/ten.bin", 10 * H.MiB, sha_ten)  # PROT P again from the start
        data = os.urandom(2 * H.MiB + 5)
        stor(c, ctx, "/up/after-rein-implicit.bin", data)
        cmds = sync_quit(c, vs, mark)
        H.check_stored(vs, "after-rein-implicit.bin", len(data), H.sha256_bytes(data), "STOR after REIN")
        check("REIN" not in [verb(x) for x in cmds], "REIN reached the backend: %r" % cmds)

    s.run("REIN implicit: 220, TLS shutdown, fresh handshake; login + RETR/STOR again (sha256)", rein_implicit)

    # ---- during a transfer: ABOR, STAT, NOOP ---------------------------------------------

    def abor_download(t):
        mark = vs.log_mark()
        c = login(t)
        d = open_transfer(c, ctx, "RETR /pub/big.bin", "RETR")
        got = 0
        while got < 512 * H.KiB:
            b = d.recv(65536)
            check(b, "the download ended after %d bytes" % got)
            got += len(b)
        c.send(b"ABOR\r\n")
        r1 = c.reply(15)
        r2 = c.reply(15)
        single_line(r1, 426, "first reply after ABOR (the transfer's)")
        single_line(r2, (225, 226), "second reply after ABOR (ABOR's own)")
        how, rest = H.recv_until_closed(d, 15, limit=64 * H.MiB)
        d.close()
        check(how != "timeout", "the data connection was not torn down after ABOR")
        check(got + len(rest) < 48 * H.MiB, "the whole file arrived despite ABOR")
        check(vs.wait_command(lambda x: "ABOR" in x.upper(), mark, 10), "the backend never saw ABOR")
        retr(c, ctx, "/pub/ten.bin", 10 * H.MiB, sha_ten)
        data = os.urandom(H.MiB + 9)
        stor(c, ctx, "/up/after-abor-%s.bin" % t.name, data)
        single_line(c.cmd("ABOR"), (225, 226), "ABOR with no transfer (forwarded)")
        sync_quit(c, vs, mark)
        H.check_stored(vs, "after-abor-%s.bin" % t.name, len(data), H.sha256_bytes(data), "STOR after ABOR")

    s.run("ABOR mid-download: 426 + 225/226, data torn down, new RETR/STOR (sha256) (explicit)", abor_download, std)
    s.run("ABOR mid-download: 426 + 225/226, data torn down, new RETR/STOR (sha256) (implicit)", abor_download, im)

    def abor_upload(t):
        mark = vs.log_mark()
        c = login(t)
        d = open_transfer(c, ctx, "STOR /up/aborted-%s.bin" % t.name, "STOR")
        d.sendall(os.urandom(2 * H.MiB))
        c.send(b"ABOR\r\n")
        single_line(c.reply(15), 426, "first reply after ABOR (the transfer's)")
        single_line(c.reply(15), (225, 226), "second reply after ABOR (ABOR's own)")
        how, _ = H.recv_until_closed(d, 15)
        d.close()
        check(how != "timeout", "the data connection was not torn down after ABOR")
        check(vs.wait_command(lambda x: "ABOR" in x.upper(), mark, 10), "the backend never saw ABOR")
        data = os.urandom(3 * H.MiB + 1)
        stor(c, ctx, "/up/after-abor-up-%s.bin" % t.name, data)
        retr(c, ctx, "/pub/small.bin", 64 * H.KiB + 1, sha_small)
        sync_quit(c, vs, mark)
        H.check_stored(vs, "after-abor-up-%s.bin" % t.name, len(data), H.sha256_bytes(data), "STOR after ABOR")

    s.run("ABOR mid-upload: 426 + 225/226, data torn down, new STOR/RETR (sha256) (explicit)", abor_upload, std)
    s.run("ABOR mid-upload: 426 + 225/226, data torn down, new STOR/RETR (sha256) (implicit)", abor_upload, im)

    def abor_synch():
        c = H.Ctl(fk, ctx=ctx).secure_login(ctx, "P")
        d = open_transfer(c, ctx, "RETR endless", "RETR from the scripted backend")
        got = 0
        while got < 256 * H.KiB:
            b = d.recv(65536)
            check(b, "the endless download ended after %d bytes" % got)
            got += len(b)
        c.send(b"ABOR\r\n")
        check_reply(c.reply(15), 426, "Transfer aborted by ABOR", "the backend's 426, relayed")
        check_reply(c.reply(15), 226, "ABOR successful", "the backend's ABOR reply, relayed")
        how, _ = H.recv_until_closed(d, 15, limit=1 << 40)
        d.close()
        check(how != "timeout", "the data connection was not torn down after ABOR")
        check_code(c.cmd("NOOP"), 200, "NOOP afterwards")
        c.close()
        with fake.lock:
            oob, lines = list(fake.oob), list(fake.abor_lines)
        check_eq(len(lines), 1, "ABOR lines the backend got (%r)" % lines)
        # BSD/RFC 959 §4.1.3: IAC IP in band, IAC sent urgent (the Synch), then DM and ABOR.
        check(lines[0].endswith(b"\xf2ABOR") and b"\xff\xf4" in lines[0],
              "the ABOR line lacks Telnet IP (IAC 0xF4) and DM (0xF2): %r" % lines[0])
        check_eq(oob, [b"\xff"], "the TCP urgent byte(s) the backend received")

    s.run("ABOR during a transfer reaches the backend with Telnet IP + Synch (TCP urgent)", abor_synch)

    def stat_noop_download(t):
        mark = vs.log_mark()
        c = login(t)
        d = open_transfer(c, ctx, "RETR /pub/big.bin", "RETR")
        d.settimeout(30)
        h = H.hashlib.sha256()
        got = [0]

        def read(n):
            while n > 0:
                b = d.recv(min(n, 65536))
                if not b:
                    return False
                h.update(b)
                got[0] += len(b)
                n -= len(b)
            return True

        check(read(H.MiB), "the download ended early")
        last = 0
        for i in range(3):
            check_reply(c.cmd("NOOP", timeout=10), 200, "NOOP ok", "NOOP during the download (#%d)" % i)
            code, text = c.cmd("STAT", timeout=10)
            lines = text.split("\n")
            check(code == 213 and lines[0].startswith("213-") and lines[-1].startswith("213 ") and len(lines) >= 3,
                  "STAT during the download: %r" % text)
            m = re.search(r"(\d+) bytes to the client", text)
            check(m, "STAT reply has no byte count to the client: %r" % text)
            n = int(m.group(1))
            check(got[0] <= n <= 48 * H.MiB and n >= last,
                  "STAT says %d bytes to the client; the client has %d, previous %d" % (n, got[0], last))
            last = n
            time.sleep(0.1)  # a slow reader
            check(read(4 * H.MiB), "the download ended early")
        check(got[0] < 48 * H.MiB, "the download was over before the checks")
        while True:
            b = d.recv(256 * H.KiB)
            if not b:
                break
            h.update(b)
            got[0] += len(b)
        d.close()
        check_eq((got[0], h.hexdigest()), (48 * H.MiB, sha_big), "download with NOOP/STAT in between (size, sha256)")
        check_code(c.reply(30), 226, "final reply")
        cmds = sync_quit(c, vs, mark)
        check(not {"NOOP", "STAT"} & set(verb(x) for x in cmds),
              "NOOP/STAT during the transfer reached the backend: %r" % cmds)

    s.run("NOOP '200 NOOP ok' and STAT 213 multi-line during a slow download; sha256 intact (explicit)",
          stat_noop_download, std)
    s.run("NOOP and STAT during a slow download; sha256 intact (implicit)", stat_noop_download, im)

    def stat_during_upload():
        c = login(std)
        d = open_transfer(c, ctx, "STOR /up/stat-upload.bin", "STOR")
        data = os.urandom(8 * H.MiB)
        d.sendall(data[:4 * H.MiB])
        check_reply(c.cmd("NOOP", timeout=10), 200, "NOOP ok", "NOOP during the upload")
        code, text = c.cmd("STAT", timeout=10)
        m = re.search(r"(\d+) bytes to the server", text)
        check(code == 213 and m, "STAT during the upload: %r" % text)
        check(int(m.group(1)) <= 4 * H.MiB, "STAT counts more than was sent: %r" % text)
        d.sendall(data[4 * H.MiB:])
        d.settimeout(30)
        d = d.unwrap()
        d.close()
        check_code(c.reply(30), 226, "final reply")
        c.close()
        H.check_stored(vs, "stat-upload.bin", len(data), H.sha256_bytes(data), "upload with NOOP/STAT in between")

    s.run("NOOP and STAT during an upload; the stored file is intact (sha256)", stat_during_upload)

    # ---- 522 when the data TLS handshake fails ------------------------------------------

    def data_tls_fails(t):
        mark = vs.log_mark()
        c = login(t)
        addr = c.pasv()
        d = socket.create_connection(addr, timeout=30)
        check_code(c.cmd("RETR /pub/ten.bin"), 150, "RETR")
        d.sendall(b"this is not a TLS ClientHello\r\n" * 8)
        r = c.reply(20)
        single_line(r, 522, "after a failed data TLS handshake")
        how, data = H.recv_until_closed(d, 10)
        d.close()
        check(how != "timeout", "the data connection stayed open after the failed handshake")
        check(len(data) < 64, "%d bytes came over the failed data connection" % len(data))
        # The backend's own final reply for that RETR must not come next.
        check_reply(c.cmd("NOOP", timeout=20), 200, "NOOP ok.", "the reply after 522 (backend's NOOP)")
        retr(c, ctx, "/pub/ten.bin", 10 * H.MiB, sha_ten)
        check_code(c.cmd("PWD"), 257, "PWD")
        sync_quit(c, vs, mark)

    s.run("data TLS handshake fails after 150 -> 522, backend's reply swallowed, session goes on (explicit)",
          data_tls_fails, std)
    s.run("data TLS handshake fails after 150 -> 522, backend's reply swallowed, session goes on (implicit)",
          data_tls_fails, im)

    # ---- QUIT and everything else ------------------------------------------------------

    def quit_and_forward(t):
        mark = vs.log_mark()
        c = login(t)
        check_eq(c.cmd("SYST"), (215, "215 UNIX Type: L8"), "SYST (forwarded, vsftpd's reply)")
        check_code(c.cmd("HELP"), 214, "HELP (forwarded)")
        check_code(c.cmd("STAT"), 211, "STAT without a transfer (forwarded)")
        check_code(c.cmd("OPTS UTF8 ON"), 200, "OPTS UTF8 ON (forwarded)")
        check_code(c.cmd("SIZE /pub/small.bin"), 213, "SIZE (forwarded)")
        check_code(c.cmd("QUIT"), 221, "QUIT")
        how, rest = H.recv_until_closed(c.sock, 10)
        c.close()
        check(how in ("eof", "reset") or how.startswith("ssl-error"), "after QUIT's reply: %s %r" % (how, rest[:80]))
        check_eq(rest, b"", "bytes after QUIT's reply")
        check(vs.wait_command(lambda x: x.upper() == "QUIT", mark, 10), "the backend never saw QUIT")
        cmds = [verb(x) for _, x in vs.commands_since(mark)]
        for w in ("SYST", "HELP", "STAT", "OPTS", "SIZE"):
            check(w in cmds, "%s was not forwarded: %r" % (w, cmds))

    s.run("QUIT 221 then both connections closed; SYST/HELP/STAT/OPTS/SIZE forwarded (explicit)",
          quit_and_forward, std)
    s.run("QUIT 221 then both connections closed; SYST/HELP/STAT/OPTS/SIZE forwarded (implicit)",
          quit_and_forward, im)


if __name__ == "__main__":
    H.main_wrapper("command_table", body, need_bytes=512 * H.MiB)
