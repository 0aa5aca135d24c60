"""The whole baseline as one scikit-learn ``Pipeline`` for images in memory.

PHOW -> :class:`~phow_baseline.encoding.pyramid.SpatialPyramidEncoder` -> kernel map
-> :class:`~phow_baseline.classification.svm.OneVsRestSVM`.  For a dataset folder at
full scale, with on-disk caches that resume, use :mod:`phow_baseline.workflow.steps`.
"""

from __future__ import annotations

from ..config import BaselineConfig, make_phow
from ..classification.kernel_map import make_kernel_map
from ..encoding.pyramid import SpatialPyramidEncoder


def make_pipeline(config: BaselineConfig | None = None, **overrides):
    """The whole baseline as a scikit-learn ``Pipeline`` over preprocessed images.

    Input: images as :func:`phow_baseline.data.preprocess.preprocess` gives them
    with this config (``size`` pixels square, ``config.equalization``
    already applied at full resolution, as in training at scale); the
    pipeline's PHOW step does not equalize again.  ``fit(images, Y)``
    (``Y``: ``(n, 14)`` 0/1) extracts PHOW, fits the vocabulary, encodes,
    maps and trains the 14 SVMs; ``decision_function(images)`` gives
    ``(n, 14)`` scores.
    """
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    from ..classification.svm import OneVsRestSVM

    config = config or BaselineConfig(**overrides)
    kmap = make_kernel_map(config.kernel_map)
    steps = [
        ("phow", make_phow(config, equalization="none", n_jobs=config.n_jobs)),
        ("encode", SpatialPyramidEncoder(config.n_words, config.max_descriptors, config.grids, config.weighting,
                                         config.size, config.seed)),
        ("kernel_map", kmap if kmap is not None else FunctionTransformer()),
        ("svm", OneVsRestSVM(C=config.C, class_weight=config.class_weight,
                             solver="sgd" if config.solver == "sgd" else "liblinear",
                             random_state=config.seed)),
    ]
    return Pipeline(steps)
