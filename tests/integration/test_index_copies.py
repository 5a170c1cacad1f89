"""Index copies on backends grow by the change: one log per save, a snapshot now and then.

Real dir backends in temp folders, driven through the CLI (separate processes) and
the Python API (to inject failures between the local commit and the upload, and
to lower the snapshot thresholds). After every scenario a fresh home recovers
from a backend and must hold exactly the original's names, files, chunk records
and packs.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from mosaic import Node as Api
from mosaic.backends.errors import TransientError
from mosaic.node.cloud import indexlog, indexrecover
from mosaic.node.errors import IntegrityError, StorageError
from mosaic.node.store.home import BackendConfig

from .conftest import Node, b3, mosaic_env, new_node

# ---------------------------------------------------------------- helpers

def index_objects(root: Path) -> dict[str, int]:
    """'<tag>/snap-…' / '<tag>/log-…' -> size, of a dir backend's index copies."""
    d = root / "index"
    if not d.exists():
        return {}
    return {p.relative_to(d).as_posix(): p.stat().st_size for p in d.rglob("*")
            if p.is_file() and not p.name.startswith(".")}


def kinds_and_seqs(objs: dict[str, int]) -> list[tuple[str, int]]:
    out = []
    for k in objs:
        kind, seq = k.rsplit("/", 1)[1].split("-")
        out.append((kind, int(seq, 16)))
    return sorted(out, key=lambda x: x[1])


def assert_snapshot_then_logs(objs: dict[str, int]) -> None:
    """One snapshot, then logs numbered on from it without a gap."""
    ks = kinds_and_seqs(objs)
    assert ks and ks[0][0] == "snap", ks
    assert [k for k, _ in ks[1:]] == ["log"] * (len(ks) - 1), ks
    assert [s for _, s in ks] == list(range(ks[0][1], ks[0][1] + len(ks))), ks


def index_state(home: Path) -> dict:
    """Everything an index copy must reproduce (pack locations too; not the local cache flag)."""
    with Api.open(home) as n:
        return state_of(n)


def state_of(n: Api) -> dict:
    idx = n.index
    with idx.read() as txn:
        files = {}
        for fid in idx.iter_manifest_ids(txn):
            m = idx.get_manifest(fid, txn)
            assert m is not None
            files[fid] = (m.size, m.created_ns, m.chunks)
        return {
            "names": dict(idx.iter_names("", txn)),
            "files": files,
            "chunks": {c: (r.pack_id, r.offset, r.stored_len, r.plain_len, r.refcount)
                       for c, r in idx.iter_chunks(txn)},
            "packs": {p: (r.size, r.n_chunks, r.locations) for p, r in idx.iter_packs(txn)},
        }


def api_node(home: Path, backends: dict[str, Path], key_file: Path | None = None) -> Api:
    """A node home (created if missing) with these dir backends, opened through the API."""
    if not home.exists():
        Api.init(home, no_passphrase=True, key_file=key_file, pack_size=1 << 20).close()
    for p in backends.values():
        p.mkdir(parents=True, exist_ok=True)  # a dir backend's root exists (backend add makes it)
    with Api.open(home) as n:
        cfg = n.config
        n.home.write_config(replace(cfg, backends=tuple(
            BackendConfig(name, "dir", {"path": str(p)}) for name, p in backends.items())))
    return Api.open(home)


def recovered(tmp: Path, old_home: Path, backends: dict[str, Path], source: str) -> dict:
    """A fresh home with the old key recovers from `source`; its index state."""
    home = tmp / f"recovered-{source}-{len(list(tmp.glob('recovered-*')))}"
    with api_node(home, backends, key_file=old_home / "key.json") as n:
        indexrecover.recover(n.cloud, source)
    return index_state(home)


def put_files(n: Api, files: dict[str, bytes]) -> None:
    with n.ingest() as s:
        for name, data in files.items():
            s.put_source(data, name)


def small_files(count: int, tag: str = "f") -> dict[str, bytes]:
    return {f"tree/d{i % 20:02d}/{tag}-{i:05d}.txt": f"{tag} file {i}\n".encode() * (5 + i % 17)
            for i in range(count)}


