"""The calibration report as one self-contained HTML file: inline SVG, no scripts, no assets.

A report gets mailed around and opened offline by the people who decide thresholds, so it must
render anywhere with nothing to fetch. Per rule: a histogram of scores by label (where the two
distributions overlap is where no threshold is clean), precision / recall / false-positive rate
against the threshold, the current and suggested thresholds marked, and the sweep table.
"""

from __future__ import annotations

from html import escape

from proxy.observability.calibrate import CalibrationRun, Point, RuleCalibration, at, confidence_text

W, H, PAD = 520, 220, 36
POS, NEG = "#d9534f", "#3366cc"
CURVES = (("precision", "#2a9d8f"), ("recall", "#e76f51"), ("fpr", "#6c757d"))


def _x(value: float, lo: float, hi: float) -> float:
    return PAD + (value - lo) / ((hi - lo) or 1.0) * (W - 2 * PAD)


def _y(frac: float) -> float:
    return H - PAD - frac * (H - 2 * PAD)


def _axes(lo: float, hi: float, y_label: str) -> list[str]:
    out = [
        f'<line x1="{PAD}" y1="{H - PAD}" x2="{W - PAD}" y2="{H - PAD}" stroke="#333"/>',
        f'<line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{H - PAD}" stroke="#333"/>',
        f'<text x="{W / 2}" y="{H - 6}" text-anchor="middle" font-size="11">score / threshold</text>',
        f'<text x="10" y="{PAD - 12}" font-size="11">{escape(y_label)}</text>',
    ]
    for i in range(6):
        v = lo + (hi - lo) * i / 5
        x = _x(v, lo, hi)
        out.append(f'<text x="{x:.1f}" y="{H - PAD + 14}" text-anchor="middle" font-size="10">{v:.2f}</text>')
    return out


def _marker(value: float | None, lo: float, hi: float, colour: str, label: str, row: int = 0) -> str:
    if value is None or not lo <= value <= hi:
        return ""
    x = _x(value, lo, hi)
    return (
        f'<line x1="{x:.1f}" y1="{PAD}" x2="{x:.1f}" y2="{H - PAD}" stroke="{colour}" '
        'stroke-dasharray="4 3"/>'
        f'<text x="{x + 3:.1f}" y="{PAD + 10 + 12 * row}" font-size="10" fill="{colour}">'
        f"{escape(label)}</text>"
    )


def _range(points: list[Point]) -> tuple[float, float]:
    lo = min((pt[0] for pt in points), default=0.0)
    hi = max((pt[0] for pt in points), default=1.0)
    return (0.0, 1.0) if lo >= 0.0 and hi <= 1.0 else (lo, hi if hi > lo else lo + 1.0)


def histogram(cal: RuleCalibration, bins: int = 20) -> str:
    lo, hi = _range(cal.points)
    counts = {True: [0] * bins, False: [0] * bins}
    for point in cal.points:
        score, positive = point[0], point[1]
        i = min(bins - 1, max(0, int((score - lo) / ((hi - lo) or 1.0) * bins)))
        counts[positive][i] += 1
    top = max([1, *counts[True], *counts[False]])
    width = (W - 2 * PAD) / bins / 2
    parts = _axes(lo, hi, f"examples per bin (max {top})")
    for i in range(bins):
        for j, positive in enumerate((False, True)):
            n = counts[positive][i]
            if not n:
                continue
            x = PAD + i * 2 * width + j * width
            y = _y(n / top)
            parts.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{width - 1:.1f}" height="{H - PAD - y:.1f}" '
                f'fill="{POS if positive else NEG}"><title>{n} {"positive" if positive else "negative"}'
                "</title></rect>"
            )
    parts.append(_marker(cal.threshold, lo, hi, "#000", "current"))
    parts.append(_marker(cal.suggested, lo, hi, "#8e44ad", "suggested", 1))
    legend = (
        f'<rect x="{W - 150}" y="8" width="10" height="10" fill="{NEG}"/>'
        f'<text x="{W - 136}" y="17" font-size="11">negative</text>'
        f'<rect x="{W - 80}" y="8" width="10" height="10" fill="{POS}"/>'
        f'<text x="{W - 66}" y="17" font-size="11">positive</text>'
    )
    return _svg("histogram", [*parts, legend])


