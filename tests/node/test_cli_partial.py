"""Partial success is reported as such; settings that would mislead are refused; `check`."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

from tests.conftest import Cli, assert_one_line_error

PENDING = 8  # README: "done locally, backend pending"


def _dead_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _unreachable_s3(cli: Cli) -> None:
    cli.ok("backend", "add", "s3", "gone", "--bucket", "b", "--no-check",
           "--endpoint", f"http://127.0.0.1:{_dead_port()}", "--region", "us-east-1",
           env={**os.environ, "AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"})


def test_local_work_done_backend_pending(cli: Cli, tmp_path: Path) -> None:
    cli.ok("init", "--no-passphrase")
    _unreachable_s3(cli)
    f = tmp_path / "f.bin"
    f.write_bytes(os.urandom(100_000))
    r = cli("put", f, "--name", "f", "--no-wait", json=True, timeout=120)
    assert r.rc == PENDING, str(r)
    doc = json.loads(r.out)
    assert doc["backend_pending"] is True and doc["files"][0]["name"] == "f"
    assert "warning" in r.err and "Traceback" not in r.err
    r = cli("mv", "f", "g", json=True, timeout=120)
    assert r.rc == PENDING, str(r)
    assert json.loads(r.out)["new"] == "g"
    assert cli.ok("get", "g", "-").out == f.read_bytes()  # the local work was done
    r = cli("rm", "g", json=True, timeout=120)
    assert r.rc == PENDING, str(r)
    assert json.loads(r.out)["removed"] == ["g"]
    assert cli.doc("ls") == [] or cli.doc("ls") == {"names": []} or "g" not in str(cli.doc("ls"))
    assert cli.doc("check")["ok"] is True


def test_settings_that_would_mislead_are_refused(cli: Cli) -> None:
    cli.ok("init", "--no-passphrase")
    assert "backends" in assert_one_line_error(cli("config", "set", "copies", "5"), 2)
    assert_one_line_error(cli("config", "set", "pack_size", "0"), 2)
    assert cli.doc("config")["copies"] == 0
    assert_one_line_error(cli("--home", str(cli.home) + "2", "init", "--no-passphrase",
                              "--pack-size", "0"), 2)


def test_check_reports_a_damaged_index(cli: Cli, tmp_path: Path) -> None:
    cli.ok("init", "--no-passphrase")
    f = tmp_path / "f.bin"
    f.write_bytes(os.urandom(50_000))
    cli.ok("put", f, "--name", "f")
    assert cli.doc("check")["ok"] is True
    for p in (cli.home / "packs").rglob("*"):
        if p.is_file():
            p.unlink()  # the only copy of the data is gone
    r = cli("check", json=True)
    assert r.rc == 3, str(r)
    doc = json.loads(r.out)
    assert doc["counts"]["local-missing"] == 1 and doc["counts"]["no-copy"] >= 1
