"""`Engine`: one node opened on its home, with every verb the faces offer.

It assembles the layers (a Store, replication as the index's change log, a Cloud
over the backends) and holds the verbs that the Python API (`mosaic.Node`), the
CLI and later faces share, so no face imports another.
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from ..cloud.cloud import Cloud
from ..errors import NotFoundError, UsageError
from ..store.home import HomeLock, check_name
from ..store.outfile import (
    Progress,
    make_folders,
    output_target,
    write_atomically,
    writing_into,
)
from ..store.records import Manifest
from ..store.restore import (
    FileReader,
    group_small_files,
    read_range,
    read_verified,
    restore_into,
    restore_small_files,
)
from ..store.store import Store, StoreParts
from ..units import is_hash, parse_hash

if TYPE_CHECKING:  # verbs load their modules on first use: the CLI starts fast
    from ..cloud.gc import GcReport
    from ..cloud.hub import BackendHub
    from ..cloud.placement import BackendSpace
    from ..cloud.putsession import PutSession
    from ..store.ingest import PutResult
    from ..store.tree import Child
    from ..store.verify import VerifyReport


log = logging.getLogger("mosaic")
SMALL_RESTORE = 4 << 20  # files up to this size are restored in groups


@dataclass(frozen=True)
class NameEntry:
    """One entry of the name directory."""

    name: str
    file_id: bytes
    size: int


class Engine(StoreParts):
    """A node opened on its home folder: store, cloud and replication together.

    Use as a context manager or call close().
    """

    def __init__(self, store: Store, cloud: Cloud | None = None):
        self.store = store
        if store.index.repl_origin is not None:  # a node that never replicated skips loading it
            from .syncstore import install
            install(store.index)
        self.cloud = cloud if cloud is not None else Cloud(store)

    # ---- lifecycle ---------------------------------------------------------
    @classmethod
    def init(cls, home: str | Path | None = None, *, passphrase: str | None = None,
             no_passphrase: bool = False, key_file: str | Path | None = None,
             key_file_passphrase: str | None = None, chunk_min: int | None = None,
             chunk_avg: int | None = None, chunk_max: int | None = None,
             pack_size: int | None = None, cache_capacity: int | None = None) -> Engine:
        """Create a node home: config, index, local store and the sealed master key."""
        return cls(Store.create(home, passphrase=passphrase, no_passphrase=no_passphrase,
                                key_file=key_file, key_file_passphrase=key_file_passphrase,
                                chunk_min=chunk_min, chunk_avg=chunk_avg, chunk_max=chunk_max,
                                pack_size=pack_size, cache_capacity=cache_capacity))

    @classmethod
    def open_home(cls, home: str | Path | None = None, *, passphrase: str | None = None) -> Engine:
        """Open an initialised node; the passphrase defaults to $MOSAIC_PASSPHRASE."""
        return cls(Store.open(home, passphrase=passphrase))

    def close(self) -> None:
        """Stop backends and workers, close the index."""
        self.cloud.close()
        self.store.close()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def hub(self) -> BackendHub | None:
        """The backend hub (started on first use); None without backends."""
        return self.cloud.hub

    # ---- resolving ---------------------------------------------------------
    def resolve(self, ref: str) -> Manifest:
        """A hash or a name -> its manifest; NotFoundError or UsageError otherwise."""
        return self.store.resolve(ref)

    # ---- put ---------------------------------------------------------------
    def put(self, source: str | Path | bytes | BinaryIO, name: str | None = None,
            progress: Progress | None = None) -> PutResult:
        """Store a file (path), bytes or a binary stream; returns once durable."""
        with self.ingest(progress) as ing:
            pending = ing.put_source(source, name)
        return pending.result()

    def ingest(self, progress: Progress | None = None, wait: bool = True,
               upload_progress: Progress | None = None) -> PutSession:
        """A put session for many files: `with node.ingest() as s: s.put_source(...)`.

        With `wait` (the default) the session ends once every new pack is stored on
        `copies` backends; otherwise uploads stay queued (`mosaic upload` sends them).
        """
        from ..cloud.putsession import PutSession
        return PutSession(self.cloud, progress, wait, upload_progress)

    # ---- get ---------------------------------------------------------------
    def read(self, ref: str, offset: int = 0, length: int | None = None) -> Iterator[bytes]:
        """The file's bytes as chunks; a full read checks the whole-file hash."""
        m = self.resolve(ref)
        if offset == 0 and length is None:
            return read_verified(self.store, m)
        return read_range(self.store, m, offset, length)

    def get(self, ref: str, dest: str | Path | BinaryIO | None = None, offset: int = 0,
            length: int | None = None, progress: Progress | None = None) -> bytes | int:
        """Bytes of a file: returned (dest None), written to a stream, or to a path.

        A new or regular file at the path is replaced atomically (through a symlink to a
        regular file, its target); an existing device or FIFO is written into, as cp does.
        """
        if isinstance(dest, (str, Path)):
            kind, target = output_target(Path(dest))
            if kind == "into":
                with writing_into(target) as stream:
                    return self.get(ref, stream, offset, length, progress)
            dest = target
        if offset == 0 and length is None and isinstance(dest, Path):
            return self.get_to_path(self.resolve(ref), dest, progress)
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
        return write_atomically(dest, lambda fd: restore_into(self.store, m, fd, progress),
                                folder_ready=folder_ready)

    def get_many(self, items: list[tuple[str | Manifest, str | Path]],
                 progress: Progress | None = None) -> int:
        """Restore many files (refs or manifests) to paths; small files go in groups to two
        worker threads."""
        manifests = self._resolve_many([ref for ref, _ in items])
        dests = [os.fspath(d) for _, d in items]
        folders = {os.path.dirname(d) for d in dests}
        existed = {f for f in folders if os.path.isdir(f)}
        for d in dests:  # only folders that were there before can hold a directory in the way
            if os.path.dirname(d) in existed and os.path.isdir(d):
                raise UsageError(f"{d} is a directory")
        make_folders(folders - existed)
        small = [(m, d) for m, d in zip(manifests, dests, strict=True) if m.size <= SMALL_RESTORE]
        large = [(m, Path(d)) for m, d in zip(manifests, dests, strict=True) if m.size > SMALL_RESTORE]
        groups = group_small_files(small)
        total = 0
        with ThreadPoolExecutor(2, thread_name_prefix="mosaic-restore") as pool:
            futs = [pool.submit(restore_small_files, self.store, g, progress) for g in groups]
            try:
                for m, d in large:
                    total += self.get_to_path(m, d, progress, folder_ready=True)
                for f in futs:
                    total += f.result()
            finally:
                for f in futs:
                    f.cancel()
        return total

    def _resolve_many(self, refs: list[str | Manifest]) -> list[Manifest]:
        """Manifests for many refs; hashes are looked up in one read transaction."""
        out: list[Manifest] = []
        with self.index.read() as txn:
            for ref in refs:
                if isinstance(ref, Manifest):
                    out.append(ref)
                    continue
                m = None
                if len(ref) == 64 and is_hash(ref.lower()):
                    m = self.index.get_manifest(bytes.fromhex(ref.lower()), txn)
                out.append(m if m is not None else self.resolve(ref))
        return out

    def open_file(self, ref: str) -> io.BufferedReader:
        """A seekable binary read stream over a stored file (like `open(path, "rb")`)."""
        return io.BufferedReader(FileReader(self.store, self.resolve(ref)), buffer_size=1 << 20)

    def exists(self, file_hash: str) -> bool:
        """True if the node knows the file and has a record of every chunk."""
        fid = parse_hash(file_hash)
        with self.index.read() as txn:
            m = self.index.get_manifest(fid, txn)
            return m is not None and all(self.index.get_chunk(c, txn) is not None for c, _ in m.chunks)

    # ---- names -------------------------------------------------------------
    def ls(self, prefix: str = "") -> list[NameEntry]:
        """Names under `prefix` (a string prefix), sorted, with file sizes."""
        return [NameEntry(name, m.file_id, m.size) for name, m in self.manifests_under(prefix)]

    def manifests_under(self, prefix: str = "", folder: bool = False) -> list[tuple[str, Manifest]]:
        """(name, manifest) for names starting with `prefix`, sorted, in one read transaction;
        with `folder`, only `prefix` itself and the names inside it as a folder."""
        out = []
        inside = prefix + "/"
        with self.index.read() as txn:
            for name, fid in self.index.iter_names(prefix, txn):
                if folder and name != prefix and not name.startswith(inside):
                    continue
                m = self.index.get_manifest(fid, txn)
                if m is not None:
                    out.append((name, m))
        return out

    def list_folder(self, folder: str = "", after: str = "", limit: int = 1000
                    ) -> tuple[list[Child], str | None]:
        """One page of a folder's files and sub-folders, and the cursor of the next page."""
        from ..store.tree import list_level
        return list_level(self.index, folder, after, limit)

    def mkdir(self, path: str) -> bool:
        """Make an empty folder (kept until rmdir); False if it existed."""
        with HomeLock(self.home, exclusive=False):
            from ..store.tree import make_folder
            return make_folder(self.index, path)

    def rmdir(self, path: str) -> None:
        """Remove an empty folder."""
        with HomeLock(self.home, exclusive=False):
            from ..store.tree import remove_folder
            remove_folder(self.index, path)

    def mv_folder(self, old: str, new: str) -> int:
        """Move a folder with everything in it (one transaction); returns the names moved."""
        from ..store.tree import move_folder
        with HomeLock(self.home, exclusive=False):
            return move_folder(self.index, old, new)

    def rm_folder(self, folder: str) -> tuple[int, int]:
        """Remove a folder with everything in it; returns (names, empty-folder records) removed."""
        from ..store.tree import remove_tree
        with HomeLock(self.home, exclusive=False):
            return remove_tree(self.index, folder)

    def names_under(self, prefix: str) -> list[NameEntry]:
        """Names equal to `prefix` or inside it as a folder."""
        return [NameEntry(name, m.file_id, m.size)
                for name, m in self.manifests_under(check_name(prefix), folder=True)]

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
        with HomeLock(self.home, exclusive=False), self.index.write() as txn:
            fid = self.index.unset_name(txn, o)
            if fid is None:
                raise NotFoundError(f"no such name: {o}")
            self.index.set_name(txn, n, fid)  # a replaced file stays reachable by its hash

    # ---- whole-node verbs ---------------------------------------------------
    def _refs(self, refs: list[str] | None) -> list[str] | None:
        return None if refs is None else [self.resolve(r).file_id.hex() for r in refs]

    def export(self, refs: list[str] | None = None) -> str:
        """The JSON manifest dump of these files (hashes or names; all if None)."""
        from ..store.transfer import export
        return export(self.store, self._refs(refs))

    def import_(self, dump: str | bytes) -> dict[str, int]:
        """Load a JSON manifest dump, all or nothing; returns counts."""
        from ..store.transfer import import_
        return import_(self.store, dump)

    def warm(self, refs: list[str] | None = None, progress: Progress | None = None) -> dict:
        """Make every chunk of these files (all if None) local, fetching from backends."""
        with HomeLock(self.home, exclusive=False):
            from ..cloud.cache import warm
            return warm(self.cloud, self._refs(refs), progress)

    def verify(self, refs: list[str] | None = None, progress: Progress | None = None
               ) -> VerifyReport:
        """Read back and check files (all if None); returns a VerifyReport."""
        fids = None if refs is None else [self.resolve(r).file_id for r in refs]
        from ..store.verify import verify
        return verify(self.store, fids, progress)

    def gc(self, dry_run: bool = False) -> GcReport:
        """Remove unreferenced chunks; returns a GcReport."""
        from ..cloud.gc import gc
        return gc(self.cloud, dry_run=dry_run)

    def save_index_copy(self) -> None:
        """Append what changed to the index copy on every backend (after rm, mv, import, gc...).

        Each backend gets a log object with only the records changed since its copy
        last heard (a full snapshot now and then); StorageError if one could not be
        updated (the change stays journaled for the next save).
        """
        from ..cloud.indexlog import save_changes
        save_changes(self.cloud)

    def compact_index_copies(self) -> None:
        """Store a full snapshot of the index on every backend and delete the older copies."""
        if self.config.backends:
            from ..cloud.indexlog import compact
            compact(self.cloud)

    def stat(self, ref: str) -> dict:
        """Size, chunks, stored bytes, dedup saving, cached fraction and locations."""
        from ..store.verify import file_stat
        return file_stat(self.store, self.resolve(ref).file_id)

    # ---- backends ----------------------------------------------------------
    def backend_spaces(self) -> dict[str, BackendSpace]:
        """Per backend: bytes of this node's packs stored or queued there, and its quota."""
        return self.cloud.backend_spaces()
