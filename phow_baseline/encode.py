"""Quantisation, spatial pyramid, chi2 kernel map, and the on-disk feature shards.

The pipeline's most expensive step is assigning every dense descriptor to
its nearest visual word: about 53,000 descriptors x 600 words x 128 dims
per 256x256 image, 8 GFLOP done by brute force.  :func:`quantize_histogram`
gives exactly the brute-force assignment while doing about a third of that
work, by pruning with a provable lower bound (:func:`pruning_tables`):

1. Rotate words and descriptors into the principal axes of the (centred)
   words; keep the first ``m`` = :data:`PRUNE_DIMS` coordinates ``p`` and the
   norm ``r`` of the rest (``r^2 = ||x - mu||^2 - ||p||^2``).  For every
   word ``c`` (coordinates ``p_c``, rest norm ``r_c``) the triangle
   inequality in the discarded subspace gives
   ``||x - c||^2 >= ||p - p_c||^2 + (r - r_c)^2``; the bound is one skinny
   float32 GEMM of ``[p, 1, r]`` against ``[-2 p_c; ||c - mu||^2; -2 r_c]``.
2. The word with the smallest bound is evaluated exactly (float64); every
   other word whose bound does not exceed that distance plus a margin is
   evaluated exactly as well, and the smallest exact distance wins (the
   lowest index on an exact tie).  The margin covers the float32 rounding
   of the bound: a fixed share :data:`PRUNE_MARGIN` for the GEMMs, plus a
   per-descriptor slack from the worst-case error of ``p`` when ``r`` is
   small (see :func:`_rest_norms`).  On PHOW descriptors with 600 words
   about 2-3 words per descriptor are evaluated exactly.

All-zero descriptors (PHOW's low-contrast ones) map to one word, found
once.  Small problems (few words or dimensions) use the plain
``2 x.c - ||c||^2`` GEMM and arg-max.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from functools import lru_cache
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

import numba
import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

#: Rows of descriptors per GEMM chunk: 512 x 600 float32 distances (1.2 MB)
#: stay in cache while the arg-min reads them.
QUANTIZE_CHUNK = 512

#: VLFeat's PHOW application (``phow_caltech101.m``): 2x2 and 4x4 grids,
#: each level L1-normalised, then the whole vector.
VLFEAT_GRIDS = (2, 4)
#: Lazebnik, Schmid and Ponce 2006: 1x1, 2x2, 4x4 with level weights
#: 1/4, 1/4, 1/2 (``1/2^L`` for level 0, ``1/2^(L-l+1)`` for level l).
LAZEBNIK_GRIDS = (1, 2, 4)


# --------------------------------------------------------------------------
# Numba kernels
# --------------------------------------------------------------------------

@numba.njit(cache=True, nogil=True)
def _count_words(rows, w, cells, words, hist, k):
    """words[rows[r]] = w[r]; hist[cells[rows[r], l] * k + w[r]] += 1 for every level l."""
    n_levels = cells.shape[1]
    for r in range(rows.shape[0]):
        i = rows[r]
        words[i] = w[r]
        for l in range(n_levels):
            hist[cells[i, l] * k + w[r]] += 1.0


#: Coordinates kept for the pruning bound (principal axes of the words).
#: 32 of 128 keep 97% of the words' variance.  Measured on real PHOW
#: descriptors with 600 words (single thread, 400k descriptors): 24, 28,
#: 32, 36, 40 axes evaluate 5.3, 3.7, 2.6, 2.0, 1.5 extra words exactly per
#: descriptor, and the totals differ by less than 4%: a flat optimum.
PRUNE_DIMS = 32
#: Safety margin of the pruning test, relative to ``||x - mu||^2 +
#: max ||c - mu||^2``; the float32 rounding of the bound is below 4e-6 of
#: that (GEMM error bound for 34 terms), so 1e-4 leaves a 25x reserve.
PRUNE_MARGIN = 1e-4
#: Pruning is used from this many words (and ``2 * PRUNE_DIMS`` dims) on.
PRUNE_MIN_WORDS = 64
#: Columns of the bound matrix are scanned in this many interleaved groups:
#: a vectorised count per group, then only the groups that hold a candidate.
_PRUNE_GROUPS = 40


@numba.njit(cache=True, nogil=True, fastmath=True)
def _centre_rows(X, rows, mu, mu32, out, xm2):
    """out[i] = float32(x_i) - mu32 (rounded once); xm2[i] = ||x_i - mu||^2 in float64.

    ``mu`` holds float32 values, so ``x - mu`` is exact in float64.
    """
    d = X.shape[1]
    for i in range(rows.shape[0]):
        x = X[rows[i]]
        o = out[i]
        s = 0.0
        for t in range(d):
            v = np.float64(x[t]) - mu[t]
            s += v * v
        for t in range(d):
            o[t] = np.float32(x[t]) - mu32[t]
        xm2[i] = s


@numba.njit(cache=True, nogil=True)
def _rest_norms(P, xm2, eps_rel, cr_max, Pa, slack):
    """Pa[i] = [p_i, 1, r_i] with r_i = sqrt(||x_i - mu||^2 - ||p_i||^2), and the slack its error allows.

    ``||p~ - p|| <= eps_rel ||x - mu||`` (float32 GEMM error bound), so
    ``||p||^2`` is known within ``delta = 2 eps ||x - mu|| + eps^2`` and
    ``r`` within ``dr``; the bound term ``(r - r_c)^2`` then moves by at
    most ``dr (2 max(r, r_c) + dr)``: ``slack[i]``, added to the margin.
    """
    m, k = P.shape
    for i in range(m):
        p2 = 0.0
        for t in range(k):
            v = np.float64(P[i, t])
            Pa[i, t] = P[i, t]
            p2 += v * v
        Pa[i, k] = 1.0
        r2 = xm2[i] - p2
        r = np.sqrt(r2) if r2 > 0.0 else 0.0
        Pa[i, k + 1] = r
        eps = eps_rel * np.sqrt(xm2[i])
        delta = 2.0 * eps * np.sqrt(xm2[i]) + eps * eps
        hi = np.sqrt(max(r2 + delta, 0.0))
        lo = np.sqrt(max(r2 - delta, 0.0))
        dr = max(hi - r, r - lo)
        slack[i] = dr * (2.0 * max(r, cr_max) + dr)


@numba.njit(cache=True, nogil=True, fastmath=True)
def _refine_words(X, rows, mu, Cc, cc2, margin_rel, cc2_max, S, j0, xm2, slack, out, groups):
    """Exact nearest word among those whose lower bound S[i, j] can beat it.

    ``S[i, j] = ||x - c_j||^2 - ||x - mu||^2`` lower bound, ``j0[i]`` its arg-min;
    exact ``E_j = ||c_j - mu||^2 - 2 (x - mu).(c_j - mu)`` in float64.
    Returns the number of exact evaluations beyond the first per row.
    """
    m, K = S.shape
    d = X.shape[1]
    xc = np.empty(d)
    cnt = np.empty(groups, np.int32)
    n_u = (K + groups - 1) // groups
    extra = 0
    for i in range(m):
        r = rows[i]
        for t in range(d):
            xc[t] = X[r, t] - mu[t]
        b = j0[i]
        e = 0.0
        for t in range(d):
            e += xc[t] * Cc[b, t]
        best = cc2[b] - 2.0 * e
        marg = margin_rel * (xm2[i] + cc2_max) + slack[i]
        thr = best + marg
        t32 = np.float32(thr)
        row = S[i]
        # vectorised count of candidates per group of columns q, q+G, q+2G, ...
        for q in range(groups):
            cnt[q] = 0
        for u in range(n_u):
            base = u * groups
            lim = min(groups, K - base)
            seg = row[base:base + lim]
            for q in range(lim):
                cnt[q] += 1 if seg[q] <= t32 else 0
        for q in range(groups):
            if cnt[q] > 0:
                for j in range(q, K, groups):
                    if row[j] <= thr and j != b:
                        e = 0.0
                        for t in range(d):
                            e += xc[t] * Cc[j, t]
                        v = cc2[j] - 2.0 * e
                        extra += 1
                        if v < best or (v == best and j < b):
                            best = v
                            b = j
                            thr = best + marg
        out[i] = b
    return extra


_CONTROLLER = None


def _blas_single_thread():
    """A context limiting BLAS to one thread (threadpoolctl; the controller is built once)."""
    global _CONTROLLER
    if _CONTROLLER is None:
        from threadpoolctl import ThreadpoolController

        _CONTROLLER = ThreadpoolController()
    return _CONTROLLER.limit(limits=1, user_api="blas")


def _nonzero_rows(desc: np.ndarray) -> np.ndarray:
    """Boolean mask of rows that are not all zero (128 uint8 = 16 uint64 words)."""
    if desc.dtype == np.uint8 and desc.shape[1] % 8 == 0 and desc.flags.c_contiguous:
        return desc.view(np.uint64).any(axis=1)
    return desc.any(axis=1)


def _check_centers(centers) -> np.ndarray:
    c = np.ascontiguousarray(centers, dtype=np.float32)
    if c.ndim != 2 or len(c) < 1:
        raise ValueError(f"centers must be a (k, d) array, got shape {c.shape}")
    return c


class PruningTables:
    """What the pruned nearest-word search needs of a vocabulary (see the module docstring).

    Attributes
    ----------
    mu : (d,) float64
        Mean word, rounded to float32 values so that ``x - mu`` is exact
        in float64 for uint8 or float32 ``x``.
    V : (d, m) float32
        The first ``m`` principal axes of the centred words.
    bound : (m + 2, k) float32
        ``[p, 1, r] @ bound`` = lower bound of ``||x - c||^2 - ||x - mu||^2``.
    centred : (k, d) float64
        ``c - mu`` for the exact evaluation; ``centred_sq`` its squared
        norms, ``rest_max`` the largest norm of a word off the kept axes.
    eps_rel : float
        ``||p~ - p|| <= eps_rel ||x - mu||`` for the float32 ``p~ = float32(x - mu) @ V``:
        ``(d + 1) u sqrt(m)`` with ``u = 2^-24`` (the standard dot-product
        error bound, any summation order), and 1% on top.
    """

    def __init__(self, centers: np.ndarray, n_dims: int = PRUNE_DIMS):
        C = np.asarray(centers, np.float64)
        d = C.shape[1]
        self.mu = C.mean(axis=0).astype(np.float32).astype(np.float64)
        Cc = C - self.mu
        _, vecs = np.linalg.eigh(Cc.T @ Cc)
        self.V = np.ascontiguousarray(vecs[:, ::-1][:, :n_dims], dtype=np.float32)  # largest variance first
        # The float32 axes are orthonormal to ~1e-7: far inside PRUNE_MARGIN.
        Cp = Cc @ self.V.astype(np.float64)
        self.centred = np.ascontiguousarray(Cc)
        self.centred_sq = np.einsum("ij,ij->i", Cc, Cc)
        rest = np.sqrt(np.maximum(self.centred_sq - np.einsum("ij,ij->i", Cp, Cp), 0.0))
        self.rest_max = float(rest.max())
        self.bound = np.ascontiguousarray(
            np.vstack([-2.0 * Cp.T, self.centred_sq[None], -2.0 * rest[None]]).astype(np.float32))
        self.n_dims = n_dims
        self.eps_rel = 1.01 * (d + 1) * 2.0 ** -24 * math.sqrt(n_dims)


@lru_cache(maxsize=4)
def _tables_cached(key, shape, raw: bytes) -> PruningTables:
    return PruningTables(np.frombuffer(raw, np.float32).reshape(shape))


def pruning_tables(centers: np.ndarray) -> PruningTables:
    """:class:`PruningTables` of a float32 vocabulary, cached by content."""
    C = _check_centers(centers)
    raw = C.tobytes()
    return _tables_cached(hashlib.blake2b(raw, digest_size=16).digest(), C.shape, raw)


def _use_pruning(method: str, k: int, d: int) -> bool:
    if method not in ("auto", "pruned", "gemm"):
        raise ValueError(f"method must be 'auto', 'pruned' or 'gemm', got {method!r}")
    if method == "auto":
        return k >= PRUNE_MIN_WORDS and d >= 2 * PRUNE_DIMS
    return method == "pruned" and d > 1


def quantize_histogram(descriptors, centers, cells=None, n_cells=1, n_threads=None, chunk=QUANTIZE_CHUNK,
                       method="auto"):
    """Nearest word of every descriptor, and counts per (cell, word).

    Parameters
    ----------
    descriptors : (n, d) uint8 or float32
    centers : (k, d) float32 visual words
    cells : (n, L) int32, optional
        Flat cell index of each descriptor at each pyramid level, in
        ``[0, n_cells)`` (default: one cell).
    n_cells : int
        Total cells over all levels.
    n_threads : int, optional
        Worker threads, each running single-threaded BLAS on its own
        chunks (default: all cores).
    method : {"auto", "pruned", "gemm"}
        ``"pruned"``: the exact pruned search of the module docstring;
        ``"gemm"``: brute force, one float32 GEMM ``2 x.c - ||c||^2`` per
        chunk and its arg-max; ``"auto"``: pruned from
        :data:`PRUNE_MIN_WORDS` words and ``2 * PRUNE_DIMS`` dims on.

    Returns
    -------
    words : (n,) int32
    hist : (n_cells * k,) float64 counts
    """
    X = np.asarray(descriptors)
    if X.ndim != 2:
        raise ValueError(f"descriptors must be 2-D, got shape {X.shape}")
    C = _check_centers(centers)
    if X.shape[1] != C.shape[1]:
        raise ValueError(f"descriptors have {X.shape[1]} dims, words {C.shape[1]}")
    if X.dtype not in (np.uint8, np.float32):
        X = X.astype(np.float32)
    X = np.ascontiguousarray(X)
    n, k = len(X), len(C)
    d = X.shape[1]
    pruned = _use_pruning(method, k, d)
    if cells is None:
        cells = np.zeros((n, 1), np.int32)
    cells = np.ascontiguousarray(cells, dtype=np.int32)
    if cells.shape[0] != n:
        raise ValueError("cells and descriptors differ in length")
    words = np.empty(n, np.int32)
    hist = np.zeros(n_cells * k, np.float64)
    if n == 0:
        return words, hist
    cnorm = np.einsum("ij,ij->i", C, C, dtype=np.float32)
    nz = _nonzero_rows(X)
    zero_idx = np.flatnonzero(~nz).astype(np.int64)
    if len(zero_idx):
        # ||0 - c||^2 = ||c||^2: one arg-min for all the zeroed descriptors
        w0 = np.full(len(zero_idx), np.argmin(cnorm), np.int32)
        _count_words(zero_idx, w0, cells, words, hist, k)
    idx = np.flatnonzero(nz).astype(np.int64)
    if len(idx) == 0:
        return words, hist
    if pruned:
        T = pruning_tables(C)
        m = min(T.n_dims, d - 1)
        if m != T.n_dims:
            T = PruningTables(C, m)
        cc2_max = float(T.centred_sq.max())
        mu32 = T.mu.astype(np.float32)
    else:
        # Augmented words [2 c ; -||c||^2]: one GEMM gives 2 x.c - ||c||^2, whose
        # arg-max is the arg-min of ||x - c||^2 (||x||^2 is the same for every c).
        C_aug = np.empty((d + 1, k), np.float32)
        C_aug[:d] = 2.0 * C.T
        C_aug[d] = -cnorm
    starts = list(range(0, len(idx), chunk))
    n_threads = n_threads or os.cpu_count() or 1
    n_threads = max(1, min(n_threads, len(starts)))

    def run_gemm(part, h):
        # NumPy's matmul and arg-max release the GIL: threads run in parallel.
        buf = np.empty((chunk, d + 1), np.float32)
        buf[:, d] = 1.0
        S = np.empty((chunk, k), np.float32)
        for s in part:
            rows = idx[s:s + chunk]
            r = len(rows)
            buf[:r, :d] = X[rows]
            np.matmul(buf[:r], C_aug, out=S[:r])
            _count_words(rows, S[:r].argmax(axis=1).astype(np.int32), cells, words, h, k)

    def run_pruned(part, h):
        xc = np.empty((chunk, d), np.float32)
        P = np.empty((chunk, m), np.float32)
        Pa = np.empty((chunk, m + 2), np.float32)
        S = np.empty((chunk, k), np.float32)
        xm2 = np.empty(chunk, np.float64)
        slack = np.empty(chunk, np.float64)
        w = np.empty(chunk, np.int32)
        for s in part:
            rows = idx[s:s + chunk]
            r = len(rows)
            _centre_rows(X, rows, T.mu, mu32, xc[:r], xm2[:r])
            np.matmul(xc[:r], T.V, out=P[:r])
            _rest_norms(P[:r], xm2[:r], T.eps_rel, T.rest_max, Pa[:r], slack[:r])
            np.matmul(Pa[:r], T.bound, out=S[:r])       # lower bounds, float32
            j0 = S[:r].argmin(axis=1)
            _refine_words(X, rows, T.mu, T.centred, T.centred_sq, PRUNE_MARGIN, cc2_max,
                          S[:r], j0, xm2[:r], slack[:r], w[:r], _PRUNE_GROUPS)
            _count_words(rows, w[:r], cells, words, h, k)

    run = run_pruned if pruned else run_gemm
    if n_threads == 1:
        run(starts, hist)
        return words, hist
    parts = [starts[t::n_threads] for t in range(n_threads)]
    hists = [hist] + [np.zeros_like(hist) for _ in range(n_threads - 1)]
    with _blas_single_thread(), ThreadPoolExecutor(n_threads) as ex:
        list(ex.map(run, parts, hists))
    for h in hists[1:]:
        hist += h
    return words, hist


def quantize(descriptors, centers, n_threads=None, method="auto") -> np.ndarray:
    """Index of the nearest word (squared Euclidean distance) of each descriptor.

    The assignment of ``sklearn.cluster.KMeans.predict``, except for ties
    (distances equal, or equal within float32 rounding, where KMeans's own
    float32 arithmetic decides), which resolve to the lowest index here.
    See :func:`quantize_histogram` for ``method``.
    """
    return quantize_histogram(descriptors, centers, n_threads=n_threads, method=method)[0]


# --------------------------------------------------------------------------
# Spatial pyramid
# --------------------------------------------------------------------------

def pyramid_cells(frames_xy, width, height, grids=VLFEAT_GRIDS) -> tuple[np.ndarray, int]:
    """Flat cell index of each frame at each pyramid level.

    The cell edges are those of VLFeat's ``phow_caltech101.m``,
    ``linspace(1, width, g + 1)`` in MATLAB's 1-based pixels, i.e. ``g``
    equal cells over ``[0, width - 1]`` in 0-based pixels; a frame on the last
    edge goes to the last cell.  Level ``l``'s cells are numbered after
    those of the levels before it, row-major within a level.

    Returns
    -------
    cells : (n, L) int32
    n_cells : int (sum of g^2)
    """
    xy = np.asarray(frames_xy, dtype=np.float64)
    out = np.empty((len(xy), len(grids)), np.int32)
    offset = 0
    for l, g in enumerate(grids):
        g = int(g)
        bx = np.clip(np.floor(xy[:, 0] * g / max(width - 1, 1)), 0, g - 1).astype(np.int32)
        by = np.clip(np.floor(xy[:, 1] * g / max(height - 1, 1)), 0, g - 1).astype(np.int32)
        out[:, l] = offset + by * g + bx
        offset += g * g
    return out, offset


def level_weights(grids, weighting) -> np.ndarray:
    """Weights of the pyramid levels: VLFeat's (equal, each level L1-normalised) or Lazebnik's."""
    if weighting == "vlfeat":
        return np.ones(len(grids))
    if weighting == "lazebnik":
        L = len(grids) - 1
        return np.array([1 / 2 ** L if l == 0 else 1 / 2 ** (L - l + 1) for l in range(L + 1)])
    raise ValueError(f"weighting must be 'vlfeat' or 'lazebnik', got {weighting!r}")


def normalise_pyramid(counts: np.ndarray, grids, k: int, weighting="vlfeat") -> np.ndarray:
    """Turn per-(cell, word) counts into the pyramid feature.

    ``vlfeat``: each level divided by its own total (L1), then the whole
    vector by its total, as ``phow_caltech101.m`` does.  ``lazebnik``: each
    level scaled by its weight, then the whole vector L1-normalised.
    Empty images give a zero vector.
    """
    counts = np.asarray(counts, np.float64)
    out = np.empty(counts.shape, np.float32)
    w = level_weights(grids, weighting)
    lo = 0
    for l, g in enumerate(grids):
        hi = lo + g * g * k
        part = counts[..., lo:hi]
        if weighting == "vlfeat":
            s = part.sum(-1, keepdims=True)
            part = np.divide(part, s, out=np.zeros_like(part), where=s > 0)
        out[..., lo:hi] = part * w[l]
        lo = hi
    s = out.sum(-1, keepdims=True, dtype=np.float64)
    return np.divide(out, s, out=np.zeros_like(out), where=s > 0).astype(np.float32)


# --------------------------------------------------------------------------
# The chi2 homogeneous kernel map (VLFeat's vl_homkermap)
# --------------------------------------------------------------------------

#: VLFeat's PHOW application: ``vl_homkermap(hist, 1, 'kchi2', 'gamma', .5)``.
HOMKERMAP_ORDER = 1
HOMKERMAP_GAMMA = 0.5


def _chi2_spectrum(omega):
    # kappa(omega) = sech(pi omega), the spectrum of the chi2 kernel
    return 2.0 / (np.exp(np.pi * omega) + np.exp(-np.pi * omega))


def homkermap_constants(order=HOMKERMAP_ORDER, period=None):
    """Period, frequency step ``L`` and the spectrum samples of VLFeat's chi2 map.

    VLFeat's defaults (``vl/homkermap.c``): rectangular window, period
    ``8.80 sqrt(order + 4.44) - 12.6`` (7.93 for order 1), spectrum
    ``kappa(omega) = sech(pi omega)`` smoothed by the window's sinc, sampled
    at ``j L`` for ``j = 0..order``, with ``L = 2 pi / period``.
    """
    if period is None:
        period = max(8.80 * math.sqrt(order + 4.44) - 12.6, 1.0)
    L = 2 * math.pi / period
    eps = 1e-2
    omega_range = 2.0 / (period * eps)
    d_omega = 2 * omega_range / (2 * 1024.0 + 1)
    grid = -omega_range + d_omega * np.arange(int(np.floor(2 * omega_range / d_omega + 1e-9)) + 1)
    win = np.sinc((period / 2.0) * grid / np.pi) * (period / (2 * np.pi))
    kappa = np.array([max(float((win * _chi2_spectrum(grid + j * L)).sum() * d_omega), 0.0)
                      for j in range(order + 1)])
    return float(period), float(L), kappa


class HomogeneousKernelMap(BaseEstimator, TransformerMixin):
    """Explicit feature map of the chi2 kernel (Vedaldi and Zisserman 2012).

    Each input value ``x >= 0`` becomes ``2 * order + 1`` values,
    ``sqrt(L x^gamma kappa_0)`` and ``sqrt(2 L x^gamma kappa_j) (cos, sin)(j L log x)``,
    so that dot products of mapped vectors approximate the additive
    ``gamma``-homogeneous chi2 kernel ``sum_i 2 (x_i y_i)^(gamma+...)/(x_i + y_i)``
    (exactly ``2xy/(x+y)`` per dimension for ``gamma = 1``).  Defaults are
    VLFeat's PHOW application's: order 1, gamma 0.5, rectangular window.
    The map is evaluated in closed form, not from VLFeat's interpolated table
    (differences below 1e-3 relative); values with binary exponent outside
    VLFeat's table range ``(-20, 8)`` map to zero as in VLFeat.

    The output keeps the inputs in blocks: columns ``(2 order + 1) * i ...``
    belong to input ``i``.
    """

    def __init__(self, order=HOMKERMAP_ORDER, gamma=HOMKERMAP_GAMMA, period=None):
        self.order = order
        self.gamma = gamma
        self.period = period

    def fit(self, X=None, y=None):
        if int(self.order) < 0 or self.gamma <= 0:
            raise ValueError("order must be >= 0 and gamma > 0")
        self.period_, self.L_, self.kappa_ = homkermap_constants(int(self.order), self.period)
        return self

    @property
    def dim_per_input(self) -> int:
        return 2 * int(self.order) + 1

    def transform(self, X):
        if not hasattr(self, "kappa_"):
            self.fit()
        X = np.asarray(X, dtype=np.float32)
        out = np.zeros(X.shape[:-1] + (X.shape[-1] * self.dim_per_input,), np.float32)
        _homkermap_kernel(X.reshape(-1, X.shape[-1]), out.reshape(-1, out.shape[-1]),
                          np.float32(self.gamma), np.float32(self.L_), self.kappa_.astype(np.float32))
        return out


@numba.njit(cache=True, parallel=False, fastmath=False)
def _homkermap_kernel(X, out, gamma, L, kappa):
    n, d = X.shape
    order = kappa.shape[0] - 1
    D = 2 * order + 1
    lo = np.float32(2.0 ** -20)
    hi = np.float32(2.0 ** 8)
    for i in range(n):
        for j in range(d):
            x = X[i, j]
            ax = abs(x)
            if ax <= lo or ax >= hi:
                continue
            sign = np.float32(1.0) if x >= 0 else np.float32(-1.0)
            lxg = L * ax ** gamma
            llog = L * np.log(ax)
            base = j * D
            out[i, base] = sign * np.sqrt(lxg * kappa[0])
            for f in range(1, order + 1):
                s = np.sqrt(2.0 * lxg * kappa[f])
                out[i, base + 2 * f - 1] = sign * s * np.cos(f * llog)
                out[i, base + 2 * f] = sign * s * np.sin(f * llog)


def make_kernel_map(name: str | None):
    """``"homkermap"`` (VLFeat's chi2 map), ``"additive_chi2"`` (scikit-learn's
    ``AdditiveChi2Sampler``, sample_steps 2) or ``"none"``."""
    if name in (None, "none"):
        return None
    if name == "homkermap":
        return HomogeneousKernelMap().fit()
    if name == "additive_chi2":
        return AdditiveChi2Map()
    raise ValueError(f"kernel_map must be 'homkermap', 'additive_chi2' or 'none', got {name!r}")


KERNEL_MAPS = ("homkermap", "additive_chi2", "none")


class AdditiveChi2Map(BaseEstimator, TransformerMixin):
    """scikit-learn's ``AdditiveChi2Sampler`` (2 sample steps: 3 outputs per input),
    usable on any number of features.  Output in 3 blocks of ``d`` columns
    (sqrt, cos, sin), unlike :class:`HomogeneousKernelMap`'s side-by-side layout."""

    def __init__(self, sample_steps=2):
        self.sample_steps = sample_steps

    def fit(self, X=None, y=None):
        return self

    def transform(self, X):
        from sklearn.kernel_approximation import AdditiveChi2Sampler

        X = np.asarray(X, np.float32)
        return AdditiveChi2Sampler(sample_steps=self.sample_steps).fit(X[:1]).transform(X).astype(np.float32)


