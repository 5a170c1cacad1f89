"""End-to-end fixtures: CLI nodes and real S3 (moto) / WebDAV (wsgidav) servers.

Servers are started with the helpers of `tests/backends/_servers.py` (imported,
not copied), always on 127.0.0.1. Every `mosaic` call is a subprocess with a
timeout, and every wait here is bounded. A missing server package FAILS the run
(the helpers say what to install); nothing is skipped.
"""

from __future__ import annotations

import contextlib
import os
import random
import secrets
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import blake3
import boto3
import botocore.config
import pytest

from tests.backends import _servers
from tests.conftest import MOSAIC_CMD, Cli, Result, mosaic_env

REGION = "us-east-1"
#: credentials the nodes are given for moto (moto accepts any); random per run so
#: the secret scans cannot match something that merely looks alike
AWS_KEY_ID = "AKIAMOSAIC" + secrets.token_hex(5).upper()
AWS_SECRET = "mosaic-it-secret-" + secrets.token_hex(16)
MiB = 1 << 20


# ---------------------------------------------------------------- environment

@pytest.fixture(autouse=True)
def _integration_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """AWS credentials for moto in the environment (as the README says), nothing
    from the user's ~/.aws, and no HTTP proxy between us and 127.0.0.1."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", AWS_KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", AWS_SECRET)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    for k in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL", "HTTP_PROXY", "HTTPS_PROXY",
              "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy", "MOSAIC_WEBDAV_PASSWORD"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


# ---------------------------------------------------------------- S3 servers

def _child_pid(port: int) -> int:
    """The pid of the moto server child of this process listening on `port`."""
    me = os.getpid()
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            argv = (d / "cmdline").read_bytes().split(b"\0")
            ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if ppid == me and b"moto.server" in argv and str(port).encode() in argv:
            return int(d.name)
    raise RuntimeError(f"no moto server child of pid {me} on port {port}")


@dataclass
class S3Server:
    """A moto S3 server process with one bucket."""

    endpoint: str
    bucket: str
    pid: int
    paused: bool = False

    @property
    def port(self) -> int:
        return int(self.endpoint.rsplit(":", 1)[1])

    def client(self) -> Any:
        cfg = botocore.config.Config(connect_timeout=5, read_timeout=30,
                                     retries={"total_max_attempts": 2, "mode": "standard"})
        return boto3.client("s3", endpoint_url=self.endpoint, region_name=REGION,
                            aws_access_key_id=AWS_KEY_ID, aws_secret_access_key=AWS_SECRET,
                            config=cfg)

    def objects(self, prefix: str = "") -> dict[str, int]:
        """key -> size of every object under `prefix`."""
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return {o["Key"]: int(o["Size"]) for p in pages for o in p.get("Contents", ())}

    def pack_ids(self) -> set[str]:
        """Hex IDs of the packs stored (keys packs/xx/<id>)."""
        return {k.rsplit("/", 1)[1] for k in self.objects("packs/")}

    def read(self, key: str) -> bytes:
        return self.client().get_object(Bucket=self.bucket, Key=key)["Body"].read()

    def write(self, key: str, data: bytes) -> None:
        self.client().put_object(Bucket=self.bucket, Key=key, Body=data)

    def delete(self, key: str) -> None:
        self.client().delete_object(Bucket=self.bucket, Key=key)

    def pause(self) -> None:
        """SIGSTOP: the port still accepts connections but nothing answers (a hung
        service); the process keeps its objects."""
        os.kill(self.pid, signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        if self.paused:
            os.kill(self.pid, signal.SIGCONT)
            self.paused = False


@pytest.fixture
def s3_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A factory: `start(bucket="mosaic", env=None)` -> a running S3Server (stopped at teardown)."""
    started: list[S3Server] = []
    with contextlib.ExitStack() as stack:
        def start(bucket: str = "mosaic", env: dict[str, str] | None = None) -> S3Server:
            workdir = tmp_path_factory.mktemp("moto")
            endpoint = stack.enter_context(
                _servers.moto_server(workdir, {"AWS_DEFAULT_REGION": REGION, **(env or {})}))
            srv = S3Server(endpoint, bucket, _child_pid(int(endpoint.rsplit(":", 1)[1])))
            started.append(srv)
            srv.client().create_bucket(Bucket=bucket)
            return srv

        try:
            yield start
        finally:
            for s in started:  # a stopped process must run again to exit cleanly
                with contextlib.suppress(ProcessLookupError):
                    s.resume()


@dataclass(frozen=True)
class DavServer:
    url: str
    root: Path
    username: str
    password: str


@pytest.fixture
def dav_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DavServer]:
    """wsgidav with basic auth on 127.0.0.1, serving a fresh folder."""
    root = tmp_path_factory.mktemp("davroot")
    log = tmp_path_factory.mktemp("davlog") / "wsgidav.log"
    user, password = "mosaic-it", "davpw-" + secrets.token_hex(12)
    with _servers.wsgidav_server(root, log, user, password) as url:
        yield DavServer(url, root, user, password)


# ---------------------------------------------------------------- nodes

