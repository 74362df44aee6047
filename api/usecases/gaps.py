"""Use case: coverage gaps — blank grids (空白网格), unlinked households, the 15-minute service circle."""

from __future__ import annotations

import geopandas as gpd
import pandas as pd

#: The layers a gaps run writes, in order.
LAYER_NAMES = ("grid_status", "unlinked_households", "service_areas", "gap_cells")


def layer_for_gpkg(gdf: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """Layer fit for a GeoPackage: list/dict cells become text (lists joined with ``, ``)."""
    out = gdf.copy()
    for c in out.columns:
        if c != out.geometry.name and out[c].dtype == object:
            if out[c].map(lambda v: isinstance(v, (list, dict, set, tuple))).any():
                out[c] = out[c].map(lambda v: ", ".join(map(str, v)) if isinstance(v, (list, tuple, set)) else v)
    return out


def links_from_layer(layer) -> pd.DataFrame | None:
    """``household_id``, ``member_id`` (and ``distance_m``, metres) of a links layer, ids as text; None if unusable."""
    if layer is None or len(layer) == 0 or "household_id" not in layer.columns or "member_id" not in layer.columns:
        return None
    cols = ["household_id", "member_id"] + (["distance_m"] if "distance_m" in layer.columns else [])
    return pd.DataFrame(layer[cols]).astype({"household_id": str, "member_id": str})


def summary_rows(summary: dict) -> list[tuple[str, str]]:
    """Headline figures of a gaps summary as ``(label, value)`` rows (no personal data)."""
    rows = [("grids", f"{summary['grids']:,}"), ("blank grids (空白网格)", f"{summary['blank_grids']:,}")]
    for reason, n in summary["blank_by_reason"].items():
        rows.append((f"  {reason}", f"{n:,}"))
    if summary["linked_pct"] is not None:
        rows.append(("households linked", f"{summary['linked_households']:,} / {summary['households']:,} "
                                          f"({summary['linked_pct']:.1f}%)"))
    for reason, n in summary.get("unlinked_by_reason", {}).items():
        rows.append((f"  unlinked: {reason}", f"{n:,}"))
    rows.append(("members needed", f"{summary['members_needed']:,}"))
    if "within_straight_pct" in summary:
        rows.append(("within straight-line circle", f"{summary['within_straight_pct']:.1f}%"))
    if "within_walk_pct" in summary:
        rows.append(("within walking circle", f"{summary['within_walk_pct']:.1f}%"))
    if summary.get("gap_basis"):
        rows.append((f"gap cells ({summary['gap_basis']})",
                     f"{summary['gap_cells']:,} in {summary['gap_areas']:,} areas, "
                     f"{summary['households_outside_circle']:,} households"))
    return rows


def step_gaps(ctx) -> None:
    """Plan step: coverage gaps with the policy defaults; adds the four gap layers and the figures.

    Uses the ``links`` layer written by the linkage step when present, the scenario's
    ``service_centres`` and (for the walking circle, metres along ``roads``) its roads.
    """
    from gridmap.coverage import coverage_gaps

    grids = ctx.layers.get("grids")
    households = ctx.layers.get("households")
    if grids is None or households is None:
        ctx.notes.append("gaps: no grids or households, coverage skipped")
        return
    extra = getattr(ctx.options, "extra", {}) or {}
    links = links_from_layer(ctx.layers_out.get("links"))
    layers, summary = coverage_gaps(grids, households, ctx.layers.get("members"), links,
                                    ctx.layers.get("service_centres"),
                                    radius_m=extra.get("service_radius_m"), roads=ctx.layers.get("roads"),
                                    walk_limit_m=extra.get("walk_limit_m"),
                                    max_link_distance_m=extra.get("link_max_distance_m"))
    for name in LAYER_NAMES:
        ctx.layers_out[name] = layer_for_gpkg(layers[name])
    summary["links_source"] = "links layer" if links is not None else "estimated"
    ctx.summary["gaps"] = summary
    ctx.summary.setdefault("table", {})["gaps"] = [(f"gaps: {label}", value) for label, value in summary_rows(summary)]
