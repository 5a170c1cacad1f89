"""Measurement records and the recorder that persists them to WORK/measurements.jsonl."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass
class Measurement:
    """One timed command and what was checked after it."""

    tool: str
    corpus: str
    run: int
    phase: str  # ingest | restore
    step: str
    input_bytes: int
    input_files: int
    wall_s: float = 0.0
    user_s: float = 0.0
    sys_s: float = 0.0
    maxrss_kb: int = 0
    flush_s: float = 0.0
    other_cpu_s: float = 0.0
    mem_available_kb: int = 0
    started_utc: str = ""
    stored_bytes: int | None = None
    stored_du_bytes: int | None = None
    stored_files: int | None = None
    identical: bool | None = None
    verify_detail: str = ""
    reported: str = ""
    hash_expected: int = 0
    hash_ok: int = 0
    hash_missing_count: int = 0
    hash_wrong_count: int = 0
    hash_missing: list[str] = field(default_factory=list)
    hash_wrong: list[str] = field(default_factory=list)
    error: str = ""

    @property
    def cpu_s(self) -> float:
        """user + sys CPU seconds."""
        return self.user_s + self.sys_s

    @property
    def other_cores(self) -> float:
        """Other load during the command, in cores."""
        return self.other_cpu_s / self.wall_s if self.wall_s > 0 else 0.0


@dataclass
class RunInfo:
    """Per (corpus, tool, run) set-up facts."""

    corpus: str
    tool: str
    run: int
    quiet_wait_s: float
    quiet_load: float
    error: str = ""


class Recorder:
    """Collects measurements and appends them to WORK/measurements.jsonl."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.measurements: list[Measurement] = []
        self.runs: list[RunInfo] = []
        self.cache_sizes: dict[str, dict[str, int]] = {}

    def add(self, m: Measurement) -> None:
        """Keep and persist one measurement."""
        self.measurements.append(m)
        with open(self.path, "a") as fh:
            fh.write(json.dumps(asdict(m)) + "\n")


def failed(rec: Recorder) -> bool:
    """True if any command failed or any check did not pass."""
    return (any(r.error for r in rec.runs)
            or any(m.phase == "restore" and not m.identical for m in rec.measurements)
            or any(m.hash_ok != m.hash_expected for m in rec.measurements))
