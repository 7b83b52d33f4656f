#!/usr/bin/python3
"""The Kubernetes sidecar example (deploy/kubernetes/ftpsgate-sidecar.yaml) against the image.

No cluster can run here. The test reads the manifest and checks it is consistent with the image it
builds (docker, dockerenv.py) and with its own configuration:
- the ftpsgate container: the image's numeric user (runAsUser/runAsGroup), runAsNonRoot, read-only
  root, no capabilities, no privilege escalation; the config mounted where the image's ENTRYPOINT
  reads it; the certificate and key paths of the config inside the Secret's mount, under the keys a
  kubernetes.io/tls Secret has; fsGroup so that the 0440 Secret files are readable by that user;
- ports: every listener's bind port and every passive port is a containerPort and a Service
  targetPort, and the passive ports are published as announced; port 21 (the legacy server's plain
  port) is in neither, and the legacy server listens on 127.0.0.1, the config's backend;
- the probes run the image's HEALTHCHECK command; the grace period covers the 30 s drain; the Pod
  shares its process namespace (an init for vsftpd); a port below 1024 comes with the sysctl;
- then the Pod as docker runs it: the legacy container with the manifest's args, ftpsgate in its
  network namespace with the manifest's user, mounts (Secret files root:fsGroup 0440) and
  restrictions; `--check-config` passes and both probe commands exit 0 inside it.
"""

import json
import os
import shutil
import sys
import tempfile

import yaml

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import harness as H  # noqa: E402
import dockerenv as D  # noqa: E402
from harness import check, check_eq  # noqa: E402

MANIFEST = os.path.join(D.REPO, "deploy", "kubernetes", "ftpsgate-sidecar.yaml")
PID = os.getpid()
TAG = "ftpsgate-test-k8s:%d" % PID
LEGACY_TAG = "ftpsgate-test-k8s-legacy:%d" % PID
NET = "ftpsgate-test-k8s-%d" % PID
LEGACY = "ftpsgate-test-k8s-legacy-%d" % PID
FG = "ftpsgate-test-k8s-fg-%d" % PID


def port_of(hostport):
    return int(hostport.rsplit(":", 1)[1])


def passive_ports(listener):
    a, b = (int(x) for x in listener["passive"]["ports"].split("-"))
    return list(range(a, b + 1))


def announced_ports(listener):
    if "announce_ports" not in listener["passive"]:
        return passive_ports(listener)
    a, b = (int(x) for x in listener["passive"]["announce_ports"].split("-"))
    return list(range(a, b + 1))


