"""Mosaic's engine in layers: store < cloud < cluster < faces (api, cli).

See docs/architecture.md. `from mosaic import Node` is the Python API.
"""
