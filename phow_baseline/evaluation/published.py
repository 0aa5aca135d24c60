"""The published per-class AUROC of ChestX-ray14 models, and tables that set runs beside them."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..data.chestxray14 import LABELS

#: Published per-class AUROC, in :data:`LABELS` order, with the split each used.
#: Values as quoted in the papers' tables.
PUBLISHED = {
    "Wang2017_official": {
        "title": "Wang et al. 2017 (ResNet-50), arXiv v5 Table 17",
        "split": "official (train_val 86,524 / test 25,596)",
        "auroc": [
            0.7003,
            0.8100,
            0.7585,
            0.6614,
            0.6933,
            0.6687,
            0.6580,
            0.7993,
            0.7032,
            0.8052,
            0.8330,
            0.7859,
            0.6835,
            0.8717,
        ],
        "mean": 0.745,
    },
    "Wang2017_random": {
        "title": "Wang et al. 2017, as quoted by CheXNet",
        "split": "random patient-wise 70/10/20",
        "auroc": [0.716, 0.807, 0.784, 0.609, 0.706, 0.671, 0.633, 0.806, 0.708, 0.835, 0.815, 0.769, 0.708, 0.767],
        "mean": 0.738,
    },
    "Yao2017_random": {
        "title": "Yao et al. 2017, as quoted by CheXNet",
        "split": "random patient-wise 70/10/20",
        "auroc": [0.772, 0.904, 0.859, 0.695, 0.792, 0.717, 0.713, 0.841, 0.788, 0.882, 0.829, 0.767, 0.765, 0.914],
        "mean": 0.803,
    },
    "CheXNet_random": {
        "title": "CheXNet (Rajpurkar et al. 2017, DenseNet-121)",
        "split": "random patient-wise 70/10/20",
        "auroc": [
            0.8094,
            0.9248,
            0.8638,
            0.7345,
            0.8676,
            0.7802,
            0.7680,
            0.8887,
            0.7901,
            0.8878,
            0.9371,
            0.8047,
            0.8062,
            0.9164,
        ],
        "mean": 0.841,
    },
    "Uniandes2019_PHOW": {
        "title": "Gomez, Rueda, Valderrama 2019 (PHOW + 14 SVMs)",
        "split": "10,000 train / 5,000 test images",
        "auroc": None,  # only the mean was published
        "mean": 0.3137,
    },
}


def comparison_table(
    runs: Sequence[dict], references: Sequence[str] | None = None, labels: Sequence[str] = LABELS
) -> pd.DataFrame:
    """Per-class AUROC of several runs side by side with the published columns.

    Parameters
    ----------
    runs : sequence of dict
        ``metrics.json`` contents (need ``model``, ``auroc``, ``mean_auroc``).
    references : sequence of str, optional
        Keys of :data:`PUBLISHED` (default: all).
    labels : sequence of str, default LABELS
        Rows of the table (ChestX-ray14's 14 by default); a published column
        has NaN for a label it does not cover.

    Returns
    -------
    table : pandas.DataFrame, (len(labels) + 1, len(runs) + len(references)) float
        AUROC in [0, 1] (NaN where unknown), indexed by label with a final
        ``Mean`` row; one column per run (named by its ``model``, made unique
        with `` (2)``, `` (3)``...) then one per reference.
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
    """Markdown text of :func:`comparison_table` with a legend naming each reference's split.

    Parameters
    ----------
    df : pandas.DataFrame
        What :func:`comparison_table` returns.
    runs : sequence of dict, default ()
        The runs' ``metrics.json`` contents, for the legend (model, kind,
        split, number of test images).
    digits : int, default 3
        Decimals of each AUROC; NaN cells are left empty.

    Returns
    -------
    markdown : str
        The table, then one legend line per run and per published column;
        ends with a newline.
    """
    head = "| label | " + " | ".join(df.columns) + " |"
    sep = "|---|" + "---:|" * len(df.columns)
    rows = [head, sep]
    for lab, row in df.iterrows():
        cells = ["" if pd.isna(v) else f"{v:.{digits}f}" for v in row]
        rows.append(f"| {lab} | " + " | ".join(cells) + " |")
    legend = [""]
    for r in runs:
        legend.append(
            f"- {r.get('model')}: this library ({r.get('kind')}), split {r.get('split')}, n_test {r.get('n_test')}"
        )
    for key in df.columns:
        if key in PUBLISHED:
            legend.append(f"- {key}: {PUBLISHED[key]['title']}; split: {PUBLISHED[key]['split']}")
    return "\n".join(rows + legend) + "\n"
