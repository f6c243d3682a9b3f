"""Scoring models over the API: what a marketer does on the scoring pages, by an integration."""

from decimal import Decimal

import pytest
from django.urls import reverse

from leads.services import account_upsert, contact_upsert
from scoring import selectors
from scoring.models import ContactScore, DraftPreview, EngagementRule, FitRule, ModelVersion, MqlQualification
from scoring.selectors import active_version
from scoring.services import contacts_rescore, draft_preview_run, rescore_chunk_run, rescore_run_to_end

API = "/api/scoring"


@pytest.fixture
def active(db):
    return active_version()


def _draft(marketer_api, active) -> dict:
    response = marketer_api.post(f"{API}/models/{active.scoring_model_id}/draft/")
    assert response.status_code == 201, response.data
    return response.data


def _vp(email="vp@soft.example"):
    account = account_upsert(name="Soft", domain="soft.example", industry="Software", employee_count=900)
    return contact_upsert(email=email, job_title="VP Marketing", seniority="vp", account=account).contact


def test_a_marketer_edits_previews_and_publishes_a_draft_through_the_api(
    marketer_api, active, django_capture_on_commit_callbacks
):
    contact = _vp()
    contacts_rescore(contact_ids=[contact.pk], reason="test")
    before = ContactScore.objects.get(contact=contact).total
    models = marketer_api.get(f"{API}/models/").data["results"]
    assert models == [
        {
            "id": active.scoring_model_id,
            "name": active.scoring_model.name,
            "description": active.scoring_model.description,
            "active_version": active.pk,
            "draft": None,
        }
    ]

    draft = _draft(marketer_api, active)
    assert (draft["status"], draft["based_on"]) == ("draft", active.pk)
    assert len(draft["fit_rules"]) == active.fit_rules.count() > 0
    # Asking again gives the same draft, not a second one.
    again = marketer_api.post(f"{API}/models/{active.scoring_model_id}/draft/")
    assert (again.status_code, again.data["id"]) == (200, draft["id"])

    # A new fit rule for the lead's industry, a range on company size, and a changed engagement rule.
    rules = f"{API}/versions/{draft['id']}"
    added = marketer_api.post(
        f"{rules}/fit-rules/",
        {
            "name": "Software or SaaS",
            "field": "account.industry",
            "operator": "one_of",
            "value": ["Software", "SaaS"],
            "points": 7,
        },
    )
    assert added.status_code == 201, added.data
    assert added.data["value"] == ["Software", "SaaS"]
    sized = marketer_api.post(
        f"{rules}/fit-rules/",
        {
            "name": "Mid-size",
            "field": "account.employee_count",
            "operator": "between",
            "value": [500, None],
            "points": 3,
        },
    )
    assert sized.status_code == 201 and sized.data["value"] == [500, None], sized.data
    clicks = EngagementRule.objects.get(version_id=draft["id"], name="Email clicks")
    changed = marketer_api.patch(f"{rules}/engagement-rules/{clicks.pk}/", {"points": 9, "cap": None})
    assert changed.status_code == 200, changed.data
    assert (changed.data["points"], changed.data["cap"], changed.data["activity_type"]) == (
        9,
        None,
        clicks.activity_type.key,
    )
    level = marketer_api.post(f"{rules}/levels/", {"name": "Lukewarm", "min_score": 5})
    assert level.status_code == 201 and level.data == {**level.data, "name": "lukewarm", "min_fit_grade": "C"}
    settings = marketer_api.patch(rules + "/", {"note": "ICP: software", "fit_cap": 70})
    assert (settings.data["note"], settings.data["fit_cap"], settings.data["engagement_cap"]) == (
        "ICP: software",
        70,
        active.engagement_cap,
    )

    diff = marketer_api.get(f"{rules}/diff/").data
    assert {(d["kind"], d["change"], d["name"]) for d in diff} == {
        ("fit", "added", "Software or SaaS"),
        ("fit", "added", "Mid-size"),
        ("engagement", "changed", "Email clicks"),
        ("level", "added", "lukewarm"),
        ("setting", "changed", "fit cap"),
    }

    with django_capture_on_commit_callbacks(execute=False):
        preview = marketer_api.get(f"{rules}/preview/").data
    assert (preview["is_finished"], preview["result"]) == (False, None)
    draft_preview_run(preview_id=preview["id"])
    preview = marketer_api.get(f"{rules}/preview/").data
    assert preview["is_finished"] and preview["result"]["changed"] == 1
    assert preview["result"]["contacts"] == 1

    with django_capture_on_commit_callbacks(execute=False):
        published = marketer_api.post(f"{rules}/publish/")
    assert published.status_code == 202, published.data
    assert (published.data["is_finished"], published.data["version"]) == (False, draft["id"])
    rescore_run_to_end(run=ModelVersion.objects.get(pk=draft["id"]).rescore_runs.get())
    run = marketer_api.get(f"{API}/runs/{published.data['id']}/").data
    assert (run["is_finished"], run["percent_done"], run["changed_contacts"]) == (True, 100, 1)
    assert marketer_api.get(f"{API}/runs/").data["results"][0] == {
        key: value for key, value in run.items() if key not in ("best_new_mqls", "failing_chunks")
    }

    score = marketer_api.get(f"/api/contacts/{contact.pk}/score/").data
    assert Decimal(score["total"]) == before + 7 + 3
    assert {"Software or SaaS", "Mid-size"} <= {part["rule"] for part in score["explanation"]}
    assert marketer_api.get(f"{API}/models/").data["results"][0]["active_version"] == draft["id"]


