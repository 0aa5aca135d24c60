"""PadChest (Bustos et al. 2020, Hospital San Juan, Alicante): its label CSV, read through the protocol.

Where to get it: https://bimcv.cipf.es/bimcv-projects/padchest/ (a request
form, then 55 zip archives numbered 0-54 and the CSV).  Unzipped::

    PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv[.gz]
    0/216840111366964012283393834152009033102258826_00-059-087.png ...
    1/...  ...  54/...          (the archives' folders: the CSV's ImageDir)

(images may also sit in one flat folder: they are found by ``ImageID``
anywhere under the dataset folder).  The columns read: ``ImageID``,
``ImageDir``, ``PatientID``, ``StudyID``, ``StudyDate_DICOM`` (YYYYMMDD),
``PatientBirth`` (a year), ``PatientSex_DICOM``, ``Projection`` and
``Labels``.  The quirks the adapter reads as documented:

* ``Labels`` is a Python list written as a string, ``"['pleural effusion',
  'cardiomegaly']"``, with stray spaces around terms (``' cardiomegaly '``)
  and odd quoting in places; terms are stripped and lower-cased.
  ``['normal']`` is an image without findings.  Rows with no list at all
  (blank) are left out (counted in ``dropped``, as torchxrayvision leaves
  them out).
* Labels list positive findings only: a finding not listed is a negative
  (there is no "uncertain").  The adapter's labels are shared names
  (default: the 14 of ChestX-ray14, for cross-dataset evaluation), each
  positive when any of its PadChest terms
  (:data:`~.label_map.PADCHEST_TERMS`) is listed; a label that is not a
  shared name is read as one exact PadChest term.
* ``Projection`` is PA, L (lateral), AP, AP_horizontal (supine), COSTAL,
  EXCLUDE or UNK; frontal only (PA, AP, AP_horizontal) by default.
* ``PatientBirth`` is a year (``1939.0``, sometimes blank or ``None``): the
  age is the study year minus the birth year.  ``PatientSex_DICOM`` is M, F,
  or blank / O (unknown).
* Images are 16-bit PNGs (:func:`~phow_baseline.data.read_xray` reads them).

PadChest has no official split: a seeded patient-wise train/val/test split
is drawn and kept in the work folder.
"""

from __future__ import annotations

import ast
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ._tables import csv_line, find_file, read_table, scan_files
from .chestxray14 import LABELS as CHESTXRAY14_LABELS
from .label_map import PADCHEST_TERMS, label_key, shared_name
from .protocol import (
    DEFAULT_SEED,
    DEFAULT_TEST_FRACTION,
    DEFAULT_VAL_FRACTION,
    FRAME_COLUMNS,
    FRONTAL_VIEWS,
    NEGATIVE,
    POSITIVE,
    ChestDataset,
    DatasetError,
    normalise_age,
    normalise_sex,
    normalise_view,
    register_dataset,
)

CSV_FILES = (
    "PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv",
    "PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv.gz",
)
REQUIRED_COLUMNS = ("ImageID", "PatientID", "Labels", "Projection")
#: The default labels: ChestX-ray14's 14, each with PadChest terms.
PADCHEST_DEFAULT_LABELS = tuple(CHESTXRAY14_LABELS)
#: ``Projection`` spellings beyond :data:`~.protocol.VIEW_SPELLINGS`.
PADCHEST_VIEWS = {"COSTAL": "OTHER", "EXCLUDE": "OTHER"}


def parse_label_list(text, source="<Labels>", line: int | None = None) -> list[str] | None:
    """The terms of one ``Labels`` cell, stripped and lower-cased; None for a blank cell.

    Parameters
    ----------
    text : str
        ``"['pleural effusion', 'cardiomegaly']"``; stray spaces and quotes tolerated.
    source : str or Path, default="<Labels>"
        The file, named in the message.
    line : int, optional
        The cell's line in the file, named in the message.

    Returns
    -------
    list of str or None
        Empty terms are dropped.

    Raises
    ------
    DatasetError
        If the cell is not a bracketed list (naming the file, the column and the line).
    """
    if text is None or (isinstance(text, float) and np.isnan(text)):
        return None
    s = str(text).strip()
    if not s or s.lower() in ("nan", "none"):
        return None
    if not (s.startswith("[") and s.endswith("]")):
        where = f", line {line}" if line is not None else ""
        raise DatasetError(f"{source}: column 'Labels'{where}: {s[:60]!r} is not a list like \"['normal']\"")
    try:
        items = ast.literal_eval(s)
        if not isinstance(items, (list, tuple)) or not all(isinstance(t, str) for t in items):
            raise ValueError
    except (ValueError, SyntaxError):
        items = s[1:-1].split(",")
    terms = [" ".join(t.strip().strip("'\"").strip().lower().split()) for t in items]
    return [t for t in terms if t]


def terms_of(label: str) -> tuple[str, ...]:
    """The PadChest terms that make ``label`` positive.

    Parameters
    ----------
    label : str
        A shared name (or a synonym) or one PadChest term.

    Returns
    -------
    tuple of str
        Its :data:`~.label_map.PADCHEST_TERMS`, or the label itself (its
        :func:`~.label_map.label_key`) as one exact term.
    """
    shared = shared_name(label)
    if shared in PADCHEST_TERMS:
        return PADCHEST_TERMS[shared]
    return (label_key(label),)


