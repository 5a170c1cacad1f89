"""What the mount shows about files and folders, read from the index only (never a backend).

A file's size comes from its manifest. Its mtime is when its name was written: the
name's replication record (a hybrid logical clock, milliseconds) once the node has
had a peer, else the time the index recorded when the name was written on this node
(`Index.name_time`), else (a name written before the index kept times) when the
file's content was first stored (the manifest's creation time).
"""

from __future__ import annotations

from dataclasses import dataclass

import lmdb
import msgpack

from mosaic.protocol.hlc import physical_ms
from mosaic.protocol.names import decode_name_state

from ..cluster.namelog import name_key
from ..store.index import Index
from ..store.tree import folder_exists


@dataclass(frozen=True)
class FileMeta:
    """A file as a listing shows it."""

    fid: bytes
    size: int
    mtime_ns: int


def has_name_times(index: Index, txn: lmdb.Transaction) -> bool:
    """False while replication keeps no record of any name (a node that never had a peer):
    a listing then skips looking for one per name."""
    return txn.stat(index.db["namestate"])["entries"] > 0


def name_time_ns(index: Index, txn: lmdb.Transaction, name: str) -> int | None:
    """When `name` was last written (ns), if replication keeps a record of it."""
    v = txn.get(name_key(name), db=index.db["namestate"])
    if v is None:
        return None
    try:
        return physical_ms(decode_name_state(bytes(v)).winner.version.hlc) * 1_000_000
    except (ValueError, TypeError, KeyError, IndexError, msgpack.UnpackException):
        return None


def file_meta(index: Index, txn: lmdb.Transaction, name: str | None, fid: bytes,
              name_times: bool = True) -> FileMeta | None:
    """Size and mtime of a file reached by `name` (None: by its hash); None if unknown.

    `name_times=False` (see `has_name_times`) skips looking for the name's record."""
    head = index.manifest_head(fid, txn)
    if head is None:
        return None
    size, created = head
    when = None
    if name is not None:
        when = name_time_ns(index, txn, name) if name_times else None
        if when is None:
            when = index.name_time(name, txn)
    return FileMeta(fid, size, when if when is not None else created)


def lookup(index: Index, txn: lmdb.Transaction, path: str) -> FileMeta | bool:
    """A path: the file's FileMeta, True for a folder, False if neither."""
    fid = index.resolve_name(path, txn) if path else None
    if fid is not None:
        meta = file_meta(index, txn, path, fid)
        if meta is not None:
            return meta
    return folder_exists(index, path, txn)
