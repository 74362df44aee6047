"""Use case: redraw grids (网格划分) inside the plan, before the census counts them."""

from __future__ import annotations

#: Columns written for each redrawn grid, in order.
OUT_COLUMNS = ["grid_code", "community_code", "households", "kind", "in_band", "polsby_popper", "moved", "status",
               "geometry"]


def _refile_households(layers: dict, new_codes) -> None:
    """Households under their new grid codes (today's kept as ``previous_grid_code``); members re-located later."""
    households = layers["households"].copy()
    if "grid_code" in households.columns:
        households["previous_grid_code"] = households["grid_code"]
    households["grid_code"] = new_codes.reindex(households.index)
    layers["households"] = households
    if "members" in layers and "grid_code" in layers["members"].columns:
        members = layers["members"].copy()
        members["grid_code"] = None  # re-located in the new grids by the census step
        layers["members"] = members


def step_redraw(ctx) -> None:
    """Plan step (only with ``options.redraw``): new grids replace today's before the census runs.

    Needs a ``communities`` layer; uses ``grids`` (minimal change), ``buildings`` and ``barriers``
    when the scenario has them. Writes layers ``redraw_grids`` (and today's ``grids_before_redraw``)
    and ``summary['redraw']``; households are re-filed under the new grid codes (today's code kept
    in ``previous_grid_code``) and members re-located by the census step.
    """
    if not getattr(ctx.options, "redraw", False):
        return
    from gridmap.districting import redraw

    layers = ctx.layers
    if "communities" not in layers or "households" not in layers:
        ctx.notes.append("--redraw needs communities and households layers; grids were not redrawn")
        return
    current = layers.get("grids")
    has_current = current is not None and len(current) > 0
    result = redraw(layers["communities"], layers["households"], current=current if has_current else None,
                    buildings=layers.get("buildings"), barriers=layers.get("barriers"),
                    seed=getattr(ctx.options, "seed", 0))
    ctx.layers_out["redraw_grids"] = result.grids[OUT_COLUMNS]
    if has_current:
        ctx.layers_out["grids_before_redraw"] = current  # for the before/after map (maps.redraw)
    grids = result.grids[["grid_code", "community_code", "kind", "geometry"]].copy()
    if current is not None and "has_branch" in current.columns:
        # Branch status is known only for grids that keep their code.
        grids["has_branch"] = grids["grid_code"].map(dict(zip(current["grid_code"], current["has_branch"])))
    layers["grids"] = grids
    _refile_households(layers, result.households)
    ctx.summary["redraw"] = {**result.summary, "issues": [
        f"{i['kind']}: {i['community_code'] or ''} {i['message']}".strip() for i in result.issues]}
    ctx.notes.append(f"grids redrawn: {result.summary['grids']} grids, {result.summary['in_band_pct']:.1f}% in band, "
                     f"{result.summary['moved']} households moved")
