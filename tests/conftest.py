"""Shared fixtures: the real ChestX-ray14 sample (through CHESTXRAY14_SAMPLE) and the peers.

Peers
-----
A *peer* is something a test needs that the base install does not bring: VLFeat's
C code through ``cyvlfeat``, ``torch`` (the ``cnn`` extra), ``dask.distributed``
(the ``cluster`` extra) and the ``chromium`` browser.  ``./run-tests`` installs
them all.  Never use ``pytest.importorskip`` for a peer; ask for it here, so that
a missing peer is never silent:

* through a marker on the test: ``@pytest.mark.peer`` (cyvlfeat),
  ``@pytest.mark.cnn`` (torch), ``@pytest.mark.cluster`` (dask.distributed),
  ``@pytest.mark.browser`` (chromium); or
* through a fixture argument: ``cyvlfeat``, ``torch``, ``dask_distributed`` (the
  modules) or ``chromium`` (the path of the executable); or
* by calling ``require_peer("cyvlfeat")`` (returns the module / path) at the top
  of a test.

When ``PHOW_BASELINE_REQUIRE_PEERS=1`` (set by ``./run-tests``) or ``CI=true``,
a missing peer is a test *failure* whose message says how to install it.
Otherwise (a developer's bare ``pytest``) the test is *skipped* with the same
message (``pytest -rs`` lists them), one skip per test, so none disappears.
"""

import importlib
import os
import shutil
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

_RUN_TESTS = "run ./run-tests, which installs every peer"
#: name -> (what it is, how to install it by hand)
PEERS = {
    "cyvlfeat": ("cyvlfeat (VLFeat's C code, the dense-SIFT fidelity peer)",
                 "apt-get install libvlfeat-dev && pip install --no-build-isolation cyvlfeat==0.7.1"),
    "torch": ("torch and torchvision (the cnn extra)", 'pip install -e ".[cnn]"'),
    "dask_distributed": ("dask.distributed (the cluster extra)", 'pip install -e ".[cluster]"'),
    "chromium": ("the Chromium browser (the report's rendering test)", "apt-get install chromium"),
}
#: marker -> peer
MARKER_PEERS = {"peer": "cyvlfeat", "cnn": "torch", "cluster": "dask_distributed", "browser": "chromium"}


def peers_required() -> bool:
    """True under ``./run-tests`` (PHOW_BASELINE_REQUIRE_PEERS=1) or in CI (CI=true)."""
    flag = os.environ.get("PHOW_BASELINE_REQUIRE_PEERS", "").strip().lower() in ("1", "true", "yes")
    ci = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")
    return flag or ci


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        exe = shutil.which(name)
        if exe:
            return exe
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None


def _load_peer(name: str):
    """The peer (a module, or chromium's path), or raise ImportError/LookupError saying why not."""
    if name == "cyvlfeat":
        importlib.import_module("cyvlfeat.sift")
        return importlib.import_module("cyvlfeat")
    if name == "torch":
        importlib.import_module("torchvision")
        return importlib.import_module("torch")
    if name == "dask_distributed":
        return importlib.import_module("dask.distributed")
    if name == "chromium":
        exe = find_chromium()
        if exe is None:
            raise LookupError("no chromium executable on PATH")
        return exe
    raise KeyError(f"unknown peer {name!r}; known: {sorted(PEERS)}")


def peer_missing_message(name: str, why: str) -> str:
    what, how = PEERS[name]
    return f"missing peer {what}: {why}. To install it, {_RUN_TESTS} (or by hand: {how})"


def require_peer(name: str):
    """Return peer ``name`` (module, or chromium's path); fail or skip with how to install it.

    Fails when peers are required (``PHOW_BASELINE_REQUIRE_PEERS=1`` or ``CI=true``),
    skips otherwise; the message is the same.
    """
    if name not in PEERS:
        raise KeyError(f"unknown peer {name!r}; known: {sorted(PEERS)}")
    try:
        return _load_peer(name)
    except (ImportError, LookupError, OSError) as exc:
        msg = peer_missing_message(name, f"{type(exc).__name__}: {exc}")
    if peers_required():
        pytest.fail(msg, pytrace=False)
    pytest.skip(msg)


