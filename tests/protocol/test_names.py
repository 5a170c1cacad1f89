"""Name merge: convergence for any delivery order, causal replace, visible conflicts."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mosaic.protocol.errors import BadMessage
from mosaic.protocol.names import (
    NameState,
    conflict_name,
    decode_name_state,
    encode_name_state,
    merge_name,
    new_write,
)
from mosaic.protocol.records import NameRecord, Version, VersionRef

from .helpers import T0, nid

ORIGINS = [nid(f"origin-{i}") for i in range(3)]
FILES = [nid(f"file-{i}") for i in range(4)]
NAMES = ("doc.txt", "dir/a")


def fold(records: list[NameRecord]) -> dict[str, NameState]:
    states: dict[str, NameState] = {}
    for r in records:
        states[r.name] = merge_name(states.get(r.name), r)
    return states


def write(state: NameState | None, file_id: bytes | None, origin: int, now: int = T0,
          name: str = "doc.txt", **kw: Any) -> NameRecord:
    return new_write(state, name, file_id, origin=ORIGINS[origin], last_hlc=0, now_ms=now, **kw)


# -- the rule, case by case ---------------------------------------------------


def test_create_then_causal_update_replaces_without_conflict() -> None:
    r1 = write(None, FILES[0], 0)
    s1 = merge_name(None, r1)
    assert s1.file_id == FILES[0] and s1.conflicts == ()
    r2 = write(s1, FILES[1], 1, now=T0 - 10_000)  # an older wall clock still sorts after
    assert r2.version.base == r1.version.ref and r2.version.hlc > r1.version.hlc
    s2 = merge_name(s1, r2)
    assert s2.heads == (r2,) and s2.conflicts == ()
    assert s2.visible() == {"doc.txt": FILES[1]}


def test_concurrent_writes_keep_both_with_a_deterministic_conflict_name() -> None:
    a = write(None, FILES[0], 0, now=T0)
    b = write(None, FILES[1], 1, now=T0 + 1500)
    for order in ([a, b], [b, a]):
        s = fold(order)["doc.txt"]
        assert s.winner == b
        cname = f"doc.txt.sync-conflict-20231114-221320-{ORIGINS[0][:4].hex()}"
        assert conflict_name(a) == cname
        assert s.conflicts == ((cname, a),)
        assert s.visible() == {"doc.txt": FILES[1], cname: FILES[0]}


def test_same_hlc_is_broken_by_origin() -> None:
    a = NameRecord("n", FILES[0], Version(1000, ORIGINS[2]))
    b = NameRecord("n", FILES[1], Version(1000, ORIGINS[1]))
    assert fold([a, b])["n"].winner == fold([b, a])["n"].winner == max(
        [a, b], key=lambda r: r.version.origin)


def test_concurrent_updates_of_one_base_conflict() -> None:
    s = merge_name(None, write(None, FILES[0], 0))
    x, y = write(s, FILES[1], 1, now=T0 + 5), write(s, FILES[2], 2, now=T0 + 9)
    final = fold([*s.heads, y, x])["doc.txt"]
    assert final.winner == y and [r for _, r in final.conflicts] == [x]


def test_delete_wins_and_the_write_stays_visible_as_a_copy() -> None:
    s = merge_name(None, write(None, FILES[0], 0))
    edit = write(s, FILES[1], 1, now=T0 + 5)
    delete = write(s, None, 2, now=T0 + 9)
    final = fold([*s.heads, delete, edit])["doc.txt"]
    assert final.file_id is None
    assert final.visible() == {conflict_name(edit): FILES[1]}


def test_write_beats_older_delete_and_the_tombstone_is_hidden() -> None:
    s = merge_name(None, write(None, FILES[0], 0))
    delete = write(s, None, 2, now=T0 + 5)
    edit = write(s, FILES[1], 1, now=T0 + 9)
    final = fold([*s.heads, edit, delete])["doc.txt"]
    assert final.winner == edit and final.conflicts == ()
    assert final.heads[1] == delete  # kept (for convergence) but not shown
    assert final.visible() == {"doc.txt": FILES[1]}


def test_redelivery_is_a_no_op() -> None:
    r1 = write(None, FILES[0], 0)
    r2 = write(merge_name(None, r1), FILES[1], 1, now=T0 + 1)
    s = fold([r1, r2])["doc.txt"]
    assert merge_name(s, r2) is s
    assert merge_name(s, r1) is s  # replaced version arriving again


def test_replaced_version_arriving_late_is_ignored() -> None:
    r1 = write(None, FILES[0], 0)
    r2 = write(merge_name(None, r1), FILES[1], 1, now=T0 + 1)
    assert fold([r2, r1])["doc.txt"] == fold([r1, r2])["doc.txt"]
    assert fold([r2, r1])["doc.txt"].heads == (r2,)


def test_resolve_closes_all_conflicts() -> None:
    a, b = write(None, FILES[0], 0), write(None, FILES[1], 1, now=T0 + 1)
    s = fold([a, b])["doc.txt"]
    fix = write(s, FILES[2], 2, now=T0 + 2, resolve_conflicts=True)
    assert fix.version.base == b.version.ref and fix.version.resolves == (a.version.ref,)
    assert merge_name(s, fix).heads == (fix,)


def test_same_second_losers_get_unique_names() -> None:
    # Origin 0 writes, loses to origin 1, then writes again on top of origin 1's
    # version: two heads from origin 0 in the same second, both losing to origin 2.
    a1 = write(None, FILES[0], 0, now=T0)
    b = write(None, FILES[1], 1, now=T0 + 100)
    a2 = write(fold([a1, b])["doc.txt"], FILES[2], 0, now=T0 + 200)
    c = write(None, FILES[3], 2, now=T0 + 900)
    s = fold([a1, b, a2, c])["doc.txt"]
    names = [n for n, _ in s.conflicts]
    assert s.winner == c
    assert names == [conflict_name(a2), conflict_name(a1) + "-2"]


def test_wrong_name_or_type() -> None:
    s = merge_name(None, write(None, FILES[0], 0))
    with pytest.raises(ValueError):
        merge_name(s, write(None, FILES[0], 0, name="other"))
    with pytest.raises(TypeError):
        merge_name(s, "x")  # type: ignore[arg-type]


def test_state_codec() -> None:
    a, b = write(None, FILES[0], 0), write(None, None, 1, now=T0 + 1)
    c = write(fold([a, b])["doc.txt"], FILES[2], 2, now=T0 + 2)
    s = fold([a, b, c])["doc.txt"]
    assert decode_name_state(encode_name_state(s)) == s
    with pytest.raises(BadMessage):
        decode_name_state(b"\x93\x01\x02")
    with pytest.raises(BadMessage):
        decode_name_state(b"junk")


# -- convergence, by property ----------------------------------------------------

ops = st.lists(
    st.one_of(
        st.tuples(st.just("write"), st.integers(0, 2), st.sampled_from(NAMES),
                  st.integers(-1, 3), st.integers(0, 1500), st.booleans()),
        st.tuples(st.just("sync"), st.integers(0, 2), st.integers(0, 2)),
    ),
    max_size=25,
)


def simulate(plan: list[tuple[Any, ...]], skews: list[int]) -> tuple[list[NameRecord], list[Any]]:
    """Three origins writing and syncing in the given order; returns every record."""
    seen: list[dict[NameRecord, None]] = [{}, {}, {}]
    states: list[dict[str, NameState]] = [{}, {}, {}]
    clocks, now, produced = [0, 0, 0], T0, []

    def deliver(o: int, rec: NameRecord) -> None:
        if rec not in seen[o]:
            seen[o][rec] = None
            states[o][rec.name] = merge_name(states[o].get(rec.name), rec)
            clocks[o] = max(clocks[o], rec.version.hlc)

    for op in plan:
        if op[0] == "write":
            _, o, name, f, dt, resolve = op
            now += dt
            rec = new_write(states[o].get(name), name, None if f < 0 else FILES[f],
                            origin=ORIGINS[o], last_hlc=clocks[o], now_ms=now + skews[o],
                            resolve_conflicts=resolve)
            assert rec.version.hlc > clocks[o]
            clocks[o] = rec.version.hlc
            produced.append(rec)
            deliver(o, rec)
        else:
            for rec in list(seen[op[1]]):
                deliver(op[2], rec)
    for o in range(3):  # finally everyone hears everything
        for rec in produced:
            deliver(o, rec)
    return produced, states


@settings(max_examples=120, deadline=None)
@given(plan=ops, skews=st.lists(st.integers(-3000, 3000), min_size=3, max_size=3),
       data=st.data())
def test_any_delivery_order_converges(plan: list[Any], skews: list[int], data: Any) -> None:
    produced, states = simulate(plan, skews)
    assert states[0] == states[1] == states[2]
    for _ in range(3):
        dups = data.draw(st.lists(st.sampled_from(produced), max_size=5)) if produced else []
        order = data.draw(st.permutations(produced + dups))
        assert fold(order) == states[0]


@st.composite
def arbitrary_histories(draw: st.DrawFn) -> list[NameRecord]:
    """Any acyclic history, including writes that claim the same version."""
    records: list[NameRecord] = []
    hlc = 1
    for _ in range(draw(st.integers(1, 12))):
        hlc += draw(st.integers(0, 2))
        older = sorted({r.version.ref for r in records if r.version.hlc < hlc})
        base = draw(st.none() | st.sampled_from(older)) if older else None
        res = set(draw(st.lists(st.sampled_from(older), max_size=2))) if older else set()
        version = Version(max(hlc, 2), draw(st.sampled_from(ORIGINS)), base,
                          tuple(sorted(res - {base})))
        records.append(NameRecord("n", draw(st.none() | st.sampled_from(FILES)), version))
    return records


def reference_state(records: list[NameRecord]) -> NameState:
    """The rule stated on sets, written independently of merge_name."""
    replaced = frozenset(r for rec in records for r in rec.version.supersedes)
    best: dict[VersionRef, NameRecord] = {}
    for rec in records:
        key = (rec.file_id or b"", rec.version.base or (), rec.version.resolves)
        old = best.get(rec.version.ref)
        if old is None or key > (old.file_id or b"", old.version.base or (), old.version.resolves):
            best[rec.version.ref] = rec
    heads = sorted((rec for ref, rec in best.items() if ref not in replaced),
                   key=lambda rec: rec.version.ref, reverse=True)
    return NameState("n", tuple(heads), replaced)


@settings(max_examples=200, deadline=None)
@given(records=arbitrary_histories(), data=st.data())
def test_arbitrary_histories_converge_to_the_set_rule(records: list[NameRecord],
                                                      data: Any) -> None:
    expected = reference_state(records)
    assert expected.heads, "an acyclic history always has a head"
    for _ in range(3):
        order = data.draw(st.permutations(records + records[: data.draw(st.integers(0, 3))]))
        got = fold(order)["n"]
        assert got == expected
        assert decode_name_state(encode_name_state(got)) == got
