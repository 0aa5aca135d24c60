"""The ``phow-baseline`` command line: thin over the library.

Human-readable summaries go to stdout, progress bars and warnings to
stderr, machine-readable results to files.

One concept at this length: the command line (one click command per user task,
each a few lines over the library).
"""

from __future__ import annotations

import errno
import sys
import warnings
from pathlib import Path

import click
import numpy as np

from .. import __version__


def _warn_to_stderr(message, category, filename, lineno, file=None, line=None):
    click.echo(f"warning: {message}", err=True)


def _describe_os_error(exc: OSError) -> str:
    """One line naming the path and the reason: ``PATH: Read-only file system``."""
    what = exc.strerror or str(exc)
    if exc.filename is None:
        return what
    both = f"{exc.filename} -> {exc.filename2}" if getattr(exc, "filename2", None) else str(exc.filename)
    return f"{both}: {what}"


class _Command(click.Command):
    """A command whose help also names the default of each argument (options show theirs)."""

    def format_help_text(self, ctx, formatter):
        super().format_help_text(ctx, formatter)
        notes = [f"{p.human_readable_name} defaults to {p.default}." for p in self.get_params(ctx)
                 if isinstance(p, click.Argument) and not p.required and _has_default(p)]
        if notes:
            formatter.write_paragraph()
            with formatter.indentation():
                formatter.write_text(" ".join(notes))


def _has_default(param) -> bool:
    """Whether a parameter has a real default (click 8.2+ marks "none given" with a sentinel object)."""
    d = param.default
    return d is not None and not callable(d) and isinstance(d, (str, int, float, Path, tuple, list))


class _Main(click.Group):
    """The ``phow-baseline`` group: an environmental error (an ``OSError`` such as a read-only
    or missing folder) ends any command with one line naming the path, not a traceback."""

    command_class = _Command
    #: Old command names (phow-baseline 0.1 spelt them -ise), accepted but not listed.
    aliases = {"localise": "localize", "localise-eval": "localize-eval"}

    def get_command(self, ctx, cmd_name):
        return super().get_command(ctx, self.aliases.get(cmd_name, cmd_name))

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except OSError as exc:
            if exc.errno == errno.EPIPE:  # click's own handling of a closed pipe
                raise
            raise click.ClickException(_describe_os_error(exc)) from None


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
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
    from ..data.chestxray14 import ChestXray14, DatasetError, format_summary

    try:
        ds = ChestXray14(data_dir, strict=strict)
    except DatasetError as exc:
        raise click.ClickException(str(exc)) from None
    s = ds.summary()
    click.echo(format_summary(s))
    if json_out:
        from ..io import atomic_write_json

        atomic_write_json(json_out, s)


