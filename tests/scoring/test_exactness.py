"""The incrementally maintained score always equals a from-scratch computation.

Random event streams (with re-sent duplicates) go through the real ingest service, which
maintains the daily aggregates; random rule sets are then evaluated on those aggregates
and, independently, on the contact's raw activities, at a random day.
"""

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leads.models import ActivityType
from leads.services import IngestEvent, activities_ingest, contact_upsert
from scoring.models import ContactScore, EngagementRule, ModelVersion, ScoringModel
from scoring.selectors import ruleset_for, score_from_scratch
from scoring.services import contacts_rescore, matchers_prepare

TYPES = ["page_view", "email_click", "demo_request", "content_download"]
URLS = ["/pricing", "/blog/a", "/pricing/enterprise", "/product", "/PRICING"]
BASE = datetime(2026, 6, 1, 12, tzinfo=UTC)

events = st.lists(
    st.tuples(st.sampled_from(TYPES), st.integers(0, 120), st.integers(0, 23), st.sampled_from(URLS), st.booleans()),
    max_size=25,
)
rules = st.lists(
    st.tuples(
        st.sampled_from(TYPES),
        st.integers(-20, 30).filter(bool),
        st.one_of(st.none(), st.integers(1, 60)),
        st.sampled_from(["window", "decay", "none"]),
        st.integers(1, 90),
        st.one_of(st.none(), st.sampled_from(["/pricing", "/blog"])),
    ),
    min_size=1,
    max_size=5,
)


@pytest.mark.django_db
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    stream=events,
    rule_specs=rules,
    as_of_offset=st.integers(-5, 200),
    engagement_cap=st.integers(5, 150),
    batch_size=st.integers(1, 6),
)
def test_incremental_score_equals_from_scratch(stream, rule_specs, as_of_offset, engagement_cap, batch_size):
    contact = contact_upsert(email=f"p{abs(hash((tuple(stream), as_of_offset)))}@x.example").contact
    version = _version(rule_specs, engagement_cap)
    matchers_prepare(version=version)
    ingest = [
        IngestEvent(
            index=n,
            type_key=type_key,
            occurred_at=BASE + timedelta(days=day, hours=hour),
            source="prop",
            external_id=f"{contact.pk}-{n}",
            properties={"url": url},
            contact_id=contact.pk,
        )
        for n, (type_key, day, hour, url, _) in enumerate(stream)
    ]
    resent = [event for event, (*_, again) in zip(ingest, stream, strict=True) if again]
    for start in range(0, len(ingest), batch_size):  # aggregates grow batch by batch
        activities_ingest(events=ingest[start : start + batch_size])
    if resent:
        activities_ingest(events=resent)  # duplicates must count once
    as_of = (BASE + timedelta(days=as_of_offset)).date()

    contacts_rescore(contact_ids=[contact.pk], reason="test", as_of=as_of, version=version)
    stored = ContactScore.objects.get(contact=contact)
    expected = score_from_scratch(contact, ruleset_for(version), as_of, version)

    stored_numbers = (stored.fit, stored.engagement, stored.total, stored.fit_grade, stored.mql_level)
    assert stored_numbers == (expected.fit, expected.engagement, expected.total, expected.fit_grade, expected.mql_level)
    # The explanation, computed on read, is the from-scratch one and adds up to the stored total.
    assert stored.explanation == [c.as_json() for c in expected.contributions]
    assert sum(_points(c) for c in stored.explanation) == stored_numbers[2]


def _points(contribution):
    from decimal import Decimal

    return Decimal(contribution["points"])


def _version(rule_specs, engagement_cap) -> ModelVersion:
    model = ScoringModel.objects.create(name=f"prop-{ScoringModel.objects.count()}")
    version = ModelVersion.objects.create(scoring_model=model, number=1, engagement_cap=engagement_cap)
    types = {t.key: t for t in ActivityType.objects.filter(key__in=TYPES)}
    for n, (type_key, points, cap, timing, days, url_filter) in enumerate(rule_specs):
        EngagementRule.objects.create(
            version=version,
            name=f"r{n}",
            activity_type=types[type_key],
            points=points,
            cap=cap,
            window_days=days if timing == "window" else None,
            half_life_days=days if timing == "decay" else None,
            property_name="url" if url_filter else "",
            property_operator="contains" if url_filter else "",
            property_value=url_filter or "",
        )
    return version
