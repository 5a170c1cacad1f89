"""Pack files: many stored objects in one file, with an encrypted table at the end.

Layout (version 1), see docs/format.md:

    magic "MOSPACK1" (8 bytes)
    object 0 | object 1 | ...            (codec objects, back to back)
    trailer: version (1) | nonce (24) | XChaCha20-Poly1305(msgpack [[chunk_id, offset, stored_len, plain_len], ...])
    trailer length (u32 big-endian, 4 bytes)

The pack ID is the plain BLAKE3 of the whole pack file (of ciphertext, so it
reveals nothing and lets anyone check a copy). The trailer lets `recover` and
`verify` rebuild or check the chunk table from the pack alone.
"""

from __future__ import annotations

import errno
import os
import struct
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import blake3
import msgpack

from ..errors import IntegrityError, StorageError
from . import envelope
from .atomic import TempFile, fsync_dir
from .home import Home

MAGIC = b"MOSPACK1"
TRAILER_VERSION = 1
_AAD = b"mosaic-pack-index v1"
_LEN = struct.Struct(">I")


@dataclass(frozen=True)
class PackEntry:
    """One object inside a pack."""

    chunk_id: bytes
    offset: int
    stored_len: int
    plain_len: int


@dataclass(frozen=True)
class SealedPack:
    """A pack that is complete and durable in the local store."""

    pack_id: bytes
    size: int
    entries: tuple[PackEntry, ...]


def build_trailer(key: bytes, entries: list[PackEntry] | tuple[PackEntry, ...]) -> bytes:
    """The encrypted chunk table plus its length."""
    table = msgpack.packb([[e.chunk_id, e.offset, e.stored_len, e.plain_len] for e in entries],
                          use_bin_type=True)
    body = envelope.seal(key, table, _AAD, bytes((TRAILER_VERSION,)))
    return body + _LEN.pack(len(body))


def parse_pack(key: bytes, data: bytes | memoryview) -> list[PackEntry]:
    """The chunk table of a whole pack; IntegrityError if it does not check out."""
    data = memoryview(data)
    if len(data) < len(MAGIC) + 4 or bytes(data[:8]) != MAGIC:
        raise IntegrityError("not a pack file (bad magic)")
    (n,) = _LEN.unpack(data[-4:])
    start = len(data) - 4 - n
    if n < 1 + envelope.OVERHEAD or start < len(MAGIC):
        raise IntegrityError("pack trailer is truncated")
    body = data[start:len(data) - 4]
    if body[0] != TRAILER_VERSION:
        raise IntegrityError(f"unknown pack trailer version {body[0]}")
    table = envelope.open(key, body[1:], _AAD, "pack trailer")
    try:
        rows = msgpack.unpackb(table, raw=False)
        entries = [PackEntry(bytes(c), int(o), int(s), int(p)) for c, o, s, p in rows]
    except (ValueError, TypeError, msgpack.UnpackException):
        raise IntegrityError("pack trailer is malformed") from None
    for e in entries:
        if len(e.chunk_id) != 32 or e.offset < len(MAGIC) or e.offset + e.stored_len > start:
            raise IntegrityError("pack trailer points outside the pack")
    return entries


def pack_id_of(data: bytes | memoryview) -> bytes:
    """The ID of a pack: BLAKE3 of its bytes."""
    return blake3.blake3(data, max_threads=blake3.blake3.AUTO).digest()


def check_pack(key: bytes, pid: bytes, data: bytes | memoryview) -> list[PackEntry]:
    """The chunk table of a whole pack whose bytes match its ID; IntegrityError otherwise."""
    if pack_id_of(data) != pid:
        raise IntegrityError("content does not match its ID (corrupt)")
    return parse_pack(key, data)


def _os_error(e: OSError, what: str) -> StorageError:
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return StorageError(f"disk full while {what}")
    return StorageError(f"I/O error while {what}: {e.strerror or e}")


def _make_folder(folder: Path) -> None:
    """packs/xx/, made durable the first time (its entry in packs/ is fsynced)."""
    if not folder.is_dir():
        folder.mkdir(exist_ok=True)
        fsync_dir(folder.parent)


