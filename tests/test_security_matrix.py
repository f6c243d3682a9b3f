"""Security matrix: every URL pattern × anonymous / rep / another rep / marketer / admin.

The patterns are read from the URL resolver, so a new page without an expectation here
fails `test_every_url_pattern_has_an_expectation`. Each request runs in a savepoint that is
rolled back, so every role meets the same data (a rep's MQL, an unassigned MQL, a draft…).

Elsewhere, and not repeated here: tampered or wrong-purpose tracking, click and unsubscribe
tokens (tests/nurturing/test_tracking.py, test_compliance.py), merge fields escaped in email
(tests/nurturing/test_sequences.py), the audit log page (tests/leads/test_audit.py).
"""

import re

import pytest
from django.db import transaction
from django.test import Client
from django.urls import URLResolver, get_resolver
from django.utils import timezone

from leads.importing import import_job_create, import_job_set_mapping, import_run_to_end
from leads.models import (
    AuditEntry,
    CampaignCost,
    Contact,
    CustomAttribute,
    HandoffDecision,
    LeadFeedback,
    LifecycleStage,
)
from leads.roles import ADMIN, SALES
from nurturing.compliance import prepare_marketing_email, unsubscribe_url
from nurturing.models import Sequence, SequenceStep, StepVariant
from nurturing.services import email_enqueue_message
from scoring.models import ModelSuggestion, RescoreRun
from scoring.selectors import active_version
from scoring.services import contacts_rescore, draft_preview_get_or_start
from scoring.versions import draft_get_or_create

from .factories import AccountFactory, ActivityFactory, ContactFactory, UserFactory
from .leads.test_handoff import make_mql

ROLES = ("anonymous", "rep", "other_rep", "marketer", "admin")
LOGIN = "login"  # a redirect to the login page

# route pattern → (method, path template, body, expected status per role in ROLES order).
# Path templates name the objects of the `world` fixture. POST bodies are empty unless the
# check needs a valid one; a role that may act then gets the view's answer to that body.
PAGE_ANY_ROLE = (LOGIN, 200, 200, 200, 200)
PAGE_SALES = (LOGIN, 200, 200, 403, 200)
PAGE_MARKETING = (LOGIN, 403, 403, 200, 200)
POST_MARKETING_REDIRECTS = (LOGIN, 403, 403, 302, 302)
API_READ = (401, 200, 200, 200, 200)
API_WRITE_EMPTY = (401, 403, 403, 400, 400)
API_MARKETING = (401, 403, 403, 200, 200)
API_MARKETING_WRITE_EMPTY = API_WRITE_EMPTY

