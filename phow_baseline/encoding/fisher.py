"""Fisher vectors with VLFeat's ``vl_fisher`` semantics, per spatial region: one GEMM and a sparse kernel per chunk.

For descriptors ``x_1..x_N`` of a region and a diagonal mixture
``(pi_k, mu_k, sigma_k^2)``, with posteriors ``q_ik`` (those below ``1e-6``
set to zero, as ``vl/fisher.c`` skips them), the Fisher vector is
``[u_1 .. u_K, v_1 .. v_K]`` (``2 K d`` numbers, VLFeat's order) with

    u_k = 1 / (N sqrt(pi_k))   sum_i q_ik (x_i - mu_k) / sigma_k
    v_k = 1 / (N sqrt(2 pi_k)) sum_i q_ik ((x_i - mu_k)^2 / sigma_k^2 - 1)

and ``u_k = v_k = 0`` for a component whose prior is below ``1e-6``.
"Improved" (Perronnin, Sanchez and Mensink 2010) is then the signed square
root of every entry followed by L2 normalization (``max(||z||, 1e-12)``).

The computation, chunk by chunk of descriptors (no Python loop over them):

1. log-joints: ``[x^2, x, 1] @ B`` is the log of ``pi_k N(x; mu_k,
   sigma_k^2)`` for every component at once, one float32 GEMM per chunk
   (:func:`phow_baseline.encoding.gmm.log_joint_table`), and numpy's row maxima;
2. posteriors and moments, in one Numba pass over the chunk
   (``_fisher_kernels.moments_kernel``): the soft-max of each row over
   the components within 30 nats of its best (the others' posteriors are
   below ``1e-13``), and for each posterior ``q >= 1e-6`` (about 7 of 256 on
   PHOW descriptors) ``[q x^2, q x, q]`` added to the component's zeroth,
   first and second moments ``S0, S1, S2``, in float64.  This is ``vl_fisher``'s sparse loop; a dense second GEMM
   ``Q^T [x^2, x, 1]`` would cost as much as the first;
3. ``sum_i q (x - mu)/sigma = (S1 - S0 mu) / sigma`` and
   ``sum_i q ((x - mu)^2/sigma^2 - 1) = (S2 - 2 mu S1 + S0 mu^2)/sigma^2 - S0``,
   in float64.

Spatial regions: a frame at pixel ``(x, y)`` of a ``W x H`` image is in
column ``floor(gx x / (W - 1))`` and row ``floor(gy y / (H - 1))`` of a
``gx x gy`` grid (clipped; the cell edges of
:func:`phow_baseline.encoding.pyramid.pyramid_cells`).  The descriptors are grouped
by the tuple of their cells at every level; each group's moments are
computed once and each region's moments are sums of its groups', so a
descriptor goes through the GEMM once whatever the number of levels.
:class:`FisherVectorEncoder` also does RootSIFT and the PCA chunk by chunk,
so an image's descriptors are read once and stay in cache.

One concept at this length: the Fisher vector (the formulas, the region layouts
and the encoder estimator).
"""

from __future__ import annotations

import math
import os

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.exceptions import NotFittedError

from ..features.descriptors import DEFAULT_PCA_DIMS, PCA, root_sift
from ._fisher_kernels import moments_kernel, root_sift_rows
from .gmm import (
    DEFAULT_N_COMPONENTS,
    MIN_PRIOR,
    VLFEAT_COVARIANCE_BOUND,
    GaussianMixtureVocabulary,
    log_joint_table,
)
from .quantize import run_in_threads, single_blas_thread

#: ``vl/fisher.c``: posteriors below this are skipped (set to zero here).
FISHER_MIN_POSTERIOR = 1e-6
#: Rows per GEMM chunk (1024 x 256 float32 log-joints: 1 MB, read once more by the kernel while in cache).
FISHER_CHUNK = 1024
#: Default regions: the whole image and its 2 x 2 quarters, as ``(columns, rows)``.
REGIONS_1X1_2X2 = ((1, 1), (2, 2))
#: The whole image and three horizontal strips (top, middle, bottom).
REGIONS_1X1_3X1 = ((1, 1), (1, 3))
#: Named region layouts (for configurations and the command line).
REGION_LAYOUTS = {"1x1+2x2": REGIONS_1X1_2X2, "1x1+3x1": REGIONS_1X1_3X1, "1x1": ((1, 1),)}


# --------------------------------------------------------------------------
# Regions
# --------------------------------------------------------------------------


