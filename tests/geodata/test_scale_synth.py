"""Streamed synthesis for the scale benchmark: a city made one street at a time, written street by street."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd

from geodata.synth import street_code, street_layout, synth_street

LAYOUT = street_layout(6 * 3_000 + 4, households_per_street=3_000)  # 7 streets: 6 of 3,000 and a remainder


def test_layout_shares_every_household_once():
    assert LAYOUT["streets"] == 7
    made = [synth_street(LAYOUT, i, seed=4) for i in range(LAYOUT["streets"])]
    ids = pd.concat([m["households"]["household_id"] for m in made])
    assert len(ids) == LAYOUT["n_households"] and ids.is_unique
    assert ids.iloc[0] == "H000000001" and ids.iloc[-1] == f"H{LAYOUT['n_households']:09d}"
    for name, column in (("members", "member_id"), ("service_centres", "centre_id"), ("grids", "grid_code")):
        assert pd.concat([m[name][column] for m in made]).is_unique, name


def test_a_street_is_the_same_alone_and_differs_by_seed():
    a, b = synth_street(LAYOUT, 3, seed=4), synth_street(LAYOUT, 3, seed=4)
    for name in ("grids", "households", "members", "service_centres"):
        pd.testing.assert_frame_equal(a[name], b[name])
    c = synth_street(LAYOUT, 3, seed=5)
    assert not a["households"].geometry.equals(c["households"].geometry)


def test_streets_tile_and_hold_their_rows():
    made = [synth_street(LAYOUT, i, seed=4) for i in range(4)]
    streets = pd.concat([m["streets"] for m in made]).to_crs(32651)
    assert abs(streets.union_all().area - streets.area.sum()) < 1.0  # no overlaps (square metres)
    assert streets.union_all().geom_type == "Polygon"  # and no gaps between neighbours
    for i, m in enumerate(made):
        code = street_code(i)
        assert (m["communities"]["street_code"] == code).all()
        assert m["grids"]["grid_code"].str.startswith(code).all()
        inside = gpd.sjoin(m["households"], m["grids"][["grid_code", "geometry"]], predicate="within")
        assert (inside["grid_code_left"] == inside["grid_code_right"]).all() and len(inside) == len(m["households"])
        per_grid = m["households"]["grid_code"].value_counts()
        mean = len(m["households"]) / 75  # 15 × 5 grids, each U(0.55, 1.45) × the mean
        assert len(per_grid) == 75 and per_grid.between(0.5 * mean, 1.6 * mean).all()


def test_streamed_parquet_reads_back_with_the_halo_from_neighbours_only(tmp_path):
    """Written street by street with bounds: a street's halo opens only the streets next to it and
    brings the same centres as a scan of every street."""
    from geodata.parquet import _expanded_bounds, _neighbour_streets, read_meta, read_street, write_meta, write_street

    layout = street_layout(12 * 3_000, households_per_street=3_000)  # 12 streets, 4 to a row of 1.5 km × 4.5 km
    counts, bounds = {}, {}
    for i in range(layout["streets"]):
        for name, rows in write_street(synth_street(layout, i, seed=2), tmp_path, street_code(i), bounds).items():
            counts.setdefault(name, {})[street_code(i)] = rows
    meta = write_meta(tmp_path, list(bounds), counts, 1000.0, bounds)
    assert read_meta(tmp_path)["counts"]["households"] == meta["counts"]["households"]
    corner = street_code(0)
    layers, own = read_street(tmp_path, corner)
    box = gpd.GeoDataFrame(geometry=layers["grids"].geometry, crs="EPSG:4326")
    near = _neighbour_streets(tmp_path, tmp_path / "service_centres", corner, _expanded_bounds(box, 1000.0))
    assert 0 < len(near) < layout["streets"] - 1
    all_centres = pd.concat([synth_street(layout, i, seed=2)["service_centres"] for i in range(layout["streets"])])
    grids_m = layers["grids"].to_crs(32651)
    far = all_centres.to_crs(32651).geometry.apply(lambda p: grids_m.distance(p).min() > 1000.0)
    expected = set(all_centres.loc[~far.to_numpy(), "centre_id"]) | own
    assert expected <= set(layers["service_centres"]["centre_id"])  # every centre within 1 km of a grid is there
    assert not set(layers["service_centres"]["centre_id"]) - set(all_centres["centre_id"])
    assert np.isin(layers["households"]["grid_code"], layers["grids"]["grid_code"]).all()
