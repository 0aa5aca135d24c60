"""The dataset protocol: what the rest of the library reads from any chest X-ray dataset.

Every dataset kind (ChestX-ray14, CheXpert, MIMIC-CXR-JPG, PadChest, a plain
CSV) is read by an adapter into the same shape, a :class:`ChestDataset`:

* ``kind`` (its registered name), ``root`` (its folder), ``labels`` (the
  label names, a tuple) and ``frame``: one row per image, indexed by the
  image *name* (the publisher's own key: the file name for ChestX-ray14, the
  path below the dataset folder for CheXpert, the ``dicom_id`` for MIMIC, the
  ``ImageID`` for PadChest, the image column for a CSV), with the columns
  ``path``, ``present``, ``patient``, ``study``, ``split``, ``sex``, ``age``,
  ``view``, ``frontal`` and ``follow_up``;
* ``codes``: an ``int8`` label matrix ``(n_images, n_labels)`` that keeps
  what the dataset says apart: :data:`POSITIVE` (1), :data:`NEGATIVE` (0),
  :data:`UNCERTAIN` (-1) and :data:`NOT_MENTIONED` (-2, CheXpert's and
  MIMIC's blank cells);
* a :class:`LabelPolicy` turns codes into training targets and a mask
  (Irvin et al. 2019, the CheXpert paper, names the uncertainty policies
  U-Ignore, U-Zeros and U-Ones);
* splits ``train``/``val``/``test`` (and ``train_val``, ``all``): the
  publisher's where there is one, else a seeded patient-wise split written
  to the work folder as a small JSON file and read back on the next call;
* subgroup columns in one normalised form: ``sex`` in ``{"M", "F"}``
  (missing, ``pd.isna``, when unknown), ``age`` in years (float, NaN when unknown or outside
  0-120), ``view`` in :data:`VIEWS`, ``follow_up`` the rank of the image's
  study among its patient's studies (0: the first; float, NaN when the
  dataset does not say: ChestX-ray14's ``Follow-up #``, CheXpert's study
  number - 1, MIMIC's study order by ``StudyDate``, a CSV's optional
  ``follow_up`` column, NaN for PadChest);
* optional boxes (only ChestX-ray14 has them).

:func:`open_dataset` opens a folder, detecting its kind where the files say
it unambiguously; :data:`DATASETS` is the registry of kinds
(:func:`register_dataset`, :func:`get_dataset`).

One concept at this length: the dataset protocol (codes, policy, splits,
subgroups and the registry of kinds).
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd

# --------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------


class DatasetError(ValueError):
    """A dataset file is missing or malformed; the message names the file and the problem."""


class MissingImagesWarning(UserWarning):
    """Some images listed in the metadata are not on disk (the message has counts per split)."""


# --------------------------------------------------------------------------
# Label codes and the policy that turns them into targets
# --------------------------------------------------------------------------

#: The finding is present (CheXpert ``1.0``).
POSITIVE = 1
#: The finding is absent (CheXpert ``0.0``; for ChestX-ray14 and PadChest,
#: whose labels list positives only, every finding not listed).
NEGATIVE = 0
#: The report is uncertain (CheXpert and MIMIC ``-1.0``).
UNCERTAIN = -1
#: The report does not mention the finding (CheXpert and MIMIC blank cells).
NOT_MENTIONED = -2
CODE_NAMES = {POSITIVE: "positive", NEGATIVE: "negative", UNCERTAIN: "uncertain", NOT_MENTIONED: "not mentioned"}

#: What an uncertain label becomes: ``"zeros"`` (U-Zeros: negative),
#: ``"ones"`` (U-Ones: positive), ``"ignore"`` (U-Ignore: masked out), as
#: named by Irvin et al. 2019 (CheXpert, AAAI), section "Uncertainty approaches".
UNCERTAIN_POLICIES = ("zeros", "ones", "ignore")
#: What a not-mentioned label becomes: ``"negative"`` (the CheXpert paper's
#: training treats blanks as negatives) or ``"ignore"`` (masked out).
NOT_MENTIONED_POLICIES = ("negative", "ignore")


@dataclass(frozen=True)
class LabelPolicy:
    """How the label codes become training (or scoring) targets.

    Parameters
    ----------
    uncertain : {"zeros", "ones", "ignore"}
        U-Zeros, U-Ones or U-Ignore (Irvin et al. 2019).
    not_mentioned : {"negative", "ignore"}
        A blank cell is a negative, or is masked out.

    Raises
    ------
    ValueError
        A policy name not in :data:`UNCERTAIN_POLICIES` or
        :data:`NOT_MENTIONED_POLICIES`.

    Notes
    -----
    Positive stays 1 and negative 0 under every policy.
    """

    uncertain: str = "zeros"
    not_mentioned: str = "negative"

    def __post_init__(self):
        if self.uncertain not in UNCERTAIN_POLICIES:
            raise ValueError(f"uncertain={self.uncertain!r}: choose one of {UNCERTAIN_POLICIES}")
        if self.not_mentioned not in NOT_MENTIONED_POLICIES:
            raise ValueError(f"not_mentioned={self.not_mentioned!r}: choose one of {NOT_MENTIONED_POLICIES}")

    def apply(self, codes) -> tuple[np.ndarray, np.ndarray]:
        """Targets and mask of a code matrix.

        Parameters
        ----------
        codes : array-like of int, shape (n_images, n_labels)
            Values in {1, 0, -1, -2} (:data:`POSITIVE` ... :data:`NOT_MENTIONED`).

        Returns
        -------
        targets : ndarray of uint8, shape (n_images, n_labels)
            1 or 0 (0 where masked out).
        mask : ndarray of bool, shape (n_images, n_labels)
            False where the policy says to ignore the label.
        """
        codes = np.asarray(codes)
        bad = ~np.isin(codes, list(CODE_NAMES))
        if bad.any():
            raise ValueError(f"label codes must be in {sorted(CODE_NAMES)}; found {sorted(set(codes[bad].tolist()))}")
        targets = (codes == POSITIVE) | ((codes == UNCERTAIN) & (self.uncertain == "ones"))
        mask = np.ones(codes.shape, bool)
        if self.uncertain == "ignore":
            mask &= codes != UNCERTAIN
        if self.not_mentioned == "ignore":
            mask &= codes != NOT_MENTIONED
        return targets.astype(np.uint8), mask

    def to_dict(self) -> dict:
        """The policy as JSON-ready values.

        Returns
        -------
        dict
            ``{"uncertain": ..., "not_mentioned": ...}`` (for ``model.json``).
        """
        return {"uncertain": self.uncertain, "not_mentioned": self.not_mentioned}

    @classmethod
    def from_dict(cls, d: Mapping) -> LabelPolicy:
        """The policy recorded by :meth:`to_dict`.

        Parameters
        ----------
        d : mapping
            Missing keys take the :data:`TRAINING_POLICY` values.

        Returns
        -------
        LabelPolicy
            The policy (validated).
        """
        return cls(uncertain=d.get("uncertain", "zeros"), not_mentioned=d.get("not_mentioned", "negative"))


#: Training default: U-Zeros, blanks negative (Irvin et al. 2019's baseline
#: treatment; ChestX-ray14 and PadChest have neither, so it changes nothing there).
TRAINING_POLICY = LabelPolicy("zeros", "negative")
#: Scoring default: uncertain labels are left out of a class's ROC, blanks
#: are negatives (MIMIC's test split has uncertain labels; CheXpert's
#: radiologist-labelled valid set has none).
EVALUATION_POLICY = LabelPolicy("ignore", "negative")


# --------------------------------------------------------------------------
# Subgroup columns
# --------------------------------------------------------------------------

#: Normalised views.  ``AP_SUPINE``: PadChest's ``AP_horizontal`` (supine,
#: horizontal beam); ``FRONTAL``: frontal with the projection not recorded.
VIEWS = ("PA", "AP", "AP_SUPINE", "FRONTAL", "LATERAL", "OTHER", "UNKNOWN")
#: Views the frontal-only filter keeps.
FRONTAL_VIEWS = ("PA", "AP", "AP_SUPINE", "FRONTAL")
#: Spellings of the publishers (upper-cased, stripped) mapped onto :data:`VIEWS`;
#: anything else non-empty is ``OTHER``, empty is ``UNKNOWN``.
VIEW_SPELLINGS = {
    "PA": "PA",
    "AP": "AP",
    "AP_HORIZONTAL": "AP_SUPINE",
    "AP SUPINE": "AP_SUPINE",
    "AP_SUPINE": "AP_SUPINE",
    "FRONTAL": "FRONTAL",
    "LATERAL": "LATERAL",
    "L": "LATERAL",
    "LL": "LATERAL",
    "RL": "LATERAL",
    "XTABLE LATERAL": "LATERAL",
    "UNK": "UNKNOWN",
    "UNKNOWN": "UNKNOWN",
}
#: Ages outside this range (years) are read as unknown: ChestX-ray14's 2017
#: metadata (``Data_Entry_2017.csv``) holds a few ages above 140, typing
#: errors corrected in the v2020 file.
AGE_RANGE = (0.0, 120.0)
_AGE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([YMWD]?)\s*$", re.I)
_AGE_UNIT = {"": 1.0, "Y": 1.0, "M": 1 / 12, "W": 7 / 365.25, "D": 1 / 365.25}


def _blank(v) -> bool:
    return v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)) or (isinstance(v, str) and not v.strip())


def _per_unique(values: Iterable, fn, dtype=object) -> np.ndarray:
    """``fn`` applied to each distinct value once (metadata columns hold a handful of values in 10^5 rows)."""
    codes, uniq = pd.factorize(
        pd.Series(list(values) if not isinstance(values, pd.Series) else values, dtype=object), use_na_sentinel=True
    )
    table = np.array([fn(u) for u in uniq] + [fn(None)], dtype=dtype)  # code -1 (missing) -> the last entry
    return table[codes]


def normalise_sex(values: Iterable) -> np.ndarray:
    """``"M"``/``"F"`` from the publishers' spellings (M, Male, F, Female, any case); None otherwise.

    Parameters
    ----------
    values : iterable of str or None
        One value per image (a metadata column), length n.

    Returns
    -------
    ndarray of object, shape (n,)
        ``"M"``, ``"F"`` or None (unknown, ``O``, blank; NaN once in a DataFrame).
    """
    table = {"M": "M", "MALE": "M", "F": "F", "FEMALE": "F"}
    return _per_unique(values, lambda v: None if _blank(v) else table.get(str(v).strip().upper()))


def _age(v) -> float:
    if _blank(v):
        return np.nan
    if isinstance(v, (int, float, np.integer, np.floating)):
        a = float(v)
    else:
        m = _AGE_RE.match(str(v))
        if not m:
            return np.nan
        a = float(m.group(1)) * _AGE_UNIT[m.group(2).upper()]
    return a if AGE_RANGE[0] <= a <= AGE_RANGE[1] else np.nan


def normalise_age(values: Iterable) -> np.ndarray:
    """Ages in years (float) from numbers or DICOM age strings (``058Y``, ``006M``).

    Parameters
    ----------
    values : iterable of number or str
        One value per image, length n: years as numbers, or strings with
        an optional unit ``Y``, ``M`` (months), ``W`` (weeks) or ``D`` (days).

    Returns
    -------
    ndarray of float64, shape (n,)
        NaN where blank, unparseable or outside :data:`AGE_RANGE`.
    """
    return _per_unique(values, _age, dtype=np.float64)


def normalise_view(values: Iterable, spellings: Mapping[str, str] | None = None) -> np.ndarray:
    """Views in :data:`VIEWS` from the publishers' spellings (:data:`VIEW_SPELLINGS`).

    Parameters
    ----------
    values : iterable of str or None
        One value per image, length n (compared upper-cased, spaces
        collapsed).
    spellings : mapping, optional
        Extra spellings (upper-case keys) taking precedence over :data:`VIEW_SPELLINGS`.

    Returns
    -------
    ndarray of object, shape (n,)
        Names from :data:`VIEWS`: ``"UNKNOWN"`` for a blank value,
        ``"OTHER"`` for an unknown spelling.
    """
    table = {**VIEW_SPELLINGS, **(spellings or {})}

    def one(v):
        key = "" if _blank(v) else " ".join(str(v).strip().upper().split())
        return "UNKNOWN" if not key else table.get(key, "OTHER")

    return _per_unique(values, one)


def study_order(patients: Sequence, studies: Sequence, dates: Sequence) -> np.ndarray:
    """The rank of each image's study among its patient's studies, by date: the ``follow_up`` column.

    Parameters
    ----------
    patients, studies : sequence, shape (n_images,)
        The patient and the study of every image (any comparable values).
    dates : sequence, shape (n_images,)
        A sortable date of the study (e.g. ``"21800506"``, or ``"21800506 101500.000"`` with the
        time); blank or None when unknown.

    Returns
    -------
    ndarray of float64, shape (n_images,)
        0 for the images of the patient's earliest study, 1 for the next study, ...; studies on
        the same date are ordered by their id.  NaN for every image of a patient with a study of
        unknown date (its order cannot be told).
    """
    f = pd.DataFrame(
        {"patient": list(patients), "study": list(studies), "date": [None if _blank(d) else str(d) for d in dates]}
    )
    out = np.full(len(f), np.nan)
    if not len(f):
        return out
    unknown = f.groupby("patient")["date"].transform(lambda d: d.isna().any()).to_numpy(bool)
    known = f.loc[~unknown]
    if len(known):
        first = known.groupby(["patient", "study"], sort=False)["date"].min().reset_index()
        first = first.sort_values(["patient", "date", "study"], kind="mergesort")
        first["rank"] = first.groupby("patient").cumcount().astype(np.float64)
        rank = known.merge(first[["patient", "study", "rank"]], on=["patient", "study"], how="left")["rank"]
        out[~unknown] = rank.to_numpy(np.float64)
    return out


# --------------------------------------------------------------------------
# Splits
# --------------------------------------------------------------------------

#: Split names, as :class:`~phow_baseline.data.chestxray14.ChestXray14` has them.
SPLITS = ("train_val", "train", "val", "test", "all")
#: The parts an image belongs to (``train_val`` and ``all`` are unions).
PARTS = ("train", "val", "test")
#: Share of images held out per part when a dataset has no official split:
#: validation 10 % (as the ChestX-ray14 carve), test 20 % (a 70/10/20 split).
DEFAULT_VAL_FRACTION = 0.1
DEFAULT_TEST_FRACTION = 0.2
DEFAULT_SEED = 0
#: Version of the split file's content.
SPLIT_FILE_FORMAT = 1


def patient_split(
    patients: Sequence,
    val_fraction: float = DEFAULT_VAL_FRACTION,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    seed: int = DEFAULT_SEED,
) -> dict[str, str]:
    """A seeded patient-wise split: each patient goes whole to ``train``, ``val`` or ``test``.

    The unique patients (as strings, sorted) are shuffled by
    ``numpy.random.default_rng(seed)``; the first ones go to ``test`` until it
    holds ``round(test_fraction * n_images)`` images or more, the next ones
    to ``val`` likewise, the rest to ``train`` (the rule of
    :func:`~phow_baseline.data.chestxray14.patient_validation_split`).

    Parameters
    ----------
    patients : sequence, shape (n_images,)
        The patient of every image (any values; compared as strings).
    val_fraction, test_fraction : float
        Shares of images, each in [0, 1), together below 1 (defaults 0.1
        and 0.2: a 70/10/20 split).
    seed : int
        Seed of the patient shuffle.

    Returns
    -------
    dict
        patient (str) -> ``"train"``, ``"val"`` or ``"test"``.

    Raises
    ------
    ValueError
        Fractions out of range.
    """
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ValueError(
            f"val_fraction={val_fraction}, test_fraction={test_fraction}: each must be in [0, 1) and their sum below 1"
        )
    keys = np.array([str(p) for p in patients], dtype=object)
    uniq, counts = np.unique(keys.astype(str), return_counts=True)
    order = np.random.default_rng(seed).permutation(len(uniq))
    n_images = len(keys)

    def take(start: int, fraction: float) -> int:
        target = int(round(fraction * n_images))
        if target <= 0:
            return start
        cum = np.cumsum(counts[order[start:]])
        return min(start + int(np.searchsorted(cum, target)) + 1, len(uniq))

    end_test = take(0, test_fraction)
    end_val = take(end_test, val_fraction)
    out = {}
    for k, idx in enumerate(order.tolist()):
        out[str(uniq[idx])] = "test" if k < end_test else "val" if k < end_val else "train"
    return out


def split_file_name(kind: str, val_fraction: float, test_fraction: float, seed: int) -> str:
    """``split-<kind>-seed<seed>-val<v>-test<t>.json``: one file per set of split parameters.

    Parameters
    ----------
    kind : str
        The dataset kind.
    val_fraction, test_fraction : float
        Shares of images (written with ``%g``).
    seed : int
        The split's seed.

    Returns
    -------
    str
        The file name (inside the work folder).
    """
    return f"split-{kind}-seed{int(seed)}-val{val_fraction:g}-test{test_fraction:g}.json"


def load_or_make_split(
    work_dir,
    kind: str,
    patients: Sequence,
    val_fraction: float = DEFAULT_VAL_FRACTION,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    seed: int = DEFAULT_SEED,
) -> tuple[dict[str, str], Path | None]:
    """The patient-wise split of a dataset without an official one, kept on disk.

    The first call draws it with :func:`patient_split` and writes
    ``work_dir/<split_file_name(...)>`` (JSON: the parameters, the number of
    patients and a SHA-256 of their sorted ids, the ``val`` and ``test``
    patients; ``train`` is the rest); later calls read it back, so the split
    survives a change of this library's drawing rule.

    Parameters
    ----------
    work_dir : path or None
        Where the file lives; None draws the split without writing it.
    kind : str
        The dataset kind (part of the file name).
    patients : sequence, shape (n_images,)
        The patient of every listed image (not only those present on disk,
        so that downloading more images leaves the split as it is).
    val_fraction, test_fraction : float
        Shares of images for ``val`` and ``test`` (see :func:`patient_split`).
    seed : int
        Seed of the patient shuffle.

    Returns
    -------
    split : dict
        patient (str) -> part.
    path : Path or None
        The file read or written.

    Raises
    ------
    DatasetError
        If the file is unreadable or was made for other patients (the
        message names the file and says what to do).
    """
    from ..io import DataFileError, atomic_write_json, read_json, sha256_strings

    ids = sorted({str(p) for p in patients})
    digest = sha256_strings(ids)
    if work_dir is None:
        return patient_split(patients, val_fraction, test_fraction, seed), None
    path = Path(work_dir) / split_file_name(kind, val_fraction, test_fraction, seed)
    if path.exists():
        try:
            rec = read_json(path, what="split file")
        except DataFileError as exc:
            raise DatasetError(str(exc)) from None
        for key in ("kind", "n_patients", "patients_sha256", "val", "test"):
            if key not in rec:
                raise DatasetError(f"{path}: split file without {key!r}; delete it to draw the split again")
        if rec["kind"] != kind or rec["patients_sha256"] != digest:
            raise DatasetError(
                f"{path}: split file made for {rec['n_patients']} {rec['kind']} patient(s), but the "
                f"dataset lists {len(ids)} other ones (the metadata changed); delete the file to "
                "draw a new split, or use another work folder"
            )
        out = dict.fromkeys(ids, "train")
        for part in ("val", "test"):
            for p in rec[part]:
                out[str(p)] = part
        return out, path
    split = patient_split(patients, val_fraction, test_fraction, seed)
    rec = {
        "format": SPLIT_FILE_FORMAT,
        "kind": kind,
        "seed": int(seed),
        "val_fraction": float(val_fraction),
        "test_fraction": float(test_fraction),
        "n_patients": len(ids),
        "patients_sha256": digest,
        "drawn_by": "phow_baseline.data.protocol.patient_split",
        "val": sorted(p for p, s in split.items() if s == "val"),
        "test": sorted(p for p, s in split.items() if s == "test"),
    }
    Path(work_dir).mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, rec, indent=None)
    return split, path


# --------------------------------------------------------------------------
# The protocol
# --------------------------------------------------------------------------


@dataclass
class SplitCount:
    """Images of one split listed in the metadata and present on disk.

    Parameters
    ----------
    listed : int
        Images the metadata lists in the split.
    present : int
        Of those, images on disk.
    """

    listed: int
    present: int

    @property
    def missing(self) -> int:
        """Listed images not on disk.

        Returns
        -------
        int
            ``listed - present``.
        """
        return self.listed - self.present


#: Columns of :attr:`ChestDataset.frame` (indexed by the image name).
FRAME_COLUMNS = ("path", "present", "patient", "study", "split", "sex", "age", "view", "frontal", "follow_up")
#: The columns of :meth:`ChestDataset.subgroups` (what ``write_run_dir(metadata=...)`` reads).
SUBGROUP_COLUMNS = ("patient", "sex", "age", "view", "follow_up")
BOX_COLUMNS = ["Image Index", "label", "x", "y", "w", "h", "width", "height"]


class ChestDataset:
    """A chest X-ray dataset read into the protocol's shape (see the module docstring).

    Adapters subclass it, read their files in ``__init__``, and call
    :meth:`_finish` with the frame and the codes.

    Attributes
    ----------
    kind : str
        Registered name (``"chestxray14"``, ``"chexpert"``, ...).
    root : Path
        The dataset folder.
    labels : tuple of str
        Label names, in the order of the columns of :attr:`codes`.
    frame : DataFrame
        One row per listed image (after the frontal-only filter), indexed by
        name; columns :data:`FRAME_COLUMNS`.  ``split`` is one of
        :data:`PARTS`, or ``""`` for an image in no official list (only in
        ``"all"``; ChestX-ray14 metadata rows outside both lists).
    codes : ndarray of int8, shape (len(frame), len(labels))
        :data:`POSITIVE`, :data:`NEGATIVE`, :data:`UNCERTAIN`, :data:`NOT_MENTIONED`.
    dropped : dict
        Rows of the metadata left out, by reason (e.g. ``"lateral view"``).
    sources : dict
        The files read, by role.
    split_file : Path or None
        The seeded split read or written (datasets without an official split).
    official_split : bool
        Whether the splits are the publisher's.
    split_note : str
        Where the splits come from, in words.
    """

    kind: ClassVar[str] = ""
    title: ClassVar[str] = ""
    #: Where to get it.
    url: ClassVar[str] = ""
    #: The files whose presence identifies the kind (said when detection fails).
    looks_for: ClassVar[tuple[str, ...]] = ()

    root: Path
    labels: tuple[str, ...]
    frame: pd.DataFrame
    codes: np.ndarray
    split_file: Path | None = None

    # -- detection ---------------------------------------------------------
    @classmethod
    def detect(cls, folder) -> Path | None:
        """The dataset root if ``folder`` holds this kind (default: any of :attr:`looks_for` in it).

        Parameters
        ----------
        folder : path
            A folder that may hold a dataset.

        Returns
        -------
        Path or None
            The folder to open (it may be one inside ``folder``), or None.
        """
        folder = Path(folder)
        return folder if any((folder / n).is_file() for n in cls.looks_for) else None

    # -- construction helpers for adapters ---------------------------------
    def _assign_split(
        self, frame: pd.DataFrame, work_dir, val_fraction: float, test_fraction: float, seed: int, rows=None
    ) -> None:
        """Fill ``frame["split"]`` (for ``rows``, a boolean mask; default all) from the seeded patient split."""
        rows = np.ones(len(frame), bool) if rows is None else np.asarray(rows, bool)
        patients = frame["patient"].to_numpy()[rows]
        split, self.split_file = load_or_make_split(work_dir, self.kind, patients, val_fraction, test_fraction, seed)
        col = frame["split"].to_numpy(dtype=object).copy()
        col[rows] = [split[str(p)] for p in patients]
        frame["split"] = col

    def _finish(
        self,
        root,
        frame: pd.DataFrame,
        codes: np.ndarray,
        labels: Sequence[str],
        *,
        sources: Mapping,
        frontal_only: bool,
        select: Sequence[str] | None = None,
        strict: bool = False,
        warn: bool = True,
        dropped: Mapping[str, int] | None = None,
        official_split: bool = True,
        split_note: str | None = None,
    ) -> None:
        """Check and store what an adapter read: the frontal filter, the label selection, the missing images."""
        if "follow_up" not in frame.columns:  # an adapter that does not know the follow-up order
            frame = frame.assign(follow_up=np.nan)
        self.root = Path(root)
        self.sources = {k: Path(v) for k, v in sources.items()}
        self.official_split = official_split
        self.split_note = split_note or (
            "official"
            if official_split
            else f"seeded, patient-wise ({self.split_file or 'not written: no work folder'})"
        )
        self.dropped = dict(dropped or {})
        self.strict = strict
        missing_cols = [c for c in FRAME_COLUMNS if c not in frame.columns]
        if missing_cols:  # pragma: no cover - an adapter's bug, not the user's
            raise AssertionError(f"{type(self).__name__}: frame lacks {missing_cols}")
        if frame.index.has_duplicates:
            dup = frame.index[frame.index.duplicated()]
            raise DatasetError(f"{self.root}: {len(dup)} duplicated image name(s), e.g. {list(dup[:3])}")
        bad_split = ~frame["split"].isin(PARTS + ("",))
        if bad_split.any():  # pragma: no cover - adapters assign every row
            raise AssertionError(
                f"{type(self).__name__}: rows without a split, e.g. {list(frame.index[bad_split][:3])}"
            )
        codes = np.asarray(codes, np.int8)
        labels = tuple(labels)
        if select is not None:
            unknown = [l for l in select if l not in labels]
            if unknown:
                raise DatasetError(
                    f"{self.root}: unknown label(s) {unknown}; the {self.kind} labels are {list(labels)}"
                )
            idx = [labels.index(l) for l in select]
            codes, labels = codes[:, idx], tuple(select)
        if frontal_only:
            keep = frame["frontal"].to_numpy(bool)
            if (~keep).any():
                for view, n in frame.loc[~keep, "view"].value_counts().items():
                    self.dropped[f"view {view} (frontal_only)"] = int(n)
            frame, codes = frame.loc[keep], codes[keep]
        self.frame = frame.copy()
        self.codes = np.ascontiguousarray(codes)
        self.labels = labels
        self._row = pd.Series(np.arange(len(self.frame)), index=self.frame.index)
        self._present = self.frame["present"].to_numpy(bool)
        self._paths = self.frame["path"].to_numpy(object)
        self._check_missing(strict, warn)

    def _check_missing(self, strict: bool, warn: bool) -> None:
        if not (strict or warn):
            return
        c = self.counts()
        if c["all"].missing == 0:
            return
        parts = [f"{s}: {c[s].missing} of {c[s].listed} missing" for s in ("train_val", "test", "all")]
        msg = f"{self.root}: listed images not on disk ({'; '.join(parts)})"
        if strict:
            raise DatasetError(msg)
        if warn:
            warnings.warn(msg, MissingImagesWarning, stacklevel=4)

    # -- splits and images -------------------------------------------------
    def _in_split(self, split: str) -> np.ndarray:
        s = self.frame["split"].to_numpy(dtype=object)
        if split == "all":
            return np.ones(len(s), bool)
        if split == "train_val":
            return (s == "train") | (s == "val")
        if split in PARTS:
            return s == split
        raise ValueError(f"unknown split {split!r}; choose one of {SPLITS}")

    def split_names(self, split: str = "all", present_only: bool = True) -> list[str]:
        """Image names of ``split`` (one of :data:`SPLITS`), sorted; only those on disk unless told otherwise.

        Parameters
        ----------
        split : str, default="all"
            One of :data:`SPLITS`.
        present_only : bool, default=True
            Leave out images not on disk.

        Returns
        -------
        list of str
            Sorted names.

        Raises
        ------
        ValueError
            An unknown split.
        """
        sel = self._in_split(split)
        if present_only:
            sel &= self.frame["present"].to_numpy(bool)
        return sorted(self.frame.index[sel].tolist())

    def counts(self) -> dict[str, SplitCount]:
        """Listed and present images per split (after the frontal-only filter).

        Returns
        -------
        dict
            Split (:data:`SPLITS`) -> :class:`SplitCount`.
        """
        present = self.frame["present"].to_numpy(bool)
        out = {}
        for s in SPLITS:
            sel = self._in_split(s)
            out[s] = SplitCount(int(sel.sum()), int((sel & present).sum()))
        return out

    def missing(self, split: str = "all") -> list[str]:
        """Names listed in ``split`` whose image is not on disk.

        Parameters
        ----------
        split : str
            One of :data:`SPLITS`.

        Returns
        -------
        list of str
            Sorted names.
        """
        sel = self._in_split(split) & ~self.frame["present"].to_numpy(bool)
        return sorted(self.frame.index[sel].tolist())

    def rows(self, names: Sequence[str]) -> np.ndarray:
        """Row positions of ``names`` in :attr:`frame` (and :attr:`codes`).

        Parameters
        ----------
        names : sequence of str
            Image names of :attr:`frame`'s index.

        Returns
        -------
        ndarray of int64, shape (len(names),)
            0-based rows, in the order of ``names``.

        Raises
        ------
        KeyError
            Naming the unknown names and the dataset.
        """
        try:
            return self._row.loc[list(names)].to_numpy()
        except KeyError:
            unknown = [n for n in names if n not in self._row.index]
            raise KeyError(
                f"{len(unknown)} name(s) not in the {self.kind} dataset at {self.root}, e.g. {unknown[:3]}"
            ) from None

    def image_path(self, name: str) -> Path:
        """The file of image ``name``.

        Parameters
        ----------
        name : str
            An image name.

        Returns
        -------
        Path
            Its file (on disk).

        Raises
        ------
        KeyError
            Saying whether the image is unlisted or listed but not on disk.
        """
        i = self._row.get(name)
        if i is None:
            raise KeyError(f"{name}: image not listed in the {self.kind} dataset at {self.root}")
        if not self._present[i]:
            raise KeyError(f"{name}: image listed but not on disk under {self.root} (expected {self._paths[i]})")
        return Path(self._paths[i])

    # -- labels --------------------------------------------------------------
    def label_codes(self, names: Sequence[str]) -> np.ndarray:
        """The label codes of ``names``.

        Parameters
        ----------
        names : sequence of str
            Image names.

        Returns
        -------
        ndarray of int8, shape (len(names), len(labels))
            :data:`POSITIVE`, :data:`NEGATIVE`, :data:`UNCERTAIN`, :data:`NOT_MENTIONED`.
        """
        return self.codes[self.rows(names)]

    def targets(self, names: Sequence[str], policy: LabelPolicy | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Targets and mask of ``names`` under ``policy`` (default :data:`TRAINING_POLICY`).

        Parameters
        ----------
        names : sequence of str
            Image names.
        policy : LabelPolicy, optional
            How uncertain and not-mentioned codes count.

        Returns
        -------
        targets : ndarray of uint8, shape (len(names), len(labels))
            0/1 (0 where masked out).
        mask : ndarray of bool, shape (len(names), len(labels))
            False where the policy ignores the label (:meth:`LabelPolicy.apply`).
        """
        return (policy or TRAINING_POLICY).apply(self.label_codes(names))

    # -- patients and subgroups ------------------------------------------------
    def patients(self, names: Sequence[str]) -> np.ndarray:
        """Patient ids of ``names``.

        Parameters
        ----------
        names : sequence of str
            Image names.

        Returns
        -------
        ndarray, shape (len(names),)
            int64 for ChestX-ray14 and MIMIC (as published), str otherwise;
            compare ids within one dataset only.
        """
        return self.frame["patient"].to_numpy()[self.rows(names)]

    def subgroups(self, names: Sequence[str]) -> pd.DataFrame:
        """The subgroup columns of ``names``.

        Parameters
        ----------
        names : sequence of str
            Image names.

        Returns
        -------
        DataFrame
            Indexed by the names; ``patient``, ``sex`` (``"M"``/``"F"``, NaN
            when unknown), ``age`` (years, float, NaN when unknown), ``view``
            (:data:`VIEWS`), ``follow_up`` (0 for the patient's first study,
            1, 2, ... for later ones; float, NaN when the dataset does not
            say): :data:`SUBGROUP_COLUMNS`.
        """
        return self.frame.iloc[self.rows(names)][list(SUBGROUP_COLUMNS)].copy()

    def boxes(self, size: int | None = None, present_only: bool = True) -> pd.DataFrame:
        """The dataset's boxes (none here; ChestX-ray14 overrides).

        Parameters
        ----------
        size : int, optional
            Scale to a ``size x size`` resize instead of the file on disk.
        present_only : bool
            Only boxes of images on disk.

        Returns
        -------
        DataFrame
            ``Image Index, label, x, y, w, h, width, height`` (pixels); empty.
        """
        return pd.DataFrame(columns=BOX_COLUMNS)

    # -- summary -----------------------------------------------------------------
    def summary(self) -> dict:
        """Counts to read before training: splits, patients, label codes, subgroups, rows left out.

        Returns
        -------
        dict
            JSON-ready: ``kind, title, root, sources, official_split,
            split_note, split_file, splits, patients, n_present, labels``
            (label -> code name -> images present), ``sex, view, age, dropped``.
        """
        c = self.counts()
        present = self.frame["present"].to_numpy(bool)
        codes = self.codes[present]
        f = self.frame.loc[present]
        age = f["age"].to_numpy(float)
        return {
            "kind": self.kind,
            "title": self.title,
            "root": str(self.root),
            "sources": {k: v.name for k, v in self.sources.items()},
            "official_split": self.official_split,
            "split_note": self.split_note,
            "split_file": str(self.split_file) if self.split_file else None,
            "splits": {s: {"listed": v.listed, "present": v.present, "missing": v.missing} for s, v in c.items()},
            "patients": {"listed": int(self.frame["patient"].nunique()), "present": int(f["patient"].nunique())},
            "n_present": int(present.sum()),
            "labels": {
                l: {name: int((codes[:, j] == code).sum()) for code, name in CODE_NAMES.items()}
                for j, l in enumerate(self.labels)
            },
            "sex": {k: int(v) for k, v in f["sex"].fillna("unknown").value_counts().items()},
            "view": {k: int(v) for k, v in f["view"].value_counts().items()},
            "age": {
                "known": int(np.isfinite(age).sum()),
                "median": float(np.nanmedian(age)) if np.isfinite(age).any() else None,
            },
            "dropped": dict(self.dropped),
        }

    def describe(self) -> str:
        """Human-readable :meth:`summary` (what ``phow-baseline info`` prints).

        Returns
        -------
        str
            Several lines, no final newline.
        """
        return format_dataset_summary(self.summary())

    def __len__(self) -> int:
        return len(self.frame)

    def __repr__(self) -> str:
        if not hasattr(self, "frame"):
            return f"{type(self).__name__}(not read)"
        n = int(self.frame["present"].sum())
        return f"{type(self).__name__}({str(self.root)!r}: {n} of {len(self)} images present)"


