"""The SDCA solver in the workflow: ``--solver sdca`` through the command line, ``solver="auto"`` picking it,
its per-class record in model.json and metrics.json, and its resume after an interrupted epoch."""

import json
import warnings

import numpy as np
import pytest
from click.testing import CliRunner

from phow_baseline.classification.sdca import SDCAStopped
from phow_baseline.config import BaselineConfig, ConfigError
from phow_baseline.encoding.store import FeatureStore
from phow_baseline.workflow import steps

#: A tiny run of the sample: 64 px, 8 words, no kernel map; C = 0.1 so that SDCA converges in a few epochs.
TINY_OPTIONS = (
    "--preset vlfeat --size 64 --n-words 8 --max-descriptors 2000 --vocab-images 10 --n-jobs 1 --kernel-map none "
    "--C 0.1"
).split()


def _signal_store(tmp_path, n=300, d=20, seed=0):
    """A feature store of non-negative features with a known signal in the first 14 columns."""
    rng = np.random.default_rng(seed)
    Y = (rng.random((n, 14)) < 0.25).astype(np.uint8)
    X = np.abs(rng.normal(0, 1, (n, d))).astype(np.float32)
    X[:, :14] += 2.0 * Y
    st = FeatureStore.create(tmp_path / "features-x", [str(i) for i in range(n)], d, {}, shard_size=64)
    for s in range(st.n_shards):
        r = st.shard_rows(s)
        st.write_shard(s, X[r.start : r.stop])
    return st, Y


def test_config_accepts_sdca_and_calibration_folds():
    cfg = BaselineConfig.from_preset("vlfeat", solver="sdca", calibration_folds=3)
    assert BaselineConfig(**cfg.to_dict()) == cfg
    assert (
        BaselineConfig.from_preset("vlfeat").calibration_folds == 5
        and BaselineConfig.from_preset("vlfeat").solver == "auto"
    )
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ConfigError, match="calibration_folds"):
            BaselineConfig.from_preset("vlfeat", calibration_folds=bad)
    with pytest.raises(ConfigError, match="solver"):
        BaselineConfig.from_preset("vlfeat", solver="newton")
    # a 0.1/0.2 config (no calibration_folds key) still loads, with the default
    old = {k: v for k, v in cfg.to_dict().items() if k != "calibration_folds"}
    assert BaselineConfig.from_preset("vlfeat", **old).calibration_folds == 5


def test_auto_picks_sdca_whether_or_not_liblinear_fits(tmp_path, monkeypatch, caplog):
    st, Y = _signal_store(tmp_path)
    rows = list(range(len(Y)))
    cfg = BaselineConfig.from_preset("vlfeat", n_jobs=1, C=0.1, seed=1)  # solver auto, the bag of words' homkermap
    monkeypatch.setattr(steps, "IN_MEMORY_BUDGET_BYTES", 1)
    solver, why, kmap = steps.resolve_solver(st, len(rows), cfg)
    assert solver == "sdca" and "SDCA at every size" in why and kmap is not None
    with caplog.at_level("INFO", logger=steps.__name__):
        svm = steps.train_svms(st, rows, Y, cfg, progress=False)
    assert svm.convergence()["solver"] == "sdca" and svm.coef_.shape == (14, 3 * 20)  # mapped on the fly
    assert "auto: SDCA at every size" in caplog.text and "SDCA, out of core" in caplog.text
    assert svm.converged_.all()
    # with room in the budget, still SDCA (0.2 chose liblinear here); liblinear when named
    monkeypatch.setattr(steps, "IN_MEMORY_BUDGET_BYTES", 2**40)
    assert steps.resolve_solver(st, len(rows), cfg)[0] == "sdca"
    assert (
        steps.resolve_solver(st, len(rows), BaselineConfig.from_preset("vlfeat", n_jobs=1, solver="liblinear"))[0]
        == "liblinear"
    )


