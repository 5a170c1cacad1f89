"""Sessions joined in memory (encode, frame, split, decode): convergence end to end."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from mosaic.protocol.messages import Ack, Records
from mosaic.protocol.sync import SessionState

from .helpers import T0, Link, Node, nid, run


def converged(*nodes: Node) -> bool:
    first = nodes[0].store.snapshot()
    return all(n.store.snapshot() == first for n in nodes[1:])


def idle(*links: Link) -> bool:
    return all(s.state is SessionState.IDLE for lk in links for s in lk.sessions)


def test_two_nodes_exchange_everything() -> None:
    rng = random.Random(1)
    a, b = Node("a"), Node("b")
    a.add_manifests(rng, 50)
    b.add_manifests(rng, 30)
    a.set_name("docs/report.pdf", nid("f1"))
    b.set_name("music/song.ogg", nid("f2"))
    link = Link(a, b, rng)
    run([link], rng)
    assert converged(a, b) and idle(link)
    assert len(a.store.manifests) == 80
    assert a.store.visible_names() == {"docs/report.pdf": nid("f1"), "music/song.ogg": nid("f2")}


def test_pushes_after_idle_and_paging() -> None:
    rng = random.Random(2)
    a, b = Node("a"), Node("b")
    link = Link(a, b, rng, batch_entries=7)
    run([link], rng)
    assert idle(link)
    a.add_manifests(rng, 40)  # local_changed() pushes page 1; Pull fetches the rest
    assert link.sessions[0].state is SessionState.SYNCING
    run([link], rng)
    assert converged(a, b) and idle(link)
    kinds = [k for side, k in link.sent if side == 0]
    assert kinds.count("Records") == 6  # ceil(40 / 7)
    assert [k for side, k in link.sent if side == 1].count("Pull") == 5


def test_byte_budget_cuts_pages() -> None:
    rng = random.Random(3)
    a, b = Node("a"), Node("b")
    a.add_manifests(rng, 100)
    link = Link(a, b, rng, batch_bytes=4096)
    run([link], rng)
    assert converged(a, b)
    assert [k for _, k in link.sent].count("Records") > 10


def test_chain_relays_under_the_original_origin() -> None:
    rng = random.Random(4)
    a, b, c = Node("a"), Node("b"), Node("c")
    links = [Link(a, b, rng), Link(b, c, rng)]
    a.add_manifests(rng, 20)
    c.add_manifests(rng, 10)
    a.set_name("x", nid("fa"))
    c.set_name("y", nid("fc"), now_ms=T0 + 1)
    run(links, rng)
    assert converged(a, b, c) and idle(*links)
    assert set(c.store.summary()) == {a.id, c.id}  # b wrote nothing, relayed a's log as a's


def test_no_change_resync_is_hello_and_summary_only() -> None:
    rng = random.Random(5)
    a, b, c = Node("a"), Node("b"), Node("c")
    links = [Link(a, b, rng), Link(b, c, rng), Link(a, c, rng)]
    for n in (a, b, c):
        n.add_manifests(rng, 20)
    run(links, rng)
    assert converged(a, b, c)
    for lk in links:
        lk.close()
    again = Link(a, b, rng)
    run([again], rng)
    assert sorted(k for _, k in again.sent) == ["Hello", "Hello", "Summary", "Summary"]
    total = sum(again.bytes_sent)
    assert total < 1024, total
    assert idle(again)


def test_resume_after_disconnect_sends_only_what_is_missing() -> None:
    rng = random.Random(6)
    a, b = Node("a"), Node("b")
    a.add_manifests(rng, 3000)
    first = Link(a, b, rng, batch_entries=256)
    while b.store.summary().get(a.id, 0) < 1000:
        first.step()
    first.close()
    held = b.store.summary()[a.id]
    assert held < 3000
    second = Link(a, b, rng, batch_entries=256)
    run([second], rng)
    assert converged(a, b)
    assert second.sessions[0].entries_sent == 3000 - held
    assert second.sessions[1].entries_applied == 3000 - held


def test_partition_then_heal_converges_with_identical_conflicts() -> None:
    rng = random.Random(7)
    nodes = a, b, c = Node("a"), Node("b"), Node("c")
    mesh = [Link(a, b, rng), Link(b, c, rng), Link(a, c, rng)]
    a.set_name("shared.txt", nid("v0"))
    run(mesh, rng)
    for lk in mesh:
        lk.close()
    # Partition: everyone edits the same name, c also deletes another, a adds files.
    a.set_name("shared.txt", nid("va"), now_ms=T0 + 1000)
    b.set_name("shared.txt", nid("vb"), now_ms=T0 + 2000)
    c.set_name("shared.txt", nid("vc"), now_ms=T0 + 3000)
    b.set_name("other.txt", nid("o1"), now_ms=T0 + 1000)
    a.add_manifests(rng, 25)
    # Heal in a different topology.
    healed = [Link(c, a, rng), Link(b, a, rng)]
    run(healed, rng)
    assert converged(*nodes) and idle(*healed)
    state = a.store.names["shared.txt"]
    assert state.file_id == nid("vc")
    assert len(state.conflicts) == 2
    assert a.store.visible_names() == b.store.visible_names() == c.store.visible_names()
    # A later write resolving the conflicts propagates as a causal update.
    b.set_name("shared.txt", nid("final"), now_ms=T0 + 500, resolve=True)
    run(healed, rng)
    assert converged(*nodes)
    assert c.store.names["shared.txt"].heads[0].file_id == nid("final")
    assert c.store.names["shared.txt"].conflicts == ()


def test_redelivered_records_are_idempotent() -> None:
    rng = random.Random(8)
    a, b = Node("a"), Node("b")
    a.add_manifests(rng, 10)
    link = Link(a, b, rng)
    run([link], rng)
    snap, calls = b.store.snapshot(), b.store.apply_calls
    page = a.store.entries_since(a.id, 0, 10)
    # nothing is applied again; the receiver only acknowledges what it holds
    assert link.sessions[1].receive(Records(a.id, tuple(page), False)) == [Ack(a.id, 10)]
    assert link.sessions[1].receive(Records(a.id, tuple(page[3:5]), False)) == [Ack(a.id, 10)]
    assert b.store.snapshot() == snap and b.store.apply_calls == calls
    b.store.apply(a.id, page)  # the store itself is idempotent too
    assert b.store.snapshot() == snap


def test_ten_thousand_manifests() -> None:
    """10k manifests cross in linear work: each entry once, in full pages, one Pull per page.

    (How long that takes is measured by the benchmarks under tools/, not asserted here.)
    """
    rng = random.Random(9)
    a, b = Node("a"), Node("b")
    a.add_manifests(rng, 10_000)
    link = Link(a, b)  # no random splitting: measure the protocol, not the harness
    steps = run([link])
    assert converged(a, b) and idle(link)
    assert len(b.store.manifests) == 10_000
    pages = -(-10_000 // 1024)  # the session's default page: 1024 entries
    assert link.sessions[0].entries_sent == 10_000 and link.sessions[1].entries_applied == 10_000
    assert link.sessions[1].entries_sent == 0
    assert link.sent.count((0, "Records")) == pages and link.sent.count((1, "Pull")) == pages - 1
    assert b.store.apply_calls == pages
    assert steps == len(link.sent) <= 2 * pages + 4  # the pages, their Pulls, Hello and Summary


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32), plan=st.lists(
    st.tuples(st.integers(0, 2), st.sampled_from(["m", "n", "d", "cut", "link"]),
              st.integers(0, 2)), max_size=30))
def test_random_topologies_converge(seed: int, plan: list[tuple[int, str, int]]) -> None:
    rng = random.Random(seed)
    nodes = [Node(f"n{i}") for i in range(3)]
    links: dict[tuple[int, int], Link] = {}
    clock = T0
    for i, op, j in plan:
        clock += rng.randint(0, 2000)
        if op == "m":
            nodes[i].add_manifests(rng, rng.randint(1, 5))
        elif op in "nd":
            nodes[i].set_name(f"f{j}", nid(str(clock)) if op == "n" else None, now_ms=clock)
        elif op == "cut" and (key := (min(i, j), max(i, j))) in links:
            links.pop(key).close()
        elif op == "link" and i != j and (min(i, j), max(i, j)) not in links:
            links[(min(i, j), max(i, j))] = Link(nodes[i], nodes[j], rng)
        if rng.random() < 0.5 and links:
            for _ in range(rng.randint(0, 6)):
                live = [lk for lk in links.values() if lk.pending]
                if live:
                    rng.choice(live).step()
    for lk in links.values():
        lk.close()
    final = [Link(nodes[0], nodes[1], rng), Link(nodes[1], nodes[2], rng)]
    run(final, rng)
    assert converged(*nodes) and idle(*final)
