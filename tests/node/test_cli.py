"""End-to-end tests of the `mosaic` command line, through real subprocesses."""

from __future__ import annotations

import json
import os
import random
import shutil
import stat
import subprocess
from pathlib import Path

import blake3
import pytest

from tests.conftest import (
    PASSPHRASE,
    SMALL_CHUNKS,
    Cli,
    assert_one_line_error,
    mosaic_env,
)


def b3(data: bytes) -> str:
    return blake3.blake3(data).hexdigest()


def packs_size(home: Path) -> tuple[int, int]:
    """(number of pack files, total bytes) in the local store."""
    files = [p for p in (home / "packs").rglob("*") if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files)


def export_doc(cli: Cli, *refs: str) -> dict:
    r = cli.ok("export", *(refs or ("--all",)))
    return json.loads(r.out)


def flip_byte_in_chunk(cli: Cli, ref: str, chunk_index: int = 0) -> str:
    """Corrupt one byte inside the stored object of a file's chunk; returns the chunk ID."""
    doc = export_doc(cli, ref)
    cid = doc["files"][0]["chunks"][chunk_index][0]
    loc = doc["locations"][cid]
    pack = cli.home / "packs" / loc["pack"][:2] / loc["pack"]
    with open(pack, "r+b") as f:
        f.seek(loc["offset"] + loc["stored_length"] // 2)
        b = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([b[0] ^ 0x5A]))
    return cid


# ---- init --------------------------------------------------------------------------------

def test_init_with_passphrase(cli: Cli) -> None:
    doc = cli.doc("init", *SMALL_CHUNKS)
    assert doc["sealed"] is True
    assert doc["chunking"] == {"min": 1024, "avg": 4096, "max": 16384}
    assert len(doc["key_id"]) == 16
    assert Path(doc["home"]) == cli.home
    key = cli.home / "key.json"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    kd = json.loads(key.read_text())
    assert kd["sealed"] is True and "master" not in kd and kd["key_id"] == doc["key_id"]
    assert PASSPHRASE not in key.read_text()
    cli.ok("ls")
    # wrong or missing passphrase: exit 4, one line
    assert "passphrase" in assert_one_line_error(cli("ls", env=mosaic_env(MOSAIC_PASSPHRASE="nope")), 4)
    assert_one_line_error(cli("ls", env=mosaic_env(MOSAIC_PASSPHRASE=None)), 4)
    # a second init refuses
    assert_one_line_error(cli("init"), 2)  # usage: the README says 6 is "home missing"
    assert_one_line_error(cli("init", "--no-passphrase"), 2)  # usage: the README says 6 is "home missing"


def test_init_without_passphrase(cli: Cli) -> None:
    env = mosaic_env(MOSAIC_PASSPHRASE=None)
    doc = cli.doc("init", "--no-passphrase", env=env)
    assert doc["sealed"] is False
    key = cli.home / "key.json"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert json.loads(key.read_text())["sealed"] is False
    for d in ("index", "packs", "tmp"):
        assert stat.S_IMODE((cli.home / d).stat().st_mode) & 0o077 == 0
    assert stat.S_IMODE(cli.home.stat().st_mode) & 0o077 == 0
    cli.ok("ls", env=env)
    (cli.cwd / "f").write_bytes(b"abc")
    assert cli.ok("put", "f", env=env).text.split()[0] == b3(b"abc")


def test_init_needs_a_passphrase_source(cli: Cli) -> None:
    r = cli("init", env=mosaic_env(MOSAIC_PASSPHRASE=None))
    assert_one_line_error(r, 2)
    assert not (cli.home / "key.json").exists()


@pytest.mark.parametrize("args", [("--chunk-min", "10"), ("--chunk-avg", "64MiB"),
                                  ("--chunk-min", "64KiB", "--chunk-avg", "4KiB"),
                                  ("--pack-size", "lots")])
def test_init_rejects_bad_sizes(cli: Cli, args: tuple[str, ...]) -> None:
    assert_one_line_error(cli("init", "--no-passphrase", *args), 2)
    assert not (cli.home / "key.json").exists()


