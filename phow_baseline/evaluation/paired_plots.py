"""The forest plot of a paired comparison: per-class AUROC differences (B - A) with their 95 % intervals.

Written with matplotlib's Agg backend (imported when the figure is drawn) into a PNG written
atomically; the function returns the figure's caption, for the report.
"""

from __future__ import annotations

import math

from ..io import atomic_path


def _finite(x) -> bool:
    return x is not None and math.isfinite(float(x))


def paired_caption(result: dict) -> str:
    """The caption of :func:`plot_paired_differences` for ``result`` (one sentence per element drawn).

    Parameters
    ----------
    result : dict
        A :func:`phow_baseline.evaluation.paired.compare_scores` / ``compare_runs`` result.

    Returns
    -------
    str
        A few sentences: the runs, the units, the intervals drawn and the
        classes left out of the mean.
    """
    a, b, nb = result["run_a"]["name"], result["run_b"]["name"], result["n_bootstrap"]
    text = (
        f"AUROC difference B - A per class (B = {b}, A = {a}) on the same {result['n_images']} test images, "
        f"in AUROC units (right of 0: B ranks the class better). Dots: the differences; thick bars: DeLong's "
        f"95% interval (normal, Sun & Xu's fast algorithm); p: DeLong's two-sided p-value."
    )
    if nb:
        text += (
            f" Thin bars: the paired bootstrap's 95% percentile interval ({nb} resamples of the images, the "
            "same for both runs)."
        )
    text += (
        f" The last row is the mean AUROC over {len(result['labels_in_mean'])} class(es), its interval from "
        "the full covariance of all classes' AUROCs."
    )
    if result["excluded_from_mean"]:
        text += (
            f" Without an interval (too few positive or negative images): {', '.join(result['excluded_from_mean'])}."
        )
    return text


def plot_paired_differences(result: dict, path, title: str | None = None) -> str:
    """Forest plot of a paired comparison into a PNG: one row per class and one for the mean AUROC.

    Each row shows the difference ``AUROC_B - AUROC_A`` (x axis, "AUROC difference (B - A)", AUROC
    units), DeLong's 95 % interval (thick bar), the paired bootstrap's 95 % interval (thin bar,
    when the comparison has one) and DeLong's p-value at the right; a dashed line marks 0.  A class
    without a difference (no positive image) is listed with "n/a".

    Parameters
    ----------
    result : dict
        A :func:`phow_baseline.evaluation.paired.compare_scores` / ``compare_runs`` result.
    path : path
        The PNG to write (parent folders created).
    title : str, optional
        Default: "<B> vs <A>".

    Returns
    -------
    str
        The caption (:func:`paired_caption`).
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    rows = [(lab, result["per_class"][lab]) for lab in result["labels"]] + [("Mean AUROC", result["mean"])]
    n = len(rows)
    fig, ax = plt.subplots(figsize=(7.2, 0.32 * n + 1.4), dpi=100)
    ends = [0.0]
    for i, (lab, e) in enumerate(rows):
        yy = n - 1 - i
        d, bs = e["delong"], e.get("bootstrap")
        colour = "black" if lab == "Mean AUROC" else "#1f77b4"
        if bs and bs.get("ci95"):
            ax.plot(bs["ci95"], [yy - 0.18, yy - 0.18], color="#ff7f0e", lw=1.0, solid_capstyle="butt")
            ends += bs["ci95"]
        if d.get("ci95"):
            ax.plot(d["ci95"], [yy, yy], color=colour, lw=3.0, alpha=0.55, solid_capstyle="butt")
            ends += d["ci95"]
        if _finite(d.get("difference")):
            ax.plot([d["difference"]], [yy], "o", color=colour, ms=5 if lab == "Mean AUROC" else 4)
            ends.append(d["difference"])
        p = d.get("p_value")
        p_s = "n/a" if not _finite(p) else (f"p={p:.2g}" if p >= 0.001 else f"p={p:.1e}")
        ax.text(1.01, yy, p_s, transform=ax.get_yaxis_transform(), va="center", fontsize=7.5)
    ax.text(1.01, n - 0.45, "DeLong", transform=ax.get_yaxis_transform(), va="bottom", fontsize=7.5)
    span = max(abs(min(ends)), abs(max(ends)), 0.05) * 1.1
    ax.set_xlim(-span, span)
    ax.axvline(0.0, color="grey", ls="--", lw=0.8)
    ax.axhline(0.5, color="grey", lw=0.5)
    ax.set_yticks(range(n))
    ax.set_yticklabels([lab for lab, _ in rows][::-1], fontsize=8)
    ax.set_ylim(-0.7, n - 0.3)
    ax.set_xlabel("AUROC difference, B - A (AUROC units)", fontsize=9)
    ax.tick_params(axis="x", labelsize=8)
    a, b = result["run_a"]["name"], result["run_b"]["name"]
    ax.set_title(title or f"{b} (B) vs {a} (A), n = {result['n_images']}", fontsize=9.5)
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color="#1f77b4", lw=3, alpha=0.55, label="DeLong 95% interval")]
    if result["n_bootstrap"]:
        handles.append(Line2D([], [], color="#ff7f0e", lw=1, label=f"bootstrap 95% interval ({result['n_bootstrap']})"))
    ax.legend(handles=handles, fontsize=7, loc="lower left", bbox_to_anchor=(0.0, 1.06), ncol=2, frameon=False)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return paired_caption(result)
