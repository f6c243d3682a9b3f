"""The set-based PostgreSQL rescore gives exactly the engine's scores.

Random contacts (awkward texts, numbers, booleans and lists in fields and attributes,
free-mail and company addresses), random daily aggregates and random rule sets (every
fit operator, windows, decay with ties at the rounding digit, caps, levels) are rescored
in SQL and compared, contact by contact, with `engine.evaluate` on the same inputs.
"""

import itertools
import threading
import time as clock
from datetime import date, datetime, time, timedelta
from decimal import Decimal

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leads.models import ActivityType, Contact, LifecycleStage
from leads.services import IngestEvent, activities_ingest
from scoring.engine import evaluate
from scoring.models import (
    AccountScore,
    ContactScore,
    DailyEngagement,
    EngagementRule,
    EngagementSums,
    FitRule,
    ModelVersion,
    MqlLevel,
    MqlQualification,
    RescoreRequest,
    RescoreRun,
    ScoringModel,
)
from scoring.selectors import (
    _preview_in_python,
    engagement_for,
    preview_version,
    ruleset_for,
    score_history,
    scoring_profiles,
)
from scoring.services import (
    accounts_rescore,
    contacts_rescore,
    matcher_for_type,
    rescore_run_start,
    rescore_run_to_end,
)
from scoring.sql_rescore import accounts_rescore_all
from tests.factories import AccountFactory, ContactFactory

pytestmark = pytest.mark.skipif(connection.vendor != "postgresql", reason="the SQL rescore runs on PostgreSQL")

TYPES = ["page_view", "email_click", "demo_request"]
AS_OF = date(2026, 6, 1)
SERIAL = itertools.count()

texts = st.sampled_from(
    ["VP Marketing", " vp marketing ", "Director", "", "  ", "Student", "5", "5.0", "true", "Ünïcode"]
)
json_values = st.one_of(
    texts,
    st.none(),
    st.booleans(),
    st.integers(-5, 500),
    st.sampled_from([2.5, 0.1, 1e3, 40.0]),
    st.lists(st.sampled_from(["a", "B ", "5"]), max_size=2),
)
# Small ages and half-lives give weights like 0.25 and 0.125: ties at the rounding digit.
ages = st.one_of(st.integers(0, 4), st.integers(-3, 200))
contacts = st.lists(
    st.fixed_dictionaries(
        {
            "email_domain": st.sampled_from(["gmail.com", "GMail.com", "acme.example", "Yahoo.co.uk", "x.example"]),
            "job_title": texts,
            "country": st.sampled_from(["Germany", "germany ", "", "France"]),
            "employee_count": st.one_of(st.none(), st.integers(0, 20_000)),
            "attributes": st.dictionaries(st.sampled_from(["visits", "plan", "flag"]), json_values, max_size=3),
            "days": st.lists(st.tuples(st.sampled_from(TYPES), ages, st.integers(1, 4)), max_size=8),
        }
    ),
    min_size=1,
    max_size=6,
)
fit_fields = st.sampled_from(
    [
        "contact.job_title",
        "contact.country",
        "account.employee_count",
        "attribute.visits",
        "attribute.plan",
        "attribute.flag",
        "email",
        "contact.unknown",
    ]
)
fit_values = st.one_of(
    texts,
    st.integers(0, 500),
    st.booleans(),
    st.none(),
    st.lists(st.one_of(texts, st.integers(0, 50)), max_size=3),
    st.tuples(st.one_of(st.none(), st.integers(0, 300)), st.one_of(st.none(), st.integers(0, 20_000))).map(list),
    st.lists(st.sampled_from(["gmail.com", "acme.example", "ACME.example "]), max_size=2),
)
fit_rules = st.lists(
    st.tuples(
        fit_fields,
        st.sampled_from([op for op, _ in FitRule.Operator.choices]),
        fit_values,
        st.integers(-20, 40).filter(bool),
    ),
    max_size=6,
)
engagement_rules = st.lists(
    st.tuples(
        st.sampled_from(TYPES),
        st.integers(-15, 30).filter(bool),
        st.one_of(st.none(), st.integers(0, 60)),
        st.sampled_from(["window", "decay", "none"]),
        st.one_of(st.integers(1, 2), st.integers(1, 40)),
    ),
    max_size=5,
)