def test_init_in_a_non_empty_folder_refuses(cli: Cli) -> None:
    cli.home.mkdir()
    (cli.home / "precious.txt").write_text("do not touch")
    assert_one_line_error(cli("init", "--no-passphrase"), 2)
    assert sorted(p.name for p in cli.home.iterdir()) == ["precious.txt"]


def test_join_with_a_sealed_key_file_and_no_passphrase(tmp_path: Path) -> None:
    """README: a sealed key file is opened with MOSAIC_KEY_FILE_PASSPHRASE, else MOSAIC_PASSPHRASE.

    That must hold when the joining node itself is unsealed (--no-passphrase) too.
    """
    a, b = Cli(tmp_path / "a"), Cli(tmp_path / "b")
    a.init(passphrase=True)
    a.ok("key", "export", "-o", tmp_path / "a.key")
    r = b("init", "--no-passphrase", "--key-file", tmp_path / "a.key")
    assert r.rc == 0, str(r)
    assert b.doc("info")["key_id"] == a.doc("info")["key_id"]


def test_join_with_the_wrong_key_file_passphrase(tmp_path: Path) -> None:
    a, b = Cli(tmp_path / "a"), Cli(tmp_path / "b")
    a.init(passphrase=True)
    a.ok("key", "export", "-o", tmp_path / "a.key")
    r = b("init", "--key-file", tmp_path / "a.key", env=mosaic_env(MOSAIC_KEY_FILE_PASSPHRASE="x"))
    assert_one_line_error(r, 4)
    r = b("init", "--key-file", tmp_path / "a.key",
          env=mosaic_env(MOSAIC_KEY_FILE_PASSPHRASE=PASSPHRASE, MOSAIC_PASSPHRASE="other one"))
    assert r.rc == 0, str(r)
    # b is sealed under its own passphrase
    b.ok("ls", env=mosaic_env(MOSAIC_PASSPHRASE="other one"))
    assert_one_line_error(b("ls"), 4)
    # and refuses to overwrite a key file on export
    assert_one_line_error(a("key", "export", "-o", tmp_path / "a.key"), 2)


# ---- put ---------------------------------------------------------------------------------

def test_put_prints_the_b3sum(node_cli: Cli) -> None:
    rng = random.Random(1)
    files = {"empty": b"", "one": b"x", "random.bin": rng.randbytes(100_000),
             "text.txt": b"".join(b"%d bottles of beer\n" % i for i in range(20_000))}
    for name, data in files.items():
        (node_cli.cwd / name).write_bytes(data)
        r = node_cli.ok("put", name)
        assert r.text == f"{b3(data)}  {name}\n"
        assert r.err == ""
        if shutil.which("b3sum"):
            ref = subprocess.run(["b3sum", name], cwd=node_cli.cwd, capture_output=True,
                                 timeout=30, check=True)
            assert r.out == ref.stdout
    doc = node_cli.doc("put", "random.bin", "text.txt")
    assert [f["hash"] for f in doc["files"]] == [b3(files["random.bin"]), b3(files["text.txt"])]
    assert [f["name"] for f in doc["files"]] == ["random.bin", "text.txt"]
    assert doc["size"] == len(files["random.bin"]) + len(files["text.txt"])
    for name, data in files.items():
        assert node_cli.ok("get", name, "-").out == data


def test_put_names(node_cli: Cli) -> None:
    w = node_cli.cwd
    (w / "sub").mkdir()
    (w / "sub" / "f.txt").write_bytes(b"f")
    node_cli.ok("put", "./sub/f.txt")
    node_cli.ok("put", str(w / "sub" / "f.txt"))  # absolute: leading / dropped
    node_cli.ok("put", "sub/f.txt", "--name", "renamed/f")
    names = [e["name"] for e in node_cli.doc("ls")]
    assert "sub/f.txt" in names and "renamed/f" in names
    assert str(w / "sub" / "f.txt").lstrip("/") in names
    assert_one_line_error(node_cli("put", "sub/f.txt", "sub/f.txt", "--name", "x"), 2)
    assert_one_line_error(node_cli("put", "sub/f.txt", "--name", "../escape"), 2)
    assert_one_line_error(node_cli("put", "no-such-file"), 1)


