"""Hard limits of the wire format (protocol version 3).

Every limit is checked when a message is built *and* when one is decoded, so a
message that passes locally also passes on the peer. docs/protocol.md lists
them in a table; change both together, and bump `PROTOCOL_VERSION` when a limit
shrinks (older peers could send what newer ones refuse).
"""

from __future__ import annotations

PROTOCOL_VERSION = 3  # 2: names <= 400 bytes, no control characters; 3: signed log entries
"""The one version this package speaks; exchanged in Hello."""

HELLO_MAGIC = "mosaic-sync"
"""Wire-only constant in Hello, so a stray client of another protocol fails loudly."""

MAX_FRAME_SIZE = 16 * 1024 * 1024
"""Default largest frame payload (16 MiB); `FrameDecoder(max_size=...)` can change it."""

MAX_UINT = (1 << 63) - 1
"""Every integer on the wire is in 0..MAX_UINT (fits a signed 64-bit column)."""

ID_LEN = 32
"""node ids, origins, file ids, chunk ids and pack ids are 32 bytes (BLAKE3-256)."""

MAX_BLOB_LEN = MAX_FRAME_SIZE - 1024
"""Largest ChunkData blob: leaves room for the message envelope inside one frame."""

MAX_CHUNK_LEN = (1 << 32) - 1
"""Largest chunk plain length and stored-object length (the node's index uses u32)."""

MAX_CHUNKS = 65_536
"""Chunks per manifest (64 GiB at 1 MiB average chunks)."""

MAX_LOCATIONS = 65_536
"""Location hints per manifest."""

MAX_RECORD_BYTES = 8 * 1024 * 1024
"""Upper bound on one log entry's encoded size, so any page fits a default frame."""

MAX_BACKENDS = 16
"""Backend names per location hint."""

MAX_BACKEND_NAME = 64
"""Characters in a backend name (`[A-Za-z0-9_.-]`)."""

MAX_NAME_BYTES = 400
"""UTF-8 bytes in a name: the one limit of protocol/name_rules.py, which keeps every
LMDB key built from a name (with a file ID or a conflict suffix) under 511 bytes."""

MAX_RESOLVES = 256
"""Extra conflict heads one name write may close."""

MAX_ENTRIES = 4096
"""Log entries per Records message."""

MAX_ORIGINS = 4096
"""Origins in one Summary."""

MAX_WANT = 4096
"""Chunk ids per WantChunks."""

MAX_CAPABILITIES = 64
"""Capability strings in Hello."""

MAX_CAPABILITY_LEN = 64
"""Characters in one capability (`[a-z0-9._-]`)."""

MAX_SOFTWARE_LEN = 256
"""Characters in Hello.software."""

MAX_REASON_LEN = 1024
"""Characters in Bye.reason."""

MAX_STR_BYTES = 4096
"""msgpack-level cap on any str (all str fields are checked tighter afterwards)."""

MAX_ARRAY_LEN = 65_536
"""msgpack-level cap on any array (the largest is a manifest's chunk list)."""

SIGNATURE_LEN = 64
"""An Ed25519 signature: every log entry carries its origin's (protocol/signing.py)."""

MAX_CERT_LEN = 4096
"""Bytes of a node certificate (DER) in a membership record."""

MAX_CLOCK_SKEW_MS = 5 * 60 * 1000
"""A name write whose HLC is more than this ahead of the receiver's wall clock is refused."""
