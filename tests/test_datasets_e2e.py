"""The dataset protocol wired through the library and the CLI: run, evaluate and predict on each look-alike,
cross-dataset evaluation, the model directory's dataset record, masks, follow-up columns, the report.

The look-alike folders (:mod:`phow_baseline.data.lookalike`) hold SYNTHETIC phantom images in each publisher's
real file layout; they show that each dataset is read and scored end to end, nothing about accuracy on real
X-rays.  ChestX-ray14 itself stays covered by ``tests/test_data.py`` and ``tests/test_pipeline.py``.
"""

import json
import warnings

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from sklearn.metrics import roc_auc_score

from phow_baseline.cli import main as cli
from phow_baseline.config import NOT_MENTIONED_POLICIES, UNCERTAIN_POLICIES, BaselineConfig, ConfigError
from phow_baseline.data import (
    EVALUATION_POLICY,
    UNCERTAIN,
    lookalike,
    open_dataset,
)
from phow_baseline.data import protocol as data_protocol
from phow_baseline.data.chestxray14 import LABELS
from phow_baseline.data.chexpert import CHEXPERT_LABELS
from phow_baseline.data.padchest import PADCHEST_DEFAULT_LABELS
from phow_baseline.evaluation import read_metrics, write_run_dir
from phow_baseline.evaluation.roc import evaluate_scores
from phow_baseline.model import load_model
from phow_baseline.model.directory import dataset_record
from phow_baseline.report import write_report
from phow_baseline.workflow.steps import dataset_tag, describe_external, training_targets

#: The baseline at test size: 64-pixel images, 16 words (each run well under a minute on 2 cores).
TINY = [
    "--preset",
    "vlfeat",
    "--size",
    "64",
    "--n-words",
    "16",
    "--max-descriptors",
    "2000",
    "--vocab-images",
    "20",
    "--n-jobs",
    "1",
]
CSV_LABELS = ("Effusion", "Pneumothorax", "Cardiomegaly")


def invoke(args):
    """Run the CLI quietly; fail with its output when it exits non-zero."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # missing images / no patient column: not what these tests check
        res = CliRunner().invoke(cli, [*args, "--quiet"])
    assert res.exit_code == 0, res.output
    return res


def invoke_failing(args) -> str:
    """Run the CLI; it must fail with a one-line message (no traceback); return the output."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = CliRunner().invoke(cli, [*args, "--quiet"])
    assert res.exit_code != 0, res.output
    assert "Traceback" not in res.output
    return res.output


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """A look-alike folder of each kind, with its phantom images (a few seconds in all)."""
    t = tmp_path_factory.mktemp("e2e")
    return {
        "chexpert": lookalike.make_chexpert_lookalike(t / "chexpert", n_patients=30, n_valid=16, seed=2),
        "mimic": lookalike.make_mimic_lookalike(t / "mimic", n_patients=40, seed=3),
        "padchest": lookalike.make_padchest_lookalike(t / "padchest", n_patients=30, seed=4),
        "csv": lookalike.make_csv_lookalike(t / "csv", n_images=60, seed=5, labels=CSV_LABELS),
    }


# --------------------------------------------------------------------------
# Settings, masks, follow-up, the model's dataset record (fast)
# --------------------------------------------------------------------------


def test_config_dataset_settings_are_checked_and_round_trip(tmp_path):
    assert UNCERTAIN_POLICIES == data_protocol.UNCERTAIN_POLICIES  # config repeats the protocol's choices
    assert NOT_MENTIONED_POLICIES == data_protocol.NOT_MENTIONED_POLICIES
    c = BaselineConfig.from_preset(
        "vlfeat", dataset="auto", uncertain="ones", not_mentioned="ignore", frontal_only=False, test_fraction=0.3
    )
    assert BaselineConfig(**json.loads(json.dumps(c.to_dict()))) == c
    assert (
        BaselineConfig.from_preset("vlfeat").dataset == "chestxray14"
        and BaselineConfig.from_preset("vlfeat").uncertain == "zeros"
    )
    for bad, field in (
        (dict(dataset="CheXpert"), "dataset"),
        (dict(uncertain="maybe"), "uncertain"),
        (dict(not_mentioned="positive"), "not_mentioned"),
        (dict(frontal_only="yes"), "frontal_only"),
        (dict(test_fraction=0.95), "test_fraction"),
    ):
        with pytest.raises(ConfigError) as exc:
            BaselineConfig.from_preset("vlfeat", **bad)
        assert exc.value.field == field and field in str(exc.value)
    # a 0.1 config file (none of the new keys) reads with the defaults
    old = tmp_path / "config.json"
    d = BaselineConfig.from_preset("vlfeat").to_dict()
    for k in ("dataset", "frontal_only", "uncertain", "not_mentioned", "test_fraction"):
        d.pop(k)
    old.write_text(json.dumps(d))
    assert BaselineConfig.from_file(old) == BaselineConfig.from_preset("vlfeat")