@pytest.mark.django_db
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    people=contacts,
    fit_specs=fit_rules,
    engagement_specs=engagement_rules,
    caps=st.tuples(st.integers(0, 80), st.integers(0, 120)),
    levels=st.lists(st.tuples(st.integers(0, 90), st.sampled_from("ABCD")), max_size=3),
    as_of_shift=st.integers(-5, 5),
    published_fit_specs=fit_rules,
    published_caps=st.tuples(st.integers(0, 80), st.integers(0, 120)),
)
def test_sql_rescore_gives_the_engines_scores(
    people, fit_specs, engagement_specs, caps, levels, as_of_shift, published_fit_specs, published_caps
):
    version = _version(fit_specs, engagement_specs, caps, levels)
    ids = [_contact(person) for person in people]
    as_of = AS_OF + timedelta(days=as_of_shift)

    contacts_rescore(contact_ids=ids, reason="sql", as_of=as_of, version=version, in_sql=True)

    _assert_engine_scores(ids, version, as_of)
    _assert_engine_snapshots(ids, version, as_of)
    assert [len(score_history(contact_id)) for contact_id in ids] == [1] * len(ids)
    # A rule change that keeps every rule's activities and timing reads the engagement sums
    # the first rescore left: other points, other caps.
    changed = [(t, points * 3 - 1, cap and cap + 7, timing, days) for t, points, cap, timing, days in engagement_specs]
    rule_change = _version(fit_specs, changed, caps, levels)
    contacts_rescore(contact_ids=ids, reason="rule change", as_of=as_of, version=rule_change, in_sql=True)
    _assert_engine_scores(ids, rule_change, as_of)
    # A publish that replaces it: each stored score is adjusted by the rules that differ
    # (other fit rules, the first points and caps back) instead of being evaluated in full.
    published = _version(published_fit_specs, engagement_specs, published_caps, levels)
    _publish_run(published, replaced=rule_change, ids=ids, as_of=as_of)
    _assert_engine_scores(ids, published, as_of)


def _vps_in(*countries: str) -> list[int]:
    """A VP with no activity in each of these countries."""
    person = {"email_domain": "acme.example", "job_title": "VP Sales", "employee_count": 10, "attributes": {}}
    return [_contact({**person, "country": country, "days": []}) for country in countries]


def _vp_and_germany(vp: int, germany: int) -> ModelVersion:
    """A version of two fit rules, a VP title and Germany, worth these points."""
    fit = [("contact.job_title", "contains", "vp", vp), ("contact.country", "equals", "germany", germany)]
    return _version(fit, [], (60, 100), [])


def _publish_run(version: ModelVersion, *, replaced: ModelVersion, ids: list[int], as_of: date) -> RescoreRun:
    run = rescore_run_start(
        version=version,
        reason=RescoreRun.Reason.PUBLISH,
        contacts=Contact.objects.filter(pk__in=ids),
        as_of=as_of,
        base_version=replaced,
    )
    return rescore_run_to_end(run=run)


def _assert_engine_scores(ids: list[int], version: ModelVersion, as_of: date) -> None:
    rules = ruleset_for(version)
    profiles, engagement = scoring_profiles(ids), engagement_for(ids, rules.matcher_keys)
    stored = ContactScore.objects.in_bulk(ids)
    for contact_id in ids:
        expected = evaluate(rules, profiles[contact_id], engagement.get(contact_id, {}), as_of)
        score = stored[contact_id]
        assert (score.fit, score.engagement, score.total) == (expected.fit, expected.engagement, expected.total)
        assert (score.fit_grade, score.mql_level, score.as_of) == (expected.fit_grade, expected.mql_level, as_of)
        assert (score.fit_uncapped, score.engagement_uncapped_tenths) == (
            expected.fit_uncapped,
            expected.engagement_uncapped * 10,
        )


def _assert_engine_snapshots(ids: list[int], version: ModelVersion, as_of: date) -> None:
    """Each lead the rescore qualified has the engine's explanation from its daily aggregates
    (the rescore builds it from the engagement sums): same rules, facts and points."""
    rules = ruleset_for(version)
    profiles, engagement = scoring_profiles(ids), engagement_for(ids, rules.matcher_keys)
    for snapshot in MqlQualification.objects.filter(contact_id__in=ids, version=version):
        expected = evaluate(rules, profiles[snapshot.contact_id], engagement.get(snapshot.contact_id, {}), as_of)
        assert snapshot.explanation == [part.as_json() for part in expected.contributions]
        assert snapshot.top_reasons == [part.as_json() for part in expected.top_reasons()]
        assert (snapshot.level, snapshot.total, snapshot.fit, snapshot.engagement) == (
            expected.mql_level,
            expected.total,
            expected.fit,
            expected.engagement,
        )


