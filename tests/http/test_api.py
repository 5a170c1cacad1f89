"""The REST API over real sockets against a real `mosaic serve --http`: content by hash and
by name with ranges, ETags and 304, tokens and scopes, browser sessions with CSRF, the
virtual directory, events, and bad input answered with problem documents."""

from __future__ import annotations

import json
import random
import re
import socket

import blake3
import httpx
import pytest

from tests.conftest import assert_one_line_error

from .conftest import HOST, Server, add_token, free_port, start_server

CSP = "default-src 'self'; script-src 'self'"


def _problem(r: httpx.Response, status: int, kind: str | None = None) -> dict:
    assert r.status_code == status, (r.status_code, r.text[:500])
    assert r.headers["content-type"].startswith("application/problem+json")
    if r.request.method == "HEAD":
        assert r.content == b""
        return {}
    doc = r.json()
    assert doc["status"] == status and doc["type"].startswith("https://mosaic.invalid/problems/")
    assert "Traceback" not in r.text
    if kind:
        assert doc["type"].endswith("/" + kind), doc
    return doc


def _multipart(body: bytes, ctype: str) -> list[tuple[str, bytes]]:
    """(Content-Range, bytes) of each part of a multipart/byteranges body."""
    boundary = re.search(r"boundary=(\S+)", ctype).group(1).encode()
    parts = []
    for chunk in body.split(b"--" + boundary)[1:]:
        if chunk.startswith(b"--"):
            break
        head, _, data = chunk.partition(b"\r\n\r\n")
        cr = re.search(rb"Content-Range: bytes (\S+)", head).group(1).decode()
        parts.append((cr, data[:-2] if data.endswith(b"\r\n") else data))
    return parts


def test_ranges_of_a_64_mib_file_are_exact(server: Server) -> None:
    rng = random.Random(11)
    data = rng.randbytes(64 << 20)
    h = blake3.blake3(data).hexdigest()
    with server.client("writer") as c:
        r = c.put("/v1/names/big/file.bin", content=data)
        assert r.status_code == 201 and r.json()["hash"] == h and r.json()["new"] is True
        again = c.put("/v1/names/big/copy.bin", content=data)
        assert again.status_code == 200 and again.json()["new"] is False
    with server.client("reader") as c:
        full = c.get(f"/v1/files/{h}")
        assert full.status_code == 200 and full.content == data
        assert full.headers["etag"] == f'"{h}"' and "immutable" in full.headers["cache-control"]
        assert CSP in full.headers["content-security-policy"]
        for _ in range(12):
            a = rng.randrange(len(data))
            b = min(len(data) - 1, a + rng.randrange(1, 3 << 20))
            r = c.get(f"/v1/files/{h}", headers={"Range": f"bytes={a}-{b}"})
            assert r.status_code == 206 and r.content == data[a:b + 1]
            assert r.headers["content-range"] == f"bytes {a}-{b}/{len(data)}"
        r = c.get(f"/v1/files/{h}", headers={"Range": "bytes=-1000"})
        assert r.status_code == 206 and r.content == data[-1000:]
        for _ in range(4):
            spans = sorted((a, min(len(data) - 1, a + rng.randrange(1, 200_000)))
                           for a in rng.sample(range(len(data)), rng.randrange(2, 7)))
            spec = ",".join(f"{a}-{b}" for a, b in spans)
            r = c.get("/v1/names/big/file.bin", headers={"Range": f"bytes={spec}"})
            assert r.status_code == 206 and r.headers["mosaic-hash"] == h
            assert r.headers["content-type"].startswith("multipart/byteranges")
            parts = _multipart(r.content, r.headers["content-type"])
            assert [p[0] for p in parts] == [f"{a}-{b}/{len(data)}" for a, b in spans]
            assert [p[1] for p in parts] == [data[a:b + 1] for a, b in spans]
        r = c.get(f"/v1/files/{h}", headers={"If-None-Match": f'"{h}"'})
        assert r.status_code == 304 and r.content == b""
        r = c.get("/v1/names/big/file.bin", headers={"If-None-Match": f'W/"x", "{h}"'})
        assert r.status_code == 304
        r = c.head(f"/v1/files/{h}")
        assert r.status_code == 200 and r.headers["content-length"] == str(len(data))
        _problem(c.get(f"/v1/files/{h}", headers={"Range": f"bytes={len(data)}-"}), 416)
        r = c.get(f"/v1/files/{h}", headers={"Range": "bytes=oops"})  # ignored, as RFC 9110 says
        assert r.status_code == 200 and len(r.content) == len(data)