def check_regions(regions) -> tuple[tuple[int, int], ...]:
    """Validate a region layout: a name of :data:`REGION_LAYOUTS` or ``(columns, rows)`` pairs (an int g = g x g).

    Parameters
    ----------
    regions : str or sequence of int or (int, int)
        ``"1x1+2x2"``, ``"1x1+3x1"``, ``"1x1"``, or one grid per level.

    Returns
    -------
    tuple of (int, int)
        ``(columns, rows)`` of each level's grid, at least one.

    Raises
    ------
    ValueError
        If the name is unknown, a grid is not of positive integers, or there is none.
    """
    if isinstance(regions, str):
        if regions not in REGION_LAYOUTS:
            raise ValueError(f"unknown region layout {regions!r}; expected one of {sorted(REGION_LAYOUTS)}")
        regions = REGION_LAYOUTS[regions]
    out = []
    for r in regions:
        gx, gy = (r, r) if np.isscalar(r) else tuple(r)
        if int(gx) != gx or int(gy) != gy or gx < 1 or gy < 1:
            raise ValueError(f"a region grid must be (columns, rows) of positive integers, got {r!r}")
        out.append((int(gx), int(gy)))
    if not out:
        raise ValueError("at least one region grid is needed")
    return tuple(out)


def region_index(frames_xy, width, height, regions=REGIONS_1X1_2X2) -> tuple[np.ndarray, int]:
    """Flat region of each frame at each level, and the number of regions.

    A frame at ``(x, y)`` is in column ``floor(gx x / (width - 1))`` and row
    ``floor(gy y / (height - 1))`` (clipped to the grid).  Level ``l``'s regions
    are numbered after those of the levels before it, row-major within a level
    (the convention of :func:`phow_baseline.encoding.pyramid.pyramid_cells`).

    Parameters
    ----------
    frames_xy : (n, 2) array
        ``x, y`` of each frame, 0-based pixels.
    width, height : int
        Image size in pixels.
    regions : str or sequence of (columns, rows)
        The layout (:func:`check_regions`; default the whole image and its 2 x 2 quarters).

    Returns
    -------
    cells : (n, L) int32
        Region of each frame at each of the ``L`` levels, in ``[0, n_regions)``.
    n_regions : int
        Regions over all levels, ``sum(columns * rows)``.
    """
    regions = check_regions(regions)
    xy = np.asarray(frames_xy, dtype=np.float64).reshape(-1, 2)
    out = np.empty((len(xy), len(regions)), np.int32)
    offset = 0
    for l, (gx, gy) in enumerate(regions):
        bx = np.clip(np.floor(xy[:, 0] * gx / max(width - 1, 1)), 0, gx - 1).astype(np.int32)
        by = np.clip(np.floor(xy[:, 1] * gy / max(height - 1, 1)), 0, gy - 1).astype(np.int32)
        out[:, l] = offset + by * gx + bx
        offset += gx * gy
    return out, offset


def region_weights(regions, level_weights=None) -> np.ndarray:
    """Weight of each region: its level's weight, by default ``1 / sqrt(cells of the level)``.

    With every region's vector L2-normalized, the default gives each level
    the same energy (squared norm 1), so a 2 x 2 level does not outweigh the
    whole image four to one.  ``level_weights`` (one per level) replaces the
    default and is used as given.

    Parameters
    ----------
    regions : str or sequence of (columns, rows)
        The layout (:func:`check_regions`).
    level_weights : sequence of float, optional
        One non-negative finite weight per level.

    Returns
    -------
    (n_regions,) float64
        Weight of each region, in :func:`region_index`'s order.

    Raises
    ------
    ValueError
        If ``level_weights`` does not give one non-negative number per level.
    """
    regions = check_regions(regions)
    if level_weights is None:
        lw = [1.0 / math.sqrt(gx * gy) for gx, gy in regions]
    else:
        lw = [float(w) for w in level_weights]
        if len(lw) != len(regions) or not all(w >= 0 and math.isfinite(w) for w in lw):
            raise ValueError(f"level_weights must be {len(regions)} non-negative numbers, got {level_weights!r}")
    return np.concatenate([np.full(gx * gy, w) for (gx, gy), w in zip(regions, lw)])


def _groups(cells: np.ndarray, n_regions: int):
    """Group rows by their tuple of regions: (group of each row, membership (n_regions, n_groups))."""
    n, L = cells.shape
    if n == 0:
        return np.zeros(0, np.int64), np.zeros((n_regions, 0))
    code = np.zeros(n, np.int64)
    for l in range(L):
        code = code * n_regions + cells[:, l]
    uniq, inv = np.unique(code, return_inverse=True)
    member = np.zeros((n_regions, len(uniq)))
    rows = np.empty((len(uniq), L), np.int64)
    c = uniq.copy()
    for l in range(L - 1, -1, -1):
        rows[:, l] = c % n_regions
        c //= n_regions
    for l in range(L):
        member[rows[:, l], np.arange(len(uniq))] = 1.0
    return inv.astype(np.int64).ravel(), member


# --------------------------------------------------------------------------
# Moments and the vector
# --------------------------------------------------------------------------


def _check_mixture(means, covariances, priors):
    M = np.ascontiguousarray(means, np.float32)
    S = np.ascontiguousarray(covariances, np.float32)
    w = np.ascontiguousarray(priors, np.float32)
    if M.ndim != 2 or S.shape != M.shape or w.shape != (len(M),):
        raise ValueError(f"means {M.shape}, covariances {S.shape} and priors {w.shape} do not match")
    if not np.all(S > 0):
        raise ValueError("covariances must be positive")
    return M, S, w


