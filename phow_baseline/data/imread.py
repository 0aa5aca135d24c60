"""Reading a chest X-ray file into 8-bit grey, refusing what is not a sane image before decoding it.

Every image the library touches is read by :func:`read_xray` (any PNG, 8- or
16-bit, grey, RGB or RGBA, or another format OpenCV reads -> ``uint8``
grey).  The file's header is checked first (:func:`header_size`): a corrupt
header or one that claims absurd dimensions is refused without the decoder
allocating memory for it.  Every way one file can fail is an
:class:`ImageReadError` naming the file and the cause, so that a batch lists
the file as a failure and goes on with the others.
"""

from __future__ import annotations

import contextlib
import stat
import threading
import warnings
import zlib
from pathlib import Path

import cv2
import numpy as np

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
    """An image file could not be decoded; the message names the file and the cause.

    Parameters
    ----------
    path : str or Path
        The file (or ``"<array>"`` for an array given directly).
    reason : str
        Why it could not be read (``"file not found"``, ``"corrupt or
        truncated PNG (1234 bytes)"``).

    Attributes
    ----------
    path : str
        As given.
    reason : str
        As given.
    """

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
        seg = int.from_bytes(b[i + 2 : i + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if i + 9 > n:
                return None
            return int.from_bytes(b[i + 7 : i + 9], "big"), int.from_bytes(b[i + 5 : i + 7], "big")
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
    count = int.from_bytes(b[off : off + 2], order)
    dims = {}
    for k in range(min(count, 4096)):
        e = off + 2 + 12 * k
        if e + 12 > len(b):
            break
        tag, typ = int.from_bytes(b[e : e + 2], order), int.from_bytes(b[e + 2 : e + 4], order)
        if tag in (256, 257):
            dims[tag] = int.from_bytes(b[e + 8 : e + 10] if typ == 3 else b[e + 8 : e + 12], order)
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
        ``"PNG"``, ``"JPEG"``, ``"TIFF"`` or ``"BMP"`` and the dimensions in
        pixels, as the header claims them; ``None`` when the format is not one of PNG, JPEG, TIFF and BMP, or
        when a JPEG/TIFF header holds no dimensions.

    Raises
    ------
    ValueError
        For a PNG whose header is missing, truncated or fails its CRC: its
        dimensions cannot be trusted.
    """
    b = bytes(data[: 1 << 20])  # headers (JPEG: the segments before the frame) lie well within 1 MiB
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
        return (
            "BMP",
            abs(int.from_bytes(b[18:22], "little", signed=True)),
            abs(int.from_bytes(b[22:26], "little", signed=True)),
        )
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
        raise ImageReadError(
            path,
            f"{fmt} header claims {w} x {h} pixels, above the limit of "
            f"{MAX_IMAGE_SIDE} px a side and {MAX_IMAGE_PIXELS} pixels "
            "(phow_baseline.data.imread.MAX_IMAGE_SIDE / MAX_IMAGE_PIXELS)",
        )


def to_gray_uint8(image: np.ndarray, source="<array>") -> np.ndarray:
    """Convert a decoded image to 8-bit greyscale.

    Parameters
    ----------
    image : ndarray
        ``(H, W)`` grey, ``(H, W, 3)`` BGR, ``(H, W, 4)`` BGRA or
        ``(H, W, 1)``, of dtype ``uint8`` or ``uint16``.  16-bit data is
        mapped to 8 bits by stretching its used range ``[min, max]``
        linearly to ``[0, 255]`` and rounding, so that 12-bit X-rays stored
        in 16-bit PNGs keep their contrast (a constant image gives zeros).
        Colour is converted with OpenCV's BGR -> grey weights; alpha is
        dropped.
    source : str
        Name used in error messages.

    Returns
    -------
    ndarray of uint8, shape (H, W)
        C-contiguous.

    Raises
    ------
    ImageReadError
        Another number of channels or dimensions, or another dtype (float
        images included), naming ``source``.
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
        The grey image at the file's resolution, in pixels (see
        :func:`to_gray_uint8` for 16-bit and colour files).

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
        raise ImageReadError(
            path,
            f"file of {st.st_size} bytes is above the limit of {MAX_FILE_BYTES} bytes "
            "(phow_baseline.data.imread.MAX_FILE_BYTES)",
        )
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
