"""Quantization, spatial pyramid, kernel map and the feature-shard store."""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.cluster import KMeans

from phow_baseline.classification.kernel_map import HomogeneousKernelMap, homkermap_constants, make_kernel_map
from phow_baseline.encoding.pyramid import level_weights, normalize_pyramid, pyramid_cells
from phow_baseline.encoding.quantize import PRUNE_DIMS, PruningTables, pruning_tables, quantize, quantize_histogram
from phow_baseline.encoding.store import FeatureStore


@pytest.fixture(scope="module")
def words_and_descriptors():
    rng = np.random.default_rng(0)
    centers = (rng.random((50, 128)) * 80).astype(np.float32)
    X = (centers[rng.integers(0, 50, 5000)] + rng.normal(0, 20, (5000, 128))).clip(0, 255).astype(np.uint8)
    X[::7] = 0  # PHOW's zeroed low-contrast descriptors
    return centers, X


def test_quantize_matches_kmeans_predict(words_and_descriptors):
    C, X = words_and_descriptors
    km = KMeans(len(C), n_init=1, max_iter=1).fit(C)
    km.cluster_centers_ = C.copy()
    want = km.predict(X.astype(np.float32))
    for method in ("gemm", "pruned"):
        for n_threads in (1, 2):
            got = quantize(X, C, n_threads=n_threads, method=method)
            assert (got == want).mean() == 1.0
        # float input, odd chunking
        w2, _ = quantize_histogram(X.astype(np.float32), C, chunk=37, method=method)
        assert (w2 == want).all()


def test_quantize_brute_force_small():
    rng = np.random.default_rng(1)
    C = rng.random((7, 4)).astype(np.float32)
    X = rng.random((100, 4)).astype(np.float32)
    brute = ((X[:, None] - C[None]) ** 2).sum(-1).argmin(1)
    assert (quantize(X, C) == brute).all()
    assert (quantize(X, C, method="pruned") == brute).all()
    with pytest.raises(ValueError, match="method must be"):
        quantize(X, C, method="fast")


def _brute_force_words(X, C):
    X64, C64 = X.astype(np.float64), C.astype(np.float64)
    d = (C64**2).sum(1)[None] - 2 * X64 @ C64.T + (X64**2).sum(1)[:, None]
    return d, d.argmin(1)


@pytest.fixture(scope="module")
def real_words_and_descriptors(sample_images):
    """PHOW descriptors of 4 real images and 300 words k-means'd on 6 others."""
    from phow_baseline.data.preprocess import preprocess
    from phow_baseline.encoding.vocabulary import Vocabulary
    from phow_baseline.features.phow import phow

    train = [phow(preprocess(p, 128))[1] for p in sample_images[20:26]]
    C = Vocabulary(300, max_descriptors=15_000, random_state=0).fit(train).cluster_centers_
    X = np.concatenate([phow(preprocess(p, 256))[1] for p in sample_images[:4]])
    return C, X


def test_pruned_search_is_exact_on_real_descriptors(real_words_and_descriptors):
    C, X = real_words_and_descriptors
    assert C.shape == (300, 128) and len(X) > 150_000
    d, want = _brute_force_words(X, C)
    got = quantize(X, C, method="pruned")
    assert quantize(X, C, method="auto").tolist() == got.tolist()  # 300 words, 128 dims: pruned
    # exact: the chosen word is the float64 nearest one (ties within 1e-12 aside)
    chosen = d[np.arange(len(X)), got]
    assert np.all(chosen <= d.min(1) + 1e-12 * np.abs(d).max())
    assert (got == want).mean() > 0.99999
    km = KMeans(len(C), n_init=1, max_iter=1).fit(C)
    km.cluster_centers_ = C.copy()
    assert (got == km.predict(X.astype(np.float32))).mean() > 0.99999
    # the histogram is the same whichever search runs
    cells, n_cells = pyramid_cells(np.random.default_rng(0).random((len(X), 2)) * 255, 256, 256, (2, 4))
    _, h1 = quantize_histogram(X, C, cells, n_cells, method="pruned")
    _, h2 = quantize_histogram(X, C, cells, n_cells, method="gemm")
    assert np.abs(h1 - h2).sum() <= 2 * 2 * (got != quantize(X, C, method="gemm")).sum()


