"""Look-alike dataset folders: small phantom images and CSVs in each publisher's real format, quirks included.

The real CheXpert, MIMIC-CXR-JPG and PadChest cannot be downloaded here
(registration, credentialed access), so the adapters are tested on folders
that have their layout and their files' quirks, with phantom radiographs
(:func:`~phow_baseline.data.phantom.render_like`) drawn with the findings
their labels state (mapped to ChestX-ray14 names through
:mod:`.label_map`; findings the phantom does not draw, such as Fracture,
are in the CSV only).  **The images are synthetic**: they show that a
dataset is read right and that a model trained on one layout can be scored
on another, nothing about accuracy on real X-rays.

Each builder writes a few fixed rows carrying the quirks (tests assert on
them by name) and ``n_patients`` more drawn from ``seed``, and returns the
dataset folder.

One concept at this length: writers of look-alike folders.
"""

from __future__ import annotations

import csv
import gzip
import io
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from .chexpert import CHEXPERT_LABELS
from .label_map import PADCHEST_TERMS, shared_name

#: MIMIC's label columns (alphabetical, as in ``mimic-cxr-2.0.0-chexpert.csv.gz``).
MIMIC_LABELS = tuple(sorted(CHEXPERT_LABELS))
#: Columns of the PadChest CSV that the look-alike writes (a subset of the
#: real 35, in their order; the adapter reads the ones it needs by name).
PADCHEST_COLUMNS = (
    "ImageID",
    "ImageDir",
    "StudyDate_DICOM",
    "StudyID",
    "PatientID",
    "PatientBirth",
    "PatientSex_DICOM",
    "ViewPosition_DICOM",
    "Projection",
    "MethodProjection",
    "Pediatric",
    "Modality_DICOM",
    "ReportID",
    "Report",
    "MethodLabel",
    "Labels",
    "Localizations",
)
_CELL = {1: "1.0", 0: "0.0", -1: "-1.0", -2: ""}


def _findings(labels: Sequence[str], codes: Sequence[int]) -> list[str]:
    """The ChestX-ray14 findings the phantom draws for a row (positive codes only)."""
    from .chestxray14 import LABELS

    out = []
    for l, c in zip(labels, codes):
        s = shared_name(l)
        if c == 1 and s in LABELS:
            out.append(s)
    return out


def _image(name: str, findings: Sequence[str], patient: int, size: int, seed: int, lateral: bool) -> np.ndarray:
    from .phantom import render_like

    img, _ = render_like(name, [] if lateral else findings, patient, size, seed)
    return np.ascontiguousarray(img.T) if lateral else img


def _write_image(path: Path, img: np.ndarray, bits16: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if bits16:
        ok = cv2.imwrite(str(path), img.astype(np.uint16) * 257)
    elif path.suffix.lower() in (".jpg", ".jpeg"):
        ok = cv2.imwrite(str(path), img, [cv2.IMWRITE_JPEG_QUALITY, 95])
    else:
        ok = cv2.imwrite(str(path), img)
    if not ok:  # pragma: no cover - OpenCV writes any uint8 image
        raise OSError(f"{path}: cannot write image")


def _write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence], gz: bool = False) -> Path:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        with gzip.open(path, "wt", encoding="utf-8", newline="") as fh:
            fh.write(buf.getvalue())
    else:
        path.write_text(buf.getvalue(), encoding="utf-8")
    return path


def _draw(rng: np.random.Generator, n: int, p=(0.25, 0.35, 0.1, 0.3)) -> list[int]:
    """``n`` codes drawn with probabilities (positive, negative, uncertain, not mentioned)."""
    return rng.choice([1, 0, -1, -2], size=n, p=p).tolist()


# --------------------------------------------------------------------------
# CheXpert
# --------------------------------------------------------------------------


