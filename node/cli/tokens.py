"""`mosaic token`: access tokens for the HTTP face (add, ls, rm)."""

from __future__ import annotations

import argparse
import datetime

from ..cluster.tokens import SCOPES, TokenStore
from ..store.home import HomeLock
from ..store.index import Index
from .common import home_of
from .output import Output


def cmd_token(args: argparse.Namespace, out: Output) -> int:
    """mosaic token add NAME --scope S [--prefix P] | ls | rm NAME"""
    h = home_of(args)
    index = Index(h.index_dir)
    try:
        store = TokenStore(index)
        if args.action == "ls":
            rows = store.all()
            for t in rows:
                when = datetime.datetime.fromtimestamp(t.created).strftime("%Y-%m-%d %H:%M")
                out.line(f"{t.name:20} {t.scope:6} {when}  {t.prefix or '/'}")
            out.doc([t.as_json() for t in rows])
            return 0
        with HomeLock(h, exclusive=False):
            if args.action == "add":
                token, info = store.add(args.name, args.scope, args.prefix or "")
                out.line(token)
                out.info(f"token {info.name!r} ({info.scope}"
                         f"{', prefix ' + info.prefix if info.prefix else ''}) made; "
                         "it is shown only this once")
                out.doc({"token": token, **info.as_json()})
            else:
                store.remove(args.name)
                out.line(f"removed token {args.name}")
                out.doc({"removed": args.name})
        return 0
    finally:
        index.close()


def register(sub: argparse._SubParsersAction) -> None:
    """Add `token` (add, ls, rm) to the parser."""
    p = sub.add_parser("token", help="access tokens for the HTTP API (mosaic serve --http)")
    ps = p.add_subparsers(dest="action", metavar="ACTION")
    ps.required = True
    a = ps.add_parser("add", help="make a token and print it (once)")
    a.add_argument("name", metavar="NAME")
    a.add_argument("--scope", required=True, choices=SCOPES,
                   help="read; write (can read); admin (can write)")
    a.add_argument("--prefix", metavar="P", help="limit the token to names under P")
    a.set_defaults(func=cmd_token)
    ls = ps.add_parser("ls", help="list tokens (names, scopes, prefixes; never the tokens)")
    ls.set_defaults(func=cmd_token)
    r = ps.add_parser("rm", help="revoke a token")
    r.add_argument("name", metavar="NAME")
    r.set_defaults(func=cmd_token)