def _make_tree(root: Path, seed: int = 2) -> dict[str, bytes]:
    rng = random.Random(seed)
    files = {
        "a.txt": b"alpha\n" * 1000,
        "empty": b"",
        "sub/b.bin": rng.randbytes(70_000),
        "sub/deeper/c.bin": rng.randbytes(5_000),
        "sub dir/naïve café.txt": "unicode ✓\n".encode() * 50,
        "sub/deeper/dup-of-b.bin": b"",
    }
    files["sub/deeper/dup-of-b.bin"] = files["sub/b.bin"]
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return files


def test_put_r_and_get_r(node_cli: Cli, tmp_path: Path) -> None:
    files = _make_tree(node_cli.cwd / "tree")
    r = node_cli.ok("put", "-r", "tree")
    lines = set(r.text.splitlines())
    assert lines == {f"{b3(d)}  tree/{rel}" for rel, d in files.items()}
    listed = {e["name"]: (e["hash"], e["size"]) for e in node_cli.doc("ls", "tree/")}
    assert listed == {f"tree/{rel}": (b3(d), len(d)) for rel, d in files.items()}
    out = tmp_path / "restored"
    doc = node_cli.doc("get", "-r", "tree", out)
    assert doc["files"] == len(files)
    for rel, data in files.items():
        assert (out / rel).read_bytes() == data
    # a sub-prefix restores relative to itself
    node_cli.ok("get", "-r", "tree/sub", tmp_path / "part")
    assert (tmp_path / "part" / "deeper" / "c.bin").read_bytes() == files["sub/deeper/c.bin"]
    assert not (tmp_path / "part" / "a.txt").exists()
    # --name renames the tree
    node_cli.ok("put", "-r", "tree", "--name", "backup/2026")
    assert {e["name"] for e in node_cli.doc("ls", "backup/2026/")} == {
        f"backup/2026/{rel}" for rel in files}
    assert_one_line_error(node_cli("put", "tree"), 2)  # a folder without -r
    assert_one_line_error(node_cli("get", "-r", "nothing/here", tmp_path / "x"), 1)


def test_put_from_stdin(node_cli: Cli) -> None:
    data = random.Random(4).randbytes(150_000)
    r = node_cli.ok("put", "-", "--name", "std/in.bin", input=data)
    assert r.text == f"{b3(data)}  std/in.bin\n"
    assert node_cli.ok("get", "std/in.bin", "-").out == data
    r = node_cli.ok("put", "-", input=b"anonymous")
    h = r.text.split()[0]
    assert h == b3(b"anonymous")
    assert node_cli.ok("cat", h).out == b"anonymous"
    r = node_cli.ok("put", "-", "--name", "std/empty", input=b"")
    assert r.text.split()[0] == b3(b"")
    assert node_cli.ok("cat", "std/empty").out == b""


# ---- get ---------------------------------------------------------------------------------

