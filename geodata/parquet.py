"""A scenario as GeoParquet partitioned by street (街道): the input of a plan on a cluster.

Layout (Hive-style, one folder per street code, WGS84 GeoParquet with a bbox covering column)::

    ROOT/_gridmap_parquet.json            streets, layer names, halo radius (metres)
    ROOT/households/street=330103001/part-0.parquet
    ROOT/members/street=330103001/part-0.parquet
    ROOT/grids/street=330103001/part-0.parquet
    ROOT/service_centres/street=330103001/part-0.parquet
    ...

Every row belongs to exactly one street: grids by their ``street_code`` (own column, their
community's, or the street polygon holding them); households, members and links by the street of
their grid (given ``grid_code`` first, else the grid holding the point, as the census does); points
in no grid by the nearest grid. A street is read alone with :func:`read_street`, which adds the
*halo*: service centres of other streets within the service radius, so coverage figures of a street
equal those of a whole-city run.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import geopandas as gpd
import pandas as pd

from geodata.errors import InputError
from gridmap import census
from gridmap.contract import SERVICE_RADIUS_M
from gridmap.metric import metric_crs

META_FILE = "_gridmap_parquet.json"
#: Layers split by street; other layers of a scenario (roads, buildings …) are not exported.
STREET_LAYERS = ("grids", "households", "members", "service_centres", "links", "communities", "incidents")
#: Column holding the street code inside a partition (the folder name says it too).
STREET_COLUMN = "street"
_SAFE_CODE = re.compile(r"^[A-Za-z0-9_.-]+$")
_M_PER_DEG_LAT = 111_320.0  # metres per degree of latitude (WGS84, within 1 %)


def is_parquet_scenario(path) -> bool:
    """True when ``path`` is a folder written by :func:`export_parquet`."""
    return (Path(path) / META_FILE).is_file()


def read_meta(root) -> dict:
    """The export's metadata: ``streets`` (codes), ``layers``, ``halo_m`` (metres), ``counts``."""
    return json.loads((Path(root) / META_FILE).read_text(encoding="utf-8"))


def _grid_streets(layers: dict) -> pd.Series:
    """Street code of every grid, indexed like ``layers['grids']``.

    Raises
    ------
    InputError
        Naming the grids whose street cannot be told (no ``street_code``, no community with one, and
        no street polygon holding them).
    """
    grids = layers["grids"]
    street = pd.Series([None] * len(grids), index=grids.index, dtype=object)
    if "street_code" in grids.columns:
        street = grids["street_code"].astype(object).where(grids["street_code"].notna(), None)
    comms = layers.get("communities")
    if "community_code" in grids.columns and comms is not None and "street_code" in comms.columns:
        by_comm = dict(zip(comms["code"].astype(str), comms["street_code"]))
        street = street.where(street.notna(), grids["community_code"].astype(str).map(by_comm))
    streets = layers.get("streets")
    if street.isna().any() and streets is not None and len(streets):
        polys = streets[["code", "geometry"]].rename(columns={"code": "grid_code"})
        points = gpd.GeoDataFrame(geometry=grids.geometry.representative_point(), crs=grids.crs)
        street = street.where(street.notna(), census.locate_in_grids(points, polys))
    missing = grids.loc[street.isna(), "grid_code"].astype(str).tolist()
    if missing:
        raise InputError([f"grid {c}: no street — give grids a street_code or community_code, or a streets layer"
                          for c in missing[:20]], source="grids")
    bad = sorted({str(s) for s in street if not _SAFE_CODE.match(str(s))})
    if bad:
        raise InputError([f"street code {s!r}: only letters, digits, '_', '.', '-' can name a partition folder"
                          for s in bad], source="streets")
    return street.astype(str)


def _nearest_grid(points: gpd.GeoDataFrame, grids: gpd.GeoDataFrame) -> pd.Series:
    """``grid_code`` of the nearest grid to each point (metres, in the layer's UTM zone)."""
    crs = metric_crs(grids)
    near = gpd.sjoin_nearest(points[[points.geometry.name]].to_crs(crs), grids[["grid_code", "geometry"]].to_crs(crs),
                             how="left")
    near = near[~near.index.duplicated(keep="first")]
    return near["grid_code"].reindex(points.index)


