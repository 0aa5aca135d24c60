"""Quantisation, spatial pyramid, chi2 kernel map, and the on-disk feature shards.

The pipeline's most expensive step is assigning every dense descriptor to
its nearest visual word: about 53,000 descriptors x 600 words x 128 dims
per 256x256 image, 8 GFLOP.  :func:`quantize` does it exactly with the
``||x||^2 - 2 x.c + ||c||^2`` form: float32 GEMM on row chunks that stay
in cache, then a Numba kernel that takes the arg-min and fills the
spatial-pyramid histogram in the same pass (NumPy's SIMD arg-min, then a Numba kernel that counts
words per pyramid cell).  All-zero descriptors (PHOW's
low-contrast ones) map to one word, found once.
"""

from __future__ import annotations

import json
import math
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

import numba
import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

#: Rows of descriptors per GEMM chunk: 512 x 600 float32 distances (1.2 MB)
#: stay in cache while the arg-min reads them.
QUANTIZE_CHUNK = 512

#: VLFeat's PHOW application (``phow_caltech101.m``): 2x2 and 4x4 grids,
#: each level L1-normalised, then the whole vector.
VLFEAT_GRIDS = (2, 4)
#: Lazebnik, Schmid and Ponce 2006: 1x1, 2x2, 4x4 with level weights
#: 1/4, 1/4, 1/2 (``1/2^L`` for level 0, ``1/2^(L-l+1)`` for level l).
LAZEBNIK_GRIDS = (1, 2, 4)


# --------------------------------------------------------------------------
# Numba kernels
# --------------------------------------------------------------------------

@numba.njit(cache=True, nogil=True)
def _count_words(rows, w, cells, words, hist, k):
    """words[rows[r]] = w[r]; hist[cells[rows[r], l] * k + w[r]] += 1 for every level l."""
    n_levels = cells.shape[1]
    for r in range(rows.shape[0]):
        i = rows[r]
        words[i] = w[r]
        for l in range(n_levels):
            hist[cells[i, l] * k + w[r]] += 1.0


_CONTROLLER = None


def _blas_single_thread():
    """A context limiting BLAS to one thread (threadpoolctl; the controller is built once)."""
    global _CONTROLLER
    if _CONTROLLER is None:
        from threadpoolctl import ThreadpoolController

        _CONTROLLER = ThreadpoolController()
    return _CONTROLLER.limit(limits=1, user_api="blas")


def _nonzero_rows(desc: np.ndarray) -> np.ndarray:
    """Boolean mask of rows that are not all zero (128 uint8 = 16 uint64 words)."""
    if desc.dtype == np.uint8 and desc.shape[1] % 8 == 0 and desc.flags.c_contiguous:
        return desc.view(np.uint64).any(axis=1)
    return desc.any(axis=1)


def _check_centers(centers) -> np.ndarray:
    c = np.ascontiguousarray(centers, dtype=np.float32)
    if c.ndim != 2 or len(c) < 1:
        raise ValueError(f"centers must be a (k, d) array, got shape {c.shape}")
    return c


