"""The dataset protocol and its adapters, on look-alike folders of each real format and on the NIH sample."""

import csv
import gzip
import json
import warnings

import numpy as np
import pandas as pd
import pytest

from phow_baseline.data import lookalike
from phow_baseline.data.chestxray14 import LABELS, ChestXray14, ChestXray14Dataset, format_summary
from phow_baseline.data.chexpert import CHEXPERT_LABELS, CheXpert
from phow_baseline.data.csv_dataset import CsvDataset, NoPatientColumnWarning
from phow_baseline.data.label_map import PADCHEST_TERMS, SYNONYMS, label_key, shared_labels, shared_name, why_not_shared
from phow_baseline.data.mimic import MimicCXR
from phow_baseline.data.padchest import PADCHEST_DEFAULT_LABELS, PadChest, parse_label_list
from phow_baseline.data.protocol import (
    DATASETS,
    EVALUATION_POLICY,
    NEGATIVE,
    NOT_MENTIONED,
    POSITIVE,
    UNCERTAIN,
    ChestDataset,
    DatasetError,
    LabelPolicy,
    MissingImagesWarning,
    detect_kind,
    get_dataset,
    normalise_age,
    normalise_sex,
    normalise_view,
    open_dataset,
    patient_split,
    register_dataset,
    split_file_name,
)

P, N, U, B = POSITIVE, NEGATIVE, UNCERTAIN, NOT_MENTIONED


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """One look-alike folder per format (built once: a fraction of a second)."""
    t = tmp_path_factory.mktemp("lookalikes")
    return {
        "chexpert": lookalike.make_chexpert_lookalike(t / "chexpert"),
        "mimic": lookalike.make_mimic_lookalike(t / "mimic"),
        "padchest": lookalike.make_padchest_lookalike(t / "padchest"),
        "csv": lookalike.make_csv_lookalike(t / "csv"),
        "csv_pipe": lookalike.make_csv_lookalike(t / "csv_pipe", style="pipe", with_split=True),
    }


def _sexes(sub: pd.DataFrame) -> list:
    return [None if pd.isna(v) else v for v in sub["sex"]]


def _row(ds: ChestDataset, name: str) -> dict:
    return dict(zip(ds.labels, ds.label_codes([name])[0].tolist()))


# --------------------------------------------------------------------------
# Label policy, subgroup columns, seeded split
# --------------------------------------------------------------------------


def test_label_policy_turns_codes_into_targets_and_mask_as_documented():
    codes = np.array([[P, N, U, B]], np.int8)
    expect = {  # (uncertain, not_mentioned): (targets, mask)
        ("zeros", "negative"): ([1, 0, 0, 0], [1, 1, 1, 1]),  # U-Zeros
        ("ones", "negative"): ([1, 0, 1, 0], [1, 1, 1, 1]),  # U-Ones
        ("ignore", "negative"): ([1, 0, 0, 0], [1, 1, 0, 1]),  # U-Ignore
        ("zeros", "ignore"): ([1, 0, 0, 0], [1, 1, 1, 0]),
        ("ones", "ignore"): ([1, 0, 1, 0], [1, 1, 1, 0]),
        ("ignore", "ignore"): ([1, 0, 0, 0], [1, 1, 0, 0]),
    }
    for (u, nm), (t, m) in expect.items():
        y, mask = LabelPolicy(u, nm).apply(codes)
        assert y.dtype == np.uint8 and mask.dtype == bool
        assert y[0].tolist() == t and mask[0].astype(int).tolist() == m, (u, nm)
    assert LabelPolicy.from_dict(LabelPolicy("ones", "ignore").to_dict()) == LabelPolicy("ones", "ignore")
    assert EVALUATION_POLICY.uncertain == "ignore"
    with pytest.raises(ValueError, match="uncertain='maybe'"):
        LabelPolicy("maybe")
    with pytest.raises(ValueError, match="not_mentioned"):
        LabelPolicy("zeros", "positive")
    with pytest.raises(ValueError, match="label codes"):
        LabelPolicy().apply(np.array([[2]]))


