"""``gridmap nearest`` — nearest available responders to a point, from a members file (no server)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from api.commands.common import COORDS_HELP, console, read


def parse_lonlat(text: str) -> tuple[float, float]:
    """``"LON,LAT"`` → floats, with a clear message for a bad value or a swapped pair."""
    try:
        lon, lat = (float(v) for v in text.replace("，", ",").split(","))
    except ValueError:
        raise typer.BadParameter("use LON,LAT in degrees, e.g. 120.17,30.28", param_hint="--at") from None
    if not (-180 <= lon <= 180 and -90 <= lat <= 90):
        raise typer.BadParameter(f"{text} is not a longitude,latitude pair", param_hint="--at")
    return lon, lat


def nearest_command(
    members: Path = typer.Option(..., "--members", help="Members (党员/网格员) layer: GeoJSON, GeoPackage, CSV …"),
    at: str = typer.Option(..., "--at", help="LON,LAT of the incident (in the --coords system)."),
    skill: str = typer.Option(None, "--skill", help="Only responders with this skill tag (法律, 医疗 …)."),
    k: int = typer.Option(5, "-k", "--k", min=1, help="How many responders."),
    radius_m: float = typer.Option(None, "--radius", min=0.0, help="Only within this many metres."),
    coords: str = typer.Option("wgs84", "--coords", help=COORDS_HELP),
):
    """Rank available responders by great-circle distance in metres (exact; a KD-tree on the sphere)."""
    import numpy as np

    from geodata.crs import to_wgs84
    from gridmap.dispatch import ResponderIndex

    lon, lat = parse_lonlat(at)
    lon, lat = (float(np.asarray(v).ravel()[0]) for v in to_wgs84(np.array([lon]), np.array([lat]), coords))
    m = read(members, "members", coords=coords)
    idx = ResponderIndex(m["member_id"], m.geometry.x, m.geometry.y,
                         skills=m["skills"] if "skills" in m.columns else None,
                         available=m["available"] if "available" in m.columns else None)
    found = idx.nearest(lon, lat, k=k, skill=skill, radius_m=radius_m)
    if not found:
        console.print("no available responder" + (f" with skill {skill}" if skill else "")
                      + (f" within {radius_m:,.0f} m" if radius_m is not None else ""))
        raise typer.Exit(1)
    by_id = m.set_index("member_id")
    t = Table(title=f"nearest responders to {lon:.6f},{lat:.6f} (WGS84)", header_style="bold")
    for col in ("rank", "member_id", "grid_code", "skills", "distance_m"):
        t.add_column(col, justify="right" if col in ("rank", "distance_m") else "left")
    for i, (mid, d) in enumerate(found, 1):
        row = by_id.loc[mid]
        sk = row["skills"] if "skills" in by_id.columns else None
        sk = ",".join(sk) if isinstance(sk, (list, tuple, np.ndarray)) else ("" if sk is None else str(sk))
        g = row["grid_code"] if "grid_code" in by_id.columns else ""
        t.add_row(str(i), mid, "" if g is None or g != g else str(g), sk, f"{d:,.1f}")
    console.print(t)
