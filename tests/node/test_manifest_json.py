"""The JSON manifest dump: strict parsing (protocol/manifest_json.py) and export/import via the CLI."""

from __future__ import annotations

import copy
import json
import random
import shutil
from pathlib import Path

import blake3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mosaic.protocol.manifest_json import (
    MAX_INT,
    Dump,
    DumpFile,
    DumpLocation,
    ManifestFormatError,
    encode_dump,
    parse_dump,
)
from tests.conftest import Cli, assert_one_line_error

COMMON = settings(max_examples=60, deadline=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

ids = st.binary(min_size=32, max_size=32)
# 1970 .. 2262 (the whole range a u63 of nanoseconds covers)
times = st.integers(0, MAX_INT)
backend_names = st.from_regex(r"[A-Za-z0-9_.\-]{1,20}", fullmatch=True)
name_part = st.text(st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="/"),
                    min_size=1, max_size=10).filter(lambda p: p not in (".", ".."))
names = st.lists(name_part, min_size=1, max_size=4).map("/".join).filter(
    lambda n: len(n.encode()) <= 400)


@st.composite
def dumps(draw: st.DrawFn, min_files: int = 0) -> Dump:
    files = []
    locations: dict[bytes, DumpLocation] = {}
    lengths: dict[bytes, int] = {}  # one chunk ID has one length (the format checks it)
    for fid in draw(st.lists(ids, min_size=min_files, max_size=5, unique=True)):
        raw = draw(st.lists(st.tuples(ids, st.integers(1, (1 << 32) - 1)), max_size=6))
        chunks = tuple((cid, lengths.setdefault(cid, n)) for cid, n in raw)
        for cid, _ in chunks:
            if cid not in locations and draw(st.booleans()):
                locations[cid] = DumpLocation(draw(ids), draw(st.integers(0, MAX_INT)),
                                              draw(st.integers(1, MAX_INT)),
                                              tuple(draw(st.lists(backend_names, max_size=3))))
        files.append(DumpFile(fid, tuple(draw(st.lists(names, max_size=3))),
                              sum(n for _, n in chunks), draw(times), chunks))
    for cid in draw(st.lists(ids, max_size=3)):  # locations of chunks no file lists
        locations.setdefault(cid, DumpLocation(draw(ids), draw(st.integers(0, 1 << 40)),
                                               draw(st.integers(1, 1 << 30)), ()))
    key_id = draw(st.binary(min_size=8, max_size=8)).hex()
    return Dump(key_id, tuple(files), locations, draw(times))


@COMMON
@given(d=dumps())
def test_round_trip(d: Dump) -> None:
    text = encode_dump(d)
    assert parse_dump(text) == d
    assert parse_dump(text.encode("utf-8")) == d
    assert encode_dump(parse_dump(text)) == text


@COMMON
@given(d=dumps(), st_data=st.data())
def test_truncated_json_is_rejected(d: Dump, st_data: st.DataObject) -> None:
    text = encode_dump(d).rstrip()
    cut = st_data.draw(st.integers(0, len(text) - 1), label="cut")
    with pytest.raises(ManifestFormatError):
        parse_dump(text[:cut])
    with pytest.raises(ManifestFormatError):
        parse_dump(text.encode("utf-8")[:cut])


# ---- mutations of a valid document -------------------------------------------------------

