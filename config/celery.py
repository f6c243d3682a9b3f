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


@signals.worker_init.connect
def load_url_patterns(**kwargs) -> None:
    """Import every URL pattern before the pool forks, as the web server does on its first
    request: otherwise the first email a worker process renders with {% url %} imports them
    all (every view module) inside a task — the digest at the end of a rescore took 2 s more."""
    from django.urls import get_resolver

    get_resolver().url_patterns  # noqa: B018 — the property imports the URLconf
