"""Getting files out: read chunks (local packs first, then backends), check, reassemble.

Every chunk is authenticated and ID-checked on the way out; a full read also
checks the whole-file BLAKE3. A corrupt local copy is not the end: every other
copy (each backend holding the pack) is tried before the read fails, and the
error names the chunk and every place it came from.

A read is also how records that arrived by import or sync become verified
(store/index.py): a chunk that decoded from its recorded place, and a file whose
whole-file hash matched, lose their "unverified" mark (`note_verified`: a write
transaction only when a record just read carries a mark).
"""

from __future__ import annotations

import bisect
import contextlib
import io
import logging
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING

from ..errors import IntegrityError, MosaicError, NotFoundError, StorageError
from . import codec
from .outfile import write_all, write_parts
from .records import ChunkRecord, Manifest

log = logging.getLogger("mosaic")

if TYPE_CHECKING:
    import lmdb

    from .outfile import Progress
    from .store import Store

BATCH_BYTES = 2 << 20
MAX_INFLIGHT = 6

Item = tuple[bytes, int, ChunkRecord]  # chunk_id, plain_len, record


def chunk_records(store: Store, m: Manifest, start: int = 0, end: int | None = None,
                  txn: lmdb.Transaction | None = None) -> list[Item]:
    """The chunk records for chunks [start, end) of a manifest, in one read txn
    (the caller's, if given)."""
    if txn is None:
        with store.index.read() as own:
            return chunk_records(store, m, start, end, own)
    items: list[Item] = []
    for cid, n in m.chunks[start:end]:
        r = store.index.get_chunk(cid, txn)
        if r is None:
            raise NotFoundError(f"chunk {cid.hex()[:16]} of file {m.file_id.hex()[:16]} is unknown to this node")
        items.append((cid, n, r))
    return items


def _decode_one(store: Store, cid: bytes, n: int, r: ChunkRecord, raw: bytes | memoryview | None,
                local_err: str | None, first_where: str = "local store") -> bytes:
    keys = store.keys
    tried: list[str] = []
    if raw is not None:
        try:
            return codec.decode(keys.chunk_enc, keys.chunk_id, cid, raw, n, where=first_where)
        except IntegrityError as e:
            tried.append(str(e))
            store.note_bad_copy(r.pack_id, first_where, str(e))
    elif local_err:
        tried.append(local_err)
    skip = {first_where[len("backend "):]} if raw is not None and first_where.startswith("backend ") else set()
    for blob, where in store.remote_copies(r.pack_id, r.offset, r.stored_len, skip):
        try:
            return codec.decode(keys.chunk_enc, keys.chunk_id, cid, blob, n, where=f"backend {where}")
        except IntegrityError as e:
            tried.append(str(e))
            store.note_bad_copy(r.pack_id, f"backend {where}", str(e))
    if store.index.change_log is not None:  # peers may have it (cluster/filelog.py); best effort
        with contextlib.suppress(MosaicError):
            store.index.change_log.want_again(store.index, [cid])
    if not tried:
        raise StorageError(f"chunk {cid.hex()[:16]} (pack {r.pack_id.hex()[:16]}) is not stored "
                           "locally and no backend holds it")
    raise IntegrityError(f"chunk {cid.hex()[:16]} is unreadable from every copy: " + "; ".join(tried))


def _read_run(store: Store, pid: bytes, start: int, length: int
              ) -> tuple[memoryview | None, str | None, str]:
    """A contiguous range of one pack: from the local store, else the first backend that has it.

    Returns (bytes or None, error text or None, where the bytes came from).
    """
    if store.has_local_pack(pid):
        try:
            return memoryview(store.local.read(pid, start, length)), None, "local store"
        except (OSError, IntegrityError) as e:
            return None, f"local pack {pid.hex()[:16]}: {e}", ""
    for blob, where in store.remote_copies(pid, start, length):
        if len(blob) == length:
            return memoryview(blob), None, f"backend {where}"
    return None, None, ""


