"""What each corpus run does: fresh repository, timed ingests, timed and verified restores."""

from __future__ import annotations

import argparse
import shlex
import time
from pathlib import Path

from .adapters import Mosaic, Tool
from .common import BenchError, log, loud
from .context import Context
from .corpora import Corpus, Step, expected_hashes
from .fsutil import apparent_bytes, du_bytes, file_count, remove_tree, verify
from .machine import wait_for_quiet, warm
from .measure import Timed, run_timed
from .records import Measurement, Recorder, RunInfo

MANY_DELETED_FILES = 1000


def measure_command(tool: Tool, cmd: list[str], cwd: Path, m: Measurement,
                    time_file: Path) -> Timed:
    """Run one timed command and fill the timing fields of ``m``."""
    timed = run_timed(cmd, cwd, tool.env(), time_file, tool.ctx.timeout_s)
    m.wall_s, m.user_s, m.sys_s = timed.wall_s, timed.user_s, timed.sys_s
    m.maxrss_kb, m.flush_s, m.other_cpu_s = timed.maxrss_kb, timed.flush_s, timed.other_cpu_s
    m.mem_available_kb, m.started_utc = timed.mem_available_kb, timed.started_utc
    if timed.returncode != 0:
        m.error = f"rc={timed.returncode}: {shlex.join(cmd)}\n{(timed.stdout + timed.stderr)[-3000:]}"
        raise BenchError(m.error)
    return timed


def ingest_step(tool: Tool, step: Step, run: int, rec: Recorder) -> None:
    """Timed ingest of one step, then stored-size and (Mosaic) hash checks."""
    src = tool.corpus.path(step)
    m = Measurement(tool.name, tool.corpus.name, run, "ingest", step.name,
                    apparent_bytes(src), file_count(src))
    try:
        timed = measure_command(tool, tool.ingest_cmd(step), tool.corpus.root, m,
                                tool.ctx.work / "time.out")
        for key, value in tool.after_ingest(step, timed).items():
            setattr(m, key, value)
    finally:
        store = tool.store_dir()
        if store.exists():
            m.stored_bytes, m.stored_du_bytes = apparent_bytes(store), du_bytes(store)
            m.stored_files = file_count(store)
        rec.add(m)
    hash_note = f" hashes {m.hash_ok}/{m.hash_expected}" if m.hash_expected else ""
    log(f"  {m.corpus} {m.tool} run{run} ingest {step.name}: {m.wall_s:.2f}s "
        f"stored={m.stored_bytes}{hash_note}")
    if m.hash_expected and m.hash_ok != m.hash_expected:
        loud(f"{m.tool} {m.corpus} {step.name}: put printed {m.hash_wrong_count} wrong and "
             f"{m.hash_missing_count} missing hashes (of {m.hash_expected}); "
             f"e.g. {(m.hash_wrong + m.hash_missing)[:3]}")


def restore_step(tool: Tool, step: Step, run: int, target: Path, rec: Recorder) -> None:
    """Timed restore of one step into ``target``, then byte-for-byte verification."""
    src = tool.corpus.path(step)
    m = Measurement(tool.name, tool.corpus.name, run, "restore", step.name,
                    apparent_bytes(src), file_count(src))
    try:
        cmd, cwd, restored = tool.restore_cmd(step, target)
        measure_command(tool, cmd, cwd, m, tool.ctx.work / "time.out")
        m.identical, m.verify_detail = verify(restored, src)
    finally:
        rec.add(m)
    log(f"  {m.corpus} {m.tool} run{run} restore {step.name}: {m.wall_s:.2f}s "
        f"identical={m.identical}")
    if not m.identical:
        loud(f"RESTORE MISMATCH: {m.tool} {m.corpus} {step.name} run{run}\n{m.verify_detail}")


def one_run(tool_cls: type[Tool], ctx: Context, corpus: Corpus, run: int, rec: Recorder,
            quiet_max_wait: float) -> None:
    """Fresh repository; all ingests of the corpus; then its restores."""
    run_dir = ctx.work / corpus.name / f"{tool_cls.name}-r{run}"
    run_dir.mkdir(parents=True)
    tool = tool_cls(ctx, corpus, run_dir / "repo")
    warm(corpus.path(s) for s in corpus.steps)
    waited, load = wait_for_quiet(quiet_max_wait)
    info = RunInfo(corpus.name, tool.name, run, round(waited, 1), round(load, 3))
    rec.runs.append(info)
    if waited:
        log(f"  waited {waited:.0f}s for quiet (busy {load:.2f} cores)")
    try:
        tool.init()
        for step in corpus.steps:
            ingest_step(tool, step, run, rec)
        for name in corpus.restores:
            restore_step(tool, corpus.step(name), run, run_dir / f"restore-{name}", rec)
    except BenchError as exc:
        info.error = str(exc)
        loud(f"{tool.name} {corpus.name} run{run} FAILED: {exc}")


def cleanup_corpus(ctx: Context, corpus: Corpus, rec: Recorder) -> int:
    """Record cache sizes, then delete the corpus's repos, restores and caches."""
    caches = {name: ctx.work / "cache" / name for name in ("restic", "borg")}
    rec.cache_sizes[corpus.name] = {n: apparent_bytes(p) for n, p in caches.items() if p.exists()}
    return remove_tree(ctx.work / corpus.name) + remove_tree(ctx.work / "cache")


def pause_after_delete(deleted: int, pause_s: float) -> None:
    """Let ext4 (no journal) get over mass deletes before creating files again."""
    wait = pause_s if deleted >= MANY_DELETED_FILES else min(pause_s, 5.0)
    log(f"  deleted {deleted} files; pausing {wait:.0f}s")
    time.sleep(wait)


def bench_corpus(corpus: Corpus, tools: list[type[Tool]], ctx: Context, rec: Recorder,
                 args: argparse.Namespace) -> None:
    """All runs of all tools on one corpus (tool order rotates per run)."""
    if any(t is Mosaic for t in tools):
        log(f"[{corpus.name}] computing BLAKE3 of the inputs")
        ctx.hashes[corpus.name] = expected_hashes(corpus)
    for run in range(1, args.runs + 1):
        shift = (run - 1) % len(tools)
        for tool_cls in tools[shift:] + tools[:shift]:
            log(f"[{corpus.name}] run {run}/{args.runs}: {tool_cls.name}")
            one_run(tool_cls, ctx, corpus, run, rec, args.quiet_max_wait)
