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
#: What an uncertain label becomes (``phow_baseline.data.protocol.UNCERTAIN_POLICIES``).
UNCERTAIN_POLICIES = ("zeros", "ones", "ignore")
#: What a not-mentioned label becomes (``phow_baseline.data.protocol.NOT_MENTIONED_POLICIES``).
NOT_MENTIONED_POLICIES = ("negative", "ignore")
#: SVM solvers (``phow_baseline.classification.svm.SOLVERS``) and ``"auto"``.
SOLVER_CHOICES = ("auto", "liblinear", "sgd", "sdca")
#: The ``dataset`` value that detects the kind from the folder.
DETECT_DATASET = "auto"
#: Feature-store dtypes (``phow_baseline.encoding.store.STORE_DTYPES``).
FEATURE_DTYPES = ("float32", "float16")


class ConfigError(ValueError):
    """A :class:`BaselineConfig` value out of range; ``field`` names the setting.

    Parameters
    ----------
    field : str
        The name of the setting (a :class:`BaselineConfig` field).
    message : str
        The whole message, naming the setting, the rule and the value given.

    Attributes
    ----------
    field : str
        As given.
    """

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

    The defaults are the ``strongest`` preset, the recipe search's winner
    (README, Recipes): image ``size`` 256 and global equalization (the
    Uniandes study); PHOW with VLFeat's ``vl_phow`` defaults (sizes 4, 6, 8,
    10; step 2; magnif 6; window size 1.5; contrast threshold 0.005);
    improved Fisher vectors (RootSIFT, PCA 80, 256 Gaussians, regions
    1x1 + 2x2) stored in float16; C = 1.  The bag-of-words settings keep
    VLFeat's ``phow_caltech101.m`` values (600 words from about 100,000
    descriptors; pyramid 2x2 + 4x4; chi2 kernel map order 1, gamma 0.5):
    ``from_preset("vlfeat")`` is that recipe whole, with its C = 10 (0.2's
    defaults).  A file written by 0.1 or 0.2 lacks the settings whose
    defaults changed: :meth:`from_saved` reads it as it was meant.

    Every value is checked when the object is built (:class:`ConfigError`
    names the first bad one); ``sizes`` and ``grids`` are stored as tuples of
    int.

    Parameters
    ----------
    size : int, default=256
        Side of the square images after resizing, in pixels (the Uniandes
        study); at least 3 x max(``sizes``) + 1, the support of one
        descriptor of the largest bin size.
    equalization : {"global", "clahe", "none"}, default="global"
        Contrast equalization before resizing
        (:func:`phow_baseline.data.preprocess.equalize`).
    sizes : tuple of int, default=(4, 6, 8, 10)
        PHOW bin sizes, in pixels of the resized image (``vl_phow``'s).
    step : int, default=2
        Spacing of the dense frames, in pixels (``vl_phow``'s).
    magnif : float, default=6.0
        The image is smoothed with sigma = bin size / ``magnif`` pixels
        before each scale's descriptors (``vl_phow``'s).
    window_size : float, default=1.5
        Gaussian window of the fast dense SIFT, in bins (``vl_phow``'s).
    contrast_threshold : float, default=0.005
        Descriptors whose contrast (mean gradient mass, image in [0, 1]) is
        below it are set to zero (``vl_phow``'s); >= 0.
    n_words : int, default=600
        Visual words of the bag-of-words vocabulary (k-means centres;
        ``phow_caltech101.m``'s); >= 2.
    max_descriptors : int, default=100000
        Descriptors sampled to fit the vocabulary, at most (>= ``n_words``).
    vocab_images : int, default=2000
        Training images the vocabulary's descriptors are sampled from, at
        most; each contributes about ``max_descriptors / vocab_images``.
    grids : tuple of int, default=(2, 4)
        Side of each spatial-pyramid level's grid (2x2 and 4x4 cells, VLFeat's):
        a bag-of-words vector has ``n_words * sum(g^2)`` dimensions (12,000).
    weighting : {"vlfeat", "lazebnik"}, default="vlfeat"
        Pyramid level weights: each level L1-normalized (VLFeat), or
        Lazebnik et al.'s 2006 weights.
    kernel_map : {"homkermap", "additive_chi2", "none"}, default="homkermap"
        Explicit feature map of the chi2 kernel applied to bag-of-words
        vectors before the linear SVMs: VLFeat's ``vl_homkermap`` (order 1,
        gamma 0.5), scikit-learn's ``AdditiveChi2Sampler`` (2 sample steps),
        or none; each input dimension becomes 3.
    C : float, default=1.0
        SVM inverse regularisation, ``lambda = 1 / (C n)``; > 0 (the recipe
        search's choice for Fisher vectors; VLFeat's Caltech-101 application,
        the ``vlfeat`` preset, uses 10).
    class_weight : {None, "balanced"}, default=None
        Weight the positives and negatives of each label against their
        imbalance.
    solver : {"auto", "liblinear", "sgd", "sdca"}, default="auto"
        SVM solver; ``"auto"`` trains out of core with SDCA (VLFeat's
        ``vl_svmtrain`` solver, stopped on the duality gap) at every size: it
        reaches liblinear's optimum and was measured faster at every size
        (0.2 chose liblinear when its estimated peak memory fitted);
        ``"liblinear"`` (in memory) and ``"sgd"`` stay selectable.
    n_epochs : int, default=10
        Passes over the training data of the SGD solver, and the most
        passes of SDCA where its kernel-mapped rows do not fit in memory
        (1 GiB; :func:`~phow_baseline.workflow.steps.sdca_max_epochs`:
        every pass then reads and maps every row, and on the full dataset
        the duality gap closes far more slowly than that).
    train_split, test_split : {"train_val", "train", "val", "test", "all"}
        Dataset splits to train and to test on (defaults ``"train_val"`` and
        ``"test"``, the official lists).
    val_fraction : float, default=0.1
        Fraction of the training patients carved out, patient-wise, for
        calibration and operating points when ``calibration_folds`` is 1;
        in (0, 1).
    calibration_folds : int, default=5
        Patient-wise folds of the training split whose out-of-fold SVM
        scores fit the Platt scaling and the operating points (cross-fitting:
        every training image, so every positive, is scored by SVMs that did
        not see it; 5 as scikit-learn's ``CalibratedClassifierCV``); 1: the
        single ``val_fraction`` carve of 0.1 and 0.2 (configs without this
        key load with 5).
    seed : int, default=0
        Seed of every random choice (validation carve, descriptor sampling,
        k-means, SVM row order); >= 0.
    n_jobs : int, default=-1
        Parallel workers (-1: one per core); not 0.
    backend : str or None, default=None
        The joblib backend of the dataset-scale steps
        (:data:`phow_baseline.parallel.BACKENDS`); None: joblib's default (loky).
    shard_size : int, default=256
        Images per shard of the feature store (the unit that a rerun redoes).
    calibration : {"platt", "none"}, default="platt"
        Per-class Platt scaling to probabilities on the validation carve, or
        SVM margins only.
    operating_rule : {"youden", "sensitivity"}, default="youden"
        How each class's threshold is chosen on the validation carve:
        Youden's J (sensitivity + specificity - 1, maximal), or the highest
        threshold whose sensitivity is >= ``min_sensitivity``.
    min_sensitivity : float, optional
        Required with ``operating_rule="sensitivity"``: in (0, 1].
    encoding : str, default="fisher"
        Name of a registered encoding (``"bow"``, ``"fisher"``, ``"vlad"``,
        ...); checked against the registry when it is looked up.  Improved
        Fisher vectors by default since 0.3 (the ``strongest`` preset: the
        recipe search's winner, its interval over the bag of words excluding
        zero); 0.2's default, the bag of words, is the ``vlfeat`` preset.
    fv_components : int, default=256
        Gaussians of the Fisher-vector mixture (Chatfield et al. 2011).
    fv_pca_dims : int, default=80
        PCA dimensions of the RootSIFT descriptors before the Fisher vectors
        (0: no PCA; at most 128).
    gmm_max_iter : int, default=100
        EM iterations at most for the mixture (VLFeat's ``vl_gmm``).
    vlad_words : int, default=64
        Words (k-means centres) of VLAD; >= 2.
    vlad_pca_dims : int, default=0
        PCA dimensions of the descriptors before VLAD (0: no PCA; at most 128).
    regions : {"1x1+2x2", "1x1+3x1", "1x1"}, default="1x1+2x2"
        Spatial regions of the Fisher and VLAD vectors: the whole image plus
        its quarters, plus three horizontal strips, or the whole image only.
    feature_dtype : {"float32", "float16"}, default="float16"
        How the feature store's shards are kept on disk: float16 halves the
        disk (read back as float32; about 3 significant digits; the Fisher
        vectors' out-of-fold mean AUROC moved by -0.000002 with it).
    dataset : str, default="chestxray14"
        Kind of the dataset folder: a registered kind
        (``phow_baseline.data.DATASETS``: ``"chestxray14"``, ``"chexpert"``,
        ``"mimic"``, ``"padchest"``, ``"csv"``; checked against the registry
        when the folder is opened), or ``"auto"``: detected from the files in
        the folder (``phow_baseline.data.detect_kind``).
    frontal_only : bool, default=True
        Keep the frontal images only (PA, AP, AP supine), as the classical
        baseline is trained; ChestX-ray14 holds no other.
    uncertain : {"zeros", "ones", "ignore"}, default="zeros"
        What an uncertain training label (CheXpert's and MIMIC's ``-1``)
        becomes: negative (U-Zeros), positive (U-Ones), or left out of its
        class (U-Ignore), as Irvin et al. 2019 (CheXpert) name them.  Scoring
        always leaves uncertain labels out of a class's ROC.
    not_mentioned : {"negative", "ignore"}, default="negative"
        What a blank (not mentioned) training label becomes.
    test_fraction : float, default=0.2
        Share of the images held out for testing, patient-wise and seeded,
        for a dataset without an official test split (PadChest, a CSV
        without a ``split`` column); in [0, 1), with ``val_fraction`` below 1.
        There, ``val_fraction`` is the share of all images for validation.
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
    C: float = 1.0
    class_weight: str | None = None
    solver: str = "auto"
    n_epochs: int = 10
    train_split: str = "train_val"
    test_split: str = "test"
    val_fraction: float = 0.1
    #: Patient-wise folds of the cross-fitted calibration (1: the single val_fraction carve of 0.1/0.2).
    calibration_folds: int = 5
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
    encoding: str = "fisher"
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
    #: Feature shards on disk: "float32", or "float16" (half the disk, read back as float32).
    feature_dtype: str = "float16"
    #: Dataset kind of the folder (a registered kind), or "auto" to detect it from the folder's files.
    dataset: str = "chestxray14"
    #: Frontal images only (PA, AP, AP supine).
    frontal_only: bool = True
    #: Uncertain training labels: U-Zeros, U-Ones or U-Ignore (Irvin et al. 2019).
    uncertain: str = "zeros"
    #: Blank (not mentioned) training labels: negatives, or left out.
    not_mentioned: str = "negative"
    #: Share of the images in the seeded test split of a dataset without an official one.
    test_fraction: float = 0.2

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
        _one_of(self, "solver", SOLVER_CHOICES)
        _int_at_least(self, "n_epochs", 1)
        _one_of(self, "train_split", SPLITS)
        _one_of(self, "test_split", SPLITS)
        if not (isinstance(self.val_fraction, (int, float)) and 0 < self.val_fraction < 1):
            raise ConfigError("val_fraction", f"val_fraction must be between 0 and 1, got {self.val_fraction!r}")
        _int_at_least(self, "calibration_folds", 1, "(1: the single validation carve)")
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
        _one_of(self, "feature_dtype", FEATURE_DTYPES)
        if not (
            isinstance(self.dataset, str)
            and (self.dataset == DETECT_DATASET or (self.dataset.isidentifier() and self.dataset.islower()))
        ):
            raise ConfigError(
                "dataset",
                f"dataset must be the name of a dataset kind (chestxray14, chexpert, mimic, padchest, csv, ...) or "
                f"{DETECT_DATASET!r}, got {self.dataset!r}",
            )
        if not isinstance(self.frontal_only, bool):
            raise ConfigError("frontal_only", f"frontal_only must be true or false, got {self.frontal_only!r}")
        _one_of(self, "uncertain", UNCERTAIN_POLICIES)
        _one_of(self, "not_mentioned", NOT_MENTIONED_POLICIES)
        if not (
            isinstance(self.test_fraction, (int, float))
            and not isinstance(self.test_fraction, bool)
            and 0 <= self.test_fraction < 1
            and self.val_fraction + self.test_fraction < 1
        ):
            raise ConfigError(
                "test_fraction",
                f"test_fraction must be in [0, 1) with val_fraction + test_fraction below 1, got {self.test_fraction!r}"
                f" (val_fraction {self.val_fraction!r})",
            )
        if self.operating_rule == "sensitivity" and not (
            isinstance(self.min_sensitivity, (int, float)) and 0 < self.min_sensitivity <= 1
        ):
            raise ConfigError(
                "min_sensitivity",
                f"operating_rule 'sensitivity' needs min_sensitivity in (0, 1], got {self.min_sensitivity!r}",
            )

    @classmethod
    def from_file(cls, path, **overrides) -> BaselineConfig:
        """Read a JSON config file; unknown keys are an error naming the file.

        Parameters
        ----------
        path : str or Path
            A JSON object of settings (as :meth:`to_dict` writes); missing
            settings take their defaults.
        **overrides
            Settings that replace the file's; a None value is ignored (an
            option not given on the command line).

        Returns
        -------
        BaselineConfig
            The validated config.

        Raises
        ------
        DataFileError
            The file is missing or not a JSON object, has unknown keys, or
            holds a bad value (the message names the file and the setting).
        """
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

    @classmethod
    def from_preset(cls, name: str, **overrides) -> BaselineConfig:
        """The config of a named preset (:data:`PRESETS`), with ``overrides`` on top.

        Parameters
        ----------
        name : str
            A preset's name: ``"vlfeat"``, ``"uniandes"`` or ``"strongest"``
            (:data:`PRESET_NOTES` says what each is and the evidence behind it).
        **overrides
            Settings that replace the preset's; a None value is ignored (an
            option not given on the command line).

        Returns
        -------
        BaselineConfig
            The validated config.

        Raises
        ------
        ConfigError
            An unknown preset (``field`` ``"preset"``, the message lists the known ones) or a bad
            override.

        Notes
        -----
        ``vlfeat``: VLFeat's ``phow_caltech101.m`` recipe (600 words, 2x2 + 4x4 pyramid, chi2 map,
        C = 10) at the Uniandes image settings: 0.1 and 0.2's defaults, written out.  ``uniandes``: the
        2019 Uniandes study as far as it is published (256 px, global equalization, PHOW, 14
        one-vs-rest SVMs); its vocabulary, pyramid, kernel map and C are not published, and VLFeat's
        are assumed.  ``strongest``: improved Fisher vectors (PCA 80, 256 Gaussians, 1x1 + 2x2),
        chosen on the evidence of issue 25 until the recipe search (``benchmarks/bench_recipes.py``)
        measures better: trained on the 481-image sample and scored on 140 unseen NIH images, mean
        AUROC 0.656 against the bag of words' 0.619, paired bootstrap difference +0.036
        [+0.003, +0.068] (on the sample's 59 test images +0.034 [-0.011, +0.082]); 3-fold patient-wise
        cross-validation on the 481 sample images (``bench_recipes.py --stage coarse``), out of fold and
        paired: 0.639 against 0.608, +0.031 [+0.011, +0.050].  Its features are stored in float16
        (half the disk: 400 KB per image), which changed that out-of-fold mean AUROC by -0.000002
        [-0.000037, +0.000030].  C = 1 (VLFeat's 10 in the first searches): 0.644 against 0.639 with
        C = 10, paired +0.004 [+0.001, +0.007] on the same out-of-fold images (C = 0.1: 0.642).
        """
        if name not in PRESETS:
            raise ConfigError("preset", f"unknown preset {name!r}; known: {', '.join(PRESETS)}")
        return cls(**{**PRESETS[name], **{k: v for k, v in overrides.items() if v is not None}})

    @classmethod
    def from_saved(cls, d) -> BaselineConfig:
        """A config from a stored settings dict (a model's ``model.json``), as the version that wrote it meant it.

        Settings missing from the dict take the defaults of the version that
        wrote it where those have changed since (:data:`DEFAULTS_BEFORE_0_3`:
        the bag of words, float32 shards), every other one today's default:
        a 0.1 or 0.2 model stays a bag-of-words model.

        Parameters
        ----------
        d : mapping
            Field name -> value (as :meth:`to_dict` writes).

        Returns
        -------
        BaselineConfig
            The validated config.
        """
        return cls(**{**DEFAULTS_BEFORE_0_3, **dict(d)})

    def to_dict(self) -> dict:
        """Every setting, JSON-ready (tuples as lists): what ``model.json`` and ``config.json`` hold.

        Returns
        -------
        dict
            Field name -> value, plain JSON types; ``BaselineConfig(**d)``
            rebuilds an equal config.
        """
        return jsonable(dataclasses.asdict(self))

    def phow_params(self, equalization="none") -> dict:
        """The keyword arguments of :class:`~phow_baseline.features.phow.PHOW` for these settings.

        Parameters
        ----------
        equalization : {"none", "global", "clahe"}, default="none"
            The equalization PHOW applies to its input images: ``"none"`` for
            images that are already equalized (from the image cache).

        Returns
        -------
        dict
            ``sizes``, ``step``, ``magnif``, ``window_size``,
            ``contrast_threshold`` and ``equalization``.
        """
        return {
            "sizes": self.sizes,
            "step": self.step,
            "magnif": self.magnif,
            "window_size": self.window_size,
            "contrast_threshold": self.contrast_threshold,
            "equalization": equalization,
        }


# --------------------------------------------------------------------------
# Named presets: data (overrides of the defaults), not code
# --------------------------------------------------------------------------


#: The Caltech-101 recipe of VLFeat's ``phow_caltech101.m`` as this package reproduces it: 600 words from
#: PHOW (sizes 4-10, step 2), a 2x2 + 4x4 pyramid, the chi2 map, C = 10; with the Uniandes image settings
#: (256 px, global equalization).  Written out, so the preset stays the same if the defaults change.
_VLFEAT = {
    "size": 256,
    "equalization": "global",
    "sizes": (4, 6, 8, 10),
    "step": 2,
    "encoding": "bow",
    "n_words": 600,
    "grids": (2, 4),
    "weighting": "vlfeat",
    "kernel_map": "homkermap",
    "C": 10.0,
    "feature_dtype": "float32",
}

#: The 0.1 and 0.2 defaults of the settings whose defaults changed in 0.3 (the recipe search made
#: ``strongest`` the default), for files written before they were stored: 0.1 stored no ``encoding``,
#: 0.2 no ``feature_dtype``.  ``C`` has been stored since 0.1.  Those defaults were the ``vlfeat`` recipe's.
DEFAULTS_BEFORE_0_3: dict = {k: _VLFEAT[k] for k in ("encoding", "feature_dtype")}

#: Named configurations: preset name -> the settings it overrides (every other one keeps its default).
#: ``BaselineConfig.from_preset(name)`` builds one; ``--preset NAME`` on train, run and cv.
PRESETS: dict[str, dict] = {
    # the faithful Caltech-101 recipe (0.1 and 0.2's defaults)
    "vlfeat": dict(_VLFEAT),
    # the 2019 Uniandes study: known are 256 px, global histogram equalization, PHOW features and 14
    # one-vs-rest SVMs; its vocabulary size, pyramid, kernel map and C are not published, so VLFeat's
    # Caltech-101 values are assumed (the same settings as "vlfeat", named for what they stand for)
    "uniandes": dict(_VLFEAT),
    # the recipe search's winner and, since 0.3, the defaults (the rule: its interval over the bag of
    # words excludes zero; benchmarks/bench_recipes.py, README "Recipes"): improved
    # Fisher vectors (RootSIFT, PCA 80, 256 Gaussians, 1x1 + 2x2 regions; Chatfield et al. 2011's setting).
    # Evidence (issue 25): trained on the 481-image sample, scored on 140 unseen NIH images, mean AUROC
    # 0.656 against 0.619 for the bag of words, paired bootstrap difference +0.036 [+0.003, +0.068]; on the
    # sample's own 59 test images +0.034 [-0.011, +0.082]; cross-validated on the 481 sample images (3 patient-wise
    # folds, out of fold, paired; bench_recipes.py --stage coarse) 0.639 against 0.608, +0.031 [+0.011, +0.050].
    # Stored in float16: the same out-of-fold AUROC within -0.000002 [-0.000037, +0.000030], half the disk
    "strongest": {
        **{k: _VLFEAT[k] for k in ("size", "equalization", "sizes", "step")},
        "encoding": "fisher",
        "fv_components": 256,
        "fv_pca_dims": 80,
        "regions": "1x1+2x2",
        "C": 1.0,  # C = 1 over 10: +0.004 [+0.001, +0.007] out of fold, paired (bench_recipes.py fisher-C1)
        "feature_dtype": "float16",
    },
}

#: One line per preset: what it is and why (listed by ``--help``).
PRESET_NOTES: dict[str, str] = {
    "vlfeat": "VLFeat's Caltech-101 recipe (bag of words, 600 words, 2x2+4x4 pyramid, chi2 map, C=10): 0.2's defaults",
    "uniandes": "the 2019 Uniandes study: 256 px, global equalization, PHOW, 14 one-vs-rest SVMs (the rest "
    "assumed: VLFeat's values)",
    "strongest": "the defaults: improved Fisher vectors (PCA 80, 256 Gaussians, 1x1+2x2, C=1, float16 store): "
    "mean AUROC +0.036 [+0.003, +0.068] over the bag of words on 140 unseen NIH images, +0.036 [+0.015, +0.055] "
    "cross-validated on the sample",
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
