"""The static HTML report: content, escaping, errors, and rendering in a real browser (headless Chromium).

The inputs are built in tmp_path per the on-disk contracts (metrics.json + roc.png, localization.json +
heatmaps/, diff.json + PNGs), with the figures made from the real sample's X-rays, so the test is fast
and independent of training a model.
"""

import base64
import json
import re
import shutil
import subprocess
import tempfile

import cv2
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from _browser import CHROMIUM_FLAGS
from _browser import chromium as _chromium
from phow_baseline.cli import main as cli
from phow_baseline.data.chestxray14 import LABELS
from phow_baseline.evaluation import PUBLISHED
from phow_baseline.report.html import write_report

EVIL = "<script>alert('x')</script>"
EVIL_ESCAPED = "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;"


def _xray(path, size=256):
    img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    assert img is not None, path
    return cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)


def _overlay(grey, heat):
    colour = cv2.applyColorMap(np.uint8(np.clip(heat, 0, 1) * 255), cv2.COLORMAP_JET)
    return cv2.addWeighted(cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR), 0.6, colour, 0.4, 0)


def _blob(size, cx, cy, s):
    yy, xx = np.mgrid[:size, :size]
    return np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2.0 * s * s))


def _roc_png(path, seed):
    rng = np.random.default_rng(seed)
    img = np.full((360, 480, 3), 255, np.uint8)
    cv2.rectangle(img, (40, 20), (460, 330), (0, 0, 0), 1)
    cv2.line(img, (40, 330), (460, 20), (150, 150, 150), 1)
    for k in range(len(LABELS)):
        fpr = np.sort(np.r_[0, rng.random(20), 1])
        tpr = np.clip(np.sqrt(fpr) + rng.normal(0, 0.03, fpr.size), 0, 1)
        pts = np.stack([40 + fpr * 420, 330 - np.maximum.accumulate(tpr) * 310], 1).astype(np.int32)
        colour = tuple(int(c) for c in cv2.applyColorMap(np.uint8([[k * 18]]), cv2.COLORMAP_HSV)[0, 0])
        cv2.polylines(img, [pts], False, colour, 2)
    assert cv2.imwrite(str(path), img)


def _run_dir(path, model, seed, calibrated=False):
    """A run directory per the metrics.json contract; ``calibrated`` adds what a calibrated model's run has."""
    rng = np.random.default_rng(seed)
    path.mkdir(parents=True)
    auroc = {lab: float(rng.uniform(0.55, 0.85)) for lab in LABELS}
    auroc["Hernia"] = None  # no positive test image: the contract allows null
    ci = {lab: [a - 0.05, a + 0.05] for lab, a in auroc.items() if a is not None}
    vals = [a for a in auroc.values() if a is not None]
    m = {
        "model": model,
        "kind": "phow",
        "split": "official test (sample)",
        "n_test": 59,
        "labels": list(LABELS),
        "auroc": auroc,
        "auroc_ci95": ci,
        "mean_auroc": float(np.mean(vals)),
    }
    if calibrated:
        m["n_bootstrap"] = 1000
        m["n_bootstrap_used"] = {lab: 1000 for lab in LABELS}
        m["n_bootstrap_used"]["Pneumonia"] = 861
        m["calibration"] = {
            "n_bins": 10,
            "brier": {lab: 0.01 * (k + 1) for k, lab in enumerate(LABELS)},
            "ece": {lab: 0.002 * (k + 1) for k, lab in enumerate(LABELS)},
            "mean_brier": 0.075,
            "mean_ece": 0.015,
            "auroc_unchanged": True,
        }
        per = {}
        for k, lab in enumerate(LABELS):
            per[lab] = {
                "threshold": 0.1 + 0.01 * k,
                "tp": 3,
                "fp": 10,
                "tn": 44,
                "fn": 2,
                "sensitivity": 0.6,
                "sensitivity_ci95": [0.2, 0.9],
                "specificity": 0.81,
                "specificity_ci95": [0.7, 0.9],
                "ppv": 0.23,
                "ppv_ci95": [0.05, 0.45],
                "npv": 0.957,
                "npv_ci95": [0.9, 1.0],
                "n_bootstrap_used": {"sensitivity": 1000 - 7 * k, "specificity": 1000, "ppv": 1000, "npv": 1000},
            }
        m["operating_points"] = {"rule": "Youden's J", "applies_to": "probability", "per_class": per}
        _roc_png(path / "calibration.png", seed + 10)
    (path / "metrics.json").write_text(json.dumps(m))
    _roc_png(path / "roc.png", seed)
    return path


