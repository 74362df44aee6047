"""PostGIS side of grid edits (网格调整) and of committing a whole redraw (网格重划).

An edit moves H3 cells and/or areas into a receiving grid (``preview`` computes it, ``commit_edit``
writes it); ``commit_redraw`` replaces every grid of a community (or street) with a redraw result.
The rules both follow (issue 11):

- no grid is removed, and no grid whose household count changes ends outside its band
  (``gridmap.contract.grid_band``) unless the caller allows it (``allow_remove`` /
  ``allow_out_of_band``) — except that a grid already out of band may move *closer* to its band
  (planners fix an oversized grid step by step); refusals raise :class:`EditRefused` naming each
  grid with its household count and band;
- every grid carries a ``version`` (bumped by a trigger on every write, migration 0004); a commit
  names the versions it was computed on and a stale or missing one raises :class:`EditRefused`;
- rows are locked ``FOR UPDATE`` and the caller's region check (``authorise``) runs inside the
  same transaction, on the locked rows;
- households and members move with the ground they stand on; nothing is left pointing at a grid
  that does not exist (checked here, and by the deferred foreign keys of migration 0004);
- one ``audit_log`` row per commit, in the same transaction.

Geometries are WGS84 (EPSG:4326) MultiPolygons; areas are square metres.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import geopandas as gpd
import pandas as pd
import shapely
from shapely.geometry import MultiPolygon
from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine, Row

from gridmap.cells import polygon_to_cells, to_signed
from gridmap.contract import H3_POINT_RES
from gridmap.districting import EditResult, preview_edit

#: Equal-area CRS (metres) valid over the whole globe: areas of selections that may be world-sized.
EQUAL_AREA_CRS = "EPSG:6933"
#: Selections are densified to this step (degrees) before projecting, so long edges follow the ground.
DENSIFY_DEG = 0.1


class UnknownGrid(LookupError):
    """The receiving grid is not in the store."""


class EditInvalid(ValueError):
    """The edit cannot be computed (e.g. nothing of the selection lies in the community)."""


class EditRefused(Exception):
    """The edit would break a rule (see the module docstring); nothing was written.

    Attributes
    ----------
    reason : str
        ``stale`` (versions), ``removes_grid``, ``out_of_band``, ``non_contiguous``.
    grids : list of dict
        The grids concerned: ``grid_code``, ``households`` (after), ``households_before``,
        ``band_min``, ``band_max``, ``removed``, and for ``stale`` ``version_sent`` / ``version_now``.
    """

    def __init__(self, reason: str, message: str, grids: list[dict]):
        super().__init__(message)
        self.reason, self.message, self.grids = reason, message, grids


@dataclass
class Actor:
    """Who writes, for the audit log: token id and role (``cli`` for the command line)."""

    token_id: int | None = None
    role: str | None = None
    member_id: str | None = None


#: ``authorise(rows)`` raises when the caller may not touch one of ``rows`` (dicts with
#: ``grid_code``, ``community_code``, ``street_code``); it runs inside the transaction.
Authorise = Callable[[list[dict]], None]


@dataclass
class EditPreview:
    """An edit computed on the stored grids; ``versions`` are those of the grids it touches."""

    result: EditResult
    versions: dict[str, int]


@dataclass
class CommittedEdit:
    """What ``commit_edit`` wrote; ``versions`` are the touched grids' versions afterwards."""

    result: EditResult
    grids_updated: int
    grids_removed: int
    households_moved: int
    links_flagged: int
    runs_flagged: int
    members_moved: int = 0
    versions: dict[str, int] = field(default_factory=dict)


# -- reading -------------------------------------------------------------------------------------