@pytest.mark.django_db
def test_a_points_change_reads_the_engagement_sums_and_new_activity_replaces_them():
    specs = [("page_view", 3, None, "decay", 7), ("page_view", 2, 20, "window", 30)]
    version = _version([], specs, (60, 100), [])
    person = {"email_domain": "acme.example", "job_title": "", "country": "", "employee_count": None}
    ids = [_contact({**person, "attributes": {}, "days": [("page_view", 2, 3), ("page_view", 14, 1)]})]
    contacts_rescore(contact_ids=ids, reason="first", as_of=AS_OF, version=version, in_sql=True)
    assert EngagementSums.objects.get(pk=ids[0]).as_of == AS_OF
    # Proof that a rule change reads the sums: daily aggregates changed behind the scoring's
    # back (not through an ingest) go unseen until the sums are rebuilt.
    DailyEngagement.objects.filter(contact_id=ids[0]).update(count=100)
    doubled = _version(
        [], [(t, points * 2, cap, timing, days) for t, points, cap, timing, days in specs], (60, 100), []
    )

    contacts_rescore(contact_ids=ids, reason="rule change", as_of=AS_OF, version=doubled, in_sql=True)

    # 6 × (3 × 0.820335 + 0.25) = 16.3, plus 4 visits × 4 = 16; from the changed aggregates, 100
    assert ContactScore.objects.get(pk=ids[0]).engagement == Decimal("32.3")
    event = IngestEvent(
        index=0,
        type_key="page_view",
        occurred_at=timezone.make_aware(datetime.combine(AS_OF, time(12))),
        source="test",
        external_id="new",
        properties={},
        contact_id=ids[0],
    )
    activities_ingest(events=[event])
    contacts_rescore(contact_ids=ids, reason="again", as_of=AS_OF, version=doubled, in_sql=True)
    _assert_engine_scores(ids, doubled, AS_OF)  # 101 visits today, 100 on each other day
    assert ContactScore.objects.get(pk=ids[0]).engagement == Decimal("100.0")


@pytest.mark.django_db
def test_sql_rescore_writes_nothing_when_nothing_changed():
    version = _version(
        [("contact.job_title", "contains", "vp", 20)], [("page_view", 3, None, "decay", 7)], (60, 100), []
    )
    ids = [
        _contact(
            {
                "email_domain": "acme.example",
                "job_title": "VP Sales",
                "country": "",
                "employee_count": 10,
                "attributes": {},
                "days": [("page_view", 2, 3), ("page_view", 14, 1)],
            }
        )
    ]

    assert contacts_rescore(contact_ids=ids, reason="first", as_of=AS_OF, version=version, in_sql=True) == 1
    assert contacts_rescore(contact_ids=ids, reason="again", as_of=AS_OF, version=version, in_sql=True) == 0
    assert len(score_history(ids[0])) == 1
    assert ContactScore.objects.get(pk=ids[0]).total == Decimal("28.1")  # 20 + 3 × (3 × 0.820335 + 0.25)


@pytest.mark.django_db
def test_a_publish_adjusts_stored_scores_by_the_changed_rules_only():
    engagement = [("page_view", 3, None, "decay", 7), ("email_click", 5, 12, "window", 30)]
    fit = [("contact.job_title", "contains", "vp", 20), ("contact.country", "equals", "germany", 10)]
    person = {"email_domain": "acme.example", "job_title": "VP Sales", "country": "Germany", "employee_count": 10}
    ids = [_contact({**person, "attributes": {}, "days": [("page_view", 2, 3), ("email_click", 1, 4)]})]
    active = _version(fit, engagement, (60, 100), [])
    _publish_run(active, replaced=active, ids=ids, as_of=AS_OF)
    # 30 fit; 3 × (3 × 0.820335 + 0) = 7.4 and 4 clicks × 5 = 20, capped at 12
    assert ContactScore.objects.get(pk=ids[0]).total == Decimal("49.4")
    # Proof that the publish adjusts what is stored: a stored sum changed behind the scoring's
    # back carries over, where the country rule (unchanged) would have given 10.
    ContactScore.objects.filter(pk=ids[0]).update(fit_uncapped=50)
    changed = _version(
        [fit[0], (*fit[1][:3], 15)], [engagement[0], ("email_click", 5, 18, "window", 30)], (60, 100), []
    )

    _publish_run(changed, replaced=active, ids=ids, as_of=AS_OF)

    score = ContactScore.objects.get(pk=ids[0])
    assert (score.fit_uncapped, score.fit, score.engagement) == (55, Decimal("55"), Decimal("25.4"))
    # A score stored under another version than the one replaced is evaluated in full.
    _publish_run(active, replaced=active, ids=ids, as_of=AS_OF)
    assert ContactScore.objects.get(pk=ids[0]).fit == Decimal("30")


