"""RootSIFT, PCA, the Gaussian mixture vocabulary and Fisher vectors.

Fidelity against VLFeat (``cyvlfeat.fisher.fisher``) is measured per vector
as ``max_i |a_i - b_i| / max_i |b_i|`` (the error of every entry relative to
the vector's largest entry), ``a`` ours, ``b`` VLFeat's, both float32.  An
error relative to each entry's own size is not a usable criterion: VLFeat
accumulates in float32 and its small entries carry rounding errors far
above 1e-4 of their size (measured on these images: up to ~0.1 for
entries near zero, ~1e-3 for entries above 1% of the largest, in the
improved vector).  The tests therefore also compare both against a float64
evaluation of the same formulas and require ours to be at least as close to
it as VLFeat's.
"""

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError
from sklearn.utils.estimator_checks import parametrize_with_checks

from conftest import SKLEARN_CHECKS_NOT_APPLICABLE, applicable_checks
from phow_baseline.encoding.fisher import (
    FisherVectorEncoder,
    fisher_regions,
    fisher_vector,
    nonzero_rows,
    region_index,
    region_weights,
)
from phow_baseline.encoding.gmm import GaussianMixtureVocabulary, gmm_posteriors
from phow_baseline.features.descriptors import PCA, RootSIFT, root_sift

FIDELITY = 1e-4


# --------------------------------------------------------------------------
# helpers: a float64 implementation of vl_fisher straight from its formulas
# --------------------------------------------------------------------------


def fisher_reference(X, means, covs, priors, improved=False, fast=False):
    """vl_fisher's formulas in float64, one descriptor and one component at a time (no GEMM)."""
    X = np.asarray(X, np.float64)
    M, S, w = (np.asarray(a, np.float64) for a in (means, covs, priors))
    K, d = M.shape
    logp = np.empty((len(X), K))
    for k in range(K):
        logp[:, k] = (
            np.log(w[k])
            - 0.5 * d * np.log(2 * np.pi)
            - 0.5 * np.log(S[k]).sum()
            - 0.5 * (((X - M[k]) ** 2) / S[k]).sum(1)
        )
    Q = np.exp(logp - logp.max(1, keepdims=True))
    Q /= Q.sum(1, keepdims=True)
    if fast:
        Q = (Q == Q.max(1, keepdims=True)).astype(float)
    u = np.zeros((K, d))
    v = np.zeros((K, d))
    for k in range(K):
        if w[k] < 1e-6:
            continue
        for i in range(len(X)):
            if Q[i, k] < 1e-6:
                continue
            z = (X[i] - M[k]) / np.sqrt(S[k])
            u[k] += Q[i, k] * z
            v[k] += Q[i, k] * (z * z - 1)
        u[k] /= len(X) * np.sqrt(w[k])
        v[k] /= len(X) * np.sqrt(2 * w[k])
    enc = np.concatenate([u.ravel(), v.ravel()])
    if improved:
        enc = np.sign(enc) * np.sqrt(np.abs(enc))
        enc /= max(np.linalg.norm(enc), 1e-12)
    return enc


def rel_to_max(a, b):
    return float(np.abs(np.asarray(a, np.float64) - b).max() / np.abs(b).max())


@pytest.fixture(scope="module")
def small_mixture():
    rng = np.random.default_rng(1)
    K, d = 5, 4
    means = rng.normal(0, 1, (K, d)).astype(np.float32)
    covs = rng.uniform(0.05, 0.5, (K, d)).astype(np.float32)
    priors = rng.dirichlet(np.ones(K)).astype(np.float32)
    comp = rng.integers(0, K, 300)
    X = (means[comp] + rng.normal(0, 1, (300, d)) * np.sqrt(covs[comp])).astype(np.float32)
    return X, means, covs, priors


# --------------------------------------------------------------------------
# RootSIFT and PCA
# --------------------------------------------------------------------------


