"""Shared fixtures: isolated node homes and a runner for the `mosaic` CLI.

Nothing here ever touches the user's real node: the whole session runs with
MOSAIC_HOME and XDG_DATA_HOME pointing into a temporary folder, and every CLI
call passes --home explicitly.

What keeps the suite fast without testing less:

- Argon2id at libsodium's minimum cost, for tests only: in this process through the
  autouse fixture `_weak_kdf`, in CLI subprocesses through `tests/weak_kdf_cli.py`
  (every runner here starts `MOSAIC_CMD`, not `python -m mosaic`). The installed package
  and its CLI always use the real cost; `tests/store/test_store.py::test_the_real_kdf_once`
  runs it. Key files record their own KDF parameters, so either kind opens anywhere.
- Hypothesis profiles: "dev" (the default: fewer examples) and "ci" (more examples,
  derandomized so a CI run is reproducible), chosen with HYPOTHESIS_PROFILE (or CI=true).
- One-shot CLI runs fork from a server that imported the CLI once (tests/cli_forkserver.py;
  each run is still its own process with its own descriptors, folder and environment);
  runs that need a `preexec_fn` are started as plain subprocesses, as are daemons.
- CLI children reuse their bytecode (see `_isolated_mosaic_env`), and `node_cli` copies
  one home `mosaic init` made for the session instead of running init per test.
- Long end-to-end tests are marked `slow`: `just test-fast` (-m "not slow") leaves them out.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import nacl.pwhash.argon2id as argon2id
import pytest
from hypothesis import settings

from mosaic.node.store import keys as _keys

from . import cli_forkserver as _forkserver

PASSPHRASE = "correct horse battery staple (mosaic tests)"
SMALL_CHUNKS = ("--chunk-min", "1KiB", "--chunk-avg", "4KiB", "--chunk-max", "16KiB")
CLI_TIMEOUT = 120

#: the command that starts the CLI in a test's subprocess: `mosaic` with the weak test KDF
WEAK_KDF_CLI = Path(__file__).resolve().with_name("weak_kdf_cli.py")
MOSAIC_CMD = (sys.executable, str(WEAK_KDF_CLI))
#: one-shot CLI runs fork from a server that imported the CLI once (tests/cli_forkserver.py);
#: MOSAIC_TEST_EXEC=1 starts each run with a plain subprocess instead
_FORKS = None if os.environ.get("MOSAIC_TEST_EXEC") == "1" else _forkserver.Client(
    Path(tempfile.mkdtemp(prefix="mosaic-fork-")))
if _FORKS is not None:
    atexit.register(_FORKS.close)
#: the real Argon2id cost (what `mosaic` itself seals with) and the tests' weak one
REAL_KDF = (_keys.KDF_OPSLIMIT, _keys.KDF_MEMLIMIT)
WEAK_KDF = (argon2id.OPSLIMIT_MIN, argon2id.MEMLIMIT_MIN)

# ---- hypothesis profiles ---------------------------------------------------------------
# "dev": few examples, random each run. "ci": hypothesis' usual 100 (a test's own count
# stands), derandomized so that a CI run is reproducible. HYPOTHESIS_PROFILE chooses; without
# it, CI=true (as CI sets) means "ci", anything else "dev". A test's own
# @settings(max_examples=N) wins over the profile; under "dev" it is also capped at
# DEV_MAX_EXAMPLES (pytest_collection_modifyitems below).
DEV_MAX_EXAMPLES = 25
settings.register_profile("dev", max_examples=DEV_MAX_EXAMPLES, deadline=None)
settings.register_profile("ci", max_examples=100, derandomize=True, deadline=None,
                          print_blob=True)
HYPOTHESIS_PROFILE = os.environ.get("HYPOTHESIS_PROFILE") or (
    "ci" if os.environ.get("CI", "").lower() in ("1", "true", "yes") else "dev")
settings.load_profile(HYPOTHESIS_PROFILE)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under the "dev" profile, cap the example count a test sets itself at DEV_MAX_EXAMPLES."""
    if HYPOTHESIS_PROFILE != "dev":
        return
    for item in items:
        fn = getattr(getattr(item, "obj", None), "__func__", getattr(item, "obj", None))
        own = getattr(fn, "_hypothesis_internal_use_settings", None)
        if getattr(fn, "is_hypothesis_test", False) and own is not None \
                and own.max_examples > DEV_MAX_EXAMPLES:
            fn._hypothesis_internal_use_settings = settings(own, max_examples=DEV_MAX_EXAMPLES)


