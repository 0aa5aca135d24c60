"""Performance by subgroup: sex, age band, view position and first image vs follow-up.

The NIH metadata gives every image its patient's sex (``Patient Gender``), age (``Patient Age``),
the view (``View Position``: PA or AP) and the follow-up number (``Follow-up #``); the dataset
protocol (:mod:`phow_baseline.data.protocol`) normalises them, for every dataset, into the columns
``sex``, ``age``, ``view`` and ``follow_up``.  Either spelling is read (the normalised one first).  Zech et al.
(2018) and Seyyed-Kalantari et al. (2021, "Underdiagnosis bias of artificial intelligence algorithms
applied to chest radiographs in under-served patient populations", Nature Medicine 27:2176-2182)
showed that chest X-ray classifiers perform unevenly across such groups; a baseline should say how
unevenly.  :func:`subgroup_performance` gives, for every subgroup and for all images:

* per-class AUROC and the mean AUROC over the classes the subgroup defines, with bootstrap 95 %
  intervals, and their **gap** to all images (subgroup minus all, with its own interval: both are
  computed on the same resamples);
* with thresholds (the model's operating points), the **false-negative rate** per class and
  averaged: the share of a class's positive images called negative (score below the threshold), the
  underdiagnosis measure of Seyyed-Kalantari et al.

Bootstrap resamples draw all test images with replacement (the draws of
:func:`phow_baseline.evaluation.roc.bootstrap_auroc` for the same seed, so the "all images"
intervals equal those of ``metrics.json``); a subgroup's figure on a resample uses the subgroup's
images drawn in it.  A resample that draws no positive (or no negative) image of a class in a
subgroup does not define that class's AUROC there and is left out (counts in ``n_bootstrap_used``).

Bad metadata never stops an evaluation: a missing column skips that dimension, an implausible or
missing value (an age of 414, a view "LL", a NaN) leaves the image out of that dimension, each with a
:class:`SubgroupMetadataWarning` giving the counts, recorded in the result too.

Note: the v2020 ``Follow-up #`` disagrees with the file name's suffix for 24,106 of 112,120 images
(see :meth:`phow_baseline.data.chestxray14.ChestXray14.followup_series`); the first-image split
here uses the column, as NIH defines it.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..data.chestxray14 import LABELS
from ..io import atomic_path
from .bootstrap import DEFAULT_N_BOOTSTRAP, bootstrap_weights
from .roc import auroc_weighted, check_mask

#: Oldest plausible age in years; the 2017 NIH metadata had ages up to 414 (fixed in v2020).
MAX_AGE = 120
#: Age bands in years: (name, lowest age, first age of the next band).
AGE_BANDS = (("0-19", 0, 20), ("20-39", 20, 40), ("40-59", 40, 60), ("60-79", 60, 80), ("80+", 80, MAX_AGE + 1))
#: Subgroup dimensions: key -> (the dataset protocol's normalised column, what it is, the groups in order).
DIMENSIONS = {
    "sex": ("sex", "sex", ("M", "F")),
    "age": ("age", "age band (years)", tuple(b[0] for b in AGE_BANDS)),
    "view": ("view", "view position", ("PA", "AP")),
    "followup": ("follow_up", "first image vs follow-up", ("first", "follow-up")),
}
#: The NIH metadata's column of each dimension (``Data_Entry_2017*.csv``), read when the normalised one is absent.
NIH_COLUMNS = {"sex": "Patient Gender", "age": "Patient Age", "view": "View Position", "followup": "Follow-up #"}
#: The group of all images, against which the gaps are measured.
ALL = "all"


class SubgroupMetadataWarning(UserWarning):
    """Metadata unusable for a subgroup (missing column or values); the message gives the counts."""


# --------------------------------------------------------------------------
# Metadata -> subgroup membership
# --------------------------------------------------------------------------


def _examples(values, k=3) -> str:
    uniq = list(dict.fromkeys(repr(v) if isinstance(v, str) else str(v) for v in values))
    return ", ".join(uniq[:k])


def _groups_of(dim: str, col: pd.Series) -> tuple[dict[str, np.ndarray], np.ndarray, str]:
    """Membership masks of one dimension's groups, the mask of unusable rows and what makes them so."""
    if dim in ("sex", "view"):
        v = col.astype("string").str.strip().str.upper()
        masks = {g: (v == g).fillna(False).to_numpy(bool) for g in DIMENSIONS[dim][2]}
        why = f"not one of {'/'.join(DIMENSIONS[dim][2])}"
    else:
        x = pd.to_numeric(col, errors="coerce").to_numpy(np.float64)
        if dim == "age":
            ok = np.isfinite(x) & (x >= 0) & (x <= MAX_AGE)
            masks = {name: ok & (x >= lo) & (x < hi) for name, lo, hi in AGE_BANDS}
            why = f"not an age in 0-{MAX_AGE} years"
        else:
            ok = np.isfinite(x) & (x >= 0) & (x == np.floor(np.where(np.isfinite(x), x, 0)))
            masks = {"first": ok & (x == 0), "follow-up": ok & (x > 0)}
            why = "not a whole number >= 0"
    bad = ~np.logical_or.reduce(list(masks.values()))
    return masks, bad, why


