"""Paired comparison of runs: DeLong (Sun & Xu) against an O(n^2) computation and a PyPI peer, the paired
bootstrap, the run-directory reader's refusals, the tables and the forest plot."""

import json
import math
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from phow_baseline.evaluation.bootstrap import bootstrap_weights
from phow_baseline.evaluation.paired import (
    FEW_FOR_VARIANCE,
    NO_POSITIVE,
    PAIRED_COLUMNS,
    Z95,
    bootstrap_p_value,
    compare_run_dirs,
    compare_runs,
    compare_scores,
    delong_components,
    delong_covariance,
    delong_test,
    format_paired,
    paired_bootstrap,
    paired_delong,
    paired_frame,
    read_paired_dir,
    read_truth,
    write_paired,
    write_paired_dir,
)
from phow_baseline.evaluation.paired_plots import plot_paired_differences
from phow_baseline.evaluation.roc import bootstrap_auroc
from phow_baseline.evaluation.rundir import write_run_dir

# --------------------------------------------------------------------------
# The O(n^2) reference: the Mann-Whitney kernel by explicit double loops
# --------------------------------------------------------------------------


def psi(x, z):
    return 1.0 if x > z else 0.5 if x == z else 0.0


def brute_components(y, s):
    """AUROC, V10 (P,), V01 (N,) of one run by loops over positives x negatives."""
    pos = [i for i in range(len(y)) if y[i]]
    neg = [i for i in range(len(y)) if not y[i]]
    v10 = np.zeros(len(pos))
    v01 = np.zeros(len(neg))
    for a, i in enumerate(pos):
        for b, l in enumerate(neg):
            k = psi(s[i], s[l])
            v10[a] += k
            v01[b] += k
    v10 /= len(neg)
    v01 /= len(pos)
    return v10.mean(), v10, v01


def brute_cov(u, v):
    """Sample covariance (divisor len - 1) by a loop."""
    mu, mv = sum(u) / len(u), sum(v) / len(v)
    return sum((a - mu) * (b - mv) for a, b in zip(u, v)) / (len(u) - 1)


def brute_delong(y, sa, sb):
    """AUROCs, 2x2 covariance, difference, SE, p of DeLong's test, all from the loops."""
    aa, a10, a01 = brute_components(y, sa)
    ab, b10, b01 = brute_components(y, sb)
    P, N = len(a10), len(a01)
    comps = [(a10, a01), (b10, b01)]
    S = np.array(
        [
            [brute_cov(comps[r][0], comps[q][0]) / P + brute_cov(comps[r][1], comps[q][1]) / N for q in range(2)]
            for r in range(2)
        ]
    )
    var = S[0, 0] + S[1, 1] - 2 * S[0, 1]
    se = math.sqrt(max(var, 0.0))
    d = ab - aa
    p = 2 * norm.sf(abs(d / se)) if se > 0 else (1.0 if d == 0 else 0.0)
    return aa, ab, S, d, se, p


def brute_mean_variance(y, a, b):
    """Var of the mean difference over the K classes from a covariance built by loops over images.

    Cov(AUROC_rj, AUROC_qk) = sum over images t of phi_rj(t) phi_qk(t), with phi the image's centred
    structural component scaled by 1 / sqrt(P (P - 1)) (positive) or 1 / sqrt(N (N - 1)) (negative).
    """
    n, K = y.shape
    phi = np.zeros((n, 2 * K))  # columns: (run A, class j) = j, (run B, class j) = K + j
    for j in range(K):
        for r, s in enumerate((a, b)):
            auc, v10, v01 = brute_components(y[:, j], s[:, j])
            P, N = len(v10), len(v01)
            ip = iq = 0
            for t in range(n):
                if y[t, j]:
                    phi[t, r * K + j] = (v10[ip] - auc) / math.sqrt(P * (P - 1))
                    ip += 1
                else:
                    phi[t, r * K + j] = (v01[iq] - auc) / math.sqrt(N * (N - 1))
                    iq += 1
    S = np.zeros((2 * K, 2 * K))
    for r in range(2 * K):
        for q in range(2 * K):
            S[r, q] = sum(phi[t, r] * phi[t, q] for t in range(n))
    c = np.r_[-np.ones(K), np.ones(K)] / K
    return float(c @ S @ c), S


