"""Quantization + spatial pyramid speed, the vocabulary's k-means, and the end-to-end cost per image.

On the real ChestX-ray14 sample ($CHESTXRAY14_SAMPLE):

0. **encode_one against phow** (``--only ratio``; ``--quick`` runs this part
   alone): on the same real 256x256 images, one thread (BLAS, Numba and OpenCV
   held to one), the passes interleaved ``phow, encode_one, phow, encode_one, ...``
   with the load average before and after; the ``encode_one / phow`` time
   ratio (median of the per-image ratios and ratio of the totals), where
   encode_one's time goes (pyramid cells, the nearest-word search with its
   histogram, the normalization), the share of words identical to a float64
   brute force (it must be 1.0), the search kernel that ran
   (:func:`~phow_baseline.encoding.quantize.quantizer_kernel`), and the floor
   the pruning bound's GEMM alone sets at the square GEMM's single-thread rate.
1. PHOW descriptors of real equalized 256x256 images, a 600-word vocabulary
   fit on descriptors of other sample images.
2. Our quantization + pyramid (``quantize_histogram``, its default: the
   exact pruned search) against ``sklearn.cluster.KMeans.predict`` on the
   same descriptors and words: descriptors/s, the ratio, and whether the
   assignments are identical.  Also our brute-force path
   (``method="gemm"``: one float32 GEMM per chunk and its arg-max).
3. Two rates for each of our paths, next to the square float32 GEMM rate
   measured now:

   * **achieved GFLOP/s**: the floating-point work actually done / time.
     GEMM path: ``2 (d + 1) k`` per non-zero descriptor (the zeroed ones
     are assigned at once, without flops).  Pruned path: the projection
     ``2 d m``, the bound ``2 (m + 2) k`` and ``3 d`` per exact evaluation
     (``x - c``, its square, the sum), with the exact evaluations counted by
     running the search's own kernels on the same descriptors (a count, not
     an estimate).  The GEMM path's exact check of near-ties is not counted.
   * **effective GFLOP/s**: the brute-force work ``2 n k d`` for all ``n``
     descriptors / time, i.e. the rate a brute-force GEMM would need to
     match our time.  It credits work skipped, so it can exceed the GEMM rate.
4. The vocabulary's k-means: 100,000 PHOW descriptors of other sample images
   x 600 words.  (a) k-means++ seeding with one ``random_state``: ours
   against ``sklearn.cluster.kmeans_plusplus`` as ``KMeans.fit`` calls it
   (time, and whether the same points are chosen).  (b) Lloyd from that one
   initialisation with the same iterations (``tol=0``; ``--kmeans-iter``,
   20 and 100 by default, 100 being the vocabulary's ``max_iter``): our
   ``fit_kmeans`` with its default assignment (Elkan's bounds kept between
   iterations, :mod:`phow_baseline.encoding.kmeans_bounds`; the labels of a full
   search) and with ``bounds=False`` (every point searched every
   iteration by the exact pruned search) against
   ``sklearn.cluster.KMeans(algorithm="lloyd", n_init=1)``, all on every
   core, wall time; the two of ours must give identical centres.  (c) The
   whole fit, (a) + (b), as ``KMeans(init="k-means++")`` does it.
   Agreement of the centres and labels with sklearn on float32 (what the
   vocabulary gives it) and on float64 (its most exact arithmetic), and of
   those two with each other (at the first ``--kmeans-iter``).
5. End to end per 1024x1024 PNG (decode -> equalize -> resize -> PHOW ->
   encode) as a multiple of the PNG decode alone, single process and with
   all cores, and the wall time that implies for all 112,120 images.

    python benchmarks/bench_encode.py [--quick] [--images 8] [--only ratio,quantize,kmeans,e2e] [--json out.json]

Timings on a shared machine are noisy: the load average is printed with them;
compare the ratios, measured in one run with the timings interleaved.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np


def best_of(f, repeat=5):
    ts = []
    for _ in range(repeat):
        t = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t)
    return min(ts)


def gemm_rate(n=2048, repeat=5):
    a = np.random.default_rng(0).random((n, n), dtype=np.float32)
    b = np.random.default_rng(1).random((n, n), dtype=np.float32)
    a @ b
    return 2 * n**3 / best_of(lambda: a @ b, repeat)


def pruned_work(X, C):
    """Flops the pruned search does on ``X`` (uint8 or float32 descriptors) with words ``C``.

    Runs the search's own kernels single-threaded on the non-zero rows to count
    the exact evaluations (the first per row plus the extra ones); returns
    ``(flops, exact_evaluations_per_nonzero_row)``, or ``(None, None)`` if the
    quantizer's internals are not those this count was written for.
    """
    import inspect

    from phow_baseline.encoding import quantize as Q

    try:
        new_api = "C64" in inspect.signature(Q._refine_words.py_func).parameters
        C64 = np.asarray(C, np.float64)
        T = Q.pruning_tables(C)
        X = np.ascontiguousarray(X)
        idx = np.flatnonzero(Q.nonzero_descriptor_rows(X)).astype(np.int64)
        m, (k, d) = T.n_dims, C.shape
        mu32 = T.mu.astype(np.float32)
        cc2_max = float(T.centred_sq.max())
        extra = 0
        chunk = Q.QUANTIZE_CHUNK
        for s in range(0, len(idx), chunk):
            rows = idx[s : s + chunk]
            r = len(rows)
            xc = np.empty((r, d), np.float32)
            xm2 = np.empty(r)
            Q._centre_rows(X, rows, T.mu, mu32, xc, xm2)
            P = xc @ T.V
            Pa = np.empty((r, m + 2), np.float32)
            slack = np.empty(r)
            Q._rest_norms(P, xm2, T.eps_rel, T.rest_max, Pa, slack)
            S = Pa @ T.bound
            w = np.empty(r, np.int32)
            if new_api:  # exact distances ||x - c||^2 summed in float64
                extra += Q._refine_words(
                    X, rows, C64, Q.PRUNE_MARGIN, cc2_max, S, S.argmin(axis=1), xm2, slack, w, Q._PRUNE_GROUPS
                )
            else:  # exact distances from the centred words
                extra += Q._refine_words(
                    X,
                    rows,
                    T.mu,
                    T.centred,
                    T.centred_sq,
                    Q.PRUNE_MARGIN,
                    cc2_max,
                    S,
                    S.argmin(axis=1),
                    xm2,
                    slack,
                    w,
                    Q._PRUNE_GROUPS,
                )
    except (AttributeError, TypeError, ValueError) as exc:  # internals changed
        print(f"(pruned work not counted: {exc})", file=sys.stderr)
        return None, None
    n = len(idx)
    evals = n + extra
    per_eval = 3.0 * d if new_api else 2.0 * d  # (x - c), its square, the sum; or a dot product
    return n * (2.0 * d * m + 2.0 * (m + 2) * k) + evals * per_eval, evals / max(n, 1)


def encode_vs_phow(paths, C, repeats):
    """``encode_one`` / ``phow`` on the same 256 px images, one thread, interleaved; words against float64."""
    import numba
    from threadpoolctl import threadpool_limits

    from phow_baseline.data.preprocess import preprocess
    from phow_baseline.encoding.pyramid import SpatialPyramidEncoder, normalize_pyramid, pyramid_cells
    from phow_baseline.encoding.quantize import PRUNE_DIMS, quantize_histogram, quantizer_kernel
    from phow_baseline.features.phow import phow

    k, d = C.shape
    grids = (2, 4)
    enc = SpatialPyramidEncoder(centers=C, grids=grids, image_size=256, n_threads=1).fit()
    imgs = [preprocess(p, 256) for p in paths]
    feats = [phow(im) for im in imgs]
    n_threads_before, cv_threads_before = numba.get_num_threads(), cv2.getNumThreads()
    numba.set_num_threads(1)
    cv2.setNumThreads(1)  # phow's smoothing: OpenCV's own pool held to one thread too
    try:
        with threadpool_limits(1):
            for im, (f, x) in zip(imgs[:2], feats[:2]):  # warm-up: Numba kernels loaded, caches filled
                phow(im)
                enc.encode_one(f, x)
            g1 = gemm_rate(1024, 3)
            load0 = os.getloadavg()
            t_phow, t_enc, c_phow, c_enc = [], [], [], []
            for _ in range(repeats):
                for im, (f, x) in zip(imgs, feats):
                    c, t = time.thread_time(), time.perf_counter()
                    phow(im)
                    t_phow.append(time.perf_counter() - t)
                    c_phow.append(time.thread_time() - c)
                    c, t = time.thread_time(), time.perf_counter()
                    enc.encode_one(f, x)
                    t_enc.append(time.perf_counter() - t)
                    c_enc.append(time.thread_time() - c)
            load1 = os.getloadavg()
            # where encode_one's time goes: its three steps, interleaved the same way
            t_cells, t_quant, t_norm = [], [], []
            for _ in range(repeats):
                for f, x in feats:
                    t = time.perf_counter()
                    cells, n_cells = pyramid_cells(f[:, :2], 256, 256, grids)
                    t_cells.append(time.perf_counter() - t)
                    t = time.perf_counter()
                    _, counts = quantize_histogram(x, C, cells, n_cells, n_threads=1)
                    t_quant.append(time.perf_counter() - t)
                    t = time.perf_counter()
                    normalize_pyramid(counts, grids, k)
                    t_norm.append(time.perf_counter() - t)
    finally:
        numba.set_num_threads(n_threads_before)
        cv2.setNumThreads(cv_threads_before)
    # words against a float64 brute force (every distance, np.argmin: the first of equal minima)
    C64 = C.astype(np.float64)
    c2 = np.einsum("ij,ij->i", C64, C64)
    same = total = 0
    n_nonzero = 0
    for f, x in feats:
        _, words = enc.encode_one(f, x, return_words=True)
        X64 = x.astype(np.float64)
        D = c2[None] - 2.0 * X64 @ C64.T + np.einsum("ij,ij->i", X64, X64)[:, None]
        same += int((words == D.argmin(1)).sum())
        total += len(x)
        n_nonzero += int(x.any(1).sum())
    tp, te = np.array(t_phow), np.array(t_enc)
    per_image = te / tp
    cpu_ratio = float(np.median(np.array(c_enc) / np.array(c_phow)))
    m = min(PRUNE_DIMS, d - 1)
    bound_flops = 2.0 * (m + 2) * k + 2.0 * d * m  # per non-zero descriptor: projection + bound GEMM
    floor_ms = bound_flops * n_nonzero / len(feats) / g1 * 1e3
    r = {
        "ratio_images": len(imgs),
        "ratio_repeats": repeats,
        "phow_ms_median": float(np.median(tp) * 1e3),
        "encode_one_ms_median": float(np.median(te) * 1e3),
        "encode_over_phow_median": float(np.median(per_image)),
        "encode_over_phow_totals": float(te.sum() / tp.sum()),
        "encode_over_phow_thread_cpu_median": cpu_ratio,
        "encode_pyramid_cells_ms": float(np.median(t_cells) * 1e3),
        "encode_quantize_histogram_ms": float(np.median(t_quant) * 1e3),
        "encode_normalize_ms": float(np.median(t_norm) * 1e3),
        "words_identical_to_float64_share": same / total,
        "quantizer_kernel": quantizer_kernel(k, d),
        "square_gemm_gflops_1_thread": g1 / 1e9,
        "bound_gemm_floor_ms": floor_ms,
        "load_average_before_ratio": load0,
        "load_average_after_ratio": load1,
    }
    print(
        f"encode_one vs phow, {len(imgs)} real 256x256 images x {repeats} interleaved passes, one thread "
        f"({k} words, pyramid {grids}); load average before {', '.join(f'{v:.2f}' for v in load0)}"
    )
    print(
        f"  phow {r['phow_ms_median']:.2f} ms, encode_one {r['encode_one_ms_median']:.2f} ms (medians): "
        f"encode_one / phow = {r['encode_over_phow_median']:.2f} (median of per-image ratios), "
        f"{r['encode_over_phow_totals']:.2f} (totals); target <= 1.0"
    )
    print(f"  the same passes in thread CPU time (less load-sensitive): encode_one / phow = {cpu_ratio:.2f} (median)")
    print(
        f"  encode_one's steps (medians): pyramid cells {r['encode_pyramid_cells_ms']:.2f} ms, nearest words + "
        f"histogram {r['encode_quantize_histogram_ms']:.2f} ms, normalization {r['encode_normalize_ms']:.2f} ms"
    )
    print(
        f"  words identical to the float64 brute force: {r['words_identical_to_float64_share']:.6f} ({same} of {total})"
    )
    print(f"  kernel: {r['quantizer_kernel']}")
    print(
        f"  the pruning bound's GEMMs alone ({bound_flops / 1e3:.1f} kflop per non-zero descriptor) at the square "
        f"GEMM's one-thread rate ({g1 / 1e9:.1f} GFLOP/s): {floor_ms:.2f} ms per image"
    )
    print(f"  load average after {', '.join(f'{v:.2f}' for v in load1)}")
    return r


def load():
    return ", ".join(f"{v:.2f}" for v in os.getloadavg())


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sample", default=os.environ.get("CHESTXRAY14_SAMPLE", "../shared/chestxray14-sample"))
    ap.add_argument("--images", type=int, default=8, help="Images for the quantization comparison.")
    ap.add_argument("--e2e-images", type=int, default=32, help="1024x1024 images for the end-to-end cost.")
    ap.add_argument("--words", type=int, default=600)
    ap.add_argument("--kmeans-descriptors", type=int, default=100_000)
    ap.add_argument("--kmeans-images", type=int, default=80, help="Images the k-means descriptors come from.")
    ap.add_argument(
        "--kmeans-iter",
        default="20,100",
        help="Comma-separated Lloyd iterations of both k-means (tol=0), one comparison each.",
    )
    ap.add_argument(
        "--no-sklearn-init",
        dest="sklearn_init",
        action="store_false",
        help="Skip timing sklearn's kmeans_plusplus (slow: minutes at 100,000 x 600).",
    )
    ap.add_argument("--only", default="ratio,quantize,kmeans,e2e", help="Comma-separated parts to run.")
    ap.add_argument("--ratio-images", type=int, default=8, help="256 px images of the encode_one / phow ratio.")
    ap.add_argument("--ratio-repeats", type=int, default=5, help="Interleaved passes over those images.")
    ap.add_argument(
        "--quick", action="store_true", help="Only the encode_one / phow ratio (4 images, 3 passes): about a minute."
    )
    ap.add_argument("--json", help="Write the figures here.")
    a = ap.parse_args()
    parts = set(a.only.split(","))
    if a.quick:
        parts = {"ratio"}
        a.ratio_images, a.ratio_repeats = min(a.ratio_images, 4), min(a.ratio_repeats, 3)

    from joblib import Parallel, delayed
    from sklearn.cluster import KMeans

    from phow_baseline.config import BaselineConfig
    from phow_baseline.data import equalize, read_xray, resize
    from phow_baseline.data.preprocess import preprocess
    from phow_baseline.encoding import encoding_for
    from phow_baseline.encoding.kmeans import fit_kmeans
    from phow_baseline.encoding.pyramid import pyramid_cells
    from phow_baseline.encoding.quantize import quantize_histogram
    from phow_baseline.encoding.vocabulary import Vocabulary, sample_descriptors
    from phow_baseline.features.phow import phow

    sample = Path(a.sample)
    paths = sorted((sample / "images").glob("*.png"))
    if not paths:
        sys.exit(f"{sample}/images: no images (set CHESTXRAY14_SAMPLE)")
    ncpu = os.cpu_count()
    res = {"cpu_count": ncpu, "load_average_start": os.getloadavg()}
    print(f"{ncpu} cores; load average at start {load()}")

    # -- vocabulary on other images ------------------------------------------
    if parts & {"ratio", "quantize", "e2e"}:
        t = time.perf_counter()
        train = [phow(preprocess(p, 256))[1] for p in paths[100:140]]
        vocab = Vocabulary(a.words, max_descriptors=60_000, random_state=0).fit(train)
        C = vocab.cluster_centers_
        res["vocabulary_fit_s"] = time.perf_counter() - t

    # -- encode_one against phow, one thread, interleaved ----------------------
    if "ratio" in parts:
        res.update(encode_vs_phow(paths[: a.ratio_images], C, a.ratio_repeats))

    # -- quantization against KMeans.predict ------------------------------------
    if "quantize" in parts:
        test = [phow(preprocess(p, 256)) for p in paths[: a.images]]
        n_desc = sum(len(d) for _, d in test)
        zero_share = float(np.mean(np.concatenate([~d.any(1) for _, d in test])))
        n_nonzero = sum(int(d.any(1).sum()) for _, d in test)
        km = KMeans(a.words, n_init=1, max_iter=1).fit(C)
        km.cluster_centers_ = C.copy()
        Xf = [d.astype(np.float32) for _, d in test]
        cells = [pyramid_cells(f[:, :2], 256, 256, (2, 4)) for f, _ in test]

        def ours(method="auto"):
            return [quantize_histogram(d, C, c, n, method=method)[0] for (_, d), (c, n) in zip(test, cells)]

        def ours_gemm():
            return ours("gemm")

        def theirs():
            return [km.predict(x) for x in Xf]

        w_ours, w_km, w_gemm = ours(), theirs(), ours_gemm()
        agree = float(np.mean(np.concatenate(w_ours) == np.concatenate(w_km)))
        agree_gemm = float(np.mean(np.concatenate(w_gemm) == np.concatenate(w_km)))
        # interleave the timings so that machine noise hits all three alike
        t_ours, t_km, t_gemm = [], [], []
        for _ in range(5):
            t_ours.append(best_of(ours, 1))
            t_km.append(best_of(theirs, 1))
            t_gemm.append(best_of(ours_gemm, 1))
        t_ours, t_km, t_gemm = min(t_ours), min(t_km), min(t_gemm)
        k, d = C.shape
        brute = 2.0 * n_desc * k * d  # every descriptor against every word
        gemm_done = 2.0 * n_nonzero * k * (d + 1)  # what the GEMM path computes
        pruned = [pruned_work(x, C) for _, x in test]
        pruned_done = None if pruned[0][0] is None else sum(f for f, _ in pruned)
        evals = None if pruned_done is None else sum(f * e for (f, e) in pruned) / pruned_done
        g = gemm_rate()
        res.update(
            {
                "descriptors": n_desc,
                "descriptors_per_image": n_desc / len(test),
                "zeroed_share": zero_share,
                "ours_desc_per_s": n_desc / t_ours,
                "kmeans_predict_desc_per_s": n_desc / t_km,
                "speedup_vs_kmeans_predict": t_km / t_ours,
                "assignments_identical_share": agree,
                "ours_gemm_desc_per_s": n_desc / t_gemm,
                "gemm_path_speedup_vs_kmeans_predict": t_km / t_gemm,
                "gemm_path_assignments_identical_share": agree_gemm,
                "square_gemm_gflops": g / 1e9,
                "pruned_achieved_gflops": None if pruned_done is None else pruned_done / t_ours / 1e9,
                "pruned_effective_gflops": brute / t_ours / 1e9,
                "pruned_work_share_of_brute_force": None if pruned_done is None else pruned_done / brute,
                "pruned_exact_evaluations_per_nonzero_descriptor": evals,
                "gemm_path_achieved_gflops": gemm_done / t_gemm / 1e9,
                "gemm_path_effective_gflops": brute / t_gemm / 1e9,
                "load_average_quantize": os.getloadavg(),
            }
        )
        print(
            f"quantization + pyramid, {len(test)} real 256x256 images, {n_desc} descriptors "
            f"({zero_share:.1%} zeroed), {a.words} words"
        )
        print(f"  ours (exact pruned)  {res['ours_desc_per_s'] / 1e6:8.2f} M desc/s")
        print(f"  ours (brute GEMM)    {res['ours_gemm_desc_per_s'] / 1e6:8.2f} M desc/s")
        print(f"  KMeans.predict       {res['kmeans_predict_desc_per_s'] / 1e6:8.2f} M desc/s")
        print(
            f"  ratio                {res['speedup_vs_kmeans_predict']:8.2f}x; identical assignments: {agree:.6%}; "
            f"brute GEMM path {res['gemm_path_speedup_vs_kmeans_predict']:.2f}x, identical {agree_gemm:.6%}"
        )
        print(f"  square float32 GEMM now: {g / 1e9:.1f} GFLOP/s")
        if pruned_done is not None:
            print(
                f"  pruned path: achieved {res['pruned_achieved_gflops']:.1f} GFLOP/s (work done: "
                f"{res['pruned_work_share_of_brute_force']:.1%} of brute force, {evals:.2f} exact evaluations "
                f"per non-zero descriptor); effective {res['pruned_effective_gflops']:.1f} GFLOP/s "
                "(brute-force flops / time)"
            )
        print(
            f"  GEMM path:   achieved {res['gemm_path_achieved_gflops']:.1f} GFLOP/s (zeroed descriptors "
            f"skipped); effective {res['gemm_path_effective_gflops']:.1f} GFLOP/s; load average {load()}"
        )

    # -- the vocabulary's k-means against sklearn's KMeans ----------------------------
    if "kmeans" in parts:
        from sklearn.cluster import kmeans_plusplus

        from phow_baseline.encoding.kmeans import _centred, _kmeans_plusplus

        src = paths[200 : 200 + a.kmeans_images]
        S = sample_descriptors([phow(preprocess(p, 256))[1] for p in src], a.kmeans_descriptors, seed=0)
        k = a.words
        print(
            f"vocabulary k-means: {len(S)} PHOW descriptors of {len(src)} other sample images x {k} words; "
            f"load average {load()}",
            flush=True,
        )
        # (a) k-means++ seeding, same random_state: ours against sklearn's kmeans_plusplus (as KMeans.fit calls
        # it: on the centred float32 points)
        mean, Xc, X64 = _centred(S)
        _kmeans_plusplus(Xc[:2000], X64[:2000], 20, 0)  # warm-up (BLAS threads)
        fit_kmeans(S[:5000], 100, init=S[:100], max_iter=2, tol=0.0)  # warm-up (Numba kernels loaded)
        KMeans(100, init=S[:100], n_init=1, max_iter=2, tol=0.0).fit(S[:5000])
        t = time.perf_counter()
        c_ours, i_ours = _kmeans_plusplus(Xc, X64, k, 0)
        t_pp_ours = time.perf_counter() - t
        del X64
        if a.sklearn_init:
            t = time.perf_counter()
            _, i_sk = kmeans_plusplus(Xc, k, random_state=0)
            t_pp_sk = time.perf_counter() - t
            same_idx = bool(np.array_equal(i_ours, i_sk))
        else:
            t_pp_sk, same_idx = None, None
        load_pp = load()
        init = c_ours + mean
        # (b) Lloyd from that one initialisation, the same iterations (tol=0), interleaved
        iters = [int(v) for v in str(a.kmeans_iter).split(",")]
        scale = None
        res["kmeans_descriptors"], res["kmeans_words"] = len(S), k
        res["kmeanspp_ours_s"], res["kmeanspp_sklearn_s"] = t_pp_ours, t_pp_sk
        res["kmeanspp_speedup"] = None if t_pp_sk is None else t_pp_sk / t_pp_ours
        res["kmeanspp_same_indices_as_sklearn"], res["load_average_kmeanspp"] = same_idx, load_pp
        pp_sk = (
            "not run (--no-sklearn-init)" if t_pp_sk is None else f"{t_pp_sk:.1f} s, same {k} points chosen: {same_idx}"
        )
        print(
            f"  k-means++ (random_state=0): ours {t_pp_ours:.1f} s; sklearn kmeans_plusplus {pp_sk}; "
            f"load average {load_pp}"
        )
        res["lloyd"] = []
        for it in iters:
            t = time.perf_counter()
            km = KMeans(k, init=init, n_init=1, max_iter=it, tol=0.0, algorithm="lloyd").fit(S)
            t_sk = time.perf_counter() - t
            load_sk = load()
            t = time.perf_counter()
            centers, labels, inertia, n_iter, hist = fit_kmeans(S, k, init=init, max_iter=it, tol=0.0)
            t_ours_km = time.perf_counter() - t
            load_ours = load()
            t = time.perf_counter()
            c_full, l_full, _, n_full, _ = fit_kmeans(S, k, init=init, max_iter=it, tol=0.0, bounds=False)
            t_full = time.perf_counter() - t
            load_full = load()
            same_as_full = bool(np.array_equal(centers, c_full) and np.array_equal(labels, l_full))
            r = {
                "iterations": it,
                "iterations_sklearn": int(km.n_iter_),
                "iterations_ours": n_iter,
                "sklearn_s": t_sk,
                "ours_s": t_ours_km,
                "ours_no_bounds_s": t_full,
                "speedup": t_sk / t_ours_km,
                "speedup_no_bounds": t_sk / t_full,
                "bounds_identical_to_full_search": same_as_full,
                "distances_per_point_per_iteration": [h["distances"] / len(S) for h in hist],
                "seconds_per_iteration": [h["seconds"] for h in hist],
                "inertia_per_iteration": [h["inertia"] for h in hist],
                "load_average_sklearn": load_sk,
                "load_average_ours": load_ours,
                "load_average_no_bounds": load_full,
            }
            if scale is None:
                # the float64 reference: sklearn on the same points in float64 (its most exact arithmetic)
                km64 = KMeans(k, init=init.astype(np.float64), n_init=1, max_iter=it, tol=0.0, algorithm="lloyd").fit(
                    S.astype(np.float64)
                )
                scale = float(np.abs(km64.cluster_centers_).max())

                def agree(c1, l1, c2, l2, scale=scale):
                    dc = np.abs(np.asarray(c1, np.float64) - c2).max(1)
                    return {
                        "centres_max_abs_diff": float(dc.max()),
                        "centres_within_1e-4_of_scale": float(np.mean(dc <= 1e-4 * scale)),
                        "labels_identical_share": float(np.mean(l1 == l2)),
                    }

                r.update(
                    {
                        "ours_vs_sklearn32": agree(centers, labels, km.cluster_centers_, km.labels_),
                        "ours_vs_sklearn64": agree(centers, labels, km64.cluster_centers_, km64.labels_),
                        "sklearn32_vs_sklearn64": agree(
                            km.cluster_centers_, km.labels_, km64.cluster_centers_, km64.labels_
                        ),
                        "kmeans_inertia_ours": inertia,
                        "kmeans_inertia_sklearn32": float(km.inertia_),
                        "kmeans_inertia_sklearn64": float(km64.inertia_),
                    }
                )
            res["lloyd"].append(r)
            print(
                f"  Lloyd, {it} iterations (tol=0) from that init, all cores: sklearn KMeans(lloyd) {t_sk:.1f} s "
                f"(load after {load_sk}); ours fit_kmeans {t_ours_km:.1f} s (load after {load_ours}): "
                f"{t_sk / t_ours_km:.2f}x (target >= 3x); ours without the bounds {t_full:.1f} s: "
                f"{t_sk / t_full:.2f}x; bounds and full search identical: {same_as_full}"
            )
            dpp = r["distances_per_point_per_iteration"]
            print(
                "    distances per point, iterations 1/2/5/10/last: "
                + "/".join(f"{dpp[i]:.1f}" for i in (0, 1, 4, 9, len(dpp) - 1) if i < len(dpp))
                + f" (a full search: {k})"
            )
            if t_pp_sk is not None:
                fit_sk, fit_ours = t_pp_sk + t_sk, t_pp_ours + t_ours_km
                r.update(fit_ours_s=fit_ours, fit_sklearn_s=fit_sk, fit_speedup=fit_sk / fit_ours)
                print(
                    f"    whole fit (k-means++ + {it} Lloyd iterations): sklearn {fit_sk:.1f} s, ours "
                    f"{fit_ours:.1f} s: {fit_sk / fit_ours:.2f}x"
                )
            for key, what in (
                ("ours_vs_sklearn32", "ours vs sklearn float32"),
                ("ours_vs_sklearn64", "ours vs sklearn float64"),
                ("sklearn32_vs_sklearn64", "sklearn float32 vs float64"),
            ):
                if key not in r:
                    continue
                g = r[key]
                print(
                    f"    {what:<28} centres max |diff| {g['centres_max_abs_diff']:.3g} (coordinates up to "
                    f"{scale:.0f}), {g['centres_within_1e-4_of_scale']:.1%} of centres within 1e-4 of that; "
                    f"labels identical {g['labels_identical_share']:.4%}"
                )

    # -- end to end per 1024x1024 PNG -------------------------------------------
    if "e2e" in parts:
        big = sorted((sample / "images-1024").glob("*.png"))[: a.e2e_images]
        cfg = BaselineConfig.from_preset("vlfeat")  # the bag of words (the defaults are Fisher vectors)
        enc = encoding_for(cfg).make_encoder(vocab, cfg)
        enc.n_threads = 1

        def decode_all():
            for p in big:
                cv2.imread(str(p), cv2.IMREAD_UNCHANGED)

        def one(p):
            img = resize(equalize(read_xray(p)), 256)
            f, d = phow(img)
            return enc.encode_one(f, d)

        def e2e_serial():
            for p in big:
                one(p)

        for p in big[:2]:
            one(p)
        t_dec = best_of(decode_all, 3) / len(big)
        t_e2e = best_of(e2e_serial, 2) / len(big)
        par = Parallel(n_jobs=ncpu, prefer="processes")
        par(delayed(one)(p) for p in big[:ncpu])
        t_par = best_of(lambda: par(delayed(one)(p) for p in big), 2) / len(big)
        res.update(
            {
                "png_decode_ms": t_dec * 1e3,
                "e2e_ms_single": t_e2e * 1e3,
                "e2e_over_decode_single": t_e2e / t_dec,
                "e2e_ms_per_image_all_cores": t_par * 1e3,
                "e2e_over_decode_all_cores": t_par / t_dec,
                "full_dataset_hours_all_cores": 112_120 * t_par / 3600,
            }
        )
        print(
            f"end to end per 1024x1024 PNG ({len(big)} images): decode {t_dec * 1e3:.1f} ms; "
            f"decode+equalize+resize+PHOW+encode {t_e2e * 1e3:.1f} ms single process "
            f"({res['e2e_over_decode_single']:.1f}x decode), {t_par * 1e3:.1f} ms/image on {ncpu} cores "
            f"({res['e2e_over_decode_all_cores']:.1f}x decode)"
        )
        print(
            f"  all 112,120 images on this machine: {res['full_dataset_hours_all_cores']:.2f} h; load average {load()}"
        )
    res["load_average_end"] = os.getloadavg()
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=2, default=float))


if __name__ == "__main__":
    main()