def test_pruning_bound_is_a_lower_bound(real_words_and_descriptors):
    """[p, 1, r] @ bound never exceeds the exact ||x - c||^2 - ||x - mu||^2 (beyond float32 rounding)."""
    C, X = real_words_and_descriptors
    T = pruning_tables(C)
    assert T is pruning_tables(C.copy())  # cached by content
    x = X[X.any(1)][::50].astype(np.float64)
    xc = x - T.mu
    P = xc @ T.V.astype(np.float64)
    r = np.sqrt(np.maximum((xc**2).sum(1) - (P**2).sum(1), 0))
    bound = np.hstack([P, np.ones((len(x), 1)), r[:, None]]) @ T.bound.astype(np.float64)
    exact = T.centred_sq[None] - 2 * xc @ T.centred.T
    scale = (xc**2).sum(1)[:, None] + T.centred_sq.max()
    assert ((bound - exact) / scale).max() < 1e-6
    # and it prunes: few words per descriptor come near the bound of the best
    best = exact.min(1)
    near = (bound <= (best + 1e-4 * scale[:, 0])[:, None]).sum(1)
    assert near.mean() < 10 and T.n_dims == PRUNE_DIMS


def test_pruned_search_adversarial():
    """Descriptors inside the kept subspace, duplicated words, exact ties: still the brute-force answer."""
    rng = np.random.default_rng(7)
    C = (rng.random((100, 128)) * 40).astype(np.float32)
    C[50] = C[10]  # duplicate word: ties go to the lower index
    T = PruningTables(C)
    # points whose residual r is ~0: mu + combinations of the kept axes
    coef = rng.normal(0, 30, (300, PRUNE_DIMS))
    inside = (T.mu + coef @ T.V.T.astype(np.float64)).astype(np.float32)
    X = np.vstack([inside, C[:60], C[:60] + 0.5, rng.random((300, 128)).astype(np.float32) * 60])
    d, want = _brute_force_words(X, C)
    got = quantize(X, C, method="pruned")
    chosen = d[np.arange(len(X)), got]
    assert np.all(chosen <= d.min(1) + 1e-9 * np.abs(d).max())
    assert 50 not in set(got[300:360].tolist())  # duplicate of word 10 never wins its tie
    assert (got[300:360] == np.where(np.arange(60) == 50, 10, np.arange(60))).all()


def test_zero_descriptors_get_the_word_nearest_the_origin(words_and_descriptors):
    C, X = words_and_descriptors
    w = quantize(X, C)
    assert (w[::7] == np.argmin((C.astype(np.float64) ** 2).sum(1))).all()


def test_histogram_counts_per_cell(words_and_descriptors):
    C, X = words_and_descriptors
    rng = np.random.default_rng(2)
    xy = rng.random((len(X), 2)) * 255
    cells, n_cells = pyramid_cells(xy, 256, 256, (2, 4))
    assert n_cells == 20 and cells[:, 0].max() < 4 and cells[:, 1].min() >= 4
    words, counts = quantize_histogram(X, C, cells, n_cells, n_threads=2)
    k = len(C)
    ref = np.zeros(n_cells * k)
    for l in range(2):
        np.add.at(ref, cells[:, l] * k + words, 1)
    np.testing.assert_array_equal(counts, ref)
    assert counts.sum() == 2 * len(X)


def test_pyramid_cells_edges():
    xy = np.array([[0, 0], [255, 255], [127.4, 0], [127.6, 200]])
    cells, n = pyramid_cells(xy, 256, 256, (1, 2))
    assert n == 5
    assert cells[:, 0].tolist() == [0, 0, 0, 0]
    assert cells[:, 1].tolist() == [1, 4, 1, 4]


def test_normalize_vlfeat_and_lazebnik():
    k, grids = 3, (2, 4)
    counts = np.arange(1, 20 * k + 1, dtype=float)
    f = normalize_pyramid(counts, grids, k, "vlfeat")
    assert f.dtype == np.float32 and abs(f.sum() - 1) < 1e-6
    # each level sums to the same share (1/2 each) under VLFeat's scheme
    assert abs(f[: 4 * k].sum() - 0.5) < 1e-6
    g = normalize_pyramid(counts, (1, 2, 4), k, "lazebnik")
    np.testing.assert_allclose(level_weights((1, 2, 4), "lazebnik"), [0.25, 0.25, 0.5])
    assert abs(g.sum() - 1) < 1e-6
    assert not normalize_pyramid(np.zeros(20 * k), grids, k).any()


