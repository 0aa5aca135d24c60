"""The run directory's metrics: bootstrap resamples used, ROC bands, calibration and operating points."""

import json
import warnings

import cv2
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_curve

from phow_baseline.classification import OperatingPoints, PlattCalibrator
from phow_baseline.data.chestxray14 import LABELS
from phow_baseline.evaluation import (
    bootstrap_auroc,
    bootstrap_roc_band,
    bootstrap_weights,
    evaluate_scores,
    format_auroc_table,
    read_metrics,
    write_run_dir,
)
from phow_baseline.evaluation.roc import ROC_GRID


def _scores(n=80, seed=0):
    rng = np.random.default_rng(seed)
    prev = np.linspace(0.35, 0.03, len(LABELS))
    y = (rng.random((n, len(LABELS))) < prev).astype(int)
    y[:, -1] = 0
    y[5, -1] = 1  # Hernia: a single positive, absent from many resamples
    s = rng.normal(0, 1, y.shape) + 1.0 * y
    return y, s


def _defined_resamples(y_col, n_bootstrap, seed):
    w = np.concatenate(list(bootstrap_weights(len(y_col), n_bootstrap, seed)))
    return int((((w * y_col) > 0).any(1) & ((w * (1 - y_col)) > 0).any(1)).sum())


def test_bootstrap_records_the_resamples_used():
    y, s = _scores()
    res = evaluate_scores(y, s, n_bootstrap=300, seed=2)
    for j, lab in enumerate(LABELS):
        assert res["n_bootstrap_used"][lab] == _defined_resamples(y[:, j], 300, 2), lab
    assert res["n_bootstrap_used"]["Hernia"] < 300 * 0.7  # one positive in 80: drawn with p = 1 - (79/80)^80
    assert res["n_bootstrap_used"]["Atelectasis"] == 300
    boot = bootstrap_auroc(y, s, 300, seed=2)
    assert res["mean_auroc_n_bootstrap_complete"] == int(np.isfinite(boot).all(1).sum())


def test_roc_band_matches_weighted_roc_curves():
    y, s = _scores(n=60, seed=1)
    s[:, 2] = np.round(s[:, 2], 1)  # ties
    lo, hi, used = bootstrap_roc_band(y, s, ROC_GRID, n_bootstrap=1, seed=3)
    w = next(bootstrap_weights(len(y), 1, 3))[0]
    for j in (0, 2):
        fpr, tpr, _ = roc_curve(y[:, j], s[:, j], sample_weight=w)
        expect = tpr[np.searchsorted(fpr, ROC_GRID, side="right") - 1]
        np.testing.assert_allclose(lo[j], expect, atol=1e-12)
        np.testing.assert_allclose(hi[j], expect, atol=1e-12)
    lo, hi, used = bootstrap_roc_band(y, s, ROC_GRID, n_bootstrap=200, seed=3)
    assert (lo <= hi + 1e-12)[np.isfinite(lo)].all() and used[0] == 200 and used[-1] < 200
    # the band holds the observed curve at most false-positive rates
    fpr, tpr, _ = roc_curve(y[:, 0], s[:, 0])
    obs = tpr[np.searchsorted(fpr, ROC_GRID, side="right") - 1]
    assert ((obs >= lo[0] - 1e-9) & (obs <= hi[0] + 1e-9)).mean() > 0.9