def test_subgroup_columns_are_normalised():
    assert normalise_sex(["M", "Male", "female", "F", "Unknown", "O", "", None]).tolist() == [
        "M",
        "M",
        "F",
        "F",
        None,
        None,
        None,
        None,
    ]
    age = normalise_age([58, "058Y", "006M", "148", "None", "", 12.5, -1])
    np.testing.assert_allclose(age, [58, 58, 0.5, np.nan, np.nan, np.nan, 12.5, np.nan])
    views = ["PA", "ap", "L", "LL", "AP_horizontal", "COSTAL", "", "UNK", "xtable  lateral"]
    assert normalise_view(views).tolist() == [
        "PA",
        "AP",
        "LATERAL",
        "LATERAL",
        "AP_SUPINE",
        "OTHER",
        "UNKNOWN",
        "UNKNOWN",
        "LATERAL",
    ]


def test_patient_split_keeps_patients_whole_and_is_seeded():
    patients = np.repeat([f"p{i}" for i in range(200)], np.arange(200) % 3 + 1)
    s = patient_split(patients, 0.1, 0.2, seed=3)
    assert set(s) == set(patients) and set(s.values()) == {"train", "val", "test"}
    per_image = np.array([s[p] for p in patients])
    n = len(patients)
    # each part reaches its share of images with at most one patient (<= 3 images) more
    assert round(0.2 * n) <= (per_image == "test").sum() <= round(0.2 * n) + 3
    assert round(0.1 * n) <= (per_image == "val").sum() <= round(0.1 * n) + 3
    assert patient_split(patients, 0.1, 0.2, seed=3) == s
    assert patient_split(patients, 0.1, 0.2, seed=4) != s
    with pytest.raises(ValueError, match="sum below 1"):
        patient_split(patients, 0.5, 0.5)


def test_seeded_split_is_written_read_back_and_checked(folders, tmp_path):
    work = tmp_path / "work"
    ds = PadChest(folders["padchest"], work_dir=work, frontal_only=False)
    f = work / split_file_name("padchest", 0.1, 0.2, 0)
    assert ds.split_file == f and f.is_file()
    rec = json.loads(f.read_text())
    listed = pd.read_csv(next(folders["padchest"].glob("PADCHEST_*.csv")), dtype=str)["PatientID"].nunique()
    assert rec["kind"] == "padchest" and rec["seed"] == 0 and rec["n_patients"] == listed  # every listed patient
    assert set(rec["val"]) | set(rec["test"]) <= set(map(str, ds.frame["patient"]))
    # the next call reads the file: move a train patient to test by hand and see it followed
    train_patient = str(ds.frame.loc[ds.frame["split"] == "train", "patient"].iloc[0])
    rec["test"].append(train_patient)
    f.write_text(json.dumps(rec))
    again = PadChest(folders["padchest"], work_dir=work, frontal_only=False)
    assert set(again.frame.loc[again.frame["patient"] == train_patient, "split"]) == {"test"}
    # another seed is another file; no work folder writes nothing
    other_seed = PadChest(folders["padchest"], work_dir=work, seed=1)
    assert other_seed.split_file.name == split_file_name("padchest", 0.1, 0.2, 1)
    assert PadChest(folders["padchest"]).split_file is None
    # a file made for other patients is refused, naming it
    rec["patients_sha256"] = "0" * 64
    f.write_text(json.dumps(rec))
    with pytest.raises(DatasetError, match=f"{f.name}.*delete the file"):
        PadChest(folders["padchest"], work_dir=work)


# --------------------------------------------------------------------------
# Registry and detection
# --------------------------------------------------------------------------


def test_registry_lists_the_kinds_and_refuses_clashes():
    assert get_dataset("chexpert") is CheXpert
    assert {"chestxray14", "chexpert", "mimic", "padchest", "csv"} <= set(DATASETS)
    with pytest.raises(ValueError, match="unknown dataset kind 'nih'.*chexpert"):
        get_dataset("nih")

    class Other(ChestDataset):
        kind = "chexpert"

    with pytest.raises(ValueError, match="already registered"):
        register_dataset(Other)
    Other.kind = "Bad Name"
    with pytest.raises(ValueError, match="lower-case identifier"):
        register_dataset(Other)


