"""Uploads through the UI at size: a folder of 1,000 small files arrives complete (every
hash equal to b3sum's), and a 200 MiB upload resumes where it stopped after a page reload."""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

import pytest

from .harness import Browser, Node, b3_file, make_tree, names_under

MiB = 1 << 20


@pytest.mark.slow
def test_a_thousand_small_files_arrive_complete(node: Node, browser: Browser, tmp_path: Path) -> None:
    rnd = random.Random(1000)
    files = {f"d{i % 10}/file-{i:04d}.txt": rnd.randbytes(rnd.randrange(1, 4096)) for i in range(990)}
    files.update({f"same/copy-{i}.txt": b"the same bytes in ten files\n" for i in range(10)})
    want = make_tree(tmp_path / "thousand", files)
    b = browser
    b.sign_in(node.url, node.tokens["writer"], "/files/")
    b.visible("#pick-folder")
    b.find("#folder-input").send_keys(str(tmp_path / "thousand"))
    b.wait(lambda d: b.find("#uploads").get_attribute("data-done") == "1000", timeout=600,
           what="1,000 uploads done")
    assert not b.finds(".up.failed")
    with node.api(node.tokens["reader"]) as api:
        got = names_under(api, "thousand")
    assert got == {f"thousand/{rel}": h for rel, h in want.items()}


@pytest.mark.slow
def test_a_200_mib_upload_resumes_after_a_page_reload(node: Node, browser: Browser,
                                                      tmp_path: Path) -> None:
    src = tmp_path / "big.bin"
    with open(src, "wb") as f:
        for _ in range(200):
            f.write(os.urandom(MiB))
    b = browser
    b.sign_in(node.url, node.tokens["writer"], "/files/")
    b.visible("#pick-files")
    b.find("#file-input").send_keys(str(src))
    offset = "return Number(document.querySelector('.up[data-path]')?.dataset.offset || 0)"
    state = "return document.querySelector('.up[data-path]')?.dataset.state"
    b.wait(lambda d: b.js(offset) > 0, timeout=120, what="a first part stored")
    # pause: nothing more arrives; resume: it goes on from there
    b.find(".up[data-path] button[aria-label^='Pause']").click()
    b.wait(lambda d: b.js(state) == "paused", what="paused")
    paused_at = b.js(offset)
    time.sleep(1)
    assert b.js(offset) == paused_at and b.js(state) == "paused"
    b.find(".up[data-path] button[aria-label^='Resume']").click()
    b.wait(lambda d: b.js(offset) > paused_at, timeout=120, what="going on after resume")
    # and reload the page in the middle of the transfer
    b.driver.refresh()
    stopped_at = None
    with node.api(node.tokens["writer"]) as api:
        ups = [k for k in b.js("return Object.keys(localStorage)") if k.startswith("mosaic.tus:")]
        assert len(ups) == 1, ups  # the upload URL survived the reload
        url = b.js("return JSON.parse(localStorage.getItem(arguments[0])).url", ups[0])
        r = api.head(url, headers={"Tus-Resumable": "1.0.0"})
        assert r.status_code == 200
        stopped_at = int(r.headers["Upload-Offset"])
    assert 0 < stopped_at < src.stat().st_size
    assert "interrupted upload" in b.visible("#interrupted").text
    b.find("#file-input").send_keys(str(src))  # choose the same file again: it resumes
    b.wait(lambda d: not b.finds("#interrupted"), what="the notice gone (nothing left to resume)")
    b.wait(lambda d: b.js("return document.querySelector('.up[data-path]')?.dataset.state") == "done",
           timeout=600, what="the upload done")
    up = b.find(".up[data-path]")
    assert int(up.get_attribute("data-resumed-from")) >= stopped_at  # not from the start
    assert "resumed at" in up.text
    want = b3_file(src)
    assert up.get_attribute("data-hash") == want
    with node.api(node.tokens["reader"]) as api:
        assert api.get("/v1/stat/big.bin").json()["hash"] == want
    assert not [k for k in b.js("return Object.keys(localStorage)") if k.startswith("mosaic.tus:")]
