"""Resumable uploads: tus 1.0.0 at /v1/uploads/ (core, creation, creation-with-upload,
termination, expiration).

The routes: headers checked and answered here, bodies handed to the node's `Uploads`
(uploads.py, which stores them as they arrive), events published, and expired uploads
reaped in the background (`reap`).
"""

from __future__ import annotations

import base64
import email.utils
import logging
import re
import time

import trio
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..errors import MosaicError, UsageError
from .access import check_file_name, name_param
from .auth import require
from .batch import SMALL_BODY
from .bodies import BodyPipe, consume, small_body
from .changes import after_write
from .context import Ctx
from .problems import Problem
from .uploads import Upload, Uploads

log = logging.getLogger("mosaic.http")

TUS_VERSION = "1.0.0"
EXTENSIONS = "creation,creation-with-upload,termination,expiration"
MAX_SIZE = 1 << 40
REAP_S = 30.0
LOCK_WAIT_S = 15.0
OFFSET_TYPE = "application/offset+octet-stream"
_META_KEY = re.compile(r"^[!-+\--~]+$")  # printable ASCII without space and comma
MAX_META = 4096


def parse_metadata(text: str) -> dict[str, str]:
    """Upload-Metadata: `key base64,key base64` -> {key: decoded text}; UsageError if malformed."""
    out: dict[str, str] = {}
    if len(text) > MAX_META:
        raise UsageError("Upload-Metadata is too long")
    for pair in filter(None, (p.strip() for p in text.split(","))):
        key, _, value = pair.partition(" ")
        if not _META_KEY.match(key) or key in out:
            raise UsageError(f"malformed Upload-Metadata key {key[:40]!r}")
        try:
            out[key] = base64.b64decode(value.strip(), validate=True).decode("utf-8") if value else ""
        except (ValueError, UnicodeDecodeError):
            raise UsageError(f"Upload-Metadata value of {key!r} is not base64 of UTF-8") from None
    return out


def _date(t: float) -> str:
    return email.utils.formatdate(t, usegmt=True)


def _base_headers(u: Upload | None = None) -> dict[str, str]:
    h = {"Tus-Resumable": TUS_VERSION, "Cache-Control": "no-store"}
    if u is not None:
        h["Upload-Offset"] = str(u.offset)
        h["Upload-Length"] = str(u.length)
        h["Upload-Expires"] = _date(u.expires)
        if u.done_hash:
            h["Mosaic-Hash"] = u.done_hash
            h["Mosaic-New-Bytes"] = str(u.new_bytes)
    return h


def _check_version(request: Request) -> None:
    if request.headers.get("tus-resumable") != TUS_VERSION:
        raise Problem(412, f"Tus-Resumable: {TUS_VERSION} is required",
                      headers={"Tus-Version": TUS_VERSION})


def _uploads(request: Request) -> Uploads:
    return request.app.state.ctx.uploads


async def options(request: Request) -> Response:
    """OPTIONS: what this server supports (no credentials needed)."""
    return Response(status_code=204, headers={
        "Tus-Resumable": TUS_VERSION, "Tus-Version": TUS_VERSION, "Tus-Extension": EXTENSIONS,
        "Tus-Max-Size": str(MAX_SIZE)})


def _int_header(request: Request, key: str) -> int | None:
    v = request.headers.get(key)
    if v is None:
        return None
    if not v.isdigit() or len(v) > 19:
        raise Problem(400, f"malformed {key} header")
    return int(v)


async def create(request: Request) -> Response:
    """POST /v1/uploads/: a new upload (with its first bytes, if the body has any)."""
    _check_version(request)
    ups = _uploads(request)
    if request.headers.get("upload-defer-length") is not None:
        raise Problem(400, "Upload-Defer-Length is not supported; send Upload-Length")
    length = _int_header(request, "upload-length")
    if length is None:
        raise Problem(400, "Upload-Length is required")
    if length > MAX_SIZE:
        raise Problem(413, f"uploads are limited to {MAX_SIZE} bytes",
                      headers={"Tus-Max-Size": str(MAX_SIZE)})
    raw_meta = request.headers.get("upload-metadata", "")
    try:
        meta = parse_metadata(raw_meta)
    except UsageError as e:
        raise Problem(400, str(e)) from None
    name = name_param(meta["name"]) if meta.get("name") else None
    who = await require(request, "write", name)
    if name is None and who.prefix:
        raise Problem(403, "a token with a prefix must name its uploads (metadata `name`)")
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    declared = _int_header(request, "content-length")
    has_body = ctype == OFFSET_TYPE and (declared is None or declared > 0)
    if ctype and ctype != OFFSET_TYPE and declared:
        raise Problem(415, f"a body with the creation request must be {OFFSET_TYPE}")
    ctx = request.app.state.ctx
    if name is not None:
        await ctx.run(check_file_name, ctx.engine.index, name)
    if has_body and name is not None and declared == length and 0 < length <= SMALL_BODY:
        return await _create_whole(request, ctx, length, name, raw_meta, who.name)
    u = await ctx.run(ups.create, length, name, raw_meta, who.name)
    ctx.events.publish("upload", id=u.id, name=name, offset=0, length=length, state="created")
    headers = {**_base_headers(u), "Location": f"/v1/uploads/{u.id}"}
    if has_body or length == 0:
        async with ups.live_of(u).lock:
            await _append(request, ups, u, declared)
        headers.update(_base_headers(u))
    return Response(status_code=201, headers=headers)


