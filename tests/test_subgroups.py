"""Subgroup performance: a hand-checked example, the bootstrap draws, every kind of bad metadata, the
real sample's metadata, the tables and the figure."""

import json
import math
import warnings

import numpy as np
import pandas as pd
import pytest

from phow_baseline.data.chestxray14 import read_metadata, read_split_list
from phow_baseline.evaluation.bootstrap import bootstrap_weights
from phow_baseline.evaluation.roc import auroc_weighted, evaluate_scores
from phow_baseline.evaluation.subgroups import (
    AGE_BANDS,
    DIMENSIONS,
    NIH_COLUMNS,
    SubgroupMetadataWarning,
    format_subgroups,
    plot_subgroup_gaps,
    subgroup_frame,
    subgroup_masks,
    subgroup_performance,
)

NAMES = [f"{i:08d}_000.png" for i in range(8)]
LABS = ["Mass", "Nodule"]
#: Mass: positives 0, 1 (M) and 4, 5 (F).  Nodule: one positive, in F only.
Y = np.array([[1, 0], [1, 0], [0, 0], [0, 0], [1, 1], [1, 0], [0, 0], [0, 0]])
S = np.array([[0.9, 0.2], [0.4, 0.1], [0.5, 0.3], [0.1, 0.4], [0.8, 0.9], [0.3, 0.5], [0.3, 0.6], [0.7, 0.7]])


def _meta(**changes):
    m = pd.DataFrame(
        {
            "Image Index": NAMES,
            "Patient Gender": ["M", "M", "M", "M", "F", "F", "F", "F"],
            "Patient Age": [5, 25, 45, 65, 85, 30, 50, 70],
            "View Position": ["PA", "PA", "AP", "AP", "PA", "AP", "PA", "AP"],
            "Follow-up #": [0, 1, 0, 2, 0, 0, 3, 1],
            "Finding Labels": ["Mass"] * 8,
        }
    )
    for k, v in changes.items():
        m[k] = v
    return m


def _run(meta=None, **kw):
    kw.setdefault("n_bootstrap", 0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SubgroupMetadataWarning)
        return subgroup_performance(NAMES, Y, S, _meta() if meta is None else meta, LABS, **kw)


def test_hand_checked_example():
    r = _run(thresholds=[0.35, 0.5])
    # Mass, all images: positives .9 .4 .8 .3 against negatives .5 .1 .3 .7: (4 + 2 + 4 + 1.5) / 16
    assert r["all"]["auroc"]["Mass"] == 11.5 / 16
    m, f = r["dimensions"]["sex"]["groups"]["M"], r["dimensions"]["sex"]["groups"]["F"]
    assert m["auroc"]["Mass"] == 3 / 4  # .9 beats .5 and .1; .4 beats .1 only
    assert f["auroc"]["Mass"] == 2.5 / 4  # .8 beats .3 and .7; .3 ties .3
    assert m["auroc_gap"]["Mass"] == 3 / 4 - 11.5 / 16 and f["auroc_gap"]["Mass"] == 2.5 / 4 - 11.5 / 16
    # Nodule: no positive among the men, one among the women (.9 beats .5 .6 .7)
    assert m["auroc"]["Nodule"] is None and f["auroc"]["Nodule"] == 1.0 and m["n_positive"]["Nodule"] == 0
    assert r["all"]["auroc"]["Nodule"] == 1.0
    # means over the classes each group defines
    assert m["mean_auroc"] == 3 / 4 and f["mean_auroc"] == (2.5 / 4 + 1.0) / 2
    assert f["mean_auroc_gap"] == pytest.approx(((2.5 / 4 - 11.5 / 16) + 0.0) / 2, abs=1e-15)
    # FNR at 0.35 (Mass): of the positives .9 .4 | .8 .3, only .3 (a woman) is below
    assert r["all"]["fnr"]["Mass"] == 1 / 4 and m["fnr"]["Mass"] == 0.0 and f["fnr"]["Mass"] == 1 / 2
    assert f["fnr"]["Nodule"] == 0.0 and m["fnr"]["Nodule"] is None  # .9 >= .5; the men have no positive
    assert m["mean_fnr"] == 0.0 and f["mean_fnr"] == 1 / 4
    # the other dimensions
    ages = r["dimensions"]["age"]["groups"]
    assert list(ages) == [b[0] for b in AGE_BANDS] == ["0-19", "20-39", "40-59", "60-79", "80+"]
    assert [ages[b]["n_images"] for b in ages] == [1, 2, 2, 2, 1]
    assert r["dimensions"]["view"]["groups"]["PA"]["n_images"] == 4
    fu = r["dimensions"]["followup"]["groups"]
    assert fu["first"]["n_images"] == 4 and fu["follow-up"]["n_images"] == 4
    # first images 0, 2, 4, 5: Mass positives .9 .8 .3 against .5: (1 + 1 + 0) / 3
    assert fu["first"]["auroc"]["Mass"] == 2 / 3
    assert r["threshold_on"] == "score" and r["problems"] == {}
    assert all(d["n_excluded"] == 0 for d in r["dimensions"].values())
    json.dumps(r, allow_nan=False)


