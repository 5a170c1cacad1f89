"""FOR TESTS ONLY: an in-memory `SyncStore` with manifests and merged names.

It shows what the node's LMDB store must do (contiguous per-origin logs,
idempotent apply, names merged with `merge_name`) without persistence,
transactions or chunks. Not for production use.
"""

from __future__ import annotations

from collections.abc import Sequence

from .names import NameState, merge_name, new_write
from .records import HaveRecord, LogEntry, ManifestRecord, NameRecord, Record

__all__ = ["MemoryStore"]


class MemoryStore:
    """Dict-backed SyncStore for one node (test double)."""

    def __init__(self, node_id: bytes) -> None:
        self.node_id = node_id
        self.logs: dict[bytes, list[LogEntry]] = {}
        self.manifests: dict[bytes, ManifestRecord] = {}
        self.names: dict[str, NameState] = {}
        self.last_hlc = 0
        self.apply_calls = 0

    # -- SyncStore ----------------------------------------------------------

    def summary(self) -> dict[bytes, int]:
        """{origin: highest seq}."""
        return {o: len(log) for o, log in self.logs.items() if log}

    def entries_since(self, origin: bytes, after_seq: int, limit: int) -> list[LogEntry]:
        """Entries with seq > after_seq (seq n sits at index n - 1)."""
        return self.logs.get(origin, [])[after_seq : after_seq + limit]

    def apply(self, origin: bytes, entries: Sequence[LogEntry]) -> None:
        """Append what is new, under the original origin; skip what is held."""
        self.apply_calls += 1
        log = self.logs.setdefault(origin, [])
        for entry in entries:
            if entry.seq <= len(log):
                continue
            if entry.seq != len(log) + 1:
                raise ValueError(f"gap: hold {len(log)}, got {entry.seq}")
            log.append(entry)
            self._index(entry.record)

    # -- local writes -------------------------------------------------------

    def add_manifest(self, record: ManifestRecord) -> LogEntry:
        """Log a manifest written here."""
        return self._append(record)

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
        entry = LogEntry(len(log) + 1, record)
        log.append(entry)
        self._index(record)
        return entry

    def _index(self, record: Record) -> None:
        if type(record) is ManifestRecord:
            self.manifests[record.file_id] = record
        elif type(record) is HaveRecord:
            pass
        else:
            assert type(record) is NameRecord
            self.names[record.name] = merge_name(self.names.get(record.name), record)
            self.last_hlc = max(self.last_hlc, record.version.hlc)