def pytest_configure(config):
    config.addinivalue_line("markers", "cluster: needs the cluster extra (dask.distributed)")
    config.addinivalue_line("markers", "gpu: needs a CUDA device; deselected (and counted as such in the "
                                       "summary line) on a machine without one")


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def pytest_collection_modifyitems(config, items):
    """GPU tests run only where a CUDA device is; elsewhere they are deselected, which pytest reports in
    its summary line ("N deselected"), rather than skipped."""
    gpu = [it for it in items if it.get_closest_marker("gpu") is not None]
    if gpu and not _cuda_available():
        config.hook.pytest_deselected(items=gpu)
        items[:] = [it for it in items if it.get_closest_marker("gpu") is None]


def applicable_checks(checks_mark, not_applicable: dict[str, str]):
    """scikit-learn's ``parametrize_with_checks`` less the checks that cannot apply to these estimators.

    ``not_applicable`` maps a check's function name to the reason it does not apply (e.g. the estimators
    take numpy arrays only, so the array-API check has nothing to test).  Such checks would otherwise
    raise ``SkipTest`` inside scikit-learn; they are dropped here, by name and with their reason, instead.
    """
    import functools

    def name(check):
        return check.func.__name__ if isinstance(check, functools.partial) else check.__name__

    values = [v for v in checks_mark.args[1]
              if name(v.values[1] if hasattr(v, "values") else v[1]) not in not_applicable]
    return pytest.mark.parametrize(checks_mark.args[0], values, **checks_mark.kwargs)


#: scikit-learn checks that do not apply to this package's estimators, with the reason.
SKLEARN_CHECKS_NOT_APPLICABLE = {
    "check_array_api_input": "the estimators compute on numpy arrays only (float32 GEMMs, Numba kernels); "
                             "they do not claim array-API support",
    "check_classifiers_multilabel_output_format_predict_proba": "OneVsRestSVM gives decision values; "
                             "probabilities come from the model's calibration (calibration.py), not the SVMs",
}


def pytest_runtest_setup(item):
    for marker, peer in MARKER_PEERS.items():
        if item.get_closest_marker(marker) is not None:
            require_peer(peer)


@pytest.fixture
def cyvlfeat():
    return require_peer("cyvlfeat")


@pytest.fixture
def torch():
    return require_peer("torch")


@pytest.fixture
def dask_distributed():
    return require_peer("dask_distributed")


@pytest.fixture
def chromium():
    return require_peer("chromium")


def _sample_dir() -> Path | None:
    env = os.environ.get("CHESTXRAY14_SAMPLE")
    if env:
        p = Path(env)
        if not p.is_absolute():
            p = (REPO_ROOT / p).resolve()
        if not (p / "Data_Entry_2017_v2020.csv.gz").exists():
            raise RuntimeError(f"CHESTXRAY14_SAMPLE={env} does not point at the ChestX-ray14 sample")
        return p
    p = (REPO_ROOT / ".." / "shared" / "chestxray14-sample").resolve()
    return p if p.exists() else None


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    p = _sample_dir()
    if p is None:
        msg = ("the real ChestX-ray14 sample is not available: set CHESTXRAY14_SAMPLE to its folder "
               "(./run-tests uses ../shared/chestxray14-sample)")
        if peers_required():
            pytest.fail(msg, pytrace=False)
        pytest.skip(msg)
    return p


@pytest.fixture(scope="session")
def sample_images(sample_dir) -> list[Path]:
    """The 481 real 512x512 sample images, sorted by name."""
    return sorted((sample_dir / "images").glob("*.png"))


@pytest.fixture(scope="session")
def sample_run(sample_dir, tmp_path_factory):
    """A small PHOW baseline trained on the sample's 422 train_val images, evaluated on its 59
    test images: ``(out_dir, metrics)`` with ``out_dir/model`` and ``out_dir/run``."""
    import warnings

    from phow_baseline.data.chestxray14 import MissingImagesWarning
    from phow_baseline.config import BaselineConfig
    from phow_baseline.workflow.steps import run_baseline

    out = tmp_path_factory.mktemp("phow_run")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MissingImagesWarning)
        metrics = run_baseline(sample_dir, out, BaselineConfig(**SMALL_CONFIG), progress=False, n_bootstrap=200)
    return out, metrics


SMALL_CONFIG = dict(n_words=64, max_descriptors=20_000, vocab_images=60, n_jobs=2)