def quantize_histogram(descriptors, centers, cells=None, n_cells=1, n_threads=None, chunk=QUANTIZE_CHUNK):
    """Nearest word of every descriptor, and counts per (cell, word).

    Parameters
    ----------
    descriptors : (n, d) uint8 or float32
    centers : (k, d) float32 visual words
    cells : (n, L) int32, optional
        Flat cell index of each descriptor at each pyramid level, in
        ``[0, n_cells)`` (default: one cell).
    n_cells : int
        Total cells over all levels.
    n_threads : int, optional
        Worker threads, each running single-threaded BLAS on its own
        chunks (default: all cores).

    Returns
    -------
    words : (n,) int32
    hist : (n_cells * k,) float64 counts
    """
    X = np.asarray(descriptors)
    if X.ndim != 2:
        raise ValueError(f"descriptors must be 2-D, got shape {X.shape}")
    C = _check_centers(centers)
    if X.shape[1] != C.shape[1]:
        raise ValueError(f"descriptors have {X.shape[1]} dims, words {C.shape[1]}")
    if X.dtype not in (np.uint8, np.float32):
        X = X.astype(np.float32)
    X = np.ascontiguousarray(X)
    n, k = len(X), len(C)
    if cells is None:
        cells = np.zeros((n, 1), np.int32)
    cells = np.ascontiguousarray(cells, dtype=np.int32)
    if cells.shape[0] != n:
        raise ValueError("cells and descriptors differ in length")
    words = np.empty(n, np.int32)
    hist = np.zeros(n_cells * k, np.float64)
    if n == 0:
        return words, hist
    cnorm = np.einsum("ij,ij->i", C, C, dtype=np.float32)
    nz = _nonzero_rows(X)
    zero_idx = np.flatnonzero(~nz).astype(np.int64)
    if len(zero_idx):
        # ||0 - c||^2 = ||c||^2: one arg-min for all the zeroed descriptors
        w0 = np.full(len(zero_idx), np.argmin(cnorm), np.int32)
        _count_words(zero_idx, w0, cells, words, hist, k)
    idx = np.flatnonzero(nz).astype(np.int64)
    if len(idx) == 0:
        return words, hist
    d = X.shape[1]
    # Augmented words [2 c ; -||c||^2]: one GEMM gives 2 x.c - ||c||^2, whose
    # arg-max is the arg-min of ||x - c||^2 (||x||^2 is the same for every c).
    C_aug = np.empty((d + 1, k), np.float32)
    C_aug[:d] = 2.0 * C.T
    C_aug[d] = -cnorm
    starts = list(range(0, len(idx), chunk))
    n_threads = n_threads or os.cpu_count() or 1
    n_threads = max(1, min(n_threads, len(starts)))

    def run(part, h):
        # NumPy's matmul and arg-max release the GIL: threads run in parallel.
        buf = np.empty((chunk, d + 1), np.float32)
        buf[:, d] = 1.0
        S = np.empty((chunk, k), np.float32)
        for s in part:
            rows = idx[s:s + chunk]
            m = len(rows)
            buf[:m, :d] = X[rows]
            np.matmul(buf[:m], C_aug, out=S[:m])
            _count_words(rows, S[:m].argmax(axis=1).astype(np.int32), cells, words, h, k)

    if n_threads == 1:
        run(starts, hist)
        return words, hist
    parts = [starts[t::n_threads] for t in range(n_threads)]
    hists = [hist] + [np.zeros_like(hist) for _ in range(n_threads - 1)]
    with _blas_single_thread(), ThreadPoolExecutor(n_threads) as ex:
        list(ex.map(run, parts, hists))
    for h in hists[1:]:
        hist += h
    return words, hist


def quantize(descriptors, centers, n_threads=None) -> np.ndarray:
    """Index of the nearest word (squared Euclidean distance) of each descriptor.

    Exactly the assignment of ``sklearn.cluster.KMeans.predict`` on float32
    data (both arg-min ``||c||^2 - 2 x.c`` in float32), except for exact
    ties, which resolve to the lowest index here.
    """
    return quantize_histogram(descriptors, centers, n_threads=n_threads)[0]


# --------------------------------------------------------------------------
# Spatial pyramid
# --------------------------------------------------------------------------

def pyramid_cells(frames_xy, width, height, grids=VLFEAT_GRIDS) -> tuple[np.ndarray, int]:
    """Flat cell index of each frame at each pyramid level.

    The cell edges are those of VLFeat's ``phow_caltech101.m``,
    ``linspace(1, width, g + 1)`` in MATLAB's 1-based pixels, i.e. ``g``
    equal cells over ``[0, width - 1]`` in 0-based pixels; a frame on the last
    edge goes to the last cell.  Level ``l``'s cells are numbered after
    those of the levels before it, row-major within a level.

    Returns
    -------
    cells : (n, L) int32
    n_cells : int (sum of g^2)
    """
    xy = np.asarray(frames_xy, dtype=np.float64)
    out = np.empty((len(xy), len(grids)), np.int32)
    offset = 0
    for l, g in enumerate(grids):
        g = int(g)
        bx = np.clip(np.floor(xy[:, 0] * g / max(width - 1, 1)), 0, g - 1).astype(np.int32)
        by = np.clip(np.floor(xy[:, 1] * g / max(height - 1, 1)), 0, g - 1).astype(np.int32)
        out[:, l] = offset + by * g + bx
        offset += g * g
    return out, offset


