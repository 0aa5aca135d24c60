"""The model directory: ``model.json`` plus ``.npz`` arrays, never pickles.

``train`` writes it; ``predict``, ``evaluate``, ``localize`` and ``diff``
read it.  ``model.json`` records the kind, the parameters of every stage,
the labels, the dataset it was trained on (``dataset``: its kind, label
names, label policy; :func:`dataset_record`), library and dependency
versions, the creation time and the sha256 of each array file; loading
checks every checksum and reads arrays with ``allow_pickle=False``, so
loading a model runs no code.  A directory written before the dataset was
recorded (0.1, and 0.2 before the dataset protocol) was trained on
ChestX-ray14 with its 14 labels.

Which class loads a directory is decided by its ``kind`` through one
registry (:func:`register_model_kind`): the PHOW model registers itself as
``"phow"`` and the CNN extra as ``"cnn"``, by name, so this module imports
neither.
"""

from __future__ import annotations

import importlib
import platform
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from .. import __version__
from ..data.chestxray14 import LABELS
from ..io import DataFileError, atomic_save_npz, atomic_write_json, confined, load_npz, read_json, sha256_file

MODEL_FORMAT_VERSION = 1


class ModelFileError(DataFileError):
    """A model directory is missing a file, or a file does not match its checksum."""


def dependency_versions() -> dict:
    """Versions of phow-baseline, Python and the libraries a model's numbers depend on (for ``model.json``).

    Returns
    -------
    dict of str to str
        ``phow_baseline``, ``python``, ``numpy``, ``scikit-learn``, ``scikit-image``, ``numba`` and
        ``opencv`` -> their version strings (imports cv2, numba, skimage and sklearn).
    """
    import cv2
    import numba
    import skimage
    import sklearn

    return {
        "phow_baseline": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scikit-learn": sklearn.__version__,
        "scikit-image": skimage.__version__,
        "numba": numba.__version__,
        "opencv": cv2.__version__,
    }


def dataset_record(meta: dict, where="model.json") -> dict:
    """The training dataset a ``model.json`` records, with the defaults of a directory that records none.

    Parameters
    ----------
    meta : dict
        The contents of ``model.json``.
    where : str or Path
        The file, for the message.

    Returns
    -------
    dict
        ``meta["dataset"]`` (``kind``, ``labels``, ``label_policy``, ``frontal_only``, ``split_note``, as
        written), or for a directory without one ``{"kind": "chestxray14", "labels": [...]}`` with the
        model's labels (ChestX-ray14's 14 when ``model.json`` names none).

    Raises
    ------
    ModelFileError
        ``dataset`` is not an object with a ``kind``.
    """
    rec = meta.get("dataset")
    if rec is None:
        return {"kind": "chestxray14", "labels": list(meta.get("labels") or LABELS)}
    if not isinstance(rec, dict) or not isinstance(rec.get("kind"), str):
        raise ModelFileError(f"{where}: 'dataset' should be an object with a 'kind', got {rec!r}")
    return dict(rec)


