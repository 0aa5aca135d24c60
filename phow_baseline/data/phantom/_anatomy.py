"""The phantom's normal chest: a patient's geometry, its rendering, and the imaging chain.

Intensities: 0 = black, air; 1 = white, dense.  An elliptical body of soft
tissue, two lung fields (dark), the heart and mediastinum (bright,
cardiothoracic ratio 0.40-0.48 when normal), domed hemidiaphragms, 9
posterior ribs per side drawn as arcs, clavicles, soft-tissue texture,
variable patient size and exposure (:func:`render_base`); then exposure,
detector blur and quantum noise to 8 bits (:func:`finish`).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

DEFAULT_SIZE = 256


@dataclass
class Anatomy:
    """Geometry of one patient, in pixels of an ``S x S`` image.

    Made by :func:`make_anatomy`; x grows to the right, y downwards, origin
    at the top-left corner.

    Parameters
    ----------
    S : int
        Image side, in pixels.
    cx : float
        x of the body's midline.
    body_w : float
        Half-width of the body ellipse.
    lung_top, lung_bottom : float
        y of the lung apices and of the lung fields' lowest point.
    lungs : list of (float, float, float, float)
        Each lung field as an ellipse ``(cx, cy, ax, ay)`` (centre and
        half-axes): the patient's right (image left), then left.
    heart : (float, float, float, float)
        The heart ellipse ``(cx, cy, ax, ay)``.
    ctr : float
        Cardiothoracic ratio (heart width / thorax width): 0.40-0.47
        normal, 0.56-0.65 with cardiomegaly.
    exposure : float
        Exposure factor applied by :func:`finish` (0.85-1.15).
    emphysema : bool, default=False
        Hyperinflated lungs with flat hemidiaphragms.
    ribs_phase : float, default=0.0
        Vertical phase of the ribs, in [0, 1) of a rib spacing.
    """

    S: int
    cx: float
    body_w: float
    lung_top: float
    lung_bottom: float
    lungs: list  # [(cx, cy, ax, ay)] right (image left), left
    heart: tuple  # (cx, cy, ax, ay)
    ctr: float
    exposure: float
    emphysema: bool = False
    ribs_phase: float = 0.0

    def lung_mask(self) -> np.ndarray:
        """The two lung fields above the hemidiaphragms.

        Returns
        -------
        ndarray of uint8, shape (S, S)
            1 inside the lung fields, 0 elsewhere.
        """
        m = np.zeros((self.S, self.S), np.uint8)
        for x, y, ax, ay in self.lungs:
            cv2.ellipse(m, (int(x), int(y)), (int(ax), int(ay)), 0, 0, 360, 1, -1)
        dome = np.zeros_like(m)
        self._diaphragm(dome)
        m[dome > 0] = 0
        return m

    def _diaphragm(self, img, value=1):
        """Everything below the hemidiaphragm domes (flat when emphysematous)."""
        S = self.S
        for x, y, ax, ay in self.lungs:
            base = y + ay * (0.80 if not self.emphysema else 0.95)
            dome_h = ay * (0.22 if not self.emphysema else 0.04)
            xs = np.arange(int(x - ax * 1.1), int(x + ax * 1.1) + 1)
            ys = base - dome_h * np.sqrt(np.clip(1 - ((xs - x) / (ax * 1.1)) ** 2, 0, 1))
            pts = np.concatenate([np.stack([xs, ys], 1), [[xs[-1], S], [xs[0], S]]]).astype(np.int32)
            cv2.fillPoly(img, [pts], value)


def make_anatomy(rng: np.random.Generator, S: int, cardiomegaly=False, emphysema=False) -> Anatomy:
    """Draw one patient's geometry for an ``S x S`` image (heart enlarged or lungs hyperinflated when asked).

    Parameters
    ----------
    rng : numpy.random.Generator
        Draws the patient's size (0.88-1.05), position, exposure and ribs.
    S : int
        Image side, in pixels.
    cardiomegaly : bool, default=False
        Cardiothoracic ratio 0.56-0.65 instead of 0.40-0.47.
    emphysema : bool, default=False
        Taller lung fields and flat hemidiaphragms.

    Returns
    -------
    Anatomy
        The geometry, in pixels.
    """
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
    return Anatomy(
        S,
        cx,
        body_w,
        lung_top,
        lung_top + 2 * ay,
        lungs,
        heart,
        ctr,
        exposure=rng.uniform(0.85, 1.15),
        emphysema=emphysema,
        ribs_phase=rng.uniform(0, 1),
    )


def _box(x0, y0, x1, y1, S):
    x0, y0 = max(0.0, x0), max(0.0, y0)
    x1, y1 = min(S - 1.0, x1), min(S - 1.0, y1)
    return [float(x0), float(y0), float(x1 - x0), float(y1 - y0)]


def render_base(an: Anatomy, rng: np.random.Generator) -> np.ndarray:
    """The normal chest of ``an`` as float32 density in [0, 1] (before noise).

    Parameters
    ----------
    an : Anatomy
        The patient's geometry.
    rng : numpy.random.Generator
        Draws the soft-tissue texture.

    Returns
    -------
    ndarray of float32, shape (S, S)
        Density, about 0 (air, black) to 1 (dense, white): lungs about
        0.16 (0.06 emphysematous), soft tissue 0.55, abdomen 0.62, heart and
        mediastinum 0.72, clavicles 0.85, plus texture and ribs (+0.1).
    """
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
    for x, _y, ax, ay in an.lungs:
        for k in range(9):
            ry = an.lung_top + (k + 0.3 + 0.4 * an.ribs_phase) * (2 * ay) / 9.5
            cv2.ellipse(
                ribs, (int(x), int(ry - ay * 0.15)), (int(ax * 1.15), int(ay * 0.2)), 0, 15, 165, 1.0, max(1, S // 90)
            )
    ribs *= body
    img += 0.10 * ribs
    # clavicles
    for sgn in (-1, 1):
        p0 = (int(an.cx + sgn * S * 0.04), int(an.lung_top + S * 0.02))
        p1 = (int(an.cx + sgn * S * 0.30), int(an.lung_top - S * 0.04))
        cv2.line(img, p0, p1, 0.85, max(2, S // 45))
    return img


def finish(img: np.ndarray, an: Anatomy, rng: np.random.Generator) -> np.ndarray:
    """Exposure, detector blur and quantum noise; to 8 bits.

    The density is clipped to [0, 1.2], multiplied by ``an.exposure``,
    blurred (Gaussian, sigma ``S / 400 + 0.3`` pixels), given noise of
    standard deviation ``0.012 + 0.02 sqrt(x)``, then mapped by
    ``230 x + 8`` to grey levels and clipped to [0, 255].

    Parameters
    ----------
    img : ndarray of float32, shape (S, S)
        Density, as :func:`render_base` gives it (findings drawn in).
    an : Anatomy
        The patient (its exposure and size).
    rng : numpy.random.Generator
        Draws the noise.

    Returns
    -------
    ndarray of uint8, shape (S, S)
        The radiograph.
    """
    S = an.S
    x = np.clip(img, 0, 1.2) * an.exposure
    x = cv2.GaussianBlur(x, (0, 0), S / 400 + 0.3)
    x = x + rng.normal(0, 1, x.shape).astype(np.float32) * (0.012 + 0.02 * np.sqrt(np.clip(x, 0, None)))
    return np.clip(x * 230 + 8, 0, 255).astype(np.uint8)
