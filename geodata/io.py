"""Read and write layers: GeoJSON, GeoPackage, Shapefile (GBK too), CSV with lon/lat, Excel.

``read_layer`` returns a GeoDataFrame in WGS84 (EPSG:4326) whose columns follow the data contract
(``gridmap.contract``), or raises :class:`geodata.errors.InputError` listing every problem with its
file, row and column. Nothing is half-read: a file with one bad row is refused whole.

Personal data (``name``, ``phone``, ``id_number``) is read as text and never logged.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import shapely

from gridmap.contract import GEOMETRY_KIND, ID_COLUMN, LAYERS, parse_bool
from geodata import crs as crsmod
from geodata.errors import InputError, Problem
from geodata.headers import find_lonlat, header_map
from geodata.validate import check_columns, check_geometries, check_ids, check_lonlat

VECTOR_EXT = {".geojson", ".json", ".gpkg", ".shp", ".zip", ".fgb"}
TABLE_EXT = {".csv", ".txt", ".xlsx", ".xlsm"}

#: Columns always kept as text (leading zeros, 18-digit ID numbers, phone numbers).
TEXT_COLUMNS = ("household_id", "member_id", "grid_code", "code", "community_code", "street_code", "centre_id",
                "incident_id", "phone", "id_number", "name", "branch_name", "building", "unit", "room")
BOOL_COLUMNS = ("has_branch", "available")
INT_COLUMNS = ("size", "min_links", "max_links", "level")
FLOAT_COLUMNS = ("radius_m",)
LIST_COLUMNS = ("tags", "skills")

#: Text columns where a number in scientific notation (``1.38E+10``) means the digits were lost.
DIGIT_COLUMNS = ("phone", "id_number")
_SCIENTIFIC = re.compile(r"^[+-]?\d+(?:\.\d*)?[eE][+-]?\d+$")
#: Rows a CSV/Excel header takes before the first data row (without any title rows above it).
HEADER_ROWS = 1
_LIST_SPLIT = re.compile(r"[,，;；、|/]")


def read_layer(path, kind: str, *, layer: str | None = None, coords: str = "wgs84", encoding: str | None = None,
               fix: bool = False, make_ids: bool = False, report: list | None = None,
               sheet: str | None = None) -> gpd.GeoDataFrame:
    """Read one layer of the data contract from a file.

    Parameters
    ----------
    path : file path (``.geojson``, ``.gpkg``, ``.shp``, ``.csv``, ``.xlsx``).
    kind : contract layer name (``households``, ``members``, ``grids`` ...).
    layer : layer name inside a GeoPackage (defaults to ``kind`` when present, else the only layer).
    coords : coordinate system of the file's lon/lat: ``wgs84`` (default), ``gcj02`` (Amap/Tencent),
        ``bd09`` (Baidu) or ``cgcs2000``. The result is always WGS84.
    encoding : text encoding for a Shapefile without ``.cpg`` or a CSV (e.g. ``gbk``).
    fix : repair invalid polygons with ``make_valid`` (what changed is appended to ``report``).
    make_ids : when the id column is missing, number the rows ``<file stem>-<row>`` instead of refusing.
    report : a list that receives human-readable notes (repairs, encodings guessed).
    sheet : Excel sheet to read; default: the first sheet with a header for ``kind`` (a 说明 sheet first
        is normal), else the first sheet.

    Returns
    -------
    GeoDataFrame in EPSG:4326 with contract column names.
    """
    if kind not in LAYERS:
        raise InputError(f"unknown layer {kind!r}: use one of {', '.join(LAYERS)}")
    path = Path(path)
    source = path.name
    try:
        coords = crsmod.check_coords(coords)
    except ValueError as e:
        raise InputError(str(e), source=source) from None
    if not path.exists():
        raise InputError(f"file not found: {path}", source=source)
    notes = report if report is not None else []
    ext = path.suffix.lower()
    rows_above = None  # rows before the first data row, for tables (header + title rows)
    try:
        if ext in TABLE_EXT:
            df, rows_above = _read_table(path, encoding, notes, kind, sheet)
            gdf = _table_to_points(df, kind, source, coords)
        elif ext in VECTOR_EXT:
            gdf = _read_vector(path, kind, layer, encoding, notes)
            gdf = _rename(gdf, kind)
            gdf = _vector_to_wgs84(gdf, source, coords)
        else:
            raise InputError(f"unsupported file type {ext!r}: use GeoJSON, GeoPackage, Shapefile, CSV or Excel (.xlsx)",
                             source=source)
        gdf = normalise(gdf, kind, source, fix=fix, make_ids=make_ids, report=notes)
    except InputError as e:
        raise with_sheet_rows(e, rows_above) from None
    gdf.attrs.update(source=source, rows_above=rows_above)
    return gdf


def with_sheet_rows(error: InputError, rows_above: int | None) -> InputError:
    """``error`` with each row also numbered as a spreadsheet shows it (data row + ``rows_above``)."""
    if rows_above:
        for p in error.problems:
            if p.row is not None and p.sheet_row is None:
                p.sheet_row = p.row + rows_above
        return InputError(error.problems)
    return error


def normalise(gdf: gpd.GeoDataFrame, kind: str, source: str | None = None, *, fix: bool = False, make_ids: bool = False,
              report: list | None = None) -> gpd.GeoDataFrame:
    """Type, check and clean a WGS84 GeoDataFrame with contract column names; raise InputError on any problem."""
    notes = report if report is not None else []
    idcol = ID_COLUMN[kind]
    gdf = gdf.reset_index(drop=True)
    if make_ids and idcol not in gdf.columns:
        stem = Path(source).stem if source else kind
        gdf[idcol] = [f"{stem}-{i + 1}" for i in range(len(gdf))]
        notes.append(f"{source}: no {idcol} column, rows numbered {stem}-1 … {stem}-{len(gdf)}")
    problems = check_columns(gdf, kind, source)
    if problems:
        raise InputError(problems, source=source)
    problems += _check_text_cells(gdf, source)
    problems += _coerce_types(gdf, source)
    if GEOMETRY_KIND[kind] == "polygon":
        gdf = merge_parts(gdf, idcol, source, notes)
    problems += check_ids(gdf, kind, source)
    gdf, geom_problems, repairs = check_geometries(gdf, kind, source, fix=fix)
    problems += geom_problems
    notes.extend(repairs)
    if problems:
        raise InputError(sorted(problems, key=lambda p: (p.row or 0)), source=source)
    gdf = gdf.reset_index(drop=True)
    if gdf.crs is None:
        gdf = gdf.set_crs("EPSG:4326")
    if len(gdf) == 0:
        return gdf
    if "Polygon" in gdf.geometry.iloc[0].geom_type:
        gdf.geometry.values[:] = [shapely.MultiPolygon([g]) if g.geom_type == "Polygon" else g for g in gdf.geometry.values]
    return gdf


def merge_parts(gdf: gpd.GeoDataFrame, idcol: str, source: str | None, notes: list) -> gpd.GeoDataFrame:
    """Merge rows that are parts of one multi-part polygon: same id and same attributes.

    Exports from desktop GIS often write a multi-part grid as several rows with one code. Those rows
    become one MultiPolygon (empty parts dropped), and a note says so. Rows sharing an id but
    differing in any attribute are left alone, so ``check_ids`` refuses them as duplicates.
    """
    if idcol not in gdf.columns or len(gdf) == 0:
        return gdf
    ids = gdf[idcol]
    dup = ids.notna() & ids.duplicated(keep=False)
    if not dup.any():
        return gdf
    geomcol = gdf.geometry.name
    attrs = [c for c in gdf.columns if c != geomcol]
    keep_rows = np.ones(len(gdf), dtype=bool)
    geoms = gdf.geometry.values.copy()
    merged = 0
    for value, rows in gdf[dup].groupby(idcol, sort=False).groups.items():
        pos = [gdf.index.get_loc(r) for r in rows]
        block = gdf.iloc[pos][attrs].astype(str)
        if len(block.drop_duplicates()) != 1:
            continue
        parts = [g for g in geoms[pos] if g is not None and not g.is_empty]
        if not parts:
            continue
        polys = []
        for g in parts:
            polys.extend(list(g.geoms) if g.geom_type == "MultiPolygon" else [g])
        geoms[pos[0]] = shapely.MultiPolygon(polys)
        keep_rows[pos[1:]] = False
        merged += 1
        notes.append(f"{source}: {idcol} {value}: {len(pos)} rows merged into one multi-part polygon ({len(polys)} parts)")
    if not merged:
        return gdf
    out = gdf.copy()
    out.geometry.values[:] = geoms
    # The index keeps the file's row positions so later problems still name the right row.
    return out[keep_rows]


# -- reading ------------------------------------------------------------------------------------

def _read_vector(path: Path, kind: str, layer: str | None, encoding: str | None, notes: list) -> gpd.GeoDataFrame:
    source = path.name
    kwargs = {}
    if path.suffix.lower() == ".gpkg":
        names = [n for n, _ in pyogrio.list_layers(path)]
        if layer is None:
            layer = kind if kind in names else (names[0] if len(names) == 1 else None)
            if layer is None:
                raise InputError(f"GeoPackage has layers {', '.join(names)}; none is named {kind!r}: say which with --layer",
                                 source=source)
        elif layer not in names:
            raise InputError(f"GeoPackage has no layer {layer!r} (layers: {', '.join(names)})", source=source)
        kwargs["layer"] = layer
    if path.suffix.lower() == ".shp" and not path.with_suffix(".cpg").exists() and not path.with_suffix(".CPG").exists():
        # Shapefiles from Chinese desktop GIS are often GBK without a .cpg; GDAL would assume Latin-1.
        if encoding is None:
            encoding = _guess_dbf_encoding(path.with_suffix(".dbf"))
            notes.append(f"{source}: no .cpg file; text read as {encoding} (override with --encoding)")
        kwargs["encoding"] = encoding
    elif encoding and path.suffix.lower() == ".shp":
        kwargs["encoding"] = encoding
    try:
        gdf = pyogrio.read_dataframe(path, use_arrow=True, **kwargs)
    except Exception as e:  # pyogrio/GDAL errors carry the reason; show it with the file name
        raise InputError(f"cannot read file: {e}", source=source) from None
    return gdf


def _guess_dbf_encoding(dbf: Path) -> str:
    """``utf-8`` if the DBF's text decodes as UTF-8, else ``gbk`` (the usual Chinese desktop GIS code page)."""
    try:
        raw = dbf.read_bytes()
    except OSError:
        return "utf-8"
    try:
        raw.decode("utf-8")
        return "utf-8"
    except UnicodeDecodeError:
        return "gbk"


