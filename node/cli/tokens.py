"""`mosaic token`: access tokens for the HTTP face."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add the verbs of this module to the parser."""