# --------------------------------------------------------------------------
# The encoder estimator
# --------------------------------------------------------------------------

class SpatialPyramidEncoder(BaseEstimator, TransformerMixin):
    """Bag of visual words with a spatial pyramid: PHOW output -> fixed-length vector.

    ``fit`` learns the :class:`~phow_baseline.vocabulary.Vocabulary` on the
    descriptors of the training images; ``transform`` quantises each image's
    descriptors and returns the pyramid histogram, ``(n_images,
    n_words * sum(g^2))`` float32 (12,000 dims with the defaults).

    Input: a sequence of ``(frames, descriptors)`` per image (as
    :class:`~phow_baseline.phow.PHOW` gives), where ``frames[:, 0:2]`` are
    0-based ``x, y`` pixel centres; the image size comes from
    ``image_size`` (the images are square, side ``image_size``).

    Parameters
    ----------
    n_words, max_descriptors, seed : see :class:`Vocabulary`.
    grids : tuple of int
        Grid of each pyramid level (default ``(2, 4)``, VLFeat's).
    weighting : {"vlfeat", "lazebnik"}
    image_size : int
        Side of the images the frames come from (pixels).
    vocabulary : Vocabulary, optional
        A fitted vocabulary to use instead of fitting one.
    """

    def __init__(self, n_words=600, max_descriptors=100_000, grids=VLFEAT_GRIDS, weighting="vlfeat",
                 image_size=256, seed=0, vocabulary=None, n_threads=None):
        self.n_words = n_words
        self.max_descriptors = max_descriptors
        self.grids = grids
        self.weighting = weighting
        self.image_size = image_size
        self.seed = seed
        self.vocabulary = vocabulary
        self.n_threads = n_threads

    def fit(self, X, y=None):
        from .vocabulary import Vocabulary

        level_weights(self.grids, self.weighting)  # validates
        if self.vocabulary is not None:
            if not hasattr(self.vocabulary, "cluster_centers_"):
                raise ValueError("the vocabulary given is not fitted")
            self.vocabulary_ = self.vocabulary
        else:
            self.vocabulary_ = Vocabulary(self.n_words, self.max_descriptors, seed=self.seed).fit(X)
        self.n_features_out_ = len(self.vocabulary_.cluster_centers_) * sum(g * g for g in self.grids)
        return self

    def encode_one(self, frames, descriptors, return_words=False):
        """Pyramid feature of one image (and the word of each descriptor)."""
        centers = self.vocabulary_.cluster_centers_
        cells, n_cells = pyramid_cells(np.asarray(frames)[:, :2], self.image_size, self.image_size, self.grids)
        words, counts = quantize_histogram(descriptors, centers, cells, n_cells, n_threads=self.n_threads)
        feat = normalise_pyramid(counts, self.grids, len(centers), self.weighting)
        return (feat, words) if return_words else feat

    def transform(self, X):
        if not hasattr(self, "vocabulary_"):
            raise ValueError("SpatialPyramidEncoder is not fitted")
        out = np.empty((len(X), self.n_features_out_), np.float32)
        for i, (frames, desc) in enumerate(X):
            out[i] = self.encode_one(frames, desc)
        return out


