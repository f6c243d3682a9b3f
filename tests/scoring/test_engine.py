"""The pure scoring function: every rule kind, windows, decay, caps, negatives, grades, levels."""

from datetime import date, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scoring.engine import EngagementRuleSpec, FitRuleSpec, LevelSpec, RuleSet, decay_weight, evaluate

TODAY = date(2026, 11, 23)


def rules(*, fit=(), engagement=(), levels=(), **caps) -> RuleSet:
    return RuleSet(
        version_id=1,
        version_label="test v1",
        fit_rules=tuple(fit),
        engagement_rules=tuple(engagement),
        levels=tuple(levels),
        **caps,
    )


def fit(field, operator, value, points=10, name="rule"):
    return FitRuleSpec(1, name, field, operator, value, points)


def engaged(points, *, cap=None, window=None, half_life=None, key="page_view", name="rule"):
    return EngagementRuleSpec(1, name, key, points, cap, window, half_life)


def fit_points(rule, profile) -> Decimal:
    return evaluate(rules(fit=[rule]), profile, {}, TODAY).fit


@pytest.mark.parametrize(
    ("rule", "profile", "expected"),
    [
        (fit("contact.country", "equals", "germany"), {"contact.country": "Germany"}, 10),
        (fit("contact.country", "equals", "germany"), {"contact.country": "France"}, 0),
        (fit("account.employee_count", "equals", "250"), {"account.employee_count": 250}, 10),
        (fit("attribute.trial", "equals", True), {"attribute.trial": True}, 10),
        (fit("attribute.trial", "equals", True), {"attribute.trial": False}, 0),
        (fit("account.industry", "one_of", ["Software", "SaaS"]), {"account.industry": "saas"}, 10),
        (fit("account.industry", "one_of", ["Software", "SaaS"]), {"account.industry": "Retail"}, 0),
        (fit("contact.job_title", "contains", ["vp", "chief"]), {"contact.job_title": "Chief Revenue Officer"}, 10),
        (fit("contact.job_title", "contains", ["vp", "chief"]), {"contact.job_title": "Engineer"}, 0),
        (fit("contact.job_title", "starts_with", ["head"]), {"contact.job_title": "Head of Growth"}, 10),
        (fit("contact.job_title", "starts_with", ["head"]), {"contact.job_title": "Growth head"}, 0),
        (fit("account.employee_count", "between", [200, 5000]), {"account.employee_count": 200}, 10),
        (fit("account.employee_count", "between", [200, 5000]), {"account.employee_count": 5001}, 0),
        (fit("account.employee_count", "between", [1000, None]), {"account.employee_count": 90000}, 10),
        (fit("account.employee_count", "between", [200, 5000]), {"account.employee_count": None}, 0),
        (fit("contact.phone", "is_set", None), {"contact.phone": "+49 30 1234"}, 10),
        (fit("contact.phone", "is_set", None), {"contact.phone": "  "}, 0),
        (fit("contact.phone", "is_empty", None), {"contact.phone": ""}, 10),
        (fit("email", "free_mail", None, points=-10), {"email": "someone@Gmail.com"}, -10),
        (fit("email", "free_mail", None, points=-10), {"email": "someone@acme.com"}, 0),
        (fit("email", "domain_in", ["rival.example"], points=-50), {"email": "spy@rival.example"}, -50),
        (fit("attribute.visits", "between", [5, 10]), {}, 0),
    ],
)
def test_each_fit_operator(rule, profile, expected):
    assert fit_points(rule, profile) == expected


def test_the_explanation_names_the_fact_that_matched():
    result = evaluate(
        rules(fit=[fit("contact.job_title", "contains", ["vp"], name="Exec")]),
        {"contact.job_title": "VP Sales"},
        {},
        TODAY,
    )

    [part] = result.contributions
    assert (part.rule, part.facts, part.points) == ("Exec", "'VP Sales' contains 'vp'", Decimal(10))


def test_engagement_counts_every_occurrence_without_window_or_decay():
    result = evaluate(
        rules(engagement=[engaged(5)]), {}, {"page_view": {TODAY - timedelta(days=400): 2, TODAY: 1}}, TODAY
    )
    assert result.engagement == 15


def test_a_look_back_window_counts_only_the_last_n_days():
    days = {TODAY: 1, TODAY - timedelta(days=6): 1, TODAY - timedelta(days=7): 5}

    result = evaluate(rules(engagement=[engaged(3, window=7)]), {}, {"page_view": days}, TODAY)

    assert result.engagement == 6  # day 0 and day 6 count, day 7 is outside a 7-day window