def test_root_sift_is_sqrt_of_l1_normalized_and_hellinger():
    rng = np.random.default_rng(0)
    A = rng.integers(0, 256, (50, 128)).astype(np.uint8)
    A[3] = 0
    R = root_sift(A)
    assert R.dtype == np.float32
    np.testing.assert_allclose(R[0], np.sqrt(A[0] / A[0].sum()), rtol=1e-6)
    assert np.all(R[3] == 0)
    norms = np.linalg.norm(R, axis=1)
    np.testing.assert_allclose(np.delete(norms, 3), 1.0, rtol=1e-5)
    # Euclidean geometry of RootSIFT = Hellinger kernel of the histograms
    a, b = A[0].astype(float), A[1].astype(float)
    np.testing.assert_allclose(R[0] @ R[1], np.sqrt(a * b).sum() / np.sqrt(a.sum() * b.sum()), rtol=1e-5)
    # scale invariant (uint8 vs float descriptors)
    np.testing.assert_allclose(root_sift(A.astype(np.float32) / 512), R, rtol=1e-6)
    np.testing.assert_array_equal(RootSIFT().fit_transform(A), R)
    with pytest.raises(ValueError, match="Negative values"):
        root_sift(-np.ones((2, 3)))


def test_pca_axes_variances_whitening_and_storage(tmp_path):
    from sklearn.decomposition import PCA as SkPCA

    rng = np.random.default_rng(0)
    X = (rng.normal(size=(2000, 12)) @ rng.normal(size=(12, 12))).astype(np.float32)
    with pytest.raises(NotFittedError):
        PCA(4).transform(X)
    p = PCA(5).fit(X)
    np.testing.assert_allclose(p.components_ @ p.components_.T, np.eye(5), atol=1e-10)
    Y = p.transform(X)
    assert Y.dtype == np.float32 and Y.shape == (2000, 5)
    C = np.cov(Y.astype(np.float64), rowvar=False)
    np.testing.assert_allclose(np.diag(C), p.explained_variance_, rtol=1e-4)
    assert np.abs(C - np.diag(np.diag(C))).max() < 1e-4 * C.max()
    assert np.all(np.diff(p.explained_variance_) <= 0)
    sk = SkPCA(5).fit(X)
    np.testing.assert_allclose(p.explained_variance_, sk.explained_variance_, rtol=1e-4)
    np.testing.assert_allclose(np.abs(p.components_), np.abs(sk.components_), atol=1e-4)
    W = PCA(5, whiten=True, whiten_eps=0).fit(X).transform(X)
    np.testing.assert_allclose(W.astype(np.float64).var(0, ddof=1), 1.0, rtol=1e-3)
    # storage as data
    np.savez(tmp_path / "pca.npz", **p.to_arrays())
    with np.load(tmp_path / "pca.npz", allow_pickle=False) as z:
        q = PCA.from_arrays(dict(z))
    np.testing.assert_array_equal(q.transform(X), Y)
    with pytest.raises(ValueError, match="n_components"):
        PCA(13).fit(X)


_PCA_FLOAT32 = (
    "transform is one float32 GEMM; BLAS sums the rows of a permuted input in another order "
    "(float32 rounding, ~1e-7 relative), above the check's rtol 1e-7"
)


@applicable_checks(
    parametrize_with_checks(
        [PCA(n_components=2), RootSIFT(), GaussianMixtureVocabulary(n_components=2, max_iter=5)],
        expected_failed_checks=lambda e: (
            {"check_methods_sample_order_invariance": _PCA_FLOAT32} if isinstance(e, PCA) else {}
        ),
    ),
    SKLEARN_CHECKS_NOT_APPLICABLE,
)
def test_scikit_learn_checks(estimator, check):
    check(estimator)


# --------------------------------------------------------------------------
# The Gaussian mixture
# --------------------------------------------------------------------------


def _blobs(seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 3, (4, 6))
    comp = rng.integers(0, 4, 4000)
    X = centres[comp] + rng.normal(0, 1, (4000, 6)) * np.array([1, 0.5, 0.3, 1, 0.002, 0.8])
    return X.astype(np.float32), centres


