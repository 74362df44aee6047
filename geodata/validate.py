"""Validation of layers against the data contract, with problems that name file, row and column.

Rows are reported 1-based as a person counts data rows in the file (the header is not a row).
Checks: required columns, duplicate ids, geometry type, empty / NaN / infinite coordinates, swapped
lon/lat, points outside China, invalid polygons (with the GEOS reason; ``fix=True`` repairs them with
``make_valid`` and says what changed), grids overlapping each other, households in no grid.
"""

from __future__ import annotations

from typing import cast

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


def _row(i: int | np.integer) -> int:
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
        ordered = sorted(rows)
        rows_txt = ", ".join(str(_row(r)) for r in ordered[:10])
        problems.append(Problem(f"duplicate id {value!r} (rows {rows_txt})", source=source, row=_row(ordered[1]), column=col))
    return problems


def check_lonlat(lon: np.ndarray, lat: np.ndarray, source: str | None, lon_col: str = "lon",
                 lat_col: str = "lat") -> list[Problem]:
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
            assert p.row is not None  # check_lonlat names the row of every problem
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
                    repairs.append(f"{source or ''} row {_row(labels[i])}: repaired ({reason}); now {fixed.geom_type}, "
                                   f"area {a0:,.0f} m² → {a1:,.0f} m²")
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


def check_grid_overlaps(grids: gpd.GeoDataFrame, source: str | None,
                        tolerance_m2: float = OVERLAP_TOLERANCE_M2) -> tuple[list[Problem], list[str]]:
    """Overlaps above the tolerance as problems; slivers as warnings."""
    df = grid_overlaps(grids, tolerance_m2)
    problems, warnings = [], []
    for r in df.itertuples():
        text = f"grid {r.grid_a} (row {r.row_a}) overlaps grid {r.grid_b} (row {r.row_b}) by {r.overlap_m2:,.0f} m²"
        if r.sliver:
            warnings.append(f"{source or ''}: {text} (sliver, ignored)")
        else:
            # pandas-stubs type itertuples fields as any scalar; row_b is an int column
            problems.append(Problem(text, source=source, row=int(cast(int, r.row_b)), column="geometry"))
    return problems, warnings


def households_outside_grids(households: gpd.GeoDataFrame, grids: gpd.GeoDataFrame, source: str | None) -> list[Problem]:
    """One problem per household that falls in no grid polygon."""
    from gridmap.census import locate_in_grids

    located = locate_in_grids(households, grids)
    rows = np.flatnonzero(located.isna().to_numpy())
    ids = households["household_id"].astype(str).to_numpy()
    return [Problem(f"household {ids[i]} lies in no grid", source=source, row=_row(i), column="geometry") for i in rows]


#: How far (metres) a point may lie outside the grid its ``grid_code`` names, or outside every grid
#: and still be placed in the nearest one: digitising error and points on the street edge.
GRID_TOLERANCE_M = 50.0


def derive_grid_codes(points: gpd.GeoDataFrame, grids: gpd.GeoDataFrame,
                      tolerance_m: float = GRID_TOLERANCE_M) -> pd.Series:
    """The grid of each point from the polygons: the one containing it, else the nearest within ``tolerance_m``.

    Parameters
    ----------
    points, grids : GeoDataFrames in WGS84 (EPSG:4326); ``grids`` carries ``grid_code``.
    tolerance_m : largest distance in metres (measured in a local UTM projection) to a grid.

    Returns
    -------
    Series of grid codes aligned with ``points``; None where no grid is near enough.
    """
    from gridmap.census import locate_in_grids

    located = locate_in_grids(points, grids)
    missing = located.isna().to_numpy()
    if missing.any() and len(grids):
        crs = metric_crs(points)
        loose = points.loc[missing, [points.geometry.name]].to_crs(crs)
        near = gpd.sjoin_nearest(loose, grids[["grid_code", grids.geometry.name]].to_crs(crs),
                                 max_distance=tolerance_m, how="inner")
        near = near.sort_values("grid_code").loc[lambda d: ~d.index.duplicated()]
        located.loc[near.index] = near["grid_code"]
    return located


def metres_outside_named_grid(points: gpd.GeoDataFrame, grids: gpd.GeoDataFrame, codes: pd.Series) -> np.ndarray:
    """Distance in metres from each point to the polygon of the grid ``codes`` names (NaN: no such grid).

    Computed in a local UTM projection of the points (WGS84 in).
    """
    out = np.full(len(points), np.nan)
    known = codes.isin(set(grids["grid_code"])).to_numpy()
    if not known.any():
        return out
    crs = metric_crs(points)
    grid_geom = dict(zip(grids["grid_code"], grids.to_crs(crs).geometry.values))
    pts = points.geometry.values[known]
    pts_m = gpd.GeoSeries(pts, crs=points.crs).to_crs(crs).values
    out[known] = shapely.distance(np.asarray(pts_m, dtype=object), np.array([grid_geom[c] for c in codes[known]], dtype=object))
    return out


