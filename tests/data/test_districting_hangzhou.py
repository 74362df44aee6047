"""Grid redraw (网格划分) of the real Hangzhou communities (../shared) with households synthesised inside
the real grids: every community redrawn, minimal change keeps every in-band grid untouched.
"""

from __future__ import annotations

import re

import pytest
import shapely

from gridmap.districting import STATUS_KEPT, redraw

from districting_cases import _check_tiling, _metric

X0, Y0 = 230_000.0, 3_350_000.0  # Hangzhou, UTM 51N (metres)


# ---------------------------------------------------------------------------------------------
# real Hangzhou communities


@pytest.fixture(scope="module")
def hz(hangzhou):
    from geodata.io import read_layer
    from geodata.synth import synth_in_grids

    comm = read_layer(hangzhou / "communities.geojson", "communities")
    grids = read_layer(hangzhou / "grids.geojson", "grids", fix=True)
    hh = synth_in_grids(grids, seed=1)["households"]
    return comm, grids, hh


@pytest.fixture(scope="module")
def hz_fresh(hz):
    comm, _, hh = hz
    return redraw(comm, hh, seed=0)


@pytest.fixture(scope="module")
def hz_minimal(hz):
    comm, grids, hh = hz
    return redraw(comm, hh, current=grids, seed=0)


def _community_shapes(comm):
    cm = _metric(comm)
    return {c: shapely.union_all(g.geometry.to_numpy()) for c, g in cm.groupby("code")}


def _check_all_communities(res, comm, allow_multipart):
    g = _metric(res.grids)
    shapes = _community_shapes(comm)
    assert set(g["community_code"]) == set(shapes)
    multipart = {i["community_code"] for i in res.issues if i["kind"] == "multipart"}
    for code, shape in shapes.items():
        mine = g[g["community_code"] == code]
        _check_tiling(mine, shape, tol_m2=1.0)
        # One polygon per grid, except grids kept as they are today and communities whose report
        # names a detached part joined to a grid.
        single = (mine.geom_type == "Polygon") | (mine["status"] == STATUS_KEPT)
        if not (allow_multipart and code in multipart):
            assert single.all(), f"{code}: a grid is not one polygon"
    assert g["grid_code"].is_unique
    return g


def test_hangzhou_fresh_every_community_redrawn(hz, hz_fresh):
    comm, _, hh = hz
    g = _check_all_communities(hz_fresh, comm, allow_multipart=True)
    infeasible = set(hz_fresh.summary["infeasible_communities"])
    ok = ~g["community_code"].isin(infeasible)
    assert g.loc[ok, "in_band"].all()
    # Infeasible means no count of grids fits the community's total: check it really is so.
    for code in infeasible:
        total = int(g.loc[g["community_code"] == code, "households"].sum())
        assert not any(k * 300 <= total <= k * 500 for k in range(1, total // 300 + 2)), code
    for code, c in zip(g["grid_code"], g["community_code"]):
        assert re.fullmatch(re.escape(c) + r"-\d{2}", code)
    assert g["households"].sum() == hz_fresh.households.notna().sum()
    # Households outside every community are the only ones left without a grid.
    assert hz_fresh.households.notna().sum() >= 0.99 * len(hh)
    assert g["polsby_popper"].mean() > 0.45


def test_hangzhou_minimal_change_keeps_in_band_grids(hz, hz_minimal):
    from gridmap.census import locate_in_grids

    comm, grids, hh = hz
    res = hz_minimal
    g = _check_all_communities(res, comm, allow_multipart=True)
    # Today's count per grid (point in polygon, as census does), then: every in-band grid is kept,
    # with exactly the same households.
    today = locate_in_grids(hh, grids)
    counts = today.value_counts()
    kept = g[g["status"] == STATUS_KEPT].set_index("grid_code")
    in_band_today = {c for c, n in counts.items() if 300 <= n <= 500}
    assert in_band_today <= set(kept.index) | _straddling(grids, comm)
    for code in kept.index:
        assert ((res.households == code) == (today == code)).all() or code in _straddling(grids, comm)
        assert kept.loc[code, "moved"] == 0
    assert res.summary["moved"] == int(((res.households != today) & today.notna()).sum())
    redrawn = g[g["status"] != STATUS_KEPT]
    assert len(redrawn) > 0
    # Redrawn groups that could be in band are.
    bad = set(res.summary["infeasible_communities"])
    assert redrawn.loc[~redrawn["community_code"].isin(bad), "in_band"].all()


def test_hangzhou_release_brings_leftovers_into_band(hz, hz_minimal):
    comm, grids, hh = hz
    res = redraw(comm, hh, current=grids, seed=0, release_kept=True)
    _check_all_communities(res, comm, allow_multipart=True)
    released = {m["message"].split()[1] for m in res.issues if m["kind"] == "released"}
    assert released and res.summary["in_band_pct"] > hz_minimal.summary["in_band_pct"]
    strict_kept = set(hz_minimal.grids.loc[hz_minimal.grids["status"] == STATUS_KEPT, "grid_code"])
    now_kept = set(res.grids.loc[res.grids["status"] == STATUS_KEPT, "grid_code"])
    assert now_kept == strict_kept - released  # only the released grids changed status
    # What is still out of band lies in communities the report names.
    bad = set(res.summary["infeasible_communities"])
    assert res.grids.loc[~res.grids["in_band"], "community_code"].isin(bad).all()


def test_hangzhou_deterministic_for_a_seed(hz):
    comm, grids, hh = hz
    some = comm[comm["code"].isin(["SQ-3", "DX-1", "CQ-3", "ZH-9", "WL-7"])]
    a = redraw(some, hh, current=grids, seed=3)
    b = redraw(some, hh, current=grids, seed=3)
    assert a.grids["grid_code"].tolist() == b.grids["grid_code"].tolist()
    assert shapely.equals_exact(a.grids.geometry.to_numpy(), b.grids.geometry.to_numpy(), tolerance=0).all()
    assert a.households.equals(b.households) and a.issues == b.issues


def _straddling(grids, comm) -> set[str]:
    """Grids reaching more than 1 m² into a second community (their count differs by community)."""
    gm, cm = _metric(grids), _metric(comm)
    out = set()
    for code, geom in zip(gm["grid_code"], gm.geometry):
        hits = [geom.intersection(c).area for c in cm.geometry if geom.intersects(c)]
        if sum(a > 1.0 for a in hits) > 1:
            out.add(code)
    return out
