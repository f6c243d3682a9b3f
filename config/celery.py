import os

from celery import Celery, signals
from django.db import close_old_connections

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("mql_crm")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@signals.task_prerun.connect
@signals.task_postrun.connect
def close_old_database_connections(**kwargs) -> None:
    """What Django does around a request: close a connection that outlived CONN_MAX_AGE or
    broke, keep the others (CELERY_DB_REUSE_MAX stops Celery closing every task's)."""
    close_old_connections()
