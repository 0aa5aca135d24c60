"""The command line fails fast and clearly: bad values are refused before any work with one
line naming the option, environmental errors end in one line naming the path (no traceback),
and help works (defaults stated; the cnn commands' help without torch)."""

import errno
import json
import os
import pathlib
import subprocess
import sys
import textwrap

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from phow_baseline.cli import main as cli
from phow_baseline.config import BaselineConfig, ConfigError


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def one_error_line(res):
    """The single ``Error: ...`` line of a failed command (and no traceback anywhere)."""
    assert res.exit_code != 0, res.output
    assert "Traceback" not in res.output
    assert not isinstance(res.exception, Exception) or isinstance(res.exception, SystemExit), res.exception
    lines = [ln for ln in res.output.splitlines() if ln.startswith("Error:")]
    assert len(lines) == 1, res.output
    return lines[0]


# --------------------------------------------------------------------------
# Every config value is checked when the config is built
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "field, value",
    [
        ("C", 0),
        ("C", -1.0),
        ("C", float("nan")),
        ("n_words", 0),
        ("n_words", 1),
        ("n_words", "600"),
        ("max_descriptors", 10),
        ("vocab_images", 0),
        ("size", 16),
        ("sizes", ()),
        ("sizes", (0, 4)),
        ("step", 0),
        ("magnif", 0),
        ("window_size", -1),
        ("contrast_threshold", -0.1),
        ("grids", ()),
        ("weighting", "x"),
        ("kernel_map", "rbf"),
        ("class_weight", "auto"),
        ("solver", "lbfgs"),
        ("n_epochs", 0),
        ("train_split", "training"),
        ("test_split", "x"),
        ("val_fraction", 0),
        ("val_fraction", 1.5),
        ("seed", -1),
        ("n_jobs", 0),
        ("n_jobs", 1.5),
        ("backend", "spark"),
        ("shard_size", 0),
        ("equalization", "hist"),
    ],
)
def test_config_rejects_each_bad_value_when_built(field, value):
    with pytest.raises(ConfigError) as e:
        BaselineConfig(**{field: value})
    assert e.value.field == field and field in str(e.value)


def test_config_accepts_its_defaults_and_the_edges():
    BaselineConfig()
    BaselineConfig(
        n_words=2,
        max_descriptors=2,
        size=31,
        C=1e-6,
        n_jobs=1,
        seed=0,
        backend="dask",
        contrast_threshold=0,
        val_fraction=0.5,
        equalization="none",
    )


@pytest.mark.parametrize(
    "args, option",
    [
        (["run", "--C", "0"], "--C"),
        (["run", "--n-words", "0"], "--n-words"),
        (["vocab", "--n-words", "1"], "--n-words"),
        (["encode", "--size", "8"], "--size"),
        (["train", "--seed", "-3"], "--seed"),
        (["run", "--n-jobs", "0"], "--n-jobs"),
        (["run", "--max-descriptors", "5"], "--max-descriptors"),
    ],
)
def test_bad_option_values_are_refused_before_any_work(sample_dir, tmp_path, args, option):
    out = tmp_path / "out"
    extra = ["--out", out] if args[0] == "run" else ["--work", out]
    res = invoke(*args[:1], sample_dir, *args[1:], *extra)
    assert res.exit_code == 2, res.output  # a usage error
    line = one_error_line(res)
    assert f"Invalid value for '{option}'" in line, line
    assert not out.exists()  # nothing was cached, extracted or written
    assert "vocabulary:" not in res.output  # not even the first step's line (it was "k-means, 0 words")


def test_a_bad_value_in_a_config_file_names_the_file(sample_dir, tmp_path):
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"C": 0}))
    line = one_error_line(invoke("run", sample_dir, "--config", cfg, "--out", tmp_path / "o"))
    assert str(cfg) in line and "C must be" in line
    cfg.write_text("{not json")
    line = one_error_line(invoke("run", sample_dir, "--config", cfg, "--out", tmp_path / "o"))
    assert str(cfg) in line
    assert not (tmp_path / "o").exists()


