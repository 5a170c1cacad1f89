"""`mosaic serve --http`: the HTTP face as a daemon service, served by hypercorn's trio worker.

Plain HTTP is allowed only on loopback addresses; anywhere else a certificate is
required (`--http-tls-cert/--http-tls-key`, or `--http-tls-node` for the node's own
identity certificate).
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import trio
from hypercorn.config import Config
from hypercorn.trio import serve

from ..cluster.identity import CERT_FILE, KEY_FILE
from ..cluster.tokens import TokenStore
from ..errors import UsageError
from . import wire
from .app import build_app
from .batch import PutBatcher
from .context import Ctx
from .tus import reap
from .uploads import EXPIRE_S, Uploads, uploads_dir

log = logging.getLogger("mosaic.http")

READ_TIMEOUT_S = 60          # a client that sends nothing for this long is dropped
KEEP_ALIVE_S = 30
MAX_INCOMPLETE = 256 * 1024  # h11's cap on a request head; the app answers 431 above 32 KiB


@dataclass(frozen=True)
class HttpOptions:
    """What `mosaic serve --http` was given."""

    host: str
    port: int
    cert: Path | None = None
    key: Path | None = None
    node_cert: bool = False
    upload_expiry_s: float = EXPIRE_S


def is_loopback(host: str) -> bool:
    """True if every address `host` names is a loopback address."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(i[4][0].split("%")[0]).is_loopback for i in infos)


def check_options(opts: HttpOptions) -> None:
    """UsageError (one line, exit 2) for a plain-HTTP address off loopback or half a TLS pair."""
    if (opts.cert is None) != (opts.key is None):
        raise UsageError("--http-tls-cert and --http-tls-key go together")
    if opts.cert is not None and opts.node_cert:
        raise UsageError("give either --http-tls-cert/--http-tls-key or --http-tls-node")
    for p in (opts.cert, opts.key):
        if p is not None and not p.is_file():
            raise UsageError(f"no such file: {p}")
    if opts.cert is None and not opts.node_cert and not is_loopback(opts.host):
        raise UsageError(f"plain HTTP is allowed only on loopback; {opts.host} needs TLS "
                         "(--http-tls-cert CERT --http-tls-key KEY, or --http-tls-node)")


def _config(opts: HttpOptions, home_root: Path) -> Config:
    cfg = Config()
    host = f"[{opts.host}]" if ":" in opts.host and not opts.host.startswith("[") else opts.host
    cfg.bind = [f"{host}:{opts.port}"]
    cfg.accesslog = None
    cfg.errorlog = logging.getLogger("mosaic.http.server")
    cfg.read_timeout = READ_TIMEOUT_S
    cfg.keep_alive_timeout = KEEP_ALIVE_S
    cfg.keep_alive_max_requests = 10_000
    cfg.h11_max_incomplete_size = MAX_INCOMPLETE
    cfg.include_server_header = False
    cfg.graceful_timeout = 2.0
    if opts.cert is not None:
        cfg.certfile, cfg.keyfile = str(opts.cert), str(opts.key)
    elif opts.node_cert:
        cfg.certfile, cfg.keyfile = str(home_root / CERT_FILE), str(home_root / KEY_FILE)
    return cfg


def http_service(opts: HttpOptions) -> Callable[..., Awaitable[None]]:
    """The daemon service: `await nursery.start(service, daemon)`."""

    async def service(daemon, task_status=trio.TASK_STATUS_IGNORED) -> None:  # noqa: ANN001
        engine = daemon.engine
        root = engine.home.root
        ups = Uploads(engine, daemon.events, uploads_dir(root), opts.upload_expiry_s)
        await trio.to_thread.run_sync(ups.load)
        secure = opts.cert is not None or opts.node_cert
        ctx = Ctx(engine=engine, events=daemon.events, tokens=TokenStore(engine.index),
                  daemon=daemon, secure=secure, uploads=ups, batcher=PutBatcher(engine))
        app = build_app(ctx)
        wire.install()  # problem documents for requests hypercorn refuses itself
        cfg = _config(opts, root)
        async with trio.open_nursery() as n:
            bound = await n.start(lambda task_status: serve(app, cfg, task_status=task_status))
            log.info("http: serving on %s", ", ".join(bound))
            n.start_soon(reap, ctx)
            task_status.started(bound)

    return service
