"""WebDAVBackend specifics: auth failures, status mapping, servers ignoring Range."""

from __future__ import annotations

import traceback

import httpx
import pytest
import trio

from mosaic.backends import NotFound, PermanentError, QuotaExceeded, TransientError
from mosaic.backends._http import read_range, status_error
from mosaic.backends.webdav import WebDAVBackend

from . import _servers
from .conftest import WebDAVEnv


async def test_wrong_password_is_permanent_and_not_shown(webdav_env: WebDAVEnv) -> None:
    wrong = "not-the-password-" + webdav_env.password[::-1]
    async with WebDAVBackend("dav", webdav_env.url, webdav_env.username, wrong,
                             prefix="authcheck") as b:
        for call in (b.put("x", b"1"), b.get("x"), b.stat("x"), b.list()):
            with pytest.raises(PermanentError) as info:
                await call
            assert "401" in str(info.value)
            text = str(info.value) + "".join(traceback.format_exception(info.value))
            assert wrong not in text


async def test_no_credentials_is_permanent(webdav_env: WebDAVEnv) -> None:
    async with WebDAVBackend("dav", webdav_env.url, prefix="anon") as b:
        with pytest.raises(PermanentError, match="401"):
            await b.put("x", b"1")


async def test_missing_base_collection_is_permanent(webdav_env: WebDAVEnv) -> None:
    async with WebDAVBackend("dav", webdav_env.url + "no/such/dir/", webdav_env.username,
                             webdav_env.password, prefix="p") as b:
        with pytest.raises(PermanentError):
            await b.put("x", b"1")
        assert await b.list() == []


async def test_unreachable_server_is_transient() -> None:
    async with WebDAVBackend("dav", _servers.closed_port_url(), "u", "p") as b:
        with pytest.raises(TransientError):
            await b.get("x")


@pytest.mark.parametrize(
    ("status", "put_exc", "get_exc"),
    [(507, QuotaExceeded, QuotaExceeded), (503, TransientError, TransientError),
     (500, TransientError, TransientError), (403, PermanentError, PermanentError),
     (404, PermanentError, NotFound)],  # put never answers NotFound
)
async def test_http_errors_from_a_real_socket(
    status: int, put_exc: type[Exception], get_exc: type[Exception]
) -> None:
    with _servers.canned_http_server(status) as url:
        async with WebDAVBackend("dav", url, "u", "pw-canned") as b:
            with pytest.raises(put_exc):
                await b.put("top-level-object", b"1")
            with pytest.raises(get_exc):
                await b.get("x", 0, 10)
    puts = [r for r in url.requests if r.startswith("PUT ")]
    # one try to a temp name (404: a second one after re-creating the folders)
    assert len(puts) == (2 if status == 404 else 1) and "/.tmp-" in puts[0]
    assert f"DELETE {puts[0][4:]}" in url.requests  # and the temp is cleaned up


async def test_failed_move_removes_the_temp() -> None:
    with _servers.canned_http_server(201, by_method={"MOVE": 507}) as url:
        async with WebDAVBackend("dav", url, "u", "pw-canned") as b:
            with pytest.raises(QuotaExceeded):
                await b.put("obj", b"1")
    methods = [r.split()[0] for r in url.requests]
    assert methods == ["PUT", "MOVE", "DELETE"]
    assert url.requests[2].endswith(url.requests[0].split("/")[-1])


async def test_unanswered_move_leaves_the_temp_alone() -> None:
    """A MOVE may be half done (old value deleted): deleting the temp then could
    lose both values, so the temp stays for sweep_temp."""
    with _servers.canned_http_server(201, by_method={"MOVE": 0}) as url:
        async with WebDAVBackend("dav", url, "u", "pw-canned") as b:
            with pytest.raises(TransientError):
                await b.put("obj", b"1")
    assert [r.split()[0] for r in url.requests] == ["PUT", "MOVE"]


async def test_cancelled_move_still_completes() -> None:
    """Cancelling a put during its MOVE waits for the MOVE (it is the commit)."""
    with _servers.canned_http_server(201) as url:
        async with WebDAVBackend("dav", url, "u", "pw-canned") as b:
            real = b._request
            moved = False
            scope = trio.CancelScope()

            async def slow_request(
                op: str, name: str, method: str, rel: str, **kw: object
            ) -> httpx.Response:
                nonlocal moved
                if method == "MOVE":
                    scope.cancel()  # the caller gives up in the middle of the commit
                    await trio.sleep(0.2)
                    moved = True
                return await real(op, name, method, rel, **kw)  # type: ignore[arg-type]

            b._request = slow_request  # type: ignore[method-assign]
            with scope:
                await b.put("obj", b"1")
                await trio.sleep(1)  # not reached: cancelled right after the commit
            assert moved and scope.cancelled_caught
    assert [r.split()[0] for r in url.requests] == ["PUT", "MOVE"]


def test_credentials_in_url_are_refused() -> None:
    with pytest.raises(ValueError):
        WebDAVBackend("dav", "http://user:secret@127.0.0.1:1/dav/")
    with pytest.raises(ValueError):
        WebDAVBackend("dav", "ftp://127.0.0.1/")


def test_status_mapping() -> None:
    assert isinstance(status_error("x", 507), QuotaExceeded)
    assert isinstance(status_error("x", 413), QuotaExceeded)
    assert isinstance(status_error("x", 429), TransientError)
    assert isinstance(status_error("x", 502), TransientError)
    assert isinstance(status_error("x", 401), PermanentError)
    assert isinstance(status_error("x", 410), NotFound)
    assert isinstance(status_error("x", 400), PermanentError)


VALUE = bytes(range(256)) * 4


def _reply(status: int, body: bytes, headers: dict[str, str] | None = None) -> httpx.AsyncClient:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=body, headers=headers or {})

    return httpx.AsyncClient(transport=httpx.MockTransport(handler))


@pytest.mark.parametrize(("offset", "length"), [(0, 10), (100, 50), (1000, 100), (0, None), (500, None)])
async def test_read_range_when_server_ignores_range(offset: int, length: int | None) -> None:
    async with _reply(200, VALUE) as client, client.stream("GET", "http://h/x") as r:
        got = await read_range(r, offset, length)
    want = VALUE[offset:] if length is None else VALUE[offset : offset + length]
    assert got == want


async def test_read_range_partial_content() -> None:
    body = VALUE[100:150]
    headers = {"Content-Range": f"bytes 100-149/{len(VALUE)}"}
    async with _reply(206, body, headers) as client, client.stream("GET", "http://h/x") as r:
        assert await read_range(r, 100, 50) == body
    headers = {"Content-Range": f"bytes {len(VALUE)}-{len(VALUE) - 1}/{len(VALUE)}"}
    async with _reply(206, b"", headers) as client, client.stream("GET", "http://h/x") as r:
        assert await read_range(r, len(VALUE), 5) == b""
