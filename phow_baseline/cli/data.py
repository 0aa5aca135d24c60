"""The dataset's commands: ``info``, ``download``, ``phantom``."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from ._group import Command
from ._options import data_dir_argument, dataset_option, keyword_default, n_jobs_option, option, show_progress

logger = logging.getLogger("phow_baseline.cli")


def _make_phantom_dataset():
    from ..data.phantom import make_phantom_dataset

    return make_phantom_dataset


def _make_phantom_like():
    from ..data.phantom import make_phantom_like

    return make_phantom_like


@click.command(cls=Command)
@data_dir_argument()
@dataset_option()
@option("--strict", is_flag=True, help="Fail if any listed image is missing.")
@option(
    "--out-json",
    "out_json",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="FILE",
    old_spellings=("--json",),
    help="Also write the summary to this JSON file.",
)
def info(data_dir, dataset, strict, out_json):
    """Summarize a dataset folder (or a plain-CSV file): splits, patients, labels, subgroups (ChestX-ray14: boxes)."""
    from ..data import ChestXray14Dataset, open_dataset
    from ..io import atomic_write_json

    ds = open_dataset(data_dir, kind=dataset, strict=strict)
    click.echo(ds.describe())
    if out_json:  # ChestX-ray14's summary keeps its 0.1 shape
        atomic_write_json(out_json, ds.source.summary() if isinstance(ds, ChestXray14Dataset) else ds.summary())


def _key_value(ctx, param, values):
    """``NAME=VALUE`` pairs -> dict (a usage error naming the option for one without ``=``)."""
    pairs = {}
    for kv in values:
        key, sep, value = kv.partition("=")
        if not sep or not key or not value:
            raise click.BadParameter(f"{kv!r} is not {param.metavar}", ctx=ctx, param=param)
        pairs[key] = value
    return pairs


def _parts(ctx, param, value):
    from ..data.download import parse_parts

    try:
        return parse_parts(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from None


def _download_log(*parts, file=None, **_):
    """The downloader's ``log``: notes at INFO, problems (``file=sys.stderr``) at WARNING."""
    (logger.warning if file is not None else logger.info)(" ".join(str(p) for p in parts))


@click.command(cls=Command)
@data_dir_argument()
@option("--parts", default="all", callback=_parts, help="Archives to fetch: 'all', or e.g. '1,2' or '3-5'.")
@option(
    "--metadata-from",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    metavar="FOLDER",
    help="Copy the metadata files (Data_Entry, split lists, boxes) from this folder.",
)
@option(
    "--metadata-url",
    multiple=True,
    metavar="NAME=URL",
    callback=_key_value,
    help="Fetch a metadata file from a URL, e.g. Data_Entry_2017_v2020.csv=https://...",
)
@option(
    "--mirror",
    multiple=True,
    metavar="PART=URL",
    callback=_key_value,
    help="Fetch an archive from another URL (http, https or file).",
)
@option("--keep-archives", is_flag=True, help="Keep the .tar.gz files after extraction.")
def download(data_dir, parts, metadata_from, metadata_url, mirror, keep_archives):
    """Download and extract the NIH ChestX-ray14 image archives (resumable) and report what is present."""
    from ..data.download import download as fetch_archives
    from ..data.download import format_report

    try:
        urls = {int(k): v for k, v in mirror.items()}
    except ValueError:
        raise click.BadParameter(
            f"archive numbers are whole numbers, got {sorted(mirror)}", param_hint="'--mirror'"
        ) from None
    report = fetch_archives(
        data_dir,
        parts,
        urls=urls,
        metadata_urls=metadata_url,
        metadata_from=metadata_from,
        keep_archives=keep_archives,
        progress=show_progress(),
        log=_download_log,
    )
    click.echo(format_report(report))
    if any(isinstance(v, str) for v in report["parts"].values()):
        sys.exit(1)


@click.command(cls=Command)
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@option(
    "--patients",
    type=click.IntRange(min=20),
    library_default=keyword_default(_make_phantom_dataset, "n_patients"),
    help="Phantom patients (at least 20, so that every split has images).",
)
@option(
    "--size", type=int, library_default=keyword_default(_make_phantom_dataset, "size"), help="Image side in pixels."
)
@option("--seed", type=int, library_default=keyword_default(_make_phantom_dataset, "seed"))
@option(
    "--followups",
    type=int,
    library_default=keyword_default(_make_phantom_dataset, "n_followup_patients"),
    help="Patients with a follow-up series.",
)
@option("--overwrite", is_flag=True, help="Replace an existing phantom in OUT_DIR.")
@option(
    "--like",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    metavar="METADATA_CSV",
    help="A real metadata CSV (Data_Entry_2017[_v2020].csv[.gz]): one phantom image per row, with its "
    "name, patient and findings, and the official split lists found next to it.",
)
@option("--limit", type=int, help="With --like: a seeded, patient-complete subset of this many images.")
@option(
    "--bbox",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    metavar="BBOX_CSV",
    help="With --like: the real BBox_List_2017.csv[.gz] [the one next to the metadata, if there].",
)
@n_jobs_option(keyword_default(_make_phantom_like, "n_jobs"), help="With --like: parallel processes, -1 for all.")
def phantom(out_dir, patients, size, seed, followups, overwrite, like, limit, bbox, n_jobs):
    """Write a SYNTHETIC ground-truth phantom dataset in the ChestX-ray14 layout.

    With --like, in the shape of a real metadata file (resumable: rerun the
    same command after an interruption).
    """
    from ..data.phantom import load_truth, make_phantom_dataset, make_phantom_like

    if like is None and (limit is not None or bbox is not None):
        raise click.UsageError("--limit and --bbox go with --like")
    if like is None:
        path = make_phantom_dataset(out_dir, patients, size, seed, followups, overwrite=overwrite)
        click.echo(f"wrote a synthetic phantom of {patients} patients to {path}")
        return
    if bbox is None:
        bbox = next(
            (like.parent / n for n in ("BBox_List_2017.csv", "BBox_List_2017.csv.gz") if (like.parent / n).exists()),
            None,
        )
    path = make_phantom_like(
        out_dir, like, size=size, limit=limit, seed=seed, bbox_csv=bbox, n_jobs=n_jobs, progress=show_progress()
    )
    click.echo(
        f"wrote a synthetic phantom of {load_truth(path)['params']['n_images']} images in the shape of {like} to {path}"
    )


COMMANDS = (info, download, phantom)
