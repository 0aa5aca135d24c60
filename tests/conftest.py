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