def note_verified(store: Store, items: Sequence[Item] = (), manifests: Sequence[Manifest] = ()
                  ) -> None:
    """Clear the "unverified" marks of chunks just decoded and files just hash-checked.

    Costs one table count when nothing is unverified (the common case), and a write
    transaction only when a record of this read is marked. A failure to write is logged,
    never raised: the read itself succeeded.
    """
    idx = store.index
    if not (items or manifests):
        return
    with idx.read() as txn:  # the write lock only when some record of this read is marked
        if not idx.any_unverified(txn):
            return
        chunks = [(cid, r) for cid, _, r in items if not idx.chunk_verified(txn, cid)]
        files = [m for m in manifests if not idx.manifest_verified(txn, m.file_id)]
    if not (chunks or files):
        return
    try:
        with idx.write() as txn:
            idx.mark_verified(txn, chunks, files)
    except StorageError as e:
        log.info("could not record verified records: %s", e)


def decode_batch(store: Store, items: list[Item]) -> list[bytes]:
    """Read and decode a run of chunks; adjacent objects of one pack are read with one request.

    Every chunk returned was authenticated from its recorded place (`note_verified`)."""
    out: list[bytes] = []
    i = 0
    while i < len(items):
        cid, n, r = items[i]
        j, end = i + 1, r.offset + r.stored_len
        while j < len(items) and items[j][2].pack_id == r.pack_id and items[j][2].offset == end:
            end += items[j][2].stored_len
            j += 1
        raw, err, where = _read_run(store, r.pack_id, r.offset, end - r.offset)
        view = memoryview(raw) if raw is not None else None  # slices without copying
        for cid, n, rec in items[i:j]:
            part = None
            if view is not None:
                part = view[rec.offset - r.offset: rec.offset - r.offset + rec.stored_len]
            out.append(_decode_one(store, cid, n, rec, part, err, where))
        i = j
    note_verified(store, items)
    return out


def iter_batches(store: Store, items: list[Item]) -> Iterator[list[bytes]]:
    """Decoded chunks in order, a batch at a time, decoded on the worker pool with bounded read-ahead."""
    pending: deque[Future] = deque()
    batch: list[Item] = []
    size = 0
    try:
        for it in items:
            batch.append(it)
            size += it[1]
            if size >= BATCH_BYTES:
                pending.append(store.pool.submit(decode_batch, store, batch))
                batch, size = [], 0
                while len(pending) >= MAX_INFLIGHT:
                    yield pending.popleft().result()
        if batch:
            pending.append(store.pool.submit(decode_batch, store, batch))
        while pending:
            yield pending.popleft().result()
    finally:
        for f in pending:
            f.cancel()
    store.touch({r.pack_id for _, _, r in items})


def iter_plain(store: Store, items: list[Item]) -> Iterator[bytes]:
    """Decoded chunk data in order (see `iter_batches`)."""
    for parts in iter_batches(store, items):
        yield from parts


def restore_into(store: Store, m: Manifest, fd: int, progress: Progress | None = None) -> int:
    """Write a whole file to `fd` (at its current position) and check its hash.

    Three things overlap: the worker pool decodes batches, one hashing thread
    feeds the whole-file BLAKE3 in order, and this thread only writes. Writing
    into fresh page cache is the dearest step on small VMs, and one file takes
    one writer at a time, so it gets a thread of its own.
    """
    h = codec.file_id_hasher()
    hashing: deque[Future] = deque()
    total = 0
    with ThreadPoolExecutor(1, thread_name_prefix="mosaic-hash") as hasher:
        for parts in iter_batches(store, chunk_records(store, m)):
            hashing.append(hasher.submit(lambda ps=parts: [h.update(p) for p in ps]))
            n = write_all(fd, parts)
            total += n
            if progress:
                progress(n)
            while len(hashing) > MAX_INFLIGHT:
                hashing.popleft().result()
        while hashing:
            hashing.popleft().result()
    _check_file(m, h, total)
    note_verified(store, manifests=[m])
    return total


