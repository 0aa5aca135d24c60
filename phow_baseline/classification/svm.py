"""Fourteen one-vs-rest linear SVMs (hinge loss), in memory and out of core.

VLFeat's PHOW application trains each class with ``vl_svmtrain`` on
``lambda/2 ||w||^2 + 1/n sum_i max(0, 1 - y_i (w.x_i + b))`` with
``lambda = 1 / (C n)``, ``C = 10`` and a bias multiplier of 1.  That is
scikit-learn's ``LinearSVC(loss="hinge", C=C, intercept_scaling=1)`` (the
in-memory path), ``SGDClassifier(loss="hinge", alpha=1/(C n))`` (the
out-of-core path, ``partial_fit`` over feature shards) and VLFeat's own
solver, stochastic dual coordinate ascent (:mod:`.sdca`: in memory with
``fit`` and out of core with :meth:`OneVsRestSVM.fit_store`, stopped on the
duality gap).
"""

from __future__ import annotations

import numbers
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from joblib import effective_n_jobs
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, column_or_1d, validate_data

#: VLFeat's ``phow_caltech101.m``: ``conf.svm.C = 10``.
DEFAULT_C = 10.0
SOLVERS = ("liblinear", "sgd", "sdca")
#: Rows per ``partial_fit`` step of the in-memory SGD solver.
SGD_BATCH = 1024


