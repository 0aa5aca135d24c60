"""Per-class ROC curves, AUROC with bootstrap intervals, and the published tables.

One evaluation for both pipelines: the PHOW baseline and the CNN module
both call :func:`write_run_dir`, which writes the run directory read by
``compare`` and ``report`` (``metrics.json``, ``predictions.csv``,
``roc.png``, ``comparison.md`` / ``.csv``).
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from .data import LABELS

#: Bootstrap resamples for the 95 % intervals (percentile method).
DEFAULT_N_BOOTSTRAP = 1000

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
    rng = np.random.default_rng(seed)
    out = np.empty((n_bootstrap, k))
    for lo in range(0, n_bootstrap, chunk):
        b = min(chunk, n_bootstrap - lo)
        idx = rng.integers(0, n, size=(b, n))
        w = np.bincount((idx + np.arange(b)[:, None] * n).ravel(), minlength=b * n).reshape(b, n)
        for j in range(k):
            out[lo:lo + b, j] = auroc_weighted(y[:, j], s[:, j], w)
    return out


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
    ``n_positive`` {label: int}, ``roc`` {label: (fpr, tpr, thresholds)}.
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
    mean_ci = None
    if n_bootstrap and defined.any():
        boot = bootstrap_auroc(y, s, n_bootstrap=n_bootstrap, seed=seed)
        for j, lab in enumerate(labels):
            if defined[j]:
                col = boot[:, j][np.isfinite(boot[:, j])]
                if len(col):
                    ci[lab] = [float(np.percentile(col, 2.5)), float(np.percentile(col, 97.5))]
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


def plot_roc(result: dict, path, title="ROC curves") -> None:
    """Per-class ROC curves of :func:`evaluate_scores` into a PNG (matplotlib, Agg)."""
    import matplotlib
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 7), dpi=110)
    cmap = plt.get_cmap("tab20")
    for j, lab in enumerate(result["labels"]):
        if lab in result["roc"]:
            fpr, tpr = result["roc"][lab][:2]
            ax.plot(fpr, tpr, lw=1.4, color=cmap(j % 20), label=f"{lab} ({result['auroc'][lab]:.3f})")
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=0.8)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    mean = result["mean_auroc"]
    ax.set_title(f"{title}\nmean AUROC {mean:.3f}" if mean is not None else title)
    ax.legend(loc="lower right", fontsize=7.5)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_predictions(path, names: Sequence[str], scores, labels: Sequence[str] = LABELS) -> None:
    """The predictions CSV: ``Image Index`` then one score column per label."""
    scores = np.asarray(scores)
    df = pd.DataFrame(scores, columns=list(labels))
    df.insert(0, "Image Index", list(names))
    tmp = Path(str(path) + ".tmp")
    df.to_csv(tmp, index=False, float_format="%.6g")
    tmp.replace(path)


def read_predictions(path, labels: Sequence[str] = LABELS) -> tuple[list[str], np.ndarray]:
    df = pd.read_csv(path)
    missing = [c for c in ["Image Index", *labels] if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}")
    return df["Image Index"].tolist(), df[list(labels)].to_numpy(float)


def write_run_dir(out_dir, *, model_name: str, kind: str, split: str, names: Sequence[str], y_true, scores,
                  labels: Sequence[str] = LABELS, n_bootstrap=DEFAULT_N_BOOTSTRAP, seed=0,
                  extra: dict | None = None) -> dict:
    """Evaluate ``scores`` and write a run directory.

    Files: ``metrics.json`` ({"model", "kind", "split", "n_test", "labels",
    "auroc", "auroc_ci95", "mean_auroc", ...}), ``predictions.csv``,
    ``roc.png``, ``comparison.md`` and ``comparison.csv``.

    Returns the ``metrics.json`` contents.
    """
    if kind not in ("phow", "cnn"):
        raise ValueError(f"kind must be 'phow' or 'cnn', got {kind!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if len(names) != len(np.asarray(scores)):
        raise ValueError(f"{len(names)} names but {len(np.asarray(scores))} score rows")
    res = evaluate_scores(y_true, scores, labels, n_bootstrap=n_bootstrap, seed=seed)
    metrics = {
        "model": model_name, "kind": kind, "split": split, "n_test": int(len(names)),
        "labels": list(labels), "auroc": res["auroc"], "auroc_ci95": res["auroc_ci95"],
        "mean_auroc": res["mean_auroc"], "mean_auroc_ci95": res["mean_auroc_ci95"],
        "n_positive": res["n_positive"], "undefined": res["undefined"], "n_bootstrap": int(n_bootstrap),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if extra:
        metrics.update(extra)
    write_predictions(out / "predictions.csv", names, scores, labels)
    plot_roc(res, out / "roc.png", title=f"{model_name} ({split}, n={len(names)})")
    df = comparison_table([metrics], labels=labels)
    df.to_csv(out / "comparison.csv", float_format="%.4f")
    (out / "comparison.md").write_text(table_markdown(df, [metrics]))
    tmp = out / "metrics.json.tmp"
    tmp.write_text(json.dumps(metrics, indent=2))
    tmp.replace(out / "metrics.json")
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
    """Plain-text per-class AUROC (with CI) of one run next to one published column."""
    ref = PUBLISHED[reference]
    refmap = dict(zip(LABELS, ref["auroc"])) if ref["auroc"] else {}
    lines = [f"{'label':<20} {'AUROC':>7} {'95% CI':>15} {'n+':>6} {reference:>20}"]
    for lab in metrics["labels"]:
        a = metrics["auroc"].get(lab)
        ci = metrics["auroc_ci95"].get(lab)
        a_s = "   n/a" if a is None else f"{a:7.3f}"
        ci_s = "" if not ci else f"[{ci[0]:.3f}, {ci[1]:.3f}]"
        r = refmap.get(lab)
        lines.append(f"{lab:<20} {a_s:>7} {ci_s:>15} {metrics.get('n_positive', {}).get(lab, ''):>6} "
                     f"{'' if r is None else f'{r:.3f}':>20}")
    m = metrics["mean_auroc"]
    lines.append(f"{'Mean':<20} {'n/a' if m is None else f'{m:7.3f}':>7} {'':>15} {'':>6} {ref['mean']:>20.3f}")
    return "\n".join(lines)
