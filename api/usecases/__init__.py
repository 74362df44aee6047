"""The application layer: the use cases every face calls (command line, JSON routes, web pages, jobs).

One module per use case; plain functions on layers and options, returning results. Nothing here
imports FastAPI, Typer or Rich: a face parses its input, calls a use case and presents the result.

* :mod:`api.usecases.plan` — the main job (``run_plan``) as one explicit ordered list of steps;
* :mod:`api.usecases.links` — 包片联户: the links layer and figures;
* :mod:`api.usecases.gaps` — coverage gaps: blank grids, unlinked households, the 15-minute circle;
* :mod:`api.usecases.redraw` — grid redraw (网格划分) before the census;
* :mod:`api.usecases.maps` — every map, from files or from one region of the PostGIS store.
"""
