"""SDCA: VLFeat's solver for the 14 one-vs-rest SVMs at once, in memory and out of core (issue 23)."""

import json
import warnings

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score
from sklearn.utils.estimator_checks import parametrize_with_checks

from conftest import SKLEARN_CHECKS_NOT_APPLICABLE, applicable_checks
from phow_baseline.classification.kernel_map import HomogeneousKernelMap
from phow_baseline.classification.sdca import (
    DEFAULT_GAP_TOL,
    ArrayRows,
    SDCASolver,
    SDCAStopped,
    StoreRows,
    _sdca_chunk,
    svm_objective,
)
from phow_baseline.classification.svm import OneVsRestSVM, class_sample_weights
from phow_baseline.encoding.store import FeatureStore


def _histograms(n, d, seed, strength=0.5):
    """Bag-of-words-like rows (sparse-ish, L1-normalised, chi2-mapped) with a learnable signal per label."""
    rng = np.random.default_rng(seed)
    Y = (rng.random((n, 14)) < 0.2).astype(np.uint8)
    X = rng.gamma(0.3, 1.0, (n, d))
    X[X < 0.05] = 0.0
    X[:, :14] += strength * Y
    X /= X.sum(1, keepdims=True)
    return X.astype(np.float32), Y


def _mapped(X):
    return HomogeneousKernelMap().fit(X).transform(X)


def _store(path, X, shard_size=64):
    st = FeatureStore.create(path, [f"{i:05d}.png" for i in range(len(X))], X.shape[1], {}, shard_size=shard_size)
    for s in range(st.n_shards):
        r = st.shard_rows(s)
        st.write_shard(s, X[r.start : r.stop])
    return st


def _weights(Y, class_weight):
    return np.array([class_sample_weights(Y[:, j], class_weight) for j in range(Y.shape[1])])


# -- the update is VLFeat's -------------------------------------------------------------------------------------


def _vlfeat_sdca_epoch(X, y, s, alpha, w, bias, order, lam, B):
    """``_vl_svm_sdca_train``'s loop body, transcribed: one pass over ``order`` for one class (labels +-1)."""
    n = len(X)
    for i in order:
        norm2 = (X[i] @ X[i] + B * B) / (lam * n)
        inner = X[i] @ w + bias * B
        a, q = alpha[i] / s[i], s[i] * norm2
        palpha = (y[i] - inner) / q + a
        delta = s[i] * (y[i] * max(0.0, min(1.0, y[i] * palpha)) - a)
        if delta != 0:
            alpha[i] += delta
            w += delta / (n * lam) * X[i]
            bias += B * delta / (n * lam)
    return alpha, w, bias


