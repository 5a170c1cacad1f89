"""What dedup saved, as the UI shows it: an upload of bytes the node holds already says
"Stored 0 new bytes", one that shares most of its chunks stores only the rest, and the
folder list shows each file's saving."""

from __future__ import annotations

import os
import re
from pathlib import Path

from .harness import Browser, Node

MiB = 1 << 20


def _upload(b: Browser, path: Path) -> str:
    """Upload one file into the folder shown; the text of its finished row."""
    b.find("#file-input").send_keys(str(path))
    return b.wait(lambda d: b.js(
        "const u = [...document.querySelectorAll('.up[data-path]')]"
        ".find(u => u.dataset.path.endsWith('/' + arguments[0]));"
        "return u && u.dataset.state === 'done' ? u.textContent : null", path.name),
        what=f"upload of {path.name} done")


def test_uploads_and_the_list_show_what_dedup_saved(node: Node, browser: Browser,
                                                    tmp_path: Path) -> None:
    base = os.urandom(2 * MiB)
    (tmp_path / "one.bin").write_bytes(base)
    (tmp_path / "longer.bin").write_bytes(base + os.urandom(MiB // 4))
    (tmp_path / "again.bin").write_bytes(base)
    b = browser
    b.sign_in(node.url, node.tokens["writer"], "/files/dedup")
    b.visible("#pick-files")
    first = _upload(b, tmp_path / "one.bin")
    assert "0 new bytes" not in first
    again = _upload(b, tmp_path / "again.bin")
    assert "Stored 0 new bytes" in again
    longer = _upload(b, tmp_path / "longer.bin")
    new = re.search(r"Stored ([\d.]+) (KiB|MiB) new", longer)
    assert new, longer
    stored = float(new.group(1)) * (1024 if new.group(2) == "KiB" else MiB)
    assert stored < MiB  # the shared 2 MiB were not stored again
    b.driver.get(node.url + "/files/dedup")
    b.wait(lambda d: b.texts(".row[data-path='dedup/longer.bin'] .c-saved"), what="the saving")
    saved = b.texts(".row[data-path='dedup/longer.bin'] .c-saved")
    assert saved.endswith("MiB") and float(saved.split()[0]) >= 1.0, saved
    with node.api(node.tokens["reader"]) as api:
        st = api.get("/v1/stat/dedup/longer.bin").json()
    assert st["dedup_saving_bytes"] > MiB
