"""`mosaic mount` on a real FUSE mount: copies in and out, EIO on corruption, reads that
fetch only the chunks they need, changes from elsewhere, renames, and clean unmounts."""

from __future__ import annotations

import errno
import filecmp
import os
import random
import shutil
import signal
import subprocess
import time
from pathlib import Path

import blake3
import pytest

from mosaic.node.cluster.engine import Engine
from tests.conftest import Cli, assert_one_line_error

from .conftest import wait_until


def _tree(root: Path) -> dict[str, bytes]:
    """A tree of mixed files: empty, small, text, a multi-MiB one, nested folders."""
    rnd = random.Random(13)
    files = {
        "empty.txt": b"",
        "a/hello.txt": b"hello mount\n",
        "a/b/c/deep.txt": b"deep " * 1000,
        "a/b/big.bin": rnd.randbytes(3 << 20),
        "a/b/same-as-big.bin": b"",  # filled below: dedup of a whole file
        "x y/\u00e9t\u00e9.md": "caf\u00e9 na\u00efve\n".encode(),
        "a/zeros.bin": bytes(200_000),
    }
    files["a/b/same-as-big.bin"] = files["a/b/big.bin"]
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    (root / "a" / "empty-folder").mkdir()
    return files


def _names(cli: Cli) -> dict[str, str]:
    return {e["name"]: e["hash"] for e in cli.doc("ls")}


def _same_tree(a: Path, b: Path) -> None:
    cmp = filecmp.dircmp(a, b)
    assert not cmp.left_only and not cmp.right_only and not cmp.diff_files, cmp.report()
    assert not cmp.funny_files
    _, mismatch, errors = filecmp.cmpfiles(a, b, cmp.common_files, shallow=False)
    assert not mismatch and not errors
    for d in cmp.common_dirs:
        _same_tree(a / d, b / d)


def test_cp_r_in_and_out(node_cli: Cli, mounter, tmp_path: Path) -> None:
    src = tmp_path / "src"
    files = _tree(src)
    m = mounter(node_cli)
    subprocess.run(["cp", "-r", str(src), str(m.path / "in")], check=True)
    names = _names(node_cli)
    for rel, data in files.items():
        assert names[f"in/{rel}"] == blake3.blake3(data).hexdigest(), rel
    assert len(names) == len(files)
    assert (m.path / "in" / "a" / "empty-folder").is_dir()
    out = tmp_path / "out"
    subprocess.run(["cp", "-r", str(m.path / "in"), str(out)], check=True)
    _same_tree(src, out)
    st = (m.path / "in" / "a" / "b" / "big.bin").stat()
    assert st.st_size == 3 << 20
    by_hash = m.path / ".by-hash" / names["in/a/b/big.bin"]
    assert by_hash.read_bytes() == files["a/b/big.bin"]
    assert ".by-hash" not in os.listdir(m.path)  # found by lookup, never listed
    assert m.stop() == 0
    assert not os.path.ismount(m.path)
    assert not any((node_cli.home / "tmp" / "mount").iterdir())  # no staged file left


