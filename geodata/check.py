"""The one-pass roster checker: every problem of an uploaded file, in the user's own terms.

``geodata.io.read_layer`` refuses a file at the first kind of problem, in English, with data-row
numbers. A street-office clerk fixing a roster in Excel needs every problem at once, with the row
number Excel shows, the header the clerk typed (身份证号, not ``id_number``), the value and what is
wrong in Chinese. :func:`check_file` gives exactly that (:class:`CheckResult`), and — when nothing is
wrong — the layer as a contract GeoDataFrame (WGS84, EPSG:4326) ready for
``geodata.store.importer.import_layer``. :func:`write_problem_workbook` gives the file back as Excel
with a 问题 column.

Coordinates: a file whose points mostly fall outside the stored grids but inside them once shifted
from GCJ-02 (Amap, Tencent) or BD-09 (Baidu) is named as likely in that system (:func:`guess_coords`).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import shapely
from shapely.validation import explain_validity

from geodata import crs as crsmod
from geodata.crs import CHINA_BBOX
from geodata.errors import InputError
from geodata.headers import find_lonlat, header_map
from gridmap.contract import GEOMETRY_KIND, ID_COLUMN, LAYERS, REQUIRED, parse_bool

TABLE_EXT = (".csv", ".txt", ".xlsx", ".xlsm")
VECTOR_EXT = (".geojson", ".json", ".gpkg", ".shp", ".zip")

#: Chinese names of the contract columns, for messages about a column the file lacks.
COLUMN_LABELS = {
    "household_id": "户编号", "member_id": "党员编号", "grid_code": "网格编号", "code": "编号", "name": "名称/姓名",
    "size": "家庭人数", "tags": "标签", "phone": "联系电话", "id_number": "身份证号", "community_code": "社区编号",
    "street_code": "街道编号", "kind": "类型", "has_branch": "是否有支部", "branch_name": "支部名称",
    "skills": "技能", "available": "是否在岗", "min_links": "最少联系户数", "max_links": "最多联系户数",
    "centre_id": "服务中心编号", "radius_m": "服务半径（米）", "incident_id": "事件编号", "category": "事件类别",
    "reported_at": "上报时间", "level": "等级", "status": "状态", "required_skill": "所需技能",
}
#: Layer names in Chinese.
LAYER_LABELS = {"households": "住户", "members": "党员", "grids": "网格", "communities": "社区", "streets": "街道",
                "service_centres": "党群服务中心", "incidents": "事件"}
#: Coordinate systems in Chinese (what the upload form offers).
COORDS_LABELS = {"wgs84": "WGS84（GPS 原始坐标）", "gcj02": "GCJ-02（高德、腾讯地图）", "bd09": "BD-09（百度地图）",
                 "cgcs2000": "CGCS2000（国家大地坐标系）"}

INT_COLUMNS = ("size", "min_links", "max_links", "level")
FLOAT_COLUMNS = ("radius_m",)
BOOL_COLUMNS = ("has_branch", "available")
#: Share of points inside the grids below which a file is suspected of another coordinate system, and
#: the share a shift must reach to be suggested.
SUSPECT_INSIDE, SHIFTED_INSIDE = 0.5, 0.8
_SCIENTIFIC = re.compile(r"^[+-]?\d+(?:\.\d*)?[eE][+-]?\d+$")
_PHONE = re.compile(r"^(?:\+?86)?(1\d{10}|0\d{2,3}-?\d{7,8}(?:-\d{1,6})?|\d{7,8})$")
_ID18 = re.compile(r"^\d{17}[\dX]$")
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


@dataclass
class Issue:
    """One problem: ``row`` as the file shows it (Excel row; feature number for GIS files; None: the whole
    file), the user's own ``header``, the cell's ``value`` and the ``problem`` in Chinese."""

    row: int | None
    header: str
    value: str
    problem: str

    def as_dict(self) -> dict:
        return {"row": self.row, "header": self.header, "value": self.value, "problem": self.problem}


@dataclass
class CheckResult:
    """What :func:`check_file` found. ``frame`` is the layer ready to import, only when ``issues`` is empty."""

    layer: str
    source: str
    coords: str
    is_table: bool
    sheet: str | None = None
    sheets: list[str] = field(default_factory=list)
    header_row: int | None = None
    rows: int = 0
    issues: list[Issue] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    columns: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    coords_hint: str | None = None
    frame: gpd.GeoDataFrame | None = None

    @property
    def ok(self) -> bool:
        return not self.issues


@dataclass
class _Raw:
    """A file read as it is: ``df`` with the user's headers, and how to number its rows."""

    df: pd.DataFrame
    first_row: int  # the row number (as the file shows it) of df's first data row
    header_row: int | None = None
    sheet: str | None = None
    sheets: list[str] = field(default_factory=list)
    crs: object = None


