from celery import shared_task

from config.coalesce import task_started

from . import services


@shared_task(acks_late=True)
def outbox_send() -> int:
    """Send due emails (queued after commit, and by beat every minute), after returning the
    rows of workers that died mid-batch to the queue. Safe to run twice or concurrently:
    rows are leased with conditional updates and each result is recorded by its lease's holder."""
    task_started(services.OUTBOX_SEND_QUEUED_FLAG)  # before reading the outbox
    services.outbox_leases_expire()
    return services.outbox_send_due()


@shared_task
def nurture_enrol() -> int:
    """Beat, every minute: enrol contacts that entered active segment sequences."""
    from .sequences import sequences_enrol_segments

    return sequences_enrol_segments()


@shared_task(acks_late=True)
def nurture_advance() -> int:
    """Beat, every minute: send or skip every due step. Safe to run twice (row locks and a
    unique StepSend per enrolment and step)."""
    from .sequences import enrolments_advance_due

    return enrolments_advance_due()