def class_sample_weights(y: np.ndarray, class_weight) -> tuple[float, float]:
    """Weights of negatives and positives of one class.

    ``"balanced"``: ``n / (2 n_neg)`` and ``n / (2 n_pos)``, so that both
    sides weigh as much in the loss (scikit-learn's rule); ``None``: 1 and 1.

    Parameters
    ----------
    y : (n,) array of 0/1
        The class's labels on the training rows.
    class_weight : {None, "balanced"}
        The weighting rule.

    Returns
    -------
    w_neg, w_pos : float
        The weight of each negative and of each positive row in the hinge loss.
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


def _fit_one_liblinear(X, y, C, class_weight, max_iter, random_state):
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.svm import LinearSVC

    if y.min() == y.max():
        # one class only: the SVM's optimum is w = 0, b = +-1
        return np.zeros(X.shape[1], np.float32), (1.0 if y[0] else -1.0), True, 0
    svc = LinearSVC(
        loss="hinge",
        C=C,
        dual=True,
        intercept_scaling=1.0,
        max_iter=max_iter,
        class_weight=class_weight,
        random_state=random_state,
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        svc.fit(X, y)
    converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    return svc.coef_[0].astype(np.float32), float(svc.intercept_[0]), converged, int(svc.n_iter_)


class OneVsRestSVM(ClassifierMixin, BaseEstimator):
    """One linear SVM (hinge loss) per label or class; decision scores for ROC analysis.

    Targets, as scikit-learn's ``OneVsRestClassifier`` takes them:

    * a 0/1 label matrix ``(n, n_labels)`` (multilabel, the 14 findings):
      one SVM per column; ``classes_ = arange(n_labels)``,
      ``decision_function`` ``(n, n_labels)``, ``predict`` the 0/1 matrix;
    * a 1-D vector of class labels: one SVM per class (one for two classes);
      ``decision_function`` ``(n,)`` for two classes, ``(n, n_classes)``
      otherwise; ``predict`` the labels, ``(n,)``.

    A label column with a single value gets ``w = 0`` and ``b = +-1`` (the
    SVM's optimum).

    Parameters
    ----------
    C : float
        Inverse regularisation, as in VLFeat's application (default 10):
        ``lambda = 1 / (C n)``.
    class_weight : {None, "balanced"}
        Weight positives and negatives of each label against the imbalance
        (:func:`class_sample_weights`).
    solver : {"liblinear", "sgd", "sdca"}
        Exact dual coordinate descent in memory (liblinear), SGD
        (``SGDClassifier``, hinge loss, ``alpha = lambda``,
        ``learning_rate="optimal"``), or VLFeat's stochastic dual coordinate
        ascent for all labels at once (:mod:`.sdca`; bias multiplier 1, the
        bias regularised as liblinear's), in memory or out of core
        (:meth:`fit_store`).
    max_iter : int
        liblinear iterations.
    n_epochs : int
        Passes over the data for ``fit`` with the sgd solver.
    tol : float
        SGD convergence: a label's SVM has converged when its last epoch
        changed its weights ``[w, b]`` by less than ``tol`` relative to their
        norm.  Used to judge, not to stop: ``fit`` runs ``n_epochs``.
        SDCA: a label stops when its duality gap relative to its primal
        objective, ``(P(w) - D(alpha)) / P(w)``, is below ``tol`` (VLFeat's
        gap; the default 1e-3 is ``vl_svmtrain``'s documented ``Epsilon``;
        see :mod:`.sdca` for why relative).
    random_state : int, RandomState or None
        Seeds liblinear, SGD and the SGD and SDCA row orders.
    n_jobs : int
        Threads: labels trained in parallel (liblinear, sgd), or the BLAS
        threads of SDCA's GEMMs (the results do not depend on it).
    max_epochs : int, optional
        SDCA: epochs at most (default
        :data:`~phow_baseline.classification.sdca.DEFAULT_MAX_EPOCHS`, 1000).

    Attributes
    ----------
    classes_ : ndarray
    coef_ : (n_models, n_features) float32
    intercept_ : (n_models,) float64
    n_features_in_ : int
    converged_ : (n_models,) bool
        liblinear: finished within ``max_iter``; sgd: last weight change below ``tol``;
        sdca: relative duality gap below ``tol``.
    n_iter_ : (n_models,) int
        liblinear iterations, SGD epochs, or the SDCA epochs behind each label's weights.
    objective_ : (n_epochs, n_models) float64 (sgd)
        Per epoch, ``lambda/2 ||w||^2 + 1/n sum_i s_i max(0, 1 - y_i (w.x_i + b))``
        (``s_i`` the class weights) with ``w`` the weights at the end of the
        epoch and the loss term summed over the epoch's batches just before
        each batch's update (progressive loss: no extra pass over the data).
    weight_change_ : (n_epochs, n_models) float64 (sgd)
        ``||[w, b]_e - [w, b]_{e-1}|| / ||[w, b]_e||`` per epoch.
    duality_gap_, primal_objective_, dual_objective_ : (n_models,) float64 (sdca)
        ``P - D``, ``P`` and ``D`` of each label's returned weights (the objective above, bias included in
        the regulariser).
    train_time_ : (n_models,) float64 (sdca)
        Seconds of training until each label's weights were certified.
    duality_gap_history_ : (n_epochs, n_models) float64 (sdca)
        The gap after each epoch (NaN after the label stopped): estimated from the scores the pass's steps
        saw, exact at the epochs certified (:mod:`.sdca`), the last one ``duality_gap_``.
    dual_coef_ : (n_samples, n_models) float64 (sdca, not saved)
        The dual variables ``alpha`` (``y s [0, 1]``).
    """

    def __init__(
        self,
        C=DEFAULT_C,
        class_weight=None,
        solver="liblinear",
        max_iter=5000,
        n_epochs=10,
        tol=1e-3,
        random_state=0,
        n_jobs=None,
        max_epochs=None,
    ):
        self.C = C
        self.class_weight = class_weight
        self.solver = solver
        self.max_iter = max_iter
        self.n_epochs = n_epochs
        self.tol = tol
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.max_epochs = max_epochs

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        tags.target_tags.multi_output = True
        return tags

    # -- validation -----------------------------------------------------------
    def _check_params(self):
        if not (isinstance(self.C, numbers.Real) and float(self.C) > 0):
            raise ValueError(f"C must be positive, got {self.C!r}")
        if self.solver not in SOLVERS:
            raise ValueError(f"solver must be one of {SOLVERS}, got {self.solver!r}")
        if self.class_weight not in (None, "balanced"):
            raise ValueError(f"class_weight must be None or 'balanced', got {self.class_weight!r}")
        for name in ("max_iter", "n_epochs"):
            v = getattr(self, name)
            if not isinstance(v, numbers.Integral) or int(v) < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if not (isinstance(self.tol, numbers.Real) and float(self.tol) >= 0):
            raise ValueError(f"tol must be >= 0, got {self.tol!r}")
        if self.max_epochs is not None and not (
            isinstance(self.max_epochs, numbers.Integral) and int(self.max_epochs) >= 1
        ):
            raise ValueError(f"max_epochs must be a positive integer or None, got {self.max_epochs!r}")

    def _targets(self, y, classes=None):
        """Set ``classes_``, ``y_type_``; return the 0/1 matrix ``(n, n_models)`` int8."""
        y = np.asarray(y)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if y.ndim == 2:
            if not np.isin(y, (0, 1)).all():
                raise ValueError("Y must be a 0/1 label matrix (n_samples, n_labels), or a 1-D vector of classes")
            self.y_type_ = "multilabel-indicator"
            self.classes_ = np.arange(y.shape[1], dtype=y.dtype)
            return y.astype(np.int8)
        check_classification_targets(y)
        self.classes_ = np.unique(y if classes is None else classes)
        self.y_type_ = "binary" if len(self.classes_) <= 2 else "multiclass"
        if len(self.classes_) < 2:
            raise ValueError(
                "This solver needs samples of at least 2 classes in the data, but the data "
                f"contains only one class: {self.classes_[0]!r}"
            )
        return self._one_vs_rest(y)

    def _one_vs_rest(self, y):
        if self.y_type_ == "multilabel-indicator":
            y = np.asarray(y)
            if y.ndim != 2 or y.shape[1] != len(self.classes_) or not np.isin(y, (0, 1)).all():
                raise ValueError(f"Y must be a 0/1 label matrix with {len(self.classes_)} columns")
            return y.astype(np.int8)
        y = column_or_1d(y)
        unknown = np.setdiff1d(y, self.classes_)
        if len(unknown):
            raise ValueError(f"labels {unknown.tolist()} are not among the classes {self.classes_.tolist()}")
        if self.y_type_ == "binary":
            return (y == self.classes_[1]).astype(np.int8)[:, None]
        return (y[:, None] == self.classes_[None]).astype(np.int8)

    # -- fit ----------------------------------------------------------------------
    def fit(self, X, y):
        """Fit the SVMs on features ``X`` and labels ``y`` with ``solver``.

        Parameters
        ----------
        X : (n, d) array of float
            The (kernel-mapped) image features.
        y : (n, n_labels) 0/1 matrix or (n,) class labels
            Multi-label targets (one SVM per column) or classes (one-vs-rest).

        Returns
        -------
        OneVsRestSVM
            ``self``, fitted.
        """
        self._check_params()
        X, y = validate_data(self, X, y, dtype=np.float32, multi_output=True)
        Y = self._targets(y)
        if self.solver == "sdca":
            from .sdca import ArrayRows

            return self._fit_sdca(ArrayRows(X), Y)
        if self.solver == "sgd":
            self._sgd_start(X.shape[1], Y)
            rng = np.random.default_rng(self._seed())
            for _ in range(int(self.n_epochs)):
                order = rng.permutation(len(X))
                for lo in range(0, len(X), SGD_BATCH):
                    sel = order[lo : lo + SGD_BATCH]
                    self._sgd_step(X[sel], Y[sel])
                self._sgd_end_epoch()
            self._sgd_sync()
            del self._sgd
            return self
        from joblib import Parallel, delayed

        # LinearSVC takes float64: one copy here, shared by the threads (each would otherwise make its own)
        X = np.ascontiguousarray(X, dtype=np.float64)
        out = Parallel(n_jobs=self.n_jobs, prefer="threads")(
            delayed(_fit_one_liblinear)(X, Y[:, j], self.C, self.class_weight, self.max_iter, self.random_state)
            for j in range(Y.shape[1])
        )
        del X
        self.coef_ = np.stack([o[0] for o in out]).astype(np.float32)
        self.intercept_ = np.array([o[1] for o in out], np.float64)
        self.converged_ = np.array([o[2] for o in out], bool)
        self.n_iter_ = np.array([o[3] for o in out], np.int64)
        self._forget(_SGD_ATTRS + _SDCA_ATTRS)
        return self

    def _forget(self, names):
        for a in names:
            if hasattr(self, a):
                delattr(self, a)

    # -- SDCA ---------------------------------------------------------------------------------------------------
    def fit_store(
        self, store, y, rows=None, transform=None, checkpoint=None, on_epoch=None, label_names=None
    ) -> OneVsRestSVM:
        """Fit with SDCA out of core: one shard of a feature store in memory at a time.

        Parameters
        ----------
        store : FeatureStore
            The features (:class:`phow_baseline.encoding.store.FeatureStore`), unmapped or mapped.
        y : (len(rows), n_labels) 0/1 matrix or (len(rows),) class labels
            Labels of the training rows, in the order of ``rows``.
        rows : sequence of int, optional
            The store rows to train on (default all).
        transform : callable or fitted kernel map, optional
            Applied to the rows as they are read (the homogeneous kernel map of the stored histograms): once,
            kept in memory, when the mapped rows fit
            :data:`~phow_baseline.classification.sdca.IN_MEMORY_BYTES` (1 GiB), else every epoch.
        checkpoint : path, optional
            ``.npz`` saved after every epoch; when it exists and holds this very training (same labels,
            class weights, settings and dimension) training resumes after its last epoch, bit for bit as
            if never stopped; otherwise a warning names it and training starts over.
        on_epoch : callable, optional
            Called with the :class:`~phow_baseline.classification.sdca.SDCASolver` after each epoch.
        label_names : sequence of str, optional
            Names of the labels in warnings (e.g. the 14 findings).

        Returns
        -------
        OneVsRestSVM
            ``self``, trained by SDCA whatever ``solver`` says.
        """
        from .sdca import ArrayRows, StoreRows

        self._check_params()
        Y = self._targets(y)
        rows_of_store = StoreRows(store, rows)
        source: ArrayRows | StoreRows = rows_of_store
        # small enough: mapped once and kept (same rows, same chunks, same bits), else mapped every epoch
        mapped = rows_of_store.in_memory(transform) if transform is not None else None
        if mapped is not None:
            source, transform = mapped, None
        return self._fit_sdca(
            source,
            Y,
            transform=transform,
            checkpoint=checkpoint,
            on_epoch=on_epoch,
            label_names=label_names,
        )

    def fit_store_folds(
        self, store, y, rows, folds, transform=None, checkpoint=None, on_epoch=None, label_names=None
    ) -> list[OneVsRestSVM]:
        """Fit the cross-fitting models of ``K`` folds and the final one, with SDCA out of core.

        Model ``k < K`` is trained on the rows whose fold is not ``k`` (score the rows of fold ``k`` with
        it: out-of-fold scores); model ``K`` on all ``rows``, bit for bit as
        ``clone(self).fit_store(store, y, rows, transform)``.  Model ``k`` is the same SVMs as
        ``clone(self).fit_store(store, y[train], rows[train], transform)`` (the same objective, the
        same certified gap), but its epochs visit its rows in the order of all the rows' permutation
        (:class:`~phow_baseline.classification.sdca.SDCASolver`'s ``within``), so that one reading of
        the rows serves all ``K + 1`` models each epoch
        (:func:`~phow_baseline.classification.sdca.run_together`): the rows are read from the shards and
        kernel-mapped once an epoch instead of ``K + 1`` times, or, when the mapped rows fit
        :data:`~phow_baseline.classification.sdca.IN_MEMORY_BYTES`, mapped once and kept (both give the
        same bits).  On SDCA's Gram path (at most :data:`~phow_baseline.classification.sdca.GRAM_MAX_ROWS`
        rows with as many features) each model trains on its own, all of them sharing one Gram matrix of
        all rows.  The classes are those of the whole ``y``.

        Parameters
        ----------
        store : FeatureStore
            The features (:class:`phow_baseline.encoding.store.FeatureStore`).
        y : (len(rows), n_labels) 0/1 matrix or (len(rows),) class labels
            Labels of ``rows``, in their order.
        rows : sequence of int
            The store rows to train on.
        folds : (len(rows),) array of int
            The fold of each row, ``0 .. K-1`` (each fold holding at least one row, ``K >= 2``).
        transform : callable or fitted kernel map, optional
            As :meth:`fit_store`.
        checkpoint : path, optional
            The models trained together keep one checkpoint, ``<stem>.together<suffix>`` beside it
            (after each epoch, all of them); on the Gram path model ``k``'s is ``<stem>.fold<k><suffix>``,
            the final model's ``<stem>.all<suffix>``.  Each resumes as in :meth:`fit_store`.
        on_epoch : callable, optional
            Called with the :class:`~phow_baseline.classification.sdca.SDCASolver` after each epoch of
            each model; its ``fold`` attribute is the model's index ``k`` (``K``: the final model).
        label_names : sequence of str, optional
            Names of the labels in warnings; the fold is added to them.

        Returns
        -------
        list of OneVsRestSVM
            ``K + 1`` fitted clones of ``self`` (``self`` is left unfitted).
        """
        from sklearn.base import clone

        from .sdca import (
            ArrayRows,
            StoreRows,
            _gram,
            gram_applies,
            load_or_start,
            load_or_start_together,
            run_together,
        )

        self._check_params()
        rows = np.asarray(rows, np.int64).reshape(-1)
        folds = _check_folds(folds, len(rows))
        probe = clone(self)
        Y = probe._targets(y)
        if len(Y) != len(rows):
            raise ValueError(f"{len(Y)} label rows for {len(rows)} store rows")
        n_folds = int(folds.max()) + 1
        all_rows = StoreRows(store, rows)
        mapped = all_rows.in_memory(transform) if transform is not None else None
        if mapped is None and gram_applies(len(rows), all_rows.n_features):
            mapped = all_rows.in_memory(None)  # unmapped rows that fit: in memory once too
        # the Gram path for the models that take it: one Gram matrix of all rows serves every fold
        Q = _gram(mapped.X) if mapped is not None and gram_applies(len(rows) - 1, mapped.X.shape[1]) else None
        models, together = [], []
        for k in range(n_folds + 1):
            train = folds != k if k < n_folds else np.ones(len(rows), bool)
            tag = f"fold {k}" if k < n_folds else "all folds"
            m = clone(self)
            m.classes_, m.y_type_ = probe.classes_, probe.y_type_
            names = [f"{n} ({tag})" for n in (m._label_names() if label_names is None else label_names)]
            # a fold's model visits its rows in the order of all rows' permutation (run_together)
            solver = m._sdca_solver(
                Y[train], names, within=None if k == n_folds else (len(rows), np.flatnonzero(train))
            )
            solver.fold = k
            models.append(m)
            if mapped is not None and Q is not None and gram_applies(int(train.sum()), mapped.X.shape[1]):
                ckpt = _fold_checkpoint(checkpoint, k, n_folds)
                if ckpt is not None:
                    solver = load_or_start(ckpt, solver, mapped.X.shape[1])
                    solver.fold = k
                X_train = mapped.X[train]
                solver.run(
                    ArrayRows(X_train), checkpoint=ckpt, on_epoch=on_epoch, gram=(Q[np.ix_(train, train)], X_train)
                )
                m._take_sdca(solver)
            else:
                together.append((m, solver))
        if together:
            # one reading of all the rows each epoch serves every model (mapped once, in memory or as read)
            source, fn = (ArrayRows(mapped.X), None) if mapped is not None else (all_rows, transform)
            solvers = [sv for _, sv in together]
            ckpt = _fold_checkpoint(checkpoint, "together", n_folds)
            if ckpt is not None:
                dim = -1 if fn is not None else source.n_features
                solvers = load_or_start_together(ckpt, solvers, dim)
                for (_, fresh), sv in zip(together, solvers):
                    sv.fold = fresh.fold
            run_together(solvers, source, fn, checkpoint=ckpt, on_epoch=on_epoch)
            for (m, _), sv in zip(together, solvers):
                m._take_sdca(sv)
        return models

    def fit_folds(self, X, y, folds) -> list[OneVsRestSVM]:
        """In memory, the cross-fitting models of ``K`` folds and the final one (:meth:`fit_store_folds`).

        Parameters
        ----------
        X : (n, d) array of float
            The (kernel-mapped) features.
        y : (n, n_labels) 0/1 matrix or (n,) class labels
        folds : (n,) array of int
            The fold of each row, ``0 .. K-1``.

        Returns
        -------
        list of OneVsRestSVM
            ``K + 1`` fitted clones of ``self`` with its ``solver``: model ``k < K`` trained on the rows of
            the other folds, model ``K`` on all rows (each equal to ``clone(self).fit`` on those rows).
        """
        from sklearn.base import clone

        self._check_params()
        X = np.asarray(X)
        folds = _check_folds(folds, len(X))
        y = np.asarray(y)
        n_folds = int(folds.max()) + 1
        out = []
        for k in range(n_folds + 1):
            train = folds != k if k < n_folds else np.ones(len(X), bool)
            out.append(clone(self).fit(X[train], y[train]))
        return out

    def _label_names(self) -> list[str]:
        if self.y_type_ == "binary":
            return [f"class {self.classes_[1]!r} against {self.classes_[0]!r}"]
        return [f"label {c}" if self.y_type_ == "multilabel-indicator" else f"class {c!r}" for c in self.classes_]

    def _fit_sdca(self, source, Y, transform=None, checkpoint=None, on_epoch=None, label_names=None, gram=None):
        from .sdca import load_or_start

        solver = self._sdca_solver(Y, label_names)
        if checkpoint is not None:
            solver = load_or_start(checkpoint, solver, source.n_features if transform is None else -1)
        solver.run(source, transform=transform, checkpoint=checkpoint, on_epoch=on_epoch, gram=gram)
        return self._take_sdca(solver)

    def _sdca_solver(self, Y, label_names=None, within=None):
        """A fresh :class:`~phow_baseline.classification.sdca.SDCASolver` with this estimator's settings."""
        from .sdca import BIAS_MULTIPLIER, SDCASolver

        weights = np.array([class_sample_weights(Y[:, j], self.class_weight) for j in range(Y.shape[1])])
        names = list(label_names) if label_names is not None else self._label_names()
        return SDCASolver(
            Y,
            float(self.C),
            weights,
            float(self.tol),
            self.max_epochs,
            self._seed() or 0,
            BIAS_MULTIPLIER,
            effective_n_jobs(self.n_jobs),
            names,
            within=within,
        )

    def _take_sdca(self, solver):
        """Take a trained solver's weights and records as this estimator's fitted state."""
        self._forget(_SGD_ATTRS)
        self.n_features_in_ = int(solver.n_features or 0)
        self.coef_ = solver.coef.astype(np.float32)
        self.intercept_ = solver.intercept.astype(np.float64)
        self.converged_ = solver.converged.copy()
        self.n_iter_ = solver.n_epochs.copy()
        self.duality_gap_ = solver.duality_gap.copy()
        self.primal_objective_ = solver.primal.copy()
        self.dual_objective_ = solver.dual.copy()
        self.train_time_ = solver.time_s.copy()
        self.duality_gap_history_ = solver.gap_history.copy()
        self.dual_coef_ = solver.alpha
        return self

    def partial_fit(self, X, y, classes=None, y_all=None):
        """One SGD step on a batch (out of core: one feature shard at a time).

        Parameters
        ----------
        X : (m, d) array
        y : (m, n_labels) 0/1 matrix or (m,) class labels
        classes : array, optional
            All class labels; needed on the first call for 1-D ``y``.
        y_all : array, optional
            On the first call: the labels of the whole training set (small:
            n x 14 bytes), which give ``n`` in ``lambda = 1 / (C n)``, the
            ``"balanced"`` class weights and the length of an epoch.  Without
            it the first batch stands in for the training set.


        Returns
        -------
        OneVsRestSVM
            ``self``, updated by one SGD step.

        Notes
        -----
        Every ``n`` rows seen close an epoch: its objective and weight
        change are recorded (``objective_``, ``weight_change_``) and
        ``converged_`` is updated.  The solver is SGD whatever ``solver`` says
        (SDCA's out-of-core path is :meth:`fit_store`).
        """
        first = not hasattr(self, "_sgd")
        if first:
            self._check_params()
        X, y = validate_data(self, X, y, dtype=np.float32, multi_output=True, reset=first)
        if first:
            Yref = self._targets(y_all if y_all is not None else y, classes)
            self._sgd_start(X.shape[1], Yref)
        Y = self._one_vs_rest(y)
        done = self._sgd_step(X, Y)
        while done >= self._epoch_rows:
            self._sgd_end_epoch()
            done -= self._epoch_rows
            self._rows_done = done
        self._sgd_sync()
        return self

    # -- SGD internals ------------------------------------------------------------
    def _seed(self):
        rs = self.random_state
        if rs is None or isinstance(rs, numbers.Integral):
            return rs
        return int(rs.randint(np.iinfo(np.int32).max))

    def _sgd_start(self, n_features, Y_all):
        from sklearn.linear_model import SGDClassifier

        n = len(Y_all)
        self._alpha = 1.0 / (self.C * n)
        self._sgd = [
            SGDClassifier(loss="hinge", alpha=self._alpha, learning_rate="optimal", random_state=self.random_state)
            for _ in range(Y_all.shape[1])
        ]
        self._weights = np.array([class_sample_weights(Y_all[:, j], self.class_weight) for j in range(Y_all.shape[1])])
        self._epoch_rows = n
        self._rows_done = 0
        self._loss_sum = np.zeros(Y_all.shape[1])
        self._prev = None
        self._forget(_SDCA_ATTRS)
        self.n_features_in_ = n_features
        self.objective_ = np.zeros((0, Y_all.shape[1]))
        self.weight_change_ = np.zeros((0, Y_all.shape[1]))
        self.n_iter_ = np.zeros(Y_all.shape[1], np.int64)
        self.converged_ = np.zeros(Y_all.shape[1], bool)

    def _sgd_weights(self):
        if not hasattr(self._sgd[0], "coef_"):
            return np.zeros((len(self._sgd), self.n_features_in_ + 1))
        return np.stack([np.concatenate([c.coef_[0], c.intercept_]) for c in self._sgd])

    def _sgd_step(self, Xb, Yb):
        """Progressive loss of the batch, then one partial_fit per label; returns rows seen this epoch."""
        Xb = np.asarray(Xb, np.float64)
        sw = np.where(Yb == 1, self._weights[None, :, 1], self._weights[None, :, 0])
        if hasattr(self._sgd[0], "coef_"):
            W = self._sgd_weights()
            margin = (2.0 * Yb - 1.0) * (Xb @ W[:, :-1].T + W[:, -1])
            self._loss_sum += (sw * np.maximum(0.0, 1.0 - margin)).sum(0)
        else:
            self._loss_sum += sw.sum(0)  # w = 0: every hinge is 1
        classes = np.array([0, 1])

        def step(j):
            self._sgd[j].partial_fit(Xb, Yb[:, j], classes=classes, sample_weight=sw[:, j])

        # the labels' SVMs are independent and scikit-learn's SGD loop runs without the GIL: one thread per
        # core, each label's result the same as in a loop
        threads = min(effective_n_jobs(self.n_jobs), len(self._sgd))
        if threads > 1:
            with ThreadPoolExecutor(threads) as pool:
                list(pool.map(step, range(len(self._sgd))))
        else:
            for j in range(len(self._sgd)):
                step(j)
        self._rows_done += len(Xb)
        return self._rows_done

    def _sgd_end_epoch(self):
        W = self._sgd_weights()
        obj = 0.5 * self._alpha * (W[:, :-1] ** 2).sum(1) + self._loss_sum / self._epoch_rows
        prev = self._prev if self._prev is not None else np.zeros_like(W)
        change = np.linalg.norm(W - prev, axis=1) / np.maximum(np.linalg.norm(W, axis=1), np.finfo(float).tiny)
        self.objective_ = np.vstack([self.objective_, obj])
        self.weight_change_ = np.vstack([self.weight_change_, change])
        self.n_iter_ = self.n_iter_ + 1
        self.converged_ = change < self.tol
        self._prev = W
        self._loss_sum = np.zeros_like(self._loss_sum)
        self._rows_done = 0

    def _sgd_sync(self):
        W = self._sgd_weights()
        self.coef_ = W[:, :-1].astype(np.float32)
        self.intercept_ = W[:, -1].astype(np.float64)

    # -- SGD checkpoints (resume out-of-core training after the last complete epoch) ----------------------
    def sgd_checkpoint(self) -> dict:
        """The SGD state at the end of an epoch, as arrays (no pickles).

        What :meth:`restore_sgd_checkpoint` needs to go on exactly as if never stopped.

        Returns
        -------
        dict of str to ndarray
            The arrays to save in an ``.npz`` (``allow_pickle=False``).

        Per label: scikit-learn's ``coef_``, ``intercept_`` and step counter
        ``t_`` (which sets the learning rate); and the epochs' objective and
        weight change, the previous epoch's weights, the class weights and
        ``lambda``.  Only at an epoch's end (no partial epoch is kept).
        """
        if not hasattr(self, "_sgd") or self._rows_done != 0:
            raise ValueError("an SGD checkpoint is taken at the end of an epoch of partial_fit")
        W = self._sgd_weights()
        return {
            "coef": W[:, :-1],
            "intercept": W[:, -1],
            "t": np.array([getattr(c, "t_", 1.0) for c in self._sgd], np.float64),
            "started": np.array([hasattr(c, "coef_") for c in self._sgd]),
            "objective": self.objective_,
            "weight_change": self.weight_change_,
            "n_iter": self.n_iter_,
            "converged": self.converged_,
            "prev": self._prev if self._prev is not None else np.zeros_like(W),
            "has_prev": np.array(self._prev is not None),
            "alpha": np.array(self._alpha),
            "weights": self._weights,
            "epoch_rows": np.array(self._epoch_rows),
            "classes": self.classes_,
            "y_type": np.array(self.y_type_),
            "n_features_in": np.array(self.n_features_in_),
        }

    def restore_sgd_checkpoint(self, arrays: dict) -> OneVsRestSVM:
        """Continue SGD training from :meth:`sgd_checkpoint`'s arrays.

        The next ``partial_fit`` starts the following epoch; the result equals an
        uninterrupted run's bit for bit.

        Parameters
        ----------
        arrays : dict of str to ndarray
            What :meth:`sgd_checkpoint` returned (read back from its ``.npz``).

        Returns
        -------
        OneVsRestSVM
            ``self``, ready for the next epoch.
        """
        from sklearn.linear_model import SGDClassifier

        self._check_params()
        self._forget(_SDCA_ATTRS)
        coef = np.asarray(arrays["coef"], np.float64)
        n_models, d = coef.shape
        self.classes_ = np.asarray(arrays["classes"])
        self.y_type_ = str(arrays["y_type"])
        self.n_features_in_ = int(arrays["n_features_in"])
        if self.n_features_in_ != d:
            raise ValueError(f"SGD checkpoint: {d} weights per label for {self.n_features_in_} features")
        self._alpha = float(arrays["alpha"])
        self._sgd = []
        for j in range(n_models):
            c = SGDClassifier(loss="hinge", alpha=self._alpha, learning_rate="optimal", random_state=self.random_state)
            if bool(arrays["started"][j]):
                # what partial_fit keeps between calls (average=False): the weights, the classes, the step
                c.coef_ = coef[j : j + 1].copy()
                c.intercept_ = np.array([float(arrays["intercept"][j])])
                c.t_ = float(arrays["t"][j])
                c.classes_ = np.array([0, 1])
                c.n_features_in_ = d
            self._sgd.append(c)
        self._weights = np.asarray(arrays["weights"], np.float64)
        self._epoch_rows = int(arrays["epoch_rows"])
        self._rows_done = 0
        self._loss_sum = np.zeros(n_models)
        self._prev = np.asarray(arrays["prev"], np.float64) if bool(arrays["has_prev"]) else None
        self.objective_ = np.asarray(arrays["objective"], np.float64).reshape(-1, n_models)
        self.weight_change_ = np.asarray(arrays["weight_change"], np.float64).reshape(-1, n_models)
        self.n_iter_ = np.asarray(arrays["n_iter"], np.int64)
        self.converged_ = np.asarray(arrays["converged"], bool)
        self._sgd_sync()
        return self

    @property
    def sgd_epochs_done(self) -> int:
        """Complete SGD epochs (0 before any)."""
        return len(getattr(self, "objective_", ()))

    def convergence(self) -> dict:
        """How the training went, for ``metrics.json``: plain lists, one entry per label or class.

        Returns
        -------
        dict
            ``solver``, ``n_iter``, ``converged`` and the solver's own record (SGD: objective and weight
            change per epoch; SDCA: duality gap, primal and dual objectives, epochs and seconds per class).
        """
        check_is_fitted(self)
        sdca = hasattr(self, "duality_gap_")
        out = {
            "solver": "sdca" if sdca else "sgd" if hasattr(self, "objective_") else "liblinear",
            "n_iter": self.n_iter_.tolist(),
            "converged": self.converged_.tolist(),
            "all_converged": bool(self.converged_.all()),
        }
        if sdca:
            from .sdca import BIAS_MULTIPLIER, DEFAULT_MAX_EPOCHS

            out.update(
                tol=float(self.tol),
                stopping="(P(w) - D(alpha)) / P(w) < tol: VLFeat's duality gap "
                "(objectives are means over the rows) relative to the primal",
                max_epochs=int(self.max_epochs or DEFAULT_MAX_EPOCHS),
                bias_multiplier=BIAS_MULTIPLIER,
                duality_gap=_json_floats(self.duality_gap_),
                primal_objective=_json_floats(self.primal_objective_),
                dual_objective=_json_floats(self.dual_objective_),
                time_s=_json_floats(self.train_time_),
                duality_gap_per_epoch=[_json_floats(r) for r in self.duality_gap_history_],
            )
        elif hasattr(self, "objective_"):
            out.update(
                tol=float(self.tol),
                objective_per_epoch=self.objective_.tolist(),
                weight_change_per_epoch=self.weight_change_.tolist(),
            )
        else:
            out.update(max_iter=int(self.max_iter))
        return out

    # -- scoring --------------------------------------------------------------
    def decision_function(self, X) -> np.ndarray:
        """The SVM margins ``X @ coef_.T + intercept_``.

        Parameters
        ----------
        X : (n, d) array of float
            Features, as in :meth:`fit`.

        Returns
        -------
        ndarray of float32
            One signed margin per label, ``(n, n_labels)`` (``(n,)`` for a two-class 1-D target).
        """
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float32, reset=False)
        S = X @ self.coef_.T + self.intercept_
        return S[:, 0] if self.y_type_ == "binary" else S

    def predict(self, X) -> np.ndarray:
        """The 0/1 label matrix (multilabel), or the class of each row.

        Parameters
        ----------
        X : (n, d) array of float
            Features, as in :meth:`fit`.

        Returns
        -------
        ndarray
            ``(n, n_labels)`` 0/1 (a margin above 0 is a positive call), or ``(n,)`` classes.
        """
        S = self.decision_function(X)
        if self.y_type_ == "multilabel-indicator":
            return (S > 0).astype(self.classes_.dtype)
        if self.y_type_ == "binary":
            return self.classes_[(S > 0).astype(np.intp)]
        return self.classes_[S.argmax(axis=1)]

    # -- persistence as data ------------------------------------------------------
    def to_arrays(self) -> dict:
        """The fitted SVMs as named arrays for the model directory (no pickles).

        Returns
        -------
        dict of str to ndarray
            ``coef``, ``intercept``, ``converged``, ``n_iter``, ``classes``, ``y_type``, and the solver's
            record: SGD's ``objective`` and ``weight_change``, or SDCA's ``duality_gap``,
            ``primal_objective``, ``dual_objective``, ``train_time``, ``duality_gap_history``.
        """
        out = {
            "coef": self.coef_,
            "intercept": self.intercept_,
            "converged": self.converged_,
            "n_iter": self.n_iter_,
            "classes": self.classes_,
            "y_type": np.array(self.y_type_),
        }
        if hasattr(self, "objective_"):
            out.update(objective=self.objective_, weight_change=self.weight_change_)
        if hasattr(self, "duality_gap_"):
            out.update(
                duality_gap=self.duality_gap_,
                primal_objective=self.primal_objective_,
                dual_objective=self.dual_objective_,
                train_time=self.train_time_,
                duality_gap_history=self.duality_gap_history_,
            )
        return out

    @classmethod
    def from_arrays(cls, params: dict, arrays: dict) -> OneVsRestSVM:
        """A fitted estimator from its parameters and :meth:`to_arrays`'s arrays.

        Parameters
        ----------
        params : dict
            Constructor parameters (``seed`` is read as ``random_state``, as saved before the rename).
        arrays : dict of str to ndarray

        Returns
        -------
        OneVsRestSVM
        """
        params = dict(params)
        if "seed" in params:  # models saved before the random_state rename
            params["random_state"] = params.pop("seed")
        m = cls(**params)
        m.coef_ = np.asarray(arrays["coef"], np.float32)
        m.intercept_ = np.asarray(arrays["intercept"], np.float64)
        m.converged_ = np.asarray(arrays["converged"], bool)
        m.n_features_in_ = m.coef_.shape[1]
        n = len(m.coef_)
        m.n_iter_ = np.asarray(arrays["n_iter"], np.int64) if "n_iter" in arrays else np.zeros(n, np.int64)
        m.classes_ = np.asarray(arrays["classes"]) if "classes" in arrays else np.arange(n, dtype=np.uint8)
        m.y_type_ = str(arrays["y_type"]) if "y_type" in arrays else "multilabel-indicator"
        if "objective" in arrays:
            m.objective_ = np.asarray(arrays["objective"], np.float64)
            m.weight_change_ = np.asarray(arrays["weight_change"], np.float64)
        if "duality_gap" in arrays:
            m.duality_gap_ = np.asarray(arrays["duality_gap"], np.float64)
            m.primal_objective_ = np.asarray(arrays["primal_objective"], np.float64)
            m.dual_objective_ = np.asarray(arrays["dual_objective"], np.float64)
            m.train_time_ = np.asarray(arrays["train_time"], np.float64)
            m.duality_gap_history_ = np.asarray(arrays["duality_gap_history"], np.float64).reshape(-1, n)
        return m


