"""What-if grid edits for planners (网格调整): preview without saving, then commit in one transaction.

``POST /grids/preview`` moves a set of H3 cells and/or areas (e.g. building footprints, GeoJSON) into
a receiving grid and returns, for every grid it touches, the household counts before and after,
whether the count is in band, whether the grid is still one polygon (contiguous), its Polsby-Popper
compactness, its new outline and its ``version`` — nothing is written. ``POST /grids/commit`` applies
the same edit atomically (``geodata.store.grids.commit_edit``) and must send back those versions
(``"versions": {code: n}``): grids, their H3 cells, households' and members' grid codes change
together, the current 包片联户 runs holding links of moved households are flagged for re-linking,
and the commit is audited. Only planners and leaders whose regions cover every touched grid may edit.

409 (nothing written): an edit that removes a grid or pushes a grid out of (or further from) its
household band, unless ``allow_remove`` / ``allow_out_of_band``; a stale or missing version.
"""

from __future__ import annotations

import math

import h3
from fastapi import APIRouter, Depends, HTTPException, Request, status
from pydantic import BaseModel, Field, field_validator
from shapely.geometry import mapping, shape

from api.auth import Principal, not_found, require_roles
from geodata.store import grids as store

router = APIRouter(tags=["grids"])

EDIT_ROLES = ("planner", "leader")
#: Coarsest H3 resolution accepted in an edit (res 7 cells are ~5 km², already larger than a community).
MIN_CELL_RES = 7


def _finite_coordinates(geojson) -> None:
    """Refuse NaN / Infinity anywhere in a GeoJSON geometry (Python's JSON reader accepts them)."""
    stack = [geojson.get("coordinates") if isinstance(geojson, dict) else None]
    while stack:
        v = stack.pop()
        if isinstance(v, (list, tuple)):
            stack.extend(v)
        elif isinstance(v, float) and not math.isfinite(v):
            raise ValueError(f"coordinate {v!r} is not a number")


class EditIn(BaseModel):
    """Cells and/or areas to move into ``to_grid`` (WGS84)."""

    to_grid: str = Field(..., min_length=1, max_length=100, description="Code of the receiving grid.")
    cells: list[str] = Field(default_factory=list, max_length=20_000,
                             description="H3 cells (hex strings or decimal integers, any resolution).")
    areas: list[dict] = Field(default_factory=list, max_length=5_000,
                              description="GeoJSON polygons (e.g. building footprints), WGS84 lon/lat.")
    versions: dict[str, int] = Field(default_factory=dict, max_length=5_000,
                                     description="Commit only: the grid versions the preview returned.")
    allow_remove: bool = Field(False, description="Allow the edit to remove a grid (take all its ground).")
    allow_out_of_band: bool = Field(False, description="Allow grids to end outside (or further from) their band.")

    @field_validator("cells")
    @classmethod
    def _valid_cells(cls, v: list[str]) -> list[str]:
        out = []
        for c in v:
            s = str(c).strip()
            try:
                cell = h3.int_to_str(int(s)) if s.isdigit() else s.lower()
                ok = h3.is_valid_cell(cell)
            except Exception:  # out-of-range integers, odd text: not a cell
                ok = False
            if not ok:
                raise ValueError(f"not an H3 cell: {c!r}")
            if not MIN_CELL_RES <= h3.get_resolution(cell) <= 15:
                raise ValueError(f"cell {c!r}: resolution must be {MIN_CELL_RES}–15 (grid-sized or finer)")
            out.append(cell)
        return out

    @field_validator("areas")
    @classmethod
    def _valid_areas(cls, v: list[dict]) -> list[dict]:
        for a in v:
            _finite_coordinates(a)
            try:
                g = shape(a)
                g.is_valid  # noqa: B018 - forces GEOS to build the geometry (bad coordinates fail here)
            except Exception as e:  # malformed GeoJSON: a 422 with the reason
                raise ValueError(f"not a GeoJSON geometry: {e}") from None
            if g.geom_type not in ("Polygon", "MultiPolygon") or not g.is_valid:
                raise ValueError("areas must be valid GeoJSON polygons")
            minx, miny, maxx, maxy = g.bounds
            if not (-180 <= minx <= maxx <= 180 and -90 <= miny <= maxy <= 90):
                raise ValueError("areas must be lon/lat (WGS84)")
        return v


class GridAfter(BaseModel):
    grid_code: str
    community_code: str | None
    households_before: int
    households: int
    band_min: int
    band_max: int
    in_band: bool
    contiguous: bool
    polsby_popper: float
    removed: bool
    version: int | None = None
    geometry: dict | None


class EditOut(BaseModel):
    """Grids touched by the edit (receiving grid first) and the households that change grid."""

    to_grid: str
    grids: list[GridAfter]
    moved_households: int
    moved_household_ids: list[str]
    issues: list[str]
    versions: dict[str, int]
    committed: bool = False
    links_flagged: int = 0
    runs_flagged: int = 0
    members_moved: int = 0


def _authorise(request: Request, principal: Principal, to_grid: str) -> None:
    """Early answer for a receiving grid that is missing or outside the token: the same 404."""
    from sqlalchemy import text

    with request.app.state.engine.connect() as conn:
        row = conn.execute(text(
            "SELECT g.community_code, c.street_code FROM grids g LEFT JOIN communities c ON c.code = g.community_code "
            "WHERE g.grid_code = :g"), {"g": to_grid}).first()
    if row is None:
        raise not_found()
    principal.require(grid_code=to_grid, community_code=row[0], street_code=row[1])