def subgroup_masks(names: Sequence[str], metadata) -> tuple[dict, dict]:
    """Which scored images fall in which subgroup, from the NIH metadata; warns about bad metadata.

    Parameters
    ----------
    names : sequence of str
        The scored images (``Image Index``), n of them.
    metadata : DataFrame or dataset
        Indexed by image name (or with an ``Image Index`` column), with the dataset protocol's
        normalised columns of :data:`DIMENSIONS` (``sex`` "M"/"F", ``age`` in years, ``view``
        "PA"/"AP"/..., ``follow_up``: 0 for a patient's first image) or the NIH columns of
        :data:`NIH_COLUMNS`; or a dataset of the protocol (its ``subgroups(names)`` is read), or an
        object with a ``metadata`` DataFrame (a :class:`~phow_baseline.data.chestxray14.ChestXray14`).

    Returns
    -------
    masks : dict
        {dimension: {group: (n,) bool array}} for the dimensions that could be formed.
    problems : dict
        {dimension or "metadata": str}: why a dimension was skipped or which images were left out
        (each also issued as a :class:`SubgroupMetadataWarning`).
    """
    masks, _, problems = _masks_and_columns(names, metadata)
    return masks, problems


def _masks_and_columns(names: Sequence[str], metadata) -> tuple[dict, dict, dict]:
    """:func:`subgroup_masks`, plus {dimension: the metadata column read}."""
    names = list(names)
    n = len(names)
    problems: dict[str, str] = {}

    def warn(key, msg):
        problems[key] = msg
        warnings.warn(f"subgroups: {msg}", SubgroupMetadataWarning, stacklevel=4)

    if callable(getattr(metadata, "subgroups", None)):  # a dataset of the protocol: its normalised columns
        frame = metadata.subgroups(names)
    else:
        frame = getattr(metadata, "metadata", metadata)
    if not isinstance(frame, pd.DataFrame):
        warn("metadata", f"no metadata table (got {type(metadata).__name__}); every subgroup dimension is skipped")
        return {}, {}, problems
    if "Image Index" not in frame.columns:
        if isinstance(frame.index, pd.RangeIndex):
            warn(
                "metadata",
                "the metadata has no 'Image Index' column and is not indexed by image name; every subgroup "
                "dimension is skipped",
            )
            return {}, {}, problems
        frame = frame.rename_axis("Image Index").reset_index()
    dup = frame["Image Index"].duplicated()
    if dup.any():
        warn(
            "duplicates",
            f"{int(dup.sum())} duplicated Image Index value(s) in the metadata, e.g. "
            f"{_examples(frame['Image Index'][dup])}; the first row of each is used",
        )
        frame = frame[~dup.to_numpy()]
    pos = pd.Index(frame["Image Index"]).get_indexer(names)
    unknown = pos < 0
    if unknown.any():
        warn(
            "unknown_images",
            f"{int(unknown.sum())} of {n} scored image(s) are not in the metadata, e.g. "
            f"{_examples(np.asarray(names, dtype=object)[unknown])}; they are left out of "
            "every subgroup",
        )
    masks, columns = {}, {}
    for dim, (normalised, what, _) in DIMENSIONS.items():
        column = next((c for c in (normalised, NIH_COLUMNS[dim]) if c in frame.columns), None)
        if column is None:
            warn(
                dim,
                f"the metadata has no {normalised!r} (or {NIH_COLUMNS[dim]!r}) column; the {what} subgroups are "
                "skipped",
            )
            continue
        col = frame[column].reset_index(drop=True).reindex(np.where(unknown, -1, pos))
        col.index = range(n)
        groups, bad, why = _groups_of(dim, col)
        bad &= ~unknown
        if bad.all() and n:
            warn(
                dim,
                f"{column!r} is {why} for all {n} scored image(s) (e.g. {_examples(col[bad])}); the "
                f"{what} subgroups are skipped",
            )
            continue
        if bad.any():
            warn(
                dim,
                f"{column!r} is {why} for {int(bad.sum())} of {n} scored image(s) (e.g. "
                f"{_examples(col[bad])}); they are left out of the {what} subgroups",
            )
        masks[dim] = groups
        columns[dim] = column
    return masks, columns, problems


