"""Constants, the error type and progress logging shared by the benchmark modules."""

from __future__ import annotations

import sys
from pathlib import Path

MB = 1e6
QUIET_CORES = 0.25
REPO_ROOT = Path(__file__).resolve().parents[2]


class BenchError(Exception):
    """A command failed or the setup is unusable; the message says why."""


def log(msg: str) -> None:
    """Progress output (stderr, flushed)."""
    print(msg, file=sys.stderr, flush=True)


def loud(msg: str) -> None:
    """A failure that must not be overlooked."""
    bar = "!" * 72
    log(f"{bar}\n!!! {msg}\n{bar}")