def test_activity_after_the_scoring_day_does_not_count():
    result = evaluate(rules(engagement=[engaged(3)]), {}, {"page_view": {TODAY + timedelta(days=1): 1}}, TODAY)
    assert result.engagement == 0


def test_decay_halves_points_every_half_life():
    days = {TODAY - timedelta(days=30): 1, TODAY - timedelta(days=60): 1}

    result = evaluate(rules(engagement=[engaged(40, half_life=30)]), {}, {"page_view": days}, TODAY)

    assert result.engagement == Decimal("30.0")  # 20 + 10


@given(st.integers(0, 3650), st.integers(1, 365))
def test_decay_never_grows_with_age(age, half_life):
    assert decay_weight(age + 1, half_life) <= decay_weight(age, half_life) <= 1


def test_a_rule_cap_limits_its_points():
    result = evaluate(rules(engagement=[engaged(10, cap=25)]), {}, {"page_view": {TODAY: 4}}, TODAY)

    assert result.engagement == 25
    assert "capped at 25" in result.contributions[0].facts


def test_negative_signals_take_a_dimension_down_to_minus_its_cap_at_most():
    # An uncapped -1,000 rule and 11,000 unsubscribes would be -11 million: no score fits that.
    result = evaluate(rules(engagement=[engaged(-1000)]), {}, {"page_view": {TODAY: 11_000}}, TODAY)

    assert result.engagement == -100  # the engagement cap of rules(), taken downwards
    floor = result.contributions[-1]
    assert (floor.kind, floor.facts, floor.points) == ("cap", "-11000000.0 points, floored at -100", 10_999_900)
    assert sum(c.points for c in result.contributions) == result.engagement


def test_a_negative_rule_cap_limits_the_points_taken():
    result = evaluate(rules(engagement=[engaged(-20, cap=30)]), {}, {"page_view": {TODAY: 3}}, TODAY)
    assert result.engagement == -30


def test_the_dimension_cap_shows_as_its_own_line_so_parts_still_add_up():
    ruleset = rules(engagement=[engaged(30, name="a", key="a"), engaged(30, name="b", key="b")], engagement_cap=50)

    result = evaluate(ruleset, {}, {"a": {TODAY: 1}, "b": {TODAY: 1}}, TODAY)

    assert result.engagement == 50
    assert [c.kind for c in result.contributions] == ["engagement", "engagement", "cap"]
    assert sum(c.points for c in result.contributions) == result.total


def test_negative_fit_lowers_the_grade():
    ruleset = rules(
        fit=[fit("contact.seniority", "equals", "vp", 45, "VP"), fit("email", "free_mail", None, -10, "Free mail")]
    )

    assert evaluate(ruleset, {"contact.seniority": "vp", "email": "a@corp.example"}, {}, TODAY).fit_grade == "A"
    assert evaluate(ruleset, {"contact.seniority": "vp", "email": "a@gmail.com"}, {}, TODAY).fit_grade == "B"


@pytest.mark.parametrize(
    ("fit_value", "engagement", "level"),
    [
        (45, 50, "hot"),  # 95, grade A
        (30, 65, "hot"),  # 95, grade B
        (15, 80, "warm"),  # 95 but grade C: not hot
        (30, 35, "warm"),  # 65
        (30, 20, ""),  # 50
        (5, 90, ""),  # 95 but grade D
    ],
)
def test_mql_levels_need_both_the_score_and_the_fit_grade(fit_value, engagement, level):
    ruleset = rules(
        fit=[fit("contact.country", "is_set", None, fit_value)],
        engagement=[engaged(engagement)],
        levels=[LevelSpec("warm", 60, "C"), LevelSpec("hot", 90, "B")],
    )

    result = evaluate(ruleset, {"contact.country": "DE"}, {"page_view": {TODAY: 1}}, TODAY)

    assert result.mql_level == level


@given(
    st.lists(
        st.tuples(
            st.integers(-30, 40),
            st.one_of(st.none(), st.integers(1, 50)),
            st.one_of(st.none(), st.integers(1, 60)),
            st.integers(0, 5),
            st.integers(0, 90),
        ),
        max_size=6,
    ),
    st.integers(0, 200),
)
def test_the_contributions_always_add_up_to_the_score(specs, cap):
    engagement_rules = [
        engaged(points or 1, cap=rule_cap, half_life=half_life, key=f"k{n}", name=f"r{n}")
        for n, (points, rule_cap, half_life, _, _) in enumerate(specs)
    ]
    engagement = {f"k{n}": {TODAY - timedelta(days=age): count} for n, (*_, count, age) in enumerate(specs)}

    result = evaluate(rules(engagement=engagement_rules, engagement_cap=cap), {}, engagement, TODAY)

    assert sum(c.points for c in result.contributions) == result.total
    assert result.engagement <= cap
