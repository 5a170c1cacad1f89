#!/usr/bin/env python3
"""Benchmark `mosaic mount` against `restic mount` and `borg mount` on the same data.

Usage::

    python tools/bench_mount.py [--corpus /work/bench-corpus] [--work /work/bench-work/mount]
        [--runs 3] [--big big/a.bin] [--small small] [--peers restic,borg]
        [--mosaic-bin "python -m mosaic"] [--baseline "CMD"] [--json OUT.json]

Needs ``restic`` and ``borg`` on PATH, and fuse3. ``borg mount`` needs Debian's
``python3-pyfuse3`` (apt), installed for the system Python that runs borg: Debian's
borg does not see a pyfuse3 installed with pip in a virtual environment.

Set-up (untimed): one Mosaic node, one restic repository and one borg repository, each
holding the small corpus (~7.7k files) and the 1 GiB file, stored from the same folder.

Measured, per run and per tool, each on a fresh mount (so the mount process starts cold;
the operating system's page cache is warm for every tool alike, since the repositories
were just written and are read again on every run):

* ``ls -lR`` of the small corpus through the mount (wall seconds);
* ``cat`` of the 1 GiB file through the mount to /dev/null (wall seconds, MB/s), checked
  once per tool against the original with ``cmp`` (untimed);
* the mount process's peak RSS (VmHWM from /proc) after the read, and its CPU seconds
  (user + system, from /proc) during `ls -lR` and during the read: on a loaded machine
  wall times swing with the load, CPU seconds much less;
* for Mosaic also ``mosaic get FILE -`` to /dev/null and ``mosaic get FILE DEST``;
* with ``--baseline CMD``, a second build of Mosaic's mount on the same node home, as
  tool ``mosaic-baseline`` (before/after comparisons in one run), e.g.
  ``--baseline "env PYTHONPATH=/tmp/old-tree python -m mosaic"``.

Every timed command runs under GNU ``time -v`` with a ``sync`` before it (tools/benchlib
measure.py); runs rotate the order of the tools; the table gives the median [min-max].
MB = 10^6 bytes. Exit status 0 if every command and check passed, else 1.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

if __package__:  # python -m tools.bench_mount
    from .benchlib.common import BenchError, log
    from .benchlib.machine import wait_for_quiet
    from .benchlib.measure import run_timed, run_untimed
else:  # python tools/bench_mount.py
    from benchlib.common import BenchError, log
    from benchlib.machine import wait_for_quiet
    from benchlib.measure import run_timed, run_untimed

PASSWORD = "mosaic-bench-password"
REPO_ROOT = Path(__file__).resolve().parent.parent
MOUNT_WAIT_S = 120.0


@dataclass
class Tool:
    """How one tool stores the data and mounts it."""

    name: str
    mount_cmd: Callable[[Path], list[str]]
    small_path: Callable[[Path], Path]   # mount point -> the small corpus inside the mount
    big_path: Callable[[Path], Path]     # mount point -> the 1 GiB file inside the mount


def env_for(work: Path) -> dict[str, str]:
    env = dict(os.environ, RESTIC_PASSWORD=PASSWORD, BORG_PASSPHRASE=PASSWORD, LC_ALL="C",
               BORG_BASE_DIR=str(work / "cache" / "borg"),
               RESTIC_CACHE_DIR=str(work / "cache" / "restic"))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    env.pop("MOSAIC_PASSPHRASE", None)
    return env


def set_up(args: argparse.Namespace, env: dict[str, str]) -> dict[str, Tool]:
    """Store the same data in every tool (untimed); return how to mount each."""
    corpus, work, mosaic = args.corpus, args.work, shlex.split(args.mosaic_bin)
    home, restic_repo, borg_repo = work / "mosaic-home", work / "restic-repo", work / "borg-repo"
    tools: dict[str, Tool] = {}
    if not home.exists():
        log("set-up: mosaic init + put")
        run_untimed([*mosaic, "--home", str(home), "init", "--no-passphrase", "-q"], corpus, env)
        run_untimed([*mosaic, "--home", str(home), "put", "-r", "-q", args.small], corpus, env, 3600)
        run_untimed([*mosaic, "--home", str(home), "put", "-q", args.big], corpus, env, 3600)
    tools["mosaic"] = Tool(
        "mosaic", lambda mp: [*mosaic, "--home", str(home), "mount", str(mp), "--foreground", "-q"],
        lambda mp: mp / args.small, lambda mp: mp / args.big)
    if args.baseline:
        base = shlex.split(args.baseline)
        tools["mosaic-baseline"] = Tool(
            "mosaic-baseline",
            lambda mp: [*base, "--home", str(home), "mount", str(mp), "--foreground", "-q"],
            lambda mp: mp / args.small, lambda mp: mp / args.big)
    if "restic" in args.peers:
        if not restic_repo.exists():
            log("set-up: restic init + backup")
            run_untimed(["restic", "--repo", str(restic_repo), "init"], corpus, env)
            run_untimed(["restic", "--repo", str(restic_repo), "backup", args.small, args.big],
                        corpus, env, 3600)
        tools["restic"] = Tool(
            "restic", lambda mp: ["restic", "--repo", str(restic_repo), "mount", str(mp)],
            lambda mp: restic_path(mp, corpus, args.small),
            lambda mp: restic_path(mp, corpus, args.big))
    if "borg" in args.peers:
        if not borg_repo.exists():
            log("set-up: borg init + create")
            run_untimed(["borg", "init", "-e", "repokey-blake2", str(borg_repo)], corpus, env)
            run_untimed(["borg", "create", "-C", "zstd,3", f"{borg_repo}::bench", args.small,
                         args.big], corpus, env, 3600)
        tools["borg"] = Tool(
            "borg", lambda mp: ["borg", "mount", "-f", f"{borg_repo}::bench", str(mp)],
            lambda mp: mp / args.small, lambda mp: mp / args.big)
    return tools


def restic_path(mp: Path, corpus: Path, rel: str) -> Path:
    """Where restic mount shows a backed-up path: relative (newer restic) or absolute."""
    latest = mp / "snapshots" / "latest"
    relative = latest / rel
    if relative.exists():
        return relative
    return latest / str(corpus.resolve()).lstrip("/") / rel


class Mounted:
    """A tool's mount process; stopped (and the mount point released) on exit."""

    def __init__(self, tool: Tool, mp: Path, env: dict[str, str]):
        self.tool, self.mp = tool, mp
        mp.mkdir(parents=True, exist_ok=True)
        self.log = open(mp.parent / f"{mp.name}.log", "ab")
        self.proc = subprocess.Popen(tool.mount_cmd(mp), env=env, stdin=subprocess.DEVNULL,
                                     stdout=self.log, stderr=self.log, start_new_session=True)
        end = time.monotonic() + MOUNT_WAIT_S
        while not (os.path.ismount(mp) and tool.small_path(mp).exists()):
            if self.proc.poll() is not None or time.monotonic() > end:
                self.stop()
                raise BenchError(f"{tool.name} mount did not come up (see {self.log.name})")
            time.sleep(0.1)

    def cpu_s(self) -> float:
        """CPU seconds (user + system) the mount process has used so far."""
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def peak_rss_kb(self) -> int:
        try:
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
        except OSError:
            pass
        return 0

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT if self.tool.name == "restic" else signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                pass
        if os.path.ismount(self.mp):
            subprocess.run(["fusermount3", "-u", "-z", str(self.mp)], capture_output=True)
            subprocess.run(["fusermount", "-u", "-z", str(self.mp)], capture_output=True)
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.log.close()

    def __enter__(self) -> Mounted:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def measure_tool(tool: Tool, args: argparse.Namespace, env: dict[str, str], run: int,
                 checked: set[str]) -> dict:
    """One fresh mount: ls -lR, then the big read; the mount's peak RSS."""
    mp = args.work / "mnt" / f"{tool.name}-{run}"
    tf = args.work / "time.txt"
    rec: dict = {"tool": tool.name, "run": run}
    wait_for_quiet(30)
    with Mounted(tool, mp, env) as m:
        cpu = m.cpu_s()
        t = run_timed(["sh", "-c", f"ls -lR {shlex.quote(str(tool.small_path(mp)))} >/dev/null"],
                      args.work, env, tf, 3600)
        used = m.cpu_s() - cpu
        rec.update(ls_s=t.wall_s, ls_rc=t.returncode, ls_mount_cpu_s=used,
                   ls_others_cpu_s=t.other_cpu_s - used)
        rec["rss_after_ls_kb"] = m.peak_rss_kb()
        big = tool.big_path(mp)
        cpu = m.cpu_s()
        t = run_timed(["sh", "-c", f"cat {shlex.quote(str(big))} >/dev/null"], args.work, env, tf,
                      3600)
        used = m.cpu_s() - cpu
        rec.update(read_s=t.wall_s, read_rc=t.returncode, peak_rss_kb=m.peak_rss_kb(),
                   read_mount_cpu_s=used, read_others_cpu_s=t.other_cpu_s - used)
        if tool.name not in checked:
            same = subprocess.run(["cmp", "-s", str(big), str(args.corpus / args.big)]).returncode
            rec["read_identical"] = same == 0
            checked.add(tool.name)
    return rec


