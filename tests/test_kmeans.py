"""Lloyd k-means on the exact nearest-word search equals scikit-learn's KMeans step for step."""

import numpy as np
import pytest
from sklearn.cluster import KMeans
from sklearn.datasets import make_blobs

from phow_baseline.encoding.kmeans import fit_kmeans, kmeans_plusplus_init


def _points(n=2000, d=128, centers=30, seed=0):
    X, _ = make_blobs(n, n_features=d, centers=centers, cluster_std=4.0, random_state=seed)
    return (X * 3 + 50).astype(np.float32)  # positive, descriptor-like scale


def _sklearn(X, k, init, max_iter, tol, random_state=None):
    return KMeans(k, init=init, n_init=1, max_iter=max_iter, tol=tol, algorithm="lloyd", random_state=random_state).fit(
        X
    )


def _assert_same(ours, km):
    centers, labels, inertia, n_iter, history = ours
    assert n_iter == km.n_iter_ == len(history)
    np.testing.assert_array_equal(labels, km.labels_)
    np.testing.assert_allclose(centers, km.cluster_centers_, rtol=0, atol=1e-4 * np.abs(km.cluster_centers_).max())
    assert inertia == pytest.approx(km.inertia_, rel=1e-5)


@pytest.mark.parametrize("k, method", [(12, "auto"), (64, "auto"), (64, "gemm")])
def test_equals_sklearn_from_the_same_centres(k, method):
    X = _points()
    init = kmeans_plusplus_init(X, k, random_state=1)
    ours = fit_kmeans(X, k, init=init, max_iter=50, tol=1e-4, method=method)
    km = _sklearn(X, k, init, 50, 1e-4)
    assert km.n_iter_ > 1  # the comparison covers several update steps
    _assert_same(ours, km)


def test_kmeans_plusplus_equals_sklearn_with_the_same_random_state():
    X = _points(n=1500, seed=3)
    ours = fit_kmeans(X, 40, max_iter=40, random_state=5)
    _assert_same(ours, _sklearn(X, 40, "k-means++", 40, 1e-4, random_state=5))
    other = fit_kmeans(X, 40, max_iter=40, random_state=6)
    assert not np.array_equal(other[0], ours[0])  # the seed matters


def test_empty_clusters_are_relocated_like_sklearn():
    X = _points()
    k = 40
    init = kmeans_plusplus_init(X, k, random_state=1)
    init[5], init[17] = 1e4, -1e4  # no point near these two
    ours = fit_kmeans(X, k, init=init, max_iter=50, tol=0)
    assert ours[4][0]["relocated"] == 2
    km = _sklearn(X, k, init, 50, 0)
    _assert_same(ours, km)
    assert len(np.unique(ours[1])) == k


@pytest.mark.parametrize("bounds", [True, False])
def test_a_duplicated_centre_loses_every_tie_and_is_relocated(bounds):
    """Exact ties go to the lowest index, so the copy of centre 2 is left empty and relocated.  (scikit-learn
    breaks these ties by its float32 GEMM's rounding, which depends on the BLAS build: not compared here.)"""
    X = _points()
    k = 40
    init = kmeans_plusplus_init(X, k, random_state=1)
    init[30] = init[2]
    centers, labels, _, n_iter, history = fit_kmeans(X, k, init=init, max_iter=50, tol=0, bounds=bounds)
    assert history[0]["relocated"] == 1
    assert len(np.unique(labels)) == k
    want, changed = _reference_lloyd(X, init, n_iter)
    np.testing.assert_allclose(centers, want, rtol=0, atol=2 * np.spacing(np.abs(want).max()))
    assert [h["changed"] for h in history] == changed


@pytest.mark.parametrize("tol", [0.0, 1e-2])
def test_tolerance_and_max_iter_stop_like_sklearn(tol):
    X = _points(n=3000, centers=60, seed=2)
    init = X[np.random.default_rng(0).choice(len(X), 50, replace=False)]  # a poor start: many iterations
    full = _sklearn(X, 50, init, 100, tol)
    _assert_same(fit_kmeans(X, 50, init=init, max_iter=100, tol=tol), full)
    short = fit_kmeans(X, 50, init=init, max_iter=2, tol=tol)
    assert short[3] == 2 < full.n_iter_
    _assert_same(short, _sklearn(X, 50, init, 2, tol))


