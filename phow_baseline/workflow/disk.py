"""The disk a run needs, estimated before it starts, against the free space.

The per-image figures are README.md's ("The full dataset", measured on the
112,120-image rehearsal): the image cache holds ``size * size`` bytes per
image (``uint8``; 64 KiB at 256 px); the feature store holds the encoding's
vector per image in the config's ``feature_dtype`` (dense: the bag of words'
12,000 float32 are 47 KiB, Fisher vectors' 204,800 float16 400 KiB); an
out-of-core training keeps a checkpoint per set of 14 SVMs (SDCA: the final
SVMs and each cross-fitting fold's, :data:`SDCA_BYTES_PER_ROW_LABEL` per
training row and label plus the ``float64`` weights, all in one file that is
rewritten after each epoch, so twice that while it is written; SGD: the SVMs' and the
calibration's held-out SVMs', two ``float64`` weight matrices each, 14
labels x the kernel-mapped dimension: 8 MB for the bag of words); the model
holds the vocabulary and the 14 weight vectors (about 2 MB); the run folder
the predictions (about 260 bytes per test image) and its figures.  A run that starts by refusing costs
nothing; one that fills the disk halfway stops with
:class:`~phow_baseline.io.OutOfSpaceError` and resumes after space is freed,
but only after hours of work may be lost to the wait.

What a folder already holds (a resumed run's caches) is subtracted: a rerun
needs only what is left to write.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

import numpy as np

from ..config import BaselineConfig
from ..io import check_free_space, format_bytes, free_bytes

logger = logging.getLogger(__name__)

#: The labels, one SVM each.
N_LABELS = 14
#: PHOW descriptor length (SIFT: 4 x 4 cells x 8 orientations).
DESCRIPTOR_DIM = 128
#: Bytes of a phantom PNG per pixel: 0.67 measured at 256 px (412 demo images, 18.0 MB), rounded up.
PHANTOM_PNG_BYTES_PER_PIXEL = 0.75
#: Bytes per test image of the run folder (predictions.csv: a name and 14 scores at 10 significant digits).
PREDICTION_BYTES_PER_IMAGE = 260
#: Bytes of the run folder besides the predictions (metrics.json, roc.png, comparison.md/.csv) and of
#: the small JSON files of the caches and the model: a generous 2 MiB.
FIXED_BYTES = 2 * 2**20
#: Bytes of bookkeeping per image in each cache (its name in index.json and params.json, its ok flag).
INDEX_BYTES_PER_IMAGE = 64
#: Bytes an SDCA checkpoint holds per training row and label: the dual variable and the margin
#: (``float64`` each), the label (``int8``) and the shrinking flag (``bool``).
SDCA_BYTES_PER_ROW_LABEL = 8 + 8 + 1 + 1


def encoding_dimension(config: BaselineConfig) -> int:
    """Length of one image's stored feature vector under ``config`` (``float32`` entries), before fitting.

    Parameters
    ----------
    config : BaselineConfig
        The settings (``encoding`` and its sizes: words, pyramid, Gaussians, PCA dimension).

    Returns
    -------
    int
        The registered encoding's :meth:`~phow_baseline.encoding.registry.Encoding.dimension`: bag of
        words 12,000 by default, Fisher vectors 204,800, VLAD 40,960.
    """
    from ..encoding.registry import encoding_for

    return int(encoding_for(config).dimension(config))


def _mapped_dimension(config: BaselineConfig, dim: int) -> int:
    """Columns the SVMs see: 3 per feature through a kernel map (order 1: the bag of words'), else the features."""
    from ..encoding.registry import encoding_for

    return dim * (1 if encoding_for(config).kernel_map_name(config) == "none" else 3)


def _checkpoint_bytes(config: BaselineConfig, n_train: int, weights: int) -> int:
    """Bytes of the training's checkpoints (``weights``: one set of 14 SVMs' float64 weights): none for
    liblinear (in memory); SGD two weight matrices per set of SVMs; SDCA (what ``solver="auto"`` picks,
    :func:`~.steps.choose_solver`) the weights and the per-row state of each set: the final SVMs and,
    cross-fitted, each of the K folds' (on the other K - 1 folds' rows), or with one carve the held-out SVMs
    (about 90% of the rows).
    """
    if config.solver == "liblinear":
        return 0
    calibrated = config.calibration != "none"
    if config.solver == "sgd":
        return (2 if calibrated else 1) * 2 * weights
    k = config.calibration_folds
    if not calibrated:
        sets, rows = 1, float(n_train)
    elif k >= 2:
        # the final SVMs' n rows and (K - 1) n / K for each fold, in one file trained together
        # (sdca.run_together): rewritten after each epoch, so for a moment the old file and the new one
        sets, rows = 2 * (1 + k), 2 * float(n_train) * k
    else:
        sets, rows = 2, 1.9 * n_train
    return int(sets * weights + rows * N_LABELS * SDCA_BYTES_PER_ROW_LABEL)


def _vocabulary_bytes(config: BaselineConfig) -> int:
    """The fitted vocabulary's arrays, an upper bound: float64 words (or means, variances and priors) of
    the largest of the encodings' sizes, and a 128 x 128 PCA (at most a few MB).
    """
    words = max(config.n_words, config.fv_components, config.vlad_words)
    return 8 * 3 * words * DESCRIPTOR_DIM + 8 * DESCRIPTOR_DIM * (DESCRIPTOR_DIM + 1)


def run_disk_estimate(n_train: int, n_test: int, config: BaselineConfig) -> dict[str, int]:
    """Bytes a ``run`` writes, part by part (see the module's figures).

    Parameters
    ----------
    n_train, n_test : int
        Images of the training split and of the images scored (the test
        split, plus the validation carve when the model scores it).
    config : BaselineConfig
        The run's settings (encoding and its sizes, image ``size``, solver, calibration).

    Returns
    -------
    dict of str to int
        ``{"image cache", "features", "checkpoints", "model", "run"}``
        in bytes (the checkpoints are 0 when liblinear trains in memory).
    """
    n = int(n_train) + int(n_test)
    dim = encoding_dimension(config)
    mapped = _mapped_dimension(config, dim)
    weights = 8 * N_LABELS * (mapped + 1)
    itemsize = np.dtype(config.feature_dtype).itemsize
    return {
        "image cache": n * (config.size * config.size + INDEX_BYTES_PER_IMAGE),
        "features": n * (itemsize * dim + INDEX_BYTES_PER_IMAGE),
        "checkpoints": _checkpoint_bytes(config, int(n_train), weights),
        "model": weights + 2 * _vocabulary_bytes(config),  # the work folder keeps a copy of the vocabulary
        "run": int(n_test) * PREDICTION_BYTES_PER_IMAGE + FIXED_BYTES,
    }


def estimate_run_bytes(n_train: int, n_test: int, config: BaselineConfig) -> int:
    """Bytes a whole ``run`` writes: the sum of :func:`run_disk_estimate`.

    Parameters
    ----------
    n_train, n_test : int
        Training and scored images.
    config : BaselineConfig
        The run's settings (encoding and its sizes, image ``size``, solver, calibration).

    Returns
    -------
    int
        Bytes (an estimate; on the full dataset at 256 px the bag of words,
        ``--preset vlfeat``, about 12.9 GB, the default Fisher vectors in
        float16 about 54 GB, as README.md says).
    """
    return sum(run_disk_estimate(n_train, n_test, config).values())


def estimate_phantom_bytes(n_images: int, size: int) -> int:
    """Bytes of a phantom of ``n_images`` PNG images of ``size`` x ``size`` pixels (and its CSVs).

    ``n_images * (0.75 * size^2 + 200)`` bytes (:data:`PHANTOM_PNG_BYTES_PER_PIXEL`, measured) plus
    :data:`FIXED_BYTES`.

    Parameters
    ----------
    n_images : int
        Images of the phantom (patients plus follow-ups).
    size : int
        Image side in pixels.

    Returns
    -------
    int
        Estimated bytes, rounded up.
    """
    return int(math.ceil(n_images * (PHANTOM_PNG_BYTES_PER_PIXEL * size * size + 200))) + FIXED_BYTES


def bytes_under(path) -> int:
    """Bytes of the files under ``path`` (0 if it does not exist; links not followed).

    Parameters
    ----------
    path : str or path-like
        A file or a folder.

    Returns
    -------
    int
        The file's size, or the sum of the sizes of the files below the folder, in bytes (apparent
        sizes, not disk blocks).
    """
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_size
            except OSError:  # gone meanwhile
                pass
    return total


def _describe(parts: dict[str, int]) -> str:
    return ", ".join(f"{k} {format_bytes(v)}" for k, v in parts.items() if v)


#: The folders of ``out_dir`` a run writes (what is there already is not written again).
RUN_OUTPUTS = ("work", "model", "run")


def check_run_space(out_dir, n_train: int, n_test: int, config: BaselineConfig) -> dict[str, int]:
    """Refuse a run that cannot fit on the disk of ``out_dir``, before any work.

    Parameters
    ----------
    out_dir : str or path-like
        The run's output folder (``work/``, ``model/``, ``run/`` inside).
    n_train, n_test : int
        Training and scored images.
    config : BaselineConfig
        The run's settings (encoding and its sizes, image ``size``, solver, calibration).

    Returns
    -------
    dict of str to int
        The estimate (:func:`run_disk_estimate`).

    Raises
    ------
    phow_baseline.io.OutOfSpaceError
        When the estimate, less what ``out_dir`` already holds, exceeds the
        free space: ``"OUT: no space left on device for the run (about N
        needed, M free; image cache ..., features ...)"``.
    """
    out = Path(out_dir)
    parts = run_disk_estimate(n_train, n_test, config)
    present = sum(bytes_under(out / name) for name in RUN_OUTPUTS)
    need = max(0, sum(parts.values()) - present)
    detail = _describe(parts) + (f"; {format_bytes(present)} already there" if present else "")
    check_free_space(out, need, "the run", detail=detail + "; free space or choose another --out")
    logger.info(
        "disk: the run needs about %s more in %s (%s); %s free",
        format_bytes(need),
        out,
        detail,
        format_bytes(free_bytes(out)),
    )
    return parts


def check_run_space_for_dataset(out_dir, ds, config: BaselineConfig) -> dict[str, int]:
    """:func:`check_run_space` with the image counts of a dataset (train split; test split and, when the
    model scores it itself, the validation carve).

    Parameters
    ----------
    out_dir : str or path-like
        The run's output folder.
    ds : dataset
        The dataset of the run (``split_names(split)`` lists a split's images).
    config : BaselineConfig
        The run's settings (encoding and its sizes, image ``size``, solver, calibration).
        ``train_split``, ``test_split`` and ``calibration`` decide the counts.

    Returns
    -------
    dict of str to int
        The estimate in bytes (:func:`run_disk_estimate`).

    Raises
    ------
    phow_baseline.io.OutOfSpaceError
        When the run cannot fit (see :func:`check_run_space`).
    """
    n_train = len(ds.split_names(config.train_split))
    n_test = len(ds.split_names(config.test_split))
    if config.train_split != "train_val" and config.calibration != "none":
        n_test += len(ds.split_names("val"))
    return check_run_space(out_dir, n_train, n_test, config)


def check_demo_space(
    out_dir,
    n_patients: int,
    config: BaselineConfig,
    size: int | None = None,
    n_followup_patients: int = 6,
    test_fraction: float = 0.25,
) -> int:
    """Refuse a demo that cannot fit on the disk of ``out_dir``: the phantom (unless already there) and the run.

    Parameters
    ----------
    out_dir : path
        The demo's folder (``phantom/`` and the run's folders inside).
    n_patients : int
        Phantom patients: one image each, three for each follow-up patient.
    config : BaselineConfig
        The run's settings (encoding and its sizes, image ``size``, solver, calibration).
    size : int, optional
        Phantom image side in pixels (default: the phantom's, 256).
    n_followup_patients : int, default 6
        Patients with a follow-up series, as :func:`phow_baseline.data.phantom.make_phantom_dataset`.
    test_fraction : float, default 0.25
        Share of the images in the test split, as :func:`phow_baseline.data.phantom.make_phantom_dataset`.

    Returns
    -------
    int
        The estimated bytes still to write.

    Raises
    ------
    phow_baseline.io.OutOfSpaceError
        When it cannot fit (both numbers in the message).
    """
    from ..data.phantom import DEFAULT_SIZE

    out = Path(out_dir)
    size = DEFAULT_SIZE if size is None else int(size)
    n_images = int(n_patients) + 2 * min(int(n_followup_patients), int(n_patients))
    n_test = int(round(test_fraction * n_images))
    parts = {
        "phantom": 0 if (out / "phantom" / "phantom_truth.json").exists() else estimate_phantom_bytes(n_images, size)
    }
    parts.update(run_disk_estimate(n_images - n_test, n_test, config))
    present = sum(bytes_under(out / name) for name in RUN_OUTPUTS)
    need = max(0, sum(parts.values()) - present)
    detail = _describe(parts) + (f"; {format_bytes(present)} already there" if present else "")
    check_free_space(out, need, "the demo", detail=detail + "; free space or choose another --out")
    return need