# -- reading ------------------------------------------------------------------------------------------

def excel_sheets(path) -> list[str]:
    """Sheet names of an Excel workbook, in workbook order."""
    import openpyxl

    wb = openpyxl.load_workbook(path, read_only=True)
    try:
        return list(wb.sheetnames)
    finally:
        wb.close()


def _is_blank(v) -> bool:
    return v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)) or (isinstance(v, str) and not v.strip())


def _header_at(raw: pd.DataFrame, layer: str, look: int = 10) -> int | None:
    """Index of the header row among a sheet's top rows (title rows above it are normal), None if none."""
    for i in range(min(look, len(raw))):
        cells = [str(c) for c in raw.iloc[i].tolist() if not _is_blank(c)]
        lon, lat = find_lonlat(cells)
        if (lon and lat) or ID_COLUMN[layer] in header_map(cells, layer).values():
            return i
    return None


def _frame_below(raw: pd.DataFrame, at: int) -> pd.DataFrame:
    df = raw.iloc[at + 1:].reset_index(drop=True)
    df.columns = [str(c).strip() if not _is_blank(c) else f"未命名列{i + 1}" for i, c in enumerate(raw.iloc[at])]
    return _drop_blank_rows(df)


def _drop_blank_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Rows with no value at all left out; the index keeps each row's position so numbers stay right."""
    if not len(df):
        return df
    return df.loc[~df.apply(lambda r: all(_is_blank(v) for v in r), axis=1)]


def _read_excel(path: Path, layer: str, sheet: str | None) -> _Raw:
    sheets = excel_sheets(path)
    if sheet is not None and sheet not in sheets:
        raise InputError(f"工作簿里没有名为「{sheet}」的工作表（有：{'、'.join(sheets)}）", source=path.name)
    # dtype=object keeps what each cell holds: a phone typed as a number arrives as a number.
    for name in [sheet] if sheet else sheets:
        raw = pd.read_excel(path, sheet_name=name, dtype=object, header=None, engine="openpyxl")
        at = _header_at(raw, layer)
        if at is not None or sheet:
            at = at or 0
            df = _frame_below(raw, at)
            # Excel rows are 1-based and blank rows at the top are kept by openpyxl's reader.
            return _Raw(df, first_row=at + 2, header_row=at + 1, sheet=name, sheets=sheets)
    raise InputError(f"没有一个工作表带有{LAYER_LABELS[layer]}的表头（如「{COLUMN_LABELS[ID_COLUMN[layer]]}」"
                     f"或经度/纬度）：请在上传时选择工作表（有：{'、'.join(sheets)}）", source=path.name)


def _read_csv(path: Path, encoding: str | None, notes: list[str]) -> _Raw:
    last = None
    for enc in [encoding] if encoding else ["utf-8-sig", "gbk"]:
        try:
            df = pd.read_csv(path, dtype=str, keep_default_na=False, encoding=enc, skip_blank_lines=False)
        except UnicodeDecodeError as e:
            last = e
            continue
        if enc == "gbk":
            notes.append("文件不是 UTF-8 编码，已按 GBK（中文 Windows 默认）读取。")
        from geodata.io import blank_lines_above  # one definition, shared with the readers

        blank_above = blank_lines_above(path)
        return _Raw(_drop_blank_rows(df.replace({"": None})), first_row=blank_above + 2, header_row=blank_above + 1)
    raise InputError(f"无法识别文本编码（{last}）：请另存为 UTF-8 或 GBK 的 CSV", source=path.name)