def read_range(store: Store, m: Manifest, offset: int, length: int | None) -> Iterator[bytes]:
    """The bytes [offset, offset+length) of a file, reading only the chunks needed."""
    if offset < 0 or (length is not None and length < 0):
        raise StorageError("offset and length must not be negative")
    end = m.size if length is None else min(m.size, offset + length)
    if offset >= end:
        return
    offs = m.offsets()
    first = bisect.bisect_right(offs, offset) - 1
    last = bisect.bisect_left(offs, end)
    pos = offs[first]
    for data in iter_plain(store, chunk_records(store, m, first, last)):
        lo, hi = max(offset - pos, 0), min(end - pos, len(data))
        if lo < hi:
            yield data[lo:hi] if (lo, hi) != (0, len(data)) else data
        pos += len(data)


def read_verified(store: Store, m: Manifest) -> Iterator[bytes]:
    """The whole file, checking the whole-file BLAKE3 at the end (IntegrityError if off)."""
    h = codec.file_id_hasher()
    total = 0
    for data in iter_plain(store, chunk_records(store, m)):
        h.update(data)
        total += len(data)
        yield data
    _check_file(m, h, total)
    note_verified(store, manifests=[m])


def _check_file(m: Manifest, h, total: int) -> None:  # a blake3 hasher
    """IntegrityError unless `total` bytes hashing to `h` make up the file."""
    if total != m.size or h.digest() != m.file_id:
        raise IntegrityError(f"file {m.file_id.hex()} does not match its hash after reassembly")


class FileReader(io.RawIOBase):
    """A seekable read stream over a stored file (`Node.open`)."""

    def __init__(self, store: Store, m: Manifest):
        self.store, self.m = store, m
        self.offs = m.offsets()
        self.pos = 0
        self._cache: tuple[int, bytes] | None = None

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, pos: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self.m.size}[whence]
        if base + pos < 0:
            raise ValueError("negative seek position")
        self.pos = base + pos
        return self.pos

    def tell(self) -> int:
        return self.pos

    def _chunk(self, i: int) -> bytes:
        if self._cache is None or self._cache[0] != i:
            items = chunk_records(self.store, self.m, i, i + 1)
            self._cache = (i, decode_batch(self.store, items)[0])
        return self._cache[1]

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        if self.pos >= self.m.size or len(b) == 0:
            return 0
        i = bisect.bisect_right(self.offs, self.pos) - 1
        data = self._chunk(i)
        lo = self.pos - self.offs[i]
        n = min(len(b), len(data) - lo)
        b[:n] = data[lo:lo + n]
        self.pos += n
        return n


SMALL_GROUP_BYTES, SMALL_GROUP_FILES = 4 << 20, 256  # one worker task's share


def group_small_files(files: list[tuple[Manifest, str]]) -> list[list[tuple[Manifest, str]]]:
    """Split small files into worker tasks of up to ~4 MiB or 256 files, in order."""
    groups: list[list[tuple[Manifest, str]]] = []
    size = SMALL_GROUP_BYTES
    for m, d in files:
        if size >= SMALL_GROUP_BYTES or len(groups[-1]) >= SMALL_GROUP_FILES:
            groups.append([])
            size = 0
        groups[-1].append((m, d))
        size += m.size
    return groups


def restore_small_files(store: Store, files: list[tuple[Manifest, str]],
                        progress: Progress | None = None) -> int:
    """Restore a group of small files, each checked and written whole (temp + rename).

    The group's chunks are looked up in one read transaction and read together,
    so files stored side by side in a pack cost one read between them.
    """
    items: list[Item] = []
    spans: list[tuple[int, int]] = []
    with store.index.read() as txn:
        for m, _ in files:
            start = len(items)
            items += chunk_records(store, m, txn=txn)
            spans.append((start, len(items)))
    parts = decode_batch(store, items)
    total = 0
    for (m, dest), (a, b) in zip(files, spans, strict=True):
        mine = parts[a:b]
        h = codec.file_id_hasher()
        for p in mine:
            h.update(p)
        _check_file(m, h, sum(len(p) for p in mine))
        total += write_parts(dest, mine)
        if progress:
            progress(m.size)
    store.touch({r.pack_id for _, _, r in items})
    note_verified(store, manifests=[m for m, _ in files])
    return total
