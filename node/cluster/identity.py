"""The node's long-term identity: an Ed25519 key pair and a self-signed certificate.

    HOME/identity.key   the private key, PKCS8 PEM, unencrypted, mode 0600
    HOME/identity.crt   a self-signed X.509 certificate for it (PEM), CN "mosaic"

The **node ID** is the SHA-256 of the certificate's DER encoding (Syncthing's
model). Users see it as 64 lowercase hex digits in 8 groups of 8 separated by
"-"; `parse_node_id` accepts that form or the 64 digits alone, in any case.

The certificate is a deterministic function of the key (fixed validity dates, a
serial derived from the public key, and Ed25519 signatures are deterministic),
so a lost identity.crt is rebuilt identically from identity.key and the node ID
does not change. Losing identity.key means a new identity: every peer has to
trust the new node ID.

Files are created with store/atomic.py's `create_new`: temp file (exclusive,
final mode) + fsync + hard link (an atomic "create unless it exists", falling
back to rename where hard links are unsupported) + fsync of the folder, so two
processes starting at once agree on one identity.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import logging
import os
import re
from pathlib import Path

import nacl.signing
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ..errors import KeyFileError, UsageError
from ..store.atomic import create_new

__all__ = [
    "CERT_FILE",
    "KEY_FILE",
    "NODE_ID_LEN",
    "Identity",
    "IdentityError",
    "InvalidNodeId",
    "format_node_id",
    "node_id_from_cert",
    "parse_node_id",
]

log = logging.getLogger("mosaic.identity")

KEY_FILE = "identity.key"
CERT_FILE = "identity.crt"
NODE_ID_LEN = 32
CERT_CN = "mosaic"

# Fixed validity: not_before carries no creation date, not_after is RFC 5280's
# "no well-defined expiration date" (99991231235959Z).
_NOT_BEFORE = _dt.datetime(2000, 1, 1, tzinfo=_dt.UTC)
_NOT_AFTER = _dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=_dt.UTC)
_SERIAL_DOMAIN = b"mosaic-cert-serial v1"
_MAX_FILE = 64 * 1024

_GROUPED_RE = re.compile(r"[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{8}){7}")
_PLAIN_RE = re.compile(r"[0-9a-fA-F]{64}")


class IdentityError(KeyFileError):
    """identity.key / identity.crt are unreadable, damaged or do not belong together."""


class InvalidNodeId(UsageError, ValueError):
    """A node ID that is not 64 hex digits (optionally in 8 dash-separated groups of 8)."""


def node_id_from_cert(cert_der: bytes) -> bytes:
    """The node ID of a certificate: SHA-256 of its DER bytes, exactly as given."""
    return hashlib.sha256(cert_der).digest()


def format_node_id(node_id: bytes) -> str:
    """`node_id` (32 bytes) as 8 dash-separated groups of 8 lowercase hex digits."""
    if type(node_id) is not bytes or len(node_id) != NODE_ID_LEN:
        raise InvalidNodeId(f"a node ID is {NODE_ID_LEN} bytes")
    h = node_id.hex()
    return "-".join(h[i : i + 8] for i in range(0, len(h), 8))


def parse_node_id(text: str) -> bytes:
    """The 32-byte node ID written as `text` (grouped or not, any case, outer
    whitespace ignored); InvalidNodeId on anything else."""
    if not isinstance(text, str):
        raise InvalidNodeId("a node ID must be given as text")
    s = text.strip()
    if not (_GROUPED_RE.fullmatch(s) or _PLAIN_RE.fullmatch(s)):
        shown = s if len(s) <= 80 else s[:77] + "..."
        raise InvalidNodeId(
            f"malformed node ID {shown!r}: expected 64 hex digits, optionally as "
            "8 groups of 8 separated by '-'")
    return bytes.fromhex(s.replace("-", ""))


def _make_cert(key: Ed25519PrivateKey) -> bytes:
    """The DER of the (deterministic) self-signed certificate for `key`."""
    pub = key.public_key()
    raw = pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    serial = int.from_bytes(hashlib.sha256(_SERIAL_DOMAIN + raw).digest()[:16], "big") | 1
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CERT_CN)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(pub)
        .serial_number(serial)
        .not_valid_before(_NOT_BEFORE)
        .not_valid_after(_NOT_AFTER)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=True, content_commitment=False,
                          key_encipherment=False, data_encipherment=False, key_agreement=False,
                          key_cert_sign=False, crl_sign=False, encipher_only=False,
                          decipher_only=False),
            critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                   ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False)
        .sign(key, algorithm=None)
    )
    return cert.public_bytes(serialization.Encoding.DER)


def _raw_public(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw,
                                         serialization.PublicFormat.Raw)


def _read(path: Path) -> bytes | None:
    try:
        with open(path, "rb") as f:
            data = f.read(_MAX_FILE + 1)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise IdentityError(f"cannot read {path}: {e.strerror or e}") from None
    if len(data) > _MAX_FILE:
        raise IdentityError(f"{path} is too large to be a Mosaic identity file")
    return data


class Identity:
    """A node's key pair and certificate. Build with `load_or_create`."""

    def __init__(self, key: Ed25519PrivateKey, cert_der: bytes,
                 key_path: Path | None = None, cert_path: Path | None = None):
        cert = x509.load_der_x509_certificate(cert_der)
        if cert.public_bytes(serialization.Encoding.DER) != cert_der:
            raise IdentityError("certificate is not in canonical DER")
        pub = cert.public_key()
        if not isinstance(key, Ed25519PrivateKey) or pub.public_bytes(
                serialization.Encoding.Raw, serialization.PublicFormat.Raw) != _raw_public(key):
            raise IdentityError("the certificate does not belong to the private key")
        self._key = key
        # the same key in libsodium, which signs faster (Ed25519 signatures are deterministic:
        # both give the same bytes)
        self._signer = nacl.signing.SigningKey(key.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
            serialization.NoEncryption()))
        self.cert_der = cert_der
        self.node_id = node_id_from_cert(cert_der)
        self.node_id_str = format_node_id(self.node_id)
        self.key_path = key_path
        self.cert_path = cert_path

    def __repr__(self) -> str:
        return f"Identity({self.node_id_str})"

    @property
    def public_key_raw(self) -> bytes:
        """The 32-byte Ed25519 public key."""
        return _raw_public(self._key)

    @property
    def cert_pem(self) -> bytes:
        return x509.load_der_x509_certificate(self.cert_der).public_bytes(
            serialization.Encoding.PEM)

    def sign(self, data: bytes) -> bytes:
        """A 64-byte Ed25519 signature over `data` (callers add their own domain prefix)."""
        return self._signer.sign(data).signature

    @classmethod
    def load_or_create(cls, home_root: Path) -> Identity:
        """Load HOME/identity.{key,crt}; create them if neither exists. A missing
        certificate is rebuilt from the key (same node ID). IdentityError if the
        key is missing while a certificate exists, or if either is damaged."""
        root = Path(home_root).expanduser()
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        key_path, cert_path = root / KEY_FILE, root / CERT_FILE

        key_pem = _read(key_path)
        if key_pem is None and cert_path.exists():
            key_pem = _read(key_path)  # a concurrent first start may have made both meanwhile
            if key_pem is None:
                raise IdentityError(
                    f"{key_path} is missing but {cert_path} exists: the node's identity is "
                    f"lost; move {cert_path.name} away to create a new one")
        if key_pem is None:
            new = Ed25519PrivateKey.generate()
            pem = new.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
            create_new(key_path, pem, 0o600)  # if we lost a race, read the winner's
            key_pem = _read(key_path)
            if key_pem is None:
                raise IdentityError(f"{key_path} vanished while it was being created")
        else:
            mode = os.stat(key_path).st_mode
            if mode & 0o077:
                log.warning("%s is accessible by other users (mode %03o); it should be 0600",
                            key_path, mode & 0o777)
        key = cls._parse_key(key_pem, key_path)

        cert_pem = _read(cert_path)
        if cert_pem is None:
            der = _make_cert(key)
            pem = x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM)
            create_new(cert_path, pem, 0o644)
            cert_pem = _read(cert_path)
            if cert_pem is None:
                raise IdentityError(f"{cert_path} vanished while it was being created")
        try:
            der = x509.load_pem_x509_certificate(cert_pem).public_bytes(
                serialization.Encoding.DER)
        except ValueError:
            raise IdentityError(f"{cert_path} is not a PEM certificate") from None
        try:
            return cls(key, der, key_path, cert_path)
        except IdentityError as e:
            raise IdentityError(f"{cert_path}: {e}") from None

    @staticmethod
    def _parse_key(pem: bytes, path: Path) -> Ed25519PrivateKey:
        try:
            key = serialization.load_pem_private_key(pem, password=None)
        except (ValueError, TypeError) as e:
            raise IdentityError(f"{path} is not an unencrypted PEM private key ({e})") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise IdentityError(f"{path} does not hold an Ed25519 key")
        return key
