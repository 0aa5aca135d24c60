"""The 14 findings' appearances on the phantom's chest, and one radiograph with its findings drawn.

:func:`draw_finding` draws one finding where its box says (the table of
appearances is in :mod:`phow_baseline.data.phantom`); :func:`render_case`
renders one radiograph: the anatomy, its findings, a shift, the imaging chain.
"""

from __future__ import annotations

import cv2
import numpy as np

from ..chestxray14 import LABELS
from ._anatomy import DEFAULT_SIZE, Anatomy, _box, finish, make_anatomy, render_base

#: Findings drawn large and clear: the oracle tests require AUROC > 0.9 on them.
CONSPICUOUS = ("Cardiomegaly", "Effusion", "Mass", "Pneumothorax", "Emphysema")
#: Findings drawn small or faint on purpose.
SUBTLE = ("Nodule", "Infiltration")


def _blob(shape, center, radius, sigma_frac=0.35):
    m = np.zeros(shape, np.float32)
    cv2.circle(m, (int(center[0]), int(center[1])), max(1, int(radius)), 1.0, -1)
    return cv2.GaussianBlur(m, (0, 0), max(0.5, radius * sigma_frac))


def _pick_lung(an, rng):
    return an.lungs[int(rng.integers(0, 2))]


def draw_finding(
    img: np.ndarray, label: str, an: Anatomy, rng: np.random.Generator, scale: float = 1.0, where: dict | None = None
) -> tuple[list, dict]:
    """Draw one finding into ``img`` (float32, in place); return its box ``[x, y, w, h]``
    (pixels) and the parameters used (pass them back as ``where`` to draw the
    same finding again, e.g. grown with ``scale`` in a follow-up).

    The appearances are listed in :mod:`phow_baseline.data.phantom`.

    Parameters
    ----------
    img : ndarray of float32, shape (S, S)
        Density image (0 air, 1 dense), modified in place.
    label : str
        One of :data:`~phow_baseline.data.chestxray14.LABELS`.
    an : Anatomy
        The patient's geometry (Cardiomegaly and Emphysema are drawn by the
        anatomy itself; only their boxes come from here).
    rng : numpy.random.Generator
        Draws the finding's place and size when ``where`` does not give them.
    scale : float, default=1.0
        Size (or intensity) factor of the finding.
    where : dict, optional
        Parameters from an earlier call for the same finding.

    Returns
    -------
    box : list of float
        ``[x, y, w, h]``: top-left corner and size, in pixels, clipped to the
        image.
    params : dict
        The parameters used (JSON-ready).

    Raises
    ------
    ValueError
        An unknown label.
    """
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
        cv2.ellipse(
            inner,
            (int(x - sgn * ax * d * 0.6), int(y + ay * d * 0.5)),
            (int(ax * (1 - d * 0.6)), int(ay * (1 - d * 0.45))),
            0,
            0,
            360,
            1,
            -1,
        )
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
        cv2.line(
            band,
            (int(x - ax * 0.7), int(yy + ay * 0.08)),
            (int(x + ax * 0.7), int(yy - ay * 0.08)),
            1.0,
            max(2, int(S * 0.025 * scale)),
        )
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
        for x, y, ax, ay in an.lungs:
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
            cv2.line(
                m,
                (int(px - L * np.cos(a)), int(py - L * np.sin(a))),
                (int(px + L * np.cos(a)), int(py + L * np.sin(a))),
                1.0,
                1,
            )
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


def render_case(
    findings,
    rng: np.random.Generator,
    size: int = DEFAULT_SIZE,
    anatomy: Anatomy | None = None,
    params: dict | None = None,
    scales: dict | None = None,
    shift=(0.0, 0.0),
):
    """One radiograph with the given findings.

    Parameters
    ----------
    findings : iterable of str
        Labels to draw (others are ignored); Effusion, Pneumothorax and
        Hernia are drawn last.
    rng : numpy.random.Generator
        Draws everything not given.
    size : int, default=256
        Image side, in pixels.
    anatomy : Anatomy, optional
        The patient (default: drawn from ``rng``, with the heart enlarged or
        the lungs hyperinflated when the findings say so).
    params : dict, optional
        Label -> drawing parameters from an earlier call (a follow-up).
    scales : dict, optional
        Label -> size factor (default 1); 0 or less leaves the finding out.
    shift : (float, float), default=(0.0, 0.0)
        Translation ``(dx, dy)`` of the whole image, in pixels (a follow-up
        visit's positioning).

    Returns
    -------
    image : ndarray of uint8, shape (size, size)
        The radiograph.
    boxes : dict of str to list of float
        Label -> ``[x, y, w, h]`` in pixels (shifted with the image).
    anatomy : Anatomy
        The patient.
    params : dict
        Label -> drawing parameters, to draw the same findings again (for
        follow-ups: the same anatomy and params, other ``scales``).
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
