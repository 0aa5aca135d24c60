"""``phow-baseline demo``: the whole PHOW baseline on a synthetic phantom (or a real folder)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from .pipeline import BaselineConfig, run_baseline

#: Phantom size of the demo: 400 patients (+ follow-ups) at 256x256, a few
#: minutes end to end on 2 cores.
DEMO_PATIENTS = 400
#: The demo's settings: VLFeat's PHOW and SVM defaults, a smaller
#: vocabulary (200 words from 40,000 descriptors) to keep it quick.
DEMO_CONFIG = dict(n_words=200, max_descriptors=40_000, vocab_images=150)


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "phow-baseline"


def run_demo(out_dir=None, data_dir=None, n_patients=DEMO_PATIENTS, seed=0, progress=True, n_bootstrap=1000,
             config: BaselineConfig | None = None) -> dict:
    """Generate the phantom (unless ``data_dir``), run the baseline, write the report.

    Returns ``{"metrics", "data_dir", "run_dir", "model_dir", "report", "synthetic"}``.
    """
    from .phantom import make_phantom_dataset

    out = Path(out_dir) if out_dir else default_cache_dir() / "demo"
    synthetic = data_dir is None
    if synthetic:
        try:
            data_dir = make_phantom_dataset(out / "phantom", n_patients=n_patients, seed=seed)
        except FileExistsError:  # the demo's own cache, from other settings or an older phantom:
            import shutil  # regenerate it, and drop the caches computed from the old images

            shutil.rmtree(out / "work", ignore_errors=True)
            data_dir = make_phantom_dataset(out / "phantom", n_patients=n_patients, seed=seed, overwrite=True)
        print(f"SYNTHETIC data: a phantom of {n_patients} patients in {data_dir} (not real X-rays)",
              file=sys.stderr)
    config = config or BaselineConfig(seed=seed, **DEMO_CONFIG)
    metrics = run_baseline(data_dir, out, config, progress=progress, n_bootstrap=n_bootstrap,
                           model_name="PHOW baseline (phantom)" if synthetic else "PHOW baseline")
    report = None
    try:
        from .report import write_report
    except ImportError:  # pragma: no cover - the report module is part of the package
        write_report = None
    if write_report is not None:
        report = write_report([out / "run"], out / "report",
                              title="phow-baseline demo" + (" (SYNTHETIC phantom data)" if synthetic else ""))
    return {"metrics": metrics, "data_dir": Path(data_dir), "run_dir": out / "run", "model_dir": out / "model",
            "report": report, "synthetic": synthetic}
