"""Patient-wise K-fold cross-validation of a configuration over the images present (the ``cv`` command).

:func:`cross_validate` pools the images of a split (all of them by default),
assigns each patient to one of K folds (:func:`patient_folds`, seeded and
written to ``folds.csv``), and for every fold fits the vocabulary on the
other folds' images, encodes every image with it, trains the SVMs (and the
Platt calibration, on the validation carve within the training folds) and
scores the held-out fold.  The out-of-fold scores of all images form one
run directory (``run/``: ``predictions.csv``, ``metrics.json`` with
per-class and mean AUROC and their bootstrap intervals, through
:func:`phow_baseline.evaluation.write_run_dir`).

The stages are those of :mod:`.steps`, with their caches, keyed so that
configurations that share a stage share its cache in one work folder:

* the image cache (:func:`.steps.build_image_cache`) depends on the image
  size and equalization only;
* a fold's vocabulary lives in ``cv-vocab-<hash>``, the hash of its
  fingerprint (:func:`.steps._vocab_fingerprint`: PHOW, sampling and encoding
  settings and the fold's training images): two configurations that differ
  only in ``C``, the class weights, the solver or the calibration reuse it,
  and the feature store encoded with it (:func:`.steps.encode_split`).

Resuming: each fold's model (``folds/r<R>-k<K>/model``) and out-of-fold
scores (``oof.npz``, written last and atomically) are kept; a fold whose
scores exist is skipped, one killed before is redone from the cached
vocabulary and features (whole shards only), so the result equals an
uninterrupted run's to the last digit.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..config import BaselineConfig
from ..encoding.store import STORE_DTYPE_SUFFIX
from ..io import DataFileError, atomic_path, atomic_save_npz, atomic_write_json, folder_lock, load_npz, read_json

#: Settings of where a run executes, not of what it computes: they may change between a run and its resumption.
EXECUTION_FIELDS = ("n_jobs", "backend")
#: Folds of :func:`cross_validate` unless told (the usual 5-fold cross-validation).
DEFAULT_FOLDS = 5


def _log(msg: str) -> None:
    import logging

    logger = logging.getLogger(__name__)
    (logger.warning if msg.startswith("warning") else logger.info)(msg)


def patient_folds(patients: Sequence, n_folds: int, seed: int = 0, repeat: int = 0) -> np.ndarray:
    """A seeded patient-wise assignment of images to ``n_folds`` folds of about equal size.

    The unique patients (compared as strings, sorted) are shuffled by
    ``numpy.random.default_rng([seed, repeat])``, then each in turn joins the
    fold holding the fewest images so far (the lowest-numbered on a tie), so
    every patient's images share one fold and the folds' sizes differ by at
    most one patient's images.

    Parameters
    ----------
    patients : sequence, shape (n_images,)
        The patient of every image (any values; compared as strings).
    n_folds : int
        Folds, at least 2 and at most the number of patients.
    seed : int, default=0
        Seed of the patient shuffle.
    repeat : int, default=0
        Repetition number, mixed into the seed (each repeat has its own folds).

    Returns
    -------
    ndarray of int64, shape (n_images,)
        The fold of each image, in ``[0, n_folds)``.

    Raises
    ------
    ValueError
        ``n_folds`` below 2 or above the number of patients.
    """
    keys = np.array([str(p) for p in patients], dtype=object)
    unique, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
    if int(n_folds) < 2 or int(n_folds) > len(unique):
        raise ValueError(f"n_folds must be between 2 and the number of patients ({len(unique)}), got {n_folds}")
    order = np.random.default_rng([int(seed), int(repeat)]).permutation(len(unique))
    sizes = np.zeros(int(n_folds), np.int64)
    fold_of_patient = np.empty(len(unique), np.int64)
    for p in order:
        k = int(np.argmin(sizes))
        fold_of_patient[p] = k
        sizes[k] += counts[p]
    return fold_of_patient[inverse]


def _holds_dtype(store_name: str, dtype: str) -> bool:
    """Whether the feature store folder ``store_name`` holds shards of ``dtype`` (by its name's suffix)."""
    suffix = STORE_DTYPE_SUFFIX[dtype]
    if suffix:
        return store_name.endswith(suffix)
    return not any(store_name.endswith(x) for x in STORE_DTYPE_SUFFIX.values() if x)


def _fold_dir(out: Path, repeat: int, fold: int) -> Path:
    return out / "folds" / f"r{repeat}-k{fold}"


def _vocab_dir(work: Path, config: BaselineConfig, train_names: Sequence[str]) -> Path:
    """The work sub-folder of a fold's vocabulary and features: named by the vocabulary's fingerprint."""
    from .steps import _vocab_fingerprint

    fp = _vocab_fingerprint(config, train_names)
    digest = hashlib.sha256(json.dumps(fp, sort_keys=True).encode()).hexdigest()[:16]
    return work / f"cv-vocab-{digest}"


def _write_folds_csv(path: Path, names, patients, folds: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["Image Index", "patient", *[f"fold_r{r}" for r in range(folds.shape[0])]])
        for i, name in enumerate(names):
            w.writerow([name, patients[i], *[int(folds[r, i]) for r in range(folds.shape[0])]])


def read_folds_csv(path) -> tuple[list[str], np.ndarray]:
    """The folds a :func:`cross_validate` run used, from its ``folds.csv``.

    Parameters
    ----------
    path : str or Path
        A ``folds.csv`` (``Image Index``, ``patient``, ``fold_r0``, ``fold_r1``, ...).

    Returns
    -------
    names : list of str
        The images, in the run's order.
    folds : ndarray of int64, shape (repeats, len(names))
        The fold of each image in each repeat.

    Raises
    ------
    DataFileError
        The file is missing or has no fold column.
    """
    path = Path(path)
    try:
        with open(path, newline="") as f:
            rows = list(csv.reader(f))
    except OSError as exc:
        raise DataFileError(f"{path}: cannot read the folds ({exc})") from None
    if not rows or rows[0][:2] != ["Image Index", "patient"] or len(rows[0]) < 3:
        raise DataFileError(f"{path}: not a folds file (header Image Index, patient, fold_r0, ...)")
    names = [r[0] for r in rows[1:]]
    folds = np.array([[int(v) for v in r[2:]] for r in rows[1:]], np.int64).T.reshape(len(rows[0]) - 2, len(names))
    return names, folds


def _fold(ds, cache, rows, test_rows, work: Path, fold_dir: Path, config: BaselineConfig, tag: str, progress):
    """Train one fold (or reload its model) and score its held-out rows: ``(scores, probabilities or None)``."""
    from ..model.phow_model import PhowModel
    from .steps import (
        calibrate_model,
        dataset_record,
        encode_split,
        fit_vocabulary,
        train_svms,
        training_targets,
    )

    names = cache.names
    train_names = [names[r] for r in rows]
    vdir = _vocab_dir(work, config, train_names)
    with folder_lock(vdir):
        vocab = fit_vocabulary(cache, rows, vdir, config, progress)
        store = encode_split(cache, range(len(cache)), names, vdir, vocab, config, tag, progress)
    model_dir = fold_dir / "model"
    model = None
    if (model_dir / "model.json").exists():
        try:
            model = PhowModel.load(model_dir)
            _log(f"cv: {fold_dir.name}: reusing the model in {model_dir}")
        except (DataFileError, ValueError, OSError) as exc:  # a kill while it was written: train it again
            _log(f"warning: {model_dir}: {exc}; training the fold again")
            model = None
    if model is None:
        Y = training_targets(ds, train_names, config)
        svm = train_svms(store, rows, Y, config, progress)
        model = PhowModel(
            config,
            vocab,
            svm,
            labels=ds.labels,
            info={"trained_on": f"cv {fold_dir.name}", "n_train": len(rows), "training": svm.convergence()},
            dataset=dataset_record(ds, config),
        )
        if config.calibration != "none":
            calibrate_model(model, ds, cache, store, rows, Y, vdir, progress)
        model.save(model_dir)
    scores = np.concatenate([model.decision_function(Xb) for Xb, _ in store.batches(test_rows)]).astype(np.float64)
    probabilities = model.calibrate(scores) if model.calibrator is not None else None
    return scores, probabilities


def cross_validate(
    data_dir,
    out_dir,
    config: BaselineConfig | None = None,
    *,
    n_folds: int = DEFAULT_FOLDS,
    repeats: int = 1,
    split: str = "all",
    work_dir=None,
    progress: bool = True,
    n_bootstrap: int = 1000,
    model_name: str | None = None,
    ds=None,
) -> dict:
    """Patient-wise K-fold cross-validation of ``config`` over the images of ``split`` present.

    Writes into ``out_dir``: ``config.json``; ``folds.csv`` (each image's
    patient and fold per repeat); ``folds/r<R>-k<K>/`` (the fold's model
    directory and ``oof.npz``, its out-of-fold scores); ``run/`` for the
    first repeat and ``run-r<R>/`` for the others (run directories of the
    out-of-fold scores: ``predictions.csv``, ``metrics.json`` with per-class
    and mean AUROC and bootstrap intervals, ``roc.png``); and ``cv.json``
    (folds, repeats, mean AUROC per repeat, timings, disk).  Rerunning
    resumes; ``out_dir`` must hold the same configuration (else an error).

    Parameters
    ----------
    data_dir : str or Path
        The dataset folder (or CSV file).
    out_dir : str or Path
        The output folder (locked while in use).
    config : BaselineConfig, optional
        The configuration (default ``BaselineConfig()``); its ``train_split`` and
        ``test_split`` are not used (the folds replace them).
    n_folds : int, default=5
        Folds (:data:`DEFAULT_FOLDS`), at least 2.
    repeats : int, default=1
        Repetitions with other seeded folds (repeat ``r`` shuffles with ``[config.seed, r]``).
    split : str, default="all"
        The dataset's images pooled (``"all"``), or one split (``"train_val"`` keeps the official test
        images out).
    work_dir : str or Path, optional
        The caches' folder, shareable by several configurations (default ``out_dir/work``).
    progress : bool, default=True
        Show progress bars.
    n_bootstrap : int, default=1000
        Bootstrap resamples of the AUROC intervals (0: none).
    model_name : str, optional
        The name in the tables (default ``"PHOW cv (<encoding label>)"``).
    ds : ChestDataset, optional
        The dataset, already open.

    Returns
    -------
    dict
        ``cv.json``'s contents: ``n_folds``, ``repeats``, ``split``, ``n_images``, ``mean_auroc`` (of each
        repeat's out-of-fold scores), ``mean_auroc_ci95``, ``run_dirs``, ``seconds`` (wall time of this
        call), ``seconds_per_image``, ``feature_bytes_per_image`` and ``config``.

    Raises
    ------
    ValueError
        No image of ``split`` present, fewer patients than folds, or ``out_dir`` holding another
        configuration or other folds.
    """
    from ..encoding.registry import encoding_for
    from ..evaluation import write_run_dir
    from ..parallel import dask_client_active
    from .steps import build_image_cache, dataset_tag, open_dataset

    config = config or BaselineConfig()
    if config.backend == "dask" and not dask_client_active():
        config = dataclasses.replace(config, backend=None)
    if int(repeats) < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    out = Path(out_dir)
    work = Path(work_dir) if work_dir is not None else out / "work"
    started = time.perf_counter()
    with folder_lock(out, what="cross-validation folder"):
        config_path = out / "config.json"
        if config_path.exists():
            held, now = read_json(config_path, what="cross-validation config"), config.to_dict()
            diff = sorted(k for k in set(held) | set(now) if held.get(k) != now.get(k) and k not in EXECUTION_FIELDS)
            if diff:
                raise ValueError(
                    f"{out}: holds the cross-validation of another configuration (differs in {diff}); use another --out"
                )
        atomic_write_json(config_path, config.to_dict())
        ds = ds if ds is not None else open_dataset(data_dir, config, work_dir=work)
        names = ds.split_names(split)
        if not names:
            raise ValueError(f"{ds.root}: no image of split {split!r} is present")
        tag = dataset_tag(ds, f"cv-{split}")
        with folder_lock(work):
            cache = build_image_cache(ds, names, work, config, progress, tag=f"cv-{split}")
        ok = [i for i in range(len(cache)) if cache.ok[i]]
        ok_names = [cache.names[i] for i in ok]
        patients = ds.patients(ok_names)
        folds = np.stack([patient_folds(patients, n_folds, config.seed, r) for r in range(int(repeats))])
        folds_path = out / "folds.csv"
        if folds_path.exists():
            old_names, old_folds = read_folds_csv(folds_path)
            if old_names != ok_names or not np.array_equal(old_folds, folds):
                raise ValueError(f"{folds_path}: written for other images or folds; use another --out")
        else:
            _write_folds_csv(folds_path, ok_names, patients, folds)
        y_true, mask = ds.targets(ok_names, _evaluation_policy())
        encoding = encoding_for(config)
        name = model_name or f"PHOW cv ({encoding.label})"
        result: dict = {
            "n_folds": int(n_folds),
            "repeats": int(repeats),
            "split": split,
            "n_images": len(ok_names),
            "n_unreadable": len(cache) - len(ok),
            "mean_auroc": [],
            "mean_auroc_ci95": [],
            "run_dirs": [],
        }
        for r in range(int(repeats)):
            scores = np.full((len(ok), len(ds.labels)), np.nan)
            probs = None
            for k in range(int(n_folds)):
                fdir = _fold_dir(out, r, k)
                oof = fdir / "oof.npz"
                test_pos = np.flatnonzero(folds[r] == k)
                train_rows = [ok[i] for i in np.flatnonzero(folds[r] != k)]
                test_rows = [ok[i] for i in test_pos]
                if oof.exists():
                    _log(f"cv: repeat {r} fold {k}: done before ({oof})")
                    arrays = load_npz(oof)
                else:
                    _log(f"cv: repeat {r} fold {k}: {len(train_rows)} training, {len(test_rows)} held-out images")
                    s, p = _fold(ds, cache, train_rows, test_rows, work, fdir, config, tag, progress)
                    arrays = {"names": np.array([cache.names[i] for i in test_rows]), "scores": s}
                    if p is not None:
                        arrays["probabilities"] = p
                    atomic_save_npz(oof, arrays)
                if list(arrays["names"]) != [cache.names[i] for i in test_rows]:
                    raise ValueError(f"{oof}: scores of other images than fold {k}'s; delete {fdir} to redo it")
                scores[test_pos] = arrays["scores"]
                if "probabilities" in arrays:
                    probs = np.zeros_like(scores) if probs is None else probs
                    probs[test_pos] = arrays["probabilities"]
            run_dir = out / ("run" if r == 0 else f"run-r{r}")
            metrics = write_run_dir(
                run_dir,
                model_name=name,
                kind="phow",
                split=f"cv-{split}",
                names=ok_names,
                y_true=y_true,
                scores=scores,
                labels=list(ds.labels),
                n_bootstrap=n_bootstrap,
                seed=config.seed,
                probabilities=probs,
                extra={
                    "config": config.to_dict(),
                    "encoding": config.encoding,
                    "cross_validation": {"n_folds": int(n_folds), "repeat": r, "folds_csv": str(folds_path)},
                },
                mask=None if mask.all() else mask,
            )
            result["mean_auroc"].append(metrics["mean_auroc"])
            result["mean_auroc_ci95"].append(metrics["mean_auroc_ci95"])
            result["run_dirs"].append(str(run_dir))
        seconds = time.perf_counter() - started
        feature_bytes = sum(
            f.stat().st_size
            for k in range(int(n_folds))
            for d in _vocab_dir(work, config, [ok_names[i] for i in np.flatnonzero(folds[0] != k)]).glob(
                f"features-{tag}-*"
            )
            if _holds_dtype(d.name, config.feature_dtype)
            for f in d.glob("feat_*.npy")
        )
        result.update(
            seconds=seconds,
            seconds_per_image=seconds / max(1, len(ok)),
            feature_bytes_per_image=feature_bytes / max(1, len(cache)) / int(n_folds),
            config=config.to_dict(),
        )
        atomic_write_json(out / "cv.json", result)
    return result


def _evaluation_policy():
    from ..data import EVALUATION_POLICY

    return EVALUATION_POLICY
