"""A synthetic chest-radiograph phantom with ground truth, in the ChestX-ray14 layout.

The library's oracle: every image is drawn from a seeded generator, every
finding is drawn where its box says, and the folder it writes reads exactly
like the NIH release (``images/``, ``Data_Entry_2017_v2020.csv``,
``train_val_list.txt``, ``test_list.txt``, ``BBox_List_2017.csv``), so every
command runs on it unchanged.  ``phantom_truth.json`` adds what the NIH files
cannot hold: every finding's box on every image, and the follow-up series
with what changed.

**These images are synthetic.** They show that the pipeline works end to end
and learns what is learnable; they say nothing about accuracy on real X-rays.

Anatomy (intensities: 0 = black, air; 1 = white, dense; then exposure,
blur and quantum noise): an elliptical body of soft tissue, two lung fields
(dark), the heart and mediastinum (bright, cardiothoracic ratio 0.40-0.48
when normal), domed hemidiaphragms, 9 posterior ribs per side drawn as arcs,
clavicles, soft-tissue texture, variable patient size and exposure.

Findings and their appearance:

=====================  =====================================================
Atelectasis            a plate-like band opacity at a lung base
Cardiomegaly           cardiothoracic ratio 0.55-0.65 (the heart box)
Effusion               a basal opacity with a meniscus, blunting the angle
Infiltration           faint patchy opacities in one lung (subtle on purpose)
Mass                   a round opacity of radius 5-8 % of the image width
Nodule                 a small round opacity of radius 1.5-2.5 % (subtle)
Pneumonia              a dense lobar patch with blurred edges
Pneumothorax           an apical-lateral rim without lung markings and a
                       visible pleural line
Consolidation          a large homogeneous opacity
Edema                  bilateral perihilar ("bat-wing") haziness
Emphysema              hyperlucent, over-expanded lungs, flat diaphragms
Fibrosis               a reticular network of thin lines at the bases
Pleural_Thickening     a bright band along the lateral chest wall
Hernia                 a round retrocardiac opacity with an air-fluid level
=====================  =====================================================

One concept at this length: the phantom (its anatomy, the 14 findings'
appearances, and the writers of its two layouts).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .chestxray14 import LABELS

#: Label combinations of the real metadata (``Data_Entry_2017_v2020.csv``,
#: 112,120 images) with at least 150 images, and their counts: together 92.7 %
#: of the images, and the co-occurrence the phantom draws from.  Hernia (227
#: images, none in a combination that common) is added alone with its count.
#: Derived with ``df["Finding Labels"]`` split, sorted and counted.
REAL_COMBINATIONS = {
    'No Finding': 60361, 'Infiltration': 9547, 'Atelectasis': 4215, 'Effusion': 3955, 'Nodule': 2705,
    'Pneumothorax': 2194, 'Mass': 2139, 'Effusion|Infiltration': 1604, 'Atelectasis|Infiltration': 1350,
    'Consolidation': 1310, 'Atelectasis|Effusion': 1167, 'Pleural_Thickening': 1126, 'Cardiomegaly': 1093,
    'Emphysema': 892, 'Infiltration|Nodule': 829, 'Atelectasis|Effusion|Infiltration': 739, 'Fibrosis': 727,
    'Edema': 628, 'Cardiomegaly|Effusion': 484, 'Consolidation|Infiltration': 441, 'Infiltration|Mass': 420,
    'Effusion|Pneumothorax': 403, 'Effusion|Mass': 402, 'Atelectasis|Consolidation': 398, 'Mass|Nodule': 396,
    'Edema|Infiltration': 392, 'Infiltration|Pneumothorax': 347, 'Emphysema|Pneumothorax': 337,
    'Consolidation|Effusion': 337, 'Pneumonia': 322, 'Effusion|Pleural_Thickening': 251, 'Effusion|Nodule': 250,
    'Atelectasis|Pneumothorax': 241, 'Infiltration|Pleural_Thickening': 210, 'Cardiomegaly|Infiltration': 201,
    'Atelectasis|Nodule': 201, 'Atelectasis|Consolidation|Effusion': 200, 'Infiltration|Pneumonia': 199,
    'Edema|Effusion': 189, 'Fibrosis|Infiltration': 185, 'Mass|Pneumothorax': 179, 'Atelectasis|Mass': 178,
    'Consolidation|Mass': 151, 'Hernia': 227,
}
#: Flattening exponent of the combination frequencies (``p ~ count^alpha``):
#: 1 keeps the real shape (53 % No Finding, 0.2 % Hernia); the default 0.35
#: enriches rare findings so that a few hundred images hold positives of
#: every class, keeping the real ranking and co-occurrences.
DEFAULT_ENRICH = 0.35
#: Findings drawn large and clear: the oracle tests require AUROC > 0.9 on them.
CONSPICUOUS = ("Cardiomegaly", "Effusion", "Mass", "Pneumothorax", "Emphysema")
#: Findings drawn small or faint on purpose.
SUBTLE = ("Nodule", "Infiltration")
DEFAULT_SIZE = 256


def _combo_table(enrich):
    names = list(REAL_COMBINATIONS)
    w = np.array([REAL_COMBINATIONS[n] for n in names], float) ** enrich
    return names, w / w.sum()


# --------------------------------------------------------------------------
# Anatomy
# --------------------------------------------------------------------------

@dataclass
class Anatomy:
    """Geometry of one patient, in pixels of an ``S x S`` image."""

    S: int
    cx: float
    body_w: float
    lung_top: float
    lung_bottom: float
    lungs: list          # [(cx, cy, ax, ay)] right (image left), left
    heart: tuple         # (cx, cy, ax, ay)
    ctr: float
    exposure: float
    emphysema: bool = False
    ribs_phase: float = 0.0

    def lung_mask(self) -> np.ndarray:
        m = np.zeros((self.S, self.S), np.uint8)
        for (x, y, ax, ay) in self.lungs:
            cv2.ellipse(m, (int(x), int(y)), (int(ax), int(ay)), 0, 0, 360, 1, -1)
        dome = np.zeros_like(m)
        self._diaphragm(dome)
        m[dome > 0] = 0
        return m

    def _diaphragm(self, img, value=1):
        """Everything below the hemidiaphragm domes (flat when emphysematous)."""
        S = self.S
        for (x, y, ax, ay) in self.lungs:
            base = y + ay * (0.80 if not self.emphysema else 0.95)
            dome_h = ay * (0.22 if not self.emphysema else 0.04)
            xs = np.arange(int(x - ax * 1.1), int(x + ax * 1.1) + 1)
            ys = base - dome_h * np.sqrt(np.clip(1 - ((xs - x) / (ax * 1.1)) ** 2, 0, 1))
            pts = np.concatenate([np.stack([xs, ys], 1), [[xs[-1], S], [xs[0], S]]]).astype(np.int32)
            cv2.fillPoly(img, [pts], value)


def make_anatomy(rng: np.random.Generator, S: int, cardiomegaly=False, emphysema=False) -> Anatomy:
    size = rng.uniform(0.88, 1.05)
    cx = S * (0.5 + rng.normal(0, 0.01))
    body_w = S * 0.42 * size
    lung_top = S * (0.16 + rng.normal(0, 0.01))
    ax = S * 0.15 * size
    ay = S * (0.30 if not emphysema else 0.35) * size
    cy = lung_top + ay
    gap = S * 0.05 * size + ax
    lungs = [(cx - gap, cy, ax, ay), (cx + gap, cy, ax, ay)]
    thorax_w = 2 * (gap + ax)
    ctr = rng.uniform(0.56, 0.65) if cardiomegaly else rng.uniform(0.40, 0.47)
    hw = ctr * thorax_w / 2
    heart = (cx + 0.12 * hw, cy + 0.45 * ay, hw, ay * 0.38)
    return Anatomy(S, cx, body_w, lung_top, lung_top + 2 * ay, lungs, heart, ctr,
                   exposure=rng.uniform(0.85, 1.15), emphysema=emphysema, ribs_phase=rng.uniform(0, 1))


def _box(x0, y0, x1, y1, S):
    x0, y0 = max(0.0, x0), max(0.0, y0)
    x1, y1 = min(S - 1.0, x1), min(S - 1.0, y1)
    return [float(x0), float(y0), float(x1 - x0), float(y1 - y0)]


def render_base(an: Anatomy, rng: np.random.Generator) -> np.ndarray:
    """The normal chest of ``an`` as float32 density in [0, 1] (before noise)."""
    S = an.S
    img = np.zeros((S, S), np.float32)
    body = np.zeros((S, S), np.uint8)
    cv2.ellipse(body, (int(an.cx), int(S * 0.58)), (int(an.body_w), int(S * 0.62)), 0, 0, 360, 1, -1)
    img[body > 0] = 0.55
    # soft-tissue texture
    tex = cv2.GaussianBlur(rng.normal(0, 1, (S, S)).astype(np.float32), (0, 0), S / 40)
    img += 0.04 * tex * body
    lungs = an.lung_mask()
    lung_level = 0.16 if not an.emphysema else 0.06
    img[lungs > 0] = lung_level + 0.03 * tex[lungs > 0]
    # vascular markings: faint branching texture inside the lungs
    marks = cv2.GaussianBlur(rng.normal(0, 1, (S, S)).astype(np.float32), (0, 0), S / 120)
    img += (0.05 if not an.emphysema else 0.015) * np.abs(marks) * lungs
    # mediastinum and heart
    med = np.zeros((S, S), np.uint8)
    mw = int(S * 0.045)
    cv2.rectangle(med, (int(an.cx - mw), int(an.lung_top - S * 0.05)), (int(an.cx + mw), int(an.heart[1])), 1, -1)
    hx, hy, hax, hay = an.heart
    cv2.ellipse(med, (int(hx), int(hy)), (int(hax), int(hay)), 0, 0, 360, 1, -1)
    img[med > 0] = 0.72
    # diaphragm / abdomen
    dia = np.zeros((S, S), np.uint8)
    an._diaphragm(dia)
    img[(dia > 0) & (body > 0)] = 0.62
    # ribs: arcs across each lung
    ribs = np.zeros((S, S), np.float32)
    for (x, y, ax, ay) in an.lungs:
        for k in range(9):
            ry = an.lung_top + (k + 0.3 + 0.4 * an.ribs_phase) * (2 * ay) / 9.5
            cv2.ellipse(ribs, (int(x), int(ry - ay * 0.15)), (int(ax * 1.15), int(ay * 0.2)), 0, 15, 165, 1.0,
                        max(1, S // 90))
    ribs *= body
    img += 0.10 * ribs
    # clavicles
    for sgn in (-1, 1):
        p0 = (int(an.cx + sgn * S * 0.04), int(an.lung_top + S * 0.02))
        p1 = (int(an.cx + sgn * S * 0.30), int(an.lung_top - S * 0.04))
        cv2.line(img, p0, p1, 0.85, max(2, S // 45))
    return img


# --------------------------------------------------------------------------
# Findings
# --------------------------------------------------------------------------

def _blob(shape, center, radius, sigma_frac=0.35):
    m = np.zeros(shape, np.float32)
    cv2.circle(m, (int(center[0]), int(center[1])), max(1, int(radius)), 1.0, -1)
    return cv2.GaussianBlur(m, (0, 0), max(0.5, radius * sigma_frac))


def _pick_lung(an, rng):
    return an.lungs[int(rng.integers(0, 2))]


def draw_finding(img: np.ndarray, label: str, an: Anatomy, rng: np.random.Generator, scale: float = 1.0,
                 where: dict | None = None) -> tuple[list, dict]:
    """Draw one finding into ``img`` (float32, in place); return its box ``[x, y, w, h]``
    (pixels) and the parameters used (pass them back as ``where`` to draw the
    same finding again, e.g. grown with ``scale`` in a follow-up)."""
    S = an.S
    p = dict(where or {})
    lungs = an.lung_mask().astype(np.float32)
    if label == "Cardiomegaly":
        hx, hy, hax, hay = an.heart
        return _box(hx - hax, hy - hay, hx + hax, hy + hay, S), p
    if label == "Emphysema":
        (x0, y0, ax0, ay0), (x1, y1, ax1, ay1) = an.lungs
        return _box(x0 - ax0, an.lung_top, x1 + ax1, an.lung_bottom, S), p
    if label == "Nodule" or label == "Mass":
        if "c" not in p:
            x, y, ax, ay = _pick_lung(an, rng)
            p["c"] = [x + rng.uniform(-0.5, 0.5) * ax, y + rng.uniform(-0.6, 0.3) * ay]
            p["r"] = S * (rng.uniform(0.015, 0.025) if label == "Nodule" else rng.uniform(0.05, 0.08))
        r = p["r"] * scale
        amp = 0.22 if label == "Nodule" else 0.45
        img += amp * _blob(img.shape, p["c"], r, 0.2)
        return _box(p["c"][0] - r, p["c"][1] - r, p["c"][0] + r, p["c"][1] + r, S), p
    if label == "Effusion":
        if "side" not in p:
            p["side"] = int(rng.integers(0, 2))
            p["h"] = rng.uniform(0.4, 0.55)
        x, y, ax, ay = an.lungs[p["side"]]
        h = min(0.7, p["h"] * scale) * 2 * ay
        bottom = y + ay
        m = np.zeros(img.shape, np.float32)
        xs = np.arange(int(x - ax * 1.05), int(x + ax * 1.05) + 1)
        lateral = (xs - x) * (1 if p["side"] == 1 else -1) / ax  # -1 medial .. +1 lateral
        top = bottom - h * (0.55 + 0.45 * np.clip(lateral, -1, 1))  # meniscus: higher laterally
        pts = np.concatenate([np.stack([xs, top], 1), [[xs[-1], bottom + ay * 0.1], [xs[0], bottom + ay * 0.1]]])
        cv2.fillPoly(m, [pts.astype(np.int32)], 1.0)
        m = cv2.GaussianBlur(m, (0, 0), S / 150) * np.clip(lungs + 0.3, 0, 1)
        img[:] = img * (1 - m) + 0.62 * m
        return _box(xs[0], top.min(), xs[-1], bottom, S), p
    if label == "Pneumothorax":
        if "side" not in p:
            p["side"] = int(rng.integers(0, 2))
            p["depth"] = rng.uniform(0.25, 0.4)
        x, y, ax, ay = an.lungs[p["side"]]
        sgn = 1 if p["side"] == 1 else -1
        d = min(0.8, p["depth"] * scale)
        lung = np.zeros(img.shape, np.uint8)
        cv2.ellipse(lung, (int(x), int(y)), (int(ax), int(ay)), 0, 0, 360, 1, -1)
        inner = np.zeros(img.shape, np.uint8)
        cv2.ellipse(inner, (int(x - sgn * ax * d * 0.6), int(y + ay * d * 0.5)),
                    (int(ax * (1 - d * 0.6)), int(ay * (1 - d * 0.45))), 0, 0, 360, 1, -1)
        rim = (lung > 0) & (inner == 0)
        img[rim] = 0.03  # air without lung markings
        edge = cv2.morphologyEx(inner, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 0
        img[edge & (lung > 0)] += 0.12  # the visceral pleural line
        ys, xs = np.nonzero(rim)
        return _box(xs.min(), ys.min(), xs.max(), ys.max(), S), p
    if label == "Atelectasis":
        if "side" not in p:
            p["side"] = int(rng.integers(0, 2))
            p["t"] = rng.uniform(-0.2, 0.2)
        x, y, ax, ay = an.lungs[p["side"]]
        yy = y + ay * (0.45 + 0.1 * p["t"])
        band = np.zeros(img.shape, np.float32)
        cv2.line(band, (int(x - ax * 0.7), int(yy + ay * 0.08)), (int(x + ax * 0.7), int(yy - ay * 0.08)), 1.0,
                 max(2, int(S * 0.025 * scale)))
        band = cv2.GaussianBlur(band, (0, 0), S / 200) * lungs
        img += 0.22 * band
        return _box(x - ax * 0.7, yy - ay * 0.15, x + ax * 0.7, yy + ay * 0.15, S), p
    if label in ("Infiltration", "Pneumonia", "Consolidation"):
        if "c" not in p:
            x, y, ax, ay = _pick_lung(an, rng)
            p["c"] = [x + rng.uniform(-0.3, 0.3) * ax, y + rng.uniform(-0.3, 0.4) * ay]
            p["r"] = S * {"Infiltration": 0.10, "Pneumonia": 0.08, "Consolidation": 0.11}[label] * rng.uniform(0.8, 1.2)
        r = p["r"] * scale
        if label == "Infiltration":  # faint patches
            noise = cv2.GaussianBlur(rng.normal(0, 1, img.shape).astype(np.float32), (0, 0), S / 60)
            m = _blob(img.shape, p["c"], r, 0.5) * np.clip(noise * 2 + 0.5, 0, 1) * lungs
            img += 0.12 * m
        else:
            m = _blob(img.shape, p["c"], r, 0.35 if label == "Pneumonia" else 0.15) * lungs
            img += (0.30 if label == "Pneumonia" else 0.38) * m
        return _box(p["c"][0] - r, p["c"][1] - r, p["c"][0] + r, p["c"][1] + r, S), p
    if label == "Edema":
        m = np.zeros(img.shape, np.float32)
        for (x, y, ax, ay) in an.lungs:
            cx = x + (an.cx - x) * 0.35
            cv2.ellipse(m, (int(cx), int(y)), (int(ax * 0.6), int(ay * 0.45)), 0, 0, 360, 1.0, -1)
        m = cv2.GaussianBlur(m, (0, 0), S / 30) * lungs
        img += 0.20 * scale * m
        (x0, _, ax0, ay0), (x1, _, ax1, _) = an.lungs
        return _box(x0 - ax0 * 0.3, an.lung_top + ay0 * 0.4, x1 + ax1 * 0.3, an.lung_bottom - ay0 * 0.3, S), p
    if label == "Fibrosis":
        m = np.zeros(img.shape, np.float32)
        for _ in range(40):
            x, y, ax, ay = _pick_lung(an, rng)
            a = rng.uniform(0, np.pi)
            px, py = x + rng.uniform(-0.8, 0.8) * ax, y + rng.uniform(0.1, 0.8) * ay
            L = S * 0.03
            cv2.line(m, (int(px - L * np.cos(a)), int(py - L * np.sin(a))),
                     (int(px + L * np.cos(a)), int(py + L * np.sin(a))), 1.0, 1)
        img += 0.16 * m * lungs
        (x0, y0, ax0, ay0), (x1, _, ax1, _) = an.lungs
        return _box(x0 - ax0, y0, x1 + ax1, an.lung_bottom, S), p
    if label == "Pleural_Thickening":
        if "side" not in p:
            p["side"] = int(rng.integers(0, 2))
        x, y, ax, ay = an.lungs[p["side"]]
        m = np.zeros(img.shape, np.float32)
        start, end = (100, 200) if p["side"] == 0 else (-20, 80)
        cv2.ellipse(m, (int(x), int(y)), (int(ax), int(ay)), 0, start, end, 1.0, max(2, S // 60))
        m = cv2.GaussianBlur(m, (0, 0), 1.0)
        img += 0.3 * m
        ys, xs = np.nonzero(m > 0.2)
        return _box(xs.min(), ys.min(), xs.max(), ys.max(), S), p
    if label == "Hernia":
        hx, hy, hax, hay = an.heart
        c = (an.cx - hax * 0.1, hy + hay * 0.55)
        r = S * 0.06
        m = _blob(img.shape, c, r, 0.1)
        img[:] = img * (1 - m) + 0.85 * m
        air = np.zeros(img.shape, np.float32)
        cv2.ellipse(air, (int(c[0]), int(c[1] - r * 0.35)), (int(r * 0.8), int(r * 0.45)), 0, 180, 360, 1.0, -1)
        img[air > 0] = 0.1  # air above the fluid level
        return _box(c[0] - r, c[1] - r, c[0] + r, c[1] + r, S), p
    raise ValueError(f"unknown finding {label!r}")


def finish(img: np.ndarray, an: Anatomy, rng: np.random.Generator) -> np.ndarray:
    """Exposure, detector blur and quantum noise; to 8 bits."""
    S = an.S
    x = np.clip(img, 0, 1.2) * an.exposure
    x = cv2.GaussianBlur(x, (0, 0), S / 400 + 0.3)
    x = x + rng.normal(0, 1, x.shape).astype(np.float32) * (0.012 + 0.02 * np.sqrt(np.clip(x, 0, None)))
    return np.clip(x * 230 + 8, 0, 255).astype(np.uint8)


def render_case(findings, rng: np.random.Generator, size: int = DEFAULT_SIZE, anatomy: Anatomy | None = None,
                params: dict | None = None, scales: dict | None = None, shift=(0.0, 0.0)):
    """One radiograph with the given findings.

    Returns ``(image uint8 (size, size), boxes {label: [x, y, w, h]},
    anatomy, params)``; ``params`` holds each finding's drawing parameters
    (for follow-ups: the same anatomy and params, other ``scales``).
    """
    findings = [f for f in findings if f in LABELS]
    an = anatomy or make_anatomy(rng, size, "Cardiomegaly" in findings, "Emphysema" in findings)
    img = render_base(an, rng)
    boxes, params = {}, dict(params or {})
    order = sorted(findings, key=lambda f: f in ("Effusion", "Pneumothorax", "Hernia"))
    for f in order:
        s = (scales or {}).get(f, 1.0)
        if s <= 0:
            continue
        boxes[f], params[f] = draw_finding(img, f, an, rng, s, params.get(f))
    if shift != (0.0, 0.0):
        M = np.float32([[1, 0, shift[0]], [0, 1, shift[1]]])
        img = cv2.warpAffine(img, M, (size, size), borderMode=cv2.BORDER_REPLICATE)
        boxes = {k: [b[0] + shift[0], b[1] + shift[1], b[2], b[3]] for k, b in boxes.items()}
    return finish(img, an, rng), boxes, an, params


# --------------------------------------------------------------------------
# The dataset
# --------------------------------------------------------------------------

FOLLOWUP_STORIES = (
    ("Mass", "grows", {0: 0.6, 1: 1.0, 2: 1.4}),
    ("Effusion", "appears", {0: 0.0, 1: 0.8, 2: 1.3}),
    ("Pneumothorax", "resolves", {0: 1.0, 1: 0.4, 2: 0.0}),
)


def make_phantom_dataset(out_dir, n_patients: int = 300, size: int = DEFAULT_SIZE, seed: int = 0,
                         n_followup_patients: int = 6, test_fraction: float = 0.25,
                         enrich: float = DEFAULT_ENRICH, overwrite: bool = False) -> Path:
    """Write a phantom ChestX-ray14 folder (one image per patient, plus follow-up series).

    Written into a temporary sibling folder and renamed when complete.  An
    existing complete folder with the same parameters is reused.

    Boxes in ``BBox_List_2017.csv`` are in the 1024x1024 frame (scaled by
    ``1024 / size``) as in the NIH file, so the data layer's scaling to the
    file on disk recovers them exactly; ``phantom_truth.json`` holds them in
    pixels of the images, for every finding of every image.
    """
    out = Path(out_dir)
    params = {"n_patients": n_patients, "size": size, "seed": seed, "n_followup_patients": n_followup_patients,
              "test_fraction": test_fraction, "enrich": enrich, "version": 2}
    truth_path = out / "phantom_truth.json"
    if truth_path.exists() and not overwrite:
        if json.loads(truth_path.read_text()).get("params") == params:
            return out
        raise FileExistsError(f"{out}: a phantom with other parameters is there; pass overwrite=True or use "
                              "another folder")
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
        rows.append({"Image Index": name, "Finding Labels": "|".join(findings) if findings else "No Finding",
                     "Follow-up #": k, "Patient ID": patient, "Patient Age": age, "Patient Gender": sex,
                     "View Position": "PA", "w": size, "h": size, "sx": 0.143 * 1024 / size,
                     "sy": 0.143 * 1024 / size})
        truth_images[name] = {"findings": findings, "boxes": boxes}
        if patient in test_patients:
            f = 1024.0 / size
            for lab, b in boxes.items():
                boxes_rows.append([name, "Infiltrate" if lab == "Infiltration" else lab,
                                   b[0] * f, b[1] * f, b[2] * f, b[3] * f])

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
                img, boxes, _, fparams = render_case([lab], vis, size, anatomy=an, params=fparams,
                                                     scales={lab: s if s > 0 else 0.0}, shift=shift)
                findings = [lab] if s > 0 else []
                name = f"{patient:08d}_{k:03d}.png"
                cv2.imwrite(str(tmp / "images" / name), img)
                add(name, patient, k, findings, boxes, age + k, sex)
                series.append({"image": name, "scale": s, "box": boxes.get(lab)})
            followups.append({"patient": patient, "finding": lab, "change": story, "series": series})
            continue
        combo = names[int(prng.choice(len(names), p=probs))]
        findings = [] if combo == "No Finding" else [f for f in LABELS if f in combo.split("|")]
        img, boxes, _, _ = render_case(findings, prng, size)
        name = f"{patient:08d}_000.png"
        cv2.imwrite(str(tmp / "images" / name), img)
        add(name, patient, 0, findings, boxes, age, sex)

    header = ("Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
              "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]\n")
    with open(tmp / "Data_Entry_2017_v2020.csv", "w") as fh:
        fh.write(header)
        for r in rows:
            fh.write(f"{r['Image Index']},{r['Finding Labels']},{r['Follow-up #']},{r['Patient ID']},"
                     f"{r['Patient Age']},{r['Patient Gender']},{r['View Position']},{r['w']},{r['h']},"
                     f"{r['sx']:.4f},{r['sy']:.4f}\n")
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
        f"Parameters: {json.dumps(params)}\n")
    (tmp / "phantom_truth.json").write_text(json.dumps({"params": params, "images": truth_images,
                                                        "followups": followups}, indent=1))
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return out


def load_truth(data_dir) -> dict:
    """The ``phantom_truth.json`` of a phantom folder."""
    p = Path(data_dir) / "phantom_truth.json"
    if not p.exists():
        raise FileNotFoundError(f"{p}: not a phantom folder (no phantom_truth.json)")
    return json.loads(p.read_text())


# --------------------------------------------------------------------------
# A phantom in the shape of a real metadata file
# --------------------------------------------------------------------------

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
    """
    import hashlib

    h = int.from_bytes(hashlib.blake2b(name.encode("utf-8"), digest_size=8).digest(), "little")
    return [int(seed), h]


