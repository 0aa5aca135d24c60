"""PHOW: fidelity of the whole vl_phow against VLFeat's dsift per scale, and the transformer."""

import math

import numpy as np
import pytest
from scipy.ndimage import correlate1d

from phow_baseline.phow import PHOW, n_descriptors, phow, phow_batch, phow_offsets
from phow_baseline.preprocess import equalize, preprocess, read_xray

SIZES = (4, 6, 8, 10)


def vl_imsmooth(im, sigma):
    """VLFeat's vl_imsmooth, written independently: Gaussian of half-width ceil(4 sigma),
    normalised, borders by continuity (scipy's 'nearest'), in float64."""
    W = int(math.ceil(4 * sigma))
    x = np.arange(-W, W + 1)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    k /= k.sum()
    out = correlate1d(im.astype(np.float64), k, axis=0, mode="nearest")
    return correlate1d(out, k, axis=1, mode="nearest").astype(np.float32)


def reference_phow(im):
    """vl_phow assembled from VLFeat's own dense SIFT (cyvlfeat), scale by scale."""
    from cyvlfeat.sift import dsift as vl_dsift

    H, W = im.shape
    frames, descs = [], []
    for s in SIZES:
        off = math.floor(1 + 1.5 * (max(SIZES) - s))  # vl_phow's 1-based offset
        ims = vl_imsmooth(im, s / 6)
        f, d = vl_dsift(ims, step=2, size=s, bounds=np.array([off - 1, off - 1, H - 1, W - 1]),
                        window_size=1.5, fast=True, norm=True)
        d[f[:, 2] < 0.005] = 0
        frames.append(np.column_stack([f[:, 1], f[:, 0], f[:, 2], np.full(len(f), s)]))
        descs.append(d)
    return np.concatenate(frames), np.concatenate(descs)


@pytest.mark.peer
@pytest.mark.slow
def test_phow_matches_vlfeat_on_every_sample_image(sample_images, capsys):
    total = within = maxdiff = 0
    threshold_flips = 0
    for p in sample_images:
        img = preprocess(p, 256)
        fr, dr = reference_phow(img.astype(np.float32) / 255)
        f, d = phow(img)
        assert np.array_equal(f[:, [0, 1, 3]], fr[:, [0, 1, 3]]), p.name
        diff = np.abs(d.astype(np.int16) - dr.astype(np.int16))
        total += diff.size
        within += int((diff <= 1).sum())
        maxdiff = max(maxdiff, int(diff.max()))
        threshold_flips += int(((~d.any(1)) != (~dr.any(1))).sum())
    share = within / total
    with capsys.disabled():
        print(f"\nphow vs VLFeat dsift per scale: {len(sample_images)} images, within 1 level {share:.8%} of "
              f"{total} entries ({total - within} beyond), max |diff| {maxdiff}, descriptors zeroed on one side only "
              f"(contrast within float error of the threshold): {threshold_flips}")
    assert share >= 0.999


def test_offsets_and_counts():
    assert phow_offsets(SIZES) == [10, 7, 4, 1]
    f, d = phow(np.random.default_rng(0).integers(0, 256, (256, 256)).astype(np.uint8))
    assert len(f) == n_descriptors((256, 256)) == 53_374 and d.shape == (53_374, 128)
    # the scales' first centres align at 1 + 3/2 max(sizes) (1-based) = 15 (0-based)
    for s in SIZES:
        first = f[f[:, 3] == s][0]
        assert (first[0], first[1]) == (15.0, 15.0)


def test_contrast_threshold_zeroes_not_drops(sample_images):
    img = preprocess(sample_images[0], 256)
    f, d = phow(img, contrast_threshold=0.05)
    f0, d0 = phow(img, contrast_threshold=0.0)
    assert len(f) == len(f0)
    low = f[:, 2] < 0.05
    assert low.any() and not d[low].any() and (d[~low] == d0[~low]).all()


def test_small_and_constant_images():
    f, d = phow(np.zeros((20, 20), np.uint8))
    assert len(f) == 0 and d.shape == (0, 128)
    f, d = phow(np.full((64, 64), 128, np.uint8))
    assert len(f) > 0 and not d.any()
    with pytest.raises(ValueError, match="2-D"):
        phow(np.zeros((4, 4, 3)))


def test_transformer_equalises_unless_told(sample_images):
    raw = read_xray(sample_images[1])[:256, :256].copy()
    t = PHOW()
    assert t.fit(None) is t and t.get_params()["sizes"] == SIZES
    (f1, d1), = t.transform([raw])
    f2, d2 = phow(equalize(raw))
    np.testing.assert_array_equal(d1, d2)
    (f3, d3), = PHOW(equalization="none").transform([raw])
    np.testing.assert_array_equal(d3, phow(raw)[1])
    batch = phow_batch([raw, raw[::-1].copy()], n_jobs=2)
    np.testing.assert_array_equal(batch[0][1], d3)
