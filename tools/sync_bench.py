#!/usr/bin/env python3
"""Sync benchmark: two `mosaic serve` daemons (A and B) on loopback.

Usage::

    python tools/sync_bench.py [--work DIR] [--files 10000] [--big-mib 50] [--json OUT] [--keep]

What is measured (figures are printed as a markdown table; ``--json OUT`` writes them too):

(a) **Initial sync of many small files.** 10,000 unique small files (~100–300 bytes each) are
    stored on A through the Python API (`Node.open(home).ingest()`) while no daemon runs; A
    trusts B, B trusts and dials A. A is started, then B; the clock starts when B's process is
    spawned. Reported: when B's sequence log holds all of A's entries (manifests and name
    writes, read straight from B's LMDB `syncvec` table), and when B has all 10,000 files
    (`manifests` table, i.e. every chunk fetched, so `get` works; confirmed afterwards with
    `mosaic ls --json`). Target: all files on B < 5 s after B starts.

(b) **Re-sync with no changes.** B is stopped and its address for A is pointed at a counting
    TCP proxy on 127.0.0.1 in front of A's listener (A never dials B: it trusts B without an
    address). B is started again; once the connection has been quiet for 1.5 s the proxy's
    counters are read. Reported, for that one connection, both directions together:

    * *TCP payload*: every byte through the proxy (TLS handshake, TLS record framing, AEAD
      tags, the peer authentication and the sync protocol); TCP/IP headers are not counted;
    * *TLS handshake*: the TLS records up to and including the client's Finished (for the
      server direction: every record before the client's Finished reached the server);
    * *application plaintext*: each later TLS 1.3 application-data record is length − 17
      bytes of plaintext (16-byte tag + 1 inner content-type byte; OpenSSL adds no padding);
    * *peer authentication*: AuthChallenge + AuthProof + AuthOk frames (computed from the
      nodes' real certificates: they have fixed sizes);
    * *sync protocol*: application plaintext − authentication, i.e. the framed Hello /
      Summary / ... messages. This is compared with the size computed by encoding the Hello
      and Summary both nodes must send. Target: < 1 KiB.

(c) **Deduplicated fetch.** A 50 MiB random file is put on A and replicated to B (the bytes B
    received for it are the baseline). Then the same content with 64 bytes inserted in the
    middle is put on A under a new name; the bytes B receives (server → client direction of
    the proxied connection) until B has the file and the connection is quiet are compared with
    the file's size. Target: ≤ 1 %.

Every wait has a deadline; every daemon is stopped (SIGTERM, then SIGKILL) on the way out.
Exit status: 0 if every target is met, 1 if one is missed, 2 if the benchmark itself failed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import lmdb

from mosaic import Node
from mosaic.node.cluster.identity import Identity
from mosaic.node.cluster.transport import AuthChallenge, AuthOk, AuthProof, encode_auth
from mosaic.protocol.framing import encode_frame
from mosaic.protocol.limits import PROTOCOL_VERSION
from mosaic.protocol.messages import Hello, Summary, encode_message

REPO = Path(__file__).resolve().parents[1]

HOST = "127.0.0.1"
TLS_APP_DATA = 23
TLS13_RECORD_OVERHEAD = 17  # AEAD tag (16) + inner content type (1)
_U64 = struct.Struct("<Q")


class BenchError(Exception):
    """The benchmark could not run (not a missed target)."""


# ---- processes ------------------------------------------------------------------

def cli_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def mosaic(home: Path, *args: str | os.PathLike, json_out: bool = False,
           timeout: float = 120) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "mosaic", "--home", str(home)]
    argv += ["--json"] if json_out else []
    argv += [str(a) for a in args]
    p = subprocess.run(argv, capture_output=True, env=cli_env(), cwd=REPO, timeout=timeout,
                       stdin=subprocess.DEVNULL)
    if p.returncode != 0:
        raise BenchError(f"{' '.join(argv[3:])} -> {p.returncode}: {p.stderr.decode()[-2000:]}")
    return p


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def wait_for(pred: Callable[[], object], timeout: float, what: str, interval: float = 0.01):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


class Daemon:
    """`mosaic serve` in a subprocess, logging to HOME.log."""

    def __init__(self, home: Path, port: int):
        self.home, self.port = home, port
        self.proc: subprocess.Popen | None = None
        self.profiler: subprocess.Popen | None = None
        self.log = home.with_suffix(".log")

    def start(self) -> float:
        """Spawn; returns the monotonic time of the spawn. Waits until ready."""
        with open(self.log, "ab") as logf:
            t0 = time.monotonic()
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "mosaic", "--home", str(self.home), "serve",
                 "--listen", f"{HOST}:{self.port}"], stdin=subprocess.DEVNULL, stdout=logf,
                stderr=logf, env=cli_env(), cwd=REPO, start_new_session=True)
        proc = self.proc

        def ready() -> bool:
            if proc.poll() is not None:
                raise BenchError(f"daemon {self.home.name} exited: {self.log.read_text()[-2000:]}")
            try:
                doc = json.loads((self.home / "daemon.json").read_text())
            except (OSError, ValueError):
                return False
            return doc.get("pid") == proc.pid and doc.get("ready") is True

        wait_for(ready, 30, f"daemon {self.home.name} to be ready")
        return t0

    def profile(self, out: Path) -> None:
        """Sample the running daemon with py-spy (must be installed) into a flame graph."""
        assert self.proc is not None
        self.profiler = subprocess.Popen(
            ["py-spy", "record", "--pid", str(self.proc.pid), "--rate", "250", "--threads",
             "--format", {".json": "speedscope", ".txt": "raw"}.get(out.suffix, "flamegraph"),
             "-o", str(out)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)

    def end_profile(self) -> None:
        """Stop py-spy (on SIGINT it writes its output)."""
        if self.profiler is None:
            return
        prof, self.profiler = self.profiler, None
        prof.send_signal(signal.SIGINT)
        try:
            prof.wait(timeout=30)
        except subprocess.TimeoutExpired:
            prof.kill()
            prof.wait(timeout=10)

    def stop(self) -> None:
        self.end_profile()
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


class Peek:
    """Read-only look into a node's LMDB (another process's daemon keeps writing it)."""

    def __init__(self, home: Path):
        # the same (virtual) map size as the node's, or a grown file cannot be read
        self.env = lmdb.open(str(home / "index"), readonly=True, max_dbs=64, lock=True,
                             subdir=True, map_size=1 << 40)
        self.manifests = self.env.open_db(b"manifests", create=False)
        self.syncvec = self.env.open_db(b"syncvec", create=False)

    def files(self) -> int:
        with self.env.begin() as t:
            return t.stat(self.manifests)["entries"]

    def has_file(self, fid: bytes) -> bool:
        with self.env.begin() as t:
            return t.get(fid, db=self.manifests) is not None

    def vector(self) -> dict[bytes, int]:
        with self.env.begin() as t:
            return {bytes(k): _U64.unpack(v)[0] for k, v in t.cursor(db=self.syncvec)}

    def close(self) -> None:
        self.env.close()


# ---- the counting proxy -----------------------------------------------------------

@dataclass
class Direction:
    """One direction of one proxied connection: bytes and parsed TLS records."""

    client_side: bool
    total: int = 0
    handshake: int = 0  # record bytes (5-byte headers included) of the TLS handshake
    app_records: int = 0
    app_record_bytes: int = 0
    app_plain: int = 0
    buf: bytearray = field(default_factory=bytearray)


class ProxiedConn:
    def __init__(self) -> None:
        self.c2s = Direction(True)
        self.s2c = Direction(False)
        self.client_finished = False
        self.last = time.monotonic()
        self.opened = time.monotonic()
        self.closed = False
        self.lock = threading.Lock()

    def feed(self, d: Direction, data: bytes) -> None:
        with self.lock:
            self.last = time.monotonic()
            d.total += len(data)
            d.buf += data
            while len(d.buf) >= 5:
                typ, n = d.buf[0], int.from_bytes(d.buf[3:5], "big")
                if len(d.buf) < 5 + n:
                    break
                del d.buf[:5 + n]
                if d.client_side and typ == TLS_APP_DATA and not self.client_finished:
                    self.client_finished = True  # the client's Finished: last handshake record
                    d.handshake += 5 + n
                elif not self.client_finished or typ != TLS_APP_DATA:
                    d.handshake += 5 + n
                else:
                    d.app_records += 1
                    d.app_record_bytes += 5 + n
                    d.app_plain += n - TLS13_RECORD_OVERHEAD

    def counters(self) -> dict[str, int]:
        with self.lock:
            out = {}
            for name, d in (("c2s", self.c2s), ("s2c", self.s2c)):
                out |= {f"{name}_total": d.total, f"{name}_handshake": d.handshake,
                        f"{name}_app_records": d.app_records,
                        f"{name}_app_record_bytes": d.app_record_bytes,
                        f"{name}_app_plain": d.app_plain}
            return out


class CountingProxy:
    """127.0.0.1:port -> target, counting every byte and TLS record of every connection."""

    def __init__(self, target_port: int):
        self.target = (HOST, target_port)
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((HOST, 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.conns: list[ProxiedConn] = []
        self.stopping = False
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self.stopping:
            try:
                client, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                server = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            client.settimeout(None)
            conn = ProxiedConn()
            self.conns.append(conn)
            pumps = [threading.Thread(target=self._pump, args=(client, server, conn, conn.c2s),
                                      daemon=True),
                     threading.Thread(target=self._pump, args=(server, client, conn, conn.s2c),
                                      daemon=True)]
            for p in pumps:
                p.start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket, conn: ProxiedConn, d: Direction) -> None:
        try:
            while True:
                data = src.recv(1 << 16)
                if not data:
                    break
                conn.feed(d, data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            conn.closed = True
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def live(self) -> ProxiedConn | None:
        open_ = [c for c in self.conns if not c.closed]
        return open_[-1] if open_ else None

    def close(self) -> None:
        self.stopping = True
        self.sock.close()
        self.thread.join(timeout=2)


def wait_quiet(conn: ProxiedConn, quiet_s: float, timeout: float) -> None:
    wait_for(lambda: time.monotonic() - conn.last >= quiet_s, timeout, "the connection to be quiet",
             interval=0.05)


# ---- the benchmark ------------------------------------------------------------------

def say(msg: str) -> None:
    print(f"sync_bench: {msg}", file=sys.stderr, flush=True)


def node_id(home: Path) -> str:
    return mosaic(home, "id").stdout.decode().strip()


def key_id(home: Path) -> str:
    return json.loads(mosaic(home, "info", json_out=True).stdout)["key_id"]


def make_pair(work: Path, tag: str) -> tuple[Path, Path, str, str, Daemon, Daemon]:
    """Two fresh nodes with one key: A trusts B (never dials it), B trusts and dials A."""
    home_a, home_b = work / f"A{tag}", work / f"B{tag}"
    mosaic(home_a, "init", "--no-passphrase")
    mosaic(home_a, "key", "export", "-o", work / f"key{tag}.json")
    mosaic(home_b, "init", "--no-passphrase", "--key-file", work / f"key{tag}.json")
    a_id, b_id = node_id(home_a), node_id(home_b)
    port_a = free_port()
    mosaic(home_a, "peer", "add", b_id)  # trusted, never dialled: every connection is B -> A
    mosaic(home_b, "peer", "add", f"{a_id}@{HOST}:{port_a}")
    return home_a, home_b, a_id, b_id, Daemon(home_a, port_a), Daemon(home_b, free_port())


def ingest_small(home: Path, n: int, rng: random.Random) -> float:
    t = time.monotonic()
    with Node.open(home) as node, node.ingest() as s:
        for i in range(n):
            body = f"small file {i:05d}\n".encode() + rng.randbytes(rng.randint(80, 280))
            s.put_source(body, name=f"small/{i:05d}.txt")
    return time.monotonic() - t


def run(work: Path, n_files: int, big_mib: int, seed: int, a_timeout: float,
        fallback_files: int, profile: tuple[Path | None, Path | None] = (None, None)) -> dict:
    rng = random.Random(seed)
    home_a, home_b, a_id, _, da, db = make_pair(work, "")
    res: dict = {"files": n_files, "big_file_bytes": big_mib << 20, "seed": seed,
                 "a_timeout_s": a_timeout}
    proxy: CountingProxy | None = None
    peek_b: Peek | None = None
    try:
        # (a) ---------------------------------------------------------------
        res["a_ingest_s"] = ingest_small(home_a, n_files, rng)
        say(f"(a) {n_files} files stored on A in {res['a_ingest_s']:.1f} s")
        peek_a = Peek(home_a)
        a_vec = peek_a.vector()
        peek_a.close()
        res["a_log_entries"] = sum(a_vec.values())
        da.start()
        t0 = db.start()
        t_ready = time.monotonic()
        for d, out in zip((da, db), profile, strict=True):
            if out is not None:
                d.profile(out)
        res["a_b_start_s"] = t_ready - t0
        peek_b = Peek(home_b)
        pb = peek_b
        deadline = t0 + a_timeout
        res["a_log_synced_s"] = res["a_all_files_s"] = res["a_all_files_after_ready_s"] = None
        while time.monotonic() < deadline:
            now = time.monotonic()
            if res["a_log_synced_s"] is None and all(pb.vector().get(o, 0) >= s
                                                     for o, s in a_vec.items()):
                res["a_log_synced_s"] = now - t0
                say(f"(a) B's log complete after {res['a_log_synced_s']:.2f} s")
            if res["a_all_files_s"] is None and pb.files() >= n_files:
                res["a_all_files_s"] = now - t0
                res["a_all_files_after_ready_s"] = now - t_ready
                say(f"(a) all files on B after {res['a_all_files_s']:.2f} s")
            if res["a_all_files_s"] is not None and res["a_log_synced_s"] is not None:
                break  # both measured (files can be complete before the last name writes)
            time.sleep(0.005)
        da.end_profile()
        db.end_profile()
        res["a_files_on_b_at_end"] = pb.files()
        res["a_elapsed_s"] = time.monotonic() - t0
        if res["a_all_files_s"] is None:
            say(f"(a) NOT done: B holds {res['a_files_on_b_at_end']} of {n_files} files after "
                f"{a_timeout:.0f} s; (b) and (c) run on a fresh pair with {fallback_files} files")
            res["bc_pair"] = f"fresh pair with {fallback_files} small files ((a) did not finish)"
            pb.close()
            peek_b = None
            db.stop()
            da.stop()
            home_a, home_b, a_id, _, da, db = make_pair(work, "2")
            ingest_small(home_a, fallback_files, rng)
            da.start()
            db.start()
            peek_b = Peek(home_b)
            pb = peek_b
            wait_for(lambda: pb.files() >= fallback_files, 120, "the fresh pair to sync")
        else:
            res["bc_pair"] = "the pair from (a)"
            listed = json.loads(mosaic(home_b, "ls", json_out=True).stdout)
            res["a_b_ls_count"] = len(listed)
            if len(listed) != n_files:
                raise BenchError(f"B lists {len(listed)} names, expected {n_files}")

        # (b) ---------------------------------------------------------------
        db.stop()
        proxy = CountingProxy(da.port)
        mosaic(home_b, "peer", "add", f"{a_id}@{HOST}:{proxy.port}")
        db.start()
        conn = wait_for(proxy.live, 30, "B to connect through the proxy")
        assert peek_b is not None
        wait_for(lambda: conn.s2c.app_records >= 4 and conn.c2s.app_records >= 3, 30,
                 "the Hello/Summary exchange")
        wait_quiet(conn, 1.5, 30)
        c = conn.counters()
        ident_a, ident_b = Identity.load_or_create(home_a), Identity.load_or_create(home_b)
        auth = (len(encode_frame(encode_auth(AuthChallenge(ident_a.node_id, b"\0" * 32))))
                + len(encode_frame(encode_auth(AuthProof(ident_b.cert_der, b"\0" * 64))))
                + len(encode_frame(encode_auth(AuthOk()))))
        cap = (f"key.{key_id(home_a)}",)
        vec_b = peek_b.vector()
        peek_a = Peek(home_a)
        vec_a = peek_a.vector()
        peek_a.close()
        expected = sum(len(encode_frame(encode_message(m))) for m in (
            Hello(PROTOCOL_VERSION, ident_a.node_id, cap, "mosaic/0.1"),
            Hello(PROTOCOL_VERSION, ident_b.node_id, cap, "mosaic/0.1"),
            Summary.from_mapping(vec_a), Summary.from_mapping(vec_b)))
        total = c["c2s_total"] + c["s2c_total"]
        handshake = c["c2s_handshake"] + c["s2c_handshake"]
        plain = c["c2s_app_plain"] + c["s2c_app_plain"]
        res |= {"b_tcp_payload_bytes": total, "b_tls_handshake_bytes": handshake,
                "b_tls_app_record_bytes": c["c2s_app_record_bytes"] + c["s2c_app_record_bytes"],
                "b_app_records": c["c2s_app_records"] + c["s2c_app_records"],
                "b_app_plaintext_bytes": plain, "b_auth_bytes": auth,
                "b_sync_protocol_bytes": plain - auth, "b_expected_sync_bytes": expected,
                "b_counters": c}

        say(f"(b) re-sync: {plain - auth} B of sync protocol, {total} B of TCP payload")

        # (c) ---------------------------------------------------------------
        data = rng.randbytes(big_mib << 20)
        mid = len(data) // 2
        edit = (b"a small edit in the middle of a big file; " * 2)[:64]
        edited = data[:mid] + edit + data[mid:]
        assert len(edited) == len(data) + 64
        for label, blob, name in (("c_first", data, "big/original.bin"),
                                  ("c_edited", edited, "big/edited.bin")):
            path = work / f"{label}.bin"
            path.write_bytes(blob)
            before = conn.counters()
            t = time.monotonic()
            out = json.loads(mosaic(home_a, "put", path, "--name", name, json_out=True).stdout)
            fid = bytes.fromhex(out["files"][0]["hash"])
            wait_for(lambda fid=fid: peek_b.has_file(fid), 120, f"{name} on B", interval=0.01)
            res[f"{label}_replicated_s"] = time.monotonic() - t
            say(f"(c) {name} on B after {res[f'{label}_replicated_s']:.2f} s")
            wait_quiet(conn, 1.0, 30)
            after = conn.counters()
            if conn.closed or proxy.live() is not conn:
                raise BenchError("the proxied connection was replaced during the measurement")
            res[f"{label}_size"] = len(blob)
            res[f"{label}_s2c_tcp_bytes"] = after["s2c_total"] - before["s2c_total"]
            res[f"{label}_s2c_app_plaintext_bytes"] = after["s2c_app_plain"] - before["s2c_app_plain"]
            res[f"{label}_c2s_tcp_bytes"] = after["c2s_total"] - before["c2s_total"]
            got = subprocess.run([sys.executable, "-m", "mosaic", "--home", str(home_b), "get",
                                  name, "-"], capture_output=True, env=cli_env(), cwd=REPO,
                                 timeout=120).stdout
            if got != blob:
                raise BenchError(f"B returned different bytes for {name}")
            path.unlink()
        res["c_ratio"] = res["c_edited_s2c_tcp_bytes"] / res["c_edited_size"]
    finally:
        if peek_b is not None:
            peek_b.close()
        db.stop()
        da.stop()
        if proxy is not None:
            proxy.close()
    res["targets"] = {
        "a_all_files_under_5s": res["a_all_files_s"] is not None and res["a_all_files_s"] < 5.0,
        "b_resync_under_1KiB": res["b_sync_protocol_bytes"] < 1024,
        "c_at_most_1_percent": res["c_ratio"] <= 0.01,
    }
    return res


# ---- in-process: the CPU the sync costs, insensitive to machine load ------------------

def run_cpu(work: Path, n_files: int, seed: int) -> dict:
    """(a) without daemons, sockets or threads: A's and B's sessions, stores and chunk
    transfers in this one process, every message through `encode_message`/`decode_message`
    and every chunk through `read_object`/`store_objects` as the daemons do. Reports the CPU
    time (`time.process_time`) from B's Hello until B holds every file, split by side."""
    from mosaic.node.cloud.cloud import Cloud
    try:
        from mosaic.node.cluster import filelog, synclog, syncstore
    except ImportError:  # a revision before replication was split out of cluster/replica.py
        from mosaic.node.cluster import replica
        filelog = synclog = syncstore = replica
    from mosaic.node.cluster.fetch import read_object, store_objects
    from mosaic.node.store.store import Store
    from mosaic.protocol.messages import ChunkData, ChunkMissing, WantChunks, decode_message
    from mosaic.protocol.sync import SyncSession

    rng = random.Random(seed)
    home_a, home_b, _, _, _, _ = make_pair(work, "")
    t_ingest = ingest_small(home_a, n_files, rng)
    sides = []
    for home in (home_a, home_b):
        store = Store.open(home)
        syncstore.install(store.index)
        ident = Identity.load_or_create(home)
        if hasattr(synclog, "use_identity"):  # signed logs (protocol 3)
            synclog.use_identity(store.index, ident)
            syncstore.upgrade(store.index)
        syncstore.enable(store.index, ident.node_id)
        sides.append((store, Cloud(store), ident))
    (sa, ca, ia), (sb, cb, ib) = sides
    cap = (f"key.{sa.keys.key_id}",)
    if hasattr(synclog, "vouch"):  # what each daemon does when it meets the other
        synclog.vouch(sa.index, ib.cert_der)
        synclog.vouch(sb.index, ia.cert_der)
    a = SyncSession(ia.node_id, syncstore.LmdbSyncStore(sa.index), expected_peer_id=ib.node_id,
                    capabilities=cap, software="mosaic/0.1")
    b = SyncSession(ib.node_id, syncstore.LmdbSyncStore(sb.index), expected_peer_id=ia.node_id,
                    capabilities=cap, software="mosaic/0.1")
    cpu = {"a": 0.0, "b": 0.0}
    wire = {"a": 0, "b": 0}

    def timed(side: str, fn, *args):
        t = time.process_time()
        try:
            return fn(*args)
        finally:
            cpu[side] += time.process_time() - t

    def over_wire(side: str, msgs) -> list:  # encode on the sender, decode on the receiver
        frames = timed(side, lambda: [encode_frame(encode_message(m)) for m in msgs])
        wire[side] += sum(map(len, frames))
        other = "b" if side == "a" else "a"
        return timed(other, lambda: [decode_message(f[4:]) for f in frames])

    def wanted() -> list[bytes]:
        got = filelog.wanted_chunks(sb.index, 1024)
        return got[0] if isinstance(got, tuple) else got

    t_wall = time.monotonic()
    to_a, to_b = over_wire("b", b.start()), []
    requested: set[bytes] = set()
    arrived: list[tuple[bytes, bytes]] = []
    rounds = 0
    while to_a or to_b:
        rounds += 1
        for m in to_a:
            out = timed("a", a.receive, m)
            if isinstance(m, WantChunks):
                out = out + timed("a", lambda m=m: [a.chunk_reply(m.request_id, c,
                                                                  read_object(ca, c))
                                                    for c in m.chunk_ids])
            to_b += over_wire("a", out)
        to_a = []
        for m in to_b:
            to_a += over_wire("b", timed("b", b.receive, m))
            if isinstance(m, ChunkData | ChunkMissing):
                requested.discard(m.chunk_id)
                if isinstance(m, ChunkData):
                    arrived.append((m.chunk_id, m.blob))
        to_b = []
        if arrived and not requested:
            timed("b", store_objects, cb, arrived)
            arrived = []
            to_a += over_wire("b", timed("b", b.local_changed))  # B's Have records
        if not requested:
            ids = timed("b", wanted)
            if ids:
                requested |= set(ids)
                to_a += over_wire("b", timed("b", b.want_chunks, ids))
    wall = time.monotonic() - t_wall
    files_b = sb.index.count("manifests")
    for store, cloud, _ in sides:
        cloud.close()
        store.close()
    if files_b < n_files:
        raise BenchError(f"in-process sync ended with {files_b} of {n_files} files on B")
    return {"files": n_files, "a_ingest_s": t_ingest, "cpu_a_s": cpu["a"], "cpu_b_s": cpu["b"],
            "cpu_s": cpu["a"] + cpu["b"], "wall_s": wall, "wire_bytes": wire,
            "rounds": rounds}


