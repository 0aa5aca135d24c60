"""Fourteen one-vs-rest linear SVMs (hinge loss), in memory and out of core.

VLFeat's PHOW application trains each class with ``vl_svmtrain`` on
``lambda/2 ||w||^2 + 1/n sum_i max(0, 1 - y_i (w.x_i + b))`` with
``lambda = 1 / (C n)``, ``C = 10`` and a bias multiplier of 1.  That is
scikit-learn's ``LinearSVC(loss="hinge", C=C, intercept_scaling=1)`` (the
in-memory path) and ``SGDClassifier(loss="hinge", alpha=1/(C n))`` (the
out-of-core path, ``partial_fit`` over feature shards).
"""

from __future__ import annotations

import warnings
from typing import Iterable

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

#: VLFeat's ``phow_caltech101.m``: ``conf.svm.C = 10``.
DEFAULT_C = 10.0
SOLVERS = ("liblinear", "sgd")


def class_sample_weights(y: np.ndarray, class_weight) -> tuple[float, float]:
    """Weights of negatives and positives of one class.

    ``"balanced"``: ``n / (2 n_neg)`` and ``n / (2 n_pos)``, so that both
    sides weigh as much in the loss (scikit-learn's rule); ``None``: 1 and 1.
    """
    if class_weight is None:
        return 1.0, 1.0
    if class_weight != "balanced":
        raise ValueError(f"class_weight must be None or 'balanced', got {class_weight!r}")
    n, npos = len(y), int(np.sum(y))
    nneg = n - npos
    if npos == 0 or nneg == 0:
        return 1.0, 1.0
    return n / (2.0 * nneg), n / (2.0 * npos)


def _fit_one_liblinear(X, y, C, class_weight, max_iter, seed):
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.svm import LinearSVC

    if y.min() == y.max():
        # one class only: the SVM's optimum is w = 0, b = +-1
        return np.zeros(X.shape[1], np.float32), (1.0 if y[0] else -1.0), True
    svc = LinearSVC(loss="hinge", C=C, dual=True, intercept_scaling=1.0, max_iter=max_iter,
                    class_weight=class_weight, random_state=seed)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        svc.fit(X, y)
    converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    return svc.coef_[0].astype(np.float32), float(svc.intercept_[0]), converged


