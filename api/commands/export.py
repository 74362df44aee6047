"""``gridmap export --parquet OUT SCENARIO`` — a scenario as GeoParquet partitioned by street (for ``--cluster``)."""

from __future__ import annotations

from pathlib import Path

import typer

from api.commands.common import COORDS_HELP, console


def export_command(
    scenario: Path = typer.Argument(None, help="Folder of layer files or a GeoPackage (needs grids and a way to "
                                               "tell each grid's street: street_code, community_code or streets)."),
    parquet: Path = typer.Option(..., "--parquet", help="Output folder: LAYER/street=CODE/part-0.parquet."),
    coords: str = typer.Option("wgs84", "--coords", help=COORDS_HELP),
    radius_m: float = typer.Option(None, "--radius-m", help="Service radius the plan will use, metres "
                                                            "(default 1,000; sets the halo of centres)."),
    from_db: bool = typer.Option(False, "--from-db", help="Read the PostGIS store (GRIDMAP_DATABASE_URL) instead "
                                                          "of SCENARIO; no personal data is exported."),
    cluster: str = typer.Option(None, "--cluster", help="With --from-db: one task per street on Dask, local:N "
                                                        "or tcp://HOST:8786 (each street read from its partitions)."),
):
    """Write SCENARIO as GeoParquet partitioned by street code, the input of `gridmap plan --cluster`."""
    from api.usecases.scale import export_scenario

    if from_db == (scenario is not None):
        raise typer.BadParameter("give either SCENARIO or --from-db", param_hint="SCENARIO")
    if cluster and not from_db:
        raise typer.BadParameter("--cluster exports the store street by street: use it with --from-db",
                                 param_hint="--cluster")
    if from_db:
        meta = _export_db(parquet, radius_m, cluster)
    else:
        meta = export_scenario(scenario, parquet, coords=coords, radius_m=radius_m)
    for layer, per_street in meta["counts"].items():
        console.print(f"{layer:<16} {sum(per_street.values()):>10,} rows in {len(per_street):,} streets")
    console.print(f"wrote [bold]{parquet}[/] ({len(meta['streets']):,} streets, halo {meta['halo_m']:,.0f} m)",
                  markup=True)


def _export_db(parquet: Path, radius_m: float | None, cluster: str | None) -> dict:
    """The store's export, street by street on ``cluster`` when given (progress as streets done / total)."""
    from api.settings import get_settings
    from api.usecases.scale import export_database

    def progress(done: int, total: int, street: str) -> None:
        console.print(f"streets {done}/{total} ({street})")

    try:
        return export_database(get_settings().database_url, parquet, radius_m=radius_m, cluster=cluster,
                               on_progress=progress if cluster else None)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--cluster") from exc
