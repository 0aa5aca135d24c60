"""The CNN comparison (extra ``cnn``: torch and torchvision); the only place that imports torch.

:mod:`.models` builds VGG11-BN, ResNet-50/101 and DenseNet-121 with a
14-output head; :mod:`.data` feeds them from the uint8 image cache with the
Uniandes study's transforms; :mod:`.train` trains (Adam, BCE or multi-label
soft margin, plateau schedule, early stopping, exact resume), evaluates
through the shared :mod:`phow_baseline.evaluation`, and loads a trained model;
:mod:`.cam` gives class activation maps.

Importing this package does not import torch (so that ``phow-baseline cnn
--help`` works without the extra); its names load :mod:`.train` when first used.
"""

_LAZY = ("CnnConfig", "CnnModel", "load_cnn_model", "train_cnn")
__all__ = list(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        from . import train

        return getattr(train, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