def make_chexpert_lookalike(
    out,
    n_patients: int = 6,
    n_valid: int = 4,
    size: int = 64,
    seed: int = 0,
    release: str = "CheXpert-v1.0-small",
    with_images: bool = True,
) -> Path:
    """Write a CheXpert-shaped folder ``out/<release>`` and return it.

    Fixed rows (names below the release folder)::

        train/patient00001/study1/view1_frontal.jpg  AP, No Finding 1.0, other cells blank
        train/patient00001/study1/view2_lateral.jpg  Lateral, AP/PA blank
        train/patient00002/study1/view1_frontal.jpg  PA, Sex Unknown, Cardiomegaly 1.0,
                                                     Pleural Effusion -1.0, Edema 0.0, others blank
        train/patient00002/study2/view1_lateral.jpg  Lateral, AP/PA "LL"
        valid/patient64541/study1/view1_frontal.jpg  AP, Pleural Effusion 1.0, all other cells 0.0

    plus ``n_patients`` train patients (1-2 studies, frontal and sometimes
    lateral) and ``n_valid`` more valid patients (``0.0``/``1.0`` only).

    Parameters
    ----------
    out : path
        Parent folder (the CSV paths are relative to it, as in the release).
    n_patients, n_valid : int
        Drawn train and valid patients, beyond the fixed ones (defaults 6
        and 4).
    size : int
        Side of the phantom images, pixels (default 64).
    seed : int
        Seed of the drawn patients, their labels and the images.
    release : str
        The release folder's name (``CheXpert-v1.0`` for the full release).
    with_images : bool
        Write the JPEGs (False: the CSVs only).

    Returns
    -------
    Path
        ``out/<release>``.
    """
    rng = np.random.default_rng(seed)
    root = Path(out) / release
    L = list(CHEXPERT_LABELS)
    header = ["Path", "Sex", "Age", "Frontal/Lateral", "AP/PA", *L]

    def codes(**given):
        c = [-2] * len(L)
        for k, v in given.items():
            c[L.index(k.replace("_", " "))] = v
        return c

    train = [
        ("train/patient00001/study1/view1_frontal.jpg", "Female", 68, "Frontal", "AP", codes(No_Finding=1)),
        ("train/patient00001/study1/view2_lateral.jpg", "Female", 68, "Lateral", "", codes(No_Finding=1)),
        (
            "train/patient00002/study1/view1_frontal.jpg",
            "Unknown",
            87,
            "Frontal",
            "PA",
            codes(Cardiomegaly=1, Pleural_Effusion=-1, Edema=0),
        ),
        ("train/patient00002/study2/view1_lateral.jpg", "Unknown", 87, "Lateral", "LL", codes(Cardiomegaly=1)),
    ]
    for k in range(n_patients):
        pid = f"patient{3 + k:05d}"
        sex, age = rng.choice(["Male", "Female"]), int(rng.integers(18, 90))
        for s in range(1, int(rng.integers(1, 3)) + 1):
            c = _draw(rng, len(L))
            c[0] = -2 if any(v in (1, -1) for v in c[1:]) else 1  # No Finding only without findings
            train.append(
                (f"train/{pid}/study{s}/view1_frontal.jpg", sex, age, "Frontal", str(rng.choice(["AP", "PA"])), c)
            )
            if rng.random() < 0.4:
                train.append((f"train/{pid}/study{s}/view2_lateral.jpg", sex, age, "Lateral", "", c))
    valid = [
        (
            "valid/patient64541/study1/view1_frontal.jpg",
            "Male",
            73,
            "Frontal",
            "AP",
            [1 if l == "Pleural Effusion" else 0 for l in L],
        )
    ]
    for k in range(n_valid):
        c = [int(v) for v in (rng.random(len(L)) < 0.3)]
        c[0] = int(not any(c[1:]))
        valid.append(
            (
                f"valid/patient{64542 + k}/study1/view1_frontal.jpg",
                str(rng.choice(["Male", "Female"])),
                int(rng.integers(18, 90)),
                "Frontal",
                str(rng.choice(["AP", "PA"])),
                c,
            )
        )
    for fname, rows, cell in (("train.csv", train, _CELL), ("valid.csv", valid, {1: "1.0", 0: "0.0"})):
        _write_csv(
            root / fname,
            header,
            [[f"{release}/{p}", sx, a, fl, ap, *(cell[v] for v in c)] for p, sx, a, fl, ap, c in rows],
        )
    if with_images:
        for p, _, _, fl, _, c in train + valid:
            patient = int(p.split("/")[1][len("patient") :])
            _write_image(root / p, _image(p, _findings(L, c), patient, size, seed, fl == "Lateral"))
    return root


# --------------------------------------------------------------------------
# MIMIC-CXR-JPG
# --------------------------------------------------------------------------


def _dicom_id(rng: np.random.Generator) -> str:
    return "-".join(f"{int(x):08x}" for x in rng.integers(0, 2**32, 5))


