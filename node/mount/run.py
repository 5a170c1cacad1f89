"""Running a mount: checks on the mount point, the FUSE session, signals, clean unmount.

`serve()` holds the home lock shared for the mount's life (as the daemon does, so
gc answers busy), mounts, tunes (tuning.py: the kernel's read-ahead, the garbage
collector), serves requests until `fusermount3 -u`, SIGTERM, SIGINT
or SIGHUP, then stores any file still being written and unmounts.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path

import trio

from ..cluster.engine import Engine
from ..errors import NotFoundError, StorageError, UsageError
from ..store.home import HomeLock
from .chunks import DEFAULT_CACHE
from .stats import MountStats

FUSE_DEVICE = "/dev/fuse"


def check_mountpoint(raw: str | os.PathLike) -> Path:
    """The mount point as an absolute path; NotFoundError (1) if missing, UsageError (2) if it is
    not a folder or already a mount point, StorageError (5) if this system cannot mount."""
    p = Path(raw)
    try:
        if not p.exists():
            raise NotFoundError(f"no such folder: {raw}")
        if not p.is_dir():
            raise UsageError(f"{raw} is not a folder")
        if os.path.ismount(p):
            raise UsageError(f"{raw} is already a mount point")
    except OSError as e:  # e.g. a dead FUSE mount: "transport endpoint is not connected"
        raise UsageError(f"{raw}: {e.strerror or e} (a stale mount? try fusermount3 -u)") from None
    if not os.path.exists(FUSE_DEVICE):
        raise StorageError(f"cannot mount: {FUSE_DEVICE} is missing (is the fuse module loaded?)")
    try:
        import pyfuse3  # noqa: F401
    except ImportError:
        raise StorageError("cannot mount: pyfuse3 is not installed "
                           "(pip install 'mosaic-store[mount]'; it needs libfuse3)") from None
    return p.resolve()


async def serve(engine: Engine, mountpoint: Path, read_only: bool = False,
                cache_bytes: int = DEFAULT_CACHE, ready: Callable[[], None] | None = None) -> None:
    """Mount the node at `mountpoint` and serve until unmounted or signalled."""
    import pyfuse3

    from .fs import MosaicFS
    from .tuning import set_read_ahead, tune_gc
    from .watch import Watcher

    with HomeLock(engine.home, exclusive=False):
        stats = MountStats()
        async with trio.open_nursery() as nursery:
            await nursery.start(_stop_on_signals)
            fs = MosaicFS(engine, nursery, stats, read_only, cache_bytes)
            fs.after_init = lambda: set_read_ahead(mountpoint)
            opts = set(pyfuse3.default_options) | {"fsname=mosaic", "subtype=mosaic"}
            if read_only:
                opts.add("ro")
            try:
                pyfuse3.init(fs, str(mountpoint), opts)
            except (RuntimeError, OSError) as e:
                raise StorageError(f"cannot mount {mountpoint}: {e}") from None
            tune_gc()
            try:
                nursery.start_soon(Watcher(fs).run)
                if ready is not None:
                    ready()
                await pyfuse3.main()
            finally:
                with trio.CancelScope(shield=True):
                    await fs.finish()
                    await trio.to_thread.run_sync(fs.source.close)
                pyfuse3.close(unmount=True)
                nursery.cancel_scope.cancel()


async def _stop_on_signals(task_status: trio.TaskStatus = trio.TASK_STATUS_IGNORED) -> None:
    """End the FUSE loop on SIGTERM, SIGINT or SIGHUP (the loop then unmounts)."""
    import pyfuse3

    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
        task_status.started()
        async for _ in signals:
            pyfuse3.terminate()
            return
