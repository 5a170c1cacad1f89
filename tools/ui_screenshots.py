"""Refresh the web UI's screenshots in docs/ui/: the main screens, light and dark.

    python tools/ui_screenshots.py [--out docs/ui]

Starts a throwaway node (a temp home with a dir backend) with `mosaic serve --http`, fills
it with a small demo tree through the HTTP API, drives headless Debian Chromium with
Selenium (the same harness as the browser tests, tests/ui/harness.py) and writes
`<screen>-light.png` and `<screen>-dark.png` for each screen. Needs chromium and
chromium-driver (tools/install-test-deps.sh) and the test extras; no network.
"""

from __future__ import annotations

import argparse
import os
import struct
import sys
import tempfile
import time
import zlib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.ui.harness import Browser, Node  # noqa: E402

SCREENS = ("signin", "files", "folder", "details", "dashboard", "mobile")


def png(width: int, height: int, pixel) -> bytes:  # noqa: ANN001 - (x, y) -> (r, g, b)
    """A truecolour PNG drawn by `pixel`."""
    rows = b"".join(b"\0" + b"".join(bytes(pixel(x, y)) for x in range(width)) for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows, 9)) + chunk(b"IEND", b""))


def demo_files() -> dict[str, bytes]:
    """A small tree that shows folders, text, images, dedup and a larger file."""
    readme = (REPO / "README.md").read_bytes()
    arch = (REPO / "docs" / "architecture.md").read_bytes()
    sky = png(320, 200, lambda x, y: (40 + y // 2, 90 + y // 3, 200 + x // 8 % 50))
    dunes = png(320, 200, lambda x, y: (230 - y // 3, 170 - y // 4 + (x * y) % 7, 90))
    grid = png(160, 160, lambda x, y: (47, 111, 222) if (x // 20 + y // 20) % 2 else (240, 244, 250))
    big = os.urandom(6 << 20)
    return {
        "projects/atlas/README.md": readme,
        "projects/atlas/notes/architecture.md": arch,
        "projects/atlas/notes/architecture (copy).md": arch,
        "projects/atlas/data/survey-2026.bin": big,
        # an edited version: most chunks shared with the original, so dedup saves them
        "projects/atlas/data/survey-2026 (edited).bin": big[: 5 << 20] + os.urandom(1 << 20),
        "projects/beacon/plan.txt": b"1. Measure\n2. Cut\n3. Measure again\n" * 40,
        "photos/sky.png": sky,
        "photos/dunes.png": dunes,
        "photos/grid.png": grid,
        "inbox/todo.txt": b"- renew the backend quota\n- add a second node\n",
        "README.md": readme,
    }


def shoot(b: Browser, out: Path, name: str, url: str, ready: str, dark: bool,
          after=None, size: tuple[int, int] = (1280, 860)) -> None:  # noqa: ANN001
    b.driver.set_window_size(*size)
    b.dark(dark)
    b.driver.get(url)
    b.visible(ready)
    if after is not None:
        after(b)
    time.sleep(0.6)  # fonts, transitions
    path = out / f"{name}-{'dark' if dark else 'light'}.png"
    b.driver.save_screenshot(str(path))
    print(f"wrote {path.relative_to(REPO) if path.is_relative_to(REPO) else path}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "ui")
    args = ap.parse_args(argv)
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("MOSAIC_PASSPHRASE", "screenshots")
    with tempfile.TemporaryDirectory(prefix="mosaic-shots-") as tmp:
        root = Path(tmp)
        node = Node(root / "home", root / "daemon.log")
        node.init()
        node.cli("backend", "add", "dir", "vault", str(root / "vault"), "--quota", "2GiB")
        node.cli("backend", "add", "dir", "archive", str(root / "archive"), "--quota", "96MiB")
        token = node.token("alice", "write")
        node.start()
        try:
            demo = demo_files()
            with node.api(token) as api:
                for path, data in demo.items():
                    r = api.put(f"/v1/names/{path}", content=data)
                    r.raise_for_status()
                api.post("/v1/folders", json={"path": "projects/comet"}).raise_for_status()
            time.sleep(6)  # one upload round of the daemon: packs reach the backends
            b = Browser(root / "downloads", 1280, 860)
            try:
                u = node.url
                for dark in (False, True):
                    shoot(b, out, "signin", f"{u}/signin", "#token", dark)
                b.sign_in(u, token)
                for dark in (False, True):
                    shoot(b, out, "files", f"{u}/files/", ".row", dark)
                    shoot(b, out, "folder", f"{u}/files/projects/atlas/data", ".row", dark,
                          after=_with_uploads(root, demo["projects/atlas/data/survey-2026.bin"]))
                    shoot(b, out, "details", f"{u}/details/photos/sky.png", "#preview img", dark,
                          after=_verified)
                    shoot(b, out, "dashboard", f"{u}/dashboard", "tr[data-backend]", dark,
                          after=lambda b: b.wait(lambda d: b.find("#live-text").text == "live"),
                          size=(1280, 1240))
                for dark in (False, True):
                    shoot(b, out, "mobile", f"{u}/files/projects/atlas", ".row", dark,
                          size=(390, 844))
            finally:
                b.close()
        finally:
            node.stop()
    return 0


def _with_uploads(root: Path, stored: bytes):  # noqa: ANN202
    """The upload panel: a new small file, a copy of stored bytes (dedup: nothing new is
    stored), and a large file paused mid-way."""
    def go(b: Browser) -> None:
        src = root / "to-upload"
        src.mkdir(exist_ok=True)
        (src / "field-notes.txt").write_bytes(b"Observations from the field.\n" * 300)
        (src / "survey-2026 (copy).bin").write_bytes(stored)
        big = src / "drone-footage.mp4"
        if not big.exists():
            with open(big, "wb") as f:
                for _ in range(160):
                    f.write(os.urandom(1 << 20))
        b.find("#file-input").send_keys("\n".join(
            str(p) for p in [src / "field-notes.txt", src / "survey-2026 (copy).bin", big]))
        b.wait(lambda d: int(b.js("return [...document.querySelectorAll('.up[data-path]')]"
                                  ".find(u => u.dataset.path.endsWith('.mp4'))?.dataset.offset || 0")) > 0,
               what="part of the big upload stored")
        b.js("[...document.querySelectorAll('.up[data-path]')].find(u => u.dataset.path.endsWith('.mp4'))"
             ".querySelector('button').click()")
        b.wait(lambda d: b.finds(".up.paused") and len(b.finds(".up.done")) == 2,
               what="paused and done")
    return go


def _verified(b: Browser) -> None:
    b.find("#verify").click()
    b.visible("#verify-ok")


if __name__ == "__main__":
    sys.exit(main())
