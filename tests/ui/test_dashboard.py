"""The dashboard follows the node live (SSE), without reloading: a file put through the API
shows up in the activity feed, the file count, the backend's used bytes and the chart."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from .harness import Browser, Node


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    """A node with one dir backend ("vault", 64 MiB quota), so packs go somewhere."""
    root = tmp_path_factory.mktemp("ui-dash")
    n = Node(root / "home", root / "daemon.log")
    n.init()
    n.cli("backend", "add", "dir", "vault", str(root / "vault"), "--quota", "64MiB")
    n.mint({"writer": ("write", "")})
    n.start()
    try:
        yield n
    finally:
        n.stop()


def test_dashboard_changes_live(node: Node, browser: Browser) -> None:
    b = browser
    b.sign_in(node.url, node.tokens["writer"], "/dashboard")
    b.wait(lambda d: b.find("#live-text").text == "live", what="the event stream")
    b.wait(lambda d: b.finds("tr[data-backend='vault']"), what="the backend row")
    assert "of 64 MiB" in b.find("tr[data-backend='vault']").text
    assert b.find("#node-files").text == "0"
    b.js("window.__sameDocument = true")
    loads = int(b.js("return document.body.dataset.loads"))
    data = os.urandom(3 << 20)
    with node.api(node.tokens["writer"]) as api:
        r = api.put("/v1/names/live/one.bin", content=data)
        assert r.status_code == 201, r.text
    b.wait(lambda d: "live/one.bin" in b.texts("#activity li[data-kind='put']"),
           what="the put in the activity feed")
    b.wait(lambda d: b.texts("#node-files") == "1", what="the file count")
    # the daemon sends the new pack to the backend: used bytes and the chart follow
    b.wait(lambda d: int(b.find("#chart").get_attribute("data-up-bytes") or 0) >= len(data) // 2,
           timeout=60, what="the upload in the transfer chart")
    b.wait(lambda d: "0 B of" not in b.texts("tr[data-backend='vault']"), what="used bytes")
    assert b.js("return window.__sameDocument") is True  # updated in place, never reloaded
    assert int(b.js("return document.body.dataset.loads")) > loads
    assert b.finds("#chart svg path[data-series='up']")
    b.driver.refresh()  # what happened before the page opened is in its feed too
    b.wait(lambda d: "live/one.bin" in b.texts("#activity li[data-kind='put']"),
           what="the put in a new page's feed")
