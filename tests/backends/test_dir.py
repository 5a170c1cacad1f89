"""DirBackend specifics: failed writes, error mapping, object/folder clashes."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

import mosaic.backends.dir as dirmod
from mosaic.backends import NotFound, PermanentError, QuotaExceeded, TransientError
from mosaic.backends.dir import DirBackend, RootMissing


def raw_files(root: Path) -> list[str]:
    return sorted(
        str((Path(d) / f).relative_to(root)) for d, _, fs in os.walk(root) for f in fs
    )


def break_writes_after(monkeypatch: pytest.MonkeyPatch, n: int, err: int) -> None:
    """Make the backend's writes put `n` bytes on disk, then fail with `err`."""
    real = dirmod._write_all

    def broken(fd: int, data: memoryview) -> None:
        real(fd, data[:n])
        raise OSError(err, os.strerror(err))

    monkeypatch.setattr(dirmod, "_write_all", broken)


@pytest.mark.parametrize(
    ("err", "exc"),
    [(errno.EIO, TransientError), (errno.ENOSPC, QuotaExceeded),
     (errno.EDQUOT, QuotaExceeded), (errno.EROFS, PermanentError)],
)
async def test_failed_write_leaves_old_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, err: int, exc: type[Exception]
) -> None:
    b = DirBackend("d", tmp_path)
    await b.put("p/old", b"old value")
    break_writes_after(monkeypatch, 1000, err)
    with pytest.raises(exc) as info:
        await b.put("p/old", b"n" * 5000)
    assert "p/old" in str(info.value)
    with pytest.raises(exc):
        await b.put("p/new", b"n" * 5000)
    monkeypatch.undo()
    assert await b.get("p/old") == b"old value"
    with pytest.raises(NotFound):
        await b.get("p/new")
    assert raw_files(tmp_path) == ["p/old"]  # no temp file left behind


async def test_object_and_folder_cannot_share_a_name(tmp_path: Path) -> None:
    b = DirBackend("d", tmp_path)
    await b.put("a", b"file")
    with pytest.raises(PermanentError):
        await b.put("a/b", b"below a file")
    await b.put("x/y", b"1")
    with pytest.raises(PermanentError):
        await b.put("x", b"over a folder")
    assert [o.name for o in await b.list()] == ["a", "x/y"]
    with pytest.raises(NotFound):
        await b.get("a/b")


async def test_missing_root_is_unreachable_until_created(tmp_path: Path) -> None:
    """A missing root (an unmounted NAS) is never "empty" nor "not found", and a put does
    not make it on the local disk: only `create_root` (`backend add`) creates it."""
    root = tmp_path / "not" / "yet"
    b = DirBackend("d", root, fsync=False)
    for call in (b.list(), b.usage(), b.get("packs/ab/cd"), b.stat("packs/ab/cd"),
                 b.delete("packs/ab/cd"), b.sweep_temp(0), b.put("packs/ab/cd", b"x")):
        with pytest.raises(RootMissing) as info:
            await call
        assert isinstance(info.value, TransientError) and "not mounted?" in str(info.value)
    assert not (tmp_path / "not").exists()
    await b.create_root()
    await b.create_root()  # twice is fine
    assert await b.list() == []
    await b.put("packs/ab/cd", b"x")  # folders below the root are made as needed
    assert raw_files(root) == ["packs/ab/cd"]
    root.rename(tmp_path / "away")  # unmounted: the folder it knew is gone too
    with pytest.raises(RootMissing):
        await b.put("packs/ab/ef", b"y")
    with pytest.raises(RootMissing):
        await b.get("packs/ab/cd")
    assert not root.exists()


async def test_foreign_files_are_ignored(tmp_path: Path) -> None:
    b = DirBackend("d", tmp_path)
    await b.put("ok", b"1")
    (tmp_path / "UPPER").write_bytes(b"2")
    (tmp_path / "with space").write_bytes(b"3")
    (tmp_path / ".tmp-abc").write_bytes(b"4")
    assert [o.name for o in await b.list()] == ["ok"]
    assert (await b.usage()).used == 1


async def test_file_mode_is_private(tmp_path: Path) -> None:
    b = DirBackend("d", tmp_path)
    await b.put("secret", b"1")
    assert (tmp_path / "secret").stat().st_mode & 0o077 == 0


async def test_quota_is_enforced_and_reported(tmp_path: Path) -> None:
    (tmp_path / "pre").write_bytes(b"p" * 100)  # already on disk before we start
    b = DirBackend("d", tmp_path, quota=1000)
    await b.put("a", b"a" * 600)
    with pytest.raises(QuotaExceeded, match="quota"):
        await b.put("b", b"b" * 301)
    with pytest.raises(NotFound):
        await b.stat("b")
    await b.put("b", b"b" * 300)  # exactly full
    await b.put("a", b"a" * 500)  # shrinking an object frees room
    await b.put("c", b"c" * 100)
    await b.delete("a")
    await b.put("d", b"d" * 500)
    u = await b.usage()
    assert (u.used, u.objects, u.quota) == (1000, 4, 1000)
    assert raw_files(tmp_path) == ["b", "c", "d", "pre"]
