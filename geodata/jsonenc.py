"""The one JSON encoder for engine results: numpy, pandas and shapely values to JSON.

Engines hand back numpy scalars and arrays, pandas timestamps and missing values, and shapely
geometries; the store writes them into JSONB columns, the routes return them, the plan writes
``summary.json``. All of them go through :func:`dumps` (orjson with ``OPT_SERIALIZE_NUMPY``) or
:func:`to_plain`, so there is one answer to "what does a NaN become" (``null``: PostgreSQL's JSONB
and browsers reject a bare ``NaN``). Geometries become GeoJSON geometry objects (WGS84 as stored).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import orjson
import pandas as pd
from shapely.geometry import mapping
from shapely.geometry.base import BaseGeometry

OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


def _default(value: Any) -> Any:
    """What orjson cannot encode itself: pandas values, geometries, sets, other numpy values."""
    if value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if isinstance(value, BaseGeometry):
        return mapping(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=str)
    if isinstance(value, np.generic):  # numpy scalars orjson leaves out (np.str_, np.datetime64 …)
        return value.item()
    if isinstance(value, np.ndarray):  # object arrays (OPT_SERIALIZE_NUMPY takes numeric ones only)
        return value.tolist()
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    # Run summaries may carry any figure an engine adds later: its text beats losing the run.
    return str(value)


def dumps_bytes(obj: Any, *, indent: bool = False) -> bytes:
    """``obj`` as UTF-8 JSON bytes (Chinese text unescaped); NaN and missing values are ``null``."""
    return orjson.dumps(obj, default=_default, option=OPTIONS | (orjson.OPT_INDENT_2 if indent else 0))


def dumps(obj: Any, *, indent: bool = False) -> str:
    """``obj`` as JSON text (see :func:`dumps_bytes`)."""
    return dumps_bytes(obj, indent=indent).decode("utf-8")


def to_plain(obj: Any, ndigits: int | None = None) -> Any:
    """``obj`` as plain Python (dict, list, str, int, float, bool, None) exactly as :func:`dumps` writes it.

    ``ndigits`` rounds every float (e.g. 2 for metres and percentages shown to people).
    """
    plain = orjson.loads(dumps_bytes(obj))
    return plain if ndigits is None else _round_floats(plain, ndigits)


def _round_floats(obj: Any, ndigits: int) -> Any:
    if isinstance(obj, float):
        return round(obj, ndigits)
    if isinstance(obj, dict):
        return {k: _round_floats(v, ndigits) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_round_floats(v, ndigits) for v in obj]
    return obj