class OneVsRestSVM(BaseEstimator, ClassifierMixin):
    """One linear SVM per label; decision scores for ROC analysis.

    Parameters
    ----------
    C : float
        Inverse regularisation, as in VLFeat's application (default 10).
    class_weight : {None, "balanced"}
        Weight positives and negatives of each class against the imbalance.
    solver : {"liblinear", "sgd"}
        Exact dual coordinate descent in memory, or SGD (``partial_fit``).
    max_iter : int
        liblinear iterations.
    n_epochs : int
        Passes over the data for ``fit`` with the sgd solver.
    seed : int
    n_jobs : int
        Classes trained in parallel (liblinear).

    Attributes
    ----------
    coef_ : (n_labels, n_features) float32
    intercept_ : (n_labels,) float64
    converged_ : (n_labels,) bool (liblinear)
    """

    def __init__(self, C=DEFAULT_C, class_weight=None, solver="liblinear", max_iter=5000, n_epochs=10,
                 seed=0, n_jobs=None):
        self.C = C
        self.class_weight = class_weight
        self.solver = solver
        self.max_iter = max_iter
        self.n_epochs = n_epochs
        self.seed = seed
        self.n_jobs = n_jobs

    def _validate(self, Y):
        if not self.C > 0:
            raise ValueError(f"C must be positive, got {self.C}")
        if self.solver not in SOLVERS:
            raise ValueError(f"solver must be one of {SOLVERS}, got {self.solver!r}")
        Y = np.asarray(Y)
        if Y.ndim == 1:
            Y = Y[:, None]
        if not np.isin(Y, (0, 1)).all():
            raise ValueError("Y must be a 0/1 label matrix")
        return Y.astype(np.int8)

    def fit(self, X, Y):
        """Fit on features ``X`` (n, d) and labels ``Y`` (n, n_labels) of 0/1."""
        Y = self._validate(Y)
        X = np.asarray(X, dtype=np.float32)
        if len(X) != len(Y):
            raise ValueError(f"X has {len(X)} rows, Y {len(Y)}")
        if self.solver == "sgd":
            self._init_sgd(X.shape[1], Y)
            rng = np.random.default_rng(self.seed)
            for _ in range(int(self.n_epochs)):
                order = rng.permutation(len(X))
                for lo in range(0, len(X), 1024):
                    sel = order[lo:lo + 1024]
                    self._partial(X[sel], Y[sel])
            self._finish_sgd()
            return self
        from joblib import Parallel, delayed

        out = Parallel(n_jobs=self.n_jobs, prefer="threads")(
            delayed(_fit_one_liblinear)(X, Y[:, j], self.C, self.class_weight, self.max_iter, self.seed)
            for j in range(Y.shape[1]))
        self.coef_ = np.stack([o[0] for o in out]).astype(np.float32)
        self.intercept_ = np.array([o[1] for o in out], np.float64)
        self.converged_ = np.array([o[2] for o in out], bool)
        self.n_features_in_ = X.shape[1]
        return self

    # -- out of core ----------------------------------------------------------
    def _init_sgd(self, n_features, Y_all):
        from sklearn.linear_model import SGDClassifier

        n = len(Y_all)
        alpha = 1.0 / (self.C * n)
        self._sgd = [SGDClassifier(loss="hinge", alpha=alpha, learning_rate="optimal", random_state=self.seed)
                     for _ in range(Y_all.shape[1])]
        self._weights = [class_sample_weights(Y_all[:, j], self.class_weight) for j in range(Y_all.shape[1])]
        self.n_features_in_ = n_features

    def _partial(self, Xb, Yb):
        for j, clf in enumerate(self._sgd):
            wneg, wpos = self._weights[j]
            sw = np.where(Yb[:, j] == 1, wpos, wneg)
            clf.partial_fit(Xb, Yb[:, j], classes=np.array([0, 1]), sample_weight=sw)

    def _finish_sgd(self):
        self.coef_ = np.stack([c.coef_[0] for c in self._sgd]).astype(np.float32)
        self.intercept_ = np.array([c.intercept_[0] for c in self._sgd], np.float64)
        self.converged_ = np.ones(len(self._sgd), bool)
        del self._sgd, self._weights

    def fit_batches(self, batches: Iterable, Y_all: np.ndarray, n_features: int, n_epochs=None,
                    progress=None):
        """Out-of-core SGD: ``batches`` is a callable ``epoch -> iterable of (X_batch, row_indices)``.

        Only one batch is in memory at a time, so peak memory does not grow
        with the number of images.  ``Y_all`` holds the labels of every row
        (small: n x 14 bytes).
        """
        Y_all = self._validate(Y_all)
        self._init_sgd(n_features, Y_all)
        for epoch in range(int(n_epochs or self.n_epochs)):
            for Xb, rows in batches(epoch):
                self._partial(np.asarray(Xb, np.float32), Y_all[rows])
                if progress is not None:
                    progress(len(rows))
        self._finish_sgd()
        return self

    # -- scoring --------------------------------------------------------------
    def decision_function(self, X) -> np.ndarray:
        """``X @ coef_.T + intercept_``: one signed distance per label, ``(n, n_labels)``."""
        if not hasattr(self, "coef_"):
            raise ValueError("OneVsRestSVM is not fitted")
        X = np.asarray(X, dtype=np.float32)
        return X @ self.coef_.T + self.intercept_

    def predict(self, X) -> np.ndarray:
        return (self.decision_function(X) > 0).astype(np.uint8)

    def to_arrays(self) -> dict:
        return {"coef": self.coef_, "intercept": self.intercept_, "converged": self.converged_}

    @classmethod
    def from_arrays(cls, params: dict, arrays: dict) -> "OneVsRestSVM":
        m = cls(**params)
        m.coef_ = np.asarray(arrays["coef"], np.float32)
        m.intercept_ = np.asarray(arrays["intercept"], np.float64)
        m.converged_ = np.asarray(arrays["converged"], bool)
        m.n_features_in_ = m.coef_.shape[1]
        return m
