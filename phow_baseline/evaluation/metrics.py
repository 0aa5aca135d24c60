"""Per-class ROC curves, AUROC with bootstrap intervals, and the published tables.

One evaluation for both pipelines: the PHOW baseline and the CNN module
both call :func:`write_run_dir`, which writes the run directory read by
``compare`` and ``report`` (``metrics.json``, ``predictions.csv``,
``roc.png``, ``comparison.md`` / ``.csv``; with probabilities also
``scores.csv`` and ``calibration.png``).

Bootstrap intervals resample the test images; a resample that draws no
positive (or no negative) image of a class has no AUROC for that class and
is left out of that class's interval.  The number of resamples actually
used is recorded per class (``n_bootstrap_used``), so a reader sees when an
interval rests on fewer resamples than asked for.

One concept at this length: evaluation (ROC/AUROC with intervals, the
calibration and operating-point tables, the published references, the run
directory they fill).
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from ..classification.calibration import N_BINS, bootstrap_weights, calibration_summary, operating_point_metrics
from ..data.chestxray14 import LABELS
from ..io import atomic_path, atomic_write_json, atomic_write_text

#: Bootstrap resamples for the 95 % intervals (percentile method).
DEFAULT_N_BOOTSTRAP = 1000

#: False-positive rates at which the bootstrap band of each ROC curve is evaluated.
ROC_GRID = np.linspace(0.0, 1.0, 101)

#: Published per-class AUROC, in :data:`LABELS` order, with the split each used.
#: Values as quoted in the papers' tables.
PUBLISHED = {
    "Wang2017_official": {
        "title": "Wang et al. 2017 (ResNet-50), arXiv v5 Table 17",
        "split": "official (train_val 86,524 / test 25,596)",
        "auroc": [.7003, .8100, .7585, .6614, .6933, .6687, .6580, .7993, .7032, .8052, .8330, .7859, .6835, .8717],
        "mean": .745,
    },
    "Wang2017_random": {
        "title": "Wang et al. 2017, as quoted by CheXNet",
        "split": "random patient-wise 70/10/20",
        "auroc": [.716, .807, .784, .609, .706, .671, .633, .806, .708, .835, .815, .769, .708, .767],
        "mean": .738,
    },
    "Yao2017_random": {
        "title": "Yao et al. 2017, as quoted by CheXNet",
        "split": "random patient-wise 70/10/20",
        "auroc": [.772, .904, .859, .695, .792, .717, .713, .841, .788, .882, .829, .767, .765, .914],
        "mean": .803,
    },
    "CheXNet_random": {
        "title": "CheXNet (Rajpurkar et al. 2017, DenseNet-121)",
        "split": "random patient-wise 70/10/20",
        "auroc": [.8094, .9248, .8638, .7345, .8676, .7802, .7680, .8887, .7901, .8878, .9371, .8047, .8062, .9164],
        "mean": .841,
    },
    "Uniandes2019_PHOW": {
        "title": "Gomez, Rueda, Valderrama 2019 (PHOW + 14 SVMs)",
        "split": "10,000 train / 5,000 test images",
        "auroc": None,  # only the mean was published
        "mean": .3137,
    },
}


# --------------------------------------------------------------------------
# AUROC
# --------------------------------------------------------------------------

def _check_inputs(y_true, scores, labels):
    y = np.asarray(y_true)
    s = np.asarray(scores, dtype=np.float64)
    if y.ndim == 1:
        y = y[:, None]
    if s.ndim == 1:
        s = s[:, None]
    if y.shape != s.shape:
        raise ValueError(f"y_true {y.shape} and scores {s.shape} differ in shape")
    if y.shape[1] != len(labels):
        raise ValueError(f"{y.shape[1]} columns but {len(labels)} labels")
    if not np.isfinite(s).all():
        raise ValueError(f"scores contain {int((~np.isfinite(s)).sum())} non-finite value(s)")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("y_true must hold 0/1 values")
    return y.astype(bool), s


def auroc_weighted(y: np.ndarray, s: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """AUROC of one class under one or many weightings of the samples.

    AUROC = P(score of a positive > score of a negative) + P(tie) / 2, the
    Mann-Whitney statistic, computed from one sort: for every group of tied
    scores, positives in the group beat the negatives ranked below it and
    tie with those inside it.

    Parameters
    ----------
    y : (n,) bool
    s : (n,) float
    weights : (B, n) array, optional
        Sample multiplicities (e.g. bootstrap counts); ``None`` is all ones.

    Returns
    -------
    (B,) float array (NaN where a weighting leaves no positive or no negative).
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