@main.command()
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Write comparison.md/.csv here.")
def compare(run_dirs, out):
    """Put several runs (PHOW and CNN) in one per-class AUROC table with the published columns."""
    from ..io import atomic_write_text
    from ..evaluation.metrics import comparison_table, read_metrics, table_markdown

    try:
        runs = [read_metrics(d) for d in run_dirs]
    except (FileNotFoundError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    df = comparison_table(runs)
    md = table_markdown(df, runs)
    click.echo(md)
    if out:
        atomic_write_text(out / "comparison.md", md)
        atomic_write_text(out / "comparison.csv", df.to_csv(float_format="%.4f"))
        click.echo(f"wrote {out / 'comparison.md'} and {out / 'comparison.csv'}", err=True)


# --------------------------------------------------------------------------
# The PHOW baseline
# --------------------------------------------------------------------------

_DATA_ARG = click.argument("data_dir", type=click.Path(file_okay=False, path_type=Path), default="data/chestxray14")


def _svm_options() -> list:
    """The options of the SVM stage (train, run)."""
    return [
        click.option("--kernel-map", type=click.Choice(["homkermap", "additive_chi2", "none"]),
                     help="[default: homkermap]"),
        click.option("--C", "C", type=float, help="SVM C, > 0 [default: 10]."),
        click.option("--class-weight", type=click.Choice(["none", "balanced"]), help="[default: none]"),
        click.option("--solver", type=click.Choice(["auto", "liblinear", "sgd"]), help="[default: auto]"),
    ]


def config_options(f):
    """Every option of the baseline (train, run); each overrides the config file."""
    return _baseline_options(f, svm=True)


def feature_options(f):
    """The options of the steps before the SVMs (vocab, encode): no SVM settings, which would do nothing there."""
    return _baseline_options(f, svm=False)


def _baseline_options(f, svm: bool):
    """Options shared by the baseline's commands; each overrides the config file."""
    opts = [
        click.option("--config", "config_file", type=click.Path(dir_okay=False, exists=True, path_type=Path),
                     help="JSON file of BaselineConfig settings (options below override it)."),
        click.option("--size", type=int, help="Image side in pixels [default: 256]."),
        click.option("--equalization", type=click.Choice(["global", "clahe", "none"]), help="[default: global]"),
        click.option("--n-words", type=int, help="Visual words [default: 600]."),
        click.option("--encoding", type=click.Choice(["bow", "fisher", "vlad"]),
                     help="Image encoding: bag of words, improved Fisher vectors or VLAD [default: bow]; "
                          "their settings (fv_components, fv_pca_dims, vlad_words, regions) via --config."),
        click.option("--max-descriptors", type=int, help="Descriptors for k-means [default: 100000]."),
        click.option("--vocab-images", type=int, help="Training images sampled for the vocabulary [default: 2000]."),
        *(_svm_options() if svm else []),
        click.option("--train-split", type=click.Choice(["train_val", "train", "val", "test", "all"]),
                     help="[default: train_val]"),
        click.option("--seed", type=int, help="[default: 0]"),
        click.option("--n-jobs", type=int, help="Parallel workers, -1 for all cores [default: -1]."),
        click.option("--backend", type=click.Choice(["loky", "threading", "multiprocessing", "dask"]),
                     help="joblib backend [default: loky]; 'dask' runs on a dask.distributed cluster."),
        click.option("--scheduler", help="dask scheduler address (with --backend dask); default a LocalCluster."),
        click.option("--quiet", is_flag=True, help="No progress bars."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def _config(kw):
    from ..config import BaselineConfig, ConfigError

    over = {k: kw.pop(k, None) for k in ("size", "equalization", "n_words", "encoding", "max_descriptors",
                                         "vocab_images",
                                         "kernel_map", "C", "class_weight", "solver", "train_split", "seed",
                                         "n_jobs", "backend")}
    if over.get("class_weight") == "none":
        over["class_weight"] = None
        cw_none = True
    else:
        cw_none = False
    cfile = kw.pop("config_file", None)
    try:
        if cfile:
            cfg = BaselineConfig.from_file(cfile, **over)
        else:
            cfg = BaselineConfig(**{k: v for k, v in over.items() if v is not None})
        if cw_none:
            cfg.class_weight = None
    except ConfigError as exc:  # a bad option value: one usage line naming the option, before any work
        opt = "--C" if exc.field == "C" else "--" + exc.field.replace("_", "-")
        ctx = click.get_current_context(silent=True)
        known = ctx is not None and any(opt in getattr(p, "opts", ()) for p in ctx.command.params)
        raise click.BadParameter(str(exc), param_hint=f"'{opt}'" if known else None) from None
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    return cfg


class _Cluster:
    """Opens a dask.distributed client for the block when the dask backend is asked for.

    ``--scheduler ADDRESS``: the cluster of a running ``dask scheduler``;
    without it, a LocalCluster of ``--n-jobs`` single-threaded worker
    processes (all cores by default).  Every parallel step then runs its
    tasks on that cluster (:mod:`phow_baseline.parallel`).
    """

    def __init__(self, cfg, scheduler):
        self.cfg, self.scheduler, self._cm = cfg, scheduler, None
        if scheduler and cfg.backend != "dask":
            raise click.BadParameter("--scheduler needs --backend dask", param_hint="'--scheduler'")

    def __enter__(self):
        if self.cfg.backend == "dask":
            try:
                from ..parallel import dask_client

                self._cm = dask_client(self.scheduler, n_workers=self.cfg.n_jobs)
                client = self._cm.__enter__()
            except ImportError:
                raise click.ClickException("--backend dask needs the cluster extra: "
                                           "pip install 'phow-baseline[cluster]'") from None
            except (OSError, TimeoutError) as exc:
                raise click.ClickException(f"cannot reach the dask scheduler {self.scheduler or '(local)'}: "
                                           f"{exc}") from None
            click.echo(f"dask: {client}", err=True)
        return self

    def __exit__(self, *a):
        if self._cm is not None:
            self._cm.__exit__(*a)
        return False


def _check_model_dir(ctx, param, value):
    """A model directory must hold model.json; given a run's output folder, say where its model is."""
    if value is None:
        return value
    from ..model.directory import ModelFileError, model_json_path

    try:
        model_json_path(value)
    except ModelFileError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from None
    return value


def _no_images_message(inputs) -> str:
    from ..io import IMAGE_SUFFIXES

    return (f"no images to score in {', '.join(str(i) for i in inputs)} "
            f"(folders are searched for {', '.join(IMAGE_SUFFIXES)} files)")


def _library_errors():
    from ..data.chestxray14 import DatasetError
    from ..io import DataFileError, FolderBusyError
    from ..data.preprocess import ImageReadError

    # OSErrors (a missing or read-only path) are left to _Main, which names the path in one line
    return (DatasetError, DataFileError, FolderBusyError, ImageReadError, ValueError)


@main.command()
@_DATA_ARG
@click.option("--work", type=click.Path(file_okay=False, path_type=Path), default="runs/work", show_default=True,
              help="Folder of the caches (image cache, vocabulary, features).")
@feature_options
def vocab(data_dir, work, scheduler, quiet, **kw):
    """Fit the visual vocabulary on the training split (cached in WORK)."""
    from ..workflow.steps import open_dataset, prepare_training

    cfg = _config(kw)
    try:
        with _Cluster(cfg, scheduler):
            _, _, v = prepare_training(open_dataset(data_dir, cfg), work, cfg, not quiet)
    except _library_errors() as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"vocabulary: {len(v.cluster_centers_)} words in {work / 'vocabulary.npz'}")


@main.command()
@_DATA_ARG
@click.option("--work", type=click.Path(file_okay=False, path_type=Path), default="runs/work", show_default=True)
@click.option("--split", type=click.Choice(["train_val", "train", "val", "test", "all"]), default="test",
              show_default=True)
@feature_options
def encode(data_dir, work, split, scheduler, quiet, **kw):
    """Encode a split into feature shards (needs the vocabulary in WORK; resumes)."""
    from ..workflow.steps import build_image_cache, encode_split, open_dataset, prepare_training

    cfg = _config(kw)
    try:
        with _Cluster(cfg, scheduler):
            ds = open_dataset(data_dir, cfg)
            _, _, v = prepare_training(ds, work, cfg, not quiet)
            cache = build_image_cache(ds, ds.split_names(split), work, cfg, not quiet, tag=split)
            store = encode_split(cache, range(len(cache)), cache.names, work, v, cfg, split, not quiet)
    except _library_errors() as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"features: {len(store)} images x {store.dim} in {store.directory}")


@main.command()
@_DATA_ARG
@click.option("--work", type=click.Path(file_okay=False, path_type=Path), default="runs/work", show_default=True)
@click.option("--model", "model_dir", type=click.Path(file_okay=False, path_type=Path), default="runs/model",
              show_default=True, help="Model directory to write.")
@config_options
def train(data_dir, work, model_dir, scheduler, quiet, **kw):
    """Train the 14 one-vs-rest SVMs (vocabulary and features reused from WORK)."""
    from ..workflow.steps import train_model

    cfg = _config(kw)
    try:
        with _Cluster(cfg, scheduler):
            model = train_model(data_dir, work, cfg, not quiet)
    except _library_errors() as exc:
        raise click.ClickException(str(exc)) from None
    model.save(model_dir)
    click.echo(f"model: {model_dir} ({model.info.get('n_train')} training images)")


@main.command()
@click.argument("model_dir", type=click.Path(file_okay=False, exists=True, path_type=Path), callback=_check_model_dir)
@_DATA_ARG
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default="runs/run", show_default=True)
@click.option("--work", type=click.Path(file_okay=False, path_type=Path), default="runs/work", show_default=True)
@click.option("--split", type=click.Choice(["train_val", "train", "val", "test", "all"]), default=None,
              help="Split to evaluate [the model's test split].")