def _excel_sheet(path: Path, kind: str, sheet: str | None, notes: list) -> pd.DataFrame:
    """The chosen sheet as object cells: ``sheet`` if named, else the first with a header for ``kind``."""
    source = path.name
    try:
        # dtype=object keeps what the cell holds: text stays text (ID numbers, phones with leading zeros).
        book = pd.read_excel(path, dtype=object, engine="openpyxl", header=None, sheet_name=None)
    except Exception as e:
        raise InputError(f"cannot read Excel file: {e}", source=source) from None
    if sheet is not None:
        if sheet not in book:
            raise InputError(f"no sheet named {sheet!r} (sheets: {', '.join(book)})", source=source)
        return book[sheet]
    for name, raw in book.items():
        if len(raw) and _has_header(raw, kind):
            if name != next(iter(book)):
                notes.append(f"{source}: read sheet {name!r} (the first with a {kind} header; use --sheet to choose)")
            return raw
    return next(iter(book.values()))


def _has_header(raw: pd.DataFrame, kind: str) -> bool:
    at = _header_row(raw, kind)
    cells = [str(c) for c in raw.iloc[at].tolist() if not _is_blank(c)]
    lon, lat = find_lonlat(cells)
    return bool(lon and lat) or ID_COLUMN[kind] in header_map(cells, kind).values()


