"""Real clusters on loopback: node homes made with the `mosaic` CLI, daemons as subprocesses.

Every node is a separate home under the test's tmp_path; all nodes of a cluster share one key
(`init --key-file`), which peers require. Each daemon runs `mosaic serve` in its own process
on 127.0.0.1 with a port picked up front (so peers can be told the address before the daemon
starts, and a restarted daemon comes back on the same address). Readiness is detected by
polling HOME/daemon.json (the pid must be the new process's) and the "ready:" log line, with a
deadline. Every daemon still running at teardown is killed (SIGTERM, then SIGKILL).

Every wait in this package is bounded: `wait_until` polls with an explicit deadline.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import pytest

from tests.conftest import MOSAIC_CMD, run_mosaic
from tests.conftest import Result as Run

REPO = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
CLI_TIMEOUT = 60.0
READY_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0

T = TypeVar("T")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def cli_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("MOSAIC_KEY_FILE_PASSPHRASE", None)
    env.pop("MOSAIC_DEBUG", None)
    return env


def run_cli(args: Sequence[str | os.PathLike], *, input: bytes | None = None,
            timeout: float = CLI_TIMEOUT) -> Run:
    """`mosaic ARGS` with the cluster tests' environment, from the checkout."""
    # exec, not the fork server: with it (CLI runs no longer pause ~0.1 s to import) the
    # hostile-peer tests failed in 2 of 7 suite runs on the A-B session closing at start-up.
    # That was the daemons' duplicate-connection close, logged as a warning (now a Bye,
    # daemon.py); exec stays until more runs with the fork server confirm it was the only cause
    return run_mosaic(args, input=input, env=cli_env(), cwd=REPO, timeout=timeout, fork=False)


def parallel(calls: Sequence[Callable[[], T]]) -> list[T]:
    """Run independent (CLI-bound) callables at once; results in order."""
    with ThreadPoolExecutor(max_workers=max(1, len(calls))) as pool:
        return list(pool.map(lambda f: f(), calls))


def wait_until(pred: Callable[[], T], timeout: float, what: str, *, interval: float = 0.1,
               diagnose: Callable[[], str] | None = None) -> tuple[float, T]:
    """Poll `pred` until it returns something truthy; (seconds waited, that value).
    AssertionError after `timeout` seconds (the deadline is checked after every poll)."""
    start = time.monotonic()
    deadline = start + timeout
    last: object = None
    while True:
        last = pred()
        if last:
            return time.monotonic() - start, last  # type: ignore[return-value]
        if time.monotonic() >= deadline:
            extra = ("\n" + diagnose()) if diagnose else ""
            raise AssertionError(f"timed out after {timeout:.1f} s waiting for {what}; "
                                 f"last value: {str(last)[:2000]}{extra}")
        time.sleep(interval)


class MosaicNode:
    """One node home, its CLI, and (optionally) its running daemon."""

    def __init__(self, name: str, home: Path, log_path: Path):
        self.name = name
        self.home = home
        self.log_path = log_path
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.log_start = 0  # log offset where the current daemon run began
        self.id = ""  # dashed node ID text, set by the cluster

    def __repr__(self) -> str:
        return f"MosaicNode({self.name}, port={self.port})"

    # ---- identity ----------------------------------------------------------
    @property
    def addr(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def id_hex(self) -> str:
        return self.id.replace("-", "")

    @property
    def id_bytes(self) -> bytes:
        return bytes.fromhex(self.id_hex)

    @property
    def log_tag(self) -> str:
        """How the daemon's log names this node (first 16 hex digits)."""
        return self.id_hex[:16]

    # ---- CLI ---------------------------------------------------------------
    def run(self, *args: str | os.PathLike, json: bool = False, input: bytes | None = None,
            timeout: float = CLI_TIMEOUT) -> Run:
        pre = ["--home", str(self.home)] + (["--json"] if json else [])
        return run_cli([*pre, *args], input=input, timeout=timeout)

    def ok(self, *args: str | os.PathLike, **kw) -> Run:  # noqa: ANN003
        r = self.run(*args, **kw)
        assert r.rc == 0, f"[{self.name}] {r}"
        return r

    def doc(self, *args: str | os.PathLike, **kw) -> object:  # noqa: ANN003
        return self.ok(*args, json=True, **kw).json()

    def put_bytes(self, data: bytes, name: str) -> str:
        """Store `data` under `name` (via stdin); its hash."""
        doc = self.doc("put", "-", "--name", name, input=data)
        assert isinstance(doc, dict) and len(doc["files"]) == 1, doc
        return doc["files"][0]["hash"]

    def get_bytes(self, ref: str) -> bytes | None:
        """The file's bytes, or None if this node cannot return it yet."""
        r = self.run("get", ref, "-")
        if r.rc != 0:
            return None
        return r.out

    def ls(self) -> dict[str, str]:
        """name -> hash, from `ls --json`."""
        return {e["name"]: e["hash"] for e in self.doc("ls")}  # type: ignore[union-attr]

    def file_ids(self) -> set[str]:
        """The file IDs of every manifest, from `export --all`."""
        doc = self.ok("export", "--all").json()
        return {f["id"] for f in doc["files"]}  # type: ignore[index]

    def export_doc(self) -> dict:
        doc = self.ok("export", "--all").json()
        assert isinstance(doc, dict)
        doc.pop("exported", None)
        doc.pop("mac", None)  # covers "exported": differs between two dumps of one state
        return doc

    def snapshot(self) -> tuple[dict[str, str], set[str]]:
        """(ls names -> hashes, export file ids), read concurrently."""
        names, ids = parallel([self.ls, self.file_ids])
        return names, ids

    # ---- daemon ------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = READY_TIMEOUT) -> float:
        """Start `mosaic serve` and wait until it is ready; seconds it took."""
        assert not self.running, f"{self.name} already runs"
        self.log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
        t0 = time.monotonic()
        with open(self.log_path, "ab") as logf:
            self.proc = subprocess.Popen(
                [*MOSAIC_CMD, "--home", str(self.home), "serve",
                 "--listen", self.addr],
                stdin=subprocess.DEVNULL, stdout=logf, stderr=logf, env=cli_env(), cwd=REPO,
                start_new_session=True)
        proc = self.proc

        def ready() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"daemon {self.name} exited with {proc.returncode}:\n"
                                     f"{self.log()}")
            try:
                doc = json.loads((self.home / "daemon.json").read_text())
            except (OSError, ValueError):
                return False
            return (doc.get("pid") == proc.pid and doc.get("ready") is True
                    and "ready: node" in self.log())

        wait_until(ready, timeout, f"daemon {self.name} to be ready", interval=0.05,
                   diagnose=self.log)
        return time.monotonic() - t0

    def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM and wait (bounded); the exit code. SIGKILL if it does not stop in time."""
        assert self.proc is not None
        proc, self.proc = self.proc, None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout)
            raise AssertionError(f"daemon {self.name} ignored SIGTERM for {timeout} s\n"
                                 f"{self.log()}") from None

    def kill(self) -> None:
        """SIGKILL, no cleanup."""
        assert self.proc is not None
        proc, self.proc = self.proc, None
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=STOP_TIMEOUT)

    def log(self, whole: bool = False) -> str:
        """The daemon log (of the current run, unless `whole`)."""
        try:
            data = self.log_path.read_bytes()
        except OSError:
            return ""
        return data[0 if whole else self.log_start:].decode("utf-8", "replace")

    def log_lines(self, pattern: str, whole: bool = True) -> list[str]:
        rx = re.compile(pattern)
        return [ln for ln in self.log(whole).splitlines() if rx.search(ln)]

    def connected_to(self, other: MosaicNode) -> bool:
        """Whether this run's log says a session with `other` came up."""
        return f"peer {other.log_tag} connected" in self.log()