def _case(n, seed, ties=False, k=1):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, k)) < 0.4).astype(int)
    y[0], y[1] = 1, 0  # at least 2 of each, so that every class is defined
    y[2], y[3] = 1, 0
    a = rng.normal(size=(n, k)) + 0.8 * y
    b = 0.6 * a + rng.normal(size=(n, k)) + 0.5 * y
    if ties:
        a, b = np.round(a, 0), np.round(b * 2, 0) / 2
    return y, a, b


# --------------------------------------------------------------------------
# DeLong against the O(n^2) computation
# --------------------------------------------------------------------------


@pytest.mark.parametrize("seed,ties", [(0, False), (1, True), (2, True), (3, False), (4, True)])
def test_midrank_components_match_the_double_loop(seed, ties):
    y, a, b = _case(23 + 4 * seed, seed, ties)
    auc, v10, v01 = delong_components(y[:, 0], np.c_[a[:, 0], b[:, 0]])
    for r, s in enumerate((a[:, 0], b[:, 0])):
        ref_auc, ref10, ref01 = brute_components(y[:, 0], s)
        np.testing.assert_allclose(auc[r], ref_auc, rtol=0, atol=1e-12)
        np.testing.assert_allclose(v10[:, r], ref10, rtol=0, atol=1e-12)
        np.testing.assert_allclose(v01[:, r], ref01, rtol=0, atol=1e-12)
    if ties:
        assert len(np.unique(a)) < len(a)  # the case really has ties


@pytest.mark.parametrize("seed,ties", [(5, False), (6, True), (7, True), (8, False)])
def test_delong_test_matches_the_double_loop(seed, ties):
    y, a, b = _case(31, seed, ties)
    aa, ab, S, d, se, p = brute_delong(y[:, 0], a[:, 0], b[:, 0])
    auc, cov = delong_covariance(y[:, 0], np.c_[a[:, 0], b[:, 0]])
    np.testing.assert_allclose(cov, S, rtol=0, atol=1e-12)
    r = delong_test(y[:, 0], a[:, 0], b[:, 0])
    for got, want in (
        (r["auroc_a"], aa),
        (r["auroc_b"], ab),
        (r["difference"], d),
        (r["se"], se),
        (r["p_value"], p),
        (r["ci95"][0], d - Z95 * se),
        (r["ci95"][1], d + Z95 * se),
    ):
        assert abs(got - want) < 1e-12
    assert r["reason"] is None and r["n_positive"] == int(y.sum())


@pytest.mark.parametrize("ties", [False, True])
def test_mean_auroc_variance_matches_the_full_covariance_by_loops(ties):
    y, a, b = _case(26, 11, ties, k=3)
    var, S = brute_mean_variance(y, a, b)
    res = paired_delong(y, a, b, ["c0", "c1", "c2"])
    assert abs(res["mean"]["se"] ** 2 - var) < 1e-12
    # the per-class 2x2 blocks of the full covariance are DeLong's covariances
    for j in range(3):
        _, cov = delong_covariance(y[:, j], np.c_[a[:, j], b[:, j]])
        np.testing.assert_allclose(S[np.ix_([j, 3 + j], [j, 3 + j])], cov, rtol=0, atol=1e-12)
    d = np.mean([res["per_class"][c]["difference"] for c in ("c0", "c1", "c2")])
    assert abs(res["mean"]["difference"] - d) < 1e-15
    assert res["labels_in_mean"] == ["c0", "c1", "c2"] and res["excluded_from_mean"] == {}


def test_mean_variance_counts_the_covariance_between_classes():
    """Classes that share their positives and their per-image noise: the mean's DeLong SE agrees with the
    paired bootstrap's spread, while the sum of per-class variances alone (block-diagonal) would be far
    too small."""
    rng = np.random.default_rng(1)
    n, K = 400, 4
    y0 = rng.random(n) < 0.3
    y = y0[:, None] ^ (rng.random((n, K)) < 0.1)
    a = y * 1.0 + rng.normal(size=(n, 1)) + 0.3 * rng.normal(size=(n, K))
    b = y * 1.5 + rng.normal(size=(n, 1)) + 0.3 * rng.normal(size=(n, K))
    labels = [f"c{j}" for j in range(K)]
    res = paired_delong(y, a, b, labels)
    block = math.sqrt(sum(res["per_class"][c]["se"] ** 2 for c in labels)) / K
    w = np.concatenate(list(bootstrap_weights(n, 400, seed=3)))
    from phow_baseline.evaluation.roc import auroc_weighted

    boot = np.mean(
        [auroc_weighted(y[:, j], b[:, j], w) - auroc_weighted(y[:, j], a[:, j], w) for j in range(K)], axis=0
    )
    sd = float(np.std(boot, ddof=1))
    assert abs(res["mean"]["se"] / sd - 1) < 0.15, (res["mean"]["se"], sd)
    assert block < 0.8 * sd  # the cross-class terms matter here


