"""Server-side SVG charts (no JavaScript, no CDN): bars and 90-day lines, with titles for screen readers.

The SVGs scale to their container (viewBox, width 100 %), sized so that two sit
side by side on a 1366 x 768 screen. Colours come from static/css/dashboard.css.
"""

import datetime as dt
import itertools
from collections.abc import Callable, Sequence
from decimal import Decimal

from django.utils.formats import date_format, number_format
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import gettext as _

_ids = itertools.count(1)


def _nice_max(value: float) -> float:
    """The axis top: 1, 2, 2.5 or 5 times a power of ten, at least the value."""
    if value <= 0:
        return 1
    if value <= 10:
        return 2 * ((int(value) + 1) // 2) if value > 1 else 1  # even, so that the half line is whole
    magnitude = 10 ** (len(str(int(value))) - 1)
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * magnitude:
            return step * magnitude
    return 10 * magnitude


def _ticks(top: float, *, whole: bool) -> tuple[float, ...]:
    """0, half and top; without the half when it would be a fraction on an axis of counts."""
    half = top / 2
    return (0, top) if whole and half != int(half) else (0, half, top)


def _fmt(value: int | float | Decimal) -> str:
    """A bar's value or an axis tick; a Decimal amount stays Decimal (== int() needs no float)."""
    return number_format(value, decimal_pos=0 if value == int(value) else 2, force_grouping=True)


def _no_data(title: str, width: int, height: int) -> SafeString:
    """A chart with nothing to draw says so, instead of a flat line or empty bars."""
    uid = f"chart{next(_ids)}"
    return format_html(
        '<svg class="chart no-data" viewBox="0 0 {w} {h}" role="img" aria-labelledby="{id}-t">'
        '<title id="{id}-t">{title}: {none}</title>'
        '<text x="{x}" y="{y}" class="empty" text-anchor="middle">{none}</text></svg>',
        w=width,
        h=height,
        id=uid,
        title=title,
        none=_("No data yet"),
        x=width // 2,
        y=height // 2,
    )


def bar_chart(
    *,
    title: str,
    items: Sequence[tuple[str, float]],
    width: int = 520,
    value_text: Callable[[float], str] = _fmt,
    keys: Sequence[str] | None = None,
) -> SafeString:
    """Horizontal bars, one per item, the value written at the end of each bar. With `keys` (e.g.
    region codes) each bar's colour class is `k<key>`, the same on every screen whatever the order;
    otherwise the bars take the palette in turn."""
    if not any(value for _label, value in items):
        return _no_data(title, width, 120)
    uid = f"chart{next(_ids)}"
    row, label_w, pad = 26, 150, 8
    height = pad * 2 + row * max(len(items), 1)
    top = _nice_max(float(max((v for _, v in items), default=0)))
    plot_w = width - label_w - 70
    bars = []
    for i, (label, value) in enumerate(items):
        y = pad + i * row
        w = max(0.0, plot_w * float(value) / top)
        bars.append(
            format_html(
                '<g class="bar {}"><text x="{}" y="{}" class="label" text-anchor="end">{}</text>'
                '<rect x="{}" y="{}" width="{}" height="{}" rx="2"><title>{}: {}</title></rect>'
                '<text x="{}" y="{}" class="value">{}</text></g>',
                f"k{keys[i]}" if keys else f"s{i % 8}",
                label_w - 6,
                y + row / 2 + 4,
                label,
                label_w,
                y + 4,
                f"{w:.1f}",
                row - 8,
                label,
                value_text(value),
                f"{label_w + w + 4:.1f}",
                y + row / 2 + 4,
                value_text(value),
            )
        )
    return format_html(
        '<svg class="chart bar-chart" viewBox="0 0 {w} {h}" role="img" aria-labelledby="{id}-t">'
        '<title id="{id}-t">{title}</title>{bars}</svg>',
        w=width,
        h=height,
        id=uid,
        title=title,
        bars=mark_safe("".join(bars)),  # noqa: S308 (each bar escaped above)
    )


def line_chart(
    *,
    title: str,
    days: Sequence[dt.date],
    series: Sequence[tuple[str, Sequence[float]]],
    width: int = 560,
    height: int = 220,
    value_text: Callable[[float], str] = _fmt,
) -> SafeString:
    """Daily lines over the given days (the last is today), with a y axis (0, half, top), the first, middle and
    last date, a legend with each line's value today.

    Counts (all values whole) get whole ticks only: no half line under a top of 1. Nothing but
    zeros says "no data yet" instead of a flat line."""
    if not any(v for _name, values in series for v in values):
        return _no_data(title, width, height)
    uid = f"chart{next(_ids)}"
    left, right, top_pad, bottom = 56, 12, 24, 36
    plot_w, plot_h = width - left - right, height - top_pad - bottom
    # Geometry in floats; every number written out comes from the values themselves (Decimal yuan stay exact).
    top = _nice_max(float(max((max(values, default=0) for _, values in series), default=0)))
    n = max(len(days) - 1, 1)

    def x(i: int) -> float:
        return left + plot_w * i / n

    def y(v: float) -> float:
        return top_pad + plot_h - (plot_h * max(float(v), 0.0) / top)

    grid = format_html_join(
        "",
        '<line x1="{}" x2="{}" y1="{}" y2="{}" class="grid"/>'
        '<text x="{}" y="{}" class="axis" text-anchor="end">{}</text>',
        (
            (
                left,
                width - right,
                f"{y(v):.1f}",
                f"{y(v):.1f}",
                left - 4,
                f"{y(v) + 4:.1f}",
                value_text(Decimal(str(v))),
            )
            for v in _ticks(top, whole=all(v == int(v) for _name, values in series for v in values))
        ),
    )
    # The first date starts at the axis, the last ends at the edge, so that neither is cut off.
    anchors = {0: "start", len(days) // 2: "middle", len(days) - 1: "end"} if days else {}
    ticks = format_html_join(
        "",
        '<text x="{}" y="{}" class="axis" text-anchor="{}">{}</text>',
        (
            (f"{x(i):.1f}", height - bottom + 16, anchor, date_format(days[i], "SHORT_DATE_FORMAT"))
            for i, anchor in sorted(anchors.items())
        ),
    )
    lines, legend = [], []
    for k, (name, values) in enumerate(series):
        points = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(values))
        last = values[-1] if values else 0
        lines.append(
            format_html('<polyline class="line s{}" points="{}"><title>{}</title></polyline>', k, points, name)
        )
        legend.append(
            format_html(
                '<g class="legend s{}"><rect x="{}" y="6" width="10" height="10"/><text x="{}" y="15">{}</text></g>',
                k,
                left + k * 190,
                left + k * 190 + 14,
                # The last day is today (the dashboards' trends end today).
                _("%(series)s (today: %(value)s)") % {"series": name, "value": value_text(last)},
            )
        )
    return format_html(
        '<svg class="chart line-chart" viewBox="0 0 {w} {h}" role="img" aria-labelledby="{id}-t">'
        '<title id="{id}-t">{title}</title>{legend}{grid}{ticks}{lines}</svg>',
        w=width,
        h=height,
        id=uid,
        title=title,
        legend=mark_safe("".join(legend)),  # noqa: S308 (escaped above)
        grid=grid,
        ticks=ticks,
        lines=mark_safe("".join(lines)),  # noqa: S308 (escaped above)
    )