# --------------------------------------------------------------------------
# Environmental errors: one line naming the path
# --------------------------------------------------------------------------


@pytest.fixture
def read_only(monkeypatch, tmp_path):
    """Make everything under ``tmp_path/ro`` behave as a read-only file system (EROFS)."""
    root = tmp_path / "ro"
    real_mkdir = pathlib.Path.mkdir

    def mkdir(self, *a, **k):
        if str(self).startswith(str(root)):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))
        return real_mkdir(self, *a, **k)

    monkeypatch.setattr(pathlib.Path, "mkdir", mkdir)
    return root


@pytest.mark.parametrize("command", ["demo", "phantom", "run", "report"])
def test_read_only_out_is_one_line(command, read_only, sample_dir, tmp_path):
    out = read_only / "out"
    if command == "demo":
        args = ["demo", "--out", out, "--quiet"]
    elif command == "phantom":
        args = ["phantom", out]
    elif command == "run":
        args = ["run", sample_dir, "--out", out, "--quiet"]
    else:
        from phow_baseline.evaluation import write_run_dir

        rng = np.random.default_rng(0)
        run = tmp_path / "run"
        write_run_dir(
            run,
            model_name="m",
            kind="phow",
            split="test",
            names=[f"{i}.png" for i in range(40)],
            y_true=rng.integers(0, 2, (40, 14)),
            scores=rng.normal(size=(40, 14)),
            n_bootstrap=10,
        )
        args = ["report", run, "--out", out]
    line = one_error_line(invoke(*args))
    assert str(read_only) in line and "Read-only file system" in line, line


