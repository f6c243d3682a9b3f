"""The default scoring model, from common B2B practice (documented in README "Scoring").

Fit: decision-making seniority and titles, an ideal-customer-profile industry and company
size; negatives for students and interns, free-mail addresses and competitors.
Engagement: demo requests and trials weigh most, then webinars, pricing-page visits,
content downloads, form fills, email clicks; repeated visits within a week; negatives
for unsubscribing and hard bounces. Strong one-off signals fade with a half-life, browsing
counts only inside a look-back window.
"""

from django.db import migrations

from scoring.matchers import matcher_key

FIT_RULES = [
    ("Executive seniority", "contact.seniority", "one_of", ["c_level", "vp", "owner"], 20),
    ("Director seniority", "contact.seniority", "equals", "director", 15),
    ("Manager seniority", "contact.seniority", "equals", "manager", 8),
    (
        "Decision-maker title",
        "contact.job_title",
        "contains",
        ["chief", "vp", "vice president", "head of", "director", "founder"],
        10,
    ),
    (
        "Ideal-profile industry",
        "account.industry",
        "one_of",
        ["Software", "SaaS", "Financial Services", "Information Technology", "Technology"],
        12,
    ),
    ("Ideal company size (200–5,000)", "account.employee_count", "between", [200, 5000], 10),
    ("Mid-size company (50–199)", "account.employee_count", "between", [50, 199], 5),
    ("Student or intern", "contact.job_title", "contains", ["student", "intern"], -25),
    ("Free-mail address", "email", "free_mail", None, -10),
    ("Competitor", "email", "domain_in", ["rivalcrm.example", "competitor.example", "leadrival.example"], -60),
    ("Opted out of email", "contact.email_consent_status", "one_of", ["unsubscribed", "do_not_email"], -5),
]
# name, activity type, property filter (name, operator, value), points, cap, window, half-life
ENGAGEMENT_RULES = [
    ("Demo request", "demo_request", None, 30, 30, None, 60),
    ("Trial sign-up", "trial_signup", None, 25, 25, None, 60),
    ("Webinar attended", "webinar_attended", None, 15, 30, None, 90),
    ("Event attended", "event_attended", None, 10, 20, None, 90),
    ("Pricing page visits", "page_view", ("url", "contains", "/pricing"), 10, 30, 30, None),
    ("Pricing page (tracked)", "pricing_page_view", None, 10, 30, 30, None),
    ("Content downloads", "content_download", None, 8, 24, None, 60),
    ("Form submissions", "form_submit", None, 5, 15, None, 60),
    ("Email clicks", "email_click", None, 3, 15, None, 30),
    ("Email opens", "email_open", None, 1, 5, 30, None),
    ("Repeated visits this week", "page_view", None, 2, 20, 7, None),
    ("Unsubscribed", "unsubscribe", None, -20, 20, None, None),
    ("Hard bounce", "email_bounce", ("kind", "equals", "hard"), -25, 25, None, None),
]
LEVELS = [("warm", 60, "C"), ("hot", 90, "B")]


def seed(apps, schema_editor):
    ScoringModel = apps.get_model("scoring", "ScoringModel")
    ModelVersion = apps.get_model("scoring", "ModelVersion")
    ActivityType = apps.get_model("leads", "ActivityType")
    Activity = apps.get_model("leads", "Activity")
    Matcher = apps.get_model("scoring", "Matcher")
    if ScoringModel.objects.exists():
        return
    model = ScoringModel.objects.create(
        name="Default B2B model",
        description="Fit by seniority, title, industry and company size; engagement from demo requests, "
        "trials, webinars, pricing visits, content and email; negatives for students, "
        "free-mail, competitors, unsubscribes and hard bounces.",
    )
    version = ModelVersion.objects.create(scoring_model=model, number=1, status="active", note="Shipped default")
    for name, field, operator, value, points in FIT_RULES:
        version.fit_rules.create(name=name, field=field, operator=operator, value=value, points=points)
    types = {t.key: t for t in ActivityType.objects.all()}
    has_activities = Activity.objects.exists()
    for name, type_key, test, points, cap, window, half_life in ENGAGEMENT_RULES:
        prop, op, value = test or ("", "", "")
        version.engagement_rules.create(
            name=name,
            activity_type=types[type_key],
            property_name=prop,
            property_operator=op,
            property_value=value,
            points=points,
            cap=cap,
            window_days=window,
            half_life_days=half_life,
        )
        Matcher.objects.get_or_create(
            key=matcher_key(type_key, prop, op, value),
            defaults={
                "activity_type": types[type_key],
                "property_name": prop,
                "property_operator": op,
                "property_value": value,
                "backfilled": not (prop and has_activities),
            },
        )
    for name, min_score, grade in LEVELS:
        version.mql_levels.create(name=name, min_score=min_score, min_fit_grade=grade)


class Migration(migrations.Migration):
    dependencies = [("scoring", "0001_initial"), ("leads", "0002_seed_activity_types_and_roles")]
    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
