"""tus 1.0.0 uploads against a real `mosaic serve --http`: a 256 MiB upload whose client is
killed three times and resumed by new client processes, dedup of a second upload, expiry
and termination giving the space back."""

from __future__ import annotations

import random
import subprocess
import sys
import time
from pathlib import Path

import blake3
import pytest

from .conftest import Server, env_for_children, start_server

CLIENT = Path(__file__).with_name("tus_client.py")
TUS = {"Tus-Resumable": "1.0.0"}


def _packs_bytes(home: Path) -> int:
    return sum(p.stat().st_size for p in (home / "packs").rglob("*") if p.is_file())


def _client(server: Server, token: str, file: Path, name: str, state: Path,
            *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(CLIENT), server.url, server.tokens[token],
                           str(file), name, str(state), *extra], capture_output=True, text=True,
                          env=env_for_children(), timeout=300)


def _files(server: Server) -> int:
    with server.client("admin") as c:
        return c.get("/v1/status").json()["node"]["files"]


@pytest.mark.slow
def test_256_mib_upload_killed_three_times_resumes_to_the_right_hash(server: Server,
                                                                     tmp_path: Path) -> None:
    rng = random.Random(256)
    size = 256 << 20
    src = tmp_path / "big.bin"
    with open(src, "wb") as f:
        for _ in range(size >> 24):
            f.write(rng.randbytes(16 << 20))
    want = blake3.blake3(src.read_bytes(), max_threads=blake3.blake3.AUTO).hexdigest()
    state = tmp_path / "upload.url"
    # three crashes at random points (each client dies after sending some bytes, mid-request)
    kills = sorted(rng.sample(range(8 << 20, size // 3), 3))
    offsets = []
    for i, die in enumerate(kills):
        r = _client(server, "writer" if i == 0 else "admin", src, "up/big.bin", state,
                    "--die-after", str(die - (offsets[-1] if offsets else 0)))
        assert r.returncode == -9, r.stderr
        with server.client("admin") as c:
            head = c.head(state.read_text(), headers=TUS)
            assert head.status_code == 200
            offsets.append(int(head.headers["upload-offset"]))
    assert offsets == sorted(offsets) and offsets[-1] > 0
    r = _client(server, "admin", src, "up/big.bin", state)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == want
    with server.client("reader") as c:
        st = c.get("/v1/stat/up/big.bin").json()
        assert st["hash"] == want and st["size"] == size
        got = blake3.blake3()
        with c.stream("GET", "/v1/names/up/big.bin") as body:
            for piece in body.iter_bytes():
                got.update(piece)
        assert got.hexdigest() == want
    assert _files(server) == 1  # the upload's parts are gone; only the file remains
    before = _packs_bytes(server.cli.home)
    assert before < size * 1.01
    r = _client(server, "writer", src, "up/again.bin", tmp_path / "again.url",
                "--patch", str(40 << 20))
    assert r.returncode == 0 and r.stdout.strip() == want, r.stderr
    added = _packs_bytes(server.cli.home) - before
    assert added < size // 100, added
    assert _files(server) == 1
    assert not list((server.cli.home / "http-uploads").glob("*.tail"))


def test_unfinished_uploads_expire_and_terminate(node, tmp_path: Path) -> None:  # noqa: ANN001
    from .conftest import add_token
    token = add_token(node, "w", "write")
    s = start_server(node, "--http-upload-expiry", "2")
    s.tokens["w"] = token
    try:
        data = random.Random(5).randbytes(3 << 20)
        with s.client("w") as c:
            locs = []
            for name in ("a.bin", "b.bin"):
                r = c.post("/v1/uploads/", headers={**TUS, "Upload-Length": str(len(data)),
                                                    "Upload-Metadata": "name " + _b64(name),
                                                    "Content-Type": "application/offset+octet-stream"},
                           content=data[:2 << 20])
                assert r.status_code == 201 and int(r.headers["upload-offset"]) == 2 << 20
                assert r.headers["upload-expires"]
                locs.append(r.headers["location"])
            files = c.get("/v1/status").json()["node"]["files"]
            assert files >= 1  # the stored parts
            assert c.delete(locs[0], headers=TUS).status_code == 204
            assert c.head(locs[0], headers=TUS).status_code == 404
            deadline = time.monotonic() + 20
            while c.head(locs[1], headers=TUS).status_code != 404 \
                    or list((node.home / "http-uploads").iterdir()):
                assert time.monotonic() < deadline, "the upload did not expire"
                time.sleep(0.3)
            assert c.get("/v1/status").json()["node"]["files"] == 0
    finally:
        s.stop()
    # the parts lost their references: gc (with the daemon stopped) takes their packs away
    before = _packs_bytes(node.home)
    assert before > 1 << 20
    node.ok("gc")
    assert _packs_bytes(node.home) < before // 10


def _b64(s: str) -> str:
    import base64
    return base64.b64encode(s.encode()).decode()


def test_an_upload_survives_a_daemon_restart(node, tmp_path: Path) -> None:  # noqa: ANN001
    from .conftest import add_token
    token = add_token(node, "w", "write")
    data = random.Random(9).randbytes(5 << 20)
    s = start_server(node)
    s.tokens["w"] = token
    try:
        with s.client("w") as c:
            r = c.post("/v1/uploads/", headers={**TUS, "Upload-Length": str(len(data)),
                                                "Upload-Metadata": "name " + _b64("r/x.bin"),
                                                "Content-Type": "application/offset+octet-stream"},
                       content=data[:3 << 20])
            loc = r.headers["location"]
            assert int(r.headers["upload-offset"]) == 3 << 20
    finally:
        s.stop()
    s = start_server(node)
    s.tokens["w"] = token
    try:
        with s.client("w") as c:
            assert int(c.head(loc, headers=TUS).headers["upload-offset"]) == 3 << 20
            r = c.patch(loc, content=data[3 << 20:], headers={
                **TUS, "Upload-Offset": str(3 << 20),
                "Content-Type": "application/offset+octet-stream"})
            assert r.status_code == 204
            assert r.headers["mosaic-hash"] == blake3.blake3(data).hexdigest()
            assert c.get("/v1/names/r/x.bin").content == data
    finally:
        s.stop()