async def _create_whole(request: Request, ctx: Ctx, length: int, name: str, raw_meta: str,
                        owner: str) -> Response:
    """A creation request carrying a whole small file: stored like a small PUT (group
    commit with the others arriving at once), recorded as a finished upload. A body cut
    short stores nothing and creates no upload."""
    data = await small_body(request, length)
    doc = await ctx.batcher.put(ctx, data, name)
    u = await ctx.run(_uploads(request).create_done, length, name, raw_meta, owner, doc)
    ctx.events.publish("upload", id=u.id, name=name, offset=length, length=length, state="done",
                       hash=u.done_hash)
    ctx.events.publish("put", name=name, hash=u.done_hash, size=length, new=u.new)
    await after_write(ctx)
    return Response(status_code=201, headers={**_base_headers(u), "Location": f"/v1/uploads/{u.id}"})


async def _append(request: Request, ups: Uploads, u: Upload, declared: int | None) -> None:
    """Take one body at the upload's offset (the caller holds the upload's lock)."""
    ctx = request.app.state.ctx
    room = u.length - u.offset
    if declared is not None and declared > room:
        raise Problem(413, f"the body is {declared} bytes but the upload takes {room} more")
    pipe = BodyPipe(request, room, declared, strict=False)
    try:
        await consume(request, pipe, ups.append, u, pipe)
    finally:
        ctx.events.publish("upload", id=u.id, name=u.name, offset=u.offset, length=u.length,
                           state="progress")
    if u.offset == u.length and u.done_hash is None:
        await ctx.write(ups.finish, u)
        ctx.events.publish("upload", id=u.id, name=u.name, offset=u.offset, length=u.length,
                           state="done", hash=u.done_hash)
        ctx.events.publish("put", name=u.name, hash=u.done_hash, size=u.length, new=u.new)
        await after_write(ctx)


def _gone() -> Problem:
    return Problem(404, "no such upload (finished long ago, expired or terminated)", "not-found")


async def _owned(request: Request) -> Upload:
    _check_version(request)
    u = _uploads(request).get(request.path_params["id"])
    if u is None:
        raise _gone()
    who = await require(request, "write", u.name)
    if u.name is None and who.prefix:
        raise Problem(403, "outside this token's prefix")
    return u


async def head(request: Request) -> Response:
    """HEAD: the durable offset (waits briefly for a PATCH in progress to settle)."""
    ups = _uploads(request)
    u = await _owned(request)
    with trio.move_on_after(LOCK_WAIT_S):
        async with ups.live_of(u).lock:
            pass
    if not ups.current(u):
        raise _gone()
    h = _base_headers(u)
    if u.metadata:
        h["Upload-Metadata"] = u.metadata
    return Response(status_code=200, headers=h)


async def patch(request: Request) -> Response:
    """PATCH: append the body at Upload-Offset."""
    ups = _uploads(request)
    u = await _owned(request)
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != OFFSET_TYPE:
        raise Problem(415, f"PATCH bodies must be {OFFSET_TYPE}")
    offset = _int_header(request, "upload-offset")
    if offset is None:
        raise Problem(400, "Upload-Offset is required")
    declared = _int_header(request, "content-length")
    lock = ups.live_of(u).lock
    got = False
    with trio.move_on_after(LOCK_WAIT_S):
        await lock.acquire()
        got = True
    if not got:
        raise Problem(409, "another request is writing to this upload; try again")
    try:
        if not ups.current(u):
            raise _gone()
        if u.done_hash is not None or offset != u.offset:
            raise Problem(409, f"Upload-Offset is {offset} but the upload is at {u.offset}",
                          headers=_base_headers(u))
        await _append(request, ups, u, declared)
    finally:
        lock.release()
    return Response(status_code=204, headers=_base_headers(u))


async def terminate(request: Request) -> Response:
    """DELETE: forget the upload and release what it stored."""
    ups = _uploads(request)
    u = await _owned(request)
    ctx = request.app.state.ctx
    async with ups.live_of(u).lock:
        if ups.all.get(u.id) is not u:  # terminated (or expired) while this request waited
            raise _gone()
        await ctx.write(ups.drop, u)
    ctx.events.publish("upload", id=u.id, name=u.name, offset=u.offset, length=u.length,
                       state="terminated")
    return Response(status_code=204, headers={"Tus-Resumable": TUS_VERSION})


async def reap(ctx: Ctx) -> None:
    """Drop expired uploads, now and every REAP_S."""
    ups: Uploads = ctx.uploads
    while True:
        for u in ups.expired():
            try:
                async with ups.live_of(u).lock:
                    if ups.all.get(u.id) is not u or u.expires >= time.time():
                        continue  # gone meanwhile, or a PATCH that waited extended it
                    await ctx.write(ups.drop, u)
            except MosaicError as e:
                log.warning("cannot drop expired upload %s: %s", u.id, e)
                continue
            if u.done_hash is None:
                ctx.events.publish("upload", id=u.id, name=u.name, offset=u.offset,
                                   length=u.length, state="expired")
        await trio.sleep(REAP_S if ctx.uploads.expire_s > REAP_S else max(1.0, ctx.uploads.expire_s / 4))


def routes() -> list[Route]:
    return [
        Route("/v1/uploads/", options, methods=["OPTIONS"]),
        Route("/v1/uploads/", create, methods=["POST"]),
        Route("/v1/uploads", options, methods=["OPTIONS"]),
        Route("/v1/uploads", create, methods=["POST"]),
        Route("/v1/uploads/{id}", options, methods=["OPTIONS"]),
        Route("/v1/uploads/{id}", head, methods=["HEAD"]),
        Route("/v1/uploads/{id}", patch, methods=["PATCH"]),
        Route("/v1/uploads/{id}", terminate, methods=["DELETE"]),
    ]
