"""`Uploads`: the node's resumable uploads as stored (the tus routes, tus.py, drive them).

What arrives streams through the chunker at once: every chunk except the last one cut
so far is final (segments.py), so those chunks are put into the store as a *segment*
(an unnamed file: deduplicated, packed and durable like any put), and the last, still
open chunk is kept as the upload's *tail* (a small file, at most one chunk long).
The offset HEAD reports is the segments' bytes plus the tail's: everything it counts
is durable. The next PATCH, from this client or any other, continues the cut from the
tail. At the end the segments' chunk lists, concatenated, are exactly the file's:
its manifest is recorded under its name in one transaction and the segments are
dropped, so no byte is stored twice and nothing is re-read. An upload that is not
finished before it expires (or is terminated) drops its segments: their chunks lose
their references and are reclaimed like any deleted file's (`mosaic gc`).

State lives in HOME/http-uploads/<id>.json (atomic writes) and <id>.<gen>.tail, so
an upload also survives a daemon restart.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import lmdb
import trio
from blake3 import blake3

from ..cluster.engine import Engine
from ..cluster.events import EventBus
from ..errors import MosaicError
from ..store import codec
from ..store.atomic import atomic_write
from ..store.chunker import chunk_stream
from ..store.records import Manifest
from .bodies import BodyPipe
from .segments import Chain, Cutter, SegmentStream

log = logging.getLogger("mosaic.http")

SEGMENT_BYTES = 64 << 20
EXPIRE_S = 24 * 3600.0
_ID = re.compile(r"^[A-Za-z0-9_-]{22,64}$")


@dataclass(frozen=True)
class Segment:
    """A stored part of an upload: an unnamed file of whole chunks."""

    hash: str
    size: int
    own: bool  # this upload added the file (so it drops it)


@dataclass
class Upload:
    """One upload's persisted state (its lock and hasher live only in memory).

    Not frozen: the one object per upload is updated in place under its lock, and a
    request that waited for the lock tells by identity whether it is still current.
    """

    id: str
    length: int
    name: str | None
    metadata: str
    owner: str
    created: float
    expires: float
    segments: list[Segment] = field(default_factory=list)
    tail_gen: int = 0
    tail_len: int = 0
    done_hash: str | None = None
    new: bool = False
    new_bytes: int = 0  # stored bytes this upload added (0: dedup found all of it)

    @property
    def offset(self) -> int:
        if self.done_hash is not None:
            return self.length
        return sum(s.size for s in self.segments) + self.tail_len

    def as_json(self) -> dict:
        return {"id": self.id, "length": self.length, "name": self.name, "offset": self.offset,
                "created": self.created, "expires": self.expires, "hash": self.done_hash}


@dataclass
class _Live:
    lock: trio.Lock = field(default_factory=trio.Lock)
    hasher: blake3 | None = None  # over the segments' bytes, in order


def uploads_dir(home_root: Path) -> Path:
    return Path(os.fspath(home_root)) / "http-uploads"


class Uploads:
    """Every upload of the node: created, appended to, finished, expired."""

    def __init__(self, engine: Engine, events: EventBus, root: Path, expire_s: float = EXPIRE_S):
        self.engine, self.events, self.root, self.expire_s = engine, events, root, expire_s
        self.all: dict[str, Upload] = {}
        self.live: dict[str, _Live] = {}

    # ---- persistence (blocking) ------------------------------------------------------------
    def load(self) -> None:
        """Read the uploads a previous daemon left."""
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        for p in self.root.glob("*.json"):
            try:
                d = json.loads(p.read_text())
                d["segments"] = [Segment(**s) for s in d.get("segments", [])]
                u = Upload(**d)
            except (OSError, ValueError, TypeError) as e:
                log.warning("ignoring damaged upload state %s: %s", p.name, e)
                continue
            self.all[u.id] = u
        for p in self.root.glob("*.tail"):
            uid, _, gen = p.name.removesuffix(".tail").rpartition(".")
            u = self.all.get(uid)
            if u is None or str(u.tail_gen) != gen:
                p.unlink(missing_ok=True)

    def _state(self, u: Upload) -> Path:
        return self.root / f"{u.id}.json"

    def _tail(self, u: Upload, gen: int) -> Path:
        return self.root / f"{u.id}.{gen}.tail"

    def _save(self, u: Upload, durable: bool = True) -> None:
        d = asdict(u)
        atomic_write(self._state(u), json.dumps(d).encode(), durable=durable)

    def _read_tail(self, u: Upload) -> bytes:
        if not u.tail_len:
            return b""
        data = self._tail(u, u.tail_gen).read_bytes()
        if len(data) != u.tail_len:
            raise MosaicError(f"upload {u.id}: its tail file is damaged")
        return data

    # ---- lifecycle --------------------------------------------------------------------------
    def create(self, length: int, name: str | None, metadata: str, owner: str) -> Upload:
        now = time.time()
        u = Upload(secrets.token_urlsafe(18), length, name, metadata, owner, now, now + self.expire_s)
        self._save(u)
        self.all[u.id] = u
        return u

    def create_done(self, length: int, name: str, metadata: str, owner: str, doc: dict) -> Upload:
        """The record of an upload whose creation request carried the whole file, already
        stored (`doc`: what PutBatcher.put answered), so that HEAD on it reports it done."""
        now = time.time()
        u = Upload(secrets.token_urlsafe(18), length, name, metadata, owner, now, now + self.expire_s,
                   done_hash=doc["hash"], new=doc["new"], new_bytes=doc["new_bytes"])
        # not fsynced: the file is stored durably already; were this record lost in a crash,
        # HEAD would answer 404 and a client would send the file again (dedup: no new bytes)
        self._save(u, durable=False)
        self.all[u.id] = u
        return u

    def get(self, uid: str) -> Upload | None:
        if not _ID.match(uid):
            return None
        u = self.all.get(uid)
        if u is not None and u.expires < time.time():
            return None
        return u

    def live_of(self, u: Upload) -> _Live:
        return self.live.setdefault(u.id, _Live())

    def current(self, u: Upload) -> bool:
        """True while `u` is still this node's upload (not terminated, expired or dropped);
        checked again under its lock, since a request may have waited there meanwhile."""
        return self.all.get(u.id) is u and u.expires >= time.time()

    def _referenced_elsewhere(self, h: str, uid: str) -> Upload | None:
        for other in self.all.values():
            if other.id != uid and other.done_hash is None and any(s.hash == h for s in other.segments):
                return other
        return None

    # ---- appending (blocking, one at a time per upload) -------------------------------------
    def append(self, u: Upload, body: BodyPipe) -> None:
        """Take the body at the upload's offset: final chunks into segments, the rest as tail."""
        live = self.live_of(u)
        if live.hasher is None:
            h = codec.file_id_hasher()
            for s in u.segments:
                for piece in self.engine.read(s.hash):
                    h.update(piece)
            live.hasher = h
        old_tail = self._read_tail(u)
        cutter = Cutter(chunk_stream(Chain(old_tail, body), self.engine.store.chunk_params))
        start_offset = u.offset

        def complete() -> bool:  # asked only once the body has ended
            return start_offset + body.received == u.length

        wrote_segment = False
        while True:
            seg = SegmentStream(cutter, SEGMENT_BYTES, live.hasher.copy(), complete)
            if not seg.prime():
                break
            with self.engine.ingest(wait=False) as s:
                pending = s.put_source(seg)
            res = pending.result()
            own = s.ing is not None and res.file_id in s.ing.new_files
            u.segments.append(Segment(res.hash, res.size, own))
            u.new_bytes += res.new_bytes
            live.hasher = seg.hasher
            u.tail_len = 0
            u.expires = time.time() + self.expire_s
            self._save(u)
            wrote_segment = True
            if seg.done:
                break
        # the chunk still open becomes the tail
        held = cutter.held or b""
        if not wrote_segment and held == old_tail:
            return
        gen = u.tail_gen + 1
        if held:
            atomic_write(self._tail(u, gen), held)
        old_gen, u.tail_gen, u.tail_len = u.tail_gen, gen, len(held)
        u.expires = time.time() + self.expire_s
        self._save(u)
        self._tail(u, old_gen).unlink(missing_ok=True)

    def finish(self, u: Upload) -> None:
        """Record the whole file under its name; drop the segments (one transaction)."""
        live = self.live_of(u)
        assert live.hasher is not None or u.length == 0
        if u.length == 0:
            res = self.engine.put(b"", u.name)
            u.done_hash, u.new, u.new_bytes = res.hash, res.new_chunks > 0, res.new_bytes
        else:
            fid = live.hasher.digest()
            idx = self.engine.index
            with idx.read() as txn:
                chunks: list[tuple[bytes, int]] = []
                for s in u.segments:
                    m = idx.get_manifest(bytes.fromhex(s.hash), txn)
                    if m is None:
                        raise MosaicError(f"upload {u.id}: a stored part is missing; upload again")
                    chunks.extend(m.chunks)
            if sum(n for _, n in chunks) != u.length:
                raise MosaicError(f"upload {u.id}: the stored parts do not add up; upload again")
            m = Manifest(fid, u.length, time.time_ns(), tuple(chunks))
            with idx.write() as txn:
                added = idx.put_verified_manifest(txn, m)  # replaces a claim of this file ID
                if u.name:
                    idx.set_names(txn, [(u.name, fid)])
                self._drop_segments(txn, u, keep=fid)
            single_own = len(u.segments) == 1 and u.segments[0].own and u.segments[0].hash == fid.hex()
            u.done_hash, u.new = fid.hex(), added or single_own
        u.segments, u.tail_len = [], 0
        self._save(u)
        for p in self.root.glob(f"{u.id}.*.tail"):
            p.unlink(missing_ok=True)

    def _drop_segments(self, txn: lmdb.Transaction, u: Upload, keep: bytes | None = None) -> None:
        idx = self.engine.index
        mine = {bytes.fromhex(s.hash) for s in u.segments if s.own} - {keep}
        if not mine:
            return
        named = idx.has_names(txn, mine)
        for f in mine - named:
            other = self._referenced_elsewhere(f.hex(), u.id)
            if other is not None:  # another upload holds the same part: it owns it now
                for i, s in enumerate(other.segments):
                    if s.hash == f.hex():
                        other.segments[i] = replace(s, own=True)
                self._save(other)
                continue
            idx.remove_manifest(txn, f)

    def drop(self, u: Upload) -> None:
        """Terminate or expire: forget the upload and release its stored parts."""
        if u.done_hash is None and u.segments:
            with self.engine.index.write() as txn:
                self._drop_segments(txn, u)
        self.all.pop(u.id, None)
        self.live.pop(u.id, None)
        for p in self.root.glob(f"{u.id}.*"):
            p.unlink(missing_ok=True)

    def expired(self) -> list[Upload]:
        now = time.time()
        return [u for u in self.all.values() if u.expires < now]
