"""The audit log: each kind of change the issue names writes an entry (who, when, what before
and after), and admins, only admins, browse and filter it at /audit/."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.urls import reverse
from django.utils import timezone

from leads import handoff
from leads.audit import audit_record
from leads.importing import import_job_create, import_job_set_mapping, import_run_to_end
from leads.models import AuditEntry, ImportJob
from leads.roles import SALES
from scoring.models import FitRule, ModelVersion
from scoring.selectors import active_version
from scoring.versions import draft_get_or_create, version_publish

from ..factories import ContactFactory, UserFactory
from .test_handoff import make_mql

pytestmark = pytest.mark.django_db

AUDIT = "/audit/"


@pytest.fixture
def admin_client(client, admin_user):
    client.force_login(admin_user)
    return client


def entry(action: str) -> AuditEntry:
    return AuditEntry.objects.get(action=action)


# --- what is written -----------------------------------------------------------------------------


def test_hand_off_and_feedback_record_who_and_what(rep):
    contact = make_mql()

    handoff.lead_accept(contact_id=contact.pk, user=rep)
    handoff.feedback_record(contact_id=contact.pk, user=rep, rating="good", note="Great fit")

    accepted, feedback = entry("lead.accept"), entry("lead.feedback")
    assert (accepted.actor, accepted.object_type, accepted.object_id) == (rep, "contact", str(contact.pk))
    assert (accepted.before["stage"], accepted.after["stage"]) == ("mql", "sql")
    assert feedback.after == {"rating": "good", "reason": "", "note": "Great fit"}


def test_publishing_rules_records_the_versions_and_each_changed_rule(marketer):
    active = active_version()
    draft = draft_get_or_create(scoring_model=active.scoring_model, user=marketer)
    FitRule.objects.filter(version=draft, name="Executive seniority").update(points=33)

    version_publish(draft=draft, user=marketer)

    published = entry("scoring.publish")
    assert (published.actor, published.object_type, published.object_id) == (marketer, "modelversion", str(draft.pk))
    assert published.before["active version"] == f"v{active.number}"
    assert published.after["active version"] == f"v{draft.number}"
    assert published.before["fit: Executive seniority"].endswith(
        f"{FitRule.objects.get(version=active, name='Executive seniority').points:+d}"
    )
    assert published.after["fit: Executive seniority"].endswith("+33")
    assert ModelVersion.objects.get(pk=draft.pk).status == "active"


def test_creating_editing_and_activating_a_sequence_is_recorded(marketer_client, marketer):
    marketer_client.post(reverse("nurturing:sequence_new"), {"name": "Welcome", "entry": "segment"})
    sequence = AuditEntry.objects.get(action="sequence.create")
    pk = int(sequence.object_id)
    marketer_client.post(reverse("nurturing:sequence_edit", args=[pk]), {"name": "Welcome back", "entry": "segment"})
    marketer_client.post(
        reverse("nurturing:step_new", args=[pk]),
        {"position": 1, "delay_amount": 1, "delay_unit": "days", "subject": "Hello", "body": "Hi."},
    )
    marketer_client.post(reverse("nurturing:sequence_status", args=[pk, "active"]))

    assert sequence.actor == marketer and sequence.after["name"] == "Welcome"
    edit = entry("sequence.edit")
    assert (edit.before, edit.after) == ({"name": "Welcome"}, {"name": "Welcome back"})
    assert entry("sequence.step_save").after["subject"] == "Hello"
    status = entry("sequence.status")
    assert (status.before, status.after, status.object_id) == ({"status": "draft"}, {"status": "active"}, str(pk))


def test_an_import_records_who_started_it_and_what_it_did(marketer_client, marketer):
    job = import_job_create(filename="people.csv", content="Email\nann@a.example\nnot-an-email\n", created_by=marketer)
    import_job_set_mapping(job=job, mapping={"columns": {"Email": {"to": "email"}}})

    marketer_client.post(reverse("leads:import_start", args=[job.pk]))
    import_run_to_end(job_id=job.pk)

    started, finished = entry("import.start"), entry("import.finish")
    assert (started.actor, started.object_type, started.after["file"]) == (marketer, "importjob", "people.csv")
    assert finished.actor is None  # the worker, not a person
    assert (finished.after["created_count"], finished.after["rejected_count"]) == (1, 1)
    assert ImportJob.objects.get(pk=job.pk).status == "done"


def test_giving_a_user_a_role_in_the_admin_records_the_admin_and_the_groups(client):
    superuser = UserFactory(username="root", is_staff=True, is_superuser=True)
    newcomer = UserFactory(username="newcomer")
    client.force_login(superuser)

    response = client.post(
        reverse("admin:auth_user_change", args=[newcomer.pk]),
        {
            "username": "newcomer",
            "email": newcomer.email,
            "is_active": "on",
            "groups": [Group.objects.get(name=SALES).pk],
            "date_joined_0": "2026-01-01",
            "date_joined_1": "10:00:00",
        },
    )

    assert response.status_code == 302, response.content.decode()[:2000]
    change = entry("user.access")
    assert (change.actor, change.object_id) == (superuser, str(newcomer.pk))
    assert (change.before, change.after) == ({"groups": []}, {"groups": [SALES]})


def test_saving_a_user_without_changing_their_access_records_nothing(client):
    superuser = UserFactory(username="root", is_staff=True, is_superuser=True)
    client.force_login(superuser)

    client.post(
        reverse("admin:auth_user_change", args=[superuser.pk]),
        {
            "username": "root",
            "first_name": "Ro",
            "email": superuser.email,
            "is_active": "on",
            "is_staff": "on",
            "is_superuser": "on",
            "date_joined_0": "2026-01-01",
            "date_joined_1": "10:00:00",
        },
    )

    assert not AuditEntry.objects.filter(action="user.access").exists()


# --- the page ----------------------------------------------------------------------------------------


def test_only_admins_open_the_audit_log(client, rep, marketer, admin_user):
    client.force_login(rep)
    assert client.get(AUDIT).status_code == 403
    client.force_login(marketer)
    assert client.get(AUDIT).status_code == 403
    client.force_login(admin_user)
    assert client.get(AUDIT).status_code == 200
    client.logout()
    assert client.get(AUDIT)["Location"].startswith("/login/")


def test_admins_see_the_audit_log_in_the_navigation(admin_client):
    assert 'href="/audit/"' in admin_client.get("/contacts/").content.decode()


def test_reps_do_not_see_the_audit_log_in_the_navigation(rep_client):
    assert 'href="/audit/"' not in rep_client.get("/contacts/").content.decode()


def test_the_log_shows_who_did_what_with_before_and_after(admin_client, rep):
    contact = make_mql()
    handoff.lead_accept(contact_id=contact.pk, user=rep)

    page = admin_client.get(AUDIT).content.decode()

    assert "lead.accept" in page and f"contact #{contact.pk}" in page and ">rep<" in page
    assert "<del>Marketing-qualified lead</del>" in page and "<ins>Sales-qualified lead</ins>" in page


def test_the_log_names_actions_and_links_each_target_to_its_page(admin_client, rep):
    contact = make_mql()
    handoff.lead_accept(contact_id=contact.pk, user=rep)

    page = admin_client.get(AUDIT).content.decode()

    assert "Lead accepted" in page
    assert f'<a href="{reverse("leads:contact_detail", args=[contact.pk])}">{contact}</a>' in page


def test_the_log_names_reject_reasons_as_the_rep_chose_them(admin_client, rep):
    contact = make_mql()
    handoff.lead_reject(contact_id=contact.pk, user=rep, reason="bad_timing", note="")

    page = admin_client.get(AUDIT, {"action": "lead.reject"}).content.decode()

    assert "<ins>Bad timing</ins>" in page and "bad_timing" not in page


def test_the_log_can_hide_the_systems_entries(admin_client, rep):
    contact = ContactFactory()
    audit_record(actor=None, action="lead.route", target=contact, before={}, after={"owner": "rep"})
    audit_record(actor=rep, action="lead.claim", target=contact, before={}, after={"owner": "rep"})

    rows = admin_client.get(AUDIT, {"people_only": "on"}).context["rows"]

    assert [row["entry"].action for row in rows] == ["lead.claim"]
    assert len(admin_client.get(AUDIT).context["rows"]) == 2


def test_the_log_filters_by_actor_action_target_type_and_dates(admin_client, rep, marketer):
    contact = ContactFactory()
    audit_record(actor=rep, action="lead.claim", target=contact, before={}, after={"owner": rep.pk})
    audit_record(actor=marketer, action="sequence.create", target=contact, before={}, after={})
    old = audit_record(actor=marketer, action="lead.claim", target=contact)
    AuditEntry.objects.filter(pk=old.pk).update(at=timezone.now() - timedelta(days=10))
    today = timezone.now().date()

    def shown(**query) -> list[tuple[str, str]]:
        rows = admin_client.get(AUDIT, query).context["rows"]
        return [(row["entry"].actor.username, row["entry"].action) for row in rows]

    assert shown(actor=rep.pk) == [("rep", "lead.claim")]
    assert shown(action="sequence.create") == [("marketer", "sequence.create")]
    assert len(shown(object_type="contact")) == 3
    assert shown(action="lead.claim", since=str(today)) == [("rep", "lead.claim")]
    assert shown(action="lead.claim", until=str(today - timedelta(days=5))) == [("marketer", "lead.claim")]


def test_bad_filter_values_are_explained_not_a_server_error(admin_client):
    response = admin_client.get(AUDIT, {"since": "yesterday-ish", "actor": "x", "until": "2026-01-01"})

    assert response.status_code == 200
    page = response.content.decode()
    assert "Enter a valid date." in page and "Select a valid choice." in page


def test_an_inverted_date_range_is_explained(admin_client):
    response = admin_client.get(AUDIT, {"since": "2026-02-01", "until": "2026-01-01"})

    assert "The end date is before the start date." in response.content.decode()


def test_user_content_in_the_log_is_escaped(admin_client, rep):
    contact = ContactFactory()
    audit_record(
        actor=rep,
        action="lead.feedback",
        target=contact,
        after={"note": "<script>alert(1)</script>", "<b>key</b>": "<img src=x onerror=alert(1)>"},
    )

    page = admin_client.get(AUDIT).content.decode()

    assert "<script>alert(1)</script>" not in page and "<img src=x" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "&lt;b&gt;key&lt;/b&gt;" in page


def test_the_log_is_paginated_newest_first(admin_client, rep):
    contact = ContactFactory()
    for number in range(55):
        audit_record(actor=rep, action="lead.claim", target=contact, after={"n": number})

    first = admin_client.get(AUDIT).context["rows"]
    second = admin_client.get(AUDIT, {"page": 2}).context["rows"]

    assert [len(first), len(second)] == [50, 5]
    assert first[0]["entry"].after == {"n": 54} and second[-1]["entry"].after == {"n": 0}


def test_audit_values_of_any_type_are_stored_as_json(rep):
    contact = ContactFactory()

    stored = audit_record(actor=rep, action="lead.claim", target=contact, after={"at": timezone.now(), "who": rep})

    stored.refresh_from_db()
    assert isinstance(stored.after["at"], str) and stored.after["who"] == "rep"
