"""Stage 4, classification: kernel maps, the 14 one-vs-rest SVMs, calibration and operating points."""

from .calibration import OperatingPoints, PlattCalibrator, TemperatureScaler
from .kernel_map import KERNEL_MAPS, AdditiveChi2Map, HomogeneousKernelMap, make_kernel_map
from .svm import SOLVERS, OneVsRestSVM

__all__ = [
    "KERNEL_MAPS", "SOLVERS", "AdditiveChi2Map", "HomogeneousKernelMap", "OneVsRestSVM", "OperatingPoints",
    "PlattCalibrator", "TemperatureScaler", "make_kernel_map",
]
