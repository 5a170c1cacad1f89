"""`RcloneBackend`: any rclone remote, through one long-lived `rclone rcd`.

The backend starts `rclone rcd` on first use, bound to 127.0.0.1 on a port the
kernel picks (read back from rclone's log), with a random user and password
passed through the environment (never on the command line, where `ps` shows
it). It then speaks rclone's HTTP remote-control API with httpx:

- put: `operations/uploadfile` (multipart) to a hidden temp name in the target
  folder (cancellable; the temp is deleted if this fails), then, shielded
  from cancellation, `operations/deletefile` of any old value and
  `operations/movefile` onto the name. (rclone's own move would also delete
  the target first, and may skip the move when old and new "look equal" by
  size alone on remotes without hashes or mod times, hence the explicit
  delete.) So while a name is overwritten a reader may briefly get NotFound,
  never a partial value; a crash in that instant loses the old value (the new
  one stays in the temp until `sweep_temp`).
- get: `--rc-serve` serves objects at `/[remote]/path` and honours Range, so
  a ranged read transfers only the requested bytes.
- stat / delete / list: `operations/stat`, `operations/deletefile`,
  `operations/list` (recursive, files only).

A crashed rcd is restarted on the next call. `close()` stops it.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import shutil
import subprocess
import sys
import threading
import time
import weakref
from collections import deque
from typing import Any
from urllib.parse import quote

import httpx
import trio

from ._common import (
    check_range,
    discard_temp,
    folder_of,
    is_object_name,
    is_temp_name,
    parse_rfc3339,
    prefix_can_match,
    temp_name,
)
from ._http import NoReply, range_header, read_range, status_error, transport_error
from ._redact import register_basic_auth, register_secret, scrub
from .base import Backend, ObjectInfo, Usage, validate_name
from .errors import (
    BackendError,
    NotFound,
    PermanentError,
    QuotaExceeded,
    TransientError,
)

log = logging.getLogger(__name__)

_ADDR_RE = re.compile(r"remote control on (https?://127\.0\.0\.1:\d+)/?", re.I)
_TAIL_LINES = 50
_QUOTA_HINTS = ("no space left", "quota", "insufficient storage", "disk full", "storage full")
_PERMANENT_HINTS = (
    "permission denied",
    "access denied",
    "forbidden",
    "unauthorized",
    "didn't find section",
    "not found in config",
    "invalid",
    "not supported",
    "is a directory",
    "not a directory",
    "bad request",
)


def _through_a_file(exc: Exception) -> bool:
    """True for rclone's error about a path that runs through an object ("a/b" with
    "a" a file): for our purposes such a name simply does not exist."""
    return "not a directory" in str(exc).lower()


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Terminate rclone, then kill it if it lingers. Blocking, bounded."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


class _Daemon:
    """One running `rclone rcd` child: its process, URL, credentials and log tail.

    A daemon thread drains rclone's output (so rclone never blocks on a full
    pipe), keeps the last lines for error messages and spots the line that
    gives the address rclone bound.
    """

    def __init__(self, owner: object, proc: subprocess.Popen[bytes], user: str,
                 password: str) -> None:
        self.proc, self.user, self.password = proc, user, password
        self.url: str | None = None
        self._tail: deque[str] = deque(maxlen=_TAIL_LINES)
        self._reader = threading.Thread(target=self._drain, name="rclone-log", daemon=True)
        self._reader.start()
        # stops rclone if the owning backend is garbage collected (or the
        # interpreter exits) without close()
        self.finalizer = weakref.finalize(owner, _stop, proc)

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.decode(errors="replace").rstrip()
            self._tail.append(line)
            if self.url is None:
                m = _ADDR_RE.search(line)
                if m:
                    self.url = m.group(1) + "/"

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        """Stop rclone and wait for the log reader. Blocking, bounded."""
        self.finalizer.detach()
        _stop(self.proc)
        self._reader.join(timeout=5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def log_tail(self, lines: int = 8) -> str:
        return scrub(" | ".join(list(self._tail)[-lines:]))


class RcloneBackend(Backend):
    """Objects on rclone remote `remote` (`name:bucket/path`, `:local:/dir`, ...)."""

    kind = "rclone"
    #: put deletes an existing target before moving the new value in: a reader can
    #: briefly see NotFound (or a transient error), never a partial value
    atomic_overwrite = False

    def __init__(
        self,
        name: str,
        remote: str,
        rclone_binary: str = "rclone",
        config_path: str | None = None,
        *,
        max_connections: int = 8,
        start_timeout: float = 20.0,
        timeout: float = 300.0,
        commit_timeout: float = 120.0,
        quota: int | None = None,
    ) -> None:
        if not remote:
            raise ValueError("rclone remote is empty")
        self.name = name
        self.remote = remote
        self.rclone_binary = rclone_binary
        self.config_path = config_path
        #: configured quota in bytes, reported by usage()
        self.quota = quota
        self._max = max(1, int(max_connections))
        self._start_timeout = start_timeout
        self._timeout = timeout
        self._commit_timeout = commit_timeout
        self._limiter = trio.CapacityLimiter(self._max)
        self._start_lock = trio.Lock()
        self._daemon: _Daemon | None = None
        self._client: httpx.AsyncClient | None = None
        self._closed = False
        # `[remote]` in a URL path: every special character percent-encoded
        self._serve_root = quote(f"[{remote}]", safe="")

    def __repr__(self) -> str:
        return f"RcloneBackend(name={self.name!r}, remote={self.remote!r})"

    # -- the rcd child ---------------------------------------------------------

    def _spawn(self) -> _Daemon:
        exe = shutil.which(self.rclone_binary)
        if exe is None:
            raise PermanentError(
                f"rclone {self.name}: rclone binary {self.rclone_binary!r} not found "
                "(install it: apt-get install -y rclone)"
            )
        user, password = secrets.token_hex(8), secrets.token_urlsafe(24)
        register_secret(password)
        register_basic_auth(user, password)
        env = dict(os.environ, RCLONE_RC_USER=user, RCLONE_RC_PASS=password)
        args = [
            exe, "rcd",
            "--rc-addr", "127.0.0.1:0",
            "--rc-serve",
            "--low-level-retries", "3",
            "--log-level", "NOTICE",
        ]
        if self.config_path:
            args += ["--config", str(self.config_path)]
        setpriv = shutil.which("setpriv") if sys.platform.startswith("linux") else None
        if setpriv:
            # the kernel sends rclone SIGTERM if we die without calling close()
            args = [setpriv, "--pdeathsig", "TERM", "--", *args]
        proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            env=env, close_fds=True,
        )
        return _Daemon(self, proc, user, password)

    async def _start(self) -> _Daemon:
        d = self._spawn()
        try:
            with trio.fail_after(self._start_timeout):
                while d.url is None:
                    if not d.alive():
                        await trio.sleep(0.05)  # let the reader catch the last lines
                        raise PermanentError(
                            f"rclone {self.name}: rclone rcd exited at start: {d.log_tail()}"
                        )
                    await trio.sleep(0.02)
            return d
        except trio.TooSlowError:
            d.stop()
            raise TransientError(
                f"rclone {self.name}: rclone rcd did not start within {self._start_timeout}s"
            ) from None
        except BaseException:
            d.stop()
            raise

    async def _ensure(self) -> tuple[httpx.AsyncClient, _Daemon]:
        """The running daemon and a client for it; (re)start it when needed."""
        if self._closed:
            raise PermanentError(f"rclone {self.name}: backend is closed")
        d = self._daemon
        if d is not None and d.alive() and self._client is not None:
            return self._client, d
        async with self._start_lock:
            d = self._daemon
            if d is None or not d.alive():
                if d is not None:
                    log.warning("rclone %s: rcd died (%s); restarting", self.name, d.log_tail())
                    await trio.to_thread.run_sync(d.stop)
                    await self._close_client()
                d = self._daemon = await self._start()
            if self._client is None:
                assert d.url is not None
                self._client = httpx.AsyncClient(
                    base_url=d.url,
                    auth=httpx.BasicAuth(d.user, d.password),
                    timeout=httpx.Timeout(self._timeout, connect=10.0, pool=None),
                    limits=httpx.Limits(
                        max_connections=self._max, max_keepalive_connections=self._max
                    ),
                )
            return self._client, d

    async def _close_client(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    # -- rc calls --------------------------------------------------------------

    def _what(self, op: str, name: str) -> str:
        return f"rclone {self.name}: {op} {name!r} on {self.remote}"

    def _rc_error(self, op: str, name: str, status: int, message: str) -> BackendError:
        msg = scrub(message)[:300]
        what = f"{self._what(op, name)}: {msg or 'error'} (HTTP {status})"
        low = msg.lower()
        if status == 404:
            return NotFound(what)
        if any(h in low for h in _QUOTA_HINTS):
            return QuotaExceeded(what)
        if status in (400, 401, 403) or any(h in low for h in _PERMANENT_HINTS):
            return PermanentError(what)
        return TransientError(what)

    async def _post(self, op: str, name: str, path: str, **kw: Any) -> dict[str, Any]:
        """POST to an rc endpoint; return its JSON or raise a mapped error."""
        client, _ = await self._ensure()
        async with self._limiter:
            try:
                r = await client.post(path, **kw)
            except httpx.HTTPError as e:
                raise transport_error(self._what(op, name), e) from None
        try:
            body = r.json()
        except ValueError:
            body = {"error": r.text[:300]}
        if r.status_code == 200:
            return body if isinstance(body, dict) else {}
        err = body.get("error", "") if isinstance(body, dict) else ""
        raise self._rc_error(op, name, r.status_code, str(err))

    async def _delete_temp(self, tmp: str) -> bool:
        try:
            await self._post("cleanup", tmp, "operations/deletefile",
                             json={"fs": self.remote, "remote": tmp})
        except NotFound:
            return False
        except BackendError as e:
            log.debug("rclone %s: could not remove temp %s: %s", self.name, tmp, e)
        return True

    # -- Backend ---------------------------------------------------------------

    async def put(self, name: str, data: bytes) -> None:
        """Upload to a temp name (cancellable), then move it onto `name` (shielded)."""
        validate_name(name)
        tmp = temp_name(name)
        uploaded = answered = False
        try:
            try:
                await self._post(
                    "put", name, "operations/uploadfile",
                    params={"fs": self.remote, "remote": folder_of(name)},
                    files={"file0": (tmp.rpartition("/")[2], bytes(data),
                                     "application/octet-stream")},
                )
            except NotFound as e:  # e.g. the bucket behind the remote is missing
                answered = True
                raise PermanentError(str(e)) from None
            except BackendError as e:
                answered = not isinstance(e, NoReply)
                raise
            uploaded = True
        finally:
            if not uploaded:
                # an upload cut short may still be in progress in rclone: look again
                await discard_temp(lambda: self._delete_temp(tmp), retry=not answered)
        await self._commit(name, tmp)

    async def _commit(self, name: str, tmp: str) -> None:
        """Replace `name` by the uploaded temp, shielded from cancellation.

        Any old value is deleted first: rclone's move skips the transfer when
        the target "looks equal" (same size and, on remotes without mod times
        or hashes, nothing else), which would silently keep the old bytes.
        Once the old value is gone, the move must finish, so this step is not
        cancellable (it is bounded by `commit_timeout`). If rclone gives no
        answer, the temp is left for `sweep_temp`.
        """
        what = self._what("put (move)", name)
        with trio.CancelScope(shield=True):
            with trio.move_on_after(self._commit_timeout) as deadline:
                try:
                    if await self._is_file(name):  # (stat: a miss is not logged as an error)
                        try:
                            await self._post("put (replace)", name, "operations/deletefile",
                                             json={"fs": self.remote, "remote": name})
                        except NotFound:
                            pass  # someone else removed it meanwhile
                    await self._post(
                        "put (move)", name, "operations/movefile",
                        json={"srcFs": self.remote, "srcRemote": tmp,
                              "dstFs": self.remote, "dstRemote": name},
                    )
                    return
                except NoReply:
                    raise  # rclone may still be moving: leave the temp alone
                except NotFound as e:  # our temp vanished: uploading again may work
                    raise TransientError(str(e)) from None
                except BackendError:
                    await discard_temp(lambda: self._delete_temp(tmp), retry=False)
                    raise
        if deadline.cancelled_caught:
            raise NoReply(f"{what}: no answer in {self._commit_timeout}s "
                          "(temp left for sweep_temp)")

    async def get(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        """Ranged GET through `--rc-serve`; only the asked bytes cross the wire."""
        check_range(offset, length)
        validate_name(name)
        if length == 0:
            await self.stat(name)
            return b""
        client, _ = await self._ensure()
        what = self._what("get", name)
        async with self._limiter:
            try:
                async with client.stream(
                    "GET", f"{self._serve_root}/{name}", headers=range_header(offset, length)
                ) as r:
                    if r.status_code == 416:
                        return b""
                    if r.status_code in (200, 206):
                        return await read_range(r, offset, length)
                    status = r.status_code
            except httpx.HTTPError as e:
                raise transport_error(what, e) from None
        if status >= 500:
            # rc-serve answers 500 for a folder or a path through a file: ask stat
            await self.stat(name)
        raise status_error(what, status)

    async def stat(self, name: str) -> ObjectInfo:
        """operations/stat; a folder is not an object."""
        validate_name(name)
        try:
            body = await self._post("stat", name, "operations/stat",
                                    json={"fs": self.remote, "remote": name})
        except BackendError as e:
            if _through_a_file(e):
                raise NotFound(str(e)) from None
            raise
        item = body.get("item")
        if not item or item.get("IsDir"):
            raise NotFound(f"{self._what('stat', name)}: not found")
        return ObjectInfo(name, int(item.get("Size", 0)))

    async def delete(self, name: str) -> None:
        """operations/deletefile; missing objects and folders are left alone."""
        validate_name(name)
        try:
            await self._post("delete", name, "operations/deletefile",
                             json={"fs": self.remote, "remote": name})
        except NotFound:
            pass
        except PermanentError as e:
            if "is a directory" not in str(e).lower() and not _through_a_file(e):
                raise

    async def list(self, prefix: str = "") -> list[ObjectInfo]:
        """operations/list, recursive and files only, from the prefix's folder."""
        if not prefix_can_match(prefix):
            return []
        folder = folder_of(prefix)
        try:
            body = await self._post(
                "list", prefix, "operations/list",
                json={"fs": self.remote, "remote": folder,
                      "opt": {"recurse": True, "filesOnly": True,
                              "noModTime": True, "noMimeType": True}},
            )
        except NotFound:
            return []
        except BackendError as e:
            if _through_a_file(e) or (folder and await self._is_file(folder)):
                return []  # the prefix's "folder" is (below) an object: nothing there
            raise
        out = [
            ObjectInfo(item["Path"], int(item.get("Size", 0)))
            for item in body.get("list") or ()
            if not item.get("IsDir")
            and item["Path"].startswith(prefix)
            and is_object_name(item["Path"])
        ]
        out.sort(key=lambda o: o.name)
        return out

    async def sweep_temp(self, older_than: float = 3600.0) -> int:
        """Delete temp files older than `older_than` seconds (by rclone's ModTime)."""
        try:
            body = await self._post(
                "sweep", "", "operations/list",
                json={"fs": self.remote, "remote": "",
                      "opt": {"recurse": True, "filesOnly": True, "noMimeType": True}},
            )
        except NotFound:
            return 0
        cutoff = time.time() - older_than
        removed = 0
        for item in body.get("list") or ():
            path = item.get("Path", "")
            mtime = parse_rfc3339(item.get("ModTime", ""))
            if is_temp_name(path) and mtime is not None and mtime <= cutoff:
                try:
                    await self._post("sweep", path, "operations/deletefile",
                                     json={"fs": self.remote, "remote": path})
                    removed += 1
                except NotFound:
                    pass
        return removed

    async def usage(self) -> Usage:
        """Bytes and objects from a full listing (temp files excluded); configured quota."""
        objs = await self.list("")
        return Usage(used=sum(o.size for o in objs), objects=len(objs), quota=self.quota)

    async def _is_file(self, name: str) -> bool:
        try:
            await self.stat(name)
        except NotFound:
            return False
        return True

    async def close(self) -> None:
        """Close the client and stop rclone; safe to call twice."""
        self._closed = True
        await self._close_client()
        d, self._daemon = self._daemon, None
        if d is not None:
            await trio.to_thread.run_sync(d.stop)
