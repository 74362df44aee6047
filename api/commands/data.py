"""Data commands: ``synth``, ``import``, ``validate``, ``sample``."""

from __future__ import annotations

from pathlib import Path

import typer

from api.commands.common import COORDS_HELP, console, read
from gridmap.contract import ID_COLUMN


def synth_command(
    grids: Path = typer.Option(..., "--grids", help="Grid polygons to fill (e.g. the Hangzhou grids.geojson)."),
    out: Path = typer.Option(..., "--out", help="Folder to write households/members/service_centres/grids .geojson."),
    seed: int = typer.Option(0, "--seed"),
    households_per_grid: str = typer.Option("300:500", "--households-per-grid", help="A:B households per ordinary grid."),
    member_rate: float = typer.Option(0.07, "--member-rate", help="Share of households with a party member at home."),
    coords: str = typer.Option("wgs84", "--coords", help=COORDS_HELP),
):
    """Synthesise households, members and service centres inside real grid polygons (deterministic for a seed)."""
    from geodata.io import write_layer
    from geodata.synth import synth_in_grids

    try:
        a, b = (int(x) for x in households_per_grid.split(":"))
        assert 0 < a <= b
    except Exception:
        raise typer.BadParameter("use A:B with 0 < A <= B, e.g. 300:500", param_hint="--households-per-grid") from None
    g = read(grids, "grids", coords=coords, fix=True)
    d = synth_in_grids(g, seed=seed, households_per_grid=(a, b), member_rate=member_rate)
    out.mkdir(parents=True, exist_ok=True)
    for name in ("grids", "households", "members", "service_centres"):
        write_layer(d[name], out / f"{name}.geojson")
        console.print(f"{name:16s} {len(d[name]):>8,}  → {out / (name + '.geojson')}")


def import_command(
    layer: str = typer.Argument(..., help="streets | communities | grids | households | members | service_centres | incidents"),
    file: Path = typer.Argument(..., help="GeoJSON, GeoPackage, Shapefile, CSV (lon/lat) or Excel file."),
    coords: str = typer.Option("wgs84", "--coords", help=COORDS_HELP),
    encoding: str = typer.Option(None, "--encoding", help="Text encoding for a Shapefile without .cpg or a CSV (e.g. gbk)."),
    fix: bool = typer.Option(False, "--fix", help="Repair invalid polygons with make_valid, re-derive grid codes that do "
                                                  "not hold their point from the stored grids; say what changed."),
    gpkg_layer: str = typer.Option(None, "--layer", help="Layer name inside a GeoPackage."),
    sheet: str = typer.Option(None, "--sheet", help="Excel sheet to read (default: the first with a header, "
                                                     "so a 说明 sheet first is skipped)."),
    replace: bool = typer.Option(False, "--replace", help="Also delete stored rows whose id is not in the file "
                                                          "(refused for grids households or members still point at)."),
):
    """Load a layer into PostGIS (GRIDMAP_DATABASE_URL) in one transaction: all rows or none, upsert by id.

    Only the file's columns are written; households/members get their grid from the stored polygons
    when the file gives none, and a given grid_code must hold its point (within 50 m). Audited.
    """
    import getpass

    from api.commands.common import db_engine
    from geodata.store.importer import Actor, import_layer

    policy = _deadline_policy() if layer == "incidents" else None
    gdf = read(file, layer, coords=coords, encoding=encoding, fix=fix, layer=gpkg_layer, make_ids=layer == "incidents",
               sheet=sheet)
    if layer == "incidents":  # routed to grids, deadlines by the deployment's rules (api.usecases.deadlines)
        from api.usecases.incident_import import import_incidents

        r = import_incidents(db_engine(), gdf, policy)
        console.print(f"incidents: {r.rows:,} rows read, {r.inserted:,} inserted, {r.updated:,} updated, "
                      f"{r.routed:,} routed to a grid, {r.unrouted:,} outside every grid")
        return
    if layer == "grids":
        from geodata.validate import check_grid_overlaps
        from geodata.errors import InputError

        problems, warnings = check_grid_overlaps(gdf, file.name)
        for w in warnings:
            console.print(f"[yellow]note[/] {w}", markup=True)
        if problems:
            raise InputError(problems)
    r = import_layer(db_engine(), layer, gdf, replace=replace, fix=fix, actor=Actor(by=f"os:{getpass.getuser()}", role="admin"))
    for n in r.notes:
        console.print(f"[yellow]note[/] {n}", markup=True)
    console.print(f"{layer}: {r.rows:,} rows read, {r.inserted:,} inserted, {r.updated:,} updated, {r.unchanged:,} unchanged"
                  + (f", {r.derived:,} derived" if r.derived else "")
                  + (f", {r.deleted:,} deleted" if replace else "") + (f", {r.cells:,} H3 cells" if r.cells else ""))