def test_sdca_training_resumes_after_an_interrupted_epoch(tmp_path, caplog):
    """Stopped after its third epoch (an exception in ``on_epoch`` standing in for kill -9), the rerun takes
    up the checkpoint in the work folder and ends with the uninterrupted training's very weights."""
    st, Y = _signal_store(tmp_path, seed=2)
    rows = list(range(len(Y)))
    cfg = BaselineConfig.from_preset("vlfeat", n_jobs=1, C=0.1, seed=3, solver="sdca")
    ref = steps.train_svms(st, rows, Y, cfg, progress=False)
    ckpt = steps.sdca_checkpoint_path(st, rows, Y, cfg)
    assert ckpt.exists() and ckpt.parent == st.directory.parent
    ckpt.unlink()
    assert ref.n_iter_.max() > 3  # the stop below is mid-training

    def stop_after_3(solver):
        if solver.epochs_done == 3:
            raise SDCAStopped("killed")

    with pytest.raises(SDCAStopped):
        steps.train_svms(st, rows, Y, cfg, progress=False, on_epoch=stop_after_3)
    assert ckpt.exists()
    with caplog.at_level("INFO", logger=steps.__name__):
        again = steps.train_svms(st, rows, Y, cfg, progress=False)
    assert f"resuming from {ckpt.name}" in caplog.text
    np.testing.assert_array_equal(again.coef_, ref.coef_)
    np.testing.assert_array_equal(again.intercept_, ref.intercept_)
    np.testing.assert_array_equal(again.n_iter_, ref.n_iter_)
    # other rows, labels or settings never take it up
    assert steps.sdca_checkpoint_path(st, rows[1:], Y[1:], cfg) != ckpt
    assert (
        steps.sdca_checkpoint_path(st, rows, Y, BaselineConfig.from_preset("vlfeat", n_jobs=1, C=0.2, seed=3)) != ckpt
    )
    assert steps.sdca_checkpoint_path(st, rows, Y, cfg, folds=np.arange(len(rows)) % 2) != ckpt


def test_training_record_per_class_and_summary(tmp_path):
    st, Y = _signal_store(tmp_path, seed=4)
    rows = list(range(len(Y)))
    labels = [f"finding {k}" for k in range(14)]
    svm = steps.train_svms(
        st, rows, Y, BaselineConfig.from_preset("vlfeat", n_jobs=1, C=0.1, solver="sdca", kernel_map="none"), False
    )
    rec = steps.training_record(svm, labels, "; auto: liblinear's estimated peak 9 GiB > the 4 GiB budget")
    assert rec["solver"] == "sdca" and list(rec["per_class"]) == labels
    for j, lab in enumerate(labels):
        e = rec["per_class"][lab]
        assert e["converged"] is bool(svm.converged_[j]) and e["epochs"] == int(svm.n_iter_[j]) > 0
        assert e["duality_gap"] == pytest.approx(float(svm.duality_gap_[j])) and e["time_s"] > 0
        assert 0 <= e["relative_gap"] < svm.tol
    assert rec["solver_choice"].startswith("liblinear's estimated peak") and rec["not_converged"] == []
    json.dumps(rec)  # JSON-ready
    text = steps.describe_training(rec)
    assert "training: sdca, 14 of 14 class(es) converged" in text and "NOT converged" not in text
    # a record with classes that did not converge names them
    rec["per_class"]["finding 3"]["converged"] = False
    rec["converged"][3] = False
    rec["not_converged"] = ["finding 3"]
    assert "13 of 14 class(es) converged; NOT converged: finding 3" in steps.describe_training(rec)


@pytest.mark.slow
def test_cli_train_and_run_with_sdca(sample_dir, tmp_path):
    """``run`` and ``train`` with ``--solver sdca``: the solver and its per-class record in model.json and
    metrics.json, and the summary naming the classes that did not converge (SGD after one epoch)."""
    from phow_baseline.cli import main as cli

    out = tmp_path / "out"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = CliRunner().invoke(
            cli,
            ["run", str(sample_dir), "--out", str(out), "--quiet", "--solver", "sdca", "--calibration-folds", "2"]
            + TINY_OPTIONS
            + ["--n-bootstrap", "20"],
        )
    assert res.exit_code == 0, res.output
    assert "training: sdca, 14 of 14 class(es) converged" in res.output
    assert "calibration: cross-fitted on 2 patient-wise folds" in res.output
    meta = json.loads((out / "model" / "model.json").read_text())
    assert meta["params"]["svm"]["solver"] == "sdca" and meta["training"]["solver"] == "sdca"
    assert meta["calibrated_on"]["method"] == "cross-fitted" and meta["calibrated_on"]["folds"] == 2
    metrics = json.loads((out / "run" / "metrics.json").read_text())
    per = metrics["training"]["per_class"]
    assert set(per) == set(metrics["labels"]) and len(per) == 14
    assert all(e["converged"] and e["epochs"] > 0 and e["time_s"] > 0 and e["duality_gap"] >= 0 for e in per.values())
    assert metrics["training"] == meta["training"]
    assert metrics["calibration"]["fitted_on"]["folds"] == 2

    # train, reusing the run's work folder: SGD after 1 epoch does not converge, and the summary says which
    res = CliRunner().invoke(
        cli,
        ["train", str(sample_dir), "--work", str(out / "work"), "--model", str(tmp_path / "m"), "--quiet"]
        + ["--solver", "sgd", "--epochs", "1", "--calibration-folds", "1"]
        + TINY_OPTIONS,
    )
    assert res.exit_code == 0, res.output
    meta = json.loads((tmp_path / "m" / "model.json").read_text())
    bad = meta["training"]["not_converged"]
    assert meta["params"]["svm"]["solver"] == "sgd" and bad
    assert f"NOT converged: {', '.join(bad)}" in res.output
    assert meta["calibrated_on"]["method"] == "validation carve"


