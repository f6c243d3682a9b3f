"""Hand-off of MQLs to sales: routing, accept, reject, claim, feedback, outcomes, SLA."""

import json
import re
import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from leads import handoff
from leads.models import (
    Account,
    AuditEntry,
    Contact,
    HandoffDecision,
    LeadFeedback,
    LifecycleStage,
    Outcome,
    RoutingRule,
)
from leads.roles import MANAGER, SALES
from leads.services import contact_set_stage
from nurturing.models import OutboundEmail
from nurturing.services import outbox_send_due

from ..factories import ContactFactory, UserFactory


def make_mql(owner=None, **fields) -> Contact:
    contact = ContactFactory(owner=owner, **fields)
    contact_set_stage(contact=contact, to_stage=LifecycleStage.MQL, rule="test")
    Contact.objects.filter(pk=contact.pk).update(mql_at=timezone.now())
    contact.refresh_from_db()
    return contact


@pytest.mark.django_db
class TestAcceptAndReject:
    def test_accepting_makes_the_rep_own_an_sql_and_records_the_time_to_hand_off(self, rep):
        contact = make_mql()
        Contact.objects.filter(pk=contact.pk).update(mql_at=timezone.now() - timedelta(hours=3))

        decision = handoff.lead_accept(contact_id=contact.pk, user=rep)

        contact.refresh_from_db()
        assert (contact.lifecycle_stage, contact.owner) == (LifecycleStage.SQL, rep)
        assert timedelta(hours=3) <= decision.time_to_handoff < timedelta(hours=3, minutes=1)
        assert AuditEntry.objects.filter(action="lead.accept", object_id=str(contact.pk)).count() == 1

    @pytest.mark.parametrize(
        ("reason", "stage"),
        [
            ("bad_timing", LifecycleStage.RECYCLED),
            ("no_budget", LifecycleStage.RECYCLED),
            ("not_a_fit", LifecycleStage.DISQUALIFIED),
            ("competitor", LifecycleStage.DISQUALIFIED),
        ],
    )
    def test_rejecting_recycles_or_disqualifies_by_reason(self, rep, reason, stage):
        contact = make_mql(owner=rep)

        handoff.lead_reject(contact_id=contact.pk, user=rep, reason=reason, note="called twice")

        contact.refresh_from_db()
        assert contact.lifecycle_stage == stage and contact.owner is None
        assert contact.stage_changes.first().reason.endswith("called twice")

    def test_other_needs_a_note(self, rep):
        contact = make_mql()
        with pytest.raises(handoff.HandoffError, match="Other"):
            handoff.lead_reject(contact_id=contact.pk, user=rep, reason="other", note=" ")
        contact.refresh_from_db()
        assert contact.lifecycle_stage == LifecycleStage.MQL

    def test_a_lead_already_handled_cannot_be_handled_again(self, rep):
        contact = make_mql()
        handoff.lead_accept(contact_id=contact.pk, user=rep)

        with pytest.raises(handoff.HandoffError, match="already handled"):
            handoff.lead_reject(contact_id=contact.pk, user=rep, reason="bad_timing")
        assert HandoffDecision.objects.filter(contact=contact).count() == 1

    def test_a_rep_cannot_act_on_another_reps_lead_but_a_manager_can(self, rep, other_rep):
        contact = make_mql(owner=other_rep)
        with pytest.raises(handoff.NotAllowed):
            handoff.lead_accept(contact_id=contact.pk, user=rep)

        manager = UserFactory(username="manager", roles=[MANAGER])
        handoff.lead_accept(contact_id=contact.pk, user=manager)
        contact.refresh_from_db()
        assert contact.lifecycle_stage == LifecycleStage.SQL

    def test_feedback_and_outcomes_are_recorded_on_accepted_leads(self, rep):
        contact = make_mql()
        handoff.lead_accept(contact_id=contact.pk, user=rep)

        handoff.feedback_record(contact_id=contact.pk, user=rep, rating="good", note="great call")
        handoff.outcome_record(contact_id=contact.pk, user=rep, kind="opportunity")
        handoff.outcome_record(contact_id=contact.pk, user=rep, kind="won")

        contact.refresh_from_db()
        assert contact.lifecycle_stage == LifecycleStage.CUSTOMER
        assert LeadFeedback.objects.get(contact=contact).rating == "good"
        assert list(
            Outcome.objects.filter(contact=contact, source="sales").values_list("kind", flat=True).order_by("id")
        ) == ["opportunity", "won"]


