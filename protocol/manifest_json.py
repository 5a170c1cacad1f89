"""The JSON manifest dump (`mosaic export` / `mosaic import`): schema, encoding, strict parsing.

Sans-io: dicts and strings in, frozen dataclasses out. The schema is written
down in docs/manifest-json.md. Parsing checks everything before anything is
applied, and names the offending field in its error.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from .errors import ProtocolError
from .name_rules import InvalidName, check_canonical

FORMAT = "mosaic-manifests"
VERSION = 1
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_HEX16 = re.compile(r"^[0-9a-f]{16}$")
MAX_INT = (1 << 63) - 1
MAX_CHUNK_LEN = (1 << 32) - 1


class ManifestFormatError(ProtocolError):
    """A manifest dump that is malformed; the message names the field."""


@dataclass(frozen=True)
class DumpLocation:
    """Where one chunk is stored: its pack, place in the pack, and backends holding the pack."""

    pack: bytes
    offset: int
    stored_length: int
    backends: tuple[str, ...]


@dataclass(frozen=True)
class DumpFile:
    """One file of a dump."""

    file_id: bytes
    names: tuple[str, ...]
    size: int
    created_ns: int
    chunks: tuple[tuple[bytes, int], ...]


@dataclass(frozen=True)
class Dump:
    """A whole manifest dump."""

    key_id: str
    files: tuple[DumpFile, ...]
    locations: dict[bytes, DumpLocation]
    exported_ns: int = 0


def _iso(ns: int) -> str:
    import datetime as dt
    t = dt.datetime.fromtimestamp(ns // 1_000_000_000, tz=dt.UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S") + f".{ns % 1_000_000_000:09d}Z"


def _from_iso(s: object, where: str) -> int:
    import datetime as dt
    if not isinstance(s, str) or not re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$", s):
        raise ManifestFormatError(f"{where}: expected a UTC timestamp like 2026-01-31T12:00:00.000000000Z")
    try:
        base = dt.datetime.strptime(s[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=dt.UTC)
    except ValueError:
        raise ManifestFormatError(f"{where}: not a valid date") from None
    ns = int(base.timestamp()) * 1_000_000_000 + int(s[20:29])
    if not 0 <= ns <= MAX_INT:
        raise ManifestFormatError(f"{where}: outside 1970..2262")
    return ns


def encode_dump(d: Dump) -> str:
    """The dump as JSON text (stable key order, one file per line block)."""
    doc = {
        "format": FORMAT,
        "version": VERSION,
        "key_id": d.key_id,
        "exported": _iso(d.exported_ns),
        "files": [
            {"id": f.file_id.hex(), "names": list(f.names), "size": f.size, "created": _iso(f.created_ns),
             "chunks": [[c.hex(), n] for c, n in f.chunks]}
            for f in d.files
        ],
        "locations": {
            c.hex(): {"pack": loc.pack.hex(), "offset": loc.offset, "stored_length": loc.stored_length,
                      "backends": list(loc.backends)}
            for c, loc in sorted(d.locations.items())
        },
    }
    return json.dumps(doc, indent=1, ensure_ascii=False) + "\n"


def _int(v: object, where: str, lo: int = 0) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= MAX_INT:
        raise ManifestFormatError(f"{where}: expected an integer >= {lo}")
    return v


def _hex(v: object, where: str) -> bytes:
    if not isinstance(v, str) or not _HEX64.match(v):
        raise ManifestFormatError(f"{where}: expected 64 lowercase hex digits")
    return bytes.fromhex(v)


def _name(v: object, where: str) -> str:
    if not isinstance(v, str):
        raise ManifestFormatError(f"{where}: not a valid name")
    try:
        return check_canonical(v)
    except InvalidName as e:
        raise ManifestFormatError(f"{where}: {e}") from None


def _backend_name(v: object, where: str) -> str:
    if not isinstance(v, str) or not re.match(r"^[A-Za-z0-9_.\-]{1,64}$", v):
        raise ManifestFormatError(f"{where}: not a valid backend name")
    return v


def _keys(obj: dict, required: set[str], where: str) -> None:
    missing = required - obj.keys()
    if missing:
        raise ManifestFormatError(f"{where}: missing field {sorted(missing)[0]!r}")
    extra = obj.keys() - required
    if extra:
        raise ManifestFormatError(f"{where}: unknown field {sorted(extra)[0]!r}")


def parse_dump(text: str | bytes) -> Dump:
    """Parse and check a dump completely; ManifestFormatError on anything off."""
    try:
        doc = json.loads(text)
    except (ValueError, UnicodeDecodeError) as e:
        raise ManifestFormatError(f"not valid JSON ({e.__class__.__name__}: {str(e)[:80]})") from None
    if not isinstance(doc, dict):
        raise ManifestFormatError("top level: expected an object")
    if doc.get("format") != FORMAT:
        raise ManifestFormatError(f"format: expected {FORMAT!r}")
    if type(doc.get("version")) is not int or doc.get("version") != VERSION:
        raise ManifestFormatError(f"version: unsupported version {doc.get('version')!r} (this reads {VERSION})")
    _keys(doc, {"format", "version", "key_id", "exported", "files", "locations"}, "top level")
    key_id = doc["key_id"]
    if not isinstance(key_id, str) or not _HEX16.match(key_id):
        raise ManifestFormatError("key_id: expected 16 hex digits")
    exported = _from_iso(doc["exported"], "exported")
    if not isinstance(doc["files"], list):
        raise ManifestFormatError("files: expected a list")
    if not isinstance(doc["locations"], dict):
        raise ManifestFormatError("locations: expected an object")
    locations: dict[bytes, DumpLocation] = {}
    for k, v in doc["locations"].items():
        w = f"locations[{k[:16]!r}]"
        cid = _hex(k, w)
        if not isinstance(v, dict):
            raise ManifestFormatError(f"{w}: expected an object")
        _keys(v, {"pack", "offset", "stored_length", "backends"}, w)
        if not isinstance(v["backends"], list):
            raise ManifestFormatError(f"{w}.backends: expected a list")
        locations[cid] = DumpLocation(
            _hex(v["pack"], f"{w}.pack"), _int(v["offset"], f"{w}.offset"),
            _int(v["stored_length"], f"{w}.stored_length", 1),
            tuple(_backend_name(b, f"{w}.backends[{i}]") for i, b in enumerate(v["backends"])))
    files: list[DumpFile] = []
    seen: set[bytes] = set()
    lengths: dict[bytes, int] = {}
    for i, f in enumerate(doc["files"]):
        w = f"files[{i}]"
        if not isinstance(f, dict):
            raise ManifestFormatError(f"{w}: expected an object")
        _keys(f, {"id", "names", "size", "created", "chunks"}, w)
        fid = _hex(f["id"], f"{w}.id")
        if fid in seen:
            raise ManifestFormatError(f"{w}.id: file listed twice")
        seen.add(fid)
        if not isinstance(f["names"], list):
            raise ManifestFormatError(f"{w}.names: expected a list")
        names = tuple(_name(n, f"{w}.names[{j}]") for j, n in enumerate(f["names"]))
        size = _int(f["size"], f"{w}.size")
        if not isinstance(f["chunks"], list):
            raise ManifestFormatError(f"{w}.chunks: expected a list")
        chunks = []
        for j, c in enumerate(f["chunks"]):
            cw = f"{w}.chunks[{j}]"
            if not isinstance(c, list) or len(c) != 2:
                raise ManifestFormatError(f"{cw}: expected [id, length]")
            n = _int(c[1], cw, 1)
            if n > MAX_CHUNK_LEN:
                raise ManifestFormatError(f"{cw}: chunk length above {MAX_CHUNK_LEN}")
            chunks.append((_hex(c[0], cw), n))
        for cid, n in chunks:
            if lengths.setdefault(cid, n) != n:
                raise ManifestFormatError(f"{w}.chunks: chunk {cid.hex()[:16]} listed with two lengths")
        if sum(n for _, n in chunks) != size:
            raise ManifestFormatError(f"{w}: chunk lengths add up to {sum(n for _, n in chunks)}, not size {size}")
        files.append(DumpFile(fid, names, size, _from_iso(f["created"], f"{w}.created"), tuple(chunks)))
    return Dump(key_id, tuple(files), locations, exported)
