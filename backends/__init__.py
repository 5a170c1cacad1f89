"""Storage backends: named bytes on local folders, S3, WebDAV and rclone remotes.

    from backends import open_backend
    b = open_backend("s3", "offsite", {"bucket": "b", "endpoint": "http://..."},
                     {"access_key": "...", "secret_key": "..."})

`KINDS` describes each kind's options (plain config values, strings or ints)
and secrets (credentials, passed separately so they never land in a config
file or a log). Every kind takes an optional `quota` (bytes), reported by
`usage()`; the dir backend also refuses puts beyond it (QuotaExceeded). Backends are imported lazily: `dir` does not load boto3.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from . import errors
from .base import Backend, ObjectInfo, Usage, validate_name
from .errors import (
    BackendError,
    ConfigError,
    InvalidName,
    NotFound,
    PermanentError,
    QuotaExceeded,
    TransientError,
)

__all__ = [
    "KINDS",
    "Backend",
    "BackendError",
    "ConfigError",
    "InvalidName",
    "KindSpec",
    "NotFound",
    "ObjectInfo",
    "PermanentError",
    "QuotaExceeded",
    "RetryingBackend",
    "TransientError",
    "Usage",
    "errors",
    "open_backend",
    "validate_name",
]


def _bool(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, int):
        return v != 0
    s = str(v).strip().lower()
    if s in ("1", "true", "yes", "on"):
        return True
    if s in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"not a boolean: {v!r}")


def _int(v: Any) -> int:
    if isinstance(v, bool):
        raise ValueError(f"not an integer: {v!r}")
    return int(v)


@dataclass(frozen=True)
class KindSpec:
    """What one backend kind needs: required/optional options and secret names."""

    kind: str
    summary: str
    required: tuple[str, ...]
    optional: tuple[str, ...] = ()
    secrets: tuple[str, ...] = ()
    #: converters for non-string options
    types: Mapping[str, Callable[[Any], Any]] = field(default_factory=dict)

    def convert(self, key: str, value: Any) -> Any:
        """`value` converted to the type option `key` expects."""
        conv = self.types.get(key, str)
        return conv(value)


KINDS: dict[str, KindSpec] = {
    "dir": KindSpec(
        "dir", "a local or mounted folder", ("path",), ("fsync", "max_threads", "quota"),
        types={"fsync": _bool, "max_threads": _int, "quota": _int},
    ),
    "s3": KindSpec(
        "s3", "an S3 or S3-compatible bucket", ("bucket",),
        ("endpoint", "region", "prefix", "max_workers", "quota"),
        ("access_key", "secret_key", "session_token"),
        types={"max_workers": _int, "quota": _int},
    ),
    "webdav": KindSpec(
        "webdav", "a WebDAV server folder", ("url",),
        ("username", "prefix", "max_connections", "quota"), ("username", "password"),
        types={"max_connections": _int, "quota": _int},
    ),
    "rclone": KindSpec(
        "rclone", "any rclone remote (remote:path)", ("remote",),
        ("rclone_binary", "config_path", "max_connections", "quota"),
        types={"max_connections": _int, "quota": _int},
    ),
}


def _factory(kind: str) -> Callable[..., Backend]:
    if kind == "dir":
        from .dir import DirBackend

        return DirBackend
    if kind == "s3":
        from .s3 import S3Backend

        return S3Backend
    if kind == "webdav":
        from .webdav import WebDAVBackend

        return WebDAVBackend
    from .rclone import RcloneBackend

    return RcloneBackend


def open_backend(
    kind: str,
    name: str,
    options: Mapping[str, Any],
    secrets: Mapping[str, Any] | None = None,
    *,
    retry: bool = False,
) -> Backend:
    """Build a backend of `kind` from config `options` and credential `secrets`.

    Raises ConfigError for an unknown kind, a missing or unknown option, a
    value of the wrong type, or a secret put in `options`. With `retry=True`
    the backend comes wrapped in a `RetryingBackend`.
    """
    spec = KINDS.get(kind)
    if spec is None:
        raise ConfigError(f"unknown backend kind {kind!r} (known: {', '.join(KINDS)})")
    secrets = dict(secrets or {})
    kwargs: dict[str, Any] = {}
    for key, value in options.items():
        if key in spec.secrets and key not in spec.optional:
            raise ConfigError(f"{kind} backend {name!r}: {key!r} is a secret; pass it in secrets")
        if key not in spec.required and key not in spec.optional:
            raise ConfigError(f"{kind} backend {name!r}: unknown option {key!r}")
        if value is None:
            continue
        try:
            kwargs[key] = spec.convert(key, value)
        except (TypeError, ValueError):
            raise ConfigError(f"{kind} backend {name!r}: bad value for {key!r}") from None
    for key in spec.required:
        if not kwargs.get(key):
            raise ConfigError(f"{kind} backend {name!r}: missing option {key!r}")
    for key, value in secrets.items():
        if key not in spec.secrets:
            raise ConfigError(f"{kind} backend {name!r}: unknown secret {key!r}")
        if value is not None:
            kwargs[key] = str(value)  # never echoed in errors
    try:
        backend = _factory(kind)(name, **kwargs)
    except (TypeError, ValueError) as e:
        # constructor messages name options, never secret values
        raise ConfigError(f"{kind} backend {name!r}: {e}") from None
    if not retry:
        return backend
    from .retry import RetryingBackend  # trio, loaded only when a backend is opened
    return RetryingBackend(backend)


def __getattr__(name: str) -> Any:
    """`RetryingBackend` on first use (it loads trio, which naming errors does not need)."""
    if name == "RetryingBackend":
        from .retry import RetryingBackend
        return RetryingBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