# --------------------------------------------------------------------------
# Performance per subgroup
# --------------------------------------------------------------------------


def _num(x):
    x = float(x)
    return x if math.isfinite(x) else None


def _ci(col) -> list | None:
    col = col[np.isfinite(col)]
    return [float(np.percentile(col, 2.5)), float(np.percentile(col, 97.5))] if len(col) else None


def _nanmean_rows(a: np.ndarray) -> np.ndarray:
    """Row means over the finite entries (NaN where a row has none), without a warning."""
    ok = np.isfinite(a)
    cnt = ok.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(cnt > 0, np.where(ok, a, 0.0).sum(1) / np.maximum(cnt, 1), np.nan)


def _check(names, y_true, scores, probabilities, thresholds, labels):
    y = np.asarray(y_true)
    s = np.asarray(scores, np.float64)
    y, s = (x[:, None] if x.ndim == 1 else x for x in (y, s))
    if y.shape != s.shape or y.shape[1] != len(labels) or len(names) != len(y):
        raise ValueError(f"{len(names)} names, y_true {y.shape}, scores {s.shape} and {len(labels)} labels disagree")
    if not np.isfinite(s).all():
        raise ValueError(f"scores contain {int((~np.isfinite(s)).sum())} non-finite value(s)")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("y_true must hold 0/1 values")
    on = None
    if thresholds is not None:
        on = s if probabilities is None else np.asarray(probabilities, np.float64).reshape(s.shape)
        thresholds = np.asarray(thresholds, np.float64).ravel()
        if thresholds.shape != (len(labels),):
            raise ValueError(f"{len(thresholds)} thresholds for {len(labels)} labels")
    return y.astype(bool), s, on, thresholds


