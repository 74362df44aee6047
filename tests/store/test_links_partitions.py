"""包片联户 links in their street partitions (migration 0014, issue 18): written there, read there.

Two streets (S1 west, S2 east), one community and one grid each, households and members in both,
on the real PostGIS.
"""

from __future__ import annotations

import hashlib

import geopandas as gpd
import pytest
import sqlalchemy as sa
from shapely.geometry import MultiPolygon, Point, box

from geodata.store import links as store
from geodata.store import partitions
from geodata.store.importer import import_layer

BOXES = {"S1": box(120.10, 30.25, 120.11, 30.26), "S2": box(120.11, 30.25, 120.12, 30.26)}


def _part(code: str) -> str:
    """``links``' partition of a street (gridmap_partition_name: mixed-case codes get a hash)."""
    return f"links_p_{code.lower()}_" + hashlib.md5(code.encode()).hexdigest()[:8]


def _points(prefix: str, grid: str, x0: float, n: int, id_col: str):
    return gpd.GeoDataFrame({id_col: [f"{prefix}{i}" for i in range(n)], "grid_code": [grid] * n},
                            geometry=[Point(x0 + (i % 5) * 1e-3, 30.251 + (i // 5) * 1e-3) for i in range(n)], crs=4326)


@pytest.fixture()
def linked_streets(engine):
    multi = [MultiPolygon([b]) for b in BOXES.values()]
    import_layer(engine, "streets", gpd.GeoDataFrame({"code": list(BOXES)}, geometry=multi, crs=4326))
    import_layer(engine, "communities", gpd.GeoDataFrame({"code": ["C1", "C2"], "street_code": list(BOXES)},
                                                         geometry=multi, crs=4326))
    import_layer(engine, "grids", gpd.GeoDataFrame({"grid_code": ["G1", "G2"], "community_code": ["C1", "C2"],
                                                    "kind": ["urban", "urban"]}, geometry=multi, crs=4326))
    for street, grid, x0 in (("S1", "G1", 120.1005), ("S2", "G2", 120.1105)):
        import_layer(engine, "households", _points(f"H{street}-", grid, x0, 20, "household_id"))
        import_layer(engine, "members", _points(f"M{street}-", grid, x0 + 5e-4, 3, "member_id"))
    return engine


def _partitions(read: set[str]) -> set[str]:
    return {r for r in read if r.startswith("links_p_")}


def _placement(engine):
    with engine.connect() as c:
        return c.execute(sa.text("SELECT tableoid::regclass::text, street_code, count(*) FROM links "
                                 "GROUP BY 1, 2 ORDER BY 1")).all()


def test_the_copy_writes_each_link_into_its_street_partition(linked_streets):
    # With the street-filling trigger off, only the COPY itself can put the street on the rows.
    with linked_streets.begin() as c:
        c.execute(sa.text("ALTER TABLE links DISABLE TRIGGER links_b_street_ins"))
    s1, _ = store.recompute(linked_streets, "S1")
    s2, _ = store.recompute(linked_streets, "C2")  # a community's run: its households' street too
    assert s1.links > 0 and s2.links > 0
    assert _placement(linked_streets) == [(_part("S1"), "S1", s1.links), (_part("S2"), "S2", s2.links)]


def test_a_streets_link_reads_prune_the_other_partitions(linked_streets):
    store.recompute(linked_streets, "S1")
    store.recompute(linked_streets, "S2")
    assert {p for p, _, n in _placement(linked_streets) if n} == {_part("S1"), _part("S2")}  # both hold rows
    ids = [f"HS1-{i}" for i in range(20)]
    with linked_streets.connect() as c:
        read = partitions.scanned_partitions(c, store.CURRENT_LINKS_SQL.format(street=store.street_filter(["S1"])),
                                             {"ids": ids, "streets": ["S1"]})
        assert read == {_part("S1"), "link_runs"}
        everything = partitions.scanned_partitions(c, store.CURRENT_LINKS_SQL.format(street=""), {"ids": ids})
        assert {_part("S1"), _part("S2")} <= everything  # without the street every partition is read
        # The superseding DELETE of a save (run inside this uncommitted connection: rolled back).
        delete = partitions.scanned_partitions(
            c, store.SUPERSEDE_SQL.format(street=store.street_filter(["S1"])),
            {"r": "G1", "id": -1, "hh": ids, "streets": ["S1"]})
        assert _partitions(delete) == {_part("S1")}  # ("links" itself is named as the DELETE's target)
        with_null = partitions.scanned_partitions(
            c, store.SUPERSEDE_SQL.format(street=store.street_filter(["S1"], with_null=True)),
            {"r": "G1", "id": -1, "hh": ids, "streets": ["S1"]})
        assert _partitions(with_null) == {_part("S1"), "links_p_default"}
    with linked_streets.connect() as c:
        assert len(store.current_links(c, ids, ["S1"])) == len(store.current_links(c, ids)) == 20


def test_a_grid_run_supersedes_the_street_run_inside_the_partition(linked_streets):
    street, _ = store.recompute(linked_streets, "S1")
    grid, _ = store.recompute(linked_streets, "G1")
    assert grid.superseded_links == street.links  # every household of S1 lies in G1
    with linked_streets.connect() as c:
        dup = c.execute(sa.text("SELECT household_id FROM links l JOIN link_runs r ON r.run_id = l.run_id "
                                "WHERE r.is_current GROUP BY household_id HAVING count(*) > 1")).all()
    assert dup == [] and _placement(linked_streets) == [(_part("S1"), "S1", grid.links)]
