# Mosaic developer tasks. `pip install -e '.[test]'` brings `just` itself (rust-just).

corpus := "../bench-corpus"

# install Mosaic in editable mode with the test tools and system test dependencies
setup:
    pip install -e '.[test]'
    bash tools/install-test-deps.sh

# the whole test suite (HYPOTHESIS_PROFILE=ci for more, derandomized examples)
test *ARGS:
    python -m pytest -q {{ARGS}}

# the suite without the long end-to-end tests (@pytest.mark.slow: crash rounds, daemon clusters)
test-fast *ARGS:
    python -m pytest -q -m "not slow" {{ARGS}}

# ruff and the import contracts of .importlinter
lint:
    ruff check .
    lint-imports

# benchmarks against restic and borg on the shared corpora (builds them if missing)
bench *ARGS:
    test -d {{corpus}}/big || bash ../shared/bench/make-corpus.sh {{corpus}}
    python tools/bench.py --corpus {{corpus}} --work /tmp/mosaic-bench {{ARGS}}

# a short tour on a throwaway node
demo:
    #!/usr/bin/env bash
    set -euo pipefail
    export MOSAIC_HOME=$(mktemp -d)
    mosaic init --no-passphrase
    mosaic put README.md
    cp README.md /tmp/mosaic-demo-copy.md && echo "one more line" >> /tmp/mosaic-demo-copy.md
    mosaic put /tmp/mosaic-demo-copy.md --name copy.md
    mosaic ls
    mosaic stat copy.md
    mosaic get README.md - | head -n 5
