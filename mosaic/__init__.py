"""Mosaic: a content-addressed, deduplicating, encrypted storage node.

`from mosaic import Node` opens a node; the engine lives in `mosaic.node`
(store < cloud < cluster < faces), wire formats in `mosaic.protocol` and storage
services in `mosaic.backends`.

An installed Mosaic has those packages inside this folder. In a source checkout
they are the top-level folders `node/`, `protocol/` and `backends/` beside it, so
this package also looks there: running from the checkout then uses the checkout's
code, one copy, as an editable install does.
"""

from __future__ import annotations

from pathlib import Path

_here = Path(__file__).resolve().parent
if not (_here / "node").is_dir() and (_here.parent / "node" / "api.py").is_file():
    __path__.append(str(_here.parent))  # noqa: F821 - a package's own __path__

from mosaic.node.api import Node  # noqa: E402
from mosaic.node.errors import MosaicError  # noqa: E402

__version__ = "0.2.0"
__all__ = ["MosaicError", "Node", "__version__"]
