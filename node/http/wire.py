"""Problem documents for requests the HTTP server refuses before the application sees them.

hypercorn answers a request that breaks HTTP/1.1 framing (a malformed Content-Length,
both Content-Length and a bad Transfer-Encoding, a request head over the size limit, a
body cut short before the application answered) itself, with an empty 400 or 431.
`install()` makes those answers RFC 9457 problem documents with the face's security
headers, like every other error of the face. It replaces one method of hypercorn's
HTTP/1.1 protocol class (the only hook hypercorn offers) and does nothing if that
method is not there.
"""

from __future__ import annotations

import json
from itertools import chain
from typing import Any

from .app import SECURITY_HEADERS
from .problems import MEDIA, Problem, document

_installed = False


def problem_body(status: int) -> bytes:
    """The problem document of a request refused at the HTTP layer."""
    detail = ("the request's header section is too large" if status == 431
              else "malformed HTTP request (framing, Content-Length or Transfer-Encoding), "
                   "or its body was cut short")
    return json.dumps(document(Problem(status, detail))).encode()


def install() -> None:
    """Patch hypercorn's HTTP/1.1 error answer (once per process)."""
    global _installed
    if _installed:
        return
    try:
        import h11
        from hypercorn.protocol.h11 import H11Protocol
    except ImportError:  # pragma: no cover - hypercorn is a dependency of the face
        return
    if not hasattr(H11Protocol, "_send_error_response"):
        return

    async def _send_error_response(self: Any, status_code: int) -> None:
        body = problem_body(status_code)
        headers = list(chain([(b"content-type", MEDIA.encode()),
                              (b"content-length", str(len(body)).encode()),
                              (b"connection", b"close")],
                             SECURITY_HEADERS, self.config.response_headers("h11")))
        await self._send_h11_event(h11.Response(status_code=status_code, headers=headers))
        await self._send_h11_event(h11.Data(data=body))
        await self._send_h11_event(h11.EndOfMessage())

    H11Protocol._send_error_response = _send_error_response
    _installed = True
