"""The exact k-means assignment step with distance bounds kept between iterations (Elkan's algorithm).

Lloyd's assignment step searches every point's nearest centre again at every
iteration, although after the first few most points keep theirs.  Elkan
(ICML 2003) proves that without computing distances, from bounds kept per
point ``x`` (labelled ``a``) and centre ``j``:

* ``u >= ||x - c_a||`` (upper bound), ``l_j <= ||x - c_j||`` for ``j != a``;
* when centre ``j`` moves by ``delta_j`` (Euclidean), the triangle
  inequality keeps them true with ``u += delta_a`` and ``l_j -= delta_j``;
* ``a`` is still the nearest centre if ``u < l_j`` for every ``j``, or if
  ``u`` is below half the distance from ``c_a`` to its nearest other centre;
  else ``u`` is recomputed, and only the centres with ``l_j < u`` are
  measured, their bounds renewed.

Here the lower bounds are stored once per point and centre as
``B_j = l_j + D_j`` with ``D_j`` the centre's cumulative shift (so
``l_j = B_j - D_j`` now), which turns the per-iteration decrement of all
``n k`` bounds into a read: one vectorised pass per unsettled point that
counts the centres its bounds do not rule out, then a scan that stops at
the last of them.  ``B_j`` is kept as a 16-bit integer ``q`` in units of
:attr:`BoundedAssignment.step` (``4 max ||x|| / 65534``), rounded down, so
that ``q step <= B_j``: in high dimension (128 for SIFT) almost every point
needs its bound pass at every iteration (its centre is never nearer than
half the way to the next one), and that pass, a read of all ``n k`` bounds,
is what a late iteration costs; 2 bytes a bound halve it.  A bound above
the range is stored as the range's top (still below it: a looser bound).

Exactness.  A point is settled by its bounds only when they clear by
:data:`BOUND_SLACK` times the scale of the values compared (above the
float32 rounding of the stored bounds and the float64 rounding of shifts
and square roots).  The distances of a search are computed in float32
(SIMD) with a relative error bound :data:`DIST_MARGIN`; the centres those
cannot exclude are compared exactly in float64 (``||x - c||^2`` summed in
index order: the quantizer's own kernel,
:func:`phow_baseline.encoding._distance.sq_distance_f64`), and a point whose two best
exact distances lie within :data:`TIE_SHARE` of each other goes to
:func:`phow_baseline.encoding.quantize.quantize` itself, which decides ties (to the
lowest index).  So the labels are those of :func:`quantize` on every point
at every iteration (tested), at a fraction of its cost once the centres
settle.  The first iteration is :func:`quantize` on every point, which
gives the first lower bounds too (its own pruning bounds, at no extra
distance).

Memory: the bounds take ``2 n k`` bytes (120 MB for 100,000 points and 600
centres, written by :func:`quantize` itself in the first iteration);
:data:`MAX_BOUND_BYTES` caps them (above it, k-means
searches every point every iteration).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np

from ._distance import sq_distance_f64
from .quantize import BOUND_Q16_FAR as _QFAR
from .quantize import BOUND_Q16_TOP as _QTOP
from .quantize import BOUND_ROUND_DOWN as _ROUND_DOWN
from .quantize import quantize, quantize_histogram, single_blas_thread, stored_bound

__all__ = ["BoundedAssignment", "bounds_fit", "BOUND_SLACK", "DIST_MARGIN", "TIE_SHARE", "MAX_BOUND_BYTES"]

#: Slack of every bound test, relative to the scale of the values compared
#: (the largest ``||x||`` of the centred points plus the largest cumulative
#: shift): float32 rounding of a stored bound is 6e-8 of that, float64
#: rounding far less.
BOUND_SLACK = 1e-6
#: Relative error allowed for a squared distance computed in float32: for
#: ``sum_t (x_t - c_t)^2`` (128 positive terms) at most ``(d + 2) 2^-24``,
#: 8e-6, of the result; for the centres' separations by a GEMM, ``||a||^2 +
#: ||b||^2 - 2 a.b``, at most that share of ``||a||^2 + ||b||^2``.  1e-4: a
#: 10x reserve.
DIST_MARGIN = 1e-4
#: Two exact squared distances closer than this share of the smaller are a
#: near-tie, left to :func:`phow_baseline.encoding.quantize.quantize` to decide.
TIE_SHARE = 1e-10
#: Largest size of the 16-bit lower bounds (``2 n k`` bytes) k-means keeps.
MAX_BOUND_BYTES = 2 * 2**30
#: Points per task of a threaded step.
_BLOCK = 2048
_BIG = 1e300
_TINY = 1e-30


def bounds_fit(n_points: int, n_centres: int) -> bool:
    """Whether the bounds of ``n_points`` x ``n_centres`` fit :data:`MAX_BOUND_BYTES`.

    Parameters
    ----------
    n_points : int
        Points ``n`` of the k-means.
    n_centres : int
        Centres ``k``.

    Returns
    -------
    bool
        True when the 16-bit bounds, ``2 n k`` bytes, are at most :data:`MAX_BOUND_BYTES` (2 GiB).
    """
    return 2 * int(n_points) * int(n_centres) <= MAX_BOUND_BYTES


@numba.njit(cache=True, nogil=True, fastmath=True, inline="always")
def _d2_f32(X, i, C32, j):
    """``||x_i - c_j||^2`` in float32 (vectorised; relative error below :data:`DIST_MARGIN`)."""
    s = np.float32(0.0)
    for t in range(X.shape[1]):
        v = X[i, t] - C32[j, t]
        s += v * v
    return s


@numba.njit(cache=True, nogil=True)
def _exact_upper(X, C64, labels, upper):
    """``upper[i]``: the exact distance to the label's centre, a hair above (float64 rounding)."""
    for i in range(X.shape[0]):
        upper[i] = np.sqrt(sq_distance_f64(X, i, C64, labels[i])) * (1.0 + 1e-12)


