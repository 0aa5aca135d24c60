"""The oracle: on the phantom, the PHOW baseline must learn the conspicuous findings,
and its heatmaps must land in the true boxes; and the demo command end to end."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from phow_baseline.cli import main as cli
from phow_baseline.config import BaselineConfig
from phow_baseline.data.phantom import CONSPICUOUS, load_truth
from phow_baseline.model.directory import load_model
from phow_baseline.workflow.demo import DEMO_OUTPUTS, demo_fingerprint, prepare_demo_dir, run_demo

FAST = BaselineConfig(n_words=100, max_descriptors=20_000, vocab_images=100, n_jobs=2)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    return run_demo(out, n_patients=300, progress=False, n_bootstrap=200, config=FAST)


@pytest.mark.slow
def test_learns_the_conspicuous_findings(demo_run):
    m = demo_run["metrics"]
    for lab in CONSPICUOUS:
        assert m["auroc"][lab] is not None and m["auroc"][lab] > 0.9, (lab, m["auroc"][lab])
    assert m["mean_auroc"] > 0.8  # the Uniandes pipeline sat at 0.31


@pytest.mark.slow
def test_heatmaps_land_in_the_true_boxes(demo_run):
    model = load_model(demo_run["model_dir"])
    truth = load_truth(demo_run["data_dir"])["images"]
    ratios = []
    for name, t in sorted(truth.items()):
        if "Mass" not in t["boxes"] or len(ratios) >= 8:
            continue
        img = model.preprocess(demo_run["data_dir"] / "images" / name)
        heat = model.heatmaps(img)[model.labels.index("Mass")]
        pos = np.clip(heat, 0, None)
        x, y, w, h = (int(round(v)) for v in t["boxes"]["Mass"])
        inside = pos[y : y + h + 1, x : x + w + 1].sum() / pos.sum()
        area = (w + 1) * (h + 1) / pos.size
        ratios.append(inside / area)
    assert len(ratios) >= 4
    # the positive evidence is concentrated in the box: several times its area share
    assert np.median(ratios) > 2.0, ratios


@pytest.mark.slow
def test_demo_outputs(demo_run):
    assert demo_run["synthetic"]
    assert json.loads((demo_run["run_dir"] / "metrics.json").read_text())["n_test"] > 50
    page = demo_run["report"]
    assert page == demo_run["out_dir"] / "report" / "index.html" and page.is_file()
    html = page.read_text()
    assert "SYNTHETIC" in html and "<script src=" not in html  # says so; self-contained
    record = json.loads((demo_run["out_dir"] / "demo.json").read_text())
    assert record["fingerprint"] == demo_fingerprint(FAST, None, 300, 0)


def test_demo_caches_are_reused_only_with_the_same_fingerprint(tmp_path):
    out = tmp_path / "demo"
    fp = demo_fingerprint(FAST, None, 300, 0)
    logs = []
    assert prepare_demo_dir(out, fp, log=logs.append) is False  # a new folder: nothing to reuse
    for name in ("phantom", "work", "model"):
        (out / name).mkdir()
        (out / name / "x.npy").write_bytes(b"cached")
    (out / "mine.txt").write_text("a user's file")
    assert prepare_demo_dir(out, fp, log=logs.append) is True  # same versions and settings: kept
    assert (out / "work" / "x.npy").exists() and "reusing" in logs[-1]
    other = demo_fingerprint(BaselineConfig(**{**FAST.to_dict(), "n_words": 50}), None, 300, 0)
    assert prepare_demo_dir(out, other, log=logs.append) is False  # other settings: regenerated
    assert not any((out / n).exists() for n in DEMO_OUTPUTS if n != "config.json")
    assert "config.n_words 100 -> 50" in logs[-1]
    assert (out / "mine.txt").read_text() == "a user's file"  # only the demo's own outputs go
    (out / "work").mkdir()
    newer = {**other, "versions": {**other["versions"], "phow_baseline": "99.0"}}
    assert prepare_demo_dir(out, newer, log=logs.append) is False and not (out / "work").exists()
    assert "phow_baseline" in logs[-1]
    (out / "demo.json").unlink()  # an older version's folder, without a fingerprint
    (out / "run").mkdir()
    assert prepare_demo_dir(out, newer, log=logs.append) is False and not (out / "run").exists()
    assert "older version" in logs[-1]
    assert demo_fingerprint(FAST, None, 300, 1) != demo_fingerprint(FAST, None, 300, 0)
    assert demo_fingerprint(FAST, tmp_path, 300, 0)["data"] == str(tmp_path.resolve())


@pytest.mark.slow
def test_demo_command_on_a_real_folder(sample_dir, tmp_path):
    """`phow-baseline demo --data DIR` runs on the real sample (here with the phantom's
    demo settings; the table printed says which data it was)."""
    res = CliRunner().invoke(
        cli, ["demo", "--data", str(sample_dir), "--out", str(tmp_path / "d"), "--quiet", "--n-bootstrap", "50"]
    )
    assert res.exit_code == 0, res.output
    assert "SYNTHETIC" not in res.output and "Mean" in res.output
    assert f"demo: writing to {tmp_path / 'd'}" in res.stderr
    assert (tmp_path / "d" / "run" / "metrics.json").exists()
    again = CliRunner().invoke(
        cli, ["demo", "--data", str(sample_dir), "--out", str(tmp_path / "d"), "--quiet", "--n-bootstrap", "50"]
    )
    assert again.exit_code == 0, again.output
    assert "demo: reusing the caches" in again.stderr and "vocabulary: reusing" in again.stderr


@pytest.mark.slow
def test_demo_runs_with_fisher_vectors(tmp_path):
    """`phow-baseline demo --encoding fisher` runs end to end (demo-sized mixture) and says which encoding."""
    from click.testing import CliRunner

    from phow_baseline.cli import main

    out = tmp_path / "fv"
    res = CliRunner().invoke(
        main, ["demo", "--out", str(out), "--patients", "40", "--encoding", "fisher", "--n-bootstrap", "20", "--quiet"]
    )
    assert res.exit_code == 0, res.output
    assert "SYNTHETIC" in res.output
    meta = json.loads((out / "model" / "model.json").read_text())
    assert meta["params"]["config"]["encoding"] == "fisher"
    assert meta["params"]["config"]["fv_components"] == 64
    m = json.loads((out / "run" / "metrics.json").read_text())
    assert m["encoding"] == "fisher" and m["model"] == "PHOW baseline (phantom), Fisher vectors"
    assert (out / "report" / "index.html").exists()


def test_demo_refuses_too_few_patients():
    from click.testing import CliRunner

    from phow_baseline.cli import main

    res = CliRunner().invoke(main, ["demo", "--patients", "0"])
    assert res.exit_code == 2 and "--patients" in res.output and "Traceback" not in res.output
