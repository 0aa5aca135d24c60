"""Follow-up differencing: what changed between two X-rays of the same patient.

Order: "earlier" and "later" follow the file name's 3-digit suffix
(``PPPPPPPP_NNN.png``), the numbering of the NIH release; the v2020
metadata's ``Follow-up #`` column disagrees with it for 24,106 of 112,120
images, so it is reported, not used.  The later image is registered to the
earlier one (:mod:`.registration`) and compared three ways:

* structure: the local SSIM map (``skimage.metrics.structural_similarity``,
  Gaussian 11x11 window, data range 255), shown as dissimilarity
  ``(1 - SSIM) / 2``;
* intensity: the signed difference later - earlier after matching the later
  image's histogram to the earlier one's (exposure changes cancel);
* findings (with a model): the difference of the 14 per-class heatmaps and
  of the 14 scores.

Differences exist only inside the overlap of the two registered images:
``valid`` marks the pixels of the earlier image that the warped later image
covers (less a one-pixel rim, where interpolation mixes in the border), and
``ssim_valid`` those whose whole SSIM window (11 x 11) lies in the overlap.
Outside them every map holds zero change (dissimilarity 0, intensity and
heatmap differences 0) and the figures (:mod:`.figures`) draw them as
hatched grey "no data", never as change.  The later image's uncovered strip
is filled with the earlier image's pixels before the SSIM and the heatmaps
are computed, so a window or descriptor that reaches past the overlap's edge
sees no artificial edge there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ..data.chestxray14 import followup_index, patient_from_name
from ..data.imread import read_xray
from ..data.preprocess import preprocess
from .registration import Registration, register, registration_quality

ORDER_RULE = (
    "earlier/later by the file-name suffix PPPPPPPP_NNN.png (the NIH numbering); the v2020 "
    "'Follow-up #' column disagrees with it for 24,106 images and is not used"
)

#: Side of the SSIM window: skimage's Gaussian window for sigma 1.5 (truncate 3.5) spans 11 pixels.
SSIM_WINDOW = 11


class PairError(ValueError):
    """The two images cannot be compared as given (the message says why and how to override)."""


@dataclass
class FollowupDiff:
    """Two X-rays of one patient, registered and differenced (:func:`diff_pair`).

    Images and maps are ``(H, W)`` arrays in the earlier image's frame:
    ``a``, ``b`` (uint8, as compared), ``b_registered`` (``b`` warped onto
    ``a``), ``valid`` (float 0/1, the overlap), ``ssim_map`` (SSIM, 1 outside
    ``ssim_valid``), ``intensity_diff`` (grey levels of the 8-bit image,
    later - earlier after histogram matching, 0 outside the overlap);
    ``heat_a``, ``heat_b`` (``(14, H, W)``) and ``scores_a``, ``scores_b``
    (``(14,)``) with a model.  ``notes`` says what the reader should know
    (swapped order, poor registration).  The parameters are kept as
    attributes of the same names.

    Parameters
    ----------
    image_a, image_b : str
        Names of the earlier and the later image (file names; ``"A"``/``"B"``
        for arrays).
    patient : int or None
        The patient both file names give; None when unknown or different.
    a : ndarray of uint8, shape (H, W)
        The earlier image, as compared.
    b : ndarray of uint8, shape (H, W)
        The later image, as compared, in its own frame.
    b_registered : ndarray of uint8, shape (H, W)
        ``b`` warped into ``a``'s frame (0 outside the overlap).
    valid : ndarray of float32, shape (H, W)
        1 where the warped later image has data (the overlap, less a
        one-pixel rim), else 0.
    registration : Registration
        The warp and its ECC.
    ssim_map : ndarray of float32, shape (H, W)
        Local SSIM in [-1, 1] (11x11 Gaussian window, sigma 1.5 pixels);
        1 outside ``ssim_valid``.
    intensity_diff : ndarray of float32, shape (H, W)
        Later - earlier in grey levels (-255..255) after matching the later
        image's histogram to the earlier one's over the overlap; 0 outside.
    heat_a, heat_b : ndarray of shape (n_labels, H, W), optional
        The model's per-class heatmaps of each image (``b``'s after
        registration), in the heatmap function's units; None without a
        model.
    scores_a, scores_b : ndarray of float64, shape (n_labels,), optional
        The model's per-class scores of each image (SVM scores, or
        probabilities in [0, 1], see ``score_kind``); None without a model.
    notes : list of str, default=[]
        Sentences for the reader (order swapped, registration unreliable).
    metadata_followup : dict, optional
        ``{"a": n, "b": n}``: the v2020 ``Follow-up #`` of each image
        (reported, never used for the order).
    ssim_valid : ndarray of float32, shape (H, W), optional
        1 where the whole SSIM window lies in the overlap (default: ``valid``).
    score_kind : {"score", "probability"}, default="score"
        What the scores are.
    """

    image_a: str
    image_b: str
    patient: int | None
    a: np.ndarray
    b: np.ndarray
    b_registered: np.ndarray
    valid: np.ndarray
    registration: Registration
    ssim_map: np.ndarray
    intensity_diff: np.ndarray
    heat_a: np.ndarray | None = None
    heat_b: np.ndarray | None = None
    scores_a: np.ndarray | None = None
    scores_b: np.ndarray | None = None
    notes: list = field(default_factory=list)
    metadata_followup: dict | None = None  # {"a": n, "b": n}: the v2020 'Follow-up #' column, reported only
    ssim_valid: np.ndarray | None = None  # pixels whose SSIM window lies in the overlap (float 0/1)
    score_kind: str = "score"  # "probability" when score_fn gives calibrated probabilities

    @property
    def heat_diff(self):
        """Heatmap B - A per class, zero outside the overlap: ``(n_labels, H, W)``, or None without a model."""
        return None if self.heat_a is None else (self.heat_b - self.heat_a) * self.valid[None]

    @property
    def _ssim_mask(self) -> np.ndarray:
        return (self.valid if self.ssim_valid is None else self.ssim_valid) > 0

    @property
    def ssim_mean(self) -> float:
        """Mean SSIM over the pixels whose window lies in the overlap (NaN if none)."""
        m = self._ssim_mask
        return float(self.ssim_map[m].mean()) if m.any() else float("nan")

    @property
    def overlap_fraction(self) -> float:
        """Share of the earlier image's pixels covered by the registered later image, in [0, 1]."""
        return float((self.valid > 0).mean())

    @property
    def quality(self) -> dict:
        """The registration's quality in words (:func:`~.registration.registration_quality`)."""
        return registration_quality(self.registration, self.overlap_fraction)


