"""The peer gate of tests/conftest.py: a missing peer skips a developer's bare pytest,
and fails under ./run-tests (PHOW_BASELINE_REQUIRE_PEERS=1) or CI=true, with how to install it.
A missing CUDA device deselects the gpu tests (CI has none), unless PHOW_BASELINE_REQUIRE_GPU=1."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent

# Tests whose peers are made missing in the probe's own process: imports blocked in sys.modules, and
# ctypes unable to load any shared library (so libvl is missing too).
PROBE = """
import ctypes
import sys

sys.modules["cyvlfeat"] = sys.modules["cyvlfeat.sift"] = None
sys.modules["torch"] = sys.modules["torchvision"] = None
sys.modules["dask"] = sys.modules["dask.distributed"] = None


def _no_library(*args, **kwargs):
    raise OSError("cannot open shared object file (blocked by the probe)")


ctypes.CDLL = _no_library

import pytest
from conftest import require_peer


@pytest.mark.peer
def test_marked():
    pass


def test_fixture(torch):
    pass


def test_helper():
    require_peer("dask_distributed")


def test_libvl(libvl):
    pass


@pytest.mark.gpu
def test_gpu():
    pass


def test_without_peer():
    pass
"""


def _run(tmp_path, **env):
    shutil.copy(HERE / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "test_probe.py").write_text(PROBE)
    e = {
        k: v
        for k, v in os.environ.items()
        if k not in ("CI", "PHOW_BASELINE_REQUIRE_PEERS", "PHOW_BASELINE_REQUIRE_GPU")
    }
    e.update(env)
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-rsfE",
            "-p",
            "no:cacheprovider",
            "-W",
            "ignore::pytest.PytestUnknownMarkWarning",
            str(tmp_path),
        ],
        cwd=tmp_path,
        env=e,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_missing_peers_skip_with_how_to_install(tmp_path):
    r = _run(tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.search(r"\b1 passed, 4 skipped, 1 deselected\b", r.stdout), r.stdout
    skips = [ln for ln in r.stdout.splitlines() if ln.startswith("SKIPPED")]
    assert len(skips) == 4, r.stdout
    assert all("missing peer" in ln and "./run-tests" in ln for ln in skips), skips
    assert any("cyvlfeat" in ln and "libvlfeat-dev" in ln for ln in skips)
    assert any("libvl" in ln and "OSError" in ln and "apt-get install libvlfeat-dev" in ln for ln in skips)
    assert any("torch" in ln and '".[cnn]"' in ln for ln in skips)
    assert any("dask.distributed" in ln and '".[cluster]"' in ln for ln in skips)
    # the GPU test is deselected, and the summary says why
    assert "1 gpu test(s) deselected: no CUDA device" in r.stdout, r.stdout


@pytest.mark.parametrize("env", [{"PHOW_BASELINE_REQUIRE_PEERS": "1"}, {"CI": "true"}])
def test_missing_peers_fail_when_required(tmp_path, env):
    r = _run(tmp_path, **env)
    assert r.returncode == 1, r.stdout + r.stderr
    # the marker and the fixtures fail in set-up (errors), require_peer in the test (a failure); nothing skips;
    # CI has no GPU, so the GPU test stays deselected there
    assert re.search(r"\b1 failed, 1 passed, 1 deselected, 3 errors\b", r.stdout), r.stdout
    assert "skipped" not in r.stdout, r.stdout
    assert r.stdout.count("missing peer") >= 4 and "./run-tests" in r.stdout, r.stdout
    assert "libvlfeat-dev" in r.stdout


def test_missing_gpu_fails_when_required(tmp_path):
    r = _run(tmp_path, PHOW_BASELINE_REQUIRE_GPU="1")
    assert r.returncode == 1, r.stdout + r.stderr
    assert re.search(r"\b1 passed, 4 skipped, 1 error\b", r.stdout), r.stdout
    assert "deselected" not in r.stdout, r.stdout
    errors = [ln for ln in r.stdout.splitlines() if ln.startswith("ERROR")]
    assert len(errors) == 1 and "test_gpu" in errors[0] and "missing peer a CUDA device" in errors[0], r.stdout
