"""Report cells and server-drawn SVG charts (no JavaScript library to ship, and they print)."""

from datetime import timedelta

from django import template
from django.contrib.humanize.templatetags.humanize import intcomma
from django.utils.html import escape, format_html
from django.utils.safestring import mark_safe

register = template.Library()

WIDTH, LABEL_WIDTH, ROW, PAD = 720, 180, 30, 8
BAR, BAR_LIGHT = "#2563eb", "#93b4f5"


@register.filter
def report_cell(value, kind: str) -> str:
    """A table cell for people: thousands separators, percentages, readable durations."""
    if value is None:
        return "—"
    if kind == "count":
        return intcomma(value)
    if kind == "percent":
        return f"{float(value) * 100:.1f} %"
    if kind == "ratio":
        return f"{float(value):,.2f}"
    if kind == "money":
        return f"{value:,.2f}"
    if kind == "hours":
        return duration(value)
    if kind == "date":
        return f"{value:%d %b %Y}"
    return value


def duration(value: timedelta) -> str:
    minutes = int(value.total_seconds() // 60)
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min"


def _hbars(
    items: list[tuple[str, int, str]], aria_label: str, *, width: int = WIDTH, label_width: int = LABEL_WIDTH
) -> str:
    """Horizontal bars: (label, value, text shown after the bar). A narrower `width` keeps
    the text readable in a half-width card, where the drawing is scaled down."""
    if not items:
        return ""
    top = max(value for _, value, _ in items) or 1
    room = width - label_width - 150  # what is left for the longest bar, beside its text
    parts = []
    for index, (label, value, text) in enumerate(items):
        y = PAD + index * ROW
        bar = max(room * value / top, 1 if value else 0)
        parts.append(
            f'<text x="{label_width - 8}" y="{y + 15}" text-anchor="end" class="label">{escape(label)}</text>'
            f'<rect x="{label_width}" y="{y}" width="{bar:.1f}" height="{ROW - 10}" fill="{BAR}">'
            f"<title>{escape(label)}: {escape(text)}</title></rect>"
            f'<text x="{label_width + bar + 6:.1f}" y="{y + 15}" class="value">{escape(text)}</text>'
        )
    height = 2 * PAD + len(items) * ROW - 10
    return format_html(
        '<svg class="chart chart-bars" viewBox="0 0 {} {}" role="img" aria-label="{}">{}</svg>',
        width,
        height,
        aria_label,
        mark_safe("".join(parts)),
    )


@register.simple_tag
def funnel_chart(steps) -> str:
    items = []
    for step in steps:
        text = intcomma(step.reached)
        if step.conversion is not None:
            text += f" · {float(step.conversion) * 100:.1f} % went on"
        items.append((step.label, step.reached, text))
    return _hbars(items, "Contacts reaching each funnel stage in the range")


@register.simple_tag
def reasons_chart(reasons) -> str:
    items = [(r.label, r.count, f"{intcomma(r.count)} · {float(r.share) * 100:.0f} %") for r in reasons]
    return _hbars(items, "Rejections by reason", width=460, label_width=110)


@register.simple_tag
def sources_chart(sources) -> str:
    items = [(s.source or "(unknown)", s.mqls, f"{intcomma(s.mqls)} · {float(s.share) * 100:.0f} %") for s in sources]
    return _hbars(items, "MQLs by lead source")


@register.simple_tag
def weekly_chart(weeks) -> str:
    """MQLs per week as columns; weeks only partly in the range are drawn lighter."""
    if not weeks:
        return ""
    height, bottom, left = 220, 190, 40
    top = max(week.mqls for week in weeks) or 1
    slot = (WIDTH - left - PAD) / len(weeks)
    label_every = max(1, round(len(weeks) / 8))
    parts = [
        f'<line x1="{left}" y1="{bottom}" x2="{WIDTH - PAD}" y2="{bottom}" class="axis"/>',
        f'<text x="{left - 6}" y="{PAD + 10}" text-anchor="end">{top}</text>',
        f'<text x="{left - 6}" y="{bottom}" text-anchor="end">0</text>',
    ]
    for index, week in enumerate(weeks):
        bar = (bottom - PAD - 10) * week.mqls / top
        x = left + index * slot + slot * 0.15
        partial = week.days_in_range < 7
        title = f"Week of {week.monday:%d %b %Y}: {week.mqls} MQLs"
        if partial:
            title += f" ({week.days_in_range} of its days in the range)"
        parts.append(
            f'<rect x="{x:.1f}" y="{bottom - bar:.1f}" width="{slot * 0.7:.1f}" height="{bar:.1f}" '
            f'fill="{BAR_LIGHT if partial else BAR}"><title>{escape(title)}</title></rect>'
        )
        if index % label_every == 0:
            parts.append(f'<text x="{x:.1f}" y="{bottom + 16}">{week.monday:%d %b}</text>')
    return format_html(
        '<svg class="chart" viewBox="0 0 {} {}" role="img" aria-label="MQLs per week: {} weeks, at most {} in one">'
        "{}</svg>",
        WIDTH,
        height,
        len(weeks),
        top,
        mark_safe("".join(parts)),
    )