def _read_table(path: Path, encoding: str | None, notes: list, kind: str,
                sheet: str | None = None) -> tuple[pd.DataFrame, int]:
    """A CSV or Excel sheet as text cells, and the number of rows above its first data row."""
    source = path.name
    if path.suffix.lower() in (".xlsx", ".xlsm"):
        raw = _excel_sheet(path, kind, sheet, notes)
        at = _header_row(raw, kind)
        if at:
            notes.append(f"{source}: {at} row(s) above the header skipped (the header is Excel row {at + 1})")
        df = raw.iloc[at + 1:].reset_index(drop=True)
        df.columns = [str(c) if not _is_blank(c) else f"Unnamed: {i}" for i, c in enumerate(raw.iloc[at])] if len(raw) else []
        return df, at + HEADER_ROWS
    encodings = [encoding] if encoding else ["utf-8-sig", "gbk"]
    last = None
    for enc in encodings:
        try:
            df = pd.read_csv(path, dtype=str, keep_default_na=False, encoding=enc)
            if enc == "gbk":
                notes.append(f"{source}: not UTF-8; read as GBK")
            return df.replace({"": None}), blank_lines_above(path) + HEADER_ROWS
        except UnicodeDecodeError as e:
            last = e
        except Exception as e:
            raise InputError(f"cannot read CSV: {e}", source=source) from None
    raise InputError(f"cannot decode text ({last}); pass --encoding", source=source)


