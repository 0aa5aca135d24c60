"""Exact nearest visual word: the brute-force GEMM path and the pruned path.

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
``2 x.c - ||c||^2`` GEMM and arg-max, and then, like the pruned path,
evaluate exactly (float64) the words whose float32 score is within rounding
of the best, so that both paths give the float64 nearest word and resolve
exact ties (duplicated words) to the lowest index.

Where the time goes (``python benchmarks/bench_encode.py --quick``; thread CPU
time, 600 words, a real 256 px image, 50,000 non-zero descriptors): the
bound GEMM about 43%, the exact refinement 33%, the projection 10%, the
arg-min 8%.  The bound GEMM alone is 41 kflop a descriptor, about 2 GFLOP an
image: at a float32 core's GEMM rate that is already several times PHOW's
extraction time, so the search cannot reach PHOW's speed by tuning this
scheme.  Measured and not adopted (no gain beyond noise): fewer axes (24,
20, 16: more exact evaluations eat the GEMM saved), smaller chunks, float32
exact distances with a float64 decision of near ties, a cascade (an 8-axis
bound for every word, 24 axes for the 50-70 words it keeps), grouping the
words into balls (in 9 dims the balls prune little), and the spatial
neighbour's word as a bound (neighbouring PHOW descriptors differ by about
half their distance to the nearest word, ten times the gap to the second).

One concept at this length: the exact nearest-word search.
"""

from __future__ import annotations

import hashlib
import math
import os
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

import numba
import numpy as np
import numpy.typing as npt

from ._distance import sq_distance_f64

#: Rows of descriptors per GEMM chunk: 512 x 600 float32 distances (1.2 MB)
#: stay in cache while the arg-min reads them.
QUANTIZE_CHUNK = 512


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
def _refine_words(X, rows, C64, margin_rel, cc2_max, S, j0, xm2, slack, out, groups):
    """Exact nearest word among those whose lower bound S[i, j] can beat it.

    ``S[i, j] = ||x - c_j||^2 - ||x - mu||^2`` lower bound, ``j0[i]`` its arg-min;
    exact ``E_j = ||x - c_j||^2 - ||x - mu||^2`` with ``||x - c_j||^2`` summed in
    float64 (:func:`~._distance.sq_distance_f64`; equal distances stay equal, the lowest index wins).
    Returns the number of exact evaluations beyond the first per row.
    """
    m, K = S.shape
    cnt = np.empty(groups, np.int32)
    n_u = (K + groups - 1) // groups
    extra = 0
    for i in range(m):
        r = rows[i]
        b = j0[i]
        best = sq_distance_f64(X, r, C64, b) - xm2[i]
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
            seg = row[base : base + lim]
            for q in range(lim):
                cnt[q] += 1 if seg[q] <= t32 else 0
        for q in range(groups):
            if cnt[q] > 0:
                for j in range(q, K, groups):
                    if row[j] <= thr and j != b:
                        v = sq_distance_f64(X, r, C64, j) - xm2[i]
                        extra += 1
                        if v < best or (v == best and j < b):
                            best = v
                            b = j
                            thr = best + marg
        out[i] = b
    return extra


@numba.njit(cache=True, nogil=True, fastmath=True)
def _refine_gemm(X, rows, C64, S, j0, margin_rel, c2_max, out):
    """Exact nearest word among those whose float32 GEMM score is within rounding of the best.

    ``S[i, j] = 2 x.c_j - ||c_j||^2`` in float32 and ``j0[i]`` its arg-max.
    Its rounding error is below ``(d + 1) u (||x||^2 + 2 ||c_j||^2)``
    (``u = 2^-24``); every word whose score is within ``margin_rel
    (||x||^2 + 2 max ||c||^2)`` of the best is evaluated exactly,
    ``||x - c_j||^2`` in float64 (:func:`~._distance.sq_distance_f64`), and the smallest wins,
    the lowest index on an exact tie.  Returns the number of rows that
    needed the exact check.
    """
    m, K = S.shape
    d = X.shape[1]
    n_checked = 0
    for i in range(m):
        r = rows[i]
        b = j0[i]
        x2 = 0.0
        for t in range(d):
            v = np.float64(X[r, t])
            x2 += v * v
        thr = np.float64(S[i, b]) - margin_rel * (x2 + 2.0 * c2_max)
        row = S[i]
        n = 0
        for j in range(K):
            n += 1 if row[j] >= thr else 0
        if n > 1:
            n_checked += 1
            best = np.inf
            for j in range(K):
                if row[j] >= thr:
                    v = sq_distance_f64(X, r, C64, j)
                    if v < best:  # ascending j: the lowest index keeps an exact tie
                        best = v
                        b = j
        out[i] = b
    return n_checked