def test_detection(folders, tmp_path):
    assert detect_kind(folders["chexpert"]) == ("chexpert", folders["chexpert"])
    assert detect_kind(folders["chexpert"].parent) == ("chexpert", folders["chexpert"])  # the folder above the release
    assert detect_kind(folders["mimic"])[0] == "mimic"
    assert detect_kind(folders["padchest"])[0] == "padchest"
    assert detect_kind(folders["csv"])[0] == "csv"
    assert detect_kind(folders["csv"] / "dataset.csv") == ("csv", folders["csv"] / "dataset.csv")
    with pytest.raises(
        DatasetError,
        match="cannot tell.*Data_Entry_2017_v2020.csv.*train.csv.*dataset.csv.*"
        "mimic-cxr-2.0.0-metadata.csv.gz.*PADCHEST_chest_x_ray",
    ):
        detect_kind(tmp_path)
    (tmp_path / "dataset.csv").write_text("image,A\n")
    (tmp_path / "Data_Entry_2017.csv").write_text("Image Index\n")
    with pytest.raises(DatasetError, match="ambiguous.*chestxray14.*csv"):
        open_dataset(tmp_path)
    with pytest.raises(DatasetError, match="not found"):
        detect_kind(tmp_path / "nowhere")
    assert isinstance(open_dataset(folders["chexpert"].parent, kind="chexpert"), CheXpert)


# --------------------------------------------------------------------------
# ChestX-ray14: today's data layer, unchanged, through the protocol
# --------------------------------------------------------------------------


def test_chestxray14_adapter_gives_todays_labels_splits_and_boxes(sample_dir):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MissingImagesWarning)
        old = ChestXray14(sample_dir)
    with pytest.warns(MissingImagesWarning, match=r"test: 25537 of 25596 missing"):
        ds = open_dataset(sample_dir)
    assert isinstance(ds, ChestXray14Dataset) and ds.kind == "chestxray14" and ds.labels == LABELS
    for split in ("train_val", "train", "val", "test", "all"):
        assert ds.split_names(split, present_only=False) == old.split_names(split, present_only=False), split
        names = old.split_names(split)
        assert ds.split_names(split) == names, split
        y, mask = ds.targets(names)
        np.testing.assert_array_equal(y, old.labels(names))
        assert mask.all()
        np.testing.assert_array_equal(ds.patients(names), old.patients(names))
        assert [ds.image_path(n) for n in names] == [old.image_path(n) for n in names]
    assert {s: (c.listed, c.present) for s, c in ds.counts().items()} == {
        s: (c.listed, c.present) for s, c in old.counts().items()
    }
    pd.testing.assert_frame_equal(ds.boxes(), old.boxes())
    pd.testing.assert_frame_equal(ds.boxes(size=256), old.boxes(size=256))
    assert ds.describe() == format_summary(old.summary())
    sub = ds.subgroups(old.split_names("all"))
    assert set(sub["sex"]) == {"M", "F"} and set(sub["view"]) <= {"PA", "AP"} and sub["age"].notna().all()
    assert not ds.dropped and ds.official_split


# --------------------------------------------------------------------------
# CheXpert
# --------------------------------------------------------------------------


def _chexpert_reference(path):
    """The codes of a CheXpert CSV read independently: 1.0/0.0/-1.0/blank, then the No Finding rule."""
    code = {"1.0": P, "0.0": N, "-1.0": U, "": B}
    out = {}
    with open(path, newline="") as fh:
        for r in csv.DictReader(fh):
            c = {l: code[r[l]] for l in CHEXPERT_LABELS}
            if c["No Finding"] == P:
                c = {l: (N if v == B and l not in ("No Finding", "Support Devices") else v) for l, v in c.items()}
            out[r["Path"].split("/", 1)[1]] = (c, r["Frontal/Lateral"])
    return out


