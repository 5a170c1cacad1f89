"""Benchmark harness behind ``tools/bench.py``: Mosaic against restic and borg.

Modules, one job each:

* ``common``   -- shared constants, the error type, progress logging
* ``fsutil``   -- file walks, sizes, deletes, byte-for-byte restore checks
* ``corpora``  -- the corpora (ingest steps and restores) and their input hashes
* ``machine``  -- machine load, quiet-machine waits, page-cache warming, header facts
* ``measure``  -- commands run under GNU ``/usr/bin/time -v`` and its output parsed
* ``context``  -- settings and environment shared by the tool adapters
* ``adapters`` -- how Mosaic, restic and borg init, ingest and restore
* ``records``  -- measurement records and the JSONL recorder
* ``runner``   -- what one (corpus, tool, run) does, and the per-corpus loop
* ``summary``  -- medians over runs and the Mosaic/peer ratios
* ``report``   -- the markdown report and the JSON output
* ``cli``      -- command-line options and ``main``
"""
