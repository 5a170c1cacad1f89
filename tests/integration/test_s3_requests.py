"""Many small files cost few S3 requests: at most one PUT per 4 MiB stored, on average.

~2,000 small generated files (text and random, 1-40 KiB) are put in one `put -r` to
a node whose only backend is one moto S3 endpoint, with the node's default pack size.

How requests are counted: the node talks to moto through a tiny counting HTTP proxy
on 127.0.0.1 (a thread in this process) that forwards each request unchanged and
tallies it by method. Counting at the wire is exact whatever the node does: it sees
overwrites of the same key (counting objects would not), it needs no moto internals
(moto's request recorder also stores every body and appends from many threads
without a lock), and moto does not check signatures, so forwarding the signed
requests through another port is transparent. As a cross-check, every object in
the bucket must have needed at least one counted PUT.
"""

from __future__ import annotations

import http.client
import http.server
import random
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import MiB, Node, S3Server, Tree, text_bytes

N_FILES = 2000
_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "expect", "te", "upgrade"}


class CountingProxy:
    """A forwarding HTTP/1.1 proxy to one upstream host that counts requests by method."""

    def __init__(self, upstream_port: int):
        self.counts: Counter[str] = Counter()
        self.put_paths: list[str] = []
        self.problems: list[str] = []
        lock = threading.Lock()
        local = threading.local()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, and answers `Expect: 100-continue`

            def _forward(self) -> None:
                if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                    with lock:
                        proxy.problems.append(f"chunked body on {self.command} {self.path}")
                    self.send_error(501, "chunked bodies are not supported by the test proxy")
                    return
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else None
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
                conn = getattr(local, "conn", None)
                for attempt in (0, 1):  # a pooled upstream connection may have been closed
                    if conn is None:
                        conn = local.conn = http.client.HTTPConnection("127.0.0.1", upstream_port, timeout=60)
                    try:
                        conn.request(self.command, self.path, body=body, headers=headers)
                        resp = conn.getresponse()
                        data = resp.read()
                        break
                    except (ConnectionError, http.client.HTTPException):
                        conn.close()
                        conn = local.conn = None
                        if attempt:
                            raise
                with lock:
                    proxy.counts[self.command] += 1
                    if self.command == "PUT":
                        proxy.put_paths.append(self.path)
                self.send_response_only(resp.status, resp.reason)
                for k, v in resp.getheaders():
                    if k.lower() not in _HOP and k.lower() != "content-length":
                        self.send_header(k, v)
                length = resp.getheader("Content-Length") if self.command == "HEAD" else None
                self.send_header("Content-Length", length or str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> CountingProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def proxied_s3(s3_servers) -> Iterator[tuple[S3Server, S3Server, CountingProxy]]:  # noqa: ANN001
    """(direct server, the same server seen through the proxy, the proxy)."""
    srv: S3Server = s3_servers("mosaic-requests")
    with CountingProxy(srv.port) as proxy:
        yield srv, S3Server(proxy.url, srv.bucket, srv.pid), proxy


def _small_files(root: Path, seed: int) -> Tree:
    rng = random.Random(seed)
    t = Tree(root)
    for i in range(N_FILES):
        rel = f"pkg{i % 23}/mod{i % 101}/file-{i:05d}" + (".py" if i % 4 else ".bin")
        size = rng.randint(1024, 40 << 10)
        t.add(rel, text_bytes(rng, size) if i % 4 else rng.randbytes(size))
    return t


def test_small_files_cost_few_puts(node: Node, proxied_s3, tmp_path: Path) -> None:  # noqa: ANN001
    direct, via_proxy, proxy = proxied_s3
    node.init_node()
    r = node.add_s3("s3", via_proxy)
    assert r.rc == 0, str(r)
    assert proxy.counts["GET"] >= 1, "the proxy saw no traffic: the node bypasses it"

    tree = _small_files(tmp_path / "corpus", seed=6)
    proxy.counts.clear()
    proxy.put_paths.clear()
    r = node.ok("put", "-r", tree.root, "--name", "corpus", timeout=180)
    assert len(r.text.splitlines()) == N_FILES
    assert node.pending_uploads() == 0

    objects = {k: v for k, v in direct.objects().items() if k != "mosaic-backend.json"}
    stored = sum(objects.values())
    puts = proxy.counts["PUT"]
    print(f"{N_FILES} files, {tree.size / MiB:.1f} MiB of files, {stored / MiB:.1f} MiB stored in "
          f"{len(objects)} objects; requests during put: {dict(proxy.counts)}")
    assert not proxy.problems, proxy.problems
    assert puts >= len(objects), f"{len(objects)} objects but only {puts} PUTs seen: the count is wrong"
    assert stored > 8 * MiB, "the corpus should fill a few 4 MiB units"
    assert puts <= max(1, stored / (4 * MiB)), (
        f"{puts} PUTs for {stored / MiB:.1f} MiB stored: more than one PUT per 4 MiB "
        f"(PUT paths: {proxy.put_paths[:10]})")