def test_a_mask_leaves_cells_out_of_their_class_and_an_all_true_one_changes_nothing():
    rng = np.random.default_rng(0)
    y = (rng.random((90, 3)) < 0.4).astype(np.uint8)
    s = rng.random((90, 3)) + 0.6 * y
    mask = rng.random((90, 3)) < 0.75
    r = evaluate_scores(y, s, ["a", "b", "c"], n_bootstrap=50, mask=mask)
    for j, lab in enumerate("abc"):
        assert r["auroc"][lab] == pytest.approx(roc_auc_score(y[mask[:, j], j], s[mask[:, j], j]), abs=1e-12)
        assert r["n_scored"][lab] == mask[:, j].sum() and r["n_positive"][lab] == y[mask[:, j], j].sum()
    plain = evaluate_scores(y, s, ["a", "b", "c"], n_bootstrap=50)
    ones = evaluate_scores(y, s, ["a", "b", "c"], n_bootstrap=50, mask=np.ones_like(mask))
    assert ones["auroc"] == plain["auroc"] and ones["auroc_ci95"] == plain["auroc_ci95"] and "n_scored" not in ones
    assert r["auroc_ci95"]["a"] != plain["auroc_ci95"]["a"]  # the mask reaches the bootstrap too
    with pytest.raises(ValueError, match="give their label names"):
        evaluate_scores(y, s)


def test_follow_up_column_of_each_kind(folders, tmp_path, sample_dir):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cx = open_dataset(folders["chexpert"], work_dir=tmp_path)
        mimic = open_dataset(folders["mimic"], work_dir=tmp_path)
        pad = open_dataset(folders["padchest"], work_dir=tmp_path)
        nih = open_dataset(sample_dir)
    fu = cx.subgroups(["train/patient00001/study1/view1_frontal.jpg"])["follow_up"].tolist()
    assert fu == [0.0]  # study1 -> 0; study2 -> 1 (its only image is lateral, dropped: read all views)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cx_all = open_dataset(folders["chexpert"], work_dir=tmp_path, frontal_only=False)
    assert cx_all.subgroups(["train/patient00002/study2/view1_lateral.jpg"])["follow_up"].tolist() == [1.0]
    # MIMIC: the rank of the study by StudyDate (then StudyTime, equal here) within its subject
    meta = pd.read_csv(folders["mimic"] / "mimic-cxr-2.0.0-metadata.csv.gz", dtype=str)
    studies = meta.drop_duplicates(["subject_id", "study_id"]).sort_values(["subject_id", "StudyDate", "study_id"])
    rank = studies.groupby("subject_id").cumcount()
    expected = dict(zip(studies["study_id"].astype(int), rank.astype(float)))
    assert mimic.frame["follow_up"].tolist() == [expected[s] for s in mimic.frame["study"]]
    assert any(v > 0 for v in expected.values())
    assert pad.subgroups(pad.split_names("all")[:3])["follow_up"].isna().all()
    names = nih.split_names("all")
    sub = nih.subgroups(names)
    assert list(sub.columns) == ["patient", "sex", "age", "view", "follow_up"]
    meta = nih.source.metadata.set_index("Image Index").loc[names]
    np.testing.assert_array_equal(sub["follow_up"].to_numpy(), meta["Follow-up #"].to_numpy(float))


