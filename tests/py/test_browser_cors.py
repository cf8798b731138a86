"""A real headless Chromium calls the gateway from a page on another origin (CORS, SPEC §9)."""

import shutil
import subprocess
import tempfile
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from conftest import provider_config

PAGE = """<!doctype html><html><body><pre id="out">pending</pre><script>
fetch("%(gateway)s/v1/chat/completions", {
  method: "POST",
  headers: {"Content-Type": "application/json", "Authorization": "Bearer browser-key", "X-API-Key": "browser-access"},
  body: JSON.stringify({model: "gpt-4o-mini", messages: [{role: "user", content: "from the browser"}]})
}).then(r => r.json().then(j => {
  document.getElementById("out").textContent = "status=" + r.status + " provider=" + r.headers.get("x-gateway-provider") + " content=" + j.choices[0].message.content;
})).catch(e => { document.getElementById("out").textContent = "error=" + e; });
</script></body></html>"""


def chromium():
    for name in ["chromium", "chromium-browser", "google-chrome"]:
        path = shutil.which(name)
        if path:
            return path
    raise AssertionError("Chromium is missing: .ci/run installs Debian's chromium package")


def dump_dom(url):
    profile = tempfile.mkdtemp(prefix="chromium-")
    r = subprocess.run([
        chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={profile}", "--virtual-time-budget=10000", "--dump-dom", url,
    ], capture_output=True, text=True, timeout=60)
    return r.stdout


def serve_page(html):
    d = Path(tempfile.mkdtemp(prefix="page-"))
    (d / "index.html").write_text(html)
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(SimpleHTTPRequestHandler, directory=str(d)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def visit_from_another_origin(g):
    """Loads the page from its own origin in Chromium and returns the DOM after its fetch."""
    server = serve_page(PAGE % {"gateway": g.url})
    try:
        return dump_dom(f"http://127.0.0.1:{server.server_address[1]}/index.html")
    finally:
        server.shutdown()


def test_a_page_on_another_origin_gets_the_answer(mock, start_gateway):
    cfg = provider_config(mock.url)
    cfg["auth"] = {"mode": "hybrid", "keys": [{"id": "browser", "key": "browser-access"}]}
    g = start_gateway(cfg)
    dom = visit_from_another_origin(g)
    assert "status=200 provider=openai content=Mock reply to: from the browser" in dom, dom[-2000:]
    preflights = [r for r in g.access_logs() if r["method"] == "OPTIONS"]
    assert preflights and preflights[0]["status"] == 204, "the browser's preflight was answered by the gateway"


def test_a_disallowed_origin_is_blocked_by_the_browser(mock, start_gateway):
    cfg = provider_config(mock.url)
    cfg["security"] = {"cors_origins": ["https://only.example"]}
    g = start_gateway(cfg)
    dom = visit_from_another_origin(g)
    assert "error=" in dom and "status=200" not in dom
