"""The preprocessed-image cache against plain ``cv2.imread``, in one run.

On the real sample's 1024x1024 PNGs (``images-1024/``) and its 512x512
ones (``images/``): images/s of

* ``cv2.imread`` of the files (decode only, what a loader without a cache pays per epoch),
* building the cache (decode + equalize + resize + atomic shard write, all cores),
* reading the cache (memory-mapped ``uint8`` rows: what PHOW and the CNN loader pay).

    python benchmarks/bench_cache.py [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np


def timed(f):
    t = time.perf_counter()
    f()
    return time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sample", default=os.environ.get("CHESTXRAY14_SAMPLE", "../shared/chestxray14-sample"))
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--json")
    a = ap.parse_args()
    from phow_baseline.data import ImageCache

    res = {"cpu_count": os.cpu_count(), "size": a.size}
    for folder in ("images-1024", "images"):
        paths = sorted((Path(a.sample) / folder).glob("*.png"))
        for p in paths:  # warm the OS file cache for both contestants
            p.read_bytes()
        t_read = min(
            timed(lambda paths=paths: [cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in paths]) for _ in range(2)
        )
        with tempfile.TemporaryDirectory() as tmp:
            t_build = timed(lambda paths=paths: ImageCache.build(Path(tmp) / "c", paths, size=a.size, progress=False))
            cache = ImageCache.open(Path(tmp) / "c")
            t_cache = min(timed(lambda cache=cache: [np.array(cache[i]) for i in range(len(cache))]) for _ in range(3))
            t_take = min(timed(lambda cache=cache: cache.take(range(len(cache)))) for _ in range(3))
        r = {
            "n": len(paths),
            "imread_per_s": len(paths) / t_read,
            "build_per_s": len(paths) / t_build,
            "cache_read_per_s": len(paths) / t_cache,
            "cache_take_per_s": len(paths) / t_take,
        }
        r["cache_read_over_imread"] = r["cache_read_per_s"] / r["imread_per_s"]
        res[folder] = r
        print(
            f"{folder:<12} n={r['n']:>4}  cv2.imread {r['imread_per_s']:>9.0f} img/s | cache build "
            f"{r['build_per_s']:>7.0f} img/s | cache read {r['cache_read_per_s']:>9.0f} img/s "
            f"({r['cache_read_over_imread']:.0f}x imread)"
        )
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
