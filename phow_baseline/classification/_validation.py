"""Checks shared by the calibrators and the operating points: score matrices, 0/1 labels, fitted state."""

from __future__ import annotations

import numpy as np
from sklearn.exceptions import NotFittedError


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