# --------------------------------------------------------------------------
# DeLong against an independent implementation (MLstatkit, the test extra)
# --------------------------------------------------------------------------


def _peer(y, a, b):
    from MLstatkit import Delong_test

    z, p, ci_a, ci_b, auc_a, auc_b, info = Delong_test(y, a, b, return_ci=True, return_auc=True)
    assert info["method"] == "delong"
    se = math.sqrt(info["var_diff"])
    d = auc_b - auc_a
    return {"auroc_a": auc_a, "auroc_b": auc_b, "z": z, "p_value": p, "se": se, "ci95": [d - Z95 * se, d + Z95 * se]}


def _max_disagreement(ours, peer):
    keys = ("auroc_a", "auroc_b", "z", "p_value", "se")
    return max([abs(ours[k] - peer[k]) for k in keys] + [abs(x - q) for x, q in zip(ours["ci95"], peer["ci95"])])


@pytest.mark.parametrize("seed,ties,n", [(20, False, 40), (21, True, 40), (22, True, 300), (23, False, 1000)])
def test_delong_matches_mlstatkit(seed, ties, n):
    y, a, b = _case(n, seed, ties)
    ours = delong_test(y[:, 0], a[:, 0], b[:, 0])
    assert _max_disagreement(ours, _peer(y[:, 0], a[:, 0], b[:, 0])) < 1e-6


@pytest.fixture(scope="module")
def fisher_sample_run(sample_dir, tmp_path_factory):
    """The sample_run's configuration with Fisher vectors (16 Gaussians on 32 PCA dimensions)."""
    from conftest import SMALL_CONFIG
    from phow_baseline.config import BaselineConfig
    from phow_baseline.data.chestxray14 import MissingImagesWarning
    from phow_baseline.workflow.steps import run_baseline

    out = tmp_path_factory.mktemp("phow_fisher_run")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MissingImagesWarning)
        run_baseline(
            sample_dir,
            out,
            BaselineConfig(**SMALL_CONFIG, encoding="fisher", fv_components=16, fv_pca_dims=32),
            progress=False,
            n_bootstrap=50,
        )
    return out / "run"


@pytest.mark.slow
def test_sample_runs_bow_vs_fisher_match_mlstatkit(sample_run, fisher_sample_run, sample_dir, tmp_path):
    bow = sample_run[0] / "run"
    res = compare_runs(bow, fisher_sample_run, sample_dir, n_bootstrap=200)
    assert res["n_images"] == 59 and res["run_a"]["scores_file"] == "scores.csv"
    from phow_baseline.evaluation.rundir import read_predictions

    names, sa = read_predictions(bow / "scores.csv", res["labels"])
    names_b, sb = read_predictions(fisher_sample_run / "scores.csv", res["labels"])
    sb = sb[pd.Index(names_b).get_indexer(names)]
    y = read_truth(sample_dir, names, res["labels"])
    checked = 0
    for j, lab in enumerate(res["labels"]):
        e = res["per_class"][lab]
        if e["reason"] is not None:
            continue
        ours = dict(e["delong"], auroc_a=e["auroc_a"], auroc_b=e["auroc_b"])
        assert _max_disagreement(ours, _peer(y[:, j], sa[:, j], sb[:, j])) < 1e-6, lab
        checked += 1
    assert checked >= 10
    # the AUROCs are those of the runs' metrics.json
    m = json.loads((bow / "metrics.json").read_text())
    for lab in res["labels_in_mean"]:
        assert abs(res["per_class"][lab]["auroc_a"] - m["auroc"][lab]) < 1e-9
    csv, md = write_paired(res, tmp_path)
    assert len(pd.read_csv(csv)) == len(res["labels"]) + 1
    assert plot_paired_differences(res, tmp_path / "forest.png").startswith("AUROC difference B - A")


# --------------------------------------------------------------------------
# Edge cases
# --------------------------------------------------------------------------


