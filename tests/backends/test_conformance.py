"""The Backend contract (see backends/base.py), run unchanged against every kind."""

from __future__ import annotations

import os

import pytest
import trio

from mosaic.backends import Backend, InvalidName, NotFound, ObjectInfo, TransientError

from .conftest import Harness

BIG = 5 * 1024 * 1024
BAD_NAMES = ["", "../x", "/abs", "A", "a//b", "a/", "./a", "a/../b", ".hidden", "a/.tmp-1", "a b", "é", "x" * 513]


def blob(n: int, seed: int = 0) -> bytes:
    """Deterministic, incompressible-looking bytes."""
    return bytes((i * 131 + seed * 17 + (i >> 8) * 7) & 0xFF for i in range(n))


def names(objs: list[ObjectInfo]) -> list[str]:
    return [o.name for o in objs]


async def test_missing_object(backend: Backend) -> None:
    with pytest.raises(NotFound):
        await backend.get("nope")
    with pytest.raises(NotFound):
        await backend.get("nope/deeper/x", 3, 10)
    with pytest.raises(NotFound):
        await backend.get("nope", 0, 0)
    with pytest.raises(NotFound):
        await backend.stat("nope")
    await backend.delete("nope")
    await backend.delete("nope/deeper/x")
    assert await backend.list() == []
    # below an object, as if it were a folder
    await backend.put("file", b"f")
    with pytest.raises(NotFound):
        await backend.get("file/x")
    with pytest.raises(NotFound):
        await backend.stat("file/x")
    await backend.delete("file/x")
    assert await backend.list("file/") == []
    assert await backend.list("file/x/y/") == []
    assert await backend.get("file") == b"f"


async def test_round_trip_small_empty_big(backend: Backend) -> None:
    big = os.urandom(BIG)
    await backend.put("packs/ab/small", b"hello")
    await backend.put("packs/ab/empty", b"")
    await backend.put("packs/cd/big", big)
    assert await backend.get("packs/ab/small") == b"hello"
    assert await backend.get("packs/ab/empty") == b""
    assert await backend.get("packs/ab/empty", 0, 10) == b""
    assert await backend.get("packs/cd/big") == big
    assert await backend.stat("packs/ab/small") == ObjectInfo("packs/ab/small", 5)
    assert await backend.stat("packs/ab/empty") == ObjectInfo("packs/ab/empty", 0)
    assert await backend.stat("packs/cd/big") == ObjectInfo("packs/cd/big", BIG)
    await backend.delete("packs/ab/small")
    with pytest.raises(NotFound):
        await backend.get("packs/ab/small")
    with pytest.raises(NotFound):
        await backend.stat("packs/ab/small")
    await backend.delete("packs/ab/small")  # twice is fine


async def test_ranges(backend: Backend) -> None:
    value = blob(10_000)
    n = len(value)
    await backend.put("r/obj", value)
    cases = [
        (0, 100),  # head
        (0, n),  # exactly everything
        (1234, 4321),  # middle
        (n - 100, 100),  # ending exactly at the end
        (n - 100, 1000),  # straddling the end: clipped
        (n - 1, 1),  # last byte
        (n, 10),  # starting at the end
        (n, None),
        (n + 1, 5),  # past the end
        (n + 5000, None),
        (10, 0),  # empty range
        (0, None),  # whole object
        (9000, None),  # tail to the end
        (0, n + 10**9),  # huge length
    ]
    for offset, length in cases:
        want = value[offset:] if length is None else value[offset : offset + length]
        got = await backend.get("r/obj", offset, length)
        assert got == want, (offset, length, len(got), len(want))
    with pytest.raises(ValueError):
        await backend.get("r/obj", -1, 5)
    with pytest.raises(ValueError):
        await backend.get("r/obj", 0, -5)