@pytest.fixture(scope="session", autouse=True)
def _weak_kdf() -> Iterator[None]:
    """Argon2id at libsodium's minimum cost for every in-process test (and session fixture)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_keys, "KDF_OPSLIMIT", WEAK_KDF[0])
        mp.setattr(_keys, "KDF_MEMLIMIT", WEAK_KDF[1])
        yield


@pytest.fixture(scope="session", autouse=True)
def _isolated_mosaic_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Point every default location at a temp folder and set the test passphrase.

    Also: where PYTHONDONTWRITEBYTECODE is set (as on this project's machines), every Python
    child (each CLI run, daemon, moto server) would compile its modules from source again,
    ~0.3 s per start; the children then keep their bytecode in a temp folder of this session
    instead (PYTHONPYCACHEPREFIX), writing nothing into the source tree or the venv.
    """
    base = tmp_path_factory.mktemp("mosaic-default-home")
    keys = ("MOSAIC_HOME", "XDG_DATA_HOME", "MOSAIC_PASSPHRASE", "MOSAIC_KEY_FILE_PASSPHRASE",
            "PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX")
    saved = {k: os.environ.get(k) for k in keys}
    os.environ["MOSAIC_HOME"] = str(base / "default-node")
    os.environ["XDG_DATA_HOME"] = str(base / "xdg")
    os.environ["MOSAIC_PASSPHRASE"] = PASSPHRASE
    os.environ.pop("MOSAIC_KEY_FILE_PASSPHRASE", None)
    if os.environ.get("PYTHONDONTWRITEBYTECODE") and not os.environ.get("PYTHONPYCACHEPREFIX"):
        os.environ.pop("PYTHONDONTWRITEBYTECODE")
        os.environ["PYTHONPYCACHEPREFIX"] = str(tmp_path_factory.mktemp("pycache"))
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
               timeout: float = CLI_TIMEOUT, preexec_fn=None, fork: bool = True  # noqa: ANN001
               ) -> Result:
    """Run the CLI (`mosaic ARGS`, with the tests' weak KDF) and capture everything.

    `fork=False` starts it with exec even where the fork server is on (see tests/cluster)."""
    argv = [str(a) for a in args]
    if fork and preexec_fn is None and _FORKS is not None:
        rc, out, err = _FORKS.run(argv, input=input, env=env or mosaic_env(),
                                  cwd=os.fspath(cwd) if cwd is not None else os.getcwd(),
                                  timeout=timeout)
        return Result(argv, rc, out, err.decode("utf-8", "replace"))
    p = subprocess.run([*MOSAIC_CMD, *argv], input=input,
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


@pytest.fixture(scope="session")
def _node_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One home made by `mosaic init` (small chunks, unsealed), copied for every `node_cli`."""
    root = tmp_path_factory.mktemp("node-template")
    Cli(root / "home", cwd=root).init()
    return root / "home"


@pytest.fixture
def node_cli(cli: Cli, _node_template: Path) -> Cli:
    """A CLI bound to an initialised, unsealed node with small chunks (1/4/16 KiB).

    A copy of one home `mosaic init` made for the session (what init itself does is tested
    on `cli`); every copy has the same key and node tag, which no test of one node sees.
    """
    shutil.copytree(_node_template, cli.home, ignore=shutil.ignore_patterns("lock.mdb"))
    return cli


@pytest.fixture
def zstd_inputs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The length of every input the chunk codec hands to zstd while the test runs."""
    from mosaic.node.store import codec
    sizes: list[int] = []
    real = codec._compressor

    class Counting:
        def __init__(self, level: int):
            self.c = real(level)

        def compress(self, data: bytes | memoryview) -> bytes:
            sizes.append(len(data))
            return self.c.compress(data)

    monkeypatch.setattr(codec, "_compressor", Counting)
    return sizes