@click.option("--name", default="PHOW baseline", show_default=True, help="Model name in the tables.")
@click.option("--n-bootstrap", type=click.IntRange(min=10), default=1000, show_default=True)
@click.option("--quiet", is_flag=True)
def evaluate(model_dir, data_dir, out, work, split, name, n_bootstrap, quiet):
    """Per-class ROC/AUROC of a trained model on a split; writes the run directory."""
    from ..evaluation.metrics import format_auroc_table
    from ..model.phow_model import PhowModel
    from ..workflow.steps import evaluate_model

    try:
        model = PhowModel.load(model_dir)
        m = evaluate_model(model, data_dir, out, work, split=split, model_name=name, n_bootstrap=n_bootstrap,
                           progress=not quiet)
    except _library_errors() as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(format_auroc_table(m))
    click.echo(f"\nrun directory: {out}")


@main.command()
@click.argument("model_dir", type=click.Path(file_okay=False, exists=True, path_type=Path), callback=_check_model_dir)
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default="predictions.csv",
              show_default=True)
@click.option("--n-jobs", type=int, default=1, show_default=True, help="Parallel workers, -1 for all cores.")
@click.option("--backend", type=click.Choice(["loky", "threading", "multiprocessing", "dask"]), default=None,
              help="joblib backend [default: loky]; 'dask' runs on a dask.distributed cluster.")
