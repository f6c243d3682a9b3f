"""Suggesting a model from feedback: scaling, thresholds, labels, too little data, the whole path."""

import math
import random
from datetime import timedelta

import numpy as np
import pytest
from django.urls import reverse
from django.utils import timezone

from leads.models import HandoffDecision, LeadFeedback, LifecycleStage, Outcome, StageChange
from leads.services import outcome_record_imported
from scoring.models import ContactScore, FitRule, ModelSuggestion, ModelVersion, MqlQualification
from scoring.selectors import active_version
from scoring.services import rescore_run_to_end
from scoring.tuning.labels import decision_days, stratified_split, training_labels
from scoring.tuning.performance import rule_performance
from scoring.tuning.scorecard import cut_at, fit_scorecard, points_for, threshold_for_precision, threshold_for_volume
from scoring.tuning.suggest import label_shortfall, suggestion_request, suggestion_run
from scoring.versions import version_publish
from tests.factories import ContactFactory

# --- the scaling -------------------------------------------------------------------------------


def test_points_to_double_the_odds_doubles_the_odds():
    # A coefficient of ln 2 doubles the odds, so it is worth exactly `points_to_double` points.
    assert points_for(math.log(2), 20) == 20
    assert points_for(math.log(2), 10) == 10
    assert points_for(-math.log(2) / 2, 20) == -10  # halving… the square root of it: -10 points
    assert points_for(math.log(4), 20) == 40  # quadrupled odds: two doublings
    assert points_for(0.01, 20) == 0  # too weak to be worth a point


def test_the_scorecard_finds_the_signals_and_ignores_noise():
    rng = np.random.default_rng(0)
    n = 3000
    good_sign, bad_sign, noise = (rng.random(n) < 0.4 for _ in range(3))
    log_odds = -1 + 1.6 * good_sign - 1.2 * bad_sign
    labels = (rng.random(n) < 1 / (1 + np.exp(-log_odds))).astype(int)
    features = np.column_stack([good_sign, bad_sign, noise]).astype(float)

    card = fit_scorecard(features, labels, max_rules=10, points_to_double=20, seed=1)

    points = dict(zip(card.columns, card.points, strict=True))
    assert points[0] > 0 and points[1] < 0
    # Close to the true coefficients, 1.6 and -1.2 log-odds, in points: 46 and -35.
    assert abs(points[0] - 46) <= 6 and abs(points[1] + 35) <= 6
    # Noise: worth at most a few points (its standard error at n=3,000 is about 0.09 log-odds, 3 points).
    assert abs(points.get(2, 0)) <= 6 < min(points[0], -points[1]) / 5
    # The points are the fitted coefficients on the documented scale.
    assert card.points == [points_for(b, 20) for b in card.coefficients]


def test_the_scorecard_keeps_at_most_the_rules_asked_for():
    rng = np.random.default_rng(2)
    features = (rng.random((2000, 12)) < 0.5).astype(float)
    labels = (features[:, :8].sum(axis=1) + rng.normal(0, 1, 2000) > 4).astype(int)
    card = fit_scorecard(features, labels, max_rules=4, points_to_double=20, seed=1)
    assert 1 <= len(card.columns) <= 4


# --- thresholds ------------------------------------------------------------------------------

SCORES = np.array([10, 9, 8, 7, 6, 5], dtype=float)
LABELS = np.array([1, 1, 0, 1, 0, 0])


def test_a_precision_target_takes_the_lowest_threshold_that_meets_it():
    # Precision by threshold: ≥10: 1/1, ≥9: 2/2, ≥8: 2/3, ≥7: 3/4, ≥6: 3/5, ≥5: 3/6.
    cut = threshold_for_precision(SCORES, LABELS, 0.75, min_flagged=1)
    assert (cut.threshold, cut.precision, cut.recall, cut.flagged, cut.met) == (7, 0.75, 1.0, 4, True)
    assert threshold_for_precision(SCORES, LABELS, 0.9, min_flagged=1).threshold == 9


def test_an_unreachable_precision_says_so_and_offers_the_most_precise_threshold():
    cut = threshold_for_precision(SCORES, LABELS, 0.99, min_flagged=3)
    assert cut.met is False
    assert cut.threshold == 7 and cut.precision == 0.75  # ≥8 is only 2/3 with at least 3 flagged


