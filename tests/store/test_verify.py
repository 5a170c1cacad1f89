"""verify on a bare store: clean stores pass, one flipped pack byte is reported; file_stat."""

from __future__ import annotations

import random

import blake3

from mosaic.node.store.store import Store
from mosaic.node.store.verify import file_stat, verify

from .conftest import data_of, put_files


def _flip(store: Store, fid: bytes, chunk_index: int) -> tuple[bytes, bytes]:
    """Flip one byte inside a chunk's stored object; (chunk id, pack id)."""
    m = store.index.get_manifest(fid)
    assert m is not None
    cid = m.chunks[chunk_index][0]
    rec = store.index.get_chunk(cid)
    assert rec is not None
    path = store.home.pack_path(rec.pack_id)
    with open(path, "r+b") as f:
        f.seek(rec.offset + rec.stored_len // 2)
        b = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([b[0] ^ 0x5A]))
    store.local.forget(rec.pack_id)
    return cid, rec.pack_id


def test_verify_clean_then_corrupt(make_store) -> None:  # noqa: ANN001
    store = make_store(pack_size=64 << 10)  # the two files land in different packs
    good, victim = data_of(1, 100_000), data_of(2, 120_000)
    res = put_files(store, {"good": good})
    res |= put_files(store, {"victim": victim})
    g, v = res["good"].file_id, res["victim"].file_id
    rep = verify(store, None)
    assert (rep.files, rep.bytes, rep.errors) == (2, len(good) + len(victim), [])
    seen: list[int] = []
    assert verify(store, [g], seen.append).errors == [] and sum(seen) == len(good)

    cid, pid = _flip(store, v, 2)
    rep = verify(store, None)
    assert rep.files == 2
    pack_errors = [e for e in rep.errors if e.startswith("pack ")]
    file_errors = [e for e in rep.errors if not e.startswith("pack ")]
    assert pack_errors == [f"pack {pid.hex()[:16]}: content does not match its ID (corrupt)"]
    assert len(file_errors) == 1 and file_errors[0].startswith(v.hex()) and cid.hex()[:16] in file_errors[0]
    # checking files only (no pack scan): the good file passes, the victim does not
    assert verify(store, [g]).errors == []
    rep = verify(store, [v])
    assert len(rep.errors) == 1 and cid.hex()[:16] in rep.errors[0]


def test_a_missing_local_pack_and_an_unknown_hash(store: Store) -> None:
    fid = put_files(store, {"f": b"data " * 2000})["f"].file_id
    m = store.index.get_manifest(fid)
    assert m is not None
    pid = store.index.get_chunk(m.chunks[0][0]).pack_id  # type: ignore[union-attr]
    store.local.delete(pid)
    rep = verify(store, None)
    assert f"pack {pid.hex()[:16]}: missing from the local store" in rep.errors
    unknown = blake3.blake3(b"nothing").digest()
    rep = verify(store, [unknown])
    assert rep.files == 0 and rep.errors == [f"{unknown.hex()}: unknown hash"]


def test_file_stat(store: Store) -> None:
    rng = random.Random(3)
    block = rng.randbytes(20_000)  # random: ~4 KiB chunks, the same ones in every repeat
    res = put_files(store, {"rep": block * 5, "text": b"compress me please\n" * 5000})
    put_files(store, {"b": block + rng.randbytes(30_000)})
    st = file_stat(store, res["rep"].file_id)
    m = store.index.get_manifest(res["rep"].file_id)
    assert m is not None
    assert st["hash"] == res["rep"].hash and st["names"] == ["rep"] and st["size"] == 100_000
    assert st["chunks"] == len(m.chunks) > st["distinct_chunks"] == len({c for c, _ in m.chunks})
    assert st["repeated_bytes_in_file"] > 0 and st["shared_bytes"] > 0
    assert st["dedup_saving_bytes"] >= st["repeated_bytes_in_file"]
    assert st["cached_fraction"] == 1.0 and st["locations"] == {"local": 1.0}
    assert 0 < st["stored_bytes"] < st["size"]
    assert file_stat(store, res["text"].file_id)["compression_ratio"] > 5
