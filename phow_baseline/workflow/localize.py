"""Where a model looks, on files: heatmap overlays of images, the NIH box evaluation, follow-up differences.

The work of the ``localize``, ``localize-eval`` and ``diff`` commands, for a
model of any kind (the PHOW model's own heatmaps, a CNN's class activation
maps):

* :func:`localize_images`: per-class heatmap overlays (PNG) of image files,
  with the boxes drawn around the heatmaps' strong regions;
* :func:`evaluate_localization_dir`: accuracy at T(IoBB) and T(IoU) against
  the NIH boxes of a dataset folder, written as a localization directory;
* :func:`diff_images`: two X-rays of one patient registered and differenced,
  with the model's score (and, where it has them, heatmap) differences.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

logger = logging.getLogger(__name__)


def _load(model):
    """``(model, its directory or None)``: a model directory is loaded, a loaded model kept."""
    from ..model import load_model

    if isinstance(model, (str, os.PathLike)):
        return load_model(model), Path(model)
    return model, None


def _require_heatmaps(model, model_dir) -> None:
    from ..model import HeatmapsUnavailableError

    if not model.has_heatmaps:
        where = f"{model_dir}: " if model_dir is not None else ""
        raise HeatmapsUnavailableError(
            f"{where}this {model.kind} model has no heatmaps "
            "(for PHOW models only the bag-of-words encoding has them for now)"
        )


@dataclass
class Overlay:
    """One heatmap overlay written by :func:`localize_images`.

    The fields are stored as given, under the same names.

    Parameters
    ----------
    image : Path
        The image file.
    label : str
        The finding whose heatmap is drawn.
    score : float
        The model's score of that finding on the image (a probability in [0, 1] for a calibrated model,
        else an SVM decision value or logit).
    path : Path
        The overlay PNG (BGR, the model's image size in pixels).
    """

    image: Path
    label: str
    score: float
    path: Path


@dataclass
class LocalizationRun:
    """What :func:`localize_images` wrote.

    The fields are stored as given, under the same names.

    Parameters
    ----------
    overlays : list of Overlay, default []
        One per image and finding drawn, in input order.
    failures : list of (str, str), default []
        ``(file, reason)`` of every file that could not be read.
    """

    overlays: list = field(default_factory=list)
    failures: list = field(default_factory=list)


def localize_images(
    model, inputs: Sequence, out_dir, labels: Sequence[str] | None = None, top: int = 3
) -> LocalizationRun:
    """Per-class heatmap overlays of image files, with the boxes around their strong regions (PNG).

    Parameters
    ----------
    model : Model or path
        A loaded model or a model directory, of a kind (and encoding) with heatmaps.
    inputs : sequence of path
        Image files and folders (searched recursively for image files).
    out_dir : path
        Folder of the overlays, ``<image stem>_<label>.png`` (created); each is the preprocessed image
        (the model's size, in pixels) with the heatmap in colour and up to 3 boxes in white.
    labels : sequence of str, optional
        The findings to draw; default the ``top`` highest-scoring of each image.
    top : int, default 3
        Findings drawn per image when ``labels`` is not given.

    Returns
    -------
    LocalizationRun
        The overlays written and the files that could not be read (logged at WARNING).

    Raises
    ------
    ValueError
        An unknown label, or inputs without any image file.
    phow_baseline.model.HeatmapsUnavailableError
        The model has no heatmaps.
    """
    import cv2
    import numpy as np

    from ..data import ImageReadError
    from ..evaluation.localization import boxes_from_heatmap, overlay, upsample
    from ..io import atomic_write_bytes, confined, list_images

    model, model_dir = _load(model)
    wanted = list(labels) if labels else None
    unknown = sorted(set(wanted or ()) - set(model.labels))
    if unknown:
        raise ValueError(f"unknown label(s) {unknown}; the model's labels are {', '.join(model.labels)}")
    _require_heatmaps(model, model_dir)
    paths = list_images(inputs)
    if not paths:
        raise ValueError(f"no images to localize in {', '.join(str(i) for i in inputs)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    result = LocalizationRun()
    for path in paths:
        try:
            image = model.preprocess(path)
        except ImageReadError as exc:
            logger.warning(f"failed: {path}: {exc.reason}")
            result.failures.append((str(path), exc.reason))
            continue
        heat = upsample(model.heatmaps(image), image.shape)
        scores = np.asarray(model.scores(image))
        chosen = wanted or [model.labels[j] for j in np.argsort(-scores)[:top]]
        for label in chosen:
            j = model.labels.index(label)
            ok, png = cv2.imencode(".png", overlay(image, heat[j], boxes=boxes_from_heatmap(heat[j])))
            target = confined(out, f"{Path(path).stem}_{label}.png")
            if not ok:
                raise ValueError(f"{target}: could not encode the overlay as PNG")
            atomic_write_bytes(target, png.tobytes())
            result.overlays.append(Overlay(Path(path), label, float(scores[j]), target))
    return result


def evaluate_localization_dir(
    model, data_dir, out_dir, threshold: float | None = None, name: str | None = None, progress: bool = True
) -> dict:
    """Score a model's heatmaps against the NIH boxes of a dataset folder; write the localization directory.

    Parameters
    ----------
    model : Model or path
        A loaded model or a model directory, of a kind (and encoding) with heatmaps.
    data_dir : path
        A ChestX-ray14 folder with ``BBox_List_2017.csv`` and some of its boxed images.
    out_dir : path
        The localization directory to write (``localization.json``, ``localization.md``, ``heatmaps/``).
    threshold : float, optional
        Boxes are the regions above this fraction of the heatmap's maximum (default
        :data:`phow_baseline.evaluation.localization.DEFAULT_THRESHOLD`).
    name : str, optional
        The model's name in the tables (default the model directory, or its kind).
    progress : bool, default True
        Show a progress bar (on a terminal).

    Returns
    -------
    dict
        The contents of ``localization.json``; its ``failures`` (unreadable images) are logged at WARNING.

    Raises
    ------
    phow_baseline.data.DatasetError
        No boxed image of the folder is present.
    phow_baseline.model.HeatmapsUnavailableError
        The model has no heatmaps.
    """
    from ..data import ChestXray14, DatasetError
    from ..evaluation.localization import DEFAULT_THRESHOLD, evaluate_localization, write_localization_dir

    model, model_dir = _load(model)
    _require_heatmaps(model, model_dir)
    dataset = ChestXray14(data_dir)
    result, examples = evaluate_localization(
        model, dataset, threshold=DEFAULT_THRESHOLD if threshold is None else threshold, progress=progress
    )
    if not result["n_images"]:
        raise DatasetError(f"{data_dir}: no boxed image present (BBox_List_2017 lists test images)")
    for f in result.get("failures", []):
        logger.warning(f"failed: {f['file']}: {f['reason']} ({f['boxes']} box(es) not scored)")
    default_name = str(model_dir) if model_dir is not None else model.kind
    write_localization_dir(out_dir, result, examples, model_name=name or default_name, kind=model.kind)
    return result


def diff_images(
    image_a,
    image_b,
    out_dir,
    model=None,
    *,
    size: int = 256,
    motion: str = "affine",
    allow_different_patients: bool = False,
) -> dict:
    """What changed between two X-rays of one patient (earlier -> later); writes the diff directory.

    Parameters
    ----------
    image_a, image_b : path
        The two X-rays (ordered earlier -> later by their NIH file names).
    out_dir : path
        The diff directory to write (``diff.json`` and the figures).
    model : Model or path, optional
        A model (or model directory) whose score differences are added, and its heatmap differences when it
        has heatmaps (a model without them gives the score differences alone, said in the log); the images
        are then read through the model's preprocessing, at its image size.
    size : int, default 256
        Side in pixels both images are resized to, without a model (with one: the model's image size).
    motion : str, default "affine"
        Registration model (:data:`phow_baseline.followup.MOTIONS`).
    allow_different_patients : bool, default False
        Compare images whose file names name different patients.

    Returns
    -------
    dict
        The contents of ``diff.json``.

    Raises
    ------
    phow_baseline.followup.PairError
        Different patients without ``allow_different_patients``.
    """
    from ..followup import diff_pair, write_diff_dir

    kwargs = {}
    if model is not None:
        model, model_dir = _load(model)
        if not model.has_heatmaps:
            logger.info(f"diff: {model_dir or 'the model'} has no heatmaps; score differences only")
        kwargs = dict(
            heatmap_fn=model.heatmaps if model.has_heatmaps else None,
            score_fn=model.scores,
            preprocess=model.preprocess,
            score_kind="probability" if model.score_kind == "probability" else "score",
        )
        size = model.image_size
    pair = diff_pair(
        image_a, image_b, size=size, motion=motion, allow_different_patients=allow_different_patients, **kwargs
    )
    return write_diff_dir(out_dir, pair, **({"labels": model.labels} if model is not None else {}))
