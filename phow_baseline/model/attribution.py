"""Where a PHOW model's scores come from: per-bin contributions and PHOW heatmaps.

For a linear SVM on a per-dimension kernel map the score of class ``c`` is a
sum of one term per pyramid bin, ``s_c = sum_j f_cj + b_c``
(:func:`per_bin_contributions`); :func:`phow_heatmaps` shares each bin's
term among the descriptors in it and spreads each descriptor's share over
its support, so every class heatmap integrates exactly to ``s_c - b_c``.
Models are used through their attributes (``svm``, ``kernel_map``,
``phow``, ``encoder``, ``config``), so this module imports no model class.
"""

from __future__ import annotations

import numpy as np

from ..classification.kernel_map import HomogeneousKernelMap
from ..encoding.pyramid import normalize_pyramid, pyramid_cells
from ..encoding.quantize import quantize_histogram


def per_bin_contributions(model, feature: np.ndarray) -> np.ndarray:
    """Each pyramid bin's additive share of each class score, ``(14, dim)``.

    The score is ``s_c = sum_j w_c[block j] . psi(h_j) + b_c``: every kernel
    map used here is applied per input dimension (VLFeat's map puts input
    ``j``'s 3 outputs side by side; scikit-learn's ``AdditiveChi2Sampler``
    stacks them in 3 blocks of ``dim``), so the score splits exactly into one
    term ``f_cj`` per pyramid bin, and ``sum_j f_cj = s_c - b_c`` (``psi(0) = 0``).
    Without a kernel map, ``f_cj = w_cj h_j``.

    Parameters
    ----------
    model : PhowModel
        A trained PHOW model; its ``svm.coef_`` ``(n_labels, dim)`` (``(n_labels, 3 dim)`` after a kernel
        map) and ``kernel_map`` (a :class:`~phow_baseline.classification.kernel_map.HomogeneousKernelMap`,
        scikit-learn's ``AdditiveChi2Sampler`` or None) are used.
    feature : ndarray, shape (dim,)
        One image's encoded vector (:meth:`PhowModel.features`, before the kernel map).

    Returns
    -------
    ndarray of float32, shape (n_labels, dim)
        ``f_cj``: the share of class ``c``'s SVM margin due to bin ``j``; row ``c`` sums to ``s_c - b_c``.
    """
    W = model.svm.coef_
    h = np.asarray(feature, np.float32)
    dim = h.shape[0]
    if model.kernel_map is None:
        return W * h[None]
    psi = model.kernel_map.transform(h[None])[0]
    if isinstance(model.kernel_map, HomogeneousKernelMap):
        D = model.kernel_map.dim_per_input
        return (W.reshape(len(W), dim, D) * psi.reshape(1, dim, D)).sum(-1)
    nb = psi.shape[0] // dim  # AdditiveChi2Sampler: blocks of dim
    return (W.reshape(len(W), nb, dim) * psi.reshape(1, nb, dim)).sum(1)


def phow_heatmaps(model, image) -> np.ndarray:
    """Where each class's score comes from: a signed heatmap per class.

    Each dense descriptor ``i`` falls in one pyramid bin per level
    ``j = (cell, word)``; bin ``j`` contributes ``f_cj`` to class ``c``'s
    score (:func:`per_bin_contributions`), shared equally by the ``n_j``
    descriptors in it.  Descriptor ``i`` thus carries
    ``sum_levels f_cj / n_j``, and the descriptors' contributions sum
    exactly to ``s_c - b_c``.  Each contribution is spread uniformly over the
    descriptor's support (the square of side ``4 x bin size + 1`` pixels
    around its centre that its 4 x 4 bins cover), so the heatmap integrates
    to the score minus bias.  Under the
    chi2 kernel map ``f_cj`` is not linear in ``n_j``; splitting it equally
    among the descriptors of the bin is the one attribution that is both
    exact (sums to the score) and symmetric (identical descriptors get
    identical shares).  Where a support square crosses the image border,
    the share is spread over its part inside the image.

    Parameters
    ----------
    model : PhowModel
        A trained bag-of-words PHOW model (its ``config.size``, ``phow``, ``encoder`` and SVMs are used).
    image : ndarray of uint8, shape (size, size)
        One preprocessed image (:meth:`PhowModel.preprocess`), ``size = model.config.size`` pixels.

    Returns
    -------
    ndarray of float32, shape (n_labels, size, size)
        Signed SVM-margin contribution per pixel of each class (margin units per pixel); map ``c`` sums
        to ``s_c - b_c``.
    """
    import cv2

    S = model.config.size
    frames, desc = model.phow.transform([image])[0]
    enc = model.encoder
    k = len(enc.vocabulary_.cluster_centers_)
    cells, n_cells = pyramid_cells(frames[:, :2], S, S, enc.grids)
    words, counts = quantize_histogram(desc, enc.vocabulary_.cluster_centers_, cells, n_cells)
    feat = normalize_pyramid(counts, enc.grids, k, enc.weighting)
    f = per_bin_contributions(model, feat)  # (14, dim)
    bins = cells.astype(np.int64) * k + words[:, None]  # (n, L)
    share = np.zeros((f.shape[0], len(words)), np.float32)
    for l in range(bins.shape[1]):
        b = bins[:, l]
        share += f[:, b] / counts[b].astype(np.float32)
    heat = np.zeros((f.shape[0], S, S), np.float32)
    xs = np.clip(np.rint(frames[:, 0]).astype(np.int64), 0, S - 1)
    ys = np.clip(np.rint(frames[:, 1]).astype(np.int64), 0, S - 1)
    bin_sizes = frames[:, 3]
    for bs in np.unique(bin_sizes):
        sel = bin_sizes == bs
        h = int(round(2 * bs))  # the descriptor's 4 x 4 bins cover centre +- 2 bin sizes
        x, y = xs[sel], ys[sel]
        # area of the support square inside the image, so that every
        # descriptor's share is spread in full over the pixels it covers
        area = (
            (np.minimum(x + h, S - 1) - np.maximum(x - h, 0) + 1)
            * (np.minimum(y + h, S - 1) - np.maximum(y - h, 0) + 1)
        ).astype(np.float64)
        flat = y * S + x
        for c in range(f.shape[0]):
            pts = np.bincount(flat, weights=share[c, sel] / area, minlength=S * S).astype(np.float32)
            heat[c] += cv2.boxFilter(
                pts.reshape(S, S), -1, (2 * h + 1, 2 * h + 1), normalize=False, borderType=cv2.BORDER_CONSTANT
            )
    return heat
