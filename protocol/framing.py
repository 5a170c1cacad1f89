"""Length-prefixed frames: a 4-byte big-endian payload length, then the payload.

Sans-io and push-style, like dulwich's PktLineParser: the caller feeds whatever
bytes the transport produced and gets back the complete payloads. A length
above the limit is refused as soon as its 4 header bytes are seen, before any
of the body is buffered; a zero length is malformed (no message is empty).
After an error the decoder stays failed: the stream cannot be resynchronised.
"""

from __future__ import annotations

from .errors import FrameTooLarge, MalformedFrame
from .limits import MAX_FRAME_SIZE

__all__ = ["HEADER_LEN", "FrameDecoder", "encode_frame"]

HEADER_LEN = 4
_MAX_HEADER_VALUE = 0xFFFF_FFFF


def encode_frame(payload: bytes, max_size: int = MAX_FRAME_SIZE) -> bytes:
    """Prefix `payload` with its length; FrameTooLarge / MalformedFrame if it cannot be sent."""
    n = len(payload)
    if n > max_size:
        raise FrameTooLarge(n, max_size)
    if n == 0:
        raise MalformedFrame("refusing to send an empty frame")
    return n.to_bytes(HEADER_LEN, "big") + payload


class FrameDecoder:
    """Incremental frame parser: `feed(bytes) -> [payload, ...]`, any split points."""

    def __init__(self, max_size: int = MAX_FRAME_SIZE) -> None:
        if not 1 <= max_size <= _MAX_HEADER_VALUE:
            raise ValueError(f"max_size must be in 1..{_MAX_HEADER_VALUE}")
        self.max_size = max_size
        self._buf = bytearray()
        self._need: int | None = None  # body length once the header is parsed
        self._failed = False

    @property
    def buffered(self) -> int:
        """Bytes held for a frame that is not complete yet."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[bytes]:
        """Add bytes from the stream; return every payload completed by them."""
        if self._failed:
            raise MalformedFrame("frame decoder already failed")
        buf = self._buf
        buf += data
        out: list[bytes] = []
        pos = 0
        need = self._need
        with memoryview(buf) as view:
            while True:
                if need is None:
                    if len(buf) - pos < HEADER_LEN:
                        break
                    need = int.from_bytes(view[pos : pos + HEADER_LEN], "big")
                    if need > self.max_size or need == 0:
                        self._fail()
                        if need:
                            raise FrameTooLarge(need, self.max_size)
                        raise MalformedFrame("empty frame")
                    pos += HEADER_LEN
                if len(buf) - pos < need:
                    break
                out.append(bytes(view[pos : pos + need]))
                pos += need
                need = None
        self._need = need
        if pos:
            del buf[:pos]
        return out

    def close(self) -> None:
        """Signal end of stream; MalformedFrame if it ended inside a frame."""
        if self._buf or self._need is not None:
            self._fail()
            raise MalformedFrame("stream ended inside a frame")

    def _fail(self) -> None:
        self._failed = True
        self._buf = bytearray()
        self._need = None