def _read(conn: Connection, to_grid: str, lock: bool):
    """Grids of ``to_grid``'s community (with version and street) and their households."""
    row = conn.execute(text("SELECT community_code FROM grids WHERE grid_code = :g"), {"g": to_grid}).first()
    if row is None:
        raise UnknownGrid(to_grid)
    grids = conn.execute(text(
        "SELECT g.grid_code, g.community_code, g.kind, ST_AsBinary(g.geom), g.version, c.street_code FROM grids g "
        "LEFT JOIN communities c ON c.code = g.community_code "
        "WHERE g.grid_code = :g OR (CAST(:c AS text) IS NOT NULL AND g.community_code = :c) ORDER BY g.grid_code"
        + (" FOR UPDATE OF g" if lock else "")), {"g": to_grid, "c": row[0]}).all()
    codes = [g[0] for g in grids]
    hh = conn.execute(text(
        "SELECT household_id, grid_code, ST_X(geom), ST_Y(geom) FROM households WHERE grid_code = ANY(:codes) "
        "ORDER BY household_id" + (" FOR UPDATE" if lock else "")), {"codes": codes}).all()
    g = gpd.GeoDataFrame(
        {"grid_code": codes, "community_code": [r[1] for r in grids], "kind": [r[2] for r in grids],
         "version": [int(r[4]) for r in grids], "street_code": [r[5] for r in grids]},
        geometry=shapely.from_wkb([bytes(r[3]) for r in grids]), crs="EPSG:4326",
    )
    h = gpd.GeoDataFrame(
        {"household_id": [r[0] for r in hh], "grid_code": [r[1] for r in hh]},
        geometry=gpd.points_from_xy([r[2] for r in hh], [r[3] for r in hh]), crs="EPSG:4326",
    )
    return g, h


def load_edit_layers(engine: Engine, to_grid: str) -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]:
    """Grids of ``to_grid``'s community (``grid_code``, ``community_code``, ``kind``, ``version``,
    ``street_code``, WGS84 polygon) and their households (``household_id``, ``grid_code``, point)."""
    with engine.connect() as conn:
        return _read(conn, to_grid, lock=False)


# -- computing -----------------------------------------------------------------------------------

def area_m2(geom) -> float:
    """Area in square metres of a WGS84 geometry of any size (equal-area projection, densified)."""
    if geom is None or geom.is_empty:
        return 0.0
    dense = shapely.segmentize(geom, DENSIFY_DEG)
    return float(gpd.GeoSeries([dense], crs="EPSG:4326").to_crs(EQUAL_AREA_CRS).area.iloc[0])


def _polygonal(geom):
    """Only the polygons of a geometry (an intersection along shared edges also yields lines and points)."""
    parts = [p for p in shapely.get_parts(geom) if p.geom_type in ("Polygon", "MultiPolygon") and p.area > 0]
    return shapely.union_all(parts) if parts else None


def _clip_to_community(grids: gpd.GeoDataFrame, to_grid: str, areas) -> tuple[list, list[str]]:
    """Areas clipped (in WGS84) to the ground of ``to_grid``'s community, and a note of what was cut.

    Clipping comes first so that a world-sized selection is never projected to the community's UTM
    zone (where its area is meaningless); the cut-off part is measured in an equal-area CRS.
    """
    if not areas:
        return [], []
    target = grids.loc[grids["grid_code"] == to_grid].iloc[0]
    same = grids["community_code"] == target["community_code"] if target["community_code"] is not None else grids.index >= 0
    region = shapely.union_all(shapely.make_valid(grids.loc[same].geometry.to_numpy()))
    selection = shapely.union_all(shapely.make_valid(list(areas)))
    clipped = [c for c in (_polygonal(shapely.intersection(shapely.make_valid(a), region)) for a in areas)
               if c is not None]
    outside = area_m2(shapely.difference(selection, region))
    notes = []
    if outside >= 1.0:
        notes.append(f"{outside:,.0f} m² of the selection lie outside community {target['community_code']} and are not moved")
    return clipped, notes


def _compute(grids, households, to_grid: str, cells, areas) -> EditResult:
    clipped, notes = _clip_to_community(grids, to_grid, areas)
    if not cells and not clipped:
        raise EditInvalid(notes[0] if notes else "nothing to move: the selection is empty")
    result = preview_edit(grids.drop(columns=["version", "street_code"]), households, to_grid,
                          cells=cells, areas=clipped)
    result.issues = notes + result.issues
    return result


