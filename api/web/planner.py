"""The planners' pages (街道规划员): roster upload with every problem in Excel terms, import, grid staffing.

- ``/planner/upload``: choose the file, what it holds (住户, 党员, 网格 …), the sheet and the coordinate
  system; the check page lists every problem (Excel row, the user's header, the value, the problem in
  Chinese), offers the file back with a 问题 column, and imports it when nothing is wrong.
- ``/planner/grids``: every grid of the region with households, band, members, links, grid workers
  needed and why it is a 空白网格; sortable; Excel export.

Only planners (and admin) open them; an upload belongs to the account that sent it (another account
gets the same 404 as a missing one). Personal data in a problem's value is masked (a planner's role
does not see residents' details); imports and downloads of the problem file are audited.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import FileResponse, RedirectResponse, Response

from api.auth import Principal, public
from api.settings import get_settings
from api.usecases import imports, staffing
from api.usecases.audit import staff
from api.web.pages import NOT_FOUND, PageError, PagePrincipal, require_page_role
from api.web.render import render
from geodata.check import COLUMN_LABELS, COORDS_LABELS, LAYER_LABELS, CheckResult
from geodata.errors import InputError
from geodata.store import auth as auth_store
from geodata.store.importer import Actor
from gridmap.privacy import mask_id_number, mask_name, mask_phone

router = APIRouter(include_in_schema=False)

#: Layers a planner may upload, in the order the form offers them.
UPLOAD_LAYERS = ("households", "members", "grids", "communities", "service_centres", "incidents")
_MASKS = {"phone": mask_phone, "id_number": mask_id_number, "name": mask_name}
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def _planner(principal: Principal) -> None:
    require_page_role(principal, "planner")


def _owner(request: Request) -> str:
    return f"user:{request.state.session_user.user_id}"


def _upload(request: Request, upload_id: str) -> imports.Upload:
    try:
        return imports.get_upload(get_settings().upload_dir, upload_id, _owner(request))
    except imports.UploadMissing:
        raise PageError(404, NOT_FOUND) from None


def _region(principal: Principal):
    if principal.everywhere:
        return None
    scope = principal.scope()
    return imports.region_of(False, scope.grids, scope.communities, scope.streets)


def _choices(layer: str, coords: str) -> tuple[str, str]:
    if layer not in UPLOAD_LAYERS:
        raise PageError(400, "请选择文件里是什么数据（住户、党员、网格……）。")
    if coords not in COORDS_LABELS:
        raise PageError(400, "请选择坐标系。")
    return layer, coords


def _masked_issues(result: CheckResult) -> list[dict]:
    """Issues for the page, with residents' personal data in a value masked."""
    pii_headers = {result.columns[c]: mask for c, mask in _MASKS.items() if c in result.columns}
    rows = []
    for issue in result.issues:
        value = issue.value
        if issue.header in pii_headers and value:
            value = pii_headers[issue.header](value)
        rows.append({**issue.as_dict(), "value": value})
    return rows


def _form_context() -> dict:
    return {"layers": [(k, LAYER_LABELS[k]) for k in UPLOAD_LAYERS], "coords_choices": list(COORDS_LABELS.items())}


@router.get("/planner/upload")
@public
def upload_form(request: Request, principal: PagePrincipal):
    """The upload form: file, what it holds, sheet (optional) and coordinate system."""
    _planner(principal)
    return render(request, "planner/upload.html", page="planner", title="上传花名册", **_form_context())


@router.post("/planner/upload")
@public
def upload(request: Request, principal: PagePrincipal, file: Annotated[UploadFile, File()],
           layer: Annotated[str, Form()] = "households", coords: Annotated[str, Form()] = "wgs84",
           sheet: Annotated[str, Form(max_length=100)] = ""):
    """Keep the file for this account (audited) and go to its check page."""
    _planner(principal)
    layer, coords = _choices(layer, coords)
    try:
        saved = imports.keep_upload(principal.engine, staff(principal), get_settings().upload_dir, file.file.read(),
                                    file.filename or "", _owner(request), layer)
    except InputError as e:
        return render(request, "planner/upload.html", status_code=400, page="planner", title="上传花名册",
                      error=str(e), **_form_context())
    query = f"layer={layer}&coords={coords}" + (f"&sheet={sheet}" if sheet else "")
    return RedirectResponse(f"/planner/upload/{saved.upload_id}?{query}", status_code=303)


