"""Use case: upload → check → import a roster (households, members, grids …) in one transaction.

The planners' page, and any other face, call these and nothing else: an upload is kept in its own
folder under the settings' ``upload_dir`` with the account that sent it (another account asking for it
gets the same answer as for a missing one), checked in one pass (``geodata.check``), offered back as
Excel with a 问题 column, and imported only when nothing is wrong, through the store's
``import_layer`` (one transaction, audited).
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
from sqlalchemy import text
from sqlalchemy.engine import Engine

from geodata.check import CheckResult, Issue, Region, check_file, write_problem_workbook
from geodata.errors import InputError
from geodata.store.importer import Actor, ImportResult, import_layer

#: File types a roster may come in.
UPLOAD_EXT = (".xlsx", ".xlsm", ".csv", ".txt", ".geojson", ".json", ".gpkg", ".zip")
_UPLOAD_ID = re.compile(r"^[A-Za-z0-9_-]{20,64}$")


class UploadMissing(LookupError):
    """No such upload, or another account's: both answer the same (404)."""


@dataclass
class Upload:
    """A stored upload: its folder, the original file name and who sent it."""

    upload_id: str
    path: Path
    filename: str
    owner: str


def _folder(root: Path, upload_id: str) -> Path:
    if not _UPLOAD_ID.match(upload_id):
        raise UploadMissing(upload_id)
    return Path(root) / "rosters" / upload_id


def save_upload(root: Path, data: bytes, filename: str, owner: str) -> Upload:
    """Keep an uploaded file under ``root`` for ``owner``; the stored name keeps only its extension.

    The user's file name never becomes a path (``../`` and the like cannot escape the folder).
    """
    ext = Path(filename or "").suffix.lower()
    if ext not in UPLOAD_EXT:
        raise InputError(f"不支持的文件类型「{ext or '无扩展名'}」：请上传 Excel（.xlsx）、CSV、GeoJSON、GeoPackage "
                         "或打包成 zip 的 Shapefile")
    upload_id = secrets.token_urlsafe(24)
    folder = _folder(root, upload_id)
    folder.mkdir(parents=True, exist_ok=False)
    path = folder / f"upload{ext}"
    path.write_bytes(data)
    (folder / "meta.json").write_text(json.dumps({"filename": Path(filename).name, "owner": owner}, ensure_ascii=False),
                                      encoding="utf-8")
    return Upload(upload_id, path, Path(filename).name, owner)


def keep_upload(engine: Engine, who: dict, root: Path, data: bytes, filename: str, owner: str, layer: str) -> Upload:
    """:func:`save_upload` audited as ``upload`` (what: the layer, ids: the upload id; detail: the file's
    type and size — not its name, which may hold a person's). If the audit row cannot be written the
    file is removed again, so no roster is kept unaudited."""
    from geodata.store import auth as auth_store

    saved = save_upload(root, data, filename, owner)
    try:
        auth_store.record_audit(engine, token_id=who.get("token_id"), role=who.get("role"),
                                member_id=who.get("member_id"), action="upload", what=layer, ids=[saved.upload_id],
                                detail={"by": owner, "type": saved.path.suffix, "bytes": len(data)})
    except BaseException:
        shutil.rmtree(saved.path.parent, ignore_errors=True)
        raise
    return saved


def get_upload(root: Path, upload_id: str, owner: str) -> Upload:
    """The upload ``upload_id`` of ``owner``; :class:`UploadMissing` when missing or not theirs."""
    folder = _folder(root, upload_id)
    try:
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise UploadMissing(upload_id) from None
    if meta.get("owner") != owner:
        raise UploadMissing(upload_id)
    path = next(p for p in folder.iterdir() if p.name.startswith("upload."))
    return Upload(upload_id, path, meta["filename"], owner)


def discard_upload(upload: Upload) -> None:
    """Delete an upload's folder (after a successful import: it may hold personal data)."""
    shutil.rmtree(upload.path.parent, ignore_errors=True)


def stored_grids(engine: Engine) -> gpd.GeoDataFrame:
    """Every stored grid (``grid_code``, ``community_code``, WGS84 polygon) to check points against."""
    with engine.connect() as conn:
        return gpd.read_postgis(text("SELECT grid_code, community_code, geom FROM grids ORDER BY grid_code"), conn,
                                geom_col="geom")


def check_upload(engine: Engine, upload: Upload, layer: str, *, sheet: str | None = None, coords: str = "wgs84",
                 region: Region | None = None) -> CheckResult:
    """Check an upload in one pass against the stored grids and the user's region (``geodata.check``)."""
    return check_file(upload.path, layer, sheet=sheet or None, coords=coords, grids=stored_grids(engine),
                      region=region, source=upload.filename)


def import_upload(engine: Engine, upload: Upload, layer: str, actor: Actor, *, sheet: str | None = None,
                  coords: str = "wgs84", region: Region | None = None) -> tuple[CheckResult, ImportResult | None]:
    """Check the upload again and, when nothing is wrong, import it in ONE transaction (audited).

    Returns the check and the import's counts (inserted / updated / unchanged / derived); the counts
    are None when the check or the store refused the file — then no table changed.
    """
    result = check_upload(engine, upload, layer, sheet=sheet, coords=coords, region=region)
    if not result.ok:
        return result, None
    try:
        done = import_layer(engine, layer, result.frame, actor=actor)
    except InputError as e:  # the store's own checks (made inside the transaction) refused it
        result.issues += [Issue(None, p.column or "", "", p.message) for p in e.problems]
        return result, None
    discard_upload(upload)
    return result, done


def problems_workbook(upload: Upload, result: CheckResult) -> Path:
    """The upload as Excel with a 问题 column (written beside the upload), for download."""
    return write_problem_workbook(upload.path, result, upload.path.parent / "问题.xlsx")


def region_of(everywhere: bool, grids, communities, streets) -> Region | None:
    """The :class:`Region` a user may write into (None: everywhere)."""
    if everywhere:
        return None
    return Region(frozenset(grids), frozenset(communities), frozenset(streets))
