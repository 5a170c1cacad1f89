#!/usr/bin/env python3
"""Same-run ingest/restore benchmark of two git revisions of Mosaic (old vs new).

Usage::

    python3 tools/compare_revs.py --rev OLD --rev NEW \\
        --corpus /work/bench-corpus --work /work/compare-work \\
        [--cases big,small,versions] [--runs 3] [--json-out OUT.json]

What it does (stdlib only; it imports nothing of Mosaic, so it runs the same against any
layout of the package):

* Each revision is exported with ``git archive`` (read-only for the repository: no worktree,
  no checkout) to WORK/revs/N-SHA/src and installed with ``pip install`` into its own venv
  WORK/revs/N-SHA/venv. A venv whose marker names the same commit is reused (``--rebuild``
  forces a new one). Every command runs that venv's ``mosaic`` console script, with
  PYTHONPATH removed and ``MOSAIC_HOME`` set, and with the corpus root as working directory.
* Cases (inputs relative to the corpus root): ``big`` = ``put big/a.bin`` then
  ``get big/a.bin DEST``; ``small`` = ``put -r small`` then ``get -r small DEST``;
  ``versions`` = ``put -r versions/v1`` .. ``v6`` into one home then ``get -r versions/v6``.
* Per case, runs alternate between the revisions: AB BA AB ... (``--order abab``: AB AB ...).
  A same-revision check with ABAB gave 0.90 for the big put: the first slot often follows
  a wait for a quiet machine and ran faster. ABBA with an even --runs balances that. Each
  (revision, run) gets a fresh home (``mosaic -q init --no-passphrase``, untimed): its inputs
  are read once into the page cache, the harness waits (bounded) for the rest of the machine
  to use < 0.25 cores, then every put and the get run with an untimed ``sync`` before them
  and a separately timed ``sync`` after them (``flush``). Wall time excludes the flush.
* A run during which other processes used more than ``--max-other-cores`` (0.25) is redone,
  up to ``--retries`` (2) times; the last attempt counts, and the table shows the highest
  other load during the counted commands.
* Every restore is checked: same set of regular files (``put -r`` skips symlinks), same
  sizes, same SHA-256 as the input.
* Nothing is deleted while measuring (ext4 without a journal creates files slowly for
  minutes after mass deletes; see ../shared/bench/peer-bench.md), so homes and restores stay
  until the end unless ``--cleanup case|each`` is given.

Throughput = input bytes of the regular files / wall seconds, MB = 10^6 bytes. The report
(Markdown on stdout) gives the median MB/s per revision, [min-max], and new/old of medians.
Exit status: 0 if every command ran and every restore was identical, 1 otherwise, 2 for
usage or set-up errors.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

MB = 1e6
QUIET_CORES = 0.25
CLK_TCK = os.sysconf("SC_CLK_TCK")
CASES = ("big", "small", "versions")


class SetupError(Exception):
    """The set-up cannot work; the message says why."""


def log(msg: str) -> None:
    """Progress on stderr."""
    print(msg, file=sys.stderr, flush=True)


# ------------------------------------------------------------------ machine


def busy_seconds() -> float:
    """System-wide busy CPU seconds so far (idle and iowait excluded)."""
    with open("/proc/stat") as fh:
        user, nice, system, _idle, _iowait, irq, softirq, steal = map(
            int, fh.readline().split()[1:9])
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


def mem_available_mb() -> float:
    """MemAvailable from /proc/meminfo, MB."""
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024 / MB
    return 0.0


def wait_for_quiet(max_wait: float) -> tuple[float, float]:
    """Wait until other load is < QUIET_CORES over 2 s (at most max_wait s); (waited, load)."""
    waited = 0.0
    while True:
        b0 = busy_seconds()
        time.sleep(2.0)
        load = (busy_seconds() - b0) / 2.0
        if load < QUIET_CORES or waited >= max_wait:
            return waited, load
        time.sleep(3.0)
        waited += 5.0


def loadavg() -> list[float]:
    """The 1/5/15-minute load averages."""
    return [round(x, 2) for x in os.getloadavg()]


def sync() -> None:
    """Flush dirty pages."""
    subprocess.run(["sync"], check=True)


# --------------------------------------------------------------- filesystem


def regular_files(root: Path) -> list[Path]:
    """Regular files at or below ``root`` (symlinks skipped, as ``put -r`` does)."""
    if root.is_file():
        return [root]
    out = []
    for d, _dirs, files in os.walk(root):
        for f in files:
            p = Path(d) / f
            if not p.is_symlink() and p.is_file():
                out.append(p)
    return out


def sha256_file(path: Path) -> str:
    """SHA-256 of a file, hex."""
    h = hashlib.sha256()
    with open(path, "rb", buffering=0) as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def manifest(root: Path) -> dict[str, tuple[int, str]]:
    """{relative path: (size, sha256)} of the regular files under ``root`` (or the file)."""
    if root.is_file():
        return {root.name: (root.stat().st_size, sha256_file(root))}
    return {p.relative_to(root).as_posix(): (p.stat().st_size, sha256_file(p))
            for p in regular_files(root)}


def compare_manifests(got: dict[str, tuple[int, str]],
                      want: dict[str, tuple[int, str]]) -> str:
    """'' if equal, else a short description of the differences."""
    missing = sorted(set(want) - set(got))
    extra = sorted(set(got) - set(want))
    wrong = sorted(k for k in want if k in got and got[k] != want[k])
    if not (missing or extra or wrong):
        return ""
    return (f"{len(missing)} missing {missing[:3]}, {len(extra)} extra {extra[:3]}, "
            f"{len(wrong)} differ {wrong[:3]}")


def warm(paths: list[Path]) -> None:
    """Read every input once so that puts read from the page cache."""
    for p in paths:
        for f in regular_files(p):
            with open(f, "rb", buffering=0) as fh:
                while fh.read(1 << 20):
                    pass


def remove(path: Path) -> int:
    """Delete a tree; return how many files it held."""
    if not path.exists():
        return 0
    count = sum(len(files) for _d, _s, files in os.walk(path))
    shutil.rmtree(path)
    return count


# ----------------------------------------------------------------- commands


@dataclass
class Result:
    """One command's outcome."""

    rc: int
    wall_s: float
    user_s: float
    sys_s: float
    maxrss_mb: float
    other_cpu_s: float
    stdout: str
    stderr: str


