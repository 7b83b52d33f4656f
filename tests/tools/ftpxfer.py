#!/usr/bin/python3
"""ftpxfer: one FTPS transfer with Python's ftplib, reporting exactly what the client
saw: the final reply of the transfer (or that none came), what happened on the data
connection, the sha256 of what it received, and the reply to a NOOP after it (a
stray second reply shows there). A library for the tests and a command (one JSON
line on stdout) for the soak, which runs it as a process it may kill.

The client is careful: data TLS resumes the control session, a data connection
that ends without close_notify is an error (Python ignores that by default), and
after a data error it still reads the final reply the server owes.

    ftpxfer.py --host 127.0.0.3 --port 2100 --ca ca.pem [--implicit] --prot P|C \\
        --mode PASV|EPSV|PORT|EPRT --get /pub/f.bin | --put LOCAL --to /up/f.bin \\
        [--source 127.0.0.12] [--skip-pasv-ip] [--timeout 40] --user U --password-env VAR
"""

import argparse
import ftplib
import hashlib
import json
import os
import re
import socket
import ssl
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import harness as H  # noqa: E402
import backends as B  # noqa: E402

KiB = 1024


class Outcome:
    def __init__(self, client):
        self.client = client
        self.reply = None          # code of the transfer's final reply, None when none came
        self.text = ""
        self.control_lost = False  # the control connection ended before a final reply (or the client left)
        self.retry226 = False      # lftp reconnected and a later attempt ended in 226
        self.data_err = None       # what the client saw on the data connection, if it failed
        self.setup_err = None      # login or data-channel setup failed before the transfer
        self.sha = None            # download: sha256 of what the client received
        self.nbytes = None
        self.after = None          # the reply to NOOP after the final reply (ftplib)

    @property
    def saw226(self):
        return self.reply in (226, 250)

    def summary(self):
        if self.setup_err:
            return "setup failed: %s" % self.setup_err[:60]
        if self.saw226:
            return "226"
        retry = ", retry 226" if self.retry226 else ""
        if self.reply is not None:
            return str(self.reply) + retry
        return ("no reply" if self.client == "ftplib" else "no reply read") + retry

    def as_dict(self):
        return {k: getattr(self, k) for k in ("client", "reply", "text", "control_lost", "retry226", "data_err",
                                              "setup_err", "sha", "nbytes", "after")}

    @classmethod
    def from_dict(cls, d):
        o = cls(d.get("client", "?"))
        for k, v in d.items():
            setattr(o, k, v)
        return o


class XferFTPS(B.TopoFTPS):
    """ftplib with PASV/EPSV/PORT/EPRT; data TLS resumes the control session and
    reports a missing close_notify (suppress_ragged_eofs off) instead of hiding it.
    skip_pasv_ip: dial the control connection's host, not the 227 address (as curl)."""

    skip_pasv_ip = False

    def makepasv(self):
        host, port = H.FTPS.makepasv(self)
        if self.skip_pasv_ip:
            host = self.sock.getpeername()[0]
        return host, port

    def ntransfercmd(self, cmd, rest=None):
        conn, size = ftplib.FTP.ntransfercmd(self, cmd, rest)
        if self._prot_p:
            sess = self.sock.session if isinstance(self.sock, ssl.SSLSocket) else None
            try:
                conn = self.context.wrap_socket(conn, server_hostname=self.host, session=sess,
                                                suppress_ragged_eofs=False)
            except Exception:
                conn.close()
                raise
        return conn, size


class ImplicitXferFTPS(H.ImplicitFTPS, XferFTPS):
    pass


def _err(e):
    return ("%s: %s" % (type(e).__name__, e))[:120]


def _read_final(f, o, timeout):
    try:
        f.sock.settimeout(timeout)
        resp = f.getmultiline()
        o.reply, o.text = int(resp[:3]), resp
    except (EOFError, OSError, ValueError) as e:
        o.control_lost = True
        o.text = _err(e)
        return
    try:
        o.after = f.sendcmd("NOOP")[:3]
    except ftplib.Error as e:
        o.after = str(e)[:3]
    except (EOFError, OSError) as e:
        o.after = "lost (%s)" % type(e).__name__


