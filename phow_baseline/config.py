"""Every setting of the PHOW baseline in one validated dataclass, and the stage
objects built from it.

A :class:`BaselineConfig` is checked when it is built, so a bad value is
reported before any work starts; it round-trips through JSON
(:meth:`BaselineConfig.to_dict`, :meth:`BaselineConfig.from_file`) and is
stored in every model directory.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from .io import DataFileError, jsonable, read_json
from .kernel_map import KERNEL_MAPS


@dataclass
class BaselineConfig:
    """Every setting of the PHOW baseline, with the defaults of its sources.

    Image: ``size`` 256 and global equalisation (the Uniandes study).
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

    def __post_init__(self):
        self.sizes = tuple(int(s) for s in self.sizes)
        self.grids = tuple(int(g) for g in self.grids)
        if self.kernel_map not in KERNEL_MAPS:
            raise ValueError(f"kernel_map must be one of {KERNEL_MAPS}, got {self.kernel_map!r}")
        if self.solver not in ("auto", "liblinear", "sgd"):
            raise ValueError(f"solver must be auto, liblinear or sgd, got {self.solver!r}")
        if self.class_weight not in (None, "balanced"):
            raise ValueError(f"class_weight must be None or 'balanced', got {self.class_weight!r}")

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
    """The PHOW extractor of ``config`` (images already preprocessed: no equalisation by default)."""
    from .phow import PHOW

    return PHOW(**config.phow_params(equalization), n_jobs=n_jobs)


def make_encoder(vocab, config: BaselineConfig):
    """A fitted :class:`~phow_baseline.pyramid.SpatialPyramidEncoder` over a fitted vocabulary."""
    from .pyramid import SpatialPyramidEncoder

    return SpatialPyramidEncoder(config.n_words, config.max_descriptors, config.grids, config.weighting,
                                 config.size, config.seed, vocabulary=vocab).fit(None)
