from celery import shared_task

from . import services


@shared_task(acks_late=True)
def outbox_send() -> int:
    """Send due emails (queued after commit, and by beat every minute). Safe to run twice:
    rows are claimed one by one with a conditional update."""
    return services.outbox_send_due()
