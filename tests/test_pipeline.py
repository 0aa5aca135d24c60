"""The PHOW baseline end to end on the real sample, its files, resume, and the Dask backend."""

import json
import shutil
import warnings

import cv2
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from sklearn.metrics import roc_auc_score

from conftest import SMALL_CONFIG as SMALL
from phow_baseline.cli import main as cli
from phow_baseline.config import BaselineConfig
from phow_baseline.data.chestxray14 import LABELS, ChestXray14, MissingImagesWarning
from phow_baseline.data.preprocess import preprocess
from phow_baseline.model.attribution import per_bin_contributions
from phow_baseline.model.directory import ModelFileError, load_model
from phow_baseline.model.phow_model import PhowModel
from phow_baseline.workflow.pipeline import make_pipeline
from phow_baseline.workflow.steps import run_baseline


@pytest.mark.slow
def test_sample_run_outputs(sample_run, sample_dir):
    out, m = sample_run
    assert m["kind"] == "phow" and m["split"] == "test" and m["n_test"] == 59
    assert m["labels"] == list(LABELS) and set(m["auroc"]) == set(LABELS)
    # the AUROCs are those of the written predictions against the metadata's labels
    from sklearn.metrics import roc_auc_score

    from phow_baseline.data.chestxray14 import ChestXray14, MissingImagesWarning

    pred = pd.read_csv(out / "run" / "predictions.csv")
    with pytest.warns(MissingImagesWarning):
        Y = ChestXray14(sample_dir).labels(pred["Image Index"].tolist())
    for j, lab in enumerate(LABELS):
        if 0 < Y[:, j].sum() < len(Y):
            assert m["auroc"][lab] == pytest.approx(roc_auc_score(Y[:, j], pred[lab]), abs=1e-9), lab
    assert m["mean_auroc"] == pytest.approx(
        np.nanmean([m["auroc"][lab] for lab in LABELS if m["auroc"][lab] is not None]), abs=1e-12
    )
    on_disk = json.loads((out / "run" / "metrics.json").read_text())
    assert on_disk["mean_auroc"] == m["mean_auroc"]
    pred = pd.read_csv(out / "run" / "predictions.csv")
    assert list(pred.columns) == ["Image Index", *LABELS] and len(pred) == 59
    assert (out / "run" / "roc.png").stat().st_size > 10_000
    assert "Wang2017_official" in (out / "run" / "comparison.md").read_text()
    assert {p.name for p in (out / "model").iterdir()} >= {"model.json", "vocabulary.npz", "svm.npz"}
    meta = json.loads((out / "model" / "model.json").read_text())
    assert meta["kind"] == "phow" and meta["n_train"] == 422 and "sha256" in meta["files"]["svm"]


@pytest.mark.slow
def test_model_round_trip_and_checksum(sample_run, sample_dir, tmp_path):
    out, _ = sample_run
    model = load_model(out / "model")
    assert isinstance(model, PhowModel)
    assert model.svm.coef_.shape == (14, 64 * 20 * 3)
    # the kernel map's evaluation the SVMs were trained on is recorded and taken up (VLFeat's table)
    meta = json.loads((out / "model" / "model.json").read_text())
    assert meta["params"]["kernel_map"] == {"evaluation": "table"} and model.kernel_map.evaluation == "table"
    pred = pd.read_csv(out / "run" / "predictions.csv").set_index("Image Index")
    name = pred.index[0]
    s = model.scores(model.preprocess(sample_dir / "images" / name))
    np.testing.assert_allclose(s, pred.loc[name, list(LABELS)].to_numpy(float), rtol=1e-4, atol=1e-5)
    # a tampered array file is refused
    bad = tmp_path / "model"
    shutil.copytree(out / "model", bad)
    with np.load(bad / "svm.npz") as z:
        arrs = dict(z)
    arrs["coef"] = arrs["coef"] * 2
    np.savez(bad / "svm.npz", **arrs)
    with pytest.raises(ModelFileError, match="checksum mismatch"):
        load_model(bad)
    (bad / "model.json").unlink()
    with pytest.raises(ModelFileError, match="no model.json"):
        load_model(bad)


