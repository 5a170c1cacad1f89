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
    args = ["token", "add", name, "--scope", scope] + (["--prefix", prefix] if prefix else [])
    return cli.doc(*args)["token"]


@pytest.fixture
def node(tmp_path: Path) -> Cli:
    """An initialised, unsealed node with the default chunk sizes."""
    work = tmp_path / "work"
    work.mkdir()
    c = Cli(tmp_path / "home", cwd=work)
    c.init(small=False)
    return c


@pytest.fixture
def server(node: Cli) -> Iterator[Server]:
    """`mosaic serve --http` on the node, with tokens admin, writer, reader and docs (read,
    prefix "docs")."""
    tokens = {"admin": add_token(node, "admin", "admin"), "writer": add_token(node, "writer", "write"),
              "reader": add_token(node, "reader", "read"),
              "docs": add_token(node, "docs", "read", "docs")}
    s = start_server(node)
    s.tokens.update(tokens)
    try:
        yield s
    finally:
        s.stop()


def env_for_children() -> dict[str, str]:
    env = mosaic_env()
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2]) + os.pathsep + env.get("PYTHONPATH", "")
    return env
