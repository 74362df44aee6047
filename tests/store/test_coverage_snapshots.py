"""Coverage snapshots (geodata.store.coverage_snapshots) on the real PostGIS: a snapshot equals a fresh
computation, every kind of committed write makes the next read fresh, regions are kept apart, two
requests missing at once compute once, a write committed during a computation is never served, and an
update of members that changes only ``available`` keeps the snapshot."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa

from tests.web.conftest import seed_region


@pytest.fixture()
def seeded(engine):
    seed_region(engine)
    return engine


@pytest.fixture()
def computed(monkeypatch):
    """Counts the fresh computations behind ``coverage_layers`` (per region)."""
    from api.usecases import leader

    calls: list[str] = []
    real = leader.compute_coverage

    def counting(engine, region, *args, **kwargs):
        calls.append(region)
        return real(engine, region, *args, **kwargs)

    monkeypatch.setattr(leader, "compute_coverage", counting)
    return calls


def _report(engine, region="S1") -> dict:
    from api.usecases.leader import coverage_report

    return coverage_report(engine, region)


def _fresh(engine, region="S1") -> dict:
    from api.usecases.leader import SERVICE_RADIUS_M, compute_coverage, coverage_tables

    out, summary = compute_coverage(engine, region)
    return coverage_tables(out, summary, region, SERVICE_RADIUS_M)


def test_a_snapshot_equals_a_fresh_computation_layer_by_layer(seeded, computed):
    from api.usecases.leader import compute_coverage, coverage_layers

    with seeded.begin() as c:  # a centre covering H1 only: circles and gap cells to compare
        c.execute(sa.text(WRITES["service_centres"].replace("121.482", "121.471")))
    first = coverage_layers(seeded, "S1")
    again = coverage_layers(seeded, "S1")
    assert computed == ["S1"]  # the second read came from the snapshot
    fresh, summary = compute_coverage(seeded, "S1")
    assert again[1] == first[1] == summary
    assert len(fresh["gap_cells"]) and len(fresh["service_areas"]) and len(fresh["unlinked_households"])
    for name, layer in fresh.items():
        a, b = again[0][name].reset_index(drop=True), layer.reset_index(drop=True)
        assert list(a.columns) == list(b.columns), name
        assert a.drop(columns=a.geometry.name).equals(b.drop(columns=b.geometry.name)) or a.shape == b.shape == (0, a.shape[1])
        assert list(a.geometry.to_wkb()) == list(b.geometry.to_wkb()), name
    assert _report(seeded) == _fresh(seeded)


def _insert_household(engine, hid="H4", grid="G1", x=121.484):
    with engine.begin() as c:
        c.execute(sa.text("INSERT INTO households (household_id, grid_code, h3, geom) "
                          "VALUES (:h, :g, 0, ST_SetSRID(ST_MakePoint(:x, 31.205), 4326))"), {"h": hid, "g": grid, "x": x})


WRITES = {
    "households": lambda e: _insert_household(e),
    "members": "INSERT INTO members (member_id, grid_code, h3, geom) "
               "VALUES ('M2', 'G2', 0, ST_SetSRID(ST_MakePoint(121.495, 31.205), 4326))",
    "members_moved": "UPDATE members SET grid_code = 'G2' WHERE member_id = 'M1'",
    "links": "DELETE FROM links WHERE household_id = 'H2'",
    "link_runs": "UPDATE link_runs SET is_current = false",
    "grids": "UPDATE grids SET has_branch = true WHERE grid_code = 'G2'",
    "service_centres": "INSERT INTO service_centres (centre_id, name, h3, geom) "
                       "VALUES ('SC1', '中心', 0, ST_SetSRID(ST_MakePoint(121.482, 31.205), 4326))",
    "communities": "UPDATE communities SET street_code = 'S2' WHERE code = 'C1'",
}


@pytest.mark.parametrize("kind", sorted(WRITES))
def test_every_kind_of_committed_write_makes_the_next_read_fresh(seeded, computed, kind):
    region = "C1"
    before = _report(seeded, region)
    assert _report(seeded, region) == before and computed == [region]
    write = WRITES[kind]
    if callable(write):
        write(seeded)
    else:
        with seeded.begin() as c:
            c.execute(sa.text(write))
    after = _report(seeded, region)
    assert computed == [region, region]
    assert after == _fresh(seeded, region)
    assert after != before  # the write changed a figure, and the page shows the change


def test_an_uncommitted_write_changes_nothing_and_its_commit_does(seeded, computed):
    before = _report(seeded)
    with seeded.connect() as c:
        tx = c.begin()
        c.execute(sa.text("UPDATE grids SET has_branch = true WHERE grid_code = 'G2'"))
        assert _report(seeded) == before and computed == ["S1"]  # not committed: the snapshot stands
        tx.commit()
    assert _report(seeded)["summary"]["branch_pct"] == 100.0


def test_members_going_on_and_off_duty_keep_the_snapshot(seeded, computed):
    before = _report(seeded)
    with seeded.begin() as c:
        c.execute(sa.text("UPDATE members SET available = NOT coalesce(available, true)"))
    assert _report(seeded) == before
    assert computed == ["S1"]
    assert before == _fresh(seeded)


def test_two_regions_have_their_own_snapshots_and_a_write_refreshes_both(seeded, computed):
    s1, s2 = _report(seeded, "S1"), _report(seeded, "S2")
    assert s1 != s2 and s2["summary"]["households"] == 0
    with seeded.connect() as c:
        assert c.execute(sa.text("SELECT count(*) FROM coverage_snapshots")).scalar() == 2
    _insert_household(seeded, "H9", "G9", 121.51)
    assert _report(seeded, "S2")["summary"]["households"] == 1
    assert _report(seeded, "S1") == s1
    assert sorted(computed) == ["S1", "S1", "S2", "S2"]  # the write refreshed both snapshots
    assert s1 == _fresh(seeded, "S1")


def test_two_requests_missing_at_once_compute_once(seeded, computed):
    from geodata.store import coverage_snapshots as snaps

    from api.usecases.leader import compute_coverage

    key = snaps.SnapshotKey("S1", 1000.0, 9)
    started, results = threading.Event(), []

    def slow():
        started.set()
        out = compute_coverage(seeded, "S1")
        threading.Event().wait(0.5)  # hold the key's lock while the second request arrives
        return out

    def read(compute):
        results.append(snaps.cached(seeded, key, compute).summary)

    first = threading.Thread(target=read, args=(slow,))
    first.start()
    started.wait()
    second = threading.Thread(target=read, args=(lambda: pytest.fail("computed twice"),))
    second.start()
    first.join()
    second.join()
    assert len(results) == 2 and results[0] == results[1]


def test_a_write_committed_during_a_computation_is_never_served(seeded, computed):
    from geodata.store import coverage_snapshots as snaps

    from api.usecases.leader import compute_coverage

    key = snaps.SnapshotKey("S1", 1000.0, 9)

    def racing():
        out = compute_coverage(seeded, "S1")  # read before the write below commits
        _insert_household(seeded)
        return out

    stale = snaps.cached(seeded, key, racing).summary
    assert stale["households"] == 3
    assert _report(seeded)["summary"]["households"] == 4 == _fresh(seeded)["summary"]["households"]


def test_snapshots_survive_a_restart(seeded, db_url, computed):
    from geodata.store.session import make_engine

    before = _report(seeded)
    make_engine.cache_clear()
    seeded.dispose()
    other = make_engine(db_url)
    assert _report(other) == before and computed == ["S1"]
