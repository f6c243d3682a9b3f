"""Server-drawn SVG charts: no JavaScript library to ship, and they print."""

from django import template
from django.utils import timezone
from django.utils.html import escape, format_html
from django.utils.safestring import mark_safe

register = template.Library()

WIDTH, HEIGHT, PAD = 640, 180, 32


HISTORY_LEFT = 52  # room for the score labels, right-aligned against the plot


@register.simple_tag
def score_history_chart(changes, thresholds=()) -> str:
    """A step line of the total score over time, one point per recorded change: the lowest and
    highest scores labelled, dates (or times, within a day) below. `changes` come newest first,
    as the history table lists them (changes of one moment keep that order). `thresholds` are
    the MQL levels' (name, minimum score, minimum fit grade): a dashed line each where it lies
    within the scale, so that a reader sees when the lead crossed it."""
    points = [
        (timezone.localtime(c.changed_at), float(c.new_total), c.reason)
        for c in sorted(reversed(list(changes)), key=lambda c: c.changed_at)
    ]
    if not points:
        return ""
    start, end = points[0][0], points[-1][0]
    span = (end - start).total_seconds()
    values = [value for _, value, _ in points]
    low, high = _score_range(values)
    left, right = HISTORY_LEFT, WIDTH - PAD

    def x(when) -> float:
        if not span:  # one moment: in the middle
            return (left + right) / 2
        return left + (right - left) * (when - start).total_seconds() / span

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
        f"<title>{escape(f'{_day(when)}, {when:%H:%M}: {_score(value)} ({reason})')}</title></circle>"
        for when, value, reason in points
    )
    axis = "".join(
        f'<text x="{left - 8}" y="{y(value) + 4:.1f}" text-anchor="end">{_score(value)}</text>'
        for value in _score_labels(values, y, low, high)
    )
    if low <= 0 <= high:
        axis = f'<line x1="{left}" y1="{y(0):.1f}" x2="{right}" y2="{y(0):.1f}" class="axis"/>' + axis
    shown = [(name, score, grade) for name, score, grade in thresholds if low <= score <= high]
    axis += "".join(
        f'<line x1="{left}" y1="{y(score):.1f}" x2="{right}" y2="{y(score):.1f}" class="threshold"/>'
        for _, score, _ in shown
    )
    axis += "".join(
        f'<text x="{where}" y="{HEIGHT - 8}" text-anchor="{anchor}">{label}</text>'
        for where, anchor, label in _time_labels(start, end, left, right)
    )
    count = len(points)
    return format_html(
        '<svg class="chart" viewBox="0 0 {} {}" role="img" aria-label="Score history: {} change{}, now {}">'
        '{}<path d="{}" class="line"/>{}{}</svg>',
        WIDTH,
        HEIGHT,
        count,
        "" if count == 1 else "s",
        _score(points[-1][1]),
        mark_safe(axis),
        " ".join(path),
        mark_safe(dots),
        mark_safe(_threshold_labels(shown, y, left, right)),
    )


def _threshold_labels(thresholds, y, left: float, right: float) -> str:
    """Each level's name and bars above its line, drawn over the line and dots with a halo so
    that a step through it leaves it readable. A label that would cover another goes to the
    other end of its line; one that would cover a label at either end is left out (its line
    stays). A level's fit grade is named unless any grade qualifies: a score above the line of
    a level it has not reached then reads as such."""
    placed: dict[str, list[float]] = {"start": [], "end": []}
    labels = []
    for name, score, grade in thresholds:
        where = y(score) - 4
        anchor = next((a for a in ("start", "end") if all(abs(where - o) >= 12 for o in placed[a])), None)
        if anchor is None:
            continue
        placed[anchor].append(where)
        bars = f"≥ {score:g}" + (f", fit ≥ {grade}" if grade != "D" else "")
        x = left + 4 if anchor == "start" else right - 4
        labels.append(
            f'<text x="{x}" y="{where:.1f}" text-anchor="{anchor}" class="threshold">'
            f"{escape(name)}: {escape(bars)}</text>"
        )
    return "".join(labels)


def _score(value: float) -> str:
    """As the page writes a score: one decimal (scores are kept in tenths)."""
    return f"{value:.1f}"


def _score_range(values: list[float]) -> tuple[float, float]:
    """The scale's bottom and top: the scores the contact had, with room above and below, at
    least 10 points tall. Zero is included when the scores come near it (within their own
    spread), so that a small score is not drawn as a big one; a history that moved between 80
    and 90 is drawn between those, where its steps can be told apart."""
    low, high = min(values), max(values)
    if low > 0 and low <= high - low:
        low = 0.0
    elif high < 0 and -high <= high - low:
        high = 0.0
    margin = max((10 - (high - low)) / 2, (high - low) * 0.1)
    if low == 0 <= min(values):  # never below zero for scores that never were
        return 0.0, high + 2 * margin
    if high == 0 >= max(values):
        return low - 2 * margin, 0.0
    return low - margin, high + margin


def _score_labels(values: list[float], y, low: float, high: float) -> list[float]:
    """The highest and lowest scores the contact had, and 0 when it is on the scale: each at
    least a line (12 units) away from the ones before it, so that no label covers another."""
    labels: list[float] = []
    for value in (max(values), min(values), 0.0):
        if low <= value <= high and all(abs(y(value) - y(other)) >= 12 for other in labels):
            labels.append(value)
    return labels


def _day(when) -> str:
    return f"{when.day} {when:%b %Y}"


def _time_labels(start, end, left: float, right: float) -> list[tuple[float, str, str]]:
    """(x, text-anchor, text) under the time axis: one change is dated once, in the middle;
    changes within one day are told apart by their times, not by the same date twice."""
    if start == end:
        return [((left + right) / 2, "middle", f"{_day(start)}, {start:%H:%M}")]
    if start.date() == end.date():
        return [(left, "start", f"{_day(start)}, {start:%H:%M}"), (right, "end", f"{end:%H:%M}")]
    return [(left, "start", _day(start)), (right, "end", _day(end))]


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
