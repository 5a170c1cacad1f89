"""The names `mosaic put` records (issue "Nothing lost", item 8).

`put -r DIR` records DIR's last path component as the top folder (as `cp -r` and `tar`),
`DIR/` and `.` record the contents at the top (as rsync), `--name N` puts the tree under N/;
a put that points a name at new content says so; file names that are not valid UTF-8 (or hold
control characters) are stored losslessly and restored with the same bytes; a tree with
unreadable parts stores the rest, lists what it skipped and exits 2. Each case ends with every
file readable byte-identical and `mosaic check` exit 0.
"""

from __future__ import annotations

import ctypes
import os
import random
import subprocess
import sys
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from mosaic.node.cli.common import name_path, path_name
from mosaic.protocol.name_rules import check_canonical
from tests.conftest import Cli


def _write(root: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)


def _all_readable(node: Cli, files: dict[str, bytes]) -> None:
    listed = {e["name"] for e in node.doc("ls")}
    assert listed == set(files), listed ^ set(files)
    for name, data in files.items():
        assert node.ok("get", name, "-").out == data, name
    node.ok("check")


def test_put_r_records_the_folders_last_component(node_cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "projA").mkdir()
    (tmp_path / "projB").mkdir()
    (tmp_path / "projA" / "README.md").write_bytes(b"A\n")
    (tmp_path / "projB" / "README.md").write_bytes(b"B\n")
    _write(tmp_path / "projB" / "src", {"main.c": b"int main;\n"})
    node_cli.ok("put", "-r", "../projA")
    r = node_cli.ok("put", "-r", "../projB")
    assert "replaced" not in r.err
    node_cli.ok("put", "-r", tmp_path / "projA", "--name", "backup/a")  # --name: under N/
    node_cli.ok("put", "-r", "../projB/src/")  # a trailing slash: the contents at the top
    node_cli.ok("put", "-r", ".", cwd=tmp_path / "projA")  # "." too
    _all_readable(node_cli, {"projA/README.md": b"A\n", "projB/README.md": b"B\n",
                             "projB/src/main.c": b"int main;\n", "backup/a/README.md": b"A\n",
                             "main.c": b"int main;\n", "README.md": b"A\n"})


def test_a_put_that_repoints_a_name_says_so(node_cli: Cli) -> None:
    w = node_cli.cwd
    (w / "v1").write_bytes(b"first")
    (w / "v2").write_bytes(b"second")
    doc = node_cli.doc("put", "v1", "--name", "n")
    assert [f["replaced"] for f in doc["files"]] == [False]
    doc = node_cli.doc("put", "v1", "--name", "n")  # the same content: nothing replaced
    assert [f["replaced"] for f in doc["files"]] == [False]
    r = node_cli.ok("put", "v2", "--name", "n")
    assert "replaced n" in r.err.splitlines()
    doc = node_cli.doc("put", "-", "--name", "n", input=b"third")
    assert doc["files"][0]["replaced"] is True and doc["files"][0]["name"] == "n"
    _all_readable(node_cli, {"n": b"third"})


def test_non_utf8_and_control_character_names_round_trip(node_cli: Cli, tmp_path: Path) -> None:
    src = tmp_path / "src"
    raw = {  # file system bytes -> content
        b"plain.txt": b"plain",
        b"latin1-caf\xe9.txt": b"latin-1",
        b"\xff\xfe/bad folder/x.bin": random.Random(1).randbytes(30_000),
        b"tab\there": b"tab",
        b"new\nline": b"newline",
        b"c1-\xc2\x85.txt": b"NEL",
        b"pua-\xee\xbe\x80.txt": b"a literal U+EF80",
        b"caf\xc3\xa9.txt": b"valid utf-8 stays as it is",
    }
    for rel, data in raw.items():
        p = os.path.join(os.fsencode(src), rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "wb") as f:
            f.write(data)
    doc = node_cli.doc("put", "-r", src)
    names = {f["name"] for f in doc["files"]}
    assert "src/café.txt" in names and "src/plain.txt" in names
    for n in names:
        assert check_canonical(n) == n
    out = tmp_path / "out"
    node_cli.ok("get", "-r", "src", out)
    got = {}
    for dirpath, _, fs in os.walk(os.fsencode(out)):
        for f in fs:
            p = os.path.join(dirpath, f)
            with open(p, "rb") as fh:
                got[os.path.relpath(p, os.fsencode(out))] = fh.read()
    assert got == raw
    # one file by name into a folder: the basename's bytes come back too
    one = next(n for n in names if n.endswith("x.bin"))
    node_cli.ok("get", one, f"{tmp_path}/one/")
    assert os.listdir(os.fsencode(tmp_path / "one")) == [b"x.bin"]
    latin = next(n for n in names if "latin1" in n)
    node_cli.ok("get", latin, f"{tmp_path}/two/")
    assert os.listdir(os.fsencode(tmp_path / "two")) == [b"latin1-caf\xe9.txt"]
    _all_readable(node_cli, {path_name(b"src/" + k): v for k, v in raw.items()})


