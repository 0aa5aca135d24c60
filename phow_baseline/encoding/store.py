"""Encoded images (pyramid histograms, Fisher vectors, VLADs) in shards on disk, and the parallel driver
that fills them.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from ..io import atomic_save_npy, claim_folder, read_json

logger = logging.getLogger(__name__)

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
    def create(cls, directory, names, dim, params: dict, shard_size=FEATURE_SHARD_SIZE) -> FeatureStore:
        """A new store (or the same one again, to resume): ``index.json`` is written, or checked to hold ``params``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        index = {
            "format": FEATURE_FORMAT_VERSION,
            "dim": int(dim),
            "shard_size": int(shard_size),
            "params": params,
            "names": list(names),
        }
        claim_folder(directory / "index.json", index, what="a feature store")
        return cls(directory, names, dim, shard_size, params)

    @classmethod
    def open(cls, directory) -> FeatureStore:
        """The store in ``directory`` (its ``index.json`` must exist)."""
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
        """Number of shards, the last one possibly partial."""
        return (len(self.names) + self.shard_size - 1) // self.shard_size

    def shard_rows(self, s: int) -> range:
        """The store rows of shard ``s``."""
        return range(s * self.shard_size, min(len(self.names), (s + 1) * self.shard_size))

    def shard_path(self, s: int) -> Path:
        """``feat_SSSSS.npy`` of shard ``s``."""
        return self.directory / f"feat_{s:05d}.npy"

    def missing_shards(self) -> list[int]:
        """Shards not written yet (what a rerun does)."""
        return [s for s in range(self.n_shards) if not self.shard_path(s).exists()]

    def write_shard(self, s: int, features: np.ndarray) -> None:
        """Write shard ``s`` atomically: ``features`` (rows of the shard, dim), float32."""
        features = np.asarray(features, np.float32)
        if features.shape != (len(self.shard_rows(s)), self.dim):
            raise ValueError(f"shard {s}: expected shape {(len(self.shard_rows(s)), self.dim)}, got {features.shape}")
        atomic_save_npy(self.shard_path(s), features)

    def read_shard(self, s: int, mmap=True) -> np.ndarray:
        """Shard ``s``, ``(rows, dim)`` float32 (memory-mapped unless ``mmap`` is False)."""
        p = self.shard_path(s)
        if not p.exists():
            raise FileNotFoundError(f"{p}: shard missing (the encoding did not finish; rerun it)")
        arr = np.load(p, mmap_mode="r" if mmap else None, allow_pickle=False)
        if arr.shape != (len(self.shard_rows(s)), self.dim):
            raise ValueError(f"{p}: shape {arr.shape}, expected {(len(self.shard_rows(s)), self.dim)}")
        return arr

    def load(self, rows=None) -> np.ndarray:
        """All features (or the given rows) in memory."""
        X = (
            np.concatenate([np.asarray(self.read_shard(s)) for s in range(self.n_shards)])
            if self.n_shards
            else np.zeros((0, self.dim), np.float32)
        )
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
    """PHOW + ``encoder`` vectors of a stack of preprocessed images, ``(n, encoder.n_features_out_)`` float32."""
    out = np.empty((len(images), encoder.n_features_out_), np.float32)
    for i, img in enumerate(images):
        frames, desc = phow.transform([img])[0]
        out[i] = encoder.encode_one(frames, desc)
    return out


def _encode_shard_job(cache_dir, rows, phow_params, encoding, enc_params, enc_arrays, store_dir, s):
    """One shard, in a worker: read the image cache, PHOW, encode (the encoder rebuilt from its state by its
    :class:`~phow_baseline.encoding.registry.Encoding`, sent along: a plug-in's too), write atomically.
    """
    from ..data import ImageCache
    from ..features.phow import PHOW

    cache = ImageCache.open(cache_dir)
    store = FeatureStore.open(store_dir)
    if store.shard_path(s).exists():
        return s
    enc = encoding.encoder_from_state(enc_params, enc_arrays)
    store.write_shard(s, encode_images(cache.take(rows), PHOW(**phow_params), enc))
    return s


def encode_to_store(
    cache,
    cache_rows,
    store_dir,
    phow,
    encoder,
    *,
    n_jobs=-1,
    backend=None,
    shard_size=FEATURE_SHARD_SIZE,
    progress=True,
    names=None,
    encoding=None,
) -> FeatureStore:
    """Encode images of an :class:`~phow_baseline.data.ImageCache` into a :class:`FeatureStore`.

    Shards run in parallel through :func:`phow_baseline.parallel.imap`
    (``backend``: ``"loky"``, ``"threading"``, ... or ``"dask"`` on the
    cluster of the active client); each task rebuilds the encoder from its
    state (:meth:`~phow_baseline.encoding.registry.Encoding.encoder_state`:
    plain values and arrays).  Complete shards are skipped, so an
    interrupted run resumes.  Images that could not be read when the cache
    was built are encoded as zero vectors and flagged in ``cache.ok``.

    Parameters
    ----------
    cache : ImageCache
    cache_rows : sequence of int
        The cache rows to encode, in store order.
    store_dir : path
    phow : PHOW
    encoder
        A fitted per-image encoder of a registered encoding (``Encoding.make_encoder``).
    n_jobs, backend : parallel workers and backend
    shard_size : int
        Images per shard.
    progress : bool
        A progress bar on stderr.
    names : sequence of str, optional
        Image names of the rows (default: the cache's).
    encoding : Encoding, optional
        The encoder's encoding (default: found in the registry by the encoder's type).

    Returns
    -------
    FeatureStore of ``(len(cache_rows), encoder.n_features_out_)`` float32 vectors.
    """
    from ..parallel import imap
    from ..progress import progress_bar
    from .registry import encoding_of_encoder

    encoding = encoding if encoding is not None else encoding_of_encoder(encoder)
    cache_rows = [int(r) for r in cache_rows]
    names = names if names is not None else [cache.names[r] for r in cache_rows]
    enc_params, enc_arrays = encoding.encoder_state(encoder)
    # the store's parameters are those of 0.1 (bag of words: grids, weighting, image size; FV / VLAD:
    # encoder name and parameters), so that its stores resume
    params = {
        "phow": phow.get_params(),
        **encoding.store_params(encoder),
        "cache": str(Path(cache.directory).resolve().name),
    }
    params = json.loads(json.dumps(params, default=str))
    store = FeatureStore.create(store_dir, names, encoder.n_features_out_, params, shard_size)
    todo = store.missing_shards()
    what = f"encode ({encoding.name})"
    logger.info(
        "%s: %d of %d shard(s) to do in %s (%d kept)",
        what,
        len(todo),
        store.n_shards,
        store.directory,
        store.n_shards - len(todo),
    )
    # absolute folders: on a cluster the tasks may run with another working folder
    tasks = [
        (
            str(Path(cache.directory).resolve()),
            [cache_rows[i] for i in store.shard_rows(s)],
            phow.get_params(),
            encoding,
            enc_params,
            enc_arrays,
            str(Path(store.directory).resolve()),
            s,
        )
        for s in todo
    ]
    for _ in progress_bar(
        imap(_encode_shard_job, tasks, n_jobs=n_jobs, backend=backend),
        total=len(todo),
        disable=not progress,
        desc=what,
        unit="shard",
    ):
        pass
    return store
