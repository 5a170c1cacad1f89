"""Hostile and careless input against a real `mosaic serve --http` (one daemon for the
module): each test pins a bug found by trying the API as an attacker would, and checks
the answer is the right status with a problem document, never a 500, and that nothing
is stored half."""

from __future__ import annotations

import base64
import json
import socket
import threading
import time

import blake3
import httpx

from .checks import multipart, problem, raw
from .conftest import HOST, Server

TUS = {"Tus-Resumable": "1.0.0"}
OFFSET = {**TUS, "Content-Type": "application/offset+octet-stream"}


def _meta(name: str) -> str:
    return "name " + base64.b64encode(name.encode()).decode()


def test_a_path_that_is_not_utf8_is_refused(server: Server) -> None:
    with server.client("writer") as c:
        before = c.get("/v1/status").json()["node"]["files"]
        for path in ("%FF%FE", "a/%C3", "ok/%80x"):
            problem(c.put(f"/v1/names/{path}", content=b"x"), 400, "usage")
            problem(c.get(f"/v1/names/{path}"), 400, "usage")
        problem(c.get("/v1/tree/%FF"), 400, "usage")
        assert c.put("/v1/names/caf%C3%A9", content=b"x").json()["name"] == "caf\u00e9"
        assert c.get("/v1/status").json()["node"]["files"] == before + 1


def test_a_file_and_a_folder_never_share_a_name(server: Server) -> None:
    with server.client("writer") as c:
        assert c.put("/v1/names/ff/dir/inner.txt", content=b"inner").status_code == 201
        assert c.put("/v1/names/ff/file.txt", content=b"file").status_code == 201
        problem(c.put("/v1/names/ff/dir", content=b"x"), 409, "conflict")  # a folder there
        problem(c.put("/v1/names/ff/file.txt/below", content=b"x"), 409, "conflict")  # a file
        problem(c.post("/v1/uploads/", headers={**OFFSET, "Upload-Length": "1",
                                                "Upload-Metadata": _meta("ff/dir")},
                       content=b"x"), 409, "conflict")
        problem(c.post("/v1/move", json={"from": "ff/file.txt", "to": "ff/dir"}), 409, "conflict")
        problem(c.post("/v1/move", json={"from": "ff/file.txt", "to": "ff/dir/inner.txt/x"}),
                409, "conflict")
        problem(c.post("/v1/move", json={"from": "ff/dir", "to": "ff/file.txt"}), 409, "conflict")
        for f in ("ff/q b", "ff/q/empty"):  # "q b" sorts between "q" and "q/empty"
            assert c.post("/v1/folders", json={"path": f}).status_code == 201
        problem(c.put("/v1/names/ff/q", content=b"x"), 409, "conflict")
        kinds = [(e["name"], e["type"]) for e in c.get("/v1/tree/ff").json()["entries"]]
        assert sorted(kinds) == [("dir", "folder"), ("file.txt", "file"), ("q", "folder"),
                                 ("q b", "folder")]


def test_moving_a_folder_onto_itself_its_child_or_a_full_folder(server: Server) -> None:
    with server.client("writer") as c:
        for p in ("mv/a/one.txt", "mv/a/sub/two.txt", "mv/b/keep.txt"):
            assert c.put(f"/v1/names/{p}", content=p.encode()).status_code == 201
        problem(c.post("/v1/move", json={"from": "mv/a", "to": "mv/a"}), 400, "usage")
        problem(c.post("/v1/move", json={"from": "mv/a", "to": "mv/a/sub/deeper"}), 400, "usage")
        # onto its own parent or onto another folder with files: never a silent merge
        problem(c.post("/v1/move", json={"from": "mv/a/sub", "to": "mv/a"}), 409, "conflict")
        problem(c.post("/v1/move", json={"from": "mv/a", "to": "mv/b"}), 409, "conflict")
        assert c.get("/v1/names/mv/b/keep.txt").content == b"mv/b/keep.txt"
        assert c.get("/v1/names/mv/a/sub/two.txt").status_code == 200
        # onto an empty folder: allowed (it is filled)
        assert c.post("/v1/folders", json={"path": "mv/empty"}).status_code == 201
        assert c.post("/v1/move", json={"from": "mv/a", "to": "mv/empty"}).json()["moved"] == 2


