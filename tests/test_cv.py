"""Patient-wise K-fold cross-validation (``phow-baseline cv``, :mod:`phow_baseline.workflow.cv`) on a tiny phantom."""

import json
import logging

import numpy as np
import pytest
from click.testing import CliRunner

from phow_baseline.config import BaselineConfig
from phow_baseline.data.phantom import make_phantom_dataset
from phow_baseline.workflow import cv as cvmod
from phow_baseline.workflow.cv import cross_validate, patient_folds, read_folds_csv

TINY = dict(
    size=64,
    n_words=8,
    max_descriptors=2000,
    vocab_images=10,
    n_jobs=1,
    kernel_map="none",
    solver="liblinear",
    calibration="none",
    shard_size=16,
)


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    return make_phantom_dataset(tmp_path_factory.mktemp("cv") / "ph", n_patients=40, size=64, seed=1)


def test_patient_folds_are_patient_wise_balanced_and_seeded():
    patients = np.array([1, 1, 1, 2, 3, 3, 4, 5, 6, 7, 8, 8, 9, 10])
    f = patient_folds(patients, 3, seed=0)
    for p in np.unique(patients):
        assert len(set(f[patients == p])) == 1  # a patient never spans two folds
    sizes = np.bincount(f, minlength=3)
    assert sizes.max() - sizes.min() <= 3  # at most one patient's images apart
    assert np.array_equal(f, patient_folds(patients, 3, seed=0))
    assert not np.array_equal(f, patient_folds(patients, 3, seed=0, repeat=1))
    with pytest.raises(ValueError, match="n_folds"):
        patient_folds(patients, 11)


def _predictions(out):
    return (out / "run" / "predictions.csv").read_text()


def test_cv_writes_folds_and_oof_predictions_and_is_reproducible(phantom, tmp_path):
    cfg = BaselineConfig.from_preset("vlfeat", **TINY)
    a = cross_validate(phantom, tmp_path / "a", cfg, n_folds=3, progress=False, n_bootstrap=50)
    b = cross_validate(phantom, tmp_path / "b", cfg, n_folds=3, progress=False, n_bootstrap=50)
    assert a["mean_auroc"] == b["mean_auroc"]  # to the last digit
    assert _predictions(tmp_path / "a") == _predictions(tmp_path / "b")
    names, folds = read_folds_csv(tmp_path / "a" / "folds.csv")
    assert len(names) == a["n_images"] == 52 and folds.shape == (1, 52) and set(folds[0]) == {0, 1, 2}
    pred = _predictions(tmp_path / "a").splitlines()
    assert len(pred) == 53 and pred[0].startswith("Image Index")
    assert 0.0 <= a["mean_auroc"][0] <= 1.0 and a["mean_auroc_ci95"][0][0] <= a["mean_auroc"][0]
    assert a["feature_bytes_per_image"] >= 4 * 8 * 20  # float32, 8 words x (2x2 + 4x4) cells per fold