def test_history_reports_a_falling_inertia_and_progress(capsys):
    X = _points()
    init = X[:25]
    centers, labels, inertia, n_iter, history = fit_kmeans(X, 25, init=init, max_iter=30, progress=True)
    inert = [h["inertia"] for h in history]
    assert all(b <= a * (1 + 1e-9) for a, b in zip(inert, inert[1:]))  # Lloyd never increases it
    assert inertia <= inert[-1] * (1 + 1e-9)
    # the first iteration's inertia is that of the initial centres, computed directly
    d = ((X[:, None, :].astype(np.float64) - init[None].astype(np.float64)) ** 2).sum(-1)
    assert inert[0] == pytest.approx(d.min(1).sum(), rel=1e-9)
    err = capsys.readouterr().err
    assert "k-means" in err and "inertia=" in err


def test_bad_arguments():
    X = _points(n=100)
    with pytest.raises(ValueError, match="n_clusters"):
        fit_kmeans(X, 101)
    with pytest.raises(ValueError, match="init has shape"):
        fit_kmeans(X, 5, init=X[:4])
    with pytest.raises(ValueError, match="init must be"):
        fit_kmeans(X, 5, init="random")
    with pytest.raises(ValueError, match="NaN"):
        bad = X.copy()
        bad[3, 3] = np.nan
        fit_kmeans(bad, 5)


@pytest.mark.parametrize("seed", [0, 7])
def test_kmeans_plusplus_chooses_the_points_sklearn_chooses(seed):
    """Our seeding (float64 distances computed once) picks the very points of
    sklearn.cluster.kmeans_plusplus on the centred float32 data, as KMeans.fit calls it."""
    from sklearn.cluster import kmeans_plusplus

    from phow_baseline.encoding.kmeans import _centred, _kmeans_plusplus

    X = _points(n=3000, seed=seed)
    mean, Xc, X64 = _centred(X)
    centers, idx = _kmeans_plusplus(Xc, X64, 50, seed)
    want_centers, want_idx = kmeans_plusplus(Xc, 50, random_state=seed)
    np.testing.assert_array_equal(idx, want_idx)
    np.testing.assert_array_equal(centers, want_centers)
    np.testing.assert_array_equal(kmeans_plusplus_init(X, 50, seed), want_centers + mean)


def _reference_lloyd(X, init, n_iter):
    """Lloyd from scratch every iteration (fresh float64 sums of the labels, sklearn's relocation rule)."""
    from phow_baseline.encoding.kmeans import _centred, _relocate_empty
    from phow_baseline.encoding.quantize import quantize

    mean, Xc, _ = _centred(X)
    C = (np.asarray(init, np.float32) - mean).astype(np.float32)
    changed, prev = [], None
    for _ in range(n_iter):
        lab = quantize(Xc, C).astype(np.int32)
        changed.append(len(X) if prev is None else int(np.count_nonzero(lab != prev)))
        prev = lab
        sums = np.zeros(C.shape, np.float64)
        np.add.at(sums, lab, Xc.astype(np.float64))
        counts = np.bincount(lab, minlength=len(C)).astype(np.float64)
        _relocate_empty(Xc, lab, C, sums, counts)
        full = counts > 0
        new = C.astype(np.float64)
        new[full] = sums[full] / counts[full, None]
        C = new.astype(np.float32)
    return C + mean, changed


@pytest.mark.parametrize("empty", [False, True])
def test_kept_sums_equal_fresh_sums(empty):
    """The update keeps the per-cluster sums across iterations (only moved points change them): the centres
    equal those of sums recomputed from scratch at every iteration, with and without empty clusters."""
    X = _points(n=2500, centers=40, seed=4)
    k = 40
    init = X[np.random.default_rng(1).choice(len(X), k, replace=False)].copy()
    if empty:
        init[3], init[11] = 1e4, -1e4
    for n_iter in (1, 2, 3, 4, 5):
        centers, _, _, it, history = fit_kmeans(X, k, init=init, max_iter=n_iter, tol=0)
        assert it == n_iter  # (converges at the 5th: labels still move before)
        want, changed = _reference_lloyd(X, init, n_iter)
        # the same labels, float64 sums kept or fresh: the float32 centres agree to their last bit or two
        np.testing.assert_allclose(centers, want, rtol=0, atol=2 * np.spacing(np.abs(want).max()))
        assert [h["changed"] for h in history] == changed
        if empty:
            assert history[0]["relocated"] == 2