def warp_with_overlap(b: np.ndarray, matrix: np.ndarray, shape) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Warp the later image into the earlier one's frame and say where it has data.

    Parameters
    ----------
    b : ndarray, shape (h, w)
        The later image.
    matrix : array_like, shape (2, 3)
        :attr:`Registration.matrix`: maps earlier-image pixel coordinates to
        later-image ones (applied with ``WARP_INVERSE_MAP``, bilinear).
    shape : (int, int)
        ``(H, W)`` of the earlier image, in pixels.

    Returns
    -------
    b_registered : ndarray, shape (H, W)
        The warped image, ``b``'s dtype, 0 outside.
    valid : ndarray of float32, shape (H, W)
        The overlap, 0/1: pixels that the warped image covers, less a
        one-pixel rim whose interpolation mixes in the border (the image's
        own edge is kept).
    ssim_valid : ndarray of float32, shape (H, W)
        0/1: the pixels whose whole :data:`SSIM_WINDOW` window lies in the
        overlap.
    """
    H, W = shape
    M = np.asarray(matrix, np.float64)
    b_reg = cv2.warpAffine(b, M, (W, H), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT)
    cover = cv2.warpAffine(
        np.ones_like(b, np.uint8),
        M,
        (W, H),
        flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )
    # erode with a zero border: pixels on the image's own edge keep their value (BORDER_CONSTANT=1 pads with ones)
    valid = cv2.erode(cover, np.ones((3, 3), np.uint8), borderType=cv2.BORDER_CONSTANT, borderValue=1)
    ssim_valid = cv2.erode(
        valid, np.ones((SSIM_WINDOW, SSIM_WINDOW), np.uint8), borderType=cv2.BORDER_CONSTANT, borderValue=1
    )
    return b_reg, valid.astype(np.float32), ssim_valid.astype(np.float32)


def _load(image, size):
    if isinstance(image, np.ndarray):
        return preprocess(image, size=size, equalization="none"), "<array>"
    return preprocess(read_xray(image), size=size, equalization="none"), Path(image).name


def diff_pair(
    image_a,
    image_b,
    *,
    size: int | None = 256,
    motion: str = "affine",
    heatmap_fn: Callable | None = None,
    score_fn: Callable | None = None,
    preprocess: Callable | None = None,
    allow_different_patients: bool = False,
    allow_resize: bool = False,
    order: bool = True,
    metadata=None,
    score_kind: str = "score",
) -> FollowupDiff:
    """Register the later image to the earlier one and difference them.

    Parameters
    ----------
    image_a, image_b : path or uint8 array
        Two X-rays of one patient; with ``order`` they are swapped if needed
        so that ``a`` is the earlier (see :data:`ORDER_RULE`).
    size : int or None
        Side both are resized to (``None``: keep; then sizes must agree
        unless ``allow_resize``); ignored with ``preprocess``.
    motion : {"affine", "euclidean", "translation"}, default="affine"
        The registration's motion model (:func:`~.registration.register`).
    heatmap_fn, score_fn : callables, optional
        A model's ``heatmaps(img) -> (14, h, w)`` and ``scores(img) -> (14,)``
        on the images as compared (those of ``preprocess`` when given).
    preprocess : callable, optional
        A model's preprocessing contract (``model.preprocess``: raw path or
        array -> the image the model scores).  Both images are read through
        it instead of the plain read + resize, so that the heatmaps and
        scores are those ``predict`` and ``localize`` give for the files.
    allow_different_patients : bool
        Compare images whose file names name different patients.
    allow_resize : bool
        With ``size=None``, resize the later image to the earlier one's
        size instead of raising :class:`PairError` when they differ.
    order : bool, default=True
        Swap the two images when needed so that ``a`` is the earlier by the
        ChestX-ray14 file-name suffix (a note says so).
    metadata : DataFrame, optional
        The NIH metadata (``ChestXray14.metadata``: 'Image Index',
        'Follow-up #'); its follow-up numbers are reported in
        ``metadata_followup`` (and a note when they order the pair the
        other way), never used for the order.
    score_kind : {"score", "probability"}
        What ``score_fn`` returns (labels the dashboard's columns).

    Returns
    -------
    FollowupDiff
        The pair, registered and differenced, in the earlier image's frame;
        a note is added when the registration is unreliable.

    Raises
    ------
    PairError
        Different patients or sizes without the override, or a
        ``preprocess`` that gives the two images different shapes.
    ValueError
        An unknown ``score_kind`` or ``motion``.
    phow_baseline.data.ImageReadError
        An unreadable file (named in the message).
    """
    na = Path(image_a).name if not isinstance(image_a, np.ndarray) else None
    nb = Path(image_b).name if not isinstance(image_b, np.ndarray) else None
    patient = None
    notes = []
    if na and nb:
        try:
            pa, pb = patient_from_name(na), patient_from_name(nb)
        except ValueError:
            pa = pb = None
            notes.append("file names are not ChestX-ray14 names: patient and order not checked")
        if pa is not None:
            if pa != pb and not allow_different_patients:
                raise PairError(
                    f"{na} (patient {pa}) and {nb} (patient {pb}) are different patients; "
                    "pass allow_different_patients=True (--allow-different-patients) to compare anyway"
                )
            patient = pa if pa == pb else None
            if order and followup_index(nb) < followup_index(na):
                image_a, image_b, na, nb = image_b, image_a, nb, na
                notes.append("swapped to put the earlier image (lower file suffix) first")
    if metadata is not None and na and nb:
        fmap = dict(zip(metadata["Image Index"], metadata["Follow-up #"]))
        fa, fb = fmap.get(na), fmap.get(nb)
        meta_fu = {"a": None if fa is None else int(fa), "b": None if fb is None else int(fb)}
        if fa is not None and fb is not None and fa > fb:
            notes.append(
                f"the metadata's 'Follow-up #' ({na}: {int(fa)}, {nb}: {int(fb)}) orders the pair the "
                "other way; the file-name suffix is used"
            )
    else:
        meta_fu = None
    if preprocess is not None:
        a, b = np.asarray(preprocess(image_a)), np.asarray(preprocess(image_b))
        if a.shape != b.shape:
            raise PairError(f"the model's preprocessing gave {a.shape} and {b.shape} for {na or 'A'} and {nb or 'B'}")
    elif size is None:
        a = read_xray(image_a) if not isinstance(image_a, np.ndarray) else np.asarray(image_a)
        b = read_xray(image_b) if not isinstance(image_b, np.ndarray) else np.asarray(image_b)
        if a.shape != b.shape:
            if not allow_resize:
                raise PairError(
                    f"{na or 'image A'} is {a.shape[1]}x{a.shape[0]}, {nb or 'image B'} is "
                    f"{b.shape[1]}x{b.shape[0]}; pass a common size or allow_resize=True"
                )
            b = cv2.resize(b, (a.shape[1], a.shape[0]), interpolation=cv2.INTER_AREA)
    else:
        a, _ = _load(image_a, size)
        b, _ = _load(image_b, size)
    if score_kind not in ("score", "probability"):
        raise ValueError(f"score_kind must be 'score' or 'probability', got {score_kind!r}")
    reg = register(a, b, motion)
    b_reg, valid, ssim_valid = warp_with_overlap(b, reg.matrix, a.shape)
    from skimage.exposure import match_histograms
    from skimage.metrics import structural_similarity

    m = valid > 0
    # the uncovered strip borrows the earlier image's pixels: no artificial edge for windows reaching past it
    b_fill = np.where(m, b_reg, a).astype(np.uint8)
    _, ssim = structural_similarity(
        a, b_fill, full=True, data_range=255, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
    )
    ssim = np.where(ssim_valid > 0, ssim, 1.0).astype(np.float32)  # no data: no dissimilarity reported
    matched = b_reg.astype(np.float32).copy()
    if m.any():
        matched[m] = match_histograms(b_reg[m].astype(np.float32), a[m].astype(np.float32))
    idiff = (matched - a.astype(np.float32)) * valid
    d = FollowupDiff(
        na or "A",
        nb or "B",
        patient,
        a,
        b,
        b_reg,
        valid,
        reg,
        ssim,
        idiff,
        notes=notes,
        metadata_followup=meta_fu,
        ssim_valid=ssim_valid,
        score_kind=score_kind,
    )
    q = d.quality
    if not q["reliable"]:
        d.notes.append(q["text"])
    H, W = a.shape
    if heatmap_fn is not None:
        from ..evaluation.localization import upsample

        d.heat_a = upsample(heatmap_fn(a), (H, W))
        d.heat_b = upsample(heatmap_fn(b_fill), (H, W))
    if score_fn is not None:
        d.scores_a = np.asarray(score_fn(a), float)
        d.scores_b = np.asarray(score_fn(b), float)
    return d
