"""`WebDAVBackend`: objects as files on a WebDAV server, via httpx (trio-native).

- put: MKCOL missing parent collections (cached), PUT to a hidden temp name,
  then MOVE it over the target (`Overwrite: T`); the temp is deleted if any
  step fails or is cancelled. Whether an overwrite is atomic depends on the
  server: RFC 4918 lets MOVE delete the target first (wsgidav does), so a
  concurrent reader may briefly see NotFound while a name is overwritten.
- get: GET with a Range header; 206, 200 (range ignored: we skip and stop
  early) and 416 (range past the end: b"") are handled.
- list: PROPFIND `Depth: 1`, recursively and concurrently. `Depth: infinity`
  is deliberately not used: several servers (SabreDAV/Nextcloud by default)
  silently answer it as depth 1, which would hide nested objects.
"""

from __future__ import annotations

import logging
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import httpx
import trio

from ._common import (
    check_range,
    could_contain,
    discard_temp,
    folder_of,
    is_object_name,
    is_temp_name,
    prefix_can_match,
    raise_single_backend_error,
    temp_name,
)
from ._http import NoReply, range_header, read_range, status_error, transport_error
from ._redact import register_basic_auth, register_secret
from .base import Backend, ObjectInfo, Usage, validate_name
from .errors import BackendError, NotFound, PermanentError, TransientError

log = logging.getLogger(__name__)

_PROPFIND_BODY = (
    b'<?xml version="1.0" encoding="utf-8"?>'
    b'<d:propfind xmlns:d="DAV:"><d:prop>'
    b"<d:resourcetype/><d:getcontentlength/><d:getlastmodified/>"
    b"</d:prop></d:propfind>"
)
_QUOTA_BODY = (
    b'<?xml version="1.0" encoding="utf-8"?>'
    b'<d:propfind xmlns:d="DAV:"><d:prop>'
    b"<d:quota-available-bytes/><d:quota-used-bytes/>"
    b"</d:prop></d:propfind>"
)
_D = "{DAV:}"


class _Entry:
    """One `<d:response>` of a PROPFIND: path relative to the base, and props."""

    __slots__ = ("rel", "is_dir", "size", "props")

    def __init__(self, rel: str, is_dir: bool, size: int | None, props: dict[str, str]) -> None:
        self.rel, self.is_dir, self.size, self.props = rel, is_dir, size, props

    @property
    def mtime(self) -> float | None:
        """getlastmodified (an RFC 1123 date) as seconds since the epoch."""
        text = self.props.get("getlastmodified")
        if not text:
            return None
        try:
            return parsedate_to_datetime(text).timestamp()
        except (TypeError, ValueError):
            return None


