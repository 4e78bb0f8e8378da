"""PDQ hashing in numpy: Meta's reference values for each path through the algorithm, and
its steps against plain models."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.evidence.analysis._pdq_hashing import _DCT, _box_along_axis0, _dct_16x16, pdq_of_rgb


def _picture(rows: int, cols: int) -> np.ndarray:
    y, x = np.mgrid[0:rows, 0:cols]
    channels = [(x * 3 + y * 5) % 256, (x * y // 8) % 256, ((x // 7 + y // 5) % 2) * 180 + 30]
    return np.stack(channels, axis=-1).astype(np.uint8)


# Each picture hashed by Meta's reference C++ (ThreatExchange pdq/cpp: fillFloatLumaFromRGB
# then pdqHash256FromFloatLuma, built -O3 as its Makefile does).
@pytest.mark.parametrize(
    ("rows", "cols", "pdq", "quality"),
    [
        # Already 64×64: the reference skips the blur.
        (64, 64, "51aab74029ffd0ffbe00497b9245648b9b5a66d589253669c9923267cc9a3376", 100),
        # Box windows of 1 and 5 pixels. Narrow pictures are sensitive to rounding: with
        # luma computed in double precision instead of float, 20 and 16 bits differ.
        (8, 600, "a7491519cae43512ccc913356c92916a742e6e95936decca3336caed351beae6", 100),
        (600, 8, "a9b5ea5492db552a2ad51a5364ec55aa2a55ad25a52d564ac936246d139b4c66", 100),
        (130, 257, "33332333c6738c631ce778e6f0a2c7c6072e161e7c2ef54a809c07f8ffd0f700", 100),
        (512, 512, "bffe37fcffc8f7e0ffe4f7e8fc80f5c0fffcf5c8dc808480e6c0c48080000000", 100),
        # The smallest picture hashed, and one too small: the all-zero hash.
        (5, 5, "96a564d9695a9b2631ccc6b595a43b4ece7369d896a564d9695a9f26318cc4b1", 0),
        (4, 9, "0" * 64, 0),
    ],
)
def test_hashes_are_those_of_metas_reference_code(
    rows: int, cols: int, pdq: str, quality: int
) -> None:
    assert pdq_of_rgb(_picture(rows, cols)) == (pdq, quality)


@given(
    st.lists(st.integers(0, 255), min_size=1, max_size=80),
    st.integers(1, 80),
)
def test_box_filter_takes_the_mean_of_the_window_around_each_value(
    values: list[int], window: int
) -> None:
    window = min(window, len(values))
    column = np.array(values, dtype=np.float32)[:, None]
    half = (window + 2) // 2
    # The window reaches half − 1 values ahead and window − half behind, cut at the ends.
    expected = [np.mean(values[max(0, i - window + half) : i + half]) for i in range(len(values))]
    got = _box_along_axis0(column, window)[:, 0]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-3)


@given(st.integers(0, 2**32 - 1))
def test_dct_is_the_matrix_product(seed: int) -> None:
    samples = np.random.default_rng(seed).uniform(0, 255, (64, 64)).astype(np.float32)
    dct = _DCT.astype(np.float64)
    expected = dct @ samples.astype(np.float64) @ dct.T
    np.testing.assert_allclose(_dct_16x16(samples), expected, rtol=1e-4, atol=1e-2)