def test_a_volume_target_flags_at_least_that_share():
    cut = threshold_for_volume(SCORES, LABELS, 0.5)
    assert (cut.threshold, cut.flagged, cut.share) == (8, 3, 0.5)
    assert threshold_for_volume(SCORES, LABELS, 0.4).threshold == 8  # 3 of 6 is the first ≥ 40%
    assert cut_at(SCORES, LABELS, 8).precision == pytest.approx(2 / 3)


# --- labels ----------------------------------------------------------------------------------


def _decide(contact, decision, reason="", days_ago=10):
    return HandoffDecision.objects.create(
        contact=contact,
        decision=decision,
        reason=reason,
        decided_at=timezone.now() - timedelta(days=days_ago),
        mql_at=timezone.now() - timedelta(days=days_ago + 2),
        to_stage=LifecycleStage.SQL if decision == "accepted" else LifecycleStage.RECYCLED,
    )


@pytest.mark.django_db
def test_labels_weigh_outcomes_over_decisions_over_ratings():
    rated_bad_then_accepted, accepted_then_lost, timing, rated_only = ContactFactory.create_batch(4)
    LeadFeedback.objects.create(contact=rated_bad_then_accepted, rating="bad", given_at=timezone.now())
    _decide(rated_bad_then_accepted, "accepted")
    _decide(accepted_then_lost, "accepted")
    Outcome.objects.create(contact=accepted_then_lost, kind="lost", source="sales", occurred_at=timezone.now())
    _decide(timing, "rejected", reason="bad_timing")
    LeadFeedback.objects.create(contact=rated_only, rating="good", given_at=timezone.now())

    labels = training_labels()

    assert labels == {rated_bad_then_accepted.pk: 1, accepted_then_lost.pk: 0, rated_only.pk: 1}
    assert timing.pk not in labels  # bad timing says nothing about the lead


@pytest.mark.django_db
def test_a_lead_is_judged_on_what_it_had_done_when_it_became_an_mql():
    contact = ContactFactory()
    became_mql = timezone.now() - timedelta(days=40)
    StageChange.objects.create(contact=contact, from_stage="lead", to_stage="mql", changed_at=became_mql)
    Outcome.objects.create(contact=contact, kind="won", source="sales", occurred_at=timezone.now())
    assert decision_days([contact.pk]) == {contact.pk: timezone.localdate(became_mql)}


def test_the_split_is_stratified_and_reproducible():
    labels = {i: int(i % 4 == 0) for i in range(1, 1001)}
    training, held_out = stratified_split(labels, holdout=0.3, seed=42)
    assert len(held_out) == 300 and not set(training) & set(held_out)
    assert sum(labels[i] for i in held_out) == 75  # a quarter of each side is good
    assert stratified_split(labels, holdout=0.3, seed=42) == (training, held_out)


# --- too little data -------------------------------------------------------------------------


def test_too_few_labels_says_how_many_more_are_needed():
    assert label_shortfall({i: 1 for i in range(150)} | {i: 0 for i in range(150, 180)}) == (
        "There are 180 labelled leads (150 good, 30 bad). A suggestion needs at least 200, with at least 50 "
        "of each, to learn more than noise: record about 20 more hand-off decisions, quality ratings or "
        "outcomes on bad leads."
    )
    assert label_shortfall({i: i % 2 for i in range(200)}) == ""


@pytest.mark.django_db
def test_with_too_little_data_the_suggestion_explains_instead_of_fitting(marketer):
    for contact in ContactFactory.create_batch(12):
        outcome_record_imported(contact=contact, converted=contact.pk % 2 == 0)
    suggestion = suggestion_request(
        scoring_model=active_version().scoring_model, target_kind="precision", target_value=0.8, user=marketer
    )
    suggestion_run(suggestion_id=suggestion.pk)
    suggestion.refresh_from_db()
    assert suggestion.status == ModelSuggestion.Status.INSUFFICIENT
    assert "12 labelled leads" in suggestion.message and "188 more" in suggestion.message
    assert suggestion.draft is None
    assert not ModelVersion.objects.filter(status=ModelVersion.Status.DRAFT).exists()


# --- the whole path --------------------------------------------------------------------------


