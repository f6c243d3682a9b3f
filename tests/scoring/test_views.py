"""The marketer's scoring pages: edit a draft, preview, publish, watch the rescore."""

import re
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from leads.models import LifecycleStage
from leads.services import IngestEvent, account_upsert, activities_ingest, contact_set_stage, contact_upsert
from scoring.models import ContactScore, DraftPreview, FitRule, ModelVersion, RescoreRun
from scoring.selectors import active_version
from scoring.services import (
    PREVIEW_FRESH,
    contacts_rescore,
    draft_preview_run,
    draft_previews_sweep,
    rescore_run_to_end,
)


def _ingest_now(contact, type_key: str) -> None:
    event = IngestEvent(
        index=0,
        type_key=type_key,
        occurred_at=timezone.now(),
        source="web",
        external_id=f"{type_key}-1",
        properties={},
        contact_id=contact.pk,
    )
    activities_ingest(events=[event])


@pytest.fixture
def active(db):
    return active_version()


@pytest.fixture
def draft(marketer_client, active):
    response = marketer_client.post(reverse("scoring:draft_create", args=[active.scoring_model.pk]))
    draft = ModelVersion.objects.get(status=ModelVersion.Status.DRAFT)
    assert response["Location"] == reverse("scoring:version_detail", args=[draft.pk])
    return draft


def _vp_at_software_company(email="vp@soft.example"):
    account = account_upsert(name="Soft", domain="soft.example", industry="Software", employee_count=900)
    return contact_upsert(email=email, job_title="VP Marketing", seniority="vp", account=account).contact


def test_a_draft_copies_every_rule_of_the_active_version(draft, active):
    assert draft.fit_rules.count() == active.fit_rules.count() > 0
    assert draft.engagement_rules.count() == active.engagement_rules.count() > 0
    assert list(draft.mql_levels.values_list("name", flat=True)) == list(
        active.mql_levels.values_list("name", flat=True)
    )


def test_a_marketer_adds_a_fit_rule_to_the_draft(marketer_client, draft):
    url = reverse("scoring:rule_new", args=[draft.pk, "fit"])
    response = marketer_client.post(
        url,
        {
            "name": "Germany",
            "field": "contact.country",
            "operator": "one_of",
            "value_text": "Germany, Austria",
            "points": "7",
        },
    )

    assert response.status_code == 302
    rule = draft.fit_rules.get(name="Germany")
    assert (rule.value, rule.points) == (["Germany", "Austria"], 7)
    page = marketer_client.get(reverse("scoring:version_detail", args=[draft.pk])).content.decode()
    assert "Germany" in page and "added" in page  # shown in the diff against the active version


def test_a_bad_range_is_explained_and_nothing_is_saved(marketer_client, draft):
    before = draft.fit_rules.count()
    response = marketer_client.post(
        reverse("scoring:rule_new", args=[draft.pk, "fit"]),
        {
            "name": "Size",
            "field": "account.employee_count",
            "operator": "between",
            "value_text": "5000, 10",
            "points": "5",
        },
    )

    assert response.status_code == 200
    assert "minimum no larger than the maximum" in response.content.decode()
    assert draft.fit_rules.count() == before


@pytest.mark.parametrize("end", ["NaN", "Infinity", "1e400", "1e30"])
def test_a_range_end_that_is_no_real_number_is_explained_not_a_server_error(marketer_client, draft, end):
    response = marketer_client.post(
        reverse("scoring:rule_new", args=[draft.pk, "fit"]),
        {
            "name": "Size",
            "field": "account.employee_count",
            "operator": "between",
            "value_text": f"{end},",
            "points": "5",
        },
    )

    assert response.status_code == 200
    assert "Range ends must be numbers between -1,000,000,000,000 and 1,000,000,000,000" in response.content.decode()
    assert not draft.fit_rules.filter(name="Size").exists()


def test_a_half_life_beyond_a_year_is_refused_on_the_page(marketer_client, draft):
    response = marketer_client.post(
        reverse("scoring:rule_new", args=[draft.pk, "engagement"]),
        {"name": "Slow", "activity_type": 1, "points": "5", "half_life_days": "100000000"},
    )

    assert "less than or equal to 365" in response.content.decode()
    assert not draft.engagement_rules.filter(name="Slow").exists()


