"""Reads a new user runs into on the rough edges: a backend that is gone, a pack whose
location a node never learnt, names whose bytes are not UTF-8. The CLI runs in process
(`mosaic.node.cli.main.main`) on real folders; every file read back is compared byte for byte.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.cloud.conftest import SMALL, Run


def _ok(run: Run, home: Path, *args: object) -> str:
    rc, out, err = run(home, *args)
    assert rc == 0, (args, rc, out, err)
    assert "Traceback" not in err
    return out


def _clean(run: Run, home: Path) -> None:
    assert ": ok" in _ok(run, home, "check")


def _only_on_backend(run: Run, tmp_path: Path, backend: str) -> tuple[Path, Path, bytes]:
    """(home, backend folder, data): a node whose one file "f" is only on a dir backend."""
    home, be = tmp_path / "a", tmp_path / backend
    _ok(run, home, "init", "--no-passphrase", *SMALL)
    _ok(run, home, "backend", "add", "dir", backend, be)
    data = os.urandom(200_000)
    (tmp_path / "f").write_bytes(data)
    _ok(run, home, "put", tmp_path / "f", "--name", "f")
    _ok(run, home, "cache", "trim", "--to", "0")
    return home, be, data


def test_get_from_unreachable_backend_names_it_in_one_line(run: Run, tmp_path: Path) -> None:
    """The only copy is on a dir backend whose folder is gone: one error line naming the
    backend and why, exit 5; once the folder is back the file reads byte-identical."""
    home, be, data = _only_on_backend(run, tmp_path, "nas")
    be.rename(tmp_path / "away")
    rc, out, err = run(home, "get", "f", tmp_path / "o")
    assert rc == 5
    errors = [ln for ln in err.splitlines() if ln.startswith("mosaic: error:")]
    assert len(errors) == 1 and "Traceback" not in err, err  # (the hub's warning may precede it)
    assert "backend nas is unreachable" in errors[0] and "missing" in errors[0], err
    assert not (tmp_path / "o").exists()
    rc, out, err = run(home, "verify", "--backends")  # unchecked is not corrupt: exit 5, not 3
    assert rc == 5 and "1 backends unreachable, not checked" in out, (out, err)
    (tmp_path / "away").rename(be)
    _ok(run, home, "verify", "--backends")
    _ok(run, home, "get", "f", tmp_path / "o")
    assert (tmp_path / "o").read_bytes() == data
    _clean(run, home)


def test_imported_pack_uploaded_later_is_found_on_the_backend(run: Run, tmp_path: Path) -> None:
    """B imports A's dump made before A's pack reached the shared backend (so the dump names
    no location); A uploads it later. B finds the pack by looking on its backends."""
    a, b, be = tmp_path / "a", tmp_path / "b", tmp_path / "be"
    _ok(run, a, "init", "--no-passphrase", *SMALL)
    _ok(run, a, "key", "export", "-o", tmp_path / "k")
    _ok(run, b, "init", "--no-passphrase", "--key-file", tmp_path / "k")
    data = os.urandom(150_000)
    (tmp_path / "f").write_bytes(data)
    _ok(run, a, "put", tmp_path / "f", "--name", "f")
    _ok(run, a, "export", "--all", "-o", tmp_path / "dump.json")
    _ok(run, b, "import", tmp_path / "dump.json")
    _ok(run, a, "backend", "add", "dir", "be", be)
    _ok(run, b, "backend", "add", "dir", "be", be)
    rc, _, err = run(b, "get", "f", tmp_path / "o")
    assert rc == 5 and err.count("mosaic: error:") == 1, err  # nowhere yet: said so
    _ok(run, a, "repair")  # A's existing pack goes to the backend it just added
    _ok(run, b, "get", "f", tmp_path / "o")
    assert (tmp_path / "o").read_bytes() == data


def test_names_that_are_not_utf8_work_as_arguments(run: Run, tmp_path: Path) -> None:
    """`put -r` stores a file whose name is not UTF-8; the same bytes given to get, mv and rm
    (as the shell passes them) find it, and get writes the original bytes back."""
    home, tree = tmp_path / "a", tmp_path / "tr"
    _ok(run, home, "init", "--no-passphrase", *SMALL)
    tree.mkdir()
    raw = b"caf\xe9"
    data = os.urandom(5000)
    (tree / os.fsdecode(raw)).write_bytes(data)
    _ok(run, home, "put", "-r", tree)
    arg = os.fsdecode(b"tr/" + raw)
    _ok(run, home, "get", arg, tmp_path / "o")
    assert (tmp_path / "o").read_bytes() == data
    new = os.fsdecode(b"tr/\xc3(")
    _ok(run, home, "mv", arg, new)
    out = tmp_path / "out"
    _ok(run, home, "get", "-r", "tr", out)
    assert os.listdir(os.fsencode(out)) == [b"\xc3("]
    assert (out / os.fsdecode(b"\xc3(")).read_bytes() == data
    _ok(run, home, "rm", new)
    assert _ok(run, home, "ls") == ""
    _clean(run, home)


def test_warm_on_a_full_disk_is_one_error_line(run: Run, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """`warm` whose fetched packs cannot be stored (ENOSPC) says so (exit 5), not an internal
    error out of the fetch's task group; the files stay readable and `check` clean."""
    from mosaic.node.errors import StorageError
    from mosaic.node.store.packs import LocalPacks
    home, be, data = _only_on_backend(run, tmp_path, "be")
    real = LocalPacks.write

    def full(self: LocalPacks, pid: bytes, blob: bytes) -> None:
        raise StorageError("disk full while storing a fetched pack")  # as write says ENOSPC
    monkeypatch.setattr(LocalPacks, "write", full)
    rc, _, err = run(home, "warm", "--all")
    assert rc == 5 and "disk full" in err and "internal" not in err, err
    monkeypatch.setattr(LocalPacks, "write", real)
    _clean(run, home)
    _ok(run, home, "warm", "--all")
    _ok(run, home, "get", "f", tmp_path / "o")
    assert (tmp_path / "o").read_bytes() == data


