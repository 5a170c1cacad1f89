"""Errors raised by the sync protocol.

Every error the `protocol` package raises on bad input derives from one root,
so a connection handler can catch `ProtocolError`, send `Bye` and hang up::

    ProtocolError
    ├── FrameError
    │   ├── FrameTooLarge       length header above the frame limit
    │   └── MalformedFrame      empty frame, or stream ended inside a frame
    ├── BadMessage              undecodable msgpack or a field out of spec
    ├── VersionMismatch         peer speaks another protocol version
    ├── PeerMismatch            Hello's node id is ours, or not the one expected
    ├── UnexpectedMessage       valid message, wrong time (state machine)
    └── LocalProtocolError      *we* misused the API (a bug in the caller)

All but `LocalProtocolError` mean "the peer broke the protocol": the session is
`CLOSED` afterwards and the connection should be dropped. `LocalProtocolError`
follows h11's split between local and remote faults.
"""

from __future__ import annotations

__all__ = [
    "BadMessage",
    "FrameError",
    "FrameTooLarge",
    "LocalProtocolError",
    "MalformedFrame",
    "PeerMismatch",
    "ProtocolError",
    "UnexpectedMessage",
    "VersionMismatch",
]


class ProtocolError(Exception):
    """Root of all sync-protocol errors."""


class FrameError(ProtocolError):
    """The byte stream does not split into valid frames."""


class FrameTooLarge(FrameError):
    """A frame's length header exceeds the configured limit."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"frame of {size} bytes exceeds the limit of {limit} bytes")
        self.size = size
        self.limit = limit


class MalformedFrame(FrameError):
    """An empty frame, or the stream ended in the middle of a frame."""


class BadMessage(ProtocolError):
    """A payload is not valid msgpack, or a message field violates the schema."""


class VersionMismatch(ProtocolError):
    """The peer's Hello announces a protocol version we do not speak."""

    def __init__(self, ours: int, theirs: int) -> None:
        super().__init__(f"peer speaks protocol version {theirs}, we speak {ours}")
        self.ours = ours
        self.theirs = theirs


class PeerMismatch(ProtocolError):
    """The peer's Hello carries our own node id, or not the id we expected."""


class UnexpectedMessage(ProtocolError):
    """A well-formed message arrived in a state where it is not allowed."""


class LocalProtocolError(ProtocolError):
    """The local caller used the session API wrongly (a bug on our side)."""