def test_get_by_hash_and_name(node_cli: Cli, tmp_path: Path) -> None:
    data = random.Random(5).randbytes(90_000)
    (node_cli.cwd / "file.bin").write_bytes(data)
    h = node_cli.ok("put", "file.bin").text.split()[0]
    assert node_cli.ok("get", h).out == data  # default: stdout
    assert node_cli.ok("get", h, "-").out == data
    assert node_cli.ok("get", h.upper(), "-").out == data
    assert node_cli.ok("get", "file.bin", "-").out == data
    assert node_cli.ok("cat", "file.bin").out == data
    doc = node_cli.doc("get", "file.bin", tmp_path / "out" / "copy.bin")
    assert doc == {"hash": h, "dest": str(tmp_path / "out" / "copy.bin"), "bytes": len(data)}
    assert (tmp_path / "out" / "copy.bin").read_bytes() == data
    node_cli.ok("get", h, tmp_path / "by-hash")
    assert (tmp_path / "by-hash").read_bytes() == data
    # into an existing folder: the file's name
    node_cli.ok("get", h, tmp_path / "out")
    assert (tmp_path / "out" / "file.bin").read_bytes() == data
    # overwrite an existing file atomically, leaving no temp files
    (tmp_path / "old").write_bytes(b"old content")
    node_cli.ok("get", "file.bin", tmp_path / "old")
    assert (tmp_path / "old").read_bytes() == data
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_get_ranges(node_cli: Cli) -> None:
    data = random.Random(6).randbytes(120_000)
    (node_cli.cwd / "r.bin").write_bytes(data)
    node_cli.ok("put", "r.bin")
    chunks = export_doc(node_cli, "r.bin")["files"][0]["chunks"]
    assert len(chunks) > 5
    bounds, pos = [], 0
    for _, n in chunks:
        pos += n
        bounds.append(pos)
    b1, b3_ = bounds[0], bounds[2]
    size = len(data)
    ranges = [(0, 0), (0, 1), (0, 10), (b1 - 1, 2), (b1, chunks[1][1]), (b1 - 100, b3_ - b1 + 200),
              (b1 + 1, 3 * 16384), (size - 10, 10), (size - 10, 100), (size, 5), (size + 5, 10),
              (12345, None), (size - 1, None), (size + 1, None), (0, size), (0, size * 2)]
    for off, length in ranges:
        args = ["get", "r.bin", "-", "--offset", str(off)]
        if length is not None:
            args += ["--length", str(length)]
        got = node_cli.ok(*args).out
        want = data[off:] if length is None else data[off:off + length]
        assert got == want, (off, length)
    node_cli.ok("get", "r.bin", node_cli.cwd / "part", "--offset", str(b1 - 3), "--length", "7")
    assert (node_cli.cwd / "part").read_bytes() == data[b1 - 3:b1 + 4]
    r = node_cli("get", "r.bin", "-", "--offset", "-1")
    assert r.rc == 2 and "Traceback" not in r.err


# ---- ls, stat, exists --------------------------------------------------------------------

def test_ls_and_stat(node_cli: Cli) -> None:
    rng = random.Random(7)
    w = node_cli.cwd
    block = rng.randbytes(20_000)
    (w / "a").mkdir()
    (w / "a" / "rep.bin").write_bytes(block * 5)
    (w / "a" / "text.txt").write_bytes(b"compress me please\n" * 5000)
    (w / "b.bin").write_bytes(block + rng.randbytes(30_000))
    node_cli.ok("put", "-r", "a")
    node_cli.ok("put", "b.bin")
    ls = node_cli.doc("ls")
    assert [e["name"] for e in ls] == ["a/rep.bin", "a/text.txt", "b.bin"]
    assert [e["name"] for e in node_cli.doc("ls", "a/")] == ["a/rep.bin", "a/text.txt"]
    assert node_cli.doc("ls", "zzz") == []
    plain = node_cli.ok("ls").text.splitlines()
    assert len(plain) == 3 and plain[2].split() == [b3((w / "b.bin").read_bytes()), "50000", "b.bin"]

    st = node_cli.doc("stat", "a/rep.bin")
    chunks = export_doc(node_cli, "a/rep.bin")["files"][0]["chunks"]
    assert st["hash"] == b3(block * 5)
    assert st["names"] == ["a/rep.bin"]
    assert st["size"] == 100_000
    assert st["chunks"] == len(chunks)
    assert st["distinct_chunks"] == len({c for c, _ in chunks}) < st["chunks"]
    assert st["repeated_bytes_in_file"] > 0
    assert st["shared_bytes"] > 0  # b.bin starts with the same block
    assert st["dedup_saving_bytes"] >= st["repeated_bytes_in_file"]
    assert st["cached_fraction"] == 1.0 and st["locations"] == {"local": 1.0}
    assert 0 < st["stored_bytes"] < st["size"]
    for k in ("created_ns", "compression_ratio"):
        assert k in st
    t = node_cli.doc("stat", "a/text.txt")
    assert t["compression_ratio"] > 5
    assert node_cli.doc("stat", st["hash"]) == node_cli.doc("stat", "a/rep.bin")
    text = node_cli.ok("stat", "a/rep.bin").text
    assert st["hash"] in text and "cached fraction" in text


