"""Quotas: packs fill unequal backends at the same pace; a put that cannot fit stores nothing.

Scaled down from 100/200/300 MB: three dir backends with quotas of 10, 20 and 30 MB.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from tests.conftest import assert_one_line_error

from .conftest import Node, b3, new_node

pytestmark = pytest.mark.slow  # long end-to-end: `just test-fast` leaves it out

QUOTAS = {"small": 10_000_000, "medium": 20_000_000, "large": 30_000_000}


def _add_three(node: Node, tmp_path: Path) -> dict[str, Path]:
    dirs = {}
    for name, q in QUOTAS.items():
        dirs[name] = tmp_path / f"backend-{name}"
        node.add_dir(name, dirs[name], quota=f"{q // 1_000_000}MB")
    rows = node.backends()
    assert {n: r["quota"] for n, r in rows.items()} == QUOTAS, rows
    return dirs


def _pack_files(root: Path) -> set[str]:
    """Names of the pack objects stored in a dir backend."""
    d = root / "packs"
    return {p.name for p in d.rglob("*") if p.is_file() and len(p.name) == 64} if d.exists() else set()


def _write_random(path: Path, rng: random.Random, size: int) -> bytes:
    data = rng.randbytes(size)
    path.write_bytes(data)
    return data


def test_copies_1_fills_backends_evenly(node: Node, tmp_path: Path) -> None:
    node.init_node("--pack-size", "1MiB")
    _add_three(node, tmp_path)
    node.ok("config", "set", "copies", "1")
    assert node.doc("config")["effective_copies"] == 1  # type: ignore[index]

    rng = random.Random(2)
    src = tmp_path / "src"
    src.mkdir()
    files = {f"part-{i}.bin": _write_random(src / f"part-{i}.bin", rng, 5_000_000) for i in range(6)}
    r = node.ok("put", *sorted(src.iterdir()), timeout=120)
    assert len(r.text.splitlines()) == 6

    rows = node.backends()
    total = sum(r["used"] for r in rows.values())
    assert total >= 30_000_000, rows  # incompressible: everything stored once
    ratios = {n: r["used"] / r["quota"] for n, r in rows.items()}
    spread = max(ratios.values()) - min(ratios.values())
    assert spread <= 0.10, f"used/quota ratios differ by {spread:.1%}: " + ", ".join(
        f"{n} {v:.1%}" for n, v in ratios.items())
    print("used/quota:", ", ".join(f"{n} {v:.1%}" for n, v in ratios.items()))
    for row in rows.values():
        assert row["used"] <= row["quota"], row
        assert row["pending"] == 0, row
    # and the files are whole
    for name, data in files.items():
        out = node.ok("get", str(src / name).lstrip("/"), "-", timeout=60).out
        assert b3(out) == b3(data)


def test_put_beyond_capacity_fails_cleanly(tmp_path: Path) -> None:
    node = new_node(tmp_path)
    node.init_node("--pack-size", "1MiB")
    dirs = _add_three(node, tmp_path)
    node.ok("config", "set", "copies", "2")
    assert node.doc("config")["effective_copies"] == 2  # type: ignore[index]

    rng = random.Random(3)
    src = tmp_path / "src"
    src.mkdir()
    before_data = _write_random(src / "before.bin", rng, 4_000_000)
    node.ok("put", src / "before.bin", "--name", "before.bin", timeout=60)
    ls_before = node.doc("ls", timeout=30)
    packs_before = {n: _pack_files(d) for n, d in dirs.items()}
    assert sum(map(len, packs_before.values())) >= 6
    used_before = {n: r["used"] for n, r in node.backends().items()}

    # two copies of 60 MB of quota hold at most 30 MB; ask for 40 MB in one put
    big = [src / f"too-much-{i}.bin" for i in range(4)]
    for p in big:
        _write_random(p, rng, 10_000_000)
    r = node("put", *big, timeout=120)
    line = assert_one_line_error(r, 5)
    assert "space" in line or "full" in line or "quota" in line, line
    assert r.out == b"", r  # no file was acknowledged
    print("capacity error:", line)

    assert node.doc("ls", timeout=30) == ls_before
    doc = node.doc("verify", "--all", timeout=60)
    assert doc["ok"] and doc["files"] == 1, doc  # type: ignore[index]
    assert {n: r["used"] for n, r in node.backends().items()} == used_before
    assert node.pending_uploads() == 0

    node.ok("gc", timeout=60)
    packs_after = {n: _pack_files(d) for n, d in dirs.items()}
    extra = {n: sorted(packs_after[n] - packs_before[n]) for n in dirs if packs_after[n] - packs_before[n]}
    assert not extra, f"packs of the failed put left on the backends: {extra}"
    assert packs_after == packs_before
    doc = node.doc("verify", "--all", "--backends", timeout=60)
    assert doc["ok"], doc
    assert node.ok("get", "before.bin", "-", timeout=60).out == before_data
    # the node still takes what fits
    fits = _write_random(src / "fits.bin", rng, 3_000_000)
    node.ok("put", src / "fits.bin", "--name", "fits.bin", timeout=60)
    assert node.ok("get", "fits.bin", "-", timeout=60).out == fits
