"""Coverage gaps on the real Hangzhou grids: blank grids, unlinked households, service circles, gap cells."""

from __future__ import annotations

import math

import h3
import numpy as np
import pandas as pd
import pytest

from gridmap.census import locate_in_grids
from gridmap.coverage import (
    BLANK_BOTH,
    BLANK_NO_BRANCH,
    BLANK_NO_MEMBERS,
    UNLINKED_NO_MEMBER,
    UNLINKED_NOT_LINKED,
    UNLINKED_TOO_FAR,
    blank_grid_counts,
    coverage_summary,
    gap_areas,
    gap_cells,
    grid_status,
    rollup,
    straight_line_areas,
    straight_line_coverage,
    unlinked_cells,
    unlinked_households,
)
from gridmap.metric import haversine_m


def test_blank_grids_exactly_with_reasons(scenario):
    st = grid_status(scenario["grids"], scenario["households"], scenario["members"])
    assert len(st) == len(scenario["grids"])
    blank = st[st["blank"]].set_index("grid_code")["blank_reason"].to_dict()
    hh_grids = set(scenario["households"]["grid_code"])
    expected = {c: BLANK_NO_BRANCH for c in scenario["strip_branch"]}
    expected.update({c: BLANK_NO_MEMBERS for c in scenario["strip_members"] if c in hh_grids})
    expected.update({c: (BLANK_BOTH if c in hh_grids else BLANK_NO_BRANCH) for c in scenario["both"]})
    assert blank == expected
    assert st.loc[~st["blank"], "blank_reason"].isna().all()
    counts = blank_grid_counts(st)
    assert sum(counts.values()) == len(expected)
    assert counts[BLANK_BOTH] == sum(1 for v in expected.values() if v == BLANK_BOTH)


def test_grid_status_columns_are_consistent(scenario):
    st = grid_status(scenario["grids"], scenario["households"], scenario["members"])
    hh_count = scenario["households"]["grid_code"].value_counts()
    mm_count = scenario["members"]["grid_code"].value_counts()
    for row in st.itertuples():
        assert row.households == hh_count.get(row.grid_code, 0)
        assert row.members == mm_count.get(row.grid_code, 0)
        assert row.members_needed == max(0, math.ceil(row.households / 10) - row.members)
        assert 0 <= row.linked_households <= row.households
        expected_size = "over-size" if row.households > row.band_max else (
            "under-size" if row.households < row.band_min else "ok")
        assert row.size_status == expected_size
    # without links the estimate caps each grid at members × 10 and needs a member in the grid
    cap = np.minimum(st["households"], st["members"] * 10)
    assert (st["linked_households"] == cap).all()


def test_unlinked_from_links_with_reasons(scenario):
    hh = scenario["households"]
    mm = scenario["members"]
    first_member = mm.drop_duplicates("grid_code").set_index("grid_code")["member_id"]
    links = pd.DataFrame({"household_id": hh["household_id"], "member_id": hh["grid_code"].map(first_member)})
    links = links.dropna()
    # drop every 7th link, mark some as very long
    dropped = links.iloc[::7]
    links = links.drop(dropped.index)
    links["distance_m"] = 100.0
    far_ids = set(links["household_id"].iloc[::11])
    links.loc[links["household_id"].isin(far_ids), "distance_m"] = 5000.0
    ul = unlinked_households(hh, mm, links, max_link_distance_m=1000.0)
    got = ul.set_index("household_id")["reason"].to_dict()
    no_member_grids = scenario["strip_members"] | scenario["both"]
    expected = {h: UNLINKED_NO_MEMBER for h, g in zip(hh["household_id"], hh["grid_code"]) if g in no_member_grids}
    expected.update({h: UNLINKED_NOT_LINKED for h in dropped["household_id"]})
    expected.update({h: UNLINKED_TOO_FAR for h in far_ids})
    assert got == expected
    st = grid_status(scenario["grids"], hh, mm, links, max_link_distance_m=1000.0)
    assert st["unlinked_households"].sum() == len(expected)
    # H3 res 10 of each returned household
    row = ul.iloc[0]
    assert h3.str_to_int(h3.latlng_to_cell(row.geometry.y, row.geometry.x, 10)) == row["h3"]


