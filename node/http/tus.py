"""Resumable uploads: tus 1.0.0 at /v1/uploads/ (core, creation, creation-with-upload,
termination, expiration).

How an upload is stored. What arrives streams through the chunker at once: every
chunk except the last one cut so far is final (FastCDC cuts depend only on the bytes
from the previous cut on), so those chunks are put into the store as a *segment* (an
unnamed file: deduplicated, packed and durable like any put), and the last, still
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

import base64
import email.utils
import json
import logging
import os
import re
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import trio
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..cluster.engine import Engine
from ..cluster.events import EventBus
from ..errors import MosaicError, UsageError
from ..store import codec
from ..store.atomic import atomic_write
from ..store.chunker import chunk_stream
from ..store.records import Manifest
from .access import check_file_name, name_param
from .auth import require
from .batch import SMALL_BODY
from .bodies import BodyPipe, consume, small_body
from .changes import after_write
from .problems import Problem

log = logging.getLogger("mosaic.http")

TUS_VERSION = "1.0.0"
EXTENSIONS = "creation,creation-with-upload,termination,expiration"
MAX_SIZE = 1 << 40
SEGMENT_BYTES = 64 << 20
EXPIRE_S = 24 * 3600.0
REAP_S = 30.0
LOCK_WAIT_S = 15.0
OFFSET_TYPE = "application/offset+octet-stream"
_ID = re.compile(r"^[A-Za-z0-9_-]{22,64}$")
_META_KEY = re.compile(r"^[!-+\--~]+$")  # printable ASCII without space and comma
MAX_META = 4096


@dataclass
class Segment:
    """A stored part of an upload: an unnamed file of whole chunks."""

    hash: str
    size: int
    own: bool  # this upload added the file (so it drops it)


@dataclass
class Upload:
    """One upload's persisted state (its lock and hasher live only in memory)."""

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
    hasher: object | None = None  # blake3 over the segments' bytes, in order


def parse_metadata(text: str) -> dict[str, str]:
    """Upload-Metadata: `key base64,key base64` -> {key: decoded text}; UsageError if malformed."""
    out: dict[str, str] = {}
    if len(text) > MAX_META:
        raise UsageError("Upload-Metadata is too long")
    for pair in filter(None, (p.strip() for p in text.split(","))):
        key, _, value = pair.partition(" ")
        if not _META_KEY.match(key) or key in out:
            raise UsageError(f"malformed Upload-Metadata key {key[:40]!r}")
        try:
            out[key] = base64.b64decode(value.strip(), validate=True).decode("utf-8") if value else ""
        except (ValueError, UnicodeDecodeError):
            raise UsageError(f"Upload-Metadata value of {key!r} is not base64 of UTF-8") from None
    return out


class _Cutter:
    """Chunks of a stream, telling which are final: all but the last one cut so far."""

    def __init__(self, chunks: Iterator[bytes]):
        self.it = chunks
        self.held: bytes | None = None
        self.ended = False

    def next_final(self) -> bytes | None:
        """The next final chunk, or None once the stream ended (`held` is then the open one)."""
        while not self.ended:
            nxt = next(self.it, None)
            if nxt is None:
                self.ended = True
                return None
            prev, self.held = self.held, nxt
            if prev is not None:
                return prev
        return None


class _SegmentStream:
    """A readable stream of final chunks, up to about `budget` bytes, for one put.

    When the stream has ended and `flush()` says the upload is complete, the open
    chunk is final too and ends the segment.
    """

    def __init__(self, cutter: _Cutter, budget: int, hasher, flush: Callable[[], bool]):  # noqa: ANN001
        self.cutter, self.budget, self.hasher, self.flush = cutter, budget, hasher, flush
        self.sent = 0
        self.buf = memoryview(b"")
        self.done = False

    def _more(self) -> bool:
        if self.done or self.sent >= self.budget:
            return False
        c = self.cutter.next_final()
        if c is None and self.cutter.held is not None and self.flush():
            c, self.cutter.held = self.cutter.held, None
        if c is None:
            self.done = True
            return False
        self.hasher.update(c)
        self.sent += len(c)
        self.buf = memoryview(c)
        return True

    def prime(self) -> bool:
        """Fetch the first chunk: False if this segment would be empty."""
        return self._more()

    def readinto(self, b: memoryview) -> int:
        while not self.buf:
            if not self._more():
                return 0
        n = min(len(b), len(self.buf))
        b[:n] = self.buf[:n]
        self.buf = self.buf[n:]
        return n


