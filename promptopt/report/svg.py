"""Small inline-SVG charts drawn by hand (no plotting library, no script): bars, a scatter, line charts.

Every label passes through :func:`esc`. Hovering a mark shows its value through SVG ``<title>`` elements.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass

# Okabe-Ito, then Paul Tol's muted scheme: both chosen to stay apart under the common colour-vision deficiencies;
# 16 colours, so that a board of every registered method (15 today) repeats none
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#999999", "#000000",
           "#332288", "#88CCEE", "#44AA99", "#117733", "#DDCC77", "#882255", "#AA4499", "#661100"]
MARKERS = ["circle", "square", "triangle", "diamond"]
WIDE = 1140  # a chart across the page
NARROW = 562  # two side by side


def esc(text) -> str:
    return html.escape(str(text), quote=True)


def colors_for(names: list[str]) -> dict[str, str]:
    return {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(names)}


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """Round tick values covering [lo, hi]: steps of 1, 2 or 5 times a power of ten."""
    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / max(n, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    start = math.floor(lo / step) * step
    ticks = []
    t = start
    while t <= hi + step * 1e-9:
        ticks.append(round(t, 10))
        t += step
    if ticks[-1] < hi:
        ticks.append(round(ticks[-1] + step, 10))
    return ticks


def _num(v: float) -> str:
    return f"{v:.1f}".rstrip("0").rstrip(".") if abs(v - round(v)) > 1e-9 else str(int(round(v)))


@dataclass
class _Frame:
    """The plotting area of a chart and the maps from data to pixels."""

    x0: float
    x1: float
    y0: float
    y1: float
    xmin: float = 0.0
    xmax: float = 1.0
    ymin: float = 0.0
    ymax: float = 1.0

    def x(self, v: float) -> float:
        return self.x0 + (v - self.xmin) / ((self.xmax - self.xmin) or 1) * (self.x1 - self.x0)

    def y(self, v: float) -> float:
        return self.y1 - (v - self.ymin) / ((self.ymax - self.ymin) or 1) * (self.y1 - self.y0)


def _open(title: str, width: int, height: int) -> list[str]:
    return [f'<svg viewBox="0 0 {width} {height}" width="{width}" '
            f'height="{height}" role="img" aria-label="{esc(title)}" class="chart">',
            f"<title>{esc(title)}</title>",
            f'<text x="{width / 2}" y="18" text-anchor="middle" class="chart-title">{esc(title)}</text>']  # fmt: skip


def _y_axis(f: _Frame, ticks: list[float], label: str, fmt=_num) -> list[str]:
    out = []
    for t in ticks:
        y = f.y(t)
        out.append(f'<line x1="{f.x0:.1f}" x2="{f.x1:.1f}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>')
        out.append(f'<text x="{f.x0 - 6:.1f}" y="{y + 4:.1f}" text-anchor="end" class="tick">{esc(fmt(t))}</text>')
    mid = (f.y0 + f.y1) / 2
    out.append(f'<text x="14" y="{mid:.1f}" transform="rotate(-90 14 {mid:.1f})" text-anchor="middle" '
               f'class="axis-label">{esc(label)}</text>')  # fmt: skip
    out.append(f'<line x1="{f.x0:.1f}" x2="{f.x0:.1f}" y1="{f.y0:.1f}" y2="{f.y1:.1f}" class="axis"/>')
    out.append(f'<line x1="{f.x0:.1f}" x2="{f.x1:.1f}" y1="{f.y1:.1f}" y2="{f.y1:.1f}" class="axis"/>')
    return out


def _x_label(f: _Frame, label: str, height: int) -> str:
    return f'<text x="{(f.x0 + f.x1) / 2:.1f}" y="{height - 8}" text-anchor="middle" class="axis-label">{esc(label)}</text>'


def _marker(kind: str, x: float, y: float, color: str, tip: str, r: float = 5.0) -> str:
    title = f"<title>{esc(tip)}</title>"
    style = f'fill="{color}" stroke="#fff" stroke-width="1"'
    if kind == "square":
        return f'<rect x="{x - r:.1f}" y="{y - r:.1f}" width="{2 * r:.1f}" height="{2 * r:.1f}" {style}>{title}</rect>'
    if kind == "triangle":
        pts = f"{x:.1f},{y - r * 1.2:.1f} {x - r * 1.1:.1f},{y + r * 0.8:.1f} {x + r * 1.1:.1f},{y + r * 0.8:.1f}"
        return f'<polygon points="{pts}" {style}>{title}</polygon>'
    if kind == "diamond":
        pts = f"{x:.1f},{y - r * 1.3:.1f} {x + r:.1f},{y:.1f} {x:.1f},{y + r * 1.3:.1f} {x - r:.1f},{y:.1f}"
        return f'<polygon points="{pts}" {style}>{title}</polygon>'
    return f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{r:.1f}" {style}>{title}</circle>'


def _legend(items: list[tuple[str, str, str]], x: float, y: float, width: int) -> list[str]:
    """One row of legend entries (label, colour, marker kind), wrapping at the chart's width."""
    out = []
    cx, cy = x, y
    for label, color, kind in items:
        step = 24 + 7 * len(label)
        if cx + step > width - 10 and cx > x:
            cx, cy = x, cy + 18
        if kind == "line":
            out.append(f'<line x1="{cx:.1f}" x2="{cx + 14:.1f}" y1="{cy:.1f}" y2="{cy:.1f}" stroke="{color}" '
                       'stroke-width="2.5"/>')  # fmt: skip
        else:
            out.append(_marker(kind, cx + 7, cy, color, label, r=4.5))
        out.append(f'<text x="{cx + 18:.1f}" y="{cy + 4:.1f}" class="legend">{esc(label)}</text>')
        cx += step
    return out


