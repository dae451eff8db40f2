"""The docs site as a reader gets it: `mkdocs build --strict` (a broken link, anchor or API reference fails it),
then every page opened in headless Chromium from a local server: no console or page errors, no request
leaving 127.0.0.1, every image loaded, every internal link leading to a page that exists (its anchor
included), and the search answering offline."""

import functools
import http.server
import os
import re
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import urldefrag, urlparse

import helpers
import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    pytest.importorskip("mkdocs", reason="mkdocs is not installed (pip install -e '.[docs]')")
    out = tmp_path_factory.mktemp("site")
    r = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "--site-dir", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert r.returncode == 0, r.stderr
    return out


@pytest.fixture(scope="module")
def server(site):
    handler = functools.partial(Quiet, directory=str(site))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def test_the_build_has_a_page_per_nav_entry_and_the_api_reference(site):
    pages = {p.name for p in site.glob("*.html")}
    assert {"index.html", "getting-started.html", "api.html", "dynamic-sparse.html", "verification.html"} <= pages
    api = (site / "api.html").read_text()
    assert "ticketlab.api.prune" in api or 'id="ticketlab.api.prune"' in api
    assert "Prune <code>model</code> in place" in api  # the docstring itself, rendered


def test_every_page_renders_in_chromium_with_nothing_broken(site, server):
    sync_api, exe = helpers.chromium()
    pages = sorted(p.name for p in site.glob("*.html") if p.name != "404.html")
    assert len(pages) >= 20
    problems, outside, targets = [], set(), {}
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=exe, args=helpers.CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.on("console", lambda m: problems.append(f"{page.url}: {m.text}") if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(f"{page.url}: {e}"))
            page.on("requestfailed", lambda r: problems.append(f"{page.url}: failed {r.url}"))
            page.on("request", lambda r: outside.add(r.url) if not r.url.startswith(server) else None)
            for name in pages:
                page.goto(f"{server}/{name}", wait_until="networkidle")
                broken = page.evaluate("[...document.images].filter(i => !(i.complete && i.naturalWidth > 0))"
                                       ".map(i => i.src)")  # fmt: skip
                problems += [f"{name}: image {src} did not load" for src in broken]
                for href in page.evaluate("[...document.querySelectorAll('a[href]')].map(a => a.href)"):
                    if href.startswith(server):
                        targets.setdefault(href, name)
        finally:
            browser.close()
    assert problems == []
    assert outside == set(), f"requests left the machine: {sorted(outside)}"
    ids: dict[str, set[str]] = {}
    for href, source in targets.items():
        url, anchor = urldefrag(href)
        path = urlparse(url).path.lstrip("/") or "index.html"
        target = site / path
        if path.endswith("/"):
            target = target / "index.html"
        assert target.exists(), f"{source} links to {href}, which is not in the site"
        if anchor and target.suffix == ".html":
            if path not in ids:
                ids[path] = set(re.findall(r'id="([^"]+)"', target.read_text()))
            assert anchor in ids[path], f"{source} links to {href}: no such anchor"


def test_the_search_finds_a_method_offline(server):
    sync_api, exe = helpers.chromium()
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=exe, args=helpers.CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(f"{server}/index.html", wait_until="networkidle")
            page.locator("input.md-search__input").click()
            page.keyboard.type("RigL")
            results = page.locator(".md-search-result__item a")
            results.first.wait_for(timeout=15000)
            hrefs = [results.nth(i).get_attribute("href") for i in range(results.count())]
        finally:
            browser.close()
    assert any("dynamic-sparse.html" in h for h in hrefs), hrefs
