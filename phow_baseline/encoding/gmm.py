"""Diagonal-covariance Gaussian mixture vocabulary for Fisher vectors, fitted as VLFeat's ``vl_gmm`` does.

The mixture ``p(x) = sum_k pi_k N(x; mu_k, diag(sigma_k^2))`` is fitted by
expectation-maximisation (EM) on a sample of (post-processed) descriptors,
following ``vl/gmm.c`` (VLFeat 0.9.21):

- **Initialisation from k-means** (``VlGMMKMeans``): the data are
  clustered by k-means, then one M step on the hard assignments gives the
  means (cluster centres), the variances (of each cluster's points, per
  dimension) and the priors (each cluster's share of the points).  VLFeat
  runs 5 iterations of its approximate k-means; here scikit-learn's
  ``KMeans`` (k-means++, ``kmeans_max_iter`` Lloyd iterations) does it.
- **Variance floor**: after every M step each variance is raised to at
  least ``covariance_bound`` (``vl_gmm_new`` sets ``1e-4`` in every
  dimension; a scalar or a per-dimension vector).  Raising a variance to
  the bound is the exact maximiser of the EM objective under that
  constraint, so the floor keeps EM monotone.
- **Stopping**: after ``max_iter`` M steps, or once the relative change
  of the log-likelihood ``|(L_t - L_{t-1}) / L_t|`` falls below ``tol``
  (VLFeat: ``1e-5``).
- **Empty modes** (``_vl_gmm_restart_empty_modes``, from the third E step
  on): a component whose posterior mass is below
  ``0.01 max(1, n / K)`` is restarted by splitting the component with the
  largest entropy contribution ``pi_j (D/2 (1 + log 2 pi) + 1/2 sum log
  sigma_j^2 - log pi_j)`` along its dimension of largest variance: the
  points below that component's mean in that dimension go to the empty
  one.  A restart may lower the log-likelihood once.
- Components with a prior below ``1e-6`` get no posterior mass
  (``VL_GMM_MIN_PRIOR``).

Differences from VLFeat, all deliberate: the E step is one GEMM per chunk
of the ``||x||^2 - 2 x.m + ||m||^2`` expansion with the precisions folded
in (:func:`log_joint_table`), in float64 during fitting; the M step is a
second GEMM (posteriors^T @ [x^2, x, 1]) over all posteriors, without
VLFeat's speed-up that skips posteriors below ``0.01 / K`` (an
approximation); the mixture is fitted once (VLFeat's ``NumRepetitions`` is 1
by default too).

The fitted mixture is data: :meth:`GaussianMixtureVocabulary.to_arrays`
gives a dict of numpy arrays (means, covariances, priors, ...) that
:meth:`GaussianMixtureVocabulary.from_arrays` reads back.
"""

from __future__ import annotations

import logging
import math

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import validate_data

logger = logging.getLogger(__name__)

#: Gaussians in the mixture by default: the issue's best (PCA 80 + 256).
DEFAULT_N_COMPONENTS = 256
#: ``vl_gmm_new``: lower bound of every diagonal variance.
VLFEAT_COVARIANCE_BOUND = 1e-4
#: ``_vl_gmm_em``: EM stops when the relative log-likelihood change is below this.
VLFEAT_TOL = 1e-5
#: ``VL_GMM_MIN_PRIOR``: components with a smaller prior get no posterior mass.
MIN_PRIOR = 1e-6
#: ``VL_GMM_MIN_POSTERIOR``: a component with mass below this times
#: ``max(1, n / K)`` is restarted.
MIN_POSTERIOR = 1e-2
#: Rows per E-step chunk while fitting (8192 x 256 float64 = 16 MB).
FIT_CHUNK = 8192


# --------------------------------------------------------------------------
# The GEMM form of the Gaussian log-likelihoods
# --------------------------------------------------------------------------


