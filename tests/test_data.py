"""The ChestX-ray14 data layer on the real NIH sample, and its errors on bad input."""

import gzip
import shutil
import warnings

import numpy as np
import pandas as pd
import pytest

from phow_baseline.data.chestxray14 import (
    LABELS,
    ChestXray14,
    DatasetError,
    MissingImagesWarning,
    followup_index,
    labels_from_strings,
    patient_from_name,
    patient_validation_split,
    read_boxes,
    read_metadata,
    read_split_list,
)


@pytest.fixture(scope="module")
def ds(sample_dir):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MissingImagesWarning)
        return ChestXray14(sample_dir)


def _copy_meta(sample_dir, dst, images=()):
    """A small dataset folder: the real metadata files plus the given real images."""
    for f in ("Data_Entry_2017_v2020.csv.gz", "train_val_list.txt", "test_list.txt", "BBox_List_2017.csv.gz"):
        shutil.copy(sample_dir / f, dst / f)
    (dst / "images").mkdir()
    for p in images:
        shutil.copy(p, dst / "images" / p.name)
    return dst


def test_labels_order():
    assert LABELS[0] == "Atelectasis" and LABELS[-1] == "Hernia" and len(LABELS) == 14
    assert "Pleural_Thickening" in LABELS


def test_sample_counts(ds):
    assert len(ds.metadata) == 112120
    c = ds.counts()
    assert (c["all"].present, c["train_val"].present, c["test"].present) == (481, 422, 59)
    assert (c["train_val"].listed, c["test"].listed) == (86524, 25596)
    assert c["all"].missing == 112120 - 481
    assert ds.metadata["Patient ID"].nunique() == 30805


def test_missing_images_warn_with_counts_and_strict_raises(sample_dir):
    with pytest.warns(MissingImagesWarning, match=r"test: 25537 of 25596 missing"):
        ChestXray14(sample_dir)
    with pytest.raises(DatasetError, match="missing"):
        ChestXray14(sample_dir, strict=True)


def test_boxes_of_sample(ds):
    b = ds.boxes()
    assert len(b) == 9 and b["Image Index"].nunique() == 9
    assert b["label"].value_counts().to_dict() == {
        "Cardiomegaly": 3,
        "Nodule": 2,
        "Pneumonia": 2,
        "Atelectasis": 1,
        "Mass": 1,
    }
    assert set(b["Image Index"]) <= set(ds.split_names("test"))
    # boxes scale from the 1024 frame to the 512x512 files on disk
    raw = read_boxes(ds.bbox_path).set_index("Image Index")
    for _, r in b.iterrows():
        assert (r.width, r.height) == (512, 512)
        np.testing.assert_allclose([r.x, r.y, r.w, r.h], raw.loc[r["Image Index"], ["x", "y", "w", "h"]] / 2)
    b256 = ds.boxes(size=256)
    np.testing.assert_allclose(b256[["x", "y", "w", "h"]].to_numpy(), b[["x", "y", "w", "h"]].to_numpy() / 2)


def test_infiltrate_alias(sample_dir):
    raw = pd.read_csv(sample_dir / "BBox_List_2017.csv.gz")
    assert "Infiltrate" in set(raw.iloc[:, 1])
    b = read_boxes(sample_dir / "BBox_List_2017.csv.gz")
    assert "Infiltrate" not in set(b["label"]) and (b["label"] == "Infiltration").sum() == 123
    assert len(b) == 984


def test_label_matrix_matches_csv(ds, sample_images):
    names = [p.name for p in sample_images]
    y = ds.labels(names)
    assert y.dtype == np.uint8 and y.shape == (481, 14)
    raw = pd.read_csv(ds.metadata_path).set_index("Image Index").loc[names, "Finding Labels"]
    for i, s in enumerate(raw):
        want = set() if s == "No Finding" else set(s.split("|"))
        assert {LABELS[j] for j in np.flatnonzero(y[i])} == want
    y15 = ds.labels(names, no_finding_column=True)
    assert y15.shape == (481, 15) and ((y15[:, -1] == 1) == (y.sum(1) == 0)).all()
    assert (y.sum(1) == 0).sum() == 79