@pytest.fixture
def report_inputs(sample_dir, tmp_path):
    """Two run dirs (one with a hostile model name), a localization dir, a follow-up diff dir."""
    runs = [_run_dir(tmp_path / "run_a", "phow-k1024", 0, calibrated=True), _run_dir(tmp_path / "run_b", EVIL, 1)]

    loc = tmp_path / "loc"
    (loc / "heatmaps").mkdir(parents=True)
    tb, tu = [0.1, 0.25, 0.5, 0.75, 0.9], [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]
    boxed = LABELS[:8]
    rng = np.random.default_rng(2)
    (loc / "localization.json").write_text(
        json.dumps(
            {
                "model": f"loc {EVIL}",
                "kind": "phow",
                "image_size": 256,
                "iobb_thresholds": tb,
                "iou_thresholds": tu,
                "accuracy_iobb": {lab: sorted(rng.random(len(tb)).tolist(), reverse=True) for lab in boxed},
                "accuracy_iou": {lab: sorted(rng.random(len(tu)).tolist(), reverse=True) for lab in boxed},
                "avg_fp": {lab: float(rng.random()) for lab in boxed},
                "n_images": {lab: 3 for lab in boxed},
                "reference_iobb_0.5": {
                    "Atelectasis": 0.1944,
                    "Cardiomegaly": 0.9452,
                    "Effusion": 0.4183,
                    "Infiltration": 0.6504,
                    "Mass": 0.3058,
                    "Nodule": 0.0,
                    "Pneumonia": 0.4833,
                    "Pneumothorax": 0.2653,
                },
            }
        )
    )
    images = sorted((sample_dir / "images").glob("*.png"))[:6]
    for k, p in enumerate(images):
        g = _xray(p)
        over = _overlay(g, _blob(256, 80 + 15 * k, 120, 30))
        cv2.rectangle(over, (60 + 15 * k, 90), (110 + 15 * k, 150), (0, 255, 0), 2)
        assert cv2.imwrite(str(loc / "heatmaps" / f"{p.stem}_{LABELS[k]}.png"), over)

    diff = tmp_path / "diff"
    diff.mkdir()
    fu = sorted((sample_dir / "followups").glob("00000032_*.png"))
    a, b = _xray(fu[0]), _xray(fu[1])
    m = np.float32([[1, 0, 3], [0, 1, -2]])
    b_reg = cv2.warpAffine(b, m, (256, 256))
    assert cv2.imwrite(str(diff / "a.png"), a) and cv2.imwrite(str(diff / "b_registered.png"), b_reg)
    assert cv2.imwrite(
        str(diff / "ssim_map.png"),
        cv2.applyColorMap(255 - np.abs(a.astype(int) - b_reg).astype(np.uint8), cv2.COLORMAP_VIRIDIS),
    )
    d = (b_reg.astype(np.float32) - a) / 2 + 128
    assert cv2.imwrite(
        str(diff / "intensity_diff.png"), cv2.applyColorMap(np.uint8(np.clip(d, 0, 255)), cv2.COLORMAP_COOL)
    )
    scores = {
        lab: {"a": float(x), "b": float(x + dlt), "delta": float(dlt)}
        for lab, x, dlt in zip(LABELS, rng.uniform(-1, 1, 14), rng.normal(0, 0.5, 14))
    }
    order = sorted(LABELS, key=lambda lab: -abs(scores[lab]["delta"]))
    for lab in order[:2]:
        hd = _blob(256, 128, 100, 25) - _blob(256, 90, 170, 20)
        assert cv2.imwrite(str(diff / f"heatmap_diff_{lab}.png"), _overlay(a, (hd + 1) / 2))
    (diff / "diff.json").write_text(
        json.dumps(
            {
                "image_a": fu[0].name,
                "image_b": fu[1].name,
                "patient": 32,
                "order_rule": "earlier = smaller file-name suffix",
                "notes": [f"note {EVIL}"],
                "registration": {"motion": "affine", "ecc": 0.9712, "matrix": m.tolist(), "converged": True},
                "ssim_mean": 0.81,
                "intensity_diff_mean_abs": 6.5,
                "score_changes": scores,
                "score_kind": "probability",
                "heatmap_labels": order[:2],
                "overlap_fraction": 0.97,
            }
        )
    )
    return runs, [loc], [diff], order


