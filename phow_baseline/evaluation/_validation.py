"""Checks of the ground truth and the scores every evaluation function takes."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def check_truth_and_scores(y_true, scores, labels: Sequence[str] | None = None, what: str = "scores"):
    """Validate 0/1 ground truth and finite scores of the same shape.

    Parameters
    ----------
    y_true : array-like, (n,) or (n, n_classes)
        0/1 labels (one column per class).
    scores : array-like, same shape as ``y_true``
        Scores or probabilities, finite.
    labels : sequence of str, optional
        Class names: when given, their number must be ``n_classes``.
    what : str
        What ``scores`` are, for the messages (``"scores"``, ``"probabilities"``).

    Returns
    -------
    y : (n, n_classes) bool
    s : (n, n_classes) float64

    Raises
    ------
    ValueError
        Shapes that differ or are not 1-D/2-D, a number of labels other than
        the columns, non-finite scores, labels other than 0/1.
    """
    y = np.asarray(y_true)
    s = np.asarray(scores, dtype=np.float64)
    if y.ndim == 1:
        y = y[:, None]
    if s.ndim == 1:
        s = s[:, None]
    if s.ndim != 2:
        raise ValueError(f"{what} must be (n,) or (n, n_classes), got shape {s.shape}")
    if y.shape != s.shape:
        raise ValueError(f"y_true {y.shape} and {what} {s.shape} differ in shape")
    if labels is not None and y.shape[1] != len(labels):
        raise ValueError(f"{y.shape[1]} columns but {len(labels)} labels")
    if not np.isfinite(s).all():
        raise ValueError(f"{what} contain {int((~np.isfinite(s)).sum())} non-finite value(s)")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("y_true must hold 0/1 values")
    return y.astype(bool), s