def bootstrap_auroc(y_true, scores, n_bootstrap=DEFAULT_N_BOOTSTRAP, seed=0, chunk=100) -> np.ndarray:
    """AUROC of every class on ``n_bootstrap`` resamples of the images.

    Each resample draws n images with replacement (the same draw for every
    class, so class means stay paired).  Returns ``(n_bootstrap, n_classes)``.
    """
    y, s = np.asarray(y_true).astype(bool), np.asarray(scores, float)
    n, k = y.shape
    out = np.empty((n_bootstrap, k))
    lo = 0
    for w in bootstrap_weights(n, n_bootstrap, seed, chunk):
        for j in range(k):
            out[lo:lo + len(w), j] = auroc_weighted(y[:, j], s[:, j], w)
        lo += len(w)
    return out


def bootstrap_roc_band(y_true, scores, grid=ROC_GRID, n_bootstrap=DEFAULT_N_BOOTSTRAP, seed=0, chunk=100,
                       level=95.0):
    """Pointwise bootstrap band of every class's ROC curve.

    For each resample (the draws of :func:`bootstrap_auroc` for the same
    ``seed``) the curve's true-positive rate at each false-positive rate of
    ``grid`` is the highest TPR reached at an FPR no greater than it (the
    curve as a step function); the band is the percentile interval of those
    TPRs over the resamples that define the class (at least one positive and
    one negative).

    Returns
    -------
    lo, hi : (n_classes, len(grid)) arrays (NaN for a class never defined)
    n_used : (n_classes,) int
    """
    y, s = np.asarray(y_true).astype(bool), np.asarray(scores, float)
    n, k = y.shape
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


def evaluate_scores(y_true, scores, labels: Sequence[str] = LABELS, n_bootstrap=DEFAULT_N_BOOTSTRAP,
                    seed=0) -> dict:
    """Per-class ROC curves and AUROC, mean AUROC and bootstrap 95 % intervals.

    A class with no positive (or no negative) image has no AUROC: it is
    reported as ``None`` and left out of the mean, with its count in
    ``undefined``.

    Returns
    -------
    dict with ``labels``, ``auroc`` {label: float or None}, ``auroc_ci95``
    {label: [lo, hi] or None}, ``mean_auroc``, ``mean_auroc_ci95``,
    ``n_positive`` {label: int}, ``roc`` {label: (fpr, tpr, thresholds)},
    ``n_bootstrap_used`` {label: int}: the resamples that define the
    class's AUROC (the others drew no positive or no negative and are not
    in its interval), and ``mean_auroc_n_bootstrap_complete``: the
    resamples that define every class (the mean's interval averages, on the
    others, the classes they define).
    """
    from sklearn.metrics import roc_curve

    y, s = _check_inputs(y_true, scores, labels)
    auc = auroc_weighted_all(y, s)
    defined = np.array([0 < y[:, j].sum() < len(y) for j in range(y.shape[1])])
    roc = {}
    for j, lab in enumerate(labels):
        if defined[j]:
            fpr, tpr, thr = roc_curve(y[:, j], s[:, j])
            roc[lab] = (fpr, tpr, thr)
    ci = {lab: None for lab in labels}
    used = {lab: 0 for lab in labels}
    mean_ci, complete = None, 0
    if n_bootstrap and defined.any():
        boot = bootstrap_auroc(y, s, n_bootstrap=n_bootstrap, seed=seed)
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
    return {
        "labels": list(labels),
        "auroc": aur,
        "auroc_ci95": ci,
        "mean_auroc": float(np.mean(auc[defined])) if defined.any() else None,
        "mean_auroc_ci95": mean_ci,
        "n_positive": {lab: int(y[:, j].sum()) for j, lab in enumerate(labels)},
        "undefined": [lab for j, lab in enumerate(labels) if not defined[j]],
        "roc": roc,
        "n_bootstrap_used": used,
        "mean_auroc_n_bootstrap_complete": complete,
    }


