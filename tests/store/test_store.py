"""`Store.create` / `Store.open`: the home, the key file, the chunk parameters, resolving refs."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import blake3
import nacl.pwhash.argon2id as argon2id
import pytest

from mosaic.node.errors import HomeError, KeyFileError, NotFoundError, UsageError
from mosaic.node.store import keys as keymod
from mosaic.node.store.home import Home
from mosaic.node.store.store import Store
from tests.conftest import PASSPHRASE, REAL_KDF, mosaic_env

from .conftest import SMALL, put_files


def test_create_unsealed_then_open(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with Store.create(home, no_passphrase=True, pack_size=1 << 20, **SMALL) as s:
        key_id, seed = s.keys.key_id, s.chunk_params.seed
        assert s.chunk_params.sizes() == {"min": 1024, "avg": 4096, "max": 16384}
    h = Home(home)
    assert h.exists()
    for d in (h.root, h.index_dir, h.packs_dir, h.tmp_dir):
        assert stat.S_IMODE(d.stat().st_mode) & 0o077 == 0, d
    assert stat.S_IMODE(h.key_path.stat().st_mode) == 0o600
    doc = json.loads(h.key_path.read_text())
    assert doc["sealed"] is False and doc["key_id"] == key_id and "kdf" not in doc
    assert doc["params"]["chunking"] == {"min": 1024, "avg": 4096, "max": 16384}
    cfg = h.read_config()
    assert (cfg.chunk_min, cfg.chunk_avg, cfg.chunk_max, cfg.pack_size) == (1024, 4096, 16384, 1 << 20)
    assert len(cfg.node_tag) == 16
    with Store.open(home, passphrase="ignored for an unsealed key") as s:
        assert s.keys.key_id == key_id
        assert s.chunk_params.seed == seed  # the chunker is keyed by the master key


def test_create_sealed_needs_the_passphrase_to_open(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    with Store.create(home, passphrase="pw one", **SMALL) as s:
        key_id = s.keys.key_id
    doc = json.loads((home / "key.json").read_text())
    assert doc["sealed"] is True and "master" not in doc
    # the test suite seals with libsodium's cheapest Argon2id (tests/conftest.py), and the
    # key file records what it was sealed with
    assert doc["kdf"]["opslimit"] == argon2id.OPSLIMIT_MIN
    assert doc["kdf"]["memlimit"] == argon2id.MEMLIMIT_MIN
    with pytest.raises(KeyFileError, match="wrong passphrase"):
        Store.open(home, passphrase="pw two")
    monkeypatch.delenv("MOSAIC_PASSPHRASE", raising=False)
    with pytest.raises(KeyFileError, match="sealed"):
        Store.open(home)
    monkeypatch.setenv("MOSAIC_PASSPHRASE", "pw one")
    with Store.open(home) as s:  # the passphrase defaults to $MOSAIC_PASSPHRASE
        assert s.keys.key_id == key_id
    with Store.open(home, passphrase="pw one") as s:
        assert s.keys.key_id == key_id


def test_the_real_kdf_once(tmp_path: Path) -> None:
    """The one run of the real, unweakened Argon2id (64 MiB, 3 passes).

    `python -m mosaic` (the installed entry point, not the tests' weakened one) seals the key;
    its key file records the real cost, and this process (weakened) still opens it, because
    unsealing uses the parameters the key file records.
    """
    home = tmp_path / "home"
    r = subprocess.run([sys.executable, "-m", "mosaic", "--home", str(home), "--json", "init",
                        "--chunk-min", "1KiB", "--chunk-avg", "4KiB", "--chunk-max", "16KiB"],
                       env=mosaic_env(), cwd=tmp_path, capture_output=True, timeout=120,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr.decode()
    assert json.loads(r.stdout)["sealed"] is True
    kdf = json.loads((home / "key.json").read_text())["kdf"]
    assert (kdf["opslimit"], kdf["memlimit"]) == REAL_KDF == (3, 64 * 1024 * 1024)
    assert (keymod.KDF_OPSLIMIT, keymod.KDF_MEMLIMIT) != REAL_KDF  # weakened in this process
    with Store.open(home, passphrase=PASSPHRASE) as s:
        assert s.keys.key_id == json.loads((home / "key.json").read_text())["key_id"]
    with pytest.raises(KeyFileError, match="wrong passphrase"):
        Store.open(home, passphrase=PASSPHRASE + "!")


def test_create_refuses(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="passphrase is required"):
        Store.create(tmp_path / "a", **SMALL)
    assert not (tmp_path / "a").exists()
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "precious").write_text("keep")
    with pytest.raises(UsageError, match="not empty"):
        Store.create(tmp_path / "b", no_passphrase=True, **SMALL)
    assert [p.name for p in (tmp_path / "b").iterdir()] == ["precious"]
    Store.create(tmp_path / "c", no_passphrase=True, **SMALL).close()
    with pytest.raises(UsageError, match="already a Mosaic node"):
        Store.create(tmp_path / "c", no_passphrase=True, **SMALL)
    with pytest.raises(UsageError, match="even"):
        Store.create(tmp_path / "d", no_passphrase=True, chunk_min=1025, chunk_avg=4096,
                     chunk_max=16384)
    with pytest.raises(UsageError):
        Store.create(tmp_path / "e", no_passphrase=True, chunk_min=64 << 10, chunk_avg=4096)
    assert not (tmp_path / "d" / "key.json").exists() and not (tmp_path / "e" / "key.json").exists()


def test_open_refuses_a_missing_or_uninitialised_home(tmp_path: Path) -> None:
    with pytest.raises(HomeError, match="no node home"):
        Store.open(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(HomeError, match="not an initialised"):
        Store.open(tmp_path / "empty")


def test_join_with_a_key_file_shares_key_and_chunking(make_store: Callable[..., Store],
                                                      tmp_path: Path) -> None:
    a = make_store("a", chunk_min=2048, chunk_avg=8192, chunk_max=32768)
    b = make_store("b", key_file=a.home.key_path)
    assert b.keys == a.keys
    assert b.chunk_params == a.chunk_params
    with pytest.raises(UsageError, match="chunk sizes come from the key file"):
        Store.create(tmp_path / "c", no_passphrase=True, key_file=a.home.key_path, chunk_avg=4096)
    # a sealed key file needs its passphrase
    Store.create(tmp_path / "sealed", passphrase="s3cret", **SMALL).close()
    with pytest.raises(KeyFileError):
        Store.create(tmp_path / "d", no_passphrase=True, key_file=tmp_path / "sealed" / "key.json",
                     key_file_passphrase="wrong")
    with Store.create(tmp_path / "e", no_passphrase=True, key_file=tmp_path / "sealed" / "key.json",
                      key_file_passphrase="s3cret") as e, Store.open(tmp_path / "sealed",
                                                                     passphrase="s3cret") as s:
        assert e.keys == s.keys


def test_same_content_same_chunks_across_joined_stores(make_store: Callable[..., Store]) -> None:
    a = make_store("a")
    b = make_store("b", key_file=a.home.key_path)
    c = make_store("c")  # another key: other chunk IDs
    data = bytes(range(256)) * 400
    ra, rb, rc = (put_files(s, {"f": data})["f"] for s in (a, b, c))
    assert ra.file_id == rb.file_id == rc.file_id == blake3.blake3(data).digest()
    ma, mb, mc = (s.index.get_manifest(ra.file_id) for s in (a, b, c))
    assert ma is not None and mb is not None and mc is not None
    assert ma.chunks == mb.chunks
    assert {cid for cid, _ in ma.chunks}.isdisjoint({cid for cid, _ in mc.chunks})


def test_resolve(store: Store) -> None:
    res = put_files(store, {"docs/a.txt": b"alpha\n" * 100, "b": b"beta"})
    fid = res["docs/a.txt"].file_id
    assert store.resolve(fid.hex()).file_id == fid
    assert store.resolve(fid.hex().upper()).file_id == fid
    assert store.resolve("docs/a.txt").file_id == fid
    assert store.resolve("/docs//a.txt").file_id == fid  # names are normalised
    with pytest.raises(NotFoundError, match="unknown hash"):
        store.resolve(blake3.blake3(b"never stored").hexdigest())
    with pytest.raises(UsageError, match="malformed hash"):
        store.resolve(fid.hex()[:-1])
    with pytest.raises(NotFoundError, match="no such name"):
        store.resolve("docs/missing.txt")
