"""Versioned names that converge: the merge rule, as pure functions.

A name's history is a set of writes (`NameRecord`s). Each write names the
versions it replaced (`Version.base`, plus `Version.resolves` when it closes
conflicts). From the set of writes a node has received, the state is:

* `replaced` = every version some received write says it replaced;
* `heads`    = every received write whose version is not in `replaced`;
* winner     = the head with the greatest (hlc, origin); the other live heads
  are conflicts, shown under `<name>.sync-conflict-<YYYYMMDD-HHMMSS>-<origin8>`.

Both sets are functions of the *set* of writes, never of arrival order, so any
two nodes that received the same writes (in any order, with duplicates) hold
equal `NameState`s. A write based on the current winner replaces it (no
conflict); two writes that did not see each other both stay heads until a
later write resolves them. Deletes are writes with `file_id=None`
(tombstones): they win or lose by the same order, and a losing tombstone is
kept but not shown. See docs/protocol.md for limits (state growth, clocks).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any

import msgpack

from .errors import BadMessage
from .hlc import physical_ms, tick
from .records import (
    KIND_NAME,
    LogEntry,
    NameRecord,
    Version,
    VersionRef,
    check_id,
    check_uint,
    entry_from_wire,
    entry_to_wire,
)

__all__ = [
    "NameState",
    "closing_write",
    "conflict_base",
    "conflict_name",
    "decode_name_state",
    "encode_name_state",
    "merge_name",
    "new_write",
]

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_CONFLICT = re.compile(r"(.+)\.sync-conflict-\d{8}-\d{6}-[0-9a-f]{8}(?:-\d+)?", re.S)


def conflict_name(record: NameRecord) -> str:
    """Where a losing write is shown: derived from that write alone (time in UTC)."""
    v = record.version
    when = _EPOCH + dt.timedelta(milliseconds=physical_ms(v.hlc))
    return f"{record.name}.sync-conflict-{when:%Y%m%d-%H%M%S}-{v.origin[:4].hex()}"


def conflict_base(name: str) -> str | None:
    """The name whose conflict copy `name` has the form of (see `conflict_name`), or None."""
    m = _CONFLICT.fullmatch(name)
    return m.group(1) if m else None


@dataclass(frozen=True, slots=True)
class NameState:
    """The merged state of one name: its heads (winner first) and replaced versions."""

    name: str
    heads: tuple[NameRecord, ...]
    replaced: frozenset[VersionRef]

    @property
    def winner(self) -> NameRecord:
        """The write that holds the name (may be a tombstone)."""
        return self.heads[0]

    @property
    def file_id(self) -> bytes | None:
        """The file the name points at, or None if the winner is a delete."""
        return self.heads[0].file_id

    @property
    def conflicts(self) -> tuple[tuple[str, NameRecord], ...]:
        """Losing live writes with their conflict names, newest first.

        Two losers with the same conflict name (same origin, same second) get
        `-2`, `-3`, ... appended in head order, so names stay unique.
        """
        out: list[tuple[str, NameRecord]] = []
        taken = {self.name}
        for rec in self.heads[1:]:
            if rec.file_id is None:
                continue
            base = cname = conflict_name(rec)
            n = 1
            while cname in taken:
                n += 1
                cname = f"{base}-{n}"
            taken.add(cname)
            out.append((cname, rec))
        return tuple(out)

    def visible(self) -> dict[str, bytes]:
        """What a listing shows: the name (unless deleted) and every conflict copy."""
        out = {cname: rec.file_id for cname, rec in self.conflicts if rec.file_id is not None}
        if self.file_id is not None:
            out[self.name] = self.file_id
        return out


def _order(rec: NameRecord) -> tuple[Any, ...]:
    # Total order on writes: (hlc, origin) first; the rest only separates two
    # different writes claiming the same version (a broken or hostile peer).
    v = rec.version
    return (v.hlc, v.origin, rec.file_id or b"", v.base or (), v.resolves)


def merge_name(current: NameState | None, incoming: NameRecord) -> NameState:
    """Fold one write into a name's state; returns `current` itself if nothing changed."""
    if type(incoming) is not NameRecord:
        raise TypeError("incoming must be a NameRecord")
    if current is None:
        return NameState(incoming.name, (incoming,), frozenset(incoming.version.supersedes))
    if incoming.name != current.name:
        raise ValueError(f"write for {incoming.name!r} merged into state of {current.name!r}")
    replaced = current.replaced
    new = [r for r in incoming.version.supersedes if r not in replaced]
    if new:
        replaced = replaced.union(new)
    heads = current.heads
    ref = incoming.version.ref
    if ref not in replaced:
        same = [h for h in heads if h.version.ref == ref]
        if not same:
            heads = (*heads, incoming)
        elif _order(incoming) > _order(same[0]):
            heads = tuple(incoming if h is same[0] else h for h in heads)
    if heads is current.heads and replaced is current.replaced:
        return current
    live = sorted((h for h in heads if h.version.ref not in replaced), key=_order, reverse=True)
    return NameState(current.name, tuple(live), replaced)


