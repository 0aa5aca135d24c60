"""Every setting of the PHOW baseline in one validated dataclass, and the stage
objects built from it.

A :class:`BaselineConfig` is checked when it is built, so a bad value is
reported before any work starts; it round-trips through JSON
(:meth:`BaselineConfig.to_dict`, :meth:`BaselineConfig.from_file`) and is
stored in every model directory.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .io import DataFileError, jsonable, read_json
from .classification.kernel_map import KERNEL_MAPS

#: Image encodings (``BaselineConfig.encoding``).
ENCODINGS = ("bow", "fisher", "vlad")


class ConfigError(ValueError):
    """A :class:`BaselineConfig` value out of range; ``field`` names the setting."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


def _is_int(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _int_at_least(cfg, name, low, why=""):
    v = getattr(cfg, name)
    if not _is_int(v) or v < low:
        raise ConfigError(name, f"{name} must be a whole number >= {low}{' ' + why if why else ''}, got {v!r}")


def _positive(cfg, name, allow_zero=False):
    v = getattr(cfg, name)
    ok = isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v) and (
        v >= 0 if allow_zero else v > 0)
    if not ok:
        raise ConfigError(name, f"{name} must be a finite number {'>= 0' if allow_zero else '> 0'}, got {v!r}")


def _one_of(cfg, name, choices):
    v = getattr(cfg, name)
    if v not in choices:
        raise ConfigError(name, f"{name} must be one of {', '.join(map(repr, choices))}; got {v!r}")


