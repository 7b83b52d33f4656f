#!/usr/bin/python3
"""The sidecar example (issue 9, DESIGN.md §6): deploy/sidecar/compose.yaml on a real Docker engine.

ftpsgate runs in the legacy server's network namespace (network_mode "service:legacy") and reaches
it at 127.0.0.1:21; vsftpd listens on 127.0.0.1 only. Checked:
- transfers from the host through the published FTPS ports only (127.0.0.1:11021 explicit,
  :11990 implicit, passive 11100-11109 as announced): curl and lftp, PASV and EPSV, download and
  upload, sha256 on both ends;
- the plain port is not reachable from outside the namespace: nothing but ftpsgate's ports is
  published on the host, and a client container on the sidecar's own network is refused on
  legacy:21 while it reaches ftpsgate's 2121 and 990 there (so the probe can see an open port);
- `down -v` leaves nothing of the project.
"""

import os
import shutil
import sys
import tempfile

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import harness as H  # noqa: E402
import dockerenv as D  # noqa: E402
from harness import check, check_eq  # noqa: E402

FILE = "deploy/sidecar/compose.yaml"
PROJECT = "sidecar"
EXPLICIT, IMPLICIT = 11021, 11990
PASSIVE = list(range(11100, 11110))
SIZE = 2 * H.MiB + 9
PROBE = ("for p in 21 2121 990; do if timeout 5 bash -c \"exec 3<>/dev/tcp/legacy/$p\" 2>/dev/null; "
         "then echo \"$p open\"; else echo \"$p closed\"; fi; done")


def body(s, eng, tmp):
    work = os.path.join(tmp, "client")
    tls = os.path.join(tmp, "tls")
    os.makedirs(work)
    os.makedirs(tls)
    os.chmod(tls, 0o755)
    busy = D.ports_free([EXPLICIT, IMPLICIT] + PASSIVE)
    if busy:
        raise H.Fail("the sidecar example's host ports are taken on 127.0.0.1: %s" % busy)
    certs = H.Certs(os.path.join(tmp, "certs"))
    shutil.copy(certs.cert, os.path.join(tls, "fullchain.pem"))
    shutil.copy(certs.key, os.path.join(tls, "key.pem"))
    os.chown(os.path.join(tls, "key.pem"), 10001, 10001)
    os.chmod(os.path.join(tls, "fullchain.pem"), 0o644)
    ca = certs.ca
    env = {"FTPSGATE_TLS_DIR": tls}

    def up():
        r = D.compose(FILE, ["up", "-d", "--build"], env=env)
        check(r.returncode == 0, "compose up failed (exit %d):\n%s" % (r.returncode, r.stdout[-3000:]))

    if not s.run("docker-compose -f deploy/sidecar/compose.yaml up -d --build", up):
        return
    fg = "%s_ftpsgate_1" % PROJECT
    legacy = "%s_legacy_1" % PROJECT
    s.on_fail.append(lambda: print("     --- docker logs %s:\n%s" % (fg, D.logs(fg, 15))))

    def shape():
        mode = D.docker(["inspect", "--format", "{{.HostConfig.NetworkMode}}", fg]).stdout.strip()
        lid = D.docker(["inspect", "--format", "{{.Id}}", legacy]).stdout.strip()
        check_eq(mode, "container:" + lid, "ftpsgate's network mode")
        check_eq(D.wait_healthy(fg, 120), "healthy", "ftpsgate's health status")

    s.run("ftpsgate shares the legacy server's network namespace and turns healthy", shape)

    pub = os.path.join(work, "pub.bin")
    pub_sha = H.make_file(pub, SIZE)
    D.put_file(legacy, pub, "/home/test/pub.bin")
    up_local = os.path.join(work, "up.bin")
    up_sha = H.make_file(up_local, SIZE + 77)

    def transfers(implicit, epsv):
        port = IMPLICIT if implicit else EXPLICIT
        what = "%s %s" % ("implicit" if implicit else "explicit", "EPSV" if epsv else "PASV")
        tag = what.replace(" ", "-").lower()
        D.curl_get(port, ca, "/pub.bin", os.path.join(work, "dl-" + tag), pub_sha, "curl %s download" % what,
                   implicit, epsv)
        D.curl_put(port, ca, up_local, "/curl-%s.bin" % tag, "curl %s upload" % what, implicit, epsv)
        check_eq(D.container_sha256(legacy, "/home/test/curl-%s.bin" % tag), (up_sha, SIZE + 77),
                 "curl %s upload on the server" % what)
        D.lftp_get_put(port, ca, "/pub.bin", pub_sha, up_local, "/lftp-%s.bin" % tag, work, "lftp %s" % what,
                       implicit, epsv)
        check_eq(D.container_sha256(legacy, "/home/test/lftp-%s.bin" % tag), (up_sha, SIZE + 77),
                 "lftp %s upload on the server" % what)

    for implicit in (False, True):
        for epsv in (False, True):
            s.run("sidecar: curl + lftp through the FTPS port, %s, %s" % (
                "implicit :11990" if implicit else "explicit :11021", "EPSV" if epsv else "PASV"),
                transfers, implicit, epsv)

    def plain_port_closed():
        ports = D.docker(["port", legacy]).stdout.split("\n")
        published = sorted(int(ln.split("/")[0]) for ln in ports if ln.strip())
        check_eq(published, sorted([2121, 990] + list(range(50000, 50010))),
                 "container ports published on the host (ftpsgate's only, never 21)")
        for ln in ports:
            if ln.strip():
                check("-> 127.0.0.1:" in ln, "published beyond loopback: %s" % ln)
        net = "%s_default" % PROJECT
        image = D.docker(["inspect", "--format", "{{.Config.Image}}", legacy]).stdout.strip()
        r = D.docker(["run", "--rm", "--network", net, "--entrypoint", "/bin/bash"] + D.label_args()
                     + [image, "-c", PROBE], timeout=120)
        got = dict(ln.split() for ln in r.stdout.splitlines() if ln.strip())
        check_eq(got, {"21": "closed", "2121": "open", "990": "open"},
                 "ports of the sidecar's namespace seen from another container on its network")

    s.run("the plain port is not reachable from outside the namespace", plain_port_closed)

    def down():
        r = D.compose(FILE, ["down", "-v"], timeout=300, env=env)
        check(r.returncode == 0, "compose down -v failed:\n%s" % r.stdout[-2000:])
        check(not D.compose_leftovers(PROJECT), "left behind by down -v: %s" % D.compose_leftovers(PROJECT))

    s.run("docker-compose down -v leaves nothing of the project", down)


def main():
    s = H.Suite("test_sidecar")
    tmp = tempfile.mkdtemp(prefix="ftpsgate-sidecar-")
    eng = D.engine_for(s, tmp)
    try:
        body(s, eng, tmp)
    except Exception as e:  # noqa: BLE001 - a setup error fails the file with its trace
        s.fail_setup("test body", e)
    finally:
        if D.compose_leftovers(PROJECT):
            D.compose(FILE, ["down", "-v"], timeout=300, env={"FTPSGATE_TLS_DIR": tmp})
        D.remove_labelled()
        print("   docker: %s" % (eng.down() or "engine left running (not started by this test)"), flush=True)
        shutil.rmtree(tmp, ignore_errors=True)
    sys.exit(s.finish())


if __name__ == "__main__":
    main()
