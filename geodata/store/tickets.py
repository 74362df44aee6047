"""Residents' tickets in PostGIS: a public report (一键上报 / 需求点单) with photos, followed and rated by ticket.

A ticket is an incident (:mod:`geodata.store.incidents`: routing, deadline, proposed responders)
with what the resident told (``description``, ``address``) and a public ``ticket`` number. The
resident's phone is never stored in clear: ``reporter_phone_hash`` is an HMAC of it under the
database's own key (``report_keys``), ``follow_hash`` an HMAC of ticket + the phone's last four
digits, ``follow_key_hash`` the SHA-256 of the secret follow link. Photos are re-encoded without
metadata (EXIF GPS gone) and written under the caller's upload folder.
Coordinates WGS84 degrees; distances metres.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

from geodata.store import incidents
from gridmap import dispatch as rules
from gridmap.contract import SERVICE_RADIUS_M
from gridmap.deadlines import DeadlineRules

#: Where public reports come from (``incidents.source``).
PUBLIC_SOURCE = "public"
#: Ratings at or below this are flagged for the leader (差评 follow-up).
LOW_RATING = 2
#: Most photos per report and bytes per photo.
MAX_PHOTOS = 3
MAX_PHOTO_BYTES = 5 * 1024 * 1024
#: Magic bytes → (content type, extension, Pillow format). The browser's content type is not trusted.
PHOTO_FORMATS = {b"\xff\xd8\xff": ("image/jpeg", "jpg", "JPEG"), b"\x89PNG\r\n\x1a\n": ("image/png", "png", "PNG")}


class PhotoError(ValueError):
    """A photo that is not a JPEG/PNG, too large, or cannot be decoded."""


@dataclass(frozen=True)
class CleanPhoto:
    """A photo re-encoded without metadata: bytes, content type and file extension."""

    data: bytes
    content_type: str
    ext: str


def clean_photo(data: bytes, max_bytes: int = MAX_PHOTO_BYTES, label: str = "照片") -> CleanPhoto:
    """Check a photo by its magic bytes and size, and re-encode it without EXIF/XMP/text chunks.

    The EXIF orientation is applied to the pixels first (nothing turns sideways). Minimal stand-in
    for ``geodata.photos`` (another branch); raises :class:`PhotoError` naming ``label``.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    if len(data) > max_bytes:
        raise PhotoError(f"{label}太大（{len(data) // 1024} KB），每张不超过 {max_bytes // (1024 * 1024)} MB")
    fmt = next((v for magic, v in PHOTO_FORMATS.items() if data.startswith(magic)), None)
    if fmt is None:
        raise PhotoError(f"{label}不是 JPEG 或 PNG 图片")
    try:
        with Image.open(io.BytesIO(data)) as img:
            upright = ImageOps.exif_transpose(img)
            out = io.BytesIO()
            if fmt[2] == "JPEG":
                upright.convert("RGB").save(out, "JPEG", quality=88)  # no exif= argument: no EXIF written
            else:
                upright.save(out, "PNG")  # no pnginfo: no text chunks
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise PhotoError(f"{label}无法读取（文件已损坏？）") from e
    return CleanPhoto(out.getvalue(), fmt[0], fmt[1])


# -- hashes ------------------------------------------------------------------------------------------

def _key(conn: Connection) -> bytes:
    """The database's HMAC key (made by the migration; made afresh if the table was emptied)."""
    conn.execute(text("INSERT INTO report_keys (key_id, secret) VALUES (1, :s) ON CONFLICT DO NOTHING"),
                 {"s": secrets.token_hex(32)})
    return conn.execute(text("SELECT secret FROM report_keys WHERE key_id = 1")).scalar_one().encode()


def _hmac(key: bytes, value: str) -> str:
    return hmac.new(key, value.encode("utf-8"), hashlib.sha256).hexdigest()


def normalise_phone(phone: str) -> str:
    """Digits only (``138-1234 1234`` → ``13812341234``)."""
    return "".join(ch for ch in phone if ch.isdigit())


def phone_hash(engine: Engine, phone: str) -> str:
    """HMAC of a phone number under the database's report key (what ``reporter_phone_hash`` holds)."""
    with engine.begin() as conn:
        return _hmac(_key(conn), "phone:" + normalise_phone(phone))


def reports_since(engine: Engine, phone_hash_value: str, since: datetime) -> int:
    """How many public reports this phone (by hash) made since ``since`` (rate limit per phone)."""
    with engine.connect() as conn:
        return conn.execute(text("SELECT count(*) FROM incidents WHERE reporter_phone_hash = :h AND reported_at >= :t"),
                            {"h": phone_hash_value, "t": since}).scalar_one()


# -- create --------------------------------------------------------------------------------------------