def new_write(
    state: NameState | None,
    name: str,
    file_id: bytes | None,
    *,
    origin: bytes,
    last_hlc: int,
    now_ms: int,
    resolve_conflicts: bool = False,
) -> NameRecord:
    """The record for a local write (file_id=None deletes), based on the current winner.

    Its hlc is above `last_hlc` and every head's, so it sorts after what it
    replaces; persist `record.version.hlc` as the node's new `last_hlc`. With
    `resolve_conflicts` the write also closes every other head.
    """
    heads = state.heads if state is not None else ()
    floor = max([last_hlc, *(h.version.hlc for h in heads)])
    base = heads[0].version.ref if heads else None
    resolves = tuple(sorted(h.version.ref for h in heads[1:])) if resolve_conflicts else ()
    return NameRecord(name, file_id, Version(tick(floor, now_ms), origin, base, resolves))


def closing_write(state: NameState, cname: str, *, origin: bytes, last_hlc: int, now_ms: int
                  ) -> NameRecord | None:
    """The local write that removes the conflict copy `cname` of `state` (None if it is not
    one): it keeps what the name shows (the winner's file, or its tombstone), is based on the
    winner and resolves that one losing head, so every node drops the same copy."""
    for c, rec in state.conflicts:
        if c == cname:
            floor = max([last_hlc, *(h.version.hlc for h in state.heads)])
            return NameRecord(state.name, state.file_id,
                              Version(tick(floor, now_ms), origin, state.winner.version.ref,
                                      (rec.version.ref,)))
    return None


def encode_name_state(state: NameState) -> bytes:
    """Compact msgpack form of a state, for the node's index."""
    heads = [entry_to_wire(LogEntry(1, h))[2:] for h in state.heads]
    replaced = [[r.hlc, r.origin] for r in sorted(state.replaced)]
    return msgpack.packb([state.name, heads, replaced], use_bin_type=True)


def decode_name_state(data: bytes) -> NameState:
    """Inverse of `encode_name_state`; BadMessage if the bytes are not a valid state."""
    try:
        name, heads, replaced = msgpack.unpackb(data, use_list=False, raw=False)
        wires = [(1, KIND_NAME, *h) for h in heads]
        refs = [VersionRef(*r) for r in replaced]
    except MemoryError:
        raise
    except Exception as exc:
        raise BadMessage(f"undecodable name state: {type(exc).__name__}") from exc
    for r in refs:
        check_uint(r.hlc, "state.replaced.hlc", 1)
        check_id(r.origin, "state.replaced.origin")
    recs = [entry_from_wire(w).record for w in wires]
    if not recs or any(r.name != name for r in recs):
        raise BadMessage("name state: heads missing or for another name")
    heads_ = tuple(sorted(recs, key=_order, reverse=True))
    return NameState(name, heads_, frozenset(refs))  # type: ignore[arg-type]
