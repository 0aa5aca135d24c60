"""Platt scaling, temperature scaling, operating points and the calibration measures."""

import warnings

import numpy as np
import pytest
from scipy.special import expit
from sklearn.exceptions import NotFittedError
from sklearn.metrics import brier_score_loss, confusion_matrix, roc_auc_score

from phow_baseline.classification import OperatingPoints, PlattCalibrator, TemperatureScaler
from phow_baseline.classification.calibration import fit_sigmoid
from phow_baseline.classification.operating_points import choose_threshold
from phow_baseline.evaluation import (
    N_BINS,
    bootstrap_weights,
    brier_scores,
    calibration_summary,
    expected_calibration_error,
    operating_point_metrics,
    reliability_curve,
)
from phow_baseline.evaluation.roc import auroc_weighted_all
from phow_baseline.io import atomic_save_npz, load_npz


def _svm_like(n=400, k=5, seed=0):
    """Margins with ties, a rare class, a class that ranks backwards and one with no positive."""
    rng = np.random.default_rng(seed)
    y = rng.random((n, k)) < np.array([0.3, 0.1, 0.04, 0.2, 0.0])[:k]
    s = rng.normal(0, 1, (n, k)) + 1.2 * y
    s[:, 1] = np.round(s[:, 1], 1)  # many tied scores
    if k > 3:
        s[:, 3] = -s[:, 3]  # ranks the positives below: AUROC < 0.5
    return s, y.astype(int)


def test_platt_fit_agrees_with_scikit_learn():
    sk = pytest.importorskip("sklearn.calibration")
    if not hasattr(sk, "_sigmoid_calibration"):
        pytest.skip("scikit-learn's private _sigmoid_calibration is gone")
    s, y = _svm_like()
    for j in range(3):
        a, b, clipped = fit_sigmoid(s[:, j], y[:, j].astype(bool))
        A, B = sk._sigmoid_calibration(s[:, j], y[:, j])  # p = 1 / (1 + exp(A s + B))
        assert not clipped
        assert a == pytest.approx(-A, rel=1e-3, abs=1e-4) and b == pytest.approx(-B, rel=1e-3, abs=1e-4)


def test_platt_recovers_a_known_sigmoid():
    rng = np.random.default_rng(1)
    s = rng.normal(0, 2, (20000, 1))
    y = rng.random(s.shape) < expit(1.7 * s - 0.8)
    cal = PlattCalibrator(targets="binary").fit(s, y)
    assert cal.a_[0] == pytest.approx(1.7, rel=0.05) and cal.b_[0] == pytest.approx(-0.8, abs=0.08)
    # the calibrated probabilities are calibrated: small ECE, better Brier than a squashed margin
    p = cal.predict_proba(s)
    assert expected_calibration_error(y, p)[0] < 0.02
    assert brier_scores(y, p)[0] < brier_scores(y, expit(s))[0]


def test_calibration_leaves_every_auroc_identical():
    s, y = _svm_like()
    with pytest.warns(RuntimeWarning, match="2 of 5 class"):  # the backwards class and the empty one
        cal = PlattCalibrator().fit(s, y)
    assert (cal.a_ > 0).all() and cal.clipped_.tolist() == [False, False, False, True, True]
    # on other images (a test split) the ranking is kept exactly, ties included
    s2, y2 = _svm_like(seed=5)
    y2[:3, 4] = 1
    p = cal.predict_proba(s2)
    assert ((p >= 0) & (p <= 1)).all()
    np.testing.assert_array_equal(auroc_weighted_all(y2.astype(bool), p), auroc_weighted_all(y2.astype(bool), s2))
    for j in range(s2.shape[1]):  # same ranks, same ties
        np.testing.assert_array_equal(np.argsort(p[:, j], kind="stable"), np.argsort(s2[:, j], kind="stable"))
        assert len(np.unique(p[:, j])) == len(np.unique(s2[:, j]))
    t = TemperatureScaler().fit(s, y)
    np.testing.assert_array_equal(
        auroc_weighted_all(y2.astype(bool), t.predict_proba(s2)), auroc_weighted_all(y2.astype(bool), s2)
    )