def test_an_engagement_rule_cannot_have_both_a_window_and_a_half_life(marketer_client, draft):
    response = marketer_client.post(
        reverse("scoring:rule_new", args=[draft.pk, "engagement"]),
        {"name": "Both", "activity_type": 1, "points": "5", "window_days": "7", "half_life_days": "30"},
    )

    assert "not both" in response.content.decode()
    assert not draft.engagement_rules.filter(name="Both").exists()


def test_the_active_version_cannot_be_edited(marketer_client, active):
    rule = active.fit_rules.first()
    response = marketer_client.post(
        reverse("scoring:rule_edit", args=[active.pk, "fit", rule.pk]),
        {"name": "Hacked", "field": rule.field, "operator": "is_set", "value_text": "", "points": "99"},
    )

    assert response.status_code == 302
    rule.refresh_from_db()
    assert rule.name != "Hacked" and rule.points != 99


def test_preview_counts_the_new_mqls_a_draft_would_make(marketer_client, draft):
    contact = _vp_at_software_company()
    contacts_rescore(contact_ids=[contact.pk], reason="test")
    assert ContactScore.objects.get(contact=contact).mql_level == ""
    draft.mql_levels.update(min_score=40)
    url = reverse("scoring:version_preview", args=[draft.pk])

    waiting = marketer_client.get(url)

    # A worker computes it (seconds to a minute at a million contacts); the page polls its progress.
    preview = waiting.context["preview"]
    progress_url = reverse("scoring:version_preview_progress", args=[draft.pk, preview.pk])
    assert "Waiting for a worker" in waiting.content.decode() and progress_url in waiting.content.decode()
    assert "Waiting for a worker" in marketer_client.get(progress_url).content.decode()
    assert draft_preview_run(preview_id=preview.pk) is True
    assert draft_preview_run(preview_id=preview.pk) is False  # a second delivery does nothing
    assert marketer_client.get(progress_url, headers={"HX-Request": "true"}).headers["HX-Refresh"] == "true"
    shown = marketer_client.get(url)
    assert shown.context["preview"].pk == preview.pk  # the same rules: not computed twice
    assert shown.context["preview"].result["new_mqls"] == 1
    assert str(contact) in shown.content.decode()
    example = shown.context["preview"].result["new_examples"][0]
    assert f'<span class="badge" title="fit grade">{example["new_grade"]}</span>' in shown.content.decode()


def test_preview_does_not_count_a_recycled_lead_that_has_done_nothing_since(marketer_client, draft):
    contact = _vp_at_software_company()
    contacts_rescore(contact_ids=[contact.pk], reason="test")
    contact_set_stage(contact=contact, to_stage=LifecycleStage.RECYCLED, reason="bad timing")
    draft.mql_levels.update(min_score=40)
    url = reverse("scoring:version_preview", args=[draft.pk])

    def new_mqls():
        preview = marketer_client.get(url).context["preview"]
        draft_preview_run(preview_id=preview.pk)
        return marketer_client.get(url).context["preview"].result["new_mqls"]

    before = new_mqls()
    _ingest_now(contact, "pricing_page_view")
    assert marketer_client.post(url).status_code == 302  # "Compute again", with the scores stored now
    after = new_mqls()

    assert (before, after) == (0, 1)


def test_a_failed_preview_says_so_without_its_error_and_is_computed_again_on_request(
    marketer_client, draft, monkeypatch
):
    url = reverse("scoring:version_preview", args=[draft.pk])
    preview = marketer_client.get(url).context["preview"]

    def broken(*args, **kwargs):
        raise RuntimeError("relation scoring_secret does not exist")

    monkeypatch.setattr("scoring.services.previews.preview_version", broken)
    with pytest.raises(RuntimeError):  # raised, so the worker logs it with its traceback
        draft_preview_run(preview_id=preview.pk)
    page = marketer_client.get(url)

    text = page.content.decode()
    assert "could not be computed" in text and "worker&#x27;s log" in text
    assert "scoring_secret" not in text and "Compared with" not in text  # nothing was compared
    # Opening the page again shows the failure rather than starting over (a lasting error would loop).
    assert page.context["preview"].pk == preview.pk and DraftPreview.objects.count() == 1
    monkeypatch.undo()
    assert marketer_client.post(url).status_code == 302  # "Compute again"
    again = marketer_client.get(url).context["preview"]
    assert again.pk != preview.pk
    draft_preview_run(preview_id=again.pk)
    assert marketer_client.get(url).context["preview"].result["changed"] == 0


