"""PHOW: dense SIFT at several scales, as VLFeat's ``vl_phow`` computes it.

For a grey image and each bin size ``s`` in ``sizes`` (``toolbox/sift/vl_phow.m``):

1. smooth the image with a Gaussian of standard deviation ``s / magnif``
   pixels (``vl_imsmooth``: kernel half-width ``ceil(4 sigma)``,
   normalized, borders extended by continuity);
2. run dense SIFT in fast mode (:func:`phow_baseline.features.dsift.dsift`) with
   bin size ``s``, ``step``, ``window_size`` and bounds starting at the
   offset ``floor(1 + 3/2 (max(sizes) - s))`` (1-based, as in MATLAB; the
   first frame's centre is then at ``1 + 3/2 max(sizes)`` for every scale,
   so that the scales' centres align);
3. set to zero (not drop) the descriptors whose contrast is below
   ``contrast_threshold``.

Frames are ``(x, y, contrast, size)`` with ``x, y`` in 0-based pixels
(VLFeat's MATLAB frames are 1-based: add 1), concatenated scale by scale.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

from .dsift import DESCRIPTOR_SIZE, as_float_image, dsift, dsift_grid

#: ``vl_phow`` defaults (VLFeat 0.9.21), used by its Caltech-101 application:
#: bin sizes in pixels.
DEFAULT_SIZES = (4, 6, 8, 10)
#: Frame spacing in pixels.
DEFAULT_STEP = 2
#: Bin size / smoothing sigma ratio: each scale is smoothed with sigma = size / 6.
DEFAULT_MAGNIF = 6.0
#: Gaussian window of the fast dense SIFT, in bins.
DEFAULT_WINDOW_SIZE = 1.5
#: Descriptors whose contrast (mean gradient mass, image in [0, 1]) is below
#: this are zeroed.
DEFAULT_CONTRAST_THRESHOLD = 0.005


def vl_gaussian_kernel(sigma: float) -> np.ndarray:
    """``vl_imsmooth``'s Gaussian: ``exp(-x^2 / 2 sigma^2)`` on ``|x| <= ceil(4 sigma)``, unit sum.

    Parameters
    ----------
    sigma : float
        Standard deviation in pixels, > 0.

    Returns
    -------
    (2 ceil(4 sigma) + 1,) float32
        The normalized kernel taps, centred (sum 1).
    """
    W = int(math.ceil(4.0 * sigma))
    x = np.arange(-W, W + 1, dtype=np.float64)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    return (k / k.sum()).astype(np.float32)


def smooth(image: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian smoothing as ``vl_imsmooth`` does it (separable, replicate borders), float32.

    Parameters
    ----------
    image : (H, W) array
        Grey image, any real dtype (converted to float32; values as given, e.g. in [0, 1]).
    sigma : float
        Standard deviation in pixels of the Gaussian (:func:`vl_gaussian_kernel`);
        ``sigma <= 0`` returns the image unsmoothed.

    Returns
    -------
    (H, W) float32
        The smoothed image (a C-contiguous float32 copy when ``sigma <= 0``).
    """
    if sigma <= 0:
        return np.ascontiguousarray(image, dtype=np.float32)
    k = vl_gaussian_kernel(sigma)
    return cv2.sepFilter2D(
        np.ascontiguousarray(image, dtype=np.float32), cv2.CV_32F, k, k, borderType=cv2.BORDER_REPLICATE
    )


def phow_offsets(sizes: Sequence[int]) -> list[int]:
    """``vl_phow``'s 1-based bound offset per size: ``floor(1 + 3/2 (max(sizes) - size))``.

    The offsets align the centres of the first frame of every scale at
    ``1 + 3/2 max(sizes)`` (1-based pixels).

    Parameters
    ----------
    sizes : sequence of int
        Bin sizes in pixels, non-empty.

    Returns
    -------
    list of int
        One offset per size, in pixels, 1-based (subtract 1 for a 0-based bound).
    """
    m = max(sizes)
    return [int(math.floor(1 + 1.5 * (m - s))) for s in sizes]


def n_descriptors(shape, sizes=DEFAULT_SIZES, step=DEFAULT_STEP) -> int:
    """Number of PHOW descriptors of an image of ``shape`` (H, W), summed over the scales.

    Parameters
    ----------
    shape : (int, int)
        Image height and width in pixels.
    sizes : sequence of int
        Bin sizes in pixels (default :data:`DEFAULT_SIZES`, ``vl_phow``'s).
    step : int
        Frame spacing in pixels (default :data:`DEFAULT_STEP`, ``vl_phow``'s).

    Returns
    -------
    int
        The number of rows :func:`phow` returns for such an image (0 if no scale fits).
    """
    H, W = shape
    total = 0
    for s, off in zip(sizes, phow_offsets(sizes)):
        _, _, nx, ny = dsift_grid(shape, step, s, (off - 1, off - 1, W - 1, H - 1))
        total += nx * ny
    return total


