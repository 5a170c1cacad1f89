"""RcloneBackend specifics: the rcd child's lifecycle and failure modes."""

from __future__ import annotations

from pathlib import Path

import pytest

from mosaic.backends import PermanentError
from mosaic.backends.rclone import RcloneBackend


def make(tmp_path: Path, rclone_bin: str, **kw: object) -> RcloneBackend:
    return RcloneBackend("rc", f":local:{tmp_path / 'store'}", rclone_binary=rclone_bin,
                         config_path=str(tmp_path / "rclone.conf"), **kw)  # type: ignore[arg-type]


async def test_close_stops_rcd(tmp_path: Path, rclone_bin: str) -> None:
    b = make(tmp_path, rclone_bin)
    await b.put("x", b"1")
    d = b._daemon
    assert d is not None and d.alive()
    await b.close()
    assert d.proc.poll() is not None
    assert not d._reader.is_alive()
    await b.close()
    with pytest.raises(PermanentError, match="closed"):
        await b.get("x")


async def test_crashed_rcd_is_restarted(tmp_path: Path, rclone_bin: str) -> None:
    async with make(tmp_path, rclone_bin) as b:
        await b.put("x", b"hello")
        d = b._daemon
        assert d is not None
        d.proc.kill()
        d.proc.wait(5)
        assert await b.get("x") == b"hello"
        assert b._daemon is not d and b._daemon is not None and b._daemon.alive()


async def test_missing_binary_is_permanent(tmp_path: Path) -> None:
    async with make(tmp_path, "/nonexistent/rclone") as b:
        with pytest.raises(PermanentError, match="not found"):
            await b.put("x", b"1")


async def test_unknown_remote_is_permanent(tmp_path: Path, rclone_bin: str) -> None:
    b = RcloneBackend("rc", "nosuchremote:bucket", rclone_binary=rclone_bin,
                      config_path=str(tmp_path / "rclone.conf"))
    async with b:
        with pytest.raises(PermanentError):
            await b.put("x", b"1")
        with pytest.raises(PermanentError):
            await b.list()


async def test_rc_password_not_on_command_line(tmp_path: Path, rclone_bin: str) -> None:
    async with make(tmp_path, rclone_bin) as b:
        await b.put("x", b"1")
        d = b._daemon
        assert d is not None
        cmdline = Path(f"/proc/{d.proc.pid}/cmdline").read_bytes().decode(errors="replace")
        assert d.password not in cmdline
        assert "127.0.0.1:0" in cmdline.replace("\0", " ")


async def test_forgotten_backend_stops_rcd(tmp_path: Path, rclone_bin: str) -> None:
    import gc

    b = make(tmp_path, rclone_bin)
    await b.put("x", b"1")
    assert b._daemon is not None
    proc = b._daemon.proc
    await b._close_client()
    del b
    gc.collect()
    assert proc.poll() is not None


async def test_cancelled_commit_still_completes(tmp_path: Path, rclone_bin: str) -> None:
    """Cancelling a put after its upload waits for the delete+move commit: once
    the old value is deleted, only finishing the move avoids losing both."""
    import trio

    async with make(tmp_path, rclone_bin) as b:
        await b.put("obj", b"old")
        real = b._post
        scope = trio.CancelScope()

        async def slow_post(op: str, name: str, path: str, **kw: object) -> dict:
            if path == "operations/movefile":
                scope.cancel()  # the caller gives up in the middle of the commit
                await trio.sleep(0.2)
            return await real(op, name, path, **kw)  # type: ignore[arg-type]

        b._post = slow_post  # type: ignore[method-assign]
        with scope:
            await b.put("obj", b"new value")
            await trio.sleep(1)  # not reached: cancelled right after the commit
        assert scope.cancelled_caught
        b._post = real  # type: ignore[method-assign]
        assert await b.get("obj") == b"new value"
        assert [p.name for p in (tmp_path / "store").iterdir()] == ["obj"]
