"""``gridmap posts import FILE`` — members' service posts (党员示范岗, 服务站点) for the public 先锋地图."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from api.commands.common import COORDS_HELP, console

posts_app = typer.Typer(help="Members' service posts (先锋地图): import.", no_args_is_help=True)


@posts_app.command("import")
def import_command(file: Annotated[Path, typer.Argument(help="GeoJSON, GeoPackage, CSV or Excel (lon/lat) file of posts.")],
                   coords: Annotated[str, typer.Option("--coords", help=COORDS_HELP)] = "wgs84"):
    """Load posts (post_id, kind, title; member_id, show_name 是/否, skills, grid_code; a point) into
    PostGIS in one transaction — all rows or none, upsert by post_id; every problem named by row and
    column. A member's name appears on /pioneers only where show_name is 是. Audited."""
    from api.commands.common import db_engine
    from api.usecases.needs import import_posts

    n = import_posts(db_engine(), file, coords=coords)
    console.print(f"posts: {n:,} rows loaded")