@numba.njit(cache=True, nogil=True, fastmath=True)
def _bounded_step(
    X, C32, C64, labels, upper, B, step, D64, D32, shift, half_sep, eta, eps, tie, start, stop, flags, stats
):
    """One assignment step of points ``start:stop`` with their bounds (see the module docstring).

    ``B[i, j] step - D[j]`` is a lower bound of ``||x_i - c_j||`` (``j`` not
    the label; ``D32`` the cumulative shifts rounded up), ``upper[i]`` an upper
    bound of the distance to the label's centre before this move.  Per
    point: the half-separation test; the same with ``u`` recomputed; the
    bound pass (how many ``j`` with ``B - D < u``?); the float32 distances
    of the centres the bounds let through, and float64 where those cannot
    decide.  Updates ``labels``, ``upper`` and ``B`` in place;
    ``flags[i] = 1`` marks a near-tie left to :func:`quantize`.  ``stats``
    += (points given a bound pass, upper bounds recomputed, float32
    distances, float64 distances).
    """
    k = C32.shape[0]
    step32 = np.float32(step)
    inv = (1.0 / step) * _ROUND_DOWN
    lo_d = np.empty(k, np.float64)  # lower bound of ||x - c_j|| where computed
    hi_d2 = np.empty(k, np.float64)  # upper bound of ||x - c_j||^2 where computed
    comp = np.empty(k, np.int64)  # centres whose distance was computed
    n_pass = 0
    n_tight = 0
    n_dist = 0
    n_exact = 0
    for i in range(start, stop):
        a = labels[i]
        up = upper[i] + shift[a]
        if up < half_sep[a] - eta:  # c_a is nearer than half the way to any other centre
            upper[i] = up
            continue
        # the distance to c_a first (one distance, cheaper than a pass over the k bounds)
        d2 = np.float64(_d2_f32(X, i, C32, a))
        a_hi = d2 * (1.0 + eps) + _TINY
        up = np.sqrt(a_hi)
        n_tight += 1
        if up < half_sep[a] - eta:
            upper[i] = up
            continue
        row = B[i]
        n_pass += 1
        thr = np.float32(up + eta)
        hit = 0
        for j in range(k):  # vectorised: is any centre not ruled out?
            hit += 1 if np.float32(row[j]) * step32 - D32[j] < thr else 0
        if hit == 0:
            upper[i] = up
            continue
        lo_d[a] = np.sqrt(max(d2 * (1.0 - eps) - _TINY, 0.0))
        hi_d2[a] = a_hi
        comp[0] = a
        nc = 1
        best_hi = a_hi
        ub = up
        thr0 = thr
        seen = 0
        for j in range(k):
            v = np.float32(row[j]) * step32 - D32[j]
            if v < thr0:  # one of the ``hit`` centres not ruled out at first
                seen += 1
                if v < thr and j != a:  # (and not since, by a nearer centre found; the label's is no bound)
                    d2 = np.float64(_d2_f32(X, i, C32, j))
                    n_dist += 1
                    lo_d[j] = np.sqrt(max(d2 * (1.0 - eps) - _TINY, 0.0))
                    h = d2 * (1.0 + eps) + _TINY
                    hi_d2[j] = h
                    comp[nc] = j
                    nc += 1
                    if h < best_hi:
                        best_hi = h
                        ub = np.sqrt(h)
                        thr = np.float32(ub + eta)
                if seen == hit:  # the last of them: the rest of the row is ruled out
                    break
        if nc == 1:  # the recomputed u cleared every bound
            upper[i] = up
            continue
        # the computed centres whose lower bound does not exclude them
        n_cand = 0
        b = a
        for c in range(nc):
            j = comp[c]
            if lo_d[j] <= ub:
                n_cand += 1
                b = j
        if n_cand > 1:
            e1 = _BIG
            e2 = _BIG
            for c in range(nc):
                j = comp[c]
                if lo_d[j] > ub:
                    continue
                e = sq_distance_f64(X, i, C64, j)
                n_exact += 1
                lo_d[j] = np.sqrt(e)
                hi_d2[j] = e
                if e < e1:
                    e2 = e1
                    e1 = e
                    b = j
                elif e < e2:
                    e2 = e
            if e2 - e1 <= tie * e1 + _TINY:
                flags[i] = 1
                continue
        # renewed bounds of the centres measured; the winner's is never read
        for c in range(nc):
            j = comp[c]
            if j != b:
                row[j] = stored_bound(lo_d[j] + D64[j], inv)
        row[b] = _QFAR
        upper[i] = np.sqrt(hi_d2[b])
        labels[i] = b
    stats[0] += n_pass
    stats[1] += n_tight
    stats[2] += n_dist
    stats[3] += n_exact


