"""Start and stop the real servers the backend tests run against.

Every wait is bounded; a server that does not come up fails the test run
with a message saying what is missing (no test is ever skipped).
"""

from __future__ import annotations

import contextlib
import os
import selectors
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

HERE = Path(__file__).parent
START_TIMEOUT = 30.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float = START_TIMEOUT) -> None:
    """Wait until something accepts TCP connections on 127.0.0.1:port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with code {proc.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


def read_line(proc: subprocess.Popen[bytes], timeout: float = START_TIMEOUT) -> str:
    """The first line the process prints on stdout, within `timeout`."""
    assert proc.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    buf = b""
    deadline = time.monotonic() + timeout
    try:
        while b"\n" not in buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError(f"no output after {timeout}s")
            if sel.select(left):
                chunk = os.read(proc.stdout.fileno(), 4096)
                if not chunk:
                    raise RuntimeError(f"server exited (code {proc.wait(5)}) before printing")
                buf += chunk
    finally:
        sel.close()
    return buf.split(b"\n", 1)[0].decode().strip()


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Terminate, then kill, bounded."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def log_tail(path: Path, limit: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-limit:]
    except OSError:
        return ""


@contextlib.contextmanager
def moto_server(workdir: Path, env_extra: dict[str, str]) -> Iterator[str]:
    """moto's HTTP server on 127.0.0.1; yields its endpoint URL."""
    try:
        import moto.server  # noqa: F401
    except ImportError as e:  # pragma: no cover - environment problem
        pytest.fail(f"moto[server] is not installed ({e}); pip install -e '.[test]'", pytrace=False)
    logfile = workdir / "moto.log"
    last_error = ""
    for _ in range(3):  # the free port may be taken between probe and bind
        port = free_port()
        env = dict(os.environ, **env_extra)
        with open(logfile, "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
            )
        try:
            wait_for_port(port, proc)
        except RuntimeError as e:
            stop(proc)
            last_error = f"{e}\n{log_tail(logfile)}"
            continue
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            stop(proc)
        return
    pytest.fail(f"moto server did not start: {last_error}", pytrace=False)


@contextlib.contextmanager
def wsgidav_server(root: Path, logfile: Path, user: str, password: str) -> Iterator[str]:
    """A wsgidav server (cheroot) serving `root` with basic auth; yields its URL."""
    for mod in ("wsgidav", "cheroot"):
        try:
            __import__(mod)
        except ImportError as e:
            pytest.fail(f"{mod} is not installed ({e}); pip install -e '.[test]'", pytrace=False)
    with open(logfile, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, str(HERE / "_wsgidav_server.py"), str(root), user, password],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log,
        )
    try:
        try:
            port = int(read_line(proc))
            wait_for_port(port, proc)
        except (RuntimeError, ValueError) as e:
            stop(proc)
            pytest.fail(f"wsgidav server did not start: {e}\n{log_tail(logfile)}", pytrace=False)
        yield f"http://127.0.0.1:{port}/"
    finally:
        stop(proc)


def require_binary(name: str, hint: Sequence[str]) -> str:
    """Path of `name` on PATH, or fail the run with an install hint."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name!r} not found on PATH; install it: {' '.join(hint)}", pytrace=False)
    return path


class Canned(str):
    """The URL of a canned server (a str), with the requests it has seen."""

    requests: list[str]


@contextlib.contextmanager
def canned_http_server(
    status: int, body: bytes = b"", headers: dict[str, str] | None = None,
    by_method: dict[str, int] | None = None,
) -> Iterator[Canned]:
    """A tiny HTTP server (thread) answering every request with one canned reply.

    For error-mapping tests: a real socket and HTTP exchange, a chosen failure.
    `by_method` overrides the status per HTTP method; status 0 means "drop the
    connection without answering". Yields its URL; `.requests` lists
    "METHOD path" of each request received.
    """
    import http.server
    import threading

    seen: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _reply(self) -> None:
            seen.append(f"{self.command} {self.path}")
            n = int(self.headers.get("Content-Length") or 0)
            if n:
                self.rfile.read(n)
            code = (by_method or {}).get(self.command, status)
            if code == 0:
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            self.send_response(code)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _reply
        do_PROPFIND = do_MKCOL = do_MOVE = _reply

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    url = Canned(f"http://127.0.0.1:{server.server_address[1]}/")
    url.requests = seen
    try:
        yield url
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens (connection refused)."""
    return f"http://127.0.0.1:{free_port()}/"
