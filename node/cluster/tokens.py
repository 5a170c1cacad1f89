"""Access tokens for the HTTP face: named, scoped, optionally limited to a name prefix.

A token is shown once, when it is made; the `tokens` table keeps only its SHA-256
(a token carries 256 random bits, so a fast hash is enough), keyed by that hash so
a request costs one point read:

    tokens   sha256(token)(32) -> msgpack {"name", "scope", "prefix", "created"}

Scopes nest: `write` can read, `admin` can write. A prefix limits a token to the
names equal to it or inside it as a folder (and to files that have such a name).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

import msgpack

from ..errors import NotFoundError, UsageError
from ..store.home import check_name
from ..store.index import Index

SCOPES = ("read", "write", "admin")
TOKEN_PREFIX = "mosaic_"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True)
class Grant:
    """What a token allows: a scope (read < write < admin) within a prefix of the names."""

    name: str
    scope: str
    prefix: str  # "" for the whole directory

    def allows(self, scope: str) -> bool:
        """True if this token's scope includes `scope` (read < write < admin)."""
        return SCOPES.index(self.scope) >= SCOPES.index(scope)

    def covers(self, name: str) -> bool:
        """True if `name` lies within this token's prefix."""
        p = self.prefix
        return not p or name == p or name.startswith(p + "/")


@dataclass(frozen=True)
class TokenInfo(Grant):
    """What the store knows of one token (never the token itself)."""

    created: float = 0.0

    def as_json(self) -> dict:
        return {"name": self.name, "scope": self.scope, "prefix": self.prefix,
                "created": self.created}


def digest(token: str) -> bytes:
    """The stored form of a token."""
    import hashlib  # loaded on use: every CLI command imports this module for its parser
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


def check_scope(scope: str) -> str:
    if scope not in SCOPES:
        raise UsageError(f"unknown scope {scope!r} (expected one of {', '.join(SCOPES)})")
    return scope


class TokenStore:
    """The `tokens` table of a node's index."""

    def __init__(self, index: Index):
        self.index = index
        self.db = index.db["tokens"]

    @staticmethod
    def _info(v: bytes) -> TokenInfo:
        d = msgpack.unpackb(v, raw=False)
        return TokenInfo(d["name"], d["scope"], d.get("prefix", ""), float(d.get("created", 0.0)))

    def add(self, name: str, scope: str, prefix: str = "") -> tuple[str, TokenInfo]:
        """Make a token; returns (the token, shown only now, its record). UsageError if the
        name is taken or malformed."""
        if not _NAME.match(name):
            raise UsageError(f"invalid token name {name!r} (letters, digits, . _ -; at most 64)")
        check_scope(scope)
        prefix = check_name(prefix) if prefix.strip("/") else ""
        import secrets
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        info = TokenInfo(name, scope, prefix, time.time())
        rec = msgpack.packb({"name": name, "scope": scope, "prefix": prefix,
                             "created": info.created}, use_bin_type=True)
        with self.index.write() as txn:
            for _, v in txn.cursor(db=self.db).iternext():
                if self._info(v).name == name:
                    raise UsageError(f"a token named {name!r} exists (remove it first)")
            txn.put(digest(token), rec, db=self.db)
        return token, info

    def all(self) -> list[TokenInfo]:
        """Every token's record, by name."""
        with self.index.read() as txn:
            return sorted((self._info(v) for _, v in txn.cursor(db=self.db).iternext()),
                          key=lambda t: t.name)

    def remove(self, name: str) -> None:
        """Forget a token by name; NotFoundError if there is none."""
        with self.index.write() as txn:
            for k, v in txn.cursor(db=self.db).iternext():
                if self._info(v).name == name:
                    txn.delete(k, db=self.db)
                    return
        raise NotFoundError(f"no token named {name!r}")

    def check(self, token: str) -> TokenInfo | None:
        """The record of a presented token, or None (a point read)."""
        if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
            return None
        with self.index.read() as txn:
            v = txn.get(digest(token), db=self.db)
        return self._info(v) if v is not None else None
