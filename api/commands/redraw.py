"""``gridmap redraw``: redraw grids (网格划分) to 300–500 households (urban) / 100–200 (rural).

The plan step ``step_redraw`` (``gridmap plan --redraw``) lives in :mod:`api.usecases.redraw`.
"""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import typer
from rich.table import Table

from api.commands.common import COORDS_HELP, console, fail, read
from api.usecases.redraw import OUT_COLUMNS



def read_lines(path: Path, coords: str) -> gpd.GeoDataFrame:
    """A plain vector layer (buildings, barriers) in WGS84; ``coords`` shifts GCJ-02/BD-09 input."""
    import pyogrio

    from geodata.crs import geodataframe_to_wgs84
    from geodata.errors import InputError, Problem

    try:
        gdf = pyogrio.read_dataframe(path)
    except Exception as e:  # unreadable file: an input error with its name, not a traceback
        raise InputError([Problem(f"cannot read layer: {e}", source=str(path))]) from None
    if gdf.crs is not None and not gdf.crs.equals("EPSG:4326"):
        gdf = gdf.to_crs("EPSG:4326")
    return geodataframe_to_wgs84(gdf, coords) if coords != "wgs84" else gdf.set_crs("EPSG:4326", allow_override=True)


def summary_table(result) -> Table:
    """Headline figures of a redraw (no personal data)."""
    s = result.summary
    t = Table(title="gridmap redraw", show_header=False)
    t.add_column("figure")
    t.add_column("value", justify="right")
    t.add_row("grids", f"{s['grids']:,}")
    t.add_row("in band", f"{s['in_band_pct']:.1f}%")
    t.add_row("mean Polsby-Popper", f"{s['mean_polsby_popper']:.3f}")
    t.add_row("households", f"{s['households']:,}")
    t.add_row("households moved", f"{s['moved']:,}")
    t.add_row("grids kept as they are", f"{s['kept']:,}")
    if s["infeasible_communities"]:
        t.add_row("communities that cannot be in band", ", ".join(s["infeasible_communities"]))
    return t


def moved_table(grids: gpd.GeoDataFrame, limit: int = 30) -> Table:
    """Grids that received households from other grids, most first."""
    t = Table(title="households moved, per grid", show_header=True, header_style="bold")
    for col in ("grid", "community", "status", "households", "moved in"):
        t.add_column(col, justify="right" if col in ("households", "moved in") else "left")
    rows = grids[grids["moved"] > 0].sort_values(["moved", "grid_code"], ascending=[False, True])
    for r in rows.head(limit).itertuples():
        t.add_row(r.grid_code, r.community_code, r.status, f"{r.households:,}", f"{r.moved:,}")
    if len(rows) > limit:
        t.add_row("…", f"{len(rows) - limit} more", "", "", "")
    return t


