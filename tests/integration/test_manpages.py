#!/usr/bin/python3
"""The manual pages man/ftpsgate.8 and man/ftpsgate.json.5 (issue 9):

- `man -l` renders each without a groff warning (--warnings=w: every groff warning), and not empty;
- every configuration key of README.md's Configuration section (the first column of its key
  tables, and the `user` key) and every key of config.example.json is a defined term of
  ftpsgate.json(5) (a .TP tag in bold), so the page cannot fall behind the README;
- every option of `ftpsgate --help` and every signal the README's Operations section names
  is in ftpsgate(8);
- `cmake --install` puts both pages under share/man/man8 and share/man/man5, unchanged.
"""

import json
import os
import re
import shutil
import sys
import tempfile

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import harness as H  # noqa: E402
from harness import check, check_eq  # noqa: E402

REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
PAGES = {"ftpsgate.8": "man8", "ftpsgate.json.5": "man5"}


def src(name):
    with open(os.path.join(REPO, "man", name)) as f:
        return f.read()


def defined_terms(roff):
    """Bold words that open a .TP tag: the keys the page defines."""
    terms = set()
    lines = roff.splitlines()
    for i, ln in enumerate(lines[:-1]):
        if ln.strip() == ".TP":
            m = re.match(r"^\.BR?\s+(\S+)", lines[i + 1])
            if m:
                terms.add(m.group(1).replace("\\-", "-"))
    return terms


def readme_keys():
    with open(os.path.join(REPO, "README.md")) as f:
        text = f.read()
    sec = text.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    keys = set()
    in_key_table = False
    for ln in sec.splitlines():
        if ln.startswith("| key ") or ln.startswith("| top-level key "):
            in_key_table = True
            continue
        if not ln.startswith("|"):
            in_key_table = False
            continue
        m = re.match(r"^\|\s*`([a-z_]+)`\s*\|", ln)
        if in_key_table and m:
            keys.add(m.group(1))
    keys.update(re.findall(r"^### `([a-z_]+)`\s*$", sec, re.M))
    return keys


def example_keys():
    with open(os.path.join(REPO, "config.example.json")) as f:
        doc = json.load(f)
    keys = set()

    def walk(node, parent):
        if isinstance(node, dict):
            for k, v in node.items():
                if parent not in ("tls", "sni"):  # identity names and server names are the user's
                    keys.add(k)
                walk(v, k)
        elif isinstance(node, list):
            for v in node:
                walk(v, parent)

    walk(doc, None)
    return keys


def body(s, env):
    def renders(name):
        r = H.run_cmd(["man", "-l", "--warnings=w", os.path.join(REPO, "man", name)], timeout=60,
                      env=dict(os.environ, MANWIDTH="80", LC_ALL="C.UTF-8", MANPAGER="cat", PAGER="cat"))
        check_eq(r.returncode, 0, "man -l %s exit status (stderr %r)" % (name, r.stderr[-300:]))
        check_eq(r.stderr.strip(), "", "man -l %s: warnings" % name)
        check(len(r.stdout.splitlines()) > 40, "man -l %s rendered almost nothing" % name)

    for name in PAGES:
        s.run("man -l %s renders without warnings" % name, renders, name)

    def config_keys():
        terms = defined_terms(src("ftpsgate.json.5"))
        rk, ek = readme_keys(), example_keys()
        check(len(rk) >= 50, "only %d keys found in README.md's Configuration section: %s" % (len(rk), sorted(rk)))
        text = src("ftpsgate.json.5").replace("\\(dq", '"')
        missing = sorted(k for k in rk if k not in terms)
        check(not missing, "README keys not defined in ftpsgate.json(5): %s" % missing)
        missing = sorted(k for k in ek if k not in terms and '"%s"' % k not in text)
        check(not missing, "config.example.json keys missing from ftpsgate.json(5): %s" % missing)

    s.run("every config key of README.md and config.example.json is in ftpsgate.json(5)", config_keys)

    def options_and_signals():
        page = src("ftpsgate.8").replace("\\-", "-")
        r = H.run_cmd([env.binary, "--help"], timeout=30)
        check_eq(r.returncode, 0, "ftpsgate --help exit status")
        opts = set(re.findall(r"(?<![\w-])(--[a-z][a-z-]+)", r.stdout))
        check(len(opts) >= 5, "options found in --help: %s" % sorted(opts))
        missing = sorted(o for o in opts if o not in page)
        check(not missing, "options of --help missing from ftpsgate(8): %s" % missing)
        with open(os.path.join(REPO, "README.md")) as f:
            ops = f.read().split("\n## Operations\n", 1)[1].split("\n## ", 1)[0]
        sigs = set(re.findall(r"`(SIG[A-Z0-9]+)`", ops))
        check(sigs >= {"SIGTERM", "SIGHUP"}, "signals found in README's Operations: %s" % sorted(sigs))
        missing = sorted(x for x in sigs if x not in page)
        check(not missing, "signals missing from ftpsgate(8): %s" % missing)

    s.run("ftpsgate(8) has every --help option and every signal of README's Operations", options_and_signals)

    def installed():
        build = os.environ.get("FTPSGATE_BUILD_DIR", "")
        check(os.path.isfile(os.path.join(build, "CMakeCache.txt")), "FTPSGATE_BUILD_DIR %r is no build" % build)
        prefix = tempfile.mkdtemp(prefix="ftpsgate-man-install-")
        try:
            r = H.run_cmd(["cmake", "--install", build, "--prefix", prefix], timeout=120)
            check_eq(r.returncode, 0, "cmake --install (%s)" % r.stderr[-300:])
            for name, sect in PAGES.items():
                p = os.path.join(prefix, "share", "man", sect, name)
                check(os.path.isfile(p), "%s not installed at %s" % (name, p))
                with open(p) as f:
                    check_eq(f.read() == src(name), True, "installed %s equals man/%s" % (name, name))
        finally:
            shutil.rmtree(prefix, ignore_errors=True)

    s.run("cmake --install installs both pages", installed)


def main():
    s = H.Suite("test_manpages")

    class Env:
        binary = os.environ.get("FTPSGATE_BIN", "")

    if not Env.binary or not os.access(Env.binary, os.X_OK):
        s.fail_setup("environment", RuntimeError("FTPSGATE_BIN (%r) is not an executable" % Env.binary))
    else:
        body(s, Env)
    sys.exit(s.finish())


if __name__ == "__main__":
    main()
