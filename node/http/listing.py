"""What a listing shows of each file: size, date, cached fraction and where its copies are.

Blocking functions (run them through `ctx.run`); one read transaction per page.
"""

from __future__ import annotations

from ..cluster import filelog
from ..cluster.engine import Engine
from ..cluster.identity import format_node_id
from ..store.placements import distinct_chunks
from ..store.records import PackRecord
from ..store.tree import Child


def describe(engine: Engine, fids: list[bytes]) -> dict[bytes, dict]:
    """Per file ID: size, created, cached fraction, backends and nodes holding it whole."""
    idx = engine.index
    out: dict[bytes, dict] = {}
    packs: dict[bytes, PackRecord | None] = {}
    local: dict[bytes, bool] = {}
    backends = [b.name for b in engine.config.backends]
    with idx.read() as txn:
        for fid in fids:
            if fid in out:
                continue
            m = idx.get_manifest(fid, txn)
            if m is None:
                continue
            stored = here = plain = shared = 0
            whole = set(backends)
            for _cid, r, p in distinct_chunks(idx, txn, m, packs):
                if r is None:
                    whole.clear()
                    continue
                if r.pack_id not in local:
                    local[r.pack_id] = engine.store.has_local_pack(r.pack_id)
                stored += r.stored_len
                plain += r.plain_len
                shared += r.plain_len if r.refcount > 1 else 0
                here += r.stored_len if local[r.pack_id] else 0
                whole &= set(p.locations) if p else set()
            nodes = []
            if idx.repl_origin is not None:
                cur = txn.cursor(db=idx.db["have"])
                if cur.set_range(fid):
                    for k, v in cur.iternext():
                        if k[:32] != fid:
                            break
                        if v == b"\x01":
                            nodes.append(format_node_id(bytes(k[32:])))
            out[fid] = {"size": m.size, "created": m.created_ns / 1e9,
                        "cached": (here / stored) if stored else 1.0,
                        # what `mosaic stat` calls dedup_saving_bytes: repeated in the file
                        # plus shared with other files
                        "saved": (m.size - plain) + shared,
                        "copies": {"backends": sorted(whole), "nodes": nodes}}
    return out


def entries(engine: Engine, children: list[Child]) -> list[dict]:
    """JSON entries of a folder page."""
    info = describe(engine, [c.file_id for c in children if c.file_id is not None])
    out = []
    for c in children:
        if c.file_id is None:
            out.append({"name": c.name, "path": c.path, "type": "folder"})
            continue
        d = info.get(c.file_id)
        if d is None:  # removed since the page was read
            continue
        out.append({"name": c.name, "path": c.path, "type": "file", "hash": c.file_id.hex(), **d})
    return out


def holders(engine: Engine, fid: bytes) -> dict[str, bool]:
    """{node ID: complete} of the nodes known to hold a file ({} before replication)."""
    if engine.index.repl_origin is None:
        return {}
    return {format_node_id(k): v for k, v in filelog.holders(engine.index, fid).items()}
