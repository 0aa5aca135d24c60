"""The static HTML report and follow-up dashboard: one self-contained file, no server.

``write_report(run_dirs, out_dir, localisation_dirs, diff_dirs)`` reads the
files the other commands write (``metrics.json`` + ``roc.png`` of each run,
``localisation.json`` + ``heatmaps/`` of a localisation evaluation,
``diff.json`` + PNGs of a follow-up difference) and writes
``out_dir/index.html`` with every figure embedded as a ``data:`` URI.  All
text from those files is HTML-escaped.  No JavaScript is needed.
"""

from __future__ import annotations

import base64
import html
import json
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from string import Template
from typing import Sequence

from . import __version__
from .data import LABELS
from .metrics import PUBLISHED, read_metrics

_e = html.escape


def _template(name: str) -> str:
    return resources.files("phow_baseline").joinpath("templates", name).read_text()


def _img(path: Path, alt: str, cls: str = "", caption: str = "") -> str:
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: figure missing")
    data = base64.b64encode(p.read_bytes()).decode("ascii")
    cap = f"<figcaption>{_e(caption)}</figcaption>" if caption else ""
    return (f'<figure class="{cls}"><img src="data:image/png;base64,{data}" alt="{_e(alt)}">{cap}</figure>')


def _fmt(v, digits=3) -> str:
    return "" if v is None else f"{v:.{digits}f}"


def auroc_section(runs: Sequence[dict]) -> str:
    refs = list(PUBLISHED)
    head = "".join(f"<th>{_e(r['model'])}<br><span class='legend'>{_e(str(r.get('kind', '')))}, "
                   f"{_e(str(r.get('split', '')))}, n={_e(str(r.get('n_test', '')))}</span></th>" for r in runs)
    head += "".join(f"<th class='ref'>{_e(k)}</th>" for k in refs)
    rows = []
    for lab in LABELS:
        cells = []
        for r in runs:
            a = r["auroc"].get(lab)
            ci = (r.get("auroc_ci95") or {}).get(lab)
            cells.append(f"<td>{_fmt(a)}" + (f"<br><span class='ci'>[{ci[0]:.3f}, {ci[1]:.3f}]</span>" if ci else "")
                         + "</td>")
        for k in refs:
            vals = PUBLISHED[k]["auroc"]
            cells.append(f"<td class='ref'>{_fmt(vals[LABELS.index(lab)]) if vals else ''}</td>")
        rows.append(f"<tr><td>{_e(lab)}</td>{''.join(cells)}</tr>")
    mean = "".join(f"<td>{_fmt(r.get('mean_auroc'))}</td>" for r in runs)
    mean += "".join(f"<td class='ref'>{_fmt(PUBLISHED[k]['mean'])}</td>" for k in refs)
    rows.append(f"<tr class='mean'><td>Mean</td>{mean}</tr>")
    legend = "".join(f"<li><b>{_e(k)}</b>: {_e(PUBLISHED[k]['title'])}; split: {_e(PUBLISHED[k]['split'])}</li>"
                     for k in refs)
    return (f"<h2 id='auroc'>Per-class AUROC</h2><table class='auroc'><thead><tr><th>label</th>{head}</tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table><p class='legend'>Bracketed: bootstrap 95 % intervals. "
            f"Published columns (other models, other splits where stated):</p><ul class='legend'>{legend}</ul>")


def roc_section(run_dirs, runs) -> str:
    figs = "".join(_img(Path(d) / "roc.png", f"ROC curves of {r['model']}", caption=f"{r['model']} ({r.get('split')})")
                   for d, r in zip(run_dirs, runs) if (Path(d) / "roc.png").exists())
    return f"<h2 id='roc'>ROC curves</h2>{figs or '<p>No ROC figure.</p>'}"


