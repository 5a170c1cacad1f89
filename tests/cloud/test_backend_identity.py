"""Backend identity: `backend add` leaves a marker on the backend, every use checks it.

The failure this guards against: a dir backend on a NAS that is not mounted. Its folder
used to be made again on the local disk, uploads "succeeded" there, `cache trim` evicted
the local copies, and after the remount those packs were hidden. Here the CLI runs in
process (`mosaic.node.cli.main.main`), on real folders.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import pytest
import trio

from mosaic import Node
from mosaic.backends.dir import DirBackend
from mosaic.backends.errors import NotFound, TransientError
from mosaic.node.cloud.hub import BackendHub
from mosaic.node.cloud.markers import (
    MARKER_NAME,
    BackendUnreachable,
    IdentityChecked,
    claim_backend,
)
from mosaic.node.store.home import BackendConfig
from tests.cloud.conftest import SMALL, Run


def _ok(run: Run, home: Path, *args: object) -> str:
    rc, out, err = run(home, *args)
    assert rc == 0, (args, rc, out, err)
    return out


def _doc(run: Run, home: Path, *args: object) -> object:
    return json.loads(_ok(run, home, "--json", *args))


def _marker(folder: Path) -> dict:
    return json.loads((folder / MARKER_NAME).read_text())


def _backend_options(home: Path, name: str) -> dict:
    n = Node.open(home)
    try:
        return next(dict(b.options) for b in n.config.backends if b.name == name)
    finally:
        n.close()


def _repairs_and_uploads(home: Path) -> tuple[list, list]:
    n = Node.open(home)
    try:
        with n.index.read() as txn:
            return list(n.index.iter_repairs(txn)), list(n.index.iter_uploads(txn))
    finally:
        n.close()


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def _write(tmp_path: Path, name: str, size: int) -> bytes:
    data = os.urandom(size)
    (tmp_path / name).write_bytes(data)
    return data


def test_an_unmounted_dir_backend_is_unreachable_not_empty(
        run: Run, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    home, nas, away = tmp_path / "home", tmp_path / "nas", tmp_path / "nas-away"
    _ok(run, home, "init", "--no-passphrase", *SMALL)
    add = _doc(run, home, "backend", "add", "dir", "nas", nas)
    assert add["backend_id"] == _marker(nas)["backend_id"] and not add["adopted"]
    assert _backend_options(home, "nas")["backend_id"] == add["backend_id"]
    data = {"f1": _write(tmp_path, "f1", 300_000)}
    _ok(run, home, "put", "f1")
    _ok(run, home, "cache", "trim", "--to", "0")  # f1 now lives on the NAS only
    data["f2"] = _write(tmp_path, "f2", 200_000)
    _ok(run, home, "put", "f2")                    # uploaded, and still local
    local_before = _doc(run, home, "cache")["local_packs"]
    assert local_before > 0

    nas.rename(away)                               # the NAS is not mounted
    data["f3"] = _write(tmp_path, "f3", 200_000)
    rc, _, err = run(home, "put", "f3")
    assert rc == 8, err                            # done locally, backend pending
    assert "not mounted?" in err
    assert not nas.exists()                        # its folder was not made on the local disk
    pending = _doc(run, home, "status")["pending"]
    assert pending["nas"]["packs"] > 0             # the new pack stays queued
    after = _doc(run, home, "cache", "trim", "--to", "0")
    assert after["local_packs"] == local_before + pending["nas"]["packs"]  # nothing evicted
    caplog.clear()
    rc, _, err = run(home, "get", "f1", "out1")
    assert rc == 5, err                            # unreachable (exit 5), not wrong data
    assert not (tmp_path / "out1").exists()
    assert "backend nas is unreachable" in caplog.text and "not mounted?" in caplog.text
    repairs, _ = _repairs_and_uploads(home)
    assert repairs == []                           # no copy was taken for lost
    assert not nas.exists()

    away.rename(nas)                               # mounted again
    _ok(run, home, "upload")
    repairs, uploads = _repairs_and_uploads(home)
    assert repairs == [] and uploads == []
    _ok(run, home, "cache", "trim", "--to", "0")
    assert _doc(run, home, "cache")["local_packs"] == 0
    for name, want in data.items():
        _ok(run, home, "get", name, f"{name}.back")
        assert (tmp_path / f"{name}.back").read_bytes() == want
    _ok(run, home, "check")


def test_an_empty_mount_point_is_not_the_backend(run: Run, tmp_path: Path) -> None:
    """The folder is there but empty (the mount point of an unmounted share): no marker,
    so nothing is written into it."""
    home, nas, away = tmp_path / "home", tmp_path / "nas", tmp_path / "nas-away"
    _ok(run, home, "init", "--no-passphrase", *SMALL)
    _ok(run, home, "backend", "add", "dir", "nas", nas)
    nas.rename(away)
    nas.mkdir()
    _write(tmp_path, "f1", 100_000)
    rc, _, err = run(home, "put", "f1")
    assert rc == 8 and f"{MARKER_NAME} is missing" in err, err
    assert _files(nas) == []
    _, uploads = _repairs_and_uploads(home)
    assert uploads


def test_another_backends_folder_is_unreachable(
        run: Run, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The wrong share mounted at the backend's path: its marker names another backend, so
    nas is unreachable (nothing written there, no copy taken for lost) while the other
    copy still serves reads."""
    home, nas, spare = tmp_path / "home", tmp_path / "nas", tmp_path / "spare"
    _ok(run, home, "init", "--no-passphrase", *SMALL)
    _ok(run, home, "backend", "add", "dir", "nas", nas)
    _ok(run, home, "backend", "add", "dir", "spare", spare)
    assert _marker(nas)["backend_id"] != _marker(spare)["backend_id"]
    f1 = _write(tmp_path, "f1", 200_000)
    _ok(run, home, "put", "f1")                    # two backends: a copy on each
    _ok(run, home, "cache", "trim", "--to", "0")
    nas.rename(tmp_path / "nas-away")
    shutil.copytree(spare, nas)                    # spare's disk, mounted where nas was
    before = _files(nas)
    caplog.clear()
    _ok(run, home, "get", "f1", "out1")            # read from spare
    assert (tmp_path / "out1").read_bytes() == f1
    assert "names backend" in caplog.text
    _write(tmp_path, "f2", 100_000)
    rc, _, err = run(home, "put", "f2")
    assert rc == 8 and "unreachable" in err, err
    assert _files(nas) == before
    repairs, uploads = _repairs_and_uploads(home)
    assert repairs == [] and {b for _, b in uploads} == {"nas"}


