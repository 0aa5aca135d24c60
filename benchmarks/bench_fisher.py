"""Fisher vector and VLAD encoding speed against VLFeat (cyvlfeat), on real PHOW descriptors.

Usage::

    python benchmarks/bench_fisher.py [--images 4] [--components 256] [--pca 80] [--vlad-words 64]
        [--repeat 5] [--clock wall|cpu]

Reads ``--images`` images of the ChestX-ray14 sample (``$CHESTXRAY14_SAMPLE``,
default ``../shared/chestxray14-sample``) at 256 px, computes PHOW, RootSIFT
and PCA, fits the mixture on a sample of descriptors (few EM iterations: the
speed of the encoder does not depend on the fit's quality), and times on the
same post-processed descriptors of each image.

Every peer comparison follows ``benchmarks/_timing.py``: both sides pinned
to the same CPU and one thread (process affinity, BLAS and OpenMP pools
through threadpoolctl, and VLFeat's private thread count, which the OpenMP
limit does not reach, through ``vl_set_num_threads``), warmed up, then timed in interleaved passes (ours,
theirs, ours, theirs, ...; one pass = every test image once), with the load
average printed before and after.  Ratios are of the best passes.  ``--clock
cpu`` times this process's CPU time instead of the wall clock: on a loaded
machine it leaves out the time-slices other processes take (not their
pressure on the caches and memory bandwidth).

- Fisher vectors: ours, ``fisher_vector(improved=True)``, against VLFeat's
  ``vl_fisher`` through ``cyvlfeat.fisher.fisher(improved=True)``.
- Where the time goes: in the same interleaved rounds, the log-likelihood
  GEMMs alone (``[x^2, x, 1] @ B``, float32, the chunks ``fisher_vector``
  multiplies: ``2 n K (2d + 1)`` floating-point operations per image) and a
  square float32 GEMM (2048^3).  Printed: our GEMMs' rate against the square
  GEMM's (the "share"), the GEMMs' part of the Fisher vector's time, and the
  rate of the whole Fisher vector counted in those GEMM operations.
- All cores: ours with threads over chunks (no peer: VLFeat's ``vl_fisher``
  runs one thread per call).
- The whole per-image encoder (regions 1x1 + 2x2, RootSIFT and PCA included).
- VLAD: ``vlad`` with the words given and with the exact quantizer included,
  against ``cyvlfeat.vlad.vlad`` given the same one-hot assignments.
"""

from __future__ import annotations

import argparse
import os
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from _timing import interleaved, load_line, pinned, ratio


