"""A phantom in the exact shape of a real ChestX-ray14 metadata file (``phantom --like``).

Every metadata row (or a patient-complete subset) becomes a phantom image
with the row's file name, drawn with exactly the findings the row lists; an
image depends only on its name, its row's findings and patient, the size
and the seed, so the folder is written in parallel chunks and an interrupted
run resumes.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from ..chestxray14 import LABELS
from ._anatomy import DEFAULT_SIZE, make_anatomy
from ._findings import render_case

#: Images per work item of :func:`make_phantom_like`: one item is the unit of
#: scheduling and of the truth file written for resuming.
LIKE_CHUNK = 64
#: Version of the drawing in :func:`make_phantom_like`; part of its parameters.
LIKE_VERSION = 1
_LIKE_PARAMS = ".phantom_like.json"
_LIKE_PARTS = ".phantom_parts"


def image_seed(name: str, seed: int = 0) -> list[int]:
    """Seed of the generator that draws image ``name``: a hash of the name and the global ``seed``.

    ``blake2b`` of the name (not Python's salted ``hash``), so the image is
    the same in every process and in any order of generation.

    Parameters
    ----------
    name : str
        The image's file name (``00000001_000.png``).
    seed : int, default=0
        The phantom's global seed.

    Returns
    -------
    list of int
        ``[seed, h]`` with ``h`` the 64-bit little-endian ``blake2b`` digest
        of the UTF-8 name: a seed for ``numpy.random.default_rng``.
    """
    import hashlib

    h = int.from_bytes(hashlib.blake2b(name.encode("utf-8"), digest_size=8).digest(), "little")
    return [int(seed), h]


def render_like(name: str, findings, patient: int, size: int = DEFAULT_SIZE, seed: int = 0):
    """The phantom image of metadata row ``name``, drawn with exactly ``findings``.

    The patient's anatomy is drawn from ``(seed, patient)`` (the same body on
    every follow-up, with the heart enlarged or the lungs hyperinflated when
    the row says so), everything else from :func:`image_seed`.

    Parameters
    ----------
    name : str
        The row's file name (seeds the drawing).
    findings : iterable of str
        Findings to draw, among :data:`~phow_baseline.data.chestxray14.LABELS`
        (others, ``No Finding`` included, are ignored).
    patient : int
        The row's ``Patient ID`` (seeds the anatomy).
    size : int, default=256
        Image side, in pixels.
    seed : int, default=0
        The phantom's global seed.

    Returns
    -------
    image : ndarray of uint8, shape (size, size)
        The radiograph.
    boxes : dict of str to list of float
        Label -> ``[x, y, w, h]`` (top-left corner and size) in pixels of the
        image, for each finding drawn.
    """
    findings = [f for f in LABELS if f in set(findings)]
    an = make_anatomy(
        np.random.default_rng([int(seed), 1, int(patient)]), size, "Cardiomegaly" in findings, "Emphysema" in findings
    )
    img, boxes, _, _ = render_case(findings, np.random.default_rng(image_seed(name, seed)), size, anatomy=an)
    return img, boxes


def _encode_png(img: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", img, [cv2.IMWRITE_PNG_COMPRESSION, 3])
    if not ok:  # pragma: no cover - OpenCV encodes any uint8 image
        raise RuntimeError("PNG encoding failed")
    return buf.tobytes()


def _like_chunk(image_dir: str, part_path: str, rows, size: int, seed: int):
    """Draw and write the images of one chunk (those not on disk yet); write its truth part.

    ``rows``: list of ``(name, findings, patient)``.  Returns ``(written, kept)``.
    """
    from ...io import atomic_path, atomic_write_json

    image_dir = Path(image_dir)
    truth, written, kept = {}, 0, 0
    for name, findings, patient in rows:
        target = image_dir / name
        img, boxes = render_like(name, findings, patient, size, seed)
        if target.exists():
            kept += 1  # written atomically by an earlier run: complete, kept as it is
        else:
            with atomic_path(target, fsync=False) as tmp:
                tmp.write_bytes(_encode_png(img))
            written += 1
        truth[name] = {"findings": [f for f in LABELS if f in set(findings)], "boxes": boxes}
    atomic_write_json(part_path, truth, indent=None)
    return written, kept


def _patient_subset(patients: np.ndarray, limit: int, seed: int) -> np.ndarray:
    """Boolean mask of rows of whole patients, drawn in a seeded order until ``limit`` images.

    Patients are visited in a seeded random order; a patient is taken whole
    when its images still fit under ``limit`` (so the total is ``limit``
    unless no remaining patient fits).
    """
    uniq, inverse, counts = np.unique(patients, return_inverse=True, return_counts=True)
    order = np.random.default_rng([int(seed), 2]).permutation(len(uniq))
    take = np.zeros(len(uniq), bool)
    total = 0
    for j in order:
        if total + counts[j] <= limit:
            take[j] = True
            total += counts[j]
            if total == limit:
                break
    return take[inverse]


def make_phantom_like(
    out,
    metadata_csv,
    size: int = DEFAULT_SIZE,
    limit: int | None = None,
    seed: int = 0,
    bbox_csv=None,
    train_val_list=None,
    test_list=None,
    n_jobs: int = -1,
    progress: bool = True,
    chunk: int = LIKE_CHUNK,
) -> Path:
    """Write a phantom with the shape of a real ChestX-ray14 metadata file.

    Every row of ``metadata_csv`` (or of a patient-complete subset of
    ``limit`` images) becomes a phantom image with the row's file name,
    drawn with exactly the findings the row lists (``No Finding``: none).
    The folder reads as a ChestX-ray14 release: the metadata rows as they
    are, the official split lists restricted to the chosen images (order
    kept), and, when ``bbox_csv`` is given, a box list with one row for
    every row of the real list whose image was chosen, holding the box where
    the phantom drew that finding (in the 1024x1024 frame, as NIH's).
    ``phantom_truth.json`` holds every finding's box on every image, in
    pixels of the images.

    Parameters
    ----------
    out : path
        Output folder (created).  A folder from an interrupted run with the
        same parameters is resumed: images on disk are kept as they are.
    metadata_csv : path
        ``Data_Entry_2017[_v2020].csv[.gz]``.
    size : int
        Image side in pixels.
    limit : int, optional
        Number of images: whole patients in a seeded random order until
        ``limit`` images (see :func:`_patient_subset`).  Default: every row.
    seed : int
        Global seed: the subset, and with each name the drawing
        (:func:`image_seed`, :func:`render_like`).  An image depends only on
        its name, its row's findings and patient, ``size`` and ``seed``.
    bbox_csv : path, optional
        ``BBox_List_2017.csv[.gz]``: which (image, finding) pairs get a box row.
    train_val_list, test_list : path, optional
        Official split lists (default: ``train_val_list.txt`` and
        ``test_list.txt`` next to ``metadata_csv``).
    n_jobs : int
        Processes of joblib (``-1``: all cores).
    progress : bool
        A progress bar on stderr (log lines when not a terminal).
    chunk : int, default=64
        Images per work item (:data:`LIKE_CHUNK`); part of the parameters, so
        a resumed run must use the same.

    Returns
    -------
    Path
        ``out``.

    Raises
    ------
    ValueError
        ``size`` below 32 pixels or ``limit`` below 1.
    DatasetError
        A metadata file, split list or box list is missing or invalid.
    FileExistsError
        ``out`` holds a phantom with other parameters, or images without
        the phantom's parameter file.
    """
    import pandas as pd
    from joblib import Parallel, delayed

    from ...io import atomic_write_json, atomic_write_text, claim_folder, read_json, sha256_strings
    from ...progress import progress_bar
    from ..chestxray14 import DatasetError, read_boxes, read_metadata, read_split_list

    out = Path(out)
    meta_path = Path(metadata_csv)
    if int(size) < 32:
        raise ValueError(f"size must be at least 32 pixels, got {size}")
    if limit is not None and int(limit) < 1:
        raise ValueError(f"limit must be a positive number of images, got {limit}")
    meta = read_metadata(meta_path)
    lists = {}
    for key, given, default in (
        ("train_val", train_val_list, "train_val_list.txt"),
        ("test", test_list, "test_list.txt"),
    ):
        p = Path(given) if given is not None else meta_path.parent / default
        if not p.exists():
            raise DatasetError(f"{p}: official split list not found (pass it explicitly)")
        lists[key] = read_split_list(p)
    patients = meta["Patient ID"].to_numpy()
    keep = _patient_subset(patients, int(limit), seed) if limit is not None else np.ones(len(meta), bool)
    meta = meta[keep].reset_index(drop=True)
    names = meta["Image Index"].tolist()
    chosen = set(names)

    params = {
        "like": meta_path.name,
        "n_images": len(names),
        "names_sha256": sha256_strings(names),
        "limit": limit,
        "size": int(size),
        "seed": int(seed),
        "boxes": Path(bbox_csv).name if bbox_csv is not None else None,
        "version": LIKE_VERSION,
        "chunk": int(chunk),
    }
    out.mkdir(parents=True, exist_ok=True)
    params_path = out / _LIKE_PARAMS
    if not params_path.exists() and (out / "images").exists() and any((out / "images").iterdir()):
        raise FileExistsError(f"{out}: holds images but no {_LIKE_PARAMS}; use an empty folder")
    claim_folder(params_path, params, what="a phantom", error=FileExistsError)
    image_dir = out / "images"
    image_dir.mkdir(exist_ok=True)
    parts_dir = out / _LIKE_PARTS
    parts_dir.mkdir(exist_ok=True)

    findings = [[] if s == "No Finding" else s.split("|") for s in meta["Finding Labels"]]
    rows = list(zip(names, findings, meta["Patient ID"].astype(int).tolist()))
    chunks = [rows[i : i + chunk] for i in range(0, len(rows), chunk)]
    part_paths = [parts_dir / f"part_{i:06d}.json" for i in range(len(chunks))]
    # a chunk is done when its truth part is there and every image of it is on disk
    todo = [
        i
        for i, (c, p) in enumerate(zip(chunks, part_paths))
        if not p.exists() or not all((image_dir / r[0]).exists() for r in c)
    ]
    n_done = len(rows) - sum(len(chunks[i]) for i in todo)
    bar = progress_bar(
        total=len(rows),
        initial=n_done,
        unit="img",
        desc="phantom",
        disable=not progress,
        mininterval=1.0,
        smoothing=0.05,
    )
    written = kept = 0
    if todo:
        par = Parallel(n_jobs=n_jobs, return_as="generator_unordered")
        for w, k in par(delayed(_like_chunk)(str(image_dir), str(part_paths[i]), chunks[i], size, seed) for i in todo):
            written += w
            kept += k
            bar.update(w + k)
    bar.close()

    truth = {}
    for p in part_paths:
        truth.update(read_json(p, what="phantom truth part"))
    # -- the NIH files ------------------------------------------------------
    raw = pd.read_csv(meta_path, dtype=str, keep_default_na=False)
    raw = raw[raw["Image Index"].isin(chosen)]
    raw = raw.set_index("Image Index", drop=False).loc[names]  # the order of the rows kept
    atomic_write_text(out / "Data_Entry_2017_v2020.csv", raw.to_csv(index=False))
    for key, fname in (("train_val", "train_val_list.txt"), ("test", "test_list.txt")):
        atomic_write_text(out / fname, "\n".join(n for n in lists[key] if n in chosen))  # no final newline, as NIH's
    n_box_rows = n_box_skipped = 0
    if bbox_csv is not None:
        b = read_boxes(bbox_csv)
        b = b[b["Image Index"].isin(chosen)]
        f = 1024.0 / size
        lines = ["Image Index,Finding Label,Bbox [x,y,w,h],,,"]
        for name, lab in zip(b["Image Index"], b["label"]):
            box = truth[name]["boxes"].get(lab)
            if box is None:  # a real box for a finding the row does not list
                n_box_skipped += 1
                continue
            lines.append(
                f"{name},{'Infiltrate' if lab == 'Infiltration' else lab},{box[0] * f:.6f},"
                f"{box[1] * f:.6f},{box[2] * f:.6f},{box[3] * f:.6f}"
            )
            n_box_rows += 1
        atomic_write_text(out / "BBox_List_2017.csv", "\n".join(lines) + "\n")
    atomic_write_text(
        out / "README.txt",
        "SYNTHETIC chest radiograph phantom made by phow_baseline.data.phantom.make_phantom_like: "
        f"not real patients; the names, labels and splits of {meta_path.name}.\n"
        f"Parameters: {json.dumps(params)}\n",
    )
    atomic_write_json(
        out / "phantom_truth.json",
        {
            "params": params,
            "images": {n: truth[n] for n in names},
            "followups": [],
            "box_rows": n_box_rows,
            "box_rows_skipped": n_box_skipped,
        },
        indent=None,
    )
    return out
