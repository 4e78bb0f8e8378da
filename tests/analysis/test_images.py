"""Photos through the sandbox: EXIF camera, times and GPS, PDQ, and hostile images."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from PIL import Image
from PIL.ExifTags import IFD

from service.evidence.analysis import analyse_file, best_match_distance
from tests.analysis.media import NEAR_DUPLICATE_THRESHOLD, png_claiming, scene


def _photo_exif(*, orientation: int = 1) -> Image.Exif:
    """EXIF as a phone writes it, placed at the Tarhuna mass graves site (32.4335 N, 13.6345 E)."""
    exif = Image.Exif()
    exif[0x010F] = "Samsung"  # Make
    exif[0x0110] = "SM-A515F"  # Model
    exif[0x0132] = "2020:06:10 11:31:02"  # DateTime
    exif[0x0112] = orientation
    exif[IFD.Exif] = {
        0x9003: "2020:06:10 11:30:00",  # DateTimeOriginal
        0x9011: "+02:00",  # OffsetTimeOriginal
        0xA434: "4.6mm f/1.8",  # LensModel
    }
    exif[IFD.GPSInfo] = {
        1: "N",
        2: (32.0, 26.0, 0.6),  # 32° 26′ 0.6″
        3: "E",
        4: (13.0, 38.0, 4.2),
        5: b"\x00",
        6: 310.5,
        7: (9.0, 30.0, 0.0),
        29: "2020:06:10",
    }
    return exif


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    path = tmp_path / "site.jpg"
    scene(1).save(path, "JPEG", quality=92, exif=_photo_exif())
    return path


def test_jpeg_exif_camera_times_and_gps(photo: Path) -> None:
    analysis = analyse_file(photo, "image/jpeg")
    assert analysis.error is None
    assert analysis.extracted == {
        "kind": "image",
        "format": "JPEG",
        "width": 640,
        "height": 480,
        "make": "Samsung",
        "model": "SM-A515F",
        "lens_model": "4.6mm f/1.8",
        "datetime_original": "2020-06-10T11:30:00+02:00",
        "datetime": "2020-06-10T11:31:02",
        "orientation": 1,
        "gps": {
            "latitude": pytest.approx(32.4335, abs=1e-6),
            "longitude": pytest.approx(13.6345, abs=1e-6),
            "altitude": 310.5,
            "timestamp": "2020-06-10T09:30:00+00:00",
        },
    }
    [pdq] = analysis.perceptual
    assert len(pdq.pdq) == 64 and pdq.quality >= 50 and pdq.frame_time_s is None


def test_southern_and_western_coordinates_are_negative(tmp_path: Path) -> None:
    exif = _photo_exif()
    exif[IFD.GPSInfo] = {1: "S", 2: (33.0, 51.0, 54.0), 3: "W", 4: (70.0, 0.0, 0.0)}
    path = tmp_path / "south.jpg"
    scene(2).save(path, "JPEG", exif=exif)
    gps = analyse_file(path, "image/jpeg").extracted["gps"]
    assert gps == {"latitude": -33.865, "longitude": -70.0}


def test_reencoded_smaller_copy_is_a_near_duplicate(photo: Path, tmp_path: Path) -> None:
    # What a messaging app does: smaller, lower quality, metadata stripped.
    copy = tmp_path / "forwarded.jpg"
    Image.open(photo).resize((400, 300)).save(copy, "JPEG", quality=35)
    original, forwarded = analyse_file(photo, "image/jpeg"), analyse_file(copy, "image/jpeg")
    assert "gps" not in forwarded.extracted
    distance = best_match_distance(original.perceptual, forwarded.perceptual)
    assert distance is not None and distance <= NEAR_DUPLICATE_THRESHOLD


def test_hash_is_of_the_upright_picture(tmp_path: Path) -> None:
    # The camera stored the pixels sideways with orientation 6 (rotate 90° clockwise to view).
    upright = scene(3)
    sideways = tmp_path / "sideways.jpg"
    upright.transpose(Image.Transpose.ROTATE_90).save(
        sideways, "JPEG", exif=_photo_exif(orientation=6)
    )
    plain = tmp_path / "upright.png"
    upright.save(plain, "PNG")
    a = analyse_file(sideways, "image/jpeg").perceptual
    b = analyse_file(plain, "image/png").perceptual
    distance = best_match_distance(a, b)
    assert distance is not None and distance <= NEAR_DUPLICATE_THRESHOLD


def test_truncated_jpeg_keeps_its_exif_and_reports_the_failure(photo: Path) -> None:
    data = photo.read_bytes()
    photo.write_bytes(data[: len(data) // 2])
    analysis = analyse_file(photo, "image/jpeg")
    assert analysis.error is not None and "truncated" in analysis.error
    assert analysis.extracted["make"] == "Samsung"
    assert analysis.perceptual == ()


def test_random_bytes_labelled_jpeg(tmp_path: Path) -> None:
    path = tmp_path / "noise.jpg"
    path.write_bytes(os.urandom(50_000))
    analysis = analyse_file(path, "image/jpeg")
    assert analysis.error == "UnidentifiedImageError: cannot identify image file 'the file'"
    assert analysis.extracted == {} and analysis.perceptual == ()


def test_png_only_opens_with_the_png_decoder(tmp_path: Path) -> None:
    path = tmp_path / "really-a-png.jpg"
    scene(1).save(path, "PNG")
    analysis = analyse_file(path, "image/jpeg")
    # Only the JPEG decoder may open it, and it does not recognise the file.
    assert analysis.error == "UnidentifiedImageError: cannot identify image file 'the file'"
    assert analysis.extracted == {} and analysis.perceptual == ()


def test_decompression_bomb_is_refused_before_decoding(tmp_path: Path) -> None:
    path = tmp_path / "bomb.png"
    path.write_bytes(png_claiming(100_000, 100_000))
    analysis = analyse_file(path, "image/png")
    assert analysis.error is not None and "decompression bomb" in analysis.error
    assert analysis.perceptual == ()


def test_an_image_needing_more_memory_than_allowed(tmp_path: Path) -> None:
    # 9000 × 9000 RGB is 243 MB once decoded: under the pixel cap, over this memory limit.
    path = tmp_path / "large.png"
    path.write_bytes(png_claiming(9_000, 9_000))
    analysis = analyse_file(path, "image/png", memory_mb=200)
    assert analysis.error is not None and "memory" in analysis.error