class Node(Cli):
    """`mosaic --home HOME ...` with helpers for backends and trees."""

    def init_node(self, *extra: str) -> Result:
        return self.ok("init", "--no-passphrase", *extra, timeout=30)

    def add_s3(self, name: str, srv: S3Server, *extra: str, env: dict[str, str] | None = None,
               timeout: float = 60) -> Result:
        return self("backend", "add", "s3", name, "--bucket", srv.bucket, "--endpoint", srv.endpoint,
                    "--region", REGION, *extra, env=env, timeout=timeout)

    def add_dir(self, name: str, path: Path, quota: str | None = None) -> Result:
        q = ["--quota", quota] if quota else []
        return self.ok("backend", "add", "dir", name, str(path), *q, timeout=30)

    def backends(self) -> dict[str, dict]:
        return {r["name"]: r for r in self.doc("backend", "ls", timeout=30)}  # type: ignore[union-attr]

    def pack_locations(self) -> dict[str, set[str]]:
        """pack hex -> backends holding it, for every pack a stored file uses (from `export`)."""
        r = self.ok("export", "--all", timeout=60)
        doc = r.json()
        out: dict[str, set[str]] = {}
        for loc in doc["locations"].values():  # type: ignore[index]
            out.setdefault(loc["pack"], set()).update(loc["backends"])
        return out

    def pending_uploads(self) -> int:
        st = self.doc("status", timeout=30)
        return sum(p["packs"] for p in st["pending"].values())  # type: ignore[index]


def new_node(tmp_path: Path, name: str = "home") -> Node:
    work = tmp_path / f"{name}-work"
    work.mkdir(parents=True, exist_ok=True)
    return Node(tmp_path / name, cwd=work)


@pytest.fixture
def node(tmp_path: Path) -> Node:
    """A CLI bound to a not-yet-initialised home."""
    return new_node(tmp_path)


# ---------------------------------------------------------------- data

def b3(data: bytes) -> str:
    """A file's Mosaic hash (plain BLAKE3, what b3sum prints)."""
    return blake3.blake3(data).hexdigest()


_WORDS = ("alpha beta gamma delta packs chunks backend quota replica durable moto bucket "
          "index manifest name tree random seed encrypt verify repair upload storage").split()


def text_bytes(rng: random.Random, size: int) -> bytes:
    """Compressible, line-structured text of about `size` bytes."""
    out: list[str] = []
    n = 0
    while n < size:
        line = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(3, 12))) + f" {rng.randint(0, 10**6)}\n"
        out.append(line)
        n += len(line)
    return "".join(out).encode()[:size]


@dataclass
class Tree:
    """Files written under `root`: relative name -> bytes."""

    root: Path
    files: dict[str, bytes] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return sum(len(v) for v in self.files.values())

    def add(self, rel: str, data: bytes) -> None:
        p = self.root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        self.files[rel] = data


def make_tree(root: Path, seed: int, *, small: int = 200, medium: int = 30, large: int = 3,
              small_max: int = 8192, medium_max: int = 64 << 10, large_max: int = 700 << 10) -> Tree:
    """A mixed tree: many small text files, some random ones, a few large random ones."""
    rng = random.Random(seed)
    t = Tree(root)
    for i in range(small):
        t.add(f"text/d{i % 7}/note-{i:04d}.txt", text_bytes(rng, rng.randint(100, small_max)))
    for i in range(medium):
        t.add(f"bin/blob-{i:03d}.bin", rng.randbytes(rng.randint(1024, medium_max)))
    for i in range(large):
        t.add(f"large/big-{i}.dat", rng.randbytes(rng.randint(large_max // 2, large_max)))
    return t


def assert_same_tree(dest: Path, files: dict[str, bytes]) -> None:
    """Every file of `files` is under `dest` with identical bytes, and nothing else is."""
    got = {p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file()}
    assert got == set(files), f"missing {sorted(set(files) - got)[:5]}, extra {sorted(got - set(files))[:5]}"
    bad = [rel for rel, data in files.items() if (dest / rel).read_bytes() != data]
    assert not bad, f"{len(bad)} files differ, e.g. {bad[:5]}"


def put_hashes(r: Result) -> dict[str, str]:
    """name -> hash from a `put` run's plain output (`HASH  NAME` lines)."""
    out = {}
    for line in r.text.splitlines():
        h, name = line.split("  ", 1)
        out[name] = h
    return out


def mosaic_argv(home: Path, *args: str) -> list[str]:
    """argv for running the CLI directly (for Popen, when a test needs the process)."""
    return [*MOSAIC_CMD, "--home", str(home), *args]


class Deadline:
    """A bounded wait: `while d.left(): ...`, failing the test with `what` on expiry."""

    def __init__(self, seconds: float, what: str):
        self.end = time.monotonic() + seconds
        self.what = what

    def left(self) -> float:
        return max(0.0, self.end - time.monotonic())

    def check(self) -> None:
        if time.monotonic() > self.end:
            pytest.fail(f"timed out: {self.what}", pytrace=False)


__all__ = ["AWS_KEY_ID", "AWS_SECRET", "MiB", "REGION", "DavServer", "Deadline", "Node", "S3Server",
           "Tree", "assert_same_tree", "b3", "make_tree", "mosaic_argv", "mosaic_env", "new_node",
           "put_hashes", "text_bytes"]
