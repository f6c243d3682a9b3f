"""A draft's preview on PostgreSQL: the set-based rescore of sql_rescore, computed and compared
with the stored scores, never written.

The preview in Python (selectors.preview_version) evaluates every contact with the engine:
at a million contacts that took about 160 s, in one page request. This computes the same
figures, chunk by chunk, with the statement a publish's chunks use, against the active
version's stored scores (a draft is usually a few rule changes from it: RuleChange).
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from django.db import connection, transaction

from leads.models import Contact

from . import sql_rescore
from .engine import RuleSet
from .models import ModelVersion

PREVIEW_SQL_CHUNK = 5000


def preview_in_sql(
    *, rules: RuleSet, version: ModelVersion, active: ModelVersion | None, as_of: date, examples: int, progress=None
) -> dict:
    """selectors.preview_version's figures and examples, for PostgreSQL."""
    from .selectors import contacts_may_qualify, preview_summary_empty, scoring_profiles
    from .services import QUALIFYING_STAGES

    change = sql_rescore.rule_change_from(rules, active) if active is not None else None
    summary = preview_summary_empty()
    ids = list(Contact.objects.order_by("id").values_list("id", flat=True))
    stages = [str(stage) for stage in QUALIFYING_STAGES]
    for start in range(0, len(ids), PREVIEW_SQL_CHUNK):
        chunk = ids[start : start + PREVIEW_SQL_CHUNK]
        counted, reaching, drops = _chunk_compared(rules, version, chunk, as_of, change, stages)
        summary["contacts"] += counted[0]
        summary["changed"] += counted[1]
        summary["drops"] += len(drops)
        summary["drop_examples"] += drops[: examples - len(summary["drop_examples"])]
        if reaching:
            profiles = scoring_profiles([example["contact_id"] for example in reaching])
            by_id = {example["contact_id"]: example for example in reaching}
            qualifying = contacts_may_qualify(by_id, profiles, rules)
            summary["new_mqls"] += len(qualifying)
            summary["new_examples"] += [by_id[c] for c in qualifying][: examples - len(summary["new_examples"])]
        if progress:
            progress(summary["contacts"], len(ids))
    return summary


def _chunk_compared(rules, version, chunk, as_of, change, stages) -> tuple[tuple[int, int], list, list]:
    """For one chunk of contact ids: (contacts, totals that change), the contacts that would
    reach a level from none in a stage scoring may qualify, and those that would lose theirs,
    each as a preview example. In a transaction rolled back: the engagement sums the draft's
    rules need are rebuilt for it, and must not replace the active version's; the pending
    counts folded for it stay pending."""
    from .services import engagement_fold

    with transaction.atomic():
        engagement_fold(contact_ids=chunk)  # counts not folded in yet count, as in the engine's preview
        computed = sql_rescore.scores_compute(rules=rules, ids=chunk, as_of=as_of, version_id=version.pk, change=change)
        example = (
            "json_build_object('contact_id', contact_id, 'old_total', coalesce(old_total, 0), "
            "'new_total', total, 'old_level', coalesce(old_level, ''), 'new_level', mql_level, "
            "'old_grade', coalesce(old_grade, ''), 'new_grade', fit_grade) "
            "ORDER BY contact_id"
        )
        with connection.cursor() as cursor:
            cursor.execute(
                f"""WITH n AS MATERIALIZED ({computed.sql})
                SELECT count(*), count(*) FILTER (WHERE coalesce(old_total, 0) <> total),
                       coalesce(json_agg({example}) FILTER (
                           WHERE mql_level <> '' AND coalesce(old_level, '') = '' AND lifecycle_stage = ANY(%s)
                       ), '[]'),
                       coalesce(json_agg({example}) FILTER (WHERE coalesce(old_level, '') <> '' AND mql_level = ''),
                                '[]')
                FROM n""",
                [*computed.params, stages],
            )
            contacts, changed, reaching, drops = cursor.fetchone()
        transaction.set_rollback(True)
    return (contacts, changed), _decimals(reaching), _decimals(drops)


def _decimals(examples: list[dict]) -> list[dict]:
    """Totals as the Python preview gives them (Decimal, one decimal place), not JSON floats."""
    for example in examples:
        for key in ("old_total", "new_total"):
            example[key] = Decimal(str(example[key])).quantize(Decimal("0.1"))
    return examples
