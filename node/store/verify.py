"""verify (read back and check files and local packs) and per-file statistics."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..errors import IntegrityError, MosaicError
from .packs import check_pack
from .records import ChunkRecord, PackRecord
from .restore import read_verified

if TYPE_CHECKING:
    from .store import Store


@dataclass
class VerifyReport:
    """Files checked and the problems found."""

    files: int = 0
    bytes: int = 0
    errors: list[str] = field(default_factory=list)


def verify(store: Store, fids: list[bytes] | None, progress=None) -> VerifyReport:
    """Read back every chunk of the files (all if None), checking AEAD, IDs and file hashes."""
    rep = VerifyReport()
    if fids is None:
        with store.index.read() as txn:
            fids = list(store.index.iter_manifest_ids(txn))
            local = [pid for pid, r in store.index.iter_packs(txn) if r.local]
        for pid in local:
            err = _check_local_pack(store, pid)
            if err:
                rep.errors.append(f"pack {pid.hex()[:16]}: {err}")
    for fid in fids:
        m = store.index.get_manifest(fid)
        if m is None:
            rep.errors.append(f"{fid.hex()}: unknown hash")
            continue
        rep.files += 1
        try:
            for data in read_verified(store, m):
                rep.bytes += len(data)
                if progress:
                    progress(len(data))
        except (IntegrityError, MosaicError) as e:
            rep.errors.append(f"{fid.hex()}: {e}")
    return rep


def _check_local_pack(store: Store, pid: bytes) -> str | None:
    """None if the local pack file matches its ID and its trailer opens, else what is wrong."""
    try:
        check_pack(store.keys.pack_index, pid, store.local.read_all(pid))
    except FileNotFoundError:
        return "missing from the local store"
    except OSError as e:
        return f"unreadable: {e.strerror or e}"
    except IntegrityError as e:
        return str(e)
    return None


def file_stat(store: Store, fid: bytes) -> dict:
    """Size, chunks, stored bytes, dedup saving, cached fraction and locations of a file."""
    idx = store.index
    with idx.read() as txn:
        m = idx.get_manifest(fid, txn)
        assert m is not None
        distinct: dict[bytes, ChunkRecord] = {}
        for cid, _ in m.chunks:
            if cid not in distinct:
                r = idx.get_chunk(cid, txn)
                if r is not None:
                    distinct[cid] = r
        stored = sum(r.stored_len for r in distinct.values())
        shared = sum(r.plain_len for r in distinct.values() if r.refcount > 1)
        local = sum(r.stored_len for r in distinct.values() if store.local.has(r.pack_id))
        locs: dict[str, int] = defaultdict(int)
        packs: dict[bytes, PackRecord | None] = {}
        for r in distinct.values():
            if r.pack_id not in packs:
                packs[r.pack_id] = idx.get_pack(r.pack_id, txn)
            p = packs[r.pack_id]
            for b in p.locations if p else ():
                locs[b] += r.stored_len
        names = idx.names_of(fid, txn)
    unique_plain = sum(r.plain_len for r in distinct.values())
    return {
        "hash": fid.hex(), "names": names, "size": m.size, "created_ns": m.created_ns,
        "chunks": len(m.chunks), "distinct_chunks": len(distinct), "stored_bytes": stored,
        "repeated_bytes_in_file": m.size - unique_plain,
        "shared_bytes": shared,
        "dedup_saving_bytes": (m.size - unique_plain) + shared,
        "compression_ratio": (unique_plain / stored) if stored else 1.0,
        "cached_fraction": (local / stored) if stored else 1.0,
        "locations": {"local": (local / stored) if stored else 1.0,
                      **{b: n / stored for b, n in sorted(locs.items())}},
    }