def _read_vector(path: Path, layer: str, sheet: str | None) -> _Raw:
    kwargs = {}
    if path.suffix.lower() == ".gpkg":
        names = [n for n, _ in pyogrio.list_layers(path)]
        kwargs["layer"] = sheet or (layer if layer in names else names[0])
    try:
        gdf = pyogrio.read_dataframe(path, **kwargs)
    except (pyogrio.errors.DataSourceError, pyogrio.errors.DataLayerError, pyogrio.errors.GeometryError) as e:
        raise InputError(f"无法读取文件：{e}", source=path.name) from None
    return _Raw(gdf, first_row=1, sheet=kwargs.get("layer"), crs=gdf.crs)


def read_raw(path, layer: str, *, sheet: str | None = None, encoding: str | None = None,
             notes: list[str] | None = None) -> _Raw:
    """Read a file as the user wrote it (headers and cells untouched), with its row numbering."""
    path = Path(path)
    ext = path.suffix.lower()
    if ext in (".xlsx", ".xlsm"):
        return _read_excel(path, layer, sheet)
    if ext in (".csv", ".txt"):
        return _read_csv(path, encoding, notes if notes is not None else [])
    if ext in VECTOR_EXT:
        return _read_vector(path, layer, sheet)
    raise InputError(f"不支持的文件类型 {ext}：请上传 Excel（.xlsx）、CSV、GeoJSON、GeoPackage 或打包成 zip 的 Shapefile",
                     source=path.name)


# -- cell checks --------------------------------------------------------------------------------------

def _shown(v) -> str:
    if _is_blank(v):
        return ""
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def id_number_problem(value: str) -> str | None:
    """What is wrong with a 居民身份证号 (GB 11643: 18 characters, the last a check digit or X), or None."""
    v = value.strip().upper()
    if re.fullmatch(r"\d{15}", v):
        return None  # first-generation 15-digit numbers carry no check digit
    if not _ID18.match(v):
        return "身份证号应为 18 位（最后一位可以是 X）"
    total = sum(int(d) * w for d, w in zip(v[:17], _ID_WEIGHTS))
    if "10X98765432"[total % 11] != v[17]:
        return "身份证号校验位不对，可能有数字输错"
    return None


def _text_problem(col: str, v) -> str | None:
    """Phones and ID numbers must be text: a number cell has lost leading zeros or digits."""
    if col not in ("phone", "id_number"):
        return None
    what = "电话" if col == "phone" else "身份证号"
    if not isinstance(v, str):
        return f"{what}被存成了数字（Excel 会去掉开头的 0、把长号码改成科学计数法）：请把这一列设为“文本”格式后重新输入"
    if _SCIENTIFIC.match(v.strip()):
        return f"{what}是科学计数法（如 1.38E+10），数字已经丢失：请把这一列设为“文本”格式后重新输入"
    if col == "phone" and not _PHONE.match(re.sub(r"[\s()（）]", "", v)):
        return "不像电话号码（手机 11 位，座机如 0571-87654321）"
    if col == "id_number":
        return id_number_problem(v)
    return None


def _cell_problem(col: str, v) -> str | None:
    """The Chinese problem of one non-blank cell of contract column ``col``, or None."""
    if col in ("phone", "id_number"):
        return _text_problem(col, v)
    if col in INT_COLUMNS or col in FLOAT_COLUMNS:
        try:
            x = float(str(v).strip())
        except ValueError:
            return "不是数字"
        if not math.isfinite(x):
            return "不是数字"
        if x < 0:
            return "不能是负数"
        if col in INT_COLUMNS and not x.is_integer():
            return "应为整数"
        return None
    if col in BOOL_COLUMNS:
        try:
            parse_bool(v)
        except ValueError:
            return "应填“是”或“否”（也可填 1/0）"
        return None
    if col == "reported_at":
        return None if not pd.isna(pd.to_datetime(str(v), errors="coerce")) else "不是日期时间（如 2024-05-01 08:30）"
    if isinstance(v, str) and "\x00" in v:
        return "单元格里有不可见的空字符（\\x00）：请删除后重新输入"
    return None


