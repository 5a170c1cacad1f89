"""Command line: options, set-up checks, and ``main`` (the loop over corpora)."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path
from typing import Any

from .adapters import TOOLS, Mosaic, Tool, check_mosaic
from .common import BenchError, loud
from .context import Context, make_context
from .corpora import build_corpora
from .fsutil import remove_tree
from .machine import machine_info
from .measure import TIME_BIN
from .records import Recorder, failed
from .report import json_report, markdown_report, write_outputs
from .runner import bench_corpus, cleanup_corpus, pause_after_delete
from .summary import ratio_rows, summarize_tool

DESCRIPTION = "Benchmark Mosaic against restic and borg on the make-corpus.sh corpora."


def parse_args(argv: list[str] | None = None,
               description: str = DESCRIPTION) -> argparse.Namespace:
    """Command-line options."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--corpus", required=True, type=Path, help="make-corpus.sh output dir")
    ap.add_argument("--work", required=True, type=Path,
                    help="scratch dir for repositories and restores (same filesystem as corpus)")
    ap.add_argument("--corpora", default="versions,big,small")
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--peers", default="restic,borg", help="comma list; '' for none")
    ap.add_argument("--no-mosaic", action="store_true", help="measure the peers only")
    ap.add_argument("--mosaic-bin", default="mosaic",
                    help="Mosaic command, split like a shell would: 'python -m mosaic'")
    ap.add_argument("--mosaic-passphrase", default=None,
                    help="init the node with MOSAIC_PASSPHRASE set (default: --no-passphrase)")
    ap.add_argument("--json", type=Path, help="write all figures as JSON here")
    ap.add_argument("--markdown", type=Path, help="write the markdown report here")
    ap.add_argument("--quick", action="store_true",
                    help="smoke test: versions v1..v2, 64 MiB of big, small/idlelib")
    ap.add_argument("--pause", type=float, default=None,
                    help="seconds to pause after deleting a corpus (default 180, quick 15)")
    ap.add_argument("--quiet-max-wait", type=float, default=None,
                    help="longest wait for a quiet machine before each run (default 60 s, quick 10)")
    ap.add_argument("--timeout", type=float, default=1800.0, help="per-command timeout (s)")
    ap.add_argument("--keep", action="store_true", help="do not delete repositories at the end")
    ap.add_argument("--force", action="store_true",
                    help="delete leftovers of an earlier run in WORK first (then pause)")
    args = ap.parse_args(argv)
    if args.pause is None:
        args.pause = 15.0 if args.quick else 180.0
    if args.quiet_max_wait is None:
        args.quiet_max_wait = 10.0 if args.quick else 60.0
    if args.runs < 1:
        ap.error("--runs must be >= 1")
    return args


def select_tools(args: argparse.Namespace, ctx: Context) -> list[type[Tool]]:
    """Mosaic (checked to work) plus the installed peers."""
    tools: list[type[Tool]] = []
    if not args.no_mosaic:
        check_mosaic(ctx)
        tools.append(Mosaic)
    for name in filter(None, (p.strip() for p in args.peers.split(","))):
        if name not in ("restic", "borg"):
            raise BenchError(f"unknown peer {name!r} (restic, borg)")
        if shutil.which(name) is None:
            loud(f"{name} is not installed (apt-get install {name if name == 'restic' else 'borgbackup'}); "
                 "skipping it")
            continue
        tools.append(TOOLS[name])
    if not tools:
        raise BenchError("nothing to measure")
    if not Path(TIME_BIN).exists():
        raise BenchError(f"{TIME_BIN} missing: apt-get install time")
    return tools


def prepare_work(args: argparse.Namespace, corpus_names: list[str]) -> None:
    """Create WORK; refuse (or with --force, remove) leftovers of an earlier run."""
    args.work.mkdir(parents=True, exist_ok=True)
    old = args.work / "measurements.jsonl"
    if old.exists():
        old.rename(args.work / f"measurements-{int(old.stat().st_mtime)}.jsonl")
    leftovers = [args.work / n for n in [*corpus_names, "cache"] if (args.work / n).exists()]
    if not leftovers:
        return
    if not args.force:
        raise BenchError(f"leftovers of an earlier run in {args.work}: "
                         f"{', '.join(p.name for p in leftovers)} (use --force or another --work)")
    deleted = sum(remove_tree(p) for p in leftovers)
    pause_after_delete(deleted, args.pause)


def main(argv: list[str] | None = None, description: str = DESCRIPTION) -> int:
    """Run the benchmark; return the exit status."""
    args = parse_args(argv, description)
    args.corpus, args.work = args.corpus.resolve(), args.work.resolve()
    names = [n.strip() for n in args.corpora.split(",") if n.strip()]
    try:
        prepare_work(args, names)
        ctx = make_context(args)
        tools = select_tools(args, ctx)
        corpora = build_corpora(names, args.corpus, args.work, args.quick)
    except BenchError as exc:
        loud(str(exc))
        return 2
    tool_names = [t.name for t in tools]
    machine = machine_info(ctx, tool_names, args.corpus)
    rec = Recorder(args.work / "measurements.jsonl")
    summaries: dict[str, dict[str, dict[str, Any]]] = {}
    ratios: list[dict[str, Any]] = []
    for i, corpus in enumerate(corpora):
        bench_corpus(corpus, tools, ctx, rec, args)
        summ = {t: s for t in tool_names if (s := summarize_tool(corpus, t, rec))}
        summaries[corpus.name] = summ
        ratios += ratio_rows(corpus, summ)
        if not args.keep:
            deleted = cleanup_corpus(ctx, corpus, rec)
            if i + 1 < len(corpora):
                pause_after_delete(deleted, args.pause)
    peers = [t for t in tool_names if t != "mosaic"]
    md = markdown_report(machine, args, corpora, summaries, ratios, peers, rec)
    report = json_report(machine, args, corpora, summaries, ratios, rec)
    print(md)
    write_outputs(args, report, md)
    if failed(rec):
        loud("SOME COMMANDS FAILED OR CHECKS DID NOT PASS (see Checks above)")
        return 1
    return 0
