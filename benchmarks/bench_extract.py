"""Feature-extraction speed: our PHOW against VLFeat (cyvlfeat) and OpenCV SIFT, in one run.

Same real images (from $CHESTXRAY14_SAMPLE, equalized), same parameters
(bin sizes 4, 6, 8, 10; step 2; VLFeat's defaults otherwise):

* ours: ``phow_baseline.features.phow.phow`` (Numba);
* ``cyvlfeat.sift.phow``: VLFeat's C dense SIFT through cyvlfeat (it smooths
  with scipy and departs from ``vl_phow`` in details, but does the same work);
* OpenCV: ``cv2.SIFT_create().compute`` on the same dense grid (the frames
  of our PHOW, keypoint size ``2/3 x bin size`` so that OpenCV's bin width,
  3 x size / 2, equals the bin size; angle 0), on the same smoothed-free image.

One timing protocol for every extractor and every setting (``_timing.py``,
shared with the other peer comparisons): a warm-up pass (untimed: one image
per worker, so that compilation, imports and pool start-up are out of the
timings), then ``--repeats`` timed passes over all the images (default 3),
**interleaved** (ours, cyvlfeat, OpenCV, ours, cyvlfeat, ...) so that a
change of load hits every contestant alike, with the load average printed
before and after.  The figure is the best pass (its wall time; for the
single-thread setting also the process CPU time of each pass, robust to
other processes sharing the cores: the headline ratio); the median pass is
kept in the JSON.  Each output is dropped before the next image, as a
streaming pipeline does.

* 1 thread: one image after another in this process, every contestant
  pinned to the same single CPU (``_timing.pinned(1)``: CPU affinity of every
  thread of the process, BLAS, Numba, VLFeat and OpenCV threads all 1); the
  ratio of CPU time to wall time of each contestant's best pass is printed
  as a check (above 1 would mean more than one thread ran).
* all cores (``ncpu`` = ``os.cpu_count()``), each extractor the way it can
  use them:

  - ours: ``ncpu`` threads of one process (``ThreadPoolExecutor``, one
    image per task), as ``PHOW(n_jobs=-1)`` runs: the Numba kernels release
    the GIL;
  - OpenCV: the same ``ncpu`` threads, one image per task, OpenCV's own
    threading at 1 per call (``compute`` releases the GIL);
  - cyvlfeat: ``ncpu`` joblib (loky) worker processes, one image per task
    (its Python/scipy parts hold the GIL, so threads would not scale); the
    time includes sending each image to a worker.

Sizes: 256x256 (``images/``) and 1024x1024 (``images-1024/``).  Then:

* where our time goes: CPU time per stage of one thread at each size
  (Gaussian pre-smoothing, orientation planes fused with the y filter, x
  filter, descriptor assembly and normalisation, frames), summed over the scales;
* PNG decoding of the real 1024x1024 files (``images-1024/``): OpenCV's
  ``cv2.imdecode`` (what ``read_xray`` uses) against ``pyspng`` (libspng)
  when it is installed, one thread each, interleaved, after checking that
  both give bit-identical arrays;
* the first-call latency of ours in a fresh process, with an empty Numba
  cache (compilation) and with a warm one.

    python benchmarks/bench_extract.py [--n256 100] [--n1024 4] [--repeats 3] [--no-opencv] [--json out.json]

At 1024x1024 a PHOW image has about 0.9 million frames: OpenCV then
needs 0.9 million ``cv2.KeyPoint`` objects per image, hence the small default.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from _timing import interleaved_clocks, load_line, pinned

SIZES = (4, 6, 8, 10)
STEP = 2


def print(*args, **kw):  # noqa: A001 - progress must show while the peers run
    import builtins

    builtins.print(*args, **kw, flush=True)


#: Timed passes per extractor and setting (the same for every extractor).
REPEATS = 3


def _times(wall, cpu=None):
    """``{"best_s", "median_s", "cpu_s", "repeats"}`` of interleaved passes (``cpu_s``: CPU time of the best pass)."""
    i = int(np.argmin(wall))
    return {
        "best_s": wall[i],
        "median_s": float(np.median(wall)),
        "cpu_s": cpu[i] if cpu is not None else None,
        "best_cpu_s": min(cpu) if cpu is not None else None,
        "median_cpu_s": float(np.median(cpu)) if cpu is not None else None,
        # CPU time over wall time, largest over the passes: above 1 means more than one thread ran
        "max_cpu_over_wall": max(c / w for c, w in zip(cpu, wall)) if cpu is not None else None,
        "repeats": len(wall),
    }


def _stream(f, *seqs):
    """Run ``f`` on each item (of zipped sequences), dropping each output before the next call."""
    for args in zip(*seqs):
        f(*args)


def _dropped(f, *args):
    """``f(*args)``, output dropped (what a worker that consumes it returns)."""
    f(*args)


def _cv_keypoints(frames):
    return [cv2.KeyPoint(float(x), float(y), float(2.0 * s / 3.0), 0.0) for x, y, _, s in frames]


def opencv_dense(img_u8, kps):
    sift = cv2.SIFT_create()
    _, d = sift.compute(img_u8, kps)
    return d


def vl_phow(img_f32):
    from cyvlfeat.sift import phow as cyphow

    return cyphow(img_f32, sizes=SIZES, step=STEP, fast=True)


def ours_one(img_u8):
    from phow_baseline.features.phow import phow

    return phow(img_u8, sizes=SIZES, step=STEP)


def measure(images, label, ncpu, repeats=REPEATS, opencv=True):
    from concurrent.futures import ThreadPoolExecutor

    from joblib import Parallel, delayed

    from phow_baseline.features.phow import phow

    floats = [im.astype(np.float32) / 255 for im in images]
    frames0, desc0 = phow(images[0])
    kps = [_cv_keypoints(phow(im)[0]) for im in images] if opencv else []
    n, w = len(images), min(ncpu, len(images))
    res = {
        "images": n,
        "shape": list(images[0].shape),
        "descriptors_per_image": int(len(desc0)),
        "repeats": repeats,
        "ncpu": ncpu,
    }
    keys = ("ours", "vl", "cv") if opencv else ("ours", "vl")
    print(f"\n{label}: {n} real images, {repeats} interleaved passes per contestant and setting")
    t = {}
    # 1 thread: a stream in this process, every contestant pinned to the same CPU, passes interleaved
    one = {
        "ours": lambda: _stream(ours_one, images),
        "vl": lambda: _stream(vl_phow, floats),
        "cv": lambda: _stream(opencv_dense, images, kps),
    }
    warm = {"ours": lambda: ours_one(images[0]), "vl": lambda: vl_phow(floats[0])}
    if opencv:
        warm["cv"] = lambda: opencv_dense(images[0], kps[0])
    with pinned(1) as cpus:
        print(f"  1 thread (pinned to CPU {cpus}):")
        for f in warm.values():
            f()
        r = interleaved_clocks({k: one[k] for k in keys}, repeats, warmup=0)
    load1 = os.getloadavg()
    for k in keys:
        t[k, "1"] = _times(r["wall"][k], r["cpu"][k])
    # all cores: ours and OpenCV in ncpu threads, cyvlfeat in ncpu processes (see the module docstring)
    par = Parallel(n_jobs=ncpu)
    with ThreadPoolExecutor(ncpu) as pool:
        allc = {
            "ours": lambda: list(pool.map(_dropped, [ours_one] * n, images)),
            "vl": lambda: par(delayed(_dropped)(vl_phow, f) for f in floats),
            "cv": lambda: list(pool.map(_dropped, [opencv_dense] * n, images, kps)),
        }
        list(pool.map(_dropped, [ours_one] * w, images[:w]))
        par(delayed(_dropped)(vl_phow, f) for f in floats[:w])
        if opencv:
            list(pool.map(_dropped, [opencv_dense] * w, images[:w], kps[:w]))
        cv2.setNumThreads(1)  # OpenCV: one thread per call (our thread pool gives the cores)
        print(f"  all {ncpu} cores:")
        r = interleaved_clocks({k: allc[k] for k in keys}, repeats, warmup=0)
    for k in keys:
        t[k, "all"] = _times(r["wall"][k])
    names = {"ours": "ours", "vl": "cyvlfeat_phow", "cv": "opencv_sift"}
    for (k, setting), rr in t.items():
        res[f"{names[k]}_img_s_{'1thread' if setting == '1' else 'all_cores'}"] = n / rr["best_s"]
        res[f"{names[k]}_timing_{setting}"] = rr
    b = {key: rr["best_s"] for key, rr in t.items()}
    res["cpu_s_per_image_1thread"] = {k: t[k, "1"]["best_cpu_s"] / n for k in keys}
    res["ours_over_cyvlfeat_1thread"] = b["vl", "1"] / b["ours", "1"]
    res["ours_over_cyvlfeat_1thread_cpu_time"] = t["vl", "1"]["best_cpu_s"] / t["ours", "1"]["best_cpu_s"]
    res["ours_over_cyvlfeat_1thread_cpu_time_median"] = t["vl", "1"]["median_cpu_s"] / t["ours", "1"]["median_cpu_s"]
    res["ours_over_cyvlfeat_all_cores"] = b["vl", "all"] / b["ours", "all"]
    if opencv:
        res["ours_over_opencv_1thread"] = b["cv", "1"] / b["ours", "1"]
        res["ours_over_opencv_1thread_cpu_time"] = t["cv", "1"]["best_cpu_s"] / t["ours", "1"]["best_cpu_s"]
        res["ours_over_opencv_all_cores"] = b["cv", "all"] / b["ours", "all"]
    res["ours_core_scaling"] = b["ours", "1"] / b["ours", "all"]
    res["load_average"] = os.getloadavg()
    res["load_average_1thread"] = load1
    print(
        f"{label}: {n} real images {images[0].shape[1]}x{images[0].shape[0]}, "
        f"{res['descriptors_per_image']} descriptors each; every figure: best of {repeats} interleaved timed passes "
        f"after a warm-up pass"
    )
    print(f"  {'':<22} {'1 thread img/s':>15} {f'all {ncpu} cores img/s':>20}  all cores means")
    means = {"ours": f"{ncpu} threads, 1 process", "vl": f"{ncpu} loky processes", "cv": f"{ncpu} threads, 1 process"}
    titles = {"ours": "ours (Numba PHOW)", "vl": "cyvlfeat.sift.phow", "cv": "OpenCV SIFT dense"}
    for k in keys:
        print(f"  {titles[k]:<22} {n / b[k, '1']:>15.1f} {n / b[k, 'all']:>20.1f}  {means[k]}")
    line = (
        f"  ours / cyvlfeat: {res['ours_over_cyvlfeat_1thread']:.1f}x (1 thread, wall), "
        f"{res['ours_over_cyvlfeat_all_cores']:.1f}x (all cores)"
    )
    if opencv:
        line += f"; ours / OpenCV: {res['ours_over_opencv_1thread']:.1f}x, {res['ours_over_opencv_all_cores']:.1f}x"
    print(line + f"; ours scaling 1 -> {ncpu} cores: {res['ours_core_scaling']:.2f}x")
    cpu = res["cpu_s_per_image_1thread"]
    print(
        "  1 thread, CPU time per image (best pass): "
        + ", ".join(f"{titles[k]} {1e3 * cpu[k]:.2f} ms" for k in keys)
        + f" -> ours / cyvlfeat per core {res['ours_over_cyvlfeat_1thread_cpu_time']:.1f}x "
        f"(medians {res['ours_over_cyvlfeat_1thread_cpu_time_median']:.1f}x); {load_line()}"
    )
    print(
        "  1 thread, one thread each? largest CPU time / wall time of a pass (above 1: more than one thread): "
        + ", ".join(f"{titles[k]} {t[k, '1']['max_cpu_over_wall']:.2f}" for k in keys)
    )
    return res


def stage_profile(images, label, repeats=3):
    """CPU ms per image of each stage of ours in one thread (best of ``repeats``), summed over the scales."""
    import math

    from phow_baseline.features import dsift as D
    from phow_baseline.features.phow import DEFAULT_MAGNIF, DEFAULT_WINDOW_SIZE, phow, phow_offsets, smooth

    acc: dict[str, float] = {}

    def timed(name, f, *args):
        best = math.inf
        for _ in range(repeats):
            c = time.process_time()
            f(*args)
            best = min(best, time.process_time() - c)
        acc[name] = acc.get(name, 0.0) + best / len(images)

    with pinned(1):
        phow(images[0])
        for im in images:
            imf = D.as_float_image(im)
            H, W = imf.shape
            for s, off in zip(SIZES, phow_offsets(SIZES)):
                x0, y0, nfx, nfy = D.dsift_grid(imf.shape, STEP, s, (off - 1, off - 1, W - 1, H - 1))
                g, fs, n = math.gcd(STEP, s), 3 * s + 1, nfx * nfy
                rows = np.arange(y0, y0 + (nfy - 1) * STEP + 3 * s + 1, g, dtype=np.int64)
                cols = np.arange(x0, x0 + (nfx - 1) * STEP + 3 * s + 1, g, dtype=np.int64)
                ims = smooth(imf, s / DEFAULT_MAGNIF)
                frt = np.empty((W, len(rows), D.NUM_BIN_T), np.float32)
                binned = np.empty((len(cols), len(rows), D.NUM_BIN_T), np.float32)
                wbin = np.ascontiguousarray(D._bin_weights(s, DEFAULT_WINDOW_SIZE).T)
                norms, out, fr = np.empty(n, np.float32), np.empty((n, 128), np.uint8), np.empty((n, 4))
                area, thr = np.float32(fs * fs), np.float32(0.005)
                timed("Gaussian pre-smoothing (cv2)", smooth, imf, s / DEFAULT_MAGNIF)
                timed("gradient + orientation planes + y filter", D._planes_filter_rows, ims, rows, s, frt)
                timed("x filter", D._filter_cols, frt, cols, s, binned)
                wm = D._bin_means(s, DEFAULT_WINDOW_SIZE)
                args = (binned, wbin, wm, s // g, nfy, nfx, 1, nfx, D._BLKPOS_T, area, thr, out, norms)
                timed("assembly + normalisation (uint8)", D._assemble_uint8, *args)
                timed("frames", D._write_frames, fr, x0 + 1.5 * s, y0 + 1.5 * s, float(STEP), nfx, nfy, norms)
        total = math.inf
        for _ in range(repeats):
            c = time.process_time()
            for im in images:
                phow(im)
            total = min(total, (time.process_time() - c) / len(images))
    print(f"\nwhere our time goes at {label} (CPU ms per image, one thread, best of {repeats}; {load_line()}):")
    for name, v in acc.items():
        print(f"  {name:<42} {1e3 * v:8.2f} ms  {100 * v / total:5.1f}%")
    print(f"  {'phow() in all (allocation, as_float_image ...)':<42} {1e3 * total:8.2f} ms  100.0%")
    return {"stages_ms": {k: 1e3 * v for k, v in acc.items()}, "phow_ms": 1e3 * total}


def decode_comparison(files, repeats=5):
    """cv2.imdecode (``read_xray``'s decoder) against pyspng on the same PNG bytes, one thread, interleaved."""
    try:
        import pyspng
    except ImportError:
        print("\nPNG decode: pyspng is not installed (pip install pyspng): OpenCV only, nothing to compare")
        return {"pyspng": None}
    datas = [np.fromfile(p, np.uint8) for p in files]
    blobs = [d.tobytes() for d in datas]
    same = 0
    for d, bl in zip(datas, blobs):
        a, b = cv2.imdecode(d, cv2.IMREAD_UNCHANGED), pyspng.load(bl)
        if b.ndim == 3 and b.shape[2] == 1:
            b = b[:, :, 0]
        same += bool(a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a, b))
    print(f"\nPNG decode of {len(files)} real {datas and cv2.imdecode(datas[0], -1).shape} PNGs:")
    with pinned(1):
        r = interleaved_clocks(
            {
                "cv2": lambda: [cv2.imdecode(d, cv2.IMREAD_UNCHANGED) for d in datas],
                "pyspng": lambda: [pyspng.load(bl) for bl in blobs],
            },
            repeats,
        )
    res = {"pyspng_version": getattr(pyspng, "__version__", "?"), "bit_identical": f"{same}/{len(files)}"}
    for k in ("cv2", "pyspng"):
        res[k] = {clk: 1e3 * min(r[clk][k]) / len(files) for clk in ("wall", "cpu")}
    res["pyspng_speedup_cpu"] = res["cv2"]["cpu"] / res["pyspng"]["cpu"]
    print(
        f"  ms per image (best pass, CPU / wall): cv2.imdecode {res['cv2']['cpu']:.2f} / {res['cv2']['wall']:.2f}, "
        f"pyspng {res['pyspng']['cpu']:.2f} / {res['pyspng']['wall']:.2f} -> pyspng {res['pyspng_speedup_cpu']:.2f}x "
        f"cv2 (CPU); bit-identical on {same}/{len(files)}; {load_line()}"
    )
    return res