def _check_cells(df: pd.DataFrame, mapping: dict[str, str], rows: np.ndarray) -> list[Issue]:
    issues = []
    for header, col in mapping.items():
        for row, v in zip(rows, df[header].tolist()):
            if _is_blank(v):
                continue
            problem = _cell_problem(col, v)
            if problem:
                issues.append(Issue(int(row), header, _shown(v), problem))
    return issues


def _check_ids(df: pd.DataFrame, header: str, rows: np.ndarray, label: str) -> list[Issue]:
    """Blank ids, and each repeat of an id (naming the row that has it first)."""
    issues: list[Issue] = []
    first_seen: dict[str, int] = {}
    for row, v in zip(rows.tolist(), df[header].tolist()):
        if _is_blank(v):
            issues.append(Issue(row, header, "", f"{label}为空"))
            continue
        key = _shown(v).strip()
        if key in first_seen:
            issues.append(Issue(row, header, key, f"{label}重复：第 {first_seen[key]} 行已有同一编号"))
        else:
            first_seen[key] = row
    return issues


def _required(layer: str, mapping: dict[str, str]) -> list[Issue]:
    have = set(mapping.values())
    return [Issue(None, COLUMN_LABELS.get(c, c), "", f"缺少必填列「{COLUMN_LABELS.get(c, c)}」")
            for c in REQUIRED[layer] if c not in have]


# -- coordinates and geometry -------------------------------------------------------------------------

def _number(v) -> float | None:
    """A coordinate cell as a float; None when it is not a number (blank is NaN)."""
    if _is_blank(v):
        return float("nan")
    try:
        return float(str(v).strip())
    except ValueError:
        return None


def _coordinate_problem(x: float | None, y: float | None) -> str | None:
    minx, miny, maxx, maxy = CHINA_BBOX
    if x is None or y is None:
        return "经度或纬度不是数字"
    if not (math.isfinite(x) and math.isfinite(y)):
        return "缺少经度或纬度"
    if minx <= x <= maxx and miny <= y <= maxy:
        return None
    if minx <= y <= maxx and miny <= x <= maxy:
        return "经度和纬度填反了（经度约 73–135，纬度约 4–54）"
    return "位置不在中国境内：请检查坐标系和经纬度列"


def _table_points(df: pd.DataFrame, lon_h: str, lat_h: str, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[Issue]]:
    """Longitude/latitude of each row (degrees, as written) and one issue per bad row."""
    xs, ys, issues = [], [], []
    for row, a, b in zip(rows.tolist(), df[lon_h].tolist(), df[lat_h].tolist()):
        x, y = _number(a), _number(b)
        problem = _coordinate_problem(x, y)
        if problem:
            header = lat_h if (x is not None and math.isfinite(x) and (y is None or not math.isfinite(y))) else lon_h
            issues.append(Issue(row, header, f"{_shown(a)}, {_shown(b)}", problem))
        xs.append(x if x is not None else float("nan"))
        ys.append(y if y is not None else float("nan"))
    return np.array(xs, dtype=float), np.array(ys, dtype=float), issues


def _geometry_problem(g, want: str) -> str | None:
    if g is None or g.is_empty:
        return "没有图形（几何为空）"
    kind = g.geom_type
    if want == "point" and kind not in ("Point", "MultiPoint"):
        return f"图形是 {kind}，这一层应为点"
    if want == "polygon" and kind not in ("Polygon", "MultiPolygon"):
        return f"图形是 {kind}，这一层应为面（多边形）"
    xy = shapely.get_coordinates(g)
    if not np.isfinite(xy).all():
        return "坐标里有空值或无穷大"
    c = g.centroid
    where = _coordinate_problem(c.x, c.y)
    if where:
        return where
    if want == "polygon" and not g.is_valid:
        return f"多边形无效（{explain_validity(g)}）：边界自相交或有重复点，请在 GIS 软件里修复"
    return None


