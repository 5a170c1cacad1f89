"""The web UI of the HTTP face: pages at /, assets at /static, a few verbs under /ui.

`routes(ctx)` returns the Starlette routes the HTTP app mounts last at "/", so the
API's routes under /v1 always win. Pages are Jinja2 templates filled by small
vanilla ES modules (static/js); nothing is fetched from another origin, and no
page holds inline script or style (the app's Content-Security-Policy forbids them).
"""

from __future__ import annotations

from pathlib import Path

from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from . import archive, manage, pages

STATIC = Path(__file__).with_name("static")


class Assets(StaticFiles):
    """The UI's static files; browsers revalidate them (ETag) so an upgrade shows at once."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        r = await super().get_response(path, scope)
        r.headers["Cache-Control"] = "no-cache"
        r.headers["X-Content-Type-Options"] = "nosniff"
        return r


def routes(ctx: object = None) -> list[BaseRoute]:
    """The UI's routes (the handlers find the app's Ctx on `request.app.state.ctx`)."""
    return [
        Route("/", pages.home, methods=["GET"]),
        Route("/signin", pages.signin, methods=["GET"]),
        Route("/files", pages.browse, methods=["GET"]),
        Route("/files/{path:path}", pages.browse, methods=["GET"]),
        Route("/details/{ref:path}", pages.details, methods=["GET"]),
        Route("/dashboard", pages.dashboard, methods=["GET"]),
        Route("/ui/archive", archive.archive, methods=["GET"]),
        Route("/ui/archive/{path:path}", archive.archive, methods=["GET"]),
        Route("/ui/verify/{ref:path}", manage.verify, methods=["POST"]),
        Route("/ui/folder/{path:path}", manage.delete_folder, methods=["DELETE"]),
        Route("/ui/activity", manage.activity, methods=["GET"]),
        Route("/ui/events/recent", manage.recent_events, methods=["GET"]),
        Mount("/static", app=Assets(directory=str(STATIC)), name="static"),
    ]