def test_homkermap_approximates_chi2():
    period, L, kappa, freq = homkermap_constants(1)
    assert abs(period - (8.80 * np.sqrt(5.44) - 12.6)) < 1e-12
    rng = np.random.default_rng(3)
    x, y = rng.random((2, 200)) + 0.05
    hk = HomogeneousKernelMap(order=1, gamma=1.0).fit(x[None])
    approx = (hk.transform(x[None]) * hk.transform(y[None])).sum()
    exact = (2 * x * y / (x + y)).sum()
    assert abs(approx - exact) / exact < 0.01
    # gamma 0.5 (VLFeat's PHOW setting): k(x, x) = x^gamma... exactly sqrt-homogeneous
    hk5 = HomogeneousKernelMap().fit(np.zeros((1, 1)))
    a = hk5.transform(np.array([[0.04]]))
    b = hk5.transform(np.array([[0.16]]))
    assert abs((b * b).sum() / (a * a).sum() - 2.0) < 1e-4
    assert not hk5.fit(np.zeros((1, 5))).transform(np.zeros((1, 5))).any()
    assert hk5.fit(np.ones((2, 4))).transform(np.ones((2, 4))).shape == (2, 12)


def test_additive_chi2_option():
    m = make_kernel_map("additive_chi2", n_features=4)
    assert m.transform(np.ones((2, 4)) * 0.1).shape == (2, 12)
    assert make_kernel_map("none") is None
    with pytest.raises(ValueError, match="kernel_map must be"):
        make_kernel_map("rbf")


def test_feature_store_atomic_and_resume(tmp_path):
    names = [f"{i:08d}_000.png" for i in range(10)]
    st_ = FeatureStore.create(tmp_path / "f", names, dim=6, params={"a": 1}, shard_size=4)
    assert st_.n_shards == 3 and st_.missing_shards() == [0, 1, 2]
    for s in range(3):
        st_.write_shard(s, np.full((len(st_.shard_rows(s)), 6), s, np.float32))
    with pytest.raises(ValueError, match="expected shape"):
        st_.write_shard(0, np.zeros((3, 6)))
    assert not list((tmp_path / "f").glob("*.tmp*"))
    again = FeatureStore.open(tmp_path / "f")
    assert again.missing_shards() == [] and again.load().shape == (10, 6)
    # batches: chosen rows, shuffled per epoch, positions index the selection
    rows = [1, 5, 9]
    seen = {}
    for Xb, pos in again.batches(rows, seed=0):
        for x, p in zip(Xb, pos):
            seen[int(p)] = x[0]
    assert seen == {0: 0.0, 1: 1.0, 2: 2.0}
    with pytest.raises(ValueError, match="other parameters"):
        FeatureStore.create(tmp_path / "f", names, dim=6, params={"a": 2}, shard_size=4)
    (tmp_path / "f" / "feat_00001.npy").unlink()
    with pytest.raises(FileNotFoundError, match="shard missing"):
        again.load()
    assert json.loads((tmp_path / "f" / "index.json").read_text())["dim"] == 6


@settings(max_examples=30, deadline=None)
@given(n=st.integers(0, 300), k=st.integers(1, 20), seed=st.integers(0, 1000))
def test_quantize_property(n, k, seed):
    rng = np.random.default_rng(seed)
    C = (rng.random((k, 16)) * 50).astype(np.float32)
    X = (rng.random((n, 16)) * 60).astype(np.uint8)
    for method in ("gemm", "pruned"):
        w, h = quantize_histogram(X, C, method=method)
        assert h.sum() == n and w.shape == (n,)
        if n:
            d = ((X[:, None].astype(np.float64) - C[None]) ** 2).sum(-1)
            chosen = d[np.arange(n), w]
            assert np.all(chosen <= d.min(1) * (1 + 1e-5) + 1e-3)