#: What :func:`quantize_histogram` writes for the word found in ``bounds_out`` (a float32 above every bound).
BOUND_FAR = np.float32(3e38)
#: ``bounds_out`` is rounded down by this share (float32 rounding is 6e-8 of a value).
BOUND_ROUND_DOWN = 1.0 - 1e-6
#: 16-bit ``bounds_out`` (a uint16 array, with ``bounds_unit``): the largest bound stored (a bound above
#: ``BOUND_Q16_TOP * unit`` is stored as that, still a lower bound), and what the word found gets.
BOUND_Q16_TOP = 65534
BOUND_Q16_FAR = 65535


@numba.njit(cache=True, nogil=True, inline="always")
def stored_bound(v, inv):
    """A bound ``v`` (float64, already rounded down) as stored: itself (``inv`` 0, float32 output) or
    ``floor(v inv)`` capped at :data:`BOUND_Q16_TOP` (16-bit output, ``inv`` = 1 / unit, rounded down).

    Parameters
    ----------
    v : float
        Lower bound of a Euclidean distance, in descriptor units.
    inv : float
        ``1 / unit`` of a 16-bit store (rounded down), or 0 for a float32 store.

    Returns
    -------
    float
        ``v``, or ``v`` in whole units (``<= v / unit``, at most 65534).
    """
    if inv > 0.0:
        return min(np.floor(v * inv), np.float64(BOUND_Q16_TOP))
    return v


@numba.njit(cache=True, nogil=True, fastmath=True)
def _export_pruned_bounds(S, rows, xm2, slack, margin_rel, cc2_max, w, out, inv, far):
    """``out[rows[r], j]``: the pruned search's lower bound of ``||x - c_j||`` (``S + ||x - mu||^2``, less
    the rounding margin the search itself allows, square root, rounded down); ``+FAR`` at the word found.
    """
    m, K = S.shape
    for r in range(m):
        base = xm2[r] - (margin_rel * (xm2[r] + cc2_max) + slack[r])
        o = out[rows[r]]
        for j in range(K):
            b = np.float64(np.float32(np.sqrt(np.float32(max(np.float64(S[r, j]) + base, 0.0)))))
            o[j] = stored_bound(b * BOUND_ROUND_DOWN, inv)
        o[w[r]] = far


@numba.njit(cache=True, nogil=True, fastmath=True)
def _export_gemm_bounds(X, rows, S, margin_rel, c2_max, w, out, inv, far):
    """As :func:`_export_pruned_bounds` for the GEMM path: ``||x||^2 - (2 x.c - ||c||^2)`` less its margin."""
    m, K = S.shape
    d = X.shape[1]
    for r in range(m):
        i = rows[r]
        x2 = 0.0
        for t in range(d):
            v = np.float64(X[i, t])
            x2 += v * v
        base = x2 - margin_rel * (x2 + 2.0 * c2_max)
        o = out[i]
        for j in range(K):
            b = np.float64(np.float32(np.sqrt(np.float32(max(base - np.float64(S[r, j]), 0.0)))))
            o[j] = stored_bound(b * BOUND_ROUND_DOWN, inv)
        o[w[r]] = far


_CONTROLLER = None


def single_blas_thread():
    """A context limiting BLAS to one thread (threadpoolctl; the controller is built once).

    Returns
    -------
    threadpoolctl context manager
        Use as ``with single_blas_thread(): ...``; the previous BLAS thread
        counts come back on exit.
    """
    global _CONTROLLER
    if _CONTROLLER is None:
        from threadpoolctl import ThreadpoolController

        _CONTROLLER = ThreadpoolController()
    return _CONTROLLER.limit(limits=1, user_api="blas")


def nonzero_descriptor_rows(desc: np.ndarray) -> npt.NDArray[np.bool_]:
    """Boolean mask of rows that are not all zero (128 uint8 = 16 uint64 words).

    Parameters
    ----------
    desc : (n, d) array
        Descriptors, any dtype; C-contiguous ``uint8`` rows of a multiple of
        8 bytes are tested 8 bytes at a time.

    Returns
    -------
    (n,) bool
        True where the row has a non-zero entry.
    """
    if desc.dtype == np.uint8 and desc.shape[1] % 8 == 0 and desc.flags.c_contiguous:
        return np.asarray(desc.view(np.uint64).any(axis=1))
    return np.asarray(desc.any(axis=1))


def _check_centers(centers) -> np.ndarray:
    c = np.ascontiguousarray(centers, dtype=np.float32)
    if c.ndim != 2 or len(c) < 1:
        raise ValueError(f"centers must be a (k, d) array, got shape {c.shape}")
    return c