def transfer(host, port, ca, implicit, direction, mode, prot, rpath, local=None, source=None, timeout=40,
             user=H.FTP_USER, password=H.PASSWORD, skip_pasv_ip=False):
    """One RETR (direction "down") of rpath, or STOR (direction "up") of the file local
    to rpath. Returns an Outcome; never raises for what the network or server did."""
    o = Outcome("ftplib")
    ctx = ssl.create_default_context(cafile=ca)
    # A TCP end without close_notify is an error here, not an end of file.
    ctx.options &= ~getattr(ssl, "OP_IGNORE_UNEXPECTED_EOF", 0)
    f = (ImplicitXferFTPS if implicit else XferFTPS)(context=ctx, timeout=timeout)
    f.set_data_mode(mode)
    f.skip_pasv_ip = skip_pasv_ip
    if source:
        f.source_address = (source, 0)
    try:
        try:
            f.connect(host, port, source_address=(source, 0) if source else None)
            if not implicit:
                f.auth()
            f.login(user, password)
            if prot == "P":
                f.prot_p()
            else:
                f.voidcmd("PBSZ 0")
                f.prot_c()
            f.voidcmd("TYPE I")
        except (ftplib.Error, OSError, EOFError) as e:
            o.setup_err = _err(e)
            return o
        try:
            conn = f.transfercmd(("RETR " if direction == "down" else "STOR ") + rpath)
        except ftplib.Error as e:
            # A refusal of the transfer command itself (or its data channel) is its final reply.
            o.reply, o.text = int(str(e)[:3]), str(e)
            return o
        except (OSError, EOFError) as e:
            # The data channel failed (TLS handshake, connect): the server owes a final reply.
            o.data_err = _err(e)
            _read_final(f, o, timeout)
            return o
        try:
            if direction == "down":
                h, n = hashlib.sha256(), 0
                while True:
                    b = conn.recv(256 * KiB)
                    if not b:
                        break
                    h.update(b)
                    n += len(b)
                o.sha, o.nbytes = h.hexdigest(), n
                if isinstance(conn, ssl.SSLSocket):
                    conn.unwrap()
            else:
                with open(local, "rb") as fp:
                    while True:
                        b = fp.read(256 * KiB)
                        if not b:
                            break
                        conn.sendall(b)
                if isinstance(conn, ssl.SSLSocket):
                    conn.unwrap()
        except (OSError, EOFError) as e:
            o.data_err = _err(e)
        finally:
            try:
                conn.close()
            except OSError:
                pass
        _read_final(f, o, timeout)
        return o
    finally:
        if o.after == "200":
            H.quit_quietly(f)  # a clean end: the session's last log lines are its own
        else:
            try:
                f.close()
            except OSError:
                pass


_REPLY = re.compile(r"^(?:\S+ \S+ )?(?:<--- |< )(\d{3})[ -]", re.M)
_XFER_CMD = re.compile(r"^(?:\S+ \S+ )?(?:---> |> )(?:RETR|STOR) ", re.M)
_LFTP_CONNECT = re.compile(r"^(?:\S+ \S+ )?---- Connecting to ", re.M)


def final_from_trace(trace, o):
    """The transfer's final reply (the first non-1xx one after RETR/STOR) in a curl or
    lftp trace. lftp may reconnect and try again: each control connection is one
    attempt; the first decides the outcome, a later 226 is noted (retry226)."""
    starts = [m.start() for m in _LFTP_CONNECT.finditer(trace)] or [0]
    attempts = []
    for a, b in zip(starts, starts[1:] + [len(trace)]):
        part = trace[a:b]
        cmd = _XFER_CMD.search(part)
        if not cmd:
            continue
        final = None
        for m in _REPLY.finditer(part, cmd.end()):
            if int(m.group(1)) >= 200:
                final = (int(m.group(1)), part[m.start():m.start() + 100].strip())
                break
        attempts.append(final)
    if not attempts:
        o.setup_err = "no RETR/STOR in the trace"
        return
    if attempts[0] is None:
        o.control_lost = True
    else:
        o.reply, o.text = attempts[0]
    o.retry226 = any(x is not None and x[0] in (226, 250) for x in attempts[1:])


def main(argv=None):
    ap = argparse.ArgumentParser(description="One FTPS transfer with ftplib; prints a JSON line.")
    ap.add_argument("--host", required=True)
    ap.add_argument("--port", required=True, type=int)
    ap.add_argument("--ca", required=True)
    ap.add_argument("--implicit", action="store_true")
    ap.add_argument("--prot", choices=("P", "C"), default="P")
    ap.add_argument("--mode", choices=("PASV", "EPSV", "PORT", "EPRT"), default="EPSV")
    ap.add_argument("--get")
    ap.add_argument("--put")
    ap.add_argument("--to")
    ap.add_argument("--source")
    ap.add_argument("--skip-pasv-ip", action="store_true")
    ap.add_argument("--timeout", type=float, default=40)
    ap.add_argument("--user", default=H.FTP_USER)
    ap.add_argument("--password-env", default="FTPXFER_PASSWORD", help="environment variable with the password")
    a = ap.parse_args(argv)
    if bool(a.get) == bool(a.put) or (a.put and not a.to):
        ap.error("one of --get RPATH or --put LOCAL --to RPATH")
    socket.setdefaulttimeout(a.timeout)
    o = transfer(a.host, a.port, a.ca, a.implicit, "down" if a.get else "up", a.mode, a.prot, a.get or a.to,
                 local=a.put, source=a.source, timeout=a.timeout, user=a.user,
                 password=os.environ.get(a.password_env, ""), skip_pasv_ip=a.skip_pasv_ip)
    print(json.dumps(o.as_dict()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
