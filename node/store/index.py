"""The LMDB index: manifests, chunk records, packs, names and queues.

Every multi-record change happens in one write transaction. Files and packs
get small sequential numbers so that the many rows that point at them (names,
chunk records) store a few bytes instead of a 32-byte ID. Record layouts
(msgpack arrays; the record types and their codecs are in records.py; see docs/format.md):

    manifests  file_id(32)       -> [file_no, size, created_ns, chunk_table]
                                    chunk_table = n x (chunk id 32 B + length u32 LE)
    files      file_no (u64 BE)  -> file_id
    chunks     chunk_id(32)      -> [pack_no, offset, stored_len, plain_len, refcount]
    packs      pack_id(32)       -> [pack_no, size, n_chunks, local, [backend names], created_ns,
                                     owner]   owner: node tag of the sealer, "" foreign (absent in
                                     older rows: see PackRecord.owner and docs/format.md)
    packnos    pack_no (u64 BE)  -> pack_id
    atime      pack_id(32)       -> last local read, ns (u64 LE), for LRU eviction
    names      first name of a block -> zstd(msgpack [[name, file_no], ...])  (namestore.py)
    uploads    pack_id + backend name -> b""   (the durable upload queue)
    repairs    pack_id + backend name -> reason (utf-8)   (copies found missing or corrupt)
    events     time_ns (u64 BE) + 4 random bytes -> msgpack [kind, backend, bytes, seconds, error]
    journal    kind (b"p" pack, b"c" chunk, b"m" manifest, b"n" name) + pack/chunk/file ID or
               utf-8 name -> change number (u64 LE): what changed since the backends' index
               copies last heard (cloud/indexlog.py); written in the transaction of the change,
               only while meta b"journal" is set (b"N" + BLAKE2b(name) -> number + name for
               a name too long for a key)
    unverified b"m" + file ID / b"c" + chunk ID -> b""   records this node has not verified
    meta       b"schema", b"next_file", b"next_pack", b"journal_seq" -> counters

Verified records: a manifest or chunk record written by this node's own put (or fetched and
authenticated) is *verified*; one that arrived by import or sync (`verified=False`) is marked
in `unverified` until a read on this node authenticates it (restore.py: a chunk that decodes
under this node's key from the recorded place, a file whose whole-file hash matches). Ingest
deduplicates against verified chunk records only, and a put's own records replace unverified
ones (`put_chunk(verified=True)`, `put_verified_manifest`), so a claim nobody checked never
stands in for content the put holds. Rows written before marks existed count as verified.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Protocol

import lmdb

from ..errors import HomeError, StorageError
from .journal import JournalTables
from .namestore import NameStore
from .nametables import NameTables
from .queues import QueueTables
from .records import (
    BE64,
    U64,
    ChunkRecord,
    Manifest,
    PackRecord,
    decode_chunk_table,
    decode_pack_record,
    decode_row,
    encode_chunk_table,
    encode_row,
)

SCHEMA_VERSION = 1
MAP_SIZE = 1 << 40  # virtual; the file grows only as pages are used
LOCAL = "@local"  # the repair queue's name for the local store


class ChangeLog(Protocol):
    """Replication's view of index writes, made in the writer's transaction."""

    def log_manifest(self, index: Index, txn: lmdb.Transaction, m: Manifest) -> None:
        """A manifest was added."""
        ...

    def log_have(self, index: Index, txn: lmdb.Transaction, fid: bytes, have: bool) -> None:
        """This node now holds (or no longer holds) a whole file."""
        ...

    def write_names(self, index: Index, txn: lmdb.Transaction,
                    changes: list[tuple[str, bytes | None]]
                    ) -> list[tuple[str, bytes | None, bytes | None]]:
        """Versioned name writes; returns (name, old, new) per real change."""
        ...

    def want_again(self, index: Index, cids: Sequence[bytes]) -> int:
        """Chunks a read could not get from any copy: want them from peers."""
        ...


class Index(NameTables, JournalTables, QueueTables):
    """The node's LMDB environment and its named tables (the names', the journal's and the
    queues' methods are in nametables.py, journal.py and queues.py)."""

    TABLES = ("meta", "manifests", "files", "chunks", "packs", "packnos", "atime", "names", "uploads",
              "repairs", "events", "journal",
              # replication (cluster/synclog.py, namelog.py, filelog.py): empty before a first peer
              "synclog", "syncvec", "namestate", "waiting", "wanted", "peers", "pins", "have",
              "wantedby", "namewait",
              # empty folders (store/tree.py), HTTP tokens (cluster/tokens.py), gc marks (cloud/gc.py)
              "folders", "tokens", "gcmarks",
              # records not verified by this node (imported or replicated claims)
              "unverified",
              # name -> when it was last written here (ns): the mount's mtime
              "nametimes")

    def __init__(self, path: Path):
        try:
            self.env = lmdb.open(str(path), map_size=MAP_SIZE, max_dbs=48, subdir=True,
                                 lock=True, metasync=True, sync=True, max_readers=256,
                                 readahead=False)
        except lmdb.Error as e:
            raise HomeError(f"cannot open the index at {path}: {e}") from None
        self.db = {t: self.env.open_db(t.encode()) for t in self.TABLES}
        with self.write() as txn:
            cur = txn.get(b"schema", db=self.db["meta"])
            if cur is None:
                txn.put(b"schema", str(SCHEMA_VERSION).encode(), db=self.db["meta"])
            elif int(cur) != SCHEMA_VERSION:
                raise HomeError(f"index schema {int(cur)} is not supported by this version")
        self.names = NameStore(self.db["names"])
        self._pid_by_no: dict[int, bytes] = {}
        with self.read() as txn:
            #: this node's ID once replication is enabled (cluster/syncstore.enable); None before
            self.repl_origin: bytes | None = txn.get(b"node_id", db=self.db["meta"])
        #: replication's hook (cluster layer); required once repl_origin is set
        self.change_log: ChangeLog | None = None
        # the write transaction the journal last looked at, and its change number (None: off)
        self._jtxn: lmdb.Transaction | None = None
        self._jseq: int | None = None

    def _change_log(self) -> ChangeLog:
        if self.change_log is None:
            raise StorageError("this node replicates its index; open it with mosaic.Node "
                               "(the store alone cannot log replicated writes)")
        return self.change_log

    def close(self) -> None:
        """Close the environment."""
        self.env.close()

    def write(self) -> _WriteTxn:
        """A write transaction as a context manager (commits on success)."""
        return _WriteTxn(self.env)

    def read(self) -> lmdb.Transaction:
        """A read-only transaction."""
        return self.env.begin(write=False, buffers=False)

    def next_counter(self, txn: lmdb.Transaction, counter: bytes) -> int:
        """Take the next value of a counter in `meta` (starting at 1)."""
        v = txn.get(counter, db=self.db["meta"])
        n = U64.unpack(v)[0] if v else 1
        txn.put(counter, U64.pack(n + 1), db=self.db["meta"])
        return n

    def set_counter(self, txn: lmdb.Transaction, counter: bytes, value: int) -> None:
        """Make `value` the counter's next value."""
        txn.put(counter, U64.pack(value), db=self.db["meta"])

    # ---- files -------------------------------------------------------------
    def manifest_head(self, fid: bytes, txn: lmdb.Transaction | None = None
                      ) -> tuple[int, int] | None:
        """(size, created_ns) of a file without decoding its chunk table, or None."""
        v = (txn or self.read()).get(fid, db=self.db["manifests"])
        if v is None:
            return None
        row = decode_row(v)
        return int(row[1]), int(row[2])

    def get_manifest(self, fid: bytes, txn: lmdb.Transaction | None = None) -> Manifest | None:
        """The manifest for a file ID, or None."""
        v = (txn or self.read()).get(fid, db=self.db["manifests"])
        if v is None:
            return None
        _, size, created, table = decode_row(v)
        return Manifest(fid, size, created, decode_chunk_table(table))

    def iter_manifest_ids(self, txn: lmdb.Transaction | None = None) -> Iterator[bytes]:
        """Every file ID, sorted."""
        yield from (txn or self.read()).cursor(db=self.db["manifests"]).iternext(values=False)

    def add_manifest(self, txn: lmdb.Transaction, m: Manifest, verified: bool = True) -> bool:
        """Add a manifest and take a reference on each distinct chunk; False if it existed
        (an existing manifest is left as it is).

        Every chunk must already have a record (its pack is durable). `verified=False` (import,
        sync) marks the new manifest as a claim this node has not checked (see above).
        """
        if txn.get(m.file_id, db=self.db["manifests"]) is not None:
            return False
        self._reference(txn, {c for c, _ in m.chunks}, +1)
        no = self.next_counter(txn, b"next_file")
        txn.put(m.file_id, encode_row([no, m.size, m.created_ns, encode_chunk_table(m.chunks)]),
                db=self.db["manifests"])
        txn.put(BE64.pack(no), m.file_id, db=self.db["files"], append=True)
        if not verified:
            txn.put(b"m" + m.file_id, b"", db=self.db["unverified"])
        self._journal(txn, b"m" + m.file_id)
        if self.repl_origin is not None:
            self._change_log().log_manifest(self, txn, m)
        return True

    def put_verified_manifest(self, txn: lmdb.Transaction, m: Manifest) -> bool:
        """Record the manifest a put computed from the file's own bytes (its chunks have
        verified records): added if new; a stored manifest of that file ID with another
        chunk list is replaced (references move, the file number and names stay); either
        way the manifest is verified. True if the stored manifest changed."""
        v = txn.get(m.file_id, db=self.db["manifests"])
        if v is None:
            return self.add_manifest(txn, m)
        no, _, _, table = decode_row(v)
        new_table = encode_chunk_table(m.chunks)
        txn.delete(b"m" + m.file_id, db=self.db["unverified"])
        if table == new_table:
            return False
        old, new = {c for c, _ in decode_chunk_table(table)}, {c for c, _ in m.chunks}
        self._reference(txn, new - old, +1)
        self._reference(txn, old - new, -1)
        txn.put(m.file_id, encode_row([no, m.size, m.created_ns, new_table]),
                db=self.db["manifests"])
        self._journal(txn, b"m" + m.file_id)
        if self.repl_origin is not None:
            self._change_log().log_manifest(self, txn, m)
        return True

    def _reference(self, txn: lmdb.Transaction, cids: Iterable[bytes], delta: int) -> None:
        """Add `delta` to the refcount of each chunk (a missing record: StorageError when
        taking a reference, ignored when dropping one)."""
        for cid in cids:
            v = txn.get(cid, db=self.db["chunks"])
            if v is None:
                if delta > 0:
                    raise StorageError(f"chunk {cid.hex()[:16]} was not stored; put again")
                continue
            row = decode_row(v)
            row[4] = max(0, row[4] + delta)
            txn.put(cid, encode_row(row), db=self.db["chunks"])

    def remove_manifest(self, txn: lmdb.Transaction, fid: bytes) -> bool:
        """Drop a manifest, its names and its chunk references; False if unknown."""
        v = txn.get(fid, db=self.db["manifests"])
        if v is None:
            return False
        no, _, _, table = decode_row(v)
        self._reference(txn, {c for c, _ in decode_chunk_table(table)}, -1)
        names = self.names_of(fid, txn)
        if names:
            self.set_names(txn, [(n, None) for n in names])
        txn.delete(fid, db=self.db["manifests"])
        txn.delete(b"m" + fid, db=self.db["unverified"])
        txn.delete(BE64.pack(no), db=self.db["files"])
        self._journal(txn, b"m" + fid)
        if self.repl_origin is not None:
            self._change_log().log_have(self, txn, fid, False)
        return True

    # ---- chunks ------------------------------------------------------------
    def _pid(self, txn: lmdb.Transaction, no: int) -> bytes:
        pid = self._pid_by_no.get(no)
        if pid is None:
            pid = txn.get(BE64.pack(no), db=self.db["packnos"])
            if pid is None:
                raise StorageError(f"index damaged: pack number {no} is unknown")
            self._pid_by_no[no] = pid
        return pid

    def _pack_no(self, txn: lmdb.Transaction, pid: bytes) -> int:
        v = txn.get(pid, db=self.db["packs"])
        if v is None:
            raise StorageError(f"internal: pack {pid.hex()[:16]} has no record")
        return decode_row(v)[0]

    def get_chunk(self, cid: bytes, txn: lmdb.Transaction | None = None) -> ChunkRecord | None:
        """The chunk record, or None."""
        t = txn or self.read()
        v = t.get(cid, db=self.db["chunks"])
        if v is None:
            return None
        no, off, slen, plen, ref = decode_row(v)
        return ChunkRecord(self._pid(t, no), off, slen, plen, ref)

    def has_chunk(self, cid: bytes) -> bool:
        """True if a chunk record exists (its pack is durable)."""
        with self.env.begin(db=self.db["chunks"]) as t:
            return t.get(cid) is not None

    def put_chunk(self, txn: lmdb.Transaction, cid: bytes, r: ChunkRecord, overwrite: bool = True,
                  verified: bool | None = None) -> bool:
        """Record a chunk (its pack must have a record); False if it existed and not overwriting.

        `verified`: True for a copy this node wrote or authenticated itself (it then also
        replaces an *unverified* record when not overwriting, keeping that record's refcount);
        False for a claim from an import or a peer (the new record is marked unverified);
        None keeps an overwritten record's mark and leaves a new record unmarked.
        """
        udb = self.db["unverified"]
        if not overwrite and verified and txn.get(b"c" + cid, db=udb) is not None:
            v = txn.get(cid, db=self.db["chunks"])
            if v is not None:
                r = replace(r, refcount=decode_row(v)[4])
                overwrite = True
        row = [self._pack_no(txn, r.pack_id), r.offset, r.stored_len, r.plain_len, r.refcount]
        done = txn.put(cid, encode_row(row), db=self.db["chunks"], overwrite=overwrite)
        if done:
            if verified is not None:
                if verified:
                    txn.delete(b"c" + cid, db=udb)
                else:
                    txn.put(b"c" + cid, b"", db=udb)
            self._journal(txn, b"c" + cid)
        return done

    def delete_chunk(self, txn: lmdb.Transaction, cid: bytes) -> None:
        """Drop a chunk record."""
        if txn.delete(cid, db=self.db["chunks"]):
            txn.delete(b"c" + cid, db=self.db["unverified"])
            self._journal(txn, b"c" + cid)

    # ---- verification marks (see the module's docstring) -------------------
    def any_unverified(self, txn: lmdb.Transaction | None = None) -> bool:
        """True if some manifest or chunk record is not verified yet (cheap: a table count)."""
        if txn is None:
            with self.read() as t:
                return t.stat(self.db["unverified"])["entries"] > 0
        return txn.stat(self.db["unverified"])["entries"] > 0

    def chunk_verified(self, txn: lmdb.Transaction, cid: bytes) -> bool:
        """True if the chunk has a record and this node has verified it."""
        return (txn.get(cid, db=self.db["chunks"]) is not None
                and txn.get(b"c" + cid, db=self.db["unverified"]) is None)

    def manifest_verified(self, txn: lmdb.Transaction, fid: bytes) -> bool:
        """True if the manifest exists and this node has verified it."""
        return (txn.get(fid, db=self.db["manifests"]) is not None
                and txn.get(b"m" + fid, db=self.db["unverified"]) is None)

    def iter_unverified(self, txn: lmdb.Transaction) -> Iterator[tuple[str, bytes]]:
        """(kind "m" or "c", file or chunk ID) of every record not verified yet."""
        for k in txn.cursor(db=self.db["unverified"]).iternext(values=False):
            yield k[:1].decode(), bytes(k[1:])

    def mark_verified(self, txn: lmdb.Transaction, chunks: Iterable[tuple[bytes, ChunkRecord]] = (),
                      manifests: Iterable[Manifest] = ()) -> int:
        """Clear the marks of records a read has just authenticated; returns how many.

        Each is cleared only if its record is still the one that was read (a chunk at the
        same place, a manifest with the same chunk list), so a claim written meanwhile keeps
        its mark.
        """
        udb, done = self.db["unverified"], 0
        for cid, rec in chunks:
            if txn.get(b"c" + cid, db=udb) is None:
                continue
            cur = self.get_chunk(cid, txn)
            if cur is not None and (cur.pack_id, cur.offset, cur.stored_len) == (
                    rec.pack_id, rec.offset, rec.stored_len):
                done += txn.delete(b"c" + cid, db=udb)
        for m in manifests:
            if txn.get(b"m" + m.file_id, db=udb) is None:
                continue
            cur_m = self.get_manifest(m.file_id, txn)
            if cur_m is not None and cur_m.chunks == m.chunks:
                done += txn.delete(b"m" + m.file_id, db=udb)
        return done

    def iter_chunks(self, txn: lmdb.Transaction) -> Iterator[tuple[bytes, ChunkRecord]]:
        """Every (chunk_id, record)."""
        for k, v in txn.cursor(db=self.db["chunks"]).iternext():
            no, off, slen, plen, ref = decode_row(v)
            yield k, ChunkRecord(self._pid(txn, no), off, slen, plen, ref)

    # ---- packs -------------------------------------------------------------
    def get_pack(self, pid: bytes, txn: lmdb.Transaction | None = None) -> PackRecord | None:
        """The pack record, or None."""
        v = (txn or self.read()).get(pid, db=self.db["packs"])
        return None if v is None else decode_pack_record(v)

    def owns(self, txn: lmdb.Transaction, pid: bytes, rec: PackRecord, node_tag: str) -> bool:
        """True if this node (tag `node_tag`) sealed the pack, so it may delete, rewrite or sweep
        it on backends. A record without an owner (written before owners were recorded) counts
        as owned when the pack is local or queued for upload here, else (a location hint) not."""
        if rec.owner is not None:
            return bool(node_tag) and rec.owner == node_tag
        if rec.local:
            return True
        cur = txn.cursor(db=self.db["uploads"])
        return cur.set_range(pid) and bytes(cur.key()[:32]) == pid

    def put_pack(self, txn: lmdb.Transaction, pid: bytes, r: PackRecord) -> None:
        """Create or replace a pack record (a new pack gets the next pack number)."""
        v = txn.get(pid, db=self.db["packs"])
        if v is not None:
            old = decode_row(v)
            no = old[0]
            if old[1:3] + [list(old[4])] != [r.size, r.n_chunks, list(r.locations)]:
                self._journal(txn, b"p" + pid)  # not for the local flag (cache only)
        else:
            no = self.next_counter(txn, b"next_pack")
            txn.put(BE64.pack(no), pid, db=self.db["packnos"], append=True)
            self._journal(txn, b"p" + pid)
        row = [no, r.size, r.n_chunks, r.local, list(r.locations), r.created_ns]
        if r.owner is not None:
            row.append(r.owner)
        txn.put(pid, encode_row(row), db=self.db["packs"])

    def delete_pack(self, txn: lmdb.Transaction, pid: bytes) -> None:
        """Drop a pack record (its chunk records must be gone or moved)."""
        v = txn.get(pid, db=self.db["packs"])
        if v is not None:
            txn.delete(BE64.pack(decode_row(v)[0]), db=self.db["packnos"])
            txn.delete(pid, db=self.db["packs"])
            self._journal(txn, b"p" + pid)
        txn.delete(pid, db=self.db["atime"])

    def iter_packs(self, txn: lmdb.Transaction) -> Iterator[tuple[bytes, PackRecord]]:
        """Every (pack_id, record)."""
        for k, v in txn.cursor(db=self.db["packs"]).iternext():
            yield k, decode_pack_record(v)

    def touch_packs(self, pids: set[bytes]) -> None:
        """Record a local read of these packs (for LRU eviction)."""
        if not pids:
            return
        with self.write() as txn:
            for p in pids:
                self.touch_pack(txn, p)

    def touch_pack(self, txn: lmdb.Transaction, pid: bytes) -> None:
        """Record a local read (or arrival) of one pack, now."""
        txn.put(pid, U64.pack(time.time_ns()), db=self.db["atime"])

    def atime(self, pid: bytes, txn: lmdb.Transaction) -> int:
        """Last local read of a pack (0 if never)."""
        v = txn.get(pid, db=self.db["atime"])
        return U64.unpack(v)[0] if v else 0

    def count(self, table: str) -> int:
        """Number of rows in a table."""
        with self.read() as t:
            return t.stat(self.db[table])["entries"]




def _disk_full(path: str) -> bool:
    """True when the file system holding `path` has (almost) no space left for us."""
    try:
        st = os.statvfs(path)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < (1 << 20)


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
                # LMDB writes its pages through the file; on a full disk the kernel may report
                # the failed write-back as EIO rather than ENOSPC, so look at the space left too
                msg = "disk full" if "No space" in str(e) or _disk_full(self.env.path()) else str(e)
                raise StorageError(f"index commit failed: {msg}") from None
        else:
            self.txn.abort()
            if isinstance(ev, lmdb.Error):
                raise StorageError(f"index: {ev}") from None