def log_joint_table(means, covariances, priors, dtype=np.float32) -> np.ndarray:
    """The ``(2d + 1, K)`` matrix ``B`` with ``[x^2, x, 1] @ B = log(pi_k N(x; mu_k, sigma_k^2))``.

    With precisions ``p_kj = 1 / sigma_kj^2``,
    ``log pi_k N(x) = log pi_k - d/2 log(2 pi) - 1/2 sum_j log sigma_kj^2
    - 1/2 sum_j p_kj x_j^2 + sum_j p_kj mu_kj x_j - 1/2 sum_j p_kj mu_kj^2``:
    rows ``0..d-1`` of ``B`` hold ``-p/2``, rows ``d..2d-1`` hold ``p mu`` and
    the last row the constant (computed in float64, then cast).  Components
    whose prior is below :data:`MIN_PRIOR` get ``-inf`` in the last row.

    Parameters
    ----------
    means : (K, d) array
        Component means ``mu_k`` (descriptor units).
    covariances : (K, d) array
        Diagonal variances ``sigma_k^2``, all > 0 (squared descriptor units).
    priors : (K,) array
        Mixture weights ``pi_k``, non-negative, summing to 1.
    dtype : numpy dtype
        Dtype of the table (default float32, the encoders'; float64 while fitting).

    Returns
    -------
    (2d + 1, K) array of ``dtype``
        ``B``, C-contiguous: ``[x^2, x, 1] @ B`` gives the log-joints in nats.

    Raises
    ------
    ValueError
        If the shapes disagree or a variance is not positive.
    """
    M = np.asarray(means, np.float64)
    S = np.asarray(covariances, np.float64)
    w = np.asarray(priors, np.float64)
    K, d = M.shape
    if S.shape != (K, d) or w.shape != (K,):
        raise ValueError(f"means {M.shape}, covariances {S.shape} and priors {w.shape} do not match")
    if not np.all(S > 0):
        raise ValueError("covariances must be positive")
    P = 1.0 / S
    B = np.empty((2 * d + 1, K), np.float64)
    B[:d] = -0.5 * P.T
    B[d : 2 * d] = (P * M).T
    with np.errstate(divide="ignore"):
        logw = np.where(w >= MIN_PRIOR, np.log(np.maximum(w, 1e-300)), -np.inf)
    B[2 * d] = logw - 0.5 * d * math.log(2 * math.pi) - 0.5 * np.log(S).sum(1) - 0.5 * (P * M * M).sum(1)
    return np.ascontiguousarray(B, dtype=dtype)


def augment(X, out=None, dtype=np.float32) -> np.ndarray:
    """``[x^2, x, 1]`` of each row of ``X``, the left operand of both GEMMs (E and M steps).

    Parameters
    ----------
    X : (n, d) array
        Descriptors.
    out : (n, 2d + 1) array, optional
        Where to write the result (its dtype wins over ``dtype``).
    dtype : numpy dtype
        Dtype of a new output (default float32).

    Returns
    -------
    (n, 2d + 1) array
        Columns ``0..d-1`` the squares ``x^2``, ``d..2d-1`` the values ``x``, the last 1.
    """
    X = np.asarray(X)
    n, d = X.shape
    if out is None:
        out = np.empty((n, 2 * d + 1), dtype)
    out[:, d : 2 * d] = X
    np.multiply(out[:, d : 2 * d], out[:, d : 2 * d], out=out[:, :d])
    out[:, 2 * d] = 1.0
    return out


def softmax_rows(L) -> np.ndarray:
    """Turn log-joints into posteriors in place; return the log-likelihood of each row.

    ``q_ik = exp(L_ik - max_k L_ik) / sum_k exp(L_ik - max_k L_ik)`` and
    ``log p(x_i) = max_k L_ik + log sum_k exp(L_ik - max_k L_ik)`` (as
    ``vl_get_gmm_data_posteriors`` does).

    Parameters
    ----------
    L : (n, K) float32 or float64 array
        Log-joints ``log pi_k N(x_i; mu_k, sigma_k^2)`` (nats), each row with at least
        one finite entry; overwritten with the posteriors ``q_ik`` (rows summing to 1).

    Returns
    -------
    (n,) float64
        ``log p(x_i)``, the log-likelihood of each row in nats.
    """
    m = L.max(axis=1, keepdims=True)
    L -= m
    np.exp(L, out=L)
    s = L.sum(axis=1, keepdims=True, dtype=np.float64)
    L /= s.astype(L.dtype)
    return (np.log(s) + m.astype(np.float64))[:, 0]