def make_mimic_lookalike(
    out, n_patients: int = 8, size: int = 64, seed: int = 0, with_patients: bool = True, with_images: bool = True
) -> Path:
    """Write a MIMIC-CXR-JPG-shaped folder ``out`` (gzipped CSVs, ``files/pXX/...``) and return it.

    Fixed subjects (``dicom_id`` values are ``fixed-<k>``):

    * 10000032, study 50414267, split ``train``: ``fixed-1`` PA and
      ``fixed-2`` LATERAL; labels Pleural Effusion 1.0, Edema -1.0, the rest blank;
    * 10000764, study 57375967, split ``validate``: ``fixed-3`` AP, No
      Finding 1.0, the rest blank; ``fixed-4`` with a blank ViewPosition;
    * 10000898, study 50771383, split ``test``: ``fixed-5`` PA; the study has
      **no** row in the label file;
    * 10001122, study 51000000, split ``test``: ``fixed-6`` AP; Pneumothorax 1.0,
      Cardiomegaly 0.0, the rest blank.

    plus ``n_patients`` subjects with 1-2 studies each (subject-wise split).

    Parameters
    ----------
    out : path
        The release folder to write.
    n_patients, size, seed : int
        Drawn subjects beyond the fixed ones (default 8), the side of the
        phantom images in pixels (default 64), and the seed of the drawing.
    with_patients : bool
        Also write MIMIC-IV's ``patients.csv.gz`` (gender, anchor_age, anchor_year).
    with_images : bool
        Write the JPEGs under ``files/`` (False: the CSVs only).

    Returns
    -------
    Path
        ``out``.
    """
    rng = np.random.default_rng(seed)
    root = Path(out)
    L = list(MIMIC_LABELS)

    def codes(**given):
        c = [-2] * len(L)
        for k, v in given.items():
            c[L.index(k.replace("_", " "))] = v
        return c

    # (dicom_id, subject, study, view, split, StudyDate)
    images = [
        ("fixed-1", 10000032, 50414267, "PA", "train", "21800506"),
        ("fixed-2", 10000032, 50414267, "LATERAL", "train", "21800506"),
        ("fixed-3", 10000764, 57375967, "AP", "validate", "21321015"),
        ("fixed-4", 10000764, 57375967, "", "validate", "21321015"),
        ("fixed-5", 10000898, 50771383, "PA", "test", "21541109"),
        ("fixed-6", 10001122, 51000000, "AP", "test", "21500101"),
    ]
    labels = {
        (10000032, 50414267): codes(Pleural_Effusion=1, Edema=-1),
        (10000764, 57375967): codes(No_Finding=1),
        (10001122, 51000000): codes(Pneumothorax=1, Cardiomegaly=0),
    }
    patients = {
        10000032: ("F", 52, 2180),
        10000764: ("M", 86, 2132),
        10000898: ("F", 80, 2154),
        10001122: ("M", 40, 2150),
    }
    parts = ["train"] * 6 + ["validate", "test"]
    for k in range(n_patients):
        subject = 11000000 + 1000 * k + int(rng.integers(0, 999))
        split = parts[k % len(parts)]
        year = int(rng.integers(2110, 2190))
        patients[subject] = (str(rng.choice(["M", "F"])), int(rng.integers(18, 91)), year)
        for s in range(int(rng.integers(1, 3))):
            study = 50000000 + int(rng.integers(0, 9_999_999))
            c = _draw(rng, len(L))
            c[L.index("No Finding")] = -2 if any(v in (1, -1) for j, v in enumerate(c) if L[j] != "No Finding") else 1
            labels[(subject, study)] = c
            date = f"{year + s}0{int(rng.integers(1, 10))}1{int(rng.integers(0, 10))}"
            images.append((_dicom_id(rng), subject, study, str(rng.choice(["PA", "AP"])), split, date))
            if rng.random() < 0.4:
                images.append((_dicom_id(rng), subject, study, "LATERAL", split, date))
    meta_header = [
        "dicom_id",
        "subject_id",
        "study_id",
        "PerformedProcedureStepDescription",
        "ViewPosition",
        "Rows",
        "Columns",
        "StudyDate",
        "StudyTime",
        "ProcedureCodeSequence_CodeMeaning",
        "ViewCodeSequence_CodeMeaning",
        "PatientOrientationCodeSequence_CodeMeaning",
    ]
    _write_csv(
        root / "mimic-cxr-2.0.0-metadata.csv.gz",
        meta_header,
        [
            [
                d,
                sub,
                st,
                "CHEST (PA AND LAT)",
                v,
                size,
                size,
                date,
                "100000.000",
                "CHEST (PA AND LAT)",
                {"PA": "postero-anterior", "AP": "antero-posterior", "LATERAL": "lateral"}.get(v, ""),
                "Erect",
            ]
            for d, sub, st, v, _, date in images
        ],
        gz=True,
    )
    _write_csv(
        root / "mimic-cxr-2.0.0-split.csv.gz",
        ["dicom_id", "study_id", "subject_id", "split"],
        [[d, st, sub, sp] for d, sub, st, _, sp, _ in images],
        gz=True,
    )
    _write_csv(
        root / "mimic-cxr-2.0.0-chexpert.csv.gz",
        ["subject_id", "study_id", *L],
        [[sub, st, *(_CELL[v] for v in c)] for (sub, st), c in labels.items()],
        gz=True,
    )
    if with_patients:
        _write_csv(
            root / "patients.csv.gz",
            ["subject_id", "gender", "anchor_age", "anchor_year", "anchor_year_group", "dod"],
            [[s, g, a, y, "2014 - 2016", ""] for s, (g, a, y) in patients.items()],
            gz=True,
        )
    if with_images:
        for d, sub, st, v, _, _ in images:
            c = labels.get((sub, st), [-2] * len(L))
            rel = f"files/p{str(sub)[:2]}/p{sub}/s{st}/{d}.jpg"
            _write_image(root / rel, _image(d, _findings(L, c), sub, size, seed, v == "LATERAL"))
    return root