def level_weights(grids, weighting) -> np.ndarray:
    """Weights of the pyramid levels: VLFeat's (equal, each level L1-normalised) or Lazebnik's."""
    if weighting == "vlfeat":
        return np.ones(len(grids))
    if weighting == "lazebnik":
        L = len(grids) - 1
        return np.array([1 / 2 ** L if l == 0 else 1 / 2 ** (L - l + 1) for l in range(L + 1)])
    raise ValueError(f"weighting must be 'vlfeat' or 'lazebnik', got {weighting!r}")


def normalise_pyramid(counts: np.ndarray, grids, k: int, weighting="vlfeat") -> np.ndarray:
    """Turn per-(cell, word) counts into the pyramid feature.

    ``vlfeat``: each level divided by its own total (L1), then the whole
    vector by its total, as ``phow_caltech101.m`` does.  ``lazebnik``: each
    level scaled by its weight, then the whole vector L1-normalised.
    Empty images give a zero vector.
    """
    counts = np.asarray(counts, np.float64)
    out = np.empty(counts.shape, np.float32)
    w = level_weights(grids, weighting)
    lo = 0
    for l, g in enumerate(grids):
        hi = lo + g * g * k
        part = counts[..., lo:hi]
        if weighting == "vlfeat":
            s = part.sum(-1, keepdims=True)
            part = np.divide(part, s, out=np.zeros_like(part), where=s > 0)
        out[..., lo:hi] = part * w[l]
        lo = hi
    s = out.sum(-1, keepdims=True, dtype=np.float64)
    return np.divide(out, s, out=np.zeros_like(out), where=s > 0).astype(np.float32)


# --------------------------------------------------------------------------
# The chi2 homogeneous kernel map (VLFeat's vl_homkermap)
# --------------------------------------------------------------------------

#: VLFeat's PHOW application: ``vl_homkermap(hist, 1, 'kchi2', 'gamma', .5)``.
HOMKERMAP_ORDER = 1
HOMKERMAP_GAMMA = 0.5


def _chi2_spectrum(omega):
    # kappa(omega) = sech(pi omega), the spectrum of the chi2 kernel
    return 2.0 / (np.exp(np.pi * omega) + np.exp(-np.pi * omega))


def homkermap_constants(order=HOMKERMAP_ORDER, period=None):
    """Period, frequency step ``L`` and the spectrum samples of VLFeat's chi2 map.

    VLFeat's defaults (``vl/homkermap.c``): rectangular window, period
    ``8.80 sqrt(order + 4.44) - 12.6`` (7.93 for order 1), spectrum
    ``kappa(omega) = sech(pi omega)`` smoothed by the window's sinc, sampled
    at ``j L`` for ``j = 0..order``, with ``L = 2 pi / period``.
    """
    if period is None:
        period = max(8.80 * math.sqrt(order + 4.44) - 12.6, 1.0)
    L = 2 * math.pi / period
    eps = 1e-2
    omega_range = 2.0 / (period * eps)
    d_omega = 2 * omega_range / (2 * 1024.0 + 1)
    grid = -omega_range + d_omega * np.arange(int(np.floor(2 * omega_range / d_omega + 1e-9)) + 1)
    win = np.sinc((period / 2.0) * grid / np.pi) * (period / (2 * np.pi))
    kappa = np.array([max(float((win * _chi2_spectrum(grid + j * L)).sum() * d_omega), 0.0)
                      for j in range(order + 1)])
    return float(period), float(L), kappa


