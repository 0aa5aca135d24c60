"""The trained PHOW model: its preprocessing contract, scoring, heatmaps, and the model directory.

A :class:`PhowModel` holds the config, the fitted vocabulary and the 14
SVMs; the PHOW extractor, pyramid encoder and kernel map are rebuilt from
the config.  ``save``/``load`` use :mod:`phow_baseline.model_io` (JSON +
``.npz``, checksummed, never pickled).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .classify import OneVsRestSVM
from .config import BaselineConfig, make_encoder, make_phow
from .data import LABELS
from .kernel_map import HomogeneousKernelMap, make_kernel_map
from .model_io import ModelFileError, read_model_dir, write_model_dir
from .vocabulary import Vocabulary


class PhowModel:
    """A trained PHOW baseline: preprocessing, PHOW, vocabulary, pyramid, kernel map, 14 SVMs.

    Scores are the SVMs' decision values (``w.psi(h) + b``), one per label.
    """

    kind = "phow"

    def __init__(self, config: BaselineConfig, vocabulary, svm, labels=LABELS, info=None):
        self.config = config
        self.vocabulary = vocabulary
        self.svm = svm
        self.labels = tuple(labels)
        self.info = info or {}
        self.encoder = make_encoder(vocabulary, config)
        self.kernel_map = make_kernel_map(config.kernel_map)
        self.phow = make_phow(config)

    @property
    def image_size(self) -> int:
        return self.config.size

    def preprocess(self, image):
        """The model's preprocessing contract: a raw X-ray (path or array) -> the image it scores.

        Read as grey, equalised (``config.equalization``) at full resolution,
        then resized to ``config.size`` square (INTER_AREA), exactly as the
        training images were.  Every caller (predict, localize, diff, the
        report) goes through this.
        """
        from .preprocess import preprocess

        return preprocess(image, size=self.config.size, equalization=self.config.equalization)

    def _map(self, X):
        return X if self.kernel_map is None else self.kernel_map.transform(X)

    def features(self, image) -> np.ndarray:
        """Pyramid feature of one preprocessed image."""
        frames, desc = self.phow.transform([image])[0]
        return self.encoder.encode_one(frames, desc)

    def scores(self, image) -> np.ndarray:
        """14 decision scores of one preprocessed (``size`` x ``size``, equalised) image."""
        return self.decision_function(self.features(image)[None])[0]

    def decision_function(self, features) -> np.ndarray:
        return self.svm.decision_function(self._map(np.asarray(features, np.float32)))

    def heatmaps(self, image) -> np.ndarray:
        """Per-class heatmaps of one preprocessed image, ``(14, size, size)`` float32.

        See :func:`phow_baseline.attribution.phow_heatmaps`.
        """
        from .attribution import phow_heatmaps

        return phow_heatmaps(self, image)

    # -- persistence --------------------------------------------------------
    def save(self, directory, extra: dict | None = None) -> Path:
        svm_params = {k: getattr(self.svm, k) for k in ("C", "class_weight", "solver", "n_epochs", "seed")}
        arrays = {"vocabulary": self.vocabulary.to_arrays(), "svm": self.svm.to_arrays()}
        if isinstance(self.kernel_map, HomogeneousKernelMap):
            arrays["kernel_map"] = {"kappa": self.kernel_map.kappa_, "L": np.array(self.kernel_map.L_),
                                    "period": np.array(self.kernel_map.period_)}
        return write_model_dir(directory, "phow", {"config": self.config.to_dict(), "svm": svm_params},
                               arrays, extra={**self.info, **(extra or {})})

    @classmethod
    def load(cls, directory) -> "PhowModel":
        meta, arrays = read_model_dir(directory)
        try:
            cfg = BaselineConfig(**meta["params"]["config"])
            vocab = Vocabulary.from_arrays({"n_words": cfg.n_words, "max_descriptors": cfg.max_descriptors,
                                            "seed": cfg.seed}, arrays["vocabulary"])
            svm = OneVsRestSVM.from_arrays(meta["params"]["svm"], arrays["svm"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelFileError(f"{Path(directory) / 'model.json'}: incomplete or inconsistent model ({exc})") \
                from exc
        m = cls(cfg, vocab, svm, meta.get("labels", LABELS),
                info={k: meta[k] for k in ("trained_on", "n_train") if k in meta})
        expected = m.encoder.n_features_out_ * (1 if m.kernel_map is None else 3)
        if svm.coef_.shape != (len(LABELS), expected):
            raise ModelFileError(f"{Path(directory) / 'svm.npz'}: SVM weights of shape {svm.coef_.shape}, "
                                 f"expected {(len(LABELS), expected)}")
        return m
