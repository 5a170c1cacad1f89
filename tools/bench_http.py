#!/usr/bin/env python3
"""Benchmark the HTTP face (`mosaic serve --http`) against the CLI and rclone, same run.

Usage::

    python tools/bench_http.py [--corpus /work/bench-corpus] [--work /tmp/mosaic-bench-http]
        [--runs 3] [--seconds 10] [--tiny 2000] [--json OUT.json]

Three measurements, each against its peer on the same data in the same run:

1. **Large GET**: `big/a.bin` (1 GiB) read over loopback with `curl -o FILE` from
   `GET /v1/names/a.bin`, against `mosaic get a.bin FILE`; MB/s, median of --runs,
   the two taking turns. Every output is compared with the original (`cmp`).
2. **Small GETs**: --tiny files of 4 KiB in a plain folder, served by `rclone serve http`
   (the ceiling: plain files) and by Mosaic (`GET /v1/names/...`), each loaded by the
   same client (4 processes x 4 keep-alive connections = 16 clients, --seconds each);
   requests per second, every body compared with the file's bytes.
3. **Tree upload**: the `small` corpus (Python's stdlib) into a fresh node with its daemon
   running (so both write with replication on), by
   `PUT /v1/names/...` from --upload-clients (32) concurrent connections against `mosaic put -r`;
   MB/s and files/s, every hash compared with the file's BLAKE3.

MB = 10^6 bytes. The machine is shared: figures are good for ratios in one run.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote

import blake3

ENV = {**os.environ, "MOSAIC_PASSPHRASE": ""}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def mosaic(home: Path, *args: str, timeout: float = 3600) -> str:
    r = subprocess.run(["mosaic", "--home", str(home), *args], capture_output=True, text=True,
                       env=ENV, timeout=timeout)
    if r.returncode != 0:
        raise SystemExit(f"mosaic {' '.join(args)} failed: {r.stderr.strip()}")
    return r.stdout


def new_node(work: Path, name: str) -> Path:
    home = work / name
    if home.exists():
        shutil.rmtree(home)
    mosaic(home, "init", "--no-passphrase")
    return home


class Daemon:
    """`mosaic serve --http` on a node, with an admin token."""

    def __init__(self, home: Path):
        self.home = home
        self.port = free_port()
        self.token = mosaic(home, "token", "add", f"bench{self.port}", "--scope", "admin").strip()
        self.log = open(home / "serve.log", "wb")
        self.proc = subprocess.Popen(["mosaic", "--home", str(home), "serve", "--listen",
                                      f"127.0.0.1:{free_port()}", "--http", f"127.0.0.1:{self.port}"],
                                     stdout=self.log, stderr=subprocess.STDOUT, env=ENV)
        deadline = time.monotonic() + 30
        while True:
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                c.request("GET", "/v1/openapi.json")
                if c.getresponse().status == 200:
                    return
            except OSError:
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise SystemExit("the daemon did not start")
            time.sleep(0.2)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(30)
        self.log.close()


def timed(fn) -> float:  # noqa: ANN001
    subprocess.run(["sync"])
    t = time.monotonic()
    fn()
    return time.monotonic() - t


# ---- 1. large GET ----------------------------------------------------------------------------

def bench_large(corpus: Path, work: Path, runs: int) -> dict:
    src = corpus / "big" / "a.bin"
    size = src.stat().st_size
    home = new_node(work, "large")
    mosaic(home, "put", str(src), "--name", "a.bin", "-q")
    d = Daemon(home)
    out = work / "large.out"
    cli, web = [], []
    try:
        for i in range(runs):
            order = [("cli", cli), ("http", web)] if i % 2 == 0 else [("http", web), ("cli", cli)]
            for kind, acc in order:
                out.unlink(missing_ok=True)
                if kind == "cli":
                    s = timed(lambda: mosaic(home, "get", "a.bin", str(out), "-q"))
                else:
                    s = timed(lambda: subprocess.run(
                        ["curl", "-sfS", "-o", str(out), "-H", f"Authorization: Bearer {d.token}",
                         f"http://127.0.0.1:{d.port}/v1/names/a.bin"], check=True))
                subprocess.run(["cmp", str(src), str(out)], check=True)
                acc.append(size / s / 1e6)
    finally:
        d.stop()
        out.unlink(missing_ok=True)
        shutil.rmtree(home)
    c, w = statistics.median(cli), statistics.median(web)
    pairs = [x / y for x, y in zip(web, cli, strict=True)]
    return {"file_bytes": size, "mosaic_get_MBps": [round(x, 1) for x in cli],
            "http_get_MBps": [round(x, 1) for x in web],
            "median_mosaic_get_MBps": round(c, 1), "median_http_get_MBps": round(w, 1),
            "ratio_http_vs_get": round(w / c, 3),
            "median_run_ratio": round(statistics.median(pairs), 3)}


# ---- 2. small GETs -----------------------------------------------------------------------------

def _load_worker(args: tuple) -> tuple[int, int]:
    port, token, paths, expect, seconds, conns, seed = args
    rng = random.Random(seed)
    stop = time.monotonic() + seconds
    headers = {"Authorization": f"Bearer {token}"} if token else {}

    def one(_: int) -> tuple[int, int]:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        n = bad = 0
        while time.monotonic() < stop:
            i = rng.randrange(len(paths))
            c.request("GET", paths[i], headers=headers)
            r = c.getresponse()
            body = r.read()
            n += 1
            if r.status != 200 or blake3.blake3(body).digest() != expect[i]:
                bad += 1
        return n, bad

    with ThreadPoolExecutor(conns) as pool:
        res = list(pool.map(one, range(conns)))
    return sum(x for x, _ in res), sum(y for _, y in res)


def _load(port: int, token: str | None, paths: list[str], expect: list[bytes],
          seconds: float) -> tuple[float, int]:
    procs, conns = 4, 4
    with mp.Pool(procs) as pool:
        res = pool.map(_load_worker, [(port, token, paths, expect, seconds, conns, k)
                                      for k in range(procs)])
    n, bad = sum(x for x, _ in res), sum(y for _, y in res)
    return n / seconds, bad


def bench_small(work: Path, count: int, seconds: float) -> dict:
    folder = work / "tiny"
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    rng = random.Random(4096)
    names, expect = [], []
    for i in range(count):
        data = rng.randbytes(4096)
        name = f"f{i:05}.bin"
        (folder / name).write_bytes(data)
        names.append(name)
        expect.append(blake3.blake3(data).digest())
    home = new_node(work, "small-get")
    mosaic(home, "put", "-r", str(folder), "--name", "tiny", "-q")
    rport = free_port()
    rclone = subprocess.Popen(["rclone", "serve", "http", str(folder), "--addr",
                               f"127.0.0.1:{rport}"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    d = Daemon(home)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", rport), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit("rclone serve http did not start") from None
                time.sleep(0.2)
        r_rate, r_bad = _load(rport, None, [f"/{n}" for n in names], expect, seconds)
        m_rate, m_bad = _load(d.port, d.token, [f"/v1/names/tiny/{n}" for n in names], expect,
                              seconds)
    finally:
        rclone.send_signal(signal.SIGTERM)
        rclone.wait(10)
        d.stop()
        shutil.rmtree(home)
        shutil.rmtree(folder)
    if r_bad or m_bad:
        raise SystemExit(f"bad responses: rclone {r_bad}, mosaic {m_bad}")
    return {"files": count, "clients": 16, "seconds": seconds,
            "rclone_serve_http_rps": round(r_rate, 1), "mosaic_http_rps": round(m_rate, 1),
            "ratio_mosaic_vs_rclone": round(m_rate / r_rate, 3)}


# ---- 3. tree upload ------------------------------------------------------------------------------

def bench_tree(corpus: Path, work: Path, clients: int) -> dict:
    tree = corpus / "small"
    files = sorted(p for p in tree.rglob("*") if p.is_file() and not p.is_symlink())
    total = sum(p.stat().st_size for p in files)
    home = new_node(work, "tree-cli")
    d = Daemon(home)  # the same node state as for HTTP: a daemon runs (replication on)
    try:
        cli_s = timed(lambda: mosaic(home, "put", "-r", str(tree), "--name", "t", "-q"))
    finally:
        d.stop()
    shutil.rmtree(home)
    home = new_node(work, "tree-http")
    d = Daemon(home)
    bad = []

    def put(chunk: list[Path]) -> None:
        c = http.client.HTTPConnection("127.0.0.1", d.port, timeout=120)
        for p in chunk:
            data = p.read_bytes()
            rel = quote(str(p.relative_to(tree)))
            c.request("PUT", f"/v1/names/t/{rel}", body=data,
                      headers={"Authorization": f"Bearer {d.token}"})
            r = c.getresponse()
            doc = json.loads(r.read())
            if r.status not in (200, 201) or doc["hash"] != blake3.blake3(data).hexdigest():
                bad.append(str(p))

    try:
        parts = [files[i::clients] for i in range(clients)]
        http_s = timed(lambda: list(ThreadPoolExecutor(clients).map(put, parts)))
    finally:
        d.stop()
        shutil.rmtree(home)
    if bad:
        raise SystemExit(f"{len(bad)} uploads went wrong, e.g. {bad[:3]}")
    return {"files": len(files), "bytes": total, "clients": clients,
            "mosaic_put_r_s": round(cli_s, 2), "http_put_s": round(http_s, 2),
            "mosaic_put_r_MBps": round(total / cli_s / 1e6, 1),
            "http_put_MBps": round(total / http_s / 1e6, 1),
            "http_files_per_s": round(len(files) / http_s, 1),
            "ratio_http_vs_put_r": round(cli_s / http_s, 3)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpus", type=Path, default=Path("/work/bench-corpus"))
    ap.add_argument("--work", type=Path, default=Path("/tmp/mosaic-bench-http"))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--tiny", type=int, default=2000)
    ap.add_argument("--upload-clients", type=int, default=32)
    ap.add_argument("--only", default="large,small,tree")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    if shutil.which("mosaic") is None or shutil.which("rclone") is None or shutil.which("curl") is None:
        print("bench_http: needs mosaic, rclone and curl on PATH", file=sys.stderr)
        return 2
    args.work.mkdir(parents=True, exist_ok=True)
    out: dict = {}
    only = set(args.only.split(","))
    if "large" in only:
        out["large_get"] = bench_large(args.corpus, args.work, args.runs)
        print(json.dumps({"large_get": out["large_get"]}), flush=True)
    if "small" in only:
        out["small_get"] = bench_small(args.work, args.tiny, args.seconds)
        print(json.dumps({"small_get": out["small_get"]}), flush=True)
    if "tree" in only:
        out["tree_upload"] = bench_tree(args.corpus, args.work, args.upload_clients)
        print(json.dumps({"tree_upload": out["tree_upload"]}), flush=True)
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
