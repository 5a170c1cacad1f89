"""What the cloud layer calls things on a backend, and how a bad copy is reported.

Kept apart from hub.py so that modules which only name objects do not load trio.
"""

from __future__ import annotations

from ..errors import IntegrityError
from ..store.store import MAX_PACK

UNKNOWN_SIZE_LIMIT = MAX_PACK + (64 << 20)  # the most read of an object whose size is unknown


def pack_object_name(pid: bytes) -> str:
    """The object name of a pack on a backend: `packs/ab/abcdef...`."""
    h = pid.hex()
    return f"packs/{h[:2]}/{h}"


class CorruptCopy(IntegrityError):
    """A backend's copy is not what the index expects: the wrong size, or not its ID.

    Reported like any corrupt copy (queued for repair); a copy larger than expected is
    refused after reading at most the expected size plus one byte."""