def test_a_csv_follow_up_column_is_read_and_a_bad_value_names_its_line(tmp_path):
    root = lookalike.make_csv_lookalike(tmp_path / "c", n_images=4, with_images=False)
    df = pd.read_csv(root / "dataset.csv", dtype=str, keep_default_na=False)
    df.insert(1, "follow_up", ["0", "1", "", "0"])
    df.to_csv(root / "dataset.csv", index=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = open_dataset(root, work_dir=tmp_path)
        fu = ds.subgroups(df["image"].tolist())["follow_up"].to_numpy()
    np.testing.assert_array_equal(fu, [0, 1, np.nan, 0])
    assert "follow_up" not in ds.labels
    df["follow_up"] = ["0", "x", "", "0"]
    df.to_csv(root / "dataset.csv", index=False)
    with pytest.raises(ValueError, match=r"dataset.csv: column 'follow_up', line 3: follow-up 'x'"):
        open_dataset(root, work_dir=tmp_path, warn=False)


def test_an_old_model_directory_means_chestxray14():
    assert dataset_record({}) == {"kind": "chestxray14", "labels": list(LABELS)}
    assert dataset_record({"labels": ["A", "B"]})["labels"] == ["A", "B"]
    rec = {"kind": "csv", "labels": ["A"], "label_policy": {"uncertain": "ones", "not_mentioned": "negative"}}
    assert dataset_record({"dataset": rec}) == rec
    with pytest.raises(ValueError, match="'dataset' should be an object"):
        dataset_record({"dataset": "csv"})


def test_training_refuses_a_policy_that_masks_labels_but_scoring_masks_uncertain_ones(folders, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = open_dataset(folders["chexpert"], work_dir=tmp_path)
    names = ds.split_names("train")
    assert (ds.label_codes(names) == UNCERTAIN).any()
    y = training_targets(ds, names, BaselineConfig.from_preset("vlfeat", uncertain="ones"))
    assert (y[ds.label_codes(names) == UNCERTAIN] == 1).all()
    with pytest.raises(ValueError, match=r"leaves \d+ label\(s\) .*\(--uncertain"):
        training_targets(ds, names, BaselineConfig.from_preset("vlfeat", uncertain="ignore"))
    _, mask = ds.targets(names, EVALUATION_POLICY)
    assert np.array_equal(~mask, ds.label_codes(names) == UNCERTAIN)
    assert dataset_tag(ds, "test") == "chexpert-test" and dataset_tag(object(), "test") == "test"


def test_a_0_1_chestxray14_object_still_goes_through_the_steps(sample_dir):
    from phow_baseline.data.chestxray14 import ChestXray14
    from phow_baseline.workflow.steps import as_protocol

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        old = ChestXray14(sample_dir, val_fraction=0.2, seed=3)
    names = old.split_names("train_val")
    np.testing.assert_array_equal(training_targets(old, names, BaselineConfig.from_preset("vlfeat")), old.labels(names))
    wrapped = as_protocol(old)
    assert wrapped.source is old and wrapped.kind == "chestxray14" and as_protocol(wrapped) is wrapped
    assert wrapped.split_names("val") == old.split_names("val")  # the carve as read, not read again


def test_describe_external_and_no_shared_label(folders, tmp_path):
    from phow_baseline.workflow.steps import external_labels

    class Stub:
        labels, dataset_kind = tuple(LABELS), "chestxray14"

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cx = open_dataset(folders["chexpert"], work_dir=tmp_path)
        csv = open_dataset(folders["csv"], work_dir=tmp_path)
    ext = external_labels(Stub(), cx)
    assert [p.shared for p in ext["pairs"]] == [
        "Atelectasis",
        "Cardiomegaly",
        "Effusion",
        "Pneumonia",
        "Pneumothorax",
        "Consolidation",
        "Edema",
    ]
    assert len(ext["dropped_model"]) == 7 and len(ext["dropped_data"]) == 7
    assert "Lung Lesion" in ext["why"]["Mass"]
    Stub.labels, Stub.dataset_kind = ("Lipoma",), "csv"
    with pytest.raises(ValueError, match=r"share no finding"):
        external_labels(Stub(), csv)
    assert describe_external({"auroc": {}}) == ""


# --------------------------------------------------------------------------
# The CLI: info, errors naming files and columns
# --------------------------------------------------------------------------


def test_info_reads_each_kind_detected_or_forced(folders, tmp_path):
    for kind, root in folders.items():
        out = invoke(["info", str(root), "--out-json", str(tmp_path / f"{kind}.json")]).output
        assert f"({kind})" in out
        summary = json.loads((tmp_path / f"{kind}.json").read_text())
        assert summary["kind"] == kind and summary["n_present"] > 0
    forced = invoke(["info", str(folders["csv"] / "dataset.csv"), "--dataset", "csv"]).output
    assert "(csv)" in forced
    msg = invoke_failing(["info", str(folders["csv"]), "--dataset", "chexpert"])
    assert "no CheXpert label file found (looked for train.csv, valid.csv)" in msg
    empty = tmp_path / "empty"
    empty.mkdir()
    msg = invoke_failing(["info", str(empty)])
    assert "cannot tell the dataset kind" in msg and "--dataset" in msg and "train.csv" in msg
    msg = invoke_failing(["info", str(empty), "--dataset", "nih"])
    assert "'nih' is not one of 'chestxray14', 'chexpert', 'csv', 'mimic', 'padchest'" in msg


def test_a_bad_csv_names_the_file_the_column_and_the_line(tmp_path):
    root = lookalike.make_csv_lookalike(tmp_path / "c", n_images=4, with_split=True, with_images=False)
    text = (root / "dataset.csv").read_text().splitlines()
    text[2] = text[2].replace(",train,", ",training,")
    (root / "dataset.csv").write_text("\n".join(text) + "\n")
    msg = invoke_failing(["info", str(root)])
    assert "dataset.csv: column 'split', line 3: split 'training'" in msg


def test_report_sets_internal_and_external_auroc_side_by_side(tmp_path):
    rng = np.random.default_rng(1)
    y = (rng.random((40, 14)) < 0.3).astype(np.uint8)
    own = write_run_dir(
        tmp_path / "own", model_name="M", kind="phow", split="test", names=[f"{i}.png" for i in range(40)],
        y_true=y, scores=rng.random((40, 14)) + y, labels=LABELS, n_bootstrap=0,
    )  # fmt: skip
    shared = ["Cardiomegaly", "Effusion"]
    ext = write_run_dir(
        tmp_path / "ext", model_name="M", kind="phow", split="test", names=[f"{i}.jpg" for i in range(40)],
        y_true=y[:, :2], scores=rng.random((40, 2)), labels=shared, n_bootstrap=0,
        extra={"dataset": {"kind": "chexpert"}, "external": {"dataset": "chexpert", "pairs": [
            ["Cardiomegaly", "Cardiomegaly"], ["Effusion", "Pleural Effusion"]], "dropped_model": ["Mass"],
            "dropped_data": ["Fracture"]}},
    )  # fmt: skip
    page = write_report([tmp_path / "own", tmp_path / "ext"], tmp_path / "report").read_text()
    assert "Internal vs external AUROC" in page
    diff = ext["auroc"]["Effusion"] - own["auroc"]["Effusion"]
    assert (
        f"<tr><td>Effusion</td><td>{own['auroc']['Effusion']:.3f}</td><td>{ext['auroc']['Effusion']:.3f}</td>"
        f"<td>{diff:+.3f}</td></tr>" in page
    )
    assert "Mass" in page and "Fracture" in page
    # a report of a non-ChestX-ray14 run alone shows no published ChestX-ray14 column
    alone = write_report([tmp_path / "ext"], tmp_path / "report2").read_text()

    def auroc_table(html):
        return html.split("<section id='auroc'>")[1].split("</section>")[0]

    assert "Wang2017_official" not in auroc_table(alone) and "Internal vs external" not in alone
    assert "Wang2017_official" in auroc_table(page)


# --------------------------------------------------------------------------
# run, evaluate and predict end to end on each look-alike
# --------------------------------------------------------------------------

#: kind -> (the labels the model must have, whether --dataset is given, DATA_DIR is the CSV file)
KINDS = {
    "chexpert": (CHEXPERT_LABELS, False),
    "mimic": (lookalike.MIMIC_LABELS, True),
    "padchest": (PADCHEST_DEFAULT_LABELS, False),
    "csv": (CSV_LABELS, True),
}


@pytest.mark.parametrize(
    "kind",
    # about 10 s each on 2 idle cores (CSV 3 s), up to 25 s under load: the two slowest are marked slow
    [pytest.param(k, marks=pytest.mark.slow) if k in ("chexpert", "mimic") else k for k in sorted(KINDS)],
)
def test_run_evaluate_and_predict_end_to_end(kind, folders, tmp_path):
    labels, force = KINDS[kind]
    root = folders[kind] / "dataset.csv" if kind == "csv" else folders[kind]
    dataset = ["--dataset", kind] if force else []
    out = tmp_path / "out"
    extra = ["--uncertain", "ones"] if kind == "chexpert" else []
    res = invoke(["run", str(root), "--out", str(out), *TINY, *dataset, *extra, "--n-bootstrap", "20"])
    m = read_metrics(out / "run")
    assert m["labels"] == list(labels) and m["dataset"]["kind"] == kind and "external" not in m
    assert "subgroups" in m  # the dataset's subgroup columns reached the run directory
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = open_dataset(root, kind=kind, work_dir=out / "work")
    pred = pd.read_csv(out / "run" / "predictions.csv")
    assert list(pred.columns) == ["Image Index", *labels]
    assert sorted(pred["Image Index"]) == ds.split_names("test")
    # the AUROC of each class is that of its scored cells: uncertain ones are left out (MIMIC's test split has some)
    codes = ds.label_codes(pred["Image Index"].tolist())
    y, mask = ds.targets(pred["Image Index"].tolist(), EVALUATION_POLICY)
    for j, lab in enumerate(labels):
        keep = mask[:, j]
        if m["auroc"][lab] is not None:
            assert m["auroc"][lab] == pytest.approx(roc_auc_score(y[keep, j], pred[lab][keep]), abs=1e-9), lab
    if (codes == UNCERTAIN).any():
        assert m["n_scored"] == {lab: int(mask[:, j].sum()) for j, lab in enumerate(labels)}
    # the model directory records the dataset
    meta = json.loads((out / "model" / "model.json").read_text())
    assert meta["labels"] == list(labels) and meta["dataset"]["kind"] == kind
    assert meta["dataset"]["labels"] == list(labels) and meta["dataset"]["frontal_only"] is True
    assert meta["dataset"]["label_policy"]["uncertain"] == ("ones" if kind == "chexpert" else "zeros")
    model = load_model(out / "model")
    assert model.labels == tuple(labels) and model.dataset_kind == kind
    # its caches carry the kind; ChestX-ray14's keep their old names (tests/test_pipeline.py)
    assert sorted(p.name for p in (out / "work").glob("images-*")) == [
        f"images-{kind}-test-64-global",
        f"images-{kind}-train_val-64-global",
    ]
    assert "model:" in res.output
    # evaluate on the same dataset: the same figures as the run (same split, same work folder)
    again = invoke(
        ["evaluate", str(out / "model"), str(root), *dataset, "--work", str(out / "work"), "--out",
         str(tmp_path / "again"), "--n-bootstrap", "20"]
    )  # fmt: skip
    m2 = read_metrics(tmp_path / "again")
    assert m2["auroc"] == m["auroc"] and "cross-dataset" not in again.output
    # predict reads the dataset folder through the protocol; its columns are the model's labels
    invoke(["predict", str(out / "model"), str(root), "--dataset", kind, "--out-csv", str(tmp_path / "p.csv")])
    p = pd.read_csv(tmp_path / "p.csv")
    assert list(p.columns) == ["Image Index", *labels]
    assert sorted(p["Image Index"]) == ds.split_names("all")


def test_refused_uncertain_policy_stops_the_run_before_any_work(folders, tmp_path):
    msg = invoke_failing(
        ["run", str(folders["chexpert"]), "--out", str(tmp_path / "o"), *TINY, "--uncertain", "ignore"]
    )
    assert "uncertain='ignore'" in msg and "--uncertain" in msg
    assert not list((tmp_path / "o" / "work").glob("images-*"))


@pytest.mark.slow
def test_cross_dataset_phantom_model_on_a_chexpert_lookalike(tmp_path):
    """Trained on a ChestX-ray14-shaped phantom, scored on a CheXpert-shaped one drawn with the same findings."""
    phantom = tmp_path / "phantom"
    invoke(["phantom", str(phantom), "--patients", "160", "--size", "64", "--followups", "0"])
    chexpert = lookalike.make_chexpert_lookalike(tmp_path / "cx", n_patients=0, n_valid=60, size=64, seed=1)
    out = tmp_path / "out"
    tiny = [*TINY, "--n-words", "32", "--max-descriptors", "4800", "--vocab-images", "40", "--n-jobs", "2"]
    invoke(["run", str(phantom), "--out", str(out), *tiny, "--n-bootstrap", "20"])
    res = invoke(
        ["evaluate", str(out / "model"), str(chexpert), "--work", str(out / "work"), "--out", str(tmp_path / "ext"),
         "--n-bootstrap", "20"]
    )  # fmt: skip
    m = read_metrics(tmp_path / "ext")
    shared = ["Atelectasis", "Cardiomegaly", "Effusion", "Pneumonia", "Pneumothorax", "Consolidation", "Edema"]
    assert m["labels"] == shared and m["n_test"] == 61
    ext = m["external"]
    assert ext["dataset"] == "chexpert" and ext["model_dataset"] == "chestxray14"
    assert ["Effusion", "Pleural Effusion"] in ext["pairs"]
    assert ext["dropped_model"] == [
        "Infiltration",
        "Mass",
        "Nodule",
        "Emphysema",
        "Fibrosis",
        "Pleural_Thickening",
        "Hernia",
    ]
    assert set(ext["dropped_data"]) == {
        "No Finding",
        "Enlarged Cardiomediastinum",
        "Lung Opacity",
        "Lung Lesion",
        "Pleural Other",
        "Fracture",
        "Support Devices",
    }
    assert "dropped, the model's labels not in chexpert: Infiltration, Mass" in res.output
    assert "Effusion = Pleural Effusion" in res.output
    for lab in ("Cardiomegaly", "Effusion", "Pneumothorax"):
        assert m["auroc"][lab] > 0.8, (lab, m["auroc"])
    pred = pd.read_csv(tmp_path / "ext" / "predictions.csv")
    assert list(pred.columns) == ["Image Index", *shared]
    # the report sets the internal and the external AUROC side by side
    page = write_report([out / "run", tmp_path / "ext"], tmp_path / "report").read_text()
    table = page.split("<table class='external'>")[1].split("</table>")[0]
    assert [r.split("</td>")[0] for r in table.split("<tr><td>")[1:]] == shared


@pytest.mark.slow
@pytest.mark.cnn
def test_the_cnn_takes_its_outputs_from_the_dataset_and_scores_another_one(folders, tmp_path):
    from phow_baseline.cnn.run import evaluate_on_dataset, train_on_dataset
    from phow_baseline.cnn.train import CnnConfig

    cfg = CnnConfig(
        backbone="densenet121", epochs=1, max_steps_per_epoch=2, cache_size=64, resize=64, crop=56, batch_size=8,
        device="cpu", amp=False, dataset="csv",
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        train_on_dataset(folders["csv"], tmp_path / "m", cfg, progress=False)
    model = load_model(tmp_path / "m")
    assert model.labels == CSV_LABELS and model.dataset_kind == "csv"
    assert model.model.classifier.out_features == len(CSV_LABELS)
    m = evaluate_on_dataset(tmp_path / "m", folders["csv"], tmp_path / "own", n_bootstrap=0, progress=False)
    assert m["labels"] == list(CSV_LABELS) and "external" not in m
    ext = evaluate_on_dataset(
        tmp_path / "m", folders["chexpert"], tmp_path / "ext", n_bootstrap=0, progress=False, dataset="chexpert"
    )
    assert ext["labels"] == list(CSV_LABELS) and ext["external"]["dataset"] == "chexpert"
    assert ["Effusion", "Pleural Effusion"] in ext["external"]["pairs"]
    assert "Lung Opacity" in ext["external"]["dropped_data"] and ext["external"]["dropped_model"] == []