@given(st.lists(st.binary(min_size=1, max_size=40).map(lambda b: b.replace(b"\0", b"a")
                                                       .replace(b"/", b"b")),
                min_size=1, max_size=4).filter(lambda ps: all(p not in (b".", b"..") for p in ps)))
def test_the_name_encoding_is_lossless_and_valid(parts: list[bytes]) -> None:
    path = b"/".join(parts)
    name = path_name(path)
    assert check_canonical(name) == name  # the one name rule accepts it
    assert os.fsencode(name_path(name)) == path
    # names that were already valid (UTF-8, no control characters) stay as they are
    text = "/".join(p.decode("utf-8", "replace").replace("\ufffd", "x") for p in parts)
    if all(" " <= c and not "\x7f" <= c <= "\x9f" and not "\uef00" <= c <= "\uefff" for c in text):
        assert path_name(text) == text


def test_name_path_never_makes_a_separator_or_a_dot() -> None:
    sneaky = "a\uef2f..\uef2f..\uef2fetc\uef00\uef2e"  # would be a/../../etc if mapped
    assert name_path(sneaky) == sneaky


def _without_dac_override() -> None:
    """In the child: root loses the right to read files whatever their mode."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, from the bounding set
        if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def test_unreadable_parts_are_skipped_listed_and_exit_2(node_cli: Cli, tmp_path: Path) -> None:
    tree = node_cli.cwd / "t"
    files = {"a.txt": b"a", "sub/b.txt": b"b", "locked/c.txt": b"c", "z.txt": b"secret"}
    _write(tree, files)
    (tree / "link").symlink_to("a.txt")  # skipped as before (not a regular file), not an error
    (tree / "locked").chmod(0)
    pre = _without_dac_override if os.geteuid() == 0 else None
    probe = subprocess.run([sys.executable, "-c", f"import os; os.listdir({str(tree / 'locked')!r})"],
                           capture_output=True, preexec_fn=pre, timeout=30)
    assert probe.returncode != 0, "the folder stays readable: this test would prove nothing"
    try:
        r = node_cli("put", "-r", "t", preexec_fn=pre)  # only a folder is unreadable (was exit 0)
        assert r.rc == 2 and "locked" in r.err and "Traceback" not in r.err, str(r)
        (tree / "z.txt").chmod(0)
        r = node_cli("put", "-r", "t", json=True, preexec_fn=pre)
        assert r.rc == 2, str(r)
        doc = r.json()
        assert sorted(f["name"] for f in doc["files"]) == ["t/a.txt", "t/sub/b.txt"]
        skipped = {Path(s["path"]).name: s["reason"] for s in doc["skipped"]}
        assert set(skipped) == {"locked", "z.txt", "link"}, skipped
        assert "not a regular file" in skipped["link"]
        assert "permission denied" in skipped["z.txt"].lower()
        assert "locked" in r.err and "z.txt" in r.err and "Traceback" not in r.err
    finally:
        (tree / "locked").chmod(0o755)
        (tree / "z.txt").chmod(0o644)
    node_cli.ok("rm", "t/z.txt")  # stored by the first put, while it was readable
    _all_readable(node_cli, {"t/a.txt": b"a", "t/sub/b.txt": b"b"})
