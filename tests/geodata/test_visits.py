"""Visit log (走访记录) and photos: checks by content, EXIF location stripped, storage in PostGIS."""

from __future__ import annotations

import hashlib
import io

import pytest

from geodata import photos


def jpeg_with_gps(size=(64, 48), orientation: int | None = None) -> bytes:
    """A JPEG carrying an EXIF GPS position (31.2°N 121.48°E) and a camera serial number."""
    from PIL import Image

    img = Image.new("RGB", size, (200, 30, 30))
    exif = Image.Exif()
    exif[0xA431] = "SERIAL-12345"  # BodySerialNumber
    gps = exif.get_ifd(0x8825)
    gps.update({1: "N", 2: (31.0, 12.0, 0.0), 3: "E", 4: (121.0, 28.0, 48.0)})
    if orientation:
        exif[0x0112] = orientation
    out = io.BytesIO()
    img.save(out, "JPEG", exif=exif)
    return out.getvalue()


def png_with_text() -> bytes:
    from PIL import Image, PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("Location", "31.2,121.48")
    out = io.BytesIO()
    Image.new("P", (10, 10), 3).save(out, "PNG", pnginfo=info)
    return out.getvalue()


def test_fixture_really_carries_gps():
    from PIL import Image

    with Image.open(io.BytesIO(jpeg_with_gps())) as img:
        assert img.getexif().get_ifd(0x8825)[2] == (31.0, 12.0, 0.0)


def test_jpeg_exif_and_gps_are_stripped_and_stored_under_its_hash(tmp_path):
    from PIL import Image

    raw = jpeg_with_gps()
    stored = photos.save_photo(raw, tmp_path)
    data = (tmp_path / stored.path).read_bytes()
    assert stored.content_type == "image/jpeg" and stored.path.endswith(f"{stored.sha256}.jpg")
    assert hashlib.sha256(data).hexdigest() == stored.sha256 and stored.size_bytes == len(data)
    assert b"SERIAL-12345" not in data and b"Exif" not in data
    with Image.open(io.BytesIO(data)) as img:
        assert not img.getexif() and img.size == (64, 48)
    assert not list(tmp_path.rglob("*.part"))


def test_orientation_is_applied_before_the_exif_goes():
    from PIL import Image

    clean = photos.strip_metadata(jpeg_with_gps((64, 48), orientation=6), "JPEG")  # 6: rotate 90°
    with Image.open(io.BytesIO(clean)) as img:
        assert img.size == (48, 64)


def test_png_text_chunks_are_stripped(tmp_path):
    stored = photos.save_photo(png_with_text(), tmp_path)
    data = (tmp_path / stored.path).read_bytes()
    assert stored.content_type == "image/png" and b"Location" not in data and b"121.48" not in data


@pytest.mark.parametrize("data,word", [
    (b"", "空文件"),
    (b"GIF89a" + b"\0" * 50, "JPEG 或 PNG"),
    (b"<html><script>alert(1)</script>", "JPEG 或 PNG"),
    (b"\xff\xd8\xff\xe0" + b"garbage" * 10, "无法读取"),
])
def test_bad_photos_are_refused_with_a_reason(tmp_path, data, word):
    with pytest.raises(photos.PhotoError, match=word):
        photos.save_photo(data, tmp_path)
    assert not list(tmp_path.rglob("*.*"))


def test_size_limit(tmp_path):
    raw = jpeg_with_gps()
    with pytest.raises(photos.PhotoError, match="太大"):
        photos.save_photo(raw, tmp_path, max_bytes=len(raw) - 1)


def test_same_photo_twice_is_stored_once_and_not_removed_by_the_second(tmp_path):
    first = photos.save_photo(jpeg_with_gps(), tmp_path)
    second = photos.save_photo(jpeg_with_gps(), tmp_path)
    assert first.path == second.path and first.new and not second.new
    photos.remove_photo(tmp_path, second)
    assert (tmp_path / first.path).exists()
    photos.remove_photo(tmp_path, first)
    assert not (tmp_path / first.path).exists()


def test_roster_address_headers_map_to_building_unit_room_as_text(tmp_path):
    from geodata.io import read_layer

    path = tmp_path / "households.csv"
    path.write_text("户号,经度,纬度,姓名,楼栋,单元,室\nH1,121.481,31.205,张三,3,1,0201\n", encoding="utf-8")
    row = read_layer(path, "households").iloc[0]
    assert (row["building"], row["unit"], row["room"]) == ("3", "1", "0201")  # leading zero kept