def test_tokens_scopes_prefixes_and_lockout(server: Server) -> None:
    with server.client("admin") as c:
        doc_h = c.put("/v1/names/docs/a.txt", content=b"in docs").json()["hash"]
        other_h = c.put("/v1/names/other/b.txt", content=b"elsewhere").json()["hash"]
    with server.client(None) as c:
        _problem(c.get("/v1/status"), 401, "unauthorized")
        _problem(c.get("/v1/status", headers={"Authorization": "Bearer mosaic_nope"}), 401)
        _problem(c.get("/v1/status", headers={"Authorization": "Basic eDp5"}), 401)
    with server.client("reader") as c:
        assert c.get("/v1/status").status_code == 200
        _problem(c.put("/v1/names/x.txt", content=b"x"), 403, "forbidden")
        _problem(c.post("/v1/import", json={}), 403)
    with server.client("docs") as c:
        assert c.get(f"/v1/files/{doc_h}").content == b"in docs"
        assert c.get("/v1/names/docs/a.txt").content == b"in docs"
        _problem(c.get(f"/v1/files/{other_h}"), 403)
        _problem(c.get("/v1/names/other/b.txt"), 403)
        _problem(c.get("/v1/tree/other"), 403)
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
        _problem(r, 429, "too-many-requests")
        assert int(r.headers["retry-after"]) >= 1
        ok = c.get("/v1/status", headers={"Authorization": f"Bearer {server.tokens['reader']}"})
        assert ok.status_code == 200
    with server.client("reader") as c:
        assert c.get("/v1/status").status_code == 200


def test_browser_session_cookie_csrf_and_csp(server: Server) -> None:
    with server.client(None) as c:
        _problem(c.post("/v1/session", json={"token": "mosaic_wrong"}), 401)
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
        _problem(c.put("/v1/names/s.txt", content=b"x"), 403)  # no CSRF token
        _problem(c.put("/v1/names/s.txt", content=b"x", headers={"X-CSRF-Token": "wrong"}), 403)
        ok = c.put("/v1/names/s.txt", content=b"x", headers={"X-CSRF-Token": doc["csrf"]})
        assert ok.status_code == 201
        cross = {"X-CSRF-Token": doc["csrf"], "Sec-Fetch-Site": "cross-site"}
        _problem(c.delete("/v1/names/s.txt", headers=cross), 403)
        _problem(c.delete("/v1/names/s.txt", headers={"X-CSRF-Token": doc["csrf"],
                                                      "Origin": "http://evil.example"}), 403)
        _problem(c.get("/v1/status", headers={"Sec-Fetch-Site": "cross-site"}), 403)
        assert c.delete("/v1/names/s.txt", headers={"X-CSRF-Token": doc["csrf"],
                                                    "Origin": server.url}).status_code == 204
        assert c.delete("/v1/session", headers={"X-CSRF-Token": doc["csrf"]}).status_code == 204
        c.cookies.clear()
        _problem(c.get("/v1/session"), 401)
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
        rec = c.get("/v1/tree/", params={"recursive": "1"}).json()["entries"]
        assert [x["path"] for x in rec] == [f"d/f{i}.txt" for i in range(5)]
        assert c.post("/v1/move", json={"from": "d/f0.txt", "to": "e/g.txt"}).json()["moved"] == 1
        assert c.get("/v1/names/e/g.txt").content == b"file 0"
        _problem(c.get("/v1/names/d/f0.txt"), 404, "not-found")
        assert c.post("/v1/move", json={"from": "d", "to": "x/d2"}).json()["moved"] == 4
        assert [x["name"] for x in c.get("/v1/tree/x/d2").json()["entries"]] == \
            ["empty", "f1.txt", "f2.txt", "f3.txt", "f4.txt"]
        assert c.delete("/v1/names/x/d2/empty").status_code == 204
        _problem(c.delete("/v1/names/x/d2/empty"), 404)
        hits = c.get("/v1/search", params={"q": "x/*/f[12].txt"}).json()["entries"]
        assert [x["path"] for x in hits] == ["x/d2/f1.txt", "x/d2/f2.txt"]
        st = c.get("/v1/stat/x/d2/f1.txt").json()
        assert st["names"] == ["x/d2/f1.txt"] and st["size"] == 6 and st["pinned"] is False
        assert c.get(f"/v1/stat/{st['hash']}").json()["hash"] == st["hash"]
        assert c.post("/v1/pin", json={"refs": ["x/d2/f1.txt"]}).json()["pinned"] == [st["hash"]]
        assert c.get(f"/v1/stat/{st['hash']}").json()["pinned"] is True
        assert c.post("/v1/warm", json={"refs": None}).status_code == 200
        assert c.delete("/v1/names/x/d2/f1.txt").status_code == 204
        _problem(c.get("/v1/stat/x/d2/f1.txt"), 404)
    with server.client("admin") as c:
        dump = c.post("/v1/export", json={"refs": ["e/g.txt"]}).content
        jh = {"Content-Type": "application/json"}
        assert c.post("/v1/import", content=dump, headers=jh).status_code == 200
        _problem(c.post("/v1/import", content=dump.replace(b'"e/g.txt"', b'"e/h.txt"'),
                        headers=jh), 422, "integrity")
        _problem(c.post("/v1/import", json={"format": "nonsense"}), 400)