@click.option("--scheduler", help="dask scheduler address (with --backend dask); default a LocalCluster.")
@click.option("--raw-scores", is_flag=True,
              help="Write the raw scores (PHOW: SVM margins; CNN: logits) instead of probabilities.")
@click.option("--decisions", is_flag=True,
              help="Add a 0/1 column '<label> decision' per label, at the model's validation operating points.")
@click.option("--quiet", is_flag=True)
def predict(model_dir, inputs, out, n_jobs, backend, scheduler, raw_scores, decisions, quiet):
    """Score images (files or folders): one probability per label, written to a CSV.

    A PHOW model trained with calibration (the default) and a CNN give
    probabilities in [0, 1]; a PHOW model trained with calibration 'none'
    gives its SVM margins.
    """
    from ..evaluation.metrics import write_predictions
    from ..model.directory import load_model
    from ..io import list_images, write_failures_csv
    from ..workflow.steps import predict_paths

    out.parent.mkdir(parents=True, exist_ok=True)  # --out into a new folder: made (an unwritable one: one line)
    paths = list_images(inputs)
    if not paths:
        raise click.ClickException(_no_images_message(inputs))
    try:
        model = load_model(model_dir)
    except _library_errors() as exc:
        raise click.ClickException(str(exc)) from None
    if decisions and getattr(model, "operating_points", None) is None:
        raise click.ClickException(f"{model_dir}: the model has no operating points (a PHOW model trained with "
                                   "calibration, the default, has them); --decisions needs them")
    from types import SimpleNamespace

    try:
        with _Cluster(SimpleNamespace(backend=backend, n_jobs=n_jobs), scheduler):
            names, scores, failures = predict_paths(model, paths, progress=not quiet, n_jobs=n_jobs,
                                                    backend=backend, raw_scores=raw_scores)
    except _library_errors() as exc:
        raise click.ClickException(str(exc)) from None
    dec = None
    if decisions:
        dec = model.decide(model.calibrate(scores) if raw_scores else scores)
    write_predictions(out, names, scores, decisions=dec)
    for f, why in failures:
        click.echo(f"failed: {f}: {why}", err=True)
    if failures:
        write_failures_csv(out.with_name(out.stem + ".failures.csv"), failures)
    click.echo(f"scored {len(names)} image(s), {len(failures)} failure(s); wrote {out}")
    if len(names) == 1:
        from ..data.chestxray14 import LABELS

        for lab, s in zip(LABELS, scores[0]):
            click.echo(f"  {lab:<20} {s:+.4f}")
    if not names:
        click.echo("error: no image could be scored (the reasons are listed above)", err=True)
        sys.exit(1)


