"""Members' service posts (党员示范岗, 服务站点) for the public 先锋地图 (亮身份), in PostGIS.

A post is a place a member serves at — never their home: the ``posts`` table (migration
0008_residents) holds its own point, kind, title, skill tags and grid. A member's name is shown only
where ``show_name`` is true (the member's own choice); :func:`public_posts` returns nothing else of
the member. Coordinates WGS84 degrees.

File columns (one row per post): ``post_id``, ``kind``, ``title`` required; ``member_id``,
``show_name`` (是/否), ``skills`` (comma-joined), ``grid_code`` optional; a point geometry or
``lon``/``lat`` columns (Chinese headers 编号, 类型, 名称, 党员编号, 公开姓名, 技能, 网格编号, 经度, 纬度 too).
"""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
from sqlalchemy import text
from sqlalchemy.engine import Engine

from geodata import crs as crsmod
from geodata.errors import InputError, Problem
from geodata.headers import find_lonlat
from gridmap.contract import parse_bool

#: The kinds of post a file may name.
POST_KINDS = ("党员示范岗", "服务站点", "党员责任区", "志愿服务岗")
REQUIRED = ("post_id", "kind", "title")
HEADER_ALIASES = {"编号": "post_id", "岗位编号": "post_id", "类型": "kind", "名称": "title", "岗位名称": "title",
                  "党员编号": "member_id", "公开姓名": "show_name", "技能": "skills", "网格编号": "grid_code"}


