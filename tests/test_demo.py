"""The oracle: on the phantom, the PHOW baseline must learn the conspicuous findings,
and its heatmaps must land in the true boxes; and the demo command end to end."""

import json
import re
import shutil

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from _browser import render
from phow_baseline.cli import main as cli
from phow_baseline.config import BaselineConfig
from phow_baseline.data.phantom import CONSPICUOUS, load_truth
from phow_baseline.model.directory import load_model
from phow_baseline.workflow.demo import DEMO_OUTPUTS, demo_fingerprint, prepare_demo_dir, run_demo

#: What the report writes in place of a missing part (none may appear in the demo's report).
EMPTY_SECTION_TEXTS = (
    "No localization evaluation given",
    "No follow-up pair given",
    "No run has calibrated probabilities",
    "No example heatmaps",
    "No model given",
)

FAST = BaselineConfig.from_preset("vlfeat", n_words=100, max_descriptors=20_000, vocab_images=100, n_jobs=2)


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


@pytest.mark.slow
def test_demo_shows_every_part_of_the_library(demo_run):
    """Localization against the phantom's boxes, a follow-up pair differenced with the model, subgroups."""
    out = demo_run["out_dir"]
    assert demo_run["localization_dirs"] == [out / "localization"] and demo_run["diff_dirs"] == [out / "diff"]
    loc = json.loads((out / "localization" / "localization.json").read_text())
    assert sum(loc["n_images"].values()) > 20 and loc["model"] == demo_run["metrics"]["model"]
    diff = json.loads((out / "diff" / "diff.json").read_text())
    truth = load_truth(demo_run["data_dir"])
    story = next(f for f in truth["followups"] if f["series"][0]["image"] == diff["image_a"])
    assert diff["image_b"] == story["series"][-1]["image"] and len(diff["score_changes"]) == 14
    test = set((demo_run["data_dir"] / "test_list.txt").read_text().split())
    stories = [f["change"] for f in truth["followups"] if f["series"][0]["image"] in test]
    if "appears" in stories:  # the plainest story of a test patient is the one shown
        assert story["change"] == "appears"
    assert diff["heatmap_labels"]  # the bag-of-words model's heatmap differences
    sub = demo_run["metrics"]["subgroups"]
    assert {"sex", "age", "followup"} <= set(sub["dimensions"]) and (demo_run["run_dir"] / "subgroups.png").is_file()
    html = demo_run["report"].read_text()
    assert "No localization evaluation given" not in html and "No follow-up pair given" not in html
    assert "<table class='subgroups'>" in html and "<table class='loc'>" in html and "class='dashboard'" in html


@pytest.mark.browser
@pytest.mark.slow
def test_demo_report_renders_every_section_filled(demo_run, tmp_path):
    """The demo's report in headless Chromium: every section present and filled, every figure decoded."""
    shot = tmp_path / "demo.png"
    dom = render(demo_run["report"], shot, height=12000)
    sections = dict(re.findall(r'<section id="([a-z]+)">(.*?)</section>', dom, flags=re.S))
    assert list(sections) == ["auroc", "roc", "calibration", "subgroups", "localization", "followup"]
    nav = re.search(r"<nav>(.*?)</nav>", dom, flags=re.S).group(1)
    assert re.findall(r'href="#([a-z]+)"', nav) == list(sections)
    for name, body in sections.items():
        text = re.sub(r"<[^>]+>", " ", body)
        assert len(text.split()) > 20 and ("<table" in body or "<img" in body), name
    for empty in EMPTY_SECTION_TEXTS:
        assert empty not in dom, empty
    # localization: one row per boxed class and example heatmaps; follow-up: a dashboard with its score table
    loc = sections["localization"]
    assert loc.count("<tr>") > 5 and loc.count("<img") >= 4
    fu = sections["followup"]
    assert 'class="dashboard"' in fu and '<table class="scores">' in fu and fu.count("<img") >= 4
    sub = sections["subgroups"]
    assert '<table class="subgroups">' in sub and "age band (years)" in sub and sub.count("<img") == 1
    n = dom.count("<img")
    loaded = re.search(r'data-images-loaded="(\d+)"', dom)
    assert loaded and int(loaded.group(1)) == n and re.search(rf'data-images-total="{n}"', dom)
    img = cv2.imread(str(shot))
    grey = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    assert grey.std() > 20 and (grey < 100).mean() > 0.005  # a page with text, not blank
    shutil.copy(shot, tmp_path.parent / "demo_report_screenshot.png")


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
        main, ["demo", "--out", str(out), "--patients", "20", "--encoding", "fisher", "--n-bootstrap", "20", "--quiet"]
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
