"""No plaintext at rest: neither file contents nor file names appear in packs or on backends."""

from __future__ import annotations

import random
from pathlib import Path

from tests.conftest import SMALL_CHUNKS, Cli

TEXTS = {
    "prose": ("It was the best of times, it was the worst of times; the Mosaic canary "
              "number 7f3a-PLAINTEXT-CANARY-0001 sings only if encryption is missing. ") * 40,
    "record": "\n".join(f"customer-{i:05d};Zanzibar Quokka Holdings;IBAN DE89 3704 0044 0532 "
                        f"{i:04d} 00;CANARY-0002" for i in range(800)),
    # very compressible: zstd turns it into a few literals plus matches, which must not leak either
    "repetitive": "CANARY-0003 quetzalcoatl-unique-marker " * 20_000,
    "short": "CANARY-0004 tiny secret: the vault combination is 31-41-59-26",
}
NAMES = {
    "prose": "Confidential Merger Plans (Zanzibar).txt",
    "record": "patients/quokka-clinic-medical-records.csv",
    "repetitive": "deep/secret-folder-xylophone/repetitive-quetzal.log",
    "short": "vault-combination-narwhal.txt",
}


def _needles() -> tuple[list[bytes], list[bytes]]:
    """Byte strings that must not appear: content snippets, and name parts."""
    rng = random.Random(1)
    content: list[bytes] = []
    for t in TEXTS.values():
        b = t.encode()
        content.append(b[:48])
        content += [b[i:i + 32] for i in (rng.randrange(0, len(b) - 32) for _ in range(12))]
    content += [b"PLAINTEXT-CANARY-0001", b"Zanzibar Quokka Holdings", b"quetzalcoatl-unique-marker",
                b"the vault combination is"]
    names: list[bytes] = []
    for n in NAMES.values():
        names.append(n.encode())
        names += [p.encode() for p in n.replace("(", "/").replace(")", "/").split("/")
                  if len(p) >= 10]
    names.append(b"secret-folder-xylophone")
    return content, names


def _files_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def _leaks(root: Path, needles: list[bytes]) -> list[str]:
    found = []
    for p in _files_under(root):
        data = p.read_bytes()
        for n in needles:
            for form in {n, n.lower(), n.upper()}:
                if form in data:
                    found.append(f"{p.relative_to(root)} contains {form[:40]!r}")
        for n in needles:  # paths must not carry names either
            if n.decode(errors="ignore").lower() in p.as_posix().lower():
                found.append(f"path {p.relative_to(root)} carries {n[:40]!r}")
    return found


def test_no_plaintext_in_packs_backends_or_index(cli: Cli, tmp_path: Path) -> None:
    cli.init(passphrase=True, small=False)  # default chunk sizes: whole texts in few chunks
    backend = tmp_path / "backend"
    cli.ok("backend", "add", "dir", "nas", backend)
    tree = cli.cwd / "tree"
    for key, text in TEXTS.items():
        p = tree / NAMES[key]
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    cli.ok("put", "-r", "tree")
    # the same content again, from stdin under other names, and in a second small-chunk node
    for key, text in TEXTS.items():
        cli.ok("put", "-", "--name", f"stdin/{NAMES[key]}", input=text.encode())
    assert len(cli.doc("ls")) == 2 * len(TEXTS)
    for key, text in TEXTS.items():
        assert cli.ok("cat", f"tree/{NAMES[key]}").out == text.encode()
    cli.ok("gc")  # nothing dead, but make sure gc's rewrite path leaves nothing either

    small = Cli(tmp_path / "small-home", cwd=cli.cwd)
    small.ok("init", "--no-passphrase", *SMALL_CHUNKS, "--pack-size", "64KiB")
    small.ok("backend", "add", "dir", "nas2", tmp_path / "backend2")
    small.ok("put", "-r", "tree")

    content, names = _needles()
    # the detector itself works: every needle is found in the source tree
    found = "\n".join(_leaks(tree, content + names))
    for n in content + names:
        assert repr(n[:40]) in found, n
    homes = ((cli.home, backend), (small.home, tmp_path / "backend2"))
    for home, bk in homes:
        assert _files_under(home / "packs"), "the test stored something"
        assert _files_under(bk), "the backend holds packs"
    _check(homes, content, names)
    small.ok("rm", f"tree/{NAMES['record']}")
    small.ok("gc")  # repacks: copies objects as they are
    assert small.ok("cat", f"tree/{NAMES['prose']}").out == TEXTS["prose"].encode()
    _check(homes, content, names)


def _check(homes: tuple[tuple[Path, Path], ...], content: list[bytes], names: list[bytes]) -> None:
    for home, bk in homes:
        assert _leaks(home / "packs", content + names) == []
        assert _leaks(bk, content + names) == []
        assert _leaks(home / "tmp", content + names) == []
        # the index may hold names, never content
        assert _leaks(home / "index", content) == []
        assert _leaks(home, [b"CANARY-000"]) == []
        config = (home / "config.toml").read_bytes() + (home / "key.json").read_bytes()
        assert all(n not in config for n in content + names)