def test_a_publish_through_the_api_lists_the_leads_it_made_mqls(
    marketer_api, active, django_capture_on_commit_callbacks
):
    contact = _vp()
    contacts_rescore(contact_ids=[contact.pk], reason="test")
    draft = _draft(marketer_api, active)
    low = marketer_api.post(
        f"{API}/versions/{draft['id']}/levels/", {"name": "everyone", "min_score": 1, "min_fit_grade": "D"}
    )
    assert low.status_code == 201, low.data

    with django_capture_on_commit_callbacks(execute=False):
        run_id = marketer_api.post(f"{API}/versions/{draft['id']}/publish/").data["id"]
    rescore_run_to_end(run=ModelVersion.objects.get(pk=draft["id"]).rescore_runs.get())

    run = marketer_api.get(f"{API}/runs/{run_id}/").data
    assert run["new_mqls"] == 1 == MqlQualification.objects.filter(run_id=run_id).count()
    [lead] = run["best_new_mqls"]
    assert (lead["contact"], lead["email"], lead["lifecycle_stage"]) == (contact.pk, "vp@soft.example", "mql")
    assert marketer_api.get(f"{API}/runs/").data["results"][0]["new_mqls"] == 1


def test_bad_rules_get_the_pages_messages_and_change_nothing(marketer_api, active):
    draft = _draft(marketer_api, active)
    rules = f"{API}/versions/{draft['id']}"
    fit_count = FitRule.objects.filter(version_id=draft["id"]).count()

    cases = [
        (
            "fit-rules",
            {"name": "Size", "field": "account.employee_count", "operator": "between", "value": ["a", 5], "points": 3},
            "value",
            "Both ends of the range must be numbers.",
        ),
        (
            "fit-rules",
            {"name": "X", "field": "account.nope", "operator": "equals", "value": "x", "points": 3},
            "field",
            "Select a valid choice.",
        ),
        (
            "fit-rules",
            {"name": "X", "field": "contact.country", "operator": "one_of", "points": 3},
            "value",
            "This operator needs a value.",
        ),
        (
            "fit-rules",
            {"name": "X", "field": "contact.country", "operator": "equals", "value": {"a": 1}, "points": 3},
            "value",
            "Give a text, a number, a list of them, or null.",
        ),
        (
            "engagement-rules",
            {"name": "Visits", "activity_type": "page_view", "points": 2, "window_days": 7, "half_life_days": 14},
            "non_field_errors",
            "not both",
        ),
        (
            "engagement-rules",
            {"name": "Visits", "activity_type": "no_such_type", "points": 2},
            "activity_type",
            "No activity type with the key",
        ),
        ("levels", {"name": "Hot", "min_score": 10_000}, "min_score", "No contact can score more than"),
    ]
    for kind, body, field, message in cases:
        response = marketer_api.post(f"{rules}/{kind}/", body)
        assert response.status_code == 400, (kind, body, response.data)
        assert message in " ".join(map(str, response.data[field])), response.data

    more = [
        ("fit-rules", {"name": "X", "field": "email", "operator": "free_mail", "points": 0}, "points", "give or take"),
        (
            "fit-rules",
            {
                "name": "X",
                "field": "contact.country",
                "operator": "one_of",
                "value": [f"c{n}" for n in range(201)],
                "points": 2,
            },
            "value",
            "at most 200 values",
        ),
        (
            "fit-rules",
            {
                "name": "X",
                "field": "account.employee_count",
                "operator": "between",
                "value": ["NaN", None],
                "points": 2,
            },
            "value",
            "Range ends must be numbers between",
        ),
        (
            "fit-rules",
            {"name": "X", "field": "account.employee_count", "operator": "between", "value": [1e30, None], "points": 2},
            "value",
            "Range ends must be numbers between",
        ),
        (
            "fit-rules",
            {"name": "X", "field": "email", "operator": "free_mail", "points": 2**31 - 1},
            "points",
            "less than or equal to 1000",
        ),
        (
            "engagement-rules",
            {"name": "Slow", "activity_type": "email_click", "points": 1, "half_life_days": 10**8},
            "half_life_days",
            "less than or equal to 365",
        ),
        (
            "engagement-rules",
            {"name": "Never", "activity_type": "email_click", "points": 1, "window_days": 0},
            "window_days",
            "greater than or equal to 1",
        ),
        ("levels", {"name": "Everyone", "min_score": -5, "min_fit_grade": "D"}, "min_score", "greater than or equal"),
    ]
    for kind, body, field, message in more:
        response = marketer_api.post(f"{rules}/{kind}/", body)
        assert response.status_code == 400, (kind, body, response.data)
        assert message in " ".join(map(str, response.data[field])), response.data
    both = marketer_api.post(
        f"{rules}/engagement-rules/",
        {"name": "Visits", "activity_type": "page_view", "points": 2, "window_days": 7, "half_life_days": 14},
    )
    assert both.data == {"non_field_errors": ["Choose a look-back window or a decay half-life, not both."]}
    stranded = marketer_api.patch(rules + "/", {"fit_cap": 5, "engagement_cap": 0})
    assert "No contact could reach the level" in str(stranded.data["non_field_errors"]), stranded.data
    activated = marketer_api.patch(rules + "/", {"status": "active"})
    assert "Publish the draft" in str(activated.data["status"])
    unreachable_a = marketer_api.patch(rules + "/", {"grade_a_min": 100})
    assert "no contact could be grade A" in str(unreachable_a.data["grade_a_min"]), unreachable_a.data
    # Another operator needs its own value: a range does not silently become the text "200, 5000".
    sized = FitRule.objects.create(
        version_id=draft["id"],
        name="Size",
        field="account.employee_count",
        operator="between",
        value=[200, 5000],
        points=3,
    )
    switched = marketer_api.patch(f"{rules}/fit-rules/{sized.pk}/", {"operator": "equals"})
    assert switched.data == {"value": ["This operator needs a value."]}
    sized.refresh_from_db()
    assert (sized.operator, sized.value) == ("between", [200, 5000])

    response = marketer_api.patch(rules + "/", {"grade_a_min": 5})
    assert response.status_code == 400
    assert "Grade thresholds must fall" in str(response.data["non_field_errors"])
    saved = ModelVersion.objects.get(pk=draft["id"])
    assert (saved.grade_a_min, saved.fit_cap, saved.engagement_cap) == (
        active.grade_a_min,
        active.fit_cap,
        active.engagement_cap,
    )
    assert FitRule.objects.filter(version_id=draft["id"]).count() == fit_count + 1  # Size, made above