def test_thresholds_apply_to_the_probabilities_when_given():
    p = 1 - S  # a reversed scale: the decisions change, the AUROCs (from the scores) do not
    r = _run(probabilities=p, thresholds=[0.5, 0.5])
    assert r["threshold_on"] == "probability"
    assert r["all"]["fnr"]["Mass"] == 2 / 4  # 1 - [.9 .4 .8 .3] = [.1 .6 .2 .7] below .5: two
    assert r["all"]["auroc"]["Mass"] == 11.5 / 16
    r = _run()
    assert r["threshold_on"] is None and r["all"]["fnr"]["Mass"] is None and r["all"]["mean_fnr"] is None


def test_bootstrap_uses_the_evaluation_draws():
    rng = np.random.default_rng(0)
    n = 120
    names = [f"{i:08d}_000.png" for i in range(n)]
    y = (rng.random((n, 2)) < 0.3).astype(int)
    s = rng.normal(size=(n, 2)) + y
    meta = pd.DataFrame(
        {
            "Image Index": names,
            "Patient Gender": rng.choice(["M", "F"], n),
            "Patient Age": rng.integers(1, 95, n),
            "View Position": rng.choice(["PA", "AP"], n),
            "Follow-up #": rng.integers(0, 3, n),
        }
    )
    r = subgroup_performance(names, y, s, meta, LABS, n_bootstrap=150, seed=7, thresholds=[0.5, 0.5])
    ev = evaluate_scores(y, s, LABS, n_bootstrap=150, seed=7)
    for lab in LABS:
        assert r["all"]["auroc_ci95"][lab] == ev["auroc_ci95"][lab]
    assert r["all"]["mean_auroc_ci95"] == pytest.approx(ev["mean_auroc_ci95"], abs=1e-15)
    # a subgroup's interval: the same draws, restricted to its images; the gap's: paired with all images
    mask = meta["Patient Gender"].to_numpy() == "F"
    w = np.concatenate(list(bootstrap_weights(n, 150, 7)))
    sub = auroc_weighted(y[mask, 0].astype(bool), s[mask, 0], w[:, mask])
    full = auroc_weighted(y[:, 0].astype(bool), s[:, 0], w)
    e = r["dimensions"]["sex"]["groups"]["F"]
    assert e["auroc_ci95"]["Mass"] == [np.percentile(sub, 2.5), np.percentile(sub, 97.5)]
    assert e["auroc_gap_ci95"]["Mass"] == [np.percentile(sub - full, 2.5), np.percentile(sub - full, 97.5)]
    assert e["n_bootstrap_used"]["Mass"] == 150
    fnr = (w[:, mask] @ ((s[mask, 0] < 0.5) & (y[mask, 0] == 1))) / (w[:, mask] @ y[mask, 0])
    assert e["fnr_ci95"]["Mass"] == pytest.approx([np.percentile(fnr, 2.5), np.percentile(fnr, 97.5)], abs=1e-15)
    lo, hi = e["auroc_ci95"]["Mass"]
    assert lo <= e["auroc"]["Mass"] <= hi


# --------------------------------------------------------------------------
# Bad metadata: warnings with counts, never a crash
# --------------------------------------------------------------------------


@pytest.mark.parametrize("column,dim", [(c, d) for d, c in NIH_COLUMNS.items()])
def test_a_missing_column_skips_its_dimension(column, dim):
    with pytest.warns(SubgroupMetadataWarning, match=f"no '{DIMENSIONS[dim][0]}' \\(or '{column}'\\) column") as rec:
        r = subgroup_performance(NAMES, Y, S, _meta().drop(columns=[column]), LABS, n_bootstrap=0)
    assert len(rec) == 1
    assert dim not in r["dimensions"] and len(r["dimensions"]) == 3 and dim in r["problems"]


