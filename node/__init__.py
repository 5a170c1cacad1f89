"""Mosaic's node: the engine, its CLI and its Python API (`from node import Node`)."""

from .api import Node
from .errors import MosaicError

__all__ = ["MosaicError", "Node"]
