"""Fisher vector and VLAD encoding speed against VLFeat (cyvlfeat), on real PHOW descriptors.

Usage::

    python benchmarks/bench_fisher.py [--images 4] [--components 256] [--pca 80] [--vlad-words 64]

Reads ``--images`` images of the ChestX-ray14 sample (``$CHESTXRAY14_SAMPLE``,
default ``../shared/chestxray14-sample``) at 256 px, computes PHOW, RootSIFT
and PCA, fits the mixture on a sample of descriptors (few EM iterations: the
speed of the encoder does not depend on the fit's quality), and times on the
same post-processed descriptors of each image:

- ours, ``fisher_vector(improved=True)``, one thread (BLAS limited to one) and
  all cores (threads over chunks); VLFeat's ``vl_fisher`` through
  ``cyvlfeat.fisher.fisher(improved=True)`` with OpenMP limited to one thread;
- the whole per-image encoder (regions 1x1 + 2x2, RootSIFT and PCA included);
- the GEMM share: the floating-point work of the two GEMMs actually done
  (``4 n K (2d + 1)`` per image) over the FV time, against a square float32
  GEMM (2048 x 2048) measured in the same run, one thread and all cores;
- VLAD: ``vlad`` with the words given and with the exact quantizer included,
  against ``cyvlfeat.vlad.vlad`` given the same one-hot assignments.

Timings are the best of ``--repeat`` runs per image, summed over images.
The machine's load average is printed: compare ratios from one run.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np


def best_time(fn, repeat):
    best = float("inf")
    out = None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("--components", type=int, default=256)
    ap.add_argument("--pca", type=int, default=80)
    ap.add_argument("--vlad-words", type=int, default=64)
    ap.add_argument("--em-iter", type=int, default=5)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--sample", default=os.environ.get("CHESTXRAY14_SAMPLE", "../shared/chestxray14-sample"))
    args = ap.parse_args(argv)

    from threadpoolctl import threadpool_limits

    from phow_baseline.data import read_xray
    from phow_baseline.data.preprocess import preprocess
    from phow_baseline.encoding.fisher import FisherVectorEncoder, fisher_vector, nonzero_rows
    from phow_baseline.encoding.gmm import GaussianMixtureVocabulary
    from phow_baseline.encoding.quantize import quantize, single_blas_thread
    from phow_baseline.encoding.vlad import vlad
    from phow_baseline.encoding.vocabulary import Vocabulary
    from phow_baseline.features.descriptors import PCA, root_sift
    from phow_baseline.features.phow import phow

    try:
        from cyvlfeat.fisher import fisher as vl_fisher
        from cyvlfeat.vlad import vlad as vl_vlad
    except ImportError:
        vl_fisher = vl_vlad = None
        print("cyvlfeat is not installed: VLFeat columns are left out")

    paths = sorted((Path(args.sample) / "images").glob("*.png"))
    if len(paths) < args.images + 2:
        raise SystemExit(f"{args.sample}: not enough sample images")
    cores = os.cpu_count() or 1
    print(f"load average before: {os.getloadavg()}  cores: {cores}")
    imgs = [phow(preprocess(read_xray(p), 256)) for p in paths[: args.images + 2]]
    train = np.concatenate([d[nonzero_rows(d)] for _, d in imgs[:2]])
    train = train[np.random.default_rng(0).choice(len(train), min(len(train), 40_000), replace=False)]
    R = root_sift(train)
    pca = PCA(args.pca).fit(R)
    t = time.perf_counter()
    gmm = GaussianMixtureVocabulary(args.components, max_iter=args.em_iter, random_state=0).fit(pca.transform(R))
    t_gmm = time.perf_counter() - t
    voc = Vocabulary(args.vlad_words, max_descriptors=len(R), max_iter=20).fit(R)
    C = voc.cluster_centers_
    tests = imgs[2:]
    Xs, Rs = [], []
    for _, d in tests:
        r = root_sift(d[nonzero_rows(d)])
        Rs.append(r)
        Xs.append(pca.transform(r))
    n_desc = sum(len(x) for x in Xs)
    K, dim = gmm.means_.shape
    flops = sum(4.0 * len(x) * K * (2 * dim + 1) for x in Xs)
    g = (gmm.means_, gmm.covariances_, gmm.priors_)

    def total(fn):
        return sum(best_time(lambda x=x: fn(x), args.repeat)[0] for x in Xs)

    rows = []
    t_ours1 = total(lambda x: fisher_vector(x, *g, improved=True, n_threads=1))
    t_oursN = total(lambda x: fisher_vector(x, *g, improved=True, n_threads=cores))
    t_vl = None
    if vl_fisher is not None:
        with threadpool_limits(1, user_api="openmp"):
            t_vl = total(lambda x: vl_fisher(x, *g, improved=True))
    enc = FisherVectorEncoder(gmm=gmm, pca=pca, n_threads=1).fit(None)
    t_enc1 = sum(best_time(lambda f=f, d=d: enc.encode_one(f, d), args.repeat)[0] for f, d in tests)
    enc.set_params(n_threads=cores)
    t_encN = sum(best_time(lambda f=f, d=d: enc.encode_one(f, d), args.repeat)[0] for f, d in tests)

    sq = np.random.default_rng(0).random((2048, 2048), dtype=np.float32)
    with single_blas_thread():
        t_sq1, _ = best_time(lambda: sq @ sq, 3)
    t_sqN, _ = best_time(lambda: sq @ sq, 3)
    gf_sq1, gf_sqN = 2 * 2048**3 / t_sq1 / 1e9, 2 * 2048**3 / t_sqN / 1e9

    n = len(Xs)
    rows.append(("FV ours, 1 thread", n / t_ours1, flops / t_ours1 / 1e9))
    rows.append((f"FV ours, {cores} threads", n / t_oursN, flops / t_oursN / 1e9))
    if t_vl is not None:
        rows.append(("FV VLFeat (cyvlfeat), 1 thread", n / t_vl, None))
    rows.append(("FV encoder 1x1+2x2 + RootSIFT + PCA, 1 thread", n / t_enc1, None))
    rows.append((f"FV encoder 1x1+2x2 + RootSIFT + PCA, {cores} threads", n / t_encN, None))

    with single_blas_thread():
        words = [quantize(r, C, n_threads=1) for r in Rs]
    t_v1 = sum(
        best_time(lambda r=r, w=w: vlad(r, C, w, square_root=True, normalize_components=True), args.repeat)[0]
        for r, w in zip(Rs, words)
    )
    with single_blas_thread():
        t_vq = sum(
            best_time(
                lambda r=r: vlad(r, C, quantize(r, C, n_threads=1), square_root=True, normalize_components=True),
                args.repeat,
            )[0]
            for r in Rs
        )
    rows.append(("VLAD ours, words given, 1 thread", n / t_v1, None))
    rows.append(("VLAD ours + exact quantizer, 1 thread", n / t_vq, None))
    t_vv = None
    if vl_vlad is not None:
        ones = []
        for r, w in zip(Rs, words):
            a = np.zeros((len(r), len(C)), np.float32)
            a[np.arange(len(r)), w] = 1
            ones.append(a)
        with threadpool_limits(1, user_api="openmp"):
            t_vv = sum(
                best_time(lambda r=r, a=a: vl_vlad(r, C, a, square_root=True, normalize_components=True), args.repeat)[
                    0
                ]
                for r, a in zip(Rs, ones)
            )
        rows.append(("VLAD VLFeat (cyvlfeat), assignments given, 1 thread", n / t_vv, None))

    print(
        f"\n{n} images, {n_desc / n:.0f} non-zero descriptors per image, PCA {dim}, {K} Gaussians, "
        f"VLAD {len(C)} words x {C.shape[1]} dims; mixture fit ({args.em_iter} EM iterations) {t_gmm:.1f} s"
    )
    print(f"square float32 GEMM 2048^3: {gf_sq1:.1f} GFLOP/s on 1 thread, {gf_sqN:.1f} GFLOP/s on {cores}")
    print("\n| encoder | images/s | GEMM GFLOP/s | share of square GEMM |")
    print("|---|---|---|---|")
    for name, ips, gf in rows:
        share = ""
        if gf is not None:
            share = f"{gf / (gf_sq1 if '1 thread' in name else gf_sqN):.0%}"
        print(f"| {name} | {ips:.2f} | {'' if gf is None else f'{gf:.1f}'} | {share} |")
    if t_vl is not None:
        print(
            f"\nFV speed-up over VLFeat, both 1 thread: {t_vl / t_ours1:.1f}x; ours on {cores} threads: "
            f"{t_vl / t_oursN:.1f}x"
        )
    if t_vv is not None:
        print(
            f"VLAD speed-up over VLFeat (words given), 1 thread: {t_vv / t_v1:.1f}x; with our quantizer "
            f"included: {t_vv / t_vq:.1f}x"
        )
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
