"""Nodes with dir backends, opened in process."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from mosaic import Node
from mosaic.node.store.home import BackendConfig


def make_node(tmp_path: Path, name: str, backends: int = 1, pack_size: int = 64 * 1024) -> Node:
    """A node with `backends` dir backends named d0, d1, ... under tmp_path."""
    node = Node.init(tmp_path / name, no_passphrase=True, pack_size=pack_size,
                     chunk_min=2048, chunk_avg=8192, chunk_max=32768)
    home, cfg = node.home, node.config
    node.close()
    configs = []
    for i in range(backends):
        d = tmp_path / f"{name}-d{i}"
        d.mkdir()
        configs.append(BackendConfig(f"d{i}", "dir", {"path": str(d)}))
    home.write_config(replace(cfg, backends=tuple(configs)))
    return Node.open(home.root)


@pytest.fixture
def node_factory(tmp_path: Path) -> Callable[..., Node]:
    opened: list[Node] = []

    def make(name: str = "n", backends: int = 1, pack_size: int = 64 * 1024) -> Node:
        n = make_node(tmp_path, name, backends, pack_size)
        opened.append(n)
        return n

    yield make
    for n in opened:
        n.close()


def make_joined(tmp_path: Path, name: str, other: Node) -> Node:
    """A second node of `other`'s cluster: joined with its key file (`init --key-file`), using
    the same backends (same names, same folders) and pack size."""
    node = Node.init(tmp_path / name, no_passphrase=True, key_file=other.home.key_path)
    home, cfg = node.home, node.config
    node.close()
    home.write_config(replace(cfg, pack_size=other.config.pack_size, backends=other.config.backends))
    return Node.open(home.root)


@pytest.fixture
def join_factory(tmp_path: Path) -> Callable[[str, Node], Node]:
    opened: list[Node] = []

    def make(name: str, other: Node) -> Node:
        n = make_joined(tmp_path, name, other)
        opened.append(n)
        return n

    yield make
    for n in opened:
        n.close()


SMALL = ("--pack-size", "64KiB", "--chunk-min", "2KiB", "--chunk-avg", "8KiB",
         "--chunk-max", "32KiB")

Run = Callable[..., tuple[int, str, str]]


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> Run:
    """`run(home, *args) -> (exit code, stdout, stderr)`: the CLI, in this process."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MOSAIC_PASSPHRASE", raising=False)

    def go(home: Path, *args: object) -> tuple[int, str, str]:
        capsys.readouterr()
        from mosaic.node.cli.main import main
        rc = main(["--home", str(home), *(str(a) for a in args)])
        cap = capsys.readouterr()
        return rc, cap.out, cap.err
    return go
