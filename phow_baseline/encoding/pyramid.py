"""Spatial pyramid of visual words: cells, level weights, normalization, the encoder.

A frame at pixel ``(x, y)`` of a ``W x H`` image falls in cell
``(floor(g x / W), floor(g y / H))`` of a ``g x g`` grid; each level's word
counts are concatenated over its cells.  VLFeat's PHOW application uses the
2x2 and 4x4 grids, each level L1-normalized and then the whole vector
(:data:`VLFEAT_GRIDS`); Lazebnik, Schmid and Ponce 2006 use 1x1, 2x2, 4x4
with level weights (:data:`LAZEBNIK_GRIDS`).
"""

from __future__ import annotations

import numbers

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_array, check_is_fitted

from .quantize import quantize_histogram

#: VLFeat's PHOW application (``phow_caltech101.m``): 2x2 and 4x4 grids,
#: each level L1-normalized, then the whole vector.
VLFEAT_GRIDS = (2, 4)
#: Lazebnik, Schmid and Ponce 2006: 1x1, 2x2, 4x4 with level weights
#: 1/4, 1/4, 1/2 (``1/2^L`` for level 0, ``1/2^(L-l+1)`` for level l).
LAZEBNIK_GRIDS = (1, 2, 4)


def pyramid_cells(frames_xy, width, height, grids=VLFEAT_GRIDS) -> tuple[np.ndarray, int]:
    """Flat cell index of each frame at each pyramid level.

    The cell edges are those of VLFeat's ``phow_caltech101.m``,
    ``linspace(1, width, g + 1)`` in MATLAB's 1-based pixels, i.e. ``g``
    equal cells over ``[0, width - 1]`` in 0-based pixels; a frame on the last
    edge goes to the last cell.  Level ``l``'s cells are numbered after
    those of the levels before it, row-major within a level.

    Parameters
    ----------
    frames_xy : (n, 2) array
        ``x, y`` of each frame, 0-based pixels.
    width, height : int
        Image size in pixels.
    grids : sequence of int
        Grid ``g`` of each level (default :data:`VLFEAT_GRIDS`, ``(2, 4)``).

    Returns
    -------
    cells : (n, L) int32
        Flat cell index of each frame at each of the ``L = len(grids)`` levels,
        in ``[0, n_cells)``.
    n_cells : int
        Cells over all levels, ``sum(g^2)``.
    """
    xy = np.asarray(frames_xy, dtype=np.float64)
    out = np.empty((len(xy), len(grids)), np.int32)
    offset = 0
    for l, g in enumerate(grids):
        g = int(g)
        bx = np.clip(np.floor(xy[:, 0] * g / max(width - 1, 1)), 0, g - 1).astype(np.int32)
        by = np.clip(np.floor(xy[:, 1] * g / max(height - 1, 1)), 0, g - 1).astype(np.int32)
        out[:, l] = offset + by * g + bx
        offset += g * g
    return out, offset


def level_weights(grids, weighting) -> np.ndarray:
    """Weights of the pyramid levels: VLFeat's (equal, each level L1-normalized) or Lazebnik's.

    Lazebnik, Schmid and Ponce 2006 weight level 0 by ``1 / 2^L`` and level
    ``l >= 1`` by ``1 / 2^(L - l + 1)``, ``L = len(grids) - 1``.

    Parameters
    ----------
    grids : sequence of int
        Grid of each level (only their number matters).
    weighting : {"vlfeat", "lazebnik"}
        The scheme.

    Returns
    -------
    (len(grids),) float64
        Weight of each level (all 1 for ``"vlfeat"``).

    Raises
    ------
    ValueError
        If ``weighting`` is neither.
    """
    if weighting == "vlfeat":
        return np.ones(len(grids))
    if weighting == "lazebnik":
        L = len(grids) - 1
        return np.array([1 / 2**L if l == 0 else 1 / 2 ** (L - l + 1) for l in range(L + 1)])
    raise ValueError(f"weighting must be 'vlfeat' or 'lazebnik', got {weighting!r}")


