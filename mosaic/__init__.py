"""Mosaic: a content-addressed, deduplicating, encrypted storage node.

`from mosaic import Node` opens a node; the engine lives in `mosaic.node`
(store < cloud < cluster < faces), wire formats in `mosaic.protocol` and storage
services in `mosaic.backends`.

In the source tree those three are the top-level folders `node/`, `protocol/`
and `backends/`; `mosaic/node`, `mosaic/protocol` and `mosaic/backends` are
symbolic links to them, so the checkout, an editable install and a wheel all
hold one package tree with one copy of each module.

`Node` and `MosaicError` are loaded on first use, so the command line (which
imports `mosaic.node.cli`) pays only for the modules its command needs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.2.0"
__all__ = ["MosaicError", "Node", "__version__"]

if TYPE_CHECKING:
    from mosaic.node.api import Node
    from mosaic.node.errors import MosaicError


def __getattr__(name: str) -> Any:
    if name == "Node":
        from mosaic.node.api import Node
        return Node
    if name == "MosaicError":
        from mosaic.node.errors import MosaicError
        return MosaicError
    raise AttributeError(f"module 'mosaic' has no attribute {name!r}")
