"""The NIH ChestX-ray14 data layer: metadata, labels, splits, boxes, images present.

A dataset folder holds what the NIH release holds::

    DATA_DIR/
        Data_Entry_2017_v2020.csv[.gz]   (or Data_Entry_2017.csv[.gz])
        train_val_list.txt, test_list.txt
        BBox_List_2017.csv[.gz]          (optional)
        images/*.png                     (a flat folder), and/or
        images_001/images/*.png ...      (NIH's extracted archives)

The metadata lists all 112,120 images; most users have only some archives.
:class:`ChestXray14` uses the images present and reports, per split, how
many listed images are missing (a :class:`MissingImagesWarning` with the
counts, or an error in strict mode).  Nothing is dropped silently.
:class:`ChestXray14Dataset` is the same folder seen through the dataset
protocol (:mod:`.protocol`), registered as the kind ``chestxray14``.

One concept at this length: the ChestX-ray14 data layer.
"""

from __future__ import annotations

import gzip
import os
import re
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from .protocol import (
    FRAME_COLUMNS,
    ChestDataset,
    DatasetError,
    MissingImagesWarning,
    SplitCount,
    normalise_age,
    normalise_sex,
    normalise_view,
    register_dataset,
)

#: The 14 findings, in the order of the published tables (Wang et al. 2017,
#: Yao et al. 2017, CheXNet).  ``Pleural_Thickening`` is spelled as in the
#: NIH metadata.
LABELS: tuple[str, ...] = (
    "Atelectasis",
    "Cardiomegaly",
    "Effusion",
    "Infiltration",
    "Mass",
    "Nodule",
    "Pneumonia",
    "Pneumothorax",
    "Consolidation",
    "Edema",
    "Emphysema",
    "Fibrosis",
    "Pleural_Thickening",
    "Hernia",
)
NO_FINDING = "No Finding"
_LABEL_INDEX = {name: i for i, name in enumerate(LABELS)}
#: Spellings found in the NIH files mapped to :data:`LABELS` (``BBox_List_2017``
#: says ``Infiltrate``).
LABEL_ALIASES = {"Infiltrate": "Infiltration", "Pleural Thickening": "Pleural_Thickening"}

METADATA_FILES = (
    "Data_Entry_2017_v2020.csv",
    "Data_Entry_2017_v2020.csv.gz",
    "Data_Entry_2017.csv",
    "Data_Entry_2017.csv.gz",
)
TRAIN_VAL_LIST = "train_val_list.txt"
TEST_LIST = "test_list.txt"
BBOX_FILES = ("BBox_List_2017.csv", "BBox_List_2017.csv.gz")
#: NIH boxes are drawn on the 1024x1024 PNGs of the release.
BBOX_FRAME = 1024
#: Share of train_val patients carved out for validation: about 10 % gives the
#: 78k / 8k / 25.6k shape of the Uniandes study (Gomez, Rueda, Valderrama 2019).
DEFAULT_VAL_FRACTION = 0.1
DEFAULT_SEED = 0
SPLITS = ("train_val", "train", "val", "test", "all")

_REQUIRED_COLUMNS = ("Image Index", "Finding Labels", "Patient ID")
_RENAMES = {
    "OriginalImage[Width": "Original Width",
    "Height]": "Original Height",
    "OriginalImagePixelSpacing[x": "Pixel Spacing x",
    "y]": "Pixel Spacing y",
}
_NAME_RE = re.compile(r"^(\d{8})_(\d{3})\.png$")


# --------------------------------------------------------------------------
# Plain readers
# --------------------------------------------------------------------------


def _find(root: Path, candidates: Sequence[str], what: str, required=True) -> Path | None:
    for name in candidates:
        p = root / name
        if p.exists():
            return p
    if required:
        raise DatasetError(f"{root}: no {what} found (looked for {', '.join(candidates)})")
    return None


