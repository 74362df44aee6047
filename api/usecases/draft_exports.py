"""Exports of a redraw draft: its grids as GeoJSON, GeoPackage or a zipped Shapefile (WGS84, via
pyogrio/geopandas) and the household-to-grid changes as Excel (openpyxl). No personal data: grid codes,
names, counts and household ids only."""

from __future__ import annotations

import io
import tempfile
import zipfile
from pathlib import Path

import geopandas as gpd

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
#: Columns exported, with Shapefile-safe (≤ 10 characters) names.
EXPORT_COLUMNS = {"grid_code": "grid_code", "name": "name", "community_code": "community", "kind": "kind",
                  "households": "households", "band_min": "band_min", "band_max": "band_max", "in_band": "in_band",
                  "polsby_popper": "pp", "moved": "moved"}
FORMATS = {"geojson": ("application/geo+json", ".geojson"), "gpkg": ("application/geopackage+sqlite3", ".gpkg"),
           "zip": ("application/zip", ".shp.zip")}


def _plain(grids: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    out = grids[[c for c in EXPORT_COLUMNS if c in grids.columns] + ["geometry"]].rename(columns=EXPORT_COLUMNS)
    out["in_band"] = out["in_band"].astype(bool).astype(int)  # Shapefiles have no boolean type
    return out.set_crs("EPSG:4326", allow_override=True)


def _zipped(folder: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for part in sorted(folder.iterdir()):
            zf.write(part, part.name)
    return buffer.getvalue()


def grids_file(grids: gpd.GeoDataFrame, fmt: str) -> tuple[bytes, str, str]:
    """``(bytes, media type, suffix)`` of the grids in ``fmt`` (``geojson``, ``gpkg``, ``zip`` = Shapefile)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}")
    media, suffix = FORMATS[fmt]
    plain = _plain(grids)
    if fmt == "geojson":
        return plain.to_json(drop_id=True).encode(), media, suffix
    with tempfile.TemporaryDirectory(prefix="gridmap-export-") as tmp:
        folder = Path(tmp)
        if fmt == "gpkg":
            plain.to_file(folder / "grids.gpkg", layer="grids", driver="GPKG", engine="pyogrio")
            return (folder / "grids.gpkg").read_bytes(), media, suffix
        plain.to_file(folder / "grids.shp", driver="ESRI Shapefile", encoding="UTF-8", engine="pyogrio")
        return _zipped(folder), media, suffix


def changes_workbook(changes: list[tuple], names: dict) -> bytes:
    """Excel of ``(household_id, grid today, grid in the draft)`` rows, grid names beside codes."""
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    sheet.title = "住户调整"
    sheet.append(["户编号", "原网格编码", "原网格名称", "新网格编码", "新网格名称"])
    for household_id, old, new in changes:
        sheet.append([household_id, old or "", names.get(old, "") or "", new or "", names.get(new, "") or ""])
    for column, width in zip("ABCDE", (18, 14, 16, 14, 16)):
        sheet.column_dimensions[column].width = width
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()
