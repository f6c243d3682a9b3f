"""The report's tables, each built once and shown two ways: on the page and as a CSV file.

Cells hold raw values (counts, fractions, decimals, durations); a column's kind says how to
show them. So the page and its CSV export cannot disagree.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from fractions import Fraction

from . import Report

NO_CAMPAIGN, UNKNOWN_SOURCE, NO_LEVEL = "(no campaign)", "(unknown)", "(no level recorded)"
# A spreadsheet runs a cell that starts with one of these as a formula (CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


@dataclass
class Column:
    label: str
    kind: str = "text"  # text | count | percent | ratio | money | hours | date

    @property
    def csv_label(self) -> str:
        return {"percent": f"{self.label} (%)", "hours": f"{self.label} (hours)"}.get(self.kind, self.label)


@dataclass
class Table:
    slug: str
    title: str
    columns: list[Column]
    rows: list[list] = field(default_factory=list)
    totals: list[list] = field(default_factory=list)

    def cells(self, row: list) -> list[tuple]:
        """(value, kind) pairs, which is how templates read a row."""
        return list(zip(row, (column.kind for column in self.columns), strict=True))

    @property
    def body(self) -> list[list[tuple]]:
        return [self.cells(row) for row in self.rows]

    @property
    def footer(self) -> list[list[tuple]]:
        return [self.cells(row) for row in self.totals]


def funnel_table(report: Report) -> Table:
    table = Table(
        "funnel",
        "Funnel",
        [
            Column("Stage"),
            Column("Reached in range", "count"),
            Column("Of them, reached the next stage", "count"),
            Column("Conversion to next stage", "percent"),
        ],
    )
    table.rows = [[step.label, step.reached, step.went_on, step.conversion] for step in report.funnel]
    return table


def handoff_table(report: Report) -> Table:
    h = report.handoffs
    table = Table(
        "handoff",
        "Hand-off to sales",
        [
            Column("Decision"),
            Column("Decisions", "count"),
            Column("Share", "percent"),
            Column("Median MQL to decision", "hours"),
        ],
    )
    share = (lambda n: Fraction(n, h.decided)) if h.decided else (lambda n: None)
    table.rows = [
        ["Accepted", h.accepted, share(h.accepted), h.median_wait_accepted],
        ["Rejected", h.rejected, share(h.rejected), h.median_wait_rejected],
    ]
    table.totals = [["All decisions", h.decided, share(h.decided), h.median_wait]]
    return table


def reasons_table(report: Report) -> Table:
    table = Table(
        "rejection-reasons",
        "Rejection reasons",
        [Column("Reason"), Column("Rejections", "count"), Column("Share", "percent")],
    )
    table.rows = [[reason.label, reason.count, reason.share] for reason in report.rejection_reasons]
    return table


def sources_table(report: Report) -> Table:
    table = Table(
        "sources", "MQLs by lead source", [Column("Lead source"), Column("MQLs", "count"), Column("Share", "percent")]
    )
    table.rows = [[row.source or UNKNOWN_SOURCE, row.mqls, row.share] for row in report.sources]
    table.totals = [["All MQLs", len(report.mqls), Fraction(1) if report.mqls else None]]
    return table


def campaigns_table(report: Report) -> Table:
    table = Table(
        "campaigns",
        "MQLs and cost by campaign",
        [
            Column("Campaign"),
            Column("MQLs, first touch", "count"),
            Column("MQLs, linear", "ratio"),
            Column("Cost in range", "money"),
            Column("Currency"),
            Column("Cost per MQL, first touch", "money"),
            Column("Cost per MQL, linear", "money"),
        ],
    )
    table.rows = [
        [
            row.campaign or NO_CAMPAIGN,
            row.first_touch,
            row.linear,
            row.cost,
            row.currency,
            row.cost_per_mql_first_touch,
            row.cost_per_mql_linear,
        ]
        for row in report.campaigns
    ]
    total = len(report.mqls)
    table.totals = [
        [
            "All campaigns",
            total,
            Fraction(total),
            spent,
            currency,
            report.cost_per_mql[currency],
            report.cost_per_mql[currency],
        ]
        for currency, spent in report.spend.items()
    ] or [["All campaigns", total, Fraction(total), None, "", None, None]]
    return table


def weekly_table(report: Report) -> Table:
    table = Table(
        "weekly",
        "MQLs per week",
        [Column("Week starting", "date"), Column("Days in range", "count"), Column("MQLs", "count")],
    )
    table.rows = [[week.monday, week.days_in_range, week.mqls] for week in report.weeks]
    return table


def expected_value_table(report: Report) -> Table:
    ev = report.expected_value
    table = Table(
        "expected-value",
        "Expected value of open MQLs",
        [
            Column("MQL level"),
            Column("Open MQLs", "count"),
            Column("Past MQLs with a known result", "count"),
            Column("Of them, converted", "count"),
            Column("Observed conversion", "percent"),
            Column("Probability used", "percent"),
            Column("Expected value", "money"),
        ],
    )
    table.rows = [
        [
            lvl.level or NO_LEVEL,
            lvl.open,
            lvl.known,
            lvl.converted,
            lvl.observed_rate,
            lvl.probability,
            lvl.expected_value,
        ]
        for lvl in ev.levels
    ]
    known = sum(lvl.known for lvl in ev.levels)
    converted = sum(lvl.converted for lvl in ev.levels)
    table.totals = [["All levels", ev.open, known, converted, ev.overall_rate, None, ev.total]]
    return table


def nurture_table(report: Report) -> Table:
    table = Table(
        "nurture",
        "Nurture performance",
        [
            Column("Sequence"),
            Column("Status"),
            Column("Enrolled", "count"),
            Column("Emails sent", "count"),
            Column("Opened", "count"),
            Column("Open rate", "percent"),
            Column("Clicked", "count"),
            Column("Click rate", "percent"),
            Column("Unsubscribed", "count"),
            Column("Became MQL after enrolling", "count"),
        ],
    )
    table.rows = [
        [
            r.sequence,
            r.status,
            r.enrolled,
            r.sent,
            r.opened,
            r.open_rate,
            r.clicked,
            r.click_rate,
            r.unsubscribed,
            r.became_mql,
        ]
        for r in report.nurture
    ]
    return table


TABLES: dict[str, Callable[[Report], Table]] = {
    "funnel": funnel_table,
    "handoff": handoff_table,
    "rejection-reasons": reasons_table,
    "sources": sources_table,
    "campaigns": campaigns_table,
    "weekly": weekly_table,
    "expected-value": expected_value_table,
    "nurture": nurture_table,
}


# --- CSV ---------------------------------------------------------------------------------------


def csv_value(value, kind: str):
    """A cell as a spreadsheet should read it: plain numbers, no thousands separators."""
    if value is None:
        return ""
    if kind == "percent":
        return f"{float(value) * 100:.1f}"
    if kind == "ratio":
        return f"{float(value):.2f}"
    if kind == "hours":
        return f"{value / timedelta(hours=1):.1f}"
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, int | Decimal):
        return str(value)
    return csv_safe(str(value))


def csv_safe(text: str) -> str:
    """Campaign keys and sources come from outside (UTM parameters): never let one run as a formula."""
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def table_csv(table: Table) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([column.csv_label for column in table.columns])
    for row in [*table.body, *table.footer]:
        writer.writerow([csv_value(value, kind) for value, kind in row])
    return out.getvalue()
