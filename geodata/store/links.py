"""PostGIS persistence of 包片联户 link runs (``link_runs``, ``links``).

A *run* is one computation of :func:`gridmap.linkage.link_households` for a region (a street,
community or grid code). Saving a run is one transaction:

1. a transaction-scoped advisory lock serialises concurrent saves (regions may overlap);
2. the run and all its links are inserted (COPY) while not yet current, each link with its
   household's street (``street_code``, the partition key of migration 0014: rows go straight to
   their street's partition, no trigger has to move them);
3. links of the households it covers held by *other* regions' current runs are removed (a newer
   run supersedes overlapping ones for those households, so every household has at most one
   current link) — reading only the partitions of those households' streets;
4. the region's previous current run is switched off and the new one on.

Readers therefore see either the whole old run or the whole new one, never a mix. A link lives in
its household's street partition (``geodata.store.partitions.restreet`` moves it when the household
changes street), so reads that name the streets prune the others. Coordinates are WGS84; distances
metres.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

from geodata.jsonenc import dumps
from geodata.store.partitions import street_of_region

#: Layers a recompute reads from the store (no personal data: names are not needed to link).
_LAYERS = ("grids", "households", "members")


@dataclass
class SavedRun:
    """What :func:`save_run` stored."""

    run_id: int
    region: str
    links: int
    superseded_links: int


#: Current links of some households; ``{street}`` is empty or a filter naming their streets (pruning).
CURRENT_LINKS_SQL = ("SELECT l.household_id, l.member_id FROM links l JOIN link_runs r ON r.run_id = l.run_id "
                     "WHERE r.is_current AND l.household_id = ANY(:ids){street}")
#: Links of the covered households held by other regions' current runs (superseded by a new run).
SUPERSEDE_SQL = ("DELETE FROM links l USING link_runs r "
                 "WHERE l.run_id = r.run_id AND r.is_current AND r.region <> :r AND r.run_id <> :id "
                 "AND l.household_id = ANY(:hh){street}")


def street_filter(streets, with_null: bool = False) -> str:
    """``AND`` clause keeping links of these streets (and of no street if ``with_null``); '' for all."""
    if streets is None:
        return ""
    return " AND (l.street_code = ANY(:streets) OR l.street_code IS NULL)" if with_null else \
        " AND l.street_code = ANY(:streets)"


def current_links(conn: Connection, household_ids, streets=None) -> pd.DataFrame:
    """Current links (``household_id``, ``member_id``) of these households, from any current run.

    ``streets``: the households' street codes when known (e.g. a street's recompute); only those
    partitions of ``links`` are read.
    """
    ids = [str(h) for h in household_ids]
    params: dict = {"ids": ids}
    if streets is not None:
        params["streets"] = [str(s) for s in streets]
    rows = conn.execute(text(CURRENT_LINKS_SQL.format(street=street_filter(streets))), params).all()
    return pd.DataFrame(rows, columns=["household_id", "member_id"])


def household_streets(conn: Connection, household_ids: list[str]) -> dict[str, str | None]:
    """Street code of each household (``household_street``, the unpartitioned lookup); absent ones are None."""
    rows = conn.execute(text("SELECT household_id, street_code FROM household_street WHERE household_id = ANY(:ids)"),
                        {"ids": household_ids}).all()
    found: dict[str, str | None] = {str(h): s for h, s in rows}
    return {h: found.get(h) for h in household_ids}


def _copy_links(conn: Connection, run_id: int, links: pd.DataFrame, streets: dict) -> None:
    """COPY the run's links with their households' streets (each row lands in its partition)."""
    raw = conn.connection.driver_connection
    assert raw is not None  # an open Connection always holds its psycopg connection
    cols = "run_id, household_id, member_id, distance_m, visit_order, street_code"
    with raw.cursor() as cur, cur.copy(f"COPY links ({cols}) FROM STDIN") as cp:
        for h, m, d, o in zip(links["household_id"], links["member_id"], links["distance_m"], links["visit_order"]):
            cp.write_row((run_id, str(h), str(m), float(d), int(o), streets.get(str(h))))


def save_run(engine: Engine, region: str, links: pd.DataFrame, params: dict, summary: dict,
             household_ids=None) -> SavedRun:
    """Store a run for ``region`` and make it current, atomically (see the module docstring).

    Parameters
    ----------
    links : DataFrame
        ``household_id``, ``member_id``, ``distance_m`` (metres), ``visit_order``.
    params, summary : dict
        JSON-serialisable run parameters and headline figures (no personal data).
    household_ids : iterable, optional
        Every household the run covered (linked or not); their links in other regions' current
        runs are removed. Default: the linked households.
    """
    covered = [str(h) for h in (links["household_id"] if household_ids is None else household_ids)]
    with engine.begin() as conn:
        streets = household_streets(conn, sorted(set(covered) | {str(h) for h in links["household_id"]}))
        conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('gridmap:link_runs'))"))
        run_id = conn.execute(text(
            "INSERT INTO link_runs (region, params, summary, is_current) "
            "VALUES (:r, CAST(:p AS JSONB), CAST(:s AS JSONB), false) RETURNING run_id"),
            {"r": region, "p": dumps(params), "s": dumps(summary)}).scalar_one()
        _copy_links(conn, run_id, links, streets)
        named = sorted({s for h in covered if (s := streets.get(h)) is not None})
        superseded = conn.execute(
            text(SUPERSEDE_SQL.format(street=street_filter(named, any(streets.get(h) is None for h in covered)))),
            {"r": region, "id": run_id, "hh": covered, "streets": named}).rowcount
        conn.execute(text("UPDATE link_runs SET is_current = false WHERE region = :r AND is_current"), {"r": region})
        conn.execute(text("UPDATE link_runs SET is_current = true WHERE run_id = :id"), {"id": run_id})
    return SavedRun(run_id=int(run_id), region=region, links=len(links), superseded_links=int(superseded or 0))


def recompute(engine: Engine, region: str, *, min_links: int | None = None, max_links: int | None = None,
              max_distance_m: float | None = None, allow_cross_grid: bool = False,
              keep_bonus_m: float = 200.0):
    """Re-link the households of ``region`` from the stored layers and save the run as current.

    The current links of the region's households are the ``previous`` links (stability: a link
    changes only if that saves more than ``keep_bonus_m`` metres). Returns ``(SavedRun, LinkResult)``;
    ``SavedRun`` is None when the region has no households.
    """
    from geodata.store.maps import load_region
    from gridmap.contract import MAX_LINKS, MIN_LINKS
    from gridmap.linkage import link_households

    layers = load_region(engine, region, layers=_LAYERS)
    households, members, grids = layers["households"], layers["members"], layers["grids"]
    with engine.connect() as conn:
        street = street_of_region(conn, region)  # a street, community or grid lies in one street
        previous = (current_links(conn, households["household_id"], None if street is None else [street])
                    if len(households) else None)
    result = link_households(households, members, min_links=MIN_LINKS if min_links is None else min_links,
                             max_links=MAX_LINKS if max_links is None else max_links, max_distance_m=max_distance_m,
                             allow_cross_grid=allow_cross_grid and len(grids) > 1, grids=grids if len(grids) else None,
                             previous=previous if previous is not None and len(previous) else None,
                             keep_bonus_m=keep_bonus_m)
    if len(households) == 0:
        return None, result
    params = {"min_links": min_links, "max_links": max_links, "max_distance_m": max_distance_m,
              "allow_cross_grid": allow_cross_grid, "keep_bonus_m": keep_bonus_m}
    saved = save_run(engine, region, result.links, params, result.summary,
                     household_ids=households["household_id"])
    return saved, result


def member_grid(engine: Engine, member_id: str) -> tuple[bool, str | None]:
    """``(exists, grid_code)`` of a member."""
    with engine.connect() as conn:
        row = conn.execute(text("SELECT grid_code FROM members WHERE member_id = :m"), {"m": member_id}).first()
    return (row is not None, row[0] if row else None)


#: A member's current 包片联户 households in visiting order (psycopg placeholder; the async reader in
#: ``geodata.store.pool`` runs the same text). Households are partitioned by street (migration 0014)
#: and keyed ``(street_code, household_id)``: a join on the id alone reads every partition in full
#: (~50 ms at 120k households). Each link's household street comes from the ``household_street``
#: lookup (one primary-key probe, kept from the LATERAL's LIMIT from turning into a merge over the
#: whole lookup), and the household is then one index probe in its street's partition (run-time
#: pruning); households in no street (NULL, the default partition) by the second arm.
MEMBER_HOUSEHOLDS_SQL = (
    "SELECT h.household_id, h.grid_code, h.size, h.tags, h.name, h.phone, h.id_number, h.building, h.unit, h.room, "
    "ST_X(h.geom) AS lon, ST_Y(h.geom) AS lat, l.distance_m, l.visit_order, l.run_id "
    "FROM links l JOIN link_runs r ON r.run_id = l.run_id AND r.is_current "
    "CROSS JOIN LATERAL (SELECT hs.street_code FROM household_street hs "
    "WHERE hs.household_id = l.household_id LIMIT 1) hs "
    "CROSS JOIN LATERAL ("
    "SELECT * FROM households h1 WHERE h1.street_code = hs.street_code AND h1.household_id = l.household_id "
    "UNION ALL SELECT * FROM households h0 WHERE hs.street_code IS NULL AND h0.street_code IS NULL "
    "AND h0.household_id = l.household_id) h "
    "WHERE l.member_id = %(m)s ORDER BY l.visit_order NULLS LAST, h.household_id COLLATE \"C\"")


def member_households(engine: Engine, member_id: str) -> list[dict]:
    """A member's linked households (包片联户) of the current run in visiting order (unordered last).

    Rows carry ``lon``/``lat`` (WGS84), ``distance_m`` (metres), ``visit_order``, ``run_id`` and
    ``tags`` as a list, and residents' personal data (``name``/``phone``/``id_number``): the caller
    must mask or audit them (``api.auth.present_pii``) and never log them.
    """
    with engine.connect() as conn:
        rows = conn.execute(text(MEMBER_HOUSEHOLDS_SQL.replace("%(m)s", ":m")), {"m": member_id})
        return [dict(r._mapping) for r in rows]

