"""Authenticated dumps: `export` seals a MAC over the whole document, `import` checks it first.

A dump with any single byte changed is refused (exit 3 for a MAC that does not hold, exit 2
where the change leaves no dump at all) and the index does not change.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mosaic.node.errors import ImportFormatError, IntegrityError, MosaicError
from mosaic.node.store.index import Index
from mosaic.node.store.store import Store
from mosaic.node.store.transfer import export, import_
from mosaic.protocol.manifest_json import (
    DumpNotAuthentic,
    encode_dump,
    open_dump,
    parse_dump,
    seal_dump,
)

from .conftest import SMALL, put_files


def index_state(idx: Index) -> dict[str, list[tuple[bytes, bytes]]]:
    """Every row of every table (the whole index, to compare before and after)."""
    with idx.read() as txn:
        return {t: [(bytes(k), bytes(v)) for k, v in txn.cursor(db=idx.db[t]).iternext()]
                for t in idx.TABLES}


@pytest.fixture
def pair(make_store: Callable[..., Store]) -> tuple[Store, Store]:
    a = make_store("a")
    b = make_store("b", key_file=a.home.key_path)
    return a, b


@pytest.fixture
def small_dump(pair: tuple[Store, Store]) -> bytes:
    """A's dump of one small named file (a few hundred bytes: every position is tried)."""
    a, _ = pair
    put_files(a, {"n": b"tiny file\n"})
    return export(a, None).encode("utf-8")


def test_export_carries_a_mac_that_import_accepts(pair: tuple[Store, Store]) -> None:
    a, b = pair
    put_files(a, {"x/y": b"hello" * 1000, "z": b""})
    text = export(a, None)
    doc = json.loads(text)
    assert len(doc["mac"]) == 64 and list(doc)[-1] == "mac"
    assert text.endswith(f'"mac": "{doc["mac"]}"\n}}\n')
    assert import_(b, text)["new_files"] == 2
    assert import_(b, text.encode("utf-8"))["new_files"] == 0  # bytes too, idempotent


def test_every_changed_byte_is_refused_and_changes_nothing(pair: tuple[Store, Store],
                                                           small_dump: bytes) -> None:
    _, b = pair
    before = index_state(b.index)
    trailer = small_dump.rindex(b',\n "mac"')
    codes: dict[int, int] = {}
    for i in range(len(small_dump)):
        for flip in (0x01, 0x20, 0x80):
            bad = bytearray(small_dump)
            bad[i] ^= flip
            with pytest.raises(MosaicError) as ei:
                import_(b, bytes(bad))
            assert isinstance(ei.value, (IntegrityError, ImportFormatError)), (i, flip, ei.value)
            codes[i] = ei.value.exit_code
            if i < trailer:  # the MAC's input: always a MAC failure, exit 3
                assert isinstance(ei.value, IntegrityError), (i, flip, ei.value)
    assert index_state(b.index) == before
    assert set(codes.values()) <= {2, 3}
    assert import_(b, small_dump)["new_files"] == 1  # the untouched dump still imports


@pytest.fixture(scope="module")
def hypo_pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Store, bytes, dict]]:
    """B, A's sealed dump and B's index before: made once for the hypothesis test."""
    root = tmp_path_factory.mktemp("hypo")
    a = Store.create(root / "a", no_passphrase=True, **SMALL)
    b = Store.create(root / "b", no_passphrase=True, key_file=a.home.key_path)
    put_files(a, {"d/é": b"x" * 3000})
    yield b, export(a, None).encode("utf-8"), index_state(b.index)
    a.close()
    b.close()


@settings(max_examples=200, deadline=None)
@given(st_data=st.data())
def test_any_single_byte_value_anywhere(st_data: st.DataObject,
                                        hypo_pair: tuple[Store, bytes, dict]) -> None:
    b, dump, before = hypo_pair
    i = st_data.draw(st.integers(0, len(dump) - 1), label="position")
    v = st_data.draw(st.integers(0, 255).filter(lambda x: x != dump[i]), label="value")
    bad = dump[:i] + bytes([v]) + dump[i + 1:]
    with pytest.raises((IntegrityError, ImportFormatError)):
        import_(b, bad)
    assert index_state(b.index) == before


def test_appended_removed_or_unsealed_text_is_refused(pair: tuple[Store, Store],
                                                      small_dump: bytes) -> None:
    _, b = pair
    before = index_state(b.index)
    text = small_dump.decode()
    body = json.loads(text)
    del body["mac"]
    for bad in (text + " ", " " + text, text[:-1], text + text,
                json.dumps(body), json.dumps(json.loads(text))):  # re-encoded: same JSON value
        with pytest.raises(IntegrityError):
            import_(b, bad)
    with pytest.raises(ImportFormatError, match="bad manifest dump"):
        import_(b, "{not json")
    assert index_state(b.index) == before


def test_a_dump_of_another_key_is_refused_with_exit_3(make_store: Callable[..., Store],
                                                       small_dump: bytes) -> None:
    stranger = make_store("stranger")
    before = index_state(stranger.index)
    with pytest.raises(IntegrityError, match="another key") as ei:
        import_(stranger, small_dump)
    assert ei.value.exit_code == 3
    assert index_state(stranger.index) == before


def test_an_authentic_dump_that_does_not_fit_is_still_checked(pair: tuple[Store, Store]) -> None:
    """The MAC is not the only check: a sealed dump with an unlocated chunk is refused whole."""
    a, b = pair
    put_files(a, {"one": b"first" * 500})
    doc = json.loads(export(a, None))
    del doc["mac"]
    doc["files"].append({"id": "cd" * 32, "names": ["ghost"], "size": 10,
                         "created": doc["exported"], "chunks": [["ef" * 32, 10]]})
    before = index_state(b.index)
    with pytest.raises(ImportFormatError, match="has no location"):
        import_(b, seal_dump(json.dumps(doc, indent=1), b.keys.dump_mac))
    assert index_state(b.index) == before


def test_seal_and_open_are_inverse_and_key_bound() -> None:
    d = parse_dump(encode_dump(parse_dump(json.dumps({
        "format": "mosaic-manifests", "version": 1, "key_id": "0123456789abcdef",
        "exported": "2026-01-01T00:00:00.000000000Z", "files": [], "locations": {}}))))
    k1, k2 = b"\x01" * 32, b"\x02" * 32
    sealed = seal_dump(encode_dump(d), k1)
    assert open_dump(sealed, k1) == d == parse_dump(sealed)
    with pytest.raises(DumpNotAuthentic):
        open_dump(sealed, k2)
    with pytest.raises(DumpNotAuthentic):
        open_dump(encode_dump(d), k1)
    with pytest.raises(ValueError):
        seal_dump("{}", k1)