# -- the bounded assignment (Elkan's bounds, phow_baseline.encoding.kmeans_bounds) ---------------------------


def _real_descriptors(n_images=12, per_image=2500):
    """PHOW descriptors of real sample images (the vocabulary's own kind of data)."""
    import os
    from pathlib import Path

    from phow_baseline.data.preprocess import preprocess
    from phow_baseline.encoding.vocabulary import sample_descriptors
    from phow_baseline.features.phow import phow

    root = Path(os.environ.get("CHESTXRAY14_SAMPLE", "../shared/chestxray14-sample")) / "images"
    paths = sorted(root.glob("*.png"))[:n_images]
    assert len(paths) == n_images, f"the sample's images are missing under {root}"
    return sample_descriptors([phow(preprocess(p, 128))[1] for p in paths], n_images * per_image, seed=0)


def _same_runs(a, b):
    ca, la, ia, na, ha = a
    cb, lb, ib, nb, hb = b
    assert na == nb
    np.testing.assert_array_equal(ca, cb)
    np.testing.assert_array_equal(la, lb)
    assert ia == ib
    assert [h["changed"] for h in ha] == [h["changed"] for h in hb]
    assert [h["inertia"] for h in ha] == [h["inertia"] for h in hb]


def test_bounds_give_the_labels_of_a_full_search_at_every_iteration_on_real_descriptors():
    """Elkan's bounds skip work, never change a label: bit-identical centres, labels and history to searching
    every point every iteration; and most distances are never computed after the first iteration."""
    X = _real_descriptors()
    k = 150
    init = kmeans_plusplus_init(X, k, random_state=0)
    fast = fit_kmeans(X, k, init=init, max_iter=25, tol=0, bounds=True)
    full = fit_kmeans(X, k, init=init, max_iter=25, tol=0, bounds=False)
    _same_runs(fast, full)
    hist = fast[4]
    assert hist[0]["searched"] == len(X)
    assert all(h["searched"] == len(X) for h in full[4])
    late = hist[-5:]
    # after 20 iterations: about one distance per point instead of k (measured: well under 5)
    assert max(h["distances"] for h in late) < 5 * len(X)
    assert hist[-1]["changed"] < hist[1]["changed"]


@pytest.mark.parametrize("k, method", [(12, "auto"), (64, "auto"), (64, "gemm")])
def test_bounds_equal_a_full_search_and_sklearn_on_blobs(k, method):
    X = _points()
    init = kmeans_plusplus_init(X, k, random_state=1)
    fast = fit_kmeans(X, k, init=init, max_iter=50, tol=1e-4, method=method, bounds=True)
    _same_runs(fast, fit_kmeans(X, k, init=init, max_iter=50, tol=1e-4, method=method, bounds=False))
    _assert_same(fast, _sklearn(X, k, init, 50, 1e-4))


def test_near_ties_go_to_the_exact_search():
    """Exact ties met by the bounded step (a centre moved onto another, integer points) are handed to
    quantize, which gives them to the lowest index; and a whole run with ties equals the full search."""
    from phow_baseline.encoding.kmeans_bounds import BoundedAssignment
    from phow_baseline.encoding.quantize import quantize

    rng = np.random.default_rng(3)
    X = rng.integers(0, 4, size=(3000, 64)).astype(np.float32)  # many points at equal distances
    k = 80
    C1 = X[rng.choice(len(X), k, replace=False)].copy()
    ba = BoundedAssignment(X, n_threads=2)
    np.testing.assert_array_equal(ba(C1), quantize(X, C1))
    C2 = C1.copy()
    C2[40:50] = C2[:10]  # ten centres move onto ten others
    C2[60:] += 1.0  # and some others move a whole unit
    np.testing.assert_array_equal(ba(C2), quantize(X, C2))
    assert ba.ties > 0  # the tie path ran
    init = C2.copy()
    fast = fit_kmeans(X, k, init=init, max_iter=15, tol=0, bounds=True)
    _same_runs(fast, fit_kmeans(X, k, init=init, max_iter=15, tol=0, bounds=False))


