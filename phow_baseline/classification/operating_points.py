"""Operating points: the per-class threshold at which a probability becomes a 0/1 decision.

:class:`OperatingPoints` chooses one threshold per class on the validation
probabilities (or scores), by Youden's J (maximum of sensitivity +
specificity - 1) or as the highest threshold whose sensitivity is at least
``min_sensitivity``, and stores them as plain arrays with the model.  The
sensitivity, specificity, PPV and NPV they give on the test images are
measured by :mod:`phow_baseline.evaluation.decision_metrics`.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator

from ._validation import _check_fitted, _check_xy

#: The rules :class:`OperatingPoints` knows.
RULES = ("youden", "sensitivity")


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

    Parameters
    ----------
    s : (n,) array
        Validation probabilities (or scores) of the class.
    y : (n,) array of bool or 0/1
        Whether each image has the finding.
    rule : {"youden", "sensitivity"}
        How to choose (default Youden's J).
    min_sensitivity : float, optional
        Required sensitivity in (0, 1], for ``rule="sensitivity"``.

    Returns
    -------
    tuple of (float, float, float) or None
        ``(threshold, sensitivity, specificity)`` on the validation images
        (threshold in the units of ``s``; the others in [0, 1]), or None when
        the class has no positive or no negative.

    Raises
    ------
    ValueError
        If ``rule`` is unknown or ``min_sensitivity`` is missing or out of range.
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
    thresholds_ : (n_classes,) float64
        Decision threshold per class (``p >= threshold`` is positive).
    val_sensitivity_ : (n_classes,) float64
        Validation sensitivity at the threshold, in [0, 1] (NaN where not chosen).
    val_specificity_ : (n_classes,) float64
        Validation specificity at the threshold, in [0, 1] (NaN where not chosen).
    chosen_ : (n_classes,) bool
        False where ``default_threshold`` stands in.
    """

    def __init__(self, rule: str = "youden", min_sensitivity: float | None = None, default_threshold: float = 0.5):
        self.rule = rule
        self.min_sensitivity = min_sensitivity
        self.default_threshold = default_threshold

    def fit(self, probabilities, y):
        """Choose one threshold per class on validation probabilities (:func:`choose_threshold`).

        Parameters
        ----------
        probabilities : (n,) or (n, n_classes) array
            Validation probabilities (or scores), finite.
        y : (n,) or (n, n_classes) array of 0/1
            Whether each image has each finding.

        Returns
        -------
        OperatingPoints
            ``self``, fitted.

        Raises
        ------
        ValueError
            If the rule or ``min_sensitivity`` is invalid, the shapes differ or ``y`` is not 0/1.
        """
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
        """0/1 decisions ``p >= threshold`` per class.

        Parameters
        ----------
        probabilities : (n,) or (n, n_classes) array
            Probabilities (or scores) on the scale the thresholds were chosen on.

        Returns
        -------
        (n, n_classes) uint8
            1 where the probability reaches the class's threshold.

        Raises
        ------
        ValueError
            If the number of columns differs from the thresholds'.
        """
        _check_fitted(self, "thresholds_")
        p, _ = _check_xy(probabilities, None)
        if p.shape[1] != len(self.thresholds_):
            raise ValueError(f"{p.shape[1]} columns but {len(self.thresholds_)} thresholds")
        return (p >= self.thresholds_).astype(np.uint8)

    def to_arrays(self) -> dict:
        """The fitted state as arrays.

        Returns
        -------
        dict of str to ndarray
            ``thresholds``, ``val_sensitivity``, ``val_specificity`` (n_classes,) float64
            and ``chosen`` (n_classes,) bool.
        """
        _check_fitted(self, "thresholds_")
        return {
            "thresholds": self.thresholds_,
            "val_sensitivity": self.val_sensitivity_,
            "val_specificity": self.val_specificity_,
            "chosen": self.chosen_,
        }

    def describe(self) -> str:
        """The rule in words.

        Returns
        -------
        str
            ``"Youden's J"`` or ``"sensitivity >= 0.9"`` (the ``min_sensitivity``).
        """
        return "Youden's J" if self.rule == "youden" else f"sensitivity >= {self.min_sensitivity:g}"

    @classmethod
    def from_arrays(cls, arrays: dict, **params) -> OperatingPoints:
        """Fitted operating points from :meth:`to_arrays`'s output (checks the thresholds).

        Parameters
        ----------
        arrays : mapping of str to array
            At least ``thresholds``; the validation sensitivity, specificity and ``chosen`` are optional.
        **params
            Constructor parameters (``rule``, ``min_sensitivity``, ``default_threshold``).

        Returns
        -------
        OperatingPoints
            Fitted.

        Raises
        ------
        ValueError
            If ``thresholds`` is missing or not a finite 1-d array.
        """
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
