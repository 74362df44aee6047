"""Every reader: GeoJSON, GeoPackage layers, Shapefile (.cpg, GBK without .cpg), CSV (lon/lat and
Chinese headers, GBK), Excel with 18-digit ID numbers kept as text, and coordinate shifts on read.
"""

import json

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import pytest
from shapely.geometry import Point, box

from geodata import crs
from geodata.errors import InputError
from geodata.io import read_layer, write_layer
from gridmap.metric import haversine_m


PTS = [(120.16, 30.27), (120.17, 30.28), (120.18, 30.29)]


def _hh(n=3):
    return gpd.GeoDataFrame({"household_id": [f"H{i}" for i in range(n)], "name": ["张三", "李四", "王五"][:n],
                             "grid_code": ["G1"] * n}, geometry=[Point(*p) for p in PTS[:n]], crs="EPSG:4326")


def test_geojson_round_trip(tmp_path):
    p = write_layer(_hh(), tmp_path / "households.geojson")
    g = read_layer(p, "households")
    assert list(g["household_id"]) == ["H0", "H1", "H2"]
    assert g.crs.to_epsg() == 4326
    assert g.geometry.x.tolist() == pytest.approx([p[0] for p in PTS])


def test_geopackage_named_layers(tmp_path):
    p = tmp_path / "scenario.gpkg"
    write_layer(_hh(), p, layer="households")
    grids = gpd.GeoDataFrame({"grid_code": ["G1"]}, geometry=[box(120.15, 30.26, 120.19, 30.30)], crs="EPSG:4326")
    write_layer(grids, p, layer="grids")
    assert len(read_layer(p, "households")) == 3
    g = read_layer(p, "grids")
    assert g.geometry.iloc[0].geom_type == "MultiPolygon"
    with pytest.raises(InputError, match="no layer 'nope'"):
        read_layer(p, "grids", layer="nope")


def test_shapefile_with_cpg_reads_chinese_fields(tmp_path):
    # DBF field names hold 10 bytes: three UTF-8 Chinese characters at most
    gdf = _hh().rename(columns={"household_id": "户编号", "name": "姓名", "grid_code": "网格"})
    p = tmp_path / "hh.shp"
    pyogrio.write_dataframe(gdf, p, encoding="utf-8")
    assert p.with_suffix(".cpg").exists()
    g = read_layer(p, "households")
    assert list(g["household_id"]) == ["H0", "H1", "H2"]
    assert list(g["name"]) == ["张三", "李四", "王五"]
    assert list(g["grid_code"]) == ["G1"] * 3


def test_gbk_shapefile_without_cpg(tmp_path):
    gdf = _hh().rename(columns={"household_id": "户编号", "name": "姓名", "grid_code": "网格编号"})
    p = tmp_path / "gbk.shp"
    pyogrio.write_dataframe(gdf, p, encoding="gbk")
    p.with_suffix(".cpg").unlink(missing_ok=True)
    raw = p.with_suffix(".dbf").read_bytes()
    assert "张三".encode("gbk") in raw  # really GBK on disk
    notes = []
    g = read_layer(p, "households", report=notes)
    assert list(g["name"]) == ["张三", "李四", "王五"]
    assert any("gbk" in n for n in notes)
    g2 = read_layer(p, "households", encoding="gbk")
    assert list(g2["name"]) == ["张三", "李四", "王五"]


@pytest.mark.parametrize("lon,lat", [("lon", "lat"), ("经度", "纬度"), ("东经", "北纬"), ("lng", "lat")])
def test_csv_lonlat_headers(tmp_path, lon, lat):
    df = pd.DataFrame({"户编号": ["001", "002"], lon: [120.16, 120.17], lat: [30.27, 30.28],
                       "联系电话": ["13800001111", "057188886666"]})
    p = tmp_path / "hh.csv"
    df.to_csv(p, index=False)
    g = read_layer(p, "households")
    assert list(g["household_id"]) == ["001", "002"]  # leading zeros kept
    assert list(g["phone"]) == ["13800001111", "057188886666"]
    assert g.geometry.y.tolist() == pytest.approx([30.27, 30.28])


def test_csv_in_gbk(tmp_path):
    p = tmp_path / "hh.csv"
    pd.DataFrame({"户编号": ["A1"], "姓名": ["赵六"], "经度": [120.16], "纬度": [30.27]}).to_csv(p, index=False, encoding="gbk")
    notes = []
    g = read_layer(p, "households", report=notes)
    assert g["name"].iloc[0] == "赵六"
    assert any("GBK" in n for n in notes)


def test_excel_roster_keeps_18_digit_ids_as_text(tmp_path):
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.append(["户编号", "姓名", "身份证号", "手机号", "经度", "纬度", "户人数"])
    ws.append(["0001", "张三", "33010319800101123X", "13812345678", 120.16, 30.27, 3])
    ws.append(["0002", "李四", "330103199912319876", 13987654321, 120.17, 30.28, 2])  # phone typed as a number
    p = tmp_path / "roster.xlsx"
    wb.save(p)
    g = read_layer(p, "households")
    assert list(g["id_number"]) == ["33010319800101123X", "330103199912319876"]
    assert list(g["phone"]) == ["13812345678", "13987654321"]
    assert list(g["household_id"]) == ["0001", "0002"]
    assert list(g["size"]) == [3, 2]


def test_excel_id_number_typed_as_number_is_refused(tmp_path):
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.append(["户编号", "身份证号", "经度", "纬度"])
    ws.append(["0001", 330103198001011234, 120.16, 30.27])  # Excel keeps 15 digits: 330103198001011000
    ws["B2"].value = float(330103198001011234)
    p = tmp_path / "roster.xlsx"
    wb.save(p)
    with pytest.raises(InputError) as e:
        read_layer(p, "households")
    assert "row 1, column id_number" in str(e.value) and "lost its last digits" in str(e.value)