def body(s, eng, tmp):
    with open(MANIFEST) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    st = {}

    def parse():
        check_eq(sorted(by_kind), ["ConfigMap", "Deployment", "Service"], "kinds in the manifest")
        cm = by_kind["ConfigMap"][0]
        st["config_text"] = cm["data"]["config.json"]
        st["config"] = json.loads(st["config_text"])
        pod = by_kind["Deployment"][0]["spec"]["template"]["spec"]
        st["pod"] = pod
        st["c"] = {c["name"]: c for c in pod["containers"]}
        check_eq(sorted(st["c"]), ["ftpsgate", "legacy"], "the Pod's containers")
        st["svc"] = by_kind["Service"][0]
        check_eq(st["svc"]["spec"]["selector"], by_kind["Deployment"][0]["spec"]["template"]["metadata"]["labels"],
                 "the Service selects the Pod")

    if not s.run("the manifest parses: ConfigMap, Deployment, Service", parse):
        return

    ctx_dir = os.path.join(tmp, "ctx")
    os.makedirs(ctx_dir)

    def build():
        D.clean_context(ctx_dir)
        D.build(TAG, ctx_dir)
        D.build(LEGACY_TAG, os.path.join(ctx_dir, "deploy"), os.path.join(ctx_dir, "deploy", "backend.Dockerfile"))
        st["image"] = json.loads(D.docker(["image", "inspect", TAG]).stdout)[0]["Config"]

    if not s.run("the image and the legacy image build", build):
        return
    img, cfg, pod, fg, legacy = st["image"], st["config"], st["pod"], st["c"]["ftpsgate"], st["c"]["legacy"]
    mounts = {m["name"]: m for m in fg["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}

    def security():
        uid, gid = (int(x) for x in img["User"].split(":"))
        sc = fg["securityContext"]
        check_eq((sc.get("runAsUser"), sc.get("runAsGroup")), (uid, gid), "runAsUser/runAsGroup vs the image's USER")
        check(sc.get("runAsNonRoot") is True, "runAsNonRoot is not true")
        check(sc.get("readOnlyRootFilesystem") is True, "readOnlyRootFilesystem is not true")
        check(sc.get("allowPrivilegeEscalation") is False, "allowPrivilegeEscalation is not false")
        check_eq(sc.get("capabilities", {}).get("drop"), ["ALL"], "capabilities dropped")
        check_eq(fg["image"], "ftpsgate", "ftpsgate's image (the README's docker build -t ftpsgate .)")
        check_eq(pod.get("securityContext", {}).get("fsGroup"), gid, "fsGroup (the Secret's files are 0440)")
        check(pod.get("shareProcessNamespace") is True, "no init for vsftpd: shareProcessNamespace is not true")
        check(pod.get("terminationGracePeriodSeconds", 30) > 30, "the grace period does not cover the 30 s drain")
        if any(port_of(ln["bind"]) < 1024 for ln in cfg["listeners"]):
            sysctls = {x["name"]: x["value"] for x in pod["securityContext"].get("sysctls", [])}
            check_eq(sysctls.get("net.ipv4.ip_unprivileged_port_start"), "0",
                     "a bind port below 1024 for a non-root user needs the sysctl")

    s.run("ftpsgate's container: the image's user, non-root, read-only, no capabilities", security)

    def paths():
        entry = img["Entrypoint"]
        conf_path = entry[entry.index("--config") + 1]
        m = mounts["config"]
        check_eq((m["mountPath"], m.get("subPath"), m.get("readOnly")), (conf_path, "config.json", True),
                 "the config mount vs the image's ENTRYPOINT --config")
        check_eq(volumes["config"]["configMap"]["name"], by_kind["ConfigMap"][0]["metadata"]["name"], "ConfigMap")
        tls_dir = mounts["tls"]["mountPath"]
        check("secret" in volumes["tls"], "the tls volume is not a Secret")
        check_eq(volumes["tls"]["secret"].get("defaultMode"), 0o440, "the Secret's file mode")
        for ident, t in cfg["tls"].items():
            for key, want in (("cert", "tls.crt"), ("key", "tls.key")):
                check_eq((os.path.dirname(t[key]), os.path.basename(t[key])), (tls_dir, want),
                         "tls.%s.%s vs the Secret mount" % (ident, key))

    s.run("paths: config where the image reads it, certificate and key in the Secret", paths)

    def ports():
        binds = [port_of(ln["bind"]) for ln in cfg["listeners"]]
        pasv = [p for ln in cfg["listeners"] for p in passive_ports(ln)]
        container_ports = sorted(p["containerPort"] for p in fg["ports"])
        check_eq(container_ports, sorted(binds + pasv), "containerPorts vs the listeners' bind and passive ports")
        svc = st["svc"]["spec"]["ports"]
        check_eq(sorted(p["targetPort"] for p in svc), container_ports, "Service targetPorts")
        published = {p["targetPort"]: p["port"] for p in svc}
        for ln in cfg["listeners"]:
            for listen, announced in zip(passive_ports(ln), announced_ports(ln)):
                check_eq(published[listen], announced, "%s: passive port %d published as announced" % (
                    ln["name"], listen))
            check_eq(ln["backend"]["address"], "127.0.0.1:21", "%s: backend" % ln["name"])
        check(21 not in container_ports and 21 not in published, "the plain port 21 is exposed")
        check("-olisten_address=127.0.0.1" in legacy.get("args", []), "the legacy server does not listen on "
                                                                        "127.0.0.1 only")

    s.run("ports: listeners and passive ports in the Pod and the Service, 21 nowhere", ports)

    def probes():
        hc = img["Healthcheck"]["Test"]
        check_eq(hc[0], "CMD", "the image's HEALTHCHECK form")
        for probe in ("readinessProbe", "livenessProbe"):
            check_eq(fg[probe]["exec"]["command"], hc[1:], "%s vs the image's HEALTHCHECK" % probe)

    s.run("probes run the image's HEALTHCHECK command", probes)

    def as_the_pod_runs():
        uid, gid = fg["securityContext"]["runAsUser"], fg["securityContext"]["runAsGroup"]
        fs_group = pod["securityContext"]["fsGroup"]
        conf_dir = os.path.join(tmp, "configmap")
        sec_dir = os.path.join(tmp, "secret")
        for d in (conf_dir, sec_dir):
            os.makedirs(d)
            os.chmod(d, 0o755)
        with open(os.path.join(conf_dir, "config.json"), "w") as f:
            f.write(st["config_text"])
        os.chmod(os.path.join(conf_dir, "config.json"), 0o644)
        certs = H.Certs(os.path.join(tmp, "certs"))
        mode = volumes["tls"]["secret"]["defaultMode"]
        for src, name in ((certs.cert, "tls.crt"), (certs.key, "tls.key")):
            dst = os.path.join(sec_dir, name)
            shutil.copy(src, dst)
            os.chown(dst, 0, fs_group)  # as the kubelet makes Secret files with fsGroup
            os.chmod(dst, mode)
        D.docker(["network", "create"] + D.label_args() + [NET])
        D.docker(["run", "-d", "--init", "--name", LEGACY, "--network", NET] + D.label_args()
                 + [LEGACY_TAG] + legacy.get("args", []))
        cm = mounts["config"]
        argv = ["run", "-d", "--name", FG, "--network", "container:" + LEGACY, "--user", "%d:%d" % (uid, gid),
                "--group-add", str(fs_group), "--read-only", "--cap-drop", "ALL",
                "--security-opt", "no-new-privileges",
                "-v", "%s:%s:ro" % (os.path.join(conf_dir, cm["subPath"]), cm["mountPath"]),
                "-v", "%s:%s:ro" % (sec_dir, mounts["tls"]["mountPath"])] + D.label_args() + [TAG]
        D.docker(argv)
        r = D.docker(["run", "--rm", "--network", "none", "--user", "%d:%d" % (uid, gid), "--group-add",
                      str(fs_group), "--read-only", "--cap-drop", "ALL",
                      "-v", "%s:%s:ro" % (os.path.join(conf_dir, cm["subPath"]), cm["mountPath"]),
                      "-v", "%s:%s:ro" % (sec_dir, mounts["tls"]["mountPath"])] + D.label_args()
                     + [TAG, "--check-config"], check=False)
        check(r.returncode == 0 and "configuration OK" in r.stdout,
              "--check-config of the ConfigMap with the Secret mounted: %s" % (r.stdout + r.stderr)[-600:])

        def probe_ok(probe):
            pr = D.docker(["exec", FG] + fg[probe]["exec"]["command"], check=False)
            return pr if pr.returncode == 0 else None

        for probe in ("readinessProbe", "livenessProbe"):
            pr = H.wait_until(lambda: probe_ok(probe), 30, 0.5)
            check(pr is not None, "%s failed in the Pod-like containers; ftpsgate log:\n%s" % (probe, D.logs(FG)))
            check_eq(pr.stdout.count(": ok,"), len(cfg["listeners"]), "%s: listeners answering" % probe)
            # ftpsgate greets for itself and dials the legacy server per session: the probe is
            # about ftpsgate (the legacy container has probes of its own).
            check("220 Service ready" in pr.stdout, "%s: no greeting from ftpsgate: %r" % (probe, pr.stdout))

    s.run("as the Pod runs it: --check-config passes, both probes exit 0", as_the_pod_runs)


def main():
    s = H.Suite("test_sidecar_kubernetes")
    tmp = tempfile.mkdtemp(prefix="ftpsgate-k8s-")
    os.chmod(tmp, 0o755)
    eng = D.engine_for(s, tmp)
    try:
        body(s, eng, tmp)
    except Exception as e:  # noqa: BLE001 - a setup error fails the file with its trace
        s.fail_setup("test body", e)
    finally:
        D.remove_labelled()
        for tag in (TAG, LEGACY_TAG):
            D.docker(["image", "rm", tag], check=False)
        print("   docker: %s" % (eng.down() or "engine left running (not started by this test)"), flush=True)
        shutil.rmtree(tmp, ignore_errors=True)
    sys.exit(s.finish())


if __name__ == "__main__":
    main()
