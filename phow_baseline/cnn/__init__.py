"""The CNN comparison (extra ``cnn``: torch and torchvision); the only place that imports torch.

:mod:`.models` builds VGG11-BN, ResNet-50/101 and DenseNet-121 with a
14-output head; :mod:`.data` feeds them from the uint8 image cache with the
Uniandes study's transforms; :mod:`.train` trains (Adam, BCE or multi-label
soft margin, plateau schedule, early stopping, exact resume), evaluates
through the shared :mod:`phow_baseline.metrics`, and loads a trained model;
:mod:`.cam` gives class activation maps.
"""

from .train import CnnConfig, CnnModel, load_cnn_model, train_cnn  # noqa: F401