class PackWriter:
    """Appends objects to a temporary pack file in HOME/tmp; `seal` makes it durable."""

    def __init__(self, home: Home, index_key: bytes):
        self.home, self.key = home, index_key
        self.tmp: TempFile | None = None
        self.f = None
        try:
            self.tmp = TempFile(home.tmp_dir, 0o600, "pack")
            # the writer: unbuffered, on the temp file's descriptor (which TempFile closes)
            self.f = open(self.tmp.fd, "wb", buffering=0, closefd=False)
            self._write_all(MAGIC)
        except OSError as e:
            self.abort()
            raise _os_error(e, "creating a pack") from None
        self.hasher = blake3.blake3(MAGIC)
        self.size = len(MAGIC)
        self.entries: list[PackEntry] = []

    def add(self, cid: bytes, blob: bytes | bytearray | memoryview, plain_len: int) -> None:
        """Append one encoded object."""
        self.add_parts(cid, (blob,), plain_len)

    def add_parts(self, cid: bytes, parts: Sequence[bytes | bytearray | memoryview],
                  plain_len: int) -> None:
        """Append one encoded object given in parts (`codec.encode_parts`), with one `writev`."""
        n = sum(len(p) for p in parts)
        try:
            done = os.writev(self.tmp.fd, parts)
            if done < n:  # a short write (a full disk): the rest, until it fails
                self._write_all(b"".join(parts)[done:])
        except OSError as e:
            self.abort()
            raise _os_error(e, "writing a pack") from None
        for p in parts:
            self.hasher.update(p)
        self.entries.append(PackEntry(cid, self.size, n, plain_len))
        self.size += n

    def _write_all(self, data: bytes | bytearray | memoryview) -> None:
        """Write every byte: an unbuffered write may store fewer bytes than asked."""
        view = memoryview(data)
        while view:
            n = self.f.write(view)
            if not n:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            view = view[n:]

    def seal(self) -> SealedPack:
        """Write the trailer, fsync, and rename into packs/; returns the pack's identity."""
        trailer = build_trailer(self.key, self.entries)
        try:
            self._write_all(trailer)
            self.hasher.update(trailer)
            pid = self.hasher.digest()
            dest = self.home.pack_path(pid)
            _make_folder(dest.parent)
            self.f.close()  # the writer only; the descriptor is TempFile's
            self.tmp.commit(dest)
        except OSError as e:
            self.abort()
            raise _os_error(e, "sealing a pack") from None
        return SealedPack(pid, self.size + len(trailer), tuple(self.entries))

    def abort(self) -> None:
        """Drop the temporary file."""
        f = getattr(self, "f", None)
        if f is not None:
            f.close()
        if self.tmp is not None:
            self.tmp.discard()


class LocalPacks:
    """Reads from the local pack files, keeping a few descriptors open."""

    def __init__(self, home: Home, max_open: int = 64):
        self.home = home
        self._fds: OrderedDict[bytes, int] = OrderedDict()
        self._lock = threading.Lock()
        self.max_open = max_open

    def _fd(self, pid: bytes) -> int:
        with self._lock:
            fd = self._fds.get(pid)
            if fd is not None:
                self._fds.move_to_end(pid)
                return fd
            fd = os.open(self.home.pack_path(pid), os.O_RDONLY)
            self._fds[pid] = fd
            while len(self._fds) > self.max_open:
                _, old = self._fds.popitem(last=False)
                os.close(old)
            return fd

    def has(self, pid: bytes) -> bool:
        """True if the pack file exists locally (an open descriptor answers without a stat)."""
        if pid in self._fds:
            return True
        return self.home.pack_path(pid).is_file()

    def read(self, pid: bytes, offset: int, length: int) -> bytes:
        """Read a byte range of a local pack; FileNotFoundError if the pack is gone."""
        fd = self._fd(pid)
        data = os.pread(fd, length, offset)
        if len(data) != length:
            raise IntegrityError(f"pack {pid.hex()[:16]} is truncated")
        return data

    def read_all(self, pid: bytes) -> bytes:
        """The whole pack file."""
        return self.home.pack_path(pid).read_bytes()

    def write(self, pid: bytes, data: bytes) -> None:
        """Store a pack fetched from elsewhere (atomically, see atomic.py)."""
        dest = self.home.pack_path(pid)
        try:
            _make_folder(dest.parent)
            with TempFile(self.home.tmp_dir, 0o600, "fetch") as t:
                t.write(data)
                t.commit(dest)
        except OSError as e:
            raise _os_error(e, "storing a fetched pack") from None

    def delete(self, pid: bytes) -> None:
        """Remove a local pack file (no error if it is already gone)."""
        self.forget(pid)
        self.home.pack_path(pid).unlink(missing_ok=True)

    def forget(self, pid: bytes) -> None:
        """Close a cached descriptor."""
        with self._lock:
            fd = self._fds.pop(pid, None)
        if fd is not None:
            os.close(fd)

    def close(self) -> None:
        """Close every descriptor."""
        with self._lock:
            for fd in self._fds.values():
                os.close(fd)
            self._fds.clear()
