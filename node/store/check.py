"""`mosaic check`: the index's own consistency, beyond what `verify` reads.

One read transaction over the whole index, plus a listing of the local pack
folder. It reads no pack contents (that is `verify`) and contacts no backend
(that is `verify --backends`). Problems are lines of text; a clean index has none.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .records import BE64

if TYPE_CHECKING:
    from .store import Store

MAX_LINES = 200  # problems listed per kind; the counts are always complete


@dataclass
class CheckReport:
    """What `check` looked at and what it found."""

    files: int = 0
    names: int = 0
    chunks: int = 0
    packs: int = 0
    problems: list[str] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)
    garbage_chunks: int = 0
    orphan_files: int = 0

    @property
    def ok(self) -> bool:
        """True when no problem was found (garbage awaiting gc is not a problem)."""
        return not self.problems

    def add(self, kind: str, line: str) -> None:
        """Count a problem of `kind`; keep its line while fewer than MAX_LINES are kept."""
        self.counts[kind] += 1
        if self.counts[kind] <= MAX_LINES:
            self.problems.append(line)

    def to_json(self) -> dict:
        """The report as a JSON-ready document."""
        return {"ok": self.ok, "files": self.files, "names": self.names, "chunks": self.chunks,
                "packs": self.packs, "problems": self.problems, "counts": dict(self.counts),
                "garbage_chunks": self.garbage_chunks, "orphan_files": self.orphan_files}


def check(store: Store) -> CheckReport:
    """Cross-check manifests, chunk records, packs, names, queues and the local pack folder."""
    rep = CheckReport()
    idx = store.index
    with idx.read() as txn:
        packs = dict(idx.iter_packs(txn))
        rep.packs = len(packs)
        chunks = dict(idx.iter_chunks(txn))
        rep.chunks = len(chunks)
        refs: Counter = Counter()
        for fid in idx.iter_manifest_ids(txn):
            m = idx.get_manifest(fid, txn)
            if m is None:
                rep.add("manifest", f"file {fid.hex()}: listed but its manifest is unreadable")
                continue
            rep.files += 1
            if sum(n for _, n in m.chunks) != m.size:
                rep.add("manifest", f"file {fid.hex()}: chunk lengths add up to "
                        f"{sum(n for _, n in m.chunks)}, not its size {m.size}")
            for cid in {c for c, _ in m.chunks}:
                refs[cid] += 1
                if cid not in chunks:
                    rep.add("missing-chunk", f"file {fid.hex()}: chunk {cid.hex()[:16]} has no record")
        for cid, r in chunks.items():
            if r.refcount != refs.get(cid, 0):
                rep.add("refcount", f"chunk {cid.hex()[:16]}: refcount {r.refcount}, "
                        f"{refs.get(cid, 0)} files use it")
            if r.refcount == 0 and refs.get(cid, 0) == 0:
                rep.garbage_chunks += 1
            p = packs.get(r.pack_id)
            if p is None:
                rep.add("no-pack", f"chunk {cid.hex()[:16]}: its pack {r.pack_id.hex()[:16]} "
                        "has no record")
                continue
            if refs.get(cid, 0) and not p.locations and not (p.local and store.local.has(r.pack_id)):
                rep.add("no-copy", f"chunk {cid.hex()[:16]} (live) is in pack {r.pack_id.hex()[:16]}, "
                        "which has no copy anywhere")
        for pid, p in packs.items():
            if p.local and not store.local.has(pid):
                rep.add("local-missing", f"pack {pid.hex()[:16]}: recorded as local, but the file "
                        "is missing")
        for name, no in idx.names.iter(txn):
            rep.names += 1
            if txn.get(BE64.pack(no), db=idx.db["files"]) is None:
                rep.add("dangling-name", f"name {name!r} points at a file that does not exist")
        for pid, backend in idx.iter_uploads(txn):
            if pid not in packs:
                rep.add("queue", f"upload of unknown pack {pid.hex()[:16]} to {backend} is queued")
    for sub in sorted(store.home.packs_dir.iterdir()):
        for f in sub.iterdir():
            try:
                pid = bytes.fromhex(f.name)
            except ValueError:
                pid = b""
            if len(pid) != 32 or pid not in packs:
                rep.orphan_files += 1
    return rep