@main.command()
@_DATA_ARG
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default="runs/phow", show_default=True)
@click.option("--n-bootstrap", type=click.IntRange(min=10), default=1000, show_default=True)
@config_options
def run(data_dir, out, n_bootstrap, scheduler, quiet, **kw):
    """The whole PHOW baseline on the official split: train on train_val, evaluate on test."""
    from ..evaluation.metrics import format_auroc_table
    from ..workflow.steps import run_baseline

    cfg = _config(kw)
    try:
        with _Cluster(cfg, scheduler):
            m = run_baseline(data_dir, out, cfg, progress=not quiet, n_bootstrap=n_bootstrap)
    except _library_errors() as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(format_auroc_table(m))
    click.echo(f"\nmodel: {out / 'model'}\nrun: {out / 'run'} (metrics.json, roc.png, comparison.md)")


@main.command()
@click.option("--data", "data_dir", type=click.Path(file_okay=False, exists=True, path_type=Path),
              help="A real ChestX-ray14 folder instead of the synthetic phantom.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="Output folder [~/.cache/phow-baseline/demo].")
@click.option("--patients", type=click.IntRange(min=20), default=400, show_default=True,
              help="Phantom patients (at least 20, so that every split has images).")
@click.option("--encoding", type=click.Choice(["bow", "fisher", "vlad"]), default="bow", show_default=True,
              help="Image encoding (fisher/vlad at demo-sized settings).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--n-bootstrap", type=click.IntRange(min=10), default=1000, show_default=True)
@click.option("--quiet", is_flag=True)
def demo(data_dir, out, patients, encoding, seed, n_bootstrap, quiet):
    """The whole PHOW baseline on a SYNTHETIC phantom (default) or on --data DIR; writes the report."""
    from ..workflow.demo import run_demo
    from ..evaluation.metrics import format_auroc_table

    try:
        r = run_demo(out, data_dir, patients, seed, progress=not quiet, n_bootstrap=n_bootstrap, encoding=encoding)
    except _library_errors() as exc:
        raise click.ClickException(str(exc)) from None
    if r["synthetic"]:
        click.echo("NOTE: this ran on SYNTHETIC phantom radiographs (phow_baseline.data.phantom), not real X-rays.\n"
                   "It shows the pipeline working end to end; it says nothing about accuracy on ChestX-ray14.\n")
    click.echo(format_auroc_table(r["metrics"]))
    click.echo(f"\ndata: {r['data_dir']}\nmodel: {r['model_dir']}\nrun: {r['run_dir']}")
    if r["report"]:
        click.echo(f"report: {r['report']}")


@main.command()
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--patients", type=click.IntRange(min=20), default=300, show_default=True,
              help="Phantom patients (at least 20, so that every split has images).")
