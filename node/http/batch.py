"""Group commit for small one-shot uploads (PUT /v1/names/... with a small body).

Each put session ends with an fsync'd pack and an LMDB commit; one per small file
would cap a tree upload at a hundred files a second. Small bodies (read whole,
bounded) instead join a queue; one request at a time leads: it takes everything
queued (up to a file count and byte budget) and stores it in ONE put session, while
newer requests queue for the next round. A lone client pays no extra latency; many
concurrent clients share packs and commits. Every request is answered only once its
file is durable, as with the streaming path.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import trio

from ..cluster.engine import Engine
from ..errors import MosaicError
from .context import Ctx

SMALL_BODY = 1 << 20     # bodies up to this size (declared by Content-Length) are batched
BATCH_FILES = 512
BATCH_BYTES = 32 << 20


@dataclass(eq=False)
class _Item:
    data: bytes
    name: str
    done: trio.Event = field(default_factory=trio.Event)
    lead: bool = False
    result: dict | None = None
    error: BaseException | None = None


class PutBatcher:
    """Small puts in shared put sessions (loop-side; the sessions run in worker threads)."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.queue: list[_Item] = []
        self.busy = False

    async def put(self, ctx: Ctx, data: bytes, name: str) -> dict:
        """Store `data` under `name`; returns {"hash", "size", "new", "name", "new_bytes"}."""
        item = _Item(data, name)
        self.queue.append(item)
        if not self.busy:
            self.busy = True
            item.lead = True
        else:
            try:
                await item.done.wait()
            except trio.Cancelled:  # the client went away
                if item.lead:  # ... just as it was asked to lead: lead, for the others
                    with trio.CancelScope(shield=True):
                        await self._lead(ctx)
                elif item in self.queue:
                    self.queue.remove(item)
                raise
        if item.lead:
            await self._lead(ctx)
        if item.error is not None:
            raise item.error
        assert item.result is not None
        return item.result

    async def _lead(self, ctx: Ctx) -> None:
        batch: list[_Item] = []
        size = 0
        while self.queue and len(batch) < BATCH_FILES and (not batch or size < BATCH_BYTES):
            it = self.queue.pop(0)
            batch.append(it)
            size += len(it.data)
        try:
            with trio.CancelScope(shield=True):  # the others wait on this round
                await ctx.run(self._store, batch)
        finally:
            for it in batch:
                if it.result is None and it.error is None:
                    it.error = MosaicError("the upload was interrupted")
                it.done.set()
            if self.queue:
                nxt = self.queue[0]
                nxt.lead = True
                nxt.done.set()
            else:
                self.busy = False

    def _store(self, batch: list[_Item]) -> None:
        """One put session for the batch; on failure, each file on its own (own errors)."""
        try:
            with self.engine.ingest(wait=False) as s:
                pending = [s.put_source(io.BytesIO(it.data), it.name) for it in batch]
            new = set(s.ing.new_files) if s.ing is not None else set()
            for it, p in zip(batch, pending, strict=True):
                it.result = _doc(p.result(), it.name, new)
                new.discard(p.result().file_id)
        except MosaicError:
            for it in batch:
                try:
                    with self.engine.ingest(wait=False) as s:
                        p = s.put_source(io.BytesIO(it.data), it.name)
                    it.result = _doc(p.result(), it.name,
                                     set(s.ing.new_files) if s.ing is not None else set())
                except MosaicError as e:
                    it.error = e


def _doc(res, name: str, new: set[bytes]) -> dict:  # noqa: ANN001 - ingest.PutResult
    return {"hash": res.hash, "size": res.size, "new": res.file_id in new, "name": name,
            "new_bytes": res.new_bytes}
