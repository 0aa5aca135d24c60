"""Explicit feature maps of the chi2 kernel: VLFeat's homogeneous kernel map and scikit-learn's sampler.

A linear SVM on mapped features approximates the additive chi2 kernel
``k(x, y) = sum_i 2 x_i y_i / (x_i + y_i)`` on histograms (Vedaldi and
Zisserman 2012).
"""

from __future__ import annotations

import math
import numbers
import threading

import numba
import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted, validate_data

#: VLFeat's PHOW application: ``vl_homkermap(hist, 1, 'kchi2', 'gamma', .5)``.
HOMKERMAP_ORDER = 1
HOMKERMAP_GAMMA = 0.5
#: VLFeat's table range (``vl/homkermap.c``, ``minExponent = -20``,
#: ``maxExponent = 8``): ``x = m 2^e`` with ``1 <= m < 2`` maps to zero when
#: ``e <= -20`` or ``e >= 8``, i.e. ``|x| < 2^-19`` or ``|x| >= 2^8``.
#: How :class:`HomogeneousKernelMap` evaluates the map: ``"table"`` (VLFeat's table, interpolated as VLFeat does:
#: the default) or ``"closed_form"`` (the formula itself, as models saved before the table kept their scores by).
HOMKERMAP_EVALUATIONS = ("table", "closed_form")
HOMKERMAP_MIN_EXPONENT = -20
HOMKERMAP_MAX_EXPONENT = 8
HOMKERMAP_MIN_VALUE = 2.0 ** (HOMKERMAP_MIN_EXPONENT + 1)
HOMKERMAP_MAX_VALUE = 2.0**HOMKERMAP_MAX_EXPONENT


def _chi2_spectrum(omega):
    # kappa(omega) = sech(pi omega), the spectrum of the chi2 kernel
    return 2.0 / (np.exp(np.pi * omega) + np.exp(-np.pi * omega))


def _smooth_spectrum(omega, period):
    """The chi2 spectrum smoothed by the rectangular window's sinc, as VLFeat sums it."""
    eps = 1e-2
    omega_range = 2.0 / (period * eps)
    d_omega = 2 * omega_range / (2 * 1024.0 + 1)
    grid = -omega_range + d_omega * np.arange(int(np.floor(2 * omega_range / d_omega + 1e-9)) + 1)
    win = np.sinc((period / 2.0) * grid / np.pi) * (period / (2 * np.pi))
    return max(float((win * _chi2_spectrum(grid + omega)).sum() * d_omega), 0.0)


def homkermap_constants(order=HOMKERMAP_ORDER, period=None):
    """Period, frequency step ``L``, spectrum samples and their frequencies of VLFeat's chi2 map.

    VLFeat's defaults (``vl/homkermap.c``): rectangular window, period
    ``8.80 sqrt(order + 4.44) - 12.6`` (7.93 for order 1, at least 1), the
    spectrum ``kappa(omega) = sech(pi omega)`` smoothed by the window's sinc
    and clipped at zero.  Component ``i`` samples it at ``omega = f_i L``
    with ``L = 2 pi / period``: ``f_0 = 0`` and ``f_i`` the next integer
    frequency after ``f_{i-1}`` at which the smoothed spectrum is positive
    (VLFeat skips zeros, up to ``f_i < 3 i``).

    Parameters
    ----------
    order : int
        Approximation order (default 1, VLFeat's PHOW application).
    period : float, optional
        Period of the map in units of ``log x`` (default: VLFeat's rule above).

    Returns
    -------
    period : float
        The period used.
    L : float
        Frequency step ``2 pi / period``.
    kappa : (order + 1,) float64
        Smoothed spectrum samples, >= 0.
    frequencies : (order + 1,) float64
        Their integer frequencies ``f_i`` (in units of ``L``).
    """
    order = int(order)
    if period is None:
        period = max(8.80 * math.sqrt(order + 4.44) - 12.6, 1.0)
    period = float(period)
    L = 2 * math.pi / period
    kappa = np.zeros(order + 1)
    freq = np.zeros(order + 1)
    i = j = 0
    while i <= order:  # VLFeat's loop: a zero sample is retried at the next frequency
        freq[i] = j
        kappa[i] = _smooth_spectrum(j * L, period)
        j += 1
        if kappa[i] > 0 or j >= 3 * i:
            i += 1
    return period, float(L), kappa, freq


