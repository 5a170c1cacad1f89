"""Crash safety: `mosaic put` killed with SIGKILL at random moments never damages the node.

One home, many rounds. Each round stores fresh content (a 48 MiB file whose every
chunk differs from the last round's, plus a tree of small files) with 1 MiB packs,
so the put is busy cutting, encrypting, sealing packs and committing when it is
killed. After each kill: `verify --all` passes, the same put run again succeeds
and prints the right hashes. The previous round's big file is then removed and
`gc` run (which also sweeps what the killed put left), keeping verify's work
bounded. At the end every stored file comes back byte-identical.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import blake3

from tests.conftest import Cli, mosaic_env

KILLS = 20
MAX_ROUNDS = 40
BIG = 48 << 20


def _b3(data: bytes | bytearray) -> str:
    return blake3.blake3(data, max_threads=blake3.blake3.AUTO).hexdigest()


def _write_round(work: Path, i: int, base: bytearray, rng: random.Random) -> dict[str, str]:
    """Round i's files under work/r{i}: returns {name: b3 hash}."""
    # a different byte every 4 KiB: every chunk (16 KiB minimum) is new
    n = len(base[i % 4096::4096])
    base[i % 4096::4096] = bytes([(i * 37 + 11) % 256]) * n
    root = work / f"r{i}"
    (root / "tree").mkdir(parents=True)
    (root / "big.bin").write_bytes(base)
    hashes = {f"r{i}/big.bin": _b3(base)}
    for j in range(30):
        data = (b"round %d file %d\n" % (i, j)) * rng.randint(0, 3000) + rng.randbytes(rng.randint(0, 20_000))
        rel = f"tree/d{j % 3}/f{j}.dat"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
        hashes[f"r{i}/{rel}"] = _b3(data)
    return hashes


def _put_cmd(cli: Cli, i: int) -> list[str]:
    return [sys.executable, "-m", "mosaic", "--home", str(cli.home), "put", "-r", f"r{i}"]


def _check_put_output(out: str, hashes: dict[str, str]) -> None:
    got = {}
    for line in out.splitlines():
        h, name = line.split("  ", 1)
        got[name] = h
    assert got == hashes


def _pack_files(home: Path) -> int:
    return sum(1 for p in (home / "packs").rglob("*") if p.is_file())


def test_sigkill_during_put(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    cli = Cli(tmp_path / "home", cwd=work)
    cli.ok("init", "--no-passphrase", "--pack-size", "1MiB")
    rng = random.Random(20261121)
    base = bytearray(rng.randbytes(BIG))
    env = mosaic_env()

    # calibrate: one undisturbed put of fresh content
    expected = _write_round(work, 0, base, rng)
    t0 = time.monotonic()
    r = subprocess.run(_put_cmd(cli, 0), cwd=work, env=env, capture_output=True, timeout=120)
    duration = time.monotonic() - t0
    assert r.returncode == 0, r.stderr.decode()
    _check_put_output(r.stdout.decode(), expected)
    assert _pack_files(cli.home) > 40  # 1 MiB packs: many seals per put
    kept = dict(expected)

    kills = rounds = 0
    killed_at: list[float] = []
    while kills < KILLS and rounds < MAX_ROUNDS:
        rounds += 1
        i = rounds
        expected = _write_round(work, i, base, rng)
        delay = rng.uniform(0.05 * duration, 1.0 * duration)
        p = subprocess.Popen(_put_cmd(cli, i), cwd=work, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)
        time.sleep(delay)
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
            kills += 1
            killed_at.append(delay)
        p.wait(timeout=60)
        err = p.stderr.read().decode() if p.stderr else ""
        if p.stderr:
            p.stderr.close()
        assert p.returncode in (0, -signal.SIGKILL), err

        v = cli("verify", "--all")
        assert v.rc == 0, f"round {i}, killed after {delay:.3f}s:\n{v}"

        r = cli("put", "-r", f"r{i}")
        assert r.rc == 0, f"round {i}: re-put failed\n{r}"
        _check_put_output(r.text, expected)
        kept.update(expected)

        # keep verify's work bounded: drop the previous big file, collect garbage
        prev = f"r{i - 1}/big.bin"
        cli.ok("rm", prev)
        kept.pop(prev)
        cli.ok("gc")
        assert list((cli.home / "tmp").iterdir()) == [], "gc removes what a killed put left"
        assert cli.doc("info")["packs"] == _pack_files(cli.home), "a pack file without a record"

    assert kills >= KILLS, f"only {kills} kills landed in {rounds} rounds (put takes {duration:.2f}s)"
    # kills landed across the whole put, not just at start-up
    assert max(killed_at) > 0.6 * duration and min(killed_at) < 0.5 * duration

    # every file still stored comes back byte-identical
    v = cli.doc("verify", "--all")
    assert v["ok"] is True and v["files"] == len(set(kept.values()))
    listed = {e["name"]: e["hash"] for e in cli.doc("ls")}
    assert listed == kept
    for j in range(rounds + 1):
        out = tmp_path / "restored" / f"r{j}"
        cli.ok("get", "-r", f"r{j}/tree", out)
        for f in (work / f"r{j}" / "tree").rglob("*"):
            if f.is_file():
                assert (out / f.relative_to(work / f"r{j}" / "tree")).read_bytes() == f.read_bytes()
    last = f"r{rounds}/big.bin"
    assert cli.ok("cat", last).out == (work / last).read_bytes()
