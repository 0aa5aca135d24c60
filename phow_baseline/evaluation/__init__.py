"""Stage 6, evaluation: ROC/AUROC and intervals, calibration, published tables, run directories, localization.

:mod:`.roc` (AUROC, its bootstrap intervals and the ROC bands, over the
resamples of :mod:`.bootstrap`), :mod:`.calibration_metrics` (Brier score,
ECE, reliability data), :mod:`.decision_metrics` (sensitivity, specificity,
PPV, NPV at the operating points), :mod:`.published` (the papers' AUROC and
comparison tables), :mod:`.plots` (ROC and reliability figures),
:mod:`.rundir` (the run directory and the predictions CSV) and
:mod:`.localization` (heatmaps to boxes, the NIH box evaluation).
"""

from .bootstrap import DEFAULT_N_BOOTSTRAP, bootstrap_weights
from .calibration_metrics import (
    N_BINS,
    brier_scores,
    calibration_summary,
    expected_calibration_error,
    reliability_curve,
)
from .decision_metrics import operating_point_metrics
from .localization import evaluate_localization, read_localization
from .plots import ROC_MARKED, plot_calibration, plot_roc
from .published import PUBLISHED, comparison_table, table_markdown
from .roc import auroc_weighted, bootstrap_auroc, bootstrap_roc_band, evaluate_scores
from .rundir import format_auroc_table, read_metrics, read_predictions, write_predictions, write_run_dir

__all__ = [
    "DEFAULT_N_BOOTSTRAP",
    "N_BINS",
    "PUBLISHED",
    "ROC_MARKED",
    "auroc_weighted",
    "bootstrap_auroc",
    "bootstrap_roc_band",
    "bootstrap_weights",
    "brier_scores",
    "calibration_summary",
    "comparison_table",
    "evaluate_localization",
    "evaluate_scores",
    "expected_calibration_error",
    "format_auroc_table",
    "operating_point_metrics",
    "plot_calibration",
    "plot_roc",
    "read_localization",
    "read_metrics",
    "read_predictions",
    "reliability_curve",
    "table_markdown",
    "write_predictions",
    "write_run_dir",
]
