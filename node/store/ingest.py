"""Putting files in: chunk, hash, compress, encrypt, pack, commit.

The main thread cuts the input (pyfastcdc releases the GIL) and hashes the whole
file; batches of about 1 MiB of chunks go to a small worker pool that computes
chunk IDs and, for chunks the node lacks, compresses and encrypts them. Results
come back in order and are appended to the open pack. A full pack is handed to
one "sealer" thread that fsyncs and renames it and then, in ONE LMDB
transaction, records the pack, its chunks, and every manifest whose chunks are
now all durable. So a manifest is never committed before its chunks, and a
killed put leaves at worst unreferenced chunks that `gc` removes and a re-run
reuses.

Dedup trusts only what this node verified (store/index.py, "verified records"):
a chunk whose record came by import or sync is stored again and its record
replaced by the put's own, and the manifest the put computed replaces a stored
one of that file ID whose chunk list differs.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO

from . import codec
from .chunker import chunk_buffer, chunk_stream
from .heal import Healer, Result
from .hooks import PackPlacement
from .packs import PackWriter, SealedPack
from .records import ChunkRecord, Manifest, PackRecord

if TYPE_CHECKING:
    from .store import Store

COMMIT_BATCH = 512  # deduplicated files' manifests committed in one transaction
BATCH_BYTES = 1 << 20
MAX_INFLIGHT = 6
SMALL_FILE = 4 << 20  # read whole (zero-copy chunking) up to this size


@dataclass(frozen=True)
class PutResult:
    """What one put stored: the file's hash, its names, size and new stored bytes."""

    file_id: bytes
    names: tuple[str, ...]
    size: int
    chunks: int
    new_chunks: int
    new_bytes: int

    @property
    def hash(self) -> str:
        """The file ID as lowercase hex (what `b3sum` prints)."""
        return self.file_id.hex()


class PendingPut:
    """A file queued in an ingest session; `result()` is final once the session closed."""

    def __init__(self, names: tuple[str, ...]):
        self.names = names
        self.table: list[tuple[bytes, int]] = []
        self.size = 0
        self.new_chunks = 0
        self.new_bytes = 0
        self.batches_left = 0
        self.read_done = False
        self.file_id: bytes | None = None
        self.result_: PutResult | None = None

    def result(self) -> PutResult:
        """The PutResult (raises if the file is not finished yet)."""
        if self.result_ is None:
            raise RuntimeError("put not finished: close the ingest session first")
        return self.result_


