"""Hostile frames from a TRUSTED peer against a running daemon.

The attacker H is a real identity that A trusts (`peer add H_ID`, no address), so it gets past
TLS and authentication and talks to A's sync session directly. It sends garbage payloads
(hypothesis), an oversized length header, a truncated frame followed by a close, and
well-framed msgpack with the wrong types — either straight away or after a proper Hello /
Summary exchange. Every time:

* A closes the connection (bounded wait);
* A logs exactly one WARNING line about H (and no traceback);
* A keeps serving its other peer B (its session is not disturbed; a put on A reaches B);
* nothing is written on A (`export --all` and `ls` unchanged).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import msgpack
import pytest
import trio
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from mosaic.node.cluster.identity import Identity
from mosaic.node.cluster.transport import ConnectionClosed, PeerConnection, connect
from mosaic.protocol.errors import BadMessage, ProtocolError
from mosaic.protocol.framing import encode_frame
from mosaic.protocol.limits import MAX_FRAME_SIZE, PROTOCOL_VERSION
from mosaic.protocol.messages import Bye, Hello, Summary, decode_message

from .conftest import HOST, Cluster, MosaicNode, parallel, wait_until

pytestmark = pytest.mark.slow  # long end-to-end: `just test-fast` leaves it out

CLOSE_TIMEOUT = 5.0


@dataclass
class Target:
    cluster: Cluster
    a: MosaicNode
    b: MosaicNode
    hostile: Identity
    attacks: int = 0
    puts: int = 0
    baseline: tuple[dict, dict[str, str]] | None = None  # A's state before the garbage

    @property
    def tag(self) -> str:
        return self.hostile.node_id.hex()[:16]

    def warnings_about_h(self) -> list[str]:
        return [ln for ln in self.a.log(whole=True).splitlines()
                if self.tag in ln and (" WARNING " in ln or " ERROR " in ln)]

    def state(self) -> tuple[dict, dict[str, str]]:
        doc, names = parallel([self.a.export_doc, self.a.ls])
        return doc, names

    def a_still_serves_b(self) -> None:
        self.puts += 1
        data = f"put number {self.puts} after an attack\n".encode() * 100
        name = f"after/{self.puts}.txt"
        self.a.put_bytes(data, name)
        wait_until(lambda: self.b.get_bytes(name) == data, 10, f"{name} on B",
                   diagnose=self.cluster.logs)
        closed_a = [ln for ln in self.a.log(whole=True).splitlines()
                    if f"peer {self.b.log_tag}: connection closed" in ln]
        closed_b = [ln for ln in self.b.log(whole=True).splitlines()
                    if f"peer {self.a.log_tag}: connection closed" in ln]
        assert not closed_a and not closed_b, (
            "the A-B session was closed: " + " | ".join(closed_a + closed_b)
            + "\nB's log tail:\n" + "\n".join(self.b.log(whole=True).splitlines()[-25:]))


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    root: Path = tmp_path_factory.mktemp("hostile")
    cl = Cluster(root)
    try:
        a, b = cl.add_nodes("A", "B")
        a.put_bytes(b"A's first file\n" * 1000, "one.txt")
        a.put_bytes(bytes(range(256)) * 2000, "bin/two.bin")
        hostile = Identity.load_or_create(root / "H")
        cl.link((a, b))
        a.ok("peer", "add", hostile.node_id_str)  # trusted, never dialled
        cl.start()
        wait_until(lambda: len(b.ls()) == 2, 10, "B to have A's files", diagnose=cl.logs)
        yield Target(cl, a, b, hostile)
    finally:
        cl.close()


async def _attack(t: Target, data: list[bytes], *, hello: bool, close: bool) -> str:
    """Connect as H, optionally do Hello/Summary, send raw `data`, and see A hang up."""
    conn: PeerConnection = await connect(t.hostile, HOST, t.a.port, t.a.id_bytes,
                                         timeout=CLOSE_TIMEOUT)
    try:
        with trio.fail_after(CLOSE_TIMEOUT):
            first = await conn.receive()  # A always speaks first
            assert isinstance(first, Hello), first
            if hello:
                await conn.send(Hello(PROTOCOL_VERSION, t.hostile.node_id, first.capabilities,
                                      "hostile/1"))
                await conn.send(Summary(()))
                while not isinstance(await conn.receive(), Summary):
                    pass
                # read what A pushes (its Records) until the line is quiet: closing a socket
                # with unread data sends a reset, which would hide what A makes of our bytes
                while True:
                    with trio.move_on_after(0.2) as quiet:
                        await conn.receive()
                    if quiet.cancelled_caught:
                        break
            stream = conn._stream  # the TLS stream under the framing
            for chunk in data:
                await stream.send_all(chunk)
            if close:
                return "closed by us"
            seen = []
            while True:
                try:
                    seen.append(type(await conn.receive()).__name__)
                except ConnectionClosed:
                    return "closed by A after " + (", ".join(seen) or "nothing")
                except ProtocolError as e:  # A must never send garbage back
                    raise AssertionError(f"A sent something undecodable: {e}") from e
    finally:
        await conn.aclose()


def _run_attack(t: Target, data: list[bytes], *, hello: bool, close: bool = False) -> str:
    before = len(t.warnings_about_h())
    try:
        outcome = trio.run(lambda: _attack(t, data, hello=hello, close=close))
    except trio.TooSlowError:
        raise AssertionError(f"A did not hang up within {CLOSE_TIMEOUT} s") from None
    t.attacks += 1
    wait_until(lambda: len(t.warnings_about_h()) > before, CLOSE_TIMEOUT,
               "A to log the attack", interval=0.01, diagnose=t.cluster.logs)
    time.sleep(0.05)
    new = t.warnings_about_h()[before:]
    assert len(new) == 1, new
    assert "connection closed" in new[0], new
    assert t.a.running and t.b.running
    return outcome


def _check_clean(t: Target) -> None:
    log = t.a.log(whole=True)
    assert "Traceback" not in log and "failed unexpectedly" not in log
    assert len(t.warnings_about_h()) == t.attacks


# ---- garbage from hypothesis ------------------------------------------------

_leaf = (st.integers(-(2**63), 2**64 - 1) | st.binary(max_size=40) | st.text(max_size=20)
         | st.booleans() | st.none() | st.floats(allow_nan=False))
_structure = st.recursive(_leaf, lambda kids: st.lists(kids, max_size=6), max_leaves=30)
_message_like = st.builds(lambda code, rest: msgpack.packb([code, *rest], use_bin_type=True),
                          st.integers(0, 12), st.lists(_structure, max_size=8))
_garbage = st.binary(min_size=1, max_size=4096) | _message_like


def _undecodable(payload: bytes) -> bool:
    try:
        decode_message(payload)
    except BadMessage:
        return True
    return False


@settings(max_examples=40, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(payload=_garbage, hello=st.booleans(), split=st.integers(0, 8))
def test_garbage_payloads(target: Target, payload: bytes, hello: bool, split: int) -> None:
    assume(_undecodable(payload))
    if target.baseline is None:
        target.baseline = target.state()
    frame = encode_frame(payload)
    cut = min(split, len(frame))
    parts = [frame[:cut], frame[cut:]] if cut else [frame]  # the frame may arrive in pieces
    outcome = _run_attack(target, parts, hello=hello)
    assert outcome.startswith("closed by A"), outcome


def test_garbage_left_no_trace(target: Target) -> None:
    """After the hypothesis run: nothing written, B still served, one line per attack."""
    assert target.baseline is not None, "run test_garbage_payloads first"
    assert target.attacks > 10
    assert target.state() == target.baseline
    _check_clean(target)
    target.a_still_serves_b()


# ---- hand-made cases ----------------------------------------------------------
# Each test is a group of attacks: every attack is checked on its own (closed, one line, the
# A–B session undisturbed); after the group, A's manifests and names must be unchanged and a
# put on A must still reach B.

def _group(t: Target, attacks: list[tuple[str, list[bytes], bool, bool]]) -> list[str]:
    """Run (label, data, hello, close) attacks; the failures, one line each."""
    before = t.state()
    failures = []
    for label, data, hello, close in attacks:
        try:
            outcome = _run_attack(t, data, hello=hello, close=close)
            if not close and not outcome.startswith("closed by A"):
                failures.append(f"{label}: {outcome}")
        except AssertionError as e:
            failures.append(f"{label}: {str(e).splitlines()[0][:300]}")
    assert t.state() == before, "an attack changed A's manifests or names"
    _check_clean(t)
    t.a_still_serves_b()
    return failures


def _both(label: str, data: list[bytes], close: bool = False
          ) -> list[tuple[str, list[bytes], bool, bool]]:
    return [(f"{label} (before hello)", data, False, close),
            (f"{label} (after hello)", data, True, close)]


def test_bad_length_headers(target: Target) -> None:
    attacks = (_both("length 0xFFFFFFFF", [b"\xff\xff\xff\xff" + b"\x00" * 64])
               + _both("length limit + 1", [(MAX_FRAME_SIZE + 1).to_bytes(4, "big")])
               + _both("length 0", [b"\x00\x00\x00\x00"]))
    assert _group(target, attacks) == []
    lines = target.warnings_about_h()[-len(attacks):]
    assert all("protocol error" in ln for ln in lines), lines


def test_truncated_frame_then_close(target: Target) -> None:
    frame = encode_frame(msgpack.packb([8, 12345]))  # a Ping, cut short
    attacks = _both("truncated", [(100).to_bytes(4, "big") + frame[:10]], close=True)
    assert _group(target, attacks) == []
    lines = target.warnings_about_h()[-len(attacks):]
    assert all("inside a frame" in ln for ln in lines), lines


OID = b"\x11" * 32
WRONG_TYPES = {
    "summary-seq-str": [2, [[OID, "7"]]],
    "summary-origin-short": [2, [[b"\x11" * 31, 7]]],
    "records-origin-str": [3, "origin", [], False],
    "records-more-int": [3, OID, [], 1],
    "records-entry-garbage": [3, OID, [[1, 1, b"\x22" * 32, "size", 0, [], []]], False],
    "records-name-bool": [3, OID, [[1, 2, True, None, 5, OID, None, []]], False],
    "pull-negative": [4, OID, -1],
    "want-id-str": [5, "1", [OID]],
    "want-empty": [5, 1, []],
    "chunkdata-blob-str": [6, 1, OID, "blob"],
    "ping-float": [8, 1.5],
    "bye-bytes": [10, b"bye"],
    "hello-version-str": [1, "mosaic-sync", "1", OID, [], "x"],
    "unknown-code": [99, 1, 2],
    "map-not-array": {"code": 1},
}


def test_valid_frames_with_wrong_types(target: Target) -> None:
    attacks = []
    for case, obj in sorted(WRONG_TYPES.items()):
        payload = msgpack.packb(obj, use_bin_type=True)
        assert _undecodable(payload), case
        attacks += _both(case, [encode_frame(payload)])
    assert _group(target, attacks) == []


def test_well_formed_but_out_of_place(target: Target) -> None:
    """Messages that decode but break the session rules (after Hello) are refused too."""
    attacks = []
    for label, msg in [("chunk data, never requested", [6, 1, OID, b"x"]),
                       ("chunk missing, never requested", [7, 1, OID]),
                       ("pong without ping", [9, 42]),
                       ("a second summary", [2, []])]:
        payload = msgpack.packb(msg, use_bin_type=True)
        decode_message(payload)  # valid on its own
        attacks.append((label, [encode_frame(payload)], True, False))
    assert _group(target, attacks) == []


def test_protocol_error_is_answered_with_bye(target: Target) -> None:
    """docs/protocol.md: "on ProtocolError: send(session.close(str(err))) and drop the
    connection" — the misbehaving peer is told why before A hangs up."""
    payload = msgpack.packb([2, "not a vector"], use_bin_type=True)
    outcomes = [_run_attack(target, [encode_frame(payload)], hello=h) for h in (False, True)]
    assert all(o.startswith("closed by A") for o in outcomes), outcomes
    assert all("Bye" in o for o in outcomes), f"A hung up without a Bye: {outcomes}"