def subgroup_performance(
    names: Sequence[str],
    y_true,
    scores,
    metadata,
    labels: Sequence[str] = LABELS,
    *,
    probabilities=None,
    thresholds=None,
    n_bootstrap: int = DEFAULT_N_BOOTSTRAP,
    seed=0,
    mask=None,
) -> dict:
    """AUROC (per class, mean) and false-negative rate at the operating point, by subgroup, with 95 % intervals.

    For a group ``g`` and class ``j``: ``AUROC_gj`` is the Mann-Whitney AUROC over the group's images;
    the gap is ``AUROC_gj - AUROC_allj``; ``FNR_gj`` is the share of the group's positive images of
    class ``j`` whose value (the probability if given, else the score) is below the class's threshold
    (the decision is ``value >= threshold``, as for the operating points); the mean AUROC, mean gap and
    mean FNR average the classes the group defines (a positive and a negative image; for the FNR a
    positive).  Intervals are bootstrap percentiles (see the module docstring).

    Parameters
    ----------
    names : sequence of str
        ``Image Index`` of the n scored images.
    y_true : (n, K) array of 0/1
        Ground truth, one column per class.
    scores : (n, K) float array
        The scores the AUROCs are computed from.
    metadata : DataFrame or dataset
        The subgroup columns (see :func:`subgroup_masks`); bad or missing values give warnings, not errors.
    labels : sequence of K str, default LABELS
        Class names, in column order.
    probabilities : (n, K) float array, optional
        Calibrated probabilities, on which ``thresholds`` apply when given.
    thresholds : (K,) float array, optional
        Operating points; without them there is no false-negative rate.
    n_bootstrap : int, default DEFAULT_N_BOOTSTRAP (1000)
        Resamples for the intervals (0: none).
    seed : int, default 0
        Seed of the resamples (the draws of the AUROC intervals for the same seed).
    mask : (n, K) bool array, optional
        False where a cell is not scored (an uncertain label): that image is left out of that class's
        AUROC, false-negative rate and counts, in every group (as in
        :func:`~phow_baseline.evaluation.roc.evaluate_scores`).

    Returns
    -------
    dict (JSON-ready, for ``metrics.json`` under ``"subgroups"``)
        ``labels``, ``n_images``, ``n_bootstrap``, ``seed``, ``threshold_on`` ("probability", "score" or
        None), ``all`` (the group of all images), ``dimensions`` {dimension: {"column", "what",
        "n_excluded", "groups": {group: entry}}}, ``problems`` {key: message}.  An entry has
        ``n_images``, ``n_positive`` {label: int}, ``auroc``, ``auroc_ci95``, ``auroc_gap``,
        ``auroc_gap_ci95``, ``fnr``, ``fnr_ci95`` ({label: value or None}), ``mean_auroc``,
        ``mean_auroc_ci95``, ``mean_auroc_gap``, ``mean_auroc_gap_ci95``, ``mean_fnr``,
        ``mean_fnr_ci95``, ``n_bootstrap_used`` {label: int}.  AUROCs and gaps in AUROC units, FNRs as
        fractions (0 to 1).
    """
    labels = list(labels)
    y, s, on, thr = _check(names, y_true, scores, probabilities, thresholds, labels)
    n, K = y.shape
    scored = check_mask(mask, y.shape)

    def cells(m, j):  # the images of group m that class j scores
        return m if scored is None else m & scored[:, j]

    scored = np.ones((n, K), bool) if scored is None else scored
    masks, columns, problems = _masks_and_columns(names, metadata)
    groups = [(None, ALL, np.ones(n, bool))] + [(d, g, m) for d, gs in masks.items() for g, m in gs.items()]
    miss = (on < thr) & y & scored if thr is not None else None
    pos = y & scored
    B = int(n_bootstrap or 0)
    boot_auc = [np.full((B, K), np.nan) for _ in groups]
    boot_fnr = [np.full((B, K), np.nan) for _ in groups]
    lo = 0
    for w in bootstrap_weights(n, B, seed) if B else ():
        for gi, (_, _, m) in enumerate(groups):
            wm = w[:, m]
            for j in range(K):
                mj = cells(m, j)
                yj = y[mj, j]
                if yj.any() and not yj.all():
                    boot_auc[gi][lo : lo + len(w), j] = auroc_weighted(yj, s[mj, j], w[:, mj])
            if miss is not None:
                npos = wm @ pos[m].astype(np.float64)
                with np.errstate(invalid="ignore", divide="ignore"):
                    boot_fnr[gi][lo : lo + len(w)] = np.where(
                        npos > 0, (wm @ miss[m].astype(np.float64)) / np.maximum(npos, 1), np.nan
                    )
        lo += len(w)

    point_auc, point_fnr = [], []
    for _, _, m in groups:
        a = np.full(K, np.nan)
        for j in range(K):
            mj = cells(m, j)
            yj = y[mj, j]
            if yj.any() and not yj.all():
                a[j] = auroc_weighted(yj, s[mj, j])[0]
        point_auc.append(a)
        f = np.full(K, np.nan)
        if miss is not None:
            npos = pos[m].sum(0)
            f = np.where(npos > 0, miss[m].sum(0) / np.maximum(npos, 1), np.nan)
        point_fnr.append(f)

    def entry(gi):
        m = groups[gi][2]
        a, f = point_auc[gi], point_fnr[gi]
        gap = a - point_auc[0]
        ba, bf = boot_auc[gi], boot_fnr[gi]
        bgap = ba - boot_auc[0]
        da, df = np.isfinite(a), np.isfinite(f)
        e = {"n_images": int(m.sum()), "n_positive": {lab: int(pos[m, j].sum()) for j, lab in enumerate(labels)}}
        for key, point, bt in (("auroc", a, ba), ("auroc_gap", gap, bgap), ("fnr", f, bf)):
            e[key] = {lab: _num(point[j]) for j, lab in enumerate(labels)}
            e[f"{key}_ci95"] = {
                lab: (_ci(bt[:, j]) if B and math.isfinite(point[j]) else None) for j, lab in enumerate(labels)
            }
        for key, point, bt, d in (
            ("mean_auroc", a, ba, da),
            ("mean_auroc_gap", gap, bgap, da),
            ("mean_fnr", f, bf, df),
        ):
            e[key] = _num(point[d].mean()) if d.any() else None
            e[f"{key}_ci95"] = _ci(_nanmean_rows(bt[:, d])) if (B and d.any()) else None
        e["n_bootstrap_used"] = {lab: int(np.isfinite(ba[:, j]).sum()) for j, lab in enumerate(labels)}
        return e

    dims = {}
    gi = 1
    for d, gs in masks.items():
        column, what = columns[d], DIMENSIONS[d][1]
        covered = np.logical_or.reduce(list(gs.values()))
        entries = {}
        for g in gs:
            entries[g] = entry(gi)
            gi += 1
        dims[d] = {"column": column, "what": what, "n_excluded": int(n - covered.sum()), "groups": entries}
    return {
        "labels": labels,
        "n_images": int(n),
        "n_bootstrap": B,
        "seed": seed,
        "threshold_on": None if thr is None else ("probability" if probabilities is not None else "score"),
        "all": entry(0),
        "dimensions": dims,
        "problems": problems,
    }


