#!/usr/bin/env python3
"""S3 put benchmark: Mosaic and restic store the same corpus on a loopback S3 server.

Usage: ``python tools/s3_bench.py [--corpus DIR] [--runs N] [--work DIR] [--json OUT]``

moto's real S3 server (``python -m moto.server``) runs as a subprocess on a free port, with
a fresh bucket per tool and run; both tools reach it through a counting HTTP proxy. Timed,
with cwd = the corpus root: ``mosaic --home H put -r small`` (it returns once every pack is
on the backend) and ``restic -r s3:... backup small``. Reported per tool: wall s, MB/s
(input bytes / 10^6 / s), requests by kind (PUT, GET, HEAD, LIST = GET with ``list-type``
or a bare bucket GET, DELETE, POST) and by status and key prefix, bytes up/down (HTTP heads
included), when the first PUT began, stored bytes (object sizes listed straight from moto)
and stored bytes per PUT of the timed command (target >= 4 MiB: one PUT per 4 MiB stored).

Why our own proxy and not moto's bookkeeping: moto's request recording
(``MOTO_ENABLE_RECORDING``) appends every request body, base64-encoded, to a file (more
server CPU and I/O than the upload itself) and records no responses; werkzeug's access log
has no byte counts. The proxy relays both directions verbatim (a
thread each way per connection, so ``Expect: 100-continue`` works as without it), parses
only HTTP framing and counts every byte. Its CPU cost is the same for both tools and is
recorded, with the tool's and the server's CPU seconds.

Before each timed command we wait up to 60 s for busy CPU < 0.3 cores and record that load,
and the other processes' load during the run (busy time minus tool, server and proxy CPU).
The corpus is read first, so both tools read from the page cache. The server is stopped on
exit, Ctrl-C and SIGTERM included.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import queue
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import boto3
import botocore
import moto

HOST = "127.0.0.1"
CORPUS = "small"
MB, MIB = 1e6, 1 << 20
TARGET_BYTES_PER_PUT = 4 * MIB
QUIET_CORES, QUIET_MAX_WAIT_S = 0.3, 60.0
CMD_TIMEOUT_S = 3600.0
ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
       "AWS_DEFAULT_REGION": "us-east-1", "RESTIC_PASSWORD": "x", "LC_ALL": "C"}
KINDS = ("PUT", "GET", "HEAD", "LIST", "DELETE", "POST")
CLK_TCK = os.sysconf("SC_CLK_TCK")
REPO = Path(__file__).resolve().parents[1]
Pending = queue.SimpleQueue  # per connection: (phase, method, kind, key shape) per request


def log(msg: str) -> None:
    """Progress output on stderr."""
    print(msg, file=sys.stderr, flush=True)


@dataclass
class PhaseStats:
    """Requests and bytes the proxy saw during one phase."""

    kinds: Counter[str] = field(default_factory=Counter)
    detail: Counter[str] = field(default_factory=Counter)  # "KIND status key-shape"
    up: int = 0
    down: int = 0
    connections: int = 0
    first_put: float | None = None  # time.monotonic() when the first PUT head arrived


def key_shape(target: str) -> str:
    """The key's first path component with hex runs masked; "bucket" for no key."""
    parts = target.split("?", 1)[0].lstrip("/").split("/", 2)
    if len(parts) < 2 or not parts[1]:
        return "bucket"
    return re.sub(r"[0-9a-fA-F]{8,}", "*", parts[1]) + ("/" if len(parts) > 2 else "")


def request_kind(method: str, target: str) -> str:
    """PUT/GET/HEAD/DELETE/POST, or LIST for a listing GET on the bucket."""
    query = target.partition("?")[2]
    bare = key_shape(target) == "bucket" and not re.search(r"location|versioning|acl|upload", query)
    return "LIST" if method == "GET" and ("list-type" in query or bare) else method