def point_streets(points: gpd.GeoDataFrame, grids: gpd.GeoDataFrame, grid_street: dict) -> pd.Series:
    """Street code of each point: its given ``grid_code``'s street, else the grid holding it, else the nearest grid.

    The census assigns grids the same way (given code first, then point in polygon), so a street's
    households are exactly those its grids will count; points in no grid go to the nearest grid's
    street, where they stay "in no grid" as in a whole-city run.
    """
    if len(points) == 0:
        return pd.Series([], index=points.index, dtype=object)
    code = pd.Series([None] * len(points), index=points.index, dtype=object)
    if "grid_code" in points.columns:
        code = points["grid_code"].astype(object).where(points["grid_code"].astype(str).isin(grid_street), None)
    code = code.where(code.notna(), census.locate_in_grids(points, grids))
    if code.isna().any():
        lost = code.isna()
        code[lost] = _nearest_grid(points[lost], grids)
    return code.map(grid_street)


def _halo_m(layers: dict, radius_m: float | None) -> float:
    """Service radius (metres) that bounds the halo: the largest centre radius or the policy default."""
    radius = float(radius_m or SERVICE_RADIUS_M)
    centres = layers.get("service_centres")
    if centres is not None and "radius_m" in centres.columns and centres["radius_m"].notna().any():
        radius = max(radius, float(pd.to_numeric(centres["radius_m"], errors="coerce").max()))
    return radius


def _street_of_layer(name: str, gdf, layers: dict, grid_street: pd.Series, by_grid: dict) -> pd.Series:
    """Street code of every row of one layer (see the module docstring for the rules)."""
    grids = layers["grids"]
    if name == "grids":
        return grid_street
    if name == "communities":
        return gdf["street_code"].astype(str)
    if name == "links":
        hh = layers["households"]
        hh_street = dict(zip(hh["household_id"].astype(str), point_streets(hh, grids, by_grid)))
        return gdf["household_id"].astype(str).map(hh_street)
    return point_streets(gdf, grids, by_grid)


def export_parquet(layers: dict, out, radius_m: float | None = None) -> dict:
    """Write a scenario's layers as GeoParquet partitioned by street; returns the metadata written.

    Parameters
    ----------
    layers : a scenario (:func:`geodata.scenario.load_scenario`), WGS84; needs ``grids`` and
        ``households``, and a way to tell each grid's street (see :func:`_grid_streets`).
    out : folder to write (created; existing partitions of the same layers are replaced).
    radius_m : service radius in metres the plan will use (default 1,000 m); centres' own
        ``radius_m`` widen it. Stored as ``halo_m``.
    """
    if "grids" not in layers or len(layers["grids"]) == 0:
        raise InputError("export --parquet needs a grids layer: streets are told by their grids")
    out = Path(out)
    grid_street = _grid_streets(layers)
    by_grid = dict(zip(layers["grids"]["grid_code"].astype(str), grid_street))
    counts: dict[str, dict[str, int]] = {}
    bounds: dict[str, list[float]] = {}
    for name in STREET_LAYERS:
        gdf = layers.get(name)
        if gdf is None or not isinstance(gdf, gpd.GeoDataFrame):
            continue
        street = _street_of_layer(name, gdf, layers, grid_street, by_grid)
        counts[name] = _write_layer(gdf, street, out / name, bounds)
    return write_meta(out, sorted(set(grid_street)), counts, _halo_m(layers, radius_m), bounds)


def write_meta(out, streets: list[str], counts: dict[str, dict[str, int]], halo_m: float,
               bounds: dict[str, list[float]]) -> dict:
    """Write ``_gridmap_parquet.json``: streets, per-layer row counts, halo (metres), each street's WGS84 bounds.

    The bounds let a street's halo be read from its neighbours' partitions only (not every street's).
    """
    meta = {"streets": sorted(streets), "layers": sorted(counts), "halo_m": float(halo_m), "counts": counts,
            "bounds": {k: bounds[k] for k in sorted(bounds)}, "crs": "EPSG:4326", "partition": STREET_COLUMN}
    Path(out).mkdir(parents=True, exist_ok=True)
    (Path(out) / META_FILE).write_text(json.dumps(meta, ensure_ascii=False, indent=1), encoding="utf-8")
    return meta


