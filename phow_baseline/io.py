"""File helpers every stage uses: atomic writes, JSON reading with errors that
name the file, image listing, checksums, confined file names, a work-folder
lock, and the disk-space checks.

An atomic write goes to a unique temporary name in the destination's folder
(``.NAME.XXXXXXXX.tmp``), is flushed and fsynced, then renamed over the
destination, so a reader sees the old file or the new one, never half of one,
and two writers of one file never share a temporary name.  The temporary is
created as ``open()`` creates a file (mode ``0o666`` less the process umask,
and the folder's default ACL), so the result is as readable as any other file
of the user: 0644 under the usual umask 0022, 0664 under 0002 (a lab's shared
folder), never the 0600 of :func:`tempfile.mkstemp`.

A full disk (``ENOSPC``, a quota's ``EDQUOT``, or numpy's own short-write
errors, which carry no errno) while writing is raised as one
:class:`OutOfSpaceError` naming the file, the bytes it needed and the bytes
free; the temporary is removed and the previous file, if any, is kept, so a
rerun after freeing space resumes.  :func:`check_free_space` refuses a job
before it starts when an estimate of what it writes exceeds the free space.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import secrets
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

#: File suffixes taken as images when a folder is listed (case-insensitive).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")


class DataFileError(ValueError):
    """A file the library reads is missing, unreadable or not in the expected format.

    The message always starts with the file's path.
    """


# --------------------------------------------------------------------------
# A full disk
# --------------------------------------------------------------------------

#: errno values that mean "the file system (or the user's quota) is full".
OUT_OF_SPACE_ERRNOS = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))
# numpy's tofile/np.save report a full disk without an errno: "Not enough free space to write N bytes after
# offset M" (numpy >= 1.25, when it preallocates) or "N requested and M written" (a short fwrite)
_NUMPY_FALLOCATE = re.compile(r"Not enough free space to write (\d+) bytes after offset (\d+)")
_NUMPY_SHORT_WRITE = re.compile(r"(\d+) requested and (\d+) written")


def format_bytes(n: int | float) -> str:
    """``n`` bytes for a message: ``"512 bytes"``, ``"3.0 MiB"``, ``"7.3 GiB"`` (binary units).

    Parameters
    ----------
    n : int or float
        A size in bytes (may be negative).

    Returns
    -------
    str
        Whole bytes below 1024, else one decimal in KiB, MiB, GiB or TiB
        (powers of 1024; TiB is the largest unit used).
    """
    n = float(n)
    if abs(n) < 1024:
        return f"{int(n)} bytes"
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        n /= 1024
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}"
    raise AssertionError("unreachable")


class OutOfSpaceError(OSError):
    """A file could not be written because its file system is full.

    An :class:`OSError` with ``errno`` ``ENOSPC`` and ``filename`` the path
    that could not be written (or the folder a job was refused for); its
    message is one line, ``"PATH: no space left on device (3.0 MiB needed,
    2.1 MiB free)"``.

    Parameters
    ----------
    filename : path
        The file (or folder) that could not be written.
    needed : int, optional
        Bytes the write needed, when known.
    free : int, optional
        Bytes free on the file system (for an unprivileged user) when the
        write failed.
    what : str, optional
        What was refused, for a refusal before any write (``"the run"``).
    at_least : bool
        ``needed`` is only a lower bound (the bytes written when the disk
        filled up).
    detail : str, optional
        Appended after the numbers (e.g. what the estimate is made of).

    Attributes
    ----------
    needed, free : int or None
        As given, in bytes.
    """

    def __init__(
        self,
        filename,
        needed: int | None = None,
        free: int | None = None,
        what: str | None = None,
        at_least: bool = False,
        detail: str | None = None,
    ):
        numbers = []
        if needed is not None:
            approx = "at least " if at_least else "about " if what else ""  # a refusal gives an estimate
            numbers.append(f"{approx}{format_bytes(needed)} needed")
        if free is not None:
            numbers.append(f"{format_bytes(free)} free")
        text = "no space left on device" + (f" for {what}" if what else "")
        if numbers:
            text += f" ({', '.join(numbers)}{'; ' + detail if detail else ''})"
        elif detail:
            text += f" ({detail})"
        super().__init__(errno.ENOSPC, text, str(filename))
        self.needed = None if needed is None else int(needed)
        self.free = None if free is None else int(free)
        self._init_args = (str(filename), needed, free, what, at_least, detail)

    def __str__(self) -> str:
        return f"{self.filename}: {self.strerror}"

    def __reduce__(self):  # sent back intact from a joblib / dask worker
        return type(self), self._init_args


def is_out_of_space(exc: BaseException) -> bool:
    """Whether ``exc`` says that a file system (or a quota) is full.

    True for ``ENOSPC`` and ``EDQUOT``, and for the errno-less
    :class:`OSError` numpy raises when ``tofile``/``np.save`` runs out of
    space.

    Parameters
    ----------
    exc : BaseException
        Any exception.

    Returns
    -------
    bool
        True when ``exc`` is an :class:`OSError` that reports a full disk or
        quota (including an :class:`OutOfSpaceError`).
    """
    if not isinstance(exc, OSError):
        return False
    if isinstance(exc, OutOfSpaceError) or exc.errno in OUT_OF_SPACE_ERRNOS:
        return True
    return exc.errno is None and bool(_NUMPY_FALLOCATE.search(str(exc)) or _NUMPY_SHORT_WRITE.search(str(exc)))


def free_bytes(path) -> int:
    """Bytes an unprivileged user may still write on the file system holding ``path``.

    ``path`` need not exist: its nearest existing ancestor is asked
    (``statvfs``'s ``f_bavail * f_frsize``, as ``df`` shows).

    Parameters
    ----------
    path : str or Path
        A file or folder; it need not exist.

    Returns
    -------
    int
        Free bytes for an unprivileged user.
    """
    p = Path(path).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return shutil.disk_usage(p).free


def _needed_from_numpy(exc: BaseException) -> int | None:
    """The file size numpy's errno-less out-of-space message names, if it is one of them."""
    m = _NUMPY_FALLOCATE.search(str(exc))
    if m:
        return int(m.group(1)) + int(m.group(2))
    return None


@contextlib.contextmanager
def translate_out_of_space(path, *, size: int | None = None) -> Iterator[None]:
    """Context manager: a full disk inside the block becomes :class:`OutOfSpaceError` naming ``path``.

    For writers that do not go through :func:`atomic_path` (a file appended
    to, a folder being filled).  Other errors pass unchanged.

    Parameters
    ----------
    path : path
        The file or folder being written (named in the message).
    size : int, optional
        Bytes the block writes, when known (else the message gives only the
        free space).
    """
    try:
        yield
    except OutOfSpaceError:
        raise
    except OSError as exc:
        if not is_out_of_space(exc):
            raise
        raise OutOfSpaceError(path, needed=size or _needed_from_numpy(exc), free=free_bytes(path)) from exc


def check_free_space(path, need: int, what: str, detail: str | None = None) -> int:
    """Refuse a job before it starts when it needs more disk than the file system of ``path`` has free.

    Parameters
    ----------
    path : path
        Where the job will write (it need not exist yet).
    need : int
        Bytes the job is estimated to write.
    what : str
        What is refused, for the message (``"the run"``).
    detail : str, optional
        What the estimate is made of, appended to the message.

    Returns
    -------
    int
        The free bytes found.

    Raises
    ------
    OutOfSpaceError
        ``"PATH: no space left on device for WHAT (about N needed, M free; DETAIL)"``.
    """
    free = free_bytes(path)
    if int(need) > free:
        raise OutOfSpaceError(path, needed=int(need), free=free, what=what, detail=detail)
    return free


# --------------------------------------------------------------------------
# Atomic writes
# --------------------------------------------------------------------------


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _new_temporary(path: Path) -> Path:
    """Create an empty, unique ``.NAME.XXXXXXXX.tmp`` beside ``path`` with the mode ``open()`` gives.

    ``O_CREAT | O_EXCL`` with mode ``0o666``: the kernel applies the umask
    (and a default ACL of the folder), unlike ``mkstemp``'s fixed 0600.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            fd = os.open(tmp, flags, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return tmp
    raise FileExistsError(errno.EEXIST, "no unused temporary name after 100 tries", str(path))


@contextlib.contextmanager
def atomic_path(path, *, fsync: bool = True, size: int | None = None) -> Iterator[Path]:
    """Context manager: a unique temporary path to write; renamed to ``path`` on success.

    Parameters
    ----------
    path : path
        The file to write.  Its parent folder is created if needed.
    fsync : bool
        Flush the file (and the folder) to disk before and after the rename.
    size : int, optional
        Bytes the file will take, when known: named by the
        :class:`OutOfSpaceError` of a full disk.

    Yields
    ------
    Path
        The temporary file (it exists, empty, with the umask's mode); write
        it (or replace its contents) inside the block.

    Raises
    ------
    OutOfSpaceError
        A full disk anywhere (the folder, the temporary, the writes, the
        fsync, the rename), naming ``path``.

    Notes
    -----
    On an exception the temporary file is removed and ``path`` is left as
    it was.
    """
    path = Path(path)
    with translate_out_of_space(path.parent):
        path.parent.mkdir(parents=True, exist_ok=True)
    with translate_out_of_space(path, size=size):
        tmp = _new_temporary(path)
    try:
        yield tmp
        if fsync:
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        written = 0
        with contextlib.suppress(OSError):
            written = tmp.stat().st_size
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(exc, OSError) and not isinstance(exc, OutOfSpaceError) and is_out_of_space(exc):
            needed = size or _needed_from_numpy(exc)
            raise OutOfSpaceError(
                path, needed=needed or written or None, free=free_bytes(path.parent), at_least=needed is None
            ) from exc
        raise
    if fsync:
        _fsync_dir(path.parent)


def atomic_write_bytes(path, data: bytes, *, fsync: bool = True) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_path`).

    Parameters
    ----------
    path : str or Path
        The file to write; its parent folder is created if needed.
    data : bytes
        The whole contents.
    fsync : bool, default=True
        Flush the file and its folder to disk (see :func:`atomic_path`).

    Returns
    -------
    Path
        ``path``.
    """
    with atomic_path(path, fsync=fsync, size=len(data)) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path, text: str) -> Path:
    """Write ``text`` as UTF-8 to ``path`` atomically (see :func:`atomic_path`).

    Parameters
    ----------
    path : str or Path
        The file to write; its parent folder is created if needed.
    text : str
        The whole contents, encoded as UTF-8.

    Returns
    -------
    Path
        ``path``.
    """
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path, obj, *, indent: int | None = 2, default=None) -> Path:
    """Write ``obj`` as JSON (numpy scalars/arrays and paths converted) atomically.

    Parameters
    ----------
    path : str or Path
        The file to write; its parent folder is created if needed.
    obj : object
        Anything :func:`json.dumps` accepts with ``default``.
    indent : int or None, default=2
        Spaces per indentation level; None writes one line.
    default : callable, optional
        ``json.dumps`` fallback for other types; :func:`json_default` when
        None.

    Returns
    -------
    Path
        ``path``.
    """
    return atomic_write_text(path, json.dumps(obj, indent=indent, default=default or json_default))


