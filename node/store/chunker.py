"""Content-defined chunking (FastCDC 2020, normalized) — pure functions, no I/O of their own.

The gear table is seeded from the node key, so chunk boundaries (and so chunk
sizes) do not reveal content to someone without the key, as restic's random
polynomial and borg's seeded buzhash do.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO

from mosaic.protocol.limits import MAX_BLOB_LEN

from ..errors import UsageError
from .codec import OVERHEAD

if TYPE_CHECKING:
    import pyfastcdc

#: Defaults chosen by measurement (docs/benchmarks.md): 16/48/192 KiB chunks gave
#: the best dedup on the `versions` and `big` corpora at an affordable index size.
DEFAULT_MIN = 16 * 1024
DEFAULT_AVG = 48 * 1024
DEFAULT_MAX = 192 * 1024
#: the largest chunk a peer can receive: its stored object (at most the chunk plus the codec's
#: OVERHEAD, as incompressible chunks are stored raw) must fit one ChunkData blob
MAX_SENDABLE = MAX_BLOB_LEN - OVERHEAD


@dataclass(frozen=True)
class ChunkParams:
    """Chunker sizes, fixed per node at init, and the key-derived gear seed."""

    min_size: int = DEFAULT_MIN
    avg_size: int = DEFAULT_AVG
    max_size: int = DEFAULT_MAX
    seed: int = 0

    def validate(self) -> ChunkParams:
        """Check the sizes against what FastCDC accepts; returns self."""
        if not 64 <= self.min_size <= 1 << 20:
            raise UsageError("chunk min size must be between 64 B and 1 MiB")
        if not 256 <= self.avg_size <= 4 << 20:
            raise UsageError("chunk average size must be between 256 B and 4 MiB")
        if not 1024 <= self.max_size <= 16 << 20:
            raise UsageError("chunk max size must be between 1 KiB and 16 MiB")
        if not self.min_size <= self.avg_size <= self.max_size:
            raise UsageError("chunk sizes must satisfy min <= avg <= max")
        return self

    def check_sendable(self) -> ChunkParams:
        """UsageError if chunks this large could not be sent to a peer; returns self.

        Checked when a node is made (`init`, and `init --key-file`, whose sizes come from the
        key file); a node made before keeps opening.
        """
        if self.max_size > MAX_SENDABLE:
            raise UsageError(f"chunk max size {self.max_size} B is above {MAX_SENDABLE} B, the "
                             f"largest chunk the sync protocol can carry ({MAX_BLOB_LEN} B blobs)")
        return self

    def sizes(self) -> dict[str, int]:
        """The sizes as a dict for the config file (the seed is never written)."""
        return {"min": self.min_size, "avg": self.avg_size, "max": self.max_size}


@functools.lru_cache(maxsize=8)
def _cdc(params: ChunkParams) -> pyfastcdc.FastCDC:
    # pyfastcdc starts its search at min_size rounded down to even, so an odd
    # minimum would allow chunks one byte short of it; new nodes get an even
    # minimum (Node.init), and an odd one is rounded up where avg allows.
    import pyfastcdc  # loaded on first use: reads and restores never cut chunks

    mn = params.min_size + (params.min_size & 1 and params.min_size < params.avg_size)
    return pyfastcdc.FastCDC(params.avg_size, min_size=mn,
                             max_size=params.max_size, normalized_chunking=1,
                             seed=params.seed)


def chunk_buffer(data: bytes | bytearray | memoryview, params: ChunkParams) -> Iterator[memoryview]:
    """Cut `data` into chunks; yields zero-copy views of `data`."""
    if len(data) == 0:
        return
    for c in _cdc(params).cut_buf(data):
        yield c.data


def chunk_stream(stream: BinaryIO, params: ChunkParams) -> Iterator[bytes]:
    """Cut a readable binary stream into chunks; yields owned `bytes` copies.

    Memory stays bounded (about 2 x max chunk size), whatever the stream's length.
    """
    for c in _cdc(params).cut_stream(stream):
        yield bytes(c.data)