async def _open_session(t: Target) -> PeerConnection:
    """Connect to A as H and get through Hello and Summary."""
    conn = await connect(t.hostile, HOST, t.a.port, t.a.id_bytes, timeout=CLOSE_TIMEOUT)
    first = await conn.receive()
    assert isinstance(first, Hello), first
    await conn.send(Hello(PROTOCOL_VERSION, t.hostile.node_id, first.capabilities, "hostile/1"))
    await conn.send(Summary(()))
    while not isinstance(await conn.receive(), Summary):
        pass
    return conn


def test_a_second_connection_replaces_the_first_with_a_goodbye(target: Target) -> None:
    """Two connections between the same two nodes (both dialled at once): the daemon keeps
    one and ends the other with a Bye saying so, so the peer need not take it for a failure;
    A logs no warning about it."""
    before = len(target.warnings_about_h())

    async def go() -> Bye | None:
        first = await _open_session(target)
        second = await _open_session(target)
        try:
            with trio.fail_after(CLOSE_TIMEOUT):
                while True:
                    try:
                        msg = await first.receive()
                    except ConnectionClosed:
                        return None
                    if isinstance(msg, Bye):
                        return msg
        finally:
            await second.send(Bye("test done"))  # a goodbye of ours: no warning on A either
            await first.aclose()
            await second.aclose()

    bye = trio.run(go)
    assert bye is not None, "A closed the replaced connection without a Bye"
    assert "another connection" in bye.reason, bye
    wait_until(lambda: "closed the session: test done" in target.a.log(whole=True),
               CLOSE_TIMEOUT, "A to see our goodbye", interval=0.01, diagnose=target.cluster.logs)
    assert target.warnings_about_h()[before:] == []
    _check_clean(target)
