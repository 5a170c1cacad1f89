"""The UI's own calls over HTTP (no browser): archives, verify, folder delete, the transfer
history and recent events, with their errors as problem documents."""

from __future__ import annotations

import io
import tarfile

from .harness import Node, b3, names_under


def test_archive_streams_every_name_under_a_folder(node: Node) -> None:
    files = {"arc/a.txt": b"a\n", "arc/sub/b.bin": bytes(range(256)) * 999,
             "arc/sub/deep/\u00e9t\u00e9 " + "x" * 150 + ".txt": b"long name\n", "arcx/no.txt": b"no"}
    with node.api(node.tokens["writer"]) as api:
        for name, data in files.items():
            assert api.put(f"/v1/names/{name}", content=data).status_code in (200, 201)
        r = api.get("/ui/archive/arc")
        assert r.status_code == 200
        assert r.headers["content-type"] == "application/x-tar"
        assert "arc.tar" in r.headers["content-disposition"]
        with tarfile.open(fileobj=io.BytesIO(r.content)) as tar:
            got = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
        assert got == {k: v for k, v in files.items() if k.startswith("arc/")}
        assert len(r.content) % 512 == 0
        whole = api.get("/ui/archive/")
        with tarfile.open(fileobj=io.BytesIO(whole.content)) as tar:
            assert {m.name for m in tar.getmembers()} >= {f"mosaic/{k}" for k in files}
        miss = api.get("/ui/archive/no/such/folder")
        assert miss.status_code == 404
        assert miss.headers["content-type"].startswith("application/problem+json")
        assert api.get("/ui/archive/bad%01name").status_code == 400


def test_verify_a_file_by_name_and_by_hash(node: Node) -> None:
    with node.api(node.tokens["writer"]) as api:
        api.put("/v1/names/v/ok.txt", content=b"check me\n")
        for ref in ("v/ok.txt", b3(b"check me\n")):
            r = api.post(f"/ui/verify/{ref}")
            assert r.status_code == 200 and r.json() == {"ok": True, "files": 1, "bytes": 9,
                                                         "errors": []}
        assert api.post("/ui/verify/v/missing.txt").status_code == 404
        assert api.post(f"/ui/verify/{'0' * 64}").status_code == 404


def test_delete_folder_removes_everything_under_it(node: Node) -> None:
    with node.api(node.tokens["writer"]) as api:
        for n in ("gone/a.txt", "gone/b/c.txt", "gone2/keep.txt"):
            api.put(f"/v1/names/{n}", content=n.encode())
        api.post("/v1/folders", json={"path": "gone/empty/inner"})
        r = api.delete("/ui/folder/gone")
        assert r.status_code == 200 and r.json() == {"path": "gone", "names": 2, "folders": 1}
        assert api.get("/v1/tree/gone").status_code == 404
        assert names_under(api, "gone2") == {"gone2/keep.txt": b3(b"gone2/keep.txt")}
        assert api.delete("/ui/folder/gone").status_code == 404
        assert api.delete("/ui/folder/").status_code == 400


def test_activity_and_recent_events(node: Node) -> None:
    with node.api(node.tokens["writer"]) as api:
        api.put("/v1/names/ev/one.txt", content=b"1")
        h = api.get("/ui/activity").json()
        assert h["bucket"] == 60 and len(h["up"]) == len(h["down"]) == 60
        evs = api.get("/ui/events/recent").json()
        assert any(e["kind"] == "put" and e.get("name") == "ev/one.txt" for e in evs)
    with node.api(node.tokens["projects"]) as scoped:  # sees only events under its prefix
        assert not any(e.get("name") == "ev/one.txt" for e in scoped.get("/ui/events/recent").json())
