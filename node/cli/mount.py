"""`mosaic mount`: the store as a FUSE file system (node/mount/, docs/mount.md).

Exit codes: 0 mounted (and, with --foreground, unmounted cleanly); 1 the mount point
does not exist; 2 it is not a folder or is already a mount point; 5 this system
cannot mount (no /dev/fuse, no pyfuse3, the kernel refused); 6 no node here;
7 gc is running on the node.
"""

from __future__ import annotations

import argparse
import os
import sys

from ..errors import MosaicError, UsageError
from ..units import parse_size
from .common import ask_passphrase, home_of, open_node
from .output import Output


def _size(text: str) -> int:
    try:
        return parse_size(text)
    except UsageError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _serve(args: argparse.Namespace, mountpoint: object, ready: object) -> None:
    import trio

    from ..mount.run import serve
    with open_node(args) as node:
        trio.run(serve, node, mountpoint, args.read_only, args.cache, ready)


def cmd_mount(args: argparse.Namespace, out: Output) -> int:
    """mosaic mount MOUNTPOINT [--read-only] [--foreground] [--cache SIZE]"""
    from ..mount.run import check_mountpoint
    mountpoint = check_mountpoint(args.mountpoint)
    home = home_of(args)
    if "MOSAIC_PASSPHRASE" not in os.environ:
        from ..store.keys import is_sealed, read_key_file
        if is_sealed(read_key_file(home.key_path)):
            pw = ask_passphrase()
            if pw is not None:
                os.environ["MOSAIC_PASSPHRASE"] = pw  # for this process (and its child) only
    doc = {"mountpoint": str(mountpoint), "read_only": args.read_only, "pid": os.getpid()}
    if args.foreground:
        def ready() -> None:
            out.line(f"mounted at {mountpoint} (pid {os.getpid()}); unmount with "
                     f"fusermount3 -u {mountpoint} or SIGTERM")
            out.doc(doc)
            sys.stdout.flush()
        _serve(args, mountpoint, ready)
        return 0
    return _detached(args, mountpoint, out, doc, home.root / "mount.log")


def _detached(args: argparse.Namespace, mountpoint: object, out: Output, doc: dict,
              log_path: object) -> int:
    """Fork: the child mounts and serves; the parent waits for "mounted" or the child's error."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: a session of its own; once mounted, stdio to /dev/null, logs to HOME
        os.close(r)
        os.setsid()
        code = 0

        def ready() -> None:
            os.write(w, b"0 ok\n")
            os.close(w)
            null = os.open(os.devnull, os.O_RDWR)
            os.dup2(null, 0)
            os.dup2(null, 1)
            os.close(null)
            log = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
            os.dup2(log, 2)
            os.close(log)
        try:
            _serve(args, mountpoint, ready)
        except MosaicError as e:
            code = e.exit_code
            _tell(w, code, str(e))
        except BaseException as e:  # noqa: BLE001 - reported to the parent, one line
            code = 70
            _tell(w, code, f"internal error: {type(e).__name__}: {e}")
        os._exit(code)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        answer = f.read().decode("utf-8", "replace").strip()
    code_s, _, msg = answer.partition(" ")
    if not answer:  # the child died before it could say
        _, status = os.waitpid(pid, 0)
        raise MosaicError(f"the mount process ended (status {status}) before mounting")
    if code_s != "0":
        err = MosaicError(msg)
        err.exit_code = int(code_s) if code_s.isdigit() else 70
        raise err
    out.line(f"mounted at {mountpoint} (pid {pid}); unmount with fusermount3 -u {mountpoint}")
    out.doc({**doc, "pid": pid})
    return 0


def _tell(w: int, code: int, msg: str) -> None:
    try:
        os.write(w, f"{code} {' '.join(msg.split())}\n".encode())
        os.close(w)
    except OSError:
        pass  # already reported "mounted"; the error goes nowhere (stdio is /dev/null)


def register(sub: argparse._SubParsersAction) -> None:
    """Add the verbs of this module to the parser."""
    p = sub.add_parser("mount", help="mount the node as a file system (FUSE)",
                       description="Mount the name directory at MOUNTPOINT: folders and files by "
                       "name, /.by-hash/HASH by content hash, /.mosaic/stats the mount's counters. "
                       "Files written are stored (deduplicated) when closed. Exit codes: 1 no such "
                       "mount point, 2 not a folder or already mounted, 5 cannot mount here "
                       "(no /dev/fuse or pyfuse3), 7 gc is running.")
    p.add_argument("mountpoint", metavar="MOUNTPOINT", help="an existing, empty folder")
    p.add_argument("--read-only", action="store_true", help="refuse every change")
    p.add_argument("--foreground", action="store_true",
                   help="stay in the foreground until unmounted (default: detach once mounted)")
    p.add_argument("--cache", type=_size, default=64 << 20, metavar="SIZE",
                   help="decoded chunks kept in memory (default 64MiB)")
    p.set_defaults(func=cmd_mount)