class Killed(BaseException):
    """The process 'dies' here (nothing after it runs, no except clause catches it)."""


def intercept_index_puts(monkeypatch: pytest.MonkeyPatch, n: Api, backend: str, when: str) -> None:
    """Make index-copy uploads to `backend` fail ("before": the backend errs) or the
    process die right after the object is stored ("after": a crash before the local commit)."""
    hub = n.hub
    assert hub is not None
    real_run = hub.run
    target = hub.backends[backend]

    def run(afn, *args):  # noqa: ANN001, ANN002, ANN202
        hit = (getattr(afn, "__self__", None) is target and getattr(afn, "__name__", "") == "put"
               and str(args[0]).startswith("index/"))
        if hit and when == "before":
            raise TransientError(f"dir {backend}: injected failure")
        out = real_run(afn, *args)
        if hit and when == "after":
            raise Killed(args[0])
        return out

    monkeypatch.setattr(hub, "run", run)


# ---------------------------------------------------------------- CLI scenarios

def test_rm_and_mv_upload_the_change_not_the_index(tmp_path: Path, node: Node) -> None:
    """2,000 files; 10 rm and 10 mv each upload one small log, not a 2,000-file snapshot;
    gc and a later put log too; a fresh home recovers exactly the same index."""
    nas = tmp_path / "nas"
    node.init_node("--pack-size", "1MiB")
    node.add_dir("nas", nas)
    src = tmp_path / "src"
    files = small_files(2000)
    for name, data in files.items():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_bytes(data)
    node.ok("put", "-r", src / "tree", "--name", "tree", timeout=300)
    objs = index_objects(nas)
    assert len(objs) == 1 and "/snap-" in next(iter(objs)), objs
    snapshot_bytes = next(iter(objs.values()))

    names = sorted(files)
    per_op: list[int] = []
    seen = dict(objs)
    for i in range(10):
        node.ok("rm", names[i * 37], timeout=60)
        node.ok("mv", names[i * 37 + 1], f"moved/{i}.txt", timeout=60)
    # every op added exactly one object: a log with the next number
    now = index_objects(nas)
    new = {k: v for k, v in now.items() if k not in seen}
    assert len(new) == 20 and all("/log-" in k for k in new), sorted(new)
    assert_snapshot_then_logs(now)
    per_op = list(new.values())
    total = sum(per_op)
    print(f"\nindex of 2,000 files: snapshot {snapshot_bytes} B; 20 rm/mv uploaded {total} B "
          f"(max {max(per_op)} B per op) instead of {20 * snapshot_bytes} B")
    assert max(per_op) < 1024, per_op
    assert total < snapshot_bytes / 20, (total, snapshot_bytes)

    seen = dict(now)
    node.ok("gc", timeout=120)
    node.ok("put", "-", "--name", "late.txt", input=b"a late file\n", timeout=60)
    now = index_objects(nas)
    new = {k: v for k, v in now.items() if k not in seen}
    assert len(new) == 2 and all("/log-" in k for k in new), new
    assert_snapshot_then_logs(now)

    expected = index_state(node.home)
    assert len(expected["files"]) == 2000 - 10 + 1
    key = tmp_path / "key.json"
    node.ok("key", "export", "-o", key, timeout=30)
    fresh = new_node(tmp_path, "fresh")
    fresh.ok("init", "--no-passphrase", "--key-file", key, timeout=30)
    fresh.add_dir("nas", nas)
    res = fresh.doc("recover", "--from", "nas", timeout=120)
    assert res["objects"] == len(now), res  # type: ignore[index]
    assert index_state(fresh.home) == expected
    for i in range(10):
        assert fresh("get", names[i * 37], "-", timeout=30).rc == 1
        assert fresh("exists", b3(files[names[i * 37]]), timeout=30).rc == 1
        assert fresh.ok("get", f"moved/{i}.txt", "-", timeout=30).out == files[names[i * 37 + 1]]
    assert fresh.ok("get", "late.txt", "-", timeout=30).out == b"a late file\n"
    assert fresh.doc("verify", "--all", timeout=120)["ok"]  # type: ignore[index]

    # the recovered node's copy starts with a snapshot numbered after the old node's objects,
    # so recovering once more picks the new node
    fresh.ok("rm", "late.txt", timeout=60)
    mine = {k: v for k, v in index_objects(nas).items() if k not in now}
    assert len(mine) == 1 and "/snap-" in next(iter(mine)), mine
    assert min(s for _, s in kinds_and_seqs(mine)) > max(s for _, s in kinds_and_seqs(now))
    again = new_node(tmp_path, "again")
    again.ok("init", "--no-passphrase", "--key-file", key, timeout=30)
    again.add_dir("nas", nas)
    again.ok("recover", "--from", "nas", timeout=120)
    assert index_state(again.home) == index_state(fresh.home)
    assert again("get", "late.txt", "-", timeout=30).rc == 1


