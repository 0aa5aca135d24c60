"""The PHOW baseline's commands: ``vocab``, ``encode``, ``train`` (the steps), ``run`` (all of them), ``demo``."""

from __future__ import annotations

from pathlib import Path

import click

from ._group import Command
from ._options import (
    LibraryChoice,
    baseline_options,
    config_default,
    config_from_options,
    dask_cluster,
    data_dir_argument,
    encoding_names,
    keyword_default,
    n_bootstrap_option,
    option,
    out_folder_option,
    show_progress,
    split_option,
    work_option,
)


def _run_demo():
    from ..workflow.demo import run_demo

    return run_demo


@click.command(cls=Command)
@data_dir_argument()
@work_option()
@baseline_options(svm=False)
@click.pass_context
def vocab(ctx, data_dir, work, scheduler, **values):
    """Fit the vocabulary of the encoding on the training split (cached in WORK)."""
    from ..encoding import get_encoding
    from ..workflow.steps import open_dataset, prepare_training

    config = config_from_options(ctx, values)
    with dask_cluster(config.backend, config.n_jobs, scheduler):
        _, _, fitted = prepare_training(open_dataset(data_dir, config, work_dir=work), work, config, show_progress())
    click.echo(f"vocabulary ({config.encoding}): {get_encoding(config.encoding).summary(fitted)}; in {work}")


@click.command(cls=Command)
@data_dir_argument()
@work_option()
@split_option(config_default("test_split"), help="Split to encode.")
@baseline_options(svm=False)
@click.pass_context
def encode(ctx, data_dir, work, split, scheduler, **values):
    """Encode a split into feature shards (fits the vocabulary first if WORK has none; resumes)."""
    from ..workflow.steps import build_image_cache, dataset_tag, encode_split, open_dataset, prepare_training

    config = config_from_options(ctx, values)
    progress = show_progress()
    with dask_cluster(config.backend, config.n_jobs, scheduler):
        dataset = open_dataset(data_dir, config, work_dir=work)
        _, _, fitted = prepare_training(dataset, work, config, progress)
        cache = build_image_cache(dataset, dataset.split_names(split), work, config, progress, tag=split)
        tag = dataset_tag(dataset, split)
        store = encode_split(cache, range(len(cache)), cache.names, work, fitted, config, tag, progress)
    click.echo(f"features: {len(store)} images x {store.dim} in {store.directory}")


@click.command(cls=Command)
@data_dir_argument()
@work_option()
@option(
    "--model",
    "model_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default="runs/model",
    metavar="FOLDER",
    help="Model directory to write.",
)
@baseline_options(svm=True)
@click.pass_context
def train(ctx, data_dir, work, model_dir, scheduler, **values):
    """Train one-vs-rest SVMs, one per label of the dataset (vocabulary and features reused from WORK)."""
    from ..workflow.steps import describe_training, train_model

    config = config_from_options(ctx, values)
    with dask_cluster(config.backend, config.n_jobs, scheduler):
        model = train_model(data_dir, work, config, show_progress())
    model.save(model_dir)
    click.echo(f"model: {model_dir} ({model.info.get('n_train')} training images)")
    summary = describe_training(model.info.get("training"), model.info.get("calibrated_on"))
    if summary:
        click.echo(summary)


@click.command(cls=Command)
@data_dir_argument()
@out_folder_option("runs/phow", "Output folder: OUT/model, OUT/run and the caches in OUT/work.")
@n_bootstrap_option()
@baseline_options(svm=True)
@click.pass_context
def run(ctx, data_dir, out, n_bootstrap, scheduler, **values):
    """The whole PHOW baseline on a dataset's split: train on train_val, evaluate on test.

    DATA_DIR is a dataset folder of any kind (--dataset; detected when not given) or a plain-CSV file;
    the split is the publisher's where there is one, else a seeded patient-wise split kept in OUT/work.
    """
    from ..evaluation import format_auroc_table
    from ..workflow.steps import describe_training, run_baseline

    config = config_from_options(ctx, values)
    with dask_cluster(config.backend, config.n_jobs, scheduler):
        metrics = run_baseline(data_dir, out, config, progress=show_progress(), n_bootstrap=n_bootstrap)
    click.echo(format_auroc_table(metrics))
    cal = metrics.get("calibration") or {}
    fitted = {**cal["fitted_on"], "fallback": cal.get("fallback")} if cal.get("fitted_on") else None
    summary = describe_training(metrics.get("training"), fitted)
    if summary:
        click.echo("\n" + summary)
    click.echo(f"\nmodel: {out / 'model'}\nrun: {out / 'run'} (metrics.json, roc.png, comparison.md)")


@click.command(cls=Command)
@option(
    "--data",
    "data_dir",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    metavar="FOLDER",
    help="A real ChestX-ray14 folder instead of the synthetic phantom.",
)
@out_folder_option(None, "Output folder [the demo folder of phow-baseline's cache, printed when it starts].")
@option(
    "--patients",
    type=click.IntRange(min=20),
    library_default=keyword_default(_run_demo, "n_patients"),
    help="Phantom patients (at least 20, so that every split has images).",
)
@option(
    "--encoding",
    type=LibraryChoice(encoding_names),
    library_default=keyword_default(_run_demo, "encoding"),
    help="Image encoding (each at its demo-sized settings).",
)
@option("--seed", type=int, library_default=keyword_default(_run_demo, "seed"))
@option(
    "--n-bootstrap",
    type=click.IntRange(min=10),
    library_default=keyword_default(_run_demo, "n_bootstrap"),
    help="Bootstrap resamples of the intervals.",
)
def demo(data_dir, out, patients, encoding, seed, n_bootstrap):
    """The whole PHOW baseline on a SYNTHETIC phantom (default) or on --data DIR; writes the report."""
    from ..evaluation import format_auroc_table
    from ..workflow.demo import run_demo

    result = run_demo(
        out, data_dir, patients, seed, progress=show_progress(), n_bootstrap=n_bootstrap, encoding=encoding
    )
    if result["synthetic"]:
        click.echo(
            "NOTE: this ran on SYNTHETIC phantom radiographs (phow_baseline.data.phantom), not real X-rays.\n"
            "It shows the pipeline working end to end; it says nothing about accuracy on ChestX-ray14.\n"
        )
    click.echo(format_auroc_table(result["metrics"]))
    click.echo(f"\ndata: {result['data_dir']}\nmodel: {result['model_dir']}\nrun: {result['run_dir']}")
    if result["report"]:
        click.echo(f"report: {result['report']}")


COMMANDS = (vocab, encode, train, run, demo)