def _errbar(cx: float, lo: float, hi: float, half: float = 4.0) -> str:
    """A vertical error bar with caps, in pixels (``lo`` below ``hi`` on the page, i.e. ``lo`` > ``hi``)."""
    return (f'<path d="M{cx:.1f},{lo:.1f}V{hi:.1f}M{cx - half:.1f},{lo:.1f}h{2 * half:g}M{cx - half:.1f},{hi:.1f}'
            f'h{2 * half:g}" class="errbar"/>')  # fmt: skip


def bar_chart(title: str, groups: list[str], series: list[str], values: dict, colors: dict[str, str],
              y_label: str, width: int = WIDE) -> str:  # fmt: skip
    """Grouped bars: one group per ``groups`` item, one bar per ``series`` item; ``values[(group, series)]`` is
    ``(mean, low, high)`` as fractions (``low``/``high`` the 95% interval, or None), drawn as percent with the
    interval as an error bar."""
    height = 330
    f = _Frame(56, width - 16, 48, height - 62, ymin=0.0, ymax=100.0)
    out = _open(title, width, height)
    out += _legend([(s, colors[s], "square") for s in series], f.x0, 34, width)
    out += _y_axis(f, nice_ticks(0, 100, 5), y_label)
    slot = (f.x1 - f.x0) / max(len(groups), 1)
    bar = min(40.0, slot * 0.8 / max(len(series), 1))
    for gi, group in enumerate(groups):
        left = f.x0 + gi * slot + (slot - bar * len(series)) / 2
        for si, name in enumerate(series):
            value = values.get((group, name))
            if value is None or value[0] is None:
                continue
            mean, low, high = value
            ci = low is not None and high is not None
            x = left + si * bar
            top = f.y(100 * mean)
            tip = f"{group} · {name}: {100 * mean:.1f}%" + (f" [{100 * low:.1f}, {100 * high:.1f}]" if ci else "")
            out.append(f'<rect x="{x + 1:.1f}" y="{top:.1f}" width="{bar - 2:.1f}" height="{f.y1 - top:.1f}" '
                       f'fill="{colors[name]}"><title>{esc(tip)}</title></rect>')  # fmt: skip
            hi = top
            if ci:
                lo, hi = f.y(max(0.0, 100 * low)), f.y(min(100.0, 100 * high))
                out.append(_errbar(x + bar / 2, lo, hi))
            if bar >= 22:
                out.append(f'<text x="{x + bar / 2:.1f}" y="{min(top, hi) - 4:.1f}" '
                           f'text-anchor="middle" class="value">{100 * mean:.0f}</text>')  # fmt: skip
        out.append(f'<text x="{f.x0 + (gi + 0.5) * slot:.1f}" y="{f.y1 + 18:.1f}" text-anchor="middle" '
                   f'class="group">{esc(group)}</text>')  # fmt: skip
    out.append("</svg>")
    return "\n".join(out)


