"""export / import between two stores sharing one key file."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable

import pytest

from mosaic.node.errors import ImportFormatError, IntegrityError, NotFoundError, StorageError
from mosaic.node.store import restore
from mosaic.node.store.store import Store
from mosaic.node.store.transfer import export, import_
from mosaic.node.store.verify import verify
from mosaic.protocol.manifest_json import seal_dump

from .conftest import data_of, put_files

FILES = {"docs/a.txt": b"alpha\n" * 3000, "big.bin": data_of(7, 150_000), "empty": b""}


def _copy_packs(src: Store, dst: Store) -> None:
    for p in src.home.packs_dir.rglob("*"):
        if p.is_file():
            (dst.home.packs_dir / p.parent.name).mkdir(exist_ok=True)
            shutil.copy(p, dst.home.packs_dir / p.parent.name / p.name)


@pytest.fixture
def pair(make_store: Callable[..., Store]) -> tuple[Store, Store]:
    a = make_store("a")
    b = make_store("b", key_file=a.home.key_path)
    return a, b


def test_export_import_round_trip(pair: tuple[Store, Store]) -> None:
    a, b = pair
    res = put_files(a, FILES)
    put_files(a, {"alias": FILES["big.bin"]})
    dump = export(a, None)
    doc = json.loads(dump)
    assert doc["key_id"] == a.keys.key_id and len(doc["files"]) == 3
    _copy_packs(a, b)
    stats = import_(b, dump)
    assert stats == {"files": 3, "new_files": 3, "new_chunks": len(doc["locations"]), "names": 4}
    assert dict(b.index.iter_names()) == dict(a.index.iter_names())
    for name, data in FILES.items():
        m = b.resolve(name)
        assert m == a.index.get_manifest(res[name].file_id)
        assert b"".join(restore.read_verified(b, m)) == data
    with b.index.read() as txn:
        assert all(r.local for _, r in b.index.iter_packs(txn))
    assert verify(b, None).errors == []
    # importing again changes nothing
    assert import_(b, dump) == {"files": 3, "new_files": 0, "new_chunks": 0, "names": 0}
    assert b.index.count("manifests") == 3


def test_import_without_the_packs_knows_files_it_cannot_read(pair: tuple[Store, Store]) -> None:
    a, b = pair
    fid = put_files(a, {"f": FILES["big.bin"]})["f"].file_id
    import_(b, export(a, [fid.hex()]))
    m = b.resolve("f")
    with b.index.read() as txn:
        assert [r.local for _, r in b.index.iter_packs(txn)] == [False]
    with pytest.raises(StorageError, match="not stored locally and no backend holds it"):
        b"".join(restore.read_verified(b, m))


def test_export_selected_files_and_unknown_hash(pair: tuple[Store, Store]) -> None:
    a, _ = pair
    res = put_files(a, FILES)
    doc = json.loads(export(a, [res["docs/a.txt"].hash]))
    assert [f["names"] for f in doc["files"]] == [["docs/a.txt"]]
    assert set(doc["locations"]) == {c for c, _ in doc["files"][0]["chunks"]}
    with pytest.raises(NotFoundError):
        export(a, ["ab" * 32])


def test_import_is_all_or_nothing(pair: tuple[Store, Store], make_store: Callable[..., Store]) -> None:
    a, b = pair
    put_files(a, {"one": b"first file" * 100, "two": data_of(8, 40_000)})
    doc = json.loads(export(a, None))
    # a chunk of the second file has no location: nothing at all is imported
    broken = json.loads(json.dumps(doc))
    del broken["locations"][broken["files"][1]["chunks"][0][0]]
    del broken["mac"]
    with pytest.raises(ImportFormatError, match="has no location"):  # sealed: only this is wrong
        import_(b, seal_dump(json.dumps(broken), b.keys.dump_mac))
    assert b.index.count("manifests") == 0 and b.index.count("chunks") == 0
    assert list(b.index.iter_names()) == []
    # malformed text, and a dump made under another key
    with pytest.raises(ImportFormatError, match="bad manifest dump"):
        import_(b, "{not json")
    stranger = make_store("stranger")
    with pytest.raises(IntegrityError, match="another key"):
        import_(stranger, export(a, None))
    assert stranger.index.count("manifests") == 0