def test_a_second_node_adopts_the_id_and_another_key_is_refused(run: Run, tmp_path: Path) -> None:
    a, b, c, shared = tmp_path / "a", tmp_path / "b", tmp_path / "c", tmp_path / "shared"
    _ok(run, a, "init", "--no-passphrase", *SMALL)
    first = _doc(run, a, "backend", "add", "dir", "nas", shared)
    marker = (shared / MARKER_NAME).read_bytes()
    _ok(run, a, "key", "export", "-o", tmp_path / "a.key")
    _ok(run, b, "init", "--no-passphrase", "--key-file", tmp_path / "a.key")
    second = _doc(run, b, "backend", "add", "dir", "nas", shared)
    assert second["adopted"] and second["backend_id"] == first["backend_id"]
    assert _backend_options(b, "nas")["backend_id"] == first["backend_id"]
    assert (shared / MARKER_NAME).read_bytes() == marker  # not rewritten

    _ok(run, c, "init", "--no-passphrase", *SMALL)       # another key
    rc, out, err = run(c, "backend", "add", "dir", "nas", shared)
    assert rc == 2, (out, err)
    lines = err.splitlines()
    assert len(lines) == 1 and "belongs to another key" in lines[0], err
    assert (shared / MARKER_NAME).read_bytes() == marker
    n = Node.open(c)
    try:
        assert n.config.backends == ()
    finally:
        n.close()


async def test_the_marker_is_read_first_then_at_most_every_interval(tmp_path: Path) -> None:
    now = [0.0]
    inner = DirBackend("nas", tmp_path, fsync=False)
    bid, adopted = await claim_backend(inner, "k1")
    assert not adopted
    b = IdentityChecked(inner, bid, recheck=60.0, clock=lambda: now[0])
    assert b.checks == 0
    await b.put("packs/ab/cd", b"x")
    assert await b.get("packs/ab/cd") == b"x"
    with pytest.raises(NotFound):                  # a missing object is still NotFound
        await b.stat("packs/ab/ef")
    assert b.checks == 1
    (tmp_path / MARKER_NAME).rename(tmp_path / "marker-away")
    now[0] = 59.0
    assert [o.name for o in await b.list("packs/")] == ["packs/ab/cd"]
    assert b.checks == 1                           # cheap: no read within the interval
    now[0] = 61.0
    for call in (b.list("packs/"), b.get("packs/ab/cd"), b.stat("packs/ab/ef"),
                 b.put("packs/ab/ef", b"y"), b.delete("packs/ab/cd"), b.usage()):
        with pytest.raises(BackendUnreachable) as info:
            await call
        assert isinstance(info.value, TransientError) and not isinstance(info.value, NotFound)
        assert "backend nas is unreachable" in str(info.value)
    assert b.checks == 2                           # failures are re-asked after a pause
    assert not (tmp_path / "packs/ab/ef").exists() and (tmp_path / "packs/ab/cd").exists()
    (tmp_path / "marker-away").rename(tmp_path / MARKER_NAME)
    now[0] = 63.0
    assert await b.get("packs/ab/cd") == b"x"
    assert b.checks == 3 and b.reachable


async def test_concurrent_first_operations_share_one_marker_read(tmp_path: Path) -> None:
    inner = DirBackend("nas", tmp_path, fsync=False)
    bid, _ = await claim_backend(inner, "k1")
    b = IdentityChecked(inner, bid)
    async with trio.open_nursery() as n:
        for i in range(8):
            n.start_soon(b.put, f"packs/aa/{i}", b"x")
    assert b.checks == 1


def test_backends_without_an_id_stay_unchecked(tmp_path: Path) -> None:
    """Configured before identity markers: no backend_id, no marker, used as before."""
    (tmp_path / "old").mkdir()
    hub = BackendHub((BackendConfig("old", "dir", {"path": str(tmp_path / "old")}),), {})
    try:
        assert not isinstance(hub.backends["old"], IdentityChecked)
        hub.run(hub.backends["old"].put, "packs/ab/cd", b"x")
        assert hub.run(hub.backends["old"].get, "packs/ab/cd") == b"x"
    finally:
        hub.close()
    assert not (tmp_path / "old" / MARKER_NAME).exists()


def test_the_hub_checks_backends_with_an_id(tmp_path: Path,
                                            caplog: pytest.LogCaptureFixture) -> None:
    nas = tmp_path / "nas"
    nas.mkdir()
    cfg = BackendConfig("nas", "dir", {"path": str(nas), "backend_id": "0" * 32})
    hub = BackendHub((cfg,), {})
    try:
        with caplog.at_level(logging.WARNING), pytest.raises(BackendUnreachable) as info:
            hub.run(hub.backends["nas"].list, "packs/")
        assert "is missing (not mounted?" in str(info.value)
        assert "backend nas is unreachable" in caplog.text
    finally:
        hub.close()
    assert _files(nas) == []
