"""The LMDB index: manifests, chunk records, packs, names and queues.

Every multi-record change happens in one write transaction. Record layouts
(msgpack arrays; see docs/format.md):

    manifests  file_id(32)      -> [size, created_ns, chunk_table]   chunk_table = n x (id 32 B + len u32 LE)
    chunks     chunk_id(32)     -> [pack_id, offset, stored_len, plain_len, refcount]
    packs      pack_id(32)      -> [size, n_chunks, local, [backend names], created_ns]
    atime      pack_id(32)      -> last local read, ns (u64 LE), for LRU eviction
    names      name (utf-8)     -> [file_id, set_ns]
    fnames     file_id + name   -> b""   (reverse lookup)
    uploads    pack_id + backend name -> b""   (durable upload queue)
"""

from __future__ import annotations

import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import lmdb
import msgpack

from .errors import HomeError, StorageError

SCHEMA_VERSION = 1
_ENTRY = struct.Struct("<32sI")
_U64 = struct.Struct("<Q")
MAP_SIZE = 1 << 40  # virtual; the file grows only as pages are used


@dataclass(frozen=True)
class Manifest:
    """A file: its ID (plain BLAKE3), size, creation time and ordered chunk list."""

    file_id: bytes
    size: int
    created_ns: int
    chunks: tuple[tuple[bytes, int], ...]  # (chunk_id, plain length)

    def offsets(self) -> list[int]:
        """The byte offset of each chunk in the file."""
        out, pos = [], 0
        for _, n in self.chunks:
            out.append(pos)
            pos += n
        return out


@dataclass(frozen=True)
class ChunkRecord:
    """Where one chunk is stored and how many manifests reference it."""

    pack_id: bytes
    offset: int
    stored_len: int
    plain_len: int
    refcount: int


@dataclass(frozen=True)
class PackRecord:
    """One pack: size, chunk count, whether a local copy exists, and its backends."""

    size: int
    n_chunks: int
    local: bool
    locations: tuple[str, ...]
    created_ns: int


def encode_chunk_table(chunks: tuple[tuple[bytes, int], ...] | list) -> bytes:
    """n x (32-byte ID + u32 length)."""
    return b"".join(_ENTRY.pack(c, n) for c, n in chunks)


def decode_chunk_table(blob: bytes) -> tuple[tuple[bytes, int], ...]:
    """Inverse of encode_chunk_table."""
    return tuple(_ENTRY.iter_unpack(blob))


def _pack(obj: object) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def _unpack(b: bytes) -> list:
    return msgpack.unpackb(b, raw=False)


def manifest_value(m: Manifest) -> bytes:
    """The LMDB value for a manifest."""
    return _pack([m.size, m.created_ns, encode_chunk_table(m.chunks)])


def manifest_from(fid: bytes, v: bytes) -> Manifest:
    """Decode a manifests-table value."""
    size, created, table = _unpack(v)
    return Manifest(fid, size, created, decode_chunk_table(table))


def chunk_value(r: ChunkRecord) -> bytes:
    """The LMDB value for a chunk record."""
    return _pack([r.pack_id, r.offset, r.stored_len, r.plain_len, r.refcount])


def chunk_from(v: bytes) -> ChunkRecord:
    """Decode a chunks-table value."""
    return ChunkRecord(*_unpack(v))


def pack_value(r: PackRecord) -> bytes:
    """The LMDB value for a pack record."""
    return _pack([r.size, r.n_chunks, r.local, list(r.locations), r.created_ns])


def pack_from(v: bytes) -> PackRecord:
    """Decode a packs-table value."""
    size, n, local, locs, created = _unpack(v)
    return PackRecord(size, n, local, tuple(locs), created)


