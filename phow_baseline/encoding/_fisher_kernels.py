"""Numba kernel of the Fisher vector: soft-max of the log-joints and sparse posterior-weighted moments.

After the log-likelihood GEMM of a chunk of descriptors and the maximum of
each row (numpy's vectorised reduction), everything else of a Fisher
vector's accumulation is done here, one row at a time, while the chunk is
in cache:

1. ``exp(L_k - m)`` only for the components within :data:`LOG_CUT` nats of
   the row's maximum ``m``: the others have ``exp(L_k - m) < 1e-13``, so
   their posterior is far below VLFeat's ``1e-6`` (zeroed anyway) and their
   share of the soft-max denominator is below ``K * 1e-13`` relative, under
   float32 rounding;
2. the posteriors ``q_k`` of those components (``exp`` in float32, the sum in
   float64), and, for each
   ``q_k >= 1e-6`` (``vl/fisher.c`` skips the others), ``[q x^2, q x, q]``
   added to the component's moments, in float64 (``vl_fisher`` sums in
   float32).

On PHOW descriptors (PCA 80, 256 Gaussians) a row has about 7 posteriors at
or above ``1e-6`` and about 25 components within the cut, so the second
GEMM of a dense implementation (``Q^T [x^2, x, 1]``, as many floating-point
operations as the first) becomes about 7 / 256 of it, done as sparse
updates: ``vl_fisher``'s own loop over the components of each descriptor,
with its log-joints taken from the GEMM.
"""

from __future__ import annotations

import math

import numba
import numpy as np

#: Components more than this many nats below a row's best get no exp (``exp(-30) = 9.4e-14``).
LOG_CUT = 30.0


@numba.njit(cache=True, nogil=True, fastmath={"contract"})
def moments_kernel(L, m, best, X, groups, G, min_posterior):  # pragma: no cover - compiled
    """Add the posterior-weighted moments of a chunk of descriptors to ``G`` (in place).

    Parameters
    ----------
    L : (r, K) float32 array
        Log-joints ``log pi_k N(x_i; mu_k, sigma_k^2)`` of the chunk's rows (nats).
    m : (r,) float32 array
        ``max_k L[i, k]`` of each row.
    best : (r,) int64 array
        With ``r`` rows: hard assignment (VLFeat's ``Fast``), the posterior is one
        on ``best[i]``; empty: soft posteriors.
    X : (r, d) float32 array
        The chunk's descriptors.
    groups : (r,) int64 array
        Group of each row, in ``[0, G.shape[0])``.
    G : (n_groups, K, 2d + 1) float64 array
        Moments ``[sum q x^2, sum q x, sum q]`` per group and component, updated.
    min_posterior : float
        Posteriors below this are skipped (VLFeat's ``1e-6``).
    """
    r, K = L.shape
    d = X.shape[1]
    w = 2 * d + 1
    xx = np.empty(w, np.float64)
    xx[2 * d] = 1.0
    idx = np.empty(K, np.int64)
    ev = np.empty(K, np.float32)
    hard = len(best) == r
    for i in range(r):
        g = groups[i]
        for t in range(d):
            v = np.float64(X[i, t])
            xx[t] = v * v
            xx[d + t] = v
        if hard:
            k = best[i]
            for t in range(w):
                G[g, k, t] += xx[t]
            continue
        mi = m[i]
        if mi == -np.inf:
            continue  # no live component
        cut = mi - np.float32(LOG_CUT)
        nh = 0
        s = 0.0
        for k in range(K):
            v = L[i, k]
            if v > cut:
                e = math.exp(v - mi)  # float32 (expf), as in vl_fisher
                idx[nh] = k
                ev[nh] = e
                s += np.float64(e)
                nh += 1
        inv = 1.0 / s
        for h in range(nh):
            q = ev[h] * inv
            if q >= min_posterior:
                k = idx[h]
                for t in range(w):
                    G[g, k, t] += q * xx[t]


@numba.njit(cache=True, nogil=True)
def root_sift_rows(D, idx, out):  # pragma: no cover - compiled
    """RootSIFT of rows ``idx`` of uint8 descriptors, bit for bit as :func:`..features.descriptors.root_sift`.

    ``out[i] = sqrt(float32(D[idx[i]] / sum(D[idx[i]])))``: the sum exact in
    float64, the quotient rounded to float32, its square root in float32; an
    all-zero row gives zeros.

    Parameters
    ----------
    D : (n, 128) uint8 array
        SIFT descriptors.
    idx : (r,) int64 array
        Rows of ``D`` to transform, in ``[0, n)``.
    out : (r, 128) float32 array
        Where to write the RootSIFT vectors.

    Returns
    -------
    (r, 128) float32 array
        ``out``.
    """
    d = D.shape[1]
    for i in range(len(idx)):
        j = idx[i]
        s = 0.0
        for t in range(d):
            s += np.float64(D[j, t])
        if s > 0:
            for t in range(d):
                out[i, t] = np.sqrt(np.float32(np.float64(D[j, t]) / s))
        else:
            for t in range(d):
                out[i, t] = 0.0
    return out