# --------------------------------------------------------------------------
# PadChest
# --------------------------------------------------------------------------


def _padchest_id(rng: np.random.Generator) -> str:
    digits = "".join(str(int(d)) for d in rng.integers(0, 10, 45))
    return (
        f"2168401113669640{digits[:29]}_{int(rng.integers(0, 5)):02d}-{int(rng.integers(0, 200)):03d}-"
        f"{int(rng.integers(0, 200)):03d}.png"
    )


def make_padchest_lookalike(
    out, n_patients: int = 8, size: int = 64, seed: int = 0, gz: bool = False, with_images: bool = True
) -> Path:
    """Write a PadChest-shaped folder ``out`` (the label CSV, 16-bit PNGs in ``ImageDir`` folders); return it.

    Fixed rows (``ImageID`` ``fixed-<k>.png``, patient ``P1``/``P2``/``P3``):

    * ``fixed-1.png`` PA, ``"['pleural effusion', 'cardiomegaly']"``, born 1939, study 2014, sex F;
    * ``fixed-2.png`` L (lateral), same study;
    * ``fixed-3.png`` PA, ``"['normal']"``, sex blank, PatientBirth ``None``;
    * ``fixed-4.png`` AP_horizontal, ``"[' loculated pleural effusion', 'Subcutaneous Emphysema ', '']"``
      (stray spaces, capitals, an empty term);
    * ``fixed-5.png`` PA, blank Labels (left out by the adapter);
    * ``fixed-6.png`` PA, ``['nodule',"air trapping"]`` (mixed quotes, no space).

    plus ``n_patients`` patients with 1-3 images drawn from the PadChest terms.

    Parameters
    ----------
    out : path
        The folder to write.
    n_patients, size, seed : int
        Drawn patients beyond the fixed ones (default 8), the side of the
        phantom images in pixels (default 64), and the seed of the drawing.
    gz : bool
        Write the CSV gzipped (``.csv.gz``).
    with_images : bool
        Write the 16-bit PNGs (False: the CSV only).

    Returns
    -------
    Path
        ``out``.
    """
    rng = np.random.default_rng(seed)
    root = Path(out)
    # (ImageID, ImageDir, StudyDate, StudyID, PatientID, PatientBirth, Sex, Projection, Labels)
    rows = [
        ("fixed-1.png", 0, "20140312", "S1", "P1", "1939.0", "F", "PA", "['pleural effusion', 'cardiomegaly']"),
        ("fixed-2.png", 0, "20140312", "S1", "P1", "1939.0", "F", "L", "['pleural effusion', 'cardiomegaly']"),
        ("fixed-3.png", 1, "20150101", "S2", "P2", "None", "", "PA", "['normal']"),
        (
            "fixed-4.png",
            1,
            "20160606",
            "S3",
            "P3",
            "1950.0",
            "M",
            "AP_horizontal",
            "[' loculated pleural effusion', 'Subcutaneous Emphysema ', '']",
        ),
        ("fixed-5.png", 1, "20160607", "S4", "P3", "1950.0", "M", "PA", ""),
        ("fixed-6.png", 2, "20160608", "S5", "P3", "1950.0", "M", "PA", "['nodule',\"air trapping\"]"),
    ]
    vocabulary = sorted(
        {t for terms in PADCHEST_TERMS.values() for t in terms} | {"kyphosis", "scoliosis", "aortic elongation"}
    )
    for k in range(n_patients):
        pid = "".join(str(int(d)) for d in rng.integers(0, 10, 32))
        birth = f"{int(rng.integers(1925, 2000))}.0"
        sex = str(rng.choice(["M", "F"]))
        for s in range(int(rng.integers(1, 4))):
            n_terms = int(rng.integers(0, 4))
            terms = ["normal"] if n_terms == 0 else sorted(set(rng.choice(vocabulary, n_terms).tolist()))
            proj = str(rng.choice(["PA", "PA", "AP", "L"]))
            rows.append(
                (
                    _padchest_id(rng),
                    int(rng.integers(0, 55)),
                    f"201{int(rng.integers(0, 8))}0{s + 1}15",
                    f"S{k}-{s}",
                    pid,
                    birth,
                    sex,
                    proj,
                    repr(terms),
                )
            )
    header = list(PADCHEST_COLUMNS)
    out_rows = []
    for iid, d, date, study, pid, birth, sex, proj, labels in rows:
        rec = {
            "ImageID": iid,
            "ImageDir": d,
            "StudyDate_DICOM": date,
            "StudyID": study,
            "PatientID": pid,
            "PatientBirth": birth,
            "PatientSex_DICOM": sex,
            "ViewPosition_DICOM": "POSTEROANTERIOR",
            "Projection": proj,
            "MethodProjection": "Manual review of DICOM fields",
            "Pediatric": "No",
            "Modality_DICOM": "CR",
            "ReportID": f"R{study}",
            "Report": "informe",
            "MethodLabel": "Physician",
            "Labels": labels,
            "Localizations": "[]",
        }
        out_rows.append([rec[c] for c in header])
    name = "PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv" + (".gz" if gz else "")
    _write_csv(root / name, header, out_rows, gz=gz)
    if with_images:
        from .padchest import parse_label_list

        for k, (iid, d, *_, proj, labels) in enumerate(rows):
            terms = parse_label_list(labels) or []
            findings = [s for s, ts in PADCHEST_TERMS.items() if set(ts) & set(terms)]
            img = _image(iid, [f for f in findings if f != "Fracture"], k, size, seed, proj == "L")
            _write_image(root / str(d) / iid, img, bits16=True)
    return root


