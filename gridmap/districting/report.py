"""What a redraw hands back: the grids table (WGS84), per-household codes, issues and a summary."""

from __future__ import annotations

from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import pandas as pd

from gridmap.compactness import polsby_popper
from gridmap.contract import WGS84

STATUS_KEPT = "kept"
STATUS_REDRAWN = "redrawn"
STATUS_NEW = "new"

GRID_COLUMNS = ["grid_code", "community_code", "households", "kind", "band_min", "band_max", "in_band",
                "polsby_popper", "moved", "status", "geometry"]


@dataclass
class RedrawResult:
    """Outcome of ``redraw``.

    Attributes
    ----------
    grids : GeoDataFrame (WGS84)
        One row per grid: ``grid_code``, ``community_code``, ``households``, ``kind``, ``band_min``,
        ``band_max``, ``in_band``, ``polsby_popper``, ``moved`` (households now in this grid that were
        in another grid before), ``status`` (kept / redrawn / new), geometry.
    households : pandas.Series
        New ``grid_code`` per household (index of the households input); None outside communities.
    issues : list of dict
        ``community_code``, ``kind`` (``infeasible``, ``multipart``, ``outside``, ``split_failed``,
        ``released``, ``unassigned``), ``message``.
    summary : dict
        ``grids``, ``in_band_pct``, ``mean_polsby_popper``, ``households``, ``moved``, ``kept``,
        ``infeasible_communities``.
    buildings : pandas.Series, optional
        New ``grid_code`` per building (index of the buildings input) when buildings were given.
    """

    grids: gpd.GeoDataFrame
    households: pd.Series
    issues: list
    summary: dict
    buildings: pd.Series | None = None


def infeasible_message(households: int, n_grids: int, between_kept: bool, may_release: bool, band_min: int, band_max: int) -> str:
    """Why a component is drawn out of band."""
    return (f"{households} households" + (" left between kept grids" if between_kept else "")
            + f" cannot be cut into grids of {band_min}–{band_max}; drawn as "
            + ("one grid" if n_grids == 1 else f"{n_grids} grids") + " out of band"
            + (" (release_kept / --release lets neighbouring in-band grids change)" if may_release else ""))


def grids_frame(grid_rows: list, crs) -> gpd.GeoDataFrame:
    """The grids table in WGS84 from the rows drawn in ``crs`` (metres), with band and compactness."""
    if grid_rows:
        grids = gpd.GeoDataFrame(grid_rows, geometry="geometry", crs=crs)
    else:
        grids = gpd.GeoDataFrame({c: [] for c in GRID_COLUMNS if c not in ("in_band", "polsby_popper", "geometry")},
                                 geometry=gpd.GeoSeries([], crs=crs))
    grids["in_band"] = (grids["households"] >= grids["band_min"]) & (grids["households"] <= grids["band_max"])
    grids["polsby_popper"] = polsby_popper(grids.geometry.to_numpy())  # in metres, before leaving the UTM zone
    return grids[GRID_COLUMNS].to_crs(WGS84)


def summarise(grids: gpd.GeoDataFrame, issues: list) -> dict:
    """Figures of a redraw: grids, % in band, mean Polsby-Popper, households, moved, kept, infeasible."""
    return {
        "grids": len(grids),
        "in_band_pct": float(100.0 * grids["in_band"].mean()) if len(grids) else 0.0,
        "mean_polsby_popper": float(grids["polsby_popper"].mean()) if len(grids) else 0.0,
        "households": int(grids["households"].sum()),
        "moved": int(grids["moved"].sum()),
        "kept": int((grids["status"] == STATUS_KEPT).sum()),
        "infeasible_communities": sorted({i["community_code"] for i in issues if i["kind"] == "infeasible"}),
    }


def as_series(codes: np.ndarray, index) -> pd.Series:
    """Grid codes as a Series on the input's index."""
    return pd.Series(codes, index=index, dtype=object)
