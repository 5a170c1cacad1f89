"""Byte ranges (RFC 9110 §14): parsing `Range`, and streaming one file's bytes as 200/206.

A range reads only the chunks it needs (Engine.read with offset and length); a full
read checks the whole-file hash as it goes. Bytes come from the engine's blocking
iterator in a worker thread, about a MiB per hand-off, so memory per response stays
bounded whatever the file's size.
"""

from __future__ import annotations

import contextlib
import re
import secrets
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import trio
from starlette.responses import Response, StreamingResponse

from .context import Ctx
from .problems import Problem

MAX_RANGES = 100
HANDOFF_BYTES = 1 << 20
INLINE_BYTES = 256 << 10  # whole files up to this size are read in one piece
PREFETCH_FROM = 8 << 20   # responses this long get a reader thread of their own
PREFETCH = 3
_SPEC = re.compile(r"^\s*(\d*)\s*-\s*(\d*)\s*$")


@dataclass(frozen=True)
class ByteRange:
    start: int
    end: int  # inclusive

    @property
    def length(self) -> int:
        return self.end - self.start + 1


def parse_range(header: str | None, size: int) -> list[ByteRange] | None:
    """The satisfiable ranges of a `Range` header; None to answer the whole file
    (no header, another unit, or a malformed one: RFC 9110 says ignore it).
    Problem 416 when no range is satisfiable."""
    if header is None:
        return None
    unit, _, specs = header.partition("=")
    if unit.strip().lower() != "bytes" or not specs.strip():
        return None
    parts = specs.split(",")
    if len(parts) > MAX_RANGES:
        return None
    out: list[ByteRange] = []
    for part in parts:
        m = _SPEC.match(part)
        if not m or (not m.group(1) and not m.group(2)):
            return None
        a, b = m.group(1), m.group(2)
        if len(a) > 19 or len(b) > 19:
            return None
        if not a:  # suffix: the last b bytes
            n = int(b)
            if n == 0:
                continue
            out.append(ByteRange(max(0, size - n), size - 1))
            continue
        start = int(a)
        end = int(b) if b else size - 1
        if b and end < start:
            return None
        if start >= size:
            continue
        out.append(ByteRange(start, min(end, size - 1)))
    if not out:
        raise Problem(416, f"no satisfiable range (the file has {size} bytes)",
                      headers={"Content-Range": f"bytes */{size}"})
    return _coalesced(out)


def _coalesced(ranges: list[ByteRange]) -> list[ByteRange]:
    """The ranges as asked, or, if any of them overlap, merged in ascending order (RFC 9110
    §14.2 allows it): `bytes=0-,0-,0-...` must not make a response many times the file."""
    if len(ranges) < 2:
        return ranges
    ordered = sorted(ranges, key=lambda r: r.start)
    if all(a.end < b.start for a, b in zip(ordered, ordered[1:], strict=False)):
        return ranges
    merged = [ordered[0]]
    for r in ordered[1:]:
        last = merged[-1]
        if r.start <= last.end + 1:
            merged[-1] = ByteRange(last.start, max(last.end, r.end))
        else:
            merged.append(r)
    return merged


def _pull(it: Iterator[bytes]) -> bytes:
    """About HANDOFF_BYTES of the iterator's bytes, joined (b"" at the end)."""
    got: list[bytes | memoryview] = []
    n = 0
    for piece in it:
        got.append(piece)
        n += len(piece)
        if n >= HANDOFF_BYTES:
            break
    return b"".join(got)


async def _blocks(ctx: Ctx, it: Iterator[bytes], size: int) -> AsyncIterator[bytes]:
    """The iterator's bytes, sent about a MiB at a time (a few large writes, not one per
    chunk). Long reads get a reader thread of their own that stays PREFETCH blocks ahead,
    so reading, checking and decoding overlap with sending."""
    if size >= PREFETCH_FROM:
        async for block in _prefetched(it):
            yield block
        return
    try:
        while True:
            block = await ctx.run(_pull, it)
            if not block:
                return
            yield block
    finally:
        close = getattr(it, "close", None)
        if close is not None:
            await ctx.run(close)