@pytest.mark.django_db
def test_a_publish_adjusts_scores_without_a_profile_table_and_evaluates_the_edited_in_full():
    engagement = [("email_click", 5, None, "none", 0)]
    fit = [("contact.job_title", "contains", "vp", 20), ("contact.country", "equals", "germany", 10)]
    person = {"email_domain": "acme.example", "job_title": "VP Sales", "country": "Germany", "employee_count": 10}
    ids = [_contact({**person, "attributes": {}, "days": [("email_click", 1, 2)]}) for _ in range(4)]
    active = _version(fit, engagement, (60, 100), [])
    _publish_run(active, replaced=active, ids=ids, as_of=AS_OF)
    edited = Contact.objects.get(pk=ids[0])  # its country changes; the rescore it asks for has not run yet
    edited.country = "France"
    edited.save()
    vp_raised = _version([(*fit[0][:3], 25), fit[1]], [("email_click", 6, None, "none", 0)], (60, 100), [])

    with CaptureQueriesContext(connection) as queries:
        run = _publish_run(vp_raised, replaced=active, ids=ids, as_of=AS_OF)

    profile_tables = [q["sql"] for q in queries if "CREATE TEMP TABLE scoring_rescore_profile" in q["sql"]]
    # One, of the edited contact alone: the three others were adjusted without one.
    assert len(profile_tables) == 1 and f"c.id BETWEEN {ids[0]} AND {ids[0]} " in profile_tables[0]
    assert [s.total for s in ContactScore.objects.filter(pk__in=ids).order_by("pk")] == [37, 47, 47, 47]
    _assert_engine_scores(ids, vp_raised, AS_OF)
    assert run.changed_contacts == 4


@pytest.mark.django_db
def test_a_publish_keeps_the_scores_it_leaves_alone_and_explains_them_with_its_rules(marketer_api):
    # VP 20 → 25 and Germany 10 → 5: a VP in Germany keeps 30, a VP elsewhere goes to 25.
    kept, raised = _vps_in("Germany", "France")
    active = _vp_and_germany(20, 10)
    _publish_run(active, replaced=active, ids=[kept, raised], as_of=AS_OF)
    before = ContactScore.objects.get(pk=kept).computed_at
    published = _vp_and_germany(25, 5)

    run = _publish_run(published, replaced=active, ids=[kept, raised], as_of=AS_OF)

    scores = ContactScore.objects.in_bulk([kept, raised])
    assert (scores[kept].total, scores[raised].total) == (30, 25)
    assert (scores[kept].computed_at, scores[kept].version_id) == (before, active.pk)  # not rewritten
    answer = marketer_api.get(f"/api/contacts/{kept}/score/").json()
    assert answer["version"] == str(published)
    assert [(part["rule"], Decimal(part["points"])) for part in answer["explanation"]] == [("f0", 25), ("f1", 5)]
    # While the run is still going, the score is explained by the rules that computed it.
    RescoreRun.objects.filter(pk=run.pk).update(finished_at=None)
    answer = marketer_api.get(f"/api/contacts/{kept}/score/").json()
    assert answer["version"] == str(active)
    assert [Decimal(part["points"]) for part in answer["explanation"]] == [20, 10]
    # The next publish adjusts the kept score by its own change, as it does a rewritten one.
    RescoreRun.objects.filter(pk=run.pk).update(finished_at=timezone.now())
    ContactScore.objects.filter(pk=kept).update(fit_uncapped=31)  # behind the scoring's back: adjusted, not evaluated
    next_version = _vp_and_germany(26, 5)
    _publish_run(next_version, replaced=published, ids=[kept, raised], as_of=AS_OF)
    scores = ContactScore.objects.in_bulk([kept, raised])
    assert (scores[kept].fit_uncapped, scores[raised].fit_uncapped) == (32, 26)
    assert {score.version_id for score in scores.values()} == {next_version.pk}


@pytest.mark.django_db
def test_a_score_that_two_publishes_leave_alone_stands_for_the_latest(marketer_api):
    # VP 20 → 25 → 26 and Germany 10 → 5 → 4: a VP in Germany keeps 30 through both publishes.
    kept, raised = _vps_in("Germany", "France")
    first = _vp_and_germany(20, 10)
    _publish_run(first, replaced=first, ids=[kept, raised], as_of=AS_OF)
    before = ContactScore.objects.get(pk=kept).computed_at
    second = _vp_and_germany(25, 5)
    _publish_run(second, replaced=first, ids=[kept, raised], as_of=AS_OF)
    third = _vp_and_germany(26, 4)

    _publish_run(third, replaced=second, ids=[kept, raised], as_of=AS_OF)

    scores = ContactScore.objects.in_bulk([kept, raised])
    assert (scores[kept].total, scores[raised].total) == (30, 26)
    assert (scores[kept].computed_at, scores[kept].version_id) == (before, first.pk)  # not rewritten
    answer = marketer_api.get(f"/api/contacts/{kept}/score/").json()
    assert answer["version"] == str(third)
    assert score_history(raised)[0].reason == f"rescore: Model published ({third.scoring_model.name} v1)"
    assert [(part["rule"], Decimal(part["points"])) for part in answer["explanation"]] == [("f0", 26), ("f1", 4)]
    # The next publish adjusts it by its own change (VP 26 → 30), as a score of the version it replaces.
    ContactScore.objects.filter(pk=kept).update(fit_uncapped=31)  # behind the scoring's back: adjusted, not evaluated
    fourth = _vp_and_germany(30, 4)
    _publish_run(fourth, replaced=third, ids=[kept, raised], as_of=AS_OF)
    scores = ContactScore.objects.in_bulk([kept, raised])
    assert (scores[kept].fit_uncapped, scores[raised].fit_uncapped) == (35, 30)
    assert {score.version_id for score in scores.values()} == {fourth.pk}


