"""The run directory's figures: ROC curves and reliability diagrams, one small panel per class.

Written with matplotlib's Agg backend (imported when a figure is drawn, not
with this module) into PNG files written atomically.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ..data.chestxray14 import LABELS
from ..io import atomic_path
from .published import PUBLISHED

#: Published columns marked on each ROC panel: the official-split reference and the best per-class one.
ROC_MARKED = ("Wang2017_official", "CheXNet_random")


def _grid_axes(n_panels, ncols=4, panel=2.55):
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    nrows = max(1, math.ceil(n_panels / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * panel, nrows * panel + 0.5), dpi=100, squeeze=False)
    for ax in axes.ravel()[n_panels:]:
        ax.set_visible(False)
    return plt, fig, axes.ravel()


def _label_grid(axes, n_panels: int, xlabel: str, ylabel: str, ncols: int = 4) -> None:
    """Axis labels on the first column and on the last row of a grid of panels."""
    for ax in axes[::ncols]:
        ax.set_ylabel(ylabel, fontsize=7)
    for ax in axes[max(0, n_panels - ncols) : n_panels]:
        ax.set_xlabel(xlabel, fontsize=7)


def plot_roc(
    result: dict,
    path,
    title="ROC curves",
    band: dict | None = None,
    n_bootstrap: int | None = None,
    marked: Sequence[str] = ROC_MARKED,
) -> None:
    """ROC curves as small multiples: one panel per class, into a PNG (matplotlib, Agg).

    Each panel shows the class's curve, its pointwise bootstrap 95 % band
    (``band`` = ``{label: (grid, lo, hi, n_used)}`` from
    :func:`bootstrap_roc_band`), the chance diagonal, our AUROC with its
    interval, and the published AUROCs of ``marked`` (keys of
    :data:`PUBLISHED`) as ticks on an AUROC scale along the panel's bottom
    edge. A band resting on fewer resamples than ``n_bootstrap`` says so.

    Parameters
    ----------
    result : dict
        What :func:`~phow_baseline.evaluation.roc.evaluate_scores` returns
        (uses ``labels``, ``auroc``, ``auroc_ci95``, ``roc``, ``mean_auroc``,
        ``n_positive``).
    path : str or path-like
        The PNG file to write (atomically); 4 panels a row, about 255 x 255
        pixels each (2.55 in at 100 dpi).
    title : str, default "ROC curves"
        Figure title, followed by the mean AUROC.
    band : dict, optional
        ``{label: (grid, lo, hi, n_used)}``: the false-positive rates
        ``(n_grid,)``, the band's lower and upper true-positive rates
        ``(n_grid,)`` (fractions) and the resamples used, one class's slice
        of :func:`~phow_baseline.evaluation.roc.bootstrap_roc_band`.
    n_bootstrap : int, optional
        Resamples asked for; a band with fewer ``n_used`` is labelled so.
    marked : sequence of str, default ROC_MARKED
        Keys of :data:`PUBLISHED` whose per-class AUROC is marked (those
        without per-class values are skipped).

    Returns
    -------
    None
        The figure is written to ``path``.
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
                    ax.fill_between(
                        g, lo, hi, step="post", color="#1f77b4", alpha=0.22, lw=0, label="bootstrap 95 % band"
                    )
                if n_bootstrap and n_used < n_bootstrap:
                    ax.text(
                        0.97,
                        0.30,
                        f"band: {n_used}/{n_bootstrap} resamples",
                        ha="right",
                        fontsize=6.5,
                        color="#a05000",
                        transform=ax.transAxes,
                    )
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
        for rmap, col in zip(refs.values(), ref_colours):
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
    _label_grid(
        axes,
        len(labels),
        "false positive rate\n(1 - specificity, fraction)",
        "true positive rate\n(sensitivity, fraction)",
    )
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles = [
        Line2D([], [], color="#1f77b4", lw=1.5, label="this run"),
        Patch(color="#1f77b4", alpha=0.22, label="bootstrap 95 % band"),
        Line2D([], [], marker="o", color="#1f77b4", ls="none", label="AUROC, this run (scale 0.5-1)"),
    ]
    handles += [
        Line2D([], [], marker="v", color=c, ls="none", label=f"published AUROC: {k}") for k, c in zip(refs, ref_colours)
    ]
    mean = result.get("mean_auroc")
    fig.suptitle(f"{title}: mean AUROC {mean:.3f}" if mean is not None else title, fontsize=11)
    fig.legend(handles=handles, loc="lower right", fontsize=7.5, frameon=False, ncol=1, bbox_to_anchor=(0.98, 0.02))
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def plot_calibration(summary: dict, path, title="Reliability diagrams") -> None:
    """Reliability diagrams as small multiples (one panel per class) into a PNG.

    ``summary`` is :func:`~phow_baseline.evaluation.calibration_metrics.calibration_summary`'s
    output: per class, the fraction of positives against the mean predicted
    probability in each equal-width bin (marker area proportional to the
    images in the bin), the diagonal of perfect calibration, and the ECE and
    Brier score in the panel title.

    Parameters
    ----------
    summary : dict
        ``calibration_summary(...)``: ``n_bins``, ``reliability``, ``ece``,
        ``brier`` per label and ``mean_ece``.
    path : str or path-like
        The PNG file to write (atomically), 4 panels a row.
    title : str, default "Reliability diagrams"
        Figure title, followed by the binning and the mean ECE.

    Returns
    -------
    None
        The figure is written to ``path``.
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
        ax.bar(
            edges[:-1], cnt / max(total, 1) * 0.25, width=1 / summary["n_bins"], align="edge", color="#bbbbbb", zorder=0
        )
        ax.set_title(f"{lab}\nECE {summary['ece'][lab]:.3f}  Brier {summary['brier'][lab]:.3f}", fontsize=8.5)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.tick_params(labelsize=6.5)
    _label_grid(
        axes,
        len(labels),
        "mean predicted probability\nin the bin (0-1)",
        "observed fraction positive\nin the bin (0-1)",
    )
    fig.suptitle(
        f"{title}: {summary['n_bins']} equal-width bins; grey bars: images per bin "
        f"(height 0.25 = all), mean ECE {summary['mean_ece']:.3f}",
        fontsize=10,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
