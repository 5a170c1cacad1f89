#!/usr/bin/env python3
"""Benchmark Mosaic against restic and borg on the make-corpus.sh corpora.

Usage::

    python tools/bench.py --corpus /work/bench-corpus --work /work/bench-work \\
        [--corpora versions,big,small] [--runs N] [--peers restic,borg] \\
        [--json OUT.json] [--markdown OUT.md] [--mosaic-bin mosaic] [--quick]

Method (the same as ../shared/bench/peer-bench.md, so figures are comparable):

* Every measured command runs under GNU ``/usr/bin/time -v`` (user/sys CPU,
  peak RSS); wall time is a monotonic clock around it. An untimed ``sync``
  runs before every measured command; the ``sync`` after it is timed
  separately as ``flush_s`` (data the tool left dirty in the page cache).
* Before each (tool, run) the corpus is read once into the page cache and the
  harness waits (bounded) until the rest of the machine uses < 0.25 cores over
  2 s. Every measurement records "other CPU": system-wide busy CPU seconds
  during the command minus the command's own user+sys.
* Each run uses fresh repositories; runs take turns between tools (the order
  rotates per run). Nothing is deleted while measuring: the root filesystem
  is ext4 without a journal, where creating files soon after mass deletes is
  slow. Everything is deleted after each corpus, followed by a pause.
* Every restore is compared with the original (``diff -r`` / ``cmp``). For
  Mosaic, every hash printed by ``put`` is compared with the file's BLAKE3.
* Peak RSS is GNU time's "Maximum resident set size": the largest single
  process of the command's tree, not a sum over processes.
* MB = 10^6 bytes, MiB = 2^20 bytes. Throughput = input bytes / wall seconds.
  Stored bytes = sum of apparent file sizes under the repository directory
  (for Mosaic: the whole node home). Tables give the median [min–max].

Raw measurements are appended to WORK/measurements.jsonl as they happen.
Exit status: 0 if every command succeeded and every check passed, else 1
(2 for usage errors such as a missing Mosaic CLI).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

PASSWORD = "mosaic-bench-password"
TIME_BIN = "/usr/bin/time"
QUIET_CORES = 0.25
QUICK_BIG_BYTES = 64 << 20
QUICK_INSERT_BYTES = 1 << 20  # b.bin has 1 MiB inserted near the start
MANY_DELETED_FILES = 1000
MB = 1e6
REPO_ROOT = Path(__file__).resolve().parents[1]
CLK_TCK = os.sysconf("SC_CLK_TCK")
HASH_LINE = re.compile(r"^(?:[A-Za-z0-9_-]+:)?([0-9a-f]{64})\s+(.+?)\s*$")


class BenchError(Exception):
    """A command failed or the setup is unusable; the message says why."""


# ------------------------------------------------------------------ corpora


@dataclass(frozen=True)
class Step:
    """One ingest: snapshot name and path relative to the corpus root."""

    name: str
    rel: str


@dataclass
class Corpus:
    """A corpus: root directory (the cwd of every ingest), ingests, restores."""

    name: str
    root: Path
    steps: list[Step]
    restores: list[str]

    def step(self, name: str) -> Step:
        """Return the step called ``name``."""
        return next(s for s in self.steps if s.name == name)

    def path(self, step: Step) -> Path:
        """Absolute path of a step's input."""
        return self.root / step.rel


def versions_corpus(root: Path, quick: bool) -> Corpus:
    """versions/v1..v6 (quick: v1..v2) into one repository; restore the last."""
    count = 2 if quick else 6
    steps = [Step(f"v{i}", f"versions/v{i}") for i in range(1, count + 1)]
    return Corpus("versions", root, steps, [steps[-1].name])


def big_corpus(root: Path, quick: bool, work: Path) -> Corpus:
    """big/a.bin then big/b.bin (quick: 64 MiB slices); restore b then a."""
    if quick:
        root = make_quick_big(root, work / "quick-corpus")
    steps = [Step("a", "big/a.bin"), Step("b", "big/b.bin")]
    return Corpus("big", root, steps, ["b", "a"])


