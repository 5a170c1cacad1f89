"""`mosaic import` of an authenticated dump through the CLI: exit 3 with one line when the MAC
does not hold (a changed byte, another key, no MAC), exit 2 for text that is no dump, and the
index unchanged either way."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import Cli, assert_one_line_error


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Cli, Cli]:
    work = tmp_path / "work"
    work.mkdir()
    a, b = Cli(tmp_path / "a", cwd=work), Cli(tmp_path / "b", cwd=work)
    a.init()
    (work / "f").write_bytes(b"some data\n" * 200)
    a.ok("put", "f", "--name", "docs/f")
    a.ok("key", "export", "-o", tmp_path / "a.key")
    b.ok("init", "--no-passphrase", "--key-file", tmp_path / "a.key")
    return a, b


def _state(cli: Cli) -> tuple[list, str]:
    doc = json.loads(cli.ok("export", "--all").out)
    return doc["files"], cli.ok("ls").text


def test_changed_foreign_and_unsealed_dumps_are_refused(pair: tuple[Cli, Cli], tmp_path: Path) -> None:
    a, b = pair
    dump = a.ok("export", "--all").out
    before = _state(b)
    at = dump.index(b'"docs/f"') + 2  # a name: change one letter of it
    cases = {
        "changed byte": dump[:at] + b"x" + dump[at + 1:],
        "no MAC": json.dumps({k: v for k, v in json.loads(dump).items() if k != "mac"}).encode(),
        "changed MAC digit": dump[:-8] + (b"0" if dump[-8:-7] != b"0" else b"1") + dump[-7:],
    }
    for name, data in cases.items():
        (tmp_path / "d.json").write_bytes(data)
        line = assert_one_line_error(b("import", tmp_path / "d.json"), 3)
        assert "MAC" in line, name
        assert _state(b) == before, name
    stranger = Cli(tmp_path / "s", cwd=tmp_path)
    stranger.init()
    (tmp_path / "d.json").write_bytes(dump)
    line = assert_one_line_error(stranger("import", tmp_path / "d.json"), 3)
    assert "another key" in line
    assert_one_line_error(b("import", "-", input=b"not a dump"), 2)
    assert _state(b) == before
    b.ok("import", "-", input=dump)  # the dump itself is fine
    assert "docs/f" in b.ok("ls").text