def _violation(n: int, lo: int, hi: int) -> int:
    """Households short of or beyond the band (0 inside it)."""
    return max(lo - n, 0, n - hi)


def _grid_fact(r) -> dict:
    return {"grid_code": str(r.grid_code), "households_before": int(r.households_before), "households": int(r.households),
            "band_min": int(r.band_min), "band_max": int(r.band_max), "removed": bool(r.removed)}


def check_rules(result: EditResult, allow_remove: bool = False, allow_out_of_band: bool = False) -> None:
    """Raise :class:`EditRefused` when the edit removes a grid or pushes a grid out of (or further from) its band.

    A grid whose count changes passes when it ends in band, or out of band but strictly closer to it
    than before (an oversized grid shrinking step by step).
    """
    facts = [_grid_fact(r) for r in result.grids.itertuples()]
    removed = [f for f in facts if f["removed"]]
    if removed and not allow_remove:
        raise EditRefused("removes_grid", "the edit would remove grid(s) "
                          + _describe(removed) + ' (send "allow_remove": true to do it anyway)', removed)
    worse = [f for f in facts if not f["removed"] and f["households"] != f["households_before"]
             and _violation(f["households"], f["band_min"], f["band_max"]) > 0
             and _violation(f["households"], f["band_min"], f["band_max"])
             >= _violation(f["households_before"], f["band_min"], f["band_max"])]
    if worse and not allow_out_of_band:
        raise EditRefused("out_of_band", "the edit would leave grid(s) outside their band: " + _describe(worse)
                          + ' (send "allow_out_of_band": true to do it anyway)', worse)


def _describe(facts: list[dict]) -> str:
    return "; ".join(f"{f['grid_code']} {f['households_before']}→{f['households']} households "
                     f"(band {f['band_min']}–{f['band_max']})" for f in facts)


def _touched_rows(grids: gpd.GeoDataFrame, codes) -> list[dict]:
    rows = grids.loc[grids["grid_code"].isin(list(codes)), ["grid_code", "community_code", "street_code"]]
    return [{k: (None if pd.isna(v) else str(v)) for k, v in r.items()} for r in rows.to_dict("records")]


def _versions(grids: gpd.GeoDataFrame, codes) -> dict[str, int]:
    v = dict(zip(grids["grid_code"], grids["version"]))
    return {str(c): int(v[c]) for c in codes if c in v}


def check_versions(current: Mapping[str, int], sent: Mapping[str, int] | None) -> None:
    """Raise :class:`EditRefused` (``stale``) when a sent version is missing or differs from the stored one."""
    sent = sent or {}
    stale = [{"grid_code": c, "version_sent": sent.get(c), "version_now": v}
             for c, v in sorted(current.items()) if sent.get(c) != v]
    if stale:
        raise EditRefused("stale", "grid(s) changed since the preview (or their versions were not sent): "
                          + ", ".join(f"{s['grid_code']} (sent {s['version_sent']}, now {s['version_now']})" for s in stale)
                          + "; preview again", stale)


def preview(engine: Engine, to_grid: str, cells=None, areas=None, *, allow_remove: bool = False,
            allow_out_of_band: bool = False, authorise: Authorise | None = None) -> EditPreview:
    """The edit computed on the stored grids, nothing written; refused edits raise :class:`EditRefused`."""
    grids, households = load_edit_layers(engine, to_grid)
    result = _compute(grids, households, to_grid, cells, areas)
    codes = result.grids["grid_code"].tolist()
    if authorise is not None:
        authorise(_touched_rows(grids, codes))
    check_rules(result, allow_remove, allow_out_of_band)
    return EditPreview(result=result, versions=_versions(grids, codes))


# -- writing -------------------------------------------------------------------------------------

def _multi(geom) -> MultiPolygon:
    if geom.geom_type == "MultiPolygon":
        return geom
    return MultiPolygon([p for p in shapely.get_parts(geom) if p.geom_type == "Polygon"])