#: Fitted attributes of one solver that another solver's fit removes.
_SGD_ATTRS = ("objective_", "weight_change_")
_SDCA_ATTRS = (
    "duality_gap_",
    "primal_objective_",
    "dual_objective_",
    "train_time_",
    "duality_gap_history_",
    "dual_coef_",
)


def _check_folds(folds, n) -> np.ndarray:
    """``folds`` as an int64 vector of ``n`` fold ids ``0 .. K-1``, every fold present, ``K >= 2``."""
    f = np.asarray(folds)
    if f.shape != (n,) or not (np.issubdtype(f.dtype, np.integer) or (f.size and np.all(f == np.round(f)))):
        raise ValueError(f"folds must be {n} integer fold ids (one per row), got shape {f.shape} of {f.dtype}")
    f = f.astype(np.int64)
    if n == 0 or f.min() < 0:
        raise ValueError("folds must be fold ids 0 .. K-1 (no negative id, at least one row)")
    missing = np.setdiff1d(np.arange(f.max() + 1), f)
    if f.max() < 1 or len(missing):
        raise ValueError(
            f"folds must number 0 .. K-1 with K >= 2 and each fold holding a row; got K = {f.max() + 1}"
            + (f", folds {missing.tolist()} empty" if len(missing) else "")
        )
    return f


def _fold_checkpoint(checkpoint, k, n_folds):
    """Model ``k``'s checkpoint beside ``checkpoint``: ``<stem>.fold<k><suffix>``, ``.all`` for ``k = K``,
    ``.together`` for the models trained together.
    """
    if checkpoint is None:
        return None
    from pathlib import Path

    p = Path(checkpoint)
    tag = k if isinstance(k, str) else f"fold{k}" if k < n_folds else "all"
    return p.with_name(f"{p.stem}.{tag}{p.suffix or '.npz'}")


def _json_floats(values) -> list:
    """Floats for JSON: NaN (a label stopped before that epoch, or not certified) becomes None."""
    return [None if not np.isfinite(v) else float(v) for v in np.asarray(values, np.float64).ravel()]