class Ingest:
    """One put session: any number of files, made durable by `close()`."""

    def __init__(self, store: Store, progress: Callable[[int], None] | None = None,
                 placement: PackPlacement | None = None):
        self.store = store
        self.keys = store.keys
        self.params = store.chunk_params
        self.level = store.config.compression_level
        self.pack_size = store.config.pack_size
        self.pool: ThreadPoolExecutor = store.pool
        self.sealer = ThreadPoolExecutor(1, thread_name_prefix="mosaic-seal")
        self.jobs: deque[Future] = deque()
        self.pending: deque[tuple[Future, list[list]]] = deque()  # (future, [[job, n chunks], ...])
        self.batch: list[bytes | memoryview] = []  # the open batch, shared by consecutive files
        self.batch_jobs: list[list] = []
        self.batch_bytes = 0
        self.writer: PackWriter | None = None
        self.waiting: list[tuple[Manifest, tuple[str, ...]]] = []
        self.inflight: set[bytes] = set()
        self.sealed: list[SealedPack] = []
        self.progress = progress or (lambda n: None)
        self.placement = placement
        self.new_files: list[bytes] = []
        self.name_changes: list[tuple[str, bytes | None, bytes | None]] = []
        self._chunks_db = store.index.db["chunks"]
        self.healer = Healer(store)  # re-writes deduplicated chunks whose stored copy is bad

    # ---- worker side -------------------------------------------------------
    def _encode_batch(self, chunks: list[bytes | memoryview]) -> list[Result]:
        id_key, enc_key, level = self.keys.chunk_id, self.keys.chunk_enc, self.level
        out: list[Result] = []
        idx = self.store.index
        with idx.env.begin(db=self._chunks_db) as txn:
            claims = idx.any_unverified(txn)  # almost always False: one table count a batch
            probe = False  # after a chunk that did not shrink, sample before compressing
            for c in chunks:
                cid = codec.chunk_id(id_key, c)
                known = txn.get(cid) is not None and (not claims or idx.chunk_verified(txn, cid))
                if known or cid in self.inflight:
                    out.append((cid, len(c), None))
                else:
                    obj = codec.encode_parts(enc_key, cid, c, level, probe)
                    probe = not codec.is_compressed(obj)
                    out.append((cid, len(c), obj))
            self.healer.check(txn, chunks, out, level, self.inflight)
        return out

    # ---- main thread -------------------------------------------------------
    def put_stream(self, stream: BinaryIO, names: tuple[str, ...] = (),
                   size_hint: int | None = None) -> PendingPut:
        """Queue everything `stream` yields; the result is final after `close()`.

        Chunks of consecutive files share ~1 MiB batches on their way through the
        worker pool, so many small files cost few thread hand-offs.
        """
        job = PendingPut(names)
        hasher = codec.file_id_hasher()
        if size_hint is not None and size_hint <= SMALL_FILE:
            data = stream.read()
            chunks = chunk_buffer(data, self.params)
        else:
            chunks = chunk_stream(stream, self.params)
        for c in chunks:
            hasher.update(c)
            job.size += len(c)
            if not self.batch_jobs or self.batch_jobs[-1][0] is not job:
                self.batch_jobs.append([job, 0])
                job.batches_left += 1
            self.batch_jobs[-1][1] += 1
            self.batch.append(c)
            self.batch_bytes += len(c)
            if self.batch_bytes >= BATCH_BYTES:
                self._submit()
        job.file_id = hasher.digest()
        job.read_done = True
        if job.batches_left == 0:
            self._finish(job)
        return job

    def _submit(self) -> None:
        """Send the open batch to the worker pool."""
        batch, jobs = self.batch, self.batch_jobs
        self.batch, self.batch_jobs, self.batch_bytes = [], [], 0
        self.pending.append((self.pool.submit(self._encode_batch, batch), jobs))
        while len(self.pending) >= MAX_INFLIGHT:
            self._drain_one()

    def _drain_one(self) -> None:
        fut, jobs = self.pending.popleft()
        results = fut.result()
        at = 0
        for job, n in jobs:
            self._write(results[at:at + n], job)
            at += n
            job.batches_left -= 1
            if job.batches_left == 0 and job.read_done:
                self._finish(job)

    def _finish(self, job: PendingPut) -> None:
        assert job.file_id is not None
        m = Manifest(job.file_id, job.size, time.time_ns(), tuple(job.table))
        # A manifest waits for the pack its new chunks are in; with no open pack, manifests
        # still wait and commit COMMIT_BATCH at a time: one transaction (one fsync) per
        # batch, not per file. close() commits the rest before the put returns.
        self.waiting.append((m, job.names))
        if (self.writer is None or not self.writer.entries) and len(self.waiting) >= COMMIT_BATCH:
            waiting, self.waiting = self.waiting, []
            self.jobs.append(self.sealer.submit(self._commit, None, waiting))
        job.result_ = PutResult(m.file_id, job.names, job.size, len(job.table),
                                job.new_chunks, job.new_bytes)
        self._reap()

    def _write(self, results: list[Result], job: PendingPut) -> None:
        for cid, n, blob in results:
            job.table.append((cid, n))
            self.progress(n)
            if blob is None or cid in self.inflight:
                continue
            if self.writer is None:
                self.writer = PackWriter(self.store.home, self.keys.pack_index)
            self.writer.add_parts(cid, blob, n)
            self.inflight.add(cid)
            job.new_chunks += 1
            job.new_bytes += len(blob[0]) + len(blob[1])
            if self.writer.size >= self.pack_size:
                self._rotate()

    def _rotate(self) -> None:
        writer, waiting = self.writer, self.waiting
        self.writer, self.waiting = None, []
        self.jobs.append(self.sealer.submit(self._commit, writer, waiting))
        self._reap()

    def _reap(self) -> None:
        """Raise the first sealer failure early; keep the job list short."""
        while self.jobs and self.jobs[0].done():
            self.jobs.popleft().result()

    # ---- sealer thread -----------------------------------------------------
    def _commit(self, writer: PackWriter | None,
                manifests: list[tuple[Manifest, tuple[str, ...]]]) -> None:
        sealed = writer.seal() if writer is not None else None
        idx = self.store.index
        targets: list[str] = []
        if sealed is not None and self.placement is not None:
            try:
                targets = self.placement.targets(sealed.size)
            except BaseException:
                self.store.local.delete(sealed.pack_id)
                raise
        with idx.write() as txn:
            if sealed is not None:
                idx.put_pack(txn, sealed.pack_id, PackRecord.sealed(
                    sealed.size, len(sealed.entries), owner=self.store.config.node_tag))
                for e in sealed.entries:  # a claim (unverified record) gives way to our copy
                    idx.put_chunk(txn, e.chunk_id, ChunkRecord(
                        sealed.pack_id, e.offset, e.stored_len, e.plain_len, 0), overwrite=False,
                        verified=True)
                self.healer.repoint(txn, sealed)
                for b in targets:
                    idx.queue_upload(txn, sealed.pack_id, b)
            changes: list[tuple[str, bytes | None]] = []
            new_files = []
            for m, names in manifests:
                if idx.put_verified_manifest(txn, m):  # new, or replacing another chunk list
                    new_files.append(m.file_id)
                changes += [(n, m.file_id) for n in names]
            done = idx.set_names(txn, changes)
        self.new_files += new_files
        self.name_changes += done
        if sealed is not None:
            self.sealed.append(sealed)
            if self.placement is not None:
                self.placement.placed(sealed.pack_id, sealed.size, targets)

    def close(self) -> None:
        """Seal the last pack and commit every waiting manifest; raises the first error."""
        try:
            if self.batch:
                self._submit()
            while self.pending:
                self._drain_one()
            if self.writer is not None or self.waiting:
                if self.writer is not None and not self.writer.entries:
                    self.writer.abort()
                    self.writer = None
                self._rotate()
            while self.jobs:
                self.jobs.popleft().result()
        finally:
            self.sealer.shutdown(wait=True)

    def rollback(self) -> list[bytes]:
        """Undo what this session committed (names, new files, unreferenced packs).

        Used when the backends cannot take the data: the put then leaves nothing
        half-stored. Returns the packs that became garbage (for deletion).
        """
        idx = self.store.index
        queued = list(self.placement.backends()) if self.placement is not None else []
        dead: list[bytes] = []
        with idx.write() as txn:
            for name, old, _new in reversed(self.name_changes):
                idx.set_names(txn, [(name, old)])
            for fid in self.new_files:
                idx.remove_manifest(txn, fid)
            for sp in self.sealed:
                for b in queued:
                    idx.dequeue_upload(txn, sp.pack_id, b)
                recs = [idx.get_chunk(e.chunk_id, txn) for e in sp.entries]
                if all(r is None or r.refcount == 0 or r.pack_id != sp.pack_id for r in recs):
                    for e, r in zip(sp.entries, recs, strict=True):
                        if r is not None and r.pack_id == sp.pack_id:
                            idx.delete_chunk(txn, e.chunk_id)
                    idx.delete_pack(txn, sp.pack_id)
                    dead.append(sp.pack_id)
        self.new_files, self.name_changes = [], []
        return dead

    def abort(self) -> None:
        """Give up: drop the open pack; committed work stays."""
        for fut, _ in self.pending:
            fut.cancel()
        self.pending.clear()
        self.batch, self.batch_jobs, self.batch_bytes = [], [], 0
        if self.writer is not None:
            self.writer.abort()
            self.writer = None
        self.sealer.shutdown(wait=True, cancel_futures=True)
