"""The on-disk image cache: every image decoded and preprocessed once, read memory-mapped.

The :class:`ImageCache` holds preprocessed ``uint8`` images, ``(N, S, S)``,
in shards of ``.npy`` files that both the PHOW arm and the CNN arm read from;
it is built in parallel, resumes an interrupted build, and lists (never
drops silently) the files it could not read.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .imread import ImageReadError
from .preprocess import DEFAULT_EQUALIZATION, DEFAULT_SIZE, EQUALIZATIONS, preprocess

CACHE_FORMAT_VERSION = 1
#: Images per cache shard; each shard is one ``.npy`` written atomically.
CACHE_SHARD_SIZE = 256


@dataclass
class CacheFailure:
    """A file the cache could not read: its row ``name``, its ``path`` and the ``reason``.

    Parameters
    ----------
    name : str
        The row's name (an image name such as ``00000001_000.png``).
    path : str
        The absolute path of the file that failed.
    reason : str
        Why (an :class:`~phow_baseline.data.imread.ImageReadError`'s reason, or
        a preprocessing error).
    """

    name: str
    path: str
    reason: str


def _shard_file(directory: Path, s: int, what: str = "") -> Path:
    return directory / f"shard_{s:05d}{what}"


def _build_shard(directory: str, s: int, paths: Sequence[str], size: int, equalization: str):
    """Decode one shard's images and write its files; a task of :meth:`ImageCache.build`.

    Writes ``shard_S.failures.json`` (row in shard -> reason), ``shard_S.ok.npy``
    and, last, ``shard_S.npy``: a shard counts as done when all three are
    there.  Returns ``s``.  ``directory`` and ``paths`` are absolute (this may
    run on a cluster worker with another working folder).
    """
    from ..io import atomic_save_npy, atomic_write_json

    directory = Path(directory)
    out = np.zeros((len(paths), size, size), np.uint8)
    ok = np.zeros(len(paths), bool)
    failures = {}
    for i, p in enumerate(paths):
        try:
            out[i] = preprocess(p, size=size, equalization=equalization)
            ok[i] = True
        except ImageReadError as exc:
            failures[str(i)] = exc.reason
        except (cv2.error, MemoryError) as exc:  # after decoding (equalize, resize): still this file's failure
            failures[str(i)] = f"preprocessing failed ({type(exc).__name__}: {str(exc).strip()[-200:]})"
    atomic_write_json(_shard_file(directory, s, ".failures.json"), failures)
    atomic_save_npy(_shard_file(directory, s, ".ok.npy"), ok)
    atomic_save_npy(_shard_file(directory, s, ".npy"), out)
    return s


class ImageCache:
    """A store of preprocessed ``uint8`` images, ``(N, S, S)``, on disk.

    Built in shards of :data:`CACHE_SHARD_SIZE` images, each written to a
    temporary name and renamed when complete, so that an interrupted build
    resumes with the unfinished shards only.  ``index.json`` records the
    parameters, the image names in order and the failures (unreadable files,
    skipped and listed, never silently dropped).

    Use :meth:`build` to create or resume, :meth:`open` to read.  Rows are
    read with ``cache[i]`` (a memory-mapped ``(S, S)`` uint8 view, negative
    ``i`` allowed) and ``len(cache)`` is the number of rows, failures
    included: a failed row holds zeros and ``ok`` False.

    Parameters
    ----------
    directory : str or Path
        The cache folder.
    names : sequence of str
        Row names in row order, length N.
    size : int
        Side ``S`` of the square images, in pixels.
    equalization : {"global", "clahe", "none"}
        The equalization the images went through.
    shard_size : int
        Images per shard file.
    failures : sequence of dict
        One ``{"name", "path", "reason"}`` per row that could not be read.
    ok : array_like of bool, shape (N,)
        Whether each row was read.

    Attributes
    ----------
    directory : Path
        As given.
    names : list of str
        Row names, length N.
    size : int
        Image side ``S``, in pixels.
    equalization : str
        As given.
    shard_size : int
        Images per shard.
    failures : list of CacheFailure
        The rows that could not be read, in row order.
    ok : ndarray of bool, shape (N,)
        Whether each row holds a read image.
    """

    def __init__(self, directory, names, size, equalization, shard_size, failures, ok):
        self.directory = Path(directory)
        self.names = list(names)
        self.size = int(size)
        self.equalization = equalization
        self.shard_size = int(shard_size)
        self.failures = [CacheFailure(**f) for f in failures]
        self.ok = np.asarray(ok, bool)
        self._shards = {}

    # -- construction -----------------------------------------------------
    @classmethod
    def build(
        cls,
        directory,
        paths: Sequence,
        names: Sequence[str] | None = None,
        *,
        size: int = DEFAULT_SIZE,
        equalization: str = DEFAULT_EQUALIZATION,
        n_jobs: int = -1,
        shard_size: int = CACHE_SHARD_SIZE,
        progress: bool = True,
        backend: str | None = None,
    ) -> ImageCache:
        """Decode ``paths`` once into the cache at ``directory`` (resuming).

        Parameters
        ----------
        directory : path
            Cache folder; created if missing.  An existing cache built with
            other parameters or other images is an error (use a new folder).
        paths : sequence of path
            Image files, in the order of the cache rows.
        names : sequence of str, optional
            Row names (default: the file names).
        size : int, default=256
            Side of the square cached images, in pixels.
        equalization : {"global", "clahe", "none"}, default="global"
            Equalization before resizing (see
            :func:`~phow_baseline.data.preprocess.preprocess`).
        n_jobs : int
            Workers of joblib (-1: all cores).
        shard_size : int, default=256
            Images per shard (:data:`CACHE_SHARD_SIZE`): the unit written
            atomically and redone by a resumed build.
        progress : bool, default=True
            Show progress over shards (:func:`phow_baseline.progress.progress_bar`).
        backend : str, optional
            A backend of :func:`phow_baseline.parallel.imap` (``"dask"``:
            the shards are decoded on the cluster of the active client).

        Returns
        -------
        ImageCache
            The complete cache, opened (:meth:`open`).

        Raises
        ------
        ValueError
            An unknown ``equalization``, ``names`` and ``paths`` of different
            lengths, or a folder that holds a cache with other parameters or
            images.

        Notes
        -----
        Unreadable files (every :class:`ImageReadError`: corrupt, truncated,
        absurd header, not an image) are skipped and listed in ``failures``
        with their reason; they never stop the build.
        """
        from ..io import atomic_write_json, claim_folder, read_json
        from ..parallel import imap
        from ..progress import progress_bar

        if equalization not in EQUALIZATIONS:
            raise ValueError(f"unknown equalization {equalization!r}; choose one of {EQUALIZATIONS}")
        directory = Path(directory).resolve()
        directory.mkdir(parents=True, exist_ok=True)
        paths = [os.path.abspath(p) for p in paths]  # tasks may run in another working folder
        names = [Path(p).name for p in paths] if names is None else list(names)
        if len(names) != len(paths):
            raise ValueError("names and paths differ in length")
        params = {
            "format": CACHE_FORMAT_VERSION,
            "size": int(size),
            "equalization": equalization,
            "shard_size": int(shard_size),
            "names": names,
        }
        index_path = directory / "index.json"
        params_path = directory / "params.json"
        claim_folder(params_path, params, what="an image cache")
        n_shards = (len(paths) + shard_size - 1) // shard_size
        todo = [
            s
            for s in range(n_shards)
            if not all(_shard_file(directory, s, w).exists() for w in (".npy", ".ok.npy", ".failures.json"))
        ]
        tasks = [
            (str(directory), s, paths[s * shard_size : (s + 1) * shard_size], int(size), equalization) for s in todo
        ]
        for _ in progress_bar(
            imap(_build_shard, tasks, n_jobs=n_jobs, backend=backend),
            total=len(todo),
            disable=not progress,
            desc="image cache",
            unit="shard",
        ):
            pass
        ok = np.zeros(len(paths), bool)
        failures = []
        for s in range(n_shards):
            lo = s * shard_size
            shard_ok = np.load(_shard_file(directory, s, ".ok.npy"), allow_pickle=False)
            ok[lo : lo + len(shard_ok)] = shard_ok
            reasons = read_json(_shard_file(directory, s, ".failures.json"), what="image cache failures")
            for i in np.flatnonzero(~shard_ok):
                failures.append(
                    {
                        "name": names[lo + i],
                        "path": paths[lo + i],
                        "reason": reasons.get(str(i), "unreadable when the cache was built"),
                    }
                )
        atomic_write_json(index_path, {**params, "ok": ok.astype(int).tolist(), "failures": failures}, indent=None)
        return cls.open(directory)

    @classmethod
    def open(cls, directory) -> ImageCache:
        """Open a complete cache; an incomplete one is an error naming what is missing.

        Parameters
        ----------
        directory : str or Path
            A folder :meth:`build` completed (it holds ``index.json``).

        Returns
        -------
        ImageCache
            The cache; shards are memory-mapped on first access.

        Raises
        ------
        FileNotFoundError
            No ``index.json`` (the build never finished).
        ValueError
            An unsupported cache format.
        DataFileError
            ``index.json`` is not readable JSON.
        """
        directory = Path(directory)
        from ..io import read_json

        index_path = directory / "index.json"
        if not index_path.exists():
            raise FileNotFoundError(f"{index_path}: no complete image cache here (build it first)")
        idx = read_json(index_path, what="image cache index")
        if idx.get("format") != CACHE_FORMAT_VERSION:
            raise ValueError(f"{index_path}: unsupported cache format {idx.get('format')}")
        return cls(
            directory, idx["names"], idx["size"], idx["equalization"], idx["shard_size"], idx["failures"], idx["ok"]
        )

    # -- access -----------------------------------------------------------
    def __len__(self) -> int:
        return len(self.names)

    def _shard(self, s: int) -> np.ndarray:
        arr = self._shards.get(s)
        if arr is None:
            arr = np.load(self.directory / f"shard_{s:05d}.npy", mmap_mode="r", allow_pickle=False)
            self._shards[s] = arr
        return arr

    def __getitem__(self, i: int) -> np.ndarray:
        i = int(i)
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        return self._shard(i // self.shard_size)[i % self.shard_size]

    def get(self, name: str) -> np.ndarray:
        """The image of row ``name`` (a view of the memory-mapped shard).

        Parameters
        ----------
        name : str
            A row name.

        Returns
        -------
        ndarray of uint8, shape (S, S)
            Read-only; zeros for a row that failed.

        Raises
        ------
        KeyError
            ``name`` is not in the cache.
        """
        return self[self.position(name)]

    def position(self, name: str) -> int:
        """The row of ``name`` (a KeyError naming the cache when it is not there).

        Parameters
        ----------
        name : str
            A row name.

        Returns
        -------
        int
            Its 0-based row.
        """
        if not hasattr(self, "_pos"):
            self._pos = {n: i for i, n in enumerate(self.names)}
        try:
            return self._pos[name]
        except KeyError:
            raise KeyError(f"{name} is not in the image cache at {self.directory}") from None

    def take(self, indices: Iterable[int]) -> np.ndarray:
        """Copy the images at ``indices`` into one ``(n, S, S)`` array.

        Parameters
        ----------
        indices : iterable of int
            Rows, any order, repeats allowed (negative counts from the end).

        Returns
        -------
        ndarray of uint8, shape (n, S, S)
            A copy in memory, in the order of ``indices``.
        """
        indices = list(indices)
        out = np.empty((len(indices), self.size, self.size), np.uint8)
        for j, i in enumerate(indices):
            out[j] = self[i]
        return out

    @property
    def valid_names(self) -> list[str]:
        """The names of the rows that were read (the failures left out), in row order."""
        return [n for n, k in zip(self.names, self.ok) if k]