def _walk(doc: object, path: tuple = ()) -> list[tuple]:
    """Every path (a tuple of keys/indexes) to a value in the document, except the root."""
    out = []
    if isinstance(doc, dict):
        for k, v in doc.items():
            out.append((*path, k))
            out += _walk(v, (*path, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out.append((*path, i))
            out += _walk(v, (*path, i))
    return out


def _get(doc: object, path: tuple) -> object:
    for k in path:
        doc = doc[k]  # type: ignore[index]
    return doc


def _is_locations_map(path: tuple) -> bool:
    return path == ("locations",)


WRONG = {
    str: [0, 7, None, True, [], {}, 1.5],
    int: ["7", None, True, False, 1.5, 1.0, [], {}, "0x10"],
    list: [None, "x", 3, {}, True],
    dict: [None, "x", 3, [], True],
}


@COMMON
@given(d=dumps(min_files=1), st_data=st.data())
def test_wrong_types_are_rejected(d: Dump, st_data: st.DataObject) -> None:
    doc = json.loads(encode_dump(d))
    path = st_data.draw(st.sampled_from(_walk(doc)), label="path")
    old = _get(doc, path)
    new = st_data.draw(st.sampled_from(WRONG[type(old)]), label="replacement")
    _get(doc, path[:-1])[path[-1]] = new  # type: ignore[index]
    with pytest.raises(ManifestFormatError):
        parse_dump(json.dumps(doc))


@COMMON
@given(d=dumps(min_files=1), st_data=st.data())
def test_missing_and_unknown_fields_are_rejected(d: Dump, st_data: st.DataObject) -> None:
    doc = json.loads(encode_dump(d))
    records = [p for p in [(), *_walk(doc)]
               if isinstance(_get(doc, p), dict) and not _is_locations_map(p)]
    where = st_data.draw(st.sampled_from(records), label="record")
    rec = _get(doc, where)
    assert isinstance(rec, dict)
    if st_data.draw(st.booleans(), label="delete"):
        del rec[st_data.draw(st.sampled_from(sorted(rec)), label="key")]
    else:
        rec[st_data.draw(st.sampled_from(["extra", "Id", "name", "comment"]), label="key")] = 1
    with pytest.raises(ManifestFormatError):
        parse_dump(json.dumps(doc))


def _spoil_hex(h: str, how: int) -> str:
    return [h[:-1], h + "0", "g" + h[1:], h[:10] + "G" + h[11:], " " + h, "0x" + h[2:],
            h.upper() if any(c in "abcdef" for c in h) else h[:-2], ""][how]


@COMMON
@given(d=dumps(min_files=1), st_data=st.data())
def test_bad_hex_is_rejected(d: Dump, st_data: st.DataObject) -> None:
    doc = json.loads(encode_dump(d))
    targets = [("files", i, "id") for i in range(len(doc["files"]))]
    targets += [("files", i, "chunks", j, 0) for i, f in enumerate(doc["files"])
                for j in range(len(f["chunks"]))]
    targets += [("locations", k, "pack") for k in doc["locations"]]
    targets += [("locations-key", k) for k in doc["locations"]]
    t = st_data.draw(st.sampled_from(targets), label="target")
    how = st_data.draw(st.integers(0, 7), label="how")
    if t[0] == "locations-key":
        doc["locations"][_spoil_hex(t[1], how)] = doc["locations"].pop(t[1])
    else:
        parent = _get(doc, t[:-1])
        parent[t[-1]] = _spoil_hex(parent[t[-1]], how)  # type: ignore[index]
    with pytest.raises(ManifestFormatError):
        parse_dump(json.dumps(doc))


@COMMON
@given(d=dumps(min_files=1), st_data=st.data())
def test_sizes_must_add_up(d: Dump, st_data: st.DataObject) -> None:
    doc = json.loads(encode_dump(d))
    i = st_data.draw(st.integers(0, len(doc["files"]) - 1), label="file")
    f = doc["files"][i]
    delta = st_data.draw(st.integers(-f["size"], 1 << 20).filter(lambda x: x != 0), label="delta")
    f["size"] += delta
    with pytest.raises(ManifestFormatError):
        parse_dump(json.dumps(doc))


@pytest.mark.parametrize("field,value", [
    ("version", 0), ("version", 2), ("version", -1), ("version", "1"), ("version", None),
    ("version", 1.5), ("version", True), ("version", 1.0),
    ("format", "mosaic-manifest"), ("format", None), ("key_id", "ABCDEF0123456789"),
    ("key_id", "abc"), ("exported", "2026-01-01T00:00:00Z"), ("exported", "2026-13-01T00:00:00.000000000Z"),
])
def test_bad_header_fields_are_rejected(field: str, value: object) -> None:
    doc = json.loads(encode_dump(Dump("0123456789abcdef", (), {}, 0)))
    doc[field] = value
    with pytest.raises(ManifestFormatError):
        parse_dump(json.dumps(doc))


@pytest.mark.parametrize("text", [b"", b"   ", b"[]", b"null", b"42", b'"x"', b"\xff\xfe{}",
                                  b'{"format": "mosaic-manifests"}', b"{" * 10_000])
def test_not_a_dump(text: bytes) -> None:
    with pytest.raises(ManifestFormatError):
        parse_dump(text)


def test_a_file_listed_twice_and_bad_names_are_rejected() -> None:
    f = DumpFile(b"\x01" * 32, ("a/b",), 0, 0, ())
    doc = json.loads(encode_dump(Dump("0123456789abcdef", (f,), {}, 0)))
    twice = copy.deepcopy(doc)
    twice["files"].append(copy.deepcopy(doc["files"][0]))
    with pytest.raises(ManifestFormatError):
        parse_dump(json.dumps(twice))
    for bad in ["", "/abs", "a//b", "a/./b", "a/../b", "..", "a\x00b", "a/", "x" * 401, "a\tb"]:
        d = copy.deepcopy(doc)
        d["files"][0]["names"] = [bad]
        with pytest.raises(ManifestFormatError):
            parse_dump(json.dumps(d))
    for n in (-1, 0, MAX_INT + 1):
        d = copy.deepcopy(doc)
        d["files"][0]["chunks"] = [["ab" * 32, n]]
        d["files"][0]["size"] = n
        with pytest.raises(ManifestFormatError):
            parse_dump(json.dumps(d))


# ---- through the node --------------------------------------------------------------------

def _export(cli: Cli) -> object:
    """`export --all` without its timestamp (and the MAC, which covers it)."""
    doc = json.loads(cli.ok("export", "--all").out)
    doc.pop("exported")
    doc.pop("mac")
    return doc


def _state(cli: Cli) -> tuple[object, str]:
    """The node's index as seen from outside: `export --all` and `ls`."""
    return _export(cli), cli.ok("ls").text


@pytest.fixture(scope="module")
def _pair_template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """Node A with three files, node B joined to A's key with one file of its own (made once)."""
    root = tmp_path_factory.mktemp("pair")
    work = root / "work"
    work.mkdir()
    a, b = Cli(root / "a", cwd=work), Cli(root / "b", cwd=work)
    a.init()
    rng = random.Random(5)
    files = {"docs/random.bin": rng.randbytes(120_000),
             "docs/text.txt": b"".join(b"line %d of a fairly ordinary text file\n" % i
                                       for i in range(3000)),
             "empty": b""}
    files["docs/shared.bin"] = files["docs/random.bin"][:60_000] + rng.randbytes(30_000)
    for name, data in files.items():
        p = work / name.replace("/", "_")
        p.write_bytes(data)
        a.ok("put", p, "--name", name)
    a.ok("key", "export", "-o", root / "a.key")
    b.ok("init", "--no-passphrase", "--key-file", root / "a.key")
    (work / "b_own").write_bytes(b"B's own file\n" * 100)
    b.ok("put", work / "b_own", "--name", "own")
    return root, files


@pytest.fixture
def pair(_pair_template: tuple[Path, dict], tmp_path: Path) -> tuple[Cli, Cli, dict]:
    """A fresh copy of the template's A and B for each test (the tests change B)."""
    root, files = _pair_template
    work = tmp_path / "work"
    work.mkdir()
    for name in ("a", "b"):
        shutil.copytree(root / name, tmp_path / name, ignore=shutil.ignore_patterns("lock.mdb"))
    return Cli(tmp_path / "a", cwd=work), Cli(tmp_path / "b", cwd=work), files


def test_bad_imports_change_nothing(pair: tuple[Cli, Cli, dict], tmp_path: Path) -> None:
    a, b, files = pair
    text = a.ok("export", "--all").text
    doc = json.loads(text)
    before = _state(b)
    cases: dict[str, str] = {}
    rng = random.Random(11)
    stripped = text.rstrip()
    for cut in sorted(rng.sample(range(1, len(stripped)), 3)) + [len(stripped) - 1]:
        cases[f"truncated at {cut}"] = stripped[:cut]

    def variant(name: str, fn) -> None:  # noqa: ANN001
        d = copy.deepcopy(doc)
        fn(d)
        cases[name] = json.dumps(d)

    last = len(doc["files"]) - 1
    variant("wrong type", lambda d: d["files"][last].__setitem__("size", "12"))
    variant("missing field", lambda d: d["files"][last].pop("created"))
    variant("unknown field", lambda d: d["locations"][next(iter(d["locations"]))].__setitem__("x", 1))
    variant("bad hex", lambda d: d["files"][last].__setitem__("id", d["files"][last]["id"].upper()))
    variant("sum", lambda d: d["files"][last].__setitem__("size", d["files"][last]["size"] + 1))
    variant("version", lambda d: d.__setitem__("version", 2))
    variant("other key", lambda d: d.__setitem__("key_id", "0123456789abcdef"))

    def unlocated(d: dict) -> None:  # a chunk neither known to B nor located in the dump
        d["files"].append({"id": "cd" * 32, "names": ["ghost"], "size": 10,
                           "created": d["exported"], "chunks": [["ef" * 32, 10]]})
    variant("unlocated chunk", unlocated)
    # well-formed dumps without a valid MAC fail authentication (exit 3); the rest are not dumps
    unauthentic = {"other key", "unlocated chunk"}
    for name, data in cases.items():
        p = tmp_path / "bad.json"
        p.write_text(data)
        r = b("import", p)
        assert_one_line_error(r, 3 if name in unauthentic else 2)
        assert _export(b) == before[0], f"{name}: the index changed"
    r = b("import", "-", input=cases[f"truncated at {len(stripped) - 1}"].encode())
    assert_one_line_error(r, 2)
    assert_one_line_error(b("import", tmp_path / "does-not-exist.json"), 1)
    assert _state(b) == before


@pytest.mark.parametrize("case", ["chunk length above u32", "created in year 9999",
                                  "one chunk with two lengths"])
def test_dumps_the_index_cannot_hold_are_refused_cleanly(pair: tuple[Cli, Cli, dict],
                                                         tmp_path: Path, case: str) -> None:
    """Valid JSON, but nothing the node may store: exit 2 with one line, index untouched."""
    a, b, files = pair
    doc = json.loads(a.ok("export", "--all").text)
    if case == "chunk length above u32":
        n = 1 << 32
        doc["files"].append({"id": "cd" * 32, "names": ["huge"], "size": n,
                             "created": doc["exported"], "chunks": [["ef" * 32, n]]})
        doc["locations"]["ef" * 32] = {"pack": "12" * 32, "offset": 8, "stored_length": 100,
                                       "backends": []}
    elif case == "created in year 9999":
        doc["files"].append({"id": "cd" * 32, "names": ["future"], "size": 0,
                             "created": "9999-12-31T23:59:59.999999999Z", "chunks": []})
    else:
        # two new files share a chunk but disagree on its length; a dump cannot be
        # applied half-right, so the whole import must be refused
        cid = "ef" * 32
        doc["locations"][cid] = {"pack": "12" * 32, "offset": 8, "stored_length": 100,
                                 "backends": []}
        for i, n in enumerate((100, 200)):
            doc["files"].append({"id": f"{i + 1:02x}" * 32, "names": [f"twin{i}"], "size": n,
                                 "created": doc["exported"], "chunks": [[cid, n]]})
    before = _state(b)
    p = tmp_path / "dump.json"
    p.write_text(json.dumps(doc))
    r = b("import", p)
    assert_one_line_error(r, 2)
    assert _state(b) == before


def test_import_twice_changes_nothing(pair: tuple[Cli, Cli, dict], tmp_path: Path) -> None:
    a, b, files = pair
    dump = tmp_path / "a.json"
    a.ok("export", "--all", "-o", dump)
    first = b.doc("import", dump)
    assert first["files"] == len(files)
    assert first["new_files"] == len(files)
    after_first = _state(b)
    second = b.doc("import", dump)
    assert second["new_files"] == 0 and second["new_chunks"] == 0 and second["names"] == 0
    assert _state(b) == after_first
    # A importing its own dump changes nothing either
    before_a = _state(a)
    own = a.doc("import", dump)
    assert own["new_files"] == 0 and own["new_chunks"] == 0 and own["names"] == 0
    assert _state(a) == before_a
    ls = b.ok("ls").text
    for name in files:
        assert name in ls
    assert "own" in ls


def test_export_to_a_joined_node_through_a_shared_backend(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    shared = tmp_path / "shared-backend"
    a, b = Cli(tmp_path / "a", cwd=work), Cli(tmp_path / "b", cwd=work)
    a.ok("init", "--pack-size", "64KiB", "--chunk-min", "1KiB", "--chunk-avg", "4KiB",
         "--chunk-max", "16KiB")
    a.ok("backend", "add", "dir", "nas", shared)
    rng = random.Random(3)
    tree = work / "tree"
    files = {"a.bin": rng.randbytes(200_000), "sub/b.txt": b"hello mosaic\n" * 5000,
             "sub/deeper/c.bin": rng.randbytes(50_000) * 3, "empty.txt": b""}
    for rel, data in files.items():
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        (tree / rel).write_bytes(data)
    out = a.ok("put", "-r", "tree").text
    for rel, data in files.items():
        assert f"{blake3.blake3(data).hexdigest()}  tree/{rel}" in out
    assert list(shared.rglob("*")), "packs were uploaded to the backend"
    a.ok("export", "--all", "-o", tmp_path / "dump.json")
    a.ok("key", "export", "-o", tmp_path / "a.key")

    b.ok("init", "--key-file", tmp_path / "a.key")
    b.ok("backend", "add", "dir", "nas", shared)
    stats = b.doc("import", tmp_path / "dump.json")
    assert stats["new_files"] == len(files)
    for rel, data in files.items():
        assert b.ok("get", f"tree/{rel}", "-").out == data
        assert b.ok("cat", blake3.blake3(data).hexdigest()).out == data
    b.ok("get", "-r", "tree", tmp_path / "restored")
    for rel, data in files.items():
        assert (tmp_path / "restored" / rel).read_bytes() == data
    b.ok("verify", "--all")
    # B's view of the names is A's
    assert b.ok("ls").text == a.ok("ls").text
