"""Versioned names under replication: each name's state (protocol/names.py), folded from this
node's writes and its peers', with the name directory kept as its view.

    namestate  BLAKE3(name)(32)          -> encode_name_state(...)       (protocol/names.py)
    namewait   file_id(32) + BLAKE3(name) -> name (utf-8)   names to show once that file is present
    meta       b"last_hlc"                -> the highest HLC written or seen here (u64 LE)

Every key built from a name is a BLAKE3 hash, so no name can reach LMDB's 511-byte key
limit here. The name directory (store/namestore.py) stays the materialised view: for each
name state, its `visible()` names point at their files, as soon as those files are present.
"""

from __future__ import annotations

import time

import lmdb
from blake3 import blake3

from mosaic.protocol.names import (
    NameState,
    closing_write,
    conflict_base,
    decode_name_state,
    encode_name_state,
    merge_name,
    new_write,
)
from mosaic.protocol.records import NameRecord

from ..store.index import Index
from ..store.records import U64
from .synclog import append_local, prefixed_items

Views = list[tuple[str, bytes | None]]  # name directory changes, applied in one go (`show`)


def name_key(name: str) -> bytes:
    """The LMDB key for a name in the replication tables: BLAKE3 of its UTF-8 (32 bytes)."""
    return blake3(name.encode("utf-8")).digest()


def name_state(index: Index, name: str, txn: lmdb.Transaction | None = None) -> NameState | None:
    """The replicated state of a name (its versions), or None if replication has none."""
    v = (txn or index.read()).get(name_key(name), db=index.db["namestate"])
    return decode_name_state(v) if v is not None else None


def _last_hlc(index: Index, txn: lmdb.Transaction) -> int:
    v = txn.get(b"last_hlc", db=index.db["meta"])
    return U64.unpack(v)[0] if v else 0


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def log_all_names(index: Index, txn: lmdb.Transaction) -> int:
    """Log every name of the directory as this node's write (when replication is enabled);
    returns how many."""
    names = list(index.iter_names("", txn))
    for name, fid in names:
        rec = new_write(None, name, fid, origin=index.repl_origin, last_hlc=_last_hlc(index, txn),
                        now_ms=_now_ms())
        txn.put(name_key(name), encode_name_state(merge_name(None, rec)), db=index.db["namestate"])
        txn.put(b"last_hlc", U64.pack(rec.version.hlc), db=index.db["meta"])
        append_local(index, txn, rec)
    return len(names)


def hash_name_keys(index: Index, txn: lmdb.Transaction) -> None:
    """Format 3: the name keys of `namestate` and `namewait` become BLAKE3 hashes."""
    states_db, wait_db = index.db["namestate"], index.db["namewait"]
    states = [(bytes(k), bytes(v)) for k, v in txn.cursor(db=states_db).iternext()]
    for k, v in states:
        txn.delete(k, db=states_db)
        txn.put(name_key(k.decode("utf-8")), v, db=states_db)
    waits = [bytes(k) for k in txn.cursor(db=wait_db).iternext(values=False)]
    for k in waits:
        txn.delete(k, db=wait_db)
        name = k[32:].decode("utf-8")
        txn.put(k[:32] + name_key(name), name.encode("utf-8"), db=wait_db)


def merge(index: Index, txn: lmdb.Transaction, state: NameState | None, rec: NameRecord,
          views: Views | None = None) -> list[tuple[str, bytes | None, bytes | None]]:
    """Fold a write into the name's state and update the visible names; returns view changes
    (none if they were added to `views`, for the caller to apply in one go)."""
    new = merge_name(state, rec)
    txn.put(b"last_hlc", U64.pack(max(_last_hlc(index, txn), rec.version.hlc)), db=index.db["meta"])
    if new is state:
        return []
    txn.put(name_key(rec.name), encode_name_state(new), db=index.db["namestate"])
    before = state.visible() if state is not None else {}
    after = {}
    for n, f in new.visible().items():
        if txn.get(f, db=index.db["manifests"]) is not None:
            after[n] = f
        else:  # shown once the file arrives (see names_waiting_for)
            txn.put(f + name_key(rec.name), rec.name.encode("utf-8"), db=index.db["namewait"])
    # the name directory drops what is already so (NameStore.update): no lookup per name here
    changes: Views = [(n, None) for n in before if n not in after]
    changes += after.items()
    if views is not None:
        views += changes
        return []
    return index.set_names_view(txn, changes) if changes else []


def show(index: Index, txn: lmdb.Transaction, views: Views) -> None:
    """Apply collected name directory changes at once (the last change of a name wins)."""
    if views:
        index.set_names_view(txn, list(dict(views).items()))


def names_waiting_for(index: Index, txn: lmdb.Transaction, fid: bytes) -> Views:
    """The view changes that show the names which were waiting for this file."""
    changes: Views = []
    db = index.db["namewait"]
    for key, raw in list(prefixed_items(txn, db, fid)):
        txn.delete(key, db=db)
        st = name_state(index, raw.decode("utf-8"), txn)
        if st is None:
            continue
        changes += [(n, f) for n, f in st.visible().items() if f == fid]
    return changes


def _write_name(index: Index, txn: lmdb.Transaction, name: str, fid: bytes | None) -> NameRecord:
    state = name_state(index, name, txn)
    rec = new_write(state, name, fid, origin=index.repl_origin, last_hlc=_last_hlc(index, txn),
                    now_ms=_now_ms())
    merge(index, txn, state, rec)
    append_local(index, txn, rec)
    return rec


def _close_conflict(index: Index, txn: lmdb.Transaction, name: str) -> bool:
    """If `name` is shown as a conflict copy (and is no live name of its own), close that
    losing head with a logged write on its base name; True if it did."""
    own = name_state(index, name, txn)
    base = conflict_base(name)
    state = (name_state(index, base, txn)
             if base is not None and (own is None or own.file_id is None) else None)
    rec = None if state is None else closing_write(
        state, name, origin=index.repl_origin, last_hlc=_last_hlc(index, txn), now_ms=_now_ms())
    if rec is None:
        return False
    merge(index, txn, state, rec)
    append_local(index, txn, rec)
    return True


def write_names(index: Index, txn: lmdb.Transaction, changes: list[tuple[str, bytes | None]]
                ) -> list[tuple[str, bytes | None, bytes | None]]:
    """Local name changes under replication: versioned, merged, logged. Removing (or
    replacing) a conflict copy closes that conflict; its name then holds nothing (or the
    new file, as a name of its own)."""
    out = []
    for name, fid in changes:
        old = index.resolve_name(name, txn)
        if old == fid:
            continue
        if not (_close_conflict(index, txn, name) and fid is None):
            _write_name(index, txn, name, fid)
        out.append((name, old, fid))
    return out
