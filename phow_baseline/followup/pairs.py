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

Differences exist only inside the overlap of the two registered images:
``valid`` marks the pixels of the earlier image that the warped later image
covers (less a one-pixel rim, where interpolation mixes in the border), and
``ssim_valid`` those whose whole SSIM window (11 x 11) lies in the overlap.
Outside them every map holds zero change (dissimilarity 0, intensity and
heatmap differences 0) and the figures draw them as hatched grey "no data",
never as change.  The later image's uncovered strip is filled with the
earlier image's pixels before the SSIM and the heatmaps are computed, so a
window or descriptor that reaches past the overlap's edge sees no artificial
edge there.

The figures (``write_diff_dir``) are overlays on the registered later image,
each with its colour bar and units: structural dissimilarity ``(1 - SSIM) / 2``
(unitless, 0 = identical), the intensity difference (grey levels of the
8-bit image) and the heatmap differences of the findings whose score changed
most.  The registration quality is stated in words
(:func:`registration_quality`); when it is poor the differences are said to
be unreliable.

One concept at this length: follow-up differencing (ordering, registration, the
differences, and their figures).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from ..data.chestxray14 import LABELS, followup_index, patient_from_name
from ..io import atomic_path, atomic_write_bytes, atomic_write_json, confined, read_json
from ..data.preprocess import preprocess, read_xray

ORDER_RULE = ("earlier/later by the file-name suffix PPPPPPPP_NNN.png (the NIH numbering); the v2020 "
              "'Follow-up #' column disagrees with it for 24,106 images and is not used")
MOTIONS = {"affine": cv2.MOTION_AFFINE, "euclidean": cv2.MOTION_EUCLIDEAN, "translation": cv2.MOTION_TRANSLATION}

#: Side of the SSIM window: skimage's Gaussian window for sigma 1.5 (truncate 3.5) spans 11 pixels.
SSIM_WINDOW = 11

#: Final ECC (correlation over the overlap) at or above which a converged registration is called good,
#: and below which it is called poor (between the two: fair).  Chosen on the sample's follow-up pairs:
#: same-view pairs register at 0.9 and above, AP-against-PA pairs well below 0.8.
ECC_GOOD, ECC_POOR = 0.9, 0.75

#: Below this share of the image covered by the registered later image, the overlap is called small.
MIN_OVERLAP = 0.6


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
    ssim_valid: np.ndarray | None = None    # pixels whose SSIM window lies in the overlap (float 0/1)
    score_kind: str = "score"               # "probability" when score_fn gives calibrated probabilities

    @property
    def heat_diff(self):
        """Heatmap B - A per class, zero outside the overlap."""
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
        """Share of the earlier image's pixels covered by the registered later image."""
        return float((self.valid > 0).mean())

    @property
    def quality(self) -> dict:
        return registration_quality(self.registration, self.overlap_fraction)


def registration_quality(reg: Registration, overlap_fraction: float = 1.0) -> dict:
    """The registration's quality in words: ``{"level", "text", "reliable"}``.

    Levels: ``"not converged"`` (no ECC refinement converged), ``"poor"``
    (final ECC below :data:`ECC_POOR`, or an overlap below
    :data:`MIN_OVERLAP` of the image), ``"fair"`` (ECC below
    :data:`ECC_GOOD`) and ``"good"``.  The differences are called unreliable
    at the first two levels.
    """
    ecc = float(reg.ecc)
    if not reg.converged:
        return {"level": "not converged", "reliable": False,
                "text": f"not converged: differences are unreliable (ECC {ecc:.3f}; the images may show "
                        "different views, e.g. AP against PA, or too little common anatomy)"}
    if not ecc >= ECC_POOR:
        return {"level": "poor", "reliable": False,
                "text": f"poor alignment (ECC {ecc:.3f} < {ECC_POOR}): differences are unreliable"}
    if overlap_fraction < MIN_OVERLAP:
        return {"level": "poor", "reliable": False,
                "text": f"small overlap ({100 * overlap_fraction:.0f} % of the image): differences are unreliable"}
    if ecc < ECC_GOOD:
        return {"level": "fair", "reliable": True,
                "text": f"fair alignment (ECC {ecc:.3f}): check the registered image against the earlier one"}
    return {"level": "good", "reliable": True, "text": f"good alignment (ECC {ecc:.3f})"}


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