class HomogeneousKernelMap(BaseEstimator, TransformerMixin):
    """Explicit feature map of the chi2 kernel (Vedaldi and Zisserman 2012).

    Each input value ``x >= 0`` becomes ``2 * order + 1`` values,
    ``sqrt(L x^gamma kappa_0)`` and ``sqrt(2 L x^gamma kappa_j) (cos, sin)(j L log x)``,
    so that dot products of mapped vectors approximate the additive
    ``gamma``-homogeneous chi2 kernel ``sum_i 2 (x_i y_i)^(gamma+...)/(x_i + y_i)``
    (exactly ``2xy/(x+y)`` per dimension for ``gamma = 1``).  Defaults are
    VLFeat's PHOW application's: order 1, gamma 0.5, rectangular window.
    The map is evaluated in closed form, not from VLFeat's interpolated table
    (differences below 1e-3 relative); values with binary exponent outside
    VLFeat's table range ``(-20, 8)`` map to zero as in VLFeat.

    The output keeps the inputs in blocks: columns ``(2 order + 1) * i ...``
    belong to input ``i``.
    """

    def __init__(self, order=HOMKERMAP_ORDER, gamma=HOMKERMAP_GAMMA, period=None):
        self.order = order
        self.gamma = gamma
        self.period = period

    def fit(self, X=None, y=None):
        if int(self.order) < 0 or self.gamma <= 0:
            raise ValueError("order must be >= 0 and gamma > 0")
        self.period_, self.L_, self.kappa_ = homkermap_constants(int(self.order), self.period)
        return self

    @property
    def dim_per_input(self) -> int:
        return 2 * int(self.order) + 1

    def transform(self, X):
        if not hasattr(self, "kappa_"):
            self.fit()
        X = np.asarray(X, dtype=np.float32)
        out = np.zeros(X.shape[:-1] + (X.shape[-1] * self.dim_per_input,), np.float32)
        _homkermap_kernel(X.reshape(-1, X.shape[-1]), out.reshape(-1, out.shape[-1]),
                          np.float32(self.gamma), np.float32(self.L_), self.kappa_.astype(np.float32))
        return out


@numba.njit(cache=True, parallel=False, fastmath=False)
def _homkermap_kernel(X, out, gamma, L, kappa):
    n, d = X.shape
    order = kappa.shape[0] - 1
    D = 2 * order + 1
    lo = np.float32(2.0 ** -20)
    hi = np.float32(2.0 ** 8)
    for i in range(n):
        for j in range(d):
            x = X[i, j]
            ax = abs(x)
            if ax <= lo or ax >= hi:
                continue
            sign = np.float32(1.0) if x >= 0 else np.float32(-1.0)
            lxg = L * ax ** gamma
            llog = L * np.log(ax)
            base = j * D
            out[i, base] = sign * np.sqrt(lxg * kappa[0])
            for f in range(1, order + 1):
                s = np.sqrt(2.0 * lxg * kappa[f])
                out[i, base + 2 * f - 1] = sign * s * np.cos(f * llog)
                out[i, base + 2 * f] = sign * s * np.sin(f * llog)


def make_kernel_map(name: str | None):
    """``"homkermap"`` (VLFeat's chi2 map), ``"additive_chi2"`` (scikit-learn's
    ``AdditiveChi2Sampler``, sample_steps 2) or ``"none"``."""
    if name in (None, "none"):
        return None
    if name == "homkermap":
        return HomogeneousKernelMap().fit()
    if name == "additive_chi2":
        return AdditiveChi2Map()
    raise ValueError(f"kernel_map must be 'homkermap', 'additive_chi2' or 'none', got {name!r}")


KERNEL_MAPS = ("homkermap", "additive_chi2", "none")


class AdditiveChi2Map(BaseEstimator, TransformerMixin):
    """scikit-learn's ``AdditiveChi2Sampler`` (2 sample steps: 3 outputs per input),
    usable on any number of features.  Output in 3 blocks of ``d`` columns
    (sqrt, cos, sin), unlike :class:`HomogeneousKernelMap`'s side-by-side layout."""

    def __init__(self, sample_steps=2):
        self.sample_steps = sample_steps

    def fit(self, X=None, y=None):
        return self

    def transform(self, X):
        from sklearn.kernel_approximation import AdditiveChi2Sampler

        X = np.asarray(X, np.float32)
        return AdditiveChi2Sampler(sample_steps=self.sample_steps).fit(X[:1]).transform(X).astype(np.float32)


