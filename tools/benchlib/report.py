"""Output: the markdown report (tables per corpus, ratios, checks) and the JSON document."""

from __future__ import annotations

import argparse
import json
import statistics
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .common import MB, QUIET_CORES, log
from .corpora import Corpus
from .records import Measurement, Recorder, RunInfo, failed
from .summary import Stat

# ------------------------------------------------------------------ cells


def fmt_stat(stat: Stat | None, scale: float = 1.0, digits: int = 2) -> str:
    """Stat as text, '—' when missing."""
    return stat.fmt(scale, digits) if stat else "—"


def fmt_num(value: float | None, digits: int = 1) -> str:
    """Number as text, '—' when missing."""
    return "—" if value is None else f"{value:,.{digits}f}"


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    """A markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return lines


def verified_cell(s: dict[str, Any]) -> str:
    """'k/n' identical restores; loudly marked when a restore differed or failed."""
    ident = sum(r["identical"] for r in s["restore"].values())
    total = sum(r["verified"] for r in s["restore"].values())
    return f"{ident}/{total}" if ident == total else f"**{ident}/{total} FAILED**"


# ---------------------------------------------------------- corpus tables


def versions_tables(corpus: Corpus, summ: dict[str, dict[str, Any]]) -> list[str]:
    """Markdown for the versions corpus."""
    last, rname = corpus.steps[-1].name, corpus.restores[0]
    rows, sizes = [], []
    for tool, s in summ.items():
        final = s["ingest"][last]
        r = s["restore"].get(rname, {})
        rows.append([tool, fmt_stat(s["ingest_total_s"]), fmt_num(s["ingest_total_mbps"]),
                     fmt_stat(s["ingest_total_cpu_s"]), fmt_stat(s["ingest_maxrss_mib"], digits=0),
                     fmt_stat(final["stored_bytes"], MB), fmt_num(s["ingest_total_bytes"]
                                                                  / final["stored_bytes"].median, 2),
                     fmt_stat(r.get("wall_s")), fmt_num(r.get("mbps")), fmt_stat(r.get("cpu_s")),
                     fmt_stat(r.get("maxrss_mib"), digits=0), verified_cell(s),
                     f"{s['other_cores_max']:.2f}"])
        sizes.append([tool] + [fmt_stat(s["ingest"][st.name]["stored_bytes"], MB)
                               for st in corpus.steps]
                     + [fmt_stat(final["stored_du_bytes"], MB), fmt_stat(final["stored_files"], digits=0)])
    head = ["tool", f"ingest v1..{last} s", "MB/s", "CPU s", "peak RSS MiB",
            f"stored MB after {last}", "dedup ratio", f"restore {rname} s", "MB/s", "CPU s",
            "peak RSS MiB", "identical", "other CPU max (cores)"]
    out = table(head, rows)
    out += ["", "Stored MB after each ingest:", ""]
    out += table(["tool"] + [s.name for s in corpus.steps] + [f"on disk after {last}", "files"], sizes)
    return out


def big_tables(corpus: Corpus, summ: dict[str, dict[str, Any]]) -> list[str]:
    """Markdown for the big corpus."""
    rows = []
    for tool, s in summ.items():
        a, b = s["ingest"]["a"], s["ingest"]["b"]
        ra, rb = s["restore"].get("a", {}), s["restore"].get("b", {})
        rss_get = max((r["maxrss_mib"].median for r in (ra, rb) if r), default=None)
        rows.append([tool, fmt_stat(a["wall_s"]), fmt_num(a["mbps"]), fmt_stat(a["stored_bytes"], MB),
                     fmt_stat(b["wall_s"]), fmt_num(b["mbps"]), fmt_stat(s["added"].get("b"), MB),
                     f"{fmt_stat(a['cpu_s'])} / {fmt_stat(b['cpu_s'])}",
                     fmt_stat(s["ingest_maxrss_mib"], digits=0),
                     fmt_stat(rb.get("wall_s")), fmt_num(rb.get("mbps")),
                     fmt_stat(ra.get("wall_s")), fmt_num(ra.get("mbps")),
                     f"{fmt_stat(rb.get('cpu_s'))} / {fmt_stat(ra.get('cpu_s'))}",
                     fmt_num(rss_get, 0), verified_cell(s), f"{s['other_cores_max']:.2f}"])
    head = ["tool", "put a.bin s", "MB/s", "stored MB after a", "put b.bin s", "MB/s",
            "**added by b.bin MB**", "CPU s a / b", "peak RSS put MiB", "get b.bin s", "MB/s",
            "get a.bin s", "MB/s", "CPU s get b / a", "peak RSS get MiB", "identical", "other CPU max (cores)"]
    return table(head, rows)


def small_tables(corpus: Corpus, summ: dict[str, dict[str, Any]]) -> list[str]:
    """Markdown for the small corpus."""
    rows = []
    for tool, s in summ.items():
        i = s["ingest"]["small"]
        r = s["restore"].get("small", {})
        rows.append([tool, fmt_stat(i["wall_s"]), fmt_num(i["mbps"]), fmt_stat(i["cpu_s"]),
                     fmt_stat(i["maxrss_mib"], digits=0), fmt_stat(i["stored_bytes"], MB),
                     fmt_stat(i["stored_du_bytes"], MB), fmt_stat(i["stored_files"], digits=0),
                     fmt_num(i["input_bytes"] / i["stored_bytes"].median, 2),
                     fmt_stat(r.get("wall_s")), fmt_num(r.get("mbps")), fmt_stat(r.get("cpu_s")),
                     fmt_stat(r.get("maxrss_mib"), digits=0), verified_cell(s),
                     f"{s['other_cores_max']:.2f}"])
    head = ["tool", "ingest s", "MB/s", "CPU s", "peak RSS MiB", "stored MB", "on disk MB",
            "files", "dedup ratio", "restore s", "MB/s", "CPU s", "peak RSS MiB", "identical",
            "other CPU max (cores)"]
    return table(head, rows)


CORPUS_TABLES = {"versions": versions_tables, "big": big_tables, "small": small_tables}


def corpus_title(corpus: Corpus, summ: dict[str, dict[str, Any]]) -> str:
    """Heading line with the corpus's input size."""
    any_s = next(iter(summ.values()))
    files = sum(v["input_files"] for v in any_s["ingest"].values())
    steps = ", ".join(s.rel for s in corpus.steps)
    return (f"### {corpus.name}: {steps} ({any_s['ingest_total_bytes'] / MB:,.2f} MB in "
            f"{files:,} files; restores: {', '.join(corpus.restores)})")