def run_cmd(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float) -> Result:
    """Run ``cmd`` in its own process group; wall clock and wait4 rusage around it."""
    with tempfile.TemporaryFile() as out_f, tempfile.TemporaryFile() as err_f:
        b0 = busy_seconds()
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out_f,
                                stderr=err_f, start_new_session=True)

        def kill() -> None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

        timer = threading.Timer(timeout, kill)
        timer.start()
        try:
            _pid, status, ru = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        wall = time.monotonic() - t0
        busy = busy_seconds() - b0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out_f.seek(0)
        err_f.seek(0)
        stdout = out_f.read().decode(errors="replace")
        stderr = err_f.read().decode(errors="replace")
    cpu = ru.ru_utime + ru.ru_stime
    return Result(proc.returncode, wall, ru.ru_utime, ru.ru_stime, ru.ru_maxrss * 1024 / MB,
                  round(busy - cpu, 3), stdout, stderr)


def run_checked(cmd: list[str], cwd: Path, env: dict[str, str] | None = None,
                timeout: float = 1800) -> str:
    """Run a set-up command; SetupError with its output if it fails."""
    p = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0:
        raise SetupError(f"{shlex.join(cmd)} failed (rc={p.returncode}):\n"
                         f"{(p.stdout + p.stderr)[-3000:]}")
    return p.stdout


# ---------------------------------------------------------------- revisions


@dataclass
class Rev:
    """One revision under test: its name, commit, export and venv."""

    index: int
    spec: str
    sha: str
    subject: str
    root: Path
    label: str = ""
    mosaic: str = ""
    package_dir: str = ""

    @property
    def src(self) -> Path:
        return self.root / "src"

    @property
    def venv(self) -> Path:
        return self.root / "venv"


def resolve_rev(repo: Path, spec: str) -> tuple[str, str]:
    """(full sha, subject line) of a git revision."""
    sha = run_checked(["git", "rev-parse", "--verify", "--quiet", f"{spec}^{{commit}}"],
                      repo).strip()
    subject = run_checked(["git", "log", "-1", "--format=%s", sha], repo).strip()
    return sha, subject


