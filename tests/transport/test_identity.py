"""Node identity: creation, persistence, permissions, node ID text form."""

from __future__ import annotations

import hashlib
import logging
import os
import re
import stat
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.x509.oid import NameOID

from mosaic.node.cluster.identity import (
    CERT_FILE,
    KEY_FILE,
    Identity,
    IdentityError,
    InvalidNodeId,
    format_node_id,
    parse_node_id,
)
from mosaic.node.errors import KeyFileError, UsageError

ID_TEXT_RE = re.compile(r"[0-9a-f]{8}(-[0-9a-f]{8}){7}")


def test_create_layout_and_permissions(tmp_path: Path) -> None:
    home = tmp_path / "home"
    ident = Identity.load_or_create(home)
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    key_path, cert_path = home / KEY_FILE, home / CERT_FILE
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert key_path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS8 PEM
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "mosaic"
    assert cert.issuer == cert.subject
    assert isinstance(cert.public_key(), Ed25519PublicKey)
    assert cert.not_valid_after_utc.year == 9999
    der = cert.public_bytes(serialization.Encoding.DER)
    assert ident.cert_der == der
    assert ident.node_id == hashlib.sha256(der).digest()
    assert len(ident.node_id) == 32
    assert ID_TEXT_RE.fullmatch(ident.node_id_str)
    assert parse_node_id(ident.node_id_str) == ident.node_id
    assert sorted(p.name for p in home.iterdir()) == [CERT_FILE, KEY_FILE]  # no temp files left


def test_sign_verifies_with_the_certificate_key(tmp_path: Path) -> None:
    ident = Identity.load_or_create(tmp_path)
    sig = ident.sign(b"message")
    assert len(sig) == 64
    pub = x509.load_der_x509_certificate(ident.cert_der).public_key()
    pub.verify(sig, b"message")


def test_persistence_and_distinct_nodes(tmp_path: Path) -> None:
    a = Identity.load_or_create(tmp_path / "a")
    a2 = Identity.load_or_create(tmp_path / "a")
    b = Identity.load_or_create(tmp_path / "b")
    assert a.node_id == a2.node_id and a.cert_der == a2.cert_der
    assert a2.sign(b"x") == a.sign(b"x")  # same key (Ed25519 is deterministic)
    assert a.node_id != b.node_id


def test_lost_certificate_is_rebuilt_with_the_same_id(tmp_path: Path) -> None:
    a = Identity.load_or_create(tmp_path)
    (tmp_path / CERT_FILE).unlink()
    assert Identity.load_or_create(tmp_path).node_id == a.node_id


def test_lost_key_with_a_certificate_is_an_error(tmp_path: Path) -> None:
    Identity.load_or_create(tmp_path)
    (tmp_path / KEY_FILE).unlink()
    with pytest.raises(IdentityError, match="lost"):
        Identity.load_or_create(tmp_path)
    assert not (tmp_path / KEY_FILE).exists()  # nothing was silently replaced


def test_certificate_of_another_key_is_refused(tmp_path: Path) -> None:
    Identity.load_or_create(tmp_path / "a")
    Identity.load_or_create(tmp_path / "b")
    (tmp_path / "a" / CERT_FILE).write_bytes((tmp_path / "b" / CERT_FILE).read_bytes())
    with pytest.raises(IdentityError, match="does not belong"):
        Identity.load_or_create(tmp_path / "a")


@pytest.mark.parametrize("which", [KEY_FILE, CERT_FILE])
def test_damaged_files_are_refused(tmp_path: Path, which: str) -> None:
    Identity.load_or_create(tmp_path)
    (tmp_path / which).write_bytes(b"-----BEGIN garbage-----\n")
    with pytest.raises(IdentityError) as info:
        Identity.load_or_create(tmp_path)
    assert isinstance(info.value, KeyFileError)


def test_non_ed25519_key_is_refused(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    fd = os.open(tmp_path / KEY_FILE, os.O_WRONLY | os.O_CREAT, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    with pytest.raises(IdentityError, match="Ed25519"):
        Identity.load_or_create(tmp_path)


def test_loose_key_permissions_are_warned_about(tmp_path: Path,
                                                caplog: pytest.LogCaptureFixture) -> None:
    Identity.load_or_create(tmp_path)
    os.chmod(tmp_path / KEY_FILE, 0o644)
    with caplog.at_level(logging.WARNING, logger="mosaic.identity"):
        Identity.load_or_create(tmp_path)
    assert any("0600" in r.getMessage() for r in caplog.records)


def test_concurrent_first_start_agrees_on_one_identity(tmp_path: Path) -> None:
    home = tmp_path / "race"
    results: list[bytes] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def run() -> None:
        try:
            barrier.wait(timeout=10)
            results.append(Identity.load_or_create(home).node_id)
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=run) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)
    assert not errors
    assert len(results) == 8 and len(set(results)) == 1
    assert Identity.load_or_create(home).node_id == results[0]
    assert sorted(p.name for p in home.iterdir()) == [CERT_FILE, KEY_FILE]


# ------------------------------------------------------------------ node id text

def test_format_and_parse_round_trip() -> None:
    raw = bytes(range(32))
    text = format_node_id(raw)
    assert text == ("00010203-04050607-08090a0b-0c0d0e0f-"
                    "10111213-14151617-18191a1b-1c1d1e1f")
    assert parse_node_id(text) == raw
    assert parse_node_id(text.upper()) == raw
    assert parse_node_id(text.replace("-", "")) == raw
    assert parse_node_id(f"  {text}\n") == raw
    assert parse_node_id(raw.hex().upper()) == raw


@pytest.mark.parametrize("bad", [
    "",
    "   ",
    "0" * 63,
    "0" * 65,
    "g" * 64,
    "0" * 62 + "0x",
    "-".join(["0" * 8] * 7),                      # 7 groups
    "-".join(["0" * 8] * 9),                      # 9 groups
    "-".join(["0" * 4] * 16),                     # groups of 4
    "00000000--" + "-".join(["0" * 8] * 7),       # double dash
    "-" + "0" * 64,
    "0" * 64 + "-",
    "00000000 " * 7 + "00000000",                 # spaces inside
    "０" * 64,                                     # full-width digits
    "0" * 32 + "\x00" + "0" * 32,
])
def test_parse_rejects_malformed(bad: str) -> None:
    with pytest.raises(InvalidNodeId) as info:
        parse_node_id(bad)
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, UsageError)  # the CLI maps it to exit code 2


@pytest.mark.parametrize("bad", [None, b"0" * 64, 42])
def test_parse_rejects_non_text(bad: object) -> None:
    with pytest.raises(InvalidNodeId):
        parse_node_id(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [b"", b"\x00" * 31, b"\x00" * 33, "00" * 32, bytearray(32)])
def test_format_rejects_wrong_input(bad: object) -> None:
    with pytest.raises(InvalidNodeId):
        format_node_id(bad)  # type: ignore[arg-type]