@contextmanager
def vlfeat_threads(n):
    """VLFeat's own thread count set to ``n`` inside the block (``vl_set_num_threads``), then restored.

    VLFeat keeps a private thread count (``vl_get_max_threads``, the OpenMP
    maximum when the library loads) that threadpoolctl's OpenMP limit does not
    change: left alone, ``vl_fisher`` runs one OpenMP thread per core however
    the pools are limited.
    """
    try:
        from cyvlfeat.generic.generic import get_max_threads, set_num_threads
    except ImportError:
        yield None
        return
    before = get_max_threads()
    set_num_threads(n)
    try:
        yield before
    finally:
        set_num_threads(before)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("--components", type=int, default=256)
    ap.add_argument("--pca", type=int, default=80)
    ap.add_argument("--vlad-words", type=int, default=64)
    ap.add_argument("--em-iter", type=int, default=5)
    ap.add_argument("--repeat", type=int, default=5, help="timed passes per contestant (interleaved)")
    ap.add_argument(
        "--clock",
        choices=["wall", "cpu"],
        default="wall",
        help="wall: perf_counter; cpu: this process's CPU time (blind to time-slicing by other processes)",
    )
    ap.add_argument("--sample", default=os.environ.get("CHESTXRAY14_SAMPLE", "../shared/chestxray14-sample"))
    args = ap.parse_args(argv)

    from phow_baseline.data import read_xray
    from phow_baseline.data.preprocess import preprocess
    from phow_baseline.encoding.fisher import FISHER_CHUNK, FisherVectorEncoder, fisher_vector, nonzero_rows
    from phow_baseline.encoding.gmm import GaussianMixtureVocabulary, augment, log_joint_table
    from phow_baseline.encoding.quantize import quantize
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
        raise SystemExit(f"{args.sample}: not enough sample images ({len(paths)}, need {args.images + 2})")
    cores = os.cpu_count() or 1
    print(f"before set-up: {load_line()}")
    imgs = [phow(preprocess(read_xray(p), 256)) for p in paths[: args.images + 2]]
    train = np.concatenate([d[nonzero_rows(d)] for _, d in imgs[:2]])
    train = train[np.random.default_rng(0).choice(len(train), min(len(train), 40_000), replace=False)]
    R = root_sift(train)
    pca = PCA(args.pca).fit(R)
    gmm = GaussianMixtureVocabulary(args.components, max_iter=args.em_iter, random_state=0).fit(pca.transform(R))
    voc = Vocabulary(args.vlad_words, max_descriptors=len(R), max_iter=20).fit(R)
    C = voc.cluster_centers_
    tests = imgs[2:]
    Xs, Rs = [], []
    for _, d in tests:
        r = root_sift(d[nonzero_rows(d)])
        Rs.append(r)
        Xs.append(pca.transform(r))
    n = len(Xs)
    n_desc = sum(len(x) for x in Xs)
    K, dim = gmm.means_.shape
    g = (gmm.means_, gmm.covariances_, gmm.priors_)
    gemm_flops = sum(2.0 * len(x) * K * (2 * dim + 1) for x in Xs)

    # the log-likelihood GEMMs of fisher_vector alone: the same chunks, the same operands
    B = log_joint_table(*g, np.float32)
    chunks = [augment(x[s : s + FISHER_CHUNK]) for x in Xs for s in range(0, len(x), FISHER_CHUNK)]
    out = np.empty((FISHER_CHUNK, K), np.float32)
    sq = np.random.default_rng(0).random((2048, 2048), dtype=np.float32)
    sq_out = np.empty_like(sq)

    def ours():
        for x in Xs:
            fisher_vector(x, *g, improved=True, n_threads=1)

    def gemms():
        for a in chunks:
            np.matmul(a, B, out=out[: len(a)])

    fns = {"ours": ours}
    if vl_fisher is not None:
        fns["vlfeat"] = lambda: [vl_fisher(x, *g, improved=True) for x in Xs]
    fns["our GEMMs alone"] = gemms
    fns["square GEMM"] = lambda: np.matmul(sq, sq, out=sq_out)

    print(
        f"\n{n} images, {n_desc / n:.0f} non-zero descriptors per image, PCA {dim}, {K} Gaussians, "
        f"VLAD {len(C)} words x {C.shape[1]} dims"
    )
    print(
        f"\nFisher vectors, one thread each (pinned), {args.repeat} interleaved passes of {n} images, "
        f"{args.clock} clock:"
    )
    with vlfeat_threads(1) as vl_before, pinned(1) as cpus:
        t = interleaved(fns, args.repeat, clock=args.clock)
    print(f"  VLFeat's own thread count: {vl_before} outside, 1 in the timed block (vl_set_num_threads)")
    best = {k: min(v) for k, v in t.items()}
    gf_sq = 2 * 2048**3 / best["square GEMM"] / 1e9
    gf_ours = gemm_flops / best["our GEMMs alone"] / 1e9
    print(f"  CPU {cpus}; best pass (median) per contestant:")
    for k, v in t.items():
        print(f"  {k}: {min(v):.3f} s ({np.median(v):.3f} s)")
    print("\n| | images/s | GFLOP/s | share of square GEMM |")
    print("|---|---|---|---|")
    print(f"| FV ours, 1 thread | {n / best['ours']:.2f} | {gemm_flops / best['ours'] / 1e9:.1f} (whole FV) | |")
    if "vlfeat" in best:
        print(f"| FV VLFeat (cyvlfeat), 1 thread | {n / best['vlfeat']:.2f} | | |")
    print(f"| our log-likelihood GEMMs alone | | {gf_ours:.1f} | {gf_ours / gf_sq:.0%} |")
    print(f"| square float32 GEMM 2048^3 | | {gf_sq:.1f} | 100% |")
    if "vlfeat" in best:
        print(
            f"\nFV speed-up over VLFeat, both 1 thread, pinned, interleaved: {ratio(t, 'vlfeat', 'ours'):.2f}x "
            f"(median passes: {ratio(t, 'vlfeat', 'ours', stat='median'):.2f}x)"
        )
    print(
        f"Our GEMMs run at {gf_ours / gf_sq:.0%} of the square GEMM's rate and take "
        f"{best['our GEMMs alone'] / best['ours']:.0%} of our FV time (the rest: [x^2, x] rows, row maxima, "
        f"the sparse soft-max and moments kernel, the normalisations)"
    )

    # all cores (no peer) and the whole encoder
    enc = FisherVectorEncoder(gmm=gmm, pca=pca, n_threads=1).fit(None)
    encN = FisherVectorEncoder(gmm=gmm, pca=pca, n_threads=cores).fit(None)
    print(f"\nOurs on {cores} threads and the whole encoder, interleaved:")
    t2 = interleaved(
        {
            "FV 1 thread": ours,
            f"FV {cores} threads": lambda: [fisher_vector(x, *g, improved=True, n_threads=cores) for x in Xs],
            "encoder 1 thread": lambda: [enc.encode_one(f, d) for f, d in tests],
            f"encoder {cores} threads": lambda: [encN.encode_one(f, d) for f, d in tests],
        },
        args.repeat,
    )
    for k, v in t2.items():
        print(f"  {k}: {n / min(v):.2f} images/s")
    print("  (encoder: regions 1x1 + 2x2, RootSIFT and PCA included)")

    with pinned(1):
        words = [quantize(r, C, n_threads=1) for r in Rs]
    vfns = {
        "VLAD ours, words given": lambda: [
            vlad(r, C, w, square_root=True, normalize_components=True) for r, w in zip(Rs, words)
        ],
        "VLAD ours + exact quantizer": lambda: [
            vlad(r, C, quantize(r, C, n_threads=1), square_root=True, normalize_components=True) for r in Rs
        ],
    }
    if vl_vlad is not None:
        ones = []
        for r, w in zip(Rs, words):
            a = np.zeros((len(r), len(C)), np.float32)
            a[np.arange(len(r)), w] = 1
            ones.append(a)
        vfns["VLAD VLFeat, assignments given"] = lambda: [
            vl_vlad(r, C, a, square_root=True, normalize_components=True) for r, a in zip(Rs, ones)
        ]
    print("\nVLAD, one thread each (pinned), interleaved:")
    with vlfeat_threads(1), pinned(1):
        tv = interleaved(vfns, args.repeat, clock=args.clock)
    for k, v in tv.items():
        print(f"  {k}: {n / min(v):.2f} images/s")
    if vl_vlad is not None:
        peer = "VLAD VLFeat, assignments given"
        print(
            f"  VLAD speed-up over VLFeat (words given): {ratio(tv, peer, 'VLAD ours, words given'):.1f}x; with our "
            f"quantizer included: {ratio(tv, peer, 'VLAD ours + exact quantizer'):.1f}x"
        )
    print(f"\nafter: {load_line()}")


if __name__ == "__main__":
    main()
