"""Commands on trained models and runs: ``evaluate``, ``predict``, ``compare``, ``report``."""

from __future__ import annotations

from pathlib import Path

import click

from ._group import Command
from ._options import (
    apply,
    backend_options,
    dask_cluster,
    data_dir_argument,
    dataset_option,
    keyword_default,
    model_dir_argument,
    n_bootstrap_option,
    option,
    out_folder_option,
    show_progress,
    split_option,
    work_option,
)


def _evaluate_model():
    from ..workflow.steps import evaluate_model

    return evaluate_model


def _predict_to_csv():
    from ..workflow.predict import predict_to_csv

    return predict_to_csv


@click.command(cls=Command)
@model_dir_argument()
@data_dir_argument()
@dataset_option()
@out_folder_option("runs/run", "Run directory to write (metrics.json, predictions.csv, figures).")
@work_option()
@split_option(help="Split to evaluate [the model's test split when not given].")
@option("--name", library_default=keyword_default(_evaluate_model, "model_name"), help="Model name in the tables.")
@n_bootstrap_option()
def evaluate(model_dir, data_dir, dataset, out, work, split, name, n_bootstrap):
    """Per-class ROC/AUROC of a trained PHOW model on a split; writes the run directory.

    DATA_DIR may hold another dataset than the model's (cross-dataset evaluation): the labels the two
    share are scored, and those dropped on each side are listed.  A CNN is evaluated by
    `phow-baseline cnn evaluate`.
    """
    from ..evaluation import format_auroc_table, format_subgroups
    from ..model import load_model
    from ..workflow.steps import describe_external, evaluate_model

    model = load_model(model_dir)
    if model.kind != "phow":
        raise click.UsageError(
            f"{model_dir} holds a {model.kind} model: evaluate it with 'phow-baseline {model.kind} evaluate'"
        )
    metrics = evaluate_model(
        model,
        data_dir,
        out,
        work,
        split=split,
        model_name=name,
        n_bootstrap=n_bootstrap,
        progress=show_progress(),
        dataset=dataset,
    )
    if metrics.get("external"):
        click.echo(describe_external(metrics) + "\n")
    click.echo(format_auroc_table(metrics))
    if metrics.get("subgroups"):
        click.echo("\n" + format_subgroups(metrics["subgroups"]))
    click.echo(f"\nrun directory: {out}")


@click.command(cls=Command)
@model_dir_argument()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@option(
    "--out-csv",
    "out_csv",
    type=click.Path(dir_okay=False, path_type=Path),
    default="predictions.csv",
    metavar="FILE",
    old_spellings=("--out",),
    help="The predictions CSV to write (its folder is made).",
)
@option(
    "--raw-scores", is_flag=True, help="Write the raw scores (PHOW: SVM margins; CNN: logits) instead of probabilities."
)
@option(
    "--decisions",
    is_flag=True,
    help="Add a 0/1 column '<label> decision' per label, at the model's validation operating points.",
)
@dataset_option(
    help="Read each INPUT as a dataset folder of this kind and score the frontal images it lists, named as the "
    "dataset names them (the columns are the model's labels)."
)
@apply(backend_options(n_jobs_default=keyword_default(_predict_to_csv, "n_jobs")))
def predict(model_dir, inputs, out_csv, raw_scores, decisions, dataset, n_jobs, backend, scheduler):
    """Score images (files or folders) with a model of any kind: one probability per label of the model, in a CSV.

    A PHOW model trained with calibration (the default) and a CNN give
    probabilities in [0, 1]; a PHOW model trained with calibration 'none'
    gives its SVM margins.  Unreadable files are listed (stderr and
    FILE's .failures.csv), not fatal; the exit status is 1 when no image
    could be scored.
    """
    from ..workflow.predict import predict_to_csv

    with dask_cluster(backend, n_jobs, scheduler):
        result = predict_to_csv(
            model_dir,
            inputs,
            out_csv,
            n_jobs=n_jobs,
            backend=backend,
            raw_scores=raw_scores,
            decisions=decisions,
            progress=show_progress(),
            dataset=dataset,
        )
    click.echo(f"scored {len(result.names)} image(s), {len(result.failures)} failure(s); wrote {result.out_csv}")
    if len(result.names) == 1:
        for label, score in zip(result.labels, result.scores[0]):
            click.echo(f"  {label:<20} {score:+.4f}")
    if not result.names:
        raise click.ClickException("no image could be scored (the reasons are listed above)")


def _compare_run_dirs():
    from ..evaluation.paired import compare_run_dirs

    return compare_run_dirs