@pytest.mark.django_db
def test_the_preview_in_sql_gives_the_engines_figures_and_examples():
    fit = [("contact.job_title", "contains", "vp", 20), ("contact.country", "equals", "germany", 10)]
    engagement = [("page_view", 3, None, "decay", 7), ("email_click", 5, 30, "window", 400)]
    levels = [(45, "C"), (60, "B")]
    people = [
        {"job_title": title, "country": country, "days": days}
        for title in ("VP Sales", "Analyst")
        for country in ("Germany", "France")
        for days in ([], [("email_click", 3, 2)], [("email_click", 1, 5), ("page_view", 2, 4)])
    ]
    ids = [
        _contact({"email_domain": "acme.example", "employee_count": 10, "attributes": {}, **person})
        for person in people
    ]
    active = _version(fit, engagement, (60, 100), levels)
    ModelVersion.objects.filter(status=ModelVersion.Status.ACTIVE).update(status=ModelVersion.Status.ARCHIVED)
    ModelVersion.objects.filter(pk=active.pk).update(status=ModelVersion.Status.ACTIVE)
    _publish_run(active, replaced=active, ids=ids[:-2], as_of=timezone.localdate())  # two never scored
    Contact.objects.filter(pk=ids[3]).update(lifecycle_stage=LifecycleStage.RECYCLED)
    # VPs to 50 points (some reach a level), then to none (some lose theirs); clicks 5 → 4.
    clicks = ("email_click", 4, 30, "window", 400)
    raising = _version([(*fit[0][:3], 50), fit[1]], [engagement[0], clicks], (60, 100), levels)
    lowering = _version([(*fit[0][:3], 0), fit[1]], [engagement[0], clicks], (60, 100), levels)

    previews = {}
    for draft in (raising, lowering):
        in_sql = preview_version(draft, examples=3)
        assert in_sql == _preview_in_python(ruleset_for(draft), timezone.localdate(), 3)
        previews[draft] = in_sql
    # Each example shows the fit grades too: a level can be reached through the grade alone.
    examples = previews[raising]["new_examples"] + previews[lowering]["drop_examples"]
    assert examples and all(e["old_grade"] in "ABCD" and e["new_grade"] in {"A", "B", "C", "D"} for e in examples)
    # The VPs' 20 points gone, the leads that drop have a worse grade ("D" sorts after "A").
    assert all(e["new_grade"] > e["old_grade"] for e in previews[lowering]["drop_examples"])

    assert previews[raising]["contacts"] == len(ids)
    assert previews[raising]["new_mqls"] > 0 < previews[lowering]["drops"]
    assert previews[raising]["changed"] > 0 < previews[lowering]["changed"]


@pytest.mark.django_db
def test_a_publish_evaluates_in_full_a_score_whose_inputs_changed_since():
    engagement = [("email_click", 5, None, "none", 0)]
    fit = [("account.employee_count", "between", [100, None], 30), ("contact.job_title", "contains", "vp", 20)]
    person = {"email_domain": "acme.example", "job_title": "VP Sales", "country": "", "employee_count": 500}
    ids = [_contact({**person, "attributes": {}, "days": [("email_click", 1, 1)]}) for _ in range(3)]
    active = _version(fit, engagement, (60, 100), [])
    _publish_run(active, replaced=active, ids=ids, as_of=AS_OF)
    assert [s.fit for s in ContactScore.objects.filter(pk__in=ids).order_by("pk")] == [50, 50, 50]
    # After scoring: one contact's account shrinks, another's title changes (its rescore is
    # pending), the third is untouched. Neither change rescored them yet.
    moved, retitled, untouched = Contact.objects.filter(pk__in=ids).order_by("pk")
    moved.account.employee_count = 20
    moved.account.save()
    Contact.objects.filter(pk=retitled.pk).update(job_title="Analyst")
    RescoreRequest.objects.create(contact_id=retitled.pk, reason="profile edit", requested_at=timezone.now())
    # And a contact that arrived since: no stored score to adjust (its fit fields are read
    # although no changed rule tests them).
    newcomer = _contact({**person, "attributes": {}, "days": [("email_click", 1, 1)]})
    clicks_doubled = _version(fit, [("email_click", 10, None, "none", 0)], (60, 100), [])

    _publish_run(clicks_doubled, replaced=active, ids=[*ids, newcomer], as_of=AS_OF)

    scores = {s.contact_id: s for s in ContactScore.objects.filter(pk__in=[*ids, newcomer])}
    assert [scores[c].fit for c in (moved.pk, retitled.pk, untouched.pk, newcomer)] == [20, 30, 50, 50]
    assert {scores[c].engagement for c in [*ids, newcomer]} == {Decimal("10.0")}


