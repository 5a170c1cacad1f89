"""Content and the virtual directory: /v1/files, /v1/names, /v1/move, /v1/folders,
/v1/tree, /v1/search and /v1/stat."""

from __future__ import annotations

import fnmatch

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..errors import NotFoundError
from ..store.tree import Child, folder_exists
from . import listing
from .access import (
    check_file_name,
    file_by_hash,
    file_by_name,
    file_by_ref,
    folder_param,
    hash_param,
    name_conflict,
    name_param,
)
from .auth import require
from .batch import SMALL_BODY
from .bodies import BodyPipe, consume, json_body, small_body
from .changes import after_write
from .context import Ctx
from .problems import Problem
from .ranges import content_response, inline_wanted

IMMUTABLE = "private, max-age=31536000, immutable"
REVALIDATE = "private, no-cache"
PAGE = 100
MAX_PAGE = 1000


def _ctx(request: Request) -> Ctx:
    return request.app.state.ctx


def _limit(request: Request) -> int:
    raw = request.query_params.get("limit", str(PAGE))
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_PAGE:
        raise Problem(400, f"limit must be a whole number from 1 to {MAX_PAGE}")
    return int(raw)


# ---- content ---------------------------------------------------------------------------

async def get_file(request: Request) -> Response:
    """GET/HEAD /v1/files/{hash}"""
    ctx = _ctx(request)
    who = await require(request, "read")
    h, size, body = await file_by_hash(ctx, who, hash_param(request.path_params["hash"]),
                                       _inline(request))
    return await content_response(ctx, request.headers, request.method, h, size, IMMUTABLE,
                                  body=body)


def _inline(request: Request):  # noqa: ANN202
    return lambda h, size: inline_wanted(request.headers, request.method, h, size)


async def get_name(request: Request) -> Response:
    """GET/HEAD /v1/names/{path}"""
    ctx = _ctx(request)
    name = name_param(request.path_params["path"])
    await require(request, "read", name)
    h, size, body = await file_by_name(ctx, name, _inline(request))
    disp = name.rsplit("/", 1)[-1].replace('"', "")
    extra = {"Mosaic-Hash": h,
             "Content-Disposition": "attachment; filename*=UTF-8''" + _quote(disp)}
    return await content_response(ctx, request.headers, request.method, h, size, REVALIDATE, extra,
                                  body=body)


def _quote(s: str) -> str:
    from urllib.parse import quote
    return quote(s, safe="")


async def put_name(request: Request) -> Response:
    """PUT /v1/names/{path}: the body is the file (streamed through the chunker)."""
    ctx = _ctx(request)
    name = name_param(request.path_params["path"])
    await require(request, "write", name)
    await ctx.run(check_file_name, ctx.engine.index, name)
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or len(declared) > 19):
        raise Problem(400, "malformed Content-Length")
    if declared is not None and int(declared) <= SMALL_BODY:
        data = await small_body(request, int(declared))
        doc = await ctx.batcher.put(ctx, data, name)
    else:
        doc = await _put_streamed(request, ctx, name, int(declared) if declared else None)
    ctx.events.publish("put", name=name, hash=doc["hash"], size=doc["size"], new=doc["new"])
    await after_write(ctx)
    return JSONResponse(doc, status_code=201 if doc["new"] else 200)


async def _put_streamed(request: Request, ctx: Ctx, name: str, declared: int | None) -> dict:
    """A large body, streamed through the chunker in a worker thread (bounded memory)."""
    pipe = BodyPipe(request, None, declared, strict=True)

    def put() -> dict:
        with ctx.engine.ingest(wait=False) as s:
            pending = s.put_source(pipe, name)
        res = pending.result()
        new = res.file_id in s.ing.new_files if s.ing is not None else res.new_chunks > 0
        return {"hash": res.hash, "size": res.size, "new": new, "name": name,
                "new_bytes": res.new_bytes}

    return await consume(request, pipe, put)


async def delete_name(request: Request) -> Response:
    """DELETE /v1/names/{path}: a file's name, or an empty folder."""
    ctx = _ctx(request)
    name = name_param(request.path_params["path"])
    await require(request, "write", name)

    def rm() -> str:
        if ctx.engine.index.resolve_name(name) is not None:
            ctx.engine.rm(name)
            return "file"
        try:
            ctx.engine.rmdir(name)
        except NotFoundError:
            raise NotFoundError(f"no such name or folder: {name}") from None
        return "folder"

    kind = await ctx.write(rm)
    ctx.events.publish("rm", name=name, type=kind)
    await after_write(ctx)
    return Response(status_code=204)


