"""Lloyd's k-means with the library's exact nearest-word search as its assignment step.

Each iteration assigns every point to its nearest centre with
:func:`phow_baseline.encoding.quantize.quantize` (the exact pruned search: a PCA lower
bound as a skinny GEMM, then an exact float64 check of the few centres that
can win, ties to the lowest index) and moves every centre to the mean of its
points (per-cluster float64 sums and counts, kept from one iteration to the
next: only the points whose label changed move their share, a Numba loop
over those few).  It follows
``sklearn.cluster.KMeans(algorithm="lloyd", n_init=1)`` step for step, so the
two give the same centres from the same initial centres:

* the iteration ``t`` assigns labels with centres ``C_t``, then
  ``C_{t+1}[j] = mean of the points labelled j``;
* a centre left without points takes the point farthest from its own centre
  (the farthest points first, in scikit-learn's order), which leaves the
  cluster it came from;
* it stops when no label changed (strict convergence), or when the squared
  centre shift ``sum_j ||C_{t+1}[j] - C_t[j]||^2`` is at most
  ``tol * mean_d var(X[:, d])``, or after ``max_iter`` iterations; the labels
  returned are those of the final centres, and the inertia is
  ``sum_i ||x_i - C[label_i]||^2``.

Points are float32 (uint8 descriptors are converted), as scikit-learn's
float32 path: give it the same float32 array to compare.  The sums are
accumulated in float64 (scikit-learn: in float32), so the centres agree to
float32 rounding, and a point whose two nearest centres are that close may
be labelled differently.
"""

from __future__ import annotations

import logging
import sys
import time

import numba
import numpy as np

from ._distance import sq_distance_f64
from .kmeans_bounds import BoundedAssignment, bounds_fit
from .quantize import quantize

logger = logging.getLogger(__name__)

__all__ = ["fit_kmeans", "kmeans_plusplus_init"]


def _as_points(X) -> np.ndarray:
    X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"X must be a 2-D (n_points, n_dims) array, got shape {X.shape}")
    if not np.issubdtype(X.dtype, np.number):
        raise ValueError(f"X must be numeric, got dtype {X.dtype}")
    X = np.ascontiguousarray(X, dtype=np.float32)
    if not np.isfinite(X).all():
        raise ValueError("X holds NaN or infinite values")
    return X


def _kmeans_plusplus(Xc, X64, n_clusters: int, random_state, n_local_trials=None):
    """scikit-learn's ``_kmeans_plusplus`` on float32 points, with its float64 distances precomputed once.

    The same draws from ``random_state`` and the same arithmetic as
    scikit-learn on float32 data (squared distances computed in float64
    as ``||x||^2 - 2 x.c + ||c||^2``, then stored in float32; potentials and
    their cumulative sum in float32), so the same points are chosen.  What
    it saves: scikit-learn converts every point to float64 again for each
    of the ``k (2 + ln k)`` candidate centres; here ``X64`` (the float64
    copy of ``Xc``) is made once and each step is one GEMM against it.

    Returns ``(centers (k, d) float32, indices (k,))``.
    """
    from sklearn.utils import check_random_state
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):  # skinny, memory-bound GEMMs: one thread is as fast
        return _kmeans_plusplus_steps(Xc, X64, n_clusters, check_random_state(random_state), n_local_trials)


def _kmeans_plusplus_steps(Xc, X64, n_clusters, rs, n_local_trials):
    """The steps of :func:`_kmeans_plusplus` (``rs``: a ``RandomState``)."""
    n = len(Xc)
    k = int(n_clusters)
    w = np.ones(n, dtype=Xc.dtype)
    if n_local_trials is None:
        n_local_trials = 2 + int(np.log(k))
    xx = np.einsum("ij,ij->i", X64, X64)

    def sq_dist(ids):
        d = X64[ids] @ X64.T
        d *= -2.0
        d += xx[ids][:, None]
        d += xx[None, :]
        d = d.astype(np.float32)
        np.maximum(d, 0, out=d)
        return d

    centers = np.empty((k, Xc.shape[1]), Xc.dtype)
    indices = np.full(k, -1, dtype=int)
    center_id = rs.choice(n, p=w / w.sum())
    centers[0] = Xc[center_id]
    indices[0] = center_id
    closest = sq_dist([center_id])
    current_pot = closest @ w
    for c in range(1, k):  # one step per centre (k steps), each vectorised over the points
        rand_vals = rs.uniform(size=n_local_trials) * current_pot
        cand = np.searchsorted(np.cumsum(w * closest), rand_vals)
        np.clip(cand, None, closest.size - 1, out=cand)
        dist = sq_dist(cand)
        np.minimum(closest, dist, out=dist)
        pots = dist @ w.reshape(-1, 1)
        best = np.argmin(pots)
        current_pot = pots[best]
        closest = dist[best]
        centers[c] = Xc[cand[best]]
        indices[c] = cand[best]
    return centers, indices


