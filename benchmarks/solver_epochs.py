"""Out-of-core SDCA stopped after E epochs against SGD's epochs, on a run's own feature store.

Trains the 14 one-vs-rest SVMs (the bag of words' kernel map, applied as the
rows are read) on the first ``--train-rows`` rows of a ``run``'s training
feature store and scores the last ``--test-rows`` rows (held out; the
store is in name order, so the two parts share few patients), against the
labels of the dataset's metadata: per solver and cap, wall time, classes
certified by the duality gap, the first classes' primal objectives and the
held-out mean AUROC.  It is how ``steps.sdca_max_epochs`` (SDCA capped at
``--epochs`` out of core) was chosen:

    python benchmarks/solver_epochs.py --work RUN/work --metadata DATA/Data_Entry_2017_v2020.csv \\
        --train-rows 20000 --test-rows 5000 --sdca-epochs 10,40 --sgd-epochs 10

(on the 112,120-image 128 px rehearsal's store: README, "The full dataset").
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score


def main():
    from phow_baseline.classification.kernel_map import make_kernel_map
    from phow_baseline.classification.svm import OneVsRestSVM
    from phow_baseline.config import BaselineConfig
    from phow_baseline.data.chestxray14 import LABELS
    from phow_baseline.encoding.store import FeatureStore
    from phow_baseline.workflow import steps

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", required=True, help="A run's work folder (its features-train_val-* store).")
    ap.add_argument("--metadata", required=True, help="Data_Entry_2017_v2020.csv of the dataset.")
    ap.add_argument("--train-rows", type=int, default=20000)
    ap.add_argument("--test-rows", type=int, default=5000)
    ap.add_argument("--sdca-epochs", default="10,40", help="Comma-separated caps.")
    ap.add_argument("--sgd-epochs", type=int, default=10, help="0: no SGD.")
    ap.add_argument("--C", type=float, default=10.0)
    ap.add_argument("--n-jobs", type=int, default=2)
    a = ap.parse_args()

    stores = sorted(Path(a.work).glob("features-train_val-*"))
    if not stores:
        raise SystemExit(f"{a.work}: no features-train_val-* store (run `phow-baseline run` first)")
    store = FeatureStore.open(stores[0])
    meta = pd.read_csv(a.metadata).set_index("Image Index")
    names = np.asarray(store.names)
    findings = meta.loc[names, "Finding Labels"].str.split("|")
    Y = np.array([[int(lab in f) for lab in LABELS] for f in findings], np.uint8)
    if a.train_rows + a.test_rows > len(names):
        raise SystemExit(f"{store.directory}: {len(names)} rows, fewer than {a.train_rows} + {a.test_rows}")
    train = np.arange(a.train_rows)
    test = np.arange(len(names) - a.test_rows, len(names))
    kmap = make_kernel_map("homkermap", store.dim)
    X_test = kmap.transform(store.load(test))
    print(f"{store.directory}: {a.train_rows} training rows, {a.test_rows} held out, C = {a.C}, "
          f"load average {os.getloadavg()}", flush=True)  # fmt: skip

    def report(name, model, seconds):
        S = model.decision_function(X_test)
        auc = [roc_auc_score(Y[test, k], S[:, k]) for k in range(Y.shape[1]) if 0 < Y[test, k].sum() < len(test)]
        conv = getattr(model, "converged_", None)
        primal = getattr(model, "primal_objective_", None)
        print(
            f"{name:<22} {seconds:7.0f} s  held-out mean AUROC {np.mean(auc):.4f}  certified "
            f"{'-' if conv is None or name.startswith('SGD') else int(np.sum(conv))}/14  primal (first 4) "
            f"{'-' if primal is None else np.round(primal[:4], 4).tolist()}  load {os.getloadavg()[0]:.2f}",
            flush=True,
        )

    for cap in [int(e) for e in a.sdca_epochs.split(",") if e]:
        t = time.perf_counter()
        m = OneVsRestSVM(solver="sdca", C=a.C, max_epochs=cap, n_jobs=a.n_jobs)
        m.fit_store(store, Y[train], train, transform=kmap)
        report(f"SDCA, at most {cap} epochs", m, time.perf_counter() - t)
    if a.sgd_epochs:
        cfg = BaselineConfig.from_preset("vlfeat", solver="sgd", C=a.C, n_epochs=a.sgd_epochs, n_jobs=a.n_jobs)
        t = time.perf_counter()
        m = steps.train_svms(store, train, Y[train], cfg, progress=False, solver="sgd")
        report(f"SGD, {a.sgd_epochs} epochs", m, time.perf_counter() - t)


if __name__ == "__main__":
    main()
