"""Backbones from torchvision with an ``n_out``-output head (one per label: 14 for ChestX-ray14), and their weights.

``build_model(name, weights)``: ``weights`` is ``None`` (from scratch, one arm
of the Uniandes study), ``"imagenet"`` (torchvision's weights API; needs the
internet the first time, only when asked for) or a path to a local file
(a ``state_dict``, or a checkpoint holding one under ``state_dict`` /
``model``; ``module.`` prefixes and DenseNet's old-style keys such as
``norm.1`` are handled).  A head of another size in the file (ImageNet's
1000 classes) is skipped and the new ``n_out``-way head kept; any other missing or
mis-shaped key is an error naming the file and the keys.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
import torch.nn as nn
import torchvision

from ..data.chestxray14 import LABELS

BACKBONES = ("vgg11_bn", "resnet50", "resnet101", "densenet121")
_IMAGENET = {
    "vgg11_bn": "VGG11_BN_Weights",
    "resnet50": "ResNet50_Weights",
    "resnet101": "ResNet101_Weights",
    "densenet121": "DenseNet121_Weights",
}
#: torchvision's pattern for DenseNet checkpoints saved before its key names changed.
_DENSENET_OLD = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var|num_batches_tracked))$"
)


class WeightsError(ValueError):
    """A weights file does not fit the backbone; the message names the file and the keys."""


def head_name(name: str) -> str:
    """The state-dict prefix of backbone ``name``'s classification head (``"fc"``, ``"classifier"``...).

    Parameters
    ----------
    name : str
        One of :data:`BACKBONES`.

    Returns
    -------
    str
        ``"classifier.6"`` (VGG11-BN), ``"fc"`` (ResNets) or ``"classifier"`` (DenseNet-121).
    """
    return {"vgg11_bn": "classifier.6", "resnet50": "fc", "resnet101": "fc", "densenet121": "classifier"}[name]


def _replace_head(model: nn.Module, name: str, n_out: int) -> nn.Module:
    if name.startswith("resnet"):
        model.fc = nn.Linear(model.fc.in_features, n_out)
    elif name == "densenet121":
        model.classifier = nn.Linear(model.classifier.in_features, n_out)
    elif name == "vgg11_bn":
        model.classifier[6] = nn.Linear(model.classifier[6].in_features, n_out)
    return model


def build_model(name: str, weights=None, n_out: int = len(LABELS)) -> nn.Module:
    """A torchvision backbone with an ``n_out``-way linear head (logits).

    Parameters
    ----------
    name : str
        One of :data:`BACKBONES`.
    weights : None, "imagenet" or path
        From scratch, torchvision's ImageNet weights, or a weights file (see the module docstring).
    n_out : int, default=14
        Outputs: the number of labels of the dataset (ChestX-ray14's 14 by default).

    Returns
    -------
    torch.nn.Module
        The network, in training mode on the CPU; it maps ``(B, 3, H, W)`` normalized images to
        ``(B, n_out)`` logits.

    Raises
    ------
    ValueError
        An unknown backbone.
    WeightsError
        A weights file that cannot be read or does not fit the backbone.
    """
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose one of {BACKBONES}")
    ctor = getattr(torchvision.models, name)
    if weights == "imagenet":
        w = getattr(torchvision.models, _IMAGENET[name]).IMAGENET1K_V1
        model = ctor(weights=w)
        return _replace_head(model, name, n_out)
    model = _replace_head(ctor(weights=None), name, n_out)
    if weights is not None:
        load_weights_file(model, name, weights)
    return model


def _state_dict_from(obj, path):
    if isinstance(obj, dict):
        for key in ("state_dict", "model", "model_state"):
            if key in obj and isinstance(obj[key], dict):
                return obj[key]
        if all(isinstance(v, torch.Tensor) for v in obj.values()):
            return obj
    raise WeightsError(f"{path}: no state_dict found (keys: {list(obj)[:8] if isinstance(obj, dict) else type(obj)})")


def read_weights(path) -> dict:
    """A state_dict from a ``.pt``/``.pth`` (loaded with ``weights_only=True``: no code runs) or ``.npz`` file.

    Parameters
    ----------
    path : str or Path
        The weights file: a ``.npz`` of arrays (read with ``allow_pickle=False``), or a torch file holding
        a state_dict or a checkpoint with one under ``state_dict``, ``model`` or ``model_state``.

    Returns
    -------
    dict of str to torch.Tensor
        Parameter and buffer name -> tensor (names as in the file).

    Raises
    ------
    WeightsError
        The file is missing, unreadable or holds no state_dict.
    """
    path = Path(path)
    if not path.exists():
        raise WeightsError(f"{path}: weights file not found")
    if path.suffix == ".npz":
        import numpy as np

        with np.load(path, allow_pickle=False) as z:
            return {k: torch.from_numpy(z[k].copy()) for k in z.files}
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many kinds here
        raise WeightsError(f"{path}: cannot read weights ({type(exc).__name__}: {exc})") from exc
    return _state_dict_from(obj, path)


def load_weights_file(model: nn.Module, name: str, path) -> nn.Module:
    """Load a weights file into ``model`` (backbone ``name``), skipping a head of another size; returns ``model``.

    Keys are normalized first (``module.`` prefixes dropped, DenseNet's old ``norm.1``-style names
    renamed); ``num_batches_tracked`` buffers may be missing (files older than torch 0.4.1).

    Parameters
    ----------
    model : torch.nn.Module
        The network to fill (from :func:`build_model`), changed in place.
    name : str
        Its backbone, one of :data:`BACKBONES` (names the head that may be skipped).
    path : str or Path
        The weights file (see :func:`read_weights`).

    Returns
    -------
    torch.nn.Module
        ``model``, with the file's weights.

    Raises
    ------
    WeightsError
        A missing, unexpected or mis-shaped key other than the head's (the message names the file and the keys).
    """
    sd = read_weights(path)
    fixed = {}
    for k, v in sd.items():
        k = k[7:] if k.startswith("module.") else k
        m = _DENSENET_OLD.match(k)
        if m:
            k = m.group(1) + m.group(2)
        fixed[k] = v
    own = model.state_dict()
    head = head_name(name)
    skipped = [k for k in fixed if k.startswith(head + ".") and k in own and fixed[k].shape != own[k].shape]
    for k in skipped:
        del fixed[k]
    missing = [
        k for k in own if k not in fixed and not k.startswith(head + ".") and not k.endswith("num_batches_tracked")
    ]  # absent from files older than torch 0.4.1
    unexpected = [k for k in fixed if k not in own]
    wrong = [
        f"{k}: file {tuple(fixed[k].shape)} vs model {tuple(own[k].shape)}"
        for k in fixed
        if k in own and fixed[k].shape != own[k].shape
    ]
    if missing or unexpected or wrong:
        parts = []
        if wrong:
            parts.append(f"{len(wrong)} mis-shaped key(s), e.g. {wrong[:3]}")
        if missing:
            parts.append(f"{len(missing)} missing key(s), e.g. {missing[:3]}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s), e.g. {unexpected[:3]}")
        raise WeightsError(f"{path}: does not fit {name}: " + "; ".join(parts))
    model.load_state_dict(fixed, strict=False)
    return model


def state_dict_to_arrays(model: nn.Module) -> dict:
    """The model's parameters and buffers as numpy arrays (for a ``.npz`` model file).

    Parameters
    ----------
    model : torch.nn.Module
        Any network (on any device).

    Returns
    -------
    dict of str to ndarray
        State-dict name -> a CPU copy of the tensor (same shape and dtype).
    """
    return {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}
