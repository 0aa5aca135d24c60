"""Probabilities from scores, operating points, and how well probabilities are calibrated.

Three small estimators, each fitted on the patient-wise validation carve and
stored as plain arrays (``to_arrays`` / ``from_arrays``, saved with the model
as ``.npz`` data, never pickled):

* :class:`PlattCalibrator`: per class, ``p = sigmoid(a * s + b)`` fitted to
  the scores ``s`` of one class (Platt 1999), with Platt's smoothed targets
  ``(N+ + 1) / (N+ + 2)`` for positives and ``1 / (N- + 2)`` for negatives,
  which keep the fit finite when the classes separate.  The slope ``a`` is
  kept strictly positive, so the map is strictly increasing and the ranking
  (hence every AUROC) is unchanged.
* :class:`TemperatureScaler`: for the CNN's logits ``z``, one scalar ``T``
  with ``p = sigmoid(z / T)``, minimising the binary cross-entropy over all
  classes (Guo et al. 2017, "On calibration of modern neural networks").
* :class:`OperatingPoints`: per class, the threshold at which a probability
  becomes a 0/1 decision, chosen on validation by Youden's J (maximum of
  sensitivity + specificity - 1) or as the highest threshold whose
  sensitivity is at least ``min_sensitivity``.

Why not ``sklearn.calibration.CalibratedClassifierCV(FrozenEstimator(...))``:
it calibrates a single-output (or multi-class) classifier, while the PHOW
model is 14 independent one-vs-rest SVMs fitted out of core, scored through a
feature store; the fit it would run per class is the two-parameter Platt fit
done here (scikit-learn's own ``_SigmoidCalibration``, a private class, is
used only in a test as an independent check of this fit).

The measures: :func:`brier_scores`, :func:`expected_calibration_error` and
:func:`reliability_curve` (equal-width probability bins, :data:`N_BINS` of
them), and :func:`operating_point_metrics` (sensitivity, specificity, PPV and
NPV at the thresholds, with bootstrap percentile intervals and the number of
resamples on which each is defined).

One concept at this length: turning scores into probabilities and decisions,
and measuring them.
"""

from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np
from scipy.optimize import minimize, minimize_scalar
from scipy.special import expit, log_expit
from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError

#: Equal-width bins of the expected calibration error and the reliability diagrams
#: (10, the usual choice since Naeini et al. 2015 and Guo et al. 2017).
N_BINS = 10

#: The rules :class:`OperatingPoints` knows.
RULES = ("youden", "sensitivity")


def _as_2d(x, name, dtype=np.float64) -> np.ndarray:
    a = np.asarray(x, dtype=dtype)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2:
        raise ValueError(f"{name} must be (n,) or (n, n_classes), got shape {a.shape}")
    return a


def _check_xy(scores, y):
    s = _as_2d(scores, "scores")
    if not np.isfinite(s).all():
        raise ValueError(f"scores contain {int((~np.isfinite(s)).sum())} non-finite value(s)")
    if y is None:
        return s, None
    yy = _as_2d(y, "y")
    if yy.shape != s.shape:
        raise ValueError(f"scores {s.shape} and y {yy.shape} differ in shape")
    if not np.isin(yy, (0, 1)).all():
        raise ValueError("y must hold 0/1 values")
    return s, yy.astype(bool)


def _check_fitted(est, attr):
    if not hasattr(est, attr):
        raise NotFittedError(f"this {type(est).__name__} is not fitted yet; call fit first")


# --------------------------------------------------------------------------
# Platt scaling
# --------------------------------------------------------------------------