def test_a_missing_middle_log_is_refused(tmp_path: Path, node: Node) -> None:
    """A log deleted between the snapshot and the newest log: recover from that backend
    fails with one clear line (and leaves the node empty); the other backend still works."""
    nas, usb = tmp_path / "nas", tmp_path / "usb"
    node.init_node()
    node.add_dir("nas", nas)
    node.add_dir("usb", usb)
    for i in range(4):
        node.ok("put", "-", "--name", f"f{i}", input=f"file {i}\n".encode() * 50, timeout=60)
    node.ok("rm", "f1", timeout=60)
    node.ok("mv", "f2", "g2", timeout=60)
    objs = index_objects(nas)
    assert_snapshot_then_logs(objs)
    assert objs.keys() == index_objects(usb).keys()
    ks = kinds_and_seqs(objs)
    assert len(ks) >= 4
    victim = next(k for k in objs if k.endswith(f"log-{ks[2][1]:016x}"))
    (nas / "index" / victim).unlink()
    expected = index_state(node.home)

    key = tmp_path / "key.json"
    node.ok("key", "export", "-o", key, timeout=30)
    fresh = new_node(tmp_path, "fresh")
    fresh.ok("init", "--no-passphrase", "--key-file", key, timeout=30)
    fresh.add_dir("nas", nas)
    fresh.add_dir("usb", usb)
    r = fresh("recover", "--from", "nas", timeout=120)
    assert r.rc == 3, r
    lines = r.err.strip().splitlines()
    assert len(lines) == 1 and "missing" in lines[0] and f"{ks[2][1]:016x}" in lines[0], r.err
    assert fresh.doc("ls", timeout=30) == []
    fresh.ok("recover", "--from", "usb", timeout=120)
    assert index_state(fresh.home) == expected


def test_killed_between_local_commit_and_upload(tmp_path: Path, node: Node) -> None:
    """A process SIGKILLed after rm and mv committed locally, before their upload: the next
    save (another command) sends them, in one log."""
    nas = tmp_path / "nas"
    node.init_node()
    node.add_dir("nas", nas)
    for i in range(5):
        node.ok("put", "-", "--name", f"f{i}", input=f"file {i}\n".encode() * 50, timeout=60)
    before = index_objects(nas)
    script = ("import os, signal, sys\n"
              "from mosaic import Node\n"
              "n = Node.open(sys.argv[1])\n"
              "n.rm('f1')\n"
              "n.mv('f2', 'moved/f2')\n"
              "os.kill(os.getpid(), signal.SIGKILL)\n")
    p = subprocess.run([sys.executable, "-c", script, str(node.home)], env=mosaic_env(),
                       capture_output=True, timeout=60)
    assert p.returncode == -signal.SIGKILL, p
    assert index_objects(nas) == before  # nothing was uploaded
    assert node.ok("get", "moved/f2", "-", timeout=30).out == b"file 2\n" * 50
    node.ok("rm", "f3", timeout=60)
    after = index_objects(nas)
    new = {k for k in after if k not in before}
    assert len(new) == 1 and "/log-" in next(iter(new)), new
    assert_snapshot_then_logs(after)
    expected = index_state(node.home)
    assert set(expected["names"]) == {"f0", "moved/f2", "f4"}
    assert recovered(tmp_path, node.home, {"nas": nas}, "nas") == expected


