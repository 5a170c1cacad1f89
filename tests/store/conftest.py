"""Fixtures for the store layer on its own: a `Store` opened in-process, no CLI, no hooks."""

from __future__ import annotations

import io
import random
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mosaic.node.store.ingest import Ingest, PutResult
from mosaic.node.store.store import Store

#: small chunks (1/4/16 KiB), so a few hundred KiB make many chunks
SMALL = dict(chunk_min=1024, chunk_avg=4096, chunk_max=16384)


def data_of(seed: int, size: int) -> bytes:
    """Half random, half repetitive text: some chunks compress, some do not."""
    rng = random.Random(seed)
    out = bytearray()
    while len(out) < size:
        n = rng.randint(500, 20_000)
        out += rng.randbytes(n) if rng.random() < 0.5 else (b"%d words " % rng.randrange(99)) * (n // 8)
    return bytes(out[:size])


def put_files(store: Store, files: dict[str, bytes]) -> dict[str, PutResult]:
    """Store `files` (name -> bytes) in one ingest session; name -> result."""
    ing = Ingest(store)
    pending = {}
    try:
        for name, data in files.items():
            pending[name] = ing.put_stream(io.BytesIO(data), (name,), size_hint=len(data))
    except BaseException:
        ing.abort()
        raise
    ing.close()
    return {name: p.result() for name, p in pending.items()}


@pytest.fixture
def make_store(tmp_path: Path) -> Iterator[Callable[..., Store]]:
    """A factory for unsealed stores with small chunks under tmp_path (closed at teardown)."""
    opened: list[Store] = []

    def make(name: str = "home", **kw: object) -> Store:
        args = {"no_passphrase": True, **SMALL, **kw}
        if "key_file" in kw:
            for k in SMALL:
                args.pop(k)
        s = Store.create(tmp_path / name, **args)  # type: ignore[arg-type]
        opened.append(s)
        return s

    yield make
    for s in opened:
        try:
            s.close()
        except Exception:  # noqa: BLE001 - a test may have closed it already
            pass


@pytest.fixture
def store(make_store: Callable[..., Store]) -> Store:
    """One unsealed store with small chunks."""
    return make_store()