def small_corpus(root: Path, quick: bool) -> Corpus:
    """small/ (the CPython stdlib; quick: small/idlelib) as one ingest."""
    rel = "small/idlelib" if quick and (root / "small/idlelib").is_dir() else "small"
    return Corpus("small", root, [Step("small", rel)], ["small"])


def make_quick_big(src_root: Path, dst_root: Path) -> Path:
    """Write 64 MiB prefixes of a.bin and b.bin (b: + the 1 MiB insert)."""
    sizes = {"a.bin": QUICK_BIG_BYTES, "b.bin": QUICK_BIG_BYTES + QUICK_INSERT_BYTES}
    (dst_root / "big").mkdir(parents=True, exist_ok=True)
    for name, size in sizes.items():
        dst = dst_root / "big" / name
        if dst.exists() and dst.stat().st_size == size:
            continue
        with open(src_root / "big" / name, "rb") as fin, open(dst, "wb") as fout:
            fout.write(fin.read(size))
    return dst_root


def build_corpora(names: list[str], root: Path, work: Path, quick: bool) -> list[Corpus]:
    """Build the selected corpora and check that their inputs exist."""
    makers: dict[str, Callable[[], Corpus]] = {
        "versions": lambda: versions_corpus(root, quick),
        "big": lambda: big_corpus(root, quick, work),
        "small": lambda: small_corpus(root, quick),
    }
    corpora = []
    for name in names:
        if name not in makers:
            raise BenchError(f"unknown corpus {name!r} (choose from {', '.join(makers)})")
        missing = [rel for rel in required_inputs(name, quick) if not (root / rel).exists()]
        if missing:
            raise BenchError(f"corpus {name}: missing {', '.join(missing)} under {root}")
        corpora.append(makers[name]())
    return corpora


def required_inputs(name: str, quick: bool) -> list[str]:
    """Source paths (relative to the corpus root) a corpus needs."""
    return {
        "versions": [f"versions/v{i}" for i in range(1, 3 if quick else 7)],
        "big": ["big/a.bin", "big/b.bin"],
        "small": ["small"],
    }[name]


# ------------------------------------------------------------- filesystem


def walk_files(path: Path) -> Iterable[Path]:
    """Yield the regular files (and symlinks) at or below ``path``."""
    if not path.is_dir():
        yield path
        return
    for d, _, files in os.walk(path):
        for f in files:
            yield Path(d) / f


def apparent_bytes(path: Path) -> int:
    """Sum of apparent file sizes (lstat) at or below ``path``."""
    return sum(os.lstat(p).st_size for p in walk_files(path))


def file_count(path: Path) -> int:
    """Number of files at or below ``path``."""
    return sum(1 for _ in walk_files(path))


def du_bytes(path: Path) -> int:
    """Allocated bytes (``du -s --block-size=1``), directories included."""
    out = subprocess.run(["du", "-s", "--block-size=1", str(path)],
                         capture_output=True, text=True, check=True)
    return int(out.stdout.split()[0])


def warm(paths: Iterable[Path]) -> None:
    """Read every file once so that the tools read inputs from the page cache."""
    for path in paths:
        for f in walk_files(path):
            if f.is_symlink():
                continue
            with open(f, "rb", buffering=0) as fh:
                while fh.read(1 << 20):
                    pass


def blake3_hex(path: Path) -> str:
    """BLAKE3 of a file, hex."""
    import blake3  # only needed when Mosaic is measured

    hasher = blake3.blake3(max_threads=blake3.blake3.AUTO)
    if path.stat().st_size:
        hasher.update_mmap(str(path))
    return hasher.hexdigest()


def expected_hashes(corpus: Corpus) -> dict[str, str]:
    """BLAKE3 of every input file, keyed by path relative to the corpus root."""
    out: dict[str, str] = {}
    for step in corpus.steps:
        for f in walk_files(corpus.path(step)):
            out[f.relative_to(corpus.root).as_posix()] = blake3_hex(f)
    return out


