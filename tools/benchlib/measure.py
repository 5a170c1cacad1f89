"""Timed commands: run under GNU ``/usr/bin/time -v``, parse its output, time the flush."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from .common import BenchError
from .machine import busy_seconds, meminfo_kb

TIME_BIN = "/usr/bin/time"


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


def sync() -> None:
    """Flush dirty pages (untimed unless the caller times it)."""
    subprocess.run(["sync"], check=True)


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
