"""A plain CSV for one's own images (a hospital's, a study's), read through the protocol.

The format (the file ``dataset.csv`` in the dataset folder, or any ``.csv``
given directly; one row per image)::

    image,patient,split,sex,age,view,Effusion,Pneumothorax,Cardiomegaly
    images/0001.png,P001,train,F,64,PA,1,0,
    images/0002.png,P001,train,F,65,PA,0,-1,0
    images/0003.jpg,P002,test,M,,AP,0,0,1

* ``image`` (required): the file, relative to the CSV's folder (or absolute);
  the value is the image's name.  PNG (8 or 16 bit) or JPEG.
* the labels, either **one column per label** (every column that is not one
  of the reserved names below), each cell ``1`` (positive), ``0``
  (negative), ``-1`` (uncertain) or blank (not mentioned), ``.0`` allowed;
  or **one column** ``labels`` holding the positive findings separated by
  ``|`` (``Effusion|Mass``; blank or ``No Finding``: none), every finding not
  listed being negative (the ChestX-ray14 style).  The label names are free;
  cross-dataset evaluation pairs them with other datasets' through
  :mod:`.label_map` (case and ``_`` do not matter: ``pleural effusion`` =
  ``Effusion``).
* ``patient`` (optional, recommended): the patient id.  Without it every
  image is its own patient, and a patient's images may land in two splits
  (a warning says so).
* ``split`` (optional): ``train``, ``val`` or ``test`` (``valid``,
  ``validate``, ``validation`` read as ``val``).  Without it a seeded
  patient-wise split is drawn and kept in the work folder.
* ``sex`` (M/F, Male/Female), ``age`` (years), ``view`` (PA, AP, LATERAL...),
  ``study`` (optional subgroup and grouping columns), ``follow_up``
  (optional: 0 for a patient's first image or study, 1, 2, ... for later
  ones; blank when unknown).

Each reserved column may be given another name (``image_column=...``).
Errors name the file, the column and the line.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ._tables import codes_from_cells, csv_line, read_table
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

DEFAULT_CSV = "dataset.csv"
#: role -> the column name read by default.
RESERVED = {
    "image": "image",
    "labels": "labels",
    "patient": "patient",
    "split": "split",
    "sex": "sex",
    "age": "age",
    "view": "view",
    "study": "study",
    "follow_up": "follow_up",
}
#: ``split`` values -> parts.
SPLIT_VALUES = {"train": "train", "val": "val", "valid": "val", "validate": "val", "validation": "val", "test": "test"}
NO_FINDING = ("", "no finding")


class NoPatientColumnWarning(UserWarning):
    """A plain CSV without a patient column: each image is its own patient."""


@register_dataset
class CsvDataset(ChestDataset):
    """A plain CSV through the dataset protocol (the format is in the module docstring).

    Parameters
    ----------
    root : path
        The CSV file, or a folder holding ``dataset.csv``.
    work_dir : path, optional
        Where the seeded split is kept when there is no ``split`` column.
    strict, warn : bool
        Missing images: raise, or warn with counts.
    frontal_only : bool
        With a ``view`` column, keep frontal views only (PA, AP, AP supine,
        FRONTAL) and drop the others and the blank ones; without one, keep all.
    val_fraction, test_fraction : float
        Shares of the images for the seeded patient-wise split's ``val`` and
        ``test`` parts (without a ``split`` column; defaults 0.1 and 0.2).
    seed : int
        Seed of that split (default 0).
    labels : sequence of str, optional
        The labels, in order: a subset of the label columns, or (``|``
        style) the allowed findings (default: every finding seen, sorted).
    image_column, labels_column, patient_column, split_column : str, optional
        Other names for the reserved columns ``image``, ``labels``,
        ``patient`` and ``split``.
    sex_column, age_column, view_column, study_column, follow_up_column : str, optional
        Other names for the reserved columns ``sex``, ``age``, ``view``,
        ``study`` and ``follow_up``.

    Raises
    ------
    DatasetError
        The CSV is missing or malformed (the message names the file, the
        column and the line).
    """

    kind = "csv"
    title = "Plain CSV"
    url = ""
    looks_for = (DEFAULT_CSV,)

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
        image_column: str | None = None,
        labels_column: str | None = None,
        patient_column: str | None = None,
        split_column: str | None = None,
        sex_column: str | None = None,
        age_column: str | None = None,
        view_column: str | None = None,
        study_column: str | None = None,
        follow_up_column: str | None = None,
    ):
        root = Path(root)
        path = root / DEFAULT_CSV if root.is_dir() else root
        if not path.is_file():
            raise DatasetError(
                f"{path}: CSV file not found" + (f" (looked for {DEFAULT_CSV} in the folder)" if root.is_dir() else "")
            )
        given = {
            "image": image_column,
            "labels": labels_column,
            "patient": patient_column,
            "split": split_column,
            "sex": sex_column,
            "age": age_column,
            "view": view_column,
            "study": study_column,
            "follow_up": follow_up_column,
        }
        col = {role: given[role] or default for role, default in RESERVED.items()}
        df = read_table(path, "dataset CSV")
        for role, name in given.items():
            if name and name not in df.columns:
                raise DatasetError(f"{path}: no column {name!r} (given as the {role} column); found {list(df.columns)}")
        if col["image"] not in df.columns:
            raise DatasetError(f"{path}: no image column {col['image']!r}; found {list(df.columns)}")
        has = {role: name in df.columns for role, name in col.items()}
        images = df[col["image"]].str.strip()
        blank = images == ""
        if blank.any():
            i = int(np.flatnonzero(blank.to_numpy())[0])
            raise DatasetError(
                f"{path}: column {col['image']!r}, line {csv_line(i)}: blank image ({int(blank.sum())} row(s))"
            )
        dup = images.duplicated()
        if dup.any():
            i = int(np.flatnonzero(dup.to_numpy())[0])
            raise DatasetError(
                f"{path}: column {col['image']!r}, line {csv_line(i)}: image {images.iloc[i]!r} "
                f"listed twice ({int(dup.sum())} duplicate(s))"
            )

        label_cols = [c for c in df.columns if c not in {col[r] for r in col if has[r]}]
        if has["labels"]:
            if label_cols:
                raise DatasetError(
                    f"{path}: both a {col['labels']!r} column and label columns {label_cols}; use one or the other"
                )
            label_names, codes = self._pipe_codes(df[col["labels"]], labels, path, col["labels"])
        else:
            if not label_cols:
                raise DatasetError(
                    f"{path}: no label columns (nor a {col['labels']!r} column); found {list(df.columns)}"
                )
            codes = codes_from_cells(df, label_cols, path)
            label_names = tuple(label_cols)
        n = len(df)
        if has["patient"]:
            patient = df[col["patient"]].str.strip()
            if (patient == "").any():
                i = int(np.flatnonzero((patient == "").to_numpy())[0])
                raise DatasetError(f"{path}: column {col['patient']!r}, line {csv_line(i)}: blank patient id")
            patient = patient.to_numpy(object)
        else:
            patient = images.to_numpy(object)
            warnings.warn(
                f"{path}: no {col['patient']!r} column: each image is taken as its own patient, so one "
                "patient's images may be in two splits",
                NoPatientColumnWarning,
                stacklevel=3,
            )
        view = normalise_view(df[col["view"]]) if has["view"] else np.array(["UNKNOWN"] * n, object)
        base = path.parent
        paths = [Path(p) if Path(p).is_absolute() else base / p for p in images]
        frame = pd.DataFrame(
            {
                "path": [str(p) for p in paths],
                "present": [p.is_file() for p in paths],
                "patient": patient,
                "study": df[col["study"]].str.strip().to_numpy(object) if has["study"] else None,
                "split": "",
                "sex": normalise_sex(df[col["sex"]]) if has["sex"] else None,
                "age": normalise_age(df[col["age"]]) if has["age"] else np.nan,
                "view": view,
                "frontal": np.isin(view, FRONTAL_VIEWS) if has["view"] else np.ones(n, bool),
                "follow_up": self._follow_up(df[col["follow_up"]], path, col["follow_up"])
                if has["follow_up"]
                else np.nan,
            },
            index=pd.Index(images.to_numpy(object), name="name"),
        )[list(FRAME_COLUMNS)]
        if has["split"]:
            raw = df[col["split"]].str.strip()
            parts = raw.str.lower().map(SPLIT_VALUES)
            if parts.isna().any():
                i = int(np.flatnonzero(parts.isna().to_numpy())[0])
                raise DatasetError(
                    f"{path}: column {col['split']!r}, line {csv_line(i)}: split {raw.iloc[i]!r}; "
                    f"expected one of {sorted(SPLIT_VALUES)}"
                )
            frame["split"] = parts.to_numpy(object)
            groups = frame.groupby("patient")["split"].nunique()
            if has["patient"] and (groups > 1).any():
                raise DatasetError(
                    f"{path}: column {col['split']!r}: {int((groups > 1).sum())} patient(s) in more "
                    f"than one split, e.g. {groups.index[groups > 1][0]!r}"
                )
            note = f"official (column {col['split']!r} of {path.name})"
        else:
            self._assign_split(frame, work_dir, val_fraction, test_fraction, seed)
            note = None
        select = None if has["labels"] else (list(labels) if labels is not None else None)
        self._finish(
            path.parent,
            frame,
            codes,
            label_names,
            sources={"csv": path},
            frontal_only=frontal_only,
            select=select,
            strict=strict,
            warn=warn,
            official_split=has["split"],
            split_note=note,
        )
        self.csv_path = path

    @staticmethod
    def _follow_up(column: pd.Series, path: Path, name: str) -> np.ndarray:
        """The ``follow_up`` column as float (blank: NaN); a value that is not a whole number >= 0 names its line."""
        raw = column.str.strip()
        x = pd.to_numeric(raw, errors="coerce").to_numpy(np.float64)
        bad = (raw != "").to_numpy() & ~(np.isfinite(x) & (x >= 0) & (x == np.floor(np.nan_to_num(x))))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise DatasetError(
                f"{path}: column {name!r}, line {csv_line(i)}: follow-up {raw.iloc[i]!r} is not a whole number >= 0"
            )
        return x

    @staticmethod
    def _pipe_codes(column: pd.Series, labels, path: Path, name: str):
        tokens = [[t.strip() for t in str(v).split("|")] for v in column]
        tokens = [[t for t in row if t.lower() not in NO_FINDING] for row in tokens]
        seen = sorted({t for row in tokens for t in row})
        label_names = tuple(labels) if labels is not None else tuple(seen)
        index = {l: j for j, l in enumerate(label_names)}
        codes = np.full((len(tokens), len(label_names)), NEGATIVE, np.int8)
        for i, row in enumerate(tokens):
            for t in row:
                if t not in index:
                    raise DatasetError(
                        f"{path}: column {name!r}, line {csv_line(i)}: unknown finding {t!r}; "
                        f"the labels are {list(label_names)}"
                    )
                codes[i, index[t]] = POSITIVE
        return label_names, codes