def gmm_posteriors(X, means, covariances, priors, dtype=np.float64):
    """Posteriors ``q`` ``(n, K)`` and the total log-likelihood of ``X`` under a diagonal GMM.

    Plain numpy (one GEMM of :func:`augment` against :func:`log_joint_table`),
    then :func:`softmax_rows`.

    Parameters
    ----------
    X : (n, d) array
        Descriptors.
    means : (K, d) array
        Component means.
    covariances : (K, d) array
        Diagonal variances, > 0.
    priors : (K,) array
        Mixture weights.
    dtype : numpy dtype
        Precision of the GEMM and of ``q`` (default float64).

    Returns
    -------
    q : (n, K) array of ``dtype``
        Posterior probability of each component for each row, in [0, 1], rows summing to 1.
    log_likelihood : float
        ``sum_i log p(x_i)``, in nats.

    Raises
    ------
    ValueError
        If ``X`` and the mixture differ in dimension.
    """
    X = np.asarray(X)
    B = log_joint_table(means, covariances, priors, dtype)
    if X.shape[1] != (B.shape[0] - 1) // 2:
        raise ValueError(f"data have {X.shape[1]} dims, the mixture {(B.shape[0] - 1) // 2}")
    L = augment(X, dtype=dtype) @ B
    ll = softmax_rows(L)
    return L, float(ll.sum())


# --------------------------------------------------------------------------
# The estimator
# --------------------------------------------------------------------------


