"""Operating points: the per-class threshold at which a probability becomes a 0/1 decision.

:class:`OperatingPoints` chooses one threshold per class on the validation
probabilities (or scores), by Youden's J (maximum of sensitivity +
specificity - 1) or as the highest threshold whose sensitivity is at least
``min_sensitivity``, and stores them as plain arrays with the model.  The
sensitivity, specificity, PPV and NPV they give on the test images are
measured by :mod:`phow_baseline.evaluation.decision_metrics`.

A class without a positive (or without a negative) among the validation
images has no ROC to choose on; its threshold is then the documented
*prevalence quantile* (:func:`prevalence_threshold`), never a silent 0.5, and
``fallback_`` says so.  A class with fewer than
:data:`~phow_baseline.classification.calibration.MIN_FIT_POSITIVES` positives
keeps its rule on whatever positives it has, flagged ``"few_positives"``.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator

from ._validation import _check_fitted, _check_xy
from .calibration import MIN_FIT_POSITIVES, fallback_code

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


def prevalence_threshold(s, y) -> float:
    """The fallback threshold of a class with no positive or no negative: the prevalence quantile.

    With the Laplace-smoothed prevalence ``pi = (N+ + 1) / (n + 2)`` of the
    validation images, the threshold is the ``1 - pi`` quantile of their
    values (``numpy.quantile``, method ``"higher"``), so that about a share
    ``pi`` of images like them are called positive: with no positive the top
    ``1 / (n + 2)`` (about one image in ``n + 2``), with no negative all but
    about that share.

    Parameters
    ----------
    s : (n,) array
        Validation probabilities (or scores) of the class, n >= 1.
    y : (n,) array of bool or 0/1
        Whether each image has the finding.

    Returns
    -------
    float
        The threshold, in the units of ``s`` (a value of ``s``).
    """
    s = np.asarray(s, np.float64)
    y = np.asarray(y, bool)
    prevalence = (int(y.sum()) + 1.0) / (len(y) + 2.0)
    return float(np.quantile(s, 1.0 - prevalence, method="higher"))


class OperatingPoints(BaseEstimator):
    """Per-class decision thresholds chosen on validation probabilities (or scores).

    Parameters
    ----------
    rule : {"youden", "sensitivity"}, default "youden"
        Youden's J, or "sensitivity at least ``min_sensitivity``".
    min_sensitivity : float, optional
        Required with ``rule="sensitivity"`` (e.g. 0.9).
    default_threshold : float, optional
        A fixed threshold for a class without a positive or a negative in
        validation; default None: the prevalence quantile
        (:func:`prevalence_threshold`).  Either way the class is flagged in
        ``chosen_`` and ``fallback_``.  (Models of 0.1 and 0.2 stored 0.5 here.)
    min_positives : int, default MIN_FIT_POSITIVES (10)
        Fewer validation positives (or negatives) flag a class ``"few_positives"``
        (``"few_negatives"``) in ``fallback_``; its threshold still follows ``rule``.

    Attributes
    ----------
    thresholds_ : (n_classes,) float64
        Decision threshold per class (``p >= threshold`` is positive).
    val_sensitivity_ : (n_classes,) float64
        Validation sensitivity at the threshold, in [0, 1] (NaN where not chosen).
    val_specificity_ : (n_classes,) float64
        Validation specificity at the threshold, in [0, 1] (NaN where not chosen).
    chosen_ : (n_classes,) bool
        False where the class had no positive or no negative (the fallback threshold stands in).
    fallback_ : (n_classes,) str
        :func:`~phow_baseline.classification.calibration.fallback_code` of each class ("" where none).
    n_positive_ : (n_classes,) int64
        Validation positives per class.
    """

    def __init__(
        self,
        rule: str = "youden",
        min_sensitivity: float | None = None,
        default_threshold: float | None = None,
        min_positives: int = MIN_FIT_POSITIVES,
    ):
        self.rule = rule
        self.min_sensitivity = min_sensitivity
        self.default_threshold = default_threshold
        self.min_positives = min_positives

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
        if len(p) == 0:
            raise ValueError("cannot choose operating points on zero images")
        k = p.shape[1]
        thr = np.empty(k)
        sens, spec = np.full(k, np.nan), np.full(k, np.nan)
        chosen = np.zeros(k, bool)
        npos = yy.sum(0).astype(np.int64)
        codes = [fallback_code(int(npos[j]), int(len(yy) - npos[j]), self.min_positives) for j in range(k)]
        for j in range(k):
            r = choose_threshold(p[:, j], yy[:, j], self.rule, self.min_sensitivity)
            if r is not None:
                thr[j], sens[j], spec[j] = r
                chosen[j] = True
                continue
            pj, yj = p[:, j], yy[:, j]
            thr[j] = prevalence_threshold(pj, yj) if self.default_threshold is None else float(self.default_threshold)
            if yj.any():
                sens[j] = float((pj[yj] >= thr[j]).mean())
            if not yj.all():
                spec[j] = float((pj[~yj] < thr[j]).mean())
        self.thresholds_, self.val_sensitivity_, self.val_specificity_, self.chosen_ = thr, sens, spec, chosen
        self.fallback_ = np.array(codes, dtype="<U16")
        self.n_positive_ = npos
        return self

    def fallback_rule(self, j: int) -> str:
        """How class ``j``'s threshold was chosen, in words, when it is a fallback ("" otherwise).

        Parameters
        ----------
        j : int
            The class's column.

        Returns
        -------
        str
            E.g. ``"no positive: the prevalence quantile (1 - (N+ + 1)/(n + 2)) of the values"``.
        """
        _check_fitted(self, "thresholds_")
        code = str(self.fallback_[j])
        if not code:
            return ""
        n_pos = int(self.n_positive_[j]) if len(self.n_positive_) else -1
        if code in ("no_positive", "no_negative"):
            side = "positive" if code == "no_positive" else "negative"
            how = (
                f"the fixed threshold {float(self.default_threshold):g}"
                if self.default_threshold is not None
                else "the prevalence quantile (1 - (N+ + 1)/(n + 2)) of the values"
            )
            return f"no {side}: {how}"
        which = "positives" if code == "few_positives" else "negatives"
        count = f"{n_pos} positive(s)" if code == "few_positives" else "few negatives"
        return f"{count} (< {self.min_positives} {which}): {self.describe()} on them"

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
            ``thresholds``, ``val_sensitivity``, ``val_specificity`` (n_classes,) float64,
            ``chosen`` (n_classes,) bool, ``fallback`` (n_classes,) str and ``n_positive`` (n_classes,) int64.
        """
        _check_fitted(self, "thresholds_")
        return {
            "thresholds": self.thresholds_,
            "val_sensitivity": self.val_sensitivity_,
            "val_specificity": self.val_specificity_,
            "chosen": self.chosen_,
            "fallback": np.asarray(self.fallback_, "<U16"),
            "n_positive": np.asarray(self.n_positive_, np.int64),
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
            At least ``thresholds``; the validation sensitivity, specificity, ``chosen``, ``fallback`` and
            ``n_positive`` are optional (0.1 and 0.2 models lack the last two).
        **params
            Constructor parameters (``rule``, ``min_sensitivity``, ``default_threshold``, ``min_positives``).

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
        self.fallback_ = np.asarray(
            arrays.get("fallback", np.where(self.chosen_, "", "no_positive")), "<U16"
        )  # 0.1/0.2: a class not chosen had no positive (or no negative) and took 0.5
        self.n_positive_ = np.asarray(arrays.get("n_positive", np.full(k, -1)), np.int64)
        return self