def atomic_save_npy(path, array: np.ndarray) -> Path:
    """``np.save`` atomically (never pickled).

    Parameters
    ----------
    path : str or Path
        The ``.npy`` file to write (numpy adds no suffix: the name is kept).
    array : array_like
        Any shape; an object dtype is refused by ``np.save`` with
        ``allow_pickle=False`` (:class:`ValueError`).

    Returns
    -------
    Path
        ``path``.
    """
    array = np.asarray(array)
    with atomic_path(path, size=array.nbytes + 128) as tmp, open(tmp, "wb") as fh:
        np.save(fh, array, allow_pickle=False)
    return Path(path)


def atomic_save_npz(path, arrays: dict, *, compressed: bool = False) -> Path:
    """``np.savez`` of a dict of arrays atomically (object arrays refused).

    Parameters
    ----------
    path : str or Path
        The ``.npz`` file to write (the name is kept as given).
    arrays : dict of str to array_like
        Array name -> array, any shapes.
    compressed : bool, default=False
        Use ``np.savez_compressed`` (zip deflate) instead of ``np.savez``.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    TypeError
        An array has dtype object (it would need pickling), naming ``path``.
    """
    arrays = {k: np.asarray(v) for k, v in arrays.items()}
    for k, v in arrays.items():
        if v.dtype == object:
            raise TypeError(f"{path}: array {k!r} has dtype object, which would need pickling")
    size = None if compressed else sum(v.nbytes + 128 + 100 + 2 * len(k) for k, v in arrays.items()) + 22
    with atomic_path(path, size=size) as tmp, open(tmp, "wb") as fh:
        (np.savez_compressed if compressed else np.savez)(fh, **arrays)
    return Path(path)


