"""The Python API: `Node.open(home)` and the verbs the CLI offers."""

from __future__ import annotations

import io
import logging
import os
import stat
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from . import keys as keymod
from .chunker import ChunkParams
from .errors import CapacityError, HomeError, NotFoundError, StorageError, UsageError
from .home import Config, Home, HomeLock, check_name, default_home
from .index import LOCAL, Index, Manifest
from .ingest import Ingest, PendingPut, PutResult
from .outfile import Progress, make_folders, write_atomically
from .packs import LocalPacks
from .placement import BackendSpace
from .restore import (
    FileReader,
    group_small_files,
    read_range,
    read_verified,
    restore_into,
    restore_small_files,
)
from .units import is_hash, parse_hash

log = logging.getLogger("mosaic")
SMALL_RESTORE = 4 << 20  # files up to this size are restored in groups


@dataclass(frozen=True)
class NameEntry:
    """One entry of the name directory."""

    name: str
    file_id: bytes
    size: int


def _quota(options: dict) -> int | None:
    q = options.get("quota")
    return int(q) if q else None


class _HomeOrFile:
    """`Node.open(home)` on the class, `node.open(ref)` on an instance."""

    def __init__(self, on_class: classmethod, on_instance: Callable):
        self.on_class, self.on_instance = on_class, on_instance

    def __get__(self, obj: object, objtype: type | None = None) -> Callable:
        if obj is None:
            return self.on_class.__get__(None, objtype)
        return self.on_instance.__get__(obj, objtype)


