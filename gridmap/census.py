"""Who lives in which grid: point-in-grid assignment and per-grid counts.

The foundation of every later engine: households and members get the ``grid_code`` of the grid
polygon containing them, and each grid gets its household and member counts and a size status
against the policy band (urban 300–500, rural 100–200 households).
"""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd

from gridmap.contract import grid_band

#: Grid status values, in the order a planner reads them (most urgent first).
STATUS_NO_BRANCH = "no branch"
STATUS_NO_MEMBERS = "no members"
STATUS_OVER = "over-size"
STATUS_UNDER = "under-size"
STATUS_OK = "ok"


def locate_in_grids(points: gpd.GeoDataFrame, grids: gpd.GeoDataFrame) -> pd.Series:
    """``grid_code`` of the grid polygon containing each point (WGS84), ``None`` where none does.

    A point on a shared boundary goes to the grid with the smallest ``grid_code`` so the answer is
    deterministic. Uses the grids' STRtree (shapely) through ``sindex.query``.
    """
    if len(points) == 0 or len(grids) == 0:
        return pd.Series([None] * len(points), index=points.index, dtype=object)
    pidx, gidx = grids.sindex.query(points.geometry.values, predicate="intersects")
    codes = grids["grid_code"].to_numpy()[gidx]
    pairs = pd.DataFrame({"p": pidx, "code": codes}).sort_values(["p", "code"], kind="stable")
    first = pairs.drop_duplicates("p")
    out = np.full(len(points), None, dtype=object)
    out[first["p"].to_numpy()] = first["code"].to_numpy()
    return pd.Series(out, index=points.index, dtype=object)


def assign_grid_codes(points: gpd.GeoDataFrame, grids: gpd.GeoDataFrame, overwrite: bool = False) -> gpd.GeoDataFrame:
    """Copy of ``points`` with ``grid_code`` filled from the grid polygons (kept where given unless ``overwrite``)."""
    out = points.copy()
    located = locate_in_grids(out, grids)
    if "grid_code" in out.columns and not overwrite:
        given = out["grid_code"]
        missing = given.isna() | (given.astype(str).str.strip() == "")
        out["grid_code"] = given.where(~missing, located)
    else:
        out["grid_code"] = located
    return out


def grid_counts(grids: gpd.GeoDataFrame, households: gpd.GeoDataFrame,
                members: gpd.GeoDataFrame | None = None) -> gpd.GeoDataFrame:
    """Grids with ``households`` and ``members`` counts and a ``status`` (see the ``STATUS_*`` values).

    ``households`` / ``members`` must carry ``grid_code`` (see ``assign_grid_codes``). The status is
    the most urgent that applies: no branch (``has_branch`` false), no members (households but no
    member), over-size, under-size, ok. ``band_min`` / ``band_max`` give the band used per grid.
    """
    out = grids.copy()
    hh = households["grid_code"].value_counts() if len(households) else pd.Series(dtype=int)
    mm = members["grid_code"].value_counts() if members is not None and len(members) else pd.Series(dtype=int)
    out["households"] = out["grid_code"].map(hh).fillna(0).astype(int)
    out["members"] = out["grid_code"].map(mm).fillna(0).astype(int)
    kinds = out["kind"] if "kind" in out.columns else pd.Series([None] * len(out), index=out.index)
    bands = [grid_band(k if isinstance(k, str) else None) for k in kinds]
    out["band_min"] = [b[0] for b in bands]
    out["band_max"] = [b[1] for b in bands]
    has_branch = out["has_branch"].fillna(True).astype(bool) if "has_branch" in out.columns else pd.Series(True, index=out.index)
    status = np.where(
        ~has_branch.to_numpy(), STATUS_NO_BRANCH,
        np.where((out["households"] > 0) & (out["members"] == 0), STATUS_NO_MEMBERS,
                 np.where(out["households"] > out["band_max"], STATUS_OVER,
                          np.where(out["households"] < out["band_min"], STATUS_UNDER, STATUS_OK))))
    out["status"] = status
    return out


def cell_grids(households: gpd.GeoDataFrame, res: int = 8, prefix: str = "H3") -> gpd.GeoDataFrame:
    """Provisional grids when none are given: the H3 cells (WGS84) at ``res`` that contain households.

    Resolution 8 cells cover ~0.74 km² (edge ~461 m), about a city grid's size. They are a stand-in
    so every engine can run; ``districting`` draws real grids. Codes are ``<prefix>-<cell hex>``.
    """
    import h3
    from shapely.geometry import Polygon

    if len(households) == 0:
        return gpd.GeoDataFrame({"grid_code": [], "kind": []}, geometry=[], crs="EPSG:4326")
    cells = sorted({h3.latlng_to_cell(y, x, res) for x, y in zip(households.geometry.x, households.geometry.y)})
    polys = [Polygon([(lng, lat) for lat, lng in h3.cell_to_boundary(c)]) for c in cells]
    return gpd.GeoDataFrame({"grid_code": [f"{prefix}-{c}" for c in cells], "kind": "urban", "has_branch": True,
                             "name": [f"临时网格{i + 1}" for i in range(len(cells))]}, geometry=polys, crs="EPSG:4326")
