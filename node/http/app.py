"""The ASGI application of the HTTP face: `build_app(ctx)`.

Routes: the REST API under /v1 (files.py, tus.py, node_routes.py), the OpenAPI
document, then the web UI's routes (node/http/ui/) mounted last at "/". One ASGI
middleware wraps everything: it adds the security headers (the CSP) to every
response, refuses oversized header sections with a problem document, and turns
every error into an RFC 9457 problem document (never a stack trace).
"""

from __future__ import annotations

import logging
import re
from typing import Any
from urllib.parse import unquote_to_bytes

import trio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..errors import MosaicError
from . import files, node_routes, openapi, problems, tus
from .context import Ctx
from .problems import Problem

log = logging.getLogger("mosaic.http")

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
       "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
]
MAX_HEADER_BYTES = 32 * 1024
DRAIN_IDLE_S = 30.0  # a client that stops sending an unneeded body is given up on after this
MAX_HEADERS = 100
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


class Guard:
    """Security headers on every response; problems for oversized headers and errors."""

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False
        head = scope.get("method") == "HEAD"
        body_done = False

        async def receive_wrapped() -> dict:
            nonlocal body_done
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_done = True
            return message

        async def send_wrapped(message: dict) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                have = {k.lower() for k, _ in message.get("headers", [])}
                message["headers"] = list(message.get("headers", [])) + [
                    (k, v) for k, v in SECURITY_HEADERS if k not in have]
            elif message["type"] == "http.response.body" and not message.get("more_body", False) \
                    and not body_done:
                # the answer ends before the body was read (a refusal): take the rest of the
                # body meanwhile, or the server could wait forever to pass it on (see _drain)
                async with trio.open_nursery() as n:
                    n.start_soon(_drain, receive_wrapped)
                    await send(message)
                return
            await send(message)

        try:
            hdrs = scope.get("headers", [])
            # the request line counts too: whether h11 refuses a long one itself depends on
            # how much of it arrived in one read, so the app must refuse it the same way
            size = sum(len(k) + len(v) + 4 for k, v in hdrs) + len(scope.get("raw_path", b"")) \
                + len(scope.get("query_string", b""))
            if size > MAX_HEADER_BYTES or len(hdrs) > MAX_HEADERS:
                raise Problem(431, f"the request's header section is too large (at most "
                                   f"{MAX_HEADER_BYTES} bytes, {MAX_HEADERS} fields)")
            if _CONTROL.search(scope.get("path", "")):
                raise Problem(400, "control characters are not allowed in paths", "usage")
            if not _utf8_path(scope):
                raise Problem(400, "the path is not valid UTF-8 once percent-decoded", "usage")
            await self.app(scope, receive_wrapped, send_wrapped)
        except BaseException as e:  # noqa: BLE001 - every error becomes a problem document
            p = _problem_of(e)
            if p is None:
                raise
            if started:  # mid-stream: all we can do is end the connection
                log.warning("%s %s failed while streaming: %s", scope.get("method"),
                            scope.get("path"), p.detail)
                raise _Abort() from None
            if scope.get("method") in ("POST", "PUT", "PATCH"):
                # the body may be unread: the connection cannot carry another request
                p.headers.setdefault("Connection", "close")
            await problems.response(p, scope.get("path", ""), head)(scope, receive_wrapped,
                                                                    send_wrapped)


async def _drain(receive: Any) -> None:
    """Read and drop what is left of a request body the answer did not need, until the
    server says the request is over. hypercorn hands the body to the application through
    a small bounded queue and, once the answer is sent, puts a last "disconnect" message
    in it before it closes the connection: with the queue full of unread body, that put
    (and so the answer's last send) would wait for good, and so would the client."""
    while True:
        with trio.move_on_after(DRAIN_IDLE_S) as idle:
            message = await receive()
        if idle.cancelled_caught or message["type"] != "http.request" \
                or not message.get("more_body", False):
            return


def _utf8_path(scope: dict) -> bool:
    """True if the raw path, percent-decoded, is UTF-8 (the server decodes it leniently,
    turning bad bytes into U+FFFD, which must never become part of a name)."""
    raw = scope.get("raw_path")
    if not raw or b"%" not in raw:
        return True
    try:
        unquote_to_bytes(raw.split(b"?", 1)[0]).decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


class _Abort(Exception):
    """Ends a response that has already started (the server drops the connection)."""


def _problem_of(e: BaseException) -> Problem | None:
    """The problem for an exception (None for cancellation, which must propagate)."""
    if isinstance(e, BaseExceptionGroup):
        inner = [x for x in e.exceptions]
        if len(inner) == 1:
            return _problem_of(inner[0])
        for x in inner:
            if isinstance(x, Problem | MosaicError | HTTPException):
                return _problem_of(x)
        if any(not isinstance(x, Exception) for x in inner):
            return None
        return _problem_of(inner[0])
    if isinstance(e, Problem):
        return e
    if isinstance(e, MosaicError):
        return problems.from_error(e)
    if isinstance(e, HTTPException):
        return Problem(e.status_code, e.detail or "error", headers=dict(e.headers or {}))
    if isinstance(e, _Abort) or not isinstance(e, Exception):
        return None
    log.error("internal error: %s: %s", type(e).__name__, e, exc_info=e)
    return Problem(500, f"internal error ({type(e).__name__})", "internal")


async def _not_found(request: Request, exc: Exception) -> Response:
    raise HTTPException(404, "no such endpoint")


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    detail = {404: "no such endpoint", 405: "method not allowed here"}.get(exc.status_code,
                                                                              str(exc.detail))
    p = Problem(exc.status_code, detail, headers=dict(exc.headers or {}))
    return problems.response(p, request.url.path, request.method == "HEAD")


async def _openapi(request: Request) -> Response:
    return JSONResponse(openapi.document())


def build_app(ctx: Ctx) -> Starlette:
    """The HTTP face's application over `ctx` (API routes, then the UI's at "/")."""
    from .ui import routes as ui_routes
    api: list = [Route("/v1/openapi.json", _openapi, methods=["GET"]),
                 *files.routes(), *tus.routes(), *node_routes.routes()]
    # the UI's routes join the same list (not a Mount at "/", which would match every path
    # fully and turn a /v1 path called with the wrong method into 404 instead of 405)
    app = Starlette(routes=[*api, *ui_routes(ctx)],
                    exception_handlers={HTTPException: _http_error})
    app.state.ctx = ctx
    app.add_middleware(Guard)
    return app