def test_a_dump_older_than_a_gc_is_refused(run: Run, tmp_path: Path) -> None:
    """A dump that points at packs its maker has since collected from the shared backend is
    refused (exit 3, nothing imported) instead of recording files nobody can read."""
    a, b, be = tmp_path / "a", tmp_path / "b", tmp_path / "be"
    _ok(run, a, "init", "--no-passphrase", *SMALL)
    _ok(run, a, "key", "export", "-o", tmp_path / "k")
    _ok(run, b, "init", "--no-passphrase", "--key-file", tmp_path / "k")
    _ok(run, a, "backend", "add", "dir", "be", be)
    _ok(run, b, "backend", "add", "dir", "be", be)
    (tmp_path / "f").write_bytes(os.urandom(150_000))
    _ok(run, a, "put", tmp_path / "f", "--name", "f")
    _ok(run, a, "export", "--all", "-o", tmp_path / "old.json")
    packs = set((be / "packs").rglob("*"))
    _ok(run, a, "rm", "f")
    for _ in range(4):  # mark, confirm, delete: with B publishing between
        _ok(run, a, "gc")
        _ok(run, b, "gc")
    assert not {p for p in packs if p.is_file()} & set((be / "packs").rglob("*")), "not collected"
    rc, out, err = run(b, "import", tmp_path / "old.json")
    assert rc == 3 and "gone from the backends" in err and err.count("\n") == 1, err
    assert _ok(run, b, "ls") == ""
    _clean(run, b)
    data = os.urandom(20_000)
    (tmp_path / "g").write_bytes(data)
    _ok(run, a, "put", tmp_path / "g", "--name", "g")
    _ok(run, a, "export", "--all", "-o", tmp_path / "new.json")
    _ok(run, b, "import", tmp_path / "new.json")
    _ok(run, b, "get", "g", tmp_path / "o")
    assert (tmp_path / "o").read_bytes() == data
    _clean(run, b)