class _Chain:
    """The old tail's bytes, then the request body."""

    def __init__(self, first: bytes, rest: BodyPipe):
        self.first, self.rest = memoryview(first), rest

    def readinto(self, b: memoryview) -> int:
        if self.first:
            n = min(len(b), len(self.first))
            b[:n] = self.first[:n]
            self.first = self.first[n:]
            return n
        return self.rest.readinto(b)


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
        cutter = _Cutter(chunk_stream(_Chain(old_tail, body), self.engine.store.chunk_params))
        start_offset = u.offset

        def complete() -> bool:  # asked only once the body has ended
            return start_offset + body.received == u.length

        wrote_segment = False
        while True:
            seg = _SegmentStream(cutter, SEGMENT_BYTES, live.hasher.copy(), complete)
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

    def _drop_segments(self, txn, u: Upload, keep: bytes | None = None) -> None:  # noqa: ANN001
        idx = self.engine.index
        mine = {bytes.fromhex(s.hash) for s in u.segments if s.own} - {keep}
        if not mine:
            return
        named = idx.has_names(txn, mine)
        for f in mine - named:
            other = self._referenced_elsewhere(f.hex(), u.id)
            if other is not None:  # another upload holds the same part: it owns it now
                for s in other.segments:
                    if s.hash == f.hex():
                        s.own = True
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


def _date(t: float) -> str:
    return email.utils.formatdate(t, usegmt=True)


def _base_headers(u: Upload | None = None) -> dict[str, str]:
    h = {"Tus-Resumable": TUS_VERSION, "Cache-Control": "no-store"}
    if u is not None:
        h["Upload-Offset"] = str(u.offset)
        h["Upload-Length"] = str(u.length)
        h["Upload-Expires"] = _date(u.expires)
        if u.done_hash:
            h["Mosaic-Hash"] = u.done_hash
            h["Mosaic-New-Bytes"] = str(u.new_bytes)
    return h


def _check_version(request: Request) -> None:
    if request.headers.get("tus-resumable") != TUS_VERSION:
        raise Problem(412, f"Tus-Resumable: {TUS_VERSION} is required",
                      headers={"Tus-Version": TUS_VERSION})


def _uploads(request: Request) -> Uploads:
    return request.app.state.ctx.uploads


async def options(request: Request) -> Response:
    """OPTIONS: what this server supports (no credentials needed)."""
    return Response(status_code=204, headers={
        "Tus-Resumable": TUS_VERSION, "Tus-Version": TUS_VERSION, "Tus-Extension": EXTENSIONS,
        "Tus-Max-Size": str(MAX_SIZE)})


def _int_header(request: Request, key: str) -> int | None:
    v = request.headers.get(key)
    if v is None:
        return None
    if not v.isdigit() or len(v) > 19:
        raise Problem(400, f"malformed {key} header")
    return int(v)


async def create(request: Request) -> Response:
    """POST /v1/uploads/: a new upload (with its first bytes, if the body has any)."""
    _check_version(request)
    ups = _uploads(request)
    if request.headers.get("upload-defer-length") is not None:
        raise Problem(400, "Upload-Defer-Length is not supported; send Upload-Length")
    length = _int_header(request, "upload-length")
    if length is None:
        raise Problem(400, "Upload-Length is required")
    if length > MAX_SIZE:
        raise Problem(413, f"uploads are limited to {MAX_SIZE} bytes",
                      headers={"Tus-Max-Size": str(MAX_SIZE)})
    raw_meta = request.headers.get("upload-metadata", "")
    try:
        meta = parse_metadata(raw_meta)
    except UsageError as e:
        raise Problem(400, str(e)) from None
    name = name_param(meta["name"]) if meta.get("name") else None
    who = await require(request, "write", name)
    if name is None and who.prefix:
        raise Problem(403, "a token with a prefix must name its uploads (metadata `name`)")
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    declared = _int_header(request, "content-length")
    has_body = ctype == OFFSET_TYPE and (declared is None or declared > 0)
    if ctype and ctype != OFFSET_TYPE and declared:
        raise Problem(415, f"a body with the creation request must be {OFFSET_TYPE}")
    ctx = request.app.state.ctx
    if name is not None:
        await ctx.run(check_file_name, ctx.engine.index, name)
    if has_body and name is not None and declared == length and 0 < length <= SMALL_BODY:
        return await _create_whole(request, ctx, length, name, raw_meta, who.name)
    u = await ctx.run(ups.create, length, name, raw_meta, who.name)
    ctx.events.publish("upload", id=u.id, name=name, offset=0, length=length, state="created")
    headers = {**_base_headers(u), "Location": f"/v1/uploads/{u.id}"}
    if has_body or length == 0:
        async with ups.live_of(u).lock:
            await _append(request, ups, u, declared)
        headers.update(_base_headers(u))
    return Response(status_code=201, headers=headers)


async def _create_whole(request: Request, ctx, length: int, name: str, raw_meta: str,  # noqa: ANN001
                        owner: str) -> Response:
    """A creation request carrying a whole small file: stored like a small PUT (group
    commit with the others arriving at once), recorded as a finished upload. A body cut
    short stores nothing and creates no upload."""
    data = await small_body(request, length)
    doc = await ctx.batcher.put(ctx, data, name)
    u = await ctx.run(_uploads(request).create_done, length, name, raw_meta, owner, doc)
    ctx.events.publish("upload", id=u.id, name=name, offset=length, length=length, state="done",
                       hash=u.done_hash)
    ctx.events.publish("put", name=name, hash=u.done_hash, size=length, new=u.new)
    await after_write(ctx)
    return Response(status_code=201, headers={**_base_headers(u), "Location": f"/v1/uploads/{u.id}"})


