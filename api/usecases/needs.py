"""Needs (需求清单) and resources (资源清单): residents' 求助服务 reports matched to members' skills;
members' service posts on the public 先锋地图.

The application layer behind ``/needs`` (leaders' page) and ``GET /needs/nearby`` (a responder's
nearby list): no FastAPI here; the faces check role and region and mask personal data. A need is met
by an available member with the skill it names within the service radius (metres, great circle;
default the 15-minute circle, 1,000 m); a need nobody nearby can meet is a gap (缺口).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.engine import Engine

from api.usecases.reports_public import HELP_CATEGORY, STATUS_TEXT
from geodata.store import needs as store
from geodata.store import posts as posts_store
from geodata.store import tickets
from gridmap.contract import SERVICE_RADIUS_M

#: What a responder's nearby list shows of a need (never the reporter's phone, hash or ticket).
NEARBY_FIELDS = ("incident_id", "category", "required_skill", "status", "reported_at", "deadline_at", "grid_code",
                 "description", "address", "lon", "lat", "distance_m")


@dataclass
class NeedsBoard:
    """One community's needs beside its members' skills.

    ``needs``: open needs oldest first, each with ``matches`` (members who can meet it, nearest
    first) and ``status_text``; ``others``: matched members of other communities (name unmasked:
    the face masks it); ``gaps``: the needs nobody can meet; ``gap_skills``: skill → number of
    gaps (``"不限"`` for needs naming no skill); ``members``: the community's members (name and phone
    still unmasked: the face masks them); ``supply``: skill → available members offering it;
    ``radius_m``: the service radius used, metres.
    """

    community: dict
    needs: list[dict]
    gaps: list[dict]
    gap_skills: dict[str, int]
    members: list[dict]
    others: list[dict]
    supply: dict[str, int]
    radius_m: float


def needs_board(engine: Engine, community: dict, *, radius_m: float = SERVICE_RADIUS_M) -> NeedsBoard:
    """The 需求清单 / 资源清单 of ``community`` (a row of :func:`communities`)."""
    needs = store.community_needs(engine, community["code"], category=HELP_CATEGORY, radius_m=radius_m)
    for need in needs:
        need["status_text"] = STATUS_TEXT.get(need["status"], need["status"])
    gaps = [n for n in needs if not n["matches"]]
    gap_skills: dict[str, int] = {}
    for need in gaps:
        skill = need["required_skill"] or "不限"
        gap_skills[skill] = gap_skills.get(skill, 0) + 1
    members = store.community_members(engine, community["code"])
    own = {m["member_id"] for m in members}
    outside = sorted({m["member_id"] for n in needs for m in n["matches"]} - own)
    others = store.members_named(engine, outside) if outside else []
    return NeedsBoard(community, needs, gaps, gap_skills, members, others, store.skill_supply(members),
                      float(radius_m))


def communities(engine: Engine, codes: frozenset[str] | None) -> list[dict]:
    """Communities (``code``, ``name``, ``street_code``) among ``codes`` (None: every one), by code."""
    return store.communities_in(engine, codes)


def pick_community(engine: Engine, codes: frozenset[str] | None, wanted: str | None) -> tuple[dict | None, list[dict]]:
    """The community ``wanted`` (default the first) among those in ``codes``, and all of them.
    ``None`` when ``wanted`` is not among them (missing and not yours alike)."""
    available = communities(engine, codes)
    if not wanted:
        return (available[0] if available else None), available
    return next((c for c in available if c["code"] == wanted), None), available


def nearby_needs(engine: Engine, member_id: str, *, radius_m: float = SERVICE_RADIUS_M) -> list[dict]:
    """Open needs ``member_id`` can meet (their skill, within ``radius_m`` metres of their point), nearest
    first, with only :data:`NEARBY_FIELDS`. Raises ``geodata.store.incidents.NotFound`` for an unknown member."""
    rows = store.needs_near_member(engine, member_id, category=HELP_CATEGORY, radius_m=radius_m)
    return [{k: r[k] for k in NEARBY_FIELDS} for r in rows]


def flagged(engine: Engine, region: str, *, limit: int = 200) -> list[dict]:
    """Incidents of ``region`` (a street, community or grid code) that residents rated low (差评), newest
    rating first — for the leader's follow-up."""
    return tickets.flagged_incidents(engine, region, limit=limit)


# -- 先锋地图 (public): members' service posts, never their homes --------------------------------------

def pioneers_map(engine: Engine) -> dict:
    """The public 先锋地图 as one GeoJSON FeatureCollection (WGS84): a ``post`` Point per service post
    (kind, title, skills, grid and community names, the member's name only where they chose to show it)
    and a ``grid`` Polygon per grid the posts serve. Nothing comes from members' home points."""
    features = [{"type": "Feature", "id": f"grid:{g['grid_code']}", "geometry": g["geometry"],
                 "properties": {"layer": "grid", "grid_code": g["grid_code"], "name": g["name"]}}
                for g in posts_store.served_grids(engine)]
    for p in posts_store.public_posts(engine):
        props = {k: p[k] for k in ("post_id", "kind", "title", "skills", "grid_code", "grid_name", "community_name",
                                   "name")}
        features.append({"type": "Feature", "id": f"post:{p['post_id']}", "properties": {"layer": "post", **props},
                         "geometry": {"type": "Point", "coordinates": [round(p["lon"], 6), round(p["lat"], 6)]}})
    return {"type": "FeatureCollection", "features": features}


def public_posts(engine: Engine) -> list[dict]:
    """The posts as the public sees them (see :func:`geodata.store.posts.public_posts`), grouped by kind."""
    return sorted(posts_store.public_posts(engine), key=lambda p: (p["kind"], p["post_id"]))


def import_posts(engine: Engine, path, *, coords: str = "wgs84") -> int:
    """Load a posts file (all rows or none, upsert by ``post_id``) with its audit row (action ``import``,
    what ``posts``, ids only) in the same transaction, written as the command line (the only face that
    imports posts: role ``admin``, ``by = "cli"`` and the OS user)."""
    from api.usecases.audit import CLI, audited, cli_detail

    gdf = posts_store.read_posts(path, coords=coords)
    with audited(engine, CLI, "import", "posts") as (tx, entry):
        n = posts_store.import_posts(tx, gdf, source=getattr(path, "name", str(path)))
        entry.ids = [str(v) for v in gdf.get("post_id", [])]
        entry.detail = {**cli_detail(), "rows": n}
        if not entry.ids:
            entry.nothing_written()
    return n
