#!/usr/bin/python3
"""The status page (GET /status) in a real browser: Debian's chromium, headless,
driven over the DevTools protocol (cdp.py, standard library only).

The proxy has admin.token; chromium sends it on every request of the page
(Network.setExtraHTTPHeaders), as a browser does once the operator typed it into
the Basic prompt. While two paced downloads run through the proxy (from vsftpd)
and sessions with hostile user names are logged in (a pyftpdlib that lets any user
name in):
- the response carries a strict Content-Security-Policy whose script hash is the
  page's own inline script (so the page runs, and nothing else may);
- the page fetched /sessions itself (at least two refreshes) and its table shows
  the downloads with user, direction "download" and a rate > 0, running transfers
  first; the listeners' session counts and the certificate's expiry are shown;
- the hostile names (<script>..., "><img onerror=...>) appear as text in their cells;
  no script of theirs ran (document.title and a global they would set are
  untouched), no <img> exists, the page has exactly its one <script>;
- the filter box narrows the table;
- a screenshot is kept at $FTPSGATE_BUILD_DIR/artifacts/status.png (printed).
Without chromium the suite FAILS with the reason (tests/setup-deps.sh installs it).
"""
import base64
import hashlib
import os
import re
import ssl

import adminhttp as A
import cdp
import harness as H
from harness import check, check_eq

PACE = 1 * H.MiB
HOSTILE = ["<script>document.title='pwned';window.__pwned=1</script>",
           '"><img src=x onerror="window.__pwned=2;document.title=\'pwned\'">',
           "<b>bold</b>&amp;"]
TITLE = "ftpsgate status"


