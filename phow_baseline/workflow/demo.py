"""``phow-baseline demo``: the whole PHOW baseline on a synthetic phantom (or a real folder).

It shows every part of the library: it trains and evaluates the baseline
(per-class AUROC, calibration, operating points, subgroups), scores the
model's heatmaps against the phantom's boxes (``localize-eval``), differences
one of the phantom's follow-up pairs with the model (``diff``), and puts all
of it in one report, so no section of the report is empty.

The demo writes into one folder (``~/.cache/phow-baseline/demo`` unless told
otherwise) and says so.  Its caches (the phantom, the image cache, the
vocabulary, the features) are reused by a later demo only when the
fingerprint recorded in ``OUT/demo.json`` (the versions of phow-baseline and
of the libraries that compute the caches, and every parameter) matches;
otherwise the demo's own subfolders are deleted and regenerated.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from ..config import BaselineConfig
from ..encoding.registry import get_encoding
from ..io import atomic_write_json, jsonable, read_json
from .steps import run_baseline

logger = logging.getLogger(__name__)

#: Phantom size of the demo: 400 patients (+ follow-ups) at 256x256, a few
#: minutes end to end on 2 cores.
DEMO_PATIENTS = 400
#: The demo's settings: VLFeat's PHOW and SVM defaults, a smaller
#: vocabulary (200 words from 40,000 descriptors) to keep it quick.
DEMO_CONFIG = dict(n_words=200, max_descriptors=40_000, vocab_images=150)
#: The record of what the demo's folder holds.
FINGERPRINT_FILE = "demo.json"
#: The subfolders (and files) a demo writes; the only ones it deletes when its fingerprint changed.
DEMO_OUTPUTS = ("phantom", "work", "model", "run", "localization", "diff", "report", "config.json")


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/phow-baseline`` (``~/.cache/phow-baseline`` when unset).

    Returns
    -------
    pathlib.Path
        The per-user cache folder of phow-baseline (the demo writes into its ``demo/``); not created.
    """
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "phow-baseline"


def demo_fingerprint(config: BaselineConfig, data_dir=None, n_patients=DEMO_PATIENTS, seed=0) -> dict:
    """What the demo's caches depend on: the versions of the code that computes them and every parameter.

    Parameters
    ----------
    config : BaselineConfig
        The demo's settings (all of them are recorded).
    data_dir : path, optional
        A real dataset folder (recorded resolved); None for the phantom.
    n_patients : int, default DEMO_PATIENTS (400)
        Phantom patients (recorded only for the phantom).
    seed : int, default 0
        Seed of the phantom and of the baseline.

    Returns
    -------
    dict
        JSON-ready ``{"versions": {"phow_baseline", "numpy", "opencv", "scikit-learn"}, "data",
        "n_patients", "seed", "config"}``; two demos may share caches when these are equal.
    """
    import cv2
    import numpy
    import sklearn

    from .. import __version__

    return jsonable(
        {
            "versions": {
                "phow_baseline": __version__,
                "numpy": numpy.__version__,
                "opencv": cv2.__version__,
                "scikit-learn": sklearn.__version__,
            },
            "data": "phantom" if data_dir is None else str(Path(data_dir).resolve()),
            "n_patients": n_patients if data_dir is None else None,
            "seed": seed,
            "config": config.to_dict(),
        }
    )


def _differences(old: dict, new: dict, prefix="") -> list[str]:
    out = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix}{k} {a!r} -> {b!r}")
    return out