# --------------------------------------------------------------------------
# The feature-shard store
# --------------------------------------------------------------------------

FEATURE_FORMAT_VERSION = 1
#: Images per feature shard (256 x 12,000 float32 = 12 MB).
FEATURE_SHARD_SIZE = 256


def _atomic_save(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}-{id(array)}")
    with open(tmp, "wb") as fh:
        np.save(fh, array, allow_pickle=False)
    os.replace(tmp, path)


class FeatureStore:
    """Pyramid features of many images in shards on disk, ``(n, dim)`` float32.

    ``index.json`` holds the parameters (a fingerprint of the vocabulary and
    PHOW settings), the image names and the shard size.  Each shard
    ``feat_SSSSS.npy`` is written to a temporary name and renamed when
    complete, so a killed run leaves only whole shards, and a rerun redoes
    just the missing ones.  Shards are memory-mapped when read.
    """

    def __init__(self, directory, names, dim, shard_size, params):
        self.directory = Path(directory)
        self.names = list(names)
        self.dim = int(dim)
        self.shard_size = int(shard_size)
        self.params = params

    @classmethod
    def create(cls, directory, names, dim, params: dict, shard_size=FEATURE_SHARD_SIZE) -> "FeatureStore":
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        index = {"format": FEATURE_FORMAT_VERSION, "dim": int(dim), "shard_size": int(shard_size),
                 "params": params, "names": list(names)}
        p = directory / "index.json"
        if p.exists():
            old = json.loads(p.read_text())
            if old != json.loads(json.dumps(index)):
                raise ValueError(f"{p}: a feature store with other parameters or images is already here; "
                                 "use another folder or delete it")
        else:
            tmp = p.with_name("index.json.tmp")
            tmp.write_text(json.dumps(index))
            os.replace(tmp, p)
        return cls(directory, names, dim, shard_size, params)

    @classmethod
    def open(cls, directory) -> "FeatureStore":
        p = Path(directory) / "index.json"
        if not p.exists():
            raise FileNotFoundError(f"{p}: no feature store here")
        idx = json.loads(p.read_text())
        if idx.get("format") != FEATURE_FORMAT_VERSION:
            raise ValueError(f"{p}: unsupported feature store format {idx.get('format')}")
        store = cls(directory, idx["names"], idx["dim"], idx["shard_size"], idx["params"])
        return store

    def __len__(self):
        return len(self.names)

    @property
    def n_shards(self) -> int:
        return (len(self.names) + self.shard_size - 1) // self.shard_size

    def shard_rows(self, s: int) -> range:
        return range(s * self.shard_size, min(len(self.names), (s + 1) * self.shard_size))

    def shard_path(self, s: int) -> Path:
        return self.directory / f"feat_{s:05d}.npy"

    def missing_shards(self) -> list[int]:
        return [s for s in range(self.n_shards) if not self.shard_path(s).exists()]

    def write_shard(self, s: int, features: np.ndarray) -> None:
        features = np.asarray(features, np.float32)
        if features.shape != (len(self.shard_rows(s)), self.dim):
            raise ValueError(f"shard {s}: expected shape {(len(self.shard_rows(s)), self.dim)}, "
                             f"got {features.shape}")
        _atomic_save(self.shard_path(s), features)

    def read_shard(self, s: int, mmap=True) -> np.ndarray:
        p = self.shard_path(s)
        if not p.exists():
            raise FileNotFoundError(f"{p}: shard missing (the encoding did not finish; rerun it)")
        arr = np.load(p, mmap_mode="r" if mmap else None, allow_pickle=False)
        if arr.shape != (len(self.shard_rows(s)), self.dim):
            raise ValueError(f"{p}: shape {arr.shape}, expected {(len(self.shard_rows(s)), self.dim)}")
        return arr

    def load(self, rows=None) -> np.ndarray:
        """All features (or the given rows) in memory."""
        X = np.concatenate([np.asarray(self.read_shard(s)) for s in range(self.n_shards)]) \
            if self.n_shards else np.zeros((0, self.dim), np.float32)
        return X if rows is None else X[np.asarray(rows)]

    def batches(self, rows=None, seed=None, epoch=0, transform=None):
        """Yield ``(X_batch, row_positions)`` one shard at a time.

        ``rows``: the store rows to use (default all); positions index into
        ``rows``.  With a ``seed`` the shards come in a per-epoch random
        order and rows are shuffled within a shard (SGD); ``transform``
        (e.g. the kernel map) is applied per batch.
        """
        n = len(self.names)
        sel = np.arange(n) if rows is None else np.asarray(rows)
        pos_of = np.full(n, -1, np.int64)
        pos_of[sel] = np.arange(len(sel))
        order = list(range(self.n_shards))
        rng = None
        if seed is not None:
            rng = np.random.default_rng([seed, epoch])
            rng.shuffle(order)
        for s in order:
            r = np.arange(self.shard_rows(s).start, self.shard_rows(s).stop)
            keep = pos_of[r] >= 0
            if not keep.any():
                continue
            local = np.flatnonzero(keep)
            if rng is not None:
                local = rng.permutation(local)
            Xb = np.asarray(self.read_shard(s)[local])
            if transform is not None:
                Xb = transform(Xb)
            yield Xb, pos_of[r[local]]


