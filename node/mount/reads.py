"""Reading a stored version: only the chunks a read covers, read ahead while reads are sequential."""

from __future__ import annotations

import bisect

from .chunks import ChunkSource
from .handles import Handle

READ_AHEAD = 8 << 20   # bytes fetched ahead of a sequential reader


async def read_chunks(source: ChunkSource, h: Handle, off: int, size: int) -> bytes | memoryview:
    """`size` bytes at `off` of the version `h` reads (fewer at its end), through `source`."""
    m = h.manifest
    assert m is not None
    end = min(m.size, off + size)
    if off >= end:
        return b""
    first = bisect.bisect_right(h.offs, off) - 1
    last = bisect.bisect_left(h.offs, end)
    frontier = h.offs[h.ahead] if h.ahead < len(h.offs) else m.size
    # sequential: this read starts where one ended, or (the kernel's read-ahead requests
    # arrive out of order) inside the window already being fetched
    if off == h.last_end or (h.ahead and h.offs[min(h.ahead_from, len(h.offs) - 1)] <= off
                             <= frontier):
        if frontier - end < READ_AHEAD // 2:  # refill in large batches, not per read
            start = max(h.ahead, last)
            h.ahead_from = first
            h.ahead = bisect.bisect_left(h.offs, min(m.size, end + READ_AHEAD))
            source.prefetch(m, start, h.ahead)
    else:  # a jump: no read-ahead until reads are sequential again
        h.ahead = h.ahead_from = 0
    h.last_end = end
    parts = await source.chunks(m, first, last)
    pos = h.offs[first]
    out: list[bytes | memoryview] = []
    for data in parts:  # slices are views: the bytes are copied once, by the join
        lo, hi = max(off - pos, 0), min(end - pos, len(data))
        if lo < hi:
            out.append(memoryview(data)[lo:hi] if (lo, hi) != (0, len(data)) else data)
        pos += len(data)
    return out[0] if len(out) == 1 else b"".join(out)