def format_dataset_summary(s: dict) -> str:
    """Text of :meth:`ChestDataset.summary`: splits, patients, per-label codes, subgroups, rows left out.

    Parameters
    ----------
    s : dict
        A :meth:`ChestDataset.summary`.

    Returns
    -------
    str
        Lines for a terminal.
    """
    lines = [
        f"{s['title']} ({s['kind']}) at {s['root']}",
        f"files: {', '.join(f'{k}: {v}' for k, v in s['sources'].items())}",
        f"split: {s['split_note']}",
        "",
        f"{'split':<10} {'listed':>8} {'present':>8} {'missing':>8}",
    ]
    for k in SPLITS:
        v = s["splits"][k]
        lines.append(f"{k:<10} {v['listed']:>8} {v['present']:>8} {v['missing']:>8}")
    lines += [
        "",
        f"patients: {s['patients']['present']} present of {s['patients']['listed']} listed",
        f"images present: {s['n_present']}",
        "",
        f"{'label':<28} " + " ".join(f"{n:>13}" for n in CODE_NAMES.values()),
    ]
    for l, v in s["labels"].items():
        lines.append(f"{l:<28} " + " ".join(f"{v[n]:>13}" for n in CODE_NAMES.values()))
    lines += [
        "",
        "sex: " + ", ".join(f"{k} {v}" for k, v in s["sex"].items()),
        "view: " + ", ".join(f"{k} {v}" for k, v in s["view"].items()),
        f"age: known for {s['age']['known']}"
        + (f", median {s['age']['median']:.0f} years" if s["age"]["median"] is not None else ""),
    ]
    if s["dropped"]:
        lines.append("left out: " + "; ".join(f"{k}: {v}" for k, v in s["dropped"].items()))
    return "\n".join(lines)


