"""Shared fixtures: the real ChestX-ray14 sample, found through CHESTXRAY14_SAMPLE."""

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


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
        pytest.skip("the real ChestX-ray14 sample is not available: set CHESTXRAY14_SAMPLE")
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

    from phow_baseline.data import MissingImagesWarning
    from phow_baseline.pipeline import BaselineConfig, run_baseline

    out = tmp_path_factory.mktemp("phow_run")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MissingImagesWarning)
        metrics = run_baseline(sample_dir, out, BaselineConfig(**SMALL_CONFIG), progress=False, n_bootstrap=200)
    return out, metrics


SMALL_CONFIG = dict(n_words=64, max_descriptors=20_000, vocab_images=60, n_jobs=2)
