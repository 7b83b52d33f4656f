"""Moves the calling test process into a network namespace of its own, with loopback up for IPv4
and IPv6, before it starts anything: its servers, the proxy and the clients it spawns inherit it.

For the tests that need ::1 (test_policy, test_ipv6_bounce_pool): a container's loopback often has
no IPv6 (Docker sets net.ipv6.conf.*.disable_ipv6=1 in containers whose network has no IPv6), but a
new network namespace starts from the kernel's IPv6 defaults, so ::1 works there. It also keeps
the test's ports away from everything else on the host. The namespace has no name and nothing to
clean up: it ends with the last process in it.

    import ownnetns; ownnetns.enter()   # first thing, before harness starts any process
"""

import ctypes
import os
import socket
import subprocess

CLONE_NEWNET = 0x40000000
IP = "/usr/sbin/ip" if os.path.exists("/usr/sbin/ip") else "ip"


def enter():
    """unshare(CLONE_NEWNET), loopback up, ::1 checked; raises RuntimeError with the reason."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNET) != 0:
        e = ctypes.get_errno()
        raise RuntimeError("unshare(CLONE_NEWNET): %s (the test needs root)" % os.strerror(e))
    r = subprocess.run([IP, "link", "set", "lo", "up"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=20)
    if r.returncode != 0:
        raise RuntimeError("ip link set lo up in the new namespace: %s" % r.stdout.strip())
    # /proc/sys/net is the namespace of the process that opens it: this one's.
    path = "/proc/sys/net/ipv6/conf/lo/disable_ipv6"
    try:
        with open(path) as f:
            off = f.read().strip() == "1"
        if off:
            with open(path, "w") as f:
                f.write("0")
    except OSError as e:
        raise RuntimeError("IPv6 is not available in this kernel (%s): %s" % (path, e))
    s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    try:
        s.bind(("::1", 0))
    except OSError as e:
        raise RuntimeError("::1 does not work in the test's own network namespace: %s" % e)
    finally:
        s.close()


def enter_or_fail(name):
    """enter(); when that cannot be done, the test file fails with the reason (never skips)."""
    try:
        enter()
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
        print("== %s\nFAIL setup: a network namespace of the test's own: %s\n0 passed, 1 failed" % (name, e),
              flush=True)
        raise SystemExit(1)
