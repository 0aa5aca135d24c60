"""Bag of words vs Fisher vectors vs VLAD on the real sample: AUROC with paired bootstrap intervals, time, size.

Usage::

    python benchmarks/bench_encoders.py [--sample DIR] [--out DIR] [--encodings bow,fisher,vlad]
        [--fv-components 256] [--fv-pca-dims 80] [--gmm-max-iter 30] [--vlad-words 64]
        [--max-descriptors 100000] [--n-bootstrap 2000]

Each encoding is trained on the sample's ``train_val`` images and scored on its
``test`` images by :func:`phow_baseline.workflow.steps.run_baseline` (same PHOW, same
linear SVMs with C = 10; the bag of words with its chi2 kernel map, FV and VLAD
without one; no calibration: AUROC does not need it), each in
``OUT/<encoding>``.  The test images are then resampled with replacement
``--n-bootstrap`` times, the same draws for every encoding (paired), and the
mean AUROC over the 14 labels of each encoding minus that of the bag of words
gives a 95% percentile interval of the difference.  Encoding time is that of
``model.features`` (PHOW included) on ``--time-images`` test images, one
process; feature size is the SVM input dimension.

Prints a Markdown table and the machine's load average (timings are noisy on a
shared machine: compare within one run).
"""

from __future__ import annotations

import argparse
import json
import os
import time
import warnings
from pathlib import Path

import numpy as np


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sample", default=os.environ.get("CHESTXRAY14_SAMPLE", "../shared/chestxray14-sample"))
    ap.add_argument("--out", default="runs/bench_encoders")
    ap.add_argument("--encodings", default="bow,fisher,vlad")
    ap.add_argument("--n-words", type=int, default=600)
    ap.add_argument("--fv-components", type=int, default=256)
    ap.add_argument("--fv-pca-dims", type=int, default=80)
    ap.add_argument("--gmm-max-iter", type=int, default=30)
    ap.add_argument("--vlad-words", type=int, default=64)
    ap.add_argument("--regions", default="1x1+2x2")
    ap.add_argument("--max-descriptors", type=int, default=100_000)
    ap.add_argument("--vocab-images", type=int, default=2000)
    ap.add_argument("--n-bootstrap", type=int, default=2000)
    ap.add_argument("--time-images", type=int, default=10)
    ap.add_argument("--n-jobs", type=int, default=-1)
    args = ap.parse_args(argv)

    from phow_baseline.config import BaselineConfig
    from phow_baseline.data.chestxray14 import LABELS, MissingImagesWarning
    from phow_baseline.evaluation import bootstrap_auroc, read_predictions
    from phow_baseline.model.directory import load_model
    from phow_baseline.workflow.steps import open_dataset, run_baseline

    encodings = [e.strip() for e in args.encodings.split(",") if e.strip()]
    out = Path(args.out)
    print(f"load average before: {os.getloadavg()}  cores: {os.cpu_count()}")
    results = {}
    for enc in encodings:
        cfg = BaselineConfig(
            encoding=enc,
            n_words=args.n_words,
            fv_components=args.fv_components,
            fv_pca_dims=args.fv_pca_dims,
            gmm_max_iter=args.gmm_max_iter,
            vlad_words=args.vlad_words,
            regions=args.regions,
            max_descriptors=args.max_descriptors,
            vocab_images=args.vocab_images,
            calibration="none",
            n_jobs=args.n_jobs,
        )
        t = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MissingImagesWarning)
            run_baseline(args.sample, out / enc, cfg, progress=False, n_bootstrap=200, model_name=enc)
        t_run = time.perf_counter() - t
        model = load_model(out / enc / "model")
        names, scores = read_predictions(out / enc / "run" / "predictions.csv")
        order = np.argsort(names)
        names, scores = [names[i] for i in order], scores[order]
        ds = open_dataset(args.sample, cfg)
        test_imgs = [model.preprocess(ds.image_path(n)) for n in names[: args.time_images]]
        t = time.perf_counter()
        for img in test_imgs:
            model.features(img)
        t_enc = (time.perf_counter() - t) / max(len(test_imgs), 1)
        dim = model.encoder.n_features_out_ * (1 if model.kernel_map is None else 3)
        results[enc] = dict(
            names=names,
            scores=scores,
            y=ds.labels(names),
            t_run=t_run,
            t_enc=t_enc,
            dim=dim,
            n_train=model.info.get("n_train"),
        )
        print(f"{enc}: run {t_run:.0f} s, {t_enc:.2f} s/image encoding, {dim} SVM inputs", flush=True)

    base = encodings[0]
    for enc in encodings[1:]:
        if results[enc]["names"] != results[base]["names"]:
            raise SystemExit(f"{enc} and {base} scored different test images")
    y = results[base]["y"]
    boot = {e: bootstrap_auroc(y, r["scores"], n_bootstrap=args.n_bootstrap, seed=0) for e, r in results.items()}
    from phow_baseline.evaluation import auroc_weighted

    mean_auc = {}
    for e, r in results.items():
        per = [
            float(auroc_weighted(y[:, j].astype(bool), r["scores"][:, j].astype(float))[0]) for j in range(len(LABELS))
        ]
        mean_auc[e] = float(np.nanmean(per))
    print(
        f"\n{len(y)} test images, {results[base]['n_train']} training images; "
        f"paired bootstrap: {args.n_bootstrap} resamples of the test images, 95% percentile intervals"
    )
    print(
        "\n| encoding | mean AUROC | 95% CI | difference vs " + base + " | 95% CI of difference | "
        "encoding s/image | SVM inputs | whole run s |"
    )
    print("|---|---|---|---|---|---|---|---|")
    summary = {}
    for e in encodings:
        m = np.nanmean(boot[e], axis=1)
        lo, hi = np.nanpercentile(m, [2.5, 97.5])
        diff = dci = ""
        if e != base:
            dm = np.nanmean(boot[e] - boot[base], axis=1)
            dlo, dhi = np.nanpercentile(dm, [2.5, 97.5])
            diff = f"{mean_auc[e] - mean_auc[base]:+.3f}"
            dci = f"[{dlo:+.3f}, {dhi:+.3f}]"
            summary[e] = {"difference": mean_auc[e] - mean_auc[base], "ci95": [float(dlo), float(dhi)]}
        r = results[e]
        print(
            f"| {e} | {mean_auc[e]:.3f} | [{lo:.3f}, {hi:.3f}] | {diff} | {dci} | {r['t_enc']:.2f} | {r['dim']} | "
            f"{r['t_run']:.0f} |"
        )
    (out / "bench_encoders.json").write_text(
        json.dumps(
            {
                "args": vars(args),
                "mean_auroc": mean_auc,
                "difference_vs_" + base: summary,
                "encoding_s_per_image": {e: r["t_enc"] for e, r in results.items()},
                "svm_inputs": {e: r["dim"] for e, r in results.items()},
            },
            indent=2,
        )
    )
    print(f"\nload average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
