"""Feeding the CNN from the preprocessed uint8 image cache, and the Uniandes study's transforms.

The loader yields uint8 ``(B, 1, S, S)`` batches straight from the
memory-mapped :class:`~phow_baseline.data.ImageCache` (no PNG decoding
per step); the transforms run on whole batches on the training device:

* train: resize to 256, random horizontal flip, random 224 crop (or
  ``RandomResizedCrop`` to 224 as an option), ImageNet normalization of the
  grey image replicated to 3 channels;
* evaluation: resize 256, centre crop 224 (or the ten crops: four corners,
  centre, and their mirrors, whose sigmoid outputs are averaged).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

#: ImageNet channel statistics (torchvision's pretrained models).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: The Uniandes study's sizes: resize 256, crop 224.
RESIZE = 256
CROP = 224


class CacheDataset(Dataset):
    """Rows of an image cache with their labels: ``(uint8 (1, S, S), float32 (n_labels,))``.

    Item ``i`` is cache row ``rows[i]`` as a ``(1, S, S)`` uint8 tensor and ``labels[i]`` as float32.

    Parameters
    ----------
    cache : ImageCache
        The image cache (``cache[row]`` is a ``(S, S)`` uint8 image, ``S`` its size in pixels).
    rows : sequence of int, shape (n_images,)
        The cache rows to serve.
    labels : array-like, shape (n_images, n_labels)
        Their 0/1 targets, in the order of ``rows``.

    Attributes
    ----------
    rows : ndarray of int64, shape (n_images,)
    labels : ndarray of float32, shape (n_images, n_labels)

    Raises
    ------
    ValueError
        ``rows`` and ``labels`` differ in length.
    """

    def __init__(self, cache, rows, labels):
        self.cache = cache
        self.rows = np.asarray(rows, np.int64)
        self.labels = np.asarray(labels, np.float32)
        if len(self.rows) != len(self.labels):
            raise ValueError("rows and labels differ in length")

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        img = np.array(self.cache[int(self.rows[i])], dtype=np.uint8)
        return torch.from_numpy(img)[None], torch.from_numpy(self.labels[i])


def make_loader(dataset, batch_size, shuffle, workers=0, seed=0, pin_memory=False, drop_last=False):
    """A ``DataLoader`` of ``dataset`` whose shuffling draws from a generator seeded with ``seed``.

    Parameters
    ----------
    dataset : torch.utils.data.Dataset
        Usually a :class:`CacheDataset`.
    batch_size : int
        Images per batch.
    shuffle : bool
        Draw a new order every epoch (from the loader's ``generator``).
    workers : int, default=0
        Loader worker processes (0: load in this process); kept alive across epochs.
    seed : int, default=0
        Seed of the shuffling generator.
    pin_memory : bool, default=False
        Page-locked batches (faster copies to a CUDA device).
    drop_last : bool, default=False
        Drop a last, smaller batch.

    Returns
    -------
    torch.utils.data.DataLoader
        Batches ``(uint8 (B, 1, S, S), float32 (B, n_labels))`` for a :class:`CacheDataset`.
    """
    g = torch.Generator()
    g.manual_seed(seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=workers,
        generator=g,
        pin_memory=pin_memory,
        drop_last=drop_last,
        persistent_workers=workers > 0,
    )


def _normalize(x: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(IMAGENET_MEAN, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x.expand(-1, 3, -1, -1) - mean) / std


def _resize(x: torch.Tensor, size: int) -> torch.Tensor:
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)


class BatchTransform:
    """uint8 ``(B, 1, S, S)`` -> normalized float ``(B, 3, crop, crop)`` on the batch's device.

    Parameters
    ----------
    train : bool
        Training transforms (random crop and flip) instead of the evaluation's centre crop.
    resize, crop : int
        Sides in pixels: the batch is resized to ``resize`` square, then cropped to ``crop`` square;
        256 and 224 by default (the Uniandes study; ImageNet practice).
    random_resized : bool
        Train with ``RandomResizedCrop`` (scale 0.08-1, ratio 3/4-4/3)
        instead of resize + random crop.
    generator : torch.Generator, optional
        Source of the random flips and crops (reproducible resumes).
    """

    def __init__(self, train: bool, resize=RESIZE, crop=CROP, random_resized=False, generator=None):
        self.train = train
        self.resize = resize
        self.crop = crop
        self.random_resized = random_resized
        self.generator = generator

    def _rand(self, *shape):
        return torch.rand(*shape, generator=self.generator)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """The transformed batch: uint8 ``(B, 1, S, S)`` -> float ``(B, 3, crop, crop)``, normalised."""
        x = x.float().div_(255.0)
        B = x.shape[0]
        c = self.crop
        if self.train and self.random_resized:
            out = []
            S = x.shape[-1]
            for i in range(B):
                for _ in range(10):
                    area = S * S * (0.08 + 0.92 * float(self._rand(1)))
                    logr = np.log(3 / 4) + (np.log(4 / 3) - np.log(3 / 4)) * float(self._rand(1))
                    w = int(round(np.sqrt(area * np.exp(logr))))
                    h = int(round(np.sqrt(area / np.exp(logr))))
                    if 0 < w <= S and 0 < h <= S:
                        break
                else:
                    w = h = S
                top = int(float(self._rand(1)) * (S - h + 1))
                left = int(float(self._rand(1)) * (S - w + 1))
                out.append(
                    F.interpolate(
                        x[i : i + 1, :, top : top + h, left : left + w],
                        size=(c, c),
                        mode="bilinear",
                        align_corners=False,
                        antialias=True,
                    )
                )
            x = torch.cat(out)
        else:
            x = _resize(x, self.resize)
            R = x.shape[-1]
            if self.train:  # one gather for the whole batch: a random c x c window per image
                tops = (self._rand(B) * (R - c + 1)).long().to(x.device)
                lefts = (self._rand(B) * (R - c + 1)).long().to(x.device)
                ar = torch.arange(c, device=x.device)
                rows = (tops[:, None] + ar)[:, :, None]
                cols = (lefts[:, None] + ar)[:, None, :]
                x = x[torch.arange(B, device=x.device)[:, None, None], 0, rows, cols][:, None]
            else:
                o = (R - c) // 2
                x = x[:, :, o : o + c, o : o + c]
        if self.train:
            flip = (self._rand(B) < 0.5).to(x.device)
            x = torch.where(flip.view(B, 1, 1, 1), x.flip(-1), x)
        return _normalize(x)


def ten_crops(x: torch.Tensor, resize=RESIZE, crop=CROP) -> torch.Tensor:
    """The 10 evaluation crops of uint8 ``(B, 1, S, S)``: ``(10, B, 3, crop, crop)``, normalized.

    The four corner crops and the centre crop of the resized batch, then their horizontal mirrors.

    Parameters
    ----------
    x : torch.Tensor of uint8, shape (B, 1, S, S)
        A batch of cache images.
    resize : int, default=256
        Side the batch is resized to, in pixels.
    crop : int, default=224
        Side of each crop, in pixels of the resized images.

    Returns
    -------
    torch.Tensor of float32, shape (10, B, 3, crop, crop)
        The crops with ImageNet normalization, the grey channel replicated to 3.
    """
    x = _resize(x.float().div_(255.0), resize)
    R, c = x.shape[-1], crop
    o = (R - c) // 2
    boxes = [(0, 0), (0, R - c), (R - c, 0), (R - c, R - c), (o, o)]
    crops = [x[:, :, t : t + c, l : l + c] for t, l in boxes]
    crops += [cr.flip(-1) for cr in crops]
    return torch.stack([_normalize(cr) for cr in crops])
