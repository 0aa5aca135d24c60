"""Normalizing a chest X-ray: equalize its grey levels, then resize it to the pipeline's square.

:func:`preprocess` is the one path from a file (or a decoded array) to the
image the pipeline works on: read (:func:`phow_baseline.data.imread.read_xray`)
-> 8-bit grey -> :func:`equalize` -> :func:`resize`.
"""

from __future__ import annotations

import os

import cv2
import numpy as np

from .imread import read_xray, to_gray_uint8

#: Side of the square image the pipeline works on, in pixels.  The Uniandes
#: study (Gomez, Rueda and Valderrama 2019) resized ChestX-ray14 to 256x256.
DEFAULT_SIZE = 256

#: Histogram equalization applied before feature extraction.  ``"global"`` is
#: the plain histogram equalization of the Uniandes study; ``"clahe"`` is
#: contrast-limited adaptive equalization; ``"none"`` leaves the image as is.
DEFAULT_EQUALIZATION = "global"
EQUALIZATIONS = ("global", "clahe", "none")

#: CLAHE parameters (OpenCV's defaults for the clip limit, an 8x8 tile grid).
CLAHE_CLIP_LIMIT = 2.0
CLAHE_TILE_GRID = (8, 8)


def equalize(image: np.ndarray, method: str = DEFAULT_EQUALIZATION) -> np.ndarray:
    """Equalize the grey-level histogram of an 8-bit image.

    ``"global"`` maps each level through the normalized cumulative
    histogram (OpenCV's ``equalizeHist``): the output's histogram is as flat
    as the input's discrete levels allow.  ``"clahe"`` does the same per
    8x8 tile with the histogram clipped at ``CLAHE_CLIP_LIMIT`` times the
    mean bin count, interpolated between tiles.  ``"none"`` returns the input.

    Parameters
    ----------
    image : ndarray of uint8, shape (H, W)
        An 8-bit grey image, any size in pixels.
    method : {"global", "clahe", "none"}, default="global"
        The equalization (:data:`DEFAULT_EQUALIZATION`, the Uniandes study's).

    Returns
    -------
    ndarray of uint8, shape (H, W)
        The equalized image (``image`` itself for ``"none"``).

    Raises
    ------
    ValueError
        ``image`` is not 2-D uint8, or ``method`` is unknown.
    """
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 2:
        raise ValueError(f"equalize expects a 2-D uint8 image, got {image.dtype} {image.shape}")
    if method == "global":
        return cv2.equalizeHist(image)
    if method == "clahe":
        clahe = cv2.createCLAHE(clipLimit=CLAHE_CLIP_LIMIT, tileGridSize=CLAHE_TILE_GRID)
        return clahe.apply(image)
    if method == "none":
        return image
    raise ValueError(f"unknown equalization {method!r}; choose one of {EQUALIZATIONS}")


def resize(image: np.ndarray, size: int = DEFAULT_SIZE) -> np.ndarray:
    """Resize to ``size x size`` pixels with area interpolation (``INTER_AREA``).

    Area interpolation averages the source pixels under each target pixel,
    the right filter for shrinking (no aliasing).  Enlarging uses bilinear
    interpolation.  An image already of that size is returned unchanged.

    Parameters
    ----------
    image : ndarray, shape (H, W) or (H, W, C)
        Any image OpenCV resizes (uint8 grey in the pipeline).
    size : int or None, default=256
        Side of the square result, in pixels (:data:`DEFAULT_SIZE`, the
        Uniandes study's); None returns ``image`` unchanged.

    Returns
    -------
    ndarray, shape (size, size) or (size, size, C)
        Same dtype as ``image``; the aspect ratio is not kept.

    Raises
    ------
    ValueError
        ``size`` is below 1.
    """
    if size is None:
        return image
    size = int(size)
    if size < 1:
        raise ValueError(f"size must be positive, got {size}")
    h, w = image.shape[:2]
    if (h, w) == (size, size):
        return image
    interp = cv2.INTER_AREA if (h >= size and w >= size) else cv2.INTER_LINEAR
    return cv2.resize(image, (size, size), interpolation=interp)


def preprocess(image, size: int | None = DEFAULT_SIZE, equalization: str = DEFAULT_EQUALIZATION) -> np.ndarray:
    """Read (if a path), convert to 8-bit grey, equalize, then resize.

    Equalization comes first, on the full-resolution image, as in the
    Uniandes study; the area resize then averages equalized levels.

    Parameters
    ----------
    image : str, path or ndarray
        A file (read by :func:`~phow_baseline.data.imread.read_xray`) or a
        decoded image, ``(H, W)`` grey, ``(H, W, 3)`` BGR or ``(H, W, 4)``
        BGRA, uint8 or uint16.
    size : int or None, default=256
        Side of the square result, in pixels; None keeps the original size.
    equalization : {"global", "clahe", "none"}, default="global"
        See :func:`equalize`.

    Returns
    -------
    ndarray of uint8, shape (size, size)
        The pipeline's image (``(H, W)`` when ``size`` is None).

    Raises
    ------
    ImageReadError
        The file (or array) cannot be read or converted to 8-bit grey.
    ValueError
        An unknown ``equalization``, or ``size`` below 1.
    """
    if isinstance(image, (str, os.PathLike)):
        image = read_xray(image)
    else:
        image = to_gray_uint8(image)
    return resize(equalize(image, equalization), size)