class PruningTables:
    """What the pruned nearest-word search needs of a vocabulary (see the module docstring).

    Parameters
    ----------
    centers : (k, d) array
        Visual words (float32 values; converted to float64 here).
    n_dims : int
        ``m``, principal axes kept for the bound (default :data:`PRUNE_DIMS`), at most ``d``.

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
        ``c - mu`` for the exact evaluation.
    centred_sq : (k,) float64
        ``||c - mu||^2``, squared descriptor units.
    rest_max : float
        The largest norm of a centred word off the kept axes (descriptor units).
    n_dims : int
        ``m``, the axes kept.
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
            np.vstack([-2.0 * Cp.T, self.centred_sq[None], -2.0 * rest[None]]).astype(np.float32)
        )
        self.n_dims = n_dims
        self.eps_rel = 1.01 * (d + 1) * 2.0**-24 * math.sqrt(n_dims)


@lru_cache(maxsize=4)
def _tables_cached(key, shape, raw: bytes) -> PruningTables:
    return PruningTables(np.frombuffer(raw, np.float32).reshape(shape))


def pruning_tables(centers: np.ndarray) -> PruningTables:
    """:class:`PruningTables` of a float32 vocabulary, cached by content (the last 4 vocabularies).

    Parameters
    ----------
    centers : (k, d) array
        Visual words, converted to float32.

    Returns
    -------
    PruningTables
        With :data:`PRUNE_DIMS` axes; shared between calls (do not modify).

    Raises
    ------
    ValueError
        If ``centers`` is not a non-empty 2-D array.
    """
    C = _check_centers(centers)
    raw = C.tobytes()
    return _tables_cached(hashlib.blake2b(raw, digest_size=16).digest(), C.shape, raw)


def _use_pruning(method: str, k: int, d: int) -> bool:
    if method not in ("auto", "pruned", "gemm"):
        raise ValueError(f"method must be 'auto', 'pruned' or 'gemm', got {method!r}")
    if method == "auto":
        return k >= PRUNE_MIN_WORDS and d >= 2 * PRUNE_DIMS
    return method == "pruned" and d > 1


def quantize_histogram(
    descriptors,
    centers,
    cells=None,
    n_cells=1,
    n_threads=None,
    chunk=QUANTIZE_CHUNK,
    method="auto",
    bounds_out=None,
    bounds_unit=None,
):
    """Nearest word of every descriptor, and counts per (cell, word).

    Parameters
    ----------
    descriptors : (n, d) uint8 or float32
        Descriptors (other dtypes are converted to float32).  All-zero rows
        all go to the word of smallest norm.
    centers : (k, d) float32
        Visual words.
    cells : (n, L) int32, optional
        Flat cell index of each descriptor at each pyramid level, in
        ``[0, n_cells)`` (default: one cell).
    n_cells : int
        Total cells over all levels.
    n_threads : int, optional
        Worker threads, each running single-threaded BLAS on its own
        chunks (default: all cores).
    chunk : int
        Descriptors per GEMM (default :data:`QUANTIZE_CHUNK`).
    method : {"auto", "pruned", "gemm"}
        ``"pruned"``: the exact pruned search of the module docstring;
        ``"gemm"``: brute force, one float32 GEMM ``2 x.c - ||c||^2`` per
        chunk and its arg-max, near-ties decided exactly in float64
        (lowest index on an exact tie); ``"auto"``: pruned from
        :data:`PRUNE_MIN_WORDS` words and ``2 * PRUNE_DIMS`` dims on.
    bounds_out : (n, k) float32 array, optional
        Filled, for k-means' kept bounds (:mod:`phow_baseline.encoding.kmeans_bounds`),
        with a lower bound of ``||x_i - c_j||`` (Euclidean) for every word:
        the search's own bound less its rounding margin (so at no extra
        distance), rounded down; :data:`BOUND_FAR` at the word found.  A
        uint16 array holds it in units of ``bounds_unit``, rounded down and
        capped at :data:`BOUND_Q16_TOP` (:data:`BOUND_Q16_FAR` at the word
        found): half the memory, written directly.
    bounds_unit : float, optional
        The unit of a uint16 ``bounds_out`` (Euclidean distance units).

    Returns
    -------
    words : (n,) int32
        Index of the nearest word (squared Euclidean distance, float64; the
        lowest index on an exact tie).
    hist : (n_cells * k,) float64
        Descriptor counts, entry ``cell * k + word`` (each descriptor counted
        once per level).

    Raises
    ------
    ValueError
        If the shapes disagree, ``method`` is unknown or ``bounds_out`` is malformed.
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
    if bounds_out is not None and (
        bounds_out.shape != (n, k)
        or bounds_out.dtype not in (np.float32, np.uint16)
        or not bounds_out.flags.c_contiguous
    ):
        raise ValueError(f"bounds_out must be a C-ordered ({n}, {k}) float32 or uint16 array")
    inv, far = 0.0, BOUND_FAR
    if bounds_out is not None and bounds_out.dtype == np.uint16:
        if bounds_unit is None or not bounds_unit > 0:
            raise ValueError("a uint16 bounds_out needs bounds_unit > 0")
        inv, far = (1.0 / float(bounds_unit)) * BOUND_ROUND_DOWN, BOUND_Q16_FAR
    if n == 0:
        return words, hist
    cnorm = np.einsum("ij,ij->i", C, C, dtype=np.float32)
    C64 = C.astype(np.float64)
    cnorm64 = np.einsum("ij,ij->i", C64, C64)
    nz = nonzero_descriptor_rows(X)
    zero_idx = np.flatnonzero(~nz).astype(np.int64)
    if len(zero_idx):
        # ||0 - c||^2 = ||c||^2: one arg-min (float64, the first on a tie) for all the zeroed descriptors
        w0 = np.full(len(zero_idx), np.argmin(cnorm64), np.int32)
        _count_words(zero_idx, w0, cells, words, hist, k)
        if bounds_out is not None:  # exact: ||0 - c_j|| = ||c_j||
            b = np.sqrt(cnorm64) * BOUND_ROUND_DOWN
            if inv > 0.0:
                b = np.minimum(np.floor(b * inv), BOUND_Q16_TOP)
            bounds_out[zero_idx] = b.astype(bounds_out.dtype)
            bounds_out[zero_idx, w0[0]] = far
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

    c2_max = float(cnorm64.max())

    def run_gemm(part, h):
        # NumPy's matmul and arg-max release the GIL: threads run in parallel.
        buf = np.empty((chunk, d + 1), np.float32)
        buf[:, d] = 1.0
        S = np.empty((chunk, k), np.float32)
        w = np.empty(chunk, np.int32)
        for s in part:
            rows = idx[s : s + chunk]
            r = len(rows)
            buf[:r, :d] = X[rows]
            np.matmul(buf[:r], C_aug, out=S[:r])
            # near-ties within float32 rounding: decided exactly (float64, lowest index)
            _refine_gemm(X, rows, C64, S[:r], S[:r].argmax(axis=1), PRUNE_MARGIN, c2_max, w[:r])
            _count_words(rows, w[:r], cells, words, h, k)
            if bounds_out is not None:
                _export_gemm_bounds(X, rows, S[:r], PRUNE_MARGIN, c2_max, w[:r], bounds_out, inv, far)

    def run_pruned(part, h):
        xc = np.empty((chunk, d), np.float32)
        P = np.empty((chunk, m), np.float32)
        Pa = np.empty((chunk, m + 2), np.float32)
        S = np.empty((chunk, k), np.float32)
        xm2 = np.empty(chunk, np.float64)
        slack = np.empty(chunk, np.float64)
        w = np.empty(chunk, np.int32)
        for s in part:
            rows = idx[s : s + chunk]
            r = len(rows)
            _centre_rows(X, rows, T.mu, mu32, xc[:r], xm2[:r])
            np.matmul(xc[:r], T.V, out=P[:r])
            _rest_norms(P[:r], xm2[:r], T.eps_rel, T.rest_max, Pa[:r], slack[:r])
            np.matmul(Pa[:r], T.bound, out=S[:r])  # lower bounds, float32
            j0 = S[:r].argmin(axis=1)
            _refine_words(X, rows, C64, PRUNE_MARGIN, cc2_max, S[:r], j0, xm2[:r], slack[:r], w[:r], _PRUNE_GROUPS)
            _count_words(rows, w[:r], cells, words, h, k)
            if bounds_out is not None:
                _export_pruned_bounds(
                    S[:r], rows, xm2[:r], slack[:r], PRUNE_MARGIN, cc2_max, w[:r], bounds_out, inv, far
                )

    run_in_threads(run_pruned if pruned else run_gemm, starts, hist, n_threads)
    return words, hist


