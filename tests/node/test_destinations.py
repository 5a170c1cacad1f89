"""Where `mosaic get` writes (issue "Nothing lost", item 7).

An existing destination that is not a regular file (a device, a FIFO, a symlink to a file) is
written into, as `cp` does, never replaced; `DIR/` means DIR/basename; `get -r` refuses before
writing anything when a symlink inside DESTDIR leads out of it; `get -r ""` restores every name.
Each case ends with the files readable byte-identical and `mosaic check` exit 0.
"""

from __future__ import annotations

import os
import random
import stat
import threading
from pathlib import Path

from tests.conftest import Cli, assert_one_line_error


def _put(node: Cli, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        p = node.cwd / "src" / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    node.ok("put", "-r", ".", cwd=node.cwd / "src")


def _all_readable(node: Cli, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        assert node.ok("get", name, "-").out == data, name
    node.ok("check")


def test_a_character_device_is_written_into_not_replaced(node_cli: Cli) -> None:
    files = {"d/a.bin": random.Random(1).randbytes(70_000)}
    _put(node_cli, files)
    null = Path("/dev/null")
    assert stat.S_ISCHR(null.stat().st_mode)
    try:
        for args in (["d/a.bin", null], ["d/a.bin", null, "--offset", "5", "--length", "9"]):
            node_cli.ok("get", *args)
            st = null.lstat()
            assert stat.S_ISCHR(st.st_mode) and os.major(st.st_rdev) == 1, oct(st.st_mode)
        node_cli.ok("export", "--all", "-o", null)  # export -o writes the same way
        assert stat.S_ISCHR(null.lstat().st_mode)
        r = node_cli("get", "d/a.bin", "/dev/full")  # a device that fails: one line, exit 5
        assert_one_line_error(r, 5)
        assert stat.S_ISCHR(Path("/dev/full").lstat().st_mode)
    finally:  # the old code replaced /dev/null with a regular file: put the device back
        if not stat.S_ISCHR(null.lstat().st_mode):
            null.unlink()
            os.mknod(null, stat.S_IFCHR | 0o666, os.makedev(1, 3))
            null.chmod(0o666)
    _all_readable(node_cli, files)


def _fifo_reader(fifo: Path) -> tuple[threading.Thread, list[bytes]]:
    got: list[bytes] = []

    def read() -> None:
        with open(fifo, "rb") as f:  # waits for the writer
            got.append(f.read())

    t = threading.Thread(target=read, daemon=True)  # never blocks the test run's exit
    t.start()
    return t, got


def test_a_fifo_receives_the_bytes(node_cli: Cli, tmp_path: Path) -> None:
    data = random.Random(2).randbytes(300_000)  # more than a pipe's buffer
    files = {"f.bin": data, "t/x.bin": b"x" * 10, "t/y.bin": random.Random(3).randbytes(9000)}
    _put(node_cli, files)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    t, got = _fifo_reader(fifo)
    node_cli.ok("get", "f.bin", fifo, timeout=30)
    t.join(10)
    assert got == [data] and stat.S_ISFIFO(fifo.lstat().st_mode)
    # inside a tree restore too: the FIFO standing where t/y.bin goes gets its bytes
    out = tmp_path / "out"
    out.mkdir()
    os.mkfifo(out / "y.bin")
    t, got = _fifo_reader(out / "y.bin")
    node_cli.ok("get", "-r", "t", out, timeout=30)
    t.join(10)
    assert got == [files["t/y.bin"]] and stat.S_ISFIFO((out / "y.bin").lstat().st_mode)
    assert (out / "x.bin").read_bytes() == files["t/x.bin"]
    _all_readable(node_cli, files)


def test_a_symlink_to_a_file_keeps_the_link_and_fills_the_target(node_cli: Cli, tmp_path: Path) -> None:
    files = {"doc.txt": b"new content\n" * 100, "t/a": b"tree a", "t/b": b"tree b"}
    _put(node_cli, files)
    target = tmp_path / "real" / "target.txt"
    target.parent.mkdir()
    target.write_bytes(b"old")
    link = tmp_path / "link.txt"
    link.symlink_to(target)
    node_cli.ok("get", "doc.txt", link)
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_bytes() == files["doc.txt"]
    assert [p.name for p in target.parent.iterdir()] == ["target.txt"]  # no temp file left
    # in a tree restore, a link to a file inside DESTDIR is kept the same way
    out = tmp_path / "out"
    out.mkdir()
    (out / "elsewhere").write_bytes(b"old")
    (out / "a").symlink_to("elsewhere")
    node_cli.ok("get", "-r", "t", out)
    assert (out / "a").is_symlink() and (out / "elsewhere").read_bytes() == b"tree a"
    assert (out / "b").read_bytes() == b"tree b"
    # a dangling link is not written through (as cp): one line, exit 2, nothing made
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "nowhere")
    line = assert_one_line_error(node_cli("get", "doc.txt", dangling), 2)
    assert "dangling" in line and not (tmp_path / "nowhere").exists()
    _all_readable(node_cli, files)


def test_get_r_refuses_symlinks_leading_out_of_destdir(node_cli: Cli, tmp_path: Path) -> None:
    files = {"t/a.txt": b"a", "t/sub/b.txt": b"b", "t/sub/c.txt": b"c" * 5000}
    _put(node_cli, files)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim").write_bytes(b"precious")
    cases = {  # what is planted in DESTDIR -> the path the error names
        "folder": lambda d: (d / "sub").symlink_to(outside, target_is_directory=True),
        "file": lambda d: (d / "a.txt").symlink_to(outside / "victim"),
        "relative": lambda d: (d / "sub").symlink_to("../outside"),
        "dangling": lambda d: (d / "a.txt").symlink_to(outside / "new"),
    }
    for what, plant in cases.items():
        out = tmp_path / f"out-{what}"
        out.mkdir()
        plant(out)
        before = sorted(os.listdir(out))
        line = assert_one_line_error(node_cli("get", "-r", "t", out), 2)
        named = "sub" if what in ("folder", "relative") else "a.txt"
        assert str(out / named) in line and "symlink" in line, (what, line)
        assert sorted(os.listdir(out)) == before, what  # nothing was written
        assert sorted(os.listdir(outside)) == ["victim"], what
        assert (outside / "victim").read_bytes() == b"precious"
    # a symlink that stays inside DESTDIR is fine
    out = tmp_path / "inside"
    (out / "real").mkdir(parents=True)
    (out / "sub").symlink_to("real")
    node_cli.ok("get", "-r", "t", out)
    assert (out / "real" / "c.txt").read_bytes() == files["t/sub/c.txt"]
    assert (out / "sub").is_symlink()
    _all_readable(node_cli, files)


def test_get_r_resolves_symlinks_below_symlinks(node_cli: Cli, tmp_path: Path) -> None:
    files = {"t/a/b/c/f.txt": b"f", "t/a/g.txt": b"g"}
    _put(node_cli, files)
    outside = tmp_path / "outside"
    outside.mkdir()
    out = tmp_path / "out"
    (out / "real" / "b").mkdir(parents=True)
    (out / "a").symlink_to("real")  # inside: fine on its own
    (out / "real" / "b" / "c").symlink_to(outside)  # a/b/c leads out, two folders down
    line = assert_one_line_error(node_cli("get", "-r", "t", out), 2)
    assert "symlink leading out" in line and str(out / "a") in line, line  # the first link on the way
    assert os.listdir(outside) == [] and not (out / "real" / "g.txt").exists()
    (out / "real" / "b" / "c").unlink()
    (out / "real" / "b" / "c").symlink_to("../../elsewhere")  # out/elsewhere: inside, not there yet
    node_cli.ok("get", "-r", "t", out)
    assert (out / "elsewhere" / "f.txt").read_bytes() == b"f"
    assert (out / "real" / "g.txt").read_bytes() == b"g"
    _all_readable(node_cli, files)


def test_two_names_on_one_file_through_a_symlink_are_refused(node_cli: Cli, tmp_path: Path) -> None:
    files = {"t/a/x": b"one", "t/b/x": b"two"}
    _put(node_cli, files)
    out = tmp_path / "out"
    (out / "b").mkdir(parents=True)
    (out / "a").symlink_to("b")
    line = assert_one_line_error(node_cli("get", "-r", "t", out), 2)
    assert "same file" in line
    assert os.listdir(out / "b") == []
    _all_readable(node_cli, files)


def test_a_folder_destination_gets_the_basename(node_cli: Cli, tmp_path: Path) -> None:
    files = {"deep/er/name.bin": random.Random(4).randbytes(20_000)}
    _put(node_cli, files)
    data = files["deep/er/name.bin"]
    node_cli.ok("get", "deep/er/name.bin", f"{tmp_path}/new/")  # a trailing slash: a folder
    assert (tmp_path / "new" / "name.bin").read_bytes() == data
    (tmp_path / "existing").mkdir()
    node_cli.ok("get", "deep/er/name.bin", tmp_path / "existing")
    assert (tmp_path / "existing" / "name.bin").read_bytes() == data
    h = node_cli.doc("ls")[0]["hash"]
    node_cli.ok("get", h, f"{tmp_path}/byhash/")
    assert (tmp_path / "byhash" / "name.bin").read_bytes() == data
    assert node_cli.ok("get", "deep/er/name.bin", "-").out == data  # `-` is stdout
    _all_readable(node_cli, files)


def test_get_r_with_the_empty_prefix_restores_every_name(node_cli: Cli, tmp_path: Path) -> None:
    files = {"top.txt": b"top", "a/b.txt": b"b", "c/d/e.bin": random.Random(5).randbytes(40_000)}
    _put(node_cli, files)
    for prefix, out in (("", tmp_path / "all"), ("/", tmp_path / "all2")):
        doc = node_cli.doc("get", "-r", prefix, out)
        assert doc["files"] == len(files)
        got = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}
        assert got == files
    _all_readable(node_cli, files)


def test_python_api_writes_into_devices_and_through_symlinks(tmp_path: Path) -> None:
    import stat as stat_

    from mosaic import Node

    with Node.init(tmp_path / "h", no_passphrase=True) as node:
        data = os.urandom(70_000)
        node.put(data, name="x")
        node.get("x", "/dev/null")
        assert stat_.S_ISCHR(os.stat("/dev/null").st_mode)  # still the device
        target = tmp_path / "target"
        target.write_bytes(b"old")
        link = tmp_path / "link"
        link.symlink_to(target)
        node.get("x", link)
        assert link.is_symlink() and target.read_bytes() == data
