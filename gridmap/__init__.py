"""gridmap — the domain of 网格党支部 grid management.

Pure functions on GeoDataFrames and numpy arrays: entities and defaults (``contract``), metric
projections (``metric``), H3 cells (``cells``), household/member census per grid (``census``), and the
engines (``linkage`` 包片联户, ``coverage`` gaps, ``dispatch`` nearest responder, ``districting`` redraw).

This package imports nothing else of the project: no files, no database, no web.
"""

__version__ = "0.1.0"