def write_grid_geometry(conn: Connection, grid_code: str, geom) -> None:
    """New polygon (WGS84) of a grid and its H3 cells (resolution 10); the trigger bumps its version."""
    geom = _multi(geom)
    conn.execute(text("UPDATE grids SET geom = ST_Multi(ST_GeomFromWKB(:wkb, 4326)), updated_at = now() "
                      "WHERE grid_code = :g"), {"wkb": shapely.to_wkb(geom), "g": grid_code})
    write_grid_cells(conn, grid_code, geom)


def write_grid_cells(conn: Connection, grid_code: str, geom) -> None:
    conn.execute(text("DELETE FROM grid_cells WHERE grid_code = :g"), {"g": grid_code})
    cells_of = to_signed(polygon_to_cells(geom, H3_POINT_RES)).tolist()
    if cells_of:
        conn.execute(text("INSERT INTO grid_cells (grid_code, h3) SELECT :g, unnest(CAST(:c AS bigint[]))"),
                     {"g": grid_code, "c": cells_of})


def flag_stale_links(conn: Connection, household_ids: list[str]) -> tuple[int, int]:
    """Flag moved households in the current 包片联户 runs holding them; (links, runs) flagged."""
    runs = conn.execute(text(
        "SELECT l.run_id, array_agg(l.household_id ORDER BY l.household_id) FROM links l "
        "JOIN link_runs r ON r.run_id = l.run_id WHERE r.is_current AND l.household_id = ANY(:ids) "
        "GROUP BY l.run_id ORDER BY l.run_id"), {"ids": household_ids}).all()
    links = 0
    for run_id, stale in runs:
        conn.execute(text(
            "UPDATE link_runs SET summary = coalesce(summary, '{}'::jsonb) || jsonb_build_object('stale_households', "
            "(SELECT coalesce(jsonb_agg(DISTINCT x ORDER BY x), '[]'::jsonb) FROM jsonb_array_elements_text("
            "coalesce(summary->'stale_households', '[]'::jsonb) || CAST(:new AS jsonb)) AS x)) WHERE run_id = :r"),
            {"new": json.dumps(list(stale)), "r": run_id})
        links += len(stale)
    return links, len(runs)


def _move_members(conn: Connection, to_grid: str, sources: list[str]) -> int:
    """Members of the source grids whose home now lies in the receiving grid (and no longer in their own) move."""
    if not sources:
        return 0
    return conn.execute(text(
        "UPDATE members m SET grid_code = :t FROM grids tg, grids sg WHERE tg.grid_code = :t "
        "AND sg.grid_code = m.grid_code AND m.grid_code = ANY(:src) AND ST_Covers(tg.geom, m.geom) "
        "AND NOT ST_Covers(sg.geom, m.geom)"), {"t": to_grid, "src": sources}).rowcount


def _repoint(conn: Connection, old_codes: list[str], new_code: str | None) -> dict[str, int]:
    """Everything still naming one of ``old_codes`` (about to be deleted) names ``new_code`` instead; rows per table."""
    return {table: conn.execute(text(f"UPDATE {table} SET grid_code = :n WHERE grid_code = ANY(:o)"),
                                {"n": new_code, "o": old_codes}).rowcount
            for table in ("households", "members", "incidents")}


def assert_no_dangling(conn: Connection) -> None:
    """Raise when any household, member or incident names a grid that does not exist (same transaction)."""
    for table in ("households", "members", "incidents"):
        bad = conn.execute(text(
            f"SELECT DISTINCT t.grid_code FROM {table} t WHERE t.grid_code IS NOT NULL AND NOT EXISTS "
            f"(SELECT 1 FROM grids g WHERE g.grid_code = t.grid_code) LIMIT 10")).scalars().all()
        if bad:
            raise RuntimeError(f"{table} would name grid(s) that do not exist: {', '.join(bad)}")


def write_audit(conn: Connection, actor: Actor | None, action: str, codes, detail: dict) -> None:
    """One ``audit_log`` row (what = 'grids', ids = grid codes) in the caller's transaction."""
    from geodata.store.auth import audit_log

    actor = actor or Actor()
    ids = sorted({str(c) for c in codes})
    conn.execute(audit_log.insert().values(token_id=actor.token_id or None, role=actor.role, member_id=actor.member_id,
                                           action=action, what="grids", ids=ids, n_ids=len(ids), detail=detail))


