"""The library behind ``predict``, ``localize``, ``localize-eval`` and ``diff`` (phow_baseline.workflow.predict and
.localize), with a stand-in model whose scores and heatmaps are known, so that what is written can be checked."""

import json
import logging

import cv2
import numpy as np
import pandas as pd
import pytest

from phow_baseline.data import LABELS
from phow_baseline.model import DecisionsUnavailableError, HeatmapsUnavailableError
from phow_baseline.workflow.localize import diff_images, evaluate_localization_dir, localize_images
from phow_baseline.workflow.predict import NoImagesError, failures_csv_path, predict_to_csv

SIZE = 64
#: The stand-in's raw score of label j is WEIGHTS[j] x the image's mean grey level / 255: Hernia scores highest.
WEIGHTS = np.linspace(0.1, 1.4, len(LABELS))


class StandIn:
    """A model of the interface every kind meets, with known outputs (picklable: module level)."""

    kind = "stand-in"
    labels = LABELS
    scores_in_workers = True
    image_size = SIZE
    score_kind = "probability"

    def __init__(self, has_heatmaps=True, has_decisions=True):
        self.has_heatmaps, self.has_decisions = has_heatmaps, has_decisions

    def preprocess(self, image):
        from phow_baseline.data.preprocess import preprocess

        return preprocess(image, size=SIZE, equalization="none")

    def raw_scores(self, image):
        return WEIGHTS * image.mean() / 255 - 0.5

    def calibrate(self, raw):
        return 1 / (1 + np.exp(-np.asarray(raw, float)))

    def scores(self, image):
        return self.calibrate(self.raw_scores(image)[None])[0]

    def decide(self, probabilities):
        if not self.has_decisions:
            raise DecisionsUnavailableError("no operating points")
        return (np.asarray(probabilities) >= 0.5).astype(np.uint8)

    def heatmaps(self, image):
        if not self.has_heatmaps:
            raise HeatmapsUnavailableError("no heatmaps")
        heat = np.zeros((len(LABELS), SIZE // 2, SIZE // 2), np.float32)
        for j in range(len(LABELS)):  # one bright square per label, at its own place
            heat[j, j : j + 4, 2:6] = 1
        return heat


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    from phow_baseline.data.phantom import make_phantom_dataset

    return make_phantom_dataset(tmp_path_factory.mktemp("ph") / "p", n_patients=20, size=SIZE, n_followup_patients=2)


@pytest.fixture
def images(phantom, tmp_path):
    """Three phantom images and one unreadable file in a folder."""
    folder = tmp_path / "in"
    folder.mkdir()
    for p in sorted((phantom / "images").glob("*_000.png"))[:3]:
        (folder / p.name).write_bytes(p.read_bytes())
    (folder / "zz_broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot an image")
    return folder


def _expected(path):
    img = StandIn().preprocess(path)
    return StandIn().scores(img)


# --------------------------------------------------------------------------
# predict_to_csv
# --------------------------------------------------------------------------


def test_predict_writes_the_scores_and_lists_the_failures(images, tmp_path, caplog):
    out = tmp_path / "new" / "p.csv"
    with caplog.at_level(logging.WARNING, logger="phow_baseline"):
        run = predict_to_csv(StandIn(), [images], out, progress=False)
    good = sorted(p for p in images.glob("*.png") if p.name != "zz_broken.png")
    df = pd.read_csv(out)
    assert df["Image Index"].tolist() == [p.name for p in good] == run.names
    np.testing.assert_allclose(df[list(LABELS)].to_numpy(), np.stack([_expected(p) for p in good]), rtol=1e-8)
    assert [f for f, _ in run.failures] == [str(images / "zz_broken.png")]
    assert run.failures_csv == failures_csv_path(out) == tmp_path / "new" / "p.failures.csv"
    assert pd.read_csv(run.failures_csv)["file"].tolist() == [str(images / "zz_broken.png")]
    assert "zz_broken.png" in caplog.text


def test_predict_raw_scores_and_decisions(images, tmp_path):
    path = sorted(images.glob("0*.png"))[0]
    run = predict_to_csv(StandIn(), [path], tmp_path / "p.csv", raw_scores=True, decisions=True, progress=False)
    df = pd.read_csv(tmp_path / "p.csv")
    raw = StandIn().raw_scores(StandIn().preprocess(path))
    np.testing.assert_allclose(df[list(LABELS)].to_numpy()[0], raw, rtol=1e-8)
    assert df[[f"{lab} decision" for lab in LABELS]].to_numpy()[0].tolist() == (raw >= 0).astype(int).tolist()
    assert run.failures_csv is None and not failures_csv_path(tmp_path / "p.csv").exists()


def test_predict_checks_before_loading_or_scoring(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    not_a_model = tmp_path / "not-a-model"  # would fail to load: the missing images are reported first
    with pytest.raises(NoImagesError, match="no images to score in"):
        predict_to_csv(not_a_model, [empty], tmp_path / "out" / "p.csv", progress=False)
    assert (tmp_path / "out").is_dir() and not (tmp_path / "out" / "p.csv").exists()
    with pytest.raises(DecisionsUnavailableError, match="no operating points"):
        predict_to_csv(StandIn(has_decisions=False), [empty / "x.png"], tmp_path / "d.csv", decisions=True)
    assert not (tmp_path / "d.csv").exists()


# --------------------------------------------------------------------------
# localize_images, evaluate_localization_dir, diff_images
# --------------------------------------------------------------------------


def test_localize_draws_the_top_scoring_findings(images, tmp_path):
    run = localize_images(StandIn(), [images], tmp_path / "h", top=2)
    good = sorted(p for p in images.glob("*.png") if p.name != "zz_broken.png")
    top2 = [LABELS[j] for j in np.argsort(-WEIGHTS)[:2]]
    assert [(o.image.name, o.label) for o in run.overlays] == [(p.name, lab) for p in good for lab in top2]
    for o in run.overlays:
        assert o.path == tmp_path / "h" / f"{o.image.stem}_{o.label}.png"
        assert cv2.imread(str(o.path)).shape == (SIZE, SIZE, 3)
        assert o.score == pytest.approx(_expected(o.image)[LABELS.index(o.label)])
    assert [f for f, _ in run.failures] == [str(images / "zz_broken.png")]


def test_localize_draws_the_labels_asked_for_and_refuses_unknown_ones(images, tmp_path):
    run = localize_images(StandIn(), [sorted(images.glob("0*.png"))[0]], tmp_path / "h", labels=["Mass", "Edema"])
    assert [o.label for o in run.overlays] == ["Mass", "Edema"]
    with pytest.raises(ValueError, match=r"unknown label\(s\) \['Flu'\]"):
        localize_images(StandIn(), [images], tmp_path / "x", labels=["Flu"])
    with pytest.raises(HeatmapsUnavailableError, match="has no heatmaps"):
        localize_images(StandIn(has_heatmaps=False), [images], tmp_path / "y")
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_evaluate_localization_dir_writes_the_directory(phantom, tmp_path):
    result = evaluate_localization_dir(StandIn(), phantom, tmp_path / "loc", name="stand-in model", progress=False)
    on_disk = json.loads((tmp_path / "loc" / "localization.json").read_text())
    assert on_disk["model"] == "stand-in model" and on_disk["kind"] == "stand-in"
    assert on_disk["n_images"] == result["n_images"] and sum(result["n_images"].values()) >= 1
    assert (tmp_path / "loc" / "localization.md").is_file() and list((tmp_path / "loc" / "heatmaps").glob("*.png"))
    with pytest.raises(HeatmapsUnavailableError):
        evaluate_localization_dir(StandIn(has_heatmaps=False), phantom, tmp_path / "no", progress=False)
    assert not (tmp_path / "no").exists()


def test_evaluate_localization_dir_without_boxed_images_says_so(phantom, tmp_path):
    from phow_baseline.data import DatasetError

    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    boxed = set(pd.read_csv(phantom / "BBox_List_2017.csv").iloc[:, 0])
    for f in phantom.iterdir():
        if f.is_file():
            (data / f.name).write_bytes(f.read_bytes())
    for p in (phantom / "images").glob("*.png"):
        if p.name not in boxed:
            (data / "images" / p.name).write_bytes(p.read_bytes())
    with pytest.warns(UserWarning), pytest.raises(DatasetError, match="no boxed image present"):
        evaluate_localization_dir(StandIn(), data, tmp_path / "loc", progress=False)


@pytest.mark.parametrize("has_heatmaps", [True, False])
def test_diff_with_a_model_adds_its_score_and_heatmap_differences(phantom, tmp_path, has_heatmaps):
    a, b = phantom / "images" / "00000001_001.png", phantom / "images" / "00000001_002.png"
    meta = diff_images(a, b, tmp_path / "d", StandIn(has_heatmaps=has_heatmaps))
    assert meta["patient"] == 1 and set(meta["score_changes"]) == set(LABELS)
    assert meta["score_changes"]["Hernia"]["a"] == pytest.approx(_expected(a)[-1], abs=1e-6)
    assert bool(meta["heatmap_labels"]) is has_heatmaps  # a model without heatmaps: its score differences alone
    assert json.loads((tmp_path / "d" / "diff.json").read_text())["score_changes"] == meta["score_changes"]
    plain = diff_images(a, b, tmp_path / "plain", size=SIZE)
    assert not plain["score_changes"] and not plain["heatmap_labels"]
