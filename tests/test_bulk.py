"""config.bulk.bulk_insert stores exactly what bulk_create would (PostgreSQL: one JSON document)."""

from datetime import UTC, datetime, timedelta
from datetime import timezone as dt_timezone
from decimal import Decimal

import pytest
from django.db import DataError, IntegrityError, connection, transaction

from config.bulk import bulk_insert
from leads.models import AuditEntry, LifecycleStage, StageChange
from scoring.models import MqlQualification
from scoring.selectors import active_version
from tests.factories import ContactFactory, UserFactory

pytestmark = pytest.mark.django_db


def test_rows_keep_their_decimals_microseconds_json_and_get_their_ids():
    contact, version = ContactFactory(), active_version()
    at = datetime(2026, 3, 1, 9, 30, 15, 123456, tzinfo=dt_timezone(timedelta(hours=2)))
    explanation = [{"rule": "Pricing page", "facts": "2 × +10 — \"quoted\" 'text' <b>", "points": "20.0"}]
    rows = [
        MqlQualification(
            contact=contact,
            version=version,
            level="hot",
            total=Decimal("87.5"),
            fit=Decimal("40.0"),
            engagement=Decimal("47.5"),
            fit_grade="A",
            explanation=explanation,
            top_reasons=explanation[:1],
            qualified_at=at,
        ),
        MqlQualification(
            contact=contact,
            version=version,
            level="warm",
            total=Decimal("-3.1"),
            fit=Decimal("0"),
            engagement=Decimal("-3.1"),
            fit_grade="D",
            qualified_at=at + timedelta(microseconds=1),
        ),
    ]

    bulk_insert(MqlQualification, rows)

    stored = list(MqlQualification.objects.order_by("id"))
    assert [row.pk for row in rows] == [row.pk for row in stored]
    first, second = stored
    assert (first.level, first.total, first.engagement, first.fit_grade) == (
        "hot",
        Decimal("87.5"),
        Decimal("47.5"),
        "A",
    )
    assert first.qualified_at == at
    assert first.explanation == explanation
    assert first.run is None
    assert (second.total, second.explanation, second.qualified_at) == (
        Decimal("-3.1"),
        [],
        at + timedelta(microseconds=1),
    )


def test_nullable_foreign_keys_and_dict_json_round_trip():
    actor = UserFactory()
    entries = [
        AuditEntry(
            actor=None,
            action="lead.route",
            object_type="contact",
            object_id="7",
            after={"owner": "ann"},
            at=datetime(2026, 1, 1, tzinfo=UTC),
        ),
        AuditEntry(
            actor=actor,
            action="lead.accept",
            object_type="contact",
            object_id="8",
            before={},
            at=datetime(2026, 1, 2, tzinfo=UTC),
        ),
    ]

    bulk_insert(AuditEntry, entries)

    assert list(AuditEntry.objects.order_by("id").values_list("actor_id", "object_id", "after")) == [
        (None, "7", {"owner": "ann"}),
        (actor.pk, "8", {}),
    ]


@pytest.mark.skipif(connection.vendor != "postgresql", reason="SQLite does not check a text column's length")
def test_a_value_too_long_for_its_column_fails_as_with_bulk_create_and_stores_nothing():
    contact = ContactFactory()
    change = StageChange(
        contact=contact,
        from_stage=LifecycleStage.LEAD,
        to_stage=LifecycleStage.MQL,
        changed_at=datetime(2026, 1, 1, tzinfo=UTC),
        rule="x" * 500,  # the column holds 200
    )

    with pytest.raises((DataError, IntegrityError)), transaction.atomic():
        bulk_insert(StageChange, [change])

    assert not StageChange.objects.exists()


def test_nothing_to_insert_is_no_statement(django_assert_num_queries):
    with django_assert_num_queries(0):
        bulk_insert(StageChange, [])
