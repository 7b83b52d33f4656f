#!/usr/bin/python3
"""An upload cut short by a killed ftpsgate is never a complete file at the backend.

When the process dies (kill -9, the OOM killer), the kernel closes its sockets. A
plain close ends the backend's data connection with a FIN, and the server takes the
bytes it got for the whole upload (vsftpd logs "OK UPLOAD", the scale-out test saw
this). ftpsgate arms SO_LINGER {1, 0} on the backend side of an upload until it ends
it itself, so the kernel resets it instead: the server must log a failed upload.
Downloads are not affected (a killed download's client sees the cut itself).

Cases, each with a fresh ftpsgate killed by its PID with SIGKILL mid-transfer:
passive backend (ftpsgate dials vsftpd's PASV port) and active backend (vsftpd dials
ftpsgate, data_mode "active"); and a completed upload in the same session before the
kill stays OK (the guard is cleared before a normal end).
"""

import io
import os
import signal
import socket
import ssl
import sys
import time

sys.dont_write_bytecode = True
import harness as H  # noqa: E402
from harness import check, check_code, check_eq  # noqa: E402


def body(s, env):
    if H.SELFCHECK:
        s.run("killed upload (test ftpsgate itself)", H.needs_proxy)
        return
    vs = env.backend("vs1")
    t_pasv = env.front(vs, name="pasv")
    t_act = env.front(vs, name="act")
    t_act.listener["backend"]["data_mode"] = "active"
    ca = env.certs.ca

    def start():
        env.start(t_pasv, t_act)

    def killed_mid_upload(t, name):
        start()
        mark = vs.log_mark()
        ctx = ssl.create_default_context(cafile=ca)
        c = H.Ctl(t, timeout=20).secure_login(ctx, "P")
        # A whole upload first: it must stay OK.
        whole = os.urandom(300 * 1024)
        addr = c.pasv()
        d = socket.create_connection(addr, timeout=20)
        check_code(c.cmd("STOR /up/%s-whole.bin" % name), 150, "STOR whole")
        d = c.wrap_data(d, ctx)
        d.sendall(whole)
        d.unwrap().close()
        check_code(c.reply(30), 226, "STOR whole: final reply")
        # Then one the proxy dies in.
        addr = c.pasv()
        d = socket.create_connection(addr, timeout=20)
        check_code(c.cmd("STOR /up/%s-cut.bin" % name), 150, "STOR cut")
        d = c.wrap_data(d, ctx)
        sent = 0
        chunk = os.urandom(64 * 1024)
        while sent < 2 * H.MiB:
            d.sendall(chunk)
            sent += len(chunk)
        # Wait until the backend has some of it, so its data connection is up.
        p = vs.up_path("%s-cut.bin" % name)
        check(H.wait_until(lambda: os.path.exists(p) and os.path.getsize(p) > 0, 10),
              "vsftpd received nothing of the upload")
        os.kill(env.proxy.pid, signal.SIGKILL)
        env.proxy.proc.wait(10)
        for sock in (d, c.sock):
            try:
                sock.close()
            except OSError:
                pass
        check(H.wait_until(lambda: [x for x in vs.transfers_since(mark) if x[2].endswith("%s-cut.bin" % name)], 15),
              "vsftpd logged no end for the cut upload")
        verdicts = {x[2].rsplit("/", 1)[1]: x[0] for x in vs.transfers_since(mark)}
        check_eq(verdicts.get("%s-whole.bin" % name), True, "vsftpd's verdict on the upload that ended normally")
        check_eq(verdicts.get("%s-cut.bin" % name), False,
                 "vsftpd's verdict on the upload ftpsgate died in (True = taken as complete)")
        check_eq(H.sha256_file(vs.up_path("%s-whole.bin" % name)), H.sha256_bytes(whole), "whole upload sha256")

    s.run("kill -9 mid-upload, passive backend: vsftpd logs FAIL UPLOAD (the earlier upload stays OK)",
          killed_mid_upload, t_pasv, "pasv")
    s.run("kill -9 mid-upload, active backend (vsftpd dials ftpsgate): FAIL UPLOAD", killed_mid_upload, t_act, "act")
    start()  # the final checks run on a live proxy


if __name__ == "__main__":
    H.main_wrapper("killed_upload", body)
