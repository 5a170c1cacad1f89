"""Fixtures for the backend conformance suite.

Servers are real and session-scoped: moto's S3 HTTP server (with signature
checking on, so bad credentials fail like on AWS), a wsgidav WebDAV server
with basic auth, and rclone's `rcd` (started by each RcloneBackend) over a
local folder. Each test gets a fresh backend in its own namespace (folder or
key prefix), so tests never see each other's objects.

A missing server or binary FAILS the run with an install hint; nothing skips.
"""

from __future__ import annotations

import json
import os
import secrets
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from mosaic.backends import Backend
from mosaic.backends.dir import DirBackend
from mosaic.backends.rclone import RcloneBackend
from mosaic.backends.s3 import S3Backend
from mosaic.backends.webdav import WebDAVBackend

from . import _servers

KINDS = ["dir", "s3", "webdav", "rclone"]
REGION = "us-east-1"


@dataclass(frozen=True)
class S3Env:
    """A running moto server, a bucket on it, and valid credentials."""

    endpoint: str
    bucket: str
    access_key: str
    secret_key: str

    def client(self) -> Any:
        return boto3.client(
            "s3", endpoint_url=self.endpoint, region_name=REGION,
            aws_access_key_id=self.access_key, aws_secret_access_key=self.secret_key,
        )


@dataclass(frozen=True)
class WebDAVEnv:
    """A running wsgidav server: its URL, the folder it serves, and its login."""

    url: str
    root: Path
    username: str
    password: str


def _start_s3(tmp_path_factory: pytest.TempPathFactory, enforce_auth: bool) -> Iterator[S3Env]:
    workdir = tmp_path_factory.mktemp("moto")
    env = {"AWS_DEFAULT_REGION": REGION}
    if enforce_auth:
        env["INITIAL_NO_AUTH_ACTION_COUNT"] = "3"
    with _servers.moto_server(workdir, env) as endpoint:
        if enforce_auth:
            iam = boto3.client(
                "iam", endpoint_url=endpoint, region_name=REGION,
                aws_access_key_id="setup", aws_secret_access_key="setup",
            )
            iam.create_user(UserName="mosaic")  # unauthenticated call 1
            key = iam.create_access_key(UserName="mosaic")["AccessKey"]  # 2
            allow_all = {"Version": "2012-10-17",
                         "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
            iam.put_user_policy(  # 3; from here on every request must be signed right
                UserName="mosaic", PolicyName="all", PolicyDocument=json.dumps(allow_all)
            )
            s3 = S3Env(endpoint, "mosaic-auth", key["AccessKeyId"], key["SecretAccessKey"])
        else:
            s3 = S3Env(endpoint, "mosaic-test", "testing-key-id", "testing-secret-key")
        s3.client().create_bucket(Bucket=s3.bucket)
        yield s3


@pytest.fixture(scope="session")
def s3_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Env]:
    """moto's S3 server with a bucket (signatures not checked)."""
    yield from _start_s3(tmp_path_factory, enforce_auth=False)


@pytest.fixture(scope="session")
def s3_auth_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Env]:
    """A second moto server that checks signatures like AWS (IAM user + key).

    Separate because moto's signature check rejects valid signed requests
    whose query string holds a "/" (list with prefix "a/"), which the
    conformance suite needs; the credential tests use this one.
    """
    yield from _start_s3(tmp_path_factory, enforce_auth=True)


@pytest.fixture(scope="session")
def webdav_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDAVEnv]:
    """wsgidav on 127.0.0.1 serving a temp folder, basic auth required."""
    root = tmp_path_factory.mktemp("davroot")
    logfile = tmp_path_factory.mktemp("davlog") / "wsgidav.log"
    user, password = "mosaic", "dav-" + secrets.token_hex(12)
    with _servers.wsgidav_server(root, logfile, user, password) as url:
        yield WebDAVEnv(url, root, user, password)


@pytest.fixture(scope="session")
def rclone_bin() -> str:
    """The rclone binary (fails with an install hint if absent)."""
    return _servers.require_binary("rclone", ["tools/install-test-deps.sh", "(apt-get install -y rclone)"])


def _walk(root: Path) -> list[str]:
    out = []
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            out.append(str((Path(dirpath) / f).relative_to(root)))
    return sorted(out)


@dataclass
class Harness:
    """A backend under test plus raw access to the storage behind it."""

    kind: str
    backend: Backend
    raw_root: Path | None = None  # the folder holding the objects (not for s3)
    s3: S3Env | None = None
    s3_prefix: str = ""

    def plant(self, rel: str, data: bytes) -> None:
        """Store a raw object behind the backend's back (e.g. a stray temp file)."""
        if self.s3 is not None:
            self.s3.client().put_object(Bucket=self.s3.bucket, Key=self.s3_prefix + rel, Body=data)
            return
        assert self.raw_root is not None
        p = self.raw_root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)

    def raw_names(self) -> list[str]:
        """Everything actually stored, temp and hidden files included."""
        if self.s3 is not None:
            pages = self.s3.client().get_paginator("list_objects_v2").paginate(
                Bucket=self.s3.bucket, Prefix=self.s3_prefix
            )
            keys = [o["Key"][len(self.s3_prefix):] for p in pages for o in p.get("Contents", ())]
            return sorted(keys)
        assert self.raw_root is not None
        return _walk(self.raw_root) if self.raw_root.exists() else []


@pytest.fixture(params=KINDS)
async def harness(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Harness]:
    """A fresh, empty backend of each kind, closed after the test."""
    kind: str = request.param
    ns = "t-" + uuid.uuid4().hex[:12]
    if kind == "dir":
        root = tmp_path / "store"
        root.mkdir()  # the dir backend never creates its root itself (`backend add` does)
        h = Harness(kind, DirBackend("test-dir", root), raw_root=root)
    elif kind == "s3":
        s3: S3Env = request.getfixturevalue("s3_env")
        b = S3Backend(
            "test-s3", s3.bucket, endpoint=s3.endpoint, region=REGION, prefix=ns,
            access_key=s3.access_key, secret_key=s3.secret_key,
        )
        h = Harness(kind, b, s3=s3, s3_prefix=ns + "/")
    elif kind == "webdav":
        dav: WebDAVEnv = request.getfixturevalue("webdav_env")
        b = WebDAVBackend("test-dav", dav.url, dav.username, dav.password, prefix=ns)
        h = Harness(kind, b, raw_root=dav.root / ns)
    else:
        binary = request.getfixturevalue("rclone_bin")
        root = tmp_path / "store"
        root.mkdir()
        b = RcloneBackend(
            "test-rclone", f":local:{root}", rclone_binary=binary,
            config_path=str(tmp_path / "rclone.conf"),
        )
        h = Harness(kind, b, raw_root=root)
    try:
        yield h
    finally:
        await h.backend.close()


@pytest.fixture
def backend(harness: Harness) -> Backend:
    """Just the backend of `harness`."""
    return harness.backend
