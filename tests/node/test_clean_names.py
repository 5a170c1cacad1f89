"""Clean names: control characters, bidi overrides and line separators are refused on every
path (CLI put, put -r, mv, the Python API, import), names are escaped when printed, and `\\`
is an ordinary character everywhere (a name with `\\` that arrives by import is addressed
from the CLI as typed)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import blake3
import pytest

from mosaic import Node
from mosaic.node.cli.output import Output, safe_text
from mosaic.node.errors import ImportFormatError, UsageError
from mosaic.node.store.store import Store
from mosaic.protocol.limits import MAX_NAME_BYTES
from mosaic.protocol.manifest_json import seal_dump
from mosaic.protocol.name_rules import InvalidName, check_name
from mosaic.protocol.names import conflict_name
from mosaic.protocol.records import NameRecord, Version
from tests.conftest import Cli, assert_one_line_error

BIDI = [chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A))]
SEPARATORS = ["\u2028", "\u2029"]
UNSAFE = ["\x1b", "\r", "\n", "\x00", "\x7f", "\x9b", *BIDI, *SEPARATORS]
SMALL = dict(chunk_min=1024, chunk_avg=4096, chunk_max=16384)


@pytest.mark.parametrize("c", BIDI + SEPARATORS, ids=lambda c: f"U+{ord(c):04X}")
def test_bidi_controls_and_line_separators_are_not_names(c: str) -> None:
    for name in (f"a{c}b", f"{c}", f"dir/x{c}.txt"):
        with pytest.raises(InvalidName, match=f"U\\+{ord(c):04X}") as ei:
            check_name(name)
        assert "\n" not in str(ei.value) and c not in str(ei.value)


def test_lookalikes_that_are_not_controls_stay_names() -> None:
    for ok in ("a\\b", "caf\u00e9", "\u200bzero-width", "\u05d0\u05d1 hebrew", "tab\u2009thin"):
        assert check_name(ok) == ok


def test_safe_text_escapes_what_could_forge_output() -> None:
    for c in UNSAFE:
        shown = safe_text(f"x{c}y")
        assert c not in shown and shown.startswith("x\\") and shown.endswith("y")
    assert safe_text("a\\b/\u00e9 \U0001f600") == "a\\b/\u00e9 \U0001f600"  # untouched
    buf = io.StringIO()
    Output(stream=buf).line("evil\x1b[2J\rname\nforged")
    assert buf.getvalue() == "evil\\x1b[2J\\x0dname\\x0aforged\n"


# ---- every path refuses ---------------------------------------------------------------------

def test_the_api_refuses_on_put_and_mv(tmp_path: Path) -> None:
    with Node.init(tmp_path / "n", no_passphrase=True, **SMALL) as node:
        for c in UNSAFE:
            with pytest.raises(UsageError):
                node.put(b"x", name=f"a{c}b")
        node.put(b"x", name="ok")
        for c in UNSAFE:
            with pytest.raises(UsageError):
                node.mv("ok", f"ok{c}")
        assert [e.name for e in node.ls()] == ["ok"]


def test_the_cli_refuses_on_put_and_mv(node_cli: Cli) -> None:
    (node_cli.cwd / "f").write_bytes(b"data")
    node_cli.ok("put", "f", "--name", "plain")
    for c in ("\x1b", "\u202e", "\u2066", "\u2028"):
        assert_one_line_error(node_cli("put", "f", "--name", f"x{c}y"), 2)
        assert_one_line_error(node_cli("mv", "plain", f"x{c}y"), 2)
    assert node_cli.ok("ls").text.split()[-1] == "plain"


def test_put_r_escapes_control_bytes_and_skips_bidi_names(node_cli: Cli) -> None:
    tree = node_cli.cwd / "tree"
    tree.mkdir()
    (tree / "esc\x1b[31mred").write_bytes(b"one")
    (tree / "rl\u202eo.txt").write_bytes(b"two")
    (tree / "fine").write_bytes(b"three")
    r = node_cli("put", "-r", "tree")
    assert r.rc == 2, str(r)  # the bidi name is refused; the others are stored
    assert "\u202e" not in r.err and "\x1b" not in r.err
    names = [e["name"] for e in node_cli.doc("ls")]
    assert "tree/fine" in names and len(names) == 2
    assert not any(ch in n for n in names for ch in UNSAFE)  # ESC became U+EF1B (path_name)


def _sealed(home: Path, doc: dict) -> str:
    with Store.open(home) as s:
        return seal_dump(json.dumps(doc, indent=1, ensure_ascii=False), s.keys.dump_mac)


def _dump_with_names(home: Path, *names: str) -> dict:
    with Store.open(home) as s:
        key_id = s.keys.key_id
    return {"format": "mosaic-manifests", "version": 1, "key_id": key_id,
            "exported": "2026-01-01T00:00:00.000000000Z",
            "files": [{"id": blake3.blake3(b"").hexdigest(), "names": list(names), "size": 0,
                       "created": "2026-01-01T00:00:00.000000000Z", "chunks": []}],
            "locations": {}}


def test_import_refuses_unsafe_names_even_in_an_authentic_dump(node_cli: Cli) -> None:
    for c in ("\x1b", "\u202e", "\u2029"):
        p = node_cli.cwd / "d.json"
        p.write_text(_sealed(node_cli.home, _dump_with_names(node_cli.home, f"n{c}")))
        line = assert_one_line_error(node_cli("import", p), 2)
        assert c not in line
    assert node_cli.ok("ls").text == ""


def test_import_refuses_in_process_too(tmp_path: Path) -> None:
    with Node.init(tmp_path / "n", no_passphrase=True, **SMALL) as node:
        home = node.home.root
    dump = _sealed(home, _dump_with_names(home, "bad\u202ename"))
    with Node.open(home) as node:
        with pytest.raises(ImportFormatError, match="U\\+202E"):
            node.import_(dump)


# ---- `\` is ordinary everywhere -------------------------------------------------------------

def test_a_backslash_name_from_import_is_addressable_from_the_cli(node_cli: Cli) -> None:
    name = "win\\path\\file.txt"
    p = node_cli.cwd / "d.json"
    p.write_text(_sealed(node_cli.home, _dump_with_names(node_cli.home, name, "dir/a\\b")))
    node_cli.ok("import", p)
    assert [e["name"] for e in node_cli.doc("ls")] == ["dir/a\\b", name]
    assert node_cli.ok("get", name, "-").out == b""
    assert node_cli.doc("stat", name)["names"] == ["dir/a\\b", name]
    node_cli.ok("mv", name, "moved\\again")
    node_cli.ok("rm", "moved\\again")
    node_cli.ok("rm", "dir/a\\b")
    assert node_cli.ok("ls").text == ""


def test_a_backslash_name_put_from_the_cli_round_trips(node_cli: Cli) -> None:
    (node_cli.cwd / "f").write_bytes(b"content")
    node_cli.ok("put", "f", "--name", "a\\b")
    assert node_cli.ok("get", "a\\b", "-").out == b"content"
    assert node_cli.ok("ls").text.rstrip().endswith("a\\b")


# ---- escaped when printed ------------------------------------------------------------------

def test_a_stored_name_with_control_characters_is_printed_escaped(node_cli: Cli) -> None:
    """A name from before the rule (planted under it in the index) cannot forge `ls` lines."""
    (node_cli.cwd / "f").write_bytes(b"x")
    h = node_cli.ok("put", "f", "--name", "plain").text.split()[0]
    evil = "legit\r\n" + "0" * 64 + "  999  forged\x1b[2K\u202e"
    with Store.open(node_cli.home) as s, s.index.write() as txn:
        s.index.set_names(txn, [(evil, bytes.fromhex(h))])
    out = node_cli.ok("ls").text
    assert out.count("\n") == 2, out  # two names, two lines
    assert not any(c in out[:-1].replace("\n", "") for c in UNSAFE)
    assert "legit\\x0d\\x0a" in out and "\\x1b[2K\\u202e" in out
    doc = node_cli.doc("ls")
    assert evil in [e["name"] for e in doc]  # --json carries it exactly (escaped by JSON)


# ---- one length limit ----------------------------------------------------------------------

def test_the_cli_and_import_share_one_name_limit_with_room_for_conflict_copies(
        node_cli: Cli) -> None:
    longest, too_long = "é" * (MAX_NAME_BYTES // 2), "x" * (MAX_NAME_BYTES + 1)
    (node_cli.cwd / "f").write_bytes(b"")
    node_cli.ok("put", "f", "--name", longest)
    assert_one_line_error(node_cli("put", "f", "--name", too_long), 2)
    p = node_cli.cwd / "d.json"
    p.write_text(_sealed(node_cli.home, _dump_with_names(node_cli.home, too_long)))
    assert "too long" in assert_one_line_error(node_cli("import", p), 2)
    p.write_text(_sealed(node_cli.home, _dump_with_names(node_cli.home, "y" * MAX_NAME_BYTES)))
    node_cli.ok("import", p)
    # the longest conflict copy of the longest name, numbered, still fits an LMDB key
    copy = conflict_name(NameRecord("y" * MAX_NAME_BYTES, b"\x01" * 32,
                                    Version((1 << 63) - 1, b"\x02" * 32))) + "-999999"
    assert len(copy.encode()) + 32 <= 511
