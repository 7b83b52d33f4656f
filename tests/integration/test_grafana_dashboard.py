#!/usr/bin/python3
"""deploy/grafana/ftpsgate.json, the Grafana dashboard of the Prometheus metrics:
- valid JSON with a title, a uid and a Prometheus datasource variable that every
  panel and query uses;
- every panel (rows aside) has at least one PromQL query;
- every metric name in every query (pulled out of the PromQL: strings, label
  matchers, ranges, grouping clauses, functions and keywords removed) is an ftpsgate
  metric that a live proxy serves on /metrics after some traffic (a download, a
  refused command), with the labels the query groups by;
- the dashboard covers what the issue asks: sessions, transfer rates, refusals by
  reason, TLS failures, the port pool, certificate expiry.
"""
import json
import os
import re

import harness as H
from harness import check, check_eq

DASHBOARD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "deploy", "grafana", "ftpsgate.json")

KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless",
            "offset", "inf", "nan"}


def metric_names(expr):
    """The metric names of one PromQL expression, with the labels it groups by."""
    e = re.sub(r"\$\{?[A-Za-z_][A-Za-z0-9_]*\}?", "1", expr)  # Grafana variables
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', e)                 # strings
    e = re.sub(r"\{[^}]*\}", " ", e)                           # label matchers
    e = re.sub(r"\[[^\]]*\]", " ", e)                          # ranges
    e = re.sub(r"\b\d+(?:\.\d+)?(?:ms|[smhdwy])?\b", " ", e)       # numbers, durations (offset 1m)
    grouped = set()
    for m in re.finditer(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)", e):
        grouped |= {x.strip() for x in m.group(1).split(",") if x.strip()}
    e = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", e):
        tok, rest = m.group(0), e[m.end():].lstrip()
        if tok.lower() in KEYWORDS or rest.startswith("("):
            continue
        names.add(tok)
    return names, grouped


def body(s, env):
    if H.SELFCHECK:
        s.run("grafana dashboard (tests ftpsgate itself)", H.needs_proxy)
        return
    with open(DASHBOARD) as f:
        dash = json.load(f)
    exprs = []

    def structure():
        check(dash.get("title") and dash.get("uid"), "title and uid")
        variables = {v["name"]: v for v in dash.get("templating", {}).get("list", [])}
        check(variables.get("datasource", {}).get("type") == "datasource" and
              variables["datasource"].get("query") == "prometheus", "no Prometheus datasource variable")
        panels = [p for p in dash["panels"] if p.get("type") != "row"]
        check(len(panels) >= 6, "only %d panels" % len(panels))
        for p in panels:
            check(p.get("targets"), "panel %r has no query" % p.get("title"))
            check_eq(p.get("datasource", {}).get("uid"), "${datasource}", "datasource of panel %r" % p["title"])
            for t in p["targets"]:
                check(t.get("expr", "").strip(), "panel %r: a target without a PromQL expression" % p["title"])
                check_eq(t.get("datasource", {}).get("uid"), "${datasource}", "datasource of a query of %r" % p["title"])
                exprs.append((p["title"], t["expr"]))
        text = json.dumps(dash).lower()
        for topic in ("sessions", "transfer rate", "refusals by reason", "tls", "passive port", "certificate expiry"):
            check(topic in text, "the dashboard has nothing on %r" % topic)

    s.run("valid JSON, Prometheus datasource variable, every panel has queries, topics covered", structure)

    vs = env.backend("vs1")
    sha = vs.add_pub("m.bin", 300 * H.KiB + 7)
    main = env.front(vs, "main")
    env.proxy.admin_port = port = H.free_port()
    env.start(main)

    def metrics_exist():
        f = H.ftplib_connect(main)
        try:
            n, got, _ = H.ftplib_get(f, "/pub/m.bin")
            check_eq((n, got), (300 * H.KiB + 7, sha), "download")
        finally:
            H.quit_quietly(f)
        c = H.Ctl(main)
        H.check_code(c.cmd("USER anonymous"), 534, "USER before TLS (a refusal)")
        c.close()
        import http.client
        conn = http.client.HTTPConnection(H.HOST, port, timeout=10)
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
        conn.close()
        served = {}
        for ln in text.splitlines():
            if ln and not ln.startswith("#"):
                m = re.match(r"([A-Za-z_:][A-Za-z0-9_:]*)(\{([^}]*)\})?", ln)
                labels = set(re.findall(r'([A-Za-z_][A-Za-z0-9_]*)="', m.group(3) or ""))
                served.setdefault(m.group(1), set()).update(labels)
        check(exprs, "no query was read from the dashboard")
        used = set()
        for title, expr in exprs:
            names, grouped = metric_names(expr)
            check(names, "panel %r: no metric in %r" % (title, expr))
            for name in names:
                check(name.startswith("ftpsgate_"), "panel %r queries %r, not an ftpsgate metric" % (title, name))
                check(name in served, "panel %r queries %r, which /metrics does not serve" % (title, name))
                # Labels Prometheus adds itself (instance, job) aside, a grouping label must be the metric's.
                for label in grouped - {"instance", "job"}:
                    check(label in served[name], "panel %r groups %r by %r, a label it does not have" %
                          (title, name, label))
            used |= names
        print("     %d queries, %d metrics: %s" % (len(exprs), len(used), " ".join(sorted(used))), flush=True)
        # The extractor itself must see through PromQL (so that a wrong name cannot hide).
        check_eq(metric_names('sum by (worker) (rate(foo_total{a="b{c}"}[5m])) / on(x) bar + 2 * baz offset 1m'),
                 ({"foo_total", "bar", "baz"}, {"worker", "x"}), "metric_names on a sample expression")

    s.run("every metric of every query exists on a live proxy's /metrics (after a download and a refusal)",
          metrics_exist)


if __name__ == "__main__":
    H.main_wrapper("grafana-dashboard", body, need_bytes=64 * H.MiB)
