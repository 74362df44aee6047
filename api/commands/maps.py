"""``gridmap map coverage|service|links|incidents|redraw`` — HTML maps (and PNG) from a scenario or a plan.

Also :func:`build_map`, shared by the command, the plan step :func:`step_maps` (writes
``OUTDIR/maps/*.html``) and the ``GET /maps/{kind}`` route: it takes a dict of layers (input layers
and/or engine outputs) and computes with the engines whatever a map needs that is not there yet.

Engine outputs are looked up under these layer names (first found wins):

* grid status: ``grid_status``, or ``grids`` carrying ``status`` and ``blank_reason``
  (``coverage.grid_status``); unlinked households: ``unlinked_households``;
* gap cells: ``gap_cells`` / ``service_gaps``; walking areas: ``walking_areas`` / ``service_areas``
  (rows with ``basis`` = ``walking``); proposed sites: ``sites`` / ``proposed_sites``;
* links: ``links``; proposed grids: ``redraw_grids`` / ``proposed_grids`` / ``grids_redrawn``, beside
  today's grids ``grids_before_redraw`` / ``current_grids`` (else ``grids``); households' new grid
  in ``new_grid_code`` (or, after the plan's redraw step, ``grid_code`` with ``previous_grid_code``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import typer

from api.commands.common import COORDS_HELP, console, fail

MAP_KINDS = ("coverage", "service", "links", "incidents", "redraw")
GAP_LAYERS = ("gap_cells", "service_gaps", "gaps")
WALK_LAYERS = ("walking_areas", "service_areas")
SITE_LAYERS = ("sites", "proposed_sites", "new_sites")
REDRAW_LAYERS = ("redraw_grids", "proposed_grids", "grids_redrawn")
BEFORE_LAYERS = ("grids_before_redraw", "current_grids")
MOVED_COLUMNS = ("new_grid_code", "proposed_grid_code", "redraw_grid_code")


@dataclass
class MapOptions:
    """What to draw and how: tiles, title, the grid or member of a links map, names, sites, walking."""

    tiles: str = "osm"
    title: str | None = None
    grid: str | None = None
    member: str | None = None
    show_names: bool = False
    sites: int = 0
    walk: bool = False
    seed: int = 0
    at: datetime | None = None


def _first(layers: dict, names) -> gpd.GeoDataFrame | None:
    for n in names:
        g = layers.get(n)
        if g is not None and len(g):
            return g
    return None


def _need(layers: dict, name: str, kind: str) -> gpd.GeoDataFrame:
    from maps.base import MapError

    g = layers.get(name)
    if g is None or len(g) == 0:
        raise MapError(f"the {kind} map needs a {name} layer")
    return g


def _links_table(layers: dict) -> pd.DataFrame | None:
    lk = layers.get("links")
    if lk is None or len(lk) == 0:
        return None
    cols = [c for c in ("household_id", "member_id", "distance_m", "visit_order") if c in lk.columns]
    return pd.DataFrame(lk[cols]).reset_index(drop=True)


def grid_status_of(layers: dict) -> gpd.GeoDataFrame:
    """Per-grid status for the coverage map: given (``blank_reason`` present) or computed with
    :func:`gridmap.coverage.grid_status` from households, members and links."""
    from gridmap import census, coverage

    given = layers.get("grid_status")
    if given is not None and len(given) and "blank_reason" in given.columns:
        return given
    grids = _need(layers, "grids", "coverage")
    if {"households", "status", "blank_reason"} <= set(grids.columns):
        return grids
    hh = layers.get("households")
    base = grids.drop(columns=[c for c in ("households", "members", "band_min", "band_max", "status")
                               if c in grids.columns])
    if hh is None:
        if {"households", "status"} <= set(grids.columns):
            return grids
        empty = gpd.GeoDataFrame({"grid_code": []}, geometry=[], crs="EPSG:4326")
        return census.grid_counts(base, empty, layers.get("members"))
    return coverage.grid_status(base, hh, layers.get("members"), links=_links_table(layers))


def _py_time(v):
    if v is None or v is pd.NaT or (isinstance(v, float) and np.isnan(v)):
        return None
    try:
        t = pd.Timestamp(v)
    except (ValueError, TypeError):
        return None
    return None if pd.isna(t) else t.to_pydatetime()


def incident_lights(incidents: gpd.GeoDataFrame, at: datetime | None = None) -> gpd.GeoDataFrame:
    """Incidents with a ``light`` column (红黄绿灯) from the dispatch rules (:mod:`gridmap.dispatch`).

    The deadline is ``deadline_at`` where given, else 24 h for ordinary and 3 working days for
    complex incidents (``dispatch.deadline``). Open incidents are judged at ``at`` (default now,
    China Standard Time); closed ones at ``closed_at`` when known, else they get ``closed``
    (已办结) since their light can no longer be told. A light already present is kept.
    """
    from gridmap import dispatch

    if any(c in incidents.columns for c in ("light", "traffic_light", "lamp")) or len(incidents) == 0:
        return incidents
    at = at or datetime.now(dispatch.LOCAL_TZ)
    out = incidents.copy()
    n = len(out)
    col = lambda c: out[c].tolist() if c in out.columns else [None] * n  # noqa: E731
    reported = [_py_time(v) for v in col("reported_at")]
    given = [_py_time(v) for v in col("deadline_at")]
    closed_at = [_py_time(v) for v in col("closed_at")]
    deadlines, states = [], []
    for r, d, cat, lvl, st in zip(reported, given, col("category"), col("level"), col("status")):
        try:
            states.append(dispatch.normalise_status(st if isinstance(st, str) else None))
        except ValueError:
            states.append(dispatch.REPORTED)
        if d is None and r is not None:
            level = None if lvl is None or pd.isna(lvl) else int(lvl)
            d = dispatch.deadline(r, dispatch.response_kind(cat if isinstance(cat, str) else None, level))
        deadlines.append(d)
    lights = []
    for r, d, c, st in zip(reported, deadlines, closed_at, states):
        if r is None or d is None:
            lights.append(None)
        elif st in (dispatch.CLOSED, dispatch.RATED) and c is None:
            lights.append("closed")
        else:
            lights.append(dispatch.light(r, d, at, c))
    out["light"] = np.asarray(lights, dtype=object)
    if "deadline_at" not in out.columns:
        out["deadline_at"] = deadlines
    return out


def build_map(kind: str, layers: dict, options: MapOptions | None = None):
    """Build the ``kind`` map (``coverage|service|links|incidents|redraw``) from ``layers`` (WGS84).

    Returns a folium Map (a branca Figure for ``redraw``); raises :class:`maps.base.MapError`
    when a layer it needs is missing.
    """
    from maps.base import MapError

    o = options or MapOptions()
    if kind not in MAP_KINDS:
        raise MapError(f"unknown map {kind!r}: use one of {', '.join(MAP_KINDS)}")
    communities, streets = layers.get("communities"), layers.get("streets")
    if kind == "coverage":
        from maps.coverage import coverage_map

        unlinked = layers.get("unlinked_households")
        return coverage_map(grid_status_of(layers), communities=communities, streets=streets, unlinked=unlinked,
                            tiles=o.tiles, title=o.title)
    if kind == "service":
        return _service(layers, o)
    if kind == "links":
        from maps.links import links_map

        hh = _need(layers, "households", "links")
        mm = _need(layers, "members", "links")
        links = _links_table(layers)
        if links is None:
            from gridmap.linkage import link_households

            links = link_households(hh, mm, grids=layers.get("grids")).links
        return links_map(links, hh, mm, grid_code=o.grid, member_id=o.member, grids=layers.get("grids"),
                         tiles=o.tiles, title=o.title, show_names=o.show_names)
    if kind == "incidents":
        from maps.incidents import incident_map

        inc = incident_lights(_need(layers, "incidents", "incidents"), o.at)
        return incident_map(inc, grids=layers.get("grids"), communities=communities, streets=streets,
                            tiles=o.tiles, title=o.title)
    return _redraw(layers, o)


def _service(layers: dict, o: MapOptions):
    from gridmap import coverage
    from maps.service import service_map

    centres = _need(layers, "service_centres", "service")
    hh = layers.get("households")
    gaps = _first(layers, GAP_LAYERS)
    covered = None
    pct = walk_pct = None
    status = layers.get("grid_status")
    if status is not None and len(status) and status["households"].sum() > 0:
        total = float(status["households"].sum())
        if "covered_straight" in status.columns:
            pct = 100.0 * float(status["covered_straight"].sum()) / total
        if "covered_walk" in status.columns:
            walk_pct = 100.0 * float(status["covered_walk"].sum()) / total
    if hh is not None and len(hh) and (gaps is None or pct is None or o.sites > 0):
        straight = coverage.straight_line_coverage(hh, centres)
        covered = straight["covered"].to_numpy()
        pct = 100.0 * float(covered.mean())
        if gaps is None:
            gaps = coverage.gap_cells(hh, ~covered)
    walking = _first(layers, WALK_LAYERS)
    if walking is not None and "basis" in walking.columns:
        walking = walking[walking["basis"] == "walking"]
    if walking is None and o.walk and layers.get("roads") is not None:
        from gridmap.walknet import WALK_LIMIT_M, build_walk_network

        net = build_walk_network(layers["roads"])
        walking = coverage.walking_areas(centres, net, WALK_LIMIT_M)
        if hh is not None and len(hh):
            walk_pct = 100.0 * float(coverage.walking_coverage(hh, centres, net, WALK_LIMIT_M)["covered_walk"].mean())
    sites = _first(layers, SITE_LAYERS)
    if sites is None and o.sites > 0 and hh is not None and len(hh):
        from gridmap.siting import choose_sites

        cands = layers.get("candidates")
        if cands is None or len(cands) == 0:
            grids = _need(layers, "grids", "service (candidate sites)")
            cands = gpd.GeoDataFrame({"site_id": grids["grid_code"].astype(str).to_numpy()},
                                     geometry=grids.geometry.representative_point().values, crs="EPSG:4326")
        sites, _ = choose_sites(cands, hh, o.sites, covered=covered)
    return service_map(centres, gap_cells=gaps, walking_areas=walking, sites=sites, grids=layers.get("grids"),
                       communities=layers.get("communities"), streets=layers.get("streets"), coverage_pct=pct,
                       walk_coverage_pct=walk_pct, tiles=o.tiles, title=o.title)


def _redraw(layers: dict, o: MapOptions):
    from gridmap import census
    from maps.redraw import redraw_map

    before = _first(layers, BEFORE_LAYERS)
    grids = before if before is not None else _need(layers, "grids", "redraw")
    hh = layers.get("households")
    proposed = _first(layers, REDRAW_LAYERS)
    new_codes = None
    if hh is not None:
        col = next((c for c in MOVED_COLUMNS if c in hh.columns), None)
        if col is not None:
            new_codes = hh[col]
        elif "previous_grid_code" in hh.columns and proposed is not None:
            # the plan's redraw step re-files households: grid_code is new, previous_grid_code today's
            new_codes = hh["grid_code"]
            hh = hh.assign(grid_code=hh["previous_grid_code"])
    if proposed is None:
        from gridmap.districting import redraw

        communities = _need(layers, "communities", "redraw")
        result = redraw(communities, hh, current=grids, buildings=layers.get("buildings"), seed=o.seed)
        proposed, new_codes = result.grids, result.households
    current = grids
    if hh is not None and "households" not in grids.columns:
        hh_in = census.assign_grid_codes(hh, grids)
        current = census.grid_counts(grids, hh_in)
    moved = None
    if hh is not None and new_codes is not None and "grid_code" in hh.columns:
        old = hh["grid_code"].astype(object)
        new = pd.Series(np.asarray(new_codes, dtype=object), index=hh.index)
        mask = new.notna() & (old.astype(str) != new.astype(str))
        moved = hh[mask].assign(from_grid=old[mask], to_grid=new[mask])[
            ["household_id", "from_grid", "to_grid", "geometry"]]
    return redraw_map(current, proposed, moved=moved, communities=layers.get("communities"),
                      streets=layers.get("streets"), tiles=o.tiles, title=o.title)


# --- the command ------------------------------------------------------------------------------

def map_command(
    kind: str = typer.Argument(..., help="coverage | service | links | incidents | redraw"),
    scenario: Path = typer.Argument(..., help="Scenario folder or GeoPackage (also a plan's plan.gpkg)."),
    out: Path = typer.Option(Path("map.html"), "--out", "-o", help="HTML file to write."),
    tiles: str = typer.Option("osm", "--tiles", help="Base tiles: osm | amap (GCJ-02 shifted) | tianditu "
                                                     "(GRIDMAP_TIANDITU_KEY) | none (offline)."),
    png: Path = typer.Option(None, "--png", help="Also write a PNG screenshot (headless Chromium)."),
    title: str = typer.Option(None, "--title", help="Map title (default per map kind)."),
    grid: str = typer.Option(None, "--grid", help="links: the grid to show."),
    member: str = typer.Option(None, "--member", help="links: one member's own households only."),
    names: bool = typer.Option(False, "--names", help="links: show residents' names unmasked (personal data)."),
    incidents: Path = typer.Option(None, "--incidents", help="incidents: an incidents layer file (else the scenario's)."),
    sites: int = typer.Option(0, "--sites", help="service: propose this many new sites (MCLP)."),
    walk: bool = typer.Option(False, "--walk", help="service: walking areas along the scenario's roads."),
    coords: str = typer.Option("wgs84", "--coords", help=COORDS_HELP),
    seed: int = typer.Option(0, "--seed", help="redraw: random seed of the districting."),
    at: str = typer.Option(None, "--at", help="incidents: judge 红黄绿灯 at this time (ISO 8601, CST if no zone; "
                                               "default now)."),
):
    """Draw a map as one HTML page (and optionally a PNG) from a scenario or a plan's output."""
    from geodata.scenario import load_scenario
    from maps.base import MapError, check_tiles, save_html

    kind = kind.strip().lower()
    if kind not in MAP_KINDS:
        fail(f"unknown map {kind!r}: use one of {', '.join(MAP_KINDS)}")
    try:
        tiles = check_tiles(tiles)
    except MapError as e:
        fail(str(e))
    if sites < 0:
        fail("--sites must be 0 or more")
    notes: list[str] = []
    layers = load_scenario(scenario, coords=coords, notes=notes)
    if incidents is not None:
        from api.commands.common import read

        layers["incidents"] = read(incidents, "incidents", coords=coords, make_ids=True)
    for n in notes:
        console.print(f"[yellow]note[/] {n}", markup=True)
    when = None
    if at is not None:
        try:
            when = datetime.fromisoformat(at)
        except ValueError:
            fail(f"--at {at!r} is not an ISO 8601 time (e.g. 2024-05-01T09:00)")
    opts = MapOptions(tiles=tiles, title=title, grid=grid, member=member, show_names=names, sites=sites, walk=walk,
                      seed=seed, at=when)
    try:
        with console.status(f"drawing the {kind} map"):
            m = build_map(kind, layers, opts)
    except MapError as e:
        fail(str(e))
    path = save_html(m, out)
    console.print(f"wrote [bold]{path}[/] ({path.stat().st_size / 1e6:.2f} MB)", markup=True)
    if png is not None:
        from maps.render import BrowserError, render_png

        try:
            report = render_png(path, png)
        except BrowserError as e:
            fail(str(e))
        console.print(f"wrote [bold]{png}[/] (drawn in {report.drawn_ms / 1000:.2f} s)", markup=True)


