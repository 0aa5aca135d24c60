"""Reading and normalizing chest X-rays, and the on-disk image cache.

Every image the library touches goes through :func:`read_xray` (any PNG ->
8-bit grey) and :func:`preprocess` (equalize -> resize).  The
:class:`ImageCache` decodes each image once into a memory-mapped
``uint8`` array of shape ``(N, S, S)`` that both the PHOW arm and the CNN
arm read from.

One concept at this length: getting images in (robust reading, equalization,
resizing, the image cache).
"""

from __future__ import annotations

import contextlib
import os
import stat
import threading
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import cv2
import numpy as np

#: Side of the square image the pipeline works on, in pixels.  The Uniandes
#: study (Gomez, Rueda and Valderrama 2019) resized ChestX-ray14 to 256x256.
DEFAULT_SIZE = 256

#: Histogram equalization applied before feature extraction.  ``"global"`` is
#: the plain histogram equalization of the Uniandes study; ``"clahe"`` is
#: contrast-limited adaptive equalization; ``"none"`` leaves the image as is.
DEFAULT_EQUALIZATION = "global"
EQUALIZATIONS = ("global", "clahe", "none")

#: CLAHE parameters (OpenCV's defaults for the clip limit, an 8x8 tile grid).
CLAHE_CLIP_LIMIT = 2.0
CLAHE_TILE_GRID = (8, 8)

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

#: Largest image side accepted, in pixels.  The dimensions are read from the
#: file's header (PNG ``IHDR``, JPEG ``SOFn``, TIFF, BMP) before anything is
#: decoded, so a file that claims to be huge is refused without the decoder
#: allocating memory for it.  Clinical detectors are below 4,300 px a side
#: (ChestX-ray14: 1024 after NIH's resampling); 16384 leaves ample room.
MAX_IMAGE_SIDE = 16384
#: Largest number of pixels accepted (64 Mpx, e.g. 8192 x 8192: 512 MiB
#: decoded as 16-bit RGBA, the worst case).
MAX_IMAGE_PIXELS = 1 << 26
#: Largest file accepted, in bytes (the file is read into memory whole).
MAX_FILE_BYTES = 1 << 29


class ImageReadError(ValueError):
    """An image file could not be decoded; the message names the file and the cause."""

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


def _diagnose(data: np.ndarray) -> str:
    """Say why OpenCV could not decode the file's bytes ``data``."""
    head = data[:8].tobytes()
    if head == _PNG_MAGIC:
        return f"corrupt or truncated PNG ({data.size} bytes)"
    if head[:2] == b"\xff\xd8":
        return f"corrupt or truncated JPEG ({data.size} bytes)"
    return f"not a readable image (unknown format, {data.size} bytes, starts with {head!r})"


