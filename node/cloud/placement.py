"""Which backends get a pack: `copies` distinct ones, filling quotas evenly (pure)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BackendSpace:
    """A backend's name, bytes used by this node's packs, and quota (None: unlimited)."""

    name: str
    used: int
    quota: int | None

    def ratio_after(self, extra: int) -> float:
        """used/quota once `extra` more bytes land here (unlimited backends count as empty)."""
        if self.quota is None:
            return 0.0
        return (self.used + extra) / self.quota if self.quota else float("inf")

    def fits(self, extra: int) -> bool:
        """True if `extra` more bytes stay within the quota."""
        return self.quota is None or self.used + extra <= self.quota


def choose(spaces: list[BackendSpace], size: int, copies: int,
           exclude: set[str] = frozenset()) -> list[str]:  # type: ignore[assignment]
    """The `copies` backends a pack of `size` bytes should go to, lowest fill first.

    Each candidate is ranked by its used/quota ratio *after* taking the pack, so
    small accounts fill at the same pace as large ones. Returns fewer names than
    `copies` when not enough backends have room.
    """
    fits = [s for s in spaces if s.name not in exclude and s.fits(size)]
    fits.sort(key=lambda s: (s.ratio_after(size), s.used, s.name))
    return [s.name for s in fits[:copies]]


