"""Pyramid features of many images in shards on disk, and the parallel driver that fills them."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from ..io import atomic_save_npy, claim_folder, read_json, sha256_array
from .pyramid import SpatialPyramidEncoder

FEATURE_FORMAT_VERSION = 1
#: Images per feature shard (256 x 12,000 float32 = 12 MB).
FEATURE_SHARD_SIZE = 256


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
        claim_folder(directory / "index.json", index, what="a feature store")
        return cls(directory, names, dim, shard_size, params)

    @classmethod
    def open(cls, directory) -> "FeatureStore":
        p = Path(directory) / "index.json"
        if not p.exists():
            raise FileNotFoundError(f"{p}: no feature store here")
        idx = read_json(p, what="feature-store index")
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
        atomic_save_npy(self.shard_path(s), features)

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


def encode_images(images, phow, encoder):
    """PHOW + pyramid features of a stack of preprocessed images, ``(n, dim)``."""
    out = np.empty((len(images), encoder.n_features_out_), np.float32)
    for i, img in enumerate(images):
        frames, desc = phow.transform([img])[0]
        out[i] = encoder.encode_one(frames, desc)
    return out


def _encode_shard_job(cache_dir, rows, phow_params, centers, enc_params, store_dir, s):
    """One shard, in a worker: read the image cache, PHOW, quantize, pyramid, write atomically."""
    from ..features.phow import PHOW
    from ..data.preprocess import ImageCache

    cache = ImageCache.open(cache_dir)
    store = FeatureStore.open(store_dir)
    if store.shard_path(s).exists():
        return s
    enc = SpatialPyramidEncoder(**{**enc_params, "centers": centers, "n_threads": 1}).fit()
    phow = PHOW(**phow_params)
    imgs = cache.take(rows)
    store.write_shard(s, encode_images(imgs, phow, enc))
    return s


def _region_encoder_kind(encoder):
    """``"fisher"`` or ``"vlad"`` for the FV / VLAD encoders, None for the bag of words."""
    from .fisher import FisherVectorEncoder
    from .vlad import VladEncoder

    return "fisher" if isinstance(encoder, FisherVectorEncoder) else \
        "vlad" if isinstance(encoder, VladEncoder) else None


def _encode_shard_job_region(cache_dir, rows, phow_params, kind, enc_params, enc_arrays, store_dir, s):
    """One shard of Fisher vectors or VLADs, in a worker (the encoder rebuilt from its arrays)."""
    from .fisher import FisherVectorEncoder
    from ..features.phow import PHOW
    from ..data.preprocess import ImageCache
    from .vlad import VladEncoder

    cache = ImageCache.open(cache_dir)
    store = FeatureStore.open(store_dir)
    if store.shard_path(s).exists():
        return s
    cls = FisherVectorEncoder if kind == "fisher" else VladEncoder
    enc = cls.from_arrays({**enc_params, "n_threads": 1}, enc_arrays)
    store.write_shard(s, encode_images(cache.take(rows), PHOW(**phow_params), enc))
    return s


def _encode_to_store_region(cache, cache_rows, store_dir, phow, encoder, kind, *, n_jobs, backend, shard_size,
                            progress, names) -> FeatureStore:
    """:func:`encode_to_store` for the FV / VLAD encoders (same store, same resuming)."""
    from tqdm.auto import tqdm

    from ..io import sha256_strings
    from ..parallel import imap

    cache_rows = [int(r) for r in cache_rows]
    names = names if names is not None else [cache.names[r] for r in cache_rows]
    arrays = encoder.to_arrays()
    enc_params = {k: v for k, v in encoder.get_params().items() if k not in ("gmm", "pca", "vocabulary")}
    params = {"phow": phow.get_params(), "encoder": kind, "encoder_params": enc_params,
              "cache": str(Path(cache.directory).resolve().name),
              "vocabulary_sha256": sha256_strings([f"{k}:{sha256_array(np.asarray(arrays[k]))}"
                                                   for k in sorted(arrays)])}
    params = json.loads(json.dumps(params, default=str))
    store = FeatureStore.create(store_dir, names, encoder.n_features_out_, params, shard_size)
    todo = store.missing_shards()
    print(f"encode ({kind}): {len(todo)} of {store.n_shards} shard(s) to do in {store.directory} "
          f"({store.n_shards - len(todo)} kept)", file=sys.stderr, flush=True)
    tasks = [(str(Path(cache.directory).resolve()), [cache_rows[i] for i in store.shard_rows(s)],
              phow.get_params(), kind, enc_params, arrays, str(Path(store.directory).resolve()), s) for s in todo]
    for _ in tqdm(imap(_encode_shard_job_region, tasks, n_jobs=n_jobs, backend=backend), total=len(todo),
                  disable=not progress, desc=f"encode ({kind})", unit="shard"):
        pass
    return store


def encode_to_store(cache, cache_rows, store_dir, phow, encoder, *, n_jobs=-1, backend=None,
                    shard_size=FEATURE_SHARD_SIZE, progress=True, names=None) -> FeatureStore:
    """Encode images of an :class:`~phow_baseline.data.preprocess.ImageCache` into a :class:`FeatureStore`.

    Shards run in parallel through :func:`phow_baseline.parallel.imap`
    (``backend``: ``"loky"``, ``"threading"``, ... or ``"dask"`` on the
    cluster of the active client); complete shards are skipped, so an
    interrupted run resumes.  Images that could not be read when the cache
    was built are encoded as zero vectors and flagged in ``cache.ok``.
    """
    from tqdm.auto import tqdm

    from ..parallel import imap

    kind = _region_encoder_kind(encoder)
    if kind is not None:
        return _encode_to_store_region(cache, cache_rows, store_dir, phow, encoder, kind, n_jobs=n_jobs,
                                       backend=backend, shard_size=shard_size, progress=progress, names=names)
    cache_rows = [int(r) for r in cache_rows]
    names = names if names is not None else [cache.names[r] for r in cache_rows]
    centers = encoder.vocabulary_.cluster_centers_
    params = {"phow": phow.get_params(), "grids": list(encoder.grids), "weighting": encoder.weighting,
              "image_size": encoder.image_size, "cache": str(Path(cache.directory).resolve().name),
              "vocabulary_sha256": sha256_array(centers)}
    params = json.loads(json.dumps(params, default=str))
    store = FeatureStore.create(store_dir, names, encoder.n_features_out_, params, shard_size)
    todo = store.missing_shards()
    print(f"encode: {len(todo)} of {store.n_shards} shard(s) to do in {store.directory} "
          f"({store.n_shards - len(todo)} kept)", file=sys.stderr, flush=True)
    if todo:
        enc_params = {"grids": tuple(encoder.grids), "weighting": encoder.weighting,
                      "image_size": encoder.image_size}
        # absolute folders: on a cluster the tasks may run with another working folder
        tasks = [(str(Path(cache.directory).resolve()), [cache_rows[i] for i in store.shard_rows(s)],
                  phow.get_params(), centers, enc_params, str(Path(store.directory).resolve()), s) for s in todo]
        for _ in tqdm(imap(_encode_shard_job, tasks, n_jobs=n_jobs, backend=backend), total=len(todo),
                      disable=not progress, desc="encode", unit="shard"):
            pass
    return store