def auroc_weighted_all(y, s) -> np.ndarray:
    return np.array([auroc_weighted(y[:, j], s[:, j])[0] for j in range(y.shape[1])])


# --------------------------------------------------------------------------
# Tables and the run directory
# --------------------------------------------------------------------------

def comparison_table(runs: Sequence[dict], references: Sequence[str] | None = None,
                     labels: Sequence[str] = LABELS) -> pd.DataFrame:
    """Per-class AUROC of several runs side by side with the published columns.

    Parameters
    ----------
    runs : sequence of dict
        ``metrics.json`` contents (need ``model``, ``auroc``, ``mean_auroc``).
    references : sequence of str, optional
        Keys of :data:`PUBLISHED` (default: all).

    Returns
    -------
    DataFrame indexed by label, with a final ``Mean`` row.
    """
    references = list(PUBLISHED) if references is None else list(references)
    cols = {}
    for r in runs:
        name = r.get("model", "run")
        base, k = name, 2
        while name in cols:
            name, k = f"{base} ({k})", k + 1
        vals = [r["auroc"].get(l) for l in labels] + [r.get("mean_auroc")]
        cols[name] = [np.nan if v is None else v for v in vals]
    for key in references:
        ref = PUBLISHED[key]
        vals = list(ref["auroc"]) if ref["auroc"] is not None else [np.nan] * len(LABELS)
        ref_map = dict(zip(LABELS, vals))
        cols[key] = [ref_map.get(l, np.nan) for l in labels] + [ref["mean"]]
    return pd.DataFrame(cols, index=list(labels) + ["Mean"])


def table_markdown(df: pd.DataFrame, runs: Sequence[dict] = (), digits=3) -> str:
    """Markdown text of :func:`comparison_table` with a legend naming each reference's split."""
    head = "| label | " + " | ".join(df.columns) + " |"
    sep = "|---|" + "---:|" * len(df.columns)
    rows = [head, sep]
    for lab, row in df.iterrows():
        cells = ["" if pd.isna(v) else f"{v:.{digits}f}" for v in row]
        rows.append(f"| {lab} | " + " | ".join(cells) + " |")
    legend = [""]
    for r in runs:
        legend.append(f"- {r.get('model')}: this library ({r.get('kind')}), split {r.get('split')}, "
                      f"n_test {r.get('n_test')}")
    for key in df.columns:
        if key in PUBLISHED:
            legend.append(f"- {key}: {PUBLISHED[key]['title']}; split: {PUBLISHED[key]['split']}")
    return "\n".join(rows + legend) + "\n"


#: Published columns marked on each ROC panel: the official-split reference and the best per-class one.
ROC_MARKED = ("Wang2017_official", "CheXNet_random")


def _grid_axes(n_panels, ncols=4, panel=2.55):
    import matplotlib
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    nrows = max(1, math.ceil(n_panels / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * panel, nrows * panel + 0.5), dpi=100,
                             squeeze=False)
    for ax in axes.ravel()[n_panels:]:
        ax.set_visible(False)
    return plt, fig, axes.ravel()


def _label_grid(axes, n_panels: int, xlabel: str, ylabel: str, ncols: int = 4) -> None:
    """Axis labels on the first column and on the last row of a grid of panels."""
    for ax in axes[::ncols]:
        ax.set_ylabel(ylabel, fontsize=7)
    for ax in axes[max(0, n_panels - ncols):n_panels]:
        ax.set_xlabel(xlabel, fontsize=7)