def encode_images(images, phow, encoder, n_threads=1):
    """PHOW + pyramid features of a stack of preprocessed images, ``(n, dim)``."""
    out = np.empty((len(images), encoder.n_features_out_), np.float32)
    for i, img in enumerate(images):
        frames, desc = phow.transform([img])[0]
        out[i] = encoder.encode_one(frames, desc)
    return out


def _encode_shard_job(cache_dir, rows, phow_params, centers, enc_params, store_dir, s):
    """One shard, in a worker: read the image cache, PHOW, quantise, pyramid, write atomically."""
    from .phow import PHOW
    from .preprocess import ImageCache
    from .vocabulary import Vocabulary

    cache = ImageCache.open(cache_dir)
    store = FeatureStore.open(store_dir)
    if store.shard_path(s).exists():
        return s
    vocab = Vocabulary(n_words=len(centers))
    vocab.cluster_centers_ = centers
    enc = SpatialPyramidEncoder(**{**enc_params, "vocabulary": vocab, "n_threads": 1}).fit(None)
    phow = PHOW(**phow_params)
    imgs = cache.take(rows)
    store.write_shard(s, encode_images(imgs, phow, enc))
    return s


def encode_to_store(cache, cache_rows, store_dir, phow, encoder, *, n_jobs=-1, backend=None,
                    shard_size=FEATURE_SHARD_SIZE, progress=True, names=None) -> FeatureStore:
    """Encode images of an :class:`~phow_baseline.preprocess.ImageCache` into a :class:`FeatureStore`.

    Shards run in parallel with joblib (``backend``: any joblib backend,
    e.g. ``"loky"``, ``"threading"`` or ``"dask"`` inside a
    ``dask.distributed.Client``); complete shards are skipped, so an
    interrupted run resumes.  Images that could not be read when the cache
    was built are encoded as zero vectors and flagged in ``cache.ok``.
    """
    from joblib import Parallel, delayed, parallel_config
    from tqdm.auto import tqdm

    cache_rows = [int(r) for r in cache_rows]
    names = names if names is not None else [cache.names[r] for r in cache_rows]
    centers = encoder.vocabulary_.cluster_centers_
    params = {"phow": phow.get_params(), "grids": list(encoder.grids), "weighting": encoder.weighting,
              "image_size": encoder.image_size, "cache": str(Path(cache.directory).resolve().name),
              "vocabulary_sha256": _sha256_array(centers)}
    params = json.loads(json.dumps(params, default=str))
    store = FeatureStore.create(store_dir, names, encoder.n_features_out_, params, shard_size)
    todo = store.missing_shards()
    if todo:
        enc_params = {"grids": tuple(encoder.grids), "weighting": encoder.weighting,
                      "image_size": encoder.image_size}
        jobs = (delayed(_encode_shard_job)(str(cache.directory), [cache_rows[i] for i in store.shard_rows(s)],
                                           phow.get_params(), centers, enc_params, str(store.directory), s)
                for s in todo)
        with parallel_config(backend=backend) if backend else _nullcontext():
            par = Parallel(n_jobs=n_jobs, return_as="generator_unordered")
            for _ in tqdm(par(jobs), total=len(todo), disable=not progress, desc="encode", unit="shard"):
                pass
    return store


class _nullcontext:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def _sha256_array(a: np.ndarray) -> str:
    import hashlib

    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()
