"""Terminal output: one-line results, --json documents, and progress bars."""

from __future__ import annotations

import json
import sys
import time
from typing import Any, TextIO

from ..units import format_size


class Output:
    """Where a command's results go: plain lines, or one JSON document with --json."""

    def __init__(self, json_mode: bool = False, quiet: bool = False, stream: TextIO | None = None):
        self.json_mode, self.quiet = json_mode, quiet
        self.stream = stream or sys.stdout

    def line(self, text: str) -> None:
        """A plain result line (suppressed in --json mode)."""
        if not self.json_mode:
            self.stream.write(text + "\n")

    def info(self, text: str) -> None:
        """A message for people on stderr (suppressed by -q and --json)."""
        if not self.quiet and not self.json_mode:
            sys.stderr.write(text + "\n")

    def doc(self, obj: Any) -> None:
        """The --json document."""
        if self.json_mode:
            json.dump(obj, self.stream, indent=2, sort_keys=False)
            self.stream.write("\n")

    def progress(self, total: int | None, label: str) -> Progress:
        """A progress bar on stderr when it is a terminal and output is not quiet/json."""
        enabled = sys.stderr.isatty() and not self.quiet and not self.json_mode
        return Progress(total, label, enabled)


class Progress:
    """A byte-count progress bar, redrawn at most 10 times a second."""

    def __init__(self, total: int | None, label: str, enabled: bool):
        self.total, self.label, self.enabled = total, label, enabled
        self.done = 0
        self.start = time.monotonic()
        self._last = 0.0

    def __call__(self, n: int) -> None:
        self.done += n
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._last >= 0.1:
            self._last = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        rate = self.done / max(now - self.start, 1e-6)
        if self.total:
            frac = min(1.0, self.done / self.total)
            bar = "#" * int(frac * 30)
            text = (f"\r{self.label} [{bar:<30}] {frac * 100:5.1f}% {format_size(self.done)}"
                    f" / {format_size(self.total)}  {format_size(rate)}/s ")
        else:
            text = f"\r{self.label} {format_size(self.done)}  {format_size(rate)}/s "
        sys.stderr.write(text)
        sys.stderr.flush()

    def finish(self) -> None:
        """Draw the final state and end the line."""
        if self.enabled:
            self._draw(time.monotonic())
            sys.stderr.write("\n")
            sys.stderr.flush()
