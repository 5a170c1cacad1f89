"""Access and the directory over real sockets against a real `mosaic serve --http` (one
daemon for the module): tokens, scopes, prefixes and the lockout; browser sessions with
CSRF and the CSP; the directory verbs; TLS off loopback; the `mosaic token` command."""

from __future__ import annotations

import blake3
import httpx
import pytest

from tests.conftest import Cli, assert_one_line_error

from .checks import CSP, problem
from .conftest import HOST, Server, add_token, free_port, make_node, start_server


def test_tokens_scopes_prefixes_and_lockout(server: Server) -> None:
    with server.client("admin") as c:
        doc_h = c.put("/v1/names/docs/a.txt", content=b"in docs").json()["hash"]
        other_h = c.put("/v1/names/other/b.txt", content=b"elsewhere").json()["hash"]
    with server.client(None) as c:
        problem(c.get("/v1/status"), 401, "unauthorized")
        problem(c.get("/v1/status", headers={"Authorization": "Bearer mosaic_nope"}), 401)
        problem(c.get("/v1/status", headers={"Authorization": "Basic eDp5"}), 401)
    with server.client("reader") as c:
        assert c.get("/v1/status").status_code == 200
        problem(c.put("/v1/names/x.txt", content=b"x"), 403, "forbidden")
        problem(c.post("/v1/import", json={}), 403)
    with server.client("docs") as c:
        assert c.get(f"/v1/files/{doc_h}").content == b"in docs"
        assert c.get("/v1/names/docs/a.txt").content == b"in docs"
        problem(c.get(f"/v1/files/{other_h}"), 403)
        problem(c.get("/v1/names/other/b.txt"), 403)
        problem(c.get("/v1/tree/other"), 403)
        names = [e["path"] for e in c.get("/v1/tree/").json()["entries"]]
        assert names == ["docs"]
        assert [e["path"] for e in c.get("/v1/search", params={"q": ".txt"}).json()["entries"]] \
            == ["docs/a.txt"]
    # repeated failures from one address: 429 with Retry-After (another loopback address, so
    # the other tests' client is not locked out); a valid token still works meanwhile
    t = httpx.HTTPTransport(local_address="127.0.0.9")
    with httpx.Client(base_url=server.url, transport=t, timeout=30) as c:
        codes = [c.get("/v1/status", headers={"Authorization": f"Bearer mosaic_bad{i}"}).status_code
                 for i in range(12)]
        assert codes[:10] == [401] * 10 and codes[-1] == 429
        r = c.get("/v1/status", headers={"Authorization": "Bearer mosaic_bad"})
        problem(r, 429, "too-many-requests")
        assert int(r.headers["retry-after"]) >= 1
        ok = c.get("/v1/status", headers={"Authorization": f"Bearer {server.tokens['reader']}"})
        assert ok.status_code == 200
    with server.client("reader") as c:
        assert c.get("/v1/status").status_code == 200


def test_browser_session_cookie_csrf_and_csp(server: Server) -> None:
    with server.client(None) as c:
        problem(c.post("/v1/session", json={"token": "mosaic_wrong"}), 401)
        r = c.post("/v1/session", json={"token": server.tokens["writer"]})
        assert r.status_code == 201
        doc = r.json()
        assert doc["scope"] == "write" and doc["prefix"] == "" and len(doc["csrf"]) >= 20
        cookie = r.headers["set-cookie"]
        assert "mosaic_session=" in cookie and "HttpOnly" in cookie
        assert "SameSite=strict" in cookie or "SameSite=Strict" in cookie
        assert "Secure" not in cookie  # plain HTTP on loopback
        assert c.get("/v1/session").json() == doc
        assert c.get("/v1/status").status_code == 200
        problem(c.put("/v1/names/s.txt", content=b"x"), 403)  # no CSRF token
        problem(c.put("/v1/names/s.txt", content=b"x", headers={"X-CSRF-Token": "wrong"}), 403)
        ok = c.put("/v1/names/s.txt", content=b"x", headers={"X-CSRF-Token": doc["csrf"]})
        assert ok.status_code == 201
        cross = {"X-CSRF-Token": doc["csrf"], "Sec-Fetch-Site": "cross-site"}
        problem(c.delete("/v1/names/s.txt", headers=cross), 403)
        problem(c.delete("/v1/names/s.txt", headers={"X-CSRF-Token": doc["csrf"],
                                                      "Origin": "http://evil.example"}), 403)
        problem(c.get("/v1/status", headers={"Sec-Fetch-Site": "cross-site"}), 403)
        assert c.delete("/v1/names/s.txt", headers={"X-CSRF-Token": doc["csrf"],
                                                    "Origin": server.url}).status_code == 204
        assert c.delete("/v1/session", headers={"X-CSRF-Token": doc["csrf"]}).status_code == 204
        c.cookies.clear()
        problem(c.get("/v1/session"), 401)
        for path in ("/v1/status", "/v1/openapi.json", "/nothing-here"):
            assert c.get(path).headers["content-security-policy"].startswith(CSP)