EXPECTATIONS = {
    "": ("get", "/", None, (LOGIN, 302, 302, 302, 302)),  # each role's landing page
    "login/": ("get", "/login/", None, (200, 200, 200, 200, 200)),
    "logout/": ("post", "/logout/", None, (302, 302, 302, 302, 302)),
    "queue/": ("get", "/queue/", None, PAGE_SALES),
    # The rep's own lead: they and the admin may act; the other rep may not (IDOR below).
    r"^leads/(?P<pk>\d+)/(?P<action>accept|reject|claim|feedback|outcome|reassign)/$": (
        "post",
        "/leads/{lead}/accept/",
        None,
        (LOGIN, 302, 403, 403, 302),
    ),
    "contacts/": ("get", "/contacts/", None, PAGE_ANY_ROLE),
    "contacts/<int:pk>/": ("get", "/contacts/{lead}/", None, PAGE_ANY_ROLE),
    "accounts/": ("get", "/accounts/", None, PAGE_ANY_ROLE),
    "accounts/<int:pk>/": ("get", "/accounts/{account}/", None, PAGE_ANY_ROLE),
    "activity-types/": ("post", "/activity-types/", {}, (LOGIN, 403, 403, 200, 200)),
    "imports/": ("get", "/imports/", None, PAGE_MARKETING),
    "imports/new/": ("get", "/imports/new/", None, PAGE_MARKETING),
    "imports/<int:pk>/": ("get", "/imports/{import_job}/", None, PAGE_MARKETING),
    "imports/<int:pk>/mapping/": ("get", "/imports/{import_job}/mapping/", None, POST_MARKETING_REDIRECTS),
    "imports/<int:pk>/start/": ("post", "/imports/{import_job}/start/", None, POST_MARKETING_REDIRECTS),
    "imports/<int:pk>/progress/": ("get", "/imports/{import_job}/progress/", None, PAGE_MARKETING),
    "imports/<int:pk>/rejected.csv": ("get", "/imports/{import_job}/rejected.csv", None, PAGE_MARKETING),
    "audit/": ("get", "/audit/", None, (LOGIN, 403, 403, 403, 200)),
    "scoring/": ("get", "/scoring/", None, PAGE_MARKETING),
    "scoring/models/<int:model_pk>/draft/": (
        "post",
        "/scoring/models/{scoring_model}/draft/",
        None,
        POST_MARKETING_REDIRECTS,
    ),
    "scoring/versions/<int:pk>/": ("get", "/scoring/versions/{draft}/", None, PAGE_MARKETING),
    # An invalid form goes back to the version page with the errors as messages.
    "scoring/versions/<int:pk>/settings/": (
        "post",
        "/scoring/versions/{draft}/settings/",
        {},
        POST_MARKETING_REDIRECTS,
    ),
    "scoring/versions/<int:pk>/<rulekind:kind>/new/": (
        "get",
        "/scoring/versions/{draft}/fit/new/",
        None,
        PAGE_MARKETING,
    ),
    "scoring/versions/<int:pk>/<rulekind:kind>/<int:rule_pk>/": (
        "get",
        "/scoring/versions/{draft}/fit/{fit_rule}/",
        None,
        PAGE_MARKETING,
    ),
    "scoring/versions/<int:pk>/<rulekind:kind>/<int:rule_pk>/delete/": (
        "post",
        "/scoring/versions/{draft}/fit/{fit_rule}/delete/",
        None,
        POST_MARKETING_REDIRECTS,
    ),
    "scoring/versions/<int:pk>/preview/": ("get", "/scoring/versions/{draft}/preview/", None, PAGE_MARKETING),
    "scoring/versions/<int:pk>/preview/<int:preview_pk>/progress/": (
        "get",
        "/scoring/versions/{draft}/preview/{preview}/progress/",
        None,
        PAGE_MARKETING,
    ),
    "scoring/versions/<int:pk>/publish/": (
        "post",
        "/scoring/versions/{draft}/publish/",
        None,
        POST_MARKETING_REDIRECTS,
    ),
    "scoring/compare/": ("get", "/scoring/compare/?old={active}&new={draft}", None, PAGE_MARKETING),
    "scoring/runs/<int:pk>/": ("get", "/scoring/runs/{run}/", None, PAGE_MARKETING),
    "scoring/runs/<int:pk>/progress/": ("get", "/scoring/runs/{run}/progress/", None, PAGE_MARKETING),
    "scoring/versions/<int:pk>/discard/": (
        "post",
        "/scoring/versions/{draft}/discard/",
        None,
        POST_MARKETING_REDIRECTS,
    ),
    "scoring/versions/<int:pk>/performance/": (
        "get",
        "/scoring/versions/{active}/performance/",
        None,
        PAGE_MARKETING,
    ),
    "scoring/models/<int:model_pk>/suggest/": ("get", "/scoring/models/{scoring_model}/suggest/", None, PAGE_MARKETING),
    "scoring/suggestions/<int:pk>/": ("get", "/scoring/suggestions/{suggestion}/", None, PAGE_MARKETING),
    "scoring/suggestions/<int:pk>/progress/": (
        "get",
        "/scoring/suggestions/{suggestion}/progress/",
        None,
        PAGE_MARKETING,
    ),
    "reports/": ("get", "/reports/", None, PAGE_MARKETING),
    "reports/<slug:table>.csv": ("get", "/reports/funnel.csv", None, PAGE_MARKETING),
    "reports/costs/": ("get", "/reports/costs/", None, PAGE_MARKETING),
    "reports/costs/<int:pk>/edit/": ("get", "/reports/costs/{campaign_cost}/edit/", None, PAGE_MARKETING),
    "reports/costs/<int:pk>/delete/": (
        "post",
        "/reports/costs/{campaign_cost}/delete/",
        None,
        POST_MARKETING_REDIRECTS,
    ),
    "sequences/": ("get", "/sequences/", None, PAGE_MARKETING),
    "sequences/new/": ("get", "/sequences/new/", None, PAGE_MARKETING),
    "sequences/<int:pk>/": ("get", "/sequences/{sequence}/", None, PAGE_MARKETING),
    "sequences/<int:pk>/edit/": ("get", "/sequences/{sequence}/edit/", None, PAGE_MARKETING),
    r"sequences/^(?P<pk>\d+)/status/(?P<status>active|paused|draft)/$": (
        "post",
        "/sequences/{sequence}/status/paused/",
        None,
        POST_MARKETING_REDIRECTS,
    ),
    "sequences/<int:pk>/steps/new/": ("get", "/sequences/{sequence}/steps/new/", None, PAGE_MARKETING),
    "sequences/<int:pk>/steps/<int:step_pk>/": ("get", "/sequences/{sequence}/steps/{step}/", None, PAGE_MARKETING),
    "sequences/<int:pk>/steps/<int:step_pk>/delete/": (
        "post",
        "/sequences/{sequence}/steps/{step}/delete/",
        None,
        POST_MARKETING_REDIRECTS,
    ),
    "sequences/<int:pk>/steps/<int:step_pk>/preview/": (
        "get",
        "/sequences/{sequence}/steps/{step}/preview/",
        None,
        PAGE_MARKETING,
    ),
    "sequences/<int:pk>/steps/<int:step_pk>/send-test/": (
        "post",
        "/sequences/{sequence}/steps/{step}/send-test/",
        None,
        POST_MARKETING_REDIRECTS,
    ),
    "sequences/<int:pk>/steps/<int:step_pk>/variants/new/": (
        "get",
        "/sequences/{sequence}/steps/{step}/variants/new/",
        None,
        PAGE_MARKETING,
    ),
    "sequences/<int:pk>/steps/<int:step_pk>/variants/<int:variant_pk>/": (
        "get",
        "/sequences/{sequence}/steps/{step}/variants/{variant}/",
        None,
        PAGE_MARKETING,
    ),
    "sequences/<int:pk>/steps/<int:step_pk>/variants/<int:variant_pk>/delete/": (
        "post",
        "/sequences/{sequence}/steps/{step}/variants/{variant}/delete/",
        None,
        POST_MARKETING_REDIRECTS,
    ),
    "sequences/enrol/<int:pk>/": (
        "post",
        "/sequences/enrol/{lead}/",
        {"sequence": "{sequence}"},
        POST_MARKETING_REDIRECTS,
    ),
    # Reached from email by people without an account: the signed token is the authority.
    "e/u/<str:token>/": ("get", "{unsubscribe_path}", None, (200, 200, 200, 200, 200)),
    "e/o/<str:token>/": ("get", "{open_path}", None, (200, 200, 200, 200, 200)),
    "e/c/<str:token>/": ("get", "{click_path}", None, (302, 302, 302, 302, 302)),
    "e/feedback/": ("post", "/e/feedback/", None, (403, 403, 403, 403, 403)),  # unsigned: refused
    # The API: anonymous gets 401; any role reads; writes need Marketing or Admin.
    "api/activities/bulk/": ("post", "/api/activities/bulk/", {}, API_WRITE_EMPTY),
    "api/queue/": ("get", "/api/queue/", None, (401, 200, 200, 403, 200)),
    "api/leads/<int:pk>/accept/": ("post", "/api/leads/{lead}/accept/", {}, (401, 200, 403, 403, 200)),
    "api/leads/<int:pk>/reject/": (
        "post",
        "/api/leads/{lead}/reject/",
        {"reason": "bad_timing"},
        (401, 200, 403, 403, 200),
    ),
    "api/leads/<int:pk>/claim/": ("post", "/api/leads/{unassigned_lead}/claim/", {}, (401, 200, 200, 403, 200)),
    "api/leads/<int:pk>/feedback/": (
        "post",
        "/api/leads/{lead}/feedback/",
        {"rating": "good"},
        (401, 200, 403, 403, 200),
    ),
    "api/leads/<int:pk>/outcomes/": (
        "post",
        "/api/leads/{lead}/outcomes/",
        {"kind": "lost"},
        (401, 200, 403, 403, 200),
    ),
    "api/leads/<int:pk>/reassign/": ("post", "/api/leads/{lead}/reassign/", {"rep": "rep2"}, (401, 403, 403, 403, 200)),
    "api/^accounts/$": ("post", "/api/accounts/", {}, API_WRITE_EMPTY),
    r"api/^accounts\.(?P<format>[a-z0-9]+)/?$": ("get", "/api/accounts.json", None, API_READ),
    "api/^accounts/(?P<pk>[^/.]+)/$": ("patch", "/api/accounts/{account}/", {}, (401, 403, 403, 200, 200)),
    r"api/^accounts/(?P<pk>[^/.]+)\.(?P<format>[a-z0-9]+)/?$": ("get", "/api/accounts/{account}.json", None, API_READ),
    "api/^contacts/$": ("post", "/api/contacts/", {}, API_WRITE_EMPTY),
    r"api/^contacts\.(?P<format>[a-z0-9]+)/?$": ("get", "/api/contacts.json", None, API_READ),
    "api/^contacts/(?P<pk>[^/.]+)/$": ("patch", "/api/contacts/{lead}/", {}, (401, 403, 403, 200, 200)),
    r"api/^contacts/(?P<pk>[^/.]+)\.(?P<format>[a-z0-9]+)/?$": ("get", "/api/contacts/{lead}.json", None, API_READ),
    "api/^activity-types/$": ("post", "/api/activity-types/", {}, API_WRITE_EMPTY),
    r"api/^activity-types\.(?P<format>[a-z0-9]+)/?$": ("get", "/api/activity-types.json", None, API_READ),
    "api/^activities/$": ("post", "/api/activities/", {}, API_WRITE_EMPTY),
    r"api/^activities\.(?P<format>[a-z0-9]+)/?$": ("get", "/api/activities.json", None, API_READ),
    "api/^activities/(?P<pk>[^/.]+)/$": ("get", "/api/activities/{activity}/", None, API_READ),
    r"api/^activities/(?P<pk>[^/.]+)\.(?P<format>[a-z0-9]+)/?$": (
        "get",
        "/api/activities/{activity}.json",
        None,
        API_READ,
    ),
    "api/": ("get", "/api/", None, API_READ),
    "api/<drf_format_suffix:format>": ("get", "/api/.json", None, API_READ),
    "api/contacts/<int:contact_id>/score/": ("get", "/api/contacts/{lead}/score/", None, API_READ),
    "api/contacts/<int:contact_id>/score-history/": ("get", "/api/contacts/{lead}/score-history/", None, API_READ),
    # Scoring models over the API: Marketing and Admin only, as the scoring pages.
    "api/scoring/models/": ("get", "/api/scoring/models/", None, API_MARKETING),
    "api/scoring/models/<int:model_id>/draft/": (
        "post",
        "/api/scoring/models/{scoring_model}/draft/",
        None,
        API_MARKETING,
    ),
    "api/scoring/versions/": ("get", "/api/scoring/versions/", None, API_MARKETING),
    "api/scoring/versions/<int:version_id>/": ("patch", "/api/scoring/versions/{draft}/", {}, API_MARKETING),
    "api/scoring/versions/<int:version_id>/diff/": ("get", "/api/scoring/versions/{draft}/diff/", None, API_MARKETING),
    "api/scoring/versions/<int:version_id>/fit-rules/": (
        "post",
        "/api/scoring/versions/{draft}/fit-rules/",
        {},
        API_MARKETING_WRITE_EMPTY,
    ),
    "api/scoring/versions/<int:version_id>/fit-rules/<int:rule_id>/": (
        "patch",
        "/api/scoring/versions/{draft}/fit-rules/{fit_rule}/",
        {},
        API_MARKETING,
    ),
    "api/scoring/versions/<int:version_id>/engagement-rules/": (
        "post",
        "/api/scoring/versions/{draft}/engagement-rules/",
        {},
        API_MARKETING_WRITE_EMPTY,
    ),
    "api/scoring/versions/<int:version_id>/engagement-rules/<int:rule_id>/": (
        "patch",
        "/api/scoring/versions/{draft}/engagement-rules/{engagement_rule}/",
        {},
        API_MARKETING,
    ),
    "api/scoring/versions/<int:version_id>/levels/": (
        "post",
        "/api/scoring/versions/{draft}/levels/",
        {},
        API_MARKETING_WRITE_EMPTY,
    ),
    "api/scoring/versions/<int:version_id>/levels/<int:rule_id>/": (
        "patch",
        "/api/scoring/versions/{draft}/levels/{level}/",
        {},
        API_MARKETING,
    ),
    "api/scoring/versions/<int:version_id>/preview/": (
        "get",
        "/api/scoring/versions/{draft}/preview/",
        None,
        API_MARKETING,
    ),
    "api/scoring/versions/<int:version_id>/publish/": (
        "post",
        "/api/scoring/versions/{draft}/publish/",
        None,
        (401, 403, 403, 202, 202),
    ),
    "api/scoring/runs/": ("get", "/api/scoring/runs/", None, API_MARKETING),
    "api/scoring/runs/<int:run_id>/": ("get", "/api/scoring/runs/{run}/", None, API_MARKETING),
    # The schema and its docs describe the API to anyone; every operation still checks roles.
    "api/schema/": ("get", "/api/schema/", None, (200, 200, 200, 200, 200)),
    "api/docs/": ("get", "/api/docs/", None, (200, 200, 200, 200, 200)),
    # Django's admin, its own gate: staff only (the admin role's users are staff).
    "admin/": ("get", "/admin/leads/contact/", None, (302, 302, 302, 302, 200)),
}


