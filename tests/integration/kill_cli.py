"""`python tests/integration/kill_cli.py ARGS`: the test CLI (weak KDF) that SIGKILLs itself
at a chosen step.

For the kill tests only (test_kill_points.py). A *step* is one call of a dir backend
(put, get, stat, delete, list), one committed LMDB write transaction, or one local pack
file deleted: the moments where a crash leaves different state behind. With
MOSAIC_TEST_KILL_AT=N the process sends itself SIGKILL just before its N-th step (so the
N-th backend call or pack delete never happens, and the N-th commit is made but nothing
after it); with MOSAIC_TEST_STEPS_FILE=PATH it writes how many steps it made to PATH when
it exits normally (the test counts a run first, then picks kill points among its steps,
seeded, so every kill lands during the operation and is reproducible); with
MOSAIC_TEST_TRACE_FILE=PATH each step appends a line naming it (for a daemon, which is
stopped rather than exiting by itself: the test finds where its fetch begins and ends).
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
import time
from pathlib import Path


def install(kill_at: int, steps_file: str | None, trace_file: str | None = None) -> list[int]:
    """Wrap the step functions of this process; returns the (live) step counter."""
    from mosaic.backends.dir import DirBackend
    from mosaic.node.store import index as index_mod
    from mosaic.node.store.packs import LocalPacks

    count = [0]

    def step(what: str) -> None:
        count[0] += 1
        if trace_file:
            with open(trace_file, "a") as f:
                f.write(f"{count[0]} {what}\n")
        if count[0] == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    def wrap_async(cls: type, name: str) -> None:
        orig = getattr(cls, name)

        async def wrapped(self, *args, **kw):  # noqa: ANN001, ANN002, ANN003, ANN202
            step(f"{name} {args[0] if args else ''}")
            return await orig(self, *args, **kw)

        setattr(cls, name, wrapped)

    for name in ("put", "get", "stat", "delete", "list"):
        wrap_async(DirBackend, name)

    commit_exit = index_mod._WriteTxn.__exit__

    def exit_then_step(self, *exc):  # noqa: ANN001, ANN002, ANN202
        r = commit_exit(self, *exc)
        if exc[0] is None:
            step("commit")
        return r

    index_mod._WriteTxn.__exit__ = exit_then_step

    delete = LocalPacks.delete

    def delete_after_step(self, pid: bytes) -> None:  # noqa: ANN001
        step(f"unlink {pid.hex()}")
        delete(self, pid)

    LocalPacks.delete = delete_after_step
    if steps_file:
        atexit.register(lambda: Path(steps_file).write_text(str(count[0])))
    return count


def run_forked(argv: list[str], kill_at: int = 0, timeout: float = 120.0) -> tuple[int, int]:
    """(exit status as subprocess reports it: -9 when killed, steps made) of the CLI run in a
    forked child of this process (no interpreter start-up: the kill tests run it ~100 times).
    Call it with no node, hub thread or index of this process open. A child still running
    after `timeout` seconds is killed and TimeoutError raised."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        rc = 70
        count = [0]
        try:
            os.close(r)
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, 1)
            os.dup2(null, 2)
            count = install(kill_at, None)
            from mosaic.node.cli.main import main as cli_main
            rc = cli_main(argv) or 0
        except SystemExit as e:
            rc = e.code if isinstance(e.code, int) else 1
        except BaseException:  # noqa: BLE001 - reported as the CLI's internal error code
            rc = 70
        finally:
            os.write(w, str(count[0]).encode())
            os._exit(rc)
    os.close(w)
    end = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > end:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            os.close(r)
            raise TimeoutError(f"{argv} still ran after {timeout} s")
        time.sleep(0.005)
    with os.fdopen(r, "rb") as f:
        steps = f.read()
    code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
    return code, int(steps or b"0")


def main() -> int:
    here = Path(__file__).resolve().parent
    tests = here.parent
    if sys.path and os.path.abspath(sys.path[0] or os.curdir) == str(here):
        sys.path[0] = os.getcwd()
    sys.path.insert(1, str(tests.parent))  # `tests` importable for the weak KDF
    from tests.weak_kdf_cli import weaken_kdf

    weaken_kdf()
    install(int(os.environ.get("MOSAIC_TEST_KILL_AT", "0")), os.environ.get("MOSAIC_TEST_STEPS_FILE"),
            os.environ.get("MOSAIC_TEST_TRACE_FILE"))
    from mosaic.node.cli.main import main as cli_main

    return cli_main()


if __name__ == "__main__":
    sys.exit(main())
