#!/usr/bin/python3
"""The Kubernetes scale-out example (deploy/kubernetes/ftpsgate-scale-out.yaml), checked without a cluster.

No cluster can run here. The test reads the manifest and checks it against the image's Dockerfile,
against itself and against deploy/scale-out/ (the HAProxy set-up it is the equivalent of):
- the image: the pods run as the Dockerfile's numeric USER (runAsUser/runAsGroup, fsGroup for the
  0440 Secret files), non-root, read-only, no capabilities; the image's ENTRYPOINT runs unchanged
  and each pod's config is mounted at the path it reads, chosen by the pod's own name
  (subPathExpr $(POD_NAME).json, POD_NAME from the downward API); the certificate and key of every
  config are the kubernetes.io/tls Secret's files; the liveness probe is the image's HEALTHCHECK;
- the per-pod configs: one ConfigMap key per replica, named after its pod; each passes
  `ftpsgate --check-config` (the certificate paths pointed at test files); the same listeners
  (names, modes, bind ports) and admin port in every pod; passive ranges distinct, one block per
  pod, derived from the ordinal by one stride, clear of the listener and admin ports;
- the Services: the governing headless one; the control one (LoadBalancer) selects every pod and
  maps 21 and 990 to the explicit and implicit listeners; one per pod selects that pod alone by
  its pod-name label and publishes exactly its passive ports, 1:1, at the address the pod
  announces (loadBalancerIP), keeping not-ready pods (their live sessions); every LoadBalancer
  Service keeps client addresses (externalTrafficPolicy Local: the data peer check);
- the readiness probe asks /healthz on each pod's admin port;
- against deploy/scale-out/client/: the same listeners, backend and policy as the HAProxy
  set-up's instances, each pod announcing an address of its own as they do.
"""

import json
import os
import re
import shutil
import sys
import tempfile

import yaml

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import harness as H  # noqa: E402
from harness import check, check_eq  # noqa: E402

REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
MANIFEST = os.path.join(REPO, "deploy", "kubernetes", "ftpsgate-scale-out.yaml")
DOCKERFILE = os.path.join(REPO, "Dockerfile")
HAPROXY_SETUP = os.path.join(REPO, "deploy", "scale-out", "client")
POD_LABEL = "statefulset.kubernetes.io/pod-name"


def port_of(hostport):
    return int(hostport.rsplit(":", 1)[1])


def ranges(cfg):
    out = []
    for ln in cfg["listeners"]:
        a, b = (int(x) for x in ln["passive"]["ports"].split("-"))
        out.append((a, b))
    return sorted(out)


def dockerfile():
    """USER, ENTRYPOINT and HEALTHCHECK's command of the image, from the Dockerfile."""
    with open(DOCKERFILE) as f:
        text = re.sub(r"\\\n", " ", f.read())  # continuation lines
    out = {}
    for ln in text.splitlines():
        w = ln.split(None, 1)
        if not w or w[0].startswith("#"):
            continue
        if w[0] == "USER":
            out["user"] = tuple(int(x) for x in w[1].strip().split(":"))
        elif w[0] == "ENTRYPOINT":
            out["entrypoint"] = json.loads(w[1])
        elif w[0] == "HEALTHCHECK":
            out["healthcheck"] = json.loads(w[1].split(" CMD ", 1)[1])
    return out


