"""Read one region's layers from PostGIS for the maps (``GET /maps/{kind}?region=CODE``).

A region is a street (街道), community (社区) or grid (网格) code; it is expanded down the
hierarchy with :func:`geodata.store.auth.expand_regions`. Layers come back as WGS84 GeoDataFrames
with contract column names, ready for ``api.usecases.maps.build_map``:

* ``grids``, ``communities``, ``streets`` of the region;
* ``households`` and ``members`` in its grids — *without* phone and ID numbers; names only when
  asked (``with_names``), for a responder's own map;
* ``service_centres`` within ``centre_margin_m`` metres of the region's grids (a centre just
  outside still serves households inside);
* ``incidents`` routed to its grids, with deadlines and close times;
* ``links`` of the current 包片联户 run for its households.
"""

from __future__ import annotations

from collections.abc import Callable

import geopandas as gpd
import pandas as pd
from sqlalchemy import text
from sqlalchemy.engine import Engine

from geodata.store.auth import expand_regions
from geodata.store.partitions import region_streets
from gridmap.contract import COLUMNS, ID_COLUMN, LIST_COLUMNS

#: Service centres this far (metres) outside the region's grids are still drawn.
CENTRE_MARGIN_M = 1500.0

_LAYERS = ("grids", "communities", "streets", "households", "members", "service_centres", "incidents", "links")
#: Incident columns the store adds to the contract ones (set by dispatch, not by a file).
INCIDENT_STORE_COLUMNS = ("deadline_at", "closed_at", "assigned_member_id")


def select_list(layer: str, *, with_names: bool = False, prefix: str = "") -> str:
    """The SELECT list of a contract layer: its contract columns (personal data left out, but
    ``name`` when ``with_names``) and ``geom``; ``prefix`` is a table alias such as ``"c."``."""
    names = [c.name for c in COLUMNS[layer] if not c.pii or (with_names and c.name == "name")]
    return ", ".join(prefix + n for n in names + ["geom"])


def _read(conn, sql: str, params: dict) -> gpd.GeoDataFrame:
    gdf = gpd.read_postgis(text(sql), conn, geom_col="geom", params=params, crs="EPSG:4326")
    return gdf.rename_geometry("geometry")


def _lists(values) -> list:
    """``text[]`` values as lists (None where NULL), whatever the driver handed back."""
    return [None if v is None else list(v) for v in values]


def load_region(engine: Engine, region: str, layers=_LAYERS, *, with_names: bool = False,
                member_id: str | None = None, centre_margin_m: float = CENTRE_MARGIN_M) -> dict[str, gpd.GeoDataFrame]:
    """The layers of one region (WGS84), see the module docstring.

    Parameters
    ----------
    region : street, community or grid code.
    layers : which layers to read.
    with_names : include residents' and members' ``name`` (personal data) — else no name column.
    member_id : read only this member and the households of their current links (a responder's
        own map); ``households``/``links`` are then limited to those households.
    centre_margin_m : service centres up to this many metres outside the region's grids are read.

    Returns
    -------
    dict of layer name → GeoDataFrame (``links`` is a plain DataFrame); grids empty when the region
    is unknown. ``tags`` and ``skills`` are lists of strings (None where blank).
    """
    scope = expand_regions(engine, [region])
    codes = sorted(scope.grids)
    out: dict[str, gpd.GeoDataFrame] = {}
    with engine.connect() as conn:
        own = _own_households(conn, member_id) if member_id is not None else None
        for layer in (name for name in _LAYERS if name in layers):  # the fixed order callers draw in
            if layer in ("communities", "streets"):
                out[layer] = _read_areas(conn, layer, scope)
            elif layer in _READERS:
                out[layer] = _READERS[layer](conn, codes, with_names=with_names, member_id=member_id, own=own,
                                             margin_m=float(centre_margin_m))
    return out


