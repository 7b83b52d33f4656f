#!/usr/bin/python3
"""The container image (issue 9, DESIGN.md §6 "Containers"), built and run on a real Docker engine.

- Built from a clean clone (git's tracked files only) with `docker build`, on a debian:12-slim
  that the test makes with debootstrap when the engine has none (dockerenv.py).
- Checked: at most 40 MB; numeric non-root user 10001 named ftpsgate in the image's passwd;
  no shell in the image, and a HEALTHCHECK in exec form that runs `ftpsgate --healthcheck`.
- Run as a user would: `--read-only --cap-drop ALL` on a user-defined network, in front of a
  vsftpd container (deploy/backend.Dockerfile, with --init), explicit and implicit FTPS, the
  passive ports published under other host numbers (passive.announce_ports), every host-side
  connection to 127.0.0.1. curl and lftp, PASV and EPSV, download and upload, sha256 of every
  file on both ends. The process runs as uid 10001 with no capability at all.
- The healthcheck turns healthy (interval shortened with --health-interval; the command is the
  image's); `docker logs` has ftpsgate's log; `docker kill -s HUP` reloads a new certificate
  while a download runs, which ends intact; `docker stop` with a download running drains it:
  the file arrives whole and the container exits 0.
"""

import json
import re
import os
import shutil
import ssl
import socket
import sys
import tempfile
import threading

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import harness as H  # noqa: E402
import dockerenv as D  # noqa: E402
from harness import check, check_eq  # noqa: E402

MAX_IMAGE_BYTES = 40 * 1000 * 1000  # "40 MB" as docker counts
PID = os.getpid()
TAG = "ftpsgate-test:%d" % PID
LEGACY_TAG = "ftpsgate-test-legacy:%d" % PID
NET = "ftpsgate-test-%d" % PID
LEGACY = "ftpsgate-test-legacy-%d" % PID
FG = "ftpsgate-test-fg-%d" % PID
FILE_SIZE = 3 * H.MiB + 17
SLOW_SIZE = 8 * H.MiB


def config(ports):
    def listener(name, bind, mode, first, announce_first):
        return {
            "name": name, "bind": bind, "mode": mode, "tls": "main",
            "backend": {"address": "legacy:21", "data_mode": "passive"},
            "passive": {"ports": "%d-%d" % (first, first + 9), "announce": "127.0.0.1",
                        "announce_ports": "%d-%d" % (announce_first, announce_first + 9)},
            "policy": {"login_requires_tls": True, "data_protection": "private"},
        }

    return {
        "tls": {"main": {"cert": "/etc/ftpsgate/server.pem", "key": "/etc/ftpsgate/server.key"}},
        "listeners": [listener("explicit", "0.0.0.0:21", "explicit", 50000, ports["pasv"]),
                      listener("implicit", "0.0.0.0:990", "implicit", 50010, ports["pasv"] + 10)],
        "log": {"level": "info", "format": "text"},
    }


def install_cert(certs, conf, name):
    """A new server certificate from the test CA as conf/server.pem + server.key, readable by uid 10001."""
    cert, key = certs.issue(name, "localhost", sans="DNS:localhost,IP:127.0.0.1")
    for src, dst in ((cert, "server.pem"), (key, "server.key")):
        tmp = os.path.join(conf, dst + ".new")
        shutil.copy(src, tmp)
        os.chown(tmp, 10001, 10001)
        os.chmod(tmp, 0o400 if dst.endswith(".key") else 0o644)
        os.replace(tmp, os.path.join(conf, dst))
    with open(cert) as f:
        return ssl.PEM_cert_to_DER_cert(f.read())


