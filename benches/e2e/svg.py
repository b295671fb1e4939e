"""Grouped bar charts as standalone SVG, standard library only (no matplotlib).

grouped_bars(path, title, subtitle, panels, series, unit, value_fmt)
  panels: [(panel_title, [(group_label, {series_name: value or None}), ...]), ...]
          drawn side by side, each with its own y axis starting at 0
  series: series names in legend / bar order
"""
import math
from xml.sax.saxutils import escape

PALETTE = {
    "redis": "#8c8c8c",
    "cluster": "#c7c7c7",
    "slotgate": "#1f6fb4",
    "slotgate-pool": "#79b4e0",
    "twemproxy": "#f28e2b",
    "predixy": "#59a14f",
    "rcp": "#e15759",
    "slotgate-w1": "#79b4e0",
    "slotgate-w2": "#1f6fb4",
}
FALLBACK = ["#59a14f", "#e15759", "#b07aa1", "#76b7b2", "#edc948", "#9c755f"]
FONT = "font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\""


def color(name, i):
    return PALETTE.get(name, FALLBACK[i % len(FALLBACK)])


def nice_step(vmax, ticks=5):
    if vmax <= 0:
        return 1.0
    raw = vmax / ticks
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if raw <= m * mag:
            return m * mag
    return 10 * mag


def tick(v):
    """axis labels: short() without trailing zeros (40.0 -> 40, 30.0k -> 30k, 1.00M -> 1M)"""
    s = short(v)
    unit = s[-1] if s[-1] in "kM" else ""
    num = s[:-1] if unit else s
    if "." in num:
        num = num.rstrip("0").rstrip(".")
    return num + unit


def short(v):
    """1234567 -> 1.23M, 104156 -> 104k, 9512 -> 9.51k, 8.49 -> 8.49"""
    if v >= 1e6:
        return f"{v / 1e6:.2f}M"
    if v >= 1e5:
        return f"{v / 1e3:.0f}k"
    if v >= 1e4:
        return f"{v / 1e3:.1f}k"
    if v >= 1e3:
        return f"{v / 1e3:.2f}k"
    if v >= 100:
        return f"{v:.0f}"
    if v >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def grouped_bars(path, title, subtitle, panels, series, unit, value_fmt=short):
    panel_w, plot_h = 470, 300
    left, top, bottom, gap = 62, 92, 58, 20
    legend_w = sum(16 + 7.5 * len(s) + 18 for s in series) + 24
    width = int(max(len(panels) * panel_w + (len(panels) - 1) * gap + 20,
                    6.6 * len(subtitle) + 24, 9.5 * len(title) + 24, legend_w))
    height = top + plot_h + bottom
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" {FONT}>',
           f'<rect width="{width}" height="{height}" fill="#ffffff"/>',
           f'<text x="12" y="24" font-size="17" font-weight="bold">{escape(title)}</text>',
           f'<text x="12" y="44" font-size="12" fill="#555">{escape(subtitle)}</text>']
    # legend
    x = 12
    for i, s in enumerate(series):
        out.append(f'<rect x="{x}" y="56" width="12" height="12" fill="{color(s, i)}"/>')
        out.append(f'<text x="{x + 16}" y="66" font-size="12">{escape(s)}</text>')
        x += 16 + 7.5 * len(s) + 18
    for pi, (ptitle, groups) in enumerate(panels):
        x0 = 10 + pi * (panel_w + gap) + left
        pw = panel_w - left - 10
        vals = [v for _, d in groups for v in d.values() if v is not None]
        vmax = max(vals) if vals else 1
        step = nice_step(vmax * 1.15)
        ymax = step * math.ceil(vmax * 1.15 / step)

        def y(v):
            return top + plot_h - v / ymax * plot_h

        out.append(f'<text x="{x0 + pw / 2}" y="{top - 8}" font-size="13" font-weight="bold" '
                   f'text-anchor="middle">{escape(ptitle)}</text>')
        t = 0.0
        while t <= ymax * 1.0001:
            out.append(f'<line x1="{x0}" x2="{x0 + pw}" y1="{y(t):.1f}" y2="{y(t):.1f}" '
                       f'stroke="#e3e3e3"/>')
            out.append(f'<text x="{x0 - 6}" y="{y(t) + 4:.1f}" font-size="11" fill="#444" '
                       f'text-anchor="end">{escape(tick(t) if t else "0")}</text>')
            t += step
        out.append(f'<text transform="translate({x0 - 48},{top + plot_h / 2}) rotate(-90)" '
                   f'font-size="12" fill="#444" text-anchor="middle">{escape(unit)}</text>')
        out.append(f'<line x1="{x0}" x2="{x0 + pw}" y1="{y(0)}" y2="{y(0)}" stroke="#333"/>')
        gw = pw / max(1, len(groups))
        present = [s for s in series if any(d.get(s) is not None for _, d in groups)]
        bw = min(34, (gw - 14) / max(1, len(present)))
        for gi, (glabel, d) in enumerate(groups):
            gx = x0 + gi * gw + (gw - bw * len(present)) / 2
            for si, s in enumerate(present):
                v = d.get(s)
                bx = gx + si * bw
                if v is None:
                    out.append(f'<text x="{bx + bw / 2:.1f}" y="{y(0) - 4:.1f}" font-size="9" '
                               f'fill="#999" text-anchor="middle">n/a</text>')
                    continue
                out.append(f'<rect x="{bx + 1:.1f}" y="{y(v):.1f}" width="{bw - 2:.1f}" '
                           f'height="{y(0) - y(v):.1f}" fill="{color(s, series.index(s))}">'
                           f'<title>{escape(s)} {escape(glabel)}: {v:,.2f}</title></rect>')
                lx, ly = bx + bw / 2 + 3.5, y(v) - 4
                out.append(f'<text transform="translate({lx:.1f},{ly:.1f}) rotate(-90)" '
                           f'font-size="10" fill="#222">{escape(value_fmt(v))}</text>')
            out.append(f'<text x="{x0 + gi * gw + gw / 2:.1f}" y="{y(0) + 18}" font-size="12" '
                       f'text-anchor="middle">{escape(glabel)}</text>')
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")