@dataclass
class BaselineConfig:
    """Every setting of the PHOW baseline, with the defaults of its sources.

    Image: ``size`` 256 and global equalization (the Uniandes study).
    PHOW: VLFeat's ``vl_phow`` defaults (sizes 4, 6, 8, 10; step 2; magnif 6;
    window size 1.5; contrast threshold 0.005).  Vocabulary: 600 words from
    about 100,000 descriptors; pyramid 2x2 + 4x4; chi2 kernel map order 1,
    gamma 0.5; C = 10 (VLFeat's ``phow_caltech101.m``).
    """

    size: int = 256
    equalization: str = "global"
    sizes: tuple = (4, 6, 8, 10)
    step: int = 2
    magnif: float = 6.0
    window_size: float = 1.5
    contrast_threshold: float = 0.005
    n_words: int = 600
    max_descriptors: int = 100_000
    vocab_images: int = 2000
    grids: tuple = (2, 4)
    weighting: str = "vlfeat"
    kernel_map: str = "homkermap"
    C: float = 10.0
    class_weight: str | None = None
    solver: str = "auto"
    n_epochs: int = 10
    train_split: str = "train_val"
    test_split: str = "test"
    val_fraction: float = 0.1
    seed: int = 0
    n_jobs: int = -1
    backend: str | None = None
    shard_size: int = 256
    #: Probabilities: per-class Platt scaling on the patient-wise validation carve ("none": SVM margins only).
    calibration: str = "platt"
    #: Operating point per class, chosen on the validation carve: Youden's J, or "sensitivity" >= min_sensitivity.
    operating_rule: str = "youden"
    min_sensitivity: float | None = None
    #: Image encoding: "bow" (bag of words + pyramid + kernel map), "fisher" (improved Fisher vectors on
    #: RootSIFT + PCA with a diagonal GMM) or "vlad" (VLAD on RootSIFT with k-means words); FV and VLAD
    #: use no kernel map (``kernel_map`` applies to "bow" only).
    encoding: str = "bow"
    #: Fisher vectors: Gaussians and PCA dimensions (the issue's best: PCA 80 + 256; Chatfield et al. 2011).
    fv_components: int = 256
    fv_pca_dims: int = 80
    #: EM iterations at most for the mixture (VLFeat's vl_gmm: 100).
    gmm_max_iter: int = 100
    #: VLAD: k-means words and PCA dimensions (0: no PCA).
    vlad_words: int = 64
    vlad_pca_dims: int = 0
    #: FV/VLAD spatial regions: "1x1+2x2" (whole image + quarters) or "1x1+3x1" (+ horizontal strips).
    regions: str = "1x1+2x2"

    def __post_init__(self):
        self.sizes = tuple(int(s) for s in self.sizes)
        self.grids = tuple(int(g) for g in self.grids)
        self._validate()

    def _validate(self):
        """Check every value now, so that a bad one stops a run before any work (:class:`ConfigError`)."""
        from .data.chestxray14 import SPLITS
        from .parallel import BACKENDS
        from .data.preprocess import EQUALIZATIONS

        _one_of(self, "equalization", EQUALIZATIONS)
        _int_at_least(self, "size", 3 * max(self.sizes, default=0) + 1,
                      "(one descriptor of the largest bin size needs 3 x bin size + 1 pixels)")
        if not self.sizes or min(self.sizes) < 1:
            raise ConfigError("sizes", f"sizes must be one or more bin sizes >= 1, got {self.sizes!r}")
        _int_at_least(self, "step", 1)
        for name in ("magnif", "window_size"):
            _positive(self, name)
        _positive(self, "contrast_threshold", allow_zero=True)
        _int_at_least(self, "n_words", 2, "(k-means needs at least two words)")
        _int_at_least(self, "max_descriptors", self.n_words, "(k-means needs at least one descriptor per word)")
        _int_at_least(self, "vocab_images", 1)
        if not self.grids or min(self.grids) < 1:
            raise ConfigError("grids", f"grids must be one or more grid sides >= 1, got {self.grids!r}")
        _one_of(self, "weighting", ("vlfeat", "lazebnik"))
        _one_of(self, "kernel_map", KERNEL_MAPS)
        _positive(self, "C")
        _one_of(self, "class_weight", (None, "balanced"))
        _one_of(self, "solver", ("auto", "liblinear", "sgd"))
        _int_at_least(self, "n_epochs", 1)
        _one_of(self, "train_split", SPLITS)
        _one_of(self, "test_split", SPLITS)
        if not (isinstance(self.val_fraction, (int, float)) and 0 < self.val_fraction < 1):
            raise ConfigError("val_fraction", f"val_fraction must be between 0 and 1, got {self.val_fraction!r}")
        _int_at_least(self, "seed", 0)
        if not _is_int(self.n_jobs) or self.n_jobs == 0:
            raise ConfigError("n_jobs", f"n_jobs must be a whole number of workers, or -1 for all cores, "
                                        f"not {self.n_jobs!r}")
        _one_of(self, "backend", (None, *BACKENDS))
        _int_at_least(self, "shard_size", 1)
        _one_of(self, "calibration", ("platt", "none"))
        _one_of(self, "operating_rule", ("youden", "sensitivity"))
        _one_of(self, "encoding", ENCODINGS)
        _int_at_least(self, "fv_components", 1)
        _int_at_least(self, "fv_pca_dims", 0, "(0: no PCA)")
        if self.fv_pca_dims > 128:
            raise ConfigError("fv_pca_dims", f"fv_pca_dims must be at most 128 (the SIFT dimension), "
                                             f"got {self.fv_pca_dims}")
        _int_at_least(self, "gmm_max_iter", 0)
        _int_at_least(self, "vlad_words", 2, "(k-means needs at least two words)")
        _int_at_least(self, "vlad_pca_dims", 0, "(0: no PCA)")
        if self.vlad_pca_dims > 128:
            raise ConfigError("vlad_pca_dims", f"vlad_pca_dims must be at most 128, got {self.vlad_pca_dims}")
        from .encoding.fisher import REGION_LAYOUTS

        _one_of(self, "regions", tuple(REGION_LAYOUTS))
        if self.encoding != "bow":
            k = self.fv_components if self.encoding == "fisher" else self.vlad_words
            _int_at_least(self, "max_descriptors", k, f"(the {self.encoding} vocabulary needs at least one "
                                                      "descriptor per Gaussian or word)")
        if self.operating_rule == "sensitivity" and not (
                isinstance(self.min_sensitivity, (int, float)) and 0 < self.min_sensitivity <= 1):
            raise ConfigError("min_sensitivity", "operating_rule 'sensitivity' needs min_sensitivity in (0, 1], "
                                                 f"got {self.min_sensitivity!r}")

    @classmethod
    def from_file(cls, path, **overrides) -> "BaselineConfig":
        """Read a JSON config file; unknown keys are an error naming the file."""
        path = Path(path)
        d = read_json(path, what="config file")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise DataFileError(f"{path}: unknown config key(s) {unknown}; known: {sorted(known)}")
        d.update({k: v for k, v in overrides.items() if v is not None})
        try:
            return cls(**d)
        except (TypeError, ValueError) as exc:
            raise DataFileError(f"{path}: {exc}") from None

    def to_dict(self) -> dict:
        return jsonable(dataclasses.asdict(self))

    def phow_params(self, equalization="none") -> dict:
        return {"sizes": self.sizes, "step": self.step, "magnif": self.magnif, "window_size": self.window_size,
                "contrast_threshold": self.contrast_threshold, "equalization": equalization}