class Node:
    """A Mosaic node opened on its home folder. Use as a context manager or call close()."""

    def __init__(self, home: Home, config: Config, master: bytes):
        self.home = home
        self.config = config
        self.keys = keymod.derive_keys(master)
        self.chunk_params = ChunkParams(config.chunk_min, config.chunk_avg, config.chunk_max,
                                        seed=self.keys.chunker_seed).validate()
        self.index = Index(home.index_dir)
        self.local = LocalPacks(home)
        self.pool = ThreadPoolExecutor(max(1, config.workers), thread_name_prefix="mosaic-work")
        self._hub = None
        self._hub_lock = threading.Lock()
        self._touched: set[bytes] = set()
        self.bad_copies: list[tuple[bytes, str]] = []

    # ---- lifecycle ---------------------------------------------------------
    @classmethod
    def init(cls, home: str | Path | None = None, *, passphrase: str | None = None,
             no_passphrase: bool = False, key_file: str | Path | None = None,
             key_file_passphrase: str | None = None, chunk_min: int | None = None,
             chunk_avg: int | None = None, chunk_max: int | None = None,
             pack_size: int | None = None, cache_capacity: int | None = None) -> Node:
        """Create a node home: config, index, local store and the sealed master key."""
        h = Home(Path(home) if home else default_home())
        if h.exists():
            raise HomeError(f"{h.root} is already a Mosaic node")
        if h.root.exists() and any(h.root.iterdir()):
            raise HomeError(f"{h.root} exists and is not empty")
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
                             avg, chunk_max or max(defaults.max_size, avg * 4)).validate()
        if params.min_size % 2:
            raise UsageError("chunk min size must be an even number of bytes "
                             "(FastCDC looks for cut points two bytes at a time)")
        cfg = Config(chunk_min=params.min_size, chunk_avg=params.avg_size, chunk_max=params.max_size,
                     node_tag=os.urandom(8).hex())
        if pack_size is not None:
            cfg = Config(**{**cfg.__dict__, "pack_size": pack_size})
        if cache_capacity is not None:
            cfg = Config(**{**cfg.__dict__, "cache_capacity": cache_capacity})
        h.create_dirs()
        keymod.write_key_file(h.key_path, keymod.seal(master, None if no_passphrase else passphrase,
                                                      {"chunking": params.sizes()}))
        h.write_config(cfg)
        return cls(h, cfg, master)

    @classmethod
    def open_home(cls, home: str | Path | None = None, *, passphrase: str | None = None) -> Node:
        """Open an initialised node; the passphrase defaults to $MOSAIC_PASSPHRASE."""
        h = Home(Path(home) if home else default_home())
        h.require()
        cfg = h.read_config()
        doc = keymod.read_key_file(h.key_path)
        if passphrase is None:
            passphrase = os.environ.get("MOSAIC_PASSPHRASE")
        master = keymod.unseal(doc, passphrase)
        return cls(h, cfg, master)

    def close(self) -> None:
        """Flush access times, stop workers and backends, close the index."""
        if self._touched:
            try:
                self.index.touch_packs(self._touched)
            except StorageError:
                pass
            self._touched.clear()
        if self._hub is not None:
            self._hub.close()
            self._hub = None
        self.pool.shutdown(wait=True)
        self.local.close()
        self.index.close()

    def __enter__(self) -> Node:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def hub(self):  # noqa: ANN201 - BackendHub, imported lazily
        """The backend hub (started on first use); None without backends."""
        if self._hub is None and self.config.backends:
            with self._hub_lock:
                if self._hub is None:
                    from .remote import BackendHub
                    from .secrets import load_secrets
                    self._hub = BackendHub(self.config.backends, load_secrets(self.home, self.keys))
        return self._hub

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

    # ---- put ---------------------------------------------------------------
    def put(self, source: str | Path | bytes | BinaryIO, name: str | None = None,
            progress: Progress | None = None) -> PutResult:
        """Store a file (path), bytes or a binary stream; returns once durable."""
        with self.ingest(progress) as ing:
            pending = ing.put_source(source, name)
        return pending.result()

    def ingest(self, progress: Progress | None = None, wait: bool = True,
               upload_progress: Progress | None = None) -> IngestSession:
        """A put session for many files: `with node.ingest() as s: s.put_source(...)`.

        With `wait` (the default) the session ends once every new pack is stored on
        `copies` backends; otherwise uploads stay queued (`mosaic upload` sends them).
        """
        return IngestSession(self, progress, wait, upload_progress)

    # ---- get ---------------------------------------------------------------
    def read(self, ref: str, offset: int = 0, length: int | None = None) -> Iterator[bytes]:
        """The file's bytes as chunks; a full read checks the whole-file hash."""
        m = self.resolve(ref)
        if offset == 0 and length is None:
            return read_verified(self, m)
        return read_range(self, m, offset, length)

    def get(self, ref: str, dest: str | Path | BinaryIO | None = None, offset: int = 0,
            length: int | None = None, progress: Progress | None = None) -> bytes | int:
        """Bytes of a file: returned (dest None), written to a stream, or to a path atomically."""
        if offset == 0 and length is None and isinstance(dest, (str, Path)):
            return self.get_to_path(self.resolve(ref), Path(dest), progress)
        chunks = self.read(ref, offset, length)
        if dest is None:
            return b"".join(chunks)
        if hasattr(dest, "write"):
            n = 0
            for c in chunks:
                dest.write(c)  # type: ignore[union-attr]
                n += len(c)
                if progress:
                    progress(len(c))
            return n
        return write_atomically(Path(dest), chunks, progress)

    def get_to_path(self, m: Manifest, dest: Path, progress: Progress | None = None,
                    folder_ready: bool = False) -> int:
        """Restore a whole file to `dest` atomically, decoding and writing in parallel."""
        return write_atomically(dest, lambda fd: restore_into(self, m, fd, progress),
                                folder_ready=folder_ready)

    def get_many(self, items: list[tuple[str, Path]], progress: Progress | None = None) -> int:
        """Restore many files to paths; small files go in groups to two worker threads."""
        manifests = self._resolve_many([ref for ref, _ in items])
        dests = [Path(d) for _, d in items]
        folders = {d.parent for d in dests}
        existed = {f for f in folders if f.is_dir()}
        for d in dests:  # only folders that were there before can hold a directory in the way
            if d.parent in existed and d.is_dir():
                raise UsageError(f"{d} is a directory")
        make_folders(folders - existed)
        small = [(m, str(d)) for m, d in zip(manifests, dests, strict=True) if m.size <= SMALL_RESTORE]
        large = [(m, d) for m, d in zip(manifests, dests, strict=True) if m.size > SMALL_RESTORE]
        groups = group_small_files(small)
        total = 0
        with ThreadPoolExecutor(2, thread_name_prefix="mosaic-restore") as pool:
            futs = [pool.submit(restore_small_files, self, g, progress) for g in groups]
            try:
                for m, d in large:
                    total += self.get_to_path(m, d, progress, folder_ready=True)
                for f in futs:
                    total += f.result()
            finally:
                for f in futs:
                    f.cancel()
        return total

    def _resolve_many(self, refs: list[str]) -> list[Manifest]:
        """Manifests for many refs; hashes are looked up in one read transaction."""
        out: list[Manifest] = []
        with self.index.read() as txn:
            for ref in refs:
                m = None
                if len(ref) == 64 and is_hash(ref.lower()):
                    m = self.index.get_manifest(bytes.fromhex(ref.lower()), txn)
                out.append(m if m is not None else self.resolve(ref))
        return out

    def open_file(self, ref: str) -> io.BufferedReader:
        """A seekable binary read stream over a stored file (like `open(path, "rb")`)."""
        return io.BufferedReader(FileReader(self, self.resolve(ref)), buffer_size=1 << 20)

    #: `Node.open(home)` opens a node; `node.open(ref)` opens a stored file.
    open = _HomeOrFile(open_home, open_file)

    def exists(self, file_hash: str) -> bool:
        """True if the node knows the file and has a record of every chunk."""
        fid = parse_hash(file_hash)
        with self.index.read() as txn:
            m = self.index.get_manifest(fid, txn)
            return m is not None and all(self.index.get_chunk(c, txn) is not None for c, _ in m.chunks)

    # ---- names -------------------------------------------------------------
    def ls(self, prefix: str = "") -> list[NameEntry]:
        """Names under `prefix` (a string prefix), sorted, with file sizes."""
        out = []
        with self.index.read() as txn:
            for name, fid in self.index.iter_names(prefix, txn):
                m = self.index.get_manifest(fid, txn)
                out.append(NameEntry(name, fid, m.size if m else -1))
        return out

    def names_under(self, prefix: str) -> list[NameEntry]:
        """Names equal to `prefix` or inside it as a folder."""
        p = check_name(prefix)
        return [e for e in self.ls(p) if e.name == p or e.name.startswith(p + "/")]

    def rm(self, ref: str) -> list[str]:
        """Remove a name (and the file once its last name is gone), or a file by hash."""
        with HomeLock(self.home, exclusive=False), self.index.write() as txn:
            if is_hash(ref.lower()) and self.index.get_manifest(bytes.fromhex(ref.lower()), txn) is not None:
                fid = bytes.fromhex(ref.lower())
                names = self.index.names_of(fid, txn)
                self.index.remove_manifest(txn, fid)
                return names
            name = check_name(ref)
            fid = self.index.unset_name(txn, name)
            if fid is None:
                raise NotFoundError(f"no such name: {name}")
            if not self.index.has_names(txn, {fid}):
                self.index.remove_manifest(txn, fid)
            return [name]

    def mv(self, old: str, new: str) -> None:
        """Rename: `new` points at what `old` pointed at; `old` is removed."""
        o, n = check_name(old), check_name(new)
        with self.index.write() as txn:
            fid = self.index.unset_name(txn, o)
            if fid is None:
                raise NotFoundError(f"no such name: {o}")
            self.index.set_name(txn, n, fid)  # a replaced file stays reachable by its hash

    # ---- whole-node verbs ---------------------------------------------------
    def _refs(self, refs: list[str] | None) -> list[str] | None:
        return None if refs is None else [self.resolve(r).file_id.hex() for r in refs]

    def export(self, refs: list[str] | None = None) -> str:
        """The JSON manifest dump of these files (hashes or names; all if None)."""
        from .transfer import export
        return export(self, self._refs(refs))

    def import_(self, dump: str | bytes) -> dict[str, int]:
        """Load a JSON manifest dump, all or nothing; returns counts."""
        from .transfer import import_
        return import_(self, dump)

    def warm(self, refs: list[str] | None = None, progress: Progress | None = None) -> dict:
        """Make every chunk of these files (all if None) local, fetching from backends."""
        from .cache import warm
        return warm(self, self._refs(refs), progress)

    def verify(self, refs: list[str] | None = None, progress: Progress | None = None):  # noqa: ANN201
        """Read back and check files (all if None); returns a VerifyReport."""
        from .maintenance import verify
        fids = None if refs is None else [self.resolve(r).file_id for r in refs]
        return verify(self, fids, progress)

    def gc(self, dry_run: bool = False):  # noqa: ANN201
        """Remove unreferenced chunks; returns a GcReport."""
        from .maintenance import gc
        return gc(self, dry_run=dry_run)

    def save_index_copy(self) -> None:
        """Store a full snapshot of the index on every backend (after rm, mv, import, gc...)."""
        if self.config.backends:
            from .indexlog import write_snapshot
            write_snapshot(self)

    def stat(self, ref: str) -> dict:
        """Size, chunks, stored bytes, dedup saving, cached fraction and locations."""
        from .maintenance import file_stat
        return file_stat(self, self.resolve(ref).file_id)

    # ---- backends ----------------------------------------------------------
    def backend_spaces(self) -> dict[str, BackendSpace]:
        """Per backend: bytes of this node's packs stored or queued there, and its quota."""
        used = {b.name: 0 for b in self.config.backends}
        with self.index.read() as txn:
            sizes: dict[bytes, int] = {}
            for pid, rec in self.index.iter_packs(txn):
                sizes[pid] = rec.size
                for b in rec.locations:
                    if b in used:
                        used[b] += rec.size
            for pid, b in self.index.iter_uploads(txn):
                if b in used:
                    used[b] += sizes.get(pid, 0)
        return {b.name: BackendSpace(b.name, used[b.name], _quota(b.options))
                for b in self.config.backends}

    # ---- chunk sources (used by restore) -----------------------------------
    def has_local_pack(self, pid: bytes) -> bool:
        """True if the pack is in the local store."""
        return self.local.has(pid)

    def remote_copies(self, pid: bytes, offset: int, length: int,
                      skip: set[str] | None = None) -> Iterator[tuple[bytes, str]]:
        """Ranges of a pack from each backend that holds it (except `skip`), best first."""
        rec = self.index.get_pack(pid)
        if rec is None or not rec.locations or self.hub is None:
            return
        from backends.errors import BackendError, NotFound
        for b in sorted(rec.locations, key=self.hub.latency):
            if b not in self.hub.backends or (skip and b in skip):
                continue
            try:
                yield self.hub.get_range(b, pid, offset, length), b
            except NotFound as e:
                self.note_bad_copy(pid, f"backend {b}", f"missing ({e})")
            except BackendError as e:  # unreachable or failing: try the next copy, repair nothing
                log.info("backend %s failed a read: %s", b, e)

    def note_bad_copy(self, pid: bytes, where: str, reason: str = "corrupt") -> None:
        """Report a corrupt or missing copy; a backend copy is queued for `mosaic repair`."""
        self.bad_copies.append((pid, where))
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