def test_gmm_em_monotone_floor_and_fit():
    X, centres = _blobs()
    with pytest.raises(NotFittedError):
        GaussianMixtureVocabulary(4).predict_proba(X)
    # overlapping data and more components than blobs: EM has work left after k-means
    rng = np.random.default_rng(2)
    Y = np.concatenate([X[:, :4], rng.normal(0, 1, (len(X), 1)) * 0.002], axis=1) * 0.3
    g = GaussianMixtureVocabulary(8, max_iter=40, covariance_bound=1e-4, kmeans_max_iter=2, random_state=0).fit(Y)
    hist = g.log_likelihood_history_
    assert len(hist) == g.n_iter_ + 1 >= 5
    assert np.all(g.restarts_ == 0)
    assert np.all(np.diff(hist) >= -1e-9 * np.abs(hist[1:])), hist
    assert hist[-1] > hist[0] + 1.0
    assert np.all(g.covariances_[:, 4] == np.float32(1e-4))  # std 0.0006 in that dimension
    g = GaussianMixtureVocabulary(4, max_iter=30, covariance_bound=1e-4, random_state=0).fit(X)
    # dimension 4 has std 0.002 (variance 4e-6): the floor 1e-4 must hold it up
    assert np.all(g.covariances_ >= np.float32(1e-4))
    assert np.all(g.covariances_[:, 4] == np.float32(1e-4))
    np.testing.assert_allclose(g.priors_.sum(), 1.0, rtol=1e-6)
    # the four blobs are found
    d = np.linalg.norm(g.means_[:, None, [0, 1, 2, 3, 5]] - centres[None][:, :, [0, 1, 2, 3, 5]], axis=2)
    assert np.all(d.min(axis=0) < 0.1)
    # the final log-likelihood is that of the stored parameters
    _, ll = gmm_posteriors(X, g.means_, g.covariances_, g.priors_)
    np.testing.assert_allclose(ll, g.log_likelihood_, rtol=1e-5)
    # a larger floor is respected too
    g2 = GaussianMixtureVocabulary(4, max_iter=5, covariance_bound=0.5, random_state=0).fit(X)
    assert np.all(g2.covariances_ >= 0.5)


def test_gmm_restarts_empty_modes():
    # an isolated point holds a component of almost no mass: VLFeat's rule splits the
    # component of largest entropy contribution to restart it
    rng = np.random.default_rng(3)
    X = np.concatenate([rng.normal(c, 1, (300, 2)) for c in (0.0, 3.0, 6.0)])
    X = np.concatenate([X, X[:1] + 1000]).astype(np.float32)
    g = GaussianMixtureVocabulary(5, max_iter=12, covariance_bound=1e-4, kmeans_max_iter=1, random_state=0).fit(X)
    assert g.restarts_.sum() >= 1
    assert np.all(g.restarts_[:2] == 0)  # VLFeat restarts from the third E step on
    assert np.all(np.isfinite(g.means_)) and np.all(g.covariances_ >= 1e-4)
    np.testing.assert_allclose(g.priors_.sum(), 1, rtol=1e-6)
    # EM steps without a restart never lower the log-likelihood
    steps = np.diff(g.log_likelihood_history_)[g.restarts_[:-1] == 0]
    assert np.all(steps >= -1e-9 * np.abs(g.log_likelihood_history_).max())
    off = GaussianMixtureVocabulary(5, max_iter=12, kmeans_max_iter=1, restart_empty=False, random_state=0).fit(X)
    assert off.restarts_.sum() == 0