def test_exists(node_cli: Cli) -> None:
    (node_cli.cwd / "f").write_bytes(b"exists")
    h = node_cli.ok("put", "f").text.split()[0]
    r = node_cli.ok("exists", h)
    assert r.text.strip() == "present"
    assert node_cli.ok("exists", h.upper()).rc == 0
    assert node_cli.doc("exists", h) == {"hash": h, "exists": True}
    r = node_cli("exists", b3(b"never stored"))
    assert r.rc == 1 and r.err == "" and r.text.strip() == "absent"
    r = node_cli("exists", b3(b"never stored"), json=True)
    assert r.rc == 1 and r.json() == {"hash": b3(b"never stored"), "exists": False}
    for bad in ("abc", h[:-1], h + "0", "g" * 64, "f"):
        assert_one_line_error(node_cli("exists", bad), 2)


# ---- rm, mv, dedup, gc -------------------------------------------------------------------

def test_rm_and_mv(node_cli: Cli) -> None:
    w = node_cli.cwd
    (w / "a").write_bytes(b"file a" * 1000)
    (w / "b").write_bytes(b"file b" * 1000)
    ha = node_cli.ok("put", "a").text.split()[0]
    hb = node_cli.ok("put", "b").text.split()[0]
    node_cli.ok("put", "b", "--name", "b2")
    assert node_cli.doc("rm", "a") == {"removed": ["a"]}
    assert_one_line_error(node_cli("get", "a", "-"), 1)
    assert_one_line_error(node_cli("get", ha, "-"), 1)  # its last name went, so did the file
    assert node_cli("exists", ha).rc == 1
    assert_one_line_error(node_cli("rm", "a"), 1)
    # a file with two names survives losing one
    node_cli.ok("rm", "b")
    assert node_cli.ok("get", "b2", "-").out == b"file b" * 1000
    # mv
    assert node_cli.doc("mv", "b2", "dir/b3") == {"old": "b2", "new": "dir/b3"}
    assert node_cli.ok("get", "dir/b3", "-").out == b"file b" * 1000
    assert_one_line_error(node_cli("get", "b2", "-"), 1)
    assert_one_line_error(node_cli("mv", "b2", "x"), 1)
    assert [e["name"] for e in node_cli.doc("ls")] == ["dir/b3"]
    # mv over an existing name: the replaced file stays reachable by its hash
    (w / "c").write_bytes(b"file c")
    hc = node_cli.ok("put", "c").text.split()[0]
    node_cli.ok("mv", "c", "dir/b3")
    assert node_cli.ok("cat", "dir/b3").out == b"file c"
    assert node_cli.ok("cat", hb).out == b"file b" * 1000
    # rm HASH removes the file and all its names
    node_cli.ok("put", "c", "--name", "c-again")
    removed = node_cli.doc("rm", hc)["removed"]
    assert sorted(removed) == ["c-again", "dir/b3"]
    assert node_cli("exists", hc).rc == 1
    assert node_cli.doc("ls") == []
    node_cli.ok("verify", "--all")


def test_same_content_twice_stores_nothing_new(node_cli: Cli) -> None:
    data = random.Random(8).randbytes(200_000)
    (node_cli.cwd / "f").write_bytes(data)
    first = node_cli.doc("put", "f")
    assert first["new_bytes"] > len(data)
    before = packs_size(node_cli.home)
    again = node_cli.doc("put", "f")
    assert again["new_bytes"] == 0
    assert again["files"][0]["new_chunks"] == 0 and again["files"][0]["new_bytes"] == 0
    other = node_cli.doc("put", "f", "--name", "other-name")
    assert other["new_bytes"] == 0
    both = node_cli.doc("put", "-", "--name", "stdin-copy", input=data)
    assert both["new_bytes"] == 0 and both["files"][0]["hash"] == b3(data)
    assert packs_size(node_cli.home) == before
    # the same content twice in one put is stored once
    fresh = random.Random(9).randbytes(100_000)
    (node_cli.cwd / "g1").write_bytes(fresh)
    (node_cli.cwd / "g2").write_bytes(fresh)
    doc = node_cli.doc("put", "g1", "g2")
    assert doc["files"][1]["new_bytes"] == 0
    assert doc["new_bytes"] < len(fresh) + 100 * 64


