"""Error and warning lines of the CLI are escaped like names (node/cli/output.py safe_text):
what a user typed or a tree held cannot reach the terminal raw."""

from __future__ import annotations

from tests.conftest import Cli, assert_one_line_error


def test_an_error_naming_what_was_typed_is_escaped(node_cli: Cli) -> None:
    for ref in ("no\x1b[31mname", "x\u202ey", "a\x9bb"):
        line = assert_one_line_error(node_cli("get", ref, "-"), 1)
        assert not any(c in line for c in "\x1b\u202e\x9b"), line
