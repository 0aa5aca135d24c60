"""Registration of the later X-ray of a patient to the earlier one, and its quality in words.

An ORB-feature + RANSAC estimate (affine by default, rotation + shift for
``euclidean``), a phase-correlation shift and the identity are each refined
by OpenCV's ECC maximisation, coarse to fine over a 3-level image pyramid;
the best converged, plausible one is kept (:func:`register`).  Its quality
is the final ECC (a correlation coefficient in [-1, 1]) over the overlap,
stated in words by :func:`registration_quality`; when it is poor the
differences are said to be unreliable.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

#: The motion models :func:`register` estimates, by name: OpenCV's ECC motion types.
MOTIONS = {"affine": cv2.MOTION_AFFINE, "euclidean": cv2.MOTION_EUCLIDEAN, "translation": cv2.MOTION_TRANSLATION}

#: Final ECC (correlation over the overlap) at or above which a converged registration is called good,
#: and below which it is called poor (between the two: fair).  Chosen on the sample's follow-up pairs:
#: same-view pairs register at 0.9 and above, AP-against-PA pairs well below 0.8.
ECC_GOOD, ECC_POOR = 0.9, 0.75

#: Below this share of the image covered by the registered later image, the overlap is called small.
MIN_OVERLAP = 0.6


@dataclass
class Registration:
    """A registration of the later image to the earlier one (:func:`register`).

    The parameters are kept as attributes of the same names.

    Parameters
    ----------
    matrix : ndarray of float64, shape (2, 3)
        Maps earlier-image coordinates (pixels) to later-image coordinates.
    ecc : float
        Final ECC, a correlation coefficient in [-1, 1] over the overlap.
    converged : bool
        Whether an ECC refinement converged.
    motion : str
        A key of :data:`MOTIONS`.
    """

    matrix: np.ndarray  # 2x3: maps earlier-image coordinates to later-image coordinates
    ecc: float
    converged: bool
    motion: str


def registration_quality(reg: Registration, overlap_fraction: float = 1.0) -> dict:
    """The registration's quality in words: ``{"level", "text", "reliable"}``.

    Levels: ``"not converged"`` (no ECC refinement converged), ``"poor"``
    (final ECC below :data:`ECC_POOR`, or an overlap below
    :data:`MIN_OVERLAP` of the image), ``"fair"`` (ECC below
    :data:`ECC_GOOD`) and ``"good"``.  The differences are called unreliable
    at the first two levels.

    Parameters
    ----------
    reg : Registration
        What :func:`register` found.
    overlap_fraction : float, default=1.0
        Share of the earlier image's pixels covered by the registered later
        image, in [0, 1].

    Returns
    -------
    dict
        ``level`` (``"good"``, ``"fair"``, ``"poor"`` or ``"not
        converged"``), ``reliable`` (bool: whether the differences can be
        trusted) and ``text`` (one sentence for a person, with the ECC).
    """
    ecc = float(reg.ecc)
    if not reg.converged:
        return {
            "level": "not converged",
            "reliable": False,
            "text": f"not converged: differences are unreliable (ECC {ecc:.3f}; the images may show "
            "different views, e.g. AP against PA, or too little common anatomy)",
        }
    if not ecc >= ECC_POOR:
        return {
            "level": "poor",
            "reliable": False,
            "text": f"poor alignment (ECC {ecc:.3f} < {ECC_POOR}): differences are unreliable",
        }
    if overlap_fraction < MIN_OVERLAP:
        return {
            "level": "poor",
            "reliable": False,
            "text": f"small overlap ({100 * overlap_fraction:.0f} % of the image): differences are unreliable",
        }
    if ecc < ECC_GOOD:
        return {
            "level": "fair",
            "reliable": True,
            "text": f"fair alignment (ECC {ecc:.3f}): check the registered image against the earlier one",
        }
    return {"level": "good", "reliable": True, "text": f"good alignment (ECC {ecc:.3f})"}


def register(
    fixed: np.ndarray, moving: np.ndarray, motion: str = "affine", iterations: int = 200, eps: float = 1e-6
) -> Registration:
    """Find the warp aligning ``moving`` to ``fixed`` (ORB + RANSAC start, ECC refinement).

    Three starts are each refined by ECC, coarse to fine over a 3-level
    pyramid: the ORB + RANSAC estimate (when there are enough matches), the
    phase-correlation shift (when it is under a quarter of the image), and
    the identity.  The converged, plausible result (scale 0.67-1.5,
    anisotropy below 1.3) with the highest ECC is kept; when none converges,
    the plausible start with the highest correlation over the overlap is
    returned with ``converged=False``.

    Parameters
    ----------
    fixed : ndarray, shape (H, W)
        The earlier image, grey (uint8 for the ORB start).
    moving : ndarray, shape (H, W)
        The later image, same size and type.
    motion : {"affine", "euclidean", "translation"}, default="affine"
        The motion model (a key of :data:`MOTIONS`).
    iterations : int, default=200
        ECC iterations at most, at each pyramid level.
    eps : float, default=1e-6
        ECC stops when the correlation improves by less than ``eps``.

    Returns
    -------
    Registration
        The 2x3 matrix ``M`` such that ``moving(M [x, y, 1])`` matches
        ``fixed(x, y)`` (use it with ``cv2.warpAffine(moving, M, ...,
        flags=WARP_INVERSE_MAP)``), coordinates in pixels; the final ECC (a
        correlation in [-1, 1], NaN when the overlap is under 16 pixels) and
        whether it converged.

    Raises
    ------
    ValueError
        An unknown ``motion``.
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
    valid = (
        cv2.warpAffine(
            np.ones_like(m), np.asarray(M, np.float32), (W, H), flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP
        )
        > 0
    )
    if valid.sum() < 16:
        return float("nan")
    return float(np.corrcoef(f[valid], w[valid])[0, 1])


def _plausible(M) -> bool:
    """A patient repositioned between two radiographs (or AP vs PA): scale within
    0.67-1.5, anisotropy below 1.3.
    """
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
