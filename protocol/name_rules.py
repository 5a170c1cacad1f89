"""The one rule for file names: what the CLI and API accept, what import and sync decode.

A name is a relative, `/`-separated path of UTF-8 text:

* at least one segment; no segment is `.` or `..` (or empty, in canonical form);
* no control character: C0 (U+0000-U+001F), DEL (U+007F), C1 (U+0080-U+009F), the bidi
  embeddings, overrides and isolates (U+202A-U+202E, U+2066-U+2069: they reorder what a
  terminal shows after them) and the line and paragraph separators (U+2028, U+2029: line
  breaks to `str.splitlines` and some viewers);
* no lone surrogate (the name must encode as UTF-8);
* at most MAX_NAME_BYTES bytes of UTF-8.

`\\` is an ordinary character, as on POSIX (`a\\b` is one segment), on every path: the CLI,
the API, import and sync store it as it is and never read it as a separator or an escape, so
a name with `\\` that arrives by import or sync is addressed from the CLI by typing it as is.

MAX_NAME_BYTES keeps every table key built from a name under LMDB's 511-byte
key limit, with room to spare: the replication tables key by BLAKE3(name)
(namestate, namewait), and the name directory can be
keyed by a conflict copy's name, `<name>.sync-conflict-YYYYMMDD-HHMMSS-<8 hex>[-N]`
(40 bytes more, plus the counter): 400 + 40 + 32 < 511.

`check_name` is for names people type: it returns the canonical form, dropping
only what cannot change the meaning of a path (leading and trailing `/`, empty
and `.` segments). `check_canonical` is for names read from the wire or a dump:
they must already be in canonical form, so every node stores the same bytes.
Both raise `InvalidName` (a ValueError) with a one-line message.
"""

from __future__ import annotations

import re

__all__ = ["MAX_NAME_BYTES", "UNSAFE_CHARS", "InvalidName", "check_canonical", "check_name"]

from .limits import MAX_NAME_BYTES

UNSAFE_CHARS = "\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069"
"""The characters no name holds, as the inside of a regex character class (also used to
escape text printed to a terminal: node/cli/output.py)."""
_CONTROL = re.compile(f"[{UNSAFE_CHARS}]")
_BIDI = re.compile("[\u202a-\u202e\u2066-\u2069]")
_SHOWN = 60


class InvalidName(ValueError):
    """A name that breaks the rule above; `str()` is one line."""


def _shown(name: str) -> str:
    """`name` for an error message: one line (repr escapes control characters and
    surrogates), at most about _SHOWN characters however many escapes it needs."""
    if len(repr(name)) <= _SHOWN:
        return repr(name)
    lo, hi = 0, min(len(name), _SHOWN)  # the longest prefix whose repr fits
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if len(repr(name[:mid])) <= _SHOWN - 3:
            lo = mid
        else:
            hi = mid - 1
    return repr(name[:lo]) + "..."


def check_name(name: object) -> str:
    """The canonical form of a name given by a person; InvalidName if there is none."""
    if type(name) is not str:
        raise InvalidName("a name must be text")
    bad = _CONTROL.search(name)
    if bad:
        c = bad.group()
        kind = ("bidi control" if _BIDI.match(c) else "line separator" if c in "\u2028\u2029"
                else "control")
        what = "NUL" if c == "\x00" else f"{kind} character U+{ord(c):04X}"
        raise InvalidName(f"invalid name {_shown(name)}: contains {what}")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidName(f"invalid name {_shown(name)}: not valid UTF-8 (lone surrogate)") from None
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if not parts:
        raise InvalidName(f"invalid name {_shown(name)}: empty")
    if ".." in parts:
        raise InvalidName(f"invalid name {_shown(name)}: '..' is not allowed")
    out = "/".join(parts)
    size = len(out.encode("utf-8"))
    if size > MAX_NAME_BYTES:
        raise InvalidName(f"name too long ({size} bytes of UTF-8, at most {MAX_NAME_BYTES})")
    return out


def check_canonical(name: object) -> str:
    """`name` itself if it is a valid name in canonical form; InvalidName otherwise."""
    out = check_name(name)
    if out != name:
        raise InvalidName(f"invalid name {_shown(name)}: not in canonical form ({_shown(out)})")  # type: ignore[arg-type]
    return out
