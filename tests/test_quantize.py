"""Ties in the nearest-word search: both paths resolve exact ties to the lowest index."""

import numpy as np
import pytest

from phow_baseline.encoding.quantize import quantize, quantize_histogram


def _exact_words(X, C):
    """Nearest word by exact integer arithmetic; np.argmin takes the first of equal minima."""
    D = ((X[:, None].astype(np.int64) - C[None].astype(np.int64)) ** 2).sum(-1)
    return D.argmin(1), (D == D.min(1, keepdims=True)).sum(1) > 1


@pytest.mark.parametrize("k,d", [(50, 128), (100, 128), (600, 128), (20, 16)])
@pytest.mark.parametrize("method", ["gemm", "pruned"])
def test_exact_ties_between_distinct_words_go_to_the_lowest_index(k, d, method):
    """Integer words and descriptors in {0, 1, 2}: hundreds of rows with several words at
    exactly the same distance.  (Before the fix the pruned path broke 25-77 of these ties
    by float64 rounding of ``||c - mu||^2 - 2 (x - mu).(c - mu)``.)"""
    rng = np.random.default_rng(k + d)
    C = rng.integers(0, 3, (k, d)).astype(np.float32)
    X = rng.integers(0, 3, (3000, d)).astype(np.uint8)
    want, tied = _exact_words(X, C)
    assert tied.sum() > 100  # the test does exercise ties
    for n_threads in (1, 2):
        got = quantize(X, C, method=method, n_threads=n_threads)
        assert (got == want).all(), (got != want).sum()
    got = quantize(X.astype(np.float32), C, method=method, n_threads=1)
    assert (got == want).all()


@pytest.mark.parametrize("k", [50, 63, 100, 600])
def test_duplicated_words_never_win_a_tie(k):
    """Words duplicated at several column positions (inside and at the edge of the BLAS tiles):
    the later copy is never chosen, on either path.  (Before the fix the GEMM path chose the
    later copy for 34 of 150 rows with k = 50 on OpenBLAS.)"""
    rng = np.random.default_rng(k)
    d = 128
    C = (rng.random((k, d)) * 40).astype(np.float32)
    pairs = [(0, k - 1), (1, k // 2), (2, k - 2), (3, k - 3)]
    for a, b in pairs:
        C[b] = C[a]
    src = np.repeat([a for a, _ in pairs], 60)
    X = (C[src] + rng.normal(0, 3, (len(src), d))).clip(0).astype(np.float32)
    X = np.vstack([X, C[src[::10]]])  # and the words themselves
    Xu = X.round().clip(0, 255).astype(np.uint8)
    D = ((X[:, None].astype(np.float64) - C[None]) ** 2).sum(-1)
    for method in ("gemm", "pruned"):
        for data in (X, Xu):
            w = quantize(data, C, method=method)
            assert not np.isin(w, [b for _, b in pairs]).any(), method
        w = quantize(X, C, method=method)
        # and the chosen word is the nearest one
        assert np.all(D[np.arange(len(X)), w] <= D.min(1) + 1e-9 * D.max())
    C2 = C.copy()
    j = int(np.argmin((C2.astype(np.float64) ** 2).sum(1)))
    C2[-1] = C2[j]
    for method in ("gemm", "pruned"):
        w, _ = quantize_histogram(np.zeros((5, d), np.uint8), C2, method=method)
        assert (w == min(j, k - 1)).all()


@pytest.mark.parametrize("method, k, d", [("pruned", 150, 128), ("gemm", 150, 128), ("auto", 12, 40)])
def test_bounds_out_are_lower_bounds_of_every_distance(method, k, d):
    """quantize_histogram(bounds_out=...) gives k-means its first bounds: below every true distance (the
    word found excepted, marked far), and close to it (the pruning bound's own tightness)."""
    from phow_baseline.encoding.quantize import BOUND_FAR, quantize_histogram

    rng = np.random.default_rng(4)
    C = (rng.random((k, d)) * 60).astype(np.float32)
    X = (C[rng.integers(0, k, 3000)] + rng.normal(0, 6, (3000, d))).astype(np.float32)
    X[:7] = 0  # the all-zero descriptors' shortcut too
    B = np.zeros((len(X), k), np.float32)
    words, _ = quantize_histogram(X, C, method=method, bounds_out=B)
    np.testing.assert_array_equal(words, quantize_histogram(X, C, method=method)[0])
    D = np.sqrt(((X[:, None, :].astype(np.float64) - C[None].astype(np.float64)) ** 2).sum(-1))
    assert np.all(B[np.arange(len(X)), words] == BOUND_FAR)
    other = np.ones(D.shape, bool)
    other[np.arange(len(X)), words] = False
    assert np.all(B[other] <= D[other])
    assert np.median(B[other] / D[other]) > 0.5
    with pytest.raises(ValueError, match="bounds_out"):
        quantize_histogram(X, C, bounds_out=np.zeros((len(X), k + 1), np.float32))
    # 16 bits: floor(B / unit) where the float32 bound is below the cap (the same bound, rounded down
    # to the unit), the cap above it, BOUND_Q16_FAR at the word found
    from phow_baseline.encoding.quantize import BOUND_Q16_FAR, BOUND_Q16_TOP

    unit = float(np.float32(np.median(B[other]) / BOUND_Q16_TOP))  # the cap, 65534 units, amid the bounds
    Q = np.zeros((len(X), k), np.uint16)
    w16, _ = quantize_histogram(X, C, method=method, bounds_out=Q, bounds_unit=unit)
    np.testing.assert_array_equal(w16, words)
    assert np.all(Q[np.arange(len(X)), words] == BOUND_Q16_FAR)
    lower = Q.astype(np.float64) * unit
    assert np.all(lower[other] <= D[other])
    below = other & (B.astype(np.float64) < BOUND_Q16_TOP * unit * 0.999)
    assert 0 < below.sum() < other.sum()  # some capped, some not
    gap = B[below].astype(np.float64) - lower[below]  # one unit of rounding down, and a 1e-6 share
    assert gap.min() >= -1e-6 * B[below].max() and np.all(gap <= unit + 3e-6 * B[below])
    assert np.all(Q[other & ~below & (B > BOUND_Q16_TOP * unit * 1.001)] == BOUND_Q16_TOP)
    with pytest.raises(ValueError, match="bounds_unit"):
        quantize_histogram(X, C, bounds_out=Q)