def _deadline_policy():
    """The deployment's deadline rules (GRIDMAP_DEADLINES_FILE, GRIDMAP_HOLIDAYS); a broken file stops the
    command with its name and entry before anything is read or written."""
    from api.commands.common import fail, settings
    from api.usecases.deadlines import deadline_policy

    try:
        return deadline_policy(settings())
    except (OSError, ValueError) as e:
        from rich.markup import escape  # the entry's name has [brackets]: print them, not read them as markup

        fail(escape(f"deadline rules (GRIDMAP_DEADLINES_FILE / GRIDMAP_HOLIDAYS): {e}"))


def validate_command(
    layer: str = typer.Argument(..., help="Contract layer name."),
    file: Path = typer.Argument(...),
    coords: str = typer.Option("wgs84", "--coords", help=COORDS_HELP),
    encoding: str = typer.Option(None, "--encoding"),
    fix: bool = typer.Option(False, "--fix", help="Repair invalid polygons, re-derive wrong grid codes; report what changed."),
    grids: Path = typer.Option(None, "--grids", help="Grid polygons: each household/member's grid_code must name the grid "
                                                    "holding it (within 50 m); blank ones are derived."),
    out: Path = typer.Option(None, "--out", help="With --fix: write the repaired layer here."),
    sheet: str = typer.Option(None, "--sheet", help="Excel sheet to read (default: the first with a header)."),
):
    """Check a file against the data contract; exit 2 with every problem (file, row, column) if it fails."""
    from geodata.errors import InputError
    from geodata.validate import check_grid_overlaps

    gdf = read(file, layer, coords=coords, encoding=encoding, fix=fix, sheet=sheet)
    problems = []
    if layer == "grids":
        p, warnings = check_grid_overlaps(gdf, file.name)
        problems += p
        for w in warnings:
            console.print(f"[yellow]note[/] {w}", markup=True)
    if grids is not None and layer in ("households", "members"):
        gdf, p = _check_against_grids(gdf, read(grids, "grids", fix=True), layer, file.name, fix)
        problems += p
    if problems:
        raise InputError(problems)
    if out is not None:
        from geodata.io import write_layer

        write_layer(gdf, out)
        console.print(f"wrote {out}")
    console.print(f"[green]ok[/] {file.name}: {len(gdf):,} {layer} rows pass the contract", markup=True)


def _check_against_grids(points, grids, layer: str, source: str, fix: bool):
    """``grid_code`` checked (or with ``fix`` re-derived) against grid polygons; points in no grid are problems."""
    from geodata.errors import Problem
    from geodata.validate import check_grid_codes

    rows_above = points.attrs.get("rows_above")
    points, problems, notes = check_grid_codes(points, grids, layer, source, fix=fix, rows_above=rows_above)
    for n in notes:
        console.print(f"[yellow]note[/] {n}", markup=True)
    bad = {p.row for p in problems}
    for label, code, pid in zip(points.index, points["grid_code"], points[ID_COLUMN[layer]]):
        if code is None and label + 1 not in bad:
            problems.append(Problem(f"{layer[:-1]} {pid} lies in no grid (nor within 50 m of one)", source=source,
                                    row=label + 1, column="geometry",
                                    sheet_row=label + 1 + rows_above if rows_above else None))
    return points, sorted(problems, key=lambda p: p.row or 0)


def sample_command(
    src: Path = typer.Option(Path("../shared/geodata/shanghai-bund"), "--src", help="The OSM extract folder."),
    out: Path = typer.Option(None, "--out", help="Where to write (default: the bundled sample folder)."),
    seed: int = typer.Option(7, "--seed"),
):
    """Rebuild the bundled Shanghai Bund sample scenario from the OSM extract (© OpenStreetMap contributors, ODbL)."""
    from geodata.sample import SAMPLE_DIR, build_bund_sample

    sizes = build_bund_sample(src, out or SAMPLE_DIR, seed=seed)
    for k, v in sizes.items():
        console.print(f"{k:16s} {v:>8,}")
