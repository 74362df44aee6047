"""The public 先锋地图 / 党员亮身份 page (``/pioneers``, no login, phone first).

Members' service posts (党员示范岗, 服务站点) with their skill tags and the grids they serve, drawn from
the ``posts`` layer (``/pioneers/map.geojson``) — never from members' home points; a member's name
shows only where they chose so (``show_name``). Nothing personal beyond that name is on the page.
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from api.auth import public
from api.usecases import needs as uc
from api.web.render import render

router = APIRouter(include_in_schema=False)


def _bounds(posts: list[dict]) -> str:
    """``west,south,east,north`` (WGS84 degrees) around the posts, or empty without any."""
    if not posts:
        return ""
    lons, lats = [p["lon"] for p in posts], [p["lat"] for p in posts]
    pad = 0.003  # about 300 m, so a lone post is not drawn at the very edge
    return ",".join(f"{v:.6f}" for v in (min(lons) - pad, min(lats) - pad, max(lons) + pad, max(lats) + pad))


@router.get("/pioneers")
@public
def pioneers_page(request: Request):
    """先锋地图: the map of service posts and a list of them by kind, with skills and grid names."""
    posts = uc.public_posts(request.app.state.engine)
    kinds: dict[str, list[dict]] = {}
    for p in posts:
        kinds.setdefault(p["kind"], []).append(p)
    return render(request, "pioneers/map.html", user=None, csrf_token="", title="先锋地图", kinds=kinds,
                  count=len(posts), bounds=_bounds(posts))