def _centred(X):
    """``KMeans.fit``'s centring: the float32 mean, the centred float32 points and their float64 copy."""
    mean = X.mean(axis=0)
    Xc = X - mean
    return mean, Xc, Xc.astype(np.float64)


def kmeans_plusplus_init(X, n_clusters: int, random_state=None) -> np.ndarray:
    """k-means++ centres as ``KMeans(init="k-means++", random_state=...)`` draws them.

    scikit-learn's ``KMeans.fit`` centres the data and then seeds with
    k-means++ (``sklearn.cluster.kmeans_plusplus``); so does this, with the
    same draws and arithmetic (:func:`_kmeans_plusplus`), and adds the mean back.

    Each new centre is the best, by total potential ``sum_i min_j ||x_i - c_j||^2``,
    of ``2 + floor(ln k)`` points drawn with probability proportional to their
    squared distance to the nearest centre chosen so far (Arthur and
    Vassilvitskii 2007, greedy variant).

    Parameters
    ----------
    X : (n, d) array
        Points (converted to float32), finite.
    n_clusters : int
        Number of centres ``k``, in ``[1, n]``.
    random_state : int, RandomState or None
        Seeds the draws (as ``KMeans``'s ``random_state``).

    Returns
    -------
    (k, d) float32
        The initial centres, in the units of ``X``: input points (up to the
        float32 rounding of the centring).

    Raises
    ------
    ValueError
        If ``X`` is not a finite numeric 2-D array or ``n_clusters`` is out of range.
    """
    X = _as_points(X)
    if not 1 <= int(n_clusters) <= len(X):
        raise ValueError(f"n_clusters must be in [1, {len(X)}] (the number of points), got {n_clusters}")
    mean, Xc, X64 = _centred(X)
    centers, _ = _kmeans_plusplus(Xc, X64, n_clusters, random_state)
    return centers + mean


@numba.njit(cache=True, nogil=True)
def _move_points(X, idx, old, new, sums, counts):
    """Per-cluster float64 sums and counts after the points ``idx`` moved from ``old`` to ``new``.

    The sums stay those of the labels up to float64 rounding (each move
    rounds by at most 2^-53 of a sum, far below the float32 centres' own
    rounding); only the few points whose label changed are touched, instead
    of every point at every iteration.
    """
    d = X.shape[1]
    for t in range(idx.shape[0]):
        i = idx[t]
        a = old[i]
        b = new[i]
        for q in range(d):
            v = np.float64(X[i, q])
            sums[a, q] -= v
            sums[b, q] += v
        counts[a] -= 1.0
        counts[b] += 1.0


@numba.njit(cache=True, nogil=True)
def _sum_by_label(X, labels, sums, counts):
    """Per-cluster float64 sums and counts, the points added in order."""
    d = X.shape[1]
    for i in range(X.shape[0]):
        a = labels[i]
        for q in range(d):
            sums[a, q] += np.float64(X[i, q])
        counts[a] += 1.0


@numba.njit(cache=True, nogil=True)
def _inertia_kernel(X, C64, labels):
    """``sum_i ||x_i - C[label_i]||^2`` in float64 (each term :func:`~._distance.sq_distance_f64`)."""
    total = 0.0
    for i in range(X.shape[0]):
        total += sq_distance_f64(X, i, C64, labels[i])
    return total


def _relocate_empty(X, labels, centers_old, sums, counts) -> int:
    """scikit-learn's ``_relocate_empty_clusters_dense``: each empty cluster takes a far point.

    The ``n_empty`` points farthest from their own centre, farthest first,
    each become the sum of one empty cluster and leave their cluster's sum.
    Returns the number of clusters relocated.
    """
    empty = np.flatnonzero(counts == 0)
    n_empty = len(empty)
    if n_empty == 0:
        return 0
    diff = X - centers_old[labels]
    dist = np.einsum("ij,ij->i", diff, diff)
    if dist.max() == 0:  # more clusters than distinct points: nothing to move
        return 0
    far = np.argpartition(dist, -n_empty)[: -n_empty - 1 : -1]
    for new, f in zip(empty, far):  # one step per empty cluster (few), not per point
        old = labels[f]
        sums[old] -= X[f]
        sums[new] = X[f]
        counts[new] = 1.0
        counts[old] -= 1.0
    return n_empty


