"""The corpora: which inputs each one ingests (in order) and which it restores."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .common import BenchError
from .fsutil import blake3_hex, walk_files

QUICK_BIG_BYTES = 64 << 20
QUICK_INSERT_BYTES = 1 << 20  # b.bin has 1 MiB inserted near the start


@dataclass(frozen=True)
class Step:
    """One ingest: snapshot name and path relative to the corpus root."""

    name: str
    rel: str


@dataclass
class Corpus:
    """A corpus: root directory (the cwd of every ingest), ingests, restores."""

    name: str
    root: Path
    steps: list[Step]
    restores: list[str]

    def step(self, name: str) -> Step:
        """Return the step called ``name``."""
        return next(s for s in self.steps if s.name == name)

    def path(self, step: Step) -> Path:
        """Absolute path of a step's input."""
        return self.root / step.rel


def versions_corpus(root: Path, quick: bool) -> Corpus:
    """versions/v1..v6 (quick: v1..v2) into one repository; restore the last."""
    count = 2 if quick else 6
    steps = [Step(f"v{i}", f"versions/v{i}") for i in range(1, count + 1)]
    return Corpus("versions", root, steps, [steps[-1].name])


def big_corpus(root: Path, quick: bool, work: Path) -> Corpus:
    """big/a.bin then big/b.bin (quick: 64 MiB slices); restore b then a."""
    if quick:
        root = make_quick_big(root, work / "quick-corpus")
    steps = [Step("a", "big/a.bin"), Step("b", "big/b.bin")]
    return Corpus("big", root, steps, ["b", "a"])


def small_corpus(root: Path, quick: bool) -> Corpus:
    """small/ (the CPython stdlib; quick: small/idlelib) as one ingest."""
    rel = "small/idlelib" if quick and (root / "small/idlelib").is_dir() else "small"
    return Corpus("small", root, [Step("small", rel)], ["small"])


def make_quick_big(src_root: Path, dst_root: Path) -> Path:
    """Write 64 MiB prefixes of a.bin and b.bin (b: + the 1 MiB insert)."""
    sizes = {"a.bin": QUICK_BIG_BYTES, "b.bin": QUICK_BIG_BYTES + QUICK_INSERT_BYTES}
    (dst_root / "big").mkdir(parents=True, exist_ok=True)
    for name, size in sizes.items():
        dst = dst_root / "big" / name
        if dst.exists() and dst.stat().st_size == size:
            continue
        with open(src_root / "big" / name, "rb") as fin, open(dst, "wb") as fout:
            fout.write(fin.read(size))
    return dst_root


def build_corpora(names: list[str], root: Path, work: Path, quick: bool) -> list[Corpus]:
    """Build the selected corpora and check that their inputs exist."""
    makers: dict[str, Callable[[], Corpus]] = {
        "versions": lambda: versions_corpus(root, quick),
        "big": lambda: big_corpus(root, quick, work),
        "small": lambda: small_corpus(root, quick),
    }
    corpora = []
    for name in names:
        if name not in makers:
            raise BenchError(f"unknown corpus {name!r} (choose from {', '.join(makers)})")
        missing = [rel for rel in required_inputs(name, quick) if not (root / rel).exists()]
        if missing:
            raise BenchError(f"corpus {name}: missing {', '.join(missing)} under {root}")
        corpora.append(makers[name]())
    return corpora


def required_inputs(name: str, quick: bool) -> list[str]:
    """Source paths (relative to the corpus root) a corpus needs."""
    return {
        "versions": [f"versions/v{i}" for i in range(1, 3 if quick else 7)],
        "big": ["big/a.bin", "big/b.bin"],
        "small": ["small"],
    }[name]


def expected_hashes(corpus: Corpus) -> dict[str, str]:
    """BLAKE3 of every input file, keyed by path relative to the corpus root."""
    out: dict[str, str] = {}
    for step in corpus.steps:
        for f in walk_files(corpus.path(step)):
            out[f.relative_to(corpus.root).as_posix()] = blake3_hex(f)
    return out
