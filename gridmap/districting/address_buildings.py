"""Buildings known only by address (楼栋): which households share one, and which an edit would split.

Without building footprints, the roster's ``building`` column (楼栋) is how the service knows which
households live in one building. A label is not unique across a community ("1栋" stands in many
compounds), so households with the same label form one building only when they chain together within
``near_m`` metres of each other. Distances in metres, in the caller's metric CRS.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import shapely

#: Households with the same 楼栋 label this close (metres, chained) are taken as one building.
BUILDING_NEAR_M = 80.0

SPLIT_COLUMNS = ["building", "households", "moving", "to_grid", "staying"]


def clean_label(value) -> str | None:
    """The 楼栋 label without spaces and a trailing 栋/幢 (``" 3栋"`` → ``"3"``); None when blank."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    text = str(value).strip().replace(" ", "")
    text = text[:-1] if text.endswith(("栋", "幢")) and len(text) > 1 else text
    return text or None


def building_label(label: str) -> str:
    """How a building is named on screen: ``"3"`` → ``"3栋"``, ``"2号楼"`` stays."""
    return label if label.endswith(("栋", "幢", "楼", "座")) else f"{label}栋"


def building_ids(labels, xy: np.ndarray, near_m: float = BUILDING_NEAR_M) -> np.ndarray:
    """Building number of each household (-1 when it has no 楼栋 label).

    Parameters
    ----------
    labels : sequence of str or None
        The roster's 楼栋 per household.
    xy : ndarray (n, 2)
        Household positions in a metric CRS (metres).
    near_m : float
        Households with the same label chained within this distance (metres) share a building.
    """
    from scipy.sparse import coo_matrix, csgraph

    clean = np.array([clean_label(v) for v in labels], dtype=object)
    out = np.full(len(clean), -1, dtype=np.int64)
    idx = np.flatnonzero(pd.notna(clean))
    if not len(idx):
        return out
    points = np.asarray(shapely.points(np.asarray(xy, dtype=float).reshape(-1, 2)[idx]), dtype=object)
    a, b = shapely.STRtree(points).query(points, predicate="dwithin", distance=near_m)
    same = clean[idx][a] == clean[idx][b]
    graph = coo_matrix((np.ones(int(same.sum())), (a[same], b[same])), shape=(len(idx), len(idx)))
    out[idx] = csgraph.connected_components(graph, directed=False)[1]
    return out


def left_behind(ids: np.ndarray, moving: np.ndarray, today: np.ndarray) -> np.ndarray:
    """Households an edit would separate from their building: not moving, but in a grid that some of
    their building's households move out of. (A building already split between grids is not split
    further when one of its parts moves whole.)"""
    out = np.zeros(len(ids), dtype=bool)
    for b in np.unique(ids[(ids >= 0) & moving]):
        mine = ids == b
        out |= mine & ~moving & np.isin(today, np.unique(today[mine & moving]))
    return out


def split_buildings(labels, ids: np.ndarray, moving: np.ndarray, today: np.ndarray, to_grid: str) -> pd.DataFrame:
    """Buildings the edit would split: some of their households move, others stay behind in the same grid.

    Parameters
    ----------
    labels : sequence of str or None
        The 楼栋 label per household.
    ids : ndarray
        Building number per household (:func:`building_ids`; -1: none).
    moving : ndarray of bool
        Households the edit moves into ``to_grid``.
    today : ndarray of str
        Each household's grid before the edit.
    to_grid : str
        The receiving grid.

    Returns
    -------
    DataFrame
        ``building`` (label as shown), ``households``, ``moving`` (into ``to_grid``), ``to_grid``,
        ``staying`` (``{grid_code: households}`` left behind); one row per split building.
    """
    behind = left_behind(ids, moving, today)
    rows = []
    for b in np.unique(ids[behind]):
        mine = ids == b
        staying = pd.Series(today[mine & behind]).value_counts()
        first = int(np.flatnonzero(mine)[0])
        rows.append({"building": building_label(clean_label(labels[first]) or ""), "households": int(mine.sum()),
                     "moving": int((mine & moving).sum()), "to_grid": to_grid,
                     "staying": {str(k): int(v) for k, v in staying.items()}})
    return pd.DataFrame(rows, columns=SPLIT_COLUMNS)


def building_hulls(ids: np.ndarray, xy: np.ndarray, which, mask: np.ndarray | None = None, pad_m: float = 1.0) -> list:
    """Ground (metres) standing for each building in ``which``: the hull of its households (those in
    ``mask`` when given), ``pad_m`` wider."""
    hulls = []
    for b in which:
        points = shapely.multipoints(np.asarray(xy)[(ids == b) & (True if mask is None else mask)])
        hulls.append(shapely.buffer(shapely.convex_hull(points), pad_m))
    return hulls