@numba.njit(cache=True, nogil=True)
def _reset_rows(X, C64, labels, rows, upper, B, step, D64):
    """After an exact search of ``rows``: ``upper`` their exact distance (a hair above), bounds none (0)."""
    k = B.shape[1]
    inv = (1.0 / step) * _ROUND_DOWN
    for r in range(rows.shape[0]):
        i = rows[r]
        upper[i] = np.sqrt(sq_distance_f64(X, i, C64, labels[i])) * (1.0 + 1e-12)
        for j in range(k):
            B[i, j] = stored_bound(D64[j], inv)  # l_j = 0
        B[i, labels[i]] = _QFAR


def _half_separations(C: np.ndarray) -> np.ndarray:
    """Half the distance from each centre to its nearest other centre, rounded down (one float32 GEMM).

    ``||a - b||^2 = ||a||^2 + ||b||^2 - 2 a.b`` with the float32 GEMM's error
    taken off (:data:`DIST_MARGIN` of ``||a||^2 + ||b||^2``).
    """
    k = len(C)
    if k < 2:
        return np.full(k, np.inf)
    sq = np.einsum("ij,ij->i", C, C, dtype=np.float64)
    D2 = sq[:, None] + sq[None, :]
    D2 -= 2.0 * (C @ C.T)
    D2 -= DIST_MARGIN * (sq[:, None] + sq[None, :])
    np.fill_diagonal(D2, np.inf)
    return 0.5 * np.sqrt(np.maximum(D2.min(axis=1), 0.0)) * _ROUND_DOWN