def efficiency_chart(title: str, lines: list[dict], colors: dict[str, str], x_label: str, y_label: str,
                     width: int = NARROW) -> str:  # fmt: skip
    """Score against training examples, x on a log scale (``log10(x)``; sizes below 1 sit at 1), one line per
    method with its 95% intervals as error bars. Each line: ``series`` and ``points``, each point ``x`` (examples),
    ``y``, ``low``, ``high`` (fractions; the interval may be None) and ``tip``."""
    height = 300
    f = _Frame(64, width - 24, 48, height - 50)
    pts = [p for ln in lines for p in ln["points"]]
    xs = [math.log10(max(p["x"], 1)) for p in pts]
    ys = [100 * v for p in pts for v in (p["y"], p["low"], p["high"]) if v is not None]
    lo_x, hi_x = (min(xs), max(xs)) if xs else (0.0, 1.0)
    pad = max(0.08 * (hi_x - lo_x), 0.1)
    f.xmin, f.xmax = lo_x - pad, hi_x + pad
    yt = nice_ticks(max(0.0, min(ys, default=0.0) - 2), min(100.0, max(ys, default=100.0) + 2), 5)
    f.ymin, f.ymax = yt[0], yt[-1]
    out = _open(title, width, height)
    out += _legend([(ln["series"], colors[ln["series"]], "line") for ln in lines], f.x0, 34, width)
    out += _y_axis(f, yt, y_label)
    for n in sorted({p["x"] for p in pts}):
        x = f.x(math.log10(max(n, 1)))
        out.append(f'<text x="{x:.1f}" y="{f.y1 + 16:.1f}" text-anchor="middle" class="tick">{esc(_si(n))}</text>')
    for li, ln in enumerate(lines):
        color = colors[ln["series"]]
        shift = (li - (len(lines) - 1) / 2) * 3.0  # methods at one size side by side, so their bars do not hide
        coords = [(f.x(math.log10(max(p["x"], 1))) + shift, p) for p in ln["points"]]
        if len(coords) > 1:
            path = " ".join(f"{x:.1f},{f.y(100 * p['y']):.1f}" for x, p in coords)
            out.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="1.8"/>')
        for x, p in coords:
            if p["low"] is not None and p["high"] is not None:
                out.append(_errbar(x, f.y(100 * p["low"]), f.y(100 * p["high"]), half=3.0).replace(
                    'class="errbar"', f'class="errbar" style="stroke:{color}"'))  # fmt: skip
            out.append(_marker("circle", x, f.y(100 * p["y"]), color, p["tip"], r=3.5))
    out.append(_x_label(f, x_label, height))
    out.append("</svg>")
    return "\n".join(out)


def _log1p_ticks(top: float) -> tuple[list[float], list[str]]:
    ticks, labels = [0.0], ["0"]
    k = 1
    while 10**k <= max(top, 10) * 10 and k <= 12:
        ticks.append(math.log10(1 + 10**k))
        labels.append(_si(10**k))
        k += 1
    return ticks, labels


def _si(n: float) -> str:
    """1000 -> 1k, 2500000 -> 2.5M."""
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if n >= div:
            return f"{n / div:g}{suffix}"
    return f"{n:g}"