def export_rev(repo: Path, rev: Rev) -> None:
    """``git archive`` the commit into rev.src (read-only for the repository)."""
    if rev.src.exists():
        shutil.rmtree(rev.src)
    rev.src.mkdir(parents=True)
    with subprocess.Popen(["git", "archive", "--format=tar", rev.sha], cwd=repo,
                          stdout=subprocess.PIPE) as arch:
        tar = subprocess.run(["tar", "-x", "-C", str(rev.src)], stdin=arch.stdout)
        assert arch.stdout is not None
        arch.stdout.close()
    if arch.returncode != 0 or tar.returncode != 0:
        raise SetupError(f"git archive {rev.sha} | tar -x failed")


def install_rev(repo: Path, rev: Rev, python: str, rebuild: bool) -> None:
    """Export the commit and pip-install it into its own venv (reused if already built)."""
    marker = rev.venv / "compare-revs-installed"
    if not rebuild and marker.exists() and marker.read_text().strip() == rev.sha:
        log(f"  {rev.label}: reusing {rev.venv}")
    else:
        log(f"  {rev.label}: git archive + venv + pip install (a minute or two)")
        export_rev(repo, rev)
        if rev.venv.exists():
            shutil.rmtree(rev.venv)
        run_checked([python, "-m", "venv", str(rev.venv)], rev.root)
        run_checked([str(rev.venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
                     "--disable-pip-version-check", str(rev.src)], rev.root)
        marker.write_text(rev.sha + "\n")
    rev.mosaic = str(rev.venv / "bin" / "mosaic")
    if not Path(rev.mosaic).exists():
        raise SetupError(f"{rev.label}: pip install made no 'mosaic' console script")
    script = Path(rev.mosaic).read_text(errors="replace")
    entry = next((ln for ln in script.splitlines() if ln.startswith("from ")), "?")
    rev.package_dir = entry


def mosaic_env(home: Path, sentinel: Path) -> dict[str, str]:
    """Environment for Mosaic commands: this home, nothing from the caller's checkout."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "MOSAIC_PASSPHRASE", "MOSAIC_DEBUG")}
    env.update(MOSAIC_HOME=str(home), XDG_DATA_HOME=str(sentinel), LC_ALL="C",
               PYTHONDONTWRITEBYTECODE="1")
    return env


def check_cli(rev: Rev, work: Path, sentinel: Path) -> None:
    """The options this harness uses exist, and MOSAIC_HOME selects the home."""
    env = mosaic_env(work / "cli-check-home", sentinel)
    needs = {(): ["-q", "init", "put", "get"], ("init",): ["--no-passphrase"],
             ("put",): ["-r"], ("get",): ["-r"]}
    for sub, words in needs.items():
        text = run_checked([rev.mosaic, *sub, "--help"], work, env, timeout=120)
        missing = [w for w in words if w not in text]
        if missing:
            raise SetupError(f"{rev.label}: `mosaic {' '.join(sub)} --help` lacks {missing}")
    home = work / "cli-check-home"
    remove(home)
    run_checked([rev.mosaic, "-q", "init", "--no-passphrase"], work, env, timeout=120)
    if not home.is_dir() or not any(home.iterdir()):
        raise SetupError(f"{rev.label}: `mosaic init` with MOSAIC_HOME={home} wrote nothing there")
    if any(sentinel.iterdir()):
        raise SetupError(f"{rev.label}: mosaic wrote under XDG_DATA_HOME ({sentinel})")
    remove(home)


# -------------------------------------------------------------------- cases


@dataclass
class Case:
    """One case: puts (each timed) into one home, then one get (timed) of ``restore``."""

    name: str
    puts: list[str]
    restore: str
    recursive: bool
    put_bytes: int = 0
    put_files: int = 0
    restore_bytes: int = 0
    want: dict[str, tuple[int, str]] = field(default_factory=dict)


def make_case(name: str, corpus: Path) -> Case:
    """The inputs of one case, checked to exist."""
    if name == "big":
        case = Case("big", ["big/a.bin"], "big/a.bin", recursive=False)
    elif name == "small":
        case = Case("small", ["small"], "small", recursive=True)
    else:
        rels = [f"versions/v{i}" for i in range(1, 7)]
        case = Case("versions", rels, rels[-1], recursive=True)
    for rel in case.puts:
        if not (corpus / rel).exists():
            raise SetupError(f"case {name}: {corpus / rel} missing (run make-corpus.sh)")
    files = [f for rel in case.puts for f in regular_files(corpus / rel)]
    case.put_files, case.put_bytes = len(files), sum(f.stat().st_size for f in files)
    log(f"  {name}: SHA-256 of the restore target {case.restore}")
    case.want = manifest(corpus / case.restore)
    case.restore_bytes = sum(size for size, _ in case.want.values())
    return case


@dataclass
class Measurement:
    """One timed command."""

    case: str
    rev: int
    run: int
    op: str  # "put" or "get"
    step: str
    bytes: int
    wall_s: float
    flush_s: float
    user_s: float
    sys_s: float
    maxrss_mb: float
    other_cpu_s: float
    mem_available_mb: float
    rc: int
    identical: bool | None = None
    detail: str = ""


def timed(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float) -> tuple[Result, float,
                                                                                   float]:
    """sync; run; timed sync. (result, flush seconds, MemAvailable before)."""
    sync()
    mem = mem_available_mb()
    res = run_cmd(cmd, cwd, env, timeout)
    t0 = time.monotonic()
    sync()
    return res, time.monotonic() - t0, mem


def one_unit(case: Case, rev: Rev, run: int, args: argparse.Namespace, unit_dir: Path,
             sentinel: Path) -> tuple[list[Measurement], dict]:
    """Fresh home; timed puts; timed get to a fresh destination; verify."""
    home, dest_root = unit_dir / "home", unit_dir / "restore"
    dest_root.mkdir(parents=True)
    env = mosaic_env(home, sentinel)
    warm([args.corpus / rel for rel in case.puts])
    waited, load = wait_for_quiet(args.quiet_wait)
    info = {"case": case.name, "rev": rev.index, "run": run, "quiet_waited_s": waited,
            "load_before_cores": round(load, 3), "loadavg": loadavg()}
    run_checked([rev.mosaic, "-q", "init", "--no-passphrase"], args.corpus, env, timeout=120)
    out: list[Measurement] = []

    def record(op: str, step: str, nbytes: int, cmd: list[str]) -> Measurement:
        res, flush, mem = timed(cmd, args.corpus, env, args.timeout)
        m = Measurement(case.name, rev.index, run, op, step, nbytes, round(res.wall_s, 4),
                        round(flush, 4), round(res.user_s, 3), round(res.sys_s, 3),
                        round(res.maxrss_mb, 1), res.other_cpu_s, round(mem, 0), res.rc)
        if res.rc != 0:
            m.detail = f"rc={res.rc}: {shlex.join(cmd)}\n{(res.stdout + res.stderr)[-2000:]}"
        out.append(m)
        return m

    rflag = ["-r"] if case.recursive else []
    for rel in case.puts:
        nbytes = sum(f.stat().st_size for f in regular_files(args.corpus / rel))
        # --name: both revisions record the same names, whatever their default for a tree
        m = record("put", rel, nbytes, [rev.mosaic, "-q", "put", *rflag, rel, "--name", rel])
        if m.rc != 0:
            return out, info
    dest = dest_root / Path(case.restore).name
    m = record("get", case.restore, case.restore_bytes,
               [rev.mosaic, "-q", "get", *rflag, case.restore, str(dest)])
    if m.rc == 0:
        got = manifest(dest) if dest.exists() else {}  # a file: {name: ...}, as case.want
        m.detail = compare_manifests(got, case.want)
        m.identical = not m.detail
    return out, info


def other_cores(ms: list[Measurement]) -> float:
    """Highest other-process load (cores) during any of these commands."""
    return max((m.other_cpu_s / m.wall_s for m in ms if m.wall_s > 0), default=0.0)


def run_case(case: Case, revs: list[Rev], args: argparse.Namespace, sentinel: Path,
             all_m: list[Measurement], units: list[dict]) -> None:
    """All runs of one case, alternating the revisions; a run hit by other load is redone."""
    for run in range(1, args.runs + 1):
        order = list(revs)
        if args.order == "abba" and run % 2 == 0:
            order.reverse()
        for rev in order:
            for attempt in range(args.retries + 1):
                unit_dir = args.work / "runs" / case.name / f"run{run}-rev{rev.index}-a{attempt}"
                ms, info = one_unit(case, rev, run, args, unit_dir, sentinel)
                noisy = other_cores(ms)
                info.update(attempt=attempt, other_cores_max=round(noisy, 3))
                units.append(info)
                text = ", ".join(f"{m.op} {m.step} {m.wall_s:.2f}s "
                                 f"{m.bytes / MB / m.wall_s:.1f} MB/s"
                                 + ("" if m.identical is not False else " NOT IDENTICAL")
                                 + ("" if m.rc == 0 else f" FAILED rc={m.rc}") for m in ms)
                log(f"  [{case.name}] run {run} {rev.label}: {text}; other load up to "
                    f"{noisy:.2f} cores")
                for m in ms:
                    if m.rc != 0 or m.identical is False:
                        log(f"!!! {m.detail}")
                if args.cleanup == "each":
                    remove(unit_dir)
                retry = noisy > args.max_other_cores and attempt < args.retries
                info["discarded"] = retry
                if not retry:
                    all_m.extend(ms)
                    break
                log(f"    other load {noisy:.2f} > {args.max_other_cores} cores: run again")
    if args.cleanup == "case":
        n = remove(args.work / "runs" / case.name)
        log(f"  deleted {n} files; pausing {args.pause:.0f}s (ext4 after mass deletes)")
        time.sleep(args.pause)


# ------------------------------------------------------------------- report


def rates(ms: list[Measurement], case: str, rev: int, op: str) -> list[float]:
    """MB/s per run: bytes of all of a run's commands of this op / their summed wall."""
    out = []
    for run in sorted({m.run for m in ms}):
        sel = [m for m in ms if (m.case, m.rev, m.op, m.run) == (case, rev, op, run)]
        if sel and all(m.rc == 0 for m in sel):
            out.append(sum(m.bytes for m in sel) / MB / sum(m.wall_s for m in sel))
    return out


def summarize(cases: list[Case], ms: list[Measurement], min_ratio: float) -> list[dict]:
    """One row per (case, op): median MB/s per revision, range, ratio new/old."""
    rows = []
    for case in cases:
        for op in ("put", "get"):
            old, new = rates(ms, case.name, 0, op), rates(ms, case.name, 1, op)
            row: dict = {"case": case.name, "op": op, "old": old, "new": new}
            if old and new:
                row["old_median"] = statistics.median(old)
                row["new_median"] = statistics.median(new)
                row["ratio"] = row["new_median"] / row["old_median"]
                row["ok"] = row["ratio"] >= min_ratio
            for idx, key in ((0, "old"), (1, "new")):
                sel = [m for m in ms if (m.case, m.rev, m.op) == (case.name, idx, op)]
                runs = {m.run for m in sel} or {1}
                row[f"cpu_s_{key}"] = sum(m.user_s + m.sys_s for m in sel) / len(runs)
                row[f"other_{key}"] = other_cores(sel)
            rows.append(row)
    return rows


def describe(case: Case) -> str:
    """What a case does, for the table."""
    if case.name == "big":
        return f"big/a.bin ({case.put_bytes / MB:.0f} MB, 1 file)"
    if case.name == "small":
        return f"small/ ({case.put_bytes / MB:.0f} MB, {case.put_files} files)"
    return (f"versions v1..v6 ({case.put_bytes / MB:.0f} MB, {case.put_files} files; "
            f"get v6 {case.restore_bytes / MB:.0f} MB)")


def fmt_range(xs: list[float]) -> str:
    """median [min-max] of MB/s."""
    if not xs:
        return "failed"
    med = statistics.median(xs)
    return f"{med:.1f}" if len(xs) == 1 else f"{med:.1f} [{min(xs):.1f}–{max(xs):.1f}]"


def markdown(revs: list[Rev], cases: list[Case], rows: list[dict], meta: dict,
             args: argparse.Namespace) -> str:
    """The report."""
    old, new = revs
    lines = [f"# compare_revs: {old.spec} vs {new.spec}", "",
             f"- old: `{old.sha[:12]}` {old.subject[:80]}",
             f"- new: `{new.sha[:12]}` {new.subject[:80]}",
             f"- date {meta['date']}; {meta['machine']}; {args.runs} run(s) per revision, "
             f"order {args.order.upper()}; total {meta['total_s'] / 60:.1f} min",
             f"- loadavg before {meta['loadavg_before']}, after {meta['loadavg_after']}; "
             f"other CPU during commands: median {meta['other_cpu_median']:.2f} cores, "
             f"max {meta['other_cpu_max']:.2f}; quiet waits {meta['quiet_waited_s']:.0f} s; "
             f"runs redone for other load: {meta['redone']}",
             f"- restores identical: {meta['identical']}/{meta['restores']}; "
             f"failed commands: {meta['failed']}", "",
             f"| case | op | old MB/s | new MB/s | new/old | ≥ {args.min_ratio:g}? "
             "| CPU s old / new | other load old / new |",
             "|---|---|---:|---:|---:|:-:|---:|---:|"]
    by_name = {c.name: c for c in cases}
    for r in rows:
        ratio = f"{r['ratio']:.3f}" if "ratio" in r else "–"
        ok = ("yes" if r["ok"] else "**no**") if "ok" in r else "–"
        lines.append(f"| {describe(by_name[r['case']])} | {r['op']} | {fmt_range(r['old'])} "
                     f"| {fmt_range(r['new'])} | {ratio} | {ok} "
                     f"| {r['cpu_s_old']:.2f} / {r['cpu_s_new']:.2f} "
                     f"| {r['other_old']:.2f} / {r['other_new']:.2f} |")
    lines += ["", "MB/s = input bytes (regular files) / wall s, excluding the `sync` after the "
              "command; median [min–max] over runs; versions put = all six puts summed. "
              "CPU s = user+sys of the command, mean per run. Other load = the highest "
              "CPU use of other processes during a counted command, cores (a run above "
              f"{args.max_other_cores:g} cores is redone up to {args.retries} times)."]
    if args.runs < 3:
        lines.append(f"\nOnly {args.runs} run(s): figures are provisional.")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rev", action="append", required=True, metavar="REV",
                    help="git revision; give exactly two: --rev OLD --rev NEW")
    ap.add_argument("--corpus", type=Path, required=True, help="make-corpus.sh output dir")
    ap.add_argument("--work", type=Path, required=True,
                    help="scratch dir (exports, venvs, homes, restores); same fs as the corpus")
    ap.add_argument("--cases", default="big,small,versions", help="comma list of " + ",".join(CASES))
    ap.add_argument("--runs", type=int, default=3, help="runs per revision and case (default 3)")
    ap.add_argument("--order", choices=["abba", "abab"], default="abba",
                    help="abba (default): the revision that goes first alternates per run, so "
                    "position effects cancel over an even --runs; abab: old first in every run")
    ap.add_argument("--json-out", type=Path, help="write every measurement and the summary here")
    ap.add_argument("--min-ratio", type=float, default=0.95, help="new/old threshold (0.95)")
    ap.add_argument("--quiet-wait", type=float, default=60.0,
                    help="longest wait for a quiet machine before each run, s (60)")
    ap.add_argument("--max-other-cores", type=float, default=0.25,
                    help="redo a run during which other processes used more cores than this")
    ap.add_argument("--retries", type=int, default=2,
                    help="how often a run hit by other load is redone (2); the last one counts")
    ap.add_argument("--cleanup", choices=["end", "case", "each"], default="end",
                    help="when homes and restores are deleted (default: after all measurements)")
    ap.add_argument("--pause", type=float, default=120.0,
                    help="pause after deleting a case with --cleanup case, s (120)")
    ap.add_argument("--keep", action="store_true", help="keep homes and restores at the end")
    ap.add_argument("--rebuild", action="store_true", help="rebuild the venvs even if present")
    ap.add_argument("--python", default=sys.executable, help="interpreter for the venvs")
    ap.add_argument("--repo", type=Path, default=Path(__file__).resolve().parents[1],
                    help="git repository holding the revisions (default: this script's)")
    ap.add_argument("--timeout", type=float, default=1800.0, help="per-command timeout, s")
    args = ap.parse_args(argv)
    if len(args.rev) != 2:
        ap.error("give exactly two revisions: --rev OLD --rev NEW")
    if args.runs < 1:
        ap.error("--runs must be >= 1")
    args.cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    bad = [c for c in args.cases if c not in CASES]
    if bad:
        ap.error(f"unknown case(s) {bad}; choose from {', '.join(CASES)}")
    args.corpus, args.work = args.corpus.resolve(), args.work.resolve()
    return args


