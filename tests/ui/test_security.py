"""The web UI's security rules against a real daemon: nothing answers without a session or
a token, a cross-site form post is refused, CSRF is enforced, every page carries the CSP
(and holds no inline script or style, so the CSP never has to be loosened)."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from .harness import HOST, Browser, Node, free_port

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
       "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
HASH = "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"  # b3sum of nothing

PAGES = ["/", "/files", "/files/", "/files/some/folder", "/details/some/file.txt",
         f"/details/{HASH}", "/dashboard"]
UI_CALLS = [("GET", "/ui/archive/"), ("GET", "/ui/archive/some"), ("GET", "/ui/activity"),
            ("GET", "/ui/events/recent"),
            ("POST", "/ui/verify/some/file.txt"), ("DELETE", "/ui/folder/some")]
API_CALLS = [("GET", "/v1/tree/"), ("GET", "/v1/search?q=a"), ("GET", "/v1/status"),
             ("GET", "/v1/events"), ("GET", "/v1/names/a.txt"), ("GET", f"/v1/files/{HASH}"),
             ("GET", f"/v1/stat/{HASH}"), ("PUT", "/v1/names/a.txt"),
             ("DELETE", "/v1/names/a.txt"), ("POST", "/v1/move"), ("POST", "/v1/folders"),
             ("POST", "/v1/uploads/"), ("GET", "/v1/session"), ("POST", "/v1/pin"),
             ("POST", "/v1/warm")]


_sources = iter(range(1, 250))


def client_from_fresh_address(node: Node, **kw: object) -> httpx.Client:
    """A client whose requests come from a loopback address no other request used, so the
    daemon's failed-attempt limiter (per address: 10 a minute, then 429) starts afresh for
    it and never locks out the browser (which connects from 127.0.0.1)."""
    transport = httpx.HTTPTransport(local_address=f"127.0.2.{next(_sources)}")
    return httpx.Client(base_url=node.url, timeout=30, follow_redirects=False,
                        transport=transport, **kw)


class Anon:
    """Requests without credentials, each from a fresh loopback address."""

    def __init__(self, node: Node):
        self.node = node

    def request(self, method: str, path: str, **kw: object) -> httpx.Response:
        cookies = kw.pop("cookies", None)
        with client_from_fresh_address(self.node, cookies=cookies) as c:
            return c.request(method, path, **kw)

    def get(self, path: str, **kw: object) -> httpx.Response:
        return self.request("GET", path, **kw)


@pytest.fixture(scope="module")
def anon(node: Node) -> Anon:
    return Anon(node)


def test_pages_without_a_session_go_to_sign_in(anon: Anon) -> None:
    for path in PAGES:
        r = anon.get(path)
        assert r.status_code == 303, (path, r.status_code)
        assert r.headers["location"].startswith("/signin"), path
        assert r.headers["content-security-policy"] == CSP
        assert not r.content  # nothing of the node's state


def test_no_call_succeeds_without_credentials(anon: Anon) -> None:
    bodies = {"/v1/move": {"from": "a.txt", "to": "b.txt"}, "/v1/folders": {"path": "f"},
              "/v1/pin": {"refs": ["a.txt"]}, "/v1/warm": {"refs": ["a.txt"]}}
    for method, path in UI_CALLS + API_CALLS:
        # well-formed requests, so that only the missing credentials can refuse them
        r = anon.request(method, path, json=bodies.get(path),
                         headers={"Tus-Resumable": "1.0.0", "Upload-Length": "1"})
        assert r.status_code == 401, (method, path, r.status_code, r.text[:200])
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.headers["content-security-policy"] == CSP


def test_a_forged_or_stale_cookie_is_no_session(anon: Anon) -> None:
    for method, path in [("GET", "/ui/activity"), ("GET", "/v1/status"), *UI_CALLS[:1]]:
        r = anon.request(method, path, cookies={"mosaic_session": "forged-session-id"})
        assert r.status_code == 401, (method, path)
    r = anon.get("/dashboard", cookies={"mosaic_session": "forged-session-id"})
    assert r.status_code == 303 and r.headers["location"].startswith("/signin")


def test_the_ui_calls_take_a_bearer_token_and_its_scope(node: Node) -> None:
    with node.api(node.tokens["reader"]) as reader:
        assert reader.get("/ui/activity").status_code == 200
        assert reader.get("/ui/archive/").status_code == 200
        assert reader.delete("/ui/folder/anything").status_code == 403  # read scope
    with node.api(node.tokens["projects"]) as scoped:  # prefix "projects"
        assert scoped.get("/ui/archive/").status_code == 403
        assert scoped.get("/ui/archive/elsewhere").status_code == 403
        assert scoped.delete("/ui/folder/elsewhere").status_code == 403


def test_every_page_carries_the_csp_and_no_inline_code(node: Node, browser: Browser) -> None:
    b = browser
    b.sign_in(node.url, node.tokens["writer"])
    cookie = {"mosaic_session": b.driver.get_cookie("mosaic_session")["value"]}
    with httpx.Client(base_url=node.url, cookies=cookie, timeout=30) as c:
        for path in ["/signin", "/files/", "/files/nowhere", f"/details/{HASH}", "/dashboard",
                     "/static/css/mosaic.css", "/static/js/browse.js"]:
            r = c.get(path, headers={"Sec-Fetch-Site": "same-origin"})
            assert r.status_code == 200, (path, r.status_code)
            assert r.headers["content-security-policy"] == CSP, path
            assert r.headers["x-content-type-options"] == "nosniff", path
            if r.headers["content-type"].startswith("text/html"):
                html = r.text
                assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), path
                assert not re.search(r"<style|\sstyle=|\son[a-z]+=", html, re.I), path
                assert not re.search(r"(src|href)=\"(https?:)?//", html), path  # no other origin
    for path in ["/files/", "/dashboard", f"/details/{HASH}", "/signin"]:
        b.driver.get(node.url + path)
        b.visible("main")
    assert [e for e in b.console_errors() if "Content Security Policy" in e] == []


class _Attacker(BaseHTTPRequestHandler):
    """Serves a page that posts a form to the node as soon as it loads."""

    target = ""

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        t = self.target
        page = f"""<!doctype html><html><body>