def test_gmm_storage_round_trip(tmp_path):
    X, _ = _blobs(1)
    g = GaussianMixtureVocabulary(3, max_iter=5, random_state=0).fit(X)
    np.savez(tmp_path / "gmm.npz", **g.to_arrays())
    with np.load(tmp_path / "gmm.npz", allow_pickle=False) as z:
        h = GaussianMixtureVocabulary.from_arrays(dict(z))
    for a in ("means_", "covariances_", "priors_"):
        np.testing.assert_array_equal(getattr(h, a), getattr(g, a))
    np.testing.assert_array_equal(h.predict_proba(X), g.predict_proba(X))
    assert h.log_likelihood_ == g.log_likelihood_
    with pytest.raises(ValueError, match="inconsistent"):
        GaussianMixtureVocabulary.from_arrays(
            {"means": g.means_, "covariances": g.covariances_[:2], "priors": g.priors_}
        )


# --------------------------------------------------------------------------
# Fisher vectors on plain arrays
# --------------------------------------------------------------------------


@pytest.mark.parametrize("flags", [{}, {"improved": True}, {"fast": True}, {"square_root": True}, {"normalized": True}])
def test_fisher_vector_equals_float64_formulas(small_mixture, flags):
    X, M, S, w = small_mixture
    ref = fisher_reference(X, M, S, w, improved=flags.get("improved", False), fast=flags.get("fast", False))
    if flags.get("square_root"):
        ref = np.sign(ref) * np.sqrt(np.abs(ref))
    if flags.get("normalized"):
        ref = ref / np.linalg.norm(ref)
    for kw in ({}, {"chunk": 7}, {"chunk": 7, "n_threads": 3}):
        a = fisher_vector(X, M, S, w, **flags, **kw)
        assert a.dtype == np.float32 and a.shape == (2 * 5 * 4,)
        assert rel_to_max(a, ref) < 1e-5, (kw, rel_to_max(a, ref))


def test_fisher_vector_skips_tiny_posteriors_and_priors(small_mixture):
    X, M, S, w = small_mixture
    w2 = w.copy()
    w2[2] = 1e-7  # below VLFeat's minimum prior: no mass, zero block
    w2 /= w2.sum()
    a = fisher_vector(X, M, S, w2)
    K, d = M.shape
    assert np.all(a[2 * d : 3 * d] == 0) and np.all(a[K * d + 2 * d : K * d + 3 * d] == 0)
    assert rel_to_max(a, fisher_reference(X, M, S, w2)) < 1e-5
    # a descriptor far from every component but one contributes only there
    far = np.full((1, d), 50.0, np.float32)
    assert np.count_nonzero(fisher_vector(far, M, S, w)[: K * d]) == d
    # no descriptor: zero vector, also when normalized
    assert not np.any(fisher_vector(np.zeros((0, d), np.float32), M, S, w, improved=True))


def test_region_index_matches_pyramid_cells():
    from phow_baseline.encoding.pyramid import pyramid_cells

    rng = np.random.default_rng(0)
    xy = np.concatenate([rng.uniform(0, 255, (500, 2)), [[0, 0], [255, 255], [127.5, 127.5], [255, 0]]])
    cells, n = region_index(xy, 256, 256, ((1, 1), (2, 2), (4, 4)))
    ref, n_ref = pyramid_cells(xy, 256, 256, (1, 2, 4))
    np.testing.assert_array_equal(cells, ref)
    assert n == n_ref == 21
    strips, n = region_index(xy, 256, 256, "1x1+3x1")
    assert n == 4
    np.testing.assert_array_equal(strips[:, 1], 1 + np.clip(np.floor(xy[:, 1] * 3 / 255), 0, 2))
    with pytest.raises(ValueError, match="unknown region layout"):
        region_index(xy, 256, 256, "2x9")
    np.testing.assert_allclose(region_weights("1x1+2x2"), [1, 0.5, 0.5, 0.5, 0.5])