def url_patterns(patterns=None, prefix=""):
    """Every route of the site as written in the URLconfs; the admin's counted as one."""
    for pattern in get_resolver().url_patterns if patterns is None else patterns:
        route = prefix + str(pattern.pattern)
        if route == "admin/":
            yield route
        elif isinstance(pattern, URLResolver):
            yield from url_patterns(pattern.url_patterns, route)
        else:
            yield route


def test_every_url_pattern_has_an_expectation():
    routes = set(url_patterns())

    assert sorted(routes - EXPECTATIONS.keys()) == [], "new URL patterns need a row in EXPECTATIONS"
    assert sorted(EXPECTATIONS.keys() - routes) == [], "rows for URL patterns that no longer exist"


# --- the world every request meets ---------------------------------------------------------------


def _marketing_email(contact):
    email = email_enqueue_message(
        key="matrix:1",
        to=contact.email,
        subject="A guide",
        body_text="Hello",
        body_html='<p><a href="https://docs.example/guide">Guide</a></p>',
        contact=contact,
        marketing=True,
    )
    prepare_marketing_email(email)
    return email


def _path_starting(html: str, prefix: str) -> str:
    for part in html.replace('src="', 'href="').split('href="')[1:]:
        path = part.split('"', 1)[0].split("://", 1)[-1].split("/", 1)[-1]
        if f"/{path}".startswith(prefix):
            return f"/{path}"
    raise AssertionError(f"no {prefix} link in the email")


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    # The real hasher takes a noticeable fraction of a second per user, on purpose; these
    # tests create several users per test and check access, not password storage.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def users(db):
    admin = UserFactory(username="admin", roles=[ADMIN], is_staff=True, is_superuser=True)
    return {
        "anonymous": None,
        "rep": UserFactory(username="rep", roles=[SALES]),
        "other_rep": UserFactory(username="rep2", roles=[SALES]),
        "marketer": UserFactory(username="marketer", roles=["Marketing"]),
        "admin": admin,
    }