def _jpeg_size(b: bytes):
    """``(width, height)`` from a JPEG's first ``SOFn`` segment, or ``None`` if none is found."""
    i, n = 2, len(b)
    while i + 4 <= n:
        if b[i] != 0xFF:
            return None  # not at a marker: corrupt; the decoder will say so
        marker = b[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:  # stand-alone markers
            i += 2
            continue
        seg = int.from_bytes(b[i + 2:i + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if i + 9 > n:
                return None
            return int.from_bytes(b[i + 7:i + 9], "big"), int.from_bytes(b[i + 5:i + 7], "big")
        if marker in (0xD9, 0xDA) or seg < 2:  # end of image / start of scan before any frame
            return None
        i += 2 + seg
    return None


def _tiff_size(b: bytes):
    """``(width, height)`` from a TIFF's first IFD (tags 256 and 257), or ``None``."""
    order = "little" if b[:2] == b"II" else "big"
    if len(b) < 8:
        return None
    off = int.from_bytes(b[4:8], order)
    if off + 2 > len(b):
        return None
    count = int.from_bytes(b[off:off + 2], order)
    dims = {}
    for k in range(min(count, 4096)):
        e = off + 2 + 12 * k
        if e + 12 > len(b):
            break
        tag, typ = int.from_bytes(b[e:e + 2], order), int.from_bytes(b[e + 2:e + 4], order)
        if tag in (256, 257):
            dims[tag] = int.from_bytes(b[e + 8:e + 10] if typ == 3 else b[e + 8:e + 12], order)
    return (dims[256], dims[257]) if len(dims) == 2 else None


def header_size(data) -> tuple[str, int, int] | None:
    """Read the image format and dimensions from a file's header, decoding nothing.

    Parameters
    ----------
    data : bytes or ndarray of uint8
        The file's bytes (only the header is looked at; for JPEG, the
        segments up to the first frame header).

    Returns
    -------
    (format, width, height) or None
        ``None`` when the format is not one of PNG, JPEG, TIFF and BMP, or
        when a JPEG/TIFF header holds no dimensions.

    Raises
    ------
    ValueError
        For a PNG whose header is missing, truncated or fails its CRC: its
        dimensions cannot be trusted.
    """
    b = bytes(data[:1 << 20])  # headers (JPEG: the segments before the frame) lie well within 1 MiB
    if b[:8] == _PNG_MAGIC:
        if len(b) < 33 or b[12:16] != b"IHDR" or int.from_bytes(b[8:12], "big") != 13:
            raise ValueError("corrupt PNG (no complete IHDR header)")
        if zlib.crc32(b[12:29]) & 0xFFFFFFFF != int.from_bytes(b[29:33], "big"):
            raise ValueError("corrupt PNG header (IHDR CRC mismatch)")
        return "PNG", int.from_bytes(b[16:20], "big"), int.from_bytes(b[20:24], "big")
    if b[:3] == b"\xff\xd8\xff":
        wh = _jpeg_size(b)
        return None if wh is None else ("JPEG", *wh)
    if b[:4] in (b"II*\x00", b"MM\x00*"):
        wh = _tiff_size(b)
        return None if wh is None else ("TIFF", *wh)
    if b[:2] == b"BM" and len(b) >= 26:
        return ("BMP", abs(int.from_bytes(b[18:22], "little", signed=True)),
                abs(int.from_bytes(b[22:26], "little", signed=True)))
    return None


def _check_header(path, data: np.ndarray) -> None:
    """Refuse, before decoding, a file whose header is corrupt or claims absurd dimensions."""
    try:
        hdr = header_size(data)
    except ValueError as exc:
        raise ImageReadError(path, str(exc)) from None
    if hdr is None:
        return
    fmt, w, h = hdr
    if w < 1 or h < 1:
        raise ImageReadError(path, f"{fmt} header gives an empty image ({w} x {h} pixels)")
    if w > MAX_IMAGE_SIDE or h > MAX_IMAGE_SIDE or w * h > MAX_IMAGE_PIXELS:
        raise ImageReadError(path, f"{fmt} header claims {w} x {h} pixels, above the limit of "
                                   f"{MAX_IMAGE_SIDE} px a side and {MAX_IMAGE_PIXELS} pixels "
                                   "(preprocess.MAX_IMAGE_SIDE / MAX_IMAGE_PIXELS)")


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


_log_lock = threading.Lock()
_log_users = [0, None]  # decoders running, OpenCV's log level before the first


@contextlib.contextmanager
def _quiet_opencv():
    """Silence OpenCV's own log lines while decoding (the failure is reported as an ImageReadError)."""
    logging = getattr(getattr(cv2, "utils", None), "logging", None)
    if logging is None:
        yield
        return
    with _log_lock:
        if _log_users[0] == 0:
            _log_users[1] = logging.getLogLevel()
            logging.setLogLevel(logging.LOG_LEVEL_SILENT)
        _log_users[0] += 1
    try:
        yield
    finally:
        with _log_lock:
            _log_users[0] -= 1
            if _log_users[0] == 0:
                logging.setLogLevel(_log_users[1])


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
        For every way one file can fail: missing, unreadable, empty, larger
        than :data:`MAX_FILE_BYTES`, a header that is corrupt or claims more
        than :data:`MAX_IMAGE_SIDE` pixels a side or :data:`MAX_IMAGE_PIXELS`
        pixels (checked before decoding), truncated or corrupt data, not an
        image, or a decoder error (``cv2.error``, ``MemoryError``).  The
        message names the file and the cause, so that a batch lists the file
        as a failure and goes on with the others.
    """
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise ImageReadError(path, "file not found") from None
    except OSError as exc:
        raise ImageReadError(path, f"cannot stat file ({exc.strerror or exc})") from None
    if not stat.S_ISREG(st.st_mode):
        raise ImageReadError(path, "not a regular file")
    if st.st_size > MAX_FILE_BYTES:
        raise ImageReadError(path, f"file of {st.st_size} bytes is above the limit of {MAX_FILE_BYTES} bytes "
                                   "(preprocess.MAX_FILE_BYTES)")
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except (OSError, MemoryError) as exc:
        raise ImageReadError(path, f"cannot read file ({getattr(exc, 'strerror', None) or exc!r})") from None
    if data.size == 0:
        raise ImageReadError(path, "empty file (0 bytes)")
    _check_header(path, data)
    try:
        with warnings.catch_warnings(), _quiet_opencv():
            warnings.simplefilter("ignore")
            image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:
        msg = (getattr(exc, "err", None) or str(exc)).strip().splitlines()[-1]
        raise ImageReadError(path, f"decoder error: {msg}") from None
    except MemoryError:
        raise ImageReadError(path, "out of memory while decoding") from None
    if image is None or image.size == 0:
        raise ImageReadError(path, _diagnose(data))
    try:
        return to_gray_uint8(image, source=path)
    except (cv2.error, MemoryError) as exc:
        raise ImageReadError(path, f"cannot convert to 8-bit grey ({type(exc).__name__}: {exc})") from None


def equalize(image: np.ndarray, method: str = DEFAULT_EQUALIZATION) -> np.ndarray:
    """Equalize the grey-level histogram of an 8-bit image.

    ``"global"`` maps each level through the normalized cumulative
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
    """Read (if a path), convert to 8-bit grey, equalize, then resize.

    Equalization comes first, on the full-resolution image, as in the
    Uniandes study; the area resize then averages equalized levels.
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
        backend : str, optional
            A backend of :func:`phow_baseline.parallel.imap` (``"dask"``:
            the shards are decoded on the cluster of the active client).

        Unreadable files (every :class:`ImageReadError`: corrupt, truncated,
        absurd header, not an image) are skipped and listed in ``failures``
        with their reason; they never stop the build.
        """
        from tqdm.auto import tqdm

        from ..io import atomic_write_json, claim_folder, read_json
        from ..parallel import imap

        if equalization not in EQUALIZATIONS:
            raise ValueError(f"unknown equalization {equalization!r}; choose one of {EQUALIZATIONS}")
        directory = Path(directory).resolve()
        directory.mkdir(parents=True, exist_ok=True)
        paths = [os.path.abspath(p) for p in paths]  # tasks may run in another working folder
        names = [Path(p).name for p in paths] if names is None else list(names)
        if len(names) != len(paths):
            raise ValueError("names and paths differ in length")
        params = {"format": CACHE_FORMAT_VERSION, "size": int(size), "equalization": equalization,
                  "shard_size": int(shard_size), "names": names}
        index_path = directory / "index.json"
        params_path = directory / "params.json"
        claim_folder(params_path, params, what="an image cache")
        n_shards = (len(paths) + shard_size - 1) // shard_size
        todo = [s for s in range(n_shards)
                if not all(_shard_file(directory, s, w).exists() for w in (".npy", ".ok.npy", ".failures.json"))]
        tasks = [(str(directory), s, paths[s * shard_size:(s + 1) * shard_size], int(size), equalization)
                 for s in todo]
        for _ in tqdm(imap(_build_shard, tasks, n_jobs=n_jobs, backend=backend), total=len(todo),
                      disable=not progress, desc="image cache", unit="shard"):
            pass
        ok = np.zeros(len(paths), bool)
        failures = []
        for s in range(n_shards):
            lo = s * shard_size
            shard_ok = np.load(_shard_file(directory, s, ".ok.npy"), allow_pickle=False)
            ok[lo:lo + len(shard_ok)] = shard_ok
            reasons = read_json(_shard_file(directory, s, ".failures.json"), what="image cache failures")
            for i in np.flatnonzero(~shard_ok):
                failures.append({"name": names[lo + i], "path": paths[lo + i],
                                 "reason": reasons.get(str(i), "unreadable when the cache was built")})
        atomic_write_json(index_path, {**params, "ok": ok.astype(int).tolist(), "failures": failures},
                          indent=None)
        return cls.open(directory)

    @classmethod
    def open(cls, directory) -> "ImageCache":
        """Open a complete cache; an incomplete one is an error naming what is missing."""
        directory = Path(directory)
        from ..io import read_json

        index_path = directory / "index.json"
        if not index_path.exists():
            raise FileNotFoundError(f"{index_path}: no complete image cache here (build it first)")
        idx = read_json(index_path, what="image cache index")
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