def curves(cal: RuleCalibration, steps: int = 100) -> str:
    lo, hi = _range(cal.points)
    rows = [at(cal.points, lo + (hi - lo) * i / steps) for i in range(steps + 1)]
    parts = _axes(lo, hi, "rate (0 to 1)")
    for k, (name, colour) in enumerate(CURVES):
        pts = [
            f"{_x(r.threshold, lo, hi):.1f},{_y(v):.1f}" for r in rows if (v := getattr(r, name)) is not None
        ]
        if pts:
            parts.append(
                f'<polyline class="curve-{name}" points="{" ".join(pts)}" fill="none" '
                f'stroke="{colour}" stroke-width="1.5"/>'
            )
        parts.append(f'<text x="{W - 150 + k * 52}" y="17" font-size="11" fill="{colour}">{name}</text>')
    parts.append(_marker(cal.threshold, lo, hi, "#000", "current"))
    parts.append(_marker(cal.suggested, lo, hi, "#8e44ad", "suggested", 1))
    return _svg("curves", parts)


def _svg(kind: str, parts: list[str]) -> str:
    body = "".join(p for p in parts if p)
    return (
        f'<svg class="{kind}" xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
        f'viewBox="0 0 {W} {H}" role="img">{body}</svg>'
    )


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _table(cal: RuleCalibration) -> str:
    body = "".join(
        f'<tr class="{mark.replace(",", "")}"><td>{r.threshold:.4f}</td><td>{_num(r.precision)}</td>'
        f"<td>{_num(r.recall)}</td><td>{_num(r.fpr)}</td><td>{r.trigger_rate:.3f}</td><td>{mark}</td></tr>"
        for r, mark in cal.marked_rows()
    )
    return (
        "<table><thead><tr><th>threshold</th><th>precision</th><th>recall</th><th>fpr</th>"
        f"<th>trigger rate</th><th></th></tr></thead><tbody>{body}</tbody></table>"
    )


def render(report: CalibrationRun) -> str:
    sections = []
    for cal in sorted(report.rules, key=lambda c: c.positives == 0):  # rules with positives first
        title = escape(f"{cal.plugin} / {cal.rule}")
        summary = (
            f"{len(cal.points)} labelled ({cal.positives} positive, {cal.negatives} negative), "
            f"{cal.unlabelled} unlabelled. Current threshold {_num(cal.threshold)}; suggested for "
            f"fpr &le; {report.target_fpr:g}: {_num(cal.suggested)}."
        )
        if not cal.positives:
            summary += " No positive labels: precision and recall are unknown."
        conf = cal.confidence()
        if conf is not None:
            cls = "enough" if conf["enough_labels"] else "too-few"
            summary += "".join(
                f'<br><span class="confidence {cls}">{escape(t)}</span>' for t in confidence_text(cal)
            )
        sections.append(
            f'<section data-rule="{escape(cal.key)}"><h2>{title}</h2><p>{summary}</p>'
            f'<div class="plots">{histogram(cal)}{curves(cal)}</div>{_table(cal)}</section>'
        )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>policy-sidecar calibration</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 1.5rem; color: #222; }}
section {{ margin-bottom: 2.5rem; }}
.plots svg {{ margin: 0 1rem 1rem 0; border: 1px solid #eee; }}
table {{ border-collapse: collapse; }} td, th {{ padding: .2rem .6rem; text-align: right; }}
.confidence.too-few {{ color: #b00020; font-weight: 600; }}
tr.current {{ background: #eee; }} tr.suggested {{ background: #f3e5f5; }}
</style></head><body>
<h1>Calibration report</h1>
<p>Policy <code>{escape(report.policy)}</code> (revision <code>{escape(report.revision)}</code>),
{report.records} records, target false-positive rate {report.target_fpr:g}. A rule triggers when
score &ge; threshold. Scores were recorded by the policy's own plugins, replayed offline.</p>
{"".join(sections) or "<p>No score-based rule recorded a score.</p>"}
</body></html>
"""