# ---------------------------------------------------------------- API scenarios

def test_a_failing_backend_catches_up_in_one_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """While one backend refuses index objects, the other gets a log per change and the
    journal keeps the changes; once it is back it gets one log with all of them, numbered
    right after its last object."""
    a, b = tmp_path / "a", tmp_path / "b"
    home = tmp_path / "home"
    with api_node(home, {"a": a, "b": b}) as n:
        put_files(n, small_files(60))
        assert n.index.count("journal") == 0
        names = sorted(n.names_under("tree"), key=lambda e: e.name)
        with monkeypatch.context() as mp:
            intercept_index_puts(mp, n, "b", "before")
            for e in names[:3]:
                n.rm(e.name)
                with pytest.raises(StorageError, match="injected"):
                    n.save_index_copy()
            n.mv(names[3].name, "moved.txt")
            with pytest.raises(StorageError, match="injected"):
                n.save_index_copy()
            assert n.index.count("journal") == 4 * 2  # the names and the files, kept for b
        assert len(index_objects(a)) == 1 + 4 and len(index_objects(b)) == 1
        n.save_index_copy()
        assert n.index.count("journal") == 0
        ob = index_objects(b)
        assert_snapshot_then_logs(ob)
        assert len(ob) == 2  # one log with all four changes
        assert_snapshot_then_logs(index_objects(a))
    expected = index_state(home)
    assert len(expected["files"]) == 57 and "moved.txt" in expected["names"]
    assert recovered(tmp_path, home, {"a": a, "b": b}, "b") == expected
    assert recovered(tmp_path, home, {"a": a, "b": b}, "a") == expected


def test_crash_after_a_log_is_stored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Dead after storing log N but before recording it: the next save stores log N again,
    with that change and the new ones."""
    nas, home = tmp_path / "nas", tmp_path / "home"
    with api_node(home, {"nas": nas}) as n:
        put_files(n, small_files(30))
        with monkeypatch.context() as mp:
            intercept_index_puts(mp, n, "nas", "after")
            n.rm("tree/d00/f-00000.txt")
            with pytest.raises(Killed):
                n.save_index_copy()
    objs = index_objects(nas)
    assert [k for k, _ in kinds_and_seqs(objs)] == ["snap", "log"]
    with api_node(home, {"nas": nas}) as n:
        n.rm("tree/d01/f-00001.txt")
        n.save_index_copy()
    again = index_objects(nas)
    assert again.keys() == objs.keys()  # the same log, rewritten
    expected = index_state(home)
    assert "tree/d00/f-00000.txt" not in expected["names"]
    assert "tree/d01/f-00001.txt" not in expected["names"]
    assert recovered(tmp_path, home, {"nas": nas}, "nas") == expected


def test_crash_after_a_snapshot_is_stored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Dead after storing snapshot N but before recording it: the next save must not write a
    log N beside it (recover would skip it); it writes snapshot N again."""
    nas, home = tmp_path / "nas", tmp_path / "home"
    with api_node(home, {"nas": nas}) as n:
        put_files(n, small_files(30))
        n.rm("tree/d02/f-00002.txt")
        n.save_index_copy()
        with monkeypatch.context() as mp:
            intercept_index_puts(mp, n, "nas", "after")
            with pytest.raises(Killed):
                n.compact_index_copies()
    objs = kinds_and_seqs(index_objects(nas))
    assert [k for k, _ in objs] == ["snap", "log", "snap"], objs
    with api_node(home, {"nas": nas}) as n:
        n.rm("tree/d03/f-00003.txt")
        n.save_index_copy()
    assert kinds_and_seqs(index_objects(nas)) == [("snap", objs[-1][1])]
    expected = index_state(home)
    assert "tree/d03/f-00003.txt" not in expected["names"]
    assert recovered(tmp_path, home, {"nas": nas}, "nas") == expected


