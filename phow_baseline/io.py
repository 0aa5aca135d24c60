"""File helpers every stage uses: atomic writes, JSON reading with errors that
name the file, image listing, checksums, confined file names, a work-folder lock.

An atomic write goes to a unique temporary name in the destination's folder
(``.NAME.XXXXXXXX.tmp``), is flushed and fsynced, then renamed over the
destination, so a reader sees the old file or the new one, never half of one,
and two writers of one file never share a temporary name.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

#: File suffixes taken as images when a folder is listed (case-insensitive).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")


class DataFileError(ValueError):
    """A file the library reads is missing, unreadable or not in the expected format.

    The message always starts with the file's path.
    """


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


@contextlib.contextmanager
def atomic_path(path, *, fsync: bool = True) -> Iterator[Path]:
    """Context manager: a unique temporary path to write; renamed to ``path`` on success.

    The parent folder is created if needed.  On an exception the temporary
    file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        if fsync:
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    if fsync:
        _fsync_dir(path.parent)


def atomic_write_bytes(path, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path, obj, *, indent: int | None = 2, default=None) -> Path:
    """Write ``obj`` as JSON (numpy scalars/arrays and paths converted) atomically."""
    return atomic_write_text(path, json.dumps(obj, indent=indent, default=default or json_default))


def atomic_save_npy(path, array: np.ndarray) -> Path:
    """``np.save`` atomically (never pickled)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, np.asarray(array), allow_pickle=False)
    return Path(path)


def atomic_save_npz(path, arrays: dict, *, compressed: bool = False) -> Path:
    """``np.savez`` of a dict of arrays atomically (object arrays refused)."""
    arrays = {k: np.asarray(v) for k, v in arrays.items()}
    for k, v in arrays.items():
        if v.dtype == object:
            raise TypeError(f"{path}: array {k!r} has dtype object, which would need pickling")
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        (np.savez_compressed if compressed else np.savez)(fh, **arrays)
    return Path(path)


def json_default(o):
    """``json.dumps`` fallback for numpy scalars and arrays and paths."""
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
    """``obj`` as plain JSON types (what a JSON round trip gives back)."""
    return json.loads(json.dumps(obj, default=json_default))


# --------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------

def read_json(path, *, what: str = "JSON file", expect=dict):
    """Read a JSON file; every failure is a :class:`DataFileError` naming ``path``.

    ``expect`` is the type the top-level value must have (``None``: any).
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
        raise DataFileError(f"{path}: {what} should hold a JSON {expect.__name__}, "
                            f"found {type(obj).__name__}")
    return obj


def load_npz(path) -> dict[str, np.ndarray]:
    """All arrays of an ``.npz`` (``allow_pickle=False``), errors naming the file."""
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
    """
    params_path = Path(params_path)
    params = jsonable(params)
    if params_path.exists():
        if read_json(params_path, what=f"{what} parameters") != params:
            raise error(f"{params_path.parent}: {what} with other parameters or images is already here; "
                        "use another folder or delete it")
        return True
    atomic_write_json(params_path, params, indent=None)
    return False


def write_failures_csv(path, failures) -> Path:
    """The files that could not be used, as a CSV ``file,reason`` (atomically)."""
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
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def sha256_array(a: np.ndarray) -> str:
    """sha256 of an array's bytes in C order (dtype and shape not included)."""
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def sha256_strings(items: Iterable[str]) -> str:
    """sha256 of strings joined by newlines (e.g. a list of image names)."""
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
            raise FolderBusyError(f"{directory}: {what} is in use by another run (pid {holder}); "
                                  "wait for it to finish or use another folder") from None
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