def _blas_kernel() -> str:
    """The BLAS library and the kernel it chose for this CPU (threadpoolctl), e.g. ``"openblas Haswell"``."""
    global _CONTROLLER
    if _CONTROLLER is None:
        from threadpoolctl import ThreadpoolController

        _CONTROLLER = ThreadpoolController()
    blas = [lib for lib in _CONTROLLER.info() if lib.get("user_api") == "blas"]
    # NumPy's own BLAS (the one np.matmul calls) first
    blas.sort(key=lambda lib: "numpy" not in str(lib.get("filepath", "")))
    if not blas:
        return "an unidentified BLAS"
    return f"{blas[0].get('internal_api', '?')} {blas[0].get('architecture') or '?'}"


def _numba_target() -> str:
    """The CPU Numba compiles for (the host's: LLVM's name) and its widest vector extension."""
    import llvmlite.binding as ll  # type: ignore[import-untyped]

    feats = ll.get_host_cpu_features()
    simd = next((f for f in ("avx512f", "avx2", "avx", "sse4.2") if feats.get(f, False)), "scalar")
    return f"{ll.get_host_cpu_name()} {simd.upper()}"


def quantizer_kernel(n_words: int = 600, dim: int = 128, method: str = "auto") -> str:
    """Which nearest-word search :func:`quantize_histogram` runs for ``n_words`` words of ``dim`` dims,
    and on what machine code.

    Both paths are plain float32 BLAS GEMMs (the library picks its kernel for the CPU at run time:
    AVX2 + FMA suffice, nothing needs AVX-512, VNNI or AMX) and Numba loops compiled for the host CPU
    (``cache=True``: compiled once per machine).

    Parameters
    ----------
    n_words, dim : int
        Vocabulary shape (default 600 x 128, the bag of words').
    method : {"auto", "pruned", "gemm"}
        As in :func:`quantize_histogram`.

    Returns
    -------
    str
        E.g. ``"pruned-pca32 (float32 bound GEMM on openblas Haswell, float64 refinement in Numba for
        znver3 AVX2)"``.

    Raises
    ------
    ValueError
        If ``method`` is unknown.
    """
    if _use_pruning(method, n_words, dim):
        name = f"pruned-pca{min(PRUNE_DIMS, dim - 1)}"
        what = "float32 bound GEMM"
    else:
        name, what = "gemm", "float32 score GEMM"
    return f"{name} ({what} on {_blas_kernel()}, float64 refinement in Numba for {_numba_target()})"