def read_head(rfile: BinaryIO) -> tuple[bytes, list[str], dict[str, str]] | None:
    """One HTTP message head: (raw bytes, start-line words, lower-cased headers)."""
    raw = [rfile.readline(65536)]
    while raw[0] in (b"\r\n", b"\n"):
        raw[0] = rfile.readline(65536)
    headers: dict[str, str] = {}
    while raw[-1] and raw[-1] not in (b"\r\n", b"\n"):
        raw.append(rfile.readline(65536))
        name, _, value = raw[-1].decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    if not raw[-1]:
        return None  # EOF
    return b"".join(raw), raw[0].decode("latin-1").split(), headers


def copy_exact(rfile: BinaryIO, dst: socket.socket, n: int) -> int:
    """Relay n bytes (fewer at EOF); return the count."""
    done = 0
    while done < n and (buf := rfile.read(min(n - done, 1 << 16))):
        dst.sendall(buf)
        done += len(buf)
    return done


def copy_body(rfile: BinaryIO, dst: socket.socket, headers: dict[str, str], to_eof: bool) -> int:
    """Relay one message body (chunked, Content-Length or up to EOF); return its bytes."""
    if "chunked" not in headers.get("transfer-encoding", "").lower():
        if "content-length" in headers:
            return copy_exact(rfile, dst, int(headers["content-length"]))
        return copy_exact(rfile, dst, 1 << 62) if to_eof else 0
    total, size = 0, -1
    while size != 0:
        line = rfile.readline(65536)
        dst.sendall(line)
        size = int(line.split(b";")[0].strip() or b"0", 16)
        total += len(line) + (copy_exact(rfile, dst, size + 2) if size else 0)
    while line not in (b"\r\n", b"\n", b""):  # trailers up to the blank line
        line = rfile.readline(65536)
        dst.sendall(line)
        total += len(line)
    return total


class CountingProxy:
    """Threaded HTTP/1.1 relay on 127.0.0.1 that counts requests and bytes per phase."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.server = socket.create_server((HOST, 0))
        self.port = self.server.getsockname()[1]
        self.phase = "idle"
        self.stats: dict[str, PhaseStats] = {}
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _count(self, phase: str) -> PhaseStats:
        return self.stats.setdefault(phase, PhaseStats())  # caller holds self.lock

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        with self.lock:
            self._count(self.phase).connections += 1
        pending: Pending = Pending()
        with client, socket.create_connection((HOST, self.upstream_port)) as up:
            back = threading.Thread(target=self._responses, args=(up, client, pending),
                                    daemon=True)
            back.start()
            try:
                self._requests(client.makefile("rb"), up, pending)
            except (OSError, ValueError):
                pass
            with contextlib.suppress(OSError):
                up.shutdown(socket.SHUT_WR)
            back.join()

    def _requests(self, rfile: BinaryIO, up: socket.socket, pending: Pending) -> None:
        while (head := read_head(rfile)) is not None:
            raw, words, headers = head
            method, target = words[0].upper(), (words + ["/"])[1]
            with self.lock:
                phase, st = self.phase, self._count(self.phase)
                if method == "PUT" and st.first_put is None:
                    st.first_put = time.monotonic()
            pending.put((phase, method, request_kind(method, target), key_shape(target)))
            up.sendall(raw)
            n = len(raw) + copy_body(rfile, up, headers, to_eof=False)
            with self.lock:
                self._count(phase).up += n

    def _responses(self, up: socket.socket, client: socket.socket, pending: Pending) -> None:
        rfile = up.makefile("rb")
        try:
            while (head := read_head(rfile)) is not None:
                raw, words, headers = head
                status = (words + ["?", "?"])[1]
                client.sendall(raw)
                if status.startswith("1"):  # 100 Continue: the final answer follows
                    continue
                phase, method, kind, shape = pending.get(timeout=30)
                bodyless = method == "HEAD" or status in ("204", "304")
                n = len(raw) + (0 if bodyless else copy_body(rfile, client, headers, True))
                with self.lock:
                    st = self._count(phase)
                    st.kinds[kind] += 1
                    st.detail[f"{kind} {status} {shape}"] += 1
                    st.down += n
        except (OSError, ValueError, queue.Empty):
            pass
        with contextlib.suppress(OSError):
            client.shutdown(socket.SHUT_RDWR)


def start_moto(work: Path) -> tuple[subprocess.Popen[bytes], int]:
    """moto's S3 server on a free port, once it answers HTTP (at most 30 s)."""
    with socket.create_server((HOST, 0)) as s:
        port = s.getsockname()[1]
    with open(work / "moto.log", "wb") as logf:
        proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(port)],
                                stdout=logf, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(f"http://{HOST}:{port}/", timeout=2):
                return proc, port
        except OSError:
            time.sleep(0.2)
    stop(proc)
    raise RuntimeError(f"moto server did not answer within 30 s (see {work}/moto.log)")


