"""Content over real sockets against a real `mosaic serve --http` (one daemon for the
module): a 64 MiB file by hash and by name with single and multiple ranges, ETags and
304; the event stream; bad input answered with problem documents, nothing stored half."""

from __future__ import annotations

import json
import random

import blake3

from .checks import CSP, multipart, problem, raw
from .conftest import HOST, Server


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
            parts = multipart(r.content, r.headers["content-type"])
            assert [p[0] for p in parts] == [f"{a}-{b}/{len(data)}" for a, b in spans]
            assert [p[1] for p in parts] == [data[a:b + 1] for a, b in spans]
        r = c.get(f"/v1/files/{h}", headers={"If-None-Match": f'"{h}"'})
        assert r.status_code == 304 and r.content == b""
        r = c.get("/v1/names/big/file.bin", headers={"If-None-Match": f'W/"x", "{h}"'})
        assert r.status_code == 304
        r = c.head(f"/v1/files/{h}")
        assert r.status_code == 200 and r.headers["content-length"] == str(len(data))
        problem(c.get(f"/v1/files/{h}", headers={"Range": f"bytes={len(data)}-"}), 416)
        r = c.get(f"/v1/files/{h}", headers={"Range": "bytes=oops"})  # ignored, as RFC 9110 says
        assert r.status_code == 200 and len(r.content) == len(data)


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



def test_bad_input_gets_problems_and_stores_nothing_half(server: Server) -> None:
    with server.client("writer") as c:
        before = c.get("/v1/status").json()["node"]["files"]
        for bad in ("abc", "g" * 64, "0" * 63, "0" * 65):
            problem(c.get(f"/v1/files/{bad}"), 400, "usage")
        problem(c.get("/v1/stat/" + "0" * 64), 404)
        for path in ("a/%2E%2E/b", "%2E%2E", "a/%01b", "a%7Fb", "%00", "a/%C2%85"):
            problem(c.put(f"/v1/names/{path}", content=b"data"), 400, "usage")
            problem(c.get(f"/v1/names/{path}"), 400, "usage")
        problem(c.post("/v1/move", json={"from": "a", "to": "../b"}), 400)
        problem(c.post("/v1/folders", content=b"{not json", headers={"Content-Type": "application/json"}), 400)
        problem(c.post("/v1/folders", content=b"x" * (2 << 20),
                        headers={"Content-Type": "application/json"}), 413)
        problem(c.post("/v1/folders", content=b"{}", headers={"Content-Type": "text/plain"}), 415)
        problem(c.get("/v1/tree/", params={"limit": "0"}), 400)
        problem(c.get("/v1/status", headers={"X-Big": "y" * 40_000}), 431, "headers-too-large")
        assert c.get("/v1/status").json()["node"]["files"] == before
    token = server.tokens["writer"]
    # `..` as sent on the wire (clients normalise it away, so write the request by hand)
    got = raw(server.port, (f"PUT /v1/names/a/../b HTTP/1.1\r\nHost: {HOST}\r\nAuthorization: "
                            f"Bearer {token}\r\nContent-Length: 4\r\n\r\ndata").encode())
    assert got.startswith(b"HTTP/1.1 400") and b"problem+json" in got, got[:300]
    # a one-shot PUT cut short: nothing is stored under the name
    body = random.Random(3).randbytes(3 << 20)
    for size in (300_000, len(body)):  # a small body (read whole) and a streamed one
        head = (f"PUT /v1/names/cut/short.bin HTTP/1.1\r\nHost: {HOST}\r\n"
                f"Authorization: Bearer {token}\r\nContent-Length: {size}\r\n\r\n").encode()
        raw(server.port, head + body[:size * 2 // 3])
    with server.client("writer") as c:
        problem(c.get("/v1/names/cut/short.bin"), 404)
        assert c.get("/v1/status").json()["node"]["files"] == before
        # tus: wrong offsets and versions are refused, the upload stays where it was
        loc = c.post("/v1/uploads/", headers={"Tus-Resumable": "1.0.0", "Upload-Length": "1000",
                                              "Upload-Metadata": "name Y3V0L3R1cy5iaW4="}
                     ).headers["location"]
        patch = {"Tus-Resumable": "1.0.0", "Content-Type": "application/offset+octet-stream"}
        problem(c.patch(loc, content=b"x" * 10, headers={**patch, "Upload-Offset": "5"}), 409)
        problem(c.patch(loc, content=b"x" * 10, headers={**patch, "Upload-Offset": "-1"}), 400)
        problem(c.patch(loc, content=b"x" * 10, headers={**patch, "Tus-Resumable": "0.2",
                                                          "Upload-Offset": "0"}), 412)
        problem(c.patch(loc, content=b"x" * 2000, headers={**patch, "Upload-Offset": "0"}), 413)
        problem(c.patch(loc, content=b"x", headers={"Tus-Resumable": "1.0.0", "Upload-Offset": "0",
                                                     "Content-Type": "text/plain"}), 415)
        assert c.head(loc, headers={"Tus-Resumable": "1.0.0"}).headers["upload-offset"] == "0"
        problem(c.head("/v1/uploads/" + "A" * 24, headers={"Tus-Resumable": "1.0.0"}), 404)
        problem(c.post("/v1/uploads/", headers={"Tus-Resumable": "1.0.0", "Upload-Length": "x"}), 400)
        problem(c.post("/v1/uploads/", headers={"Tus-Resumable": "1.0.0", "Upload-Length": "5",
                                                 "Upload-Metadata": "name !!!"}), 400)
        problem(c.post("/v1/uploads/", headers={"Tus-Resumable": "1.0.0", "Upload-Length": "5",
                                                 "Upload-Metadata": "name Li4vYQ=="}), 400)  # ../a
    # a tus PATCH cut short keeps exactly what arrived (that is what resuming needs)
    part = body[:1000]
    head = (f"PATCH {loc} HTTP/1.1\r\nHost: {HOST}\r\nAuthorization: Bearer {token}\r\n"
            f"Tus-Resumable: 1.0.0\r\nUpload-Offset: 0\r\n"
            f"Content-Type: application/offset+octet-stream\r\nContent-Length: 1000\r\n\r\n").encode()
    raw(server.port, head + part[:600])
    with server.client("writer") as c:
        off = int(c.head(loc, headers={"Tus-Resumable": "1.0.0"}).headers["upload-offset"])
        assert off == 600
        r = c.patch(loc, content=part[600:], headers={**patch, "Upload-Offset": "600"})
        assert r.status_code == 204 and r.headers["mosaic-hash"] == blake3.blake3(part).hexdigest()
        assert c.get("/v1/names/cut/tus.bin").content == part
    log = server.log.read_text()
    assert "Traceback" not in log, log[-3000:]