# --------------------------------------------------------------------------
# The encoder estimator
# --------------------------------------------------------------------------

class SpatialPyramidEncoder(BaseEstimator, TransformerMixin):
    """Bag of visual words with a spatial pyramid: PHOW output -> fixed-length vector.

    ``fit`` learns the :class:`~phow_baseline.vocabulary.Vocabulary` on the
    descriptors of the training images; ``transform`` quantises each image's
    descriptors and returns the pyramid histogram, ``(n_images,
    n_words * sum(g^2))`` float32 (12,000 dims with the defaults).

    Input: a sequence of ``(frames, descriptors)`` per image (as
    :class:`~phow_baseline.phow.PHOW` gives), where ``frames[:, 0:2]`` are
    0-based ``x, y`` pixel centres; the image size comes from
    ``image_size`` (the images are square, side ``image_size``).

    Parameters
    ----------
    n_words, max_descriptors, seed : see :class:`Vocabulary`.
    grids : tuple of int
        Grid of each pyramid level (default ``(2, 4)``, VLFeat's).
    weighting : {"vlfeat", "lazebnik"}
    image_size : int
        Side of the images the frames come from (pixels).
    vocabulary : Vocabulary, optional
        A fitted vocabulary to use instead of fitting one.
    """

    def __init__(self, n_words=600, max_descriptors=100_000, grids=VLFEAT_GRIDS, weighting="vlfeat",
                 image_size=256, seed=0, vocabulary=None, n_threads=None):
        self.n_words = n_words
        self.max_descriptors = max_descriptors
        self.grids = grids
        self.weighting = weighting
        self.image_size = image_size
        self.seed = seed
        self.vocabulary = vocabulary
        self.n_threads = n_threads

    def fit(self, X, y=None):
        from .vocabulary import Vocabulary

        level_weights(self.grids, self.weighting)  # validates
        if self.vocabulary is not None:
            if not hasattr(self.vocabulary, "cluster_centers_"):
                raise ValueError("the vocabulary given is not fitted")
            self.vocabulary_ = self.vocabulary
        else:
            self.vocabulary_ = Vocabulary(self.n_words, self.max_descriptors, seed=self.seed).fit(X)
        self.n_features_out_ = len(self.vocabulary_.cluster_centers_) * sum(g * g for g in self.grids)
        return self

    def encode_one(self, frames, descriptors, return_words=False):
        """Pyramid feature of one image (and the word of each descriptor)."""
        centers = self.vocabulary_.cluster_centers_
        cells, n_cells = pyramid_cells(np.asarray(frames)[:, :2], self.image_size, self.image_size, self.grids)
        words, counts = quantize_histogram(descriptors, centers, cells, n_cells, n_threads=self.n_threads)
        feat = normalise_pyramid(counts, self.grids, len(centers), self.weighting)
        return (feat, words) if return_words else feat

    def transform(self, X):
        if not hasattr(self, "vocabulary_"):
            raise ValueError("SpatialPyramidEncoder is not fitted")
        out = np.empty((len(X), self.n_features_out_), np.float32)
        for i, (frames, desc) in enumerate(X):
            out[i] = self.encode_one(frames, desc)
        return out


# --------------------------------------------------------------------------
# The feature-shard store
# --------------------------------------------------------------------------

FEATURE_FORMAT_VERSION = 1
#: Images per feature shard (256 x 12,000 float32 = 12 MB).
FEATURE_SHARD_SIZE = 256


def _atomic_save(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}-{id(array)}")
    with open(tmp, "wb") as fh:
        np.save(fh, array, allow_pickle=False)
    os.replace(tmp, path)


