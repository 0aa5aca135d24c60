"""The 14 one-vs-rest SVMs, in memory and out of core."""

import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from phow_baseline.classification.svm import OneVsRestSVM, class_sample_weights
from phow_baseline.encoding.store import FeatureStore

REPO = Path(__file__).resolve().parents[1]


def _signal(n=400, d=60, seed=0):
    rng = np.random.default_rng(seed)
    Y = (rng.random((n, 14)) < 0.2).astype(np.uint8)
    X = rng.normal(0, 1, (n, d)).astype(np.float32)
    X[:, :14] += 3.0 * Y
    return X, Y


@pytest.mark.parametrize("solver", ["liblinear", "sgd", "sdca"])
def test_learns_a_known_signal(solver):
    X, Y = _signal()
    Xt, Yt = _signal(seed=1)
    m = OneVsRestSVM(solver=solver, n_epochs=20, max_epochs=50).fit(X, Y)
    S = m.decision_function(Xt)
    assert S.shape == (400, 14) and m.coef_.shape == (14, 60)
    aucs = [roc_auc_score(Yt[:, j], S[:, j]) for j in range(14)]
    assert min(aucs) > 0.85
    # shuffled labels learn nothing: the test can fail
    perm = np.random.default_rng(5).permutation(400)
    S0 = OneVsRestSVM(solver=solver, n_epochs=20, max_epochs=50).fit(X, Y[perm]).decision_function(Xt)
    assert np.mean([roc_auc_score(Yt[:, j], S0[:, j]) for j in range(14)]) < 0.65


def test_sgd_threads_give_the_same_svms_as_one_thread():
    """The 14 labels' SGD steps run in threads (one per core); each label's SVM is the loop's, bit for bit."""
    X, Y = _signal()
    one = OneVsRestSVM(solver="sgd", n_epochs=3, random_state=0, n_jobs=1).fit(X, Y)
    two = OneVsRestSVM(solver="sgd", n_epochs=3, random_state=0, n_jobs=2).fit(X, Y)
    np.testing.assert_array_equal(one.coef_, two.coef_)
    np.testing.assert_array_equal(one.intercept_, two.intercept_)
    np.testing.assert_array_equal(one.objective_, two.objective_)
    # and the threads do not share a label's state: another seed gives other SVMs
    other = OneVsRestSVM(solver="sgd", n_epochs=3, random_state=1, n_jobs=2).fit(X, Y)
    assert not np.array_equal(other.coef_, two.coef_)


def test_balanced_class_weight():
    assert class_sample_weights(np.array([1, 0, 0, 0]), "balanced") == (4 / 6, 2.0)
    assert class_sample_weights(np.array([1, 0]), None) == (1.0, 1.0)
    rng = np.random.default_rng(0)
    Y = (rng.random((600, 14)) < 0.05).astype(np.uint8)
    X = rng.normal(0, 1, (600, 20)).astype(np.float32)
    X[:, :14] += 0.7 * Y  # weak signal, rare positives
    a = OneVsRestSVM().fit(X, Y).predict(X).mean()
    b = OneVsRestSVM(class_weight="balanced").fit(X, Y).predict(X).mean()
    assert b > 2 * a  # balancing moves the boundary towards the rare positives
    with pytest.raises(ValueError, match="class_weight"):
        OneVsRestSVM(class_weight="heavy", solver="sgd").fit(X, Y)


def test_sdca_takes_every_kind_of_target_balances_and_round_trips():
    """The SDCA solver behind the same estimator: 1-D binary and multiclass targets, string labels,
    "balanced" class weights, arrays for the model directory (tests/test_sdca.py tests the solver itself)."""
    X, Y = _signal()
    m = OneVsRestSVM(solver="sdca", C=0.1).fit(X, Y[:, 0])
    assert m.classes_.tolist() == [0, 1] and m.decision_function(X).shape == (400,) and m.coef_.shape == (1, 60)
    names = np.where(Y[:, 0] == 1, "ill", "well")
    p = OneVsRestSVM(solver="sdca", C=0.1).fit(X, names).predict(X)
    assert set(p) <= {"ill", "well"} and (p == np.where(m.predict(X) == 1, "ill", "well")).all()
    three = np.argmax(X[:, :3], axis=1)
    m3 = OneVsRestSVM(solver="sdca", C=0.1).fit(X, three)
    assert m3.decision_function(X).shape == (400, 3) and (m3.predict(X) == three).mean() > 0.9
    rng = np.random.default_rng(0)
    Yr = (rng.random((600, 14)) < 0.05).astype(np.uint8)
    Xr = rng.normal(0, 1, (600, 20)).astype(np.float32)
    Xr[:, :14] += 0.7 * Yr
    a = OneVsRestSVM(solver="sdca", max_epochs=100).fit(Xr, Yr).predict(Xr).mean()
    b = OneVsRestSVM(solver="sdca", max_epochs=100, class_weight="balanced").fit(Xr, Yr).predict(Xr).mean()
    assert b > 2 * a
    mm = OneVsRestSVM(solver="sdca", C=0.1).fit(X, Y)
    back = OneVsRestSVM.from_arrays(mm.get_params(), mm.to_arrays())
    np.testing.assert_array_equal(back.decision_function(X), mm.decision_function(X))
    assert back.convergence() == mm.convergence() and mm.convergence()["solver"] == "sdca"