def test_a_number_is_a_value_like_a_text(marketer_api, active):
    draft = _draft(marketer_api, active)

    response = marketer_api.post(
        f"{API}/versions/{draft['id']}/fit-rules/",
        {"name": "Five hundred", "field": "account.employee_count", "operator": "equals", "value": 500, "points": 4},
    )

    assert response.status_code == 201, response.data
    assert response.data["value"] == "500"


def test_a_published_version_cannot_be_changed_through_the_api(marketer_api, active):
    rule = active.fit_rules.first()
    version = f"{API}/versions/{active.pk}"

    answers = [
        marketer_api.patch(f"{version}/fit-rules/{rule.pk}/", {"points": 99}),
        marketer_api.post(
            f"{version}/fit-rules/", {"name": "X", "field": "email", "operator": "free_mail", "points": -5}
        ),
        marketer_api.delete(f"{version}/fit-rules/{rule.pk}/"),
        marketer_api.patch(version + "/", {"fit_cap": -10}),  # invalid too: the version's state answers first
        marketer_api.delete(version + "/"),
        marketer_api.post(f"{version}/publish/"),
        marketer_api.get(f"{version}/preview/"),
    ]

    assert [answer.status_code for answer in answers] == [409] * 7
    assert "Only a draft can be edited" in answers[0].data["detail"]
    rule.refresh_from_db()
    assert rule.points != 99 and active.fit_rules.count() == FitRule.objects.filter(version=active).count()
    assert ModelVersion.objects.get(pk=active.pk).fit_cap == active.fit_cap
    assert not DraftPreview.objects.exists()


def test_a_draft_is_discarded_and_a_rule_removed_through_the_api(marketer_api, active):
    draft = _draft(marketer_api, active)
    rule = FitRule.objects.filter(version_id=draft["id"]).first()

    assert marketer_api.get(f"{API}/versions/{draft['id']}/fit-rules/{rule.pk}/").data["name"] == rule.name
    assert marketer_api.delete(f"{API}/versions/{draft['id']}/fit-rules/{rule.pk}/").status_code == 204
    assert not FitRule.objects.filter(pk=rule.pk).exists()
    # A rule of another version is not found under this one.
    other = active.fit_rules.first()
    assert marketer_api.get(f"{API}/versions/{draft['id']}/fit-rules/{other.pk}/").status_code == 404

    assert marketer_api.delete(f"{API}/versions/{draft['id']}/").status_code == 204
    assert not ModelVersion.objects.filter(pk=draft["id"]).exists()
    assert [v["status"] for v in marketer_api.get(f"{API}/versions/").data["results"]] == ["active"]