@pytest.mark.parametrize("regions", ["1x1+2x2", "1x1+3x1"])
def test_fisher_regions_is_weighted_concatenation(small_mixture, regions):
    X, M, S, w = small_mixture
    rng = np.random.default_rng(5)
    xy = rng.uniform(0, 100, (len(X), 2))
    xy[:, 0] = np.minimum(xy[:, 0], 45)  # right half empty: its 2x2 regions are zero blocks
    enc = fisher_regions(X, xy, 101, 101, M, S, w, regions=regions)
    cells, n_regions = region_index(xy, 101, 101, regions)
    wts = region_weights(regions)
    blocks = []
    for r in range(n_regions):
        sel = (cells == r).any(axis=1)
        blocks.append(wts[r] * fisher_reference(X[sel], M, S, w, improved=True) if sel.any() else np.zeros(2 * M.size))
    ref = np.concatenate(blocks)
    ref /= np.linalg.norm(ref)
    assert enc.shape == ref.shape
    assert rel_to_max(enc, ref) < 1e-5
    if regions == "1x1+2x2":
        assert not np.any(enc.reshape(n_regions, -1)[[2, 4]])  # right-hand quarters
    un = fisher_regions(X, xy, 101, 101, M, S, w, regions=regions, level_weights=[1] * 2, normalize=False)
    np.testing.assert_allclose(np.linalg.norm(un.reshape(n_regions, -1), axis=1)[0], 1, rtol=1e-5)


def _synthetic_images(n=6, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        m = 400
        frames = np.column_stack([rng.uniform(0, 63, (m, 2)), np.ones(m), np.full(m, 4)])
        desc = rng.integers(0, 60, (m, 128)).astype(np.uint8)
        desc[:20] = 0
        out.append((frames, desc))
    return out


def test_fisher_encoder_fit_transform_and_storage(tmp_path):
    imgs = _synthetic_images()
    enc = FisherVectorEncoder(n_components=4, pca_dims=8, max_iter=5, image_size=64, max_descriptors=2000)
    with pytest.raises(NotFittedError):
        enc.transform(imgs)
    F = enc.fit(imgs).transform(imgs)
    assert F.shape == (6, 5 * 2 * 4 * 8) == (6, enc.n_features_out_) and F.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(F, axis=1), 1, rtol=1e-5)
    # the encoder is RootSIFT -> PCA -> fisher_regions on the non-zero descriptors
    frames, desc = imgs[0]
    keep = nonzero_rows(desc)
    X = enc.pca_.transform(root_sift(desc[keep]))
    g = enc.gmm_
    # not bit for bit: the encoder projects chunk by chunk (float32 GEMMs of other row blocks round
    # differently, ~1e-7 relative), and the improved FV's square root magnifies that near zero
    np.testing.assert_allclose(
        F[0], fisher_regions(X, frames[keep, :2], 64, 64, g.means_, g.covariances_, g.priors_), atol=1e-6
    )
    arrays = enc.to_arrays()
    np.savez(tmp_path / "fv.npz", **arrays)
    params = {k: v for k, v in enc.get_params().items() if k not in ("gmm", "pca")}
    with np.load(tmp_path / "fv.npz", allow_pickle=False) as z:
        enc2 = FisherVectorEncoder.from_arrays(params, dict(z))
    np.testing.assert_array_equal(enc2.transform(imgs), F)
    with pytest.raises(ValueError, match="unknown region layout"):
        FisherVectorEncoder(regions="5x5").fit(imgs)


# --------------------------------------------------------------------------
# Fidelity against VLFeat on real PHOW descriptors
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_fv_raw(sample_images):
    """PHOW of 4 sample images at 256 px, a PCA 80 and a 32-Gaussian mixture fitted on the first two."""
    from phow_baseline.data import read_xray
    from phow_baseline.data.preprocess import preprocess
    from phow_baseline.features.phow import phow

    imgs = [phow(preprocess(read_xray(p), 256)) for p in sample_images[:4]]
    train = np.concatenate([d[nonzero_rows(d)] for _, d in imgs[:2]])
    train = train[np.random.default_rng(0).choice(len(train), 12000, replace=False)]
    R = root_sift(train)
    pca = PCA(80).fit(R)
    gmm = GaussianMixtureVocabulary(32, max_iter=8, random_state=0).fit(pca.transform(R))
    return gmm, pca, imgs[2:]