def prepare_demo_dir(out, fingerprint: dict, log=None) -> bool:
    """Make ``out`` hold only caches made with ``fingerprint``; returns True when they are reused.

    A folder with another fingerprint, or with demo outputs and no
    fingerprint (an older version), loses the demo's own subfolders
    (:data:`DEMO_OUTPUTS`); nothing else in it is touched.  The folder is
    created and ``demo.json`` (re)written with ``fingerprint``.

    Parameters
    ----------
    out : str or path-like
        The demo's folder.
    fingerprint : dict
        What the caches must have been made with (:func:`demo_fingerprint`).
    log : callable, optional
        ``log(message)`` for the one line saying what happens (default: the module's logger at INFO).

    Returns
    -------
    bool
        True when demo outputs are there and were made with ``fingerprint`` (they are reused); False when
        there were none or they were deleted.
    """
    log = log or logger.info
    out = Path(out)
    record = out / FINGERPRINT_FILE
    leftovers = [n for n in DEMO_OUTPUTS if (out / n).exists()]
    old = None
    if record.exists():
        try:
            old = read_json(record, what="demo fingerprint").get("fingerprint")
        except ValueError:  # a damaged record: regenerate
            old = None
    if old == fingerprint:
        if leftovers:
            log(f"demo: reusing the caches in {out} (same versions and settings)")
        reused = bool(leftovers)
    else:
        if leftovers:
            why = (
                "made with " + "; ".join(_differences(old, fingerprint)[:6])
                if isinstance(old, dict)
                else "made by an older version (no fingerprint)"
            )
            log(f"demo: the caches in {out} were {why}: regenerating them")
            for n in leftovers:
                p = out / n
                shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
        reused = False
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(record, {"fingerprint": fingerprint})
    return reused


def demo_followup_pair(data_dir, synthetic: bool) -> tuple[Path, Path] | None:
    """The follow-up pair the demo differences: the first and last image of one patient's series.

    For the phantom, a follow-up series (``phantom_truth.json``) of a test patient, by the change it
    draws: a finding that appears first (the plainest story: an effusion absent, then present), then
    one that grows, then any (else a series of a training patient).  For a real ChestX-ray14 folder,
    the first test patient with two images present.

    Parameters
    ----------
    data_dir : str or path-like
        The dataset folder (ChestX-ray14 layout).
    synthetic : bool
        Whether it is the demo's phantom.

    Returns
    -------
    (Path, Path) or None
        The earlier and the later image, or None when the folder has no such pair.
    """
    from ..data import ChestXray14

    ds = ChestXray14(data_dir)
    test = ds.split_names("test")
    if synthetic:
        from ..data.phantom import load_truth

        rank = {"appears": 0, "grows": 1}
        series = [(f.get("change"), [e["image"] for e in f["series"]]) for f in load_truth(data_dir)["followups"]]
        series = [(c, x) for c, x in series if len(x) >= 2 and all(n in ds.present for n in x)]
        test_set = set(test)
        series.sort(key=lambda cx: (cx[1][0] not in test_set, rank.get(cx[0], len(rank))))
        chosen = series[0][1] if series else None
    else:
        chosen = None
        for patient in dict.fromkeys(ds.patients(test).tolist()):
            names = ds.followup_series(patient)
            if len(names) >= 2:
                chosen = names
                break
    if not chosen:
        return None
    return ds.image_path(chosen[0]), ds.image_path(chosen[-1])


def _demo_extras(out: Path, data_dir, synthetic: bool, model_name: str, progress: bool) -> tuple[list, list]:
    """The localization evaluation and the follow-up difference of the demo's model (lists of folders)."""
    from ..data import DatasetError
    from ..model import load_model
    from .localize import diff_images, evaluate_localization_dir

    model = load_model(out / "model")
    loc_dirs, diff_dirs = [], []
    if model.has_heatmaps:
        try:
            evaluate_localization_dir(model, data_dir, out / "localization", name=model_name, progress=progress)
            loc_dirs.append(out / "localization")
        except DatasetError as exc:
            if synthetic:
                raise
            logger.info("demo: no localization evaluation (%s)", exc)
    else:
        logger.info("demo: the %s model has no heatmaps: no localization evaluation", model.kind)
    try:
        pair = demo_followup_pair(data_dir, synthetic)
    except DatasetError as exc:
        if synthetic:
            raise
        logger.info("demo: no follow-up pair (%s)", exc)
        pair = None
    if pair is not None:
        diff_images(pair[0], pair[1], out / "diff", model=model)
        diff_dirs.append(out / "diff")
    elif not synthetic:
        logger.info("demo: no test patient with two images present: no follow-up difference")
    return loc_dirs, diff_dirs


