"""The 14 one-vs-rest SVMs, in memory and out of core."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from phow_baseline.classify import OneVsRestSVM, class_sample_weights
from phow_baseline.features import FeatureStore

REPO = Path(__file__).resolve().parents[1]


def _signal(n=400, d=60, seed=0):
    rng = np.random.default_rng(seed)
    Y = (rng.random((n, 14)) < 0.2).astype(np.uint8)
    X = rng.normal(0, 1, (n, d)).astype(np.float32)
    X[:, :14] += 3.0 * Y
    return X, Y


@pytest.mark.parametrize("solver", ["liblinear", "sgd"])
def test_learns_a_known_signal(solver):
    X, Y = _signal()
    Xt, Yt = _signal(seed=1)
    m = OneVsRestSVM(solver=solver, n_epochs=20).fit(X, Y)
    S = m.decision_function(Xt)
    assert S.shape == (400, 14) and m.coef_.shape == (14, 60)
    aucs = [roc_auc_score(Yt[:, j], S[:, j]) for j in range(14)]
    assert min(aucs) > 0.85
    # shuffled labels learn nothing: the test can fail
    perm = np.random.default_rng(5).permutation(400)
    S0 = OneVsRestSVM(solver=solver, n_epochs=20).fit(X, Y[perm]).decision_function(Xt)
    assert np.mean([roc_auc_score(Yt[:, j], S0[:, j]) for j in range(14)]) < 0.65


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


def test_out_of_core_equals_in_memory_sgd_order(tmp_path):
    X, Y = _signal(n=600)
    st = FeatureStore.create(tmp_path / "s", [str(i) for i in range(600)], 60, {}, shard_size=128)
    for s in range(st.n_shards):
        r = st.shard_rows(s)
        st.write_shard(s, X[r.start:r.stop])
    m = OneVsRestSVM(solver="sgd", n_epochs=5).fit_batches(lambda e: st.batches(seed=0, epoch=e), Y, 60)
    Xt, Yt = _signal(seed=1)
    S = m.decision_function(Xt)
    assert min(roc_auc_score(Yt[:, j], S[:, j]) for j in range(14)) > 0.85


@pytest.mark.slow
def test_out_of_core_peak_memory_does_not_grow_with_rows():
    sys.path.insert(0, str(REPO / "benchmarks"))
    from train_memory import measure

    small = measure(1000, 12000)
    large = measure(4000, 12000)
    data_growth_mb = 3000 * 12000 * 4 / 2 ** 20  # 137 MB more features on disk
    growth = large["peak_rss_mb"] - small["peak_rss_mb"]
    assert growth < 0.25 * data_growth_mb, (small, large)
    assert large["coef_shape"] == [14, 36000]