@pytest.fixture
def world(users):
    rep = users["rep"]
    account = AccountFactory()
    lead = make_mql(owner=rep, account=account)
    unassigned = make_mql(account=account)
    contacts_rescore(contact_ids=[lead.pk, unassigned.pk], reason="matrix")
    activity = ActivityFactory(contact=lead)
    job = import_job_create(filename="people.csv", content="Email\nann@a.example\nbad\n", created_by=users["marketer"])
    import_job_set_mapping(job=job, mapping={"columns": {"Email": {"to": "email"}}})
    import_run_to_end(job_id=job.pk)
    active = active_version()
    draft = draft_get_or_create(scoring_model=active.scoring_model, user=users["marketer"])
    run = RescoreRun.objects.create(version=active, reason="publish", as_of=timezone.localdate())
    preview = draft_preview_get_or_start(version=draft, user=users["marketer"])
    sequence = Sequence.objects.create(name="Welcome", status="active")
    step = SequenceStep.objects.create(sequence=sequence, position=1, subject="Hi", body="Hello")
    variant = StepVariant.objects.create(step=step, label="B", subject="Hey", body="Hello")
    email = _marketing_email(lead)
    suggestion = ModelSuggestion.objects.create(
        scoring_model=active.scoring_model, base_version=active, target_value="0.8", created_by=users["marketer"]
    )
    cost = CampaignCost.objects.create(
        campaign="spring", period_start="2026-03-01", period_end="2026-03-31", amount="1200.00", currency="EUR"
    )
    return {
        "suggestion": suggestion.pk,
        "campaign_cost": cost.pk,
        "lead": lead.pk,
        "unassigned_lead": unassigned.pk,
        "account": account.pk,
        "activity": activity.pk,
        "import_job": job.pk,
        "scoring_model": active.scoring_model.pk,
        "active": active.pk,
        "draft": draft.pk,
        "fit_rule": draft.fit_rules.first().pk,
        "engagement_rule": draft.engagement_rules.first().pk,
        "level": draft.mql_levels.first().pk,
        "preview": preview.pk,
        "run": run.pk,
        "sequence": sequence.pk,
        "step": step.pk,
        "variant": variant.pk,
        "unsubscribe_path": "/"
        + unsubscribe_url(contact_id=lead.pk, email_id=email.pk).split("://", 1)[1].split("/", 1)[1],
        "open_path": _path_starting(email.body_html, "/e/o/"),
        "click_path": _path_starting(email.body_html, "/e/c/"),
    }


