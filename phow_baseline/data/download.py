"""Downloading the NIH ChestX-ray14 release: resumable, checked, extracted only when whole.

Each image archive is streamed to ``DATA_DIR/.downloads/images_NNN.tar.gz.part``;
a broken transfer resumes with an HTTP ``Range`` request (a server that
ignores it and answers 200 restarts the file); the size is checked against
the server's ``Content-Length`` / ``Content-Range`` total; the archive is
extracted into a temporary folder and moved to ``DATA_DIR/images_NNN/images/``
only when every member was read, so a truncated or corrupt archive never
leaves half its images in the data folder (it is deleted and fetched once
more, then reported).  Only regular ``.png`` files under ``images/`` are
extracted (no path traversal, no links).
"""

from __future__ import annotations

import os
import shutil
import sys
import tarfile
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Iterable
from pathlib import Path

from ..io import OutOfSpaceError, free_bytes, is_out_of_space

#: The 12 image archives of the NIH release (``images_001.tar.gz`` ..
#: ``images_012.tar.gz``, about 42 GB in all), as the NIH lists them.
NIH_IMAGE_ARCHIVES = {
    1: "https://nihcc.box.com/shared/static/vfk49d74nhbxq3nqjg0900w5nvkorp5c.gz",
    2: "https://nihcc.box.com/shared/static/i28rlmbvmfjbl8p2n3ril0pptcmcu9d1.gz",
    3: "https://nihcc.box.com/shared/static/f1t00wrtdk94satdfb9olcolqx20z2jp.gz",
    4: "https://nihcc.box.com/shared/static/0aowwzs5lhjrceb3qp67ahp0rd1l1etg.gz",
    5: "https://nihcc.box.com/shared/static/v5e3goj22zr6h8tzualxfsqlqaygfbsn.gz",
    6: "https://nihcc.box.com/shared/static/asi7ikud9jwnkrnkj99jnpfkjdes7l6l.gz",
    7: "https://nihcc.box.com/shared/static/jn1b4mw4n6lnh74ovmcjb8y48h8xj07n.gz",
    8: "https://nihcc.box.com/shared/static/tvpxmn7qyrgl0w8wfh9kqfjskv6nmm1j.gz",
    9: "https://nihcc.box.com/shared/static/upyy3ml7qdumlgk2rfcvlb9k6gvqq2pj.gz",
    10: "https://nihcc.box.com/shared/static/l6nilvfa9cg3s28tqv1qc1olm3gnz54p.gz",
    11: "https://nihcc.box.com/shared/static/hhq8fkdgvcari67vfhs7ppg2w6ni4jze.gz",
    12: "https://nihcc.box.com/shared/static/ioqwiy20ihqwyr8pf4c24eazhh281pbu.gz",
}
#: The NIH release's folder, where the metadata files are published (it gives
#: no stable direct link to each CSV, so they are fetched only from a URL or
#: a folder you name; see :func:`download`).
NIH_RELEASE_PAGE = "https://nihcc.app.box.com/v/ChestXray-NIHCC"
METADATA_FILES = ("Data_Entry_2017_v2020.csv", "train_val_list.txt", "test_list.txt", "BBox_List_2017.csv")
CHUNK = 1 << 20
DEFAULT_RETRIES = 5


class DownloadError(RuntimeError):
    """A file could not be fetched or is not what it should be; the message says which and why."""


def archive_name(part: int) -> str:
    """The file name of NIH image archive ``part`` (``3`` -> ``"images_003.tar.gz"``).

    Parameters
    ----------
    part : int
        Archive number, 1..12.

    Returns
    -------
    str
        ``images_NNN.tar.gz``, the number zero-padded to 3 digits.
    """
    return f"images_{part:03d}.tar.gz"


def _progress(total, desc, enabled):
    from ..progress import progress_bar

    return progress_bar(total=total, initial=0, unit="B", unit_scale=True, desc=desc, disable=not enabled, leave=False)


