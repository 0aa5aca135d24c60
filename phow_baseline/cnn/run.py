"""The CNN arm on a ChestX-ray14 folder: the same data layer, splits, cache and run directory as PHOW."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .data import CacheDataset, make_loader
from .train import CnnConfig, load_cnn_model, predict_batches, train_cnn


def _cache(ds, split, work, cfg: CnnConfig, progress):
    from ..config import BaselineConfig
    from ..workflow.steps import build_image_cache

    bc = BaselineConfig(
        size=cfg.cache_size, equalization=cfg.equalization, val_fraction=cfg.val_fraction, seed=cfg.seed
    )
    names = ds.split_names(split)
    if not names:
        raise ValueError(f"{ds.root}: no image of split {split!r} is present")
    cache = build_image_cache(ds, names, work, bc, progress, tag=f"cnn-{split}")
    rows = [i for i in range(len(cache)) if cache.ok[i]]
    return cache, rows, ds.labels([cache.names[r] for r in rows])


def open_dataset(data_dir, cfg: CnnConfig):
    from ..data.chestxray14 import ChestXray14

    return ChestXray14(data_dir, val_fraction=cfg.val_fraction, seed=cfg.seed)


def train_on_dataset(data_dir, out_dir, cfg: CnnConfig, work=None, resume=False, progress=True) -> dict:
    """Train on the patient-wise ``train`` carve of train_val, select on ``val``."""
    ds = open_dataset(data_dir, cfg)
    work = Path(work) if work else Path(out_dir) / "work"
    tc, tr, ty = _cache(ds, "train", work, cfg, progress)
    vc, vr, vy = _cache(ds, "val", work, cfg, progress)
    return train_cnn(cfg, CacheDataset(tc, tr, ty), CacheDataset(vc, vr, vy), out_dir, resume=resume, progress=progress)


def evaluate_on_dataset(
    model_dir,
    data_dir,
    run_dir,
    split="test",
    work=None,
    name=None,
    n_bootstrap=1000,
    progress=True,
    device=None,
    ten_crop=None,
    temperature_scaling=False,
) -> dict:
    """Scores of ``split`` through :func:`phow_baseline.evaluation.write_run_dir`; ``ten_crop`` overrides the run's.

    The sigmoid outputs are the probabilities (their Brier score, ECE and
    reliability go into ``metrics.json``).  With ``temperature_scaling``
    the patient-wise validation carve is scored too: one temperature is
    fitted on its logits (:class:`~phow_baseline.classification.calibration.TemperatureScaler`;
    with ten-crop, the logit of the averaged probability) and applied to
    ``split``, and per-class operating points (Youden's J) are chosen on the
    scaled validation probabilities and reported on ``split``.
    """
    import dataclasses

    from ..evaluation import write_run_dir

    m = load_cnn_model(model_dir, device)
    cfg = m.cfg if ten_crop is None else dataclasses.replace(m.cfg, ten_crop=bool(ten_crop))
    ds = open_dataset(data_dir, cfg)
    work = Path(work) if work else Path(model_dir) / "work"
    cache, rows, y = _cache(ds, split, work, cfg, progress)
    loader = make_loader(CacheDataset(cache, rows, y), cfg.batch_size, False, cfg.workers)
    dev = m.device
    p, _ = predict_batches(m.model, loader, dev, cfg, amp=cfg.amp and dev.type == "cuda")
    names = [cache.names[r] for r in rows]
    cal = {"probabilities": p}
    extra = {"config": cfg.to_dict()}
    if temperature_scaling:
        from ..classification import OperatingPoints, TemperatureScaler

        logit = lambda q: np.log(np.clip(q, 1e-7, 1 - 1e-7)) - np.log1p(-np.clip(q, 1e-7, 1 - 1e-7))
        vc, vr, vy = _cache(ds, "val", work, cfg, progress)
        pv, _ = predict_batches(
            m.model,
            make_loader(CacheDataset(vc, vr, vy), cfg.batch_size, False, cfg.workers),
            dev,
            cfg,
            amp=cfg.amp and dev.type == "cuda",
        )
        ts = TemperatureScaler().fit(logit(pv), vy)
        ops = OperatingPoints().fit(ts.predict_proba(logit(pv)), vy)
        cal = {
            "probabilities": ts.predict_proba(logit(p)),
            "thresholds": ops.thresholds_,
            "operating_rule": ops.describe(),
        }
        extra["temperature_scaling"] = {
            "temperature": ts.temperature_,
            "fitted_on": "val",
            "n_images": len(vy),
            "nll_before": ts.nll_before_,
            "nll_after": ts.nll_after_,
        }
    return write_run_dir(
        run_dir,
        model_name=name
        or f"{cfg.backbone} ({'ImageNet' if cfg.weights == 'imagenet' else 'scratch' if cfg.weights is None else 'weights file'})",
        kind="cnn",
        split=split,
        names=names,
        y_true=y,
        scores=p,
        n_bootstrap=n_bootstrap,
        seed=cfg.seed,
        extra=extra,
        **cal,
    )