def write_street(layers: dict, out, street: str, bounds: dict[str, list[float]] | None = None) -> dict[str, int]:
    """Write the layers of one street (rows known to be that street's) under ``out``; returns rows per layer.

    The streamed export: a caller that already holds one street at a time (a synthetic street, a
    street partition of the store) writes it without the whole scenario in memory. Only
    :data:`STREET_LAYERS` are written; ``bounds`` (street → WGS84 box) is widened in place.
    """
    counts = {}
    for name in STREET_LAYERS:
        gdf = layers.get(name)
        if gdf is None or not isinstance(gdf, gpd.GeoDataFrame):
            continue
        gdf = gdf.to_crs("EPSG:4326")
        write_partition(gdf, Path(out) / name, street)
        counts[name] = len(gdf)
        if bounds is not None and len(gdf):
            widen_bounds(bounds, street, gdf.total_bounds)
    return counts


def widen_bounds(bounds: dict[str, list[float]], street: str, box) -> None:
    """Grow ``bounds[street]`` (minx, miny, maxx, maxy) to hold ``box``."""
    old = bounds.get(street)
    box = [float(v) for v in box]
    bounds[street] = box if old is None else [min(old[0], box[0]), min(old[1], box[1]), max(old[2], box[2]),
                                              max(old[3], box[3])]


def _write_layer(gdf: gpd.GeoDataFrame, street: pd.Series, folder: Path,
                 bounds: dict[str, list[float]]) -> dict[str, int]:
    """One GeoParquet file per street under ``folder/street=CODE/``; rows keep their input order."""
    gdf = gdf.to_crs("EPSG:4326")
    counts = {}
    for code, rows in pd.Series(range(len(gdf))).groupby(street.to_numpy(), sort=True):
        part = gdf.iloc[rows.to_numpy()]
        write_partition(part, folder, str(code))
        counts[str(code)] = len(rows)
        widen_bounds(bounds, str(code), part.total_bounds)
    return counts


def write_partition(gdf: gpd.GeoDataFrame, folder: Path, street: str) -> None:
    """``folder/street=CODE/part-0.parquet`` (GeoParquet with bbox covering; the street is in the path only,
    so Hive readers get it as a column without a clash)."""
    target = Path(folder) / f"{STREET_COLUMN}={street}"
    target.mkdir(parents=True, exist_ok=True)
    gdf.to_parquet(target / "part-0.parquet", index=False, write_covering_bbox=True)


def _dataset(folder, only=None):
    """A lazy pyarrow dataset over ``folder/street=*/`` with the street code read as text (not a number).

    ``only`` (street codes) opens just those streets' files instead of listing every partition.
    """
    import pyarrow as pa
    import pyarrow.dataset as ds

    partitioning = ds.partitioning(pa.schema([(STREET_COLUMN, pa.string())]), flavor="hive")
    if only is None:
        return ds.dataset(str(folder), format="parquet", partitioning=partitioning)
    files = [str(f) for s in only for f in sorted((Path(folder) / f"{STREET_COLUMN}={s}").glob("*.parquet"))]
    return ds.dataset(files, format="parquet", partitioning=partitioning, partition_base_dir=str(folder))


def read_partitioned(folder, streets=None, bbox=None, only=None) -> gpd.GeoDataFrame:
    """A street-partitioned layer (an export's or a cluster plan's), lazily filtered; ``street`` as a column.

    ``streets`` keeps only those codes; ``bbox`` (WGS84 minx, miny, maxx, maxy) keeps rows whose
    covering box meets it. Only matching partitions and row groups are decoded. ``only`` (codes)
    opens those streets' files alone, without listing the folder.
    """
    import pyarrow.compute as pc
    from geopandas.io.arrow import _arrow_to_geopandas

    condition = None
    if streets is not None:
        condition = pc.field(STREET_COLUMN).isin(list(streets))
    if bbox is not None:
        box = _bbox_filter(bbox)
        condition = box if condition is None else condition & box
    table = _dataset(folder, only).to_table(filter=condition)
    # the dataset keeps the GeoParquet metadata but hands the CRS back as PROJJSON text
    gdf = _arrow_to_geopandas(table).set_crs("EPSG:4326", allow_override=True)
    return gdf.drop(columns=["bbox"], errors="ignore")


def read_layer_street(root, name: str, street: str) -> gpd.GeoDataFrame | None:
    """One layer of one street (None when the export has no such layer; empty when the street has no rows)."""
    folder = Path(root) / name
    if not folder.is_dir():
        return None
    files = sorted((folder / f"{STREET_COLUMN}={street}").glob("*.parquet"))
    if not files:
        return _empty_like(folder)
    parts = [gpd.read_parquet(f) for f in files]
    return pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]


def _empty_like(folder: Path) -> gpd.GeoDataFrame:
    """An empty layer with the columns of the layer's first partition."""
    first = next(folder.glob(f"{STREET_COLUMN}=*/*.parquet"))
    return gpd.read_parquet(first).iloc[0:0]


