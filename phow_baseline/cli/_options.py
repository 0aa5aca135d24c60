"""Arguments and options shared by the commands, with their choices and defaults taken from the library.

Nothing here repeats a library value: a choice list is a library constant
(:data:`phow_baseline.encoding.ENCODINGS`, :data:`phow_baseline.parallel.BACKENDS`,
...), a default is the library's own (a :class:`~phow_baseline.config.BaselineConfig`
field, a function's keyword default), and click shows it (``show_default``).
Both are read when first needed (a command's ``--help`` or its run), so that
``phow-baseline --help`` imports none of the numerical stack, and the ``cnn``
commands' help works without torch.

Old spellings of options (0.1, or before the names were made consistent)
are hidden aliases: accepted, not listed (:class:`Option`'s ``old_spellings``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import logging
from collections.abc import Callable
from pathlib import Path

import click

#: The ChestX-ray14 folder a command reads when none is given.
DEFAULT_DATA_DIR = "data/chestxray14"
#: Where the dataset-scale steps keep their caches when ``--work`` is not given.
DEFAULT_WORK_DIR = "runs/work"
#: ``ctx.meta`` key: True when progress bars are off (``--quiet``).
QUIET_KEY = "phow_baseline.quiet"


# --------------------------------------------------------------------------
# Library values, read when first needed
# --------------------------------------------------------------------------


def encoding_names() -> tuple:
    """The registered encodings (:data:`phow_baseline.encoding.ENCODINGS`)."""
    from ..encoding import ENCODINGS

    return ENCODINGS


def backend_names() -> tuple:
    """The parallel backends (:data:`phow_baseline.parallel.BACKENDS`)."""
    from ..parallel import BACKENDS

    return BACKENDS


def kernel_map_names() -> tuple:
    """The kernel maps (:data:`phow_baseline.classification.KERNEL_MAPS`)."""
    from ..classification import KERNEL_MAPS

    return KERNEL_MAPS


def solver_names() -> tuple:
    """The SVM solvers (:data:`phow_baseline.classification.SOLVERS`)."""
    from ..classification import SOLVERS

    return SOLVERS


def equalization_names() -> tuple:
    """The equalizations (:data:`phow_baseline.data.EQUALIZATIONS`)."""
    from ..data import EQUALIZATIONS

    return EQUALIZATIONS


def split_names() -> tuple:
    """The dataset's splits (:data:`phow_baseline.data.SPLITS`)."""
    from ..data import SPLITS

    return SPLITS


def dataset_names() -> tuple:
    """The registered dataset kinds, sorted (:data:`phow_baseline.data.DATASETS`)."""
    from ..data import DATASETS

    return tuple(sorted(DATASETS))


def uncertain_names() -> tuple:
    """What an uncertain label may become (:data:`phow_baseline.config.UNCERTAIN_POLICIES`)."""
    from ..config import UNCERTAIN_POLICIES

    return UNCERTAIN_POLICIES


def not_mentioned_names() -> tuple:
    """What a not-mentioned label may become (:data:`phow_baseline.config.NOT_MENTIONED_POLICIES`)."""
    from ..config import NOT_MENTIONED_POLICIES

    return NOT_MENTIONED_POLICIES


def motion_names() -> tuple:
    """The registration models (:data:`phow_baseline.followup.MOTIONS`)."""
    from ..followup import MOTIONS

    return tuple(MOTIONS)


def _n_bootstrap_default():
    from ..evaluation import DEFAULT_N_BOOTSTRAP

    return DEFAULT_N_BOOTSTRAP


def config_default(field: str) -> Callable[[], object]:
    """A loader of the default of :class:`~phow_baseline.config.BaselineConfig` field ``field``.

    Parameters
    ----------
    field : str
        A field name (``"n_words"``).

    Returns
    -------
    callable
        ``load() -> value`` (imports the config module when called).
    """

    def load():
        from ..config import BaselineConfig

        return {f.name: f.default for f in dataclasses.fields(BaselineConfig)}[field]

    return load


