"""Filesystem helpers: walks, sizes, deletes, BLAKE3 and restore verification."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path


def walk_files(path: Path) -> Iterable[Path]:
    """Yield the regular files (and symlinks) at or below ``path``."""
    if not path.is_dir():
        yield path
        return
    for d, _, files in os.walk(path):
        for f in files:
            yield Path(d) / f


def apparent_bytes(path: Path) -> int:
    """Sum of apparent file sizes (lstat) at or below ``path``."""
    return sum(os.lstat(p).st_size for p in walk_files(path))


def file_count(path: Path) -> int:
    """Number of files at or below ``path``."""
    return sum(1 for _ in walk_files(path))


def du_bytes(path: Path) -> int:
    """Allocated bytes (``du -s --block-size=1``), directories included."""
    out = subprocess.run(["du", "-s", "--block-size=1", str(path)],
                         capture_output=True, text=True, check=True)
    return int(out.stdout.split()[0])


def blake3_hex(path: Path) -> str:
    """BLAKE3 of a file, hex."""
    import blake3  # only needed when Mosaic is measured

    hasher = blake3.blake3(max_threads=blake3.blake3.AUTO)
    if path.stat().st_size:
        hasher.update_mmap(str(path))
    return hasher.hexdigest()


def remove_tree(path: Path) -> int:
    """Delete ``path`` if it exists; return how many files it held."""
    if not path.exists():
        return 0
    count = file_count(path)
    shutil.rmtree(path)
    return count


def verify(restored: Path, original: Path) -> tuple[bool, str]:
    """Compare a restored file or tree with the original, byte for byte."""
    if not restored.exists():
        return False, f"restore target {restored} does not exist"
    if original.is_file():
        p = subprocess.run(["cmp", str(restored), str(original)], capture_output=True, text=True)
    else:
        p = subprocess.run(["diff", "-r", "--no-dereference", "-q", str(restored), str(original)],
                           capture_output=True, text=True)
    return p.returncode == 0, (p.stdout + p.stderr)[:2000]
