#!/usr/bin/python3
"""Command and size policy per listener (issue 12): policy.read_only,
policy.deny_commands and policy.max_upload_bytes, against real servers.

Listeners of one ftpsgate:
  ro        read_only, in front of vsftpd (whose /up is writable: only ftpsgate refuses)
  deny      deny_commands ["DELE", "RNFR", "NLST", "SITE"], vsftpd
  cap       max_upload_bytes 1 MiB, data_protection "any" (PROT P and PROT C), vsftpd
  cap-pro   max_upload_bytes 1 MiB, proftpd (its xferlog marks a transfer complete or not)

Checked: each refused command gets the RFC 959 reply ftpsgate promises (550 / 532 for a
file action, 502 for a command), never reaches the backend (its own command log), and
changes nothing on disk; the session goes on; what is allowed still works (sha256).
An upload one byte over the limit gets 552 (ftplib, curl, raw PROT C), the backend's data
connection is reset so the server records a failed upload (vsftpd "FAIL UPLOAD",
proftpd xferlog status "i") and keeps no complete file; an upload exactly at the limit
passes byte for byte; the cut is logged with the byte count and counted.
"""

import http.client
import io
import os
import re
import socket
import ssl
import sys
import time

sys.dont_write_bytecode = True
import backends as B  # noqa: E402
import harness as H  # noqa: E402
from harness import check, check_code, check_eq  # noqa: E402

LIMIT = 1024 * 1024


def metrics(port):
    c = http.client.HTTPConnection(H.HOST, port, timeout=10)
    try:
        c.request("GET", "/metrics")
        body = c.getresponse().read().decode()
    finally:
        c.close()
    out = {}
    for ln in body.splitlines():
        if ln and not ln.startswith("#"):
            name, value = ln.rsplit(" ", 1)
            out[name] = int(float(value))
    return out