def normalize_pyramid(counts: np.ndarray, grids, k: int, weighting="vlfeat") -> np.ndarray:
    """Turn per-(cell, word) counts into the pyramid feature.

    ``vlfeat``: each level divided by its own total (L1), then the whole
    vector by its total, as ``phow_caltech101.m`` does.  ``lazebnik``: each
    level scaled by its weight, then the whole vector L1-normalized.
    Empty images give a zero vector.

    Parameters
    ----------
    counts : (..., sum(g^2) k) array
        Descriptor counts per (cell, word), entry ``cell * k + word``
        (:func:`~phow_baseline.encoding.quantize.quantize_histogram`'s ``hist``).
    grids : sequence of int
        Grid of each level, as given to :func:`pyramid_cells`.
    k : int
        Visual words.
    weighting : {"vlfeat", "lazebnik"}
        The normalization (default ``"vlfeat"``).

    Returns
    -------
    (..., sum(g^2) k) float32
        The pyramid histogram, summing to 1 (or all zero).
    """
    counts = np.asarray(counts, np.float64)
    out = np.empty(counts.shape, np.float32)
    w = level_weights(grids, weighting)
    lo = 0
    for l, g in enumerate(grids):
        hi = lo + g * g * k
        part = counts[..., lo:hi]
        if weighting == "vlfeat":
            s = part.sum(-1, keepdims=True)
            part = np.divide(part, s, out=np.zeros_like(part), where=s > 0)
        out[..., lo:hi] = part * w[l]
        lo = hi
    s = out.sum(-1, keepdims=True, dtype=np.float64)
    return np.divide(out, s, out=np.zeros_like(out), where=s > 0).astype(np.float32)