def plot_roc(result: dict, path, title="ROC curves", band: dict | None = None,
             n_bootstrap: int | None = None, marked: Sequence[str] = ROC_MARKED) -> None:
    """ROC curves as small multiples: one panel per class, into a PNG (matplotlib, Agg).

    Each panel shows the class's curve, its pointwise bootstrap 95 % band
    (``band`` = ``{label: (grid, lo, hi, n_used)}`` from
    :func:`bootstrap_roc_band`), the chance diagonal, our AUROC with its
    interval, and the published AUROCs of ``marked`` (keys of
    :data:`PUBLISHED`) as ticks on an AUROC scale along the panel's bottom
    edge. A band resting on fewer resamples than ``n_bootstrap`` says so.
    """
    labels = list(result["labels"])
    plt, fig, axes = _grid_axes(len(labels))
    refs = {k: dict(zip(LABELS, PUBLISHED[k]["auroc"])) for k in marked if PUBLISHED[k]["auroc"]}
    ref_colours = ["#d62728", "#2ca02c", "#9467bd", "#8c564b"]
    for ax, lab in zip(axes, labels):
        ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=0.7)
        a = result["auroc"].get(lab)
        if lab in result["roc"]:
            if band and lab in band:
                g, lo, hi, n_used = band[lab]
                if np.isfinite(lo).all():
                    ax.fill_between(g, lo, hi, step="post", color="#1f77b4", alpha=0.22, lw=0,
                                    label="bootstrap 95 % band")
                if n_bootstrap and n_used < n_bootstrap:
                    ax.text(0.97, 0.30, f"band: {n_used}/{n_bootstrap} resamples", ha="right", fontsize=6.5,
                            color="#a05000", transform=ax.transAxes)
            fpr, tpr = result["roc"][lab][:2]
            ax.plot(fpr, tpr, lw=1.5, color="#1f77b4")
            ci = (result.get("auroc_ci95") or {}).get(lab)
            head = f"{lab}\nAUROC {a:.3f}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "")
        else:
            head = f"{lab}\nno AUROC (n+ = {result.get('n_positive', {}).get(lab, 0)})"
        ax.set_title(head, fontsize=8.5)
        # an AUROC scale 0.5 .. 1 along the bottom: ours (blue) and the published values (ticks)
        y0 = 0.06
        ax.plot([0.45, 0.97], [y0, y0], color="black", lw=0.6, transform=ax.transAxes)
        ax.text(0.43, y0, "AUROC", ha="right", va="center", fontsize=5.5, transform=ax.transAxes)
        for v in (0.5, 0.75, 1.0):
            x = 0.45 + (v - 0.5) / 0.5 * 0.52
            ax.plot([x, x], [y0 - 0.015, y0 + 0.015], color="black", lw=0.6, transform=ax.transAxes)
            ax.text(x, y0 - 0.055, f"{v:g}", ha="center", va="top", fontsize=5.5, transform=ax.transAxes)
        for (key, rmap), col in zip(refs.items(), ref_colours):
            v = rmap.get(lab)
            if v is not None:
                x = 0.45 + (min(max(v, 0.5), 1.0) - 0.5) / 0.5 * 0.52
                ax.plot([x], [y0 + 0.035], marker="v", ms=4.5, color=col, transform=ax.transAxes, ls="none")
        if a is not None:
            x = 0.45 + (min(max(a, 0.5), 1.0) - 0.5) / 0.5 * 0.52
            ax.plot([x], [y0 + 0.035], marker="o", ms=4, color="#1f77b4", transform=ax.transAxes, ls="none")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.tick_params(labelsize=6.5)
    _label_grid(axes, len(labels), "false positive rate", "true positive rate")
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles = [Line2D([], [], color="#1f77b4", lw=1.5, label="this run"),
               Patch(color="#1f77b4", alpha=0.22, label="bootstrap 95 % band"),
               Line2D([], [], marker="o", color="#1f77b4", ls="none", label="AUROC, this run (scale 0.5-1)")]
    handles += [Line2D([], [], marker="v", color=c, ls="none", label=f"published AUROC: {k}")
                for k, c in zip(refs, ref_colours)]
    mean = result.get("mean_auroc")
    fig.suptitle(f"{title}: mean AUROC {mean:.3f}" if mean is not None else title, fontsize=11)
    fig.legend(handles=handles, loc="lower right", fontsize=7.5, frameon=False, ncol=1,
               bbox_to_anchor=(0.98, 0.02))
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def plot_calibration(summary: dict, path, title="Reliability diagrams") -> None:
    """Reliability diagrams as small multiples (one panel per class) into a PNG.

    ``summary`` is :func:`phow_baseline.classification.calibration.calibration_summary`'s
    output: per class, the fraction of positives against the mean predicted
    probability in each equal-width bin (marker area proportional to the
    images in the bin), the diagonal of perfect calibration, and the ECE and
    Brier score in the panel title.
    """
    labels = list(summary["reliability"])
    plt, fig, axes = _grid_axes(len(labels))
    total = None
    for ax, lab in zip(axes, labels):
        rel = summary["reliability"][lab]
        cnt = np.asarray(rel["count"], float)
        total = cnt.sum()
        keep = cnt > 0
        mp = np.array([v for v in rel["mean_predicted"] if v is not None], float)
        ob = np.array([v for v in rel["observed"] if v is not None], float)
        ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=0.7)
        ax.plot(mp, ob, color="#1f77b4", lw=1)
        ax.scatter(mp, ob, s=8 + 120 * cnt[keep] / max(total, 1), color="#1f77b4", zorder=3)
        edges = np.linspace(0, 1, summary["n_bins"] + 1)
        ax.bar(edges[:-1], cnt / max(total, 1) * 0.25, width=1 / summary["n_bins"], align="edge", color="#bbbbbb",
               zorder=0)
        ax.set_title(f"{lab}\nECE {summary['ece'][lab]:.3f}  Brier {summary['brier'][lab]:.3f}", fontsize=8.5)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.tick_params(labelsize=6.5)
    _label_grid(axes, len(labels), "predicted probability", "fraction positive")
    fig.suptitle(f"{title}: {summary['n_bins']} equal-width bins; grey bars: images per bin "
                 f"(height 0.25 = all), mean ECE {summary['mean_ece']:.3f}", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def write_predictions(path, names: Sequence[str], scores, labels: Sequence[str] = LABELS,
                      decisions=None) -> None:
    """The predictions CSV: ``Image Index``, one column per label, then (with
    ``decisions``) one 0/1 column ``<label> decision`` per label.

    Values are written with 10 significant digits, so that probabilities
    close to each other (a class whose calibration slope is small) keep
    their order: the AUROC read back from the file is the AUROC computed.
    """
    scores = np.asarray(scores)
    df = pd.DataFrame(scores, columns=list(labels))
    df.insert(0, "Image Index", list(names))
    if decisions is not None:
        dec = np.asarray(decisions)
        if dec.shape != scores.shape:
            raise ValueError(f"decisions {dec.shape} and scores {scores.shape} differ in shape")
        for j, lab in enumerate(labels):
            df[f"{lab} decision"] = dec[:, j].astype(np.uint8)
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False, float_format="%.10g")


