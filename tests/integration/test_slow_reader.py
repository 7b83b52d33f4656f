#!/usr/bin/python3
"""Delivery order and memory: the final reply comes after the bytes, and a slow
reader of the 300 MiB file must not make ftpsgate buffer it (issue 3: "a slow
reader stops the proxy reading the other side; memory stays flat").

Order (DESIGN.md §2: the 226 is released only once every byte of the transfer
was delivered, for downloads once close_notify went to the client): the client
sends RETR of a small file but holds back its data-channel TLS handshake. The
backend sends the file and its 226 at once (checked in vsftpd's log); the proxy
cannot have delivered a byte, so nothing may show on the control connection
until the client has done the handshake and read the data to its end.

The client downloads /pub/big.bin through the proxy under PROT P, reading 64 KiB
every 10 ms for the first 10 s (about 6 MiB/s, against a backend that can send
at over 1 GiB/s), then as fast as it can. A sampler reads the proxy's VmRSS from
/proc every 50 ms. The bound is on memory, not time:

  RSS_BOUND = 64 MiB (plain build). A proxy that let the backend run ahead would
  hold most of the 300 MiB; the design allows a few hundred KiB per data link.
  Under ASan+UBSan (detected from the binary), the allocator's quarantine is
  capped at 16 MiB for this process and the bound is the idle RSS + 96 MiB:
  shadow memory and the quarantine are the sanitizer's, not the proxy's.

While much of the file is still undelivered (over 32 MiB left), nothing may
arrive on the control connection: the 226 comes only after every byte (DESIGN.md §2).
"""

import hashlib
import re
import os
import socket
import sys
import threading
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import harness as H  # noqa: E402
from harness import check, check_code, check_eq  # noqa: E402

RSS_BOUND_KIB = 64 * 1024
SAN_EXTRA_KIB = 96 * 1024
SLOW_SECONDS = 10.0
SLOW_CHUNK = 64 * H.KiB
SLOW_SLEEP = 0.010


