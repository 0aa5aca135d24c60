"""Every command through the real command line (``phow_baseline.cli.main``), x every encoding, x every model kind.

On one tiny phantom (20 patients, 64 px) with the smallest settings that
work (8 words, 4 Gaussians, 4 VLAD words; a 1-epoch DenseNet-121 from
scratch on 32 px crops), each test runs a command as a user would and checks
its exit status and the files it writes: the caches of ``vocab`` and
``encode``, ``model.json``, ``metrics.json``, the predictions CSV, the
localization and diff directories, the report's ``index.html``.  A command
that cannot apply (heatmaps of a Fisher-vector or VLAD model, ``evaluate`` of
a CNN) must end in one line saying why.

The steps each command needs are made once per module (:class:`Workspace`),
whichever test asks first, so that any test can run alone.
"""

import json
import re
import tarfile
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from phow_baseline.cli import main

ENCODINGS = ("bow", "fisher", "vlad")
#: Every model kind: a PHOW model per encoding, and the CNN (the cnn extra).
MODEL_KINDS = [*(pytest.param(e, id=f"phow-{e}") for e in ENCODINGS), pytest.param("cnn", marks=pytest.mark.cnn)]
WITH_HEATMAPS = {"bow", "cnn"}

#: The smallest baseline that runs: the encodings' own settings come through --config.
TINY_CONFIG = {
    "size": 64,
    "max_descriptors": 1000,
    "vocab_images": 12,
    "n_jobs": 1,
    "fv_components": 4,
    "fv_pca_dims": 16,
    "gmm_max_iter": 5,
    "vlad_words": 4,
    "calibration_folds": 2,  # cross-fitted, but two folds: calibration itself is tested in test_crossfit.py
}
TINY_OPTIONS = ["--n-words", "8"]  # an option on top of the file
TINY_CNN = [
    "--backbone",
    "densenet121",
    "--epochs",
    "1",
    "--max-steps",
    "1",
    "--batch-size",
    "4",
    "--cache-size",
    "64",
    "--resize",
    "40",
    "--crop",
    "32",
    "--n-jobs",
    "0",
    "--device",
    "cpu",
]
N_BOOTSTRAP = ["--n-bootstrap", "10"]
LABELS_COLUMNS = 15  # Image Index + 14 labels


def cli(*args, exit_code=0):
    """Run ``phow-baseline --quiet ARGS`` in this process; check the exit status (and that nothing crashed)."""
    res = CliRunner().invoke(main, ["--quiet", *map(str, args)])
    assert res.exit_code == exit_code, res.output
    assert "Traceback" not in res.output
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    return res


def one_error_line(res) -> str:
    """The single ``Error:`` line of a failed command."""
    lines = [ln for ln in res.output.splitlines() if ln.startswith("Error:")]
    assert len(lines) == 1, res.output
    return lines[0]


