"""Training, checkpoints that resume exactly, evaluation and prediction of the CNN comparison.

A run directory holds ``config.json``, ``last.pt`` (the checkpoint written
atomically after every epoch: model, optimiser, scheduler, epoch, history,
best score and every RNG state; loaded with ``weights_only=True``, so
loading runs no code), and the model directory files of the best epoch by
validation mean AUROC: ``model.json`` + ``weights.npz`` (plain arrays,
``allow_pickle=False``).  Evaluation goes through
:func:`phow_baseline.evaluation.write_run_dir`, the same code as the PHOW
baseline's.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from ..data.chestxray14 import LABELS
from ..io import atomic_write_json
from ..model.protocol import DecisionsUnavailableError, Model
from .data import BatchTransform, CacheDataset, make_loader, ten_crops
from .models import BACKBONES, build_model, state_dict_to_arrays

logger = logging.getLogger(__name__)

LOSSES = ("bce", "bce_weighted", "soft_margin")


@dataclass
class CnnConfig:
    """Settings of a CNN run (defaults: the Uniandes study's transforms, Adam 1e-4).

    The dataset settings are those of :class:`phow_baseline.config.BaselineConfig`: ``dataset`` (a
    registered kind, or ``"auto"``: detected), ``frontal_only``, ``uncertain`` and ``not_mentioned``
    (the training label policy; U-Ignore is refused while the loss cannot mask labels),
    ``val_fraction`` and ``test_fraction`` (seeded splits of datasets without an official one).

    Parameters
    ----------
    backbone : str, default="resnet50"
        One of :data:`~phow_baseline.cnn.models.BACKBONES`.
    weights : str or None, default=None
        None (from scratch), ``"imagenet"`` (torchvision's weights) or a weights file path.
    loss : {"bce", "bce_weighted", "soft_margin"}, default="bce"
        Binary cross-entropy on the logits, the same with a per-class ``pos_weight`` (negatives / positives),
        or the multi-label soft margin loss (:func:`make_loss`).
    lr : float, default=1e-4
        Adam's initial learning rate.
    batch_size : int, default=32
        Images per batch.
    epochs : int, default=10
        Maximum number of epochs.
    patience : int, default=3
        Early stopping: epochs without a gain in validation mean AUROC.
    plateau_patience : int, default=1
        ReduceLROnPlateau on the validation loss: epochs without a gain before the rate is multiplied by 0.1.
    resize : int, default=256
        Side the cache images are resized to, in pixels (the Uniandes study).
    crop : int, default=224
        Side of the crop the network sees, in pixels of the resized image (the Uniandes study).
    random_resized : bool, default=False
        Train with ``RandomResizedCrop`` (scale 0.08-1) instead of resize + random crop.
    ten_crop : bool, default=False
        Evaluate on the ten crops (their sigmoid outputs averaged) instead of the centre crop.
    cache_size : int, default=256
        Side of the uint8 cache images, in pixels.
    equalization : {"none", "global", "clahe"}, default="none"
        Histogram equalization of the cache images.
    workers : int, default=0
        Data loader worker processes.
    seed : int, default=0
        Seed of the weights' initialization, the shuffling, the crops and the seeded splits.
    device : str or None, default=None
        Where to train (``"cuda"``, ``"cpu"``...); None: CUDA when available, else the CPU.
    amp : bool, default=True
        bfloat16 autocast on CUDA (ignored on the CPU).
    max_steps_per_epoch : int or None, default=None
        Cap on the training batches per epoch (quick runs); None: the whole training set.
    val_fraction : float, default=0.1
        Fraction of the training patients in the validation carve.
    dataset : str, default="chestxray14"
        A registered dataset kind, or ``"auto"`` (detected).
    frontal_only : bool, default=True
        Keep only frontal views.
    uncertain : str, default="zeros"
        What an uncertain label becomes in training (U-Zeros; see :data:`phow_baseline.config.UNCERTAIN_POLICIES`).
    not_mentioned : str, default="negative"
        What a blank label becomes in training (see :data:`phow_baseline.config.NOT_MENTIONED_POLICIES`).
    test_fraction : float, default=0.2
        Fraction of the patients in the seeded test split of a dataset without an official one.

    Raises
    ------
    ValueError
        An unknown backbone, loss or label policy.
    """

    backbone: str = "resnet50"
    weights: str | None = None  # None (scratch), "imagenet", or a file path
    loss: str = "bce"  # "bce", "bce_weighted" (per-class pos_weight), "soft_margin"
    lr: float = 1e-4
    batch_size: int = 32
    epochs: int = 10
    patience: int = 3  # early stopping on validation mean AUROC
    plateau_patience: int = 1  # ReduceLROnPlateau on validation loss (factor 0.1)
    resize: int = 256
    crop: int = 224
    random_resized: bool = False
    ten_crop: bool = False
    cache_size: int = 256
    equalization: str = "none"
    workers: int = 0
    seed: int = 0
    device: str | None = None  # "cuda" when available, else "cpu"
    amp: bool = True  # bf16 autocast on CUDA
    max_steps_per_epoch: int | None = None
    val_fraction: float = 0.1
    dataset: str = "chestxray14"
    frontal_only: bool = True
    uncertain: str = "zeros"
    not_mentioned: str = "negative"
    test_fraction: float = 0.2

    def __post_init__(self):
        from ..config import NOT_MENTIONED_POLICIES, UNCERTAIN_POLICIES

        if self.backbone not in BACKBONES:
            raise ValueError(f"backbone must be one of {BACKBONES}, got {self.backbone!r}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        if self.uncertain not in UNCERTAIN_POLICIES:
            raise ValueError(f"uncertain must be one of {UNCERTAIN_POLICIES}, got {self.uncertain!r}")
        if self.not_mentioned not in NOT_MENTIONED_POLICIES:
            raise ValueError(f"not_mentioned must be one of {NOT_MENTIONED_POLICIES}, got {self.not_mentioned!r}")

    def to_dict(self):
        """The settings as a JSON-ready dict.

        Returns
        -------
        dict
            Field name -> value, every field of the dataclass.
        """
        return dataclasses.asdict(self)


def pick_device(name=None) -> torch.device:
    """``name`` as a device; ``None`` (the default everywhere: training, evaluation, prediction) is CUDA when
    available, else the CPU.

    Parameters
    ----------
    name : str or torch.device, optional
        ``"cuda"``, ``"cuda:1"``, ``"cpu"``...

    Returns
    -------
    torch.device
    """
    if name:
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def seed_everything(seed: int):
    """Seed Python's, NumPy's and torch's global generators.

    Parameters
    ----------
    seed : int
        The seed of all three.
    """
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_loss(cfg: CnnConfig, y_train: np.ndarray, device):
    """The training loss of ``cfg.loss``; ``bce_weighted`` weighs each class's positives by its
    negatives / positives in ``y_train`` ``(n, n_labels)``.

    Parameters
    ----------
    cfg : CnnConfig
        Its ``loss``.
    y_train : ndarray, shape (n_images, n_labels)
        The 0/1 training targets (counts clipped to at least 1 per class).
    device : torch.device
        Where the ``pos_weight`` tensor lives.

    Returns
    -------
    torch.nn.Module
        ``BCEWithLogitsLoss`` (with ``pos_weight`` for ``bce_weighted``) or ``MultiLabelSoftMarginLoss``,
        on logits ``(B, n_labels)``.
    """
    if cfg.loss == "soft_margin":
        return nn.MultiLabelSoftMarginLoss()
    if cfg.loss == "bce_weighted":
        pos = y_train.sum(0).clip(1)
        neg = (len(y_train) - y_train.sum(0)).clip(1)
        return nn.BCEWithLogitsLoss(pos_weight=torch.tensor(neg / pos, dtype=torch.float32, device=device))
    return nn.BCEWithLogitsLoss()


def _rng_state(gen: torch.Generator) -> dict:
    st = {
        "torch": torch.get_rng_state(),
        "numpy": torch.from_numpy(np.random.get_state()[1].astype(np.int64)),
        "numpy_pos": int(np.random.get_state()[2]),
        "python": json.dumps(random.getstate()),
        "transform": gen.get_state(),
    }
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def _set_rng_state(st: dict, gen: torch.Generator):
    torch.set_rng_state(st["torch"])
    np.random.set_state(("MT19937", st["numpy"].numpy().astype(np.uint32), int(st["numpy_pos"]), 0, 0.0))
    s = json.loads(st["python"])
    random.setstate((s[0], tuple(s[1]), s[2]))
    gen.set_state(st["transform"])
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


def _atomic_torch_save(obj, path: Path):
    from ..io import atomic_path

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


@torch.no_grad()
def predict_batches(model, loader, device, cfg: CnnConfig, amp=False):
    """Sigmoid outputs and labels of a loader (eval transforms; ten-crop when configured).

    Parameters
    ----------
    model : torch.nn.Module
        The network (put in eval mode here).
    loader : torch.utils.data.DataLoader
        Batches ``(uint8 (B, 1, S, S), (B, n_labels))``, e.g. of a :class:`CacheDataset`.
    device : torch.device
        Where the model is.
    cfg : CnnConfig
        Its ``resize``, ``crop`` and ``ten_crop``.
    amp : bool, default=False
        bfloat16 autocast.

    Returns
    -------
    probabilities : ndarray of float32, shape (n_images, n_labels)
        Sigmoid outputs in [0, 1] (averaged over the ten crops with ``cfg.ten_crop``).
    labels : ndarray, shape (n_images, n_labels)
        The loader's labels, in the same order.
    """
    model.eval()
    tf = BatchTransform(False, cfg.resize, cfg.crop)
    outs, ys = [], []
    for x, y in loader:
        x = x.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            if cfg.ten_crop:
                crops = ten_crops(x, cfg.resize, cfg.crop)
                p = torch.stack(
                    [torch.sigmoid(model(c.contiguous(memory_format=torch.channels_last)).float()) for c in crops]
                ).mean(0)
            else:
                p = torch.sigmoid(model(tf(x).contiguous(memory_format=torch.channels_last)).float())
        outs.append(p.cpu())
        ys.append(y)
    return torch.cat(outs).numpy(), torch.cat(ys).numpy()


def train_cnn(
    cfg: CnnConfig,
    train_set: CacheDataset,
    val_set: CacheDataset,
    out_dir,
    resume: bool = False,
    progress: bool = True,
    log=None,
    labels=None,
    dataset: dict | None = None,
) -> dict:
    """Train with Adam, ReduceLROnPlateau on validation loss, early stopping on validation mean AUROC.

    Writes ``out_dir/last.pt`` after every epoch (atomically) and the best
    model by validation AUROC to ``out_dir`` (``model.json`` + ``weights.npz``).
    With ``resume`` it continues from ``last.pt`` exactly where it stopped.
    Returns the history.  The network has one output per column of
    ``train_set.labels``; ``labels`` names them (default ChestX-ray14's 14)
    and ``dataset`` records the training dataset in ``model.json``
    (:func:`phow_baseline.workflow.steps.dataset_record`).

    Parameters
    ----------
    cfg : CnnConfig
        The run's settings.
    train_set, val_set : CacheDataset
        Training and validation images with their 0/1 targets ``(n_images, n_labels)``.
    out_dir : str or Path
        The run directory (created).
    resume : bool, default=False
        Continue from ``out_dir/last.pt``.
    progress : bool, default=True
        Show a progress bar per epoch.
    log : callable, optional
        Called with one line per epoch (and on early stop or resume); default this module's logger's ``info``.
    labels : sequence of str, optional
        The names of the outputs (default ChestX-ray14's 14).
    dataset : dict, optional
        The training dataset's record for ``model.json``.

    Returns
    -------
    dict
        ``history``: per epoch ``epoch``, ``train_loss``, ``val_loss`` (mean BCE), ``val_mean_auroc``,
        ``lr`` and ``seconds``; ``best_val_mean_auroc``: the best validation mean AUROC (-1.0 if no epoch ran).

    Raises
    ------
    FileNotFoundError
        ``resume`` without ``out_dir/last.pt``.
    ValueError
        ``resume`` with another configuration than the checkpoint's, or not one label name per output.
    """
    from ..evaluation import evaluate_scores
    from ..progress import progress_bar

    log = log or logger.info
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = pick_device(cfg.device)
    amp = cfg.amp and device.type == "cuda"
    seed_everything(cfg.seed)
    n_out = int(train_set.labels.shape[1])
    labels = list(LABELS) if labels is None else list(labels)
    if len(labels) != n_out:
        raise ValueError(f"{len(labels)} label names for {n_out} label columns")
    model = build_model(cfg.backbone, cfg.weights, n_out=n_out).to(device).to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=0.1, patience=cfg.plateau_patience)
    crit = make_loss(cfg, train_set.labels, device)
    gen = torch.Generator()
    gen.manual_seed(cfg.seed)
    tf = BatchTransform(True, cfg.resize, cfg.crop, cfg.random_resized, generator=gen)
    history, start, best, since_best = [], 0, -1.0, 0
    ckpt = out / "last.pt"
    if resume:
        if not ckpt.exists():
            raise FileNotFoundError(f"{ckpt}: no checkpoint to resume from")
        st = torch.load(ckpt, map_location=device, weights_only=True)
        if st["config"] != json.dumps(cfg.to_dict(), sort_keys=True):
            raise ValueError(f"{ckpt}: was written with another configuration; use the same options to resume")
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["optimizer"])
        sched.load_state_dict(st["scheduler"])
        start, best, since_best = int(st["epoch"]), float(st["best"]), int(st["since_best"])
        history = json.loads(st["history"])
        _set_rng_state(st["rng"], gen)
        log(f"resumed from {ckpt} after epoch {start}")
    atomic_write_json(out / "config.json", cfg.to_dict())
    loader = make_loader(train_set, cfg.batch_size, True, cfg.workers, seed=cfg.seed, pin_memory=device.type == "cuda")
    val_loader = make_loader(val_set, cfg.batch_size, False, cfg.workers)
    for epoch in range(start, cfg.epochs):
        if since_best >= cfg.patience:
            log(f"early stop: no validation AUROC gain in {cfg.patience} epochs")
            break
        # the shuffle order comes from the loader's generator, reseeded per epoch: resumes are exact,
        # and the workers stay alive across epochs
        loader.generator.manual_seed(cfg.seed * 1000 + epoch)
        model.train()
        t0, total, n = time.perf_counter(), torch.zeros((), device=device), 0
        bar = progress_bar(loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not progress, leave=False)
        for step, (x, y) in enumerate(bar):
            if cfg.max_steps_per_epoch is not None and step >= cfg.max_steps_per_epoch:
                break
            x = x.to(device, non_blocking=True)
            y = y.to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                logits = model(tf(x).contiguous(memory_format=torch.channels_last))
            loss = crit(logits.float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.detach() * len(x)  # no .item() per step: the GPU never waits for the host
            n += len(x)
        p, yv = predict_batches(model, val_loader, device, cfg, amp)
        pv = np.clip(p, 1e-7, 1 - 1e-7)
        val_loss = float(-(yv * np.log(pv) + (1 - yv) * np.log(1 - pv)).mean())
        ev = evaluate_scores(yv, p, labels, n_bootstrap=0)
        auc = ev["mean_auroc"] if ev["mean_auroc"] is not None else 0.0
        sched.step(val_loss)
        rec = {
            "epoch": epoch + 1,
            "train_loss": float(total) / max(n, 1),
            "val_loss": val_loss,
            "val_mean_auroc": auc,
            "lr": opt.param_groups[0]["lr"],
            "seconds": time.perf_counter() - t0,
        }
        history.append(rec)
        improved = auc > best
        if improved:
            best, since_best = auc, 0
            save_model_dir(
                out,
                model,
                cfg,
                extra={"best_epoch": epoch + 1, "val_mean_auroc": auc},
                labels=labels,
                dataset=dataset,
            )
        else:
            since_best += 1
        _atomic_torch_save(
            {
                "model": model.state_dict(),
                "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(),
                "epoch": epoch + 1,
                "best": best,
                "since_best": since_best,
                "history": json.dumps(history),
                "rng": _rng_state(gen),
                "config": json.dumps(cfg.to_dict(), sort_keys=True),
            },
            ckpt,
        )
        log(
            f"epoch {epoch + 1}: train loss {rec['train_loss']:.4f}, val loss {val_loss:.4f}, "
            f"val mean AUROC {auc:.4f}{' (best)' if improved else ''}"
        )
    return {"history": history, "best_val_mean_auroc": best}


def save_model_dir(out, model, cfg: CnnConfig, extra=None, labels=None, dataset: dict | None = None):
    """Write a CNN model directory in ``out``: ``model.json`` (kind ``"cnn"``, ``cfg``, ``extra``, ``labels``
    (default ChestX-ray14's 14), ``dataset``) + ``weights.npz`` (the state dict as plain arrays).

    Parameters
    ----------
    out : str or Path
        The model directory (created).
    model : torch.nn.Module
        The trained network.
    cfg : CnnConfig
        Its settings (recorded as ``params.config``; a weights path as a string).
    extra : dict, optional
        More top-level entries for ``model.json`` (the best epoch, its validation AUROC).
    labels : sequence of str, optional
        The outputs' labels (default ChestX-ray14's 14).
    dataset : dict, optional
        The training dataset's record.
    """
    from ..model.directory import write_model_dir

    params = {"config": {**cfg.to_dict(), "weights": None if cfg.weights is None else str(cfg.weights)}}
    write_model_dir(
        out,
        "cnn",
        params,
        {"weights": state_dict_to_arrays(model)},
        extra={"torch": torch.__version__, "backbone": cfg.backbone, **(extra or {})},
        labels=labels,
        dataset=dataset,
    )


class CnnModel(Model):
    """A trained CNN loaded from its model directory (a :class:`~phow_baseline.model.protocol.Model`).

    ``scores(img)`` are sigmoid outputs; ``heatmaps(img)`` are CAMs (Grad-CAM
    for VGG11-BN) up-sampled to the crop; ``preprocess(path)`` gives the
    cache image (``cache_size`` pixels, the run's equalization).  It has no
    operating points (``has_decisions`` is False) and scores in this
    process, on its device (``scores_in_workers`` is False).

    Parameters
    ----------
    model : torch.nn.Module
        The trained network (one output per label).
    cfg : CnnConfig
    device : str or torch.device, optional
        Where to run it (default: CUDA when available, else the CPU).
    labels : sequence of str, default=ChestX-ray14's 14
        The outputs' labels, in order.
    dataset : dict, optional
        What it was trained on (``model.json``'s ``dataset``); default ChestX-ray14.
    """

    kind = "cnn"
    scores_in_workers = False
    score_kind = "probability"
    has_heatmaps = True
    has_decisions = False

    def __init__(self, model, cfg: CnnConfig, device=None, labels=LABELS, dataset: dict | None = None):
        self.model = model.eval()
        self.cfg = cfg
        # the device the model was trained on says nothing about this machine: None is CUDA when available
        self.device = pick_device(device)
        self.model.to(self.device)
        self.labels = tuple(labels)
        self.dataset = dict(dataset) if dataset is not None else {"kind": "chestxray14", "labels": list(self.labels)}

    @property
    def image_size(self) -> int:
        """Side of the cache images it scores: ``cfg.cache_size`` pixels."""
        return self.cfg.cache_size

    def preprocess(self, image):
        """A raw X-ray (path or array) -> the ``(cache_size, cache_size)`` uint8 cache image.

        Parameters
        ----------
        image : str, Path or ndarray
            An image file, or a decoded image.

        Returns
        -------
        ndarray of uint8, shape (cache_size, cache_size)
            Grey, equalized by ``cfg.equalization``, resized to ``cfg.cache_size`` pixels.
        """
        from ..data.preprocess import preprocess

        return preprocess(image, size=self.cfg.cache_size, equalization=self.cfg.equalization)

    def _input(self, img):
        x = torch.from_numpy(np.ascontiguousarray(img, np.uint8))[None, None].to(self.device)
        return BatchTransform(False, self.cfg.resize, self.cfg.crop)(x)

    @torch.no_grad()
    def raw_scores(self, img) -> np.ndarray:
        """The logits ``(n_labels,)`` float32 of one cache image.

        Parameters
        ----------
        img : ndarray of uint8, shape (S, S)
            One cache image (:meth:`preprocess`); resized and centre-cropped here.

        Returns
        -------
        ndarray of float32, shape (n_labels,)
            The network's logits.
        """
        return self.model(self._input(img)).float().cpu().numpy()[0]

    def scores(self, img) -> np.ndarray:
        """The sigmoid outputs (probabilities) ``(n_labels,)`` float64 of one cache image.

        Parameters
        ----------
        img : ndarray of uint8, shape (S, S)
            One cache image (:meth:`preprocess`).

        Returns
        -------
        ndarray of float64, shape (n_labels,)
            Probabilities in [0, 1].
        """
        return self.calibrate(self.raw_scores(img)[None])[0]

    def calibrate(self, logits) -> np.ndarray:
        """Logits ``(n, n_labels)`` -> probabilities ``(n, n_labels)`` float64 (the sigmoid).

        ``p = 1 / (1 + exp(-z))``.

        Parameters
        ----------
        logits : array-like, shape (n_images, n_labels)
            Rows of :meth:`raw_scores`.

        Returns
        -------
        ndarray of float64, shape (n_images, n_labels)
            Probabilities in [0, 1].
        """
        return 1.0 / (1.0 + np.exp(-np.asarray(logits, np.float64)))

    def decide(self, probabilities) -> np.ndarray:
        """Not available: a CNN run chooses no operating points (:class:`DecisionsUnavailableError`).

        Parameters
        ----------
        probabilities : array-like, shape (n_images, n_labels)
            Ignored.

        Returns
        -------
        ndarray
            Never: it always raises.

        Raises
        ------
        DecisionsUnavailableError
            Always.
        """
        raise DecisionsUnavailableError(
            "a CNN model has no operating points (its training chooses none); threshold its probabilities yourself"
        )

    def heatmaps(self, img, method: str = "cam") -> np.ndarray:
        """Per-class CAMs over the image (``(n_labels, S, S)`` float32; the centre crop's maps padded by edge values).

        Parameters
        ----------
        img : ndarray of uint8, shape (S, S)
            One cache image (:meth:`preprocess`).
        method : {"cam", "gradcam"}, default="cam"
            CAM, or Grad-CAM (always used for VGG11-BN, whose head is not GAP + linear).

        Returns
        -------
        ndarray of float32, shape (n_labels, S, S)
            One map per label on the image's pixel grid (see :func:`~phow_baseline.cnn.cam.cam_heatmaps`).
        """
        from .cam import cam_heatmaps

        return cam_heatmaps(self.model, img, self.cfg.backbone, method, self.cfg.resize, self.cfg.crop, self.device)

    def save(self, directory, extra: dict | None = None) -> Path:
        """Write the model directory (``model.json`` + ``weights.npz``); returns its path.

        Parameters
        ----------
        directory : str or Path
            The model directory (created).
        extra : dict, optional
            More top-level entries for ``model.json``.

        Returns
        -------
        Path
            The model directory.
        """
        save_model_dir(directory, self.model, self.cfg, extra, labels=self.labels, dataset=self.dataset)
        return Path(directory)

    @classmethod
    def load(cls, directory, device=None) -> CnnModel:
        """Load ``model.json`` + ``weights.npz`` (checksums verified, no pickles); see :func:`load_cnn_model`.

        Parameters
        ----------
        directory : str or Path
            A ``"cnn"`` model directory.
        device : str or torch.device, optional
            Where to run it (default: CUDA when available, else the CPU).

        Returns
        -------
        CnnModel
        """
        return load_cnn_model(directory, device)


def load_cnn_model(directory, device=None) -> CnnModel:
    """Load ``model.json`` + ``weights.npz`` (checksums verified, no pickles).

    Parameters
    ----------
    directory : str or Path
        A ``"cnn"`` model directory (:func:`save_model_dir`).
    device : str or torch.device, optional
        Where to run it (default: CUDA when available, else the CPU); the training device is not reused.

    Returns
    -------
    CnnModel
        The network in eval mode on ``device``, with its config, labels and dataset record.

    Raises
    ------
    ModelFileError
        A missing or changed file, or weights that do not fit the backbone.
    """
    from ..model.directory import ModelFileError, dataset_record, read_model_dir

    meta, arrays = read_model_dir(directory)
    c = dict(meta["params"]["config"])
    c["weights"] = None  # the trained weights come from weights.npz
    cfg = CnnConfig(**c)
    labels = meta.get("labels") or list(LABELS)
    model = build_model(cfg.backbone, None, n_out=len(labels))
    sd = {k: torch.from_numpy(np.array(v)) for k, v in arrays["weights"].items()}
    try:
        model.load_state_dict(sd)
    except RuntimeError as exc:
        raise ModelFileError(f"{Path(directory) / 'weights.npz'}: does not fit {cfg.backbone} ({exc})") from exc
    return CnnModel(model, cfg, device, labels=labels, dataset=dataset_record(meta, Path(directory) / "model.json"))
