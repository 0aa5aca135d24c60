"""Stage 4, classification: kernel maps, the 14 one-vs-rest SVMs, calibration and operating points.

:mod:`.kernel_map` (additive chi2 and homogeneous kernel maps), :mod:`.svm`
(:class:`OneVsRestSVM` and its solvers), :mod:`.calibration` (Platt and
temperature scaling), :mod:`.operating_points` (per-class decision thresholds).
"""

from .calibration import PlattCalibrator, TemperatureScaler
from .kernel_map import KERNEL_MAPS, AdditiveChi2Map, HomogeneousKernelMap, make_kernel_map
from .operating_points import OperatingPoints
from .svm import SOLVERS, OneVsRestSVM

__all__ = [
    "KERNEL_MAPS",
    "SOLVERS",
    "AdditiveChi2Map",
    "HomogeneousKernelMap",
    "OneVsRestSVM",
    "OperatingPoints",
    "PlattCalibrator",
    "TemperatureScaler",
    "make_kernel_map",
]