def stop(proc: subprocess.Popen[bytes] | None) -> None:
    """SIGTERM, then SIGKILL after 5 s, for one process we started."""
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()


def cpu_seconds(pid: int | None = None) -> float:
    """Busy CPU seconds: system-wide (idle and iowait excluded), or one process's."""
    if pid is None:
        f = [int(x) for x in Path("/proc/stat").read_text().split()[1:9]]
        return (sum(f) - f[3] - f[4]) / CLK_TCK
    f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / CLK_TCK


def wait_quiet() -> dict[str, float]:
    """Wait until busy CPU < QUIET_CORES over 2 s (at most QUIET_MAX_WAIT_S); report it."""
    t0 = time.monotonic()
    while True:
        b0 = cpu_seconds()
        time.sleep(2.0)
        load, waited = (cpu_seconds() - b0) / 2.0, time.monotonic() - t0
        if load < QUIET_CORES or waited >= QUIET_MAX_WAIT_S:
            if load >= QUIET_CORES:
                log(f"  machine still busy after {waited:.0f} s ({load:.2f} cores); going on")
            return {"waited_s": round(waited, 1), "load_cores": round(load, 3)}


def warm(root: Path) -> tuple[int, int]:
    """Read every regular file once (page cache); return (files, bytes)."""
    files = [p for p in root.rglob("*") if p.is_file() and not p.is_symlink()]
    size = 0
    for p in files:
        with open(p, "rb", buffering=0) as fh:
            while chunk := fh.read(MIB):
                size += len(chunk)
    return len(files), size


def first_line(cmd: list[str]) -> str:
    """First output line of a command, or "unavailable"."""
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return "unavailable"
    return ((p.stdout or p.stderr).strip().splitlines() or ["unavailable"])[0]


def machine_info() -> dict[str, str]:
    """Date, machine and tool versions for the report header."""
    cpu = re.search(r"model name\s*:\s*(.*)", Path("/proc/cpuinfo").read_text())
    mem = re.search(r"MemTotal:\s*(\d+)", Path("/proc/meminfo").read_text())
    rev = first_line(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"])
    dirty = first_line(["git", "-C", str(REPO), "status", "--porcelain"]) != "unavailable"
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{cpu.group(1) if cpu else platform.processor()}, {os.cpu_count()} CPUs, "
                   f"{int(mem.group(1) if mem else 0) / 2**20:.1f} GiB RAM, "
                   f"Linux {platform.release()}",
        "mosaic": f"checkout {rev}{' + uncommitted changes' if dirty else ''}",
        "restic": first_line(["restic", "version"]),
        "S3 server": f"moto {moto.__version__} (python -m moto.server); boto3 "
                     f"{boto3.__version__} / botocore {botocore.__version__}; "
                     f"Python {platform.python_version()}",
    }


def run(cmd: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run a command; raise with its output's tail if it fails."""
    p = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True,
                       timeout=CMD_TIMEOUT_S)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} -> rc {p.returncode}\n{(p.stdout + p.stderr)[-3000:]}")
    return p


def timed(cmd: list[str], cwd: Path, env: dict[str, str], server_pid: int) -> dict[str, Any]:
    """Run a command, timing it and splitting the machine's CPU time."""
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    b0, s0, own0, t0 = cpu_seconds(), cpu_seconds(server_pid), time.process_time(), time.monotonic()
    p = run(cmd, cwd, env)
    wall = time.monotonic() - t0
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    tool = ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime
    server, own = cpu_seconds(server_pid) - s0, time.process_time() - own0
    other = max(0.0, cpu_seconds() - b0 - tool - server - own) / wall
    return {"wall_s": wall, "tool_cpu_s": tool, "server_cpu_s": server, "proxy_cpu_s": own,
            "other_cores": other, "output_lines": len(p.stdout.splitlines()),
            "output_tail": p.stdout[-400:]}


