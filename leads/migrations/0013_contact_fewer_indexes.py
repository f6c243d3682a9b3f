"""Drop two indexes of the contact table that no query uses (see Contact.Meta): every
index is written again on each update that moves a contact's row."""

from django.db import migrations

EXTERNAL_ID_LIKE_INDEX = "leads_contact_external_id_31043dfb_like"


def drop_external_id_like_index(apps, schema_editor):
    # Only PostgreSQL has it: Django adds it beside a unique text column there.
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"DROP INDEX IF EXISTS {EXTERNAL_ID_LIKE_INDEX}")


def create_external_id_like_index(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            f"CREATE INDEX IF NOT EXISTS {EXTERNAL_ID_LIKE_INDEX} ON leads_contact (external_id varchar_pattern_ops)"
        )


class Migration(migrations.Migration):
    dependencies = [
        ("leads", "0012_account_updated_at_index"),
    ]

    operations = [
        migrations.RemoveIndex(model_name="contact", name="contact_last_name_lower_idx"),
        migrations.RunPython(drop_external_id_like_index, create_external_id_like_index),
    ]