# --------------------------------------------------------------------------
# Plain CSV
# --------------------------------------------------------------------------


def make_csv_lookalike(
    out,
    style: str = "columns",
    n_images: int = 12,
    size: int = 64,
    seed: int = 0,
    with_patient: bool = True,
    with_split: bool = False,
    labels: Sequence[str] = ("Effusion", "Pneumothorax", "Cardiomegaly"),
    with_images: bool = True,
) -> Path:
    """Write a plain-CSV folder ``out`` (``dataset.csv`` and ``images/``) in the documented format; return it.

    Parameters
    ----------
    out : path
        The folder to write.
    style : {"columns", "pipe"}
        One column per label (cells 1/0/-1/blank) or one ``labels`` column (``A|B``).
    n_images, size, seed : int
        Images (default 12, alternately JPEG and PNG), their side in pixels
        (default 64), and the seed of the labels and images.
    with_patient, with_split : bool
        Write the ``patient`` (2 images per patient) and ``split`` columns.
    labels : sequence of str
        The label names (default Effusion, Pneumothorax, Cardiomegaly).
    with_images : bool
        Write the images (False: the CSV only).

    Returns
    -------
    Path
        ``out``.

    Raises
    ------
    ValueError
        An unknown ``style``.
    """
    if style not in ("columns", "pipe"):
        raise ValueError(f"style={style!r}: choose 'columns' or 'pipe'")
    rng = np.random.default_rng(seed)
    root = Path(out)
    header = (
        ["image"]
        + (["patient"] if with_patient else [])
        + (["split"] if with_split else [])
        + ["sex", "age", "view"]
        + (list(labels) if style == "columns" else ["labels"])
    )
    rows, draw = [], []
    for i in range(n_images):
        name = f"images/{i:04d}.{'png' if i % 2 else 'jpg'}"
        patient = f"P{i // 2:03d}"
        split = ("train", "train", "train", "val", "test")[(i // 2) % 5]
        c = _draw(rng, len(labels)) if style == "columns" else [int(v) for v in rng.random(len(labels)) < 0.35]
        cells = (
            [_CELL[v].replace(".0", "") for v in c]
            if style == "columns"
            else ["|".join(l for l, v in zip(labels, c) if v) or "No Finding"]
        )
        rows.append(
            [name]
            + ([patient] if with_patient else [])
            + ([split] if with_split else [])
            + [("M", "F", "Female")[(i // 2) % 3], 30 + i // 2, "PA"]
            + cells
        )
        draw.append((name, c, i // 2))
    _write_csv(root / "dataset.csv", header, rows)
    if with_images:
        for name, c, patient in draw:
            _write_image(root / name, _image(name, _findings(labels, c), patient, size, seed, False))
    return root
