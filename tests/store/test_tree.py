"""Folder listings one level at a time, pagination, and empty folders (store/tree.py)."""

from __future__ import annotations

import pytest

from mosaic import Node
from mosaic.node.errors import NotFoundError, UsageError


@pytest.fixture
def node(tmp_path):
    n = Node.init(tmp_path / "home", no_passphrase=True)
    yield n
    n.close()


def _names(entries):
    return [(c.name, c.is_folder) for c in entries]


def test_one_level_with_subfolders_and_pages(node):
    for name in ["a.txt", "a/x", "a/y/z", "a0", "b/c", "c"]:
        node.put(name.encode(), name=name)
    entries, cur = node.list_folder("")
    assert _names(entries) == [("a.txt", False), ("a", True), ("a0", False), ("b", True), ("c", False)]
    assert cur is None
    assert _names(node.list_folder("a")[0]) == [("x", False), ("y", True)]
    first, cur = node.list_folder("", limit=2)
    assert _names(first) == [("a.txt", False), ("a", True)] and cur == "a/"
    rest, cur2 = node.list_folder("", after=cur, limit=10)
    assert _names(rest) == [("a0", False), ("b", True), ("c", False)] and cur2 is None


def test_many_names_in_one_folder_paginate(node):
    with node.ingest() as s:
        for i in range(1500):
            s.put_source(b"same", f"big/f{i:05d}")
    seen, after = [], ""
    while True:
        page, after = node.list_folder("big", after=after, limit=400)
        seen += [c.name for c in page]
        if after is None:
            break
    assert seen == [f"f{i:05d}" for i in range(1500)]


def test_empty_folders(node):
    assert node.mkdir("docs/new") is True
    assert node.mkdir("docs/new") is False
    assert _names(node.list_folder("")[0]) == [("docs", True)]
    assert _names(node.list_folder("docs")[0]) == [("new", True)]
    assert node.list_folder("docs/new")[0] == []
    with pytest.raises(NotFoundError):
        node.list_folder("nowhere")
    with pytest.raises(UsageError):
        node.rmdir("docs")  # holds docs/new
    node.put(b"x", name="docs/new/file")
    with pytest.raises(UsageError):
        node.rmdir("docs/new")
    node.rm("docs/new/file")
    assert node.list_folder("docs/new")[0] == []  # still there: made by mkdir
    node.rmdir("docs/new")
    with pytest.raises(NotFoundError):
        node.rmdir("docs/new")
    node.put(b"f", name="file")
    with pytest.raises(UsageError):
        node.mkdir("file/sub")


def _expected_level(names: list[str], folder: str) -> list[tuple[str, bool]]:
    base = folder + "/" if folder else ""
    kids: dict[str, bool] = {}
    for n in names:
        if n.startswith(base):
            rest = n[len(base):]
            kids[rest.split("/", 1)[0]] = "/" in rest
    return sorted(kids.items(), key=lambda kv: kv[0] + "/" if kv[1] else kv[0])


def test_levels_across_many_name_blocks_match_a_brute_force_listing(node):
    import random
    rng = random.Random(7)
    parts = ["a", "a.b", "a0", "b", "zz", "ä", "a-", "x y"]
    names = set()
    while len(names) < 2000:  # several compressed name blocks (512 names each)
        depth = rng.randint(1, 4)
        names.add("/".join(rng.choice(parts) + str(rng.randint(0, 40)) for _ in range(depth)))
    names = {n for n in names if not any(m.startswith(n + "/") for m in names)}
    with node.ingest() as s:
        for n in sorted(names):
            s.put_source(b"x", n)
    folders = {""} | {n.rsplit("/", 1)[0] for n in names if "/" in n}
    for folder in sorted(folders)[:40]:
        want = _expected_level(sorted(names), folder)
        got, after = [], ""
        while True:
            page, after = node.list_folder(folder, after=after, limit=rng.randint(1, 50))
            got += [(c.name, c.is_folder) for c in page]
            if after is None:
                break
        assert got == want, folder


def test_move_and_remove_whole_folders(node):
    from mosaic.node.errors import ConflictError
    for name in ["p/a", "p/q/b", "p b", "p-x"]:
        node.put(name.encode(), name=name)
    node.mkdir("p/empty")
    assert node.mv_folder("p", "r/s") == 2
    assert [e.name for e in node.ls("")] == ["p b", "p-x", "r/s/a", "r/s/q/b"]
    assert [c.name for c in node.list_folder("r/s")[0]] == ["a", "empty", "q"]
    with pytest.raises(UsageError):
        node.mv_folder("r", "r/s/t")  # into itself
    with pytest.raises(ConflictError):
        node.mv_folder("r/s", "p b/x")  # a file has the name of a folder on the way
    with pytest.raises(NotFoundError):
        node.mv_folder("nowhere", "x")
    assert node.rm_folder("r") == (2, 1)
    assert [e.name for e in node.ls("")] == ["p b", "p-x"]
    with pytest.raises(NotFoundError):
        node.rm_folder("r")


def test_names_remember_when_they_were_written(node):
    import time
    t0 = time.time_ns()
    node.put(b"x", name="a/b")
    with node.index.read() as txn:
        written = node.index.name_time("a/b", txn)
    assert written is not None and written >= t0
    node.mv("a/b", "c")
    with node.index.read() as txn:
        assert node.index.name_time("a/b", txn) is None
        assert node.index.name_time("c", txn) >= written


def test_a_folder_inside_is_found_past_neighbours_that_sort_between(node):
    node.mkdir("a b")
    node.mkdir("a-x")
    node.mkdir("a/empty")
    from mosaic.node.store.tree import folder_exists
    assert folder_exists(node.index, "a")
    assert node.mv_folder("a", "c") == 0
    assert [c.name for c in node.list_folder("c")[0]] == ["empty"]
