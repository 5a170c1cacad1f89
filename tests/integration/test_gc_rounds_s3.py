"""The three-node gc rounds of tests/cloud/test_gc_rounds.py on one S3 bucket (moto)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from mosaic import Node
from mosaic.node.store.home import BackendConfig
from tests.cloud.test_gc_rounds import run_world

from .conftest import REGION, S3Server


def test_random_rounds_on_s3(s3_servers, tmp_path: Path) -> None:  # noqa: ANN001
    srv: S3Server = s3_servers("mosaic-gc-rounds")
    backend = BackendConfig("s3", "s3", {"bucket": srv.bucket, "endpoint": srv.endpoint,
                                         "region": REGION})
    nodes: list[Node] = []
    first: Node | None = None
    try:
        for name in ("a", "b", "c"):
            if first is None:
                n = Node.init(tmp_path / name, no_passphrase=True, pack_size=64 * 1024,
                              chunk_min=2048, chunk_avg=8192, chunk_max=32768)
            else:  # chunk sizes come from the key file
                n = Node.init(tmp_path / name, no_passphrase=True, key_file=first.home.key_path,
                              pack_size=64 * 1024)
            n.home.write_config(replace(n.config, backends=(backend,)))
            n.close()
            n = Node.open(tmp_path / name)
            nodes.append(n)
            first = first or n

        def stored() -> dict[bytes, tuple[int, int]]:
            return {bytes.fromhex(k.rsplit("/", 1)[1]): (size, 1)
                    for k, size in srv.objects("packs/").items()}
        run_world(nodes, stored, 40, 7)
        assert not srv.objects("gc/marks/")
    finally:
        for n in nodes:
            n.close()