@pytest.mark.slow
def test_rerun_resumes_and_gives_the_same_result(sample_run, sample_dir):
    out, m = sample_run
    stores = sorted((out / "work").glob("features-test-*"))
    assert len(stores) == 1
    shards = sorted(stores[0].glob("feat_*.npy"))
    kept = {p.name: p.stat().st_mtime_ns for p in shards}
    shards[0].unlink()  # as if killed before this shard was written
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MissingImagesWarning)
        m2 = run_baseline(
            sample_dir, out, BaselineConfig.from_preset("vlfeat", **SMALL), progress=False, n_bootstrap=200
        )
    assert m2["auroc"] == m["auroc"]
    assert shards[0].exists()
    untouched = [p for p in sorted(stores[0].glob("feat_*.npy"))[1:]]
    assert all(p.stat().st_mtime_ns == kept[p.name] for p in untouched)


@pytest.mark.slow
def test_heatmap_decomposes_the_score(sample_run, sample_dir):
    out, _ = sample_run
    model = load_model(out / "model")
    img = model.preprocess(sorted((sample_dir / "images").glob("*.png"))[0])
    heat = model.heatmaps(img)
    assert heat.shape == (14, 256, 256) and np.isfinite(heat).all()
    s = model.raw_scores(img)  # heatmaps decompose the SVM margin, not the calibrated probability
    # contributions per bin sum to score - bias exactly
    f = per_bin_contributions(model, model.features(img))
    np.testing.assert_allclose(f.sum(1) + model.svm.intercept_, s, rtol=1e-4, atol=1e-4)
    # the heatmap integrates to the same (support squares lie inside the image)
    np.testing.assert_allclose(heat.sum((1, 2)), s - model.svm.intercept_, rtol=1e-3, atol=1e-3)
    # per-class maps differ
    assert not np.allclose(heat[0], heat[1])


