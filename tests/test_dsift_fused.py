"""Dense SIFT: the fused orientation planes + y filter kernel against the two unfused kernels."""

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from phow_baseline.data.preprocess import preprocess
from phow_baseline.features.dsift import (
    NUM_BIN_T,
    _filter_rows,
    _planes_filter_rows,
    dsift,
    orientation_planes,
)


def _unfused(im, rows, b):
    H, W = im.shape
    planes = np.empty((H, W, NUM_BIN_T), np.float32)
    orientation_planes(im, planes)
    out = np.empty((W, len(rows), NUM_BIN_T), np.float32)
    _filter_rows(planes, rows, b, out)
    return out, planes


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    h=st.integers(1, 40),
    w=st.integers(1, 40),
    b=st.integers(1, 12),
    g=st.integers(1, 3),
    start=st.integers(0, 6),
    seed=st.integers(0, 10_000),
)
def test_fused_rows_match_unfused_kernels(h, w, b, g, start, seed):
    # any size, including images shorter than the ring (2 b + 1 rows) and a first row past 0 (skipped rows)
    im = np.random.default_rng(seed).random((h, w), dtype=np.float32)
    rows = np.arange(min(start, h - 1), h, g, dtype=np.int64)
    ref, planes = _unfused(im, rows, b)
    out = np.full_like(ref, np.nan)
    _planes_filter_rows(im, rows, b, out)
    assert not np.isnan(out).any(), "an output row was not written"
    # same formulas; LLVM may contract the fused loop differently: float rounding only
    scale = planes.max(initial=0.0) * b
    np.testing.assert_allclose(out, ref, rtol=1e-6, atol=1e-6 * max(scale, 1e-30))


def test_fused_dsift_matches_dsift_with_precomputed_planes(sample_images):
    """The default (fused) path against the one given precomputed planes, on real images at PHOW's sizes."""
    for p in sample_images[:3]:
        im = preprocess(p, 256).astype(np.float32) / 255
        H, W = im.shape
        planes = np.empty((H, W, NUM_BIN_T), np.float32)
        orientation_planes(im, planes)
        for b in (4, 6, 8, 10):
            f, d = dsift(im, step=2, bin_size=b, window_size=1.5, contrast_threshold=0.005)
            fp, dp = dsift(im, step=2, bin_size=b, window_size=1.5, contrast_threshold=0.005, planes=planes)
            assert np.array_equal(f[:, :2], fp[:, :2]), f"{p.name} size {b}: frames differ"
            np.testing.assert_allclose(f[:, 2], fp[:, 2], rtol=1e-5, atol=1e-9)
            diff = np.abs(d.astype(np.int16) - dp.astype(np.int16))
            # float rounding of the filtered planes: at most one level, in a tiny share of the entries
            assert diff.max() <= 1 and (diff > 0).mean() < 1e-4, (p.name, b, int(diff.max()), (diff > 0).mean())
            assert d.any(), f"{p.name} size {b}: all descriptors zero"
