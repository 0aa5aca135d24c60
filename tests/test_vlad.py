"""VLAD: vl_vlad's formulas, regions, the encoder, and fidelity against VLFeat.

Fidelity against ``cyvlfeat.vlad.vlad`` is measured per vector as
``max_i |a_i - b_i| / max_i |b_i|`` (ours ``a``, VLFeat's ``b``), as in
``test_fisher.py``: VLFeat sums the residuals in float32, so its small entries
carry rounding errors that a per-entry relative error would blame on us; we
sum in float64 and the test also requires ours to be at least as close as
VLFeat's to a float64 evaluation.
"""

import itertools

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError

from phow_baseline.encoding.fisher import nonzero_rows, region_index, region_weights
from phow_baseline.encoding.quantize import quantize
from phow_baseline.encoding.vlad import VladEncoder, vlad, vlad_regions
from phow_baseline.features.descriptors import root_sift

FIDELITY = 1e-4
FLAG_NAMES = ("unnormalized", "square_root", "normalize_components", "normalize_mass")
ALL_FLAGS = [dict(zip(FLAG_NAMES, v)) for v in itertools.product([False, True], repeat=4)]


def vlad_reference(
    X, C, words, unnormalized=False, square_root=False, normalize_components=False, normalize_mass=False
):
    """vl_vlad's steps in float64, word by word."""
    X = np.asarray(X, np.float64)
    C = np.asarray(C, np.float64)
    out = []
    for k in range(len(C)):
        sel = words == k
        v = np.zeros(C.shape[1])
        if sel.any():
            v = X[sel].sum(0)
            v = v / sel.sum() - C[k] if normalize_mass else v - sel.sum() * C[k]
        if square_root:
            v = np.sign(v) * np.sqrt(np.abs(v))
        if normalize_components:
            v = v / max(np.linalg.norm(v), 1e-12)
        out.append(v)
    enc = np.concatenate(out)
    if not unnormalized:
        enc = enc / max(np.linalg.norm(enc), 1e-12)
    return enc


def rel_to_max(a, b):
    return float(np.abs(np.asarray(a, np.float64) - b).max() / np.abs(b).max())


@pytest.fixture(scope="module")
def small():
    rng = np.random.default_rng(0)
    C = rng.normal(0, 1, (6, 5)).astype(np.float32)
    C[5] += 50.0
    X = (C[rng.integers(0, 5, 200)] + rng.normal(0, 0.4, (200, 5))).astype(np.float32)  # word 5 stays empty
    return X, C


@pytest.mark.parametrize("flags", ALL_FLAGS, ids=lambda f: "+".join(k for k, v in f.items() if v) or "default")
def test_vlad_equals_float64_formulas(small, flags):
    X, C = small
    words = quantize(X, C)
    a = vlad(X, C, words, **flags)
    ref = vlad_reference(X, C, words, **flags)
    assert a.dtype == np.float32 and a.shape == (C.size,)
    assert rel_to_max(a, ref) < 1e-6
    np.testing.assert_array_equal(vlad(X, C, **flags), a)  # default words: the nearest


def test_vlad_empty_word_and_no_descriptor(small):
    X, C = small
    words = quantize(X, C)
    assert not np.any(words == 5)
    a = vlad(X, C, words, unnormalized=True)
    assert not np.any(a[5 * 5 :])
    assert not np.any(vlad(X[:0], C))
    with pytest.raises(ValueError, match="words"):
        vlad(X, C, np.full(len(X), 6))


