"""The `mosaic` command line: argument parsing, error handling, exit codes."""

from __future__ import annotations

import argparse
import errno
import logging
import os
import sys
from collections.abc import Callable
from typing import NoReturn

from ..errors import MosaicError
from . import admin as cli_admin
from . import files as cli_files
from . import mount as cli_mount
from . import peers as cli_peers
from . import serve as cli_serve
from . import tokens as cli_tokens
from . import upkeep as cli_upkeep
from .common import add_global_options, command_parsers
from .output import Output, safe_text

DISTRIBUTION = "mosaic-store"

# OSErrors that no command turned into a Mosaic error: a path of the wrong kind is bad
# input (2); everything else (disk full, I/O error, ...) is a storage error (5).
_BAD_PATH = {errno.EISDIR, errno.ENOTDIR, errno.EEXIST, errno.ENXIO, errno.ENODEV,
             errno.ELOOP, errno.ENAMETOOLONG}


def version() -> str:
    """The installed distribution's version, or "unknown" (running from a bare checkout)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version
    try:
        return dist_version(DISTRIBUTION)
    except PackageNotFoundError:
        return "unknown"


class _Parser(argparse.ArgumentParser):
    """argparse with the CLI's error format: one line naming the command, exit 2."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"mosaic: error: {self.prog}: {' '.join(message.split())} "
                         f"(see {self.prog} --help)\n")
        sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser.

    The global options (--home, --json, -q) are accepted before the command word and
    after it, on every command and sub-command; the later one wins.
    """
    p = _Parser(prog="mosaic", description="Content-addressed, deduplicating, "
                                "encrypted storage node.")
    add_global_options(p, top=True)
    p.add_argument("--version", action="store_true", help="print the version and exit")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    cli_admin.register(sub)
    cli_files.register(sub)
    cli_upkeep.register(sub)
    cli_peers.register(sub)
    cli_serve.register(sub)
    cli_tokens.register(sub)
    cli_mount.register(sub)
    for cp in command_parsers(p):
        add_global_options(cp)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `mosaic` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    out = Output(json_mode=args.json, quiet=args.quiet)
    if args.version:
        out.line(f"mosaic {version()}")
        out.doc({"program": "mosaic", "distribution": DISTRIBUTION, "version": version()})
        return 0
    if args.command is None:
        parser.error("the following arguments are required: COMMAND")
    logging.basicConfig(format="mosaic: %(levelname)s: %(message)s",
                        level=logging.ERROR if args.quiet else logging.WARNING)
    func: Callable[[argparse.Namespace, Output], int | None] = args.func
    try:
        rc = func(args, out)
        return int(rc or 0)
    except MosaicError as e:
        out.close()
        _fail(out, str(e), e.exit_code)
        return e.exit_code
    except KeyboardInterrupt:
        out.close()
        _fail(out, "interrupted", 130)
        return 130
    except BrokenPipeError:
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return 0
    except OSError as e:
        out.close()
        code = 2 if e.errno in _BAD_PATH else 5
        msg = "disk full" if e.errno == errno.ENOSPC else (e.strerror or str(e))
        where = f": {e.filename}" if getattr(e, "filename", None) else ""
        _fail(out, f"{msg}{where}", code)
        return code
    except Exception as e:  # the last line of defence: one line, no traceback
        out.close()
        if os.environ.get("MOSAIC_DEBUG"):
            raise
        _fail(out, f"internal error: {type(e).__name__}: {e} (set MOSAIC_DEBUG=1 for details)", 70)
        return 70
    finally:
        out.close()


def _fail(out: Output, msg: str, code: int) -> None:
    msg = safe_text(" ".join(str(msg).split()))  # always one line, nothing a terminal obeys
    if out.json_mode:
        out.doc({"error": msg, "exit_code": code})
    sys.stderr.write(f"mosaic: error: {msg}\n")


if __name__ == "__main__":
    sys.exit(main())
