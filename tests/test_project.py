"""The project as a whole: import contracts, no import circles, the README's snippet, packaging."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_hold() -> None:
    exe = shutil.which("lint-imports")
    assert exe, "lint-imports (import-linter) is a test dependency"
    r = subprocess.run([exe], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert "BROKEN" not in r.stdout


def test_no_module_is_in_an_import_circle() -> None:
    graph = grimp.build_graph("mosaic", include_external_packages=False)
    modules = sorted(m for m in graph.modules
                     if m.startswith(("mosaic.node", "mosaic.protocol", "mosaic.backends")))
    circles = []
    for m in modules:
        for other in graph.find_modules_directly_imported_by(m):
            if other != m and graph.chain_exists(importer=other, imported=m):
                circles.append((m, other))
    assert circles == [], circles[:10]


def test_readme_python_snippet_runs_as_printed(tmp_path: Path) -> None:
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) == 1
    env = {k: v for k, v in os.environ.items() if k != "MOSAIC_HOME"}
    r = subprocess.run([sys.executable, "-c", blocks[0]], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    first = r.stdout.splitlines()[0]
    assert re.fullmatch(r"[0-9a-f]{64}", first)
    assert "photos/photo.jpg" in r.stdout


def test_no_large_tracked_files_outside_docs() -> None:
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True,
                           check=True).stdout.decode().split("\0")
    big = [f for f in files if f and not f.startswith("docs/")
           and (ROOT / f).is_file() and not (ROOT / f).is_symlink()
           and (ROOT / f).stat().st_size > 1_000_000]
    assert big == []


def test_one_top_level_package_is_installed() -> None:
    import mosaic
    from mosaic.node import api

    assert Path(mosaic.__file__).parent.name == "mosaic"
    assert Path(api.__file__).resolve() == ROOT / "node" / "api.py"  # one copy: the checkout's
    for generic in ("node", "protocol", "backends", "tools"):
        r = subprocess.run([sys.executable, "-c", f"import {generic}"], cwd="/",
                           capture_output=True, timeout=60)
        assert r.returncode != 0, f"a top-level package named {generic!r} is importable"
