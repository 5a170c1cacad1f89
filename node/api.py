"""The Python API: `from mosaic import Node`; `Node.open(home)` and the verbs of the CLI."""

from __future__ import annotations

from collections.abc import Callable

from .cloud.putsession import PutSession
from .cluster.engine import Engine, NameEntry
from .store.ingest import PutResult

__all__ = ["NameEntry", "Node", "PutResult", "PutSession"]


class _HomeOrFile:
    """`Node.open(home)` on the class, `node.open(ref)` on an instance."""

    def __init__(self, on_class: classmethod, on_instance: Callable):
        self.on_class, self.on_instance = on_class, on_instance

    def __get__(self, obj: object, objtype: type | None = None) -> Callable:
        if obj is None:
            return self.on_class.__get__(None, objtype)
        return self.on_instance.__get__(obj, objtype)


class Node(Engine):
    """A Mosaic node opened on its home folder. Use as a context manager or call close()."""

    #: `Node.open(home)` opens a node; `node.open(ref)` opens a stored file.
    open = _HomeOrFile(Engine.__dict__["open_home"], Engine.open_file)
