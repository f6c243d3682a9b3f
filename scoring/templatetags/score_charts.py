"""Server-drawn SVG charts: no JavaScript library to ship, and they print."""

from django import template
from django.utils import timezone
from django.utils.html import escape, format_html
from django.utils.safestring import mark_safe

register = template.Library()

WIDTH, HEIGHT, PAD = 640, 180, 32


@register.simple_tag
def score_history_chart(changes) -> str:
    """A step line of the total score over time, one point per recorded change."""
    points = [
        (timezone.localtime(c.changed_at), float(c.new_total), c.reason)
        for c in sorted(changes, key=lambda c: c.changed_at)
    ]
    if not points:
        return ""
    start, end = points[0][0], points[-1][0]
    span = max((end - start).total_seconds(), 1)
    low, high = min(0.0, *(p[1] for p in points)), max(10.0, *(p[1] for p in points))

    def x(when) -> float:
        return PAD + (WIDTH - 2 * PAD) * (when - start).total_seconds() / span

    def y(value) -> float:
        return HEIGHT - PAD - (HEIGHT - 2 * PAD) * (value - low) / (high - low)

    path, previous = [], None
    for when, value, _ in points:
        if previous is not None:
            path.append(f"L{x(when):.1f},{y(previous):.1f}")
        path.append(f"{'M' if previous is None else 'L'}{x(when):.1f},{y(value):.1f}")
        previous = value
    dots = "".join(
        f'<circle cx="{x(when):.1f}" cy="{y(value):.1f}" r="3">'
        f"<title>{escape(f'{when:%Y-%m-%d %H:%M}: {value:g} ({reason})')}</title></circle>"
        for when, value, reason in points
    )
    # Changes within one day are told apart by their times, not by the same date twice.
    if start.date() == end.date():
        start_label, end_label = f"{start:%d %b %Y, %H:%M}", f"{end:%H:%M}"
    else:
        start_label, end_label = f"{start:%d %b %Y}", f"{end:%d %b %Y}"
    axis = (
        f'<line x1="{PAD}" y1="{y(0):.1f}" x2="{WIDTH - PAD}" y2="{y(0):.1f}" class="axis"/>'
        f'<text x="4" y="{y(high) + 4:.1f}">{high:g}</text><text x="4" y="{y(low) + 4:.1f}">{low:g}</text>'
        f'<text x="{PAD}" y="{HEIGHT - 8}">{start_label}</text>'
        f'<text x="{WIDTH - PAD}" y="{HEIGHT - 8}" text-anchor="end">{end_label}</text>'
    )
    return format_html(
        '<svg class="chart" viewBox="0 0 {} {}" role="img" aria-label="Score history: {} changes, now {}">'
        '{}<path d="{}" class="line"/>{}</svg>',
        WIDTH,
        HEIGHT,
        len(points),
        f"{points[-1][1]:g}",
        mark_safe(axis),
        " ".join(path),
        mark_safe(dots),
    )


@register.simple_tag
def score_distribution_chart(histogram) -> str:
    """Good and bad leads' score distributions as paired bars per score band."""
    edges, good, bad = histogram.get("edges", []), histogram.get("good", []), histogram.get("bad", [])
    if not good:
        return ""
    width, height, pad = 360, 160, 24
    band = (width - 2 * pad) / len(good)
    top = max(*good, *bad, 0.01)
    bars = []
    for i, (g, b) in enumerate(zip(good, bad, strict=True)):
        x = pad + i * band
        label = escape(f"{edges[i]:g} to {edges[i + 1]:g} points: {g:.0%} of good, {b:.0%} of bad leads")
        for offset, share, css in ((0, b, "bar-bad"), (band / 2, g, "bar-good")):
            h = (height - 2 * pad) * share / top
            bars.append(
                f'<rect x="{x + offset:.1f}" y="{height - pad - h:.1f}" width="{band / 2 - 1:.1f}" '
                f'height="{h:.1f}" class="{css}"><title>{label}</title></rect>'
            )
    axis = (
        f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" class="axis"/>'
        f'<text x="{pad}" y="{height - 6}">{edges[0]:g}</text>'
        f'<text x="{width - pad}" y="{height - 6}" text-anchor="end">{edges[-1]:g} points</text>'
    )
    return format_html(
        '<svg class="chart" viewBox="0 0 {} {}" role="img" aria-label="Score distribution of good and bad leads">'
        "{}{}</svg>",
        width,
        height,
        mark_safe(axis),
        mark_safe("".join(bars)),
    )
