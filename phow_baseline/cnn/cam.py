"""Class activation maps (CAM) and Grad-CAM for the CNNs (one map per label).

CAM (Zhou et al. 2016) for a backbone whose head is global average pooling
followed by one linear layer (ResNet, DenseNet): with ``A_k`` the last
convolutional block's feature maps (after DenseNet's final ReLU) and
``w_ck`` the head's weight of feature ``k`` for class ``c``,
``CAM_c = sum_k w_ck A_k``; its spatial mean plus the bias ``b_c`` is the
class logit.  Each class uses its own row of the head (ports that take the
same row for every class show one map for all classes).

Grad-CAM (Selvaraju et al. 2017), for any backbone and the only option for
VGG11-BN (whose head is not GAP + linear): ``ReLU(sum_k alpha_ck A_k)`` with
``alpha_ck`` the spatial mean of ``d logit_c / d A_k``.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def features_and_head(model, name: str, x: torch.Tensor):
    """Last-block feature maps ``(B, K, h, w)`` and the linear head (weight (n_labels, K), bias).

    Parameters
    ----------
    model : torch.nn.Module
        A ResNet or DenseNet-121 built by :func:`~phow_baseline.cnn.models.build_model`.
    name : str
        Its backbone (``"resnet50"``, ``"resnet101"``, ``"densenet121"``).
    x : torch.Tensor, shape (B, 3, crop, crop)
        A normalized batch (:class:`~phow_baseline.cnn.data.BatchTransform`).

    Returns
    -------
    features : torch.Tensor, shape (B, K, h, w)
        The last block's feature maps ``A_k`` (after DenseNet's final ReLU); ``h = w = crop / 32`` (7 for 224).
    head : torch.nn.Linear
        The classification head: ``weight`` ``(n_labels, K)``, ``bias`` ``(n_labels,)``.

    Raises
    ------
    ValueError
        The backbone's head is not GAP + linear (VGG11-BN): use :func:`grad_cam`.
    """
    if name.startswith("resnet"):
        m = model
        f = m.layer4(m.layer3(m.layer2(m.layer1(m.maxpool(m.relu(m.bn1(m.conv1(x))))))))
        return f, model.fc
    if name == "densenet121":
        f = F.relu(model.features(x))
        return f, model.classifier
    raise ValueError(f"CAM needs a GAP + linear head; {name} has none (use Grad-CAM)")


def cam(model, name: str, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """CAMs ``(B, 14, h, w)`` and logits ``(B, 14)`` of a normalized batch ``x``.

    ``CAM_c = sum_k w_ck A_k``; the logit is its spatial mean plus ``b_c``.

    Parameters
    ----------
    model : torch.nn.Module
        A ResNet or DenseNet-121 (GAP + linear head).
    name : str
        Its backbone name.
    x : torch.Tensor, shape (B, 3, crop, crop)
        A normalized batch.

    Returns
    -------
    maps : torch.Tensor, shape (B, n_labels, h, w)
        The class activation maps on the last block's grid (logit units).
    logits : torch.Tensor, shape (B, n_labels)
        The network's logits, recomputed from the maps.
    """
    f, head = features_and_head(model, name, x)
    maps = torch.einsum("ck,bkhw->bchw", head.weight, f)
    logits = maps.mean(dim=(2, 3)) + head.bias
    return maps, logits


def grad_cam(model, name: str, x: torch.Tensor, target_layer=None) -> torch.Tensor:
    """Grad-CAM ``(B, 14, h, w)`` of every class, from the last convolutional block.

    ``ReLU(sum_k alpha_ck A_k)`` with ``alpha_ck`` the spatial mean of ``d logit_c / d A_k``
    (one backward pass per class).

    Parameters
    ----------
    model : torch.nn.Module
        Any backbone of :data:`~phow_baseline.cnn.models.BACKBONES`.
    name : str
        Its backbone name (picks the layer when ``target_layer`` is None).
    x : torch.Tensor, shape (B, 3, crop, crop)
        A normalized batch.
    target_layer : torch.nn.Module, optional
        The layer whose output is ``A``; default the last convolutional block (ResNet's ``layer4``,
        DenseNet's and VGG's ``features``).

    Returns
    -------
    torch.Tensor, shape (B, n_labels, h, w)
        Non-negative maps on that layer's grid, detached.
    """
    layer = target_layer or _last_conv_block(model, name)
    store = {}
    h = layer.register_forward_hook(lambda mod, inp, out: store.__setitem__("a", out))
    try:
        with torch.enable_grad():
            x = x.detach().requires_grad_(False)
            logits = model(x)
            a = store["a"]
            maps = []
            for c in range(logits.shape[1]):
                (g,) = torch.autograd.grad(logits[:, c].sum(), a, retain_graph=c < logits.shape[1] - 1)
                w = g.mean(dim=(2, 3), keepdim=True)
                maps.append(F.relu((w * a).sum(1)))
            return torch.stack(maps, 1).detach()
    finally:
        h.remove()


def _last_conv_block(model, name):
    if name.startswith("resnet"):
        return model.layer4
    if name == "densenet121":
        return model.features
    if name == "vgg11_bn":
        return model.features
    raise ValueError(name)


def backbone_of(model) -> str:
    """The backbone name of a torchvision model built by :func:`~phow_baseline.cnn.models.build_model`.

    Parameters
    ----------
    model : torch.nn.Module
        A torchvision ResNet (50: 6 blocks in ``layer3``; else 101), DenseNet or VGG.

    Returns
    -------
    str
        ``"resnet50"``, ``"resnet101"``, ``"densenet121"`` or ``"vgg11_bn"``.

    Raises
    ------
    ValueError
        Any other model.
    """
    import torchvision

    if isinstance(model, torchvision.models.ResNet):
        return "resnet50" if len(model.layer3) == 6 else "resnet101"
    if isinstance(model, torchvision.models.DenseNet):
        return "densenet121"
    if isinstance(model, torchvision.models.VGG):
        return "vgg11_bn"
    raise ValueError(f"no CAM rule for a {type(model).__name__}")


def cam_heatmaps(
    model, image, name: str | None = None, method: str = "cam", resize: int = 256, crop: int = 224, device=None
) -> np.ndarray:
    """Per-class maps ``(14, S, S)`` (float32) of one uint8 ``(S, S)`` image, on the image's own pixel grid.

    The image goes through the evaluation transform (resize ``resize``,
    centre crop ``crop``; 256/224 as in the Uniandes study); the maps of the
    crop (CAM, or Grad-CAM with ``method="gradcam"``; VGG11-BN always uses
    Grad-CAM) are up-sampled bilinearly to the crop's extent in the image
    and padded to ``S x S`` with their edge values.  Usable as a
    ``heatmap_fn`` for :mod:`phow_baseline.evaluation.localization`.

    Parameters
    ----------
    model : torch.nn.Module
        A backbone built by :func:`~phow_baseline.cnn.models.build_model` (put in eval mode here).
    image : ndarray of uint8, shape (S, S)
        One cache image.
    name : str, optional
        Its backbone name; default :func:`backbone_of` ``(model)``.
    method : {"cam", "gradcam"}, default="cam"
        CAM or Grad-CAM.
    resize : int, default=256
        Side the image is resized to before the crop, in pixels.
    crop : int, default=224
        Side of the centre crop the network sees, in pixels of the resized image.
    device : torch.device, optional
        Where to run; default the model's.

    Returns
    -------
    ndarray of float32, shape (n_labels, S, S)
        One map per label on the image's pixel grid.

    Raises
    ------
    ValueError
        An unknown ``method``, or an image that is not a square 2-D uint8 array.
    """
    from .data import BatchTransform

    if method not in ("cam", "gradcam"):
        raise ValueError(f"method must be 'cam' or 'gradcam', got {method!r}")
    img = np.asarray(image)
    if img.ndim != 2 or img.dtype != np.uint8:
        raise ValueError(f"image must be a 2-D uint8 array, got {img.dtype} {img.shape}")
    if img.shape[0] != img.shape[1]:
        raise ValueError(f"image must be square (a cache image), got {img.shape}")
    name = name or backbone_of(model)
    dev = device or next(model.parameters()).device
    model.eval()
    x = BatchTransform(False, resize, crop)(torch.from_numpy(np.ascontiguousarray(img))[None, None].to(dev))
    if method == "gradcam" or name == "vgg11_bn":
        maps = grad_cam(model, name, x)
    else:
        with torch.no_grad():
            maps, _ = cam(model, name, x)
    S = img.shape[0]
    side = max(1, min(S, int(round(crop * S / resize))))
    up = F.interpolate(maps.float(), size=(side, side), mode="bilinear", align_corners=False)
    lo = (S - side) // 2
    out = F.pad(up, (lo, S - side - lo, lo, S - side - lo), mode="replicate") if side < S else up
    return out[0].cpu().numpy().astype(np.float32)
