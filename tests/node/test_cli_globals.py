"""The CLI's global options after the command word, --version, exit codes for bad
paths, and progress bars (drawn on a terminal only), through real subprocesses."""

from __future__ import annotations

import ctypes
import fcntl
import importlib.metadata
import json
import os
import pty
import random
import re
import select
import socket
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests import conftest
from tests.conftest import Cli, Result, assert_one_line_error, mosaic_env, run_mosaic

ESC = "\x1b"
#: how the suite starts the CLI (run_mosaic's command), for the runs on a pseudo-terminal
CLI_CMD = tuple(getattr(conftest, "MOSAIC_CMD", (sys.executable, "-m", "mosaic")))


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Cli:
    """One initialised, unsealed node holding a file named f, shared by this module's tests."""
    base = tmp_path_factory.mktemp("cli-globals")
    work = base / "work"
    work.mkdir()
    cli = Cli(base / "home", cwd=work)
    cli.init()
    (work / "f").write_bytes(random.Random(9).randbytes(50_000))
    cli.ok("put", "f")
    return cli


def bare(cli: Cli, *args: str | os.PathLike, **kw) -> Result:  # noqa: ANN003
    """Run without the Cli's leading --home: the arguments are exactly `args`."""
    return run_mosaic(list(args), cwd=cli.cwd, **kw)


def bare_many(cli: Cli, arglists: list[list]) -> list[Result]:
    """`bare` for each argument list, four at a time (they must not depend on each other)."""
    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(lambda args: bare(cli, *args), arglists))


# ---- global options after the command word -----------------------------------------------

def test_global_options_after_the_command_word(node: Cli, tmp_path: Path) -> None:
    h, nowhere, key = str(node.home), tmp_path / "nowhere", tmp_path / "k.json"
    ls, put, bls, bls2, pls, trim, kexp, later, later2, exp, expq = bare_many(node, [
        ["ls", "--json", "--home", h],
        ["put", "f", "--home", h, "-q", "--json"],
        # sub-commands of commands, and an option between the two words
        ["backend", "ls", "--json", "--home", h],
        ["backend", "--json", "ls", "--home", h],
        ["peer", "ls", "--home", h, "--json"],
        ["cache", "trim", "--json", "--home", h],
        ["key", "export", "--json", "-o", key, "--home", h],
        # given before and after the command word, the later one wins
        ["--home", nowhere, "ls", "--home", h, "--json"],
        ["--home", h, "ls", "--home", nowhere],
        # -q after the command word silences the messages on stderr
        ["export", "--all", "-o", tmp_path / "e1.json", "--home", h],
        ["export", "--all", "-o", tmp_path / "e2.json", "--home", h, "-q"],
    ])
    for r in (ls, put, bls, bls2, pls, trim, kexp, later, exp, expq):
        assert r.rc == 0, str(r)
    assert [e["name"] for e in ls.json()] == ["f"]
    assert put.json()["files"][0]["name"] == "f" and put.err == ""
    assert bls.json() == [] and bls2.json() == [] and pls.json() == []
    assert "capacity" in trim.json()
    assert kexp.json()["file"] == str(key) and key.is_file()
    assert later.json()[0]["name"] == "f"
    assert "nowhere" in assert_one_line_error(later2, 6)
    assert "exported to" in exp.err and expq.err == ""
    assert (tmp_path / "e2.json").is_file()


def test_every_command_takes_the_global_options() -> None:
    from mosaic.node.cli.common import command_parsers
    from mosaic.node.cli.main import build_parser
    parsers = command_parsers(build_parser())
    assert len(parsers) > 30
    for p in parsers:
        opts = {o for a in p._actions for o in a.option_strings}
        assert {"--home", "--json", "-q", "--quiet"} <= opts, p.prog


# ---- --version ---------------------------------------------------------------------------

def test_version(tmp_path: Path) -> None:
    want = importlib.metadata.version("mosaic-store")
    with ThreadPoolExecutor(3) as pool:
        plain, *docs = pool.map(lambda args: run_mosaic(args, cwd=tmp_path), [
            ["--version"], ["--version", "--json"], ["--json", "--version"]])
    assert plain.rc == 0 and plain.text == f"mosaic {want}\n", str(plain)
    assert re.fullmatch(r"mosaic \d+\.\d+\.\d+\S*\n", plain.text)
    for r in docs:
        assert r.rc == 0, str(r)
        assert r.json()["version"] == want and r.json()["program"] == "mosaic"


# ---- exit codes for paths of the wrong kind -----------------------------------------------