def keyword_default(load_function: Callable[[], Callable], name: str) -> Callable[[], object]:
    """A loader of the default of keyword ``name`` of a library function.

    Parameters
    ----------
    load_function : callable
        ``load_function() -> function`` (imports it when called).
    name : str
        The keyword.

    Returns
    -------
    callable
        ``load() -> value``.
    """
    return lambda: inspect.signature(load_function()).parameters[name].default


class LibraryChoice(click.Choice):
    """A :class:`click.Choice` whose choices are a library constant, loaded the first time they are needed.

    Parameters
    ----------
    load : callable
        ``load() -> tuple of str``: the library's names (it may import a module).
    extra : tuple of str
        Choices the command line adds before the library's (``"auto"`` for the solver, ``"none"``).
    needs_extra : bool
        The names come from an optional extra (torch): when ``load`` raises ImportError, any value is
        accepted as given, and the command, which needs the extra anyway, says what to install.
    """

    def __init__(self, load: Callable[[], tuple], extra: tuple = (), needs_extra: bool = False):
        self._load, self._extra, self._needs_extra, self._loaded = load, tuple(extra), needs_extra, None
        super().__init__((), case_sensitive=True)

    @property
    def choices(self) -> tuple:
        if self._loaded is None:
            try:
                self._loaded = (*self._extra, *self._load())
            except ImportError:
                if not self._needs_extra:
                    raise
                return ()
        return self._loaded

    @choices.setter
    def choices(self, value):  # click.Choice.__init__ assigns the (empty) choices: they are loaded instead
        pass

    def get_metavar(self, param, *args, **kwargs):  # click 8.2 added ctx
        return super().get_metavar(param, *args, **kwargs) if self.choices else "NAME"

    def convert(self, value, param, ctx):
        if not self.choices and self._needs_extra:
            return value
        return super().convert(value, param, ctx)


class Option(click.Option):
    """A click option with a default read from the library and hidden old spellings.

    Parameters
    ----------
    param_decls : sequence of str
        As :class:`click.Option` (the spellings shown, and the parameter name).
    library_default : callable, optional
        ``load() -> value``: the default, read when first needed (help or run) and shown by click.
    old_spellings : tuple of str
        Former names of the option (``("--out",)`` for ``--out-csv``): accepted, never listed.
    **kwargs
        As :class:`click.Option`.
    """

    def __init__(self, param_decls, *, library_default: Callable | None = None, old_spellings: tuple = (), **kwargs):
        super().__init__([*param_decls, *old_spellings], **kwargs)
        self.library_default = library_default
        self.old_spellings = tuple(old_spellings)

    def get_default(self, ctx, call: bool = True):
        if self.library_default is not None:
            return self.library_default()
        return super().get_default(ctx, call=call)

    @contextlib.contextmanager
    def _current_spellings(self):
        saved = self.opts
        self.opts = [o for o in self.opts if o not in self.old_spellings]
        try:
            yield
        finally:
            self.opts = saved

    def get_help_record(self, ctx):
        with self._current_spellings():
            return super().get_help_record(ctx)

    def get_error_hint(self, ctx):
        with self._current_spellings():
            return super().get_error_hint(ctx)


def option(*param_decls, **kwargs):
    """``click.option`` with :class:`Option` (``library_default``, ``old_spellings``)."""
    return click.option(*param_decls, cls=Option, **kwargs)


def apply(decorators):
    """One decorator applying ``decorators`` in the order listed (the first is the first in ``--help``)."""

    def decorate(f):
        for d in reversed(decorators):
            f = d(f)
        return f

    return decorate


# --------------------------------------------------------------------------
# Progress (--quiet) and the dask cluster
# --------------------------------------------------------------------------


def show_progress() -> bool:
    """Whether the running command shows progress bars (not with ``--quiet``).

    Returns
    -------
    bool
    """
    ctx = click.get_current_context(silent=True)
    return not (ctx is not None and ctx.meta.get(QUIET_KEY, False))


