"""FOR TESTS ONLY: an in-memory `SyncStore` with manifests, merged names and signed logs.

It shows what the node's LMDB store must do (contiguous per-origin logs, signed
by their origin, checked with `signing.admit_page` before anything is applied,
idempotent apply, names merged with `merge_name`, members learnt from
MemberRecords) without persistence, transactions or chunks. Not for production use.

Without a `key` the store signs with zero bytes and checks nothing (the sessions'
own tests); with one (`MemoryStore.signed`) it signs its writes and admits only
pages signed by a known member, like the node.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from .names import NameState, merge_name, new_write
from .records import HaveRecord, LogEntry, ManifestRecord, MemberRecord, NameRecord, Record
from .signing import GENESIS, LogHead, Rejection, admit_page, cert_node_key, sign_entry

__all__ = ["MemoryStore"]


class MemoryStore:
    """Dict-backed SyncStore for one node (test double)."""

    def __init__(self, node_id: bytes, *, sign: Callable[[bytes], bytes] | None = None,
                 members: dict[bytes, bytes] | None = None,
                 clock: Callable[[], int] | None = None) -> None:
        self.node_id = node_id
        self.logs: dict[bytes, list[LogEntry]] = {}
        self.heads: dict[bytes, LogHead] = {}
        self.manifests: dict[bytes, ManifestRecord] = {}
        self.names: dict[str, NameState] = {}
        self.last_hlc = 0
        self.apply_calls = 0
        self._sign = sign
        #: node id -> raw Ed25519 public key; None = check nothing
        self.members = members
        self.clock = clock or (lambda: time.time_ns() // 1_000_000)

    # -- SyncStore ----------------------------------------------------------

    def summary(self) -> dict[bytes, int]:
        """{origin: highest seq}."""
        return {o: len(log) for o, log in self.logs.items() if log}

    def entries_since(self, origin: bytes, after_seq: int, limit: int) -> list[LogEntry]:
        """Entries with seq > after_seq (seq n sits at index n - 1)."""
        return self.logs.get(origin, [])[after_seq : after_seq + limit]

    def apply(self, origin: bytes, entries: Sequence[LogEntry]) -> Rejection | None:
        """Append what is new and admitted, under the original origin; skip what is held."""
        self.apply_calls += 1
        log = self.logs.setdefault(origin, [])
        fresh = [e for e in entries if e.seq > len(log)]
        if fresh and fresh[0].seq != len(log) + 1:
            raise ValueError(f"gap: hold {len(log)}, got {fresh[0].seq}")
        rejection = None
        heads: list[LogHead | None] = [None] * len(fresh)
        if self.members is not None:
            admitted, rejection = admit_page(self.node_id, origin, fresh,
                                             self.heads.get(origin, GENESIS),
                                             self.members.get, self.clock())
            heads = list(admitted)
            fresh = fresh[: len(admitted)]
        for entry, head in zip(fresh, heads, strict=True):
            log.append(entry)
            if head is not None:
                self.heads[origin] = head
            self._index(entry.record)
        return rejection

    # -- local writes -------------------------------------------------------

    def add_manifest(self, record: ManifestRecord) -> LogEntry:
        """Log a manifest written here."""
        return self._append(record)

    def add_member(self, cert: bytes) -> LogEntry:
        """Vouch for the node of this certificate (what `peer add` leads to)."""
        return self._append(MemberRecord(cert))

    def set_name(
        self, name: str, file_id: bytes | None, now_ms: int, *, resolve: bool = False
    ) -> NameRecord:
        """Point `name` at `file_id` (None deletes), based on the current winner."""
        rec = new_write(self.names.get(name), name, file_id, origin=self.node_id,
                        last_hlc=self.last_hlc, now_ms=now_ms, resolve_conflicts=resolve)
        self._append(rec)
        return rec

    def visible_names(self) -> dict[str, bytes]:
        """Every shown name (winners and conflict copies) -> file id."""
        out: dict[str, bytes] = {}
        for state in self.names.values():
            out.update(state.visible())
        return out

    def snapshot(self) -> tuple[object, ...]:
        """Everything that must be equal on converged nodes."""
        logs = {o: tuple(log) for o, log in self.logs.items() if log}
        return (logs, self.manifests, self.names)

    def _append(self, record: Record) -> LogEntry:
        log = self.logs.setdefault(self.node_id, [])
        if self._sign is None:
            entry = LogEntry(len(log) + 1, record, bytes(64))
        else:
            entry, head = sign_entry(self._sign, self.node_id, self.heads.get(self.node_id, GENESIS),
                                     len(log) + 1, record)
            self.heads[self.node_id] = head
        log.append(entry)
        self._index(record)
        return entry

    def _index(self, record: Record) -> None:
        if type(record) is ManifestRecord:
            self.manifests[record.file_id] = record
        elif type(record) is MemberRecord:
            if self.members is not None:
                node_id, key = cert_node_key(record.cert)
                self.members.setdefault(node_id, key)
        elif type(record) is HaveRecord:
            pass
        else:
            assert type(record) is NameRecord
            self.names[record.name] = merge_name(self.names.get(record.name), record)
            self.last_hlc = max(self.last_hlc, record.version.hlc)
