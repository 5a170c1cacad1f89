"""What the HTTP face's handlers (and the web UI's, node/http/ui/) share: `Ctx`.

Fields of `Ctx` (a frozen dataclass, built once per app by `service.py` or a test):

- `engine`   the daemon's `Engine` (node/cluster/engine.py): every verb (resolve, read,
             ls, list_folder, mkdir, rmdir, rm, mv, stat, export, import_, warm...). Its
             verbs block: call them through `ctx.run`, never on the loop.
- `events`   the daemon's `EventBus` (node/cluster/events.py): `publish(kind, **data)`,
             `subscribe()` (a bounded channel of `Event`; `.as_json()`), `recent` (a deque).
- `daemon`   the `Daemon` (node/cluster/daemon.py) or None in a bare engine test: `identity`
             (node ID), `live` (connected peers), `peers` (the peers table), `db_lock`.
- `tokens`   the `TokenStore` (node/cluster/tokens.py): `check(token) -> TokenInfo | None`.
- `uploads`  the tus uploads as stored (node/http/uploads.py `Uploads`), for the UI's
             upload list.
- `batcher`  group commit of small PUTs (node/http/batch.py): `await ctx.batcher.put(ctx,
             data, name)` stores bytes under a name and returns the PUT's JSON document.
- `secure`   True when served over TLS (cookies get `Secure`).
- `run(fn, *args)`   await a blocking call in a worker thread (cancellable by abandoning it).
- `write(fn, *args)` the same, for a short index write: serialised with the daemon's own
             store writes (its `db_lock`).
- `sessions` the browser sessions (node/http/auth.py `Sessions`); `limiter_auth` counts
             failed attempts per client address (auth.py `FailureLimiter`).
- `limiter`  the capacity limiter of `run`/`write`; `db_lock` stands in for the daemon's lock
             when there is no daemon.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import trio

from ..cluster.engine import Engine
from ..cluster.events import EventBus
from ..cluster.tokens import TokenStore
from .auth import FailureLimiter, Sessions
from .uploads import Uploads

if TYPE_CHECKING:
    from ..cluster.daemon import Daemon

T = TypeVar("T")

# blocking calls of the HTTP face run at most this many at once (the trio default is 40)
THREADS = 24


@dataclass(frozen=True)
class Ctx:
    """The HTTP face's view of the daemon (see the module docstring for each field)."""

    engine: Engine
    events: EventBus
    tokens: TokenStore
    daemon: Daemon | None = None
    secure: bool = False
    limiter: trio.CapacityLimiter = field(default_factory=lambda: trio.CapacityLimiter(THREADS))
    db_lock: trio.Lock = field(default_factory=trio.Lock)
    sessions: Sessions = field(default_factory=Sessions)
    limiter_auth: FailureLimiter = field(default_factory=FailureLimiter)
    uploads: Uploads | None = None
    batcher: Any = None  # batch.PutBatcher: small PUTs share put sessions

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` in a worker thread."""
        return await trio.to_thread.run_sync(fn, *args, limiter=self.limiter)

    async def write(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` in a worker thread, one store write at a time with the daemon's."""
        lock = self.daemon.db_lock if self.daemon is not None else self.db_lock
        async with lock:
            return await trio.to_thread.run_sync(fn, *args, limiter=self.limiter)