async def test_overwrite_replaces(backend: Backend) -> None:
    await backend.put("o/x", b"first value, longer")
    await backend.put("o/x", b"second")
    assert await backend.get("o/x") == b"second"
    assert await backend.stat("o/x") == ObjectInfo("o/x", 6)
    await backend.put("o/x", b"")
    assert await backend.get("o/x") == b""
    assert names(await backend.list("o/")) == ["o/x"]


async def test_list_sorted_prefix_nested(harness: Harness) -> None:
    b = harness.backend
    want = {
        "a": b"1",
        "packs/ab/00ff": b"22",
        "packs/ab/0a": b"333",
        "packs/ab-x/1": b"4444",
        "packs/ac/zz": b"5",
        "packs/b": b"66",
        "packs.idx": b"7",
        "z/y/x/w/v": b"8",
        "_meta/0": b"9",
        "m-1": b"10",
        "m.1": b"11",
        "m_1": b"12",
    }
    async with trio.open_nursery() as n:
        for k, v in want.items():
            n.start_soon(b.put, k, v)
    # a stray temp file and a hidden file must never be listed
    harness.plant("packs/ab/.tmp-deadbeef", b"partial")
    harness.plant(".hidden", b"x")
    everything = await b.list()
    assert names(everything) == sorted(want)
    assert all(o.size == len(want[o.name]) for o in everything)
    assert await b.list("") == everything

    def expect(prefix: str) -> list[str]:
        return sorted(k for k in want if k.startswith(prefix))

    for prefix in ["packs/", "packs", "packs/ab", "packs/ab/", "packs/ab/0", "packs/ab-",
                   "p", "z/y/x/w/", "z/y/x/w/v", "m", "_", "nothing", "packs/zz/", "a",
                   "packs/ab/00ff/"]:
        assert names(await b.list(prefix)) == expect(prefix), prefix
    for prefix in ["../", "/", "A", "packs//", ".", "packs/ab/.tmp"]:
        assert await b.list(prefix) == [], prefix


async def test_invalid_names_rejected(backend: Backend) -> None:
    for bad in BAD_NAMES:
        with pytest.raises(InvalidName):
            await backend.put(bad, b"x")
        with pytest.raises(InvalidName):
            await backend.get(bad)
        with pytest.raises(InvalidName):
            await backend.stat(bad)
        with pytest.raises(InvalidName):
            await backend.delete(bad)
    assert await backend.list() == []


async def test_folder_names_are_not_objects(backend: Backend) -> None:
    """A name that is only a "folder" of other names is no object; deleting it is a no-op."""
    await backend.put("d/e/x", b"keep me")
    with pytest.raises(NotFound):
        await backend.stat("d")
    with pytest.raises(NotFound):
        await backend.stat("d/e")
    await backend.delete("d")
    await backend.delete("d/e")
    assert await backend.get("d/e/x") == b"keep me"
    assert names(await backend.list()) == ["d/e/x"]


@pytest.mark.parametrize("delay", [0, 0.002, 0.02, 0.1])
async def test_cancelled_put_is_all_or_nothing(harness: Harness, delay: float) -> None:
    b = harness.backend
    old, new = blob(1000, seed=1), os.urandom(4 * 1024 * 1024)
    await b.put("c/existing", old)
    with trio.move_on_after(delay):
        async with trio.open_nursery() as n:
            n.start_soon(b.put, "c/existing", new)
            n.start_soon(b.put, "c/fresh", new)
    assert await b.get("c/existing") in (old, new)
    try:
        assert await b.get("c/fresh") == new
    except NotFound:
        pass
    assert set(names(await b.list())) <= {"c/existing", "c/fresh"}
    # The temps are removed from the storage itself, not just hidden. A server
    # may still be receiving an upload we abandoned (and create its temp after
    # our cleanup ran): `sweep_temp` is the backstop for that rare case.
    with trio.move_on_after(3):
        while any(".tmp-" in n for n in harness.raw_names()):
            await trio.sleep(0.05)
    if any(".tmp-" in n for n in harness.raw_names()):
        assert await b.sweep_temp(older_than=0) >= 1
    assert not [n for n in harness.raw_names() if ".tmp-" in n]


