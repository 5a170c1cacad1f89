"""The node home: where it is, its layout, its config, and its process lock.

    HOME/
      config.toml        node settings (chunk sizes, pack size, cache capacity, backends)
      key.json           the master key, sealed under the passphrase (or 0600 plain)
      index/             LMDB environment: manifests, chunks, packs, names, queues
      packs/xx/<id>      local pack files (the local chunk store and cache)
      tmp/               pack files being written
      lock               flock: shared by writers, exclusive for gc
"""

from __future__ import annotations

import fcntl
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import tomli_w

from mosaic.protocol import name_rules

from ..errors import BusyError, HomeError, UsageError
from .atomic import atomic_write as atomic_write  # re-exported: callers outside the store use it
from .atomic import fsync_dir as fsync_dir

CONFIG_VERSION = 1
DEFAULT_PACK_SIZE = 16 * 1024 * 1024
DEFAULT_CACHE_CAPACITY = 10 * 1024**3


def default_home() -> Path:
    """`$MOSAIC_HOME`, else `$XDG_DATA_HOME/mosaic`, else `~/.local/share/mosaic`."""
    env = os.environ.get("MOSAIC_HOME")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg) if xdg else Path.home() / ".local" / "share"
    return base / "mosaic"


@dataclass(frozen=True)
class BackendConfig:
    """One configured backend: its kind, name and non-secret options."""

    name: str
    kind: str
    options: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Config:
    """The node's settings, stored in config.toml."""

    chunk_min: int
    chunk_avg: int
    chunk_max: int
    pack_size: int = DEFAULT_PACK_SIZE
    compression_level: int = 3
    cache_capacity: int = DEFAULT_CACHE_CAPACITY
    workers: int = 2
    copies: int = 0  # 0: automatic (2 with at least 2 backends, else 1)
    node_tag: str = ""  # random, names this node's index copies on backends
    upload_parallel: int = 8
    cluster_copies: int = 1  # on how many nodes each file should be complete
    backends: tuple[BackendConfig, ...] = ()

    def effective_copies(self) -> int:
        """How many backends each pack goes to."""
        n = len(self.backends)
        if n == 0:
            return 0
        return min(self.copies, n) if self.copies else (2 if n >= 2 else 1)

    def to_toml(self) -> dict:
        """The TOML document for this config."""
        return {
            "version": CONFIG_VERSION,
            "chunking": {"min": self.chunk_min, "avg": self.chunk_avg, "max": self.chunk_max},
            "storage": {"pack_size": self.pack_size, "compression_level": self.compression_level,
                        "workers": self.workers, "copies": self.copies,
                        "upload_parallel": self.upload_parallel,
                        "cluster_copies": self.cluster_copies},
            "cache": {"capacity": self.cache_capacity},
            "node": {"tag": self.node_tag},
            "backends": [{"name": b.name, "kind": b.kind, **b.options} for b in self.backends],
        }

    @classmethod
    def from_toml(cls, doc: dict) -> Config:
        """Parse config.toml's document; HomeError if it is malformed."""
        try:
            if doc.get("version") != CONFIG_VERSION:
                raise HomeError(f"unsupported config version: {doc.get('version')!r}")
            ch, st = doc["chunking"], doc.get("storage", {})
            backends = tuple(
                BackendConfig(name=str(b["name"]), kind=str(b["kind"]),
                              options={k: v for k, v in b.items() if k not in ("name", "kind")})
                for b in doc.get("backends", []))
            return cls(chunk_min=int(ch["min"]), chunk_avg=int(ch["avg"]), chunk_max=int(ch["max"]),
                       pack_size=int(st.get("pack_size", DEFAULT_PACK_SIZE)),
                       compression_level=int(st.get("compression_level", 3)),
                       workers=int(st.get("workers", 2)),
                       copies=int(st.get("copies", 0)),
                       node_tag=str(doc.get("node", {}).get("tag", "")),
                       upload_parallel=int(st.get("upload_parallel", 8)),
                       cluster_copies=int(st.get("cluster_copies", 1)),
                       cache_capacity=int(doc.get("cache", {}).get("capacity", DEFAULT_CACHE_CAPACITY)),
                       backends=backends)
        except (KeyError, TypeError, ValueError) as e:
            raise HomeError(f"config.toml is malformed ({type(e).__name__}: {e})") from None