def render_like(name: str, findings, patient: int, size: int = DEFAULT_SIZE, seed: int = 0):
    """The phantom image of metadata row ``name``, drawn with exactly ``findings``.

    The patient's anatomy is drawn from ``(seed, patient)`` (the same body on
    every follow-up, with the heart enlarged or the lungs hyperinflated when
    the row says so), everything else from :func:`image_seed`.

    Returns
    -------
    image : (size, size) uint8
    boxes : dict label -> [x, y, w, h] in pixels of the image
    """
    findings = [f for f in LABELS if f in set(findings)]
    an = make_anatomy(np.random.default_rng([int(seed), 1, int(patient)]), size,
                      "Cardiomegaly" in findings, "Emphysema" in findings)
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
    from ..io import atomic_path, atomic_write_json

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


def make_phantom_like(out, metadata_csv, size: int = DEFAULT_SIZE, limit: int | None = None, seed: int = 0,
                      bbox_csv=None, train_val_list=None, test_list=None, n_jobs: int = -1,
                      progress: bool = True, chunk: int = LIKE_CHUNK) -> Path:
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
        joblib processes (``-1``: all cores).
    progress : bool
        A tqdm bar on stderr.

    Returns
    -------
    Path of the folder.
    """
    import pandas as pd
    from joblib import Parallel, delayed
    from tqdm.auto import tqdm

    from .chestxray14 import DatasetError, read_boxes, read_metadata, read_split_list
    from ..io import atomic_write_json, atomic_write_text, claim_folder, read_json, sha256_strings

    out = Path(out)
    meta_path = Path(metadata_csv)
    if int(size) < 32:
        raise ValueError(f"size must be at least 32 pixels, got {size}")
    if limit is not None and int(limit) < 1:
        raise ValueError(f"limit must be a positive number of images, got {limit}")
    meta = read_metadata(meta_path)
    lists = {}
    for key, given, default in (("train_val", train_val_list, "train_val_list.txt"),
                                ("test", test_list, "test_list.txt")):
        p = Path(given) if given is not None else meta_path.parent / default
        if not p.exists():
            raise DatasetError(f"{p}: official split list not found (pass it explicitly)")
        lists[key] = read_split_list(p)
    patients = meta["Patient ID"].to_numpy()
    keep = _patient_subset(patients, int(limit), seed) if limit is not None else np.ones(len(meta), bool)
    meta = meta[keep].reset_index(drop=True)
    names = meta["Image Index"].tolist()
    chosen = set(names)

    params = {"like": meta_path.name, "n_images": len(names), "names_sha256": sha256_strings(names), "limit": limit,
              "size": int(size), "seed": int(seed),
              "boxes": Path(bbox_csv).name if bbox_csv is not None else None, "version": LIKE_VERSION,
              "chunk": int(chunk)}
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
    chunks = [rows[i:i + chunk] for i in range(0, len(rows), chunk)]
    part_paths = [parts_dir / f"part_{i:06d}.json" for i in range(len(chunks))]
    # a chunk is done when its truth part is there and every image of it is on disk
    todo = [i for i, (c, p) in enumerate(zip(chunks, part_paths))
            if not p.exists() or not all((image_dir / r[0]).exists() for r in c)]
    n_done = len(rows) - sum(len(chunks[i]) for i in todo)
    bar = tqdm(total=len(rows), initial=n_done, unit="img", desc="phantom", disable=not progress,
               mininterval=1.0, smoothing=0.05)
    written = kept = 0
    if todo:
        par = Parallel(n_jobs=n_jobs, return_as="generator_unordered")
        for w, k in par(delayed(_like_chunk)(str(image_dir), str(part_paths[i]), chunks[i], size, seed)
                        for i in todo):
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
            lines.append(f"{name},{'Infiltrate' if lab == 'Infiltration' else lab},{box[0] * f:.6f},"
                         f"{box[1] * f:.6f},{box[2] * f:.6f},{box[3] * f:.6f}")
            n_box_rows += 1
        atomic_write_text(out / "BBox_List_2017.csv", "\n".join(lines) + "\n")
    atomic_write_text(out / "README.txt",
                      "SYNTHETIC chest radiograph phantom made by phow_baseline.data.phantom.make_phantom_like: "
                      f"not real patients; the names, labels and splits of {meta_path.name}.\n"
                      f"Parameters: {json.dumps(params)}\n")
    atomic_write_json(out / "phantom_truth.json",
                      {"params": params, "images": {n: truth[n] for n in names}, "followups": [],
                       "box_rows": n_box_rows, "box_rows_skipped": n_box_skipped}, indent=None)
    return out
