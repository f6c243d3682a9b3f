"""API fuzzing: schemathesis generates requests from our OpenAPI schema (`/api/schema/`) for
every operation and sends them to the Django app through WSGI (no server), authenticated by
token as an admin and as a sales rep. Every response must be no 5xx and match the schema:
its status code documented, its body and headers as described.

Bounded for the normal test run: FUZZ_EXAMPLES examples per operation and role (default 25),
derandomised so a run is repeatable; `FUZZ_EXAMPLES=500 FUZZ_SEED=random` explores further.
"""

import itertools
import os
import re

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from rest_framework.authtoken.models import Token
from schemathesis import GenerationMode
from schemathesis.checks import negative_data_rejection, positive_data_acceptance

from config.wsgi import application
from leads.models import CustomAttribute
from leads.roles import ADMIN, SALES
from scoring.selectors import active_version
from scoring.services import contacts_rescore
from scoring.versions import draft_get_or_create

from .factories import AccountFactory, ActivityFactory, ContactFactory, UserFactory
from .leads.test_handoff import make_mql

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", 25))
DERANDOMIZE = os.environ.get("FUZZ_SEED", "fixed") != "random"
UNIQUE = itertools.count()
NOT_IN_THE_FUTURE = "2025-01-01T00:00:00Z"