async def _append(request: Request, ups: Uploads, u: Upload, declared: int | None) -> None:
    """Take one body at the upload's offset (the caller holds the upload's lock)."""
    ctx = request.app.state.ctx
    room = u.length - u.offset
    if declared is not None and declared > room:
        raise Problem(413, f"the body is {declared} bytes but the upload takes {room} more")
    pipe = BodyPipe(request, room, declared, strict=False)
    try:
        await consume(request, pipe, ups.append, u, pipe)
    finally:
        ctx.events.publish("upload", id=u.id, name=u.name, offset=u.offset, length=u.length,
                           state="progress")
    if u.offset == u.length and u.done_hash is None:
        await ctx.write(ups.finish, u)
        ctx.events.publish("upload", id=u.id, name=u.name, offset=u.offset, length=u.length,
                           state="done", hash=u.done_hash)
        ctx.events.publish("put", name=u.name, hash=u.done_hash, size=u.length, new=u.new)
        await after_write(ctx)


def _gone() -> Problem:
    return Problem(404, "no such upload (finished long ago, expired or terminated)", "not-found")


async def _owned(request: Request) -> Upload:
    _check_version(request)
    u = _uploads(request).get(request.path_params["id"])
    if u is None:
        raise _gone()
    who = await require(request, "write", u.name)
    if u.name is None and who.prefix:
        raise Problem(403, "outside this token's prefix")
    return u


async def head(request: Request) -> Response:
    """HEAD: the durable offset (waits briefly for a PATCH in progress to settle)."""
    ups = _uploads(request)
    u = await _owned(request)
    with trio.move_on_after(LOCK_WAIT_S):
        async with ups.live_of(u).lock:
            pass
    if not ups.current(u):
        raise _gone()
    h = _base_headers(u)
    if u.metadata:
        h["Upload-Metadata"] = u.metadata
    return Response(status_code=200, headers=h)


async def patch(request: Request) -> Response:
    """PATCH: append the body at Upload-Offset."""
    ups = _uploads(request)
    u = await _owned(request)
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != OFFSET_TYPE:
        raise Problem(415, f"PATCH bodies must be {OFFSET_TYPE}")
    offset = _int_header(request, "upload-offset")
    if offset is None:
        raise Problem(400, "Upload-Offset is required")
    declared = _int_header(request, "content-length")
    lock = ups.live_of(u).lock
    got = False
    with trio.move_on_after(LOCK_WAIT_S):
        await lock.acquire()
        got = True
    if not got:
        raise Problem(409, "another request is writing to this upload; try again")
    try:
        if not ups.current(u):
            raise _gone()
        if u.done_hash is not None or offset != u.offset:
            raise Problem(409, f"Upload-Offset is {offset} but the upload is at {u.offset}",
                          headers=_base_headers(u))
        await _append(request, ups, u, declared)
    finally:
        lock.release()
    return Response(status_code=204, headers=_base_headers(u))


async def terminate(request: Request) -> Response:
    """DELETE: forget the upload and release what it stored."""
    ups = _uploads(request)
    u = await _owned(request)
    ctx = request.app.state.ctx
    async with ups.live_of(u).lock:
        if ups.all.get(u.id) is not u:  # terminated (or expired) while this request waited
            raise _gone()
        await ctx.write(ups.drop, u)
    ctx.events.publish("upload", id=u.id, name=u.name, offset=u.offset, length=u.length,
                       state="terminated")
    return Response(status_code=204, headers={"Tus-Resumable": TUS_VERSION})


async def reap(ctx) -> None:  # noqa: ANN001 - Ctx
    """Drop expired uploads, now and every REAP_S."""
    ups: Uploads = ctx.uploads
    while True:
        for u in ups.expired():
            try:
                async with ups.live_of(u).lock:
                    if ups.all.get(u.id) is not u or u.expires >= time.time():
                        continue  # gone meanwhile, or a PATCH that waited extended it
                    await ctx.write(ups.drop, u)
            except MosaicError as e:
                log.warning("cannot drop expired upload %s: %s", u.id, e)
                continue
            if u.done_hash is None:
                ctx.events.publish("upload", id=u.id, name=u.name, offset=u.offset,
                                   length=u.length, state="expired")
        await trio.sleep(REAP_S if ctx.uploads.expire_s > REAP_S else max(1.0, ctx.uploads.expire_s / 4))


def uploads_dir(home_root: Path) -> Path:
    return Path(os.fspath(home_root)) / "http-uploads"


def routes() -> list[Route]:
    return [
        Route("/v1/uploads/", options, methods=["OPTIONS"]),
        Route("/v1/uploads/", create, methods=["POST"]),
        Route("/v1/uploads", options, methods=["OPTIONS"]),
        Route("/v1/uploads", create, methods=["POST"]),
        Route("/v1/uploads/{id}", options, methods=["OPTIONS"]),
        Route("/v1/uploads/{id}", head, methods=["HEAD"]),
        Route("/v1/uploads/{id}", patch, methods=["PATCH"]),
        Route("/v1/uploads/{id}", terminate, methods=["DELETE"]),
    ]