FIRST_CALL = """
import time, numpy as np
t0 = time.perf_counter()
from phow_baseline.features.phow import phow
t1 = time.perf_counter()
phow(np.random.default_rng(0).integers(0, 256, (256, 256)).astype(np.uint8))
t2 = time.perf_counter()
print(t1 - t0, t2 - t1)
"""


def first_call_latency():
    out = {}
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        for label in ("cold_cache", "warm_cache"):
            r = subprocess.run([sys.executable, "-c", FIRST_CALL], env=env, capture_output=True, text=True, check=True)
            imp, call = (float(v) for v in r.stdout.split())
            out[label] = {"import_s": imp, "first_call_s": call}
    print(
        f"\nfirst call in a fresh process: empty Numba cache {out['cold_cache']['first_call_s']:.2f} s "
        f"(compilation), warm cache {out['warm_cache']['first_call_s']:.3f} s "
        f"(import {out['warm_cache']['import_s']:.2f} s)"
    )
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sample", default=os.environ.get("CHESTXRAY14_SAMPLE", "../shared/chestxray14-sample"))
    ap.add_argument("--n256", type=int, default=100)
    ap.add_argument("--n1024", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=REPEATS, help="timed passes per extractor and setting")
    ap.add_argument("--json")
    ap.add_argument("--skip-first-call", action="store_true")
    ap.add_argument("--no-opencv", action="store_true", help="leave OpenCV out (about 1 s per 256 px image)")
    ap.add_argument("--skip-stages", action="store_true")
    ap.add_argument("--skip-decode", action="store_true")
    a = ap.parse_args()
    from phow_baseline.data.preprocess import preprocess

    sample = Path(a.sample)
    ncpu = os.cpu_count() or 1
    res = {"cpu_count": ncpu}
    ims256 = [preprocess(p, 256) for p in sorted((sample / "images").glob("*.png"))[: a.n256]]
    ims1024 = [preprocess(p, None) for p in sorted((sample / "images-1024").glob("*.png"))[: a.n1024]]
    if not ims256:
        sys.exit(f"{sample}: no images (set CHESTXRAY14_SAMPLE)")
    res["256"] = measure(ims256, "256x256", ncpu, a.repeats, not a.no_opencv)
    if ims1024 and a.n1024 > 0:
        res["1024"] = measure(ims1024, "1024x1024", ncpu, a.repeats, not a.no_opencv)
    if not a.skip_stages:
        res["stages_256"] = stage_profile(ims256[:10], "256x256")
        if ims1024 and a.n1024 > 0:
            res["stages_1024"] = stage_profile(ims1024[:2], "1024x1024")
    if not a.skip_decode:
        res["decode_1024"] = decode_comparison(sorted((sample / "images-1024").glob("*.png")))
    if not a.skip_first_call:
        res["first_call"] = first_call_latency()
    for size in ("256", "1024"):
        if size in res:
            cpu_x = res[size]["ours_over_cyvlfeat_1thread_cpu_time"]
            print(
                f"\ntarget (issue 24): at least 20x cyvlfeat.sift.phow per core (CPU time, one thread) at {size} px "
                f"-> measured {cpu_x:.1f}x ({'met' if cpu_x >= 20 else 'NOT met'}); {load_line()}"
            )
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
