"""Synthesis: households and members inside real grids, and a synthetic city, deterministic for a seed."""

from geodata.synth import synth_city, synth_in_grids


def test_synth_is_deterministic(hangzhou_grids):
    a = synth_in_grids(hangzhou_grids.iloc[:20], seed=5)
    b = synth_in_grids(hangzhou_grids.iloc[:20], seed=5)
    c = synth_in_grids(hangzhou_grids.iloc[:20], seed=6)
    assert a["households"].equals(b["households"]) and a["members"].equals(b["members"])
    assert not a["households"].geometry.equals(c["households"].geometry)


def test_synth_city_tiles_and_counts():
    city = synth_city(20_000, seed=2)
    grids = city["grids"].to_crs(32651)
    comms = city["communities"].to_crs(32651)
    assert len(city["households"]) == 20_000 == city["buildings"]["households"].sum()
    assert abs(grids.area.sum() - comms.area.sum()) < 1.0  # grids tile their communities
    assert all(g.startswith(c) for g, c in zip(grids["grid_code"], grids["community_code"]))
    assert (city["households"].groupby("grid_code").size() > 0).all()