def test_chexpert_labels_views_and_splits(folders, tmp_path):
    root = folders["chexpert"]
    ds = CheXpert(root, work_dir=tmp_path)
    assert ds.labels == CHEXPERT_LABELS
    ref = {**_chexpert_reference(root / "train.csv"), **_chexpert_reference(root / "valid.csv")}
    frontal = sorted(n for n, (_, fl) in ref.items() if fl == "Frontal")
    assert ds.split_names("all") == frontal  # laterals left out by default
    for n in frontal:
        assert _row(ds, n) == ref[n][0], n
    # the fixed rows: the release prefix dropped, No Finding's blanks negative but Support Devices'
    nf = _row(ds, "train/patient00001/study1/view1_frontal.jpg")
    assert nf["No Finding"] == P and nf["Cardiomegaly"] == N and nf["Support Devices"] == B
    r2 = _row(ds, "train/patient00002/study1/view1_frontal.jpg")
    assert (r2["Cardiomegaly"], r2["Pleural Effusion"], r2["Edema"], r2["Atelectasis"]) == (P, U, N, B)
    sub = ds.subgroups(["train/patient00002/study1/view1_frontal.jpg", "valid/patient64541/study1/view1_frontal.jpg"])
    assert _sexes(sub) == [None, "M"] and sub["view"].tolist() == ["PA", "AP"]
    assert sub["age"].tolist() == [87.0, 73.0] and sub["patient"].tolist() == ["patient00002", "patient64541"]
    # valid.csv is the test split; train.csv is carved patient-wise, the carve kept on disk
    assert all(n.startswith("valid/") for n in ds.split_names("test"))
    assert all(n.startswith("train/") for n in ds.split_names("train_val"))
    tr, va = set(ds.patients(ds.split_names("train"))), set(ds.patients(ds.split_names("val")))
    assert va and not tr & va
    assert ds.split_file == tmp_path / split_file_name("chexpert", 0.1, 0.0, 0) and ds.split_file.is_file()
    # the uncertain Pleural Effusion of patient00002 under each policy
    j = ds.labels.index("Pleural Effusion")
    name = ["train/patient00002/study1/view1_frontal.jpg"]
    assert ds.targets(name, LabelPolicy("ones"))[0][0, j] == 1
    assert ds.targets(name, LabelPolicy("zeros"))[0][0, j] == 0
    assert not ds.targets(name, LabelPolicy("ignore"))[1][0, j]
    # laterals when asked, with their view; blanks kept blank without the No Finding rule
    all_views = CheXpert(root, frontal_only=False, no_finding_negatives=False)
    assert all_views.subgroups(["train/patient00002/study2/view1_lateral.jpg"])["view"].tolist() == ["LATERAL"]
    assert _row(all_views, "train/patient00001/study1/view1_frontal.jpg")["Cardiomegaly"] == B
    assert "view LATERAL (frontal_only)" in ds.dropped
    assert all(ds.image_path(n).is_file() for n in ds.split_names("all"))
    sel = CheXpert(root, labels=["Edema", "Cardiomegaly"])  # a subset, in the order asked
    names = ds.split_names("all")
    np.testing.assert_array_equal(sel.label_codes(names), ds.label_codes(names)[:, [5, 2]])
    with pytest.raises(DatasetError, match=r"unknown label\(s\) \['Effusion'\]; the chexpert labels are"):
        CheXpert(root, labels=["Effusion"])


def test_chexpert_full_release_folder_and_valid_only(tmp_path):
    root = lookalike.make_chexpert_lookalike(tmp_path / "a", release="CheXpert-v1.0", with_images=False)
    with pytest.warns(MissingImagesWarning, match="missing"):
        ds = open_dataset(tmp_path / "a")
    assert ds.root == root and ds.split_names("all", present_only=False)[0].startswith("train/patient")
    (root / "train.csv").unlink()
    only_valid = CheXpert(root, warn=False)
    assert only_valid.counts()["train_val"].listed == 0 and only_valid.counts()["test"].listed == 5


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda t: t.replace(",1.0,", ",2.0,", 1), r"train.csv: column '.*', line \d+: label value '2.0'"),
        (lambda t: t.replace("AP/PA", "APPA", 1), r"train.csv: CheXpert label file lacks column\(s\) \['AP/PA'\]"),
        (lambda t: t.replace("patient00002/study1", "p2/s1", 1), r"train.csv: column 'Path', line 4"),
    ],
)
def test_chexpert_bad_files_name_the_file_and_column(tmp_path, edit, message):
    root = lookalike.make_chexpert_lookalike(tmp_path, with_images=False)
    p = root / "train.csv"
    p.write_text(edit(p.read_text()))
    with pytest.raises(DatasetError, match=message):
        CheXpert(root, warn=False)


# --------------------------------------------------------------------------
# MIMIC-CXR-JPG
# --------------------------------------------------------------------------