# --------------------------------------------------------------------------
# The registry of kinds
# --------------------------------------------------------------------------

#: kind -> adapter class.  The built-in kinds register when their modules are
#: imported; :func:`get_dataset` and :func:`open_dataset` import them first.
DATASETS: dict[str, type[ChestDataset]] = {}
_BUILTIN_MODULES = ("chestxray14", "chexpert", "mimic", "padchest", "csv_dataset")


def register_dataset(cls: type[ChestDataset]) -> type[ChestDataset]:
    """Class decorator: register an adapter under its ``kind``.

    The decorated class (``cls``) is a :class:`ChestDataset` subclass whose
    ``kind`` is a lower-case identifier.

    Returns
    -------
    type
        The class, unchanged.

    Raises
    ------
    ValueError
        If ``kind`` is empty or already taken by another class.
    """
    kind = getattr(cls, "kind", "")
    if not kind or not re.fullmatch(r"[a-z][a-z0-9_]*", kind):
        raise ValueError(f"{cls.__name__}: kind must be a lower-case identifier, got {kind!r}")
    old = DATASETS.get(kind)
    if old is not None and old.__qualname__ != cls.__qualname__:
        raise ValueError(f"dataset kind {kind!r} already registered by {old.__module__}.{old.__qualname__}")
    DATASETS[kind] = cls
    return cls