def homkermap_table(order=HOMKERMAP_ORDER, gamma=HOMKERMAP_GAMMA, period=None):
    """VLFeat's table of the map: its values at ``numSubdivisions = 8 + 8 order`` mantissas per octave.

    ``vl_homogeneouskernelmap_new`` (``vl/homkermap.c``): for every exponent ``e`` from
    :data:`HOMKERMAP_MIN_EXPONENT` to :data:`HOMKERMAP_MAX_EXPONENT` and every mantissa
    ``m = 1, 1 + 1/S, 1 + 2/S, ...`` (``S = numSubdivisions``, the steps added up in float64 as VLFeat
    does), the ``2 order + 1`` values at ``x = m 2^e``: ``sqrt(L x^gamma kappa_0)`` and
    ``sqrt(2 L x^gamma kappa_i) (cos, sin)(f_i L log x)`` (:func:`homkermap_constants`), in float64.

    Parameters
    ----------
    order : int
        Approximation order (default 1).
    gamma : float
        Homogeneity degree (default 0.5).
    period : float, optional
        Period of the map (default: VLFeat's rule).

    Returns
    -------
    table : ((MAX_EXPONENT - MIN_EXPONENT + 1) S, 2 order + 1) float64
        Row ``(e - MIN_EXPONENT) S + i``: the map at mantissa ``i`` of exponent ``e``.
    n_subdivisions : int
        ``S = 8 + 8 order``.
    """
    order = int(order)
    _, L, kappa, freq = homkermap_constants(order, period)
    n_sub = 8 + 8 * order
    sub = 1.0 / n_sub
    rows = []
    for e in range(HOMKERMAP_MIN_EXPONENT, HOMKERMAP_MAX_EXPONENT + 1):
        mantissa = 1.0
        for _ in range(n_sub):
            x = math.ldexp(mantissa, e)
            lxg = L * math.pow(x, gamma)
            llog = L * math.log(x)
            row = [math.sqrt(lxg * kappa[0])]
            for j in range(1, order + 1):
                s = math.sqrt(2.0 * lxg * kappa[j])
                row += [s * math.cos(freq[j] * llog), s * math.sin(freq[j] * llog)]
            rows.append(row)
            mantissa += sub
    return np.array(rows, np.float64), n_sub