def served_cert(port):
    """The DER certificate an implicit listener presents now."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as t:
            return t.getpeercert(binary_form=True)


def slow_download(port, ca, rpath, local, rate, box):
    """curl download at a limited rate, in a thread: box gets the CompletedProcess."""
    try:
        box["result"] = D.curl(port, ca, ["--limit-rate", rate, "-o", local, "{url}" + rpath], timeout=120)
    except Exception as e:  # noqa: BLE001 - reported by the case
        box["error"] = e


def wait_bytes(local, timeout=20):
    """Waits until a download has written some bytes (the transfer is running)."""
    return H.wait_until(lambda: os.path.exists(local) and os.path.getsize(local) > 0, timeout)


def body(s, eng, tmp):
    ctx_dir = os.path.join(tmp, "ctx")
    conf = os.path.join(tmp, "conf")
    work = os.path.join(tmp, "client")
    for d in (ctx_dir, conf, work):
        os.makedirs(d)
    os.chmod(conf, 0o755)
    certs = H.Certs(os.path.join(tmp, "certs"))
    ca = certs.ca
    st = {}

    def build():
        n = D.clean_context(ctx_dir)
        st["build_s"] = D.build(TAG, ctx_dir)
        st["legacy_s"] = D.build(LEGACY_TAG, os.path.join(ctx_dir, "deploy"), os.path.join(ctx_dir, "deploy",
                                                                                      "backend.Dockerfile"))
        print("   image %s built from %s in %.1f s (legacy image %.1f s)" % (
            TAG, "%d tracked files" % n if n else "the tree (no git here)", st["build_s"], st["legacy_s"]),
            flush=True)

    if not s.run("the image builds from a clean clone (docker build .)", build):
        return

    def image_facts():
        info = json.loads(D.docker(["image", "inspect", TAG]).stdout)[0]
        size = info["Size"]
        print("   image size %d bytes (%.1f MB)" % (size, size / 1e6), flush=True)
        check(size <= MAX_IMAGE_BYTES, "the image is %d bytes, over %d" % (size, MAX_IMAGE_BYTES))
        cfg = info["Config"]
        check_eq(cfg.get("User"), "10001:10001", "the image's user")
        check_eq(cfg.get("Entrypoint"), ["/usr/local/bin/ftpsgate", "--config", "/etc/ftpsgate/config.json"],
                 "entrypoint")
        hc = cfg.get("Healthcheck") or {}
        check_eq(hc.get("Test"), ["CMD", "/usr/local/bin/ftpsgate", "--healthcheck", "--config",
                                  "/etc/ftpsgate/config.json"], "HEALTHCHECK (exec form, no shell)")
        for p in ("21/tcp", "990/tcp", "50000/tcp", "50099/tcp"):
            check(p in (cfg.get("ExposedPorts") or {}), "the image does not expose %s" % p)
        cid = D.docker(["create"] + D.label_args() + [TAG]).stdout.strip()
        try:
            got = os.path.join(tmp, "image-passwd")
            D.docker(["cp", cid + ":/etc/passwd", got])
            with open(got) as f:
                passwd = f.read()
            users = {ln.split(":")[2]: ln.split(":")[0] for ln in passwd.splitlines() if ln.count(":") >= 6}
            check_eq(users.get("10001"), "ftpsgate", "the passwd name of uid 10001")
            for sh in ("/bin/sh", "/bin/bash", "/usr/bin/sh"):
                r = D.docker(["cp", cid + ":" + sh, os.path.join(tmp, "image-shell")], check=False)
                check(r.returncode != 0, "the image has a shell at %s" % sh)
        finally:
            D.docker(["rm", "-f", cid], check=False)

    s.run("image: size, non-root numeric user, no shell, exec-form HEALTHCHECK", image_facts)

    # ------------------------------------------------------------------ run it
    lo, _hi = H.free_port_block(22)
    ports = {"explicit": lo, "implicit": lo + 1, "pasv": lo + 2}
    with open(os.path.join(conf, "config.json"), "w") as f:
        json.dump(config(ports), f, indent=2)
    os.chmod(os.path.join(conf, "config.json"), 0o644)
    st["der"] = install_cert(certs, conf, "first")
    D.docker(["network", "create"] + D.label_args() + [NET])
    D.docker(["run", "-d", "--init", "--name", LEGACY, "--network", NET, "--network-alias", "legacy"]
             + D.label_args() + [LEGACY_TAG])

    def fg_run():
        D.docker(["run", "-d", "--name", FG, "--network", NET, "--read-only", "--cap-drop", "ALL",
                  "--health-interval", "1s", "--health-start-period", "1s",
                  "-v", "%s:/etc/ftpsgate:ro" % conf,
                  "-p", "127.0.0.1:%d:21" % ports["explicit"], "-p", "127.0.0.1:%d:990" % ports["implicit"],
                  "-p", "127.0.0.1:%d-%d:50000-50019" % (ports["pasv"], ports["pasv"] + 19)]
                 + D.label_args() + [TAG])
        st["pid"] = int(D.docker(["inspect", "--format", "{{.State.Pid}}", FG]).stdout.strip())

    if not s.run("ftpsgate runs --read-only --cap-drop ALL on a user-defined network", fg_run):
        print(D.logs(FG))
        return
    s.on_fail.append(lambda: print("     --- docker logs %s:\n%s" % (FG, D.logs(FG, 15))))

    def healthy():
        got = D.wait_healthy(FG, 90)
        check_eq(got, "healthy", "health status")
        log = json.loads(D.docker(["inspect", "--format", "{{json .State.Health.Log}}", FG]).stdout)
        out = log[-1]["Output"]
        check("listener explicit (explicit, 127.0.0.1:21): ok" in out and
              "listener implicit (implicit, 127.0.0.1:990): ok" in out, "healthcheck output: %r" % out)

    s.run("the HEALTHCHECK turns healthy (both listeners answer)", healthy)

    def unprivileged():
        with open("/proc/%d/status" % st["pid"]) as f:
            status = dict(ln.split(":", 1) for ln in f.read().splitlines() if ":" in ln)
        check_eq(status["Uid"].split()[:2], ["10001", "10001"], "the process's real and effective uid")
        check_eq(status["CapEff"].strip(), "0000000000000000", "effective capabilities")
        check_eq(status["CapPrm"].strip(), "0000000000000000", "permitted capabilities")
        hc = json.loads(D.docker(["inspect", "--format", "{{json .HostConfig}}", FG]).stdout)
        check(hc["ReadonlyRootfs"] is True, "the root file system is not read-only")
        check_eq(hc["CapDrop"], ["ALL"], "dropped capabilities")

    s.run("ftpsgate runs as uid 10001 with no capability, read-only root", unprivileged)

    pub = os.path.join(work, "pub.bin")
    pub_sha = H.make_file(pub, FILE_SIZE)
    D.put_file(LEGACY, pub, "/home/test/pub.bin")
    slow = os.path.join(work, "slow.bin")
    slow_sha = H.make_file(slow, SLOW_SIZE)
    D.put_file(LEGACY, slow, "/home/test/slow.bin")
    up = os.path.join(work, "up.bin")
    up_sha = H.make_file(up, FILE_SIZE + 1000)

    def transfers(implicit, epsv):
        mode = "implicit" if implicit else "explicit"
        port = ports[mode]
        what = "%s %s" % (mode, "EPSV" if epsv else "PASV")
        tag = "%s-%s" % (mode, "epsv" if epsv else "pasv")
        D.curl_get(port, ca, "/pub.bin", os.path.join(work, "dl-" + tag), pub_sha, "curl %s download" % what,
                   implicit, epsv)
        D.curl_put(port, ca, up, "/up-curl-%s.bin" % tag, "curl %s upload" % what, implicit, epsv)
        check_eq(D.container_sha256(LEGACY, "/home/test/up-curl-%s.bin" % tag), (up_sha, FILE_SIZE + 1000),
                 "curl %s upload: sha256 and size on the server" % what)
        D.lftp_get_put(port, ca, "/pub.bin", pub_sha, up, "/up-lftp-%s.bin" % tag, work, "lftp %s" % what,
                       implicit, epsv)
        check_eq(D.container_sha256(LEGACY, "/home/test/up-lftp-%s.bin" % tag), (up_sha, FILE_SIZE + 1000),
                 "lftp %s upload: sha256 and size on the server" % what)

    for implicit in (False, True):
        for epsv in (False, True):
            s.run("curl + lftp, %s, %s, download and upload (published ports remapped)" % (
                "implicit" if implicit else "explicit", "EPSV" if epsv else "PASV"), transfers, implicit, epsv)

    def docker_logs():
        text = D.logs(FG, 400)
        check("ftpsgate 0" in text and " ready" in text, "no 'ready' line in docker logs")
        check('login user="test"' in text, "no login line in docker logs")

    s.run("ftpsgate's log is in docker logs", docker_logs)

    def hup_reload():
        local = os.path.join(work, "slow-hup.bin")
        box = {}
        t = threading.Thread(target=slow_download, args=(ports["explicit"], ca, "/slow.bin", local, "1M", box))
        t.start()
        try:
            check(wait_bytes(local), "the download did not start")
            new_der = install_cert(certs, conf, "second")
            check(new_der != st["der"], "the new certificate equals the old one")
            D.docker(["kill", "-s", "HUP", FG])
            check(H.wait_until(lambda: "certificates reloaded" in D.logs(FG, 50), 20),
                  "no reload line in docker logs after HUP")
            check_eq(served_cert(ports["implicit"]) == new_der, True, "a new session gets the new certificate")
        finally:
            t.join(150)
        check("error" not in box, "download thread: %r" % box.get("error"))
        r, tr = box["result"]
        check(r.returncode == 0, "the download running across the reload failed: %s" % tr.strip()[-400:])
        check_eq(H.sha256_file(local), slow_sha, "sha256 of the download running across the reload")
        check_eq(D.docker(["inspect", "--format", "{{.State.Running}}", FG]).stdout.strip(), "true",
                 "the container still runs")
        D.curl_get(ports["implicit"], ca, "/pub.bin", os.path.join(work, "after-hup"), pub_sha,
                   "download after the reload", implicit=True)
        st["der"] = new_der

    s.run("docker kill -s HUP reloads the certificate while a download runs", hup_reload)

    def stop_drains():
        local = os.path.join(work, "slow-stop.bin")
        box = {}
        t = threading.Thread(target=slow_download, args=(ports["explicit"], ca, "/slow.bin", local, "2M", box))
        t.start()
        try:
            check(wait_bytes(local), "the download did not start")
            r = D.docker(["stop", "-t", "40", FG], timeout=90, check=False)
            check_eq(r.returncode, 0, "docker stop exit status")
        finally:
            t.join(150)
        check("error" not in box, "download thread: %r" % box.get("error"))
        rr, tr = box["result"]
        check(rr.returncode == 0, "the download running at docker stop failed: %s" % tr.strip()[-400:])
        check_eq(H.sha256_file(local), slow_sha, "sha256 of the download running at docker stop")
        state = json.loads(D.docker(["inspect", "--format", "{{json .State}}", FG]).stdout)
        check_eq((state["Status"], state["ExitCode"], state["OOMKilled"]), ("exited", 0, False),
                 "container state after docker stop")
        # The whole log: the health check's own sessions can log dozens of lines after the drain's.
        text = D.logs(FG, 100000)
        # At least the download's session (a health check's may be open at that moment too).
        m = re.search(r"draining (\d+) live sessions", text)
        check(m is not None and int(m.group(1)) >= 1, "no drain line in docker logs: %s" % text[-500:])

    s.run("docker stop drains: the running download ends intact, exit 0", stop_drains)


def main():
    s = H.Suite("test_docker_image")
    tmp = tempfile.mkdtemp(prefix="ftpsgate-docker-image-")
    eng = D.engine_for(s, tmp)
    try:
        body(s, eng, tmp)
    except Exception as e:  # noqa: BLE001 - a setup error fails the file with its trace
        s.fail_setup("test body", e)
    finally:
        D.remove_labelled()
        for tag in (TAG, LEGACY_TAG):
            D.docker(["image", "rm", tag], check=False)
        left = D.labelled("container") + D.labelled("network")
        if left:
            s.failed += 1
            print("FAIL cleanup: left behind: %s" % left, flush=True)
        print("   docker: %s" % (eng.down() or "engine left running (not started by this test)"), flush=True)
        shutil.rmtree(tmp, ignore_errors=True)
    sys.exit(s.finish())


if __name__ == "__main__":
    main()
