"""Datasets: synthetic H&E data (``synthetic``) and readers for real ones: tile folders
(``folders``), CAMELYON16 and PAIP slides (``camelyon16``, ``paip``, sharing ``slide_tiles``:
the region-level protocol, tiles placed by ``regions``), QuPath annotations (``qupath``), and
per-object samples of any of them (``objects``).

Import the submodule you need; this package imports nothing eagerly.
"""