class GaussianMixtureVocabulary(BaseEstimator):
    """A diagonal Gaussian mixture fitted by EM from a k-means start, as ``vl_gmm`` does.

    See the module docstring for the algorithm and where it follows VLFeat.

    Parameters
    ----------
    n_components : int
        Gaussians ``K`` (default 256).
    max_iter : int
        EM iterations at most (VLFeat: 100).
    tol : float
        Relative log-likelihood change that stops EM (VLFeat: 1e-5).
    covariance_bound : float or (d,) array
        Lower bound of the variances (VLFeat's C default ``1e-4``; note it
        is absolute, so it depends on the scale of the descriptors: RootSIFT
        vectors have unit norm).
    kmeans_max_iter : int
        Lloyd iterations of the initial k-means.
    restart_empty : bool
        Restart nearly empty components as VLFeat does.
    random_state : int, RandomState or None
        Seeds k-means.
    verbose : bool
        Print the log-likelihood of every EM iteration to stderr.

    Attributes
    ----------
    means_ : (K, d) float32
        Component means (descriptor units).
    covariances_ : (K, d) float32
        Diagonal variances (squared descriptor units), at least ``covariance_bound_``.
    priors_ : (K,) float32
        Mixture weights, summing to 1.
    covariance_bound_ : (d,) float64
        The variance floor applied.
    log_likelihood_ : float
        Total log-likelihood of the training data under the fitted mixture (nats;
        NaN for a mixture read without history).
    log_likelihood_history_ : (n_iter_ + 1,) float64
        Log-likelihood at each E step (the first: the k-means start).
    restarts_ : (n_iter_ + 1,) int
        Components restarted after each E step.
    n_iter_ : int
        M steps done after the initialisation.
    converged_ : bool or None
        Whether EM stopped on ``tol`` (not ``max_iter``); None for a mixture read
        by :meth:`from_arrays`.
    n_features_in_ : int
        Descriptor dimension ``d``.
    """

    # EM's working state (float64), set during fit and deleted at its end
    _means: np.ndarray
    _vars: np.ndarray
    _priors: np.ndarray

    def __init__(
        self,
        n_components=DEFAULT_N_COMPONENTS,
        max_iter=100,
        tol=VLFEAT_TOL,
        covariance_bound=VLFEAT_COVARIANCE_BOUND,
        kmeans_max_iter=20,
        restart_empty=True,
        random_state=0,
        verbose=False,
    ):
        self.n_components = n_components
        self.max_iter = max_iter
        self.tol = tol
        self.covariance_bound = covariance_bound
        self.kmeans_max_iter = kmeans_max_iter
        self.restart_empty = restart_empty
        self.random_state = random_state
        self.verbose = verbose

    # -- fitting ----------------------------------------------------------------
    def _validate(self, X):
        X = validate_data(self, X, dtype=[np.float64, np.float32])
        K = int(self.n_components)
        if K < 1:
            raise ValueError(f"n_components must be at least 1, got {self.n_components}")
        if len(X) < K:
            raise ValueError(f"{len(X)} descriptors cannot fit {K} Gaussians")
        if int(self.max_iter) < 0:
            raise ValueError(f"max_iter must be non-negative, got {self.max_iter}")
        if not self.tol >= 0:
            raise ValueError(f"tol must be non-negative, got {self.tol}")
        if not np.all(np.isfinite(X)):
            raise ValueError("X holds NaN or infinite values")
        bound = np.broadcast_to(np.asarray(self.covariance_bound, np.float64), (X.shape[1],)).copy()
        if not np.all(bound >= 0):
            raise ValueError("covariance_bound must be non-negative")
        return np.ascontiguousarray(X, dtype=np.float64), K, bound

    def _stats(self, A, Q):
        """Sufficient statistics ``Q^T [x^2, x, 1]``: (K, 2d + 1) float64 (the M-step GEMM)."""
        return Q.T @ A

    def _m_step(self, G, d):
        """Means, variances (floored) and priors from the statistics ``G`` (K, 2d + 1)."""
        S2, S1, S0 = G[:, :d], G[:, d : 2 * d], G[:, 2 * d]
        live = S0 >= 1e-6 / len(S0)  # VLFeat: modes without mass are not updated
        mean = self._means.copy()
        var = self._vars.copy()
        mean[live] = S1[live] / S0[live, None]
        var[live] = S2[live] / S0[live, None] - mean[live] ** 2
        self._means, self._vars = mean, np.maximum(var, self.covariance_bound_)
        self._priors = S0 / max(S0.sum(), 1e-12)

    def _e_step(self, A, B, keep_posteriors=False):
        """Log-likelihood, sufficient statistics and (optionally) float32 posteriors of all rows.

        ``B`` is :func:`log_joint_table` of the current mixture.
        """
        K = B.shape[1]
        G = np.zeros((K, A.shape[1]), np.float64)
        Q_all: np.ndarray | None = np.empty((len(A), K), np.float32) if keep_posteriors else None
        ll = 0.0
        for s in range(0, len(A), FIT_CHUNK):
            a = A[s : s + FIT_CHUNK]
            L = a @ B
            ll += float(softmax_rows(L).sum())
            G += self._stats(a, L)
            if Q_all is not None:
                Q_all[s : s + FIT_CHUNK] = L
        return ll, G, Q_all

    def _restart_empty_modes(self, X, A, B, G):
        """VLFeat's ``_vl_gmm_restart_empty_modes``; returns (restarted count, new statistics).

        The posteriors (of the mixture ``B``) are recomputed, and kept, only
        when some component is nearly empty.
        """
        n, d = X.shape
        K = len(G)
        mass = G[:, 2 * d].copy()
        limit = MIN_POSTERIOR * max(1.0, n / K)
        empty = np.flatnonzero(mass < limit)
        if K <= 1 or len(empty) == 0:
            return 0, G
        Q = self._e_step(A, B, keep_posteriors=True)[2]
        count = 0
        for i in empty:
            ok = self._priors >= MIN_PRIOR
            with np.errstate(divide="ignore", invalid="ignore"):
                size = self._priors * (
                    0.5 * d * (1 + math.log(2 * math.pi)) + 0.5 * np.log(self._vars).sum(1) - np.log(self._priors)
                )
            size[~ok] = -np.inf
            j = int(np.argmax(size))
            if j == i or not np.isfinite(size[j]):
                continue
            b = int(np.argmax(self._vars[j]))
            below = X[:, b] < self._means[j, b]
            q = Q[:, i].astype(np.float64) + Q[:, j]
            Q[:, i] = np.where(below, q, 0.0)
            Q[:, j] = np.where(below, 0.0, q)
            G[i] = Q[:, i].astype(np.float64) @ A
            G[j] = Q[:, j].astype(np.float64) @ A
            self._m_step(G, d)
            count += 1
        return count, G

    def fit(self, X, y=None):
        """Fit the mixture on descriptors (already post-processed: RootSIFT, PCA): k-means, then EM.

        Parameters
        ----------
        X : (n, d) float32 or float64 array
            Descriptors, finite, ``n >= n_components``.
        y : None
            Ignored.

        Returns
        -------
        GaussianMixtureVocabulary
            ``self``, fitted.

        Raises
        ------
        ValueError
            If a parameter is out of range, ``X`` holds NaN/inf or has fewer rows than components.
        """
        from sklearn.cluster import KMeans

        X, K, bound = self._validate(X)
        n, d = X.shape
        self.covariance_bound_ = bound
        km = KMeans(
            K, init="k-means++", n_init=1, max_iter=int(self.kmeans_max_iter), random_state=self.random_state
        ).fit(X.astype(np.float32))
        A = augment(X, dtype=np.float64)
        # one M step on the hard k-means assignments: sums of each cluster's [x^2, x, 1]
        G = np.zeros((K, 2 * d + 1))
        order = np.argsort(km.labels_, kind="stable")
        labels = km.labels_[order]
        starts = np.flatnonzero(np.r_[True, labels[1:] != labels[:-1]])
        G[labels[starts]] = np.add.reduceat(A[order], starts, axis=0)
        self._means = np.zeros((K, d))
        self._vars = np.ones((K, d))
        self._m_step(G, d)
        history, restarts = [], []
        prev = -np.inf
        converged = False
        it = 0
        while True:
            B = log_joint_table(self._means, self._vars, self._priors, np.float64)
            ll, G, _ = self._e_step(A, B)
            history.append(ll)
            if self.verbose:
                change = ll - prev if np.isfinite(prev) else float("nan")
                logger.info("gmm: em: iteration %d: log-likelihood %.6g (change %.4g)", it, ll, change)
            if it >= int(self.max_iter):
                restarts.append(0)
                break
            if it > 0 and abs((ll - prev) / ll) < self.tol:
                converged = True
                restarts.append(0)
                break
            prev = ll
            r = 0
            if self.restart_empty and it > 1:
                r, G = self._restart_empty_modes(X, A, B, G)
            restarts.append(r)
            self._m_step(G, d)
            it += 1
        self.means_ = self._means.astype(np.float32)
        self.covariances_ = self._vars.astype(np.float32)
        self.priors_ = self._priors.astype(np.float32)
        del self._means, self._vars, self._priors
        self.log_likelihood_ = float(history[-1])
        self.log_likelihood_history_ = np.asarray(history)
        self.restarts_ = np.asarray(restarts, np.int64)
        self.n_iter_ = it
        self.converged_: bool | None = converged
        self.n_features_in_ = d
        return self

    # -- use --------------------------------------------------------------------
    def _check(self):
        if not hasattr(self, "means_"):
            raise NotFittedError("GaussianMixtureVocabulary is not fitted: call fit (or from_arrays) first")

    def predict_proba(self, X) -> np.ndarray:
        """Posterior probability of each component for each row (:func:`gmm_posteriors`).

        Parameters
        ----------
        X : (n, d) float32 or float64 array
            Descriptors.

        Returns
        -------
        (n, K) float64
            Posteriors in [0, 1], rows summing to 1.
        """
        self._check()
        X = validate_data(self, X, dtype=[np.float64, np.float32], reset=False)
        return gmm_posteriors(X, self.means_, self.covariances_, self.priors_)[0]

    def predict(self, X) -> np.ndarray:
        """Most probable component of each row.

        Parameters
        ----------
        X : (n, d) float32 or float64 array
            Descriptors.

        Returns
        -------
        (n,) int64
            Index of the component of largest posterior, in ``[0, K)``.
        """
        return self.predict_proba(X).argmax(axis=1)

    def score(self, X, y=None) -> float:
        """Mean log-likelihood per row (scikit-learn's convention).

        Parameters
        ----------
        X : (n, d) float32 or float64 array
            Descriptors.
        y : None
            Ignored.

        Returns
        -------
        float
            ``sum_i log p(x_i) / n``, in nats per descriptor.
        """
        self._check()
        X = validate_data(self, X, dtype=[np.float64, np.float32], reset=False)
        return gmm_posteriors(X, self.means_, self.covariances_, self.priors_)[1] / max(len(X), 1)

    # -- storage as data ---------------------------------------------------------
    def to_arrays(self) -> dict:
        """The fitted mixture as numpy arrays (``np.savez`` them; no pickle).

        Returns
        -------
        dict of str to ndarray
            ``means`` and ``covariances`` (K, d) float32, ``priors`` (K,) float32,
            ``covariance_bound`` (d,) float64, ``log_likelihood_history`` (n_iter_ + 1,)
            float64 and ``restarts`` (n_iter_ + 1,) int64.
        """
        self._check()
        return {
            "means": self.means_,
            "covariances": self.covariances_,
            "priors": self.priors_,
            "covariance_bound": self.covariance_bound_,
            "log_likelihood_history": self.log_likelihood_history_,
            "restarts": self.restarts_,
        }

    @classmethod
    def from_arrays(cls, arrays: dict, **params) -> GaussianMixtureVocabulary:
        """Rebuild a fitted mixture from :meth:`to_arrays`'s output (checks shapes and values).

        Parameters
        ----------
        arrays : mapping of str to array
            At least ``means``, ``covariances`` and ``priors``; ``covariance_bound``,
            ``log_likelihood_history`` and ``restarts`` are optional.
        **params
            Other constructor parameters of the estimator (``n_components`` is the
            number of means).

        Returns
        -------
        GaussianMixtureVocabulary
            A fitted mixture (``converged_`` None).

        Raises
        ------
        ValueError
            If an array is missing, the shapes disagree, or a variance is not positive,
            a prior negative or a mean not finite.
        """
        try:
            M = np.ascontiguousarray(arrays["means"], np.float32)
            S = np.ascontiguousarray(arrays["covariances"], np.float32)
            w = np.ascontiguousarray(arrays["priors"], np.float32)
        except KeyError as e:
            raise ValueError(f"mixture arrays lack {e.args[0]!r}") from None
        if M.ndim != 2 or S.shape != M.shape or w.shape != (len(M),):
            raise ValueError(
                f"mixture arrays have inconsistent shapes: means {M.shape}, covariances {S.shape}, priors {w.shape}"
            )
        if not (np.all(S > 0) and np.all(w >= 0) and np.all(np.isfinite(M))):
            raise ValueError("mixture arrays hold non-positive variances, negative priors or non-finite means")
        g = cls(n_components=len(M), **params)
        g.means_, g.covariances_, g.priors_ = M, S, w
        d = M.shape[1]
        g.covariance_bound_ = np.asarray(arrays.get("covariance_bound", np.zeros(d)), np.float64)
        hist = np.asarray(arrays.get("log_likelihood_history", np.array([np.nan])), np.float64)
        g.log_likelihood_history_ = hist
        g.log_likelihood_ = float(hist[-1]) if len(hist) else float("nan")
        g.restarts_ = np.asarray(arrays.get("restarts", np.zeros(len(hist))), np.int64)
        g.n_iter_ = max(len(hist) - 1, 0)
        g.converged_ = None
        g.n_features_in_ = d
        return g