def measure_get(args: argparse.Namespace, env: dict[str, str], run: int) -> dict:
    """`mosaic get` of the big file: to stdout (/dev/null) and to a file."""
    mosaic = shlex.split(args.mosaic_bin)
    home = args.work / "mosaic-home"
    tf = args.work / "time.txt"
    wait_for_quiet(30)
    base = shlex.join([*mosaic, "--home", str(home), "get", args.big])
    t = run_timed(["sh", "-c", f"{base} - >/dev/null"], args.work, env, tf, 3600)
    rec = {"tool": "mosaic-get", "run": run, "read_s": t.wall_s, "read_rc": t.returncode,
           "peak_rss_kb": t.maxrss_kb, "read_mount_cpu_s": t.user_s + t.sys_s,
           "read_others_cpu_s": t.other_cpu_s}
    dest = args.work / "get-out.bin"
    t = run_timed([*mosaic, "--home", str(home), "get", args.big, str(dest)], args.work, env, tf, 3600)
    rec.update(get_file_s=t.wall_s + t.flush_s, get_file_rc=t.returncode)
    dest.unlink(missing_ok=True)
    return rec


def median(xs: list[float]) -> str:
    return f"{statistics.median(xs):.2f} [{min(xs):.2f}-{max(xs):.2f}]"


