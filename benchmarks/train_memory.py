"""Peak memory of out-of-core training against the number of feature rows.

Writes ``ROWS`` synthetic pyramid features of dimension ``DIM`` (the real
one is 600 words x 20 cells = 12,000) into a feature store, then trains the
14 SVMs out of core in a fresh process and reports that process's peak
resident memory (``ru_maxrss``) and the training's wall time:

- ``--solver sdca`` (the default, what ``solver="auto"`` picks): SDCA, the
  kernel map applied as the rows are read (once and kept when the mapped rows
  fit :data:`phow_baseline.classification.sdca.IN_MEMORY_BYTES`, 1 GiB, else
  every epoch), until the duality gap certifies every class;
- ``--solver sgd``: ``--epochs`` epochs of SGD ``partial_fit``, one shard at a time.

``--folds K`` (K >= 2) trains what ``run`` trains by default: the final SVMs
and the K cross-fitting folds' held-out ones (``train_svms_folds``; the
synthetic rows are their own patients).

    python benchmarks/train_memory.py --rows 5000 50000 --dim 12000 [--folds 5]

Used by ``tests/test_classify.py`` with small sizes.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def make_store(directory, rows, dim, shard_size=256, seed=0):
    from phow_baseline.encoding.store import FeatureStore

    rng = np.random.default_rng(seed)
    names = [f"{i:08d}_000.png" for i in range(rows)]
    store = FeatureStore.create(directory, names, dim, {"synthetic": True}, shard_size)
    y = np.zeros((rows, 14), np.uint8)
    for s in range(store.n_shards):
        r = store.shard_rows(s)
        X = rng.gamma(0.3, 1.0, (len(r), dim)).astype(np.float32)
        lab = (rng.random((len(r), 14)) < 0.1).astype(np.uint8)
        X[:, :14] += lab * 2.0  # a learnable signal
        X /= X.sum(1, keepdims=True)
        store.write_shard(s, X)
        y[r.start : r.stop] = lab
    np.save(Path(directory) / "labels.npy", y)
    return store


def train_child(directory, kernel_map, epochs, solver="sdca", folds=0, n_jobs=1):
    """Runs in a fresh process: train out of core, print JSON with peak RSS."""
    from phow_baseline.config import BaselineConfig
    from phow_baseline.encoding.store import FeatureStore
    from phow_baseline.workflow.steps import patient_folds, train_svms, train_svms_folds

    store = FeatureStore.open(directory)
    y = np.load(Path(directory) / "labels.npy", allow_pickle=False)
    rows = np.arange(len(store))
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # the bag of words' kernel map and C (the defaults are Fisher vectors')
    cfg = BaselineConfig.from_preset("vlfeat", solver=solver, kernel_map=kernel_map, n_epochs=epochs, n_jobs=n_jobs)
    t = time.perf_counter()
    if folds >= 2:
        svm, _ = train_svms_folds(store, rows, y, patient_folds(rows, folds, 0), cfg, progress=False)
    else:
        svm = train_svms(store, rows, y, cfg, progress=False)
    dt = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    converged = getattr(svm, "converged_", None)
    print(
        json.dumps(
            {
                "rows": len(store),
                "dim": store.dim,
                "peak_rss_mb": peak / 1024,
                "rss_before_train_mb": base / 1024,
                "train_s": dt,
                "coef_shape": list(svm.coef_.shape),
                "solver": solver,
                "folds": folds,
                "converged": None if converged is None else int(np.sum(converged)),
            }
        )
    )


def measure(rows, dim, kernel_map="homkermap", epochs=1, workdir=None, solver="sdca", folds=0, n_jobs=1) -> dict:
    """Peak RSS and wall time of training on ``rows`` synthetic rows of ``dim`` features (a fresh process)."""
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        d = Path(tmp) / "store"
        make_store(d, rows, dim)
        cmd = [sys.executable, __file__, "--child", str(d), "--kernel-map", kernel_map, "--epochs", str(epochs)]
        cmd += ["--solver", solver, "--folds", str(folds), "--n-jobs", str(n_jobs)]
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(f"training {rows} x {dim} ({solver}) failed:\n{out.stderr[-3000:]}")
        return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, nargs="+", default=[5000, 50000])
    ap.add_argument("--dim", type=int, default=12000)
    ap.add_argument("--kernel-map", default="homkermap")
    ap.add_argument("--epochs", type=int, default=1, help="SGD's epochs (SDCA stops on its duality gap).")
    ap.add_argument("--solver", choices=["sdca", "sgd"], default="sdca")
    ap.add_argument("--folds", type=int, default=0, help="K >= 2: also the K cross-fitting folds' SVMs.")
    ap.add_argument("--n-jobs", type=int, default=1)
    ap.add_argument("--child")
    ap.add_argument("--workdir", help="Where the temporary feature store goes (needs rows x dim x 4 bytes).")
    a = ap.parse_args()
    if a.child:
        train_child(a.child, a.kernel_map, a.epochs, a.solver, a.folds, a.n_jobs)
        return
    print(f"solver {a.solver}, folds {a.folds}, n_jobs {a.n_jobs}, load average {os.getloadavg()}")
    print(f"{'rows':>8} {'dim':>7} {'store MB':>9} {'peak RSS MB':>12} {'train s':>8} {'converged':>9}")
    for r in a.rows:
        m = measure(r, a.dim, a.kernel_map, a.epochs, a.workdir, a.solver, a.folds, a.n_jobs)
        conv = "" if m["converged"] is None else f"{m['converged']}/14"
        print(
            f"{m['rows']:>8} {m['dim']:>7} {r * a.dim * 4 / 2**20:>9.0f} {m['peak_rss_mb']:>12.0f} "
            f"{m['train_s']:>8.1f} {conv:>9}",
            flush=True,
        )


if __name__ == "__main__":
    main()