@click.option("--size", type=int, default=256, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--followups", type=int, default=6, show_default=True, help="Patients with a follow-up series.")
@click.option("--overwrite", is_flag=True)
@click.option("--like", "like", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="A real metadata CSV (Data_Entry_2017[_v2020].csv[.gz]): one phantom image per row, with its "
                   "name, patient and findings, and the official split lists found next to it.")
@click.option("--limit", type=int, help="With --like: a seeded, patient-complete subset of this many images.")
@click.option("--bbox", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="With --like: the real BBox_List_2017.csv[.gz] [next to the metadata, if there].")
@click.option("--n-jobs", type=int, default=-1, show_default=True, help="With --like: parallel processes.")
@click.option("--quiet", is_flag=True)
def phantom(out_dir, patients, size, seed, followups, overwrite, like, limit, bbox, n_jobs, quiet):
    """Write a SYNTHETIC ground-truth phantom dataset in the ChestX-ray14 layout.

    With --like, in the shape of a real metadata file (resumable: rerun the
    same command after an interruption)."""
    from ..data.phantom import load_truth, make_phantom_dataset, make_phantom_like

    if like is None and (limit is not None or bbox is not None):
        raise click.UsageError("--limit and --bbox go with --like")
    try:
        if like is not None:
            if bbox is None:
                bbox = next((like.parent / n for n in ("BBox_List_2017.csv", "BBox_List_2017.csv.gz")
                             if (like.parent / n).exists()), None)
            p = make_phantom_like(out_dir, like, size=size, limit=limit, seed=seed, bbox_csv=bbox, n_jobs=n_jobs,
                                  progress=not quiet)
        else:
            p = make_phantom_dataset(out_dir, patients, size, seed, followups, overwrite=overwrite)
    except (FileExistsError, *_library_errors()) as exc:
        raise click.ClickException(str(exc)) from None
    if like is not None:
        n = load_truth(p)["params"]["n_images"]
        click.echo(f"wrote a synthetic phantom of {n} images in the shape of {like} to {p}")
    else:
        click.echo(f"wrote a synthetic phantom of {patients} patients to {p}")


@main.command()
@click.argument("data_dir", type=click.Path(file_okay=False, path_type=Path), default="data/chestxray14")
@click.option("--parts", default="all", show_default=True, help="Archives to fetch: 'all', or e.g. '1,2' or '3-5'.")
@click.option("--metadata-from", type=click.Path(file_okay=False, exists=True, path_type=Path),
              help="Copy the metadata files (Data_Entry, split lists, boxes) from this folder.")
@click.option("--metadata-url", multiple=True, metavar="NAME=URL",
              help="Fetch a metadata file from a URL, e.g. Data_Entry_2017_v2020.csv=https://...")
@click.option("--mirror", metavar="PART=URL", multiple=True, help="Fetch an archive from another URL.")
@click.option("--keep-archives", is_flag=True, help="Keep the .tar.gz files after extraction.")
@click.option("--quiet", is_flag=True)
def download(data_dir, parts, metadata_from, metadata_url, mirror, keep_archives, quiet):
    """Download and extract the NIH ChestX-ray14 image archives (resumable) and report what is present."""
    from ..data.download import download as run, format_report, parse_parts

    try:
        part_list = parse_parts(parts)
        murls = dict(kv.split("=", 1) for kv in metadata_url)
        urls = {int(k): v for k, v in (kv.split("=", 1) for kv in mirror)}
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    r = run(data_dir, part_list, urls=urls, metadata_urls=murls, metadata_from=metadata_from,
            keep_archives=keep_archives, progress=not quiet,
            log=lambda *a, **k: click.echo(" ".join(str(x) for x in a), err=True))
    click.echo(format_report(r))
    if any(isinstance(v, str) for v in r["parts"].values()):
        sys.exit(1)


# --------------------------------------------------------------------------
# Localization, follow-up differencing, report
# --------------------------------------------------------------------------

@main.command()
@click.argument("model_dir", type=click.Path(file_okay=False, exists=True, path_type=Path), callback=_check_model_dir)
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default="heatmaps", show_default=True)
@click.option("--labels", help="Comma-separated labels [the 3 highest-scoring of each image].")
@click.option("--top", type=int, default=3, show_default=True)
def localize(model_dir, images, out, labels, top):
    """Per-class heatmaps of images, overlaid in colour with their boxes (PNG)."""
    import cv2

    from ..data.chestxray14 import LABELS
    from ..io import list_images
    from ..evaluation.localization import boxes_from_heatmap, overlay, upsample
    from ..model.directory import load_model

    try:
        model = load_model(model_dir)
    except _library_errors() as exc:
        raise click.ClickException(str(exc)) from None
    encoding = getattr(getattr(model, "config", None), "encoding", "bow")
    if encoding != "bow":
        raise click.ClickException(f"{model_dir}: heatmaps are only available for bag-of-words models for now; "
                                   f"this model uses the {encoding!r} encoding")
    wanted = [l.strip() for l in labels.split(",")] if labels else None
    if wanted and set(wanted) - set(LABELS):
        raise click.BadParameter(f"unknown label(s) {sorted(set(wanted) - set(LABELS))}")
    out.mkdir(parents=True, exist_ok=True)
    n_fail = 0
    for p in list_images(images):
        try:
            img = model.preprocess(p)
        except _library_errors() as exc:
            click.echo(f"failed: {exc}", err=True)
            n_fail += 1
            continue
        heat = upsample(model.heatmaps(img), img.shape)
        scores = model.scores(img)
        chosen = wanted or [LABELS[j] for j in np.argsort(-scores)[:top]]
        for lab in chosen:
            h = heat[LABELS.index(lab)]
            f = out / f"{p.stem}_{lab}.png"
            cv2.imwrite(str(f), overlay(img, h, boxes=boxes_from_heatmap(h)))
            click.echo(f"{p.name}  {lab:<20} score {scores[LABELS.index(lab)]:+.3f}  -> {f}")
    if n_fail:
        sys.exit(1)


