"""1,000 hostile sessions (issue 10, acceptance): a trusted peer H opens session after session
against A and sends random valid and invalid messages: pings it never waits for, Records
with good, bad and forged signatures, pages of unknown origins, clocks from the future,
Pulls and Acks out of thin air, chunk requests, garbage frames, oversized length headers.

Afterwards A is still up, its memory is under 200 MB, and the benign peers A and B are in
sync (a put on either reaches the other).
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

import pytest
import trio

from mosaic.node.cluster.identity import Identity
from mosaic.node.cluster.transport import TransportError
from mosaic.protocol.errors import ProtocolError
from mosaic.protocol.framing import encode_frame
from mosaic.protocol.hlc import make
from mosaic.protocol.limits import MAX_UINT
from mosaic.protocol.messages import (
    Ack,
    Message,
    Ping,
    Pong,
    Pull,
    Records,
    Summary,
    WantChunks,
)
from mosaic.protocol.records import HaveRecord, LogEntry, ManifestRecord, NameRecord, Version

from .conftest import Cluster, wait_until
from .hostile import HostilePeer, frames

pytestmark = pytest.mark.slow

SESSIONS = 1000
PARALLEL = 1  # one at a time: a new session of the same peer replaces the old one
MAX_RSS_MB = 200


def _random_messages(rng: random.Random, h: HostilePeer, theirs: dict[bytes, int],
                     fid: bytes) -> list[bytes]:
    """A few framed messages, valid and invalid, chosen at random."""
    out: list[bytes] = []
    now = make(time.time_ns() // 1_000_000)
    for _ in range(rng.randint(1, 8)):
        kind = rng.randrange(12)
        msg: Message | None = None
        if kind == 0:
            out.append(frames([Ping(rng.getrandbits(60)) for _ in range(rng.randint(1, 500))]))
        elif kind == 1:  # a good page of H's own log (A applies it)
            held = theirs.get(h.node_id, 0)
            h.truncate(held)
            h.append(NameRecord(f"h/{rng.randrange(50)}.txt", rng.choice([fid, None]),
                                Version(now + rng.randrange(1000), h.node_id)))
            msg = h.own_page(held)
        elif kind == 2:  # a page with a broken signature
            held = theirs.get(h.node_id, 0)
            e = LogEntry(held + 1, HaveRecord(os.urandom(32), True), os.urandom(64))
            msg = Records(h.node_id, (e,), False)
        elif kind == 3:  # forged: another origin's log, our key (B's, A's own, unknown)
            origin = rng.choice([*theirs, os.urandom(32)] or [os.urandom(32)])
            rec = NameRecord("forged.txt", fid, Version(now, origin))
            msg = Records(origin, (h.forged(origin, theirs.get(origin, 0) + 1, rec),), False)
        elif kind == 4:  # a clock from the far future, properly signed
            held = theirs.get(h.node_id, 0)
            h.truncate(held)
            h.append(NameRecord("clock.txt", fid, Version(rng.choice([MAX_UINT, now << 8]) or 1,
                                                          h.node_id)))
            msg = h.own_page(held)
            h.truncate(held)
        elif kind == 5:
            msg = Pull(rng.choice([*theirs, os.urandom(32)]), rng.randrange(1 << 20))
        elif kind == 6:
            msg = Ack(rng.choice([*theirs, os.urandom(32)]), rng.randrange(1 << 40))
        elif kind == 7:
            msg = WantChunks(rng.getrandbits(40), tuple(os.urandom(32) for _ in range(rng.randint(1, 64))))
        elif kind == 8:  # a manifest whose chunks nobody has
            held = theirs.get(h.node_id, 0)
            h.truncate(held)
            chunks = tuple((os.urandom(32), 1) for _ in range(rng.randint(1, 200)))
            h.append(ManifestRecord(os.urandom(32), len(chunks), 1, chunks))
            msg = h.own_page(held)
        elif kind == 9:
            msg = rng.choice([Pong(rng.getrandbits(30)), Summary(())])  # out of place: A closes
        elif kind == 10:
            out.append(encode_frame(os.urandom(rng.randint(1, 300))))  # garbage payload
        else:
            out.append(os.urandom(rng.randint(4, 64)))  # not even a frame
        if msg is not None:
            out.append(frames([msg]))
    return out


async def _one(h: HostilePeer, rng: random.Random, fid: bytes) -> None:
    try:
        async with h.session() as s:
            for data in _random_messages(rng, h, s.target_summary, fid):
                await s.send_raw(data)
            if rng.random() < 0.3:
                with trio.move_on_after(0.2):
                    while True:
                        await s.conn.receive()
    except (TransportError, ProtocolError, trio.BrokenResourceError, trio.ClosedResourceError,
            trio.TooSlowError):
        pass  # A hung up on us: expected for the invalid ones


async def _run_all(h: HostilePeer, fid: bytes, seed: int) -> None:
    rng = random.Random(seed)
    limiter = trio.CapacityLimiter(PARALLEL)

    async def one(i: int) -> None:
        async with limiter:
            with trio.fail_after(30):
                await _one(h, random.Random(rng.getrandbits(64) + i), fid)

    async with trio.open_nursery() as n:
        for i in range(SESSIONS):
            n.start_soon(one, i)


def _status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field}")


def test_thousand_hostile_sessions(cluster: Cluster) -> None:
    a, b = cluster.add_nodes("A", "B")
    fid = bytes.fromhex(a.put_bytes(b"the file both hold\n" * 50, "shared.txt"))
    h = HostilePeer(Identity.load_or_create(cluster.root / "H"), a)
    cluster.link((a, b))
    a.ok("peer", "add", h.identity.node_id_str)
    cluster.start()
    wait_until(lambda: "shared.txt" in b.ls(), 15, "B to sync", diagnose=cluster.logs)

    t0 = time.monotonic()
    trio.run(_run_all, h, fid, 10)
    took = time.monotonic() - t0
    assert a.running and b.running, cluster.logs()
    assert a.proc is not None
    rss, hwm = _status_kb(a.proc.pid, "VmRSS") / 1024, _status_kb(a.proc.pid, "VmHWM") / 1024
    print(f"{SESSIONS} hostile sessions in {took:.1f} s; A's RSS {rss:.0f} MB, peak {hwm:.0f} MB")
    assert rss < MAX_RSS_MB, f"A's RSS is {rss:.0f} MB"
    log = a.log(whole=True)
    assert "Traceback" not in log and "failed unexpectedly" not in log
    met = len(a.log_lines(f"peer {h.node_id.hex()[:16]} connected"))
    refused = len(a.log_lines("refused entries"))
    print(f"A met H {met} times and logged {refused} refused pages")
    assert met >= SESSIONS * 9 // 10, f"only {met} sessions got past the handshake"

    # the benign peers are still in sync, both ways
    for src, dst in ((a, b), (b, a)):
        data = os.urandom(5000)
        name = f"after/{src.name}.bin"
        src.put_bytes(data, name)
        wait_until(lambda dst=dst, name=name, data=data: dst.get_bytes(name) == data, 20,
                   f"{name} on {dst.name}", diagnose=cluster.logs)
    assert f"peer {b.log_tag}: connection closed" not in a.log(whole=True)
