"""Tool adapters: how Mosaic, restic and borg init, ingest and restore."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

from .common import BenchError
from .context import Context, mosaic_env
from .corpora import Corpus, Step
from .measure import Timed, run_untimed

HASH_LINE = re.compile(r"^(?:[A-Za-z0-9_-]+:)?([0-9a-f]{64})\s+(.+?)\s*$")


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


def check_mosaic(ctx: Context) -> None:
    """Fail early, with a clear message, if the Mosaic CLI cannot run."""
    env = mosaic_env(ctx)
    hint = ("Install the checkout (pip install -e /work/main), pass --mosaic-bin "
            "'python -m mosaic', or use --no-mosaic to measure the peers only.")
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


TOOLS: dict[str, type[Tool]] = {"mosaic": Mosaic, "restic": Restic, "borg": Borg}