def _labelled_leads(count=500, seed=7):
    """Half the leads are in a 'partner' segment that converts 80% of the time; the rest 15%.
    A 'colour' attribute is pure noise."""
    rng = random.Random(seed)
    contacts = []
    for number in range(count):
        partner = number % 2 == 0
        contact = ContactFactory(
            email=f"lead{number}@tuning.example",
            attributes={"segment": "partner" if partner else "direct", "colour": rng.choice(["red", "blue"])},
        )
        outcome_record_imported(contact=contact, converted=rng.random() < (0.8 if partner else 0.15))
        contacts.append(contact)
    return contacts


@pytest.mark.django_db
def test_a_suggestion_learns_the_segment_backtests_it_and_publishing_it_rescored_the_leads(marketer):
    contacts = _labelled_leads()
    base = active_version()
    suggestion = suggestion_request(
        scoring_model=base.scoring_model, target_kind="volume", target_value=0.4, max_rules=5, user=marketer
    )
    assert suggestion_run(suggestion_id=suggestion.pk) is True
    assert suggestion_run(suggestion_id=suggestion.pk) is False  # a second delivery does nothing
    suggestion.refresh_from_db()

    assert suggestion.status == ModelSuggestion.Status.DONE, suggestion.message
    draft = suggestion.draft
    rules = {rule.name: rule.points for rule in draft.fit_rules.all()}
    segment_points = rules.get("Segment is partner", 0) - rules.get("Segment is direct", 0)
    assert segment_points >= 20  # about ln(0.8/0.2 ÷ 0.15/0.85) = 3.1 log-odds: 3 doublings, 60 points
    assert not any(name.startswith("Colour") for name in rules)
    backtest = suggestion.result["backtest"]
    assert backtest["leads"] == 150
    assert backtest["suggested"]["auc"] > 0.75 > (backtest["current"]["auc"] or 0.5)
    assert 0.4 <= backtest["suggested"]["mql_share"] <= 0.6
    evidence = suggestion.result["evidence"]["Segment is partner"] if "Segment is partner" in rules else None
    if evidence:
        assert evidence["rate_fired"] > 0.7 > 0.25 > evidence["rate_not"]

    run = version_publish(draft=draft, user=marketer)
    rescore_run_to_end(run=run)
    scores = {s.contact_id: s for s in ContactScore.objects.filter(contact__in=contacts)}
    partner = [scores[c.pk].total for c in contacts if c.attributes["segment"] == "partner"]
    direct = [scores[c.pk].total for c in contacts if c.attributes["segment"] == "direct"]
    assert min(partner) > max(direct)
    assert all(scores[c.pk].mql_level for c in contacts if c.attributes["segment"] == "partner")


@pytest.mark.django_db
def test_a_suggestion_is_refused_while_a_draft_waits(marketer_client):
    base = active_version()
    marketer_client.post(reverse("scoring:draft_create", args=[base.scoring_model.pk]))
    response = marketer_client.post(
        reverse("scoring:suggestion_new", args=[base.scoring_model.pk]),
        {"target_kind": "precision", "target_value": "80", "max_rules": "20", "points_to_double": "20"},
    )
    assert response.status_code == 200
    assert "already has a draft" in response.content.decode()
    assert not ModelSuggestion.objects.exists()


@pytest.mark.django_db
def test_bad_settings_are_explained_and_nothing_is_queued(marketer_client):
    base = active_version()
    response = marketer_client.post(
        reverse("scoring:suggestion_new", args=[base.scoring_model.pk]),
        {"target_kind": "precision", "target_value": "150", "max_rules": "1", "points_to_double": "x"},
    )
    assert response.status_code == 200
    page = response.content.decode()
    assert "less than or equal to 99" in page and "greater than or equal to 3" in page
    assert not ModelSuggestion.objects.exists()


@pytest.mark.django_db
def test_a_marketer_reads_the_backtest_and_the_diff_with_its_evidence(marketer_client, marketer):
    _labelled_leads(count=300)
    base = active_version()
    response = marketer_client.post(
        reverse("scoring:suggestion_new", args=[base.scoring_model.pk]),
        {"target_kind": "precision", "target_value": "70", "max_rules": "5", "points_to_double": "20"},
    )
    suggestion = ModelSuggestion.objects.get()
    assert response["Location"] == reverse("scoring:suggestion_detail", args=[suggestion.pk])
    waiting = marketer_client.get(response["Location"]).content.decode()
    assert 'hx-get="' + reverse("scoring:suggestion_progress", args=[suggestion.pk]) in waiting

    suggestion_run(suggestion_id=suggestion.pk)
    progress = marketer_client.get(reverse("scoring:suggestion_progress", args=[suggestion.pk]), HTTP_HX_REQUEST="true")
    assert progress.headers["HX-Refresh"] == "true"
    page = marketer_client.get(response["Location"]).content.decode()
    assert "Backtest on 90 held-out leads" in page
    assert "Segment is" in page and "added" in page
    assert "Score distribution of good and bad leads" in page  # the two charts
    draft = ModelSuggestion.objects.get().draft
    assert reverse("scoring:version_publish", args=[draft.pk]) in page