def test_exit_codes_for_bad_paths(node: Cli, tmp_path: Path) -> None:
    folder = tmp_path / "folder"
    folder.mkdir()
    a_file = tmp_path / "a-file"
    a_file.write_bytes(b"not a folder\n")
    sock = tmp_path / "sock"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(sock))
    h = str(node.home)
    cases: list[tuple[list, int, str]] = [
        (["import", folder], 2, "directory"),            # a folder where a JSON file goes
        (["import", sock], 2, "not a regular file"),
        (["put", sock], 2, "not a regular file"),
        (["get", "f", a_file / "x"], 2, "not a folder"),  # a file where a folder goes
        (["export", "--all", "-o", a_file / "x"], 2, "not a folder"),
        (["key", "export", "-o", a_file / "k"], 2, "not a folder"),
        (["backend", "add", "dir", "b", a_file], 2, "not a folder"),
        (["backend", "add", "rclone", "r", "remote:x", "--rclone-config", folder, "--no-check"],
         2, "directory"),
        (["recover", "--from", "no-such-backend"], 1, "no backend named"),
        # a bad number of parallel uploads is a usage error, not an internal one (was 70)
        (["put", "f", "--parallel", "-1"], 2, "--parallel"),
        (["upload", "--parallel", "0"], 2, "--parallel"),
        # a key export into a folder that does not exist yet makes it (was 5)
        (["key", "export", "-o", tmp_path / "new-dir" / "sub" / "k.json"], 0, ""),
    ]
    cases = [([*args, "--home", h], code, frag) for args, code, frag in cases] + [
        (["--home", a_file, "init", "--no-passphrase"], 2, "not a folder"),
        (["--home", tmp_path / "new", "init", "--no-passphrase", "--key-file", folder],
         2, "directory"),
    ]
    for (args, code, frag), r in zip(cases, bare_many(node, [c[0] for c in cases]), strict=True):
        if code == 0:
            assert r.rc == 0, str(r)
        elif "--parallel" in args:  # argparse's own message: usage line and error line
            assert r.rc == code and frag in r.err and "Traceback" not in r.err, str(r)
        else:
            assert frag in assert_one_line_error(r, code), str(r)
    assert not (tmp_path / "new").exists()
    config = (node.home / "config.toml").read_text()
    assert "rclone" not in config and "a-file" not in config  # no bad backend was recorded
    assert json.loads((tmp_path / "new-dir" / "sub" / "k.json").read_text())["key_id"]


def _without_dac_override() -> None:
    """In the child: root loses the right to read files whatever their mode."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, from the bounding set
        if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def _unreadable_runner(path: Path) -> Callable[[], None] | None:
    """A preexec_fn under which `path` (mode 000) cannot be read; skip if there is none."""
    if os.geteuid() != 0:
        return None
    try:
        r = subprocess.run([sys.executable, "-c", f"open({str(path)!r}).read()"],
                           capture_output=True, preexec_fn=_without_dac_override, timeout=30)
    except (OSError, subprocess.SubprocessError):
        pytest.skip("cannot drop CAP_DAC_OVERRIDE here")
    if r.returncode == 0:
        pytest.skip("files with mode 000 stay readable here")
    return _without_dac_override


def test_unreadable_input_files(node: Cli, tmp_path: Path) -> None:
    secret = tmp_path / "secret.json"
    secret.write_text("{}")
    secret.chmod(0)
    pre = _unreadable_runner(secret)
    for args in (["import", secret], ["put", secret],
                 ["--home", tmp_path / "new", "init", "--no-passphrase", "--key-file", secret]):
        r = bare(node, *args, *(["--home", node.home] if args[0] != "--home" else []),
                 preexec_fn=pre)
        assert r.rc == 2 and "permission denied" in r.err and "Traceback" not in r.err, str(r)


# ---- progress bars -----------------------------------------------------------------------

def test_no_escape_codes_without_a_terminal(node: Cli) -> None:
    (node.cwd / "big").write_bytes(random.Random(3).randbytes(3 << 20))
    for args in (["put", "big", "--name", "big-1"], ["get", "big-1", "big.out"],
                 ["verify", "--all"]):
        r = node(*args)
        assert r.rc == 0, str(r)
        assert r.err == "", str(r)
        assert ESC.encode() not in r.out and "\r" not in r.err


def _on_a_terminal(cli: Cli, *args: str, timeout: float = 60) -> tuple[int, bytes, str]:
    """Run with stderr on a pseudo-terminal: (exit code, stdout, what the terminal got)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 120, 0, 0))
    env = mosaic_env(TERM="xterm-256color", COLUMNS=None, LINES=None, NO_COLOR=None,
                     TTY_COMPATIBLE=None, TTY_INTERACTIVE=None)
    p = subprocess.Popen([*CLI_CMD, "--home", str(cli.home), *args],
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave,
                         cwd=cli.cwd, env=env)
    os.close(slave)
    got = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1)
            if not ready:
                if p.poll() is not None:
                    break
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: every writer has closed the terminal
                break
            if not data:
                break
            got += data
        out, _ = p.communicate(timeout=timeout)
    finally:
        os.close(master)
        if p.poll() is None:
            p.kill()
    return p.returncode, out, got.decode("utf-8", "replace")


def test_progress_bar_on_a_terminal(node: Cli) -> None:
    (node.cwd / "big").write_bytes(random.Random(4).randbytes(4 << 20))
    rc, out, term = _on_a_terminal(node, "put", "big", "--name", "big-2")
    assert rc == 0, term
    assert re.fullmatch(rb"[0-9a-f]{64}  big-2\n", out), out  # stdout stays clean
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", term)
    assert "put" in plain and "━" in plain, term
    assert "4.0 MiB / 4.0 MiB" in plain, term  # bytes done of the total
    assert re.search(r"[\d.]+ [KMG]iB/s", plain), term  # the rate
    assert re.search(r"\d+:\d\d:\d\d", plain), term  # the ETA
    # -q or --json (after the command word too) draw nothing on the terminal
    for flag in ("-q", "--json"):
        rc, out, term = _on_a_terminal(node, "put", "big", "--name", "big-3", flag)
        assert rc == 0 and term == "", (flag, term)
