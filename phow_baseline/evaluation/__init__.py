"""Stage 6, evaluation: ROC/AUROC and intervals, calibration, published tables, run directories, localization.

:mod:`.roc` (AUROC, its bootstrap intervals and the ROC bands, over the
resamples of :mod:`.bootstrap`), :mod:`.calibration_metrics` (Brier score,
ECE, reliability data), :mod:`.decision_metrics` (sensitivity, specificity,
PPV, NPV at the operating points), :mod:`.published` (the papers' AUROC and
comparison tables), :mod:`.plots` (ROC and reliability figures),
:mod:`.rundir` (the run directory and the predictions CSV),
:mod:`.paired` and :mod:`.paired_plots` (paired comparison of two runs on the
same images: DeLong's test, the paired bootstrap, the forest plot),
:mod:`.subgroups` (AUROC and false-negative rate by sex, age band, view and
follow-up) and :mod:`.localization` (heatmaps to boxes, the NIH box evaluation).
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
from .paired import (
    compare_run_dirs,
    compare_runs,
    compare_scores,
    delong_test,
    format_paired,
    paired_bootstrap,
    paired_delong,
    paired_frame,
    paired_markdown,
    read_truth,
    write_paired,
)
from .paired_plots import paired_caption, plot_paired_differences
from .plots import ROC_MARKED, plot_calibration, plot_roc
from .published import PUBLISHED, comparison_table, table_markdown
from .roc import auroc_weighted, bootstrap_auroc, bootstrap_roc_band, evaluate_scores
from .rundir import (
    LABELS_CSV,
    format_auroc_table,
    read_metrics,
    read_predictions,
    write_labels,
    write_predictions,
    write_run_dir,
)
from .subgroups import (
    SubgroupMetadataWarning,
    format_subgroups,
    plot_subgroup_gaps,
    subgroup_caption,
    subgroup_frame,
    subgroup_masks,
    subgroup_performance,
)

__all__ = [
    "DEFAULT_N_BOOTSTRAP",
    "LABELS_CSV",
    "N_BINS",
    "PUBLISHED",
    "ROC_MARKED",
    "SubgroupMetadataWarning",
    "auroc_weighted",
    "bootstrap_auroc",
    "bootstrap_roc_band",
    "bootstrap_weights",
    "brier_scores",
    "calibration_summary",
    "compare_run_dirs",
    "compare_runs",
    "compare_scores",
    "comparison_table",
    "delong_test",
    "evaluate_localization",
    "evaluate_scores",
    "expected_calibration_error",
    "format_auroc_table",
    "format_paired",
    "format_subgroups",
    "operating_point_metrics",
    "paired_bootstrap",
    "paired_caption",
    "paired_delong",
    "paired_frame",
    "paired_markdown",
    "plot_calibration",
    "plot_paired_differences",
    "plot_roc",
    "plot_subgroup_gaps",
    "read_localization",
    "read_metrics",
    "read_predictions",
    "read_truth",
    "reliability_curve",
    "subgroup_caption",
    "subgroup_frame",
    "subgroup_masks",
    "subgroup_performance",
    "table_markdown",
    "write_labels",
    "write_paired",
    "write_predictions",
    "write_run_dir",
]
