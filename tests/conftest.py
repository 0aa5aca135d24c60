"""Shared fixtures: the real ChestX-ray14 sample (through CHESTXRAY14_SAMPLE) and the peers.

Peers
-----
A *peer* is something a test needs that the base install does not bring: VLFeat's
C library ``libvl`` and its Python binding ``cyvlfeat``, ``torch`` (the ``cnn``
extra), ``dask.distributed`` (the ``cluster`` extra), the ``chromium`` browser and
a CUDA device.  ``./run-tests`` installs all but the GPU.  Every test that needs a
peer carries the peer's marker, and every check goes through one helper,
:func:`require_peer`; ``pytest.importorskip`` is not used for a peer (a module-level
one would hide a whole file; ``tests/test_tooling.py`` forbids them):

* the marker: ``@pytest.mark.peer`` (cyvlfeat and libvl), ``@pytest.mark.cnn``
  (torch), ``@pytest.mark.cluster`` (dask.distributed), ``@pytest.mark.browser``
  (chromium), ``@pytest.mark.gpu`` (a CUDA device);
* the object itself: a fixture argument ``cyvlfeat``, ``libvl``, ``torch``,
  ``dask_distributed`` (modules; libvl's ``ctypes.CDLL``) or ``chromium`` (the
  executable's path), or ``require_peer(name)`` in the test or its helpers.

When ``PHOW_BASELINE_REQUIRE_PEERS=1`` (set by ``./run-tests``) or ``CI=true``,
a missing peer is a test *failure* whose message says how to install it.
Otherwise (a developer's bare ``pytest``) the test is *skipped* with the same
message (``pytest -rs`` lists them), one skip per test, so none disappears.

The GPU is the exception, since CI has none: on a machine without a CUDA device
the ``gpu`` tests are deselected (the summary line counts them, and a last line
says why), unless ``PHOW_BASELINE_REQUIRE_GPU=1``, which keeps them so that a
missing device fails (for a GPU runner).
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
    "cyvlfeat": (
        "cyvlfeat (VLFeat's C code, the dense-SIFT fidelity peer)",
        "apt-get install libvlfeat-dev && pip install --no-build-isolation cyvlfeat==0.7.1",
    ),
    "libvl": (
        "VLFeat's C library libvl (the reference the fidelity tests call through ctypes)",
        "apt-get install libvlfeat-dev",
    ),
    "torch": ("torch and torchvision (the cnn extra)", 'pip install -e ".[cnn]"'),
    "dask_distributed": ("dask.distributed (the cluster extra)", 'pip install -e ".[cluster]"'),
    "chromium": ("the Chromium browser (the report's rendering test)", "apt-get install chromium"),
    "cuda": (
        "a CUDA device (torch.cuda.is_available())",
        "a machine with an NVIDIA GPU, its driver and a CUDA build of torch",
    ),
}
#: marker -> the peers its tests need
#: (gpu first: under PHOW_BASELINE_REQUIRE_GPU=1 a missing torch or device fails before the cnn marker could skip)
MARKER_PEERS = {
    "gpu": ("cuda",),
    "peer": ("cyvlfeat", "libvl"),
    "cnn": ("torch",),
    "cluster": ("dask_distributed",),
    "browser": ("chromium",),
}


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes")


def peers_required() -> bool:
    """True under ``./run-tests`` (PHOW_BASELINE_REQUIRE_PEERS=1) or in CI (CI=true)."""
    return _env_flag("PHOW_BASELINE_REQUIRE_PEERS") or _env_flag("CI")


def gpu_required() -> bool:
    """True when ``PHOW_BASELINE_REQUIRE_GPU=1``: a missing CUDA device fails the ``gpu`` tests."""
    return _env_flag("PHOW_BASELINE_REQUIRE_GPU")


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        exe = shutil.which(name)
        if exe:
            return exe
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None


def _load_peer(name: str):
    """The peer (a module, or chromium's path), or raise ImportError/LookupError saying why not."""
    if name == "cyvlfeat":
        for sub in ("sift", "fisher", "vlad"):  # the parts the fidelity tests call
            importlib.import_module(f"cyvlfeat.{sub}")
        return importlib.import_module("cyvlfeat")
    if name == "libvl":
        import ctypes
        import ctypes.util

        return ctypes.CDLL(ctypes.util.find_library("vl") or "libvl.so.1")  # OSError when absent
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
    if name == "cuda":
        torch = importlib.import_module("torch")
        if not torch.cuda.is_available():
            raise LookupError("torch.cuda.is_available() is False")
        return torch.device("cuda")
    raise KeyError(f"unknown peer {name!r}; known: {sorted(PEERS)}")


def peer_missing_message(name: str, why: str) -> str:
    what, how = PEERS[name]
    if name == "cuda":  # nothing to install: ./run-tests cannot bring a GPU
        return f"missing peer {what}: {why}. This test needs {how}"
    return f"missing peer {what}: {why}. To install it, {_RUN_TESTS} (or by hand: {how})"


def require_peer(name: str):
    """Return peer ``name``; fail or skip, saying how to install it, when it is missing.

    The one place tests check a peer (markers, fixtures and helpers all come here).  It fails when
    peers are required (``PHOW_BASELINE_REQUIRE_PEERS=1`` or ``CI=true``; for ``cuda``,
    ``PHOW_BASELINE_REQUIRE_GPU=1``) and skips otherwise, with the same message.

    Parameters
    ----------
    name : str
        A key of :data:`PEERS`.

    Returns
    -------
    object
        The module (``cyvlfeat``, ``torch``, ``dask.distributed``), libvl's ``ctypes.CDLL``,
        chromium's path or the CUDA ``torch.device``.
    """
    if name not in PEERS:
        raise KeyError(f"unknown peer {name!r}; known: {sorted(PEERS)}")
    try:
        return _load_peer(name)
    except (ImportError, LookupError, OSError) as exc:
        msg = peer_missing_message(name, f"{type(exc).__name__}: {exc}")
    if gpu_required() if name == "cuda" else peers_required():
        pytest.fail(msg, pytrace=False)
    pytest.skip(msg)


def peer_available(name: str) -> bool:
    """Whether peer ``name`` loads here (no skip, no failure): for decisions at collection time."""
    try:
        _load_peer(name)
    except (ImportError, LookupError, OSError):
        return False
    return True


def pytest_configure(config):
    config.addinivalue_line("markers", "cluster: needs the cluster extra (dask.distributed)")
    config.addinivalue_line(
        "markers",
        "gpu: needs a CUDA device; deselected (and counted as such in the "
        "summary line) on a machine without one, unless PHOW_BASELINE_REQUIRE_GPU=1",
    )


#: how many gpu tests were deselected for want of a CUDA device (for the summary's last line)
_GPU_DESELECTED = pytest.StashKey[int]()


def pytest_collection_modifyitems(config, items):
    """GPU tests run only where a CUDA device is; elsewhere they are deselected, which pytest reports in
    its summary line ("N deselected"), rather than skipped; :func:`pytest_terminal_summary` says why.
    With ``PHOW_BASELINE_REQUIRE_GPU=1`` they are kept, and fail through :func:`require_peer`."""
    gpu = [it for it in items if it.get_closest_marker("gpu") is not None]
    if gpu and not gpu_required() and not peer_available("cuda"):
        config.hook.pytest_deselected(items=gpu)
        items[:] = [it for it in items if it.get_closest_marker("gpu") is None]
        config.stash[_GPU_DESELECTED] = len(gpu)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    n = config.stash.get(_GPU_DESELECTED, 0)
    if n:
        terminalreporter.write_line(
            f"{n} gpu test(s) deselected: no CUDA device here (torch missing or "
            "torch.cuda.is_available() False); PHOW_BASELINE_REQUIRE_GPU=1 makes them fail"
        )


def applicable_checks(checks_mark, not_applicable: dict[str, str]):
    """scikit-learn's ``parametrize_with_checks`` less the checks that cannot apply to these estimators.

    ``not_applicable`` maps a check's function name to the reason it does not apply (e.g. the estimators
    take numpy arrays only, so the array-API check has nothing to test).  Such checks would otherwise
    raise ``SkipTest`` inside scikit-learn; they are dropped here, by name and with their reason, instead.
    """
    import functools

    def name(check):
        return check.func.__name__ if isinstance(check, functools.partial) else check.__name__

    values = [
        v for v in checks_mark.args[1] if name(v.values[1] if hasattr(v, "values") else v[1]) not in not_applicable
    ]
    return pytest.mark.parametrize(checks_mark.args[0], values, **checks_mark.kwargs)


#: scikit-learn checks that do not apply to this package's estimators, with the reason.
SKLEARN_CHECKS_NOT_APPLICABLE = {
    "check_array_api_input": "the estimators compute on numpy arrays only (float32 GEMMs, Numba kernels); "
    "they do not claim array-API support",
    "check_classifiers_multilabel_output_format_predict_proba": "OneVsRestSVM gives decision values; "
    "probabilities come from the model's calibration (calibration.py), not the SVMs",
}


def pytest_runtest_setup(item):
    for marker, peers in MARKER_PEERS.items():
        if item.get_closest_marker(marker) is not None:
            for peer in peers:
                require_peer(peer)


@pytest.fixture(autouse=True)
def _library_notes_on_stderr():
    """The library's log (notes at INFO, progress lines) on stderr in every test, as the CLI shows it by
    default; reset before each test, so that a CLI test's --quiet or --verbose does not leak into the next."""
    import logging

    from phow_baseline.progress import configure_logging

    configure_logging(logging.INFO)


@pytest.fixture
def cyvlfeat():
    return require_peer("cyvlfeat")


@pytest.fixture
def libvl():
    return require_peer("libvl")


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
        msg = (
            "the real ChestX-ray14 sample is not available: set CHESTXRAY14_SAMPLE to its folder "
            "(./run-tests uses ../shared/chestxray14-sample)"
        )
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

    from phow_baseline.config import BaselineConfig
    from phow_baseline.data.chestxray14 import MissingImagesWarning
    from phow_baseline.workflow.steps import run_baseline

    out = tmp_path_factory.mktemp("phow_run")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MissingImagesWarning)
        metrics = run_baseline(
            sample_dir, out, BaselineConfig.from_preset("vlfeat", **SMALL_CONFIG), progress=False, n_bootstrap=200
        )
    return out, metrics


SMALL_CONFIG = dict(n_words=64, max_descriptors=20_000, vocab_images=60, n_jobs=2)