def test_the_active_version_has_no_preview_of_itself(marketer_client, active):
    response = marketer_client.get(reverse("scoring:version_preview", args=[active.pk]), follow=True)

    assert response.redirect_chain == [(reverse("scoring:version_detail", args=[active.pk]), 302)]
    assert "is the active version" in response.content.decode()
    assert not DraftPreview.objects.exists()  # no worker spent on comparing its scores with themselves


def test_the_sweep_requeues_a_lost_preview_and_ends_one_whose_worker_died(marketer_client, draft):
    url = reverse("scoring:version_preview", args=[draft.pk])
    lost = marketer_client.get(url).context["preview"]
    assert draft_previews_sweep() == 0  # just queued: its task may still run
    DraftPreview.objects.filter(pk=lost.pk).update(created_at=timezone.now() - timedelta(minutes=2))
    assert draft_previews_sweep() == 1  # queued again; its claim makes a second delivery harmless
    # A worker took it and died: after PREVIEW_FRESH the page polling it learns it stopped.
    DraftPreview.objects.filter(pk=lost.pk).update(started_at=timezone.now() - PREVIEW_FRESH - timedelta(seconds=1))
    progress_url = reverse("scoring:version_preview_progress", args=[draft.pk, lost.pk])
    assert "Waiting" not in marketer_client.get(progress_url).content.decode()  # computing, as far as it knows
    assert draft_preview_run(preview_id=lost.pk) is False  # its message delivered again: taken already

    assert draft_previews_sweep() == 1

    assert marketer_client.get(progress_url, headers={"HX-Request": "true"}).headers["HX-Refresh"] == "true"
    assert "stopped before it finished" in marketer_client.get(url).content.decode()
    assert draft_previews_sweep() == 0


def test_publishing_makes_the_draft_active_and_rescores_everyone(
    marketer_client, draft, active, django_capture_on_commit_callbacks
):
    contact = _vp_at_software_company()
    FitRule.objects.filter(version=draft, name="Executive seniority").update(points=33)

    with django_capture_on_commit_callbacks(execute=False):
        response = marketer_client.post(reverse("scoring:version_publish", args=[draft.pk]))

    run = RescoreRun.objects.get()
    assert response["Location"] == reverse("scoring:run_detail", args=[run.pk])
    draft.refresh_from_db()
    active.refresh_from_db()
    assert (draft.status, active.status) == ("active", "archived")
    run = rescore_run_to_end(run=run)
    assert run.is_finished and run.percent_done == 100
    score = ContactScore.objects.get(contact=contact)
    assert {"rule": "Executive seniority", "points": "33.0"}.items() <= next(
        c for c in score.explanation if c["rule"] == "Executive seniority"
    ).items()
    page = marketer_client.get(reverse("scoring:run_detail", args=[run.pk])).content.decode()
    assert "Finished" in page


def test_the_contact_page_explains_the_score_and_the_parts_add_up(rep_client):
    contact = _vp_at_software_company()
    contacts_rescore(contact_ids=[contact.pk], reason="test")

    response = rep_client.get(reverse("leads:contact_detail", args=[contact.pk]))

    score = response.context["score"]
    assert sum(Decimal(part["points"]) for part in score.explanation) == score.total
    page = response.content.decode()
    assert "Executive seniority" in page and "<svg" in page


def _scored_twice():
    """A VP scored ("first"), then made an intern and scored again ("second"); with both totals."""
    contact = _vp_at_software_company()
    contacts_rescore(contact_ids=[contact.pk], reason="first")
    first = ContactScore.objects.get(contact=contact).total
    contact_upsert(email=contact.email, job_title="Marketing Intern", seniority="intern")
    contacts_rescore(contact_ids=[contact.pk], reason="second")
    return contact, first, ContactScore.objects.get(contact=contact).total


def test_the_contact_pages_history_starts_from_no_score(rep_client):
    contact, first, second = _scored_twice()

    page = rep_client.get(reverse("leads:contact_detail", args=[contact.pk])).content.decode()

    rows = re.findall(r'<td class="num">((?:(?!</td>).)*?) → ([\d.-]+)</td>', page)
    assert rows == [(str(first), str(second)), ('<span class="muted">no score</span>', str(first))]


