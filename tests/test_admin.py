"""The Django admin covers every model of the CRM, and each list page opens."""

import json

import pytest
from django.apps import apps
from django.contrib import admin
from django.forms.models import model_to_dict
from django.urls import reverse

from leads.models import Contact, LifecycleStage
from scoring.models import ContactScore
from scoring.selectors import score_history
from scoring.services import contacts_rescore, rescore_requests_drain

from .factories import AccountFactory, ContactFactory, UserFactory

CRM_APPS = ("leads", "scoring", "nurturing")


def test_every_crm_model_is_in_the_admin():
    missing = [
        model.__name__
        for model in apps.get_models()
        if model._meta.app_label in CRM_APPS and model not in admin.site._registry
    ]
    assert missing == []


@pytest.mark.django_db
def test_every_admin_list_page_opens(client):
    superuser = UserFactory(username="root-admin", is_staff=True, is_superuser=True)
    client.force_login(superuser)
    for model in admin.site._registry:
        if model._meta.app_label not in CRM_APPS:
            continue
        url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
        assert client.get(url).status_code == 200, url


def _change_form(contact: Contact, **changes) -> dict:
    """The admin's change form of a contact as a browser posts it, with these fields changed."""
    data = {name: value for name, value in model_to_dict(contact).items() if value is not None}
    data.update(attributes=json.dumps(contact.attributes), **changes)
    for prefix in ("stage_changes",):  # the stage history inline: shown, never edited
        data.update({f"{prefix}-TOTAL_FORMS": 0, f"{prefix}-INITIAL_FORMS": 0, f"{prefix}-MAX_NUM_FORMS": 1000})
    return data


@pytest.mark.django_db
def test_a_contact_edited_in_the_admin_is_rescored(client):
    client.force_login(UserFactory(username="root-admin", is_staff=True, is_superuser=True))
    contact = ContactFactory(seniority="manager", lifecycle_stage=LifecycleStage.LEAD)
    contacts_rescore(contact_ids=[contact.pk], reason="first score")
    before = ContactScore.objects.get(pk=contact.pk).total

    response = client.post(
        reverse("admin:leads_contact_change", args=[contact.pk]), _change_form(contact, seniority="vp")
    )

    assert response.status_code == 302, response.content.decode()[:2000]
    rescore_requests_drain()  # what the worker runs once the edit commits
    assert ContactScore.objects.get(pk=contact.pk).total == before + 12  # vp: 20 points, where a manager had 8
    assert score_history(contact.pk)[0].reason == "contact edited in the admin"


@pytest.mark.django_db
def test_an_account_edited_in_the_admin_rescores_its_contacts(client):
    client.force_login(UserFactory(username="root-admin", is_staff=True, is_superuser=True))
    account = AccountFactory(name="Acme", domain="acme.example", industry="", employee_count=None)
    contacts = [ContactFactory(account=account, lifecycle_stage=LifecycleStage.LEAD) for _ in range(2)]
    contacts_rescore(contact_ids=[c.pk for c in contacts], reason="first score")
    form = {name: value for name, value in model_to_dict(account).items() if value is not None}

    response = client.post(
        reverse("admin:leads_account_change", args=[account.pk]),
        {**form, "industry": "Software", "employee_count": 500},
    )

    assert response.status_code == 302, response.content.decode()[:2000]
    rescore_requests_drain()
    assert [score_history(c.pk)[0].reason for c in contacts] == ["account edited in the admin"] * 2


@pytest.mark.django_db
def test_rules_are_browsed_in_the_admin_never_edited(client):
    from scoring.models import FitRule
    from scoring.selectors import active_version
    from scoring.versions import draft_get_or_create

    client.force_login(UserFactory(username="root-admin", is_staff=True, is_superuser=True))
    active = active_version()
    draft = draft_get_or_create(scoring_model=active.scoring_model)
    rule = active.fit_rules.first()
    body = {
        "version": active.pk,
        "name": "Late",
        "field": "email",
        "operator": "between",
        "value": '["abc"]',
        "points": "0",
    }

    assert client.post(reverse("admin:scoring_fitrule_add"), body).status_code == 403
    assert client.post(reverse("admin:scoring_fitrule_change", args=[rule.pk]), body).status_code == 403
    assert client.get(reverse("admin:scoring_fitrule_change", args=[rule.pk])).status_code == 200  # read
    assert client.get(reverse("admin:scoring_modelversion_change", args=[draft.pk])).status_code == 200
    assert not FitRule.objects.filter(name="Late").exists()
    assert FitRule.objects.get(pk=rule.pk).name == rule.name
    # Versions start as drafts on the Scoring pages; runs are the record of what was scored.
    assert client.get(reverse("admin:scoring_modelversion_add")).status_code == 403
    assert client.get(reverse("admin:scoring_rescorerun_add")).status_code == 403