def test_bounds_beyond_the_memory_cap_search_every_point(monkeypatch):
    from phow_baseline.encoding import kmeans_bounds

    X = _points(n=1500)
    init = X[:30]
    monkeypatch.setattr(kmeans_bounds, "MAX_BOUND_BYTES", 2 * len(X) * 30 - 1)
    capped = fit_kmeans(X, 30, init=init, max_iter=10, tol=0)
    assert all(h["searched"] == len(X) for h in capped[4])
    monkeypatch.undo()
    _same_runs(capped, fit_kmeans(X, 30, init=init, max_iter=10, tol=0))


def test_the_kept_bounds_stay_true():
    """Its bounds stay true: after several moves, every stored lower bound is below the true distance and
    every upper bound above it (float64 reference)."""
    from phow_baseline.encoding.kmeans import _centred
    from phow_baseline.encoding.kmeans_bounds import BoundedAssignment

    X = _points(n=2000, centers=40, seed=5)
    _, Xc, _ = _centred(X)
    C = Xc[np.random.default_rng(2).choice(len(Xc), 40, replace=False)].copy()
    ba = BoundedAssignment(Xc, n_threads=2)
    for _ in range(6):
        lab = ba(C)
        sums = np.zeros(C.shape)
        np.add.at(sums, lab, Xc.astype(np.float64))
        cnt = np.bincount(lab, minlength=len(C))
        C = np.where(cnt[:, None] > 0, sums / np.maximum(cnt, 1)[:, None], C).astype(np.float32)
    lab = ba(C)
    d = np.sqrt(((Xc[:, None, :].astype(np.float64) - C[None].astype(np.float64)) ** 2).sum(-1))
    np.testing.assert_array_equal(lab, d.argmin(1))
    own = d[np.arange(len(Xc)), lab]
    assert np.all(ba.upper >= own * (1 - 1e-12))
    assert ba.B.dtype == np.uint16
    lower = ba.lower_bounds()
    other = np.ones_like(d, bool)
    other[np.arange(len(Xc)), lab] = False
    assert np.all(lower[other] <= d[other] * (1 + 1e-12))


def test_bounds_clipped_to_the_16_bit_range_still_give_exact_labels():
    """With a unit so small that nearly every bound clips to the top of the 16-bit range (and the label's
    own entry falls below the threshold), the bounds are loose but true, and the labels those of a full
    search at every iteration."""
    from phow_baseline.encoding.kmeans import _centred
    from phow_baseline.encoding.kmeans_bounds import BoundedAssignment
    from phow_baseline.encoding.quantize import quantize

    X = _points(n=1500, centers=25, seed=9)
    _, Xc, _ = _centred(X)
    C = Xc[np.random.default_rng(4).choice(len(Xc), 25, replace=False)].copy()
    ba = BoundedAssignment(Xc, n_threads=2)
    ba.step = float(np.float32(ba.radius / 1e6))  # range 65534 units: a few hundredths of the radius
    for it in range(5):
        lab = ba(C)
        np.testing.assert_array_equal(lab, quantize(Xc, C), err_msg=f"iteration {it}")
        if it == 0:
            assert (ba.B == 65534).mean() > 0.5  # clipped
        sums = np.zeros(C.shape)
        np.add.at(sums, lab, Xc.astype(np.float64))
        cnt = np.bincount(lab, minlength=len(C))
        C = np.where(cnt[:, None] > 0, sums / np.maximum(cnt, 1)[:, None], C).astype(np.float32)
    d = np.sqrt(((Xc[:, None, :].astype(np.float64) - C[None].astype(np.float64)) ** 2).sum(-1))
    other = np.ones_like(d, bool)
    other[np.arange(len(Xc)), lab] = False
    assert np.all(ba.lower_bounds()[other] <= d[other] * (1 + 1e-12))