<form id="f" method="post" action="{t}/v1/folders" enctype="text/plain">
<input name='{{"path": "evil", "x": "' value='"}}'></form>
<form id="g" method="post" action="{t}/ui/verify/whatever.txt"></form>
<script>document.getElementById(location.hash === '#g' ? 'g' : 'f').submit();</script>
</body></html>""".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(page)))
        self.end_headers()
        self.wfile.write(page)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def attacker(node: Node) -> Iterator[int]:
    port = free_port()
    handler = type("Attacker", (_Attacker,), {"target": node.url})
    srv = ThreadingHTTPServer((HOST, port), handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield port
    finally:
        srv.shutdown()
        srv.server_close()


@pytest.mark.parametrize("attacker_host", ["127.0.0.1", "localhost"])
def test_a_cross_site_form_post_is_refused(node: Node, browser: Browser, attacker: int,
                                           attacker_host: str) -> None:
    """127.0.0.1:other is same-site (the Strict cookie goes along: the CSRF and origin checks
    refuse it); localhost is another site (no cookie: not signed in)."""
    b = browser
    b.sign_in(node.url, node.tokens["admin"])
    for frag in ("", "#g"):
        b.driver.get(f"http://{attacker_host}:{attacker}/{frag}")
        b.wait(lambda d: d.current_url.startswith(node.url), what="the form posted")
        body = b.js("return document.body.innerText")
        # refused before anything is done: no session (401), the CSRF and origin checks
        # (403), or a form's body type, which can never be JSON (415)
        assert re.search(r'"status":\s*4(01|03|15)', body), body[:300]
    with node.api(node.tokens["reader"]) as api:
        assert api.get("/v1/tree/evil").status_code == 404
    b.driver.get(node.url + "/files/")  # the session itself still works
    b.visible("#pick-files")


def test_csrf_header_is_required_with_a_cookie(node: Node, browser: Browser) -> None:
    b = browser
    b.sign_in(node.url, node.tokens["admin"])
    sid = b.driver.get_cookie("mosaic_session")["value"]
    csrf = b.js("return document.querySelector('meta[name=csrf-token]').content")
    assert csrf
    with httpx.Client(base_url=node.url, cookies={"mosaic_session": sid}, timeout=30) as c:
        assert c.post("/v1/folders", json={"path": "csrf-probe"}).status_code == 403
        assert c.delete("/ui/folder/csrf-probe").status_code == 403
        assert c.post("/v1/folders", json={"path": "csrf-probe"},
                      headers={"X-CSRF-Token": "wrong"}).status_code == 403
        assert c.post("/v1/folders", json={"path": "csrf-probe"},
                      headers={"X-CSRF-Token": csrf}).status_code == 201
        assert c.delete("/ui/folder/csrf-probe", headers={"X-CSRF-Token": csrf}).status_code == 200


def test_sign_in_goes_on_only_to_a_path_of_this_node(anon: Anon) -> None:
    for nxt, want in [("/files/a%20b", "/files/a b"), ("//evil.example/", "/"),
                      ("/\\evil.example", "/"), ("https://evil.example/", "/")]:
        r = anon.get(f"/signin?next={nxt}")
        assert r.status_code == 200
        assert f'data-next="{want}"' in r.text, (nxt, r.text[:300])