def body(s, env):
    if H.SELFCHECK:
        s.run("gate policy (test ftpsgate itself)", H.needs_proxy)
        return
    vs = B.start_backend(env, "vsftpd", "vs1")
    pro = B.start_backend(env, "proftpd", "pro1")
    sha_pub = vs.add_pub("keep.bin", 200 * 1024)
    pro.add_pub("keep.bin", 1000)
    env.proxy.admin_port = H.free_port()
    T = {
        "ro": env.front(vs, name="ro", policy={"read_only": True}),
        "deny": env.front(vs, name="deny", policy={"deny_commands": ["DELE", "rnfr", "NLST", "SITE"]}),
        "cap": env.front(vs, name="cap", protection="any", policy={"max_upload_bytes": LIMIT}),
        "cap-pro": env.front(pro, name="cap-pro", policy={"max_upload_bytes": LIMIT}),
    }
    env.start(*T.values())
    ca = env.certs.ca

    def ctl(tname, prot="P", user=H.FTP_USER):
        ctx = ssl.create_default_context(cafile=ca)
        c = H.Ctl(T[tname], timeout=20)
        c.auth_tls(ctx)
        c.login(user)
        if prot:
            check_code(c.cmd("PBSZ 0"), 200, "PBSZ")
            check_code(c.cmd("PROT " + prot), 200, "PROT " + prot)
        c.ctx = ctx
        return c

    def settle(b):
        """The backend's log position once it has been still for 0.3 s."""
        last, still, deadline = None, time.time(), time.time() + 5
        while time.time() < deadline:
            m = b.log_mark()
            if m != last:
                last, still = m, time.time()
            elif time.time() - still >= 0.3:
                break
            time.sleep(0.05)
        return last

    def up_listing(b):
        return sorted(os.listdir(b.up))

    # ---- read_only ------------------------------------------------------------------------

    READ_ONLY = [("STOR /up/new.bin", 532), ("STOU", 532), ("APPE /up/new.bin", 550), ("DELE /pub/keep.bin", 550),
                 ("RMD /pub", 550), ("XRMD /pub", 550), ("MKD /up/dir", 550), ("XMKD /up/dir", 550),
                 ("RNFR /pub/keep.bin", 550), ("RNTO /pub/moved.bin", 532), ("SITE CHMOD 777 /pub/keep.bin", 502),
                 ("MFMT 20200101000000 /pub/keep.bin", 550), ("stor /up/lower.bin", 532)]

    def read_only():
        mark = settle(vs)
        before = up_listing(vs)
        c = ctl("ro")
        for line, code in READ_ONLY:
            check_code(c.cmd(line), code, line)
        # A data channel prepared before a refused STOR is not left open for a transfer.
        host, port = c.pasv()
        check_code(c.cmd("STOR /up/after-pasv.bin"), 532, "STOR after PASV")
        check(H.refused_how((host, port), timeout=5) in ("refused", "reset", "eof"),
              "the passive port of a refused STOR still takes a connection")
        check_code(c.cmd("NOOP"), 200, "NOOP: the session goes on")
        # Reads still work.
        addr = c.pasv()
        d = socket.create_connection(addr, timeout=20)
        check_code(c.cmd("RETR /pub/keep.bin"), 150, "RETR")
        d = c.wrap_data(d, c.ctx)
        how, data = H.recv_until_closed(d, 30, limit=H.MiB)
        d.close()
        check_eq((len(data), H.sha256_bytes(data)), (200 * 1024, sha_pub), "RETR through the read-only listener")
        check_code(c.reply(30), 226, "RETR final reply")
        c.cmd("QUIT")
        c.close()
        settle(vs)
        sent = [cmd.split(" ", 1)[0].upper() for cmd in vs.command_lines(mark)]
        for line, _ in READ_ONLY:
            v = line.split(" ", 1)[0].upper()
            check(v not in sent, "vsftpd received %s through the read-only listener: %s" % (v, sent))
        check("RETR" in sent, "vsftpd did not see the RETR (the command log is not being read?): %s" % sent)
        check_eq(up_listing(vs), before, "files in vsftpd's /up after the refused commands")
        check(os.path.exists(vs.pub_path("keep.bin")), "/pub/keep.bin is gone")

    s.run("read_only: STOR/STOU/RNTO 532, APPE/DELE/RMD/MKD/RNFR/MFMT 550, SITE 502; none reaches vsftpd; "
          "nothing changes; RETR still works", read_only)

    def read_only_clients():
        mark = settle(vs)
        src = os.path.join(env.client_dir, "ro-up.bin")
        H.make_file(src, 10000)
        r, trace = H.curl(T["ro"], ["-T", src, T["ro"].url("/up/curl-ro.bin")])
        check(r.returncode != 0, "curl's upload through the read-only listener succeeded")
        check(re.search(r"^< 532 ", trace, re.M), "curl did not get 532 for STOR:\n%s" % trace[-800:])
        r, trace = H.curl(T["ro"], ["-Q", "-DELE /pub/keep.bin", T["ro"].url("/pub/")])
        check(r.returncode != 0, "curl's DELE through the read-only listener succeeded")
        check(re.search(r"^< 550 ", trace, re.M), "curl did not get 550 for DELE:\n%s" % trace[-800:])
        settle(vs)
        sent = [cmd.split(" ", 1)[0].upper() for cmd in vs.command_lines(mark)]
        check("STOR" not in sent and "DELE" not in sent, "vsftpd received STOR or DELE: %s" % sent)
        check(not os.path.exists(vs.up_path("curl-ro.bin")), "curl's file is in vsftpd's /up")

    s.run("read_only with curl: upload gets 532, -Q DELE gets 550; vsftpd sees neither", read_only_clients)

    # ---- deny_commands ------------------------------------------------------------------------

    def denied():
        mark = settle(vs)
        c = ctl("deny")
        for line in ("DELE /pub/keep.bin", "dele /pub/keep.bin", "RNFR /pub/keep.bin", "NLST /pub",
                     "SITE HELP"):
            check_code(c.cmd(line), 502, line)
        check_code(c.cmd("MKD /up/made-here"), 257, "MKD (not denied)")
        check_code(c.cmd("RMD /up/made-here"), 250, "RMD (not denied)")
        addr = c.pasv()
        d = socket.create_connection(addr, timeout=20)
        check_code(c.cmd("LIST /pub"), 150, "LIST (not denied)")
        d = c.wrap_data(d, c.ctx)
        how, data = H.recv_until_closed(d, 30)
        d.close()
        check(b"keep.bin" in data, "LIST /pub does not name keep.bin: %r" % data[:300])
        check_code(c.reply(30), 226, "LIST final reply")
        c.cmd("QUIT")
        c.close()
        settle(vs)
        sent = [cmd.split(" ", 1)[0].upper() for cmd in vs.command_lines(mark)]
        for v in ("DELE", "RNFR", "NLST", "SITE"):
            check(v not in sent, "vsftpd received the denied %s: %s" % (v, sent))
        for v in ("MKD", "RMD", "LIST"):
            check(v in sent, "vsftpd did not receive the allowed %s: %s" % (v, sent))
        check(os.path.exists(vs.pub_path("keep.bin")), "/pub/keep.bin is gone")

    s.run("deny_commands: DELE (any case), RNFR, NLST, SITE get 502 and never reach vsftpd; MKD, RMD, LIST pass",
          denied)

    def denied_feat():
        c = ctl("deny")
        code, text = c.cmd("FEAT")
        check_eq(code, 211, "FEAT")
        c.cmd("QUIT")
        c.close()
        # vsftpd's FEAT lists no denied verb; the point is that FEAT still works on the listener.
        check("PROT" in text, "FEAT lacks PROT: %r" % text)

    s.run("deny_commands: FEAT still answered (211 with PROT)", denied_feat)

    # ---- max_upload_bytes ---------------------------------------------------------------------

    def cut_ftplib(tname, backend, size, name, expect_cut):
        data = os.urandom(size)
        ctx = ssl.create_default_context(cafile=ca)
        f = H.FTPS(context=ctx, timeout=30)
        f.connect(T[tname].host, T[tname].port)
        f.auth()
        f.login(backend.user if hasattr(backend, "user") else H.FTP_USER, H.PASSWORD)
        f.prot_p()
        got = None
        try:
            got = f.storbinary("STOR /up/" + name, io.BytesIO(data))
        except (ConnectionError, ssl.SSLError, OSError) as e:
            # The data connection was reset mid-upload; the 552 is then still unread on control.
            try:
                got = f.getresp()
            except Exception as e2:  # noqa: BLE001 - error_perm carries the reply
                got = str(e2)
            got = "%s (after %s)" % (got, type(e).__name__)
        except Exception as e:  # noqa: BLE001 - error_perm 552 raised by storbinary itself
            got = str(e)
        try:
            noop = f.sendcmd("NOOP")
            check(noop.startswith("200"), "NOOP after the upload: %r (the session must go on)" % noop)
        finally:
            try:
                f.quit()
            except Exception:  # noqa: BLE001
                pass
            f.close()
        if expect_cut:
            check(str(got).startswith("552"), "STOR of %d bytes (limit %d): reply %r, want 552" % (size, LIMIT, got))
        else:
            check(str(got).startswith("226"), "STOR of %d bytes (limit %d): reply %r, want 226" % (size, LIMIT, got))
        return H.sha256_bytes(data)

    def over_limit_vsftpd():
        mark = settle(vs)
        cuts = metrics(env.proxy.admin_port).get("ftpsgate_upload_limit_cuts", 0)
        logmark = env.proxy.log_mark()
        cut_ftplib("cap", vs, LIMIT + 1, "over.bin", True)
        check(H.wait_until(lambda: [t for t in vs.transfers_since(mark) if t[2].endswith("/over.bin")], 10),
              "vsftpd logged no transfer for over.bin")
        xfers = [t for t in vs.transfers_since(mark) if t[2].endswith("/over.bin")]
        check_eq([t[0] for t in xfers], [False], "vsftpd's verdict on over.bin (OK/FAIL UPLOAD)")
        check(xfers[0][3] <= LIMIT, "vsftpd received %d bytes, more than the limit" % xfers[0][3])
        p = vs.up_path("over.bin")
        size = os.path.getsize(p) if os.path.exists(p) else -1
        check(size <= LIMIT, "vsftpd keeps %d bytes of over.bin: more than the limit" % size)
        text = env.proxy.log_since(logmark)
        m = re.search(r"upload cut at (\d+) bytes: over the (\d+) byte limit", text)
        check(m, "no 'upload cut at N bytes' line in the proxy log")
        check_eq((int(m.group(1)), int(m.group(2))), (LIMIT + 1, LIMIT), "the byte counts of the cut's log line")
        check(H.wait_until(lambda: metrics(env.proxy.admin_port).get("ftpsgate_upload_limit_cuts", 0) == cuts + 1,
                           5), "ftpsgate_upload_limit_cuts did not grow by 1")

    s.run("1 MiB + 1 byte (ftplib, PROT P) -> 552; vsftpd logs FAIL UPLOAD and keeps at most the limit; "
          "logged with the byte count, counted", over_limit_vsftpd)

    def at_limit(tname, backend):
        mark = settle(backend)
        sha = cut_ftplib(tname, backend, LIMIT, "exact.bin", False)
        p = backend.up_path("exact.bin")
        check(H.wait_until(lambda: os.path.exists(p) and os.path.getsize(p) == LIMIT, 10),
              "exact.bin is not complete at %s" % backend.kind)
        check_eq(H.sha256_file(p), sha, "exact.bin's sha256 at %s" % backend.kind)
        if backend is vs:
            check(H.wait_until(lambda: [t for t in vs.transfers_since(mark) if t[2].endswith("/exact.bin")], 10),
                  "vsftpd logged no transfer for exact.bin")
            check_eq([t[0] for t in vs.transfers_since(mark) if t[2].endswith("/exact.bin")], [True],
                     "vsftpd's verdict on exact.bin")
        os.unlink(p)

    s.run("exactly 1 MiB (the limit) passes: 226, sha256 at vsftpd, OK UPLOAD", at_limit, "cap", vs)
    s.run("exactly 1 MiB passes at proftpd too (sha256)", at_limit, "cap-pro", pro)

    def over_limit_proftpd():
        xfer = os.path.join(pro.dir, "proftpd-xfer.log")
        before = os.path.getsize(xfer) if os.path.exists(xfer) else 0
        cut_ftplib("cap-pro", pro, 3 * LIMIT, "over-pro.bin", True)

        def entry():
            if not os.path.exists(xfer):
                return None
            with open(xfer) as f:
                f.seek(before)
                lines = [ln for ln in f.read().splitlines() if "over-pro.bin" in ln]
            return lines or None

        check(H.wait_until(entry, 10), "proftpd's xferlog has no line for over-pro.bin")
        line = entry()[-1].split()
        # xferlog: ... filename transfer-type special-action-flag direction access-mode username service
        # authentication-method authenticated-user-id completion-status (c = complete, i = incomplete)
        check_eq(line[-1], "i", "proftpd's completion status for over-pro.bin (xferlog: %s)" % " ".join(line))
        p = pro.up_path("over-pro.bin")
        size = os.path.getsize(p) if os.path.exists(p) else -1
        check(size <= LIMIT, "proftpd keeps %d bytes of over-pro.bin: more than the limit" % size)

    s.run("3 MiB at proftpd -> 552; its xferlog marks the upload incomplete (i), at most the limit kept",
          over_limit_proftpd)

    def over_limit_curl():
        mark = settle(vs)
        src = os.path.join(env.client_dir, "two.bin")
        H.make_file(src, 2 * LIMIT)
        logmark = env.proxy.log_mark()
        r, trace = H.curl(T["cap"], ["-T", src, T["cap"].url("/up/curl-over.bin")])
        # curl sees the 552 when it reads the control connection before its next write fails; when the
        # reset data connection fails its write first it gives up there (exit 55) without reading it.
        check(r.returncode in (70, 55), "curl's 2 MiB upload over the 1 MiB limit: exit %d, want 70 (curl's "
              "name for 552: remote disk full) or 55 (send failure):\n%s" % (r.returncode, trace[-800:]))
        if r.returncode == 70:
            check(re.search(r"^< 552 ", trace, re.M), "curl exit 70 without a 552 in its trace")
        check(re.search(r"data transfer failed \(552 ", env.proxy.log_since(logmark)),
              "the proxy did not answer the cut upload with 552")
        check(H.wait_until(lambda: [t for t in vs.transfers_since(mark) if t[2].endswith("/curl-over.bin")], 10),
              "vsftpd logged no transfer for curl-over.bin")
        check_eq([t[0] for t in vs.transfers_since(mark) if t[2].endswith("/curl-over.bin")], [False],
                 "vsftpd's verdict on curl's upload")

    s.run("curl -T 2 MiB over the 1 MiB limit: curl fails (552 or the reset), ftpsgate replied 552, vsftpd "
          "FAIL UPLOAD", over_limit_curl)

    def over_limit_clear():
        mark = settle(vs)
        c = ctl("cap", prot="C")
        addr = c.pasv()
        d = socket.create_connection(addr, timeout=20)
        check_code(c.cmd("APPE /up/clear-over.bin"), 150, "APPE")
        sent = 0
        chunk = b"y" * 65536
        try:
            while sent < 4 * LIMIT:
                d.sendall(chunk)
                sent += len(chunk)
        except OSError:
            pass
        d.close()
        code, text = c.reply(30)
        check_eq(code, 552, "APPE over the limit in clear (PROT C): reply (%r)" % text)
        check(sent < 4 * LIMIT, "the proxy took all %d bytes of the upload" % sent)
        check_code(c.cmd("NOOP"), 200, "NOOP after the cut")
        c.cmd("QUIT")
        c.close()
        check(H.wait_until(lambda: [t for t in vs.transfers_since(mark) if t[2].endswith("/clear-over.bin")], 10),
              "vsftpd logged no transfer for clear-over.bin")
        xf = [t for t in vs.transfers_since(mark) if t[2].endswith("/clear-over.bin")]
        check_eq([t[0] for t in xf], [False], "vsftpd's verdict on the clear APPE")
        check(xf[0][3] <= LIMIT, "vsftpd received %d bytes" % xf[0][3])

    s.run("APPE in clear (PROT C) over the limit: the data connection is cut, 552, vsftpd FAIL UPLOAD, "
          "the session goes on", over_limit_clear)


if __name__ == "__main__":
    H.main_wrapper("gate_policy", body)
