"""Per-class ROC curves and AUROC, with bootstrap intervals and bands.

AUROC is the Mann-Whitney statistic, computed from one sort and able to
weight the images (:func:`auroc_weighted`), so that the bootstrap
resamples (:func:`~phow_baseline.evaluation.bootstrap.bootstrap_weights`)
cost one weighted pass each.  A resample that draws no positive (or no
negative) image of a class has no AUROC for that class and is left out of
that class's interval; the number of resamples actually used is recorded per
class (``n_bootstrap_used``), so a reader sees when an interval rests on
fewer resamples than asked for.

A ``mask`` (``(n, n_classes)`` bool, as
:meth:`phow_baseline.data.protocol.ChestDataset.targets` gives it) leaves
cells out of their class: a class's ROC, AUROC and intervals use the images
whose cell is True (an uncertain CheXpert or MIMIC label under the
evaluation policy is False).  The bootstrap still draws whole images, the
same draws for every class; a masked image weighs nothing in its class.
Without a mask, or with an all-True one, the figures are those computed
without one, to the last digit.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..data.chestxray14 import LABELS
from ._validation import check_truth_and_scores
from .bootstrap import DEFAULT_N_BOOTSTRAP, bootstrap_weights

#: False-positive rates at which the bootstrap band of each ROC curve is evaluated.
ROC_GRID = np.linspace(0.0, 1.0, 101)


def auroc_weighted(y: np.ndarray, s: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """AUROC of one class under one or many weightings of the samples.

    AUROC = P(score of a positive > score of a negative) + P(tie) / 2, the
    Mann-Whitney statistic, computed from one sort: for every group of tied
    scores, positives in the group beat the negatives ranked below it and
    tie with those inside it.

    Parameters
    ----------
    y : (n,) bool ndarray
        Ground truth of the class for each image.
    s : (n,) float ndarray
        Scores of the class (any monotone units: decision values or probabilities).
    weights : (B, n) array-like, optional
        Sample multiplicities (e.g. bootstrap counts, or 0/1 masks); ``None`` is all ones.

    Returns
    -------
    auroc : (B,) float64 ndarray
        AUROC under each weighting, in [0, 1] (``B`` is 1 without
        ``weights``); NaN where a weighting leaves no positive or no negative.
    """
    order = np.argsort(s, kind="mergesort")
    ss, yy = s[order], y[order]
    w = np.ones((1, len(s))) if weights is None else np.asarray(weights, float)[:, order]
    # tie groups: start index of each group of equal scores
    starts = np.flatnonzero(np.r_[True, ss[1:] != ss[:-1]])
    pos = np.add.reduceat(w * yy, starts, axis=1)
    neg = np.add.reduceat(w * ~yy, starts, axis=1)
    neg_below = np.cumsum(neg, axis=1) - neg
    P, N = pos.sum(1), neg.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (pos * neg_below + 0.5 * pos * neg).sum(1) / (P * N)


def auroc_weighted_all(y, s, mask=None) -> np.ndarray:
    """AUROC of every class, unweighted.

    Parameters
    ----------
    y : (n, n_classes) bool
        Ground truth.
    s : (n, n_classes) float
        Scores.
    mask : (n, n_classes) bool, optional
        Cells to score (see the module docstring); default all.

    Returns
    -------
    auroc : (n_classes,) float64 ndarray
        AUROC per class, in [0, 1]; NaN for a class without a positive or a
        negative (among its scored cells).
    """
    m = check_mask(mask, np.shape(y))
    return np.array(
        [
            auroc_weighted(y[:, j], s[:, j], None if m is None or m[:, j].all() else m[None, :, j].astype(float))[0]
            for j in range(y.shape[1])
        ]
    )


def check_mask(mask, shape) -> np.ndarray | None:
    """A scoring mask as ``(n, n_classes)`` bool, or None when there is none or it keeps every cell.

    Parameters
    ----------
    mask : array-like of bool, shape (n, n_classes) (or (n,) for one class), or None
        True where a cell is scored.
    shape : tuple of int
        The shape of the ground truth it goes with.

    Returns
    -------
    ndarray of bool, shape ``shape`` as 2-D, or None
        None when ``mask`` is None or all True (the unmasked computation then runs, to the last digit).

    Raises
    ------
    ValueError
        A shape other than the ground truth's, or values other than 0/1.
    """
    if mask is None:
        return None
    m = np.asarray(mask)
    shape = tuple(shape) if len(shape) == 2 else (shape[0], 1)
    if m.ndim == 1:
        m = m[:, None]
    if m.shape != shape:
        raise ValueError(f"mask {m.shape} and y_true {shape} differ in shape")
    if m.dtype != bool:
        if not np.isin(m, (0, 1)).all():
            raise ValueError("mask must hold booleans (or 0/1)")
        m = m.astype(bool)
    return None if m.all() else m


def bootstrap_auroc(y_true, scores, n_bootstrap=DEFAULT_N_BOOTSTRAP, seed=0, chunk=100, mask=None) -> np.ndarray:
    """AUROC of every class on ``n_bootstrap`` resamples of the images.

    Each resample draws n images with replacement (the same draw for every
    class, so class means stay paired); with ``mask`` ``(n, n_classes)``, an
    image whose cell is False weighs nothing in that class.

    Parameters
    ----------
    y_true : (n, n_classes) array-like of 0/1
        Ground truth.
    scores : (n, n_classes) array-like of float
        Scores, one column per class.
    n_bootstrap : int, default DEFAULT_N_BOOTSTRAP (1000)
        Number of resamples.
    seed : int, numpy.random.Generator or None, default 0
        Seed of the resamples (:func:`~phow_baseline.evaluation.bootstrap.bootstrap_weights`).
    chunk : int, default 100
        Resamples drawn at a time (bounds the memory to ``chunk * n`` counts).
    mask : (n, n_classes) array-like of bool, optional
        Cells to score (see the module docstring); default all.

    Returns
    -------
    auroc : (n_bootstrap, n_classes) float64 ndarray
        AUROC of each class on each resample, in [0, 1]; NaN where a
        resample drew no positive or no negative of the class.
    """
    y, s = np.asarray(y_true).astype(bool), np.asarray(scores, float)
    n, k = y.shape
    m = check_mask(mask, y.shape)
    out = np.empty((n_bootstrap, k))
    lo = 0
    for w in bootstrap_weights(n, n_bootstrap, seed, chunk):
        for j in range(k):
            wj = w if m is None or m[:, j].all() else w * m[None, :, j]
            out[lo : lo + len(w), j] = auroc_weighted(y[:, j], s[:, j], wj)
        lo += len(w)
    return out


def bootstrap_roc_band(
    y_true, scores, grid=ROC_GRID, n_bootstrap=DEFAULT_N_BOOTSTRAP, seed=0, chunk=100, level=95.0, mask=None
):
    """Pointwise bootstrap band of every class's ROC curve.

    For each resample (the draws of :func:`bootstrap_auroc` for the same
    ``seed``) the curve's true-positive rate at each false-positive rate of
    ``grid`` is the highest TPR reached at an FPR no greater than it (the
    curve as a step function); the band is the percentile interval of those
    TPRs over the resamples that define the class (at least one positive and
    one negative).  With ``mask`` ``(n, n_classes)``, an image whose cell is
    False weighs nothing in that class.

    Parameters
    ----------
    y_true : (n, n_classes) array-like of 0/1
        Ground truth.
    scores : (n, n_classes) array-like of float
        Scores, one column per class.
    grid : (n_grid,) array-like of float, default ROC_GRID
        False-positive rates (fractions in [0, 1], increasing) at which the
        band is evaluated; the default is 101 points, 0 to 1 by 0.01.
    n_bootstrap : int, default DEFAULT_N_BOOTSTRAP (1000)
        Number of resamples.
    seed : int, numpy.random.Generator or None, default 0
        Seed of the resamples (the draws of :func:`bootstrap_auroc`).
    chunk : int, default 100
        Resamples drawn at a time.
    level : float, default 95.0
        Coverage of the percentile band, in percent.
    mask : (n, n_classes) array-like of bool, optional
        Cells to score (see the module docstring); default all.

    Returns
    -------
    lo, hi : (n_classes, n_grid) float64 ndarray
        Lower and upper true-positive rate (fractions in [0, 1]) at each
        grid point; NaN for a class no resample defines.
    n_used : (n_classes,) int64 ndarray
        Resamples that define each class (at least one positive and one
        negative drawn).
    """
    y, s = np.asarray(y_true).astype(bool), np.asarray(scores, float)
    n, k = y.shape
    m = check_mask(mask, y.shape)
    grid = np.asarray(grid, float)
    tprs = [[] for _ in range(k)]
    orders, lasts = [], []
    for j in range(k):
        o = np.argsort(-s[:, j], kind="mergesort")
        ss = s[o, j]
        orders.append(o)
        lasts.append(np.r_[ss[1:] != ss[:-1], True])
    for w in bootstrap_weights(n, n_bootstrap, seed, chunk):
        for j in range(k):
            wo = w[:, orders[j]].astype(np.float64)
            if m is not None and not m[:, j].all():
                wo = wo * m[None, orders[j], j]
            yo = y[orders[j], j]
            tp = np.cumsum(wo * yo, axis=1)[:, lasts[j]]
            fp = np.cumsum(wo * ~yo, axis=1)[:, lasts[j]]
            P, N = tp[:, -1:], fp[:, -1:]
            ok = (P[:, 0] > 0) & (N[:, 0] > 0)
            if not ok.any():
                continue
            tpr = np.c_[np.zeros((ok.sum(), 1)), tp[ok] / P[ok]]
            fpr = np.c_[np.zeros((ok.sum(), 1)), fp[ok] / N[ok]]
            rows = np.empty((len(tpr), len(grid)))
            for r in range(len(tpr)):
                rows[r] = tpr[r, np.searchsorted(fpr[r], grid, side="right") - 1]
            tprs[j].append(rows)
    a = (100.0 - level) / 2
    lo, hi = np.full((k, len(grid)), np.nan), np.full((k, len(grid)), np.nan)
    n_used = np.zeros(k, np.int64)
    for j in range(k):
        if tprs[j]:
            t = np.concatenate(tprs[j])
            n_used[j] = len(t)
            lo[j], hi[j] = np.percentile(t, a, axis=0), np.percentile(t, 100 - a, axis=0)
    return lo, hi, n_used


def default_labels(labels: Sequence[str] | None, n_classes: int) -> list[str]:
    """The label names of ``n_classes`` score columns: ``labels``, or ChestX-ray14's 14 when not given.

    Parameters
    ----------
    labels : sequence of str or None
        The names given by the caller, returned as a list when not None.
    n_classes : int
        Columns of the scores.

    Returns
    -------
    labels : list of str
        ``n_classes`` names when defaulted (otherwise ``labels`` as given).

    Raises
    ------
    ValueError
        ``labels`` not given for other than 14 columns (only ChestX-ray14's default is known).
    """
    if labels is not None:
        return list(labels)
    if n_classes != len(LABELS):
        raise ValueError(f"{n_classes} score columns: give their label names (labels=...)")
    return list(LABELS)


def evaluate_scores(
    y_true, scores, labels: Sequence[str] | None = None, n_bootstrap=DEFAULT_N_BOOTSTRAP, seed=0, mask=None
) -> dict:
    """Per-class ROC curves and AUROC, mean AUROC and bootstrap 95 % intervals.

    A class with no positive (or no negative) image has no AUROC: it is
    reported as ``None`` and left out of the mean, with its count in
    ``undefined``.

    Parameters
    ----------
    y_true : (n, n_classes) array-like of 0/1
        Ground truth, one column per class.
    scores : (n, n_classes) array-like of float
        Scores (decision values or probabilities; only their order counts).
    labels : sequence of n_classes str, optional
        The classes' names (default ChestX-ray14's 14, for 14 columns only).
    n_bootstrap : int, default DEFAULT_N_BOOTSTRAP (1000)
        Resamples of the 95 % percentile intervals (0: none).
    seed : int, numpy.random.Generator or None, default 0
        Seed of the resamples (:func:`bootstrap_auroc`).
    mask : (n, n_classes) bool array, optional
        Cells to score; a False cell leaves its image out of that class (see
        the module docstring).  ``n_positive`` counts scored cells only.

    Returns
    -------
    result : dict
        ``labels``; ``auroc`` {label: float in [0, 1] or None} and
        ``auroc_ci95`` {label: [lo, hi] or None}; ``mean_auroc`` (over the
        defined classes) and ``mean_auroc_ci95``; ``n_positive`` {label:
        int, images}; ``undefined`` (labels without an AUROC); ``roc``
        {label: (fpr, tpr, thresholds)}, 1-D arrays of
        :func:`sklearn.metrics.roc_curve` (rates as fractions, thresholds in
        score units); ``n_bootstrap_used`` {label: int}: the resamples that
        define the class's AUROC (the others drew no positive or no negative
        and are not in its interval), and
        ``mean_auroc_n_bootstrap_complete``: the resamples that define every
        class (the mean's interval averages, on the others, the classes they
        define); with a mask that leaves cells out, also ``n_scored``
        {label: int}, the images scored per class.
    """
    from sklearn.metrics import roc_curve

    y, s = check_truth_and_scores(y_true, scores, labels)
    labels = default_labels(labels, y.shape[1])
    m = check_mask(mask, y.shape)
    rows = [slice(None) if m is None else m[:, j] for j in range(y.shape[1])]
    auc = auroc_weighted_all(y, s, m)
    defined = np.array([0 < y[rows[j], j].sum() < len(y[rows[j], j]) for j in range(y.shape[1])])
    roc = {}
    for j, lab in enumerate(labels):
        if defined[j]:
            fpr, tpr, thr = roc_curve(y[rows[j], j], s[rows[j], j])
            roc[lab] = (fpr, tpr, thr)
    ci = {lab: None for lab in labels}
    used = {lab: 0 for lab in labels}
    mean_ci, complete = None, 0
    if n_bootstrap and defined.any():
        boot = bootstrap_auroc(y, s, n_bootstrap=n_bootstrap, seed=seed, mask=m)
        for j, lab in enumerate(labels):
            if defined[j]:
                col = boot[:, j][np.isfinite(boot[:, j])]
                used[lab] = int(len(col))
                if len(col):
                    ci[lab] = [float(np.percentile(col, 2.5)), float(np.percentile(col, 97.5))]
        complete = int(np.isfinite(boot[:, defined]).all(1).sum())
        means = np.nanmean(boot[:, defined], axis=1)
        mean_ci = [float(np.nanpercentile(means, 2.5)), float(np.nanpercentile(means, 97.5))]
    aur = {lab: (float(auc[j]) if defined[j] else None) for j, lab in enumerate(labels)}
    out = {
        "labels": list(labels),
        "auroc": aur,
        "auroc_ci95": ci,
        "mean_auroc": float(np.mean(auc[defined])) if defined.any() else None,
        "mean_auroc_ci95": mean_ci,
        "n_positive": {lab: int(y[rows[j], j].sum()) for j, lab in enumerate(labels)},
        "undefined": [lab for j, lab in enumerate(labels) if not defined[j]],
        "roc": roc,
        "n_bootstrap_used": used,
        "mean_auroc_n_bootstrap_complete": complete,
    }
    if m is not None:
        out["n_scored"] = {lab: int(m[:, j].sum()) for j, lab in enumerate(labels)}
    return out
