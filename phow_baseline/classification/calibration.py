"""Probabilities from scores: Platt scaling for the SVMs, temperature scaling for the CNN.

Two small estimators, each fitted on scores of images the model did not
train on (for the SVMs, out-of-fold scores of patient-wise folds of the
training images: :func:`phow_baseline.workflow.steps.calibrate_model`; for
the CNN, the patient-wise validation carve) and stored as plain arrays
(``to_arrays`` / ``from_arrays``, saved with the model as ``.npz`` data,
never pickled):

* :class:`PlattCalibrator`: per class, ``p = sigmoid(a * s + b)`` fitted to
  the scores ``s`` of one class (Platt 1999), with Platt's smoothed targets
  ``(N+ + 1) / (N+ + 2)`` for positives and ``1 / (N- + 2)`` for negatives,
  which keep the fit finite when the classes separate.  The slope ``a`` is
  kept strictly positive, so the map is strictly increasing and the ranking
  (hence every AUROC) is unchanged.
* :class:`TemperatureScaler`: for the CNN's logits ``z``, one scalar ``T``
  with ``p = sigmoid(z / T)``, minimising the binary cross-entropy over all
  classes (Guo et al. 2017, "On calibration of modern neural networks").

Why not ``sklearn.calibration.CalibratedClassifierCV(FrozenEstimator(...))``:
it calibrates a single-output (or multi-class) classifier, while the PHOW
model is 14 independent one-vs-rest SVMs fitted out of core, scored through a
feature store; the fit it would run per class is the two-parameter Platt fit
done here (scikit-learn's own ``_SigmoidCalibration``, a private class, is
used only in a test as an independent check of this fit).

The decision thresholds are :mod:`.operating_points`; how well the
probabilities are calibrated is measured by
:mod:`phow_baseline.evaluation.calibration_metrics`.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy.optimize import minimize, minimize_scalar
from scipy.special import expit, log_expit
from sklearn.base import BaseEstimator

from ._validation import _check_fitted, _check_xy

#: Positives (and negatives) a class needs among the calibration images for its Platt fit and its operating
#: point to count as fitted rather than a fallback.  Our choice, no paper's: below 10 positives the
#: sensitivity the threshold is chosen on moves in steps of more than 0.1, and the sigmoid's slope rests
#: on a handful of scores.  Such a class still gets a fit (Platt's smoothed targets keep it finite, and
#: :mod:`.operating_points` chooses its threshold by a documented rule), flagged in ``fallback_``.
MIN_FIT_POSITIVES = 10

#: The fallback codes of :attr:`PlattCalibrator.fallback_` and
#: :attr:`~phow_baseline.classification.operating_points.OperatingPoints.fallback_` ("" where none).
FALLBACK_CODES = ("", "few_positives", "few_negatives", "no_positive", "no_negative")


def fallback_code(n_positive: int, n_negative: int, min_positives: int = MIN_FIT_POSITIVES) -> str:
    """Why a class's calibration is a fallback: one of :data:`FALLBACK_CODES`.

    Parameters
    ----------
    n_positive, n_negative : int
        The class's positives and negatives among the calibration images.
    min_positives : int, default=MIN_FIT_POSITIVES
        Fewer positives (or negatives) than this make a fallback.

    Returns
    -------
    str
        ``"no_positive"``, ``"no_negative"``, ``"few_positives"``, ``"few_negatives"`` or ``""`` (fitted).
    """
    if n_positive == 0:
        return "no_positive"
    if n_negative == 0:
        return "no_negative"
    if n_positive < min_positives:
        return "few_positives"
    if n_negative < min_positives:
        return "few_negatives"
    return ""


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
        Platt's smoothed targets or the 0/1 labels.
    min_slope : float
        Smallest slope kept, in units of ``1 / std(s)``: a fitted slope below
        it (scores that do not rank the validation images, or a class with
        no positive) is replaced by it and ``b`` refitted alone, so the map
        stays strictly increasing.

    Returns
    -------
    a : float
        Slope, per unit of score (> 0).
    b : float
        Intercept (log-odds at score 0).
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

    prior = t.mean() if len(t) else 0.5
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
    min_positives : int, default MIN_FIT_POSITIVES (10)
        A class with fewer positives (or negatives) is flagged in ``fallback_``.
        Its fit is the same (Platt's smoothed targets, which keep it finite);
        with no positive at all (or no negative) the slope cannot be
        estimated: it is set to ``min_slope`` and the intercept fitted alone,
        so every probability is near Platt's prior-corrected target
        ``1 / (N- + 2)`` (resp. ``(N+ + 1) / (N+ + 2)``).

    Attributes
    ----------
    a_ : (n_classes,) float64
        Slope per class (> 0), per unit of score.
    b_ : (n_classes,) float64
        Intercept per class (log-odds).
    n_positive_ : (n_classes,) int64
        Validation positives the fit saw, per class.
    n_negative_ : (n_classes,) int64
        Validation negatives the fit saw, per class.
    clipped_ : (n_classes,) bool
        Classes whose fitted slope was raised to ``min_slope`` (warned with a count).
    fallback_ : (n_classes,) str
        :func:`fallback_code` of each class ("" where the fit had enough positives and negatives).
    """

    def __init__(self, targets: str = "platt", min_slope: float = 1e-3, min_positives: int = MIN_FIT_POSITIVES):
        self.targets = targets
        self.min_slope = min_slope
        self.min_positives = min_positives

    def fit(self, scores, y):
        """Fit one sigmoid per class (:func:`fit_sigmoid`) on validation scores and labels.

        Parameters
        ----------
        scores : (n,) or (n, n_classes) array
            Validation scores (e.g. SVM margins), finite.
        y : (n,) or (n, n_classes) array of 0/1
            Whether each image has each finding.

        Returns
        -------
        PlattCalibrator
            ``self``, fitted.

        Raises
        ------
        ValueError
            If a parameter is out of range, the shapes differ, ``y`` is not 0/1,
            a score is not finite, or there is no image.

        Warns
        -----
        RuntimeWarning
            With the number of classes whose slope was raised to ``min_slope``.
        """
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
        self.fallback_ = np.array(
            [fallback_code(p, q, self.min_positives) for p, q in zip(self.n_positive_, self.n_negative_)], dtype=str
        ).astype("<U16")
        if clipped.any():
            warnings.warn(
                f"Platt scaling: {int(clipped.sum())} of {k} class(es) got a slope <= 0 on the validation "
                f"scores (no positive, or scores that do not rank them); their slope is set to the minimum "
                f"so that the ranking is kept",
                RuntimeWarning,
                stacklevel=2,
            )
        return self

    def predict_proba(self, scores) -> np.ndarray:
        """Probabilities ``sigmoid(a * s + b)`` per class (``transform`` is the same method).

        Parameters
        ----------
        scores : (n,) or (n, n_classes) array
            Scores, finite; the columns those of ``fit``.

        Returns
        -------
        (n, n_classes) float64
            Probabilities in [0, 1].

        Raises
        ------
        ValueError
            If the number of columns differs from ``fit``'s or a score is not finite.
        """
        _check_fitted(self, "a_")
        s, _ = _check_xy(scores, None)
        if s.shape[1] != len(self.a_):
            raise ValueError(f"scores have {s.shape[1]} columns, the calibration {len(self.a_)}")
        return expit(s * self.a_ + self.b_)

    transform = predict_proba

    def to_arrays(self) -> dict:
        """The fitted state as arrays (for an ``.npz`` in the model directory).

        Returns
        -------
        dict of str to ndarray
            ``a``, ``b`` (n_classes,) float64, ``clipped`` (n_classes,) bool,
            ``n_positive``, ``n_negative`` (n_classes,) int64, ``fallback`` (n_classes,) str.
        """
        _check_fitted(self, "a_")
        return {
            "a": self.a_,
            "b": self.b_,
            "clipped": self.clipped_,
            "n_positive": self.n_positive_,
            "n_negative": self.n_negative_,
            "fallback": np.asarray(self.fallback_, "<U16"),
        }

    @classmethod
    def from_arrays(cls, arrays: dict, **params) -> PlattCalibrator:
        """A fitted calibrator from :meth:`to_arrays`'s output (checks shapes and slopes).

        Parameters
        ----------
        arrays : mapping of str to array
            At least ``a`` and ``b``; ``clipped``, ``n_positive``, ``n_negative``, ``fallback`` are optional.
        **params
            Constructor parameters (``targets``, ``min_slope``).

        Returns
        -------
        PlattCalibrator
            Fitted.

        Raises
        ------
        ValueError
            If ``a`` or ``b`` is missing, their shapes differ, or a slope is not finite and > 0.
        """
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
        self.fallback_ = np.asarray(arrays.get("fallback", np.full(k, "")), "<U16")  # 0.1/0.2: none recorded
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
    t_min : float
        Lower search bound for ``T`` (default 0.05), > 0.
    t_max : float
        Upper search bound for ``T`` (default 20), finite and > ``t_min``.

    Attributes
    ----------
    temperature_ : float
        The fitted ``T`` (> 0, dimensionless).
    nll_before_ : float
        Mean cross-entropy (nats per label) at ``T = 1``.
    nll_after_ : float
        Mean cross-entropy (nats per label) at ``temperature_``.
    """

    def __init__(self, t_min: float = 0.05, t_max: float = 20.0):
        self.t_min = t_min
        self.t_max = t_max

    @staticmethod
    def _nll(z, y, T):
        u = z / T
        return float(-(np.where(y, log_expit(u), log_expit(-u))).mean())

    def fit(self, logits, y):
        """Fit ``T`` on validation logits and 0/1 labels.

        Parameters
        ----------
        logits : (n,) or (n, n_classes) array
            Validation logits, finite.
        y : (n,) or (n, n_classes) array of 0/1
            Whether each image has each finding.

        Returns
        -------
        TemperatureScaler
            ``self``, fitted.

        Raises
        ------
        ValueError
            If the bounds are out of order, the shapes differ, ``y`` is not 0/1,
            a logit is not finite, or there is no image.
        """
        if not (0 < self.t_min < self.t_max and np.isfinite(self.t_max)):
            raise ValueError(f"need 0 < t_min < t_max, got {self.t_min!r}, {self.t_max!r}")
        z, yy = _check_xy(logits, y)
        if z.size == 0:
            raise ValueError("cannot fit a temperature on zero images")
        res = minimize_scalar(
            lambda lt: self._nll(z, yy, np.exp(lt)),
            bounds=(np.log(self.t_min), np.log(self.t_max)),
            method="bounded",
            options={"xatol": 1e-6},
        )
        self.temperature_ = float(np.exp(res.x))
        self.nll_before_ = self._nll(z, yy, 1.0)
        self.nll_after_ = self._nll(z, yy, self.temperature_)
        return self

    def predict_proba(self, logits) -> np.ndarray:
        """Probabilities ``sigmoid(z / T)`` (``transform`` is the same method).

        Parameters
        ----------
        logits : (n,) or (n, n_classes) array
            Logits, finite.

        Returns
        -------
        (n, n_classes) float64
            Probabilities in [0, 1] (a 1-d input gives one column).
        """
        _check_fitted(self, "temperature_")
        z, _ = _check_xy(logits, None)
        return expit(z / self.temperature_)

    transform = predict_proba

    def to_arrays(self) -> dict:
        """The fitted state as arrays.

        Returns
        -------
        dict of str to numpy.float64
            ``{"temperature": T}``.
        """
        _check_fitted(self, "temperature_")
        return {"temperature": np.float64(self.temperature_)}

    @classmethod
    def from_arrays(cls, arrays: dict, **params) -> TemperatureScaler:
        """A fitted scaler from :meth:`to_arrays`'s output (checks that ``T`` is finite and > 0).

        Parameters
        ----------
        arrays : mapping of str to array
            ``temperature``, a scalar.
        **params
            Constructor parameters (``t_min``, ``t_max``).

        Returns
        -------
        TemperatureScaler
            Fitted.

        Raises
        ------
        ValueError
            If ``temperature`` is missing, not finite or not > 0.
        """
        self = cls(**params)
        try:
            T = float(np.asarray(arrays["temperature"]))
        except KeyError:
            raise ValueError("temperature arrays lack 'temperature'") from None
        if not (np.isfinite(T) and T > 0):
            raise ValueError(f"temperature must be finite and > 0, got {T}")
        self.temperature_ = T
        return self