@register_dataset
class PadChest(ChestDataset):
    """A PadChest folder through the dataset protocol (see the module docstring).

    Parameters
    ----------
    root : path
        The folder holding the CSV and the image folders.
    work_dir : path, optional
        Where the seeded split is kept (not written when None).
    strict, warn : bool
        Missing images: raise, or warn with counts.
    frontal_only : bool
        Keep PA, AP and AP_horizontal images only (default).
    val_fraction, test_fraction : float
        Shares of the images for the seeded patient-wise split's ``val`` and
        ``test`` parts (defaults 0.1 and 0.2).
    seed : int
        Seed of that split (default 0).
    labels : sequence of str, optional
        Shared names or PadChest terms (default :data:`PADCHEST_DEFAULT_LABELS`).
    csv : str, optional
        The CSV's file name (default: the release's, plain or ``.gz``).
    """

    kind = "padchest"
    title = "PadChest"
    url = "https://bimcv.cipf.es/bimcv-projects/padchest/"
    looks_for = CSV_FILES

    def __init__(
        self,
        root,
        *,
        work_dir=None,
        strict: bool = False,
        warn: bool = True,
        frontal_only: bool = True,
        val_fraction: float = DEFAULT_VAL_FRACTION,
        test_fraction: float = DEFAULT_TEST_FRACTION,
        seed: int = DEFAULT_SEED,
        labels: Sequence[str] | None = None,
        csv: str | None = None,
    ):
        root = Path(root)
        if not root.is_dir():
            raise DatasetError(f"{root}: dataset folder not found")
        path = find_file(root, (csv,) if csv else CSV_FILES, "PadChest label CSV")
        df = read_table(path, "PadChest label CSV", required=REQUIRED_COLUMNS)
        df["ImageID"] = df["ImageID"].str.strip()
        dup = df["ImageID"].duplicated()
        if dup.any():
            raise DatasetError(
                f"{path}: column 'ImageID': {int(dup.sum())} duplicated id(s), e.g. {df['ImageID'][dup].iloc[0]}"
            )
        terms = [parse_label_list(t, path, csv_line(i)) for i, t in enumerate(df["Labels"])]
        has = np.array([t is not None for t in terms])
        dropped = {"no Labels list": int((~has).sum())} if (~has).any() else {}
        blank_patient = df["PatientID"].str.strip() == ""
        if blank_patient.any():
            i = int(np.flatnonzero(blank_patient.to_numpy())[0])
            raise DatasetError(
                f"{path}: column 'PatientID', line {csv_line(i)}: blank patient id ({int(blank_patient.sum())} row(s))"
            )
        label_names = tuple(labels) if labels is not None else PADCHEST_DEFAULT_LABELS
        codes = np.full((len(df), len(label_names)), NEGATIVE, np.int8)
        for j, lab in enumerate(label_names):
            want = set(terms_of(lab))
            codes[:, j] = [POSITIVE if t and want.intersection(t) else NEGATIVE for t in terms]

        year = (
            pd.to_numeric(df["StudyDate_DICOM"].str.strip().str[:4], errors="coerce")
            if "StudyDate_DICOM" in df.columns
            else pd.Series(np.nan, index=df.index)
        )
        birth = (
            pd.to_numeric(df["PatientBirth"].str.strip(), errors="coerce")
            if "PatientBirth" in df.columns
            else pd.Series(np.nan, index=df.index)
        )
        sex = df["PatientSex_DICOM"] if "PatientSex_DICOM" in df.columns else [None] * len(df)
        view = normalise_view(df["Projection"], PADCHEST_VIEWS)
        on_disk = {Path(k).name: p for k, p in scan_files(root, (".png",)).items()}
        frame = pd.DataFrame(
            {
                "path": [
                    str(on_disk.get(n, root / d.strip() / n))
                    for n, d in zip(df["ImageID"], df["ImageDir"] if "ImageDir" in df.columns else [""] * len(df))
                ],
                "present": df["ImageID"].isin(on_disk.keys()).to_numpy(),
                "patient": df["PatientID"].str.strip().to_numpy(object),
                "study": df["StudyID"].str.strip().to_numpy(object) if "StudyID" in df.columns else None,
                "split": "",
                "sex": normalise_sex(sex),
                "age": normalise_age((year - birth).to_numpy()),
                "view": view,
                "frontal": np.isin(view, FRONTAL_VIEWS),
                "follow_up": np.nan,  # not read: PadChest's studies are not ordered here
            },
            index=pd.Index(df["ImageID"].to_numpy(object), name="name"),
        )[list(FRAME_COLUMNS)]
        self._assign_split(frame, work_dir, val_fraction, test_fraction, seed)
        self._finish(
            root,
            frame.loc[has],
            codes[has],
            label_names,
            sources={"labels": path},
            frontal_only=frontal_only,
            strict=strict,
            warn=warn,
            dropped=dropped,
            official_split=False,
        )
