"""Settings and environments shared by the tool adapters."""

from __future__ import annotations

import argparse
import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from .common import REPO_ROOT

PASSWORD = "mosaic-bench-password"


@dataclass
class Context:
    """Settings shared by every tool adapter."""

    work: Path
    env: dict[str, str]
    timeout_s: float
    mosaic_cmd: list[str]
    mosaic_passphrase: str | None
    hashes: dict[str, dict[str, str]] = field(default_factory=dict)  # corpus -> rel -> hex


def make_context(args: argparse.Namespace) -> Context:
    """Environment and settings shared by the tool adapters."""
    env = dict(os.environ, RESTIC_PASSWORD=PASSWORD, BORG_PASSPHRASE=PASSWORD, LC_ALL="C",
               BORG_BASE_DIR=str(args.work / "cache" / "borg"),
               RESTIC_CACHE_DIR=str(args.work / "cache" / "restic"))
    env.pop("MOSAIC_PASSPHRASE", None)
    return Context(work=args.work, env=env, timeout_s=args.timeout,
                   mosaic_cmd=shlex.split(args.mosaic_bin),
                   mosaic_passphrase=args.mosaic_passphrase)


def mosaic_env(ctx: Context) -> dict[str, str]:
    """Environment for Mosaic: the checkout first on PYTHONPATH (for ``python -m mosaic``)."""
    env = dict(ctx.env)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    if ctx.mosaic_passphrase is not None:
        env["MOSAIC_PASSPHRASE"] = ctx.mosaic_passphrase
    return env