class WebDAVBackend(Backend):
    """Objects under `url` + `prefix` on a WebDAV server, with optional basic auth."""

    kind = "webdav"
    #: MOVE with Overwrite may delete the target first: while a name is overwritten
    #: a reader can briefly see NotFound (or a transient error), never a partial value
    atomic_overwrite = False

    def __init__(
        self,
        name: str,
        url: str,
        username: str | None = None,
        password: str | None = None,
        prefix: str = "",
        *,
        max_connections: int = 8,
        timeout: float = 60.0,
        quota: int | None = None,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("WebDAV url must be http(s)://host/path")
        if parts.username or parts.password:
            raise ValueError("put WebDAV credentials in username/password, not in the url")
        self.name = name
        #: configured quota in bytes; without one, usage() asks the server (RFC 4331)
        self.quota = quota
        self.url = url if url.endswith("/") else url + "/"
        p = prefix.strip("/")
        self.prefix = quote(p) + "/" if p else ""
        self._root = self.url + self.prefix  # collection holding our objects
        self._root_path = unquote(urlsplit(self._root).path)
        self._auth = httpx.BasicAuth(username or "", password) if password is not None else None
        register_secret(password)
        register_basic_auth(username, password)
        if password and parts.scheme == "http" and parts.hostname not in ("127.0.0.1", "localhost", "::1"):
            log.warning("webdav %s: sending a password over plain http", name)
        self._max = max(1, int(max_connections))
        self._timeout = timeout
        self._limiter = trio.CapacityLimiter(self._max)
        self._client: httpx.AsyncClient | None = None
        self._known: set[str] = set()  # relative collection paths known to exist
        self._mkcol_lock = trio.Lock()
        self._closed = False

    def __repr__(self) -> str:
        return f"WebDAVBackend(name={self.name!r}, url={self._root!r})"

    # -- plumbing ------------------------------------------------------------

    def _http(self) -> httpx.AsyncClient:
        if self._closed:
            raise PermanentError(f"webdav {self.name}: backend is closed")
        if self._client is None:
            self._client = httpx.AsyncClient(
                auth=self._auth,
                timeout=httpx.Timeout(self._timeout, connect=10.0, pool=None),
                limits=httpx.Limits(
                    max_connections=self._max, max_keepalive_connections=self._max
                ),
                follow_redirects=False,
            )
        return self._client

    def _what(self, op: str, name: str) -> str:
        return f"webdav {self.name}: {op} {name!r} at {self._root}"

    async def _request(
        self, op: str, name: str, method: str, rel: str, **kw: Any
    ) -> httpx.Response:
        """One request (body read) under the limiter; transport errors mapped."""
        client = self._http()
        async with self._limiter:
            try:
                return await client.request(method, self._root + rel, **kw)
            except httpx.HTTPError as e:
                raise transport_error(self._what(op, name), e) from None

    async def _propfind(self, op: str, name: str, rel: str, depth: str,
                        body: bytes = _PROPFIND_BODY) -> list[_Entry] | None:
        """PROPFIND `rel`; None if it does not exist."""
        r = await self._request(
            op, name, "PROPFIND", rel, content=body,
            headers={"Depth": depth, "Content-Type": "application/xml; charset=utf-8"},
        )
        if r.status_code == 404:
            return None
        if r.status_code != 207:
            raise status_error(self._what(op, name), r.status_code)
        try:
            return self._parse_multistatus(r.content)
        except (ET.ParseError, ValueError) as e:
            raise PermanentError(f"{self._what(op, name)}: bad PROPFIND reply ({e})") from None

    def _parse_multistatus(self, xml: bytes) -> list[_Entry]:
        out: list[_Entry] = []
        for resp in ET.fromstring(xml).iter(f"{_D}response"):
            href = resp.findtext(f"{_D}href") or ""
            path = unquote(urlsplit(href.strip()).path)
            if not path.startswith(self._root_path):
                if path.rstrip("/") + "/" == self._root_path:
                    path = self._root_path
                else:
                    continue
            rel = path[len(self._root_path):].strip("/")
            is_dir, size, props = False, None, {}
            for ps in resp.iter(f"{_D}propstat"):
                status = ps.findtext(f"{_D}status") or ""
                if " 200 " not in status + " ":
                    continue
                prop = ps.find(f"{_D}prop")
                if prop is None:
                    continue
                rt = prop.find(f"{_D}resourcetype")
                if rt is not None and rt.find(f"{_D}collection") is not None:
                    is_dir = True
                for child in prop:
                    props[child.tag.removeprefix(_D)] = (child.text or "").strip()
                if props.get("getcontentlength"):
                    size = int(props["getcontentlength"])
            out.append(_Entry(rel, is_dir, size, props))
        return out

    async def _ensure_collections(self, name: str, *, refresh: bool = False) -> None:
        """MKCOL every missing collection on the way to `name`'s folder."""
        folder = folder_of(name)
        if not folder:
            levels: list[str] = []
        else:
            comps = folder.split("/")
            levels = ["/".join(comps[: i + 1]) for i in range(len(comps))]
        if self.prefix:
            levels.insert(0, "")  # the prefix collection itself
        if refresh:
            self._known.difference_update(levels)
        if all(lvl in self._known for lvl in levels):
            return
        async with self._mkcol_lock:  # one creator at a time: servers race badly
            for lvl in levels:
                if lvl not in self._known:
                    await self._mkcol(name, lvl)
                    self._known.add(lvl)

    async def _mkcol(self, name: str, lvl: str) -> None:
        rel = lvl + "/" if lvl else ""
        r = await self._request("mkcol", name, "MKCOL", rel)
        if r.status_code in (200, 201, 405):  # 405: it already exists
            return
        # another client may have created it meanwhile (some servers answer 500)
        entries = await self._propfind("mkcol", name, rel, "0")
        if entries and entries[0].is_dir:
            return
        if r.status_code == 409:
            raise PermanentError(
                f"{self._what('mkcol', lvl)}: parent collection missing (does {self.url} exist?)"
            )
        raise status_error(self._what("mkcol", lvl or "/"), r.status_code)

    async def _delete_temp(self, rel: str) -> bool:
        r = await self._request("cleanup", rel, "DELETE", rel)
        if r.status_code == 404:
            return False
        if r.status_code not in (200, 202, 204):
            log.debug("webdav %s: could not remove temp %s: HTTP %s", self.name, rel, r.status_code)
        return True

    async def _walk(self, folder: str, descend: Callable[[str], bool]) -> list[_Entry]:
        """Every non-collection entry under `folder`, hidden ones included, found by
        PROPFIND Depth 1 into each sub-collection `descend` accepts, concurrently."""
        found: list[_Entry] = []

        async def walk(folder: str, nursery: trio.Nursery) -> None:
            rel = folder + "/" if folder else ""
            entries = await self._propfind("list", folder, rel, "1")
            for e in entries or ():
                if e.rel == folder or not e.rel:
                    continue  # the folder itself
                if e.is_dir:
                    if not e.rel.rpartition("/")[2].startswith(".") and descend(e.rel):
                        nursery.start_soon(walk, e.rel, nursery)
                else:
                    found.append(e)

        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(walk, folder, nursery)
        except BaseExceptionGroup as group:
            raise_single_backend_error(group)
            raise
        return found

    # -- Backend -------------------------------------------------------------

    async def put(self, name: str, data: bytes) -> None:
        """PUT to a temp name (cancellable), then MOVE it over `name` (shielded)."""
        validate_name(name)
        tmp = temp_name(name)
        body = bytes(data)
        await self._ensure_collections(name)
        uploaded = answered = False
        try:
            r = await self._request("put", name, "PUT", tmp, content=body)
            if r.status_code in (404, 409):  # a parent collection vanished
                await self._ensure_collections(name, refresh=True)
                r = await self._request("put", name, "PUT", tmp, content=body)
            answered = True
            if r.status_code not in (200, 201, 204):
                if r.status_code in (404, 409):
                    raise PermanentError(f"{self._what('put', name)}: HTTP {r.status_code}")
                raise status_error(self._what("put", name), r.status_code)
            uploaded = True
        finally:
            if not uploaded:
                # an upload cut short may still be in progress on the server
                await discard_temp(lambda: self._delete_temp(tmp), retry=not answered)
        await self._commit(name, tmp)

    async def _commit(self, name: str, tmp: str) -> None:
        """MOVE the uploaded temp onto `name`, shielded from cancellation.

        The server may delete the old value before renaming (RFC 4918 allows
        it), so abandoning a MOVE half-way and deleting the temp could lose
        both values. If the MOVE gets no answer, the temp is left for
        `sweep_temp`; if the server answers with an error, it is removed.
        """
        what = self._what("put (move)", name)
        with trio.CancelScope(shield=True):
            with trio.move_on_after(self._timeout) as deadline:
                r = await self._request(
                    "put", name, "MOVE", tmp,
                    headers={"Destination": self._root + name, "Overwrite": "T"},
                )
                if r.status_code in (200, 201, 204):
                    return
                await discard_temp(lambda: self._delete_temp(tmp), retry=False)
                if r.status_code in (404, 409):  # our temp or its folder vanished
                    raise TransientError(f"{what}: HTTP {r.status_code}")
                raise status_error(what, r.status_code)
        if deadline.cancelled_caught:
            raise NoReply(f"{what}: no answer in {self._timeout}s (temp left for sweep_temp)")

    async def get(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        """Ranged GET; reads only what it needs even if the server ignores Range."""
        check_range(offset, length)
        validate_name(name)
        if length == 0:
            await self.stat(name)
            return b""
        client = self._http()
        what = self._what("get", name)
        async with self._limiter:
            try:
                async with client.stream(
                    "GET", self._root + name, headers=range_header(offset, length)
                ) as r:
                    if r.status_code == 416:
                        return b""
                    if r.status_code not in (200, 206):
                        raise status_error(what, r.status_code)
                    return await read_range(r, offset, length)
            except httpx.HTTPError as e:
                raise transport_error(what, e) from None

    async def stat(self, name: str) -> ObjectInfo:
        """PROPFIND Depth 0; a collection is not an object."""
        validate_name(name)
        entries = await self._propfind("stat", name, name, "0")
        if not entries or entries[0].is_dir:
            raise NotFound(f"{self._what('stat', name)}: not found")
        size = entries[0].size
        if size is None:  # server without getcontentlength: ask HEAD
            r = await self._request("stat", name, "HEAD", name)
            if r.status_code != 200:
                raise status_error(self._what("stat", name), r.status_code)
            size = int(r.headers.get("content-length", "0"))
        return ObjectInfo(name, size)

    async def delete(self, name: str) -> None:
        """DELETE, after checking `name` is not a collection (DELETE is recursive)."""
        validate_name(name)
        entries = await self._propfind("delete", name, name, "0")
        if not entries or entries[0].is_dir:
            return
        r = await self._request("delete", name, "DELETE", name)
        if r.status_code not in (200, 202, 204, 404):
            raise status_error(self._what("delete", name), r.status_code)

    async def list(self, prefix: str = "") -> list[ObjectInfo]:
        """PROPFIND Depth 1 over every collection that can hold `prefix` names."""
        if not prefix_can_match(prefix):
            return []
        entries = await self._walk(folder_of(prefix), lambda rel: could_contain(rel, prefix))
        found = [
            ObjectInfo(e.rel, e.size or 0)
            for e in entries
            if e.rel.startswith(prefix) and is_object_name(e.rel)
        ]
        found.sort(key=lambda o: o.name)
        return found

    async def sweep_temp(self, older_than: float = 3600.0) -> int:
        """DELETE temp files older than `older_than` seconds (by getlastmodified)."""
        cutoff = time.time() - older_than
        removed = 0
        for e in await self._walk("", lambda rel: True):
            if is_temp_name(e.rel) and e.mtime is not None and e.mtime <= cutoff:
                r = await self._request("sweep", e.rel, "DELETE", e.rel)
                if r.status_code in (200, 202, 204):
                    removed += 1
                elif r.status_code != 404:
                    raise status_error(self._what("sweep", e.rel), r.status_code)
        return removed

    async def usage(self) -> Usage:
        """Bytes/objects from `list`; quota from RFC 4331 properties when offered."""
        objs = await self.list("")
        quota = self.quota
        if quota is not None:
            return Usage(used=sum(o.size for o in objs), objects=len(objs), quota=quota)
        try:
            entries = await self._propfind("usage", "", "", "0", body=_QUOTA_BODY)
            if entries:
                props = entries[0].props
                avail = props.get("quota-available-bytes")
                used = props.get("quota-used-bytes")
                if avail and used and int(avail) >= 0:
                    quota = int(avail) + int(used)
        except (BackendError, ValueError):
            quota = None
        return Usage(used=sum(o.size for o in objs), objects=len(objs), quota=quota)

    async def close(self) -> None:
        """Close the connection pool; safe to call twice."""
        self._closed = True
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()