def _current_versions(conn: Connection, codes) -> dict[str, int]:
    return dict(conn.execute(text("SELECT grid_code, version FROM grids WHERE grid_code = ANY(:c)"),
                             {"c": list(codes)}).all())


def commit_edit(engine: Engine, to_grid: str, cells=None, areas=None, *, versions: Mapping[str, int] | None,
                allow_remove: bool = False, allow_out_of_band: bool = False, authorise: Authorise | None = None,
                actor: Actor | None = None) -> CommittedEdit:
    """See ``_commit_edit``; afterwards cached region scopes are dropped (grids changed)."""
    from geodata.store.auth import clear_cache

    try:
        return _commit_edit(engine, to_grid, cells, areas, versions, allow_remove, allow_out_of_band, authorise, actor)
    finally:
        clear_cache()


def _commit_edit(engine, to_grid, cells, areas, versions, allow_remove, allow_out_of_band, authorise, actor):
    """Lock, authorise, check versions and rules, write, audit — one transaction; nothing is written on refusal."""
    with engine.begin() as conn:
        grids, households = _read(conn, to_grid, lock=True)
        result = _compute(grids, households, to_grid, cells, areas)
        codes = result.grids["grid_code"].tolist()
        if authorise is not None:
            authorise(_touched_rows(grids, codes))
        check_versions(_versions(grids, codes), versions)
        check_rules(result, allow_remove, allow_out_of_band)
        done = _write_edit(conn, to_grid, result)
        assert_no_dangling(conn)
        write_audit(conn, actor, "grid_edit", codes, {
            "to_grid": to_grid, "households_moved": done.households_moved, "members_moved": done.members_moved,
            "grids_updated": done.grids_updated, "grids_removed": done.grids_removed, "grids_added": 0})
        done.versions = _current_versions(conn, codes)
    return done


def _write_edit(conn: Connection, to_grid: str, result: EditResult) -> CommittedEdit:
    kept = result.grids[~result.grids["removed"]]
    removed = result.grids.loc[result.grids["removed"], "grid_code"].astype(str).tolist()
    for r in kept.itertuples():
        write_grid_geometry(conn, r.grid_code, r.geometry)
    ids = result.moved["household_id"].astype(str).tolist()
    links = runs = 0
    if ids:
        conn.execute(text("UPDATE households SET grid_code = :g WHERE household_id = ANY(:ids)"), {"g": to_grid, "ids": ids})
        links, runs = flag_stale_links(conn, ids)
    sources = [c for c in kept["grid_code"].astype(str) if c != to_grid]
    members = _move_members(conn, to_grid, sources)
    if removed:
        # A removed grid's ground all went to the receiving grid, so whatever still names it goes there too.
        members += _repoint(conn, removed, to_grid)["members"]
        conn.execute(text("DELETE FROM grids WHERE grid_code = ANY(:g)"), {"g": removed})
    return CommittedEdit(result=result, grids_updated=len(kept), grids_removed=len(removed), households_moved=len(ids),
                         links_flagged=links, runs_flagged=runs, members_moved=members)


# -- committing a whole redraw (finding 8) --------------------------------------------------------

#: Households (and members) farther than this from every new grid get no grid (metres).
NEAREST_GRID_M = 50.0


@dataclass
class CommittedRedraw:
    """What ``commit_redraw`` wrote: grid codes kept / added / removed, people re-filed by location."""

    communities: list[str]
    kept: list[str]
    added: list[str]
    removed: list[str]
    households_moved: int
    households_without_grid: int
    members_moved: int
    versions: dict[str, int]


def scope_versions(engine: Engine, community_codes) -> dict[str, int]:
    """Versions of every grid of these communities (what a redraw is computed on)."""
    with engine.connect() as conn:
        return dict(conn.execute(text("SELECT grid_code, version FROM grids WHERE community_code = ANY(:c)"),
                                 {"c": [str(c) for c in community_codes]}).all())


