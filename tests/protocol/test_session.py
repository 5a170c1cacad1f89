"""The session state machine, message by message (no framing)."""

from __future__ import annotations

import random

import pytest

from mosaic.protocol.errors import (
    BadMessage,
    LocalProtocolError,
    PeerMismatch,
    UnexpectedMessage,
    VersionMismatch,
)
from mosaic.protocol.limits import MAX_WANT, PROTOCOL_VERSION
from mosaic.protocol.memstore import MemoryStore
from mosaic.protocol.messages import (
    Ack,
    Bye,
    ChunkData,
    ChunkMissing,
    Hello,
    Ping,
    Pong,
    Pull,
    Records,
    Summary,
    WantChunks,
)
from mosaic.protocol.records import LogEntry
from mosaic.protocol.sync import MAX_PENDING_REQUESTS, SessionState, SyncSession

from .helpers import make_manifest, nid

ME, PEER = nid("me"), nid("peer")


def live_session(**kw: object) -> tuple[SyncSession, MemoryStore]:
    """A session past Hello and Summary (the peer holds nothing)."""
    store = MemoryStore(ME)
    s = SyncSession(ME, store, **kw)  # type: ignore[arg-type]
    s.start()
    s.receive(Hello(PROTOCOL_VERSION, PEER))
    s.receive(Summary(()))
    assert s.state is SessionState.IDLE
    return s, store


def entries(n: int, first: int = 1) -> tuple[LogEntry, ...]:
    rng = random.Random(n)
    return tuple(LogEntry(first + i, make_manifest(rng), bytes(64)) for i in range(n))


def test_handshake_as_dialer_and_as_listener() -> None:
    store = MemoryStore(ME)
    dialer = SyncSession(ME, store, capabilities=["chunks"], software="t")
    assert dialer.start() == [Hello(PROTOCOL_VERSION, ME, ("chunks",), "t")]
    assert dialer.state is SessionState.AWAIT_HELLO
    assert dialer.receive(Hello(PROTOCOL_VERSION, PEER)) == [Summary(())]
    assert dialer.state is SessionState.SYNCING and dialer.peer == Hello(PROTOCOL_VERSION, PEER)
    listener = SyncSession(ME, store)
    assert listener.receive(Hello(PROTOCOL_VERSION, PEER)) == [Hello(PROTOCOL_VERSION, ME, (), "mosaic"), Summary(())]
    with pytest.raises(LocalProtocolError):
        listener.start()


def test_version_mismatch_closes() -> None:
    s = SyncSession(ME, MemoryStore(ME))
    with pytest.raises(VersionMismatch) as info:
        s.receive(Hello(PROTOCOL_VERSION + 1, PEER))
    assert (info.value.ours, info.value.theirs) == (PROTOCOL_VERSION, PROTOCOL_VERSION + 1)
    assert s.state is SessionState.CLOSED
    with pytest.raises(UnexpectedMessage):
        s.receive(Hello(PROTOCOL_VERSION, PEER))


def test_peer_identity_checks() -> None:
    with pytest.raises(PeerMismatch):
        SyncSession(ME, MemoryStore(ME)).receive(Hello(PROTOCOL_VERSION, ME))
    with pytest.raises(PeerMismatch):
        SyncSession(ME, MemoryStore(ME), expected_peer_id=PEER).receive(Hello(PROTOCOL_VERSION, nid("x")))


@pytest.mark.parametrize("msg", [
    Summary(()), Records(PEER, ()), Pull(PEER, 0), Ping(1), WantChunks(1, (PEER,)),
])
def test_nothing_but_hello_before_hello(msg: object) -> None:
    s = SyncSession(ME, MemoryStore(ME))
    s.start()
    with pytest.raises(UnexpectedMessage):
        s.receive(msg)  # type: ignore[arg-type]
    assert s.state is SessionState.CLOSED