@pytest.mark.slow
def test_cli_predict_and_failures(sample_run, sample_dir, tmp_path):
    out, _ = sample_run
    src = tmp_path / "in"
    src.mkdir()
    imgs = sorted((sample_dir / "images").glob("*.png"))[:2]
    for p in imgs:
        shutil.copy(p, src / p.name)
    (src / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    res = CliRunner().invoke(
        cli, ["predict", str(out / "model"), str(src), "--out-csv", str(tmp_path / "p.csv"), "--quiet"]
    )
    assert res.exit_code == 0, res.output
    df = pd.read_csv(tmp_path / "p.csv")
    assert len(df) == 2 and list(df.columns[1:]) == list(LABELS)
    fails = pd.read_csv(tmp_path / "p.failures.csv")
    assert fails["file"].str.endswith("broken.png").all() and "corrupt" in fails["reason"][0]


@pytest.mark.slow
def test_known_signal_is_learnt(sample_images):
    """A bright disc pasted into half of the real images must be found (AUROC > 0.9):
    a pipeline that learns nothing (the Uniandes study's 31 % mean AUROC) fails this."""
    rng = np.random.default_rng(0)
    imgs = [preprocess(p, 128) for p in sample_images[:240]]
    y = np.zeros((240, 14), np.uint8)
    y[::2, 1] = 1
    for i in range(0, 240, 2):
        cx, cy = rng.integers(30, 98, 2)
        cv2.circle(imgs[i], (int(cx), int(cy)), 16, 255, -1)
    y[:, 0] = rng.random(240) < 0.3  # a label with no signal
    cfg = BaselineConfig.from_preset("vlfeat", size=128, n_words=64, max_descriptors=20_000, equalization="none")
    pipe = make_pipeline(cfg)
    pipe.fit(imgs[:144], y[:144])
    s = pipe.decision_function(imgs[144:])
    assert roc_auc_score(y[144:, 1], s[:, 1]) > 0.9
    assert pipe.named_steps["svm"].coef_.shape == (14, 64 * 20 * 3)


@pytest.mark.cluster
@pytest.mark.slow
def test_dask_backend_gives_identical_features(sample_dir, tmp_path):
    from dask.distributed import Client, LocalCluster

    from phow_baseline.encoding.store import FeatureStore
    from phow_baseline.workflow.steps import build_image_cache, encode_split, fit_vocabulary

    cfg = BaselineConfig.from_preset(
        "vlfeat", size=128, n_words=32, max_descriptors=5000, vocab_images=20, n_jobs=2, shard_size=8
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MissingImagesWarning)
        ds = ChestXray14(sample_dir)
    names = ds.split_names("test")[:24]
    cache = build_image_cache(ds, names, tmp_path, cfg, progress=False, tag="t")
    vocab = fit_vocabulary(cache, range(len(cache)), tmp_path, cfg, progress=False)
    local = encode_split(cache, range(24), names, tmp_path / "loky", vocab, cfg, "t", progress=False)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as lc, Client(lc):
        dcfg = BaselineConfig(**{**cfg.to_dict(), "backend": "dask"})
        remote = encode_split(cache, range(24), names, tmp_path / "dask", vocab, dcfg, "t", progress=False)
    assert isinstance(remote, FeatureStore) and remote.n_shards == 3
    np.testing.assert_array_equal(local.load(), remote.load())


@pytest.mark.slow
def test_cli_vocab_then_encode(sample_dir, tmp_path):
    """The stepwise commands share one work folder: encode reuses the vocabulary that vocab wrote."""
    opts = [
        "--work",
        str(tmp_path / "w"),
        "--preset",
        "vlfeat",
        "--size",
        "128",
        "--n-words",
        "32",
        "--max-descriptors",
        "5000",
        "--vocab-images",
        "20",
        "--n-jobs",
        "2",
        "--quiet",
    ]
    res = CliRunner().invoke(cli, ["vocab", str(sample_dir), *opts])
    assert res.exit_code == 0, res.output
    assert "32 words" in res.output and (tmp_path / "w" / "vocabulary.npz").exists()
    mtime = (tmp_path / "w" / "vocabulary.npz").stat().st_mtime_ns
    res = CliRunner().invoke(cli, ["encode", str(sample_dir), "--split", "test", *opts])
    assert res.exit_code == 0, res.output
    assert "features: 59 images x 640" in res.output
    assert (tmp_path / "w" / "vocabulary.npz").stat().st_mtime_ns == mtime


def test_make_pipeline_does_not_equalize_preprocessed_images_again(sample_images):
    """The pipeline's input is preprocess()'s output (already equalized): its PHOW step must not
    equalize a second time, so its descriptors equal those of the training path (PhowModel.features)."""
    from phow_baseline.features.phow import make_phow

    cfg = BaselineConfig.from_preset("vlfeat", size=128)
    pipe = make_pipeline(cfg)
    assert pipe.named_steps["phow"].equalization == "none"
    img = preprocess(sample_images[0], size=cfg.size, equalization=cfg.equalization)
    ((f1, d1),) = pipe.named_steps["phow"].transform([img])
    ((f2, d2),) = make_phow(cfg).transform([img])
    assert np.array_equal(d1, d2) and np.array_equal(f1, f2)


@pytest.mark.slow
def test_vocabulary_cache_is_refit_for_another_split_or_other_images(sample_dir, tmp_path, capsys):
    """The cached vocabulary is reused only for the same split and the same images: words fitted on
    train_val must not be reused by a run that trains on `train` (it would have seen the val images)."""
    from phow_baseline.workflow.steps import build_image_cache, fit_vocabulary

    cfg = BaselineConfig.from_preset("vlfeat", size=64, n_words=8, max_descriptors=2000, vocab_images=10, n_jobs=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MissingImagesWarning)
        ds = ChestXray14(sample_dir)
    names = ds.split_names("test")[:12]
    cache = build_image_cache(ds, names, tmp_path, cfg, progress=False, tag="t")
    work = tmp_path / "w"

    def fit(rows, config):
        capsys.readouterr()
        v = fit_vocabulary(cache, rows, work, config, progress=False)
        return v, "reusing" in capsys.readouterr().err

    v1, reused = fit(range(12), cfg)
    assert not reused
    assert fit(range(12), cfg)[1]  # same split, same images: reused
    v2, reused = fit(range(6), cfg)  # other images
    assert not reused
    assert not fit(range(6), BaselineConfig(**{**cfg.to_dict(), "train_split": "train"}))[1]  # other split
    assert fit(range(6), BaselineConfig(**{**cfg.to_dict(), "train_split": "train"}))[1]


@pytest.mark.filterwarnings("ignore:Platt scaling")
def test_auto_solver_is_sdca_at_every_budget_and_calibration_uses_the_final_solver(
    sample_dir, tmp_path, monkeypatch, capsys
):
    """The 20,000-image rehearsal found two faults: ``solver="auto"`` chose liblinear for the calibration's
    held-out SVMs (fewer rows) while the final SVMs were SGD, and its budget counted one float64 matrix where
    liblinear's threads each hold a sparse copy (14.3 GB measured for a 4 GiB budget).  Since 0.3 ``"auto"`` is
    SDCA at every size (as exact, faster as measured): the budget no longer flips the solver, and the log still
    states liblinear's estimated peak."""
    from phow_baseline.workflow import steps

    # the estimate: the float64 matrix plus one sparse copy per thread (more threads, more memory)
    one, two = (steps.liblinear_peak_bytes(1000, 100, 300, 0.5, t) for t in (1, 2))
    assert one == 8 * 1000 * 100 + 12 * 1000 * 300 + 16 * (150_000 + 1000) and two - one == 16 * 151_000
    assert steps.liblinear_peak_bytes(2000, 100, 300, 0.5, 2) == 2 * two

    cfg = BaselineConfig.from_preset(
        "vlfeat",
        size=64,
        n_words=8,
        max_descriptors=2000,
        vocab_images=10,
        n_jobs=1,
        kernel_map="none",
        n_epochs=2,
        shard_size=64,
        calibration_folds=1,  # the single carve's held-out SVMs (cross-fitting: tests/test_crossfit.py)
        C=0.1,  # SDCA converges in a few epochs
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MissingImagesWarning)
        ds = ChestXray14(sample_dir)
    cache, rows, _ = steps.prepare_training(ds, tmp_path, cfg, progress=False)
    # a budget between the held-out rows' estimate and all rows': the old rule flipped solvers here
    store = steps.encode_split(
        cache,
        range(len(cache)),
        cache.names,
        tmp_path,
        steps.fit_vocabulary(cache, rows, tmp_path, cfg, progress=False),
        cfg,
        cfg.train_split,
        progress=False,
    )
    n_fit = len([r for r in rows if cache.names[r] not in set(ds.split_names("val"))])
    assert 0 < n_fit < len(rows)
    dens = steps.feature_density(store)
    assert 0 < dens <= 1
    lo, hi = (steps.liblinear_peak_bytes(n, store.dim, store.dim, dens, 1) for n in (n_fit, len(rows)))
    monkeypatch.setattr(steps, "IN_MEMORY_BUDGET_BYTES", (lo + hi) // 2)
    solvers = []
    real = steps.train_svms

    def spy(*a, **k):
        svm = real(*a, **k)
        solvers.append(svm.convergence()["solver"])
        return svm

    monkeypatch.setattr(steps, "train_svms", spy)
    capsys.readouterr()
    model = steps.train_model(sample_dir, tmp_path, cfg, progress=False, ds=ds)
    err = capsys.readouterr().err
    assert solvers == ["sdca", "sdca"], solvers  # final SVMs, then the held-out ones for the calibration
    assert "auto: SDCA at every size" in err and "liblinear's estimated peak here" in err
    assert model.calibrator is not None
    # with room for all rows, still SDCA for both (0.2 switched to liblinear here)
    monkeypatch.setattr(steps, "IN_MEMORY_BUDGET_BYTES", hi)
    solvers.clear()
    steps.train_model(sample_dir, tmp_path, cfg, progress=False, ds=ds)
    assert solvers == ["sdca", "sdca"]
    # liblinear when asked for
    solvers.clear()
    lib = BaselineConfig(**{**cfg.to_dict(), "solver": "liblinear"})
    steps.train_model(sample_dir, tmp_path, lib, progress=False, ds=ds)
    assert solvers == ["liblinear", "liblinear"]
