"""httpx helpers shared by the HTTP-based backends (webdav, rclone)."""

from __future__ import annotations

import re

import httpx

from .errors import BackendError, NotFound, PermanentError, QuotaExceeded, TransientError

_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$", re.I)


def range_header(offset: int, length: int | None) -> dict[str, str]:
    """The Range header for `offset`/`length` (none for a whole-object read)."""
    if offset == 0 and length is None:
        return {}
    end = "" if length is None else str(offset + length - 1)
    return {"Range": f"bytes={offset}-{end}"}


async def read_range(resp: httpx.Response, offset: int, length: int | None) -> bytes:
    """Read `length` bytes at `offset` from a streamed 200/206 GET response.

    A 206 starts at the Content-Range start; a 200 (server ignored the Range)
    starts at 0, so we skip to `offset` and stop reading once we have enough.
    """
    skip = offset
    if resp.status_code == 206:
        m = _CONTENT_RANGE.match(resp.headers.get("content-range", ""))
        if m is not None:
            start, end = int(m.group(1)), int(m.group(2))
            if end < start:
                return b""  # an empty range (rclone answers `bytes 10-9/10`)
            if start > offset:
                raise TransientError(f"server sent range from {start}, asked for {offset}")
            skip = offset - start
        else:
            skip = 0
    out = bytearray()
    async for chunk in resp.aiter_bytes():
        if skip:
            if len(chunk) <= skip:
                skip -= len(chunk)
                continue
            chunk, skip = chunk[skip:], 0
        out += chunk
        if length is not None and len(out) >= length:
            del out[length:]
            break
    return bytes(out)


def status_error(what: str, status: int) -> BackendError:
    """Map an unexpected HTTP status to our error tree."""
    msg = f"{what}: HTTP {status}"
    if status in (404, 410):
        return NotFound(msg)
    if status in (507, 413):
        return QuotaExceeded(msg)
    if status in (401, 403):
        return PermanentError(msg + " (check credentials and permissions)")
    if status in (408, 423, 425, 429) or status >= 500:
        return TransientError(msg)
    return PermanentError(msg)


class NoReply(TransientError):
    """The request got no (complete) answer: timeout, refused or cut connection.

    The server may still be processing it (an upload may land later)."""


def transport_error(what: str, exc: httpx.HTTPError) -> BackendError:
    """Map an httpx exception (timeouts, refused connections...) to our error tree."""
    kind = type(exc).__name__
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL):
        return PermanentError(f"{what}: {kind}")
    if isinstance(exc, httpx.TimeoutException | httpx.TransportError):
        return NoReply(f"{what}: {kind}")
    return PermanentError(f"{what}: {kind}")