def phow(
    image,
    sizes=DEFAULT_SIZES,
    step=DEFAULT_STEP,
    magnif=DEFAULT_MAGNIF,
    window_size=DEFAULT_WINDOW_SIZE,
    contrast_threshold=DEFAULT_CONTRAST_THRESHOLD,
    float_descriptors=False,
):
    """PHOW descriptors of a grey image (VLFeat's ``vl_phow``, grey variant).

    Parameters
    ----------
    image : (H, W) array
        ``uint8`` (scaled to [0, 1] as ``im2single`` does), ``uint16`` or
        float in [0, 1].  Equalize first if you want to (see
        :class:`PHOW`); this function only smooths.
    sizes : sequence of int
        Bin sizes in pixels, one dense SIFT per size.
    step : int
        Frame spacing in pixels.
    magnif : float
        Smoothing sigma is ``size / magnif`` pixels.
    window_size : float
        Gaussian window of the fast dense SIFT, in bins.
    contrast_threshold : float
        Descriptors of contrast below it are set to zero.
    float_descriptors : bool
        float32 unit-norm descriptors instead of ``uint8``.

    Returns
    -------
    frames : (n, 4) float64
        ``x, y`` (0-based pixels), contrast (mean gradient mass, image in
        [0, 1]), bin size (pixels); scales in ``sizes`` order.
    descriptors : (n, 128) uint8 or float32
        ``uint8`` ``min(512 d, 255)`` or float32 of unit L2 norm; zero rows
        where the contrast is below ``contrast_threshold``.

    Notes
    -----
    An image too small for a scale's descriptor contributes no frame at
    that scale (and ``n = 0`` if it fits none).
    """
    sizes = tuple(int(s) for s in sizes)
    if not sizes or min(sizes) < 1:
        raise ValueError(f"sizes must be positive integers, got {sizes}")
    if not magnif > 0:
        raise ValueError(f"magnif must be positive, got {magnif}")
    im = as_float_image(image)
    H, W = im.shape
    dtype = np.float32 if float_descriptors else np.uint8
    grids = []
    for s, off in zip(sizes, phow_offsets(sizes)):
        bounds = (off - 1, off - 1, W - 1, H - 1)
        nx, ny = dsift_grid(im.shape, step, s, bounds)[2:]
        if nx * ny:
            grids.append((s, bounds, nx * ny))
    n = sum(g[2] for g in grids)
    frames = np.empty((n, 4))
    descs = np.empty((n, DESCRIPTOR_SIZE), dtype)
    lo = 0
    for s, bounds, m in grids:
        ims = smooth(im, s / magnif)
        dsift(
            ims,
            step=step,
            bin_size=s,
            window_size=window_size,
            bounds=bounds,
            float_descriptors=float_descriptors,
            contrast_threshold=contrast_threshold,
            out=descs[lo : lo + m],
            frames_out=frames[lo : lo + m],
        )
        frames[lo : lo + m, 3] = s
        lo += m
    return frames, descs


