"""The one name rule (protocol/name_rules.py), shared by the CLI, the API, import and sync."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from mosaic.node.errors import UsageError
from mosaic.node.store.home import check_name as node_check_name
from mosaic.protocol.errors import BadMessage
from mosaic.protocol.name_rules import MAX_NAME_BYTES, InvalidName, check_canonical, check_name
from mosaic.protocol.names import conflict_name
from mosaic.protocol.records import (
    LogEntry,
    NameRecord,
    Version,
    entry_from_wire,
    entry_to_wire,
)
from mosaic.protocol.records import check_name as wire_check_name

from ..conftest import Cli, assert_one_line_error

LMDB_MAX_KEY = 511  # lmdb.Environment.max_key_size() for the default build
ORIGIN = b"\x01" * 32
FILE_ID = b"\x02" * 32
CONTROLS = [chr(c) for c in (*range(0x20), 0x7F, *range(0x80, 0xA0))]


def _keys_for(name: str) -> list[bytes]:
    """Every LMDB key the node builds from a name (node/cluster/namelog.py, namestore.py)."""
    raw = name.encode("utf-8")
    rec = NameRecord(name, FILE_ID, Version(1 << 62, ORIGIN))
    conflict = conflict_name(rec).encode("utf-8")
    return [raw,                         # namestate: name
            FILE_ID + raw,               # namewait: file ID + name
            conflict + b"-999999",       # names: a block keyed by a numbered conflict copy
            FILE_ID + conflict]


@given(st.text(max_size=600))
@example("a/" * 200 + "b")
@example("é" * 200)
@example("\U0001f600" * 100)
@example("/./a//b/./")
@example("0" * 18 + "\x1f" * 13 + "\U000103d6" * 8)  # escapes made the message 200 characters
def test_every_accepted_name_fits_and_round_trips(text: str) -> None:
    try:
        name = check_name(text)
    except InvalidName as e:
        assert "\n" not in str(e) and len(str(e)) < 200
        return
    assert 0 < len(name.encode("utf-8")) <= MAX_NAME_BYTES
    assert max(len(k) for k in _keys_for(name)) <= LMDB_MAX_KEY
    assert check_name(name) == name == check_canonical(name)  # canonical form is a fixed point
    assert name.encode("utf-8").decode("utf-8") == name
    rec = NameRecord(name, FILE_ID, Version(7, ORIGIN))  # the wire accepts it and gives it back
    wire = msgpack.unpackb(msgpack.packb(entry_to_wire(LogEntry(1, rec))), use_list=False)
    assert entry_from_wire(wire).record == rec
    assert node_check_name(text) == name


def test_the_limit_is_in_utf8_bytes() -> None:
    for unit in ("x", "é", "\u20ac", "\U0001f600"):
        n = MAX_NAME_BYTES // len(unit.encode())
        assert check_name(unit * n) == unit * n
        with pytest.raises(InvalidName, match="too long"):
            check_name(unit * (n + 1))
    assert max(len(k) for k in _keys_for("x" * MAX_NAME_BYTES)) <= LMDB_MAX_KEY


@pytest.mark.parametrize("c", CONTROLS, ids=[f"U+{ord(c):04X}" for c in CONTROLS])
def test_control_characters_are_rejected_everywhere(c: str) -> None:
    for name in (c, f"a{c}b", f"dir/{c}", f"{c}/x"):
        with pytest.raises(InvalidName):
            check_name(name)
        with pytest.raises(UsageError):
            node_check_name(name)
        with pytest.raises(BadMessage):
            wire_check_name(name)


@given(st.text(min_size=1, max_size=20), st.sampled_from(CONTROLS), st.text(max_size=20))
def test_a_control_character_anywhere_is_rejected(a: str, c: str, b: str) -> None:
    with pytest.raises(InvalidName) as ei:
        check_name(a + c + b)
    assert "\n" not in str(ei.value)


def test_lone_surrogates_are_not_names() -> None:
    for name in ("\ud800", "a/\udfff", "x\udcff"):
        with pytest.raises(InvalidName, match="UTF-8"):
            check_name(name)
        with pytest.raises(BadMessage):
            wire_check_name(name)


@pytest.mark.parametrize("raw, canonical", [
    ("a", "a"), ("/a/b/", "a/b"), ("./a", "a"), ("a//b", "a/b"), ("a/./b", "a/b"),
    ("a\\b", "a\\b"), ("a\\..\\b", "a\\..\\b"), (" sp ace ", " sp ace "), ("...", "..."),
    ("caf\u00e9", "caf\u00e9"), ("cafe\u0301", "cafe\u0301"),  # no Unicode normalisation
])
def test_what_people_type_is_made_canonical(raw: str, canonical: str) -> None:
    assert check_name(raw) == canonical == node_check_name(raw)
    wire_check_name(canonical)
    if raw != canonical:  # the wire and the dump take canonical names only
        with pytest.raises(BadMessage, match="canonical"):
            wire_check_name(raw)


@pytest.mark.parametrize("bad", ["", "/", ".", "./", "//", "..", "../x", "a/..", "a/../b", None, 7, b"a"])
def test_no_name(bad: object) -> None:
    with pytest.raises(InvalidName):
        check_name(bad)
    with pytest.raises(UsageError):
        node_check_name(bad)  # type: ignore[arg-type]
    with pytest.raises(BadMessage):
        wire_check_name(bad)


def test_errors_are_one_short_line() -> None:
    for bad in ("x" * 5000, "a\nb" * 500, "../" + "é" * 1000):
        with pytest.raises(InvalidName) as ei:
            check_name(bad)
        msg = str(ei.value)
        assert "\n" not in msg and len(msg) < 200


# ---- the CLI: one-line errors, exit 2 ----------------------------------------------------

def test_cli_refuses_bad_names_in_one_line(node_cli: Cli) -> None:
    (node_cli.cwd / "f").write_bytes(b"data")
    for bad in ("a\tb", "x\x7f", "bell\x07", "c1\x85", "../up", "x" * (MAX_NAME_BYTES + 1)):
        line = assert_one_line_error(node_cli("put", "f", "--name", bad), 2)
        assert "name" in line
    node_cli.ok("put", "f", "--name", "back\\slash")
    node_cli.ok("put", "f", "--name", "y" * MAX_NAME_BYTES)
    names = [e["name"] for e in node_cli.doc("ls")]
    assert "back\\slash" in names and "y" * MAX_NAME_BYTES in names
    assert_one_line_error(node_cli("mv", "back\\slash", "tab\there"), 2)
    assert node_cli.ok("get", "back\\slash", "-").out == b"data"