def _table(html, cls):
    t = html[html.index(f"<table class='{cls}'>") :]
    return t[: t.index("</table>")]


def _decode_images(html):
    uris = re.findall(r'<img src="data:image/png;base64,([^"]+)"', html)
    arrays = [cv2.imdecode(np.frombuffer(base64.b64decode(u), np.uint8), cv2.IMREAD_COLOR) for u in uris]
    return arrays


def test_report_content_and_escaping(report_inputs, tmp_path):
    runs, locs, diffs, order = report_inputs
    page = write_report(runs, tmp_path / "rep", locs, diffs, title="Sample & <report>")
    assert page == tmp_path / "rep" / "index.html"
    html = page.read_text(encoding="utf-8")
    # escaping: hostile text from every input file appears escaped, never as markup
    assert "<script>alert" not in html and "alert('x')" not in html
    assert html.count(EVIL_ESCAPED) >= 4  # run column, ROC alt+caption, localization heading, diff note
    assert "<title>Sample &amp; &lt;report&gt;</title>" in html
    # AUROC table: header + 14 labels + mean; run columns then every published column with its split
    auroc = _table(html, "auroc")
    assert auroc.count("<tr>") == 1 + len(LABELS) and auroc.count("<tr class='mean'>") == 1
    for key, ref in PUBLISHED.items():
        assert key in auroc and ref["split"] in auroc
    assert "0.314" in auroc and "0.745" in auroc  # Uniandes PHOW mean 31.37 %, Wang 2017 mean
    assert "n/a" in auroc  # Hernia without a value
    assert auroc.count("class='ci'") == 2 * 13
    # localization: one row per boxed label, Wang's T(IoBB)=0.5 reference column
    loc = _table(html, "loc")
    assert loc.count("<tr>") == 1 + 8 and "T(IoBB)=0.5" in loc and "0.9452" in loc
    assert _table(html, "loc-iou").count("<tr>") == 1 + 8
    # dashboard: score table sorted by |delta|, registration quality
    scores = _table(html, "scores")
    assert scores.count("<tr>") == 1 + 14
    rows = re.findall(r"<tr><td>([^<]+)</td>", scores)
    assert rows == order
    assert "<th>probability A (earlier)</th>" in scores
    reg = _table(html, "reg")
    assert "0.971" in reg and "affine" in reg and "converged" in reg and "0.970" in reg  # overlap share
    assert "Registration: good alignment (ECC 0.971)" in html and "class='warn'" not in html
    assert "00000032_" in html and ".png: Atelectasis</figcaption>" in html
    # bootstrap resamples shown where fewer than asked: Pneumonia's AUROC interval and 13 sensitivities
    assert auroc.count("class='nboot'") == 1 and "n=861/1000" in auroc
    # calibration: Brier/ECE table (2 header rows, 14 labels, mean) of the calibrated run only
    calib = _table(html, "calib")
    assert calib.count("<tr>") == 2 + 14 and calib.count("<tr class='mean'>") == 1
    assert "phow-k1024" in calib and EVIL_ESCAPED not in calib and "0.1400" in calib and "10 equal-width" in html
    ops = _table(html, "ops")
    assert ops.count("<tr>") == 1 + 14 and "<td>0.1000</td>" in ops and "<td>0.230<br>" in ops and "Youden" in html
    assert ops.count("class='nboot'") == 13 and "n=909/1000" in ops
    # images: 2 ROC + 1 calibration + 6 heatmaps + 4 dashboard + 2 heatmap differences, all decodable PNGs
    arrays = _decode_images(html)
    assert len(arrays) == 2 + 1 + 6 + 4 + 2 == html.count("<img ")
    assert all(a is not None and a.shape[0] > 0 and a.shape[1] > 0 for a in arrays)
    assert sum(a.shape == (256, 256, 3) for a in arrays) == 12
    # self-contained: no external resource references
    assert not re.search(r'(src|href)="(https?:|//|file:)', html)


def test_report_cli_command(report_inputs, tmp_path):
    runs, locs, diffs, _ = report_inputs
    args = [str(runs[0]), "--out", str(tmp_path / "o"), "--localization", str(locs[0]), "--diff", str(diffs[0])]
    res = CliRunner().invoke(cli, ["report", *args])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "o" / "index.html").is_file() and "index.html" in res.output
    res = CliRunner().invoke(cli, ["report", "--out", str(tmp_path / "o2")])
    assert res.exit_code != 0 and "at least one" in res.output


def test_report_without_optional_sections(report_inputs, tmp_path):
    runs, *_ = report_inputs
    html = write_report(runs[:1], tmp_path / "o").read_text()
    assert "No localization evaluation given" in html and "No follow-up pair given" in html
    assert len(_decode_images(html)) == 2  # ROC and reliability diagrams
    html = write_report(runs[1:], tmp_path / "o").read_text()  # an older run dir: no calibration data
    assert "No run has calibrated probabilities" in html and len(_decode_images(html)) == 1


def test_dashboard_states_poor_registration_and_confines_file_names(report_inputs, tmp_path):
    runs, locs, diffs, _ = report_inputs
    p = diffs[0] / "diff.json"
    m = json.loads(p.read_text())
    m["registration"]["converged"] = False
    p.write_text(json.dumps(m))
    html = write_report([], tmp_path / "o", diff_dirs=diffs).read_text()
    assert "<p class='warn'>Registration: not converged: differences are unreliable" in html
    m["registration"]["converged"] = True
    m["figures"] = {"ssim": "../run_a/roc.png"}
    p.write_text(json.dumps(m))
    with pytest.raises(ValueError, match=r"file name '\.\./run_a/roc\.png' leaves the folder"):
        write_report([], tmp_path / "o2", diff_dirs=diffs)
    m["figures"] = {"heatmaps": {"Mass": "/etc/passwd"}}
    p.write_text(json.dumps(m))
    with pytest.raises(ValueError, match="leaves the folder"):
        write_report([], tmp_path / "o2", diff_dirs=diffs)
    assert not (tmp_path / "o2" / "index.html").exists()


