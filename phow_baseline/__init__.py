"""phow-baseline: a classical PHOW + SVM baseline for NIH ChestX-ray14.

The package reads as the pipeline, one subpackage per stage, each importing
only the stages below it (``tests/test_package.py`` checks the import graph):

``data`` -> ``features`` -> ``encoding`` -> ``classification`` -> ``model`` ->
``evaluation`` -> ``followup`` -> ``report`` -> ``workflow`` -> ``cnn`` -> ``cli``,

with :mod:`~phow_baseline.io` (atomic writes, JSON, checksums, locks),
:mod:`~phow_baseline.parallel` (joblib/Dask backends) and
:mod:`~phow_baseline.config` (the baseline's settings) beneath them all.
The CNN comparison lives in :mod:`phow_baseline.cnn` and is the only place
that imports torch.  The 0.1 flat module names (``phow_baseline.dsift``,
``phow_baseline.metrics``, ...) still import, with a DeprecationWarning.
"""

import logging

from . import _compat
from ._version import __version__

_compat.install()
# messages go through logging (phow_baseline.progress); the library adds no handler but this one
logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = ["__version__"]