def test_the_score_history_api_starts_from_no_score_too(rep_api):
    contact, first, second = _scored_twice()

    response = rep_api.get(f"/api/contacts/{contact.pk}/score-history/")

    assert response.status_code == 200
    entries = response.json()["results"]
    assert [(e["old_total"], e["new_total"], e["reason"]) for e in entries] == [
        (str(first), str(second), "second"),
        (None, str(first), "first"),
    ]


def test_the_contact_page_explains_an_event_the_worker_has_not_scored_yet(rep_client):
    contact = _vp_at_software_company()
    contacts_rescore(contact_ids=[contact.pk], reason="test")
    stored_before = ContactScore.objects.get(contact=contact).total
    _ingest_now(contact, "demo_request")  # its rescore is queued, not run

    response = rep_client.get(reverse("leads:contact_detail", args=[contact.pk]))

    score = response.context["score"]
    assert ContactScore.objects.get(contact=contact).total == stored_before
    assert any(part["rule"] == "Demo request" for part in score.explanation)
    assert sum(Decimal(part["points"]) for part in score.explanation) == score.total > stored_before


def test_sales_reps_cannot_open_the_scoring_pages(rep_client, active):
    assert rep_client.get(reverse("scoring:overview")).status_code == 403
    assert rep_client.post(reverse("scoring:draft_create", args=[active.scoring_model.pk])).status_code == 403
    assert not ModelVersion.objects.filter(status="draft").exists()


def test_an_unknown_rule_kind_is_a_404(marketer_client, draft):
    assert marketer_client.get(f"/scoring/versions/{draft.pk}/bogus/new/").status_code == 404


def test_the_overview_says_the_default_model_shipped_with_the_app(marketer_client, active):
    page = marketer_client.get(reverse("scoring:overview")).content.decode()

    assert active.published_at is None
    assert "shipped with the app" in page


def test_the_run_page_counts_the_mqls_the_publish_handed_to_sales(
    marketer_client, draft, active, django_capture_on_commit_callbacks
):
    contact = _vp_at_software_company()
    draft.mql_levels.update(min_score=1)

    with django_capture_on_commit_callbacks(execute=False):
        marketer_client.post(reverse("scoring:version_publish", args=[draft.pk]))
    run = rescore_run_to_end(run=RescoreRun.objects.get())

    contact.refresh_from_db()
    assert contact.lifecycle_stage == "mql"
    page = marketer_client.get(reverse("scoring:run_detail", args=[run.pk])).content.decode()
    assert "1 new MQL handed to sales" in page
    # The finished run lists who: the lead, linked, with the score and level it qualified at.
    score = ContactScore.objects.get(contact=contact)
    row = re.search(
        r"<tr>\s*<td><a href=\"([^\"]+)\">([^<]+)</a></td>\s*<td>([^<]+)</td>\s*<td class=\"num\">([^<]+)</td>"
        r"\s*<td>([^<]+)</td>",
        page,
    )
    assert row.groups() == (
        reverse("leads:contact_detail", args=[contact.pk]),
        str(contact),
        "Soft",
        str(score.total),
        score.mql_level,
    )


def test_a_level_no_contact_can_reach_is_explained_and_nothing_is_saved(marketer_client, draft):
    level = draft.mql_levels.get(name="warm")
    response = marketer_client.post(
        reverse("scoring:rule_edit", args=[draft.pk, "level", level.pk]),
        {"name": "warm", "min_score": "99999999999", "min_fit_grade": "C"},
    )

    assert response.status_code == 200
    assert "No contact can score more than 160 (fit cap 60 + engagement cap 100)" in response.content.decode()
    level.refresh_from_db()
    assert level.min_score == 60


