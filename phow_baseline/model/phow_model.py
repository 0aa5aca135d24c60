"""The trained PHOW model: its preprocessing contract, scoring, heatmaps, and the model directory.

A :class:`PhowModel` holds the config, the fitted vocabulary and one SVM
per label (14 for ChestX-ray14); the PHOW extractor, pyramid encoder and kernel map are rebuilt from
the config.  ``save``/``load`` use :mod:`phow_baseline.model.directory` (JSON +
``.npz``, checksummed, never pickled).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..classification.kernel_map import HOMKERMAP_EVALUATIONS, HomogeneousKernelMap, make_kernel_map
from ..classification.svm import OneVsRestSVM
from ..config import BaselineConfig
from ..data.chestxray14 import LABELS
from ..encoding.registry import encoding_for
from ..features.phow import make_phow
from .directory import ModelFileError, dataset_record, read_model_dir, write_model_dir
from .protocol import DecisionsUnavailableError, HeatmapsUnavailableError, Model

__all__ = ["DecisionsUnavailableError", "HeatmapsUnavailableError", "PhowModel"]


class PhowModel(Model):
    """A trained PHOW baseline: preprocessing, PHOW, an encoding, kernel map, one SVM per label (a :class:`Model`).

    The SVMs give decision values (margins, ``w.psi(h) + b``), one per
    label (:meth:`raw_scores`, :meth:`decision_function`).  A model trained
    with calibration also holds a per-class Platt scaling and per-class
    operating points, both fitted on out-of-fold scores of patient-wise
    folds of the training images (cross-fitted; or, with
    ``calibration_folds=1`` and in 0.1/0.2 models, on the patient-wise
    validation carve; see :func:`phow_baseline.workflow.steps.calibrate_model`,
    whose record ``info["calibrated_on"]`` names the classes with too few
    positives and their fallback rules); its :meth:`scores`
    are then probabilities and :meth:`decide` turns them into 0/1 calls.

    Parameters
    ----------
    config : BaselineConfig
        Every stage's settings (image size, PHOW, encoding, kernel map, SVM, calibration).
    vocabulary
        The fitted vocabulary of ``config.encoding`` (see :mod:`phow_baseline.encoding.registry`).
    svm : OneVsRestSVM
        Fitted, on the kernel-mapped vectors.
    labels : sequence of str, default=ChestX-ray14's 14
        The labels of the SVMs, in their order.
    info : dict, optional
        Training record (written to ``model.json``).
    dataset : dict, optional
        What it was trained on (``kind``, ``labels``, ``label_policy``, ...; written to ``model.json``
        as ``dataset``); default ``{"kind": "chestxray14", "labels": labels}``.
    calibrator : PlattCalibrator, optional
        Per-class Platt scaling of the margins, ``p = 1 / (1 + exp(-(a_c s + b_c)))``; None: uncalibrated
        (:meth:`scores` are margins).
    operating_points : OperatingPoints, optional
        Per-class thresholds on the calibrated probabilities (:meth:`decide`); None: no decisions.

    Attributes
    ----------
    encoding : phow_baseline.encoding.Encoding
        The registered encoding of ``config.encoding``.
    encoder
        Its per-image encoder (``encode_one(frames, descriptors) -> (dim,)``).
    kernel_map : fitted kernel map or None
        The map ``psi`` of ``config``'s kernel (3 outputs per input), or None for a linear kernel.
    phow : PHOW
        The dense SIFT extractor of ``config`` (sizes, step, magnif in pixels of the resized image).
    """

    kind = "phow"

    def __init__(
        self,
        config: BaselineConfig,
        vocabulary,
        svm,
        labels=LABELS,
        info=None,
        calibrator=None,
        operating_points=None,
        dataset: dict | None = None,
    ):
        self.config = config
        self.vocabulary = vocabulary
        self.svm = svm
        self.calibrator = calibrator  # PlattCalibrator or None
        self.operating_points = operating_points  # OperatingPoints (on the probabilities) or None
        self.labels = tuple(labels)
        self.dataset = dict(dataset) if dataset is not None else {"kind": "chestxray14", "labels": list(self.labels)}
        self.info = info or {}
        self.encoding = encoding_for(config)
        self.encoder = self.encoding.make_encoder(vocabulary, config)
        self.kernel_map = make_kernel_map(
            self.encoding.kernel_map_name(config), n_features=self.encoder.n_features_out_
        )
        self.phow = make_phow(config)

    @property
    def image_size(self) -> int:
        """Side of the images the model scores: ``config.size`` pixels."""
        return self.config.size

    @property
    def has_heatmaps(self) -> bool:
        """Whether the model's encoding has heatmaps (the bag of words has; FV and VLAD not yet)."""
        return self.encoding.has_heatmaps

    @property
    def has_decisions(self) -> bool:
        """Whether the model holds operating points (trained with calibration)."""
        return self.operating_points is not None

    def preprocess(self, image):
        """The model's preprocessing contract: a raw X-ray (path or array) -> the image it scores.

        Read as grey, equalized (``config.equalization``) at full resolution,
        then resized to ``config.size`` square (INTER_AREA), exactly as the
        training images were.  Every caller (predict, localize, diff, the
        report) goes through this.

        Parameters
        ----------
        image : str, Path or ndarray
            An image file, or a decoded image (``(H, W)`` grey, ``(H, W, 3)`` BGR, uint8 or uint16).

        Returns
        -------
        ndarray of uint8, shape (size, size)
            The image the model scores, ``size = config.size`` pixels.

        Raises
        ------
        phow_baseline.data.ImageReadError
            A file that cannot be used (missing, corrupt, not an image...).
        """
        from ..data.preprocess import preprocess

        return preprocess(image, size=self.config.size, equalization=self.config.equalization)

    def _map(self, X):
        return X if self.kernel_map is None else self.kernel_map.transform(X)

    def features(self, image) -> np.ndarray:
        """The encoding's vector of one preprocessed image, ``(dim,)`` float32 (before the kernel map).

        Parameters
        ----------
        image : ndarray of uint8, shape (size, size)
            One image from :meth:`preprocess`.

        Returns
        -------
        ndarray of float32, shape (dim,)
            Its PHOW descriptors encoded by :attr:`encoder` (``dim = encoder.n_features_out_``: the spatial
            pyramid of word histograms for the bag of words, a Fisher vector or VLAD otherwise).
        """
        frames, desc = self.phow.transform([image])[0]
        return self.encoder.encode_one(frames, desc)

    def raw_scores(self, image) -> np.ndarray:
        """The SVM margins ``(n_labels,)`` of one preprocessed (``size`` x ``size``, equalized) image.

        Parameters
        ----------
        image : ndarray of uint8, shape (size, size)
            One image from :meth:`preprocess`.

        Returns
        -------
        ndarray, shape (n_labels,)
            ``w_c . psi(h) + b_c`` per label (signed distances, unbounded), in the order of :attr:`labels`.
        """
        return self.decision_function(self.features(image)[None])[0]

    @property
    def score_kind(self) -> str:
        """What :meth:`scores` gives: ``"probability"`` (calibrated) or ``"margin"``."""
        return "probability" if self.calibrator is not None else "margin"

    def scores(self, image) -> np.ndarray:
        """Scores ``(n_labels,)`` of one preprocessed image: probabilities when calibrated, else the SVM margins.

        Parameters
        ----------
        image : ndarray of uint8, shape (size, size)
            One image from :meth:`preprocess`.

        Returns
        -------
        ndarray of float64, shape (n_labels,)
            Probabilities in [0, 1] (:attr:`score_kind` ``"probability"``) or SVM margins (``"margin"``).
        """
        return self.calibrate(self.raw_scores(image)[None])[0]

    def calibrate(self, margins) -> np.ndarray:
        """Margins ``(n, n_labels)`` -> probabilities by the stored Platt scaling (unchanged if uncalibrated).

        Parameters
        ----------
        margins : array-like, shape (n_images, n_labels)
            SVM margins (:meth:`raw_scores`, :meth:`decision_function`).

        Returns
        -------
        ndarray of float64, shape (n_images, n_labels)
            Per-class Platt probabilities in [0, 1], or the margins as float64 when uncalibrated.
        """
        m = np.asarray(margins, np.float64)
        return m if self.calibrator is None else self.calibrator.predict_proba(m)

    def decide(self, probabilities) -> np.ndarray:
        """0/1 calls ``(n, n_labels)`` at the stored operating points (needs a calibrated model).

        Parameters
        ----------
        probabilities : array-like, shape (n_images, n_labels)
            Calibrated probabilities in [0, 1] (:meth:`scores`, :meth:`calibrate`).

        Returns
        -------
        ndarray of uint8, shape (n_images, n_labels)
            1 where a probability reaches its label's threshold (``config.operating_rule``), else 0.

        Raises
        ------
        DecisionsUnavailableError
            The model has no operating points (trained without calibration).
        """
        if self.operating_points is None:
            raise DecisionsUnavailableError("this model has no operating points (trained without calibration)")
        return self.operating_points.decide(probabilities)

    def decision_function(self, features) -> np.ndarray:
        """SVM margins ``(n, n_labels)`` of encoded vectors ``(n, dim)`` (:meth:`features`; kernel-mapped here).

        Parameters
        ----------
        features : array-like, shape (n_images, dim)
            Encoded vectors (rows of :meth:`features` or of a feature store), before the kernel map.

        Returns
        -------
        ndarray, shape (n_images, n_labels)
            ``psi(X) @ coef_.T + intercept_``: one signed margin per image and label.
        """
        return self.svm.decision_function(self._map(np.asarray(features, np.float32)))

    def heatmaps(self, image) -> np.ndarray:
        """Per-class heatmaps of one preprocessed image, ``(n_labels, size, size)`` float32.

        See :func:`phow_baseline.model.attribution.phow_heatmaps`.

        Parameters
        ----------
        image : ndarray of uint8, shape (size, size)
            One image from :meth:`preprocess`.

        Returns
        -------
        ndarray of float32, shape (n_labels, size, size)
            Signed margin contribution per pixel of each label; map ``c`` sums to ``s_c - b_c``.

        Raises
        ------
        HeatmapsUnavailableError
            The encoding has no heatmaps (Fisher vectors, VLAD).
        """
        if not self.has_heatmaps:
            raise HeatmapsUnavailableError(
                f"heatmaps are only available for the bag-of-words encoding for now; this model uses "
                f"{self.encoding.label} ({self.config.encoding!r}; its per-descriptor contributions are not "
                f"implemented)"
            )
        from .attribution import phow_heatmaps

        return phow_heatmaps(self, image)

    # -- persistence --------------------------------------------------------
    def save(self, directory, extra: dict | None = None) -> Path:
        """Write the model directory: ``model.json`` (config, SVM and calibration parameters, the training
        record, ``extra``) + ``vocabulary.npz``, ``svm.npz`` and the calibration's arrays; returns its path.

        Parameters
        ----------
        directory : str or Path
            The model directory (created).
        extra : dict, optional
            More top-level entries for ``model.json``, added to the training record :attr:`info`.

        Returns
        -------
        Path
            The model directory.
        """
        svm_params = {
            k: getattr(self.svm, k) for k in ("C", "class_weight", "solver", "n_epochs", "tol", "random_state")
        }
        if getattr(self.svm, "max_epochs", None) is not None:  # SDCA's; absent from 0.1/0.2 models
            svm_params["max_epochs"] = self.svm.max_epochs
        arrays = {"vocabulary": self.encoding.to_arrays(self.vocabulary), "svm": self.svm.to_arrays()}
        if isinstance(self.kernel_map, HomogeneousKernelMap):
            arrays["kernel_map"] = {
                "kappa": self.kernel_map.kappa_,
                "L": np.array(self.kernel_map.L_),
                "period": np.array(self.kernel_map.period_),
            }
        params = {"config": self.config.to_dict(), "svm": svm_params}
        if isinstance(self.kernel_map, HomogeneousKernelMap):  # a model without it maps in closed form (< 0.3.0)
            params["kernel_map"] = {"evaluation": self.kernel_map.evaluation}
        if self.calibrator is not None:
            arrays["calibration"] = self.calibrator.to_arrays()
            params["calibration"] = {"method": "platt", **self.calibrator.get_params()}
        if self.operating_points is not None:
            arrays["operating_points"] = self.operating_points.to_arrays()
            params["operating_points"] = self.operating_points.get_params()
        return write_model_dir(
            directory,
            "phow",
            params,
            arrays,
            extra={**self.info, **(extra or {})},
            labels=self.labels,
            dataset=self.dataset,
        )

    @classmethod
    def load(cls, directory) -> PhowModel:
        """Load a model directory written by :meth:`save` (0.1's included); a missing, changed or
        inconsistent file raises :class:`~phow_baseline.model.directory.ModelFileError` naming it.

        Parameters
        ----------
        directory : str or Path
            A ``"phow"`` model directory.

        Returns
        -------
        PhowModel
            The model, with its calibration and operating points when the directory holds them.

        Raises
        ------
        ModelFileError
            A missing or changed file, or parameters and arrays that do not fit together (the file is named).
        """
        meta, arrays = read_model_dir(directory)
        try:
            cfg = BaselineConfig.from_saved(meta["params"]["config"])
            vocab = encoding_for(cfg).from_arrays(cfg, arrays["vocabulary"])
            svm = OneVsRestSVM.from_arrays(meta["params"]["svm"], arrays["svm"])
            cal = ops = None
            if "calibration" in arrays:
                from ..classification import PlattCalibrator

                p = {k: v for k, v in meta["params"].get("calibration", {}).items() if k != "method"}
                cal = PlattCalibrator.from_arrays(arrays["calibration"], **p)
            if "operating_points" in arrays:
                from ..classification import OperatingPoints

                ops = OperatingPoints.from_arrays(
                    arrays["operating_points"], **meta["params"].get("operating_points", {})
                )
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelFileError(f"{Path(directory) / 'model.json'}: incomplete or inconsistent model ({exc})") from exc
        labels = meta.get("labels") or list(LABELS)  # 0.1 wrote ChestX-ray14's 14
        # the map's evaluation the SVMs were trained on: VLFeat's table since 0.3.0, the closed form before
        evaluation = (meta["params"].get("kernel_map") or {}).get("evaluation", "closed_form")
        if evaluation not in HOMKERMAP_EVALUATIONS:
            raise ModelFileError(
                f"{Path(directory) / 'model.json'}: kernel map evaluation {evaluation!r}, "
                f"expected one of {HOMKERMAP_EVALUATIONS}"
            )
        m = cls(
            cfg,
            vocab,
            svm,
            labels,
            info={k: meta[k] for k in ("trained_on", "n_train", "calibrated_on", "training") if k in meta},
            calibrator=cal,
            operating_points=ops,
            dataset=dataset_record(meta, Path(directory) / "model.json"),
        )
        if cal is not None and len(cal.a_) != len(labels):
            raise ModelFileError(
                f"{Path(directory) / 'calibration.npz'}: {len(cal.a_)} classes, expected {len(labels)} "
                f"(the labels of model.json)"
            )
        if isinstance(m.kernel_map, HomogeneousKernelMap):
            m.kernel_map.set_params(evaluation=evaluation)
        expected = m.encoder.n_features_out_ * (1 if m.kernel_map is None else 3)
        if svm.coef_.shape != (len(labels), expected):
            raise ModelFileError(
                f"{Path(directory) / 'svm.npz'}: SVM weights of shape {svm.coef_.shape}, "
                f"expected {(len(labels), expected)} (the labels of model.json x the features)"
            )
        return m
