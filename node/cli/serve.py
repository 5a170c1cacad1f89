"""`mosaic serve`: run the node daemon (peers, replication, uploads) in the foreground."""

from __future__ import annotations

import argparse

from ..errors import UsageError
from .common import ask_passphrase, home_of
from .output import Output


def cmd_serve(args: argparse.Namespace, out: Output) -> int:
    """mosaic serve [--listen HOST:PORT]"""
    import logging

    import trio

    from ..cluster import daemon
    from ..store.keys import is_sealed, read_key_file
    h = home_of(args)
    pw = ask_passphrase() if is_sealed(read_key_file(h.key_path)) else None
    level = logging.WARNING if args.quiet else logging.INFO
    logging.getLogger().setLevel(level)
    for hd in logging.getLogger().handlers:
        hd.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    try:
        daemon.split_addr(args.listen)
    except ValueError as e:
        raise UsageError(str(e)) from None
    trio.run(daemon.main, h.root, args.listen, pw)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add `serve` to the parser."""
    p = sub.add_parser("serve", help="run the node daemon (peers, replication, uploads)")
    p.add_argument("--listen", default="127.0.0.1:7447", metavar="HOST:PORT")
    p.set_defaults(func=cmd_serve)
