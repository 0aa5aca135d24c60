"""Reading and normalising chest X-rays, and the on-disk image cache.

Every image the library touches goes through :func:`read_xray` (any PNG ->
8-bit grey) and :func:`preprocess` (equalise -> resize).  The
:class:`ImageCache` decodes each image once into a memory-mapped
``uint8`` array of shape ``(N, S, S)`` that both the PHOW arm and the CNN
arm read from.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import cv2
import numpy as np

#: Side of the square image the pipeline works on, in pixels.  The Uniandes
#: study (Gomez, Rueda and Valderrama 2019) resized ChestX-ray14 to 256x256.
DEFAULT_SIZE = 256

#: Histogram equalisation applied before feature extraction.  ``"global"`` is
#: the plain histogram equalisation of the Uniandes study; ``"clahe"`` is
#: contrast-limited adaptive equalisation; ``"none"`` leaves the image as is.
DEFAULT_EQUALIZATION = "global"
EQUALIZATIONS = ("global", "clahe", "none")

#: CLAHE parameters (OpenCV's defaults for the clip limit, an 8x8 tile grid).
CLAHE_CLIP_LIMIT = 2.0
CLAHE_TILE_GRID = (8, 8)

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class ImageReadError(ValueError):
    """An image file could not be decoded; the message names the file and the cause."""

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


def _diagnose(path: Path) -> str:
    """Say why OpenCV could not decode ``path``."""
    try:
        size = path.stat().st_size
    except OSError as exc:  # pragma: no cover - raced deletion
        return f"cannot stat file ({exc.strerror})"
    if size == 0:
        return "empty file (0 bytes)"
    with open(path, "rb") as fh:
        head = fh.read(8)
    if head == _PNG_MAGIC:
        return f"corrupt or truncated PNG ({size} bytes)"
    return f"not a readable image (unknown format, {size} bytes, starts with {head!r})"


def to_gray_uint8(image: np.ndarray, source="<array>") -> np.ndarray:
    """Convert a decoded image to 8-bit greyscale.

    Parameters
    ----------
    image : ndarray
        ``(H, W)`` grey, ``(H, W, 3)`` BGR or ``(H, W, 4)`` BGRA, of dtype
        ``uint8`` or ``uint16``.  16-bit data is mapped to 8 bits by
        ``v >> 8`` after stretching its used range ``[min, max]`` to the full
        16-bit scale, so that 12-bit X-rays stored in 16-bit PNGs keep
        their contrast.
    source : str
        Name used in error messages.

    Returns
    -------
    ndarray of uint8, shape (H, W)
    """
    image = np.asarray(image)
    if image.ndim == 3:
        if image.shape[2] == 4:
            # Composite on black is what a viewer would not do for X-rays;
            # the alpha channel of NIH's RGBA PNGs is opaque, so drop it.
            image = cv2.cvtColor(image, cv2.COLOR_BGRA2GRAY)
        elif image.shape[2] == 3:
            image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        elif image.shape[2] == 1:
            image = image[:, :, 0]
        else:
            raise ImageReadError(source, f"unsupported number of channels {image.shape[2]}")
    elif image.ndim != 2:
        raise ImageReadError(source, f"unsupported image shape {image.shape}")
    if image.dtype == np.uint8:
        return np.ascontiguousarray(image)
    if image.dtype == np.uint16:
        lo, hi = int(image.min()), int(image.max())
        if hi == lo:
            return np.zeros(image.shape, np.uint8)
        scaled = (image.astype(np.float32) - lo) * (255.0 / (hi - lo))
        return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
    if np.issubdtype(image.dtype, np.floating):
        raise ImageReadError(source, f"floating-point image ({image.dtype}); expected uint8 or uint16")
    raise ImageReadError(source, f"unsupported pixel type {image.dtype}")


def read_xray(path) -> np.ndarray:
    """Read a chest X-ray file into an 8-bit greyscale array.

    Parameters
    ----------
    path : str or Path
        PNG (8- or 16-bit; grey, RGB or RGBA) or any format OpenCV reads.

    Returns
    -------
    ndarray of uint8, shape (H, W)

    Raises
    ------
    ImageReadError
        If the file is missing, empty, truncated, corrupt or not an image;
        the message names the file and the cause.
    """
    path = Path(path)
    if not path.exists():
        raise ImageReadError(path, "file not found")
    if not path.is_file():
        raise ImageReadError(path, "not a regular file")
    data = np.fromfile(path, dtype=np.uint8)
    if data.size == 0:
        raise ImageReadError(path, "empty file (0 bytes)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if image is None or image.size == 0:
        raise ImageReadError(path, _diagnose(path))
    return to_gray_uint8(image, source=path)


def equalize(image: np.ndarray, method: str = DEFAULT_EQUALIZATION) -> np.ndarray:
    """Equalise the grey-level histogram of an 8-bit image.

    ``"global"`` maps each level through the normalised cumulative
    histogram (OpenCV's ``equalizeHist``): the output's histogram is as flat
    as the input's discrete levels allow.  ``"clahe"`` does the same per
    8x8 tile with the histogram clipped at ``CLAHE_CLIP_LIMIT`` times the
    mean bin count, interpolated between tiles.  ``"none"`` returns the input.
    """
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 2:
        raise ValueError(f"equalize expects a 2-D uint8 image, got {image.dtype} {image.shape}")
    if method == "global":
        return cv2.equalizeHist(image)
    if method == "clahe":
        clahe = cv2.createCLAHE(clipLimit=CLAHE_CLIP_LIMIT, tileGridSize=CLAHE_TILE_GRID)
        return clahe.apply(image)
    if method == "none":
        return image
    raise ValueError(f"unknown equalization {method!r}; choose one of {EQUALIZATIONS}")


def resize(image: np.ndarray, size: int = DEFAULT_SIZE) -> np.ndarray:
    """Resize to ``size x size`` pixels with area interpolation (``INTER_AREA``).

    Area interpolation averages the source pixels under each target pixel,
    the right filter for shrinking (no aliasing).  Enlarging uses bilinear
    interpolation.  An image already of that size is returned unchanged.
    """
    if size is None:
        return image
    size = int(size)
    if size < 1:
        raise ValueError(f"size must be positive, got {size}")
    h, w = image.shape[:2]
    if (h, w) == (size, size):
        return image
    interp = cv2.INTER_AREA if (h >= size and w >= size) else cv2.INTER_LINEAR
    return cv2.resize(image, (size, size), interpolation=interp)


def preprocess(image, size: int | None = DEFAULT_SIZE, equalization: str = DEFAULT_EQUALIZATION) -> np.ndarray:
    """Read (if a path), convert to 8-bit grey, equalise, then resize.

    Equalisation comes first, on the full-resolution image, as in the
    Uniandes study; the area resize then averages equalised levels.
    """
    if isinstance(image, (str, os.PathLike)):
        image = read_xray(image)
    else:
        image = to_gray_uint8(image)
    return resize(equalize(image, equalization), size)


# --------------------------------------------------------------------------
# The on-disk image cache
# --------------------------------------------------------------------------

CACHE_FORMAT_VERSION = 1
#: Images per cache shard; each shard is one ``.npy`` written atomically.
CACHE_SHARD_SIZE = 256


@dataclass
class CacheFailure:
    name: str
    path: str
    reason: str


def _atomic_save_npy(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    with open(tmp, "wb") as fh:
        np.save(fh, array, allow_pickle=False)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def atomic_write_text(path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename."""
    path = Path(path)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def _load_shard_images(paths: Sequence[str], size: int, equalization: str):
    out = np.zeros((len(paths), size, size), np.uint8)
    ok = np.zeros(len(paths), bool)
    failures = []
    for i, p in enumerate(paths):
        try:
            out[i] = preprocess(p, size=size, equalization=equalization)
            ok[i] = True
        except ImageReadError as exc:
            failures.append((i, exc.reason))
    return out, ok, failures


class ImageCache:
    """A store of preprocessed ``uint8`` images, ``(N, S, S)``, on disk.

    Built in shards of :data:`CACHE_SHARD_SIZE` images, each written to a
    temporary name and renamed when complete, so that an interrupted build
    resumes with the unfinished shards only.  ``index.json`` records the
    parameters, the image names in order and the failures (unreadable files,
    skipped and listed, never silently dropped).

    Use :meth:`build` to create or resume, :meth:`open` to read.
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
    def build(cls, directory, paths: Sequence, names: Sequence[str] | None = None, *,
              size: int = DEFAULT_SIZE, equalization: str = DEFAULT_EQUALIZATION,
              n_jobs: int = -1, shard_size: int = CACHE_SHARD_SIZE, progress: bool = True,
              backend: str | None = None) -> "ImageCache":
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
        size, equalization : see :func:`preprocess`.
        n_jobs : int
            joblib workers (-1: all cores).
        """
        from joblib import Parallel, delayed
        from tqdm.auto import tqdm

        if equalization not in EQUALIZATIONS:
            raise ValueError(f"unknown equalization {equalization!r}; choose one of {EQUALIZATIONS}")
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        paths = [str(p) for p in paths]
        names = [Path(p).name for p in paths] if names is None else list(names)
        if len(names) != len(paths):
            raise ValueError("names and paths differ in length")
        params = {"format": CACHE_FORMAT_VERSION, "size": int(size), "equalization": equalization,
                  "shard_size": int(shard_size), "names": names}
        index_path = directory / "index.json"
        params_path = directory / "params.json"
        if params_path.exists():
            old = json.loads(params_path.read_text())
            if old != params:
                raise ValueError(f"{params_path}: an image cache with other parameters or images "
                                 "is already there; use another folder or delete it")
        else:
            atomic_write_text(params_path, json.dumps(params))
        n_shards = (len(paths) + shard_size - 1) // shard_size
        todo = [s for s in range(n_shards) if not (directory / f"shard_{s:05d}.npy").exists()
                or not (directory / f"shard_{s:05d}.ok.npy").exists()]

        def work(s):
            lo, hi = s * shard_size, min(len(paths), (s + 1) * shard_size)
            imgs, ok, fails = _load_shard_images(paths[lo:hi], size, equalization)
            _atomic_save_npy(directory / f"shard_{s:05d}.ok.npy", ok)
            _atomic_save_npy(directory / f"shard_{s:05d}.npy", imgs)
            return s, [(lo + i, r) for i, r in fails]

        if todo:
            par = Parallel(n_jobs=n_jobs, return_as="generator_unordered", backend=backend)
            for _ in tqdm(par(delayed(work)(s) for s in todo), total=len(todo), disable=not progress,
                          desc="image cache", unit="shard"):
                pass
        ok = np.concatenate([np.load(directory / f"shard_{s:05d}.ok.npy", allow_pickle=False)
                             for s in range(n_shards)]) if n_shards else np.zeros(0, bool)
        failures = []
        for i in np.flatnonzero(~ok):
            try:
                read_xray(paths[i])
                reason = "unreadable when the cache was built"
            except ImageReadError as exc:
                reason = exc.reason
            failures.append({"name": names[i], "path": paths[i], "reason": reason})
        atomic_write_text(index_path, json.dumps({**params, "ok": ok.astype(int).tolist(),
                                                  "failures": failures}))
        return cls.open(directory)

    @classmethod
    def open(cls, directory) -> "ImageCache":
        """Open a complete cache; an incomplete one is an error naming what is missing."""
        directory = Path(directory)
        index_path = directory / "index.json"
        if not index_path.exists():
            raise FileNotFoundError(f"{index_path}: no complete image cache here (build it first)")
        idx = json.loads(index_path.read_text())
        if idx.get("format") != CACHE_FORMAT_VERSION:
            raise ValueError(f"{index_path}: unsupported cache format {idx.get('format')}")
        return cls(directory, idx["names"], idx["size"], idx["equalization"], idx["shard_size"],
                   idx["failures"], idx["ok"])

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
        return self[self.position(name)]

    def position(self, name: str) -> int:
        if not hasattr(self, "_pos"):
            self._pos = {n: i for i, n in enumerate(self.names)}
        try:
            return self._pos[name]
        except KeyError:
            raise KeyError(f"{name} is not in the image cache at {self.directory}") from None

    def take(self, indices: Iterable[int]) -> np.ndarray:
        """Copy the images at ``indices`` into one ``(n, S, S)`` array."""
        indices = list(indices)
        out = np.empty((len(indices), self.size, self.size), np.uint8)
        for j, i in enumerate(indices):
            out[j] = self[i]
        return out

    @property
    def valid_names(self) -> list[str]:
        return [n for n, k in zip(self.names, self.ok) if k]
