"""A dir backend that stops answering (a network mount that hangs) is given up on by a read
that has another copy. The hang is a FIFO in place of a pack object: opening it for reading
blocks until a writer comes, as a read on a hung mount blocks. Each backend hangs in turn."""

from __future__ import annotations

import os
from pathlib import Path

from tests.conftest import Cli

#: not a speed limit: without a stall deadline the read waits for the FIFO for ever
LIVENESS_S = 60.0


def _pack_objects(folder: Path) -> list[Path]:
    return sorted(p for p in (folder / "packs").rglob("*") if p.is_file())


def _hang(obj: Path) -> Path:
    """Replace `obj` by a FIFO; returns where the real object was put aside."""
    aside = obj.with_name(obj.name + ".aside")
    obj.rename(aside)
    os.mkfifo(obj)
    return aside


def _unhang(obj: Path, aside: Path) -> None:
    """Let a reader still blocked on the FIFO go (it reads nothing), put the object back."""
    try:
        fd = os.open(obj, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:  # no reader left
        pass
    else:
        os.close(fd)
    obj.unlink()
    aside.rename(obj)


def test_a_hung_dir_backend_is_given_up_on_when_another_copy_exists(node_cli: Cli,
                                                                    tmp_path: Path) -> None:
    folders = {name: tmp_path / f"nas-{name}" for name in ("a", "b")}
    for name, folder in folders.items():
        node_cli.ok("backend", "add", "dir", name, folder)
    node_cli.ok("config", "set", "copies", "2")
    data = os.urandom(300_000)
    (tmp_path / "f").write_bytes(data)
    node_cli.ok("put", tmp_path / "f", "--name", "f")
    for name, folder in folders.items():
        objects = _pack_objects(folder)
        assert objects, f"nothing uploaded to {name}"
        node_cli.ok("cache", "trim", "--to", "0")
        hung = [(o, _hang(o)) for o in objects]
        try:
            r = node_cli("warm", "--all", json=True, timeout=LIVENESS_S)
            assert r.rc == 0, f"with {name} hung: {r}"
            assert r.json()["cached_after"] == 1.0, r.json()  # type: ignore[index]
            out = tmp_path / f"out-{name}"
            node_cli.ok("get", "f", out, timeout=LIVENESS_S)
            assert out.read_bytes() == data
        finally:
            for obj, aside in hung:
                _unhang(obj, aside)
    assert ": ok" in node_cli.ok("check").text
