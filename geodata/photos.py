"""Photos uploaded from phones (走访照片, 事件处置照片): checked by content, stripped of location, stored on disk.

A photo is accepted only when its first bytes say JPEG or PNG (the browser's content type is not
trusted) and it is no larger than the caller's limit. Phones put the GPS position (and the camera's
serial number) in EXIF; a resident's photo must not carry where they live into a shared folder, so
every photo is decoded with Pillow and written again without any metadata (EXIF, XMP, PNG text
chunks). The upright orientation EXIF described is applied to the pixels first, so nothing turns
sideways. HEIC photos arrive as JPEG: phones convert them when a browser uploads them.

Files are stored under a folder the caller names (the ``upload_dir`` setting), at
``<yyyy>/<mm>/<sha256>.<ext>``; the caller keeps the relative path and the SHA-256 in the database.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

#: Magic bytes of the accepted formats → (content type, file extension, Pillow format name).
FORMATS = {
    b"\xff\xd8\xff": ("image/jpeg", "jpg", "JPEG"),
    b"\x89PNG\r\n\x1a\n": ("image/png", "png", "PNG"),
}
#: Default size limit of one photo (bytes): a phone's full-resolution JPEG is 2–6 MB.
MAX_PHOTO_BYTES = 8 * 1024 * 1024
#: Largest image accepted, in pixels (a decompression bomb of a few kB can claim billions).
MAX_PIXELS = 50_000_000


class PhotoError(ValueError):
    """A photo refused: not JPEG/PNG by content, too large, or not decodable. The text is Chinese
    with the reason, fit to show the person who uploaded it."""


@dataclass(frozen=True)
class StoredPhoto:
    """A photo written to disk: ``path`` relative to the upload folder, ``sha256`` of the stored
    bytes (hex), ``content_type`` and ``size_bytes``."""

    path: str
    sha256: str
    content_type: str
    size_bytes: int
    #: False when the same photo was already stored (so :func:`remove_photo` must leave it).
    new: bool = True


def sniff_format(data: bytes) -> tuple[str, str, str]:
    """``(content_type, extension, pillow_format)`` of ``data`` from its magic bytes; PhotoError otherwise."""
    for magic, fmt in FORMATS.items():
        if data.startswith(magic):
            return fmt
    raise PhotoError("照片格式不支持：只接受 JPEG 或 PNG 图片（按文件内容判断）。")


def check_photo(data: bytes, max_bytes: int = MAX_PHOTO_BYTES) -> tuple[str, str, str]:
    """Check size and format of an uploaded photo; returns :func:`sniff_format`'s triple.

    Raises
    ------
    PhotoError
        Empty, larger than ``max_bytes`` bytes, or not JPEG/PNG by content.
    """
    if not data:
        raise PhotoError("照片是空文件。")
    if len(data) > max_bytes:
        raise PhotoError(f"照片太大：{len(data) / 1048576:.1f} MB，上限 {max_bytes / 1048576:.1f} MB。")
    return sniff_format(data)


def strip_metadata(data: bytes, pillow_format: str) -> bytes:
    """The image re-encoded without EXIF (GPS position included), XMP or text chunks.

    The EXIF orientation is applied to the pixels first. Raises PhotoError when Pillow cannot
    decode the image or it has more than :data:`MAX_PIXELS` pixels.
    """
    from PIL import Image, ImageOps

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                if img.width * img.height > MAX_PIXELS:
                    raise PhotoError(f"照片像素过多（{img.width}×{img.height}）。")
                img.load()
                upright = ImageOps.exif_transpose(img)
    except PhotoError:
        raise
    # Pillow raises these kinds for broken or hostile files; the person needs one message.
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError,
            Image.DecompressionBombWarning) as e:
        raise PhotoError(f"照片无法读取（文件损坏或不是图片）：{type(e).__name__}") from None
    return _encode_clean(upright, pillow_format)


def _encode_clean(img, pillow_format: str) -> bytes:
    """Encode ``img`` with no metadata at all: the pixels are copied into a fresh image, whose
    ``info`` (EXIF, XMP, ICC, PNG text) is empty."""
    from PIL import Image

    if pillow_format == "JPEG" and img.mode not in ("RGB", "L"):
        img = img.convert("RGB")
    clean = Image.frombytes(img.mode, img.size, img.tobytes())
    if img.mode == "P":
        clean.putpalette(img.getpalette())
    out = io.BytesIO()
    if pillow_format == "JPEG":
        clean.save(out, "JPEG", quality=88, optimize=True)
    else:
        clean.save(out, "PNG", optimize=True)
    return out.getvalue()


def save_photo(data: bytes, folder: str | os.PathLike, max_bytes: int = MAX_PHOTO_BYTES,
               now: datetime | None = None) -> StoredPhoto:
    """Check, strip and store one photo under ``folder``; returns where and its hash.

    The file is written to a temporary name and renamed, so a reader never sees half a photo; the
    same photo uploaded twice is stored once (the name is its SHA-256).

    Raises
    ------
    PhotoError
        See :func:`check_photo` and :func:`strip_metadata`.
    """
    content_type, ext, fmt = check_photo(data, max_bytes)
    clean = strip_metadata(data, fmt)
    digest = hashlib.sha256(clean).hexdigest()
    when = now or datetime.now(UTC)
    relative = Path(f"{when:%Y}") / f"{when:%m}" / f"{digest}.{ext}"
    target = Path(folder) / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    new = not target.exists()
    if new:
        fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".part")
        with os.fdopen(fd, "wb") as fh:
            fh.write(clean)
        os.replace(tmp, target)
    return StoredPhoto(relative.as_posix(), digest, content_type, len(clean), new)


def remove_photo(folder: str | os.PathLike, stored: StoredPhoto) -> None:
    """Delete a photo just stored again (when the database write it belonged to failed); a photo
    that was already there before (``new`` false) belongs to another record and stays."""
    if not stored.new:
        return
    try:
        (Path(folder) / stored.path).unlink()
    except FileNotFoundError:
        pass