def test_empty_folders_move_and_go_with_their_folder(server: Server) -> None:
    """Folder records sort "a b" and "a-x" between "a" and "a/...": moving or deleting "a"
    must still take "a/empty" along (a scan that stopped at "a b" left it behind)."""
    with server.client("writer") as c:
        for f in ("ef/a/empty", "ef/a b", "ef/a-x"):
            assert c.post("/v1/folders", json={"path": f}).status_code == 201
        assert c.put("/v1/names/ef/a/f.txt", content=b"f").status_code == 201
        assert c.post("/v1/move", json={"from": "ef/a", "to": "ef/z"}).json()["moved"] == 1
        names = [e["name"] for e in c.get("/v1/tree/ef").json()["entries"]]
        assert names == ["a b", "a-x", "z"]
        assert [e["name"] for e in c.get("/v1/tree/ef/z").json()["entries"]] == ["empty", "f.txt"]
        r = c.delete("/ui/folder/ef/z")
        assert r.status_code == 200 and r.json() == {"path": "ef/z", "names": 1, "folders": 1}
        assert [e["name"] for e in c.get("/v1/tree/ef").json()["entries"]] == ["a b", "a-x"]
        problem(c.get("/v1/tree/ef/z"), 404)


def test_a_prefix_token_stays_inside_its_prefix(server: Server) -> None:
    with server.client("admin") as c:
        secret = c.put("/v1/names/private/s.txt", content=b"secret").json()["hash"]
    with server.client("docs") as c:  # read, prefix "docs"
        for call in (c.get(f"/v1/files/{secret}"), c.head(f"/v1/files/{secret}"),
                     c.get(f"/v1/stat/{secret}"), c.post(f"/ui/verify/{secret}"),
                     c.get("/ui/archive/private"), c.delete("/ui/folder/private"),
                     c.delete("/ui/folder/docs"), c.post("/v1/pin", json={"refs": [secret]})):
            problem(call, 403)
        assert c.get("/v1/search", params={"q": "s.txt"}).json()["entries"] == []


def test_overlapping_ranges_are_merged_and_many_ranges_ignored(server: Server) -> None:
    data = bytes(range(256)) * 400  # 102,400 bytes
    with server.client("writer") as c:
        h = c.put("/v1/names/rg/r.bin", content=data).json()["hash"]
        url = f"/v1/files/{h}"
        r = c.get(url, headers={"Range": "bytes=0-0,0-0"})
        assert r.status_code == 206 and r.content == data[:1]
        assert r.headers["content-range"] == f"bytes 0-0/{len(data)}"
        r = c.get(url, headers={"Range": "bytes=" + ",".join(["0-"] * 50)})
        assert r.status_code == 206 and len(r.content) == len(data)  # not 50 copies
        r = c.get(url, headers={"Range": "bytes=10-19,15-29,100-109"})
        parts = multipart(r.content, r.headers["content-type"])
        assert parts == [(f"10-29/{len(data)}", data[10:30]), (f"100-109/{len(data)}", data[100:110])]
        r = c.get(url, headers={"Range": "bytes=100-109,0-9"})  # no overlap: order kept
        assert [p[0] for p in multipart(r.content, r.headers["content-type"])] == \
            [f"100-109/{len(data)}", f"0-9/{len(data)}"]
        for spec, status in (("bytes=-0", 416), ("bytes=5-2", 200), ("items=0-1", 200),
                             ("bytes=" + ",".join(f"{i}-{i}" for i in range(1000)), 200)):
            r = c.get(url, headers={"Range": spec})
            if status == 416:
                problem(r, 416)
                assert r.headers["content-range"] == f"bytes */{len(data)}"
            else:
                assert r.status_code == 200 and r.content == data
        for inm in (f'W/"{h}"', f'"x", W/"{h}"', "*"):
            assert c.get(url, headers={"If-None-Match": inm}).status_code == 304
        assert c.get(url, headers={"If-None-Match": h}).status_code == 200  # not a quoted tag


