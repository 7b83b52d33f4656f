#!/usr/bin/python3
"""Uploads whose data connection ends with a bare FIN (no TLS close_notify),
as some clients do after the last byte: with the default policy the proxy
treats that as a truncation (426, the backend's data connection is reset, the
backend logs FAIL); with "upload_requires_close_notify": false it accepts the
upload (226, the stored file is byte-identical), vsftpd's strict_ssl_read_eof=NO.
In that mode a connection cut by the client's reset can reach the proxy as a
plain end of stream (the kernel reports some resets as EOF), so it is not
tested as a failure: the mode trades that detection for compatibility.
"""
import hashlib
import os
import time

import harness as H
from harness import check, check_eq

DATA = os.urandom(4 * H.MiB + 3)
SHA = hashlib.sha256(DATA).hexdigest()


def abrupt_upload(target, name):
    """Every byte, then close() without unwrap(): FIN, no close_notify, nothing read."""
    f = H.ftplib_connect(target)
    try:
        f.voidcmd("TYPE I")
        conn = f.transfercmd("STOR /up/" + name)
        conn.sendall(DATA)
        time.sleep(0.05)
        conn.close()
        try:
            return f.voidresp()
        except Exception as e:  # noqa: BLE001 - 4xx/5xx replies raise
            return str(e)
    finally:
        H.quit_quietly(f)


def body(s, env):
    if H.SELFCHECK:
        s.run("upload close_notify policy (tests ftpsgate itself)", H.needs_proxy)
        return
    vs = env.backend("vs1")
    strict = env.front(vs, "strict")
    lenient = env.front(vs, "lenient", policy={"upload_requires_close_notify": False})
    env.start(strict, lenient)

    def strict_case():
        mark = vs.log_mark()
        name = "strict-%s.bin" % os.urandom(3).hex()
        reply = abrupt_upload(strict, name)
        check(reply.startswith("426"), "final reply for a FIN-terminated upload (default policy): %r" % reply)
        t = vs.wait_transfer("/up/" + name, mark, timeout=30)
        check(t is not None and not t[0], "the backend must log the upload as failed: %r" % (t,))

    def lenient_case():
        name = "lenient-%s.bin" % os.urandom(3).hex()
        reply = abrupt_upload(lenient, name)
        check(reply.startswith("226"), "final reply with upload_requires_close_notify false: %r" % reply)
        H.check_stored(vs, name, len(DATA), SHA, "FIN-terminated upload")
        check("accepted by policy" in env.proxy.log_text(), "no log line for the accepted bare-FIN upload")

    s.run("default policy: upload ending in a bare FIN -> 426, backend logs FAIL", strict_case)
    s.run("upload_requires_close_notify false: bare FIN accepted, 226, file intact (sha256)", lenient_case)


if __name__ == "__main__":
    H.main_wrapper("upload_close_notify", body, need_bytes=64 * H.MiB)
