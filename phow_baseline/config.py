"""Every setting of the PHOW baseline in one validated dataclass: values only.

A :class:`BaselineConfig` is checked when it is built, so a bad value is
reported before any work starts; it round-trips through JSON
(:meth:`BaselineConfig.to_dict`, :meth:`BaselineConfig.from_file`) and is
stored in every model directory.

This module sits beneath every stage and imports none of them: the stages
build their objects from a config (:func:`phow_baseline.features.phow.make_phow`,
:func:`phow_baseline.encoding.encoding_for`).  The choices that stages define
are repeated here as plain tuples (:data:`SPLITS`, :data:`EQUALIZATIONS`,
:data:`KERNEL_MAPS`, :data:`REGION_LAYOUTS`; ``tests/test_registry.py`` checks
that they equal the stages' own).  ``encoding`` is the name of a registered
encoding: it is checked against the registry, with the settings that encoding
needs, when the encoding is looked up (:func:`phow_baseline.encoding.encoding_for`,
the first thing every step does), so that a new encoding needs no edit here.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass
from pathlib import Path

from .io import DataFileError, jsonable, read_json
from .parallel import BACKENDS

#: Dataset splits (``phow_baseline.data.chestxray14.SPLITS``).
SPLITS = ("train_val", "train", "val", "test", "all")
#: Contrast equalizations (``phow_baseline.data.preprocess.EQUALIZATIONS``).
EQUALIZATIONS = ("global", "clahe", "none")
#: Kernel maps (``phow_baseline.classification.kernel_map.KERNEL_MAPS``).
KERNEL_MAPS = ("homkermap", "additive_chi2", "none")
#: FV / VLAD region layouts (the names of ``phow_baseline.encoding.fisher.REGION_LAYOUTS``).
REGION_LAYOUTS = ("1x1+2x2", "1x1+3x1", "1x1")


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
    ok = (
        isinstance(v, numbers.Real)
        and not isinstance(v, bool)
        and math.isfinite(v)
        and (v >= 0 if allow_zero else v > 0)
    )
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
        _one_of(self, "equalization", EQUALIZATIONS)
        _int_at_least(
            self,
            "size",
            3 * max(self.sizes, default=0) + 1,
            "(one descriptor of the largest bin size needs 3 x bin size + 1 pixels)",
        )
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
            raise ConfigError(
                "n_jobs", f"n_jobs must be a whole number of workers, or -1 for all cores, not {self.n_jobs!r}"
            )
        _one_of(self, "backend", (None, *BACKENDS))
        _int_at_least(self, "shard_size", 1)
        _one_of(self, "calibration", ("platt", "none"))
        _one_of(self, "operating_rule", ("youden", "sensitivity"))
        if not (isinstance(self.encoding, str) and self.encoding.isidentifier()):
            raise ConfigError(
                "encoding", f"encoding must be the name of an encoding (bow, fisher, vlad, ...), got {self.encoding!r}"
            )
        _int_at_least(self, "fv_components", 1)
        _int_at_least(self, "fv_pca_dims", 0, "(0: no PCA)")
        if self.fv_pca_dims > 128:
            raise ConfigError(
                "fv_pca_dims", f"fv_pca_dims must be at most 128 (the SIFT dimension), got {self.fv_pca_dims}"
            )
        _int_at_least(self, "gmm_max_iter", 0)
        _int_at_least(self, "vlad_words", 2, "(k-means needs at least two words)")
        _int_at_least(self, "vlad_pca_dims", 0, "(0: no PCA)")
        if self.vlad_pca_dims > 128:
            raise ConfigError("vlad_pca_dims", f"vlad_pca_dims must be at most 128, got {self.vlad_pca_dims}")
        _one_of(self, "regions", REGION_LAYOUTS)
        if self.operating_rule == "sensitivity" and not (
            isinstance(self.min_sensitivity, (int, float)) and 0 < self.min_sensitivity <= 1
        ):
            raise ConfigError(
                "min_sensitivity",
                f"operating_rule 'sensitivity' needs min_sensitivity in (0, 1], got {self.min_sensitivity!r}",
            )

    @classmethod
    def from_file(cls, path, **overrides) -> BaselineConfig:
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
        """Every setting, JSON-ready (tuples as lists): what ``model.json`` and ``config.json`` hold."""
        return jsonable(dataclasses.asdict(self))

    def phow_params(self, equalization="none") -> dict:
        """The keyword arguments of :class:`~phow_baseline.features.phow.PHOW` (``equalization``: of its
        input images).
        """
        return {
            "sizes": self.sizes,
            "step": self.step,
            "magnif": self.magnif,
            "window_size": self.window_size,
            "contrast_threshold": self.contrast_threshold,
            "equalization": equalization,
        }


#: Factories that lived here in 0.1, forwarded with a DeprecationWarning (config imports no stage now).
_MOVED = {
    "make_phow": "phow_baseline.features.phow:make_phow",
    "make_vocabulary": "phow_baseline.encoding.registry:make_vocabulary",
    "vocabulary_from_arrays": "phow_baseline.encoding.registry:vocabulary_from_arrays",
    "vocabulary_sha256": "phow_baseline.encoding.registry:vocabulary_sha256",
    "make_encoder": "phow_baseline.encoding.registry:make_encoder",
    "kernel_map_name": "phow_baseline.encoding.registry:kernel_map_name",
    "ENCODINGS": "phow_baseline.encoding.registry:ENCODINGS",
}


def __getattr__(name):
    from ._compat import forward

    return forward(__name__, _MOVED, name)
