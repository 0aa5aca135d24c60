"""Stage 5, model: the model directory, the registry of model kinds, the PHOW model and its heatmaps."""

from .directory import ModelFileError, load_model, read_model_dir, register_model_kind, write_model_dir
from .phow_model import HeatmapsUnavailableError, PhowModel

__all__ = [
    "HeatmapsUnavailableError", "ModelFileError", "PhowModel", "load_model", "read_model_dir",
    "register_model_kind", "write_model_dir",
]
