"""Validation of layers against the data contract, with problems that name file, row and column.

Rows are reported 1-based as a person counts data rows in the file (the header is not a row).
Checks: required columns, duplicate ids, geometry type, empty / NaN / infinite coordinates, swapped
lon/lat, points outside China, invalid polygons (with the GEOS reason; ``fix=True`` repairs them with
``make_valid`` and says what changed), grids overlapping each other, households in no grid.
"""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from shapely.validation import explain_validity

from gridmap.contract import GEOMETRY_KIND, ID_COLUMN, REQUIRED
from gridmap.metric import metric_crs
from geodata.crs import CHINA_BBOX
from geodata.errors import Problem

#: Overlap between two grids, in m², below which it is treated as a digitising sliver (a warning).
OVERLAP_TOLERANCE_M2 = 50.0


def _row(i: int) -> int:
    return int(i) + 1


def check_columns(df: pd.DataFrame, layer: str, source: str | None) -> list[Problem]:
    """Required contract columns missing from ``df``."""
    missing = [c for c in REQUIRED[layer] if c not in df.columns]
    return [
        Problem(f"required column {c!r} is missing for layer {layer} (columns found: {', '.join(map(str, df.columns))})",
                source=source, column=c)
        for c in missing
    ]


def check_ids(df: pd.DataFrame, layer: str, source: str | None) -> list[Problem]:
    """Empty and duplicate ids (each duplicate names all its rows)."""
    col = ID_COLUMN[layer]
    if col not in df.columns:
        return []
    ids = df[col]
    problems = []
    empty = ids.isna() | (ids.astype(str).str.strip() == "")
    labels = df.index.to_numpy()
    for i in np.flatnonzero(empty.to_numpy()):
        problems.append(Problem("empty id", source=source, row=_row(labels[i]), column=col))
    dup = ids[~empty & ids.duplicated(keep=False)]
    for value, rows in dup.groupby(dup.astype(str)).groups.items():
        rows = sorted(rows)
        rows_txt = ", ".join(str(_row(r)) for r in rows[:10])
        problems.append(Problem(f"duplicate id {value!r} (rows {rows_txt})", source=source, row=_row(rows[1]), column=col))
    return problems


def check_lonlat(lon: np.ndarray, lat: np.ndarray, source: str | None, lon_col: str = "lon", lat_col: str = "lat") -> list[Problem]:
    """NaN/inf, swapped and out-of-China coordinates, for each row (degrees)."""
    lon = np.asarray(lon, dtype=float)
    lat = np.asarray(lat, dtype=float)
    minx, miny, maxx, maxy = CHINA_BBOX
    finite = np.isfinite(lon) & np.isfinite(lat)
    with np.errstate(invalid="ignore"):
        inside = finite & (lon >= minx) & (lon <= maxx) & (lat >= miny) & (lat <= maxy)
        swapped = finite & ~inside & (lon >= miny) & (lon <= maxy) & (lat >= minx) & (lat <= maxx)
    problems: list[Problem] = []
    for i in np.flatnonzero(~inside):
        x, y = lon[i], lat[i]
        if not finite[i]:
            bad = lon_col if not np.isfinite(x) else lat_col
            problems.append(Problem(f"coordinate is missing, NaN or infinite ({x}, {y})", source=source, row=_row(i), column=bad))
        elif swapped[i]:
            problems.append(Problem(f"({x}, {y}) looks like (lat, lon): longitude and latitude are swapped",
                                    source=source, row=_row(i), column=lon_col))
        else:
            problems.append(Problem(f"({x}, {y}) is outside China (lon {minx}–{maxx}, lat {miny}–{maxy}); "
                                    "check the coordinate system and column order", source=source, row=_row(i), column=lon_col))
    return problems


