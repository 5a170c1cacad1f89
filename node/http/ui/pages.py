"""The UI's HTML pages: sign-in, a folder, a file's details, the dashboard.

Pages are server-rendered shells (Jinja2, autoescaped); the scripts in static/js fill
them from the JSON API. A page asked for without a session goes to the sign-in page;
the session's CSRF token is rendered into `<meta name="csrf-token">` for the scripts.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import wraps
from pathlib import Path
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.templating import Jinja2Templates

from ..auth import Principal, session_of
from ..problems import Problem

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).with_name("templates")))


@dataclass(frozen=True)
class Crumb:
    """One step of a breadcrumb trail: its label and its URL path (percent-encoded)."""

    label: str
    href: str


def url_path(path: str) -> str:
    """A virtual path as a URL path: each segment percent-encoded, slashes kept."""
    return "/".join(quote(s, safe="") for s in path.split("/") if s)


def crumbs(path: str, home: str) -> list[Crumb]:
    """The trail from the principal's home folder down to `path`."""
    parts = [p for p in path.split("/") if p]
    base = [p for p in home.split("/") if p]
    out = [Crumb(home or "Files", url_path(home))]
    for i in range(len(base), len(parts)):
        out.append(Crumb(parts[i], url_path("/".join(parts[: i + 1]))))
    return out


def _signin_redirect(request: Request) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse("/signin?next=" + quote(target, safe=""), status_code=303)


def _error_page(request: Request, p: Problem, who: Principal | None = None) -> Response:
    return TEMPLATES.TemplateResponse(
        request, "error.html",
        {"page": "error", "principal": who, "home": url_path(who.prefix) if who else "",
         "status": p.status, "detail": p.detail},
        status_code=p.status, headers=p.headers)


async def principal_or_none(request: Request) -> Principal | None:
    """The page's viewer; None when signed out (or the session is no longer valid)."""
    try:
        return await session_of(request)
    except Problem as p:
        if p.status == 401:
            return None
        raise


def _clean(path: str) -> str:
    return "/".join(s for s in path.split("/") if s)


def _render(request: Request, who: Principal, template: str, page: str, **extra: object) -> Response:
    return TEMPLATES.TemplateResponse(
        request, template,
        {"page": page, "principal": who, "home": url_path(who.prefix),
         "can_write": who.allows("write"), **extra},
        headers={"Cache-Control": "no-store"})


async def signin(request: Request) -> Response:
    """GET /signin: the token form."""
    nxt = request.query_params.get("next", "/")
    if not nxt.startswith("/") or nxt.startswith(("//", "/\\")):  # only a path on this origin
        nxt = "/"
    return TEMPLATES.TemplateResponse(request, "signin.html",
                                      {"page": "signin", "principal": None, "home": "",
                                       "next": nxt}, headers={"Cache-Control": "no-store"})


Endpoint = Callable[[Request], Awaitable[Response]]
PageHandler = Callable[[Request, Principal], Awaitable[Response]]


def _signed_in(signed_out: Callable[[Request], Response] = _signin_redirect,
               ) -> Callable[[PageHandler], Endpoint]:
    """A decorator for a page that needs a viewer: the handler is called with the viewer;
    without one the page answers `signed_out`, and with a session in error the error page."""
    def wrap(handler: PageHandler) -> Endpoint:
        @wraps(handler)
        async def page(request: Request) -> Response:
            try:
                who = await principal_or_none(request)
            except Problem as p:
                return _error_page(request, p)
            if who is None:
                return signed_out(request)
            return await handler(request, who)
        return page
    return wrap


def _to_signin(request: Request) -> Response:
    return RedirectResponse("/signin", status_code=303)


@_signed_in(_to_signin)
async def home(request: Request, who: Principal) -> Response:
    """GET /: the viewer's home folder."""
    return RedirectResponse("/files/" + url_path(who.prefix), status_code=303)


@_signed_in()
async def browse(request: Request, who: Principal) -> Response:
    """GET /files/{path}: one folder."""
    folder = _clean(request.path_params.get("path", ""))
    if who.prefix and not who.covers(folder):
        if who.prefix.startswith(folder + "/") or not folder:
            return RedirectResponse("/files/" + url_path(who.prefix), status_code=303)
        return _error_page(request, Problem(403, "this folder is outside your token's prefix"), who)
    return _render(request, who, "browse.html", "browse", folder=folder,
                   folder_url=url_path(folder), crumbs=crumbs(folder, who.prefix))


@_signed_in()
async def details(request: Request, who: Principal) -> Response:
    """GET /details/{name or hash}: one file."""
    ref = _clean(request.path_params.get("ref", ""))
    is_hash = len(ref) == 64 and all(c in "0123456789abcdefABCDEF" for c in ref)
    name = "" if is_hash else ref
    if name and not who.covers(name):
        return _error_page(request, Problem(403, "this file is outside your token's prefix"), who)
    download = f"/v1/files/{ref.lower()}" if is_hash else f"/v1/names/{url_path(name)}"
    folder = name.rsplit("/", 1)[0] if "/" in name else ""
    trail = crumbs(folder, who.prefix) + [Crumb(name.rsplit("/", 1)[-1] if name else ref[:16], "")]
    return _render(request, who, "details.html", "details", ref=ref, name=name,
                   label=name.rsplit("/", 1)[-1] if name else ref, download_url=download,
                   crumbs=trail)


@_signed_in()
async def dashboard(request: Request, who: Principal) -> Response:
    """GET /dashboard: the node's state, live."""
    return _render(request, who, "dashboard.html", "dashboard")
