"""The one-pass roster checker (geodata.check): every problem at once, in Excel terms, in Chinese."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import openpyxl
import pytest
import shapely

from geodata import crs as crsmod
from geodata.check import Region, check_file, id_number_problem, write_problem_workbook

HEADERS = ["户编号", "户主姓名", "联系电话", "身份证号", "家庭人数", "经度", "纬度", "所属网格", "备注"]


def id_number(body17: str) -> str:
    """A valid 18-character ID number for 17 digits (GB 11643 check digit)."""
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    return body17 + "10X98765432"[sum(int(d) * w for d, w in zip(body17, weights)) % 11]


def grids_frame() -> gpd.GeoDataFrame:
    """Two grids side by side near the Bund, WGS84."""
    return gpd.GeoDataFrame({"grid_code": ["G1", "G2"]},
                            geometry=[shapely.box(121.48, 31.20, 121.49, 31.21), shapely.box(121.49, 31.20, 121.50, 31.21)],
                            crs="EPSG:4326")


def good_rows(n: int = 8) -> list[list]:
    return [[f"H{i:03d}", f"住户{i}", f"1381234{i:04d}", id_number(f"33010219800101{i:03d}"), 3,
             121.481 + i * 0.001, 31.205, "G1", "备注"] for i in range(1, n + 1)]


def planted_workbook(path, rows: list[list]) -> None:
    """说明 sheet first, then the roster with a title row above the header (Excel row 2), data from row 3."""
    wb = openpyxl.Workbook()
    wb.active.title = "说明"
    wb.active.append(["本表为住户花名册，请勿修改表头"])
    ws = wb.create_sheet("住户")
    ws.append(["中山社区住户花名册"])
    ws.append(HEADERS)
    for r in rows:
        ws.append(r)
    for row in ws.iter_rows(min_row=3):
        for cell in (row[2], row[3]):
            if isinstance(cell.value, str):
                cell.number_format = "@"
    wb.save(path)


def plant_five(rows: list[list]) -> dict[int, str]:
    """Five mistakes; returns {Excel row: header} of each."""
    rows[0][5], rows[0][6] = rows[0][6], rows[0][5]      # Excel row 3: lat/lon swapped
    rows[2][6] = None                                   # row 5: empty latitude
    rows[3][3] = 330102198001010041                     # row 6: ID typed as a number
    rows[5][0] = "H002"                                 # row 8: duplicate of row 4
    rows[6][2] = 13812340007                            # row 9: phone typed as a number
    return {3: "经度", 5: "纬度", 6: "身份证号", 8: "户编号", 9: "联系电话"}


def test_five_planted_mistakes_found_in_one_pass_with_excel_rows_and_user_headers(tmp_path):
    rows = good_rows()
    expected = plant_five(rows)
    path = tmp_path / "roster.xlsx"
    planted_workbook(path, rows)
    result = check_file(path, "households", grids=grids_frame())
    assert result.sheet == "住户" and result.sheets == ["说明", "住户"] and result.header_row == 2
    assert {i.row: i.header for i in result.issues} == expected
    assert len(result.issues) == 5
    by_row = {i.row: i for i in result.issues}
    assert "填反" in by_row[3].problem and "重复" in by_row[8].problem and "第 4 行" in by_row[8].problem
    assert "数字" in by_row[9].problem and by_row[9].value == "13812340007"
    assert result.ignored == ["备注"] and result.columns["size"] == "家庭人数"
    assert result.frame is None


def test_fixed_file_gives_the_contract_frame_with_size(tmp_path):
    path = tmp_path / "roster.xlsx"
    planted_workbook(path, good_rows())
    result = check_file(path, "households", grids=grids_frame())
    assert result.issues == []
    frame = result.frame
    assert list(frame["household_id"])[:2] == ["H001", "H002"] and frame["size"].tolist() == [3] * 8
    assert frame.crs.to_epsg() == 4326 and frame.geometry.x.iloc[0] == pytest.approx(121.482)
    assert frame["phone"].iloc[0] == "13812340001"


def test_problem_workbook_keeps_sheets_and_puts_problems_beside_their_rows(tmp_path):
    rows = good_rows()
    expected = plant_five(rows)
    path = tmp_path / "roster.xlsx"
    planted_workbook(path, rows)
    result = check_file(path, "households", grids=grids_frame())
    out = write_problem_workbook(path, result, tmp_path / "back.xlsx")
    wb = openpyxl.load_workbook(out)
    assert wb.sheetnames == ["问题汇总", "说明", "住户"]
    ws = wb["住户"]
    col = ws.max_column
    assert ws.cell(2, col).value == "问题"
    flagged = {r for r in range(3, ws.max_row + 1) if ws.cell(r, col).value}
    assert flagged == set(expected)
    assert isinstance(ws.cell(6, 4).value, (int, float))  # the user's own cells are kept as they were
    assert len(list(wb["问题汇总"].iter_rows(min_row=2))) == 5


def test_gbk_csv_row_numbers_and_bad_cells(tmp_path):
    text = ("户编号,经度,纬度,家庭人数,是否独居\n"
            "A1,121.481,31.205,2,\nA2,121.482,31.205,两,\nA3,abc,31.205,-1,\n")
    path = tmp_path / "households.csv"
    path.write_bytes(text.encode("gbk"))
    result = check_file(path, "households")
    assert [(i.row, i.header) for i in result.issues] == [(3, "家庭人数"), (4, "经度"), (4, "家庭人数")]
    assert any("GBK" in n for n in result.notes) and result.ignored == ["是否独居"]


def test_gcj02_file_is_named_and_passes_once_chosen(tmp_path):
    # A street tiled with ~300 m grids: the ~450 m GCJ-02 shift lands points in the wrong grid, not outside.
    strip = gpd.GeoDataFrame({"grid_code": [f"S{k}" for k in range(10)]},
                             geometry=[shapely.box(121.47 + k * 0.003, 31.20, 121.473 + k * 0.003, 31.21) for k in range(10)],
                             crs="EPSG:4326")
    rng = np.random.default_rng(1)
    lon, lat = rng.uniform(121.4705, 121.4695 + 0.021, 40), rng.uniform(31.201, 31.209, 40)
    glon, glat = crsmod.wgs84_to_gcj02(lon, lat)
    path = tmp_path / "amap.csv"
    lines = ["户编号,lng,lat,网格编号"] + [f"P{i},{x:.7f},{y:.7f},S{int((x0 - 121.47) // 0.003)}"
                                        for i, (x, y, x0) in enumerate(zip(glon, glat, lon))]
    path.write_text("\n".join(lines), encoding="utf-8")
    result = check_file(path, "households", grids=strip)
    assert result.coords_hint == "gcj02" and len(result.issues) == 1 and result.issues[0].row is None
    assert "GCJ-02" in result.issues[0].problem
    again = check_file(path, "households", grids=strip, coords="gcj02")
    assert again.issues == [] and again.coords_hint is None
    assert np.allclose(again.frame.geometry.x, lon, atol=1e-5)


def test_gcj02_guessed_without_grid_codes_when_points_leave_the_grids(tmp_path):
    small = gpd.GeoDataFrame({"grid_code": ["G1"]}, geometry=[shapely.box(121.480, 31.200, 121.483, 31.203)],
                             crs="EPSG:4326")
    lon, lat = np.linspace(121.4805, 121.4825, 20), np.full(20, 31.2015)
    blon, blat = crsmod.wgs84_to_bd09(lon, lat)
    path = tmp_path / "baidu.csv"
    path.write_text("\n".join(["户编号,经度,纬度"] + [f"B{i},{x},{y}" for i, (x, y) in enumerate(zip(blon, blat))]),
                    encoding="utf-8")
    result = check_file(path, "households", grids=small)
    assert result.coords_hint == "bd09" and "BD-09" in result.issues[0].problem


def test_grid_code_and_region_problems(tmp_path):
    path = tmp_path / "h.csv"
    path.write_text("户编号,经度,纬度,网格编号\nA1,121.481,31.205,G1\nA2,121.481,31.205,G7\n"
                    "A3,121.481,31.205,G2\nA4,121.495,31.205,\n", encoding="utf-8")
    region = Region(grids=frozenset({"G1"}), communities=frozenset(), streets=frozenset())
    result = check_file(path, "households", grids=grids_frame(), region=region)
    problems = {i.row: i.problem for i in result.issues}
    assert set(problems) == {3, 4, 5}
    assert "不存在" in problems[3] and "之外" in problems[4] and "管辖" in problems[5]


def test_geojson_grids_geometry_problems(tmp_path):
    bowtie = shapely.Polygon([(121.48, 31.20), (121.49, 31.21), (121.49, 31.20), (121.48, 31.21)])
    gdf = gpd.GeoDataFrame({"网格编号": ["G1", "G2", "G3"], "网格名称": ["一", "二", "三"]},
                           geometry=[shapely.box(121.48, 31.20, 121.49, 31.21), bowtie, shapely.Point(121.4, 31.2)],
                           crs="EPSG:4326")
    path = tmp_path / "grids.geojson"
    gdf.to_file(path)
    result = check_file(path, "grids")
    assert [(i.row, i.header) for i in result.issues] == [(2, "几何图形"), (3, "几何图形")]
    assert "无效" in result.issues[0].problem and "面" in result.issues[1].problem


def test_id_number_check_digit():
    good = id_number("33010219800101004")
    assert id_number_problem(good) is None
    assert "校验位" in id_number_problem(good[:-1] + ("0" if good[-1] != "0" else "1"))
    assert "18 位" in id_number_problem("3301021980")


def test_scenario_manifest_names_each_files_coordinate_system(tmp_path):
    from geodata.errors import InputError
    from geodata.scenario import load_scenario

    lon, lat = np.array([121.481, 121.482]), np.array([31.205, 31.206])
    glon, glat = crsmod.wgs84_to_gcj02(lon, lat)
    (tmp_path / "households.csv").write_text(
        "户编号,经度,纬度\n" + "\n".join(f"H{i},{x},{y}" for i, (x, y) in enumerate(zip(glon, glat))), encoding="utf-8")
    grids_frame().to_file(tmp_path / "grids.geojson")
    (tmp_path / "scenario.toml").write_text('[coords]\nhouseholds = "gcj02"\ndefault = "wgs84"\n', encoding="utf-8")
    layers = load_scenario(tmp_path)
    assert np.allclose(layers["households"].geometry.x, lon, atol=1e-5)
    assert layers["grids"].total_bounds[0] == pytest.approx(121.48)
    (tmp_path / "scenario.toml").write_text('[coords]\nhousehold = "gcj02"\n', encoding="utf-8")
    with pytest.raises(InputError, match="household"):
        load_scenario(tmp_path)