def test_wrong_methods_get_405_and_long_paths_are_not_echoed(server: Server) -> None:
    with server.client("admin") as c:
        for method, path in (("GET", "/v1/move"), ("HEAD", "/v1/move"), ("GET", "/v1/folders"),
                             ("PUT", "/v1/status"), ("DELETE", "/ui/verify/a"), ("POST", "/files/")):
            r = problem(c.request(method, path), 405, "method-not-allowed")
            assert r == {} or r["status"] == 405
        r = c.get("/v1/names/" + "x" * 20_000)
        assert len(problem(r, 400, "usage")["instance"]) < 1100


def test_tus_patch_waiting_behind_a_termination_gets_404(server: Server) -> None:
    """A PATCH queued on the upload's lock while a DELETE ends it used to append to the
    dropped upload (500, a tail file missing) and resurrect its state file."""
    tok = server.tokens["writer"]
    with server.client("writer") as c:
        loc = c.post("/v1/uploads/", headers={**TUS, "Upload-Length": "2000",
                                              "Upload-Metadata": _meta("race/x.bin")}
                     ).headers["location"]
        holder = socket.create_connection((HOST, server.port))  # holds the lock, sending slowly
        holder.sendall((f"PATCH {loc} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {tok}\r\n"
                        "Tus-Resumable: 1.0.0\r\nUpload-Offset: 0\r\nContent-Type: "
                        "application/offset+octet-stream\r\nContent-Length: 1000\r\n\r\n"
                        ).encode() + b"a" * 500)
        got: dict[str, httpx.Response] = {}

        def call(key: str, method: str, delay: float, **kw: object) -> None:
            time.sleep(delay)
            with server.client("writer") as c2:
                got[key] = c2.request(method, loc, **kw)

        threads = [threading.Thread(target=call, args=("delete", "DELETE", 0.3), kwargs={"headers": TUS}),
                   threading.Thread(target=call, args=("patch", "PATCH", 0.6), kwargs={
                       "headers": {**OFFSET, "Upload-Offset": "500"}, "content": b"b" * 1500})]
        for t in threads:
            t.start()
        time.sleep(1.2)
        holder.shutdown(socket.SHUT_WR)  # the first PATCH ends with 500 bytes
        holder.recv(1000)
        holder.close()
        for t in threads:
            t.join(30)
        assert got["delete"].status_code == 204
        problem(got["patch"], 404, "not-found")
        problem(c.head(loc, headers=TUS), 404)
        problem(c.get("/v1/stat/race/x.bin"), 404)
    uid = loc.rsplit("/", 1)[-1]
    assert not list((server.cli.home / "http-uploads").glob(f"{uid}*"))
    assert "Traceback" not in server.log.read_text()


