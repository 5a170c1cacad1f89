"""Moving manifests between nodes as JSON: export and all-or-nothing import.

A dump is sealed with a MAC under the node key's dump subkey (protocol/manifest_json.py), and
import checks it before anything else: only a node holding the key can make a dump another
node of that key imports. What a dump says is still a claim this node has not checked (it
could be a dump of a node that holds bad records): its manifests and chunk records are
written unverified (store/index.py), so a later put never deduplicates against them.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import TYPE_CHECKING

from mosaic.protocol.manifest_json import (
    Dump,
    DumpFile,
    DumpLocation,
    DumpNotAuthentic,
    ManifestFormatError,
    encode_dump,
    open_dump,
    parse_dump,
    seal_dump,
)

from ..errors import ImportFormatError, IntegrityError, NotFoundError
from ..units import parse_hash
from .home import HomeLock
from .records import ChunkRecord, Manifest, PackRecord

if TYPE_CHECKING:
    from .store import Store


def export(store: Store, hashes: list[str] | None) -> str:
    """The JSON dump of the given files (every file if `hashes` is None)."""
    idx = store.index
    files: list[DumpFile] = []
    locations: dict[bytes, DumpLocation] = {}
    with idx.read() as txn:
        fids = (list(idx.iter_manifest_ids(txn)) if hashes is None
                else list(dict.fromkeys(parse_hash(h) for h in hashes)))  # each file once
        wanted = set(fids)
        names_by_file: dict[bytes, list[str]] = {}
        for name, fid in idx.iter_names("", txn):
            if fid in wanted:
                names_by_file.setdefault(fid, []).append(name)
        for fid in fids:
            m = idx.get_manifest(fid, txn)
            if m is None:
                raise NotFoundError(f"unknown hash: {fid.hex()}")
            files.append(DumpFile(fid, tuple(names_by_file.get(fid, ())), m.size, m.created_ns, m.chunks))
            for cid, _ in m.chunks:
                if cid in locations:
                    continue
                r = idx.get_chunk(cid, txn)
                if r is None:
                    continue
                p = idx.get_pack(r.pack_id, txn)
                locations[cid] = DumpLocation(r.pack_id, r.offset, r.stored_len,
                                              p.locations if p else ())
    body = encode_dump(Dump(store.keys.key_id, tuple(files), locations, time.time_ns()))
    return seal_dump(body, store.keys.dump_mac)


def _authentic(store: Store, text: str | bytes) -> Dump:
    """The dump, once its MAC holds under this node's key; nothing is written before.

    IntegrityError (exit 3) if the MAC is missing or wrong, ImportFormatError (exit 2) if
    the text is no dump at all or an authentic dump does not parse.
    """
    try:
        return open_dump(text, store.keys.dump_mac)
    except ManifestFormatError as e:
        raise ImportFormatError(f"bad manifest dump: {e}") from None
    except DumpNotAuthentic as e:
        hint = ""
        try:
            claimed = parse_dump(text).key_id
        except ManifestFormatError:
            claimed = None
        if claimed is not None and claimed != store.keys.key_id:
            hint = (f"; it names another key (key id {claimed}, this node has "
                    f"{store.keys.key_id}): join with `mosaic init --key-file`")
        raise IntegrityError(f"refused the manifest dump: {e}{hint}") from None


def import_(store: Store, text: str | bytes) -> dict[str, int]:
    """Check a dump's MAC and contents completely, then apply it in one transaction; idempotent.

    Packs known only through the dump are recorded as another node's (owner FOREIGN): this
    node never deletes or rewrites them on backends. New manifests and chunk records are
    unverified until a read here authenticates them. Takes the shared home lock (gc waits).
    """
    dump = _authentic(store, text)
    if dump.key_id != store.keys.key_id:
        raise ImportFormatError(f"the dump comes from another key (key id {dump.key_id}, this node "
                                f"has {store.keys.key_id}); join with `mosaic init --key-file`")
    idx = store.index
    stats = {"files": 0, "new_files": 0, "new_chunks": 0, "names": 0}
    with HomeLock(store.home, exclusive=False), idx.write() as txn:
        # Check every chunk before writing anything (an exception aborts the txn anyway).
        for f in dump.files:
            for cid, n in f.chunks:
                rec = idx.get_chunk(cid, txn)
                if rec is None and cid not in dump.locations:
                    raise ImportFormatError(f"chunk {cid.hex()[:16]} of file {f.file_id.hex()[:16]} "
                                            "has no location in the dump and is unknown here")
                if rec is not None and rec.plain_len != n:
                    raise ImportFormatError(f"chunk {cid.hex()[:16]}: length {n} disagrees with this node")
        for f in dump.files:
            stats["files"] += 1
            for cid, n in f.chunks:
                if idx.get_chunk(cid, txn) is not None:
                    continue
                loc = dump.locations[cid]
                stats["new_chunks"] += 1
                prev = idx.get_pack(loc.pack, txn)
                locs = tuple(sorted(set(loc.backends) | set(prev.locations if prev else ())))
                if prev is None or locs != prev.locations:
                    rec = prev.with_locations(locs) if prev else PackRecord.hinted(locs)
                    idx.put_pack(txn, loc.pack, replace(rec, local=store.local.has(loc.pack)))
                idx.put_chunk(txn, cid, ChunkRecord(loc.pack, loc.offset, loc.stored_length, n, 0),
                              overwrite=False, verified=False)
            if idx.add_manifest(txn, Manifest(f.file_id, f.size, f.created_ns, f.chunks),
                                verified=False):
                stats["new_files"] += 1
        changes = [(name, f.file_id) for f in dump.files for name in f.names]
        stats["names"] = len(idx.set_names(txn, changes))
    return stats