def _request(client: Client, method: str, path: str, body, api: bool):
    if api:
        return (
            getattr(client, method)(path, body, content_type="application/json")
            if body is not None
            else getattr(client, method)(path)
        )
    return getattr(client, method)(path, body or {})


def _rolled_back(send):
    """Send a request inside a savepoint and undo whatever it wrote."""
    with transaction.atomic():
        response = send()
        transaction.set_rollback(True)
    return response


@pytest.mark.parametrize("route", sorted(EXPECTATIONS))
def test_each_role_gets_the_expected_answer(route, users, world):
    method, template, body, expected = EXPECTATIONS[route]
    path = template.format(**world)
    body = {key: value.format(**world) for key, value in body.items()} if body else body
    api = path.startswith("/api/") and not path.startswith(("/api/schema/", "/api/docs/"))
    answers = []
    for role in ROLES:
        client = Client()
        if users[role]:
            client.force_login(users[role])
        response = _rolled_back(lambda client=client: _request(client, method, path, body, api))
        login_redirect = response.status_code == 302 and response["Location"].startswith("/login/?next=")
        answers.append(LOGIN if login_redirect else response.status_code)

    assert dict(zip(ROLES, answers, strict=True)) == dict(zip(ROLES, expected, strict=True)), f"{method} {path}"


