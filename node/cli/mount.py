"""`mosaic mount`: the store as a FUSE file system."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add the verbs of this module to the parser."""
