"""The image encodings by name: one :class:`Encoding` object per ``BaselineConfig.encoding``.

Everything that differs between the bag of words, Fisher vectors and VLAD
is a method or attribute of one :class:`Encoding` subclass here; code
outside :mod:`phow_baseline.encoding` never compares ``config.encoding``
with a name, it asks the registry::

    enc = encoding_for(config)                  # checks config.encoding and its settings
    fitted = enc.fit(config, descriptors)       # (m, 128) PHOW descriptors -> fitted vocabulary
    encoder = enc.make_encoder(fitted, config)  # encoder.encode_one(frames, descriptors) -> (dim,) float32
    enc.dimension(config), enc.kernel_map_name(config), enc.summary(fitted), enc.to_arrays(fitted), ...
    enc.from_arrays(config, arrays)              # the fitted vocabulary again, from its arrays

Terms: the *vocabulary* (``fitted``) is what is learnt from descriptors and
saved in the model directory and the work folder (k-means words for the bag
of words; for FV and VLAD the whole fitted encoder, RootSIFT + PCA + GMM or
k-means); the *encoder* turns one image's PHOW output into its vector (the
spatial pyramid over the words; FV and VLAD are their own encoders).

Adding a fourth encoding
------------------------
Write one module, ``phow_baseline/encoding/<name>.py``, with its estimator
(``fit`` on ``(m, 128)`` descriptors, ``encode_one(frames, descriptors)``,
``n_features_out_``, ``to_arrays`` / ``from_arrays``) and a subclass of
:class:`Encoding` that sets :attr:`~Encoding.name`, :attr:`~Encoding.label`
and :attr:`~Encoding.fingerprint_keys` and implements the five abstract
methods; then make one call, ``register_encoding(MyEncoding())``: for an
encoding that ships with the package, one import and that call at the end
of this module (next to the three below); for a plug-in or a test, anywhere
before the encoding is used.  Nothing else changes: the config takes any
registered name, the workflow, the feature store, the model directory, the
demo and the command line's choices all go through this registry.  Settings
of its own are fields of :class:`~phow_baseline.config.BaselineConfig` (named
after the encoding, like ``fv_components`` and ``vlad_words``); one that
reuses existing fields needs none.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..config import BaselineConfig, ConfigError
from ..io import sha256_array, sha256_strings
from .fisher import FisherVectorEncoder, check_regions
from .pyramid import SpatialPyramidEncoder
from .vlad import VladEncoder
from .vocabulary import Vocabulary

#: The config fields every vocabulary depends on: the image, PHOW and sampling settings (and the split and
#: seed); each encoding adds its own (:attr:`Encoding.fingerprint_keys`).
VOCABULARY_SAMPLE_KEYS = (
    "size",
    "equalization",
    "sizes",
    "step",
    "magnif",
    "window_size",
    "contrast_threshold",
    "max_descriptors",
    "vocab_images",
    "seed",
    "train_split",
)


#: Encoder parameters that change how an encoder runs, not the vectors it gives (progress
#: messages, threads): left out of :meth:`Encoding.store_params`.
RUNTIME_PARAMS = ("verbose", "n_threads", "n_jobs")


class UnknownEncodingError(ConfigError):
    """``config.encoding`` (or a name given to :func:`get_encoding`) is not a registered encoding.

    A :class:`~phow_baseline.config.ConfigError` on the field ``encoding``; its message lists the
    registered names.

    Parameters
    ----------
    name : object
        The name asked for.
    """

    def __init__(self, name):
        super().__init__("encoding", f"encoding must be one of {', '.join(map(repr, encoding_names()))}; got {name!r}")


class Encoding(abc.ABC):
    """What one image encoding is: how to fit, rebuild, apply, name and describe it.

    Subclasses set the class attributes and implement :meth:`make_vocabulary`,
    :meth:`from_arrays`, :meth:`make_encoder`, :meth:`dimension` and :meth:`summary`; every
    other method has a default that suits an encoding whose fitted vocabulary
    is its own per-image encoder (as FV and VLAD are).

    Attributes
    ----------
    name : str
        The value of ``BaselineConfig.encoding``.
    label : str
        Human name, for logs, tables and reports ("bag of words", "Fisher vectors").
    has_heatmaps : bool
        Whether a model with this encoding can say where its scores come from.
    fingerprint_keys : tuple of str
        The config fields its vocabulary depends on besides :data:`VOCABULARY_SAMPLE_KEYS`; a cached
        vocabulary is reused only when these (and the images) are unchanged.
    names_runs : bool
        Whether a run's model name says the encoding ("PHOW baseline (Fisher vectors)"); False for
        the baseline's own encoding, whose runs are plain "PHOW baseline".
    demo_settings : mapping
        Config values the demo uses with this encoding (sizes scaled to the demo's 400 patients).
    encoder_type : type
        Class of the per-image encoders :meth:`make_encoder` returns (to recognise them).
    fitted_params : tuple of str
        Parameters of :attr:`encoder_type` that hold fitted sub-estimators (left out of its state).
    """

    name: str = ""
    label: str = ""
    has_heatmaps: bool = False
    fingerprint_keys: tuple = ()
    names_runs: bool = True
    demo_settings: Mapping = {}
    encoder_type: Any = object
    fitted_params: tuple = ()

    # -- fitting and rebuilding the vocabulary -------------------------------------------------
    @abc.abstractmethod
    def make_vocabulary(self, config: BaselineConfig, progress: bool = False):
        """The unfitted vocabulary of ``config``: a scikit-learn estimator whose ``fit`` takes ``(m, 128)``
        PHOW descriptors (float32 or uint8) and returns itself.

        Parameters
        ----------
        config : BaselineConfig
            The configuration (its ``encoding`` and the settings of it).
        progress : bool
            Show the fitting's iterations on stderr.

        Returns
        -------
        estimator
            Unfitted; ``fit`` returns the fitted vocabulary.
        """

    def fit(self, config: BaselineConfig, descriptors, progress: bool = False):
        """The vocabulary of ``config`` fitted on sampled descriptors.

        Parameters
        ----------
        config : BaselineConfig
            The configuration (its ``encoding`` and the settings of it).
        descriptors : (m, 128) array
            PHOW descriptors sampled across the training images (uint8 or float32).
        progress : bool
            Show the fitting's iterations on stderr.

        Returns
        -------
        estimator
            The fitted vocabulary (see :meth:`make_vocabulary`).
        """
        return self.make_vocabulary(config, progress).fit(descriptors)

    def to_arrays(self, fitted) -> dict:
        """The fitted vocabulary as named numpy arrays (``np.savez`` them; no pickle).

        Parameters
        ----------
        fitted : estimator
            A fitted vocabulary of this encoding.

        Returns
        -------
        dict of str to ndarray
            ``fitted.to_arrays()``.
        """
        return fitted.to_arrays()

    @abc.abstractmethod
    def from_arrays(self, config: BaselineConfig, arrays: Mapping):
        """The fitted vocabulary of ``config`` rebuilt from :meth:`to_arrays` (model directory, work folder).

        Parameters
        ----------
        config : BaselineConfig
            The configuration (its ``encoding`` and the settings of it).
        arrays : mapping of str to array
            :meth:`to_arrays`'s output, read back.

        Returns
        -------
        estimator
            The fitted vocabulary.
        """

    def vocabulary_sha256(self, fitted) -> str:
        """Content hash of the fitted vocabulary (hex): the sha256 of every array's hash, by array name.

        Parameters
        ----------
        fitted : estimator
            A fitted vocabulary of this encoding.

        Returns
        -------
        str
            64 hexadecimal digits.
        """
        arrays = self.to_arrays(fitted)
        return sha256_strings([f"{k}:{sha256_array(np.asarray(arrays[k]))}" for k in sorted(arrays)])

    # -- the per-image encoder --------------------------------------------------------------
    @abc.abstractmethod
    def make_encoder(self, fitted, config: BaselineConfig):
        """The fitted per-image encoder over a fitted vocabulary.

        Parameters
        ----------
        fitted : estimator
            A fitted vocabulary of this encoding.
        config : BaselineConfig
            The configuration (its ``encoding`` and the settings of it).

        Returns
        -------
        encoder
            An object with ``encode_one(frames (n, 4), descriptors (n, 128)) -> (n_features_out_,) float32``
            and ``n_features_out_`` (an instance of :attr:`encoder_type`).
        """

    @abc.abstractmethod
    def dimension(self, config: BaselineConfig) -> int:
        """Length of one image's vector under ``config`` (before the kernel map), known before fitting;
        equals the fitted encoder's ``n_features_out_``.

        Parameters
        ----------
        config : BaselineConfig
            The configuration (its ``encoding`` and the settings of it).

        Returns
        -------
        int
            The number of features per image.
        """

    def make_transformer(self, config: BaselineConfig):
        """An unfitted scikit-learn transformer from per-image ``(frames, descriptors)`` to vectors
        (``n_images, dim``), that fits its vocabulary itself (for :func:`phow_baseline.workflow.make_pipeline`).

        Parameters
        ----------
        config : BaselineConfig
            The configuration (its ``encoding`` and the settings of it).

        Returns
        -------
        transformer
            Unfitted; ``fit`` takes a sequence of ``(frames, descriptors)``, ``transform`` returns
            ``(n_images, dimension(config))`` float32.
        """
        return self.make_vocabulary(config)

    def kernel_map_name(self, config: BaselineConfig) -> str:
        """The kernel map the SVMs use on this encoding's vectors (a name of ``classification.KERNEL_MAPS``).

        Parameters
        ----------
        config : BaselineConfig
            The configuration (its ``encoding`` and the settings of it).

        Returns
        -------
        str
            ``"none"`` by default (FV and VLAD are used with a linear kernel).
        """
        return "none"

    # -- the encoder in worker processes and in the feature store --------------------------
    def encoder_state(self, encoder) -> tuple[dict, dict]:
        """``(params, arrays)``: plain values and numpy arrays that rebuild ``encoder`` in another process.

        Parameters
        ----------
        encoder : encoder
            A fitted per-image encoder of this encoding.

        Returns
        -------
        params : dict
            Its constructor parameters, less the fitted sub-estimators (:attr:`fitted_params`).
        arrays : dict of str to ndarray
            Its fitted state (``encoder.to_arrays()``).
        """
        params = {k: v for k, v in encoder.get_params().items() if k not in self.fitted_params}
        return params, encoder.to_arrays()

    def encoder_from_state(self, params: Mapping, arrays: Mapping):
        """The encoder of :meth:`encoder_state`, single-threaded (one worker, one image at a time).

        Parameters
        ----------
        params : mapping
            The plain values of :meth:`encoder_state`.
        arrays : mapping of str to array
            Its arrays.

        Returns
        -------
        encoder
            A fitted per-image encoder with ``n_threads=1``.
        """
        return self.encoder_type.from_arrays({**params, "n_threads": 1}, arrays)

    def store_params(self, encoder) -> dict:
        """What a feature store of this encoder's vectors depends on, besides PHOW and the image cache.

        Parameters
        ----------
        encoder : encoder
            A fitted per-image encoder of this encoding.

        Returns
        -------
        dict
            JSON-ready: ``encoder`` (the name), ``encoder_params`` (less :data:`RUNTIME_PARAMS`, which
            do not change a vector: a freshly fitted encoder and the same one loaded from its vocabulary
            file give equal parameters, so an interrupted encoding resumes) and ``vocabulary_sha256`` (hex).
        """
        params, arrays = self.encoder_state(encoder)
        params = {k: v for k, v in params.items() if k not in RUNTIME_PARAMS}
        return {
            "encoder": self.name,
            "encoder_params": params,
            "vocabulary_sha256": sha256_strings([f"{k}:{sha256_array(np.asarray(arrays[k]))}" for k in sorted(arrays)]),
        }

    # -- checks and records ------------------------------------------------------------------
    def check_config(self, config: BaselineConfig) -> None:
        """Check the settings this encoding needs beyond the config's own checks.

        Parameters
        ----------
        config : BaselineConfig
            The configuration (its ``encoding`` and the settings of it).

        Raises
        ------
        ConfigError
            If a setting does not suit this encoding (none by default).
        """
        return None  # nothing more by default

    def vocabulary_fingerprint(self, config: BaselineConfig) -> dict:
        """The config values the vocabulary depends on (:data:`VOCABULARY_SAMPLE_KEYS` + :attr:`fingerprint_keys`).

        Parameters
        ----------
        config : BaselineConfig
            The configuration (its ``encoding`` and the settings of it).

        Returns
        -------
        dict
            Field name to value, for those fields.
        """
        return {k: getattr(config, k) for k in VOCABULARY_SAMPLE_KEYS + tuple(self.fingerprint_keys)}

    @abc.abstractmethod
    def summary(self, fitted) -> str:
        """One line saying what was fitted, e.g. ``"600 words (k-means on 100000 descriptors of 128 dims)"``
        or ``"256-Gaussian GMM on PCA-80 RootSIFT (128 -> 80 dims) from 100000 descriptors; 204800-dim Fisher
        vectors over regions 1x1+2x2"`` (the number of descriptors only when fitted in this process).

        Parameters
        ----------
        fitted : estimator
            A fitted vocabulary of this encoding.

        Returns
        -------
        str
            The line, without a final full stop.
        """

    def owns(self, encoder) -> bool:
        """Whether ``encoder`` is one of this encoding's per-image encoders.

        Parameters
        ----------
        encoder : object
            Any object.

        Returns
        -------
        bool
            True if it is an instance of :attr:`encoder_type`.
        """
        return isinstance(encoder, self.encoder_type)

    def __repr__(self):
        return f"<encoding {self.name!r}: {self.label}>"


def _from_descriptors(fitted) -> str:
    """``" from 100000 descriptors"``, or nothing for a vocabulary rebuilt from arrays (the count is not saved)."""
    return f" from {fitted.n_samples_} descriptors" if fitted.n_samples_ is not None else ""


class BagOfWords(Encoding):
    """Bag of visual words: k-means words, a spatial pyramid of word counts, a chi2 kernel map (VLFeat's
    ``phow_caltech101.m``).  Settings: ``n_words``, ``grids``, ``weighting``, ``kernel_map``.
    """

    name = "bow"
    label = "bag of words"
    has_heatmaps = True
    # the bag of words' fingerprint is that of 0.1, which had no other encoding
    fingerprint_keys = ("n_words",)
    names_runs = False
    # the demo's bag of words is the ``vlfeat`` preset's (C = 10, float32 shards), as in 0.2, whose
    # defaults they were: the defaults are Fisher vectors' since 0.3
    demo_settings = {"C": 10.0, "feature_dtype": "float32"}

    encoder_type = SpatialPyramidEncoder

    def make_vocabulary(self, config, progress=False):
        """``config.n_words`` k-means words (:class:`~phow_baseline.encoding.vocabulary.Vocabulary`).

        Parameters
        ----------
        config : BaselineConfig
            The configuration.
        progress : bool
            Show each k-means iteration on stderr.

        Returns
        -------
        Vocabulary
            Unfitted, seeded with ``config.seed``.
        """
        return Vocabulary(config.n_words, config.max_descriptors, random_state=config.seed, progress=progress)

    def from_arrays(self, config, arrays):
        """The k-means words from ``{"cluster_centers": (n_words, 128)}``.

        Parameters
        ----------
        config : BaselineConfig
            The configuration.
        arrays : mapping of str to array
            ``cluster_centers``: ``(n_words, 128)`` words.

        Returns
        -------
        Vocabulary
            Fitted.
        """
        return Vocabulary.from_arrays(
            {"n_words": config.n_words, "max_descriptors": config.max_descriptors, "random_state": config.seed}, arrays
        )

    def vocabulary_sha256(self, fitted) -> str:
        """The sha256 of the words' float32 bytes (0.1's: the names of its feature stores).

        Parameters
        ----------
        fitted : Vocabulary
            The fitted k-means words.

        Returns
        -------
        str
            64 hexadecimal digits.
        """
        return sha256_array(fitted.cluster_centers_)

    def make_encoder(self, fitted, config):
        """The spatial pyramid (``config.grids``, ``config.weighting``) over the fitted words.

        Parameters
        ----------
        fitted : Vocabulary
            The fitted k-means words.
        config : BaselineConfig
            The configuration.

        Returns
        -------
        SpatialPyramidEncoder
            Fitted.
        """
        return SpatialPyramidEncoder(
            config.n_words,
            config.max_descriptors,
            config.grids,
            config.weighting,
            config.size,
            config.seed,
            centers=fitted.cluster_centers_,
        ).fit()

    def dimension(self, config) -> int:
        """``n_words x sum(g^2 for g in grids)``.

        Parameters
        ----------
        config : BaselineConfig
            The configuration.

        Returns
        -------
        int
            The pyramid histogram's length (12,000 by default).
        """
        return config.n_words * sum(g * g for g in config.grids)  # 600 x (4 + 16) = 12,000 by default

    def make_transformer(self, config):
        """An unfitted spatial pyramid encoder that fits its own words.

        Parameters
        ----------
        config : BaselineConfig
            The configuration.

        Returns
        -------
        SpatialPyramidEncoder
            Unfitted.
        """
        return SpatialPyramidEncoder(
            config.n_words, config.max_descriptors, config.grids, config.weighting, config.size, config.seed
        )

    def kernel_map_name(self, config) -> str:
        """``config.kernel_map`` (chi2 by default).

        Parameters
        ----------
        config : BaselineConfig
            The configuration.

        Returns
        -------
        str
            The kernel map's name.
        """
        return config.kernel_map

    def encoder_state(self, encoder):
        """``({grids, weighting, image_size}, {"cluster_centers"})``.

        Parameters
        ----------
        encoder : SpatialPyramidEncoder
            A fitted spatial pyramid encoder.

        Returns
        -------
        params : dict
            ``grids`` (tuple), ``weighting`` and ``image_size`` (pixels).
        arrays : dict of str to ndarray
            ``cluster_centers``: ``(n_words, 128)`` float32.
        """
        params = {"grids": tuple(encoder.grids), "weighting": encoder.weighting, "image_size": encoder.image_size}
        return params, {"cluster_centers": encoder.vocabulary_.cluster_centers_}

    def encoder_from_state(self, params, arrays):
        """The spatial pyramid over the words of :meth:`encoder_state`, one thread.

        Parameters
        ----------
        params : mapping
            ``grids``, ``weighting`` and ``image_size``.
        arrays : mapping of str to array
            ``cluster_centers``.

        Returns
        -------
        SpatialPyramidEncoder
            Fitted, with ``n_threads=1``.
        """
        return SpatialPyramidEncoder(**params, centers=arrays["cluster_centers"], n_threads=1).fit()

    def store_params(self, encoder) -> dict:
        """0.1's record: grids, weighting, image size and the words' sha256.

        Parameters
        ----------
        encoder : SpatialPyramidEncoder
            A fitted spatial pyramid encoder.

        Returns
        -------
        dict
            ``grids`` (list), ``weighting``, ``image_size`` (pixels) and ``vocabulary_sha256`` (hex).
        """
        params, arrays = self.encoder_state(encoder)
        return {
            "grids": list(params["grids"]),
            "weighting": params["weighting"],
            "image_size": params["image_size"],
            "vocabulary_sha256": sha256_array(arrays["cluster_centers"]),
        }

    def summary(self, fitted) -> str:
        """``"600 words (k-means on 100000 descriptors of 128 dims)"``.

        Parameters
        ----------
        fitted : Vocabulary
            The fitted k-means words.

        Returns
        -------
        str
            The line (without the number of descriptors when rebuilt from arrays).
        """
        k, d = fitted.cluster_centers_.shape
        if fitted.n_samples_ is None:  # rebuilt from arrays
            return f"{k} words (k-means, {d} dims)"
        return f"{k} words (k-means on {fitted.n_samples_} descriptors of {d} dims)"


def _region_params(config: BaselineConfig) -> dict:
    return dict(
        regions=config.regions,
        max_descriptors=config.max_descriptors,
        image_size=config.size,
        random_state=config.seed,
        n_threads=1,
    )


def _n_regions(config: BaselineConfig) -> int:
    """Regions of the FV / VLAD layout ``config.regions`` (``"1x1+2x2"``: 5)."""
    return sum(gx * gy for gx, gy in check_regions(config.regions))


#: Length of a PHOW (SIFT) descriptor: 4 x 4 cells x 8 orientations.
_SIFT_DIMS = 128


def _input_dims(fitted, d_words: int) -> str:
    """``"PCA-80 RootSIFT (128 -> 80 dims)"`` or ``"RootSIFT (128 dims)"`` of a fitted FV / VLAD encoder."""
    what = "RootSIFT" if fitted.root_sift else "SIFT"
    if fitted.pca_ is not None:
        return f"PCA-{d_words} {what} ({fitted.pca_.n_features_in_} -> {d_words} dims)"
    return f"{what} ({d_words} dims)"


class FisherVectors(Encoding):
    """Improved Fisher vectors on RootSIFT + PCA with a diagonal GMM, per spatial region (Perronnin et al.
    2010; Chatfield et al. 2011).  Settings: ``fv_components``, ``fv_pca_dims``, ``gmm_max_iter``, ``regions``.
    """

    name = "fisher"
    label = "Fisher vectors"
    fingerprint_keys = ("encoding", "regions", "fv_components", "fv_pca_dims", "gmm_max_iter")
    # 64 Gaussians on PCA-64: 2 x 64 x 64 = 8,192 dimensions per region (the full run's: 2 x 256 x 80 = 40,960)
    demo_settings = {"fv_components": 64, "fv_pca_dims": 64}
    fitted_params = ("gmm", "pca")

    encoder_type = FisherVectorEncoder

    def _params(self, config):
        return dict(
            n_components=config.fv_components,
            pca_dims=config.fv_pca_dims or None,
            max_iter=config.gmm_max_iter,
            **_region_params(config),
        )

    def make_vocabulary(self, config, progress=False):
        """The unfitted FV encoder of ``config`` (fits RootSIFT, PCA and the mixture).

        Parameters
        ----------
        config : BaselineConfig
            The configuration.
        progress : bool
            Log the mixture's log-likelihood at each EM iteration.

        Returns
        -------
        FisherVectorEncoder
            Unfitted.
        """
        return FisherVectorEncoder(**self._params(config), verbose=progress)

    def from_arrays(self, config, arrays):
        """The fitted FV encoder from its ``gmm_*`` and ``pca_*`` arrays.

        Parameters
        ----------
        config : BaselineConfig
            The configuration.
        arrays : mapping of str to array
            :meth:`FisherVectorEncoder.to_arrays`'s output.

        Returns
        -------
        FisherVectorEncoder
            Fitted.
        """
        return FisherVectorEncoder.from_arrays(self._params(config), arrays)

    def make_encoder(self, fitted, config):
        """``fitted`` itself.

        Parameters
        ----------
        fitted : FisherVectorEncoder
            The fitted FV encoder.
        config : BaselineConfig
            The configuration.

        Returns
        -------
        FisherVectorEncoder
            ``fitted``.
        """
        return fitted  # the fitted FV encoder is its own vocabulary

    def dimension(self, config) -> int:
        """``regions x 2 x fv_components x fv_pca_dims`` (128 without PCA).

        Parameters
        ----------
        config : BaselineConfig
            The configuration.

        Returns
        -------
        int
            The Fisher vector's length (204,800 by default).
        """
        # regions x 2 (means, variances) x Gaussians x PCA dims: 5 x 2 x 256 x 80 = 204,800 by default
        return _n_regions(config) * 2 * config.fv_components * (config.fv_pca_dims or _SIFT_DIMS)

    def check_config(self, config):
        """At least one descriptor per Gaussian.

        Parameters
        ----------
        config : BaselineConfig
            The configuration.

        Raises
        ------
        ConfigError
            If ``max_descriptors < fv_components``.
        """
        if config.max_descriptors < config.fv_components:
            raise ConfigError(
                "max_descriptors",
                f"max_descriptors must be a whole number >= {config.fv_components} "
                f"(the fisher vocabulary needs at least one descriptor per "
                f"Gaussian), got {config.max_descriptors!r}",
            )

    def summary(self, fitted) -> str:
        """Gaussians, PCA, descriptors, the vector's length and regions.

        Parameters
        ----------
        fitted : FisherVectorEncoder
            The fitted FV encoder.

        Returns
        -------
        str
            The line.
        """
        K, d = fitted.gmm_.means_.shape
        return (
            f"{K}-Gaussian GMM on {_input_dims(fitted, d)}{_from_descriptors(fitted)}; "
            f"{fitted.n_features_out_}-dim Fisher vectors over regions {fitted.regions}"
        )


class Vlad(Encoding):
    """VLAD on RootSIFT (+ optional PCA) with k-means words, signed square root and intra-normalization,
    per spatial region (Jegou et al. 2010; Arandjelovic and Zisserman 2013).  Settings: ``vlad_words``,
    ``vlad_pca_dims``, ``regions``.
    """

    name = "vlad"
    label = "VLAD"
    fingerprint_keys = ("encoding", "regions", "vlad_words", "vlad_pca_dims")
    demo_settings = {"vlad_words": 32}
    fitted_params = ("vocabulary", "pca")

    encoder_type = VladEncoder

    def _params(self, config):
        return dict(n_words=config.vlad_words, pca_dims=config.vlad_pca_dims or None, **_region_params(config))

    def make_vocabulary(self, config, progress=False):
        """The unfitted VLAD encoder of ``config`` (fits RootSIFT, PCA and the k-means words).

        Parameters
        ----------
        config : BaselineConfig
            The configuration.
        progress : bool
            Ignored (the VLAD's k-means shows no progress).

        Returns
        -------
        VladEncoder
            Unfitted.
        """
        return VladEncoder(**self._params(config))

    def from_arrays(self, config, arrays):
        """The fitted VLAD encoder from its ``cluster_centers`` and ``pca_*`` arrays.

        Parameters
        ----------
        config : BaselineConfig
            The configuration.
        arrays : mapping of str to array
            :meth:`VladEncoder.to_arrays`'s output.

        Returns
        -------
        VladEncoder
            Fitted.
        """
        return VladEncoder.from_arrays(self._params(config), arrays)

    def make_encoder(self, fitted, config):
        """``fitted`` itself.

        Parameters
        ----------
        fitted : VladEncoder
            The fitted VLAD encoder.
        config : BaselineConfig
            The configuration.

        Returns
        -------
        VladEncoder
            ``fitted``.
        """
        return fitted  # the fitted VLAD encoder is its own vocabulary

    def dimension(self, config) -> int:
        """``regions x vlad_words x vlad_pca_dims`` (128 without PCA).

        Parameters
        ----------
        config : BaselineConfig
            The configuration.

        Returns
        -------
        int
            The VLAD's length (40,960 by default).
        """
        # regions x words x descriptor dims: 5 x 64 x 128 = 40,960 by default
        return _n_regions(config) * config.vlad_words * (config.vlad_pca_dims or _SIFT_DIMS)

    def check_config(self, config):
        """At least one descriptor per word.

        Parameters
        ----------
        config : BaselineConfig
            The configuration.

        Raises
        ------
        ConfigError
            If ``max_descriptors < vlad_words``.
        """
        if config.max_descriptors < config.vlad_words:
            raise ConfigError(
                "max_descriptors",
                f"max_descriptors must be a whole number >= {config.vlad_words} "
                f"(the vlad vocabulary needs at least one descriptor per word), "
                f"got {config.max_descriptors!r}",
            )

    def summary(self, fitted) -> str:
        """Words, PCA, descriptors, the vector's length and regions.

        Parameters
        ----------
        fitted : VladEncoder
            The fitted VLAD encoder.

        Returns
        -------
        str
            The line.
        """
        k, d = fitted.vocabulary_.cluster_centers_.shape
        return (
            f"{k} k-means words on {_input_dims(fitted, d)}{_from_descriptors(fitted)}; "
            f"{fitted.n_features_out_}-dim VLADs over regions {fitted.regions}"
        )


# ----------------------------------------------------------------------------------------------
# The registry
# ----------------------------------------------------------------------------------------------

_ENCODINGS: dict[str, Encoding] = {}


def register_encoding(encoding: Encoding) -> Encoding:
    """Make ``encoding`` available under ``encoding.name`` (replacing one of that name); returns it.

    Parameters
    ----------
    encoding : Encoding
        An instance of a complete :class:`Encoding` subclass with a non-empty ``name``.

    Returns
    -------
    Encoding
        ``encoding`` itself (so that the call can decorate an instance's creation).

    Raises
    ------
    TypeError
        If ``encoding`` is not an :class:`Encoding`.
    ValueError
        If its name is not an identifier.
    """
    if not isinstance(encoding, Encoding):
        raise TypeError(f"register_encoding takes an Encoding instance, got {type(encoding).__name__}")
    if not (isinstance(encoding.name, str) and encoding.name.isidentifier()):
        raise ValueError(f"an encoding's name must be a short identifier (config value), got {encoding.name!r}")
    _ENCODINGS[encoding.name] = encoding
    return encoding


def unregister_encoding(name: str) -> None:
    """Remove a registered encoding (a test's or a plug-in's); unknown names are an error.

    Parameters
    ----------
    name : str
        The registered name.

    Raises
    ------
    UnknownEncodingError
        If no encoding has that name.
    """
    if name not in _ENCODINGS:
        raise UnknownEncodingError(name)
    del _ENCODINGS[name]


def encoding_names() -> tuple[str, ...]:
    """The registered encodings' names, in registration order (``bow`` first).

    Returns
    -------
    tuple of str
        ``("bow", "fisher", "vlad")`` and any registered after them.
    """
    return tuple(_ENCODINGS)


def get_encoding(name: str) -> Encoding:
    """The encoding registered as ``name``; an unknown name raises :class:`UnknownEncodingError`
    (a :class:`~phow_baseline.config.ConfigError` on field ``encoding``) listing the known names.

    Parameters
    ----------
    name : str
        The encoding's name (``BaselineConfig.encoding``).

    Returns
    -------
    Encoding
        The registered instance.

    Raises
    ------
    UnknownEncodingError
        If no encoding has that name.
    """
    try:
        return _ENCODINGS[name]
    except (KeyError, TypeError):
        raise UnknownEncodingError(name) from None


def encoding_for(config: BaselineConfig) -> Encoding:
    """The encoding of ``config``, after checking the settings it needs.

    Parameters
    ----------
    config : BaselineConfig
        The configuration.

    Returns
    -------
    Encoding
        The encoding registered as ``config.encoding``.

    Raises
    ------
    ConfigError
        If the encoding is unknown (:class:`UnknownEncodingError`) or a setting does not suit it.
    """
    enc = get_encoding(config.encoding)
    enc.check_config(config)
    return enc


def encoding_of_encoder(encoder) -> Encoding:
    """The registered encoding whose per-image encoders ``encoder`` is one of.

    Parameters
    ----------
    encoder : object
        A per-image encoder (spatial pyramid, FV or VLAD encoder).

    Returns
    -------
    Encoding
        The first registered encoding that :meth:`~Encoding.owns` it.

    Raises
    ------
    TypeError
        If no registered encoding owns it.
    """
    for enc in _ENCODINGS.values():
        if enc.owns(encoder):
            return enc
    raise TypeError(
        f"{type(encoder).__name__} is not the encoder of a registered encoding ({', '.join(encoding_names())})"
    )


# ----------------------------------------------------------------------------------------------
# The 0.1 factories of phow_baseline.config (forwarded from there with a DeprecationWarning)
# ----------------------------------------------------------------------------------------------


def make_vocabulary(config: BaselineConfig):
    """0.1's ``config.make_vocabulary``: ``encoding_for(config).make_vocabulary(config)``.

    Parameters
    ----------
    config : BaselineConfig
        The configuration.

    Returns
    -------
    estimator
        The unfitted vocabulary.
    """
    return encoding_for(config).make_vocabulary(config)


def vocabulary_from_arrays(config: BaselineConfig, arrays: Mapping):
    """0.1's ``config.vocabulary_from_arrays``: ``encoding_for(config).from_arrays(config, arrays)``.

    Parameters
    ----------
    config : BaselineConfig
        The configuration.
    arrays : mapping of str to array
        The vocabulary's arrays.

    Returns
    -------
    estimator
        The fitted vocabulary.
    """
    return encoding_for(config).from_arrays(config, arrays)


def make_encoder(vocab, config: BaselineConfig):
    """0.1's ``config.make_encoder``: ``encoding_for(config).make_encoder(vocab, config)``.

    Parameters
    ----------
    vocab : estimator
        The fitted vocabulary.
    config : BaselineConfig
        The configuration.

    Returns
    -------
    encoder
        The fitted per-image encoder.
    """
    return encoding_for(config).make_encoder(vocab, config)


def kernel_map_name(config: BaselineConfig) -> str:
    """0.1's ``config.kernel_map_name``: ``encoding_for(config).kernel_map_name(config)``.

    Parameters
    ----------
    config : BaselineConfig
        The configuration.

    Returns
    -------
    str
        The kernel map's name.
    """
    return encoding_for(config).kernel_map_name(config)


def vocabulary_sha256(vocab) -> str:
    """0.1's ``config.vocabulary_sha256`` (k-means words, or an FV / VLAD encoder); with a config at hand,
    use ``encoding_for(config).vocabulary_sha256(vocab)``.

    Parameters
    ----------
    vocab : Vocabulary or FisherVectorEncoder or VladEncoder
        A fitted vocabulary.

    Returns
    -------
    str
        64 hexadecimal digits.
    """
    enc = _ENCODINGS["bow"] if isinstance(vocab, Vocabulary) else encoding_of_encoder(vocab)
    return enc.vocabulary_sha256(vocab)


def __getattr__(name):
    # ENCODINGS is computed when read, so that it lists encodings registered after this module was imported
    if name == "ENCODINGS":
        return encoding_names()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


register_encoding(BagOfWords())
register_encoding(FisherVectors())
register_encoding(Vlad())