def check_grid_codes(points: gpd.GeoDataFrame, grids: gpd.GeoDataFrame, layer: str, source: str | None, *,
                     fix: bool = False, tolerance_m: float = GRID_TOLERANCE_M, rows_above: int | None = None):
    """Make each point's ``grid_code`` true: name an existing grid containing the point or within ``tolerance_m``.

    Blank codes (or no ``grid_code`` column) are derived from the polygons (``derive_grid_codes``).
    A code naming no grid, or a grid farther than ``tolerance_m`` metres, is a problem naming the
    row — or, with ``fix``, is replaced by the grid derived from the polygons.

    Returns
    -------
    (points with ``grid_code``, problems, notes). ``rows_above`` (header + title rows of a CSV or
    Excel sheet) also numbers the rows as the spreadsheet shows them.
    """
    out = points.copy()
    idcol = ID_COLUMN[layer]
    given = out["grid_code"] if "grid_code" in out.columns else pd.Series(None, index=out.index, dtype=object)
    blank = given.isna() | (given.astype(str).str.strip() == "")
    derived = derive_grid_codes(out, grids, tolerance_m)
    dist = metres_outside_named_grid(out, grids, given.where(~blank, ""))
    unknown = ~blank.to_numpy() & np.isnan(dist)
    too_far = ~blank.to_numpy() & (dist > tolerance_m)
    problems, notes = [], []
    ids, labels = out[idcol].astype(str).to_numpy(), out.index.to_numpy()
    for i in np.flatnonzero(unknown | too_far):
        why = (f"grid_code {given.iloc[i]!r} names no grid" if unknown[i] else
               f"lies {dist[i]:,.0f} m outside grid {given.iloc[i]} (more than {tolerance_m:,.0f} m)")
        where = f"it lies in grid {derived.iloc[i]}" if derived.iloc[i] else "it lies in no grid"
        problems.append(Problem(f"{layer[:-1]} {ids[i]}: {why}; {where} (use --fix to take the grid from the polygons)",
                                source=source, row=_row(labels[i]), column="grid_code",
                                sheet_row=_row(labels[i]) + rows_above if rows_above else None))
    wrong = unknown | too_far
    if fix and wrong.any():
        problems = []
        notes.append(f"{source or layer}: {int(wrong.sum()):,} {layer} had a grid_code that does not hold them; "
                     "re-derived from the grid polygons")
    fill = blank.to_numpy() | (wrong if fix else np.zeros(len(out), dtype=bool))
    out["grid_code"] = given.where(~fill, derived).astype(object)
    if blank.any():
        placed = int((blank & derived.notna()).sum())
        notes.append(f"{source or layer}: {placed:,} of {int(blank.sum()):,} {layer} without grid_code placed in a grid "
                     f"from the polygons (inside, or within {tolerance_m:,.0f} m); {int(blank.sum()) - placed:,} lie in no grid")
    return out, problems, notes


def derive_community_codes(grids: gpd.GeoDataFrame, communities: gpd.GeoDataFrame) -> tuple[gpd.GeoDataFrame, list[str]]:
    """Fill blank ``community_code`` of grids from the community polygon holding most of each grid.

    The overlap areas are measured in m² in a local UTM projection (WGS84 in). Returns the grids and
    a note saying how many were derived (none when every grid names its community).
    """
    out = grids.copy()
    given = out["community_code"] if "community_code" in out.columns else pd.Series(None, index=out.index, dtype=object)
    blank = given.isna() | (given.astype(str).str.strip() == "")
    if not blank.any():
        return out, []
    crs = metric_crs(out)
    g_m = out.loc[blank].to_crs(crs)
    c_m = communities.to_crs(crs)
    gi, ci = c_m.sindex.query(g_m.geometry.values, predicate="intersects")
    area = shapely.area(shapely.intersection(g_m.geometry.values[gi], c_m.geometry.values[ci])) if len(gi) else []
    pairs = pd.DataFrame({"g": g_m.index.to_numpy()[gi], "code": c_m["code"].to_numpy()[ci], "area": area})
    best = pairs[pairs["area"] > 0].sort_values(["g", "area"], ascending=[True, False]).drop_duplicates("g")
    out["community_code"] = given.astype(object)
    out.loc[best["g"].to_numpy(), "community_code"] = best["code"].to_numpy()
    n = int(blank.sum())
    note = (f"grids: {len(best):,} of {n:,} grids without community_code took it from the community polygon "
            f"holding most of their area; {n - len(best):,} lie in no community")
    return out, [note]