def test_gc_after_rm(node_cli: Cli) -> None:
    w = node_cli.cwd
    rng = random.Random(10)
    (w / "x").write_bytes(rng.randbytes(150_000))
    (w / "y").write_bytes(rng.randbytes(150_000))
    node_cli.ok("put", "x")
    node_cli.ok("put", "y")
    before = packs_size(node_cli.home)
    dry0 = node_cli.doc("gc", "--dry-run")
    assert dry0["dead_chunks"] == 0 and dry0["bytes_freed"] == 0 and dry0["dry_run"] is True
    node_cli.ok("rm", "x")
    dry = node_cli.doc("gc", "--dry-run")
    assert dry["dead_chunks"] > 0 and dry["packs_deleted"] == 1 and dry["bytes_freed"] > 150_000
    assert packs_size(node_cli.home) == before  # a dry run changes nothing
    real = node_cli.doc("gc")
    assert real["dead_chunks"] == dry["dead_chunks"] and real["packs_deleted"] == 1
    after = packs_size(node_cli.home)
    assert after[0] == before[0] - 1 and before[1] - after[1] == real["bytes_freed"]
    assert node_cli.doc("verify", "--all")["ok"] is True
    assert node_cli.ok("cat", "y").out == (w / "y").read_bytes()
    assert node_cli.doc("gc")["dead_chunks"] == 0
    assert "removed 0 unreferenced chunks" in node_cli.ok("gc").text


def test_gc_repacks_partly_dead_packs(node_cli: Cli) -> None:
    w = node_cli.cwd
    rng = random.Random(11)
    (w / "x").write_bytes(rng.randbytes(150_000))
    (w / "y").write_bytes(rng.randbytes(150_000))
    node_cli.ok("put", "x", "y")  # one put: one pack holds both
    n, size = packs_size(node_cli.home)
    assert n == 1
    node_cli.ok("rm", "x")
    rep = node_cli.doc("gc")
    assert rep["packs_repacked"] == 1 and rep["bytes_freed"] >= 150_000
    n2, size2 = packs_size(node_cli.home)
    assert n2 == 1 and size2 < size - 150_000
    node_cli.ok("verify", "--all")
    assert node_cli.ok("cat", "y").out == (w / "y").read_bytes()
    # the dead content can be stored again
    node_cli.ok("put", "x")
    assert node_cli.ok("cat", "x").out == (w / "x").read_bytes()
    node_cli.ok("verify", "--all")


# ---- verify and corruption ---------------------------------------------------------------

