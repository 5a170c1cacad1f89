"""The durable upload queue: packs waiting to be copied to backends.

A sealed pack is queued (pack_id + backend name in the `uploads` table) in the
same transaction that records it, so a crash or restart loses no upload.
`upload_pending` sends everything queued, in parallel, and moves each finished
entry into the pack's location list in one transaction.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from .errors import StorageError
from .index import PackRecord

if TYPE_CHECKING:
    from .api import Node


def pending_uploads(node: Node) -> list[tuple[bytes, str]]:
    """(pack_id, backend name) of every queued upload."""
    with node.index.read() as txn:
        return list(node.index.iter_uploads(txn))


def upload_pending(node: Node, raise_on_error: bool = True) -> tuple[int, list[str]]:
    """Send every queued upload; returns (uploaded count, error lines)."""
    queue = pending_uploads(node)
    if not queue:
        return 0, []
    hub = node.hub
    configured = {b.name for b in node.config.backends}
    errors: list[str] = []
    done_count = 0
    stale = [(p, b) for p, b in queue if b not in configured]
    if stale:
        with node.index.write() as txn:
            for p, b in stale:
                node.index.dequeue_upload(txn, p, b)
    jobs = [(b, p, _loader(node, p)) for p, b in queue if b in configured]

    def done(bname: str, pid: bytes, err: BaseException | None) -> None:
        nonlocal done_count
        if err is not None:
            errors.append(f"upload of pack {pid.hex()[:16]} to {bname} failed: {err}")
            return
        idx = node.index
        with idx.write() as txn:
            rec = idx.get_pack(pid, txn) or PackRecord(0, 0, True, (), time.time_ns())
            if bname not in rec.locations:
                idx.put_pack(txn, pid, PackRecord(rec.size, rec.n_chunks, rec.local,
                                                  tuple(sorted({*rec.locations, bname})), rec.created_ns))
            idx.dequeue_upload(txn, pid, bname)
        done_count += 1

    if jobs and hub is not None:
        hub.put_many(jobs, done)
    if errors and raise_on_error:
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise StorageError(f"stored locally, but {errors[0]}{more}; it stays queued")
    return done_count, errors


def _loader(node: Node, pid: bytes):  # noqa: ANN202
    def load() -> bytes:
        return node.local.read_all(pid)
    return load