# --------------------------------------------------------------------------
# Tables and figure
# --------------------------------------------------------------------------


def _f(x, fmt="{:.3f}") -> str:
    return "n/a" if x is None else fmt.format(x)


def _fci(ci, fmt="{:.2f}") -> str:
    return "" if not ci else f"[{fmt.format(ci[0])}, {fmt.format(ci[1])}]"


def format_subgroups(result: dict) -> str:
    """Compact text table for a summary: per subgroup, images, mean AUROC, its gap to all images, mean FNR.

    Parameters
    ----------
    result : dict
        :func:`subgroup_performance`'s result.

    Returns
    -------
    str
        One line per group (all images first) with the 95 % intervals; then the metadata problems.
    """
    has_fnr = result["threshold_on"] is not None
    head = f"{'subgroup':<24} {'n':>6} {'mean AUROC':>10} {'95% CI':>14} {'gap':>7} {'95% CI':>16}" + (
        f" {'mean FNR':>8} {'95% CI':>14}" if has_fnr else ""
    )
    lines = [
        "Subgroups (gap: subgroup - all images, AUROC units"
        + (
            f"; FNR: share of positives below the operating point, on the {result['threshold_on']})" if has_fnr else ")"
        ),
        head,
    ]

    def row(name, e, gap=True):
        g = (
            f"{_f(e['mean_auroc_gap'], '{:+.3f}'):>7} {_fci(e['mean_auroc_gap_ci95'], '{:+.2f}'):>16}"
            if gap
            else f"{'':>7} {'':>16}"
        )
        line = f"{name:<24} {e['n_images']:>6} {_f(e['mean_auroc']):>10} {_fci(e['mean_auroc_ci95']):>14} {g}"
        if has_fnr:
            line += f" {_f(e['mean_fnr']):>8} {_fci(e['mean_fnr_ci95']):>14}"
        return line

    lines.append(row("all images", result["all"], gap=False))
    for d, info in result["dimensions"].items():
        for g, e in info["groups"].items():
            lines.append(row(f"{d}: {g}", e))
    if result["problems"]:
        lines += ["", *[f"metadata: {msg}" for msg in result["problems"].values()]]
    return "\n".join(lines)