@pytest.mark.parametrize(
    "out, reason",
    [
        ("/sys/phow-baseline-test/out", "Operation not permitted"),
        ("/proc/phow-baseline-test/out", "No such file or directory"),
    ],
)
def test_unwritable_out_in_a_real_process(out, reason, tmp_path):
    """The installed entry point, in its own process: one line naming the path, exit 1."""
    if os.path.exists(os.path.dirname(out)):
        pytest.skip(f"{os.path.dirname(out)} exists here")
    r = subprocess.run(
        [sys.executable, "-m", "phow_baseline.cli", "phantom", out, "--patients", "20"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 1, r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("Error: /")
    assert reason in r.stderr and "phow-baseline-test" in r.stderr, r.stderr


# --------------------------------------------------------------------------
# predict: model paths, output folders, inputs without images
# --------------------------------------------------------------------------


@pytest.fixture
def run_folder(tmp_path):
    """A run's output folder (OUT/model, OUT/run) with a placeholder model.json."""
    out = tmp_path / "OUT"
    (out / "model").mkdir(parents=True)
    (out / "run").mkdir()
    (out / "model" / "model.json").write_text("{}")
    img = tmp_path / "x.png"
    cv2.imwrite(str(img), np.zeros((64, 64), np.uint8))
    return out, img


@pytest.mark.parametrize("given", ["OUT", "OUT/run"])
@pytest.mark.parametrize("command", ["predict", "evaluate", "localize", "localize-eval"])
def test_a_run_folder_as_model_says_where_the_model_is(run_folder, given, command, sample_dir):
    out, img = run_folder
    path = out if given == "OUT" else out / "run"
    second = sample_dir if command in ("evaluate", "localize-eval") else img
    res = invoke(command, path, second)
    assert res.exit_code == 2, res.output
    line = one_error_line(res)
    assert f"the model of this run is in {out / 'model'}" in line, line


def test_diff_model_option_says_where_the_model_is(run_folder):
    out, img = run_folder
    res = invoke("diff", img, img, "--model", out)
    assert res.exit_code == 2 and f"the model of this run is in {out / 'model'}" in res.output, res.output


def test_invalid_model_json_names_the_file(tmp_path, run_folder):
    _, img = run_folder
    m = tmp_path / "m"
    m.mkdir()
    (m / "model.json").write_text("{not json")
    line = one_error_line(invoke("predict", m, img, "--out", tmp_path / "p.csv"))
    assert str(m / "model.json") in line, line


def test_predict_unwritable_out_fails_before_loading_the_model(run_folder):
    out, img = run_folder
    res = invoke("predict", out / "model", img, "--out", "/sys/phow-baseline-test/p.csv")
    line = one_error_line(res)
    assert res.exit_code == 1 and line.startswith("Error: /sys/phow-baseline-test") and "not permitted" in line


def test_predict_on_a_folder_without_images_fails(run_folder, tmp_path):
    out, _ = run_folder
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no images here")
    res = invoke("predict", out / "model", empty, "--out", tmp_path / "p.csv")
    line = one_error_line(res)
    assert res.exit_code == 1 and "no images to score" in line and str(empty) in line
    assert not (tmp_path / "p.csv").exists()


@pytest.mark.slow
def test_predict_makes_the_out_folder_and_fails_when_nothing_scores(sample_run, sample_images, tmp_path):
    out_dir, _ = sample_run
    csv = tmp_path / "new" / "folder" / "preds.csv"
    res = invoke("predict", out_dir / "model", sample_images[0], sample_images[1], "--out", csv, "--quiet")
    assert res.exit_code == 0, res.output
    assert len(csv.read_text().strip().splitlines()) == 3  # header + 2 images
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.png").write_bytes(b"not a png")
    res = invoke("predict", out_dir / "model", bad, "--out", tmp_path / "b.csv", "--quiet")
    assert res.exit_code == 1, res.output
    assert "scored 0 image(s), 1 failure(s)" in res.output and "no image could be scored" in res.output


# --------------------------------------------------------------------------
# Help
# --------------------------------------------------------------------------

SVM_OPTIONS = ("--C", "--class-weight", "--solver", "--kernel-map")


@pytest.mark.parametrize("command, svm", [("vocab", False), ("encode", False), ("train", True), ("run", True)])
def test_each_command_shows_only_its_own_options(command, svm):
    res = invoke(command, "--help")
    assert res.exit_code == 0
    shown = [o for o in SVM_OPTIONS if f"  {o} " in res.output]
    assert shown == (list(SVM_OPTIONS) if svm else []), (command, shown)
    assert "--n-words" in res.output and "--seed" in res.output


@pytest.mark.parametrize("command", ["info", "vocab", "encode", "train", "evaluate", "run", "localize-eval"])
def test_help_states_the_data_dir_default(command):
    res = invoke(command, "--help")
    assert res.exit_code == 0
    assert "DATA_DIR defaults to data/chestxray14." in res.output, res.output


def test_help_states_option_defaults():
    out = " ".join(invoke("run", "--help").output.split())  # as one line: help text wraps
    for text in ("[default: runs/phow]", "[default: 1000; x>=10]", "[default: 600]", "[default: 10]", "[default: -1]"):
        assert text in out, text
    assert "[default: runs/work]" in invoke("vocab", "--help").output


BLOCK_TORCH = textwrap.dedent("""
    import sys

    class BlockTorch:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("torch", "torchvision"):
                raise ModuleNotFoundError(f"No module named {name!r}")

    sys.meta_path.insert(0, BlockTorch())
    from phow_baseline.cli import main
    main(sys.argv[1:], prog_name="phow-baseline")
""")


def without_torch(*args):
    return subprocess.run(
        [sys.executable, "-c", BLOCK_TORCH, *map(str, args)], capture_output=True, text=True, timeout=120
    )


def test_cnn_help_works_without_torch():
    r = without_torch("cnn", "--help")
    assert r.returncode == 0, r.stderr
    assert all(c in r.stdout for c in ("train", "evaluate", "predict"))
    r = without_torch("cnn", "train", "--help")
    assert r.returncode == 0 and "--backbone" in r.stdout, r.stderr


def test_cnn_commands_without_torch_say_what_to_install(sample_dir, tmp_path):
    r = without_torch("cnn", "train", sample_dir, "--out", tmp_path / "cnn")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    assert r.stderr.endswith("\n") and r.stderr.count("Error:") == 1, repr(r.stderr)
    assert "pip install -e '.[cnn]'" in r.stderr and "No module named 'torch" in r.stderr
    assert not (tmp_path / "cnn").exists()


def test_no_help_shows_an_internal_marker_as_a_default():
    """Every command's --help states real defaults only (click's 'unset' sentinel never leaks)."""
    from click.testing import CliRunner

    from phow_baseline.cli import main

    names = [n for n in main.list_commands(None) if n != "cnn"]
    for name in names:
        res = CliRunner().invoke(main, [name, "--help"])
        assert res.exit_code == 0, (name, res.output)
        assert "Sentinel" not in res.output and "UNSET" not in res.output and "(dynamic)" not in res.output, (
            name,
            res.output,
        )


def test_old_spellings_still_work_but_are_not_listed(tmp_path):
    """Commands and options were renamed to one spelling (-ize); the 0.1 names stay as hidden aliases,
    and a localisation.json written by 0.1 is still read."""
    from click.testing import CliRunner

    from phow_baseline.cli import main
    from phow_baseline.evaluation.localization import localization_file

    listing = CliRunner().invoke(main, ["--help"]).output
    assert "localize-eval" in listing and "localise" not in listing
    for old, new in (("localise", "localize"), ("localise-eval", "localize-eval")):
        a = CliRunner().invoke(main, [old, "--help"])
        b = CliRunner().invoke(main, [new, "--help"])
        assert a.exit_code == 0 and a.output.replace(old, new) == b.output
    assert "--localisation" not in CliRunner().invoke(main, ["report", "--help"]).output
    (tmp_path / "localisation.json").write_text("{}")
    assert localization_file(tmp_path).name == "localisation.json"
    (tmp_path / "localization.json").write_text("{}")
    assert localization_file(tmp_path).name == "localization.json"


# --------------------------------------------------------------------------
# One spelling per option; the old ones are hidden aliases
# --------------------------------------------------------------------------


def _command(*path):
    """The click command at ``path`` under the group (``("cnn", "train")``)."""
    from phow_baseline.cli import main

    cmd = main
    for name in path:
        cmd = cmd.get_command(None, name)
    return cmd


@pytest.mark.parametrize(
    "path, old, new, args, name, value",
    [
        (("predict",), "--out", "--out-csv", ["M", "x.png"], "out_csv", pathlib.Path("p.csv")),
        (("info",), "--json", "--out-json", [], "out_json", pathlib.Path("p.csv")),
        (("report",), "--localisation", "--localization", [], "localization_dirs", None),
        (("cnn", "train"), "--workers", "--n-jobs", [], "n_jobs", 3),
    ],
)
def test_old_option_spellings_parse_as_the_new_ones_and_are_not_listed(tmp_path, path, old, new, args, name, value):
    cmd = _command(*path)
    if name == "localization_dirs":
        value = (tmp_path,)
        given = str(tmp_path)
    else:
        given = str(value)
    if path == ("predict",):
        (tmp_path / "M").mkdir()
        (tmp_path / "M" / "model.json").write_text("{}")
        args = [str(tmp_path / "M"), "x.png"]
    for spelling in (old, new):
        ctx = cmd.make_context(path[-1], [*args, spelling, given])
        assert ctx.params[name] == value, spelling
    help_text = invoke(*path, "--help").output
    assert f"{new} " in help_text and f"{old} " not in help_text and f"{old}," not in help_text


def test_cnn_predict_is_predict():
    assert _command("cnn", "predict") is _command("predict")
    assert "predict" in invoke("cnn", "--help").output


def test_no_cnn_help_shows_an_internal_marker_as_a_default():
    for name in ("train", "evaluate", "predict"):
        res = invoke("cnn", name, "--help")
        assert res.exit_code == 0, (name, res.output)
        assert "Sentinel" not in res.output and "UNSET" not in res.output and "dynamic" not in res.output


# --------------------------------------------------------------------------
# Choices and defaults come from the library
# --------------------------------------------------------------------------


def _option(path, name):
    return next(p for p in _command(*path).params if p.name == name)


def test_choices_are_the_library_constants():
    from phow_baseline.classification import KERNEL_MAPS, SOLVERS
    from phow_baseline.data import EQUALIZATIONS, SPLITS
    from phow_baseline.encoding import ENCODINGS
    from phow_baseline.parallel import BACKENDS

    assert "sequential" in BACKENDS  # the value the 0.1 command line refused
    for path in (("run",), ("vocab",), ("predict",)):
        assert tuple(_option(path, "backend").type.choices) == BACKENDS
    for path in (("run",), ("encode",), ("demo",)):
        assert tuple(_option(path, "encoding").type.choices) == tuple(ENCODINGS)
    assert tuple(_option(("train",), "kernel_map").type.choices) == KERNEL_MAPS
    assert tuple(_option(("train",), "solver").type.choices) == ("auto", *SOLVERS)
    assert tuple(_option(("run",), "equalization").type.choices) == EQUALIZATIONS
    assert tuple(_option(("cnn", "train"), "equalization").type.choices) == EQUALIZATIONS
    assert tuple(_option(("encode",), "split").type.choices) == SPLITS
    assert tuple(_option(("cnn", "evaluate"), "split").type.choices) == SPLITS


def _help_of(path, name) -> str:
    """The help text of one option as ``--help`` shows it (with its ``[default: ...]``)."""
    cmd = _command(*path)
    ctx = cmd.make_context(path[-1], [], resilient_parsing=True, show_default=True)
    return _option(path, name).get_help_record(ctx)[1]


@pytest.mark.parametrize(
    "option",
    [
        "size",
        "equalization",
        "encoding",
        "n_words",
        "max_descriptors",
        "vocab_images",
        "kernel_map",
        "C",
        "solver",
        "n_epochs",
        "train_split",
        "seed",
        "n_jobs",
    ],
)
def test_baseline_option_defaults_are_the_configs(option):
    import dataclasses

    default = {f.name: f.default for f in dataclasses.fields(BaselineConfig)}[option]
    assert _option(("run",), option).get_default(None) == default
    assert _help_of(("run",), option).endswith(f"[default: {default}]")


@pytest.mark.cnn
def test_cnn_option_defaults_are_the_cnn_configs():
    import dataclasses

    from phow_baseline.cnn.models import BACKBONES
    from phow_baseline.cnn.train import LOSSES, CnnConfig

    defaults = {f.name: f.default for f in dataclasses.fields(CnnConfig)}
    for name, field in (
        ("backbone", "backbone"),
        ("epochs", "epochs"),
        ("n_jobs", "workers"),
        ("lr", "lr"),
        ("crop", "crop"),
        ("cache_size", "cache_size"),
        ("max_steps_per_epoch", "max_steps_per_epoch"),
    ):
        assert _option(("cnn", "train"), name).get_default(None) == defaults[field], name
    assert _help_of(("cnn", "train"), "backbone").endswith(f"[default: {defaults['backbone']}]")
    assert tuple(_option(("cnn", "train"), "backbone").type.choices) == BACKBONES
    assert tuple(_option(("cnn", "train"), "loss").type.choices) == LOSSES


def test_a_choice_from_the_library_refuses_other_values(sample_dir, tmp_path):
    res = invoke("vocab", sample_dir, "--work", tmp_path / "w", "--encoding", "sift")
    assert res.exit_code == 2 and "Invalid value for '--encoding'" in one_error_line(res)
    assert not (tmp_path / "w").exists()


# --------------------------------------------------------------------------
# --quiet / --verbose, and library errors in one place
# --------------------------------------------------------------------------


@pytest.fixture
def progress_probe():
    """A command added to the group for the test: it prints whether it would show progress bars."""
    import click

    from phow_baseline.cli import main
    from phow_baseline.cli._group import Command
    from phow_baseline.cli._options import show_progress

    @click.command("probe-progress", cls=Command)
    def probe():
        click.echo(f"progress={show_progress()}")

    main.add_command(probe)
    yield
    main.commands.pop("probe-progress")


@pytest.mark.parametrize(
    "before, after, level, progress",
    [
        ([], [], "INFO", True),
        (["--quiet"], [], "WARNING", False),
        (["-q"], [], "WARNING", False),
        (["--verbose"], [], "DEBUG", True),
        (["-v"], [], "DEBUG", True),
        ([], ["--quiet"], "INFO", False),  # the 0.1 spelling, after the command: no bars, the notes still shown
    ],
)
def test_quiet_and_verbose_set_the_log_level_and_the_progress_bars(progress_probe, before, after, level, progress):
    import logging

    res = invoke(*before, "probe-progress", *after)
    assert res.exit_code == 0, res.output
    assert f"progress={progress}" in res.output
    assert logging.getLevelName(logging.getLogger("phow_baseline").level) == level


def test_quiet_and_verbose_exclude_each_other():
    res = invoke("--quiet", "--verbose", "info")
    assert res.exit_code == 2 and "exclude each other" in res.output


def test_notes_go_to_stderr_unless_quiet(sample_dir, tmp_path):
    import tarfile

    archive = tmp_path / "images_001.tar.gz"
    image = sorted((sample_dir / "images").glob("*.png"))[0]
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(image, arcname=f"images/{image.name}")
    args = ["download", tmp_path / "d", "--parts", "1", "--mirror", f"1={archive.as_uri()}"]
    loud = CliRunner().invoke(cli, [str(a) for a in args])
    assert loud.exit_code == 0, loud.output
    assert "images_001.tar.gz: 1 images in" in loud.stderr  # the downloader's note, through the log
    quiet = CliRunner().invoke(cli, ["--quiet", *map(str, args)])
    assert quiet.exit_code == 0, quiet.output
    assert "images in" not in quiet.stderr and "images_001.tar.gz: 1 images" in quiet.stdout  # the summary stays


def test_verbose_shows_the_traceback_behind_a_one_line_error(tmp_path):
    res = invoke("--verbose", "info", tmp_path / "nowhere")
    assert res.exit_code == 1
    assert res.output.strip().splitlines()[-1] == f"Error: {tmp_path / 'nowhere'}: dataset folder not found"
    assert "Traceback" in res.output and "DatasetError" in res.output
    assert "Traceback" not in invoke("info", tmp_path / "nowhere").output


def test_a_full_disk_is_one_line_naming_the_path(monkeypatch, tmp_path):
    out = tmp_path / "full" / "out"
    real_mkdir = pathlib.Path.mkdir

    def mkdir(self, *a, **k):
        if str(self).startswith(str(tmp_path / "full")):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))
        return real_mkdir(self, *a, **k)

    monkeypatch.setattr(pathlib.Path, "mkdir", mkdir)
    line = one_error_line(invoke("phantom", out, "--patients", "20", "--size", "64"))
    assert line.startswith(f"Error: {tmp_path / 'full'}") and line.endswith(": no space left on device"), line


def test_a_bug_keeps_its_traceback(monkeypatch, sample_dir):
    """Only library errors become one line: anything else (here a KeyError) is a bug and stays visible."""
    from phow_baseline.data import ChestXray14

    def broken(self):
        raise KeyError("bug")

    monkeypatch.setattr(ChestXray14, "summary", broken)
    res = invoke("info", sample_dir)
    assert res.exit_code == 1 and isinstance(res.exception, KeyError)