@pytest.mark.parametrize(
    "column,values,dim,count,example",
    [
        ("Patient Age", [5, 25, 414, 65, 85, 30, 50, 70], "age", 1, "414"),
        ("Patient Age", [5, np.nan, 45, -3, 85, 30, 50, 70], "age", 2, "nan"),
        ("Patient Age", ["5", "25", "45", "65", "85", "thirty", "50", "70"], "age", 1, "'thirty'"),
        ("View Position", ["PA", "PA", "LL", "AP", "PA", "AP", "PA", None], "view", 2, "'LL'"),
        ("Patient Gender", ["M", "M", "M", "M", "F", "F", "O", np.nan], "sex", 2, "'O'"),
        ("Follow-up #", [0, 1, 0, -1, 0, 1.5, 3, 1], "followup", 2, "-1"),
    ],
)
def test_bad_values_leave_the_images_out_of_that_dimension(column, values, dim, count, example):
    with pytest.warns(SubgroupMetadataWarning) as rec:
        r = subgroup_performance(NAMES, Y, S, _meta(**{column: values}), LABS, n_bootstrap=20, thresholds=[0.5, 0.5])
    msgs = [str(w.message) for w in rec]
    assert len(msgs) == 1 and f"for {count} of 8 scored image(s)" in msgs[0] and example in msgs[0], msgs
    assert column in msgs[0]
    info = r["dimensions"][dim]
    assert info["n_excluded"] == count and sum(g["n_images"] for g in info["groups"].values()) == 8 - count
    assert r["problems"][dim] in msgs[0]
    for other in set(DIMENSIONS) - {dim}:
        assert r["dimensions"][other]["n_excluded"] == 0
    json.dumps(r, allow_nan=False)


def test_all_values_bad_skips_the_dimension():
    with pytest.warns(SubgroupMetadataWarning, match="for all 8 scored image"):
        r = subgroup_performance(NAMES, Y, S, _meta(**{"View Position": ["LL"] * 8}), LABS, n_bootstrap=0)
    assert "view" not in r["dimensions"]
    assert "figure" not in r  # nothing else changes
    assert set(r["dimensions"]) == {"sex", "age", "followup"}


def test_images_missing_from_the_metadata_and_duplicates():
    meta = _meta().iloc[2:]
    with pytest.warns(SubgroupMetadataWarning, match="2 of 8 scored image.*not in the metadata.*00000000_000"):
        r = subgroup_performance(NAMES, Y, S, meta, LABS, n_bootstrap=0)
    assert all(d["n_excluded"] == 2 for d in r["dimensions"].values())
    assert r["all"]["n_images"] == 8  # the gaps are to all scored images
    dup = pd.concat([_meta(), _meta().iloc[:1].assign(**{"Patient Gender": "F"})])
    with pytest.warns(SubgroupMetadataWarning, match="1 duplicated Image Index"):
        r = subgroup_performance(NAMES, Y, S, dup, LABS, n_bootstrap=0)
    assert r["dimensions"]["sex"]["groups"]["M"]["n_images"] == 4  # the first row is used


def test_metadata_without_image_index_or_not_a_table_gives_the_overall_only():
    with pytest.warns(SubgroupMetadataWarning, match="no 'Image Index' column"):
        r = subgroup_performance(NAMES, Y, S, _meta().drop(columns=["Image Index"]), LABS, n_bootstrap=0)
    assert r["dimensions"] == {} and r["all"]["auroc"]["Mass"] == 11.5 / 16
    with pytest.warns(SubgroupMetadataWarning, match="no metadata table"):
        r = subgroup_performance(NAMES, Y, S, None, LABS, n_bootstrap=0)
    assert r["dimensions"] == {}
    text = format_subgroups(r)
    assert "metadata: no metadata table" in text
    # Image Index as the index, lower-case and padded values: accepted
    meta = _meta(**{"Patient Gender": [" m", "M", "M", "M", "f", "F", "F", "F "]}).set_index("Image Index")
    r = _run(meta)
    assert r["dimensions"]["sex"]["groups"]["M"]["n_images"] == 4


def test_masks_take_a_dataset_object():
    class Dataset:
        metadata = _meta()

    masks, problems = subgroup_masks(NAMES, Dataset())
    assert problems == {} and masks["sex"]["F"].tolist() == [False] * 4 + [True] * 4


def test_programming_errors_still_raise():
    with pytest.raises(ValueError, match="disagree"):
        subgroup_performance(NAMES[:7], Y, S, _meta(), LABS)
    with pytest.raises(ValueError, match="thresholds"):
        subgroup_performance(NAMES, Y, S, _meta(), LABS, thresholds=[0.5])