def test_interrupted_cv_resumes_to_the_same_digits(phantom, tmp_path, monkeypatch, caplog):
    cfg = BaselineConfig.from_preset("vlfeat", **TINY)
    clean = cross_validate(phantom, tmp_path / "clean", cfg, n_folds=3, progress=False, n_bootstrap=50)
    real = cvmod._fold
    calls = []

    def dies_on_the_second_fold(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt("simulated kill")
        return real(*args, **kwargs)

    monkeypatch.setattr(cvmod, "_fold", dies_on_the_second_fold)
    out = tmp_path / "killed"
    with pytest.raises(KeyboardInterrupt):
        cross_validate(phantom, out, cfg, n_folds=3, progress=False, n_bootstrap=50)
    assert (out / "folds" / "r0-k0" / "oof.npz").exists() and not (out / "folds" / "r0-k1" / "oof.npz").exists()
    monkeypatch.setattr(cvmod, "_fold", real)
    with caplog.at_level(logging.INFO, logger="phow_baseline"):
        resumed = cross_validate(phantom, out, cfg, n_folds=3, progress=False, n_bootstrap=50)
    assert "repeat 0 fold 0: done before" in caplog.text
    assert resumed["mean_auroc"] == clean["mean_auroc"]
    assert _predictions(out) == _predictions(tmp_path / "clean")


@pytest.mark.slow
def test_a_fold_with_its_model_but_no_scores_reuses_the_model(phantom, tmp_path, caplog):
    cfg = BaselineConfig.from_preset("vlfeat", **TINY)
    out = tmp_path / "o"
    first = cross_validate(phantom, out, cfg, n_folds=3, progress=False, n_bootstrap=50)
    (out / "folds" / "r0-k2" / "oof.npz").unlink()
    with caplog.at_level(logging.INFO, logger="phow_baseline"):
        again = cross_validate(phantom, out, cfg, n_folds=3, progress=False, n_bootstrap=50)
    assert "reusing the model" in caplog.text and "vocabulary: reusing" in caplog.text
    assert again["mean_auroc"] == first["mean_auroc"]


@pytest.mark.slow
def test_configurations_share_the_image_cache_vocabulary_and_features(phantom, tmp_path, caplog):
    work = tmp_path / "work"
    cross_validate(
        phantom,
        tmp_path / "c10",
        BaselineConfig.from_preset("vlfeat", **TINY),
        n_folds=2,
        work_dir=work,
        progress=False,
        n_bootstrap=0,
    )
    with caplog.at_level(logging.INFO, logger="phow_baseline"):
        r = cross_validate(
            phantom,
            tmp_path / "c1",
            BaselineConfig.from_preset("vlfeat", **{**TINY, "C": 1.0}),
            n_folds=2,
            work_dir=work,
            progress=False,
            n_bootstrap=0,
        )
    assert caplog.text.count("vocabulary: reusing") == 2  # one per fold: the vocabulary does not depend on C
    assert "0 of 4 shard(s) to do" in caplog.text  # nor the features
    assert len(list(work.glob("cv-vocab-*"))) == 2 and len(list(work.glob("images-cv-all-*"))) == 1
    assert 0 <= r["mean_auroc"][0] <= 1


def test_an_out_folder_of_another_configuration_is_refused(phantom, tmp_path):
    out = tmp_path / "o"
    cross_validate(phantom, out, BaselineConfig.from_preset("vlfeat", **TINY), n_folds=2, progress=False, n_bootstrap=0)
    with pytest.raises(ValueError, match=r"another configuration \(differs in \['C'\]\)"):
        cross_validate(
            phantom,
            out,
            BaselineConfig.from_preset("vlfeat", **{**TINY, "C": 2.0}),
            n_folds=2,
            progress=False,
            n_bootstrap=0,
        )
    with pytest.raises(ValueError, match="folds.csv: written for other images or folds"):
        cross_validate(
            phantom, out, BaselineConfig.from_preset("vlfeat", **TINY), n_folds=3, progress=False, n_bootstrap=0
        )


@pytest.mark.slow
def test_cv_command_with_a_preset_and_split(phantom, tmp_path):
    from phow_baseline.cli import main

    out = tmp_path / "cli"
    args = [
        "cv",
        str(phantom),
        "--out",
        str(out),
        "--folds",
        "2",
        "--split",
        "train_val",
        "--preset",
        "vlfeat",
        "--size",
        "64",
        "--n-words",
        "8",
        "--max-descriptors",
        "2000",
        "--vocab-images",
        "10",
        "--kernel-map",
        "none",
        "--solver",
        "liblinear",
        "--n-jobs",
        "1",
        "--n-bootstrap",
        "20",
        "--quiet",
    ]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    assert "out-of-fold mean AUROC" in res.output
    names, folds = read_folds_csv(out / "folds.csv")
    assert len(names) < 52 and folds.shape == (1, len(names))  # the test list kept out
    import json

    held = json.loads((out / "config.json").read_text())
    assert held["encoding"] == "bow" and held["size"] == 64 and held["n_words"] == 8


@pytest.mark.slow
def test_kill_9_after_a_fold_resumes_to_the_same_digits(phantom, tmp_path):
    import signal
    import subprocess
    import sys
    import time

    config = tmp_path / "config.json"
    # the bag of words of the vlfeat preset (the defaults are Fisher vectors since 0.3; a file cannot name a preset)
    config.write_text(json.dumps({"encoding": "bow", "C": 10.0, "feature_dtype": "float32", **TINY}))

    def args(out):
        cli = [sys.executable, "-c", "from phow_baseline.cli import main; main()", "cv", str(phantom)]
        return [*cli, "--out", str(out), "--folds", "3", "--config", str(config), "--n-bootstrap", "20", "--quiet"]

    out = tmp_path / "killed"
    proc = subprocess.Popen(args(out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 300
        while time.time() < deadline and proc.poll() is None and not (out / "folds/r0-k0/oof.npz").exists():
            time.sleep(0.02)
        assert proc.poll() is None, "the run ended before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        proc.kill()
    assert not (out / "run" / "predictions.csv").exists()
    res = subprocess.run(args(out), capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    clean = tmp_path / "clean"
    res2 = subprocess.run(args(clean), capture_output=True, text=True, timeout=600)
    assert res2.returncode == 0, res2.stderr[-3000:]
    assert _predictions(out) == _predictions(clean)
    assert (out / "run" / "metrics.json").exists()
    a = json.loads((out / "cv.json").read_text())
    b = json.loads((clean / "cv.json").read_text())
    assert a["mean_auroc"] == b["mean_auroc"]
