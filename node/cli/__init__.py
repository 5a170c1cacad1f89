"""The `mosaic` command line (a face: imports any layer, never another face)."""
