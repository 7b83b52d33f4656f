#!/usr/bin/python3
"""`cmake --install` and the systemd unit it installs (deploy/ftpsgate.service.in).

The unit is checked with `systemd-analyze verify` (no warning at all), and its own
command lines are run as systemd would run them, with the installed binary: the
ExecStartPre config check (passes on a good config, fails on a broken one, so a
broken config never reaches ExecStart), ExecStart (a download through the proxy,
sha256), ExecReload ($MAINPID gets SIGHUP and the proxy reloads), and KillSignal
(exit 0 well within TimeoutStopSec). Paths of the unit (the /usr/local prefix and
/etc/ftpsgate/ftpsgate.json) are mapped to the test's own install prefix and config.
systemd itself is not started: tests run without it as PID 1.
"""
import json
import os
import shlex
import shutil
import signal
import subprocess

import backends as B
import harness as H
from harness import check, check_code, check_eq


def unit_lines(path):
    """The unit's key=value settings as (section, key, value), in order."""
    section, out = None, []
    with open(path) as f:
        for raw in f:
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("["):
                section = line.strip("[]")
                continue
            key, _, value = line.partition("=")
            out.append((section, key.strip(), value.strip()))
    return out


def setting(lines, key):
    vals = [v for _, k, v in lines if k == key]
    check_eq(len(vals), 1, "number of %s= lines in the unit" % key)
    return vals[0]


