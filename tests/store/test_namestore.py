"""The name directory's compressed blocks: behaves like a sorted dict, keeps its invariants."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import lmdb
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mosaic.node.store import namestore
from mosaic.node.store.namestore import BLOCK_MAX, NameStore


class Env:
    def __init__(self, path: Path):
        self.env = lmdb.open(str(path), map_size=1 << 30, max_dbs=2, subdir=True)
        self.ns = NameStore(self.env.open_db(b"names"))

    def update(self, changes: list[tuple[str, bytes | None]]) -> list:
        with self.env.begin(write=True) as txn:
            return self.ns.update(txn, changes)

    def items(self, prefix: str = "") -> list[tuple[str, bytes]]:
        with self.env.begin() as txn:
            return [(n, bytes(f)) for n, f in self.ns.iter(txn, prefix)]

    def get(self, name: str) -> bytes | None:
        with self.env.begin() as txn:
            return self.ns.get(txn, name)

    def blocks(self) -> list[tuple[bytes, list]]:
        with self.env.begin() as txn:
            return [(k, namestore._decode(v)) for k, v in txn.cursor(db=self.ns.db).iternext()]

    def check_invariants(self) -> None:
        """Blocks are non-empty, at most BLOCK_MAX, sorted, non-overlapping, keyed by their first name."""
        prev_last = None
        for key, entries in self.blocks():
            assert 0 < len(entries) <= BLOCK_MAX
            names = [e[0] for e in entries]
            assert names == sorted(names) and len(set(names)) == len(names)
            assert key == names[0].encode("utf-8")
            if prev_last is not None:
                assert prev_last < names[0]
            prev_last = names[-1]

    def count(self) -> int:
        with self.env.begin() as txn:
            return self.ns.count(txn)


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    e = Env(tmp_path / "lmdb")
    yield e
    e.env.close()


def fid(i: int) -> bytes:
    return i.to_bytes(4, "big") * 8


def test_get_set_remove(env: Env) -> None:
    assert env.get("a") is None and env.items() == [] and env.count() == 0
    assert env.update([("b", fid(1)), ("a", fid(2))]) == [("a", None, fid(2)), ("b", None, fid(1))]
    assert env.update([("a", fid(2))]) == []  # no change, nothing reported
    assert env.update([("a", fid(3)), ("c", None)]) == [("a", fid(2), fid(3))]
    assert env.get("a") == fid(3) and env.get("b") == fid(1) and env.get("0") is None
    assert env.update([("a", None)]) == [("a", fid(3), None)]
    assert env.items() == [("b", fid(1))]
    assert env.update([("b", None)]) == [("b", fid(1), None)]
    assert env.blocks() == []  # an emptied block is gone, not kept empty


def test_many_names_split_into_blocks_and_iterate_in_order(env: Env) -> None:
    rng = random.Random(1)
    model: dict[str, bytes] = {}
    for round_ in range(6):
        changes: list[tuple[str, bytes | None]] = []
        for _ in range(700):
            name = f"d{rng.randrange(5)}/sub{rng.randrange(30)}/file-{rng.randrange(400)}.txt"
            if rng.random() < 0.25 and model:
                name = rng.choice(sorted(model))
                changes.append((name, None))
            else:
                changes.append((name, fid(rng.randrange(1000))))
        expected = dict(model)
        for n, f in dict(changes).items():
            if f is None:
                expected.pop(n, None)
            else:
                expected[n] = f
        done = env.update(changes)
        assert {n for n, _, _ in done} == {n for n in set(model) | set(expected)
                                           if model.get(n) != expected.get(n)}, round_
        model = expected
        env.check_invariants()
        assert env.items() == sorted(model.items())
    assert len(env.blocks()) > 2 and env.count() == len(model)
    for prefix in ("d3/", "d3/sub1", "d3/sub1/", "d9", ""):
        assert env.items(prefix) == sorted((n, f) for n, f in model.items() if n.startswith(prefix))
    for n in list(model)[:50]:
        assert env.get(n) == model[n]
    assert env.get("d0/sub0/file-9999.txt") is None


names = st.text(st.sampled_from("ab/é."), min_size=1, max_size=6)


@given(batches=st.lists(st.lists(st.tuples(names, st.none() | st.integers(0, 5)), max_size=40),
                        max_size=6))
def test_matches_a_dict(tmp_path_factory: pytest.TempPathFactory,
                        batches: list[list[tuple[str, int | None]]]) -> None:
    e = Env(tmp_path_factory.mktemp("ns"))
    try:
        model: dict[str, bytes] = {}
        for batch in batches:
            changes = [(n, None if i is None else fid(i)) for n, i in batch]
            e.update(changes)
            for n, f in dict(changes).items():
                if f is None:
                    model.pop(n, None)
                else:
                    model[n] = f
            e.check_invariants()
        assert e.items() == sorted(model.items())
        for n in {n for b in batches for n, _ in b}:
            assert e.get(n) == model.get(n)
    finally:
        e.env.close()