def run_demo(
    out_dir=None,
    data_dir=None,
    n_patients=DEMO_PATIENTS,
    seed=0,
    progress=True,
    n_bootstrap=1000,
    config: BaselineConfig | None = None,
    encoding: str = "bow",
) -> dict:
    """Generate the phantom (unless ``data_dir``), run the baseline, write the report.

    Then scores the model's heatmaps against the boxes (``OUT/localization``) and differences one
    follow-up pair with the model (``OUT/diff``; see :func:`demo_followup_pair`), and writes the report
    of all three.

    Parameters
    ----------
    out_dir : path, optional
        The demo's folder (default ``~/.cache/phow-baseline/demo``).
    data_dir : path, optional
        A real dataset folder instead of the phantom.
    n_patients : int, default DEMO_PATIENTS (400)
        Patients of the phantom (each has one image; a few have a follow-up series).
    seed : int, default 0
        Seed of the phantom and of the baseline.
    progress : bool, default True
        Show progress bars (on a terminal).
    n_bootstrap : int, default 1000
        Bootstrap resamples of the 95 % intervals.
    config : BaselineConfig, optional
        Default: the demo's settings (:data:`DEMO_CONFIG`) for ``encoding``.
    encoding : str, default "bow"
        The registered encoding of the default config (``"bow"``, ``"fisher"``, ``"vlad"``).  The
        bag of words (the ``vlfeat`` preset's C and float32 shards), not the default recipe's Fisher
        vectors: the demo shows the heatmaps, their localization and their follow-up differences,
        which only the bag of words gives.

    Returns
    -------
    dict
        ``{"metrics", "data_dir", "run_dir", "model_dir", "localization_dirs", "diff_dirs", "report",
        "synthetic", "out_dir", "reused"}``: the run's ``metrics.json`` contents, the folders (Paths;
        ``report`` is the ``index.html``), whether the data is the phantom and whether caches were reused.

    Raises
    ------
    phow_baseline.io.OutOfSpaceError
        The phantom and the run cannot fit on the disk of ``out_dir`` (checked before any work).
    """
    from ..data.phantom import make_phantom_dataset

    out = Path(out_dir) if out_dir else default_cache_dir() / "demo"
    synthetic = data_dir is None
    # each encoding's demo settings are scaled to the demo's size (Fisher vectors: 64 Gaussians on PCA-64)
    config = config or BaselineConfig(
        seed=seed, encoding=encoding, **DEMO_CONFIG, **get_encoding(encoding).demo_settings
    )
    logger.info("demo: writing to %s (choose another folder with --out)", out)
    reused = prepare_demo_dir(out, demo_fingerprint(config, data_dir, n_patients, seed))
    if synthetic:
        from .disk import check_demo_space  # the phantom and the run against the free space, before any work

        check_demo_space(out, n_patients, config)
        data_dir = make_phantom_dataset(out / "phantom", n_patients=n_patients, seed=seed)
        logger.info("SYNTHETIC data: a phantom of %d patients in %s (not real X-rays)", n_patients, data_dir)
    model_name = "PHOW baseline (phantom)" if synthetic else "PHOW baseline"
    metrics = run_baseline(data_dir, out, config, progress=progress, n_bootstrap=n_bootstrap, model_name=model_name)
    loc_dirs, diff_dirs = _demo_extras(out, data_dir, synthetic, metrics.get("model", model_name), progress)
    from ..report.html import write_report

    report = write_report(
        [out / "run"],
        out / "report",
        loc_dirs,
        diff_dirs,
        title="phow-baseline demo" + (" (SYNTHETIC phantom data)" if synthetic else ""),
    )
    return {
        "metrics": metrics,
        "data_dir": Path(data_dir),
        "run_dir": out / "run",
        "model_dir": out / "model",
        "localization_dirs": loc_dirs,
        "diff_dirs": diff_dirs,
        "report": Path(report),
        "synthetic": synthetic,
        "out_dir": out,
        "reused": reused,
    }