def _assign(X, centers, n_threads, method) -> np.ndarray:
    """Nearest centre of every point (the exact search), BLAS held to one thread.

    The search runs its GEMMs in its own threads, each single-threaded; the
    one BLAS call outside them (the 128 x 128 eigen-decomposition of the
    pruning tables, new centres every iteration) is small, and multithreaded
    BLAS made it take 0.5 s on a loaded 2-core machine instead of milliseconds.
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        return quantize(X, centers, n_threads=n_threads, method=method).astype(np.int32, copy=False)


class _SearchEveryPoint:
    """The assignment step without bounds: :func:`_assign` on every point at every call.

    Carries the counters of :class:`~.kmeans_bounds.BoundedAssignment` (every point
    searched, ``n k`` distances, no tie left over) for :func:`fit_kmeans`'s history.
    """

    def __init__(self, X: np.ndarray, n_clusters: int, n_threads: int | None, method: str):
        self.X, self.n_threads, self.method = X, n_threads, method
        self.searched, self.distances, self.ties = len(X), len(X) * n_clusters, 0

    def __call__(self, centers: np.ndarray) -> np.ndarray:
        return _assign(self.X, centers, self.n_threads, self.method)


def fit_kmeans(
    X,
    n_clusters: int,
    init="k-means++",
    max_iter: int = 300,
    tol: float = 1e-4,
    random_state=None,
    progress: bool = False,
    n_threads: int | None = None,
    method: str = "auto",
    bounds: bool = True,
):
    """Lloyd's k-means whose assignment step is the exact nearest-word search.

    Parameters
    ----------
    X : (n, d) array
        Points (converted to float32).
    n_clusters : int
        Number of centres ``k``.
    init : "k-means++" or (k, d) array
        Initial centres: k-means++ seeding drawn as scikit-learn's ``KMeans``
        draws it (:func:`kmeans_plusplus_init`), or the given centres.
    max_iter : int
        Most Lloyd iterations.
    tol : float
        Stop when the squared centre shift (sum over centres) is at most
        ``tol`` times the mean variance of the features (scikit-learn's rule).
        ``0``: only strict convergence or ``max_iter`` stop it.
    random_state : int, RandomState or None
        Seeds k-means++.
    progress : bool
        A progress bar on stderr (log lines when not a terminal) with the inertia and centre shift of each
        iteration.
    n_threads : int, optional
        Threads of the assignment step (default: all cores).
    method : {"auto", "pruned", "gemm"}
        Nearest-centre search (see :func:`phow_baseline.encoding.quantize.quantize_histogram`).
    bounds : bool
        Keep per point an upper bound of the distance to its centre and a
        lower bound for every other centre between iterations (Elkan's
        algorithm, :class:`phow_baseline.encoding.kmeans_bounds.BoundedAssignment`),
        and measure only the distances they cannot rule out.  The labels are
        those of ``False`` (every point searched every iteration) at every
        iteration.  Used when the bounds (``4 n k`` bytes) fit
        :data:`phow_baseline.encoding.kmeans_bounds.MAX_BOUND_BYTES`.

    Returns
    -------
    centers : (k, d) float32
        The final centres, in the units of ``X``.
    labels : (n,) int32
        Nearest centre of each point for the returned centres.
    inertia : float
        Sum of squared distances of the points to their centres (squared units of ``X``).
    n_iter : int
        Iterations run (as ``KMeans.n_iter_``).
    history : list of dict
        Per iteration: ``iteration``, ``inertia`` (of the labels just
        assigned, against the centres they were assigned to), ``center_shift``
        (squared, summed over centres), ``changed`` (labels that changed),
        ``relocated`` (empty clusters moved), ``searched`` (points whose
        bounds did not settle them at once: all of them without
        ``bounds``), ``distances`` (point-centre distances computed: ``n k``
        without ``bounds``), ``ties`` (points left to the exact search for
        a near-tie) and ``seconds``.
    """
    X = _as_points(X)
    n, d = X.shape
    k = int(n_clusters)
    if k < 1 or k > n:
        raise ValueError(f"n_clusters must be in [1, {n}] (the number of points), got {n_clusters}")
    if int(max_iter) < 1:
        raise ValueError(f"max_iter must be at least 1, got {max_iter}")
    if not tol >= 0:
        raise ValueError(f"tol must be >= 0, got {tol}")
    if isinstance(init, str):
        if init != "k-means++":
            raise ValueError(f"init must be 'k-means++' or an array of centres, got {init!r}")
    else:
        init = np.array(init, dtype=np.float32, copy=True, order="C")
        if init.shape != (k, d):
            raise ValueError(f"init has shape {init.shape}, expected ({k}, {d})")
        if not np.isfinite(init).all():
            raise ValueError("init holds NaN or infinite values")
    tol_abs = float(np.mean(np.var(X, axis=0)) * tol) if tol else 0.0
    # As KMeans.fit: work on the centred float32 points (the mean added back at the end).
    # X64, their float64 copy, made once, is the operand of k-means++ and of the update step.
    mean, X, X64 = _centred(X)
    if isinstance(init, str):
        t0 = time.perf_counter()
        centers, _ = _kmeans_plusplus(X, X64, k, random_state)
        if progress:
            logger.info("k-means++: %d centres in %.1f s", k, time.perf_counter() - t0)
    else:
        centers = init - mean
    x_sq = float(np.einsum("ij,ij->", X64, X64))
    del X64

    from ..progress import progress_bar

    bar = progress_bar(
        total=int(max_iter),
        desc="k-means",
        unit="it",
        disable=not progress,
        file=sys.stderr,
        leave=False,
        mininterval=0,
    )
    assign: BoundedAssignment | _SearchEveryPoint
    if bounds and bounds_fit(n, k):
        assign = BoundedAssignment(X, n_threads, method)
    else:
        assign = _SearchEveryPoint(X, k, n_threads, method)
    labels = np.full(n, -1, np.int32)
    sums = np.zeros((k, d), np.float64)
    counts = np.zeros(k, np.float64)
    history = []
    strict = False
    i = 0
    for i in range(int(max_iter)):
        t0 = time.perf_counter()
        labels_old = labels
        labels = assign(centers)
        if i == 0:
            _sum_by_label(X, labels, sums, counts)
            changed = n
        else:  # the sums of these labels: only the points whose label changed move
            moved = np.flatnonzero(labels != labels_old)
            _move_points(X, moved, labels_old, labels, sums, counts)
            changed = len(moved)
        c64 = centers.astype(np.float64)
        # inertia of these labels against the centres they were assigned to, from the sums:
        # sum ||x||^2 - 2 sum_j c_j . S_j + sum_j n_j ||c_j||^2
        inertia = x_sq - 2.0 * float(np.einsum("ij,ij->", c64, sums)) + float(counts @ np.einsum("ij,ij->i", c64, c64))
        sums_u, counts_u = sums, counts
        if not counts.all():  # relocation moves a point's share of the sums, not its label: on copies
            sums_u, counts_u = sums.copy(), counts.copy()
        relocated = _relocate_empty(X, labels, centers, sums_u, counts_u)
        new = np.empty_like(sums_u)
        full = counts_u > 0
        new[full] = sums_u[full] / counts_u[full, None]
        if not full.all():
            new[~full] = new[np.argmax(counts_u)]
        new = new.astype(np.float32)
        shift = float(np.sum((new.astype(np.float64) - c64) ** 2))
        centers = new
        history.append(
            {
                "iteration": i + 1,
                "inertia": inertia,
                "center_shift": shift,
                "changed": changed,
                "relocated": relocated,
                "searched": int(assign.searched),
                "distances": int(assign.distances),
                "ties": int(assign.ties),
                "seconds": time.perf_counter() - t0,
            }
        )
        bar.update(1)
        bar.set_postfix(inertia=f"{inertia:.6g}", shift=f"{shift:.3g}", changed=changed, searched=assign.searched)
        if changed == 0:
            strict = True
            break
        if shift <= tol_abs:
            break
    bar.close()
    if not strict:
        labels = assign(centers)
    inertia = float(_inertia_kernel(X, centers.astype(np.float64), labels))
    return centers + mean, labels, inertia, i + 1, history