def _own_households(conn, member_id: str) -> list[str]:
    return list(conn.execute(text(
        "SELECT l.household_id FROM links l JOIN link_runs r ON r.run_id = l.run_id "
        "WHERE r.is_current AND l.member_id = :m"), {"m": member_id}).scalars().all())


def _read_areas(conn, layer: str, scope) -> gpd.GeoDataFrame:
    codes = sorted(scope.communities if layer == "communities" else scope.streets)
    return _read(conn, f"SELECT {select_list(layer)} FROM {layer} WHERE code = ANY(:c) ORDER BY code", {"c": codes})


def _read_grids(conn, codes, **_) -> gpd.GeoDataFrame:
    return _read(conn, f"SELECT {select_list('grids')} FROM grids WHERE grid_code = ANY(:codes) ORDER BY grid_code",
                 {"codes": codes})


def _read_people(conn, layer: str, codes, with_names: bool, only_ids) -> gpd.GeoDataFrame:
    """Households or members of the grids ``codes`` (only ``only_ids`` unless None), lists as lists."""
    id_column = ID_COLUMN[layer]
    sql = (f"SELECT {select_list(layer, with_names=with_names)} FROM {layer} WHERE grid_code = ANY(:codes) "
           "AND (street_code = ANY(:streets) OR street_code IS NULL)")  # only the region's street partitions (0014)
    params: dict = {"codes": codes, "streets": region_streets(conn, grid_codes=codes)}
    if only_ids is not None:
        sql += f" AND {id_column} = ANY(:only)"
        params["only"] = list(only_ids)
    gdf = _read(conn, sql + f" ORDER BY {id_column}", params)
    for column in set(LIST_COLUMNS) & set(gdf.columns):
        gdf[column] = _lists(gdf[column])
    return gdf


def _read_households(conn, codes, *, with_names: bool, own, **_) -> gpd.GeoDataFrame:
    return _read_people(conn, "households", codes, with_names, own)


def _read_members(conn, codes, *, with_names: bool, member_id, **_) -> gpd.GeoDataFrame:
    return _read_people(conn, "members", codes, with_names, None if member_id is None else [member_id])


def _read_centres(conn, codes, *, margin_m: float, **_) -> gpd.GeoDataFrame:
    return _read(conn, f"""
        SELECT {select_list('service_centres', prefix='c.')} FROM service_centres c
        WHERE EXISTS (SELECT 1 FROM grids g WHERE g.grid_code = ANY(:codes)
                      AND ST_DWithin(g.geom::geography, c.geom::geography, :m))
        ORDER BY c.centre_id""", {"codes": codes, "m": margin_m})


def _read_incidents(conn, codes, **_) -> gpd.GeoDataFrame:
    cols = select_list("incidents").replace(", geom", ", " + ", ".join(INCIDENT_STORE_COLUMNS) + ", geom")
    return _read(conn, f"SELECT {cols} FROM incidents WHERE grid_code = ANY(:codes) ORDER BY reported_at, incident_id",
                 {"codes": codes})


def _read_links(conn, codes, *, member_id, **_) -> pd.DataFrame:
    sql = ("SELECT DISTINCT ON (l.household_id) l.household_id, l.member_id, l.distance_m, l.visit_order "
           "FROM links l JOIN link_runs r ON r.run_id = l.run_id "
           "JOIN households h ON h.household_id = l.household_id "
           "WHERE r.is_current AND h.grid_code = ANY(:codes)")
    params: dict = {"codes": codes}
    if member_id is not None:
        sql += " AND l.member_id = :m"
        params["m"] = member_id
    return pd.read_sql(text(sql + " ORDER BY l.household_id, l.run_id DESC"), conn, params=params)


_READERS: dict[str, Callable[..., pd.DataFrame]] = {
    "grids": _read_grids, "households": _read_households, "members": _read_members,
    "service_centres": _read_centres, "incidents": _read_incidents, "links": _read_links}
