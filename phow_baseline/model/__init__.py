"""Stage 5, model: the model directory, the registry of model kinds, the interface every kind meets
(:class:`Model`, in :mod:`.protocol`), the PHOW model and its heatmaps.
"""

from .directory import ModelFileError, load_model, read_model_dir, register_model_kind, write_model_dir
from .phow_model import PhowModel
from .protocol import DecisionsUnavailableError, HeatmapsUnavailableError, Model

__all__ = [
    "DecisionsUnavailableError",
    "HeatmapsUnavailableError",
    "Model",
    "ModelFileError",
    "PhowModel",
    "load_model",
    "read_model_dir",
    "register_model_kind",
    "write_model_dir",
]
