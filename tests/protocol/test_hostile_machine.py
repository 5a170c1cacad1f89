"""A hypothesis state machine: an honest node's sync session against a misbehaving peer.

Sans-io, over `MemoryStore.signed` stores: the honest node A trusts the hostile peer H
(A holds H's key, as after `peer add` and the first connection); H's log also vouches
for a third node X. Each rule is one thing H can send: good pages of its own log, pages
with broken signatures, pages forged for A's own origin or X's, clocks from the far
future, X's page before the record that vouches for X, Pulls, Acks and Pings out of
thin air, pages with gaps, out-of-place messages. Messages are really encoded and
decoded. A ProtocolError closes the session and H reconnects (a new session); a
refused page never does.

Invariants after every step:
* every entry in A's store verifies against its origin's key, along its hash chain;
* A's own log holds only what A wrote; nothing of A's origin came from H;
* no name state on A has a clock beyond A's wall clock + MAX_CLOCK_SKEW_MS;
* a session that did not see a ProtocolError is still live.
"""

from __future__ import annotations

import hashlib
import os

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from mosaic.node.cluster.identity import _make_cert, _raw_public
from mosaic.protocol.errors import ProtocolError
from mosaic.protocol.hlc import make, physical_ms
from mosaic.protocol.limits import MAX_CLOCK_SKEW_MS, MAX_UINT, PROTOCOL_VERSION
from mosaic.protocol.memstore import MemoryStore
from mosaic.protocol.messages import (
    Ack,
    Hello,
    Message,
    Ping,
    Pong,
    Pull,
    Records,
    Summary,
    decode_message,
    encode_message,
)
from mosaic.protocol.records import HaveRecord, LogEntry, MemberRecord, NameRecord, Version
from mosaic.protocol.signing import GENESIS, LogHead, chain_step, sign_entry, verify_signature
from mosaic.protocol.sync import SessionState, SyncSession

NOW = 1_800_000_000_000  # A's wall clock (ms)


class _Key:
    def __init__(self) -> None:
        self.key = Ed25519PrivateKey.generate()
        self.cert = _make_cert(self.key)
        self.id = hashlib.sha256(self.cert).digest()
        self.public = _raw_public(self.key)

    def sign(self, data: bytes) -> bytes:
        return self.key.sign(data)


A, H, X = _Key(), _Key(), _Key()  # keys are costly to make: once per module
FID = bytes(range(32))


class _Log:
    """A peer's own signed log (H's or X's), as the hostile side keeps it."""

    def __init__(self, key: _Key) -> None:
        self.key = key
        self.entries: list[LogEntry] = []
        self.heads: list[LogHead] = [GENESIS]

    def append(self, record: object) -> None:
        e, h = sign_entry(self.key.sign, self.key.id, self.heads[-1], len(self.entries) + 1,
                          record)  # type: ignore[arg-type]
        self.entries.append(e)
        self.heads.append(h)

    def truncate(self, n: int) -> None:
        del self.entries[n:]
        del self.heads[n + 1:]

    def page(self, after: int) -> Records:
        return Records(self.key.id, tuple(self.entries[after:]), False)


