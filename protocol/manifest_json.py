"""The JSON manifest dump (`mosaic export` / `mosaic import`): schema, encoding, strict parsing.

Sans-io: dicts and strings in, frozen dataclasses out. The schema is written
down in docs/manifest-json.md. Parsing checks everything before anything is
applied, and names the offending field in its error.

A dump is authenticated as a whole: `seal_dump` appends a last member, `"mac"`,
the keyed BLAKE3 (under a subkey of the node key) of every byte of the document
before the MAC's own digits; the bytes after them are fixed (`"\\n}\\n`). So no
byte of a sealed dump can change unnoticed: `open_dump` checks the MAC before
it parses anything, and a dump without one is refused. The MAC proves which key
made the dump; it hides nothing: names and file hashes stand in it in clear.
"""

from __future__ import annotations

import hmac
import json
import re
from dataclasses import dataclass

import blake3

from .errors import ProtocolError
from .name_rules import InvalidName, check_canonical

FORMAT = "mosaic-manifests"
VERSION = 1
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_INERT = re.compile("[\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")  # see encode_dump
_HEX16 = re.compile(r"^[0-9a-f]{16}$")
MAX_INT = (1 << 63) - 1
MAX_CHUNK_LEN = (1 << 32) - 1


class ManifestFormatError(ProtocolError):
    """A manifest dump that is malformed; the message names the field."""


class DumpNotAuthentic(ProtocolError):
    """A dump whose MAC is missing or does not match (changed, or made under another key)."""


_MAC_HEAD = b',\n "mac": "'
_MAC_TAIL = b'"\n}\n'
_MAC_HEX = 64
_TRAILER_LEN = len(_MAC_HEAD) + _MAC_HEX + len(_MAC_TAIL)
_HEX64_BYTES = re.compile(rb"[0-9a-f]{64}")


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
    text = json.dumps(doc, indent=1, ensure_ascii=False) + "\n"
    # json escapes C0 in strings itself; DEL, C1, bidi controls and line separators (no valid
    # name holds them, an old index might) are escaped too: a dump on a terminal stays inert
    return _INERT.sub(lambda m: f"\\u{ord(m.group()):04x}", text) if _INERT.search(text) else text


def dump_mac(key: bytes, signed: bytes) -> bytes:
    """The MAC of a dump: BLAKE3 keyed with the node's dump subkey (32 bytes) over `signed`."""
    return blake3.blake3(signed, key=key).digest()


def seal_dump(text: str, key: bytes) -> str:
    """A dump's JSON text (one object, as `encode_dump` writes it) with its MAC as the last
    member: `,\\n "mac": "<64 hex>"\\n}\\n`, computed over every byte before the digits."""
    body = text.rstrip()
    head = body[:-1].rstrip()
    if not body.endswith("}") or head.endswith("{") or not head.startswith("{"):
        raise ValueError("not a dump document (a JSON object with members)")
    signed = head.encode("utf-8") + _MAC_HEAD
    return (signed + dump_mac(key, signed).hex().encode("ascii") + _MAC_TAIL).decode("utf-8")


def open_dump(data: str | bytes, key: bytes) -> Dump:
    """Check a sealed dump's MAC, then parse it (`parse_dump`).

    DumpNotAuthentic if the MAC does not match, or if the text is a dump that carries no
    MAC; ManifestFormatError if it is not a dump at all (so that is said, not "no MAC").
    """
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else bytes(data)
    tail = raw[-_TRAILER_LEN:]
    digits = tail[len(_MAC_HEAD):len(_MAC_HEAD) + _MAC_HEX]
    if (len(raw) > _TRAILER_LEN and tail.startswith(_MAC_HEAD) and tail.endswith(_MAC_TAIL)
            and _HEX64_BYTES.fullmatch(digits)):
        signed = raw[:len(raw) - _MAC_HEX - len(_MAC_TAIL)]
        if not hmac.compare_digest(dump_mac(key, signed).hex().encode("ascii"), digits):
            raise DumpNotAuthentic("its MAC does not match: the dump was changed after export, "
                                   "or made under another key")
        return parse_dump(raw)
    parse_dump(raw)  # a dump at all? (ManifestFormatError names what is wrong if not)
    raise DumpNotAuthentic("it carries no valid MAC (changed after export, or written by hand "
                           "or by an older version: export it again)")


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


def _keys(obj: dict, required: set[str], where: str, optional: frozenset[str] = frozenset()) -> None:
    missing = required - obj.keys()
    if missing:
        raise ManifestFormatError(f"{where}: missing field {sorted(missing)[0]!r}")
    extra = obj.keys() - required - optional
    if extra:
        raise ManifestFormatError(f"{where}: unknown field {sorted(extra)[0]!r}")


def parse_dump(text: str | bytes) -> Dump:
    """Parse and check a dump completely; ManifestFormatError on anything off.

    The `mac` member is allowed but not checked here: `open_dump` checks it first.
    """
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
    _keys(doc, {"format", "version", "key_id", "exported", "files", "locations"}, "top level",
          frozenset({"mac"}))
    if "mac" in doc and (not isinstance(doc["mac"], str) or not _HEX64.match(doc["mac"])):
        raise ManifestFormatError("mac: expected 64 lowercase hex digits")
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