@pytest.mark.django_db
class TestRouting:
    def test_new_mqls_go_round_robin_and_each_rep_is_emailed(self, rep, other_rep, mailoutbox):
        first, second = ContactFactory(), ContactFactory()
        for contact in (first, second):
            contact_set_stage(contact=contact, to_stage=LifecycleStage.MQL)
            handoff.mql_entered(contact=contact, at=timezone.now())

        owners = {Contact.objects.get(pk=c.pk).owner for c in (first, second)}
        assert owners == {rep, other_rep}
        assert OutboundEmail.objects.count() == 2
        assert outbox_send_due() == 2
        assert sorted(m.to[0] for m in mailoutbox) == sorted([rep.email, other_rep.email])
        assert "New MQL for you" in mailoutbox[0].subject

    def test_a_batch_of_new_mqls_is_shared_round_robin_and_the_rotation_goes_on_after_it(self, rep, other_rep):
        batch = [ContactFactory() for _ in range(5)]
        later = ContactFactory()
        stages = {contact.pk: contact.lifecycle_stage for contact in batch}
        for contact in batch:
            contact_set_stage(contact=contact, to_stage=LifecycleStage.MQL)

        routed = handoff.mqls_entered(from_stages=stages, at=timezone.now())
        contact_set_stage(contact=later, to_stage=LifecycleStage.MQL)
        handoff.mql_entered(contact=later, at=timezone.now())

        owners = [Contact.objects.get(pk=c.pk).owner for c in batch]
        assert owners == [rep, other_rep, rep, other_rep, rep]
        assert routed == {c.pk: owner.pk for c, owner in zip(batch, owners, strict=True)}
        assert Contact.objects.get(pk=later.pk).owner == other_rep  # whose turn it was after the batch
        entries = AuditEntry.objects.filter(action="lead.route")
        assert {e.object_id: e.after["owner"] for e in entries} == {
            str(c.pk): owner.username for c, owner in zip([*batch, later], [*owners, other_rep], strict=True)
        }
        assert OutboundEmail.objects.filter(to=rep.email).count() == 3

    def test_a_rescores_batch_is_routed_in_as_many_queries_however_many_leads(self, rep, other_rep):
        owned = Account.objects.create(name="Owned", domain="owned.example", owner=other_rep)
        RoutingRule.objects.create(field="country", value="Spain", rep=rep)  # read for every lead, matching none

        def route(count: int) -> tuple[int, dict]:
            batch = [ContactFactory(account=owned if n % 2 else None, country="France") for n in range(count)]
            stages = {contact.pk: contact.lifecycle_stage for contact in batch}
            for contact in batch:
                contact_set_stage(contact=contact, to_stage=LifecycleStage.MQL)
            with CaptureQueriesContext(connection) as queries:
                routed = handoff.mqls_entered(from_stages=stages, at=timezone.now(), notify=False)
            return len(queries), routed

        few, _ = route(4)  # both reps get leads, and both take a turn of the rotation, in either batch
        many, routed_many = route(8)

        assert few == many  # the contacts are read with what routing needs: no field loaded one by one
        assert set(routed_many.values()) == {rep.pk, other_rep.pk} and len(routed_many) == 8
        entries = AuditEntry.objects.filter(action="lead.route", object_id__in=[str(pk) for pk in routed_many])
        assert {e.object_id: e.before["stage"] for e in entries} == {str(pk): "lead" for pk in routed_many}

    def test_the_account_owner_comes_first(self, rep, other_rep):
        account = Account.objects.create(name="Owned", domain="owned.example", owner=other_rep)
        contact = ContactFactory(account=account)

        handoff.mql_entered(contact=contact, at=timezone.now())

        assert Contact.objects.get(pk=contact.pk).owner == other_rep

    def test_a_territory_rule_routes_by_country(self, rep, other_rep):
        RoutingRule.objects.create(field="country", value="France", rep=other_rep)
        contact = ContactFactory(country="france")

        handoff.mql_entered(contact=contact, at=timezone.now())

        assert Contact.objects.get(pk=contact.pk).owner == other_rep

    def test_the_same_assignment_is_emailed_once(self, rep):
        contact = ContactFactory()
        at = timezone.now()
        handoff.mql_entered(contact=contact, at=at)
        handoff._notify_assignment(Contact.objects.get(pk=contact.pk), rep)

        assert OutboundEmail.objects.count() == 1


