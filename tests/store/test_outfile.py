"""Restored files are written whole or not at all: temp file beside the target, then rename."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from mosaic.node.errors import UsageError
from mosaic.node.store.outfile import (
    IOV_MAX,
    make_folders,
    write_all,
    write_atomically,
    write_parts,
)


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_write_atomically_from_chunks(tmp_path: Path) -> None:
    dest = tmp_path / "new" / "deeper" / "file.bin"  # parent folders are created
    seen: list[int] = []
    n = write_atomically(dest, iter([b"abc", b"", b"defg"]), seen.append)
    assert n == 7 and dest.read_bytes() == b"abcdefg" and seen == [3, 0, 4]
    assert _leftovers(dest.parent) == []


def test_write_atomically_with_a_filler(tmp_path: Path) -> None:
    dest = tmp_path / "f"

    def fill(fd: int) -> int:
        return os.write(fd, b"filled")

    assert write_atomically(dest, fill) == 6 and dest.read_bytes() == b"filled"


def test_a_failed_write_leaves_the_old_file_and_no_temp(tmp_path: Path) -> None:
    dest = tmp_path / "keep.txt"
    dest.write_bytes(b"old content")

    def broken() -> Iterator[bytes]:
        yield b"half of the new"
        raise RuntimeError("source failed")

    with pytest.raises(RuntimeError, match="source failed"):
        write_atomically(dest, broken())
    assert dest.read_bytes() == b"old content"
    assert _leftovers(tmp_path) == []


def test_replacing_an_existing_file(tmp_path: Path) -> None:
    dest = tmp_path / "f"
    dest.write_bytes(b"old, longer content")
    write_atomically(dest, iter([b"new"]))
    assert dest.read_bytes() == b"new" and _leftovers(tmp_path) == []


def test_a_folder_in_the_way(tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()
    with pytest.raises(UsageError, match="is a directory"):
        write_atomically(tmp_path / "dir", iter([b"x"]))
    with pytest.raises(UsageError, match="is a directory"):
        write_parts(str(tmp_path / "dir"), [b"x"])  # the rename onto a folder fails
    assert _leftovers(tmp_path) == [] and list((tmp_path / "dir").iterdir()) == []


def test_write_parts_and_write_all(tmp_path: Path) -> None:
    parts = [bytes([i % 256]) * (i % 7) for i in range(IOV_MAX * 2 + 5)]  # more than one writev
    assert write_parts(str(tmp_path / "p"), parts) == sum(map(len, parts))
    assert (tmp_path / "p").read_bytes() == b"".join(parts)
    fd = os.open(tmp_path / "q", os.O_WRONLY | os.O_CREAT)
    try:
        assert write_all(fd, [b"12", b"345"]) == 5
        assert write_all(fd, []) == 0
    finally:
        os.close(fd)
    assert (tmp_path / "q").read_bytes() == b"12345"


def test_make_folders(tmp_path: Path) -> None:
    make_folders({tmp_path / "a" / "b", tmp_path / "a", tmp_path / "c"})
    assert (tmp_path / "a" / "b").is_dir() and (tmp_path / "c").is_dir()
    (tmp_path / "file").write_text("x")
    with pytest.raises(UsageError, match="not a folder"):
        make_folders({tmp_path / "file"})
    with pytest.raises(UsageError, match="not a folder"):
        make_folders({tmp_path / "file" / "below"})


def test_make_folders_makes_what_is_missing_above_relative_folders(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    make_folders({"", ".", "r/s/t", "r/s", "u/v/w/x", str(tmp_path / "abs" / "q")})
    made = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_dir())
    assert made == ["abs", "abs/q", "r", "r/s", "r/s/t", "u", "u/v", "u/v/w", "u/v/w/x"]
