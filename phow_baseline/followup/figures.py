"""The diff directory: ``diff.json`` and its figures, overlays on the registered later image.

:func:`write_diff_dir` writes the grey images and the overlays, each with
its colour bar and units: structural dissimilarity ``(1 - SSIM) / 2``
(unitless, 0 = identical), the intensity difference (grey levels of the
8-bit image) and the heatmap differences of the findings whose score changed
most; pixels outside the overlap are hatched grey "no data"
(:func:`no_data_hatch`).  :func:`read_diff` and :func:`figure_paths` read
the directory back (for the report).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ..data.chestxray14 import LABELS
from ..io import atomic_path, atomic_write_bytes, atomic_write_json, confined, read_json
from .differences import ORDER_RULE, FollowupDiff

#: The two greys of the "no data" hatching (outside the overlap), RGB.
NO_DATA_GREYS = ((150, 150, 150), (205, 205, 205))


def no_data_hatch(shape, period: int = 8) -> np.ndarray:
    """Diagonal stripes (RGB uint8, the two :data:`NO_DATA_GREYS`) that mark pixels without data.

    Parameters
    ----------
    shape : (int, int)
        ``(H, W)`` in pixels (further entries are ignored).
    period : int, default=8
        Stripe period along x + y, in pixels; half of it is the darker grey.

    Returns
    -------
    ndarray of uint8, shape (H, W, 3)
        RGB.
    """
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    stripe = ((xx + yy) % period) < period // 2
    return np.where(stripe[..., None], np.uint8(NO_DATA_GREYS[0]), np.uint8(NO_DATA_GREYS[1])).astype(np.uint8)


def overlay_rgb(
    base: np.ndarray,
    values: np.ndarray,
    valid: np.ndarray,
    cmap: str,
    vmin: float,
    vmax: float,
    max_alpha: float = 0.85,
    signed: bool = False,
) -> np.ndarray:
    """An RGB image (uint8, same size as ``base``): ``values`` in colour over the grey ``base``.

    Inside ``valid`` the colour of ``cmap`` (over ``[vmin, vmax]``) is
    blended over the grey base with an opacity that grows with the size of
    the value (``|v| / max(|vmin|, |vmax|)`` when ``signed``, else
    ``(v - vmin) / (vmax - vmin)``; at most ``max_alpha``), so that where
    nothing changed the anatomy shows through; outside ``valid`` the pixels
    are the hatched grey of :func:`no_data_hatch`, whatever ``values`` holds.

    Parameters
    ----------
    base : ndarray, shape (H, W)
        Grey levels 0-255 (the registered later image).
    values : ndarray, shape (H, W)
        The map to show, in its own units (dissimilarity, grey levels,
        heatmap units).
    valid : ndarray, shape (H, W)
        Nonzero where ``values`` holds data.
    cmap : str
        A matplotlib colormap name (``"inferno"``, ``"RdBu_r"``).
    vmin, vmax : float
        The colour scale's ends, in the units of ``values`` (clipped beyond).
    max_alpha : float, default=0.85
        Opacity of the colour at the scale's extreme, in [0, 1].
    signed : bool, default=False
        A diverging map: opacity grows with ``|v|`` from 0 rather than from
        ``vmin``.

    Returns
    -------
    ndarray of uint8, shape (H, W, 3)
        RGB.
    """
    import matplotlib

    base = np.asarray(base, np.float32)
    v = np.asarray(values, np.float64)
    inside = np.asarray(valid) > 0
    span = max(vmax - vmin, 1e-12)
    rgba = matplotlib.colormaps[cmap](np.clip((v - vmin) / span, 0, 1))
    if signed:
        a = np.clip(np.abs(v) / max(abs(vmin), abs(vmax), 1e-12), 0, 1)
    else:
        a = np.clip((v - vmin) / span, 0, 1)
    a = (a * max_alpha)[..., None]
    grey = np.repeat(base[..., None], 3, axis=2)
    out = (1 - a) * grey + a * rgba[..., :3] * 255
    out = np.where(inside[..., None], out, no_data_hatch(base.shape))
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _save_figure(
    path, rgb: np.ndarray, title: str, cmap: str, vmin: float, vmax: float, units: str, extend: str = "neither"
) -> None:
    """``rgb`` framed with a title, a colour bar with ``units`` and a "no data" legend; PNG written atomically."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.patches import Patch

    h, w = rgb.shape[:2]
    fig, ax = plt.subplots(figsize=(4.6, 4.6 * h / w + 0.75), dpi=100)
    ax.imshow(rgb, interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(title, fontsize=8.5)
    cb = fig.colorbar(ScalarMappable(Normalize(vmin, vmax), cmap), ax=ax, fraction=0.046, pad=0.03, extend=extend)
    cb.set_label(units, fontsize=7.5)
    cb.ax.tick_params(labelsize=7)
    nd = Patch(
        facecolor=np.array(NO_DATA_GREYS[0]) / 255,
        edgecolor=np.array(NO_DATA_GREYS[1]) / 255,
        hatch="///",
        label="no data (outside the overlap)",
    )
    ax.legend(handles=[nd], loc="upper center", bbox_to_anchor=(0.5, -0.01), fontsize=7, frameon=False)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", bbox_inches="tight", pad_inches=0.06)
    plt.close(fig)


def _write_png(path, img: np.ndarray) -> None:
    ok, buf = cv2.imencode(".png", img)
    if not ok:
        raise ValueError(f"{path}: could not encode the image as PNG")
    atomic_write_bytes(path, buf.tobytes())


#: Upper end of the dissimilarity colour bar: (1 - SSIM) / 2 above it is drawn at the top colour.
DISSIMILARITY_MAX = 0.5


def _symmetric_limit(x: np.ndarray, mask: np.ndarray, floor: float) -> float:
    vals = np.abs(x[mask > 0]) if (mask > 0).any() else np.zeros(1)
    return float(max(np.percentile(vals, 99.5) if vals.size else 0.0, floor))


def write_diff_dir(
    out_dir, d: FollowupDiff, labels=LABELS, max_heat_labels: int = 4, heatmap_units: str = "heatmap units of the model"
) -> dict:
    """Write ``diff.json`` and the figures; returns the JSON.

    Files: ``a.png``, ``b.png``, ``b_registered.png`` (grey images);
    ``ssim_map.png``, ``intensity_diff.png`` and ``heatmap_diff_<label>.png``
    (overlays on the registered later image with colour bars; "no data"
    hatched).  ``diff.json`` names every figure under ``figures``;
    ``score_changes`` gives per finding the score (or probability) of A and
    of B and the change, and ``heatmap_labels`` the findings whose heatmap
    difference is drawn: those whose score changed most (ties: the larger
    heatmap change).  Each heatmap-difference figure shares one symmetric
    colour scale (the 99.5th percentile of ``|B - A|`` in the overlap), as
    does the intensity figure (at least 10 grey levels).

    Parameters
    ----------
    out_dir : str or Path
        The diff directory; created if needed, files replaced atomically.
    d : FollowupDiff
        What :func:`~.differences.diff_pair` gives.
    labels : sequence of str, default=LABELS
        Names of the heatmap and score rows, in their order: the model's
        ``labels`` (default the 14 ChestX-ray14 findings).
    max_heat_labels : int, default=4
        Heatmap-difference figures drawn, at most.
    heatmap_units : str, default="heatmap units of the model"
        The heatmaps' units, for the colour bars and ``diff.json``.

    Returns
    -------
    dict
        What ``diff.json`` holds: the image names, patient, order rule,
        notes, registration (motion, ECC, matrix, converged) and its
        quality, ``overlap_fraction`` (in [0, 1]), ``ssim_mean``,
        ``intensity_diff_mean_abs`` (grey levels), ``score_kind``,
        ``score_changes``, ``heatmap_labels``, ``heatmap_units``,
        ``figures`` (file names) and ``units``.

    Raises
    ------
    ValueError
        The scores or heatmaps are not one per label.
    """
    n_rows = len(d.scores_a) if d.scores_a is not None else len(d.heat_diff) if d.heat_a is not None else None
    if n_rows is not None and n_rows != len(labels):
        raise ValueError(f"{n_rows} scores or heatmaps per image but {len(labels)} labels; pass the model's labels")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _write_png(out / "a.png", d.a)
    _write_png(out / "b.png", d.b)
    _write_png(out / "b_registered.png", d.b_registered)
    q = d.quality
    warn = "" if q["reliable"] else "\n" + q["text"]
    dis = (1 - d.ssim_map) / 2
    _save_figure(
        out / "ssim_map.png",
        overlay_rgb(d.b_registered, dis, d._ssim_mask, "inferno", 0.0, DISSIMILARITY_MAX),
        f"Structural change on the later image{warn}",
        "inferno",
        0.0,
        DISSIMILARITY_MAX,
        "dissimilarity (1 - SSIM) / 2 (unitless; 0 = same)",
        extend="max",
    )
    lim = _symmetric_limit(d.intensity_diff, d.valid, 10.0)
    _save_figure(
        out / "intensity_diff.png",
        overlay_rgb(d.b_registered, d.intensity_diff, d.valid, "RdBu_r", -lim, lim, signed=True),
        f"Intensity change, later - earlier{warn}",
        "RdBu_r",
        -lim,
        lim,
        "grey levels (8-bit), after histogram matching",
        extend="both",
    )
    figures = {
        "a": "a.png",
        "b": "b.png",
        "b_registered": "b_registered.png",
        "ssim": "ssim_map.png",
        "intensity": "intensity_diff.png",
        "heatmaps": {},
    }
    changes = None
    if d.scores_a is not None:
        changes = {
            l: {"a": float(sa), "b": float(sb), "delta": float(sb - sa)}
            for l, sa, sb in zip(labels, d.scores_a, d.scores_b)
        }
    heat_labels = []
    if d.heat_a is not None:
        hd = d.heat_diff
        strength = np.abs(hd).reshape(len(hd), -1).sum(1)
        if d.scores_a is not None:
            dlt = np.abs(np.asarray(d.scores_b, float) - np.asarray(d.scores_a, float))
            order = np.lexsort((-strength, -dlt))[:max_heat_labels]
        else:
            order = np.argsort(-strength, kind="stable")[:max_heat_labels]
        hlim = _symmetric_limit(hd[order], np.broadcast_to(d.valid, hd[order].shape), 1e-9)
        what = "probability" if d.score_kind == "probability" else "score"
        for j in order:
            lab = labels[j]
            head = f"{lab}: heatmap B - A"
            if changes:
                c = changes[lab]
                head += f"\n{what} {c['a']:.3f} -> {c['b']:.3f} ({c['delta']:+.3f})"
            name = f"heatmap_diff_{lab}.png"
            _save_figure(
                out / name,
                overlay_rgb(d.b_registered, hd[j], d.valid, "RdBu_r", -hlim, hlim, signed=True),
                head + warn,
                "RdBu_r",
                -hlim,
                hlim,
                f"{heatmap_units} (B - A)",
                extend="both",
            )
            heat_labels.append(lab)
            figures["heatmaps"][lab] = name
    reg = d.registration
    meta = {
        "image_a": d.image_a,
        "image_b": d.image_b,
        "patient": d.patient,
        "order_rule": ORDER_RULE,
        "notes": d.notes,
        "metadata_followup": d.metadata_followup,
        "registration": {
            "motion": reg.motion,
            "ecc": reg.ecc,
            "matrix": reg.matrix.tolist(),
            "converged": reg.converged,
        },
        "registration_quality": q,
        "overlap_fraction": d.overlap_fraction,
        "ssim_mean": d.ssim_mean,
        "intensity_diff_mean_abs": float(np.abs(d.intensity_diff)[d.valid > 0].mean())
        if (d.valid > 0).any()
        else float("nan"),
        "score_kind": d.score_kind,
        "score_changes": changes,
        "heatmap_labels": heat_labels,
        "heatmap_units": heatmap_units,
        "figures": figures,
        "units": {"ssim": "dissimilarity (1 - SSIM) / 2, unitless", "intensity": "grey levels (8-bit)"},
    }
    atomic_write_json(out / "diff.json", meta)
    return meta


def read_diff(directory) -> dict:
    """``diff.json`` of a diff directory (errors name the file).

    Parameters
    ----------
    directory : str or Path
        A folder written by :func:`write_diff_dir`.

    Returns
    -------
    dict
        The JSON object (see :func:`write_diff_dir`).

    Raises
    ------
    DataFileError
        ``diff.json`` is missing, unreadable or not a JSON object.
    """
    return read_json(Path(directory) / "diff.json", what="diff.json (a diff directory)")


def figure_paths(directory, meta: dict) -> dict:
    """The figure files named in ``meta`` (``diff.json``), confined to ``directory``.

    ``{"a", "b_registered", "ssim", "intensity": Path, "heatmaps": {label: Path}}``;
    names that leave the folder (absolute, ``..``) raise
    :class:`phow_baseline.io.DataFileError`.  A ``diff.json`` without
    ``figures`` (older versions) gets the default names.

    Parameters
    ----------
    directory : str or Path
        The diff directory.
    meta : dict
        Its ``diff.json`` (:func:`read_diff`).

    Returns
    -------
    dict
        ``a``, ``b_registered``, ``ssim``, ``intensity``: Path each (not
        checked to exist), and ``heatmaps``: label -> Path.

    Raises
    ------
    DataFileError
        A name leaves the folder, or ``figures`` / ``figures.heatmaps`` is
        not an object.
    """
    directory = Path(directory)
    figs = meta.get("figures") or {}
    if not isinstance(figs, dict):
        from ..io import DataFileError

        raise DataFileError(f"{directory / 'diff.json'}: 'figures' must be an object")
    names = {
        "a": "a.png",
        "b_registered": "b_registered.png",
        "ssim": "ssim_map.png",
        "intensity": "intensity_diff.png",
    }
    out = {k: confined(directory, figs.get(k, v)) for k, v in names.items()}
    heat = figs.get("heatmaps")
    if heat is None:
        heat = {lab: f"heatmap_diff_{lab}.png" for lab in (meta.get("heatmap_labels") or [])}
    if not isinstance(heat, dict):
        from ..io import DataFileError

        raise DataFileError(f"{directory / 'diff.json'}: 'figures.heatmaps' must be an object")
    out["heatmaps"] = {str(lab): confined(directory, name) for lab, name in heat.items()}
    return out
