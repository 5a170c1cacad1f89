"""Nothing secret leaves the node: not the data, not the names, not the credentials.

Files with known text and names are put to an S3 (moto) and a WebDAV (wsgidav)
backend whose credentials were given through the environment at `backend add`.
Then every stored object's bytes are scanned for the plaintext, the names, the
S3 access key id and secret key and the WebDAV password; the node home
(config.toml, the index, everything else) and the output of `backend ls`,
`config`, `status` and `info` are scanned for the credentials. Failing backends
(a wrong S3 secret against a signature-checking moto, a wrong WebDAV password)
must be refused by `backend add` with a one-line error that names no secret.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.backends.conftest import S3Env, _start_s3
from tests.conftest import assert_one_line_error

from .conftest import AWS_KEY_ID, AWS_SECRET, DavServer, Node, S3Server, mosaic_env, text_bytes

pytestmark = pytest.mark.slow  # long end-to-end: `just test-fast` leaves it out

TOKEN = secrets.token_hex(6)


def _needles_files() -> tuple[dict[str, bytes], list[bytes], list[bytes]]:
    """Files to put (name -> content), and the plaintext and name needles to look for."""
    import random
    rng = random.Random(5)
    phrases = [f"the treasure map {TOKEN} is under the old oak tree",
               f"payroll account {TOKEN} pin 4729-1180",
               f"dear diary {TOKEN}, today I learned mosaic encrypts everything"]
    files: dict[str, bytes] = {}
    for i, ph in enumerate(phrases):
        body = (ph + "\n").encode() * 40 + text_bytes(rng, 20_000) + (ph + "\n").encode()
        files[f"private-{TOKEN}/letters/confidential-{TOKEN}-{i}.txt"] = body
    files[f"private-{TOKEN}/tiny-{TOKEN}.txt"] = phrases[0].encode()  # a one-chunk file
    plain = [p.encode() for p in phrases] + [p.encode()[5:30] for p in phrases]
    names = [f"private-{TOKEN}".encode(), f"confidential-{TOKEN}".encode(), f"tiny-{TOKEN}".encode(),
             b"letters/confidential"]
    return files, plain, names


def _scan(blobs: dict[str, bytes], needles: list[bytes]) -> list[str]:
    return [f"{where}: {n[:40]!r}" for where, data in blobs.items() for n in needles if n in data]


def _s3_objects(srv: S3Server) -> dict[str, bytes]:
    return {f"s3:{k}": srv.read(k) for k in srv.objects()}


def _files(root: Path, label: str) -> dict[str, bytes]:
    return {f"{label}:{p.relative_to(root)}": p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _secrets(dav: DavServer) -> list[bytes]:
    return [AWS_KEY_ID.encode(), AWS_SECRET.encode(), dav.password.encode()]


def test_no_plaintext_names_or_credentials_anywhere(
        node: Node, s3_servers, dav_server: DavServer, tmp_path: Path) -> None:  # noqa: ANN001
    srv: S3Server = s3_servers("mosaic-secrets")
    node.init_node("--pack-size", "1MiB")
    r = node.add_s3("cloud", srv)  # credentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY
    assert r.rc == 0, str(r)
    r = node("backend", "add", "webdav", "dav", dav_server.url, "--username", dav_server.username,
             env=mosaic_env(MOSAIC_WEBDAV_PASSWORD=dav_server.password), timeout=60)
    assert r.rc == 0, str(r)
    outputs = {"backend add webdav": r.out + r.err.encode()}

    files, plain, names = _needles_files()
    src = tmp_path / "src"
    for name, data in files.items():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_bytes(data)
    # the credentials were given at `backend add`; later commands run without them
    bare = mosaic_env(AWS_ACCESS_KEY_ID=None, AWS_SECRET_ACCESS_KEY=None)
    r = node("put", "-r", src / f"private-{TOKEN}", "--name", f"private-{TOKEN}", env=bare, timeout=120)
    assert r.rc == 0, ("a put to backends added with credentials must use the stored credentials "
                       f"(secrets.bin), not need them in the environment again: {r}")
    for name, data in files.items():
        assert node.ok("get", name, "-", env=bare, timeout=60).out == data
    assert node.pending_uploads() == 0

    stored = _s3_objects(srv) | _files(dav_server.root, "webdav")
    assert any(k.startswith("s3:packs/") for k in stored) and any("webdav:packs" in k for k in stored)
    leaks = _scan(stored, plain + names + _secrets(dav_server))
    assert not leaks, f"found on the backends: {leaks[:10]}"

    home = _files(node.home, "home")
    assert "home:config.toml" in home and any(k.startswith("home:index") for k in home)
    leaks = _scan(home, _secrets(dav_server))
    assert not leaks, f"credentials stored in the node home: {leaks}"

    for args in (("backend", "ls"), ("config",), ("status",), ("info",)):
        for js in (True, False):
            r = node(*args, json=js, env=bare, timeout=30)
            assert r.rc == 0, str(r)
            outputs[" ".join(args) + (" --json" if js else "")] = r.out + r.err.encode()
    leaks = _scan(outputs, _secrets(dav_server))
    assert not leaks, f"credentials in command output: {leaks}"


@pytest.fixture
def s3_auth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Env]:
    """A moto server that checks signatures like AWS (the backend suite's helper)."""
    yield from _start_s3(tmp_path_factory, enforce_auth=True)


def test_failing_backends_are_refused_without_revealing_secrets(
        node: Node, s3_auth: S3Env, dav_server: DavServer) -> None:
    node.init_node()
    wrong_secret = "wrong-" + secrets.token_hex(16)
    unknown_key = "AKIAUNKNOWN" + secrets.token_hex(4).upper()
    cases = {
        "s3 wrong secret": (
            ["backend", "add", "s3", "bad-s3", "--bucket", s3_auth.bucket, "--endpoint", s3_auth.endpoint,
             "--region", "us-east-1"],
            mosaic_env(AWS_ACCESS_KEY_ID=s3_auth.access_key, AWS_SECRET_ACCESS_KEY=wrong_secret),
            [wrong_secret.encode(), s3_auth.secret_key.encode()]),
        "s3 unknown key": (
            ["backend", "add", "s3", "bad-s3", "--bucket", s3_auth.bucket, "--endpoint", s3_auth.endpoint,
             "--region", "us-east-1"],
            mosaic_env(AWS_ACCESS_KEY_ID=unknown_key, AWS_SECRET_ACCESS_KEY=wrong_secret),
            [wrong_secret.encode(), unknown_key.encode()]),
        "webdav wrong password": (
            ["backend", "add", "webdav", "bad-dav", dav_server.url, "--username", dav_server.username],
            mosaic_env(MOSAIC_WEBDAV_PASSWORD=wrong_secret),
            [wrong_secret.encode(), dav_server.password.encode()]),
    }
    for what, (args, env, needles) in cases.items():
        for js in (False, True):
            r = node(*args, env=env, json=js, timeout=90)
            if js:
                assert r.rc == 5, f"{what}: {r}"
                assert r.json()["exit_code"] == 5  # type: ignore[index]
            else:
                line = assert_one_line_error(r, 5)
                assert "bad-" in line, line
            leaks = _scan({what: r.out + r.err.encode()}, needles)
            assert not leaks, f"{what}: the error reveals a secret: {r}"
    # nothing was recorded, secrets included
    assert node.backends() == {}
    leaks = _scan(_files(node.home, "home"), [wrong_secret.encode(), unknown_key.encode()])
    assert not leaks, leaks
