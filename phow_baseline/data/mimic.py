"""MIMIC-CXR-JPG (Johnson et al. 2019, PhysioNet): metadata, labels and official split, through the protocol.

Where to get it: https://physionet.org/content/mimic-cxr-jpg/ (credentialed
access: a PhysioNet account, the CITI training, the data use agreement).
The release folder (``physionet.org/files/mimic-cxr-jpg/2.0.0/``, or 2.1.0)::

    mimic-cxr-2.0.0-metadata.csv.gz   dicom_id, subject_id, study_id, ViewPosition, StudyDate, ...
    mimic-cxr-2.0.0-chexpert.csv.gz   subject_id, study_id, then 14 labels (CheXpert labeler)
    mimic-cxr-2.0.0-negbio.csv.gz     the same from NegBio
    mimic-cxr-2.0.0-split.csv.gz      dicom_id, study_id, subject_id, split (train / validate / test)
    files/p10/p10000032/s50414267/02aa804e-bde0afdd-112c0b34-7bc16630-4e384014.jpg ...

Images live at ``files/p<first 2 digits of subject>/p<subject_id>/s<study_id>/<dicom_id>.jpg``;
an image's name is its ``dicom_id``.  The quirks the adapter reads as
documented:

* the CSVs are gzipped (plain ``.csv`` accepted too);
* labels are per *study* (``subject_id``, ``study_id``): every image of a
  study gets its study's row; ``1.0``/``0.0``/``-1.0``/blank as CheXpert,
  with the same ``No Finding`` rule (:mod:`.chexpert`); images of a study
  without a label row are left out (counted in ``dropped``);
* ``ViewPosition`` is PA, AP, LATERAL, LL, AP AXIAL, PA LLD, ..., or blank;
  frontal only (PA, AP) by default, a blank view is not known to be frontal;
* ``split`` says ``validate`` for the validation part (read as ``val``);
* sex and age are not in MIMIC-CXR-JPG: with MIMIC-IV's ``patients.csv.gz``
  (``subject_id, gender, anchor_age, anchor_year``) in the folder, sex is
  ``gender`` and age ``anchor_age + (study year - anchor_year)`` (both
  dates are shifted alike by the de-identification);
* the ``follow_up`` column is the study's rank among its subject's studies
  by ``StudyDate`` (then ``StudyTime``; 0: the first), counted over every
  study of the metadata file, labelled or not; NaN for a subject with a
  study of unknown date, and for all without a ``StudyDate`` column.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ._tables import codes_from_cells, find_file, read_table, scan_files
from .chexpert import apply_no_finding_rule
from .protocol import (
    FRAME_COLUMNS,
    ChestDataset,
    DatasetError,
    normalise_age,
    normalise_sex,
    normalise_view,
    register_dataset,
    study_order,
)

VERSIONS = ("2.0.0", "2.1.0")
METADATA_FILES = tuple(f"mimic-cxr-{v}-metadata.csv{z}" for v in VERSIONS for z in (".gz", ""))
SPLIT_FILES = tuple(f"mimic-cxr-{v}-split.csv{z}" for v in VERSIONS for z in (".gz", ""))
#: labeler -> its label files.
LABEL_FILES = {
    lab: tuple(f"mimic-cxr-{v}-{lab}.csv{z}" for v in VERSIONS for z in (".gz", "")) for lab in ("chexpert", "negbio")
}
#: MIMIC-IV's patients table (optional: sex and age).
PATIENT_FILES = ("patients.csv.gz", "patients.csv", "hosp/patients.csv.gz", "hosp/patients.csv")
#: The ``split`` column's values -> the protocol's parts.
SPLIT_VALUES = {"train": "train", "validate": "val", "test": "test"}
#: ``ViewPosition`` spellings beyond :data:`~.protocol.VIEW_SPELLINGS`: the
#: oblique and decubitus views are OTHER.
MIMIC_VIEWS = {
    "AP AXIAL": "OTHER",
    "PA LLD": "OTHER",
    "AP LLD": "OTHER",
    "AP RLD": "OTHER",
    "PA RLD": "OTHER",
    "LAO": "OTHER",
    "RAO": "OTHER",
    "SWIMMERS": "OTHER",
    "LPO": "OTHER",
}
_KEYS = ("subject_id", "study_id")


def image_relpath(subject_id, study_id, dicom_id) -> str:
    """Where one image lives below the release folder.

    Parameters
    ----------
    subject_id, study_id : int
        The subject's and the study's ids (8 digits in the release).
    dicom_id : str
        The image's ``dicom_id``.

    Returns
    -------
    str
        ``files/p<first two digits>/p<subject_id>/s<study_id>/<dicom_id>.jpg``.
    """
    s = str(subject_id)
    return f"files/p{s[:2]}/p{s}/s{study_id}/{dicom_id}.jpg"


def _ints(df: pd.DataFrame, col: str, path: Path) -> np.ndarray:
    v = pd.to_numeric(df[col].str.strip(), errors="coerce")
    if v.isna().any():
        i = int(np.flatnonzero(v.isna().to_numpy())[0])
        raise DatasetError(f"{path}: column {col!r}, line {i + 2}: {df[col].iloc[i]!r} is not an integer id")
    return v.to_numpy(np.int64)


@register_dataset
class MimicCXR(ChestDataset):
    """A MIMIC-CXR-JPG folder through the dataset protocol (see the module docstring).

    Parameters
    ----------
    root : path
        The release folder (holding the CSVs and ``files/``).
    work_dir : path, optional
        Unused (the split is official).
    strict, warn : bool
        Missing images: raise, or warn with counts.
    frontal_only : bool
        Keep PA and AP images only (default).
    val_fraction, test_fraction : float
        Unused (the split is official).
    seed : int
        Unused (the split is official).
    labels : sequence of str, optional
        A subset of the labeler's 14 labels, in the order wanted.
    labeler : {"chexpert", "negbio"}
        Whose labels to read.
    no_finding_negatives : bool
        Read the blank cells of a ``No Finding`` study as negatives (see :mod:`.chexpert`).
    """

    kind = "mimic"
    title = "MIMIC-CXR-JPG"
    url = "https://physionet.org/content/mimic-cxr-jpg/"
    looks_for = METADATA_FILES[:2]

    @classmethod
    def detect(cls, folder) -> Path | None:
        """``folder`` when it holds a MIMIC-CXR-JPG metadata file (:data:`METADATA_FILES`).

        Parameters
        ----------
        folder : path
            A folder that may hold MIMIC-CXR-JPG.

        Returns
        -------
        Path or None
            ``folder``, or None.
        """
        folder = Path(folder)
        return folder if any((folder / n).is_file() for n in METADATA_FILES) else None

    def __init__(
        self,
        root,
        *,
        work_dir=None,
        strict: bool = False,
        warn: bool = True,
        frontal_only: bool = True,
        val_fraction=None,
        test_fraction=None,
        seed=None,
        labels: Sequence[str] | None = None,
        labeler: str = "chexpert",
        no_finding_negatives: bool = True,
    ):
        root = Path(root)
        if not root.is_dir():
            raise DatasetError(f"{root}: dataset folder not found")
        if labeler not in LABEL_FILES:
            raise ValueError(f"labeler={labeler!r}: choose one of {sorted(LABEL_FILES)}")
        meta_p = find_file(root, METADATA_FILES, "MIMIC-CXR-JPG metadata")
        split_p = find_file(root, SPLIT_FILES, "MIMIC-CXR-JPG split file")
        lab_p = find_file(root, LABEL_FILES[labeler], f"MIMIC-CXR-JPG {labeler} label file")
        pat_p = find_file(root, PATIENT_FILES, "MIMIC-IV patients table", required=False)
        sources = {"metadata": meta_p, "split": split_p, "labels": lab_p}

        meta = read_table(meta_p, "metadata", required=("dicom_id", *_KEYS, "ViewPosition"))
        meta["subject_id"], meta["study_id"] = _ints(meta, "subject_id", meta_p), _ints(meta, "study_id", meta_p)
        meta["dicom_id"] = meta["dicom_id"].str.strip()
        dup = meta["dicom_id"].duplicated()
        if dup.any():
            raise DatasetError(
                f"{meta_p}: column 'dicom_id': {int(dup.sum())} duplicated id(s), e.g. {meta['dicom_id'][dup].iloc[0]}"
            )

        split = read_table(split_p, "split file", required=("dicom_id", "split"))
        split_of = dict(zip(split["dicom_id"].str.strip(), split["split"].str.strip()))
        unknown = sorted(set(split_of.values()) - set(SPLIT_VALUES))
        if unknown:
            raise DatasetError(f"{split_p}: column 'split': unknown value(s) {unknown}; expected {list(SPLIT_VALUES)}")
        no_split = ~meta["dicom_id"].isin(split_of.keys())
        if no_split.any():
            raise DatasetError(
                f"{split_p}: {int(no_split.sum())} image(s) of {meta_p.name} have no split row, "
                f"e.g. {meta['dicom_id'][no_split].iloc[0]}"
            )

        lab = read_table(lab_p, f"{labeler} label file", required=_KEYS)
        lab["subject_id"], lab["study_id"] = _ints(lab, "subject_id", lab_p), _ints(lab, "study_id", lab_p)
        cols = [c for c in lab.columns if c not in _KEYS]
        if not cols:
            raise DatasetError(f"{lab_p}: no label columns after {list(_KEYS)}")
        if lab.duplicated(list(_KEYS)).any():
            raise DatasetError(f"{lab_p}: {int(lab.duplicated(list(_KEYS)).sum())} study row(s) listed twice")
        study_codes = codes_from_cells(lab, cols, lab_p)
        if no_finding_negatives:
            apply_no_finding_rule(study_codes, cols)
        if "StudyDate" in meta.columns:  # ranked before unlabelled studies are left out
            when = meta["StudyDate"].str.strip()
            if "StudyTime" in meta.columns:
                t = pd.to_numeric(meta["StudyTime"].str.strip(), errors="coerce")  # HHMMSS.fff, leading 0s dropped
                when = when.where(when == "", when + " " + t.map(lambda v: "" if pd.isna(v) else f"{v:010.3f}"))
            meta["follow_up"] = study_order(meta["subject_id"], meta["study_id"], when.to_numpy(object))
        else:
            meta["follow_up"] = np.nan
        study_row = pd.Series(np.arange(len(lab)), index=pd.MultiIndex.from_frame(lab[list(_KEYS)]))
        key = pd.MultiIndex.from_frame(meta[list(_KEYS)])
        row = study_row.reindex(key).to_numpy()
        has = ~np.isnan(row)
        dropped = {}
        if (~has).any():
            dropped["study without a label row"] = int((~has).sum())
        meta = meta.loc[has].reset_index(drop=True)
        codes = study_codes[row[has].astype(np.int64)]

        sex = np.array([None] * len(meta), object)
        age = np.full(len(meta), np.nan)
        if pat_p is not None:
            sources["patients"] = pat_p
            pat = read_table(
                pat_p, "MIMIC-IV patients table", required=("subject_id", "gender", "anchor_age", "anchor_year")
            )
            pat = pat.set_index(pd.Index(_ints(pat, "subject_id", pat_p)))
            p = pat.reindex(meta["subject_id"].to_numpy())
            sex = normalise_sex(p["gender"].to_numpy(object))
            year = pd.to_numeric(meta.get("StudyDate", pd.Series([""] * len(meta))).str[:4], errors="coerce")
            a = pd.to_numeric(p["anchor_age"], errors="coerce").to_numpy() + (
                year.to_numpy() - pd.to_numeric(p["anchor_year"], errors="coerce").to_numpy()
            )
            age = normalise_age(a)

        on_disk = scan_files(root / "files", (".jpg", ".jpeg"))
        rel = [image_relpath(s, t, d) for s, t, d in zip(meta["subject_id"], meta["study_id"], meta["dicom_id"])]
        view = normalise_view(meta["ViewPosition"], MIMIC_VIEWS)
        frame = pd.DataFrame(
            {
                "path": [str(root / r) for r in rel],
                "present": [r[len("files/") :] in on_disk for r in rel],
                "patient": meta["subject_id"].to_numpy(np.int64),
                "study": meta["study_id"].to_numpy(np.int64),
                "split": [SPLIT_VALUES[split_of[d]] for d in meta["dicom_id"]],
                "sex": sex,
                "age": age,
                "view": view,
                "frontal": np.isin(view, ("PA", "AP")),
                "follow_up": meta["follow_up"].to_numpy(np.float64),
            },
            index=pd.Index(meta["dicom_id"].to_numpy(object), name="name"),
        )[list(FRAME_COLUMNS)]
        parts = frame.groupby("patient")["split"].nunique()
        if (parts > 1).any():
            raise DatasetError(
                f"{split_p}: {int((parts > 1).sum())} patient(s) in more than one split, "
                f"e.g. subject_id {parts.index[parts > 1][0]}"
            )
        self._finish(
            root,
            frame,
            codes,
            cols,
            sources=sources,
            frontal_only=frontal_only,
            select=labels,
            strict=strict,
            warn=warn,
            dropped=dropped,
            official_split=True,
            split_note=f"official ({split_p.name}: train / validate / test)",
        )