def remove_tree(path: Path) -> int:
    """Delete ``path`` if it exists; return how many files it held."""
    if not path.exists():
        return 0
    count = file_count(path)
    shutil.rmtree(path)
    return count


def verify(restored: Path, original: Path) -> tuple[bool, str]:
    """Compare a restored file or tree with the original, byte for byte."""
    if not restored.exists():
        return False, f"restore target {restored} does not exist"
    if original.is_file():
        p = subprocess.run(["cmp", str(restored), str(original)], capture_output=True, text=True)
    else:
        p = subprocess.run(["diff", "-r", "--no-dereference", "-q", str(restored), str(original)],
                           capture_output=True, text=True)
    return p.returncode == 0, (p.stdout + p.stderr)[:2000]


# ------------------------------------------------------- machine & timing


def busy_seconds() -> float:
    """System-wide busy CPU seconds so far (idle and iowait excluded)."""
    with open("/proc/stat") as fh:
        fields = [int(x) for x in fh.readline().split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


def meminfo_kb(key: str) -> int:
    """One /proc/meminfo value in kB."""
    with open("/proc/meminfo") as fh:
        for line in fh:
            name, value = line.split(":", 1)
            if name == key:
                return int(value.split()[0])
    return 0


def wait_for_quiet(max_wait_s: float) -> tuple[float, float]:
    """Wait until other load is < QUIET_CORES over 2 s; return (waited s, load)."""
    waited = 0.0
    while True:
        b0 = busy_seconds()
        time.sleep(2.0)
        load = (busy_seconds() - b0) / 2.0
        if load < QUIET_CORES or waited >= max_wait_s:
            return waited, load
        if not waited:
            log(f"  waiting for a quiet machine (busy {load:.2f} cores)")
        time.sleep(3.0)
        waited += 5.0


def sync() -> None:
    """Flush dirty pages (untimed unless the caller times it)."""
    subprocess.run(["sync"], check=True)


@dataclass
class Timed:
    """Result of one command run under GNU time."""

    wall_s: float
    user_s: float
    sys_s: float
    maxrss_kb: int
    flush_s: float
    other_cpu_s: float
    mem_available_kb: int
    started_utc: str
    returncode: int
    stdout: str
    stderr: str


def parse_time_v(text: str) -> tuple[float, float, int]:
    """(user s, sys s, max RSS kB) from ``time -v`` output."""
    def grab(key: str) -> str:
        m = re.search(re.escape(key) + r":\s*([0-9.]+)", text)
        return m.group(1) if m else "0"

    return (float(grab("User time (seconds)")), float(grab("System time (seconds)")),
            int(grab("Maximum resident set size (kbytes)")))


def run_process(cmd: list[str], cwd: Path, env: dict[str, str],
                timeout_s: float) -> subprocess.CompletedProcess[str]:
    """Run a command in its own process group; kill the whole group on timeout."""
    with subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, start_new_session=True) as proc:
        try:
            out, err = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            err += f"\n[bench] killed after {timeout_s:.0f} s timeout"
            return subprocess.CompletedProcess(cmd, -9, out, err)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def run_timed(cmd: list[str], cwd: Path, env: dict[str, str], time_file: Path,
              timeout_s: float) -> Timed:
    """sync; run ``cmd`` under ``time -v``; time the sync after it separately."""
    sync()
    mem = meminfo_kb("MemAvailable")
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    b0 = busy_seconds()
    t0 = time.monotonic()
    proc = run_process([TIME_BIN, "-v", "-o", str(time_file), *cmd], cwd, env, timeout_s)
    wall = time.monotonic() - t0
    busy = busy_seconds() - b0
    t1 = time.monotonic()
    sync()
    flush = time.monotonic() - t1
    user, sys_s, rss = parse_time_v(time_file.read_text() if time_file.exists() else "")
    return Timed(wall, user, sys_s, rss, flush, round(busy - user - sys_s, 3), mem, started,
                 proc.returncode, proc.stdout, proc.stderr)


