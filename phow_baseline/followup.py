"""Follow-up differencing: what changed between two X-rays of the same patient.

Order: "earlier" and "later" follow the file name's 3-digit suffix
(``PPPPPPPP_NNN.png``), the numbering of the NIH release; the v2020
metadata's ``Follow-up #`` column disagrees with it for 24,106 of 112,120
images, so it is reported, not used.  The later image is registered to the
earlier one and compared three ways:

* registration: an ORB-feature + RANSAC estimate (affine by default,
  rotation + shift for ``euclidean``), a phase-correlation shift and the
  identity are each refined by OpenCV's ECC maximisation, coarse to fine
  over a 3-level image pyramid; the best converged, plausible one is kept;
  its quality is the final ECC (a correlation coefficient in [-1, 1]) over
  the overlap;
* structure: the local SSIM map (``skimage.metrics.structural_similarity``,
  Gaussian 11x11 window, data range 255), shown as dissimilarity
  ``(1 - SSIM) / 2``;
* intensity: the signed difference later - earlier after matching the later
  image's histogram to the earlier one's (exposure changes cancel);
* findings (with a model): the difference of the 14 per-class heatmaps and
  of the 14 scores.

Pixels outside the overlap after warping are masked (zero) in every map.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from .data import LABELS, followup_index, patient_from_name
from .preprocess import ImageReadError, preprocess, read_xray

ORDER_RULE = ("earlier/later by the file-name suffix PPPPPPPP_NNN.png (the NIH numbering); the v2020 "
              "'Follow-up #' column disagrees with it for 24,106 images and is not used")
MOTIONS = {"affine": cv2.MOTION_AFFINE, "euclidean": cv2.MOTION_EUCLIDEAN, "translation": cv2.MOTION_TRANSLATION}


class PairError(ValueError):
    """The two images cannot be compared as given (the message says why and how to override)."""


@dataclass
class Registration:
    matrix: np.ndarray      # 2x3: maps earlier-image coordinates to later-image coordinates
    ecc: float
    converged: bool
    motion: str


@dataclass
class FollowupDiff:
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
    metadata_followup: dict | None = None   # {"a": n, "b": n}: the v2020 'Follow-up #' column, reported only

    @property
    def heat_diff(self):
        return None if self.heat_a is None else (self.heat_b - self.heat_a) * self.valid[None]

    @property
    def ssim_mean(self) -> float:
        return float(self.ssim_map[self.valid > 0].mean())


def register(fixed: np.ndarray, moving: np.ndarray, motion: str = "affine", iterations: int = 200,
             eps: float = 1e-6) -> Registration:
    """Find the warp aligning ``moving`` to ``fixed`` (ORB + RANSAC start, ECC refinement).

    Returns the 2x3 matrix ``M`` such that ``moving(M [x, y, 1])`` matches
    ``fixed(x, y)`` (use it with ``cv2.warpAffine(moving, M, ...,
    flags=WARP_INVERSE_MAP)``), the final ECC and whether it converged.
    """
    if motion not in MOTIONS:
        raise ValueError(f"motion must be one of {sorted(MOTIONS)}, got {motion!r}")
    f = fixed.astype(np.float32)
    m = moving.astype(np.float32)
    inits = []
    feat = _feature_init(fixed, moving, motion)
    if feat is not None:
        inits.append(feat)
    win = cv2.createHanningWindow(f.shape[::-1], cv2.CV_32F)
    (dx, dy), _ = cv2.phaseCorrelate(f.copy(), m.copy(), win)  # it may window its inputs in place
    if abs(dx) < f.shape[1] / 4 and abs(dy) < f.shape[0] / 4:  # a plausible patient shift
        inits.append(np.array([[1, 0, dx], [0, 1, dy]], np.float32))
    inits.append(np.eye(2, 3, dtype=np.float32))
    best = None
    for M0 in inits:
        M, ecc, ok = _ecc_pyramid(f, m, M0, MOTIONS[motion], iterations, eps)
        if ok and _plausible(M) and (best is None or ecc > best[1]):
            best = (M, ecc)
    if best is None:  # no refinement converged: keep the best plausible start, say so
        scored = [(M0, _overlap_ecc(f, m, M0)) for M0 in inits if _plausible(M0)]
        M0, ecc = max(scored, key=lambda t: t[1])
        return Registration(M0.astype(np.float64), ecc, False, motion)
    return Registration(best[0].astype(np.float64), best[1], True, motion)


def _overlap_ecc(f, m, M) -> float:
    """Correlation coefficient of ``f`` and the warped ``m`` over their overlap."""
    H, W = f.shape
    w = cv2.warpAffine(m, np.asarray(M, np.float32), (W, H), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
    valid = cv2.warpAffine(np.ones_like(m), np.asarray(M, np.float32), (W, H),
                           flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP) > 0
    if valid.sum() < 16:
        return float("nan")
    return float(np.corrcoef(f[valid], w[valid])[0, 1])


def _plausible(M) -> bool:
    """A patient repositioned between two radiographs (or AP vs PA): scale within
    0.67-1.5, anisotropy below 1.3."""
    A = np.asarray(M, float)[:, :2]
    sv = np.linalg.svd(A, compute_uv=False)
    return bool(0.67 <= sv.min() and sv.max() <= 1.5 and sv.max() / sv.min() < 1.3)


def _feature_init(fixed, moving, motion):
    """An affine (or rotation + shift) estimate from ORB matches and RANSAC, or None."""
    orb = cv2.ORB_create(3000, fastThreshold=5)
    k1, d1 = orb.detectAndCompute(np.ascontiguousarray(fixed, np.uint8), None)
    k2, d2 = orb.detectAndCompute(np.ascontiguousarray(moving, np.uint8), None)
    if d1 is None or d2 is None or len(k1) < 10 or len(k2) < 10:
        return None
    matches = cv2.BFMatcher(cv2.NORM_HAMMING, crossCheck=True).match(d1, d2)
    if len(matches) < 10:
        return None
    p1 = np.float32([k1[x.queryIdx].pt for x in matches])
    p2 = np.float32([k2[x.trainIdx].pt for x in matches])
    est = cv2.estimateAffine2D if motion == "affine" else cv2.estimateAffinePartial2D
    W, inliers = est(p1, p2, method=cv2.RANSAC, ransacReprojThreshold=2.0)
    if W is None or inliers is None or inliers.sum() < 8:
        return None
    return W.astype(np.float32)


def _ecc_pyramid(f, m, M, motion_type, iterations, eps, levels: int = 3, min_side: int = 48):
    """Coarse-to-fine ECC from ``M``: returns (matrix, ecc at full resolution, converged).

    The images are halved up to ``levels - 1`` times (``cv2.pyrDown``, never
    below ``min_side`` pixels); ECC runs at the coarsest level first and each
    estimate, its translation doubled, starts the next finer level, so large
    shifts are found on small images and refined at full resolution.  OpenCV
    smooths both images with a 5x5 Gaussian at every level.  Converged means
    the full-resolution ECC ran without error.
    """
    pyr = [(f, m)]
    while len(pyr) < levels and min(pyr[-1][0].shape) // 2 >= min_side:
        pyr.append((cv2.pyrDown(pyr[-1][0]), cv2.pyrDown(pyr[-1][1])))
    W = np.asarray(M, np.float32).copy()
    scale = 2.0 ** (len(pyr) - 1)
    W[:, 2] /= scale
    crit = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, iterations, eps)
    ecc, ok = float("nan"), False
    for lev in range(len(pyr) - 1, -1, -1):
        fl, ml = pyr[lev]
        try:
            ecc, W1 = cv2.findTransformECC(fl, ml, W.copy(), motion_type, crit, None, 5)
            ok = True
            W = W1
        except cv2.error:  # no convergence at this level: keep the estimate, go finer
            ok = False
        if lev:
            W[:, 2] *= 2.0
    return W, float(ecc), ok


def _load(image, size):
    if isinstance(image, np.ndarray):
        return preprocess(image, size=size, equalization="none"), "<array>"
    return preprocess(read_xray(image), size=size, equalization="none"), Path(image).name


def diff_pair(image_a, image_b, *, size: int | None = 256, motion: str = "affine",
              heatmap_fn: Callable | None = None, score_fn: Callable | None = None,
              prepare: Callable | None = None, allow_different_patients: bool = False,
              allow_resize: bool = False, order: bool = True, metadata=None) -> FollowupDiff:
    """Register the later image to the earlier one and difference them.

    Parameters
    ----------
    image_a, image_b : path or uint8 array
        Two X-rays of one patient; with ``order`` they are swapped if needed
        so that ``a`` is the earlier (see :data:`ORDER_RULE`).
    size : int or None
        Side both are resized to (``None``: keep; then sizes must agree
        unless ``allow_resize``).
    heatmap_fn, score_fn : callables, optional
        A model's ``heatmaps(img) -> (14, h, w)`` and ``scores(img) -> (14,)``
        on images prepared by ``prepare`` (default: the grey images as they are).
    allow_different_patients : bool
        Compare images whose file names name different patients.
    allow_resize : bool
        With ``size=None``, resize the later image to the earlier one's
        size instead of raising :class:`PairError` when they differ.
    metadata : DataFrame, optional
        The NIH metadata (``ChestXray14.metadata``: 'Image Index',
        'Follow-up #'); its follow-up numbers are reported in
        ``metadata_followup`` (and a note when they order the pair the
        other way), never used for the order.

    Raises
    ------
    PairError
        Different patients or sizes without the override.
    ImageReadError
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
                raise PairError(f"{na} (patient {pa}) and {nb} (patient {pb}) are different patients; "
                                "pass allow_different_patients=True (--allow-different-patients) to compare anyway")
            patient = pa if pa == pb else None
            if order and followup_index(nb) < followup_index(na):
                image_a, image_b, na, nb = image_b, image_a, nb, na
                notes.append("swapped to put the earlier image (lower file suffix) first")
    if metadata is not None and na and nb:
        fmap = dict(zip(metadata["Image Index"], metadata["Follow-up #"]))
        fa, fb = fmap.get(na), fmap.get(nb)
        meta_fu = {"a": None if fa is None else int(fa), "b": None if fb is None else int(fb)}
        if fa is not None and fb is not None and fa > fb:
            notes.append(f"the metadata's 'Follow-up #' ({na}: {int(fa)}, {nb}: {int(fb)}) orders the pair the "
                         "other way; the file-name suffix is used")
    else:
        meta_fu = None
    if size is None:
        a = read_xray(image_a) if not isinstance(image_a, np.ndarray) else np.asarray(image_a)
        b = read_xray(image_b) if not isinstance(image_b, np.ndarray) else np.asarray(image_b)
        if a.shape != b.shape:
            if not allow_resize:
                raise PairError(f"{na or 'image A'} is {a.shape[1]}x{a.shape[0]}, {nb or 'image B'} is "
                                f"{b.shape[1]}x{b.shape[0]}; pass a common size or allow_resize=True")
            b = cv2.resize(b, (a.shape[1], a.shape[0]), interpolation=cv2.INTER_AREA)
    else:
        a, _ = _load(image_a, size)
        b, _ = _load(image_b, size)
    reg = register(a, b, motion)
    H, W = a.shape
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    b_reg = cv2.warpAffine(b, reg.matrix, (W, H), flags=flags, borderMode=cv2.BORDER_CONSTANT)
    valid = cv2.warpAffine(np.ones_like(b, np.uint8), reg.matrix, (W, H), flags=cv2.INTER_NEAREST |
                           cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    valid = cv2.erode(valid, np.ones((3, 3), np.uint8)).astype(np.float32)
    from skimage.exposure import match_histograms
    from skimage.metrics import structural_similarity

    _, ssim = structural_similarity(a, b_reg, full=True, data_range=255, gaussian_weights=True, sigma=1.5,
                                    use_sample_covariance=False)
    ssim = ssim.astype(np.float32) * valid + (1 - valid)  # outside the overlap: "same"
    m = valid > 0
    matched = b_reg.astype(np.float32).copy()
    matched[m] = match_histograms(b_reg[m].astype(np.float32), a[m].astype(np.float32))
    idiff = (matched - a.astype(np.float32)) * valid
    d = FollowupDiff(na or "A", nb or "B", patient, a, b, b_reg, valid, reg, ssim, idiff, notes=notes,
                     metadata_followup=meta_fu)
    prep = prepare or (lambda x: x)
    if heatmap_fn is not None:
        from .localise import upsample

        d.heat_a = upsample(heatmap_fn(prep(a)), (H, W))
        d.heat_b = upsample(heatmap_fn(prep(b_reg)), (H, W))
    if score_fn is not None:
        d.scores_a = np.asarray(score_fn(prep(a)), float)
        d.scores_b = np.asarray(score_fn(prep(b)), float)
    return d


def _signed_colour(x: np.ndarray, limit: float | None = None) -> np.ndarray:
    """Blue (negative) - white - red (positive), BGR uint8."""
    lim = limit or max(float(np.abs(x).max()), 1e-9)
    t = np.clip(x / lim, -1, 1)
    out = np.empty(x.shape + (3,), np.uint8)
    out[..., 2] = (255 * np.where(t > 0, 1, 1 + t)).astype(np.uint8)
    out[..., 1] = (255 * (1 - np.abs(t))).astype(np.uint8)
    out[..., 0] = (255 * np.where(t < 0, 1, 1 - t)).astype(np.uint8)
    return out


def write_diff_dir(out_dir, d: FollowupDiff, labels=LABELS, max_heat_labels: int = 4) -> dict:
    """Write ``diff.json`` and the PNGs (``a.png``, ``b_registered.png``, ``ssim_map.png``,
    ``intensity_diff.png``, ``heatmap_diff_<label>.png``); returns the JSON."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out / "a.png"), d.a)
    cv2.imwrite(str(out / "b.png"), d.b)
    cv2.imwrite(str(out / "b_registered.png"), d.b_registered)
    dis = ((1 - d.ssim_map) / 2 * 255).clip(0, 255).astype(np.uint8)
    cv2.imwrite(str(out / "ssim_map.png"), cv2.applyColorMap(dis, cv2.COLORMAP_INFERNO))
    cv2.imwrite(str(out / "intensity_diff.png"), _signed_colour(d.intensity_diff))
    changes = None
    heat_labels = []
    if d.scores_a is not None:
        changes = {l: {"a": float(sa), "b": float(sb), "delta": float(sb - sa)}
                   for l, sa, sb in zip(labels, d.scores_a, d.scores_b)}
    if d.heat_a is not None:
        hd = d.heat_diff
        strength = np.abs(hd).reshape(len(hd), -1).sum(1)
        order = np.argsort(-strength)[:max_heat_labels]
        lim = float(np.abs(hd[order]).max()) or 1.0
        for j in order:
            cv2.imwrite(str(out / f"heatmap_diff_{labels[j]}.png"), _signed_colour(hd[j], lim))
            heat_labels.append(labels[j])
    meta = {
        "image_a": d.image_a, "image_b": d.image_b, "patient": d.patient, "order_rule": ORDER_RULE,
        "notes": d.notes, "metadata_followup": d.metadata_followup,
        "registration": {"motion": d.registration.motion, "ecc": d.registration.ecc,
                         "matrix": d.registration.matrix.tolist(), "converged": d.registration.converged},
        "ssim_mean": d.ssim_mean, "intensity_diff_mean_abs": float(np.abs(d.intensity_diff)[d.valid > 0].mean()),
        "score_changes": changes, "heatmap_labels": heat_labels,
    }
    (out / "diff.json").write_text(json.dumps(meta, indent=2))
    return meta


def read_diff(directory) -> dict:
    p = Path(directory) / "diff.json"
    if not p.exists():
        raise FileNotFoundError(f"{p}: not a diff directory (no diff.json)")
    return json.loads(p.read_text())