def _med(records: list[dict], key: str) -> str:
    xs = [r[key] for r in records if key in r]
    return f"{statistics.median(xs):.2f}" if xs else "-"


def report(records: list[dict], big_bytes: int, files: int) -> str:
    """The markdown table and the ratios.

    CPU s: the mount process's user + system CPU while `ls -lR` and the read ran (for
    `mosaic get`, the command's own). Others' CPU s: what the rest of the machine used
    meanwhile (other processes' load; the reader `cat`/`ls` included)."""
    by: dict[str, list[dict]] = {}
    for r in records:
        by.setdefault(r["tool"], []).append(r)
    lines = [f"| tool | ls -lR of {files} files (s) | read 1 GiB (s) | MB/s | peak RSS (MiB) "
             "| CPU s: ls / read | others' CPU s: ls / read |",
             "|---|---|---|---|---|---|---|"]
    med: dict[str, dict[str, float]] = {}
    for tool, rs in by.items():
        ls = [r["ls_s"] for r in rs if "ls_s" in r]
        rd = [r["read_s"] for r in rs]
        rss = [r["peak_rss_kb"] / 1024 for r in rs]
        med[tool] = {"ls": statistics.median(ls) if ls else 0.0, "read": statistics.median(rd)}
        mbs = [big_bytes / 1e6 / x for x in rd]
        cpu = [_med(rs, "ls_mount_cpu_s"), _med(rs, "read_mount_cpu_s")]
        others = [_med(rs, "ls_others_cpu_s"), _med(rs, "read_others_cpu_s")]
        lines.append(f"| {tool} | {median(ls) if ls else '-'} | {median(rd)} | "
                     f"{statistics.median(mbs):.0f} | {statistics.median(rss):.0f} "
                     f"| {' / '.join(cpu)} | {' / '.join(others)} |")
    if "mosaic-get" in by:
        gf = [r["get_file_s"] for r in by["mosaic-get"]]
        lines.append(f"\n`mosaic get FILE DEST` (to a file, with its flush): {median(gf)} s")
    m = med.get("mosaic")
    if m:
        lines.append("")
        for peer in ("restic", "borg", "mosaic-baseline"):
            if peer in med and m["ls"]:
                lines.append(f"- ls -lR: mosaic mount is {med[peer]['ls'] / m['ls']:.1f}x faster "
                             f"than {peer} mount")
        for peer in ("restic", "borg", "mosaic-baseline"):
            if peer in med:
                lines.append(f"- 1 GiB read: mosaic mount {med[peer]['read'] / m['read']:.2f}x "
                             f"the speed of {peer} mount")
        if "mosaic-get" in med:
            lines.append(f"- 1 GiB read: mosaic mount {med['mosaic-get']['read'] / m['read']:.2f}x "
                         "the speed of `mosaic get FILE -`")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--corpus", type=Path, default=Path("/work/bench-corpus"))
    p.add_argument("--work", type=Path, default=Path("/work/bench-work/mount"))
    p.add_argument("--small", default="small")
    p.add_argument("--big", default="big/a.bin")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--peers", default="restic,borg")
    p.add_argument("--mosaic-bin", default=f"{sys.executable} -m mosaic")
    p.add_argument("--baseline", default="", metavar="CMD",
                   help="also measure the mount of this mosaic command (e.g. an older tree)")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    args.peers = [x for x in args.peers.split(",") if x]
    args.work.mkdir(parents=True, exist_ok=True)
    env = env_for(args.work)
    try:
        tools = set_up(args, env)
        records: list[dict] = []
        checked: set[str] = set()
        order = list(tools)
        for run in range(args.runs):
            turn = order[run % len(order):] + order[:run % len(order)]
            for name in turn:
                log(f"run {run + 1}/{args.runs}: {name}")
                records.append(measure_tool(tools[name], args, env, run, checked))
            records.append(measure_get(args, env, run))
    except BenchError as e:
        print(f"bench_mount: {e}", file=sys.stderr)
        return 1
    files = sum(len(f) for _, _, f in os.walk(args.corpus / args.small))
    text = report(records, (args.corpus / args.big).stat().st_size, files)
    print(text)
    if args.json:
        args.json.write_text(json.dumps({"records": records, "report": text}, indent=2))
    ok = all(r.get(k, 0) == 0 for r in records for k in ("ls_rc", "read_rc", "get_file_rc")) \
        and all(r.get("read_identical", True) for r in records)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
