"""The progress bar drawn on a terminal, with rich (imported only when a bar is drawn)."""

from __future__ import annotations

import time
from typing import TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from ..units import format_size

REDRAW_EVERY = 0.1  # seconds; the callback may come once per chunk, far more often


class _Bytes(ProgressColumn):
    """`12.0 MiB / 40.0 MiB`, or `12.0 MiB` when the total is unknown."""

    def render(self, task: Task) -> Text:
        done = format_size(task.completed)
        return Text(f"{done} / {format_size(task.total)}" if task.total else done,
                    style="progress.download")


class _Rate(ProgressColumn):
    """`85.3 MiB/s` over the last seconds (the average so far until there are samples)."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        if speed is None and task.completed and task.elapsed:
            speed = task.completed / task.elapsed
        return Text("" if speed is None else f"{format_size(speed)}/s", style="progress.data.speed")


class RichBar:
    """One live bar on `stream` (stderr): label, bar, bytes, rate, and ETA (or elapsed)."""

    def __init__(self, label: str, total: int | None, stream: TextIO):
        when = TimeRemainingColumn() if total else TimeElapsedColumn()
        self._progress = Progress(
            TextColumn("{task.description}"), BarColumn(), _Bytes(), _Rate(), when,
            console=Console(file=stream), transient=False,
            redirect_stdout=False, redirect_stderr=False, refresh_per_second=10)
        self._task = self._progress.add_task(label, total=total)
        self._last = 0.0
        self._progress.start()

    def update(self, done: int) -> None:
        """Record `done` bytes so far (passed on to rich at most 10 times a second)."""
        now = time.monotonic()
        if now - self._last >= REDRAW_EVERY:
            self._last = now
            self._progress.update(self._task, completed=done)

    def close(self, done: int) -> None:
        """Draw the final state and leave it on its own line."""
        self._progress.update(self._task, completed=done)
        self._progress.stop()