def _check(request: Request, principal: Principal, upload_id: str, layer: str, coords: str, sheet: str):
    layer, coords = _choices(layer, coords)
    saved = _upload(request, upload_id)
    try:
        result = imports.check_upload(principal.engine, saved, layer, sheet=sheet or None, coords=coords,
                                      region=_region(principal))
    except InputError as e:
        raise PageError(400, f"文件读不出来：{e}") from None
    return saved, result


@router.get("/planner/upload/{upload_id}")
@public
def check_page(request: Request, principal: PagePrincipal, upload_id: str, layer: str = "households",
               coords: str = "wgs84", sheet: str = ""):
    """Every problem of the file in one table; the import button when there is none."""
    _planner(principal)
    saved, result = _check(request, principal, upload_id, layer, coords, sheet)
    return render(request, "planner/check.html", page="planner", title="检查花名册", upload=saved, result=result,
                  issues=_masked_issues(result), layer=layer, coords=coords, layer_labels=LAYER_LABELS,
                  column_labels=COLUMN_LABELS, coords_labels=COORDS_LABELS, **_form_context())


@router.get("/planner/upload/{upload_id}/problems.xlsx")
@public
def problems_file(request: Request, principal: PagePrincipal, upload_id: str, layer: str = "households",
                  coords: str = "wgs84", sheet: str = ""):
    """The uploaded file back as Excel with a 问题 column (the user's own file: audited, not masked)."""
    _planner(principal)
    saved, result = _check(request, principal, upload_id, layer, coords, sheet)
    path = imports.problems_workbook(saved, result)
    user = request.state.session_user
    auth_store.record_audit(principal.engine, token_id=None, role=principal.role, member_id=None,
                            action="download_problems", what=layer, ids=[],
                            detail={"by": f"web:{user.username}", "file": saved.filename, "problems": len(result.issues)})
    return FileResponse(path, media_type=XLSX, filename=f"问题-{saved.filename.rsplit('.', 1)[0]}.xlsx")


@router.post("/planner/upload/{upload_id}/import")
@public
def import_file(request: Request, principal: PagePrincipal, upload_id: str, layer: Annotated[str, Form()],
                coords: Annotated[str, Form()] = "wgs84", sheet: Annotated[str, Form(max_length=100)] = ""):
    """Import the checked file in one transaction; show what changed (or the problems, nothing written)."""
    _planner(principal)
    layer, coords = _choices(layer, coords)
    saved = _upload(request, upload_id)
    user = request.state.session_user
    actor = Actor(by=f"web:{user.username}", role=principal.role)
    result, done = imports.import_upload(principal.engine, saved, layer, actor, sheet=sheet or None, coords=coords,
                                         region=_region(principal))
    if done is None:
        return render(request, "planner/check.html", status_code=422, page="planner", title="检查花名册", upload=saved,
                      result=result, issues=_masked_issues(result), layer=layer, coords=coords,
                      layer_labels=LAYER_LABELS, column_labels=COLUMN_LABELS, coords_labels=COORDS_LABELS,
                      **_form_context())
    return render(request, "planner/imported.html", page="planner", title="导入完成", done=done, result=result,
                  layer_label=LAYER_LABELS[layer], filename=saved.filename)


# -- grid sizes and staffing --------------------------------------------------------------------------

@router.get("/planner/grids")
@public
def grids_page(request: Request, principal: PagePrincipal):
    """Every grid of the region: households, band, members, links, grid workers needed, 空白网格 reason."""
    _planner(principal)
    rows = staffing.grid_staffing(principal.engine, principal.grid_codes())
    return render(request, "planner/grids.html", page="planner", title="网格规模与配备", rows=rows,
                  totals=staffing.totals(rows))


@router.get("/planner/grids.xlsx")
@public
def grids_export(request: Request, principal: PagePrincipal):
    """The same table as Excel."""
    _planner(principal)
    rows = staffing.grid_staffing(principal.engine, principal.grid_codes())
    return Response(staffing.to_excel(rows), media_type=XLSX,
                    headers={"Content-Disposition": "attachment; filename*=UTF-8''grid-staffing.xlsx"})