def body(s, tmp):
    st = {}

    def parse():
        with open(MANIFEST) as f:
            docs = [d for d in yaml.safe_load_all(f) if d]
        kinds = {}
        for d in docs:
            kinds.setdefault(d["kind"], []).append(d)
        check_eq(sorted(kinds), ["ConfigMap", "Service", "StatefulSet"], "kinds in the manifest")
        check_eq((len(kinds["ConfigMap"]), len(kinds["StatefulSet"])), (1, 1), "one ConfigMap, one StatefulSet")
        st["cm"], st["sts"], st["svcs"] = kinds["ConfigMap"][0], kinds["StatefulSet"][0], kinds["Service"]
        st["pod"] = st["sts"]["spec"]["template"]["spec"]
        check_eq([c["name"] for c in st["pod"]["containers"]], ["ftpsgate"], "the pod's containers")
        st["c"] = st["pod"]["containers"][0]
        st["img"] = dockerfile()
        check_eq(sorted(st["img"]), ["entrypoint", "healthcheck", "user"], "what the Dockerfile says")
        name, n = st["sts"]["metadata"]["name"], st["sts"]["spec"]["replicas"]
        check(n >= 2, "replicas: %s" % n)
        st["pods"] = ["%s-%d" % (name, i) for i in range(n)]
        check_eq(sorted(st["cm"]["data"]), sorted(p + ".json" for p in st["pods"]),
                 "ConfigMap keys: one per pod, named after it")
        st["cfg"] = {p: json.loads(st["cm"]["data"][p + ".json"]) for p in st["pods"]}

    if not s.run("the manifest parses: ConfigMap, StatefulSet, Services; one config per pod", parse):
        return
    sts, pod, c, img, cfgs, pods = st["sts"], st["pod"], st["c"], st["img"], st["cfg"], st["pods"]
    labels = sts["spec"]["template"]["metadata"]["labels"]
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}

    def image():
        uid, gid = img["user"]
        sc = c["securityContext"]
        check_eq((sc.get("runAsUser"), sc.get("runAsGroup")), (uid, gid), "runAsUser/runAsGroup vs the USER")
        check(sc.get("runAsNonRoot") is True, "runAsNonRoot is not true")
        check(sc.get("readOnlyRootFilesystem") is True, "readOnlyRootFilesystem is not true")
        check(sc.get("allowPrivilegeEscalation") is False, "allowPrivilegeEscalation is not false")
        check_eq(sc.get("capabilities", {}).get("drop"), ["ALL"], "capabilities dropped")
        check_eq(pod.get("securityContext", {}).get("fsGroup"), gid, "fsGroup (the Secret's files are 0440)")
        check_eq(c["image"], "ftpsgate", "the image (the README's docker build -t ftpsgate .)")
        check("command" not in c and "args" not in c, "the image's ENTRYPOINT is overridden")
        check(pod.get("terminationGracePeriodSeconds", 30) > 30, "the grace period does not cover the 30 s drain")
        for p, cfg in cfgs.items():
            check("user" not in cfg, "%s: \"user\" (the image never runs as root)" % p)

    s.run("the pods: the image's user 10001, non-root, read-only, no capabilities; its ENTRYPOINT runs", image)

    def paths():
        conf = img["entrypoint"][img["entrypoint"].index("--config") + 1]
        m = mounts["config"]
        check_eq((m["mountPath"], m.get("subPathExpr"), m.get("readOnly")), (conf, "$(POD_NAME).json", True),
                 "the config mount vs the ENTRYPOINT's --config")
        check("subPath" not in m, "both subPath and subPathExpr")
        env = {e["name"]: e for e in c.get("env", [])}
        check_eq(env.get("POD_NAME", {}).get("valueFrom"), {"fieldRef": {"fieldPath": "metadata.name"}},
                 "POD_NAME from the downward API")
        check_eq(volumes["config"]["configMap"]["name"], st["cm"]["metadata"]["name"], "the config volume")
        check_eq(volumes["tls"]["secret"].get("defaultMode"), 0o440, "the Secret's file mode")
        tls_dir = mounts["tls"]["mountPath"]
        for p, cfg in cfgs.items():
            for ident, t in cfg["tls"].items():
                check_eq((t["cert"], t["key"]), (tls_dir + "/tls.crt", tls_dir + "/tls.key"),
                         "%s: tls.%s vs the kubernetes.io/tls Secret's mount" % (p, ident))

    s.run("paths: each pod's own config where the image reads it; certificate and key in the Secret", paths)

    def check_config():
        certs = H.Certs(os.path.join(tmp, "certs"))
        for p, cfg in cfgs.items():
            doc = json.loads(json.dumps(cfg))
            for t in doc["tls"].values():
                t["cert"], t["key"] = certs.cert, certs.key
            path = os.path.join(tmp, p + ".json")
            with open(path, "w") as f:
                json.dump(doc, f)
            r = H.run_cmd([os.environ["FTPSGATE_BIN"], "--check-config", "--config", path], timeout=30)
            check(r.returncode == 0 and "configuration OK" in r.stdout,
                  "%s: --check-config: %s" % (p, (r.stdout + r.stderr)[-500:]))

    s.run("every pod's config passes ftpsgate --check-config", check_config)

    def pod_ports():
        shape = {p: [(ln["name"], ln["mode"], ln["bind"]) for ln in cfg["listeners"]] for p, cfg in cfgs.items()}
        check_eq(len({json.dumps(v) for v in shape.values()}), 1, "listeners differ between pods: %s" % shape)
        admin = {cfg["admin"]["bind"] for cfg in cfgs.values()}
        check_eq(len(admin), 1, "admin.bind differs between pods")
        admin_port = port_of(admin.pop())
        binds = [port_of(b) for _, _, b in shape[pods[0]]]
        check_eq(sorted(p["containerPort"] for p in c["ports"]), sorted(binds + [admin_port]),
                 "containerPorts vs the listeners' and the admin port")
        blocks = []
        for p in pods:
            r = ranges(cfgs[p])
            for (_, b1), (a2, _) in zip(r, r[1:]):
                check_eq(a2, b1 + 1, "%s: its ranges are one block" % p)
            lo, hi = r[0][0], r[-1][1]
            check(not any(lo <= x <= hi for x in binds + [admin_port]), "%s: a listener or admin port in %d-%d"
                  % (p, lo, hi))
            blocks.append((lo, hi))
        for (a1, b1), (a2, b2) in zip(blocks, blocks[1:]):
            check(b1 < a2, "passive ranges of two pods overlap: %d-%d, %d-%d" % (a1, b1, a2, b2))
        strides = {b[0] - a[0] for a, b in zip(blocks, blocks[1:])}
        sizes = {hi - lo for lo, hi in blocks}
        check(len(strides) == 1 and len(sizes) == 1, "ranges not derived from the ordinal by one stride: %s"
              % blocks)

    s.run("ports: the same listeners and admin port in every pod; passive ranges distinct, one stride apart",
          pod_ports)

    def services():
        by_name = {x["metadata"]["name"]: x for x in st["svcs"]}
        gov = by_name.get(sts["spec"]["serviceName"])
        check(gov is not None, "no governing Service %r" % sts["spec"]["serviceName"])
        check_eq(gov["spec"].get("clusterIP"), "None", "the governing Service is headless")
        check_eq(sts["spec"]["selector"]["matchLabels"], labels, "the StatefulSet's selector vs its pods' labels")
        lbs = [x for x in st["svcs"] if x["spec"].get("type") == "LoadBalancer"]
        control = [x for x in lbs if POD_LABEL not in x["spec"]["selector"]]
        check_eq(len(control), 1, "LoadBalancer Services selecting every pod")
        ctl = control[0]["spec"]
        check_eq(ctl["selector"], labels, "the control Service's selector")
        by_mode = {ln["mode"]: port_of(ln["bind"]) for ln in cfgs[pods[0]]["listeners"]}
        check_eq({p["port"]: p["targetPort"] for p in ctl["ports"]},
                 {21: by_mode["explicit"], 990: by_mode["implicit"]}, "control Service: 21 and 990 to the listeners")
        announced = set()
        for p in pods:
            mine = [x["spec"] for x in lbs if x["spec"]["selector"].get(POD_LABEL) == p]
            check_eq(len(mine), 1, "Services publishing %s's range" % p)
            svc = mine[0]
            check_eq({k: v for k, v in svc["selector"].items() if k != POD_LABEL}, labels,
                     "%s's data Service: its other labels" % p)
            want = [x for a, b in ranges(cfgs[p]) for x in range(a, b + 1)]
            check_eq(sorted((x["port"], x["targetPort"]) for x in svc["ports"]), [(x, x) for x in want],
                     "%s's data Service: exactly its passive ports, 1:1" % p)
            addrs = {ln["passive"]["announce"] for ln in cfgs[p]["listeners"]}
            check_eq(addrs, {svc.get("loadBalancerIP")}, "%s: passive.announce vs its Service's address" % p)
            check(svc.get("publishNotReadyAddresses") is True, "%s's data Service drops it when not ready" % p)
            announced |= addrs
        check_eq(len(announced), len(pods), "announced addresses are not one per pod: %s" % announced)
        check(ctl.get("loadBalancerIP") not in announced, "a pod announces the control Service's address")
        for x in lbs:
            check_eq(x["spec"].get("externalTrafficPolicy"), "Local",
                     "%s: externalTrafficPolicy (the data peer check needs the client's address)"
                     % x["metadata"]["name"])
        for p in pods:
            for ln in cfgs[p]["listeners"]:
                check("proxy_protocol" not in ln, "%s %s: proxy_protocol behind a pass-through balancer" % (
                    p, ln["name"]))
                check(ln["passive"].get("check_peer_ip", True) is True, "%s %s: check_peer_ip off" % (p, ln["name"]))

    s.run("Services: control on the load balancer to every pod; one per pod with exactly its range, "
          "at its announced address; client addresses kept", services)

    def probes():
        rp = c["readinessProbe"]["httpGet"]
        admin_port = port_of(cfgs[pods[0]]["admin"]["bind"])
        check_eq((rp["path"], rp["port"]), ("/healthz", admin_port), "readiness probe vs the admin endpoint")
        for p, cfg in cfgs.items():
            check(cfg["admin"]["bind"].startswith("0.0.0.0:"), "%s: admin.bind not reachable by the kubelet" % p)
        check_eq(c["livenessProbe"]["exec"]["command"], img["healthcheck"], "liveness probe vs the HEALTHCHECK")

    s.run("probes: readiness GET /healthz on the admin port; liveness the image's HEALTHCHECK", probes)

    def like_haproxy_setup():
        for p in pods:
            k8s = cfgs[p]["listeners"]
            ref = json.load(open(os.path.join(HAPROXY_SETUP, "ftps1.json")))["listeners"]
            check_eq([(ln["name"], ln["mode"], ln["backend"], ln["policy"]) for ln in k8s],
                     [(ln["name"], ln["mode"], ln["backend"], ln["policy"]) for ln in ref],
                     "%s: listeners, backend and policy vs deploy/scale-out/client/ftps1.json" % p)

    s.run("the pods serve what deploy/scale-out/'s instances serve (listeners, backend, policy)", like_haproxy_setup)


def main():
    s = H.Suite("scaleout_kubernetes")
    if H.SELFCHECK:
        s.run("the Kubernetes scale-out manifest", H.needs_proxy)
        sys.exit(s.finish())
    binary = os.environ.get("FTPSGATE_BIN", "")
    if not binary or not os.access(binary, os.X_OK):
        s.fail_setup("environment", RuntimeError("FTPSGATE_BIN (%r) is not an executable" % binary))
        sys.exit(s.finish())
    tmp = tempfile.mkdtemp(prefix="ftpsgate-k8s-scale-")
    try:
        body(s, tmp)
    except Exception as e:  # noqa: BLE001 - a setup error fails the file with its trace
        s.fail_setup("test body", e)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    sys.exit(s.finish())


if __name__ == "__main__":
    main()