def _header_row(raw: pd.DataFrame, kind: str, look: int = 10) -> int:
    """Index of the header row of a sheet: the first of its top rows naming the id or lon/lat columns.

    Rosters often carry a title row (``某某社区住户花名册``) above the header; 0 when none is found.
    """
    idcol = ID_COLUMN[kind]
    for i in range(min(look, len(raw))):
        cells = [str(c) for c in raw.iloc[i].tolist() if not _is_blank(c)]
        if not cells:
            continue
        lon, lat = find_lonlat(cells)
        if (lon and lat) or idcol in header_map(cells, kind).values():
            return i
    return 0


def blank_lines_above(path: Path) -> int:
    """Blank lines before a CSV's header (pandas skips them, a spreadsheet counts them)."""
    n = 0
    with open(path, "rb") as f:
        for line in f:
            if line.strip(b" \t\r\n\xef\xbb\xbf"):
                break
            n += 1
    return n


def _rename(df, kind: str):
    mapping = header_map(df.columns, kind)
    mapping = {k: v for k, v in mapping.items() if k != v}
    return df.rename(columns=mapping)


def _table_to_points(df: pd.DataFrame, kind: str, source: str, coords: str) -> gpd.GeoDataFrame:
    lon_col, lat_col = find_lonlat(df.columns)
    if lon_col is None or lat_col is None:
        missing = "longitude (lon/lng/经度/东经)" if lon_col is None else "latitude (lat/纬度/北纬)"
        raise InputError(Problem(f"no {missing} column; columns found: {', '.join(map(str, df.columns))}", source=source,
                                 column="lon" if lon_col is None else "lat"))
    lon_raw, lat_raw = df[lon_col], df[lat_col]
    df = _rename(df.drop(columns=[lon_col, lat_col]), kind)
    lon = pd.to_numeric(lon_raw, errors="coerce").to_numpy(dtype=float)
    lat = pd.to_numeric(lat_raw, errors="coerce").to_numpy(dtype=float)
    problems = []
    for i in np.flatnonzero(np.isnan(lon) & lon_raw.notna().to_numpy() & (lon_raw.astype(str).str.lower() != "nan").to_numpy()):
        problems.append(Problem(f"{lon_raw.iloc[i]!r} is not a number", source=source, row=int(i) + 1, column=str(lon_col)))
    for i in np.flatnonzero(np.isnan(lat) & lat_raw.notna().to_numpy() & (lat_raw.astype(str).str.lower() != "nan").to_numpy()):
        problems.append(Problem(f"{lat_raw.iloc[i]!r} is not a number", source=source, row=int(i) + 1, column=str(lat_col)))
    bad_rows = {p.row for p in problems}
    problems += [p for p in check_lonlat(lon, lat, source, str(lon_col), str(lat_col)) if p.row not in bad_rows]
    if problems:
        raise InputError(sorted(problems, key=lambda p: p.row or 0), source=source)
    x, y = crsmod.to_wgs84(lon, lat, coords)
    return gpd.GeoDataFrame(df, geometry=gpd.points_from_xy(x, y), crs="EPSG:4326")