def _read_scope(conn: Connection, scope: list[str]):
    rows = conn.execute(text(
        "SELECT g.grid_code, g.name, g.community_code, ST_AsBinary(g.geom), g.version, c.street_code FROM grids g "
        "LEFT JOIN communities c ON c.code = g.community_code WHERE g.community_code = ANY(:s) "
        "ORDER BY g.grid_code FOR UPDATE OF g"), {"s": scope}).all()
    old = gpd.GeoDataFrame({"grid_code": [r[0] for r in rows], "name": [r[1] for r in rows],
                            "community_code": [r[2] for r in rows], "version": [int(r[4]) for r in rows],
                            "street_code": [r[5] for r in rows]},
                           geometry=shapely.from_wkb([bytes(r[3]) for r in rows]), crs="EPSG:4326")
    comm = {code: (name, street) for code, name, street in conn.execute(text(
        "SELECT code, name, street_code FROM communities WHERE code = ANY(:s)"), {"s": scope}).all()}
    missing = sorted(set(scope) - set(comm))
    if missing:
        raise UnknownGrid(f"community {', '.join(missing)}")
    return old, comm


def _match_old(old: gpd.GeoDataFrame, new: gpd.GeoDataFrame) -> list[str | None]:
    """For each new grid the old grid it continues: same code, else the largest overlap (each old grid once)."""
    from gridmap.metric import metric_crs

    codes = new["grid_code"].fillna("").astype(str).str.strip().tolist()
    old_codes = set(old["grid_code"])
    match = [c if c in old_codes else None for c in codes]
    used = {c for c in match if c}
    if len(old) and len(new):
        crs = metric_crs(new)
        om, nm = old.to_crs(crs).geometry.to_numpy(), new.to_crs(crs).geometry.to_numpy()
        pairs = sorted(((shapely.area(shapely.intersection(shapely.make_valid(nm[i]), shapely.make_valid(om[j]))), i, j)
                        for i in range(len(new)) if match[i] is None for j in range(len(old))), reverse=True)
        for overlap, i, j in pairs:
            code = old["grid_code"].iloc[j]
            if overlap > 0 and match[i] is None and code not in used:
                match[i], used = code, used | {code}
    return match


def _new_codes(conn: Connection, community_code: str, community_name: str | None, n: int, taken: set[str]):
    """``n`` (code, name) pairs ``<community>-NN`` / ``<community name>第N网格``, lowest free numbers first."""
    taken = taken | set(conn.execute(text("SELECT grid_code FROM grids WHERE grid_code LIKE :p"),
                                     {"p": community_code + "-%"}).scalars())
    names = set(conn.execute(text("SELECT name FROM grids WHERE community_code = :c AND name IS NOT NULL"),
                             {"c": community_code}).scalars())
    out: list[tuple[str, str]] = []
    k = 1
    while len(out) < n:
        code, name = f"{community_code}-{k:02d}", f"{community_name or community_code}第{k}网格"
        if code not in taken and name not in names:
            out.append((code, name))
        k += 1
    return out


def _plan_codes(conn, old, new, comm) -> tuple[list[str], list[str | None], list[bool]]:
    """Final code, name (None = keep the stored one) and kept-flag of every new grid."""
    match = _match_old(old, new)
    codes: list[str | None] = list(match)
    names: list[str | None] = [None] * len(new)
    kept = [m is not None for m in match]
    taken = set(old["grid_code"])
    for cc in sorted(set(new["community_code"])):
        todo = [i for i in range(len(new)) if match[i] is None and new["community_code"].iloc[i] == cc]
        for i, (code, name) in zip(todo, _new_codes(conn, cc, comm[cc][0], len(todo), taken)):
            codes[i], names[i] = code, name
            taken.add(code)
    return cast(list[str], codes), names, kept  # every grid without an old code got a new one above


def _refuse_noncontiguous(new: gpd.GeoDataFrame, codes: list[str]) -> None:
    parts = [len([p for p in shapely.get_parts(shapely.make_valid(g)) if p.geom_type == "Polygon"]) for g in new.geometry]
    bad = [{"grid_code": c, "parts": n} for c, n in zip(codes, parts) if n != 1]
    if bad:
        raise EditRefused("non_contiguous", "grid(s) are not one piece: " + ", ".join(
            f"{b['grid_code']} ({b['parts']} parts)" for b in bad) + ' (send "allow_noncontiguous": true)', bad)