def read_predictions(path, labels: Sequence[str] = LABELS) -> tuple[list[str], np.ndarray]:
    df = pd.read_csv(path)
    missing = [c for c in ["Image Index", *labels] if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}")
    return df["Image Index"].tolist(), df[list(labels)].to_numpy(float)


def write_run_dir(out_dir, *, model_name: str, kind: str, split: str, names: Sequence[str], y_true, scores,
                  labels: Sequence[str] = LABELS, n_bootstrap=DEFAULT_N_BOOTSTRAP, seed=0,
                  extra: dict | None = None, probabilities=None, thresholds=None,
                  operating_rule: str | None = None, n_bins: int = N_BINS) -> dict:
    """Evaluate ``scores`` and write a run directory.

    Files: ``metrics.json`` ({"model", "kind", "split", "n_test", "labels",
    "auroc", "auroc_ci95", "mean_auroc", ...}), ``predictions.csv``,
    ``roc.png``, ``comparison.md`` and ``comparison.csv``.

    With ``probabilities`` (calibrated, same shape as ``scores``):
    ``metrics.json`` gains ``calibration`` (Brier score, ECE over ``n_bins``
    equal-width bins and the reliability data per class, and
    ``auroc_unchanged``: whether the probabilities rank the images exactly
    as the scores do), ``predictions.csv`` holds the probabilities,
    ``scores.csv`` the scores, and ``calibration.png`` the reliability
    diagrams.  With ``thresholds`` (one per class, on the probabilities if
    given, else on the scores; ``operating_rule`` names how they were
    chosen): ``operating_points`` with sensitivity, specificity, PPV and NPV
    at them and their bootstrap intervals (see
    :func:`phow_baseline.classification.calibration.operating_point_metrics`).

    AUROC is always computed from ``scores``; ``n_bootstrap_used`` records
    per class how many of the ``n_bootstrap`` resamples its interval used.

    Returns the ``metrics.json`` contents.
    """
    if kind not in ("phow", "cnn"):
        raise ValueError(f"kind must be 'phow' or 'cnn', got {kind!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    scores = np.asarray(scores, np.float64)
    if len(names) != len(scores):
        raise ValueError(f"{len(names)} names but {len(scores)} score rows")
    res = evaluate_scores(y_true, scores, labels, n_bootstrap=n_bootstrap, seed=seed)
    metrics = {
        "model": model_name, "kind": kind, "split": split, "n_test": int(len(names)),
        "labels": list(labels), "auroc": res["auroc"], "auroc_ci95": res["auroc_ci95"],
        "mean_auroc": res["mean_auroc"], "mean_auroc_ci95": res["mean_auroc_ci95"],
        "n_positive": res["n_positive"], "undefined": res["undefined"], "n_bootstrap": int(n_bootstrap),
        "n_bootstrap_used": res["n_bootstrap_used"],
        "mean_auroc_n_bootstrap_complete": res["mean_auroc_n_bootstrap_complete"],
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    y, s = _check_inputs(y_true, scores, labels)
    prob = None
    if probabilities is not None:
        prob = np.asarray(probabilities, np.float64)
        if prob.shape != s.shape:
            raise ValueError(f"probabilities {prob.shape} and scores {s.shape} differ in shape")
        if not (np.isfinite(prob).all() and (prob >= 0).all() and (prob <= 1).all()):
            raise ValueError("probabilities must be finite and lie in [0, 1]")
        cal = calibration_summary(y, prob, labels, n_bins)
        a_p = auroc_weighted_all(y, prob)
        a_s = auroc_weighted_all(y, s)
        same = (a_p == a_s) | (np.isnan(a_p) & np.isnan(a_s))
        cal["auroc_unchanged"] = bool(same.all())
        if not same.all():
            cal["auroc_of_probabilities"] = {lab: (None if np.isnan(a_p[j]) else float(a_p[j]))
                                             for j, lab in enumerate(labels) if not same[j]}
        metrics["calibration"] = cal
    if thresholds is not None:
        on = prob if prob is not None else s
        ops = operating_point_metrics(y, on, thresholds, labels, n_bootstrap=n_bootstrap, seed=seed)
        metrics["operating_points"] = {"rule": operating_rule or "given thresholds",
                                       "applies_to": "probability" if prob is not None else "score",
                                       "per_class": ops}
    if extra:
        metrics.update(extra)
    if prob is not None:
        write_predictions(out / "predictions.csv", names, prob, labels)
        write_predictions(out / "scores.csv", names, s, labels)
        plot_calibration(metrics["calibration"], out / "calibration.png",
                         title=f"{model_name} ({split}, n={len(names)})")
    else:
        write_predictions(out / "predictions.csv", names, s, labels)
    band = None
    if n_bootstrap and res["roc"]:
        lo, hi, used = bootstrap_roc_band(y, s, ROC_GRID, n_bootstrap, seed)
        band = {lab: (ROC_GRID, lo[j], hi[j], int(used[j])) for j, lab in enumerate(labels)}
    plot_roc(res, out / "roc.png", title=f"{model_name} ({split}, n={len(names)})", band=band,
             n_bootstrap=n_bootstrap)
    df = comparison_table([metrics], labels=labels)
    with atomic_path(out / "comparison.csv") as tmp:
        df.to_csv(tmp, float_format="%.4f")
    atomic_write_text(out / "comparison.md", table_markdown(df, [metrics]))
    atomic_write_json(out / "metrics.json", metrics)
    return metrics


def read_metrics(run_dir) -> dict:
    """Read a run directory's ``metrics.json``, with a clear error if absent or malformed."""
    p = Path(run_dir) / "metrics.json"
    if not p.exists():
        raise FileNotFoundError(f"{p}: not a run directory (no metrics.json)")
    try:
        m = json.loads(p.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{p}: invalid JSON ({exc})") from exc
    for k in ("model", "auroc", "mean_auroc"):
        if k not in m:
            raise ValueError(f"{p}: missing key {k!r}")
    return m


def format_auroc_table(metrics: dict, reference: str = "Wang2017_official") -> str:
    """Plain-text per-class AUROC (with CI) of one run next to one published column.

    A class whose interval used fewer bootstrap resamples than asked for
    shows the number used (e.g. ``861/1000``); with calibration data, the
    Brier score and ECE follow.
    """
    ref = PUBLISHED[reference]
    refmap = dict(zip(LABELS, ref["auroc"])) if ref["auroc"] else {}
    cal = metrics.get("calibration") or {}
    nb, used = metrics.get("n_bootstrap"), metrics.get("n_bootstrap_used") or {}
    lines = [f"{'label':<20} {'AUROC':>7} {'95% CI':>15} {'resamples':>10} {'n+':>6} {reference:>20}"
             + (f" {'Brier':>7} {'ECE':>7}" if cal else "")]
    for lab in metrics["labels"]:
        a = metrics["auroc"].get(lab)
        ci = metrics["auroc_ci95"].get(lab)
        a_s = "   n/a" if a is None else f"{a:7.3f}"
        ci_s = "" if not ci else f"[{ci[0]:.3f}, {ci[1]:.3f}]"
        u = used.get(lab)
        u_s = f"{u}/{nb}" if (nb and u is not None and u < nb and a is not None) else ""
        r = refmap.get(lab)
        line = (f"{lab:<20} {a_s:>7} {ci_s:>15} {u_s:>10} {metrics.get('n_positive', {}).get(lab, ''):>6} "
                f"{'' if r is None else f'{r:.3f}':>20}")
        if cal:
            line += f" {cal['brier'][lab]:7.4f} {cal['ece'][lab]:7.4f}"
        lines.append(line)
    m = metrics["mean_auroc"]
    lines.append(f"{'Mean':<20} {'n/a' if m is None else f'{m:7.3f}':>7} {'':>15} {'':>10} {'':>6} "
                 f"{ref['mean']:>20.3f}" + (f" {cal['mean_brier']:7.4f} {cal['mean_ece']:7.4f}" if cal else ""))
    ops = metrics.get("operating_points")
    if ops:
        lines += ["", f"Operating points ({ops['rule']}, on the {ops['applies_to']}):",
                  f"{'label':<20} {'threshold':>9} {'sens':>6} {'spec':>6} {'PPV':>6} {'NPV':>6}"]
        for lab, e in ops["per_class"].items():
            v = [("  n/a" if e[k] is None else f"{e[k]:6.3f}") for k in ("sensitivity", "specificity", "ppv", "npv")]
            lines.append(f"{lab:<20} {e['threshold']:9.4g} " + " ".join(f"{x:>6}" for x in v))
    return "\n".join(lines)
