"""Counters of what the mount did, shown in the file `/.mosaic/stats` (JSON)."""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field


@dataclass
class MountStats:
    """Running totals since the mount started (mutable: the file system counts into it)."""

    chunks_decoded: int = 0      # chunks read from a pack (local or backend) and decoded
    chunks_prefetched: int = 0   # of those, how many read-ahead fetched
    fetch_tasks: int = 0         # worker-thread tasks that read and decoded chunks
    cache_hits: int = 0          # chunk requests answered from the decoded-chunk cache
    bytes_read: int = 0          # bytes returned to readers
    reads: int = 0               # read requests from the kernel
    puts: int = 0                # files stored on close or fsync
    bytes_put: int = 0
    index_changes_seen: int = 0  # index transactions by other writers the watcher noticed
    invalidations: int = 0       # kernel cache entries dropped because of them
    cache_bytes: int = 0         # decoded chunks held now
    cache_capacity: int = 0
    started: float = field(default_factory=time.time)

    def render(self) -> bytes:
        """The stats file's content: one JSON object and a newline."""
        doc = asdict(self)
        doc["pid"] = os.getpid()
        return (json.dumps(doc, sort_keys=True) + "\n").encode()
