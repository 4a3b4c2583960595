"""Server-made SVG: export sizes and durations over time (no script, no library).

Two stacked panels sharing the time axis: stored size (bars) and duration (dots).
The markup is built from numbers and escaped labels only, so it is safe to put
into the page as it is.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from html import escape

__all__ = ["export_plot", "human_bytes"]

W, H, LEFT, RIGHT, TOP, GAP, PANEL = 720, 300, 70, 16, 28, 44, 96


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def _seconds(s: float) -> str:
    return f"{s:.1f} s" if s < 120 else f"{s / 60:.1f} min"


def export_plot(points: Sequence[tuple[float, int, float]], title: str = "Export sizes and durations") -> str:
    """`points`: (created epoch seconds, stored bytes, duration seconds) per finished job."""
    pts = sorted(points)
    desc = (f"{len(pts)} exports. " + "; ".join(
        f"{dt.datetime.fromtimestamp(t, dt.UTC):%Y-%m-%d %H:%M} UTC: {human_bytes(b)} in {_seconds(d)}"
        for t, b, d in pts[-10:])) if pts else "No finished exports yet."
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" width="100%" role="img" '
           f'aria-labelledby="plot-title plot-desc" class="plot">',
           f'<title id="plot-title">{escape(title)}</title><desc id="plot-desc">{escape(desc)}</desc>']
    if not pts:
        out.append(f'<text x="{W // 2}" y="{H // 2}" text-anchor="middle" fill="#333">No finished exports yet</text>')
        out.append("</svg>")
        return "".join(out)
    t0, t1 = pts[0][0], pts[-1][0]
    span = max(t1 - t0, 1.0)
    pad = 16  # keeps the first and last bars clear of the axis labels
    plot_w = W - LEFT - RIGHT - 2 * pad

    def x(t: float) -> float:
        return LEFT + pad + (plot_w * (t - t0) / span if len(pts) > 1 else plot_w / 2)

    bmax = max(b for _, b, _ in pts) or 1
    dmax = max(d for _, _, d in pts) or 1.0
    bar = max(3.0, min(24.0, plot_w / (len(pts) * 2)))
    for i, (label, vmax, fmt) in enumerate((("stored size", bmax, human_bytes), ("duration", dmax, _seconds))):
        top = TOP + i * (PANEL + GAP)
        base = top + PANEL
        out.append(f'<text x="{LEFT}" y="{top - 8}" fill="#222" font-size="13">{label}</text>')
        out.append(f'<line x1="{LEFT}" y1="{base}" x2="{W - RIGHT}" y2="{base}" stroke="#555"/>')
        out.append(f'<text x="{LEFT - 6}" y="{top + 4}" text-anchor="end" font-size="11" fill="#333">'
                   f'{escape(fmt(vmax))}</text>')
        out.append(f'<text x="{LEFT - 6}" y="{base}" text-anchor="end" font-size="11" fill="#333">0</text>')
        for t, b, d in pts:
            v = b if i == 0 else d
            h = PANEL * v / vmax
            if i == 0:
                out.append(f'<rect x="{x(t) - bar / 2:.1f}" y="{base - h:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                           f'fill="#1f5f99"/>')
            else:
                out.append(f'<circle cx="{x(t):.1f}" cy="{base - h:.1f}" r="4" fill="#a34700"/>')
    axis_y = TOP + 2 * PANEL + GAP + 20
    for t, anchor in ((t0, "start"), (t1, "end")) if len(pts) > 1 else ((t0, "middle"),):
        label = dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%d %H:%M")
        out.append(f'<text x="{x(t):.1f}" y="{axis_y}" text-anchor="{anchor}" font-size="11" fill="#333">'
                   f'{label} UTC</text>')
    out.append("</svg>")
    return "".join(out)