def test_run_dir_with_probabilities_and_operating_points(tmp_path):
    y_val, s_val = _scores(n=200, seed=4)
    y, s = _scores(n=90, seed=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        cal = PlattCalibrator().fit(s_val, y_val)
    ops = OperatingPoints().fit(cal.predict_proba(s_val), y_val)
    p = cal.predict_proba(s)
    names = [f"{i:08d}_000.png" for i in range(len(y))]
    m = write_run_dir(
        tmp_path / "run",
        model_name="m",
        kind="phow",
        split="test",
        names=names,
        y_true=y,
        scores=s,
        probabilities=p,
        thresholds=ops.thresholds_,
        operating_rule=ops.describe(),
        n_bootstrap=200,
    )
    on_disk = read_metrics(tmp_path / "run")
    assert on_disk == json.loads(json.dumps(m))
    # the earlier contract is unchanged
    for key in ("model", "kind", "split", "n_test", "labels", "auroc", "auroc_ci95", "mean_auroc"):
        assert key in on_disk
    assert on_disk["n_bootstrap_used"]["Hernia"] < 200
    c = on_disk["calibration"]
    assert c["auroc_unchanged"] is True and c["n_bins"] == 10 and set(c["brier"]) == set(LABELS)
    j = LABELS.index("Effusion")
    assert c["brier"]["Effusion"] == pytest.approx(((p[:, j] - y[:, j]) ** 2).mean())
    op = on_disk["operating_points"]
    assert op["rule"] == "Youden's J" and op["applies_to"] == "probability"
    e = op["per_class"]["Effusion"]
    d = p[:, j] >= ops.thresholds_[j]
    assert e["tp"] == int((d & (y[:, j] == 1)).sum()) and e["sensitivity"] == pytest.approx(d[y[:, j] == 1].mean())
    pred = pd.read_csv(tmp_path / "run" / "predictions.csv")
    raw = pd.read_csv(tmp_path / "run" / "scores.csv")
    assert ((pred[list(LABELS)] >= 0) & (pred[list(LABELS)] <= 1)).all().all()
    np.testing.assert_allclose(raw[list(LABELS)].to_numpy(), s, rtol=1e-5, atol=1e-6)
    for f in ("roc.png", "calibration.png"):
        img = cv2.imread(str(tmp_path / "run" / f))
        assert img is not None and min(img.shape[:2]) > 600  # small multiples, not one small panel
    assert not [f for f in (tmp_path / "run").iterdir() if f.name.endswith(".tmp")]
    text = format_auroc_table(on_disk)
    assert f"/{200}" in text and "Operating points (Youden's J" in text and "Brier" in text


def test_run_dir_reports_a_calibration_that_changes_the_ranking(tmp_path):
    y, s = _scores(n=60, seed=6)
    not_monotone = 1 / (1 + np.exp(-((s - 0.5) ** 2)))  # ranks by distance from 0.5: changes the AUROC
    m = write_run_dir(
        tmp_path / "run",
        model_name="m",
        kind="cnn",
        split="test",
        names=[str(i) for i in range(60)],
        y_true=y,
        scores=s,
        probabilities=not_monotone,
        n_bootstrap=0,
    )
    assert m["calibration"]["auroc_unchanged"] is False and m["calibration"]["auroc_of_probabilities"]
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        write_run_dir(
            tmp_path / "r2",
            model_name="m",
            kind="cnn",
            split="test",
            names=[str(i) for i in range(60)],
            y_true=y,
            scores=s,
            probabilities=s,
            n_bootstrap=0,
        )


def test_predictions_file_keeps_the_ranking_of_close_probabilities(tmp_path):
    """A class calibrated with a tiny slope: its probabilities differ in the 6th digit, the file keeps the order."""
    from sklearn.metrics import roc_auc_score

    y, s = _scores(n=300, seed=7)
    p = 1 / (1 + np.exp(-(1e-4 * s - 2.4)))  # all about 0.083
    m = write_run_dir(
        tmp_path / "run",
        model_name="m",
        kind="phow",
        split="test",
        names=[str(i) for i in range(300)],
        y_true=y,
        scores=s,
        probabilities=p,
        n_bootstrap=0,
    )
    back = pd.read_csv(tmp_path / "run" / "predictions.csv")
    for j, lab in enumerate(LABELS):
        if 0 < y[:, j].sum() < len(y):
            assert roc_auc_score(y[:, j], back[lab]) == pytest.approx(m["auroc"][lab], abs=1e-12), lab
