"""The run directory: one evaluation written to disk, read back by ``compare`` and ``report``.

One evaluation for both pipelines: the PHOW baseline and the CNN module
both call :func:`write_run_dir`, which writes ``metrics.json``,
``predictions.csv``, ``labels.csv`` (the truth, for ``compare``), ``roc.png``,
``comparison.md`` / ``.csv``, with probabilities ``scores.csv`` and
``calibration.png``, and with subgroup metadata ``subgroups.png``.  The predictions CSV
(:func:`write_predictions`, :func:`read_predictions`) is also what
``predict`` writes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from ..data.chestxray14 import LABELS
from ..io import atomic_path, atomic_write_json, atomic_write_text
from ._validation import check_truth_and_scores
from .bootstrap import DEFAULT_N_BOOTSTRAP
from .calibration_metrics import N_BINS, calibration_summary
from .decision_metrics import operating_point_metrics
from .plots import plot_calibration, plot_roc
from .published import PUBLISHED, comparison_table, table_markdown
from .roc import ROC_GRID, auroc_weighted_all, bootstrap_roc_band, check_mask, evaluate_scores
from .subgroups import plot_subgroup_gaps, subgroup_performance

#: A run directory's file of per-image 0/1 labels (``Image Index`` + one column per label): the truth the
#: run was scored against, so that ``compare`` needs no dataset folder.
LABELS_CSV = "labels.csv"
#: The subgroup figure of a run directory (written when ``metadata`` is given).
SUBGROUPS_PNG = "subgroups.png"


def write_predictions(path, names: Sequence[str], scores, labels: Sequence[str] = LABELS, decisions=None) -> None:
    """Write the predictions CSV: ``Image Index``, one column per label, then (with
    ``decisions``) one 0/1 column ``<label> decision`` per label.

    Values are written with 10 significant digits, so that probabilities
    close to each other (a class whose calibration slope is small) keep
    their order: the AUROC read back from the file is the AUROC computed.

    Parameters
    ----------
    path : str or path-like
        The CSV to write (atomically).
    names : sequence of n str
        ``Image Index`` of each row, in the order of ``scores``.
    scores : (n, n_labels) array-like of float
        Scores or probabilities in [0, 1], one column per label.
    labels : sequence of n_labels str, default LABELS
        The column names (ChestX-ray14's 14 by default).
    decisions : (n, n_labels) array-like of 0/1, optional
        The 0/1 calls at the operating points, written as ``<label> decision``.

    Returns
    -------
    None
        The file is written to ``path``.

    Raises
    ------
    ValueError
        ``decisions`` of a shape other than ``scores``'s.
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


def write_labels(path, names: Sequence[str], y_true, labels: Sequence[str] = LABELS, mask=None) -> None:
    """The labels CSV of a run directory: ``Image Index`` and one 0/1 column per label (blank: not scored).

    Parameters
    ----------
    path : str or path-like
        The CSV to write (atomically).
    names : sequence of n str
        ``Image Index`` of the scored images, in the order of ``y_true``'s rows.
    y_true : (n, K) or (n,) array-like of 0/1
        The truth the run was scored against.
    labels : sequence of K str, default LABELS
        The column names.
    mask : (n, K) bool array, optional
        False where a cell was not scored (an uncertain label): written blank.

    Returns
    -------
    None
        The file is written to ``path``.

    Raises
    ------
    ValueError
        ``y_true`` whose shape does not match the names and labels (the
        message names the file), or a mask of another shape.
    """
    y = np.asarray(y_true)
    y = y[:, None] if y.ndim == 1 else y
    if y.shape != (len(names), len(labels)):
        raise ValueError(f"{path}: y_true {y.shape} does not match {len(names)} names and {len(labels)} labels")
    df = pd.DataFrame(y.astype(np.uint8), columns=list(labels))
    m = check_mask(mask, y.shape)
    if m is not None:
        df = df.astype("Int8").mask(~m)
    df.insert(0, "Image Index", list(names))
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)