def run_untimed(cmd: list[str], cwd: Path, env: dict[str, str], timeout_s: float = 600) -> str:
    """Run a set-up command; raise BenchError with its output if it fails."""
    try:
        proc = run_process(cmd, cwd, env, timeout_s)
    except FileNotFoundError as exc:
        raise BenchError(f"cannot run {shlex.join(cmd)}: {exc}") from exc
    if proc.returncode != 0:
        raise BenchError(f"{shlex.join(cmd)} failed (rc={proc.returncode}):\n"
                         f"{(proc.stdout + proc.stderr)[-3000:]}")
    return proc.stdout


def log(msg: str) -> None:
    """Progress output (stderr, flushed)."""
    print(msg, file=sys.stderr, flush=True)


def loud(msg: str) -> None:
    """A failure that must not be overlooked."""
    bar = "!" * 72
    log(f"{bar}\n!!! {msg}\n{bar}")


# -------------------------------------------------------------------- tools


@dataclass
class Context:
    """Settings shared by every tool adapter."""

    work: Path
    env: dict[str, str]
    timeout_s: float
    mosaic_cmd: list[str]
    mosaic_passphrase: str | None
    hashes: dict[str, dict[str, str]] = field(default_factory=dict)  # corpus -> rel -> hex


class Tool:
    """Adapter for one storage tool: how to init, ingest and restore."""

    name = "tool"

    def __init__(self, ctx: Context, corpus: Corpus, repo: Path) -> None:
        self.ctx = ctx
        self.corpus = corpus
        self.repo = repo

    def env(self) -> dict[str, str]:
        """Environment for this tool's commands."""
        return self.ctx.env

    def init(self) -> None:
        """Create the repository (untimed)."""
        raise NotImplementedError

    def ingest_cmd(self, step: Step) -> list[str]:
        """Command that stores ``step`` (run with cwd = corpus root)."""
        raise NotImplementedError

    def after_ingest(self, step: Step, timed: Timed) -> dict[str, Any]:
        """Parse the ingest output; return extra fields for the measurement."""
        return {}

    def restore_cmd(self, step: Step, target: Path) -> tuple[list[str], Path, Path]:
        """(command, cwd, path of the restored copy of ``step``)."""
        raise NotImplementedError

    def store_dir(self) -> Path:
        """Directory whose size is the stored size."""
        return self.repo


class Restic(Tool):
    """restic, default configuration (compression auto, local cache on)."""

    name = "restic"

    def __init__(self, ctx: Context, corpus: Corpus, repo: Path) -> None:
        super().__init__(ctx, corpus, repo)
        self.snapshots: dict[str, str] = {}

    def init(self) -> None:
        run_untimed(["restic", "init", "--repo", str(self.repo)], self.corpus.root, self.env())

    def ingest_cmd(self, step: Step) -> list[str]:
        return ["restic", "--repo", str(self.repo), "backup", step.rel]

    def after_ingest(self, step: Step, timed: Timed) -> dict[str, Any]:
        m = re.search(r"snapshot ([0-9a-f]+) saved", timed.stdout)
        if not m:
            raise BenchError(f"restic: no snapshot id in output:\n{timed.stdout[-2000:]}")
        self.snapshots[step.name] = m.group(1)
        added = re.search(r"Added to the repository: (.*)", timed.stdout)
        return {"reported": added.group(1).strip() if added else ""}

    def restore_cmd(self, step: Step, target: Path) -> tuple[list[str], Path, Path]:
        cmd = ["restic", "--repo", str(self.repo), "restore", self.snapshots[step.name],
               "--target", str(target)]
        return cmd, self.corpus.root, target / step.rel