def test_mimic_labels_per_study_official_split_and_views(folders):
    ds = MimicCXR(folders["mimic"])
    assert ds.labels == lookalike.MIMIC_LABELS
    names = ds.split_names("all")
    assert {"fixed-1", "fixed-3", "fixed-6"} <= set(names)
    assert not {"fixed-2", "fixed-4", "fixed-5"} & set(names)  # lateral, blank view, no label row
    assert ds.dropped["study without a label row"] == 1 and ds.dropped["view LATERAL (frontal_only)"] >= 1
    r1 = _row(ds, "fixed-1")
    assert (r1["Pleural Effusion"], r1["Edema"], r1["Cardiomegaly"]) == (P, U, B)
    r3 = _row(ds, "fixed-3")
    assert r3["No Finding"] == P and r3["Pneumothorax"] == N and r3["Support Devices"] == B
    r6 = _row(ds, "fixed-6")
    assert (r6["Pneumothorax"], r6["Cardiomegaly"], r6["Edema"]) == (P, N, B)
    assert "fixed-3" in ds.split_names("val") and "fixed-6" in ds.split_names("test")
    assert "fixed-1" in ds.split_names("train")
    for part in ("train", "val", "test"):  # the official split is patient-wise
        others = {p for q in ("train", "val", "test") if q != part for p in ds.patients(ds.split_names(q))}
        assert not set(ds.patients(ds.split_names(part))) & others
    assert ds.image_path("fixed-1") == folders["mimic"] / "files/p10/p10000032/s50414267/fixed-1.jpg"
    sub = ds.subgroups(["fixed-1", "fixed-3"])
    assert sub["sex"].tolist() == ["F", "M"] and sub["age"].tolist() == [52.0, 86.0]
    assert sub["patient"].tolist() == [10000032, 10000764]
    with_all = MimicCXR(folders["mimic"], frontal_only=False)
    assert with_all.subgroups(["fixed-2", "fixed-4"])["view"].tolist() == ["LATERAL", "UNKNOWN"]
    # the U-Ignore scoring policy masks fixed-1's uncertain Edema
    y, mask = ds.targets(["fixed-1"], EVALUATION_POLICY)
    assert not mask[0, ds.labels.index("Edema")] and y[0, ds.labels.index("Pleural Effusion")] == 1


def test_mimic_without_patients_table_and_bad_files(tmp_path):
    root = lookalike.make_mimic_lookalike(tmp_path, with_patients=False, with_images=False)
    ds = MimicCXR(root, warn=False)
    assert ds.frame["sex"].isna().all() and ds.frame["age"].isna().all()
    with pytest.raises(DatasetError, match="no MIMIC-CXR-JPG negbio label file found.*mimic-cxr-2.0.0-negbio.csv.gz"):
        MimicCXR(root, labeler="negbio")
    p = root / "mimic-cxr-2.0.0-split.csv.gz"
    with gzip.open(p, "rt") as fh:
        text = fh.read()
    with gzip.open(p, "wt") as fh:
        fh.write(text.replace(",validate", ",valid", 1))
    with pytest.raises(DatasetError, match=r"split.csv.gz: column 'split': unknown value\(s\) \['valid'\]"):
        MimicCXR(root, warn=False)


# --------------------------------------------------------------------------
# PadChest
# --------------------------------------------------------------------------


def test_padchest_label_lists_projections_and_ages(folders):
    ds = PadChest(folders["padchest"])
    assert ds.labels == PADCHEST_DEFAULT_LABELS == LABELS
    names = set(ds.split_names("all"))
    assert {"fixed-1.png", "fixed-3.png", "fixed-4.png", "fixed-6.png"} <= names
    assert not {"fixed-2.png", "fixed-5.png"} & names  # lateral; blank Labels
    assert ds.dropped["no Labels list"] == 1
    pos = lambda n: sorted(l for l, c in _row(ds, n).items() if c == P)  # noqa: E731
    assert pos("fixed-1.png") == ["Cardiomegaly", "Effusion"]
    assert pos("fixed-3.png") == []  # 'normal'
    assert pos("fixed-4.png") == ["Effusion"]  # loculated: yes; subcutaneous emphysema: no
    assert pos("fixed-6.png") == ["Nodule"]  # mixed quotes
    assert set(ds.label_codes(sorted(names)).ravel()) <= {P, N}  # no uncertain, nothing unmentioned
    sub = ds.subgroups(["fixed-1.png", "fixed-3.png", "fixed-4.png"])
    assert _sexes(sub) == ["F", None, "M"] and sub["view"].tolist() == ["PA", "PA", "AP_SUPINE"]
    np.testing.assert_allclose(sub["age"], [2014 - 1939, np.nan, 2016 - 1950])
    assert ds.image_path("fixed-1.png") == folders["padchest"] / "0" / "fixed-1.png"
    assert not ds.official_split
    raw = PadChest(folders["padchest"], labels=["Emphysema", "subcutaneous emphysema", "air trapping"])
    assert _row(raw, "fixed-4.png") == {"Emphysema": N, "subcutaneous emphysema": P, "air trapping": N}
    assert _row(raw, "fixed-6.png")["air trapping"] == P


