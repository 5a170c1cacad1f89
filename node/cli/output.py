"""Terminal output: one-line results, --json documents, and progress bars."""

from __future__ import annotations

import json
import re
import sys
from typing import TYPE_CHECKING, Any, TextIO

from mosaic.protocol.name_rules import UNSAFE_CHARS

if TYPE_CHECKING:
    from .bar import RichBar

_UNSAFE = re.compile(f"[{UNSAFE_CHARS}]")


def _escape(m: re.Match[str]) -> str:
    o = ord(m.group())
    return f"\\x{o:02x}" if o < 0x100 else f"\\u{o:04x}"


def safe_text(text: str) -> str:
    """`text` as one harmless line: every character a name may not hold (control characters
    such as ESC, CR and LF, bidi overrides, line separators) is shown as an escape (`\\x1b`,
    `\\u202e`), so printed names cannot move the cursor, recolour, reorder or forge lines.

    `\\` itself is left alone: it is an ordinary character of names (protocol/name_rules.py),
    and names never hold what is escaped here, so a name prints exactly as it is typed.
    """
    return _UNSAFE.sub(_escape, text) if _UNSAFE.search(text) else text


class Output:
    """Where a command's results go: plain lines, or one JSON document with --json."""

    def __init__(self, json_mode: bool = False, quiet: bool = False, stream: TextIO | None = None):
        self.json_mode, self.quiet = json_mode, quiet
        self.stream = stream or sys.stdout
        self._bars: list[Progress] = []

    def line(self, text: str) -> None:
        """A plain result line, escaped by `safe_text` (suppressed in --json mode)."""
        if not self.json_mode:
            self.stream.write(safe_text(text) + "\n")

    def info(self, text: str) -> None:
        """A message for people on stderr, escaped by `safe_text` (suppressed by -q and --json)."""
        if not self.quiet and not self.json_mode:
            sys.stderr.write(safe_text(text) + "\n")

    def doc(self, obj: Any) -> None:
        """The --json document."""
        if self.json_mode:
            json.dump(obj, self.stream, indent=2, sort_keys=False)
            self.stream.write("\n")

    @property
    def drawing(self) -> bool:
        """True if progress bars are drawn: stderr is a terminal, and neither -q nor --json."""
        return not self.quiet and not self.json_mode and sys.stderr.isatty()

    def progress(self, total: int | None, label: str) -> Progress:
        """A byte-count progress bar on stderr (drawn only if `drawing`).

        Call it with each number of bytes done; `finish()` (or leaving a `with`
        block) ends it. Without a terminal nothing at all is written.
        """
        bar = Progress(total, label, self.drawing)
        if bar.enabled:
            self._bars.append(bar)
        return bar

    def close(self) -> None:
        """End any bar still drawn (a command that failed half way)."""
        while self._bars:
            self._bars.pop().finish()


class Progress:
    """A progress callback: counts bytes, and draws a rich bar on stderr if enabled."""

    def __init__(self, total: int | None, label: str, enabled: bool):
        self.total, self.label = total, label
        self.done = 0
        self._bar: RichBar | None = None
        if enabled:
            from .bar import RichBar
            self._bar = RichBar(label, total or None, sys.stderr)

    @property
    def enabled(self) -> bool:
        """True while a bar is drawn."""
        return self._bar is not None

    def __call__(self, n: int) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(self.done)

    def finish(self) -> None:
        """Draw the final state and end the line (once; later calls do nothing)."""
        bar, self._bar = self._bar, None
        if bar is not None:
            bar.close(self.done)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.finish()
