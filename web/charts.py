"""Server-rendered SVG bar charts for `/stats`: no script and no chart library, so they show in any browser and
scale with the page (a viewBox, drawn at 100% width)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from markupsafe import Markup, escape

WIDTH, HEIGHT = 640, 220
LEFT, RIGHT, TOP, BOTTOM = 56, 8, 12, 34  # room for the value axis on the left and the weeks below


def bar_chart(name: str, points: Sequence[tuple[str, float | None]], shown: Callable[[float], str], *,
              css: str = "") -> Markup:
    """One bar per point (a label and a value; None: nothing to measure that week, drawn as a gap), the value axis
    from zero to the largest value, each bar titled with its label and value."""
    values = [v for _, v in points if v is not None]
    top = max(values, default=0.0) or 1.0
    inner_w, inner_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = inner_w / max(len(points), 1)
    bar = max(slot * 0.7, 1.0)
    every = max(1, round(len(points) / 6))  # at most about six week labels: they stay legible on a phone
    parts = [f'<svg class="chart {escape(css)}" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
             f'aria-label="{escape(name)}" preserveAspectRatio="xMidYMid meet">',
             f"<title>{escape(name)}</title>"]
    if not values:  # a scale of nothing would only mislead
        parts.append(f'<text class="axis" x="{LEFT + inner_w / 2:.1f}" y="{TOP + inner_h / 2:.1f}" '
                     'text-anchor="middle">nothing to measure yet</text>')
    for fraction in (0.0, 0.5, 1.0) if values else (0.0,):
        y = TOP + inner_h * (1 - fraction)
        parts.append(f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>')
        parts.append(f'<text class="axis" x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">'
                     f"{escape(shown(top * fraction))}</text>")
    for index, (label, value) in enumerate(points):
        x = LEFT + index * slot + (slot - bar) / 2
        if value is not None:
            height = inner_h * (value / top)
            parts.append(f'<rect class="bar" x="{x:.1f}" y="{TOP + inner_h - height:.1f}" width="{bar:.1f}" '
                         f'height="{max(height, 0.5):.1f}" data-value="{value:g}">'
                         f"<title>{escape(label)}: {escape(shown(value))}</title></rect>")
        else:
            parts.append(f'<rect class="bar none" x="{x:.1f}" y="{TOP + inner_h - 0.5:.1f}" width="{bar:.1f}" '
                         f'height="0.5"><title>{escape(label)}: none</title></rect>')
        if index % every == 0:
            parts.append(f'<text class="axis" x="{x + bar / 2:.1f}" y="{HEIGHT - BOTTOM + 16}" '
                         f'text-anchor="middle">{escape(label)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))