@pytest.fixture(scope="module")
def real_fv_setup(real_fv_raw):
    gmm, pca, imgs = real_fv_raw
    tests = []
    for frames, d in imgs:
        keep = nonzero_rows(d)
        tests.append((frames[keep, :2], pca.transform(root_sift(d[keep]))))
    return gmm, tests


def test_fisher_moments_sparse_kernel_equals_dense_float64(real_fv_setup):
    """The sparse soft-max kernel gives the dense float64 moments ``Q^T [x^2, x, 1]`` (``Q < 1e-6`` zeroed),
    per group, whatever the chunking and the threads."""
    from phow_baseline.encoding.fisher import fisher_moments

    g, tests = real_fv_setup
    args = (g.means_, g.covariances_, g.priors_)
    X = tests[0][1][:6000]
    groups = np.random.default_rng(0).integers(0, 3, len(X))
    Q, _ = gmm_posteriors(X.astype(np.float64), *args)
    assert 1 < (Q >= 1e-6).sum(1).mean() < 0.5 * Q.shape[1]  # soft, and sparse: the kernel's case
    Q[Q < 1e-6] = 0
    X64 = X.astype(np.float64)
    A = np.hstack([X64**2, X64, np.ones((len(X), 1))])
    ref = np.stack([Q[groups == k].T @ A[groups == k] for k in range(3)])
    for kw in ({}, {"chunk": 777}, {"chunk": 500, "n_threads": 2}):
        G = fisher_moments(X, *args, groups, 3, **kw)
        assert G.shape == ref.shape == (3, 32, 161)
        for part in (slice(0, 80), slice(80, 160), slice(160, 161)):  # S2, S1, S0
            assert rel_to_max(G[..., part], ref[..., part]) < 1e-5, (kw, part)
    with pytest.raises(ValueError, match="groups"):
        fisher_moments(X, *args, groups + 1, 3)


def test_fisher_encoder_fused_path_equals_separate_steps(real_fv_raw):
    """``encode_one`` on uint8 descriptors (RootSIFT and PCA per chunk) equals RootSIFT, PCA, then
    :func:`fisher_regions` on the whole image, and the float-descriptor path."""
    gmm, pca, imgs = real_fv_raw
    enc = FisherVectorEncoder(gmm=gmm, pca=pca).fit(None)
    for frames, d in imgs:
        keep = nonzero_rows(d)
        ref = fisher_regions(
            pca.transform(root_sift(d[keep])), frames[keep, :2], 256, 256, gmm.means_, gmm.covariances_, gmm.priors_
        )
        a = enc.encode_one(frames, d)
        assert a.shape == ref.shape == (enc.n_features_out_,)
        assert rel_to_max(a, ref) < 1e-5
        assert rel_to_max(enc.encode_one(frames, d.astype(np.float32)), ref) < 1e-5


@pytest.mark.peer
@pytest.mark.parametrize("flags", [{}, {"improved": True}, {"fast": True}, {"square_root": True}])
def test_fisher_matches_vlfeat_on_real_phow(real_fv_setup, flags):
    import cyvlfeat.fisher as cyfisher  # the peer marker has checked it (tests/conftest.py)

    g, tests = real_fv_setup
    args = (g.means_, g.covariances_, g.priors_)
    for _, X in tests:
        a = fisher_vector(X, *args, **flags)
        b = cyfisher.fisher(X, *args, **flags).ravel()
        assert a.shape == b.shape
        err = rel_to_max(a, b)
        assert err < FIDELITY, err
        if flags.get("fast"):
            continue  # float64 ties of the arg-max are not comparable
        # ours is at least as close as VLFeat's to a float64 evaluation of the formulas
        Q, _ = gmm_posteriors(X.astype(np.float64), *args)
        Q[Q < 1e-6] = 0
        M, S, w = (np.asarray(v, np.float64) for v in args)
        X64 = X.astype(np.float64)
        S0 = Q.sum(0)[:, None]
        S1, S2 = Q.T @ X64, Q.T @ X64**2
        u = (S1 - S0 * M) / np.sqrt(S) / (len(X) * np.sqrt(w[:, None]))
        v = ((S2 - 2 * M * S1 + S0 * M * M) / S - S0) / (len(X) * np.sqrt(2 * w[:, None]))
        ref = np.concatenate([u.ravel(), v.ravel()])
        if flags.get("improved") or flags.get("square_root"):
            ref = np.sign(ref) * np.sqrt(np.abs(ref))
        if flags.get("improved"):
            ref /= np.linalg.norm(ref)
        assert np.abs(a - ref).max() <= np.abs(b - ref).max() * 1.01 + 1e-9