def test_records_before_summary_and_second_summary() -> None:
    s = SyncSession(ME, MemoryStore(ME))
    s.receive(Hello(PROTOCOL_VERSION, PEER))
    with pytest.raises(UnexpectedMessage):
        s.receive(Records(PEER, entries(1)))
    s2, _ = live_session()
    with pytest.raises(UnexpectedMessage):
        s2.receive(Summary(()))
    with pytest.raises(UnexpectedMessage):
        s2.receive(Hello(PROTOCOL_VERSION, PEER))


def test_summary_answered_with_first_pages() -> None:
    store = MemoryStore(ME)
    for e in entries(5):
        store.add_manifest(e.record)
    s = SyncSession(ME, store, batch_entries=2)
    s.receive(Hello(PROTOCOL_VERSION, PEER))
    out = s.receive(Summary(((ME, 1),)))
    assert out == [Records(ME, tuple(store.logs[ME][1:3]), True)]
    assert s.state is SessionState.SYNCING
    assert s.receive(Pull(ME, 3)) == [Records(ME, tuple(store.logs[ME][3:5]), False)]
    assert s.state is SessionState.IDLE


def test_pull_without_open_page_asks_again() -> None:
    """Version 3: a Pull may ask for a page again (after a refused signer); it is answered
    from the given seq, even for entries already sent."""
    store = MemoryStore(ME)
    for e in entries(3):
        store.add_manifest(e.record)
    s = SyncSession(ME, store, batch_entries=10)
    s.receive(Hello(PROTOCOL_VERSION, PEER))
    assert s.receive(Summary(())) == [Records(ME, tuple(store.logs[ME]), False)]
    assert s.receive(Pull(ME, 1)) == [Records(ME, tuple(store.logs[ME][1:]), False)]
    assert s.receive(Pull(PEER, 0)) == [Records(PEER, (), False)]


def test_pull_is_always_answered() -> None:
    store = MemoryStore(ME)
    for e in entries(3):
        store.add_manifest(e.record)
    s = SyncSession(ME, store, batch_entries=2)
    s.receive(Hello(PROTOCOL_VERSION, PEER))
    s.receive(Summary(()))
    # The peer got the rest elsewhere meanwhile: empty final page.
    assert s.receive(Pull(ME, 3)) == [Records(ME, (), False)]


def test_incoming_pages_are_pulled_and_applied() -> None:
    s, store = live_session()
    es = entries(5)
    assert s.receive(Records(PEER, es[:2], True)) == [Pull(PEER, 2)]
    assert s.state is SessionState.SYNCING
    assert s.receive(Records(PEER, es[1:5], False)) == [Ack(PEER, 5)]  # overlap is skipped
    assert store.logs[PEER] == list(es) and s.entries_applied == 5
    assert s.state is SessionState.IDLE


def test_gap_is_refused_without_applying() -> None:
    s, store = live_session()
    with pytest.raises(BadMessage):
        s.receive(Records(PEER, entries(2, first=2)))
    assert store.apply_calls == 0 and s.state is SessionState.CLOSED


def test_local_changed_pushes_only_news() -> None:
    s, store = live_session()
    assert s.local_changed() == []
    store.add_manifest(entries(1)[0].record)
    (msg,) = s.local_changed()
    assert isinstance(msg, Records) and [e.seq for e in msg.entries] == [1]
    assert s.local_changed() == []
    # What the peer sent us is never echoed back.
    s.receive(Records(PEER, entries(2)))
    assert s.local_changed() == []


def test_local_changed_before_summary_is_quiet() -> None:
    s = SyncSession(ME, MemoryStore(ME))
    assert s.local_changed() == []
    s.receive(Hello(PROTOCOL_VERSION, PEER))
    assert s.local_changed() == []


def test_ping_pong() -> None:
    s, _ = live_session()
    assert s.receive(Ping(7)) == [Pong(7)]
    with pytest.raises(UnexpectedMessage):
        s.receive(Pong(8))
    s2, _ = live_session()
    assert s2.ping(9) == [Ping(9)]
    assert s2.receive(Pong(9)) == []
    with pytest.raises(UnexpectedMessage):
        s2.receive(Pong(9))