def test_corrupt_chunk_reads_eio(node_cli: Cli, mounter, tmp_path: Path) -> None:
    data = random.Random(5).randbytes(100_000)
    (tmp_path / "f.bin").write_bytes(data)
    node_cli.ok("put", tmp_path / "f.bin", "--name", "f.bin")
    packs = [p for p in (node_cli.home / "packs").rglob("*") if p.is_file()]
    assert len(packs) == 1
    raw = bytearray(packs[0].read_bytes())
    raw[len(raw) // 3] ^= 0x40  # inside some chunk's ciphertext
    packs[0].write_bytes(bytes(raw))
    m = mounter(node_cli)
    with pytest.raises(OSError) as e:
        (m.path / "f.bin").read_bytes()
    assert e.value.errno == errno.EIO


def test_random_reads_fetch_only_needed_chunks(node_cli: Cli, mounter, tmp_path: Path) -> None:
    data = random.Random(7).randbytes(4 << 20)
    (tmp_path / "big.bin").write_bytes(data)
    node_cli.ok("put", tmp_path / "big.bin", "--name", "big.bin")
    with Engine.open_home(node_cli.home) as node:
        offs = node.resolve("big.bin").offsets()
    assert len(offs) > 200  # small test chunks: ~1000 of them
    m = mounter(node_cli)
    rnd = random.Random(11)
    reads = [rnd.randrange(0, (4 << 20) // 4096) * 4096 for _ in range(25)]
    needed = set()
    for off in reads:
        first = max(i for i, o in enumerate(offs) if o <= off)
        last = max(i for i, o in enumerate(offs) if o < off + 4096)
        needed.update(range(first, last + 1))
    before = m.stats()
    fd = os.open(m.path / "big.bin", os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)  # no kernel read-ahead
        for off in reads:
            assert os.pread(fd, 4096, off) == data[off:off + 4096]
    finally:
        os.close(fd)
    after = m.stats()
    decoded = after["chunks_decoded"] - before["chunks_decoded"]
    assert after["chunks_prefetched"] == before["chunks_prefetched"]  # random: no read-ahead
    assert decoded == len(needed), (decoded, len(needed), len(offs))
    # a sequential read does read ahead, and gives the same bytes
    assert (m.path / "big.bin").read_bytes() == data
    assert m.stats()["chunks_prefetched"] > 0
    if os.geteuid() == 0:  # root (as in CI) widens the kernel's read-ahead: 1 MiB requests
        other = data[::-1]  # not in the page cache yet, in part or whole
        (tmp_path / "other.bin").write_bytes(other)
        node_cli.ok("put", tmp_path / "other.bin", "--name", "other.bin")
        before = m.stats()
        assert (m.path / "other.bin").read_bytes() == other
        requests = m.stats()["reads"] - before["reads"] - 1  # 1: reading the stats file
        assert requests <= (4 << 20) // (512 << 10), requests  # 128 KiB requests: 32


def test_mtime_is_when_the_name_was_written(node_cli: Cli, mounter, tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"one content, two names\n")
    node_cli.ok("put", tmp_path / "f", "--name", "first.txt")
    time.sleep(1.1)
    between = time.time_ns()
    node_cli.ok("put", tmp_path / "f", "--name", "second.txt")  # deduplicated: same manifest
    m = mounter(node_cli)
    assert sorted(os.listdir(m.path)) == ["first.txt", "second.txt"]  # attributes from the listing
    first, second = (os.stat(m.path / n).st_mtime_ns for n in ("first.txt", "second.txt"))
    assert first < between <= second  # the name's write time, not the content's


def test_changes_from_the_cli_appear(node_cli: Cli, mounter, tmp_path: Path) -> None:
    (tmp_path / "v1").write_bytes(b"version one\n")
    (tmp_path / "v2").write_bytes(b"version two, longer\n")
    node_cli.ok("put", tmp_path / "v1", "--name", "doc.txt")
    node_cli.ok("put", tmp_path / "v1", "--name", "old/gone.txt")
    m = mounter(node_cli)
    doc, gone = m.path / "doc.txt", m.path / "old" / "gone.txt"
    assert doc.read_bytes() == b"version one\n" and gone.exists()
    node_cli.ok("put", tmp_path / "v2", "--name", "doc.txt")
    node_cli.ok("put", tmp_path / "v2", "--name", "new/fresh.txt")
    node_cli.ok("rm", "old/gone.txt")
    wait_until(lambda: doc.stat().st_size == 20, 5, "the new size of doc.txt")
    assert doc.read_bytes() == b"version two, longer\n"
    wait_until(lambda: not gone.exists(), 5, "old/gone.txt to go")
    assert (m.path / "new" / "fresh.txt").read_bytes() == b"version two, longer\n"
    assert "new" in os.listdir(m.path)


def test_rename_unlink_mkdir_rmdir(node_cli: Cli, mounter) -> None:
    m = mounter(node_cli)
    root = m.path
    (root / "d" / "e").mkdir(parents=True)
    (root / "d" / "e" / "f.txt").write_bytes(b"f")
    (root / "d" / "g.txt").write_bytes(b"g")
    os.rename(root / "d" / "g.txt", root / "d" / "e" / "g2.txt")
    os.rename(root / "d", root / "moved")
    assert set(_names(node_cli)) == {"moved/e/f.txt", "moved/e/g2.txt"}
    assert (root / "moved" / "e" / "g2.txt").read_bytes() == b"g"
    with pytest.raises(OSError) as e:
        os.rmdir(root / "moved" / "e")
    assert e.value.errno == errno.ENOTEMPTY
    os.unlink(root / "moved" / "e" / "f.txt")
    os.unlink(root / "moved" / "e" / "g2.txt")
    assert _names(node_cli) == {}
    assert os.listdir(root / "moved" / "e") == []  # the emptied folder stays, as on any disk
    os.rmdir(root / "moved" / "e")
    os.rmdir(root / "moved")
    assert os.listdir(root) == []
    with pytest.raises(OSError) as e:
        os.mkdir(root / ".by-hash")
    assert e.value.errno in (errno.EPERM, errno.EEXIST)


def test_open_reader_keeps_the_old_version(node_cli: Cli, mounter) -> None:
    m = mounter(node_cli)
    f = m.path / "v.txt"
    f.write_bytes(b"old " * 50_000)
    with open(f, "rb") as reader:
        assert reader.read(4) == b"old "
        f.write_bytes(b"new " * 60_000)  # replaced while the reader is open
        rest = reader.read()
    assert rest == b"old " * 49_999
    assert f.read_bytes() == b"new " * 60_000
    with open(f, "r+b") as w:  # an update in place: the stored bytes are loaded, then changed
        w.seek(4)
        w.write(b"NEW!")
        w.flush()
        os.fsync(w.fileno())
        assert _names(node_cli)["v.txt"] == blake3.blake3(
            b"new NEW!" + b"new " * 59_998).hexdigest()


def test_read_only_and_gc_busy(node_cli: Cli, mounter, tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"a")
    node_cli.ok("put", tmp_path / "a", "--name", "a")
    m = mounter(node_cli, "--read-only")
    assert (m.path / "a").read_bytes() == b"a"
    for op in (lambda: (m.path / "b").write_bytes(b"b"), lambda: os.mkdir(m.path / "c"),
               lambda: os.unlink(m.path / "a")):
        with pytest.raises(OSError) as e:
            op()
        assert e.value.errno == errno.EROFS
    assert_one_line_error(node_cli("gc"), 7)  # the mount holds the home lock, shared


def test_sigterm_and_fusermount_unmount(node_cli: Cli, mounter) -> None:
    m = mounter(node_cli)
    (m.path / "kept.txt").write_bytes(b"kept")
    assert m.stop(signal.SIGTERM) == 0
    assert not os.path.ismount(m.path)
    m2 = mounter(node_cli)
    assert (m2.path / "kept.txt").read_bytes() == b"kept"
    subprocess.run(["fusermount3", "-u", str(m2.path)], check=True)
    assert m2.proc.wait(timeout=20) == 0
    assert not os.path.ismount(m2.path)


def test_background_mount(node_cli: Cli, tmp_path: Path) -> None:
    mp = tmp_path / "bg"
    mp.mkdir()
    try:
        doc = node_cli.doc("mount", mp)
        assert os.path.ismount(mp) and doc["mountpoint"] == str(mp)
        (mp / "x").write_bytes(b"x")
        assert "x" in _names(node_cli)
        assert_one_line_error(node_cli("mount", mp), 2)  # already mounted
    finally:
        subprocess.run(["fusermount3", "-u", str(mp)], check=False, capture_output=True)
    wait_until(lambda: not os.path.ismount(mp), 10, "the unmount")


def test_bad_mountpoints(node_cli: Cli, tmp_path: Path) -> None:
    assert_one_line_error(node_cli("mount", tmp_path / "missing", "--foreground"), 1)
    (tmp_path / "file").write_bytes(b"")
    assert_one_line_error(node_cli("mount", tmp_path / "file", "--foreground"), 2)
    shutil.rmtree(node_cli.home)
    (tmp_path / "mp").mkdir()
    assert_one_line_error(node_cli("mount", tmp_path / "mp", "--foreground"), 6)


def test_sigterm_stores_a_file_still_open_for_writing(node_cli: Cli, mounter) -> None:
    m = mounter(node_cli)
    fd = os.open(m.path / "open.txt", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.write(fd, b"written, never closed")
        assert m.stop(signal.SIGTERM) == 0
        assert not os.path.ismount(m.path)
    finally:
        try:
            os.close(fd)
        except OSError:
            pass  # the file system it was on is gone
    assert _names(node_cli)["open.txt"] == blake3.blake3(b"written, never closed").hexdigest()
    assert not any((node_cli.home / "tmp" / "mount").iterdir())
