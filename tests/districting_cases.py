"""Built redraw cases shared by the domain, data and API tiers: square communities in metres
(UTM 51N around Hangzhou) with random households, the tiling check, and an edit of two grids.
"""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
import shapely
from shapely.geometry import box

from gridmap.districting import redraw


UTM = "EPSG:32651"
X0, Y0 = 230_000.0, 3_350_000.0  # Hangzhou, UTM 51N (metres)


def _community(code="330103001001", w=1000.0, h=1000.0, x0=X0, y0=Y0, kind=None):
    df = {"code": [code], "geometry": [box(x0, y0, x0 + w, y0 + h)]}
    if kind:
        df["kind"] = [kind]
    return gpd.GeoDataFrame(df, crs=UTM).to_crs("EPSG:4326")


def _households(n, bounds, seed=0, start=0):
    rng = np.random.default_rng(seed)
    x0, y0, x1, y1 = bounds
    xy = np.column_stack([rng.uniform(x0, x1, n), rng.uniform(y0, y1, n)])
    return gpd.GeoDataFrame(
        {"household_id": [f"H{i:06d}" for i in range(start, start + n)]},
        geometry=gpd.points_from_xy(xy[:, 0], xy[:, 1]), crs=UTM,
    ).to_crs("EPSG:4326")


def _metric(gdf):
    return gdf.to_crs(UTM)


def _check_tiling(grids_m, community_m, tol_m2=1.0):
    """Grids cover the community exactly: union equals it and areas add up (no overlaps).

    Geometry is snapped to a 1 mm grid, so the tolerance is 1 mm along the boundary (at least 1 m²).
    """
    tol_m2 = max(tol_m2, community_m.length * 0.001)
    union = shapely.union_all(grids_m.geometry.to_numpy())
    assert shapely.symmetric_difference(union, community_m).area < tol_m2
    assert abs(grids_m.area.sum() - community_m.area) < tol_m2


# ---------------------------------------------------------------------------------------------
# redraw on synthetic communities


@pytest.fixture(scope="module")
def square():
    comm = _community()
    hh = _households(2000, (X0, Y0, X0 + 1000, Y0 + 1000), seed=1)
    return comm, hh, redraw(comm, hh, seed=7)


# ---------------------------------------------------------------------------------------------
# what-if edits (preview / commit)


def _edit_fixture(square):
    """Grids of the square with households filed by grid; a strip of grid B next to grid A."""
    comm, hh, res = square
    grids = res.grids[["grid_code", "community_code", "kind", "geometry"]].copy()
    households = hh[["household_id", "geometry"]].copy()
    households["grid_code"] = res.households.to_numpy()
    gm = _metric(grids)
    a = gm.iloc[0]
    # A neighbour of A sharing an edge, and a 60 m band of it along the shared edge.
    b = next(r for r in gm.itertuples() if r.grid_code != a.grid_code and a.geometry.intersection(r.geometry).length > 50)
    band = b.geometry.intersection(a.geometry.buffer(60))
    area = gpd.GeoSeries([band], crs=UTM).to_crs("EPSG:4326").iloc[0]
    return grids, households, a.grid_code, b.grid_code, band, area
