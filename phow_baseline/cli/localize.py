"""Where a model looks: ``localize``, ``localize-eval``, and ``diff`` of two X-rays of one patient."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ._group import Command
from ._options import (
    LibraryChoice,
    check_model_dir,
    data_dir_argument,
    keyword_default,
    model_dir_argument,
    motion_names,
    option,
    out_folder_option,
    show_progress,
)


def _localize_images():
    from ..workflow.localize import localize_images

    return localize_images


def _diff_images():
    from ..workflow.localize import diff_images

    return diff_images


def _default_threshold():
    from ..evaluation.localization import DEFAULT_THRESHOLD

    return DEFAULT_THRESHOLD


def _labels(ctx, param, value):
    return [label.strip() for label in value.split(",") if label.strip()] if value else None


@click.command(cls=Command)
@model_dir_argument()
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@out_folder_option("heatmaps", "Folder of the overlays (<image>_<label>.png).")
@option(
    "--labels",
    callback=_labels,
    metavar="LABEL,...",
    help="Comma-separated findings to draw [the --top highest-scoring of each image when not given].",
)
@option(
    "--top",
    type=click.IntRange(min=1),
    library_default=keyword_default(_localize_images, "top"),
    help="Findings drawn per image without --labels.",
)
def localize(model_dir, images, out, labels, top):
    """Per-class heatmaps of images, overlaid in colour with their boxes (PNG)."""
    from ..workflow.localize import localize_images

    result = localize_images(model_dir, images, out, labels=labels, top=top)
    for o in result.overlays:
        click.echo(f"{o.image.name}  {o.label:<20} score {o.score:+.3f}  -> {o.path}")
    if result.failures:
        sys.exit(1)


@click.command("localize-eval", cls=Command)
@model_dir_argument()
@data_dir_argument()
@out_folder_option("runs/localization", "Localization directory to write (localization.json, .md, heatmaps/).")
@option(
    "--threshold",
    type=float,
    library_default=_default_threshold,
    help="Boxes are the heatmap's regions above this fraction of its maximum.",
)
@option("--name", help="Model name in the table [the model directory when not given].")
def localize_eval(model_dir, data_dir, out, threshold, name):
    """Accuracy at T(IoBB) and T(IoU), and false positives, against the NIH boxes."""
    from ..evaluation.localization import format_localization
    from ..workflow.localize import evaluate_localization_dir

    result = evaluate_localization_dir(
        model_dir, data_dir, out, threshold=threshold, name=name, progress=show_progress()
    )
    click.echo(format_localization(result))
    click.echo(f"wrote {out / 'localization.json'}")


@click.command(cls=Command)
@click.argument("image_a", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("image_b", type=click.Path(dir_okay=False, path_type=Path))
@option(
    "--model",
    "model_dir",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    metavar="FOLDER",
    callback=check_model_dir,
    help="A model for score (and heatmap) differences.",
)
@out_folder_option("diff", "Diff directory to write (diff.json and the figures).")
@option(
    "--size",
    type=int,
    library_default=keyword_default(_diff_images, "size"),
    help="Image side in pixels without --model (a model reads the images at its own size).",
)
@option(
    "--motion",
    type=LibraryChoice(motion_names),
    library_default=keyword_default(_diff_images, "motion"),
    help="Registration model.",
)
@option("--allow-different-patients", is_flag=True, help="Compare images whose names name different patients.")
def diff(image_a, image_b, model_dir, out, size, motion, allow_different_patients):
    """What changed between two X-rays of one patient (earlier -> later)."""
    from ..workflow.localize import diff_images

    meta = diff_images(
        image_a, image_b, out, model_dir, size=size, motion=motion, allow_different_patients=allow_different_patients
    )
    reg = meta["registration"]
    click.echo(f"earlier {meta['image_a']} -> later {meta['image_b']} (patient {meta['patient']})")
    click.echo(
        f"registration ({reg['motion']}): ECC {reg['ecc']:.3f}, converged {reg['converged']}; "
        f"{meta['registration_quality']['text']}"
    )
    click.echo(f"mean SSIM {meta['ssim_mean']:.3f}; mean |intensity change| {meta['intensity_diff_mean_abs']:.1f}")
    if meta["score_changes"]:
        changes = sorted(meta["score_changes"].items(), key=lambda kv: -abs(kv[1]["delta"]))
        for label, c in changes[:5]:
            click.echo(f"  {label:<20} {c['a']:+.3f} -> {c['b']:+.3f} ({c['delta']:+.3f})")
    click.echo(f"wrote {out}")


COMMANDS = (localize, localize_eval, diff)
