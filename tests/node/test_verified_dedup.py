"""Verified dedup through the CLI (issue 10, Why 1): a dump that claims a file ID with a made-up
chunk list must not make a later `put` of the real file a no-op that gc then undoes."""

from __future__ import annotations

import json
import random
from pathlib import Path

import blake3

from mosaic.node.store.store import Store
from mosaic.node.store.transfer import export
from mosaic.protocol.manifest_json import seal_dump
from tests.conftest import Cli, assert_one_line_error


def _forged_dump(home: Path, real: bytes, decoy_name: str, claimed_name: str) -> str:
    """A dump sealed under the node's key (as a node holding wrong records would export it, or
    as a manifest from a peer arrives) that gives `real`'s file ID the decoy's chunk list."""
    with Store.open(home) as s:
        doc = json.loads(export(s, None))
        key = s.keys.dump_mac
    del doc["mac"]
    (f,) = [f for f in doc["files"] if decoy_name in f["names"]]
    f["id"], f["names"] = blake3.blake3(real).hexdigest(), [claimed_name]
    doc["files"] = [f]
    return seal_dump(json.dumps(doc, indent=1), key)


def test_a_claimed_manifest_is_replaced_by_the_put_and_survives_gc(node_cli: Cli) -> None:
    rng = random.Random(10)
    real, decoy = rng.randbytes(90_000), rng.randbytes(90_000)
    (node_cli.cwd / "decoy").write_bytes(decoy)
    (node_cli.cwd / "real").write_bytes(real)
    node_cli.ok("put", "decoy", "--name", "decoy")
    (node_cli.cwd / "forged.json").write_text(_forged_dump(node_cli.home, real, "decoy", "claimed"))
    node_cli.ok("import", "forged.json")
    h = blake3.blake3(real).hexdigest()
    assert_one_line_error(node_cli("get", h, "-"), 3)  # the claim is not the file
    put = node_cli.doc("put", "real", "--name", "real")
    assert put["files"][0]["hash"] == h and put["new_bytes"] > 0
    node_cli.ok("rm", "decoy")
    node_cli.ok("gc")
    assert node_cli.ok("get", "real", "-").out == real
    assert node_cli.ok("get", h, "-").out == real
    assert node_cli.ok("get", "claimed", "-").out == real  # the imported name now reads true
    node_cli.ok("verify", "--all")


def test_claimed_chunk_records_are_not_deduplicated_against(node_cli: Cli, tmp_path: Path) -> None:
    """The dump keeps the real chunk IDs but puts them in a pack this node does not have."""
    rng = random.Random(11)
    real = rng.randbytes(70_000)
    other = Cli(tmp_path / "other", cwd=node_cli.cwd)
    node_cli.ok("key", "export", "-o", tmp_path / "k.json")
    other.ok("init", "--no-passphrase", "--key-file", tmp_path / "k.json")
    (node_cli.cwd / "real").write_bytes(real)
    other.ok("put", "real", "--name", "real")
    with Store.open(other.home) as s:
        doc = json.loads(export(s, None))
        chunks = [[c.hex(), n] for c, n in s.resolve("real").chunks]
    del doc["mac"]
    for loc in doc["locations"].values():
        loc["pack"] = "ab" * 32  # a pack nobody has, on no backend
    # a dump brings chunk records with the files that list them: a decoy file lists them all
    doc["files"] = [{"id": "cd" * 32, "names": ["decoy"], "size": len(real),
                     "created": doc["exported"], "chunks": chunks}]
    with Store.open(node_cli.home) as s:
        text = seal_dump(json.dumps(doc, indent=1), s.keys.dump_mac)
    (node_cli.cwd / "claims.json").write_text(text)
    node_cli.ok("import", "claims.json")
    put = node_cli.doc("put", "real", "--name", "real")
    assert put["files"][0]["new_chunks"] == put["files"][0]["chunks"] > 0  # nothing deduplicated
    node_cli.ok("rm", "decoy")
    node_cli.ok("gc")
    assert node_cli.ok("get", "real", "-").out == real

