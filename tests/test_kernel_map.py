"""The chi2 kernel maps against VLFeat's own ``vl_homkermap`` values (libvl, and tabulated)."""

import ctypes

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError

from conftest import require_peer
from phow_baseline.classification.kernel_map import (
    HOMKERMAP_MAX_VALUE,
    HOMKERMAP_MIN_VALUE,
    AdditiveChi2Map,
    HomogeneousKernelMap,
    homkermap_constants,
    make_kernel_map,
)

f32 = np.float32

# VLFeat 0.9.21's vl_homogeneouskernelmap_evaluate_d (chi2, rectangular window, default
# period), read from libvl through ctypes at table nodes (x = 2^e: no interpolation).
# Rows: x; columns: the 2 order + 1 outputs.
VLFEAT_ORDER1_GAMMA05 = {
    1.0: [0.809014194474343, 0.5820673411764811, 0.0],
    0.25: [0.5720594229889803, 0.1870214113137659, -0.3666390412140205],
    2.0**-19: [0.03006516988147137, -0.01138163047853425, 0.01839477108588365],
    2.0**-5: [0.34014856801142324, -0.22599394454205668, -0.09391008377044922],
    4.0: [1.1441188459779605, 0.3740428226275318, 0.733278082428041],
}
VLFEAT_ORDER2_GAMMA1 = {
    1.0: [7.5740193622897678e-01, 6.2270664266068554e-01, 0.0, 1.6149075575548655e-01, 0.0],
    0.25: [
        3.7870096811448839e-01,
        1.9474994695749401e-01,
        -2.4292663267638842e-01,
        -1.7563088636988845e-02,
        -7.8812143519567002e-02,
    ],
    2.0**-19: [
        1.0460235257643174e-03,
        -5.1964417488310278e-04,
        -6.8525194848125415e-04,
        -6.0172208878511105e-05,
        2.1475929359348998e-04,
    ],
}


def _ours(x, order=1, gamma=0.5, period=None):
    x = np.asarray(x, np.float32)[None]
    return HomogeneousKernelMap(order, gamma, period).fit(x).transform(x).reshape(x.shape[1], -1)


@pytest.mark.parametrize("order,gamma,table", [(1, 0.5, VLFEAT_ORDER1_GAMMA05), (2, 1.0, VLFEAT_ORDER2_GAMMA1)])
def test_tabulated_vlfeat_values(order, gamma, table):
    x = np.array(list(table))
    want = np.array(list(table.values()))
    np.testing.assert_allclose(_ours(x, order, gamma), want, rtol=2e-6, atol=2e-7 * np.abs(want).max())


def test_zero_outside_vlfeats_table_range():
    """VLFeat zeroes x = m 2^e (1 <= m < 2) with e <= minExponent = -20 or e >= maxExponent = 8:
    |x| < 2^-19 and |x| >= 256.  (Before the fix [2^-20, 2^-19) was mapped.)"""
    assert HOMKERMAP_MIN_VALUE == 2.0**-19 and HOMKERMAP_MAX_VALUE == 256.0
    below = [
        0.0,
        2.0**-21,
        2.0**-20,
        1.5 * 2.0**-20,
        np.nextafter(f32(2.0**-19), f32(0)),
        256.0,
        300.0,
        -(2.0**-20),
        -256.0,
    ]
    inside = [
        2.0**-19,
        np.nextafter(f32(2.0**-19), f32(1)),
        1e-3,
        1.0,
        np.nextafter(f32(256), f32(0)),
        -(2.0**-19),
        -1.0,
    ]
    assert not _ours(below).any()
    assert (np.abs(_ours(inside))[:, 0] > 0).all()
    # odd in x: VLFeat maps -x to -psi(x)
    np.testing.assert_array_equal(_ours([-0.25]), -_ours([0.25]))
    # a 1024-px image's pyramid: one count among ~850,000 per level is below 2^-19 and maps to zero
    h = np.float32(1.0 / (2 * 850_000))
    assert not _ours([h]).any()


