"""Chunk sizes the protocol can carry: `init` and joining (`init --key-file`) refuse a chunk
max whose stored objects would not fit one ChunkData blob (protocol/limits.MAX_BLOB_LEN)."""

from __future__ import annotations

import json
from pathlib import Path

from mosaic.node.store.chunker import MAX_SENDABLE
from mosaic.node.store.codec import OVERHEAD
from mosaic.protocol.limits import MAX_BLOB_LEN
from tests.conftest import Cli, assert_one_line_error


def test_the_limit_is_the_blob_limit_less_the_codec_overhead() -> None:
    assert MAX_SENDABLE + OVERHEAD == MAX_BLOB_LEN


def test_init_refuses_a_chunk_max_peers_cannot_receive(tmp_path: Path) -> None:
    for size in ("16MiB", str(MAX_SENDABLE + 1)):
        c = Cli(tmp_path / f"n{size}", cwd=tmp_path)
        line = assert_one_line_error(c("init", "--no-passphrase", "--chunk-avg", "4MiB",
                                       "--chunk-max", size), 2)
        assert "sync protocol" in line
        assert not c.home.exists()
    Cli(tmp_path / "ok", cwd=tmp_path).ok("init", "--no-passphrase", "--chunk-avg", "4MiB",
                                          "--chunk-max", str(MAX_SENDABLE))


def test_joining_with_a_key_file_of_too_large_chunks_is_refused(tmp_path: Path) -> None:
    a = Cli(tmp_path / "a", cwd=tmp_path)
    a.init()
    a.ok("key", "export", "-o", tmp_path / "a.key")
    doc = json.loads((tmp_path / "a.key").read_text())
    doc["params"]["chunking"].update(avg=4 << 20, max=16 << 20)  # as an older node wrote it
    (tmp_path / "big.key").write_text(json.dumps(doc))
    b = Cli(tmp_path / "b", cwd=tmp_path)
    line = assert_one_line_error(b("init", "--no-passphrase", "--key-file", tmp_path / "big.key"), 2)
    assert "sync protocol" in line and not b.home.exists()