@pytest.mark.parametrize("regions", ["1x1+2x2", "1x1+3x1"])
def test_vlad_regions_is_weighted_concatenation(small, regions):
    X, C = small
    rng = np.random.default_rng(1)
    xy = rng.uniform(0, 63, (len(X), 2))
    xy[:, 1] = np.minimum(xy[:, 1], 15)  # only the top quarter-height is populated
    enc = vlad_regions(X, xy, 64, 64, C, regions=regions)
    cells, n_regions = region_index(xy, 64, 64, regions)
    words = quantize(X, C)
    w = region_weights(regions)
    ref = np.concatenate(
        [
            w[r]
            * vlad_reference(
                X[(cells == r).any(1)], C, words[(cells == r).any(1)], square_root=True, normalize_components=True
            )
            for r in range(n_regions)
        ]
    )
    ref /= np.linalg.norm(ref)
    assert rel_to_max(enc, ref) < 1e-6
    blocks = enc.reshape(n_regions, -1)
    empty = [3, 4] if regions == "1x1+2x2" else [2, 3]  # bottom regions
    assert not np.any(blocks[empty]) and np.all(np.abs(blocks[:2]).sum(1) > 0)


def test_vlad_encoder_fit_transform_and_storage(tmp_path):
    rng = np.random.default_rng(0)
    imgs = []
    for _ in range(5):
        frames = np.column_stack([rng.uniform(0, 63, (300, 2)), np.ones(300), np.full(300, 4)])
        d = rng.integers(0, 50, (300, 128)).astype(np.uint8)
        d[:10] = 0
        imgs.append((frames, d))
    enc = VladEncoder(n_words=8, pca_dims=16, image_size=64, max_descriptors=1000)
    with pytest.raises(NotFittedError):
        enc.transform(imgs)
    F = enc.fit(imgs).transform(imgs)
    assert F.shape == (5, 5 * 8 * 16) == (5, enc.n_features_out_) and F.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(F, axis=1), 1, rtol=1e-5)
    frames, d = imgs[1]
    keep = nonzero_rows(d)
    X = enc.pca_.transform(root_sift(d[keep]))
    ref = vlad_regions(X, frames[keep, :2], 64, 64, enc.vocabulary_.cluster_centers_)
    # compared before the signed square root (F |F|): the root magnifies the float32 rounding of entries near
    # zero (d sqrt(v) = dv / 2 sqrt(v)), and the PCA GEMM here runs on other rows than the encoder's
    np.testing.assert_allclose(F[1] * np.abs(F[1]), ref * np.abs(ref), rtol=0, atol=1e-7)
    np.savez(tmp_path / "vlad.npz", **enc.to_arrays())
    params = {k: v for k, v in enc.get_params().items() if k not in ("vocabulary", "pca")}
    with np.load(tmp_path / "vlad.npz", allow_pickle=False) as z:
        enc2 = VladEncoder.from_arrays(params, dict(z))
    np.testing.assert_array_equal(enc2.transform(imgs), F)


@pytest.fixture(scope="module")
def real_vlad_setup(sample_images):
    from phow_baseline.data import read_xray
    from phow_baseline.data.preprocess import preprocess
    from phow_baseline.encoding.vocabulary import Vocabulary
    from phow_baseline.features.phow import phow

    imgs = [phow(preprocess(read_xray(p), 256)) for p in sample_images[4:7]]
    S = root_sift(np.concatenate([d[nonzero_rows(d)] for _, d in imgs[:2]]))
    C = Vocabulary(64, max_descriptors=15000, max_iter=20).fit(S).cluster_centers_
    d = imgs[2][1]
    return C, root_sift(d[nonzero_rows(d)])


@pytest.mark.peer
def test_vlad_matches_vlfeat_on_real_phow(real_vlad_setup):
    import cyvlfeat.vlad as cyvlad  # the peer marker has checked it (tests/conftest.py)

    C, X = real_vlad_setup
    words = quantize(X, C)
    onehot = np.zeros((len(X), len(C)), np.float32)
    onehot[np.arange(len(X)), words] = 1
    for flags in ALL_FLAGS:
        a = vlad(X, C, words, **flags)
        b = cyvlad.vlad(X, C, onehot, **flags).ravel()
        assert a.shape == b.shape
        assert rel_to_max(a, b) < FIDELITY, (flags, rel_to_max(a, b))
        ref = vlad_reference(X, C, words, **flags)
        assert np.abs(a - ref).max() <= np.abs(b - ref).max() * 1.01 + 1e-9, flags