def test_patient_wise_split_disjoint_and_reproducible(ds, sample_dir):
    tr, va, te = (ds.split_names(s, present_only=False) for s in ("train", "val", "test"))
    assert len(tr) + len(va) == 86524
    assert abs(len(va) / 86524 - 0.1) < 0.002
    pt, pv, ps = (set(ds.patients(x).tolist()) for x in (tr, va, te))
    assert not (pt & pv) and not (pt & ps) and not (pv & ps)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MissingImagesWarning)
        again = ChestXray14(sample_dir)
        other = ChestXray14(sample_dir, seed=1)
    assert again.split_names("val", present_only=False) == va
    assert other.split_names("val", present_only=False) != va
    assert sorted(ds.split_names("train") + ds.split_names("val")) == ds.split_names("train_val")


def test_patient_validation_split_function():
    names = [f"{p:08d}_{k:03d}.png" for p in range(50) for k in range(p % 4 + 1)]
    pats = [patient_from_name(n) for n in names]
    tr, va = patient_validation_split(names, pats, 0.2, seed=3)
    assert not ({patient_from_name(n) for n in tr} & {patient_from_name(n) for n in va})
    assert len(tr) + len(va) == len(names) and len(va) >= round(0.2 * len(names))


def test_nih_extracted_layout(sample_dir, sample_images, tmp_path):
    root = _copy_meta(sample_dir, tmp_path, sample_images[:3])
    (root / "images_002" / "images").mkdir(parents=True)
    for p in sample_images[3:5]:
        shutil.copy(p, root / "images_002" / "images" / p.name)
    with pytest.warns(MissingImagesWarning):
        d = ChestXray14(root)
    assert len(d.present) == 5
    assert d.image_path(sample_images[4].name).parent.parent.name == "images_002"
    with pytest.raises(KeyError, match="not on disk"):
        d.image_path(sample_images[10].name)


def test_plain_csv_and_original_name(sample_dir, tmp_path):
    root = _copy_meta(sample_dir, tmp_path)
    (root / "Data_Entry_2017_v2020.csv.gz").unlink()
    with gzip.open(sample_dir / "Data_Entry_2017_v2020.csv.gz", "rt") as fh:
        (root / "Data_Entry_2017.csv").write_text(fh.read())
    df = read_metadata(root / "Data_Entry_2017.csv")
    assert len(df) == 112120 and "Original Width" in df.columns


def test_csv_missing_column(sample_dir, tmp_path):
    df = pd.read_csv(sample_dir / "Data_Entry_2017_v2020.csv.gz").drop(columns=["Patient ID"])
    p = tmp_path / "Data_Entry_2017.csv"
    df.head(10).to_csv(p, index=False)
    with pytest.raises(DatasetError, match=r"Data_Entry_2017\.csv: missing column\(s\) \['Patient ID'\]"):
        read_metadata(p)


def test_csv_unknown_label(tmp_path):
    p = tmp_path / "Data_Entry_2017.csv"
    p.write_text("Image Index,Finding Labels,Patient ID\n00000001_000.png,Cardiomegaly|Flu,1\n")
    with pytest.raises(DatasetError, match="unknown finding label.*Flu"):
        read_metadata(p)
    assert labels_from_strings(["No Finding", "Hernia|Mass"]).tolist()[1][13] == 1


def test_split_list_unknown_images(sample_dir, tmp_path):
    root = _copy_meta(sample_dir, tmp_path)
    text = (sample_dir / "test_list.txt").read_text()
    (root / "test_list.txt").write_text(text + "\n99999999_000.png")
    with pytest.raises(DatasetError, match=r"test_list\.txt: 1 name\(s\) not in the metadata.*99999999_000"):
        ChestXray14(root)


def test_split_list_without_trailing_newline(sample_dir):
    names = read_split_list(sample_dir / "test_list.txt")
    assert len(names) == 25596 and names[-1].endswith(".png")
    assert not (sample_dir / "test_list.txt").read_text().endswith("\n")


def test_missing_metadata_file(tmp_path):
    with pytest.raises(DatasetError, match="no metadata CSV"):
        ChestXray14(tmp_path)


def test_followup_order_uses_file_suffix(ds):
    assert followup_index("00000013_009.png") == 9
    meta = ds.metadata.set_index("Image Index")
    # the v2020 quirk: the Follow-up # column disagrees with the file name
    assert meta.loc["00000013_009.png", "Follow-up #"] == 34
    assert meta.loc["00000013_033.png", "Follow-up #"] == 11
    series = ds.followup_series(13, present_only=False)
    assert series == sorted(series) and series.index("00000013_009.png") < series.index("00000013_033.png")
    with pytest.raises(ValueError, match="not a ChestX-ray14 file name"):
        followup_index("scan.png")