@main.command("localize-eval")
@click.argument("model_dir", type=click.Path(file_okay=False, exists=True, path_type=Path), callback=_check_model_dir)
@_DATA_ARG
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default="runs/localization",
              show_default=True)
@click.option("--threshold", type=float, default=0.5, show_default=True, help="Fraction of the heatmap maximum.")
@click.option("--name", default=None, help="Model name in the table.")
@click.option("--quiet", is_flag=True)
def localize_eval(model_dir, data_dir, out, threshold, name, quiet):
    """Accuracy at T(IoBB) and T(IoU), and false positives, against the NIH boxes."""
    from ..data.chestxray14 import ChestXray14
    from ..evaluation.localization import evaluate_localization, format_localization, write_localization_dir
    from ..model.directory import load_model

    try:
        model = load_model(model_dir)
        ds = ChestXray14(data_dir)
        res, ex = evaluate_localization(model, ds, threshold=threshold, progress=not quiet)
    except _library_errors() as exc:
        raise click.ClickException(str(exc)) from None
    if not res["n_images"]:
        raise click.ClickException(f"{data_dir}: no boxed image present (BBox_List_2017 lists test images)")
    write_localization_dir(out, res, ex, model_name=name or str(model_dir), kind=model.kind)
    for f in res.get("failures", []):
        click.echo(f"failed: {f['file']}: {f['reason']} ({f['boxes']} box(es) not scored)", err=True)
    click.echo(format_localization(res))
    click.echo(f"wrote {out / 'localization.json'}")