class IngestSession:
    """Context manager around `Ingest` that holds the shared home lock."""

    def __init__(self, node: Node, progress: Progress | None, wait: bool = True,
                 upload_progress: Progress | None = None):
        self.node, self.progress, self.wait = node, progress, wait
        self.upload_progress = upload_progress
        self.lock = HomeLock(node.home, exclusive=False)
        self.ing: Ingest | None = None
        self.pending: list[PendingPut] = []

    def __enter__(self) -> IngestSession:
        self.lock.__enter__()
        self.ing = Ingest(self.node, self.progress)
        self.uploads = None
        if self.wait and self.node.config.backends:
            from .uploads import BackgroundUploads
            self.uploads = BackgroundUploads(self.node, self.upload_progress)
            self.ing.on_sealed = self.uploads.submit
        return self

    def put_source(self, source: str | Path | bytes | BinaryIO, name: str | None = None) -> PendingPut:
        """Queue one file; its result is final (and durable) once the session closes."""
        assert self.ing is not None
        names = (check_name(name),) if name else ()
        if isinstance(source, bytes | bytearray | memoryview):
            import io
            res = self.ing.put_stream(io.BytesIO(bytes(source)), names, len(source))
        elif isinstance(source, str | Path):
            try:
                with open(source, "rb") as f:
                    st = os.fstat(f.fileno())
                    regular = stat.S_ISREG(st.st_mode)
                    res = self.ing.put_stream(f, names, st.st_size if regular else None)
            except FileNotFoundError:
                raise NotFoundError(f"no such file: {source}") from None
            except IsADirectoryError:
                raise UsageError(f"{source} is a directory (use -r)") from None
            except PermissionError:
                raise UsageError(f"permission denied: {source}") from None
        else:
            res = self.ing.put_stream(source, names)
        self.pending.append(res)
        return res

    @property
    def results(self) -> list[PutResult]:
        """Every file's result, once the session has closed."""
        return [p.result() for p in self.pending]

    def __exit__(self, et: type | None, ev: BaseException | None, tb: object) -> None:
        assert self.ing is not None
        try:
            if et is None:
                self.ing.close()
                if self.uploads is not None:
                    self.uploads.finish()
                if self.node.config.backends and (self.ing.sealed or self.ing.name_changes):
                    from .indexlog import write_log
                    write_log(self.node, [p.pack_id for p in self.ing.sealed],
                              [*self.ing.new_files, *(n for _, _, n in self.ing.name_changes if n)],
                              [(name, new) for name, _, new in self.ing.name_changes])
            else:
                self.ing.abort()
                if self.uploads is not None:
                    self.uploads.cancel()
                if isinstance(ev, CapacityError):
                    raise ev
        except CapacityError as e:
            self.ing.abort()
            if self.uploads is not None:
                self.uploads.cancel()
            dead = self.ing.rollback()
            from .maintenance import delete_pack_everywhere
            for pid in dead:
                delete_pack_everywhere(self.node, pid)
            raise CapacityError(f"{e}; nothing was stored") from None
        finally:
            self.lock.__exit__()