# --- the plan step ----------------------------------------------------------------------------

def step_maps(ctx) -> None:
    """Plan step (runs last): write ``OUTDIR/maps/<kind>.html`` from every layer the plan holds.

    Engine outputs (``ctx.layers_out``) override input layers of the same name, so the maps show the
    plan's results. A map whose layers are missing is skipped with a note. Tiles come from
    ``options.extra["map_tiles"]`` (default ``osm``). No names or phone numbers go into plan maps.
    """
    from maps.base import MapError, save_html
    from maps.links import MAX_HOUSEHOLDS

    if not getattr(ctx.options, "maps", True):
        return
    extra = getattr(ctx.options, "extra", {}) or {}
    layers = {**ctx.layers, **ctx.layers_out}
    for k in ("households", "members"):  # plan maps never carry personal data
        if layers.get(k) is not None:
            layers[k] = layers[k].drop(columns=[c for c in ("name", "phone", "id_number") if c in layers[k].columns])
    opts = MapOptions(tiles=extra.get("map_tiles", "osm"), seed=getattr(ctx.options, "seed", 0))
    kinds = ["coverage"]
    if layers.get("service_centres") is not None and len(layers["service_centres"]):
        kinds.append("service")
    if layers.get("incidents") is not None and len(layers["incidents"]):
        kinds.append("incidents")
    hh = layers.get("households")
    if layers.get("links") is not None and hh is not None and len(hh) <= MAX_HOUSEHOLDS:
        kinds.append("links")
    if _first(ctx.layers_out, REDRAW_LAYERS) is not None:
        if _first(layers, BEFORE_LAYERS) is not None:
            kinds.append("redraw")
        else:
            ctx.notes.append("maps: redraw map skipped (today's grids were not kept as grids_before_redraw)")
    outdir = Path(ctx.outdir) / "maps"
    written = []
    for kind in kinds:
        try:
            m = build_map(kind, layers, opts)
        except MapError as e:
            ctx.notes.append(f"maps: {kind} map skipped ({e})")
            continue
        path = save_html(m, outdir / f"{kind}.html")
        ctx.files.append(str(path))
        written.append(kind)
    ctx.summary["maps"] = {"dir": str(outdir), "written": written, "tiles": opts.tiles}