@main.command()
@click.argument("image_a", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("image_b", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--model", "model_dir", type=click.Path(file_okay=False, exists=True, path_type=Path),
              callback=_check_model_dir,
              help="A model for heatmap and score differences.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default="diff", show_default=True)
@click.option("--size", type=int, default=256, show_default=True)
@click.option("--motion", type=click.Choice(["affine", "euclidean", "translation"]), default="affine",
              show_default=True)
@click.option("--allow-different-patients", is_flag=True)
def diff(image_a, image_b, model_dir, out, size, motion, allow_different_patients):
    """What changed between two X-rays of one patient (earlier -> later)."""
    from ..followup.pairs import PairError, diff_pair, write_diff_dir

    kw = {}
    try:
        if model_dir:
            from ..model.directory import load_model

            model = load_model(model_dir)
            size = model.image_size
            kw = dict(heatmap_fn=model.heatmaps, score_fn=model.scores, preprocess=model.preprocess,
                      score_kind="probability" if getattr(model, "score_kind", "") == "probability" else "score")
        d = diff_pair(image_a, image_b, size=size, motion=motion, allow_different_patients=allow_different_patients,
                      **kw)
    except PairError as exc:
        raise click.ClickException(str(exc)) from None
    except _library_errors() as exc:
        raise click.ClickException(str(exc)) from None
    meta = write_diff_dir(out, d)
    r = meta["registration"]
    click.echo(f"earlier {meta['image_a']} -> later {meta['image_b']} (patient {meta['patient']})")
    click.echo(f"registration ({r['motion']}): ECC {r['ecc']:.3f}, converged {r['converged']}; "
               f"{meta['registration_quality']['text']}")
    click.echo(f"mean SSIM {meta['ssim_mean']:.3f}; mean |intensity change| {meta['intensity_diff_mean_abs']:.1f}")
    if meta["score_changes"]:
        ch = sorted(meta["score_changes"].items(), key=lambda kv: -abs(kv[1]["delta"]))
        for lab, c in ch[:5]:
            click.echo(f"  {lab:<20} {c['a']:+.3f} -> {c['b']:+.3f} ({c['delta']:+.3f})")
    click.echo(f"wrote {out}")


@main.command()
@click.argument("run_dirs", nargs=-1, type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default="report", show_default=True)
@click.option("--localization", "loc_dirs", multiple=True, type=click.Path(file_okay=False, exists=True,
                                                                           path_type=Path))
@click.option("--localisation", "loc_dirs_old", multiple=True, hidden=True,
              type=click.Path(file_okay=False, exists=True, path_type=Path))  # the 0.1 spelling
@click.option("--diff", "diff_dirs", multiple=True, type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--title", default="phow-baseline report", show_default=True)
def report(run_dirs, out, loc_dirs, loc_dirs_old, diff_dirs, title):
    """A self-contained static HTML report: AUROC tables, ROC curves, localization, follow-up dashboards."""
    from ..report.html import write_report

    loc_dirs = tuple(loc_dirs) + tuple(loc_dirs_old)

    if not (run_dirs or loc_dirs or diff_dirs):
        raise click.UsageError("give at least one run, --localization or --diff directory")
    try:
        p = write_report(run_dirs, out, loc_dirs, diff_dirs, title=title)
    except (FileNotFoundError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"wrote {p}")


class _LazyCnn(click.Group):
    """``phow-baseline cnn ...``: loads torch only when a cnn command runs."""

    def _group(self):
        try:
            from .cnn import cnn_group
        except ImportError as exc:
            raise click.ClickException(f"the cnn commands need the cnn extra (pip install 'phow-baseline[cnn]'): {exc}")
        return cnn_group

    def list_commands(self, ctx):
        return ["evaluate", "predict", "train"]

    def get_command(self, ctx, name):
        return self._group().get_command(ctx, name)


main.add_command(_LazyCnn("cnn", help="The CNN comparison (extra 'cnn': torch + torchvision)."))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