def test_directory_verbs(server: Server) -> None:
    with server.client("writer") as c:
        for i in range(5):
            assert c.put(f"/v1/names/d/f{i}.txt", content=f"file {i}".encode()).status_code == 201
        assert c.post("/v1/folders", json={"path": "d/empty"}).status_code == 201
        assert c.post("/v1/folders", json={"path": "d/empty"}).status_code == 200
        seen, cursor = [], None
        while True:
            page = c.get("/v1/tree/d", params={"limit": 2, **({"cursor": cursor} if cursor else {})})
            body = page.json()
            seen += [(e["name"], e["type"]) for e in body["entries"]]
            cursor = body["cursor"]
            if cursor is None:
                break
        assert seen == [("empty", "folder")] + [(f"f{i}.txt", "file") for i in range(5)]
        e = c.get("/v1/tree/d").json()["entries"][1]
        assert e["cached"] == 1.0 and e["copies"]["backends"] == [] and len(e["copies"]["nodes"]) == 1
        assert e["hash"] == blake3.blake3(b"file 0").hexdigest() and e["size"] == 6
        rec = c.get("/v1/tree/d", params={"recursive": "1"}).json()["entries"]
        assert [x["path"] for x in rec] == [f"d/f{i}.txt" for i in range(5)]
        assert c.post("/v1/move", json={"from": "d/f0.txt", "to": "e/g.txt"}).json()["moved"] == 1
        assert c.get("/v1/names/e/g.txt").content == b"file 0"
        problem(c.get("/v1/names/d/f0.txt"), 404, "not-found")
        assert c.post("/v1/move", json={"from": "d", "to": "x/d2"}).json()["moved"] == 4
        assert [x["name"] for x in c.get("/v1/tree/x/d2").json()["entries"]] == \
            ["empty", "f1.txt", "f2.txt", "f3.txt", "f4.txt"]
        assert c.delete("/v1/names/x/d2/empty").status_code == 204
        problem(c.delete("/v1/names/x/d2/empty"), 404)
        hits = c.get("/v1/search", params={"q": "x/*/f[12].txt"}).json()["entries"]
        assert [x["path"] for x in hits] == ["x/d2/f1.txt", "x/d2/f2.txt"]
        st = c.get("/v1/stat/x/d2/f1.txt").json()
        assert st["names"] == ["x/d2/f1.txt"] and st["size"] == 6 and st["pinned"] is False
        assert c.get(f"/v1/stat/{st['hash']}").json()["hash"] == st["hash"]
        assert c.post("/v1/pin", json={"refs": ["x/d2/f1.txt"]}).json()["pinned"] == [st["hash"]]
        assert c.get(f"/v1/stat/{st['hash']}").json()["pinned"] is True
        assert c.post("/v1/warm", json={"refs": None}).status_code == 200
        assert c.delete("/v1/names/x/d2/f1.txt").status_code == 204
        problem(c.get("/v1/stat/x/d2/f1.txt"), 404)
    with server.client("admin") as c:
        dump = c.post("/v1/export", json={"refs": ["e/g.txt"]}).content
        jh = {"Content-Type": "application/json"}
        assert c.post("/v1/import", content=dump, headers=jh).status_code == 200
        problem(c.post("/v1/import", content=dump.replace(b'"e/g.txt"', b'"e/h.txt"'),
                        headers=jh), 422, "integrity")
        problem(c.post("/v1/import", json={"format": "nonsense"}), 400)


def test_plain_http_is_refused_off_loopback_and_tls_works(node, tmp_path) -> None:  # noqa: ANN001
    r = node("serve", "--listen", f"{HOST}:{free_port()}", "--http", f"0.0.0.0:{free_port()}")
    assert "needs TLS" in assert_one_line_error(r, 2)
    r = node("serve", "--http", f"{HOST}:1", "--http-tls-cert", str(tmp_path / "nope.pem"))
    assert_one_line_error(r, 2)
    s = start_server(node, "--http-tls-node", scheme="https")
    try:
        with httpx.Client(base_url=f"https://{HOST}:{s.port}", verify=False, timeout=20) as c:
            r = c.post("/v1/session", json={"token": add_token(node, "t", "read")})
            assert r.status_code == 201 and "Secure" in r.headers["set-cookie"]
            assert c.get("/v1/openapi.json").json()["openapi"] == "3.1.0"
        with pytest.raises(httpx.HTTPError):  # no plain HTTP on the TLS port
            httpx.get(f"http://{HOST}:{s.port}/v1/openapi.json", timeout=5)
    finally:
        s.stop()



@pytest.fixture(scope="module")
def cli_node(tmp_path_factory: pytest.TempPathFactory) -> Cli:
    return make_node(tmp_path_factory.mktemp("token-cli"))


def test_token_cli(cli_node: Cli) -> None:
    node = cli_node
    made = {}
    for scope in ("read", "write", "admin"):
        doc = node.doc("token", "add", f"t-{scope}", "--scope", scope, "--prefix", "p/q")
        assert doc["token"].startswith("mosaic_") and doc["prefix"] == "p/q"
        assert doc["scope"] == scope
        plain = node.ok("token", "add", f"plain-{scope}", "--scope", scope).text.strip()
        assert plain.startswith("mosaic_") and len(plain.splitlines()) == 1
        made[f"t-{scope}"], made[f"plain-{scope}"] = doc["token"], plain
    ls = node.doc("token", "ls")
    assert {t["name"]: t["scope"] for t in ls} == {n: n.split("-")[1] for n in made}
    assert all("token" not in t for t in ls)
    stored = (node.home / "index" / "data.mdb").read_bytes().decode("latin-1")
    assert not any(tok in stored for tok in made.values())
    assert_one_line_error(node("token", "add", "plain-read", "--scope", "read"), 2)
    node.ok("token", "rm", "plain-read")
    assert_one_line_error(node("token", "rm", "plain-read"), 1)
    bad = node("token", "add", "x", "--scope", "root")
    assert bad.rc == 2 and "Traceback" not in bad.err
