"""The `mosaic` command line: argument parsing, error handling, exit codes."""

from __future__ import annotations

import argparse
import getpass
import logging
import os
import sys
from collections.abc import Callable

from ..errors import MosaicError, UsageError
from .output import Output

PASS_ENV = "MOSAIC_PASSPHRASE"


def ask_passphrase(confirm: bool = False) -> str | None:
    """The passphrase from $MOSAIC_PASSPHRASE, or a terminal prompt; None if neither."""
    env = os.environ.get(PASS_ENV)
    if env is not None:
        return env
    if not sys.stdin.isatty():
        return None
    p = getpass.getpass("Passphrase: ")
    if confirm and getpass.getpass("Repeat passphrase: ") != p:
        raise UsageError("passphrases do not match")
    return p


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser."""
    from . import admin as cli_admin
    from . import files as cli_files
    from . import peers as cli_peers
    p = argparse.ArgumentParser(prog="mosaic", description="Content-addressed, deduplicating, "
                                "encrypted storage node.")
    p.add_argument("--home", help="node home (default: $MOSAIC_HOME or ~/.local/share/mosaic)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress or messages")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    cli_admin.register(sub)
    cli_files.register(sub)
    cli_peers.register(sub)
    return p




def main(argv: list[str] | None = None) -> int:
    """Entry point of the `mosaic` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    out = Output(json_mode=args.json, quiet=args.quiet)
    logging.basicConfig(format="mosaic: %(levelname)s: %(message)s",
                        level=logging.ERROR if args.quiet else logging.WARNING)
    func: Callable[[argparse.Namespace, Output], int | None] = args.func
    try:
        rc = func(args, out)
        return int(rc or 0)
    except MosaicError as e:
        _fail(out, str(e), e.exit_code)
        return e.exit_code
    except KeyboardInterrupt:
        _fail(out, "interrupted", 130)
        return 130
    except BrokenPipeError:
        try:
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115
        except OSError:
            pass
        return 0
    except OSError as e:
        code = 5
        msg = "disk full" if e.errno == 28 else (e.strerror or str(e))
        where = f": {e.filename}" if getattr(e, "filename", None) else ""
        _fail(out, f"{msg}{where}", code)
        return code
    except Exception as e:  # noqa: BLE001 - the last line of defence: one line, no traceback
        if os.environ.get("MOSAIC_DEBUG"):
            raise
        _fail(out, f"internal error: {type(e).__name__}: {e} (set MOSAIC_DEBUG=1 for details)", 70)
        return 70


def _fail(out: Output, msg: str, code: int) -> None:
    msg = " ".join(str(msg).split())  # always one line
    if out.json_mode:
        out.doc({"error": msg, "exit_code": code})
    sys.stderr.write(f"mosaic: error: {msg}\n")


if __name__ == "__main__":
    sys.exit(main())