@pytest.mark.django_db
def test_a_manual_rescore_evaluates_every_rule_again():
    version = _version([("contact.job_title", "contains", "vp", 20)], [], (60, 100), [])
    person = {"email_domain": "acme.example", "job_title": "VP Sales", "country": "", "employee_count": 10}
    ids = [_contact({**person, "attributes": {}, "days": []})]
    _publish_run(version, replaced=version, ids=ids, as_of=AS_OF)
    ContactScore.objects.filter(pk=ids[0]).update(fit_uncapped=99, fit=Decimal("60"))  # wrong, behind its back

    run = rescore_run_start(
        version=version, reason=RescoreRun.Reason.MANUAL, contacts=Contact.objects.filter(pk__in=ids), as_of=AS_OF
    )
    rescore_run_to_end(run=run)

    assert (ContactScore.objects.get(pk=ids[0]).fit_uncapped, ContactScore.objects.get(pk=ids[0]).fit) == (20, 20)


@pytest.mark.django_db
def test_sql_rescore_rounds_ties_to_even_like_the_engine():
    version = _version([], [("page_view", 1, None, "decay", 1), ("email_click", -1, None, "decay", 1)], (60, 100), [])
    person = {"email_domain": "acme.example", "job_title": "", "country": "", "employee_count": None, "attributes": {}}
    ids = [
        _contact({**person, "days": [("page_view", 2, 1)]}),
        _contact({**person, "days": [("email_click", 2, 1)]}),
    ]

    contacts_rescore(contact_ids=ids, reason="sql", as_of=AS_OF, version=version, in_sql=True)

    stored = ContactScore.objects.in_bulk(ids)
    # 0.25 and -0.25, half to even (round() would give 0.3 and -0.3)
    assert [stored[ids[0]].engagement, stored[ids[1]].engagement] == [Decimal("0.2"), Decimal("-0.2")]


@pytest.mark.django_db
def test_sql_rescore_floors_negative_signals_at_minus_the_cap_like_the_engine():
    version = _version(
        [("contact.job_title", "contains", "cto", -1000), ("contact.country", "is_empty", None, -1000)],
        [("email_click", -1000, None, "none", 1)],
        (60, 100),
        [],
    )
    ids = [_contact(_cto(days=[("email_click", 1, 11_000)])), _contact(_cto(days=[("email_click", 1, 1)]))]

    contacts_rescore(contact_ids=ids, reason="sql", as_of=AS_OF, version=version, in_sql=True)

    _assert_engine_scores(ids, version, AS_OF)
    stored = ContactScore.objects.in_bulk(ids)
    assert [(stored[i].fit, stored[i].engagement) for i in ids] == [(-60, -100), (-60, -100)]


@pytest.mark.django_db
def test_sql_rescore_qualifies_contacts_reaching_a_level():
    version = _version([("contact.job_title", "is_set", None, 30)], [], (60, 100), [(25, "B")])
    ids = [_contact(_cto(days=[]))]

    contacts_rescore(contact_ids=ids, reason="publish", as_of=AS_OF, version=version, in_sql=True)

    contact = ContactScore.objects.get(pk=ids[0]).contact
    assert contact.lifecycle_stage == LifecycleStage.MQL
    assert contact.qualifications.get().total == Decimal("30")


