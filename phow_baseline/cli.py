"""The ``phow-baseline`` command line: thin over the library.

Human-readable summaries go to stdout, progress bars and warnings to
stderr, machine-readable results to files.
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import click

from . import __version__


def _warn_to_stderr(message, category, filename, lineno, file=None, line=None):
    click.echo(f"warning: {message}", err=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="phow-baseline")
def main():
    """PHOW + SVM baseline (and CNN comparison) for NIH ChestX-ray14."""
    warnings.showwarning = _warn_to_stderr


@main.command()
@click.argument("data_dir", type=click.Path(file_okay=False, path_type=Path), default="data/chestxray14")
@click.option("--strict", is_flag=True, help="Fail if any listed image is missing.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the summary as JSON.")
def info(data_dir, strict, json_out):
    """Summarise a ChestX-ray14 folder: splits, patients, prevalence, boxes."""
    from .data import ChestXray14, DatasetError, format_summary

    try:
        ds = ChestXray14(data_dir, strict=strict)
    except DatasetError as exc:
        raise click.ClickException(str(exc)) from None
    s = ds.summary()
    click.echo(format_summary(s))
    if json_out:
        json_out.write_text(json.dumps(s, indent=2))


@main.command()
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Write comparison.md/.csv here.")
def compare(run_dirs, out):
    """Put several runs (PHOW and CNN) in one per-class AUROC table with the published columns."""
    from .metrics import comparison_table, read_metrics, table_markdown

    try:
        runs = [read_metrics(d) for d in run_dirs]
    except (FileNotFoundError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    df = comparison_table(runs)
    md = table_markdown(df, runs)
    click.echo(md)
    if out:
        out.mkdir(parents=True, exist_ok=True)
        (out / "comparison.md").write_text(md)
        df.to_csv(out / "comparison.csv", float_format="%.4f")
        click.echo(f"wrote {out / 'comparison.md'} and {out / 'comparison.csv'}", err=True)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