def _check_geometries(gdf: gpd.GeoDataFrame, want: str, rows: np.ndarray) -> list[Issue]:
    return [Issue(int(row), "几何图形", "", p) for row, g in zip(rows, gdf.geometry.values)
            if (p := _geometry_problem(g, want))]


def share_inside(x: np.ndarray, y: np.ndarray, grids: gpd.GeoDataFrame, codes: np.ndarray | None = None) -> float:
    """Share of the points (WGS84 degrees) lying inside a grid polygon — the one ``codes`` names, if given."""
    if len(x) == 0 or len(grids) == 0:
        return 0.0
    pidx, gidx = grids.sindex.query(shapely.points(x, y), predicate="intersects")
    if codes is None:
        return len(np.unique(pidx)) / len(x)
    hit = grids["grid_code"].astype(str).to_numpy()[gidx] == codes[pidx]
    return len(np.unique(pidx[hit])) / len(x)


def guess_coords(x: np.ndarray, y: np.ndarray, coords: str, grids: gpd.GeoDataFrame,
                 codes: np.ndarray | None = None) -> tuple[str | None, dict]:
    """The coordinate system the points (as written) are likely in, when it is not ``coords``.

    Each system is tried by converting the points to WGS84 and counting how many fall in a stored grid
    (in the grid ``codes`` names, when the file gives each point's grid: inside a street tiled with
    grids a shift of a few hundred metres still lands most points in *some* grid). Returns
    ``(system or None, {system: share inside})``; a system is suggested when fewer than
    ``SUSPECT_INSIDE`` of the points lie inside as chosen and at least ``SHIFTED_INSIDE`` after its shift.
    """
    ok = np.isfinite(x) & np.isfinite(y)
    if codes is not None:
        ok &= codes != ""
    x, y = x[ok], y[ok]
    codes = codes[ok] if codes is not None else None
    shares = {}
    for system in ("wgs84", "gcj02", "bd09"):
        wx, wy = crsmod.to_wgs84(x, y, system)
        shares[system] = share_inside(np.asarray(wx), np.asarray(wy), grids, codes)
    chosen = shares["wgs84" if coords == "cgcs2000" else coords]
    best = max(shares, key=lambda system: shares[system])
    if len(x) and chosen < SUSPECT_INSIDE and shares[best] >= SHIFTED_INSIDE and best != coords:
        return best, shares
    return None, shares


# -- grids and regions --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Region:
    """The codes a user may write into (None: everywhere). Grids, communities and streets."""

    grids: frozenset[str] | None = None
    communities: frozenset[str] | None = None
    streets: frozenset[str] | None = None

    def allows(self, layer: str, record: dict) -> bool:
        """Whether a row of ``layer`` (contract names; points carry their located ``grid_code``) lies inside."""
        if self.grids is None or self.communities is None or self.streets is None:
            return True
        if layer == "streets":
            return record.get("code") in self.streets
        if layer == "communities":
            return record.get("code") in self.communities or record.get("street_code") in self.streets
        if layer == "grids":
            return record.get("grid_code") in self.grids or record.get("community_code") in self.communities
        return record.get("grid_code") in self.grids


OUTSIDE_REGION = "不在您的管辖范围内：只能导入本街道/社区的数据"


def _check_grid_codes(points: gpd.GeoDataFrame, grids: gpd.GeoDataFrame, header: str | None,
                      tolerance_m: float) -> tuple[list[tuple[int, str, str, str]], pd.Series]:
    """Given grid codes naming no grid, or a grid farther than ``tolerance_m`` metres; and each point's grid.

    Returns ``([(position, header, value, problem)], grid of each point)``: the given code when right,
    else (blank codes) the one the polygons give.
    """
    from geodata.validate import derive_grid_codes, metres_outside_named_grid

    derived = derive_grid_codes(points, grids, tolerance_m)
    if header is None:
        return [], derived
    given = points["grid_code"].map(lambda v: _shown(v).strip())
    dist = metres_outside_named_grid(points, grids, given)
    found = []
    for pos, (code, d, where) in enumerate(zip(given, dist, derived)):
        if not code:
            continue
        lies = f"按位置应属于网格 {where}" if where else "按位置不在任何网格内"
        if np.isnan(d):
            found.append((pos, header, code, f"网格编号「{code}」不存在（{lies}）"))
        elif d > tolerance_m:
            found.append((pos, header, code, f"位置在网格 {code} 之外约 {d:,.0f} 米（{lies}）"))
    located = given.where(given != "", derived)
    return found, located