def json_default(o):
    """``json.dumps`` fallback for numpy scalars and arrays and paths.

    Parameters
    ----------
    o : object
        The value ``json`` cannot serialise by itself.

    Returns
    -------
    int, float, bool, list or str
        Numpy integers, floats and bools as Python numbers, arrays as nested
        lists (``ndarray.tolist``), paths as strings.

    Raises
    ------
    TypeError
        Any other type.
    """
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.bool_):
        return bool(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def jsonable(obj):
    """``obj`` as plain JSON types (what a JSON round trip gives back).

    Parameters
    ----------
    obj : object
        Anything :func:`json_default` can serialise.

    Returns
    -------
    object
        ``json.loads(json.dumps(obj))``: dicts, lists (tuples become lists),
        str, int, float, bool and None.
    """
    return json.loads(json.dumps(obj, default=json_default))


# --------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------


def read_json(path, *, what: str = "JSON file", expect=dict):
    """Read a JSON file; every failure is a :class:`DataFileError` naming ``path``.

    Parameters
    ----------
    path : str or Path
        The JSON file (UTF-8).
    what : str, default="JSON file"
        What the file is, for the messages (``"model.json"``).
    expect : type or None, default=dict
        The type the top-level value must have; None accepts any.

    Returns
    -------
    object
        The decoded value.

    Raises
    ------
    DataFileError
        The file is missing, unreadable, not valid JSON, or its top-level
        value is not an ``expect``.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataFileError(f"{path}: {what} not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataFileError(f"{path}: cannot read {what} ({exc})") from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataFileError(f"{path}: {what} is not valid JSON ({exc})") from None
    if expect is not None and not isinstance(obj, expect):
        raise DataFileError(f"{path}: {what} should hold a JSON {expect.__name__}, found {type(obj).__name__}")
    return obj


def load_npz(path) -> dict[str, np.ndarray]:
    """All arrays of an ``.npz`` (``allow_pickle=False``), errors naming the file.

    Parameters
    ----------
    path : str or Path
        The ``.npz`` file.

    Returns
    -------
    dict of str to ndarray
        Array name -> array, read into memory (the file is closed).

    Raises
    ------
    DataFileError
        The file is missing or not a readable ``.npz`` (including one that
        holds object arrays).
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise DataFileError(f"{path}: file not found") from None
    except (OSError, ValueError, EOFError) as exc:
        raise DataFileError(f"{path}: not a readable .npz array file ({exc})") from None


def confined(directory, name) -> Path:
    """``directory / name`` for a file name read from a file, refusing escapes.

    ``name`` must be a relative path without ``..`` components; anything else
    (an absolute path, ``../x``, a drive) raises :class:`DataFileError`.

    Parameters
    ----------
    directory : str or Path
        The folder the name must stay in (named in the message).
    name : str
        A relative file name read from a file (e.g. from ``model.json``).

    Returns
    -------
    Path
        ``directory / name``, not resolved.

    Raises
    ------
    DataFileError
        ``name`` is not a non-empty string, or is absolute, or has ``..``.
    """
    directory = Path(directory)
    if not isinstance(name, str) or not name:
        raise DataFileError(f"{directory}: file name {name!r} is not a non-empty string")
    p = Path(name)
    if p.is_absolute() or p.anchor or any(part == ".." for part in p.parts):
        raise DataFileError(f"{directory}: file name {name!r} leaves the folder (absolute or '..')")
    return directory / p


def list_images(inputs: Iterable) -> list[Path]:
    """Files given, plus the images found (recursively, sorted) in each folder given.

    A folder contributes the files whose suffix is in :data:`IMAGE_SUFFIXES`;
    a file is taken as given (a bad file becomes that file's failure later).

    Parameters
    ----------
    inputs : iterable of str or Path
        Files and folders, in the order given.

    Returns
    -------
    list of Path
        The files in the order of ``inputs``; a folder's images sorted by path.
    """
    paths: list[Path] = []
    for p in inputs:
        p = Path(p)
        if p.is_dir():
            paths += sorted(q for q in p.rglob("*") if q.is_file() and q.suffix.lower() in IMAGE_SUFFIXES)
        else:
            paths.append(p)
    return paths


def claim_folder(params_path, params: dict, *, what: str, error=ValueError) -> bool:
    """Record what a folder holds (``params`` in ``params_path``), or check it holds the same.

    A cache or dataset folder holds one thing: the first run writes its
    parameters; a later run with equal parameters resumes (returns True);
    one with other parameters raises ``error`` naming the folder, so two
    kinds of output never mix.

    Parameters
    ----------
    params_path : str or Path
        The JSON file that records the folder's parameters (written on one
        line when new).
    params : dict
        The parameters of this run; compared after a JSON round trip
        (:func:`jsonable`), so tuples equal lists.
    what : str
        What the folder holds, for the messages (``"image cache"``).
    error : type of Exception, default=ValueError
        The exception raised on a mismatch.

    Returns
    -------
    bool
        True when the folder already held equal parameters (resume), False
        when they were written now.

    Raises
    ------
    Exception
        ``error`` when the folder holds other parameters; :class:`DataFileError`
        when ``params_path`` cannot be read as JSON.
    """
    params_path = Path(params_path)
    params = jsonable(params)
    if params_path.exists():
        if read_json(params_path, what=f"{what} parameters") != params:
            raise error(
                f"{params_path.parent}: {what} with other parameters or images is already here; "
                "use another folder or delete it"
            )
        return True
    atomic_write_json(params_path, params, indent=None)
    return False


def write_failures_csv(path, failures) -> Path:
    """The files that could not be used, as a CSV ``file,reason`` (atomically).

    Parameters
    ----------
    path : str or Path
        The CSV file to write (header ``file,reason``).
    failures : iterable of (path, reason) pairs
        Each file and why it could not be used; both written with ``str``.

    Returns
    -------
    Path
        ``path``.
    """
    import csv
    import io as _io

    buf = _io.StringIO()
    w = csv.writer(buf)
    w.writerow(["file", "reason"])
    w.writerows([(str(f), str(r)) for f, r in failures])
    return atomic_write_text(path, buf.getvalue())


# --------------------------------------------------------------------------
# Checksums
# --------------------------------------------------------------------------


def sha256_file(path) -> str:
    """sha256 of a file's bytes, read in 1 MiB blocks.

    Parameters
    ----------
    path : str or Path
        The file.

    Returns
    -------
    str
        64 lower-case hexadecimal digits.
    """
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def sha256_array(a: np.ndarray) -> str:
    """sha256 of an array's bytes in C order (dtype and shape not included).

    Parameters
    ----------
    a : array_like
        Any shape and dtype.

    Returns
    -------
    str
        64 lower-case hexadecimal digits.
    """
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def sha256_strings(items: Iterable[str]) -> str:
    """sha256 of strings joined by newlines (e.g. a list of image names).

    Each string is encoded as UTF-8 and followed by a newline (the last one
    too).

    Parameters
    ----------
    items : iterable of str
        The strings, in order.

    Returns
    -------
    str
        64 lower-case hexadecimal digits.
    """
    h = hashlib.sha256()
    for s in items:
        h.update(s.encode("utf-8"))
        h.update(b"\n")
    return h.hexdigest()


# --------------------------------------------------------------------------
# A lock for a work folder
# --------------------------------------------------------------------------


class FolderBusyError(RuntimeError):
    """Another process holds the lock of a work folder."""


_HELD_LOCKS: dict[str, int] = {}


@contextlib.contextmanager
def folder_lock(directory, *, what: str = "work folder") -> Iterator[Path]:
    """Hold an exclusive ``.lock`` in ``directory`` (created if needed) for the block.

    A second process asking for the same lock gets :class:`FolderBusyError`
    at once, naming the folder and the holder's pid.  The lock is an
    ``fcntl`` lock: it is released when the holder exits, even by kill -9.
    The lock is re-entrant within one process.

    Parameters
    ----------
    directory : str or Path
        The work folder; created if needed.  The lock file ``.lock`` in it
        holds the holder's pid.
    what : str, default="work folder"
        What the folder is, for the message.

    Yields
    ------
    Path
        The lock file.

    Raises
    ------
    FolderBusyError
        Another process holds the lock.
    """
    import fcntl

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    lock_path = directory / ".lock"
    key = str(lock_path.resolve())
    if key in _HELD_LOCKS:  # re-entrant within one process
        _HELD_LOCKS[key] += 1
        try:
            yield lock_path
        finally:
            _HELD_LOCKS[key] -= 1
        return
    fh = open(lock_path, "a+")
    try:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "unknown"
            raise FolderBusyError(
                f"{directory}: {what} is in use by another run (pid {holder}); "
                "wait for it to finish or use another folder"
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        _HELD_LOCKS[key] = 1
        try:
            yield lock_path
        finally:
            del _HELD_LOCKS[key]
    finally:
        fh.close()
