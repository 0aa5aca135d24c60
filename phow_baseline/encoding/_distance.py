"""The exact squared Euclidean distance, the one the quantizer and k-means decide with.

Every fast path of :mod:`.quantize`, :mod:`.kmeans` and :mod:`.kmeans_bounds`
(float32 GEMM scores, pruning bounds, Elkan bounds) only narrows down the
candidates; the nearest centre among them is decided by this one function,
so that the quantizer and k-means agree to the last bit: the same sums in
the same order give the same ties, and the lowest index wins a tie.

It is inlined into its callers (``inline="always"``, at Numba's IR level, so
it compiles under each caller's flags).  Numba's on-disk cache of a caller
does not notice a change to this file: after editing it, delete the
``__pycache__`` folder of :mod:`phow_baseline.encoding`.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True, inline="always")
def sq_distance_f64(X, i, C64, j):
    """``||x_i - c_j||^2``, each difference and square in float64, summed in index order.

    Parameters
    ----------
    X : (n, d) array, uint8 or float32
        Points (descriptors); row ``i`` is the point.
    i : int
        Row of ``X``.
    C64 : (k, d) float64 array
        Centres (visual words) holding float32 values.
    j : int
        Row of ``C64``.

    Returns
    -------
    float
        The squared distance, in squared units of ``X``.  Exact for
        integer-valued data (uint8 descriptors, integer centres); otherwise
        rounded in float64, the same operations in the same order for every
        pair, so that equal words give equal distances and exact ties stay ties.
    """
    s = 0.0
    for t in range(X.shape[1]):
        v = np.float64(X[i, t]) - C64[j, t]
        s += v * v
    return s