# --- another rep's leads ------------------------------------------------------------------------------


def _lead_state(pk: int) -> tuple:
    contact = Contact.objects.get(pk=pk)
    return (
        contact.lifecycle_stage,
        contact.owner_id,
        HandoffDecision.objects.filter(contact_id=pk).count(),
        LeadFeedback.objects.filter(contact_id=pk).count(),
        AuditEntry.objects.filter(object_id=str(pk)).count(),
    )


IDOR_PAGE = [
    ("accept", {}),
    ("reject", {"lead{pk}-reason": "bad_timing"}),
    ("feedback", {"rating": "bad", "reason": "bad_data"}),
    ("claim", {}),
    ("outcome", {"kind": "lost"}),
]


@pytest.mark.parametrize(("action", "form"), IDOR_PAGE)
def test_a_rep_cannot_act_on_another_reps_lead_from_the_page(action, form, users, world):
    client = Client()
    client.force_login(users["other_rep"])
    pk = world["lead"]
    before = _lead_state(pk)

    response = client.post(f"/leads/{pk}/{action}/", {k.format(pk=pk): v for k, v in form.items()})

    assert response.status_code == 403
    assert _lead_state(pk) == before


@pytest.mark.parametrize(
    ("action", "body"),
    [
        ("accept", {}),
        ("reject", {"reason": "bad_timing"}),
        ("feedback", {"rating": "bad"}),
        ("claim", {}),
        ("outcomes", {"kind": "lost"}),
        ("reassign", {"rep": "rep2"}),
    ],
)
def test_a_rep_cannot_act_on_another_reps_lead_through_the_api(action, body, users, world):
    client = Client()
    client.force_login(users["other_rep"])
    pk = world["lead"]
    before = _lead_state(pk)

    response = client.post(f"/api/leads/{pk}/{action}/", body, content_type="application/json")

    assert response.status_code in (403, 404)
    assert _lead_state(pk) == before
    assert Contact.objects.get(pk=pk).lifecycle_stage == LifecycleStage.MQL


