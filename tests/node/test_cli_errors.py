"""CLI error handling: one-line errors with the documented exit codes, and a full disk."""

from __future__ import annotations

import contextlib
import random
import resource
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import (
    SMALL_CHUNKS,
    Cli,
    assert_one_line_error,
    mosaic_env,
    run_mosaic,
)
from tests.node.test_cli import b3, flip_byte_in_chunk

# ---- error handling ----------------------------------------------------------------------

def test_one_line_errors(node_cli: Cli, tmp_path: Path) -> None:
    (node_cli.cwd / "f").write_bytes(random.Random(16).randbytes(30_000))
    node_cli.ok("put", "f")
    missing = tmp_path / "no-such-home"
    r = run_mosaic(["--home", missing, "ls"])
    assert_one_line_error(r, 6)
    assert not missing.exists()
    (tmp_path / "empty-dir").mkdir()
    assert_one_line_error(run_mosaic(["--home", tmp_path / "empty-dir", "get", "x"]), 6)
    assert_one_line_error(node_cli("get", b3(b"unknown content"), "-"), 1)
    assert_one_line_error(node_cli("stat", b3(b"unknown content")), 1)
    assert_one_line_error(node_cli("get", "0123456789abcdef0123", "-"), 2)
    assert_one_line_error(node_cli("get", "no/such/name", "-"), 1)
    assert_one_line_error(node_cli("export", b3(b"unknown content")), 1)
    assert_one_line_error(node_cli("import", tmp_path / "nope.json"), 1)
    (tmp_path / "garbage.json").write_bytes(b"\x00\x01 not json")
    assert_one_line_error(node_cli("import", tmp_path / "garbage.json"), 2)
    assert_one_line_error(node_cli("cache", "trim", "--to", "lots"), 2)
    assert_one_line_error(node_cli("warm"), 2)
    # a damaged key file / config
    key = node_cli.home / "key.json"
    saved = key.read_bytes()
    key.write_text("{not json")
    assert_one_line_error(node_cli("ls"), 4)
    key.write_bytes(saved)
    cfg = node_cli.home / "config.toml"
    saved = cfg.read_bytes()
    cfg.write_text("version = 99\n")
    assert_one_line_error(node_cli("ls"), 6)
    cfg.write_bytes(saved)
    node_cli.ok("verify", "--all")


def test_wrong_passphrase(cli: Cli) -> None:
    cli.init(passphrase=True)
    (cli.cwd / "f").write_bytes(b"secret")
    cli.ok("put", "f")
    for args in (("ls",), ("get", "f", "-"), ("put", "f"), ("verify", "--all"), ("gc",)):
        line = assert_one_line_error(cli(*args, env=mosaic_env(MOSAIC_PASSPHRASE="wrong")), 4)
        assert "passphrase" in line
    cli.ok("verify", "--all")


def test_corrupt_chunk_exit_code(node_cli: Cli) -> None:
    (node_cli.cwd / "f").write_bytes(b"".join(b"row %d\n" % i for i in range(30_000)))
    node_cli.ok("put", "f")
    cid = flip_byte_in_chunk(node_cli, "f", 0)
    assert cid[:16] in assert_one_line_error(node_cli("get", "f", "-"), 3)
    assert node_cli("verify", "--all").rc == 3


def test_get_r_into_awkward_places(node_cli: Cli, tmp_path: Path) -> None:
    """Tree restores: something in the way is named before anything is written;
    a corrupt file fails in one line and leaves no temp files; a rerun overwrites."""
    rng = random.Random(21)
    files = {f"t/d{i % 3}/f{i}.bin": rng.randbytes(rng.randrange(0, 9000)) for i in range(40)}
    files["t/big.bin"] = rng.randbytes(5 << 20)  # one file above the small-file limit
    for rel, data in files.items():
        (node_cli.cwd / rel).parent.mkdir(parents=True, exist_ok=True)
        (node_cli.cwd / rel).write_bytes(data)
    node_cli.ok("put", "-r", "t")
    out = tmp_path / "out"
    (out / "d1" / "f1.bin").mkdir(parents=True)  # a folder where a file goes
    line = assert_one_line_error(node_cli("get", "-r", "t", out), 2)
    assert "f1.bin" in line and "directory" in line
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == ["d1", "d1/f1.bin"]
    (out / "d1" / "f1.bin").rmdir()
    (out / "d2").write_bytes(b"a file where a folder goes")
    line = assert_one_line_error(node_cli("get", "-r", "t", out), 2)
    assert "d2" in line and "not a folder" in line
    (out / "d2").unlink()
    (out / "d0" / "f0.bin").parent.mkdir(parents=True, exist_ok=True)
    (out / "d0" / "f0.bin").write_bytes(b"stale copy, overwritten by the restore")
    node_cli.ok("get", "-r", "t", out)
    for rel, data in files.items():
        assert (out / rel[2:]).read_bytes() == data, rel
    victim = next(rel for rel, data in files.items() if len(data) > 4000)
    cid = flip_byte_in_chunk(node_cli, victim)
    out2 = tmp_path / "out2"
    line = assert_one_line_error(node_cli("get", "-r", "t", out2), 3)
    assert cid[:16] in line
    assert [p for p in out2.rglob("*") if ".mosaic-" in p.name] == []
    assert not (out2 / victim[2:]).exists()


# ---- a full disk -------------------------------------------------------------------------