def _new_ticket(conn: Connection, at: datetime) -> str:
    """A free 12-digit ticket number: the China date (YYMMDD) and six random digits."""
    for _ in range(20):
        ticket = f"{rules.to_local(at):%y%m%d}{secrets.randbelow(10**6):06d}"
        if conn.execute(text("SELECT 1 FROM incidents WHERE ticket = :t"), {"t": ticket}).first() is None:
            return ticket
    raise RuntimeError("no free ticket number today")


def _write_photos(folder: Path, photos: list[CleanPhoto]) -> list[tuple[str, CleanPhoto, str]]:
    """Write photos as ``tickets/<sha256>.<ext>`` under ``folder``; returns (relative path, photo, sha256)."""
    out = []
    (folder / "tickets").mkdir(parents=True, exist_ok=True)
    for p in photos:
        digest = hashlib.sha256(p.data).hexdigest()
        rel = f"tickets/{digest}.{p.ext}"
        tmp = folder / f"{rel}.{secrets.token_hex(4)}.part"
        tmp.write_bytes(p.data)
        os.replace(tmp, folder / rel)
        out.append((rel, p, digest))
    return out


# More than ten arguments on purpose: a resident's report fields, passed by keyword from the use cases.
def create_ticket(engine: Engine, *, lon: float, lat: float, category: str, description: str,  # noqa: PLR0913
                  address: str | None = None, phone: str | None = None, required_skill: str | None = None,
                  photos: Sequence[CleanPhoto] = (), upload_dir: str | os.PathLike = "var/uploads",
                  calendar: rules.WorkCalendar | None = None, radius_m: float = SERVICE_RADIUS_M,
                  reported_at: datetime | None = None, deadline_rules: DeadlineRules | None = None) -> dict:
    """Record a resident's report at a WGS84 point as an incident with a public ticket.

    Routing, deadlines and responder proposals are those of staff reports
    (:func:`geodata.store.incidents.create_incident`, ``radius_m`` metres): both clocks follow
    ``deadline_rules`` by category, counting working days by ``calendar`` and the ``holidays`` table. Returns
    ``{"ticket", "follow_key", "incident_id"}``; ``follow_key`` is the secret of the follow link,
    returned once and stored only as a hash. All or nothing: if anything fails after the incident
    was made, the incident and the photo files written for it are removed again.
    """
    written = _write_photos(Path(upload_dir), list(photos))
    inc = None
    try:
        inc = incidents.create_incident(engine, lon=lon, lat=lat, category=category, required_skill=required_skill,
                                        source=PUBLIC_SOURCE, calendar=calendar, radius_m=radius_m,
                                        reported_at=reported_at, deadline_rules=deadline_rules)
        follow_key = secrets.token_urlsafe(18)
        with engine.begin() as conn:
            key = _key(conn)
            ticket = _new_ticket(conn, inc["reported_at"])
            digits = normalise_phone(phone or "")
            conn.execute(text(
                "UPDATE incidents SET description = :d, address = :a, ticket = :t, reporter_phone_hash = :ph, "
                "follow_hash = :fh, follow_key_hash = :kh WHERE incident_id = :i"),
                {"d": description, "a": address or None, "t": ticket, "i": inc["incident_id"],
                 "ph": _hmac(key, "phone:" + digits) if digits else None,
                 "fh": _hmac(key, f"follow:{ticket}:{digits[-4:]}") if digits else None,
                 "kh": hashlib.sha256(follow_key.encode()).hexdigest()})
            for n, (rel, p, digest) in enumerate(written, start=1):
                conn.execute(text("INSERT INTO ticket_photos (incident_id, position, path, content_type, size_bytes, "
                                  "sha256) VALUES (:i, :n, :p, :ct, :sz, :sha)"),
                             {"i": inc["incident_id"], "n": n, "p": rel, "ct": p.content_type, "sz": len(p.data),
                              "sha": digest})
    except BaseException:
        _undo(engine, inc, upload_dir, written)
        raise
    return {"ticket": ticket, "follow_key": follow_key, "incident_id": inc["incident_id"]}


def _undo(engine: Engine, inc: dict | None, upload_dir, written) -> None:
    if inc is not None:
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM incidents WHERE incident_id = :i"), {"i": inc["incident_id"]})
    for rel, _p, _d in written:
        _remove_unshared(engine, Path(upload_dir), rel)


def _remove_unshared(engine: Engine, folder: Path, rel: str) -> None:
    # Files are named by content: the same photo sent with another ticket shares the file.
    with engine.connect() as conn:
        if conn.execute(text("SELECT 1 FROM ticket_photos WHERE path = :p"), {"p": rel}).first() is None:
            (folder / rel).unlink(missing_ok=True)


# -- follow ----------------------------------------------------------------------------------------------

