"""Dense SIFT: fidelity against VLFeat's C code (cyvlfeat) and properties."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from phow_baseline.data.preprocess import preprocess
from phow_baseline.features.dsift import DESCRIPTOR_SIZE, dsift, dsift_grid, mirror_permutation

SIZES = (4, 6, 8, 10)


#: Sample images where VLFeat and we differ by more than one level in some entry, measured over all 481
#: sample images at 256x256, bin sizes 4-10, bounds as vl_phow's (3.26e9 entries): 5 entries in 4
#: (image, size) pairs, at most 2 in one pair (largest |diff| 114), where a gradient's orientation or
#: position lies within float rounding of a bin boundary, so one pixel's mass lands in the
#: neighbouring bin.  The peer test runs on these four and every 12th image.
KNOWN_OUTLIER_IMAGES = ("00011877_000.png", "00021625_000.png", "00022958_000.png", "00027195_000.png")
#: Bounds on the entries beyond one level: per (image, size) pair the measured maximum (2); in all, the
#: measured 5 on the four images above plus 3 for the others (expected 1.5e-9 x 4e8 entries = 0.6).
MAX_OUTLIERS_PER_PAIR = 2
MAX_OUTLIERS_SUBSET = 8


def _compare_with_vlfeat(im, s, bounds_xy, where):
    """Frames equal, descriptors compared: returns (entries, entries beyond 1 level, max |diff|).

    ``bounds_xy`` is ours, ``(xmin, ymin, xmax, ymax)``; cyvlfeat takes ``[ymin, xmin, ymax, xmax]`` and
    gives frames as ``(y, x, norm)``: with a non-square image and bounds that differ on every side, a swap of
    either axis order changes the number of frames or their positions."""
    from cyvlfeat.sift import dsift as vl_dsift

    xmin, ymin, xmax, ymax = bounds_xy
    fv, dv = vl_dsift(
        im, step=2, size=s, bounds=np.array([ymin, xmin, ymax, xmax]), window_size=1.5, fast=True, norm=True
    )
    f, d = dsift(im, step=2, bin_size=s, window_size=1.5, bounds=bounds_xy)
    assert len(f) == len(fv) and np.array_equal(f[:, :2], fv[:, [1, 0]]), f"{where} size {s}: frames differ"
    np.testing.assert_allclose(f[:, 2], fv[:, 2], rtol=1e-4, atol=1e-7)
    diff = np.abs(d.astype(np.int16) - dv.astype(np.int16))
    return diff.size, int((diff > 1).sum()), int(diff.max(initial=0))


@pytest.mark.peer
@pytest.mark.slow
def test_dsift_matches_vlfeat_on_sample_images(sample_images, capsys):
    """Real images at 256x256 (equalized), every bin size, vl_phow's bounds: frames identical, descriptor
    entries beyond one uint8 level no more than measured (see KNOWN_OUTLIER_IMAGES)."""
    chosen = [p for i, p in enumerate(sample_images) if i % 12 == 0 or p.name in KNOWN_OUTLIER_IMAGES]
    assert sum(p.name in KNOWN_OUTLIER_IMAGES for p in chosen) == len(KNOWN_OUTLIER_IMAGES)
    total = beyond = maxdiff = 0
    for p in chosen:
        im = preprocess(p, 256).astype(np.float32) / 255
        for s in SIZES:
            off = 1 + (10 - s) // 2 * 3  # vl_phow's offsets
            n, k, m = _compare_with_vlfeat(im, s, (off, off, 255, 255), p.name)
            assert k <= MAX_OUTLIERS_PER_PAIR, f"{p.name} size {s}: {k} entries beyond 1 level"
            total, beyond, maxdiff = total + n, beyond + k, max(maxdiff, m)
    with capsys.disabled():
        print(
            f"\ndsift vs VLFeat: {len(chosen)} images x {len(SIZES)} sizes, {total} entries, {beyond} beyond "
            f"1 level, max |diff| {maxdiff}"
        )
    assert beyond <= MAX_OUTLIERS_SUBSET


@pytest.mark.peer
@pytest.mark.slow
def test_dsift_matches_vlfeat_non_square_asymmetric_bounds(sample_images):
    """Wide and tall crops of real images, bounds different on all four sides (axis order checked)."""
    beyond = 0
    for p in sample_images[1:4]:
        full = preprocess(p, None).astype(np.float32) / 255  # 512 x 512, equalized
        for im in (full[40:241, 7:324], full[5:322, 100:261]):  # 201 x 317 and 317 x 161
            H, W = im.shape
            for s in SIZES:
                for bounds in ((3, 11, W - 6, H - 2), (0, 0, W - 1, H - 1), (17, 2, W - 1, H - 9)):
                    n, k, _ = _compare_with_vlfeat(np.ascontiguousarray(im), s, bounds, f"{p.name} {im.shape}")
                    assert n > 0
                    beyond += k
    assert beyond <= MAX_OUTLIERS_PER_PAIR  # 0 measured on these 72 comparisons


def test_frame_geometry():
    x0, y0, nx, ny = dsift_grid((256, 256), 2, 10, (0, 0, 255, 255))
    assert (x0, y0, nx, ny) == (0, 0, 113, 113)  # (255 - 31 + 1) // 2 + 1
    f, d = dsift(np.random.default_rng(0).random((256, 256), dtype=np.float32), step=2, bin_size=10)
    assert f[0, 0] == 15 and f[0, 1] == 15 and f[1, 0] == 17 and len(f) == 113 * 113
    assert d.dtype == np.uint8 and d.shape == (113 * 113, DESCRIPTOR_SIZE)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    h=st.integers(1, 40), w=st.integers(1, 40), b=st.integers(1, 5), step=st.integers(1, 4), seed=st.integers(0, 10_000)
)
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
@given(
    h=st.integers(13, 70),
    w=st.integers(13, 70),
    b=st.integers(1, 6),
    step=st.integers(1, 3),
    seed=st.integers(0, 10_000),
    threshold=st.sampled_from([-1.0, 0.005, 0.02]),
)
def test_uint8_fast_path_matches_general_path(h, w, b, step, seed, threshold):
    """uint8 output (the fast assembly when the step divides the bin size, the general one otherwise)
    equals min(512 d, 255) of the float descriptors, truncated, within float rounding."""
    im = np.random.default_rng(seed).random((h, w)).astype(np.float32)
    im[: h // 3] *= 0.02  # a low-contrast band, so that some descriptors fall under the threshold
    f8, d8 = dsift(im, step=step, bin_size=b, window_size=1.5, contrast_threshold=threshold)
    ff, df = dsift(im, step=step, bin_size=b, window_size=1.5, contrast_threshold=threshold, float_descriptors=True)
    assert np.array_equal(f8[:, :2], ff[:, :2])
    np.testing.assert_allclose(f8[:, 2], ff[:, 2], rtol=1e-5, atol=1e-9)  # sums in another order
    # a contrast within rounding of the threshold may be zeroed on one side only
    clear = np.abs(ff[:, 2] - threshold) > 1e-5 * np.maximum(ff[:, 2], 1e-3)
    assert np.array_equal(d8.any(1)[clear], df.any(1)[clear])
    want = np.minimum(512 * df, 255).astype(np.int16)[clear]
    diff = np.abs(d8[clear].astype(np.int16) - want)
    assert diff.size == 0 or (diff.max() <= 1 and (diff > 0).mean() < 1e-3)


@pytest.mark.parametrize("b, step", [(1, 1), (2, 1), (4, 2), (6, 3), (10, 2)])
def test_uint8_fast_path_over_several_chunks(b, step):
    """The fast assembly over lines of more frames than one chunk (128): the ring of row sums restarts
    at each chunk; uint8 output equals min(512 d, 255) of the float descriptors within float rounding."""
    from phow_baseline.features.dsift import _CHUNK

    im = np.random.default_rng(b).random((3 * _CHUNK * step // 2 + 3 * b + 1, 23 + 3 * b)).astype(np.float32)
    f8, d8 = dsift(im, step=step, bin_size=b, window_size=1.5)
    ff, df = dsift(im, step=step, bin_size=b, window_size=1.5, float_descriptors=True)
    assert dsift_grid(im.shape, step, b)[3] > _CHUNK  # frames along y: the assembly's chunked axis
    np.testing.assert_allclose(f8, ff, rtol=1e-5)
    diff = np.abs(d8.astype(np.int16) - np.minimum(512 * df, 255).astype(np.int16))
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3


@pytest.mark.parametrize("b", [1, 2, 3, 4, 6, 8, 10, 16])
@pytest.mark.parametrize("window_size", [1.5, 2.0])
def test_bin_weights_are_separable(b, window_size):
    """The fast assembly sums rows of bins with the per-axis window means: their outer product must be
    exactly the 4x4 weights (the same float32 products)."""
    from phow_baseline.features.dsift import _bin_means, _bin_weights

    m = _bin_means(b, window_size)
    assert np.array_equal(np.outer(m, m).astype(np.float32), _bin_weights(b, window_size))


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