@pytest.mark.django_db
def test_a_rule_change_that_qualifies_a_lead_explains_it_from_the_sums_without_reading_its_days():
    # Demo requests today, 3 weeks ago, past 21 half-lives (weighs 0, still counts) and in the
    # future of the rescore's day (does not count); page views in and out of a week.
    demos = [("demo_request", 0, 2), ("demo_request", 21, 1), ("demo_request", 200, 1), ("demo_request", -2, 5)]
    person = _cto(days=[*demos, ("page_view", 3, 4), ("page_view", 9, 6)])
    engagement = [("demo_request", 10, None, "decay", 7), ("page_view", 3, None, "window", 7)]
    ids = [_contact(person)]
    contacts_rescore(
        contact_ids=ids, reason="first", as_of=AS_OF, version=_version([], engagement, (60, 100), []), in_sql=True
    )
    publish = _version([], engagement, (60, 100), [(30, "D")])  # same timing: the sums stay valid

    with CaptureQueriesContext(connection) as queries:
        contacts_rescore(contact_ids=ids, reason="publish", as_of=AS_OF, version=publish, in_sql=True)

    daily_reads = [q["sql"] for q in queries if f"FROM {DailyEngagement._meta.db_table}" in q["sql"]]
    assert not daily_reads  # (the fold of pending counts writes to the table, reading none of it)
    snapshot = MqlQualification.objects.get(contact_id=ids[0])
    # 2 × 1 + 1 × 0.125 + 1 × 0.000000 = 2.125 → 21.25 points; 4 page views × 3 = 12.
    assert [(part["rule"], part["facts"], part["points"]) for part in snapshot.explanation] == [
        ("e0", "4 × +10, fading with a 7-day half-life", "21.2"),
        ("e1", "4 × +3 in the last 7 days", "12.0"),
    ]
    assert snapshot.total == Decimal("33.2")
    _assert_engine_snapshots(ids, publish, AS_OF)


@pytest.mark.django_db
def test_after_a_sql_rescore_the_queue_ranks_mqls_by_their_new_scores(rep_client):
    person = {"email_domain": "acme.example", "country": "", "employee_count": None, "attributes": {}, "days": []}
    first_version = _version([("contact.job_title", "equals", "CTO", 30)], [], (60, 100), [(25, "B")])
    cto, analyst = _contact({**person, "job_title": "CTO"}), _contact({**person, "job_title": "Analyst"})
    contacts_rescore(contact_ids=[cto, analyst], reason="publish", as_of=AS_OF, version=first_version, in_sql=True)
    second_version = _version(
        [("contact.job_title", "equals", "CTO", 45), ("contact.job_title", "equals", "Analyst", 40)],
        [],
        (60, 100),
        [(25, "B")],
    )

    contacts_rescore(contact_ids=[cto, analyst], reason="publish", as_of=AS_OF, version=second_version, in_sql=True)

    rows = rep_client.get(reverse("leads:queue")).context["rows"]
    assert [(row["contact"].pk, row["contact"].score_total) for row in rows] == [
        (cto, Decimal("45")),  # already queued: its copy follows its score
        (analyst, Decimal("40")),  # qualified by this rescore: entered the queue with its new score
    ]


def _cto(*, days) -> dict:
    """A person for _contact: a CTO at a company address, with these daily aggregates."""
    return {
        "email_domain": "acme.example",
        "job_title": "CTO",
        "country": "",
        "employee_count": None,
        "attributes": {},
        "days": days,
    }


def _contact(person) -> int:
    n = next(SERIAL)
    account = AccountFactory(employee_count=person["employee_count"])
    contact = ContactFactory(
        email=f"p{n}@{person['email_domain']}",
        job_title=person["job_title"],
        country=person["country"],
        attributes=person["attributes"],
        account=account,
        lifecycle_stage=LifecycleStage.LEAD,
    )
    types = {t.key: t for t in ActivityType.objects.filter(key__in=TYPES)}
    counts = {}
    for type_key, age, count in person["days"]:
        counts[(type_key, AS_OF - timedelta(days=age))] = count
    DailyEngagement.objects.bulk_create(
        DailyEngagement(contact=contact, matcher=matcher_for_type(types[type_key]), day=day, count=count)
        for (type_key, day), count in counts.items()
    )
    return contact.pk


def _version(fit_specs, engagement_specs, caps, levels) -> ModelVersion:
    model = ScoringModel.objects.create(name=f"sql-{next(SERIAL)}")
    version = ModelVersion.objects.create(scoring_model=model, number=1, fit_cap=caps[0], engagement_cap=caps[1])
    for n, (field, operator, value, points) in enumerate(fit_specs):
        if operator == "between" and not (
            isinstance(value, list) and all(v is None or isinstance(v, int) for v in value)
        ):
            value = [None, 100]  # the engine refuses bounds that are not numbers
        FitRule.objects.create(
            version=version, name=f"f{n}", field=field, operator=operator, value=value, points=points
        )
    types = {t.key: t for t in ActivityType.objects.filter(key__in=TYPES)}
    for n, (type_key, points, cap, timing, days) in enumerate(engagement_specs):
        EngagementRule.objects.create(
            version=version,
            name=f"e{n}",
            activity_type=types[type_key],
            points=points,
            cap=cap,
            window_days=days if timing == "window" else None,
            half_life_days=days if timing == "decay" else None,
        )
    for n, (min_score, grade) in enumerate(levels):
        MqlLevel.objects.create(version=version, name=f"level{n}", min_score=min_score, min_fit_grade=grade)
    return version


