"""The model directory: ``model.json`` plus ``.npy``/``.npz`` arrays, never pickles.

``train`` writes it; ``predict``, ``evaluate``, ``localise`` and ``diff``
read it.  ``model.json`` records the kind, the parameters of every stage,
the labels, library and dependency versions, the creation time and the
sha256 of each array file; loading checks every checksum and reads arrays
with ``allow_pickle=False``, so loading a model runs no code.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from . import __version__
from .data import LABELS

MODEL_FORMAT_VERSION = 1


class ModelFileError(ValueError):
    """A model directory is missing a file, or a file does not match its checksum."""


def sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def dependency_versions() -> dict:
    import cv2
    import numba
    import sklearn
    import skimage

    return {"phow_baseline": __version__, "python": platform.python_version(), "numpy": np.__version__,
            "scikit-learn": sklearn.__version__, "scikit-image": skimage.__version__, "numba": numba.__version__,
            "opencv": cv2.__version__}


def write_model_dir(directory, kind: str, params: dict, arrays: dict[str, dict[str, np.ndarray]],
                    extra: dict | None = None) -> Path:
    """Write ``model.json`` and one ``.npz`` per entry of ``arrays`` (name -> {key: array}).

    Array files are written first, ``model.json`` last (atomically), so a
    directory with a ``model.json`` is complete.
    """
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    files = {}
    for name, arrs in arrays.items():
        fname = f"{name}.npz"
        tmp = d / (fname + ".tmp.npz")
        np.savez(tmp, **{k: np.asarray(v) for k, v in arrs.items()})
        os.replace(tmp, d / fname)
        files[name] = {"file": fname, "sha256": sha256_file(d / fname)}
    meta = {"format": MODEL_FORMAT_VERSION, "kind": kind, "labels": list(LABELS), "params": params,
            "files": files, "versions": dependency_versions(),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    if extra:
        meta.update(extra)
    tmp = d / "model.json.tmp"
    tmp.write_text(json.dumps(meta, indent=2, default=_json_default))
    os.replace(tmp, d / "model.json")
    return d


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, (np.ndarray,)):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def read_model_dir(directory) -> tuple[dict, dict[str, dict[str, np.ndarray]]]:
    """Read and verify a model directory: ``(meta, arrays)``."""
    d = Path(directory)
    mj = d / "model.json"
    if not mj.exists():
        raise ModelFileError(f"{mj}: not a model directory (no model.json)")
    try:
        meta = json.loads(mj.read_text())
    except json.JSONDecodeError as exc:
        raise ModelFileError(f"{mj}: invalid JSON ({exc})") from exc
    if meta.get("format") != MODEL_FORMAT_VERSION:
        raise ModelFileError(f"{mj}: unsupported model format {meta.get('format')!r}")
    arrays = {}
    for name, f in meta.get("files", {}).items():
        p = d / f["file"]
        if not p.exists():
            raise ModelFileError(f"{p}: array file listed in model.json is missing")
        if sha256_file(p) != f["sha256"]:
            raise ModelFileError(f"{p}: checksum mismatch (the file changed after the model was written)")
        with np.load(p, allow_pickle=False) as z:
            arrays[name] = {k: z[k] for k in z.files}
    return meta, arrays


def load_model(directory):
    """Load a PHOW model (or, with the cnn extra, a CNN run) from its directory."""
    d = Path(directory)
    mj = d / "model.json"
    if not mj.exists():
        raise ModelFileError(f"{mj}: not a model directory (no model.json)")
    kind = json.loads(mj.read_text()).get("kind")
    if kind == "phow":
        from .pipeline import PhowModel

        return PhowModel.load(d)
    if kind == "cnn":
        from .cnn import load_cnn_model  # imports torch

        return load_cnn_model(d)
    raise ModelFileError(f"{mj}: unknown model kind {kind!r}")


def load_heatmap_model(path):
    """A model with ``heatmaps(img)``, ``scores(img)``, ``image_size`` and ``preprocess(path)``."""
    return load_model(path)