class HomogeneousKernelMap(TransformerMixin, BaseEstimator):
    """Explicit feature map of the chi2 kernel (Vedaldi and Zisserman 2012), as VLFeat's ``vl_homkermap``.

    Each input value ``x`` becomes ``2 * order + 1`` values,
    ``sign(x) sqrt(L |x|^gamma kappa_0)`` and
    ``sign(x) sqrt(2 L |x|^gamma kappa_i) (cos, sin)(f_i L log |x|)`` for
    ``i = 1..order`` (:func:`homkermap_constants`), so that dot products of
    mapped non-negative vectors approximate the additive ``gamma``-homogeneous
    chi2 kernel ``sum_d (x_d y_d)^(gamma/2) 2 sqrt(x_d y_d) / (x_d + y_d)``
    (``2 x y / (x + y)`` per dimension for ``gamma = 1``).  Defaults are
    VLFeat's PHOW application's: order 1, gamma 0.5, rectangular window.
    The map is evaluated as VLFeat evaluates it
    (``vl_homogeneouskernelmap_evaluate_f``): linear interpolation in the
    mantissa between the two nearest entries of its table
    (:func:`homkermap_table`, ``8 + 8 order`` entries per octave), in
    float64, rounded once to float32, so that the values are VLFeat's to
    float32 rounding (the closed form differs from them by up to 1e-3,
    relative, between the table's entries).  The table lookup costs a few
    nanoseconds a value, where the closed form (a power, a logarithm, a
    cosine and a sine) cost about 80: this map runs on every chunk of every
    epoch of out-of-core training.  Values with ``|x| < 2^-19`` or
    ``|x| >= 2^8`` map to zero as in VLFeat (:data:`HOMKERMAP_MIN_VALUE`,
    :data:`HOMKERMAP_MAX_VALUE`).

    The output keeps the inputs in blocks: columns ``(2 order + 1) d ...``
    belong to input ``d``.  float32 in and out.

    Parameters
    ----------
    order : int
        Approximation order (default 1: 3 outputs per input).
    gamma : float
        Homogeneity degree (default 0.5).
    period : float, optional
        Period of the map (default: VLFeat's rule for the rectangular window).
    evaluation : {"table", "closed_form"}
        ``"table"`` (default): VLFeat's table and interpolation, as above; ``"closed_form"``: the formula
        itself (within 1e-3 of VLFeat's values between the table's entries), which models saved before
        0.3.0 were trained with and are loaded with, so that they keep their scores.

    Attributes
    ----------
    period_ : float
        Period of the map used.
    L_ : float
        Frequency step ``2 pi / period_``.
    kappa_ : (order + 1,) float64
        The smoothed spectrum samples.
    frequencies_ : (order + 1,) float64
        Their integer frequencies.
    table_ : (n_exponents * n_subdivisions_, 2 order + 1) float64
        VLFeat's table (:func:`homkermap_table`).
    n_subdivisions_ : int
        Table entries per octave, ``8 + 8 order``.
    n_features_in_ : int
        Input dimension ``d``.
    """

    def __init__(self, order=HOMKERMAP_ORDER, gamma=HOMKERMAP_GAMMA, period=None, evaluation="table"):
        self.order = order
        self.gamma = gamma
        self.period = period
        self.evaluation = evaluation

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float32"]
        return tags

    def _check_params(self):
        if self.evaluation not in HOMKERMAP_EVALUATIONS:
            raise ValueError(f"evaluation must be one of {HOMKERMAP_EVALUATIONS}, got {self.evaluation!r}")
        if not isinstance(self.order, numbers.Integral) or int(self.order) < 0:
            raise ValueError(f"order must be an integer >= 0, got {self.order!r}")
        if not (isinstance(self.gamma, numbers.Real) and float(self.gamma) > 0):
            raise ValueError(f"gamma must be positive, got {self.gamma!r}")
        if self.period is not None and not (isinstance(self.period, numbers.Real) and float(self.period) > 0):
            raise ValueError(f"period must be positive or None, got {self.period!r}")

    def fit(self, X, y=None):
        """Check the parameters and compute VLFeat's constants; ``X`` only gives ``n_features_in_``.

        Parameters
        ----------
        X : (n, d) array
            Any features of the right width (nothing is learnt from the values).
        y : None
            Ignored.

        Returns
        -------
        HomogeneousKernelMap
            ``self``, fitted.

        Raises
        ------
        ValueError
            If ``order``, ``gamma`` or ``period`` is out of range.
        """
        self._check_params()
        validate_data(self, X, dtype=np.float32)
        self.period_, self.L_, self.kappa_, self.frequencies_ = homkermap_constants(self.order, self.period)
        self.table_, self.n_subdivisions_ = homkermap_table(self.order, self.gamma, self.period)
        return self

    @property
    def dim_per_input(self) -> int:
        """Outputs per input value, ``2 order + 1``."""
        return 2 * int(self.order) + 1

    def transform(self, X):
        """Map each value of ``X`` to its ``2 order + 1`` features.

        Parameters
        ----------
        X : (n, d) array
            Histograms (non-negative for the kernel's meaning; a negative value maps with its sign).

        Returns
        -------
        (n, d * (2 order + 1)) float32
            Input ``j``'s features in columns ``j (2 order + 1)`` onwards; zero where
            ``|x| < 2^-19`` or ``|x| >= 2^8``.
        """
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float32, reset=False, order="C")
        return self._transform_into(X, np.empty((X.shape[0], X.shape[1] * self.dim_per_input), np.float32))

    def _transform_into(self, X, out):
        """:meth:`transform` of checked float32 C-ordered ``X`` written into ``out`` (every entry), returned.

        SDCA maps every chunk of every epoch into one buffer this way: a fresh 37 MB output per chunk cost
        more in page faults (about 16 ms) than the map itself.
        """
        parallel = (
            X.shape[0] >= PARALLEL_MIN_ROWS
            and numba.get_num_threads() > 1
            and threading.current_thread() is threading.main_thread()
        )
        if self.evaluation == "closed_form":
            (_closed_form_kernel_parallel if parallel else _closed_form_kernel)(
                X,
                out,
                np.float32(self.gamma),
                np.float32(self.L_),
                self.kappa_.astype(np.float32),
                self.frequencies_.astype(np.float64),
                np.float32(HOMKERMAP_MIN_VALUE),
                np.float32(HOMKERMAP_MAX_VALUE),
            )
            return out
        n_sub = int(self.n_subdivisions_)
        (_homkermap_kernel_parallel if parallel else _homkermap_kernel)(
            X.view(np.uint32), out, self.table_, n_sub, n_sub & (n_sub - 1) == 0
        )
        return out

    def get_feature_names_out(self, input_features=None):
        """Names of the output features: ``<input>_x``, ``<input>_cos1``, ``<input>_sin1``, ...

        Parameters
        ----------
        input_features : sequence of str, optional
            Input names (default: those seen in ``fit``, else ``x0, x1, ...``).

        Returns
        -------
        (d * (2 order + 1),) ndarray of str
            One name per output column, in :meth:`transform`'s order.
        """
        from sklearn.utils.validation import _check_feature_names_in

        names = _check_feature_names_in(self, input_features)
        parts = ["x"] + [f"{t}{f}" for f in range(1, int(self.order) + 1) for t in ("cos", "sin")]
        return np.asarray([f"{n}_{p}" for n in names for p in parts], dtype=object)