class HostilePeerMachine(RuleBasedStateMachine):
    """A's session against whatever H sends."""

    @initialize()
    def setup(self) -> None:
        self.a = MemoryStore(A.id, sign=A.sign, members={A.id: A.public, H.id: H.public},
                             clock=lambda: NOW)
        self.h = _Log(H)
        self.x = _Log(X)
        self.x.append(NameRecord("x/file", FID, Version(make(NOW - 5), X.id)))
        self.a_writes = 0
        self.session: SyncSession | None = None
        self.connect()

    # -- plumbing ---------------------------------------------------------------
    def connect(self) -> None:
        self.session = SyncSession(A.id, self.a, expected_peer_id=H.id)
        self.session.start()
        self.deliver(Hello(PROTOCOL_VERSION, H.id))
        self.deliver(Summary.from_mapping(self.a.summary()))

    def deliver(self, msg: Message) -> list[Message]:
        """Encode, decode and feed one message to A's session; reconnect after an error."""
        assert self.session is not None
        msg = decode_message(encode_message(msg))
        try:
            out = self.session.receive(msg)
        except ProtocolError:
            assert self.session.state is SessionState.CLOSED
            self.connect()
            return []
        for m in out:  # what A answers must be valid on the wire too
            decode_message(encode_message(m))
        return out

    def held(self, origin: bytes) -> int:
        return self.a.summary().get(origin, 0)

    # -- rules: what H sends ------------------------------------------------------
    @rule(n=st.integers(1, 4), clock=st.integers(-1000, 1000))
    def good_page(self, n: int, clock: int) -> None:
        held = self.held(H.id)
        self.h.truncate(held)
        for i in range(n):
            self.h.append(NameRecord(f"h/{i}", FID, Version(make(NOW + clock) + i, H.id)))
        self.deliver(self.h.page(held))
        assert self.held(H.id) == held + n

    @rule(far=st.sampled_from([MAX_UINT, make(NOW + MAX_CLOCK_SKEW_MS + 1)]))
    def clock_from_the_future(self, far: int) -> None:
        held = self.held(H.id)
        self.h.truncate(held)
        self.h.append(NameRecord("h/clock", FID, Version(far, H.id)))
        self.deliver(self.h.page(held))
        assert self.held(H.id) == held  # refused, not folded in
        self.h.truncate(held)

    @rule(data=st.binary(min_size=64, max_size=64))
    def broken_signature(self, data: bytes) -> None:
        held = self.held(H.id)
        self.deliver(Records(H.id, (LogEntry(held + 1, HaveRecord(FID, True), data),), False))
        assert self.held(H.id) == held

    @rule(own=st.booleans())
    def forged_origin(self, own: bool) -> None:
        origin = A.id if own else X.id
        held = self.held(origin)
        rec = NameRecord("forged", FID, Version(make(NOW), origin))
        e, _ = sign_entry(H.sign, origin, GENESIS, held + 1, rec)  # signed with H's key
        self.deliver(Records(origin, (e,), False))
        assert self.held(origin) == held

    @precondition(lambda self: self.held(X.id) == 0)
    @rule()
    def x_before_its_voucher(self) -> None:
        """X's page first (refused for now), then H's MemberRecord(X): A asks again."""
        self.deliver(self.x.page(0))
        assert self.held(X.id) == 0
        held = self.held(H.id)
        self.h.truncate(held)
        self.h.append(MemberRecord(X.cert))
        out = self.deliver(self.h.page(held))
        pulls = [m for m in out if isinstance(m, Pull) and m.origin == X.id]
        assert pulls, f"A did not ask for X's page again: {out}"
        self.deliver(self.x.page(pulls[0].after_seq))
        assert self.held(X.id) == len(self.x.entries)

    @rule(after=st.integers(0, 50), known=st.booleans())
    def pull_out_of_thin_air(self, after: int, known: bool) -> None:
        origin = A.id if known else os.urandom(32)
        out = self.deliver(Pull(origin, after))
        assert all(isinstance(m, Records) for m in out)

    @rule(seq=st.integers(0, 1 << 40))
    def ack_out_of_thin_air(self, seq: int) -> None:
        self.deliver(Ack(A.id, seq))

    @rule(nonce=st.integers(0, 1 << 62))
    def ping(self, nonce: int) -> None:
        assert self.deliver(Ping(nonce)) == [Pong(nonce)]

    @rule(gap=st.integers(2, 10))
    def page_with_a_gap(self, gap: int) -> None:
        held = self.held(H.id)
        e = LogEntry(held + gap, HaveRecord(FID, True), bytes(64))
        self.deliver(Records(H.id, (e,), False))  # BadMessage: closes, H reconnects

    @rule(which=st.sampled_from(["pong", "summary", "hello"]))
    def out_of_place(self, which: str) -> None:
        msg = {"pong": Pong(7), "summary": Summary(()), "hello": Hello(PROTOCOL_VERSION, H.id)}
        self.deliver(msg[which])

    @rule()
    def a_writes(self) -> None:
        self.a_writes += 1
        self.a.set_name(f"a/{self.a_writes}", FID, NOW)
        assert self.session is not None
        for m in self.session.local_changed():
            decode_message(encode_message(m))

    # -- invariants ---------------------------------------------------------------
    @invariant()
    def every_entry_verifies_along_its_chain(self) -> None:
        keys = {A.id: A.public, H.id: H.public, X.id: X.public}
        for origin, log in self.a.logs.items():
            head = GENESIS
            for e in log:
                head = LogHead(chain_step(origin, head, e), e.sig)
                assert verify_signature(keys[origin], head.chain, head.sig), origin.hex()[:8]

    @invariant()
    def own_log_is_own(self) -> None:
        own = self.a.logs.get(A.id, [])
        assert len(own) == self.a_writes
        assert all(type(e.record) is NameRecord and e.record.version.origin == A.id for e in own)

    @invariant()
    def clocks_are_bounded(self) -> None:
        for state in self.a.names.values():
            for head in state.heads:
                assert physical_ms(head.version.hlc) <= NOW + MAX_CLOCK_SKEW_MS

    @invariant()
    def session_is_live(self) -> None:
        assert self.session is not None
        assert self.session.state in (SessionState.SYNCING, SessionState.IDLE)


HostilePeerMachine.TestCase.settings = settings(
    max_examples=60, stateful_step_count=25, deadline=None, derandomize=True, database=None,
    suppress_health_check=[HealthCheck.too_slow])
TestHostilePeer = HostilePeerMachine.TestCase
