"""Incident heat (事件热力): incidents counted per H3 cell, for a heat layer that shows where they cluster.

Counts only: a cell carries how many incidents fell in it and how many of those are still open, never
an incident's id, reporter or exact point. Coordinates are WGS84 degrees; a resolution-9 cell is about
0.1 km² (edge ≈ 174 m).
"""

from __future__ import annotations

import h3
import numpy as np
import pandas as pd

#: H3 resolution of the heat cells (≈ 0.1 km², a few blocks).
HEAT_RES = 9


def count_cells(cells, is_open, res: int = HEAT_RES) -> pd.DataFrame:
    """Incidents per H3 cell at ``res``, from their fine cells.

    Parameters
    ----------
    cells : H3 indexes (int) of the incidents, at ``res`` or finer.
    is_open : bool per incident, True while not closed.
    res : resolution of the returned cells.

    Returns
    -------
    DataFrame with ``cell`` (int), ``lon``/``lat`` (the cell's centre, WGS84 degrees), ``n``
    (incidents) and ``open`` (of those, not closed), ordered by cell.
    """
    cells = np.asarray(cells, dtype=np.int64)
    is_open = np.asarray(is_open, dtype=bool)
    if cells.shape[0] == 0:
        return pd.DataFrame({"cell": [], "lon": [], "lat": [], "n": [], "open": []})
    fine, inverse = np.unique(cells, return_inverse=True)
    parent = np.array([_parent(int(c), res) for c in fine], dtype=np.int64)[inverse]
    df = pd.DataFrame({"cell": parent, "n": 1, "open": is_open.astype(int)})
    out = df.groupby("cell", sort=True).sum().reset_index()
    centres = [h3.cell_to_latlng(h3.int_to_str(int(c))) for c in out["cell"]]
    out["lat"] = [c[0] for c in centres]
    out["lon"] = [c[1] for c in centres]
    return out[["cell", "lon", "lat", "n", "open"]]


def _parent(cell: int, res: int) -> int:
    text = h3.int_to_str(cell)
    return cell if h3.get_resolution(text) <= res else h3.str_to_int(h3.cell_to_parent(text, res))
