"""PDQ hashing in numpy, step for step as Meta's reference C++ (ThreatExchange `pdq/cpp`).

The reference works in 32-bit floats, and the hash compares DCT coefficients with their
median, so a coefficient that lands near the median flips a bit on a difference in the
last place. Every step here therefore rounds where the reference rounds, in the same
order: float32 throughout, sums accumulated one term at a time, no fused multiply-add.
With that, the hashes and quality are bit for bit those of the reference.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

_Floats = npt.NDArray[np.float32]

# hashing/pdqhashing.cpp: Rec. 601 luma, the coefficients held as floats.
_LUMA_R, _LUMA_G, _LUMA_B = np.float32(0.299), np.float32(0.587), np.float32(0.114)
# Smaller pictures get the all-zero hash and quality 0 (MIN_HASHABLE_DIM).
_MIN_SIDE = 5
# The blurred picture is sampled at 64×64; the hash keeps DCT rows and columns 1–16.
_SAMPLES = 64
_KEPT = 16
# The tent filter is a box filter run twice along each axis (PDQ_NUM_JAROSZ_XY_PASSES).
_PASSES = 2


def _dct_matrix() -> _Floats:
    # dct_matrix_64: sqrt(2/64) rounded to float, times a double-precision cosine, the
    # product rounded to float. math.cos is the C library's cos, as in the reference.
    scale = float(np.float32(math.sqrt(2.0 / _SAMPLES)))
    step = math.pi / 2.0 / _SAMPLES
    rows = [
        [scale * math.cos(step * (i + 1) * (2 * j + 1)) for j in range(_SAMPLES)]
        for i in range(_KEPT)
    ]
    return np.array(rows, dtype=np.float64).astype(np.float32)


_DCT = _dct_matrix()


def pdq_of_rgb(pixels: npt.NDArray[np.uint8]) -> tuple[str, int]:
    """The PDQ hash (64 hex digits, bit 255 first) and quality (0–100) of an RGB picture.

    Requires a height × width × 3 array of bytes.
    """
    return pdq_of_luma(_luma(pixels))


def pdq_of_luma(luma: _Floats) -> tuple[str, int]:
    """The PDQ hash and quality of a picture given as a height × width float32 luma array."""
    rows, cols = luma.shape
    if rows < _MIN_SIDE or cols < _MIN_SIDE:
        return "0" * 64, 0
    samples = luma if luma.shape == (_SAMPLES, _SAMPLES) else _blur_and_sample(luma)
    coefficients = _dct_16x16(samples)
    # torben() in the reference: for 256 values, the 128th smallest.
    median = np.partition(coefficients.ravel(), 127)[127]
    # Bit i*16+j says whether coefficient (i, j) exceeds the median; Meta's hex form is
    # the 256-bit number with bit 255 written first.
    bits = (coefficients > median).ravel()[::-1]
    return np.packbits(bits).tobytes().hex(), _quality(samples)


def _luma(pixels: npt.NDArray[np.uint8]) -> _Floats:
    # fillFloatLumaFromRGB: each product and the two sums rounded to float, left to right.
    # One channel at a time, so a large picture needs only two float planes at once.
    luma: _Floats = pixels[..., 0].astype(np.float32)
    luma *= _LUMA_R
    for channel, coefficient in ((1, _LUMA_G), (2, _LUMA_B)):
        term = pixels[..., channel].astype(np.float32)
        term *= coefficient
        luma += term
    return luma


def _window(length: int) -> int:
    # computeJaroszFilterWindowSize: half of length/64, rounded up, so that the two
    # passes together span one sample's worth of pixels.
    return (length + 2 * _SAMPLES - 1) // (2 * _SAMPLES)


def _sample_indices(length: int) -> npt.NDArray[np.intp]:
    # decimateFloat takes the pixel under each sample's centre: floor((k + 0.5)·n / 64).
    return (np.arange(_SAMPLES) * 2 + 1) * length // (2 * _SAMPLES)


def _blur_and_sample(luma: _Floats) -> _Floats:
    """jaroszFilterFloat then decimateFloat: the 64×64 samples of the tent-filtered luma."""
    rows, cols = luma.shape
    along_rows, along_cols = _window(cols), _window(rows)
    keep_rows, keep_cols = _sample_indices(rows), _sample_indices(cols)
    blurred = luma
    for n in range(_PASSES):
        # A box along each row is a box along axis 0 of the transpose.
        blurred = _box_along_axis0(np.ascontiguousarray(blurred.T), along_rows).T
        if n == _PASSES - 1:
            # Columns are filtered independently: only the sampled ones are needed.
            blurred = blurred[:, keep_cols]
        blurred = _box_along_axis0(np.ascontiguousarray(blurred), along_cols)
    return np.ascontiguousarray(blurred[keep_rows])


def _box_along_axis0(values: _Floats, window: int) -> _Floats:
    """box1DFloat on every column at once: each output is the mean of the `window`
    inputs around it (fewer at the ends), kept as the reference's running float sum.

    Requires 1 <= window <= len(values).
    """
    out = np.empty_like(values)
    half = (window + 2) // 2
    length = len(values)
    total = np.zeros(values.shape[1:], dtype=np.float32)
    for right in range(half - 1):  # the sum starts without writing anything
        total += values[right]
    for out_at in range(length):
        right, left = out_at + half - 1, out_at + half - 1 - window
        if right < length:
            total += values[right]
        if left >= 0:
            total -= values[left]
        count = min(right, length - 1) - max(left, -1)
        np.divide(total, np.float32(count), out=out[out_at])
    return out


def _dct_16x16(samples: _Floats) -> _Floats:
    """dct64To16: D·A·Dᵀ for the 16 kept rows D of the DCT, each dot product summed in
    order k = 0…63 in float."""
    partial = np.zeros((_KEPT, _SAMPLES), dtype=np.float32)
    for k in range(_SAMPLES):
        partial += np.multiply.outer(_DCT[:, k], samples[k])
    coefficients = np.zeros((_KEPT, _KEPT), dtype=np.float32)
    for k in range(_SAMPLES):
        coefficients += np.multiply.outer(partial[:, k], _DCT[:, k])
    return coefficients


def _quality(samples: _Floats) -> int:
    """pdqImageDomainQualityMetric: how much the 64×64 samples change from pixel to
    pixel, each step as a truncated whole percentage of full scale, scaled to 0–100."""
    steps = np.concatenate(
        [(samples[:-1] - samples[1:]).ravel(), (samples[:, :-1] - samples[:, 1:]).ravel()]
    )
    percents = np.trunc(steps * np.float32(100) / np.float32(255)).astype(np.int64)
    return min(int(np.abs(percents).sum()) // 90, 100)