def _write_redraw_grids(conn, new, codes, names, kept) -> None:
    for i, g in enumerate(new.geometry):
        geom = _multi(_polygonal(shapely.make_valid(g)))
        args = {"g": codes[i], "wkb": shapely.to_wkb(geom), "c": new["community_code"].iloc[i],
                "k": new["kind"].iloc[i] if "kind" in new.columns else None, "n": names[i]}
        if kept[i]:
            conn.execute(text("UPDATE grids SET geom = ST_Multi(ST_GeomFromWKB(:wkb, 4326)), community_code = :c, "
                              "kind = coalesce(CAST(:k AS text), kind), updated_at = now() WHERE grid_code = :g"), args)
        else:
            conn.execute(text("INSERT INTO grids (grid_code, name, community_code, kind, geom) "
                              "VALUES (:g, :n, :c, :k, ST_Multi(ST_GeomFromWKB(:wkb, 4326)))"), args)
        write_grid_cells(conn, codes[i], geom)


_REFILE = """
WITH target AS (
    SELECT t.{id} AS id, t.grid_code AS old_code,
           (SELECT g.grid_code FROM grids g WHERE g.grid_code = ANY(:new)
              AND ST_DWithin(g.geom::geography, t.geom::geography, :near)
            ORDER BY ST_Covers(g.geom, t.geom) DESC, ST_Distance(g.geom::geography, t.geom::geography), g.grid_code
            LIMIT 1) AS new_code
    FROM {table} t
    WHERE t.grid_code = ANY(:old) OR (t.grid_code IS NULL AND EXISTS (
        SELECT 1 FROM grids g WHERE g.grid_code = ANY(:new) AND ST_Covers(g.geom, t.geom)))
)
UPDATE {table} t SET grid_code = target.new_code FROM target
WHERE t.{id} = target.id AND t.grid_code IS DISTINCT FROM target.new_code
RETURNING t.{id}, target.new_code
"""


def _refile(conn: Connection, table: str, idcol: str, old: list[str], new: list[str]) -> Sequence[Row]:
    """Re-file rows of ``table`` by location: the new grid covering the point, else the nearest within 50 m."""
    return conn.execute(text(_REFILE.format(table=table, id=idcol)),
                        {"old": old, "new": new, "near": NEAREST_GRID_M}).all()


def _refuse_out_of_band(conn: Connection, codes: list[str], kinds: list[str | None]) -> None:
    from gridmap.contract import grid_band

    counts = {code: int(n) for code, n in conn.execute(
        text("SELECT grid_code, count(*) FROM households WHERE grid_code = ANY(:c) GROUP BY 1"), {"c": codes})}
    facts: list[dict[str, Any]] = [{"grid_code": c, "households": int(counts.get(c, 0)), "band_min": grid_band(k)[0],
                                    "band_max": grid_band(k)[1]} for c, k in zip(codes, kinds)]
    bad = [f for f in facts if not f["band_min"] <= f["households"] <= f["band_max"]]
    if bad:
        raise EditRefused("out_of_band", "the redraw leaves grid(s) outside their band: " + "; ".join(
            f"{f['grid_code']} {f['households']} households (band {f['band_min']}–{f['band_max']})" for f in bad)
            + ' (send "allow_out_of_band": true)', bad)