def localisation_section(loc_dirs) -> str:
    from .localise import read_localisation

    parts = ["<h2 id='localisation'>Localisation against the NIH boxes</h2>"]
    if not loc_dirs:
        parts.append("<p>No localisation evaluation given (<code>phow-baseline localise-eval</code>).</p>")
    for d in loc_dirs:
        r = read_localisation(d)
        tb = r["iobb_thresholds"]
        head = "".join(f"<th>T(IoBB)={t}</th>" for t in tb)
        rows = []
        for lab, acc in r["accuracy_iobb"].items():
            ref = r.get("reference_iobb_0.5", {}).get(lab)
            fp = r["avg_fp"][lab][tb.index(0.5)] if 0.5 in tb else None
            rows.append(f"<tr><td>{_e(lab)}</td><td>{r['n_images'][lab]}</td>" +
                        "".join(f"<td>{a:.3f}</td>" for a in acc) +
                        f"<td>{_fmt(fp, 2)}</td><td class='ref'>{_fmt(ref, 4)}</td></tr>")
        tu = r["iou_thresholds"]
        rows_u = "".join(f"<tr><td>{_e(lab)}</td>" + "".join(f"<td>{a:.3f}</td>" for a in acc) + "</tr>"
                         for lab, acc in r["accuracy_iou"].items())
        figs = "".join(_img(p, p.stem, "small", p.stem.replace("_", " "))
                       for p in sorted((Path(d) / "heatmaps").glob("*.png"))[:8])
        parts.append(
            f"<h3>{_e(str(r.get('model', d)))} ({_e(str(r.get('kind', '')))}, {r.get('image_size')} px)</h3>"
            f"<table class='loc'><thead><tr><th>label</th><th>n</th>{head}<th>AFP@0.5</th>"
            f"<th class='ref'>Wang 2017 @0.5</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
            f"<table class='loc-iou'><thead><tr><th>label</th>{''.join(f'<th>T(IoU)={t}</th>' for t in tu)}</tr>"
            f"</thead><tbody>{rows_u}</tbody></table>"
            f"<p class='legend'>{_e(str(r.get('reference', '')))}. Green: NIH box; white: boxes from the heatmap.</p>"
            f"{figs}")
    return "".join(parts)


def followup_section(diff_dirs) -> str:
    from .followup import read_diff

    parts = ["<h2 id='followup'>Follow-up dashboard</h2>"]
    if not diff_dirs:
        parts.append("<p>No follow-up pair given (<code>phow-baseline diff</code>).</p>")
    for d in diff_dirs:
        d = Path(d)
        m = read_diff(d)
        reg = m["registration"]
        figs = [_img(d / "a.png", "earlier image", "small", f"earlier: {m['image_a']}"),
                _img(d / "b_registered.png", "later image, registered", "small",
                     f"later, registered: {m['image_b']}"),
                _img(d / "ssim_map.png", "structural difference", "small", "structural difference (1 - SSIM)/2"),
                _img(d / "intensity_diff.png", "intensity difference", "small",
                     "intensity change after histogram matching (red brighter, blue darker)")]
        for lab in m.get("heatmap_labels", []):
            figs.append(_img(d / f"heatmap_diff_{lab}.png", f"heatmap difference {lab}", "small",
                             f"{lab}: heatmap later - earlier (red worse, blue better)"))
        table = ""
        if m.get("score_changes"):
            ch = sorted(m["score_changes"].items(), key=lambda kv: -abs(kv[1]["delta"]))
            rows = "".join(f"<tr><td>{_e(l)}</td><td>{c['a']:+.3f}</td><td>{c['b']:+.3f}</td>"
                           f"<td class='{'up' if c['delta'] > 0 else 'down'}'>{c['delta']:+.3f}</td></tr>"
                           for l, c in ch)
            table = (f"<table class='scores'><thead><tr><th>finding</th><th>earlier</th><th>later</th>"
                     f"<th>change</th></tr></thead><tbody>{rows}</tbody></table>")
        notes = "".join(f"<li>{_e(str(n))}</li>" for n in m.get("notes", []))
        parts.append(
            f"<div class='dashboard'><h3>Patient {_e(str(m.get('patient')))}: {_e(m['image_a'])} &rarr; "
            f"{_e(m['image_b'])}</h3><p class='legend'>Registration {_e(reg['motion'])}: ECC {reg['ecc']:.3f}"
            f" ({'converged' if reg['converged'] else 'NOT converged'}); mean SSIM {m['ssim_mean']:.3f}; "
            f"order: {_e(m.get('order_rule', ''))}</p><ul class='legend'>{notes}</ul>{''.join(figs)}{table}</div>")
    return "".join(parts)


def write_report(run_dirs: Sequence = (), out_dir="report", localisation_dirs: Sequence = (),
                 diff_dirs: Sequence = (), title: str = "phow-baseline report") -> Path:
    """Write ``out_dir/index.html``; returns its path.

    Raises ``FileNotFoundError`` / ``ValueError`` naming a missing or invalid input file.
    """
    run_dirs = [Path(d) for d in run_dirs]
    runs = [read_metrics(d) for d in run_dirs]
    body = []
    if runs:
        body += [auroc_section(runs), roc_section(run_dirs, runs)]
    body += [localisation_section([Path(d) for d in localisation_dirs]),
             followup_section([Path(d) for d in diff_dirs])]
    synthetic = "SYNTHETIC" in title.upper() or any("phantom" in str(r.get("model", "")).lower() for r in runs)
    notice = ("<p class='notice'>These results come from SYNTHETIC phantom radiographs: they show the pipeline "
              "working, not its accuracy on real X-rays.</p>") if synthetic else ""
    page = Template(_template("report.html")).substitute(
        title=_e(title), css=_template("report.css"), version=_e(__version__),
        created=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), notice=notice, body="".join(body))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "index.html.tmp"
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(out / "index.html")
    return out / "index.html"