def test_sdca_out_of_core_stops_at_the_epochs_cap_and_says_so(tmp_path, monkeypatch, caplog):
    """Mapped rows beyond SDCA's in-memory budget: at most ``n_epochs`` epochs (each re-reads and re-maps every
    row), for the final SVMs and every fold's; the log and the warning say so; in memory, no cap (the gap decides)."""
    from phow_baseline.classification import sdca

    st, Y = _signal_store(tmp_path, seed=4)
    rows = np.arange(len(Y))
    cfg = BaselineConfig.from_preset("vlfeat", n_jobs=1, C=10.0, seed=1, n_epochs=2)  # C = 10: not 2 epochs' work
    kmap = steps.resolve_solver(st, len(rows), cfg)[2]
    assert steps.sdca_max_epochs(len(rows), steps.mapped_dimension(st, kmap), cfg) is None  # 300 x 60 mapped floats fit
    monkeypatch.setattr(sdca, "IN_MEMORY_BYTES", 4 * len(rows) * 3 * st.dim - 1)
    assert steps.sdca_max_epochs(len(rows), steps.mapped_dimension(st, kmap), cfg) == 2
    assert (
        steps.sdca_max_epochs(len(rows), steps.mapped_dimension(st, None), cfg) is None
    )  # unmapped: a third of the bytes
    with caplog.at_level("INFO", logger=steps.__name__):
        svm = steps.train_svms(st, rows, Y, cfg, progress=False)
    assert svm.max_epochs == 2 and svm.n_iter_.max() <= 2 and not svm.converged_.all()
    assert "at most 2 epochs (--epochs)" in caplog.text
    assert "the cap out of core: --epochs raises it" in caplog.text
    folds = np.arange(len(rows)) % 3
    final, fold_models = steps.train_svms_folds(st, rows, Y, folds, cfg, progress=False)
    assert all(m.max_epochs == 2 and m.n_iter_.max() <= 2 for m in [final, *fold_models])
    assert "trained together: one reading of the rows per epoch" in caplog.text
    # killed after the first epoch's checkpoint (of all 4 trainings at once), then resumed: the log says from
    # where, and the models are those of the uninterrupted run (which left its checkpoint: start afresh)
    for f in st.directory.parent.glob("sdca-folds-*.npz"):
        f.unlink()

    def kill(solver):
        if solver.epochs_done == 1:
            raise SDCAStopped("killed")

    with pytest.raises(SDCAStopped):
        steps.train_svms_folds(st, rows, Y, folds, cfg, progress=False, on_epoch=kill)
    caplog.clear()
    with caplog.at_level("INFO", logger=steps.__name__):
        again, again_folds = steps.train_svms_folds(st, rows, Y, folds, cfg, progress=False)
    assert "resuming after epoch 1 (sdca-folds-" in caplog.text
    for a, b in zip([final, *fold_models], [again, *again_folds]):
        np.testing.assert_array_equal(a.coef_, b.coef_)
    monkeypatch.setattr(sdca, "IN_MEMORY_BYTES", 2**30)
    with pytest.warns(UserWarning, match="another training"):  # the capped run's checkpoint: other settings
        free = steps.train_svms(st, rows, Y, cfg, progress=False)
    assert free.max_epochs is None and free.n_iter_.max() > 2
