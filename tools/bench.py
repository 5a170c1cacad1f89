#!/usr/bin/env python3
"""Benchmark Mosaic against restic and borg on the make-corpus.sh corpora.

Usage::

    python tools/bench.py --corpus /work/bench-corpus --work /work/bench-work \\
        [--corpora versions,big,small] [--runs N] [--peers restic,borg] \\
        [--json OUT.json] [--markdown OUT.md] [--mosaic-bin mosaic] [--quick]

Method (the same as ../shared/bench/peer-bench.md, so figures are comparable):

* Every measured command runs under GNU ``/usr/bin/time -v`` (user/sys CPU,
  peak RSS); wall time is a monotonic clock around it. An untimed ``sync``
  runs before every measured command; the ``sync`` after it is timed
  separately as ``flush_s`` (data the tool left dirty in the page cache).
* Before each (tool, run) the corpus is read once into the page cache and the
  harness waits (bounded) until the rest of the machine uses < 0.25 cores over
  2 s. Every measurement records "other CPU": system-wide busy CPU seconds
  during the command minus the command's own user+sys.
* Each run uses fresh repositories; runs take turns between tools (the order
  rotates per run). Nothing is deleted while measuring: the root filesystem
  is ext4 without a journal, where creating files soon after mass deletes is
  slow. Everything is deleted after each corpus, followed by a pause.
* Every restore is compared with the original (``diff -r`` / ``cmp``). For
  Mosaic, every hash printed by ``put`` is compared with the file's BLAKE3.
* Peak RSS is GNU time's "Maximum resident set size": the largest single
  process of the command's tree, not a sum over processes.
* MB = 10^6 bytes, MiB = 2^20 bytes. Throughput = input bytes / wall seconds.
  Stored bytes = sum of apparent file sizes under the repository directory
  (for Mosaic: the whole node home). Tables give the median [min–max].

The harness lives in ``tools/benchlib/`` (one module per job; see its
``__init__``); this file is only the entry point.

Raw measurements are appended to WORK/measurements.jsonl as they happen.
Exit status: 0 if every command succeeded and every check passed, else 1
(2 for usage errors such as a missing Mosaic CLI).
"""

from __future__ import annotations

import sys

if __package__:  # python -m tools.bench
    from .benchlib.cli import main as _main
else:  # python tools/bench.py (tools/ is on sys.path)
    from benchlib.cli import main as _main


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; return the exit status."""
    return _main(argv, description=__doc__.split("\n\n")[0])


if __name__ == "__main__":
    sys.exit(main())