class Borg(Tool):
    """borg 1.x, ``-e repokey-blake2``, ``-C zstd,3``."""

    name = "borg"

    def init(self) -> None:
        run_untimed(["borg", "init", "-e", "repokey-blake2", str(self.repo)],
                    self.corpus.root, self.env())

    def ingest_cmd(self, step: Step) -> list[str]:
        return ["borg", "create", "--stats", "-C", "zstd,3", f"{self.repo}::{step.name}", step.rel]

    def after_ingest(self, step: Step, timed: Timed) -> dict[str, Any]:
        m = re.search(r"This archive:\s+(.*)", timed.stdout + timed.stderr)
        parts = re.split(r"\s{2,}", m.group(1).strip()) if m else []
        return {"reported": "orig/compr/dedup " + " / ".join(parts) if parts else ""}

    def restore_cmd(self, step: Step, target: Path) -> tuple[list[str], Path, Path]:
        target.mkdir(parents=True, exist_ok=True)
        return ["borg", "extract", f"{self.repo}::{step.name}"], target, target / step.rel


class Mosaic(Tool):
    """The Mosaic CLI: ``put``/``put -r`` and ``get``/``get -r`` on a node home."""

    name = "mosaic"

    def __init__(self, ctx: Context, corpus: Corpus, repo: Path) -> None:
        super().__init__(ctx, corpus, repo)
        self.printed: dict[str, str] = {}  # name -> hash printed by put

    def env(self) -> dict[str, str]:
        return mosaic_env(self.ctx)

    def base(self) -> list[str]:
        """The CLI with the node home selected."""
        return [*self.ctx.mosaic_cmd, "--home", str(self.repo)]

    def init(self) -> None:
        extra = [] if self.ctx.mosaic_passphrase is not None else ["--no-passphrase"]
        run_untimed([*self.base(), "init", *extra], self.corpus.root, self.env())

    def ingest_cmd(self, step: Step) -> list[str]:
        recursive = ["-r"] if self.corpus.path(step).is_dir() else []
        return [*self.base(), "put", *recursive, step.rel]

    def after_ingest(self, step: Step, timed: Timed) -> dict[str, Any]:
        printed = parse_put_output(timed.stdout)
        self.printed.update(printed)
        expected = {k: v for k, v in self.ctx.hashes.get(self.corpus.name, {}).items()
                    if k == step.rel or k.startswith(step.rel.rstrip("/") + "/")}
        return check_hashes(printed, expected)

    def restore_cmd(self, step: Step, target: Path) -> tuple[list[str], Path, Path]:
        target.mkdir(parents=True, exist_ok=True)
        if self.corpus.path(step).is_dir():
            dest = target / Path(step.rel).name
            return [*self.base(), "get", "-r", step.rel, str(dest)], self.corpus.root, dest
        dest = target / Path(step.rel).name
        key = self.printed.get(step.rel, step.rel)
        return [*self.base(), "get", key, str(dest)], self.corpus.root, dest


def mosaic_env(ctx: Context) -> dict[str, str]:
    """Environment for Mosaic: the checkout first on PYTHONPATH (for ``python -m node.cli``)."""
    env = dict(ctx.env)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    if ctx.mosaic_passphrase is not None:
        env["MOSAIC_PASSPHRASE"] = ctx.mosaic_passphrase
    return env


def parse_put_output(stdout: str) -> dict[str, str]:
    """``HASH  NAME`` lines (b3sum style; an ``algo:`` prefix is allowed) -> {name: hash}."""
    out: dict[str, str] = {}
    for line in stdout.splitlines():
        m = HASH_LINE.match(line.strip())
        if m:
            name = m.group(2)
            out[name[2:] if name.startswith("./") else name] = m.group(1)
    return out


def check_hashes(printed: dict[str, str], expected: dict[str, str]) -> dict[str, Any]:
    """Compare put's printed hashes with the BLAKE3 of every input file."""
    if not expected:
        return {}
    missing = sorted(set(expected) - set(printed))
    wrong = sorted(k for k in expected if k in printed and printed[k] != expected[k])
    return {"hash_expected": len(expected), "hash_ok": len(expected) - len(missing) - len(wrong),
            "hash_missing": missing[:10], "hash_wrong": wrong[:10],
            "hash_missing_count": len(missing), "hash_wrong_count": len(wrong)}


