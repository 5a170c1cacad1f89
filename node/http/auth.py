"""Who is asking: bearer tokens, browser sessions with CSRF, and the failed-attempt limiter.

Every request to /v1 (but the OpenAPI document and tus OPTIONS) needs a principal:
`Authorization: Bearer TOKEN`, or the `mosaic_session` cookie made by POST /v1/session
from a token. A cookie-authenticated request that changes state must carry
`X-CSRF-Token` equal to its session's csrf value, and is refused when the browser
says it comes from another site (Origin or Sec-Fetch-Site). Repeated failed attempts
from one client address are answered 429 with Retry-After until the window has passed;
a valid token still works meanwhile (people behind the same address are not locked out;
tokens are 256-bit random, so the limit slows scanners rather than guards the secret).

For the web UI: `session_of(request)` and `require(request, scope)`.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections import OrderedDict, deque
from dataclasses import dataclass

from starlette.requests import HTTPConnection

from ..cluster.tokens import Grant, TokenInfo, TokenStore, digest
from .problems import Problem

COOKIE = "mosaic_session"
CSRF_HEADER = "x-csrf-token"
SESSION_TTL_S = 12 * 3600.0
MAX_SESSIONS = 10_000
FAIL_LIMIT = 10          # failed attempts per address ...
FAIL_WINDOW_S = 60.0     # ... within this window, then 429
MAX_ADDRESSES = 10_000
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class Principal(Grant):
    """An authenticated caller: the token's name, scope and prefix; csrf for a session
    (empty for a bearer token)."""

    csrf: str = ""

    def as_json(self) -> dict:
        return {"name": self.name, "scope": self.scope, "prefix": self.prefix, "csrf": self.csrf}


@dataclass
class _Session:
    token_digest: bytes
    csrf: str
    expires: float


class Sessions:
    """Browser sessions in memory (a daemon restart signs everyone out), bounded in number."""

    def __init__(self) -> None:
        self._by_id: OrderedDict[str, _Session] = OrderedDict()

    def create(self, token: str) -> tuple[str, str]:
        """A new session for a (checked) token: (session id, csrf)."""
        sid, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
        self._by_id[sid] = _Session(digest(token), csrf, time.time() + SESSION_TTL_S)
        while len(self._by_id) > MAX_SESSIONS:
            self._by_id.popitem(last=False)
        return sid, csrf

    def get(self, sid: str) -> _Session | None:
        s = self._by_id.get(sid)
        if s is None:
            return None
        if s.expires < time.time():
            del self._by_id[sid]
            return None
        return s

    def drop(self, sid: str) -> None:
        self._by_id.pop(sid, None)


class FailureLimiter:
    """Failed authentication attempts per client address, in a sliding window."""

    def __init__(self, limit: int = FAIL_LIMIT, window: float = FAIL_WINDOW_S):
        self.limit, self.window = limit, window
        self._fails: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, addr: str, now: float) -> deque[float]:
        q = self._fails.get(addr)
        if q is None:
            return deque()
        while q and q[0] <= now - self.window:
            q.popleft()
        return q

    def blocked_for(self, addr: str) -> int:
        """Seconds until `addr` may try again (0: it may now)."""
        now = time.monotonic()
        q = self._recent(addr, now)
        if len(q) < self.limit:
            return 0
        return max(1, int(q[-self.limit] + self.window - now + 0.999))

    def fail(self, addr: str) -> None:
        q = self._fails.setdefault(addr, deque(maxlen=self.limit * 2))
        q.append(time.monotonic())
        self._fails.move_to_end(addr)
        while len(self._fails) > MAX_ADDRESSES:
            self._fails.popitem(last=False)


def _ctx(conn: HTTPConnection):  # noqa: ANN202 - the app's Ctx (import cycle otherwise)
    return conn.app.state.ctx


def _client(conn: HTTPConnection) -> str:
    return conn.client.host if conn.client else "?"


def _principal(info: TokenInfo, csrf: str = "") -> Principal:
    return Principal(info.name, info.scope, info.prefix, csrf)


def _bearer(conn: HTTPConnection) -> str | None:
    h = conn.headers.get("authorization")
    if h is None:
        return None
    kind, _, value = h.partition(" ")
    return value.strip() if kind.lower() == "bearer" else ""


async def _resolve(conn: HTTPConnection) -> Principal | None:
    """The principal of a request (None: no credentials), 401 for bad ones."""
    ctx = _ctx(conn)
    tokens: TokenStore = ctx.tokens
    token = _bearer(conn)
    if token is not None:
        info = tokens.check(token) if token else None
        if info is None:
            raise _unauthorized(conn, "invalid token")
        return _principal(info)
    sid = conn.cookies.get(COOKIE)
    if sid:
        s = ctx.sessions.get(sid)
        if s is None:
            raise _unauthorized(conn, "session expired or signed out")
        info = _info_by_digest(tokens, s.token_digest)
        if info is None:
            ctx.sessions.drop(sid)
            raise _unauthorized(conn, "the session's token was revoked")
        _check_browser(conn, s.csrf)
        return _principal(info, s.csrf)
    return None


def _info_by_digest(tokens: TokenStore, d: bytes) -> TokenInfo | None:
    with tokens.index.read() as txn:
        v = txn.get(d, db=tokens.db)
    return TokenStore._info(v) if v is not None else None


def _check_browser(conn: HTTPConnection, csrf: str) -> None:
    """Cookie requests: same-site only; state changes carry the session's CSRF token."""
    check_same_origin(conn)
    if conn.scope.get("method", "GET") not in SAFE_METHODS:
        sent = conn.headers.get(CSRF_HEADER, "")
        if not hmac.compare_digest(sent.encode(), csrf.encode()):
            raise Problem(403, "missing or wrong X-CSRF-Token")