def ratio_table(rows: list[dict[str, Any]], peers: list[str]) -> list[str]:
    """Markdown for the Mosaic/peer ratios."""
    out_rows = []
    for r in rows:
        scale = MB
        cells = [r["corpus"], r["metric"] + (" (lower is better)" if not r["higher_is_better"] else "")]
        is_bytes = "bytes" in r["metric"]
        cells.append(fmt_num(r["mosaic"] / scale if is_bytes and r["mosaic"] else r["mosaic"], 2))
        for p in peers:
            pv = r.get(p)
            cells += [fmt_num(pv / scale if is_bytes and pv else pv, 2),
                      fmt_num(r.get(f"mosaic/{p}"), 2)]
        out_rows.append(cells)
    head = ["corpus", "metric (bytes in MB)", "mosaic"]
    for p in peers:
        head += [p, f"mosaic/{p}"]
    return table(head, out_rows)


# ------------------------------------------------------ notes and checks


def cache_lines(rec: Recorder) -> list[str]:
    """Sizes of the peers' local caches (not part of the stored bytes)."""
    parts = [f"{corpus}: " + ", ".join(f"{tool} {size / MB:.2f} MB" for tool, size in sizes.items())
             for corpus, sizes in rec.cache_sizes.items() if sizes]
    if not parts:
        return []
    return [f"Local caches at the end of each corpus, not counted as stored: {'; '.join(parts)}.", ""]


def checks_lines(rec: Recorder) -> list[str]:
    """Verification and failure summary."""
    restores = [m for m in rec.measurements if m.phase == "restore"]
    bad = [m for m in restores if not m.identical]
    hashed = [m for m in rec.measurements if m.hash_expected]
    h_ok = sum(m.hash_ok for m in hashed)
    h_all = sum(m.hash_expected for m in hashed)
    timed = [m for m in rec.measurements if m.wall_s > 0]
    busy = [m for m in timed if m.other_cores >= QUIET_CORES]
    lines = [f"- Restores compared byte for byte with the originals: "
             f"{len(restores) - len(bad)}/{len(restores)} identical.",
             f"- Measurements with other load >= {QUIET_CORES} cores: {len(busy)}/{len(timed)}"
             + (": " + ", ".join(f"{m.tool} {m.corpus} {m.phase} {m.step} run {m.run} "
                                 f"({m.other_cores:.2f})" for m in busy[:6])
                + (", … (all in the JSON)" if len(busy) > 6 else "") if busy else ".")]
    if hashed:
        lines.append(f"- Mosaic `put` hashes equal to the files' BLAKE3: {h_ok:,}/{h_all:,} files.")
    lines += [f"- **RESTORE {'FAILED' if m.error else 'MISMATCH'}**: {m.tool} {m.corpus} {m.step} "
              f"run {m.run}" for m in bad]
    if hashed and h_ok != h_all:
        lines.append("- **HASH MISMATCH** in Mosaic `put` output (see JSON for names).")
    lines += [f"- **FAILED**: {r.tool} {r.corpus} run {r.run}: "
              f"{r.error.splitlines()[0] if r.error else ''}" for r in rec.runs if r.error]
    return lines