@pytest.fixture
def wsgi_in_test_transaction(db):
    """Django closes the database connection at the end of each WSGI request when it is not
    in autocommit, which would break the test's transaction; its test client unhooks the
    same signal handlers for the same reason."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    # The real hasher takes a noticeable fraction of a second per user, on purpose; these
    # tests create several users per test and check access, not password storage.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def crm_data(db):
    """A few of every kind of row, so generated ids sometimes hit real objects."""
    rep = UserFactory(username="fuzz-rep", roles=[SALES])
    admin = UserFactory(username="fuzz-admin", roles=[ADMIN])
    accounts = [AccountFactory() for _ in range(3)]
    contacts = [ContactFactory(account=accounts[i % 3]) for i in range(4)]
    contacts += [make_mql(owner=rep), make_mql(), make_mql(owner=admin), make_mql()]
    activities = [ActivityFactory(contact=contact) for contact in contacts[:4]]
    contacts_rescore(contact_ids=[c.pk for c in contacts], reason="fuzzing data")
    CustomAttribute.objects.create(key="plan", label="Plan")
    active = active_version()
    draft = draft_get_or_create(scoring_model=active.scoring_model)
    return {
        "users": {"admin": admin, "rep": rep},
        "ids": {
            "accounts": [a.pk for a in accounts],
            "activities": [a.pk for a in activities],
            "contacts": [c.pk for c in contacts],
            "scoring_models": [active.scoring_model_id],
            "versions": [draft.pk, active.pk],
            "fit-rules": list(draft.fit_rules.values_list("pk", flat=True)),
            "engagement-rules": list(draft.engagement_rules.values_list("pk", flat=True)),
            "levels": list(draft.mql_levels.values_list("pk", flat=True)),
        },
    }


def _aim_at_real_rows(case, data: dict) -> None:
    """Point generated ids at real rows, so success paths are fuzzed too, not only 404s.

    Path ids: half are mapped onto existing rows, the other half stay as generated (mostly
    404). In a schema-valid request, references (owner, account, activity type, rep, custom
    attributes) always name a real row, a new activity type's key is unused and an event's
    time is not in the future: a schema cannot say which rows exist or what time it is, and
    the 400 such a request rightly gets would count as "a valid request refused".
    Schema-violating bodies are sent as generated (and must still get a 4xx, never a 5xx).
    """
    ids = data["ids"]
    params = case.path_parameters or {}
    table = next((t for t in ("accounts", "activities") if case.path.startswith(f"/api/{t}/")), "contacts")
    for name in ("id", "contact_id"):
        value = params.get(name)
        if isinstance(value, int) and value % 2 == 0:
            params[name] = ids[table][value // 2 % len(ids[table])]
    # Scoring models: the draft (and the active version) and the draft's rules of the kind in the path.
    rule_kind = next((kind for kind in ("fit-rules", "engagement-rules", "levels") if f"/{kind}/" in case.path), None)
    for name, table in (("model_id", "scoring_models"), ("version_id", "versions"), ("rule_id", rule_kind)):
        value = params.get(name)
        if table and isinstance(value, int) and value % 2 == 0:
            params[name] = ids[table][value // 2 % len(ids[table])]
    if case.meta is None or case.meta.generation.mode != GenerationMode.POSITIVE:
        return
    if (case.query or {}).get("owner") is not None and case.path == "/api/queue/":  # a rep, as on the page
        case.query["owner"] = data["users"]["rep"].pk
    if (case.query or {}).get("scoring_model") is not None:
        case.query["scoring_model"] = ids["scoring_models"][0]
    body = case.body
    events = body if isinstance(body, list) else body.get("events") if isinstance(body, dict) else None
    for item in [body, *(events or [])]:
        if isinstance(item, dict):
            _real_references(item, data)


def _real_references(item: dict, data: dict) -> None:
    real = {
        "owner": data["users"]["rep"].pk,
        "account": data["ids"]["accounts"][0],
        "contact_id": data["ids"]["contacts"][0],
        "type": "page_view",
        "rep": data["users"]["rep"].username,
        "attributes": {"plan": "gold"},
        "activity_type": "page_view",  # an engagement rule's
    }
    for name, value in real.items():
        if item.get(name) is not None:
            item[name] = value
    if isinstance(item.get("key"), str):  # a new activity type's key must be unused
        item["key"] = f"{item['key'][:50]}_{next(UNIQUE)}"
    if item.get("domain"):  # another account's domain
        item["domain"] = f"fuzz{next(UNIQUE)}.example"
    if item.get("external_id") and item.get("email"):  # an email already known under another external id
        item["email"] = f"fuzz{next(UNIQUE)}@example.com"
    if "occurred_at" in item and str(item["occurred_at"]) > NOT_IN_THE_FUTURE:  # events from the future are refused
        item["occurred_at"] = NOT_IN_THE_FUTURE


# Loaded when the module is collected: an anonymous GET of the schema touches no database.
schema = schemathesis.openapi.from_wsgi("/api/schema/", application)


FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    derandomize=DERANDOMIZE,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.filter_too_much],
)


def _call_as(role: str, case, crm_data) -> None:
    token, _ = Token.objects.get_or_create(user=crm_data["users"][role])
    _aim_at_real_rows(case, crm_data)
    case.call_and_validate(
        headers={"Authorization": f"Token {token.key}"},
        # Excluded: "a schema-violating request must be refused". DRF coerces compatible
        # scalars by design (12 for a string field is stored as "12", "true" for a boolean
        # filter is true) and ignores unknown fields and empty filters; none of that stores
        # anything a valid request could not. Schema-violating requests still run under
        # every other check: no 5xx, documented status codes, responses matching the schema.
        excluded_checks=[negative_data_rejection, *_cross_field_rules(case)],
    )


# Scoring rules, levels and settings have rules across fields that no schema states (a range
# needs numbers at both ends, a level must be reachable under the caps, grades must fall, a
# rule needs either a window or a half-life…): a schema-valid body may rightly get a 400 with
# the page's messages. Those operations still run under every other check.
CROSS_FIELD_RULES = re.compile(r"^/api/scoring/versions/\{version_id\}/(fit-rules|engagement-rules|levels)?/?")


def _cross_field_rules(case) -> list:
    writes = case.method.upper() in ("POST", "PATCH") and CROSS_FIELD_RULES.match(case.path)
    return [positive_data_acceptance] if writes and not case.path.endswith(("/preview/", "/publish/")) else []


@schema.parametrize()
@FUZZ_SETTINGS
def test_every_operation_as_an_admin_answers_within_its_schema(case, crm_data, wsgi_in_test_transaction):
    _call_as("admin", case, crm_data)


@schema.parametrize()
@FUZZ_SETTINGS
def test_every_operation_as_a_sales_rep_answers_within_its_schema(case, crm_data, wsgi_in_test_transaction):
    _call_as("rep", case, crm_data)
