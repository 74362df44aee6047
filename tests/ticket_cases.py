"""Ticket cases shared by the store, API and web tiers: a JPEG with GPS in its EXIF, its GPS tags,
and the ticket tables' row counts.
"""

from __future__ import annotations

import io

import sqlalchemy as sa


def jpeg_with_gps() -> bytes:
    """A small JPEG whose EXIF holds a GPS position (as a phone camera writes it)."""
    from PIL import Image

    img = Image.new("RGB", (40, 30), "red")
    exif = img.getexif()
    gps = exif.get_ifd(0x8825)
    gps.update({1: "N", 2: (31.0, 12.0, 30.0), 3: "E", 4: (121.0, 29.0, 0.0)})
    out = io.BytesIO()
    img.save(out, "JPEG", exif=exif)
    return out.getvalue()


def gps_of(data: bytes) -> dict:
    from PIL import Image

    return dict(Image.open(io.BytesIO(data)).getexif().get_ifd(0x8825))


def counts(engine) -> dict:
    with engine.connect() as c:
        return {t: c.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar_one()
                for t in ("incidents", "incident_events", "ticket_photos")}