TOOLS: dict[str, type[Tool]] = {"mosaic": Mosaic, "restic": Restic, "borg": Borg}


# -------------------------------------------------------------- measuring


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


def measure(tool: Tool, cmd: list[str], cwd: Path, m: Measurement, time_file: Path) -> Timed:
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
        timed = measure(tool, tool.ingest_cmd(step), tool.corpus.root, m, tool.ctx.work / "time.out")
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
        measure(tool, cmd, cwd, m, tool.ctx.work / "time.out")
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


# -------------------------------------------------------------- summaries


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


def per_run_max(ms: list[Measurement]) -> list[float]:
    """Per run: highest peak RSS (MiB) of its measurements."""
    runs: dict[int, float] = {}
    for m in ms:
        runs[m.run] = max(runs.get(m.run, 0.0), m.maxrss_kb / 1024)
    return list(runs.values())


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


# --------------------------------------------------------------- markdown


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


# ---------------------------------------------------------------- machine


def command_version(cmd: list[str], env: dict[str, str] | None = None) -> str:
    """First output line of a version command, or 'unavailable'."""
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return "unavailable"
    text = (p.stdout or p.stderr).strip()
    return text.splitlines()[0] if p.returncode == 0 and text else "unavailable"


def dpkg_version(package: str) -> str:
    """Installed Debian package version, or ''."""
    v = command_version(["dpkg-query", "-W", "-f=${Version}", package])
    return "" if v == "unavailable" else v


def mosaic_version(ctx: Context) -> str:
    """Mosaic CLI version plus the checkout's state."""
    env = mosaic_env(ctx)
    cli = command_version([*ctx.mosaic_cmd, "--version"], env)
    try:
        with open(REPO_ROOT / "pyproject.toml", "rb") as fh:
            pkg = tomllib.load(fh)["project"]["version"]
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        pkg = "?"
    rev = command_version(["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"])
    dirty = subprocess.run(["git", "-C", str(REPO_ROOT), "status", "--porcelain"],
                           capture_output=True, text=True).stdout.strip()
    state = (rev if rev != "unavailable" else "no commit") + (" + uncommitted changes" if dirty else "")
    return f"{cli if cli != 'unavailable' else 'mosaic-store ' + pkg} (checkout: {state})"


def cpu_model() -> str:
    """CPU model name from /proc/cpuinfo."""
    with open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def os_name() -> str:
    """PRETTY_NAME from /etc/os-release."""
    try:
        text = Path("/etc/os-release").read_text()
    except OSError:
        return platform.system()
    m = re.search(r'^PRETTY_NAME="?([^"\n]*)', text, re.M)
    return m.group(1) if m else platform.system()


def machine_info(ctx: Context, tools: list[str], corpus_root: Path) -> dict[str, str]:
    """Machine, OS and tool versions for the report header."""
    fs = " ".join(command_version(["findmnt", "-n", "-o", "FSTYPE,OPTIONS", "-T", str(ctx.work)])
                  .split())
    corpus_fs = command_version(["findmnt", "-n", "-o", "SOURCE", "-T", str(corpus_root)])
    work_fs = command_version(["findmnt", "-n", "-o", "SOURCE", "-T", str(ctx.work)])
    info = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "CPU": f"{cpu_model()}, nproc {len(os.sched_getaffinity(0))}",
        "RAM": f"{meminfo_kb('MemTotal') / 1024 / 1024:.1f} GiB",
        "OS / kernel": f"{os_name()} / {platform.release()}",
        "Python": platform.python_version(),
        "filesystem (work dir)": fs + ("" if corpus_fs == work_fs else " — corpus on another fs!"),
        "GNU time": dpkg_version("time") or "unknown",
    }
    if "mosaic" in tools:
        info["mosaic"] = mosaic_version(ctx)
    if "restic" in tools:
        info["restic"] = f"{command_version(['restic', 'version'])} (deb {dpkg_version('restic')})"
    if "borg" in tools:
        info["borg"] = f"{command_version(['borg', '--version'])} (deb {dpkg_version('borgbackup')})"
    return info


