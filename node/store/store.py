"""`Store`: the local content-addressed store opened on a node home.

It owns the keys, the chunking parameters, the LMDB index, the local packs and
the worker pool; the modules of this package (ingest, restore, verify, transfer)
take a `Store`. The layers above install hooks (`hooks.py`) for what the store
cannot know: remote copies, pack placement and the replication log.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..errors import NotFoundError, StorageError, UsageError
from ..units import is_hash
from . import keys as keymod
from .chunker import ChunkParams
from .home import Config, Home, check_name, default_home
from .hooks import RemoteReads
from .index import LOCAL, Index
from .keys import Keys
from .packs import LocalPacks
from .records import Manifest

log = logging.getLogger("mosaic")
MIN_PACK = 64 * 1024  # smaller packs cost a backend request per few chunks
MAX_PACK = 256 * 1024 * 1024  # a pack is read whole by scrub, repair and warm


class Store:
    """A node's local store. Use as a context manager or call close()."""

    def __init__(self, home: Home, config: Config, master: bytes):
        self.home = home
        self.config = config
        self.keys = keymod.derive_keys(master)
        self.chunk_params = ChunkParams(config.chunk_min, config.chunk_avg, config.chunk_max,
                                        seed=self.keys.chunker_seed).validate()
        self.index = Index(home.index_dir)
        self.local = LocalPacks(home)
        self.pool = ThreadPoolExecutor(max(1, config.workers), thread_name_prefix="mosaic-work")
        #: installed by the cloud layer (None: a purely local store)
        self.remote: RemoteReads | None = None
        self._touched: set[bytes] = set()

    # ---- lifecycle ---------------------------------------------------------
    @classmethod
    def create(cls, home: str | Path | None = None, *, passphrase: str | None = None,
               no_passphrase: bool = False, key_file: str | Path | None = None,
               key_file_passphrase: str | None = None, chunk_min: int | None = None,
               chunk_avg: int | None = None, chunk_max: int | None = None,
               pack_size: int | None = None, cache_capacity: int | None = None) -> Store:
        """Create a node home: config, index, local store and the sealed master key."""
        h = Home(Path(home) if home else default_home())
        if h.exists():
            raise UsageError(f"{h.root} is already a Mosaic node")
        if h.root.exists() and any(h.root.iterdir()):
            raise UsageError(f"{h.root} exists and is not empty")
        if not no_passphrase and not passphrase:
            raise UsageError("a passphrase is required (or use --no-passphrase)")
        defaults = ChunkParams()
        if key_file is not None:
            doc = keymod.read_key_file(Path(key_file))
            kp = key_file_passphrase if key_file_passphrase is not None else passphrase
            master = keymod.unseal(doc, kp if keymod.is_sealed(doc) else None)
            sizes = doc.get("params", {}).get("chunking", {})
            if chunk_min or chunk_avg or chunk_max:
                raise UsageError("chunk sizes come from the key file when joining with --key-file")
            chunk_min, chunk_avg, chunk_max = sizes.get("min"), sizes.get("avg"), sizes.get("max")
            if not all(isinstance(x, int) for x in (chunk_min, chunk_avg, chunk_max)):
                raise UsageError("the key file does not carry chunk sizes")
        else:
            master = keymod.new_master_key()
        avg = chunk_avg or defaults.avg_size
        params = ChunkParams(chunk_min or min(defaults.min_size, avg // 4 * 2),
                             avg, chunk_max or max(defaults.max_size, avg * 4)
                             ).validate().check_sendable()
        if params.min_size % 2:
            raise UsageError("chunk min size must be an even number of bytes "
                             "(FastCDC looks for cut points two bytes at a time)")
        if pack_size is not None and not MIN_PACK <= pack_size <= MAX_PACK:
            raise UsageError(f"pack size must be between {MIN_PACK // 1024} KiB and "
                             f"{MAX_PACK // (1024 * 1024)} MiB")
        if cache_capacity is not None and cache_capacity < 0:
            raise UsageError("cache capacity cannot be negative")
        extra = {k: v for k, v in (("pack_size", pack_size), ("cache_capacity", cache_capacity))
                 if v is not None}
        cfg = Config(chunk_min=params.min_size, chunk_avg=params.avg_size,
                     chunk_max=params.max_size, node_tag=os.urandom(8).hex(), **extra)
        h.create_dirs()
        keymod.write_key_file(h.key_path, keymod.seal(master, None if no_passphrase else passphrase,
                                                      {"chunking": params.sizes()}))
        h.write_config(cfg)
        return cls(h, cfg, master)

    @classmethod
    def open(cls, home: str | Path | None = None, *, passphrase: str | None = None) -> Store:
        """Open an initialised home; the passphrase defaults to $MOSAIC_PASSPHRASE."""
        h = Home(Path(home) if home else default_home())
        h.require()
        cfg = h.read_config()
        doc = keymod.read_key_file(h.key_path)
        if passphrase is None:
            passphrase = os.environ.get("MOSAIC_PASSPHRASE")
        return cls(h, cfg, keymod.unseal(doc, passphrase))

    def close(self) -> None:
        """Flush access times, stop workers, close the index."""
        if self._touched:
            try:
                self.index.touch_packs(self._touched)
            except StorageError:
                pass
            self._touched.clear()
        self.pool.shutdown(wait=True)
        self.local.close()
        self.index.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- resolving ---------------------------------------------------------
    def resolve(self, ref: str) -> Manifest:
        """A hash or a name -> its manifest; NotFoundError or UsageError otherwise."""
        if is_hash(ref.lower()) and len(ref) == 64:
            m = self.index.get_manifest(bytes.fromhex(ref.lower()))
            if m is not None:
                return m
        try:
            name = check_name(ref)
        except UsageError:
            name = None
        if name is not None:
            fid = self.index.resolve_name(name)
            if fid is not None:
                m = self.index.get_manifest(fid)
                if m is not None:
                    return m
        if is_hash(ref.lower()):
            raise NotFoundError(f"unknown hash: {ref.lower()}")
        if len(ref) >= 16 and all(c in "0123456789abcdefABCDEF" for c in ref):
            raise UsageError(f"malformed hash: {ref!r} (expected 64 hex digits) and no such name")
        raise NotFoundError(f"no such name: {ref}")

    # ---- chunk sources (used by restore) -----------------------------------
    def has_local_pack(self, pid: bytes) -> bool:
        """True if the pack is in the local store."""
        return self.local.has(pid)

    def remote_copies(self, pid: bytes, offset: int, length: int,
                      skip: set[str] | None = None) -> Iterator[tuple[bytes, str]]:
        """Ranges of a pack held elsewhere (through the `remote` hook), best first."""
        if self.remote is not None:
            yield from self.remote.remote_copies(pid, offset, length, skip)

    def note_bad_copy(self, pid: bytes, where: str, reason: str = "corrupt") -> None:
        """Report a corrupt or missing copy; it is queued for `mosaic repair`."""
        log.info("bad copy of pack %s in %s: %s (queued for repair)", pid.hex()[:16], where, reason)
        target = where[len("backend "):] if where.startswith("backend ") else LOCAL
        try:
            with self.index.write() as txn:
                self.index.queue_repair(txn, pid, target, reason)
        except StorageError:
            pass

    def touch(self, pids: set[bytes]) -> None:
        """Note local reads of packs, flushed to the index at close (LRU)."""
        self._touched |= pids


class StoreParts:
    """The parts of `self.store` by name, for the objects built on a Store (Cloud, Engine)."""

    store: Store

    @property
    def home(self) -> Home:
        """The node's home folder."""
        return self.store.home

    @property
    def config(self) -> Config:
        """The node's settings (config.toml)."""
        return self.store.config

    @property
    def keys(self) -> Keys:
        """The keys derived from the master key (never printed)."""
        return self.store.keys

    @property
    def index(self) -> Index:
        """The LMDB index."""
        return self.store.index

    @property
    def local(self) -> LocalPacks:
        """The local pack files."""
        return self.store.local
