"""Stage 7, follow-up: registration and differencing of two X-rays of one patient.

:mod:`.registration` aligns the later image to the earlier one and says how
well; :mod:`.differences` orders the pair and computes the structural,
intensity and (with a model) heatmap and score differences inside the
overlap; :mod:`.figures` writes and reads the diff directory (``diff.json``
and the overlays).
"""

from .differences import ORDER_RULE, SSIM_WINDOW, FollowupDiff, PairError, diff_pair, warp_with_overlap
from .figures import (
    DISSIMILARITY_MAX,
    NO_DATA_GREYS,
    figure_paths,
    no_data_hatch,
    overlay_rgb,
    read_diff,
    write_diff_dir,
)
from .registration import ECC_GOOD, ECC_POOR, MIN_OVERLAP, MOTIONS, Registration, register, registration_quality

__all__ = [
    "DISSIMILARITY_MAX",
    "ECC_GOOD",
    "ECC_POOR",
    "MIN_OVERLAP",
    "MOTIONS",
    "NO_DATA_GREYS",
    "ORDER_RULE",
    "SSIM_WINDOW",
    "FollowupDiff",
    "PairError",
    "Registration",
    "diff_pair",
    "figure_paths",
    "no_data_hatch",
    "overlay_rgb",
    "read_diff",
    "register",
    "registration_quality",
    "warp_with_overlap",
    "write_diff_dir",
]
