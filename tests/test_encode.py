"""Quantisation, spatial pyramid, kernel map and the feature-shard store."""

import json

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from sklearn.cluster import KMeans

from phow_baseline.encode import (FeatureStore, HomogeneousKernelMap, homkermap_constants, level_weights,
                                  make_kernel_map, normalise_pyramid, pyramid_cells, quantize, quantize_histogram)


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
    for n_threads in (1, 2):
        got = quantize(X, C, n_threads=n_threads)
        assert (got == want).mean() == 1.0
    # float input, odd chunking
    w2, _ = quantize_histogram(X.astype(np.float32), C, chunk=37)
    assert (w2 == want).all()


def test_quantize_brute_force_small():
    rng = np.random.default_rng(1)
    C = rng.random((7, 4)).astype(np.float32)
    X = rng.random((100, 4)).astype(np.float32)
    brute = ((X[:, None] - C[None]) ** 2).sum(-1).argmin(1)
    assert (quantize(X, C) == brute).all()


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


def test_normalise_vlfeat_and_lazebnik():
    k, grids = 3, (2, 4)
    counts = np.arange(1, 20 * k + 1, dtype=float)
    f = normalise_pyramid(counts, grids, k, "vlfeat")
    assert f.dtype == np.float32 and abs(f.sum() - 1) < 1e-6
    # each level sums to the same share (1/2 each) under VLFeat's scheme
    assert abs(f[: 4 * k].sum() - 0.5) < 1e-6
    g = normalise_pyramid(counts, (1, 2, 4), k, "lazebnik")
    np.testing.assert_allclose(level_weights((1, 2, 4), "lazebnik"), [0.25, 0.25, 0.5])
    assert abs(g.sum() - 1) < 1e-6
    assert not normalise_pyramid(np.zeros(20 * k), grids, k).any()


def test_homkermap_approximates_chi2():
    hk = HomogeneousKernelMap(order=1, gamma=1.0).fit()
    period, L, kappa = homkermap_constants(1)
    assert abs(period - (8.80 * np.sqrt(5.44) - 12.6)) < 1e-12
    rng = np.random.default_rng(3)
    x, y = rng.random((2, 200)) + 0.05
    approx = (hk.transform(x[None]) * hk.transform(y[None])).sum()
    exact = (2 * x * y / (x + y)).sum()
    assert abs(approx - exact) / exact < 0.01
    # gamma 0.5 (VLFeat's PHOW setting): k(x, x) = x^gamma... exactly sqrt-homogeneous
    hk5 = HomogeneousKernelMap().fit()
    a = hk5.transform(np.array([[0.04]]))
    b = hk5.transform(np.array([[0.16]]))
    assert abs((b * b).sum() / (a * a).sum() - 2.0) < 1e-4
    assert not hk5.transform(np.zeros((1, 5))).any()
    assert hk5.transform(np.ones((2, 4))).shape == (2, 12)


def test_additive_chi2_option():
    m = make_kernel_map("additive_chi2")
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
    w, h = quantize_histogram(X, C)
    assert h.sum() == n and w.shape == (n,)
    if n:
        d = ((X[:, None].astype(np.float64) - C[None]) ** 2).sum(-1)
        chosen = d[np.arange(n), w]
        assert np.all(chosen <= d.min(1) * (1 + 1e-5) + 1e-3)