def method_lines(args: argparse.Namespace, rec: Recorder) -> list[str]:
    """Short description of how the figures were taken."""
    waits = [r.quiet_wait_s for r in rec.runs]
    others = [m.other_cores for m in rec.measurements if m.wall_s > 0]
    mem = [m.mem_available_kb / 1024 / 1024 for m in rec.measurements]
    return [
        f"- {args.runs} run(s) per tool and corpus, fresh repositories each run; tables give the "
        "median [min–max]. MB = 10^6 bytes; throughput = input bytes / wall seconds.",
        "- Inputs read into the page cache before each run; untimed `sync` before every command; "
        "CPU and peak RSS from GNU `time -v`; nothing deleted while measuring.",
        "- Stored bytes = sum of apparent file sizes in the repository (Mosaic: the whole node "
        "home); restic/borg local caches not counted.",
        f"- Quiet-machine waits before runs: {sum(1 for w in waits if w > 0)} of {len(waits)} "
        f"waited (max {max(waits, default=0):.0f} s). Other CPU during measurements: median "
        f"{statistics.median(others) if others else 0:.2f} cores, max {max(others, default=0):.2f}.",
        f"- Available memory before each command: median "
        f"{statistics.median(mem) if mem else 0:.1f} GiB (min {min(mem, default=0):.1f}).",
        "- Mosaic: " + ("node created with MOSAIC_PASSPHRASE." if args.mosaic_passphrase
                        else "node created with `init --no-passphrase`.")
        + " restic: `restic init` defaults. borg: `-e repokey-blake2`, `create -C zstd,3`.",
    ] + (["- **--quick mode**: reduced corpora, not comparable with full runs."] if args.quick else [])


def noisy_warning(rec: Recorder) -> list[str]:
    """A loud note when the machine was not quiet (figures then understate speed)."""
    loaded = [r for r in rec.runs if r.quiet_load >= QUIET_CORES]
    others = [m.other_cores for m in rec.measurements if m.wall_s > 0]
    busy = statistics.median(others) if others else 0.0
    if not loaded and busy < QUIET_CORES:
        return []
    return [f"- **Machine not quiet**: {len(loaded)} of {len(rec.runs)} runs started after the "
            f"wait limit with other load; median other load during commands {busy:.2f} cores. "
            "Treat these figures as provisional."]


# ----------------------------------------------------------------- output


def markdown_report(machine: dict[str, str], args: argparse.Namespace, corpora: list[Corpus],
                    summaries: dict[str, dict[str, dict[str, Any]]], ratios: list[dict[str, Any]],
                    peers: list[str], rec: Recorder) -> str:
    """The whole markdown report."""
    out = [f"## Mosaic vs restic and borg ({machine['date']})", ""]
    out += table(["item", "value"], [[k, v] for k, v in machine.items() if k != "date"])
    out += ["", *method_lines(args, rec), *noisy_warning(rec), ""]
    for corpus in corpora:
        summ = summaries.get(corpus.name, {})
        if not summ:
            out += [f"### {corpus.name}: no successful runs", ""]
            continue
        out += [corpus_title(corpus, summ), "", *CORPUS_TABLES[corpus.name](corpus, summ), ""]
    if ratios:
        out += ["### Ratios Mosaic / peer", "",
                "Throughput: > 1 means Mosaic is faster. Stored bytes: < 1 means Mosaic stores less.",
                "", *ratio_table(ratios, peers), ""]
    out += [*cache_lines(rec), "### Checks", "", *checks_lines(rec), ""]
    return "\n".join(out)


def json_report(machine: dict[str, str], args: argparse.Namespace, corpora: list[Corpus],
                summaries: dict[str, dict[str, dict[str, Any]]], ratios: list[dict[str, Any]],
                rec: Recorder) -> dict[str, Any]:
    """Everything measured and derived, for ``--json``."""
    return {"machine": machine, "settings": {k: str(v) for k, v in vars(args).items()},
            "corpora": {c.name: {"root": c.root, "steps": [asdict(s) for s in c.steps],
                                 "restores": c.restores} for c in corpora},
            "summaries": summaries, "ratios": ratios, "runs": rec.runs,
            "cache_bytes": rec.cache_sizes, "measurements": rec.measurements,
            "ok": not failed(rec)}


def to_jsonable(obj: object) -> object:
    """JSON encoder fallback for dataclasses and paths."""
    if isinstance(obj, Stat | Measurement | RunInfo):
        return asdict(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(type(obj).__name__)


def write_outputs(args: argparse.Namespace, report: dict[str, Any], md: str) -> None:
    """--json and --markdown files."""
    if args.json:
        args.json.write_text(json.dumps(report, indent=1, default=to_jsonable) + "\n")
        log(f"wrote {args.json}")
    if args.markdown:
        args.markdown.write_text(md + "\n")
        log(f"wrote {args.markdown}")
