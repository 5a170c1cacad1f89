"""Replication (syncstore.py, synclog.py, filelog.py) and wantq.py in process, on a real LMDB index (no daemons): the wanted queue
rotates, backs off and expires; location hints are used only for the same backend; the
store refuses what it cannot check; an old log is upgraded to signed entries."""

from __future__ import annotations

import os
from pathlib import Path

import msgpack
import pytest

from mosaic import Node
from mosaic.node.cluster import filelog, namelog, synclog, syncstore
from mosaic.node.cluster.identity import Identity
from mosaic.node.cluster.wantq import ASK_TIMEOUT_S, WantQueue
from mosaic.node.store.home import BackendConfig, Home
from mosaic.protocol.limits import MAX_UINT
from mosaic.protocol.records import (
    ChunkLocation,
    HaveRecord,
    LogEntry,
    ManifestRecord,
    NameRecord,
    Version,
    entry_to_wire,
)
from mosaic.protocol.signing import GENESIS, LogHead, sign_entry


@pytest.fixture
def node(tmp_path: Path):  # noqa: ANN201
    n = Node.init(tmp_path / "n", no_passphrase=True)
    ident = Identity.load_or_create(n.home.root)
    synclog.use_identity(n.index, ident)
    syncstore.enable(n.index, ident.node_id)
    yield n
    n.close()


class Peer:
    """Another node's signed log, built here."""

    def __init__(self, root: Path) -> None:
        self.ident = Identity.load_or_create(root)
        self.id = self.ident.node_id
        self.head: LogHead = GENESIS
        self.seq = 0

    def entry(self, record: object) -> LogEntry:
        self.seq += 1
        e, self.head = sign_entry(self.ident.sign, self.id, self.head, self.seq, record)  # type: ignore[arg-type]
        return e


def _manifest(n_chunks: int, prefix: bytes = b"", locs: tuple[str, ...] = ()) -> ManifestRecord:
    chunks = tuple((prefix + os.urandom(32 - len(prefix)), 10) for _ in range(n_chunks))
    hints = tuple(ChunkLocation(c, b"\x07" * 32, 0, 50, locs) for c, _ in chunks) if locs else ()
    return ManifestRecord(os.urandom(32), 10 * n_chunks, 1, chunks, hints)


def test_refused_until_vouched_then_applied(node: Node, tmp_path: Path) -> None:
    peer = Peer(tmp_path / "p")
    store = syncstore.LmdbSyncStore(node.index)
    page = [peer.entry(_manifest(2))]
    rej = store.apply(peer.id, page)
    assert rej is not None and rej.retry and store.summary().get(peer.id, 0) == 0
    assert synclog.vouch(node.index, peer.ident.cert_der)
    assert not synclog.vouch(node.index, peer.ident.cert_der)  # once
    assert store.apply(peer.id, page) is None and store.summary()[peer.id] == 1
    # what is kept is signed and relayed as it came
    assert store.entries_since(peer.id, 0, 10) == page


def test_bad_signature_and_far_clock(node: Node, tmp_path: Path) -> None:
    peer = Peer(tmp_path / "p")
    synclog.vouch(node.index, peer.ident.cert_der)
    store = syncstore.LmdbSyncStore(node.index)
    e1 = peer.entry(HaveRecord(os.urandom(32), True))
    rej = store.apply(peer.id, [e1._replace(sig=bytes(64))])
    assert rej is not None and "signature" in rej.reason and store.summary().get(peer.id, 0) == 0
    far = peer.entry(NameRecord("far.txt", None, Version(MAX_UINT, peer.id)))
    rej = store.apply(peer.id, [e1, far])
    assert rej is not None and rej.seq == 2 and store.summary()[peer.id] == 1
    assert namelog.name_state(node.index, "far.txt") is None  # not folded in
    node.put(b"still writable", name="far.txt")  # the local clock is untouched


def test_wanted_queue_rotates_caps_and_expires(node: Node, tmp_path: Path) -> None:
    p1, p2 = Peer(tmp_path / "p1"), Peer(tmp_path / "p2")
    for p in (p1, p2):
        synclog.vouch(node.index, p.ident.cert_der)
    store = syncstore.LmdbSyncStore(node.index)
    bogus = _manifest(30, prefix=b"\x00")  # sorts first
    real = _manifest(10, prefix=b"\xff")
    assert store.apply(p1.id, [p1.entry(bogus)]) is None
    assert store.apply(p2.id, [p2.entry(real), p2.entry(HaveRecord(real.file_id, True))]) is None
    ids, cur = filelog.wanted_chunks(node.index, 8, origin_share=4)
    assert len(ids) == 8
    first, _ = filelog.wanted_chunks(node.index, 40, origin_share=4)
    assert sum(c[:1] == b"\xff" for c in first[:8]) == 4  # p2's share before p1 fills up
    seen: set[bytes] = set()
    after = b""
    for _ in range(6):  # the cursor goes round: every entry comes up, not just the first
        ids, after = filelog.wanted_chunks(node.index, 8, after=after)
        seen |= set(ids)
    assert len(seen) == 40
    # p1's chunks: no node holds that file -> they expire; p2's file has a holder
    gone = filelog.expire_wanted(node.index, [c for c, _ in bogus.chunks + real.chunks])
    assert gone == 30 and filelog.wanted_count(node.index) == 10
    # a holder of the bogus file shows up: its chunks are wanted again
    assert store.apply(p1.id, [p1.entry(HaveRecord(bogus.file_id, True))]) is None
    assert filelog.wanted_count(node.index) == 40