def test_platt_as_data_round_trip(tmp_path):
    s, y = _svm_like(k=3)
    cal = PlattCalibrator().fit(s, y)
    atomic_save_npz(tmp_path / "cal.npz", cal.to_arrays())
    back = PlattCalibrator.from_arrays(load_npz(tmp_path / "cal.npz"))
    np.testing.assert_array_equal(back.predict_proba(s), cal.predict_proba(s))
    assert back.n_positive_.tolist() == y.sum(0).tolist()
    with pytest.raises(ValueError, match="slopes must be finite and > 0"):
        PlattCalibrator.from_arrays({"a": np.array([1.0, -0.5]), "b": np.zeros(2)})
    with pytest.raises(ValueError, match="lack 'b'"):
        PlattCalibrator.from_arrays({"a": np.ones(2)})
    with pytest.raises(NotFittedError):
        PlattCalibrator().predict_proba(s)
    with pytest.raises(ValueError, match="3 columns, the calibration 2"):
        PlattCalibrator.from_arrays({"a": np.ones(2), "b": np.zeros(2)}).predict_proba(s)
    with pytest.raises(ValueError, match="targets"):
        PlattCalibrator(targets="isotonic").fit(s, y)


def test_temperature_recovers_a_known_scale(tmp_path):
    rng = np.random.default_rng(2)
    z = rng.normal(0, 1.5, (5000, 14))
    y = rng.random(z.shape) < expit(z)
    t = TemperatureScaler().fit(3.0 * z, y)  # over-confident logits
    assert t.temperature_ == pytest.approx(3.0, rel=0.05)
    assert t.nll_after_ < t.nll_before_
    atomic_save_npz(tmp_path / "t.npz", t.to_arrays())
    back = TemperatureScaler.from_arrays(load_npz(tmp_path / "t.npz"))
    np.testing.assert_allclose(back.predict_proba(3 * z), expit(3 * z / t.temperature_))
    with pytest.raises(ValueError, match="temperature must be finite and > 0"):
        TemperatureScaler.from_arrays({"temperature": np.float64(0)})
    with pytest.raises(NotFittedError):
        TemperatureScaler().predict_proba(z)


def _brute_force_youden(p, y):
    best = (-2, None)
    for t in np.unique(p)[::-1]:  # highest threshold first: ties keep the highest
        d = p >= t
        j = d[y].mean() + (~d[~y]).mean() - 1
        if j > best[0] + 1e-15:
            best = (j, t)
    return best


def test_youden_threshold_is_the_brute_force_optimum():
    rng = np.random.default_rng(3)
    for trial in range(20):
        n = int(rng.integers(10, 200))
        y = rng.random(n) < rng.uniform(0.05, 0.6)
        if y.all() or not y.any():
            continue
        p = np.round(rng.random(n) * 0.6 + 0.4 * y, int(rng.integers(1, 4)))  # with ties
        thr, sens, spec = choose_threshold(p, y)
        J, t = _brute_force_youden(p, y)
        assert thr == t and sens + spec - 1 == pytest.approx(J), trial


def test_sensitivity_rule_and_decisions():
    rng = np.random.default_rng(4)
    y = rng.random((300, 3)) < [0.3, 0.2, 0.0]
    p = np.clip(rng.random((300, 3)) * 0.7 + 0.3 * y, 0, 1)
    op = OperatingPoints(rule="sensitivity", min_sensitivity=0.9).fit(p, y)
    for j in range(2):
        d = p[:, j] >= op.thresholds_[j]
        assert d[y[:, j]].mean() >= 0.9 and d[y[:, j]].mean() == pytest.approx(op.val_sensitivity_[j])
        # the next higher distinct score would miss the target: this is the highest threshold that meets it
        higher = np.unique(p[:, j])[np.unique(p[:, j]) > op.thresholds_[j]]
        assert (p[y[:, j], j] >= higher.min()).mean() < 0.9
    # no positive: the documented fallback, the prevalence quantile (no longer a silent 0.5; tests/test_crossfit.py)
    assert op.chosen_.tolist() == [True, True, False] and op.fallback_[2] == "no_positive"
    assert op.thresholds_[2] == np.quantile(p[:, 2], 1 - 1 / 302, method="higher")
    dec = op.decide(p)
    assert dec.dtype == np.uint8 and set(np.unique(dec)) <= {0, 1}
    np.testing.assert_array_equal(dec, (p >= op.thresholds_).astype(np.uint8))
    back = OperatingPoints.from_arrays(op.to_arrays())
    np.testing.assert_array_equal(back.decide(p), dec)
    with pytest.raises(ValueError, match="min_sensitivity"):
        OperatingPoints(rule="sensitivity").fit(p, y)
    with pytest.raises(ValueError, match="rule must be"):
        OperatingPoints(rule="f1").fit(p, y)
    with pytest.raises(NotFittedError):
        OperatingPoints().decide(p)


