"""CheXpert (Irvin et al. 2019, Stanford): the ``train.csv`` / ``valid.csv`` layout, read through the protocol.

Where to get it: https://stanfordmlgroup.github.io/competitions/chexpert/
(the "small" 11 GB release, ``CheXpert-v1.0-small``, or the full one,
``CheXpert-v1.0``, from Stanford AIMI).  Unzipped::

    CheXpert-v1.0-small/
        train.csv, valid.csv
        train/patient00001/study1/view1_frontal.jpg ...
        valid/patient64541/study1/view1_frontal.jpg ...

Each CSV has the columns ``Path, Sex, Age, Frontal/Lateral, AP/PA`` and then
the 14 observations (``No Finding`` ... ``Support Devices``).  The quirks the
adapter reads as documented:

* ``Path`` starts with the release folder (``CheXpert-v1.0-small/train/...``):
  it is relative to the folder *above* the dataset folder.  The adapter
  drops that first part (whatever the folder was renamed to), so the image
  name is ``train/patient00001/study1/view1_frontal.jpg`` for both releases.
* Labels in ``train.csv`` are ``1.0``, ``0.0``, ``-1.0`` (uncertain) or blank
  (not mentioned); ``valid.csv`` (labelled by radiologists) has only ``1.0``
  and ``0.0``.
* ``No Finding`` is ``1.0`` only when no pathology is positive or uncertain
  (Irvin et al. 2019), so the blank cells of such a row are negatives; the
  adapter writes them so (``no_finding_negatives``), except ``Support
  Devices``, which is not a pathology (torchxrayvision applies the same rule).
* Laterals: ``Frontal/Lateral`` is ``Lateral`` and ``AP/PA`` blank, ``LL`` or
  ``RL``.  Frontal only by default (the classical baseline is trained on
  frontal images).
* ``Sex`` is ``Male``/``Female``/``Unknown``.
* ``studyN`` in ``Path`` is the patient's N-th study: the ``follow_up``
  column is N - 1.

Splits: ``valid.csv`` is the ``test`` split (the radiologist-labelled set
the CheXpert competition reported on until its hidden test set; 200 patients,
none in ``train.csv``); ``train.csv`` is carved patient-wise into ``train``
and ``val`` with a seeded split kept in the work folder.  The 500-study
test set released later (github.com/rajpurkarlab/cheXpert-test-set-labels)
is labelled per study and is not read here.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ._tables import codes_from_cells, csv_line, read_table, scan_files
from .protocol import (
    DEFAULT_SEED,
    DEFAULT_VAL_FRACTION,
    FRAME_COLUMNS,
    FRONTAL_VIEWS,
    NEGATIVE,
    NOT_MENTIONED,
    POSITIVE,
    ChestDataset,
    DatasetError,
    normalise_age,
    normalise_sex,
    normalise_view,
    register_dataset,
)

#: The 14 observations, in the column order of ``train.csv``.
CHEXPERT_LABELS = (
    "No Finding",
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Opacity",
    "Lung Lesion",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
)
META_COLUMNS = ("Path", "Sex", "Age", "Frontal/Lateral", "AP/PA")
TRAIN_CSV = "train.csv"
VALID_CSV = "valid.csv"
#: Names of the release folder (the first part of ``Path``).
RELEASE_FOLDERS = ("CheXpert-v1.0-small", "CheXpert-v1.0")
#: Labels a ``No Finding`` row does not make negative.
NOT_PATHOLOGIES = ("No Finding", "Support Devices")
_PATIENT_RE = re.compile(r"(?:^|/)(patient\d+)/(study\d+)/[^/]+$")


def _is_chexpert_csv(path: Path) -> bool:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            head = fh.readline()
    except OSError:
        return False
    return "Frontal/Lateral" in head and head.startswith("Path")


def chexpert_view(frontal_lateral: Sequence[str], ap_pa: Sequence[str]) -> np.ndarray:
    """Normalised views from CheXpert's ``Frontal/Lateral`` and ``AP/PA`` columns.

    Parameters
    ----------
    frontal_lateral, ap_pa : sequence of str, shape (n,)
        The two columns' cells (``"Frontal"``/``"Lateral"``; ``"AP"``,
        ``"PA"``, ``"LL"``, blank...).

    Returns
    -------
    ndarray of object, shape (n,)
        ``LATERAL`` for a lateral; for a frontal, ``PA``/``AP`` (``FRONTAL``
        when ``AP/PA`` is blank); ``UNKNOWN`` otherwise.
    """
    out = []
    for fl, ap in zip(frontal_lateral, ap_pa):
        fl = str(fl).strip().lower()
        if fl == "lateral":
            out.append("LATERAL")
        elif fl == "frontal":
            v = normalise_view([ap])[0]
            out.append("FRONTAL" if v == "UNKNOWN" else v)
        else:
            out.append("UNKNOWN")
    return np.array(out, object)


def apply_no_finding_rule(codes: np.ndarray, labels: Sequence[str]) -> np.ndarray:
    """Make the blank cells of every ``No Finding`` row negative, in place (not those of :data:`NOT_PATHOLOGIES`).

    Parameters
    ----------
    codes : ndarray of int8, shape (n_images, n_labels)
        Label codes (:data:`~.protocol.POSITIVE` ... :data:`~.protocol.NOT_MENTIONED`),
        modified in place.
    labels : sequence of str
        The column names; nothing changes without a ``No Finding`` column.

    Returns
    -------
    ndarray of int8, shape (n_images, n_labels)
        ``codes`` itself.
    """
    labels = list(labels)
    if "No Finding" not in labels:
        return codes
    nf = codes[:, labels.index("No Finding")] == POSITIVE
    for j, c in enumerate(labels):
        if c not in NOT_PATHOLOGIES:
            codes[nf & (codes[:, j] == NOT_MENTIONED), j] = NEGATIVE
    return codes


@register_dataset
class CheXpert(ChestDataset):
    """A CheXpert folder through the dataset protocol (see the module docstring for the layout and rules).

    Parameters
    ----------
    root : path
        The folder holding ``train.csv`` and ``valid.csv`` (or its parent,
        holding ``CheXpert-v1.0-small/`` or ``CheXpert-v1.0/``).
    work_dir : path, optional
        Where the seeded train/val split is kept (not written when None).
    strict : bool
        Raise if a listed image is missing, instead of warning with counts.
    warn : bool
        Warn about missing images.
    frontal_only : bool
        Keep frontal images only (default).
    val_fraction : float
        Share of ``train.csv``'s images carved out, patient-wise, for
        validation (default 0.1).
    test_fraction : float, optional
        Unused (``valid.csv`` is the test split).
    seed : int
        Seed of the validation carve (default 0).
    labels : sequence of str, optional
        A subset of the 14 observations, in the order wanted.
    train_csv, valid_csv : str
        File names (e.g. ``train_cheXbert.csv`` for the AIMI release's CheXbert labels).
    no_finding_negatives : bool
        Read the blank cells of a ``No Finding`` row as negatives.
    """

    kind = "chexpert"
    title = "CheXpert"
    url = "https://stanfordmlgroup.github.io/competitions/chexpert/"
    looks_for = (TRAIN_CSV, VALID_CSV, *(f"{f}/{TRAIN_CSV}" for f in RELEASE_FOLDERS))

    @classmethod
    def detect(cls, folder) -> Path | None:
        """``folder``, or its ``CheXpert-v1.0[-small]`` subfolder, when it holds a CheXpert label CSV.

        Parameters
        ----------
        folder : path
            A folder that may hold CheXpert.

        Returns
        -------
        Path or None
            The folder holding ``train.csv``/``valid.csv``, or None.
        """
        folder = Path(folder)
        for cand in (folder, *(folder / f for f in RELEASE_FOLDERS)):
            if any(_is_chexpert_csv(cand / n) for n in (TRAIN_CSV, VALID_CSV)):
                return cand
        return None

    def __init__(
        self,
        root,
        *,
        work_dir=None,
        strict: bool = False,
        warn: bool = True,
        frontal_only: bool = True,
        val_fraction: float = DEFAULT_VAL_FRACTION,
        test_fraction=None,
        seed: int = DEFAULT_SEED,
        labels: Sequence[str] | None = None,
        train_csv: str = TRAIN_CSV,
        valid_csv: str = VALID_CSV,
        no_finding_negatives: bool = True,
    ):
        root = Path(root)
        if not root.is_dir():
            raise DatasetError(f"{root}: dataset folder not found")
        root = type(self).detect(root) or root
        files = {"train": root / train_csv, "valid": root / valid_csv}
        if not any(p.is_file() for p in files.values()):
            raise DatasetError(f"{root}: no CheXpert label file found (looked for {train_csv}, {valid_csv})")
        parts, sources, label_cols = [], {}, None
        for role, path in files.items():
            if not path.is_file():
                continue
            df = read_table(path, "CheXpert label file", required=META_COLUMNS)
            cols = [c for c in df.columns if c not in META_COLUMNS]
            if not cols:
                raise DatasetError(f"{path}: no label columns after {list(META_COLUMNS)}")
            if label_cols is not None and cols != label_cols:
                raise DatasetError(
                    f"{path}: label columns {cols} differ from those of {sources['train']}: {label_cols}"
                )
            label_cols = cols
            sources[role] = path
            parts.append(self._read_part(df, path, cols, "test" if role == "valid" else "train", no_finding_negatives))
        frame = pd.concat([p[0] for p in parts])
        codes = np.concatenate([p[1] for p in parts])
        if frame.index.has_duplicates:
            dup = frame.index[frame.index.duplicated()]
            raise DatasetError(
                f"{root}: {len(dup)} image path(s) listed twice across "
                f"{', '.join(p.name for p in sources.values())}, e.g. {list(dup[:3])}"
            )
        shared = set(frame.loc[frame["split"] == "train", "patient"]) & set(
            frame.loc[frame["split"] == "test", "patient"]
        )
        if shared:
            raise DatasetError(
                f"{root}: {len(shared)} patient(s) in both {train_csv} and {valid_csv}, e.g. {sorted(shared)[:3]}"
            )
        on_disk = {}
        for sub in sorted({n.split("/", 1)[0] for n in frame.index}):
            on_disk.update({f"{sub}/{k}": p for k, p in scan_files(root / sub, (".jpg", ".jpeg", ".png")).items()})
        frame["present"] = [n in on_disk for n in frame.index]
        frame["path"] = [str(root / n) for n in frame.index]
        is_train = (frame["split"] == "train").to_numpy()
        if is_train.any():
            self._assign_split(frame, work_dir, val_fraction, 0.0, seed, rows=is_train)
        carve = self.split_file or ("not written: no work folder" if is_train.any() else f"{train_csv} absent")
        self._finish(
            root,
            frame[list(FRAME_COLUMNS)],
            codes,
            label_cols,
            sources=sources,
            frontal_only=frontal_only,
            select=labels,
            strict=strict,
            warn=warn,
            official_split=False,
            split_note=f"test: {valid_csv} (official); train/val: a seeded patient-wise carve of {train_csv} ({carve})",
        )

    @staticmethod
    def _read_part(df: pd.DataFrame, path: Path, cols: list[str], split: str, no_finding_negatives: bool):
        names = []
        for i, p in enumerate(df["Path"].astype(str).str.strip()):
            rel = p.split("/", 1)[1] if "/" in p and p.split("/", 1)[0] not in ("train", "valid", "test") else p
            if not _PATIENT_RE.search(rel):
                raise DatasetError(
                    f"{path}: column 'Path', line {csv_line(i)}: {p!r} is not "
                    "<release>/<train|valid>/patientNNNNN/studyN/<view>.jpg"
                )
            names.append(rel)
        codes = codes_from_cells(df, cols, path)
        if no_finding_negatives:
            apply_no_finding_rule(codes, cols)
        m = [_PATIENT_RE.search(n) for n in names]
        view = chexpert_view(df["Frontal/Lateral"], df["AP/PA"])
        frame = pd.DataFrame(
            {
                "path": "",
                "present": False,
                "patient": [x.group(1) for x in m],
                "study": [f"{x.group(1)}/{x.group(2)}" for x in m],
                "split": split,
                "sex": normalise_sex(df["Sex"]),
                "age": normalise_age(pd.to_numeric(df["Age"], errors="coerce")),
                "view": view,
                "frontal": np.isin(view, FRONTAL_VIEWS),
                # studyN is the patient's N-th study: follow-up N - 1
                "follow_up": [float(int(x.group(2)[len("study") :]) - 1) for x in m],
            },
            index=pd.Index(names, name="name"),
        )
        return frame, codes
