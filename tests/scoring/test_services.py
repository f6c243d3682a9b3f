"""Scores kept in the database: MQL transitions, history, decay refresh, accounts, versions."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import IntegrityError
from django.utils import timezone

from leads.models import AuditEntry, Contact, LifecycleStage, StageChange
from leads.services import (
    IngestEvent,
    account_upsert,
    activities_ingest,
    contact_set_stage,
    contact_update,
    contact_upsert,
)
from nurturing.models import OutboundEmail
from scoring.models import (
    AccountRollupRequest,
    AccountScore,
    ContactScore,
    FitRule,
    ModelVersion,
    MqlQualification,
    RescoreRun,
    ScoreChange,
)
from scoring.selectors import active_version, score_history
from scoring.services import (
    account_rollups_drain,
    account_rollups_queue,
    account_rollups_sweep,
    contacts_rescore,
    rescore_chunk_run,
    rescore_run_to_end,
    rescore_runs_sweep,
    scores_refresh_start,
)
from scoring.versions import VersionError, draft_get_or_create, version_diff, version_publish

pytestmark = pytest.mark.django_db


def _executive(email="cmo@fit.example", **fields):
    account = account_upsert(name="Fit Co", domain="fit.example", industry="Software", employee_count=1200)
    return contact_upsert(
        email=email, job_title="Chief Marketing Officer", seniority="c_level", account=account, **fields
    ).contact


def _ingest(contact, *types, days_ago=0, prefix="e"):
    when = timezone.now() - timedelta(days=days_ago)
    events = [
        IngestEvent(
            index=n,
            type_key=t,
            occurred_at=when,
            source="test",
            external_id=f"{prefix}{n}",
            properties={},
            contact_id=contact.pk,
        )
        for n, t in enumerate(types)
    ]
    activities_ingest(events=events)
    contacts_rescore(contact_ids=[contact.pk], reason="new activity")
    contact.refresh_from_db()


def test_reaching_a_level_makes_an_mql_with_the_snapshot_and_reasons():
    contact = _executive()

    _ingest(contact, "demo_request", "webinar_attended", "trial_signup")

    assert contact.lifecycle_stage == LifecycleStage.MQL
    change = StageChange.objects.get(contact=contact, to_stage="mql")
    assert change.from_stage == "lead" and "hot" in change.rule
    qualification = MqlQualification.objects.get(contact=contact)
    score = ContactScore.objects.get(contact=contact)
    assert (qualification.level, qualification.total) == ("hot", score.total)
    assert [r["rule"] for r in qualification.top_reasons] == ["Demo request", "Trial sign-up", "Executive seniority"]


def test_a_recycled_lead_can_qualify_again():
    contact = _executive()
    _ingest(contact, "demo_request", "webinar_attended", "trial_signup")
    contact_set_stage(contact=contact, to_stage=LifecycleStage.RECYCLED, reason="bad timing")

    _ingest(contact, "pricing_page_view", prefix="again")

    assert contact.lifecycle_stage == LifecycleStage.MQL
    assert MqlQualification.objects.filter(contact=contact).count() == 2


def test_a_recycled_lead_does_not_qualify_again_without_new_engagement():
    contact = _executive()
    _ingest(contact, "demo_request", "webinar_attended", "trial_signup", days_ago=1)
    contact_set_stage(contact=contact, to_stage=LifecycleStage.RECYCLED, reason="bad timing")

    contacts_rescore(contact_ids=[contact.pk], reason="rules changed")  # still above the line
    _ingest(contact, "pricing_page_view", days_ago=1, prefix="late")  # sent late: it happened before

    contact.refresh_from_db()
    assert ContactScore.objects.get(contact=contact).mql_level == "hot"
    assert contact.lifecycle_stage == LifecycleStage.RECYCLED
    assert MqlQualification.objects.filter(contact=contact).count() == 1


def test_routing_a_requalified_lead_is_audited_from_its_old_stage(rep):
    contact = _executive()
    _ingest(contact, "demo_request", "webinar_attended", "trial_signup")
    contact_set_stage(contact=contact, to_stage=LifecycleStage.RECYCLED, reason="bad timing")

    _ingest(contact, "pricing_page_view", prefix="again")

    entry = AuditEntry.objects.filter(action="lead.route", object_id=str(contact.pk)).latest("id")
    assert entry.before["stage"] == LifecycleStage.RECYCLED and entry.after["stage"] == LifecycleStage.MQL
    assert entry.after["owner"] == rep.username


def test_scoring_never_moves_a_lead_sales_accepted():
    contact = _executive()
    _ingest(contact, "demo_request", "webinar_attended", "trial_signup")
    contact_set_stage(contact=contact, to_stage=LifecycleStage.SQL, reason="accepted")

    contacts_rescore(contact_ids=[contact.pk], reason="decay", as_of=timezone.localdate() + timedelta(days=720))

    contact.refresh_from_db()
    assert contact.lifecycle_stage == LifecycleStage.SQL
    assert ContactScore.objects.get(contact=contact).mql_level == ""  # the score decayed, the hand-off stands


def test_a_contact_below_every_level_stays_a_lead():
    contact = contact_upsert(email="student@gmail.com", job_title="Student").contact

    _ingest(contact, "page_view", "email_open")

    assert contact.lifecycle_stage == LifecycleStage.LEAD
    assert ContactScore.objects.get(contact=contact).total < 0


def test_every_score_change_is_recorded_once_with_its_delta():
    contact = _executive()
    _ingest(contact, "content_download", prefix="a")
    _ingest(contact, "content_download", prefix="b")
    contacts_rescore(contact_ids=[contact.pk], reason="nothing new")

    changes = list(ScoreChange.objects.filter(contact=contact).order_by("changed_at", "id"))
    assert [c.delta for c in changes] == [changes[0].new_total, 8]
    assert changes[-1].new_total == ContactScore.objects.get(contact=contact).total


def test_the_daily_refresh_applies_decay_to_stored_scores():
    contact = _executive()
    _ingest(contact, "demo_request", days_ago=1)
    before = ContactScore.objects.get(contact=contact).engagement

    run = scores_refresh_start(as_of=timezone.localdate() + timedelta(days=60))
    rescore_run_to_end(run=run)

    after = ContactScore.objects.get(contact=contact)
    assert after.engagement < before
    assert after.as_of == timezone.localdate() + timedelta(days=60)
    assert any("decay" in change.reason for change in score_history(contact.pk))


def test_the_account_score_rolls_up_its_contacts_engagement(django_capture_on_commit_callbacks):
    first = _executive("a@fit.example")
    second = _executive("b@fit.example")
    with django_capture_on_commit_callbacks(execute=False) as queued:
        _ingest(first, "demo_request", prefix="x")
        _ingest(second, "webinar_attended", prefix="y")

    # Both contacts' rescores asked for one rollup of their account, run after commit.
    assert list(AccountRollupRequest.objects.values_list("account_id", flat=True)) == [first.account_id]
    assert account_rollups_queue in queued
    assert not AccountScore.objects.exists()
    assert account_rollups_drain() == 1
    assert account_rollups_drain() == 0
    account_score = AccountScore.objects.get(account=first.account)
    engagement = sum(ContactScore.objects.filter(contact__account=first.account).values_list("engagement", flat=True))
    assert account_score.engagement == engagement
    assert account_score.engaged_contacts == 2
    assert account_score.fit == 22  # industry 12 + size 10: only account fields count for accounts


def test_a_contact_that_moves_takes_its_engagement_to_its_new_account():
    mover, stayer = _executive("a@fit.example"), _executive("b@fit.example")
    _ingest(mover, "demo_request", prefix="x")
    _ingest(stayer, "webinar_attended", prefix="y")
    account_rollups_drain()
    old_account = mover.account
    new_account = account_upsert(name="New Co", domain="new.example", industry="Software", employee_count=1200)

    contact_update(contact=mover, account=new_account)  # as the contact form and the API do
    contacts_rescore(contact_ids=[mover.pk], reason="contact edited")
    account_rollups_drain()

    scores = {row.account_id: row for row in AccountScore.objects.all()}
    assert scores[new_account.pk].engagement == ContactScore.objects.get(contact=mover).engagement > 0
    assert scores[old_account.pk].engagement == ContactScore.objects.get(contact=stayer).engagement
    assert (scores[new_account.pk].engaged_contacts, scores[old_account.pk].engaged_contacts) == (1, 1)


def test_the_account_page_explains_the_account_score(rep_client):
    from django.urls import reverse

    first = _executive("a@fit.example", first_name="Ada", last_name="Active")
    second = _executive("b@fit.example", first_name="Bo", last_name="Browser")
    _ingest(first, "demo_request", prefix="x")
    _ingest(second, "page_view", prefix="y")
    account_rollups_drain()

    response = rep_client.get(reverse("leads:account_detail", args=[first.account_id]))

    explained = response.context["explained"]
    fit = [(part.rule, part.points) for part in explained["fit"]]
    assert sum(points for _, points in fit) == response.context["account_score"].fit == 22
    assert {rule for rule, _ in fit} == {"Ideal-profile industry", "Ideal company size (200–5,000)"}
    first.score.refresh_from_db()
    second.score.refresh_from_db()
    assert [score.contact for score in explained["engaged"]] == [first, second]  # most engaged first
    html = response.content.decode()
    assert "Ada Active" in html and "Contacts by engagement" in html


def test_the_account_page_lists_the_most_engaged_contacts_and_sums_up_the_others(rep_client):
    from django.urls import reverse

    contacts = [_executive(f"p{n}@fit.example", first_name=f"P{n}", last_name="Person") for n in range(7)]
    for n, contact in enumerate(contacts):
        for visit in range(n + 1):  # the later contacts are the more engaged
            _ingest(contact, "page_view", prefix=f"v{n}-{visit}")
    account_rollups_drain()

    response = rep_client.get(reverse("leads:account_detail", args=[contacts[0].account_id]))

    explained, account_score = response.context["explained"], response.context["account_score"]
    assert [score.contact for score in explained["engaged"]] == contacts[:1:-1]  # the five most engaged
    assert explained["others_count"] == 2
    shown = sum(score.engagement for score in explained["engaged"])
    assert shown + explained["others_engagement"] == explained["engagement_total"] == account_score.engagement
    assert str(explained["engagement_total"]) == str(account_score.engagement)  # in tenths, as shown
    html = response.content.decode()
    assert "2 more contacts" in html and "All contacts" in html


def test_beat_queues_an_account_rollup_whose_task_was_lost_again(settings, django_capture_on_commit_callbacks):
    contact = _executive()
    with django_capture_on_commit_callbacks(execute=False):
        _ingest(contact, "demo_request")
    assert account_rollups_sweep() == 0  # just requested: its task may still run
    lost = timezone.now() - timedelta(seconds=settings.RESCORE_CLAIM_TIMEOUT + 1)
    AccountRollupRequest.objects.update(requested_at=lost)

    assert account_rollups_sweep() == 1
    assert account_rollups_sweep() == 0  # stamped: the next minute does not count it again
    assert account_rollups_drain() == 1
    assert AccountScore.objects.get(account=contact.account).engagement == contact.score.engagement > 0


def test_only_one_version_can_be_active():
    version = active_version()
    with pytest.raises(IntegrityError):
        ModelVersion.objects.create(scoring_model=version.scoring_model, number=99, status="active")


def test_publishing_archives_the_old_version_and_keeps_it_readable():
    old = active_version()
    draft = draft_get_or_create(scoring_model=old.scoring_model)
    draft.engagement_rules.filter(name="Email opens").delete()
    draft.fit_rules.filter(name="Free-mail address").update(points=-15)

    run = version_publish(draft=draft)

    old.refresh_from_db()
    assert old.status == "archived" and active_version() == draft
    assert run.reason == RescoreRun.Reason.PUBLISH
    diff = {(d.change, d.name) for d in version_diff(old, draft)}
    assert diff == {("removed", "Email opens"), ("changed", "Free-mail address")}
    with pytest.raises(VersionError):
        version_publish(draft=draft)


def test_a_model_without_levels_cannot_be_published():
    draft = draft_get_or_create(scoring_model=active_version().scoring_model)
    draft.mql_levels.all().delete()

    with pytest.raises(VersionError, match="MQL level"):
        version_publish(draft=draft)
    assert active_version() != draft


def test_an_edit_of_a_draft_published_meanwhile_is_refused_and_changes_nothing():
    from scoring.forms import FitRuleForm
    from scoring.versions import rule_save

    draft = draft_get_or_create(scoring_model=active_version().scoring_model)
    as_the_page_loaded_it = ModelVersion.objects.get(pk=draft.pk)
    version_publish(draft=draft)
    form = FitRuleForm({"name": "Late", "field": "email", "operator": "free_mail", "points": -5})
    assert form.is_valid(), form.errors

    with pytest.raises(VersionError, match="Only a draft"):
        rule_save(version=as_the_page_loaded_it, form=form)
    assert not draft.fit_rules.filter(name="Late").exists()


@pytest.mark.parametrize(
    ("operator", "value", "expected_count"),
    [
        ("contains", "pri_cing", 1),  # "_" is a literal, not a LIKE wildcard
        ("contains", "/pricing", 3),  # case-insensitive
        ("contains", "100%", 1),
        ("starts_with", "/pricing", 3),
        ("equals", "/PRICING", 2),  # case-insensitive: /pricing and /PRICING
    ],
)
def test_a_new_property_filter_is_backfilled_from_history_exactly(operator, value, expected_count):
    from scoring.models import DailyEngagement, EngagementRule, Matcher, PendingEngagement
    from scoring.services import matchers_prepare

    contact = _executive()
    urls = ["/pricing", "/PRICING", "/pricing/plans?x=100%", "/pri_cing", "/priXcing", "/blog"]
    activities_ingest(
        events=[
            IngestEvent(
                index=n,
                type_key="page_view",
                occurred_at=timezone.now(),
                source="web",
                external_id=f"u{n}",
                properties={"url": url},
                contact_id=contact.pk,
            )
            for n, url in enumerate(urls)
        ]
    )
    draft = draft_get_or_create(scoring_model=active_version().scoring_model)
    EngagementRule.objects.create(
        version=draft,
        name="Filtered",
        activity_type_id=draft.engagement_rules.get(name="Repeated visits this week").activity_type_id,
        property_name="url",
        property_operator=operator,
        property_value=value,
        points=1,
    )

    matchers_prepare(version=draft)

    matcher = Matcher.objects.get(property_name="url", property_operator=operator, property_value=value)
    assert matcher.backfilled
    # Whether the matcher is new (backfilled) or shipped (counted at ingest, pending until a rescore).
    counted = [
        model.objects.filter(matcher=matcher).values_list("count", flat=True)
        for model in (DailyEngagement, PendingEngagement)
    ]
    assert sum(counted[0]) + sum(counted[1]) == expected_count


def test_a_chunk_that_fails_is_given_back_for_its_retry(monkeypatch, django_capture_on_commit_callbacks):
    from scoring.models import RescoreChunk
    from scoring.services import rescore_chunk_run, rescore_run_start, runs

    contact = _executive()
    with django_capture_on_commit_callbacks(execute=False):
        run = rescore_run_start(version=active_version(), reason=RescoreRun.Reason.PUBLISH)
    chunk = run.chunks.get()
    real_rescore = runs.contacts_rescore

    def deadlocked(**kwargs):
        raise IntegrityError("deadlock detected")

    monkeypatch.setattr(runs, "contacts_rescore", deadlocked)
    with pytest.raises(IntegrityError):
        rescore_chunk_run(chunk_id=chunk.pk)
    chunk.refresh_from_db()
    assert chunk.status == RescoreChunk.Status.PENDING  # not held until the claim times out

    monkeypatch.setattr(runs, "contacts_rescore", real_rescore)
    assert rescore_chunk_run(chunk_id=chunk.pk)  # the task's retry, seconds later
    run.refresh_from_db()
    assert run.is_finished and ContactScore.objects.filter(contact=contact).exists()


def _publish_with_executive_points(points: int, captured) -> RescoreRun:
    draft = draft_get_or_create(scoring_model=active_version().scoring_model)
    FitRule.objects.filter(version=draft, name="Executive seniority").update(points=points)
    with captured(execute=False):  # the chunks' tasks are not run: the test runs them
        return version_publish(draft=draft)


def test_a_rescore_overtaken_by_a_newer_publish_stops_and_never_writes_its_older_scores(
    django_capture_on_commit_callbacks,
):
    contact = contact_upsert(email="ceo@acme.example", job_title="CEO", seniority="c_level").contact
    # Scored by a finished publish first: on PostgreSQL its run leaves the sums a later
    # publish adjusts stored scores from.
    rescore_run_to_end(run=_publish_with_executive_points(10, django_capture_on_commit_callbacks))
    older = _publish_with_executive_points(5, django_capture_on_commit_callbacks)
    newer = _publish_with_executive_points(33, django_capture_on_commit_callbacks)

    older.refresh_from_db()
    assert (older.superseded, older.is_finished, older.done_chunks) == (True, True, 0)
    rescore_run_to_end(run=newer)
    score = ContactScore.objects.get(contact=contact)
    explained = {c["rule"]: c["points"] for c in score.explanation}
    assert explained["Executive seniority"] == "33.0"
    # Stored, not only explained: the stopped run never judged this score, so the newer run
    # evaluated it in full instead of adjusting it as if it were the stopped version's.
    assert sum(Decimal(c["points"]) for c in score.explanation) == score.total
    assert sum(Decimal(c["points"]) for c in score.explanation if c["kind"] == "fit") == score.fit_uncapped
    # A chunk of the older run that a worker claimed just before the publish runs after it:
    # it finds its version archived and stops, writing nothing.
    RescoreRun.objects.filter(pk=older.pk).update(finished_at=None, superseded=False)
    assert rescore_chunk_run(chunk_id=older.chunks.get().pk) is False
    older.refresh_from_db()
    assert older.superseded and older.done_chunks == 0
    explained = {c["rule"]: c["points"] for c in ContactScore.objects.get(contact=contact).explanation}
    assert explained["Executive seniority"] == "33.0"
    assert rescore_runs_sweep() == 0  # its chunk is not queued again either


def test_a_publish_routes_the_mqls_it_makes_and_sends_each_rep_one_digest(rep, other_rep):
    contacts = [_executive(f"vp{n}@fit.example") for n in range(5)]  # fit 52: below every level
    assert {c.lifecycle_stage for c in contacts} == {LifecycleStage.LEAD}
    draft = draft_get_or_create(scoring_model=active_version().scoring_model)
    draft.mql_levels.update(min_score=1)

    run = rescore_run_to_end(run=version_publish(draft=draft))

    qualified = Contact.objects.filter(pk__in=[c.pk for c in contacts])
    assert {c.lifecycle_stage for c in qualified} == {LifecycleStage.MQL}
    assert sorted(qualified.values_list("owner__username", flat=True)) == ["rep", "rep", "rep", "rep2", "rep2"]
    assert MqlQualification.objects.filter(run=run).count() == 5
    assert not OutboundEmail.objects.filter(key__startswith="assigned:").exists()
    digests = {email.to: email for email in OutboundEmail.objects.filter(key__startswith="mql-digest:")}
    assert set(digests) == {rep.email, other_rep.email}
    assert digests[rep.email].subject == "3 new MQLs for you after a scoring update"
    for contact in qualified.filter(owner=other_rep):
        assert f"/contacts/{contact.pk}/" in digests[other_rep.email].body_text
        assert f"/contacts/{contact.pk}/" not in digests[rep.email].body_text


def test_a_digest_lists_a_reps_best_new_mqls_and_counts_them_all(rep, monkeypatch):
    from scoring.services import runs

    monkeypatch.setattr(runs, "MQL_DIGEST_LISTED", 2)
    contacts = [_executive(f"vp{n}@fit.example") for n in range(3)]
    draft = draft_get_or_create(scoring_model=active_version().scoring_model)
    draft.mql_levels.update(min_score=1)

    rescore_run_to_end(run=version_publish(draft=draft))

    digest = OutboundEmail.objects.get(key__startswith="mql-digest:")
    assert digest.subject == "3 new MQLs for you after a scoring update"
    listed = [c for c in contacts if f"/contacts/{c.pk}/" in digest.body_text]
    assert listed == contacts[:2]  # equal scores: the first qualified first


def test_a_run_cuts_the_contacts_in_chunks_of_consecutive_ids_and_counts_them(
    settings, django_capture_on_commit_callbacks
):
    from scoring.services import rescore_run_start

    settings.RESCORE_CHUNK_SIZE = 3
    contacts = [_executive(email=f"p{n}@fit.example") for n in range(8)]
    contacts[4].delete()  # a gap in the ids
    ids = [c.pk for n, c in enumerate(contacts) if n != 4]

    with django_capture_on_commit_callbacks(execute=False) as queued:
        run = rescore_run_start(version=active_version(), reason=RescoreRun.Reason.MANUAL)

    chunks = list(run.chunks.order_by("first_contact_id").values_list("first_contact_id", "last_contact_id"))
    assert chunks == [(ids[0], ids[2]), (ids[3], ids[5]), (ids[6], ids[6])]
    assert (run.total_contacts, run.total_chunks, len(queued)) == (7, 3, 1)
    # A run over some contacts (a daily refresh) cuts only those.
    some = Contact.objects.filter(pk__in=ids[1:3])
    with django_capture_on_commit_callbacks(execute=False):
        partial = rescore_run_start(version=active_version(), reason=RescoreRun.Reason.REFRESH, contacts=some)
    assert list(partial.chunks.values_list("first_contact_id", "last_contact_id")) == [(ids[1], ids[2])]
    assert partial.total_contacts == 2
    # A multiple of the chunk size leaves no empty chunk behind.
    six = Contact.objects.filter(pk__in=ids[:6])
    with django_capture_on_commit_callbacks(execute=False):
        whole = rescore_run_start(version=active_version(), reason=RescoreRun.Reason.REFRESH, contacts=six)
    assert list(whole.chunks.order_by("first_contact_id").values_list("first_contact_id", "last_contact_id")) == [
        (ids[0], ids[2]),
        (ids[3], ids[5]),
    ]
    assert (whole.total_contacts, whole.total_chunks) == (6, 2)