def make_phow(config: BaselineConfig, equalization="none", n_jobs=1):
    """The PHOW extractor of ``config`` (images already preprocessed: no equalization by default)."""
    from .features.phow import PHOW

    return PHOW(**config.phow_params(equalization), n_jobs=n_jobs)


def kernel_map_name(config: BaselineConfig) -> str:
    """The kernel map the SVMs use: ``config.kernel_map`` for the bag of words, none for FV and VLAD."""
    return config.kernel_map if config.encoding == "bow" else "none"


def make_vocabulary(config: BaselineConfig):
    """The unfitted vocabulary of ``config.encoding``: k-means words, or the FV / VLAD encoder (which
    fits its RootSIFT/PCA and GMM or k-means in ``fit``); ``fit`` takes ``(m, 128)`` PHOW descriptors."""
    if config.encoding == "fisher":
        from .encoding.fisher import FisherVectorEncoder

        return FisherVectorEncoder(**_fv_params(config))
    if config.encoding == "vlad":
        from .encoding.vlad import VladEncoder

        return VladEncoder(**_vlad_params(config))
    from .encoding.vocabulary import Vocabulary

    return Vocabulary(config.n_words, config.max_descriptors, random_state=config.seed)


def _fv_params(config):
    return dict(n_components=config.fv_components, pca_dims=config.fv_pca_dims or None, regions=config.regions,
                max_descriptors=config.max_descriptors, max_iter=config.gmm_max_iter, image_size=config.size,
                random_state=config.seed, n_threads=1)


def _vlad_params(config):
    return dict(n_words=config.vlad_words, pca_dims=config.vlad_pca_dims or None, regions=config.regions,
                max_descriptors=config.max_descriptors, image_size=config.size, random_state=config.seed,
                n_threads=1)


def vocabulary_from_arrays(config: BaselineConfig, arrays: dict):
    """A fitted vocabulary of ``config.encoding`` from its ``to_arrays()`` (model directory, work cache)."""
    if config.encoding == "fisher":
        from .encoding.fisher import FisherVectorEncoder

        return FisherVectorEncoder.from_arrays(_fv_params(config), arrays)
    if config.encoding == "vlad":
        from .encoding.vlad import VladEncoder

        return VladEncoder.from_arrays(_vlad_params(config), arrays)
    from .encoding.vocabulary import Vocabulary

    return Vocabulary.from_arrays({"n_words": config.n_words, "max_descriptors": config.max_descriptors,
                                   "random_state": config.seed}, arrays)


def vocabulary_sha256(vocab) -> str:
    """Content hash of a fitted vocabulary (k-means words, or every array of an FV / VLAD encoder)."""
    from .io import sha256_array, sha256_strings
    from .encoding.vocabulary import Vocabulary

    if isinstance(vocab, Vocabulary):
        return sha256_array(vocab.cluster_centers_)
    arrays = vocab.to_arrays()
    return sha256_strings([f"{k}:{sha256_array(np.asarray(arrays[k]))}" for k in sorted(arrays)])


def make_encoder(vocab, config: BaselineConfig):
    """A fitted :class:`~phow_baseline.encoding.pyramid.SpatialPyramidEncoder` over a fitted vocabulary."""
    if config.encoding != "bow":
        return vocab  # the fitted FV / VLAD encoder is its own vocabulary
    from .encoding.pyramid import SpatialPyramidEncoder

    return SpatialPyramidEncoder(config.n_words, config.max_descriptors, config.grids, config.weighting,
                                 config.size, config.seed, centers=vocab.cluster_centers_).fit()
