"""A trusted peer that misbehaves with *valid* messages (issue 10, "A peer can only say what
is true"): each case under Why that is about the cluster, against real daemons.

A and B are linked; H (tests/cluster/hostile.py) is a real identity A trusts (`peer add`,
no address). H speaks the real transport and protocol, signs what it writes with its own
key and misbehaves on purpose. After every attack A must still be up, its session with B
undisturbed, and the harm the case describes must not happen.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio

from mosaic.node.cluster.identity import Identity
from mosaic.protocol.hlc import make
from mosaic.protocol.limits import MAX_UINT
from mosaic.protocol.messages import Ping, Pull, Records
from mosaic.protocol.records import ManifestRecord, MemberRecord, NameRecord, Version

from .conftest import Cluster, MosaicNode, wait_until
from .hostile import HostilePeer, frames

pytestmark = pytest.mark.slow  # long end-to-end: `just test-fast` leaves it out


@dataclass
class Setup:
    cluster: Cluster
    a: MosaicNode
    b: MosaicNode
    h: HostilePeer
    fid: bytes  # a file A and B hold

    def session_undisturbed(self) -> None:
        """A and B never lost their session, and a put on A still reaches B."""
        data = os.urandom(2000)
        name = f"check/{time.monotonic_ns()}.bin"
        self.a.put_bytes(data, name)
        wait_until(lambda: self.b.get_bytes(name) == data, 15, f"{name} on B",
                   diagnose=self.cluster.logs)
        assert f"peer {self.b.log_tag}: connection closed" not in self.a.log(whole=True)
        assert self.a.running and self.b.running


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    root: Path = tmp_path_factory.mktemp("hostile-peer")
    cl = Cluster(root)
    try:
        a, b = cl.add_nodes("A", "B")
        fid = bytes.fromhex(a.put_bytes(b"a file both hold\n" * 100, "shared.txt"))
        h = HostilePeer(Identity.load_or_create(root / "H"), a)
        cl.link((a, b))
        a.ok("peer", "add", h.identity.node_id_str)  # trusted, never dialled
        cl.start()
        wait_until(lambda: "shared.txt" in b.ls(), 15, "B to have A's file", diagnose=cl.logs)
        yield Setup(cl, a, b, h, fid)
    finally:
        cl.close()


def _now_hlc() -> int:
    return make(time.time_ns() // 1_000_000)


def test_clock_from_the_far_future_is_refused(setup: Setup) -> None:
    """Why 2: one name record with hlc = 2^63-1 made every later name write on the node fail
    (exit 70), and the node relayed it. Now it is refused (not folded in), the session goes
    on, and name writes keep working on both nodes."""
    h = setup.h

    async def attack() -> bool:
        async with h.session() as s:
            held = s.target_summary.get(h.node_id, 0)
            h.truncate(held)
            h.append(NameRecord("clock/far.txt", setup.fid, Version(MAX_UINT, h.node_id)))
            await s.send(h.own_page(held))
            alive = await s.alive()
        h.truncate(held)  # A refused it: H forgets it, its later entries chain on A's head
        return alive

    assert trio.run(attack), "A hung up on a page it should only refuse"
    wait_until(lambda: setup.a.log_lines("too far ahead"), 10, "A to log the refusal")
    for node in (setup.a, setup.b):
        node.put_bytes(b"written after the attack\n", "clock/far.txt")
        node.ok("mv", "clock/far.txt", f"clock/{node.name}.txt")
        node.ok("rm", f"clock/{node.name}.txt")
    setup.session_undisturbed()


def test_entries_under_another_origin_are_refused(setup: Setup) -> None:
    """Why 5: a trusted peer could append entries under any node's origin, even the
    receiver's own, and so suppress the real ones. Now only B's key signs B's log, and
    nobody's entries are accepted under A's own origin."""
    a, b, h = setup.a, setup.b, setup.h

    async def attack() -> bool:
        async with h.session() as s:
            for origin in (b.id_bytes, a.id_bytes):
                seq = s.target_summary.get(origin, 0) + 1
                rec = NameRecord(f"forged/{origin.hex()[:8]}.txt", setup.fid,
                                 Version(_now_hlc(), origin))
                await s.send(Records(origin, (h.forged(origin, seq, rec),), False))
            return await s.alive()

    assert trio.run(attack)
    assert "forged/" not in "".join(a.ls())
    # B's real writes still reach A (H did not take their place in B's log), and A's own
    # writes still reach B (H did not take their place in A's log)
    data_b, data_a = os.urandom(3000), os.urandom(3000)
    b.put_bytes(data_b, "forged/real-from-b.bin")
    a.put_bytes(data_a, "forged/real-from-a.bin")
    wait_until(lambda: a.get_bytes("forged/real-from-b.bin") == data_b, 15,
               "B's write on A", diagnose=setup.cluster.logs)
    wait_until(lambda: b.get_bytes("forged/real-from-a.bin") == data_a, 15,
               "A's write on B", diagnose=setup.cluster.logs)
    assert "forged/" + b.id_hex[:8] + ".txt" not in a.ls()
    assert a.log_lines("receiver's own origin") and a.log_lines("bad signature")
    setup.session_undisturbed()


def test_member_vouched_later_is_accepted_and_relayed(setup: Setup) -> None:
    """Signed membership: X's page, sent before the record that vouches for X, is refused
    for now and asked for again once H's MemberRecord(X) is in; B, which never met H or X,
    learns both keys through the signed logs and takes X's write too."""
    h = setup.h
    x = Identity.load_or_create(setup.cluster.root / "X")
    xpeer = HostilePeer(x, setup.a)
    xpeer.append(NameRecord("member/x.txt", setup.fid, Version(_now_hlc(), x.node_id)))

    async def send() -> bool:
        async with h.session() as s:
            held = s.target_summary.get(h.node_id, 0)
            h.truncate(held)
            h.append(MemberRecord(x.cert_der))
            await s.send(xpeer.own_page(0))  # first: A does not know X yet
            await s.send(h.own_page(held))
            with trio.fail_after(10):  # A asks for X's page again once it knows X
                while not (isinstance(m := await s.conn.receive(), Pull) and m.origin == x.node_id):
                    pass
            await s.send(xpeer.own_page(m.after_seq))
            return await s.alive()

    assert trio.run(send)
    wait_until(lambda: setup.a.ls().get("member/x.txt") == setup.fid.hex(), 15,
               "X's write on A", diagnose=setup.cluster.logs)
    wait_until(lambda: setup.b.ls().get("member/x.txt") == setup.fid.hex(), 15,
               "X's write relayed to B", diagnose=setup.cluster.logs)


