"""Node state and whole-node verbs: /v1/status, /v1/events (SSE), /v1/warm, /v1/pin,
/v1/export, /v1/import, and browser sessions (/v1/session)."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator

import trio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from ..cloud.repair import status as cloud_status
from ..cluster.identity import format_node_id
from ..errors import IntegrityError, MosaicError
from ..store.home import HomeLock
from .access import name_param
from .auth import COOKIE, Principal, check_same_origin, require, session_of, unauthorized
from .bodies import json_body, raw_json
from .changes import after_write
from .context import Ctx
from .problems import Problem

HEARTBEAT_S = 15.0
IMPORT_LIMIT = 64 << 20
MAX_REFS = 10_000
ERROR_WINDOW_NS = 600 * 10**9


def _ctx(request: Request) -> Ctx:
    return request.app.state.ctx


def node_status(ctx: Ctx) -> dict:
    """The node, its backends, upload queue, peers and repairs (blocking)."""
    eng = ctx.engine
    st = cloud_status(eng.cloud)
    spaces = eng.backend_spaces() if eng.config.backends else {}
    now = time.time_ns()
    recent_fail = {e["backend"] for e in st["recent_errors"] if now - e["time_ns"] < ERROR_WINDOW_NS}
    backends = []
    for b in eng.config.backends:
        sp = spaces.get(b.name)
        pend = st["pending"].get(b.name, {"packs": 0, "bytes": 0})
        backends.append({"name": b.name, "kind": b.kind, "used": sp.used if sp else 0,
                         "quota": sp.quota if sp else None,
                         "health": "degraded" if b.name in recent_fail else "ok",
                         "pending_packs": pend["packs"], "pending_bytes": pend["bytes"]})
    peers = []
    d = ctx.daemon
    node: dict = {"id": None, "listen": None, "files": eng.index.count("manifests")}
    if d is not None:
        node["id"] = d.identity.node_id_str
        node["listen"] = f"{d.listen[0]}:{d.listen[1]}"
        connected = {x.peer_id for x in d.live.values()}
        for pid, rec in sorted(d.peers.all().items()):
            peers.append({"id": format_node_id(pid), "addr": rec.get("addr"),
                          "connected": pid in connected, "last_seen": rec.get("last_seen") or None,
                          "lag": rec.get("lag"), "error": rec.get("error")})
    transfers = [{"kind": k.split(":", 1)[0], "backend": k.split(":", 1)[-1], **v}
                 for k, v in st["transfers"].items()]
    ups = ctx.uploads
    return {"node": node, "backends": backends,
            "upload_queue": {"packs": sum(b["pending_packs"] for b in backends),
                             "bytes": sum(b["pending_bytes"] for b in backends)},
            "transfers": transfers,
            "http_uploads": sum(1 for u in ups.all.values() if u.done_hash is None) if ups else 0,
            "peers": peers, "repairs_queued": st["repairs_queued"],
            "copies_wanted": st["copies_wanted"],
            "under_replicated_packs": st["under_replicated_packs"],
            "recent_errors": [{"time": e["time_ns"] / 1e9, "kind": e["kind"],
                               "backend": e["backend"], "error": e["error"]}
                              for e in st["recent_errors"]]}


async def status(request: Request) -> Response:
    """GET /v1/status"""
    await require(request, "read")
    ctx = _ctx(request)
    return JSONResponse(await ctx.run(node_status, ctx))


def _visible(who: Principal, data: dict) -> bool:
    if not who.prefix:
        return True
    for key in ("name", "path", "from", "to"):
        v = data.get(key)
        if isinstance(v, str) and not who.covers(v):
            return False
    return True


async def events(request: Request) -> Response:
    """GET /v1/events: Server-Sent Events (Last-Event-ID replays what is still held)."""
    who = await require(request, "read")
    ctx = _ctx(request)
    sse_headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    if request.method == "HEAD":  # a stream's head only: never subscribe (it would never end)
        return Response(status_code=200, media_type="text/event-stream", headers=sse_headers)
    last = request.headers.get("last-event-id", "")
    since = int(last) if last.isdigit() and len(last) < 19 else None

    async def stream() -> AsyncIterator[bytes]:
        with ctx.events.subscribe() as recv:
            yield b"retry: 3000\n: mosaic events\n\n"
            if since is not None:
                for ev in list(ctx.events.recent):
                    if ev.seq > since and _visible(who, ev.data):
                        yield _sse(ev)
            while True:
                with trio.move_on_after(HEARTBEAT_S) as scope:
                    ev = await recv.receive()
                if scope.cancelled_caught:
                    yield b": keep-alive\n\n"
                    continue
                if _visible(who, ev.data):
                    yield _sse(ev)

    return StreamingResponse(stream(), media_type="text/event-stream", headers=sse_headers)


def _sse(ev) -> bytes:  # noqa: ANN001 - events.Event
    data = json.dumps(ev.as_json(), separators=(",", ":"))
    return f"id: {ev.seq}\nevent: {ev.kind}\ndata: {data}\n\n".encode()


async def _refs(request: Request, who: Principal, allow_all: bool = False) -> list[str] | None:
    body = await json_body(request)
    refs = body.get("refs") if isinstance(body, dict) else ...
    if refs is None and allow_all and isinstance(body, dict):
        if who.prefix:
            raise Problem(403, "a token with a prefix must name the files")
        return None
    if not isinstance(refs, list) or not refs or len(refs) > MAX_REFS \
            or not all(isinstance(r, str) and r for r in refs):
        raise Problem(400, f'expected {{"refs": [HASH or NAME, ...]}} (1 to {MAX_REFS})')
    out = []
    for r in refs:
        if len(r) == 64 and all(c in "0123456789abcdefABCDEF" for c in r):
            if who.prefix:
                from .access import file_by_hash
                await file_by_hash(_ctx(request), who, r.lower())
            out.append(r.lower())
        else:
            name = name_param(r)
            if not who.covers(name):
                raise Problem(403, "outside this token's prefix")
            out.append(name)
    return out


async def warm(request: Request) -> Response:
    """POST /v1/warm {"refs": [...]}: make the files' chunks local (all files if refs is null)."""
    who = await require(request, "write")
    ctx = _ctx(request)
    refs = await _refs(request, who, allow_all=True)
    res = await ctx.run(ctx.engine.warm, refs)
    return JSONResponse(res)


