"""The Python API (`from node import Node`)."""

from __future__ import annotations

import io
import json
import random
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import blake3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mosaic import MosaicError, Node
from mosaic.node.errors import (
    BusyError,
    HomeError,
    IntegrityError,
    KeyFileError,
    NotFoundError,
    UsageError,
)
from tests.conftest import PASSPHRASE, SMALL_CHUNKS, Cli, assert_one_line_error, mosaic_env

SMALL = dict(chunk_min=1024, chunk_avg=4096, chunk_max=16384)


def b3(data: bytes) -> str:
    return blake3.blake3(data).hexdigest()


def _data(seed: int, size: int) -> bytes:
    rng = random.Random(seed)
    out = bytearray()
    while len(out) < size:
        n = rng.randint(1000, 30_000)
        out += rng.randbytes(n) if rng.random() < 0.6 else (b"%d text " % rng.randrange(99)) * (n // 8)
    return bytes(out[:size])


class Shared(tuple):
    """(node, files) with a short repr, so hypothesis reports stay readable."""

    def __repr__(self) -> str:
        return "<shared node and files>"


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Node, dict[str, bytes]]]:
    """One node with a few files, for tests that only read."""
    home = tmp_path_factory.mktemp("api") / "home"
    files = {"big": _data(1, 300_000), "small": b"small file", "empty": b"",
             "one-chunk": _data(2, 900)}
    with Node.init(home, no_passphrase=True, **SMALL) as n:
        for name, data in files.items():
            n.put(data, name=name)
    node = Node.open(home)
    yield Shared((node, files))
    node.close()


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    n = Node.init(tmp_path / "home", no_passphrase=True, **SMALL)
    yield n
    n.close()