@pytest.mark.django_db
def test_sla_reminds_then_returns_the_lead_to_marketing(rep, settings, mailoutbox):
    settings.SLA_REMINDER_HOURS, settings.SLA_EXPIRY_DAYS = 4, 3
    waiting = make_mql(owner=rep)
    Contact.objects.filter(pk=waiting.pk).update(mql_at=timezone.now() - timedelta(hours=5))
    forgotten = make_mql(owner=rep)
    Contact.objects.filter(pk=forgotten.pk).update(mql_at=timezone.now() - timedelta(days=4))

    assert handoff.mqls_sla_check() == {"expired": 1, "reminded": 1}
    assert handoff.mqls_sla_check() == {"expired": 0, "reminded": 0}  # safe to run twice

    forgotten.refresh_from_db()
    assert forgotten.lifecycle_stage == LifecycleStage.RECYCLED
    assert HandoffDecision.objects.get(contact=forgotten).reason == "sla_expired"
    outbox_send_due()
    assert [m.subject for m in mailoutbox] == [f"Reminder: {waiting} has waited 4 hours for you"]


@pytest.mark.django_db
class TestQueuePage:
    def test_the_queue_lists_mqls_best_score_first_with_reasons(self, rep_client, rep):
        from scoring.services import contacts_rescore

        strong = make_mql(job_title="VP Sales", seniority="vp")
        weak = make_mql(job_title="Analyst")
        contacts_rescore(contact_ids=[strong.pk, weak.pk], reason="test")

        response = rep_client.get(reverse("leads:queue"))

        rows = response.context["rows"]
        assert [row["contact"] for row in rows] == [strong, weak]
        assert rows[0]["reasons"][0]["rule"] == "Executive seniority"
        assert "Executive seniority" in response.content.decode()

    def test_each_row_rejects_its_own_lead_with_the_forms_own_fields(self, rep_client, rep):
        from leads.forms_handoff import RejectForm

        leads = [make_mql(), make_mql()]

        html = rep_client.get(reverse("leads:queue")).content.decode()

        for lead in leads:  # rendered once per page, copied per row: the same HTML as the row's own form
            form = RejectForm(prefix=f"lead{lead.pk}")
            assert str(form["reason"]) in html and str(form["note"]) in html
            assert f'for="id_lead{lead.pk}-reason"' in html
        assert html.count('name="leadPK') == 0
        reject = reverse("leads:lead_action", args=[leads[1].pk, "reject"])
        rep_client.post(reject, {"from": "queue", f"lead{leads[1].pk}-reason": "bad_timing"})
        leads[1].refresh_from_db()
        assert leads[1].lifecycle_stage == LifecycleStage.RECYCLED

    def test_a_lead_scored_before_it_entered_the_queue_is_ranked_by_its_current_score(self, rep_client, rep):
        from scoring.services import contacts_rescore

        queued = make_mql(job_title="Analyst")
        strong = ContactFactory(job_title="VP Sales", seniority="vp")  # a lead: scored outside the queue
        contacts_rescore(contact_ids=[queued.pk, strong.pk], reason="test")
        contact_set_stage(contact=strong, to_stage=LifecycleStage.MQL, rule="manual edit")

        response = rep_client.get(reverse("leads:queue"), {"grade": strong.score.fit_grade})

        assert [row["contact"] for row in response.context["rows"]] == [strong]
        rows = rep_client.get(reverse("leads:queue")).context["rows"]
        assert [row["contact"] for row in rows] == [strong, queued]
        assert rows[0]["contact"].score_total == strong.score.total > queued.score.total

    def test_a_lead_made_an_mql_by_hand_waits_in_the_queue_from_that_moment(self, rep_client, marketer):
        from leads.services import contact_update

        contact = ContactFactory()
        before = timezone.now()
        contact_update(contact=contact, changed_by=marketer, lifecycle_stage=LifecycleStage.MQL)

        contact.refresh_from_db()
        assert before <= contact.mql_at <= timezone.now()
        assert [row["contact"] for row in rep_client.get(reverse("leads:queue")).context["rows"]] == [contact]

    def test_a_contact_imported_as_an_mql_waits_in_the_queue_from_its_import(self, rep_client):
        from leads.services import contact_upsert

        before = timezone.now()
        contact = contact_upsert(email="imported@buyer.example", lifecycle_stage=LifecycleStage.MQL).contact

        contact.refresh_from_db()
        assert before <= contact.mql_at <= timezone.now()

    def test_filters_narrow_the_queue(self, rep_client, rep, other_rep):
        mine = make_mql(owner=rep, country="Germany")
        make_mql(owner=other_rep, country="France")
        unassigned = make_mql(country="Germany")

        assert [r["contact"] for r in rep_client.get(reverse("leads:queue"), {"owner": rep.pk}).context["rows"]] == [
            mine
        ]
        assert [
            r["contact"] for r in rep_client.get(reverse("leads:queue"), {"unassigned": "true"}).context["rows"]
        ] == [unassigned]
        assert {
            r["contact"] for r in rep_client.get(reverse("leads:queue"), {"country": "germany"}).context["rows"]
        } == {mine, unassigned}

    def test_the_level_filter_offers_the_active_models_levels(self, rep_client):
        hot, warm = make_mql(), make_mql()
        Contact.objects.filter(pk=hot.pk).update(score_mql_level="hot")
        Contact.objects.filter(pk=warm.pk).update(score_mql_level="warm")

        response = rep_client.get(reverse("leads:queue"))

        html = response.content.decode()
        options = re.findall(r'<option value="([^"]*)"', html[html.index('name="level"') :].split("</select>")[0])
        assert options == ["", "hot", "warm"]  # the shipped model's levels, highest first
        filtered = rep_client.get(reverse("leads:queue"), {"level": "warm"})
        assert [row["contact"] for row in filtered.context["rows"]] == [warm]

    def test_the_queue_has_views_for_my_leads_and_unassigned_ones(self, rep_client, rep, other_rep):
        rep.first_name, rep.last_name = "Rita", "Rep"
        rep.save()
        mine = make_mql(owner=rep)
        make_mql(owner=other_rep)
        unassigned = make_mql()

        response = rep_client.get(reverse("leads:queue"))
        views = {view["label"]: view for view in response.context["views"]}
        assert list(views) == ["All leads", "My leads", "Unassigned"]
        assert views["All leads"]["active"]
        mine_page = rep_client.get(f"{reverse('leads:queue')}?{views['My leads']['query']}")
        assert [row["contact"] for row in mine_page.context["rows"]] == [mine]
        assert [v["label"] for v in mine_page.context["views"] if v["active"]] == ["My leads"]
        unassigned_page = rep_client.get(f"{reverse('leads:queue')}?{views['Unassigned']['query']}")
        assert [row["contact"] for row in unassigned_page.context["rows"]] == [unassigned]
        # The owner is named as on the lead page: full name, else username.
        html = response.content.decode()
        assert "Rita Rep" in html and ">rep2<" in html

    def test_a_manager_without_leads_of_their_own_sees_no_my_leads_view(self, client):
        manager = UserFactory(username="boss", roles=[MANAGER])
        client.force_login(manager)
        views = client.get(reverse("leads:queue")).context["views"]
        assert [view["label"] for view in views] == ["All leads", "Unassigned"]

    def test_accepting_from_the_queue_with_htmx_swaps_the_row(self, rep_client, rep):
        contact = make_mql()

        response = rep_client.post(
            reverse("leads:lead_action", args=[contact.pk, "accept"]), {"from": "queue"}, HTTP_HX_REQUEST="true"
        )

        assert response.status_code == 200
        assert f'id="lead-{contact.pk}"' in response.content.decode()
        assert "it is your sales-qualified lead now" in response.content.decode()
        assert json.loads(response["HX-Trigger"]) == {"queue-changed": {}}  # the page counts its leads again
        assert Contact.objects.get(pk=contact.pk).lifecycle_stage == LifecycleStage.SQL

    def test_a_plain_post_redirects_back_only_to_this_site(self, rep_client):
        contact = make_mql()
        response = rep_client.post(
            reverse("leads:lead_action", args=[contact.pk, "reject"]),
            {f"lead{contact.pk}-reason": "bad_timing", "next": "//evil.example/x"},
        )

        assert response.status_code == 302 and response["Location"] == contact.get_absolute_url()

    def test_another_reps_lead_is_forbidden_and_unchanged(self, rep_client, other_rep):
        contact = make_mql(owner=other_rep)

        response = rep_client.post(reverse("leads:lead_action", args=[contact.pk, "accept"]))

        assert response.status_code == 403
        assert Contact.objects.get(pk=contact.pk).lifecycle_stage == LifecycleStage.MQL

    def test_the_owner_accepts_from_the_lead_page(self, rep_client, rep):
        contact = make_mql(owner=rep)

        page = rep_client.get(contact.get_absolute_url()).content.decode()
        assert "Accept as SQL" in page
        response = rep_client.post(reverse("leads:lead_action", args=[contact.pk, "accept"]))

        assert response["Location"] == contact.get_absolute_url()
        assert Contact.objects.get(pk=contact.pk).lifecycle_stage == LifecycleStage.SQL
        assert "it is your sales-qualified lead now" in rep_client.get(contact.get_absolute_url()).content.decode()

    def test_another_reps_lead_page_offers_no_actions(self, rep_client, other_rep):
        contact = make_mql(owner=other_rep)

        page = rep_client.get(contact.get_absolute_url()).content.decode()

        assert "Accept as SQL" not in page and "belongs to rep2" in page

    def test_rejecting_without_choosing_a_reason_changes_nothing(self, rep_client):
        contact = make_mql()

        response = rep_client.post(
            reverse("leads:lead_action", args=[contact.pk, "reject"]),
            {"from": "queue", f"lead{contact.pk}-reason": ""},
            HTTP_HX_REQUEST="true",
        )

        assert "This field is required" in response.content.decode()
        assert Contact.objects.get(pk=contact.pk).lifecycle_stage == LifecycleStage.MQL

    def test_a_refused_reject_keeps_what_the_rep_chose(self, rep_client):
        contact = make_mql()

        response = rep_client.post(
            reverse("leads:lead_action", args=[contact.pk, "reject"]),
            {"from": "queue", f"lead{contact.pk}-reason": "other", f"lead{contact.pk}-note": "  "},
            HTTP_HX_REQUEST="true",
        )

        html = response.content.decode()
        assert "Say why when the reason is" in html
        assert '<option value="other" selected>' in html  # the rep adds a note, no need to choose again
        assert f'name="lead{contact.pk}-note"' in html and 'aria-invalid="true"' in html
        assert Contact.objects.get(pk=contact.pk).lifecycle_stage == LifecycleStage.MQL

    def test_a_manager_reassigns_from_the_lead_page(self, client, rep, other_rep):
        manager = UserFactory(username="manager", roles=[MANAGER])
        client.force_login(manager)
        contact = make_mql(owner=rep)

        assert "Reassign to" in client.get(contact.get_absolute_url()).content.decode()
        client.post(reverse("leads:lead_action", args=[contact.pk, "reassign"]), {"rep": other_rep.pk})

        assert Contact.objects.get(pk=contact.pk).owner == other_rep
        assert AuditEntry.objects.filter(action="lead.reassign", actor=manager).count() == 1

    def test_marketers_have_no_queue(self, marketer_client):
        assert marketer_client.get(reverse("leads:queue")).status_code == 403


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_two_reps_racing_on_one_lead_exactly_one_wins():
    """Two real database connections act at the same instant (threads released by a barrier)."""
    first_rep = UserFactory(username="racer1", roles=[SALES])
    second_rep = UserFactory(username="racer2", roles=[SALES])
    contact = make_mql()
    barrier, results = threading.Barrier(2), {}

    def act(name, action):
        try:
            barrier.wait(timeout=10)
            action()
            results[name] = "won"
        except handoff.HandoffError as error:
            results[name] = str(error)
        finally:
            connection.close()

    threads = [
        threading.Thread(
            target=act, args=("accept", lambda: handoff.lead_accept(contact_id=contact.pk, user=first_rep))
        ),
        threading.Thread(
            target=act,
            args=("reject", lambda: handoff.lead_reject(contact_id=contact.pk, user=second_rep, reason="bad_timing")),
        ),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert sorted(results.values())[-1] == "won" and list(results.values()).count("won") == 1
    loser = next(message for message in results.values() if message != "won")
    assert "already handled" in loser
    assert HandoffDecision.objects.filter(contact=contact).count() == 1
    assert AuditEntry.objects.filter(object_id=str(contact.pk), action__in=["lead.accept", "lead.reject"]).count() == 1