def _table(M, S, w, table) -> np.ndarray:
    """The mixture's log-joint table, computed or checked."""
    K, d = M.shape
    B = log_joint_table(M, S, w, np.float32) if table is None else np.asarray(table)
    if B.shape != (2 * d + 1, K) or B.dtype != np.float32 or not B.flags.c_contiguous:
        raise ValueError(
            f"the log-joint table must be C-contiguous ({2 * d + 1}, {K}) float32, got {B.shape} {B.dtype}"
        )
    return B


def fisher_moments(
    descriptors,
    means,
    covariances,
    priors,
    groups=None,
    n_groups=1,
    *,
    fast=False,
    chunk=FISHER_CHUNK,
    n_threads=1,
    table=None,
) -> np.ndarray:
    """Posterior-weighted moments of descriptors per group: ``(n_groups, K, 2d + 1)`` float64.

    ``out[g, k] = [sum q_ik x_i^2, sum q_ik x_i, sum q_ik]`` over the rows
    ``i`` of group ``g``, with the posteriors ``q`` of :func:`fisher_vector`
    (below ``1e-6`` set to zero; with ``fast``, one-hot on the most probable
    component, VLFeat's ``FAST`` flag).  Per chunk of ``chunk`` rows: one
    float32 GEMM for the log-joints, then the sparse soft-max and moments
    kernel (see the module docstring); ``n_threads`` threads each run
    single-threaded BLAS on their own chunks.

    Parameters
    ----------
    descriptors : (n, d) float32 array
        The descriptors.
    means, covariances, priors : (K, d), (K, d), (K,) arrays
        The diagonal mixture (variances > 0).
    groups : (n,) int array, optional
        Group of each descriptor, in ``[0, n_groups)`` (default: one group).
    n_groups : int
        Number of groups (default 1).
    fast : bool
        Hard-assign each descriptor to its most probable component.
    chunk : int
        Rows per GEMM (default :data:`FISHER_CHUNK`).
    n_threads : int or None
        Threads over chunks (None: all cores; default 1).
    table : (2d + 1, K) float32 array, optional
        :func:`~phow_baseline.encoding.gmm.log_joint_table` of the mixture, if already computed.

    Returns
    -------
    (n_groups, K, 2d + 1) float64
        Per group and component: ``sum q x^2`` (d), ``sum q x`` (d), ``sum q`` (1),
        in squared descriptor units, descriptor units and descriptors.

    Raises
    ------
    ValueError
        If the shapes disagree or a group is out of range.
    """
    X = np.asarray(descriptors)
    if X.ndim != 2:
        raise ValueError(f"descriptors must be 2-D, got shape {X.shape}")
    M, S, w = _check_mixture(means, covariances, priors)
    K, d = M.shape
    if X.shape[1] != d:
        raise ValueError(f"descriptors have {X.shape[1]} dims, the mixture {d}")
    B = _table(M, S, w, table)
    X = np.ascontiguousarray(X, np.float32)
    return _moments(len(X), lambda s, e: X[s:e], B, d, groups, n_groups, fast, chunk, n_threads)


def _moments(n, rows, B, d, groups, n_groups, fast, chunk, n_threads) -> np.ndarray:
    """:func:`fisher_moments` of ``n`` descriptors that ``rows(s, e)`` gives chunk by chunk ((e - s, d) float32)."""
    K = B.shape[1]
    out = np.zeros((n_groups, K, 2 * d + 1))
    if n == 0:
        return out
    if groups is None:
        groups = np.zeros(n, np.int64)
    else:
        groups = np.ascontiguousarray(groups, np.int64)
        if groups.shape != (n,) or groups.min() < 0 or groups.max() >= n_groups:
            raise ValueError("groups must give each descriptor a group in [0, n_groups)")
    chunk = max(1, min(int(chunk), n))
    jobs = list(range(0, n, chunk))
    n_threads = max(1, min(int(n_threads or os.cpu_count() or 1), len(jobs)))

    def run(part, acc):
        A = np.empty((chunk, 2 * d + 1), np.float32)
        A[:, 2 * d] = 1.0
        L = np.empty((chunk, K), np.float32)
        m = np.empty(chunk, np.float32)
        best = np.empty(chunk if fast else 0, np.int64)
        for s in part:
            x = rows(s, min(s + chunk, n))
            r = len(x)
            a = A[:r]
            np.multiply(x, x, out=a[:, :d])
            a[:, d : 2 * d] = x
            q = L[:r]
            np.matmul(a, B, out=q)  # log pi_k N(x; mu_k, sigma_k^2)
            np.max(q, axis=1, out=m[:r])
            if fast:
                np.argmax(q, axis=1, out=best[:r])
            moments_kernel(q, m[:r], best[:r], x, groups[s : s + r], acc, FISHER_MIN_POSTERIOR)

    return run_in_threads(run, jobs, out, n_threads)