def subgroup_frame(result: dict) -> pd.DataFrame:
    """The subgroup results as a long table: one row per (dimension, group, class or "Mean").

    Parameters
    ----------
    result : dict
        :func:`subgroup_performance`'s result.

    Returns
    -------
    DataFrame
        Columns ``dimension, group, label, n_images, n_positive, auroc, auroc_lo, auroc_hi, gap, gap_lo,
        gap_hi, fnr, fnr_lo, fnr_hi`` (AUROC units; FNR a fraction; NaN where undefined).
    """
    rows = []
    nan2 = [np.nan, np.nan]
    items = [("all", ALL, result["all"])] + [
        (d, g, e) for d, info in result["dimensions"].items() for g, e in info["groups"].items()
    ]
    for d, g, e in items:
        for lab in [*result["labels"], "Mean"]:
            if lab == "Mean":
                vals = [
                    e["mean_auroc"],
                    e["mean_auroc_ci95"],
                    e["mean_auroc_gap"],
                    e["mean_auroc_gap_ci95"],
                    e["mean_fnr"],
                    e["mean_fnr_ci95"],
                ]
                npos = np.nan
            else:
                vals = [
                    e["auroc"][lab],
                    e["auroc_ci95"][lab],
                    e["auroc_gap"][lab],
                    e["auroc_gap_ci95"][lab],
                    e["fnr"][lab],
                    e["fnr_ci95"][lab],
                ]
                npos = e["n_positive"][lab]
            row = [d, g, lab, e["n_images"], npos]
            for k in range(0, 6, 2):
                row += [np.nan if vals[k] is None else vals[k], *(vals[k + 1] or nan2)]
            rows.append(row)
    return pd.DataFrame(
        rows,
        columns=[
            "dimension",
            "group",
            "label",
            "n_images",
            "n_positive",
            "auroc",
            "auroc_lo",
            "auroc_hi",
            "gap",
            "gap_lo",
            "gap_hi",
            "fnr",
            "fnr_lo",
            "fnr_hi",
        ],
    )


def subgroup_caption(result: dict) -> str:
    """The caption of :func:`plot_subgroup_gaps` for ``result``.

    Parameters
    ----------
    result : dict
        :func:`subgroup_performance`'s result.

    Returns
    -------
    str
        A few sentences: what the points and bars show, the number of
        resamples, and the metadata problems when there are any.
    """
    text = (
        f"AUROC gap of each subgroup to all {result['n_images']} test images (subgroup minus all, AUROC "
        "units; below 0: the classifier ranks that subgroup's images worse), per class and for the mean "
        "AUROC, one panel per subgroup dimension; the legend gives each subgroup's number of images."
    )
    if result["n_bootstrap"]:
        text += (
            f" Bars: bootstrap 95% percentile intervals of the gap ({result['n_bootstrap']} resamples of all "
            "test images); a class missing from a subgroup (no positive or no negative image there) has no "
            "point."
        )
    if result["problems"]:
        text += " Metadata problems: " + "; ".join(result["problems"].values()) + "."
    return text