def test_want_queue_backs_off_only_when_every_peer_lacks() -> None:
    now = [1000.0]
    q = WantQueue(clock=lambda: now[0])
    a, b = b"a" * 32, b"b" * 32
    q.asked(a, [b"x"], b"x")
    assert b"x" in q.skip_for(b)  # in flight elsewhere
    assert not q.lacked(b"x", a, {a, b})
    assert b"x" in q.skip_for(a) and b"x" not in q.skip_for(b)
    assert q.lacked(b"x", b, {a, b}) and q.attempts(b"x") == 1
    assert b"x" in q.skip_for(a) and b"x" in q.skip_for(b)  # backing off
    now[0] += 2.5
    assert b"x" not in q.skip_for(a)
    q.asked(a, [b"y"], b"y")
    now[0] += ASK_TIMEOUT_S + 1
    assert b"y" not in q.skip_for(b)  # a never answered: ask someone else
    q.lacked(b"x", a, {a})
    q.peer_joined()
    assert b"x" not in q.skip_for(b)


def test_hints_only_for_the_same_backend(node: Node, tmp_path: Path) -> None:
    home = Home(node.home.root)
    cfg = home.read_config()
    from dataclasses import replace
    home.write_config(replace(cfg, backends=(
        BackendConfig("nas", "dir", {"path": str(tmp_path / "nas"), "backend_id": "ab" * 16}),)))
    peer = Peer(tmp_path / "p")
    synclog.vouch(node.index, peer.ident.cert_der)
    store = syncstore.LmdbSyncStore(node.index)
    same = _manifest(2, locs=("ab" * 16,))
    other = _manifest(2, locs=("cd" * 16,))
    assert store.apply(peer.id, [peer.entry(same), peer.entry(other)]) is None
    for c, _ in same.chunks:
        r = node.index.get_chunk(c)
        assert r is not None and node.index.get_pack(r.pack_id).locations == ("nas",)
    wanted = set(filelog.wanted_chunks(node.index, 100)[0])
    assert wanted == {c for c, _ in other.chunks}  # a backend we do not have: from peers
    # a hinted chunk whose read failed is wanted from peers instead
    assert filelog.want_again(node.index, [same.chunks[0][0]]) == 1
    assert filelog.want_again(node.index, [same.chunks[0][0]]) == 0  # once
    assert same.chunks[0][0] in set(filelog.wanted_chunks(node.index, 100)[0])
    with node.index.read() as txn:
        assert filelog.hinted_only(node.index, txn, same.chunks[1][0])


def test_upgrade_signs_an_old_log(tmp_path: Path) -> None:
    n = Node.init(tmp_path / "old", no_passphrase=True)
    try:
        ident = Identity.load_or_create(n.home.root)
        synclog.use_identity(n.index, ident)
        syncstore.enable(n.index, ident.node_id)
        n.put(b"one", name="a/one.txt")
        other = os.urandom(32)
        idx = n.index
        with idx.write() as txn:  # make it look like a version 2 log
            txn.delete(b"logformat", db=idx.db["meta"])
            rows = [(bytes(k), bytes(v)) for k, v in txn.cursor(db=idx.db["synclog"]).iternext()]
            for k, v in rows:
                sig_body = msgpack.unpackb(v, raw=False, use_list=False)
                txn.put(k, msgpack.packb(sig_body[1], use_bin_type=True), db=idx.db["synclog"])
            txn.put(other + (1).to_bytes(8, "big"), msgpack.packb(
                entry_to_wire(LogEntry(1, HaveRecord(os.urandom(32), True))), use_bin_type=True),
                db=idx.db["synclog"])
            txn.put(other, (1).to_bytes(8, "little"), db=idx.db["syncvec"])
            states = [(bytes(k), bytes(v)) for k, v in txn.cursor(db=idx.db["namestate"]).iternext()]
            for k, v in states:
                txn.delete(k, db=idx.db["namestate"])
                txn.put(b"a/one.txt", v, db=idx.db["namestate"])
        assert syncstore.upgrade(idx)
        assert not syncstore.upgrade(idx)
        store = syncstore.LmdbSyncStore(idx)
        assert other not in store.summary()
        mine = store.entries_since(ident.node_id, 0, 100)
        assert mine and all(len(e.sig) == 64 for e in mine)
        assert namelog.name_state(idx, "a/one.txt") is not None
        n.put(b"two", name="a/one.txt")  # writes go on, signed on the new chain
        assert len(store.entries_since(ident.node_id, 0, 100)) > len(mine)
    finally:
        n.close()