def test_the_score_chart_labels_its_axes_so_that_a_reader_can_tell_the_changes_apart():
    from types import SimpleNamespace

    from scoring.templatetags.score_charts import score_history_chart

    def change(when: str, total: float):
        return SimpleNamespace(changed_at=datetime.fromisoformat(when), new_total=Decimal(total), reason="test")

    def labels(svg: str) -> list[str]:
        return re.findall(r">([^<>]+)</text>", svg)

    one_day = score_history_chart([change("2026-12-07T09:05:00+00:00", 10), change("2026-12-07T11:40:00+00:00", 35)])
    assert labels(one_day) == ["35.0", "10.0", "0.0", "7 Dec 2026, 09:05", "11:40"]
    assert 'aria-label="Score history: 2 changes, now 35.0"' in one_day
    two_days = score_history_chart([change("2026-12-06T09:05:00+00:00", 10), change("2026-12-07T11:40:00+00:00", 35)])
    assert labels(two_days)[-2:] == ["6 Dec 2026", "7 Dec 2026"]
    # A negative score: the scale reaches down to the score.
    negative = score_history_chart([change("2026-12-07T09:46:00+00:00", -64.1)])
    assert labels(negative) == ["-64.1", "7 Dec 2026, 09:46"]
    assert 'aria-label="Score history: 1 change, now -64.1"' in negative
    # Above and below zero: all three scores on the scale.
    both = score_history_chart([change("2026-12-01T09:00:00+00:00", -20), change("2026-12-07T09:00:00+00:00", 45)])
    assert labels(both)[:3] == ["45.0", "-20.0", "0.0"]
    # A range under 10 points: the scale is padded, the labels are still scores the contact had.
    small = score_history_chart([change("2026-12-07T09:00:00+00:00", -0.5), change("2026-12-07T10:00:00+00:00", 2.5)])
    assert labels(small)[:2] == ["2.5", "-0.5"] and "9.5" not in labels(small)


def _changes(*steps):
    """Score changes newest first, as the contact page passes them: (ISO time, total) oldest first."""
    from types import SimpleNamespace

    return [
        SimpleNamespace(changed_at=datetime.fromisoformat(when), new_total=Decimal(total), reason="x")
        for when, total in reversed(steps)
    ]


def test_the_score_chart_shows_small_steps_of_a_high_score_and_the_mql_lines_they_cross():
    from scoring.templatetags.score_charts import score_history_chart

    steps = _changes(
        ("2026-12-01T09:00:00+00:00", 80), ("2026-12-03T09:00:00+00:00", 85), ("2026-12-05T09:00:00+00:00", 90)
    )
    svg = score_history_chart(steps, [("hot", 120, "B"), ("warm", 84, "C")])

    heights = [float(cy) for cy in re.findall(r'<circle cx="[\d.]+" cy="([\d.]+)"', svg)]
    # Each 5-point step moves the line by at least a quarter of the chart's 180 units: 0 is not on the scale.
    assert heights[0] - heights[1] >= 45 and heights[1] - heights[2] >= 45
    labels = re.findall(r">([^<>]+)</text>", svg)
    assert labels[:2] == ["90.0", "80.0"] and labels[-1] == "warm: ≥ 84, fit ≥ C"
    assert "hot" not in svg  # 120 is far above anything this lead scored
    # The label is drawn after the line and the dots, so that a step through it leaves it readable.
    assert svg.index("warm:") > svg.rindex("<circle")


def test_the_score_chart_keeps_the_order_of_changes_of_one_moment_and_level_labels_apart():
    from scoring.templatetags.score_charts import score_history_chart

    same_moment = "2026-12-07T09:00:00+00:00"
    svg = score_history_chart(_changes(("2026-12-06T09:00:00+00:00", 0), (same_moment, 65), (same_moment, 70)))
    assert 'now 70.0"' in svg  # the table's newest row

    close = score_history_chart(
        _changes(("2026-12-01T09:00:00+00:00", 0), ("2026-12-05T09:00:00+00:00", 120)),
        [("hot", 65, "B"), ("warm", 60, "D")],
    )
    assert close.count('<line x1="52" y1=') == 3  # zero and both levels' lines
    # warm's label would cover hot's: it goes to the other end of its line.
    assert re.findall(r'text-anchor="(\w+)" class="threshold">([^<]+)<', close) == [
        ("start", "hot: ≥ 65, fit ≥ B"),
        ("end", "warm: ≥ 60"),
    ]
    crowded = score_history_chart(
        _changes(("2026-12-01T09:00:00+00:00", 0), ("2026-12-05T09:00:00+00:00", 120)),
        [("top", 70, "A"), ("hot", 65, "B"), ("warm", 60, "C")],
    )
    assert re.findall(r'class="threshold">(\w+):', crowded) == ["top", "hot"]  # no room left for warm's
    wide = score_history_chart(
        _changes(("2026-12-01T09:00:00+00:00", 0), ("2026-12-05T09:00:00+00:00", 120)), [("warm", 60, "D")]
    )
    assert re.findall(r'class="threshold">([^<]+)<', wide) == ["warm: ≥ 60"]  # any fit grade qualifies
