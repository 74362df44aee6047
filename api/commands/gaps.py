"""``gridmap gaps`` and ``gridmap sites``: blank grids, unlinked households, the 15-minute circle, new stations.

The plan step ``step_gaps`` and the figures shared with ``gridmap plan`` live in :mod:`api.usecases.gaps`.
"""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import pandas as pd
import typer
from rich.table import Table

from api.commands.common import COORDS_HELP, console, fail, figures_table, read
from api.usecases.gaps import LAYER_NAMES, layer_for_gpkg, summary_rows
from gridmap.contract import SERVICE_RADIUS_M, WALK_MINUTES, WALK_SPEED_M_PER_MIN


def read_links(path: Path) -> pd.DataFrame:
    """Links CSV of ``gridmap link`` (``household_id``, ``member_id``, optional ``distance_m``), ids as text."""
    from geodata.errors import InputError, Problem

    try:
        df = pd.read_csv(path, dtype={"household_id": str, "member_id": str}, encoding="utf-8-sig")
    except Exception as e:  # unreadable file: an input error, not a traceback
        raise InputError([Problem(f"cannot read CSV: {e}", source=str(path))]) from None
    missing = [c for c in ("household_id", "member_id") if c not in df.columns]
    if missing:
        raise InputError([Problem("column missing", source=str(path), column=c) for c in missing])
    cols = ["household_id", "member_id"] + (["distance_m"] if "distance_m" in df.columns else [])
    return df[cols]


def read_roads(path: Path, coords: str = "wgs84") -> gpd.GeoDataFrame:
    """Road lines (any vector format) in WGS84; ``coords`` shifts GCJ-02/BD-09 lon/lat to WGS84."""
    import pyogrio

    from geodata.crs import geodataframe_to_wgs84
    from geodata.errors import InputError, Problem

    try:
        gdf = pyogrio.read_dataframe(path)
    except Exception as e:
        raise InputError([Problem(f"cannot read road lines: {e}", source=str(path))]) from None
    if gdf.crs is not None and not gdf.crs.is_geographic:
        return gdf.to_crs("EPSG:4326")
    gdf = gdf.set_crs("EPSG:4326", allow_override=True) if gdf.crs is None else gdf.to_crs("EPSG:4326")
    return geodataframe_to_wgs84(gdf, coords)


def _print_summary(summary: dict) -> None:
    console.print(figures_table("coverage gaps", summary_rows(summary)))


def gaps_command(
    grids: Path = typer.Option(..., "--grids", help="Grid polygons (grid_code, optional has_branch, kind)."),
    households: Path = typer.Option(..., "--households", help="Households layer."),
    members: Path = typer.Option(..., "--members", help="Party members layer."),
    out: Path = typer.Option(..., "--out", help="GeoPackage to write (layers grid_status, unlinked_households, "
                                                "service_areas, gap_cells)."),
    links: Path = typer.Option(None, "--links", help="Links CSV from `gridmap link` (else links are estimated)."),
    centres: Path = typer.Option(None, "--centres", help="Service centres (党群服务中心), optional radius_m."),
    radius: float = typer.Option(SERVICE_RADIUS_M, "--radius",
                                 help="Straight-line service radius in metres (for centres without radius_m)."),
    roads: Path = typer.Option(None, "--roads", help="Road lines: adds the walking circle along the network."),
    walk_minutes: float = typer.Option(WALK_MINUTES, "--walk-minutes", help="Walking minutes (at 80 m/min)."),
    max_link_distance: float = typer.Option(None, "--max-link-distance", help="Longest acceptable link, metres."),
    gap_res: int = typer.Option(9, "--gap-res", help="H3 resolution of the gap cells (9 or 10)."),
    coords: str = typer.Option("wgs84", "--coords", help=COORDS_HELP),
):
    """Blank grids (空白网格), unlinked households and households outside the 15-minute service circle."""
    from geodata.io import write_layer
    from gridmap.coverage import coverage_gaps

    if radius <= 0 or walk_minutes <= 0:
        fail("--radius and --walk-minutes must be positive")
    if gap_res not in range(0, 16):
        fail("--gap-res must be an H3 resolution (0–15)")
    if roads is not None and centres is None:
        fail("--roads needs --centres (the walking circle is measured from the centres)")
    gg = read(grids, "grids", coords=coords, fix=True)
    hh = read(households, "households", coords=coords)
    mm = read(members, "members", coords=coords)
    cc = read(centres, "service_centres", coords=coords) if centres else None
    lk = read_links(links) if links else None
    rr = read_roads(roads, coords) if roads else None
    with console.status("measuring coverage"):
        layers, summary = coverage_gaps(gg, hh, mm, lk, cc, radius_m=radius, roads=rr,
                                        walk_limit_m=walk_minutes * WALK_SPEED_M_PER_MIN,
                                        max_link_distance_m=max_link_distance, gap_res=gap_res)
    if out.exists():
        out.unlink()
    out.parent.mkdir(parents=True, exist_ok=True)
    for name in LAYER_NAMES:
        write_layer(layer_for_gpkg(layers[name]), out, layer=name)
    _print_summary(summary)
    console.print(f"layers → {out}")


