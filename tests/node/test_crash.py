"""Crash safety: `mosaic put` killed with SIGKILL at random moments never damages the node.

One home, many rounds. Each round stores fresh content (a 16 MiB file whose every
chunk differs from the last round's, plus a tree of small files) with 256 KiB packs,
so the put is busy cutting, encrypting, sealing packs and committing when it is
killed. Each kill is aimed by progress, not by the clock: once the put has sealed a
random number of packs (seeded), plus a random part of one pack's time. After each kill: `verify --all` passes, the same put run again succeeds
and prints the right hashes. The previous round's big file is then removed and
`gc` run (which also sweeps what the killed put left), keeping verify's work
bounded. At the end every stored file comes back byte-identical.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import blake3
import pytest

from mosaic.node.cloud.gc import GRACE_S
from tests.conftest import Cli, mosaic_env

pytestmark = pytest.mark.slow  # long end-to-end: `just test-fast` leaves it out

KILLS = 10
MAX_ROUNDS = 20
BIG = 16 << 20
PACK_SIZE = "256KiB"  # 64 packs a round: many seals and commits to land a kill between


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
    n = 0
    with os.scandir(home / "packs") as subs:
        for sub in subs:
            if sub.is_dir():
                with os.scandir(sub.path) as files:
                    n += sum(1 for f in files if f.is_file())
    return n


def test_sigkill_during_put(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    cli = Cli(tmp_path / "home", cwd=work)
    cli.ok("init", "--no-passphrase", "--pack-size", PACK_SIZE)
    rng = random.Random(20261121)
    base = bytearray(rng.randbytes(BIG))
    env = mosaic_env()

    # calibrate: one undisturbed put of fresh content: how many packs, how long each takes
    expected = _write_round(work, 0, base, rng)
    t0 = time.monotonic()
    r = subprocess.run(_put_cmd(cli, 0), cwd=work, env=env, capture_output=True, timeout=120)
    duration = time.monotonic() - t0
    assert r.returncode == 0, r.stderr.decode()
    _check_put_output(r.stdout.decode(), expected)
    full = _pack_files(cli.home)  # the packs of one round
    assert full > 40  # 256 KiB packs: many seals per put
    step = duration / full  # about one pack's time (start-up included: an upper bound)
    kept = dict(expected)

    kills = rounds = 0
    killed_at: list[float] = []  # the part of a round's packs sealed when each kill landed
    while kills < KILLS and rounds < MAX_ROUNDS:
        rounds += 1
        i = rounds
        expected = _write_round(work, i, base, rng)
        # a random moment of the put: once it has sealed k packs, plus part of one pack's time
        k = rng.randrange(full)
        delay = rng.uniform(0.0, step)
        before = _pack_files(cli.home)
        p = subprocess.Popen(_put_cmd(cli, i), cwd=work, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while p.poll() is None and _pack_files(cli.home) - before < k:
            assert time.monotonic() < deadline, f"round {i}: the put sealed fewer than {k} packs in 60 s"
            time.sleep(0.005)
        time.sleep(delay)
        if p.poll() is None:
            sealed = _pack_files(cli.home) - before
            p.send_signal(signal.SIGKILL)
            kills += 1
            killed_at.append(sealed / full)
        p.wait(timeout=60)
        err = p.stderr.read().decode() if p.stderr else ""
        if p.stderr:
            p.stderr.close()
        assert p.returncode in (0, -signal.SIGKILL), err

        v = cli("verify", "--all")
        assert v.rc == 0, f"round {i}, killed after {k} packs + {delay:.3f}s:\n{v}"

        r = cli("put", "-r", f"r{i}")
        assert r.rc == 0, f"round {i}: re-put failed\n{r}"
        _check_put_output(r.text, expected)
        kept.update(expected)

        # keep verify's work bounded: drop the previous big file, collect garbage
        prev = f"r{i - 1}/big.bin"
        cli.ok("rm", prev)
        kept.pop(prev)
        # what a killed put left is swept once older than gc's grace period (a younger
        # temp file may belong to a live writer); age it as time would
        old = time.time() - GRACE_S - 60
        for f in [*(cli.home / "tmp").iterdir(), *(cli.home / "packs").rglob("*")]:
            if f.is_file():
                os.utime(f, (old, old))
        cli.ok("gc")
        assert list((cli.home / "tmp").iterdir()) == [], "gc removes what a killed put left"
        assert cli.doc("info")["packs"] == _pack_files(cli.home), "a pack file without a record"

    assert kills >= KILLS, f"only {kills} kills landed in {rounds} rounds"
    # kills landed across the whole put, not just at start-up
    assert max(killed_at) > 0.6 and min(killed_at) < 0.5, killed_at

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
