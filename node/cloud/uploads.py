"""The durable upload queue: packs waiting to be copied to backends.

A sealed pack is queued (pack_id + backend name in the `uploads` table) in the
same transaction that records it, so a crash or restart loses no upload.
`upload_pending` sends everything queued, in parallel, and moves each finished
entry into the pack's location list in one transaction. Every transfer and
error is logged in the `events` table for `mosaic status`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from mosaic.backends.errors import QuotaExceeded

from ..errors import CapacityError, StorageError

if TYPE_CHECKING:
    from .cloud import Cloud


def pending_uploads(cloud: Cloud) -> list[tuple[bytes, str]]:
    """(pack_id, backend name) of every queued upload."""
    with cloud.index.read() as txn:
        return list(cloud.index.iter_uploads(txn))


def upload_pending(cloud: Cloud, raise_on_error: bool = True,
                   progress: Callable[[int], None] | None = None,
                   queue: list[tuple[bytes, str]] | None = None) -> tuple[int, list[str]]:
    """Send every queued upload (or just `queue`); returns (count, error lines)."""
    if queue is None:
        queue = pending_uploads(cloud)
    if not queue:
        return 0, []
    configured = {b.name for b in cloud.config.backends}
    stale = [(p, b) for p, b in queue if b not in configured]
    if stale:
        with cloud.index.write() as txn:
            for p, b in stale:
                cloud.index.dequeue_upload(txn, p, b)
    jobs = [(b, p, _loader(cloud, p)) for p, b in queue if b in configured]
    errors: list[str] = []
    quota_hit = False
    done_count = 0
    started = time.monotonic()

    def done(bname: str, pid: bytes, err: BaseException | None, size: int = 0) -> None:
        nonlocal done_count, quota_hit
        idx = cloud.index
        elapsed = time.monotonic() - started
        if err is not None:
            quota_hit = quota_hit or isinstance(err, QuotaExceeded)
            errors.append(f"upload of pack {pid.hex()[:16]} to {bname} failed: {err}")
            with idx.write() as txn:
                idx.add_event(txn, "upload-error", bname, 0, elapsed, str(err)[:300])
            return
        with idx.write() as txn:
            rec = idx.get_pack(pid, txn)
            if rec is not None:
                idx.put_pack(txn, pid, rec.adding(bname))
                size = rec.size
            idx.dequeue_upload(txn, pid, bname)
            idx.add_event(txn, "upload", bname, size, elapsed)
        done_count += 1
        if progress:
            progress(size)

    if jobs and cloud.hub is not None:
        cloud.hub.put_many(jobs, done, parallel=cloud.config.upload_parallel)
    if errors and raise_on_error:
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        if quota_hit:
            raise CapacityError(f"a backend is full: {errors[0]}{more}")
        raise StorageError(f"stored locally, but {errors[0]}{more}; it stays queued "
                           "(`mosaic upload` retries)")
    return done_count, errors


def _loader(cloud: Cloud, pid: bytes) -> Callable[[], bytes]:
    def load() -> bytes:
        return cloud.local.read_all(pid)
    return load


class BackgroundUploads:
    """Uploads packs while a put is still packing, one sealed pack after another.

    `submit` is called (from the sealer thread) after each pack is committed;
    `finish` waits for them and sends whatever is still queued. Errors surface
    in `finish`, so the put still fails if a copy could not be stored.
    """

    def __init__(self, cloud: Cloud, progress: Callable[[int], None] | None = None):
        self.cloud, self.progress = cloud, progress
        self.submitted = 0
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="mosaic-upload")
        self.futures: list = []

    def submit(self, pid: bytes, targets: list[str]) -> None:
        """Start sending one committed pack to the backends it was queued for."""
        self.submitted += 1
        self.futures.append(self.pool.submit(upload_pending, self.cloud, False, self.progress,
                                             [(pid, b) for b in targets]))

    def finish(self) -> None:
        """Wait for the background uploads, then send anything left (raising on failure)."""
        try:
            for f in self.futures:
                f.result()
        finally:
            self.pool.shutdown(wait=True)
        upload_pending(self.cloud, progress=self.progress)

    def cancel(self) -> None:
        """Stop starting new uploads (the queue keeps them)."""
        self.pool.shutdown(wait=True, cancel_futures=True)