class Home:
    """Paths inside one node home."""

    def __init__(self, root: Path):
        self.root = Path(root).expanduser()
        self.config_path = self.root / "config.toml"
        self.key_path = self.root / "key.json"
        self.index_dir = self.root / "index"
        self.packs_dir = self.root / "packs"
        self.tmp_dir = self.root / "tmp"
        self.lock_path = self.root / "lock"

    def exists(self) -> bool:
        """True if this looks like an initialised node home."""
        return self.config_path.is_file() and self.key_path.is_file()

    def require(self) -> None:
        """HomeError unless the home is initialised."""
        if not self.root.exists():
            raise HomeError(f"no node home at {self.root} (run `mosaic init` or pass --home)")
        if not self.exists():
            raise HomeError(f"{self.root} is not an initialised Mosaic node (run `mosaic init`)")

    def create_dirs(self) -> None:
        """Make the home's folders (owner-only)."""
        for d in (self.root, self.index_dir, self.packs_dir, self.tmp_dir):
            d.mkdir(mode=0o700, parents=True, exist_ok=True)

    def read_config(self) -> Config:
        """Load config.toml."""
        try:
            doc = tomllib.loads(self.config_path.read_text("utf-8"))
        except FileNotFoundError:
            raise HomeError(f"missing {self.config_path}") from None
        except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise HomeError(f"cannot read {self.config_path}: {e}") from None
        return Config.from_toml(doc)

    def write_config(self, cfg: Config) -> None:
        """Write config.toml atomically (temp + fsync + rename)."""
        data = tomli_w.dumps(cfg.to_toml()).encode("utf-8")
        atomic_write(self.config_path, data, mode=0o600)

    def pack_path(self, pack_id: bytes) -> Path:
        """Where a local pack file lives."""
        h = pack_id.hex()
        return self.packs_dir / h[:2] / h


class HomeLock:
    """An flock on HOME/lock: every writer of the index shares it, gc takes it exclusively.

    The daemon (`daemon=True`) holds it shared for its whole life, and also holds HOME/serve.lock
    exclusively, so a second daemon is refused and an exclusive taker (gc) that finds the node
    busy can say that a daemon is running.
    """

    def __init__(self, home: Home, exclusive: bool, daemon: bool = False):
        self.home, self.exclusive, self.daemon, self.fd = home, exclusive, daemon, -1
        self.serve_fd = -1

    @property
    def serve_path(self) -> Path:
        return self.home.root / "serve.lock"

    def _daemon_running(self) -> bool:
        try:
            fd = os.open(self.serve_path, os.O_RDONLY)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return False
        except BlockingIOError:
            return True
        finally:
            os.close(fd)  # closing drops a probe lock we may have taken

    def __enter__(self) -> HomeLock:
        if self.daemon:
            self.serve_fd = os.open(self.serve_path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(self.serve_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(self.serve_fd)
                self.serve_fd = -1
                raise BusyError("node is busy: a daemon is already running on this node "
                                "(mosaic serve)") from None
        self.fd = os.open(self.home.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        op = fcntl.LOCK_EX if self.exclusive else fcntl.LOCK_SH
        try:
            fcntl.flock(self.fd, op | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self.fd)
            self.fd = -1
            self._release_serve()
            if not self.exclusive:
                what = "gc is running"
            elif self._daemon_running():
                what = "a daemon is running on this node (mosaic serve); stop it first"
            else:
                what = "another process is writing to this node"
            raise BusyError(f"node is busy: {what}; try again later") from None
        return self

    def _release_serve(self) -> None:
        if self.serve_fd >= 0:
            fcntl.flock(self.serve_fd, fcntl.LOCK_UN)
            os.close(self.serve_fd)
            self.serve_fd = -1

    def __exit__(self, *exc: object) -> None:
        if self.fd >= 0:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = -1
        self._release_serve()


def check_name(name: str) -> str:
    """The canonical form of a name given by a person (protocol/name_rules.py's rule);
    UsageError (exit 2, one line) if it is not a valid name."""
    try:
        return name_rules.check_name(name)
    except name_rules.InvalidName as e:
        raise UsageError(str(e)) from None