def redraw_command(
    households: Path = typer.Option(..., "--households", help="Household points (one per household)."),
    boundaries: Path = typer.Option(..., "--boundaries", help="Community (社区) polygons with `code` (and optional `kind`)."),
    out: Path = typer.Option(..., "--out", help="Output grids (GeoJSON, GeoPackage, Shapefile)."),
    grids: Path | None = typer.Option(None, "--grids", help="Today's grids: in-band grids are kept, the rest redrawn."),
    buildings: Path | None = typer.Option(None, "--buildings", help="Building footprints: grids are built from whole buildings."),
    barriers: list[Path] = typer.Option([], "--barriers",
                                        help="Rivers, arterial roads (lines) grids should not straddle; repeatable."),
    min_households: int | None = typer.Option(None, "--min", help="Band minimum (default by kind: urban 300, rural 100)."),
    max_households: int | None = typer.Option(None, "--max", help="Band maximum (default by kind: urban 500, rural 200)."),
    kind: str = typer.Option("urban", "--kind", help="Kind of communities without a `kind` value: urban or rural."),
    fresh: bool = typer.Option(False, "--fresh", help="Redraw everything, even grids already in band."),
    release: bool = typer.Option(False, "--release", help="Let in-band grids next to an infeasible leftover be redrawn too."),
    seed: int = typer.Option(0, "--seed", help="Random seed; the same seed gives the same grids."),
    coords: str = typer.Option("wgs84", "--coords", help=COORDS_HELP),
    commit: bool = typer.Option(False, "--commit", help="Also write the new grids to the database (one transaction)."),
    database_url: str | None = typer.Option(None, "--database-url", envvar="GRIDMAP_DATABASE_URL",
                                            help="Database for --commit."),
    allow_out_of_band: bool = typer.Option(False, "--allow-out-of-band", help="--commit even if grids are out of band."),
    allow_noncontiguous: bool = typer.Option(False, "--allow-noncontiguous", help="--commit even if a grid is in pieces."),
) -> None:
    """Redraw grids so each holds a household count in band, contiguous and compact; print what moved.

    With ``--commit`` the result replaces the stored grids of these communities (households and
    members re-filed by location, names of kept grids kept, audited); refused if any of those grids
    changed in the database while the redraw was computed.
    """
    from gridmap.contract import grid_band
    from gridmap.districting import redraw
    from geodata.io import write_layer

    if kind.strip().lower() not in ("urban", "rural"):
        fail(f"--kind must be urban or rural, not {kind!r}")
    band = None
    if min_households is not None or max_households is not None:
        lo, hi = grid_band(kind)
        band = (min_households if min_households is not None else lo, max_households if max_households is not None else hi)
        if not 0 < band[0] <= band[1]:
            fail(f"the band must satisfy 0 < min ≤ max, got {band[0]}–{band[1]}")
    hh = read(households, "households", coords=coords)
    comm = read(boundaries, "communities", coords=coords, fix=True)
    current = read(grids, "grids", coords=coords, fix=True) if grids else None
    bld = read_lines(buildings, coords) if buildings else None
    bar = [read_lines(p, coords) for p in barriers] or None
    engine = versions = None
    if commit:
        from geodata.store.grids import scope_versions
        from geodata.store.session import make_engine

        engine = make_engine(database_url)
        versions = scope_versions(engine, comm["code"].astype(str).unique())  # what this redraw is computed on
    with console.status("redrawing grids"):
        result = redraw(comm, hh, current=current, buildings=bld, barriers=bar, band=band, kind=kind.strip().lower(),
                        minimal_change=not fresh, release_kept=release, seed=seed)
    write_layer(result.grids[OUT_COLUMNS], out)
    console.print(summary_table(result))
    if current is not None:
        console.print(moved_table(result.grids))
    for issue in result.issues[:20]:
        where = f"{issue['community_code']}: " if issue["community_code"] else ""
        console.print(f"[yellow]{issue['kind']}[/] {where}{issue['message']}", markup=True)
    if len(result.issues) > 20:
        console.print(f"[yellow]… {len(result.issues) - 20} more notes[/]", markup=True)
    console.print(f"wrote {len(result.grids)} grids to {out}")
    if commit:
        commit_to_store(engine, result.grids, versions, allow_out_of_band, allow_noncontiguous)


def commit_to_store(engine, grids: gpd.GeoDataFrame, versions: dict, allow_out_of_band: bool,
                    allow_noncontiguous: bool) -> None:
    """``--commit``: write a redraw result with ``geodata.store.grids.commit_redraw``; refusals exit 2."""
    from geodata.store import grids as store

    try:
        done = store.commit_redraw(engine, grids[["grid_code", "community_code", "kind", "geometry"]], versions=versions,
                                   allow_out_of_band=allow_out_of_band, allow_noncontiguous=allow_noncontiguous,
                                   actor=store.Actor(role="cli"))
    except (store.EditRefused, store.EditInvalid, store.UnknownGrid) as e:
        fail(f"not committed: {getattr(e, 'message', None) or e}")
    console.print(f"committed: {len(done.kept)} grids kept, {len(done.added)} added ({', '.join(done.added[:10])}), "
                  f"{len(done.removed)} removed; {done.households_moved:,} households and {done.members_moved:,} "
                  f"members re-filed, {done.households_without_grid:,} households more than 50 m from every grid")


__all__ = ["redraw_command", "commit_to_store", "OUT_COLUMNS"]