def test_calibration_measures_by_hand():
    y = np.array([[0], [1], [1], [1]])
    p = np.array([[0.05], [0.05], [0.95], [0.95]])
    # bin 0: mean p 0.05, observed 0.5 (2 of 4 images); bin 9: 0.95 vs 1.0 (2 of 4)
    assert expected_calibration_error(y, p)[0] == pytest.approx(0.5 * 0.45 + 0.5 * 0.05)
    rel = reliability_curve(y, p)[0]
    assert rel["count"] == [2, 0, 0, 0, 0, 0, 0, 0, 0, 2] and rel["observed"][0] == 0.5
    assert rel["mean_predicted"][1] is None
    assert brier_scores(y, p)[0] == pytest.approx(brier_score_loss(y[:, 0], p[:, 0]))
    rng = np.random.default_rng(5)
    pp = rng.random((500, 4))
    yy = (rng.random((500, 4)) < pp).astype(int)
    np.testing.assert_allclose(brier_scores(yy, pp), [brier_score_loss(yy[:, j], pp[:, j]) for j in range(4)])
    summ = calibration_summary(yy, pp, list("ABCD"))
    assert summ["n_bins"] == N_BINS == 10 and sum(summ["reliability"]["C"]["count"]) == 500
    assert all(v < 0.1 for v in summ["ece"].values())  # calibrated by construction
    assert expected_calibration_error(yy, pp**3).min() > 0.1  # badly calibrated
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        brier_scores(yy, pp + 1)


def test_operating_point_metrics_and_resamples_used():
    rng = np.random.default_rng(6)
    n = 60
    y = np.zeros((n, 2), int)
    y[rng.choice(n, 20, replace=False), 0] = 1
    y[7, 1] = 1  # one positive: many resamples draw none
    p = np.clip(rng.random((n, 2)) * 0.7 + 0.3 * y, 0, 1)
    thr = np.array([0.5, 0.4])
    res = operating_point_metrics(y, p, thr, ["common", "rare"], n_bootstrap=300, seed=1)
    tn, fp, fn, tp = confusion_matrix(y[:, 0], p[:, 0] >= 0.5).ravel()
    c = res["common"]
    assert (c["tp"], c["fp"], c["tn"], c["fn"]) == (tp, fp, tn, fn)
    assert c["sensitivity"] == pytest.approx(tp / (tp + fn)) and c["npv"] == pytest.approx(tn / (tn + fn))
    assert c["ppv"] == pytest.approx(tp / (tp + fp)) and c["specificity"] == pytest.approx(tn / (tn + fp))
    for name in ("sensitivity", "specificity", "ppv", "npv"):
        lo, hi = c[f"{name}_ci95"]
        assert lo <= c[name] <= hi and hi > lo
    # the rare class: sensitivity is defined only on resamples that drew image 7
    drew = np.concatenate([w[:, 7] > 0 for w in bootstrap_weights(n, 300, seed=1)])
    r = res["rare"]
    assert r["n_bootstrap_used"]["sensitivity"] == int(drew.sum()) < 300
    assert r["n_bootstrap_used"]["specificity"] == 300