def read_predictions(path, labels: Sequence[str] = LABELS) -> tuple[list[str], np.ndarray]:
    """Read a predictions CSV written by :func:`write_predictions`.

    Parameters
    ----------
    path : str or path-like
        The CSV (``Image Index`` and one column per label; other columns are ignored).
    labels : sequence of str, default LABELS
        The label columns to read, in this order.

    Returns
    -------
    names : list of str
        The ``Image Index`` column.
    scores : (n, len(labels)) float64
        The label columns.

    Raises
    ------
    ValueError
        When a column is missing (the message names the file and the columns).
    """
    df = pd.read_csv(path)
    missing = [c for c in ["Image Index", *labels] if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}")
    return df["Image Index"].tolist(), df[list(labels)].to_numpy(float)


def write_run_dir(
    out_dir,
    *,
    model_name: str,
    kind: str,
    split: str,
    names: Sequence[str],
    y_true,
    scores,
    labels: Sequence[str] = LABELS,
    n_bootstrap=DEFAULT_N_BOOTSTRAP,
    seed=0,
    extra: dict | None = None,
    probabilities=None,
    thresholds=None,
    operating_rule: str | None = None,
    n_bins: int = N_BINS,
    metadata=None,
    mask=None,
    calibration_fit: dict | None = None,
) -> dict:
    """Evaluate ``scores`` and write a run directory.

    Files: ``metrics.json`` ({"model", "kind", "split", "n_test", "labels",
    "auroc", "auroc_ci95", "mean_auroc", ...}), ``predictions.csv``,
    ``labels.csv``, ``roc.png``, ``comparison.md`` and ``comparison.csv``.

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
    :func:`~phow_baseline.evaluation.decision_metrics.operating_point_metrics`).

    With ``metadata`` (subgroup columns of the scored images): ``subgroups``
    (AUROC, its gap to all images and the false-negative rate at the
    operating points, by sex, age band, view and first image vs follow-up,
    see :func:`~phow_baseline.evaluation.subgroups.subgroup_performance`,
    plus the figure's ``caption``) and ``subgroups.png``.  Bad metadata gives
    a :class:`~phow_baseline.evaluation.subgroups.SubgroupMetadataWarning`,
    never an error.  ``labels.csv`` always records the truth (0/1 per image
    and label), so that ``compare`` needs no dataset folder.

    AUROC is always computed from ``scores``; ``n_bootstrap_used`` records
    per class how many of the ``n_bootstrap`` resamples its interval used.

    Parameters
    ----------
    out_dir : str or path-like
        The run directory (created).
    model_name, kind, split : str
        What was scored: the model's name, ``"phow"`` or ``"cnn"``, the split's name.
    names : sequence of n str
        ``Image Index`` of the scored images.
    y_true : (n, K) array of 0/1
        The ground truth, one column per label.
    scores : (n, K) float array
        The scores the AUROCs are computed from (SVM decision values or logits).
    labels : sequence of K str, default LABELS
        The label names, in column order.
    n_bootstrap : int, default DEFAULT_N_BOOTSTRAP (1000)
        Resamples of the 95 % intervals and ROC bands (0: none).
    seed : int, default 0
        Seed of the resamples (the same draws for every interval).
    extra : dict, optional
        More keys for ``metrics.json`` (config, training record...).
    probabilities : (n, K) float array in [0, 1], optional
        Calibrated probabilities of the positive class.
    thresholds : (K,) float array, optional
        One decision threshold per class, in the units of ``probabilities``
        if given, else of ``scores``.
    operating_rule : str, optional
        How the thresholds were chosen (stored as ``operating_points.rule``;
        default ``"given thresholds"``).
    n_bins : int, default N_BINS (10)
        Equal-width bins of the calibration error.
    metadata : DataFrame, optional
        Indexed by image name, with the dataset protocol's columns ``sex`` ("M"/"F"), ``age`` (years),
        ``view`` ("PA"/"AP"/...) and ``follow_up`` (0: the patient's first image); the NIH columns
        (``Patient Gender``, ``Patient Age``, ``View Position``, ``Follow-up #``, with ``Image Index``)
        work too.
    mask : (n, K) bool array, optional
        Cells the AUROCs, their intervals and the ROC bands score (False: an uncertain label, left out of
        its class; :func:`~phow_baseline.evaluation.roc.evaluate_scores`); ``metrics.json`` then gains
        ``n_scored`` per class.  The other figures read such a cell's ``y_true`` (0).
    calibration_fit : dict, optional
        How the calibration and the thresholds were fitted (the model's ``calibrated_on`` record:
        ``method``, ``folds``, ``n_images``, ``n_positive``, and ``fallback``: label -> why its fit or
        threshold is a fallback); stored as ``calibration.fitted_on`` and ``calibration.fallback`` (and
        ``operating_points.fallback``: label -> the threshold's rule).

    Returns
    -------
    metrics : dict
        The ``metrics.json`` contents.

    Raises
    ------
    ValueError
        A ``kind`` other than ``"phow"``/``"cnn"``, a number of names other
        than the score rows, probabilities of another shape or outside
        [0, 1], or invalid truth, scores, thresholds or mask.
    """
    if kind not in ("phow", "cnn"):
        raise ValueError(f"kind must be 'phow' or 'cnn', got {kind!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    scores = np.asarray(scores, np.float64)
    if len(names) != len(scores):
        raise ValueError(f"{len(names)} names but {len(scores)} score rows")
    res = evaluate_scores(y_true, scores, labels, n_bootstrap=n_bootstrap, seed=seed, mask=mask)
    metrics = {
        "model": model_name,
        "kind": kind,
        "split": split,
        "n_test": int(len(names)),
        "labels": list(labels),
        "auroc": res["auroc"],
        "auroc_ci95": res["auroc_ci95"],
        "mean_auroc": res["mean_auroc"],
        "mean_auroc_ci95": res["mean_auroc_ci95"],
        "n_positive": res["n_positive"],
        "undefined": res["undefined"],
        "n_bootstrap": int(n_bootstrap),
        "n_bootstrap_used": res["n_bootstrap_used"],
        "mean_auroc_n_bootstrap_complete": res["mean_auroc_n_bootstrap_complete"],
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if "n_scored" in res:
        metrics["n_scored"] = res["n_scored"]
    y, s = check_truth_and_scores(y_true, scores, labels)
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
            cal["auroc_of_probabilities"] = {
                lab: (None if np.isnan(a_p[j]) else float(a_p[j])) for j, lab in enumerate(labels) if not same[j]
            }
        metrics["calibration"] = cal
    if calibration_fit is not None and "calibration" in metrics:
        fit = dict(calibration_fit)
        metrics["calibration"]["fallback"] = fit.pop("fallback", None) or {}
        metrics["calibration"]["fitted_on"] = fit
    if thresholds is not None:
        on = prob if prob is not None else s
        ops = operating_point_metrics(y, on, thresholds, labels, n_bootstrap=n_bootstrap, seed=seed)
        metrics["operating_points"] = {
            "rule": operating_rule or "given thresholds",
            "applies_to": "probability" if prob is not None else "score",
            "per_class": ops,
        }
        fallback = (metrics.get("calibration") or {}).get("fallback") or {}
        if fallback:
            metrics["operating_points"]["fallback"] = {
                lab: e.get("threshold", "") if isinstance(e, dict) else str(e) for lab, e in fallback.items()
            }
    if metadata is not None:
        sub = subgroup_performance(
            names,
            y,
            s,
            metadata,
            labels,
            probabilities=prob,
            thresholds=thresholds,
            n_bootstrap=n_bootstrap,
            seed=seed,
            mask=mask,
        )
        sub["caption"] = plot_subgroup_gaps(
            sub, out / SUBGROUPS_PNG, title=f"{model_name} ({split}, n={len(names)}): AUROC gap by subgroup"
        )
        metrics["subgroups"] = sub
    if extra:
        metrics.update(extra)
    write_labels(out / LABELS_CSV, names, y, labels, mask=mask)
    if prob is not None:
        write_predictions(out / "predictions.csv", names, prob, labels)
        write_predictions(out / "scores.csv", names, s, labels)
        plot_calibration(
            metrics["calibration"], out / "calibration.png", title=f"{model_name} ({split}, n={len(names)})"
        )
    else:
        write_predictions(out / "predictions.csv", names, s, labels)
    band = None
    if n_bootstrap and res["roc"]:
        lo, hi, used = bootstrap_roc_band(y, s, ROC_GRID, n_bootstrap, seed, mask=mask)
        band = {lab: (ROC_GRID, lo[j], hi[j], int(used[j])) for j, lab in enumerate(labels)}
    plot_roc(res, out / "roc.png", title=f"{model_name} ({split}, n={len(names)})", band=band, n_bootstrap=n_bootstrap)
    df = comparison_table([metrics], labels=labels)
    with atomic_path(out / "comparison.csv") as tmp:
        df.to_csv(tmp, float_format="%.4f")
    atomic_write_text(out / "comparison.md", table_markdown(df, [metrics]))
    atomic_write_json(out / "metrics.json", metrics)
    return metrics


def read_metrics(run_dir) -> dict:
    """Read a run directory's ``metrics.json``, with a clear error if absent or malformed.

    Parameters
    ----------
    run_dir : str or path-like
        A run directory (:func:`write_run_dir`).

    Returns
    -------
    metrics : dict
        The ``metrics.json`` contents (at least ``model``, ``auroc`` and
        ``mean_auroc``).

    Raises
    ------
    FileNotFoundError
        No ``metrics.json`` in ``run_dir``.
    ValueError
        Invalid JSON or a missing key (the message names the file).
    """
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

    Parameters
    ----------
    metrics : dict
        A run's ``metrics.json`` contents (:func:`write_run_dir`).
    reference : str, default "Wang2017_official"
        Key of :data:`~phow_baseline.evaluation.published.PUBLISHED` shown
        beside the run (its ChestX-ray14 per-class AUROC and mean).

    Returns
    -------
    table : str
        Fixed-width lines (no final newline): per label the AUROC, its 95 %
        interval, the resamples used when fewer than asked, the positives,
        the reference's AUROC (and Brier score, ECE); a ``Mean`` line; then,
        when the run has them, the operating points (threshold, sensitivity,
        specificity, PPV, NPV; a class whose threshold is a fallback says its rule).
    """
    ref = PUBLISHED[reference]
    refmap = dict(zip(LABELS, ref["auroc"])) if ref["auroc"] else {}
    cal = metrics.get("calibration") or {}
    nb, used = metrics.get("n_bootstrap"), metrics.get("n_bootstrap_used") or {}
    lines = [
        f"{'label':<20} {'AUROC':>7} {'95% CI':>15} {'resamples':>10} {'n+':>6} {reference:>20}"
        + (f" {'Brier':>7} {'ECE':>7}" if cal else "")
    ]
    for lab in metrics["labels"]:
        a = metrics["auroc"].get(lab)
        ci = metrics["auroc_ci95"].get(lab)
        a_s = "   n/a" if a is None else f"{a:7.3f}"
        ci_s = "" if not ci else f"[{ci[0]:.3f}, {ci[1]:.3f}]"
        u = used.get(lab)
        u_s = f"{u}/{nb}" if (nb and u is not None and u < nb and a is not None) else ""
        r = refmap.get(lab)
        line = (
            f"{lab:<20} {a_s:>7} {ci_s:>15} {u_s:>10} {metrics.get('n_positive', {}).get(lab, ''):>6} "
            f"{'' if r is None else f'{r:.3f}':>20}"
        )
        if cal:
            line += f" {cal['brier'][lab]:7.4f} {cal['ece'][lab]:7.4f}"
        lines.append(line)
    m = metrics["mean_auroc"]
    lines.append(
        f"{'Mean':<20} {'n/a' if m is None else f'{m:7.3f}':>7} {'':>15} {'':>10} {'':>6} "
        f"{ref['mean']:>20.3f}" + (f" {cal['mean_brier']:7.4f} {cal['mean_ece']:7.4f}" if cal else "")
    )
    ops = metrics.get("operating_points")
    if ops:
        lines += [
            "",
            f"Operating points ({ops['rule']}, on the {ops['applies_to']}):",
            f"{'label':<20} {'threshold':>9} {'sens':>6} {'spec':>6} {'PPV':>6} {'NPV':>6}",
        ]
        fallback = ops.get("fallback") or {}
        for lab, e in ops["per_class"].items():
            v = [("  n/a" if e[k] is None else f"{e[k]:6.3f}") for k in ("sensitivity", "specificity", "ppv", "npv")]
            note = f"  fallback: {fallback[lab]}" if lab in fallback else ""
            lines.append(f"{lab:<20} {e['threshold']:9.4g} " + " ".join(f"{x:>6}" for x in v) + note)
    return "\n".join(lines)