def test_verify_detects_a_corrupt_pack_byte(node_cli: Cli, tmp_path: Path) -> None:
    rng = random.Random(12)
    (node_cli.cwd / "good").write_bytes(rng.randbytes(40_000))
    (node_cli.cwd / "victim").write_bytes(rng.randbytes(60_000))
    node_cli.ok("put", "good")
    node_cli.ok("put", "victim")
    assert node_cli.doc("verify", "--all") == {"files": 2, "bytes": 100_000, "errors": [], "ok": True}
    cid = flip_byte_in_chunk(node_cli, "victim", 2)
    r = node_cli("verify", "--all")
    assert r.rc == 3, str(r)
    assert cid[:16] in r.err and "Traceback" not in r.err
    assert "problem" in r.text  # the chunk (and the pack holding it) are reported
    r = node_cli("verify", "--all", json=True)
    assert r.rc == 3
    doc = r.json()
    # the pack (its ID no longer matches) and the chunk in it are both reported
    assert doc["ok"] is False and any(cid[:16] in e for e in doc["errors"])
    node_cli.ok("verify", "good")
    assert node_cli("verify", "victim").rc == 3
    # reading it fails the same way, one line, and leaves no partial file
    line = assert_one_line_error(node_cli("get", "victim", "-"), 3)
    assert cid[:16] in line
    assert_one_line_error(node_cli("cat", "victim"), 3)
    assert_one_line_error(node_cli("get", "victim", tmp_path / "out.bin"), 3)
    assert list(tmp_path.glob("*out.bin*")) == []
    # ranges that avoid the bad chunk still work; ranges that touch it do not
    chunks = export_doc(node_cli, "victim")["files"][0]["chunks"]
    assert node_cli.ok("get", "victim", "-", "--length", str(chunks[0][1])).out == \
        (node_cli.cwd / "victim").read_bytes()[:chunks[0][1]]
    start = chunks[0][1] + chunks[1][1]
    assert_one_line_error(node_cli("get", "victim", "-", "--offset", str(start), "--length", "1"), 3)


def test_verify_usage(node_cli: Cli) -> None:
    assert_one_line_error(node_cli("verify"), 2)
    assert_one_line_error(node_cli("verify", "--all", "x"), 2)
    assert node_cli.doc("verify", "--all") == {"files": 0, "bytes": 0, "errors": [], "ok": True}


# ---- --json everywhere -------------------------------------------------------------------

def test_every_command_prints_json(cli: Cli, tmp_path: Path) -> None:
    def j(*args: str | os.PathLike, rc: int = 0) -> object:
        r = cli(*args, json=True)
        assert r.rc == rc, str(r)
        return json.loads(r.out)  # exactly one valid document

    assert isinstance(j("init", "--no-passphrase", *SMALL_CHUNKS), dict)
    w = cli.cwd
    (w / "f").write_bytes(b"json " * 1000)
    (w / "d").mkdir()
    (w / "d" / "g").write_bytes(b"gee")
    h = j("put", "f")["files"][0]["hash"]
    j("put", "-r", "d")
    r = cli("put", "-", "--name", "s", input=b"stdin", json=True)
    assert r.rc == 0 and json.loads(r.out)["files"][0]["name"] == "s"
    j("get", "f", tmp_path / "out")
    j("get", "-r", "d", tmp_path / "outdir")
    assert isinstance(j("ls"), list)
    j("stat", "f")
    j("exists", h)
    j("exists", b3(b"nope"), rc=1)
    j("mv", "s", "s2")
    j("rm", "s2")
    j("verify", "--all")
    j("verify", h)
    assert json.loads(cli.ok("export", "--all", json=True).out)["format"] == "mosaic-manifests"
    cli.ok("export", "--all", "-o", tmp_path / "dump.json")
    j("import", tmp_path / "dump.json")
    j("gc", "--dry-run")
    j("gc")
    j("cache")
    j("backend", "add", "dir", "b", tmp_path / "bk")
    j("backend", "ls")
    j("put", "d/g", "--name", "uploaded")
    j("put", "-r", "d", "--name", "later", "--no-wait")
    j("status")
    j("upload")
    j("repair")
    assert isinstance(j("config"), dict)
    j("config", "get", "cache_capacity")
    assert j("verify", "--all", "--backends")["ok"] is True
    j("cache", "trim", "--to", "0")
    j("warm", "--all")
    j("warm", h)
    j("backend", "rm", "b", "--force")
    j("info")
    j("key", "export", "-o", tmp_path / "k.json")
    # errors in --json mode: a JSON document on stdout, the one line on stderr
    for args, code in [(("get", b3(b"unknown"), "-"), 1), (("exists", "zz"), 2),
                       (("cat", "no/such/name"), 1), (("init",), 2)]:
        r = cli(*args, json=True)
        assert_one_line_error(r, code)
        doc = json.loads(r.out)
        assert doc["exit_code"] == code and doc["error"] in r.err
