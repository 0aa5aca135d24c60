"""What every model kind is: the one interface ``predict``, ``evaluate``, ``localize``, ``diff`` and the report use.

A model kind (the PHOW model, ``"phow"``; the CNN of the ``cnn`` extra,
``"cnn"``) subclasses :class:`Model`, implements its abstract methods and
registers its loader with :func:`phow_baseline.model.directory.register_model_kind`.
Callers then use any loaded model through these names only, with no
``getattr(model, ..., default)``: a model kind that lacks a capability
says so with a flag (:attr:`Model.has_heatmaps`, :attr:`Model.has_decisions`)
and raises a clear error (:class:`HeatmapsUnavailableError`,
:class:`DecisionsUnavailableError`) when asked for it anyway.

Shapes: an image is what :meth:`Model.preprocess` returns, a ``(S, S)``
uint8 array with ``S = model.image_size``; scores are one row of
``len(model.labels)`` numbers per image (14 for a ChestX-ray14 model), in
the order of ``model.labels``.  ``model.dataset`` records what the model was
trained on (the dataset kind, its label names and the label policy).
"""

from __future__ import annotations

import abc
from pathlib import Path

import numpy as np

#: What :meth:`Model.scores` gives: probabilities (calibrated PHOW model, CNN) or SVM margins.
SCORE_KINDS = ("probability", "margin")


class HeatmapsUnavailableError(ValueError):
    """The model has no heatmaps (e.g. a PHOW model with Fisher vectors or VLAD: not implemented yet)."""


class DecisionsUnavailableError(ValueError):
    """The model has no operating points to turn scores into 0/1 calls (trained without calibration, or a CNN)."""


class Model(abc.ABC):
    """The interface every model kind meets.

    Attributes
    ----------
    kind : str
        The model kind, as written in ``model.json`` (``"phow"``, ``"cnn"``).
    labels : tuple of str
        The finding labels (ChestX-ray14's 14, or the training dataset's), the column order of every
        score array.
    dataset : dict
        What it was trained on, as ``model.json`` records it: ``kind`` (a dataset kind, see
        :data:`phow_baseline.data.DATASETS`), ``labels``, ``label_policy`` ... (see
        :func:`phow_baseline.model.directory.dataset_record`); ``{"kind": "chestxray14", ...}`` for a
        model written before datasets were recorded.
    scores_in_workers : bool
        True when :func:`phow_baseline.workflow.predict_paths` may send the model to worker processes
        (a PHOW model, CPU only); False when it must score in this process (a CNN on its device).
    """

    kind: str = ""
    labels: tuple = ()
    dataset: dict = {}  # each instance sets its own; never mutated here
    scores_in_workers: bool = True

    @property
    def dataset_kind(self) -> str:
        """The kind of the dataset the model was trained on (``"chestxray14"`` when not recorded)."""
        return str(self.dataset.get("kind", "chestxray14"))

    @property
    @abc.abstractmethod
    def image_size(self) -> int:
        """Side ``S`` of the square images :meth:`preprocess` gives, in pixels."""

    @property
    @abc.abstractmethod
    def score_kind(self) -> str:
        """What :meth:`scores` gives: ``"probability"`` or ``"margin"`` (:data:`SCORE_KINDS`)."""

    @property
    @abc.abstractmethod
    def has_heatmaps(self) -> bool:
        """Whether :meth:`heatmaps` works for this model."""

    @property
    @abc.abstractmethod
    def has_decisions(self) -> bool:
        """Whether :meth:`decide` works for this model (it holds operating points)."""

    @abc.abstractmethod
    def preprocess(self, image) -> np.ndarray:
        """A raw X-ray (a file path or an array) -> the ``(S, S)`` uint8 image the model scores.

        Parameters
        ----------
        image : str, Path or ndarray
            An image file, or a decoded image (``(H, W)`` grey, ``(H, W, 3)`` BGR, uint8 or uint16).

        Returns
        -------
        ndarray of uint8, shape (S, S)
            The image as the model was trained on it, ``S = image_size`` pixels.

        Raises
        ------
        phow_baseline.data.ImageReadError
            A file that cannot be used (missing, corrupt, not an image...).
        """

    @abc.abstractmethod
    def raw_scores(self, image) -> np.ndarray:
        """The model's own outputs for one preprocessed image, ``(14,)`` (SVM margins, CNN logits).

        Parameters
        ----------
        image : ndarray of uint8, shape (S, S)
            One image from :meth:`preprocess`.

        Returns
        -------
        ndarray, shape (n_labels,)
            One raw score per label, in the order of :attr:`labels` (unbounded; not probabilities).
        """

    @abc.abstractmethod
    def calibrate(self, raw_scores) -> np.ndarray:
        """Raw scores ``(n, 14)`` -> :meth:`scores` ``(n, 14)`` float64 (unchanged for an uncalibrated model).

        Parameters
        ----------
        raw_scores : array-like, shape (n_images, n_labels)
            Rows of :meth:`raw_scores`.

        Returns
        -------
        ndarray of float64, shape (n_images, n_labels)
            Probabilities in [0, 1] when :attr:`score_kind` is ``"probability"``, else the raw scores.
        """

    def scores(self, image) -> np.ndarray:
        """The 14 scores of one preprocessed image, ``(14,)``: probabilities when :attr:`score_kind` says so.

        ``calibrate(raw_scores(image))``.

        Parameters
        ----------
        image : ndarray of uint8, shape (S, S)
            One image from :meth:`preprocess`.

        Returns
        -------
        ndarray of float64, shape (n_labels,)
            Probabilities in [0, 1] (calibrated PHOW model, CNN) or SVM margins, in the order of :attr:`labels`.
        """
        return self.calibrate(np.asarray(self.raw_scores(image))[None])[0]

    @abc.abstractmethod
    def decide(self, probabilities) -> np.ndarray:
        """0/1 calls ``(n, 14)`` of probabilities ``(n, 14)`` at the model's operating points.

        Parameters
        ----------
        probabilities : array-like, shape (n_images, n_labels)
            Probabilities in [0, 1] (:meth:`scores`, :meth:`calibrate`).

        Returns
        -------
        ndarray, shape (n_images, n_labels)
            1 where a probability reaches its label's threshold, else 0.

        Raises
        ------
        DecisionsUnavailableError
            :attr:`has_decisions` is False.
        """

    @abc.abstractmethod
    def heatmaps(self, image) -> np.ndarray:
        """Per-class heatmaps of one preprocessed image, ``(14, S, S)`` float32.

        Parameters
        ----------
        image : ndarray of uint8, shape (S, S)
            One image from :meth:`preprocess`.

        Returns
        -------
        ndarray of float32, shape (n_labels, S, S)
            One map per label on the image's pixel grid (how each pixel drives that label's score).

        Raises
        ------
        HeatmapsUnavailableError
            :attr:`has_heatmaps` is False.
        """

    @abc.abstractmethod
    def save(self, directory, extra: dict | None = None) -> Path:
        """Write the model directory (``model.json`` + ``.npz`` arrays, no pickles); returns its path.

        Parameters
        ----------
        directory : str or Path
            The model directory (created; existing files of the same names are replaced).
        extra : dict, optional
            More top-level entries for ``model.json`` (JSON-ready).

        Returns
        -------
        Path
            The model directory.
        """

    @classmethod
    @abc.abstractmethod
    def load(cls, directory) -> Model:
        """Load a model directory of this kind (checksums verified, no pickles).

        Parameters
        ----------
        directory : str or Path
            A model directory written by :meth:`save`.

        Returns
        -------
        Model
            The loaded model (an instance of this class).
        """