def fit_sigmoid(s: np.ndarray, y: np.ndarray, targets: str = "platt", min_slope: float = 1e-3):
    """Fit ``p = sigmoid(a * s + b)`` to the scores of one class.

    Minimises the cross-entropy ``-sum t log p + (1 - t) log(1 - p)`` over
    ``(a, b)`` (L-BFGS with the analytic gradient, on standardised scores),
    where ``t`` are Platt's targets ``(N+ + 1) / (N+ + 2)`` and
    ``1 / (N- + 2)`` (``targets="platt"``) or the labels (``"binary"``).

    Parameters
    ----------
    s : (n,) float
        Scores (e.g. SVM margins) of the validation images.
    y : (n,) bool
        Whether each image has the finding.
    targets : {"platt", "binary"}
    min_slope : float
        Smallest slope kept, in units of ``1 / std(s)``: a fitted slope below
        it (scores that do not rank the validation images, or a class with
        no positive) is replaced by it and ``b`` refitted alone, so the map
        stays strictly increasing.

    Returns
    -------
    a, b : float
    clipped : bool
        Whether the slope was raised to ``min_slope``.
    """
    s = np.asarray(s, np.float64)
    y = np.asarray(y, bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if targets == "platt":
        t = np.where(y, (n_pos + 1.0) / (n_pos + 2.0), 1.0 / (n_neg + 2.0))
    elif targets == "binary":
        t = y.astype(np.float64)
    else:
        raise ValueError(f"targets must be 'platt' or 'binary', got {targets!r}")
    mu = float(s.mean()) if len(s) else 0.0
    sd = float(s.std()) if len(s) > 1 else 0.0
    sd = sd if sd > 0 else 1.0
    z = (s - mu) / sd

    def nll(p):
        u = p[0] * z + p[1]
        # -[t log sigmoid(u) + (1 - t) log sigmoid(-u)], stable for any u
        f = -(t * log_expit(u) + (1 - t) * log_expit(-u)).sum()
        r = expit(u) - t
        return f, np.array([(r * z).sum(), r.sum()])

    prior = (t.mean() if len(t) else 0.5)
    b0 = float(np.log(prior / (1 - prior))) if 0 < prior < 1 else 0.0
    res = minimize(nll, np.array([1.0, b0]), jac=True, method="L-BFGS-B")
    a_z, b_z = float(res.x[0]), float(res.x[1])
    clipped = not a_z >= min_slope
    if clipped:
        a_z = min_slope

        def nll_b(b):
            u = a_z * z + b
            return -(t * log_expit(u) + (1 - t) * log_expit(-u)).sum()

        b_z = float(minimize_scalar(nll_b, bounds=(-50, 50), method="bounded").x)
    # back to the raw scores: a_z * (s - mu) / sd + b_z
    return a_z / sd, b_z - a_z * mu / sd, clipped


class PlattCalibrator(BaseEstimator):
    """Per-class Platt scaling: ``p_j = sigmoid(a_j * s_j + b_j)``.

    Parameters
    ----------
    targets : {"platt", "binary"}, default "platt"
        Platt's smoothed targets (default, Platt 1999) or the raw labels.
    min_slope : float, default 1e-3
        Smallest slope, in units of ``1 / std`` of the class's validation
        scores (see :func:`fit_sigmoid`); keeps the map strictly increasing.

    Attributes
    ----------
    a_, b_ : (n_classes,) float
        Slope (> 0) and intercept per class.
    n_positive_, n_negative_ : (n_classes,) int
        Validation counts the fit saw.
    clipped_ : (n_classes,) bool
        Classes whose fitted slope was raised to ``min_slope`` (warned with a count).
    """

    def __init__(self, targets: str = "platt", min_slope: float = 1e-3):
        self.targets = targets
        self.min_slope = min_slope

    def fit(self, scores, y):
        """Fit on validation ``scores`` and 0/1 labels ``y``, both (n, n_classes)."""
        if self.targets not in ("platt", "binary"):
            raise ValueError(f"targets must be 'platt' or 'binary', got {self.targets!r}")
        if not (np.isfinite(self.min_slope) and self.min_slope > 0):
            raise ValueError(f"min_slope must be a positive number, got {self.min_slope!r}")
        s, yy = _check_xy(scores, y)
        if len(s) == 0:
            raise ValueError("cannot fit a calibration on zero images")
        k = s.shape[1]
        a, b, clipped = np.empty(k), np.empty(k), np.zeros(k, bool)
        for j in range(k):
            a[j], b[j], clipped[j] = fit_sigmoid(s[:, j], yy[:, j], self.targets, self.min_slope)
        self.a_, self.b_, self.clipped_ = a, b, clipped
        self.n_positive_ = yy.sum(0).astype(np.int64)
        self.n_negative_ = (~yy).sum(0).astype(np.int64)
        if clipped.any():
            warnings.warn(f"Platt scaling: {int(clipped.sum())} of {k} class(es) got a slope <= 0 on the validation "
                          f"scores (no positive, or scores that do not rank them); their slope is set to the minimum "
                          f"so that the ranking is kept", RuntimeWarning, stacklevel=2)
        return self

    def predict_proba(self, scores) -> np.ndarray:
        """Probabilities ``sigmoid(a * s + b)``, same shape as ``scores`` (n, n_classes)."""
        _check_fitted(self, "a_")
        s, _ = _check_xy(scores, None)
        if s.shape[1] != len(self.a_):
            raise ValueError(f"scores have {s.shape[1]} columns, the calibration {len(self.a_)}")
        return expit(s * self.a_ + self.b_)

    transform = predict_proba

    def to_arrays(self) -> dict:
        """The fitted state as arrays (for an ``.npz`` in the model directory)."""
        _check_fitted(self, "a_")
        return {"a": self.a_, "b": self.b_, "clipped": self.clipped_, "n_positive": self.n_positive_,
                "n_negative": self.n_negative_}

    @classmethod
    def from_arrays(cls, arrays: dict, **params) -> "PlattCalibrator":
        """A fitted calibrator from :meth:`to_arrays`'s output (checks shapes and slopes)."""
        self = cls(**params)
        try:
            a = np.asarray(arrays["a"], np.float64)
            b = np.asarray(arrays["b"], np.float64)
        except KeyError as exc:
            raise ValueError(f"Platt calibration arrays lack {exc.args[0]!r}") from None
        if a.ndim != 1 or a.shape != b.shape:
            raise ValueError(f"Platt calibration: a {a.shape} and b {b.shape} must be equal 1-d arrays")
        if not (np.isfinite(a).all() and np.isfinite(b).all() and (a > 0).all()):
            raise ValueError("Platt calibration: slopes must be finite and > 0, intercepts finite")
        k = len(a)
        self.a_, self.b_ = a, b
        self.clipped_ = np.asarray(arrays.get("clipped", np.zeros(k, bool)), bool)
        self.n_positive_ = np.asarray(arrays.get("n_positive", np.zeros(k, np.int64)), np.int64)
        self.n_negative_ = np.asarray(arrays.get("n_negative", np.zeros(k, np.int64)), np.int64)
        return self


# --------------------------------------------------------------------------
# Temperature scaling
# --------------------------------------------------------------------------

class TemperatureScaler(BaseEstimator):
    """One temperature for all classes: ``p = sigmoid(z / T)``.

    ``T`` minimises the mean binary cross-entropy of the validation logits
    (a bounded one-dimensional search over ``log T`` in
    ``[log t_min, log t_max]``).  ``T > 0``, so the ranking is unchanged.

    Parameters
    ----------
    t_min, t_max : float
        Search bounds for ``T`` (default 0.05 and 20).

    Attributes
    ----------
    temperature_ : float
    nll_before_, nll_after_ : float
        Mean cross-entropy (nats per label) at ``T = 1`` and at ``temperature_``.
    """

    def __init__(self, t_min: float = 0.05, t_max: float = 20.0):
        self.t_min = t_min
        self.t_max = t_max

    @staticmethod
    def _nll(z, y, T):
        u = z / T
        return float(-(np.where(y, log_expit(u), log_expit(-u))).mean())

    def fit(self, logits, y):
        if not (0 < self.t_min < self.t_max and np.isfinite(self.t_max)):
            raise ValueError(f"need 0 < t_min < t_max, got {self.t_min!r}, {self.t_max!r}")
        z, yy = _check_xy(logits, y)
        if z.size == 0:
            raise ValueError("cannot fit a temperature on zero images")
        res = minimize_scalar(lambda lt: self._nll(z, yy, np.exp(lt)), bounds=(np.log(self.t_min),
                              np.log(self.t_max)), method="bounded", options={"xatol": 1e-6})
        self.temperature_ = float(np.exp(res.x))
        self.nll_before_ = self._nll(z, yy, 1.0)
        self.nll_after_ = self._nll(z, yy, self.temperature_)
        return self

    def predict_proba(self, logits) -> np.ndarray:
        _check_fitted(self, "temperature_")
        z, _ = _check_xy(logits, None)
        return expit(z / self.temperature_)

    transform = predict_proba

    def to_arrays(self) -> dict:
        _check_fitted(self, "temperature_")
        return {"temperature": np.float64(self.temperature_)}

    @classmethod
    def from_arrays(cls, arrays: dict, **params) -> "TemperatureScaler":
        self = cls(**params)
        try:
            T = float(np.asarray(arrays["temperature"]))
        except KeyError:
            raise ValueError("temperature arrays lack 'temperature'") from None
        if not (np.isfinite(T) and T > 0):
            raise ValueError(f"temperature must be finite and > 0, got {T}")
        self.temperature_ = T
        return self


# --------------------------------------------------------------------------
# Operating points
# --------------------------------------------------------------------------

def _roc_points(s, y):
    """Distinct thresholds (descending) and the TPR/FPR of ``s >= threshold`` at each."""
    order = np.argsort(-s, kind="mergesort")
    ss, yy = s[order], y[order]
    last = np.r_[ss[1:] != ss[:-1], True]  # the last index of every group of tied scores
    tp = np.cumsum(yy)[last]
    fp = np.cumsum(~yy)[last]
    P, N = int(y.sum()), int((~y).sum())
    return ss[last], tp / max(P, 1), fp / max(N, 1)


def choose_threshold(s, y, rule: str = "youden", min_sensitivity: float | None = None):
    """The validation threshold of one class (decision: ``s >= threshold``).

    ``rule="youden"``: the threshold maximising Youden's J = sensitivity +
    specificity - 1 (the highest such threshold on ties);
    ``rule="sensitivity"``: the highest threshold whose sensitivity is at
    least ``min_sensitivity`` (hence the best specificity among those).

    Returns ``(threshold, sensitivity, specificity)`` on the validation
    images, or ``None`` when the class has no positive or no negative.
    """
    s = np.asarray(s, np.float64)
    y = np.asarray(y, bool)
    if y.all() or not y.any():
        return None
    thr, tpr, fpr = _roc_points(s, y)
    if rule == "youden":
        i = int(np.argmax(tpr - fpr))
    elif rule == "sensitivity":
        if min_sensitivity is None or not 0 < min_sensitivity <= 1:
            raise ValueError(f"rule 'sensitivity' needs 0 < min_sensitivity <= 1, got {min_sensitivity!r}")
        i = int(np.flatnonzero(tpr >= min_sensitivity - 1e-12)[0])
    else:
        raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
    return float(thr[i]), float(tpr[i]), float(1 - fpr[i])


class OperatingPoints(BaseEstimator):
    """Per-class decision thresholds chosen on validation probabilities (or scores).

    Parameters
    ----------
    rule : {"youden", "sensitivity"}, default "youden"
        Youden's J, or "sensitivity at least ``min_sensitivity``".
    min_sensitivity : float, optional
        Required with ``rule="sensitivity"`` (e.g. 0.9).
    default_threshold : float, default 0.5
        Used for a class without a positive or a negative in validation (a
        probability of one half; flagged in ``chosen_``).

    Attributes
    ----------
    thresholds_ : (n_classes,) float
    val_sensitivity_, val_specificity_ : (n_classes,) float (NaN where not chosen)
    chosen_ : (n_classes,) bool
        False where ``default_threshold`` stands in.
    """

    def __init__(self, rule: str = "youden", min_sensitivity: float | None = None, default_threshold: float = 0.5):
        self.rule = rule
        self.min_sensitivity = min_sensitivity
        self.default_threshold = default_threshold

    def fit(self, probabilities, y):
        if self.rule not in RULES:
            raise ValueError(f"rule must be one of {RULES}, got {self.rule!r}")
        if self.rule == "sensitivity" and (self.min_sensitivity is None or not 0 < self.min_sensitivity <= 1):
            raise ValueError(f"rule 'sensitivity' needs 0 < min_sensitivity <= 1, got {self.min_sensitivity!r}")
        p, yy = _check_xy(probabilities, y)
        k = p.shape[1]
        thr = np.full(k, float(self.default_threshold))
        sens, spec = np.full(k, np.nan), np.full(k, np.nan)
        chosen = np.zeros(k, bool)
        for j in range(k):
            r = choose_threshold(p[:, j], yy[:, j], self.rule, self.min_sensitivity)
            if r is not None:
                thr[j], sens[j], spec[j] = r
                chosen[j] = True
        self.thresholds_, self.val_sensitivity_, self.val_specificity_, self.chosen_ = thr, sens, spec, chosen
        return self

    def decide(self, probabilities) -> np.ndarray:
        """0/1 decisions ``p >= threshold`` (uint8, same shape)."""
        _check_fitted(self, "thresholds_")
        p, _ = _check_xy(probabilities, None)
        if p.shape[1] != len(self.thresholds_):
            raise ValueError(f"{p.shape[1]} columns but {len(self.thresholds_)} thresholds")
        return (p >= self.thresholds_).astype(np.uint8)

    def to_arrays(self) -> dict:
        _check_fitted(self, "thresholds_")
        return {"thresholds": self.thresholds_, "val_sensitivity": self.val_sensitivity_,
                "val_specificity": self.val_specificity_, "chosen": self.chosen_}

    def describe(self) -> str:
        return "Youden's J" if self.rule == "youden" else f"sensitivity >= {self.min_sensitivity:g}"

    @classmethod
    def from_arrays(cls, arrays: dict, **params) -> "OperatingPoints":
        self = cls(**params)
        try:
            thr = np.asarray(arrays["thresholds"], np.float64)
        except KeyError:
            raise ValueError("operating-point arrays lack 'thresholds'") from None
        if thr.ndim != 1 or not np.isfinite(thr).all():
            raise ValueError(f"thresholds must be a finite 1-d array, got shape {thr.shape}")
        k = len(thr)
        self.thresholds_ = thr
        self.val_sensitivity_ = np.asarray(arrays.get("val_sensitivity", np.full(k, np.nan)), np.float64)
        self.val_specificity_ = np.asarray(arrays.get("val_specificity", np.full(k, np.nan)), np.float64)
        self.chosen_ = np.asarray(arrays.get("chosen", np.ones(k, bool)), bool)
        return self


# --------------------------------------------------------------------------
# Calibration measures
# --------------------------------------------------------------------------

def _check_py(y_true, prob):
    p, y = _check_xy(prob, y_true)
    if ((p < 0) | (p > 1)).any():
        raise ValueError("probabilities must lie in [0, 1]")
    return y, p


def brier_scores(y_true, prob) -> np.ndarray:
    """Brier score per class: the mean of ``(p - y)^2`` (0 is perfect; 0.25 is p = 1/2 everywhere)."""
    y, p = _check_py(y_true, prob)
    return ((p - y) ** 2).mean(0)


def _bins(p, n_bins):
    # equal-width bins [0, 1/n), ..., [(n-1)/n, 1]; p = 1 falls in the last one
    return np.minimum((p * n_bins).astype(np.int64), n_bins - 1)


def reliability_curve(y_true, prob, n_bins: int = N_BINS) -> list[dict]:
    """Reliability-diagram data per class over ``n_bins`` equal-width bins of ``[0, 1]``.

    Returns one dict per class: ``mean_predicted``, ``observed`` (fraction of
    positives) and ``count`` per bin, ``None`` for the means of empty bins.
    """
    y, p = _check_py(y_true, prob)
    out = []
    for j in range(p.shape[1]):
        b = _bins(p[:, j], n_bins)
        cnt = np.bincount(b, minlength=n_bins)
        sp = np.bincount(b, weights=p[:, j], minlength=n_bins)
        sy = np.bincount(b, weights=y[:, j], minlength=n_bins)
        with np.errstate(invalid="ignore", divide="ignore"):
            mp, ob = sp / cnt, sy / cnt
        out.append({"mean_predicted": [None if c == 0 else float(v) for v, c in zip(mp, cnt)],
                    "observed": [None if c == 0 else float(v) for v, c in zip(ob, cnt)],
                    "count": cnt.astype(int).tolist()})
    return out


def expected_calibration_error(y_true, prob, n_bins: int = N_BINS) -> np.ndarray:
    """Expected calibration error per class over ``n_bins`` equal-width bins.

    ECE = sum over bins of ``(n_bin / n) * |mean p in bin - fraction positive in bin|``
    (Naeini et al. 2015), a probability (0 is perfect).
    """
    y, p = _check_py(y_true, prob)
    n, k = p.shape
    ece = np.empty(k)
    for j in range(k):
        b = _bins(p[:, j], n_bins)
        gap = np.bincount(b, weights=p[:, j] - y[:, j], minlength=n_bins)
        ece[j] = np.abs(gap).sum() / n if n else np.nan
    return ece


# --------------------------------------------------------------------------
# Sensitivity, specificity, PPV, NPV at the operating points, with intervals
# --------------------------------------------------------------------------

#: The rates at an operating point: name -> (numerator, denominator) over (TP, FP, TN, FN).
RATES = {
    "sensitivity": ("tp", ("tp", "fn")),
    "specificity": ("tn", ("tn", "fp")),
    "ppv": ("tp", ("tp", "fp")),
    "npv": ("tn", ("tn", "fn")),
}


def _rates(counts: dict) -> dict:
    out = {}
    for name, (num, den) in RATES.items():
        d = counts[den[0]] + counts[den[1]]
        with np.errstate(invalid="ignore", divide="ignore"):
            out[name] = np.where(d > 0, counts[num] / np.where(d > 0, d, 1), np.nan)
    return out


def bootstrap_weights(n: int, n_bootstrap: int, seed=0, chunk: int = 100):
    """Yield ``(b, n)`` multiplicity matrices of ``n_bootstrap`` resamples of ``n`` items, ``chunk`` at a time.

    The draws are those of :func:`phow_baseline.evaluation.metrics.bootstrap_auroc` for the
    same ``seed`` (one ``integers(0, n, (b, n))`` call per chunk).
    """
    rng = np.random.default_rng(seed)
    for lo in range(0, n_bootstrap, chunk):
        b = min(chunk, n_bootstrap - lo)
        idx = rng.integers(0, n, size=(b, n))
        yield np.bincount((idx + np.arange(b)[:, None] * n).ravel(), minlength=b * n).reshape(b, n)


def operating_point_metrics(y_true, prob, thresholds, labels: Sequence[str], n_bootstrap: int = 1000,
                            seed=0) -> dict:
    """Sensitivity, specificity, PPV and NPV of ``prob >= thresholds`` per class, with 95 % intervals.

    Intervals are bootstrap percentiles over ``n_bootstrap`` resamples of
    the images (the same draws as the AUROC intervals); a resample where a
    rate's denominator is zero (e.g. no positive drawn, for the
    sensitivity) does not define that rate and is left out; the number used
    is returned per rate.

    Returns
    -------
    {label: {"threshold", "tp", "fp", "tn", "fn", "sensitivity", "sensitivity_ci95",
    ..., "n_bootstrap_used": {rate: int}}}
    """
    p, y = _check_xy(prob, y_true)
    thr = np.asarray(thresholds, np.float64)
    if thr.shape != (p.shape[1],):
        raise ValueError(f"{len(thr)} thresholds for {p.shape[1]} classes")
    if len(labels) != p.shape[1]:
        raise ValueError(f"{len(labels)} labels for {p.shape[1]} classes")
    d = p >= thr
    cells = {"tp": d & y, "fp": d & ~y, "tn": ~d & ~y, "fn": ~d & y}
    point = _rates({k: v.sum(0).astype(np.float64) for k, v in cells.items()})
    boot = {name: [] for name in RATES}
    if n_bootstrap:
        for w in bootstrap_weights(len(y), n_bootstrap, seed):
            r = _rates({k: w @ v.astype(np.float64) for k, v in cells.items()})  # (b, k) each
            for name in RATES:
                boot[name].append(r[name])
    out = {}
    for j, lab in enumerate(labels):
        e = {"threshold": float(thr[j])}
        e.update({k: int(v[:, j].sum()) for k, v in cells.items()})
        used = {}
        for name in RATES:
            v = point[name][j]
            e[name] = None if np.isnan(v) else float(v)
            ci = None
            if n_bootstrap:
                col = np.concatenate([b[:, j] for b in boot[name]])
                col = col[np.isfinite(col)]
                used[name] = int(len(col))
                if len(col):
                    ci = [float(np.percentile(col, 2.5)), float(np.percentile(col, 97.5))]
            e[f"{name}_ci95"] = ci
        e["n_bootstrap_used"] = used
        out[lab] = e
    return out


def calibration_summary(y_true, prob, labels: Sequence[str], n_bins: int = N_BINS) -> dict:
    """Brier score, ECE and reliability data per class, as JSON-ready dicts keyed by label."""
    y, p = _check_py(y_true, prob)
    if len(labels) != p.shape[1]:
        raise ValueError(f"{len(labels)} labels for {p.shape[1]} classes")
    brier = brier_scores(y, p)
    ece = expected_calibration_error(y, p, n_bins)
    rel = reliability_curve(y, p, n_bins)
    return {"n_bins": int(n_bins), "binning": "equal-width",
            "brier": {lab: float(brier[j]) for j, lab in enumerate(labels)},
            "ece": {lab: float(ece[j]) for j, lab in enumerate(labels)},
            "mean_brier": float(brier.mean()), "mean_ece": float(ece.mean()),
            "reliability": {lab: rel[j] for j, lab in enumerate(labels)}}