@numba.njit(cache=True, fastmath=False, inline="always")
def _homkermap_row(bits, out_row, table, n_sub, pow2):  # pragma: no cover
    """One row, VLFeat's ``vl_homogeneouskernelmap_evaluate``: ``bits`` the float32 values' bit patterns.

    ``x = +-(1 + f) 2^e`` (``f`` the 23-bit fraction, exact); outside ``MIN_EXPONENT < e < MAX_EXPONENT``
    (zero, subnormals, infinities included) the outputs are zero; else entry ``k`` of octave ``e`` and the
    next (``k = floor(f S)``, with VLFeat's remainder ``r = f - k / S``: computed as VLFeat does, by
    subtracting ``1 / S`` until below it, where ``S`` is not a power of two) are interpolated,
    ``sign (v_k+1 - v_k) S r + v_k`` in float64.
    """
    D = table.shape[1]
    sub = 1.0 / n_sub
    for j in range(bits.shape[0]):
        b = bits[j]
        e = np.int64((b >> 23) & 0xFF) - 127
        base = j * D
        if e <= HOMKERMAP_MIN_EXPONENT or e >= HOMKERMAP_MAX_EXPONENT:
            for q in range(D):
                out_row[base + q] = 0.0
            continue
        rem = np.float64(b & 0x7FFFFF) * 2.0**-23
        if pow2:  # f S and f - k / S exact
            k = np.int64(rem * n_sub)
            rem -= k * sub
        else:
            k = 0
            while rem >= sub:
                rem -= sub
                k += 1
        r = (e - HOMKERMAP_MIN_EXPONENT) * n_sub + k
        sign = -1.0 if (b >> 31) != 0 else 1.0
        t = n_sub * rem
        for q in range(D):
            f1 = table[r, q]
            out_row[base + q] = np.float32(sign * ((table[r + 1, q] - f1) * t + f1))


@numba.njit(cache=True, parallel=False, fastmath=False)
def _homkermap_kernel(bits, out, table, n_sub, pow2):  # pragma: no cover
    for i in range(bits.shape[0]):
        _homkermap_row(bits[i], out[i], table, n_sub, pow2)


@numba.njit(cache=True, parallel=True, fastmath=False)
def _homkermap_kernel_parallel(bits, out, table, n_sub, pow2):  # pragma: no cover
    for i in numba.prange(bits.shape[0]):
        _homkermap_row(bits[i], out[i], table, n_sub, pow2)


@numba.njit(cache=True, fastmath=False, inline="always")
def _closed_form_row(x_row, out_row, gamma, L, kappa, freq, lo, hi):  # pragma: no cover
    """One row in closed form (``evaluation="closed_form"``, the map of 0.1-0.3.0-dev models): each value's
    ``2 order + 1`` features where ``lo <= |x| < hi``, zeros elsewhere.
    """
    order = kappa.shape[0] - 1
    D = 2 * order + 1
    for j in range(x_row.shape[0]):
        x = x_row[j]
        ax = abs(x)
        base = j * D
        if ax < lo or ax >= hi:
            for q in range(D):
                out_row[base + q] = 0.0
            continue
        sign = np.float32(1.0) if x >= 0 else np.float32(-1.0)
        lxg = L * ax**gamma
        llog = L * np.log(ax)
        out_row[base] = sign * np.sqrt(lxg * kappa[0])
        for f in range(1, order + 1):
            s = np.sqrt(2.0 * lxg * kappa[f])
            out_row[base + 2 * f - 1] = sign * s * np.cos(freq[f] * llog)
            out_row[base + 2 * f] = sign * s * np.sin(freq[f] * llog)


@numba.njit(cache=True, parallel=False, fastmath=False)
def _closed_form_kernel(X, out, gamma, L, kappa, freq, lo, hi):  # pragma: no cover
    for i in range(X.shape[0]):
        _closed_form_row(X[i], out[i], gamma, L, kappa, freq, lo, hi)


