"""`python tests/weak_kdf_cli.py ARGS`: the `mosaic` CLI with libsodium's cheapest Argon2id.

For the test suite only. Sealing a key with the real cost (64 MiB, 3 passes) takes
~0.2 s per `init`, `key export` or sealed open, hundreds of times per run; the
tests check what the KDF is used for (sealing, unsealing, wrong passphrases), not
its cost. Nothing in the installed package or its CLI can weaken the KDF: the two
module constants of mosaic.node.store.keys are patched here, in the test's own
child process, before the CLI's entry point runs. A key file records its own KDF
parameters, so homes sealed here open anywhere (and real-cost ones open here).

Started by path rather than with `-m`, so it works from any working folder; the
import path is then made what `python -m mosaic` would have seen (the working
folder first, not this folder), so the child imports the same `mosaic` as before.
"""

from __future__ import annotations

import os
import sys


def weaken_kdf() -> None:
    """Set Argon2id's cost to libsodium's minimum for this process."""
    import nacl.pwhash.argon2id as argon2id

    from mosaic.node.store import keys

    keys.KDF_OPSLIMIT = argon2id.OPSLIMIT_MIN
    keys.KDF_MEMLIMIT = argon2id.MEMLIMIT_MIN


def main() -> int:
    here = os.path.dirname(os.path.abspath(__file__))
    if sys.path and os.path.abspath(sys.path[0] or os.curdir) == here:
        sys.path[0] = os.getcwd()  # as `python -m mosaic` run from the same folder
    weaken_kdf()
    from mosaic.node.cli.main import main as cli_main

    return cli_main()


if __name__ == "__main__":
    sys.exit(main())