class Index:
    """The node's LMDB environment and its named tables."""

    TABLES = ("meta", "manifests", "chunks", "packs", "atime", "names", "fnames", "uploads")

    def __init__(self, path: Path, readonly: bool = False):
        try:
            self.env = lmdb.open(str(path), map_size=MAP_SIZE, max_dbs=16, subdir=True,
                                 readonly=readonly, lock=True, metasync=True, sync=True,
                                 max_readers=256, readahead=False)
        except lmdb.Error as e:
            raise HomeError(f"cannot open the index at {path}: {e}") from None
        self.db = {t: self.env.open_db(t.encode()) for t in self.TABLES} if not readonly else {
            t: self.env.open_db(t.encode(), create=False) for t in self.TABLES}
        if not readonly:
            with self.write() as txn:
                cur = txn.get(b"schema", db=self.db["meta"])
                if cur is None:
                    txn.put(b"schema", str(SCHEMA_VERSION).encode(), db=self.db["meta"])
                elif int(cur) != SCHEMA_VERSION:
                    raise HomeError(f"index schema {int(cur)} is not supported by this version")

    def close(self) -> None:
        """Close the environment."""
        self.env.close()

    def write(self) -> _WriteTxn:
        """A write transaction as a context manager (commits on success)."""
        return _WriteTxn(self.env)

    def read(self) -> lmdb.Transaction:
        """A read-only transaction."""
        return self.env.begin(write=False, buffers=False)

    # ---- reads -------------------------------------------------------------
    def get_manifest(self, fid: bytes, txn: lmdb.Transaction | None = None) -> Manifest | None:
        """The manifest for a file ID, or None."""
        t = txn or self.read()
        v = t.get(fid, db=self.db["manifests"])
        return manifest_from(fid, v) if v is not None else None

    def has_manifest(self, fid: bytes) -> bool:
        """True if the file ID is known."""
        with self.read() as t:
            return t.get(fid, db=self.db["manifests"]) is not None

    def get_chunk(self, cid: bytes, txn: lmdb.Transaction | None = None) -> ChunkRecord | None:
        """The chunk record, or None."""
        t = txn or self.read()
        v = t.get(cid, db=self.db["chunks"])
        return chunk_from(v) if v is not None else None

    def has_chunk(self, cid: bytes) -> bool:
        """True if a chunk record exists (its pack is durable)."""
        with self.env.begin(db=self.db["chunks"]) as t:
            return t.get(cid) is not None

    def get_pack(self, pid: bytes, txn: lmdb.Transaction | None = None) -> PackRecord | None:
        """The pack record, or None."""
        t = txn or self.read()
        v = t.get(pid, db=self.db["packs"])
        return pack_from(v) if v is not None else None

    def resolve_name(self, name: str, txn: lmdb.Transaction | None = None) -> bytes | None:
        """The file ID a name points at, or None."""
        t = txn or self.read()
        v = t.get(name.encode("utf-8"), db=self.db["names"])
        return _unpack(v)[0] if v is not None else None

    def names_of(self, fid: bytes, txn: lmdb.Transaction | None = None) -> list[str]:
        """Every name that points at a file ID."""
        t = txn or self.read()
        out = []
        cur = t.cursor(db=self.db["fnames"])
        if cur.set_range(fid):
            for k in cur.iternext(values=False):
                if not k.startswith(fid):
                    break
                out.append(k[32:].decode("utf-8"))
        return out

    def iter_names(self, prefix: str = "", txn: lmdb.Transaction | None = None
                   ) -> Iterator[tuple[str, bytes, int]]:
        """(name, file_id, set_ns) for names starting with `prefix`, sorted."""
        t = txn or self.read()
        p = prefix.encode("utf-8")
        cur = t.cursor(db=self.db["names"])
        if not cur.set_range(p):
            return
        for k, v in cur.iternext():
            if not k.startswith(p):
                break
            fid, set_ns = _unpack(v)
            yield k.decode("utf-8"), fid, set_ns

    def iter_manifest_ids(self, txn: lmdb.Transaction | None = None) -> Iterator[bytes]:
        """Every file ID, sorted."""
        t = txn or self.read()
        yield from t.cursor(db=self.db["manifests"]).iternext(values=False)

    def iter_table(self, table: str, txn: lmdb.Transaction | None = None) -> Iterator[tuple[bytes, bytes]]:
        """Raw (key, value) pairs of a table."""
        t = txn or self.read()
        yield from t.cursor(db=self.db[table]).iternext()

    def count(self, table: str) -> int:
        """Number of entries in a table."""
        with self.read() as t:
            return t.stat(self.db[table])["entries"]

    # ---- writes (inside a caller's write txn) ------------------------------
    def add_manifest(self, txn: lmdb.Transaction, m: Manifest) -> bool:
        """Add a manifest and take a reference on each distinct chunk; False if it existed.

        Every chunk must already have a record (its pack is durable).
        """
        if txn.get(m.file_id, db=self.db["manifests"]) is not None:
            return False
        for cid in {c for c, _ in m.chunks}:
            v = txn.get(cid, db=self.db["chunks"])
            if v is None:
                raise StorageError(f"internal: chunk {cid.hex()[:16]} has no record")
            r = chunk_from(v)
            txn.put(cid, chunk_value(ChunkRecord(r.pack_id, r.offset, r.stored_len, r.plain_len,
                                                 r.refcount + 1)), db=self.db["chunks"])
        txn.put(m.file_id, manifest_value(m), db=self.db["manifests"])
        return True

    def remove_manifest(self, txn: lmdb.Transaction, fid: bytes) -> bool:
        """Drop a manifest, its names and its chunk references; False if unknown."""
        v = txn.get(fid, db=self.db["manifests"])
        if v is None:
            return False
        m = manifest_from(fid, v)
        for cid in {c for c, _ in m.chunks}:
            cv = txn.get(cid, db=self.db["chunks"])
            if cv is not None:
                r = chunk_from(cv)
                txn.put(cid, chunk_value(ChunkRecord(r.pack_id, r.offset, r.stored_len, r.plain_len,
                                                     max(0, r.refcount - 1))), db=self.db["chunks"])
        for name in self.names_of(fid, txn):
            self.unset_name(txn, name)
        txn.delete(fid, db=self.db["manifests"])
        return True

    def set_name(self, txn: lmdb.Transaction, name: str, fid: bytes) -> bytes | None:
        """Point `name` at `fid`; returns the file ID it pointed at before, if any."""
        k = name.encode("utf-8")
        old = txn.get(k, db=self.db["names"])
        old_fid = _unpack(old)[0] if old is not None else None
        if old_fid == fid:
            return old_fid
        if old_fid is not None:
            txn.delete(old_fid + k, db=self.db["fnames"])
        txn.put(k, _pack([fid, time.time_ns()]), db=self.db["names"])
        txn.put(fid + k, b"", db=self.db["fnames"])
        return old_fid

    def unset_name(self, txn: lmdb.Transaction, name: str) -> bytes | None:
        """Remove a name; returns the file ID it pointed at, or None."""
        k = name.encode("utf-8")
        old = txn.get(k, db=self.db["names"])
        if old is None:
            return None
        fid = _unpack(old)[0]
        txn.delete(k, db=self.db["names"])
        txn.delete(fid + k, db=self.db["fnames"])
        return fid

    def put_chunk_if_absent(self, txn: lmdb.Transaction, cid: bytes, r: ChunkRecord) -> bool:
        """Record a chunk unless another writer recorded it first."""
        return txn.put(cid, chunk_value(r), db=self.db["chunks"], overwrite=False)

    def put_pack(self, txn: lmdb.Transaction, pid: bytes, r: PackRecord) -> None:
        """Create or replace a pack record."""
        txn.put(pid, pack_value(r), db=self.db["packs"])

    def touch_packs(self, pids: set[bytes]) -> None:
        """Record a local read of these packs (for LRU eviction)."""
        if not pids:
            return
        now = _U64.pack(time.time_ns())
        with self.write() as txn:
            for p in pids:
                txn.put(p, now, db=self.db["atime"])

    def atime(self, pid: bytes, txn: lmdb.Transaction) -> int:
        """Last local read of a pack (0 if never)."""
        v = txn.get(pid, db=self.db["atime"])
        return _U64.unpack(v)[0] if v else 0


class _WriteTxn:
    """Commit on success, abort on error; maps LMDB errors to StorageError."""

    def __init__(self, env: lmdb.Environment):
        self.env = env
        self.txn: lmdb.Transaction | None = None

    def __enter__(self) -> lmdb.Transaction:
        try:
            self.txn = self.env.begin(write=True)
        except lmdb.Error as e:
            raise StorageError(f"index: {e}") from None
        return self.txn

    def __exit__(self, et: type | None, ev: BaseException | None, tb: object) -> None:
        assert self.txn is not None
        if et is None:
            try:
                self.txn.commit()
            except lmdb.MapFullError:
                raise StorageError("index is full") from None
            except lmdb.Error as e:
                raise StorageError(f"index commit failed: {e}") from None
        else:
            self.txn.abort()
            if isinstance(ev, lmdb.Error):
                raise StorageError(f"index: {ev}") from None