async def test_sweep_temp_removes_only_stale_temps(harness: Harness) -> None:
    b = harness.backend
    await b.put("s/real", b"keep")
    await b.put("top", b"keep too")
    harness.plant("s/.tmp-0123456789abcdef", b"left by a crash")
    harness.plant(".tmp-fedcba9876543210", b"at the top")
    harness.plant("s/.hidden", b"not ours")
    assert await b.sweep_temp(older_than=3600) == 0  # too fresh
    assert await b.sweep_temp(older_than=0) == 2
    assert await b.sweep_temp(older_than=0) == 0
    assert sorted(harness.raw_names()) == ["s/.hidden", "s/real", "top"]
    assert names(await b.list()) == ["s/real", "top"]


async def test_concurrent_puts_and_gets(backend: Backend) -> None:
    shared = blob(200_000, seed=9)
    await backend.put("shared", shared)
    values = {f"conc/{i:02d}/obj": blob(1000 + i * 5000, seed=i) for i in range(20)}
    problems: list[str] = []

    async def writer_reader(name: str, value: bytes) -> None:
        await backend.put(name, value)
        if await backend.get(name) != value:
            problems.append(name)
        if await backend.get(name, 500, 700) != value[500:1200]:
            problems.append(name + " range")
        if await backend.get("shared", 1000, 5000) != shared[1000:6000]:
            problems.append("shared")

    with trio.fail_after(60):
        async with trio.open_nursery() as n:
            for name, value in values.items():
                n.start_soon(writer_reader, name, value)
    assert problems == []
    assert names(await backend.list("conc/")) == sorted(values)


async def test_readers_never_see_a_partial_overwrite(backend: Backend) -> None:
    """While a name is overwritten, readers get the old or the new value, whole.

    Backends whose overwrite is delete + rename (`atomic_overwrite = False`:
    webdav, rclone) may also answer NotFound or fail transiently (the server
    lost the file mid-response) for a moment, but never give torn bytes.
    """
    a, b = blob(300_000, seed=3), blob(300_000, seed=4)
    await backend.put("ow/x", a)
    seen: list[str] = []
    done = False

    async def writer() -> None:
        nonlocal done
        for i in range(8):
            await backend.put("ow/x", b if i % 2 == 0 else a)
        done = True

    async def reader() -> None:
        while not done:
            try:
                got = await backend.get("ow/x")
            except NotFound:
                seen.append("notfound")
                continue
            except TransientError:  # e.g. the server lost the file mid-response
                seen.append("transient")
                continue
            seen.append("ok" if got in (a, b) else f"torn:{len(got)}")

    with trio.fail_after(60):
        async with trio.open_nursery() as n:
            n.start_soon(writer)
            for _ in range(4):
                n.start_soon(reader)
    assert not [s for s in seen if s.startswith("torn")]
    if getattr(backend, "atomic_overwrite", True):
        assert "notfound" not in seen and "transient" not in seen
    assert "ok" in seen
    assert await backend.get("ow/x") == a


async def test_usage_counts_bytes_and_objects(harness: Harness) -> None:
    b = harness.backend
    u = await b.usage()
    assert (u.used, u.objects) == (0, 0)
    await b.put("u/a", b"x" * 100)
    await b.put("u/b/c", b"y" * 2000)
    await b.put("u/empty", b"")
    harness.plant("u/.tmp-junk", b"z" * 50)  # temp files are not usage
    u = await b.usage()
    assert (u.used, u.objects) == (2100, 3)
    await b.delete("u/a")
    u = await b.usage()
    assert (u.used, u.objects) == (2000, 2)


async def test_close_twice_is_safe(backend: Backend) -> None:
    await backend.put("k", b"v")
    await backend.close()
    await backend.close()


async def test_async_context_manager(harness: Harness) -> None:
    async with harness.backend as b:
        await b.put("cm", b"1")
        assert await b.get("cm") == b"1"