def test_tus_small_whole_files_and_empty_ones(server: Server) -> None:
    with server.client("writer") as c:
        before = c.get("/v1/status").json()["node"]["files"]
        data = b"a whole small file in its creation request\n"
        r = c.post("/v1/uploads/", headers={**OFFSET, "Upload-Length": str(len(data)),
                                            "Upload-Metadata": _meta("small/a.txt")}, content=data)
        assert r.status_code == 201 and r.headers["upload-offset"] == str(len(data))
        assert r.headers["mosaic-hash"] == blake3.blake3(data).hexdigest()
        head = c.head(r.headers["location"], headers=TUS)
        assert head.headers["upload-offset"] == str(len(data))
        assert head.headers["mosaic-hash"] == blake3.blake3(data).hexdigest()
        problem(c.patch(r.headers["location"], content=b"x",
                        headers={**OFFSET, "Upload-Offset": str(len(data))}), 409)
        assert c.get("/v1/names/small/a.txt").content == data
        # an empty file, by tus and by PUT
        r = c.post("/v1/uploads/", headers={**TUS, "Upload-Length": "0",
                                            "Upload-Metadata": _meta("small/empty.bin")})
        assert r.status_code == 201 and r.headers["mosaic-hash"] == blake3.blake3(b"").hexdigest()
        assert c.put("/v1/names/small/empty2.bin", content=b"").status_code in (200, 201)
        assert c.get("/v1/names/small/empty.bin").content == b""
        problem(c.get("/v1/names/small/empty.bin", headers={"Range": "bytes=0-"}), 416)
        assert c.get("/v1/status").json()["node"]["files"] == before + 2
    # a creation request whose whole-file body is cut short stores nothing, makes no upload
    tok = server.tokens["writer"]
    with socket.create_connection((HOST, server.port), timeout=20) as s:
        s.sendall((f"POST /v1/uploads/ HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {tok}\r\n"
                   f"Tus-Resumable: 1.0.0\r\nUpload-Length: 100\r\nUpload-Metadata: "
                   f"{_meta('small/cut.bin')}\r\nContent-Type: application/offset+octet-stream\r\n"
                   f"Content-Length: 100\r\n\r\n").encode() + b"c" * 40)
        s.shutdown(socket.SHUT_WR)
        s.recv(1000)
    with server.client("writer") as c:
        problem(c.get("/v1/names/small/cut.bin"), 404)
        assert c.get("/v1/status").json()["node"]["files"] == before + 2


