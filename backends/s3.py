"""`S3Backend`: objects in an S3 (or S3-compatible) bucket, via boto3.

boto3 is blocking, so every call runs in a worker thread under a per-backend
`trio.CapacityLimiter`; the client is thread-safe and shared. botocore's own
retries are turned off: `RetryingBackend` retries `TransientError` instead, so
there is one retry policy for every backend. Uploads carry a Content-MD5 so
the service rejects a body damaged in transit.

Error messages name the operation, bucket, key and S3 error code, never a
credential; library log records are scrubbed too (see `_redact`).
"""

from __future__ import annotations

import base64
import hashlib
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import botocore.config
import botocore.exceptions as bexc
import botocore.session
import trio

from ._common import check_range, is_object_name, is_temp_name, prefix_can_match
from ._redact import register_secret, scrub
from .base import Backend, ObjectInfo, Usage, validate_name
from .errors import BackendError, NotFound, PermanentError, QuotaExceeded, TransientError

T = TypeVar("T")

_NOT_FOUND = {"NoSuchKey", "404", "NotFound"}
_QUOTA = {
    "QuotaExceeded",
    "EntityTooLarge",
    "StorageQuotaExceeded",
    "XMinioStorageFull",
    "InsufficientStorage",
    "ServiceQuotaExceeded",
    "507",
}
_TRANSIENT = {
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottled",
    "RequestThrottledException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "ProvisionedThroughputExceededException",
    "RequestTimeout",
    "RequestTimeoutException",
    "InternalError",
    "InternalFailure",
    "ServiceUnavailable",
    "BadDigest",  # body damaged in transit: sending it again fixes it
    "IncompleteBody",
    "OperationAborted",  # a conflicting operation on the bucket is in progress
    "XAmzContentSHA256Mismatch",
    "429",
    "500",
    "502",
    "503",
    "504",
}
_PERMANENT = {
    "NoSuchBucket",
    "AccessDenied",
    "AllAccessDisabled",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "InvalidToken",
    "ExpiredToken",
    "InvalidBucketName",
    "AuthorizationHeaderMalformed",
    "AccountProblem",
    "InvalidRequest",
    "InvalidArgument",
    "MethodNotAllowed",
    "RequestTimeTooSkewed",
    "401",
    "403",
}

_TRANSIENT_BOTO = (
    bexc.ConnectionError,  # endpoint unreachable, connect timeout, SSL, proxy
    bexc.HTTPClientError,  # read timeout, connection closed, stream errors
    bexc.IncompleteReadError,
)


_session_lock = threading.Lock()
_session: botocore.session.Session | None = None


def _shared_session() -> botocore.session.Session:
    """One botocore session for every backend: it caches the parsed service
    models, so a new client takes milliseconds instead of ~100 ms. Credentials
    are given per client, never stored in the session."""
    global _session
    if _session is None:
        _session = botocore.session.get_session()
    return _session


def _client_config(max_workers: int, path_style: bool) -> botocore.config.Config:
    opts: dict[str, Any] = {
        "retries": {"total_max_attempts": 1, "mode": "standard"},  # RetryingBackend retries
        "connect_timeout": 3,
        "read_timeout": 6,
        "max_pool_connections": max_workers,
        "tcp_keepalive": True,
        "signature_version": "s3v4",
        "s3": {"addressing_style": "path" if path_style else "auto"},
    }
    # botocore >= 1.36 adds CRC trailers by default, which many S3-compatible
    # services reject; we send Content-MD5 ourselves instead.
    if "request_checksum_calculation" in botocore.config.Config.OPTION_DEFAULTS:
        opts["request_checksum_calculation"] = "when_required"
        opts["response_checksum_validation"] = "when_required"
    return botocore.config.Config(**opts)