def body(s, env):
    vs = env.backend("vs1")
    tgt = env.front(vs, "explicit1", protection="private")
    size = H.BIG
    sha = vs.add_pub("big.bin", size)
    sha_small = vs.add_pub("small.bin", 1000)
    if env.proxy is not None and env.proxy.sanitized:
        opts = os.environ.get("ASAN_OPTIONS", "")
        env.proxy.extra_env["ASAN_OPTIONS"] = (opts + ":" if opts else "") + "quarantine_size_mb=16"
    env.start(tgt)
    ctx = env.certs.client_context()
    res = {}

    def idle():
        if env.proxy is None:
            raise H.Skip("no proxy process to measure (self-check mode %s)" % H.SELFCHECK)
        f = H.ftplib_connect(tgt)  # warm-up: TLS contexts, first session
        try:
            H.ftplib_get(f, "/pub/small.bin")
        finally:
            H.quit_quietly(f)
        time.sleep(0.5)
        res["idle"] = H.rss_kib(env.proxy.pid)
        print("     proxy VmRSS idle: %d KiB" % res["idle"], flush=True)
        check(res["idle"] > 0, "could not read the proxy's VmRSS")

    s.run("idle RSS", idle)

    def held_final_reply(use_epsv):
        H.needs_proxy()  # against vsftpd itself, the TLS endpoint waits for the handshake anyway
        mark = vs.log_mark()
        pmark = env.proxy.log_mark()
        c = H.Ctl(tgt).secure_login(ctx, "P")
        addr = c.epsv() if use_epsv else c.pasv()
        d = socket.create_connection(addr, timeout=30)
        check_code(c.cmd("RETR /pub/small.bin"), (150, 125), "RETR")
        # The backend is done: its 226 for this RETR is in its log.
        check(H.wait_until(lambda: any(r.startswith("226") for _, r in vs.responses_since(mark)), 10),
              "the backend did not finish sending 1000 bytes within 10 s")
        # The proxy has the backend's 226 once it says it holds it: a wrongly relayed 226
        # would have been written to the client by then.
        check(H.wait_until(lambda: re.search(r"final reply \d+ held", env.proxy.log_since(pmark)), 10),
              "the proxy never said it holds the final reply")
        if c.readable():
            try:
                got = c.reply(5)[1]
            except (OSError, EOFError, H.Fail) as e:
                got = "unreadable: %s" % e
            raise H.Fail("the final reply reached the client before any byte of the data did: %r" % got)
        if tgt.tls:
            d = c.wrap_data(d, ctx)
        how, data = H.recv_until_closed(d, 30)
        d.close()
        reply = c.reply(30)
        c.close()
        check_eq(how, "eof", "end of the data connection")
        check_eq((len(data), H.sha256_bytes(data)), (1000, sha_small), "downloaded bytes (size, sha256)")
        check_code(reply, 226, "final reply")

    s.run("226 held until the data was delivered (PASV)", held_final_reply, False)
    s.run("226 held until the data was delivered (EPSV)", held_final_reply, True)

    def slow_download():
        pid = env.proxy.pid if env.proxy is not None else None
        samples = []
        stop = threading.Event()

        def sampler():
            while not stop.is_set():
                try:
                    samples.append(H.rss_kib(pid))
                except OSError:
                    break
                stop.wait(0.05)

        c = H.Ctl(tgt, timeout=60).secure_login(ctx, "P")
        addr = c.pasv()
        d = socket.create_connection(addr, timeout=60)
        check_code(c.cmd("RETR /pub/big.bin"), (150, 125), "RETR")
        if tgt.tls:
            d = c.wrap_data(d, ctx)
        th = None
        if pid is not None:
            th = threading.Thread(target=sampler, daemon=True)
            th.start()
        h = hashlib.sha256()
        got = 0
        early = None
        eof = False
        try:
            t_end = time.monotonic() + SLOW_SECONDS
            while time.monotonic() < t_end and not eof:
                want = SLOW_CHUNK
                while want > 0:
                    b = d.recv(min(want, 65536))
                    if not b:
                        eof = True
                        break
                    h.update(b)
                    got += len(b)
                    want -= len(b)
                if early is None and size - got > 32 * H.MiB and c.readable():
                    early = got
                time.sleep(SLOW_SLEEP)
            slow_bytes = got
            deadline = time.monotonic() + 300
            while not eof and time.monotonic() < deadline:
                b = d.recv(256 * H.KiB)
                if not b:
                    eof = True
                    break
                h.update(b)
                got += len(b)
        finally:
            stop.set()
            if th is not None:
                th.join(5)
        d.close()
        reply = c.reply(60)
        c.close()
        print("     slow phase read %d MiB in %.0f s; %d RSS samples" % (
            slow_bytes // H.MiB, SLOW_SECONDS, len(samples)), flush=True)
        check(eof, "the data connection did not end")
        check_eq(got, size, "bytes received")
        check_eq(h.hexdigest(), sha, "sha256 of the slow download")
        check_code(reply, 226, "final reply")
        check(early is None, "the control connection had data (the final reply?) after only %d of %d bytes "
              "had been delivered" % (early or 0, size))
        check(slow_bytes < size - 64 * H.MiB, "the slow phase read too much to be a slow reader (%d)" % slow_bytes)
        res["samples"] = samples

    s.run("slow reader gets the whole 300 MiB file (sha256), no early reply", slow_download)

    def rss_bound():
        if env.proxy is None:
            raise H.Skip("no proxy process to measure (self-check mode %s)" % H.SELFCHECK)
        samples = res.get("samples")
        check(samples, "no RSS samples (the download case failed)")
        peak = max(samples)
        if env.proxy.sanitized:
            bound = res.get("idle", 0) + SAN_EXTRA_KIB
            kind = "idle %d KiB + %d KiB (ASan/UBSan build)" % (res.get("idle", 0), SAN_EXTRA_KIB)
        else:
            bound = RSS_BOUND_KIB
            kind = "%d KiB" % RSS_BOUND_KIB
        print("     proxy VmRSS max during the slow download: %d KiB (bound %s)" % (peak, kind), flush=True)
        check(peak < bound, "proxy VmRSS reached %d KiB, over the bound of %s" % (peak, kind))

    s.run("proxy RSS stays bounded during the slow download", rss_bound)


if __name__ == "__main__":
    H.main_wrapper("slow_reader", body, need_bytes=1024 * H.MiB)