class Workspace:
    """The phantom and every command's outputs, each made once (by whichever test needs it first)."""

    def __init__(self, root: Path):
        self.root = root
        self._made = {}
        self.torch_threads = None  # torch's thread count before the CNN commands, restored after the module
        self.config = root / "tiny.json"
        self.config.write_text(json.dumps(TINY_CONFIG))
        self.phantom_result = cli("phantom", root / "phantom", "--patients", 20, "--size", 64, "--followups", 2)
        self.data = root / "phantom"

    def once(self, key, make):
        if key not in self._made:
            self._made[key] = make()
        return self._made[key]

    @property
    def images(self) -> list[Path]:
        return sorted((self.data / "images").glob("*.png"))

    @property
    def followup_pair(self) -> tuple[Path, Path]:
        return self.data / "images" / "00000001_001.png", self.data / "images" / "00000001_002.png"

    # -- the PHOW steps, per encoding -----------------------------------------------------------
    def work(self, encoding) -> Path:
        return self.root / f"work-{encoding}"

    def _baseline(self, encoding):
        return ["--config", self.config, "--encoding", encoding, *TINY_OPTIONS]

    def vocab(self, encoding):
        return self.once(
            ("vocab", encoding),
            lambda: cli("vocab", self.data, "--work", self.work(encoding), *self._baseline(encoding)),
        )

    def encode(self, encoding):
        self.vocab(encoding)
        return self.once(
            ("encode", encoding),
            lambda: cli(
                "encode", self.data, "--work", self.work(encoding), "--split", "test", *self._baseline(encoding)
            ),
        )

    def model(self, kind) -> Path:
        """The model directory of ``kind`` (a PHOW encoding, or "cnn"), trained once."""
        if kind == "cnn":
            import torch

            # one thread: a DenseNet on 32 px inputs gains nothing from more, and on a busy machine its
            # threads wait for each other (6x slower on 2 shared cores)
            self.torch_threads = self.torch_threads or torch.get_num_threads()
            torch.set_num_threads(1)
            out = self.root / "cnn"
            self.once("cnn train", lambda: cli("cnn", "train", self.data, "--out", out, *TINY_CNN))
            return out
        self.encode(kind)
        out = self.root / f"model-{kind}"
        self.once(
            ("train", kind),
            lambda: cli("train", self.data, "--work", self.work(kind), "--model", out, *self._baseline(kind)),
        )
        return out

    def run_dir(self, kind) -> Path:
        """The run directory of ``kind`` on the test split (``evaluate``, or ``cnn evaluate``)."""
        out = self.root / f"run-{kind}"
        if kind == "cnn":
            self.once(
                ("evaluate", kind),
                lambda: cli(
                    "cnn", "evaluate", self.model(kind), self.data, "--out", out, "--device", "cpu", *N_BOOTSTRAP
                ),
            )
        else:
            self.once(
                ("evaluate", kind),
                lambda: cli(
                    "evaluate", self.model(kind), self.data, "--work", self.work(kind), "--out", out, *N_BOOTSTRAP
                ),
            )
        return out

    def localization_dir(self, kind) -> Path:
        out = self.root / f"localization-{kind}"
        self.once(("localize-eval", kind), lambda: cli("localize-eval", self.model(kind), self.data, "--out", out))
        return out

    def diff_dir(self, kind) -> Path:
        out = self.root / f"diff-{kind}"
        self.once(("diff", kind), lambda: cli("diff", *self.followup_pair, "--model", self.model(kind), "--out", out))
        return out


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    workspace = Workspace(tmp_path_factory.mktemp("combinations"))
    yield workspace
    if workspace.torch_threads:
        import torch

        torch.set_num_threads(workspace.torch_threads)


# --------------------------------------------------------------------------
# The dataset: phantom, info, download
# --------------------------------------------------------------------------


def test_phantom_writes_a_dataset_in_the_nih_layout(ws):
    assert "wrote a synthetic phantom of 20 patients" in ws.phantom_result.output
    for name in (
        "Data_Entry_2017_v2020.csv",
        "train_val_list.txt",
        "test_list.txt",
        "BBox_List_2017.csv",
        "phantom_truth.json",
    ):
        assert (ws.data / name).is_file(), name
    assert len(ws.images) == 20 + 2 * 2  # one image per patient, two more per follow-up patient
    assert all(p.exists() for p in ws.followup_pair)


def test_info_prints_the_summary_and_writes_it_as_json(ws, tmp_path):
    res = cli("info", ws.data, "--out-json", tmp_path / "summary.json")
    assert "boxes:" in res.output and "train_val" in res.output
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["splits"]["all"]["present"] == summary["n_present"] == len(ws.images)


def test_download_extracts_an_archive_from_a_local_mirror(ws, tmp_path):
    archive = tmp_path / "images_001.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        for p in ws.images[:3]:
            tf.add(p, arcname=f"images/{p.name}")
    data = tmp_path / "data"
    res = cli("download", data, "--parts", "1", "--mirror", f"1={archive.as_uri()}", "--metadata-from", ws.data)
    assert "images_001.tar.gz: 3 images" in res.output
    assert sorted(p.name for p in data.rglob("*.png")) == [p.name for p in ws.images[:3]]
    assert (data / "Data_Entry_2017_v2020.csv").is_file()


# --------------------------------------------------------------------------
# The PHOW steps x every encoding
# --------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_vocab_fits_and_says_what_it_fitted(ws, encoding):
    """The command that died with "'VladEncoder' object has no attribute 'cluster_centers_'" for fisher/vlad."""
    res = ws.vocab(encoding)
    assert res.output.startswith(f"vocabulary ({encoding}): ")
    fitted = {"bow": r"\b8 (k-means )?words", "fisher": r"\b4-Gaussian", "vlad": r"\b4 k-means words"}[encoding]
    assert re.search(fitted, res.output), res.output
    assert (ws.work(encoding) / "vocabulary.npz").is_file()


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_encode_writes_the_feature_shards_of_a_split(ws, encoding):
    res = ws.encode(encoding)
    n_test = len((ws.data / "test_list.txt").read_text().split())
    assert res.output.startswith(f"features: {n_test} images x ")
    store = Path(res.output.split(" in ")[-1].strip())
    assert store.is_dir() and list(store.glob("*.npy"))


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_train_writes_a_model_directory(ws, encoding):
    meta = json.loads((ws.model(encoding) / "model.json").read_text())
    assert meta["kind"] == "phow" and meta["params"]["config"]["encoding"] == encoding
    assert meta["params"]["config"]["n_words"] == 8 and meta["params"]["config"]["size"] == 64  # option + file