class S3Backend(Backend):
    """Objects under `prefix` in `bucket`; `endpoint` for S3-compatible services."""

    kind = "s3"
    #: a PutObject replaces the old value atomically
    atomic_overwrite = True

    def __init__(
        self,
        name: str,
        bucket: str,
        endpoint: str | None = None,
        region: str | None = None,
        prefix: str = "",
        access_key: str | None = None,
        secret_key: str | None = None,
        session_token: str | None = None,
        max_workers: int = 8,
        quota: int | None = None,
    ) -> None:
        if not bucket:
            raise ValueError("S3 bucket name is empty")
        self.name = name
        self.bucket = bucket
        self.endpoint = endpoint
        self.region = region
        p = prefix.strip("/")
        self.prefix = f"{p}/" if p else ""
        self.max_workers = max(1, int(max_workers))
        #: configured quota in bytes, reported by usage() (S3 itself has none)
        self.quota = quota
        register_secret(secret_key, session_token, access_key)
        self._creds = (access_key, secret_key, session_token)
        self._limiter = trio.CapacityLimiter(self.max_workers)
        self._client: Any = None
        self._client_lock = threading.Lock()
        self._closed = False

    def __repr__(self) -> str:
        return f"S3Backend(name={self.name!r}, bucket={self.bucket!r}, prefix={self.prefix!r})"

    # -- plumbing ------------------------------------------------------------

    def _get_client(self) -> Any:
        """The shared boto3 client, created on first use (in a worker thread)."""
        with self._client_lock:
            if self._closed:
                raise PermanentError(f"s3 {self.name}: backend is closed")
            if self._client is None:
                access_key, secret_key, token = self._creds
                with _session_lock:  # create_client is not thread-safe
                    self._client = _shared_session().create_client(
                        "s3",
                        region_name=self.region,
                        endpoint_url=self.endpoint,
                        aws_access_key_id=access_key,
                        aws_secret_access_key=secret_key,
                        aws_session_token=token,
                        config=_client_config(self.max_workers, path_style=bool(self.endpoint)),
                    )
            return self._client

    def _key(self, name: str) -> str:
        return self.prefix + validate_name(name)

    def _where(self, op: str, key: str) -> str:
        return f"s3 {self.name}: {op} s3://{self.bucket}/{key}"

    def _map(self, exc: Exception, op: str, key: str) -> BackendError:
        """Translate a boto exception into our error tree with a scrubbed message."""
        where = self._where(op, key)
        if isinstance(exc, bexc.ClientError):
            err = exc.response.get("Error", {}) or {}
            code = str(err.get("Code", "") or "")
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            detail = scrub(str(err.get("Message", "") or ""))[:200]
            what = f"{where}: {code or 'error'} (HTTP {status})" + (f": {detail}" if detail else "")
            if code in _NOT_FOUND:
                return NotFound(what)
            if code in _QUOTA or status == 507:
                return QuotaExceeded(what)
            if code in _TRANSIENT or (isinstance(status, int) and (status >= 500 or status == 429)):
                return TransientError(what)
            if code in _PERMANENT:
                return PermanentError(what)
            if status == 404:
                return NotFound(what)
            return PermanentError(what)
        if isinstance(exc, _TRANSIENT_BOTO):
            return TransientError(f"{where}: {type(exc).__name__}: {scrub(str(exc))[:200]}")
        if isinstance(exc, bexc.NoCredentialsError | bexc.PartialCredentialsError):
            return PermanentError(f"{where}: missing or incomplete credentials")
        if isinstance(exc, bexc.BotoCoreError):
            return PermanentError(f"{where}: {type(exc).__name__}: {scrub(str(exc))[:200]}")
        if isinstance(exc, OSError):  # socket errors that escaped botocore's wrapping
            return TransientError(f"{where}: {type(exc).__name__}: {scrub(str(exc))[:200]}")
        return PermanentError(f"{where}: {type(exc).__name__}")

    async def _call(self, op: str, key: str, fn: Callable[[Any], T], *,
                    read_only: bool = False) -> T:
        """Run `fn(client)` in a worker thread and map its errors.

        A read-only request is abandoned when its caller is cancelled (a reader that
        gave up on a hung service moves on; the thread ends on its own, its answer
        unused). A write is always waited for: its outcome decides what is stored."""

        def run() -> T:
            return fn(self._get_client())

        try:
            return await trio.to_thread.run_sync(run, limiter=self._limiter,
                                                 abandon_on_cancel=read_only)
        except BackendError:
            raise
        except Exception as e:
            # `from None`: the library's exception text is not ours to vouch for
            raise self._map(e, op, key) from None

    # -- Backend -------------------------------------------------------------

    async def put(self, name: str, data: bytes) -> None:
        """One PutObject (atomic on S3) with Content-MD5."""
        key = self._key(name)
        body = bytes(data)

        def run(c: Any) -> None:
            md5 = base64.b64encode(hashlib.md5(body, usedforsecurity=False).digest()).decode()
            c.put_object(Bucket=self.bucket, Key=key, Body=body, ContentMD5=md5)

        await self._call("put", key, run)

    async def get(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        """GetObject with `Range: bytes=a-b`; a range at or past the end gives b""."""
        check_range(offset, length)
        key = self._key(name)
        if length == 0:
            await self.stat(name)  # still NotFound for a missing object
            return b""
        if offset == 0 and length is None:
            rng = None
        elif length is None:
            rng = f"bytes={offset}-"
        else:
            rng = f"bytes={offset}-{offset + length - 1}"

        def run(c: Any) -> bytes:
            kw: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
            if rng:
                kw["Range"] = rng
            try:
                resp = c.get_object(**kw)
            except bexc.ClientError as e:
                if e.response.get("Error", {}).get("Code") == "InvalidRange":
                    return b""  # the object exists and the range starts at/after its end
                raise
            with resp["Body"] as body:
                data = body.read()
            if rng and "ContentRange" not in resp:
                # an S3-alike that ignored the Range header sent the whole object
                return data[offset:] if length is None else data[offset : offset + length]
            if length is not None and len(data) > length:
                data = data[:length]
            return data

        return await self._call("get", key, run, read_only=True)

    async def stat(self, name: str) -> ObjectInfo:
        """HeadObject."""
        key = self._key(name)
        resp = await self._call(
            "stat", key, lambda c: c.head_object(Bucket=self.bucket, Key=key), read_only=True
        )
        return ObjectInfo(name, int(resp["ContentLength"]))

    async def delete(self, name: str) -> None:
        """DeleteObject (S3 answers 204 for a missing key too)."""
        key = self._key(name)

        def run(c: Any) -> None:
            try:
                c.delete_object(Bucket=self.bucket, Key=key)
            except bexc.ClientError as e:
                if e.response.get("Error", {}).get("Code") not in _NOT_FOUND:
                    raise

        await self._call("delete", key, run)

    async def list(self, prefix: str = "") -> list[ObjectInfo]:
        """ListObjectsV2 pages under our prefix; foreign or invalid keys are skipped."""
        if not prefix_can_match(prefix):
            return []
        full = self.prefix + prefix
        cut = len(self.prefix)

        def run(c: Any) -> list[ObjectInfo]:
            out: list[ObjectInfo] = []
            pages = c.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=full)
            for page in pages:
                for obj in page.get("Contents", ()):
                    n = obj["Key"][cut:]
                    if is_object_name(n):
                        out.append(ObjectInfo(n, int(obj["Size"])))
            return out

        found = await self._call("list", full, run, read_only=True)
        found.sort(key=lambda o: o.name)
        return found

    async def sweep_temp(self, older_than: float = 3600.0) -> int:
        """S3 puts are atomic and leave no temps; stray `.tmp-*` keys under our
        prefix (written by other tools) older than `older_than` are deleted."""
        cutoff = time.time() - older_than
        prefix = self.prefix

        def run(c: Any) -> int:
            removed = 0
            for page in c.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=prefix
            ):
                for obj in page.get("Contents", ()):
                    key = obj["Key"]
                    if is_temp_name(key[len(prefix):]) and obj["LastModified"].timestamp() <= cutoff:
                        c.delete_object(Bucket=self.bucket, Key=key)
                        removed += 1
            return removed

        return await self._call("sweep", prefix, run)

    async def usage(self) -> Usage:
        """Bytes and objects from a full listing; `quota` as configured."""
        objs = await self.list("")
        return Usage(used=sum(o.size for o in objs), objects=len(objs), quota=self.quota)

    async def close(self) -> None:
        """Close the client's connection pool; safe to call twice."""
        with self._client_lock:
            client, self._client, self._closed = self._client, None, True
        if client is not None:
            close = getattr(client, "close", None)
            if close is not None:
                await trio.to_thread.run_sync(close)