class FeatureStore:
    """Pyramid features of many images in shards on disk, ``(n, dim)`` float32.

    ``index.json`` holds the parameters (a fingerprint of the vocabulary and
    PHOW settings), the image names and the shard size.  Each shard
    ``feat_SSSSS.npy`` is written to a temporary name and renamed when
    complete, so a killed run leaves only whole shards, and a rerun redoes
    just the missing ones.  Shards are memory-mapped when read.
    """

    def __init__(self, directory, names, dim, shard_size, params):
        self.directory = Path(directory)
        self.names = list(names)
        self.dim = int(dim)
        self.shard_size = int(shard_size)
        self.params = params

    @classmethod
    def create(cls, directory, names, dim, params: dict, shard_size=FEATURE_SHARD_SIZE) -> "FeatureStore":
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        index = {"format": FEATURE_FORMAT_VERSION, "dim": int(dim), "shard_size": int(shard_size),
                 "params": params, "names": list(names)}
        p = directory / "index.json"
        if p.exists():
            old = json.loads(p.read_text())
            if old != json.loads(json.dumps(index)):
                raise ValueError(f"{p}: a feature store with other parameters or images is already here; "
                                 "use another folder or delete it")
        else:
            tmp = p.with_name("index.json.tmp")
            tmp.write_text(json.dumps(index))
            os.replace(tmp, p)
        return cls(directory, names, dim, shard_size, params)

    @classmethod
    def open(cls, directory) -> "FeatureStore":
        p = Path(directory) / "index.json"
        if not p.exists():
            raise FileNotFoundError(f"{p}: no feature store here")
        idx = json.loads(p.read_text())
        if idx.get("format") != FEATURE_FORMAT_VERSION:
            raise ValueError(f"{p}: unsupported feature store format {idx.get('format')}")
        store = cls(directory, idx["names"], idx["dim"], idx["shard_size"], idx["params"])
        return store

    def __len__(self):
        return len(self.names)

    @property
    def n_shards(self) -> int:
        return (len(self.names) + self.shard_size - 1) // self.shard_size

    def shard_rows(self, s: int) -> range:
        return range(s * self.shard_size, min(len(self.names), (s + 1) * self.shard_size))

    def shard_path(self, s: int) -> Path:
        return self.directory / f"feat_{s:05d}.npy"

    def missing_shards(self) -> list[int]:
        return [s for s in range(self.n_shards) if not self.shard_path(s).exists()]

    def write_shard(self, s: int, features: np.ndarray) -> None:
        features = np.asarray(features, np.float32)
        if features.shape != (len(self.shard_rows(s)), self.dim):
            raise ValueError(f"shard {s}: expected shape {(len(self.shard_rows(s)), self.dim)}, "
                             f"got {features.shape}")
        _atomic_save(self.shard_path(s), features)

    def read_shard(self, s: int, mmap=True) -> np.ndarray:
        p = self.shard_path(s)
        if not p.exists():
            raise FileNotFoundError(f"{p}: shard missing (the encoding did not finish; rerun it)")
        arr = np.load(p, mmap_mode="r" if mmap else None, allow_pickle=False)
        if arr.shape != (len(self.shard_rows(s)), self.dim):
            raise ValueError(f"{p}: shape {arr.shape}, expected {(len(self.shard_rows(s)), self.dim)}")
        return arr

    def load(self, rows=None) -> np.ndarray:
        """All features (or the given rows) in memory."""
        X = np.concatenate([np.asarray(self.read_shard(s)) for s in range(self.n_shards)]) \
            if self.n_shards else np.zeros((0, self.dim), np.float32)
        return X if rows is None else X[np.asarray(rows)]

    def batches(self, rows=None, seed=None, epoch=0, transform=None):
        """Yield ``(X_batch, row_positions)`` one shard at a time.

        ``rows``: the store rows to use (default all); positions index into
        ``rows``.  With a ``seed`` the shards come in a per-epoch random
        order and rows are shuffled within a shard (SGD); ``transform``
        (e.g. the kernel map) is applied per batch.
        """
        n = len(self.names)
        sel = np.arange(n) if rows is None else np.asarray(rows)
        pos_of = np.full(n, -1, np.int64)
        pos_of[sel] = np.arange(len(sel))
        order = list(range(self.n_shards))
        rng = None
        if seed is not None:
            rng = np.random.default_rng([seed, epoch])
            rng.shuffle(order)
        for s in order:
            r = np.arange(self.shard_rows(s).start, self.shard_rows(s).stop)
            keep = pos_of[r] >= 0
            if not keep.any():
                continue
            local = np.flatnonzero(keep)
            if rng is not None:
                local = rng.permutation(local)
            Xb = np.asarray(self.read_shard(s)[local])
            if transform is not None:
                Xb = transform(Xb)
            yield Xb, pos_of[r[local]]


