"""Use case: 包片联户 (link every household to one party member, 5–10 each) — its layer and figures."""

from __future__ import annotations

import geopandas as gpd
from shapely.geometry import LineString

#: Columns of the ``links`` layer besides the geometry, in order.
LINK_LAYER_COLUMNS = ["household_id", "member_id", "distance_m", "visit_order", "grid_code", "member_grid_code",
                      "cross_grid"]

#: Figures of a linkage summary the plan keeps in ``summary.json``.
PLAN_FIGURES = ("households", "linked", "unlinked", "linked_pct", "unlinked_by_reason", "members_available",
                "members_in_band", "members_below_min", "members_idle", "total_distance_m", "mean_distance_m",
                "cross_grid_links", "grids_short", "members_needed")


def summary_rows(result) -> list[tuple[str, str]]:
    """Headline figures of a linkage result as ``(label, value)`` rows (no personal data)."""
    s = result.summary
    rows = [
        ("households linked", f"{s['linked']:,} / {s['households']:,} ({s['linked_pct']:.1f}%)"),
        ("members in band", f"{s['members_in_band']:,} / {s['members_available']:,}"),
        ("members below minimum", f"{s['members_below_min']:,}"),
        ("total distance", f"{s['total_distance_m'] / 1000:,.1f} km (mean {s['mean_distance_m']:.0f} m)"),
    ]
    for reason, count in s.get("unlinked_by_reason", {}).items():
        rows.append((f"  unlinked: {reason}", f"{count:,}"))
    if s.get("cross_grid_links"):
        rows.append(("cross-grid links", f"{s['cross_grid_links']:,}"))
    rows.append(("grids short of members", f"{s['grids_short']:,} (members needed {s['members_needed']:,})"))
    if "changes" in s:
        c = s["changes"]
        rows.append(("links changed vs previous", f"{s['links_changed']:,} (kept {c['kept']:,}, reassigned "
                                                  f"{c['reassigned']:,}, dropped {c['dropped']:,}, added {c['added']:,})"))
    return rows


def links_layer(result, households: gpd.GeoDataFrame, members: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """The ``links`` layer: one line per link, member home → household (WGS84), with distance (m) and order."""
    links = result.links
    hpt = households.drop_duplicates("household_id").set_index(households["household_id"].astype(str).drop_duplicates())
    mpt = members.drop_duplicates("member_id").set_index(members["member_id"].astype(str).drop_duplicates())
    hg = hpt.geometry.reindex(links["household_id"].astype(str)).to_numpy()
    mg = mpt.geometry.reindex(links["member_id"].astype(str)).to_numpy()
    lines = [LineString([(a.x, a.y), (b.x, b.y)]) for a, b in zip(mg, hg)]
    return gpd.GeoDataFrame(links[LINK_LAYER_COLUMNS].reset_index(drop=True), geometry=lines, crs="EPSG:4326")


def _previous_links(ctx):
    """Last run's links in the scenario (kept stable), or None with a note when unusable."""
    previous = ctx.layers.get("links")
    if previous is not None and not {"household_id", "member_id"} <= set(previous.columns):
        ctx.notes.append("links: the scenario's links layer has no household_id/member_id columns; ignored")
        return None
    return previous


def _plan_figures(result) -> dict:
    """The linkage figures of ``summary.json``, with the shortage per grid."""
    s = result.summary
    figures = {k: s[k] for k in PLAN_FIGURES}
    if "links_changed" in s:
        figures["links_changed"] = s["links_changed"]
    short = result.grids[result.grids["unlinked"] > 0]
    figures["shortage_by_grid"] = {str(r.grid_code): {"unlinked": int(r.unlinked), "members_needed": int(r.members_needed)}
                                   for r in short.itertuples()}
    return figures


def step_links(ctx) -> None:
    """Plan step: 包片联户 with the policy defaults; adds the ``links`` layer and summary figures."""
    from gridmap.linkage import link_households

    households = ctx.layers.get("households")
    members = ctx.layers.get("members")
    if households is None or members is None or len(members) == 0:
        ctx.notes.append("links: no members layer, 包片联户 skipped")
        return
    extra = getattr(ctx.options, "extra", {}) or {}
    result = link_households(households, members, grids=ctx.layers.get("grids"), previous=_previous_links(ctx),
                             max_distance_m=extra.get("link_max_distance_m"),
                             allow_cross_grid=bool(extra.get("link_allow_cross_grid", False)))
    ctx.layers_out["links"] = links_layer(result, households, members)
    ctx.summary["links"] = _plan_figures(result)
    ctx.summary.setdefault("table", {})["links"] = [(f"links: {label}", value) for label, value in summary_rows(result)]


def recompute_region(engine, principal, region: str, **params):
    """Re-link ``region``'s households and make the run current (``geodata.store.links.recompute``,
    ``params`` as it takes them: ``min_links``, ``max_distance_m`` in metres …), audited as
    ``links_recompute`` (what ``link_runs``, the run id) in the run's transaction.

    Returns ``(SavedRun, LinkResult)``; ``SavedRun`` is None, and nothing is written, when the region
    has no households.
    """
    from api.usecases.audit import audited, staff
    from geodata.store import links as store

    with audited(engine, staff(principal), "links_recompute", "link_runs") as (tx, entry):
        saved, result = store.recompute(tx, region, **params)
        if saved is None:
            entry.nothing_written()
        else:
            entry.ids = [saved.run_id]
            entry.detail = {"region": region, "links": int(len(result.links))}
    return saved, result
