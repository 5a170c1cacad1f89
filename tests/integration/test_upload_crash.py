"""`mosaic put` SIGKILLed while it uploads: the durable queue loses nothing.

One moto S3 server and one dir backend, copies 2, 1 MiB packs, a wide file per put
and uploads one at a time (`--parallel 1`), so the upload phase of a put lasts a
while (with two dir backends it is over in ~0.15 s, too short to aim at). One undisturbed
put calibrates how many packs a round has and how long each upload takes; then each
round puts fresh content and kills the process at a random moment (seeded) inside
its upload phase: after a random number of packs has landed on the dir backend,
plus a random fraction of one pack's upload time. After every kill:
a plain `mosaic upload` drains the queue (`status` shows nothing pending), every put
that had printed its hash is still gettable, and `verify --all --backends` passes.
Every few rounds the killed puts' files are removed and `gc` run, which keeps
each round's verify bounded. At the end the backends hold exactly the node's packs, and with the
local cache emptied every acknowledged file comes back from them.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest

from .conftest import Deadline, Node, S3Server, b3, mosaic_argv, mosaic_env

pytestmark = pytest.mark.slow  # long end-to-end: `just test-fast` leaves it out

SEED = 20240611
WIDE = 10 << 20  # ~10 packs of 1 MiB a round: enough to land kills between uploads
MID_UPLOAD_KILLS = 6
MAX_ROUNDS = 10
CLEAN_EVERY = 3  # rounds between removing unacknowledged puts + gc


def _dir_objects(root: Path) -> int:
    """Pack objects stored in a dir backend (final names only, not temp files)."""
    n = 0
    d = root / "packs"
    if d.exists():
        for sub in os.scandir(d):
            if sub.is_dir():
                n += sum(1 for e in os.scandir(sub.path) if len(e.name) == 64)
    return n


def _pack_sets(root: Path, srv: S3Server) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for p in (root / "packs").rglob("*"):
        if p.is_file() and len(p.name) == 64:
            out.setdefault(p.name, set()).add("dir")
    for pid in srv.pack_ids():
        out.setdefault(pid, set()).add("s3")
    return out


def _write_round(work: Path, i: int, rng: random.Random) -> dict[str, bytes]:
    """Round i's files under work/r{i}: a wide random file and a few small ones."""
    files = {f"r{i}/wide.bin": rng.randbytes(WIDE)}
    for j in range(3):
        files[f"r{i}/small-{j}.txt"] = (f"round {i} small file {j}\n" * rng.randint(1, 400)).encode()
    for rel, data in files.items():
        (work / rel).parent.mkdir(parents=True, exist_ok=True)
        (work / rel).write_bytes(data)
    return files


