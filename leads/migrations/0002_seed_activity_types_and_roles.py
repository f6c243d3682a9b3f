from django.db import migrations

ACTIVITY_TYPES = [
    ("email_open", "Email opened", "A marketing email was opened (tracking pixel)."),
    ("email_click", "Email link clicked", "A link in a marketing email was clicked."),
    ("email_bounce", "Email bounced", "Delivery failed; properties.kind is hard or soft."),
    ("unsubscribe", "Unsubscribed", "The contact unsubscribed from marketing email."),
    ("page_view", "Page view", "A page of the website was viewed; properties.url."),
    ("pricing_page_view", "Pricing page view", "The pricing page was viewed."),
    ("form_submit", "Form submitted", "A website form was submitted; properties.form."),
    ("content_download", "Content downloaded", "A whitepaper, e-book or report; properties.asset."),
    ("webinar_registered", "Webinar registered", "Registered for a webinar; properties.webinar."),
    ("webinar_attended", "Webinar attended", "Attended a webinar; properties.webinar."),
    ("demo_request", "Demo requested", "Asked for a product demo."),
    ("trial_signup", "Trial sign-up", "Started a product trial."),
    ("event_attended", "Event attended", "Attended a conference, meetup or field event."),
    ("social_engagement", "Social engagement", "Liked, shared or commented on social media."),
    ("sales_call", "Sales call", "A call with sales was logged."),
]
ROLES = ["Sales", "Marketing", "Admin"]


def seed(apps, schema_editor):
    ActivityType = apps.get_model("leads", "ActivityType")
    Group = apps.get_model("auth", "Group")
    for key, name, description in ACTIVITY_TYPES:
        ActivityType.objects.update_or_create(
            key=key, defaults={"name": name, "description": description, "is_system": True}
        )
    for role in ROLES:
        Group.objects.get_or_create(name=role)


class Migration(migrations.Migration):
    dependencies = [("leads", "0001_initial"), ("auth", "0012_alter_user_first_name_max_length")]
    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