def fetch(
    url: str, dest, retries: int = DEFAULT_RETRIES, timeout: float = 60.0, progress: bool = True, backoff: float = 1.0
) -> Path:
    """Download ``url`` to ``dest``, resuming ``dest.part`` with Range requests.

    The data goes to ``dest.part`` and is renamed to ``dest`` when its size
    matches the server's total (``Content-Range`` of a 206 answer, or
    ``Content-Length`` of a 200, which restarts the file).  Network errors,
    5xx, 408 and 429 answers are retried after ``backoff * attempt``
    seconds; other 4xx answers are not.

    Parameters
    ----------
    url : str
        The file's URL (http or https).
    dest : str or Path
        The file to write; its folder is created if needed.
    retries : int, default=5
        Attempts after the first (:data:`DEFAULT_RETRIES`).
    timeout : float, default=60.0
        Socket timeout of each request, in seconds.
    progress : bool, default=True
        Show the bytes transferred (:func:`phow_baseline.progress.progress_bar`).
    backoff : float, default=1.0
        Seconds of wait per attempt number before a retry (0 s, then 1 s,
        2 s, ...).

    Returns
    -------
    Path
        ``dest``.

    Raises
    ------
    DownloadError
        After ``retries + 1`` failed attempts (the partial data is kept for
        the next run), on a non-retryable HTTP error, a malformed or
        misplaced ``Content-Range``, or more bytes than the server announced.
    OutOfSpaceError
        The disk filled up (no retry; the partial data is kept).
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    last_error = None
    for attempt in range(retries + 1):
        have = part.stat().st_size if part.exists() else 0
        headers = (
            {"User-Agent": "phow-baseline", "Range": f"bytes={have}-"} if have else {"User-Agent": "phow-baseline"}
        )
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout) as resp:
                status = resp.status
                if status == 206:
                    cr = resp.headers.get("Content-Range", "")  # bytes a-b/total
                    try:
                        start = int(cr.split()[1].split("-")[0])
                        total = int(cr.split("/")[1])
                    except (IndexError, ValueError):
                        raise DownloadError(f"{url}: malformed Content-Range {cr!r}") from None
                    if start != have:
                        raise DownloadError(f"{url}: server resumed at byte {start}, expected {have}")
                    mode = "ab"
                else:  # 200: the server ignored the range; start over
                    cl = resp.headers.get("Content-Length")
                    total = int(cl) if cl is not None else None
                    have, mode = 0, "wb"
                bar = _progress(total, dest.name, progress)
                bar.update(have)
                with open(part, mode) as fh:
                    while True:
                        block = resp.read(CHUNK)
                        if not block:
                            break
                        fh.write(block)
                        bar.update(len(block))
                bar.close()
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and part.exists():  # nothing left to send: check below
                total = None
            else:
                last_error = f"HTTP {exc.code} {exc.reason}"
                if 400 <= exc.code < 500 and exc.code not in (408, 429):
                    break
                time.sleep(backoff * attempt)
                continue
        except (urllib.error.URLError, OSError, ConnectionError, TimeoutError) as exc:
            if is_out_of_space(exc):  # a full disk: no retry; the partial data stays for the rerun
                raise OutOfSpaceError(part, needed=total, free=free_bytes(part)) from exc
            last_error = f"{type(exc).__name__}: {exc}"
            time.sleep(backoff * attempt)
            continue
        size = part.stat().st_size if part.exists() else 0
        if total is not None and size < total:
            last_error = f"transfer cut at {size} of {total} bytes"
            continue
        if total is not None and size != total:
            part.unlink()
            raise DownloadError(f"{url}: got {size} bytes, the server announced {total}")
        os.replace(part, dest)
        return dest
    raise DownloadError(
        f"{url}: download failed after {retries + 1} attempt(s): {last_error} "
        f"(partial data kept in {part}; run again to resume)"
    )


class CorruptArchive(DownloadError):
    """An archive is truncated or corrupt, or holds no ``images/*.png``; the message names it."""


def extract_images(archive, data_dir, part: int) -> int:
    """Extract the PNGs of ``archive`` into ``data_dir/images_NNN/images/``, all or nothing.

    The whole gzip stream is read first (its CRC-32 and length trailer
    catch corruption that tar alone would not see); then only regular
    ``.png`` members under an ``images/`` folder are extracted, into a
    temporary ``.images_NNN.extracting`` folder renamed when complete.  A
    ``.complete`` file in the result holds the number of images.

    Parameters
    ----------
    archive : str or Path
        An NIH ``images_NNN.tar.gz``.
    data_dir : str or Path
        The dataset folder.
    part : int
        The archive's number, 1..12 (names the folder ``images_NNN``).

    Returns
    -------
    int
        The number of images extracted.

    Raises
    ------
    CorruptArchive
        The archive is truncated or corrupt or holds no images; the data
        folder is left untouched.
    OutOfSpaceError
        The disk filled up while extracting (the archive is kept).
    """
    data_dir = Path(data_dir)
    final = data_dir / f"images_{part:03d}"
    tmp = data_dir / f".images_{part:03d}.extracting"
    if tmp.exists():
        shutil.rmtree(tmp)
    (tmp / "images").mkdir(parents=True)
    n = 0
    try:
        # read the whole gzip stream first: its CRC-32 and length trailer catch
        # corruption that tar alone would not see (tar stops at its end marker)
        import gzip

        with gzip.open(archive, "rb") as gz:
            while gz.read(CHUNK):
                pass
        with tarfile.open(archive, "r:gz") as tf:
            for m in tf:
                parts = Path(m.name).parts
                if (
                    not m.isfile()
                    or not m.name.endswith(".png")
                    or ".." in parts
                    or Path(m.name).is_absolute()
                    or len(parts) < 2
                    or parts[-2] != "images"
                ):
                    continue
                src = tf.extractfile(m)
                with open(tmp / "images" / Path(m.name).name, "wb") as fh:
                    shutil.copyfileobj(src, fh)
                n += 1
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:  # gzip.BadGzipFile is an OSError
        shutil.rmtree(tmp, ignore_errors=True)
        if is_out_of_space(exc):  # a full disk, not a corrupt archive: the archive is kept for the rerun
            raise OutOfSpaceError(tmp, free=free_bytes(tmp)) from exc
        raise CorruptArchive(f"{archive}: truncated or corrupt archive ({type(exc).__name__}: {exc})") from exc
    if n == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise CorruptArchive(f"{archive}: no images/*.png inside")
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    (final / ".complete").write_text(str(n))
    return n


def download(
    data_dir,
    parts: Iterable[int] = range(1, 13),
    urls: dict | None = None,
    metadata_urls: dict | None = None,
    metadata_from=None,
    keep_archives: bool = False,
    retries: int = DEFAULT_RETRIES,
    progress: bool = True,
    log=print,
) -> dict:
    """Fetch and extract NIH image archives, and the metadata files, into ``data_dir``.

    Parameters
    ----------
    data_dir : str or Path
        The dataset folder; created if needed.  Archives are downloaded to
        ``data_dir/.downloads/`` and extracted to ``data_dir/images_NNN/images/``;
        a part already extracted (``.complete``) is skipped.
    parts : iterable of int
        Archive numbers 1..12 (each about 3.5 GB).
    urls : dict, optional
        ``{part: url}`` overriding :data:`NIH_IMAGE_ARCHIVES` (a mirror).
    metadata_urls : dict, optional
        ``{file name: url}`` for the files of :data:`METADATA_FILES`.
    metadata_from : path, optional
        A folder holding the metadata files (plain or ``.gz``), copied in.
        Files already in ``data_dir`` are kept.  Without either, missing
        metadata files are reported with where to get them
        (:data:`NIH_RELEASE_PAGE`).
    keep_archives : bool, default=False
        Keep each ``.tar.gz`` after a successful extraction.
    retries : int, default=5
        Retries of each transfer (see :func:`fetch`).
    progress : bool, default=True
        Show the bytes transferred.
    log : callable, default=print
        Called with one message per part (``log(text)``, or
        ``log(text, file=sys.stderr)`` for a failure).

    Returns
    -------
    dict
        ``parts`` {part: number of images, or ``"error: ..."``},
        ``metadata`` {file name: status}, and, when the folder reads as a
        dataset, ``present``/``listed`` image counts per split (else
        ``dataset_error``, the reason).

    Raises
    ------
    ValueError
        A part outside 1..12 (without a URL in ``urls``).
    OutOfSpaceError
        The disk filled up.

    Notes
    -----
    A corrupt archive is deleted and fetched once more before the part is
    reported as an error; other parts go on.
    """
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    urls = {**NIH_IMAGE_ARCHIVES, **(urls or {})}
    report = {"parts": {}, "metadata": {}}
    for p in parts:
        p = int(p)
        if p not in urls:
            raise ValueError(f"unknown archive part {p}; parts are 1..12")
        final = data_dir / f"images_{p:03d}"
        if (final / ".complete").exists():
            report["parts"][p] = int((final / ".complete").read_text())
            log(f"{archive_name(p)}: already extracted ({report['parts'][p]} images)")
            continue
        arch = data_dir / ".downloads" / archive_name(p)
        for attempt in range(2):
            try:
                if not (attempt == 0 and arch.exists()):  # a whole archive from an earlier run is checked as is
                    fetch(urls[p], arch, retries=retries, progress=progress)
                n = extract_images(arch, data_dir, p)
                report["parts"][p] = n
                log(f"{archive_name(p)}: {n} images in {final / 'images'}")
                if not keep_archives:
                    arch.unlink()
                break
            except CorruptArchive as exc:
                arch.unlink(missing_ok=True)
                if attempt == 1:
                    report["parts"][p] = f"error: {exc}"
                    log(f"{archive_name(p)}: {exc}; fetched twice, giving up on this part", file=sys.stderr)
                else:
                    log(f"{archive_name(p)}: {exc}; fetching it again", file=sys.stderr)
            except DownloadError as exc:
                report["parts"][p] = f"error: {exc}"
                log(f"{archive_name(p)}: {exc}", file=sys.stderr)
                break
    for name in METADATA_FILES:
        if (data_dir / name).exists() or (data_dir / (name + ".gz")).exists():
            report["metadata"][name] = "present"
            continue
        src = None
        if metadata_from is not None:
            for cand in (Path(metadata_from) / name, Path(metadata_from) / (name + ".gz")):
                if cand.exists():
                    src = cand
                    break
        if src is not None:
            shutil.copy(src, data_dir / src.name)
            report["metadata"][name] = f"copied from {src}"
        elif metadata_urls and name in metadata_urls:
            try:
                fetch(metadata_urls[name], data_dir / name, retries=retries, progress=progress)
                report["metadata"][name] = "downloaded"
            except DownloadError as exc:
                report["metadata"][name] = f"error: {exc}"
        else:
            report["metadata"][name] = f"missing: get it from {NIH_RELEASE_PAGE}"
    try:
        import warnings

        from .chestxray14 import ChestXray14, DatasetError

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = ChestXray14(data_dir)
        c = ds.counts()
        report["present"] = {s: c[s].present for s in ("train_val", "test", "all")}
        report["listed"] = {s: c[s].listed for s in ("train_val", "test", "all")}
    except (DatasetError, OSError) as exc:
        report["dataset_error"] = str(exc)
    return report


def format_report(r: dict) -> str:
    """Human-readable text of the report of :func:`download`.

    Parameters
    ----------
    r : dict
        What :func:`download` returns.

    Returns
    -------
    str
        One line per part and per metadata file, then the present / listed
        images per split (or why the dataset cannot be read yet); no final
        newline.
    """
    lines = []
    for p, v in sorted(r["parts"].items()):
        lines.append(f"{archive_name(p)}: {v if isinstance(v, str) else f'{v} images'}")
    for name, v in r["metadata"].items():
        lines.append(f"{name}: {v}")
    if "present" in r:
        for s in ("train_val", "test", "all"):
            lines.append(
                f"{s}: {r['present'][s]} of {r['listed'][s]} listed images present "
                f"({r['listed'][s] - r['present'][s]} missing)"
            )
    elif "dataset_error" in r:
        lines.append(f"dataset not readable yet: {r['dataset_error']}")
    return "\n".join(lines)


def parse_parts(text: str) -> list[int]:
    """``"1,2,5-7"`` -> ``[1, 2, 5, 6, 7]``; ``"all"`` -> 1..12.

    Parameters
    ----------
    text : str
        Comma-separated archive numbers and inclusive ranges ``a-b``, or
        ``"all"`` (any case).

    Returns
    -------
    list of int
        The archive numbers, in the order written (repeats kept).

    Raises
    ------
    ValueError
        A number outside 1..12, or a token that is not a number or range.
    """
    if text.strip().lower() == "all":
        return list(range(1, 13))
    out = []
    for tok in text.split(","):
        tok = tok.strip()
        if "-" in tok:
            a, b = tok.split("-")
            out += list(range(int(a), int(b) + 1))
        elif tok:
            out.append(int(tok))
    bad = [p for p in out if not 1 <= p <= 12]
    if bad:
        raise ValueError(f"archive parts must be 1..12, got {bad}")
    return out