@pytest.mark.peer
def test_fisher_regions_match_vlfeat_on_real_phow(real_fv_setup):
    import cyvlfeat.fisher as cyfisher  # the peer marker has checked it (tests/conftest.py)

    g, tests = real_fv_setup
    args = (g.means_, g.covariances_, g.priors_)
    xy, X = tests[0]
    for regions in ("1x1+2x2", "1x1+3x1"):
        enc = fisher_regions(X, xy, 256, 256, *args, regions=regions, n_threads=2)
        cells, n_regions = region_index(xy, 256, 256, regions)
        wts = region_weights(regions)
        ref = np.concatenate(
            [
                wts[r] * cyfisher.fisher(np.ascontiguousarray(X[(cells == r).any(1)]), *args, improved=True).ravel()
                for r in range(n_regions)
            ]
        )
        ref /= np.linalg.norm(ref)
        assert rel_to_max(enc, ref) < FIDELITY


# --------------------------------------------------------------------------
# The model directory with FV / VLAD
# --------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("encoding", ["fisher", "vlad"])
def test_phow_model_with_fv_or_vlad_saves_and_loads_as_data(tmp_path, encoding):
    from phow_baseline.classification.svm import OneVsRestSVM
    from phow_baseline.config import BaselineConfig
    from phow_baseline.data.chestxray14 import LABELS
    from phow_baseline.encoding import encoding_for
    from phow_baseline.features.phow import make_phow
    from phow_baseline.model.directory import load_model
    from phow_baseline.model.phow_model import HeatmapsUnavailableError, PhowModel

    cfg = BaselineConfig(
        size=64,
        encoding=encoding,
        fv_components=4,
        fv_pca_dims=16,
        gmm_max_iter=5,
        vlad_words=4,
        max_descriptors=3000,
        regions="1x1+3x1",
        calibration="none",
    )
    rng = np.random.default_rng(0)
    imgs = [(rng.random((64, 64)) * np.linspace(0.2, 1, 64)[None] * 255).astype(np.uint8) for _ in range(12)]
    phow = make_phow(cfg)
    pairs = phow.transform(imgs)
    registered = encoding_for(cfg)
    vocab = registered.fit(cfg, np.concatenate([d for _, d in pairs]))
    enc = registered.make_encoder(vocab, cfg)
    X = enc.transform(pairs)
    dim = 4 * (2 * 4 * 16 if encoding == "fisher" else 4 * 128)
    assert X.shape == (12, dim)
    Y = np.tile([0, 1], (14, 6)).T
    Y[::3] = 1 - Y[::3]
    model = PhowModel(cfg, vocab, OneVsRestSVM(C=1.0).fit(X, Y))
    assert model.kernel_map is None  # FV / VLAD: linear SVMs on the vectors
    model.save(tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    assert loaded.config.encoding == encoding and loaded.config.regions == "1x1+3x1"
    np.testing.assert_allclose(loaded.raw_scores(imgs[0]), model.raw_scores(imgs[0]), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(model.raw_scores(imgs[0]), model.decision_function(X[:1])[0], rtol=1e-5, atol=1e-6)
    assert len(loaded.raw_scores(imgs[1])) == len(LABELS)
    with pytest.raises(HeatmapsUnavailableError, match="bag-of-words"):
        loaded.heatmaps(imgs[0])
