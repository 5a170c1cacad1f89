"""A put heals: deduplicated chunks whose stored object is damaged are written again.

Dedup skips every chunk the index already records, so a put alone could never
repair a flipped byte in a local pack. The ingest workers therefore hand each
batch's deduplicated chunks to a `Healer`, which checks their stored objects
cheaply where that costs no network: only objects in a local pack, read with
one `pread` per run of neighbouring objects, authenticated only (AEAD open, no
decompression, no ID hash: the associated data binds the chunk ID). Once a put
has wanted 1/16 of a pack, the whole pack is checked against its ID instead
(BLAKE3 is several times faster than the AEAD), once per session. An object
that fails is re-encoded from the plaintext the put holds anyway and goes into
the put's new pack; when that pack is committed, `repoint` moves the chunk
record to the new copy (refcount unchanged) in the same transaction and queues
the bad pack's local copy for `repair`. The old object becomes garbage that
`gc` repacks away.

Integration (store/ingest.py): `Ingest.__init__` makes `self.healer = Healer(store)`;
`_encode_batch` calls `self.healer.check(txn, chunks, out, level, self.inflight)`
after its loop (inside its read transaction); `_commit` calls
`self.healer.repoint(txn, sealed)` right after recording the sealed pack's chunks
(before the manifests, whose refcounts then land on the moved record).
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING

from ..errors import IntegrityError
from . import codec
from .index import LOCAL
from .packs import pack_id_of
from .records import ChunkRecord

if TYPE_CHECKING:
    import lmdb

    from .packs import SealedPack
    from .store import Store

RUN_GAP = 64 << 10  # neighbouring objects this close share one pread
RUN_MAX = 4 << 20  # and one pread reads at most about this much
WHOLE_PACK_SHARE = 16  # once a put wants 1/16 of a local pack, the whole pack is checked by its ID
REASON = "corrupt object found by a put (rewritten into a new pack)"

Result = tuple[bytes, int, "codec.Encoded | None"]
"""An ingest worker's (chunk id, length, object as `codec.encode_parts` gives it, or None)."""


