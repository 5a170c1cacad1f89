"""64 concurrent clients mixing range reads, listings and small uploads against a real
`mosaic serve --http`: no error, every byte checked, the daemon's memory under 300 MB.

The run lasts MOSAIC_LOAD_SECONDS seconds: 10 in the suite; the acceptance run is
`MOSAIC_LOAD_SECONDS=60 python -m pytest -s tests/http/test_load.py` (its figures are printed).
"""

from __future__ import annotations

import os
import random
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import blake3
import httpx
import pytest
import trio

from .conftest import Server

CLIENTS = 64
MEMORY_MB = 300


@dataclass
class Tally:
    reads: int = 0
    lists: int = 0
    puts: int = 0
    read_bytes: int = 0
    errors: list[str] = field(default_factory=list)


async def _client(i: int, server: Server, big: bytes, big_hash: str, listed: int,
                  stop_at: float, tally: Tally) -> None:
    rng = random.Random(i)
    mine: list[tuple[str, bytes]] = []
    headers = {"Authorization": f"Bearer {server.tokens['writer']}"}
    async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=60) as c:
        while trio.current_time() < stop_at:
            op = rng.random()
            try:
                if op < 0.5:
                    a = rng.randrange(len(big))
                    b = min(len(big) - 1, a + rng.randrange(1, 256 << 10))
                    r = await c.get(f"/v1/files/{big_hash}", headers={"Range": f"bytes={a}-{b}"})
                    if r.status_code != 206 or r.content != big[a:b + 1]:
                        tally.errors.append(f"range {a}-{b}: {r.status_code}")
                    tally.reads += 1
                    tally.read_bytes += len(r.content)
                elif op < 0.75:
                    r = await c.get("/v1/tree/load/shared", params={"limit": 100})
                    doc = r.json()
                    if r.status_code != 200 or len(doc["entries"]) != min(100, listed):
                        tally.errors.append(f"list: {r.status_code}")
                    tally.lists += 1
                else:
                    data = rng.randbytes(rng.randrange(4 << 10, 32 << 10))
                    name = f"load/c{i}/f{len(mine)}.bin"
                    r = await c.put(f"/v1/names/{name}", content=data)
                    if r.status_code != 201 or r.json()["hash"] != blake3.blake3(data).hexdigest():
                        tally.errors.append(f"put {name}: {r.status_code} {r.text[:200]}")
                    mine.append((name, data))
                    back_name, back = rng.choice(mine)
                    r = await c.get(f"/v1/names/{back_name}")
                    if r.status_code != 200 or r.content != back:
                        tally.errors.append(f"read back {back_name}: {r.status_code}")
                    tally.puts += 1
            except httpx.HTTPError as e:
                tally.errors.append(f"{type(e).__name__}: {e}")


def _run(server: Server, seconds: float) -> Tally:
    big = random.Random(64).randbytes(16 << 20)
    with server.client("writer") as c:
        big_hash = c.put("/v1/names/load/big.bin", content=big).json()["hash"]
        listed = 150
        with ThreadPoolExecutor(8) as pool:
            codes = pool.map(lambda k: c.put(f"/v1/names/load/shared/s{k:03}.txt",
                                             content=f"shared {k}".encode()).status_code,
                             range(listed))
            assert set(codes) == {201}
    tally = Tally()

    async def main() -> None:
        stop_at = trio.current_time() + seconds
        with trio.fail_after(seconds + 120):
            async with trio.open_nursery() as n:
                for i in range(CLIENTS):
                    n.start_soon(_client, i, server, big, big_hash, listed, stop_at, tally)

    trio.run(main)
    return tally


def _check(server: Server, tally: Tally) -> None:
    assert not tally.errors, tally.errors[:20]
    assert tally.reads and tally.lists and tally.puts
    peak = server.rss_peak_mb()
    assert peak < MEMORY_MB, f"daemon peak memory {peak:.0f} MB"
    assert "Traceback" not in server.log.read_text()


@pytest.mark.slow
def test_64_clients_mixed_load(server: Server) -> None:
    seconds = float(os.environ.get("MOSAIC_LOAD_SECONDS", "10"))
    tally = _run(server, seconds)
    _check(server, tally)
    print(f"\n{seconds:.0f} s: {tally.reads} range reads ({tally.read_bytes >> 20} MiB), "
          f"{tally.lists} listings, {tally.puts} uploads; daemon peak {server.rss_peak_mb():.0f} MB")
