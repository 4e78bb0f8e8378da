"""Photos: EXIF camera, timestamps and GPS, and one PDQ hash (Pillow)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image
from PIL.ExifTags import IFD

from service.evidence.analysis._findings import Findings, integer, iso_datetime, number, text
from service.evidence.analysis._media_types import PILLOW_FORMATS
from service.evidence.analysis.pdq import HASHING_SIZE, hash_rgb
from service.evidence.analysis.result import JSONValue, PerceptualHash

# Larger pictures are refused before decoding (Pillow's decompression-bomb check): no
# camera makes them, and decoding one would take more memory than the sandbox allows.
MAX_PIXELS = 100_000_000

_EXIF_DATE = "%Y:%m:%d %H:%M:%S"
# EXIF 2.32 tag numbers.
_IFD0_TEXT = {0x010F: "make", 0x0110: "model", 0x0131: "software", 0x013B: "artist"}
_EXIF_TEXT = {0xA433: "lens_make", 0xA434: "lens_model", 0xA431: "body_serial_number"}
_EXIF_DATES = {  # value tag, offset tag → key
    (0x9003, 0x9011): "datetime_original",
    (0x9004, 0x9012): "datetime_digitized",
}
_DATETIME, _OFFSET_TIME, _ORIENTATION = 0x0132, 0x9010, 0x0112
# EXIF orientation → the transposition that shows the picture upright.
_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def analyse_image(path: Path, media_type: str, findings: Findings) -> None:
    """Read a photo's EXIF into `findings`, then decode it for its PDQ hash."""
    # Pillow warns above this many pixels (and refuses above twice as many): refuse at once.
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    warnings.simplefilter("error", Image.DecompressionBombWarning)
    with Image.open(path, formats=[PILLOW_FORMATS[media_type]]) as image:
        findings.put("kind", "image")
        findings.put("format", image.format)
        findings.put("width", image.width)
        findings.put("height", image.height)
        exif = image.getexif()
        _read_exif(exif, findings)
        orientation = integer(exif.get(_ORIENTATION))
        findings.perceptual.append(_pdq(image, orientation))


def _read_exif(exif: Image.Exif, findings: Findings) -> None:
    for tag, key in _IFD0_TEXT.items():
        findings.put(key, text(exif.get(tag)))
    details = exif.get_ifd(IFD.Exif)
    for tag, key in _EXIF_TEXT.items():
        findings.put(key, text(details.get(tag)))
    for (tag, offset_tag), key in _EXIF_DATES.items():
        offset = text(details.get(offset_tag))
        findings.put(key, iso_datetime(text(details.get(tag)), _EXIF_DATE, offset))
    offset = text(details.get(_OFFSET_TIME))
    findings.put("datetime", iso_datetime(text(exif.get(_DATETIME)), _EXIF_DATE, offset))
    findings.put("orientation", integer(exif.get(_ORIENTATION)))
    findings.put("gps", _gps(exif.get_ifd(IFD.GPSInfo)))


def _gps(gps: dict[int, object]) -> dict[str, JSONValue] | None:
    """Decimal degrees (WGS 84, as EXIF records them), metres, and the UTC fix time."""
    latitude = _degrees(gps.get(2), text(gps.get(1)), negative="S", limit=90)
    longitude = _degrees(gps.get(4), text(gps.get(3)), negative="W", limit=180)
    if latitude is None or longitude is None:
        return None
    found: dict[str, JSONValue] = {"latitude": latitude, "longitude": longitude}
    altitude = number(gps.get(6), digits=2)
    if altitude is not None:
        below_sea_level = gps.get(5) in (1, b"\x01")
        found["altitude"] = -altitude if below_sea_level else altitude
    date, time = text(gps.get(29)), gps.get(7)
    if date is not None and isinstance(time, tuple) and len(time) == 3:
        h, m, s = (number(part, digits=0) for part in time)
        if h is not None and m is not None and s is not None:
            stamp = f"{date} {int(h):02d}:{int(m):02d}:{int(s):02d}"
            found["timestamp"] = iso_datetime(stamp, _EXIF_DATE, "+00:00")
    return found


def _degrees(dms: object, ref: str | None, *, negative: str, limit: int) -> float | None:
    if not isinstance(dms, tuple) or len(dms) != 3:
        return None
    d, m, s = (number(part, digits=10) for part in dms)
    if d is None or m is None or s is None:
        return None
    value = round(d + m / 60 + s / 3600, 7)  # 7 decimals: about a centimetre
    if ref is not None and ref.upper() == negative:
        value = -value
    return value if -limit <= value <= limit else None


def _pdq(image: Image.Image, orientation: int | None) -> PerceptualHash:
    # JPEG can decode straight at 1/2, 1/4 or 1/8 scale: far less memory and time.
    image.draft("RGB", (HASHING_SIZE, HASHING_SIZE))
    rgb = image.convert("RGB")
    if rgb.width > HASHING_SIZE or rgb.height > HASHING_SIZE:
        rgb = rgb.resize((HASHING_SIZE, HASHING_SIZE), Image.Resampling.BILINEAR)
    # Hash the picture as a viewer sees it: a messaging app re-encoding a photo applies
    # the EXIF orientation to the pixels and drops the tag.
    upright = _UPRIGHT.get(orientation or 1)
    if upright is not None:
        rgb = rgb.transpose(upright)
    return hash_rgb(np.asarray(rgb))