async def _prefetched(it: Iterator[bytes]) -> AsyncIterator[bytes]:
    send, recv = trio.open_memory_channel[bytes | BaseException](PREFETCH)
    token = trio.lowlevel.current_trio_token()

    def reader() -> None:
        try:
            while True:
                block = _pull(it)
                trio.from_thread.run(send.send, block, trio_token=token)
                if not block:
                    return
        except (trio.BrokenResourceError, trio.ClosedResourceError, trio.RunFinishedError):
            pass  # the response ended early (client gone, shutdown)
        except BaseException as e:  # noqa: BLE001 - handed to the response, which raises it
            with contextlib.suppress(Exception):
                trio.from_thread.run(send.send, e, trio_token=token)
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()

    threading.Thread(target=reader, name="mosaic-http-read", daemon=True).start()
    with recv:
        async for block in recv:
            if isinstance(block, BaseException):
                raise block
            if not block:
                return
            yield block


def _etag_matches(header: str | None, etag: str) -> bool:
    if header is None:
        return False
    if header.strip() == "*":
        return True
    tags = [t.strip().removeprefix("W/") for t in header.split(",")]
    return etag in tags


def inline_wanted(headers, method: str, file_id: str, size: int) -> bool:
    """True if the answer will be the whole (small) file: read it in the same hand-off as
    the lookup (one thread hop per small GET instead of three)."""
    return (method == "GET" and size <= INLINE_BYTES and headers.get("range") is None
            and not _etag_matches(headers.get("if-none-match"), f'"{file_id}"'))


async def content_response(ctx: Ctx, headers, method: str, file_id: str, size: int,
                           cache: str, extra: dict[str, str] | None = None,
                           body: bytes | None = None) -> Response:
    """GET/HEAD of a stored file: 304, 200, 206 single or multipart/byteranges.

    `body`: the whole file, already read (see `inline_wanted`)."""
    etag = f'"{file_id}"'
    base = {"ETag": etag, "Cache-Control": cache, "Accept-Ranges": "bytes", **(extra or {})}
    if _etag_matches(headers.get("if-none-match"), etag):
        return Response(status_code=304, headers=base)
    ranges = parse_range(headers.get("range"), size)
    if_range = headers.get("if-range")
    if ranges is not None and if_range is not None and if_range.strip() != etag:
        ranges = None
    head = method == "HEAD"
    ctype = "application/octet-stream"
    if ranges is None:
        base["Content-Length"] = str(size)
        if head:
            return Response(status_code=200, headers=base, media_type=ctype)
        if body is not None and len(body) == size:
            return Response(body, status_code=200, headers=base, media_type=ctype)
        it = await ctx.run(ctx.engine.read, file_id)
        return StreamingResponse(_blocks(ctx, it, size), status_code=200, headers=base, media_type=ctype)
    if len(ranges) == 1:
        r = ranges[0]
        base["Content-Range"] = f"bytes {r.start}-{r.end}/{size}"
        base["Content-Length"] = str(r.length)
        if head:
            return Response(status_code=206, headers=base, media_type=ctype)
        it = await ctx.run(ctx.engine.read, file_id, r.start, r.length)
        return StreamingResponse(_blocks(ctx, it, r.length), status_code=206, headers=base, media_type=ctype)
    boundary = secrets.token_hex(16)
    heads = [(f"--{boundary}\r\nContent-Type: {ctype}\r\n"
              f"Content-Range: bytes {r.start}-{r.end}/{size}\r\n\r\n").encode() for r in ranges]
    tail = f"\r\n--{boundary}--\r\n".encode()
    total = sum(len(h) for h in heads) + sum(r.length for r in ranges) + 2 * (len(ranges) - 1) + len(tail)
    base["Content-Length"] = str(total)
    mtype = f"multipart/byteranges; boundary={boundary}"
    if head:
        return Response(status_code=206, headers=base, media_type=mtype)

    async def parts() -> AsyncIterator[bytes]:
        for i, (h, r) in enumerate(zip(heads, ranges, strict=True)):
            yield (b"\r\n" if i else b"") + h
            it = await ctx.run(ctx.engine.read, file_id, r.start, r.length)
            async for piece in _blocks(ctx, it, r.length):
                yield piece
        yield tail

    return StreamingResponse(parts(), status_code=206, headers=base, media_type=mtype)