# --- CSRF ---------------------------------------------------------------------------------------------------

# Signed by something other than a session, by design: RFC 8058 one-click unsubscribe comes
# without cookies, the mail provider's reports carry an HMAC signature.
CSRF_EXEMPT = {"e/u/<str:token>/", "e/feedback/"}
STATE_CHANGING = sorted(
    route
    for route, (method, *_rest) in EXPECTATIONS.items()
    if method in ("post", "patch") and route not in CSRF_EXEMPT
)


@pytest.mark.parametrize("route", STATE_CHANGING)
def test_a_state_changing_request_without_a_csrf_token_is_refused(route, users, world):
    """A logged-in admin (who may do everything) whose browser is made to post from another
    site: no CSRF token, so 403, and nothing written."""
    method, template, body, _expected = EXPECTATIONS[route]
    path = template.format(**world)
    body = {key: value.format(**world) for key, value in body.items()} if body else body
    client = Client(enforce_csrf_checks=True)
    client.force_login(users["admin"])
    audit_entries, lead = AuditEntry.objects.count(), _lead_state(world["lead"])

    response = _request(client, method, path, body, api=path.startswith("/api/"))

    assert response.status_code == 403, f"{method} {path}"
    assert (AuditEntry.objects.count(), _lead_state(world["lead"])) == (audit_entries, lead)


def test_the_login_form_needs_its_csrf_token(users):
    response = Client(enforce_csrf_checks=True).post("/login/", {"username": "rep", "password": "pass-for-tests-1"})

    assert response.status_code == 403


def test_the_api_with_a_token_needs_no_csrf_token(users, world):
    """Tokens are not sent by browsers on their own, so token requests are not CSRF-able."""
    from rest_framework.authtoken.models import Token

    token = Token.objects.create(user=users["marketer"])
    client = Client(enforce_csrf_checks=True)

    response = client.patch(
        f"/api/accounts/{world['account']}/",
        {"industry": "Robotics"},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Token {token.key}",
    )

    assert response.status_code == 200


# --- open redirects ------------------------------------------------------------------------------------------

OFF_SITE = [
    "//evil.example",
    "http:999999999",
    "https://evil.example",
    "https://evil.example/login/",
    "/\\evil.example",
]


def _same_site(location: str) -> bool:
    return location.startswith("/") and not location.startswith(("//", "/\\"))


@pytest.mark.parametrize("target", OFF_SITE)
def test_login_never_redirects_off_site(target, users):
    client = Client()

    response = client.post(f"/login/?next={target}", {"username": "rep", "password": "pass-for-tests-1"})

    assert response.status_code == 302 and _same_site(response["Location"]), response["Location"]


@pytest.mark.parametrize("target", OFF_SITE)
def test_a_lead_action_never_redirects_off_site(target, users, world):
    client = Client()
    client.force_login(users["rep"])

    response = client.post(f"/leads/{world['lead']}/feedback/", {"rating": "good", "next": target})

    assert response.status_code == 302 and _same_site(response["Location"]), response["Location"]


@pytest.mark.parametrize("target", OFF_SITE)
def test_a_click_link_goes_only_where_the_email_said(target, world):
    response = Client().get(world["click_path"], {"next": target, "url": target, "to": target})

    assert response.status_code == 302 and response["Location"] == "https://docs.example/guide"


@pytest.mark.parametrize("target", OFF_SITE)
def test_a_click_link_naming_another_target_in_its_path_is_not_found(target, world):
    response = Client().get(f"/e/c/{target.replace('/', '')}/")

    assert response.status_code == 404


# --- HTML in people's data is shown as text ---------------------------------------------------------------

SCRIPT = "<script>alert('x')</script>"
IMG = '<img src=x onerror="alert(1)">'


