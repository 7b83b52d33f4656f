#!/usr/bin/python3
"""The Compose test rig (issue 9, DESIGN.md §6): `docker-compose -f deploy/compose.yaml up -d --build`,
the one command and nothing else, on a real Docker engine (dockerenv.py).

- It brings up the certificate step, the legacy vsftpd (with an init) and ftpsgate; ftpsgate turns
  healthy; deploy/rig/ca.pem is the CA the clients trust.
- From the host, on the published ports only (127.0.0.1:10021 explicit, :10990 implicit, passive
  ports 10100-10119 as announced): curl and lftp, PASV and EPSV, download and upload as test/test,
  sha256 on both ends, more sessions than the two a vsftpd without an init survives.
- `down -v` removes the containers, the network and the volumes; when the test started the engine,
  stopping it leaves no docker bridge and no iptables rule of its own.
"""

import os
import shutil
import sys
import tempfile

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import harness as H  # noqa: E402
import dockerenv as D  # noqa: E402
from harness import check, check_eq  # noqa: E402

FILE = "deploy/compose.yaml"
PROJECT = "deploy"  # Compose's default: the compose file's directory
EXPLICIT, IMPLICIT = 10021, 10990
PASSIVE = list(range(10100, 10120))
CA = os.path.join(D.REPO, "deploy", "rig", "ca.pem")
SIZE = 2 * H.MiB + 5


def body(s, eng, tmp):
    work = os.path.join(tmp, "client")
    os.makedirs(work)
    busy = D.ports_free([EXPLICIT, IMPLICIT] + PASSIVE)
    if busy:
        raise H.Fail("the rig's host ports are taken on 127.0.0.1: %s" % busy)
    check(not D.compose_leftovers(PROJECT), "a rig is already up: %s" % D.compose_leftovers(PROJECT))

    def up():
        r = D.compose(FILE, ["up", "-d", "--build"])
        check(r.returncode == 0, "compose up failed (exit %d):\n%s" % (r.returncode, r.stdout[-3000:]))
        check(os.path.isfile(CA) and "BEGIN CERTIFICATE" in open(CA).read(), "no CA in deploy/rig/ca.pem")

    if not s.run("docker-compose -f deploy/compose.yaml up -d --build", up):
        return
    fg = "%s_ftpsgate_1" % PROJECT
    legacy = "%s_legacy_1" % PROJECT
    s.on_fail.append(lambda: print("     --- docker logs %s:\n%s" % (fg, D.logs(fg, 15))))

    def healthy():
        check_eq(D.wait_healthy(fg, 120), "healthy", "ftpsgate's health status")
        inspect = D.docker(["inspect", "--format", "{{.HostConfig.ReadonlyRootfs}} {{.HostConfig.CapDrop}} "
                            "{{.HostConfig.Init}}", fg]).stdout.split(None, 1)
        check_eq(inspect[0], "true", "ftpsgate's root file system read-only")
        check("ALL" in inspect[1], "ftpsgate's capabilities are not all dropped: %s" % inspect[1])
        check_eq(D.docker(["inspect", "--format", "{{.HostConfig.Init}}", legacy]).stdout.strip(), "true",
                 "the legacy server runs with an init")

    s.run("ftpsgate turns healthy; read-only, no capabilities; legacy with an init", healthy)

    pub = os.path.join(work, "pub.bin")
    pub_sha = H.make_file(pub, SIZE)
    D.put_file(legacy, pub, "/home/test/pub.bin")
    up_local = os.path.join(work, "up.bin")
    up_sha = H.make_file(up_local, SIZE + 333)

    def transfers(implicit, epsv):
        port = IMPLICIT if implicit else EXPLICIT
        what = "%s %s" % ("implicit" if implicit else "explicit", "EPSV" if epsv else "PASV")
        tag = what.replace(" ", "-").lower()
        D.curl_get(port, CA, "/pub.bin", os.path.join(work, "dl-" + tag), pub_sha, "curl %s download" % what,
                   implicit, epsv)
        D.curl_put(port, CA, up_local, "/curl-%s.bin" % tag, "curl %s upload" % what, implicit, epsv)
        check_eq(D.container_sha256(legacy, "/home/test/curl-%s.bin" % tag), (up_sha, SIZE + 333),
                 "curl %s upload on the server" % what)
        D.lftp_get_put(port, CA, "/pub.bin", pub_sha, up_local, "/lftp-%s.bin" % tag, work, "lftp %s" % what,
                       implicit, epsv)
        check_eq(D.container_sha256(legacy, "/home/test/lftp-%s.bin" % tag), (up_sha, SIZE + 333),
                 "lftp %s upload on the server" % what)

    for implicit in (False, True):
        for epsv in (False, True):
            s.run("rig: curl + lftp, %s, %s, with deploy/rig/ca.pem" % (
                "implicit :10990" if implicit else "explicit :10021", "EPSV" if epsv else "PASV"),
                transfers, implicit, epsv)

    def hello():
        r, tr = D.curl(EXPLICIT, CA, ["{url}/hello.txt"])
        check(r.returncode == 0 and "Hello from the legacy FTP server" in r.stdout,
              "the README's command: %s" % tr.strip()[-300:])

    s.run("the README's curl command fetches hello.txt", hello)

    def down():
        r = D.compose(FILE, ["down", "-v"], timeout=300)
        check(r.returncode == 0, "compose down -v failed:\n%s" % r.stdout[-2000:])
        left = D.compose_leftovers(PROJECT)
        check(not left, "left behind by down -v: %s" % left)

    s.run("docker-compose down -v leaves no container, network or volume", down)


def main():
    s = H.Suite("test_compose_rig")
    tmp = tempfile.mkdtemp(prefix="ftpsgate-compose-rig-")
    had_ca = os.path.exists(CA)
    eng = D.engine_for(s, tmp)
    try:
        body(s, eng, tmp)
    except Exception as e:  # noqa: BLE001 - a setup error fails the file with its trace
        s.fail_setup("test body", e)
    finally:
        if D.compose_leftovers(PROJECT):
            D.compose(FILE, ["down", "-v"], timeout=300)
        started = eng.started_here
        print("   docker: %s" % (eng.down() or "engine left running (not started by this test)"), flush=True)
        if started:
            left = D.engine_leftovers()
            if left:
                s.failed += 1
                print("FAIL the stopped engine left: %s" % left, flush=True)
            else:
                s.passed += 1
                print("PASS the engine this test started is stopped, no bridge or iptables rule left", flush=True)
        if not had_ca:
            try:
                os.unlink(CA)
            except OSError:
                pass
        shutil.rmtree(tmp, ignore_errors=True)
    sys.exit(s.finish())


if __name__ == "__main__":
    main()