class BoundedAssignment:
    """The assignment step of Lloyd's k-means on points ``X``, with bounds kept between calls.

    ``assign(centers)`` gives the labels of :func:`quantize` for those
    centres (float32, ``(k, d)``); the first call searches every point, the
    later ones only the points their bounds cannot settle, the centres
    having moved since the previous call.  ``X`` (float32, C-ordered) must
    not change between calls.

    Parameters
    ----------
    X : (n, d) array
        The points (converted to float32, C-ordered); centred points as
        :func:`phow_baseline.encoding.kmeans.fit_kmeans` passes them.
    n_threads : int, optional
        Threads of the search and of the bounded steps (default: all cores).
    method : {"auto", "pruned", "gemm"}
        The search of :func:`quantize` for the first call and the near-ties.

    Attributes
    ----------
    radius : float
        The largest norm ``||x||`` of a point (units of ``X``).
    step : float
        Unit of the 16-bit lower bounds, ``4 radius / 65534`` (units of ``X``), a float32 value.
    labels : (n,) int32 or None
        Labels of the last call (None before the first).
    centers : (k, d) float32 or None
        Centres of the last call.
    searched : int
        Points given a bound pass in the last call (their centre's
        half-separation did not settle them; all points on the first call).
    tightened : int
        Points whose upper bound was recomputed in the last call.
    distances : int
        float32 point-centre distances computed in the last call (``n k`` on the first).
    exact : int
        float64 distances computed in the last call.
    ties : int
        Points handed to :func:`quantize` for a near-tie in the last call.
    """

    def __init__(self, X: np.ndarray, n_threads=None, method="auto"):
        self.X = np.ascontiguousarray(X, dtype=np.float32)
        self.n_threads = max(1, int(n_threads or os.cpu_count() or 1))
        self.method = method
        self.radius = float(np.sqrt(np.einsum("ij,ij->i", self.X, self.X).max(initial=0.0)))
        # the 16-bit bounds' unit: their range, 65534 units, is twice the largest distance of a point
        # to a centre inside the points' ball (2 radius)
        # (a float32 value, so that the kernels' float32 unit is exactly this one)
        self.step = float(np.float32(max(4.0 * self.radius, 1e-30) / _QTOP))
        self.labels: np.ndarray | None = None
        self.centers: np.ndarray | None = None
        self.searched = self.tightened = self.distances = self.exact = self.ties = 0

    def _quantize(self, X, centers):
        with single_blas_thread():  # the search runs its own threads, each on one BLAS thread
            return quantize(X, centers, n_threads=self.n_threads, method=self.method).astype(np.int32)

    def _map(self, fn, jobs):
        jobs = list(jobs)
        with single_blas_thread():
            if self.n_threads == 1 or len(jobs) == 1:
                for j in jobs:
                    fn(j)
            else:
                with ThreadPoolExecutor(self.n_threads) as ex:
                    list(ex.map(fn, jobs))

    def _start(self, centers) -> np.ndarray:
        """Every point searched by :func:`quantize` itself, which also gives the first lower bounds (its own
        pruning bounds, at no extra distance); the upper bounds are the exact distances to the words found.
        """
        n, k = len(self.X), len(centers)
        # np.zeros, not np.empty: NumPy asks for transparent huge pages on large np.empty arrays, and
        # where the kernel then compacts memory at the first touch (defrag "madvise") filling 240 MB (the
        # float32 bounds of then)
        # took 0.8 s here, against 0.07 s for calloc's pages
        self.B = np.zeros((n, k), np.uint16)
        self.D = np.zeros(k, np.float64)
        with single_blas_thread():  # the search runs its own threads, each on one BLAS thread
            words, _ = quantize_histogram(
                self.X, centers, n_threads=self.n_threads, method=self.method, bounds_out=self.B, bounds_unit=self.step
            )
        self.labels = words.astype(np.int32)
        self.upper = np.empty(n, np.float64)
        _exact_upper(self.X, centers.astype(np.float64), self.labels, self.upper)
        self.searched, self.tightened, self.distances, self.exact, self.ties = n, 0, n * k, 0, 0
        return self.labels

    def lower_bounds(self) -> np.ndarray:
        """The lower bounds of ``||x_i - c_j||`` now, ``B_j step - D_j`` (meaningless at the labels).

        Returns
        -------
        (n, k) float64
            Lower bounds of the Euclidean distance of each point to each
            centre of the last call, in units of ``X`` (may be negative: no information).
        """
        return self.B.astype(np.float64) * self.step - self.D[None]

    def _settle_ties(self, flags, centers, C64):
        """The flagged points' labels from :func:`quantize`; their bounds reset (upper exact, lower 0)."""
        ties = np.flatnonzero(flags)
        if len(ties) and self.labels is not None:  # (labels are set once the first call has run)
            self.labels[ties] = self._quantize(self.X[ties], centers)
            _reset_rows(self.X, C64, self.labels, ties, self.upper, self.B, self.step, self.D)
        self.ties = len(ties)

    def __call__(self, centers: np.ndarray) -> np.ndarray:
        """Labels of every point for ``centers``; a new array each call.

        Parameters
        ----------
        centers : (k, d) array
            The centres (converted to float32); ``k`` the same at every call.

        Returns
        -------
        (n,) int32
            Index of each point's nearest centre, as :func:`quantize` gives it.
        """
        centers = np.ascontiguousarray(centers, dtype=np.float32)
        if self.labels is None or self.centers is None:  # the first call (both are set together)
            labels = self._start(centers)
            self.centers = centers
            return labels.copy()
        C64 = centers.astype(np.float64)
        shift = np.sqrt(((C64 - self.centers.astype(np.float64)) ** 2).sum(axis=1))
        self.D = self.D + shift
        D32 = np.nextafter(self.D.astype(np.float32), np.float32(np.inf))  # rounded up
        eta = BOUND_SLACK * (self.radius + float(self.D.max()) + 1.0)
        n = len(self.X)
        labels = self.labels.copy()
        flags = np.zeros(n, np.uint8)
        starts = range(0, n, _BLOCK)
        stats = np.zeros((len(starts), 4), np.int64)
        with single_blas_thread():  # a small GEMM: BLAS's threads would only wait for each other here
            half = _half_separations(centers)

        def block(s):
            _bounded_step(
                self.X,
                centers,
                C64,
                labels,
                self.upper,
                self.B,
                self.step,
                self.D,
                D32,
                shift,
                half,
                eta,
                DIST_MARGIN,
                TIE_SHARE,
                s,
                min(s + _BLOCK, n),
                flags,
                stats[s // _BLOCK],
            )

        self._map(block, starts)
        self.labels = labels
        self._settle_ties(flags, centers, C64)
        self.searched, self.tightened, self.distances, self.exact = (int(v) for v in stats.sum(axis=0))
        self.centers = centers
        return labels.copy()
