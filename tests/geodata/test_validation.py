"""Refusals with file/row/column: swapped lon/lat, outside China, NaN/inf, empty geometries, missing
columns, duplicate ids, invalid polygons (and --fix), overlapping grids, households in no grid.
"""

import geopandas as gpd
import numpy as np
import pytest
from shapely.geometry import Point, Polygon, box

from geodata.errors import InputError
from geodata.io import normalise, read_layer, write_layer
from geodata.validate import check_grid_overlaps, households_outside_grids

from validation_cases import _csv


def test_swapped_lat_lon_named(tmp_path):
    p = _csv(tmp_path, {"household_id": ["a", "b"], "lon": [120.1, 30.2], "lat": [30.2, 120.1]})
    with pytest.raises(InputError) as e:
        read_layer(p, "households")
    msg = str(e.value)
    assert "households.csv, Excel row 3, data row 2, column lon" in msg and "swapped" in msg
    assert "row 1" not in msg


def test_outside_china_named(tmp_path):
    p = _csv(tmp_path, {"household_id": ["a", "b"], "lon": [120.1, 2.35], "lat": [30.2, 48.85]})
    with pytest.raises(InputError, match=r"row 2, column lon: \(2.35, 48.85\) is outside China"):
        read_layer(p, "households")


@pytest.mark.parametrize("bad", ["nan", "inf", "-inf", ""])
def test_nan_inf_and_missing_coordinates(tmp_path, bad):
    p = tmp_path / "households.csv"
    p.write_text(f"household_id,lon,lat\na,120.1,30.2\nb,{bad},30.3\n")
    with pytest.raises(InputError, match=r"row 2, column lon: coordinate is missing, NaN or infinite"):
        read_layer(p, "households")


def test_not_a_number_coordinate(tmp_path):
    p = tmp_path / "households.csv"
    p.write_text("household_id,lon,lat\na,120.1,30.2\nb,东经120度,30.3\n")
    with pytest.raises(InputError, match=r"row 2, column lon: '东经120度' is not a number"):
        read_layer(p, "households")


def test_empty_geometry_refused():
    gdf = gpd.GeoDataFrame({"grid_code": ["A", "B"]}, geometry=[box(120, 30, 120.01, 30.01), Polygon()], crs="EPSG:4326")
    with pytest.raises(InputError, match=r"grids.geojson, row 2, column geometry: geometry is empty"):
        normalise(gdf, "grids", "grids.geojson")


def test_nan_in_polygon_refused():
    gdf = gpd.GeoDataFrame({"grid_code": ["A"]}, geometry=[Polygon([(120, 30), (np.nan, 30), (120.1, 30.1)])], crs="EPSG:4326")
    with pytest.raises(InputError, match="NaN or infinite"):
        normalise(gdf, "grids", "g")


def test_missing_required_column(tmp_path):
    p = _csv(tmp_path, {"name": ["x"], "lon": [120.1], "lat": [30.2]})
    with pytest.raises(InputError, match=r"column household_id: required column 'household_id' is missing"):
        read_layer(p, "households")


def test_missing_lonlat_columns(tmp_path):
    p = _csv(tmp_path, {"household_id": ["x"], "地址": ["某路1号"]})
    with pytest.raises(InputError, match="no longitude"):
        read_layer(p, "households")


def test_duplicate_ids_name_all_rows(tmp_path):
    p = _csv(tmp_path, {"household_id": ["a", "b", "a", "a"], "lon": [120.1] * 4, "lat": [30.2] * 4})
    with pytest.raises(InputError, match=r"duplicate id 'a' \(rows 1, 3, 4\)"):
        read_layer(p, "households")


def test_wrong_types_named(tmp_path):
    p = _csv(tmp_path, {"household_id": ["a", "b"], "size": ["3", "三口"], "lon": [120.1] * 2, "lat": [30.2] * 2})
    with pytest.raises(InputError, match=r"row 2, column size: '三口' is not a number"):
        read_layer(p, "households")
    p = _csv(tmp_path, {"member_id": ["m"], "available": ["maybe"], "lon": [120.1], "lat": [30.2]}, "members.csv")
    with pytest.raises(InputError, match=r"row 1, column available: 'maybe' is not yes/no"):
        read_layer(p, "members")


def test_self_intersecting_polygon_reason_and_fix(tmp_path):
    bowtie = Polygon([(120.0, 30.0), (120.01, 30.01), (120.01, 30.0), (120.0, 30.01), (120.0, 30.0)])
    gdf = gpd.GeoDataFrame({"grid_code": ["ok", "bow"]}, geometry=[box(120.02, 30.0, 120.03, 30.01), bowtie], crs="EPSG:4326")
    p = write_layer(gdf, tmp_path / "grids.geojson")
    with pytest.raises(InputError) as e:
        read_layer(p, "grids")
    assert "row 2, column geometry: invalid polygon: Self-intersection" in str(e.value)
    notes = []
    g = read_layer(p, "grids", fix=True, report=notes)
    assert g.is_valid.all()
    assert any("row 2: repaired (Self-intersection" in n for n in notes)


def test_overlapping_grids_reported_with_area():
    a = box(120.000, 30.000, 120.010, 30.010)
    b = box(120.005, 30.000, 120.015, 30.010)  # ~480 m × 1110 m overlap
    c = box(120.020, 30.000, 120.030, 30.010)
    g = gpd.GeoDataFrame({"grid_code": ["A", "B", "C"]}, geometry=[a, b, c], crs="EPSG:4326")
    problems, warnings = check_grid_overlaps(g, "grids.geojson")
    assert len(problems) == 1 and not warnings
    assert "grid A (row 1) overlaps grid B (row 2)" in str(problems[0])


def test_households_outside_grids_named():
    grids = gpd.GeoDataFrame({"grid_code": ["A"]}, geometry=[box(120.0, 30.0, 120.01, 30.01)], crs="EPSG:4326")
    hh = gpd.GeoDataFrame({"household_id": ["in", "out"]}, geometry=[Point(120.005, 30.005), Point(120.5, 30.5)], crs="EPSG:4326")
    problems = households_outside_grids(hh, grids, "households.csv")
    assert [str(p) for p in problems] == ["households.csv, row 2, column geometry: household out lies in no grid"]