def _vector_to_wgs84(gdf: gpd.GeoDataFrame, source: str, coords: str) -> gpd.GeoDataFrame:
    if gdf.crs is not None and not gdf.crs.is_geographic:
        gdf = gdf.to_crs("EPSG:4326")  # a projected file (e.g. CGCS2000 / Gauss-Krüger) says its own CRS
    elif gdf.crs is not None and gdf.crs.to_epsg() not in (4326, 4490, None):
        gdf = gdf.to_crs("EPSG:4326")
    if len(gdf) and coords not in ("wgs84", "cgcs2000"):
        coordsxy = shapely.get_coordinates(gdf.geometry.values)
        if np.all(np.isfinite(coordsxy)):
            gdf = crsmod.geodataframe_to_wgs84(gdf, coords)
    return gdf.set_crs("EPSG:4326", allow_override=True)


# -- typing -------------------------------------------------------------------------------------

def _is_blank(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or (isinstance(v, str) and v.strip() == "") or v is pd.NA


_ID_DIGITS_LOST = "ID number was stored as a number and lost its last digits; format the column as text in Excel"


def _as_text(v, column: str, source: str | None, row: int, problems: list) -> str | None:
    if _is_blank(v):
        return None
    if isinstance(v, (float, np.floating)):
        if float(v).is_integer():
            iv = int(v)
            if column == "id_number" and len(str(abs(iv))) > 15:
                # Excel keeps 15 significant digits: an 18-digit ID typed as a number has lost its tail.
                problems.append(Problem(_ID_DIGITS_LOST,
                                        source=source, row=row, column=column))
                return None
            return str(iv)
        return repr(float(v))
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        if column == "id_number" and len(str(abs(int(v)))) > 15:
            problems.append(Problem(_ID_DIGITS_LOST,
                                    source=source, row=row, column=column))
            return None
        return str(int(v))
    return str(v).strip()


def _as_bools(values, column: str, source: str | None, problems: list) -> list:
    """Yes/no cells through the one project vocabulary (``gridmap.contract.parse_bool``)."""
    out = []
    for i, v in enumerate(values):
        try:
            out.append(None if _is_blank(v) else parse_bool(v))
        except ValueError as e:
            problems.append(Problem(str(e), source=source, row=i + 1, column=column))
            out.append(None)
    return out


def _check_text_cells(gdf: pd.DataFrame, source: str | None) -> list[Problem]:
    """NUL bytes in any text cell, and numbers in scientific notation in phone / ID number columns.

    PostgreSQL cannot store a NUL (``\\x00``) in text, and a spreadsheet that shows ``1.38E+10`` in a
    CSV has already rounded the phone or ID number, so both are refused with the row and column.
    """
    problems: list[Problem] = []
    for col in gdf.columns:
        if isinstance(gdf, gpd.GeoDataFrame) and col == gdf.geometry.name:
            continue
        if "\x00" in str(col):
            problems.append(Problem("column header contains a NUL byte (\\x00); save the file again as plain UTF-8 text",
                                    source=source, column=repr(str(col))))
            continue
        for i, v in enumerate(gdf[col].tolist()):
            if not isinstance(v, str):
                continue
            if "\x00" in v:
                problems.append(Problem("cell contains a NUL byte (\\x00); remove it or save the file again as plain text",
                                        source=source, row=i + 1, column=str(col)))
            elif col in DIGIT_COLUMNS and _SCIENTIFIC.match(v.strip()):
                problems.append(Problem(f"{v.strip()!r} is a number in scientific notation: its digits are lost; format the "
                                        "column as text in Excel and type the numbers again", source=source, row=i + 1,
                                        column=str(col)))
    return problems


def _coerce_types(gdf: pd.DataFrame, source: str | None) -> list[Problem]:
    problems: list[Problem] = []
    n = len(gdf)
    for col in gdf.columns:
        if col == gdf.geometry.name if isinstance(gdf, gpd.GeoDataFrame) else False:
            continue
        values = gdf[col].tolist()
        if col in TEXT_COLUMNS:
            if all(type(v) is str for v in values):
                gdf[col] = pd.Series([v.strip() or None for v in values], index=gdf.index, dtype=object)
                continue
            gdf[col] = pd.Series([_as_text(v, col, source, i + 1, problems) for i, v in enumerate(values)],
                                 index=gdf.index, dtype=object)
        elif col in BOOL_COLUMNS:
            gdf[col] = pd.Series(_as_bools(values, col, source, problems), index=gdf.index, dtype=object)
        elif col in INT_COLUMNS or col in FLOAT_COLUMNS:
            raw = pd.Series(values, index=gdf.index, dtype=object)
            blank = raw.map(_is_blank).to_numpy(dtype=bool)
            num = pd.to_numeric(raw.where(~blank, None), errors="coerce").astype(float)
            arr = num.to_numpy()
            bad = ~blank & ~np.isfinite(arr)
            ok = ~blank & ~bad
            nonint = ok & (np.mod(np.where(ok, arr, 0.0), 1.0) != 0) if col in INT_COLUMNS else np.zeros(n, dtype=bool)
            neg = ok & (np.where(ok, arr, 0.0) < 0)
            for i in np.flatnonzero(bad | nonint | neg):
                v = values[i]
                what = "is not a number" if bad[i] else "is not a whole number" if nonint[i] else "is negative"
                problems.append(Problem(f"{v!r} {what}", source=source, row=int(i) + 1, column=col))
            num[bad] = np.nan
            gdf[col] = num.round().astype("Int64") if col in INT_COLUMNS and not nonint.any() else num
        elif col in LIST_COLUMNS:
            out: list[str | None] = []
            for v in values:
                if isinstance(v, (list, tuple, np.ndarray)):
                    out.append(",".join(str(x).strip() for x in v if str(x).strip()))
                elif _is_blank(v):
                    out.append(None)
                else:
                    out.append(",".join(p.strip() for p in _LIST_SPLIT.split(str(v)) if p.strip()))
            gdf[col] = pd.Series(out, index=gdf.index, dtype=object)
    if n and "min_links" in gdf.columns and "max_links" in gdf.columns:
        lo, hi = gdf["min_links"], gdf["max_links"]
        inverted = (lo.notna() & hi.notna()) & (lo > hi)
        for i in np.flatnonzero(inverted.to_numpy(dtype=bool)):
            problems.append(Problem(f"min_links {lo.iloc[i]} is above max_links {hi.iloc[i]}", source=source,
                                    row=int(i) + 1, column="min_links"))
    return problems


def split_list(value) -> list[str]:
    """A ``tags``/``skills`` cell (comma-joined text) as a list of strings."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return []
    return [p for p in str(value).split(",") if p]


# -- writing ------------------------------------------------------------------------------------

def write_layer(gdf: gpd.GeoDataFrame, path, layer: str | None = None) -> Path:
    """Write a GeoDataFrame (WGS84) to GeoJSON, GeoPackage (named ``layer``), Shapefile (UTF-8 with .cpg) or CSV (lon/lat).

    GeoPackage layers are replaced individually, so several layers can be written to one file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ext = path.suffix.lower()
    if ext == ".csv":
        df = pd.DataFrame(gdf.drop(columns=gdf.geometry.name))
        if len(gdf) and gdf.geometry.geom_type.isin(["Point"]).all():
            df.insert(0, "lat", gdf.geometry.y.round(7))
            df.insert(0, "lon", gdf.geometry.x.round(7))
        df.to_csv(path, index=False, encoding="utf-8")
        return path
    kwargs = {}
    if ext == ".gpkg":
        kwargs["layer"] = layer or path.stem
        if path.exists():
            kwargs["append"] = False
    elif ext == ".shp":
        kwargs["encoding"] = "utf-8"
    elif ext in (".geojson", ".json"):
        kwargs["driver"] = "GeoJSON"
        if path.exists():
            path.unlink()
    pyogrio.write_dataframe(_writable(gdf), path, **kwargs)
    return path


def _writable(gdf: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """Columns GDAL can store: lists joined, uint64 H3 ids as text-free int64, objects as strings."""
    out = gdf.copy()
    for col in out.columns:
        if col == out.geometry.name:
            continue
        s = out[col]
        if s.dtype == np.uint64:
            out[col] = s.astype(np.int64)
        elif s.dtype == object:
            if s.map(lambda v: isinstance(v, (list, tuple, set, np.ndarray))).any():
                out[col] = s.map(lambda v: ",".join(map(str, v)) if isinstance(v, (list, tuple, set, np.ndarray)) else v)
    return out


def list_layers(path) -> list[str]:
    """Layer names of a GeoPackage (or the single layer of another vector file)."""
    return [n for n, _ in pyogrio.list_layers(path)]