def _load_builtin() -> None:
    import importlib

    for m in _BUILTIN_MODULES:
        importlib.import_module(f"{__package__}.{m}")


def get_dataset(kind: str) -> type[ChestDataset]:
    """The adapter class of ``kind``.

    Parameters
    ----------
    kind : str
        One of :data:`DATASETS` (the built-in kinds are imported first).

    Returns
    -------
    type
        The :class:`ChestDataset` subclass.

    Raises
    ------
    ValueError
        For an unknown kind, listing the registered ones.
    """
    _load_builtin()
    try:
        return DATASETS[kind]
    except KeyError:
        raise ValueError(f"unknown dataset kind {kind!r}; choose one of {sorted(DATASETS)}") from None


def detect_kind(folder) -> tuple[str, Path]:
    """The kind of the dataset in ``folder`` and its root, when exactly one kind recognises it.

    Parameters
    ----------
    folder : path
        A dataset folder, or a ``.csv`` file (the plain-CSV kind).

    Returns
    -------
    kind : str
        The registered kind.
    root : Path
        The dataset folder (for CheXpert, possibly the ``CheXpert-v1.0-small``
        folder inside ``folder``; for a CSV file, the file).

    Raises
    ------
    DatasetError
        No kind or several kinds recognise it; the message lists the files
        each kind looks for (or the kinds that matched).
    """
    _load_builtin()
    folder = Path(folder)
    if folder.is_file() and folder.suffix.lower() == ".csv":
        return "csv", folder
    if not folder.is_dir():
        raise DatasetError(f"{folder}: dataset folder not found")
    found = [(k, r) for k, cls in DATASETS.items() if (r := cls.detect(folder)) is not None]
    if len(found) == 1:
        return found[0]
    if not found:
        looked = "; ".join(f"{k}: {' or '.join(DATASETS[k].looks_for)}" for k in sorted(DATASETS))
        raise DatasetError(
            f"{folder}: cannot tell the dataset kind: no metadata CSV or label file of a known kind is there "
            f"(looked for {looked}); "
            "pass the kind (--dataset)"
        )
    raise DatasetError(
        f"{folder}: ambiguous dataset folder: it looks like {', '.join(sorted(k for k, _ in found))}; "
        "pass the kind (--dataset)"
    )


def open_dataset(folder, kind: str | None = None, **options) -> ChestDataset:
    """Open the dataset in ``folder`` through the adapter of ``kind`` (detected when None).

    Parameters
    ----------
    folder : path
        The dataset folder (or, for ``kind="csv"``, the CSV file or a folder
        holding ``dataset.csv``).
    kind : str, optional
        One of :data:`DATASETS`; detected by :func:`detect_kind` when None.
    **options
        Passed to the adapter: ``work_dir`` (where a seeded split is kept),
        ``strict``, ``warn``, ``frontal_only``, ``val_fraction``,
        ``test_fraction``, ``seed``, ``labels`` (a subset, in order), and the
        adapter's own.

    Returns
    -------
    ChestDataset
        The dataset, read.

    Raises
    ------
    DatasetError
        The kind cannot be detected, or the adapter finds a file missing or
        malformed.
    ValueError
        An unknown ``kind``.
    """
    if kind is None:
        kind, folder = detect_kind(folder)
    else:
        cls = get_dataset(kind)
        folder = Path(folder)
        if kind != "csv" and folder.is_dir():
            folder = cls.detect(folder) or folder
    return get_dataset(kind)(folder, **options)
