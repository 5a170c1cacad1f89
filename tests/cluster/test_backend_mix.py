"""Three daemons with different backend sets (issue 10, Why 4 and acceptance): A has no
backend, B a dir backend, C an S3 backend (moto on 127.0.0.1). A file put on any of them
can be read on each of the others within 5 s.

Before, B's and C's manifests carried location hints naming their backends, and a node
trusted a hint for a backend it does not have: the file was listed, `exists` said present,
but it was never fetched and could never be read. Now a hint names the backend's ID (its
identity marker) and is used only by a node that has that very backend; the others want
the chunks from peers.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest

from tests.backends import _servers

from .conftest import Cluster, MosaicNode, wait_until

pytestmark = pytest.mark.slow  # daemons and moto as subprocesses

BOUND_S = 5.0
REGION = "us-east-1"


@pytest.fixture
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
                ) -> Iterator[str]:
    """A moto S3 server with bucket `mosaic`; AWS credentials for it in the environment."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAMOSAICCLUSTER")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "mosaic-cluster-" + os.urandom(8).hex())
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    for k in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "HTTP_PROXY", "HTTPS_PROXY", "http_proxy",
              "https_proxy"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    with _servers.moto_server(tmp_path_factory.mktemp("moto"), {"AWS_DEFAULT_REGION": REGION}
                              ) as endpoint:
        import boto3
        boto3.client("s3", endpoint_url=endpoint, region_name=REGION).create_bucket(Bucket="mosaic")
        yield endpoint


def _readable(node: MosaicNode, name: str, data: bytes) -> bool:
    return node.get_bytes(name) == data


def test_a_file_put_anywhere_is_read_everywhere(cluster: Cluster, s3_endpoint: str) -> None:
    a, b, c = cluster.add_nodes("A", "B", "C")
    b.ok("backend", "add", "dir", "nas", cluster.root / "nas")
    c.ok("backend", "add", "s3", "cloud", "--bucket", "mosaic", "--endpoint", s3_endpoint,
         "--region", REGION)
    # files stored and uploaded before the nodes replicate: their log entries (written when
    # `peer add` enables replication) carry location hints for B's and C's backends
    early = {}
    for src in (b, c):
        data = os.urandom(200_000) + f"early on {src.name}\n".encode()
        early[src.name] = (src.put_bytes(data, f"early/{src.name}.bin"), data)
        src.ok("upload")
    cluster.link((a, b), (b, c), (a, c))
    assert b.doc("export", "--all")["locations"], "B's early file has no backend location"
    cluster.start()
    wait_until(lambda: all(x.connected_to(y) for x in (a, b, c) for y in (a, b, c) if x is not y),
               20, "all sessions", diagnose=cluster.logs)
    for src_name, (fid, data) in early.items():
        for dst in (a, b, c):
            if dst.name != src_name:
                wait_until(lambda dst=dst, fid=fid, data=data: _readable(dst, fid, data), BOUND_S,
                           f"{src_name}'s early file on {dst.name}", interval=0.05,
                           diagnose=cluster.logs)
    waits = {}
    for src in (a, b, c):
        data = os.urandom(300_000) + f"from {src.name}\n".encode()
        name = f"mix/{src.name}.bin"
        fid = src.put_bytes(data, name)
        if src is not a:  # let the backend copy (and its hint) exist before the others look
            src.ok("upload")
        t0 = time.monotonic()
        for dst in (a, b, c):
            if dst is src:
                continue
            wait_until(lambda dst=dst, name=name, data=data: _readable(dst, name, data), BOUND_S,
                       f"{name} readable on {dst.name}", interval=0.05, diagnose=cluster.logs)
            assert dst.run("exists", fid).rc == 0
        waits[src.name] = time.monotonic() - t0
    print("seconds until readable on both others:", {k: round(v, 2) for k, v in waits.items()})
