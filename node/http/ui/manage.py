"""What the UI does that the /v1 API has no verb for: verify a file, delete a whole folder,
the transfer history behind the dashboard's chart and the events it missed.

Errors propagate as Problem or MosaicError; the app's middleware answers them with
problem documents, as for /v1.
"""

from __future__ import annotations

import time
from collections import defaultdict

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ...cluster.engine import Engine
from ..access import file_by_ref, folder_param
from ..auth import Principal, require
from ..context import Ctx
from ..files import after_write
from ..problems import Problem

HISTORY_S = 3600
BUCKET_S = 60


def _ctx(request: Request) -> Ctx:
    return request.app.state.ctx


async def verify(request: Request) -> Response:
    """POST /ui/verify/{name or hash}: read the file back and check every chunk and its hash."""
    ctx = _ctx(request)
    ref = request.path_params["ref"]
    who = await require(request, "read")
    h = await file_by_ref(request, ctx, who, ref)
    rep = await ctx.run(ctx.engine.verify, [h])
    return JSONResponse({"ok": not rep.errors, "files": rep.files, "bytes": rep.bytes,
                         "errors": rep.errors[:50]})


async def delete_folder(request: Request) -> Response:
    """DELETE /ui/folder/{path}: a folder and everything in it."""
    ctx = _ctx(request)
    folder = folder_param(request.path_params["path"])
    await require(request, "write", folder)
    if not folder:
        raise Problem(400, "the root folder cannot be deleted")
    removed, records = await ctx.write(ctx.engine.rm_folder, folder)
    ctx.events.publish("rm", name=folder, type="folder", names=removed)
    await after_write(ctx)
    return JSONResponse({"path": folder, "names": removed, "folders": records})


def transfer_history(engine: Engine, now: float, window: int = HISTORY_S,
                     bucket: int = BUCKET_S) -> dict:
    """Bytes moved to and from backends per `bucket` seconds over the last `window` (blocking)."""
    since = int((now - window) * 1e9)
    n = window // bucket
    up = [0] * n
    down = [0] * n
    errors = 0
    by_backend: dict[str, int] = defaultdict(int)
    start = now - window
    with engine.index.read() as txn:
        for t, kind, backend, nbytes, _secs, err in engine.index.iter_events(since, txn):
            i = min(n - 1, max(0, int((t / 1e9 - start) // bucket)))
            if err:
                errors += 1
                continue
            if kind in ("upload", "repair"):
                up[i] += nbytes
            else:
                down[i] += nbytes
            by_backend[backend] += nbytes
    return {"start": start, "bucket": bucket, "up": up, "down": down, "errors": errors,
            "by_backend": dict(by_backend)}


RECENT_EVENTS = 50


def visible(who: Principal, data: dict) -> bool:
    """Whether an event's names all lie within the caller's prefix."""
    if not who.prefix:
        return True
    return all(who.covers(v) for k in ("name", "path", "from", "to")
               if isinstance(v := data.get(k), str))


async def recent_events(request: Request) -> Response:
    """GET /ui/events/recent: the last events the bus still holds (the dashboard's first feed;
    the live ones come from /v1/events)."""
    ctx = _ctx(request)
    who = await require(request, "read")
    evs = [e.as_json() for e in list(ctx.events.recent) if visible(who, e.data)]
    return JSONResponse(evs[-RECENT_EVENTS:], headers={"Cache-Control": "no-store"})


async def activity(request: Request) -> Response:
    """GET /ui/activity: the transfer history of the last hour, per minute."""
    ctx = _ctx(request)
    await require(request, "read")
    doc = await ctx.run(transfer_history, ctx.engine, time.time())
    return JSONResponse(doc, headers={"Cache-Control": "no-store"})
