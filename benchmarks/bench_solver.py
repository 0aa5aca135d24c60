"""SDCA against SGD (10 epochs) and liblinear on the same features: time, convergence, optimum, AUROC.

A synthetic bag-of-words problem of ``--n`` training rows and ``--dim`` words (L1-normalised sparse-ish
histograms, each of the 14 findings raising 30 words of its positives, at the positive rates of
ChestX-ray14's findings, 0.2% to 18%), chi2-mapped (VLFeat's homogeneous kernel map, 3 x ``--dim``
features), and a held-out test set drawn alike (the truth the AUROCs are measured against).  The
solvers are timed interleaved (``sdca, sgd, liblinear, sdca, ...``), one BLAS thread each, with the
load average before and after, on wall and CPU clocks; the figures quoted are the best pass.

``--store``: the unmapped histograms are written to a :class:`~phow_baseline.encoding.store.FeatureStore`
(shards of ``--shard-size`` rows) and SDCA trains out of core (``fit_store`` with the kernel map on the
fly, kept in memory when it fits), SGD by ``partial_fit`` over the shards (mapped per shard, 10 epochs);
liblinear always trains in memory on the mapped features (skip it with ``--no-liblinear``).

Run: ``python benchmarks/bench_solver.py --n 2000 --dim 4000`` (add ``--store``; ``--repeats 2``).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from _timing import load_line, pinned
from phow_baseline.classification.kernel_map import HomogeneousKernelMap
from phow_baseline.classification.sdca import svm_objective
from phow_baseline.classification.svm import OneVsRestSVM
from phow_baseline.encoding.store import FeatureStore

#: Positive rates of the 14 findings (ChestX-ray14's, rounded: Infiltration 18% ... Hernia 0.2%).
RATES = np.array([0.18, 0.12, 0.10, 0.05, 0.05, 0.04, 0.03, 0.03, 0.02, 0.02, 0.015, 0.012, 0.01, 0.002])


def problem(n, dim, seed, strength=0.4):
    """Unmapped histograms ``(n, dim)`` float32 and labels ``(n, 14)`` uint8 (the classes' words fixed by
    ``seed // 1000``, so that a training and a test set drawn with seeds 0 and 1 share them)."""
    words = np.random.default_rng(12345).choice(dim, (14, 30))
    rng = np.random.default_rng(seed)
    Y = (rng.random((n, 14)) < RATES).astype(np.uint8)
    Y[:2] = 1  # every class has positives (two rows with every finding)
    X = rng.gamma(0.3, 1.0, (n, dim))
    X[X < 0.05] = 0.0
    for k in range(14):
        pos = np.flatnonzero(Y[:, k])
        X[np.ix_(pos, words[k])] += strength * rng.gamma(1.0, 1.0, (len(pos), 30))
    X /= np.maximum(X.sum(1, keepdims=True), 1e-12)
    return X.astype(np.float32), Y


def _store(path, X, shard_size):
    st = FeatureStore.create(path, [f"{i:06d}.png" for i in range(len(X))], X.shape[1], {}, shard_size=shard_size)
    for s in range(st.n_shards):
        r = st.shard_rows(s)
        st.write_shard(s, X[r.start : r.stop])
    return st


def _sgd_store(st, Y, kmap, C):
    m = OneVsRestSVM(solver="sgd", C=C, n_epochs=10)
    rng = np.random.default_rng(0)
    for _ in range(10):
        for s in rng.permutation(st.n_shards):
            r = st.shard_rows(int(s))
            m.partial_fit(kmap.transform(np.asarray(st.read_shard(int(s)))), Y[r.start : r.stop], y_all=Y)
    return m


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=2000, help="training rows")
    ap.add_argument("--dim", type=int, default=4000, help="words (features before the kernel map; 12,000 at 256 px)")
    ap.add_argument("--n-test", type=int, default=2000, help="held-out rows (the truth)")
    ap.add_argument("--C", type=float, default=10.0)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--store", action="store_true", help="train SDCA and SGD out of core over a feature store")
    ap.add_argument("--shard-size", type=int, default=1024)
    ap.add_argument("--no-liblinear", action="store_true")
    ap.add_argument("--no-sgd", action="store_true")
    args = ap.parse_args(argv)

    t = time.perf_counter()
    X, Y = problem(args.n, args.dim, 0)
    Xt, Yt = problem(args.n_test, args.dim, 1)
    kmap = HomogeneousKernelMap().fit(X)
    Xm = None if args.store and args.no_liblinear else kmap.transform(X)
    Xtm = kmap.transform(Xt)
    print(
        f"problem: {args.n} training rows, {args.n_test} test rows, {args.dim} words -> {3 * args.dim} mapped "
        f"features, positives per class {Y.sum(0).tolist()} ({time.perf_counter() - t:.1f} s to make)"
    )
    tmp = tempfile.TemporaryDirectory(prefix="bench_solver-")
    st = _store(Path(tmp.name) / "features", X, args.shard_size) if args.store else None

    contestants = {}
    if args.store:
        contestants["sdca"] = lambda: OneVsRestSVM(solver="sdca", C=args.C, n_jobs=1).fit_store(st, Y, transform=kmap)
        if not args.no_sgd:
            contestants["sgd"] = lambda: _sgd_store(st, Y, kmap, args.C)
    else:
        contestants["sdca"] = lambda: OneVsRestSVM(solver="sdca", C=args.C, n_jobs=1).fit(Xm, Y)
        if not args.no_sgd:
            contestants["sgd"] = lambda: OneVsRestSVM(solver="sgd", C=args.C, n_epochs=10, n_jobs=1).fit(Xm, Y)
    if not args.no_liblinear:
        contestants["liblinear"] = lambda: OneVsRestSVM(solver="liblinear", C=args.C, n_jobs=1).fit(Xm, Y)

    # warm-up (Numba compilation, imports) on a few rows, untimed
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        OneVsRestSVM(solver="sdca", max_epochs=2).fit(kmap.transform(X[:64]), Y[:64])

    wall = {k: [] for k in contestants}
    cpu = {k: [] for k in contestants}
    models = {}
    print("before:", load_line())
    with pinned(1), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # SGD's "did not converge" is in the table below
        for rep in range(args.repeats):
            for name, fn in contestants.items():
                la = os.getloadavg()[0]
                w0, c0 = time.perf_counter(), time.process_time()
                models[name] = fn()
                wall[name].append(time.perf_counter() - w0)
                cpu[name].append(time.process_time() - c0)
                print(
                    f"  pass {rep + 1} {name:9s} {wall[name][-1]:8.2f} s wall {cpu[name][-1]:8.2f} s CPU "
                    f"(load {la:.2f})"
                )
    print("after: ", load_line())

    print(f"\n{'solver':10s} {'wall s':>8s} {'CPU s':>8s} {'converged':>9s} {'mean AUROC':>10s}")
    auc = {}
    for name, m in models.items():
        S = m.decision_function(Xtm)
        auc[name] = np.array(
            [roc_auc_score(Yt[:, k], S[:, k]) if 0 < Yt[:, k].sum() < len(Yt) else np.nan for k in range(14)]
        )
        print(
            f"{name:10s} {min(wall[name]):8.2f} {min(cpu[name]):8.2f} {int(m.converged_.sum()):6d}/14 "
            f"{np.nanmean(auc[name]):10.4f}"
        )
    sd = models["sdca"]
    rel = sd.duality_gap_ / sd.primal_objective_
    P_lib = None
    if "liblinear" in models and Xm is not None:
        lib = models["liblinear"]
        P_sd = svm_objective(Xm, Y, sd.coef_, sd.intercept_, args.C)
        P_lib = svm_objective(Xm, Y, lib.coef_, lib.intercept_, args.C)
    print(
        "\nper class: SDCA epochs, relative gap (P - D) / P, converged, time s; AUROC of each solver; "
        "SDCA's primal vs liblinear's"
    )
    for k in range(14):
        line = (
            f"  class {k:2d} pos {int(Y[:, k].sum()):5d}  epochs {int(sd.n_iter_[k]):4d}  gap {rel[k]:.2e} "
            f"{'yes' if sd.converged_[k] else 'NO '} {sd.train_time_[k]:7.2f} s  AUROC "
            + " ".join(f"{n} {auc[n][k]:.4f}" for n in models)
        )
        if P_lib is not None:
            line += f"  (P_sdca - P_lib) / P_lib {(P_sd[k] - P_lib[k]) / P_lib[k]:+.2e}"
        print(line)
    for other in ("sgd", "liblinear"):
        if other in models:
            print(
                f"ratio {other}/sdca: {min(wall[other]) / min(wall['sdca']):.2f} (wall), "
                f"{min(cpu[other]) / min(cpu['sdca']):.2f} (CPU); mean AUROC difference sdca - {other}: "
                f"{np.nanmean(auc['sdca'] - auc[other]):+.4f}"
            )
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