def _expanded_bounds(gdf: gpd.GeoDataFrame, margin_m: float) -> tuple[float, float, float, float]:
    """WGS84 bounds of ``gdf`` widened by ``margin_m`` metres (+1 %) on every side."""
    minx, miny, maxx, maxy = gdf.total_bounds
    dlat = margin_m * 1.01 / _M_PER_DEG_LAT
    cos_lat = max(0.01, math.cos(math.radians(max(abs(miny - dlat), abs(maxy + dlat)))))
    dlon = dlat / cos_lat
    return (minx - dlon, miny - dlat, maxx + dlon, maxy + dlat)


def read_halo(root, name: str, street: str, around: gpd.GeoDataFrame, margin_m: float) -> gpd.GeoDataFrame | None:
    """Rows of ``name`` in *other* streets within ``margin_m`` metres of ``around``'s bounding box (WGS84).

    Only the partitions of streets whose bounds (from the metadata) meet that box are opened, so a
    street's halo costs its neighbours, not every street of a province; inside them pyarrow filters
    on the bbox covering column. Exports without bounds fall back to every other street.
    """
    folder = Path(root) / name
    if not folder.is_dir() or len(around) == 0:
        return None
    box = _expanded_bounds(around, margin_m)
    others = _neighbour_streets(root, folder, street, box)
    if not others:
        return None
    halo = read_partitioned(folder, bbox=box, only=others)
    return halo if len(halo) else None


def _neighbour_streets(root, folder: Path, street: str, box) -> list[str]:
    """Streets other than ``street`` with a partition of ``folder`` whose bounds meet ``box`` (WGS84)."""
    bounds = read_meta(root).get("bounds")
    if bounds is None:
        codes = [d.name.split("=", 1)[1] for d in folder.glob(f"{STREET_COLUMN}=*")]
    else:
        codes = [s for s, (x0, y0, x1, y1) in bounds.items()
                 if x0 <= box[2] and x1 >= box[0] and y0 <= box[3] and y1 >= box[1]]
    return sorted(s for s in codes if s != street and (folder / f"{STREET_COLUMN}={s}").is_dir())


def _bbox_filter(bbox):
    """pyarrow expression: the row's covering bbox intersects ``bbox`` (minx, miny, maxx, maxy)."""
    import pyarrow.compute as pc

    minx, miny, maxx, maxy = bbox
    def part(name):
        return pc.field(("bbox", name))

    return (part("xmin") <= maxx) & (part("xmax") >= minx) & (part("ymin") <= maxy) & (part("ymax") >= miny)


def read_street(root, street: str, halo_m: float | None = None) -> tuple[dict[str, gpd.GeoDataFrame], set[str]]:
    """The layers of one street plus the halo of service centres; returns ``(layers, own_centre_ids)``.

    ``halo_m`` (metres) defaults to the export's ``halo_m``. Centres of neighbouring streets within
    that distance of the street's grids are appended to ``service_centres``; ``own_centre_ids`` names
    the street's own, so per-centre outputs can be kept once.
    """
    meta = read_meta(root)
    layers = {}
    for name in meta["layers"]:
        part = read_layer_street(root, name, street)
        if part is not None:
            layers[name] = part.drop(columns=["bbox"], errors="ignore")
    if "grids" not in layers or len(layers["grids"]) == 0:
        raise InputError(f"street {street}: no grids in {root}")
    centres = layers.get("service_centres")
    own = set(centres["centre_id"].astype(str)) if centres is not None else set()
    around = gpd.GeoDataFrame(geometry=pd.concat([layers[k].geometry for k in ("grids", "households") if k in layers],
                                                 ignore_index=True), crs="EPSG:4326")
    halo = read_halo(root, "service_centres", street, around, halo_m or meta["halo_m"])
    if halo is not None:
        halo = halo.drop(columns=[STREET_COLUMN])
        layers["service_centres"] = pd.concat([c for c in (centres, halo) if c is not None], ignore_index=True)
    return layers, own


def read_scenario(root) -> dict[str, gpd.GeoDataFrame]:
    """Every layer of an export, all streets at once (WGS84; street order, rows in their written order).

    For a single-process plan of a partitioned input; it holds the whole scenario in memory, which is
    what the per-street tasks avoid.
    """
    return {name: read_partitioned(Path(root) / name).drop(columns=[STREET_COLUMN]) for name in read_meta(root)["layers"]}