def test_single_class_column_and_validation():
    X, Y = _signal()
    Y[:, 13] = 0
    m = OneVsRestSVM().fit(X, Y)
    assert not m.coef_[13].any() and m.intercept_[13] == -1
    with pytest.raises(ValueError, match="0/1"):
        OneVsRestSVM().fit(X, Y * 2)
    with pytest.raises(ValueError, match="not fitted"):
        OneVsRestSVM().decision_function(X)


def test_roundtrip_arrays():
    X, Y = _signal()
    m = OneVsRestSVM().fit(X, Y)
    m2 = OneVsRestSVM.from_arrays(m.get_params(), m.to_arrays())
    np.testing.assert_array_equal(m.decision_function(X), m2.decision_function(X))


def test_out_of_core_equals_in_memory_given_the_same_row_order():
    """partial_fit over the batches fit would draw (same permutation, same batch size, y_all for
    lambda and the epochs) gives bit-identical weights, objectives and weight changes."""
    from phow_baseline.classification.svm import SGD_BATCH

    X, Y = _signal(n=2500)
    m = OneVsRestSVM(solver="sgd", n_epochs=3, class_weight="balanced").fit(X, Y)
    oc = OneVsRestSVM(solver="sgd", n_epochs=3, class_weight="balanced")
    rng = np.random.default_rng(0)
    for _ in range(3):
        order = rng.permutation(len(X))
        for lo in range(0, len(X), SGD_BATCH):
            sel = order[lo : lo + SGD_BATCH]
            oc.partial_fit(X[sel], Y[sel], y_all=Y)
    np.testing.assert_array_equal(oc.coef_, m.coef_)
    np.testing.assert_array_equal(oc.intercept_, m.intercept_)
    np.testing.assert_array_equal(oc.objective_, m.objective_)
    np.testing.assert_array_equal(oc.weight_change_, m.weight_change_)
    assert oc.n_iter_.tolist() == [3] * 14 and m.objective_.shape == (3, 14)
    # another order gives other weights: the comparison above can fail
    other = OneVsRestSVM(solver="sgd", n_epochs=3, class_weight="balanced", random_state=1).fit(X, Y)
    assert not np.array_equal(other.coef_, m.coef_)


def test_out_of_core_from_a_feature_store(tmp_path):
    X, Y = _signal(n=600)
    st = FeatureStore.create(tmp_path / "s", [str(i) for i in range(600)], 60, {}, shard_size=128)
    for s in range(st.n_shards):
        r = st.shard_rows(s)
        st.write_shard(s, X[r.start : r.stop])
    m = OneVsRestSVM(solver="sgd")
    for epoch in range(5):
        for Xb, rows in st.batches(seed=0, epoch=epoch):
            m.partial_fit(Xb, Y[rows], y_all=Y)
    assert m.n_iter_.tolist() == [5] * 14 and m.objective_.shape == (5, 14)
    Xt, Yt = _signal(seed=1)
    S = m.decision_function(Xt)
    assert min(roc_auc_score(Yt[:, j], S[:, j]) for j in range(14)) > 0.85


