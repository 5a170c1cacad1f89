"""open_backend and KINDS."""

from __future__ import annotations

from pathlib import Path

import pytest

from mosaic.backends import KINDS, ConfigError, RetryingBackend, open_backend
from mosaic.backends.dir import DirBackend
from mosaic.backends.rclone import RcloneBackend
from mosaic.backends.s3 import S3Backend
from mosaic.backends.webdav import WebDAVBackend


def test_kinds() -> None:
    assert sorted(KINDS) == ["dir", "rclone", "s3", "webdav"]
    for kind, spec in KINDS.items():
        assert spec.kind == kind and spec.required and spec.summary
        assert "quota" in spec.optional


async def test_open_each_kind(tmp_path: Path) -> None:
    b = open_backend("dir", "d", {"path": str(tmp_path), "fsync": "false", "quota": "1000"})
    assert isinstance(b, DirBackend) and b.fsync is False and b.quota == 1000 and b.name == "d"
    s = open_backend("s3", "s", {"bucket": "bk", "endpoint": "http://127.0.0.1:9", "prefix": "p",
                                 "max_workers": "4"},
                     {"access_key": "AK", "secret_key": "SECRETSECRET"})
    assert isinstance(s, S3Backend) and s.max_workers == 4 and s.prefix == "p/"
    w = open_backend("webdav", "w", {"url": "http://127.0.0.1:9/dav", "username": "u"},
                     {"password": "pw12345"})
    assert isinstance(w, WebDAVBackend) and w.kind == "webdav"
    r = open_backend("rclone", "r", {"remote": ":local:/tmp/x"})
    assert isinstance(r, RcloneBackend)
    wrapped = open_backend("dir", "d2", {"path": str(tmp_path)}, retry=True)
    assert isinstance(wrapped, RetryingBackend) and wrapped.kind == "dir"
    for x in (b, s, w, r, wrapped):
        await x.close()


@pytest.mark.parametrize(
    ("kind", "options", "secrets", "match"),
    [
        ("ftp", {}, None, "unknown backend kind"),
        ("dir", {}, None, "missing option 'path'"),
        ("dir", {"path": "/x", "colour": "red"}, None, "unknown option 'colour'"),
        ("dir", {"path": "/x", "fsync": "maybe"}, None, "bad value for 'fsync'"),
        ("dir", {"path": "/x", "quota": "-5"}, None, "quota"),
        ("s3", {"bucket": "b", "secret_key": "TOPSECRETVALUE"}, None, "is a secret"),
        ("s3", {"bucket": "b"}, {"password": "TOPSECRETVALUE"}, "unknown secret"),
        ("webdav", {"url": "http://u:TOPSECRETVALUE@h/"}, None, "credentials"),
        ("webdav", {"url": "http://h/", "password": "TOPSECRETVALUE"}, None, "is a secret"),
        ("s3", {"bucket": "b", "max_workers": "many"}, None, "bad value"),
    ],
)
def test_config_errors(kind: str, options: dict, secrets: dict | None, match: str) -> None:
    with pytest.raises(ConfigError, match=match) as info:
        open_backend(kind, "n", options, secrets)
    assert "TOPSECRETVALUE" not in str(info.value)
