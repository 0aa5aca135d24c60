"""Encoded images (pyramid histograms, Fisher vectors, VLADs) in shards on disk, and the parallel driver
that fills them.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from ..io import atomic_save_npy, atomic_write_json, claim_folder, jsonable, read_json

logger = logging.getLogger(__name__)

FEATURE_FORMAT_VERSION = 1
#: Images per feature shard (256 x 12,000 float32 = 12 MB).
FEATURE_SHARD_SIZE = 256
#: Shard dtypes a store may hold; every shard of one store has its store's dtype, read back as float32.
#: float16 halves the disk (Fisher vectors of 204,800 dimensions: 400 KB per image instead of 800 KB);
#: it keeps about 3 significant digits (relative rounding 2**-11) and values up to 65,504.
STORE_DTYPES = ("float32", "float16")
#: The suffix of a store folder's name for each dtype (float32: none, so 0.1 stores keep their names).
STORE_DTYPE_SUFFIX = {"float32": "", "float16": "-f16"}


def _forget_runtime_params(index_path: Path, held: dict, index: dict) -> None:
    """Rewrite a 0.2 store's ``index.json`` that recorded runtime encoder settings, so that it resumes.

    Stores written by 0.2.0 recorded the encoder's ``verbose`` and thread count among the parameters
    the vectors depend on (they do not: :data:`~phow_baseline.encoding.registry.RUNTIME_PARAMS`);
    when that is the only difference from ``index``, the index is rewritten without them and its
    shards are kept.  Any other difference is left to :func:`~phow_baseline.io.claim_folder`'s refusal.

    Parameters
    ----------
    index_path : Path
        The store's ``index.json``.
    held : dict
        Its contents.
    index : dict
        The index this run would write.
    """
    from .registry import RUNTIME_PARAMS

    new = jsonable(index)
    params = held.get("params")
    if not isinstance(params, dict) or not isinstance(params.get("encoder_params"), dict):
        return
    if not any(k in params["encoder_params"] for k in RUNTIME_PARAMS):
        return
    cleaned = {
        **held,
        "params": {
            **params,
            "encoder_params": {k: v for k, v in params["encoder_params"].items() if k not in RUNTIME_PARAMS},
        },
    }
    if json.loads(json.dumps(cleaned)) == json.loads(json.dumps(new)):
        atomic_write_json(index_path, new, indent=None)
        logger.info(
            "%s: dropped runtime settings (%s) from a 0.2 feature-store index", index_path, ", ".join(RUNTIME_PARAMS)
        )


class FeatureStore:
    """Pyramid features of many images in shards on disk, ``(n, dim)``, stored float32 or float16.

    ``index.json`` holds the parameters (a fingerprint of the vocabulary and
    PHOW settings), the image names and the shard size.  Each shard
    ``feat_SSSSS.npy`` is written to a temporary name and renamed when
    complete, so a killed run leaves only whole shards, and a rerun redoes
    just the missing ones.  Shards are memory-mapped when read.  A float16
    store (``dtype="float16"``, recorded in ``index.json``) writes half-precision
    shards and reads them back as float32; a shard of another dtype than its
    store's is refused with an error naming it.

    Build one with :meth:`create` or :meth:`open`; the constructor only holds the values.

    Parameters
    ----------
    directory : str or Path
        The store's folder.
    names : sequence of str
        Image name of each row, in store order.
    dim : int
        Features per image.
    shard_size : int
        Images per shard (the last shard may hold fewer).
    params : dict
        JSON-ready record of what the features depend on (PHOW, encoder, image cache).
    dtype : {"float32", "float16"}, default="float32"
        How the shards are stored (:data:`STORE_DTYPES`); they are always read back as float32.

    Attributes
    ----------
    directory : Path
        The store's folder.
    names : list of str
        Image name of each row.
    dim : int
        Features per image.
    shard_size : int
        Images per shard.
    params : dict
        The record saved in ``index.json``.
    dtype : str
        The shards' dtype on disk.
    """

    def __init__(self, directory, names, dim, shard_size, params, dtype="float32"):
        if dtype not in STORE_DTYPES:
            raise ValueError(f"{directory}: feature store dtype must be one of {STORE_DTYPES}, got {dtype!r}")
        self.directory = Path(directory)
        self.names = list(names)
        self.dim = int(dim)
        self.shard_size = int(shard_size)
        self.params = params
        self.dtype = dtype

    @classmethod
    def create(
        cls, directory, names, dim, params: dict, shard_size=FEATURE_SHARD_SIZE, dtype="float32"
    ) -> FeatureStore:
        """A new store (or the same one again, to resume): ``index.json`` is written, or checked to hold ``params``.

        Parameters
        ----------
        directory : str or Path
            The store's folder (created if missing).
        names : sequence of str
            Image name of each row.
        dim : int
            Features per image.
        params : dict
            JSON-ready record of what the features depend on.
        shard_size : int
            Images per shard (default :data:`FEATURE_SHARD_SIZE`, 256).
        dtype : {"float32", "float16"}, default="float32"
            The shards' dtype on disk (:data:`STORE_DTYPES`).

        Returns
        -------
        FeatureStore
            The store, its shards those already complete.

        Raises
        ------
        ValueError
            If the folder holds another store (``index.json`` with other contents, another dtype
            included; see :func:`phow_baseline.io.claim_folder`), or ``dtype`` is not a store dtype.
        """
        if dtype not in STORE_DTYPES:
            raise ValueError(f"{directory}: feature store dtype must be one of {STORE_DTYPES}, got {dtype!r}")
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        index = {
            "format": FEATURE_FORMAT_VERSION,
            "dim": int(dim),
            "shard_size": int(shard_size),
            "params": params,
            "names": list(names),
        }
        if dtype != "float32":  # float32 stores keep 0.1's index, so that they resume
            index["dtype"] = dtype
        if (directory / "index.json").exists():
            held_index = read_json(directory / "index.json", what="feature-store index")
            held = held_index.get("dtype", "float32")
            if held != dtype:
                raise ValueError(
                    f"{directory}: a {held} feature store; its shards cannot be mixed with {dtype} ones "
                    "(use another folder or delete it)"
                )
            _forget_runtime_params(directory / "index.json", held_index, index)
        claim_folder(directory / "index.json", index, what="a feature store")
        return cls(directory, names, dim, shard_size, params, dtype)

    @classmethod
    def open(cls, directory) -> FeatureStore:
        """The store in ``directory`` (its ``index.json`` must exist).

        Parameters
        ----------
        directory : str or Path
            The store's folder.

        Returns
        -------
        FeatureStore
            The store as its ``index.json`` describes it.

        Raises
        ------
        FileNotFoundError
            If there is no ``index.json``.
        ValueError
            If its format version is not :data:`FEATURE_FORMAT_VERSION`.
        """
        p = Path(directory) / "index.json"
        if not p.exists():
            raise FileNotFoundError(f"{p}: no feature store here")
        idx = read_json(p, what="feature-store index")
        if idx.get("format") != FEATURE_FORMAT_VERSION:
            raise ValueError(f"{p}: unsupported feature store format {idx.get('format')}")
        dtype = idx.get("dtype", "float32")
        if dtype not in STORE_DTYPES:
            raise ValueError(f"{p}: unsupported feature store dtype {dtype!r} (known: {', '.join(STORE_DTYPES)})")
        return cls(directory, idx["names"], idx["dim"], idx["shard_size"], idx["params"], dtype)

    def __len__(self):
        return len(self.names)

    @property
    def n_shards(self) -> int:
        """Number of shards, the last one possibly partial."""
        return (len(self.names) + self.shard_size - 1) // self.shard_size

    def shard_rows(self, s: int) -> range:
        """The store rows of shard ``s``.

        Parameters
        ----------
        s : int
            Shard index, in ``[0, n_shards)``.

        Returns
        -------
        range
            Rows ``s * shard_size`` up to the next shard's first (or the end).
        """
        return range(s * self.shard_size, min(len(self.names), (s + 1) * self.shard_size))

    def shard_path(self, s: int) -> Path:
        """``feat_SSSSS.npy`` of shard ``s``.

        Parameters
        ----------
        s : int
            Shard index.

        Returns
        -------
        Path
            The shard's file in :attr:`directory` (which may not exist yet).
        """
        return self.directory / f"feat_{s:05d}.npy"

    def missing_shards(self) -> list[int]:
        """Shards not written yet (what a rerun does).

        Returns
        -------
        list of int
            Indices of the shards whose file does not exist, ascending.
        """
        return [s for s in range(self.n_shards) if not self.shard_path(s).exists()]

    def write_shard(self, s: int, features: np.ndarray) -> None:
        """Write shard ``s`` atomically (a temporary name, then renamed).

        Parameters
        ----------
        s : int
            Shard index.
        features : (len(shard_rows(s)), dim) array
            The shard's features (saved in the store's :attr:`dtype`).

        Raises
        ------
        ValueError
            If ``features`` has another shape, or holds a finite value that the store's dtype cannot
            hold (beyond float16's 65,504).
        """
        features = np.asarray(features, np.float32)
        if features.shape != (len(self.shard_rows(s)), self.dim):
            raise ValueError(f"shard {s}: expected shape {(len(self.shard_rows(s)), self.dim)}, got {features.shape}")
        with np.errstate(over="ignore"):  # an overflow is reported below, naming the shard
            stored = features.astype(self.dtype)
        if self.dtype != "float32":
            overflow = np.isinf(stored) & np.isfinite(features)
            if overflow.any():
                raise ValueError(
                    f"{self.shard_path(s)}: {int(overflow.sum())} value(s) beyond {self.dtype}'s range "
                    f"(largest magnitude {float(np.abs(features[overflow]).max()):.4g}); use a float32 store"
                )
        atomic_save_npy(self.shard_path(s), stored)

    def read_shard(self, s: int, mmap=True) -> np.ndarray:
        """Shard ``s`` read back (memory-mapped unless ``mmap`` is False).

        Parameters
        ----------
        s : int
            Shard index.
        mmap : bool
            Memory-map the file read-only (default True).

        Returns
        -------
        (len(shard_rows(s)), dim) float32
            The shard's features (a float16 store's converted to float32, in memory).

        Raises
        ------
        FileNotFoundError
            If the shard was not written.
        ValueError
            If the file's shape is not the shard's, or its dtype is not the store's (a store never mixes
            dtypes across its shards).
        """
        p = self.shard_path(s)
        if not p.exists():
            raise FileNotFoundError(f"{p}: shard missing (the encoding did not finish; rerun it)")
        arr = np.load(p, mmap_mode="r" if mmap else None, allow_pickle=False)
        if arr.shape != (len(self.shard_rows(s)), self.dim):
            raise ValueError(f"{p}: shape {arr.shape}, expected {(len(self.shard_rows(s)), self.dim)}")
        if arr.dtype != np.dtype(self.dtype):
            raise ValueError(
                f"{p}: a {arr.dtype} shard in a {self.dtype} feature store ({self.directory / 'index.json'}); "
                "a store does not mix dtypes across shards: delete the shard (or the store) and encode again"
            )
        return arr if self.dtype == "float32" else np.asarray(arr, np.float32)

    def load(self, rows=None) -> np.ndarray:
        """All features (or the given rows) in memory.

        Parameters
        ----------
        rows : sequence of int, optional
            Store rows to return (default all), in the order given.

        Returns
        -------
        (n_rows, dim) float32
            The features.
        """
        X = (
            np.concatenate([np.asarray(self.read_shard(s)) for s in range(self.n_shards)])
            if self.n_shards
            else np.zeros((0, self.dim), np.float32)
        )
        return X if rows is None else X[np.asarray(rows)]

    def batches(self, rows=None, seed=None, epoch=0, transform=None):
        """Yield ``(X_batch, row_positions)`` one shard at a time.

        With a ``seed`` the shards come in a per-epoch random order and rows
        are shuffled within a shard (SGD).

        Parameters
        ----------
        rows : sequence of int, optional
            The store rows to use (default all).
        seed : int, optional
            Seed of the shuffling (default: none, shards and rows in order).
        epoch : int
            Epoch number, mixed into the seed so that each epoch has its own order.
        transform : callable, optional
            Applied to each batch (e.g. the kernel map's ``transform``).

        Yields
        ------
        X_batch : (m, dim) float32, or ``transform``'s output
            Features of the selected rows of one shard.
        row_positions : (m,) int64
            Position of each batch row in ``rows`` (its index into the selection).
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
    """PHOW + ``encoder`` vectors of a stack of preprocessed images.

    Parameters
    ----------
    images : sequence of (H, W) uint8 arrays
        Preprocessed grey images (the image cache's).
    phow : PHOW
        The extractor.
    encoder : encoder
        A fitted per-image encoder (``encode_one``, ``n_features_out_``).

    Returns
    -------
    (n, encoder.n_features_out_) float32
        One vector per image.
    """
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
    dtype="float32",
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
        The preprocessed images.
    cache_rows : sequence of int
        The cache rows to encode, in store order.
    store_dir : str or Path
        The store's folder.
    phow : PHOW
        The extractor (its parameters travel to the workers).
    encoder : encoder
        A fitted per-image encoder of a registered encoding (``Encoding.make_encoder``).
    n_jobs : int
        Parallel workers (default -1: all cores).
    backend : str, optional
        The :func:`phow_baseline.parallel.imap` backend (default: its own).
    shard_size : int
        Images per shard.
    progress : bool
        A progress bar on stderr.
    names : sequence of str, optional
        Image names of the rows (default: the cache's).
    encoding : Encoding, optional
        The encoder's encoding (default: found in the registry by the encoder's type).
    dtype : {"float32", "float16"}, default="float32"
        The shards' dtype on disk (:data:`STORE_DTYPES`); read back as float32.

    Returns
    -------
    FeatureStore
        Of ``(len(cache_rows), encoder.n_features_out_)`` vectors, every shard complete.
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
    store = FeatureStore.create(store_dir, names, encoder.n_features_out_, params, shard_size, dtype)
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
