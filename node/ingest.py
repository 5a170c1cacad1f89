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
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO

from . import codec
from .chunker import chunk_stream
from .index import ChunkRecord, Manifest, PackRecord
from .packs import PackWriter, SealedPack

if TYPE_CHECKING:
    from .api import Node

BATCH_BYTES = 1 << 20
MAX_INFLIGHT = 6


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


class Ingest:
    """One put session: any number of files, made durable by `close()`."""

    def __init__(self, node: Node, progress: Callable[[int], None] | None = None):
        self.node = node
        self.keys = node.keys
        self.params = node.chunk_params
        self.level = node.config.compression_level
        self.pack_size = node.config.pack_size
        self.pool: ThreadPoolExecutor = node.pool
        self.sealer = ThreadPoolExecutor(1, thread_name_prefix="mosaic-seal")
        self.jobs: deque[Future] = deque()
        self.writer: PackWriter | None = None
        self.waiting: list[tuple[Manifest, tuple[str, ...]]] = []
        self.inflight: set[bytes] = set()
        self.sealed: list[SealedPack] = []
        self.progress = progress or (lambda n: None)
        self._chunks_db = node.index.db["chunks"]

    # ---- worker side -------------------------------------------------------
    def _encode_batch(self, chunks: list[bytes]) -> list[tuple[bytes, int, bytes | None]]:
        id_key, enc_key, level = self.keys.chunk_id, self.keys.chunk_enc, self.level
        out: list[tuple[bytes, int, bytes | None]] = []
        with self.node.index.env.begin(db=self._chunks_db) as txn:
            for c in chunks:
                cid = codec.chunk_id(id_key, c)
                if cid in self.inflight or txn.get(cid) is not None:
                    out.append((cid, len(c), None))
                else:
                    out.append((cid, len(c), codec.encode(enc_key, cid, c, level)))
        return out

    # ---- main thread -------------------------------------------------------
    def put_stream(self, stream: BinaryIO, names: tuple[str, ...] = ()) -> PutResult:
        """Store everything `stream` yields; the result is durable after `close()`."""
        hasher = codec.file_id_hasher()
        size = 0
        table: list[tuple[bytes, int]] = []
        stats = [0, 0]  # new chunks, new bytes
        pending: deque[Future] = deque()
        batch: list[bytes] = []
        batch_bytes = 0
        try:
            for c in chunk_stream(stream, self.params):
                hasher.update(c)
                size += len(c)
                batch.append(c)
                batch_bytes += len(c)
                if batch_bytes >= BATCH_BYTES:
                    pending.append(self.pool.submit(self._encode_batch, batch))
                    batch, batch_bytes = [], 0
                    while len(pending) >= MAX_INFLIGHT:
                        self._write(pending.popleft().result(), table, stats)
            if batch:
                pending.append(self.pool.submit(self._encode_batch, batch))
            while pending:
                self._write(pending.popleft().result(), table, stats)
        except BaseException:
            for f in pending:
                f.cancel()
            raise
        m = Manifest(hasher.digest(), size, time.time_ns(), tuple(table))
        if self.writer is not None and self.writer.entries:
            self.waiting.append((m, names))
        else:
            self.jobs.append(self.sealer.submit(self._commit, None, [(m, names)]))
        self._reap()
        return PutResult(m.file_id, names, size, len(table), stats[0], stats[1])

    def _write(self, results: list[tuple[bytes, int, bytes | None]],
               table: list[tuple[bytes, int]], stats: list[int]) -> None:
        for cid, n, blob in results:
            table.append((cid, n))
            self.progress(n)
            if blob is None or cid in self.inflight:
                continue
            if self.writer is None:
                self.writer = PackWriter(self.node.home, self.keys.pack_index)
            self.writer.add(cid, blob, n)
            self.inflight.add(cid)
            stats[0] += 1
            stats[1] += len(blob)
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
        idx = self.node.index
        backends = [b.name for b in self.node.config.backends]
        with idx.write() as txn:
            if sealed is not None:
                idx.put_pack(txn, sealed.pack_id, PackRecord(sealed.size, len(sealed.entries),
                                                             True, (), time.time_ns()))
                for e in sealed.entries:
                    idx.put_chunk(txn, e.chunk_id, ChunkRecord(
                        sealed.pack_id, e.offset, e.stored_len, e.plain_len, 0), overwrite=False)
                for b in backends:
                    idx.queue_upload(txn, sealed.pack_id, b)
            changes: list[tuple[str, bytes | None]] = []
            for m, names in manifests:
                idx.add_manifest(txn, m)
                changes += [(n, m.file_id) for n in names]
            idx.set_names(txn, changes)
        if sealed is not None:
            self.sealed.append(sealed)

    def close(self) -> None:
        """Seal the last pack and commit every waiting manifest; raises the first error."""
        try:
            if self.writer is not None or self.waiting:
                if self.writer is not None and not self.writer.entries:
                    self.writer.abort()
                    self.writer = None
                self._rotate()
            while self.jobs:
                self.jobs.popleft().result()
        finally:
            self.sealer.shutdown(wait=True)

    def abort(self) -> None:
        """Give up: drop the open pack; committed work stays."""
        if self.writer is not None:
            self.writer.abort()
            self.writer = None
        self.sealer.shutdown(wait=True, cancel_futures=True)
