"""The one atomic-write helper (store/atomic.py) and the files written through it."""

from __future__ import annotations

import json
import os
import stat
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mosaic.node.store import atomic, keys
from mosaic.node.store.atomic import TEMP_MARK, TempFile, atomic_write, create_new
from mosaic.node.store.home import Config, Home
from mosaic.node.store.outfile import write_atomically, write_parts


def _temps(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if TEMP_MARK in p.name or ".tmp" in p.name)


@pytest.fixture
def umask() -> Iterator[Callable[[int], None]]:
    old = os.umask(0o022)
    yield os.umask
    os.umask(old)


@pytest.fixture
def fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The folders atomic.py fsyncs, in order."""
    seen: list[str] = []
    real = atomic.fsync_dir

    def spy(path: str | os.PathLike[str]) -> None:
        seen.append(os.fspath(path))
        real(path)

    monkeypatch.setattr(atomic, "fsync_dir", spy)
    return seen


# ---- symlinks, FIFOs and planted temp files ----------------------------------------------

def test_a_symlink_at_a_predictable_temp_name_is_not_followed(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    dest = tmp_path / "config.toml"
    pid = os.getpid()
    for old_name in (f".{dest.name}.tmp-{pid}", f".{dest.name}.mosaic-{pid}", f".{dest.name}.tmp"):
        (tmp_path / old_name).symlink_to(victim)  # where the old helpers put their temp files
    atomic_write(dest, b"new content", mode=0o600)
    assert dest.read_bytes() == b"new content" and victim.read_bytes() == b"precious"
    assert not dest.is_symlink()


def test_a_planted_temp_file_is_refused_not_followed(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    monkeypatch.setattr(atomic, "_temp_suffix", lambda: "0" * 16)  # predictable now
    planted = tmp_path / f".key.json{TEMP_MARK}{'0' * 16}"
    planted.symlink_to(victim)
    with pytest.raises(FileExistsError):
        atomic_write(tmp_path / "key.json", b"secret", mode=0o600)
    assert victim.read_bytes() == b"precious" and planted.is_symlink()
    assert not (tmp_path / "key.json").exists()
    planted.unlink()
    planted.symlink_to(tmp_path / "does-not-exist-yet")  # a dangling link is not followed either
    with pytest.raises(FileExistsError):
        atomic_write(tmp_path / "key.json", b"secret", mode=0o600)
    assert not (tmp_path / "does-not-exist-yet").exists()


def test_a_link_planted_at_the_next_temp_name_is_stepped_around(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    seen = atomic._temp_suffix()  # the names are guessable by someone who saw one
    nxt = (int(seen, 16) + 1) & 0xFFFF | int(seen, 16) & ~0xFFFF
    planted = tmp_path / f".key.json{TEMP_MARK}{nxt:016x}"
    planted.symlink_to(victim)
    atomic_write(tmp_path / "key.json", b"secret", mode=0o600)  # a new random prefix is drawn
    assert (tmp_path / "key.json").read_bytes() == b"secret"
    assert victim.read_bytes() == b"precious" and planted.is_symlink()
    assert atomic._temp_suffix()[:12] != seen[:12]


def test_a_symlink_destination_is_replaced_not_written_through(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    for write in (lambda d: atomic_write(d, b"mine"),
                  lambda d: write_atomically(d, iter([b"mine"])),
                  lambda d: write_parts(str(d), [b"mi", b"ne"]),
                  lambda d: keys.write_key_file(d, {"k": 1})):
        dest = tmp_path / "link"
        dest.symlink_to(victim)
        write(dest)
        assert not dest.is_symlink() and dest.read_bytes().startswith((b"mine", b"{"))
        assert victim.read_bytes() == b"precious"
        dest.unlink()


def test_a_fifo_destination_is_never_opened(tmp_path: Path) -> None:
    dest = tmp_path / "fifo"
    os.mkfifo(dest)
    done = threading.Event()

    def write() -> None:  # opening a FIFO for writing would block here forever
        atomic_write(dest, b"data")
        done.set()

    t = threading.Thread(target=write, daemon=True)
    t.start()
    t.join(10)
    if not done.is_set():  # unblock the thread before failing
        with open(dest, "rb"):
            pass
        pytest.fail("atomic_write opened the FIFO at its destination")
    assert stat.S_ISREG(dest.lstat().st_mode) and dest.read_bytes() == b"data"


# ---- modes -------------------------------------------------------------------------------

def test_key_material_is_0600_from_creation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            umask: Callable[[int], None]) -> None:
    """The temp file already has its final mode when the first byte is written."""
    umask(0)  # a umask cannot be what keeps the file private
    modes: list[int] = []
    real = atomic.write_fully

    def spy(fd: int, data: bytes) -> int:
        modes.append(stat.S_IMODE(os.fstat(fd).st_mode))
        return real(fd, data)

    monkeypatch.setattr(atomic, "write_fully", spy)
    keys.write_key_file(tmp_path / "key.json", {"master": "x"})
    from mosaic.node.cloud.credentials import save_secrets
    save_secrets(Home(tmp_path), keys.derive_keys(bytes(32)), {"b": {"s": "t"}})
    Home(tmp_path).write_config(Config(1024, 4096, 16384))
    assert modes and set(modes) == {0o600}
    for name in ("key.json", "secrets.bin", "config.toml"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600, name
    assert json.loads((tmp_path / "key.json").read_text()) == {"master": "x"}


def test_a_temp_file_has_its_mode_before_anything_is_written(tmp_path: Path,
                                                             umask: Callable[[int], None]) -> None:
    umask(0)
    with TempFile.beside(tmp_path / "f", 0o600) as t:
        assert stat.S_IMODE(os.stat(t.path).st_mode) == 0o600
        assert Path(t.path).parent == tmp_path and TEMP_MARK in Path(t.path).name
    assert _temps(tmp_path) == []
    umask(0o022)
    atomic_write(tmp_path / "g", b"x", mode=0o644)
    assert stat.S_IMODE((tmp_path / "g").stat().st_mode) == 0o644


def test_create_new_sets_the_exact_mode_and_never_replaces(tmp_path: Path,
                                                           umask: Callable[[int], None]) -> None:
    umask(0o077)
    assert create_new(tmp_path / "cert", b"one", 0o644) is True
    assert stat.S_IMODE((tmp_path / "cert").stat().st_mode) == 0o644  # whatever the umask
    assert create_new(tmp_path / "cert", b"two", 0o644) is False
    assert (tmp_path / "cert").read_bytes() == b"one"
    (tmp_path / "link").symlink_to(tmp_path / "nowhere")
    assert create_new(tmp_path / "link", b"x", 0o600) is False  # not followed
    assert not (tmp_path / "nowhere").exists()
    assert _temps(tmp_path) == []


# ---- failures ----------------------------------------------------------------------------

def test_a_failure_mid_write_leaves_the_old_file_and_no_temp(tmp_path: Path) -> None:
    dest = tmp_path / "config.toml"
    dest.write_bytes(b"old")

    def parts() -> Iterator[bytes]:
        yield b"half of the new"
        raise RuntimeError("source failed")

    with pytest.raises(RuntimeError, match="source failed"):
        atomic_write(dest, parts())
    assert dest.read_bytes() == b"old" and _temps(tmp_path) == []


@pytest.mark.parametrize("where", ["write", "fsync", "rename"])
def test_an_os_error_leaves_the_old_file_and_no_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     where: str) -> None:
    dest = tmp_path / "key.json"
    keys.write_key_file(dest, {"old": True})

    def fail(*a: object, **k: object) -> None:
        raise OSError(28, "No space left on device")

    owner, attr = {"write": (atomic, "write_fully"), "fsync": (atomic.os, "fsync"),
                   "rename": (atomic.os, "rename")}[where]
    monkeypatch.setattr(owner, attr, fail)
    with pytest.raises(OSError, match="No space left"):
        keys.write_key_file(dest, {"new": True})
    monkeypatch.undo()
    assert json.loads(dest.read_text()) == {"old": True} and _temps(tmp_path) == []


def test_a_folder_in_the_way_leaves_no_temp(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    with pytest.raises(IsADirectoryError):
        atomic_write(tmp_path / "d", b"x")
    assert _temps(tmp_path) == [] and list((tmp_path / "d").iterdir()) == []


# ---- durability and names ----------------------------------------------------------------

def test_the_folder_is_fsynced_after_the_rename(tmp_path: Path, fsyncs: list[str]) -> None:
    keys.write_key_file(tmp_path / "key.json", {})  # the old write_key_file skipped this
    atomic_write(tmp_path / "sub.json", b"{}")
    assert fsyncs == [str(tmp_path), str(tmp_path)]
    fsyncs.clear()
    write_atomically(tmp_path / "restored", iter([b"x"]))  # restored files: atomic, not fsynced
    assert fsyncs == []


def test_a_long_destination_name_still_gets_a_temp_file(tmp_path: Path) -> None:
    dest = tmp_path / ("n" * 255)
    atomic_write(dest, b"long")
    write_atomically(dest, iter([b"longer"]))
    assert dest.read_bytes() == b"longer" and _temps(tmp_path) == []


def test_temp_names_are_unpredictable(tmp_path: Path) -> None:
    names = set()
    for _ in range(20):
        with TempFile.beside(tmp_path / "f") as t:
            names.add(Path(t.path).name)
    assert len(names) == 20


def test_pack_temp_files_are_private(tmp_path: Path, umask: Callable[[int], None]) -> None:
    from mosaic.node.store.packs import PackWriter
    umask(0)
    home = Home(tmp_path / "home")
    home.create_dirs()
    w = PackWriter(home, bytes(32))
    try:
        (tmp,) = list(home.tmp_dir.iterdir())
        assert stat.S_IMODE(tmp.stat().st_mode) == 0o600
    finally:
        w.abort()
    assert list(home.tmp_dir.iterdir()) == []


def test_an_exclusive_key_file_never_replaces_anything(tmp_path: Path) -> None:
    dest = tmp_path / "exported.json"
    keys.write_key_file(dest, {"a": 1}, exclusive=True)
    assert stat.S_IMODE(dest.stat().st_mode) == 0o600
    with pytest.raises(FileExistsError):
        keys.write_key_file(dest, {"b": 2}, exclusive=True)
    assert json.loads(dest.read_text()) == {"a": 1}
    link = tmp_path / "link.json"
    link.symlink_to(tmp_path / "elsewhere.json")
    with pytest.raises(FileExistsError):
        keys.write_key_file(link, {"b": 2}, exclusive=True)
    assert not (tmp_path / "elsewhere.json").exists() and _temps(tmp_path) == []
