"""A fork server for the tests' one-shot CLI runs: each run is still its own process.

The suite runs the `mosaic` CLI about 1,400 times; each run spent most of its CPU
importing the same modules (about 0.15 s of a 2-core machine's time under load).
This server imports them once (with the tests' weak KDF, see weak_kdf_cli.py) and
forks a child per run. The child gets the run's own stdin, stdout and stderr
descriptors (passed over a Unix socket), working folder, environment and argv,
runs the CLI's entry point and exits as the interpreter would (threads joined,
atexit run, stdio flushed). The caller sees what `subprocess.run` gives:
the exit status (negative for a signal), stdout and stderr, and `TimeoutExpired`
after killing a run that overstays.

Per run: the server forks a waiter, the waiter forks the run and reports its pid,
then its wait status. Runs that need a `preexec_fn` (resource limits, dropped
capabilities) and the start-up tests use a plain subprocess instead.

`python tests/cli_forkserver.py SOCKET` serves; `Client(path).run(...)` calls it.
"""

from __future__ import annotations

import json
import os
import selectors
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
WEAK_KDF_CLI = HERE / "weak_kdf_cli.py"
#: modules a run would import anyway, loaded once in the server
PRELOAD = ("mosaic.node.cli.main", "trio", "httpx", "mosaic.node.cluster.engine")
_LEN = struct.Struct("!I")
_PID = struct.Struct("!q")
_STATUS = struct.Struct("!i")


# ---- the server (its own process) ---------------------------------------------------------

def _recv_request(conn: socket.socket) -> tuple[dict, list[int]]:
    data, fds, _, _ = socket.recv_fds(conn, 1 << 16, 3)
    while len(data) < _LEN.size or len(data) < _LEN.size + _LEN.unpack_from(data)[0]:
        more = conn.recv(1 << 16)
        if not more:
            raise EOFError("the request was cut short")
        data += more
    n = _LEN.unpack_from(data)[0]
    return json.loads(data[_LEN.size:_LEN.size + n]), fds


def _run_cli(req: dict, fds: list[int], keep: set[int]) -> None:
    """In the run's process: take its descriptors, folder, environment and argv; run the CLI.

    Never returns: exits as a `mosaic` process would (see _exit_like_the_interpreter)."""
    try:
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
        for fd in {*fds, *keep} - {0, 1, 2}:
            os.close(fd)
        os.chdir(req["cwd"])  # a missing folder: a traceback and exit 1, as an uncaught error
        os.environ.clear()
        os.environ.update(req["env"])
        sys.argv = [str(WEAK_KDF_CLI), *req["argv"]]
        from mosaic.node.cli.main import main
        code = main()
    except SystemExit as e:
        code = e.code
    except BaseException:  # as the interpreter reports an uncaught exception
        sys.excepthook(*sys.exc_info())
        code = 1
    os._exit(_exit_like_the_interpreter(code))


def _exit_like_the_interpreter(code: object) -> int:
    """Do what interpreter shutdown does that a run can see (join its threads, run atexit,
    flush stdio) and return its exit status. Not a full finalization: in a forked child
    that touches every object of the server's heap (about 0.15 s a run)."""
    import atexit
    for t in threading.enumerate():
        if t is not threading.main_thread() and not t.daemon:
            t.join()
    atexit._run_exitfuncs()  # noqa: SLF001 - what Py_Finalize calls; logging's flush is one
    if code is None:
        status = 0
    elif isinstance(code, int):
        status = code & 0xFF
    else:
        print(code, file=sys.stderr)
        status = 1
    for f in (sys.stdout, sys.stderr):
        try:
            f.flush()
        except (OSError, ValueError):
            status = status or 120  # as Python exits when flushing stdout fails
    return status


