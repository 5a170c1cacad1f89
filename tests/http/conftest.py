"""A real `mosaic serve --http` subprocess on loopback, a token for it, and an HTTP client.

The node is made with `mosaic init` (default chunk sizes, unsealed) in the test's tmp
folder; the daemon listens for peers on a free port and for HTTP on another. Readiness
is the OpenAPI document answering; every wait is bounded. The daemon is stopped with
SIGTERM (then SIGKILL) at teardown.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import MOSAIC_CMD, Cli, mosaic_env

HOST = "127.0.0.1"
READY_S = 30.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


@dataclass
class Server:
    """One running daemon with its HTTP face."""

    cli: Cli
    proc: subprocess.Popen
    port: int
    log: Path
    tokens: dict[str, str]

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def client(self, token: str | None = "admin", **kw) -> httpx.Client:  # noqa: ANN003
        headers = {"Authorization": f"Bearer {self.tokens[token]}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60.0, **kw)

    def rss_peak_mb(self) -> float:
        """The daemon's peak resident memory (VmHWM), MB."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        raise AssertionError("no VmHWM")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def start_server(cli: Cli, *extra: str, scheme: str = "http") -> Server:
    port = free_port()
    log = cli.home.parent / f"serve-{port}.log"
    with open(log, "wb") as f:
        proc = subprocess.Popen([*MOSAIC_CMD, "--home", str(cli.home), "serve", "--listen",
                                 f"{HOST}:{free_port()}", "--http", f"{HOST}:{port}", *extra],
                                stdout=f, stderr=subprocess.STDOUT, env=mosaic_env(),
                                stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + READY_S
    while True:
        try:
            r = httpx.get(f"{scheme}://{HOST}:{port}/v1/openapi.json", timeout=2, verify=False)
            if r.status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"the daemon did not come up:\n{log.read_text()[-3000:]}")
        time.sleep(0.1)
    return Server(cli, proc, port, log, {})


def add_token(cli: Cli, name: str, scope: str, prefix: str | None = None) -> str:
    """A token made by `mosaic token add` (the command line, as a user makes one)."""
    args = ["token", "add", name, "--scope", scope] + (["--prefix", prefix] if prefix else [])
    return cli.doc(*args)["token"]


def mint_tokens(home: Path, specs: dict[str, tuple[str, str]]) -> dict[str, str]:
    """name -> token for each name -> (scope, prefix), made in this process through the
    TokenStore `mosaic token add` uses (one index open instead of a CLI run per token;
    the command itself is tested in test_api_access.py)."""
    from mosaic.node.cluster.tokens import TokenStore
    from mosaic.node.store.index import Index
    index = Index(home / "index")
    try:
        store = TokenStore(index)
        return {name: store.add(name, scope, prefix)[0] for name, (scope, prefix) in specs.items()}
    finally:
        index.close()


STANDARD_TOKENS = {"admin": ("admin", ""), "writer": ("write", ""), "reader": ("read", ""),
                   "docs": ("read", "docs")}


def make_node(root: Path) -> Cli:
    """An initialised, unsealed node with the default chunk sizes under `root`."""
    work = root / "work"
    work.mkdir(parents=True)
    c = Cli(root / "home", cwd=work)
    c.init(small=False)
    return c


def serve_with_tokens(cli: Cli) -> Server:
    """`mosaic serve --http` on the node, with tokens admin, writer, reader and docs (read,
    prefix "docs")."""
    tokens = mint_tokens(cli.home, STANDARD_TOKENS)
    s = start_server(cli)
    s.tokens.update(tokens)
    return s


@pytest.fixture
def node(tmp_path: Path) -> Cli:
    """A fresh node for one test (for tests that start daemons with their own flags)."""
    return make_node(tmp_path)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One daemon shared by the tests of a module (see serve_with_tokens). Tests that
    share it leave their files under their own folders and compare counts before and
    after, never absolute ones."""
    s = serve_with_tokens(make_node(tmp_path_factory.mktemp("http-node")))
    try:
        yield s
    finally:
        s.stop()


def env_for_children() -> dict[str, str]:
    env = mosaic_env()
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2]) + os.pathsep + env.get("PYTHONPATH", "")
    return env
