"""Cross-fitted calibration: patient-wise folds, out-of-fold scores of every training image, and the
documented fallbacks of classes with too few positives (never a silent threshold of 0.5)."""

import json
import warnings

import numpy as np
import pytest

from phow_baseline.classification import OperatingPoints, PlattCalibrator
from phow_baseline.classification.calibration import MIN_FIT_POSITIVES, fallback_code
from phow_baseline.classification.operating_points import prevalence_threshold
from phow_baseline.config import BaselineConfig
from phow_baseline.encoding.store import FeatureStore
from phow_baseline.workflow import steps

TINY = dict(
    size=64,
    n_words=8,
    max_descriptors=2000,
    vocab_images=10,
    n_jobs=1,
    kernel_map="none",
    solver="liblinear",
    shard_size=16,
)


def test_patient_folds_are_patient_wise_seeded_and_balanced():
    rng = np.random.default_rng(0)
    patients = rng.integers(0, 60, 200)
    f = steps.patient_folds(patients, 5, seed=3)
    assert f.shape == (200,) and set(f.tolist()) == set(range(5))
    for p in np.unique(patients):
        assert len(set(f[patients == p].tolist())) == 1  # a patient never spans two folds
    sizes = np.bincount(f)
    assert sizes.max() - sizes.min() <= 2 * np.bincount(patients).max()  # about n / K each
    np.testing.assert_array_equal(f, steps.patient_folds(patients, 5, seed=3))  # deterministic
    assert not np.array_equal(f, steps.patient_folds(patients, 5, seed=4))
    # fewer patients than folds: the empty folds are dropped
    few = steps.patient_folds(np.array([7, 7, 9]), 5, seed=0)
    assert sorted(set(few.tolist())) == [0, 1] and few[0] == few[1] != few[2]
    assert len(steps.patient_folds(np.array([1, 1, 1]), 5, seed=0).tolist()) == 3


def test_fallback_threshold_is_the_prevalence_quantile_never_a_silent_half():
    rng = np.random.default_rng(1)
    n = 200
    y = np.zeros((n, 4), bool)
    y[rng.choice(n, 40, replace=False), 0] = True  # plenty of positives
    y[rng.choice(n, 3, replace=False), 1] = True  # 3 positives: few, still Youden
    y[:, 3] = True  # no negative
    p = np.clip(rng.random((n, 4)) * 0.6 + 0.4 * y, 0, 1)
    op = OperatingPoints().fit(p, y)
    assert op.fallback_.tolist() == ["", "few_positives", "no_positive", "no_negative"]
    assert op.chosen_.tolist() == [True, True, False, False]
    # no positive: the top (N+ + 1)/(n + 2) of the values are called positive, not p >= 0.5
    assert (
        op.thresholds_[2]
        == prevalence_threshold(p[:, 2], y[:, 2])
        == np.quantile(p[:, 2], 1 - 1 / (n + 2), method="higher")
    )
    assert op.thresholds_[2] != 0.5 and (p[:, 2] >= op.thresholds_[2]).sum() <= 2
    assert op.val_specificity_[2] == pytest.approx((p[:, 2] < op.thresholds_[2]).mean())
    assert np.isnan(op.val_sensitivity_[2])
    # no negative: nearly every image called positive
    assert (p[:, 3] >= op.thresholds_[3]).mean() > 0.98 and np.isnan(op.val_specificity_[3])
    assert "prevalence quantile" in op.fallback_rule(2) and "no negative" in op.fallback_rule(3)
    assert op.fallback_rule(0) == "" and "3 positive(s)" in op.fallback_rule(1)
    # few positives: Youden on the positives there are (a sensitivity above 0)
    assert op.val_sensitivity_[1] > 0
    # the arrays round-trip; a 0.2 model's arrays (no fallback) read its unchosen classes as fallbacks
    back = OperatingPoints.from_arrays(op.to_arrays())
    assert back.fallback_.tolist() == op.fallback_.tolist()
    old = {k: v for k, v in op.to_arrays().items() if k not in ("fallback", "n_positive")}
    assert OperatingPoints.from_arrays(old, default_threshold=0.5).fallback_.tolist()[2:] == ["no_positive"] * 2
    # a fixed threshold, when asked for, is used and flagged as well
    fixed = OperatingPoints(default_threshold=0.5).fit(p, y)
    assert fixed.thresholds_[2] == 0.5 and fixed.fallback_[2] == "no_positive" and "0.5" in fixed.fallback_rule(2)


