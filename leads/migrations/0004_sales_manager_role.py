from django.db import migrations


def seed(apps, schema_editor):
    apps.get_model("auth", "Group").objects.get_or_create(name="Sales manager")


class Migration(migrations.Migration):
    dependencies = [("leads", "0003_handoff")]
    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
