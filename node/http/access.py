"""Checks shared by the handlers: hashes and names from URLs, and prefix rules on files."""

from __future__ import annotations

from collections.abc import Callable

from starlette.requests import Request

from ..errors import NotFoundError, UsageError
from ..store.home import check_name
from ..store.index import Index
from ..units import is_hash
from .auth import Principal, require
from .context import Ctx
from .problems import Problem


def hash_param(text: str) -> str:
    """A file hash from a URL: 64 hex digits, lowercased; Problem 400 otherwise."""
    h = text.lower()
    if len(h) != 64 or not is_hash(h):
        raise Problem(400, "malformed hash: expected 64 hex digits (the file's BLAKE3)", "usage",
                      exit_code=2)
    return h


def name_param(text: str) -> str:
    """A name from a URL or a body, in canonical form; Problem 400 if it breaks the name rule."""
    try:
        return check_name(text)
    except UsageError as e:
        raise Problem(400, str(e), "usage") from None


def folder_param(text: str) -> str:
    """A folder path ("" for the root)."""
    t = text.strip("/")
    return name_param(t) if t else ""


def named_under(index: Index, fid: bytes, prefix: str) -> bool:
    """True if some name equal to `prefix` or inside it points at `fid` (blocking)."""
    with index.read() as txn:
        if index.resolve_name(prefix, txn) == fid:
            return True
        return any(f == fid for _, f in index.iter_names(prefix + "/", txn))


def name_conflict(index: Index, name: str, txn=None) -> str | None:  # noqa: ANN001 - lmdb txn
    """Why a file may not be stored under `name` (a folder has that path, or a file has the
    path of one of its folders), or None. Blocking."""
    t = txn or index.read()
    try:
        if index.resolve_name(name, t) is None and _is_folder(index, name, t):
            return f"a folder has this name: {name}"
        parts = name.split("/")
        for i in range(1, len(parts)):
            parent = "/".join(parts[:i])
            if index.resolve_name(parent, t) is not None:
                return f"a file has the name of a folder in this path: {parent}"
        return None
    finally:
        if txn is None:
            t.abort()


def _is_folder(index: Index, name: str, txn) -> bool:  # noqa: ANN001 - lmdb txn
    """True if names lie under `name`, or `name` or a folder inside it is recorded. (Two
    seeks: "a b" sorts between "a" and "a/...", which store.tree.folder_exists misses.)"""
    if next(index.iter_names(name + "/", txn), None) is not None:
        return True
    cur = txn.cursor(db=index.db["folders"])
    if cur.set_key(name.encode("utf-8")):
        return True
    base = (name + "/").encode("utf-8")
    return bool(cur.set_range(base)) and bytes(cur.key()).startswith(base)


def check_file_name(index: Index, name: str) -> None:
    """Problem 409 if a file may not be stored under `name` (see name_conflict). Blocking."""
    why = name_conflict(index, name)
    if why is not None:
        raise Problem(409, why, "conflict")


Found = tuple[str, int, bytes | None]  # hash, size, the whole file if `want_body` asked for it
WantBody = Callable[[str, int], bool]


def _never(h: str, size: int) -> bool:
    return False


def _body(ctx: Ctx, h: str, size: int, want_body: WantBody) -> bytes | None:
    return b"".join(ctx.engine.read(h)) if want_body(h, size) else None


async def file_by_hash(ctx: Ctx, who: Principal, h: str, want_body: WantBody = _never) -> Found:
    """(hash, size, body) of a stored file the caller may read; Problem 404/403.

    One worker-thread hand-off: the lookup, the prefix rule and (when `want_body(hash,
    size)` says so) reading the whole file."""
    def look() -> Found:
        fid = bytes.fromhex(h)
        m = ctx.engine.index.get_manifest(fid)
        if m is None:
            raise Problem(404, f"no file with hash {h}", "not-found")
        if who.prefix and not named_under(ctx.engine.index, fid, who.prefix):
            raise Problem(403, "this token may read only files named under its prefix")
        return h, m.size, _body(ctx, h, m.size, want_body)
    return await ctx.run(look)


async def file_by_ref(request: Request, ctx: Ctx, who: Principal, ref: str) -> str:
    """The hash of the file `ref` (a hash or a name) names, if the caller may read it:
    a hash is checked against the token's prefix, a name against its scope; Problem otherwise."""
    if len(ref) == 64 and is_hash(ref.lower()):
        h, _, _ = await file_by_hash(ctx, who, hash_param(ref))
        return h
    name = name_param(ref)
    await require(request, "read", name)
    h, _, _ = await file_by_name(ctx, name)
    return h


async def file_by_name(ctx: Ctx, name: str, want_body: WantBody = _never) -> Found:
    """(hash, size, body) of the file a name points at; Problem 404 (see file_by_hash)."""
    def look() -> Found:
        idx = ctx.engine.index
        with idx.read() as txn:
            fid = idx.resolve_name(name, txn)
            m = idx.get_manifest(fid, txn) if fid is not None else None
        if m is None:
            raise NotFoundError(f"no such name: {name}")
        h = m.file_id.hex()
        return h, m.size, _body(ctx, h, m.size, want_body)
    return await ctx.run(look)