def test_platt_flags_classes_with_few_positives():
    rng = np.random.default_rng(2)
    y = np.zeros((300, 3), bool)
    y[:60, 0] = True
    y[: MIN_FIT_POSITIVES - 1, 1] = True
    s = rng.normal(size=(300, 3)) + 2.0 * y
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # class 2's slope is clipped (no positive)
        cal = PlattCalibrator().fit(s, y)
    assert cal.fallback_.tolist() == ["", "few_positives", "no_positive"]
    assert cal.clipped_[2] and cal.predict_proba(s)[:, 2].max() < 0.05  # near the prior 1 / (N- + 2)
    assert PlattCalibrator.from_arrays(cal.to_arrays()).fallback_.tolist() == cal.fallback_.tolist()
    assert fallback_code(10, 5) == "few_negatives" and fallback_code(10, 10) == ""


def _store(tmp_path, X):
    st = FeatureStore.create(tmp_path / "features-x", [str(i) for i in range(len(X))], X.shape[1], {}, shard_size=32)
    for s in range(st.n_shards):
        r = st.shard_rows(s)
        st.write_shard(s, X[r.start : r.stop])
    return st


@pytest.mark.parametrize("solver", ["liblinear", "sdca"])
def test_out_of_fold_scores_come_from_the_models_that_did_not_see_the_row(tmp_path, solver):
    rng = np.random.default_rng(3)
    n, d = 160, 12
    Y = (rng.random((n, 14)) < 0.3).astype(np.uint8)
    X = np.abs(rng.normal(size=(n, d))).astype(np.float32)
    X[:, :12] += Y[:, :12]
    st = _store(tmp_path, X)
    rows = np.arange(n)
    folds = steps.patient_folds(rng.integers(0, 50, n), 4, seed=0)
    cfg = BaselineConfig.from_preset("vlfeat", n_jobs=1, C=0.1, kernel_map="none", solver=solver)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        final, models = steps.train_svms_folds(st, rows, Y, folds, cfg, progress=False)
        alone = steps.train_svms(st, rows[folds != 2], Y[folds != 2], cfg, progress=False)
    assert len(models) == 4 and final.coef_.shape == (14, d)
    if solver == "liblinear":
        np.testing.assert_allclose(models[2].coef_, alone.coef_, rtol=1e-5, atol=1e-6)  # fold 2 unseen
    else:  # fold 2 unseen: the same optimum, reached in all rows' order (trained together with the others)
        assert models[2].converged_.all() and alone.converged_.all()
        np.testing.assert_allclose(models[2].primal_objective_, alone.primal_objective_, rtol=2.5e-3)
        np.testing.assert_allclose(models[2].coef_, alone.coef_, rtol=0.05, atol=0.02)
    S = steps.out_of_fold_scores(st, rows, folds, models)
    assert S.shape == (n, 14) and np.isfinite(S).all()  # every row scored, so every positive
    for k in range(4):
        np.testing.assert_allclose(S[folds == k], models[k].decision_function(X[folds == k]), rtol=1e-5, atol=1e-5)
    assert not np.allclose(S, final.decision_function(X))  # not the final model's (in-sample) scores


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    from phow_baseline.data.phantom import make_phantom_dataset

    return make_phantom_dataset(tmp_path_factory.mktemp("crossfit") / "ph", n_patients=40, size=64, seed=1)