def scatter_chart(title: str, points: list[dict], colors: dict[str, str], markers: dict[str, str], x_label: str,
                  y_label: str, width: int = WIDE) -> str:  # fmt: skip
    """Score against trainable parameters, x on a log scale (``log10(1 + params)``, so 0 sits at the left edge).

    Each point: ``x`` (parameters), ``y`` (fraction), ``series`` (colour), ``group`` (marker), ``tip``."""
    height = 340
    f = _Frame(56, width - 24, 48, height - 62)
    xs = [math.log10(1 + max(p["x"], 0)) for p in points]
    ys = [100 * p["y"] for p in points]
    ticks, labels = _log1p_ticks(max((p["x"] for p in points), default=10))
    f.xmin, f.xmax = 0.0, max(max(xs, default=1.0) * 1.08, 1.0)
    ticks = [(t, lab) for t, lab in zip(ticks, labels) if t <= f.xmax]
    lo, hi = (min(ys), max(ys)) if ys else (0.0, 100.0)
    yt = nice_ticks(max(0.0, lo - 5), min(100.0, hi + 5) if hi > lo else hi + 5, 5)
    f.ymin, f.ymax = yt[0], yt[-1]
    out = _open(title, width, height)
    series = list(colors)
    out += _legend([(s, colors[s], "line") for s in series] + [(g, "#555", m) for g, m in markers.items()], f.x0, 34,
                   width)  # fmt: skip
    out += _y_axis(f, yt, y_label)
    for t, lab in ticks:
        out.append(f'<line x1="{f.x(t):.1f}" x2="{f.x(t):.1f}" y1="{f.y0:.1f}" y2="{f.y1:.1f}" class="grid"/>')
        out.append(f'<text x="{f.x(t):.1f}" y="{f.y1 + 16:.1f}" text-anchor="middle" class="tick">{esc(lab)}</text>')
    for p, x, y in zip(points, xs, ys):
        out.append(_marker(markers.get(p["group"], "circle"), f.x(x), f.y(y), colors[p["series"]], p["tip"]))
    out.append(_x_label(f, x_label, height))
    out.append("</svg>")
    return "\n".join(out)


def line_chart(title: str, lines: list[dict], colors: dict[str, str], x_label: str, y_label: str,
               percent: bool = False, width: int = NARROW) -> str:  # fmt: skip
    """Lines of ``[x, y]`` points; each line: ``series`` (colour and legend), ``points``, ``tip``."""
    height = 300
    f = _Frame(64, width - 20, 48, height - 50)
    scale = 100.0 if percent else 1.0
    xs = [p[0] for ln in lines for p in ln["points"]]
    ys = [scale * p[1] for ln in lines for p in ln["points"]]
    f.xmin, f.xmax = (min(xs), max(xs)) if xs else (0.0, 1.0)
    if f.xmax == f.xmin:
        f.xmax = f.xmin + 1
    yt = nice_ticks(min(ys, default=0.0), max(ys, default=1.0), 5)
    f.ymin, f.ymax = yt[0], yt[-1]
    xt = [t for t in nice_ticks(f.xmin, f.xmax, 6) if f.xmin <= t <= f.xmax]
    out = _open(title, width, height)
    out += _legend([(s, colors[s], "line") for s in _unique(ln["series"] for ln in lines)], f.x0, 34, width)
    out += _y_axis(f, yt, y_label, fmt=_num if percent else _short)
    for t in xt:
        out.append(f'<text x="{f.x(t):.1f}" y="{f.y1 + 16:.1f}" text-anchor="middle" class="tick">{esc(_num(t))}</text>')
    for ln in lines:
        pts = " ".join(f"{f.x(x):.1f},{f.y(scale * y):.1f}" for x, y in ln["points"])
        out.append(f'<polyline points="{pts}" fill="none" stroke="{colors[ln["series"]]}" stroke-width="1.8" '
                   f'stroke-opacity="0.85"><title>{esc(ln["tip"])}</title></polyline>')  # fmt: skip
        if len(ln["points"]) == 1:
            x, y = ln["points"][0]
            out.append(_marker("circle", f.x(x), f.y(scale * y), colors[ln["series"]], ln["tip"], r=3))
    out.append(_x_label(f, x_label, height))
    out.append("</svg>")
    return "\n".join(out)


def _short(v: float) -> str:
    return f"{v:.3g}"


def _unique(items) -> list:
    seen: dict = {}
    for item in items:
        seen.setdefault(item, None)
    return list(seen)
