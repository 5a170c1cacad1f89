"""Request bodies: bounded JSON bodies, and streamed bodies handed to a worker thread.

`BodyPipe` bridges the loop and a blocking consumer (the ingest in a worker thread):
a task on the loop reads the body, gathers pieces of about 1 MiB and passes them
through a small channel; the thread reads them with `read`/`readinto` like a file.
Memory per body is a few MiB whatever its size. A client that sends nothing for
`IDLE_S` seconds is cut off (408); one that goes away ends the body early
(`disconnected`), which a resumable upload keeps and a one-shot upload refuses.
"""

from __future__ import annotations

import json
from typing import Any

import trio
from starlette.requests import ClientDisconnect, Request

from .problems import Problem

JSON_LIMIT = 1 << 20
IDLE_S = 30.0
PIECE = 1 << 20
QUEUE = 4


async def json_body(request: Request, limit: int = JSON_LIMIT) -> Any:
    """The request's JSON body (at most `limit` bytes); Problem 4xx otherwise."""
    buf = await raw_json(request, limit)
    try:
        return json.loads(buf)
    except (ValueError, UnicodeDecodeError) as e:
        raise Problem(400, f"the body is not valid JSON: {e}") from None


async def raw_json(request: Request, limit: int = JSON_LIMIT) -> bytes:
    """The bytes of a JSON body, unparsed (at most `limit`); Problem 4xx otherwise."""
    ctype = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    if ctype != "application/json" and not ctype.endswith("+json"):
        raise Problem(415, "expected a JSON body (Content-Type: application/json)")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise Problem(413, f"the body is larger than {limit} bytes")
    buf = bytearray()
    try:
        with trio.fail_after(IDLE_S):
            async for piece in request.stream():
                buf += piece
                if len(buf) > limit:
                    raise Problem(413, f"the body is larger than {limit} bytes")
    except trio.TooSlowError:
        raise Problem(408, "the body did not arrive in time") from None
    except ClientDisconnect:
        raise Problem(400, "the body was cut short") from None
    return bytes(buf)


async def small_body(request: Request, size: int) -> bytes:
    """A body of a declared, small size, read whole; Problem 400 if it is cut short or longer."""
    buf = bytearray()
    try:
        async for piece in _timed(request):
            buf += piece
            if len(buf) > size:
                raise Problem(400, "the body is longer than its Content-Length")
    except ClientDisconnect:
        raise Problem(400, "the body was cut short; nothing was stored") from None
    if len(buf) != size:
        raise Problem(400, "the body was cut short; nothing was stored")
    return bytes(buf)


async def _timed(request: Request):  # noqa: ANN202 - async iterator of body pieces
    """The body's pieces; Problem 408 if the client sends nothing for IDLE_S."""
    stream = request.stream().__aiter__()
    while True:
        try:
            with trio.fail_after(IDLE_S):
                piece = await stream.__anext__()
        except StopAsyncIteration:
            return
        except trio.TooSlowError:
            raise Problem(408, f"no data for {IDLE_S:.0f} s; the body is cut off") from None
        yield piece


class BodyError(Exception):
    """The body could not be read whole (too large, too slow, cut short): the consumer aborts."""

    def __init__(self, problem: Problem):
        super().__init__(problem.detail)
        self.problem = problem


class BodyPipe:
    """A request body as a blocking file-like object for a worker thread."""

    def __init__(self, request: Request, limit: int | None, expected: int | None = None,
                 strict: bool = True):
        """`strict`: a body cut short is an error (BodyError) rather than an early end."""
        self.request, self.limit, self.expected, self.strict = request, limit, expected, strict
        self.send, self.recv = trio.open_memory_channel[Any](QUEUE)
        self.received = 0
        self.disconnected = False
        self._buf = memoryview(b"")
        self._done = False

    # ---- loop side ----------------------------------------------------------
    async def pump(self) -> None:
        """Read the body into the channel; ends with None (end) or a Problem."""
        out: Any = None
        pending: list[bytes] = []
        size = 0
        stream = self.request.stream().__aiter__()
        try:
            async with self.send:
                while True:
                    try:
                        with trio.fail_after(IDLE_S):
                            piece = await stream.__anext__()
                    except StopAsyncIteration:
                        break
                    except ClientDisconnect:
                        self.disconnected = True
                        break
                    except trio.TooSlowError:
                        out = Problem(408, f"no data for {IDLE_S:.0f} s; the body is cut off")
                        break
                    if not piece:
                        continue
                    self.received += len(piece)
                    if self.limit is not None and self.received > self.limit:
                        out = Problem(413, f"the body is larger than {self.limit} bytes")
                        break
                    pending.append(piece)
                    size += len(piece)
                    if size >= PIECE:
                        await self.send.send(b"".join(pending))
                        pending, size = [], 0
                if pending and out is None:
                    await self.send.send(b"".join(pending))
                if out is None and self.expected is not None and self.received < self.expected \
                        and not self.disconnected:
                    self.disconnected = True  # shorter than Content-Length: cut short
                await self.send.send(out)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the consumer stopped early

    # ---- thread side --------------------------------------------------------
    def _next(self) -> bool:
        if self._done:
            return False
        try:
            item = trio.from_thread.run(self.recv.receive)
        except (trio.EndOfChannel, trio.ClosedResourceError, trio.RunFinishedError, trio.Cancelled):
            # no end marker: the pump was cancelled (shutdown); never take it for the end
            self._done = True
            raise BodyError(Problem(503, "the server stopped while the body arrived; "
                                         "nothing of it was kept", "storage")) from None
        if isinstance(item, Problem):
            self._done = True
            raise BodyError(item)
        if item is None:
            self._done = True
            if self.disconnected and self.strict:
                raise BodyError(Problem(400, "the body was cut short; nothing was stored"))
            return False
        self._buf = memoryview(item)
        return True

    def readinto(self, b: memoryview) -> int:
        """Like RawIOBase.readinto: 0 only at the end of the body."""
        while not self._buf:
            if not self._next():
                return 0
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            parts = [bytes(self._buf)]
            self._buf = memoryview(b"")
            while self._next():
                parts.append(bytes(self._buf))
                self._buf = memoryview(b"")
            return b"".join(parts)
        while not self._buf:
            if not self._next():
                return b""
        out = bytes(self._buf[:n])
        self._buf = self._buf[n:]
        return out

    def close(self) -> None:
        """Stop taking the body (the pump stops at its next piece)."""
        self.recv.close()


async def consume(request: Request, pipe: BodyPipe, fn, *args):  # noqa: ANN001, ANN201
    """Run `fn(*args)` (which reads `pipe`) in a worker thread while the body is pumped in."""
    ctx = request.app.state.ctx
    result: list[Any] = []
    async with trio.open_nursery() as n:
        n.start_soon(pipe.pump)
        try:
            result.append(await ctx.run(fn, *args))
        except BodyError as e:
            n.cancel_scope.cancel()
            raise e.problem from None
        except BaseException:
            n.cancel_scope.cancel()
            raise
        finally:
            pipe.close()  # no checkpoint here: a cancelled scope must not replace the error
    return result[0]