@pytest.mark.parametrize("encoding", ["bow", *(pytest.param(e, marks=pytest.mark.slow) for e in ENCODINGS[1:])])
def test_run_writes_the_model_and_the_run(ws, encoding, tmp_path):
    res = cli(
        "run",
        ws.data,
        "--out",
        tmp_path / "out",
        "--config",
        ws.config,
        "--encoding",
        encoding,
        *TINY_OPTIONS,
        *N_BOOTSTRAP,
    )
    assert "Mean" in res.output
    assert (
        json.loads((tmp_path / "out" / "model" / "model.json").read_text())["params"]["config"]["encoding"] == encoding
    )
    metrics = json.loads((tmp_path / "out" / "run" / "metrics.json").read_text())
    assert metrics["kind"] == "phow" and metrics["encoding"] == encoding
    assert (tmp_path / "out" / "run" / "predictions.csv").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("encoding", ENCODINGS)
def test_demo_writes_the_report(encoding, tmp_path):
    res = cli("demo", "--out", tmp_path / "demo", "--patients", 20, "--encoding", encoding, *N_BOOTSTRAP)
    assert "SYNTHETIC" in res.output
    assert (tmp_path / "demo" / "report" / "index.html").is_file()
    assert json.loads((tmp_path / "demo" / "run" / "metrics.json").read_text())["encoding"] == encoding


# --------------------------------------------------------------------------
# Every model kind: train, evaluate, predict, localize, localize-eval, diff
# --------------------------------------------------------------------------


def test_cnn_train_writes_a_model_directory(ws, torch):
    meta = json.loads((ws.model("cnn") / "model.json").read_text())
    assert meta["kind"] == "cnn" and meta["params"]["config"]["backbone"] == "densenet121"
    assert meta["params"]["config"]["epochs"] == 1 and meta["params"]["config"]["workers"] == 0


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_evaluate_writes_the_run_directory(ws, kind):
    run = ws.run_dir(kind)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["kind"] == ("cnn" if kind == "cnn" else "phow")
    assert metrics["n_test"] == len((ws.data / "test_list.txt").read_text().split())
    predictions = pd.read_csv(run / "predictions.csv")
    assert len(predictions) == metrics["n_test"] and predictions.shape[1] >= LABELS_COLUMNS


