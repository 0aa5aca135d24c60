"""PHOW: fidelity of the whole vl_phow against VLFeat's dsift per scale, and the transformer."""

import math

import numpy as np
import pytest

from conftest import require_peer
from phow_baseline.data import equalize, read_xray
from phow_baseline.data.preprocess import preprocess
from phow_baseline.features.phow import PHOW, n_descriptors, phow, phow_batch, phow_offsets

SIZES = (4, 6, 8, 10)


def _libvl():
    """VLFeat's C library (``libvl``, the one cyvlfeat is built on), through ctypes.

    A peer: tests/conftest.py's ``require_peer`` skips the test when it is missing, or fails it under
    ./run-tests and CI (the tests that come here are marked ``peer``, which checks it before they start).
    """
    import ctypes

    lib = require_peer("libvl")
    P = ctypes.POINTER(ctypes.c_float)
    conv = lib.vl_imconvcol_vf
    conv.restype = None
    conv.argtypes = [
        P,
        ctypes.c_size_t,
        P,
        ctypes.c_size_t,
        ctypes.c_size_t,
        ctypes.c_size_t,
        P,
        ctypes.c_ssize_t,
        ctypes.c_ssize_t,
        ctypes.c_int,
        ctypes.c_uint,
    ]
    smooth_f = lib.vl_imsmooth_f
    smooth_f.restype = None
    smooth_f.argtypes = [
        P,
        ctypes.c_size_t,
        P,
        ctypes.c_size_t,
        ctypes.c_size_t,
        ctypes.c_size_t,
        ctypes.c_double,
        ctypes.c_double,
    ]
    return conv, smooth_f, P


VL_PAD_BY_CONTINUITY, VL_TRANSPOSE = 0x1, 0x4  # vl/imopv.h


def vl_imsmooth(im, sigma):
    """VLFeat's ``vl_imsmooth`` (the MATLAB function ``vl_phow`` calls), run by VLFeat's own C code.

    The MEX file (``toolbox/imop/vl_imsmooth.c``) builds its Gaussian in float,
    ``exp(-z^2 / 2)`` with ``z = (j - W) / (sigma + FLT_EPSILON)`` on
    ``j = 0..2W``, ``W = ceil(4 sigma)``, normalized by its float sum, and
    filters twice with libvl's ``vl_imconvcol_vf`` (padding by continuity,
    transposing): the kernel is tabulated here from that formula, and the
    filtering is libvl's.  (libvl's own ``vl_imsmooth_f`` is a different
    function: half-width ``ceil(3 sigma)``; ``vl_phow`` does not use it.)
    """
    conv, _, P = _libvl()
    im = np.ascontiguousarray(im, np.float32)
    H, Wd = im.shape
    if sigma < 0.01:
        return im.copy()
    W = int(math.ceil(4.0 * sigma))
    z = (
        (np.arange(2 * W + 1, dtype=np.float32) - np.float32(W)).astype(np.float64) / (sigma + np.finfo(np.float32).eps)
    ).astype(np.float32)
    k = np.exp(-0.5 * (z * z).astype(np.float64)).astype(np.float32)
    acc = np.float32(0)
    for v in k:  # the MEX's float accumulation, in order
        acc = np.float32(acc + v)
    k = (k / acc).astype(np.float32)
    tmp, out = np.empty((Wd, H), np.float32), np.empty((H, Wd), np.float32)
    flags = VL_PAD_BY_CONTINUITY | VL_TRANSPOSE
    conv(tmp.ctypes.data_as(P), H, im.ctypes.data_as(P), Wd, H, Wd, k.ctypes.data_as(P), -W, W, 1, flags)
    conv(out.ctypes.data_as(P), Wd, tmp.ctypes.data_as(P), H, Wd, H, k.ctypes.data_as(P), -W, W, 1, flags)
    return out


def libvl_imsmooth_f(im, sigma):
    """libvl's ``vl_imsmooth_f`` (half-width ``ceil(3 sigma)``), for contrast only."""
    _, smooth_f, P = _libvl()
    im = np.ascontiguousarray(im, np.float32)
    out = np.empty_like(im)
    smooth_f(
        out.ctypes.data_as(P), im.shape[1], im.ctypes.data_as(P), im.shape[1], im.shape[0], im.shape[1], sigma, sigma
    )
    return out


@pytest.mark.peer
def test_smoothing_matches_vlfeat_imsmooth(sample_images):
    """Our smoothing of every PHOW scale equals VLFeat's vl_imsmooth (its kernel, libvl's filtering with
    continuity padding) within float rounding, on non-square real images (so rows and columns cannot be
    swapped unnoticed); the comparison is sharp enough to tell libvl's other kernel (3 sigma) apart."""
    from phow_baseline.features.phow import smooth

    for p in sample_images[:4]:
        full = preprocess(p, None).astype(np.float32) / 255
        for im in (full[13:213, 5:306], full[:301, 40:140]):  # 200 x 301 and 301 x 100
            for s in SIZES:
                ours, ref = smooth(im, s / 6), vl_imsmooth(im, s / 6)
                assert ours.shape == ref.shape
                err = np.abs(ours - ref).max()
                assert err < 2e-6, (p.name, im.shape, s, err)  # float32 rounding of sums of ~60 products
            # libvl's 3-sigma kernel differs by its missing tails, far above that rounding at the largest sigma
            big = max(SIZES) / 6
            assert np.abs(libvl_imsmooth_f(im, big) - vl_imsmooth(im, big)).max() > 20 * 2e-6


def reference_phow(im):
    """vl_phow assembled from VLFeat's own code, scale by scale: vl_imsmooth (above), dense SIFT (cyvlfeat)."""
    from cyvlfeat.sift import dsift as vl_dsift

    H, W = im.shape
    frames, descs = [], []
    for s in SIZES:
        off = math.floor(1 + 1.5 * (max(SIZES) - s))  # vl_phow's 1-based offset
        ims = vl_imsmooth(im, s / 6)
        f, d = vl_dsift(
            ims,
            step=2,
            size=s,
            bounds=np.array([off - 1, off - 1, H - 1, W - 1]),
            window_size=1.5,
            fast=True,
            norm=True,
        )
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
        print(
            f"\nphow vs VLFeat dsift per scale: {len(sample_images)} images, within 1 level {share:.8%} of "
            f"{total} entries ({total - within} beyond), max |diff| {maxdiff}, descriptors zeroed on one side only "
            f"(contrast within float error of the threshold): {threshold_flips}"
        )
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


def test_transformer_equalizes_unless_told(sample_images):
    raw = read_xray(sample_images[1])[:256, :256].copy()
    t = PHOW()
    assert t.fit(None) is t and t.get_params()["sizes"] == SIZES
    ((f1, d1),) = t.transform([raw])
    f2, d2 = phow(equalize(raw))
    np.testing.assert_array_equal(d1, d2)
    ((f3, d3),) = PHOW(equalization="none").transform([raw])
    np.testing.assert_array_equal(d3, phow(raw)[1])
    batch = phow_batch([raw, raw[::-1].copy()], n_jobs=2)
    np.testing.assert_array_equal(batch[0][1], d3)
