"""The whole baseline as one scikit-learn ``Pipeline`` for images in memory.

PHOW -> the encoding's transformer (bag of words: :class:`~phow_baseline.encoding.pyramid.SpatialPyramidEncoder`;
Fisher vectors, VLAD: their encoders) -> kernel map -> :class:`~phow_baseline.classification.svm.OneVsRestSVM`.
For a dataset folder at full scale, with on-disk caches that resume, use :mod:`phow_baseline.workflow.steps`.
"""

from __future__ import annotations

from ..classification.kernel_map import make_kernel_map
from ..config import BaselineConfig
from ..encoding.registry import encoding_for
from ..features.phow import make_phow


def make_pipeline(config: BaselineConfig | None = None, **overrides):
    """The whole baseline as a scikit-learn ``Pipeline`` over preprocessed images.

    Input: images as :func:`phow_baseline.data.preprocess.preprocess` gives them
    with this config (``size`` pixels square, ``config.equalization``
    already applied at full resolution, as in training at scale); the
    pipeline's PHOW step does not equalize again.  ``fit(images, Y)``
    (``Y``: ``(n, 14)`` 0/1) extracts PHOW, fits the encoding's vocabulary
    (``config.encoding``), encodes, maps and trains the 14 SVMs;
    ``decision_function(images)`` gives ``(n, 14)`` scores.

    Parameters
    ----------
    config : BaselineConfig, optional
        Default: ``BaselineConfig(**overrides)``.
    **overrides
        Config values, when no ``config`` is given (ignored when one is).

    Returns
    -------
    sklearn.pipeline.Pipeline
        Unfitted, with steps ``phow`` (images -> descriptors), ``encode`` (-> one vector per image),
        ``kernel_map`` (an identity :class:`~sklearn.preprocessing.FunctionTransformer` for encodings
        without one) and ``svm`` (:class:`~phow_baseline.classification.svm.OneVsRestSVM`).
    """
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    from ..classification.svm import OneVsRestSVM

    config = config or BaselineConfig(**overrides)
    encoding = encoding_for(config)
    kmap = make_kernel_map(encoding.kernel_map_name(config))
    steps = [
        ("phow", make_phow(config, equalization="none", n_jobs=config.n_jobs)),
        ("encode", encoding.make_transformer(config)),
        ("kernel_map", kmap if kmap is not None else FunctionTransformer()),
        (
            "svm",
            OneVsRestSVM(
                C=config.C,
                class_weight=config.class_weight,
                solver="sgd" if config.solver == "sgd" else "liblinear",
                random_state=config.seed,
            ),
        ),
    ]
    return Pipeline(steps)
