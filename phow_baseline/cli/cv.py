"""The ``cv`` command: patient-wise K-fold cross-validation of a configuration (the logic: :mod:`..workflow.cv`)."""

from __future__ import annotations

from pathlib import Path

import click

from ._group import Command
from ._options import (
    baseline_options,
    config_from_options,
    dask_cluster,
    data_dir_argument,
    keyword_default,
    n_bootstrap_option,
    option,
    out_folder_option,
    show_progress,
)


def _cross_validate():
    from ..workflow.cv import cross_validate

    return cross_validate


@click.command(cls=Command)
@data_dir_argument()
@out_folder_option("runs/cv", "Output folder: OUT/run (out-of-fold predictions, metrics), OUT/folds.csv, OUT/folds.")
@option(
    "--folds",
    "n_folds",
    type=click.IntRange(min=2),
    library_default=keyword_default(_cross_validate, "n_folds"),
    help="Patient-wise folds.",
)
@option(
    "--repeats",
    type=click.IntRange(min=1),
    library_default=keyword_default(_cross_validate, "repeats"),
    help="Repetitions with other seeded folds.",
)
@option(
    "--split",
    "cv_split",
    type=click.Choice(("all", "train_val")),
    library_default=keyword_default(_cross_validate, "split"),
    help="Images pooled: all present, or the train_val list only (the official test images kept out).",
)
@option(
    "--work",
    "--work-dir",
    "work",
    type=click.Path(file_okay=False, path_type=Path),
    metavar="FOLDER",
    help="Folder of the caches, shareable by several configurations [OUT/work].",
)
@n_bootstrap_option()
@baseline_options(svm=True)
@click.pass_context
def cv(ctx, data_dir, out, n_folds, repeats, cv_split, work, n_bootstrap, scheduler, **values):
    """Patient-wise K-fold cross-validation over the images present: out-of-fold AUROC with intervals.

    Resumes: each fold's model is kept, a finished fold is skipped; configurations sharing a work folder
    share its image cache and their folds' vocabularies and features when only the SVM settings differ.
    """
    from ..evaluation import format_auroc_table, read_metrics
    from ..workflow.cv import cross_validate

    config = config_from_options(ctx, values)
    with dask_cluster(config.backend, config.n_jobs, scheduler):
        result = cross_validate(
            data_dir,
            out,
            config,
            n_folds=n_folds,
            repeats=repeats,
            split=cv_split,
            work_dir=work,
            progress=show_progress(),
            n_bootstrap=n_bootstrap,
        )
    click.echo(format_auroc_table(read_metrics(result["run_dirs"][0])))
    for r, (m, ci) in enumerate(zip(result["mean_auroc"], result["mean_auroc_ci95"])):
        lo, hi = ci if ci else (float("nan"), float("nan"))
        click.echo(f"repeat {r}: out-of-fold mean AUROC {m:.4f} [{lo:.4f}, {hi:.4f}]")
    click.echo(
        f"\n{result['n_images']} images, {n_folds} folds x {repeats} repeat(s); "
        f"{result['seconds_per_image']:.2f} s per image this call\nrun: {result['run_dirs'][0]}\n"
        f"folds: {out / 'folds.csv'}"
    )


COMMANDS = (cv,)