# -- the one pass ---------------------------------------------------------------------------------------

def check_file(path, layer: str, *, sheet: str | None = None, coords: str = "wgs84", encoding: str | None = None,
               grids: gpd.GeoDataFrame | None = None, region: Region | None = None,
               tolerance_m: float = 50.0, source: str | None = None) -> CheckResult:
    """Check an uploaded roster in one pass and, when nothing is wrong, build the layer to import.

    Parameters
    ----------
    path : the file (Excel, CSV in UTF-8 or GBK, GeoJSON, GeoPackage, zipped Shapefile).
    layer : contract layer (``households``, ``members``, ``grids`` …).
    sheet : Excel sheet (or GeoPackage layer); default: the first sheet with a header for ``layer``.
    coords : the system the file's coordinates are in (``wgs84``, ``gcj02``, ``bd09``, ``cgcs2000``).
    grids : the stored grids (WGS84, ``grid_code``): point layers' grid codes are checked against them
        and the coordinate system is guessed from them.
    region : where the user may write; rows elsewhere are problems.
    tolerance_m : metres a point may lie outside the grid its code names.
    """
    if layer not in LAYERS:
        raise InputError(f"未知的数据层 {layer}")
    coords = crsmod.check_coords(coords)
    path = Path(path)
    result = CheckResult(layer=layer, source=source or path.name, coords=coords,
                         is_table=path.suffix.lower() in TABLE_EXT)
    raw = read_raw(path, layer, sheet=sheet, encoding=encoding, notes=result.notes)
    result.sheet, result.sheets, result.header_row = raw.sheet, raw.sheets, raw.header_row
    df = raw.df
    rows = raw.first_row + df.index.to_numpy()
    result.rows = len(df)
    geom_col = df.geometry.name if isinstance(df, gpd.GeoDataFrame) else None
    lon_h, lat_h = find_lonlat([c for c in df.columns if c != geom_col]) if geom_col is None else (None, None)
    headers = [c for c in df.columns if c not in (geom_col, lon_h, lat_h)]
    mapping = header_map(headers, layer)
    result.columns = {v: k for k, v in mapping.items()}
    result.ignored = [c for c in headers if c not in mapping and not _unnamed_and_empty(df, c)]
    result.issues += _required(layer, mapping)
    x, y, geoms = _geometry(df, geom_col, lon_h, lat_h, rows, layer, result)
    if ID_COLUMN[layer] in result.columns:
        result.issues += _check_ids(df, result.columns[ID_COLUMN[layer]], rows, COLUMN_LABELS[ID_COLUMN[layer]])
    result.issues += _check_cells(df, {h: c for h, c in mapping.items() if c != ID_COLUMN[layer]}, rows)
    frame = _contract_frame(df, mapping, geoms)
    if GEOMETRY_KIND[layer] == "point" and grids is not None and len(grids) and x is not None:
        _place_points(frame, grids, x, y, rows, result, tolerance_m)
    if region is not None:
        _check_region(frame, layer, rows, result, region)
    result.issues.sort(key=lambda i: (i.row or 0))
    if not result.issues:
        result.frame = _normalised(frame, layer, rows, result)
    return result


def _unnamed_and_empty(df: pd.DataFrame, header: str) -> bool:
    return header.startswith("未命名列") and all(_is_blank(v) for v in df[header].tolist())


