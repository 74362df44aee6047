"""``gridmap worker`` — run the background-job worker (procrastinate) on GRIDMAP_DATABASE_URL."""

from __future__ import annotations

import typer

from api.commands.common import console


def worker_command(
    database_url: str = typer.Option(None, "--database-url", envvar="GRIDMAP_DATABASE_URL",
                                     help="PostGIS URL (default: GRIDMAP_DATABASE_URL or the local default)."),
    concurrency: int = typer.Option(1, "--concurrency", min=1, max=16, help="Jobs run at once by this worker."),
    stalled_after: float = typer.Option(30.0, "--stalled-after", min=0.5,
                                        help="Seconds without a heartbeat after which a dead worker's jobs are "
                                             "queued again."),
):
    """Do queued background jobs (link recompute …) until stopped; jobs of a dead worker are picked up again."""
    from api.jobs import run_worker

    console.print("gridmap worker: waiting for jobs (Ctrl+C to stop)")
    run_worker(database_url, concurrency=concurrency, stalled_after_s=stalled_after)