def test_identical_runs_give_difference_zero_and_p_one():
    y, a, _ = _case(40, 30, ties=True, k=3)
    res = compare_scores(y, a, a, ["c0", "c1", "c2"], n_bootstrap=50)
    for e in [*res["per_class"].values(), res["mean"]]:
        assert e["delong"]["difference"] == 0 and e["delong"]["p_value"] == 1.0 and e["delong"]["se"] == 0
        assert e["delong"]["ci95"] == [0.0, 0.0]
        assert e["bootstrap"]["p_value"] == 1.0 and e["bootstrap"]["ci95"] == [0.0, 0.0]
    # a monotone transform ranks the images identically: the same
    assert compare_scores(y, a, np.exp(a), ["c0", "c1", "c2"], n_bootstrap=0)["mean"]["delong"]["p_value"] == 1.0


def test_a_class_without_positives_is_nan_with_a_reason_and_left_out_of_the_mean():
    y, a, b = _case(40, 31, k=3)
    y[:, 1] = 0
    y[:, 2] = 0
    y[5, 2] = 1  # one positive: AUROCs, but no DeLong variance
    res = compare_scores(y, a, b, ["c0", "c1", "c2"], n_bootstrap=40)
    e = res["per_class"]["c1"]
    assert e["reason"] == NO_POSITIVE and e["auroc_a"] is None and e["delong"]["p_value"] is None
    assert e["delong"]["ci95"] is None and e["bootstrap"]["n_used"] == 0 and e["bootstrap"]["p_value"] is None
    e = res["per_class"]["c2"]
    assert e["reason"].startswith(FEW_FOR_VARIANCE) and e["auroc_a"] is not None and e["delong"]["se"] is None
    assert res["labels_in_mean"] == ["c0"] and set(res["excluded_from_mean"]) == {"c1", "c2"}
    assert abs(res["mean"]["delong"]["p_value"] - res["per_class"]["c0"]["delong"]["p_value"]) < 1e-12
    json.dumps(res, allow_nan=False)  # JSON-ready: no NaN left
    text = format_paired(res)
    assert "c1: no positive image" in text and "without c1, c2" in text


def test_perfect_against_inverted_ranking_gives_p_zero():
    y = np.array([[1], [1], [1], [0], [0], [0]])
    s = np.arange(6.0)[::-1, None]
    r = delong_test(y[:, 0], s[:, 0], -s[:, 0])
    assert r["difference"] == -1.0 and r["se"] == 0.0 and r["p_value"] == 0.0


def test_input_errors_name_the_problem():
    y, a, b = _case(20, 32)
    with pytest.raises(ValueError, match="differ in shape"):
        paired_delong(y, a, b[:-1], ["c0"])
    with pytest.raises(ValueError, match="non-finite"):
        paired_delong(y, a, np.where(np.arange(20)[:, None] == 3, np.nan, b), ["c0"])
    with pytest.raises(ValueError, match="0/1"):
        paired_delong(y * 2, a, b, ["c0"])


# --------------------------------------------------------------------------
# The paired bootstrap
# --------------------------------------------------------------------------


def test_bootstrap_p_value_by_hand():
    assert bootstrap_p_value([0.1, 0.2, 0.3, -0.1]) == 0.5
    assert bootstrap_p_value([0.1, 0.2, 0.3, 0.4]) == 0.0
    assert bootstrap_p_value([0.0, 0.0, 0.2, 0.1]) == 1.0  # zeros count on both sides: 2 * 2/4
    assert bootstrap_p_value([-0.2, 0.1, np.nan, -0.3]) == pytest.approx(2 / 3)
    assert math.isnan(bootstrap_p_value([np.nan]))


def test_bootstrap_uses_the_same_draws_for_both_runs_and_the_evaluation():
    y, a, b = _case(50, 33, ties=True, k=2)
    labels = ["c0", "c1"]
    res = paired_bootstrap(y, a, b, labels, n_bootstrap=120, seed=4)
    diff = bootstrap_auroc(y, b, 120, seed=4) - bootstrap_auroc(y, a, 120, seed=4)
    for j, lab in enumerate(labels):
        d = diff[:, j][np.isfinite(diff[:, j])]
        assert res["per_class"][lab]["ci95"] == [np.percentile(d, 2.5), np.percentile(d, 97.5)]
        assert res["per_class"][lab]["n_used"] == len(d)
        assert res["per_class"][lab]["p_value"] == bootstrap_p_value(d)
    means = diff.mean(1)
    assert res["mean"]["ci95"] == pytest.approx([np.percentile(means, 2.5), np.percentile(means, 97.5)], abs=1e-15)
    assert res["mean"]["n_complete"] == 120