def _geometry(df, geom_col, lon_h, lat_h, rows, layer: str, result: CheckResult):
    """WGS84 geometry of each row (None where wrong) and, for points, the coordinates as written."""
    want = GEOMETRY_KIND[layer]
    if geom_col is None and want == "polygon":
        result.issues.append(Issue(None, "几何图形", "", f"{LAYER_LABELS[layer]}是面状数据，表格里画不出边界："
                                   "请上传 GeoJSON、GeoPackage 或打包成 zip 的 Shapefile"))
        return None, None, [None] * len(df)
    if geom_col is None:
        if lon_h is None or lat_h is None:
            result.issues.append(Issue(None, "经度/纬度", "", "找不到经度、纬度列（表头写“经度”“纬度”或 lon、lat）"))
            return None, None, [None] * len(df)
        x, y, issues = _table_points(df, lon_h, lat_h, rows)
        result.issues += issues
        bad = {i.row for i in issues}
        wx, wy = crsmod.to_wgs84(np.nan_to_num(x), np.nan_to_num(y), result.coords)
        geoms = [None if int(r) in bad else shapely.Point(a, b) for r, a, b in zip(rows, wx, wy)]
        return x, y, geoms
    gdf = df
    if gdf.crs is not None and (not gdf.crs.is_geographic or gdf.crs.to_epsg() not in (4326, 4490, None)):
        gdf = gdf.to_crs("EPSG:4326")  # a projected file (e.g. CGCS2000 Gauss-Krüger) says its own CRS
    issues = _check_geometries(gdf, want, rows)
    result.issues += issues
    bad = {i.row for i in issues}
    shapes = np.asarray(gdf.geometry.values, dtype=object)
    px: np.ndarray | None = None
    py: np.ndarray | None = None
    if want == "point":
        unusable = np.array([int(r) in bad for r in rows], dtype=bool)
        probe = shapely.centroid(np.where(unusable, np.array(None, dtype=object), shapes))  # type: ignore[call-overload]  # numpy stubs lack object arrays
        px, py = np.asarray(shapely.get_x(probe)), np.asarray(shapely.get_y(probe))
    if result.coords in ("gcj02", "bd09"):
        shifted = crsmod.geodataframe_to_wgs84(gpd.GeoDataFrame(geometry=list(shapes), crs="EPSG:4326")
                                               .loc[[int(r) not in bad for r in rows]], result.coords)
        shapes = shapes.copy()
        shapes[np.flatnonzero([int(r) not in bad for r in rows])] = shifted.geometry.values
    return px, py, [None if int(r) in bad else g for r, g in zip(rows, shapes)]


def _contract_frame(df: pd.DataFrame, mapping: dict[str, str], geoms) -> gpd.GeoDataFrame:
    data = {contract: df[header].to_numpy(dtype=object) for header, contract in mapping.items()}
    return gpd.GeoDataFrame(pd.DataFrame(data, index=df.index), geometry=list(geoms), crs="EPSG:4326")


def _place_points(frame: gpd.GeoDataFrame, grids: gpd.GeoDataFrame, x, y, rows, result: CheckResult,
                  tolerance_m: float) -> None:
    """Guess the coordinate system against the stored grids; then check each given grid code."""
    codes = None
    if "grid_code" in frame.columns and frame["grid_code"].map(_is_blank).mean() < 0.5:
        codes = frame["grid_code"].map(lambda v: _shown(v).strip()).to_numpy(dtype=object).astype(str)
    hint, shares = guess_coords(x, y, result.coords, grids, codes)
    if hint:
        result.coords_hint = hint
        chosen = shares["wgs84" if result.coords == "cgcs2000" else result.coords]
        result.issues.append(Issue(None, "坐标系", COORDS_LABELS[result.coords],
                                   f"坐标看起来是 {COORDS_LABELS[hint]}：按 {COORDS_LABELS[result.coords]} 只有 "
                                   f"{chosen:.0%} 的点落在网格内，按 {COORDS_LABELS[hint]} 换算后有 {shares[hint]:.0%}。"
                                   "请把坐标系改选后重新检查"))
        return
    have = frame.geometry.notna().to_numpy()
    points = frame.loc[have]
    header = result.columns.get("grid_code")
    found, located = _check_grid_codes(points, grids, header if "grid_code" in frame.columns else None, tolerance_m)
    for pos, h, value, problem in found:
        result.issues.append(Issue(int(rows[have][pos]), h, value, problem))
    frame["_located"] = pd.Series(located.to_numpy(dtype=object), index=points.index).reindex(frame.index)