class PHOW(TransformerMixin, BaseEstimator):
    """PHOW feature extraction as a scikit-learn transformer.

    ``transform(images)`` returns one ``(frames, descriptors)`` pair per
    image (see :func:`phow`).  Images are equalized first with
    :func:`phow_baseline.data.preprocess.equalize` (``equalization``; ``"none"``
    for images that are already equalized, e.g. from the image cache).
    Stateless: ``fit`` only checks the parameters, and ``transform`` needs
    no ``fit`` (scikit-learn's ``requires_fit`` tag is False).

    Parameters
    ----------
    sizes : sequence of int
        Bin sizes in pixels (default :data:`DEFAULT_SIZES`, ``vl_phow``'s (4, 6, 8, 10)).
    step : int
        Frame spacing in pixels (default 2, ``vl_phow``'s).
    magnif : float
        Smoothing sigma is ``size / magnif`` pixels (default 6, ``vl_phow``'s).
    window_size : float
        Gaussian window of the fast dense SIFT, in bins (default 1.5, ``vl_phow``'s).
    contrast_threshold : float
        Descriptors of contrast below it (mean gradient mass, image in [0, 1])
        are set to zero (default 0.005, ``vl_phow``'s).
    float_descriptors : bool
        float32 unit-norm descriptors instead of ``uint8``.
    equalization : {"global", "clahe", "none"}
        Histogram equalization applied to each image before extraction
        (:func:`phow_baseline.data.preprocess.equalize`).
    n_jobs : int
        Threads over images (-1: all cores).  The Numba kernels and OpenCV
        release the GIL, so threads scale without copying images between
        processes.
    """

    def __init__(
        self,
        sizes=DEFAULT_SIZES,
        step=DEFAULT_STEP,
        magnif=DEFAULT_MAGNIF,
        window_size=DEFAULT_WINDOW_SIZE,
        contrast_threshold=DEFAULT_CONTRAST_THRESHOLD,
        float_descriptors=False,
        equalization="global",
        n_jobs=1,
    ):
        self.sizes = sizes
        self.step = step
        self.magnif = magnif
        self.window_size = window_size
        self.contrast_threshold = contrast_threshold
        self.float_descriptors = float_descriptors
        self.equalization = equalization
        self.n_jobs = n_jobs

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.requires_fit = False
        return tags

    def _check_params(self):
        sizes = tuple(self.sizes)
        if not sizes or not all(isinstance(v, numbers.Integral) and int(v) >= 1 for v in sizes):
            raise ValueError(f"sizes must be positive integers, got {self.sizes!r}")
        if not isinstance(self.step, numbers.Integral) or self.step < 1:
            raise ValueError(f"step must be a positive integer, got {self.step!r}")
        for name in ("magnif", "window_size"):
            v = getattr(self, name)
            if not (isinstance(v, numbers.Real) and float(v) > 0):
                raise ValueError(f"{name} must be positive, got {v!r}")
        from ..data.preprocess import EQUALIZATIONS

        if self.equalization not in EQUALIZATIONS:
            raise ValueError(f"equalization must be one of {EQUALIZATIONS}, got {self.equalization!r}")

    def fit(self, X=None, y=None):
        """Check the parameters; nothing is learnt.

        Parameters
        ----------
        X : None or sequence of images
            Ignored.
        y : None
            Ignored.

        Returns
        -------
        PHOW
            ``self``.

        Raises
        ------
        ValueError
            If a parameter is out of range.
        """
        self._check_params()
        return self

    def _one(self, image):
        from ..data import equalize, to_gray_uint8

        img = np.asarray(image)
        if self.equalization != "none":
            img = equalize(to_gray_uint8(img), self.equalization)
        return phow(
            img, self.sizes, self.step, self.magnif, self.window_size, self.contrast_threshold, self.float_descriptors
        )

    def transform(self, X):
        """``(frames, descriptors)`` of each image of ``X`` (a sequence of 2-D grey images).

        Parameters
        ----------
        X : sequence of (H, W) arrays
            Grey images (``uint8``, ``uint16`` or float in [0, 1]; any size each).

        Returns
        -------
        list of (frames, descriptors)
            One pair per image, in order: ``(n, 4)`` float64 frames and ``(n, 128)``
            ``uint8`` (or float32) descriptors, as :func:`phow` returns them.
        """
        self._check_params()
        n_jobs = self.n_jobs or 1
        if n_jobs < 0:
            n_jobs = os.cpu_count() or 1
        if n_jobs == 1 or len(X) < 2:
            return [self._one(x) for x in X]
        with ThreadPoolExecutor(min(n_jobs, len(X))) as ex:
            return list(ex.map(self._one, X))


def phow_batch(images, n_jobs=-1, **params):
    """:func:`phow` of many images on all cores (threads), without equalization.

    Parameters
    ----------
    images : sequence of (H, W) arrays
        Grey images, already preprocessed.
    n_jobs : int
        Threads over images (default -1: all cores).
    **params
        Keyword arguments of :func:`phow` (``sizes``, ``step``, ``magnif``,
        ``window_size``, ``contrast_threshold``, ``float_descriptors``).

    Returns
    -------
    list of (frames, descriptors)
        One ``((n, 4) float64, (n, 128) uint8 or float32)`` pair per image, in order.
    """
    return PHOW(equalization="none", n_jobs=n_jobs, **params).transform(images)


def make_phow(config, equalization="none", n_jobs=1) -> PHOW:
    """The PHOW extractor of a :class:`~phow_baseline.config.BaselineConfig` (its ``sizes``, ``step``,
    ``magnif``, ``window_size``, ``contrast_threshold``).

    Parameters
    ----------
    config : BaselineConfig
        The configuration whose PHOW parameters are used.
    equalization : {"none", "global", "clahe"}
        ``"none"`` (default) for images already preprocessed with the config (the image cache).
    n_jobs : int
        Threads over images.

    Returns
    -------
    PHOW
        Stateless: ``transform`` needs no ``fit``.
    """
    return PHOW(**config.phow_params(equalization), n_jobs=n_jobs)
