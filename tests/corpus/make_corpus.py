"""Write the bad-input file corpus in this folder (run once; the files are kept in the repository).

Each file holds exactly one kind of mistake people make when handing over data; ``cases.py``
says what the importer must answer to each. Coordinates lie in Hangzhou (WGS84) unless the mistake
is about coordinates. Run: ``.venv/bin/python tests/corpus/make_corpus.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import pandas as pd
import pyogrio
from shapely.geometry import LineString, box

HERE = Path(__file__).resolve().parent
FILES = HERE / "files"

LON, LAT = 120.17, 30.28  # Hangzhou


def _csv(name: str, text: str) -> None:
    (FILES / name).write_text(text, encoding="utf-8")


def _geojson(name: str, features: list[dict]) -> None:
    (FILES / name).write_text(json.dumps({"type": "FeatureCollection", "features": features}, ensure_ascii=False,
                                         allow_nan=True), encoding="utf-8")


def _feature(props: dict, geometry: dict | None) -> dict:
    return {"type": "Feature", "properties": props, "geometry": geometry}


def _poly(x0, y0, d=0.002) -> dict:
    return {"type": "Polygon", "coordinates": [[[x0, y0], [x0 + d, y0], [x0 + d, y0 + d], [x0, y0 + d], [x0, y0]]]}


def main() -> None:
    FILES.mkdir(parents=True, exist_ok=True)
    # -- points (CSV) ------------------------------------------------------------------------------
    _csv("households_swapped_latlon.csv", f"household_id,lon,lat\nH1,{LON},{LAT}\nH2,{LAT},{LON}\n")
    _csv("households_outside_china.csv", f"household_id,lon,lat\nH1,{LON},{LAT}\nH2,-0.1276,51.5072\n")
    _csv("households_nan_inf.csv", f"household_id,lon,lat\nH1,{LON},{LAT}\nH2,NaN,{LAT}\nH3,{LON},inf\n")
    _csv("households_not_a_number.csv", f"household_id,lon,lat\nH1,{LON},{LAT}\nH2,东经120度,{LAT}\n")
    _csv("households_duplicate_ids.csv", f"household_id,lon,lat\nH1,{LON},{LAT}\nH2,{LON},{LAT}\nH1,120.18,30.29\n")
    _csv("households_empty_id.csv", f"household_id,lon,lat\nH1,{LON},{LAT}\n,{LON},{LAT}\n")
    _csv("households_missing_id_column.csv", f"name,lon,lat\n张三,{LON},{LAT}\n")
    _csv("households_missing_lat_column.csv", f"household_id,lon\nH1,{LON}\n")
    _csv("households_wrong_types.csv", f"household_id,size,lon,lat\nH1,3,{LON},{LAT}\nH2,three,{LON},{LAT}\n"
                                       f"H3,2.5,{LON},{LAT}\nH4,-1,{LON},{LAT}\n")
    _csv("members_bad_bool_and_links.csv", f"member_id,available,min_links,max_links,lon,lat\n"
                                           f"M1,是,5,10,{LON},{LAT}\nM2,maybe,5,10,{LON},{LAT}\nM3,1,12,6,{LON},{LAT}\n")
    _csv("incidents_missing_reported_at.csv", f"incident_id,category,lon,lat\nE1,环境卫生,{LON},{LAT}\n")
    _csv("households_empty_file.csv", "")
    _csv("households_header_only.csv", "household_id,lon,lat\n")
    # Text that is valid data but must never be executed: stored literally, escaped when shown.
    _csv("households_injection.csv",
         "household_id,name,tags,lon,lat\n"
         f"\"H1'); DROP TABLE households;--\",\"Robert'); DROP TABLE households;--\",\"<svg onload=alert(1)>\",{LON},{LAT}\n"
         f"H2,<img src=x onerror=alert(1)>,\"1 OR 1=1; --\",{LON},{LAT}\n")
    (FILES / "households_not_utf8.csv").write_bytes(
        f"household_id,name,lon,lat\nH1,张三,{LON},{LAT}\n".encode("gbk"))

    # -- Excel: an 18-digit ID number typed as a number has lost its last 3 digits -------------------
    df = pd.DataFrame({"household_id": ["H1"], "id_number": [110101199001011234.0], "lon": [LON], "lat": [LAT]})
    df.to_excel(FILES / "households_id_number_as_number.xlsx", index=False)

    # -- polygons (GeoJSON) ----------------------------------------------------------------------
    bx = LON - 0.02  # clear of the other grids, so --fix leaves no overlap
    bowtie = {"type": "Polygon", "coordinates": [[[bx, LAT], [bx + 0.01, LAT + 0.01], [bx + 0.01, LAT],
                                                   [bx, LAT + 0.01], [bx, LAT]]]}
    _geojson("grids_self_intersecting.geojson", [
        _feature({"grid_code": "G1"}, _poly(LON, LAT)),
        _feature({"grid_code": "G2"}, bowtie),
    ])
    _geojson("grids_empty_polygon.geojson", [
        _feature({"grid_code": "G1"}, _poly(LON, LAT)),
        _feature({"grid_code": "G2"}, {"type": "Polygon", "coordinates": []}),
    ])
    _geojson("grids_null_geometry.geojson", [
        _feature({"grid_code": "G1"}, _poly(LON, LAT)),
        _feature({"grid_code": "G2"}, None),
    ])
    _geojson("grids_overlapping.geojson", [
        _feature({"grid_code": "G1"}, _poly(LON, LAT, 0.01)),
        _feature({"grid_code": "G2"}, _poly(LON + 0.005, LAT + 0.005, 0.01)),
    ])
    _geojson("grids_duplicate_codes.geojson", [
        _feature({"grid_code": "G1", "name": "一"}, _poly(LON, LAT)),
        _feature({"grid_code": "G1", "name": "二"}, _poly(LON + 0.01, LAT)),
    ])
    _geojson("grids_swapped_latlon.geojson", [_feature({"grid_code": "G1"}, _poly(LAT, LON))])
    _geojson("grids_outside_china.geojson", [_feature({"grid_code": "G1"}, _poly(2.35, 48.85))])
    _geojson("grids_missing_code.geojson", [_feature({"name": "无编号"}, _poly(LON, LAT))])
    _geojson("grids_point_geometry.geojson", [_feature({"grid_code": "G1"}, {"type": "Point", "coordinates": [LON, LAT]})])
    _geojson("households_line_geometry.geojson", [
        _feature({"household_id": "H1"}, {"type": "LineString", "coordinates": [[LON, LAT], [LON + 0.001, LAT]]}),
    ])
    # NaN written as a bare token (Python's json and GDAL both read it): a coordinate that is not a number.
    (FILES / "households_nan_geometry.geojson").write_text(
        '{"type":"FeatureCollection","features":[{"type":"Feature","properties":{"household_id":"H1"},'
        '"geometry":{"type":"Point","coordinates":[NaN, 30.28]}}]}', encoding="utf-8")
    (FILES / "grids_truncated.geojson").write_text(
        '{"type":"FeatureCollection","features":[{"type":"Feature","properties":{"grid_code":"G1"},"geometry":{"type":"Pol',
        encoding="utf-8")
    (FILES / "grids.kml").write_text("<kml></kml>", encoding="utf-8")

    # -- GBK Shapefile without .cpg (as desktop GIS in China writes them) -------------------------
    gdf = gpd.GeoDataFrame({"网格编号": ["G1", "G2"], "网格名称": ["武林一网格", "天水二网格"]},
                           geometry=[box(LON, LAT, LON + 0.002, LAT + 0.002),
                                     box(LON + 0.003, LAT, LON + 0.005, LAT + 0.002)], crs="EPSG:4326")
    shp = FILES / "grids_gbk_no_cpg.shp"
    pyogrio.write_dataframe(gdf, shp, encoding="GBK")
    for ext in (".cpg", ".CPG"):
        p = shp.with_suffix(ext)
        if p.exists():
            p.unlink()
    # A LineString layer only used to be sure line geometry in a polygon layer is refused by type.
    gpd.GeoDataFrame({"grid_code": ["G1"]}, geometry=[LineString([(LON, LAT), (LON + 0.01, LAT)])],
                     crs="EPSG:4326").to_file(FILES / "grids_line_geometry.geojson", driver="GeoJSON")
    # A valid base data set imported before every case, so "nothing changed" is checked against rows.
    _geojson("base_grids.geojson", [
        _feature({"grid_code": "B1", "community_code": "BC1", "kind": "urban"}, _poly(LON + 0.02, LAT + 0.02)),
        _feature({"grid_code": "B2", "community_code": "BC1", "kind": "urban"}, _poly(LON + 0.03, LAT + 0.02)),
    ])
    _csv("base_households.csv", f"household_id,grid_code,name,phone,lon,lat\n"
                                f"B-H1,B1,张三,13812341234,{LON + 0.021},{LAT + 0.021}\n"
                                f"B-H2,B2,李四,13912345678,{LON + 0.031},{LAT + 0.021}\n")


if __name__ == "__main__":
    main()
    for p in sorted(FILES.iterdir()):
        print(p.name, p.stat().st_size)
