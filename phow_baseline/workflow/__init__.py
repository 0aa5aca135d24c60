"""Stage 9, workflow: dataset-scale steps with resumable caches, the scikit-learn pipeline, the demo."""

from .pipeline import make_pipeline
from .steps import evaluate_model, predict_paths, run_baseline, train_model

__all__ = ["evaluate_model", "make_pipeline", "predict_paths", "run_baseline", "train_model"]