def _spawn_put(node: Node, i: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(mosaic_argv(node.home, "put", "-r", f"r{i}", "--parallel", "1"),
                            cwd=node.cwd, env=mosaic_env(), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_kill_put_during_uploads(node: Node, s3_servers, tmp_path: Path) -> None:  # noqa: ANN001
    rng = random.Random(SEED)
    assert node.cwd is not None
    work = Path(node.cwd)
    srv: S3Server = s3_servers("mosaic-crash")
    root = tmp_path / "backend-dir"
    node.init_node("--pack-size", "1MiB")
    node.add_dir("dir", root)
    assert node.add_s3("s3", srv).rc == 0

    def objects() -> int:
        return _dir_objects(root) + len(srv.pack_ids())
    acked: dict[str, bytes] = {}

    # ---- calibration: one undisturbed put: how many packs, how long their uploads take
    files = _write_round(work, 0, rng)
    t0 = time.monotonic()
    p = _spawn_put(node, 0)
    first = None
    d = Deadline(120, "calibration put")
    while p.poll() is None:
        d.check()
        if first is None and _dir_objects(root) > 0:
            first = time.monotonic() - t0
        time.sleep(0.003)
    end = time.monotonic() - t0
    out, err = p.communicate(timeout=10)
    assert p.returncode == 0, err.decode()
    assert first is not None, "no upload seen during the calibration put"
    got = put_hashes_bytes(out)
    assert got == {n: b3(v) for n, v in files.items()}
    acked.update(files)
    per_round = _dir_objects(root)  # packs of one round (one copy of each on the dir backend)
    step = (end - first) / per_round
    print(f"calibration: {per_round} packs, uploads from {first:.2f} s to {end:.2f} s")
    assert per_round >= 8, per_round

    mid = 0
    rounds = []
    for i in range(1, MAX_ROUNDS + 1):
        if mid >= MID_UPLOAD_KILLS:
            break
        files = _write_round(work, i, rng)
        before = objects()
        dir_before = _dir_objects(root)
        # a random moment inside the upload phase: once the k-th pack has landed on
        # the dir backend, plus a random part of one pack's upload time
        k = rng.randint(1, per_round - 1)
        delay = rng.uniform(0.0, step)
        p = _spawn_put(node, i)
        try:
            d = Deadline(60, f"round {i}: {k} uploads")
            while p.poll() is None and _dir_objects(root) - dir_before < k:
                d.check()
                time.sleep(0.002)
            time.sleep(delay)
            p.send_signal(signal.SIGKILL)
            out, err = p.communicate(timeout=30)
            at_kill = objects() - before
        finally:
            if p.poll() is None:
                p.kill()
                p.wait(10)
        printed = put_hashes_bytes(out)
        for name, h in printed.items():  # the put finished before the kill: acknowledged
            assert name in files and h == b3(files[name]), (name, h)
            acked[name] = files[name]

        # a plain `upload` drains whatever the killed put left queued
        doc = node.doc("upload", timeout=120)
        assert doc["errors"] == [], doc  # type: ignore[index]
        uploaded = doc["uploaded"]  # type: ignore[index]
        assert node.pending_uploads() == 0, node.doc("status")
        if at_kill > 0 and uploaded > 0:
            mid += 1
        rounds.append((k, round(delay, 3), p.returncode, at_kill, uploaded, bool(printed)))

        # every acknowledged put is still gettable (the final check below gets them
        # again from the backends alone)
        for prefix in sorted({n.split("/", 1)[0] for n in acked}):
            dest = tmp_path / "got" / f"{i}-{prefix}"
            node.ok("get", "-r", prefix, dest, timeout=60)
            for name, data in acked.items():
                if name.startswith(prefix + "/"):
                    got_path = dest / name.split("/", 1)[1]
                    assert got_path.is_file() and got_path.read_bytes() == data, (
                        f"acknowledged {name} lost or changed after round {i}")
        r = node("verify", "--all", "--backends", json=True, timeout=120)
        assert r.rc == 0, f"round {i} (killed {delay:.3f} s after pack {k} landed): {r}"

        if i % CLEAN_EVERY == 0:  # forget unacknowledged puts: keeps verify's work bounded
            names = [e["name"] for e in node.doc("ls", timeout=30)  # type: ignore[union-attr]
                     if e["name"] not in acked]
            if names:
                node.ok("rm", *names, timeout=60)
            node.ok("gc", timeout=60)
    print("rounds (after k-th pack, + s, rc, objects at kill, uploaded after, acknowledged):", rounds)
    assert mid >= MID_UPLOAD_KILLS, (
        f"only {mid} of {len(rounds)} kills landed during uploads: {rounds}")

    # the backends hold exactly the node's packs, twice each
    locations = node.pack_locations()
    stored = _pack_sets(root, srv)
    assert stored == locations, (
        f"orphans on the backends: {sorted(set(stored) - set(locations))[:3]}; "
        f"missing: {sorted(set(locations) - set(stored))[:3]}")
    assert all(len(b) == 2 for b in stored.values())
    # and every acknowledged file comes back from the backends alone
    node.ok("cache", "trim", "--to", "0", timeout=60)
    for name, data in acked.items():
        assert node.ok("get", name, "-", timeout=60).out == data


def put_hashes_bytes(out: bytes) -> dict[str, str]:
    """name -> hash from a put's stdout (empty if it printed nothing)."""
    out_ = {}
    for line in out.decode("utf-8", "replace").splitlines(keepends=True):
        h, sep, name = line.partition("  ")
        if sep and len(h) == 64 and name.endswith("\n"):  # complete lines only
            out_[name.rstrip("\n")] = h
    return out_