def test_padchest_label_list_parser_and_errors(tmp_path):
    assert parse_label_list("['pleural effusion', 'cardiomegaly']") == ["pleural effusion", "cardiomegaly"]
    assert parse_label_list("[' Pleural Effusion ', '', \"COPD signs\"]") == ["pleural effusion", "copd signs"]
    assert parse_label_list("['normal', 'kyphosis'']") == ["normal", "kyphosis"]  # a stray quote
    assert parse_label_list("") is None and parse_label_list(float("nan")) is None
    with pytest.raises(DatasetError, match=r"f.csv: column 'Labels', line 7: 'pleural effusion'"):
        parse_label_list("pleural effusion", "f.csv", 7)
    root = lookalike.make_padchest_lookalike(tmp_path, gz=True, with_images=False)
    assert PadChest(root, warn=False).sources["labels"].name.endswith(".csv.gz")
    p = next(root.glob("*.csv.gz"))
    with gzip.open(p, "rt") as fh:
        text = fh.read()
    with gzip.open(p, "wt") as fh:
        fh.write(text.replace(",['normal'],", ",normal,", 1))
    with pytest.raises(DatasetError, match=r"csv.gz: column 'Labels', line 4: 'normal' is not a list"):
        PadChest(root, warn=False)


# --------------------------------------------------------------------------
# Plain CSV
# --------------------------------------------------------------------------


def test_csv_one_column_per_label(folders, tmp_path):
    ds = open_dataset(folders["csv"], work_dir=tmp_path)
    assert ds.labels == ("Effusion", "Pneumothorax", "Cardiomegaly") and not ds.official_split
    code = {"1": P, "0": N, "-1": U, "": B}
    with open(folders["csv"] / "dataset.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    for r in rows:
        assert _row(ds, r["image"]) == {l: code[r[l]] for l in ds.labels}
    assert ds.split_file.is_file()
    assert set(ds.patients(ds.split_names("test"))).isdisjoint(ds.patients(ds.split_names("train_val")))
    assert ds.subgroups([rows[2]["image"]])["sex"].tolist() == ["F"]


def test_csv_pipe_column_and_split_column(folders):
    ds = open_dataset(folders["csv_pipe"])
    with open(folders["csv_pipe"] / "dataset.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    for r in rows:
        listed = set() if r["labels"] == "No Finding" else set(r["labels"].split("|"))
        assert {l for l, c in _row(ds, r["image"]).items() if c == P} == listed
        assert set(_row(ds, r["image"]).values()) <= {P, N}
        assert ds.frame.loc[r["image"], "split"] == r["split"]
    assert ds.official_split and ds.split_file is None
    with pytest.raises(DatasetError, match=r"dataset.csv: column 'labels', line 2: unknown finding"):
        CsvDataset(folders["csv_pipe"], labels=["Mass"])


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda t: t.replace("image,", "file,", 1), r"dataset.csv: no image column 'image'"),
        (lambda t: t.replace(",train,", ",training,", 1), r"dataset.csv: column 'split', line 2: split 'training'"),
        (
            lambda t: (
                t.replace("PA,1", "PA,yes", 1)
                .replace("PA,0", "PA,yes", 1)
                .replace("PA,-1", "PA,yes", 1)
                .replace("PA,,", "PA,yes,", 1)
            ),
            r"dataset.csv: column 'Effusion', line \d+: label value 'yes'",
        ),
        (
            lambda t: t.replace("images/0001.png", "images/0000.jpg", 1),
            r"column 'image', line 3: image 'images/0000.jpg' "
            r"listed twice",
        ),
        (lambda t: t.replace("view,", "view,labels,", 1), r"both a 'labels' column and label columns"),
    ],
)
def test_csv_errors_name_the_file_and_the_column(tmp_path, edit, message):
    root = lookalike.make_csv_lookalike(tmp_path, with_split=True, with_images=False)
    p = root / "dataset.csv"
    p.write_text(edit(p.read_text()))
    with pytest.raises(DatasetError, match=message):
        CsvDataset(p, warn=False)


