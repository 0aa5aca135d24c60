"""SDCA's steps over a chunk of rows, tiled (every class of a thread over a cached tile) against untiled.

The out-of-core SDCA pass (:func:`phow_baseline.classification.sdca._sdca_pairs`) steps each class over
a chunk of 256 rows; at 36,000 kernel-mapped features a chunk is 37 MB of float32, more than the
last-level cache, so untiled every class read the chunk from memory again.  Tiled, each thread steps all
its classes over :data:`~phow_baseline.classification.sdca.STEP_TILE_BYTES` of rows before the next tile.
Both orders give the same bits (``tests/test_sdca.py::test_rows_stepped_in_tiles_give_the_untiled_bits``);
this measures the time.

Synthetic rows shaped like the full run's (``--dim`` 36,000 float32, half of them zero, 14 classes at a
10% positive rate, ``C = 10``), passes from zero duals (every step moves its weights: the heaviest pass).
The tile sizes are timed **interleaved** (untiled, tiled, untiled, tiled, ...), each pass from the same
fresh state, the best of ``--repeats`` kept, with Numba's threads as given (default: all cores) and the
load average before and after::

    python benchmarks/bench_sdca_tiles.py [--rows 2048] [--dim 36000] [--repeats 3] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import time

import numba
import numpy as np

from phow_baseline.classification import sdca


def _state(n, d, K):
    return {
        "alpha": np.zeros((n, K)),
        "Wt": np.zeros((K, d)),
        "wb": np.zeros(K),
        "marg": np.zeros((n, K)),
        "pg": np.array([[np.inf] * K, [-np.inf] * K, [-np.inf] * K, [np.inf] * K]),
        "shrunk": np.zeros((n, K), np.bool_),
        "sq": np.full(n, np.nan),
    }


def one_pass(X, Y, tile, chunk=sdca.ARRAY_CHUNK_ROWS, C=10.0):
    """One pass of steps over ``X`` in chunks of ``chunk`` rows, tiles of ``tile`` rows; (seconds, weights)."""
    n, d = X.shape
    K = Y.shape[1]
    st = _state(n, d, K)
    cw = np.ones((K, 2))
    pos = np.arange(n, dtype=np.int64)
    t = time.perf_counter()
    for s in range(0, n, chunk):
        Xc = X[s : s + chunk]
        sdca._sdca_pairs(
            Xc,
            np.arange(len(Xc), dtype=np.int64),
            pos[s : s + chunk],
            Y,
            cw,
            st["alpha"],
            st["Wt"],
            st["wb"],
            1.0 / C,
            sdca.BIAS_MULTIPLIER,
            st["marg"],
            st["pg"],
            st["shrunk"],
            st["sq"],
            tile,
            sdca._class_groups(K),
        )
    return time.perf_counter() - t, st["Wt"]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=2048)
    ap.add_argument("--dim", type=int, default=36000)
    ap.add_argument("--classes", type=int, default=14)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="Numba threads (default: all cores)")
    a = ap.parse_args(argv)
    if a.threads:
        numba.set_num_threads(a.threads)
    rng = np.random.default_rng(0)
    X = rng.random((a.rows, a.dim), dtype=np.float32)
    X *= rng.random((a.rows, a.dim), dtype=np.float32) < 0.5
    Y = (rng.random((a.rows, a.classes)) < 0.1).astype(np.int8)
    tiled = sdca._step_tile(X)
    untiled = f"untiled ({sdca.ARRAY_CHUNK_ROWS}-row chunk)"
    contestants = {untiled: sdca.ARRAY_CHUNK_ROWS, f"tiled ({tiled} rows)": tiled}
    one_pass(X[:32], Y[:32], 4)  # warm-up: the kernel loaded (or compiled)
    print(
        f"{a.rows} rows x {a.dim} float32 features, {a.classes} classes, {numba.get_num_threads()} Numba threads; "
        f"load average before {os.getloadavg()}",
        flush=True,
    )
    times = {k: [] for k in contestants}
    ref = None
    for _ in range(a.repeats):
        for name, tile in contestants.items():
            t, W = one_pass(X, Y, tile)
            times[name].append(t)
            if ref is None:
                ref = W
            elif not np.array_equal(ref, W):
                raise SystemExit(f"{name}: weights differ from the untiled pass's")
    best = {k: min(v) for k, v in times.items()}
    for name, t in best.items():
        print(f"  {name}: best pass {t:.3f} s (all: {', '.join(f'{x:.3f}' for x in times[name])})")
    u, v = best.values()
    print(f"  untiled / tiled = {u / v:.2f}; the weights of every pass identical; load average after {os.getloadavg()}")


if __name__ == "__main__":
    main()