@numba.njit(cache=True, parallel=True, fastmath=False)
def _closed_form_kernel_parallel(X, out, gamma, L, kappa, freq, lo, hi):  # pragma: no cover
    for i in numba.prange(X.shape[0]):
        _closed_form_row(X[i], out[i], gamma, L, kappa, freq, lo, hi)


#: Rows from which :meth:`HomogeneousKernelMap.transform` splits the rows between Numba's threads
#: (``numba.get_num_threads()``: the training's ``n_jobs`` inside SDCA, which maps every chunk of every
#: epoch; each row is mapped alone, so the result is the same bits with any number of threads).  Fewer
#: rows (one image at prediction) stay on one thread, where starting the threads would cost more than it
#: saves; so do calls from threads other than the main one (joblib's threads, SGD's), since Numba's
#: fallback threading layer (workqueue) must not be entered from two threads at once.
PARALLEL_MIN_ROWS = 64


KERNEL_MAPS = ("homkermap", "additive_chi2", "none")


def make_kernel_map(name: str | None, n_features: int | None = None):
    """The kernel map called ``name``, fitted for ``n_features`` inputs when given.

    ``"homkermap"`` (VLFeat's chi2 map), ``"additive_chi2"`` (scikit-learn's
    ``AdditiveChi2Sampler``, sample_steps 2) or ``"none"`` (returns None).
    Neither map learns anything from data: fitting checks the parameters,
    computes the constants and records ``n_features_in_``, so a map can be
    fitted for a feature dimension without the features.

    Parameters
    ----------
    name : {"homkermap", "additive_chi2", "none"} or None
        The map (a name of :data:`KERNEL_MAPS`).
    n_features : int, optional
        Input dimension to fit the map for (default: left unfitted).

    Returns
    -------
    HomogeneousKernelMap or AdditiveChi2Map or None
        The map with default parameters; None for ``"none"``.

    Raises
    ------
    ValueError
        If ``name`` is unknown.
    """
    if name in (None, "none"):
        return None
    if name == "homkermap":
        m = HomogeneousKernelMap()
    elif name == "additive_chi2":
        m = AdditiveChi2Map()
    else:
        raise ValueError(f"kernel_map must be one of {KERNEL_MAPS}, got {name!r}")
    if n_features is not None:
        m.fit(np.zeros((1, int(n_features)), np.float32))
    return m


class AdditiveChi2Map(TransformerMixin, BaseEstimator):
    """scikit-learn's ``AdditiveChi2Sampler`` (2 sample steps: 3 outputs per input), float32 out.

    Output in ``2 sample_steps - 1`` blocks of ``d`` columns (sqrt, cos,
    sin, ...), unlike :class:`HomogeneousKernelMap`'s side-by-side layout.
    Inputs must be non-negative.

    Parameters
    ----------
    sample_steps : int
        Frequency samples (default 2), as ``AdditiveChi2Sampler``.
    sample_interval : float, optional
        Sampling interval (default: scikit-learn's for ``sample_steps``).

    Attributes
    ----------
    sampler_ : AdditiveChi2Sampler
        The fitted scikit-learn sampler.
    n_features_in_ : int
        Input dimension ``d``.
    """

    def __init__(self, sample_steps=2, sample_interval=None):
        self.sample_steps = sample_steps
        self.sample_interval = sample_interval

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.positive_only = True
        tags.transformer_tags.preserves_dtype = ["float32"]
        return tags

    def fit(self, X, y=None):
        """Check the input and fit scikit-learn's sampler (which learns nothing from the values).

        Parameters
        ----------
        X : (n, d) array
            Non-negative features.
        y : None
            Ignored.

        Returns
        -------
        AdditiveChi2Map
            ``self``, fitted.
        """
        from sklearn.kernel_approximation import AdditiveChi2Sampler

        X = validate_data(self, X, dtype=np.float32, ensure_non_negative=True)
        self.sampler_ = AdditiveChi2Sampler(sample_steps=self.sample_steps, sample_interval=self.sample_interval).fit(X)
        return self

    def transform(self, X):
        """Map ``X`` with the sampler, blocks of ``d`` columns (sqrt, cos, sin, ...).

        Parameters
        ----------
        X : (n, d) array
            Non-negative features.

        Returns
        -------
        (n, d * (2 sample_steps - 1)) float32
            The mapped features.
        """
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float32, reset=False, ensure_non_negative=True)
        return self.sampler_.transform(X).astype(np.float32, copy=False)
