"""Descriptor post-processing before a Fisher vector or VLAD: RootSIFT and PCA.

RootSIFT (Arandjelovic and Zisserman 2012, "Three things everyone should know
to improve object retrieval") maps a SIFT descriptor ``x >= 0`` to
``sqrt(x / ||x||_1)``: the Euclidean distance between RootSIFT vectors is
then the Hellinger kernel distance between the original histograms.  PCA
(decorrelation, and usually a reduction to 64 or 80 dimensions) follows, as
in Perronnin, Sanchez and Mensink 2010 and Chatfield et al. 2011, because the
Gaussian mixture that a Fisher vector uses has diagonal covariances.

Both work on plain ``(n, d)`` arrays; :class:`PCA` stores itself as a dict of
numpy arrays (:meth:`PCA.to_arrays` / :meth:`PCA.from_arrays`), never a pickle.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import validate_data

#: Principal components kept by default: the issue's best setting (PCA 80 +
#: 256 Gaussians); Chatfield et al. 2011 use 80 for SIFT.
DEFAULT_PCA_DIMS = 80


def root_sift(descriptors, out=None) -> np.ndarray:
    """RootSIFT of each row: ``sqrt(x / sum(x))`` (Arandjelovic and Zisserman 2012).

    Parameters
    ----------
    descriptors : (n, d) array of non-negative values (uint8 or float)
        SIFT descriptors, any scale: the L1 normalization removes it.
    out : (n, d) float32 array, optional
        Where to write the result.

    Returns
    -------
    (n, d) float32
        Rows of unit L2 norm (``sum(sqrt(x/|x|_1)^2) = 1``); an all-zero row
        (PHOW's low-contrast descriptors) stays zero.

    Raises
    ------
    ValueError
        If the input is not 2-D or has negative entries.
    """
    X = np.asarray(descriptors)
    if X.ndim != 2:
        raise ValueError(f"descriptors must be 2-D, got shape {X.shape}")
    if X.dtype.kind == "f" and X.size and float(X.min()) < 0:
        raise ValueError("Negative values in data: RootSIFT needs non-negative descriptors")
    if X.dtype.kind == "i" and X.size and int(X.min()) < 0:
        raise ValueError("Negative values in data: RootSIFT needs non-negative descriptors")
    if out is None:
        out = np.empty(X.shape, np.float32)
    np.copyto(out, X, casting="unsafe")
    s = out.sum(axis=1, dtype=np.float64, keepdims=True)
    np.divide(out, s, out=out, where=s > 0)
    out[(s <= 0)[:, 0]] = 0.0
    np.sqrt(out, out=out)
    return out


class RootSIFT(TransformerMixin, BaseEstimator):
    """:func:`root_sift` as a stateless scikit-learn transformer (``fit`` only records the input width)."""

    def fit(self, X, y=None):
        """Record the input width; nothing is learnt.

        Parameters
        ----------
        X : (n, d) array of non-negative values
            SIFT descriptors.
        y : None
            Ignored.

        Returns
        -------
        RootSIFT
            ``self``.
        """
        X = validate_data(self, X, dtype=None)
        root_sift(X[:1])  # checks the sign of a row at least; transform checks all
        return self

    def transform(self, X):
        """RootSIFT of each row (:func:`root_sift`).

        Parameters
        ----------
        X : (n, d) array of non-negative values
            SIFT descriptors.

        Returns
        -------
        (n, d) float32
            Rows of unit L2 norm; all-zero rows stay zero.
        """
        X = validate_data(self, X, dtype=None, reset=not hasattr(self, "n_features_in_"))
        return root_sift(X)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.requires_fit = False
        tags.input_tags.positive_only = True
        tags.transformer_tags.preserves_dtype = ["float32"]
        return tags


class PCA(TransformerMixin, BaseEstimator):
    """PCA of descriptors: centre, rotate onto the leading principal axes, optionally whiten.

    ``transform(x) = (x - mean_) @ components_.T``, divided by
    ``sqrt(explained_variance_ + whiten_eps * explained_variance_[0])``
    per axis when ``whiten`` (the regulariser keeps near-null axes from
    exploding).  The axes are the eigenvectors of the sample covariance
    (float64 eigendecomposition), sign-fixed so that each axis's largest
    absolute coordinate is positive, which makes a fit reproducible.

    Parameters
    ----------
    n_components : int
        Axes kept (default 80, :data:`DEFAULT_PCA_DIMS`); at most the input
        dimension.
    whiten : bool
        Scale each axis to unit variance.
    whiten_eps : float
        Regulariser of the whitening, relative to the largest variance.

    Attributes
    ----------
    mean_ : (d,) float64
        Mean descriptor of the training set.
    components_ : (n_components, d) float64
        Principal axes, rows orthonormal, by decreasing variance.
    explained_variance_ : (n_components,) float64
        Sample variance (``n - 1`` denominator) along each axis, in squared input units.
    explained_variance_ratio_ : (n_components,) float64
        Each axis's share of the total variance (trace of the covariance), in [0, 1].
    n_features_in_ : int
        Input dimension ``d``.
    """

    def __init__(self, n_components=DEFAULT_PCA_DIMS, whiten=False, whiten_eps=1e-5):
        self.n_components = n_components
        self.whiten = whiten
        self.whiten_eps = whiten_eps

    def fit(self, X, y=None):
        """Learn the mean and the principal axes of the descriptors.

        Parameters
        ----------
        X : (n, d) float32 or float64 array, n >= 2
            Descriptors (RootSIFT, usually).
        y : None
            Ignored.

        Returns
        -------
        PCA
            ``self``, fitted.

        Raises
        ------
        ValueError
            If ``n_components`` is not in ``[1, d]`` or ``whiten_eps`` is negative.
        """
        X = validate_data(self, X, dtype=[np.float64, np.float32], ensure_min_samples=2)
        d = X.shape[1]
        k = int(self.n_components)
        if not 1 <= k <= d:
            raise ValueError(f"n_components must be in [1, {d}], got {self.n_components}")
        if not self.whiten_eps >= 0:
            raise ValueError(f"whiten_eps must be non-negative, got {self.whiten_eps}")
        X = X.astype(np.float64)
        mean = X.mean(axis=0)
        Xc = X - mean
        cov = (Xc.T @ Xc) / (len(X) - 1)
        vals, vecs = np.linalg.eigh(cov)
        order = np.argsort(vals)[::-1][:k]
        vals = np.maximum(vals[order], 0.0)
        vecs = vecs[:, order].T
        flip = np.sign(vecs[np.arange(k), np.abs(vecs).argmax(axis=1)])
        vecs *= np.where(flip == 0, 1.0, flip)[:, None]
        self.mean_ = mean
        self.components_ = np.ascontiguousarray(vecs)
        self.explained_variance_ = vals
        total = float(np.trace(cov))
        self.explained_variance_ratio_ = vals / total if total > 0 else np.zeros_like(vals)
        self.n_features_in_ = d
        self._prepare()
        return self

    def _prepare(self):
        W = self.components_.T.copy()
        if self.whiten:
            W /= np.sqrt(self.explained_variance_ + self.whiten_eps * self.explained_variance_[0])
        self._W32 = np.ascontiguousarray(W, dtype=np.float32)
        self._b32 = (-(self.mean_ @ W)).astype(np.float32)

    def _check(self):
        if not hasattr(self, "components_"):
            raise NotFittedError("PCA is not fitted: call fit (or from_arrays) first")

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float32"]
        return tags

    @property
    def n_components_(self) -> int:
        """Axes kept by the fitted PCA (``len(components_)``)."""
        self._check()
        return len(self.components_)

    def transform(self, X) -> np.ndarray:
        """Project descriptors onto the principal axes (one float32 GEMM).

        Parameters
        ----------
        X : (n, d) float32 or float64 array
            Descriptors, ``d = n_features_in_``.

        Returns
        -------
        (n, n_components) float32
            ``(X - mean_) @ components_.T``, whitened per axis when ``whiten``.
        """
        self._check()
        X = validate_data(self, X, dtype=[np.float32, np.float64], reset=False)
        out = np.asarray(X, dtype=np.float32) @ self._W32
        out += self._b32
        return out

    def inverse_transform(self, Y) -> np.ndarray:
        """Back to the input space (exact on the kept axes).

        Parameters
        ----------
        Y : (n, n_components) array
            Projected descriptors (:meth:`transform`'s output).

        Returns
        -------
        (n, d) float64
            ``Y @ components_ + mean_`` (after undoing the whitening, if any).
        """
        self._check()
        Y = np.asarray(Y, np.float64)
        if self.whiten:
            Y = Y * np.sqrt(self.explained_variance_ + self.whiten_eps * self.explained_variance_[0])
        return Y @ self.components_ + self.mean_

    # -- storage as data -------------------------------------------------------
    def to_arrays(self) -> dict:
        """Learnt state and parameters as numpy arrays (save with ``np.savez``; no pickle).

        Returns
        -------
        dict of str to ndarray
            ``mean`` (d,), ``components`` (n_components, d), ``explained_variance`` and
            ``explained_variance_ratio`` (n_components,), all float64; ``whiten`` (bool, 0-d)
            and ``whiten_eps`` (float, 0-d).
        """
        self._check()
        return {
            "mean": self.mean_,
            "components": self.components_,
            "explained_variance": self.explained_variance_,
            "explained_variance_ratio": self.explained_variance_ratio_,
            "whiten": np.array(bool(self.whiten)),
            "whiten_eps": np.array(float(self.whiten_eps)),
        }

    @classmethod
    def from_arrays(cls, arrays: dict) -> PCA:
        """Rebuild a fitted PCA from :meth:`to_arrays`'s output (checks shapes).

        Parameters
        ----------
        arrays : mapping of str to array
            The arrays :meth:`to_arrays` returns (e.g. read back from an ``.npz``).

        Returns
        -------
        PCA
            A fitted PCA equal to the one saved.

        Raises
        ------
        ValueError
            If an array is missing or the shapes disagree.
        """
        try:
            comps = np.asarray(arrays["components"], np.float64)
            mean = np.asarray(arrays["mean"], np.float64)
            var = np.asarray(arrays["explained_variance"], np.float64)
            ratio = np.asarray(arrays["explained_variance_ratio"], np.float64)
            whiten = bool(np.asarray(arrays["whiten"]))
            eps = float(np.asarray(arrays["whiten_eps"]))
        except KeyError as e:
            raise ValueError(f"PCA arrays lack {e.args[0]!r}") from None
        if (
            comps.ndim != 2
            or mean.shape != (comps.shape[1],)
            or var.shape != (comps.shape[0],)
            or ratio.shape != var.shape
        ):
            raise ValueError(
                f"PCA arrays have inconsistent shapes: components {comps.shape}, "
                f"mean {mean.shape}, explained_variance {var.shape}"
            )
        p = cls(n_components=comps.shape[0], whiten=whiten, whiten_eps=eps)
        p.mean_, p.components_, p.explained_variance_ = mean, np.ascontiguousarray(comps), var
        p.explained_variance_ratio_ = ratio
        p.n_features_in_ = comps.shape[1]
        p._prepare()
        return p