def _libvl_homkermap():
    """VLFeat's ``vl_homkermap`` from libvl through ctypes (a peer: tests/conftest.py skips or fails without it)."""
    lib = require_peer("libvl")
    new = lib.vl_homogeneouskernelmap_new
    new.restype = ctypes.c_void_p
    new.argtypes = [ctypes.c_int, ctypes.c_double, ctypes.c_uint64, ctypes.c_double, ctypes.c_int]
    ev = lib.vl_homogeneouskernelmap_evaluate_d
    ev.restype = None
    ev.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_double), ctypes.c_uint64, ctypes.c_double]
    delete = lib.vl_homogeneouskernelmap_delete
    delete.restype = None
    delete.argtypes = [ctypes.c_void_p]
    VL_CHI2, VL_RECTANGULAR = 1, 1  # vl/homkermap.h

    def vl_homkermap(x, order, gamma, period=-1.0):
        h = new(VL_CHI2, gamma, order, period, VL_RECTANGULAR)  # period < 0: VLFeat's default
        out = np.zeros((len(x), 2 * order + 1))
        try:
            for i, v in enumerate(x):
                ev(h, out[i].ctypes.data_as(ctypes.POINTER(ctypes.c_double)), 1, float(v))
        finally:
            delete(h)
        return out

    return vl_homkermap


@pytest.mark.peer
@pytest.mark.parametrize("order,period", [(1, None), (2, None), (3, None), (2, 5.0)])
@pytest.mark.parametrize("gamma", [0.5, 1.0])
def test_matches_libvl(order, period, gamma):
    """Against VLFeat's C code: the same zeros, and everywhere (at VLFeat's table nodes, between them,
    at the edges of its range) the same values to float32 rounding: ours is VLFeat's table, interpolated
    as VLFeat does (order 2: 24 entries an octave, VLFeat's remainder by repeated subtraction).
    (Period 5, order 2: the spectrum is zero at frequency 2, so VLFeat samples 0, 1, 3.)"""
    vl_homkermap = _libvl_homkermap()
    rng = np.random.default_rng(order)
    n_sub = 8 + 8 * order  # VLFeat's numSubdivisions
    nodes = np.array([np.ldexp(1 + i / n_sub, e) for e in range(-19, 8) for i in range(n_sub)], np.float32)
    between = np.exp(rng.uniform(np.log(2.0**-19), np.log(256.0), 3000)).astype(np.float32)
    edges = np.array(
        [
            0,
            2.0**-21,
            2.0**-20,
            np.nextafter(f32(2.0**-19), f32(0)),
            2.0**-19,
            255.0,
            np.nextafter(f32(256), f32(0)),
            256.0,
            1e4,
            -0.25,
            -(2.0**-20),
        ],
        np.float32,
    )
    worst = 0.0
    for xs in (nodes, between, edges):
        want = vl_homkermap(xs.astype(np.float64), order, gamma, -1.0 if period is None else period)
        got = _ours(xs, order, gamma, period)
        zero = (want == 0).all(1)
        assert ((got == 0).all(1) == zero).all()
        # float32 rounding of each output: half an ulp of the largest, relative to the vector's norm
        err = np.abs(got - want).max(1)[~zero] / np.abs(want).max(1)[~zero]
        worst = max(worst, float(err.max()))
    assert worst <= 2.0**-24 * 1.01, (order, gamma, worst)


def test_constants_follow_vlfeats_rules():
    period, L, kappa, freq = homkermap_constants(1)
    assert abs(period - (8.80 * np.sqrt(5.44) - 12.6)) < 1e-12 and abs(L - 2 * np.pi / period) < 1e-15
    assert freq.tolist() == [0, 1] and (kappa > 0).all()
    # an explicit period is used as given; a tiny default is clipped at 1 (VLFeat's VL_MAX(period, 1))
    assert homkermap_constants(1, period=3.0)[0] == 3.0
    hk = HomogeneousKernelMap(order=2, period=5.0).fit(np.ones((1, 2)))
    # the smoothed spectrum is zero at frequency 2 for this period: VLFeat moves on to 3
    assert hk.period_ == 5.0 and hk.frequencies_.tolist() == [0, 1, 3] and (hk.kappa_ > 0).all()


