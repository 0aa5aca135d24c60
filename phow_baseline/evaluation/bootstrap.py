"""The bootstrap resampling of the test images that every interval of the evaluation uses.

Intervals are percentile intervals over resamples of the test images: each
resample draws ``n`` images with replacement, and the same draws (for one
``seed``) serve the AUROC intervals (:mod:`.roc`), the ROC bands and the
operating-point intervals (:mod:`.decision_metrics`), so that they describe
the same resamples.
"""

from __future__ import annotations

import numpy as np

#: Bootstrap resamples for the 95 % intervals (percentile method).
DEFAULT_N_BOOTSTRAP = 1000


def bootstrap_weights(n: int, n_bootstrap: int, seed=0, chunk: int = 100):
    """Yield ``(b, n)`` multiplicity matrices of ``n_bootstrap`` resamples of ``n`` items, ``chunk`` at a time.

    Each row is one resample: entry ``[r, i]`` counts how many times item
    ``i`` was drawn (with replacement) in resample ``r``, so each row sums to
    ``n`` and a weighted statistic ``w @ x`` is the statistic on the resample.
    The draws are those of :func:`~phow_baseline.evaluation.roc.bootstrap_auroc` for the
    same ``seed`` (one ``integers(0, n, (b, n))`` call per chunk).

    Parameters
    ----------
    n : int
        Number of items (test images) resampled.
    n_bootstrap : int
        Total number of resamples over all chunks (:data:`DEFAULT_N_BOOTSTRAP`
        is 1000).
    seed : int, numpy.random.Generator or None, default 0
        Seed of :func:`numpy.random.default_rng`; the same seed gives the same
        resamples in every function that draws them.
    chunk : int, default 100
        Resamples per yielded matrix (bounds the memory to ``chunk * n``
        int64 counts, 8 bytes each).

    Yields
    ------
    weights : (b, n) int64 ndarray
        Multiplicities of the items in ``b = min(chunk, remaining)``
        resamples; each row sums to ``n``.
    """
    rng = np.random.default_rng(seed)
    for lo in range(0, n_bootstrap, chunk):
        b = min(chunk, n_bootstrap - lo)
        idx = rng.integers(0, n, size=(b, n))
        yield np.bincount((idx + np.arange(b)[:, None] * n).ravel(), minlength=b * n).reshape(b, n)
