"""Use case: draw a map — coverage, service, links, incidents or redraw — from layers, files or the store.

:func:`build_map` is shared by ``gridmap map``, the plan step :func:`step_maps` (writes
``OUTDIR/maps/*.html``), ``GET /maps/{kind}`` (through :func:`region_map`) and the web pages. It
takes a dict of WGS84 layers (input layers and/or engine outputs) and, for file faces, computes with
the engines whatever a map needs that is not there yet. A map of the store (:func:`region_map`)
draws only what is saved: no engine runs to answer a read.

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

from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd

from maps.base import MapError

MAP_KINDS = ("coverage", "service", "links", "incidents", "redraw")
GAP_LAYERS = ("gap_cells", "service_gaps", "gaps")
WALK_LAYERS = ("walking_areas", "service_areas")
SITE_LAYERS = ("sites", "proposed_sites", "new_sites")
REDRAW_LAYERS = ("redraw_grids", "proposed_grids", "grids_redrawn")
BEFORE_LAYERS = ("grids_before_redraw", "current_grids")
MOVED_COLUMNS = ("new_grid_code", "proposed_grid_code", "redraw_grid_code")


@dataclass
class MapOptions:
    """What to draw and how: tiles, title, the grid or member of a links map, names, sites, walking.

    ``tianditu_key`` is the Tianditu browser key (from the settings); ``compute_links`` lets a links
    map run 包片联户 when the layers hold no links (files only: a map of the store never does).
    """

    tiles: str = "osm"
    title: str | None = None
    grid: str | None = None
    member: str | None = None
    show_names: bool = False
    sites: int = 0
    walk: bool = False
    seed: int = 0
    at: datetime | None = None
    tianditu_key: str = ""
    compute_links: bool = True
    draft: dict | None = None  # redraw maps of the store: the saved draft drawn (api.usecases.drafts.open_draft)


def _first(layers: dict, names) -> gpd.GeoDataFrame | None:
    for n in names:
        g = layers.get(n)
        if g is not None and len(g):
            return g
    return None


def _need(layers: dict, name: str, kind: str) -> gpd.GeoDataFrame:
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
    o = options or MapOptions()
    if kind not in MAP_KINDS:
        raise MapError(f"unknown map {kind!r}: use one of {', '.join(MAP_KINDS)}")
    communities, streets = layers.get("communities"), layers.get("streets")
    if kind == "coverage":
        from maps.coverage import coverage_map

        unlinked = layers.get("unlinked_households")
        return coverage_map(grid_status_of(layers), communities=communities, streets=streets, unlinked=unlinked,
                            tiles=o.tiles, tianditu_key=o.tianditu_key, title=o.title)
    if kind == "service":
        return _service(layers, o)
    if kind == "links":
        return _links(layers, o)
    if kind == "incidents":
        from maps.incidents import incident_map

        inc = incident_lights(_need(layers, "incidents", "incidents"), o.at)
        return incident_map(inc, grids=layers.get("grids"), communities=communities, streets=streets,
                            tiles=o.tiles, tianditu_key=o.tianditu_key, title=o.title)
    return _redraw(layers, o)



class NoSavedLinks(MapError):
    """A links map of the store was asked for, but the region has no saved 包片联户 links."""

    def __init__(self) -> None:
        super().__init__("本区域没有已保存的包片联户结果，请先重新计算联户 / "
                         "no saved 包片联户 run for this region: recompute links first")


def _links(layers: dict, o: MapOptions):
    """The links map: saved links, or (files only, ``compute_links``) links computed now."""
    from maps.links import links_map

    hh = _need(layers, "households", "links")
    mm = _need(layers, "members", "links")
    links = _links_table(layers)
    if links is None and not o.compute_links:
        raise NoSavedLinks()
    if links is None:
        from gridmap.linkage import link_households

        links = link_households(hh, mm, grids=layers.get("grids")).links
    return links_map(links, hh, mm, grid_code=o.grid, member_id=o.member, grids=layers.get("grids"),
                     tiles=o.tiles, tianditu_key=o.tianditu_key, title=o.title, show_names=o.show_names)


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
                       walk_coverage_pct=walk_pct, tiles=o.tiles, tianditu_key=o.tianditu_key, title=o.title)


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
                      streets=layers.get("streets"), tiles=o.tiles, tianditu_key=o.tianditu_key, title=o.title)


def step_maps(ctx) -> None:
    """Plan step (runs last): write ``OUTDIR/maps/<kind>.html`` from every layer the plan holds.

    Engine outputs (``ctx.layers_out``) override input layers of the same name, so the maps show the
    plan's results. A map whose layers are missing is skipped with a note. Tiles come from
    ``options.extra["map_tiles"]`` (default ``osm``). No names or phone numbers go into plan maps.
    """
    from maps.base import save_html
    from maps.links import MAX_HOUSEHOLDS

    if not getattr(ctx.options, "maps", True):
        return
    extra = getattr(ctx.options, "extra", {}) or {}
    layers = {**ctx.layers, **ctx.layers_out}
    for k in ("households", "members"):  # plan maps never carry personal data
        if layers.get(k) is not None:
            layers[k] = layers[k].drop(columns=[c for c in ("name", "phone", "id_number") if c in layers[k].columns])
    opts = MapOptions(tiles=extra.get("map_tiles", "osm"), tianditu_key=extra.get("tianditu_key", ""),
                      seed=getattr(ctx.options, "seed", 0))
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


# --- maps of files and of the store -------------------------------------------------------------

@dataclass
class MapFiles:
    """What :func:`write_map` wrote: the HTML page, the PNG (or None) and the draw time in seconds."""

    html: Path
    png: Path | None = None
    drawn_s: float | None = None


def write_map(kind: str, layers: dict, options: MapOptions, out: Path, *, png: Path | None = None,
              chromium: str | None = None) -> MapFiles:
    """Draw the ``kind`` map of ``layers`` (WGS84) to the HTML file ``out`` and, if asked, a PNG.

    ``chromium`` is the path of the Chromium binary for the PNG (None: ``chromium`` on PATH).
    Raises :class:`maps.base.MapError` (cannot draw) or :class:`maps.render.BrowserError`.
    """
    from maps.base import save_html

    path = save_html(build_map(kind, layers, options), out)
    if png is None:
        return MapFiles(html=path)
    from maps.render import render_png

    report = render_png(path, png, chromium=chromium)
    return MapFiles(html=path, png=Path(png), drawn_s=report.drawn_ms / 1000)


#: Roles allowed per map kind (``admin`` always is).
MAP_ROLES = {
    "coverage": ("leader", "planner", "dispatcher", "responder", "viewer"),
    "service": ("leader", "planner", "dispatcher", "responder", "viewer"),
    "incidents": ("leader", "planner", "dispatcher", "responder"),
    "links": ("leader", "dispatcher", "responder"),
    "redraw": ("leader", "planner"),
}

#: Layers read from the store per map kind.
REGION_LAYERS = {
    "coverage": ("grids", "communities", "streets", "households", "members", "links"),
    "service": ("grids", "communities", "streets", "households", "service_centres"),
    "incidents": ("grids", "communities", "streets", "incidents"),
    "links": ("grids", "households", "members", "links"),
    "redraw": ("grids", "communities", "streets", "households"),
}


class RegionNotFound(LookupError):
    """The region, or the member asked for, holds nothing in the store."""


@dataclass
class RegionMap:
    """A map page of one region and the households whose names it shows (for the audit log)."""

    html: str
    named_household_ids: list[str]


class NoSavedDraft(LookupError):
    """A redraw map of the store needs a saved draft: no districting engine runs inside a GET."""


def _with_draft(layers: dict, draft: dict | None) -> None:
    """Put a saved draft's grids and households' proposed grids into ``layers`` for the redraw map."""
    if draft is None:
        raise NoSavedDraft("a redraw map draws a saved draft: pass draft=<id> (drafts are saved on /planner/redraw)")
    layers["redraw_grids"] = draft["grids"]
    hh = layers.get("households")
    if hh is not None:
        layers["households"] = hh.assign(new_grid_code=hh["household_id"].map(draft["assignment"]))


def region_map(engine, kind: str, region: str, options: MapOptions) -> RegionMap:
    """The ``kind`` map of ``region`` (street, community or grid code) from the PostGIS store.

    Draws only what is saved: a links map of a region without saved links raises
    :class:`NoSavedLinks`, it never runs the linkage engine. ``options.member`` limits a links map
    to one member's households; ``options.show_names`` reads and shows their names (the caller
    checks the role and audits :attr:`RegionMap.named_household_ids`). Raises
    :class:`RegionNotFound` and :class:`maps.base.MapError`.
    """
    from geodata.store.maps import load_region
    from maps.base import page_html

    member = options.member if kind == "links" else None
    layers = load_region(engine, region, REGION_LAYERS[kind], with_names=options.show_names, member_id=member)
    if len(layers["grids"]) == 0:
        raise RegionNotFound(f"no grids in region {region}")
    if member is not None and len(layers["members"]) == 0:
        raise RegionNotFound(f"no member {member} in region {region}")
    if kind == "redraw":
        _with_draft(layers, options.draft)
    page = page_html(build_map(kind, layers, replace(options, compute_links=False)))
    hh = layers.get("households")
    named = [] if hh is None or "name" not in hh.columns else hh.loc[hh["name"].notna(), "household_id"].tolist()
    return RegionMap(html=page, named_household_ids=named)