def test_chunk_requests_both_ways() -> None:
    s, _ = live_session()
    ids = [nid(str(i)) for i in range(MAX_WANT + 2)]
    out = s.want_chunks(ids + ids[:3])
    assert [len(m.chunk_ids) for m in out] == [MAX_WANT, 2]  # type: ignore[union-attr]
    rid = out[1].request_id  # type: ignore[union-attr]
    assert s.receive(ChunkData(rid, ids[-1], b"blob")) == []
    assert s.receive(ChunkMissing(rid, ids[-2])) == []
    with pytest.raises(UnexpectedMessage):
        s.receive(ChunkData(rid, ids[-1], b"again"))
    s2, _ = live_session()
    assert s2.receive(WantChunks(5, (ids[0], ids[1]))) == []
    assert s2.open_requests == (0, 1)
    assert s2.chunk_reply(5, ids[0], b"x") == ChunkData(5, ids[0], b"x")
    assert s2.chunk_reply(5, ids[1], None) == ChunkMissing(5, ids[1])
    assert s2.open_requests == (0, 0)
    with pytest.raises(LocalProtocolError):
        s2.chunk_reply(5, ids[0], b"x")


def test_chunk_request_limits() -> None:
    s, _ = live_session()
    for i in range(MAX_PENDING_REQUESTS):
        s.receive(WantChunks(i, (PEER,)))
    with pytest.raises(UnexpectedMessage):
        s.receive(WantChunks(999, (PEER,)))
    s2, _ = live_session()
    s2.receive(WantChunks(1, (PEER,)))
    with pytest.raises(BadMessage):
        s2.receive(WantChunks(1, (ME,)))
    s3, _ = live_session()
    with pytest.raises(LocalProtocolError):
        s3.want_chunks([nid(str(i)) for i in range(MAX_WANT * MAX_PENDING_REQUESTS + 1)])


def test_bye_and_close() -> None:
    s, _ = live_session()
    assert s.receive(Bye("shutting down")) == []
    assert s.state is SessionState.CLOSED and s.peer_bye_reason == "shutting down"
    assert s.close() == []
    with pytest.raises(UnexpectedMessage):
        s.receive(Ping(1))
    with pytest.raises(LocalProtocolError):
        s.ping(1)
    s2, _ = live_session()
    assert s2.close("bye") == [Bye("bye")]
    assert s2.close("again") == []


def test_store_returning_wrong_entries_is_a_local_error() -> None:
    class Broken(MemoryStore):
        def entries_since(self, origin: bytes, after_seq: int, limit: int) -> list[LogEntry]:
            return []

    store = Broken(ME)
    store.add_manifest(entries(1)[0].record)
    s = SyncSession(ME, store)
    s.receive(Hello(PROTOCOL_VERSION, PEER))
    with pytest.raises(LocalProtocolError):
        s.receive(Summary(()))


def test_pages_of_unknown_origins_do_not_grow_the_session() -> None:
    """A trusted peer sending pages of ever new, unknown origins: each is refused (to be asked
    again once a signer is known), but what the session remembers stays bounded."""
    from mosaic.protocol.records import HaveRecord
    from mosaic.protocol.sync import MAX_CLAIMS, MAX_DEFERRED

    store = MemoryStore(ME, members={})  # checks signatures; knows no member
    s = SyncSession(ME, store)
    s.receive(Hello(PROTOCOL_VERSION, PEER))
    s.receive(Summary(()))
    rng = random.Random(3)
    for _ in range(MAX_CLAIMS + 500):
        origin = rng.randbytes(32)
        out = s.receive(Records(origin, (LogEntry(1, HaveRecord(origin, True), bytes(64)),), False))
        assert [type(m).__name__ for m in out] == ["Ack"]
    assert s.state in (SessionState.SYNCING, SessionState.IDLE)
    assert len(s._deferred) <= MAX_DEFERRED and len(s._claims) <= MAX_CLAIMS
    assert s.rejected_total == MAX_CLAIMS + 500 and len(s.rejections) <= 64
    assert store.summary() == {}