@pytest.mark.slow
def test_demo_sized_data_calibrates_on_every_positive_and_reports_its_fallbacks(phantom, tmp_path):
    """The tiny phantom (39 training images): 5 patient-wise folds score every training image, so each class
    calibrates on all its positives; classes with fewer than 10 are fallbacks named in model.json,
    metrics.json, the CLI's table and the report, and no class sits at a silent threshold of 0.5."""
    from phow_baseline.evaluation import format_auroc_table
    from phow_baseline.model import PhowModel
    from phow_baseline.report.html import calibration_section

    cfg = BaselineConfig.from_preset("vlfeat", **TINY)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = steps.train_model(phantom, tmp_path / "work", cfg, progress=False)
    rec = model.info["calibrated_on"]
    ds = steps.open_dataset(phantom, cfg)
    names = ds.split_names("train_val")
    Y = steps.training_targets(ds, names, cfg)
    assert rec["method"] == "cross-fitted" and rec["folds"] == 5 and sum(rec["fold_sizes"]) == len(names)
    assert rec["n_images"] == model.info["n_train"] == len(names)
    assert rec["n_positive"] == {lab: int(v) for lab, v in zip(model.labels, Y.sum(0))}  # every positive
    few = {lab for lab, v in rec["n_positive"].items() if v < MIN_FIT_POSITIVES}
    assert few and set(rec["fallback"]) == few | {lab for lab, v in rec["n_positive"].items() if v > len(names) - 10}
    ops = model.operating_points
    for j, lab in enumerate(model.labels):
        if lab not in rec["fallback"]:
            assert ops.chosen_[j] and ops.fallback_[j] == ""
            continue
        e = rec["fallback"][lab]
        assert e["reason"] == ops.fallback_[j] and e["threshold"] and e["platt"]
        assert e["n_positive"] == rec["n_positive"][lab]
        if e["reason"] == "no_positive":
            assert "prevalence quantile" in e["threshold"] and ops.thresholds_[j] != 0.5
    # saved and loaded: the record and the fallbacks come back
    model.save(tmp_path / "model")
    back = PhowModel.load(tmp_path / "model")
    assert back.info["calibrated_on"] == json.loads(json.dumps(rec))
    np.testing.assert_array_equal(back.operating_points.fallback_, ops.fallback_)

    metrics = steps.evaluate_model(back, phantom, tmp_path / "run", tmp_path / "work", n_bootstrap=20, progress=False)
    assert set(metrics["calibration"]["fallback"]) == set(rec["fallback"])
    assert metrics["calibration"]["fitted_on"]["folds"] == 5 and "fallback" not in metrics["calibration"]["fitted_on"]
    assert set(metrics["operating_points"]["fallback"]) == set(rec["fallback"])
    for lab, e in metrics["operating_points"]["per_class"].items():  # never a silent 0.5
        assert lab in rec["fallback"] or e["threshold"] != 0.5
    table = format_auroc_table(metrics)
    assert all(f"fallback: {rec['fallback'][lab]['threshold']}" in table for lab in rec["fallback"])
    html = calibration_section([tmp_path / "run"], [metrics])
    assert "Fallback" in html and "out-of-fold scores of 5 patient-wise folds" in html
    summary = steps.describe_training(
        metrics["training"], {**metrics["calibration"]["fitted_on"], "fallback": metrics["calibration"]["fallback"]}
    )
    assert "cross-fitted on 5 patient-wise folds" in summary
    assert all(f"fallback {lab}:" in summary for lab in rec["fallback"])

    # the 0.1/0.2 single carve is still there: calibration_folds=1
    one = BaselineConfig.from_preset("vlfeat", **{**TINY, "calibration_folds": 1})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        carve = steps.train_model(phantom, tmp_path / "work", one, progress=False)
    c = carve.info["calibrated_on"]
    assert c["method"] == "validation carve" and c["n_images"] < len(names) and "held-out" in c["scores_from"]
