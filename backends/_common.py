"""Small helpers shared by the backends: ranges, temp names, listing filters."""

from __future__ import annotations

import re
import secrets
from collections.abc import Awaitable, Callable
from datetime import datetime

import trio

from .base import validate_name
from .errors import BackendError, InvalidName, PermanentError

#: temporary objects start with this; the leading dot makes them invalid names,
#: so they can never collide with a real object and `list` never shows them
TEMP_PREFIX = ".tmp-"


def check_range(offset: int, length: int | None) -> None:
    """Reject negative offsets and lengths (a caller bug, not a backend error)."""
    if offset < 0:
        raise ValueError(f"negative offset: {offset}")
    if length is not None and length < 0:
        raise ValueError(f"negative length: {length}")


def temp_name(name: str) -> str:
    """A fresh hidden temp name in the same folder as `name`."""
    head, sep, _ = name.rpartition("/")
    return f"{head}{sep}{TEMP_PREFIX}{secrets.token_hex(8)}"


def is_object_name(name: str) -> bool:
    """True if `name` is a valid object name (so not a temp or hidden file)."""
    try:
        validate_name(name)
    except InvalidName:
        return False
    return True


def prefix_can_match(prefix: str) -> bool:
    """False if no valid object name can start with `prefix` (e.g. "../", "/x", "A").

    Listing backends return [] for such prefixes without touching storage, so a
    hostile prefix can never walk outside the backend's folder.
    """
    return prefix == "" or is_object_name(prefix) or is_object_name(prefix + "x")


def folder_of(prefix: str) -> str:
    """The deepest folder that can hold every name starting with `prefix`.

    "packs/ab/cd" -> "packs/ab", "packs/" -> "packs", "pa" -> "".
    """
    return prefix.rpartition("/")[0]


def could_contain(folder: str, prefix: str) -> bool:
    """True if names under `folder/` may start with `prefix` (prunes list walks)."""
    f = folder + "/"
    return f.startswith(prefix) or prefix.startswith(f)


def raise_single_backend_error(group: BaseExceptionGroup) -> None:
    """If a nursery failed only with BackendErrors, raise one of them (a permanent
    one first) so callers see the plain error tree, not an exception group.
    Returns (so the caller re-raises the group) if anything else is inside,
    e.g. trio.Cancelled, which must propagate untouched."""
    rest, errors = _leaves(group), []
    for exc in rest:
        if not isinstance(exc, BackendError):
            return
        errors.append(exc)
    errors.sort(key=lambda e: not isinstance(e, PermanentError))
    raise errors[0] from group


def _leaves(group: BaseExceptionGroup) -> list[BaseException]:
    out: list[BaseException] = []
    for exc in group.exceptions:
        out.extend(_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return out


#: how long after a failed put we look again for a temp object the server may
#: still be creating (its upload request can be processed after our DELETE)
CLEANUP_RETRY_DELAYS = (0.0, 0.3, 1.0)


async def discard_temp(delete: Callable[[], Awaitable[bool]], *, retry: bool,
                       limit: float = 10.0) -> None:
    """Delete a temp object after a failed or cancelled put, even while cancelled.

    `delete()` returns True if it removed something, False if nothing was there.
    With `retry` (the upload may still be in flight on the server), a miss is
    retried a few times. Errors are swallowed: cleanup must not hide the real
    error, and `sweep_temp` collects anything left.
    """
    delays = CLEANUP_RETRY_DELAYS if retry else (0.0,)
    with trio.CancelScope(shield=True), trio.move_on_after(limit):
        for delay in delays:
            await trio.sleep(delay)
            try:
                if await delete():
                    return
            except Exception:
                return


def is_temp_name(rel: str) -> bool:
    """True if the last component of `rel` is one of our temp names."""
    return rel.rpartition("/")[2].startswith(TEMP_PREFIX)


_FRACTION = re.compile(r"(\.\d{6})\d+")


def parse_rfc3339(text: str) -> float | None:
    """Seconds since the epoch for an RFC 3339 time (nanoseconds allowed), or None."""
    try:
        return datetime.fromisoformat(_FRACTION.sub(r"\1", text.replace("Z", "+00:00"))).timestamp()
    except ValueError:
        return None