@contextlib.contextmanager
def _small_filesystem(where: Path, size: str = "2m") -> Iterator[bool]:
    """A tiny tmpfs mounted at `where` (True), or False if mounting is not possible."""
    where.mkdir(parents=True, exist_ok=True)
    try:
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", f"mosaic-test-{uuid.uuid4().hex[:8]}",
                            str(where)], capture_output=True, timeout=30)
        mounted = r.returncode == 0
    except (OSError, subprocess.SubprocessError):
        mounted = False
    try:
        yield mounted
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(where)], capture_output=True, timeout=30)


def _fsize_limit(limit: int) -> Callable[[], None]:
    def pre() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return pre


@pytest.fixture(params=["tmpfs", "rlimit"])
def full_disk(request: pytest.FixtureRequest, tmp_path: Path
              ) -> Iterator[tuple[Cli, Callable[[], None] | None]]:
    """An initialised node on a 2 MiB tmpfs, or a put limited by RLIMIT_FSIZE (EFBIG).

    Without the rights to mount, the tmpfs case falls back to RLIMIT_FSIZE too.
    """
    mnt = tmp_path / "mnt"
    with _small_filesystem(mnt) if request.param == "tmpfs" else contextlib.nullcontext(False) \
            as mounted:
        work = tmp_path / "work"
        work.mkdir()
        cli = Cli(mnt / "home", cwd=work)
        cli.ok("init", "--no-passphrase", *SMALL_CHUNKS, "--pack-size", "256KiB")
        (work / "big.bin").write_bytes(random.Random(17).randbytes(4 << 20))
        yield cli, (None if mounted else _fsize_limit(128 << 10))


def test_put_on_a_full_disk(full_disk: tuple[Cli, Callable[[], None] | None]) -> None:
    cli, pre = full_disk
    r = cli("put", "big.bin", preexec_fn=pre)
    line = assert_one_line_error(r, 5)
    assert "disk full" in line or "too large" in line.lower()
    cli.ok("verify", "--all")
    assert cli.doc("ls") == []
    cli.ok("gc")
    # the node still works for what fits
    (cli.cwd / "small").write_bytes(b"small file\n" * 100)
    assert cli.ok("put", "small").text.split()[0] == b3(b"small file\n" * 100)
    assert cli.ok("cat", "small").out == b"small file\n" * 100
    cli.ok("verify", "--all")


@pytest.fixture
def filled_disk(tmp_path: Path) -> Iterator[tuple[Cli, Path | None, Callable[[], None] | None]]:
    """A node on a tmpfs filled to the last block by a filler file (or RLIMIT_FSIZE without root)."""
    mnt = tmp_path / "mnt"
    with _small_filesystem(mnt) as mounted:
        work = tmp_path / "work"
        work.mkdir()
        cli = Cli(mnt / "home", cwd=work)
        cli.ok("init", "--no-passphrase", *SMALL_CHUNKS)
        (work / "f.bin").write_bytes(random.Random(19).randbytes(300_000))
        filler = None
        if mounted:
            filler = mnt / "filler"
            with open(filler, "wb", buffering=0) as f:
                try:
                    while True:
                        f.write(b"\0" * 4096)
                except OSError:
                    pass
        yield cli, filler, (None if mounted else _fsize_limit(128 << 10))


def test_a_failed_put_leaves_no_temp_files(
        filled_disk: tuple[Cli, Path | None, Callable[[], None] | None]) -> None:
    """A put that fails for want of space drops its unfinished pack files.

    Left in HOME/tmp they hold on to the space the user must free, until a gc.
    """
    cli, filler, pre = filled_disk
    assert_one_line_error(cli("put", "f.bin", preexec_fn=pre), 5)
    cli.ok("verify", "--all")
    left = sorted(p.name for p in (cli.home / "tmp").iterdir())
    assert left == [], f"temp files left behind: {left}"
    if filler is not None:
        filler.unlink()
    assert cli.ok("put", "f.bin").text.split()[0] == b3((cli.cwd / "f.bin").read_bytes())
    cli.ok("verify", "--all")


def test_get_onto_a_full_disk(tmp_path: Path) -> None:
    """A whole-file get that runs out of space: one line, exit 5, no temp file, old copy kept."""
    cli = Cli(tmp_path / "home", cwd=tmp_path)
    cli.ok("init", "--no-passphrase", *SMALL_CHUNKS)
    data = random.Random(23).randbytes(3 << 20)
    (tmp_path / "f.bin").write_bytes(data)
    cli.ok("put", "f.bin")
    mnt = tmp_path / "mnt"
    with _small_filesystem(mnt) as mounted:
        pre = None if mounted else _fsize_limit(1 << 20)
        old = mnt / "f.bin"
        old.write_bytes(b"the previous copy\n")
        line = assert_one_line_error(cli("get", "f.bin", str(old), preexec_fn=pre), 5)
        assert "disk full" in line or "too large" in line.lower()
        assert old.read_bytes() == b"the previous copy\n"
        assert sorted(p.name for p in mnt.iterdir()) == ["f.bin"]
        old.unlink()
        if not mounted:
            return
        # with room again, the same get works and the bytes are exact
        (mnt / "ok").mkdir()
        small = tmp_path / "g.bin"
        small.write_bytes(data[:1 << 20])
        cli.ok("put", "g.bin")
        cli.ok("get", "g.bin", str(mnt / "ok" / "g.bin"))
        assert (mnt / "ok" / "g.bin").read_bytes() == data[:1 << 20]
