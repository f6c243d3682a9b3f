"""The bulk ingest validates the common event shape on a fast path; whatever it accepts,
DRF's serializer must accept with the same data, and whatever it defers, DRF decides."""

from datetime import UTC, datetime, timedelta

from hypothesis import example, given, settings
from hypothesis import strategies as st
from rest_framework import serializers

from leads.serializers import IngestEventInput

NOW = datetime.now(UTC)

texts = st.one_of(
    st.sampled_from(["page_view", "web-site", "x_1", "", " page_view", "page view", "é", "a" * 61, "a" * 201]),
    st.text(max_size=8),
    st.text(alphabet="ab-_\x00 \t", max_size=5),
)
emails = st.one_of(
    st.sampled_from(["ada@example.com", "Ada@Example.COM", " ada@example.com ", "not-an-email", "", "a@b", "a@b.c"]),
    st.emails(),
    st.text(max_size=6),
)
times = st.one_of(
    st.sampled_from(
        [
            NOW.isoformat(),
            (NOW - timedelta(days=400)).isoformat(),
            (NOW + timedelta(days=3)).isoformat(),
            "2026-11-23T10:00:00",  # naive: made aware in the current time zone
            "2026-11-23 10:00",
            "2026-13-01T00:00:00Z",
            "yesterday",
            "",
        ]
    ),
    st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2030, 1, 1)).map(datetime.isoformat),
)
properties = st.one_of(
    st.dictionaries(st.text(max_size=4), st.one_of(st.text(max_size=6), st.integers(), st.none()), max_size=3),
    st.sampled_from([{"url": "/pricing"}, {"a\x00": 1}, {"x": ["\x00"]}, [], "url", None]),
)
other_values = st.one_of(st.integers(), st.none(), st.booleans(), st.lists(st.integers(), max_size=2))


def mostly(valid, invalid):
    """Valid three times in four: an event is only accepted when every field is."""
    return st.one_of(valid, valid, valid, st.one_of(invalid, other_values))


slugs = st.sampled_from(["page_view", "form-submit", "x_1", "Z"])
events = st.fixed_dictionaries(
    {
        "type": mostly(slugs, texts),
        "occurred_at": mostly(
            st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2026, 1, 1)).map(datetime.isoformat),
            times,
        ),
        "email": mostly(st.one_of(st.emails(), st.sampled_from(["Ada@Example.COM", "b.c@d.example"])), emails),
    },
    optional={
        "source": mostly(slugs, texts),
        "external_id": mostly(st.text(alphabet="abc-1", min_size=1, max_size=8), texts),
        "properties": mostly(st.dictionaries(st.text(max_size=4), st.text(max_size=6), max_size=3), properties),
        "contact_id": st.integers(min_value=-1, max_value=3),
        "unknown": st.text(max_size=3),
    },
)


@settings(max_examples=600, deadline=None)
@given(events)
@example({"type": "page_view", "occurred_at": NOW.isoformat(), "email": ""})  # no contact: an error
@example({"type": "page_view", "occurred_at": NOW.isoformat(), "email": "a@b.example", "properties": {"u": "\x00"}})
@example({"type": "page_view", "occurred_at": NOW.isoformat(), "email": " a@b.example"})  # trimmed by DRF
def test_the_fast_path_accepts_only_what_the_serializer_accepts_with_the_same_data(raw):
    validator = IngestEventInput()
    fast = validator.plain_validated_data(raw)
    try:
        full = dict(IngestEventInput().run_validation(raw))
    except serializers.ValidationError:
        full = None

    if fast is not None:
        assert full is not None, "the fast path accepted an event the serializer refuses"
        assert fast == full


def test_the_fast_path_takes_the_events_integrations_send():
    raw = {
        "type": "page_view",
        "occurred_at": NOW.isoformat(),
        "email": "ada@example.com",
        "source": "website",
        "external_id": "pv-1",
        "properties": {"url": "/pricing"},
    }

    assert IngestEventInput().plain_validated_data(raw) == dict(IngestEventInput().run_validation(raw))