def check_same_origin(conn: HTTPConnection) -> None:
    """Problem 403 if the browser says the request comes from another site or origin."""
    site = conn.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        raise Problem(403, "cross-site request refused")
    origin = conn.headers.get("origin")
    if origin is not None and origin != "null":
        host = conn.headers.get("host", "")
        if origin.split("://", 1)[-1] != host:
            raise Problem(403, "cross-origin request refused")
    elif origin == "null":
        raise Problem(403, "cross-origin request refused")


def _unauthorized(conn: HTTPConnection, detail: str) -> Problem:
    """401, or 429 once this address has failed too often (the failure counts either way)."""
    ctx = _ctx(conn)
    addr = _client(conn)
    wait = ctx.limiter_auth.blocked_for(addr)
    ctx.limiter_auth.fail(addr)
    if wait:
        return Problem(429, "too many failed attempts; try again later",
                       headers={"Retry-After": str(wait)})
    return Problem(401, detail, headers={"WWW-Authenticate": 'Bearer realm="mosaic"'})


def unauthorized(conn: HTTPConnection, detail: str) -> Problem:
    """The problem for a failed sign-in attempt (401, or 429 when locked out)."""
    return _unauthorized(conn, detail)


async def session_of(request: HTTPConnection) -> Principal | None:
    """The caller (by token or session cookie), or None if it sent no credentials.

    Raises Problem 401 for bad credentials, 403 for a cross-site or CSRF-less cookie
    request, 429 while the address is locked out.
    """
    cached = request.scope.get("mosaic.principal")
    if cached is not None:
        return cached
    p = await _resolve(request)
    if p is not None:
        request.scope["mosaic.principal"] = p
    return p


async def require(request: HTTPConnection, scope: str = "read", name: str | None = None) -> Principal:
    """The caller, who must hold `scope` (and cover `name`, if given); Problem otherwise."""
    p = await session_of(request)
    if p is None:
        raise _unauthorized(request, "missing credentials (Authorization: Bearer TOKEN)")
    if not p.allows(scope):
        raise Problem(403, f"this token's scope is {p.scope}; {scope} is needed")
    if name is not None and not p.covers(name):
        raise Problem(403, "outside this token's prefix")
    return p
