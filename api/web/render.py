"""Templates (Jinja2, autoescaped), security headers and the little helpers every page shares."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import jinja2
from fastapi import Request
from fastapi.templating import Jinja2Templates
from starlette.responses import HTMLResponse

from api.settings import get_settings

WEB_DIR = Path(__file__).resolve().parent
STATIC_DIR = WEB_DIR / "static"
#: China Standard Time (UTC+8, no daylight saving): every time on screen is in it.
CHINA_TZ = timezone(timedelta(hours=8), "CST")

ROLE_NAMES = {"admin": "系统管理员", "leader": "领导（街道党工委/社区书记）", "planner": "街道规划员",
              "dispatcher": "调度员", "responder": "党员/网格员", "viewer": "查看者"}

#: Hosts a base map's tiles come from, allowed by the CSP only when that base map is the setting.
BASEMAP_HOSTS = {"none": "", "osm": "https://tile.openstreetmap.org https://*.tile.openstreetmap.org",
                 "amap": "https://*.is.autonavi.com", "tianditu": "https://*.tianditu.gov.cn"}

# Autoescaping on for every template (not only *.html): names typed by residents are shown as text.
templates = Jinja2Templates(env=jinja2.Environment(loader=jinja2.FileSystemLoader(str(WEB_DIR / "templates")),
                                                   autoescape=True))


def china_now() -> datetime:
    """The current time in China (UTC+8)."""
    return datetime.now(CHINA_TZ)


def china_time(value: datetime | None) -> str:
    """A stored (timezone-aware) time shown in China time, ``YYYY-MM-DD HH:MM``."""
    return value.astimezone(CHINA_TZ).strftime("%Y-%m-%d %H:%M") if value else "—"


templates.env.filters["china_time"] = china_time


#: The browser's own base-map choice (a preference, not a secret): overrides the ``basemap`` setting.
BASEMAP_COOKIE = "gridmap_basemap"
BASEMAP_NAMES = {"none": "无底图（离线）", "osm": "OpenStreetMap", "amap": "高德地图", "tianditu": "天地图"}


def usable_basemaps() -> list[str]:
    """The base maps a user may pick: Tianditu only when the deployment has a key."""
    return [b for b in BASEMAP_HOSTS if b != "tianditu" or get_settings().tianditu_key]


def chosen_basemap(request: Request) -> str:
    """The base map of this request: the user's choice (cookie) when usable, else the setting."""
    choice = request.cookies.get(BASEMAP_COOKIE, "")
    return choice if choice in usable_basemaps() else get_settings().basemap


def content_security_policy(basemap: str) -> str:
    """CSP of the pages: no inline script, nothing from other sites except the chosen base map's tiles."""
    tiles = BASEMAP_HOSTS.get(basemap, "")
    return ("default-src 'self'; script-src 'self'; style-src 'self'; "
            f"img-src 'self' data: blob: {tiles}".rstrip() + "; "
            f"connect-src 'self' {tiles}".rstrip() + "; "
            "worker-src 'self' blob:; child-src blob:; font-src 'self'; object-src 'none'; base-uri 'none'; "
            "form-action 'self'; frame-ancestors 'none'")


def secure(response, basemap: str | None = None):
    """Add the pages' security headers to ``response`` (HTML that may show personal data: not cached)."""
    response.headers["Content-Security-Policy"] = content_security_policy(basemap or get_settings().basemap)
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["Cache-Control"] = "no-store"
    return response


def map_assets() -> list[str]:
    """The map client's files that are present (so a page works, without map, before they are installed)."""
    files = ["vendor/maplibre/maplibre-gl.js", "js/gridmap-map.js"]
    return [f for f in files if (STATIC_DIR / f).is_file()]


def render(request: Request, template: str, status_code: int = 200, **context) -> HTMLResponse:
    """Render ``template`` with the shared context (user, CSRF token, time, map files) and the security headers."""
    settings = get_settings()
    basemap = chosen_basemap(request)
    context.setdefault("user", getattr(request.state, "session_user", None))
    context.setdefault("csrf_token", getattr(request.state, "csrf_token", ""))
    context.update(now=china_now().strftime("%Y-%m-%d %H:%M"), role_names=ROLE_NAMES, basemap=basemap,
                   basemap_names={b: BASEMAP_NAMES[b] for b in usable_basemaps()}, page_path=request.url.path,
                   tianditu_key=settings.tianditu_key, map_js=map_assets(),
                   maplibre_css=(STATIC_DIR / "vendor/maplibre/maplibre-gl.css").is_file())
    response = templates.TemplateResponse(request, template, context, status_code=status_code)
    return secure(response, basemap)