def test_straight_line_coverage_matches_brute_force(scenario):
    hh = scenario["households"]
    centres = scenario["centres"].copy()
    rng = np.random.default_rng(5)
    centres["radius_m"] = rng.choice([500.0, 800.0, 1000.0, np.nan], len(centres))
    cov = straight_line_coverage(hh, centres, radius_m=900.0)
    lon, lat = hh.geometry.x.to_numpy(), hh.geometry.y.to_numpy()
    clon, clat = centres.geometry.x.to_numpy(), centres.geometry.y.to_numpy()
    radius = np.where(np.isfinite(centres["radius_m"]), centres["radius_m"], 900.0)
    covered = np.zeros(len(hh), bool)
    nearest = np.full(len(hh), np.inf)
    for j in range(len(centres)):  # brute force: every household against every centre
        d = haversine_m(lon, lat, clon[j], clat[j])
        covered |= d <= radius[j]
        nearest = np.minimum(nearest, d)
    assert 0 < covered.sum() < len(hh)
    assert (cov["covered"].to_numpy() == covered).all()
    np.testing.assert_allclose(cov["nearest_centre_m"].to_numpy(), nearest, rtol=0, atol=1e-6)


def test_service_circles_have_their_radius(scenario):
    centres = scenario["centres"].iloc[:5].copy()
    areas = straight_line_areas(centres, 1000.0).to_crs(32651)
    for geom, c in zip(areas.geometry, centres.to_crs(32651).geometry):
        d = np.hypot(*(np.asarray(geom.exterior.coords) - [c.x, c.y]).T)
        assert d.max() == pytest.approx(1000.0, abs=0.01)


def test_gap_cells_count_and_merge(scenario):
    hh = scenario["households"]
    cov = straight_line_coverage(hh, scenario["centres"], 600.0)
    out = ~cov["covered"].to_numpy()
    cells = gap_cells(hh, out, res=9)
    assert cells["households"].sum() == out.sum()
    # independent per-cell count
    ll = hh[out]
    manual = pd.Series([h3.str_to_int(h3.latlng_to_cell(y, x, 9)) for x, y in zip(ll.geometry.x, ll.geometry.y)])
    assert cells.set_index("h3")["households"].to_dict() == manual.value_counts().to_dict()
    # gap areas: cells of one gap are connected, cells of different gaps never touch
    gid = cells.set_index("h3")["gap_id"].to_dict()
    for c, g in gid.items():
        for nb in h3.grid_ring(h3.int_to_str(c), 1):
            j = h3.str_to_int(nb)
            if j in gid:
                assert gid[j] == g
    totals = cells.groupby("gap_id")["households"].sum()
    assert (cells["gap_households"] == cells["gap_id"].map(totals)).all()
    assert list(totals.sort_values(ascending=False).index)[0] == 1
    areas = gap_areas(cells)
    assert areas["households"].sum() == out.sum()
    assert len(areas) == cells["gap_id"].nunique()


def test_rollup_and_summary(scenario):
    grids = scenario["grids"].copy()
    if "community_code" not in grids.columns:
        grids["community_code"] = grids["grid_code"].str.rsplit("-", n=1).str[0]
    st = grid_status(grids, scenario["households"], scenario["members"])
    by = rollup(st, "community_code")
    assert by["households"].sum() == st["households"].sum()
    assert by["blank_grids"].sum() == st["blank"].sum()
    assert by["grids"].sum() == len(st)
    cov = straight_line_coverage(scenario["households"], scenario["centres"])
    s = coverage_summary(st, cov)
    assert s["blank_grids"] == int(st["blank"].sum())
    assert s["within_straight_pct"] == round(100 * cov["covered"].mean(), 2)


def test_grid_codes_filled_by_point_in_polygon(scenario):
    hh = scenario["households"].drop(columns="grid_code").iloc[:2000]
    st = grid_status(scenario["grids"], hh, scenario["members"])
    located = locate_in_grids(hh, scenario["grids"]).value_counts()
    assert st.set_index("grid_code")["households"].sum() == located.sum()


def test_unlinked_cells_count_by_reason(scenario):
    ul = unlinked_households(scenario["households"], scenario["members"])
    cells = unlinked_cells(ul, res=9)
    assert cells["households"].sum() == len(ul)
    reasons = [c for c in cells.columns if c not in ("h3", "households", "geometry")]
    assert set(reasons) == set(ul["reason"])
    assert (cells[reasons].sum(axis=1) == cells["households"]).all()
    manual = pd.Series([h3.str_to_int(h3.latlng_to_cell(p.y, p.x, 9)) for p in ul.geometry]).value_counts()
    assert cells.set_index("h3")["households"].to_dict() == manual.to_dict()