@click.command(cls=Command)
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(file_okay=False, exists=True, path_type=Path))
@out_folder_option(
    None,
    "Also write comparison.md/.csv, and for the paired comparisons paired.csv/.md/.json and one forest plot "
    "per pair, to this folder (the report reads it with --compare).",
)
@option(
    "--data-dir",
    "data_dir",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    metavar="PATH",
    help="The labels the runs were scored against: a ChestX-ray14 folder or a labels/metadata CSV "
    "[the runs' labels.csv when not given].",
)
@option(
    "--pairs",
    type=click.Choice(["first", "all"]),
    library_default=keyword_default(_compare_run_dirs, "pairs"),
    help="Paired comparisons of each run against the first, or of all pairs.",
)
@option(
    "--n-bootstrap",
    type=click.IntRange(min=0),
    library_default=keyword_default(_compare_run_dirs, "n_bootstrap"),
    help="Paired bootstrap resamples (0: DeLong's test only).",
)
@option("--seed", type=int, library_default=keyword_default(_compare_run_dirs, "seed"), help="Seed of the resamples.")
@option(
    "--no-paired",
    is_flag=True,
    help="Only the AUROC table: for runs not scored on the same images (e.g. internal vs external).",
)
def compare(run_dirs, out, data_dir, pairs, n_bootstrap, seed, no_paired):
    """Put several runs (PHOW and CNN) in one per-class AUROC table, and test their differences.

    With two runs or more, each is compared with the first (or all pairs, --pairs all) on the same test
    images: per class and for the mean AUROC, the difference B - A with DeLong's test (normal 95%
    interval, p) and the paired bootstrap (percentile 95% interval, p).  Runs not scored on the same
    images are refused (use --no-paired for the table alone).
    """
    from ..evaluation import comparison_table, read_metrics, table_markdown
    from ..evaluation.paired import compare_run_dirs, format_paired, write_paired_dir
    from ..evaluation.rundir import LABELS_CSV
    from ..io import atomic_write_text

    runs = [read_metrics(d) for d in run_dirs]
    results = []
    if len(run_dirs) >= 2 and not no_paired:  # refuse before printing anything
        unlabelled = [str(d) for d in run_dirs if not (d / LABELS_CSV).is_file()]
        if data_dir is None and unlabelled:
            raise click.ClickException(
                f"{', '.join(unlabelled)}: no {LABELS_CSV} (a run directory written before 0.2): give the labels "
                "the runs were scored against with --data-dir, or --no-paired for the AUROC table alone"
            )
        results = compare_run_dirs(run_dirs, data_dir, pairs=pairs, n_bootstrap=n_bootstrap, seed=seed)
    labels = dict.fromkeys(lab for r in runs for lab in r.get("labels") or r["auroc"])  # every run's, in order
    table = comparison_table(runs, labels=list(labels))
    markdown = table_markdown(table, runs)
    click.echo(markdown)
    for res in results:
        click.echo("\n" + format_paired(res))
    if out:
        atomic_write_text(out / "comparison.md", markdown)
        atomic_write_text(out / "comparison.csv", table.to_csv(float_format="%.4f"))
        written = ["comparison.md", "comparison.csv"]
        if results:
            write_paired_dir(results, out, pairs=pairs)
            written += ["paired.csv", "paired.md", "paired.json", f"{len(results)} forest plot(s)"]
        click.echo(f"wrote {', '.join(written)} to {out}", err=True)


def _write_report():
    from ..report import write_report

    return write_report


@click.command(cls=Command)
@click.argument("run_dirs", nargs=-1, type=click.Path(file_okay=False, exists=True, path_type=Path))
@out_folder_option("report", "Folder of the report (index.html).")
@option(
    "--localization",
    "localization_dirs",
    multiple=True,
    metavar="FOLDER",
    old_spellings=("--localisation",),
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="A localize-eval output (repeatable).",
)
@option(
    "--diff",
    "diff_dirs",
    multiple=True,
    metavar="FOLDER",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="A diff output (repeatable).",
)
@option(
    "--compare",
    "compare_dirs",
    multiple=True,
    metavar="FOLDER",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="A 'compare --out' folder: its paired comparisons (forest plots) (repeatable).",
)
@option("--title", library_default=keyword_default(_write_report, "title"), help="Title of the page.")
def report(run_dirs, out, localization_dirs, diff_dirs, compare_dirs, title):
    """A self-contained static HTML report: runs, paired comparisons, localization, follow-up dashboards.

    Per run: the AUROC table, ROC curves, calibration and operating points, and the subgroups.
    """
    from ..report import write_report

    if not (run_dirs or localization_dirs or diff_dirs or compare_dirs):
        raise click.UsageError("give at least one run, --localization, --diff or --compare directory")
    page = write_report(run_dirs, out, localization_dirs, diff_dirs, title=title, compare_dirs=compare_dirs)
    click.echo(f"wrote {page}")


COMMANDS = (evaluate, predict, compare, report)