def body(s, env):
    if H.SELFCHECK:
        s.run("systemd unit (tests ftpsgate itself)", H.needs_proxy)
        return
    build_dir = os.environ.get("FTPSGATE_BUILD_DIR", "")
    unit_src = os.path.join(build_dir, "ftpsgate.service")
    check(os.path.isfile(unit_src), "no ftpsgate.service in the build directory %r" % build_dir)
    prefix = os.path.join(env.tmp, "prefix")
    state = {}

    def install():
        r = subprocess.run(["cmake", "--install", build_dir, "--prefix", prefix], capture_output=True, text=True,
                           timeout=120)
        check_eq(r.returncode, 0, "cmake --install (%s)" % r.stderr.strip()[-300:])
        for rel in ("sbin/ftpsgate", "lib/systemd/system/ftpsgate.service", "share/doc/ftpsgate/README.md",
                    "share/doc/ftpsgate/config.example.json"):
            check(os.path.isfile(os.path.join(prefix, rel)), "%s not installed" % rel)
        check(os.access(os.path.join(prefix, "sbin/ftpsgate"), os.X_OK), "installed ftpsgate is not executable")
        r = subprocess.run([os.path.join(prefix, "sbin/ftpsgate"), "--version"], capture_output=True, text=True,
                           timeout=10)
        check(r.returncode == 0 and "ftpsgate" in r.stdout, "installed ftpsgate --version: %r" % r.stdout)

    if not s.run("cmake --install: daemon, unit, README and example config in place", install):
        return

    unit = os.path.join(prefix, "lib/systemd/system/ftpsgate.service")
    lines = unit_lines(unit)
    start = shlex.split(setting(lines, "ExecStart"))
    binary_in_unit, config_in_unit = start[0], start[-1]

    def mapped(argv, config):
        """The unit's argv with its paths moved to this test's prefix and config."""
        out = []
        for a in argv:
            if a == binary_in_unit:
                a = os.path.join(prefix, "sbin/ftpsgate")
            elif a == config_in_unit:
                a = config
            out.append(a)
        return out

    def verify():
        check(shutil.which("systemd-analyze"), "systemd-analyze not installed (tests/setup-deps.sh installs systemd)")
        d = os.path.join(env.tmp, "unit")
        os.makedirs(d, exist_ok=True)
        with open(unit) as f:
            text = f.read()
        copy = os.path.join(d, "ftpsgate.service")
        with open(copy, "w") as f:
            f.write(text.replace(binary_in_unit, os.path.join(prefix, "sbin/ftpsgate")))
        r = subprocess.run(["systemd-analyze", "verify", copy], capture_output=True, text=True, timeout=60, cwd=d)
        check_eq((r.returncode, (r.stdout + r.stderr).strip()), (0, ""), "systemd-analyze verify")
        check_eq(binary_in_unit, "/usr/local/sbin/ftpsgate", "ExecStart binary (default prefix)")
        check_eq(config_in_unit, "/etc/ftpsgate/ftpsgate.json", "ExecStart config")
        caps = set(setting(lines, "CapabilityBoundingSet").split())
        check_eq(caps, {"CAP_NET_BIND_SERVICE", "CAP_SETUID", "CAP_SETGID", "CAP_NET_ADMIN", "CAP_NET_RAW"},
                 "CapabilityBoundingSet")
        check_eq(setting(lines, "KillSignal"), "SIGTERM", "KillSignal")

    s.run("systemd-analyze verify: the unit is clean; paths, capabilities and stop signal as documented", verify)

    vs = env.backend("vs1")
    sha = vs.add_pub("unit.bin", 3 * H.MiB + 1)
    env.front(vs, "svc")
    ln = env.proxy.listeners[0]
    port = H.free_port()
    ln["bind"] = "%s:%d" % (H.HOST, port)
    config = os.path.join(env.tmp, "ftpsgate-unit.json")
    with open(config, "w") as f:
        json.dump(env.proxy.config(), f, indent=2)

    def start_pre():
        r = subprocess.run(mapped(shlex.split(setting(lines, "ExecStartPre")), config), capture_output=True,
                           text=True, timeout=30)
        check(r.returncode == 0 and "configuration OK" in r.stdout, "ExecStartPre on a good config: rc %d %r"
              % (r.returncode, (r.stdout + r.stderr)[-300:]))
        # The test certificate lives 2 days: the check warns (stderr, so the journal shows it).
        check("tls.main: the certificate expires at" in r.stderr, "no expiry warning from --check-config: %r"
              % r.stderr[-300:])
        broken = os.path.join(env.tmp, "broken.json")
        with open(broken, "w") as f:
            f.write(json.dumps(env.proxy.config()).replace('"mode": "explicit"', '"mode": "sideways"'))
        r = subprocess.run(mapped(shlex.split(setting(lines, "ExecStartPre")), broken), capture_output=True,
                           text=True, timeout=30)
        check(r.returncode != 0 and "listeners[0].mode" in r.stderr,
              "ExecStartPre on a broken config: rc %d %r" % (r.returncode, r.stderr[-300:]))

    s.run("ExecStartPre: --check-config passes a good config, fails a broken one naming the JSON path", start_pre)

    log = os.path.join(env.tmp, "unit-ftpsgate.log")

    def run_start():
        p = H.spawn(mapped(start, config), log)
        state["proc"] = p
        check(H.wait_port(H.HOST, port, 30 if env.proxy.sanitized else 10, p),
              "ExecStart did not listen on %d: %s" % (port, H.tail_file(log, 10)))
        out = os.path.join(env.client_dir, "unit.bin")
        r, _ = B.curl_run(H.HOST, port, env.certs.ca, H.FTP_USER,
                          H.PASSWORD, ["-o", out, B.url(H.HOST, port, "/pub/unit.bin")])
        check_eq(r.returncode, 0, "curl through the unit's ExecStart (%s)" % B.tail(r.stderr))
        check_eq(H.sha256_file(out), sha, "sha256 of the download")

    if not s.run("ExecStart: the installed proxy serves a download (sha256)", run_start):
        if state.get("proc"):
            H.stop_process(state["proc"], signal.SIGKILL, 5)
        return
    p = state["proc"]

    def reload():
        reload_cmd = setting(lines, "ExecReload").replace("$MAINPID", str(p.pid))
        r = subprocess.run(shlex.split(reload_cmd), capture_output=True, text=True, timeout=10)
        check_eq(r.returncode, 0, "ExecReload %r" % reload_cmd)
        check(H.wait_until(lambda: "configuration and certificates reloaded" in open(log).read(), 15),
              "no reload logged after ExecReload: %s" % H.tail_file(log, 10))
        check(p.poll() is None, "the proxy exited on SIGHUP")

    s.run("ExecReload: kill -HUP $MAINPID reloads, the proxy stays up", reload)

    def reload_with(doc, logged):
        """Writes doc as the config, sends SIGHUP, waits for a new `logged` line; the log since."""
        with open(config, "w") as f:
            json.dump(doc, f, indent=2)
        mark = os.path.getsize(log)
        p.send_signal(signal.SIGHUP)

        def since():
            with open(log, errors="replace") as f:
                f.seek(mark)
                return f.read()
        check(H.wait_until(lambda: logged in since(), 15), "no %r after SIGHUP: %s" % (logged, since()[-300:]))
        return since()

    def prot_c_reply():
        ctx = H.ssl.create_default_context(cafile=env.certs.ca)
        c = H.Ctl(H.Target("svc", port, True, env.certs.ca, vs))
        try:
            c.secure_login(ctx, None)
            check_code(c.cmd("PBSZ 0"), 200, "PBSZ 0")
            return c.cmd("PROT C")[0]
        finally:
            c.close()

    def reload_applies_and_refuses():
        good = json.load(open(config))
        check_eq(prot_c_reply(), 534, "PROT C under data_protection private")
        # A change that needs a new socket is refused as a whole: the old listener keeps serving.
        moved = json.loads(json.dumps(good))
        moved["listeners"][0]["bind"] = "%s:%d" % (H.HOST, H.free_port())
        moved["listeners"][0]["policy"]["data_protection"] = "any"
        text = reload_with(moved, "reload refused")
        check("reload refused: listener svc: bind changed; restart ftpsgate to apply it" in text,
              "refusal names the listener and the setting: %s" % text[-300:])
        check_eq(prot_c_reply(), 534, "PROT C after a refused reload (nothing applied)")
        # A policy change applies to new sessions.
        relaxed = json.loads(json.dumps(good))
        relaxed["listeners"][0]["policy"]["data_protection"] = "any"
        reload_with(relaxed, "configuration and certificates reloaded")
        check_eq(prot_c_reply(), 200, "PROT C after reloading data_protection any")
        check(p.poll() is None, "the proxy exited during the reloads")

    s.run("SIGHUP: a bind change is refused whole (listener and setting named); a policy change applies",
          reload_applies_and_refuses)

    def stop():
        check_eq(setting(lines, "KillSignal"), "SIGTERM", "KillSignal")
        H.check_clean_stop(p, log, timeout=int(setting(lines, "TimeoutStopSec")))

    s.run("KillSignal SIGTERM: exit 0 within TimeoutStopSec; no password, no sanitizer report in the log", stop)


if __name__ == "__main__":
    H.main_wrapper("service_unit", body, need_bytes=64 * H.MiB)