def test_csv_without_patient_column_and_missing_images(tmp_path):
    root = lookalike.make_csv_lookalike(tmp_path, with_patient=False)
    with pytest.warns(NoPatientColumnWarning, match="own patient"):
        ds = CsvDataset(root)
    assert ds.frame["patient"].tolist() == ds.frame.index.tolist()
    (root / "images" / "0003.png").unlink()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoPatientColumnWarning)
        with pytest.warns(MissingImagesWarning, match=r"all: 1 of 12 missing"):
            ds = CsvDataset(root)
        assert ds.missing() == ["images/0003.png"] and "images/0003.png" not in ds.split_names("all")
        with pytest.raises(KeyError, match="listed but not on disk"):
            ds.image_path("images/0003.png")
        with pytest.raises(KeyError, match="not listed"):
            ds.image_path("images/9999.png")
        with pytest.raises(DatasetError, match="missing"):
            CsvDataset(root, strict=True)


def test_lookalike_images_read_as_xrays(folders):
    from phow_baseline.data import read_xray

    for kind, root in folders.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NoPatientColumnWarning)
            ds = open_dataset(root)
        img = read_xray(ds.image_path(ds.split_names("all")[0]))
        assert img.dtype == np.uint8 and img.shape == (64, 64), kind
    assert next(folders["padchest"].glob("*/*.png")).read_bytes()[24] == 16  # 16-bit PNGs, as PadChest's


# --------------------------------------------------------------------------
# Label map
# --------------------------------------------------------------------------


def test_shared_labels_between_chestxray14_and_chexpert():
    pairs, dropped_a, dropped_b = shared_labels(LABELS, CHEXPERT_LABELS)
    assert [(p.a, p.b) for p in pairs] == [
        ("Atelectasis", "Atelectasis"),
        ("Cardiomegaly", "Cardiomegaly"),
        ("Effusion", "Pleural Effusion"),
        ("Pneumonia", "Pneumonia"),
        ("Pneumothorax", "Pneumothorax"),
        ("Consolidation", "Consolidation"),
        ("Edema", "Edema"),
    ]
    assert all(LABELS[p.index_a] == p.a and CHEXPERT_LABELS[p.index_b] == p.b for p in pairs)
    assert dropped_a == ["Infiltration", "Mass", "Nodule", "Emphysema", "Fibrosis", "Pleural_Thickening", "Hernia"]
    assert dropped_b == [
        "No Finding",
        "Enlarged Cardiomediastinum",
        "Lung Opacity",
        "Lung Lesion",
        "Pleural Other",
        "Fracture",
        "Support Devices",
    ]
    pairs, dropped_a, _ = shared_labels(LABELS, CHEXPERT_LABELS, extra={"Lung Lesion": "Mass"})
    assert ("Mass", "Lung Lesion") in [(p.a, p.b) for p in pairs] and "Mass" not in dropped_a
    assert "nodule or mass" in why_not_shared("Nodule", "Lung Lesion")
    assert why_not_shared("Effusion", "Pleural Effusion") is None


def test_label_map_spellings_and_duplicates():
    assert shared_name("pleural effusion") == shared_name("Pleural Effusion") == "Effusion"
    assert shared_name("pleural thickening") == "Pleural_Thickening" and shared_name("Lipoma") is None
    assert label_key("Pleural_Thickening") == label_key(" pleural  thickening") == "pleural thickening"
    pairs, da, db = shared_labels(["Lipoma", "Effusion"], ["lipoma", "pleural effusion", "mass"])
    assert [(p.shared, p.a, p.b) for p in pairs] == [
        ("Lipoma", "Lipoma", "lipoma"),
        ("Effusion", "Effusion", "pleural effusion"),
    ]
    assert da == [] and db == ["mass"]
    with pytest.raises(ValueError, match="same finding"):
        shared_labels(["Effusion", "Pleural Effusion"], ["Effusion"])
    assert shared_labels(LABELS, PADCHEST_DEFAULT_LABELS)[1:] == ([], [])
    assert set(PADCHEST_TERMS) <= set(SYNONYMS)
