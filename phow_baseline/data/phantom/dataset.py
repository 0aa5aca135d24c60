"""The phantom dataset: one image per patient drawn from the real label combinations, plus follow-up series.

:func:`make_phantom_dataset` writes a folder in the ChestX-ray14 layout
(``images/``, ``Data_Entry_2017_v2020.csv``, the split lists, the box list)
and ``phantom_truth.json`` (every finding's box on every image, the
follow-up series with what changed); :func:`load_truth` reads it back.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import cv2
import numpy as np

from ...io import atomic_write_bytes
from ..chestxray14 import LABELS
from ._anatomy import DEFAULT_SIZE, make_anatomy
from ._findings import render_case

#: Label combinations of the real metadata (``Data_Entry_2017_v2020.csv``,
#: 112,120 images) with at least 150 images, and their counts: together 92.7 %
#: of the images, and the co-occurrence the phantom draws from.  Hernia (227
#: images, none in a combination that common) is added alone with its count.
#: Derived with ``df["Finding Labels"]`` split, sorted and counted.
REAL_COMBINATIONS = {
    "No Finding": 60361,
    "Infiltration": 9547,
    "Atelectasis": 4215,
    "Effusion": 3955,
    "Nodule": 2705,
    "Pneumothorax": 2194,
    "Mass": 2139,
    "Effusion|Infiltration": 1604,
    "Atelectasis|Infiltration": 1350,
    "Consolidation": 1310,
    "Atelectasis|Effusion": 1167,
    "Pleural_Thickening": 1126,
    "Cardiomegaly": 1093,
    "Emphysema": 892,
    "Infiltration|Nodule": 829,
    "Atelectasis|Effusion|Infiltration": 739,
    "Fibrosis": 727,
    "Edema": 628,
    "Cardiomegaly|Effusion": 484,
    "Consolidation|Infiltration": 441,
    "Infiltration|Mass": 420,
    "Effusion|Pneumothorax": 403,
    "Effusion|Mass": 402,
    "Atelectasis|Consolidation": 398,
    "Mass|Nodule": 396,
    "Edema|Infiltration": 392,
    "Infiltration|Pneumothorax": 347,
    "Emphysema|Pneumothorax": 337,
    "Consolidation|Effusion": 337,
    "Pneumonia": 322,
    "Effusion|Pleural_Thickening": 251,
    "Effusion|Nodule": 250,
    "Atelectasis|Pneumothorax": 241,
    "Infiltration|Pleural_Thickening": 210,
    "Cardiomegaly|Infiltration": 201,
    "Atelectasis|Nodule": 201,
    "Atelectasis|Consolidation|Effusion": 200,
    "Infiltration|Pneumonia": 199,
    "Edema|Effusion": 189,
    "Fibrosis|Infiltration": 185,
    "Mass|Pneumothorax": 179,
    "Atelectasis|Mass": 178,
    "Consolidation|Mass": 151,
    "Hernia": 227,
}
#: Flattening exponent of the combination frequencies (``p ~ count^alpha``):
#: 1 keeps the real shape (53 % No Finding, 0.2 % Hernia); the default 0.35
#: enriches rare findings so that a few hundred images hold positives of
#: every class, keeping the real ranking and co-occurrences.
DEFAULT_ENRICH = 0.35


def _combo_table(enrich):
    names = list(REAL_COMBINATIONS)
    w = np.array([REAL_COMBINATIONS[n] for n in names], float) ** enrich
    return names, w / w.sum()


FOLLOWUP_STORIES = (
    ("Mass", "grows", {0: 0.6, 1: 1.0, 2: 1.4}),
    ("Effusion", "appears", {0: 0.0, 1: 0.8, 2: 1.3}),
    ("Pneumothorax", "resolves", {0: 1.0, 1: 0.4, 2: 0.0}),
)


def make_phantom_dataset(
    out_dir,
    n_patients: int = 300,
    size: int = DEFAULT_SIZE,
    seed: int = 0,
    n_followup_patients: int = 6,
    test_fraction: float = 0.25,
    enrich: float = DEFAULT_ENRICH,
    overwrite: bool = False,
) -> Path:
    """Write a phantom ChestX-ray14 folder (one image per patient, plus follow-up series).

    Written into a temporary sibling folder and renamed when complete.  An
    existing complete folder with the same parameters is reused.

    Boxes in ``BBox_List_2017.csv`` are in the 1024x1024 frame (scaled by
    ``1024 / size``) as in the NIH file, so the data layer's scaling to the
    file on disk recovers them exactly; ``phantom_truth.json`` holds them in
    pixels of the images, for every finding of every image.  Only the test
    patients' boxes go into the box list (the NIH release's boxes are on
    test images).

    Parameters
    ----------
    out_dir : str or Path
        The folder to write (replaced when ``overwrite``).
    n_patients : int, default=300
        Patients, ids 1..n_patients; one image each, except the follow-up
        patients (three images each).
    size : int, default=256
        Image side, in pixels (:data:`~phow_baseline.data.phantom.DEFAULT_SIZE`).
    seed : int, default=0
        Seed of every drawing; the same parameters give the same folder.
    n_followup_patients : int, default=6
        Patients 1..n_followup_patients get a three-image series following
        one of :data:`FOLLOWUP_STORIES` in turn (a mass that grows, an
        effusion that appears, a pneumothorax that resolves), shifted by a
        few pixels between visits.
    test_fraction : float, default=0.25
        Share of the patients (rounded) drawn for ``test_list.txt``; the
        others go to ``train_val_list.txt``.
    enrich : float, default=0.35
        Flattening exponent of the label-combination frequencies
        (:data:`DEFAULT_ENRICH`; 1 keeps the real shape).
    overwrite : bool, default=False
        Replace a folder that holds a phantom with other parameters.

    Returns
    -------
    Path
        ``out_dir``.

    Raises
    ------
    FileExistsError
        ``out_dir`` holds a phantom with other parameters and not
        ``overwrite``.
    """
    out = Path(out_dir)
    params = {
        "n_patients": n_patients,
        "size": size,
        "seed": seed,
        "n_followup_patients": n_followup_patients,
        "test_fraction": test_fraction,
        "enrich": enrich,
        "version": 2,
    }
    truth_path = out / "phantom_truth.json"
    if truth_path.exists() and not overwrite:
        if json.loads(truth_path.read_text()).get("params") == params:
            return out
        raise FileExistsError(
            f"{out}: a phantom with other parameters is there; pass overwrite=True or use another folder"
        )
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    (tmp / "images").mkdir(parents=True)
    rng = np.random.default_rng(seed)
    names, probs = _combo_table(enrich)
    rows, boxes_rows, truth_images = [], [], {}
    followups = []
    n_test_pat = int(round(test_fraction * n_patients))
    test_patients = set(rng.choice(np.arange(1, n_patients + 1), n_test_pat, replace=False).tolist())

    def add(name, patient, k, findings, boxes, age, sex):
        rows.append(
            {
                "Image Index": name,
                "Finding Labels": "|".join(findings) if findings else "No Finding",
                "Follow-up #": k,
                "Patient ID": patient,
                "Patient Age": age,
                "Patient Gender": sex,
                "View Position": "PA",
                "w": size,
                "h": size,
                "sx": 0.143 * 1024 / size,
                "sy": 0.143 * 1024 / size,
            }
        )
        truth_images[name] = {"findings": findings, "boxes": boxes}
        if patient in test_patients:
            f = 1024.0 / size
            for lab, b in boxes.items():
                boxes_rows.append(
                    [name, "Infiltrate" if lab == "Infiltration" else lab, b[0] * f, b[1] * f, b[2] * f, b[3] * f]
                )

    for patient in range(1, n_patients + 1):
        prng = np.random.default_rng([seed, patient])
        age, sex = int(prng.integers(18, 90)), str(prng.choice(["M", "F"]))
        if patient <= n_followup_patients:
            lab, story, scales = FOLLOWUP_STORIES[(patient - 1) % len(FOLLOWUP_STORIES)]
            an = make_anatomy(prng, size)
            fparams = None
            series = []
            for k in range(3):
                vis = np.random.default_rng([seed, patient, k])
                shift = (float(vis.normal(0, 2)), float(vis.normal(0, 2))) if k else (0.0, 0.0)
                s = scales[k]
                img, boxes, _, fparams = render_case(
                    [lab], vis, size, anatomy=an, params=fparams, scales={lab: s if s > 0 else 0.0}, shift=shift
                )
                findings = [lab] if s > 0 else []
                name = f"{patient:08d}_{k:03d}.png"
                atomic_write_bytes(tmp / "images" / name, cv2.imencode(".png", img)[1].tobytes(), fsync=False)
                add(name, patient, k, findings, boxes, age + k, sex)
                series.append({"image": name, "scale": s, "box": boxes.get(lab)})
            followups.append({"patient": patient, "finding": lab, "change": story, "series": series})
            continue
        combo = names[int(prng.choice(len(names), p=probs))]
        findings = [] if combo == "No Finding" else [f for f in LABELS if f in combo.split("|")]
        img, boxes, _, _ = render_case(findings, prng, size)
        name = f"{patient:08d}_000.png"
        atomic_write_bytes(tmp / "images" / name, cv2.imencode(".png", img)[1].tobytes(), fsync=False)
        add(name, patient, 0, findings, boxes, age, sex)

    header = (
        "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
        "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]\n"
    )
    with open(tmp / "Data_Entry_2017_v2020.csv", "w") as fh:
        fh.write(header)
        for r in rows:
            fh.write(
                f"{r['Image Index']},{r['Finding Labels']},{r['Follow-up #']},{r['Patient ID']},"
                f"{r['Patient Age']},{r['Patient Gender']},{r['View Position']},{r['w']},{r['h']},"
                f"{r['sx']:.4f},{r['sy']:.4f}\n"
            )
    tv = [r["Image Index"] for r in rows if r["Patient ID"] not in test_patients]
    te = [r["Image Index"] for r in rows if r["Patient ID"] in test_patients]
    (tmp / "train_val_list.txt").write_text("\n".join(tv))  # NIH's lists lack a final newline
    (tmp / "test_list.txt").write_text("\n".join(te))
    with open(tmp / "BBox_List_2017.csv", "w") as fh:
        fh.write("Image Index,Finding Label,Bbox [x,y,w,h],,,\n")
        for b in boxes_rows:
            fh.write(f"{b[0]},{b[1]},{b[2]:.6f},{b[3]:.6f},{b[4]:.6f},{b[5]:.6f}\n")
    (tmp / "README.txt").write_text(
        "SYNTHETIC chest radiograph phantom made by phow_baseline.data.phantom: not real patients.\n"
        f"Parameters: {json.dumps(params)}\n"
    )
    (tmp / "phantom_truth.json").write_text(
        json.dumps({"params": params, "images": truth_images, "followups": followups}, indent=1)
    )
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return out


def load_truth(data_dir) -> dict:
    """The ``phantom_truth.json`` of a phantom folder.

    Parameters
    ----------
    data_dir : str or Path
        A folder written by :func:`make_phantom_dataset` or
        :func:`~phow_baseline.data.phantom.make_phantom_like`.

    Returns
    -------
    dict
        ``params`` (what the folder was made with), ``images`` (name ->
        ``{"findings": [label, ...], "boxes": {label: [x, y, w, h]}}``, boxes
        in pixels of the images, top-left corner and size) and ``followups``
        (per series: ``patient``, ``finding``, ``change``, and ``series`` of
        ``{"image", "scale", "box"}``; empty for a ``--like`` phantom).

    Raises
    ------
    FileNotFoundError
        The folder has no ``phantom_truth.json``.
    """
    p = Path(data_dir) / "phantom_truth.json"
    if not p.exists():
        raise FileNotFoundError(f"{p}: not a phantom folder (no phantom_truth.json)")
    return json.loads(p.read_text())