@contextlib.contextmanager
def dask_cluster(backend: str | None, n_jobs: int | None, scheduler: str | None):
    """A dask.distributed client for the block when ``backend`` is ``"dask"`` (else nothing).

    Parameters
    ----------
    backend : str or None
        The joblib backend of the command (``--backend``).
    n_jobs : int or None
        Workers of a local cluster (``--n-jobs``; -1: all cores).
    scheduler : str or None
        ``--scheduler ADDRESS`` of a running ``dask scheduler``; without it a LocalCluster.

    Yields
    ------
    None
        Every parallel step inside the block runs its tasks on that cluster (:mod:`phow_baseline.parallel`).
    """
    if scheduler and backend != "dask":
        raise click.BadParameter("--scheduler needs --backend dask", param_hint="'--scheduler'")
    if backend != "dask":
        yield
        return
    from ..parallel import dask_client

    with contextlib.ExitStack() as stack:
        try:
            client = stack.enter_context(dask_client(scheduler, n_workers=n_jobs))
        except (OSError, TimeoutError) as exc:
            raise click.ClickException(f"cannot reach the dask scheduler {scheduler or '(local)'}: {exc}") from None
        logging.getLogger("phow_baseline.cli").info(f"dask: {client}")
        yield


# --------------------------------------------------------------------------
# Arguments
# --------------------------------------------------------------------------


def data_dir_argument(**kwargs):
    """``DATA_DIR``: a dataset folder, or a CSV file for the plain-CSV kind (default ``data/chestxray14``)."""
    return click.argument("data_dir", type=click.Path(path_type=Path), default=DEFAULT_DATA_DIR, **kwargs)


def dataset_option(help="Kind of DATA_DIR [detected from its files when not given]."):
    """``--dataset KIND``: the kind of the dataset folder, one of the registered kinds; default detected."""
    return option("--dataset", type=LibraryChoice(dataset_names), default=None, help=help)


def dataset_options(labels: bool):
    """``--dataset``, ``--frontal-only/--all-views`` and, with ``labels``, the training label policy.

    Parameters
    ----------
    labels : bool
        Add ``--uncertain`` and ``--not-mentioned`` (the commands that train on labels).

    Returns
    -------
    list
        The option decorators (see :func:`apply`); they set the config fields of the same names.
    """
    return [
        dataset_option(),
        option(
            "--frontal-only/--all-views",
            "frontal_only",
            library_default=config_default("frontal_only"),
            help="Read the frontal images only (PA, AP), or every view.",
        ),
        *(
            [
                option(
                    "--uncertain",
                    type=LibraryChoice(uncertain_names),
                    library_default=config_default("uncertain"),
                    help="Uncertain training labels (CheXpert, MIMIC): negative (U-Zeros), positive (U-Ones) or "
                    "left out (U-Ignore: refused for now when the training images have any).",
                ),
                option(
                    "--not-mentioned",
                    type=LibraryChoice(not_mentioned_names),
                    library_default=config_default("not_mentioned"),
                    help="Blank (not mentioned) training labels: negative, or left out (refused for now when the "
                    "training images have any).",
                ),
            ]
            if labels
            else []
        ),
    ]


def check_model_dir(ctx, param, value):
    """A model directory must hold model.json; given a run's output folder, say where its model is."""
    if value is None:
        return value
    from ..model.directory import ModelFileError, model_json_path

    try:
        model_json_path(value)
    except ModelFileError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from None
    return value


def model_dir_argument():
    """``MODEL_DIR``: a model directory (``model.json``) of any kind."""
    return click.argument(
        "model_dir", type=click.Path(file_okay=False, exists=True, path_type=Path), callback=check_model_dir
    )


def out_folder_option(default: str | None, help: str, **kwargs):
    """``--out FOLDER``: where a command writes (always a folder)."""
    return option(
        "--out",
        "out",
        type=click.Path(file_okay=False, path_type=Path),
        default=default,
        metavar="FOLDER",
        help=help,
        **kwargs,
    )