def test_real_sample_metadata_gives_every_dimension_without_warnings(sample_dir):
    meta = read_metadata(sample_dir / "Data_Entry_2017_v2020.csv.gz")
    names = sorted(
        n.name
        for n in (sample_dir / "images").glob("*.png")
        if n.name in set(read_split_list(sample_dir / "test_list.txt"))
    )
    assert len(names) == 59
    rng = np.random.default_rng(0)
    y = (rng.random((len(names), 2)) < 0.3).astype(int)
    s = rng.normal(size=y.shape) + y
    with warnings.catch_warnings():
        warnings.simplefilter("error", SubgroupMetadataWarning)
        r = subgroup_performance(names, y, s, meta, LABS, n_bootstrap=20)
    assert set(r["dimensions"]) == set(DIMENSIONS)
    for info in r["dimensions"].values():
        assert info["n_excluded"] == 0 and sum(g["n_images"] for g in info["groups"].values()) == 59
    sub = meta.set_index("Image Index").loc[names]
    assert r["dimensions"]["sex"]["groups"]["F"]["n_images"] == int((sub["Patient Gender"] == "F").sum())
    assert r["dimensions"]["followup"]["groups"]["first"]["n_images"] == int((sub["Follow-up #"] == 0).sum())


# --------------------------------------------------------------------------
# Tables and figure
# --------------------------------------------------------------------------


def test_text_table_and_long_frame():
    r = _run(n_bootstrap=30, thresholds=[0.35, 0.5])
    text = format_subgroups(r)
    lines = text.splitlines()
    assert "AUROC units" in lines[0] and "mean FNR" in lines[1]
    assert lines[2].startswith("all images") and any(ln.startswith("sex: F") for ln in lines)
    assert len([ln for ln in lines if ln.split(":")[0] in DIMENSIONS]) == 2 + 5 + 2 + 2
    df = subgroup_frame(r)
    assert len(df) == (1 + 11) * (len(LABS) + 1)
    row = df[(df["dimension"] == "sex") & (df["group"] == "F") & (df["label"] == "Mass")].iloc[0]
    assert row["auroc"] == 2.5 / 4 and row["fnr"] == 0.5 and row["n_positive"] == 2
    assert math.isnan(df[(df["group"] == "M") & (df["label"] == "Nodule")]["auroc"].iloc[0])