def test_a_session_from_a_revoked_token_stops_working(server: Server) -> None:
    tok = server.cli.doc("token", "add", "short-lived", "--scope", "write")["token"]
    with server.client(None) as c:
        doc = c.post("/v1/session", json={"token": tok}).json()
        assert c.get("/v1/status").status_code == 200
        problem(c.post("/v1/session", json={"token": tok},
                       headers={"Origin": "http://evil.example"}), 403)  # no forced sign-in
        server.cli.ok("token", "rm", "short-lived")
        problem(c.get("/v1/status"), 401, "unauthorized")
        problem(c.put("/v1/names/revoked.txt", content=b"x",
                      headers={"X-CSRF-Token": doc["csrf"]}), 401)
        r = c.get("/files/", follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/signin")


def test_every_state_change_needs_csrf_with_a_cookie(server: Server) -> None:
    with server.client(None) as c:
        doc = c.post("/v1/session", json={"token": server.tokens["admin"]}).json()
        assert c.put("/v1/names/csrf/x.txt", content=b"csrf x",
                     headers={"X-CSRF-Token": doc["csrf"]}).status_code == 201
        h = blake3.blake3(b"csrf x").hexdigest()
        calls = [("PUT", "/v1/names/csrf/y.txt", {"content": b"y"}),
                 ("DELETE", "/v1/names/csrf/x.txt", {}),
                 ("POST", "/v1/move", {"json": {"from": "csrf/x.txt", "to": "csrf/z.txt"}}),
                 ("POST", "/v1/folders", {"json": {"path": "csrf/new"}}),
                 ("POST", "/v1/warm", {"json": {"refs": [h]}}),
                 ("POST", "/v1/pin", {"json": {"refs": [h]}}),
                 ("POST", "/v1/export", {"json": {"refs": [h]}}),
                 ("POST", "/v1/import", {"json": {}}),
                 ("POST", "/v1/uploads/", {"headers": {**TUS, "Upload-Length": "1"}}),
                 ("DELETE", "/v1/session", {}),
                 ("POST", "/ui/verify/csrf/x.txt", {}),
                 ("DELETE", "/ui/folder/csrf", {})]
        for method, path, kw in calls:
            problem(c.request(method, path, **kw), 403, "forbidden")
        assert c.get("/v1/names/csrf/x.txt").content == b"csrf x"  # nothing happened
        problem(c.get("/v1/names/csrf/y.txt"), 404)
        loc = c.post("/v1/uploads/", headers={**TUS, "Upload-Length": "1",
                                              "X-CSRF-Token": doc["csrf"]}).headers["location"]
        problem(c.patch(loc, content=b"x", headers={**OFFSET, "Upload-Offset": "0"}), 403)
        problem(c.delete(loc, headers=TUS), 403)
        assert c.delete(loc, headers={**TUS, "X-CSRF-Token": doc["csrf"]}).status_code == 204


def test_requests_the_server_refuses_itself_get_problem_documents(server: Server) -> None:
    """Broken framing is refused by the HTTP server before the app runs: still a problem."""
    tok = server.tokens["writer"]
    head = f"PUT /v1/names/wire/x.bin HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {tok}\r\n"
    for req, status in ((head + "Content-Length: abc\r\n\r\nabc", 400),
                        (head + "Content-Length: -5\r\n\r\nabc", 400),
                        ("NOT HTTP AT ALL\r\n\r\n", 400),
                        ("GET /" + "a" * 300_000 + " HTTP/1.1\r\nHost: x\r\n\r\n", 431),
                        # under h11's own cap: the app must refuse it (it reached the app and got
                        # a 404 when the whole line arrived in one read)
                        ("GET /" + "a" * 100_000 + " HTTP/1.1\r\nHost: x\r\n\r\n", 431),
                        ("GET /v1/tree/?cursor=" + "a" * 100_000 + " HTTP/1.1\r\nHost: x\r\n\r\n",
                         431)):
        got = raw(server.port, req.encode())
        head_part, _, body = got.partition(b"\r\n\r\n")
        assert head_part.startswith(f"HTTP/1.1 {status}".encode()), (req[:60], got[:300])
        assert b"application/problem+json" in head_part and b"content-security-policy" in head_part
        assert json.loads(body)["status"] == status
    with server.client("writer") as c:
        problem(c.get("/v1/names/wire/x.bin"), 404)


def test_listings_above_a_prefix_give_no_other_name_away(server: Server) -> None:
    """A prefix token listing the root used to get an empty page whose cursor was the
    first name outside its prefix."""
    with server.client("admin") as c:
        for p in ("aaa/x.txt", "docs/one.txt", "docs/sub/two.txt", "zzz.txt"):
            assert c.put(f"/v1/names/{p}", content=p.encode()).status_code in (200, 201)
    with server.client("docs") as c:  # read, prefix "docs"
        for params in ({"limit": "1"}, {"limit": "1", "cursor": "aaa"}):
            r = c.get("/v1/tree/", params=params).json()
            assert r["cursor"] is None
            assert [e["path"] for e in r["entries"]] == (["docs"] if "cursor" not in params else [])
        seen, cursor = [], None
        while True:
            params = {"recursive": "1", "limit": "1", **({"cursor": cursor} if cursor else {})}
            r = c.get("/v1/tree/", params=params).json()
            seen += [e["path"] for e in r["entries"]]
            cursor = r["cursor"]
            assert cursor is None or not any(x in cursor for x in ("aaa", "zzz", "private"))
            if cursor is None:
                break
        assert seen == ["docs/one.txt", "docs/sub/two.txt"]
        problem(c.get("/v1/tree/aaa"), 403)


def test_two_clients_patching_at_once_both_get_an_answer(server: Server) -> None:
    """The second PATCH waits for the upload's lock without reading its body; answered 409
    then, it used to hang (its unread body filled the server's queue, and the server's
    last message to the app waited behind it) until the client gave up."""
    data = bytes(range(256)) * (24 << 12)  # 6 MiB
    with server.client("writer") as c:
        loc = c.post("/v1/uploads/", headers={**TUS, "Upload-Length": str(len(data)),
                                              "Upload-Metadata": _meta("two/at-once.bin")}
                     ).headers["location"]
    got: list[int] = []

    def patch() -> None:
        with server.client("writer") as c2:
            got.append(c2.patch(loc, content=data, headers={**OFFSET, "Upload-Offset": "0"},
                                timeout=20).status_code)

    threads = [threading.Thread(target=patch) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(got) == [204, 409]
    with server.client("writer") as c:
        assert c.get("/v1/names/two/at-once.bin").content == data
