from django.db import migrations


def copy_keys(apps, schema_editor):
    """Fill the contacts' copy of their score's queue keys (total, grade, level)."""
    ContactScore = apps.get_model("scoring", "ContactScore")
    Contact = apps.get_model("leads", "Contact")
    batch = []
    for score in ContactScore.objects.only("contact_id", "total", "fit_grade", "mql_level").iterator(2000):
        batch.append(
            Contact(
                pk=score.contact_id,
                score_total=score.total,
                score_fit_grade=score.fit_grade,
                score_mql_level=score.mql_level,
            )
        )
        if len(batch) == 2000:
            Contact.objects.bulk_update(batch, ["score_total", "score_fit_grade", "score_mql_level"])
            batch = []
    Contact.objects.bulk_update(batch, ["score_total", "score_fit_grade", "score_mql_level"])


class Migration(migrations.Migration):
    dependencies = [("scoring", "0004_score_explanation_table"), ("leads", "0005_queue_read_model")]
    operations = [migrations.RunPython(copy_keys, migrations.RunPython.noop)]