def warp_with_overlap(b: np.ndarray, matrix: np.ndarray, shape) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Warp the later image into the earlier one's frame and say where it has data.

    Returns ``(b_registered, valid, ssim_valid)``: the warped image (0
    outside), the overlap (float 0/1: pixels that the warped image covers,
    less a one-pixel rim whose interpolation mixes in the border), and the
    pixels whose whole :data:`SSIM_WINDOW` window lies in the overlap.
    """
    H, W = shape
    M = np.asarray(matrix, np.float64)
    b_reg = cv2.warpAffine(b, M, (W, H), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                           borderMode=cv2.BORDER_CONSTANT)
    cover = cv2.warpAffine(np.ones_like(b, np.uint8), M, (W, H), flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP,
                           borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    # erode with a zero border: pixels on the image's own edge keep their value (BORDER_CONSTANT=1 pads with ones)
    valid = cv2.erode(cover, np.ones((3, 3), np.uint8), borderType=cv2.BORDER_CONSTANT, borderValue=1)
    ssim_valid = cv2.erode(valid, np.ones((SSIM_WINDOW, SSIM_WINDOW), np.uint8), borderType=cv2.BORDER_CONSTANT,
                           borderValue=1)
    return b_reg, valid.astype(np.float32), ssim_valid.astype(np.float32)


def _load(image, size):
    if isinstance(image, np.ndarray):
        return preprocess(image, size=size, equalization="none"), "<array>"
    return preprocess(read_xray(image), size=size, equalization="none"), Path(image).name


def diff_pair(image_a, image_b, *, size: int | None = 256, motion: str = "affine",
              heatmap_fn: Callable | None = None, score_fn: Callable | None = None,
              preprocess: Callable | None = None, allow_different_patients: bool = False,
              allow_resize: bool = False, order: bool = True, metadata=None,
              score_kind: str = "score") -> FollowupDiff:
    """Register the later image to the earlier one and difference them.

    Parameters
    ----------
    image_a, image_b : path or uint8 array
        Two X-rays of one patient; with ``order`` they are swapped if needed
        so that ``a`` is the earlier (see :data:`ORDER_RULE`).
    size : int or None
        Side both are resized to (``None``: keep; then sizes must agree
        unless ``allow_resize``); ignored with ``preprocess``.
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
    metadata : DataFrame, optional
        The NIH metadata (``ChestXray14.metadata``: 'Image Index',
        'Follow-up #'); its follow-up numbers are reported in
        ``metadata_followup`` (and a note when they order the pair the
        other way), never used for the order.
    score_kind : {"score", "probability"}
        What ``score_fn`` returns (labels the dashboard's columns).

    Raises
    ------
    PairError
        Different patients or sizes without the override.
    phow_baseline.data.preprocess.ImageReadError
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
    if preprocess is not None:
        a, b = np.asarray(preprocess(image_a)), np.asarray(preprocess(image_b))
        if a.shape != b.shape:
            raise PairError(f"the model's preprocessing gave {a.shape} and {b.shape} for {na or 'A'} and "
                            f"{nb or 'B'}")
    elif size is None:
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
    if score_kind not in ("score", "probability"):
        raise ValueError(f"score_kind must be 'score' or 'probability', got {score_kind!r}")
    reg = register(a, b, motion)
    b_reg, valid, ssim_valid = warp_with_overlap(b, reg.matrix, a.shape)
    from skimage.exposure import match_histograms
    from skimage.metrics import structural_similarity

    m = valid > 0
    # the uncovered strip borrows the earlier image's pixels: no artificial edge for windows reaching past it
    b_fill = np.where(m, b_reg, a).astype(np.uint8)
    _, ssim = structural_similarity(a, b_fill, full=True, data_range=255, gaussian_weights=True, sigma=1.5,
                                    use_sample_covariance=False)
    ssim = np.where(ssim_valid > 0, ssim, 1.0).astype(np.float32)  # no data: no dissimilarity reported
    matched = b_reg.astype(np.float32).copy()
    if m.any():
        matched[m] = match_histograms(b_reg[m].astype(np.float32), a[m].astype(np.float32))
    idiff = (matched - a.astype(np.float32)) * valid
    d = FollowupDiff(na or "A", nb or "B", patient, a, b, b_reg, valid, reg, ssim, idiff, notes=notes,
                     metadata_followup=meta_fu, ssim_valid=ssim_valid, score_kind=score_kind)
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


# --------------------------------------------------------------------------
# Figures: overlays on the registered later image, each with a colour bar
# --------------------------------------------------------------------------

#: The two greys of the "no data" hatching (outside the overlap), RGB.
NO_DATA_GREYS = ((150, 150, 150), (205, 205, 205))


def no_data_hatch(shape, period: int = 8) -> np.ndarray:
    """Diagonal stripes (RGB uint8, the two :data:`NO_DATA_GREYS`) that mark pixels without data."""
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    stripe = ((xx + yy) % period) < period // 2
    return np.where(stripe[..., None], np.uint8(NO_DATA_GREYS[0]), np.uint8(NO_DATA_GREYS[1])).astype(np.uint8)


def overlay_rgb(base: np.ndarray, values: np.ndarray, valid: np.ndarray, cmap: str, vmin: float, vmax: float,
                max_alpha: float = 0.85, signed: bool = False) -> np.ndarray:
    """An RGB image (uint8, same size as ``base``): ``values`` in colour over the grey ``base``.

    Inside ``valid`` the colour of ``cmap`` (over ``[vmin, vmax]``) is
    blended over the grey base with an opacity that grows with the size of
    the value (``|v| / max(|vmin|, |vmax|)`` when ``signed``, else
    ``(v - vmin) / (vmax - vmin)``; at most ``max_alpha``), so that where
    nothing changed the anatomy shows through; outside ``valid`` the pixels
    are the hatched grey of :func:`no_data_hatch`, whatever ``values`` holds.
    """
    import matplotlib

    base = np.asarray(base, np.float32)
    v = np.asarray(values, np.float64)
    inside = np.asarray(valid) > 0
    span = max(vmax - vmin, 1e-12)
    rgba = matplotlib.colormaps[cmap](np.clip((v - vmin) / span, 0, 1))
    if signed:
        a = np.clip(np.abs(v) / max(abs(vmin), abs(vmax), 1e-12), 0, 1)
    else:
        a = np.clip((v - vmin) / span, 0, 1)
    a = (a * max_alpha)[..., None]
    grey = np.repeat(base[..., None], 3, axis=2)
    out = (1 - a) * grey + a * rgba[..., :3] * 255
    out = np.where(inside[..., None], out, no_data_hatch(base.shape))
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _save_figure(path, rgb: np.ndarray, title: str, cmap: str, vmin: float, vmax: float, units: str,
                 extend: str = "neither") -> None:
    """``rgb`` framed with a title, a colour bar with ``units`` and a "no data" legend; PNG written atomically."""
    import matplotlib
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.patches import Patch

    h, w = rgb.shape[:2]
    fig, ax = plt.subplots(figsize=(4.6, 4.6 * h / w + 0.75), dpi=100)
    ax.imshow(rgb, interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(title, fontsize=8.5)
    cb = fig.colorbar(ScalarMappable(Normalize(vmin, vmax), cmap), ax=ax, fraction=0.046, pad=0.03, extend=extend)
    cb.set_label(units, fontsize=7.5)
    cb.ax.tick_params(labelsize=7)
    nd = Patch(facecolor=np.array(NO_DATA_GREYS[0]) / 255, edgecolor=np.array(NO_DATA_GREYS[1]) / 255, hatch="///",
               label="no data (outside the overlap)")
    ax.legend(handles=[nd], loc="upper center", bbox_to_anchor=(0.5, -0.01), fontsize=7, frameon=False)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", bbox_inches="tight", pad_inches=0.06)
    plt.close(fig)


def _write_png(path, img: np.ndarray) -> None:
    ok, buf = cv2.imencode(".png", img)
    if not ok:
        raise ValueError(f"{path}: could not encode the image as PNG")
    atomic_write_bytes(path, buf.tobytes())


#: Upper end of the dissimilarity colour bar: (1 - SSIM) / 2 above it is drawn at the top colour.
DISSIMILARITY_MAX = 0.5


def _symmetric_limit(x: np.ndarray, mask: np.ndarray, floor: float) -> float:
    vals = np.abs(x[mask > 0]) if (mask > 0).any() else np.zeros(1)
    return float(max(np.percentile(vals, 99.5) if vals.size else 0.0, floor))


def write_diff_dir(out_dir, d: FollowupDiff, labels=LABELS, max_heat_labels: int = 4,
                   heatmap_units: str = "heatmap units of the model") -> dict:
    """Write ``diff.json`` and the figures; returns the JSON.

    Files: ``a.png``, ``b.png``, ``b_registered.png`` (grey images);
    ``ssim_map.png``, ``intensity_diff.png`` and ``heatmap_diff_<label>.png``
    (overlays on the registered later image with colour bars; "no data"
    hatched).  ``diff.json`` names every figure under ``figures``;
    ``score_changes`` gives per finding the score (or probability) of A and
    of B and the change, and ``heatmap_labels`` the findings whose heatmap
    difference is drawn: those whose score changed most (ties: the larger
    heatmap change).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _write_png(out / "a.png", d.a)
    _write_png(out / "b.png", d.b)
    _write_png(out / "b_registered.png", d.b_registered)
    q = d.quality
    warn = "" if q["reliable"] else "\n" + q["text"]
    dis = (1 - d.ssim_map) / 2
    _save_figure(out / "ssim_map.png", overlay_rgb(d.b_registered, dis, d._ssim_mask, "inferno", 0.0,
                                                    DISSIMILARITY_MAX),
                 f"Structural change on the later image{warn}", "inferno", 0.0, DISSIMILARITY_MAX,
                 "dissimilarity (1 - SSIM) / 2 (unitless; 0 = same)", extend="max")
    lim = _symmetric_limit(d.intensity_diff, d.valid, 10.0)
    _save_figure(out / "intensity_diff.png", overlay_rgb(d.b_registered, d.intensity_diff, d.valid, "RdBu_r", -lim,
                                                          lim, signed=True),
                 f"Intensity change, later - earlier{warn}", "RdBu_r", -lim, lim,
                 "grey levels (8-bit), after histogram matching", extend="both")
    figures = {"a": "a.png", "b": "b.png", "b_registered": "b_registered.png", "ssim": "ssim_map.png",
               "intensity": "intensity_diff.png", "heatmaps": {}}
    changes = None
    if d.scores_a is not None:
        changes = {l: {"a": float(sa), "b": float(sb), "delta": float(sb - sa)}
                   for l, sa, sb in zip(labels, d.scores_a, d.scores_b)}
    heat_labels = []
    if d.heat_a is not None:
        hd = d.heat_diff
        strength = np.abs(hd).reshape(len(hd), -1).sum(1)
        if d.scores_a is not None:
            dlt = np.abs(np.asarray(d.scores_b, float) - np.asarray(d.scores_a, float))
            order = np.lexsort((-strength, -dlt))[:max_heat_labels]
        else:
            order = np.argsort(-strength, kind="stable")[:max_heat_labels]
        hlim = _symmetric_limit(hd[order], np.broadcast_to(d.valid, hd[order].shape), 1e-9)
        what = "probability" if d.score_kind == "probability" else "score"
        for j in order:
            lab = labels[j]
            head = f"{lab}: heatmap B - A"
            if changes:
                c = changes[lab]
                head += f"\n{what} {c['a']:.3f} -> {c['b']:.3f} ({c['delta']:+.3f})"
            name = f"heatmap_diff_{lab}.png"
            _save_figure(out / name, overlay_rgb(d.b_registered, hd[j], d.valid, "RdBu_r", -hlim, hlim, signed=True),
                         head + warn, "RdBu_r", -hlim, hlim, f"{heatmap_units} (B - A)", extend="both")
            heat_labels.append(lab)
            figures["heatmaps"][lab] = name
    reg = d.registration
    meta = {
        "image_a": d.image_a, "image_b": d.image_b, "patient": d.patient, "order_rule": ORDER_RULE,
        "notes": d.notes, "metadata_followup": d.metadata_followup,
        "registration": {"motion": reg.motion, "ecc": reg.ecc, "matrix": reg.matrix.tolist(),
                         "converged": reg.converged},
        "registration_quality": q, "overlap_fraction": d.overlap_fraction,
        "ssim_mean": d.ssim_mean,
        "intensity_diff_mean_abs": float(np.abs(d.intensity_diff)[d.valid > 0].mean()) if (d.valid > 0).any()
        else float("nan"),
        "score_kind": d.score_kind, "score_changes": changes, "heatmap_labels": heat_labels,
        "heatmap_units": heatmap_units, "figures": figures,
        "units": {"ssim": "dissimilarity (1 - SSIM) / 2, unitless", "intensity": "grey levels (8-bit)"},
    }
    atomic_write_json(out / "diff.json", meta)
    return meta


def read_diff(directory) -> dict:
    """``diff.json`` of a diff directory (errors name the file)."""
    return read_json(Path(directory) / "diff.json", what="diff.json (a diff directory)")


def figure_paths(directory, meta: dict) -> dict:
    """The figure files named in ``meta`` (``diff.json``), confined to ``directory``.

    ``{"a", "b_registered", "ssim", "intensity": Path, "heatmaps": {label: Path}}``;
    names that leave the folder (absolute, ``..``) raise
    :class:`phow_baseline.io.DataFileError`.  A ``diff.json`` without
    ``figures`` (older versions) gets the default names.
    """
    directory = Path(directory)
    figs = meta.get("figures") or {}
    if not isinstance(figs, dict):
        from ..io import DataFileError

        raise DataFileError(f"{directory / 'diff.json'}: 'figures' must be an object")
    names = {"a": "a.png", "b_registered": "b_registered.png", "ssim": "ssim_map.png",
             "intensity": "intensity_diff.png"}
    out = {k: confined(directory, figs.get(k, v)) for k, v in names.items()}
    heat = figs.get("heatmaps")
    if heat is None:
        heat = {lab: f"heatmap_diff_{lab}.png" for lab in (meta.get("heatmap_labels") or [])}
    if not isinstance(heat, dict):
        from ..io import DataFileError

        raise DataFileError(f"{directory / 'diff.json'}: 'figures.heatmaps' must be an object")
    out["heatmaps"] = {str(lab): confined(directory, name) for lab, name in heat.items()}
    return out
