"""GET /ui/archive/{folder}: a folder (every name under it) as a tar stream built on the fly.

Memory stays bounded whatever the folder's size: names are read a page at a time and
each file's bytes go out chunk by chunk as they are decoded (whole-file reads check the
file's BLAKE3 at the end). Headers are POSIX pax, so long and non-ASCII names survive.
A file that fails its check mid-stream ends the stream early: the client sees a
truncated archive, never a wrong one.
"""

from __future__ import annotations

import logging
import tarfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from ...cluster.engine import Engine
from ...store.tree import folder_exists
from ..access import folder_param
from ..auth import require
from ..context import Ctx
from ..problems import Problem

log = logging.getLogger("mosaic.http")

PAGE = 1000
HANDOFF = 1 << 20  # bytes pulled from the engine per worker-thread hand-off
BLOCK = tarfile.BLOCKSIZE


@dataclass(frozen=True)
class Member:
    """One file of the archive: its name, its path inside the archive, size and date."""

    name: str
    arcname: str
    file_id: bytes
    size: int
    mtime: float


def _page(engine: Engine, base: str, top: str, start: str, limit: int = PAGE) -> list[Member]:
    """Up to `limit` members whose names follow `start` under `base` (blocking, one txn)."""
    idx = engine.index
    out: list[Member] = []
    with idx.read() as txn:
        for name, fid in idx.iter_names(base, txn, start=start):
            if name == start:
                continue
            m = idx.get_manifest(fid, txn)
            if m is None:
                continue
            out.append(Member(name, top + name[len(base):], fid, m.size, m.created_ns / 1e9))
            if len(out) == limit:
                break
    return out


def header(m: Member) -> bytes:
    """The pax tar header of one member."""
    ti = tarfile.TarInfo(m.arcname)
    ti.size = m.size
    ti.mtime = int(m.mtime)
    ti.mode = 0o644
    ti.type = tarfile.REGTYPE
    return ti.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def padding(size: int) -> bytes:
    return b"\0" * (-size % BLOCK)


def _pull(it: Iterator[bytes]) -> list[bytes]:
    """The iterator's next pieces, about HANDOFF bytes of them ([] at the end; blocking)."""
    got: list[bytes] = []
    n = 0
    for piece in it:
        got.append(bytes(piece))
        n += len(piece)
        if n >= HANDOFF:
            break
    return got


async def stream(ctx: Ctx, base: str, top: str) -> AsyncIterator[bytes]:
    """The tar bytes of every name under `base`, each file's path starting with `top`."""
    start = base
    while True:
        page = await ctx.run(_page, ctx.engine, base, top, start)
        for m in page:
            yield header(m)
            chunks: Iterator[bytes] = await ctx.run(ctx.engine.read, m.file_id.hex())
            sent = 0
            while got := await ctx.run(_pull, chunks):
                for piece in got:
                    sent += len(piece)
                    yield piece
            if sent != m.size:  # a verified read cannot do this; never send a wrong archive
                raise RuntimeError(f"archive: {m.name} gave {sent} bytes, expected {m.size}")
            yield padding(m.size)
        if len(page) < PAGE:
            break
        start = page[-1].name
    yield b"\0" * (2 * BLOCK)


async def archive(request: Request) -> Response:
    """The folder's tar stream; the caller needs read scope and a prefix that covers it."""
    ctx: Ctx = request.app.state.ctx
    who = await require(request, "read")
    folder = folder_param(request.path_params.get("path", ""))
    if who.prefix and not who.covers(folder):
        raise Problem(403, "outside this token's prefix")
    if not await ctx.run(folder_exists, ctx.engine.index, folder):
        raise Problem(404, f"no such folder: {folder}", "not-found")
    top = folder.rsplit("/", 1)[-1] if folder else "mosaic"
    base = folder + "/" if folder else ""
    fname = f"{top}.tar"
    disposition = f"attachment; filename=\"{_ascii(fname)}\"; filename*=UTF-8''{quote(fname, safe='')}"
    headers = {"Content-Disposition": disposition, "Cache-Control": "no-store",
               "X-Content-Type-Options": "nosniff"}
    if request.method == "HEAD":  # the head only: never build the archive to throw it away
        return Response(status_code=200, media_type="application/x-tar", headers=headers)

    async def body() -> AsyncIterator[bytes]:
        try:
            async for part in stream(ctx, base, top + "/"):
                yield part
        except Exception as e:  # headers are gone: end the stream early (a truncated tar)
            log.warning("archive of %s stopped: %s", folder or "/", e)
            raise

    return StreamingResponse(body(), media_type="application/x-tar", headers=headers)


def _ascii(name: str) -> str:
    return "".join(c if 32 <= ord(c) < 127 and c not in '"\\' else "_" for c in name)