def check_space(args: argparse.Namespace, cases: list[Case]) -> None:
    """Enough free space for the homes and restores that stay until the cleanup."""
    per_unit = {c.name: c.put_bytes + c.restore_bytes for c in cases}
    if args.cleanup == "each":
        need = max(per_unit.values())
    elif args.cleanup == "case":
        need = max(per_unit.values()) * 2 * args.runs
    else:
        need = sum(per_unit.values()) * 2 * args.runs
    free = shutil.disk_usage(args.work).free
    if free < need + 2e9:
        raise SetupError(f"need about {need / 1e9:.1f} GB free in {args.work} (+2 GB margin), "
                         f"have {free / 1e9:.1f} GB; use --cleanup case or fewer --runs")


def main(argv: list[str] | None = None) -> int:
    """Set up both revisions, run every case, print the report."""
    args = parse_args(argv)
    t_start = time.monotonic()
    load_before = loadavg()
    try:
        args.work.mkdir(parents=True, exist_ok=True)
        if os.stat(args.corpus).st_dev != os.stat(args.work).st_dev:
            log("warning: corpus and work dir are on different filesystems")
        sentinel = args.work / "xdg-sentinel"
        sentinel.mkdir(exist_ok=True)
        revs = []
        for i, spec in enumerate(args.rev):
            sha, subject = resolve_rev(args.repo, spec)
            rev = Rev(i, spec, sha, subject, args.work / "revs" / f"{i}-{sha[:12]}")
            rev.label = f"{'old' if i == 0 else 'new'} {spec}"
            revs.append(rev)
        log("setting up the revisions")
        for rev in revs:
            rev.root.mkdir(parents=True, exist_ok=True)
            install_rev(args.repo, rev, args.python, args.rebuild)
            check_cli(rev, args.work, sentinel)
            log(f"  {rev.label}: {rev.sha[:12]} ok ({rev.package_dir})")
        log("reading the corpora")
        cases = [make_case(name, args.corpus) for name in args.cases]
        check_space(args, cases)
        if (args.work / "runs").exists():
            n = remove(args.work / "runs")
            log(f"deleted {n} files left by an earlier run; pausing {args.pause:.0f}s")
            time.sleep(args.pause)
    except (SetupError, subprocess.TimeoutExpired) as exc:
        log(f"compare_revs: error: {exc}")
        return 2
    ms: list[Measurement] = []
    units: list[dict] = []
    for case in cases:
        log(f"[{case.name}] {args.runs} run(s) x 2 revisions")
        run_case(case, revs, args, sentinel, ms, units)
    load_after = loadavg()
    if not args.keep:
        remove(args.work / "runs")
    rows = summarize(cases, ms, args.min_ratio)
    gets = [m for m in ms if m.op == "get"]
    other = [m.other_cpu_s / m.wall_s for m in ms if m.wall_s > 0]
    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{os.cpu_count()} CPUs, Python {platform.python_version()}, "
                   f"{platform.release()}",
        "total_s": time.monotonic() - t_start,
        "loadavg_before": load_before, "loadavg_after": load_after,
        "other_cpu_median": statistics.median(other) if other else 0.0,
        "other_cpu_max": max(other) if other else 0.0,
        "quiet_waited_s": sum(u["quiet_waited_s"] for u in units),
        "redone": sum(1 for u in units if u.get("discarded")),
        "identical": sum(1 for m in gets if m.identical), "restores": len(gets),
        "failed": sum(1 for m in ms if m.rc != 0),
    }
    report = markdown(revs, cases, rows, meta, args)
    print(report, end="")
    if args.json_out:
        doc = {"meta": meta, "args": {k: str(v) for k, v in vars(args).items()},
               "revs": [{"index": r.index, "spec": r.spec, "sha": r.sha, "subject": r.subject,
                         "entry_point": r.package_dir} for r in revs],
               "cases": [{k: v for k, v in asdict(c).items() if k != "want"} for c in cases],
               "summary": rows, "units": units, "measurements": [asdict(m) for m in ms]}
        args.json_out.write_text(json.dumps(doc, indent=1) + "\n")
    ok = meta["failed"] == 0 and meta["identical"] == meta["restores"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
