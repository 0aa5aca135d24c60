"""Heatmaps to boxes, and the NIH box evaluation (Wang et al. 2017), for any model.

A model gives per-class heatmaps (``heatmaps(image) -> (n_labels, h, w)``, in
the order of ``model.labels``: the PHOW model's own,
:func:`phow_baseline.model.attribution.phow_heatmaps`, or a CNN's class
activation maps); this module turns a heatmap into up to 3 boxes and scores
them against ``BBox_List_2017``.  Only ChestX-ray14 has boxes: a dataset
without any is skipped with a message, and a box of a finding the model has
no label for is not scored (counted in ``boxes_without_label``).

* IoU = area(A and B) / area(A or B);
* IoBB = area(A and B) / area(A), A the detected box (Wang et al. 2017's
  "intersection over the detected bounding-box area ratio");
* an image is localized correctly at threshold T when one of its detected
  boxes reaches T with the ground-truth box; accuracy is the share of the
  class's boxed images localized correctly; average false positives (AFP)
  is the mean number of detected boxes per image that do not reach T.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np

from ..data.chestxray14 import LABELS
from ..io import atomic_write_bytes, atomic_write_json, atomic_write_text, confined, read_json

IOBB_THRESHOLDS = (0.1, 0.25, 0.5, 0.75, 0.9)
IOU_THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)
#: Wang et al. 2017 (ChestX-ray14 model, arXiv Table 19), accuracy at T(IoBB) = 0.5.
WANG2017_IOBB_05 = {
    "Atelectasis": 0.1944,
    "Cardiomegaly": 0.9452,
    "Effusion": 0.4183,
    "Infiltration": 0.6504,
    "Mass": 0.3058,
    "Nodule": 0.0,
    "Pneumonia": 0.4833,
    "Pneumothorax": 0.2653,
}
#: Boxes are the connected components of the heatmap above this fraction of
#: its maximum (positive part), as Wang et al. threshold their maps.
DEFAULT_THRESHOLD = 0.5
#: At most this many boxes per heatmap, the highest-scoring components first.
MAX_BOXES = 3


def upsample(heat: np.ndarray, size) -> np.ndarray:
    """Bilinear resize of a ``(h, w)`` or ``(c, h, w)`` heatmap to ``size`` (int or (h, w)).

    Parameters
    ----------
    heat : (h, w) or (n_maps, h, w) array-like
        Heatmap(s) on a coarse grid (e.g. one value per spatial bin or CNN
        feature-map cell), any units.
    size : int or (int, int)
        Target size in pixels: ``S`` for ``S x S`` or ``(height, width)``.

    Returns
    -------
    heat : (height, width) or (n_maps, height, width) float32 ndarray
        The resized map(s), in the units of the input; returned unchanged
        (as float32) when already of that size.
    """
    hw = (size, size) if np.isscalar(size) else tuple(size)
    heat = np.asarray(heat, np.float32)
    if heat.ndim == 3:
        return np.stack([upsample(h, hw) for h in heat])
    if heat.shape == hw:
        return heat
    return cv2.resize(heat, (hw[1], hw[0]), interpolation=cv2.INTER_LINEAR)


def overlay(image: np.ndarray, heat: np.ndarray, alpha: float = 0.45, boxes=()) -> np.ndarray:
    """The grey image with the positive part of ``heat`` in colour (JET), BGR uint8.

    ``heat`` is scaled by its maximum (a map with no positive value shows
    the image alone); boxes ``(x, y, w, h)`` are drawn in white.  Each pixel
    is ``(1 - a) * image + a * jet(h)`` with ``h = max(heat, 0) / max(heat)`` and ``a = alpha * h``.

    Parameters
    ----------
    image : (h, w) uint8 or (h, w, 3) BGR uint8 ndarray
        The image the map is drawn on (grey is turned to BGR).
    heat : (h', w') array-like
        Heatmap of the image, any units; resized bilinearly to ``(h, w)``.
    alpha : float, default 0.45
        Opacity of the colour where the heat is at its maximum, in [0, 1].
    boxes : sequence of (x, y, w, h[, score]), default ()
        Boxes to outline, in pixels of ``image`` (extra items such as a score
        are ignored).

    Returns
    -------
    overlay : (h, w, 3) uint8 ndarray
        The blended image, BGR (OpenCV's order).
    """
    img = np.asarray(image)
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    h = upsample(heat, img.shape[:2])
    pos = np.clip(h, 0, None)
    m = pos.max()
    norm = (pos / m) if m > 0 else pos
    colour = cv2.applyColorMap((norm * 255).astype(np.uint8), cv2.COLORMAP_JET)
    a = (alpha * norm)[..., None]
    out = (img * (1 - a) + colour * a).astype(np.uint8)
    for b in boxes:
        x, y, w, hh = (int(round(v)) for v in b[:4])
        cv2.rectangle(out, (x, y), (x + w, y + hh), (255, 255, 255), 1)
    return out


def boxes_from_heatmap(
    heat: np.ndarray, threshold: float = DEFAULT_THRESHOLD, max_boxes: int = MAX_BOXES, min_area: int = 4
) -> list[tuple[float, float, float, float, float]]:
    """Boxes ``(x, y, w, h, score)`` around the heatmap's strong regions.

    Pixels above ``threshold x max`` (positive part) form connected
    components (8-connectivity); each component of at least ``min_area``
    pixels gives its bounding box, scored by the heat it holds; the best
    ``max_boxes`` are returned.  A map with no positive value gives none.

    Parameters
    ----------
    heat : (h, w) array-like
        One class's heatmap, any units (only its positive part counts).
    threshold : float, default DEFAULT_THRESHOLD (0.5)
        Fraction of the map's maximum a pixel must reach to belong to a
        region, in (0, 1] (Wang et al. 2017 threshold their maps so).
    max_boxes : int, default MAX_BOXES (3)
        At most this many boxes, highest score first.
    min_area : int, default 4
        Smallest component kept, in pixels of ``heat``.

    Returns
    -------
    boxes : list of (x, y, w, h, score) float tuples
        Top-left corner, width and height in pixels of ``heat``, and the
        sum of the positive heat inside the component; sorted by score,
        highest first.
    """
    h = np.asarray(heat, np.float32)
    m = float(h.max())
    if not m > 0:
        return []
    mask = (h >= threshold * m).astype(np.uint8)
    n, lab, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    out = []
    sums = np.bincount(lab.ravel(), weights=np.clip(h, 0, None).ravel(), minlength=n)
    for i in range(1, n):
        x, y, w, hh, area = stats[i]
        if area >= min_area:
            out.append((float(x), float(y), float(w), float(hh), float(sums[i])))
    out.sort(key=lambda b: -b[4])
    return out[:max_boxes]


def _inter(a, b) -> float:
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    return ix * iy


def iou(a, b) -> float:
    """Intersection over union of two boxes ``(x, y, w, h)``.

    Parameters
    ----------
    a, b : sequence of float, (x, y, w, h[, ...])
        Boxes: top-left corner, width and height, in pixels of the same image.

    Returns
    -------
    iou : float
        ``area(a and b) / area(a or b)``, in [0, 1]; 0 when both are empty.
    """
    i = _inter(a, b)
    u = a[2] * a[3] + b[2] * b[3] - i
    return i / u if u > 0 else 0.0


def iobb(detected, truth) -> float:
    """Intersection over the detected box's area (Wang et al. 2017).

    Parameters
    ----------
    detected : sequence of float, (x, y, w, h[, ...])
        Detected box: top-left corner, width and height, in pixels.
    truth : sequence of float, (x, y, w, h)
        Ground-truth box, in pixels of the same image.

    Returns
    -------
    iobb : float
        ``area(detected and truth) / area(detected)``, in [0, 1]; 0 for an
        empty detected box.
    """
    i = _inter(detected, truth)
    return i / (detected[2] * detected[3]) if detected[2] * detected[3] > 0 else 0.0


def score_boxes(detected: Sequence, truth, thresholds: Sequence[float], measure: Callable) -> tuple[list, list]:
    """Per threshold: whether the image is localized (bool) and its false positives (int).

    Parameters
    ----------
    detected : sequence of boxes (x, y, w, h[, score])
        The detected boxes of one image and class, in pixels.
    truth : (x, y, w, h)
        Its ground-truth box, in pixels of the same image.
    thresholds : sequence of float
        Overlap thresholds T, in [0, 1].
    measure : callable
        ``measure(detected_box, truth) -> float`` (:func:`iobb` or :func:`iou`).

    Returns
    -------
    hit : list of bool, one per threshold
        Whether some detected box reaches T.
    false_positives : list of int, one per threshold
        Number of detected boxes below T.
    """
    vals = [measure(d, truth) for d in detected]
    hit = [any(v >= t for v in vals) for t in thresholds]
    fp = [sum(v < t for v in vals) for t in thresholds]
    return hit, fp


def evaluate_boxes(items: Sequence[tuple[str, Sequence, Sequence]], labels: Sequence[str] = LABELS) -> dict:
    """Accuracy and average false positives per class from ``(label, detected, truth_box)`` items.

    Parameters
    ----------
    items : sequence of (str, sequence of boxes, box)
        The label, the detected boxes ``(x, y, w, h)`` and the ground-truth box, in pixels.
    labels : sequence of str
        The order of the classes in the result (default ChestX-ray14's); labels of ``items`` not in it
        follow in the order they first appear.

    Returns
    -------
    dict
        ``iobb_thresholds``, ``iou_thresholds``, and per class ``accuracy_iobb``, ``accuracy_iou``,
        ``avg_fp``, ``avg_fp_iou`` (one value per threshold) and ``n_images``.
    """
    per = {}
    for label, det, truth in items:
        hb, fb = score_boxes(det, truth, IOBB_THRESHOLDS, iobb)
        hu, fu = score_boxes(det, truth, IOU_THRESHOLDS, iou)
        d = per.setdefault(
            label,
            {
                "n": 0,
                "hb": np.zeros(len(IOBB_THRESHOLDS)),
                "fb": np.zeros(len(IOBB_THRESHOLDS)),
                "hu": np.zeros(len(IOU_THRESHOLDS)),
                "fu": np.zeros(len(IOU_THRESHOLDS)),
            },
        )
        d["n"] += 1
        d["hb"] += hb
        d["fb"] += fb
        d["hu"] += hu
        d["fu"] += fu
    res = {
        "iobb_thresholds": list(IOBB_THRESHOLDS),
        "iou_thresholds": list(IOU_THRESHOLDS),
        "accuracy_iobb": {},
        "accuracy_iou": {},
        "avg_fp": {},
        "avg_fp_iou": {},
        "n_images": {},
    }
    for label in [l for l in labels if l in per] + [l for l in per if l not in labels]:
        d = per[label]
        res["n_images"][label] = d["n"]
        res["accuracy_iobb"][label] = (d["hb"] / d["n"]).tolist()
        res["accuracy_iou"][label] = (d["hu"] / d["n"]).tolist()
        res["avg_fp"][label] = (d["fb"] / d["n"]).tolist()
        res["avg_fp_iou"][label] = (d["fu"] / d["n"]).tolist()
    return res


def evaluate_localization(
    model,
    dataset,
    names: Sequence[str] | None = None,
    threshold=DEFAULT_THRESHOLD,
    n_examples: int = 6,
    progress=True,
    *,
    image_size: int | None = None,
    preprocess: Callable | None = None,
) -> tuple[dict, dict]:
    """Score ``model``'s heatmaps against the NIH boxes of ``dataset`` (images present).

    ``model`` has ``preprocess(path) -> (S, S) uint8``, ``heatmaps(img) ->
    (14, h, w)`` and ``image_size``; or it is a plain ``heatmap_fn(img) ->
    (14, h, w)`` callable, and then ``image_size`` is required and
    ``preprocess`` defaults to :func:`phow_baseline.data.preprocess.preprocess`
    at that size.  Boxes are scaled to ``S x S``; ``names`` restricts the
    evaluation to those images.

    Unreadable images are skipped (their boxes not scored) and listed in
    ``result["failures"]`` (file, reason, number of boxes).  Heatmaps are
    read in the order of ``model.labels`` (ChestX-ray14's for a plain
    function); boxes of other findings are counted in
    ``result["boxes_without_label"]``, not scored.  A dataset without boxes
    (every kind but ChestX-ray14) gives an empty result whose ``skipped``
    says why (and a log line).

    Parameters
    ----------
    model : model object or callable
        A model with ``heatmaps``, ``preprocess``, ``image_size`` (and
        ``labels``), or a plain ``heatmap_fn(img) -> (n_labels, h, w)``.
    dataset : dataset object
        Has ``boxes(size=S)`` (a DataFrame with ``Image Index``, ``label``,
        ``x``, ``y``, ``w``, ``h`` in pixels of the ``S x S`` image) and
        ``image_path(name)``, e.g. :class:`phow_baseline.data.ChestXray14`.
    names : sequence of str, optional
        Image file names to evaluate (default: every boxed image present).
    threshold : float, default DEFAULT_THRESHOLD (0.5)
        Fraction of a heatmap's maximum that makes a region
        (:func:`boxes_from_heatmap`).
    n_examples : int, default 6
        Number of overlays returned (the first boxes, in image-name order).
    progress : bool, default True
        Show a progress bar (on a terminal).
    image_size : int, optional
        Side ``S`` of the preprocessed image, in pixels (default
        ``model.image_size``; required for a plain function).
    preprocess : callable, optional
        ``preprocess(path) -> (S, S) uint8`` (default the model's, or
        :func:`phow_baseline.data.preprocess.preprocess` at ``S``).

    Returns
    -------
    result : dict
        The ``localization.json`` contents: what :func:`evaluate_boxes`
        returns (accuracy and average false positives per class and
        threshold, images per class) plus ``image_size`` (px), ``threshold``,
        ``max_boxes``, ``failures``, ``reference_iobb_0.5``, ``reference``,
        and ``boxes_without_label`` / ``skipped`` when they apply.
    examples : dict of str to (S, S, 3) uint8 ndarray
        ``{"<stem>_<label>.png": BGR overlay}`` with the ground-truth box in
        green and the detected boxes in white.

    Raises
    ------
    ValueError
        A plain function without ``image_size``, or an image preprocessed
        to a size other than ``(S, S)``.
    """
    from ..progress import progress_bar

    if hasattr(model, "heatmaps"):
        heatmap_fn, S = model.heatmaps, int(image_size or model.image_size)
        prep = preprocess or model.preprocess
        labels = list(getattr(model, "labels", LABELS))
    else:
        if image_size is None:
            raise ValueError("evaluate_localization: a plain heatmap function needs image_size")
        from ..data.preprocess import preprocess as _pre

        heatmap_fn, S = model, int(image_size)
        prep = preprocess or (lambda p: _pre(p, size=S))
        labels = list(LABELS)
    boxes = dataset.boxes(size=S)
    skipped = None
    if not len(boxes) and getattr(dataset, "kind", "chestxray14") != "chestxray14":
        skipped = f"the {dataset.kind} dataset at {dataset.root} has no boxes (only ChestX-ray14 has them)"
        import logging

        logging.getLogger(__name__).info(f"localization skipped: {skipped}")
    without = boxes[~boxes["label"].isin(labels)] if len(boxes) else boxes
    boxes = boxes[boxes["label"].isin(labels)] if len(boxes) else boxes
    if names is not None:
        boxes = boxes[boxes["Image Index"].isin(set(names))]
    from ..data import ImageReadError

    items, examples, failures = [], {}, []
    for name, group in progress_bar(
        boxes.groupby("Image Index", sort=True), desc="localize", unit="img", disable=not progress
    ):
        try:
            img = prep(dataset.image_path(name))
        except ImageReadError as exc:  # one unreadable image is that image's failure, listed; the others go on
            failures.append({"file": str(exc.path), "reason": exc.reason, "boxes": int(len(group))})
            continue
        if img.shape != (S, S):
            raise ValueError(f"{name}: preprocessed to {img.shape}, expected ({S}, {S})")
        heat = upsample(heatmap_fn(img), S)
        for _, r in group.iterrows():
            truth = (r.x, r.y, r.w, r.h)
            det = boxes_from_heatmap(heat[labels.index(r.label)], threshold)
            items.append((r.label, det, truth))
            if len(examples) < n_examples:
                ov = overlay(img, heat[labels.index(r.label)], boxes=det)
                x, y, w, h = (int(round(v)) for v in truth)
                cv2.rectangle(ov, (x, y), (x + w, y + h), (0, 255, 0), 1)
                examples[f"{Path(name).stem}_{r.label}.png"] = ov
    res = evaluate_boxes(items, labels)
    if len(without):
        res["boxes_without_label"] = {str(k): int(v) for k, v in without["label"].value_counts().sort_index().items()}
    if skipped:
        res["skipped"] = skipped
    res.update(
        {
            "image_size": S,
            "threshold": threshold,
            "max_boxes": MAX_BOXES,
            "failures": failures,
            "reference_iobb_0.5": WANG2017_IOBB_05,
            "reference": "Wang et al. 2017, ChestX-ray14 model, arXiv Table 19 (T(IoBB) = 0.5)",
        }
    )
    return res, examples


def write_localization_dir(out_dir, result: dict, examples: dict, model_name: str = "", kind: str = "") -> Path:
    """Write ``localization.json``, ``localization.md`` and ``heatmaps/*.png`` (ground truth green, detections white).

    Parameters
    ----------
    out_dir : str or path-like
        Folder to write into (created if missing).
    result : dict
        What :func:`evaluate_localization` returns first.
    examples : dict of str to (h, w, 3) uint8 ndarray
        ``{file name: BGR overlay}``, written under ``heatmaps/`` (names
        confined to that folder).
    model_name : str, default ""
        Name of the model, stored as ``model`` in the JSON.
    kind : str, default ""
        Model kind (e.g. ``"phow"``, ``"cnn"``), stored as ``kind``.

    Returns
    -------
    out_dir : pathlib.Path
        The folder written.

    Raises
    ------
    ValueError
        An overlay that cannot be encoded as PNG, or a file name that leaves
        ``heatmaps/``.
    """
    out = Path(out_dir)
    for fname, img in examples.items():
        ok, png = cv2.imencode(".png", img)
        if not ok:
            raise ValueError(f"{out / 'heatmaps' / fname}: could not encode the heatmap as PNG")
        atomic_write_bytes(confined(out / "heatmaps", fname), png.tobytes())
    result = {"model": model_name, "kind": kind, **result}
    atomic_write_json(out / "localization.json", result)
    atomic_write_text(out / "localization.md", format_localization(result))
    return out


def format_localization(r: dict) -> str:
    """The Markdown tables of a localization result (accuracy at each T(IoBB) and T(IoU), AFP, reference).

    Parameters
    ----------
    r : dict
        A localization result (:func:`evaluate_localization`, or a
        ``localization.json`` read back); its thresholds must include 0.5.

    Returns
    -------
    markdown : str
        Two tables: per class the number of images, accuracy at each
        T(IoBB), average false positives at T(IoBB) = 0.5 and Wang et al.
        2017's accuracy; then accuracy at each T(IoU).  Ends with a newline.
    """
    tb = r["iobb_thresholds"]
    head = "| label | n | " + " | ".join(f"T(IoBB)={t}" for t in tb) + " | AFP@0.5 | Wang 2017 @0.5 |"
    lines = [head, "|---|---:|" + "---:|" * (len(tb) + 2)]
    for lab, acc in r["accuracy_iobb"].items():
        ref = r.get("reference_iobb_0.5", {}).get(lab)
        lines.append(
            f"| {lab} | {r['n_images'][lab]} | "
            + " | ".join(f"{a:.3f}" for a in acc)
            + f" | {r['avg_fp'][lab][tb.index(0.5)]:.2f} | {'' if ref is None else f'{ref:.4f}'} |"
        )
    tu = r["iou_thresholds"]
    lines += ["", "| label | " + " | ".join(f"T(IoU)={t}" for t in tu) + " |", "|---|" + "---:|" * len(tu)]
    for lab, acc in r["accuracy_iou"].items():
        lines.append(f"| {lab} | " + " | ".join(f"{a:.3f}" for a in acc) + " |")
    return "\n".join(lines) + "\n"


#: The result file of a localization evaluation; phow-baseline 0.1 wrote it as ``localisation.json``.
LOCALIZATION_FILE = "localization.json"


def localization_file(directory) -> Path:
    """``directory/localization.json``, or the 0.1 name ``localisation.json`` when only that exists.

    Parameters
    ----------
    directory : str or path-like
        A localization directory (:func:`write_localization_dir`).

    Returns
    -------
    path : pathlib.Path
        The result file's path (it may not exist).
    """
    p = Path(directory) / LOCALIZATION_FILE
    old = Path(directory) / "localisation.json"
    return old if not p.exists() and old.exists() else p


def read_localization(directory) -> dict:
    """``localization.json`` of a localization directory (0.1's ``localisation.json`` too); errors name the file.

    Parameters
    ----------
    directory : str or path-like
        A localization directory (:func:`write_localization_dir`).

    Returns
    -------
    result : dict
        The stored localization result (see :func:`evaluate_localization`),
        with ``model`` and ``kind``.

    Raises
    ------
    FileNotFoundError
        No ``localization.json`` (nor ``localisation.json``) in ``directory``.
    phow_baseline.io.DataFileError
        A file that cannot be read or is not a JSON object (the error names it).
    """
    p = localization_file(directory)
    if not p.exists():
        raise FileNotFoundError(f"{p}: not a localization directory (no localization.json)")
    return read_json(p, what="localization result")