def test_bootstrap_counts_resamples_without_a_positive():
    y, a, b = _case(40, 34, k=2)
    y[:, 1] = 0
    y[7, 1] = 1  # a single positive: missing from about a third of the resamples
    res = paired_bootstrap(y, a, b, ["c0", "c1"], n_bootstrap=200, seed=0)
    w = np.concatenate(list(bootstrap_weights(40, 200, 0)))
    assert res["per_class"]["c1"]["n_used"] == int((w[:, 7] > 0).sum()) < 200
    assert res["per_class"]["c0"]["n_used"] == 200
    assert res["mean"]["n_complete"] == res["per_class"]["c1"]["n_used"] and res["mean"]["n_used"] == 200


def test_bootstrap_interval_agrees_with_delong_on_a_large_case():
    y, a, b = _case(800, 35)
    res = compare_scores(y, a, b, ["c0"], n_bootstrap=500, seed=1)
    d, bs = res["per_class"]["c0"]["delong"], res["per_class"]["c0"]["bootstrap"]
    width_d, width_b = d["ci95"][1] - d["ci95"][0], bs["ci95"][1] - bs["ci95"][0]
    assert abs(width_b / width_d - 1) < 0.2
    assert bs["difference"] == pytest.approx(d["difference"], abs=1e-12)


# --------------------------------------------------------------------------
# Run directories
# --------------------------------------------------------------------------

LABS = ("Atelectasis", "Effusion", "Mass")


def _names(n, start=0):
    return [f"{i:08d}_000.png" for i in range(start, start + n)]


def _write_runs(tmp_path, n=40, seed=40, labels_b=LABS, names_b=None, shuffle_b=True):
    y, a, b = _case(n, seed, k=len(LABS))
    names = _names(n)
    ra = tmp_path / "run_a"
    rb = tmp_path / "run_b"
    write_run_dir(
        ra, model_name="bow", kind="phow", split="test", names=names, y_true=y, scores=a, labels=LABS, n_bootstrap=0
    )
    nb = list(names_b or names)
    order = np.random.default_rng(seed).permutation(n) if shuffle_b else np.arange(n)
    cols = [LABS.index(lab) for lab in labels_b]
    write_run_dir(
        rb,
        model_name="fisher",
        kind="phow",
        split="test",
        names=[nb[i] for i in order],
        y_true=y[order][:, cols],
        scores=b[order][:, cols],
        labels=labels_b,
        n_bootstrap=0,
    )
    truth = pd.DataFrame(
        {
            "Image Index": names,
            "Finding Labels": [
                "|".join([lab for j, lab in enumerate(LABS) if y[i, j]]) or "No Finding" for i in range(n)
            ],
        }
    )
    return ra, rb, y, a, b, truth


def test_compare_runs_matches_the_arrays_whatever_the_row_order(tmp_path):
    ra, rb, y, a, b, truth = _write_runs(tmp_path)
    res = compare_runs(ra, rb, truth, n_bootstrap=60, seed=2)
    ref = compare_scores(y, a, b, LABS, name_a="bow", name_b="fisher", n_bootstrap=60, seed=2)
    for lab in LABS:
        for key in ("difference", "se", "p_value"):
            assert res["per_class"][lab]["delong"][key] == pytest.approx(ref["per_class"][lab]["delong"][key], abs=1e-9)
    assert res["mean"]["bootstrap"]["ci95"] == pytest.approx(ref["mean"]["bootstrap"]["ci95"], abs=1e-9)
    assert res["run_a"] == {"name": "bow", "path": str(ra), "scores_file": "predictions.csv"}
    # the labels from a metadata CSV, from a labels.csv in the run directory, and from a dataset object
    meta = tmp_path / "Data_Entry_2017_v2020.csv"
    truth.assign(**{"Patient ID": range(len(truth))}).to_csv(meta, index=False)
    for source in (meta, tmp_path):
        assert compare_runs(ra, rb, source, n_bootstrap=0)["mean"]["delong"] == res["mean"]["delong"]
    # write_run_dir wrote labels.csv: no labels source needed
    assert pd.read_csv(ra / "labels.csv").columns.tolist() == ["Image Index", *LABS]
    assert compare_runs(ra, rb, n_bootstrap=0)["mean"]["delong"] == res["mean"]["delong"]
    (ra / "labels.csv").unlink()
    pd.DataFrame(y, columns=list(LABS)).assign(**{"Image Index": _names(len(y))}).to_csv(rb / "labels.csv")
    assert compare_runs(ra, rb, n_bootstrap=0)["mean"]["delong"] == res["mean"]["delong"]

    class Dataset:
        def labels(self, names):
            from phow_baseline.data.chestxray14 import LABELS

            full = np.zeros((len(names), len(LABELS)), np.uint8)
            full[:, [LABELS.index(lab) for lab in LABS]] = y[[int(nm[:8]) for nm in names]]
            return full

    assert compare_runs(ra, rb, Dataset(), n_bootstrap=0)["mean"]["delong"] == res["mean"]["delong"]