def sites_command(
    candidates: Path = typer.Option(..., "--candidates", help="Candidate sites (points: POIs, vacant lots)."),
    households: Path = typer.Option(..., "--households", help="Households layer."),
    out: Path = typer.Option(..., "--out", help="GeoJSON of the chosen sites."),
    centres: Path = typer.Option(None, "--centres", help="Existing service centres (their households do not count)."),
    k: int = typer.Option(3, "--k", help="Number of new sites."),
    radius: float = typer.Option(SERVICE_RADIUS_M, "--radius", help="Straight-line service radius in metres."),
    roads: Path = typer.Option(None, "--roads", help="Road lines: cover by walking distance instead."),
    walk_minutes: float = typer.Option(WALK_MINUTES, "--walk-minutes", help="Walking minutes (at 80 m/min)."),
    time_limit: float = typer.Option(60.0, "--time-limit", help="Seconds for the exact solver before it gives up."),
    coords: str = typer.Option("wgs84", "--coords", help=COORDS_HELP),
):
    """Choose k new service-station sites that bring the most uncovered households inside the circle (MCLP)."""
    import numpy as np

    from geodata.io import write_layer
    from gridmap.coverage import straight_line_coverage, walking_coverage
    from gridmap.siting import choose_sites

    if k < 1:
        fail("--k must be at least 1")
    if radius <= 0 or walk_minutes <= 0:
        fail("--radius and --walk-minutes must be positive")
    cand = read(candidates, "service_centres", coords=coords, make_ids=True)
    hh = read(households, "households", coords=coords)
    cc = read(centres, "service_centres", coords=coords) if centres else None
    net = None
    limit = walk_minutes * WALK_SPEED_M_PER_MIN
    if roads is not None:
        from gridmap.walknet import build_walk_network

        net = build_walk_network(read_roads(roads, coords))
    covered = np.zeros(len(hh), dtype=bool)
    if cc is not None and len(cc):
        covered = (walking_coverage(hh, cc, net, limit)["covered_walk"] if net is not None
                   else straight_line_coverage(hh, cc, radius)["covered"]).to_numpy()
    cand = cand.drop(columns=[c for c in ("radius_m",) if c in cand.columns])
    with console.status("choosing sites"):
        sites, res = choose_sites(cand, hh, k, covered=covered, radius_m=radius, network=net, walk_limit_m=limit,
                                  id_column="centre_id", time_limit_s=time_limit)
    keep = [c for c in ("site_id", "name", "rank", "newly_covered", "reach", "method", "optimal") if c in sites.columns]
    if out.exists():
        out.unlink()
    out.parent.mkdir(parents=True, exist_ok=True)
    write_layer(gpd.GeoDataFrame(sites[keep], geometry=sites.geometry.values, crs="EPSG:4326"), out)
    t = Table(title=f"new sites ({'walking' if net is not None else 'straight line'})", header_style="bold")
    for col in ("rank", "site", "newly covered", "within reach"):
        t.add_column(col, justify="left" if col == "site" else "right")
    for row in sites.itertuples():
        t.add_row(str(row.rank), str(row.site_id), f"{row.newly_covered:,}", f"{row.reach:,}")
    console.print(t)
    uncovered = int((~covered).sum())
    console.print(f"households outside every circle: {uncovered:,}; newly covered: {int(res.covered):,} "
                  f"({100 * res.covered / uncovered:.1f}% of them)" if uncovered else "every household is covered")
    console.print(f"method: {res.method}; optimal: {res.optimal}; upper bound {res.bound:,.0f}; {res.seconds:.2f} s")
    console.print(f"sites → {out}")
