"""Disaster recovery: a lost home is rebuilt from the index copy on an S3 bucket.

A node with an S3 (moto) and a dir backend stores files, removes one and renames
one (each change adds one log object to the index copy on both backends, not a
snapshot). A fresh home joined with the exported key (`init --key-file`) adds the same
bucket and runs `recover --from` it: every remaining file comes back byte-identical
by name and by hash, the renamed one under its new name only, the removed one is gone.
"""

from __future__ import annotations

import random
from pathlib import Path

from .conftest import Node, S3Server, assert_same_tree, b3, make_tree, new_node, put_hashes


def test_recover_from_s3(s3_servers, tmp_path: Path) -> None:  # noqa: ANN001
    srv: S3Server = s3_servers("mosaic-recover")
    old = new_node(tmp_path, "old-home")
    old.init_node("--pack-size", "1MiB")
    assert old.add_s3("offsite", srv).rc == 0
    old.add_dir("nas", tmp_path / "nas")

    tree = make_tree(tmp_path / "src" / "docs", seed=4, small=40, medium=6, large=2)
    r = old.ok("put", "-r", tree.root, "--name", "docs", timeout=120)
    hashes = put_hashes(r)
    assert len(hashes) == len(tree.files)
    # a second put session (a second index log object), from stdin
    rng = random.Random(4)
    extra = rng.randbytes(300_000) + b"tail"
    old.ok("put", "-", "--name", "misc/extra.bin", input=extra, timeout=60)
    files = {f"docs/{k}": v for k, v in tree.files.items()} | {"misc/extra.bin": extra}

    names = sorted(files)
    removed, moved = names[3], names[7]
    moved_to = "renamed/" + moved.replace("/", "-")
    old.ok("rm", removed, timeout=60)
    old.ok("mv", moved, moved_to, timeout=60)
    files.pop(removed)
    files[moved_to] = files.pop(moved)
    assert b3(tree.files[removed.removeprefix("docs/")]) not in {b3(v) for v in files.values()}, \
        "the removed file's content must not also be another file's"

    # the index copy grew by the changes: one snapshot (the first put), then a log per change
    copy = sorted(srv.objects("index/"), key=lambda k: k.rsplit("-", 1)[1])
    assert [k.rsplit("/", 1)[1].split("-")[0] for k in copy] == ["snap", "log", "log", "log"], copy
    assert sorted(n.name for n in (tmp_path / "nas" / "index").rglob("*")
                  if n.is_file()) == sorted(k.rsplit("/", 1)[1] for k in copy)

    key = tmp_path / "key.json"
    old.ok("key", "export", "-o", key, timeout=30)
    expected_ls = {e["name"]: e["hash"] for e in old.doc("ls", timeout=30)}  # type: ignore[union-attr]
    assert expected_ls == {n: b3(v) for n, v in files.items()}

    # ---- the old home is gone; a new one joins with the key and the bucket
    new: Node = new_node(tmp_path, "new-home")
    new.ok("init", "--no-passphrase", "--key-file", key, timeout=30)
    assert new.add_s3("offsite", srv).rc == 0
    res = new.doc("recover", "--from", "offsite", timeout=120)
    assert res["files"] == len(files) and res["names"] == len(files), res  # type: ignore[index]

    got_ls = {e["name"]: e["hash"] for e in new.doc("ls", timeout=30)}  # type: ignore[union-attr]
    assert got_ls == expected_ls
    # by name: every file, restored folder by folder
    for prefix in sorted({n.split("/", 1)[0] for n in files}):
        dest = tmp_path / "restored" / prefix
        new.ok("get", "-r", prefix, dest, timeout=120)
        assert_same_tree(dest, {n.split("/", 1)[1]: v for n, v in files.items()
                                if n.startswith(prefix + "/")})
    # by hash: the renamed one, the stdin one and a few others
    for name in [moved_to, "misc/extra.bin", *random.Random(5).sample(sorted(files), 4)]:
        data = files[name]
        assert new.ok("get", b3(data), "-", timeout=60).out == data, name
    gone = b3(tree.files[removed.removeprefix("docs/")])
    for ref in (removed, moved, gone):
        r = new("get", ref, "-", timeout=60)
        assert r.rc == 1, f"{ref} should be gone after recovery: {r}"
    assert new("exists", gone, timeout=30).rc == 1
    doc = new.doc("verify", "--all", timeout=120)
    assert doc["ok"] and doc["files"] == len(files), doc  # type: ignore[index]
    # the recovered node carries on: a new put lands on the bucket too
    new.ok("put", "-", "--name", "after-recovery.txt", input=b"written after recovery\n", timeout=60)
    assert new.ok("get", "after-recovery.txt", "-", timeout=30).out == b"written after recovery\n"