def region_check(principal: Principal):
    """The store's ``authorise`` callback: every touched grid must lie in the token's regions (403)."""
    def check(rows: list[dict]) -> None:
        outside = sorted(r["grid_code"] or r["community_code"] or "?" for r in rows if not principal.covers(**r))
        if outside:
            raise HTTPException(status.HTTP_403_FORBIDDEN,
                                f"the edit changes grids outside the regions of this token: {', '.join(outside)}")
    return check


def actor_of(principal: Principal) -> store.Actor:
    return store.Actor(token_id=principal.token_id or None, role=principal.role, member_id=principal.member_id)


def refused(e: store.EditRefused) -> HTTPException:
    """409 naming each grid concerned (count and band, or versions)."""
    return HTTPException(status.HTTP_409_CONFLICT, {"reason": e.reason, "message": e.message, "grids": e.grids})


def _out(body: EditIn, result, versions: dict, committed=None) -> EditOut:
    grids = []
    for r in result.grids.itertuples():
        grids.append(GridAfter(
            grid_code=r.grid_code, community_code=r.community_code, households_before=int(r.households_before),
            households=int(r.households), band_min=int(r.band_min), band_max=int(r.band_max), in_band=bool(r.in_band),
            contiguous=bool(r.contiguous), polsby_popper=round(float(r.polsby_popper), 4), removed=bool(r.removed),
            version=versions.get(r.grid_code), geometry=None if r.removed else mapping(r.geometry),
        ))
    return EditOut(
        to_grid=body.to_grid, grids=grids, moved_households=len(result.moved),
        moved_household_ids=result.moved["household_id"].astype(str).tolist(), issues=result.issues,
        versions=versions, committed=committed is not None,
        links_flagged=committed.links_flagged if committed else 0, runs_flagged=committed.runs_flagged if committed else 0,
        members_moved=committed.members_moved if committed else 0,
    )


def _run(request: Request, body: EditIn, principal: Principal, commit: bool) -> EditOut:
    if not body.cells and not body.areas:
        raise HTTPException(422, "give cells or areas to move")
    _authorise(request, principal, body.to_grid)
    areas = [shape(a) for a in body.areas]
    engine = request.app.state.engine
    flags = {"allow_remove": body.allow_remove, "allow_out_of_band": body.allow_out_of_band,
             "authorise": region_check(principal)}
    try:
        if commit:
            done = store.commit_edit(engine, body.to_grid, cells=body.cells, areas=areas, versions=body.versions,
                                     actor=actor_of(principal), **flags)
            return _out(body, done.result, done.versions, done)
        seen = store.preview(engine, body.to_grid, cells=body.cells, areas=areas, **flags)
        return _out(body, seen.result, seen.versions)
    except store.UnknownGrid:
        raise not_found() from None
    except store.EditRefused as e:
        raise refused(e) from None
    except store.EditInvalid as e:
        raise HTTPException(422, str(e)) from None


@router.post("/grids/preview", response_model=EditOut)
def preview(request: Request, body: EditIn, principal: Principal = Depends(require_roles(*EDIT_ROLES))):
    """New counts, contiguity, compactness and versions of the grids an edit touches; nothing is saved."""
    return _run(request, body, principal, commit=False)


@router.post("/grids/commit", response_model=EditOut)
def commit(request: Request, body: EditIn, principal: Principal = Depends(require_roles(*EDIT_ROLES))):
    """Apply the edit in one transaction (with the versions the preview returned); audited."""
    return _run(request, body, principal, commit=True)


class RedrawCommitIn(BaseModel):
    """A community's (or street's) new grids as a GeoJSON FeatureCollection (WGS84) and what they were computed on."""

    grids: dict = Field(..., description="FeatureCollection; properties community_code (required), grid_code "
                                         "(blank for a new grid), kind.")
    versions: dict[str, int] = Field(default_factory=dict, max_length=5_000,
                                     description="Versions of the scope's stored grids the redraw was computed on.")
    allow_out_of_band: bool = False
    allow_noncontiguous: bool = False

    @field_validator("grids")
    @classmethod
    def _collection(cls, v: dict) -> dict:
        feats = v.get("features") if v.get("type") == "FeatureCollection" else None
        if not isinstance(feats, list) or not feats or len(feats) > 5_000:
            raise ValueError("grids must be a GeoJSON FeatureCollection of 1–5,000 features")
        for i, f in enumerate(feats):
            try:
                _finite_coordinates(f.get("geometry") or {})
                g = shape(f["geometry"])
            except Exception as e:  # malformed feature: a 422 naming it
                raise ValueError(f"feature {i}: {str(e)[:200]}") from None
            if g.geom_type not in ("Polygon", "MultiPolygon"):
                raise ValueError(f"feature {i}: not a polygon")
        return v


class RedrawCommitOut(BaseModel):
    communities: list[str]
    kept: list[str]
    added: list[str]
    removed: list[str]
    households_moved: int
    households_without_grid: int
    members_moved: int
    versions: dict[str, int]


@router.post("/grids/redraw/commit", response_model=RedrawCommitOut)
def redraw_commit(request: Request, body: RedrawCommitIn, principal: Principal = Depends(require_roles(*EDIT_ROLES))):
    """Replace the grids of the communities in ``grids`` with them, in one transaction; audited (409 when refused)."""
    import geopandas as gpd

    new = gpd.GeoDataFrame.from_features(body.grids["features"], crs="EPSG:4326")
    try:
        done = store.commit_redraw(request.app.state.engine, new, versions=body.versions,
                                   allow_out_of_band=body.allow_out_of_band, allow_noncontiguous=body.allow_noncontiguous,
                                   authorise=region_check(principal), actor=actor_of(principal))
    except store.UnknownGrid:
        raise not_found() from None
    except store.EditRefused as e:
        raise refused(e) from None
    except store.EditInvalid as e:
        raise HTTPException(422, str(e)) from None
    return RedrawCommitOut(**done.__dict__)