_TICKET_COLS = ("incident_id, ticket, category, status, required_skill, reported_at, deadline_at, closed_at, "
                "grid_code, community_code, street_code, description, address, rating, rating_comment, flagged, "
                "follow_hash, follow_key_hash, ST_X(geom) AS lon, ST_Y(geom) AS lat")


def find_ticket(engine: Engine, ticket: str, *, code: str | None = None, key: str | None = None) -> dict | None:
    """The ticket if ``code`` (the phone's last four digits) or ``key`` (the follow link's secret)
    matches; None for a missing ticket and for a wrong code alike (the caller cannot tell them apart)."""
    with engine.connect() as conn:
        row = conn.execute(text(f"SELECT {_TICKET_COLS} FROM incidents WHERE ticket = :t AND source = :s"),
                           {"t": ticket, "s": PUBLIC_SOURCE}).first()
        secret = _key(conn)
    if row is None:
        return None
    found = dict(row._mapping)
    ok = False
    if code and found["follow_hash"]:
        ok = hmac.compare_digest(found["follow_hash"], _hmac(secret, f"follow:{ticket}:{normalise_phone(code)}"))
    if key and not ok:
        ok = hmac.compare_digest(found["follow_key_hash"] or "", hashlib.sha256(key.encode()).hexdigest())
    return found if ok else None


def ticket_history(engine: Engine, incident_id: str) -> list[dict]:
    """The ticket's life-cycle steps, oldest first, each with the responder's surname only
    (``member_surname``; the full name never leaves this function)."""
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT e.at, e.action, e.to_status, left(m.name, 1) AS member_surname FROM incident_events e "
            "LEFT JOIN members m ON m.member_id = e.member_id WHERE e.incident_id = :i ORDER BY e.event_id"),
            {"i": incident_id})
        return [dict(r._mapping) for r in rows]


def ticket_photos(engine: Engine, incident_id: str) -> list[dict]:
    """The ticket's photos in order: ``position``, ``path`` (relative to the upload folder), ``content_type``."""
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT position, path, content_type FROM ticket_photos WHERE incident_id = :i "
                                 "ORDER BY position"), {"i": incident_id})
        return [dict(r._mapping) for r in rows]


def rate_ticket(engine: Engine, incident_id: str, rating: int, comment: str | None = None,
                at: datetime | None = None) -> dict:
    """群众评单: the resident's 1–5 rating and comment, once, on a closed ticket (row lock; the step is
    written to ``incident_events``). A rating of :data:`LOW_RATING` or less sets ``flagged``.

    Raises ``gridmap.dispatch.IllegalTransition`` unless closed and unrated; ValueError for a bad rating.
    """
    rating = rules.check_rating(rating)
    now = at or datetime.now(UTC)
    with engine.begin() as conn:
        inc = incidents.get_row(conn, incident_id, lock=True)
        new = rules.next_state(inc["status"], "rate")
        conn.execute(text("UPDATE incidents SET status = :new, rating = :r, rating_comment = :c, flagged = :f, "
                          "updated_at = now() WHERE incident_id = :i"),
                     {"new": new, "r": rating, "c": comment or None, "f": rating <= LOW_RATING, "i": incident_id})
        incidents._event(conn, incident_id, "rate", inc["status"], new, member_id=inc["assigned_member_id"],
                         detail={"rating": rating, "by": "resident", "flagged": rating <= LOW_RATING}, at=now)
    return {"status": new, "rating": rating, "flagged": rating <= LOW_RATING}


def recent_window(hours: float = 1.0) -> datetime:
    """The start of the rate-limit window ``hours`` back from now (UTC)."""
    return datetime.now(UTC) - timedelta(hours=hours)


def flagged_incidents(engine: Engine, region: str, limit: int = 200) -> list[dict]:
    """Incidents of a region (a street, community or grid code) flagged by a low rating (评单 ≤
    :data:`LOW_RATING`), most recently rated first: ids, category, grid, who handled it, the rating and
    comment, times — never the reporter's phone hash, follow hashes or the ticket number."""
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT i.incident_id, i.category, i.required_skill, i.status, i.grid_code, i.community_code, "
            "i.street_code, i.assigned_member_id, i.rating, i.rating_comment, i.description, i.reported_at, "
            "i.closed_at, (SELECT max(e.at) FROM incident_events e WHERE e.incident_id = i.incident_id "
            "AND e.action = 'rate') AS rated_at, ST_X(i.geom) AS lon, ST_Y(i.geom) AS lat FROM incidents i "
            "WHERE i.flagged AND (i.grid_code = :r OR i.community_code = :r OR i.street_code = :r) "
            "ORDER BY rated_at DESC NULLS LAST, i.incident_id COLLATE \"C\" LIMIT :limit"),
            {"r": region, "limit": int(limit)})
        return [dict(r._mapping) for r in rows]