def test_auroc_of_calibrated_scores_matches_scikit_learn():
    s, y = _svm_like(k=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        p = PlattCalibrator().fit(s, y).predict_proba(s)
    for j in range(3):
        assert roc_auc_score(y[:, j], p[:, j]) == roc_auc_score(y[:, j], s[:, j])


@pytest.mark.slow
def test_trained_phow_model_gives_calibrated_probabilities(sample_run, sample_dir, tmp_path):
    """The sample's PHOW model: Platt scaling and operating points stored as data, used by predict and evaluate."""
    import json

    import pandas as pd
    from click.testing import CliRunner

    from phow_baseline.cli import main as cli
    from phow_baseline.data.chestxray14 import LABELS
    from phow_baseline.model.directory import load_model

    out, metrics = sample_run
    files = json.loads((out / "model" / "model.json").read_text())["files"]
    assert {"calibration", "operating_points"} <= set(files)
    model = load_model(out / "model")
    assert model.score_kind == "probability" and (model.calibrator.a_ > 0).all()
    info = json.loads((out / "model" / "model.json").read_text())["calibrated_on"]
    # cross-fitted (the default 5 folds): every train_val image scored out of fold
    assert info["method"] == "cross-fitted" and info["split"] == "train_val" and info["folds"] == 5
    assert info["n_images"] == json.loads((out / "model" / "model.json").read_text())["n_train"]
    assert "out-of-fold" in info["scores_from"]
    # evaluation: calibration measures, operating points; the probabilities rank exactly as the margins
    assert metrics["calibration"]["auroc_unchanged"] is True and set(metrics["calibration"]["ece"]) == set(LABELS)
    assert metrics["operating_points"]["applies_to"] == "probability"
    run = out / "run"
    probs = pd.read_csv(run / "predictions.csv").set_index("Image Index")
    margins = pd.read_csv(run / "scores.csv").set_index("Image Index")
    y = pd.DataFrame(np.asarray(load_y(sample_dir, probs.index)), index=probs.index, columns=list(LABELS))
    recal = model.calibrate(margins[list(LABELS)].to_numpy())
    np.testing.assert_allclose(recal, probs[list(LABELS)].to_numpy(), rtol=1e-5, atol=1e-6)
    defined = [j for j in range(14) if 0 < y.iloc[:, j].sum() < len(y)]
    np.testing.assert_array_equal(
        auroc_weighted_all(y.to_numpy(bool)[:, defined], recal[:, defined]),
        auroc_weighted_all(y.to_numpy(bool)[:, defined], margins[list(LABELS)].to_numpy()[:, defined]),
    )
    # predict: probabilities in [0, 1]; --raw-scores: the margins; --decisions: p >= the stored thresholds
    images = sorted((sample_dir / "images").glob("*.png"))[:3]
    r = CliRunner()
    for args, name in (([], "p.csv"), (["--raw-scores"], "raw.csv"), (["--decisions"], "d.csv")):
        res = r.invoke(
            cli, ["predict", str(out / "model"), *map(str, images), "--out-csv", str(tmp_path / name), "--quiet", *args]
        )
        assert res.exit_code == 0, res.output
    p = pd.read_csv(tmp_path / "p.csv")[list(LABELS)].to_numpy()
    raw = pd.read_csv(tmp_path / "raw.csv")[list(LABELS)].to_numpy()
    d = pd.read_csv(tmp_path / "d.csv")
    assert ((p >= 0) & (p <= 1)).all() and (raw < 0).any()
    np.testing.assert_allclose(model.calibrate(raw), p, rtol=1e-4, atol=1e-6)
    dec = d[[f"{lab} decision" for lab in LABELS]].to_numpy()
    np.testing.assert_array_equal(dec, (d[list(LABELS)].to_numpy() >= model.operating_points.thresholds_))


def load_y(sample_dir, names):
    from phow_baseline.data.chestxray14 import ChestXray14

    return ChestXray14(sample_dir).labels(list(names))


@pytest.mark.slow
@pytest.mark.cnn
def test_cnn_probabilities_and_temperature_scaling(sample_dir, tmp_path):
    """A tiny CNN: evaluate with temperature scaling (validation carve), predict probabilities and logits."""
    import json

    import pandas as pd
    from click.testing import CliRunner

    from phow_baseline.cli import main as cli
    from phow_baseline.data.chestxray14 import LABELS

    r = CliRunner()
    res = r.invoke(
        cli,
        [
            "cnn",
            "train",
            str(sample_dir),
            "--out",
            str(tmp_path / "m"),
            "--backbone",
            "resnet50",
            "--epochs",
            "1",
            "--max-steps",
            "2",
            "--batch-size",
            "4",
            "--crop",
            "56",
            "--resize",
            "64",
            "--n-jobs",
            "0",
            "--device",
            "cpu",
            "--quiet",
        ],
    )
    assert res.exit_code == 0, res.output
    res = r.invoke(
        cli,
        [
            "cnn",
            "evaluate",
            str(tmp_path / "m"),
            str(sample_dir),
            "--out",
            str(tmp_path / "run"),
            "--n-bootstrap",
            "20",
            "--quiet",
            "--device",
            "cpu",
            "--temperature-scaling",
        ],
    )
    assert res.exit_code == 0, res.output
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    T = m["temperature_scaling"]["temperature"]
    assert T > 0 and m["temperature_scaling"]["nll_after"] <= m["temperature_scaling"]["nll_before"] + 1e-12
    assert m["calibration"]["auroc_unchanged"] is True and set(m["calibration"]["brier"]) == set(LABELS)
    assert set(m["operating_points"]["per_class"]) == set(LABELS)
    imgs = sorted((sample_dir / "images").glob("*.png"))[:2]
    for args, name in (([], "p.csv"), (["--raw-scores"], "z.csv")):
        res = r.invoke(
            cli, ["predict", str(tmp_path / "m"), *map(str, imgs), "--out-csv", str(tmp_path / name), "--quiet", *args]
        )
        assert res.exit_code == 0, res.output
    p = pd.read_csv(tmp_path / "p.csv")[list(LABELS)].to_numpy()
    z = pd.read_csv(tmp_path / "z.csv")[list(LABELS)].to_numpy()
    assert ((p >= 0) & (p <= 1)).all()
    np.testing.assert_allclose(expit(z), p, rtol=1e-4, atol=1e-6)
    res = r.invoke(
        cli, ["predict", str(tmp_path / "m"), str(imgs[0]), "--out-csv", str(tmp_path / "d.csv"), "--decisions"]
    )
    assert res.exit_code != 0 and "no operating points" in res.output