def _normalize(enc: np.ndarray, square_root: bool, normalized: bool) -> np.ndarray:
    """VLFeat's options on the last axis: signed square root, then L2 (``max(norm, 1e-12)``)."""
    if square_root:
        enc = np.sign(enc) * np.sqrt(np.abs(enc))
    if normalized:
        n = np.sqrt((enc * enc).sum(axis=-1, keepdims=True))
        enc = enc / np.maximum(n, 1e-12)
    return enc


def fisher_from_moments(
    G, counts, means, covariances, priors, *, improved=False, square_root=False, normalized=False
) -> np.ndarray:
    """Fisher vectors from posterior-weighted moments and descriptor counts.

    ``u_k = (S1 - S0 mu_k) / (N sqrt(pi_k) sigma_k)`` and
    ``v_k = ((S2 - 2 mu_k S1 + S0 mu_k^2) / sigma_k^2 - S0) / (N sqrt(2 pi_k))``;
    a vector of no descriptor is zero (and stays zero when normalized).

    Parameters
    ----------
    G : (..., K, 2d + 1) array
        Moments ``[S2, S1, S0]`` (:func:`fisher_moments`).
    counts : array or int
        ``N``, the descriptors of each vector; broadcasts against ``G.shape[:-2]``.
    means, covariances, priors : (K, d), (K, d), (K,) arrays
        The diagonal mixture.
    improved : bool
        Signed square root then L2 normalization.
    square_root : bool
        Signed square root of every entry.
    normalized : bool
        L2 normalization (``max(norm, 1e-12)``).

    Returns
    -------
    (..., 2 K d) float64
        ``[u_1 .. u_K, v_1 .. v_K]`` per vector (dimensionless).
    """
    M = np.asarray(means, np.float64)
    S = np.asarray(covariances, np.float64)
    w = np.asarray(priors, np.float64)
    G = np.asarray(G, np.float64)
    d = M.shape[1]
    S2, S1, S0 = G[..., :d], G[..., d : 2 * d], G[..., 2 * d :]
    sigma = np.sqrt(S)
    u = (S1 - S0 * M) / sigma
    v = (S2 - 2.0 * M * S1 + S0 * M * M) / S - S0
    N = np.asarray(counts, np.float64)[..., None, None]
    live = (w >= MIN_PRIOR)[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        u = np.where(live & (N > 0), u / (N * np.sqrt(w)[:, None]), 0.0)
        v = np.where(live & (N > 0), v / (N * np.sqrt(2.0 * w)[:, None]), 0.0)
    shape = G.shape[:-2] + (-1,)
    enc = np.concatenate([u.reshape(shape), v.reshape(shape)], axis=-1)
    return _normalize(enc, square_root or improved, normalized or improved)


def fisher_vector(
    descriptors,
    means,
    covariances,
    priors,
    *,
    improved=False,
    square_root=False,
    normalized=False,
    fast=False,
    n_threads=1,
    chunk=FISHER_CHUNK,
) -> np.ndarray:
    """Fisher vector of a set of descriptors, as VLFeat's ``vl_fisher`` computes it.

    Parameters
    ----------
    descriptors : (n, d) array
        The descriptors (float32; other types are converted).
    means, covariances, priors : (K, d), (K, d), (K,) arrays
        A diagonal Gaussian mixture (e.g. :class:`~phow_baseline.encoding.gmm.GaussianMixtureVocabulary`'s).
    improved : bool
        Signed square root then L2 normalization (``vl_fisher``'s ``Improved``).
    square_root, normalized : bool
        Either step alone (``SquareRoot``, ``Normalized``).
    fast : bool
        Hard-assign each descriptor to its most probable component (``Fast``).
    n_threads : int
        Threads over chunks of descriptors (None: all cores).
    chunk : int
        Rows per GEMM (default :data:`FISHER_CHUNK`).

    Returns
    -------
    (2 K d,) float32
        ``[u_1 .. u_K, v_1 .. v_K]``, each ``u_k``, ``v_k`` of ``d`` numbers
        (see the module docstring for the formulas).
    """
    X = np.asarray(descriptors)
    if X.dtype != np.float32:
        X = X.astype(np.float32)
    G = fisher_moments(X, means, covariances, priors, fast=fast, n_threads=n_threads, chunk=chunk)
    return fisher_from_moments(
        G[0], len(X), means, covariances, priors, improved=improved, square_root=square_root, normalized=normalized
    ).astype(np.float32)


def fisher_regions(
    descriptors,
    frames_xy,
    width,
    height,
    means,
    covariances,
    priors,
    *,
    regions=REGIONS_1X1_2X2,
    level_weights=None,
    improved=True,
    normalize=True,
    fast=False,
    n_threads=1,
    chunk=FISHER_CHUNK,
    table=None,
) -> np.ndarray:
    """Fisher vectors of an image's spatial regions, weighted and concatenated.

    Each region's vector is computed as :func:`fisher_vector` does (with
    ``improved``, on the region's descriptors only), multiplied by its
    weight (:func:`region_weights`), and the regions are concatenated in
    :func:`region_index`'s order; ``normalize`` then L2-normalizes the
    whole.

    Parameters
    ----------
    descriptors : (n, d) array
        The image's (post-processed) descriptors, converted to float32.
    frames_xy : (n, 2) array
        ``x, y`` of each descriptor, 0-based pixels.
    width, height : int
        Image size in pixels.
    means, covariances, priors : (K, d), (K, d), (K,) arrays
        The diagonal mixture.
    regions : str or sequence of (columns, rows)
        The layout (default the whole image and its 2 x 2 quarters).
    level_weights : sequence of float, optional
        Weight of each level (default ``1 / sqrt(cells)``, :func:`region_weights`).
    improved : bool
        Signed square root and L2 per region (default True).
    normalize : bool
        L2-normalize the concatenation (default True).
    fast : bool
        Hard-assign each descriptor to its most probable component.
    n_threads : int or None
        Threads over chunks (None: all cores; default 1).
    chunk : int
        Rows per GEMM (default :data:`FISHER_CHUNK`).
    table : (2d + 1, K) float32 array, optional
        The mixture's :func:`~phow_baseline.encoding.gmm.log_joint_table`, if already computed.

    Returns
    -------
    (n_regions * 2 K d,) float32
        The regions' Fisher vectors, concatenated (unit L2 norm when
        ``normalize`` and the image has a descriptor).

    Raises
    ------
    ValueError
        If frames and descriptors differ in number.
    """
    X = np.ascontiguousarray(descriptors, np.float32)
    if X.ndim != 2:
        raise ValueError(f"descriptors must be 2-D, got shape {X.shape}")
    kw = dict(improved=improved, normalize=normalize, fast=fast, n_threads=n_threads, chunk=chunk, table=table)
    return _fisher_regions(
        len(X),
        X.shape[1],
        lambda sel: X[sel],
        frames_xy,
        width,
        height,
        means,
        covariances,
        priors,
        regions,
        level_weights,
        **kw,
    )


def _fisher_regions(
    n,
    d,
    rows,
    frames_xy,
    width,
    height,
    means,
    covariances,
    priors,
    regions,
    level_weights,
    *,
    improved,
    normalize,
    fast,
    n_threads,
    chunk,
    table,
) -> np.ndarray:
    """:func:`fisher_regions` of ``n`` descriptors of ``d`` dims that ``rows(sel)`` gives chunk by chunk.

    ``rows(sel)`` returns the ``(len(sel), d)`` float32 descriptors of the rows
    ``sel`` (int64); the chunks follow the descriptors sorted by group, so that
    each chunk adds to one group's moments (which then stay in cache).
    """
    M, S, w = _check_mixture(means, covariances, priors)
    if M.shape[1] != d:
        raise ValueError(f"descriptors have {d} dims, the mixture {M.shape[1]}")
    B = _table(M, S, w, table)
    cells, n_regions = region_index(frames_xy, width, height, regions)
    if len(cells) != n:
        raise ValueError(f"{len(cells)} frames but {n} descriptors")
    groups, member = _groups(cells, n_regions)
    order = np.argsort(groups, kind="stable")
    G = _moments(n, lambda s, e: rows(order[s:e]), B, d, groups[order], member.shape[1], fast, chunk, n_threads)
    counts_g = np.bincount(groups, minlength=member.shape[1]).astype(np.float64)
    Gr = np.stack([G[row > 0].sum(axis=0) for row in member])  # each region's groups (no BLAS call)
    enc = fisher_from_moments(Gr, member @ counts_g, means, covariances, priors, improved=improved)
    enc *= region_weights(regions, level_weights)[:, None]
    enc = enc.ravel()
    if normalize:
        enc = _normalize(enc, False, True)
    return enc.astype(np.float32)


# --------------------------------------------------------------------------
# Descriptor post-processing shared by the FV and VLAD encoders
# --------------------------------------------------------------------------


def nonzero_rows(descriptors) -> np.ndarray:
    """Mask of descriptors that are not all zero (PHOW zeroes those below its contrast threshold).

    Parameters
    ----------
    descriptors : (n, d) array
        Descriptors, any dtype.

    Returns
    -------
    (n,) bool
        True where the row has a non-zero entry.
    """
    from .quantize import nonzero_descriptor_rows

    d = np.ascontiguousarray(descriptors)
    return nonzero_descriptor_rows(d) if len(d) else np.zeros(0, bool)


def postprocess_descriptors(frames, descriptors, use_root_sift=True, pca=None, skip_zero=True):
    """RootSIFT, PCA and the dropping of all-zero descriptors, before a Fisher vector or VLAD.

    Parameters
    ----------
    frames : (n, >= 2) array
        Frames whose first two columns are ``x, y`` in 0-based pixels.
    descriptors : (n, d) array
        SIFT descriptors (uint8 or float).
    use_root_sift : bool
        Apply :func:`~phow_baseline.features.descriptors.root_sift` (default True).
    pca : PCA, optional
        A fitted :class:`~phow_baseline.features.descriptors.PCA` to project with.
    skip_zero : bool
        Drop all-zero descriptors first (default True).

    Returns
    -------
    xy : (m, 2) array
        ``x, y`` of the kept descriptors (pixels).
    X : (m, d') float32
        The kept descriptors, post-processed (``d'`` the PCA's dimension, else ``d``).

    Raises
    ------
    ValueError
        If frames and descriptors differ in number or the descriptors are not 2-D.
    """
    F = np.asarray(frames)
    D = np.asarray(descriptors)
    if D.ndim != 2 or len(F) != len(D):
        raise ValueError(f"frames ({len(F)}) and descriptors (shape {D.shape}) do not match")
    xy = F[:, :2] if len(F) else np.zeros((0, 2))
    if skip_zero and len(D):
        keep = nonzero_rows(D)
        if not keep.all():
            xy, D = xy[keep], D[keep]
    X = root_sift(D) if use_root_sift else np.asarray(D, np.float32)
    if pca is not None:
        X = pca.transform(X)
    return xy, np.ascontiguousarray(X, dtype=np.float32)


class _RegionEncoderBase(TransformerMixin, BaseEstimator):
    """What the FV and VLAD encoders share: the descriptor sample, RootSIFT, PCA, regions, threads."""

    def _sample(self, X):
        from .vocabulary import sample_descriptors

        if isinstance(X, np.ndarray) and X.ndim == 2:
            X = [X]  # one (m, 128) array of descriptors
        descs = [x[1] if isinstance(x, tuple) else x for x in X]
        if len(descs) == 0:
            raise ValueError("no images to fit on")
        seed = self.random_state if isinstance(self.random_state, (int, np.integer)) else 0
        S = sample_descriptors(descs, int(self.max_descriptors), None, seed)  # drops all-zero descriptors
        if len(S) == 0:
            raise ValueError("the training images have no non-zero descriptor")
        return root_sift(S) if self.root_sift else S.astype(np.float32)

    def _fit_pca(self, S):
        if self.pca is not None:
            if not hasattr(self.pca, "components_"):
                raise NotFittedError("the PCA given is not fitted")
            self.pca_ = self.pca
        elif self.pca_dims:
            self.pca_ = PCA(int(self.pca_dims), whiten=self.whiten).fit(S)
        else:
            self.pca_ = None
        return self.pca_.transform(S) if self.pca_ is not None else S

    def _prepare(self, frames, descriptors):
        if self._threads() == 1:  # one thread means one BLAS thread for the PCA too
            with single_blas_thread():
                return postprocess_descriptors(frames, descriptors, self.root_sift, self.pca_, self.skip_zero)
        return postprocess_descriptors(frames, descriptors, self.root_sift, self.pca_, self.skip_zero)

    def _threads(self):
        n = self.n_threads
        return os.cpu_count() or 1 if n is None or n < 0 else int(n)

    def transform(self, X):
        """Encode a sequence of ``(frames, descriptors)``, one row per image.

        Parameters
        ----------
        X : sequence of (frames, descriptors)
            Per image, ``(n, >= 2)`` frames and ``(n, 128)`` descriptors.

        Returns
        -------
        (n_images, n_features_out_) float32
            The encoding of each image (:meth:`encode_one`).
        """
        self._check()
        out = np.empty((len(X), self.n_features_out_), np.float32)
        for i, (frames, desc) in enumerate(X):
            out[i] = self.encode_one(frames, desc)
        return out

    def _check(self):
        if not hasattr(self, "n_features_out_"):
            raise NotFittedError(f"{type(self).__name__} is not fitted: call fit (or from_arrays) first")


class FisherVectorEncoder(_RegionEncoderBase):
    """Improved Fisher vectors of PHOW descriptors per spatial region: PHOW output -> fixed-length vector.

    ``fit`` samples descriptors across the training images, applies RootSIFT,
    fits the PCA and then the Gaussian mixture on them; ``transform``
    encodes each image with :func:`fisher_regions`.  Input: a sequence of
    ``(frames, descriptors)`` per image (``frames[:, 0:2]`` are 0-based
    ``x, y`` pixel centres) from square images of side ``image_size``.

    Defaults: RootSIFT, PCA to 80 dimensions, 256 Gaussians, the improved
    FV on the whole image and its 2 x 2 quarters: ``5 * 2 * 256 * 80 =
    204,800`` dims (the issue's best setting; Chatfield et al. 2011).

    Parameters
    ----------
    n_components : int
        Gaussians (default 256).
    pca_dims : int or None
        PCA dimensions (default 80; None: no PCA).
    whiten : bool
        Whitened PCA.
    root_sift : bool
        RootSIFT before the PCA.
    regions : str or sequence of (columns, rows)
        ``"1x1+2x2"`` (default), ``"1x1+3x1"`` (horizontal strips) or explicit grids.
    level_weights : sequence of float, optional
        Weight of each level's regions (default ``1/sqrt(cells)``, see :func:`region_weights`).
    improved : bool
        Signed square root and L2 per region (``vl_fisher``'s ``Improved``).
    normalize : bool
        L2-normalize the concatenation.
    skip_zero : bool
        Leave out all-zero descriptors (below PHOW's contrast threshold;
        they carry no texture).
    max_descriptors : int
        Descriptors sampled for the PCA and the mixture (default 100,000).
    max_iter : int
        EM iterations at most (default 100, VLFeat's).
    covariance_bound : float or (d,) array
        Variance floor of the mixture (default ``1e-4``, VLFeat's; absolute, in
        squared units of the post-processed descriptors).
    image_size : int
        Side of the images the frames come from (pixels).
    random_state : int
        Seeds the descriptor sample and the mixture's k-means.
    n_threads : int or None
        Threads per image (None: all cores).
    gmm : GaussianMixtureVocabulary, optional
        A fitted mixture to use instead of fitting one.
    pca : PCA, optional
        The fitted PCA that goes with ``gmm`` (needed with ``gmm`` unless ``pca_dims`` is None).
    verbose : bool
        Log the mixture's log-likelihood at each EM iteration.

    Attributes
    ----------
    gmm_ : GaussianMixtureVocabulary
        The fitted mixture.
    pca_ : PCA or None
        The fitted PCA (None without PCA).
    n_regions_ : int
        Regions over all levels.
    n_features_out_ : int
        Length of the encoding, ``n_regions_ * 2 K d``.
    n_samples_ : int or None
        Descriptors the PCA and the mixture were fitted on (None when given a mixture or rebuilt from arrays).
    """

    def __init__(
        self,
        n_components=DEFAULT_N_COMPONENTS,
        pca_dims=DEFAULT_PCA_DIMS,
        whiten=False,
        root_sift=True,
        regions="1x1+2x2",
        level_weights=None,
        improved=True,
        normalize=True,
        skip_zero=True,
        max_descriptors=100_000,
        max_iter=100,
        covariance_bound=VLFEAT_COVARIANCE_BOUND,
        image_size=256,
        random_state=0,
        n_threads=1,
        gmm=None,
        pca=None,
        verbose=False,
    ):
        self.n_components = n_components
        self.pca_dims = pca_dims
        self.whiten = whiten
        self.root_sift = root_sift
        self.regions = regions
        self.level_weights = level_weights
        self.improved = improved
        self.normalize = normalize
        self.skip_zero = skip_zero
        self.max_descriptors = max_descriptors
        self.max_iter = max_iter
        self.covariance_bound = covariance_bound
        self.image_size = image_size
        self.random_state = random_state
        self.n_threads = n_threads
        self.gmm = gmm
        self.pca = pca
        self.verbose = verbose

    def _finish(self):
        regions = check_regions(self.regions)
        region_weights(regions, self.level_weights)  # validates
        K, d = self.gmm_.means_.shape
        self.n_regions_ = sum(gx * gy for gx, gy in regions)
        self.n_features_out_ = self.n_regions_ * 2 * K * d
        self._table = log_joint_table(self.gmm_.means_, self.gmm_.covariances_, self.gmm_.priors_, np.float32)

    def fit(self, X, y=None):
        """Fit PCA and mixture on descriptors sampled from ``X`` (a sequence of ``(frames, descriptors)``).

        Parameters
        ----------
        X : sequence of (frames, descriptors), or of descriptor arrays, or one (m, 128) array
            The training images' descriptors (ignored when ``gmm`` is given).
        y : None
            Ignored.

        Returns
        -------
        FisherVectorEncoder
            ``self``, fitted.

        Raises
        ------
        ValueError
            If the regions are malformed, there is no non-zero descriptor, or the
            PCA and the mixture differ in dimension.
        sklearn.exceptions.NotFittedError
            If the ``gmm`` or ``pca`` given is not fitted.
        """
        check_regions(self.regions)
        region_weights(self.regions, self.level_weights)
        if self.gmm is not None:
            if not hasattr(self.gmm, "means_"):
                raise NotFittedError("the mixture given is not fitted")
            self.pca_ = self.pca if self.pca is not None else None
            if self.pca is None and self.pca_dims:
                raise ValueError("give the PCA the mixture was fitted with (pca=...) or pca_dims=None")
            self.gmm_ = self.gmm
            self.n_samples_ = None
        else:
            S = self._fit_pca(self._sample(X))
            self.n_samples_ = len(S)
            self.gmm_ = GaussianMixtureVocabulary(
                int(self.n_components),
                max_iter=self.max_iter,
                covariance_bound=self.covariance_bound,
                random_state=self.random_state,
                verbose=self.verbose,
            ).fit(S)
        d_in = self.pca_.n_components_ if self.pca_ is not None else None
        if d_in is not None and d_in != self.gmm_.means_.shape[1]:
            raise ValueError(f"the PCA gives {d_in} dims but the mixture has {self.gmm_.means_.shape[1]}")
        self._finish()
        return self

    def encode_one(self, frames, descriptors) -> np.ndarray:
        """Fisher vector of one image (:func:`postprocess_descriptors`, then :func:`fisher_regions`).

        Parameters
        ----------
        frames : (n, >= 2) array
            ``x, y`` of each descriptor in 0-based pixels of the ``image_size`` image.
        descriptors : (n, 128) array
            The image's SIFT descriptors (uint8 or float).

        Returns
        -------
        (n_features_out_,) float32
            The image's encoding.
        """
        self._check()
        D = np.asarray(descriptors)
        if self.root_sift and D.dtype == np.uint8 and D.ndim == 2:
            return self._encode_fused(np.asarray(frames), D)
        xy, X = self._prepare(frames, descriptors)
        g = self.gmm_
        return fisher_regions(
            X,
            xy,
            self.image_size,
            self.image_size,
            g.means_,
            g.covariances_,
            g.priors_,
            regions=self.regions,
            level_weights=self.level_weights,
            improved=self.improved,
            normalize=self.normalize,
            n_threads=self._threads(),
            table=self._table,
        )

    def _encode_fused(self, F, D):
        """:meth:`encode_one` of uint8 descriptors with RootSIFT and the PCA done chunk by chunk, in cache.

        The same numbers as :func:`postprocess_descriptors` then :func:`fisher_regions`
        (RootSIFT bit for bit, the PCA the same float32 GEMM per chunk of rows),
        without the image's full float32 copies.
        """
        if len(F) != len(D):
            raise ValueError(f"frames ({len(F)}) and descriptors (shape {D.shape}) do not match")
        D = np.ascontiguousarray(D)
        idx = np.flatnonzero(nonzero_rows(D)) if self.skip_zero else np.arange(len(D))
        xy = F[idx, :2] if len(F) else np.zeros((0, 2))
        pca = self.pca_
        if pca is not None and pca.n_features_in_ != D.shape[1]:
            raise ValueError(f"descriptors have {D.shape[1]} dims but the PCA was fitted on {pca.n_features_in_}")
        d = pca.n_components_ if pca is not None else D.shape[1]

        # the PCA's own float32 operands (PCA.transform without its per-call input validation)
        W, b = (pca._W32, pca._b32) if pca is not None else (None, None)

        def rows(sel):
            r = root_sift_rows(D, idx[sel], np.empty((len(sel), D.shape[1]), np.float32))
            if W is None:
                return r
            x = r @ W
            x += b
            return x

        g = self.gmm_
        return _fisher_regions(
            len(idx),
            d,
            rows,
            xy,
            self.image_size,
            self.image_size,
            g.means_,
            g.covariances_,
            g.priors_,
            self.regions,
            self.level_weights,
            improved=self.improved,
            normalize=self.normalize,
            fast=False,
            n_threads=self._threads(),
            chunk=FISHER_CHUNK,
            table=self._table,
        )

    # -- storage as data -------------------------------------------------------
    def to_arrays(self) -> dict:
        """Fitted state as numpy arrays: ``gmm_*`` and (with PCA) ``pca_*`` keys.

        Returns
        -------
        dict of str to ndarray
            The mixture's :meth:`~.gmm.GaussianMixtureVocabulary.to_arrays` under ``gmm_``
            and the PCA's :meth:`~phow_baseline.features.descriptors.PCA.to_arrays` under ``pca_``.
        """
        self._check()
        out = {f"gmm_{k}": v for k, v in self.gmm_.to_arrays().items()}
        if self.pca_ is not None:
            out.update({f"pca_{k}": v for k, v in self.pca_.to_arrays().items()})
        return out

    @classmethod
    def from_arrays(cls, params: dict, arrays: dict) -> FisherVectorEncoder:
        """Rebuild a fitted encoder from its parameters (``get_params()`` of plain values) and :meth:`to_arrays`.

        Parameters
        ----------
        params : dict
            Constructor parameters (``gmm`` and ``pca`` are ignored).
        arrays : mapping of str to array
            :meth:`to_arrays`'s output.

        Returns
        -------
        FisherVectorEncoder
            Fitted (``n_samples_`` None).
        """
        params = {k: v for k, v in params.items() if k not in ("gmm", "pca")}
        enc = cls(**params)
        enc.gmm_ = GaussianMixtureVocabulary.from_arrays({k[4:]: v for k, v in arrays.items() if k.startswith("gmm_")})
        pca = {k[4:]: v for k, v in arrays.items() if k.startswith("pca_")}
        enc.pca_ = PCA.from_arrays(pca) if pca else None
        enc.n_samples_ = None  # not recorded in the arrays
        enc._finish()
        return enc