async def move(request: Request) -> Response:
    """POST /v1/move {"from", "to"}: rename a file or a whole folder."""
    ctx = _ctx(request)
    body = await json_body(request)
    if not isinstance(body, dict) or not isinstance(body.get("from"), str) \
            or not isinstance(body.get("to"), str):
        raise Problem(400, 'expected {"from": NAME, "to": NAME}')
    src, dst = name_param(body["from"]), name_param(body["to"])
    await require(request, "write", src)
    await require(request, "write", dst)
    if dst == src or dst.startswith(src + "/"):
        raise Problem(400, "cannot move a name onto itself or into itself")
    moved = await ctx.write(_move, ctx, src, dst)
    ctx.events.publish("mv", **{"from": src, "to": dst, "names": moved})
    await after_write(ctx)
    return JSONResponse({"from": src, "to": dst, "moved": moved})


def _move(ctx: Ctx, src: str, dst: str) -> int:
    """Move one name, or a folder with every name and empty folder in it (one transaction
    each; a folder goes only where nothing is or an empty folder is: 409 otherwise)."""
    idx = ctx.engine.index
    with idx.write() as txn:
        fid = idx.resolve_name(src, txn)
        if fid is not None:
            why = name_conflict(idx, dst, txn)
            if why is not None:
                raise Problem(409, why, "conflict")
            idx.set_names(txn, [(src, None)])
            idx.set_names(txn, [(dst, fid)])
            return 1
    try:
        return ctx.engine.mv_folder(src, dst)
    except NotFoundError:
        raise NotFoundError(f"no such name or folder: {src}") from None


async def make_folder(request: Request) -> Response:
    """POST /v1/folders {"path"}: an empty folder (kept until it is removed or filled)."""
    ctx = _ctx(request)
    body = await json_body(request)
    if not isinstance(body, dict) or not isinstance(body.get("path"), str):
        raise Problem(400, 'expected {"path": FOLDER}')
    path = name_param(body["path"])
    await require(request, "write", path)
    made = await ctx.write(ctx.engine.mkdir, path)
    ctx.events.publish("mkdir", path=path, made=made)
    return JSONResponse({"path": path, "created": made}, status_code=201 if made else 200)


# ---- listings ----------------------------------------------------------------------------

async def tree(request: Request) -> Response:
    """GET /v1/tree/{prefix}: one folder level (or ?recursive=1), a page at a time."""
    ctx = _ctx(request)
    folder = folder_param(request.path_params.get("prefix", ""))
    who = await require(request, "read")
    if who.prefix and not (who.covers(folder) or (who.prefix + "/").startswith(folder + "/")
                           or folder == ""):
        raise Problem(403, "outside this token's prefix")
    limit = _limit(request)
    cursor = request.query_params.get("cursor", "")
    if len(cursor) > 4096 or any(ord(c) < 32 for c in cursor):
        raise Problem(400, "malformed cursor")
    recursive = request.query_params.get("recursive", "0") in ("1", "true", "yes")

    # a folder above the token's prefix shows only the way down to it: never a page of
    # other names (whose cursor would give one of them away)
    above = bool(who.prefix) and not who.covers(folder)

    def page() -> tuple[list[dict], str | None]:
        if recursive:
            return _recursive(ctx, who.prefix if above else folder, cursor, limit, exact=above)
        if above:
            return (listing.entries(ctx.engine, _toward(ctx, folder, who.prefix)) if not cursor
                    else []), None
        children, nxt = ctx.engine.list_folder(folder, cursor, limit)
        return listing.entries(ctx.engine, children), nxt

    items, nxt = await ctx.run(page)
    return JSONResponse({"folder": folder, "entries": items, "cursor": nxt})


def _toward(ctx: Ctx, folder: str, prefix: str) -> list[Child]:
    """The entries of `folder` (above `prefix`) on the way to `prefix`: the file and/or
    folder named by the next segment, if they exist (blocking)."""
    rest = prefix[len(folder) + 1:] if folder else prefix
    path = (folder + "/" if folder else "") + rest.split("/", 1)[0]
    name = path.rsplit("/", 1)[-1]
    idx = ctx.engine.index
    out = []
    if folder_exists(idx, path):
        out.append(Child(name, path, None))
    fid = idx.resolve_name(path)
    if fid is not None and path == prefix:
        out.append(Child(name, path, fid))
    return out


