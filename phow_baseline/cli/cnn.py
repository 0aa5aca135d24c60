"""``phow-baseline cnn train | evaluate | predict`` (thin over :mod:`phow_baseline.cnn.run`)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

_NEEDS_CNN = "this command needs the cnn extra (torch and torchvision): pip install -e '.[cnn]'"


def _require_torch() -> None:
    """Stop a cnn command at once, with one line, when torch is missing (``--help`` never needs it)."""
    try:
        import torch  # noqa: F401
        import torchvision  # noqa: F401
    except ImportError as exc:
        raise click.ClickException(f"{_NEEDS_CNN} ({exc})") from None


def _check_model_dir(ctx, param, value):
    """A model directory must hold model.json; given a run's output folder, say where its model is."""
    from ..model.directory import ModelFileError, model_json_path

    try:
        model_json_path(value)
    except ModelFileError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from None
    return value


@click.group("cnn")
def cnn_group():
    """The CNN comparison (extra 'cnn': torch + torchvision)."""


@cnn_group.command("train")
@click.argument("data_dir", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default="runs/cnn", show_default=True)
@click.option("--backbone", type=click.Choice(["vgg11_bn", "resnet50", "resnet101", "densenet121"]),
              default="resnet50", show_default=True)
@click.option("--weights", default=None, help="'imagenet' (torchvision, downloads once), a local file, or none.")
@click.option("--loss", type=click.Choice(["bce", "bce_weighted", "soft_margin"]), default="bce", show_default=True)
@click.option("--lr", type=float, default=1e-4, show_default=True)
@click.option("--batch-size", type=int, default=32, show_default=True)
@click.option("--epochs", type=int, default=10, show_default=True)
@click.option("--patience", type=int, default=3, show_default=True)
@click.option("--crop", type=int, default=224, show_default=True)
@click.option("--resize", type=int, default=256, show_default=True)
@click.option("--random-resized-crop", is_flag=True)
@click.option("--equalization", type=click.Choice(["none", "global", "clahe"]), default="none", show_default=True,
              help="Equalization of the cached images (the CNN's default is none).")
@click.option("--workers", type=int, default=4, show_default=True)
@click.option("--device", default=None, help="cuda / cpu [cuda when available].")
@click.option("--max-steps", type=int, default=None, help="Steps per epoch (for a quick try).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--resume", is_flag=True, help="Continue from OUT/last.pt.")
@click.option("--quiet", is_flag=True)
def train(data_dir, out, backbone, weights, loss, lr, batch_size, epochs, patience, crop, resize,
          random_resized_crop, equalization, workers, device, max_steps, seed, resume, quiet):
    """Train a CNN on the train carve of the official train_val split (model selection on val)."""
    _require_torch()
    from ..cnn.run import train_on_dataset
    from ..cnn.train import CnnConfig

    cfg = CnnConfig(backbone=backbone, weights=weights, loss=loss, lr=lr, batch_size=batch_size, epochs=epochs,
                    patience=patience, crop=crop, resize=resize, random_resized=random_resized_crop,
                    equalization=equalization,
                    workers=workers, device=device, max_steps_per_epoch=max_steps, seed=seed)
    try:
        h = train_on_dataset(data_dir, out, cfg, resume=resume, progress=not quiet)
    except (ValueError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"best validation mean AUROC {h['best_val_mean_auroc']:.4f}; model in {out}")


@cnn_group.command("evaluate")
@click.argument("model_dir", type=click.Path(file_okay=False, exists=True, path_type=Path), callback=_check_model_dir)
@click.argument("data_dir", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default="runs/cnn-run", show_default=True)
@click.option("--split", default="test", show_default=True)
@click.option("--name", default=None)
@click.option("--n-bootstrap", type=int, default=1000, show_default=True)
@click.option("--ten-crop", is_flag=True, help="Average the sigmoid outputs of the ten crops.")
@click.option("--temperature-scaling", is_flag=True,
              help="Fit one temperature (and per-class operating points) on the validation carve; apply to --split.")
@click.option("--device", default=None)
@click.option("--quiet", is_flag=True)
def evaluate(model_dir, data_dir, out, split, name, n_bootstrap, ten_crop, temperature_scaling, device, quiet):
    """Per-class ROC/AUROC of a trained CNN (the same run directory as the PHOW baseline's)."""
    _require_torch()
    from ..evaluation.metrics import format_auroc_table
    from ..cnn.run import evaluate_on_dataset

    try:
        m = evaluate_on_dataset(model_dir, data_dir, out, split, name=name, n_bootstrap=n_bootstrap,
                                progress=not quiet, device=device, ten_crop=ten_crop or None,
                                temperature_scaling=temperature_scaling)
    except (ValueError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(format_auroc_table(m))
    click.echo(f"\nrun directory: {out}")


@cnn_group.command("predict")
@click.argument("model_dir", type=click.Path(file_okay=False, exists=True, path_type=Path), callback=_check_model_dir)
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default="predictions.csv", show_default=True)
def predict(model_dir, inputs, out):
    """Sigmoid scores of images (files or folders) into a CSV."""
    _require_torch()
    from ..io import list_images
    from ..evaluation.metrics import write_predictions
    from ..workflow.steps import predict_paths
    from ..cnn.train import load_cnn_model

    out.parent.mkdir(parents=True, exist_ok=True)  # --out into a new folder: made (an unwritable one: one line)
    paths = list_images(inputs)
    if not paths:
        raise click.ClickException(f"no images to score in {', '.join(str(i) for i in inputs)}")
    m = load_cnn_model(model_dir)
    names, scores, failures = predict_paths(m, paths, progress=False)
    write_predictions(out, names, scores)
    for f, why in failures:
        click.echo(f"failed: {f}: {why}", err=True)
    click.echo(f"scored {len(names)} image(s), {len(failures)} failure(s); wrote {out}")
    if not names:
        click.echo("error: no image could be scored (the reasons are listed above)", err=True)
        sys.exit(1)