def check_geometries(gdf: gpd.GeoDataFrame, layer: str, source: str | None, fix: bool = False):
    """Geometry checks; returns ``(gdf, problems, repairs)``.

    ``repairs`` lists what ``fix`` changed (row, reason, area before/after in m²); unfixed invalid
    polygons are problems.
    """
    problems: list[Problem] = []
    repairs: list[str] = []
    want = GEOMETRY_KIND[layer]
    geoms = gdf.geometry.values
    labels = gdf.index.to_numpy()
    out = gdf
    arr = np.asarray(geoms, dtype=object)
    missing = shapely.is_missing(arr)
    empty = missing | shapely.is_empty(arr)
    type_id = shapely.get_type_id(arr)
    # shapely type ids: 0 Point, 4 MultiPoint, 3 Polygon, 6 MultiPolygon
    ok_type = np.isin(type_id, [0, 4]) if want == "point" else np.isin(type_id, [3, 6])
    coords, idx = shapely.get_coordinates(arr, return_index=True)
    finite_rows = np.ones(len(arr), dtype=bool)
    if len(coords):
        bad_xy = ~np.isfinite(coords).all(axis=1)
        finite_rows[np.unique(idx[bad_xy])] = False
    for i in np.flatnonzero(empty | ~ok_type | ~finite_rows):
        g = arr[i]
        if empty[i]:
            msg = "geometry is empty"
        elif not ok_type[i]:
            msg = f"geometry is a {g.geom_type}; layer {layer} needs a {want}"
        else:
            msg = "geometry has NaN or infinite coordinates"
        problems.append(Problem(msg, source=source, row=_row(labels[i]), column="geometry"))
    if problems:
        return out, problems, repairs
    if len(arr):
        probe = shapely.centroid(arr) if want == "polygon" else arr
        if want == "point" and np.any(type_id == 4):
            probe = shapely.centroid(arr)
        xs, ys = shapely.get_x(probe), shapely.get_y(probe)
        for p in check_lonlat(xs, ys, source, "geometry", "geometry"):
            p.row = _row(labels[p.row - 1])
            problems.append(p)
    if want == "polygon" and not problems:
        valid = shapely.is_valid(geoms)
        if not valid.all():
            out = gdf.copy()
            for i in np.flatnonzero(~valid):
                reason = explain_validity(geoms[i])
                if fix:
                    fixed = shapely.make_valid(geoms[i])
                    if fixed.geom_type == "GeometryCollection":
                        fixed = shapely.union_all([p for p in fixed.geoms if "Polygon" in p.geom_type])
                    a0 = _area_m2(geoms[i])
                    a1 = _area_m2(fixed)
                    out.geometry.values[i] = fixed
                    repairs.append(f"{source or ''} row {_row(labels[i])}: repaired ({reason}); now {fixed.geom_type}, area {a0:,.0f} m² → {a1:,.0f} m²")
                else:
                    problems.append(Problem(f"invalid polygon: {reason} (use --fix to repair with make_valid)",
                                            source=source, row=_row(labels[i]), column="geometry"))
    return out, problems, repairs


def _area_m2(geom) -> float:
    s = gpd.GeoSeries([geom], crs="EPSG:4326")
    try:
        return float(s.to_crs(metric_crs(s)).area.iloc[0])
    except Exception:  # an invalid geometry may not project cleanly; the area is informative only
        return float("nan")


def grid_overlaps(grids: gpd.GeoDataFrame, tolerance_m2: float = OVERLAP_TOLERANCE_M2) -> pd.DataFrame:
    """Pairs of grids whose interiors overlap, with the overlap area in m².

    Returns columns ``row_a, row_b, grid_a, grid_b, overlap_m2, sliver`` (``sliver`` when the overlap
    is below ``tolerance_m2``: digitising noise, reported but not refused).
    """
    if len(grids) < 2:
        return pd.DataFrame(columns=["row_a", "row_b", "grid_a", "grid_b", "overlap_m2", "sliver"])
    metric = grids.to_crs(metric_crs(grids))
    geoms = metric.geometry.values
    a, b = metric.sindex.query(geoms, predicate="overlaps")
    keep = a < b
    a, b = a[keep], b[keep]
    areas = shapely.area(shapely.intersection(geoms[a], geoms[b])) if len(a) else np.zeros(0)
    codes = grids["grid_code"].astype(str).to_numpy()
    df = pd.DataFrame({"row_a": a + 1, "row_b": b + 1, "grid_a": codes[a], "grid_b": codes[b], "overlap_m2": areas})
    df = df[df["overlap_m2"] > 0.01]
    df["sliver"] = df["overlap_m2"] < tolerance_m2
    return df.reset_index(drop=True)


def check_grid_overlaps(grids: gpd.GeoDataFrame, source: str | None, tolerance_m2: float = OVERLAP_TOLERANCE_M2) -> tuple[list[Problem], list[str]]:
    """Overlaps above the tolerance as problems; slivers as warnings."""
    df = grid_overlaps(grids, tolerance_m2)
    problems, warnings = [], []
    for r in df.itertuples():
        text = f"grid {r.grid_a} (row {r.row_a}) overlaps grid {r.grid_b} (row {r.row_b}) by {r.overlap_m2:,.0f} m²"
        if r.sliver:
            warnings.append(f"{source or ''}: {text} (sliver, ignored)")
        else:
            problems.append(Problem(text, source=source, row=int(r.row_b), column="geometry"))
    return problems, warnings


def households_outside_grids(households: gpd.GeoDataFrame, grids: gpd.GeoDataFrame, source: str | None) -> list[Problem]:
    """One problem per household that falls in no grid polygon."""
    from gridmap.census import locate_in_grids

    located = locate_in_grids(households, grids)
    rows = np.flatnonzero(located.isna().to_numpy())
    ids = households["household_id"].astype(str).to_numpy()
    return [Problem(f"household {ids[i]} lies in no grid", source=source, row=_row(i), column="geometry") for i in rows]
