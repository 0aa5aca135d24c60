"""``phow-baseline cnn train | evaluate | predict``: the CNN comparison (thin over :mod:`phow_baseline.cnn.run`).

Importing this module does not import torch: the backbones, the losses and
the defaults of :class:`phow_baseline.cnn.train.CnnConfig` are read when a
command's help or run needs them, so that ``cnn --help`` works without the
extra, and a cnn command without it says what to install.  ``cnn predict``
is ``predict`` itself (which loads a model of any kind).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import click

from ._group import Group
from ._options import (
    LibraryChoice,
    data_dir_argument,
    dataset_option,
    equalization_names,
    model_dir_argument,
    n_jobs_option,
    option,
    out_folder_option,
    show_progress,
    split_names,
)
from .evaluate import predict


def _without_the_extra_none(load: Callable) -> Callable:
    """``load`` returning None where torch is missing (the help then shows no default)."""

    def guarded():
        try:
            return load()
        except ImportError:
            return None

    return guarded


def _cnn_default(field: str) -> Callable:
    """A loader of the default of :class:`~phow_baseline.cnn.train.CnnConfig` field ``field`` (None without torch)."""

    def load():
        from ..cnn.train import CnnConfig

        return {f.name: f.default for f in dataclasses.fields(CnnConfig)}[field]

    return _without_the_extra_none(load)


def _evaluate_default(name: str) -> Callable:
    """A loader of the default of keyword ``name`` of :func:`phow_baseline.cnn.run.evaluate_on_dataset`."""

    def load():
        import inspect

        from ..cnn.run import evaluate_on_dataset

        return inspect.signature(evaluate_on_dataset).parameters[name].default

    return _without_the_extra_none(load)


def _backbone_names():
    from ..cnn.models import BACKBONES

    return BACKBONES


def _loss_names():
    from ..cnn.train import LOSSES

    return LOSSES


def _weights(ctx, param, value):
    return None if value is None or value.lower() == "none" else value


@click.group("cnn", cls=Group)
def cnn_group():
    """The CNN comparison (extra 'cnn': torch + torchvision)."""


@cnn_group.command("train")
@data_dir_argument()
@out_folder_option("runs/cnn", "Run folder: the model directory, last.pt (resume) and the image caches.")
@option("--backbone", type=LibraryChoice(_backbone_names, needs_extra=True), library_default=_cnn_default("backbone"))
@option(
    "--weights",
    callback=_weights,
    library_default=_cnn_default("weights"),
    help="'imagenet' (torchvision's, downloaded once), a local weights file, or none (from scratch).",
)
@option("--loss", type=LibraryChoice(_loss_names, needs_extra=True), library_default=_cnn_default("loss"))
@option("--lr", type=float, library_default=_cnn_default("lr"), help="Adam's learning rate.")
@option("--batch-size", type=int, library_default=_cnn_default("batch_size"))
@option("--epochs", type=int, library_default=_cnn_default("epochs"), help="Epochs at most (early stopping).")
@option(
    "--patience",
    type=int,
    library_default=_cnn_default("patience"),
    help="Epochs without a better validation mean AUROC before stopping.",
)
@option("--crop", type=int, library_default=_cnn_default("crop"), help="Side of the network's input, pixels.")
@option("--resize", type=int, library_default=_cnn_default("resize"), help="Side before the crop, pixels.")
@option(
    "--cache-size",
    type=int,
    library_default=_cnn_default("cache_size"),
    help="Side of the cached images the transforms start from, pixels.",
)
@option("--random-resized-crop", "random_resized", is_flag=True, help="Train on random resized crops.")
@option(
    "--equalization",
    type=LibraryChoice(equalization_names),
    library_default=_cnn_default("equalization"),
    help="Equalization of the cached images.",
)
@n_jobs_option(
    _cnn_default("workers"),
    old_spellings=("--workers",),
    help="Data-loading worker processes (0: load in the training process).",
)
@option("--device", library_default=_cnn_default("device"), help="cuda or cpu [cuda when available].")
@option(
    "--max-steps",
    "max_steps_per_epoch",
    type=int,
    library_default=_cnn_default("max_steps_per_epoch"),
    help="Steps per epoch at most (for a quick try).",
)
@option("--seed", type=int, library_default=_cnn_default("seed"))
@option("--resume", is_flag=True, help="Continue from OUT/last.pt.")
@dataset_option()
def train(data_dir, out, resume, n_jobs, dataset, **settings):
    """Train a CNN on the train carve of the dataset's train_val split (model selection on val); one output per
    label of the dataset.
    """
    from ..cnn.run import train_on_dataset
    from ..cnn.train import CnnConfig

    cfg = CnnConfig(workers=n_jobs, dataset=dataset or "auto", **settings)
    history = train_on_dataset(data_dir, out, cfg, resume=resume, progress=show_progress())
    click.echo(f"best validation mean AUROC {history['best_val_mean_auroc']:.4f}; model in {out}")


@cnn_group.command("evaluate")
@model_dir_argument()
@data_dir_argument()
@out_folder_option("runs/cnn-run", "Run directory to write (metrics.json, predictions.csv, figures).")
@option(
    "--split", type=LibraryChoice(split_names), library_default=_evaluate_default("split"), help="Split to evaluate."
)
@option("--name", help="Model name in the tables [the backbone and its weights when not given].")
@option(
    "--n-bootstrap",
    type=click.IntRange(min=10),
    library_default=_evaluate_default("n_bootstrap"),
    help="Bootstrap resamples of the intervals.",
)
@option("--ten-crop", is_flag=True, help="Average the sigmoid outputs of the ten crops.")
@option(
    "--temperature-scaling",
    is_flag=True,
    help="Fit one temperature (and per-class operating points) on the validation carve; apply to --split.",
)
@option("--device", help="cuda or cpu [cuda when available].")
@dataset_option()
def evaluate(model_dir, data_dir, out, split, name, n_bootstrap, ten_crop, temperature_scaling, device, dataset):
    """Per-class ROC/AUROC of a trained CNN (the same run directory as the PHOW baseline's).

    DATA_DIR may hold another dataset than the model's: the labels the two share are scored.
    """
    from ..cnn.run import evaluate_on_dataset
    from ..evaluation import format_auroc_table

    metrics = evaluate_on_dataset(
        model_dir,
        data_dir,
        out,
        split,
        name=name,
        n_bootstrap=n_bootstrap,
        progress=show_progress(),
        device=device,
        ten_crop=ten_crop or None,
        temperature_scaling=temperature_scaling,
        dataset=dataset,
    )
    if metrics.get("external"):
        from ..workflow.steps import describe_external

        click.echo(describe_external(metrics) + "\n")
    click.echo(format_auroc_table(metrics))
    click.echo(f"\nrun directory: {out}")


cnn_group.add_command(predict)  # one predict for every model kind

COMMANDS = (cnn_group,)
