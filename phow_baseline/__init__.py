"""phow-baseline: a classical PHOW + SVM baseline for NIH ChestX-ray14.

The package reads as the pipeline, one module per stage, each importing
only the stages below it (``tests/test_package.py`` checks the import graph):

data -> preprocess -> dsift -> phow -> quantize -> vocabulary -> pyramid ->
kernel_map -> features -> classify -> config -> attribution -> model ->
steps / pipeline -> metrics -> localize / followup -> report -> demo -> cli.

:mod:`~phow_baseline.io` (atomic writes, JSON reading, checksums, image
listing) and :mod:`~phow_baseline.model_io` (the model directory) serve
every stage.
The CNN comparison lives in :mod:`phow_baseline.cnn` and is the only place
that imports torch.
"""

__version__ = "0.1.0"