def test_kernel_makes_vlfeats_dual_coordinate_step_for_every_class_at_once():
    X, Y = _histograms(120, 20, 0)
    X[5] = 0.0  # an empty row: only the bias moves
    lam, B = 1.0 / (10.0 * len(X)), 1.0
    cw = _weights(Y, "balanced")
    alpha, W = np.zeros((120, 14)), np.zeros((X.shape[1] + 1, 14))
    order = np.random.default_rng(1).permutation(120)
    d = X.shape[1]
    for _ in range(3):  # three epochs in the same order
        _sdca_chunk(
            X[order].astype(np.float64),
            order.astype(np.int64),
            Y.astype(np.int8),
            cw,
            alpha,
            W,
            np.ones(14, bool),
            lam * 120,
            B,
        )
    for k in (0, 6, 13):
        y = 2.0 * Y[:, k] - 1
        s = np.where(Y[:, k] == 1, cw[k, 1], cw[k, 0])
        a, w, b = np.zeros(120), np.zeros(d), 0.0
        for _ in range(3):
            a, w, b = _vlfeat_sdca_epoch(X.astype(np.float64), y, s, a, w, b, order, lam, B)
        np.testing.assert_allclose(alpha[:, k], a, rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(W[:d, k], w, rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(W[d, k], b, rtol=1e-10)
        assert (y * alpha[:, k] >= 0).all() and (y * alpha[:, k] <= s + 1e-15).all()  # the dual box
    # an inactive class is left alone
    W2, alpha2 = np.zeros_like(W), np.zeros_like(alpha)
    active = np.ones(14, bool)
    active[3] = False
    _sdca_chunk(
        X[order].astype(np.float64), order.astype(np.int64), Y.astype(np.int8), cw, alpha2, W2, active, lam * 120, B
    )
    assert not W2[:, 3].any() and not alpha2[:, 3].any() and W2[:, 4].any()


# -- same optimum as liblinear ---------------------------------------------------------------------------------


@pytest.mark.parametrize("C, class_weight", [(10.0, None), (1.0, "balanced")])
def test_same_optimum_as_liblinear_on_synthetic_histograms(C, class_weight):
    """Per class, the primal objective (one function for both) within 1e-3 relative of LinearSVC's, the
    held-out AUROC within 0.002, and SDCA's dual below liblinear's primal (weak duality: the gap is honest)."""
    X, Y = _histograms(300, 40, 0)
    Xt, Yt = _histograms(300, 40, 1)
    X, Xt = _mapped(X), _mapped(Xt)
    sd = OneVsRestSVM(solver="sdca", C=C, class_weight=class_weight, tol=1e-4, n_jobs=2).fit(X, Y)
    lib = OneVsRestSVM(solver="liblinear", C=C, class_weight=class_weight, n_jobs=2).fit(X, Y)
    assert lib.converged_.all() and sd.converged_.all()
    cw = _weights(Y, class_weight)
    P_sd = svm_objective(X, Y, sd.coef_, sd.intercept_, C, cw)
    P_lib = svm_objective(X, Y, lib.coef_, lib.intercept_, C, cw)
    np.testing.assert_allclose(P_sd, P_lib, rtol=1e-3)
    np.testing.assert_allclose(sd.primal_objective_, P_sd, rtol=1e-5)  # its own record is the objective
    assert (sd.dual_objective_ <= P_lib).all() and (sd.dual_objective_ <= P_sd).all()
    S_sd, S_lib = sd.decision_function(Xt), lib.decision_function(Xt)
    for k in range(14):
        assert abs(roc_auc_score(Yt[:, k], S_sd[:, k]) - roc_auc_score(Yt[:, k], S_lib[:, k])) <= 0.002, k


@pytest.mark.slow
def test_same_optimum_as_liblinear_on_a_2000_row_problem():
    """2,000 rows at ChestX-ray14's positive rates (0.2% to 18%), C = 10, the default tolerance: per class
    SDCA's certified primal at most ``tol / (1 - tol)`` above liblinear's (by weak duality it cannot be
    further above the optimum) and its dual below liblinear's primal, the held-out AUROC within 0.002, and
    shrinking took (row, class) pairs out of the later passes (the run is not the unshrunk one)."""
    rates = np.array([0.18, 0.12, 0.1, 0.05, 0.05, 0.04, 0.03, 0.03, 0.02, 0.02, 0.015, 0.012, 0.01, 0.002])
    rng = np.random.default_rng(3)
    words = rng.choice(150, (14, 8))

    def draw(n):
        Y = (rng.random((n, 14)) < rates).astype(np.uint8)
        Y[:2, 13] = 1  # the rarest class keeps two positives
        X = rng.gamma(0.3, 1.0, (n, 150))
        for k in range(14):
            pos = np.flatnonzero(Y[:, k])
            X[np.ix_(pos, words[k])] += 0.3 * rng.gamma(1.0, 1.0, (len(pos), 8))
        return (X / X.sum(1, keepdims=True)).astype(np.float32), Y

    (X, Y), (Xt, Yt) = draw(2000), draw(2000)
    kmap = HomogeneousKernelMap().fit(X)
    X, Xt = kmap.transform(X), kmap.transform(Xt)
    pairs, rows = [], []

    def record(s):
        if s.active.all():  # the (row, class) pairs shrunk, and the rows shrunk for every class
            pairs.append(s.shrunk.mean())
            rows.append(s.shrunk.all(1).mean())

    sd = SDCASolver(Y, 10.0).run(ArrayRows(X), on_epoch=record)
    # shrinking per pair: most negatives leave a class's passes while they stay in another's, so the later
    # passes visit a fraction of the pairs where shrinking whole rows would have kept most rows
    assert max(pairs) > 0.8 and max(rows) < 0.2, (max(pairs), max(rows))
    lib = OneVsRestSVM(solver="liblinear", n_jobs=2).fit(X, Y)
    assert sd.converged.all() and lib.converged_.all()
    P_sd = svm_objective(X, Y, sd.coef, sd.intercept, 10.0)
    P_lib = svm_objective(X, Y, lib.coef_, lib.intercept_, 10.0)
    np.testing.assert_allclose(sd.primal, P_sd, rtol=1e-6)  # certified on the exact objective
    assert (P_sd <= P_lib * (1 + 1e-3 / (1 - 1e-3))).all(), (P_sd - P_lib) / P_lib
    assert (sd.dual <= P_lib).all()
    S_sd, S_lib = Xt @ sd.coef.T + sd.intercept, lib.decision_function(Xt)
    for k in range(14):
        assert abs(roc_auc_score(Yt[:, k], S_sd[:, k]) - roc_auc_score(Yt[:, k], S_lib[:, k])) <= 0.002, k


def test_default_tolerance_certifies_the_primal_to_a_thousandth():
    X, Y = _histograms(300, 40, 0)
    X = _mapped(X)
    sd = OneVsRestSVM(solver="sdca").fit(X, Y)
    assert sd.tol == DEFAULT_GAP_TOL == 1e-3 and sd.converged_.all()
    rel = sd.duality_gap_ / sd.primal_objective_
    assert (rel < 1e-3).all() and (rel > 0).all()
    lib = OneVsRestSVM(solver="liblinear").fit(X, Y)
    P_lib = svm_objective(X, Y, lib.coef_, lib.intercept_, 10.0)
    # D <= P* <= P_lib, so the certified primal is within tol / (1 - tol) of liblinear's or better
    assert (sd.primal_objective_ <= P_lib * (1 + 1e-3 / (1 - 1e-3))).all()


@pytest.fixture(scope="module")
def sample_bow(sample_dir):
    """The real sample's bag of words at a small size (128 px, 64 words, 2x2 + 4x4 pyramid: 1,280 dims),
    unmapped: ``(X_train_val (422, 1280), Y, X_test (59, 1280), Y_test)``."""
    from phow_baseline.data.chestxray14 import ChestXray14, MissingImagesWarning
    from phow_baseline.data.preprocess import preprocess, read_xray
    from phow_baseline.encoding.pyramid import SpatialPyramidEncoder
    from phow_baseline.features.phow import PHOW

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MissingImagesWarning)
        ds = ChestXray14(sample_dir)
    phow = PHOW(equalization="none", n_jobs=2)
    out = {}
    for split in ("train_val", "test"):
        names = ds.split_names(split)
        imgs = [preprocess(read_xray(ds.image_path(n)), size=128) for n in names]
        out[split] = (phow.transform(imgs), np.asarray(ds.labels(names)))
    enc = SpatialPyramidEncoder(n_words=64, max_descriptors=20_000, image_size=128, random_state=0)
    enc.fit(out["train_val"][0])
    return (enc.transform(out["train_val"][0]), out["train_val"][1], enc.transform(out["test"][0]), out["test"][1])


@pytest.mark.slow
def test_same_optimum_as_liblinear_on_the_samples_bag_of_words(sample_bow, tmp_path):
    """The real sample (422 train_val images, chi2-mapped bag of words, C = 10), out of core with the kernel
    map applied per chunk at the default tolerance, against liblinear in memory on the mapped features: per
    class, SDCA's primal at most 1e-3 above liblinear's (the gap certifies ``tol / (1 - tol)`` above the
    optimum; liblinear's own is up to 0.14% above SDCA's on two classes here, so not two-sided), both above
    SDCA's dual (weak duality), and the test split's AUROC within 0.002."""
    X, Y, Xt, Yt = sample_bow
    kmap = HomogeneousKernelMap().fit(X)
    st = _store(tmp_path / "features", X, shard_size=128)
    sd = OneVsRestSVM(solver="sdca", n_jobs=1).fit_store(st, Y, transform=kmap)
    Xm = kmap.transform(X)
    lib = OneVsRestSVM(solver="liblinear", n_jobs=2).fit(Xm, Y)
    assert sd.converged_.all() and lib.converged_.all() and sd.coef_.shape == (14, 3 * 1280)
    P_sd = svm_objective(Xm, Y, sd.coef_, sd.intercept_, 10.0)
    P_lib = svm_objective(Xm, Y, lib.coef_, lib.intercept_, 10.0)
    assert (P_sd <= P_lib * (1 + 1e-3 / (1 - 1e-3))).all(), (P_sd - P_lib) / P_lib
    assert (sd.dual_objective_ <= P_lib).all() and (sd.dual_objective_ <= P_sd).all()
    S_sd, S_lib = sd.decision_function(kmap.transform(Xt)), lib.decision_function(kmap.transform(Xt))
    for k in range(14):
        if 0 < Yt[:, k].sum() < len(Yt):
            assert abs(roc_auc_score(Yt[:, k], S_sd[:, k]) - roc_auc_score(Yt[:, k], S_lib[:, k])) <= 0.002, k


# -- convergence, recorded honestly ---------------------------------------------------------------------------


def test_gap_decreases_and_converged_only_below_the_tolerance():
    X, Y = _histograms(300, 40, 0)
    X = _mapped(X)
    m = OneVsRestSVM(solver="sdca", C=1.0).fit(X, Y)
    H = m.duality_gap_history_
    assert H.shape[1] == 14 and len(H) == m.n_iter_.max() + 1  # the last epoch's updates, never certified
    first = H[0]
    for k in range(14):
        e = m.n_iter_[k]
        assert np.isfinite(H[:e, k]).all() and np.isnan(H[e:, k]).all()  # recorded up to where it stopped
        assert H[e - 1, k] == m.duality_gap_[k] < 1e-3 * m.primal_objective_[k]
        assert m.duality_gap_[k] < first[k] / 50
        assert m.dual_objective_[k] <= m.primal_objective_[k]
    assert m.converged_.all() and (m.train_time_ > 0).all()
    # stopped by max_epochs: certified (scored) but not converged
    short = OneVsRestSVM(solver="sdca", C=1.0, max_epochs=5).fit(X, Y)
    assert (short.n_iter_ == 5).all() and not short.converged_.any()
    assert (short.duality_gap_ >= 1e-3 * short.primal_objective_).all()
    np.testing.assert_allclose(
        short.primal_objective_, svm_objective(X, Y, short.coef_, short.intercept_, 1.0), rtol=1e-5
    )
    # a tolerance between the classes' gaps: converged_ is exactly the classes below it
    rel = short.duality_gap_ / short.primal_objective_
    mid = OneVsRestSVM(solver="sdca", C=1.0, max_epochs=5, tol=float(np.median(rel))).fit(X, Y)
    assert 0 < mid.converged_.sum() < 14
    assert ((mid.duality_gap_ / mid.primal_objective_ < mid.tol) == mid.converged_).all()


def test_training_record_for_model_json_and_metrics_json():
    X, Y = _histograms(200, 30, 2)
    m = OneVsRestSVM(solver="sdca", C=1.0, max_epochs=40).fit(_mapped(X), Y)
    rec = m.convergence()
    text = json.dumps(rec, allow_nan=False)  # strict JSON: a stopped class's later epochs are null
    assert rec["solver"] == "sdca" and rec["tol"] == 1e-3 and rec["max_epochs"] == 40
    for key in ("duality_gap", "primal_objective", "dual_objective", "time_s", "n_iter", "converged"):
        assert len(rec[key]) == 14, key
    assert len(rec["duality_gap_per_epoch"]) == len(m.duality_gap_history_) and "null" in text
    back = OneVsRestSVM.from_arrays(m.get_params(), m.to_arrays())
    assert back.convergence() == rec
    np.testing.assert_array_equal(back.decision_function(_mapped(X)), m.decision_function(_mapped(X)))
    # another solver's fit forgets the SDCA record
    m.set_params(solver="liblinear").fit(_mapped(X), Y)
    assert m.convergence()["solver"] == "liblinear" and not hasattr(m, "duality_gap_")


# -- out of core, threads, checkpoints --------------------------------------------------------------------


def test_threads_and_kernel_map_on_the_fly_change_nothing(tmp_path, monkeypatch):
    """BLAS threads split the GEMMs' outputs and Numba's the classes: any thread count gives the same bits;
    the kernel map applied to every chunk as read (out of core), or once to rows kept in memory, gives the
    bits of a store of mapped features."""
    from phow_baseline.classification import sdca

    X, Y = _histograms(300, 30, 3)
    kmap = HomogeneousKernelMap().fit(X)
    raw = _store(tmp_path / "raw", X)
    mapped = _store(tmp_path / "mapped", kmap.transform(X))
    kept = OneVsRestSVM(solver="sdca", n_jobs=1, max_epochs=20).fit_store(raw, Y, transform=kmap)
    three = OneVsRestSVM(solver="sdca", n_jobs=3, max_epochs=20).fit_store(mapped, Y)
    monkeypatch.setattr(sdca, "IN_MEMORY_BYTES", 0)  # nothing fits: mapped every epoch, window by window
    assert StoreRows(raw).in_memory(kmap) is None
    one = OneVsRestSVM(solver="sdca", n_jobs=1, max_epochs=20).fit_store(raw, Y, transform=kmap)
    for other in (kept, three):
        np.testing.assert_array_equal(one.coef_, other.coef_)
        np.testing.assert_array_equal(one.dual_coef_, other.dual_coef_)
        np.testing.assert_array_equal(one.duality_gap_history_, other.duality_gap_history_)
    assert one.n_features_in_ == 90
    # another seed visits the rows in another order: other bits (the comparison above can fail)
    other = OneVsRestSVM(solver="sdca", n_jobs=1, max_epochs=20, random_state=1).fit_store(raw, Y, transform=kmap)
    assert not np.array_equal(other.coef_, one.coef_)
    # out of core visits the rows in the in-memory path's order: a subset of the rows (labels in that
    # order), read a window of 128 rows at a time from the 64-row shards, gives the in-memory bits
    rows = np.arange(0, 300, 2)[::-1]
    mem = OneVsRestSVM(solver="sdca", C=1.0).fit(kmap.transform(X[rows]), Y[rows])
    m = OneVsRestSVM(solver="sdca", C=1.0)
    m._check_params()
    sub = m._fit_sdca(StoreRows(raw, rows, window_bytes=128 * 30 * 4), m._targets(Y[rows]), transform=kmap)
    for a in ("coef_", "intercept_", "dual_coef_", "duality_gap_history_", "n_iter_"):
        np.testing.assert_array_equal(getattr(sub, a), getattr(mem, a), err_msg=a)


def test_rows_in_pieces_and_one_reused_map_buffer_give_the_same_bits(tmp_path, monkeypatch):
    """Out of core each chunk is mapped and stepped in pieces of ``PIECE_BYTES`` (the cache's share) into one
    reused buffer: pieces of 7 rows (the map's buffer reused 40-odd times a pass) and of a whole chunk give
    the same steps (weights, duals to the bit) and gaps, in memory and out of core; the buffered map is the
    map's values."""
    from phow_baseline.classification import sdca

    X, Y = _histograms(300, 30, 3)
    kmap = HomogeneousKernelMap().fit(X)
    raw = _store(tmp_path / "raw", X)
    buffered = sdca._as_transform(kmap)
    first = buffered(X[:7]).copy()
    np.testing.assert_array_equal(buffered(X[7:10]), kmap.transform(X[7:10]))
    np.testing.assert_array_equal(first, kmap.transform(X[:7]))
    assert buffered.output_width(30) == 90 and buffered.finite_output
    monkeypatch.setattr(sdca, "IN_MEMORY_BYTES", 0)  # out of core: mapped piece by piece every epoch
    calls = []
    real = kmap._transform_into
    monkeypatch.setattr(kmap, "_transform_into", lambda Z, out: calls.append(len(Z)) or real(Z, out), raising=False)
    whole = OneVsRestSVM(solver="sdca", n_jobs=2, max_epochs=12).fit_store(raw, Y, transform=kmap)
    assert max(calls) > 7
    calls.clear()
    monkeypatch.setattr(sdca, "PIECE_BYTES", 7 * 90 * 4)
    pieces = OneVsRestSVM(solver="sdca", n_jobs=2, max_epochs=12).fit_store(raw, Y, transform=kmap)
    assert max(calls) == 7 and len(calls) > 40
    monkeypatch.setattr(sdca, "IN_MEMORY_BYTES", 2**30)  # in memory, mapped once, stepped in 7-row pieces
    kept = OneVsRestSVM(solver="sdca", n_jobs=2, max_epochs=12).fit_store(raw, Y, transform=kmap)
    for other in (pieces, kept):
        for a in ("coef_", "intercept_", "dual_coef_", "n_iter_", "converged_"):
            np.testing.assert_array_equal(getattr(other, a), getattr(whole, a), err_msg=a)
        # the gap's scores come from GEMMs of 7 rows instead of 256: BLAS may round a row's otherwise
        np.testing.assert_allclose(other.duality_gap_history_, whole.duality_gap_history_, rtol=1e-12, atol=0)


def test_resume_after_a_kill_is_bit_identical(tmp_path, monkeypatch):
    """Stopped after epoch 30 (an exception from the epoch callback standing in for kill -9, right after the
    checkpoint; some classes have converged by then, the others run to max_epochs), rerun with the same
    checkpoint file: every array equals an uninterrupted run's.  Out of core, kernel map every epoch."""
    from phow_baseline.classification import sdca
    from phow_baseline.io import load_npz

    monkeypatch.setattr(sdca, "IN_MEMORY_BYTES", 0)
    X, Y = _histograms(200, 20, 4)
    st = _store(tmp_path / "raw", X)
    kmap = HomogeneousKernelMap().fit(X)
    params = dict(solver="sdca", C=0.3, class_weight="balanced", max_epochs=40)
    whole = OneVsRestSVM(n_jobs=2, **params).fit_store(st, Y, transform=kmap)
    assert 0 < whole.converged_.sum() < 14 and whole.n_iter_[whole.converged_].min() < 30

    def dies_after_30(solver):
        if solver.epochs_done == 30:
            raise SDCAStopped("killed")

    ckpt = tmp_path / "sdca.npz"
    with pytest.raises(SDCAStopped):
        OneVsRestSVM(n_jobs=2, **params).fit_store(st, Y, transform=kmap, checkpoint=ckpt, on_epoch=dies_after_30)
    saved = load_npz(ckpt)
    assert int(saved["epochs_done"]) == 30 and saved["dual"].shape == (200, 14) and saved["coef"].shape == (14, 60)
    for key in ("coef", "intercept", "objective", "n_iter", "converged", "weights", "alpha"):
        assert key in saved, key  # keyed like the SGD checkpoint
    resumed = OneVsRestSVM(n_jobs=1, **params).fit_store(st, Y, transform=kmap, checkpoint=ckpt)
    for a in (
        "coef_",
        "intercept_",
        "dual_coef_",
        "duality_gap_",
        "primal_objective_",
        "dual_objective_",
        "duality_gap_history_",
        "n_iter_",
        "converged_",
    ):
        np.testing.assert_array_equal(getattr(resumed, a), getattr(whole, a), err_msg=a)
    # a finished checkpoint: the rerun trains nothing and gives the same SVMs
    calls = []
    again = OneVsRestSVM(**params).fit_store(st, Y, transform=kmap, checkpoint=ckpt, on_epoch=calls.append)
    assert calls == [] and np.array_equal(again.coef_, whole.coef_)


def test_resume_with_rows_shrunk_is_bit_identical(tmp_path):
    """Killed at epoch 40 with more than a third of the rows shrunk (one class, C = 10; out of core, the
    shrunk rows not read): the resumed run reads the same rows, certifies at the same epochs and gives
    the uninterrupted run's bits, shrinking state included."""
    X, Y = _histograms(300, 30, 4)
    X = _mapped(X)
    st = _store(tmp_path / "mapped", X)
    whole = SDCASolver(Y[:, :1], 10.0, max_epochs=80).run(StoreRows(st))
    seen = {}

    def dies_after_40(solver):
        seen[solver.epochs_done] = solver.shrunk.mean()
        if solver.epochs_done == 40:
            raise SDCAStopped("killed")

    ckpt = tmp_path / "sdca.npz"
    with pytest.raises(SDCAStopped):
        SDCASolver(Y[:, :1], 10.0, max_epochs=80).run(StoreRows(st), checkpoint=ckpt, on_epoch=dies_after_40)
    assert seen[40] > 1 / 3
    from phow_baseline.classification.sdca import load_or_start

    resumed = load_or_start(ckpt, SDCASolver(Y[:, :1], 10.0, max_epochs=80), 90)
    assert resumed.epochs_done == 40
    resumed.run(StoreRows(st), checkpoint=ckpt)
    for a in ("W", "alpha", "marg", "shrunk", "pg_bounds", "gap_history", "primal_history", "n_epochs", "primal"):
        np.testing.assert_array_equal(getattr(resumed, a), getattr(whole, a), err_msg=a)


def test_a_format_2_checkpoint_resumes_to_the_same_optimum(tmp_path):
    """A checkpoint of format 2 (rows shrunk for every class at once, one unshrinking epsilon) is taken up:
    each class of a shrunk row starts shrunk, and the run goes on to the optimum the uninterrupted run
    certifies (to the tolerance; not its bits: the pairs shrunk differ)."""
    from phow_baseline.classification.sdca import load_or_start
    from phow_baseline.io import atomic_save_npz

    X, Y = _histograms(300, 30, 4)
    X, Y = _mapped(X), Y[:, :2]  # two classes: rows shrunk for both
    whole = SDCASolver(Y, 10.0).run(ArrayRows(X))

    def dies_after_30(solver):
        if solver.epochs_done == 30:
            raise SDCAStopped("killed")

    killed = {}
    with pytest.raises(SDCAStopped):
        SDCASolver(Y, 10.0).run(ArrayRows(X), on_epoch=lambda s: killed.update(s.checkpoint()) or dies_after_30(s))
    assert killed["shrunk"].shape == (300, 2) and killed["unshrink_eps"].shape == (2,)
    old = dict(killed, format=np.array(2), shrunk=killed["shrunk"].all(1), unshrink_eps=np.array(0.1))
    assert old["shrunk"].any()  # some rows were shrunk for every class
    ckpt = tmp_path / "v2.npz"
    atomic_save_npz(ckpt, old)
    resumed = load_or_start(ckpt, SDCASolver(Y, 10.0), 90)
    assert resumed.epochs_done == 30
    np.testing.assert_array_equal(resumed.shrunk, np.repeat(old["shrunk"][:, None], 2, 1))
    resumed.run(ArrayRows(X))
    assert resumed.converged.all() and whole.converged.all()
    P_res = svm_objective(X, Y, resumed.coef, resumed.intercept, 10.0)
    np.testing.assert_allclose(P_res, whole.primal, rtol=2e-3)
    assert (P_res >= whole.dual).all() and (whole.primal >= resumed.dual).all()  # weak duality, both ways
    bad = dict(killed, format=np.array(1))
    atomic_save_npz(ckpt, bad)
    with pytest.warns(UserWarning, match="not an SDCA checkpoint"):
        assert load_or_start(ckpt, SDCASolver(Y, 10.0), 90).epochs_done == 0


def test_numba_threads_split_the_classes_with_the_same_bits():
    """The steps' threads split the classes (independent problems): one or two give the same bits."""
    import numba

    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("Numba has a single thread here")
    X, Y = _histograms(300, 30, 5)
    X = _mapped(X)
    before = numba.get_num_threads()
    one = SDCASolver(Y, 10.0, max_epochs=15, n_threads=1).run(ArrayRows(X))
    two = SDCASolver(Y, 10.0, max_epochs=15, n_threads=2).run(ArrayRows(X))
    for a in ("W", "alpha", "marg", "shrunk", "gap_history"):
        np.testing.assert_array_equal(getattr(one, a), getattr(two, a), err_msg=a)
    assert numba.get_num_threads() == before  # the caller's thread count is given back


def test_rows_stepped_in_tiles_give_the_untiled_bits(monkeypatch):
    """Each thread steps all its classes over a tile of rows before the next tile (cache reuse); every class
    still steps the rows in the same order, so tiles of 1 row, of 7 rows and none (the whole chunk) agree."""
    from phow_baseline.classification import sdca

    X, Y = _histograms(300, 30, 5)
    X = _mapped(X)
    runs = {}
    for rows in (1, 7, 10**6):
        monkeypatch.setattr(sdca, "STEP_TILE_BYTES", rows * X.shape[1] * 4)
        assert sdca._step_tile(X.astype(np.float32)) == rows
        runs[rows] = SDCASolver(Y, 10.0, max_epochs=15, n_threads=2).run(ArrayRows(X))
    assert runs[1].epochs_done > 3
    for rows in (7, 10**6):
        for a in ("W", "alpha", "marg", "shrunk", "gap_history"):
            np.testing.assert_array_equal(getattr(runs[1], a), getattr(runs[rows], a), err_msg=f"{a}, {rows} rows")


def test_gram_path_takes_the_rows_paths_steps_and_resumes_bit_identically(tmp_path, monkeypatch):
    """With at least as many features as rows (n <= GRAM_MAX_ROWS), SDCA runs in the dual's terms on the
    Gram matrix: the same steps in the same order as the rows' path (duals equal to rounding after 6
    epochs), the same optimum, an exact certificate; out of core it takes the same path with the same
    bits, and a run killed after epoch 10 resumes bit for bit."""
    from phow_baseline.classification import sdca

    X, Y = _histograms(150, 60, 12)
    kmap = HomogeneousKernelMap().fit(X)
    Xm = kmap.transform(X)  # 180 features >= 150 rows
    calls = []
    real = sdca._gram
    monkeypatch.setattr(sdca, "_gram", lambda A: calls.append(A.shape) or real(A))
    cw = _weights(Y, "balanced")
    gram = SDCASolver(Y, 1.0, cw, tol=0.0, max_epochs=6).run(ArrayRows(Xm))
    assert calls == [(150, 180)]
    with monkeypatch.context() as mp:
        mp.setattr(sdca, "GRAM_MAX_ROWS", 0)
        rows = SDCASolver(Y, 1.0, cw, tol=0.0, max_epochs=6).run(ArrayRows(Xm))
    assert len(calls) == 1
    np.testing.assert_allclose(gram.alpha, rows.alpha, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(gram.coef, rows.coef, rtol=1e-9, atol=1e-12)
    # converged: the certificate is the objective of the weights returned
    full = SDCASolver(Y, 1.0, cw).run(ArrayRows(Xm))
    assert full.converged.all() and (full.duality_gap < 1e-3 * full.primal).all()
    np.testing.assert_allclose(full.primal, svm_objective(Xm, Y, full.coef, full.intercept, 1.0, cw), rtol=1e-9)
    np.testing.assert_allclose(full.dual_history[full.n_epochs - 1, range(14)], full.dual, rtol=1e-12)
    # out of core (the kernel map on the fly): the same path and bits
    st = _store(tmp_path / "raw", X)
    with monkeypatch.context() as mp:
        mp.setattr(sdca, "IN_MEMORY_BYTES", 10**9)
        out = SDCASolver(Y, 1.0, cw).run(StoreRows(st), transform=kmap)
    np.testing.assert_array_equal(out.W, full.W)
    np.testing.assert_array_equal(out.gap_history, full.gap_history)

    def dies_after_10(solver):
        if solver.epochs_done == 10:
            raise SDCAStopped("killed")

    ckpt = tmp_path / "gram.npz"
    with pytest.raises(SDCAStopped):
        SDCASolver(Y, 1.0, cw).run(ArrayRows(Xm), checkpoint=ckpt, on_epoch=dies_after_10)
    from phow_baseline.classification.sdca import load_or_start

    resumed = load_or_start(ckpt, SDCASolver(Y, 1.0, cw), 180)
    assert resumed.epochs_done == 10 and full.n_epochs.min() > 10
    resumed.run(ArrayRows(Xm))
    for a in ("W", "alpha", "gap_history", "primal_history", "dual_history", "n_epochs", "primal", "duality_gap"):
        np.testing.assert_array_equal(getattr(resumed, a), getattr(full, a), err_msg=a)


def test_a_checkpoint_of_another_training_is_not_taken_up(tmp_path):
    X, Y = _histograms(200, 20, 5)
    st = _store(tmp_path / "raw", X)
    ckpt = tmp_path / "sdca.npz"
    OneVsRestSVM(solver="sdca", max_epochs=3).fit_store(st, Y, checkpoint=ckpt)
    ref = OneVsRestSVM(solver="sdca", max_epochs=3, C=2.0).fit_store(st, Y)
    with pytest.warns(UserWarning, match="another training"):
        m = OneVsRestSVM(solver="sdca", max_epochs=3, C=2.0).fit_store(st, Y, checkpoint=ckpt)
    np.testing.assert_array_equal(m.coef_, ref.coef_)
    ckpt.write_bytes(b"not an npz")
    with pytest.warns(UserWarning, match=str(ckpt.name)):
        m = OneVsRestSVM(solver="sdca", max_epochs=3, C=2.0).fit_store(st, Y, checkpoint=ckpt)
    np.testing.assert_array_equal(m.coef_, ref.coef_)


# -- bad input ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_features_name_the_shard(tmp_path, bad):
    X, Y = _histograms(200, 20, 6)
    X[150, 3] = bad  # row 150: shard 2 (64 rows a shard)
    st = _store(tmp_path / "features-x", X)
    with pytest.raises(ValueError, match=r"feat_00002\.npy: 1 non-finite feature value.*training rows \[150\]"):
        OneVsRestSVM(solver="sdca").fit_store(st, Y)
    with pytest.raises(ValueError, match="NaN|infinity"):
        OneVsRestSVM(solver="sdca").fit(X, Y)


def test_shards_that_disagree_in_dimension_are_named(tmp_path):
    X, Y = _histograms(200, 20, 7)
    st = _store(tmp_path / "features-x", X)
    np.save(st.shard_path(1), np.zeros((64, 21), np.float32))
    with pytest.raises(ValueError, match=r"feat_00001\.npy: shape \(64, 21\), expected \(64, 20\)"):
        OneVsRestSVM(solver="sdca").fit_store(st, Y)

    class Chunks:  # any other source of rows whose chunks disagree: named too
        n_rows, n_features = 200, 20

        def epoch(self, seed, epoch):
            yield X[:100], np.arange(100), "chunk A"
            yield X[100:, :19], np.arange(100, 200), "chunk B"

    with pytest.raises(ValueError, match="chunk B: 19 feature columns, expected 20"):
        SDCASolver(Y, 10.0).run(Chunks())


def test_empty_rows_only_move_the_bias():
    """An all-zero row (an image with no descriptor) has ||x|| = 0: its dual step moves only the bias
    (bias multiplier 1); with no bias term its hinge is the constant 1 and its dual takes its optimum y s."""
    X, Y = _histograms(200, 20, 8)
    X = _mapped(X)
    X[:20] = 0.0
    m = OneVsRestSVM(solver="sdca", C=1.0).fit(X, Y)
    assert m.converged_.all() and np.isfinite(m.coef_).all()
    np.testing.assert_allclose(m.decision_function(X[:20]), np.broadcast_to(m.intercept_, (20, 14)), rtol=1e-6)
    nobias = SDCASolver(Y, 1.0, bias_multiplier=0.0).run(ArrayRows(X))
    np.testing.assert_array_equal(nobias.alpha[:20], 2.0 * Y[:20] - 1)
    assert not nobias.intercept.any()


def test_a_class_with_no_positive_or_no_negative_is_named_and_trained():
    X, Y = _histograms(200, 20, 9)
    X = _mapped(X)
    Y[:, 2] = 0
    Y[:, 5] = 1
    names = [f"finding {k}" for k in range(14)]
    with pytest.warns(UserWarning) as caught:
        m = OneVsRestSVM(solver="sdca", C=1.0).fit_store(_InMemoryStore(X), Y, label_names=names)
    text = " ".join(str(w.message) for w in caught)
    assert "finding 2 has no positive example" in text and "finding 5 has no negative example" in text
    S = m.decision_function(X)
    assert (S[:, 2] < 0).all() and (S[:, 5] > 0).all() and m.converged_[[2, 5]].all()
    with pytest.warns(UserWarning) as caught:
        OneVsRestSVM(solver="sdca", C=1.0).fit(X, Y)
    assert sorted(str(w.message)[:30] for w in caught) == [
        "label 2 has no positive exampl",
        "label 5 has no negative exampl",
    ]


class _InMemoryStore:
    """A one-shard stand-in for a FeatureStore."""

    def __init__(self, X):
        self.X, self.dim, self.n_shards = X, X.shape[1], 1

    def shard_rows(self, s):
        return range(0, len(self.X))

    def read_shard(self, s):
        return self.X

    def shard_path(self, s):
        return "memory"


def test_parameters_are_checked():
    X, Y = _histograms(50, 20, 0)
    for bad in (dict(max_epochs=0), dict(max_epochs=2.5), dict(tol=-1.0), dict(C=0.0)):
        with pytest.raises(ValueError):
            OneVsRestSVM(solver="sdca", **bad).fit(X, Y)
    with pytest.raises(ValueError, match="0/1"):
        SDCASolver(Y * 2, 10.0)
    with pytest.raises(ValueError, match="feature rows"):
        SDCASolver(Y, 10.0).run(ArrayRows(X[:10]))
    with pytest.raises(TypeError, match="transform"):
        SDCASolver(Y, 10.0).run(ArrayRows(X), transform=3)


# -- cross-fitting: the K fold models and the final one -----------------------------------------------------


def test_fold_models_are_trained_together_in_one_reading_of_the_rows(tmp_path):
    """``fit_store_folds``: the final model is ``fit_store`` on all rows bit for bit; model k takes the very
    steps of a lone solver on the other folds' rows in all rows' order (``within``), and reaches the same
    optimum as ``fit_store`` on them; every epoch reads and maps the rows once for all models (out of core),
    or maps them once (in memory), with the same bits; one checkpoint resumes all of them after a kill."""
    from phow_baseline.classification import sdca
    from phow_baseline.classification.sdca import ArrayRows, SDCAStopped

    X, Y = _histograms(180, 20, 11)
    st = _store(tmp_path / "raw", X)
    kmap = HomogeneousKernelMap().fit(X)
    rows = np.arange(10, 180)[::-1]
    folds = np.arange(len(rows)) % 3
    params = dict(solver="sdca", C=1.0, class_weight="balanced", max_epochs=15)
    seen = []
    models = OneVsRestSVM(**params).fit_store_folds(
        st, Y[rows], rows, folds, transform=kmap, checkpoint=tmp_path / "cv.npz", on_epoch=lambda s: seen.append(s.fold)
    )
    assert len(models) == 4 and sorted(set(seen)) == [0, 1, 2, 3]
    assert sorted(p.name for p in tmp_path.glob("cv.*.npz")) == ["cv.together.npz"]
    attrs = ("coef_", "intercept_", "dual_coef_", "duality_gap_history_", "n_iter_", "converged_")
    ref = OneVsRestSVM(**params).fit_store(st, Y[rows], rows, transform=kmap)
    for a in attrs:
        np.testing.assert_array_equal(getattr(models[3], a), getattr(ref, a), err_msg=f"final model: {a}")
    Xm = kmap.transform(X[rows])
    for k in range(3):
        train = folds != k
        m = models[k]
        lone = OneVsRestSVM(**params)._sdca_solver(
            Y[rows][train], label_names=list("abcdefghijklmn"[: Y.shape[1]]), within=(len(rows), np.flatnonzero(train))
        )
        lone.run(ArrayRows(Xm[train]))
        np.testing.assert_array_equal(m.dual_coef_, lone.alpha, err_msg=f"model {k}: the same steps")
        np.testing.assert_array_equal(m.coef_, lone.coef.astype(np.float32))
        # the gap's hinge values are added per row, in row order, whatever the chunks (each row's score is one
        # GEMM's: of other rows together, BLAS may round it otherwise in the last bit)
        np.testing.assert_allclose(m.duality_gap_history_, lone.gap_history, rtol=1e-12, atol=0)
    # run to the gap, model k and fit_store on its rows reach the same optimum (in another order)
    conv = dict(params, max_epochs=1000)
    together = OneVsRestSVM(**conv).fit_store_folds(st, Y[rows], rows, folds, transform=kmap)
    for k in range(3):
        train = folds != k
        alone = OneVsRestSVM(**conv).fit_store(st, Y[rows][train], rows[train], transform=kmap)
        assert together[k].converged_.all() and alone.converged_.all()
        np.testing.assert_allclose(together[k].primal_objective_, alone.primal_objective_, rtol=2.5e-3)
        assert not np.array_equal(together[k].coef_, alone.coef_)  # another order of the same rows
    assert not np.array_equal(models[0].coef_, models[1].coef_)
    # mapped every epoch (nothing fits in memory): the same bits; the checkpoint is taken up (no epoch runs)
    again = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sdca, "IN_MEMORY_BYTES", 0)
        redo = OneVsRestSVM(**params).fit_store_folds(
            st, Y[rows], rows, folds, transform=kmap, checkpoint=tmp_path / "cv.npz", on_epoch=again.append
        )
        reads = []
        real_epoch = sdca.StoreRows.epoch
        mp.setattr(sdca.StoreRows, "epoch", lambda self, *a, **kw: reads.append(a[1]) or real_epoch(self, *a, **kw))
        fresh = OneVsRestSVM(**params).fit_store_folds(st, Y[rows], rows, folds, transform=kmap)
        n_reads = len(reads)
        # a kill after the checkpoint of epoch 3 (a fold's callback raises), then the same call again
        calls = []

        def stop(s):
            calls.append(s.epochs_done)
            if s.epochs_done == 3 and s.fold == 1:
                raise SDCAStopped

        with pytest.raises(SDCAStopped):
            OneVsRestSVM(**params).fit_store_folds(
                st, Y[rows], rows, folds, transform=kmap, checkpoint=tmp_path / "k.npz", on_epoch=stop
            )
        resumed = []
        after = OneVsRestSVM(**params).fit_store_folds(
            st,
            Y[rows],
            rows,
            folds,
            transform=kmap,
            checkpoint=tmp_path / "k.npz",
            on_epoch=lambda s: resumed.append(s.epochs_done),
        )
    assert again == []
    assert n_reads == max(int(m.n_iter_.max()) for m in fresh) + 1  # one reading per epoch for all models
    assert min(resumed) == 4  # went on after epoch 3
    for a, b, c, d in zip(models, redo, fresh, after):
        for attr in attrs:
            np.testing.assert_array_equal(getattr(a, attr), getattr(b, attr))
            np.testing.assert_array_equal(getattr(a, attr), getattr(c, attr))
            np.testing.assert_array_equal(getattr(a, attr), getattr(d, attr))
    # a checkpoint of other trainings is refused with a warning naming it, and training starts over
    with pytest.warns(UserWarning, match="k.together.npz"):
        other = OneVsRestSVM(**{**params, "C": 2.0}).fit_store_folds(
            st, Y[rows], rows, folds, transform=kmap, checkpoint=tmp_path / "k.npz"
        )
    assert not np.array_equal(other[3].coef_, models[3].coef_)
    # the Gram path (as many features as rows): one Gram matrix of all rows serves every fold model, each
    # trained on its own in all rows' order (a lone Gram-path solver's steps, to the Gram matrix's rounding)
    from phow_baseline.classification.sdca import gram_applies

    Xk = kmap.transform(X)
    Xw = np.hstack([Xk, Xk[:, ::-1] * 0.5, Xk[:, ::2], Xk[:, 1::2]])
    wide = _store(tmp_path / "wide", Xw)
    assert gram_applies(len(rows), wide.dim) and gram_applies(int((folds != 0).sum()), wide.dim)
    calls = []
    with pytest.MonkeyPatch.context() as mp:
        real = sdca._gram
        mp.setattr(sdca, "_gram", lambda A: calls.append(len(A)) or real(A))
        shared = OneVsRestSVM(**params).fit_store_folds(wide, Y[rows], rows, folds)
        assert calls == [len(rows)]
    for k in range(4):
        train = folds != k if k < 3 else np.ones(len(rows), bool)
        lone = OneVsRestSVM(**params)._sdca_solver(
            Y[rows][train],
            label_names=list("abcdefghijklmn"[: Y.shape[1]]),
            within=(len(rows), np.flatnonzero(train)) if k < 3 else None,
        )
        lone.run(ArrayRows(Xw[rows][train]))
        np.testing.assert_allclose(shared[k].coef_, lone.coef, rtol=1e-5, atol=1e-6, err_msg=f"model {k}")
        np.testing.assert_allclose(shared[k].duality_gap_history_, lone.gap_history, rtol=1e-6)
    # in memory
    Xm = kmap.transform(X[rows])
    mem = OneVsRestSVM(**params).fit_folds(Xm, Y[rows], folds)
    for k, m in enumerate(mem):
        train = folds != k if k < 3 else np.ones(len(rows), bool)
        np.testing.assert_array_equal(m.coef_, OneVsRestSVM(**params).fit(Xm[train], Y[rows][train]).coef_)
    # folds are checked
    for bad in (folds[:-1], folds + 1, np.zeros_like(folds), folds - 1, folds + 0.5):
        with pytest.raises(ValueError, match="folds"):
            OneVsRestSVM(**params).fit_store_folds(st, Y[rows], rows, bad)


# -- scikit-learn ------------------------------------------------------------------------------------------

_FLOAT32_SCORES = "scores are one float32 GEMM (see tests/test_estimators.py)"
_CLASS_WEIGHT = "class_weight is None or 'balanced' (see tests/test_estimators.py)"


@applicable_checks(
    parametrize_with_checks(
        [OneVsRestSVM(solver="sdca")],
        expected_failed_checks=lambda est: {
            "check_methods_subset_invariance": _FLOAT32_SCORES,
            "check_class_weight_classifiers": _CLASS_WEIGHT,
        },
    ),
    SKLEARN_CHECKS_NOT_APPLICABLE,
)
def test_scikit_learn_checks(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # a check's target may lack a class in a label
        check(estimator)
