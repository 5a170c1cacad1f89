"""The machine: CPU load, quiet-machine waits, page-cache warming, report-header facts."""

from __future__ import annotations

import os
import platform
import re
import subprocess
import time
import tomllib
from collections.abc import Iterable
from pathlib import Path

from .common import QUIET_CORES, REPO_ROOT, log
from .context import Context, mosaic_env
from .fsutil import walk_files

CLK_TCK = os.sysconf("SC_CLK_TCK")


# ------------------------------------------------------------------ load


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


def warm(paths: Iterable[Path]) -> None:
    """Read every file once so that the tools read inputs from the page cache."""
    for path in paths:
        for f in walk_files(path):
            if f.is_symlink():
                continue
            with open(f, "rb", buffering=0) as fh:
                while fh.read(1 << 20):
                    pass


# ---------------------------------------------------------- header facts


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