def test_init_and_open(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with Node.init(home, passphrase="pw-api", **SMALL) as n:
        key_id = n.keys.key_id
        assert n.config.chunk_avg == 4096
        res = n.put(b"hello api", name="hello")
    with Node.open(home, passphrase="pw-api") as n:
        assert n.keys.key_id == key_id
        assert n.get("hello") == b"hello api"
        assert n.get(res.hash) == b"hello api"
    with pytest.raises(KeyFileError):
        Node.open(home, passphrase="wrong")
    with pytest.raises(KeyFileError):
        Node.open(home)  # MOSAIC_PASSPHRASE is the test passphrase, not this node's
    with pytest.raises(HomeError):
        Node.open(tmp_path / "nowhere")
    with pytest.raises(UsageError):  # exit code 2, not 6 ("home missing")
        Node.init(home, passphrase="again")
    with pytest.raises(UsageError):
        Node.init(tmp_path / "other")  # neither a passphrase nor no_passphrase
    with pytest.raises(UsageError):
        Node.init(tmp_path / "bad", no_passphrase=True, chunk_min=10)
    # the environment passphrase is the default
    with Node.init(tmp_path / "env", passphrase=PASSPHRASE) as n:
        n.put(b"x", name="x")
    with Node.open(tmp_path / "env") as n:
        assert n.get("x") == b"x"


def test_put_sources(node: Node, tmp_path: Path) -> None:
    data = _data(3, 120_000)
    r1 = node.put(data, name="from/bytes")
    assert r1.hash == b3(data) and r1.size == len(data) and r1.names == ("from/bytes",)
    assert r1.new_bytes > 0 and r1.chunks >= len(data) // 16384
    p = tmp_path / "file.bin"
    p.write_bytes(data)
    r2 = node.put(p, name="from/path")
    assert r2.hash == r1.hash and r2.new_bytes == 0 and r2.new_chunks == 0
    r3 = node.put(str(p))  # no name: reachable by hash only
    assert r3.hash == r1.hash and r3.names == ()
    with open(p, "rb") as f:
        r4 = node.put(f, name="from/stream")
    assert r4.hash == r1.hash
    r5 = node.put(io.BytesIO(b"stream data"), name="s")
    assert r5.hash == b3(b"stream data")
    r6 = node.put(memoryview(b"view"), name="v")
    assert r6.hash == b3(b"view")
    assert node.put(b"").hash == b3(b"")
    with pytest.raises(NotFoundError):
        node.put(tmp_path / "missing")
    with pytest.raises(UsageError):
        node.put(tmp_path)
    with pytest.raises(UsageError):
        node.put(b"x", name="../up")
    # many files in one session
    with node.ingest() as s:
        pending = [s.put_source(_data(10 + i, 5000 * i), name=f"batch/{i}") for i in range(8)]
    for i, res in enumerate(s.results):
        assert res.hash == b3(_data(10 + i, 5000 * i))
    assert len(pending) == 8
    assert [e.name for e in node.ls("batch/")] == [f"batch/{i}" for i in range(8)]


def test_files_sharing_batches(node: Node, tmp_path: Path) -> None:
    """Consecutive files share worker batches: each keeps its own chunks, in order,
    and copies of one chunk within a batch are stored once."""
    rng = random.Random(31)
    common = rng.randbytes(20_000)
    files: list[bytes] = []
    for i in range(300):
        kind = i % 6
        files.append(b"" if kind == 0 else common if kind == 1 else
                     rng.randbytes(rng.randrange(1, 3000)) if kind == 2 else
                     common[:9000] + rng.randbytes(500) if kind == 3 else
                     rng.randbytes(rng.randrange(10_000, 60_000)))
    files.insert(150, rng.randbytes(3 << 20))  # a larger file in the middle
    big = tmp_path / "streamed.bin"
    big.write_bytes(rng.randbytes(5 << 20))  # above the read-whole limit: streamed
    with node.ingest() as s:
        for i, data in enumerate(files):
            s.put_source(data, name=f"mix/{i:03d}")
            if i == 200:
                s.put_source(big, name="mix/streamed")
    results = s.results
    assert [r.hash for r in results] == [b3(d) for d in files[:201]] + [b3(big.read_bytes())] + \
        [b3(d) for d in files[201:]]
    for i, data in enumerate(files):
        assert node.get(f"mix/{i:03d}") == data
    assert node.get("mix/streamed") == big.read_bytes()
    # the shared 20 kB prefix was stored once: later copies added nothing
    copies = [r for r, d in zip(results[:201], files[:201], strict=True) if d == common]
    assert copies[0].new_chunks > 0 and all(r.new_bytes == 0 for r in copies[1:])
    rep = node.verify()
    assert rep.errors == [] and rep.files == len({*map(bytes, files), big.read_bytes()})


def test_get_variants(shared: tuple[Node, dict[str, bytes]], tmp_path: Path) -> None:
    node, files = shared
    big = files["big"]
    assert node.get("big") == big
    assert node.get(b3(big)) == big
    assert node.get("empty") == b""
    buf = io.BytesIO()
    assert node.get("big", buf) == len(big) and buf.getvalue() == big
    assert node.get("big", tmp_path / "d" / "out.bin") == len(big)
    assert (tmp_path / "d" / "out.bin").read_bytes() == big
    assert b"".join(node.read("big")) == big
    rng = random.Random(4)
    for _ in range(40):
        off = rng.randrange(0, len(big) + 100)
        length = rng.choice([None, 0, 1, rng.randrange(0, 50_000)])
        want = big[off:] if length is None else big[off:off + length]
        assert node.get("big", offset=off, length=length) == want, (off, length)
        assert b"".join(node.read("big", off, length)) == want
    with pytest.raises(NotFoundError):
        node.get(b3(b"unknown"))
    with pytest.raises(NotFoundError):
        node.get("no/such/name")
    with pytest.raises(UsageError):
        node.get("0123456789abcdef0123")


def test_node_open_is_a_file_like_stream(shared: tuple[Node, dict[str, bytes]]) -> None:
    node, files = shared
    big = files["big"]
    with node.open("big") as f:
        assert f.readable() and f.seekable()
        assert f.read() == big
        assert f.read() == b"" and f.tell() == len(big)
        f.seek(0)
        assert f.read(10) == big[:10]
        # like any Python binary file: read(n) gives n bytes unless at the end
        f.seek(1000)
        assert len(f.read(100_000)) == 100_000, "read(n) returned a short read mid-file"
        f.seek(-5, io.SEEK_END)
        assert f.read(None) == big[-5:]
    assert f.closed
    with pytest.raises(ValueError):
        f.read(1)
    with node.open(b3(files["empty"])) as f:
        assert f.read() == b"" and f.read(5) == b""
    with pytest.raises(NotFoundError):
        node.open("missing")


ops = st.lists(st.one_of(
    st.tuples(st.just("seek"), st.integers(0, 320_000), st.just(0)),
    st.tuples(st.just("seek"), st.integers(-50_000, 50_000), st.sampled_from([1, 2])),
    st.tuples(st.just("read"), st.integers(-1, 70_000)),
    st.tuples(st.just("readinto"), st.integers(0, 70_000)),
    st.tuples(st.just("tell"), st.none()),
), max_size=25)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(script=ops, which=st.sampled_from(["big", "small", "one-chunk", "empty"]))
def test_node_open_behaves_like_bytesio(shared: tuple[Node, dict[str, bytes]],
                                        script: list[tuple], which: str) -> None:
    node, files = shared
    ref = io.BytesIO(files[which])
    with node.open(which) as f:
        for op, arg, *rest in script:
            if op == "seek":
                whence = rest[0]
                target = {0: 0, 1: ref.tell(), 2: len(files[which])}[whence] + arg
                if target < 0:
                    # BytesIO clamps to 0, a real file raises; either way the position is kept
                    pos = f.tell()
                    with pytest.raises((ValueError, OSError)):
                        f.seek(arg, whence)
                    assert f.tell() == pos
                    continue
                assert f.seek(arg, whence) == ref.seek(arg, whence)
            elif op == "read":
                got, want = f.read(arg), ref.read(arg)
                assert got == want, f"read({arg}) at {ref.tell() - len(want)}: got {len(got)} bytes, want {len(want)}"
            elif op == "readinto":
                b1, b2 = bytearray(arg), bytearray(arg)
                assert f.readinto(b1) == ref.readinto(b2)
                assert b1 == b2
            assert f.tell() == ref.tell()


def test_exists_ls_rm_mv(node: Node) -> None:
    a, b = _data(20, 30_000), _data(21, 30_000)
    ha = node.put(a, name="dir/a").hash
    hb = node.put(b, name="dir/b").hash
    node.put(b, name="other/b")
    assert node.exists(ha) and node.exists(hb.upper())
    assert not node.exists(b3(b"nothing"))
    with pytest.raises(UsageError):
        node.exists("dir/a")
    assert [(e.name, e.file_id.hex(), e.size) for e in node.ls()] == [
        ("dir/a", ha, len(a)), ("dir/b", hb, len(b)), ("other/b", hb, len(b))]
    assert [e.name for e in node.ls("dir/")] == ["dir/a", "dir/b"]
    assert [e.name for e in node.ls("dir/b")] == ["dir/b"]
    assert node.ls("zzz") == []
    assert node.rm("dir/a") == ["dir/a"]
    assert not node.exists(ha)
    with pytest.raises(NotFoundError):
        node.get("dir/a")
    with pytest.raises(NotFoundError):
        node.rm("dir/a")
    node.mv("dir/b", "renamed/b")
    assert node.get("renamed/b") == b
    with pytest.raises(NotFoundError):
        node.get("dir/b")
    with pytest.raises(NotFoundError):
        node.mv("dir/b", "x")
    assert sorted(node.rm(hb)) == ["other/b", "renamed/b"]
    assert node.ls() == [] and not node.exists(hb)


def test_export_import_round_trip(tmp_path: Path) -> None:
    files = {f"f{i}": _data(30 + i, 10_000 * i) for i in range(5)}
    with Node.init(tmp_path / "a", no_passphrase=True, **SMALL) as a:
        for name, data in files.items():
            a.put(data, name=name)
        a.put(files["f3"], name="alias/f3")
        dump = a.export()
        partial = a.export(["f1", b3(files["f2"])])
        a_ls = a.ls()
        assert a.import_(dump) == {"files": 5, "new_files": 0, "new_chunks": 0, "names": 0}
    doc = json.loads(dump)
    assert len(doc["files"]) == 5
    assert sorted(f["id"] for f in json.loads(partial)["files"]) == sorted(
        [b3(files["f1"]), b3(files["f2"])])
    with Node.init(tmp_path / "b", no_passphrase=True, key_file=tmp_path / "a" / "key.json") as b:
        stats = b.import_(dump)
        assert stats["new_files"] == 5 and stats["names"] == 6
        assert b.ls() == a_ls
        for data in files.values():
            assert b.exists(b3(data))
        again = json.loads(b.export())
        for d in (again, doc):  # the time of export differs, and so the MAC over it
            d.pop("exported")
            d.pop("mac")
        assert again == doc
        assert b.import_(dump)["new_files"] == 0
        with pytest.raises(MosaicError):  # the packs are only on node A's disk
            b.get("f4")
    # with A's packs copied over, B reads everything
    shutil.copytree(tmp_path / "a" / "packs", tmp_path / "b" / "packs", dirs_exist_ok=True)
    with Node.open(tmp_path / "b") as b:
        for name, data in files.items():
            assert b.get(name) == data
        assert b.get("alias/f3") == files["f3"]
    # a node with another key refuses the dump: its MAC does not hold there
    with Node.init(tmp_path / "c", no_passphrase=True, **SMALL) as c:
        with pytest.raises(IntegrityError, match="another key"):
            c.import_(dump)
        assert c.ls() == []


def _tree(root: Path, seed: int, n: int) -> dict[str, bytes]:
    rng = random.Random(seed)
    out = {}
    for i in range(n):
        rel = f"d{i % 4}/file-{seed}-{i}.bin"
        data = rng.randbytes(rng.randint(0, 60_000))
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
        out[rel] = data
    out["big.bin"] = rng.randbytes(3 << 20)
    (root / "big.bin").write_bytes(out["big.bin"])
    return out


def test_two_puts_at_once(tmp_path: Path) -> None:
    cli = Cli(tmp_path / "home", cwd=tmp_path)
    cli.ok("init", "--no-passphrase", *SMALL_CHUNKS, "--pack-size", "256KiB")
    trees = {name: _tree(tmp_path / name, seed, 40) for seed, name in enumerate(["t1", "t2"])}
    procs = [subprocess.Popen([sys.executable, "-m", "mosaic", "--home", str(cli.home), "put",
                               "-r", name], cwd=tmp_path, env=mosaic_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for name in trees]
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()
        outs.append(out.decode())
    for (name, files), out in zip(trees.items(), outs, strict=True):
        assert set(out.splitlines()) == {f"{b3(d)}  {name}/{rel}" for rel, d in files.items()}
    assert cli.doc("verify", "--all")["ok"] is True
    listed = {e["name"]: e["hash"] for e in cli.doc("ls")}
    for name, files in trees.items():
        for rel, data in files.items():
            assert listed[f"{name}/{rel}"] == b3(data)
    cli.ok("get", "-r", "t2", tmp_path / "back")
    for rel, data in trees["t2"].items():
        assert (tmp_path / "back" / rel).read_bytes() == data


def test_gc_waits_for_writers(node: Node) -> None:
    """While a put session holds the node, gc refuses with 'busy' (exit 7), and vice versa."""
    cli = Cli(node.home.root)
    with node.ingest() as s:
        s.put_source(b"in flight", name="busy")
        assert_one_line_error(cli("gc"), 7)
    assert node.get("busy") == b"in flight"
    cli.ok("gc")
    from mosaic.node.store.home import HomeLock
    with HomeLock(node.home, exclusive=True), pytest.raises(BusyError):
        node.put(b"blocked")


def _local_pack_bytes(node: Node) -> int:
    return sum(p.stat().st_size for p in (node.home.packs_dir).rglob("*") if p.is_file())


def test_overlapping_sessions_storing_the_same_content_leave_no_garbage(node: Node) -> None:
    """Two put sessions at once (two processes, or two sessions here) store the same chunks.

    Only one copy gets chunk records; the other pack is garbage. gc must reclaim it,
    and once the file is removed, gc must leave no pack behind.
    """
    data = random.Random(40).randbytes(400_000)
    with node.ingest() as a:
        a.put_source(data, name="a")
        with node.ingest() as b:
            b.put_source(data, name="b")
    assert node.get("a") == data and node.get("b") == data
    st = node.stat("a")
    one_copy = st["stored_bytes"] + 100 * st["chunks"] + 1024  # plus pack magic and trailer
    node.gc()
    assert _local_pack_bytes(node) < one_copy, "a pack of duplicate chunks survives gc"
    node.rm("a")
    node.rm("b")
    node.gc()
    assert _local_pack_bytes(node) == 0, "packs left after every file is gone"


def test_info_counts(tmp_path: Path) -> None:
    cli = Cli(tmp_path / "home", cwd=tmp_path)
    cli.init()
    for n in ("a", "b", "c"):
        (tmp_path / n).write_bytes(n.encode() * 100)
    cli.ok("put", "a", "b", "c")
    cli.ok("put", "a", "--name", "a-again")
    info = cli.doc("info")
    assert info["files"] == 3
    assert info["names"] == 4, "info counts name blocks, not names"