def test_estimator_contract():
    X = np.random.default_rng(0).random((4, 5)).astype(np.float32)
    for m in (HomogeneousKernelMap(), AdditiveChi2Map()):
        with pytest.raises(NotFittedError):
            m.transform(X)  # no fitting inside transform
        m.fit(X)
        assert m.n_features_in_ == 5 and m.transform(X).shape == (4, 15) and m.transform(X).dtype == np.float32
        with pytest.raises(ValueError, match="features"):
            m.transform(X[:, :3])
        bad = X.copy()
        bad[0, 0] = np.nan
        with pytest.raises(ValueError, match="NaN"):
            m.transform(bad)
    with pytest.raises(ValueError, match="order"):
        HomogeneousKernelMap(order=-1).fit(X)
    with pytest.raises(ValueError, match="gamma"):
        HomogeneousKernelMap(gamma=0).fit(X)
    with pytest.raises(ValueError, match="Negative values"):
        AdditiveChi2Map().fit(-X)
    fitted = make_kernel_map("homkermap", n_features=5)
    np.testing.assert_array_equal(fitted.transform(X), HomogeneousKernelMap().fit(X).transform(X))
    assert not hasattr(make_kernel_map("homkermap"), "kappa_")
    assert make_kernel_map("none", 5) is None
    with pytest.raises(ValueError, match="kernel_map must be"):
        make_kernel_map("rbf")


def test_many_rows_are_mapped_on_numba_threads_to_the_same_bits(monkeypatch):
    """From PARALLEL_MIN_ROWS rows the map runs on Numba's threads (SDCA maps every chunk of every epoch):
    the same bits as one thread, row by row, and as the rows mapped one at a time; off the main thread it
    stays serial."""
    import threading

    import numba

    from phow_baseline.classification import kernel_map

    rng = np.random.default_rng(3)
    X = rng.gamma(0.3, 1.0, (kernel_map.PARALLEL_MIN_ROWS + 37, 50)).astype(np.float32)
    X[X < 0.3] = 0
    X[0, :3] = [-0.5, 2.0**-21, 300.0]
    m = HomogeneousKernelMap().fit(X)
    calls = []
    real = kernel_map._homkermap_kernel_parallel
    monkeypatch.setattr(kernel_map, "_homkermap_kernel_parallel", lambda *a: calls.append(1) or real(*a))
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        threaded = m.transform(X)
        numba.set_num_threads(1)
        serial = m.transform(X)
    finally:
        numba.set_num_threads(before)
    assert calls == ([1] if numba.config.NUMBA_NUM_THREADS > 1 else [])
    np.testing.assert_array_equal(threaded, serial)
    np.testing.assert_array_equal(threaded, np.vstack([m.transform(X[i : i + 1]) for i in range(len(X))]))
    out = []
    t = threading.Thread(target=lambda: out.append(m.transform(X)))
    t.start()
    t.join()
    np.testing.assert_array_equal(out[0], serial)
    assert len(calls) <= 1


def test_closed_form_evaluation_for_models_saved_before_the_table():
    """``evaluation="closed_form"``: the formula itself, as models saved before 0.3.0 were trained on; within
    VLFeat's interpolation error of the table (1e-3 relative) but not its values; the same zeros."""
    rng = np.random.default_rng(3)
    x = np.exp(rng.uniform(np.log(2.0**-19), np.log(256.0), (4, 500))).astype(np.float32)
    x[0, :5] = [0.0, 2.0**-20, 300.0, -0.25, 1.0]
    table = HomogeneousKernelMap().fit(x).transform(x)
    closed = HomogeneousKernelMap(evaluation="closed_form").fit(x).transform(x)
    assert not np.array_equal(table, closed)
    np.testing.assert_array_equal(table == 0, closed == 0)
    rel = np.abs(table - closed).max() / np.abs(table).max()
    assert 0 < rel < 1e-3
    # the closed form at x = 1: sqrt(L kappa_0), sqrt(2 L kappa_1) cos 0, 0
    period, L, kappa, _ = homkermap_constants(1)
    one = HomogeneousKernelMap(evaluation="closed_form").fit(x).transform(np.ones((1, 500), np.float32))[0, :3]
    np.testing.assert_allclose(one, [np.sqrt(L * kappa[0]), np.sqrt(2 * L * kappa[1]), 0.0], rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="evaluation"):
        HomogeneousKernelMap(evaluation="spline").fit(x)
