"""Boxes from heatmaps, IoU/IoBB, the NIH evaluation, and the localize commands."""

import json
import warnings

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from phow_baseline.cli import main as cli
from phow_baseline.data.chestxray14 import ChestXray14, MissingImagesWarning
from phow_baseline.evaluation.localization import (
    WANG2017_IOBB_05,
    boxes_from_heatmap,
    evaluate_boxes,
    iobb,
    iou,
    overlay,
    upsample,
)


def test_iou_and_iobb_by_hand():
    a, b = (0, 0, 10, 10), (5, 5, 10, 10)
    assert iou(a, b) == pytest.approx(25 / 175)
    assert iobb(a, b) == pytest.approx(25 / 100)
    small = (2, 2, 2, 2)  # inside the truth: IoBB 1, IoU small
    assert iobb(small, a) == 1.0 and iou(small, a) == pytest.approx(4 / 100)
    assert iou((0, 0, 1, 1), (5, 5, 1, 1)) == 0.0 and iobb((0, 0, 0, 0), a) == 0.0


def test_boxes_from_heatmap_finds_blobs():
    h = np.zeros((100, 100), np.float32)
    cv2.circle(h, (30, 30), 8, 1.0, -1)
    cv2.circle(h, (70, 60), 5, 0.8, -1)
    cv2.circle(h, (80, 20), 3, 0.2, -1)  # below half the maximum
    h -= 0.05  # negative evidence elsewhere
    b = boxes_from_heatmap(h, threshold=0.5)
    assert len(b) == 2
    x, y, w, hh, _ = b[0]
    assert (x, y, w, hh) == (22, 22, 17, 17)
    assert boxes_from_heatmap(-np.ones((10, 10))) == []
    many = np.zeros((50, 50), np.float32)
    for i in range(5):
        many[5 + 9 * i : 8 + 9 * i, 5:8] = 1 + i
    assert len(boxes_from_heatmap(many, threshold=0.1)) == 3


def test_evaluation_counts_hits_and_false_positives():
    truth = (10, 10, 20, 20)
    items = [
        ("Mass", [(12, 12, 10, 10, 1.0), (60, 60, 5, 5, 0.5)], truth),  # one hit, one FP
        ("Mass", [(70, 70, 10, 10, 1.0)], truth),  # miss
        ("Nodule", [], (0, 0, 5, 5)),
    ]
    r = evaluate_boxes(items)
    assert r["n_images"] == {"Mass": 2, "Nodule": 1}
    acc = dict(zip(r["iobb_thresholds"], r["accuracy_iobb"]["Mass"]))
    assert acc[0.5] == 0.5 and acc[0.9] == 0.5  # IoBB of the hit is 1
    fp = dict(zip(r["iobb_thresholds"], r["avg_fp"]["Mass"]))
    assert fp[0.5] == 1.0  # (1 + 1) / 2
    assert r["accuracy_iou"]["Mass"][0] == 0.5  # IoU 100/400 = 0.25 >= 0.1
    assert r["accuracy_iobb"]["Nodule"] == [0.0] * 5


def test_overlay_and_upsample():
    img = np.full((64, 64), 100, np.uint8)
    heat = np.zeros((8, 8), np.float32)
    heat[2, 2] = 1
    ov = overlay(img, heat, boxes=[(1, 1, 10, 10)])
    assert ov.shape == (64, 64, 3) and ov.dtype == np.uint8 and not np.all(ov == 100)
    assert upsample(np.zeros((14, 8, 8)), 32).shape == (14, 32, 32)


@pytest.mark.slow
def test_localize_eval_on_the_sample(sample_run, sample_dir, tmp_path):
    out, _ = sample_run
    res = CliRunner().invoke(
        cli,
        [
            "localize-eval",
            str(out / "model"),
            str(sample_dir),
            "--out",
            str(tmp_path / "loc"),
            "--quiet",
            "--name",
            "PHOW <sample>",
        ],
    )
    assert res.exit_code == 0, res.output
    r = json.loads((tmp_path / "loc" / "localization.json").read_text())
    # the sample's 9 boxed images: Cardiomegaly 3, Nodule 2, Pneumonia 2, Atelectasis 1, Mass 1
    assert r["n_images"] == {"Atelectasis": 1, "Cardiomegaly": 3, "Mass": 1, "Nodule": 2, "Pneumonia": 2}
    assert r["image_size"] == 256 and r["reference_iobb_0.5"] == WANG2017_IOBB_05
    for acc in r["accuracy_iobb"].values():
        assert len(acc) == 5 and all(0 <= a <= 1 for a in acc) and acc == sorted(acc, reverse=True)
    assert len(list((tmp_path / "loc" / "heatmaps").glob("*.png"))) == 6
    assert "T(IoBB)=0.5" in res.output