def commit_redraw(engine: Engine, new_grids: gpd.GeoDataFrame, *, versions: Mapping[str, int] | None,
                  allow_out_of_band: bool = False, allow_noncontiguous: bool = False,
                  authorise: Authorise | None = None, actor: Actor | None = None) -> CommittedRedraw:
    """Replace every grid of the communities in ``new_grids`` with ``new_grids``, in ONE transaction.

    Parameters
    ----------
    new_grids : GeoDataFrame (WGS84)
        A redraw result: ``community_code`` (required), ``grid_code`` (blank for new grids), optional
        ``kind``, polygon. Its communities are the scope (a street's redraw names all its communities).
    versions : dict
        Versions of the scope's stored grids the redraw was computed on (``scope_versions``).

    Kept grids (same code, else the largest overlap) keep code, Chinese name and branch; new grids get
    ``<community>-NN`` and ``<community name>第N网格``; grids of the scope not kept are deleted.
    Households and members of the scope are re-filed by location (covering grid, else the nearest
    within 50 m, else none); H3 cells rebuilt; versions bumped; one audit row. Raises
    :class:`EditRefused` for stale versions, grids out of band or in several pieces (unless allowed).
    """
    from geodata.store.auth import clear_cache

    new = _checked_redraw(new_grids)
    scope = sorted(set(new["community_code"]))
    try:
        with engine.begin() as conn:
            return _commit_redraw(conn, new, scope, versions, allow_out_of_band, allow_noncontiguous, authorise, actor)
    finally:
        clear_cache()


def _checked_redraw(new_grids: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    if len(new_grids) == 0:
        raise EditInvalid("the redraw has no grids")
    new = new_grids.to_crs("EPSG:4326").reset_index(drop=True)
    if "community_code" not in new.columns or new["community_code"].isna().any():
        rows = [] if "community_code" not in new.columns else new.index[new["community_code"].isna()].tolist()
        raise EditInvalid(f"every grid needs a community_code (missing in feature(s) {rows[:10] or 'all'})")
    if "grid_code" not in new.columns:
        new["grid_code"] = None
    new["community_code"] = new["community_code"].astype(str)
    bad = [i for i, g in enumerate(new.geometry) if g is None or _polygonal(shapely.make_valid(g)) is None]
    if bad:
        raise EditInvalid(f"feature(s) {bad[:10]} have no polygon")
    return new


def _commit_redraw(conn, new, scope, versions, allow_out_of_band, allow_noncontiguous, authorise, actor):
    old, comm = _read_scope(conn, scope)
    if authorise is not None:
        authorise([{"grid_code": None, "community_code": c, "street_code": comm[c][1]} for c in scope])
    check_versions(_versions(old, old["grid_code"]), versions)
    codes, names, kept = _plan_codes(conn, old, new, comm)
    if not allow_noncontiguous:
        _refuse_noncontiguous(new, codes)
    _write_redraw_grids(conn, new, codes, names, kept)
    old_codes = old["grid_code"].tolist()
    removed = sorted(set(old_codes) - set(codes))
    households = _refile(conn, "households", "household_id", old_codes, codes)
    members = _refile(conn, "members", "member_id", old_codes, codes)
    _refile(conn, "incidents", "incident_id", removed, codes)
    if removed:
        conn.execute(text("DELETE FROM grids WHERE grid_code = ANY(:g)"), {"g": removed})
    if not allow_out_of_band:
        kinds = new["kind"].tolist() if "kind" in new.columns else [None] * len(new)
        _refuse_out_of_band(conn, codes, [k if isinstance(k, str) else None for k in kinds])
    assert_no_dangling(conn)
    if households:
        flag_stale_links(conn, [h for h, _ in households])
    done = CommittedRedraw(
        communities=scope, kept=sorted(c for c, k in zip(codes, kept) if k),
        added=sorted(c for c, k in zip(codes, kept) if not k),
        removed=removed, households_moved=len(households), households_without_grid=sum(1 for _, g in households if g is None),
        members_moved=len(members), versions=_current_versions(conn, codes))
    write_audit(conn, actor, "grid_redraw", codes + removed, {
        "communities": scope, "grids_kept": len(done.kept), "grids_added": len(done.added), "grids_removed": len(removed),
        "households_moved": done.households_moved, "households_without_grid": done.households_without_grid,
        "members_moved": done.members_moved})
    return done


__all__ = ["UnknownGrid", "EditInvalid", "EditRefused", "Actor", "EditPreview", "CommittedEdit", "load_edit_layers",
           "preview", "commit_edit", "CommittedRedraw", "commit_redraw", "scope_versions", "check_rules", "check_versions",
           "area_m2", "write_audit", "assert_no_dangling"]