@pytest.mark.django_db
def test_reps_cannot_reach_tuning_pages(rep_client):
    version = active_version()
    for url in (
        reverse("scoring:suggestion_new", args=[version.scoring_model.pk]),
        reverse("scoring:version_performance", args=[version.pk]),
    ):
        assert rep_client.get(url).status_code == 403
    assert rep_client.post(reverse("scoring:draft_discard", args=[version.pk])).status_code == 403


@pytest.mark.django_db
def test_a_draft_can_be_discarded_but_a_published_version_cannot(marketer_client):
    base = active_version()
    marketer_client.post(reverse("scoring:draft_create", args=[base.scoring_model.pk]))
    draft = ModelVersion.objects.get(status="draft")
    marketer_client.post(reverse("scoring:draft_discard", args=[draft.pk]))
    assert not ModelVersion.objects.filter(pk=draft.pk).exists()
    marketer_client.post(reverse("scoring:draft_discard", args=[base.pk]))
    assert ModelVersion.objects.filter(pk=base.pk, status="active").exists()


# --- rule performance ------------------------------------------------------------------------


@pytest.mark.django_db
def test_rule_performance_counts_mqls_acceptance_and_lift(marketer_client):
    """Hand-checked: 'Industry is Software' (+10) fires on 40 leads, 30 of them good (75%);
    of the 40 others 10 are good (25%): lift 3.0. 'Uses a pager' (+5) fires on 40 leads with
    only 8 good (20%) against 32 of 40 (80%) elsewhere: it hurts."""
    version = active_version()
    version.fit_rules.all().delete()
    software = FitRule.objects.create(
        version=version,
        name="Industry is Software",
        field="account.industry",
        operator="equals",
        value="software",
        points=10,
    )
    FitRule.objects.create(
        version=version, name="Uses a pager", field="attribute.pager", operator="equals", value=True, points=5
    )
    now = timezone.now()
    pager_users = set(range(8)) | set(range(30, 40)) | set(range(50, 72))  # 8 good, 32 bad
    for number in range(80):
        good = number < 30 or 40 <= number < 50
        contact = ContactFactory(
            account__industry="Software" if number < 40 else "Retail",
            attributes={"pager": True} if number in pager_users else {},
        )
        outcome_record_imported(contact=contact, converted=good)
        if number < 6:  # six MQLs under this version, the first four accepted
            MqlQualification.objects.create(
                contact=contact,
                version=version,
                level="warm",
                total=10,
                fit=10,
                engagement=0,
                fit_grade="C",
                explanation=[{"kind": "fit", "rule_id": software.pk, "points": "10"}],
                qualified_at=now,
            )
            _decide(contact, "accepted" if number < 4 else "rejected", reason="" if number < 4 else "not_a_fit")

    rows = {row.name: row for row in rule_performance(version)["rows"]}

    software_row = rows["Industry is Software"]
    assert (software_row.good_fired.hits, software_row.good_fired.count) == (30, 40)
    assert (software_row.good_not.hits, software_row.good_not.count) == (10, 40)
    assert software_row.lift == pytest.approx(3.0)
    assert software_row.mqls == 6
    assert (software_row.accepted_fired.hits, software_row.accepted_fired.count) == (4, 6)
    assert software_row.hurts == ""
    pager_row = rows["Uses a pager"]
    assert (pager_row.good_fired.hits, pager_row.good_fired.count) == (8, 40)
    assert (pager_row.good_not.hits, pager_row.good_not.count) == (32, 40)
    assert pager_row.mqls == 0
    assert pager_row.hurts == "Adds points, yet leads it fires on turn out good less often (0.25×)."
    page = marketer_client.get(reverse("scoring:version_performance", args=[version.pk])).content.decode()
    assert "Industry is Software" in page and "3.00×" in page and "Hurts" in page