def test_compare_runs_refuses_different_images_naming_both_runs(tmp_path):
    names_b = _names(38) + ["00000100_000.png", "00000101_000.png"]
    ra, rb, _, _, _, truth = _write_runs(tmp_path, names_b=names_b)
    with pytest.raises(ValueError, match="not scored on the same images") as err:
        compare_runs(ra, rb, truth)
    msg = str(err.value)
    assert str(ra) in msg and str(rb) in msg and "2 of 40 only in run_a" in msg and "00000038_000.png" in msg
    assert "2 of 40 only in run_b" in msg and "00000100_000.png" in msg


def test_compare_runs_refuses_runs_without_a_common_label(tmp_path):
    ra, rb, _, _, _, truth = _write_runs(tmp_path / "x", labels_b=("Mass",))
    assert compare_runs(ra, rb, truth, n_bootstrap=0)["labels"] == ["Mass"]  # the common ones
    (tmp_path / "y").mkdir()
    y, a, _ = _case(40, 41, k=1)
    write_run_dir(
        tmp_path / "y" / "a",
        model_name="a",
        kind="phow",
        split="test",
        names=_names(40),
        y_true=y,
        scores=a,
        labels=("Hernia",),
        n_bootstrap=0,
    )
    with pytest.raises(ValueError, match="no label in common") as err:
        compare_runs(tmp_path / "y" / "a", rb, truth)
    assert str(rb) in str(err.value) and "Hernia" in str(err.value)


def test_compare_runs_refuses_labels_other_than_the_evaluation_used(tmp_path):
    ra, rb, _, _, _, truth = _write_runs(tmp_path)
    wrong = truth.copy()
    wrong["Finding Labels"] = "No Finding"
    wrong.loc[:5, "Finding Labels"] = "Mass"
    with pytest.raises(ValueError, match="not those the run was evaluated with") as err:
        compare_runs(ra, rb, wrong)
    assert str(ra) in str(err.value) and "Atelectasis: 0 here" in str(err.value)
    with pytest.raises(ValueError, match="have no label there"):
        compare_runs(ra, rb, truth.iloc[:30])
    (ra / "labels.csv").unlink()
    (rb / "labels.csv").unlink()
    with pytest.raises(FileNotFoundError, match="labels.csv"):
        compare_runs(ra, rb)


def test_compare_run_dirs_against_the_first_or_all_pairs(tmp_path):
    ra, rb, y, a, b, truth = _write_runs(tmp_path)
    rc = tmp_path / "run_c"
    write_run_dir(
        rc,
        model_name="vlad",
        kind="phow",
        split="test",
        names=_names(40),
        y_true=y,
        scores=a + b,
        labels=LABS,
        n_bootstrap=0,
    )
    first = compare_run_dirs([ra, rb, rc], truth, n_bootstrap=0)
    assert [(r["run_a"]["name"], r["run_b"]["name"]) for r in first] == [("bow", "fisher"), ("bow", "vlad")]
    allp = compare_run_dirs([ra, rb, rc], truth, pairs="all", n_bootstrap=0)
    assert [(r["run_a"]["name"], r["run_b"]["name"]) for r in allp] == [
        ("bow", "fisher"),
        ("bow", "vlad"),
        ("fisher", "vlad"),
    ]
    with pytest.raises(ValueError, match="at least two"):
        compare_run_dirs([ra], truth)
    meta = tmp_path / "meta.csv"
    truth.assign(**{"Patient ID": range(len(truth))}).to_csv(meta, index=False)
    from_file = compare_run_dirs([ra, rb, rc], meta, n_bootstrap=0)
    assert [r["mean"]["delong"] for r in from_file] == [r["mean"]["delong"] for r in first]


