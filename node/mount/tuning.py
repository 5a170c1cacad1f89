"""Process and kernel settings that make a mount fast; each is best effort.

* **Kernel read-ahead.** The kernel sizes a FUSE file system's read requests by the
  read-ahead window of its backing device (`/sys/class/bdi/MAJ:MIN/read_ahead_kb`,
  128 KiB by default). A larger window lets a sequential reader's requests grow to the
  1 MiB FUSE allows, a quarter of the round trips and Python calls for the same bytes.
  Writing it needs root (CI and the benchmarks run as root); without it reads still
  work, in smaller requests.
* **The cyclic garbage collector.** A listing makes thousands of short-lived objects
  (entries, attributes, inodes) and CPython's default thresholds then run a collection
  every 700 allocations, each walking the whole heap of the older generations: about a
  fifth of a listing's CPU. Objects alive after start-up are frozen out of collection and
  young collections run less often. Memory stays bounded: almost everything the mount
  frees is freed by reference counting, and cycles are still collected.
"""

from __future__ import annotations

import gc
import os
from pathlib import Path

from .errmap import log

READ_AHEAD_KB = 1024      # one full-size FUSE read request (max_pages 256 x 4 KiB)
GC_THRESHOLDS = (20_000, 20, 20)


def _unescape(field: str) -> str:
    """A path field of /proc/self/mountinfo (space, tab, newline and backslash are octal)."""
    for code, ch in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, ch)
    return field


def mount_device(mountpoint: Path, mountinfo: str = "/proc/self/mountinfo") -> str | None:
    """The "MAJ:MIN" of the file system mounted at `mountpoint` (the last one), or None.

    Read from mountinfo rather than by stat(2), which on a FUSE mount whose loop has not
    started yet would wait for an answer that never comes.
    """
    found = None
    try:
        with open(mountinfo, encoding="utf-8", errors="replace") as f:
            for line in f:
                parts = line.split(" ")
                if len(parts) > 4 and _unescape(parts[4]) == str(mountpoint):
                    found = parts[2]
    except OSError:
        return None
    return found


def set_read_ahead(mountpoint: Path, kb: int = READ_AHEAD_KB) -> bool:
    """Set the mount's kernel read-ahead window; False (logged) if this system refuses."""
    dev = mount_device(mountpoint)
    if dev is None:
        return False
    knob = f"/sys/class/bdi/{dev}/read_ahead_kb"
    try:
        fd = os.open(knob, os.O_WRONLY)
        try:
            os.write(fd, str(kb).encode())
        finally:
            os.close(fd)
    except OSError as e:
        log.info("kernel read-ahead left as it is (%s: %s)", knob, e.strerror or e)
        return False
    return True


def tune_gc() -> None:
    """Freeze the objects alive now out of collection; collect young objects less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
