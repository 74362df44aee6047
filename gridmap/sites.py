"""Candidate sites for new service stations (新建服务站候选点): the centres of H3 cells where people live.

:func:`gridmap.siting.choose_sites` picks among candidates; a street office rarely has a list of
vacant lots at hand, so the leaders' map proposes from the centres of the H3 cells that hold the
region's households (a site where nobody lives covers nobody). WGS84 degrees throughout.
"""

from __future__ import annotations

import geopandas as gpd
import h3
import numpy as np

from gridmap.cells import points_to_cells
from gridmap.contract import WGS84

#: H3 resolution of the candidate cells (edge ≈ 174 m: a site is placed within a block).
CANDIDATE_RES = 9


def household_cell_candidates(households: gpd.GeoDataFrame, res: int = CANDIDATE_RES) -> gpd.GeoDataFrame:
    """One candidate per H3 cell (at ``res``) holding at least one household: the cell centre.

    Returns a WGS84 point GeoDataFrame with ``site_id`` (the H3 index as text), ordered by cell.
    """
    if len(households) == 0:
        return gpd.GeoDataFrame({"site_id": []}, geometry=gpd.points_from_xy([], []), crs=WGS84)
    geom = households.geometry
    cells = np.unique(points_to_cells(geom.x.to_numpy(), geom.y.to_numpy(), res))
    latlng = [h3.cell_to_latlng(h3.int_to_str(int(c))) for c in cells]
    return gpd.GeoDataFrame({"site_id": [h3.int_to_str(int(c)) for c in cells]},
                            geometry=gpd.points_from_xy([p[1] for p in latlng], [p[0] for p in latlng]), crs=WGS84)