class Healer:
    """Checks a put's deduplicated chunks and re-encodes those whose local object is bad."""

    def __init__(self, store: Store):
        self.store = store
        self._lock = threading.Lock()
        self.healed: dict[bytes, bytes] = {}  # chunk ID -> pack whose object failed
        self.checked = 0  # objects authenticated (for tests and statistics)
        self.checked_bytes = 0  # bytes of packs checked whole by their ID
        self.good: set[bytes] = set()  # local packs that matched their ID in this session
        self._asked: dict[bytes, int] = {}  # bytes of objects this session wanted, per pack
        self._hashing: dict[bytes, threading.Event] = {}  # packs being (or failed being) hashed

    # ---- worker threads ----------------------------------------------------
    def check(self, txn: lmdb.Transaction, chunks: Sequence[bytes | memoryview],
              out: list[Result], level: int, inflight: Collection[bytes] = ()) -> int:
        """Verify the deduplicated chunks of one batch; re-encode the bad ones in `out`.

        `chunks[i]` is the plaintext of `out[i]`; entries whose object is None are the
        deduplicated ones. Those recorded in a local pack are authenticated there; each
        that fails gets a fresh object in `out` (ingest writes it to its new pack) and
        is remembered for `repoint`. Returns how many were re-encoded.
        """
        idx = self.store.index
        local = self.store.local
        todo: list[tuple[bytes, int, int, int, bytes]] = []  # pack, offset, len, index, cid
        is_local: dict[bytes, bool] = {}
        need: dict[bytes, int] = {}  # bytes of objects wanted from each pack
        for i, (cid, _n, blob) in enumerate(out):
            if blob is not None or cid in inflight:
                continue
            r = idx.get_chunk(cid, txn)
            if r is None or r.pack_id in self.good:
                continue
            here = is_local.get(r.pack_id)
            if here is None:
                here = is_local[r.pack_id] = local.has(r.pack_id)
            if here:
                todo.append((r.pack_id, r.offset, r.stored_len, i, cid))
                need[r.pack_id] = need.get(r.pack_id, 0) + r.stored_len
        if not todo:
            return 0
        whole = self._check_whole_packs(txn, need)
        if whole:
            todo = [t for t in todo if t[0] not in whole]
        todo.sort()
        bad: list[tuple[int, bytes]] = []  # (index in out, pack)
        enc_key = self.store.keys.chunk_enc
        k = 0
        while k < len(todo):
            pid, start, _, _, _ = todo[k]
            end = k + 1
            stop = todo[k][1] + todo[k][2]
            while (end < len(todo) and todo[end][0] == pid and todo[end][1] <= stop + RUN_GAP
                   and todo[end][1] + todo[end][2] - start <= RUN_MAX):
                stop = max(stop, todo[end][1] + todo[end][2])
                end += 1
            run = todo[k:end]
            k = end
            try:
                view = memoryview(local.read(pid, start, stop - start))
            except FileNotFoundError:  # evicted meanwhile: not a local copy any more
                continue
            except (IntegrityError, OSError):  # truncated or unreadable: write them again
                bad += [(i, pid) for _, _, _, i, _ in run]
                continue
            for _, off, slen, i, cid in run:
                try:
                    codec.authenticate(enc_key, cid, view[off - start:off - start + slen])
                except IntegrityError:
                    bad.append((i, pid))
        for i, _pid in bad:
            cid, n, _ = out[i]
            out[i] = (cid, n, codec.encode_parts(enc_key, cid, chunks[i], level))
        with self._lock:
            self.checked += len(todo)
            for i, pid in bad:
                self.healed[out[i][0]] = pid
        return len(bad)

    def _check_whole_packs(self, txn: lmdb.Transaction, need: dict[bytes, int]) -> set[bytes]:
        """Packs this put has now asked enough of to check whole, by their ID, once.

        A put that stores data again (a second put of a big file) wants nearly every
        object of its packs; hashing a pack (BLAKE3, several times the speed of the
        AEAD) covers all of them at once, and a pack that matches its ID is good for
        the rest of the session. A put that wants only a few objects of a pack keeps
        checking just those. Returns the packs found good now.
        """
        found: set[bytes] = set()
        for pid, n in need.items():
            rec = self.store.index.get_pack(pid, txn)
            if rec is None or rec.size <= 0:
                continue
            with self._lock:
                total = self._asked[pid] = self._asked.get(pid, 0) + n
                busy = self._hashing.get(pid)
                if busy is None:
                    if pid in self.good or total * WHOLE_PACK_SHARE < rec.size:
                        continue
                    mine = self._hashing[pid] = threading.Event()
            if busy is not None:  # another worker hashes it (or found it bad): its answer
                busy.wait()
                if pid in self.good:
                    found.add(pid)
                continue
            try:
                data = self.store.local.read(pid, 0, rec.size)
                ok = pack_id_of(data) == pid
            except (IntegrityError, OSError):
                ok = False
            with self._lock:
                if ok:  # a pack that fails keeps its (set) event: its objects are checked one by one
                    self.good.add(pid)
                    del self._hashing[pid]
                    self.checked_bytes += rec.size
                    found.add(pid)
            mine.set()
        return found

    # ---- sealer thread -----------------------------------------------------
    def repoint(self, txn: lmdb.Transaction, sealed: SealedPack) -> int:
        """Point the records of healed chunks in `sealed` at their new copy; queue the bad
        packs' local copies for repair. Call in the transaction that records `sealed`,
        before any manifest of it is added. Returns how many records moved."""
        if not self.healed:
            return 0
        idx = self.store.index
        moved = 0
        bad_packs: set[bytes] = set()
        for e in sealed.entries:
            with self._lock:
                old = self.healed.pop(e.chunk_id, None)
            if old is None:
                continue
            cur = idx.get_chunk(e.chunk_id, txn)
            if cur is None or cur.pack_id != old:
                continue  # recorded here already, or moved by someone else meanwhile
            idx.put_chunk(txn, e.chunk_id, ChunkRecord(sealed.pack_id, e.offset, e.stored_len,
                                                       e.plain_len, cur.refcount), verified=True)
            bad_packs.add(old)
            moved += 1
        for pid in bad_packs:
            if idx.get_pack(pid, txn) is not None:
                idx.queue_repair(txn, pid, LOCAL, REASON)
        return moved