@pytest.mark.slow
def test_localize_command_writes_overlays(sample_run, sample_images, tmp_path):
    out, _ = sample_run
    res = CliRunner().invoke(
        cli,
        [
            "localize",
            str(out / "model"),
            str(sample_images[0]),
            "--out",
            str(tmp_path / "h"),
            "--labels",
            "Mass,Effusion",
        ],
    )
    assert res.exit_code == 0, res.output
    files = sorted(p.name for p in (tmp_path / "h").glob("*.png"))
    assert files == [f"{sample_images[0].stem}_Effusion.png", f"{sample_images[0].stem}_Mass.png"]
    assert cv2.imread(str(tmp_path / "h" / files[0])).shape == (256, 256, 3)
    bad = CliRunner().invoke(cli, ["localize", str(out / "model"), str(sample_images[0]), "--labels", "Flu"])
    assert bad.exit_code != 0 and "unknown label" in bad.output


@pytest.mark.slow
def test_diff_command_with_model(sample_run, sample_dir, tmp_path):
    out, _ = sample_run
    fu = sorted((sample_dir / "followups").glob("*.png"))
    res = CliRunner().invoke(
        cli, ["diff", str(fu[4]), str(fu[5]), "--model", str(out / "model"), "--out", str(tmp_path / "d")]
    )
    assert res.exit_code == 0, res.output
    m = json.loads((tmp_path / "d" / "diff.json").read_text())
    assert m["patient"] == 32 and len(m["score_changes"]) == 14 and len(m["heatmap_labels"]) == 4
    bad = CliRunner().invoke(cli, ["diff", str(fu[0]), str(fu[4])])
    assert bad.exit_code != 0 and "different patients" in bad.output


def test_nih_boxes_of_the_sample_scale_with_the_image(sample_dir):
    import pandas as pd

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MissingImagesWarning)
        ds = ChestXray14(sample_dir)
    raw = pd.read_csv(sample_dir / "BBox_List_2017.csv.gz")
    raw = raw[raw.iloc[:, 0].isin(ds.present)].sort_values(list(raw.columns[:2])).reset_index(drop=True)
    on_disk = ds.boxes().sort_values(["Image Index", "label"]).reset_index(drop=True)
    b256 = ds.boxes(size=256).sort_values(["Image Index", "label"]).reset_index(drop=True)
    assert on_disk["Image Index"].nunique() == 9 and (on_disk["width"] == 512).all()
    # the 1024-pixel NIH frame halved on the 512x512 files, quartered at 256
    assert np.allclose(on_disk[["x", "y", "w", "h"]].to_numpy(), raw.iloc[:, 2:6].to_numpy(float) / 2)
    assert np.allclose(b256[["x", "y", "w", "h"]].to_numpy(), raw.iloc[:, 2:6].to_numpy(float) / 4)
    for r in b256.itertuples():  # every box lies in the image
        assert 0 <= r.x and 0 <= r.y and r.x + r.w <= 256 and r.y + r.h <= 256


def test_evaluate_localization_with_a_heatmap_function(sample_dir, tmp_path):
    """An oracle heatmap (the truth box itself) is always right; an empty one never is."""

    from phow_baseline.data.chestxray14 import LABELS
    from phow_baseline.evaluation.localization import evaluate_localization, read_localization, write_localization_dir

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MissingImagesWarning)
        ds = ChestXray14(sample_dir)
    S = 128
    boxes = ds.boxes(size=S)
    names = sorted(boxes["Image Index"].unique())[:4]
    truth = {n: g for n, g in boxes.groupby("Image Index")}
    order = iter(names)

    def oracle(img):  # images come in name order; the map is 1 inside each truth box of its class
        g = truth[next(order)]
        h = np.zeros((14, S, S), np.float32)
        for r in g.itertuples():
            h[LABELS.index(r.label), int(np.ceil(r.y)) : int(r.y + r.h), int(np.ceil(r.x)) : int(r.x + r.w)] = 1
        return h

    res, ex = evaluate_localization(oracle, ds, names=names, image_size=S, n_examples=2, progress=False)
    assert sum(res["n_images"].values()) == len(boxes[boxes["Image Index"].isin(names)])
    for lab in res["n_images"]:
        assert res["accuracy_iobb"][lab] == [1.0] * 5 and res["accuracy_iou"][lab][-1] == 1.0
    write_localization_dir(tmp_path, res, ex, model_name="oracle", kind="phow")
    r = read_localization(tmp_path)
    assert r["model"] == "oracle" and len(list((tmp_path / "heatmaps").glob("*.png"))) == 2
    res0, _ = evaluate_localization(lambda img: np.zeros((14, 8, 8)), ds, names=names, image_size=S, progress=False)
    assert all(a == [0.0] * 5 for a in res0["accuracy_iobb"].values())
    with pytest.raises(ValueError, match="image_size"):
        evaluate_localization(oracle, ds, names=names)