def tool_commands(tool: str, home: Path, endpoint: str,
                  bucket: str) -> tuple[list[list[str]], list[str]]:
    """(untimed setup commands, timed command) for one tool, folder and bucket."""
    if tool == "mosaic":
        cli = ["mosaic", "--home", str(home / "home")]
        return ([[*cli, "init", "--no-passphrase"],
                 [*cli, "backend", "add", "s3", "s3bench", "--bucket", bucket,
                  "--endpoint", endpoint, "--region", "us-east-1"]],
                [*cli, "put", "-r", CORPUS])
    cli = ["restic", "-r", f"s3:{endpoint}/{bucket}", "--cache-dir", str(home / "cache")]
    return [[*cli, "init"]], [*cli, "backup", CORPUS]


def measure(tool: str, run_no: int, args: argparse.Namespace, proxy: CountingProxy,
            server: tuple[int, int], input_bytes: int) -> dict[str, Any]:
    """One run of one tool: fresh bucket and repository, setup, timed command, counts."""
    port, pid = server
    s3 = boto3.client("s3", endpoint_url=f"http://{HOST}:{port}", region_name="us-east-1",
                      aws_access_key_id="testing", aws_secret_access_key="testing")
    bucket, home = f"{tool}-run{run_no}", args.work / f"run{run_no}" / tool
    home.mkdir(parents=True)
    s3.create_bucket(Bucket=bucket)
    env = {k: v for k, v in os.environ.items() if k != "MOSAIC_PASSPHRASE"} | ENV
    setup, cmd = tool_commands(tool, home, f"http://{HOST}:{proxy.port}", bucket)
    proxy.phase = f"{tool}-setup"
    for c in setup:
        run(c, args.corpus, env)
    quiet = wait_quiet()
    proxy.phase = phase = f"{tool}-{run_no}"
    log(f"  {tool} run {run_no}: {' '.join(cmd)}")
    t0 = time.monotonic()
    t = timed(cmd, args.corpus, env, pid)
    proxy.phase = "idle"
    time.sleep(0.5)  # the relay threads finish their accounting
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    sizes = [int(o["Size"]) for page in pages for o in page.get("Contents", ())]
    with proxy.lock:
        st, setup_st = (proxy.stats.pop(p, PhaseStats()) for p in (phase, f"{tool}-setup"))
    puts, stored = st.kinds["PUT"], sum(sizes)
    return {"tool": tool, "run": run_no, "cmd": cmd, "setup_cmds": setup, "quiet": quiet, **t,
            "mb_s": input_bytes / MB / t["wall_s"], "objects": len(sizes), "stored_bytes": stored,
            "object_min_max": [min(sizes, default=0), max(sizes, default=0)],
            "bytes_per_put": stored / puts if puts else 0.0, "requests": dict(st.kinds),
            "detail": dict(st.detail.most_common()), "bytes_up": st.up, "bytes_down": st.down,
            "connections": st.connections,
            "first_put_s": None if st.first_put is None else st.first_put - t0,
            "setup_requests": dict(setup_st.kinds), "setup_detail": dict(setup_st.detail)}


