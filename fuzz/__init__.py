"""Fuzz targets for every parser that reads bytes from outside (see fuzz/README.md)."""