def _check_region(frame: gpd.GeoDataFrame, layer: str, rows, result: CheckResult, region: Region) -> None:
    """Rows outside the user's region are problems (named by the region column, or the location)."""
    bad = {i.row for i in result.issues}
    for row, (_, rec) in zip(rows.tolist(), frame.iterrows()):
        if row in bad:
            continue
        record = {k: (_shown(v).strip() or None) for k, v in rec.items() if k != frame.geometry.name}
        if "_located" in record:
            record["grid_code"] = record["_located"]
        if not region.allows(layer, record):
            named = next((c for c in ("grid_code", "community_code", "street_code", "code") if c in result.columns), None)
            header = result.columns[named] if named else "位置"
            value = record.get("grid_code") if layer not in ("grids", "communities", "streets") else record.get(named)
            result.issues.append(Issue(row, header, value or "（不在任何网格内）", OUTSIDE_REGION))


def _normalised(frame: gpd.GeoDataFrame, layer: str, rows, result: CheckResult) -> gpd.GeoDataFrame | None:
    """The contract frame typed by ``geodata.io.normalise``; anything it still refuses becomes issues."""
    from geodata.io import normalise

    out = frame.drop(columns=[c for c in ("_located",) if c in frame.columns])
    try:
        out = normalise(out, layer, result.source)
    except InputError as e:
        for p in e.problems:
            row = int(rows[p.row - 1]) if p.row else None
            result.issues.append(Issue(row, result.columns.get(p.column or "", p.column or ""), "", p.message))
        return None
    out.attrs.update(source=result.source, rows_above=None)
    return out


# -- the file back with a 问题 column --------------------------------------------------------------------

def problems_by_row(issues: list[Issue]) -> dict[int | None, str]:
    """One 问题 cell per row: every problem of the row, each naming its column."""
    out: dict[int | None, list[str]] = {}
    for i in issues:
        out.setdefault(i.row, []).append(f"【{i.header}】{i.problem}")
    return {row: "；".join(texts) for row, texts in out.items()}


def write_problem_workbook(path, result: CheckResult, out_path) -> Path:
    """The uploaded file as Excel with a 问题 column beside each row, plus a 问题汇总 sheet listing all.

    An Excel upload keeps its sheets (说明 …) and cell formats; a CSV is laid out so that every row
    keeps the row number the check reported.
    """
    import openpyxl

    path, out_path = Path(path), Path(out_path)
    if path.suffix.lower() in (".xlsx", ".xlsm"):
        wb = openpyxl.load_workbook(path)
        ws = wb[result.sheet]
    else:
        wb = openpyxl.Workbook()
        ws = wb.active
        if result.is_table:
            ws.title = "数据"
            _copy_csv(ws, path, result)
    by_row = problems_by_row(result.issues)
    if result.is_table and result.header_row:
        col = ws.max_column + 1
        ws.cell(result.header_row, col, "问题")
        for row, text in by_row.items():
            if row is not None:
                ws.cell(row, col, text)
    summary = wb.create_sheet("问题汇总", 0)
    summary.append(["行号", "列", "值", "问题"])
    for i in result.issues:
        summary.append([i.row if i.row is not None else "整个文件", i.header, i.value, i.problem])
    wb.active = 0
    wb.save(out_path)
    return out_path


def _copy_csv(ws, path: Path, result: CheckResult) -> None:
    raw = read_raw(path, result.layer, notes=[])
    for j, header in enumerate(raw.df.columns, start=1):
        ws.cell(result.header_row, j, str(header))
    for idx, values in zip(raw.df.index, raw.df.itertuples(index=False)):
        for j, v in enumerate(values, start=1):
            if not _is_blank(v):
                ws.cell(raw.first_row + int(idx), j, str(v))
