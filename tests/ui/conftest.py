"""Fixtures of the web UI's browser tests: a running node (`mosaic serve --http`) and
headless Chromium, one of each per test module (starting them is the slow part)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from .harness import CHROMEDRIVER, CHROMIUM, Browser, Node, start_node


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    """A fresh node with admin, writer, reader and prefixed ("projects") tokens, running."""
    n = start_node(tmp_path_factory.mktemp("ui-node"))
    try:
        yield n
    finally:
        n.stop()


@pytest.fixture(scope="session")
def chromium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    """Headless Chromium (Debian's), driven through chromedriver: one per test process
    (starting it is the slow part)."""
    assert Path(CHROMIUM).exists() and shutil.which(CHROMEDRIVER), \
        "chromium and chromium-driver are needed: run tools/install-test-deps.sh"
    b = Browser(tmp_path_factory.mktemp("downloads"))
    try:
        yield b
    finally:
        b.close()


@pytest.fixture(scope="module")
def browser(chromium: Browser) -> Browser:
    """The browser, as a new user finds it for each module: no cookies (they are per host,
    not per port, so another module's session cookie would reach this module's node) and a
    blank page; local storage is per origin, and every module's node has a port of its own."""
    chromium.driver.get("about:blank")
    chromium.driver.execute_cdp_cmd("Network.clearBrowserCookies", {})
    return chromium
