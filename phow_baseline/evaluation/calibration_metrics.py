"""How well probabilities are calibrated: Brier score, expected calibration error, reliability data.

:func:`brier_scores`, :func:`expected_calibration_error` and
:func:`reliability_curve` over equal-width probability bins
(:data:`N_BINS` of them); :func:`calibration_summary` gathers them per class
as the ``calibration`` entry of ``metrics.json``.  The probabilities come
from :mod:`phow_baseline.classification.calibration`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ._validation import check_truth_and_scores

#: Equal-width bins of the expected calibration error and the reliability diagrams
#: (10, the usual choice since Naeini et al. 2015 and Guo et al. 2017).
N_BINS = 10


def _check_py(y_true, prob):
    y, p = check_truth_and_scores(y_true, prob, what="probabilities")
    if ((p < 0) | (p > 1)).any():
        raise ValueError("probabilities must lie in [0, 1]")
    return y, p


def brier_scores(y_true, prob) -> np.ndarray:
    """Brier score per class: the mean of ``(p - y)^2`` (0 is perfect; 0.25 is p = 1/2 everywhere).

    Parameters
    ----------
    y_true : array-like of 0/1, (n_images,) or (n_images, n_classes)
        Ground truth, one column per class.
    prob : array-like of float, same shape as ``y_true``
        Predicted probabilities of the positive class, in [0, 1].

    Returns
    -------
    brier : (n_classes,) float64 ndarray
        Mean squared difference between probability and 0/1 truth per class,
        in [0, 1].

    Raises
    ------
    ValueError
        Shapes that differ, non-finite probabilities or ones outside [0, 1],
        truth other than 0/1.
    """
    y, p = _check_py(y_true, prob)
    return ((p - y) ** 2).mean(0)


def _bins(p, n_bins):
    # equal-width bins [0, 1/n), ..., [(n-1)/n, 1]; p = 1 falls in the last one
    return np.minimum((p * n_bins).astype(np.int64), n_bins - 1)


def reliability_curve(y_true, prob, n_bins: int = N_BINS) -> list[dict]:
    """Reliability-diagram data per class over ``n_bins`` equal-width bins of ``[0, 1]``.

    Bin ``i`` holds the probabilities in ``[i / n_bins, (i + 1) / n_bins)``;
    a probability of exactly 1 falls in the last bin.

    Parameters
    ----------
    y_true : array-like of 0/1, (n_images,) or (n_images, n_classes)
        Ground truth, one column per class.
    prob : array-like of float, same shape as ``y_true``
        Predicted probabilities of the positive class, in [0, 1].
    n_bins : int, default N_BINS (10)
        Number of equal-width probability bins.

    Returns
    -------
    curves : list of dict, one per class (column order)
        ``mean_predicted`` (mean probability in each bin), ``observed``
        (fraction of positives in each bin), both lists of ``n_bins`` floats
        in [0, 1] with ``None`` for empty bins, and ``count`` (images per
        bin, ``n_bins`` ints).
    """
    y, p = _check_py(y_true, prob)
    out = []
    for j in range(p.shape[1]):
        b = _bins(p[:, j], n_bins)
        cnt = np.bincount(b, minlength=n_bins)
        sp = np.bincount(b, weights=p[:, j], minlength=n_bins)
        sy = np.bincount(b, weights=y[:, j], minlength=n_bins)
        with np.errstate(invalid="ignore", divide="ignore"):
            mp, ob = sp / cnt, sy / cnt
        out.append(
            {
                "mean_predicted": [None if c == 0 else float(v) for v, c in zip(mp, cnt)],
                "observed": [None if c == 0 else float(v) for v, c in zip(ob, cnt)],
                "count": cnt.astype(int).tolist(),
            }
        )
    return out


def expected_calibration_error(y_true, prob, n_bins: int = N_BINS) -> np.ndarray:
    """Expected calibration error per class over ``n_bins`` equal-width bins.

    ECE = sum over bins of ``(n_bin / n) * |mean p in bin - fraction positive in bin|``
    (Naeini et al. 2015), a probability (0 is perfect).

    Parameters
    ----------
    y_true : array-like of 0/1, (n_images,) or (n_images, n_classes)
        Ground truth, one column per class.
    prob : array-like of float, same shape as ``y_true``
        Predicted probabilities of the positive class, in [0, 1].
    n_bins : int, default N_BINS (10)
        Number of equal-width probability bins (as in :func:`reliability_curve`).

    Returns
    -------
    ece : (n_classes,) float64 ndarray
        Expected calibration error per class, in [0, 1]; NaN when there are
        no images.
    """
    y, p = _check_py(y_true, prob)
    n, k = p.shape
    ece = np.empty(k)
    for j in range(k):
        b = _bins(p[:, j], n_bins)
        gap = np.bincount(b, weights=p[:, j] - y[:, j], minlength=n_bins)
        ece[j] = np.abs(gap).sum() / n if n else np.nan
    return ece


def calibration_summary(y_true, prob, labels: Sequence[str], n_bins: int = N_BINS) -> dict:
    """Brier score, ECE and reliability data per class, as JSON-ready dicts keyed by label.

    This is the ``calibration`` entry of a run's ``metrics.json``.

    Parameters
    ----------
    y_true : array-like of 0/1, (n_images,) or (n_images, n_classes)
        Ground truth, one column per class.
    prob : array-like of float, same shape as ``y_true``
        Predicted probabilities of the positive class, in [0, 1].
    labels : sequence of str, length n_classes
        Class names, in column order.
    n_bins : int, default N_BINS (10)
        Number of equal-width probability bins of the ECE and reliability data.

    Returns
    -------
    summary : dict
        ``n_bins`` (int), ``binning`` (``"equal-width"``), ``brier`` and
        ``ece`` ({label: float in [0, 1]}), ``mean_brier`` and ``mean_ece``
        (their means over the classes) and ``reliability`` ({label: dict of
        :func:`reliability_curve`}).

    Raises
    ------
    ValueError
        A number of labels other than the columns, or invalid inputs (see
        :func:`brier_scores`).
    """
    y, p = _check_py(y_true, prob)
    if len(labels) != p.shape[1]:
        raise ValueError(f"{len(labels)} labels for {p.shape[1]} classes")
    brier = brier_scores(y, p)
    ece = expected_calibration_error(y, p, n_bins)
    rel = reliability_curve(y, p, n_bins)
    return {
        "n_bins": int(n_bins),
        "binning": "equal-width",
        "brier": {lab: float(brier[j]) for j, lab in enumerate(labels)},
        "ece": {lab: float(ece[j]) for j, lab in enumerate(labels)},
        "mean_brier": float(brier.mean()),
        "mean_ece": float(ece.mean()),
        "reliability": {lab: rel[j] for j, lab in enumerate(labels)},
    }
