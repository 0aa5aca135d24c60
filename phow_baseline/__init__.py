"""phow-baseline: a classical PHOW + SVM baseline for NIH ChestX-ray14.

The package reads as the pipeline: :mod:`~phow_baseline.data` ->
:mod:`~phow_baseline.preprocess` -> :mod:`~phow_baseline.dsift` /
:mod:`~phow_baseline.phow` -> :mod:`~phow_baseline.vocabulary` ->
:mod:`~phow_baseline.encode` -> :mod:`~phow_baseline.classify` ->
:mod:`~phow_baseline.metrics` -> :mod:`~phow_baseline.localise` /
:mod:`~phow_baseline.followup` -> :mod:`~phow_baseline.report`.
The CNN comparison lives in :mod:`phow_baseline.cnn` and is the only place
that imports torch.
"""

__version__ = "0.1.0"
