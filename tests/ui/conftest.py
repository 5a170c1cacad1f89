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


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    """Headless Chromium (Debian's), driven through chromedriver."""
    assert Path(CHROMIUM).exists() and shutil.which(CHROMEDRIVER), \
        "chromium and chromium-driver are needed: run tools/install-test-deps.sh"
    b = Browser(tmp_path_factory.mktemp("downloads"))
    try:
        yield b
    finally:
        b.close()