def plot_subgroup_gaps(result: dict, path, title: str | None = None) -> str:
    """Small multiples of the per-class AUROC gap to all images, one panel per subgroup dimension, into a PNG.

    In each panel the x axis lists the classes and the mean AUROC; each subgroup is a series of points
    (its AUROC minus that of all images, y axis in AUROC units) with its bootstrap 95 % interval, offset
    sideways so that the subgroups of a class sit side by side; a dashed line marks no gap.

    Parameters
    ----------
    result : dict
        :func:`subgroup_performance`'s result.
    path : path
        The PNG to write (parent folders created).
    title : str, optional
        Figure title (default: "AUROC gap to all <n> test images, by subgroup").

    Returns
    -------
    str
        The caption (:func:`subgroup_caption`).
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    dims = [(d, info) for d, info in result["dimensions"].items() if info["groups"]]
    labels = result["labels"]
    cols = [*labels, "Mean"]
    fig, axes = plt.subplots(
        max(1, len(dims)),
        1,
        figsize=(max(6.5, 0.5 * len(cols) + 2.0), 2.6 * max(1, len(dims)) + 0.9),
        dpi=100,
        squeeze=False,
    )
    axes = axes.ravel()
    colours = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]
    x = np.arange(len(cols))
    for ax, (dim, info) in zip(axes, dims):
        groups = list(info["groups"].items())
        width = 0.7 / max(1, len(groups))
        for k, (g, e) in enumerate(groups):
            off = (k - (len(groups) - 1) / 2) * width
            val = [e["auroc_gap"][lab] for lab in labels] + [e["mean_auroc_gap"]]
            ci = [e["auroc_gap_ci95"][lab] for lab in labels] + [e["mean_auroc_gap_ci95"]]
            xs = [x[i] + off for i in range(len(cols)) if val[i] is not None]
            vs = [val[i] for i in range(len(cols)) if val[i] is not None]
            colour = colours[k % len(colours)]
            ax.plot(xs, vs, "o", ms=3.5, color=colour, label=f"{g} (n={e['n_images']})")
            for i in range(len(cols)):
                if val[i] is not None and ci[i]:
                    ax.plot([x[i] + off] * 2, ci[i], color=colour, lw=1.0, alpha=0.7)
        ax.axhline(0.0, color="grey", ls="--", lw=0.8)
        ax.axvline(len(labels) - 0.5, color="grey", lw=0.5)
        ax.set_xticks(x)
        ax.set_xticklabels(cols, rotation=35, ha="right", fontsize=7)
        ax.tick_params(axis="y", labelsize=7)
        ax.set_ylabel("AUROC gap, subgroup - all\n(AUROC units)", fontsize=7.5)
        excl = f", {info['n_excluded']} image(s) without a usable value" if info["n_excluded"] else ""
        source = "" if info["column"] == DIMENSIONS[dim][0] else f"column {info['column']!r}"
        note = ", ".join(x for x in (source, excl.lstrip(", ")) if x)
        ax.set_title(info["what"] + (f" ({note})" if note else ""), fontsize=8.5, loc="left")
        ax.legend(
            fontsize=6.5,
            ncol=min(5, len(groups)),
            loc="lower right",
            bbox_to_anchor=(1.0, 1.0),
            frameon=False,
            borderaxespad=0.1,
        )
    if not dims:
        axes[0].text(
            0.5,
            0.5,
            "no subgroup dimension (see the metadata problems)",
            ha="center",
            va="center",
            transform=axes[0].transAxes,
        )
        axes[0].set_axis_off()
    fig.suptitle(title or f"AUROC gap to all {result['n_images']} test images, by subgroup", fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return subgroup_caption(result)
