"""Media made on the spot: photo-like scenes, and PNG headers that lie about their size."""

from __future__ import annotations

import functools
import random
import struct
import zlib

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from service.settings import Settings

# The deployment's default: the near-duplicate threshold lives in the settings alone.
NEAR_DUPLICATE_THRESHOLD: int = Settings.model_fields["near_duplicate_threshold"].default


@functools.cache
def scene(seed: int, size: tuple[int, int] = (640, 480)) -> Image.Image:
    """A photo-like RGB picture: a sky-to-ground gradient, shapes, soft edges and noise.

    Cached: callers must not change it in place.
    """
    rng = random.Random(seed)
    width, height = size
    rows = np.linspace(0.0, 1.0, height)[:, None, None]
    top = np.array([rng.randrange(256) for _ in range(3)], dtype=float)
    bottom = np.array([rng.randrange(256) for _ in range(3)], dtype=float)
    gradient = np.broadcast_to(top * (1 - rows) + bottom * rows, (height, width, 3))
    image = Image.fromarray(gradient.astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(image)
    for _ in range(12):
        x0, y0 = rng.randrange(width), rng.randrange(height)
        x1, y1 = x0 + rng.randrange(20, width // 2), y0 + rng.randrange(20, height // 2)
        colour = tuple(rng.randrange(256) for _ in range(3))
        shape = rng.choice([draw.ellipse, draw.rectangle])
        shape([x0, y0, x1, y1], fill=colour)
    image = image.filter(ImageFilter.GaussianBlur(1.5))
    noise = np.random.default_rng(seed).normal(0, 6, (height, width, 3))
    pixels = np.clip(np.asarray(image, dtype=float) + noise, 0, 255)
    return Image.fromarray(pixels.astype(np.uint8), "RGB")


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims `width`×`height` RGB pixels, with almost no pixel data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data)
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00" * 1024)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )
