"""The static HTML report: content, escaping, and rendering in a real browser."""

import base64
import json
import re
import shutil
import subprocess
import tempfile

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from phow_baseline.cli import main as cli
from phow_baseline.data import LABELS
from phow_baseline.report import write_report


@pytest.fixture(scope="module")
def report_inputs(sample_run, sample_dir, tmp_path_factory):
    """A real run, its localisation evaluation, a follow-up diff, and a run with a hostile name."""
    out, _ = sample_run
    tmp = tmp_path_factory.mktemp("report_inputs")
    r = CliRunner()
    assert r.invoke(cli, ["localise-eval", str(out / "model"), str(sample_dir), "--out", str(tmp / "loc"),
                          "--quiet"]).exit_code == 0
    fu = sorted((sample_dir / "followups").glob("*.png"))
    assert r.invoke(cli, ["diff", str(fu[4]), str(fu[6]), "--model", str(out / "model"), "--out",
                          str(tmp / "diff")]).exit_code == 0
    evil = tmp / "evil_run"
    shutil.copytree(out / "run", evil)
    m = json.loads((evil / "metrics.json").read_text())
    m["model"] = "<script>alert('x')</script>"
    (evil / "metrics.json").write_text(json.dumps(m))
    return [out / "run", evil], [tmp / "loc"], [tmp / "diff"]


def test_report_content_and_escaping(report_inputs, tmp_path):
    runs, locs, diffs = report_inputs
    page = write_report(runs, tmp_path / "rep", locs, diffs, title="Sample & <report>")
    html = page.read_text()
    assert "<script>" not in html and "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in html
    assert "Sample &amp; &lt;report&gt;" in html
    auroc = html[html.index("<table class='auroc'>"):]
    auroc = auroc[: auroc.index("</table>")]
    assert auroc.count("<tr>") == 1 + len(LABELS) and "class='mean'" in auroc
    assert "Wang2017_official" in auroc and "CheXNet_random" in auroc
    imgs = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    assert len(imgs) >= 2 + 6 + 4  # ROC curves, heatmaps, dashboard
    for b64 in imgs:
        arr = cv2.imdecode(np.frombuffer(base64.b64decode(b64), np.uint8), cv2.IMREAD_COLOR)
        assert arr is not None and arr.size > 0
    assert "Follow-up dashboard" in html and "00000032_011.png" in html and "T(IoBB)=0.5" in html


def test_report_errors_name_the_file(tmp_path):
    (tmp_path / "r").mkdir()
    with pytest.raises(FileNotFoundError, match="metrics.json"):
        write_report([tmp_path / "r"], tmp_path / "out")
    res = CliRunner().invoke(cli, ["report", str(tmp_path / "r"), "--out", str(tmp_path / "o")])
    assert res.exit_code != 0 and "metrics.json" in res.output


CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars"]


@pytest.mark.browser
@pytest.mark.slow
def test_report_renders_in_chromium(report_inputs, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "Chromium is not installed (.ci/run installs Debian's chromium)"
    runs, locs, diffs = report_inputs
    page = write_report(runs, tmp_path / "rep", locs, diffs, title="Rendered report")
    shot = tmp_path / "shot.png"
    with tempfile.TemporaryDirectory() as profile:
        common = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}"]
        subprocess.run([*common, "--window-size=1280,2400", f"--screenshot={shot}", page.as_uri()],
                       check=True, capture_output=True, timeout=120)
        dom = subprocess.run([*common, "--dump-dom", page.as_uri()], check=True, capture_output=True,
                             text=True, timeout=120).stdout
    # the browser parsed the tables and images
    assert dom.count("<table") >= 4 and dom.count("<img") >= 12
    assert "Per-class AUROC" in dom and "Atelectasis" in dom
    img = cv2.imread(str(shot))
    assert img is not None and img.shape[:2] == (2400, 1280)
    # not a blank page: dark text, and colour from the embedded figures (ROC curves, heatmaps)
    grey = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    assert (grey < 100).mean() > 0.005
    hsv = cv2.cvtColor(img, cv2.COLOR_BGR2HSV)
    assert (hsv[..., 1] > 80).mean() > 0.01
    shutil.copy(shot, tmp_path.parent / "report_screenshot.png")