# -------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", required=True, type=Path, help="make-corpus.sh output dir")
    ap.add_argument("--work", required=True, type=Path,
                    help="scratch dir for repositories and restores (same filesystem as corpus)")
    ap.add_argument("--corpora", default="versions,big,small")
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--peers", default="restic,borg", help="comma list; '' for none")
    ap.add_argument("--no-mosaic", action="store_true", help="measure the peers only")
    ap.add_argument("--mosaic-bin", default="mosaic",
                    help="Mosaic command, split like a shell would: 'python -m node.cli'")
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


def check_mosaic(ctx: Context) -> None:
    """Fail early, with a clear message, if the Mosaic CLI cannot run."""
    env = mosaic_env(ctx)
    hint = ("Install the checkout (pip install -e /work/main), pass --mosaic-bin "
            "'python -m node.cli', or use --no-mosaic to measure the peers only.")
    try:
        p = subprocess.run([*ctx.mosaic_cmd, "--help"], capture_output=True, text=True,
                           env=env, timeout=120)
    except FileNotFoundError:
        raise BenchError(f"Mosaic CLI not found: {shlex.join(ctx.mosaic_cmd)!r}. {hint}") from None
    except subprocess.TimeoutExpired:
        raise BenchError(f"Mosaic CLI hangs on --help: {shlex.join(ctx.mosaic_cmd)}") from None
    if p.returncode != 0:
        raise BenchError(f"Mosaic CLI does not run ({shlex.join(ctx.mosaic_cmd)} --help, "
                         f"rc={p.returncode}):\n{(p.stdout + p.stderr)[-1500:]}\n{hint}")


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


def make_context(args: argparse.Namespace) -> Context:
    """Environment and settings shared by the tool adapters."""
    env = dict(os.environ, RESTIC_PASSWORD=PASSWORD, BORG_PASSPHRASE=PASSWORD, LC_ALL="C",
               BORG_BASE_DIR=str(args.work / "cache" / "borg"),
               RESTIC_CACHE_DIR=str(args.work / "cache" / "restic"))
    env.pop("MOSAIC_PASSPHRASE", None)
    return Context(work=args.work, env=env, timeout_s=args.timeout,
                   mosaic_cmd=shlex.split(args.mosaic_bin),
                   mosaic_passphrase=args.mosaic_passphrase)


def write_outputs(args: argparse.Namespace, report: dict[str, Any], md: str) -> None:
    """--json and --markdown files."""
    if args.json:
        args.json.write_text(json.dumps(report, indent=1, default=to_jsonable) + "\n")
        log(f"wrote {args.json}")
    if args.markdown:
        args.markdown.write_text(md + "\n")
        log(f"wrote {args.markdown}")


def to_jsonable(obj: object) -> object:
    """JSON encoder fallback for dataclasses and paths."""
    if isinstance(obj, Stat | Measurement | RunInfo):
        return asdict(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(type(obj).__name__)


def failed(rec: Recorder) -> bool:
    """True if any command failed or any check did not pass."""
    return (any(r.error for r in rec.runs)
            or any(m.phase == "restore" and not m.identical for m in rec.measurements)
            or any(m.hash_ok != m.hash_expected for m in rec.measurements))


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; return the exit status."""
    args = parse_args(argv)
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
    report = {"machine": machine, "settings": {k: str(v) for k, v in vars(args).items()},
              "corpora": {c.name: {"root": c.root, "steps": [asdict(s) for s in c.steps],
                                   "restores": c.restores} for c in corpora},
              "summaries": summaries, "ratios": ratios, "runs": rec.runs,
              "cache_bytes": rec.cache_sizes, "measurements": rec.measurements,
              "ok": not failed(rec)}
    print(md)
    write_outputs(args, report, md)
    if failed(rec):
        loud("SOME COMMANDS FAILED OR CHECKS DID NOT PASS (see Checks above)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