class SpatialPyramidEncoder(TransformerMixin, BaseEstimator):
    """Bag of visual words with a spatial pyramid: PHOW output -> fixed-length vector.

    ``fit`` learns the :class:`~phow_baseline.encoding.vocabulary.Vocabulary` on the
    descriptors of the training images, unless ``centers`` gives the words;
    ``transform`` quantizes each image's descriptors and returns the pyramid
    histogram, ``(n_images, n_words * sum(g^2))`` float32 (12,000 dims with
    the defaults).

    Input: a sequence of ``(frames, descriptors)`` per image (as
    :class:`~phow_baseline.features.phow.PHOW` gives), where ``frames[:, 0:2]`` are
    0-based ``x, y`` pixel centres; the image size comes from
    ``image_size`` (the images are square, side ``image_size``).

    Parameters
    ----------
    n_words : int
        Visual words of the vocabulary fitted (default 600, VLFeat's PHOW application).
    max_descriptors : int
        Descriptors sampled across the training images for k-means (default 100,000).
    grids : tuple of int
        Grid of each pyramid level (default ``(2, 4)``, VLFeat's).
    weighting : {"vlfeat", "lazebnik"}
        Level normalization (:func:`normalize_pyramid`).
    image_size : int
        Side of the images the frames come from (pixels).
    random_state : int, RandomState or None
        Seeds the sampling and k-means of the vocabulary.
    centers : (k, d) array, optional
        Visual words to use instead of fitting a vocabulary (``n_words`` is
        then ``k``; ``fit`` needs no data).  An array, not a fitted
        estimator, so that ``sklearn.base.clone`` keeps it.
    n_threads : int, optional
        Threads of the nearest-word search (default: all cores).

    Attributes
    ----------
    vocabulary_ : Vocabulary
        The fitted vocabulary (``cluster_centers_`` are the words).
    n_features_out_ : int
        Length of the feature, ``n_words * sum(g^2)``.
    """

    def __init__(
        self,
        n_words=600,
        max_descriptors=100_000,
        grids=VLFEAT_GRIDS,
        weighting="vlfeat",
        image_size=256,
        random_state=0,
        centers=None,
        n_threads=None,
    ):
        self.n_words = n_words
        self.max_descriptors = max_descriptors
        self.grids = grids
        self.weighting = weighting
        self.image_size = image_size
        self.random_state = random_state
        self.centers = centers
        self.n_threads = n_threads

    def fit(self, X=None, y=None):
        """Fit the vocabulary on the images' descriptors (``X`` may be None when ``centers`` is given).

        Parameters
        ----------
        X : sequence of (frames, descriptors), optional
            Per image, ``(n, >= 2)`` frames and ``(n, d)`` descriptors (uint8 or float).
        y : None
            Ignored.

        Returns
        -------
        SpatialPyramidEncoder
            ``self``, fitted.

        Raises
        ------
        ValueError
            If a parameter is out of range, or neither ``X`` nor ``centers`` is given.
        """
        from .vocabulary import Vocabulary

        level_weights(self.grids, self.weighting)  # validates
        if not all(isinstance(g, numbers.Integral) and int(g) >= 1 for g in self.grids):
            raise ValueError(f"grids must be positive integers, got {self.grids!r}")
        if not isinstance(self.image_size, numbers.Integral) or int(self.image_size) < 1:
            raise ValueError(f"image_size must be a positive integer, got {self.image_size!r}")
        if self.centers is not None:
            centers = check_array(self.centers, dtype=np.float32)
            self.vocabulary_ = Vocabulary.from_arrays({"n_words": len(centers)}, {"cluster_centers": centers})
        else:
            if X is None:
                raise ValueError("fit needs the images' (frames, descriptors), or centers")
            self.vocabulary_ = Vocabulary(self.n_words, self.max_descriptors, random_state=self.random_state).fit(
                _descriptors_of(X)
            )
        self.n_features_out_ = len(self.vocabulary_.cluster_centers_) * sum(g * g for g in self.grids)
        return self

    def encode_one(self, frames, descriptors, return_words=False):
        """Pyramid feature of one image (and the word of each descriptor).

        Parameters
        ----------
        frames : (n, >= 2) array
            ``x, y`` of each descriptor in 0-based pixels of the ``image_size`` image.
        descriptors : (n, d) uint8 or float32 array
            The image's descriptors.
        return_words : bool
            Also return the nearest word of each descriptor.

        Returns
        -------
        feature : (n_features_out_,) float32
            The normalized pyramid histogram.
        words : (n,) int32
            Nearest word of each descriptor; only when ``return_words``.
        """
        check_is_fitted(self)
        centers = self.vocabulary_.cluster_centers_
        frames = np.asarray(frames)
        if frames.ndim != 2 or frames.shape[1] < 2 or len(frames) != len(descriptors):
            raise ValueError(
                f"frames must be (n, >=2) with one row per descriptor; got {frames.shape} "
                f"for {len(descriptors)} descriptors"
            )
        cells, n_cells = pyramid_cells(frames[:, :2], self.image_size, self.image_size, self.grids)
        words, counts = quantize_histogram(descriptors, centers, cells, n_cells, n_threads=self.n_threads)
        feat = normalize_pyramid(counts, self.grids, len(centers), self.weighting)
        return (feat, words) if return_words else feat

    def transform(self, X):
        """Pyramid features of ``(frames, descriptors)`` pairs, one row per image.

        Parameters
        ----------
        X : sequence of (frames, descriptors)
            Per image, ``(n, >= 2)`` frames and ``(n, d)`` descriptors.

        Returns
        -------
        (n_images, n_features_out_) float32
            One normalized pyramid histogram per image.
        """
        check_is_fitted(self)
        out = np.empty((len(X), self.n_features_out_), np.float32)
        for i, pair in enumerate(X):
            frames, desc = _pair(pair, i)
            out[i] = self.encode_one(frames, desc)
        return out


def _pair(pair, i):
    if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
        raise ValueError(f"image {i}: expected a (frames, descriptors) pair, got {type(pair).__name__}")
    frames, desc = (
        np.asarray(pair[0]),
        check_array(pair[1], dtype=[np.float32, np.float64, np.uint8], ensure_min_samples=0),
    )
    return frames, desc


def _descriptors_of(X):
    return [_pair(p, i)[1] for i, p in enumerate(X)]