def test_read_truth_errors_name_the_source(tmp_path):
    names = _names(3)
    frame = pd.DataFrame({"Image Index": names, "Finding Labels": ["Mass", "No Finding", "Mass|Effusion"]})
    assert read_truth(frame, names[::-1], ["Mass", "Effusion"]).tolist() == [[1, 1], [0, 0], [1, 0]]
    with pytest.raises(ValueError, match="not ChestX-ray14 findings"):
        read_truth(frame, names, ["Mass", "Lung cancer"])
    with pytest.raises(FileNotFoundError, match="nope"):
        read_truth(tmp_path / "nope", names)
    with pytest.raises(FileNotFoundError, match="no metadata CSV"):
        read_truth(tmp_path, names)
    (tmp_path / "labels.csv").write_text("Image Index,Mass\n00000000_000.png,2\n")
    with pytest.raises(ValueError, match="labels.csv: label columns must hold 0/1"):
        read_truth(tmp_path / "labels.csv", names[:1], ["Mass"])


# --------------------------------------------------------------------------
# Tables, files, figure
# --------------------------------------------------------------------------


def test_tables_and_files(tmp_path):
    y, a, b = _case(60, 50, k=3)
    y[:, 2] = 0
    res = compare_scores(y, a, b, ["c0", "c1", "c2"], name_a="bow", name_b="fisher", n_bootstrap=100)
    df = paired_frame([res, res])
    assert list(df.columns) == PAIRED_COLUMNS and len(df) == 8
    mean = df[df["label"] == "Mean"].iloc[0]
    assert mean["delong_p"] == pytest.approx(res["mean"]["delong"]["p_value"])
    assert "left out: c2" in mean["note"] and math.isnan(df.loc[2, "delong_p"])
    csv, md = write_paired(res, tmp_path / "out")
    back = pd.read_csv(csv)
    assert back["difference"].iloc[0] == pytest.approx(res["per_class"]["c0"]["delong"]["difference"], rel=1e-9)
    text = md.read_text()
    assert "## fisher vs bow" in text and "| **Mean** |" in text and "c2: no positive image" in text
    out = format_paired(res)
    assert out.splitlines()[0].startswith("Paired comparison on the same 60 images: B - A, A = bow, B = fisher")
    assert "Mean" in out and "bootstrap 95% CI" in out