@pytest.mark.django_db
def test_a_full_rescore_in_sql_rolls_accounts_up_like_the_python_path():
    version = _version(
        [("account.employee_count", "between", [100, None], 30), ("account.industry", "equals", "software", 45)],
        [("page_view", 4, None, "none", 0)],
        (60, 100),
        [],
    )
    people = [
        {
            "email_domain": "acme.example",
            "job_title": "",
            "country": "",
            "employee_count": size,
            "attributes": {},
            "days": [("page_view", 1, visits)],
        }
        for size, visits in ((50, 0), (500, 2), (5000, 3))
    ]
    ids = [_contact(person) for person in people]
    run = rescore_run_start(version=version, reason=RescoreRun.Reason.MANUAL, as_of=AS_OF)

    rescore_run_to_end(run=run)

    in_sql = {
        row.pk: (row.fit, row.engagement, row.total, row.engaged_contacts, row.is_mqa)
        for row in AccountScore.objects.all()
    }
    accounts_rescore(account_ids=in_sql, version=version)
    in_python = {
        row.pk: (row.fit, row.engagement, row.total, row.engaged_contacts, row.is_mqa)
        for row in AccountScore.objects.all()
    }
    assert in_sql == in_python
    assert len(in_sql) == len(ids)


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_full_rescores_rollup_waits_for_a_rollup_of_a_few_accounts_before_writing_any():
    """Two real connections (threads). A rollup holds one account's score and will want
    another; the full rescore's rollup of every account starts between the two. Had it locked
    account scores in its own order meanwhile, the two could deadlock: it must wait before
    writing any."""
    version = _version(
        [("account.employee_count", "between", [100, None], 30)], [("page_view", 4, None, "none", 0)], (60, 100), []
    )
    person = {"email_domain": "acme.example", "job_title": "", "country": "", "employee_count": 500, "attributes": {}}
    ids = [_contact({**person, "days": [("page_view", 1, visits)]}) for visits in (1, 2)]
    contacts_rescore(contact_ids=ids, reason="first", as_of=AS_OF, version=version)
    first, second = (Contact.objects.get(pk=pk).account_id for pk in ids)
    accounts_rescore(account_ids=[first, second], version=version)
    holding, full_waits, pids, errors = threading.Event(), threading.Event(), [], []

    def rollup_of_a_few():
        try:
            with transaction.atomic():
                accounts_rescore(account_ids=[second], version=version)
                holding.set()
                full_waits.wait(timeout=10)
                accounts_rescore(account_ids=[first], version=version)
        except Exception as error:
            errors.append(error)
        finally:
            connection.close()

    def rollup_of_all():
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                pids.append(cursor.fetchone()[0])
            holding.wait(timeout=10)
            with transaction.atomic():
                accounts_rescore_all(
                    rules=ruleset_for(version), version_id=version.pk, mqa_threshold=60, now=timezone.now()
                )
        except Exception as error:
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=rollup_of_a_few), threading.Thread(target=rollup_of_all)]
    for thread in threads:
        thread.start()
    waiting_on = _lock_awaited(pids)
    full_waits.set()
    for thread in threads:
        thread.join(timeout=30)

    assert waiting_on == "advisory"  # not a row of an account score: it holds none while it waits
    assert errors == []
    scores = AccountScore.objects.in_bulk([first, second])
    assert (scores[first].total, scores[second].total) == (Decimal("34.0"), Decimal("38.0"))


def _lock_awaited(pids: list[int]) -> str | None:
    """The kind of lock the connection whose pid `pids` will hold waits for (pg_locks), once it waits."""
    deadline = clock.monotonic() + 10
    while clock.monotonic() < deadline:
        if pids:
            with connection.cursor() as cursor:
                cursor.execute("SELECT locktype FROM pg_locks WHERE pid = %s AND NOT granted", [pids[0]])
                row = cursor.fetchone()
            if row:
                return row[0]
        clock.sleep(0.05)
    return None


@pytest.mark.django_db
def test_sql_rescore_of_ids_with_a_gap_scores_only_those_contacts():
    version = _version([("contact.job_title", "is_set", None, 30)], [("page_view", 5, None, None, None)], (60, 100), [])
    person = _cto(days=[("page_view", 2, 1)])
    first, middle, last = (_contact(person) for _ in range(3))

    contacts_rescore(contact_ids=[first, last], reason="sql", as_of=AS_OF, version=version, in_sql=True)

    scores = ContactScore.objects.in_bulk([first, middle, last])
    assert sorted(scores) == [first, last]
    assert scores[first].total == scores[last].total == Decimal("35.0")