@pytest.mark.parametrize("limit", ["count", "size"])
def test_a_snapshot_now_and_then(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, limit: str) -> None:
    """Logs give way to a snapshot after MAX_LOGS of them (or once they outgrow LOG_SHARE of
    the snapshot); the snapshot deletes what it supersedes."""
    if limit == "count":
        monkeypatch.setattr(indexlog, "MAX_LOGS", 4)
    else:
        monkeypatch.setattr(indexlog, "LOG_FLOOR", 0)
    nas, home = tmp_path / "nas", tmp_path / "home"
    snaps = 0
    with api_node(home, {"nas": nas}) as n:
        put_files(n, small_files(200))
        snap = next(iter(index_objects(nas).values()))
        names = sorted(e.name for e in n.names_under("tree"))
        for i in range(14):
            n.rm(names[i])
            n.save_index_copy()
            objs = index_objects(nas)
            if i == 0 and limit == "size":  # about four such logs fit in this share of the snapshot
                log_size = min(objs.values())
                monkeypatch.setattr(indexlog, "LOG_SHARE", 4.5 * log_size / snap)
            assert_snapshot_then_logs(objs)
            assert len(objs) <= 5, objs
            snaps += len(objs) == 1
    assert snaps >= 2
    expected = index_state(home)
    assert len(expected["files"]) == 186
    assert recovered(tmp_path, home, {"nas": nas}, "nas") == expected


def test_partial_recover_stops_before_the_gap(tmp_path: Path) -> None:
    """`recover(partial=True)` rebuilds the state as of the last log before a missing one."""
    nas, home = tmp_path / "nas", tmp_path / "home"
    with api_node(home, {"nas": nas}) as n:
        put_files(n, small_files(10))
        names = sorted(e.name for e in n.names_under("tree"))
        n.rm(names[0])
        n.save_index_copy()
        mid = state_of(n)
        n.rm(names[1])
        n.save_index_copy()
        n.rm(names[2])
        n.save_index_copy()
    ks = kinds_and_seqs(index_objects(nas))
    victim = next(p for p in (nas / "index").rglob(f"log-{ks[2][1]:016x}"))
    victim.unlink()
    fresh = tmp_path / "fresh"
    with api_node(fresh, {"nas": nas}, key_file=home / "key.json") as f:
        with pytest.raises(IntegrityError, match="missing"):
            indexrecover.recover(f.cloud, "nas")
        assert f.index.count("manifests") == 0
        res = indexrecover.recover(f.cloud, "nas", partial=True)
        assert res["objects"] == 2
    assert index_state(fresh) == mid


def test_no_backends_no_journal(tmp_path: Path) -> None:
    """Without backends nothing is journaled (the journal costs only where copies are kept)."""
    home = tmp_path / "home"
    with api_node(home, {}) as n:
        put_files(n, small_files(10))
        n.rm("tree/d00/f-00000.txt")
        n.save_index_copy()
        assert n.index.count("journal") == 0
    nas = tmp_path / "nas"
    with api_node(home, {"nas": nas}) as n:
        n.save_index_copy()  # the first save: a snapshot, and the journal starts
        n.rm("tree/d01/f-00001.txt")
        assert n.index.count("journal") == 2
        n.save_index_copy()
        assert n.index.count("journal") == 0
    assert [k for k, _ in kinds_and_seqs(index_objects(nas))] == ["snap", "log"]
    with api_node(home, {}) as n:  # the backend removed: the journal stops
        n.save_index_copy()
        n.rm("tree/d02/f-00002.txt")
        assert n.index.count("journal") == 0


def test_a_save_before_recover_does_not_shadow_the_old_copy(tmp_path: Path) -> None:
    """The fresh node's own (empty) copy, numbered after the old node's, is not what recover picks."""
    nas, home = tmp_path / "nas", tmp_path / "home"
    with api_node(home, {"nas": nas}) as n:
        put_files(n, small_files(10))
        n.rm("tree/d00/f-00000.txt")
        n.save_index_copy()
    expected = index_state(home)
    fresh = tmp_path / "fresh"
    with api_node(fresh, {"nas": nas}, key_file=home / "key.json") as f:
        f.save_index_copy()
        assert len({k.split("/")[0] for k in index_objects(nas)}) == 2
        indexrecover.recover(f.cloud, "nas")
    assert index_state(fresh) == expected
