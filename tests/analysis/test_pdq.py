"""PDQ: Meta's hex form, distances, the near-duplicate rule, and the hash's known properties."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from service.errors import InvalidInput
from service.evidence.analysis import PerceptualHash, best_match_distance, pdq_distance
from service.evidence.analysis.pdq import hash_rgb
from tests.analysis.media import NEAR_DUPLICATE_THRESHOLD, scene

ZERO = "0" * 64


def _flip_bits(pdq: str, count: int) -> str:
    return f"{int(pdq, 16) ^ ((1 << count) - 1):064x}"


def _hash(image: Image.Image) -> str:
    return hash_rgb(np.asarray(image.convert("RGB"))).pdq


def test_golden_vector_from_metas_reference_hasher() -> None:
    # This picture hashed by ThreatExchange's pdq-photo-hasher (C++) gives exactly this.
    y, x = np.mgrid[0:300, 0:400]
    channels = [(x * 7 + y * 3) % 256, ((x // 25 + y // 25) % 2) * 200 + 20, (x * y // 97) % 256]
    pixels = np.stack(channels, axis=-1).astype(np.uint8)
    assert hash_rgb(pixels) == PerceptualHash(
        pdq="5eb7d5f52d2bdf7db6cb2a8a99aa2202c6b50828fac9089abe732082bf1e28b8", quality=100
    )


def test_distance_counts_differing_bits() -> None:
    assert pdq_distance(ZERO, ZERO) == 0
    assert pdq_distance(ZERO, "f" * 64) == 256
    assert pdq_distance(ZERO, _flip_bits(ZERO, 7)) == 7
    assert pdq_distance("A" * 64, "a" * 64) == 0


@pytest.mark.parametrize("bad", ["", "0" * 63, "0" * 65, "g" + "0" * 63, "0x" + "0" * 62])
def test_distance_refuses_what_is_not_a_pdq_hash(bad: str) -> None:
    with pytest.raises(InvalidInput):
        pdq_distance(ZERO, bad)


def test_best_match_takes_the_closest_usable_pair() -> None:
    good = PerceptualHash(pdq=ZERO, quality=90)
    near = PerceptualHash(pdq=_flip_bits(ZERO, 5), quality=80, frame_time_s=1.0)
    far = PerceptualHash(pdq="f" * 64, quality=100, frame_time_s=0.0)
    flat = PerceptualHash(pdq=ZERO, quality=10)
    assert best_match_distance([good], [far, near]) == 5
    assert best_match_distance([flat], [flat]) is None
    assert best_match_distance([flat], [flat], min_quality=0) == 0
    assert best_match_distance([], [good]) is None


def test_identical_pictures_hash_the_same() -> None:
    assert pdq_distance(_hash(scene(1)), _hash(scene(1))) == 0


def test_reencoded_and_resized_photo_is_a_near_duplicate() -> None:
    original = scene(1)
    copy = io.BytesIO()
    original.resize((320, 240)).save(copy, "JPEG", quality=40)
    distance = pdq_distance(_hash(original), _hash(Image.open(copy)))
    assert distance <= NEAR_DUPLICATE_THRESHOLD


@pytest.mark.parametrize("other_seed", [2, 3, 4])
def test_unrelated_pictures_are_far_apart(other_seed: int) -> None:
    assert pdq_distance(_hash(scene(1)), _hash(scene(other_seed))) > 80


@pytest.mark.parametrize("transform", [Image.Transpose.FLIP_LEFT_RIGHT, Image.Transpose.ROTATE_90])
def test_flipped_or_rotated_pictures_are_far_apart(transform: Image.Transpose) -> None:
    # PDQ is not invariant to these; matching them needs the dihedral hashes.
    original = scene(1)
    assert pdq_distance(_hash(original), _hash(original.transpose(transform))) > 80


def test_a_featureless_picture_has_low_quality() -> None:
    flat = np.full((100, 100, 3), 128, dtype=np.uint8)
    assert hash_rgb(flat).quality < 50