def test_sgd_convergence_is_reported_honestly():
    """converged_ only when the last epoch moved the weights by less than tol; the objective
    per epoch is the SVM's primal objective (its loss term progressive)."""
    X, Y = _signal()
    m1 = OneVsRestSVM(solver="sgd", n_epochs=1).fit(X, Y)
    assert not m1.converged_.any()  # one epoch from w = 0: the change is the whole weight vector
    np.testing.assert_allclose(m1.weight_change_, 1.0)
    m = OneVsRestSVM(solver="sgd", n_epochs=20).fit(X, Y)
    assert m.objective_.shape == m.weight_change_.shape == (20, 14)
    last = m.weight_change_[-1]
    assert (last < m.weight_change_[1]).all()  # the steps shrink as SGD goes on
    assert not m.converged_.any() and (last > 1e-3).all()  # ... but not below the default tol
    loose = OneVsRestSVM(solver="sgd", n_epochs=20, tol=float(last.max()) * 1.01).fit(X, Y)
    assert loose.converged_.all()
    tight = OneVsRestSVM(solver="sgd", n_epochs=20, tol=float(np.median(last))).fit(X, Y)
    assert 0 < tight.converged_.sum() < 14
    # the recorded objective at the end is close to the exact primal objective of the final weights
    lam = 1 / (10.0 * len(X))
    margins = (2.0 * Y - 1) * (X.astype(np.float64) @ m.coef_.T.astype(np.float64) + m.intercept_)
    exact = 0.5 * lam * (m.coef_.astype(np.float64) ** 2).sum(1) + np.maximum(0, 1 - margins).mean(0)
    assert np.all(np.abs(m.objective_[-1] - exact) < 0.5 * exact)
    assert np.median(m.objective_[-1]) < np.median(m.objective_[1])
    report = m.convergence()
    assert report["solver"] == "sgd" and len(report["objective_per_epoch"]) == 20
    assert report["all_converged"] is False
    lib = OneVsRestSVM(max_iter=20).fit(X, Y).convergence()
    assert lib["solver"] == "liblinear" and not lib["all_converged"] and max(lib["n_iter"]) == 20


def test_scikit_learn_conventions_for_targets():
    from sklearn.base import clone, is_classifier

    assert is_classifier(OneVsRestSVM())
    X, Y = _signal()
    y = Y[:, 0]
    m = OneVsRestSVM().fit(X, y)
    assert m.classes_.tolist() == [0, 1] and m.predict(X).shape == (400,) and m.decision_function(X).shape == (400,)
    names = np.where(y == 1, "ill", "well")
    p = OneVsRestSVM().fit(X, names).predict(X)
    assert set(p) <= {"ill", "well"} and (p == np.where(m.predict(X) == 1, "ill", "well")).all()
    three = np.argmax(X[:, :3], axis=1)
    m3 = OneVsRestSVM().fit(X, three)
    assert m3.decision_function(X).shape == (400, 3) and (m3.predict(X) == three).mean() > 0.9
    mm = OneVsRestSVM().fit(X, Y)
    assert mm.classes_.tolist() == list(range(14)) and mm.predict(X).shape == (400, 14)
    with pytest.raises(ValueError, match="2 classes"):
        OneVsRestSVM().fit(X, np.zeros(400))
    with pytest.raises(ValueError, match="features"):
        mm.decision_function(X[:, :10])
    bad = X.copy()
    bad[3, 3] = np.inf
    with pytest.raises(ValueError, match="infinity"):
        OneVsRestSVM().fit(bad, Y)
    c = clone(mm)
    assert c.get_params() == mm.get_params() and not hasattr(c, "coef_")


@pytest.mark.slow
def test_out_of_core_peak_memory_does_not_grow_with_rows():
    sys.path.insert(0, str(REPO / "benchmarks"))
    from train_memory import measure

    small = measure(1000, 12000, solver="sgd")
    large = measure(4000, 12000, solver="sgd")
    data_growth_mb = 3000 * 12000 * 4 / 2**20  # 137 MB more features on disk
    growth = large["peak_rss_mb"] - small["peak_rss_mb"]
    assert growth < 0.25 * data_growth_mb, (small, large)
    assert large["coef_shape"] == [14, 36000]