def write_model_dir(
    directory,
    kind: str,
    params: dict,
    arrays: dict[str, dict[str, np.ndarray]],
    extra: dict | None = None,
    labels=None,
    dataset: dict | None = None,
) -> Path:
    """Write ``model.json`` and one ``.npz`` per entry of ``arrays`` (name -> {key: array}).

    Array files are written first, ``model.json`` last (each atomically), so a
    directory with a ``model.json`` is complete.

    Parameters
    ----------
    directory : path
        The model directory (created).
    kind : str
        The model kind (``"phow"``, ``"cnn"``).
    params : dict
        Every stage's parameters (JSON-ready).
    arrays : dict
        File stem -> {key: array}, each written as ``<stem>.npz``.
    extra : dict, optional
        More top-level keys of ``model.json`` (the training record).
    labels : sequence of str, optional
        The model's labels, the column order of its scores (default ChestX-ray14's 14).
    dataset : dict, optional
        What it was trained on (``kind``, ``labels``, ``label_policy``, ...), written as ``dataset``.

    Returns
    -------
    Path
        The directory.
    """
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    files = {}
    for name, arrs in arrays.items():
        fname = f"{name}.npz"
        atomic_save_npz(d / fname, arrs)
        files[name] = {"file": fname, "sha256": sha256_file(d / fname)}
    meta = {
        "format": MODEL_FORMAT_VERSION,
        "kind": kind,
        "labels": list(LABELS if labels is None else labels),
        "params": params,
        "files": files,
        "versions": dependency_versions(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if dataset is not None:
        meta["dataset"] = dict(dataset)
    if extra:
        meta.update(extra)
    atomic_write_json(d / "model.json", meta)
    return d


def model_json_path(directory) -> Path:
    """``directory/model.json``, or an error that says where the model is when given a run folder.

    Parameters
    ----------
    directory : str or Path
        A model directory.

    Returns
    -------
    Path
        ``directory/model.json`` (it exists).

    Raises
    ------
    ModelFileError
        ``directory`` holds no ``model.json``; when it is a run folder (or its ``run``) whose ``model``
        folder holds one, the message names that folder.
    """
    d = Path(directory)
    mj = d / "model.json"
    if mj.exists():
        return mj
    for cand in (d / "model", d.parent / "model"):
        if (cand / "model.json").exists() and cand.resolve() != d.resolve():
            raise ModelFileError(f"{d}: not a model directory (no model.json); the model of this run is in {cand}")
    raise ModelFileError(f"{mj}: not a model directory (no model.json)")


def _read_meta(mj: Path) -> dict:
    try:
        return read_json(mj, what="model file")
    except DataFileError as exc:
        raise ModelFileError(str(exc)) from None


def read_model_dir(directory) -> tuple[dict, dict[str, dict[str, np.ndarray]]]:
    """Read and verify a model directory: ``(meta, arrays)``.

    Every array file listed in ``model.json`` must exist inside the directory and match its sha256; arrays
    are read with ``allow_pickle=False``.

    Parameters
    ----------
    directory : str or Path
        A model directory written by :func:`write_model_dir`.

    Returns
    -------
    meta : dict
        The contents of ``model.json``.
    arrays : dict of str to dict of str to ndarray
        File stem (``"vocabulary"``, ``"svm"``, ``"weights"``...) -> that ``.npz`` file's arrays by key.

    Raises
    ------
    ModelFileError
        No ``model.json``, an unsupported ``format``, a bad ``files`` entry, a missing array file or a
        checksum mismatch (the message names the file).
    """
    d = Path(directory)
    mj = model_json_path(d)
    meta = _read_meta(mj)
    if meta.get("format") != MODEL_FORMAT_VERSION:
        raise ModelFileError(f"{mj}: unsupported model format {meta.get('format')!r}")
    arrays = {}
    files = meta.get("files", {})
    if not isinstance(files, dict):
        raise ModelFileError(f"{mj}: 'files' should map names to files")
    for name, f in files.items():
        try:
            p = confined(d, f["file"])
            digest = f["sha256"]
        except (TypeError, KeyError, DataFileError) as exc:
            raise ModelFileError(f"{mj}: bad entry for {name!r} in 'files' ({exc})") from None
        if not p.exists():
            raise ModelFileError(f"{p}: array file listed in model.json is missing")
        if sha256_file(p) != digest:
            raise ModelFileError(f"{p}: checksum mismatch (the file changed after the model was written)")
        arrays[name] = load_npz(p)
    return meta, arrays


#: kind -> loader (a callable taking the directory, or "module:attribute" imported when first needed).
_MODEL_KINDS: dict[str, Callable | str] = {}
_MODEL_KIND_NEEDS: dict[str, str] = {}


def register_model_kind(kind: str, loader: Callable | str, needs: str | None = None) -> None:
    """Make :func:`load_model` load directories of ``kind`` with ``loader``.

    The loader returns an instance of a :class:`phow_baseline.model.protocol.Model` subclass (the
    interface every caller relies on), usually that class's ``load``.

    Parameters
    ----------
    kind : str
        The ``kind`` written in ``model.json`` (``"phow"``, ``"cnn"``).
    loader : callable or str
        A callable ``loader(directory) -> Model``, or a ``"module:attr"`` string (dotted attributes
        allowed, e.g. ``"phow_baseline.model.phow_model:PhowModel.load"``) imported on first use.
    needs : str, optional
        What to install when importing ``loader`` fails (named in the error message).
    """
    _MODEL_KINDS[kind] = loader
    if needs:
        _MODEL_KIND_NEEDS[kind] = needs


def _resolve(kind: str, mj: Path) -> Callable:
    loader = _MODEL_KINDS[kind]
    if callable(loader):
        return loader
    module, _, attr = loader.partition(":")
    try:
        obj = importlib.import_module(module)
    except ImportError as exc:
        need = _MODEL_KIND_NEEDS.get(kind, "")
        raise ModelFileError(f"{mj}: a {kind!r} model needs {need or module} ({exc})") from None
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def load_model(directory):
    """Load a model directory of any registered kind (PHOW; CNN with the cnn extra).

    Parameters
    ----------
    directory : str or Path
        A model directory (``model.json`` + ``.npz`` arrays).

    Returns
    -------
    Model
        The loaded model, an instance of the class registered for ``model.json``'s ``kind``
        (:class:`~phow_baseline.model.PhowModel`, :class:`~phow_baseline.cnn.CnnModel`).

    Raises
    ------
    ModelFileError
        No ``model.json``, an unknown kind, a kind whose extra is not installed, or a bad file.
    """
    d = Path(directory)
    mj = model_json_path(d)
    kind = _read_meta(mj).get("kind")
    if kind not in _MODEL_KINDS:
        raise ModelFileError(f"{mj}: unknown model kind {kind!r} (known: {sorted(_MODEL_KINDS)})")
    return _resolve(kind, mj)(d)


register_model_kind("phow", "phow_baseline.model.phow_model:PhowModel.load")
register_model_kind(
    "cnn", "phow_baseline.cnn:load_cnn_model", needs="the cnn extra (pip install -e '.[cnn]': torch and torchvision)"
)
