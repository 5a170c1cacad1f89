"""Before an import: are the packs a dump points at still on the backends?

A dump is a claim made at export time. If the node that made it has since dropped a
pack and its gc has deleted it (docs/gc.md, "Stale messages"), importing the dump would
record files that cannot be read. This lists each backend the dump names once and finds
the packs that are gone from every backend the dump placed them on. An unreachable
backend proves nothing, so a pack with a copy there is not counted as gone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mosaic.backends.errors import BackendError
from mosaic.protocol.manifest_json import Dump

from .objects import pack_object_name

if TYPE_CHECKING:
    from .cloud import Cloud


def gone_packs(cloud: Cloud, dump: Dump) -> dict[bytes, tuple[str, ...]]:
    """Packs of chunks new to this node that no backend named by the dump still holds
    (pack ID -> the backends that were asked); {} without backends."""
    hub = cloud.hub
    if hub is None:
        return {}
    idx = cloud.index
    wanted: dict[bytes, tuple[str, ...]] = {}
    with idx.read() as txn:
        for cid, loc in dump.locations.items():
            if loc.pack in wanted or cloud.local.has(loc.pack):
                continue
            if idx.get_chunk(cid, txn) is not None:
                continue  # known here: the import keeps this node's record
            backends = tuple(b for b in loc.backends if b in hub.backends)
            if backends:
                wanted[loc.pack] = backends
    if not wanted:
        return {}
    held: dict[str, set[str] | None] = {}  # backend -> pack object names (None: unreachable)
    for b in sorted({b for bs in wanted.values() for b in bs}):
        try:
            held[b] = {o.name for o in hub.run(hub.backends[b].list, "packs/")}
        except BackendError:
            held[b] = None
    gone: dict[bytes, tuple[str, ...]] = {}
    for pid, backends in wanted.items():
        name = pack_object_name(pid)
        if all(held[b] is not None and name not in held[b] for b in backends):
            gone[pid] = backends
    return gone
