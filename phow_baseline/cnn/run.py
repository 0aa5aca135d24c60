"""The CNN arm on a dataset folder of any registered kind: the same data layer, splits, cache and run directory
as PHOW (:func:`phow_baseline.workflow.steps.open_dataset`); one output per label of the dataset.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .data import CacheDataset, make_loader
from .train import CnnConfig, load_cnn_model, predict_batches, train_cnn


def _cache(ds, split, work, cfg: CnnConfig, progress, targets=True):
    """The image cache of ``split``, its readable rows and their training targets (or the rows' names)."""
    from ..config import BaselineConfig
    from ..workflow.steps import build_image_cache, training_targets

    bc = BaselineConfig(
        size=cfg.cache_size, equalization=cfg.equalization, val_fraction=cfg.val_fraction, seed=cfg.seed
    )
    names = ds.split_names(split)
    if not names:
        raise ValueError(f"{ds.root}: no image of split {split!r} is present")
    cache = build_image_cache(ds, names, work, bc, progress, tag=f"cnn-{split}")
    rows = [i for i in range(len(cache)) if cache.ok[i]]
    kept = [cache.names[r] for r in rows]
    return cache, rows, (training_targets(ds, kept, cfg) if targets else kept)


def open_dataset(data_dir, cfg: CnnConfig, work=None, kind: str | None = None):
    """The dataset in ``data_dir``: kind ``kind``, else ``cfg.dataset`` (``"auto"``: detected).

    Parameters
    ----------
    data_dir : path
        A dataset folder (or a CSV file for the plain-CSV kind).
    cfg : CnnConfig
        Its dataset settings (``dataset``, ``frontal_only``, ``val_fraction``, ``test_fraction``, ``seed``).
    work : path, optional
        The work folder (the seeded split is kept there).
    kind : str, optional
        Overrides ``cfg.dataset``.

    Returns
    -------
    ChestDataset
    """
    from ..workflow.steps import open_dataset as open_any

    return open_any(data_dir, cfg, work_dir=work, kind=kind)


def train_on_dataset(data_dir, out_dir, cfg: CnnConfig, work=None, resume=False, progress=True) -> dict:
    """Train on the patient-wise ``train`` carve of train_val, select on ``val``; one output per dataset label.

    Parameters
    ----------
    data_dir : str or Path
        A dataset folder of any registered kind (or a CSV file for the plain-CSV kind).
    out_dir : str or Path
        The run directory: ``config.json``, ``last.pt`` and the model directory of the best epoch.
    cfg : CnnConfig
        The run's settings (its dataset settings pick and split the dataset).
    work : str or Path, optional
        The work folder of the image caches and seeded splits; default ``out_dir/work``.
    resume : bool, default=False
        Continue from ``out_dir/last.pt`` exactly where it stopped.
    progress : bool, default=True
        Show progress bars.

    Returns
    -------
    dict
        ``history`` (one record per epoch: losses, validation mean AUROC, learning rate, seconds) and
        ``best_val_mean_auroc`` (see :func:`~phow_baseline.cnn.train.train_cnn`).
    """
    from ..workflow.steps import dataset_record

    work = Path(work) if work else Path(out_dir) / "work"
    ds = open_dataset(data_dir, cfg, work)
    tc, tr, ty = _cache(ds, "train", work, cfg, progress)
    vc, vr, vy = _cache(ds, "val", work, cfg, progress)
    return train_cnn(
        cfg,
        CacheDataset(tc, tr, ty),
        CacheDataset(vc, vr, vy),
        out_dir,
        resume=resume,
        progress=progress,
        labels=ds.labels,
        dataset=dataset_record(ds, cfg),
    )


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
    dataset: str | None = None,
) -> dict:
    """Scores of ``split`` through :func:`phow_baseline.evaluation.write_run_dir`; ``ten_crop`` overrides the run's.

    The sigmoid outputs are the probabilities (their Brier score, ECE and
    reliability go into ``metrics.json``).  With ``temperature_scaling``
    the patient-wise validation carve is scored too: one temperature is
    fitted on its logits (:class:`~phow_baseline.classification.calibration.TemperatureScaler`;
    with ten-crop, the logit of the averaged probability) and applied to
    ``split``, and per-class operating points (Youden's J) are chosen on the
    scaled validation probabilities and reported on ``split``.

    The truth, the subgroups and a dataset other than the model's (the
    labels the two share, recorded under ``external``) are handled as by
    :func:`phow_baseline.workflow.steps.evaluate_model`; ``dataset`` is the
    kind of ``data_dir`` (default: detected).

    Parameters
    ----------
    model_dir : str or Path
        A ``"cnn"`` model directory.
    data_dir : str or Path
        The dataset folder (or CSV file) to score.
    run_dir : str or Path
        The run directory to write (``metrics.json``, ``predictions.csv``, figures).
    split : str, default="test"
        The split to score.
    work : str or Path, optional
        The work folder of the image caches and seeded splits; default ``model_dir/work``.
    name : str, optional
        The model's name in the tables; default ``"<backbone> (ImageNet|scratch|weights file)"``.
    n_bootstrap : int, default=1000
        Bootstrap resamples of the AUROC confidence intervals (0: none).
    progress : bool, default=True
        Show progress bars.
    device : str or torch.device, optional
        Where to run the network; default CUDA when available, else the CPU.
    ten_crop : bool, optional
        Average the sigmoid outputs of the ten crops (True) or use the centre crop (False); default the
        run's ``ten_crop``.
    temperature_scaling : bool, default=False
        Fit one temperature and per-class operating points on the validation carve (the model's own dataset
        only).
    dataset : str, optional
        The kind of ``data_dir`` (default ``"auto"``: detected).

    Returns
    -------
    dict
        The ``metrics.json`` contents (AUROC per label with CIs, calibration, subgroups...).

    Raises
    ------
    ValueError
        No image of ``split`` is present, the model and the dataset share no label, or temperature scaling
        on another dataset than the model's.
    """
    import dataclasses

    from ..data import EVALUATION_POLICY
    from ..evaluation import write_run_dir
    from ..workflow.steps import external_labels

    m = load_cnn_model(model_dir, device)
    cfg = m.cfg if ten_crop is None else dataclasses.replace(m.cfg, ten_crop=bool(ten_crop))
    work = Path(work) if work else Path(model_dir) / "work"
    ds = open_dataset(data_dir, cfg, work, kind=dataset or "auto")
    external = external_labels(m, ds)
    if external is not None and temperature_scaling:
        raise ValueError(
            f"{data_dir}: temperature scaling is fitted on the validation carve of the model's own dataset "
            f"({m.dataset_kind}), not on another dataset ({ds.kind}); evaluate without it"
        )
    cache, rows, names = _cache(ds, split, work, cfg, progress, targets=False)
    y, mask = ds.targets(names, EVALUATION_POLICY)
    loader = make_loader(CacheDataset(cache, rows, y), cfg.batch_size, False, cfg.workers)
    dev = m.device
    p, _ = predict_batches(m.model, loader, dev, cfg, amp=cfg.amp and dev.type == "cuda")
    cal = {"probabilities": p}
    extra = {
        "config": cfg.to_dict(),
        "dataset": {
            "kind": ds.kind,
            "title": ds.title,
            "split_note": ds.split_note,
            "label_policy": EVALUATION_POLICY.to_dict(),
        },
    }
    if temperature_scaling:
        from ..classification import OperatingPoints, TemperatureScaler

        def logit(q):
            return np.log(np.clip(q, 1e-7, 1 - 1e-7)) - np.log1p(-np.clip(q, 1e-7, 1 - 1e-7))

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
    labels = list(m.labels)
    if external is not None:
        a = [q.index_a for q in external["pairs"]]
        b = [q.index_b for q in external["pairs"]]
        p, y, mask, labels = p[:, a], y[:, b], mask[:, b], [q.shared for q in external["pairs"]]
        cal["probabilities"] = cal["probabilities"][:, a]
        if "thresholds" in cal:
            cal["thresholds"] = np.asarray(cal["thresholds"])[a]
        extra["external"] = {
            "dataset": ds.kind,
            "model_dataset": m.dataset_kind,
            "pairs": [[q.a, q.b] for q in external["pairs"]],
            "dropped_model": external["dropped_model"],
            "dropped_data": external["dropped_data"],
            "why": external["why"],
        }
        import logging

        logging.getLogger(__name__).info(
            f"cross-dataset: {len(a)} shared label(s) scored, {len(external['dropped_model'])} of the model's and "
            f"{len(external['dropped_data'])} of the {ds.kind} labels dropped (metrics.json: 'external')"
        )
    init = "ImageNet" if cfg.weights == "imagenet" else "scratch" if cfg.weights is None else "weights file"
    return write_run_dir(
        run_dir,
        model_name=name or f"{cfg.backbone} ({init})",
        kind="cnn",
        split=split,
        names=names,
        y_true=y,
        scores=p,
        labels=labels,
        n_bootstrap=n_bootstrap,
        seed=cfg.seed,
        extra=extra,
        metadata=ds.subgroups(names),
        mask=None if mask.all() else mask,
        **cal,
    )
