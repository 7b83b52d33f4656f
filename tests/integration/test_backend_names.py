#!/usr/bin/python3
"""A backend given by a host name that resolves to several addresses: ftpsgate
tries them in the resolver's order until one answers, and then uses that one
for the data connections too; when none answers the client gets 421.

The names live in a hosts file of the test's own, seen only by the proxy: it
runs in a private mount namespace (unshare --mount, same PID) where that file
is bind-mounted over /etc/hosts. The resolver's order (glibc sorts addresses,
RFC 6724) is read in the same kind of namespace, and the backend listens on
the address that comes second, so the first one always refuses.
"""
import os
import shutil
import socket
import subprocess

import harness as H
from harness import Skip, check, check_eq

MULTI = "ftpsgate-multi.test"   # two addresses; the backend listens on the second in resolver order
DEAD = "ftpsgate-dead.test"     # two addresses, nothing listens on either
HOSTS = [("127.0.0.9", MULTI), ("127.0.0.10", MULTI), ("127.0.0.11", DEAD), ("127.0.0.12", DEAD)]
SIZE = 2 * H.MiB + 5
CONNECT_TIMEOUT = 2  # limits.backend_connect_timeout, s


def silent_listener(host, port):
    """A socket on host:port whose accept queue is full: the kernel drops further SYNs, so a
    connect to it neither succeeds nor fails (a backend host that does not answer)."""
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.bind((host, port))
    ls.listen(0)
    queued = []
    for _ in range(4):
        c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        c.settimeout(0.5)
        queued.append(c)
        try:
            c.connect((host, port))
        except socket.timeout:
            return ls, queued  # this SYN was dropped: the queue is full
    for c in queued:
        c.close()
    ls.close()
    raise H.Fail("could not fill the accept queue of %s:%d" % (host, port))


def private_hosts_argv(hosts_path):
    """argv prefix: the rest runs with hosts_path as its /etc/hosts, in the same process."""
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c",
            'mount --bind "$0" /etc/hosts && exec "$@"', hosts_path]


def resolve_order(hosts_path, name):
    r = subprocess.run(private_hosts_argv(hosts_path) + [
        "/usr/bin/python3", "-c",
        "import socket,sys; print(' '.join(a[4][0] for a in socket.getaddrinfo(sys.argv[1], 21, "
        "type=socket.SOCK_STREAM)))", name], capture_output=True, text=True, timeout=20)
    check_eq(r.returncode, 0, "resolving %s in a private mount namespace (%s)" % (name, r.stderr.strip()))
    return r.stdout.split()


def body(s, env):
    if H.SELFCHECK:
        s.run("backend host names (tests ftpsgate itself)", H.needs_proxy)
        return
    if os.geteuid() != 0 or not shutil.which("unshare"):
        def skip():
            raise Skip("needs root and unshare (util-linux) for a private /etc/hosts")
        s.run("backend names with several addresses", skip)
        return
    hosts_path = os.path.join(env.tmp, "hosts")
    with open(hosts_path, "w") as f:
        f.write("127.0.0.1 localhost\n")
        f.writelines("%s %s\n" % (a, n) for a, n in HOSTS)
    order = resolve_order(hosts_path, MULTI)
    check_eq(sorted(order), ["127.0.0.10", "127.0.0.9"], "addresses of %s" % MULTI)
    dead_order = resolve_order(hosts_path, DEAD)
    first, second = order

    vs = H.Vsftpd(env, "second")
    vs.host = second
    vs.start()
    env.backends.append(vs)
    sha = vs.add_pub("f.bin", SIZE)
    up_local = os.path.join(env.client_dir, "up.bin")
    up_sha = H.make_file(up_local, SIZE)
    # Both names with vsftpd's port: on the first address (and both of DEAD) nothing listens
    # on it: every listening port of the tests comes from a block reserved for this process.
    multi = env.front(vs, "multi")
    multi.listener["backend"]["address"] = "%s:%d" % (MULTI, vs.port)
    dead = env.front(vs, "dead")
    dead.listener["backend"]["address"] = "%s:%d" % (DEAD, vs.port)
    env.proxy.wrapper = private_hosts_argv(hosts_path)
    env.proxy.extra_limits["backend_connect_timeout"] = CONNECT_TIMEOUT
    env.start(multi, dead)

    def fallback():
        mark = env.proxy.log_mark()
        vmark = vs.log_mark()
        f = H.ftplib_connect(multi)
        try:
            n, got_sha, resp = H.ftplib_get(f, "/pub/f.bin")
            check(resp.startswith("226"), "final reply of the download: %r" % resp)
            check_eq((n, got_sha), (SIZE, sha), "size and sha256 of the download")
            H.ftplib_put(f, up_local, "/up/multi.bin")
        finally:
            H.quit_quietly(f)
        H.check_stored(vs, "multi.bin", SIZE, up_sha, "upload")
        log = env.proxy.log_since(mark)
        check("backend %s:%d unreachable" % (first, vs.port) in log and "trying the next address" in log,
              "no log line for the refused first address %s" % first)
        check("backend %s:%d" % (second, vs.port) in log, "no log line naming the second address")
        check(vs.transfers_since(vmark), "vsftpd on %s logged no transfer" % second)

    def none_answers():
        mark = env.proxy.log_mark()
        c = H.Ctl(dead)
        check_eq(c.greeting[0], 220, "the proxy's own greeting")
        check_eq(c.cmd("SYST")[0], 421, "reply to the first forwarded command when no address of %s answers" % DEAD)
        c.close()
        log = env.proxy.log_since(mark)
        for a in dead_order:
            check("backend %s:%d unreachable" % (a, vs.port) in log, "no connect attempt to %s logged" % a)
        check("trying the next address" in log, "the second address was not tried")

    s.run("backend name with two addresses: the first (%s) refuses, the second serves; sha256 down+up" % first,
          fallback)
    def silent_first():
        ls, queued = silent_listener(first, vs.port)
        try:
            mark = env.proxy.log_mark()
            f = H.ftplib_connect(multi)
            try:
                n, got_sha, resp = H.ftplib_get(f, "/pub/f.bin")
                check_eq((n, got_sha), (SIZE, sha), "size and sha256 of the download")
            finally:
                H.quit_quietly(f)
            log = env.proxy.log_since(mark)
            check("backend %s:%d unreachable: connection timed out; trying the next address" % (first, vs.port)
                  in log, "no log line for the silent first address %s" % first)
        finally:
            for c in queued:
                c.close()
            ls.close()

    s.run("backend name whose first address is silent (SYNs dropped): after backend_connect_timeout the "
          "second serves (sha256)", silent_first)
    s.run("backend name whose addresses all refuse: 421, every address tried and logged", none_answers)


if __name__ == "__main__":
    H.main_wrapper("backend_names", body, need_bytes=64 * H.MiB)
