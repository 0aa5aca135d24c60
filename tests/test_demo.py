"""The oracle: on the phantom, the PHOW baseline must learn the conspicuous findings,
and its heatmaps must land in the true boxes; and the demo command end to end."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from phow_baseline.cli import main as cli
from phow_baseline.demo import run_demo
from phow_baseline.model_io import load_model
from phow_baseline.phantom import CONSPICUOUS, load_truth
from phow_baseline.pipeline import BaselineConfig

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
        inside = pos[y:y + h + 1, x:x + w + 1].sum() / pos.sum()
        area = (w + 1) * (h + 1) / pos.size
        ratios.append(inside / area)
    assert len(ratios) >= 4
    # the positive evidence is concentrated in the box: several times its area share
    assert np.median(ratios) > 2.0, ratios


@pytest.mark.slow
def test_demo_outputs(demo_run):
    assert demo_run["synthetic"]
    assert json.loads((demo_run["run_dir"] / "metrics.json").read_text())["n_test"] > 50
    assert demo_run["report"] is None or demo_run["report"].exists()


@pytest.mark.slow
def test_demo_command_on_a_real_folder(sample_dir, tmp_path):
    """`phow-baseline demo --data DIR` runs on the real sample (here with the phantom's
    demo settings; the table printed says which data it was)."""
    res = CliRunner().invoke(cli, ["demo", "--data", str(sample_dir), "--out", str(tmp_path / "d"), "--quiet",
                                   "--n-bootstrap", "50"])
    assert res.exit_code == 0, res.output
    assert "SYNTHETIC" not in res.output and "Mean" in res.output
    assert (tmp_path / "d" / "run" / "metrics.json").exists()