def test_gap_figure_has_units_and_a_caption(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with pytest.warns(SubgroupMetadataWarning):
        r = subgroup_performance(
            NAMES, Y, S, _meta(**{"Patient Age": [5, 25, 414, 65, 85, 30, 50, 70]}), LABS, n_bootstrap=30
        )
    seen = {}
    orig = plt.Figure.savefig

    def spy(fig, *args, **kwargs):
        seen["ylabels"] = [ax.get_ylabel() for ax in fig.axes]
        seen["titles"] = [ax.get_title(loc="left") for ax in fig.axes]
        seen["xticks"] = [t.get_text() for t in fig.axes[0].get_xticklabels()]
        return orig(fig, *args, **kwargs)

    plt.Figure.savefig = spy
    try:
        caption = plot_subgroup_gaps(r, tmp_path / "g" / "subgroups.png")
    finally:
        plt.Figure.savefig = orig
    assert (tmp_path / "g" / "subgroups.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(seen["ylabels"]) == 4 and all("AUROC gap" in y and "(AUROC units)" in y for y in seen["ylabels"])
    assert seen["xticks"] == [*LABS, "Mean"]
    assert any("1 image(s) without a usable value" in t for t in seen["titles"])
    assert "AUROC units" in caption and "30 resamples" in caption and "414" in caption


# --------------------------------------------------------------------------
# The dataset protocol's normalised columns, datasets, masks
# --------------------------------------------------------------------------


def _normalised(**changes):
    """The subgroup frame a ChestDataset gives (``ds.subgroups(names)``): indexed by name, normalised columns."""
    m = _meta()
    f = pd.DataFrame(
        {
            "patient": range(len(NAMES)),
            "sex": m["Patient Gender"].to_numpy(),
            "age": m["Patient Age"].to_numpy(float),
            "view": m["View Position"].to_numpy(),
            "follow_up": m["Follow-up #"].to_numpy(float),
        },
        index=pd.Index(NAMES, name="name"),
    )
    for k, v in changes.items():
        f[k] = v
    return f


def test_normalised_columns_give_the_nih_columns_result():
    nih = _run(n_bootstrap=25, thresholds=[0.35, 0.5])
    norm = _run(_normalised(), n_bootstrap=25, thresholds=[0.35, 0.5])
    for d in DIMENSIONS:
        assert norm["dimensions"][d]["groups"] == nih["dimensions"][d]["groups"]
        assert norm["dimensions"][d]["column"] == DIMENSIONS[d][0]
        assert nih["dimensions"][d]["column"] == NIH_COLUMNS[d]
    # the rows may come in any order, and a dataset object is asked for its subgroup frame
    shuffled = _normalised().iloc[::-1]

    class Dataset:
        asked = None

        def subgroups(self, names):
            Dataset.asked = list(names)
            return shuffled

    r = _run(Dataset(), n_bootstrap=25, thresholds=[0.35, 0.5])
    assert Dataset.asked == NAMES and r["dimensions"]["age"]["groups"] == nih["dimensions"]["age"]["groups"]


def test_normalised_columns_with_unknown_values_warn_with_counts():
    # the protocol's spellings of "unknown": NaN sex, NaN age (also for an age outside 0-120), an UNKNOWN or
    # LATERAL view, a NaN follow-up number
    frame = _normalised(
        sex=["M", np.nan, "M", "M", "F", "F", "F", "F"],
        age=[5, 25, np.nan, np.nan, 85, 30, 50, 70],
        view=["PA", "PA", "AP", "UNKNOWN", "PA", "LATERAL", "PA", "AP"],
        follow_up=[0, 1, 0, 2, np.nan, 0, 3, 1],
    )
    with pytest.warns(SubgroupMetadataWarning) as rec:
        r = subgroup_performance(NAMES, Y, S, frame, LABS, n_bootstrap=10)
    msgs = sorted(str(w.message) for w in rec)
    assert len(msgs) == 4
    assert any("'age' is not an age in 0-120 years for 2 of 8" in m for m in msgs), msgs
    assert any("'sex' is not one of M/F for 1 of 8" in m for m in msgs), msgs
    assert any("'view' is not one of PA/AP for 2 of 8" in m and "'UNKNOWN'" in m for m in msgs), msgs
    assert any("'follow_up' is not a whole number >= 0 for 1 of 8" in m for m in msgs), msgs
    assert [r["dimensions"][d]["n_excluded"] for d in ("sex", "age", "view", "followup")] == [1, 2, 2, 1]
    json.dumps(r, allow_nan=False)


def test_a_frame_without_names_is_refused_with_a_warning():
    with pytest.warns(SubgroupMetadataWarning, match="not indexed by image name"):
        r = subgroup_performance(NAMES, Y, S, _normalised().reset_index(drop=True), LABS, n_bootstrap=0)
    assert r["dimensions"] == {}


def test_a_mask_leaves_the_cells_out_of_every_group():
    # mask Mass on images 1 (a male positive, .4) and 6 (a female negative, .3): the figures are those of the
    # images left, class by class; Nodule is untouched
    mask = np.ones(Y.shape, bool)
    mask[[1, 6], 0] = False
    r = _run(n_bootstrap=40, thresholds=[0.35, 0.5], mask=mask)
    keep = [0, 2, 3, 4, 5, 7]
    ref = subgroup_performance(
        [NAMES[i] for i in keep], Y[keep, :1], S[keep, :1], _meta().iloc[keep], LABS[:1], n_bootstrap=0
    )
    for d in ("sex", "age"):
        for g, e in r["dimensions"][d]["groups"].items():
            assert e["auroc"]["Mass"] == ref["dimensions"][d]["groups"][g]["auroc"]["Mass"], (d, g)
    assert r["all"]["auroc"]["Mass"] == ref["all"]["auroc"]["Mass"] == 7 / 9  # .9 .8 .3 against .5 .1 .7
    assert r["all"]["n_positive"]["Mass"] == 3 and r["dimensions"]["sex"]["groups"]["M"]["n_positive"]["Mass"] == 1
    assert r["all"]["fnr"]["Mass"] == 1 / 3  # .3 of .9 .8 .3 is below .35
    unmasked = _run(n_bootstrap=40, thresholds=[0.35, 0.5])
    assert r["all"]["auroc"]["Nodule"] == unmasked["all"]["auroc"]["Nodule"]
    assert r["all"]["auroc_ci95"]["Nodule"] == unmasked["all"]["auroc_ci95"]["Nodule"]
    # an all-True mask is no mask, to the last digit
    assert _run(n_bootstrap=40, thresholds=[0.35, 0.5], mask=np.ones(Y.shape, bool)) == unmasked