def test_forest_plot_has_units_and_a_caption(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    y, a, b = _case(60, 51, k=3)
    y[:, 1] = 0
    res = compare_scores(y, a, b, ["c0", "c1", "c2"], name_a="bow", name_b="fisher", n_bootstrap=50)
    seen = {}
    orig = plt.Figure.savefig

    def spy(fig, *args, **kwargs):
        seen["xlabel"] = fig.axes[0].get_xlabel()
        seen["rows"] = [t.get_text() for t in fig.axes[0].get_yticklabels()]
        return orig(fig, *args, **kwargs)

    plt.Figure.savefig = spy
    try:
        caption = plot_paired_differences(res, tmp_path / "f" / "forest.png")
    finally:
        plt.Figure.savefig = orig
    assert (tmp_path / "f" / "forest.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert seen["xlabel"] == "AUROC difference, B - A (AUROC units)"
    assert seen["rows"] == ["Mean AUROC", "c2", "c1", "c0"]
    assert "AUROC units" in caption and "B = fisher" in caption and "50 resamples" in caption and "c1" in caption


# --------------------------------------------------------------------------
# The comparison folder and the compare command
# --------------------------------------------------------------------------


def test_paired_dir_round_trip_and_refusals(tmp_path):
    ra, rb, y, a, b, truth = _write_runs(tmp_path)
    results = compare_run_dirs([ra, rb], n_bootstrap=30)  # labels.csv of the runs: no labels source needed
    record = write_paired_dir(results, tmp_path / "cmp", pairs="first")
    files = sorted(p.name for p in (tmp_path / "cmp").iterdir())
    assert files == ["forest-1.png", "paired.csv", "paired.json", "paired.md"]
    back = read_paired_dir(tmp_path / "cmp")
    assert back == json.loads(json.dumps(record)) and back["pairs"] == "first"
    c = back["comparisons"][0]
    assert c["figure"] == "forest-1.png" and c["caption"].startswith("AUROC difference B - A")
    assert c["mean"]["delong"] == results[0]["mean"]["delong"]
    p = tmp_path / "cmp" / "paired.json"
    c["figure"] = "../run_a/roc.png"
    p.write_text(json.dumps(back))
    with pytest.raises(ValueError, match="leaves the folder"):
        read_paired_dir(tmp_path / "cmp")
    del back["comparisons"][0]["caption"]
    p.write_text(json.dumps(back))
    with pytest.raises(ValueError, match=r"paired\.json: comparison 0 lacks 'caption'"):
        read_paired_dir(tmp_path / "cmp")
    with pytest.raises(FileNotFoundError, match="not a comparison folder"):
        read_paired_dir(tmp_path)


def test_masked_labels_are_blank_and_refused_by_compare(tmp_path):
    y, a, b = _case(40, 3, k=2)
    mask = np.ones(y.shape, bool)
    mask[5:8, 1] = False
    kw = dict(kind="phow", split="test", names=_names(40), y_true=y, labels=LABS[:2], n_bootstrap=0, mask=mask)
    write_run_dir(tmp_path / "a", model_name="a", scores=a, **kw)
    write_run_dir(tmp_path / "b", model_name="b", scores=b, **kw)
    labels = pd.read_csv(tmp_path / "a" / "labels.csv")
    assert labels[LABS[1]].isna().sum() == 3 and labels[LABS[0]].notna().all()
    with pytest.raises(ValueError, match=r"labels\.csv: 3 blank label cell\(s\).*not supported"):
        compare_runs(tmp_path / "a", tmp_path / "b")


def _cli(*args):
    from click.testing import CliRunner

    from phow_baseline.cli import main

    return CliRunner().invoke(main, [str(a) for a in args])


def test_compare_command_prints_and_writes_the_paired_tests(tmp_path):
    ra, rb, y, a, b, truth = _write_runs(tmp_path)
    res = _cli("compare", ra, rb, "--n-bootstrap", 40, "--seed", 3, "--out", tmp_path / "cmp")
    assert res.exit_code == 0, res.output
    ref = compare_runs(ra, rb, n_bootstrap=40, seed=3)
    assert format_paired(ref) in res.output and "Wang2017_official" in res.output  # the paired table, the AUROC table
    assert "Paired comparison on the same 40 images: B - A, A = bow, B = fisher" in res.output
    out = tmp_path / "cmp"
    for f in ("comparison.md", "comparison.csv", "paired.csv", "paired.md", "paired.json", "forest-1.png"):
        assert (out / f).is_file(), f
    assert read_paired_dir(out)["comparisons"][0]["mean"] == json.loads(json.dumps(ref["mean"]))
    # all pairs of three runs, labels from a metadata CSV
    rc = tmp_path / "run_c"
    write_run_dir(
        rc, model_name="vlad", kind="phow", split="test", names=_names(40), y_true=y, scores=a + b, labels=LABS
    )
    meta = tmp_path / "meta.csv"
    truth.assign(**{"Patient ID": range(len(truth))}).to_csv(meta, index=False)
    res = _cli(
        "compare", ra, rb, rc, "--pairs", "all", "--n-bootstrap", 0, "--data-dir", meta, "--out", tmp_path / "c3"
    )
    assert res.exit_code == 0, res.output
    assert res.output.count("Paired comparison on the same 40 images") == 3
    assert sorted(p.name for p in (tmp_path / "c3").glob("forest-*.png")) == [f"forest-{k}.png" for k in (1, 2, 3)]
    # one run: the table alone
    res = _cli("compare", ra)
    assert res.exit_code == 0 and "Paired comparison" not in res.output and "Wang2017_official" in res.output


def test_compare_command_refuses_runs_on_other_images(tmp_path):
    ra, rb, *_ = _write_runs(tmp_path, names_b=_names(38) + ["00000100_000.png", "00000101_000.png"])
    res = _cli("compare", ra, rb, "--out", tmp_path / "cmp")
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert "not scored on the same images" in res.output and str(ra) in res.output and str(rb) in res.output
    assert "Wang2017_official" not in res.output and not (tmp_path / "cmp").exists()  # refused before any output
    res = _cli("compare", ra, rb, "--no-paired", "--out", tmp_path / "cmp")
    assert res.exit_code == 0 and "Paired comparison" not in res.output
    assert (tmp_path / "cmp" / "comparison.md").is_file() and not (tmp_path / "cmp" / "paired.json").exists()
    # a run directory written before labels.csv: the command says how to give the labels
    (ra / "labels.csv").unlink()
    res = _cli("compare", ra, rb)
    assert res.exit_code == 1 and f"{ra}: no labels.csv" in res.output and "--data-dir" in res.output