def _wait_for_run(conn: socket.socket, listener: socket.socket) -> None:
    """In a waiter: fork the run, report its pid and then its wait status."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    req, fds = _recv_request(conn)
    pid = os.fork()
    if pid == 0:
        _run_cli(req, fds, {conn.fileno(), listener.fileno()})
    for fd in fds:
        os.close(fd)
    conn.sendall(_PID.pack(pid))
    _, status = os.waitpid(pid, 0)
    conn.sendall(_STATUS.pack(status))
    os._exit(0)


def serve(path: str) -> None:
    """Import once, then fork a waiter per connection, forever (until killed)."""
    if sys.path and os.path.abspath(sys.path[0] or os.curdir) == str(HERE):
        sys.path[0] = os.getcwd()  # as weak_kdf_cli.py does
    import importlib
    import importlib.util
    spec = importlib.util.spec_from_file_location("weak_kdf_cli", WEAK_KDF_CLI)
    assert spec is not None and spec.loader is not None
    weak = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(weak)  # by path: tests/ on sys.path would shadow http and others
    weak.weaken_kdf()
    for name in PRELOAD:
        importlib.import_module(name)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # waiters are reaped by the kernel
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    sys.stdout.flush()
    sys.stderr.flush()
    listener.settimeout(5)
    parent = os.getppid()
    while os.getppid() == parent:  # the test process that started this server is gone: end
        try:
            conn, _ = listener.accept()
        except TimeoutError:
            continue
        conn.settimeout(None)
        if os.fork() == 0:
            try:
                _wait_for_run(conn, listener)  # raises only if its caller went away
            finally:
                os._exit(0)  # a waiter never goes back to serving
        conn.close()


# ---- the client (in the test process) -----------------------------------------------------

class Client:
    """Starts the server on first use (one per test process) and runs CLI calls through it."""

    def __init__(self, folder: Path):
        self.path = str(folder / "fork.sock")
        self._proc: subprocess.Popen | None = None
        self._lock = threading.Lock()

    def _ensure(self) -> None:
        with self._lock:
            if self._proc is not None and self._proc.poll() is None:
                return
            if os.path.exists(self.path):
                os.unlink(self.path)
            self._proc = subprocess.Popen([sys.executable, __file__, self.path],
                                          stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
            deadline = time.monotonic() + 60
            while not os.path.exists(self.path):
                if self._proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the CLI fork server did not start")
                time.sleep(0.01)

    def close(self) -> None:
        """Stop the server and remove its folder."""
        with self._lock:
            if self._proc is not None:
                self._proc.kill()
                self._proc.wait()
                self._proc = None
            shutil.rmtree(os.path.dirname(self.path), ignore_errors=True)

    def run(self, argv: Sequence[str], *, input: bytes | None, env: dict[str, str],
            cwd: str, timeout: float) -> tuple[int, bytes, bytes]:
        """(exit status as subprocess gives it, stdout, stderr) of one CLI run."""
        self._ensure()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        ours: list[int] = []   # closed here; in_w is closed by _communicate once it runs
        in_w = -1
        try:
            sock.connect(self.path)
            out_r, out_w = os.pipe()
            err_r, err_w = os.pipe()
            ours += [out_r, err_r]
            if input is None:
                in_r = os.open(os.devnull, os.O_RDONLY)
            else:
                in_r, in_w = os.pipe()
            hdr = json.dumps({"argv": list(argv), "env": env, "cwd": cwd}).encode()
            try:
                socket.send_fds(sock, [_LEN.pack(len(hdr)) + hdr], [in_r, out_w, err_w])
            finally:
                for fd in (in_r, out_w, err_w):
                    os.close(fd)
            pid = _PID.unpack(_recv_exact(sock, _PID.size))[0]
            deadline = time.monotonic() + timeout
            w, in_w = in_w, -1
            out, err = _communicate(out_r, err_r, w, input or b"", deadline)
            if out is None:
                _kill(pid)
                raise subprocess.TimeoutExpired(list(argv), timeout)
            sock.settimeout(max(0.1, deadline - time.monotonic()))
            try:
                status = _STATUS.unpack(_recv_exact(sock, _STATUS.size))[0]
            except TimeoutError:
                _kill(pid)
                raise subprocess.TimeoutExpired(list(argv), timeout) from None
            return os.waitstatus_to_exitcode(status), out, err
        finally:
            sock.close()
            for fd in ours + ([in_w] if in_w >= 0 else []):
                os.close(fd)


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        more = sock.recv(n - len(buf))
        if not more:
            raise RuntimeError("the CLI fork server closed the connection")
        buf += more
    return buf


def _communicate(out_r: int, err_r: int, in_w: int, data: bytes, deadline: float
                 ) -> tuple[bytes | None, bytes]:
    """Feed stdin and read stdout and stderr to their ends; (None, b"") at the deadline.

    Closes `in_w` once everything is written (or the run stopped reading)."""
    bufs: dict[int, list[bytes]] = {out_r: [], err_r: []}
    sel = selectors.DefaultSelector()
    for fd in bufs:
        sel.register(fd, selectors.EVENT_READ)
    if in_w >= 0:
        os.set_blocking(in_w, False)
        sel.register(in_w, selectors.EVENT_WRITE)
    view, open_readers = memoryview(data), 2
    try:
        while open_readers:
            left = deadline - time.monotonic()
            if left <= 0:
                return None, b""
            for key, _ in sel.select(left):
                fd = key.fd
                if fd == in_w:
                    try:
                        n = os.write(in_w, view[:1 << 16]) if view else 0
                    except BrokenPipeError:
                        n, view = 0, view[:0]
                    view = view[n:]
                    if not view:
                        sel.unregister(in_w)
                        os.close(in_w)
                        in_w = -1
                    continue
                chunk = os.read(fd, 1 << 16)
                if chunk:
                    bufs[fd].append(chunk)
                else:
                    sel.unregister(fd)
                    open_readers -= 1
    finally:
        sel.close()
        if in_w >= 0:
            os.close(in_w)
    return b"".join(bufs[out_r]), b"".join(bufs[err_r])


if __name__ == "__main__":
    serve(sys.argv[1])
