"""The Django admin covers every model of the CRM, and each list page opens."""

import pytest
from django.apps import apps
from django.contrib import admin
from django.urls import reverse

from .factories import UserFactory

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