async def pin(request: Request) -> Response:
    """POST /v1/pin {"refs": [...]}: keep full local copies (fetched now from backends)."""
    who = await require(request, "write")
    ctx = _ctx(request)
    refs = await _refs(request, who)
    assert refs is not None

    def do_pin() -> list[bytes]:
        eng = ctx.engine
        fids = [eng.resolve(r).file_id for r in refs]
        with HomeLock(eng.home, exclusive=False), eng.index.write() as txn:
            for f in fids:
                txn.put(f, b"", db=eng.index.db["pins"])
        return fids

    fids = await ctx.write(do_pin)
    res: dict = {"files": len(fids), "cached_after": 1.0}
    warning = None
    if ctx.engine.config.backends:
        try:
            res = await ctx.run(ctx.engine.warm, [f.hex() for f in fids])
        except MosaicError as e:
            warning = f"{e} (the daemon keeps trying)"
    ctx.events.publish("pin", hashes=[f.hex() for f in fids])
    return JSONResponse({"pinned": [f.hex() for f in fids], **res, "warning": warning})


async def export(request: Request) -> Response:
    """POST /v1/export {"refs": [...] | null}: the JSON manifest dump."""
    who = await require(request, "admin")
    ctx = _ctx(request)
    refs = await _refs(request, who, allow_all=True)
    dump = await ctx.run(ctx.engine.export, refs)
    return Response(dump.encode(), media_type="application/json")


async def import_(request: Request) -> Response:
    """POST /v1/import (body: a dump from export): load manifests, all or nothing."""
    await require(request, "admin")
    ctx = _ctx(request)
    body = await raw_json(request, IMPORT_LIMIT)
    try:
        counts = await ctx.write(ctx.engine.import_, body)
    except IntegrityError as e:  # the client's dump, not this node's data, is at fault
        raise Problem(422, str(e), "integrity") from None
    ctx.events.publish("import", **{k: v for k, v in counts.items() if isinstance(v, int)})
    await after_write(ctx)
    return JSONResponse(counts)


# ---- browser sessions ------------------------------------------------------------------------

def _session_doc(p: Principal) -> dict:
    return {"name": p.name, "scope": p.scope, "prefix": p.prefix, "csrf": p.csrf}


async def session_create(request: Request) -> Response:
    """POST /v1/session {"token"}: sign in; sets the HttpOnly, SameSite=Strict cookie."""
    ctx = _ctx(request)
    check_same_origin(request)  # no sign-in forced on a browser from another site
    body = await json_body(request)
    token = body.get("token") if isinstance(body, dict) else None
    if not isinstance(token, str) or not token:
        raise Problem(400, 'expected {"token": TOKEN}')
    info = ctx.tokens.check(token)
    if info is None:
        raise unauthorized(request, "invalid token")
    sid, csrf = ctx.sessions.create(token)
    p = Principal(info.name, info.scope, info.prefix, csrf)
    resp = JSONResponse(_session_doc(p), status_code=201)
    resp.set_cookie(COOKIE, sid, max_age=12 * 3600, path="/", httponly=True, samesite="strict",
                    secure=ctx.secure)
    return resp


async def session_get(request: Request) -> Response:
    """GET /v1/session: who is signed in (401 without a session or token)."""
    p = await require(request, "read")
    return JSONResponse(_session_doc(p))


async def session_delete(request: Request) -> Response:
    """DELETE /v1/session: sign out."""
    ctx = _ctx(request)
    p = await session_of(request)
    sid = request.cookies.get(COOKIE)
    if p is None or not sid:
        raise unauthorized(request, "not signed in")
    ctx.sessions.drop(sid)
    resp = Response(status_code=204)
    resp.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict", secure=ctx.secure)
    return resp


def routes() -> list[Route]:
    return [
        Route("/v1/status", status, methods=["GET"]),
        Route("/v1/events", events, methods=["GET"]),
        Route("/v1/warm", warm, methods=["POST"]),
        Route("/v1/pin", pin, methods=["POST"]),
        Route("/v1/export", export, methods=["POST"]),
        Route("/v1/import", import_, methods=["POST"]),
        Route("/v1/session", session_create, methods=["POST"]),
        Route("/v1/session", session_get, methods=["GET"]),
        Route("/v1/session", session_delete, methods=["DELETE"]),
    ]