def read_metadata(path) -> pd.DataFrame:
    """Read ``Data_Entry_2017[_v2020].csv`` (plain or ``.gz``).

    Parameters
    ----------
    path : str or Path
        The metadata CSV (gzip-compressed when it ends in ``.gz``).

    Returns
    -------
    pandas.DataFrame
        N rows (112,120 for the full release) indexed 0..N-1 with the NIH
        columns (``Unnamed`` ones dropped), the bracketed size/spacing
        columns renamed (``Original Width``, ``Original Height`` in pixels,
        ``Pixel Spacing x``/``y`` in mm), ``Patient ID`` as int64 and an
        empty ``Finding Labels`` read as ``No Finding``.

    Raises
    ------
    DatasetError
        The file cannot be read, a required column (``Image Index``,
        ``Finding Labels``, ``Patient ID``) is missing, a label is unknown, a
        name is missing or duplicated, or a patient id is not an integer.
    """
    path = Path(path)
    try:
        df = pd.read_csv(path, dtype={"Image Index": str, "Finding Labels": str})
    except (OSError, pd.errors.ParserError, UnicodeDecodeError, EOFError, gzip.BadGzipFile) as exc:
        raise DatasetError(f"{path}: cannot read metadata CSV ({exc})") from exc
    df = df.loc[:, [c for c in df.columns if not str(c).startswith("Unnamed")]].rename(columns=_RENAMES)
    missing = [c for c in _REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise DatasetError(f"{path}: missing column(s) {missing}; found {list(df.columns)}")
    if df["Image Index"].isna().any():
        raise DatasetError(f"{path}: {int(df['Image Index'].isna().sum())} row(s) without an Image Index")
    dup = df["Image Index"].duplicated()
    if dup.any():
        raise DatasetError(
            f"{path}: {int(dup.sum())} duplicated Image Index value(s), e.g. {df['Image Index'][dup].iloc[0]}"
        )
    df["Finding Labels"] = df["Finding Labels"].fillna(NO_FINDING)
    try:
        df["Patient ID"] = df["Patient ID"].astype(np.int64)
    except (ValueError, TypeError) as exc:
        raise DatasetError(f"{path}: non-integer Patient ID ({exc})") from exc
    _ = labels_from_strings(df["Finding Labels"], source=path)  # validates every label
    return df.reset_index(drop=True)


def labels_from_strings(findings: Iterable[str], source="<labels>", no_finding_column=False) -> np.ndarray:
    """Turn ``|``-separated finding strings into a ``uint8`` label matrix.

    Row ``i`` column ``j`` is 1 when finding ``LABELS[j]`` is in string ``i``;
    ``No Finding`` is all zeros.  With ``no_finding_column`` a 15th column
    holds 1 for ``No Finding`` rows.  Spellings in :data:`LABEL_ALIASES` are
    accepted.

    Parameters
    ----------
    findings : iterable of str
        One string per image, e.g. ``"Effusion|Mass"`` or ``"No Finding"``.
    source : str or Path, default="<labels>"
        Named in the error message (the file the strings come from).
    no_finding_column : bool, default=False
        Add the 15th ``No Finding`` column.

    Returns
    -------
    ndarray of uint8, shape (n_images, 14) or (n_images, 15)
        0/1, columns in :data:`LABELS` order.

    Raises
    ------
    DatasetError
        A finding is not in :data:`LABELS` (the message counts each unknown
        one).
    """
    findings = list(findings)
    out = np.zeros((len(findings), len(LABELS) + int(no_finding_column)), np.uint8)
    unknown = {}
    for i, s in enumerate(findings):
        for tok in str(s).split("|"):
            tok = LABEL_ALIASES.get(tok.strip(), tok.strip())
            if tok == NO_FINDING:
                if no_finding_column:
                    out[i, -1] = 1
                continue
            j = _LABEL_INDEX.get(tok)
            if j is None:
                unknown[tok] = unknown.get(tok, 0) + 1
            else:
                out[i, j] = 1
    if unknown:
        raise DatasetError(f"{source}: unknown finding label(s) {unknown}; expected {list(LABELS)} or '{NO_FINDING}'")
    return out


def read_split_list(path) -> list[str]:
    """Read an official split list (one file name a line; a missing final newline is fine).

    Parameters
    ----------
    path : str or Path
        ``train_val_list.txt`` or ``test_list.txt``.

    Returns
    -------
    list of str
        The image names in file order (blank lines and surrounding spaces
        dropped).

    Raises
    ------
    DatasetError
        The file cannot be read or lists a name twice.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read split list ({exc.strerror})") from exc
    names = [ln.strip() for ln in text.splitlines() if ln.strip()]
    dup = len(names) - len(set(names))
    if dup:
        raise DatasetError(f"{path}: {dup} duplicated name(s)")
    return names


def read_boxes(path) -> pd.DataFrame:
    """Read ``BBox_List_2017.csv`` into columns ``Image Index, label, x, y, w, h``.

    The NIH header splits ``Bbox [x,y,w,h]`` over four columns and has
    three empty trailing columns, so the columns are taken by position.
    Coordinates stay in the 1024x1024 frame of the NIH PNGs
    (:data:`BBOX_FRAME`); labels are mapped to :data:`LABELS`
    (``Infiltrate`` -> ``Infiltration``).

    Parameters
    ----------
    path : str or Path
        The box list (gzip-compressed when it ends in ``.gz``).

    Returns
    -------
    pandas.DataFrame
        One row per box (984 in the release): ``Image Index`` (str),
        ``label`` (str), and ``x, y`` (top-left corner), ``w, h`` (width and
        height), float pixels of the 1024x1024 frame.

    Raises
    ------
    DatasetError
        The file cannot be read, has fewer than 6 columns, non-numeric
        coordinates or an unknown label.
    """
    path = Path(path)
    try:
        raw = pd.read_csv(path, header=0)
    except (OSError, pd.errors.ParserError, EOFError, gzip.BadGzipFile) as exc:
        raise DatasetError(f"{path}: cannot read box list ({exc})") from exc
    if raw.shape[1] < 6:
        raise DatasetError(
            f"{path}: expected at least 6 columns (Image Index, Finding Label, x, y, w, h), found {raw.shape[1]}"
        )
    out = pd.DataFrame(
        {
            "Image Index": raw.iloc[:, 0].astype(str),
            "label": raw.iloc[:, 1].astype(str).map(lambda s: LABEL_ALIASES.get(s, s)),
        }
    )
    for k, col in zip("xywh", range(2, 6)):
        out[k] = pd.to_numeric(raw.iloc[:, col], errors="coerce")
    bad = out[["x", "y", "w", "h"]].isna().any(axis=1)
    if bad.any():
        raise DatasetError(f"{path}: {int(bad.sum())} box row(s) with non-numeric coordinates")
    unknown = sorted(set(out["label"]) - set(LABELS))
    if unknown:
        raise DatasetError(f"{path}: unknown box label(s) {unknown}")
    return out


def png_size(path) -> tuple[int, int]:
    """Width and height of a PNG from its IHDR header, without decoding it.

    A file that is not a PNG is decoded with OpenCV instead.

    Parameters
    ----------
    path : str or Path
        The image file.

    Returns
    -------
    (int, int)
        Width and height, in pixels.

    Raises
    ------
    DatasetError
        The file is not a PNG and OpenCV cannot read it.
    """
    with open(path, "rb") as fh:
        head = fh.read(24)
    if len(head) < 24 or head[:8] != b"\x89PNG\r\n\x1a\n":
        import cv2

        img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if img is None:
            raise DatasetError(f"{path}: not a readable image")
        return img.shape[1], img.shape[0]
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def discover_images(root, image_dirs: Sequence | None = None) -> dict[str, Path]:
    """Map file name -> path for every PNG under ``images/`` and ``images_*/images/``.

    ``image_dirs`` overrides the folders searched.  A name found twice is an
    error (two different files would claim one metadata row).

    Parameters
    ----------
    root : str or Path
        The dataset folder.  Searched: ``root/images``, each
        ``root/images_*/images``, and each ``root/images_*`` without an
        ``images`` subfolder (not recursively); missing folders are skipped.
    image_dirs : sequence of path, optional
        The folders to search instead.

    Returns
    -------
    dict of str to Path
        File name (``00000001_000.png``) -> its path.

    Raises
    ------
    DatasetError
        A file name found in two folders.
    """
    root = Path(root)
    if image_dirs is None:
        dirs = [root / "images"]
        dirs += sorted(p / "images" for p in root.glob("images_*") if (p / "images").is_dir())
        dirs += sorted(p for p in root.glob("images_*") if p.is_dir() and not (p / "images").is_dir())
    else:
        dirs = [Path(d) for d in image_dirs]
    found: dict[str, Path] = {}
    for d in dirs:
        if not d.is_dir():
            continue
        with os.scandir(d) as it:
            for e in it:
                if e.name.endswith(".png") and e.is_file():
                    if e.name in found:
                        raise DatasetError(f"{e.path}: image name also present at {found[e.name]}")
                    found[e.name] = Path(e.path)
    return found


def patient_validation_split(
    names: Sequence[str], patients: Sequence[int], val_fraction=DEFAULT_VAL_FRACTION, seed=DEFAULT_SEED
) -> tuple[list[str], list[str]]:
    """Carve a patient-wise validation set out of ``names``.

    Patients are shuffled with a seeded generator and taken whole into the
    validation set until it holds ``round(val_fraction * len(names))``
    images or more; no patient is in both parts.

    Parameters
    ----------
    names : sequence of str
        Image names (the official train_val list), length n.
    patients : sequence of int
        The patient id of each name, length n.
    val_fraction : float, default=0.1
        Target share of the images for validation, in [0, 1)
        (:data:`DEFAULT_VAL_FRACTION`: the Uniandes study's split shape).
    seed : int, default=0
        Seed of the patient shuffle (``numpy.random.default_rng``).

    Returns
    -------
    train, val : list of str
        The names of each part, in the order given.

    Raises
    ------
    ValueError
        ``val_fraction`` outside [0, 1).
    """
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    patients = np.asarray(patients)
    uniq, counts = np.unique(patients, return_counts=True)
    order = np.random.default_rng(seed).permutation(len(uniq))
    target = int(round(val_fraction * len(names)))
    cum = np.cumsum(counts[order])
    n_take = int(np.searchsorted(cum, target)) + 1 if target > 0 else 0
    val_patients = set(uniq[order[:n_take]].tolist())
    is_val = np.array([p in val_patients for p in patients.tolist()], bool)
    train = [n for n, v in zip(names, is_val) if not v]
    val = [n for n, v in zip(names, is_val) if v]
    assert not ({int(p) for p in patients[~is_val]} & val_patients), "patient in two splits"
    return train, val


# --------------------------------------------------------------------------
# The dataset
# --------------------------------------------------------------------------


class ChestXray14:
    """A ChestX-ray14 folder: metadata, official split, boxes, and the images present.

    Parameters
    ----------
    root : path
        The dataset folder (see the module docstring for its layout).
    strict : bool
        Raise :class:`DatasetError` if any listed image is missing, instead
        of warning with the counts.
    image_dirs : sequence of path, optional
        Folders holding the PNGs (default: ``root/images`` and
        ``root/images_*/images``).
    val_fraction, seed : float, int
        The patient-wise validation carve of train_val (see
        :func:`patient_validation_split`; defaults 0.1 and 0).
    warn : bool, default=True
        Warn (:class:`MissingImagesWarning`) when listed images are missing
        or PNGs on disk are not in the metadata; False stays silent (the
        counts are still in :meth:`counts`).

    Attributes
    ----------
    root : Path
        The dataset folder.
    metadata_path : Path
        The metadata CSV found.
    metadata : pandas.DataFrame
        As :func:`read_metadata` returns it, one row per listed image.
    label_matrix : ndarray of uint8, shape (n_listed, 14)
        The labels of every metadata row, :data:`LABELS` order.
    images : dict of str to Path
        Every PNG found (:func:`discover_images`).
    present : set of str
        Listed names whose PNG is on disk.
    unlisted : list of str
        PNG names on disk that the metadata does not list (ignored), sorted.
    bbox_path : Path or None
        The box list, when there is one.

    Raises
    ------
    DatasetError
        The folder, the metadata or a split list is missing or invalid, the
        lists overlap in images or patients, or (``strict``) images are
        missing.
    """

    def __init__(
        self,
        root,
        strict: bool = False,
        image_dirs=None,
        val_fraction=DEFAULT_VAL_FRACTION,
        seed=DEFAULT_SEED,
        warn=True,
    ):
        self.root = Path(root)
        if not self.root.is_dir():
            raise DatasetError(f"{self.root}: dataset folder not found")
        self.strict = strict
        self.val_fraction = val_fraction
        self.seed = seed
        self.metadata_path = _find(self.root, METADATA_FILES, "metadata CSV (Data_Entry_2017)")
        self.metadata = read_metadata(self.metadata_path)
        self._row = pd.Series(np.arange(len(self.metadata)), index=self.metadata["Image Index"])
        self.label_matrix = labels_from_strings(self.metadata["Finding Labels"], source=self.metadata_path)

        self._lists = {}
        listed = set(self.metadata["Image Index"])
        for split, fname in (("train_val", TRAIN_VAL_LIST), ("test", TEST_LIST)):
            p = _find(self.root, (fname,), f"official split list {fname}")
            names = read_split_list(p)
            unknown = [n for n in names if n not in listed]
            if unknown:
                raise DatasetError(
                    f"{p}: {len(unknown)} name(s) not in the metadata {self.metadata_path.name}, e.g. {unknown[:3]}"
                )
            self._lists[split] = names
        overlap = set(self._lists["train_val"]) & set(self._lists["test"])
        if overlap:
            raise DatasetError(
                f"{self.root}: {len(overlap)} image(s) in both official lists, e.g. {sorted(overlap)[:3]}"
            )
        pt = self.patients(self._lists["train_val"])
        ps = self.patients(self._lists["test"])
        shared = set(pt.tolist()) & set(ps.tolist())
        if shared:
            raise DatasetError(f"{self.root}: {len(shared)} patient(s) in both train_val and test lists")
        tr, va = patient_validation_split(self._lists["train_val"], pt, val_fraction, seed)
        self._lists["train"], self._lists["val"] = tr, va
        self._lists["all"] = list(self.metadata["Image Index"])

        self.images = discover_images(self.root, image_dirs)
        self.present = {n for n in self.images if n in self._row.index}
        self.unlisted = sorted(set(self.images) - self.present)
        self.bbox_path = _find(self.root, BBOX_FILES, "box list", required=False)
        self._boxes = read_boxes(self.bbox_path) if self.bbox_path else None
        self._check_missing(warn)

    # -- reporting ----------------------------------------------------------
    def counts(self) -> dict[str, SplitCount]:
        """Listed and present images per split.

        Returns
        -------
        dict of str to SplitCount
            For each of ``train_val``, ``train``, ``val``, ``test`` and
            ``all``: the images listed, present on disk, and missing.
        """
        return {
            s: SplitCount(len(self._lists[s]), sum(n in self.present for n in self._lists[s]))
            for s in ("train_val", "train", "val", "test", "all")
        }

    def _check_missing(self, warn: bool) -> None:
        c = self.counts()
        if c["all"].missing == 0 and not self.unlisted:
            return
        parts = [f"{s}: {c[s].missing} of {c[s].listed} missing" for s in ("train_val", "test", "all")]
        msg = f"{self.root}: listed images not on disk ({'; '.join(parts)})"
        if self.unlisted:
            msg += f"; {len(self.unlisted)} PNG(s) on disk are not in the metadata (ignored), e.g. {self.unlisted[:3]}"
        if self.strict:
            raise DatasetError(msg)
        if warn:
            warnings.warn(msg, MissingImagesWarning, stacklevel=3)

    def missing(self, split="all") -> list[str]:
        """Names listed in ``split`` whose image is not on disk.

        Parameters
        ----------
        split : str, default="all"
            One of :data:`SPLITS`.

        Returns
        -------
        list of str
            In list order (metadata order for ``"all"``).
        """
        return [n for n in self._lists[split] if n not in self.present]

    # -- access -------------------------------------------------------------
    def split_names(self, split: str, present_only: bool = True) -> list[str]:
        """Image names of ``split`` (one of :data:`SPLITS`), sorted, present on disk unless told otherwise.

        Parameters
        ----------
        split : str
            ``"train_val"`` or ``"test"`` (the official lists), ``"train"``
            or ``"val"`` (the patient-wise carve of train_val), or ``"all"``
            (every metadata row).
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
        if split not in self._lists:
            raise ValueError(f"unknown split {split!r}; choose one of {SPLITS}")
        names = self._lists[split]
        if present_only:
            names = [n for n in names if n in self.present]
        return sorted(names)

    def image_path(self, name: str) -> Path:
        """The PNG of image ``name`` (a KeyError says whether it is unlisted or not on disk).

        Parameters
        ----------
        name : str
            An image name.

        Returns
        -------
        Path
            Its file.
        """
        try:
            return self.images[name]
        except KeyError:
            where = "listed in the metadata but not on disk" if name in self._row.index else "not in the metadata"
            raise KeyError(f"{name}: image {where} under {self.root}") from None

    def rows(self, names: Sequence[str]) -> np.ndarray:
        """Row positions of ``names`` in :attr:`metadata`.

        Parameters
        ----------
        names : sequence of str
            Image names listed in the metadata.

        Returns
        -------
        ndarray of int64, shape (len(names),)
            0-based rows, in the order of ``names``.

        Raises
        ------
        KeyError
            A name is not in the metadata.
        """
        try:
            return self._row.loc[list(names)].to_numpy()
        except KeyError as exc:
            raise KeyError(f"not in the metadata {self.metadata_path}: {exc}") from None

    def labels(self, names: Sequence[str], no_finding_column: bool = False) -> np.ndarray:
        """``uint8`` label matrix ``(len(names), 14)`` in :data:`LABELS` order (15 with ``No Finding``).

        Parameters
        ----------
        names : sequence of str
            Image names listed in the metadata.
        no_finding_column : bool, default=False
            Add a 15th column, 1 where no finding is positive.

        Returns
        -------
        ndarray of uint8, shape (len(names), 14) or (len(names), 15)
            0/1 labels, in the order of ``names``.
        """
        y = self.label_matrix[self.rows(names)]
        if no_finding_column:
            y = np.concatenate([y, (y.sum(1) == 0).astype(np.uint8)[:, None]], axis=1)
        return y

    def patients(self, names: Sequence[str]) -> np.ndarray:
        """``Patient ID`` of each of ``names``.

        Parameters
        ----------
        names : sequence of str
            Image names listed in the metadata.

        Returns
        -------
        ndarray of int64, shape (len(names),)
            The patient ids, in the order of ``names``.
        """
        return self.metadata["Patient ID"].to_numpy()[self.rows(names)]

    def patient_of(self, name: str) -> int:
        """``Patient ID`` of one image.

        Parameters
        ----------
        name : str
            An image name listed in the metadata.

        Returns
        -------
        int
            Its patient id.
        """
        return int(self.patients([name])[0])

    def boxes(self, size: int | None = None, present_only: bool = True) -> pd.DataFrame:
        """NIH boxes, scaled from the 1024x1024 frame to the image as it is on disk.

        Parameters
        ----------
        size : int, optional
            Scale to a ``size x size`` resize instead of the file on disk.
        present_only : bool
            Only boxes whose image is present (the scale needs the file's size).

        Returns
        -------
        pandas.DataFrame
            Columns ``Image Index, label, x, y, w, h`` (float pixels, origin
            at the top-left corner) plus ``width, height`` of the frame (int
            pixels); empty (with these columns) when the folder has no box
            list.  Without ``size``, an image not on disk keeps the 1024x1024
            frame.
        """
        cols = ["Image Index", "label", "x", "y", "w", "h", "width", "height"]
        if self._boxes is None:
            return pd.DataFrame(columns=cols)
        b = self._boxes.copy()
        if present_only:
            b = b[b["Image Index"].isin(self.present)].copy()
        if size is not None:
            wh = np.array([[size, size]] * len(b), float).reshape(-1, 2)
        else:
            wh = np.array(
                [png_size(self.images[n]) if n in self.images else (BBOX_FRAME, BBOX_FRAME) for n in b["Image Index"]],
                float,
            ).reshape(-1, 2)
        b["width"], b["height"] = wh[:, 0].astype(int), wh[:, 1].astype(int)
        b["x"] *= wh[:, 0] / BBOX_FRAME
        b["w"] *= wh[:, 0] / BBOX_FRAME
        b["y"] *= wh[:, 1] / BBOX_FRAME
        b["h"] *= wh[:, 1] / BBOX_FRAME
        return b.reset_index(drop=True)[cols]

    def followup_series(self, patient: int, present_only: bool = True) -> list[str]:
        """A patient's images, ordered by the file name's 3-digit suffix.

        The order is the file-name suffix, not the v2020 ``Follow-up #``
        column: the two disagree for 24,106 of 112,120 rows, and the suffix
        is what the NIH release numbers its files by.

        Parameters
        ----------
        patient : int
            A ``Patient ID``.
        present_only : bool, default=True
            Leave out images not on disk.

        Returns
        -------
        list of str
            Image names, oldest first (empty for an unknown patient).
        """
        m = self.metadata
        names = m.loc[m["Patient ID"] == int(patient), "Image Index"].tolist()
        if present_only:
            names = [n for n in names if n in self.present]
        return sorted(names, key=followup_index)

    # -- summary ----------------------------------------------------------------
    def summary(self) -> dict:
        """Counts a user wants before training: images, patients, prevalence, boxes.

        Returns
        -------
        dict
            JSON-ready: ``root``, ``metadata`` (file name), ``splits``
            (listed / present / missing per split), ``patients`` (listed /
            present), ``prevalence_present`` and ``prevalence_listed``
            (positive images per label), ``no_finding_present``,
            ``multi_label_present``, ``n_present``, ``boxes`` (listed,
            present, images_present, per_label) and ``unlisted_on_disk``;
            all counts of images (or boxes, patients).
        """
        c = self.counts()
        present_all = self.split_names("all")
        y = self.labels(present_all) if present_all else np.zeros((0, len(LABELS)), np.uint8)
        nlab = y.sum(1)
        yl = self.label_matrix
        b = self.boxes()
        return {
            "root": str(self.root),
            "metadata": self.metadata_path.name,
            "splits": {s: {"listed": v.listed, "present": v.present, "missing": v.missing} for s, v in c.items()},
            "patients": {
                "listed": int(self.metadata["Patient ID"].nunique()),
                "present": int(len(set(self.patients(present_all).tolist()))) if present_all else 0,
            },
            "prevalence_present": {l: int(y[:, j].sum()) for j, l in enumerate(LABELS)},
            "prevalence_listed": {l: int(yl[:, j].sum()) for j, l in enumerate(LABELS)},
            "no_finding_present": int((nlab == 0).sum()),
            "multi_label_present": int((nlab > 1).sum()),
            "n_present": len(present_all),
            "boxes": {
                "listed": 0 if self._boxes is None else len(self._boxes),
                "present": len(b),
                "images_present": int(b["Image Index"].nunique()) if len(b) else 0,
                "per_label": b["label"].value_counts().to_dict() if len(b) else {},
            },
            "unlisted_on_disk": len(self.unlisted),
        }

    def __repr__(self) -> str:
        return f"ChestXray14({str(self.root)!r}: {len(self.present)} of {len(self.metadata)} images present)"


def followup_index(name: str) -> int:
    """The 3-digit suffix of a ChestX-ray14 file name (``00000013_009.png`` -> 9).

    Parameters
    ----------
    name : str or Path
        A file name or path (only the last part is read).

    Returns
    -------
    int
        The follow-up number (0 for a patient's first image).

    Raises
    ------
    ValueError
        The name is not ``PPPPPPPP_NNN.png``.
    """
    m = _NAME_RE.match(Path(name).name)
    if not m:
        raise ValueError(f"{name}: not a ChestX-ray14 file name (PPPPPPPP_NNN.png)")
    return int(m.group(2))


def patient_from_name(name: str) -> int:
    """The 8-digit patient id of a ChestX-ray14 file name (``00000013_009.png`` -> 13).

    Parameters
    ----------
    name : str or Path
        A file name or path (only the last part is read).

    Returns
    -------
    int
        The patient id.

    Raises
    ------
    ValueError
        The name is not ``PPPPPPPP_NNN.png``.
    """
    m = _NAME_RE.match(Path(name).name)
    if not m:
        raise ValueError(f"{name}: not a ChestX-ray14 file name (PPPPPPPP_NNN.png)")
    return int(m.group(1))


def format_summary(s: dict) -> str:
    """Human-readable text of :meth:`ChestXray14.summary`.

    Parameters
    ----------
    s : dict
        What :meth:`ChestXray14.summary` returns.

    Returns
    -------
    str
        Several lines, no final newline: the split table, patients, the
        share of No Finding and multi-label images, per-label prevalence
        (counts and percent of present and of listed images), and the boxes.
    """
    lines = [
        f"ChestX-ray14 at {s['root']} (metadata: {s['metadata']})",
        "",
        f"{'split':<10} {'listed':>8} {'present':>8} {'missing':>8}",
    ]
    for k in ("train_val", "train", "val", "test", "all"):
        v = s["splits"][k]
        lines.append(f"{k:<10} {v['listed']:>8} {v['present']:>8} {v['missing']:>8}")
    n = max(s["n_present"], 1)
    lines += [
        "",
        f"patients: {s['patients']['present']} present of {s['patients']['listed']} listed",
        f"images present: {s['n_present']}; No Finding {s['no_finding_present']} "
        f"({100 * s['no_finding_present'] / n:.1f}%); more than one finding {s['multi_label_present']} "
        f"({100 * s['multi_label_present'] / n:.1f}%)",
        "",
        f"{'label':<20} {'present':>8} {'%':>6} {'listed':>8} {'%':>6}",
    ]
    nl = max(s["splits"]["all"]["listed"], 1)
    for l in LABELS:
        a, b = s["prevalence_present"][l], s["prevalence_listed"][l]
        lines.append(f"{l:<20} {a:>8} {100 * a / n:>6.2f} {b:>8} {100 * b / nl:>6.2f}")
    bx = s["boxes"]
    per = ", ".join(f"{k} {v}" for k, v in sorted(bx["per_label"].items(), key=lambda kv: -kv[1]))
    lines += [
        "",
        f"boxes: {bx['present']} on {bx['images_present']} present images "
        f"(of {bx['listed']} listed){': ' + per if per else ''}",
    ]
    if s["unlisted_on_disk"]:
        lines.append(f"PNG files on disk not in the metadata (ignored): {s['unlisted_on_disk']}")
    return "\n".join(lines)


# --------------------------------------------------------------------------
# The adapter to the dataset protocol
# --------------------------------------------------------------------------


@register_dataset
class ChestXray14Dataset(ChestDataset):
    """ChestX-ray14 through the dataset protocol: :class:`ChestXray14` itself, unchanged, wrapped.

    Names, splits (the official lists and the patient-wise validation carve),
    labels, patients and boxes are those of :class:`ChestXray14` (the adapter
    reads them from it, it computes nothing of its own).  Codes are
    :data:`~.protocol.POSITIVE` for a listed finding and
    :data:`~.protocol.NEGATIVE` otherwise: the NIH labels list positives only,
    so "not mentioned" cannot be told from "negative".  Every image is
    frontal (PA or AP, Wang et al. 2017), so ``frontal_only`` removes nothing.
    Subgroups come from ``Patient Gender``, ``Patient Age`` (the 2017 file's
    few ages above 120, typing errors, read as unknown), ``View Position`` and
    ``Follow-up #`` (the ``follow_up`` column: 0 for a patient's first image).

    Parameters
    ----------
    root : path
        The dataset folder (see the module docstring).
    work_dir : path, optional
        Unused (the split is official); accepted as every adapter does.
    strict : bool, default=False
        Raise :class:`DatasetError` if any listed image is missing.
    warn : bool, default=True
        Warn with the counts of missing images.
    frontal_only : bool
        Accepted for uniformity; every image is frontal.
    val_fraction : float, default=0.1
        Share of train_val's images carved out, patient-wise, for validation.
    test_fraction : float, optional
        Unused (the test list is official).
    seed : int, default=0
        Seed of the validation carve.
    labels : sequence of str, optional
        A subset of :data:`LABELS`, in the order wanted.
    image_dirs : sequence of path, optional
        Folders holding the PNGs (as :class:`ChestXray14`).
    """

    kind = "chestxray14"
    title = "NIH ChestX-ray14"
    url = "https://nihcc.app.box.com/v/ChestXray-NIHCC"
    looks_for = METADATA_FILES

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
        image_dirs=None,
    ):
        src = ChestXray14(root, strict=strict, image_dirs=image_dirs, val_fraction=val_fraction, seed=seed, warn=warn)
        self._wrap(src, frontal_only, labels)

    @classmethod
    def from_source(cls, source: ChestXray14, frontal_only: bool = True, labels=None) -> ChestXray14Dataset:
        """The protocol's view of a :class:`ChestXray14` already read (0.1's dataset object), without reading again.

        Parameters
        ----------
        source : ChestXray14
            The folder as read (its validation carve included).
        frontal_only : bool
            Accepted for uniformity; every image is frontal.
        labels : sequence of str, optional
            A subset of :data:`LABELS`, in the order wanted.

        Returns
        -------
        ChestXray14Dataset
        """
        self = cls.__new__(cls)
        self._wrap(source, frontal_only, labels)
        return self

    def _wrap(self, src: ChestXray14, frontal_only: bool, labels) -> None:
        self.source = src
        m = src.metadata
        names = m["Image Index"].to_numpy(object)
        split = np.full(len(m), "", object)  # "": in neither official list (only in "all")
        for part in ("train", "val", "test"):
            split[src.rows(src._lists[part])] = part
        col = lambda c: m[c].to_numpy(object) if c in m.columns else [None] * len(m)  # noqa: E731
        frame = pd.DataFrame(
            {
                "path": [str(src.images[n]) if n in src.images else "" for n in names],
                "present": m["Image Index"].isin(src.present).to_numpy(),
                "patient": m["Patient ID"].to_numpy(np.int64),
                "study": [None] * len(m),
                "split": split,
                "sex": normalise_sex(col("Patient Gender")),
                "age": normalise_age(col("Patient Age")),
                "view": normalise_view(col("View Position")),
                "frontal": np.ones(len(m), bool),
                "follow_up": pd.to_numeric(pd.Series(col("Follow-up #")), errors="coerce").to_numpy(np.float64),
            },
            index=pd.Index(names, name="name"),
        )[list(FRAME_COLUMNS)]
        sources = {
            "metadata": src.metadata_path,
            "train_val list": self._path(TRAIN_VAL_LIST),
            "test list": self._path(TEST_LIST),
        }
        if src.bbox_path:
            sources["boxes"] = src.bbox_path
        self._finish(
            src.root,
            frame,
            src.label_matrix.astype(np.int8),
            LABELS,
            sources=sources,
            frontal_only=frontal_only,
            select=labels,
            strict=False,
            warn=False,
            official_split=True,
        )

    def _path(self, name: str) -> Path:
        return self.source.root / name

    def boxes(self, size: int | None = None, present_only: bool = True) -> pd.DataFrame:
        """The NIH boxes, as :meth:`ChestXray14.boxes`.

        Parameters
        ----------
        size : int, optional
            Scale to a ``size x size`` resize (pixels) instead of the file on
            disk.
        present_only : bool, default=True
            Only boxes whose image is present.

        Returns
        -------
        pandas.DataFrame
            Columns ``Image Index, label, x, y, w, h, width, height`` (pixels).
        """
        return self.source.boxes(size=size, present_only=present_only)

    def describe(self) -> str:
        """The ``info`` text of ChestX-ray14 (:func:`format_summary`), as before the protocol.

        Returns
        -------
        str
            Several lines, no final newline.
        """
        return format_summary(self.source.summary())