def test_report_errors_name_the_file(report_inputs, tmp_path):
    runs, locs, diffs, _ = report_inputs
    (tmp_path / "r").mkdir()
    with pytest.raises(FileNotFoundError, match=r"r[/\\]metrics\.json"):
        write_report([tmp_path / "r"], tmp_path / "out")
    res = CliRunner().invoke(cli, ["report", str(tmp_path / "r"), "--out", str(tmp_path / "o")])
    assert res.exit_code != 0 and "metrics.json" in res.output
    (tmp_path / "r" / "metrics.json").write_text("{not json")
    with pytest.raises(ValueError, match="metrics.json: invalid JSON"):
        write_report([tmp_path / "r"], tmp_path / "out")
    (tmp_path / "r" / "metrics.json").write_text(json.dumps({"model": "m", "auroc": {}}))
    with pytest.raises(ValueError, match="metrics.json: missing key.*mean_auroc"):
        write_report([tmp_path / "r"], tmp_path / "out")
    # a run without its ROC figure, a corrupt PNG, a diff dir missing a figure, a bad localization file
    (runs[0] / "roc.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"run_a[/\\]roc\.png"):
        write_report(runs, tmp_path / "out")
    (runs[0] / "roc.png").write_bytes(b"GIF89a not a png")
    with pytest.raises(ValueError, match=r"roc\.png: not a PNG"):
        write_report(runs, tmp_path / "out")
    (diffs[0] / "ssim_map.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"ssim_map\.png"):
        write_report([], tmp_path / "out", diff_dirs=diffs)
    j = json.loads((locs[0] / "localization.json").read_text())
    j["accuracy_iobb"]["Mass"] = [0.5]
    (locs[0] / "localization.json").write_text(json.dumps(j))
    with pytest.raises(ValueError, match=r"localization\.json: accuracy_iobb\['Mass'\]"):
        write_report([], tmp_path / "out", localization_dirs=locs)
    assert not (tmp_path / "out" / "index.html").exists()


@pytest.mark.browser
@pytest.mark.slow
def test_report_renders_in_chromium(report_inputs, tmp_path):
    chromium = _chromium()
    runs, locs, diffs, _ = report_inputs
    page = write_report(runs, tmp_path / "rep", locs, diffs, title="Rendered report")
    shot = tmp_path / "shot.png"
    with tempfile.TemporaryDirectory() as profile:
        common = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}"]
        r = subprocess.run(
            [*common, "--window-size=1280,5200", f"--screenshot={shot}", page.as_uri()],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert r.returncode == 0 and shot.is_file(), f"chromium screenshot failed: {r.stderr[-2000:]}"
        r = subprocess.run(
            [*common, "--virtual-time-budget=5000", "--dump-dom", page.as_uri()],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert r.returncode == 0, f"chromium --dump-dom failed: {r.stderr[-2000:]}"
    dom = r.stdout
    # the browser parsed the 7 tables (AUROC, Brier/ECE, operating points, IoBB, IoU, registration, scores) and the
    # figures, and decoded every figure (naturalWidth > 0)
    assert dom.count("<table") == 7 and dom.count("<img") == 15
    assert re.search(r'data-images-loaded="15"', dom) and re.search(r'data-images-total="15"', dom), re.search(
        r"<body[^>]*>", dom
    ).group(0)
    assert "Per-class AUROC" in dom and "Atelectasis" in dom and "Follow-up dashboard" in dom
    assert "<script>alert" not in dom
    img = cv2.imread(str(shot))
    assert img is not None and img.shape[:2] == (5200, 1280)
    grey = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    assert grey.std() > 20  # not a blank page
    assert (grey < 100).mean() > 0.005  # dark text
    # the ROC figures sit below the AUROC table: coloured curves must have been painted there
    hsv = cv2.cvtColor(img, cv2.COLOR_BGR2HSV)
    assert (hsv[..., 1] > 80).mean() > 0.005
    # X-ray figures (localization heatmaps, grey greyscale images) painted somewhere down the page:
    # many mid-grey pixels in textured blocks, which text and tables do not have
    lower = grey[2600:]
    assert ((lower > 40) & (lower < 200)).mean() > 0.05
    shutil.copy(shot, tmp_path.parent / "report_screenshot.png")


@pytest.mark.slow
def test_report_from_real_outputs(sample_run, sample_dir, tmp_path):
    """The report reads what the real writers write: a trained run, localize-eval and diff outputs."""
    from phow_baseline.cli import main as cli

    out, _ = sample_run
    r = CliRunner()
    res = r.invoke(
        cli, ["localize-eval", str(out / "model"), str(sample_dir), "--out", str(tmp_path / "loc"), "--quiet"]
    )
    assert res.exit_code == 0, res.output
    fu = sorted((sample_dir / "followups").glob("00000032_*.png"))
    res = r.invoke(
        cli, ["diff", str(fu[0]), str(fu[1]), "--model", str(out / "model"), "--out", str(tmp_path / "diff")]
    )
    assert res.exit_code == 0, res.output
    # `evaluate` on the sample writes and prints the subgroup tables (the sample's metadata is clean: no warning)
    res = r.invoke(
        cli,
        [
            "evaluate",
            str(out / "model"),
            str(sample_dir),
            "--out",
            str(tmp_path / "run"),
            "--work",
            str(out / "work"),
            "--n-bootstrap",
            "50",
            "--quiet",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "Subgroups (gap: subgroup - all images" in res.output and "age: 60-79" in res.output
    assert "metadata:" not in res.output
    sub = json.loads((tmp_path / "run" / "metrics.json").read_text())["subgroups"]
    assert set(sub["dimensions"]) == {"sex", "age", "view", "followup"} and sub["problems"] == {}
    assert sum(g["n_images"] for g in sub["dimensions"]["sex"]["groups"].values()) == sub["n_images"] == 59
    assert (tmp_path / "run" / "subgroups.png").is_file() and (tmp_path / "run" / "labels.csv").is_file()
    html = write_report([tmp_path / "run"], tmp_path / "rep", [tmp_path / "loc"], [tmp_path / "diff"]).read_text()
    assert _table(html, "subgroups").count("<tr>") == 1 + 1 + 11
    assert _table(html, "auroc").count("<tr>") == 1 + len(LABELS)
    assert _table(html, "scores").count("<tr>") == 1 + len(LABELS)
    assert "T(IoBB)=0.5" in _table(html, "loc") and fu[0].name in html
    arrays = _decode_images(html)
    assert len(arrays) >= 1 + 4 and all(a is not None and a.size > 0 for a in arrays)


@pytest.mark.browser
@pytest.mark.slow
def test_real_writers_render_in_chromium(sample_dir, tmp_path):
    """What write_run_dir (with probabilities and thresholds) and write_diff_dir draw, rendered by Chromium."""
    import warnings

    from phow_baseline.classification import OperatingPoints, PlattCalibrator
    from phow_baseline.evaluation import write_run_dir
    from phow_baseline.followup import diff_pair, write_diff_dir

    rng = np.random.default_rng(0)
    y_val = (rng.random((300, 14)) < 0.15).astype(int)
    y = (rng.random((120, 14)) < 0.15).astype(int)
    y[:, 6] = 0
    y[:2, 6] = 1  # a rare class: its intervals rest on fewer resamples
    s_val, s = rng.normal(0, 1, y_val.shape) + y_val, rng.normal(0, 1, y.shape) + y
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        cal = PlattCalibrator().fit(s_val, y_val)
    ops = OperatingPoints().fit(cal.predict_proba(s_val), y_val)
    run = tmp_path / "run"
    write_run_dir(
        run,
        model_name="calibrated",
        kind="phow",
        split="test",
        names=[str(i) for i in range(120)],
        y_true=y,
        scores=s,
        probabilities=cal.predict_proba(s),
        thresholds=ops.thresholds_,
        operating_rule=ops.describe(),
        n_bootstrap=200,
    )
    fu = sorted((sample_dir / "followups").glob("00000032_*.png"))

    def heat(img):
        return np.stack([cv2.GaussianBlur(img.astype(np.float32) / 255, (0, 0), 6) * (k + 1) / 14 for k in range(14)])

    def prob(img):
        return 1 / (1 + np.exp(-(np.arange(14) / 7 - 1 + img.astype(float).mean() / 64 - 2)))

    d = diff_pair(fu[0], fu[1], heatmap_fn=heat, score_fn=prob, score_kind="probability")
    write_diff_dir(tmp_path / "diff", d, heatmap_units="toy heatmap units")
    page = write_report([run], tmp_path / "rep", diff_dirs=[tmp_path / "diff"], title="Real writers")
    html = page.read_text()
    assert "Registration:" in html and _table(html, "ops").count("<tr>") == 15
    chromium = _chromium()
    shot = tmp_path / "shot.png"
    with tempfile.TemporaryDirectory() as profile:
        common = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}"]
        r = subprocess.run(
            [*common, "--window-size=1280,7000", f"--screenshot={shot}", page.as_uri()],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert r.returncode == 0 and shot.is_file(), f"chromium screenshot failed: {r.stderr[-2000:]}"
        r = subprocess.run(
            [*common, "--virtual-time-budget=5000", "--dump-dom", page.as_uri()],
            capture_output=True,
            text=True,
            timeout=120,
        )
    n = html.count("<img ")
    assert n == 2 + 4 + 4 and re.search(rf'data-images-loaded="{n}"', r.stdout)
    img = cv2.imread(str(shot))
    assert img is not None and cv2.cvtColor(img, cv2.COLOR_BGR2GRAY).std() > 20
    shutil.copy(shot, tmp_path.parent / "report_real_screenshot.png")


# --------------------------------------------------------------------------
# Subgroups and paired comparisons: from the real writers to the page
# --------------------------------------------------------------------------


def _scored_runs(tmp_path, metadata, n=80, names=None):
    """Two runs of the same images by write_run_dir (probabilities, thresholds, subgroup metadata)."""
    from phow_baseline.evaluation import write_run_dir

    rng = np.random.default_rng(5)
    names = names or [f"{i:08d}_000.png" for i in range(n)]
    y = (rng.random((n, 3)) < 0.35).astype(int)
    y[:2], y[2:4] = 1, 0
    runs = []
    for k, model in enumerate(("bow", "fisher")):
        s = rng.normal(size=y.shape) + (1.0 + k) * y
        write_run_dir(
            tmp_path / model,
            model_name=model,
            kind="phow",
            split="test",
            names=names,
            y_true=y,
            scores=s,
            labels=LABELS[:3],
            probabilities=1 / (1 + np.exp(-s)),
            thresholds=[0.5, 0.5, 0.5],
            operating_rule="given",
            n_bootstrap=40,
            metadata=metadata,
        )
        runs.append(tmp_path / model)
    return runs, names


def _subgroup_frame(names, rng):
    n = len(names)
    return pd.DataFrame(
        {
            "sex": rng.choice(["M", "F"], n),
            "age": rng.integers(5, 95, n).astype(float),
            "view": rng.choice(["PA", "AP"], n),
            "follow_up": rng.integers(0, 3, n).astype(float),
        },
        index=pd.Index(names, name="name"),
    )


def test_run_dir_with_subgroups_and_a_comparison_in_the_report(tmp_path):
    from phow_baseline.evaluation.paired import compare_run_dirs, write_paired_dir

    names = [f"{i:08d}_000.png" for i in range(80)]
    runs, _ = _scored_runs(tmp_path, _subgroup_frame(names, np.random.default_rng(1)), names=names)
    m = json.loads((runs[0] / "metrics.json").read_text())
    sub = m["subgroups"]
    assert set(sub["dimensions"]) == {"sex", "age", "view", "followup"} and sub["problems"] == {}
    assert sub["threshold_on"] == "probability" and sub["caption"].startswith("AUROC gap of each subgroup")
    assert (runs[0] / "subgroups.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    labels = pd.read_csv(runs[0] / "labels.csv")
    assert labels.columns.tolist() == ["Image Index", *LABELS[:3]] and len(labels) == 80
    write_paired_dir(compare_run_dirs(runs, n_bootstrap=30), tmp_path / "cmp")
    page = write_report(runs, tmp_path / "site" / "rep", compare_dirs=[tmp_path / "cmp"], title="t")
    html = page.read_text()
    # the navigation lists exactly the sections on the page, in order
    nav = re.search(r"<nav>(.*?)</nav>", html).group(1)
    ids = re.findall(r"<section id='([a-z]+)'>", html)
    assert re.findall(r"href='#([a-z]+)'", nav) == ids
    assert ids == ["auroc", "compare", "roc", "calibration", "subgroups", "localization", "followup"]
    # subgroups: one compact table per run (all images + 2 + 5 + 2 + 2 groups), the figure with its caption
    table = _table(html, "subgroups")
    assert table.count("<tr>") == 1 + 1 + 11 and "mean FNR" in table and "age band (years)" in table
    assert "rowspan='5'" in table and html.count("<table class='subgroups'>") == 2
    assert html.count("AUROC gap of each subgroup to all 80 test images") == 2
    # the paired comparison: the mean difference in words, the forest plot and its caption, the link to paired.md
    assert "fisher (B) vs bow (A), 80 images" in html and "DeLong 95 % CI [" in html
    assert "AUROC difference B - A per class (B = fisher, A = bow)" in html
    assert "<a href='../../cmp/paired.md'>paired.md</a>" in html  # relative to the report's folder
    assert len(_decode_images(html)) == 2 * 3 + 1  # ROC, calibration, subgroups per run; one forest plot
    res = CliRunner().invoke(
        cli, ["report", *map(str, runs), "--compare", str(tmp_path / "cmp"), "--out", str(tmp_path / "r2")]
    )
    assert res.exit_code == 0, res.output
    assert "id='compare'" in (tmp_path / "r2" / "index.html").read_text()


def test_broken_metadata_gives_warnings_with_counts_and_a_complete_run(tmp_path):
    """One evaluation with a broken metadata frame, end to end: warnings with counts, no crash, the report says so."""
    from phow_baseline.evaluation import SubgroupMetadataWarning

    names = [f"{i:08d}_000.png" for i in range(80)]
    frame = _subgroup_frame(names, np.random.default_rng(2))
    frame = frame.drop(columns=["sex"])  # a missing column
    frame.iloc[:3, frame.columns.get_loc("age")] = [414, -1, np.nan]  # implausible and unknown ages
    frame.iloc[5:7, frame.columns.get_loc("view")] = "LL"  # an unknown view
    frame = frame.drop(index=names[-2:])  # two scored images without metadata
    with pytest.warns(SubgroupMetadataWarning) as rec:
        runs, _ = _scored_runs(tmp_path, frame, names=names)
    msgs = {str(w.message) for w in rec}
    assert any("no 'sex' (or 'Patient Gender') column" in m for m in msgs), msgs
    assert any("'age' is not an age in 0-120 years for 3 of 80" in m and "414" in m for m in msgs), msgs
    assert any("'view' is not one of PA/AP for 2 of 80" in m and "'LL'" in m for m in msgs), msgs
    assert any("2 of 80 scored image(s) are not in the metadata" in m for m in msgs), msgs
    m = json.loads((runs[0] / "metrics.json").read_text())  # strict JSON: json.loads would take NaN too
    sub = m["subgroups"]
    assert set(sub["dimensions"]) == {"age", "view", "followup"} and set(sub["problems"]) >= {"sex", "age", "view"}
    assert sub["dimensions"]["age"]["n_excluded"] == 3 + 2 and sub["dimensions"]["view"]["n_excluded"] == 2 + 2
    assert m["auroc"] and (runs[0] / "roc.png").is_file() and (runs[0] / "subgroups.png").is_file()
    html = write_report(runs[:1], tmp_path / "rep").read_text()
    warn = html[html.index("Metadata problems") :]
    assert "for 3 of 80 scored image(s)" in warn[: warn.index("</div>")]
    # not even a metadata table: the overall figures alone
    from phow_baseline.evaluation import write_run_dir

    with pytest.warns(SubgroupMetadataWarning, match="no metadata table"):
        m = write_run_dir(
            tmp_path / "x",
            model_name="x",
            kind="phow",
            split="test",
            names=names,
            y_true=np.eye(80, 2, dtype=int) + np.eye(80, 2, -2, dtype=int),
            scores=np.random.default_rng(0).normal(size=(80, 2)),
            labels=LABELS[:2],
            n_bootstrap=0,
            metadata=["not", "a", "table"],
        )
    assert (
        m["subgroups"]["dimensions"] == {}
        and "subgroups" in write_report([tmp_path / "x"], tmp_path / "r3").read_text()
    )