def test_events_stream(server: Server) -> None:
    with server.client("reader") as c, c.stream("GET", "/v1/events") as ev:
        assert ev.headers["content-type"].startswith("text/event-stream")
        with server.client("writer") as w:
            w.put("/v1/names/ev/one.txt", content=b"one")
            w.post("/v1/move", json={"from": "ev/one.txt", "to": "ev/two.txt"})
            w.delete("/v1/names/ev/two.txt")
        kinds: list[tuple[str, dict]] = []
        event = None
        for line in ev.iter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: ") and event in ("put", "mv", "rm"):
                kinds.append((event, json.loads(line[6:])))
                if event == "rm":
                    break
    assert [k for k, _ in kinds] == ["put", "mv", "rm"]
    assert kinds[0][1]["name"] == "ev/one.txt" and kinds[2][1]["name"] == "ev/two.txt"


def _raw(port: int, request: bytes, close_after: bool = True) -> bytes:
    with socket.create_connection((HOST, port), timeout=20) as s:
        s.sendall(request)
        if close_after:
            s.shutdown(socket.SHUT_WR)
        out = b""
        while True:
            b = s.recv(65536)
            if not b:
                return out
            out += b


def test_bad_input_gets_problems_and_stores_nothing_half(server: Server) -> None:
    with server.client("writer") as c:
        before = c.get("/v1/status").json()["node"]["files"]
        for bad in ("abc", "g" * 64, "0" * 63, "0" * 65):
            _problem(c.get(f"/v1/files/{bad}"), 400, "usage")
        _problem(c.get("/v1/stat/" + "0" * 64), 404)
        for path in ("a/%2E%2E/b", "%2E%2E", "a/%01b", "a%7Fb", "%00", "a/%C2%85"):
            _problem(c.put(f"/v1/names/{path}", content=b"data"), 400, "usage")
            _problem(c.get(f"/v1/names/{path}"), 400, "usage")
        _problem(c.post("/v1/move", json={"from": "a", "to": "../b"}), 400)
        _problem(c.post("/v1/folders", content=b"{not json", headers={"Content-Type": "application/json"}), 400)
        _problem(c.post("/v1/folders", content=b"x" * (2 << 20),
                        headers={"Content-Type": "application/json"}), 413)
        _problem(c.post("/v1/folders", content=b"{}", headers={"Content-Type": "text/plain"}), 415)
        _problem(c.get("/v1/tree/", params={"limit": "0"}), 400)
        _problem(c.get("/v1/status", headers={"X-Big": "y" * 40_000}), 431, "headers-too-large")
        assert c.get("/v1/status").json()["node"]["files"] == before
    token = server.tokens["writer"]
    # `..` as sent on the wire (clients normalise it away, so write the request by hand)
    raw = _raw(server.port, (f"PUT /v1/names/a/../b HTTP/1.1\r\nHost: {HOST}\r\nAuthorization: "
                             f"Bearer {token}\r\nContent-Length: 4\r\n\r\ndata").encode())
    assert raw.startswith(b"HTTP/1.1 400") and b"problem+json" in raw, raw[:300]
    # a one-shot PUT cut short: nothing is stored under the name
    body = random.Random(3).randbytes(3 << 20)
    for size in (300_000, len(body)):  # a small body (read whole) and a streamed one
        head = (f"PUT /v1/names/cut/short.bin HTTP/1.1\r\nHost: {HOST}\r\n"
                f"Authorization: Bearer {token}\r\nContent-Length: {size}\r\n\r\n").encode()
        _raw(server.port, head + body[:size * 2 // 3])
    with server.client("writer") as c:
        _problem(c.get("/v1/names/cut/short.bin"), 404)
        assert c.get("/v1/status").json()["node"]["files"] == before
        # tus: wrong offsets and versions are refused, the upload stays where it was
        loc = c.post("/v1/uploads/", headers={"Tus-Resumable": "1.0.0", "Upload-Length": "1000",
                                              "Upload-Metadata": "name Y3V0L3R1cy5iaW4="}
                     ).headers["location"]
        patch = {"Tus-Resumable": "1.0.0", "Content-Type": "application/offset+octet-stream"}
        _problem(c.patch(loc, content=b"x" * 10, headers={**patch, "Upload-Offset": "5"}), 409)
        _problem(c.patch(loc, content=b"x" * 10, headers={**patch, "Upload-Offset": "-1"}), 400)
        _problem(c.patch(loc, content=b"x" * 10, headers={**patch, "Tus-Resumable": "0.2",
                                                          "Upload-Offset": "0"}), 412)
        _problem(c.patch(loc, content=b"x" * 2000, headers={**patch, "Upload-Offset": "0"}), 413)
        _problem(c.patch(loc, content=b"x", headers={"Tus-Resumable": "1.0.0", "Upload-Offset": "0",
                                                     "Content-Type": "text/plain"}), 415)
        assert c.head(loc, headers={"Tus-Resumable": "1.0.0"}).headers["upload-offset"] == "0"
        _problem(c.head("/v1/uploads/" + "A" * 24, headers={"Tus-Resumable": "1.0.0"}), 404)
        _problem(c.post("/v1/uploads/", headers={"Tus-Resumable": "1.0.0", "Upload-Length": "x"}), 400)
        _problem(c.post("/v1/uploads/", headers={"Tus-Resumable": "1.0.0", "Upload-Length": "5",
                                                 "Upload-Metadata": "name !!!"}), 400)
        _problem(c.post("/v1/uploads/", headers={"Tus-Resumable": "1.0.0", "Upload-Length": "5",
                                                 "Upload-Metadata": "name Li4vYQ=="}), 400)  # ../a
    # a tus PATCH cut short keeps exactly what arrived (that is what resuming needs)
    part = body[:1000]
    head = (f"PATCH {loc} HTTP/1.1\r\nHost: {HOST}\r\nAuthorization: Bearer {token}\r\n"
            f"Tus-Resumable: 1.0.0\r\nUpload-Offset: 0\r\n"
            f"Content-Type: application/offset+octet-stream\r\nContent-Length: 1000\r\n\r\n").encode()
    _raw(server.port, head + part[:600])
    with server.client("writer") as c:
        off = int(c.head(loc, headers={"Tus-Resumable": "1.0.0"}).headers["upload-offset"])
        assert off == 600
        r = c.patch(loc, content=part[600:], headers={**patch, "Upload-Offset": "600"})
        assert r.status_code == 204 and r.headers["mosaic-hash"] == blake3.blake3(part).hexdigest()
        assert c.get("/v1/names/cut/tus.bin").content == part
    log = server.log.read_text()
    assert "Traceback" not in log, log[-3000:]


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


@pytest.mark.parametrize("scope", ["read", "write", "admin"])
def test_token_cli(node, scope) -> None:  # noqa: ANN001
    doc = node.doc("token", "add", f"t-{scope}", "--scope", scope, "--prefix", "p/q")
    assert doc["token"].startswith("mosaic_") and doc["prefix"] == "p/q"
    plain = node.ok("token", "add", "plain", "--scope", scope).text.strip()
    assert plain.startswith("mosaic_") and len(plain.splitlines()) == 1
    ls = node.doc("token", "ls")
    assert {t["name"] for t in ls} == {f"t-{scope}", "plain"}
    assert all("token" not in t for t in ls)
    assert doc["token"] not in (node.home / "index" / "data.mdb").read_bytes().decode("latin-1")
    assert_one_line_error(node("token", "add", "plain", "--scope", scope), 2)
    node.ok("token", "rm", "plain")
    assert_one_line_error(node("token", "rm", "plain"), 1)