def run_in_threads(run, jobs, acc: np.ndarray, n_threads: int) -> np.ndarray:
    """``run(jobs_part, acc_part)`` over ``n_threads`` threads (every ``n_threads``-th job each), then
    the per-thread accumulators summed into ``acc``.

    BLAS is held to one thread throughout: with one thread in all, that is
    the whole budget; with several, each thread runs its own small GEMMs
    (OpenBLAS's own threads on them only contend).

    Parameters
    ----------
    run : callable
        ``run(jobs_part, acc_part)``, adding its results into ``acc_part`` in place.
    jobs : list
        The jobs (e.g. chunk starts), dealt round-robin to the threads.
    acc : ndarray
        The accumulator; each extra thread gets a zeroed one of the same
        shape and dtype, summed into ``acc`` at the end.
    n_threads : int
        Threads, >= 1.

    Returns
    -------
    ndarray
        ``acc`` itself, holding the sum of all the threads' contributions.
    """
    with single_blas_thread():
        if n_threads == 1:
            run(jobs, acc)
            return acc
        parts = [jobs[t::n_threads] for t in range(n_threads)]
        accs = [acc] + [np.zeros_like(acc) for _ in range(n_threads - 1)]
        with ThreadPoolExecutor(n_threads) as ex:
            list(ex.map(run, parts, accs))
    for a in accs[1:]:
        acc += a
    return acc


def quantize(descriptors, centers, n_threads=None, method="auto") -> np.ndarray:
    """Index of the nearest word (squared Euclidean distance) of each descriptor.

    The assignment of ``sklearn.cluster.KMeans.predict``, except for ties
    (distances equal, or equal within float32 rounding, where KMeans's own
    float32 arithmetic decides), which resolve to the lowest index here on
    both paths: words whose float32 score is within rounding of the best are
    compared exactly in float64 (``||c||^2 - 2 x.c``), and of equal exact
    distances (a duplicated word, say) the lowest index wins.

    Parameters
    ----------
    descriptors : (n, d) uint8 or float32
        Descriptors (other dtypes are converted to float32).
    centers : (k, d) float32
        Visual words.
    n_threads : int, optional
        Worker threads (default: all cores).
    method : {"auto", "pruned", "gemm"}
        The search, as in :func:`quantize_histogram`.

    Returns
    -------
    (n,) int32
        Index of each descriptor's nearest word, in ``[0, k)``.
    """
    return quantize_histogram(descriptors, centers, n_threads=n_threads, method=method)[0]
