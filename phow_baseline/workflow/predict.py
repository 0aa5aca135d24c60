"""Score image files with a trained model of any kind into a predictions CSV (the ``predict`` command's work).

:func:`predict_to_csv` lists the images (files, and the images inside
folders; or, given a dataset kind, the images a dataset folder lists),
scores them with :func:`phow_baseline.workflow.steps.predict_paths`
(in parallel for a PHOW model, on its device for a CNN), and writes the
predictions CSV (``Image Index`` + one column per label of the model, in the
model's order, optionally a 0/1 decision column per label) and, when some
files could not be read, a CSV of those files and why, next to it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)


class NoImagesError(ValueError):
    """The inputs given to score hold no image file (a folder is searched for the image suffixes)."""


@dataclass
class PredictionRun:
    """What :func:`predict_to_csv` scored and wrote.

    Its fields are both the constructor's parameters and the attributes.

    Parameters
    ----------
    out_csv : Path
        The predictions CSV.
    names : list of str
        File names of the images scored, in the CSV's order.
    scores : ndarray, shape (n_images, n_labels)
        Their scores (probabilities, SVM margins or logits, as asked).
    labels : tuple of str
        The score columns' labels.
    failures : list of (str, str)
        ``(file, reason)`` of every file that could not be scored.
    failures_csv : Path or None
        The CSV listing the failures (``<out_csv stem>.failures.csv``), when there were some.
    """

    out_csv: Path
    names: list
    scores: np.ndarray
    labels: tuple
    failures: list = field(default_factory=list)
    failures_csv: Path | None = None


def failures_csv_path(out_csv) -> Path:
    """Where the failures of a predictions CSV are listed: ``preds.csv`` -> ``preds.failures.csv``.

    Parameters
    ----------
    out_csv : path
        The predictions CSV.

    Returns
    -------
    Path
    """
    out_csv = Path(out_csv)
    return out_csv.with_name(out_csv.stem + ".failures.csv")


def dataset_images(folders: Sequence, kind: str) -> tuple[list[str], list[Path]]:
    """The names and files of the frontal images that dataset folders list and hold.

    Parameters
    ----------
    folders : sequence of path
        Dataset folders (or CSV files for the plain-CSV kind).
    kind : str
        Their kind (:data:`phow_baseline.data.DATASETS`), or ``"auto"``: detected per folder.

    Returns
    -------
    names : list of str
        The datasets' image names (every split), folder after folder.
    paths : list of Path
        Their files.

    Raises
    ------
    phow_baseline.data.DatasetError
        A folder that is not a dataset of that kind (the message names the file and the problem).
    """
    from ..data import open_dataset

    names, paths = [], []
    for folder in folders:
        ds = open_dataset(folder, kind=None if kind == "auto" else kind)
        listed = ds.split_names("all")
        names += listed
        paths += [ds.image_path(n) for n in listed]
    return names, paths


def predict_to_csv(
    model,
    inputs: Sequence,
    out_csv,
    *,
    n_jobs: int = 1,
    backend: str | None = None,
    raw_scores: bool = False,
    decisions: bool = False,
    progress: bool = True,
    dataset: str | None = None,
) -> PredictionRun:
    """Score the images of ``inputs`` with ``model`` and write the predictions CSV.

    The checks that need no model come first: the CSV's folder is made (an
    unwritable one fails before any work) and the inputs must hold an image;
    then the model is loaded (when given as a directory) and the images are
    scored.  Unreadable files are skipped, logged (WARNING) and listed in
    :func:`failures_csv_path`; the others are still scored.

    Parameters
    ----------
    model : Model or path
        A loaded model (:class:`phow_baseline.model.Model`) or a model directory of any registered kind.
    inputs : sequence of path
        Image files and folders (searched recursively for :data:`phow_baseline.io.IMAGE_SUFFIXES`); with
        ``dataset``, dataset folders (or a CSV file for the plain-CSV kind).
    out_csv : path
        The predictions CSV to write (its folder is created).
    n_jobs : int
        Parallel workers for a PHOW model (-1: all cores); a CNN scores in this process.
    backend : str, optional
        joblib backend of the workers (:data:`phow_baseline.parallel.BACKENDS`; ``"dask"`` needs an open
        client).
    raw_scores : bool
        Write the model's raw scores (SVM margins, CNN logits) instead of its scores (probabilities).
    decisions : bool
        Add a 0/1 column ``<label> decision`` per label at the model's operating points.
    progress : bool
        Show a progress bar.
    dataset : str, optional
        Read each input as a dataset folder of this kind (one of :data:`phow_baseline.data.DATASETS`, or
        ``"auto"``: detected) and score the frontal images it lists that are on disk, named as the dataset
        names them (CheXpert's path below its folder, MIMIC's ``dicom_id``...); the columns are still the
        model's labels.

    Returns
    -------
    PredictionRun
        The names, scores and failures, and the files written.

    Raises
    ------
    NoImagesError
        ``inputs`` hold no image file.
    phow_baseline.model.DecisionsUnavailableError
        ``decisions`` for a model without operating points (before any image is scored).
    """
    from ..evaluation import write_predictions
    from ..io import IMAGE_SUFFIXES, list_images, write_failures_csv
    from ..model import DecisionsUnavailableError, load_model
    from .steps import predict_paths

    out_csv = Path(out_csv)
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    names = None
    if dataset is not None:
        names, paths = dataset_images(inputs, dataset)
    else:
        paths = list_images(inputs)
    if not paths:
        raise NoImagesError(
            f"no images to score in {', '.join(str(i) for i in inputs)} "
            + (
                f"(no listed image of the {dataset} dataset is on disk)"
                if dataset is not None
                else f"(folders are searched for {', '.join(IMAGE_SUFFIXES)} files)"
            )
        )
    model_dir = model if isinstance(model, (str, os.PathLike)) else None
    if model_dir is not None:
        model = load_model(model_dir)
    if decisions and not model.has_decisions:
        where = f"{model_dir}: " if model_dir is not None else ""
        raise DecisionsUnavailableError(
            f"{where}the model has no operating points (a PHOW model trained with calibration, the default, "
            "has them); decisions need them"
        )
    names, scores, failures = predict_paths(
        model, paths, progress=progress, n_jobs=n_jobs, backend=backend, raw_scores=raw_scores, names=names
    )
    decided = None
    if decisions:
        decided = model.decide(model.calibrate(scores) if raw_scores else scores)
    write_predictions(out_csv, names, scores, labels=model.labels, decisions=decided)
    for file, reason in failures:
        logger.warning(f"failed: {file}: {reason}")
    failures_csv = None
    if failures:
        failures_csv = write_failures_csv(failures_csv_path(out_csv), failures)
    return PredictionRun(
        out_csv=out_csv,
        names=list(names),
        scores=np.asarray(scores),
        labels=tuple(model.labels),
        failures=list(failures),
        failures_csv=failures_csv,
    )