def read_posts(path: str | Path, coords: str = "wgs84") -> gpd.GeoDataFrame:
    """A posts file (GeoJSON, GeoPackage, CSV or Excel with lon/lat in ``coords``) as WGS84 points."""
    path = Path(path)
    if path.suffix.lower() in (".csv", ".xlsx", ".xlsm"):
        df = (pd.read_excel(path, dtype=object) if path.suffix.lower() != ".csv"
              else pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig").replace({"": None}))
        lon_col, lat_col = find_lonlat(df.columns)
        if lon_col is None or lat_col is None:
            raise InputError(Problem("no lon/lat (经度/纬度) columns", source=path.name, column="lon"))
        lon = pd.to_numeric(df[lon_col], errors="coerce").to_numpy(dtype=float)
        lat = pd.to_numeric(df[lat_col], errors="coerce").to_numpy(dtype=float)
        bad = [Problem("lon/lat is not a number", source=path.name, row=int(i) + 1, column=str(lon_col))
               for i in np.flatnonzero(np.isnan(lon) | np.isnan(lat))]
        if bad:
            raise InputError(bad, source=path.name)
        x, y = crsmod.to_wgs84(lon, lat, coords)
        gdf = gpd.GeoDataFrame(df.drop(columns=[lon_col, lat_col]), geometry=gpd.points_from_xy(x, y), crs=4326)
    else:
        gdf = gpd.read_file(path)
        if gdf.crs is not None and not gdf.crs.equals("EPSG:4326"):
            gdf = gdf.to_crs(4326)
        if coords != "wgs84":
            x, y = crsmod.to_wgs84(gdf.geometry.x.to_numpy(), gdf.geometry.y.to_numpy(), coords)
            gdf = gdf.set_geometry(gpd.points_from_xy(x, y), crs=4326)
    return gdf.rename(columns={k: v for k, v in HEADER_ALIASES.items() if k in gdf.columns})


def _row_problems(i: int, row, source: str | None) -> tuple[dict | None, list[Problem]]:
    """One file row as a post record, or the problems naming its row and column."""
    problems = []

    def cell(name):
        v = row.get(name)
        return None if v is None or (isinstance(v, float) and np.isnan(v)) or str(v).strip() == "" else str(v).strip()

    for name in REQUIRED:
        if cell(name) is None:
            problems.append(Problem(f"{name} is empty", source=source, row=i, column=name))
    if cell("kind") and cell("kind") not in POST_KINDS:
        problems.append(Problem(f"kind {cell('kind')!r} is not one of {', '.join(POST_KINDS)}", source=source, row=i,
                                column="kind"))
    try:
        show = parse_bool(row.get("show_name"), default=False)
    except ValueError as e:
        show = False
        problems.append(Problem(str(e), source=source, row=i, column="show_name"))
    geom = row.get("geometry")
    if geom is None or geom.is_empty or geom.geom_type != "Point":
        problems.append(Problem("the post needs a point (lon/lat)", source=source, row=i, column="geometry"))
    elif not (-180 <= geom.x <= 180 and -90 <= geom.y <= 90):
        problems.append(Problem("lon/lat outside WGS84 range", source=source, row=i, column="geometry"))
    if problems:
        return None, problems
    skills = [s.strip() for s in (cell("skills") or "").replace("，", ",").replace("、", ",").split(",") if s.strip()]
    return {"post_id": cell("post_id"), "member_id": cell("member_id"), "kind": cell("kind"), "title": cell("title"),
            "show_name": bool(show), "skills": skills, "grid_code": cell("grid_code"),
            "lon": float(geom.x), "lat": float(geom.y)}, []


def _known(conn, table: str, column: str, values: set[str]) -> set[str]:
    rows = conn.execute(text(f"SELECT {column} FROM {table} WHERE {column} = ANY(:v)"), {"v": sorted(values)})
    return {r[0] for r in rows}


def _reference_problems(conn, records: list[tuple[int, dict]], source: str | None) -> list[Problem]:
    """Rows naming a member or grid the database does not hold, and post ids given twice."""
    members = _known(conn, "members", "member_id", {r["member_id"] for _, r in records if r["member_id"]})
    grids = _known(conn, "grids", "grid_code", {r["grid_code"] for _, r in records if r["grid_code"]})
    problems, seen = [], set()
    for i, r in records:
        if r["member_id"] and r["member_id"] not in members:
            problems.append(Problem(f"no member {r['member_id']}", source=source, row=i, column="member_id"))
        if r["grid_code"] and r["grid_code"] not in grids:
            problems.append(Problem(f"no grid {r['grid_code']}", source=source, row=i, column="grid_code"))
        if r["post_id"] in seen:
            problems.append(Problem(f"post_id {r['post_id']} given twice", source=source, row=i, column="post_id"))
        seen.add(r["post_id"])
    return problems


_UPSERT = text(
    "INSERT INTO posts (post_id, member_id, kind, title, show_name, skills, grid_code, geom) "
    "VALUES (:post_id, :member_id, :kind, :title, :show_name, :skills, "
    "coalesce(:grid_code, (SELECT grid_code FROM grids WHERE ST_Covers(geom, ST_SetSRID(ST_MakePoint(:lon, :lat), 4326)) "
    "ORDER BY grid_code LIMIT 1)), ST_SetSRID(ST_MakePoint(:lon, :lat), 4326)) "
    "ON CONFLICT (post_id) DO UPDATE SET member_id = EXCLUDED.member_id, kind = EXCLUDED.kind, "
    "title = EXCLUDED.title, show_name = EXCLUDED.show_name, skills = EXCLUDED.skills, "
    "grid_code = EXCLUDED.grid_code, geom = EXCLUDED.geom")


def import_posts(engine: Engine, gdf: gpd.GeoDataFrame, source: str | None = None) -> int:
    """Upsert posts by ``post_id`` in one transaction: every row or none.

    A post without ``grid_code`` gets the grid holding its point. Raises :class:`InputError` listing
    every problem by row and column (empty required cells, unknown kind, member or grid, a bad
    ``show_name`` word, a missing point) before anything is written. Returns the number of rows.
    """
    records, problems = [], []
    for i, (_, row) in enumerate(gdf.iterrows(), start=1):
        rec, bad = _row_problems(i, row.to_dict() | {"geometry": row.geometry}, source)
        problems += bad
        if rec is not None:
            records.append((i, rec))
    with engine.begin() as conn:
        problems += _reference_problems(conn, records, source)
        if problems:
            raise InputError(sorted(problems, key=lambda p: p.row or 0), source=source)
        for _, rec in records:
            conn.execute(_UPSERT, rec)
    return len(records)


def public_posts(engine: Engine) -> list[dict]:
    """Every post as the public may see it: ``post_id, kind, title, skills, grid_code, grid_name,
    community_name, lon, lat`` and ``name`` — the member's name only where they chose ``show_name``
    (else None). Never a member's home point, phone or id. By post id."""
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT p.post_id, p.kind, p.title, coalesce(p.skills, '{}') AS skills, p.grid_code, g.name AS grid_name, "
            "c.name AS community_name, CASE WHEN p.show_name THEN m.name END AS name, "
            "ST_X(p.geom) AS lon, ST_Y(p.geom) AS lat FROM posts p "
            "LEFT JOIN members m ON m.member_id = p.member_id LEFT JOIN grids g ON g.grid_code = p.grid_code "
            "LEFT JOIN communities c ON c.code = g.community_code ORDER BY p.post_id COLLATE \"C\""))
        return [dict(r._mapping) for r in rows]


def served_grids(engine: Engine, tolerance_m: float = 2.0) -> list[dict]:
    """The grids posts serve: ``grid_code``, ``name`` and ``geometry`` (GeoJSON dict, WGS84, simplified
    by about ``tolerance_m`` metres for the public map)."""
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT g.grid_code, g.name, ST_AsGeoJSON(ST_SimplifyPreserveTopology(g.geom, :tol / 111320.0), 6) AS gj "
            "FROM grids g WHERE g.grid_code IN (SELECT grid_code FROM posts) ORDER BY g.grid_code COLLATE \"C\""),
            {"tol": float(tolerance_m)})
        return [{"grid_code": r.grid_code, "name": r.name, "geometry": json.loads(r.gj)} for r in rows]