class Cluster:
    """Nodes sharing one key, under one folder."""

    def __init__(self, root: Path):
        self.root = root
        self.nodes: list[MosaicNode] = []
        self.key_file = root / "key.json"

    def add_node(self, name: str, *init_args: str) -> MosaicNode:
        node = MosaicNode(name, self.root / name, self.root / f"{name}.log")
        if not self.nodes:
            node.ok("init", "--no-passphrase", *init_args)
            node.ok("key", "export", "-o", self.key_file)
        else:
            node.ok("init", "--no-passphrase", "--key-file", self.key_file, *init_args)
        node.id = node.ok("id").text.strip()
        self.nodes.append(node)
        return node

    def add_nodes(self, *names: str) -> list[MosaicNode]:
        first, rest = names[0], names[1:]
        out = [self.add_node(first)]
        # the others only need the key file: init them at once
        nodes = [MosaicNode(n, self.root / n, self.root / f"{n}.log") for n in rest]
        parallel([lambda n=n: n.ok("init", "--no-passphrase", "--key-file", self.key_file)
                  for n in nodes])
        ids = parallel([lambda n=n: n.ok("id").text.strip() for n in nodes])
        for n, i in zip(nodes, ids, strict=True):
            n.id = i
            self.nodes.append(n)
        return out + nodes

    @staticmethod
    def trust(a: MosaicNode, b: MosaicNode, dial: bool = True) -> None:
        """`a` trusts `b` (and dials it, if `dial`)."""
        a.ok("peer", "add", f"{b.id}@{b.addr}" if dial else b.id)

    def link(self, *pairs: tuple[MosaicNode, MosaicNode]) -> None:
        """Peer each pair both ways (each side dials the other)."""
        # peer add writes the node's own LMDB: run per node sequentially, nodes in parallel
        by_node: dict[str, list[Callable[[], None]]] = {}
        for (a, b) in pairs:
            by_node.setdefault(a.name, []).append(lambda a=a, b=b: self.trust(a, b))
            by_node.setdefault(b.name, []).append(lambda a=a, b=b: self.trust(b, a))
        parallel([lambda fs=fs: [f() for f in fs] for fs in by_node.values()])

    def start(self, *nodes: MosaicNode) -> None:
        parallel([n.start for n in nodes or self.nodes])

    def close(self) -> None:
        for n in self.nodes:
            if n.proc is not None and n.proc.poll() is None:
                n.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 5
        for n in self.nodes:
            if n.proc is None:
                continue
            try:
                n.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                n.proc.kill()
                n.proc.wait(timeout=STOP_TIMEOUT)
            n.proc = None

    def logs(self) -> str:
        return "\n".join(f"---- {n.name} ({n.id[:17]}) ----\n{n.log(whole=True)[-6000:]}"
                         for n in self.nodes)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """An empty cluster; every daemon it started is stopped at teardown."""
    c = Cluster(tmp_path)
    try:
        yield c
    finally:
        c.close()


def converged(nodes: Sequence[MosaicNode]) -> tuple[dict[str, str], set[str]] | None:
    """The common (names, file ids) if every node shows the same, else None."""
    snaps = parallel([n.snapshot for n in nodes])
    first = snaps[0]
    return first if all(s == first for s in snaps[1:]) else None