def work_option():
    """``--work FOLDER``: the caches shared by vocab, encode, train and evaluate."""
    return option(
        "--work",
        type=click.Path(file_okay=False, path_type=Path),
        default=DEFAULT_WORK_DIR,
        metavar="FOLDER",
        help="Folder of the caches (image cache, vocabulary, feature shards); reruns resume from it.",
    )


def split_option(library_default=None, help="Split of the dataset."):
    """``--split``: one of the dataset's splits (``library_default``: a loader of its default, or none)."""
    return option("--split", type=LibraryChoice(split_names), library_default=library_default, help=help)


def n_bootstrap_option():
    """``--n-bootstrap``: bootstrap resamples of the AUROC intervals."""
    return option(
        "--n-bootstrap",
        type=click.IntRange(min=10),
        library_default=_n_bootstrap_default,
        help="Bootstrap resamples of the intervals.",
    )


def n_jobs_option(library_default=None, help="Parallel workers, -1 for all cores.", **kwargs):
    """``--n-jobs``: parallel workers (one spelling for every command)."""
    return option("--n-jobs", "n_jobs", type=int, library_default=library_default, help=help, **kwargs)


def backend_options(n_jobs_default=None):
    """``--n-jobs``, ``--backend`` and ``--scheduler``: where the parallel steps run.

    Parameters
    ----------
    n_jobs_default : callable, optional
        A loader of the command's default number of workers.

    Returns
    -------
    list
        The three option decorators (see :func:`apply`).
    """
    return [
        n_jobs_option(n_jobs_default),
        option(
            "--backend",
            type=LibraryChoice(backend_names),
            library_default=config_default("backend"),
            help="joblib backend of the parallel steps [joblib's own when not given]; 'dask' runs them on a "
            "dask.distributed cluster.",
        ),
        option(
            "--scheduler",
            metavar="ADDRESS",
            help="dask scheduler address (with --backend dask) [a LocalCluster of --n-jobs workers when not given].",
        ),
    ]


# --------------------------------------------------------------------------
# The baseline's settings (vocab, encode, train, run)
# --------------------------------------------------------------------------

#: Options that set a BaselineConfig field of the same name (their parameter name).
CONFIG_FIELDS = (
    "size",
    "equalization",
    "encoding",
    "n_words",
    "max_descriptors",
    "vocab_images",
    "kernel_map",
    "C",
    "class_weight",
    "solver",
    "n_epochs",
    "calibration_folds",
    "train_split",
    "seed",
    "n_jobs",
    "backend",
    "dataset",
    "frontal_only",
    "uncertain",
    "not_mentioned",
)


def preset_names() -> tuple:
    """The names of :data:`phow_baseline.config.PRESETS`."""
    from ..config import PRESETS

    return tuple(PRESETS)


def _preset_notes() -> dict:
    from ..config import PRESET_NOTES

    return PRESET_NOTES


def _class_weight_default():
    value = config_default("class_weight")()
    return "none" if value is None else value


