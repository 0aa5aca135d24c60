"""Stage 9, workflow: dataset-scale steps with resumable caches, the scikit-learn pipeline, the demo.

:mod:`.steps` (``run_baseline``, ``train_model``, ``evaluate_model``, ``predict_paths``: the dataset-scale
steps with caches that resume), :mod:`.pipeline` (``make_pipeline``: the baseline as one scikit-learn
``Pipeline`` for images in memory), :mod:`.predict` (``predict_to_csv``: image files to a predictions CSV),
:mod:`.localize` (``localize_images``, ``evaluate_localization_dir``, ``diff_images``: heatmap overlays, the
NIH box evaluation and follow-up differences, on files), :mod:`.disk` (the disk a run needs, checked before
it starts) and :mod:`.demo` (the whole baseline on a synthetic phantom).
"""

from .localize import diff_images, evaluate_localization_dir, localize_images
from .pipeline import make_pipeline
from .predict import predict_to_csv
from .steps import evaluate_model, predict_paths, run_baseline, train_model

__all__ = [
    "diff_images",
    "evaluate_localization_dir",
    "evaluate_model",
    "localize_images",
    "make_pipeline",
    "predict_paths",
    "predict_to_csv",
    "run_baseline",
    "train_model",
]
