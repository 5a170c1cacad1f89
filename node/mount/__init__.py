"""The FUSE face: the name directory mounted as a file system (pyfuse3, on trio)."""