def encode_images(images, phow, encoder, n_threads=1):
    """PHOW + pyramid features of a stack of preprocessed images, ``(n, dim)``."""
    out = np.empty((len(images), encoder.n_features_out_), np.float32)
    for i, img in enumerate(images):
        frames, desc = phow.transform([img])[0]
        out[i] = encoder.encode_one(frames, desc)
    return out


def _encode_shard_job(cache_dir, rows, phow_params, centers, enc_params, store_dir, s):
    """One shard, in a worker: read the image cache, PHOW, quantise, pyramid, write atomically."""
    from .phow import PHOW
    from .preprocess import ImageCache
    from .vocabulary import Vocabulary

    cache = ImageCache.open(cache_dir)
    store = FeatureStore.open(store_dir)
    if store.shard_path(s).exists():
        return s
    vocab = Vocabulary(n_words=len(centers))
    vocab.cluster_centers_ = centers
    enc = SpatialPyramidEncoder(**{**enc_params, "vocabulary": vocab, "n_threads": 1}).fit(None)
    phow = PHOW(**phow_params)
    imgs = cache.take(rows)
    store.write_shard(s, encode_images(imgs, phow, enc))
    return s


def encode_to_store(cache, cache_rows, store_dir, phow, encoder, *, n_jobs=-1, backend=None,
                    shard_size=FEATURE_SHARD_SIZE, progress=True, names=None) -> FeatureStore:
    """Encode images of an :class:`~phow_baseline.preprocess.ImageCache` into a :class:`FeatureStore`.

    Shards run in parallel with joblib (``backend``: any joblib backend,
    e.g. ``"loky"``, ``"threading"`` or ``"dask"`` inside a
    ``dask.distributed.Client``); complete shards are skipped, so an
    interrupted run resumes.  Images that could not be read when the cache
    was built are encoded as zero vectors and flagged in ``cache.ok``.
    """
    from joblib import Parallel, delayed, parallel_config
    from tqdm.auto import tqdm

    cache_rows = [int(r) for r in cache_rows]
    names = names if names is not None else [cache.names[r] for r in cache_rows]
    centers = encoder.vocabulary_.cluster_centers_
    params = {"phow": phow.get_params(), "grids": list(encoder.grids), "weighting": encoder.weighting,
              "image_size": encoder.image_size, "cache": str(Path(cache.directory).resolve().name),
              "vocabulary_sha256": _sha256_array(centers)}
    params = json.loads(json.dumps(params, default=str))
    store = FeatureStore.create(store_dir, names, encoder.n_features_out_, params, shard_size)
    todo = store.missing_shards()
    if todo:
        enc_params = {"grids": tuple(encoder.grids), "weighting": encoder.weighting,
                      "image_size": encoder.image_size}
        jobs = (delayed(_encode_shard_job)(str(cache.directory), [cache_rows[i] for i in store.shard_rows(s)],
                                           phow.get_params(), centers, enc_params, str(store.directory), s)
                for s in todo)
        with parallel_config(backend=backend) if backend else _nullcontext():
            par = Parallel(n_jobs=n_jobs, return_as="generator_unordered")
            for _ in tqdm(par(jobs), total=len(todo), disable=not progress, desc="encode", unit="shard"):
                pass
    return store


class _nullcontext:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def _sha256_array(a: np.ndarray) -> str:
    import hashlib

    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()
