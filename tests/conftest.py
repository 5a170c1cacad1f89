"""Shared fixtures: isolated node homes and a runner for the `mosaic` CLI.

Nothing here ever touches the user's real node: the whole session runs with
MOSAIC_HOME and XDG_DATA_HOME pointing into a temporary folder, and every CLI
call passes --home explicitly.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

PASSPHRASE = "correct horse battery staple (mosaic tests)"
SMALL_CHUNKS = ("--chunk-min", "1KiB", "--chunk-avg", "4KiB", "--chunk-max", "16KiB")
CLI_TIMEOUT = 120


@pytest.fixture(scope="session", autouse=True)
def _isolated_mosaic_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Point every default location at a temp folder and set the test passphrase."""
    base = tmp_path_factory.mktemp("mosaic-default-home")
    saved = {k: os.environ.get(k) for k in
             ("MOSAIC_HOME", "XDG_DATA_HOME", "MOSAIC_PASSPHRASE", "MOSAIC_KEY_FILE_PASSPHRASE")}
    os.environ["MOSAIC_HOME"] = str(base / "default-node")
    os.environ["XDG_DATA_HOME"] = str(base / "xdg")
    os.environ["MOSAIC_PASSPHRASE"] = PASSPHRASE
    os.environ.pop("MOSAIC_KEY_FILE_PASSPHRASE", None)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@dataclass
class Result:
    """What one CLI run did."""

    args: list[str]
    rc: int
    out: bytes
    err: str

    @property
    def text(self) -> str:
        return self.out.decode("utf-8", "replace")

    def json(self) -> object:
        return json.loads(self.out)

    def __str__(self) -> str:
        return (f"mosaic {' '.join(self.args)} -> rc={self.rc}\n"
                f"stdout: {self.text[:2000]}\nstderr: {self.err[-4000:]}")


def mosaic_env(**extra: str | None) -> dict[str, str]:
    """The environment for a CLI subprocess (test passphrase set, no real home)."""
    env = dict(os.environ)
    env["MOSAIC_PASSPHRASE"] = PASSPHRASE
    env.pop("MOSAIC_KEY_FILE_PASSPHRASE", None)
    for k, v in extra.items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    return env


def run_mosaic(args: Sequence[str | os.PathLike], *, input: bytes | None = None,
               env: dict[str, str] | None = None, cwd: str | os.PathLike | None = None,
               timeout: float = CLI_TIMEOUT, preexec_fn=None) -> Result:  # noqa: ANN001
    """Run `python -m mosaic ARGS` and capture everything."""
    argv = [str(a) for a in args]
    p = subprocess.run([sys.executable, "-m", "mosaic", *argv], input=input,
                       stdin=None if input is not None else subprocess.DEVNULL,
                       capture_output=True, env=env or mosaic_env(), cwd=cwd, timeout=timeout,
                       preexec_fn=preexec_fn)
    return Result(argv, p.returncode, p.stdout, p.stderr.decode("utf-8", "replace"))


class Cli:
    """`mosaic --home HOME ...` bound to one node home."""

    def __init__(self, home: Path, cwd: Path | None = None):
        self.home = Path(home)
        self.cwd = cwd

    def __call__(self, *args: str | os.PathLike, input: bytes | None = None,
                 env: dict[str, str] | None = None, timeout: float = CLI_TIMEOUT,
                 json: bool = False, cwd: str | os.PathLike | None = None, preexec_fn=None  # noqa: ANN001
                 ) -> Result:
        pre = ["--home", str(self.home)] + (["--json"] if json else [])
        return run_mosaic([*pre, *args], input=input, env=env, cwd=cwd or self.cwd,
                          timeout=timeout, preexec_fn=preexec_fn)

    def ok(self, *args: str | os.PathLike, **kw) -> Result:  # noqa: ANN003
        """Run and require exit 0."""
        r = self(*args, **kw)
        assert r.rc == 0, str(r)
        return r

    def doc(self, *args: str | os.PathLike, **kw) -> object:  # noqa: ANN003
        """Run with --json, require exit 0, return the parsed document."""
        r = self(*args, json=True, **kw)
        assert r.rc == 0, str(r)
        return r.json()

    def init(self, *extra: str, passphrase: bool = False, small: bool = True) -> Result:
        args = ["init", *(SMALL_CHUNKS if small else ()), *extra]
        if not passphrase:
            args.append("--no-passphrase")
        return self.ok(*args)


def assert_one_line_error(r: Result, code: int) -> str:
    """The run failed with `code` and said so in exactly one 'mosaic: error:' line."""
    assert r.rc == code, str(r)
    assert "Traceback" not in r.err, str(r)
    lines = r.err.splitlines()
    assert len(lines) == 1, f"expected one stderr line, got {len(lines)}:\n{r}"
    assert lines[0].startswith("mosaic: error:"), str(r)
    assert r.err.endswith("\n")
    return lines[0]


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    """A CLI bound to a not-yet-initialised home (tmp_path/home), run from tmp_path/work."""
    work = tmp_path / "work"
    work.mkdir()
    return Cli(tmp_path / "home", cwd=work)


@pytest.fixture
def node_cli(cli: Cli) -> Cli:
    """A CLI bound to an initialised, unsealed node with small chunks (1/4/16 KiB)."""
    cli.init()
    return cli