def test_fetching_progresses_past_chunks_nobody_has(setup: Setup) -> None:
    """Why 3: the fetcher always asked for the first 1,024 wanted chunks; with one hostile
    manifest whose chunks nobody has (IDs that sort first), nothing was fetched again.
    Now the queue rotates and backs off, and the bogus entries expire (no node holds
    the file)."""
    h = setup.h
    chunks = tuple((b"\x00\x00" + os.urandom(30), 1) for _ in range(1500))
    bogus = ManifestRecord(os.urandom(32), len(chunks), 1, chunks)

    async def attack() -> None:
        async with h.session() as s:
            held = s.target_summary.get(h.node_id, 0)
            h.truncate(held)
            h.append(bogus)
            await s.send(h.own_page(held))
            assert await s.alive()

    trio.run(attack)  # H leaves: nobody holds those chunks
    time.sleep(1.0)  # let A take the bogus entries into its wanted queue first
    data = os.urandom(200_000)
    setup.b.put_bytes(data, "fetch/after-bogus.bin")
    wait_until(lambda: setup.a.get_bytes("fetch/after-bogus.bin") == data, 20,
               "B's new file on A", diagnose=setup.cluster.logs)
    wait_until(lambda: setup.a.log_lines("wanted chunks expired"), 20,
               "the bogus wanted chunks to expire", diagnose=setup.cluster.logs)


def test_name_at_the_limit_in_conflict_keeps_the_session(setup: Setup) -> None:
    """Why 6 (cluster part): a name at the limit whose conflict copy is longer still must
    not kill the session (before, the LMDB key limit killed it and the origin never synced
    again). The page is applied or refused and logged; the session goes on."""
    h = setup.h
    name = "n/" + "x" * 398  # 400 bytes: the longest name
    setup.a.put_bytes(b"A's version\n", name)

    async def attack() -> bool:
        async with h.session() as s:
            held = s.target_summary.get(h.node_id, 0)
            h.truncate(held)
            h.append(NameRecord(name, setup.fid, Version(_now_hlc(), h.node_id)))
            await s.send(h.own_page(held))
            return await s.alive()

    assert trio.run(attack)
    setup.session_undisturbed()


def test_peer_that_never_reads_is_cut_off(setup: Setup) -> None:
    """Why 7: a peer that sends pings and never reads grew the daemon's memory without
    bound. Now its outbox has a high-water mark: A disconnects it."""
    h = setup.h
    batch = frames([Ping(i) for i in range(5000)])

    async def flood() -> int:
        sent = 0
        async with h.session() as s:
            with trio.fail_after(60):
                try:
                    while sent < 2_000_000:
                        await s.send_raw(batch)
                        sent += 5000
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    return sent
        return -1

    sent = trio.run(flood)
    assert sent > 0, "A never cut off a peer that does not read"
    wait_until(lambda: setup.a.log_lines("does not read"), 10, "A to log why")
    rss = _rss_mb(setup.a)
    assert rss < 200, f"A uses {rss:.0f} MB after the flood"
    setup.session_undisturbed()


def _rss_mb(node: MosaicNode) -> float:
    assert node.proc is not None
    for line in Path(f"/proc/{node.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_sessions_that_end_in_an_error_back_off(cluster: Cluster) -> None:
    """Why 6 (the symptom): a session that died on an error was dialled again every half
    second, forever. Now the dialer backs off (0.5 s doubling, up to a minute)."""
    from mosaic.node.cluster.transport import serve

    from .conftest import free_port

    (b,) = cluster.add_nodes("B")
    h = Identity.load_or_create(cluster.root / "H")
    port = free_port()
    b.ok("peer", "add", f"{h.node_id_str}@127.0.0.1:{port}")
    cluster.start()
    accepted: list[float] = []

    async def handler(conn) -> None:  # noqa: ANN001
        accepted.append(time.monotonic())
        await conn.receive()  # B's Hello
        await conn._stream.send_all(b"\x00\x00\x00\x03\xc1\xc1\xc1")  # a frame of garbage

    async def run() -> None:
        with trio.move_on_after(8):
            await serve(h, "127.0.0.1", port, lambda peer: peer == b.id_bytes, handler)

    trio.run(run)
    gaps = [y - x for x, y in zip(accepted, accepted[1:], strict=False)]
    assert len(accepted) >= 2, cluster.logs()
    assert len(accepted) <= 6, f"B dialled {len(accepted)} times in 8 s: gaps {gaps}"
    assert gaps == sorted(gaps) or gaps[-1] > 1.5, gaps
