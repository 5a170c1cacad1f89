"""Summaries over runs: medians with ranges per step, corpus totals, Mosaic/peer ratios."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from .common import MB
from .corpora import Corpus
from .records import Measurement, Recorder


@dataclass
class Stat:
    """Median with min and max over runs."""

    median: float
    lo: float
    hi: float
    n: int

    @classmethod
    def of(cls, values: list[float]) -> Stat | None:
        """Stat of a list (None if empty)."""
        if not values:
            return None
        return cls(statistics.median(values), min(values), max(values), len(values))

    def fmt(self, scale: float = 1.0, digits: int = 2) -> str:
        """``median [min–max]`` (no range for a single value)."""
        med = f"{self.median / scale:.{digits}f}"
        if self.n < 2:
            return med
        return f"{med} [{self.lo / scale:.{digits}f}–{self.hi / scale:.{digits}f}]"


def step_summary(ms: list[Measurement]) -> dict[str, Any]:
    """Summary of the successful measurements of one (tool, corpus, phase, step)."""
    tried = ms
    ms = [m for m in tried if not m.error]
    wall = Stat.of([m.wall_s for m in ms])
    inb = tried[0].input_bytes
    out: dict[str, Any] = {
        "input_bytes": inb, "input_files": tried[0].input_files, "wall_s": wall,
        "mbps": inb / MB / wall.median if wall and wall.median > 0 else None,
        "cpu_s": Stat.of([m.cpu_s for m in ms]),
        "maxrss_mib": Stat.of([m.maxrss_kb / 1024 for m in ms]),
        "flush_s": Stat.of([m.flush_s for m in ms]),
    }
    if tried[0].phase == "ingest":
        out["stored_bytes"] = Stat.of([float(m.stored_bytes or 0) for m in ms])
        out["stored_du_bytes"] = Stat.of([float(m.stored_du_bytes or 0) for m in ms])
        out["stored_files"] = Stat.of([float(m.stored_files or 0) for m in ms])
    else:
        out["identical"] = sum(bool(m.identical) for m in tried)
        out["verified"] = len(tried)
    return out


def per_run_sum(ms: list[Measurement], key: Callable[[Measurement], float]) -> list[float]:
    """Sum of ``key`` over the measurements of each run."""
    runs: dict[int, float] = {}
    for m in ms:
        runs[m.run] = runs.get(m.run, 0.0) + key(m)
    return list(runs.values())


def per_run_max(ms: list[Measurement]) -> list[float]:
    """Per run: highest peak RSS (MiB) of its measurements."""
    runs: dict[int, float] = {}
    for m in ms:
        runs[m.run] = max(runs.get(m.run, 0.0), m.maxrss_kb / 1024)
    return list(runs.values())


def added_by(ingests: list[Measurement], prev: str, step: str) -> list[float]:
    """Per run: stored bytes after ``step`` minus after ``prev``."""
    by_run: dict[int, dict[str, int]] = {}
    for m in ingests:
        by_run.setdefault(m.run, {})[m.step] = m.stored_bytes or 0
    return [float(s[step] - s[prev]) for s in by_run.values() if step in s and prev in s]


def summarize_tool(corpus: Corpus, tool: str, rec: Recorder) -> dict[str, Any] | None:
    """Summary of one tool on one corpus (runs whose ingests all succeeded)."""
    mine = [m for m in rec.measurements if m.tool == tool and m.corpus == corpus.name]
    ingests = [m for m in mine if m.phase == "ingest" and not m.error]
    complete = [m for m in ingests
                if {x.step for x in ingests if x.run == m.run} == {s.name for s in corpus.steps}]
    runs = {m.run for m in complete}
    if not complete:
        return None
    names = [s.name for s in corpus.steps]
    total_in = sum(step_summary([m for m in complete if m.step == n])["input_bytes"] for n in names)
    total_wall = Stat.of(per_run_sum(complete, lambda m: m.wall_s))
    return {
        "runs": len(runs),
        "ingest": {n: step_summary([m for m in complete if m.step == n]) for n in names},
        "restore": {n: step_summary(g) for n in corpus.restores
                    if (g := [m for m in mine if m.phase == "restore" and m.step == n
                              and m.run in runs])},
        "added": {n: Stat.of(added_by(complete, p, n)) for p, n in pairwise(names)},
        "ingest_total_bytes": total_in,
        "ingest_total_s": total_wall,
        "ingest_total_mbps": total_in / MB / total_wall.median if total_wall else None,
        "ingest_total_cpu_s": Stat.of(per_run_sum(complete, lambda m: m.cpu_s)),
        "ingest_maxrss_mib": Stat.of(per_run_max(complete)),
        "other_cores_max": max((m.other_cores for m in mine), default=0.0),
    }


def headline(corpus: Corpus, s: dict[str, Any]) -> dict[str, tuple[float | None, bool]]:
    """Key figures for the ratio table: name -> (value, higher is better)."""
    first, last = corpus.steps[0].name, corpus.steps[-1].name

    def restore_mbps(name: str) -> float | None:
        return s["restore"][name]["mbps"] if name in s["restore"] else None

    def stored(name: str) -> float:
        return s["ingest"][name]["stored_bytes"].median

    if corpus.name == "big":
        added = s["added"].get(last)
        return {
            "ingest MB/s, a.bin": (s["ingest"][first]["mbps"], True),
            "ingest MB/s, b.bin": (s["ingest"][last]["mbps"], True),
            "restore MB/s, b.bin": (restore_mbps(last), True),
            "restore MB/s, a.bin": (restore_mbps(first), True),
            "stored bytes after a.bin": (stored(first), False),
            "bytes added by b.bin": (added.median if added else None, False),
        }
    return {
        "ingest MB/s" + (" (all versions)" if len(corpus.steps) > 1 else ""):
            (s["ingest_total_mbps"], True),
        f"restore MB/s ({corpus.restores[0]})": (restore_mbps(corpus.restores[0]), True),
        f"stored bytes after {last}": (stored(last), False),
    }


def ratio_rows(corpus: Corpus, summ: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Mosaic/peer ratios of the headline figures."""
    if "mosaic" not in summ:
        return []
    mine = headline(corpus, summ["mosaic"])
    peers = {t: headline(corpus, s) for t, s in summ.items() if t != "mosaic"}
    rows = []
    for metric, (value, higher) in mine.items():
        row: dict[str, Any] = {"corpus": corpus.name, "metric": metric, "mosaic": value,
                               "higher_is_better": higher}
        for peer, figures in peers.items():
            pv = figures[metric][0]
            row[peer] = pv
            row[f"mosaic/{peer}"] = value / pv if value is not None and pv else None
        rows.append(row)
    return rows
