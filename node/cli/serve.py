"""`mosaic serve`: run the node daemon (peers, replication, uploads) in the foreground,
with the HTTP face when `--http HOST:PORT` is given."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import UsageError
from .common import ask_passphrase, home_of
from .output import Output


def _http_services(args: argparse.Namespace) -> tuple:
    """The HTTP face as a daemon service, if --http was given (options checked first)."""
    if not args.http:
        if args.http_tls_cert or args.http_tls_key or args.http_tls_node:
            raise UsageError("--http-tls-* options need --http HOST:PORT")
        return ()
    from ..cluster import daemon
    from ..http.service import HttpOptions, check_options, http_service
    try:
        host, port = daemon.split_addr(args.http)
    except ValueError as e:
        raise UsageError(f"--http: {e}") from None
    if not 0 <= port <= 65535:
        raise UsageError(f"--http: port out of range: {port}")
    opts = HttpOptions(host, port,
                       Path(args.http_tls_cert) if args.http_tls_cert else None,
                       Path(args.http_tls_key) if args.http_tls_key else None,
                       bool(args.http_tls_node), float(args.http_upload_expiry))
    check_options(opts)
    return (http_service(opts),)


def cmd_serve(args: argparse.Namespace, out: Output) -> int:
    """mosaic serve [--listen HOST:PORT] [--http HOST:PORT [--http-tls-cert C --http-tls-key K]]"""
    import logging

    import trio

    from ..cluster import daemon
    from ..store.keys import is_sealed, read_key_file
    h = home_of(args)
    try:
        daemon.split_addr(args.listen)
    except ValueError as e:
        raise UsageError(str(e)) from None
    services = _http_services(args)
    pw = ask_passphrase() if is_sealed(read_key_file(h.key_path)) else None
    level = logging.WARNING if args.quiet else logging.INFO
    logging.getLogger().setLevel(level)
    for hd in logging.getLogger().handlers:
        hd.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    trio.run(daemon.main, h.root, args.listen, pw, services)
    return 0


def _seconds(s: str) -> float:
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {s!r}") from None
    if not v > 0:
        raise argparse.ArgumentTypeError("must be more than 0")
    return v


def register(sub: argparse._SubParsersAction) -> None:
    """Add `serve` to the parser."""
    p = sub.add_parser("serve", help="run the node daemon (peers, replication, uploads, HTTP)")
    p.add_argument("--listen", default="127.0.0.1:7447", metavar="HOST:PORT")
    p.add_argument("--http", metavar="HOST:PORT",
                   help="serve the HTTP API and web UI here (plain HTTP on loopback only)")
    p.add_argument("--http-tls-cert", metavar="CERT", help="TLS certificate (PEM) for --http")
    p.add_argument("--http-tls-key", metavar="KEY", help="its private key (PEM)")
    p.add_argument("--http-tls-node", action="store_true",
                   help="serve --http over TLS with the node's own certificate")
    p.add_argument("--http-upload-expiry", type=_seconds, default=24 * 3600.0, metavar="SECONDS",
                   help="unfinished resumable uploads expire after this long idle (default 1 day)")
    p.set_defaults(func=cmd_serve)
