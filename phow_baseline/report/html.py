"""The static HTML report and follow-up dashboard: one self-contained file, no server.

``write_report(run_dirs, out_dir, localization_dirs, diff_dirs, compare_dirs=...)``
reads the files the other commands write (``metrics.json`` + figures of each
run, ``paired.json`` + forest plots of a ``compare --out`` folder,
``localization.json`` + ``heatmaps/`` of a localization evaluation,
``diff.json`` + PNGs of a follow-up difference) and writes
``out_dir/index.html`` with every figure embedded as a ``data:image/png``
URI, so the file can be mailed, archived or opened offline.

Sections: per-class AUROC (bootstrap intervals, with the number of
resamples used where below the number asked for) next to the published
columns (ChestX-ray14's, shown only when a run is on ChestX-ray14, and only
for its label names); internal vs external AUROC, side by side, when a
cross-dataset run (``phow-baseline evaluate MODEL OTHER_DATA``) is given with
a run on the model's own dataset; the paired comparisons of runs (the mean
AUROC difference with DeLong's and the bootstrap's intervals, a forest plot of
the per-class differences, a link to ``paired.md``); ROC curves as small multiples; calibration (reliability diagrams,
Brier score and ECE) and the operating points (sensitivity, specificity,
PPV, NPV at the validation thresholds) when the run has probabilities;
subgroups (a compact table of mean AUROC, gap and false-negative rate by
sex, age band, view and follow-up, the metadata problems, the gap figure);
localization; the follow-up dashboards (overlays on the registered later
image, the registration quality in words, probability changes).  Sections
without input are left out, except localization and follow-up, which say what
would fill them; the navigation bar links the sections present.  File names
read from ``diff.json`` and ``paired.json`` are confined to their folder.

Templating is :class:`string.Template` plus :func:`html.escape` (no extra
dependency); every piece of text that comes from an input file (model
names, labels, image names, notes) is escaped.  The page needs no
JavaScript; a four-line inline script only records, on ``<body>``, how many
figures the browser decoded (``data-images-loaded`` / ``data-images-total``)
so that the browser test can check it.
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
import re
from collections.abc import Sequence
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from string import Template

from .. import __version__
from ..data.chestxray14 import LABELS
from ..data.label_map import label_key, shared_name
from ..evaluation import PUBLISHED, ROC_MARKED
from ..followup import Registration, figure_paths, registration_quality
from ..io import atomic_write_text

_e = html.escape
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

#: Example heatmaps shown per localization directory.
MAX_HEATMAPS = 8


# --------------------------------------------------------------------------
# Reading inputs (every error names the file)
# --------------------------------------------------------------------------


def _template(name: str) -> str:
    return resources.files("phow_baseline.report").joinpath("templates", name).read_text(encoding="utf-8")


def _read_json(path: Path, required: Sequence[str], what: str) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not a {what} directory (no {path.name})")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: invalid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(data).__name__}")
    missing = [k for k in required if k not in data]
    if missing:
        raise ValueError(f"{path}: missing key(s) {', '.join(map(repr, missing))}")
    return data


def read_run(run_dir) -> dict:
    """``metrics.json`` of a run directory (see :func:`phow_baseline.evaluation.write_run_dir`).

    Parameters
    ----------
    run_dir : str or path-like
        A run directory.

    Returns
    -------
    dict
        The ``metrics.json`` contents, with at least ``model``, ``auroc``
        ({label: AUROC or None}) and ``mean_auroc``.

    Raises
    ------
    FileNotFoundError
        No ``metrics.json`` (not a run directory).
    ValueError
        Invalid JSON, not an object, a missing key, or an ``auroc`` that is
        not an object (the message names the file).
    """
    p = Path(run_dir) / "metrics.json"
    m = _read_json(p, ("model", "auroc", "mean_auroc"), "run")
    if not isinstance(m["auroc"], dict):
        raise ValueError(f"{p}: 'auroc' must be an object {{label: value}}")
    return m


def read_localization_dir(directory) -> dict:
    """``localization.json`` of a ``localize-eval`` output directory (0.1's ``localisation.json`` too).

    Parameters
    ----------
    directory : str or path-like
        A localization directory
        (:func:`phow_baseline.evaluation.localization.write_localization_dir`).

    Returns
    -------
    dict
        The localization result: thresholds, accuracies (one per threshold,
        fractions in [0, 1]) and average false positives per class, images
        per class.

    Raises
    ------
    FileNotFoundError
        No ``localization.json``.
    ValueError
        Invalid JSON, a missing key, or an accuracy list whose length is not
        the number of thresholds (the message names the file).
    """
    from ..evaluation.localization import localization_file

    p = localization_file(directory)
    r = _read_json(
        p, ("iobb_thresholds", "iou_thresholds", "accuracy_iobb", "accuracy_iou", "avg_fp", "n_images"), "localization"
    )
    for key, thr in (("accuracy_iobb", "iobb_thresholds"), ("accuracy_iou", "iou_thresholds")):
        for lab, acc in r[key].items():
            if not isinstance(acc, list) or len(acc) != len(r[thr]):
                raise ValueError(f"{p}: {key}[{lab!r}] must list one accuracy per entry of {thr}")
    return r


def read_diff_dir(directory) -> dict:
    """``diff.json`` of a ``diff`` output directory.

    Parameters
    ----------
    directory : str or path-like
        A follow-up difference directory (``phow-baseline diff``).

    Returns
    -------
    dict
        The ``diff.json`` contents, with at least ``image_a``, ``image_b``,
        ``ssim_mean`` and ``registration`` (``motion``, ``ecc``, ``converged``).

    Raises
    ------
    FileNotFoundError
        No ``diff.json``.
    ValueError
        Invalid JSON, a missing key or an incomplete ``registration`` (the
        message names the file).
    """
    p = Path(directory) / "diff.json"
    m = _read_json(p, ("image_a", "image_b", "registration", "ssim_mean"), "diff")
    reg = m["registration"]
    if not isinstance(reg, dict) or not {"motion", "ecc", "converged"} <= set(reg):
        raise ValueError(f"{p}: 'registration' needs keys 'motion', 'ecc', 'converged'")
    return m


def png_data_uri(path) -> str:
    """The bytes of a PNG file as a ``data:image/png;base64,...`` URI (checks the PNG signature).

    Parameters
    ----------
    path : str or path-like
        A PNG file.

    Returns
    -------
    str
        ``"data:image/png;base64,"`` and the file's bytes in base64 (about
        4/3 of the file's size).

    Raises
    ------
    FileNotFoundError
        The file is missing.
    ValueError
        The file does not start with the PNG signature.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: figure missing")
    data = p.read_bytes()
    if not data.startswith(_PNG_SIGNATURE):
        raise ValueError(f"{p}: not a PNG file")
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


# --------------------------------------------------------------------------
# HTML pieces
# --------------------------------------------------------------------------


def _figure(path, alt: str, cls: str = "", caption: str = "") -> str:
    cap = f"<figcaption>{_e(caption)}</figcaption>" if caption else ""
    return f'<figure class="{cls}"><img src="{png_data_uri(path)}" alt="{_e(alt)}">{cap}</figure>'


def _num(v, digits=3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    return f"{float(v):.{digits}f}"


def run_labels(runs: Sequence[dict]) -> list[str]:
    """The labels of the runs, in the order of their ``labels`` (the first run's first), each once.

    Parameters
    ----------
    runs : sequence of dict
        ``metrics.json`` contents (a run without ``labels`` lists those of its ``auroc``).

    Returns
    -------
    list of str
        Every label of the runs, once, in order of first appearance.
    """
    out = {}
    for r in runs:
        for lab in r.get("labels") or list(r["auroc"]):
            out.setdefault(str(lab), None)
    return list(out)


def run_dataset_kind(run: dict) -> str:
    """The kind of the dataset a run scored (``"chestxray14"`` for a run that does not record it).

    Parameters
    ----------
    run : dict
        ``metrics.json`` contents (its ``dataset`` entry, when present, has ``kind``).

    Returns
    -------
    str
        The dataset kind, e.g. ``"chestxray14"``, ``"chexpert"``, ``"mimic"``.
    """
    d = run.get("dataset")
    return str(d.get("kind", "chestxray14")) if isinstance(d, dict) else "chestxray14"


def auroc_section(runs: Sequence[dict]) -> str:
    """Per-class AUROC (with bootstrap 95 % CI) of each run next to every :data:`PUBLISHED` column.

    The published columns (ChestX-ray14 models) are shown only when a run scored ChestX-ray14, and only
    in the rows of ChestX-ray14's labels.

    Parameters
    ----------
    runs : sequence of dict
        ``metrics.json`` contents (uses ``model``, ``kind``, ``split``, ``n_test``, ``auroc``,
        ``auroc_ci95``, ``mean_auroc``, ``n_bootstrap`` and ``n_bootstrap_used``).

    Returns
    -------
    str
        The HTML section ``<section id='auroc'>``: one row per label and a ``Mean`` row, one column per
        run then per published model, with a legend.
    """
    refs = list(PUBLISHED) if any(run_dataset_kind(r) == "chestxray14" for r in runs) else []
    head = "".join(
        f"<th>{_e(str(r['model']))}<br><span class='legend'>{_e(str(r.get('kind', '')))}, "
        f"split: {_e(str(r.get('split', '?')))}, n={_e(str(r.get('n_test', '?')))}</span></th>"
        for r in runs
    )
    head += "".join(
        f"<th class='ref'>{_e(k)}<br><span class='legend'>split: {_e(PUBLISHED[k]['split'])}</span></th>" for k in refs
    )
    rows = []
    for lab in run_labels(runs):
        cells = []
        for r in runs:
            ci = (r.get("auroc_ci95") or {}).get(lab)
            ci_s = f"<br><span class='ci'>[{_num(ci[0])}, {_num(ci[1])}]</span>" if ci else ""
            cells.append(
                f"<td>{_num(r['auroc'].get(lab))}{ci_s}{_nboot(r, (r.get('n_bootstrap_used') or {}).get(lab))}</td>"
            )
        for k in refs:
            vals = dict(zip(LABELS, PUBLISHED[k]["auroc"] or ()))
            cells.append(f"<td class='ref'>{_num(vals[lab]) if lab in vals else '&ndash;'}</td>")
        rows.append(f"<tr><td>{_e(lab)}</td>{''.join(cells)}</tr>")
    mean = "".join(f"<td>{_num(r.get('mean_auroc'))}</td>" for r in runs)
    mean += "".join(f"<td class='ref'>{_num(PUBLISHED[k]['mean'])}</td>" for k in refs)
    rows.append(f"<tr class='mean'><td>Mean</td>{mean}</tr>")
    legend = "".join(
        f"<li><b>{_e(k)}</b>: {_e(PUBLISHED[k]['title'])}; split: {_e(PUBLISHED[k]['split'])}</li>" for k in refs
    )
    if not refs:
        return (
            f"<section id='auroc'><h2>Per-class AUROC</h2><table class='auroc'><thead><tr><th>label</th>{head}"
            f"</tr></thead><tbody>{''.join(rows)}</tbody></table><p class='legend'>Bracketed: bootstrap 95 % "
            f"intervals; <span class='nboot'>n=k/N</span>: the interval rests on k of the N resamples, the others "
            f"drew no positive or no negative image of the class. No run scored ChestX-ray14, so the published "
            f"ChestX-ray14 columns are not shown.</p></section>"
        )
    return (
        f"<section id='auroc'><h2>Per-class AUROC</h2><table class='auroc'><thead><tr><th>label</th>{head}"
        f"</tr></thead><tbody>{''.join(rows)}</tbody></table><p class='legend'>Runs first (bracketed: "
        f"bootstrap 95 % intervals; <span class='nboot'>n=k/N</span>: the interval rests on k of the N "
        f"resamples, the others drew no positive or no negative image of the class), then the published "
        f"columns. The published models were trained and "
        f"tested on other splits, named below, so compare with care: only Wang2017_official used the "
        f"official test list.</p><ul class='legend'>{legend}</ul></section>"
    )


def _shared_key(label: str) -> str:
    """The key joining a label across datasets: its shared name (:mod:`phow_baseline.data.label_map`)."""
    return shared_name(label) or label_key(label)


def external_section(runs: Sequence[dict]) -> str:
    """Internal vs external AUROC: each cross-dataset run beside a run of the same model on its own dataset.

    A cross-dataset run (``metrics.json`` with ``external``) is paired with the run without one that
    has the same model name, else the first run without one; their labels are joined on the shared
    name.  Empty when no such pair is given.

    Parameters
    ----------
    runs : sequence of dict
        ``metrics.json`` contents.

    Returns
    -------
    str
        The HTML section, or ``""``.
    """
    internal = [r for r in runs if not r.get("external")]
    external = [r for r in runs if r.get("external")]
    if not internal or not external:
        return ""
    parts = ["<section id='external'><h2>Internal vs external AUROC</h2>"]
    for ext in external:
        own = next((r for r in internal if r.get("model") == ext.get("model")), internal[0])
        inner = {_shared_key(lab): a for lab, a in own["auroc"].items()}
        rows, diffs = [], []
        for lab in ext.get("labels") or list(ext["auroc"]):
            a_in, a_ex = inner.get(_shared_key(lab)), ext["auroc"].get(lab)
            d = None if a_in is None or a_ex is None else float(a_ex) - float(a_in)
            if d is not None:
                diffs.append(d)
            d_s = "n/a" if d is None else f"{d:+.3f}"
            rows.append(f"<tr><td>{_e(str(lab))}</td><td>{_num(a_in)}</td><td>{_num(a_ex)}</td><td>{d_s}</td></tr>")
        if diffs:
            mean = sum(diffs) / len(diffs)
            rows.append(
                f"<tr class='mean'><td>Mean difference ({len(diffs)} labels)</td><td></td><td></td>"
                f"<td>{mean:+.3f}</td></tr>"
            )
        info = ext["external"]
        dropped = ", ".join(map(str, info.get("dropped_model") or [])) or "none"
        dropped_data = ", ".join(map(str, info.get("dropped_data") or [])) or "none"
        parts.append(
            f"<h3>{_e(str(ext.get('model', '?')))}: {_e(run_dataset_kind(own))} (internal, split "
            f"{_e(str(own.get('split', '?')))}, n={_e(str(own.get('n_test', '?')))}) vs "
            f"{_e(str(info.get('dataset', '?')))} (external, split {_e(str(ext.get('split', '?')))}, "
            f"n={_e(str(ext.get('n_test', '?')))})</h3>"
            f"<table class='external'><thead><tr><th>label</th><th>internal AUROC</th><th>external AUROC</th>"
            f"<th>difference (external - internal)</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
            f"<p class='legend'>The labels the model and the external dataset share (by the label map's shared "
            f"names). Dropped, the model's labels the external dataset lacks: {_e(dropped)}; the external "
            f"dataset's labels the model lacks: {_e(dropped_data)}.</p>"
        )
    parts.append("</section>")
    return "".join(parts)


def _nboot(r: dict, used) -> str:
    """``n=k/N`` when an interval used fewer bootstrap resamples than asked for."""
    asked = r.get("n_bootstrap")
    if used is None or not asked or int(used) >= int(asked):
        return ""
    return f"<br><span class='nboot'>n={int(used)}/{int(asked)}</span>"


def roc_section(run_dirs: Sequence[Path], runs: Sequence[dict]) -> str:
    """The ROC figures of the runs (``roc.png``), each with its caption.

    Parameters
    ----------
    run_dirs : sequence of Path
        Run directories (:func:`phow_baseline.evaluation.write_run_dir`).
    runs : sequence of dict
        ``metrics.json`` contents, in the order of ``run_dirs``.

    Returns
    -------
    str
        The HTML section ``<section id='roc'>`` with each run's ``roc.png`` embedded.

    Raises
    ------
    FileNotFoundError, ValueError
        A missing ``roc.png`` or a file that is not a PNG.
    """
    figs = "".join(
        _figure(
            Path(d) / "roc.png", f"ROC curves of {r['model']}", "roc", f"{r['model']} (split: {r.get('split', '?')})"
        )
        for d, r in zip(run_dirs, runs)
    )
    marked = ", ".join(ROC_MARKED)
    return (
        f"<section id='roc'><h2>ROC curves</h2><p class='legend'>One panel per class: the test curve (x: false "
        f"positive rate, 1 - specificity; y: true positive rate, sensitivity; both fractions from 0 to 1), its "
        f"pointwise bootstrap 95 % band, and along the bottom an AUROC scale from 0.5 to 1 with this run "
        f"(dot) and the published AUROCs of {_e(marked)} (triangles).</p>{figs}</section>"
    )


def calibration_section(run_dirs: Sequence[Path], runs: Sequence[dict]) -> str:
    """Reliability diagrams, the Brier/ECE table and the operating-point table of the runs that have them.

    Parameters
    ----------
    run_dirs : sequence of Path
        Run directories (:func:`phow_baseline.evaluation.write_run_dir`).
    runs : sequence of dict
        ``metrics.json`` contents, in the order of ``run_dirs`` (``calibration`` and
        ``operating_points`` are read when present).

    Returns
    -------
    str
        The HTML section ``<section id='calibration'>``; it says so when no run has calibrated
        probabilities.
    """
    cal_runs = [(Path(d), r) for d, r in zip(run_dirs, runs) if r.get("calibration")]
    op_runs = [(Path(d), r) for d, r in zip(run_dirs, runs) if r.get("operating_points")]
    parts = ["<section id='calibration'><h2>Calibration and operating points</h2>"]
    if not cal_runs and not op_runs:
        parts.append(
            "<p>No run has calibrated probabilities (an older run directory, or raw scores only).</p></section>"
        )
        return "".join(parts)
    if cal_runs:
        nb = {int(r["calibration"].get("n_bins", 0)) for _, r in cal_runs}
        head = "".join(f"<th colspan='2'>{_e(str(r['model']))}</th>" for _, r in cal_runs)
        sub = "<th>Brier</th><th>ECE</th>" * len(cal_runs)
        rows = []
        for lab in run_labels([r for _, r in cal_runs]):
            cells = "".join(
                f"<td>{_num((r['calibration'].get('brier') or {}).get(lab), 4)}</td>"
                f"<td>{_num((r['calibration'].get('ece') or {}).get(lab), 4)}</td>"
                for _, r in cal_runs
            )
            rows.append(f"<tr><td>{_e(lab)}</td>{cells}</tr>")
        mean = "".join(
            f"<td>{_num(r['calibration'].get('mean_brier'), 4)}</td>"
            f"<td>{_num(r['calibration'].get('mean_ece'), 4)}</td>"
            for _, r in cal_runs
        )
        rows.append(f"<tr class='mean'><td>Mean</td>{mean}</tr>")
        changed = [str(r["model"]) for _, r in cal_runs if r["calibration"].get("auroc_unchanged") is False]
        warn = (
            (
                f"<p class='warn'>The probabilities of {_e(', '.join(changed))} do not rank the images as the "
                f"scores do: the AUROC of the probabilities differs.</p>"
            )
            if changed
            else ""
        )
        figs = "".join(
            _figure(
                d / "calibration.png",
                f"reliability diagrams of {r['model']}",
                "roc",
                f"{r['model']}: reliability diagrams",
            )
            for d, r in cal_runs
            if (d / "calibration.png").is_file()
        )
        parts.append(
            f"<h3>Calibration on the test split</h3><table class='calib'><thead><tr><th rowspan='2'>label</th>{head}"
            f"</tr><tr>{sub}</tr></thead><tbody>{''.join(rows)}</tbody></table>{warn}"
            f"<p class='legend'>Brier score: mean of (p - y)<sup>2</sup> (0 is perfect). ECE: expected calibration "
            f"error over {_e('/'.join(str(n) for n in sorted(nb)))} equal-width probability bins, the "
            f"image-weighted mean gap between predicted probability and observed frequency (0 is perfect). "
            f"Reliability diagrams: observed fraction positive against mean predicted probability per bin "
            f"(dashed: perfect calibration).</p><div class='figs'>{figs}</div>"
        )
    for _, r in op_runs:
        ops = r["operating_points"]
        rates = ("sensitivity", "specificity", "ppv", "npv")
        rows = []
        for lab, e in (ops.get("per_class") or {}).items():
            used = e.get("n_bootstrap_used") or {}
            cells = []
            for k in rates:
                ci = e.get(f"{k}_ci95")
                ci_s = f"<br><span class='ci'>[{_num(ci[0])}, {_num(ci[1])}]</span>" if ci else ""
                cells.append(f"<td>{_num(e.get(k))}{ci_s}{_nboot(r, used.get(k))}</td>")
            counts = "/".join(str(e.get(k, "?")) for k in ("tp", "fp", "tn", "fn"))
            mark = " *" if lab in (ops.get("fallback") or {}) else ""
            rows.append(
                f"<tr><td>{_e(str(lab))}{mark}</td><td>{_num(e.get('threshold'), 4)}</td>{''.join(cells)}"
                f"<td>{_e(counts)}</td></tr>"
            )
        fitted = (r.get("calibration") or {}).get("fitted_on") or {}
        where = (
            f"out-of-fold scores of {fitted.get('folds')} patient-wise folds of the training images"
            if fitted.get("method") == "cross-fitted"
            else "the validation carve"
        )
        fallback = ops.get("fallback") or {}
        fb = (
            "<p class='warn'>* Fallback (too few positives or negatives to fit on): "
            + "; ".join(f"{_e(str(lab))}: {_e(str(rule))}" for lab, rule in fallback.items())
            + ".</p>"
            if fallback
            else ""
        )
        parts.append(
            f"<h3>Operating points of {_e(str(r['model']))}</h3><table class='ops'><thead><tr><th>label</th>"
            f"<th>threshold</th><th>sensitivity</th><th>specificity</th><th>PPV</th><th>NPV</th>"
            f"<th>TP/FP/TN/FN</th></tr></thead><tbody>{''.join(rows)}</tbody></table>{fb}"
            f"<p class='legend'>Thresholds chosen on {_e(where)} by {_e(str(ops.get('rule', '?')))}, "
            f"applied to the {_e(str(ops.get('applies_to', 'probability')))} on the test split "
            f"(n={_e(str(r.get('n_test', '?')))}); a finding is called present when the value is at least the "
            f"threshold. Bracketed: bootstrap 95 % intervals.</p>"
        )
    parts.append("</section>")
    return "".join(parts)


def _afp_at(r: dict, lab: str, threshold: float = 0.5):
    """Average false positives per image; a float (contract) or one value per IoBB threshold."""
    v = r["avg_fp"].get(lab)
    if isinstance(v, list):
        tb = r["iobb_thresholds"]
        return v[tb.index(threshold)] if threshold in tb else None
    return v


def _heatmap_caption(path: Path, probabilities: dict | None = None) -> str:
    """``00000032_011_Mass.png`` -> ``00000032_011.png: Mass`` (labels may contain ``_``), with the
    finding's probability when ``probabilities`` (``{file name: p}``) has it.
    """
    cap = path.stem
    for lab in sorted(LABELS, key=len, reverse=True):
        if path.stem.endswith("_" + lab):
            cap = f"{path.stem[: -len(lab) - 1]}.png: {lab}"
            break
    p = (probabilities or {}).get(path.name)
    if isinstance(p, (int, float)) and not isinstance(p, bool):
        cap += f", p = {float(p):.3f}"
    return cap


#: The colour bar of the localization heatmaps (OpenCV's JET, as ``localize.overlay`` draws them).
_JET_BAR = (
    "<div class='cbar'><span>0</span><div class='jet'></div><span>max</span> "
    "<span class='legend'>heatmap: positive evidence for the finding, scaled to its maximum in each "
    "image (unitless); uncoloured: none</span></div>"
)


def localization_section(loc_dirs: Sequence[Path]) -> str:
    """Accuracy at T(IoBB) and T(IoU) and example heatmaps of each localization directory.

    Parameters
    ----------
    loc_dirs : sequence of Path
        ``localize-eval`` outputs.

    Returns
    -------
    str
        The HTML section ``<section id='localization'>``; it names the command to run when
        ``loc_dirs`` is empty.
    """
    parts = ["<section id='localization'><h2>Localization against the NIH boxes</h2>"]
    if not loc_dirs:
        parts.append("<p>No localization evaluation given (<code>phow-baseline localize-eval</code>).</p>")
    for d in loc_dirs:
        d = Path(d)
        r = read_localization_dir(d)
        ref_map = r.get("reference_iobb_0.5") or {}
        tb, tu = r["iobb_thresholds"], r["iou_thresholds"]
        head = "".join(f"<th>T(IoBB)={_e(str(t))}</th>" for t in tb)
        rows = []
        for lab, acc in r["accuracy_iobb"].items():
            rows.append(
                f"<tr><td>{_e(lab)}</td><td>{_e(str(r['n_images'].get(lab, '')))}</td>"
                + "".join(f"<td>{_num(a)}</td>" for a in acc)
                + f"<td>{_num(_afp_at(r, lab), 2)}</td><td class='ref'>{_num(ref_map.get(lab), 4)}</td></tr>"
            )
        rows_u = "".join(
            f"<tr><td>{_e(lab)}</td>" + "".join(f"<td>{_num(a)}</td>" for a in acc) + "</tr>"
            for lab, acc in r["accuracy_iou"].items()
        )
        heat = sorted((d / "heatmaps").glob("*.png"))[:MAX_HEATMAPS] if (d / "heatmaps").is_dir() else []
        probs = r.get("heatmap_probabilities") if isinstance(r.get("heatmap_probabilities"), dict) else {}
        figs = "".join(
            _figure(p, f"heatmap {_heatmap_caption(p, probs)}", "small", _heatmap_caption(p, probs)) for p in heat
        )
        ref_note = r.get("reference") or "Wang et al. 2017, ChestX-ray14 model, arXiv Table 19 (T(IoBB) = 0.5)"
        parts.append(
            f"<h3>{_e(str(r.get('model', d.name)))} ({_e(str(r.get('kind', '?')))}, "
            f"{_e(str(r.get('image_size', '?')))} px)</h3>"
            f"<table class='loc'><thead><tr><th>label</th><th>n</th>{head}<th>avg FP (IoBB 0.5)</th>"
            f"<th class='ref'>Wang 2017 T(IoBB)=0.5</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
            f"<table class='loc-iou'><thead><tr><th>label</th>"
            f"{''.join(f'<th>T(IoU)={_e(str(t))}</th>' for t in tu)}</tr></thead><tbody>{rows_u}</tbody></table>"
            f"<p class='legend'>Accuracy: fraction of boxed images of the class with a predicted box over the "
            f"threshold. Reference: {_e(str(ref_note))}. Heatmaps: NIH box in green, boxes from the heatmap "
            f"in white.</p>" + (f"{_JET_BAR}<div class='figs'>{figs}</div>" if figs else "<p>No example heatmaps.</p>")
        )
    parts.append("</section>")
    return "".join(parts)


def _trend(delta) -> str:
    d = float(delta)
    return "up" if d > 0 else "down" if d < 0 else "same"


def _quality(m: dict) -> dict:
    q = m.get("registration_quality")
    if isinstance(q, dict) and {"level", "text", "reliable"} <= set(q):
        return q
    reg = m["registration"]
    return registration_quality(
        Registration(None, float(reg["ecc"]), bool(reg["converged"]), str(reg["motion"])),
        float(m.get("overlap_fraction", 1.0)),
    )


def _dashboard(d: Path) -> str:
    m = read_diff_dir(d)
    reg = m["registration"]
    paths = figure_paths(d, m)
    q = _quality(m)
    figs = [
        _figure(paths["a"], "earlier image A", "small", f"A (earlier): {m['image_a']}"),
        _figure(
            paths["b_registered"],
            "later image B registered to A",
            "small",
            f"B (later), registered to A: {m['image_b']}",
        ),
        _figure(
            paths["ssim"],
            "structural change on the registered later image",
            "overlay",
            "structural change, (1 - SSIM) / 2, on B registered",
        ),
        _figure(
            paths["intensity"],
            "intensity change on the registered later image",
            "overlay",
            "intensity change B - A (grey levels) on B registered",
        ),
    ]
    kind = "probability" if m.get("score_kind") == "probability" else "score"
    changes = m.get("score_changes") or {}
    heat_items = list(paths["heatmaps"].items())
    heat = "".join(
        _figure(
            p,
            f"heatmap difference {lab}",
            "overlay",
            f"{lab}: heatmap B - A"
            + (f"; {kind} {_num(changes[lab]['a'])} -> {_num(changes[lab]['b'])}" if lab in changes else ""),
        )
        for lab, p in heat_items
    )
    table = "<p>No model given: no score changes.</p>"
    if m.get("score_changes"):
        try:
            ch = sorted(m["score_changes"].items(), key=lambda kv: -abs(float(kv[1]["delta"])))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{d / 'diff.json'}: score_changes needs {{label: {{a, b, delta}}}} ({exc})") from exc
        rows = "".join(
            f"<tr><td>{_e(lab)}</td><td>{_num(c['a'])}</td><td>{_num(c['b'])}</td>"
            f"<td class='{_trend(c['delta'])}'>{float(c['delta']):+.3f}</td></tr>"
            for lab, c in ch
        )
        table = (
            f"<table class='scores'><thead><tr><th>finding</th><th>{kind} A (earlier)</th>"
            f"<th>{kind} B (later)</th><th>change B - A</th></tr></thead><tbody>{rows}</tbody></table>"
        )
    matrix = reg.get("matrix")
    mat_s = ("; matrix " + " / ".join(" ".join(f"{float(v):.3f}" for v in row) for row in matrix)) if matrix else ""
    ida = m.get("intensity_diff_mean_abs")
    notes = "".join(f"<li>{_e(str(n))}</li>" for n in (m.get("notes") or []) if str(n) != q["text"])
    conv = "converged" if reg["converged"] else "NOT converged"
    ov = m.get("overlap_fraction")
    quality = f"<p class='{'ok' if q['reliable'] else 'warn'}'>Registration: {_e(str(q['text']))}</p>"
    return (
        f"<div class='dashboard'><h3>Patient {_e(str(m.get('patient', '?')))}: {_e(str(m['image_a']))} &rarr; "
        f"{_e(str(m['image_b']))}</h3>{quality}"
        f"<table class='reg'><tbody><tr><td>registration</td><td>{_e(str(reg['motion']))}, {conv}</td></tr>"
        f"<tr><td>ECC correlation</td><td>{_num(reg['ecc'])}</td></tr>"
        f"<tr><td>overlap (share of A covered)</td><td>{_num(ov)}</td></tr>"
        f"<tr><td>mean SSIM (inside the overlap)</td><td>{_num(m['ssim_mean'])}</td></tr>"
        f"<tr><td>mean |intensity difference| (grey levels)</td><td>{_num(ida)}</td></tr></tbody></table>"
        f"<p class='legend'>Order: {_e(str(m.get('order_rule', '')))}{_e(mat_s)}. Differences are computed only "
        f'where both images have data; hatched grey marks the rest (no data, not "no change").</p>'
        + (f"<ul class='legend'>{notes}</ul>" if notes else "")
        + f"<h4>Score changes, by |change|</h4>{table}"
        + f"<div class='figs'>{''.join(figs)}</div>"
        + (
            f"<h4>Heatmap differences of the findings that changed most (red: more evidence in B, blue: less)</h4>"
            f"<div class='figs'>{heat}</div>"
            if heat
            else ""
        )
        + "</div>"
    )


def followup_section(diff_dirs: Sequence[Path]) -> str:
    """One dashboard per follow-up difference directory.

    Parameters
    ----------
    diff_dirs : sequence of Path
        ``diff`` outputs.

    Returns
    -------
    str
        The HTML section ``<section id='followup'>``; it names the command to run when ``diff_dirs`` is
        empty.
    """
    parts = ["<section id='followup'><h2>Follow-up dashboard</h2>"]
    if not diff_dirs:
        parts.append("<p>No follow-up pair given (<code>phow-baseline diff</code>).</p>")
    parts += [_dashboard(Path(d)) for d in diff_dirs]
    parts.append("</section>")
    return "".join(parts)


def _ci_plain(ci, fmt="{:.3f}") -> str:
    return "n/a" if not ci else f"[{fmt.format(ci[0])}, {fmt.format(ci[1])}]"


def _ci_text(ci, fmt="{:.3f}") -> str:
    return "" if not ci else f"<br><span class='ci'>{_ci_plain(ci, fmt)}</span>"


def _excludes_zero(ci) -> bool:
    return bool(ci) and (ci[0] > 0 or ci[1] < 0)


def subgroups_section(run_dirs: Sequence[Path], runs: Sequence[dict]) -> str:
    """Performance by subgroup (sex, age band, view, first image vs follow-up) of the runs that have it.

    Per run with ``subgroups`` in its ``metrics.json``: a compact table (images, mean AUROC, its gap to
    all images and, with operating points, the mean false-negative rate, each with its bootstrap 95 %
    interval), the metadata problems, and ``subgroups.png`` (the per-class gaps) with its caption.

    Parameters
    ----------
    run_dirs : sequence of Path
        Run directories (their ``subgroups.png`` is embedded).
    runs : sequence of dict
        ``metrics.json`` contents, in the order of ``run_dirs``.

    Returns
    -------
    str
        The HTML section, or ``""`` when no run has subgroup results.
    """
    from ..evaluation.subgroups import subgroup_caption

    with_sub = [(Path(d), r) for d, r in zip(run_dirs, runs) if isinstance(r.get("subgroups"), dict)]
    if not with_sub:
        return ""
    parts = ["<section id='subgroups'><h2>Subgroups</h2>"]
    for d, r in with_sub:
        sub = r["subgroups"]
        try:
            has_fnr = sub.get("threshold_on") is not None
            items = [("all images", "", sub["all"])] + [
                (f"{info.get('what', dim)}", g, e)
                for dim, info in sub["dimensions"].items()
                for g, e in info["groups"].items()
            ]
        except (KeyError, AttributeError, TypeError) as exc:
            raise ValueError(f"{d / 'metrics.json'}: malformed 'subgroups' ({exc!r})") from exc
        rows = []
        span = {}
        for what, _, _ in items:
            span[what] = span.get(what, 0) + 1
        for k, (what, g, e) in enumerate(items):
            gap_ci = e.get("mean_auroc_gap_ci95")
            gap = "" if not g else f"{_signed(e.get('mean_auroc_gap'))}{_ci_text(gap_ci, '{:+.3f}')}"
            cls = " class='gap'" if g and _excludes_zero(gap_ci) else ""
            fnr = f"<td>{_num(e.get('mean_fnr'))}{_ci_text(e.get('mean_fnr_ci95'))}</td>" if has_fnr else ""
            first = k == 0 or items[k - 1][0] != what
            head = f"<td rowspan='{span[what]}'>{_e(what)}</td>" if first else ""
            rows.append(
                f"<tr>{head}<td>{_e(str(g)) or '&ndash;'}</td><td>{_e(str(e.get('n_images', '?')))}</td>"
                f"<td>{_num(e.get('mean_auroc'))}{_ci_text(e.get('mean_auroc_ci95'))}</td><td{cls}>{gap}</td>{fnr}</tr>"
            )
        fnr_head = "<th>mean FNR</th>" if has_fnr else ""
        problems = "".join(f"<li>{_e(str(m))}</li>" for m in (sub.get("problems") or {}).values())
        warn = f"<div class='warn'>Metadata problems (warnings):<ul>{problems}</ul></div>" if problems else ""
        fig = ""
        if (d / "subgroups.png").is_file():
            cap = sub.get("caption") or subgroup_caption(sub)
            fig = _figure(d / "subgroups.png", f"AUROC gap by subgroup of {r['model']}", "roc", str(cap))
        fnr_legend = (
            f" Mean FNR: the false-negative rate at the operating points (the share of a class's positive images "
            f"called negative, on the {_e(str(sub['threshold_on']))}), averaged over the classes with a positive "
            f"image in the subgroup: the underdiagnosis measure of Seyyed-Kalantari et al. (2021)."
            if has_fnr
            else ""
        )
        parts.append(
            f"<h3>{_e(str(r['model']))} (split: {_e(str(r.get('split', '?')))}, n={_e(str(sub.get('n_images', '?')))})"
            f"</h3><table class='subgroups'><thead><tr><th>dimension</th><th>subgroup</th><th>images</th>"
            f"<th>mean AUROC</th><th>gap to all images</th>{fnr_head}</tr></thead><tbody>{''.join(rows)}</tbody>"
            f"</table>{warn}<p class='legend'>Mean AUROC over the classes the subgroup defines (a positive and a "
            f"negative image); gap: subgroup minus all images, in AUROC units, <span class='gap'>highlighted</span> "
            f"where its 95 % interval excludes 0. Bracketed: bootstrap 95 % percentile intervals "
            f"({_e(str(sub.get('n_bootstrap', '?')))} resamples of all test images).{fnr_legend}</p>{fig}"
        )
    parts.append("</section>")
    return "".join(parts)


def _signed(v) -> str:
    return "n/a" if v is None else f"{float(v):+.3f}"


def _p_text(p) -> str:
    if p is None:
        return "n/a"
    p = float(p)
    return f"{p:.2g}" if p >= 0.001 else f"{p:.1e}"


def _href(target: Path, base: Path | None) -> str:
    """A link to a local file: relative to the report's folder when known (the folders travel together)."""
    target = Path(target).resolve()
    if base is not None:
        try:
            return _e(Path(os.path.relpath(target, Path(base).resolve())).as_posix())
        except ValueError:  # another drive
            pass
    return _e(target.as_uri())


def compare_section(compare_dirs: Sequence[Path], out_dir: Path | None = None) -> str:
    """Paired comparisons of runs (``compare --out``): per pair, the mean AUROC difference and the forest plot.

    Parameters
    ----------
    compare_dirs : sequence of Path
        Comparison folders (``paired.json``, ``paired.md``, ``forest-*.png``).
    out_dir : Path, optional
        The report's folder: links to ``paired.md`` / ``paired.csv`` are made relative to it.

    Returns
    -------
    str
        The HTML section, or ``""`` when no comparison folder is given.
    """
    from ..evaluation.paired import PAIRED_CSV, PAIRED_MD, read_paired_dir
    from ..io import confined

    if not compare_dirs:
        return ""
    parts = ["<section id='compare'><h2>Paired comparison of runs</h2>"]
    for d in compare_dirs:
        d = Path(d)
        record = read_paired_dir(d)
        links = " ".join(
            f"<a href='{_href(d / f, out_dir)}'>{f}</a>" for f in (PAIRED_MD, PAIRED_CSV) if (d / f).is_file()
        )
        for c in record["comparisons"]:
            a, b = str(c["run_a"].get("name", "A")), str(c["run_b"].get("name", "B"))
            m = c["mean"]
            dl, bs = m.get("delong") or {}, m.get("bootstrap") or {}
            boot = (
                f"; paired bootstrap 95 % CI {_ci_plain(bs.get('ci95'), '{:+.3f}')}, p = {_p_text(bs.get('p_value'))}"
                if bs
                else ""
            )
            parts.append(
                f"<h3>{_e(b)} (B) vs {_e(a)} (A), {_e(str(c['n_images']))} images</h3>"
                f"<p class='paired'>Mean AUROC over {len(c.get('labels_in_mean') or [])} class(es): A "
                f"{_num(m.get('auroc_a'))}, B {_num(m.get('auroc_b'))}; B - A <b>{_signed(dl.get('difference'))}"
                f"</b>, DeLong 95 % CI {_ci_plain(dl.get('ci95'), '{:+.3f}')}, "
                f"p = {_p_text(dl.get('p_value'))}{boot}.</p>"
                + _figure(confined(d, str(c["figure"])), f"forest plot: {b} vs {a}", "roc", str(c.get("caption", "")))
            )
        parts.append(f"<p class='legend'>Per-class table: {links} (in {_e(str(d))}).</p>")
    parts.append("</section>")
    return "".join(parts)


#: Short names of the sections in the page's navigation bar, by section id.
NAV_NAMES = {
    "auroc": "AUROC",
    "external": "External",
    "compare": "Paired comparison",
    "roc": "ROC curves",
    "calibration": "Calibration",
    "subgroups": "Subgroups",
    "localization": "Localization",
    "followup": "Follow-up",
}


def _nav(body: str) -> str:
    """Links to the sections present in ``body``, in page order."""
    ids = re.findall(r"<section id='([a-z_-]+)'>", body)
    return " ".join(f"<a href='#{i}'>{_e(NAV_NAMES.get(i, i))}</a>" for i in ids)


# --------------------------------------------------------------------------
# The report
# --------------------------------------------------------------------------


def render_report(
    run_dirs: Sequence = (),
    localization_dirs: Sequence = (),
    diff_dirs: Sequence = (),
    title: str = "phow-baseline report",
    compare_dirs: Sequence = (),
    out_dir=None,
) -> str:
    """The report page as one HTML string.

    Parameters
    ----------
    run_dirs, localization_dirs, diff_dirs : sequence of path, default ()
        As for :func:`write_report`.
    title : str, default "phow-baseline report"
        Page title (escaped); a title with "SYNTHETIC" (or a phantom model) adds a notice.
    compare_dirs : sequence of path, default ()
        As for :func:`write_report`.
    out_dir : path, optional
        The folder the page will be written to: links to files (``paired.md``) are made relative to it
        (absolute ``file:`` URIs without it).

    Returns
    -------
    str
        The page: sections for the runs (per-class AUROC, internal vs external, ROC curves, calibration and
        operating points, subgroups), the paired comparisons, localization and follow-up; the navigation
        bar links the sections present.
    """
    run_dirs = [Path(d) for d in run_dirs]
    runs = [read_run(d) for d in run_dirs]
    body = []
    if runs:
        body += [
            auroc_section(runs),
            external_section(runs),
        ]
    body.append(compare_section([Path(d) for d in compare_dirs], None if out_dir is None else Path(out_dir)))
    if runs:
        body += [
            roc_section(run_dirs, runs),
            calibration_section(run_dirs, runs),
            subgroups_section(run_dirs, runs),
        ]
    body += [localization_section([Path(d) for d in localization_dirs]), followup_section([Path(d) for d in diff_dirs])]
    synthetic = "SYNTHETIC" in title.upper() or any("phantom" in str(r.get("model", "")).lower() for r in runs)
    notice = (
        (
            "<p class='notice'>These results come from SYNTHETIC phantom radiographs: they show the pipeline "
            "working, not its accuracy on real X-rays.</p>"
        )
        if synthetic
        else ""
    )
    return Template(_template("report.html")).substitute(
        title=_e(title),
        css=_template("report.css"),
        version=_e(__version__),
        created=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        notice=notice,
        nav=_nav("".join(body)),
        body="".join(body),
    )


def write_report(
    run_dirs: Sequence = (),
    out_dir="report",
    localization_dirs: Sequence = (),
    diff_dirs: Sequence = (),
    title: str = "phow-baseline report",
    compare_dirs: Sequence = (),
) -> Path:
    """Write the self-contained report ``out_dir/index.html`` and return its path.

    Parameters
    ----------
    run_dirs : sequence of path
        Run directories (``metrics.json``, ``roc.png``, ...) from ``write_run_dir``.
    out_dir : str or path-like, default "report"
        Output folder (created); the page is written atomically.
    localization_dirs : sequence of path
        ``localize-eval`` outputs (``localization.json``, optional ``heatmaps/``).
    diff_dirs : sequence of path
        ``diff`` outputs (``diff.json`` and its PNGs).
    title : str
        Page title (escaped).
    compare_dirs : sequence of path
        ``compare --out`` folders (``paired.json``, forest plots, ``paired.md``); their per-class tables
        are linked (relative to ``out_dir``), the rest is embedded.

    Returns
    -------
    Path
        ``out_dir/index.html``.

    Raises
    ------
    FileNotFoundError, ValueError
        Naming the missing or invalid input file.
    """
    page = render_report(run_dirs, localization_dirs, diff_dirs, title, compare_dirs=compare_dirs, out_dir=out_dir)
    return atomic_write_text(Path(out_dir) / "index.html", page)