def markdown(r: dict) -> str:
    def kib(n: int) -> str:
        return f"{n:,} B ({n / 1024:.1f} KiB)"

    def secs(v: float | None, r: dict) -> str:
        return f"{v:.2f} s after B's spawn" if v is not None else f"not within {r['a_timeout_s']:.0f} s"

    def ok(key: str) -> str:
        return "yes" if r["targets"][key] else "**NO**"

    rows = [
        ("(a) files stored on A (Python API ingest)", f"{r['files']:,} in {r['a_ingest_s']:.2f} s "
         f"({r['a_log_entries']:,} log entries)", "", ""),
        ("(a) B's log holds all of A's entries", secs(r["a_log_synced_s"], r), "", ""),
        ("(a) B holds all files (chunks fetched)",
         (f"{r['a_all_files_s']:.2f} s after B's spawn ({r['a_all_files_after_ready_s']:.2f} s "
          "after B was ready)") if r["a_all_files_s"] is not None else
         f"not reached: {r['a_files_on_b_at_end']:,} of {r['files']:,} after "
         f"{r['a_elapsed_s']:.0f} s", "< 5 s", ok("a_all_files_under_5s")),
        ("(b), (c) measured on", r["bc_pair"], "", ""),
        ("(b) re-sync: TCP payload, both directions", kib(r["b_tcp_payload_bytes"]), "", ""),
        ("(b) … of which TLS handshake", kib(r["b_tls_handshake_bytes"]), "", ""),
        ("(b) … TLS application records (with headers and tags)",
         f"{kib(r['b_tls_app_record_bytes'])} in {r['b_app_records']} records", "", ""),
        ("(b) application plaintext", kib(r["b_app_plaintext_bytes"]), "", ""),
        ("(b) … of which peer authentication", kib(r["b_auth_bytes"]), "", ""),
        ("(b) … sync protocol (Hello, Summary, …)", kib(r["b_sync_protocol_bytes"]) +
         f"; expected Hello+Summary both ways: {r['b_expected_sync_bytes']} B", "< 1 KiB",
         ok("b_resync_under_1KiB")),
        ("(c) first copy: bytes B received", f"{r['c_first_s2c_tcp_bytes']:,} B for "
         f"{r['c_first_size']:,} B in {r['c_first_replicated_s']:.2f} s", "", ""),
        ("(c) edited copy: bytes B received (TCP)", f"{r['c_edited_s2c_tcp_bytes']:,} B "
         f"({r['c_edited_s2c_app_plaintext_bytes']:,} B plaintext) for {r['c_edited_size']:,} B",
         "", ""),
        ("(c) edited copy: received / size", f"{r['c_ratio']:.3%}", "≤ 1 %", ok("c_at_most_1_percent")),
    ]
    out = ["| measurement | value | target | met |", "|---|---|---|---|"]
    out += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, help="folder for the node homes (default: a temp dir)")
    ap.add_argument("--files", type=int, default=10_000)
    ap.add_argument("--big-mib", type=int, default=50)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--a-timeout", type=float, default=60.0, metavar="S",
                    help="give up waiting for (a) after S seconds (default 60)")
    ap.add_argument("--fallback-files", type=int, default=200, metavar="N",
                    help="if (a) does not finish, run (b) and (c) on a fresh pair with N files")
    ap.add_argument("--json", type=Path, metavar="OUT", help="also write the figures as JSON")
    ap.add_argument("--keep", action="store_true", help="keep the node homes")
    for side in "ab":
        ap.add_argument(f"--profile-{side}", type=Path, metavar="OUT",
                        help=f"sample {side.upper()}'s daemon with py-spy from when B is ready to "
                             "the end of (a) (OUT.svg: flame graph, OUT.json: speedscope, "
                             "OUT.txt: collapsed stacks)")
    ap.add_argument("--cpu", action="store_true",
                    help="measure (a) in one process instead: CPU seconds of A and B (no "
                         "daemons; insensitive to machine load)")
    args = ap.parse_args(argv)
    os.environ.pop("MOSAIC_PASSPHRASE", None)  # the nodes are unsealed
    work = args.work or Path(tempfile.mkdtemp(prefix="mosaic-sync-bench-"))
    if args.work:
        if work.exists() and any(work.iterdir()):
            print(f"sync_bench: {work} is not empty", file=sys.stderr)
            return 2
        work.mkdir(parents=True, exist_ok=True)
    if args.cpu:
        try:
            res = run_cpu(work, args.files, args.seed)
        except BenchError as e:
            print(f"sync_bench: {e}", file=sys.stderr)
            return 2
        finally:
            if not args.keep:
                shutil.rmtree(work, ignore_errors=True)
        print(json.dumps(res))
        if args.json:
            args.json.write_text(json.dumps(res, indent=1) + "\n")
        return 0
    try:
        res = run(work, args.files, args.big_mib, args.seed, args.a_timeout, args.fallback_files,
                  (args.profile_a, args.profile_b))
    except BenchError as e:
        print(f"sync_bench: {e}", file=sys.stderr)
        return 2
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(markdown(res))
    if args.json:
        args.json.write_text(json.dumps(res, indent=1) + "\n")
    return 0 if all(res["targets"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
