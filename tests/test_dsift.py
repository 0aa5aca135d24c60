"""Dense SIFT: fidelity against VLFeat's C code (cyvlfeat) and properties."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from phow_baseline.dsift import DESCRIPTOR_SIZE, dsift, dsift_grid, mirror_permutation
from phow_baseline.preprocess import preprocess

SIZES = (4, 6, 8, 10)


@pytest.mark.peer
@pytest.mark.slow
def test_dsift_matches_vlfeat_on_every_sample_image(sample_images, capsys):
    """Every real image at 256x256 (equalised), every bin size: frames identical,
    uint8 descriptors within 1 level on >= 99.9 % of entries."""
    from cyvlfeat.sift import dsift as vl_dsift

    total = {s: 0 for s in SIZES}
    within = {s: 0 for s in SIZES}
    maxdiff = {s: 0 for s in SIZES}
    for p in sample_images:
        im = preprocess(p, 256).astype(np.float32) / 255
        for s in SIZES:
            off = 1 + (10 - s) // 2 * 3  # any bounds will do; use vl_phow's
            bounds_vl = np.array([off, off, 255, 255])  # [ymin, xmin, ymax, xmax]
            fv, dv = vl_dsift(im, step=2, size=s, bounds=bounds_vl, window_size=1.5, fast=True, norm=True)
            f, d = dsift(im, step=2, bin_size=s, window_size=1.5, bounds=(off, off, 255, 255))
            assert np.array_equal(f[:, :2], fv[:, [1, 0]]), f"{p.name} size {s}: frames differ"
            np.testing.assert_allclose(f[:, 2], fv[:, 2], rtol=1e-4, atol=1e-7)
            diff = np.abs(d.astype(np.int16) - dv.astype(np.int16))
            total[s] += diff.size
            within[s] += int((diff <= 1).sum())
            maxdiff[s] = max(maxdiff[s], int(diff.max()))
    with capsys.disabled():
        for s in SIZES:
            print(f"\ndsift vs VLFeat, size {s}: {len(sample_images)} images, within 1 level "
                  f"{within[s] / total[s]:.8%} of {total[s]} entries ({total[s] - within[s]} beyond), "
                  f"max |diff| {maxdiff[s]}")
    for s in SIZES:
        assert within[s] / total[s] >= 0.999


def test_frame_geometry():
    x0, y0, nx, ny = dsift_grid((256, 256), 2, 10, (0, 0, 255, 255))
    assert (x0, y0, nx, ny) == (0, 0, 113, 113)  # (255 - 31 + 1) // 2 + 1
    f, d = dsift(np.random.default_rng(0).random((256, 256), dtype=np.float32), step=2, bin_size=10)
    assert f[0, 0] == 15 and f[0, 1] == 15 and f[1, 0] == 17 and len(f) == 113 * 113
    assert d.dtype == np.uint8 and d.shape == (113 * 113, DESCRIPTOR_SIZE)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(h=st.integers(1, 40), w=st.integers(1, 40), b=st.integers(1, 5), step=st.integers(1, 4),
       seed=st.integers(0, 10_000))
def test_any_size_float_norms(h, w, b, step, seed):
    im = np.random.default_rng(seed).random((h, w)).astype(np.float32)
    f, d = dsift(im, step=step, bin_size=b, float_descriptors=True)
    fits = h >= 3 * b + 1 and w >= 3 * b + 1
    assert (len(f) > 0) == fits  # smaller than one descriptor: an empty result
    assert d.shape == (len(f), 128) and np.isfinite(d).all()
    n = np.linalg.norm(d, axis=1)
    assert np.all((np.abs(n - 1) < 1e-5) | (n < 1e-5))


def test_constant_image_gives_zero_descriptors():
    for value in (0.0, 0.5, 1.0):
        f, d = dsift(np.full((40, 40), value, np.float32), step=3, bin_size=4, float_descriptors=True)
        assert len(f) and not d.any() and not np.isnan(d).any() and not f[:, 2].any()


def test_bad_input():
    with pytest.raises(ValueError, match="2-D"):
        dsift(np.zeros((10, 10, 3), np.float32))
    with pytest.raises(ValueError, match="NaN"):
        dsift(np.full((20, 20), np.nan, np.float32))
    with pytest.raises(ValueError, match="step and bin_size"):
        dsift(np.zeros((20, 20), np.float32), step=0)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), b=st.integers(2, 5), step=st.integers(1, 3), k=st.integers(0, 6))
def test_mirroring_permutes_descriptor_entries(seed, b, step, k):
    """A left-right mirror maps each descriptor to the mirrored frame's descriptor,
    permuted by a fixed permutation: x bin -> 3 - x, orientation t -> (4 - t) mod 8
    (the angle theta of atan2(gy, gx) becomes pi - theta)."""
    W = 3 * b + 1 + step * k  # the grid is symmetric under the mirror
    im = np.random.default_rng(seed).random((3 * b + 5, W)).astype(np.float32)
    f, d = dsift(im, step=step, bin_size=b, float_descriptors=True)
    fm, dm = dsift(im[:, ::-1].copy(), step=step, bin_size=b, float_descriptors=True)
    nx = k + 1
    ny = len(f) // nx
    perm = mirror_permutation()
    # frame (row r, column c) of the mirror is frame (r, nx - 1 - c) of the original
    order = (np.arange(ny)[:, None] * nx + (nx - 1 - np.arange(nx))[None, :]).ravel()
    np.testing.assert_allclose(fm[:, 0], W - 1 - f[order, 0])
    np.testing.assert_allclose(dm, d[order][:, perm], atol=2e-5)
    assert sorted(perm.tolist()) == list(range(128))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(h=st.integers(13, 70), w=st.integers(13, 70), b=st.integers(1, 6), step=st.integers(1, 3),
       seed=st.integers(0, 10_000), threshold=st.sampled_from([-1.0, 0.005, 0.02]))
def test_uint8_fast_path_matches_general_path(h, w, b, step, seed, threshold):
    """uint8 output (the fast assembly when the step divides the bin size, the general one otherwise)
    equals min(512 d, 255) of the float descriptors, truncated, within float rounding."""
    im = np.random.default_rng(seed).random((h, w)).astype(np.float32)
    im[: h // 3] *= 0.02  # a low-contrast band, so that some descriptors fall under the threshold
    f8, d8 = dsift(im, step=step, bin_size=b, window_size=1.5, contrast_threshold=threshold)
    ff, df = dsift(im, step=step, bin_size=b, window_size=1.5, contrast_threshold=threshold,
                   float_descriptors=True)
    assert np.array_equal(f8[:, :2], ff[:, :2])
    np.testing.assert_allclose(f8[:, 2], ff[:, 2], rtol=1e-5, atol=1e-9)  # sums in another order
    # a contrast within rounding of the threshold may be zeroed on one side only
    clear = np.abs(ff[:, 2] - threshold) > 1e-5 * np.maximum(ff[:, 2], 1e-3)
    assert np.array_equal(d8.any(1)[clear], df.any(1)[clear])
    want = np.minimum(512 * df, 255).astype(np.int16)[clear]
    diff = np.abs(d8[clear].astype(np.int16) - want)
    assert diff.size == 0 or (diff.max() <= 1 and (diff > 0).mean() < 1e-3)


def test_frames_out_and_out_are_filled_in_place():
    im = np.random.default_rng(1).random((40, 50)).astype(np.float32)
    f, d = dsift(im, step=2, bin_size=4)
    fo = np.full((len(f), 4), -1.0)
    do = np.empty_like(d)
    f2, d2 = dsift(im, step=2, bin_size=4, out=do, frames_out=fo)
    assert f2 is fo and d2 is do and np.array_equal(fo[:, :3], f) and (fo[:, 3] == -1).all()
    assert np.array_equal(do, d)
    with pytest.raises(ValueError, match="frames_out"):
        dsift(im, step=2, bin_size=4, frames_out=np.empty((3, 3)))
