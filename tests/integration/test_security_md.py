#!/usr/bin/python3
"""SECURITY.md's threat table points only at tests that exist: every test file a row names
exists under tests/, and every case name it quotes after a Python test file is a case of that
file (the text of one of its s.run(...) names). Fails on a renamed or removed test."""
import os
import re
import sys

sys.dont_write_bytecode = True
import harness as H  # noqa: E402
from harness import check  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DIRS = ["tests/integration", "tests/unit", "tests/fuzz", "tests/soak"]


def find(name):
    for d in DIRS:
        p = os.path.join(ROOT, d, name)
        if os.path.exists(p):
            return p
    return None


def rows():
    text = open(os.path.join(ROOT, "SECURITY.md")).read()
    for ln in text.splitlines():
        m = re.match(r"^\| (\d+) \|", ln)
        if m:
            yield int(m.group(1)), ln.rsplit("|", 2)[-2]  # the last column: "shown by"


def main():
    s = H.Suite("security_md")
    table = list(rows())

    def has_rows():
        check(len(table) >= 20, "SECURITY.md has %d numbered threat rows" % len(table))

    s.run("SECURITY.md has its threat table", has_rows)

    def every_reference():
        problems = []
        for num, shown in table:
            files = re.findall(r"`([a-z0-9_]+\.(?:py|c))`", shown)
            if not files:
                problems.append("row %d names no test file" % num)
            # Split the column at each file name: the quoted names after it are its cases.
            parts = re.split(r"`([a-z0-9_]+\.(?:py|c))`", shown)
            for i in range(1, len(parts), 2):
                path = find(parts[i])
                if not path:
                    problems.append("row %d: %s does not exist" % (num, parts[i]))
                    continue
                if not path.endswith(".py"):
                    continue
                src = open(path).read().replace('\\"', '"')
                for case in re.findall(r'"((?:[^"\\]|\\.)+?)"', parts[i + 1]):
                    # "…" elides a formatted part of the name: each piece around it must be there.
                    pieces = [p.strip() for p in case.replace('\\"', '"').split("…") if p.strip()]
                    for piece in pieces:
                        if piece not in src:
                            problems.append("row %d: %s has no case %r" % (num, parts[i], piece))
        check(not problems, "; ".join(problems))

    s.run("every test file and case SECURITY.md names exists", every_reference)
    sys.exit(s.finish())


if __name__ == "__main__":
    main()
