"""RFC 9457 problem documents: every error the HTTP face answers, never a stack trace.

A problem's `type` follows the CLI's error classes (node/errors.py), so a client can
branch on the same kinds of failure as a script branches on exit codes:
`https://mosaic.invalid/problems/<kind>` with `exit_code` as an extension member.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import Response

from ..errors import (
    BackendPending,
    BusyError,
    CapacityError,
    ConflictError,
    HomeError,
    IntegrityError,
    KeyFileError,
    MosaicError,
    NotFoundError,
    StorageError,
    UsageError,
)

TYPE_BASE = "https://mosaic.invalid/problems/"
MEDIA = "application/problem+json"
MAX_INSTANCE = 1024  # a path echoed back in `instance` is cut to this many characters

# error class -> (kind, HTTP status); the first match in this order wins (subclasses first)
_KINDS: tuple[tuple[type[MosaicError], str, int], ...] = (
    (CapacityError, "capacity", 507),
    (BackendPending, "backend-pending", 503),
    (StorageError, "storage", 503),
    (ConflictError, "conflict", 409),
    (UsageError, "usage", 400),
    (NotFoundError, "not-found", 404),
    (IntegrityError, "integrity", 500),
    (KeyFileError, "key", 500),
    (HomeError, "home", 500),
    (BusyError, "busy", 409),
)
# kinds the HTTP face adds (no CLI class): status -> kind
HTTP_KINDS = {400: "usage", 401: "unauthorized", 404: "not-found", 403: "forbidden", 405: "method-not-allowed",
              406: "not-acceptable", 408: "timeout", 409: "conflict", 410: "gone",
              411: "length-required", 412: "precondition-failed", 413: "too-large",
              415: "unsupported-media-type", 416: "range-not-satisfiable", 422: "integrity", 429: "too-many-requests",
              431: "headers-too-large", 460: "checksum-mismatch", 500: "internal"}
TITLES = {"usage": "Bad request", "not-found": "Not found", "integrity": "Integrity failure",
          "key": "Key error", "storage": "Storage error", "capacity": "No room on the backends",
          "backend-pending": "Stored locally, backend step pending", "home": "Node home error",
          "busy": "Busy", "unauthorized": "Unauthorized", "forbidden": "Forbidden",
          "method-not-allowed": "Method not allowed", "not-acceptable": "Not acceptable",
          "timeout": "Request timeout", "conflict": "Conflict", "gone": "Gone",
          "length-required": "Length required", "precondition-failed": "Precondition failed",
          "too-large": "Content too large", "unsupported-media-type": "Unsupported media type",
          "range-not-satisfiable": "Range not satisfiable",
          "too-many-requests": "Too many requests", "headers-too-large": "Headers too large",
          "internal": "Internal error"}
EXIT_CODES = {"usage": 2, "not-found": 1, "integrity": 3, "key": 4, "storage": 5, "capacity": 5,
              "backend-pending": 8, "home": 6, "busy": 7, "conflict": 2, "internal": 70}


class Problem(Exception):
    """An HTTP error to answer with a problem document."""

    def __init__(self, status: int, detail: str, kind: str | None = None,
                 headers: dict[str, str] | None = None, **extra: Any):
        super().__init__(detail)
        self.status = status
        self.kind = kind or HTTP_KINDS.get(status, "usage" if status < 500 else "internal")
        self.detail = " ".join(str(detail).split())[:500]
        self.headers = headers or {}
        self.extra = extra


def from_error(e: MosaicError) -> Problem:
    """The problem for an error the engine raised."""
    for cls, kind, status in _KINDS:
        if isinstance(e, cls):
            return Problem(status, str(e), kind)
    return Problem(500, str(e), "internal")


def document(p: Problem, instance: str = "") -> dict[str, Any]:
    doc: dict[str, Any] = {"type": TYPE_BASE + p.kind, "title": TITLES.get(p.kind, p.kind),
                           "status": p.status, "detail": p.detail}
    if instance:
        doc["instance"] = instance if len(instance) <= MAX_INSTANCE else instance[:MAX_INSTANCE] + "..."
    if p.kind in EXIT_CODES:
        doc["exit_code"] = EXIT_CODES[p.kind]
    doc.update(p.extra)
    return doc


def response(p: Problem, instance: str = "", head: bool = False) -> Response:
    """The problem as a response (no body for HEAD)."""
    body = b"" if head else json.dumps(document(p, instance)).encode()
    return Response(body, status_code=p.status, media_type=MEDIA, headers=p.headers)