def _recursive(ctx: Ctx, folder: str, after: str, limit: int, exact: bool = False
               ) -> tuple[list[dict], str | None]:
    """Every file under `folder`, a page at a time (`exact`: and a file named `folder`)."""
    idx = ctx.engine.index
    base = folder + "/" if folder else ""
    rows: list[tuple[str, bytes]] = []
    nxt = None
    with idx.read() as txn:
        if folder and not folder_exists(idx, folder, txn):
            itself = idx.resolve_name(folder, txn) if exact else None
            if itself is not None:  # the token's prefix names one file
                info = listing.describe(ctx.engine, [itself])
                return ([{"name": folder.rsplit("/", 1)[-1], "path": folder, "type": "file",
                          "hash": itself.hex(), **info[itself]}] if itself in info and not after
                        else []), None
            if exact:
                return [], None
            raise NotFoundError(f"no such folder: {folder}")
        for name, fid in idx.iter_names(base, txn, start=base + after + "\0" if after else ""):
            if len(rows) == limit:
                nxt = rows[-1][0][len(base):]
                break
            rows.append((name, fid))
    info = listing.describe(ctx.engine, [f for _, f in rows])
    out = [{"name": n.rsplit("/", 1)[-1], "path": n, "type": "file", "hash": f.hex(), **info[f]}
           for n, f in rows if f in info]
    return out, nxt


async def search(request: Request) -> Response:
    """GET /v1/search?q=: names by substring, or by glob when q has * ? or [."""
    ctx = _ctx(request)
    who = await require(request, "read")
    q = request.query_params.get("q", "")
    if not q or len(q) > 1024 or any(ord(c) < 32 for c in q):
        raise Problem(400, "q must be 1 to 1024 printable characters")
    limit = _limit(request)
    after = request.query_params.get("cursor", "")
    glob = any(c in q for c in "*?[")
    pattern = q.lower()
    base = who.prefix + "/" if who.prefix else ""

    def find() -> tuple[list[dict], str | None]:
        idx = ctx.engine.index
        hits: list[tuple[str, bytes]] = []
        nxt = None
        with idx.read() as txn:
            exact = idx.resolve_name(who.prefix, txn) if who.prefix else None
            start = after + "\0" if after else ""
            rows = idx.iter_names(base, txn, start=start)
            if exact is not None and not after:
                rows = iter([(who.prefix, exact), *rows])
            for name, fid in rows:
                low = name.lower()
                ok = fnmatch.fnmatchcase(low, pattern) or fnmatch.fnmatchcase(
                    low.rsplit("/", 1)[-1], pattern) if glob else pattern in low
                if not ok:
                    continue
                if len(hits) == limit:
                    nxt = hits[-1][0]
                    break
                hits.append((name, fid))
        info = listing.describe(ctx.engine, [f for _, f in hits])
        return ([{"name": n.rsplit("/", 1)[-1], "path": n, "type": "file", "hash": f.hex(), **info[f]}
                 for n, f in hits if f in info], nxt)

    items, nxt = await ctx.run(find)
    return JSONResponse({"q": q, "entries": items, "cursor": nxt})


async def stat(request: Request) -> Response:
    """GET /v1/stat/{hash-or-path}: what `mosaic stat` shows, plus pin and node copies."""
    ctx = _ctx(request)
    ref = request.path_params["ref"]
    who = await require(request, "read")
    h = await file_by_ref(request, ctx, who, ref)

    def look() -> dict:
        from ..store.verify import file_stat
        fid = bytes.fromhex(h)
        st = file_stat(ctx.engine.store, fid)
        with ctx.engine.index.read() as txn:
            st["pinned"] = txn.get(fid, db=ctx.engine.index.db["pins"]) is not None
        st["nodes"] = listing.holders(ctx.engine, fid)
        if who.prefix:
            st["names"] = [n for n in st["names"] if who.covers(n)]
        return st

    return JSONResponse(await ctx.run(look))


def routes() -> list[Route]:
    return [
        Route("/v1/files/{hash}", get_file, methods=["GET", "HEAD"]),
        Route("/v1/names/{path:path}", get_name, methods=["GET", "HEAD"]),
        Route("/v1/names/{path:path}", put_name, methods=["PUT"]),
        Route("/v1/names/{path:path}", delete_name, methods=["DELETE"]),
        Route("/v1/move", move, methods=["POST"]),
        Route("/v1/folders", make_folder, methods=["POST"]),
        Route("/v1/tree", tree, methods=["GET"]),
        Route("/v1/tree/{prefix:path}", tree, methods=["GET"]),
        Route("/v1/search", search, methods=["GET"]),
        Route("/v1/stat/{ref:path}", stat, methods=["GET"]),
    ]
