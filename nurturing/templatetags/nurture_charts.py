"""Server-drawn SVG chart of a sequence's daily results (no JavaScript library to ship)."""

from django import template
from django.utils.html import escape, format_html
from django.utils.safestring import mark_safe

register = template.Library()

WIDTH, HEIGHT, PAD = 720, 200, 34
SERIES = (("sent", "#2563eb"), ("opened", "#16a34a"), ("clicked", "#f59e0b"))


@register.simple_tag
def daily_results_chart(rows) -> str:
    """Grouped bars per day: sent, opened, clicked."""
    if not rows:
        return ""
    top = max(max(row[key] for key, _ in SERIES) for row in rows) or 1
    slot = (WIDTH - 2 * PAD) / len(rows)
    bar = max(slot / 4, 1)
    parts = [
        f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - PAD}" y2="{HEIGHT - PAD}" class="axis"/>',
        f'<text x="4" y="{PAD}">{top}</text>',
    ]
    for index, row in enumerate(rows):
        for offset, (key, colour) in enumerate(SERIES):
            height = (HEIGHT - 2 * PAD) * row[key] / top
            x = PAD + index * slot + offset * bar
            label = escape(f"{row['day']:%d %b}: {row[key]} {key}")
            parts.append(
                f'<rect x="{x:.1f}" y="{HEIGHT - PAD - height:.1f}" width="{bar:.1f}" '
                f'height="{height:.1f}" fill="{colour}"><title>{label}</title></rect>'
            )
    parts.append(f'<text x="{PAD}" y="{HEIGHT - 10}">{rows[0]["day"]:%d %b}</text>')
    parts.append(f'<text x="{WIDTH - PAD}" y="{HEIGHT - 10}" text-anchor="end">{rows[-1]["day"]:%d %b}</text>')
    legend = "".join(f'<tspan fill="{colour}"> ■ {key}</tspan>' for key, colour in SERIES)
    parts.append(f'<text x="{WIDTH - PAD}" y="14" text-anchor="end">{legend}</text>')
    return format_html(
        '<svg class="chart" viewBox="0 0 {} {}" role="img" aria-label="Emails sent, opened and '
        'clicked per day">{}</svg>',
        WIDTH,
        HEIGHT,
        mark_safe("".join(parts)),
    )