def test_gcj02_input_is_stored_as_wgs84(tmp_path):
    wlon, wlat = 120.17, 30.28
    glon, glat = crs.wgs84_to_gcj02(wlon, wlat)
    p = tmp_path / "hh.csv"
    pd.DataFrame({"household_id": ["a"], "lng": [float(glon)], "lat": [float(glat)]}).to_csv(p, index=False)
    g = read_layer(p, "households", coords="gcj02")
    assert haversine_m(g.geometry.x.iloc[0], g.geometry.y.iloc[0], wlon, wlat) < 0.01
    # a GeoJSON polygon in BD-09 is shifted vertex by vertex
    blon, blat = crs.wgs84_to_bd09(np.array([120.15, 120.19]), np.array([30.26, 30.30]))
    grids = gpd.GeoDataFrame({"grid_code": ["G"]}, geometry=[box(blon[0], blat[0], blon[1], blat[1])], crs="EPSG:4326")
    p2 = write_layer(grids, tmp_path / "grids.geojson")
    g2 = read_layer(p2, "grids", coords="bd09")
    minx, miny, _, _ = g2.total_bounds
    assert haversine_m(minx, miny, 120.15, 30.26) < 0.01


def test_chinese_headers_map_to_contract(tmp_path):
    p = tmp_path / "members.csv"
    pd.DataFrame({"党员编号": ["M1"], "所属网格": ["G1"], "技能": ["法律、医疗"], "是否在岗": ["是"],
                  "经度": [120.1], "纬度": [30.2]}).to_csv(p, index=False)
    g = read_layer(p, "members")
    assert g["member_id"].iloc[0] == "M1" and g["grid_code"].iloc[0] == "G1"
    assert g["skills"].iloc[0] == "法律,医疗"
    assert g["available"].iloc[0] is True


def test_multi_part_rows_merge_into_one_grid(hangzhou):
    notes = []
    g = read_layer(hangzhou / "grids.geojson", "grids", fix=True, report=notes)
    raw = json.loads((hangzhou / "grids.geojson").read_text())["features"]
    assert len(raw) == 332
    assert len(g) == len({f["properties"]["code"] for f in raw}) == 297
    assert g["grid_code"].is_unique
    assert any("merged into one multi-part polygon" in n for n in notes)


# --- issue 11, finding 6 and the CSV part of finding 5 ------------------------------------------

def test_csv_phone_or_id_in_scientific_notation_is_refused_with_the_row(tmp_path):
    p = tmp_path / "hh.csv"
    p.write_text("household_id,phone,id_number,lon,lat\n"
                 "H1,13812345678,33010319800101123X,120.16,30.27\n"
                 "H2,1.38E+10,,120.16,30.27\n"
                 "H3,,3.30103E+17,120.16,30.27\n", encoding="utf-8")
    with pytest.raises(InputError) as e:
        read_layer(p, "households")
    msg = str(e.value)
    assert "Excel row 3, data row 2, column phone: '1.38E+10' is a number in scientific notation" in msg
    assert "Excel row 4, data row 3, column id_number: '3.30103E+17'" in msg
    assert "data row 1" not in msg


def test_nul_byte_in_a_csv_cell_names_row_and_column(tmp_path):
    p = tmp_path / "hh.csv"
    p.write_bytes(b"household_id,name,lon,lat\nH1,ok,120.16,30.27\nH2,Zh\x00ang,120.16,30.27\n")
    with pytest.raises(InputError) as e:
        read_layer(p, "households")
    assert "hh.csv, Excel row 3, data row 2, column name: cell contains a NUL byte" in str(e.value)


def test_yes_no_cells_use_the_contract_vocabulary(tmp_path):
    from gridmap.contract import FALSE_WORDS

    assert "离岗" in FALSE_WORDS  # in the contract's list, not in the reader's old private one
    p = tmp_path / "m.csv"
    p.write_text("member_id,available,lon,lat\nM1,离岗,120.16,30.27\nM2,在岗,120.16,30.27\nM3,maybe,120.16,30.27\n",
                 encoding="utf-8")
    with pytest.raises(InputError, match=r"data row 3, column available: 'maybe' is not yes/no"):
        read_layer(p, "members")
    p.write_text("member_id,available,lon,lat\nM1,离岗,120.16,30.27\nM2,在岗,120.16,30.27\n", encoding="utf-8")
    assert list(read_layer(p, "members")["available"]) == [False, True]


def test_excel_title_row_above_the_header_is_counted_in_row_numbers(tmp_path):
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.append(["某某社区住户花名册"])
    ws.append(["户编号", "联系电话", "经度", "纬度"])
    ws.append(["0001", "13812345678", 120.16, 30.27])
    ws.append(["0002", "1.38E+10", 120.16, 30.27])
    p = tmp_path / "roster.xlsx"
    wb.save(p)
    with pytest.raises(InputError) as e:
        read_layer(p, "households")
    assert "Excel row 4, data row 2, column phone" in str(e.value)


def test_scenario_with_two_files_for_one_layer_is_refused_naming_both(tmp_path):
    from geodata.scenario import load_scenario

    write_layer(_hh(), tmp_path / "households.geojson")
    write_layer(_hh(2), tmp_path / "households.csv")
    with pytest.raises(InputError) as e:
        load_scenario(tmp_path)
    assert "households.geojson" in str(e.value) and "households.csv" in str(e.value)
    (tmp_path / "households.csv").unlink()
    assert len(load_scenario(tmp_path)["households"]) == 3