def test_reps_and_strangers_cannot_touch_scoring_models(rep_api, active, api):
    rule = active.fit_rules.first()
    paths = [
        ("get", f"{API}/models/"),
        ("post", f"{API}/models/{active.scoring_model_id}/draft/"),
        ("get", f"{API}/versions/{active.pk}/"),
        ("patch", f"{API}/versions/{active.pk}/fit-rules/{rule.pk}/"),
        ("get", f"{API}/runs/"),
    ]

    assert [getattr(rep_api, method)(path).status_code for method, path in paths] == [403] * 5
    rep_api.force_authenticate(None)
    assert [getattr(api, method)(path).status_code for method, path in paths] == [401] * 5
    assert not ModelVersion.objects.filter(status="draft").exists()


def test_a_chunk_that_keeps_failing_is_shown_on_the_run_and_through_the_api(
    marketer_api, marketer_client, active, django_capture_on_commit_callbacks
):
    contact = _vp()
    draft = _draft(marketer_api, active)
    # A rule no form would save (one stored by an older release, say): every attempt fails.
    FitRule.objects.filter(version_id=draft["id"], name="Executive seniority").update(operator="sounds_like")
    with django_capture_on_commit_callbacks(execute=False):
        run_id = marketer_api.post(f"{API}/versions/{draft['id']}/publish/").data["id"]
    chunk = ModelVersion.objects.get(pk=draft["id"]).rescore_runs.get().chunks.get()

    for _ in range(2):
        with pytest.raises(ValueError, match="sounds_like"):
            rescore_chunk_run(chunk_id=chunk.pk)

    run = marketer_api.get(f"{API}/runs/{run_id}/").data
    assert (run["is_finished"], run["done_chunks"]) == (False, 0)
    assert run["failing_chunks"] == [
        {
            "first_contact_id": contact.pk,
            "last_contact_id": contact.pk,
            "attempts": 2,
            "last_error": "ValueError: Unknown fit operator 'sounds_like'",
        }
    ]
    page = marketer_client.get(reverse("scoring:run_detail", args=[run_id])).content.decode()
    assert "1 chunk keeps failing." in page and "2 attempts: ValueError: Unknown fit operator" in page
    assert "Waiting for workers" not in page

    # Repaired (a fixed release deployed: its workers start without cached rule sets), the next
    # attempt finishes the run and the failure is gone.
    FitRule.objects.filter(version_id=draft["id"], name="Executive seniority").update(operator="one_of")
    selectors._PUBLISHED_RULESETS.clear()
    rescore_chunk_run(chunk_id=chunk.pk)
    run = marketer_api.get(f"{API}/runs/{run_id}/").data
    assert (run["is_finished"], run["failing_chunks"]) == (True, [])
    assert "keeps failing" not in marketer_client.get(reverse("scoring:run_detail", args=[run_id])).content.decode()


def test_a_rule_far_beyond_the_cap_is_explained_through_the_api_with_its_floor(
    marketer_api, active, django_capture_on_commit_callbacks
):
    from django.utils import timezone

    from leads.models import ActivityType
    from scoring.models import DailyEngagement
    from scoring.services import matcher_for_type

    contact = _vp()
    opens = ActivityType.objects.get(key="email_open")
    # 11,000 opens on one day: as the daily aggregate that ingest keeps.
    DailyEngagement.objects.create(
        contact=contact, matcher=matcher_for_type(opens), day=timezone.localdate(), count=11_000
    )
    draft = _draft(marketer_api, active)
    added = marketer_api.post(
        f"{API}/versions/{draft['id']}/engagement-rules/",
        {"name": "Opens penalty", "activity_type": "email_open", "points": -1000},
    )
    assert added.status_code == 201, added.data
    with django_capture_on_commit_callbacks(execute=False):
        marketer_api.post(f"{API}/versions/{draft['id']}/publish/")
    rescore_run_to_end(run=ModelVersion.objects.get(pk=draft["id"]).rescore_runs.get())

    response = marketer_api.get(f"/api/contacts/{contact.pk}/score/")

    assert response.status_code == 200, response.content
    assert Decimal(response.data["engagement"]) == -active.engagement_cap
    parts = {part["rule"]: Decimal(part["points"]) for part in response.data["explanation"]}
    assert parts["Opens penalty"] < -10_000_000
    assert sum(Decimal(part["points"]) for part in response.data["explanation"]) == Decimal(response.data["total"])
