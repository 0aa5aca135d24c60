"""Package-level promises: torch stays out of the base install, the CLI lists its commands."""

import re
import subprocess
import sys

from click.testing import CliRunner

from phow_baseline.cli import main as cli


def test_base_modules_do_not_import_torch():
    code = ("import sys, phow_baseline.cli, phow_baseline.pipeline, phow_baseline.report, phow_baseline.localise, "
            "phow_baseline.followup, phow_baseline.phantom, phow_baseline.download, phow_baseline.model_io; "
            "from phow_baseline.cli import main; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_cli_help_lists_every_command():
    res = CliRunner().invoke(cli, ["--help"])
    assert res.exit_code == 0
    for cmd in ("info", "vocab", "encode", "train", "evaluate", "predict", "run", "compare", "localise",
                "localise-eval", "diff", "report", "demo", "phantom", "download", "cnn"):
        assert f"  {cmd} " in res.output or f"  {cmd}\n" in res.output, cmd


def test_info_command(sample_dir):
    res = CliRunner().invoke(cli, ["info", str(sample_dir)])
    assert res.exit_code == 0, res.output
    assert re.search(r"^test\s+25596\s+59\s+25537$", res.output, re.M)
    assert "boxes: 9 on 9 present images" in res.output
    bad = CliRunner().invoke(cli, ["info", str(sample_dir / "images")])
    assert bad.exit_code != 0 and "no metadata CSV" in bad.output
