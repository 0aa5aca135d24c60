"""Stage 6, evaluation: ROC/AUROC with bootstrap intervals, published tables, run directories, localization."""

from .localization import evaluate_localization, read_localization
from .metrics import PUBLISHED, bootstrap_auroc, evaluate_scores, read_metrics, write_predictions, write_run_dir

__all__ = [
    "PUBLISHED", "bootstrap_auroc", "evaluate_localization", "evaluate_scores", "read_localization",
    "read_metrics", "write_predictions", "write_run_dir",
]