def test_html_in_contact_names_and_attributes_is_escaped_on_every_page_showing_them(users):
    CustomAttribute.objects.create(key="plan", label=f"Plan {IMG}")
    account = AccountFactory(name=f"Acme {SCRIPT}")
    contact = make_mql(owner=users["rep"], first_name=SCRIPT, last_name=IMG, job_title=SCRIPT, account=account)
    Contact.objects.filter(pk=contact.pk).update(attributes={"plan": IMG, IMG: SCRIPT})
    contacts_rescore(contact_ids=[contact.pk], reason="matrix")
    client = Client()
    client.force_login(users["admin"])

    for path in ["/queue/", "/contacts/", f"/contacts/{contact.pk}/", "/accounts/", f"/accounts/{account.pk}/"]:
        page = client.get(path).content.decode()
        assert SCRIPT not in page and IMG not in page, path
        assert "&lt;script&gt;" in page, path


def test_html_in_email_content_is_sanitised_in_the_preview(users):
    sequence = Sequence.objects.create(name="XSS")
    step = SequenceStep.objects.create(
        sequence=sequence, position=1, subject=f"Hi {SCRIPT}", body=f"Hello {SCRIPT} {IMG} [x](javascript:alert(1))"
    )
    ContactFactory(first_name=SCRIPT)
    client = Client()
    client.force_login(users["marketer"])

    page = client.get(f"/sequences/{sequence.pk}/steps/{step.pk}/preview/").content.decode()

    assert SCRIPT not in page and "&lt;script&gt;" in page  # shown as text, never run
    assert not re.search(r"<[^>]*\bonerror\b", page)  # no tag keeps an event handler
    assert not re.search(r"<a[^>]*javascript:", page)


# --- hostile input is answered, never a server error ---------------------------------------------------

HOSTILE_QUERIES = [
    "/contacts/?q=a%00b",
    "/accounts/?q=a%00b",
    "/queue/?q=a%00b&account=%00&waiting_hours=1e30",
    "/audit/?action=%00&since=0001-01-01",
    "/api/contacts/?search=a%00b&created_after=0001-01-01T00:00:00%2B20:00",
    "/api/activities/?occurred_before=2020-01-01T00:00:00-23:59",
    "/api/queue/?waiting_hours=1e30",
]


@pytest.mark.parametrize("path", HOSTILE_QUERIES)
def test_hostile_query_strings_get_an_answer_not_a_server_error(path, users):
    """NUL characters (PostgreSQL refuses them), time-zone offsets beyond ±15:59 (PostgreSQL
    refuses them too) and numbers no date arithmetic can hold."""
    client = Client()
    client.force_login(users["admin"])

    assert client.get(path).status_code in (200, 400)


# --- login brute force -----------------------------------------------------------------------------------


def _login(client: Client, username: str, password: str, address: str = "203.0.113.7"):
    return client.post("/login/", {"username": username, "password": password}, REMOTE_ADDR=address)


def test_five_wrong_passwords_lock_that_username_from_that_address(users, settings):
    client = Client()
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert _login(client, "rep", "wrong").status_code == 200  # the form again, with its error

    locked = _login(client, "rep", "wrong")
    right_password_too = _login(client, "rep", "pass-for-tests-1")

    assert locked.status_code == right_password_too.status_code == 429
    assert "Too many failed logins" in right_password_too.content.decode()
    assert "_auth_user_id" not in client.session


def test_a_lockout_does_not_lock_out_the_same_user_elsewhere_or_others_here(users, settings):
    for _ in range(settings.AXES_FAILURE_LIMIT):
        _login(Client(), "rep", "wrong")

    assert _login(Client(), "rep", "pass-for-tests-1", address="198.51.100.9").status_code == 302
    assert _login(Client(), "marketer", "pass-for-tests-1").status_code == 302


def test_a_successful_login_resets_the_count(users, settings):
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        _login(Client(), "rep", "wrong")
    assert _login(Client(), "rep", "pass-for-tests-1").status_code == 302

    assert _login(Client(), "rep", "wrong").status_code == 200  # counting starts again


def test_failed_attempts_are_counted_in_the_database(users):
    """Every web process on every machine sees the same count."""
    from axes.models import AccessAttempt

    _login(Client(), "rep", "wrong")

    assert AccessAttempt.objects.get(username="rep").failures_since_start == 1