def baseline_options(svm: bool):
    """The options of the baseline's commands; each given one overrides ``--config``.

    Parameters
    ----------
    svm : bool
        Add the SVM stage's options (train, run); vocab and encode have none, which would do nothing there.

    Returns
    -------
    callable
        A decorator adding the options.
    """
    svm_opts = (
        [
            option(
                "--kernel-map",
                type=LibraryChoice(kernel_map_names),
                library_default=config_default("kernel_map"),
                help="Kernel map before the linear SVMs (bag of words only).",
            ),
            option("--C", "C", type=float, library_default=config_default("C"), help="SVM regularization C, > 0."),
            option(
                "--class-weight",
                type=click.Choice(("none", "balanced")),
                library_default=_class_weight_default,
                help="Weights of the positives and negatives of each class.",
            ),
            option(
                "--solver",
                type=LibraryChoice(solver_names, extra=("auto",)),
                library_default=config_default("solver"),
                help="SVM solver; auto: liblinear in memory when it fits, else out-of-core SDCA "
                "(stopped on the duality gap).",
            ),
            option(
                "--epochs",
                "n_epochs",
                type=int,
                library_default=config_default("n_epochs"),
                help="Epochs of the SGD solver.",
            ),
            option(
                "--calibration-folds",
                "calibration_folds",
                type=int,
                library_default=config_default("calibration_folds"),
                help="Patient-wise folds whose out-of-fold scores fit the Platt scaling and operating points "
                "(1: the single 10% validation carve).",
            ),
        ]
        if svm
        else []
    )
    return apply(
        [
            option(
                "--config",
                "config_file",
                type=click.Path(dir_okay=False, exists=True, path_type=Path),
                metavar="FILE",
                help="JSON file of BaselineConfig settings (the options given override it).",
            ),
            option(
                "--preset",
                type=LibraryChoice(preset_names),
                help="Named configuration (the options given override it; not with --config): "
                + "; ".join(f"{k}: {v}" for k, v in _preset_notes().items())
                + ".",
            ),
            option("--size", type=int, library_default=config_default("size"), help="Image side in pixels."),
            option(
                "--equalization",
                type=LibraryChoice(equalization_names),
                library_default=config_default("equalization"),
                help="Histogram equalization of the image.",
            ),
            option(
                "--encoding",
                type=LibraryChoice(encoding_names),
                library_default=config_default("encoding"),
                help="Image encoding: bag of words, improved Fisher vectors or VLAD; their settings "
                "(fv_components, fv_pca_dims, vlad_words, regions) via --config.",
            ),
            option(
                "--n-words",
                type=int,
                library_default=config_default("n_words"),
                help="Visual words of the bag of words.",
            ),
            option(
                "--max-descriptors",
                type=int,
                library_default=config_default("max_descriptors"),
                help="Descriptors sampled to fit the vocabulary.",
            ),
            option(
                "--vocab-images",
                type=int,
                library_default=config_default("vocab_images"),
                help="Training images sampled for the vocabulary.",
            ),
            *svm_opts,
            option(
                "--train-split",
                type=LibraryChoice(split_names),
                library_default=config_default("train_split"),
                help="Split the vocabulary and the SVMs are fitted on.",
            ),
            option("--seed", type=int, library_default=config_default("seed"), help="Seed of every random choice."),
            *dataset_options(labels=svm),
            *backend_options(n_jobs_default=config_default("n_jobs")),
        ]
    )


def config_from_options(ctx: click.Context, values: dict):
    """The :class:`~phow_baseline.config.BaselineConfig` of a command: ``--config`` and the options given.

    Parameters
    ----------
    ctx : click.Context
        The command's context (which options were given on the command line).
    values : dict
        The command's parameters; the config's (:data:`CONFIG_FIELDS` and ``config_file``) are removed.

    Returns
    -------
    BaselineConfig
        Checked when built: a bad value raises :class:`~phow_baseline.config.ConfigError`, reported as a
        usage error naming the option; a bad config file raises an error naming the file.
    """
    from click.core import ParameterSource

    from ..config import BaselineConfig

    config_file = values.pop("config_file", None)
    preset = values.pop("preset", None)
    if preset is not None and config_file is not None:
        raise click.UsageError("--preset and --config cannot be combined: give one, and options on top of it")
    given = {}
    detect = False
    if values.get("dataset", "") is None:  # --dataset not given: detected, unless the config file names a kind
        from ..io import read_json

        detect = config_file is None or "dataset" not in read_json(config_file, what="config file")
    for field in CONFIG_FIELDS:
        if field not in values:
            continue
        value = values.pop(field)
        if ctx.get_parameter_source(field) not in (ParameterSource.DEFAULT, ParameterSource.DEFAULT_MAP):
            given[field] = None if (field == "class_weight" and value == "none") else value
    if detect:
        given["dataset"] = "auto"
    if preset is not None:
        return BaselineConfig.from_preset(preset, **given)
    if config_file is None:
        return BaselineConfig(**given)
    config = BaselineConfig.from_file(config_file, **{k: v for k, v in given.items() if v is not None})
    if "class_weight" in given and given["class_weight"] is None:
        config = dataclasses.replace(config, class_weight=None)
    return config
