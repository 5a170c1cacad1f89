"""Parsing and printing sizes (`500MB`, `2GiB`) and hashes."""

from __future__ import annotations

import re

from .errors import UsageError

_UNITS = {
    "": 1, "b": 1,
    "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2, "g": 1000**3, "gb": 1000**3,
    "t": 1000**4, "tb": 1000**4,
    "ki": 1024, "kib": 1024, "mi": 1024**2, "mib": 1024**2, "gi": 1024**3, "gib": 1024**3,
    "ti": 1024**4, "tib": 1024**4,
}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def parse_size(text: str | int) -> int:
    """`"500MB"` -> 500_000_000, `"2GiB"` -> 2*2**30, `"4096"` -> 4096."""
    if isinstance(text, int):
        if text < 0:
            raise UsageError(f"size must not be negative: {text}")
        return text
    m = _SIZE_RE.match(str(text))
    if not m or m.group(2).lower() not in _UNITS:
        raise UsageError(f"not a size: {text!r} (use e.g. 64KiB, 500MB, 2GiB)")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def format_size(n: int | float) -> str:
    """A short human size with binary units: `1.5 MiB`."""
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def is_hash(text: str) -> bool:
    """True if `text` is 64 lowercase hex digits (a file or chunk hash)."""
    return bool(_HEX64.match(text))


def parse_hash(text: str) -> bytes:
    """Hex hash -> 32 bytes; a clear UsageError when malformed."""
    t = text.strip().lower()
    if not _HEX64.match(t):
        raise UsageError(f"malformed hash: {text!r} (expected 64 hex digits)")
    return bytes.fromhex(t)
