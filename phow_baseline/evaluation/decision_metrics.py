"""Sensitivity, specificity, PPV and NPV of the 0/1 decisions at the operating points, with intervals.

The thresholds come from :class:`phow_baseline.classification.OperatingPoints`
(chosen on validation); the rates are measured on the test images, with
bootstrap percentile intervals over the same resamples as the AUROC's
(:func:`~phow_baseline.evaluation.bootstrap.bootstrap_weights`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ._validation import check_truth_and_scores
from .bootstrap import bootstrap_weights

#: The rates at an operating point: name -> (numerator, denominator) over (TP, FP, TN, FN).
RATES = {
    "sensitivity": ("tp", ("tp", "fn")),
    "specificity": ("tn", ("tn", "fp")),
    "ppv": ("tp", ("tp", "fp")),
    "npv": ("tn", ("tn", "fn")),
}


def _rates(counts: dict) -> dict:
    out = {}
    for name, (num, den) in RATES.items():
        d = counts[den[0]] + counts[den[1]]
        with np.errstate(invalid="ignore", divide="ignore"):
            out[name] = np.where(d > 0, counts[num] / np.where(d > 0, d, 1), np.nan)
    return out


def operating_point_metrics(y_true, prob, thresholds, labels: Sequence[str], n_bootstrap: int = 1000, seed=0) -> dict:
    """Sensitivity, specificity, PPV and NPV of ``prob >= thresholds`` per class, with 95 % intervals.

    Intervals are bootstrap percentiles over ``n_bootstrap`` resamples of
    the images (the same draws as the AUROC intervals); a resample where a
    rate's denominator is zero (e.g. no positive drawn, for the
    sensitivity) does not define that rate and is left out; the number used
    is returned per rate.

    Parameters
    ----------
    y_true : array-like of 0/1, (n_images,) or (n_images, n_classes)
        Ground truth, one column per class.
    prob : array-like of float, same shape as ``y_true``
        Scores or probabilities the thresholds apply to (finite).
    thresholds : array-like of float, (n_classes,)
        Decision threshold per class, in the units of ``prob``: an image is
        called positive when ``prob >= threshold`` (chosen on validation by
        :class:`~phow_baseline.classification.OperatingPoints`).
    labels : sequence of str, length n_classes
        Class names, in column order.
    n_bootstrap : int, default 1000
        Bootstrap resamples of the images for the 95 % percentile intervals
        (:data:`~phow_baseline.evaluation.bootstrap.DEFAULT_N_BOOTSTRAP`);
        0 gives no intervals.
    seed : int, numpy.random.Generator or None, default 0
        Seed of the resamples (the same draws as the AUROC intervals).

    Returns
    -------
    metrics : dict
        ``{label: entry}``; each entry holds ``threshold`` (float), the
        counts ``tp``, ``fp``, ``tn``, ``fn`` (ints, images), the rates
        ``sensitivity``, ``specificity``, ``ppv``, ``npv`` (fractions in
        [0, 1], ``None`` where the denominator is zero), their intervals
        ``<rate>_ci95`` (``[low, high]`` or ``None``) and
        ``n_bootstrap_used`` ({rate: number of resamples that defined it};
        empty when ``n_bootstrap`` is 0).

    Raises
    ------
    ValueError
        A number of thresholds or labels other than the columns, or invalid
        truth/scores.
    """
    y, p = check_truth_and_scores(y_true, prob)
    thr = np.asarray(thresholds, np.float64)
    if thr.shape != (p.shape[1],):
        raise ValueError(f"{len(thr)} thresholds for {p.shape[1]} classes")
    if len(labels) != p.shape[1]:
        raise ValueError(f"{len(labels)} labels for {p.shape[1]} classes")
    d = p >= thr
    cells = {"tp": d & y, "fp": d & ~y, "tn": ~d & ~y, "fn": ~d & y}
    point = _rates({k: v.sum(0).astype(np.float64) for k, v in cells.items()})
    boot = {name: [] for name in RATES}
    if n_bootstrap:
        for w in bootstrap_weights(len(y), n_bootstrap, seed):
            r = _rates({k: w @ v.astype(np.float64) for k, v in cells.items()})  # (b, k) each
            for name in RATES:
                boot[name].append(r[name])
    out = {}
    for j, lab in enumerate(labels):
        e = {"threshold": float(thr[j])}
        e.update({k: int(v[:, j].sum()) for k, v in cells.items()})
        used = {}
        for name in RATES:
            v = point[name][j]
            e[name] = None if np.isnan(v) else float(v)
            ci = None
            if n_bootstrap:
                col = np.concatenate([b[:, j] for b in boot[name]])
                col = col[np.isfinite(col)]
                used[name] = int(len(col))
                if len(col):
                    ci = [float(np.percentile(col, 2.5)), float(np.percentile(col, 97.5))]
            e[f"{name}_ci95"] = ci
        e["n_bootstrap_used"] = used
        out[lab] = e
    return out