def test_train_memory_benchmark_measures_sdca_with_its_cross_fitting_folds():
    """The benchmark's default solver (SDCA, what ``auto`` picks) with K = 2 folds: trained, certified."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    from train_memory import measure

    m = measure(300, 500, solver="sdca", folds=2)
    assert m["solver"] == "sdca" and m["folds"] == 2 and m["coef_shape"] == [14, 1500]
    assert m["converged"] == 14 and m["peak_rss_mb"] > 0 and m["train_s"] > 0


def _store(tmp_path, X, shard_size=128):
    st = FeatureStore.create(
        tmp_path / "features-x", [str(i) for i in range(len(X))], X.shape[1], {}, shard_size=shard_size
    )
    for s in range(st.n_shards):
        r = st.shard_rows(s)
        st.write_shard(s, X[r.start : r.stop])
    return st


def test_sgd_checkpoint_resumes_bit_for_bit(tmp_path):
    """Stopped after an epoch, saved as arrays (no pickles), restored into a new estimator: the remaining
    epochs give the very weights, objective and convergence record of an uninterrupted run."""
    from phow_baseline.io import atomic_save_npz, load_npz

    X, Y = _signal(n=500)
    st = _store(tmp_path, X)

    def epochs(m, first, last):
        for epoch in range(first, last):
            for Xb, rows in st.batches(seed=3, epoch=epoch):
                m.partial_fit(Xb, Y[rows], y_all=Y)
        return m

    whole = epochs(OneVsRestSVM(solver="sgd", class_weight="balanced", random_state=3), 0, 4)
    half = epochs(OneVsRestSVM(solver="sgd", class_weight="balanced", random_state=3), 0, 2)
    atomic_save_npz(tmp_path / "ckpt.npz", half.sgd_checkpoint())
    resumed = OneVsRestSVM(solver="sgd", class_weight="balanced", random_state=3)
    resumed.restore_sgd_checkpoint(load_npz(tmp_path / "ckpt.npz"))
    assert resumed.sgd_epochs_done == 2
    np.testing.assert_array_equal(resumed.coef_, half.coef_)
    epochs(resumed, 2, 4)
    np.testing.assert_array_equal(resumed.coef_, whole.coef_)
    np.testing.assert_array_equal(resumed.intercept_, whole.intercept_)
    np.testing.assert_array_equal(resumed.objective_, whole.objective_)
    np.testing.assert_array_equal(resumed.weight_change_, whole.weight_change_)
    assert resumed.n_iter_.tolist() == whole.n_iter_.tolist() == [4] * 14
    # mid-epoch there is nothing consistent to keep
    epochs(resumed, 4, 4)
    Xb, rows = next(iter(st.batches(seed=3, epoch=4)))
    resumed.partial_fit(Xb, Y[rows], y_all=Y)
    with pytest.raises(ValueError, match="end of an epoch"):
        resumed.sgd_checkpoint()


def test_train_svms_resumes_a_killed_sgd_training_after_its_last_epoch(tmp_path, monkeypatch, capsys):
    """The dataset-scale step: a training stopped in its fourth epoch (an exception standing in for kill -9)
    reruns from the checkpoint after the third, and its SVMs equal an uninterrupted training's."""
    from phow_baseline.config import BaselineConfig
    from phow_baseline.workflow import steps

    X, Y = _signal(n=700)
    st = _store(tmp_path, np.abs(X))
    rows = list(range(0, 700, 1))
    cfg = BaselineConfig.from_preset("vlfeat", n_epochs=6, seed=2, n_jobs=1)
    ref = steps.train_svms(st, rows, Y, cfg, progress=False, solver="sgd")
    for f in tmp_path.glob("sgd-*.npz"):  # the reference's own checkpoint: a rerun would take it up at once
        f.unlink()

    calls = {"n": 0}
    real = OneVsRestSVM.partial_fit

    def dies_in_epoch_4(self, *a, **kw):
        calls["n"] += 1
        if calls["n"] > 3 * st.n_shards + 2:
            raise KeyboardInterrupt("killed")
        return real(self, *a, **kw)

    monkeypatch.setattr(OneVsRestSVM, "partial_fit", dies_in_epoch_4)
    with pytest.raises(KeyboardInterrupt):
        steps.train_svms(st, rows, Y, cfg, progress=False, solver="sgd")
    monkeypatch.undo()
    (ckpt,) = tmp_path.glob("sgd-*.npz")
    assert ckpt == steps.sgd_checkpoint_path(st, rows, Y, cfg)
    capsys.readouterr()
    again = steps.train_svms(st, rows, Y, cfg, progress=False, solver="sgd")
    assert "resuming after epoch 3" in capsys.readouterr().err
    np.testing.assert_array_equal(again.coef_, ref.coef_)
    np.testing.assert_array_equal(again.objective_, ref.objective_)
    # other rows, labels or settings never take it up
    assert steps.sgd_checkpoint_path(st, rows[1:], Y[1:], cfg) != ckpt
    assert steps.sgd_checkpoint_path(st, rows, Y, BaselineConfig.from_preset("vlfeat", n_epochs=7, seed=2)) != ckpt
    # an unreadable checkpoint: trained from the start, with a warning naming it
    ckpt.write_bytes(b"not an npz")
    third = steps.train_svms(st, rows, Y, cfg, progress=False, solver="sgd")
    assert str(ckpt) in capsys.readouterr().err
    np.testing.assert_array_equal(third.coef_, ref.coef_)