def summarize(results: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per tool: its median run by wall time (the lower one for an even count)."""
    out: dict[str, dict[str, Any]] = {}
    for tool in dict.fromkeys(r["tool"] for r in results):
        runs = sorted((r for r in results if r["tool"] == tool), key=lambda r: r["wall_s"])
        out[tool] = {**runs[(len(runs) - 1) // 2], "runs": len(runs)}
    return out


def row(tool: str, r: dict[str, Any]) -> str:
    """One markdown table row."""
    first = "-" if r["first_put_s"] is None else f"{r['first_put_s']:.1f}"
    cells = [tool, r["runs"], f"{r['wall_s']:.2f}", f"{r['mb_s']:.1f}",
             *(r["requests"].get(k, 0) for k in KINDS), first, f"{r['stored_bytes'] / MB:.1f}",
             r["objects"], f"{r['bytes_per_put'] / MIB:.2f}",
             "yes" if r["bytes_per_put"] >= TARGET_BYTES_PER_PUT else "**no**",
             f"{r['bytes_up'] / MB:.1f} / {r['bytes_down'] / MB:.2f}", r["connections"],
             f"{r['tool_cpu_s']:.1f} / {r['server_cpu_s']:.1f} / {r['proxy_cpu_s']:.1f}",
             f"{r['quiet']['load_cores']:.2f} / {r['other_cores']:.2f}"]
    return "| " + " | ".join(map(str, cells)) + " |"


def report(info: dict[str, str], summary: dict[str, dict[str, Any]], corpus: str) -> str:
    """The markdown report: header facts, one row per tool, request details."""
    lines = [f"## S3 put: `{corpus}` to moto on loopback", ""]
    lines += [f"- **{k}**: {v}" for k, v in info.items()] + [""]
    cols = ["tool", "runs", "wall s", "MB/s", *KINDS, "1st PUT at s", "stored MB", "objects",
            "stored MiB/PUT", ">= 4 MiB/PUT", "MB up / down", "conns",
            "CPU s tool / S3 / proxy", "other load before / during (cores)"]
    lines += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += [row(t, r) for t, r in summary.items()]
    for tool, r in summary.items():
        timed_, setup = (", ".join(f"{k} ×{n}" for k, n in r[d].items())
                         for d in ("detail", "setup_detail"))
        lines += ["", f"- {tool} timed requests (kind status key): {timed_}",
                  f"- {tool} setup requests: {setup}"]
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    ap = argparse.ArgumentParser(description="S3 put benchmark: Mosaic and restic on moto.")
    ap.add_argument("--corpus", type=Path, default=Path("/work/bench-corpus"),
                    help=f"folder holding `{CORPUS}` (the cwd of the tool commands)")
    ap.add_argument("--runs", type=int, default=1, help="runs per tool (median run reported)")
    ap.add_argument("--work", type=Path, help="work folder, kept (default: a temp folder)")
    ap.add_argument("--json", type=Path, help="write every measurement here")
    return ap.parse_args()


def main() -> int:
    """Run the benchmark; exit 0 if Mosaic meets the bytes-per-PUT target, else 1."""
    args = parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # cleanup runs as for Ctrl-C
    if missing := [exe for exe in ("mosaic", "restic") if not shutil.which(exe)]:
        raise SystemExit(f"not on PATH: {', '.join(missing)}")
    keep = args.work is not None
    args.work = args.work or Path(tempfile.mkdtemp(prefix="s3bench-"))
    args.work.mkdir(parents=True, exist_ok=True)
    server: subprocess.Popen[bytes] | None = None
    proxy: CountingProxy | None = None
    try:
        files, size = warm(args.corpus / CORPUS)
        log(f"corpus {args.corpus / CORPUS}: {files} files, {size / MB:.1f} MB (now cached)")
        info = machine_info()
        server, port = start_moto(args.work)
        proxy = CountingProxy(port)
        results = [measure(tool, n, args, proxy, (port, server.pid), size)
                   for n in range(1, args.runs + 1) for tool in ("mosaic", "restic")]
        summary = summarize(results)
        print(report(info, summary, f"{args.corpus / CORPUS}, {files} files, {size / MB:.1f} MB"))
        if args.json:
            args.json.write_text(json.dumps({"info": info, "input_files": files,
                                             "input_bytes": size, "runs": results}, indent=2))
        return 0 if summary["mosaic"]["bytes_per_put"] >= TARGET_BYTES_PER_PUT else 1
    finally:
        if proxy:
            proxy.server.close()
        stop(server)
        if not keep:
            shutil.rmtree(args.work, ignore_errors=True)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit("interrupted; S3 server stopped")
