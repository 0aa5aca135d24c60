"""Paired comparison of two runs scored on the same test images: DeLong's test and the paired bootstrap.

Two runs (two encodings, PHOW against a CNN) scored on the same images give
correlated AUROCs: a difference between them is judged by the variance of
the *difference*, which is smaller than the sum of the two variances when
the runs rank the images alike.  Two estimates of it, each with a 95 %
interval and a two-sided p-value, per class and for the mean AUROC over the
classes:

* **DeLong's test** (DeLong, DeLong and Clarke-Pearson 1988, "Comparing the
  areas under two or more correlated receiver operating characteristic
  curves: a nonparametric approach", Biometrics 44:837-845), computed with
  the fast algorithm of Sun and Xu (2014, "Fast implementation of DeLong's
  algorithm for comparing the areas under correlated receiver operating
  characteristic curves", IEEE Signal Processing Letters 21:1389-1393): the
  structural components come from midranks, in O(n log n) per class and run
  instead of the O(P N) of the Mann-Whitney double sum.  The interval is the
  normal one, ``difference +- 1.96 SE``.
* **The paired bootstrap**: resample the images with replacement, the same
  draws for both runs and every class (the draws of
  :func:`phow_baseline.evaluation.roc.bootstrap_auroc` for the same
  seed); the interval is the 2.5 and 97.5 percentiles of the resampled
  differences, the p-value twice the share of resamples on the far side of
  zero (see :func:`paired_bootstrap`).

:func:`compare_runs` reads two run directories (``scores.csv`` when the run
has one, the scores its AUROCs were computed from, else ``predictions.csv``)
and the labels the evaluation used, and refuses, naming both runs, when they
were not scored on the same images or share no label.  :func:`compare_run_dirs`
compares several runs against the first or all pairs; :func:`format_paired`
is the stdout table, :func:`write_paired` writes ``paired.csv`` / ``paired.md``
and :func:`plot_paired_differences` (in :mod:`.paired_plots`) the forest plot;
:func:`write_paired_dir` writes all of them and ``paired.json`` (the comparison
folder of ``compare --out``, which the report reads with :func:`read_paired_dir`).
The labels are each run's ``labels.csv`` (written by ``write_run_dir``) unless
given; a run whose evaluation left labels out (a mask: blank cells there) is
refused.

All AUROCs and differences are in AUROC units (a probability, 0 to 1);
differences are always run B minus run A.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.special import ndtr, ndtri
from scipy.stats import rankdata

from ..data.chestxray14 import LABELS, METADATA_FILES, labels_from_strings, read_metadata
from ..io import atomic_write_json, atomic_write_text, confined, read_json
from .bootstrap import DEFAULT_N_BOOTSTRAP, bootstrap_weights
from .roc import auroc_weighted
from .rundir import LABELS_CSV, read_metrics, read_predictions

#: Two-sided coverage of every interval here.
LEVEL = 0.95
#: Standard normal quantile of the 95 % normal interval (1.959963984540054).
Z95 = float(ndtri(1.0 - (1.0 - LEVEL) / 2.0))
#: Files of a paired comparison (:func:`write_paired`).
PAIRED_CSV, PAIRED_MD = "paired.csv", "paired.md"
#: The record of a comparison folder (:func:`write_paired_dir`): every result, its forest plot and caption.
PAIRED_JSON = "paired.json"

#: Reasons a class has no test (or no DeLong variance), as written in the results.
NO_POSITIVE = "no positive image"
NO_NEGATIVE = "no negative image"
FEW_FOR_VARIANCE = "DeLong's variance needs at least 2 positive and 2 negative images"


# --------------------------------------------------------------------------
# DeLong (Sun & Xu 2014)
# --------------------------------------------------------------------------


def delong_components(y, scores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """AUROC and DeLong's structural components of one class, for one or several runs, from midranks.

    With ``psi(x, z) = 1`` if ``x > z``, ``1/2`` if ``x == z``, ``0`` otherwise (the Mann-Whitney
    kernel), the component of positive ``i`` is ``V10(i) = mean over negatives l of psi(s_i, s_l)``,
    that of negative ``l`` is ``V01(l) = mean over positives i of psi(s_i, s_l)``, and the AUROC is
    the mean of either.  Sun and Xu (2014) obtain them from midranks: ``V10(i) = (Tz(i) - Tx(i)) / N``
    and ``V01(l) = 1 - (Tz(l) - Ty(l)) / P``, where ``Tz`` ranks among all images, ``Tx`` among the
    positives and ``Ty`` among the negatives (ties share the mean rank), in O(n log n).

    Parameters
    ----------
    y : (n,) array of 0/1 or bool
        The class label of each image; at least one positive and one negative.
    scores : (n,) or (n, m) float array
        The scores of ``m`` runs (any monotone scale: only their order matters).

    Returns
    -------
    auroc : (m,) float array
        AUROC of each run (probability, 0 to 1; ties count one half).
    v10 : (P, m) float array
        Structural components of the positives, in the images' order.
    v01 : (N, m) float array
        Structural components of the negatives, in the images' order.
    """
    yy = np.asarray(y).astype(bool).ravel()
    s = np.asarray(scores, np.float64)
    s = s[:, None] if s.ndim == 1 else s
    if s.shape[0] != len(yy):
        raise ValueError(f"{len(yy)} labels but {s.shape[0]} score rows")
    P, N = int(yy.sum()), int((~yy).sum())
    if P == 0 or N == 0:
        raise ValueError(f"DeLong's components need a positive and a negative image ({P} positive, {N} negative)")
    tz = rankdata(s, method="average", axis=0)
    tx = rankdata(s[yy], method="average", axis=0)
    ty = rankdata(s[~yy], method="average", axis=0)
    v10 = (tz[yy] - tx) / N
    v01 = 1.0 - (tz[~yy] - ty) / P
    auroc = (tz[yy].sum(0) - P * (P + 1) / 2.0) / (P * N)
    return auroc, v10, v01


def delong_covariance(y, scores) -> tuple[np.ndarray, np.ndarray]:
    """AUROCs of one class for ``m`` runs and DeLong's estimate of their covariance.

    ``S = S10 / P + S01 / N``, with ``S10`` (``S01``) the sample covariance (divisor ``P - 1``,
    ``N - 1``) of the runs' structural components over the ``P`` positives (``N`` negatives);
    see :func:`delong_components`.

    Parameters
    ----------
    y : (n,) array of 0/1 or bool
        At least 2 positive and 2 negative images.
    scores : (n,) or (n, m) float array
        Scores of the class by ``m`` runs (one column each) on the same images.

    Returns
    -------
    auroc : (m,) float array
        AUROC of each run, in [0, 1].
    cov : (m, m) float array
        Covariance of the AUROC estimates (AUROC units squared).
    """
    auroc, v10, v01 = delong_components(y, scores)
    if len(v10) < 2 or len(v01) < 2:
        raise ValueError(f"{FEW_FOR_VARIANCE} ({len(v10)} positive, {len(v01)} negative)")
    d10, d01 = v10 - auroc, v01 - auroc
    cov = d10.T @ d10 / (len(v10) * (len(v10) - 1)) + d01.T @ d01 / (len(v01) * (len(v01) - 1))
    return auroc, cov


def delong_influence(y, scores) -> tuple[np.ndarray, np.ndarray]:
    """Per-image terms whose Gram matrix is DeLong's covariance: the form that extends across classes.

    Image ``t``'s term for a run is ``(V10(t) - AUROC) / sqrt(P (P - 1))`` when ``t`` is positive and
    ``(V01(t) - AUROC) / sqrt(N (N - 1))`` when negative.  For one class, ``phi.T @ phi`` is exactly
    :func:`delong_covariance`'s ``S10 / P + S01 / N``.  For classes ``j`` and ``k`` scored on the same
    images, ``phi_j.T @ phi_k`` estimates ``Cov(AUROC_j, AUROC_k)``: each AUROC is, to first order, the
    sum over images of these terms (the linearisation of a two-sample U-statistic behind DeLong's
    method), and images are independent, so the covariance is the sum of the images' products; an
    image positive for one class and negative for the other pairs its ``V10`` with its ``V01``.

    Parameters
    ----------
    y : (n,) array of 0/1 or bool
        At least 2 positive and 2 negative images.
    scores : (n,) or (n, m) float array
        Scores of the class by ``m`` runs (one column each) on the same images.

    Returns
    -------
    auroc : (m,) float array
        AUROC of each run, in [0, 1].
    phi : (n, m) float array
        One row per image in the given order (AUROC units).
    """
    yy = np.asarray(y).astype(bool).ravel()
    auroc, v10, v01 = delong_components(yy, scores)
    P, N = len(v10), len(v01)
    if P < 2 or N < 2:
        raise ValueError(f"{FEW_FOR_VARIANCE} ({P} positive, {N} negative)")
    phi = np.empty((len(yy), v10.shape[1]))
    phi[yy] = (v10 - auroc) / math.sqrt(P * (P - 1))
    phi[~yy] = (v01 - auroc) / math.sqrt(N * (N - 1))
    return auroc, phi


def _normal_test(diff: float, se: float) -> dict:
    """z, two-sided p and the 95 % normal interval of a difference with standard error ``se``."""
    if not (np.isfinite(diff) and np.isfinite(se)):
        return {"difference": diff, "se": np.nan, "ci95": [np.nan, np.nan], "z": np.nan, "p_value": np.nan}
    if se == 0.0:  # identical rankings (or both constant components): no spread to test against
        z = 0.0 if diff == 0.0 else math.copysign(math.inf, diff)
        p = 1.0 if diff == 0.0 else 0.0
    else:
        z = diff / se
        p = float(2.0 * ndtr(-abs(z)))
    return {"difference": diff, "se": se, "ci95": [diff - Z95 * se, diff + Z95 * se], "z": z, "p_value": p}


def delong_test(y, scores_a, scores_b) -> dict:
    """DeLong's test of ``AUROC_B - AUROC_A`` for one class scored by two runs on the same images.

    ``z = (AUROC_B - AUROC_A) / SE`` with ``SE^2 = c' S c``, ``c = (-1, 1)`` and ``S`` the 2x2 DeLong
    covariance; the p-value is two-sided (``2 Phi(-|z|)``) and the interval ``difference +- 1.96 SE``.
    Two runs that rank the images identically give difference 0, SE 0 and p = 1.

    Parameters
    ----------
    y : (n,) array of 0/1 or bool
        Ground truth of the class.
    scores_a, scores_b : (n,) float arrays
        Runs A's and B's scores of the same images, in the same order.

    Returns
    -------
    dict
        ``auroc_a``, ``auroc_b``, ``difference`` (B - A), ``se``, ``ci95`` ([lo, hi]), ``z``,
        ``p_value``, ``n_positive``, ``n_negative`` and ``reason`` (``None``, or why the AUROCs (no
        positive or no negative image) or the variance (fewer than 2 of either) are NaN).
    """
    return _delong_test(y, scores_a, scores_b)[0]


def _delong_test(y, scores_a, scores_b) -> tuple[dict, np.ndarray | None]:
    yy = np.asarray(y).astype(bool).ravel()
    s = np.column_stack([np.asarray(scores_a, np.float64).ravel(), np.asarray(scores_b, np.float64).ravel()])
    P, N = int(yy.sum()), int((~yy).sum())
    out: dict = {"auroc_a": np.nan, "auroc_b": np.nan, "n_positive": P, "n_negative": N, "reason": None}
    if P == 0 or N == 0:
        out.update(_normal_test(np.nan, np.nan), reason=NO_POSITIVE if P == 0 else NO_NEGATIVE)
        return out, None
    if P < 2 or N < 2:
        auroc, _, _ = delong_components(yy, s)
        out.update(auroc_a=float(auroc[0]), auroc_b=float(auroc[1]))
        out.update(
            _normal_test(float(auroc[1] - auroc[0]), np.nan), reason=f"{FEW_FOR_VARIANCE} ({P} positive, {N} negative)"
        )
        return out, None
    auroc, phi = delong_influence(yy, s)
    d = phi[:, 1] - phi[:, 0]
    out.update(auroc_a=float(auroc[0]), auroc_b=float(auroc[1]))
    out.update(_normal_test(float(auroc[1] - auroc[0]), float(math.sqrt(d @ d))))
    return out, d


# --------------------------------------------------------------------------
# Many classes: per class and the mean AUROC
# --------------------------------------------------------------------------


def _check_pair(y_true, scores_a, scores_b, labels) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    y = np.asarray(y_true)
    a, b = np.asarray(scores_a, np.float64), np.asarray(scores_b, np.float64)
    y, a, b = (x[:, None] if x.ndim == 1 else x for x in (y, a, b))
    if not (y.shape == a.shape == b.shape):
        raise ValueError(f"y_true {y.shape}, scores_a {a.shape} and scores_b {b.shape} differ in shape")
    if y.shape[1] != len(labels):
        raise ValueError(f"{y.shape[1]} columns but {len(labels)} labels")
    for name, s in (("scores_a", a), ("scores_b", b)):
        if not np.isfinite(s).all():
            raise ValueError(f"{name} contain {int((~np.isfinite(s)).sum())} non-finite value(s)")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("y_true must hold 0/1 values")
    return y.astype(bool), a, b


def paired_delong(y_true, scores_a, scores_b, labels: Sequence[str] = LABELS) -> dict:
    """DeLong's test per class and for the mean AUROC over the classes, runs A and B on the same images.

    The mean difference ``D = (1/K) sum_j (AUROC_Bj - AUROC_Aj)`` over the ``K`` classes with at least
    2 positive and 2 negative images has variance ``c' S c``, where ``S`` is the covariance of all
    ``2K`` AUROCs and ``c`` holds ``-1/K`` for run A's and ``+1/K`` for run B's.  The classes share
    images, so ``S`` is not block-diagonal: it is the Gram matrix ``Phi' Phi`` of the per-image terms of
    :func:`delong_influence` stacked over classes and runs (an ``n x 2K`` matrix ``Phi``), whose
    per-class 2x2 blocks are DeLong's covariances exactly.  Hence
    ``Var(D) = sum_t ((1/K) sum_j (phi_Bj(t) - phi_Aj(t)))^2`` over the images ``t``.

    Parameters
    ----------
    y_true : (n, K) array of 0/1
        Ground truth, one column per class.
    scores_a, scores_b : (n, K) float arrays
        The two runs' scores of the same images, rows in the same order.
    labels : sequence of K str, default LABELS
        Class names, in column order.

    Returns
    -------
    dict
        ``per_class``: {label: :func:`delong_test`'s dict}; ``mean``: ``auroc_a``, ``auroc_b``,
        ``difference``, ``se``, ``ci95``, ``z``, ``p_value`` of the mean AUROC over ``labels_in_mean``;
        ``excluded_from_mean``: {label: reason}.  Undefined numbers are NaN.
    """
    y, a, b = _check_pair(y_true, scores_a, scores_b, labels)
    per_class, terms, in_mean, excluded = {}, [], [], {}
    for j, lab in enumerate(labels):
        r, d = _delong_test(y[:, j], a[:, j], b[:, j])
        per_class[lab] = r
        if d is not None:
            terms.append(d)
            in_mean.append(lab)
        else:
            excluded[lab] = r["reason"]
    mean = {"auroc_a": np.nan, "auroc_b": np.nan}
    if in_mean:
        d = np.mean(terms, axis=0)
        mean_a = float(np.mean([per_class[lab]["auroc_a"] for lab in in_mean]))
        mean_b = float(np.mean([per_class[lab]["auroc_b"] for lab in in_mean]))
        mean.update(auroc_a=mean_a, auroc_b=mean_b)
        mean.update(
            _normal_test(float(np.mean([per_class[lab]["difference"] for lab in in_mean])), float(math.sqrt(d @ d)))
        )
    else:
        mean.update(_normal_test(np.nan, np.nan))
    return {"per_class": per_class, "mean": mean, "labels_in_mean": in_mean, "excluded_from_mean": excluded}


# --------------------------------------------------------------------------
# Paired bootstrap
# --------------------------------------------------------------------------


def bootstrap_p_value(differences) -> float:
    """Two-sided bootstrap p-value of a difference: ``min(1, 2 min(share <= 0, share >= 0))``.

    The share of resampled differences on the far side of zero from the bulk, doubled; a resample
    exactly at zero counts on both sides, so identical runs (every difference 0) give p = 1.  Its
    resolution is ``1 / len(differences)``: a p of 0 means "below that".

    Parameters
    ----------
    differences : (B,) float array
        Resampled differences (NaN entries, resamples that do not define it, are ignored).

    Returns
    -------
    float
        NaN when no resample defines the difference.
    """
    d = np.asarray(differences, np.float64)
    d = d[np.isfinite(d)]
    if not len(d):
        return math.nan
    return float(min(1.0, 2.0 * min(np.mean(d <= 0), np.mean(d >= 0))))


def paired_bootstrap(
    y_true,
    scores_a,
    scores_b,
    labels: Sequence[str] = LABELS,
    n_bootstrap: int = DEFAULT_N_BOOTSTRAP,
    seed=0,
    mean_labels: Sequence[str] | None = None,
    chunk: int = 100,
) -> dict:
    """The paired bootstrap of ``AUROC_B - AUROC_A`` per class and for the mean over the classes.

    Each resample draws the n images with replacement, the same draw for both runs and every class
    (the draws of :func:`phow_baseline.evaluation.roc.bootstrap_auroc` for the same ``seed``).
    A resample that draws no positive or no negative image of a class does not define that class's
    difference and is left out of its interval and p-value (the number used is returned).  The mean
    difference of a resample averages the classes of ``mean_labels`` it defines, as the mean AUROC
    intervals of ``metrics.json`` do.  Intervals: the 2.5 and 97.5 percentiles; p-values:
    :func:`bootstrap_p_value`.

    Parameters
    ----------
    y_true : (n, K) array of 0/1
        Ground truth, one column per class.
    scores_a, scores_b : (n, K) float arrays
        The two runs' scores of the same images, rows in the same order.
    labels : sequence of K str, default LABELS
        Class names, in column order.
    n_bootstrap : int, default DEFAULT_N_BOOTSTRAP (1000)
        Resamples (at least 1).
    seed : int, default 0
        Seed of the resamples (the draws of the AUROC intervals for the same seed).
    mean_labels : sequence of str, optional
        The classes averaged in the mean (default: those with a positive and a negative image).
    chunk : int
        Resamples drawn at a time (memory: ``chunk x n`` counts).

    Returns
    -------
    dict
        ``per_class``: {label: {"difference", "ci95", "p_value", "n_used"}}; ``mean``: the same for
        the mean difference plus ``n_complete`` (resamples that define every class of the mean);
        ``labels_in_mean``; ``n_bootstrap``; ``seed``.  Undefined numbers are NaN.
    """
    y, a, b = _check_pair(y_true, scores_a, scores_b, labels)
    if int(n_bootstrap) < 1:
        raise ValueError(f"n_bootstrap must be at least 1, got {n_bootstrap}")
    n, k = y.shape
    defined = np.array([0 < y[:, j].sum() < n for j in range(k)])
    if mean_labels is None:
        in_mean = [lab for j, lab in enumerate(labels) if defined[j]]
    else:
        unknown = [lab for lab in mean_labels if lab not in labels]
        if unknown:
            raise ValueError(f"mean_labels {unknown} are not among the labels {list(labels)}")
        in_mean = [lab for lab in mean_labels if defined[list(labels).index(lab)]]
    boot = np.full((int(n_bootstrap), k), np.nan)
    lo = 0
    for w in bootstrap_weights(n, int(n_bootstrap), seed, chunk):
        for j in np.flatnonzero(defined):
            boot[lo : lo + len(w), j] = auroc_weighted(y[:, j], b[:, j], w) - auroc_weighted(y[:, j], a[:, j], w)
        lo += len(w)
    observed = np.full(k, np.nan)
    for j in np.flatnonzero(defined):
        observed[j] = auroc_weighted(y[:, j], b[:, j])[0] - auroc_weighted(y[:, j], a[:, j])[0]

    def summary(d, obs):
        d = d[np.isfinite(d)]
        ci = [float(np.percentile(d, 2.5)), float(np.percentile(d, 97.5))] if len(d) else [np.nan, np.nan]
        return {"difference": float(obs), "ci95": ci, "p_value": bootstrap_p_value(d), "n_used": int(len(d))}

    per_class = {lab: summary(boot[:, j], observed[j]) for j, lab in enumerate(labels)}
    cols = [list(labels).index(lab) for lab in in_mean]
    if cols:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a resample defining none of the classes: NaN
            means = np.nanmean(boot[:, cols], axis=1)
        mean = summary(means, float(np.mean(observed[cols])))
        mean["n_complete"] = int(np.isfinite(boot[:, cols]).all(1).sum())
    else:
        mean = summary(np.array([]), np.nan)
        mean["n_complete"] = 0
    return {
        "per_class": per_class,
        "mean": mean,
        "labels_in_mean": in_mean,
        "n_bootstrap": int(n_bootstrap),
        "seed": seed,
    }


# --------------------------------------------------------------------------
# Both, on arrays and on run directories
# --------------------------------------------------------------------------


def _num(x):
    """A float for JSON: NaN and infinities become None."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _jsonable_test(d: dict) -> dict:
    out = {}
    for k, v in d.items():
        if k == "ci95":
            out[k] = None if any(_num(x) is None for x in v) else [float(x) for x in v]
        elif isinstance(v, (float, np.floating)):
            out[k] = _num(v)
        else:
            out[k] = v
    return out


def compare_scores(
    y_true,
    scores_a,
    scores_b,
    labels: Sequence[str] = LABELS,
    *,
    name_a: str = "A",
    name_b: str = "B",
    n_bootstrap: int = DEFAULT_N_BOOTSTRAP,
    seed=0,
) -> dict:
    """DeLong's test and the paired bootstrap of run B against run A, per class and for the mean AUROC.

    The mean is over the classes DeLong's test defines (at least 2 positive and 2 negative images)
    for both methods, so that their figures answer the same question; the others are listed with the
    reason in ``excluded_from_mean``.

    Parameters
    ----------
    y_true : (n, K) array of 0/1
        Ground truth, one column per class.
    scores_a, scores_b : (n, K) float arrays
        Both runs' scores of the same n images in the same row order.
    labels : sequence of K str, default LABELS
        Class names, in column order.
    name_a, name_b : str, default "A", "B"
        How the runs are named in tables and figures.
    n_bootstrap : int, default DEFAULT_N_BOOTSTRAP (1000)
        Paired bootstrap resamples (0: DeLong only).
    seed : int, default 0
        Seed of the bootstrap resamples.

    Returns
    -------
    dict (JSON-ready: undefined numbers are None)
        ``run_a``, ``run_b`` ({"name"}), ``n_images``, ``labels``, ``n_bootstrap``, ``seed``,
        ``per_class`` {label: {"auroc_a", "auroc_b", "n_positive", "n_negative", "reason", "delong":
        {"difference", "se", "ci95", "z", "p_value"}, "bootstrap": {"difference", "ci95", "p_value",
        "n_used"} or None}}, ``mean`` (the same, the bootstrap with ``n_complete``),
        ``labels_in_mean``, ``excluded_from_mean`` {label: reason}.  Differences are B - A in AUROC
        units; intervals are 95 %.
    """
    y, a, b = _check_pair(y_true, scores_a, scores_b, labels)
    dl = paired_delong(y, a, b, labels)
    bs = None
    if n_bootstrap:
        bs = paired_bootstrap(y, a, b, labels, n_bootstrap=n_bootstrap, seed=seed, mean_labels=dl["labels_in_mean"])
    keys = ("difference", "se", "ci95", "z", "p_value")
    per_class = {}
    for lab in labels:
        r = dl["per_class"][lab]
        per_class[lab] = {
            "auroc_a": _num(r["auroc_a"]),
            "auroc_b": _num(r["auroc_b"]),
            "n_positive": r["n_positive"],
            "n_negative": r["n_negative"],
            "reason": r["reason"],
            "delong": _jsonable_test({k: r[k] for k in keys}),
            "bootstrap": None if bs is None else _jsonable_test(bs["per_class"][lab]),
        }
    m = dl["mean"]
    mean = {
        "auroc_a": _num(m["auroc_a"]),
        "auroc_b": _num(m["auroc_b"]),
        "delong": _jsonable_test({k: m[k] for k in keys}),
        "bootstrap": None if bs is None else _jsonable_test(bs["mean"]),
    }
    return {
        "run_a": {"name": name_a},
        "run_b": {"name": name_b},
        "n_images": int(len(y)),
        "labels": list(labels),
        "n_bootstrap": int(n_bootstrap or 0),
        "seed": seed,
        "per_class": per_class,
        "mean": mean,
        "labels_in_mean": dl["labels_in_mean"],
        "excluded_from_mean": dl["excluded_from_mean"],
    }


def _run_labels(run_dir: Path, metrics: dict) -> list[str]:
    labs = metrics.get("labels")
    if labs:
        return list(labs)
    cols = pd.read_csv(run_dir / "predictions.csv", nrows=0).columns
    return [c for c in cols if c != "Image Index" and not c.endswith(" decision")]


def _scores_file(run_dir: Path) -> Path:
    for name in ("scores.csv", "predictions.csv"):
        if (run_dir / name).exists():
            return run_dir / name
    raise FileNotFoundError(f"{run_dir}: no scores.csv or predictions.csv (not a run directory?)")


def _truth_table(path) -> pd.DataFrame:
    """The table behind a dataset folder (its metadata) or a labels / metadata CSV; ``attrs["source"]`` names it."""
    p = Path(path)
    if p.is_dir():
        found = [p / f for f in METADATA_FILES if (p / f).exists()]
        if not found:
            raise FileNotFoundError(f"{p}: no metadata CSV (looked for {', '.join(METADATA_FILES)})")
        p = found[0]
    elif not p.exists():
        raise FileNotFoundError(f"{p}: no such dataset folder or labels file")
    try:
        head = pd.read_csv(p, nrows=0)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise ValueError(f"{p}: cannot read the labels CSV ({exc})") from exc
    frame = read_metadata(p) if "Finding Labels" in head.columns else pd.read_csv(p)
    frame.attrs["source"] = str(p)
    return frame


def read_truth(source, names: Sequence[str], labels: Sequence[str] = LABELS) -> np.ndarray:
    """The 0/1 labels of ``names`` from the dataset the runs were evaluated on.

    Parameters
    ----------
    source : dataset, path or DataFrame
        An object with a ``labels(names)`` method returning the :data:`LABELS` matrix (a
        :class:`~phow_baseline.data.chestxray14.ChestXray14`); a dataset folder (its
        ``Data_Entry_2017*`` metadata is read); a metadata CSV (``Image Index`` and ``Finding Labels``);
        a labels CSV or DataFrame with ``Image Index`` and one 0/1 column per label (e.g. a run
        directory's ``labels.csv``); or a DataFrame with ``Image Index`` and ``Finding Labels``.
    names : sequence of str
        The images, in the order wanted.
    labels : sequence of str
        The columns wanted (a subset of :data:`LABELS` for the metadata sources).

    Returns
    -------
    y_true : (len(names), len(labels)) uint8 array
        0/1 truth, rows in the order of ``names``.
    """
    if hasattr(source, "labels") and callable(source.labels):
        unknown = [lab for lab in labels if lab not in LABELS]
        if unknown:
            raise ValueError(f"label(s) {unknown} are not ChestX-ray14 findings {list(LABELS)}")
        full = np.asarray(source.labels(list(names)))
        return full[:, [LABELS.index(lab) for lab in labels]].astype(np.uint8)
    if isinstance(source, (str, Path)):
        source = _truth_table(source)
    if not isinstance(source, pd.DataFrame):
        raise TypeError(f"labels source must be a dataset, a path or a DataFrame, got {type(source).__name__}")
    frame = source
    where = str(frame.attrs.get("source", "the labels table"))
    unknown = [lab for lab in labels if lab not in LABELS] if "Finding Labels" in frame.columns else []
    if unknown:
        raise ValueError(f"{where}: label(s) {unknown} are not ChestX-ray14 findings {list(LABELS)}")
    if "Image Index" not in frame.columns:
        raise ValueError(f"{where}: no 'Image Index' column")
    index = pd.Index(frame["Image Index"])
    if index.has_duplicates:
        raise ValueError(f"{where}: {int(index.duplicated().sum())} duplicated Image Index value(s)")
    pos = index.get_indexer(list(names))
    if (pos < 0).any():
        missing = [nm for nm, i in zip(names, pos) if i < 0]
        raise ValueError(f"{where}: {len(missing)} scored image(s) have no label there, e.g. {missing[:3]}")
    if "Finding Labels" in frame.columns:
        full = labels_from_strings(frame["Finding Labels"].fillna("No Finding").to_numpy()[pos], source=where)
        return full[:, [LABELS.index(lab) for lab in labels]].astype(np.uint8)
    absent = [lab for lab in labels if lab not in frame.columns]
    if absent:
        raise ValueError(f"{where}: no column for label(s) {absent}")
    y = frame[list(labels)].to_numpy()[pos]
    blank = pd.isna(y)
    if blank.any():
        cols = [lab for j, lab in enumerate(labels) if blank[:, j].any()]
        raise ValueError(
            f"{where}: {int(blank.sum())} blank label cell(s) in {cols[:4]} (labels the evaluation left out, "
            "e.g. uncertain ones); a paired comparison of masked runs is not supported"
        )
    if not np.isin(y, (0, 1)).all():
        raise ValueError(f"{where}: label columns must hold 0/1 values")
    return y.astype(np.uint8)


def _check_truth_matches(run_dir: Path, metrics: dict, y: np.ndarray, labels: Sequence[str]) -> None:
    """Refuse labels whose positive counts differ from those the run recorded in metrics.json."""
    recorded = metrics.get("n_positive") or {}
    bad = [
        f"{lab}: {int(y[:, j].sum())} here, {recorded[lab]} in metrics.json"
        for j, lab in enumerate(labels)
        if lab in recorded and int(recorded[lab]) != int(y[:, j].sum())
    ]
    if bad:
        raise ValueError(
            f"{run_dir}: the labels given are not those the run was evaluated with "
            f"(positives per class differ: {'; '.join(bad[:4])})"
        )


def compare_runs(
    run_a, run_b, truth=None, *, labels: Sequence[str] | None = None, n_bootstrap: int = DEFAULT_N_BOOTSTRAP, seed=0
) -> dict:
    """Paired comparison of two run directories scored on the same test images (B - A).

    Reads each run's ``metrics.json`` (its name and labels) and its scores: ``scores.csv`` when
    present (the scores its AUROCs were computed from; ``predictions.csv`` then holds calibrated
    probabilities), else ``predictions.csv``.  Rows are matched by ``Image Index``, so the two files
    may list the images in different orders.  The labels are checked against the positives per class
    each run recorded in ``metrics.json``.

    Parameters
    ----------
    run_a, run_b : path
        Run directories (written by :func:`phow_baseline.evaluation.rundir.write_run_dir`).
    truth : optional
        Where the labels come from: see :func:`read_truth` (a dataset folder, a metadata or labels
        CSV, a DataFrame or a dataset).  Default: the ``labels.csv`` of run A, else of run B.
    labels : sequence of str, optional
        The classes to compare (default: those both runs scored, in run A's order).
    n_bootstrap : int, default DEFAULT_N_BOOTSTRAP (1000)
        Paired bootstrap resamples (0: DeLong only).
    seed : int, default 0
        Seed of the bootstrap resamples.

    Returns
    -------
    dict
        :func:`compare_scores`'s result; ``run_a`` / ``run_b`` also hold ``path`` and ``scores_file``.

    Raises
    ------
    ValueError
        Naming both runs, when they were not scored on the same images (with the counts and a few
        names) or share no label; naming a run, when the labels do not match its ``metrics.json``.
    FileNotFoundError
        When a run directory or the labels are missing.
    """
    ra, rb = Path(run_a), Path(run_b)
    ma, mb = read_metrics(ra), read_metrics(rb)
    la, lb = _run_labels(ra, ma), _run_labels(rb, mb)
    common = [lab for lab in la if lab in lb]
    if labels is not None:
        absent = [lab for lab in labels if lab not in common]
        if absent:
            raise ValueError(f"{ra} and {rb}: label(s) {absent} not scored by both runs")
        common = list(labels)
    if not common:
        raise ValueError(f"{ra} and {rb} have no label in common ({ra}: {la}; {rb}: {lb})")
    fa, fb = _scores_file(ra), _scores_file(rb)
    try:
        names_a, sa = read_predictions(fa, common)
        names_b, sb = read_predictions(fb, common)
    except (KeyError, pd.errors.ParserError) as exc:
        raise ValueError(f"{fa} or {fb}: cannot read the scores ({exc})") from exc
    for f, nm in ((fa, names_a), (fb, names_b)):
        dup = pd.Index(nm).duplicated()
        if dup.any():
            raise ValueError(f"{f}: {int(dup.sum())} duplicated Image Index value(s), e.g. {np.asarray(nm)[dup][:3]}")
    only_a = sorted(set(names_a) - set(names_b))
    only_b = sorted(set(names_b) - set(names_a))
    if only_a or only_b:
        raise ValueError(
            f"{ra} and {rb} were not scored on the same images: {len(only_a)} of {len(names_a)} only "
            f"in {ra.name} (e.g. {only_a[:3]}), {len(only_b)} of {len(names_b)} only in {rb.name} "
            f"(e.g. {only_b[:3]}); a paired comparison needs the same test images"
        )
    order = pd.Index(names_b).get_indexer(names_a)
    sb = sb[order]
    if truth is None:
        found = [r / LABELS_CSV for r in (ra, rb) if (r / LABELS_CSV).exists()]
        if not found:
            raise FileNotFoundError(
                f"{ra} and {rb}: no {LABELS_CSV} in either run directory; give the labels "
                "the evaluation used (the dataset folder)"
            )
        truth = found[0]
    y = read_truth(truth, names_a, common)
    _check_truth_matches(ra, ma, y, common)
    _check_truth_matches(rb, mb, y, common)
    res = compare_scores(
        y,
        sa,
        sb,
        common,
        name_a=str(ma.get("model", ra.name)),
        name_b=str(mb.get("model", rb.name)),
        n_bootstrap=n_bootstrap,
        seed=seed,
    )
    res["run_a"].update(path=str(ra), scores_file=fa.name)
    res["run_b"].update(path=str(rb), scores_file=fb.name)
    return res


def compare_run_dirs(
    run_dirs: Sequence,
    truth=None,
    *,
    pairs: str = "first",
    labels: Sequence[str] | None = None,
    n_bootstrap: int = DEFAULT_N_BOOTSTRAP,
    seed=0,
) -> list[dict]:
    """Paired comparisons of several runs: each against the first (``pairs="first"``) or every pair (``"all"``).

    Parameters
    ----------
    run_dirs : sequence of path
        At least two run directories.
    truth, labels, n_bootstrap, seed
        As for :func:`compare_runs`.
    pairs : {"first", "all"}
        ``"first"``: (run 0, run i) for i >= 1; ``"all"``: (run i, run j) for i < j.

    Returns
    -------
    list of dict
        One :func:`compare_runs` result per pair, B - A with A the earlier run.
    """
    if pairs not in ("first", "all"):
        raise ValueError(f"pairs must be 'first' or 'all', got {pairs!r}")
    dirs = list(run_dirs)
    if len(dirs) < 2:
        raise ValueError(f"a paired comparison needs at least two run directories, got {len(dirs)}")
    todo = [(dirs[0], d) for d in dirs[1:]] if pairs == "first" else list(combinations(dirs, 2))
    if isinstance(truth, (str, Path)):
        truth = _truth_table(truth)  # read once for all pairs
    return [compare_runs(a, b, truth, labels=labels, n_bootstrap=n_bootstrap, seed=seed) for a, b in todo]


# --------------------------------------------------------------------------
# Tables and files
# --------------------------------------------------------------------------

#: Columns of :func:`paired_frame` (and ``paired.csv``).
PAIRED_COLUMNS = [
    "run_a",
    "run_b",
    "label",
    "n_positive",
    "auroc_a",
    "auroc_b",
    "difference",
    "delong_se",
    "delong_ci95_lo",
    "delong_ci95_hi",
    "delong_p",
    "bootstrap_ci95_lo",
    "bootstrap_ci95_hi",
    "bootstrap_p",
    "bootstrap_n_used",
    "note",
]


def paired_frame(results: dict | Sequence[dict]) -> pd.DataFrame:
    """One row per comparison and class, then the mean (label ``"Mean"``), with the columns :data:`PAIRED_COLUMNS`.

    Parameters
    ----------
    results : dict or sequence of dict
        :func:`compare_scores` / :func:`compare_runs` results.

    Returns
    -------
    DataFrame
        AUROCs, differences (B - A), standard errors and interval ends in AUROC units; p-values;
        NaN where undefined, with the reason in ``note``.
    """
    results = [results] if isinstance(results, dict) else list(results)
    rows = []
    for res in results:
        items = [(lab, res["per_class"][lab]) for lab in res["labels"]]
        excl = res["excluded_from_mean"]
        mean_note = f"mean over {len(res['labels_in_mean'])} class(es)" + (
            f"; left out: {', '.join(excl)}" if excl else ""
        )
        items.append(("Mean", dict(res["mean"], n_positive=None, reason=mean_note)))
        for lab, e in items:
            d, b = e["delong"], e.get("bootstrap") or {}
            dci, bci = d["ci95"] or [None, None], b.get("ci95") or [None, None]
            rows.append(
                [
                    res["run_a"]["name"],
                    res["run_b"]["name"],
                    lab,
                    e["n_positive"],
                    e["auroc_a"],
                    e["auroc_b"],
                    d["difference"],
                    d["se"],
                    dci[0],
                    dci[1],
                    d["p_value"],
                    bci[0],
                    bci[1],
                    b.get("p_value"),
                    b.get("n_used"),
                    e["reason"] or "",
                ]
            )
    df = pd.DataFrame(rows, columns=PAIRED_COLUMNS)
    num = [c for c in PAIRED_COLUMNS if c not in ("run_a", "run_b", "label", "note")]
    df[num] = df[num].astype(float)
    return df


def _f(x, fmt="{:.3f}", none="n/a") -> str:
    return none if x is None or (isinstance(x, float) and not math.isfinite(x)) else fmt.format(x)


def _p(x, n_used=None) -> str:
    if x is None or not math.isfinite(x):
        return "n/a"
    if x == 0 and n_used:
        return f"<{1 / n_used:.0e}"
    return f"{x:.2g}" if x >= 0.001 else f"{x:.1e}"


def _ci(ci) -> str:
    return "n/a" if not ci else f"[{ci[0]:+.3f}, {ci[1]:+.3f}]"


def format_paired(result: dict) -> str:
    """Plain-text table of one comparison for stdout: AUROCs, B - A, DeLong and bootstrap intervals and p.

    Parameters
    ----------
    result : dict
        A :func:`compare_scores` / :func:`compare_runs` result.

    Returns
    -------
    str
        A heading naming both runs and the images, one line per class, the mean, and the notes.
    """
    a, b = result["run_a"]["name"], result["run_b"]["name"]
    nb = result["n_bootstrap"]
    lines = [
        f"Paired comparison on the same {result['n_images']} images: B - A, A = {a}, B = {b}",
        f"(DeLong: normal 95% interval; bootstrap: {nb} paired resamples, percentile 95% interval)"
        if nb
        else "(DeLong: normal 95% interval)",
        f"{'label':<20} {'n+':>5} {'AUROC A':>7} {'AUROC B':>7} {'B - A':>7} {'DeLong 95% CI':>18} "
        f"{'p':>7}" + (f" {'bootstrap 95% CI':>18} {'p':>7}" if nb else ""),
    ]
    notes = []
    items = [(lab, result["per_class"][lab]) for lab in result["labels"]] + [("Mean", result["mean"])]
    for lab, e in items:
        d, bs = e["delong"], e.get("bootstrap")
        line = (
            f"{lab:<20} {'' if e.get('n_positive') is None else e['n_positive']:>5} {_f(e['auroc_a']):>7} "
            f"{_f(e['auroc_b']):>7} {_f(d['difference'], '{:+.3f}'):>7} {_ci(d['ci95']):>18} "
            f"{_p(d['p_value']):>7}"
        )
        if nb and bs:
            used = f" ({bs['n_used']}/{nb})" if bs["n_used"] < nb else ""
            line += f" {_ci(bs['ci95']):>18} {_p(bs['p_value'], bs['n_used']):>7}{used}"
        lines.append(line)
        if e.get("reason"):
            notes.append(f"{lab}: {e['reason']}")
    if result["excluded_from_mean"]:
        notes.append(
            f"Mean: over {len(result['labels_in_mean'])} class(es), without {', '.join(result['excluded_from_mean'])}"
        )
    if notes:
        lines += ["", *notes]
    return "\n".join(lines)


def paired_markdown(results: dict | Sequence[dict]) -> str:
    """Markdown tables of one or several comparisons (``paired.md``), one section per pair.

    Parameters
    ----------
    results : dict or sequence of dict
        One or several :func:`compare_scores` / :func:`compare_runs` results.

    Returns
    -------
    str
        Per pair: a heading ``B vs A``, the method in a sentence, and a table of AUROC A, AUROC B,
        B - A with DeLong's 95 % interval and p, and the bootstrap's 95 % interval and p.
    """
    results = [results] if isinstance(results, dict) else list(results)
    out = ["# Paired comparisons (B - A, AUROC units)", ""]
    for res in results:
        a, b, nb = res["run_a"]["name"], res["run_b"]["name"], res["n_bootstrap"]
        where = (
            f" (`{res['run_b']['path']}` vs `{res['run_a']['path']}`)"
            if res["run_a"].get("path") and res["run_b"].get("path")
            else ""
        )
        out += [
            f"## {b} vs {a}{where}",
            "",
            f"{res['n_images']} images scored by both runs. DeLong's test (fast algorithm of Sun & Xu 2014), "
            "normal 95% interval"
            + (
                f"; paired bootstrap, {nb} resamples of the images (the same for both runs), percentile 95% interval."
                if nb
                else "."
            ),
            "",
            "| label | n+ | AUROC A | AUROC B | B - A | DeLong 95% CI | DeLong p |"
            + (" bootstrap 95% CI | bootstrap p |" if nb else ""),
            "|---|---:|---:|---:|---:|---:|---:|" + ("---:|---:|" if nb else ""),
        ]
        items = [(lab, res["per_class"][lab]) for lab in res["labels"]] + [("**Mean**", res["mean"])]
        for lab, e in items:
            d, bs = e["delong"], e.get("bootstrap")
            row = (
                f"| {lab} | {'' if e.get('n_positive') is None else e['n_positive']} | {_f(e['auroc_a'])} | "
                f"{_f(e['auroc_b'])} | {_f(d['difference'], '{:+.3f}')} | {_ci(d['ci95'])} | {_p(d['p_value'])} |"
            )
            if nb and bs:
                row += f" {_ci(bs['ci95'])} | {_p(bs['p_value'], bs['n_used'])} |"
            out.append(row)
        notes = [f"{lab}: {e['reason']}" for lab, e in res["per_class"].items() if e["reason"]]
        if res["excluded_from_mean"]:
            notes.append(
                f"the mean is over {len(res['labels_in_mean'])} class(es), without "
                f"{', '.join(res['excluded_from_mean'])}"
            )
        if notes:
            out += ["", "Notes: " + "; ".join(notes) + "."]
        out.append("")
    return "\n".join(out)


def write_paired(results: dict | Sequence[dict], out_dir) -> tuple[Path, Path]:
    """Write ``paired.csv`` (:func:`paired_frame`, 10 significant digits) and ``paired.md`` into ``out_dir``.

    Parameters
    ----------
    results : dict or sequence of dict
        :func:`compare_runs` results.
    out_dir : path
        Created if needed.

    Returns
    -------
    (Path, Path)
        The CSV and the Markdown file.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    csv = atomic_write_text(out / PAIRED_CSV, paired_frame(results).to_csv(index=False, float_format="%.10g"))
    md = atomic_write_text(out / PAIRED_MD, paired_markdown(results))
    return csv, md


def _forest_name(k: int) -> str:
    return f"forest-{k}.png"


def write_paired_dir(results: dict | Sequence[dict], out_dir, *, pairs: str | None = None) -> dict:
    """A comparison folder: ``paired.csv``, ``paired.md``, one forest plot per pair and ``paired.json``.

    ``paired.json`` is what the report reads: ``{"pairs", "comparisons": [result + {"figure",
    "caption"}]}``, each result as :func:`compare_runs` returns it, ``figure`` the forest plot's file
    name (``forest-1.png``, ``forest-2.png``, ... in the order of ``results``) and ``caption`` its caption
    (:func:`~phow_baseline.evaluation.paired_plots.paired_caption`).

    Parameters
    ----------
    results : dict or sequence of dict
        :func:`compare_runs` / :func:`compare_run_dirs` results.
    out_dir : path
        The folder (created); files of the same names are replaced.
    pairs : {"first", "all"}, optional
        How the pairs were chosen, recorded.

    Returns
    -------
    dict
        The contents of ``paired.json``.
    """
    from .paired_plots import plot_paired_differences

    results = [results] if isinstance(results, dict) else list(results)
    out = Path(out_dir)
    write_paired(results, out)
    comparisons = []
    for k, res in enumerate(results, 1):
        caption = plot_paired_differences(res, out / _forest_name(k))
        comparisons.append({**res, "figure": _forest_name(k), "caption": caption})
    record = {"pairs": pairs, "comparisons": comparisons}
    atomic_write_json(out / PAIRED_JSON, record)
    return record


def read_paired_dir(directory) -> dict:
    """Read a comparison folder written by :func:`write_paired_dir`, checking what the report uses.

    Parameters
    ----------
    directory : str or path-like
        A comparison folder (``compare --out``).

    Returns
    -------
    dict
        ``paired.json``'s contents; each comparison's ``figure`` is confined to ``directory``.

    Raises
    ------
    FileNotFoundError
        No ``paired.json`` (not a comparison folder).
    ValueError
        Malformed contents (the message names the file and the key).
    """
    p = Path(directory) / PAIRED_JSON
    if not p.is_file():
        raise FileNotFoundError(f"{p}: not a comparison folder (no {PAIRED_JSON}; write one with 'compare --out')")
    record = read_json(p, what=PAIRED_JSON)
    comps = record.get("comparisons")
    if not isinstance(comps, list):
        raise ValueError(f"{p}: 'comparisons' must be a list")
    for i, c in enumerate(comps):
        missing = [
            k
            for k in ("run_a", "run_b", "n_images", "labels", "per_class", "mean", "figure", "caption")
            if not isinstance(c, dict) or k not in c
        ]
        if missing:
            raise ValueError(f"{p}: comparison {i} lacks {', '.join(map(repr, missing))}")
        confined(p.parent, str(c["figure"]))
    return record