def test_evaluate_of_a_cnn_says_which_command_evaluates_it(ws, torch, tmp_path):
    res = cli("evaluate", ws.model("cnn"), ws.data, "--out", tmp_path / "run", exit_code=2)
    assert "phow-baseline cnn evaluate" in one_error_line(res)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_predict_writes_one_row_per_image(ws, kind, tmp_path):
    res = cli("predict", ws.model(kind), ws.data / "images", "--out-csv", tmp_path / "new" / "p.csv")
    predictions = pd.read_csv(tmp_path / "new" / "p.csv")
    assert predictions["Image Index"].tolist() == [p.name for p in ws.images]
    assert predictions.shape[1] == LABELS_COLUMNS
    assert f"scored {len(ws.images)} image(s), 0 failure(s)" in res.output
    if kind != "cnn":  # calibrated PHOW models and CNNs give probabilities
        assert predictions.iloc[:, 1:].to_numpy().min() >= 0 and predictions.iloc[:, 1:].to_numpy().max() <= 1


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_cnn_predict_is_predict(ws, kind, tmp_path):
    cli("predict", ws.model(kind), *ws.images[:2], "--out-csv", tmp_path / "a.csv")
    cli("cnn", "predict", ws.model(kind), *ws.images[:2], "--out-csv", tmp_path / "b.csv")
    assert (tmp_path / "a.csv").read_text() == (tmp_path / "b.csv").read_text()


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_localize_writes_overlays_or_says_there_are_no_heatmaps(ws, kind, tmp_path):
    image = ws.images[0]
    if kind in WITH_HEATMAPS:
        res = cli("localize", ws.model(kind), image, "--out", tmp_path / "h", "--top", 2)
        written = sorted((tmp_path / "h").glob("*.png"))
        assert len(written) == 2 and all(p.name.startswith(f"{image.stem}_") for p in written)
        assert str(written[0]) in res.output or str(written[1]) in res.output
    else:
        res = cli("localize", ws.model(kind), image, "--out", tmp_path / "h", exit_code=1)
        assert "has no heatmaps" in one_error_line(res) and str(ws.model(kind)) in one_error_line(res)
        assert not (tmp_path / "h").exists()


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_localize_eval_writes_the_localization_directory(ws, kind):
    if kind not in WITH_HEATMAPS:
        res = cli("localize-eval", ws.model(kind), ws.data, "--out", ws.root / f"no-loc-{kind}", exit_code=1)
        assert "has no heatmaps" in one_error_line(res)
        return
    out = ws.localization_dir(kind)
    result = json.loads((out / "localization.json").read_text())
    assert result["kind"] == ("cnn" if kind == "cnn" else "phow") and result["model"] == str(ws.model(kind))
    assert sum(result["n_images"].values()) >= 1 and (out / "localization.md").is_file()
    assert list((out / "heatmaps").glob("*.png"))


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_diff_with_a_model_writes_score_and_heatmap_differences(ws, kind):
    meta = json.loads((ws.diff_dir(kind) / "diff.json").read_text())
    assert meta["patient"] == 1 and len(meta["score_changes"]) == 14
    assert bool(meta["heatmap_labels"]) == (kind in WITH_HEATMAPS)  # no heatmaps: the score differences alone
    assert (ws.diff_dir(kind) / "ssim_map.png").is_file()


def test_diff_without_a_model(ws, tmp_path):
    res = cli("diff", *ws.followup_pair, "--out", tmp_path / "d")
    meta = json.loads((tmp_path / "d" / "diff.json").read_text())
    assert not meta["score_changes"] and "mean SSIM" in res.output


# --------------------------------------------------------------------------
# Every kind together: compare, report
# --------------------------------------------------------------------------


def _compare_and_report(ws, kinds, tmp_path):
    runs = [ws.run_dir(k) for k in kinds]
    res = cli("compare", *runs, "--out", tmp_path / "cmp")
    table = pd.read_csv(tmp_path / "cmp" / "comparison.csv", index_col=0)
    names = [json.loads((r / "metrics.json").read_text())["model"] for r in runs]
    assert all(n in res.output for n in names) and (tmp_path / "cmp" / "comparison.md").is_file()
    assert len(table) >= 14
    heat = [k for k in kinds if k in WITH_HEATMAPS]
    args = [*runs, "--out", tmp_path / "report"]
    for k in heat:
        args += ["--localization", ws.localization_dir(k), "--diff", ws.diff_dir(k)]
    cli("report", *args)
    html = (tmp_path / "report" / "index.html").read_text()
    assert all(n in html or n.replace("(", "&#x28;") in html for n in names)


def test_compare_and_report_put_every_encoding_together(ws, tmp_path):
    _compare_and_report(ws, ENCODINGS, tmp_path)


def test_compare_and_report_put_phow_and_cnn_together(ws, torch, tmp_path):
    _compare_and_report(ws, ("bow", "cnn"), tmp_path)


# --------------------------------------------------------------------------
# The old spellings, on real models
# --------------------------------------------------------------------------


def test_old_spellings_still_run(ws, tmp_path):
    """predict --out FILE (now --out-csv), report --localisation, localise, and --quiet after the command."""
    model, image = ws.model("bow"), ws.images[0]
    res = CliRunner().invoke(main, ["predict", str(model), str(image), "--out", str(tmp_path / "p.csv"), "--quiet"])
    assert res.exit_code == 0, res.output
    assert len(pd.read_csv(tmp_path / "p.csv")) == 1
    res = CliRunner().invoke(main, ["localise", str(model), str(image), "--out", str(tmp_path / "h"), "--top", "1"])
    assert res.exit_code == 0 and len(list((tmp_path / "h").glob("*.png"))) == 1, res.output
    cli("report", "--localisation", ws.localization_dir("bow"), "--out", tmp_path / "r")
    assert (tmp_path / "r" / "index.html").is_file()
