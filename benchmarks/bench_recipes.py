"""The recipe search: cross-validated, paired comparison of configurations on the real sample (issue 25).

Usage::

    python benchmarks/bench_recipes.py [--sample DIR] [--out DIR] [--stage coarse|fine|all]
        [--only NAME,NAME] [--folds 3] [--n-bootstrap 1000] [--n-jobs -1] [--list]

Every configuration is the ``vlfeat`` preset with a few settings changed
(:data:`SEARCH`), cross-validated by :func:`phow_baseline.workflow.cv.cross_validate`
(``phow-baseline cv``) on the same patient-wise folds of the sample's 481
images (all splits pooled), each in ``OUT/<name>``, all sharing the caches
of ``OUT/work`` (the image cache of a size and equalization, and each fold's
vocabulary and features, which ``C`` does not change).  So every
configuration scores the same images out of fold, and each is compared with
the ``vlfeat`` preset **paired** (:func:`phow_baseline.evaluation.compare_runs`:
the paired bootstrap of the mean AUROC difference over the same resampled
images).  ``bow+fisher`` is a late fusion, not a configuration: the mean of
the two runs' out-of-fold SVM margins, each class's margins standardized
(z-scored over the images, which keeps each run's AUROC) so that neither
scale dominates; it needs no training of its own.

Stages, coarse to fine: ``coarse`` (bag of words vs Fisher vectors at 256 px,
and Fisher vectors stored in float16), then ``fine`` (image size 384 and 512,
PHOW step and sizes, words 1,000 and 2,000, Gaussians 64/128/512, PCA 64 and
128, regions ``1x1+3x1``, CLAHE, C 1 and 100, VLAD).  Rerunning resumes: a
configuration whose folds are all done is read back (its time per image is
that of the call that computed it, kept in ``OUT/<name>/bench.json``).

Axes the configuration cannot express today (so not searched): the regions
"both" (``1x1 + 2x2 + 3x1`` in one vector) and late fusion inside a model
(the fusion here is of two models' scores).

Writes ``OUT/recipes.md`` and ``OUT/recipes.csv`` (configuration, mean
AUROC [95% CI], paired difference vs ``vlfeat`` [95% CI], seconds per
image, feature disk per image) and prints the table with the load average.
Seconds per image are the wall time of a configuration's cross-validation
(all folds: vocabulary, encoding, SVMs, scoring) over the images, on this
shared machine; configurations that reuse an earlier one's caches (C, the
float16 store's vocabulary) are cheaper than on their own.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

#: The search: name -> (stage, settings changed from the ``vlfeat`` preset).
SEARCH: dict[str, tuple[str, dict]] = {
    "vlfeat": ("coarse", {}),
    "fisher": ("coarse", {"encoding": "fisher", "fv_components": 256, "fv_pca_dims": 80}),
    "fisher-f16": (
        "coarse",
        {"encoding": "fisher", "fv_components": 256, "fv_pca_dims": 80, "feature_dtype": "float16"},
    ),
    # fine: one axis at a time around the coarse winner's neighbourhood
    "bow-384": ("fine", {"size": 384}),
    "bow-512": ("fine", {"size": 512}),
    "bow-step4": ("fine", {"step": 4}),
    "bow-sizes6-12": ("fine", {"sizes": (6, 8, 10, 12)}),
    "bow-1000w": ("fine", {"n_words": 1000}),
    "bow-2000w": ("fine", {"n_words": 2000}),
    "bow-clahe": ("fine", {"equalization": "clahe"}),
    "bow-C1": ("fine", {"C": 1.0}),
    "bow-C100": ("fine", {"C": 100.0}),
    # C >= 1 leaves the sample's bag of words in the hard-margin regime (every dual below C): go lower
    "bow-C0.1": ("fine", {"C": 0.1}),
    "bow-C0.01": ("fine", {"C": 0.01}),
    "fisher-64g": ("fine", {"encoding": "fisher", "fv_components": 64, "fv_pca_dims": 80}),
    "fisher-128g": ("fine", {"encoding": "fisher", "fv_components": 128, "fv_pca_dims": 80}),
    "fisher-512g": ("fine", {"encoding": "fisher", "fv_components": 512, "fv_pca_dims": 80}),
    "fisher-pca64": ("fine", {"encoding": "fisher", "fv_components": 256, "fv_pca_dims": 64}),
    "fisher-pca128": ("fine", {"encoding": "fisher", "fv_components": 256, "fv_pca_dims": 128}),
    "fisher-3x1": ("fine", {"encoding": "fisher", "regions": "1x1+3x1"}),
    "fisher-3x1-C1": ("fine", {"encoding": "fisher", "regions": "1x1+3x1", "C": 1.0}),
    "fisher-384": ("fine", {"encoding": "fisher", "size": 384}),
    "fisher-clahe": ("fine", {"encoding": "fisher", "equalization": "clahe"}),
    "fisher-C1": ("fine", {"encoding": "fisher", "C": 1.0}),
    "fisher-C0.1": ("fine", {"encoding": "fisher", "C": 0.1}),
    "vlad": ("fine", {"encoding": "vlad", "vlad_words": 64}),
}
#: Late fusions: name -> (stage, the two configurations whose standardized margins are averaged).
FUSIONS: dict[str, tuple[str, tuple[str, str]]] = {"bow+fisher": ("coarse", ("vlfeat", "fisher"))}
#: The configuration every other one is compared with, paired.
REFERENCE = "vlfeat"


def _scores(run_dir: Path, labels):
    from phow_baseline.evaluation import read_predictions

    f = run_dir / "scores.csv" if (run_dir / "scores.csv").exists() else run_dir / "predictions.csv"
    return read_predictions(f, labels)


def fuse(run_a: Path, run_b: Path, out: Path, labels, seed: int, n_bootstrap: int) -> dict:
    """The late fusion of two cross-validated runs: mean of their per-class z-scored margins (a run dir)."""
    from phow_baseline.evaluation import read_metrics, write_run_dir
    from phow_baseline.evaluation.paired import read_truth

    names_a, sa = _scores(run_a, labels)
    names_b, sb = _scores(run_b, labels)
    if names_a != names_b:
        raise ValueError(f"{run_a} and {run_b}: scored other images; cannot fuse")

    def z(s):
        sd = s.std(0)
        return (s - s.mean(0)) / np.where(sd > 0, sd, 1.0)

    y = read_truth(run_a / "labels.csv", names_a, labels)
    ma, mb = read_metrics(run_a), read_metrics(run_b)
    return write_run_dir(
        out,
        model_name=f"late fusion of {ma['model']} and {mb['model']}",
        kind="phow",
        split=ma["split"],
        names=names_a,
        y_true=y,
        scores=(z(sa) + z(sb)) / 2,
        labels=labels,
        n_bootstrap=n_bootstrap,
        seed=seed,
        extra={"fusion": {"runs": [str(run_a), str(run_b)], "rule": "mean of per-class z-scored SVM margins"}},
    )


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sample", default=os.environ.get("CHESTXRAY14_SAMPLE", "../shared/chestxray14-sample"))
    ap.add_argument("--out", default="runs/bench_recipes")
    ap.add_argument("--stage", choices=("coarse", "fine", "all"), default="coarse")
    ap.add_argument("--only", default="", help="Comma-separated configuration names (default: the stage's).")
    ap.add_argument("--folds", type=int, default=3)
    ap.add_argument("--n-bootstrap", type=int, default=1000)
    ap.add_argument("--n-jobs", type=int, default=-1)
    ap.add_argument("--list", action="store_true", help="List the search and exit.")
    args = ap.parse_args(argv)

    if args.list:
        for name, (stage, over) in SEARCH.items():
            print(f"{stage:7s} {name:16s} {over}")
        for name, (stage, pair) in FUSIONS.items():
            print(f"{stage:7s} {name:16s} late fusion of {pair}")
        return 0

    from phow_baseline.config import BaselineConfig
    from phow_baseline.evaluation import compare_runs, read_metrics
    from phow_baseline.io import atomic_write_json, atomic_write_text, format_bytes
    from phow_baseline.progress import configure_logging
    from phow_baseline.workflow.cv import cross_validate

    configure_logging(20)
    out = Path(args.out)
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [s for s in only if s not in SEARCH and s not in FUSIONS]
    if unknown:
        ap.error(f"unknown configuration(s) {unknown}; --list shows them")

    def wanted(name, stage):
        return name in only if only else (args.stage == "all" or stage == args.stage)

    names = [n for n, (st, _) in SEARCH.items() if wanted(n, st)]
    fusions = [n for n, (st, _) in FUSIONS.items() if wanted(n, st)]
    for f in fusions:  # a fusion needs its two runs
        names += [n for n in FUSIONS[f][1] if n not in names]
    if REFERENCE not in names:
        names.insert(0, REFERENCE)
    names = sorted(names, key=list(SEARCH).index)
    print(f"# recipe search: {', '.join(names + fusions)}; {args.folds} folds on {args.sample}", flush=True)
    print(f"# {os.cpu_count()} cores, load average {os.getloadavg()} at start", flush=True)
    started = time.perf_counter()
    rows = {}
    for name in names:
        config = BaselineConfig.from_preset("vlfeat", **SEARCH[name][1], n_jobs=args.n_jobs, calibration="none")
        record_path = out / name / "bench.json"
        t0 = time.perf_counter()
        res = cross_validate(
            args.sample,
            out / name,
            config,
            n_folds=args.folds,
            work_dir=out / "work",
            progress=False,
            n_bootstrap=args.n_bootstrap,
        )
        seconds = time.perf_counter() - t0
        record = json.loads(record_path.read_text()) if record_path.exists() else None
        if record is None:
            record = {"seconds": seconds, "load_average": os.getloadavg(), "n_images": res["n_images"]}
            atomic_write_json(record_path, record)
        rows[name] = {
            "run": Path(res["run_dirs"][0]),
            "seconds_per_image": record["seconds"] / record["n_images"],
            "bytes_per_image": res["feature_bytes_per_image"],
        }
        print(f"{name}: mean AUROC {res['mean_auroc'][0]:.4f} ({seconds:.0f} s this call)", flush=True)
    labels = read_metrics(rows[REFERENCE]["run"])["labels"]
    for f in fusions:
        a, b = FUSIONS[f][1]
        run = out / f / "run"
        fuse(rows[a]["run"], rows[b]["run"], run, labels, 0, args.n_bootstrap)
        rows[f] = {
            "run": run,
            "seconds_per_image": rows[a]["seconds_per_image"] + rows[b]["seconds_per_image"],
            "bytes_per_image": rows[a]["bytes_per_image"] + rows[b]["bytes_per_image"],
        }
    table = []
    for name, row in rows.items():
        m = read_metrics(row["run"])
        diff, ci = 0.0, [0.0, 0.0]
        if name != REFERENCE:
            cmp = compare_runs(rows[REFERENCE]["run"], row["run"], n_bootstrap=args.n_bootstrap, seed=0)
            diff, ci = cmp["mean"]["bootstrap"]["difference"], cmp["mean"]["bootstrap"]["ci95"]
        table.append(
            {
                "config": name,
                "settings": json.dumps(SEARCH[name][1]) if name in SEARCH else f"fusion of {FUSIONS[name][1]}",
                "mean_auroc": m["mean_auroc"],
                "ci_low": m["mean_auroc_ci95"][0],
                "ci_high": m["mean_auroc_ci95"][1],
                "diff_vs_vlfeat": diff,
                "diff_ci_low": ci[0],
                "diff_ci_high": ci[1],
                "seconds_per_image": row["seconds_per_image"],
                "bytes_per_image": row["bytes_per_image"],
            }
        )
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "recipes.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(table[0]))
        w.writeheader()
        w.writerows(table)
    lines = [
        "| config | settings (vs `vlfeat`) | mean AUROC [95% CI] | paired diff vs vlfeat [95% CI] | s / image "
        "| disk / image |",
        "|---|---|---|---|---|---|",
    ]
    for t in table:
        lines.append(
            f"| {t['config']} | `{t['settings']}` | {t['mean_auroc']:.3f} [{t['ci_low']:.3f}, {t['ci_high']:.3f}] | "
            + (
                "(reference)"
                if t["config"] == REFERENCE
                else f"{t['diff_vs_vlfeat']:+.3f} [{t['diff_ci_low']:+.3f}, {t['diff_ci_high']:+.3f}]"
            )
            + f" | {t['seconds_per_image']:.2f} | {format_bytes(t['bytes_per_image'])} |"
        )
    wall = time.perf_counter() - started
    foot = (
        f"\n{args.folds}-fold patient-wise cross-validation, {read_metrics(rows[REFERENCE]['run'])['n_test']} images,"
        f" out-of-fold; paired bootstrap {args.n_bootstrap} resamples. Wall time of this call {wall:.0f} s; "
        f"{os.cpu_count()} cores, load average {os.getloadavg()} at the end.\n"
    )
    text = "\n".join(lines) + "\n" + foot
    atomic_write_text(out / "recipes.md", text)
    print(text, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