def body(s, env):
    if H.SELFCHECK:
        s.run("status page (tests ftpsgate itself)", H.needs_proxy)
        return
    chromium = cdp.find_chromium()
    if chromium is None:
        s.run("chromium is installed", lambda: check(False, "no chromium in PATH (%s): tests/setup-deps.sh "
                                                      "installs Debian's chromium" % ", ".join(cdp.CANDIDATES)))
        return
    vs = env.backend("vs1")
    size = 16 * H.MiB  # still running (16 s at the pace) while the browser looks
    sha = vs.add_pub("slow.bin", size)
    anyb = A.AnyUserPyftpd(env, "any1").start()
    env.backends.append(anyb)
    main = env.front(vs, "main")
    anyuser = env.front(anyb, "anyuser", protection="any")
    port = H.free_port()
    env.proxy.extra_top["admin"] = {"bind": "%s:%d" % (H.HOST, port), "token": A.TOKEN}
    env.start(main, anyuser)
    ca = env.certs.ca
    url = "http://%s:%d/status" % (H.HOST, port)

    def csp():
        st, hdr, page = A.get(port, "/status", A.TOKEN)
        check_eq(st, 200, "GET /status")
        check(hdr.get("content-type", "").startswith("text/html"), "content type %r" % hdr.get("content-type"))
        policy = hdr.get("content-security-policy", "")
        script = re.search(rb"<script>(.*?)</script>", page, re.S).group(1)
        want = "'sha256-%s'" % base64.b64encode(hashlib.sha256(script).digest()).decode()
        for part in ("default-src 'none'", "script-src " + want, "connect-src 'self'", "frame-ancestors 'none'",
                     "base-uri 'none'", "form-action 'none'"):
            check(part in policy, "CSP lacks %r: %r" % (part, policy))
        check("unsafe-inline" not in policy and "unsafe-eval" not in policy, "CSP allows unsafe-*: %r" % policy)
        check_eq(hdr.get("cache-control"), "no-store", "Cache-Control of /status")
        check(b"http://" not in page and b"https://" not in page and b"src=" not in page,
              "the page refers to something outside itself")

    s.run("/status: strict CSP (script-src = the page's own script hash), self-contained", csp)

    browser = cdp.Chromium(chromium, env.tmp, os.path.join(env.tmp, "chromium.log"))
    ftps, ctls, threads = [], [], []
    try:
        def load_during_transfers():
            outs = []
            for _ in range(2):
                f = H.ftplib_connect(main)
                ftps.append(f)
                out = {}
                outs.append(out)
                threads.append(A.in_thread(A.paced_retr, f, "/pub/slow.bin", PACE, out))
            for name in HOSTILE:
                c = H.Ctl(anyuser)
                c.auth_tls(ssl.create_default_context(cafile=ca))
                c.cmd("USER " + name)
                H.check_code(c.cmd("PASS x"), 230, "PASS for %r" % name)
                ctls.append(c)
            check(H.wait_until(lambda: sum(1 for x in A.sessions(port)["sessions"] if x["transfer"]) == 2 and
                               all(x["transfer"]["rate_bps"] > 0 for x in A.sessions(port)["sessions"]
                                   if x["transfer"]), 15, 0.3),
                  "the two downloads are not listed with a rate")
            browser.call("Network.enable")
            browser.call("Network.setExtraHTTPHeaders", {"headers": {"Authorization": "Bearer " + A.TOKEN}})
            browser.call("Emulation.setDeviceMetricsOverride",
                         {"width": 1400, "height": 900, "deviceScaleFactor": 1, "mobile": False})
            browser.call("Page.enable")
            browser.call("Page.navigate", {"url": url})
            check(H.wait_until(lambda: (browser.evaluate("Number(document.body && document.body.dataset.updates)")
                                        or 0) >= 2, 20, 0.25),
                  "the page did not render /sessions twice within 20 s (error shown: %r)" %
                  browser.evaluate("document.getElementById('error') && document.getElementById('error').textContent"))
            rows = browser.evaluate("""Array.from(document.querySelectorAll('#sessions tr')).map(function (tr) {
                return {id: tr.dataset.id, xfer: tr.className === 'xfer',
                        user: tr.querySelector('.user').textContent,
                        dir: tr.querySelector('.dir').dataset.direction,
                        bps: tr.querySelector('.rate').dataset.bps,
                        rate: tr.querySelector('.rate').textContent,
                        path: tr.querySelector('.path').textContent}; })""")
            xfers = [r for r in rows if r["xfer"]]
            check_eq(len(xfers), 2, "rows with a running transfer")
            check_eq(rows[:2], xfers, "running transfers are not listed first")
            for r in xfers:
                check_eq((r["user"], r["dir"], r["path"]), (H.FTP_USER, "download", "/pub/slow.bin"),
                         "user, direction, path of a transfer row")
                check(int(r["bps"]) > 0 and r["rate"].endswith("B/s"), "rate cell %r" % r)
            users = [r["user"] for r in rows]
            for name in HOSTILE:
                check(name in users, "the user name %r is not shown as text (users: %r)" % (name, users))
            check_eq(browser.evaluate("document.title"), TITLE, "document.title (a hostile name's script would set it)")
            check_eq(browser.evaluate("typeof window.__pwned"), "undefined", "a hostile name's script ran")
            check_eq(browser.evaluate("document.querySelectorAll('img').length"), 0, "<img> elements in the page")
            check_eq(browser.evaluate("document.querySelectorAll('script').length"), 1, "<script> elements in the page")
            check_eq(browser.evaluate("document.querySelectorAll('#sessions b').length"), 0, "<b> elements in the table")
            listeners = browser.evaluate("Array.from(document.querySelectorAll('#listeners tr')).map("
                                         "function (tr) { return tr.textContent; })")
            check(any(t.startswith("main") for t in listeners), "listeners table: %r" % listeners)
            certs = browser.evaluate("document.getElementById('certs').textContent")
            check(certs.startswith("main") and re.search(r"\d{4}-\d\d-\d\d", certs), "certificates table: %r" % certs)
            print("     %d rows; transfers: %s" % (len(rows), ", ".join("%s %s" % (r["dir"], r["rate"]) for r in xfers)),
                  flush=True)
            # The filter box: only the rows that match stay.
            n = browser.evaluate("""(function () { var f = document.getElementById('filter');
                f.value = 'onerror'; f.dispatchEvent(new Event('input'));
                return document.querySelectorAll('#sessions tr').length; })()""")
            check_eq(n, 1, "rows left with the filter 'onerror'")
            browser.evaluate("""(function () { var f = document.getElementById('filter');
                f.value = ''; f.dispatchEvent(new Event('input')); return 0; })()""")
            shot = browser.call("Page.captureScreenshot", {"format": "png"})
            png = base64.b64decode(shot["data"])
            check(png.startswith(b"\x89PNG") and len(png) > 10000, "screenshot of %d bytes" % len(png))
            art = os.path.join(os.environ.get("FTPSGATE_BUILD_DIR", env.tmp), "artifacts")
            os.makedirs(art, exist_ok=True)
            path = os.path.join(os.path.abspath(art), "status.png")
            with open(path, "wb") as fp:
                fp.write(png)
            print("     screenshot: %s" % path, flush=True)
            for (t, err), out in zip(threads, outs):
                t.join(120)
                check(not err, "a download failed: %r" % err)
                check_eq((out.get("n"), out.get("sha")), (size, sha), "bytes and sha256 of a download")

        s.run("chromium: /status during 2 downloads shows user, direction, rate (transfers first); hostile names as text, no script ran; filter; screenshot", load_during_transfers)

        def no_token():
            browser.call("Network.setExtraHTTPHeaders", {"headers": {}})
            r = browser.call("Page.navigate", {"url": url})
            # Headless chromium has no prompt for the 401's Basic challenge: the navigation
            # ends in an authentication error, or on the 401's text; never on the page.
            if "errorText" in r:
                check("AUTH" in r["errorText"], "navigation failed otherwise: %r" % r)
            else:
                H.wait_until(lambda: browser.evaluate("document.readyState") == "complete", 10, 0.2)
                check("token required" in browser.evaluate("document.body ? document.body.textContent : ''"),
                      "the 401 text is not what the browser shows")
            check_eq(browser.evaluate("document.getElementById('sessions')"), None, "the page shown without the token")

        s.run("chromium without the token: 401, no page", no_token)
    finally:
        for f in ftps:
            H.quit_quietly(f)
        for c in ctls:
            c.close()
        browser.close()


if __name__ == "__main__":
    H.main_wrapper("status-page", body, need_bytes=256 * H.MiB)
