"""Street (街道) partitions of ``households``, ``members``, ``links`` and ``incidents`` (migration 0014).

Each of the four tables is ``PARTITION BY LIST (street_code)``: one partition per street
(``households_p_330103001`` …) and a ``DEFAULT`` partition for rows in no street. A query that
names its streets (``street_code = ANY(:streets)``) reads only their partitions, which is what keeps
a region's read cheap when the tables hold a province or the nation.

How a row gets its street: households and members from grid → community → street, links from their
household, incidents from routing (else their grid). The importer writes it; any other writer may
leave it out and the migration's statement triggers fill it in (moving the row to its partition).

Going to two levels (county → street, for ~40k streets): partition the parents ``BY LIST
(county_code)`` and each county partition ``BY LIST (street_code)``; ``gridmap_street_partition``
then creates the county partition first. Queries keep naming streets; adding ``county_code =
ANY(:counties)`` lets the planner drop whole counties before looking at streets.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import text

#: The partitioned tables, in the order a street's partitions are created.
PARTITIONED = ("households", "members", "incidents", "links")

#: The street of each grid (grid → community → street), as ``grid_code``, ``street_code``.
GRID_STREET = "SELECT g.grid_code, c.street_code FROM grids g JOIN communities c ON c.code = g.community_code"


def existing_streets(conn, table: str) -> set[str]:
    """Street codes that have their own partition of ``table`` (the default partition excluded)."""
    rows = conn.execute(text(
        "SELECT pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = CAST(:t AS regclass) AND NOT c.relpartbound IS NULL"), {"t": table}).scalars()
    out = set()
    for bound in rows:  # "FOR VALUES IN ('330103001')" or "DEFAULT"
        if bound.startswith("FOR VALUES IN ('"):
            out.add(bound[len("FOR VALUES IN ('"):-2].replace("''", "'"))
    return out


def ensure_street_partitions(conn, codes: Iterable[str | None], tables: Iterable[str] = PARTITIONED) -> list[str]:
    """Create the partitions of streets seen for the first time, in the caller's transaction.

    Rows of such a street already in the default partition move into the new one. Creating a
    partition locks the parent table until the transaction ends, so it happens once per street.

    Returns
    -------
    list of str
        ``table:street_code`` of every partition created.
    """
    wanted = {str(c) for c in codes if c is not None and str(c) != ""}
    created = []
    for table in tables:
        for code in sorted(wanted - existing_streets(conn, table)):
            conn.execute(text("SELECT gridmap_street_partition(:t, :c)"), {"t": table, "c": code})
            created.append(f"{table}:{code}")
    return created


def restreet(conn) -> int:
    """Move rows whose street changed (a grid moved community, a community moved street); row count.

    Run after grids, communities or streets are written, in the same transaction.
    """
    codes = conn.execute(text(f"SELECT DISTINCT street_code FROM ({GRID_STREET}) gs")).scalars().all()
    ensure_street_partitions(conn, codes)
    moved = 0
    for table in ("households", "members", "incidents"):
        moved += conn.execute(text(
            f"UPDATE {table} t SET street_code = gs.street_code FROM ({GRID_STREET}) gs "
            "WHERE t.grid_code = gs.grid_code AND gs.street_code IS NOT NULL "
            "AND t.street_code IS DISTINCT FROM gs.street_code")).rowcount or 0
    moved += conn.execute(text(
        "UPDATE links t SET street_code = hs.street_code FROM household_street hs "
        "WHERE t.household_id = hs.household_id AND t.street_code IS DISTINCT FROM hs.street_code")).rowcount or 0
    return moved


def region_streets(conn, grid_codes: Iterable[str] = (), community_codes: Iterable[str] = (),
                   street_codes: Iterable[str] = ()) -> list[str]:
    """The street codes a region expansion touches (grids and communities mapped to their street)."""
    return conn.execute(text(
        f"SELECT street_code FROM ({GRID_STREET}) gs WHERE gs.grid_code = ANY(:g) AND street_code IS NOT NULL "
        "UNION SELECT street_code FROM communities WHERE code = ANY(:c) AND street_code IS NOT NULL "
        "UNION SELECT unnest(CAST(:s AS text[])) ORDER BY 1"),
        {"g": list(grid_codes), "c": list(community_codes), "s": list(street_codes)}).scalars().all()


def scanned_partitions(conn, sql: str, params: dict | None = None) -> set[str]:
    """The partitions a read-only query reads, from ``EXPLAIN (ANALYZE, FORMAT JSON)`` (it runs the query).

    Partitions pruned when planning are absent from the plan; those pruned at run time (a bound
    ``= ANY($1)``, "Subplans Removed") or never reached show no loops. Used by tests and checks.
    """
    plan = conn.execute(text("EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF, FORMAT JSON) " + sql),
                        params or {}).scalar_one()
    out: set[str] = set()

    def walk(node):
        if node.get("Relation Name") and node.get("Actual Loops", 1) != 0:
            out.add(node["Relation Name"])
        for child in node.get("Plans", []):
            walk(child)

    walk(plan[0]["Plan"])
    return out


def street_of_region(conn, code: str) -> str | None:
    """The one street a street, community or grid code lies in; None when unknown (then no pruning)."""
    return conn.execute(text(
        "SELECT COALESCE((SELECT code FROM streets WHERE code = :r), "
        "(SELECT street_code FROM communities WHERE code = :r), "
        f"(SELECT street_code FROM ({GRID_STREET}) gs WHERE gs.grid_code = :r))"), {"r": code}).scalar()
